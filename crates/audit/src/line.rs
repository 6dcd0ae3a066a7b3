//! The JSON Lines export form of an entry, and its strict parser for untrusted text.
//!
//! One entry per line, fields in a fixed order:
//! `{"seq":…,"time":"…","time_ms":…,"actor":…,"kind":…,"procedure":…,"break":…,"payload":{…},"prev_hash":"…","hash":"…"}`.
//! The parser refuses anything the hash would not cover or that two readers could read
//! differently: unknown fields, duplicate keys (at any depth), floats, and a `time` that does
//! not match `time_ms`.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeStruct;
use serde_json::{Map, Number, Value};

use crate::canonical::{MAX_DEPTH, write_json_string, write_lenient};
use crate::entry::Entry;
use crate::hash::Hash;
use crate::timestamp::format_rfc3339_ms;

/// Why a line is not a well-formed entry. Every variant about a field names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is empty.
    #[error("empty line")]
    Empty,
    /// The line is not a single JSON object.
    #[error("not a JSON object: {message}")]
    Json {
        /// serde_json's description, with the column.
        message: String,
    },
    /// A required field is absent (`procedure` and `break` must be present, possibly `null`).
    #[error("missing field `{field}`")]
    Missing {
        /// The field's name in the line.
        field: &'static str,
    },
    /// A field appears twice.
    #[error("duplicate field `{field}`")]
    Duplicate {
        /// The field's name in the line.
        field: &'static str,
    },
    /// The line has a field the format does not define; it would not be covered by the hash.
    #[error("unknown field `{field}`")]
    Unknown {
        /// The field's name in the line.
        field: String,
    },
    /// A field has the wrong type or an invalid value.
    #[error("invalid field `{field}`: {reason}")]
    Invalid {
        /// The field's name in the line.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl ParseError {
    /// The name of the field at fault, if the error concerns one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ParseError::Empty | ParseError::Json { .. } => None,
            ParseError::Missing { field }
            | ParseError::Duplicate { field }
            | ParseError::Invalid { field, .. } => Some(field),
            ParseError::Unknown { field } => Some(field),
        }
    }
}

impl Entry {
    /// The entry as one line of JSON (no trailing newline), in the export form.
    ///
    /// Fields come in the order seq, time, time_ms, actor, kind, procedure, break, payload,
    /// prev_hash, hash; the payload is written in canonical JSON, so the line for a given
    /// entry is always the same bytes.
    pub fn to_json_line(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"seq\":");
        out.push_str(&self.seq.to_string());
        out.push_str(",\"time\":");
        match format_rfc3339_ms(self.time_ms) {
            Some(t) => write_json_string(&mut out, &t),
            // Only an entry built by hand can get here; the parser will refuse the line.
            None => out.push_str("null"),
        }
        out.push_str(",\"time_ms\":");
        out.push_str(&self.time_ms.to_string());
        out.push_str(",\"actor\":");
        write_json_string(&mut out, &self.actor);
        out.push_str(",\"kind\":");
        write_json_string(&mut out, &self.kind);
        out.push_str(",\"procedure\":");
        write_optional(&mut out, self.procedure.as_deref());
        out.push_str(",\"break\":");
        write_optional(&mut out, self.break_id.as_deref());
        out.push_str(",\"payload\":");
        write_lenient(&mut out, &self.payload);
        out.push_str(",\"prev_hash\":\"");
        out.push_str(&self.prev_hash.to_hex());
        out.push_str("\",\"hash\":\"");
        out.push_str(&self.hash.to_hex());
        out.push_str("\"}");
        out
    }

    /// Parses one export line. Checks the form only; whether the hashes are right is the
    /// [`Verifier`](crate::Verifier)'s job.
    pub fn from_json_line(line: &str) -> Result<Entry, ParseError> {
        if line.trim().is_empty() {
            return Err(ParseError::Empty);
        }
        let mut failure = None;
        let mut de = serde_json::Deserializer::from_str(line);
        let parsed = de::Deserializer::deserialize_map(
            &mut de,
            EntryVisitor {
                failure: &mut failure,
            },
        )
        .and_then(|entry| de.end().map(|()| entry));
        parsed.map_err(|e| {
            failure.unwrap_or_else(|| ParseError::Json {
                message: e.to_string(),
            })
        })
    }
}

