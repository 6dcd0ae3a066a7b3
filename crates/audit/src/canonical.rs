//! Canonical JSON: the one byte form of a payload that the entry hash covers.
//!
//! The rules are written out here rather than borrowed from serde_json's serializer, so that
//! they cannot change with a serde_json feature flag (`preserve_order`, `arbitrary_precision`)
//! switched on elsewhere in the workspace. `docs/audit-log-format.md` states the same rules.

use serde_json::Value;

/// How deep arrays and objects may nest inside a payload (the payload object itself is depth 1).
pub const MAX_DEPTH: usize = 64;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// The value holds a number that is not an integer in the i64 or u64 range; floats are
    /// refused because their text form differs between languages. Store them as strings.
    #[error("number {0} is not an integer in the 64-bit range; store it as a string")]
    NotInteger(String),
    /// Arrays and objects nest deeper than [`MAX_DEPTH`].
    #[error("arrays and objects nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Returns the canonical JSON text of `value`.
///
/// Object keys are sorted by their UTF-8 bytes at every depth; there is no whitespace;
/// strings escape `"`, `\` and control characters exactly as serde_json's compact writer
/// does (`\b \t \n \f \r` short forms, other controls as `\u00XX` with lowercase hex) and
/// leave everything else, including non-ASCII, as raw UTF-8; integers are plain decimal.
pub fn canonical_json(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_canonical(&mut out, value)?;
    Ok(out)
}

/// Appends the canonical JSON text of `value` to `out`; on error `out` holds a partial write.
pub(crate) fn write_canonical(out: &mut impl Text, value: &Value) -> Result<(), CanonicalError> {
    write_value(out, value, Mode::Canonical, 0)
}

/// Appends `value` for the export line: canonical where the value has a canonical form, and
/// serde_json's number text where it does not, so that writing a line never fails.
pub(crate) fn write_lenient(out: &mut String, value: &Value) {
    // Lenient mode never returns an error; ignoring the Ok is the whole point.
    let _ = write_value(out, value, Mode::Lenient, 0);
}

/// Where canonical text is written: a `String` (the export line, [`canonical_json`]) or the
/// byte buffer an entry's hash input is assembled in (no UTF-8 check, no second copy).
pub(crate) trait Text {
    /// Appends ASCII or UTF-8 text.
    fn put_str(&mut self, s: &str);
    /// Appends one ASCII byte.
    fn put_ascii(&mut self, b: u8);
}

impl Text for String {
    fn put_str(&mut self, s: &str) {
        self.push_str(s);
    }

    fn put_ascii(&mut self, b: u8) {
        self.push(char::from(b));
    }
}

impl Text for Vec<u8> {
    fn put_str(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }

    fn put_ascii(&mut self, b: u8) {
        self.push(b);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Canonical,
    Lenient,
}

fn write_value(
    out: &mut impl Text,
    value: &Value,
    mode: Mode,
    depth: usize,
) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.put_str("null"),
        Value::Bool(true) => out.put_str("true"),
        Value::Bool(false) => out.put_str("false"),
        Value::Number(n) => {
            // Print from the integer, not from serde_json's text, so the decimal form is ours.
            if let Some(i) = n.as_i64() {
                write_integer(out, i < 0, i.unsigned_abs());
            } else if let Some(u) = n.as_u64() {
                write_integer(out, false, u);
            } else if mode == Mode::Lenient {
                out.put_str(&n.to_string());
            } else {
                return Err(CanonicalError::NotInteger(n.to_string()));
            }
        }
        Value::String(s) => write_json_string(out, s),
        Value::Array(items) => {
            if depth >= MAX_DEPTH && mode == Mode::Canonical {
                return Err(CanonicalError::TooDeep);
            }
            out.put_ascii(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put_ascii(b',');
                }
                write_value(out, item, mode, depth + 1)?;
            }
            out.put_ascii(b']');
        }
        Value::Object(map) => {
            if depth >= MAX_DEPTH && mode == Mode::Canonical {
                return Err(CanonicalError::TooDeep);
            }
            out.put_ascii(b'{');
            // `str`'s ordering is byte-wise over UTF-8, which is the order the format requires.
            // serde_json's default map is a BTreeMap, already in that order, so the keys are
            // only copied out and sorted when they are not (`preserve_order` switched on by
            // some other crate); either way they are written in the same order.
            if map.keys().is_sorted_by(|a, b| a.as_bytes() < b.as_bytes()) {
                write_members(out, map.iter(), mode, depth)?;
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                write_members(out, entries.into_iter(), mode, depth)?;
            }
            out.put_ascii(b'}');
        }
    }
    Ok(())
}

