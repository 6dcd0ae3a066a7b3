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
pub(crate) fn write_canonical(out: &mut String, value: &Value) -> Result<(), CanonicalError> {
    write_value(out, value, Mode::Canonical, 0)
}

/// Appends `value` for the export line: canonical where the value has a canonical form, and
/// serde_json's number text where it does not, so that writing a line never fails.
pub(crate) fn write_lenient(out: &mut String, value: &Value) {
    // Lenient mode never returns an error; ignoring the Ok is the whole point.
    let _ = write_value(out, value, Mode::Lenient, 0);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Canonical,
    Lenient,
}

fn write_value(
    out: &mut String,
    value: &Value,
    mode: Mode,
    depth: usize,
) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            // Print from the integer, not from serde_json's text, so the decimal form is ours.
            if let Some(i) = n.as_i64() {
                push_display(out, i);
            } else if let Some(u) = n.as_u64() {
                push_display(out, u);
            } else if mode == Mode::Lenient {
                push_display(out, n);
            } else {
                return Err(CanonicalError::NotInteger(n.to_string()));
            }
        }
        Value::String(s) => write_json_string(out, s),
        Value::Array(items) => {
            if depth >= MAX_DEPTH && mode == Mode::Canonical {
                return Err(CanonicalError::TooDeep);
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, mode, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            if depth >= MAX_DEPTH && mode == Mode::Canonical {
                return Err(CanonicalError::TooDeep);
            }
            // `str`'s ordering is byte-wise over UTF-8, which is the order the format requires.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, key);
                out.push(':');
                write_value(out, item, mode, depth + 1)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn push_display(out: &mut String, v: impl std::fmt::Display) {
    use std::fmt::Write;
    // Writing into a String cannot fail.
    let _ = write!(out, "{v}");
}

/// Appends `s` as a JSON string literal with the canonical escapes.
pub(crate) fn write_json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let bytes = s.as_bytes();
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
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
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
    fn lenient_writes_floats() {
        let mut out = String::new();
        write_lenient(&mut out, &json!({"b": 1.5, "a": 2}));
        assert_eq!(out, r#"{"a":2,"b":1.5}"#);
    }
}