fn write_optional(out: &mut String, value: Option<&str>) {
    match value {
        Some(s) => write_json_string(out, s),
        None => out.push_str("null"),
    }
}

impl serde::Serialize for Entry {
    /// Serializes the export form: the same fields, order and values as
    /// [`Entry::to_json_line`], with payload keys sorted.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Entry", 10)?;
        s.serialize_field("seq", &self.seq)?;
        s.serialize_field("time", &format_rfc3339_ms(self.time_ms))?;
        s.serialize_field("time_ms", &self.time_ms)?;
        s.serialize_field("actor", &self.actor)?;
        s.serialize_field("kind", &self.kind)?;
        s.serialize_field("procedure", &self.procedure)?;
        s.serialize_field("break", &self.break_id)?;
        s.serialize_field("payload", &Sorted(&self.payload))?;
        s.serialize_field("prev_hash", &self.prev_hash)?;
        s.serialize_field("hash", &self.hash)?;
        s.end()
    }
}

/// A JSON value that serializes with object keys in byte order at every depth.
struct Sorted<'a>(&'a Value);

impl serde::Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                serializer.collect_map(entries.into_iter().map(|(k, v)| (k, Sorted(v))))
            }
            other => other.serialize(serializer),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Entry {
    /// Deserializes the export form with the same checks as [`Entry::from_json_line`].
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut failure = None;
        deserializer.deserialize_map(EntryVisitor {
            failure: &mut failure,
        })
    }
}

/// The fields of the export form.
enum Field {
    Seq,
    Time,
    TimeMs,
    Actor,
    Kind,
    Procedure,
    Break,
    Payload,
    PrevHash,
    Hash,
    Unknown(String),
}

impl<'de> serde::Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;

        impl Visitor<'_> for FieldVisitor {
            type Value = Field;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "seq" => Field::Seq,
                    "time" => Field::Time,
                    "time_ms" => Field::TimeMs,
                    "actor" => Field::Actor,
                    "kind" => Field::Kind,
                    "procedure" => Field::Procedure,
                    "break" => Field::Break,
                    "payload" => Field::Payload,
                    "prev_hash" => Field::PrevHash,
                    "hash" => Field::Hash,
                    other => Field::Unknown(other.to_owned()),
                })
            }
        }

        deserializer.deserialize_identifier(FieldVisitor)
    }
}

/// Reads an entry object, leaving a structured [`ParseError`] in `failure` when it refuses
/// one, so that [`Entry::from_json_line`] can report more than serde's message.
struct EntryVisitor<'a> {
    failure: &'a mut Option<ParseError>,
}

impl EntryVisitor<'_> {
    fn fail<E: de::Error>(&mut self, error: ParseError) -> E {
        let err = E::custom(&error);
        *self.failure = Some(error);
        err
    }

    /// Stores a value in its slot, refusing a second occurrence of the field.
    fn take<'de, A: MapAccess<'de>, T, S>(
        &mut self,
        map: &mut A,
        slot: &mut Option<T>,
        field: &'static str,
        seed: S,
    ) -> Result<(), A::Error>
    where
        S: DeserializeSeed<'de, Value = T>,
    {
        if slot.is_some() {
            return Err(self.fail(ParseError::Duplicate { field }));
        }
        match map.next_value_seed(seed) {
            Ok(v) => {
                *slot = Some(v);
                Ok(())
            }
            Err(e) => Err(self.fail(ParseError::Invalid {
                field,
                reason: e.to_string(),
            })),
        }
    }

    fn required<E: de::Error, T>(&mut self, slot: Option<T>, field: &'static str) -> Result<T, E> {
        match slot {
            Some(v) => Ok(v),
            None => Err(self.fail(ParseError::Missing { field })),
        }
    }
}