/// Writes an object's members, already in key order, without the braces.
fn write_members<'a>(
    out: &mut impl Text,
    members: impl Iterator<Item = (&'a String, &'a Value)>,
    mode: Mode,
    depth: usize,
) -> Result<(), CanonicalError> {
    for (i, (key, item)) in members.enumerate() {
        if i > 0 {
            out.put_ascii(b',');
        }
        write_json_string(out, key);
        out.put_ascii(b':');
        write_value(out, item, mode, depth + 1)?;
    }
    Ok(())
}

/// Appends an integer as plain decimal: `-` when `negative`, then the digits of `magnitude`.
///
/// Written by hand rather than through `fmt`, which costs more than the rest of a small
/// payload's canonical form; the digits are the same as `Display`'s (checked in the tests).
fn write_integer(out: &mut impl Text, negative: bool, mut magnitude: u64) {
    // u64::MAX has 20 digits.
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        // `magnitude % 10` is below 10, so the cast cannot truncate.
        buf[at] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if negative {
        out.put_ascii(b'-');
    }
    // Only ASCII digits were written, so the slice is always valid UTF-8.
    out.put_str(std::str::from_utf8(&buf[at..]).unwrap_or_default());
}

/// Whether `b` is escaped inside a JSON string: `"`, `\\` and the control characters.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Appends `s` as a JSON string literal with the canonical escapes.
pub(crate) fn write_json_string(out: &mut impl Text, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put_ascii(b'"');
    let bytes = s.as_bytes();
    // Almost every string needs no escape: find that out in one branch-free pass (which the
    // compiler vectorizes) and copy the string whole, rather than testing byte by byte.
    if !bytes.iter().fold(false, |seen, &b| seen | needs_escape(b)) {
        out.put_str(s);
        out.put_ascii(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // Only ASCII bytes are escaped, and UTF-8 continuation bytes are never ASCII, so the
        // slices below always fall on character boundaries.
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.put_str(&s[start..i]);
        if short.is_empty() {
            out.put_str("\\u00");
            out.put_ascii(HEX[usize::from(b >> 4)]);
            out.put_ascii(HEX[usize::from(b & 0x0f)]);
        } else {
            out.put_str(short);
        }
        start = i + 1;
    }
    out.put_str(&s[start..]);
    out.put_ascii(b'"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parses `input` as JSON and checks its canonical form (or error) against `expect`.
    fn check(input: &str, expect: &str) {
        let value: Value = serde_json::from_str(input).unwrap();
        let got = match canonical_json(&value) {
            Ok(s) => s,
            // Only the variant: the number's text in the message depends on serde_json features.
            Err(CanonicalError::NotInteger(_)) => "error: not an integer".into(),
            Err(CanonicalError::TooDeep) => "error: too deep".into(),
        };
        assert_eq!(got, expect, "canonical form of {input}");
    }

    #[test]
    fn tricky_cases() {
        let cases: &[(&str, &str)] = &[
            (r#"{}"#, r#"{}"#),
            (r#"[]"#, r#"[]"#),
            (
                r#" { "b" : 1 , "a" : [ 2 , { } , [ ] ] } "#,
                r#"{"a":[2,{},[]],"b":1}"#,
            ),
            // Nested objects are sorted too; arrays keep their order.
            (
                r#"{"z":{"y":1,"x":{"b":null,"a":true}},"a":[3,1,2]}"#,
                r#"{"a":[3,1,2],"z":{"x":{"a":true,"b":null},"y":1}}"#,
            ),
            // Byte order: uppercase before lowercase, shorter prefix first, non-ASCII last.
            (
                r#"{"b":0,"B":0,"a":0,"ab":0,"é":0,"z":0,"":0}"#,
                r#"{"":0,"B":0,"a":0,"ab":0,"b":0,"z":0,"é":0}"#,
            ),
            // UTF-8 byte order differs from UTF-16 order: U+FF61 (EF BD A1) sorts before
            // U+1F600 (F0 9F 98 80) here, though UTF-16 would put the surrogate pair first.
            (
                "{\"\u{1F600}\":1,\"\u{FF61}\":2}",
                "{\"\u{FF61}\":2,\"\u{1F600}\":1}",
            ),
            // Escapes: short forms, \u00XX with lowercase hex, DEL and '/' left alone.
            (
                r#""\"\\\/\b\f\n\r\t\u0000\u001f\u001F\u007f""#,
                "\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\\u001f\u{7f}\"",
            ),
            // Non-ASCII stays raw UTF-8, including escaped input and surrogate pairs.
            (
                r#""caf\u00e9 \ud83d\ude00 日本""#,
                "\"café \u{1F600} 日本\"",
            ),
            // Integers: plain decimal, full i64 and u64 range.
            (
                r#"[0,-1,-9223372036854775808,18446744073709551615]"#,
                r#"[0,-1,-9223372036854775808,18446744073709551615]"#,
            ),
            (r#"[true,false,null,""]"#, r#"[true,false,null,""]"#),
            // Floats, exponents and -0 (which serde_json reads as a float) are refused.
            (r#"{"a":1.5}"#, "error: not an integer"),
            (r#"[1.0]"#, "error: not an integer"),
            (r#"[1e3]"#, "error: not an integer"),
            (r#"[-0]"#, "error: not an integer"),
            (r#"[18446744073709551616]"#, "error: not an integer"),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
    }

    #[test]
    fn escapes_every_control_character_like_serde_json() {
        for b in 0u8..=0x7f {
            let s = String::from(char::from(b));
            let mut ours = String::new();
            write_json_string(&mut ours, &s);
            assert_eq!(ours, serde_json::to_string(&s).unwrap(), "byte {b:#04x}");
        }
        let mixed = "a\u{0}b\"c\\d\u{1b}é\u{2028}😀";
        let mut ours = String::new();
        write_json_string(&mut ours, mixed);
        assert_eq!(ours, serde_json::to_string(mixed).unwrap());
    }

    #[test]
    fn depth_limit() {
        let mut v = json!(1);
        for _ in 0..MAX_DEPTH {
            v = json!([v]);
        }
        assert!(canonical_json(&v).is_ok());
        let v = json!([v]);
        assert_eq!(canonical_json(&v), Err(CanonicalError::TooDeep));
        let mut lenient = String::new();
        write_lenient(&mut lenient, &v);
        assert!(lenient.starts_with("[[[["));
    }

    #[test]
    fn integers_print_like_display() {
        let values: [i64; 9] = [0, 1, -1, 9, 10, -10, 1_800_000_000_000, i64::MIN, i64::MAX];
        for v in values {
            assert_eq!(canonical_json(&json!(v)).unwrap(), v.to_string());
        }
        for v in [u64::MAX, u64::MAX - 1, 1 << 63, 10_000_000_000_000_000_000] {
            assert_eq!(canonical_json(&json!(v)).unwrap(), v.to_string());
        }
        // The byte-buffer writer produces the same text as the String writer.
        let value = json!({"z": [i64::MIN, u64::MAX, "é\u{1}"], "a": {"k": null}});
        let mut bytes = Vec::new();
        write_canonical(&mut bytes, &value).unwrap();
        assert_eq!(bytes, canonical_json(&value).unwrap().into_bytes());
    }

    proptest::proptest! {
        #[test]
        fn any_integer_prints_like_display(i in proptest::prelude::any::<i64>(), u in proptest::prelude::any::<u64>()) {
            proptest::prop_assert_eq!(canonical_json(&json!(i)).unwrap(), i.to_string());
            proptest::prop_assert_eq!(canonical_json(&json!(u)).unwrap(), u.to_string());
        }
    }

    #[test]
    fn lenient_writes_floats() {
        let mut out = String::new();
        write_lenient(&mut out, &json!({"b": 1.5, "a": 2}));
        assert_eq!(out, r#"{"a":2,"b":1.5}"#);
    }
}