impl<'de> Visitor<'de> for EntryVisitor<'_> {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an audit entry object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Entry, A::Error> {
        use std::marker::PhantomData as P;

        let mut seq: Option<u64> = None;
        let mut time: Option<String> = None;
        let mut time_ms: Option<i64> = None;
        let mut actor: Option<String> = None;
        let mut kind: Option<String> = None;
        let mut procedure: Option<Option<String>> = None;
        let mut break_id: Option<Option<String>> = None;
        let mut payload: Option<Value> = None;
        let mut prev_hash: Option<Hash> = None;
        let mut hash: Option<Hash> = None;

        while let Some(key) = map.next_key::<Field>()? {
            let m = &mut map;
            match key {
                Field::Seq => self.take(m, &mut seq, "seq", P)?,
                Field::Time => self.take(m, &mut time, "time", P)?,
                Field::TimeMs => self.take(m, &mut time_ms, "time_ms", P)?,
                Field::Actor => self.take(m, &mut actor, "actor", P)?,
                Field::Kind => self.take(m, &mut kind, "kind", P)?,
                Field::Procedure => self.take(m, &mut procedure, "procedure", P)?,
                Field::Break => self.take(m, &mut break_id, "break", P)?,
                Field::Payload => {
                    self.take(m, &mut payload, "payload", StrictValue { depth: 0 })?
                }
                Field::PrevHash => self.take(m, &mut prev_hash, "prev_hash", P)?,
                Field::Hash => self.take(m, &mut hash, "hash", P)?,
                Field::Unknown(field) => return Err(self.fail(ParseError::Unknown { field })),
            }
        }

        let entry = Entry {
            seq: self.required(seq, "seq")?,
            time_ms: self.required(time_ms, "time_ms")?,
            actor: self.required(actor, "actor")?,
            kind: self.required(kind, "kind")?,
            procedure: self.required(procedure, "procedure")?,
            break_id: self.required(break_id, "break")?,
            payload: self.required(payload, "payload")?,
            prev_hash: self.required(prev_hash, "prev_hash")?,
            hash: self.required(hash, "hash")?,
        };
        let time = self.required(time, "time")?;

        if !entry.payload.is_object() {
            return Err(self.fail(ParseError::Invalid {
                field: "payload",
                reason: "must be a JSON object".into(),
            }));
        }
        // `time` is not hashed, so it must be exactly what `time_ms` says, or a reader could
        // be shown a forged time on an entry that verifies.
        match format_rfc3339_ms(entry.time_ms) {
            None => Err(self.fail(ParseError::Invalid {
                field: "time_ms",
                reason: "outside the years 0000..=9999".into(),
            })),
            Some(expected) if expected != time => Err(self.fail(ParseError::Invalid {
                field: "time",
                reason: format!("{time:?} does not match time_ms, which is {expected}"),
            })),
            Some(_) => Ok(entry),
        }
    }
}

/// Reads a JSON value the way the hash sees it: refuses floats, duplicate object keys and
/// nesting deeper than [`MAX_DEPTH`], so that no two readers can disagree on a payload.
#[derive(Clone, Copy)]
struct StrictValue {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value without floats or duplicate keys")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Err(E::custom(format_args!(
            "number {} is not an integer in the 64-bit range",
            Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string())
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(inner)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

impl StrictValue {
    /// The seed for the children of an array or object at this depth.
    fn nested<E: de::Error>(self) -> Result<StrictValue, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "arrays and objects nest deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(StrictValue {
            depth: self.depth + 1,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::entry::{Draft, append};
    use serde_json::json;

    fn sample() -> Entry {
        append(
            None,
            Draft {
                time_ms: 1_795_910_341_123,
                actor: "alice".into(),
                kind: "break.requested".into(),
                procedure: Some("db-root".into()),
                break_id: None,
                payload: json!({"z": [1, "two", null], "a": {"y": true, "x": "é\n"}}),
            },
        )
        .unwrap()
    }

    #[test]
    fn line_round_trip_and_matches_serde() {
        let e = sample();
        let line = e.to_json_line();
        assert!(line.starts_with(
            r#"{"seq":1,"time":"2026-11-28T23:59:01.123Z","time_ms":1795910341123,"actor":"alice","kind":"break.requested","procedure":"db-root","break":null,"payload":{"a":{"x":"é\n","y":true},"z":[1,"two",null]},"prev_hash":"0000"#
        ), "{line}");
        assert!(!line.contains('\n'));
        assert_eq!(Entry::from_json_line(&line), Ok(e.clone()));
        assert_eq!(serde_json::to_string(&e).unwrap(), line);
        assert_eq!(serde_json::from_str::<Entry>(&line).unwrap(), e);
        let value = serde_json::to_value(&e).unwrap();
        assert_eq!(serde_json::from_value::<Entry>(value).unwrap(), e);
    }

    /// Replaces the first occurrence of `from` in the sample line and returns the parse error.
    fn parse_edited(from: &str, to: &str) -> ParseError {
        let line = sample().to_json_line();
        assert!(line.contains(from), "{from} not in {line}");
        Entry::from_json_line(&line.replacen(from, to, 1)).unwrap_err()
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (r#""seq":1"#, r#""seq":"1""#, Some("seq")),
            (r#""seq":1"#, r#""seq":-1"#, Some("seq")),
            (r#""seq":1,"#, "", Some("seq")),
            (r#""actor":"alice""#, r#""actor":1"#, Some("actor")),
            (
                r#""break":null"#,
                r#""break":null,"break":null"#,
                Some("break"),
            ),
            (r#""break":null"#, r#""brake":null"#, Some("brake")),
            (r#""procedure":"db-root","#, "", Some("procedure")),
            (
                r#""time":"2026-11-28T23:59:01.123Z""#,
                r#""time":"2026-11-28T23:59:01.124Z""#,
                Some("time"),
            ),
            (
                r#""time_ms":1795910341123"#,
                r#""time_ms":1795910341123.0"#,
                Some("time_ms"),
            ),
            (r#""z":[1,"#, r#""z":[1.5,"#, Some("payload")),
            (r#""z":[1,"#, r#""a":2,"z":[1,"#, Some("payload")),
            (r#""prev_hash":"0"#, r#""prev_hash":"X"#, Some("prev_hash")),
            (r#""hash":""#, r#""hash":"#, Some("hash")),
            (r#"{"seq""#, r#"{seq"#, None),
        ];
        for (from, to, field) in cases {
            let err = parse_edited(from, to);
            assert_eq!(err.field(), *field, "{from} -> {to}: {err}");
            if let Some(field) = field {
                assert!(err.to_string().contains(field), "{err}");
            }
        }
    }

    #[test]
    fn payload_must_be_an_object() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["payload"] = json!([1]);
        let err = Entry::from_json_line(&value.to_string()).unwrap_err();
        assert_eq!(err.field(), Some("payload"), "{err}");
    }

    #[test]
    fn refuses_non_objects_trailing_text_and_deep_payloads() {
        for bad in ["", "  ", "[]", "1", "null", "{", "{} {}", "\"x\""] {
            assert!(Entry::from_json_line(bad).is_err(), "{bad:?}");
        }
        let line = sample().to_json_line();
        assert!(Entry::from_json_line(&format!("{line} x")).is_err());
        assert!(Entry::from_json_line(&format!(" {line} ")).is_ok());
        let deep = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let line2 = line.replacen(r#""z":[1,"#, &format!(r#""w":{deep},"z":[1,"#), 1);
        assert_eq!(
            Entry::from_json_line(&line2).unwrap_err().field(),
            Some("payload")
        );
        let ok = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        let line3 = line.replacen(r#""z":[1,"#, &format!(r#""w":{ok},"z":[1,"#), 1);
        assert!(Entry::from_json_line(&line3).is_ok());
    }
}
