//! A Bind message's parameter values as they are recorded with the statement they run.
//!
//! Text-format values are recorded as the client sent them. Binary-format values are turned
//! into their text form when the statement's Parse named the parameter's type and the type is
//! one of the common ones below (what an application binds most: integers, floats, numerics,
//! booleans, text, UUIDs, JSON, dates, times, timestamps, intervals and arrays of these); any
//! other is recorded as `\x` and its bytes in hex, like PostgreSQL shows a `bytea`. A value longer than [`VALUE_MAX`] bytes is cut there and
//! says how long it was, so one large value cannot swell the recording.
//!
//! Written here rather than with `postgres-types`: that crate decodes into Rust types chosen
//! at compile time; the gateway needs any value, of a type known only at run time, as text,
//! and must never fail on bytes a client made up (a value that does not decode is shown in
//! hex).

use std::fmt::Write as _;

use breakglass_domain::Timestamp;

use crate::wire::BindParams;

/// Bytes of a value recorded at most.
pub const VALUE_MAX: usize = 1024;
/// Bytes of one statement's values recorded at most (a Bind may carry 65,535 values, and a
/// session may keep 10,000 portals): the values after are recorded as [`NOT_RECORDED`].
pub const PARAMS_MAX: usize = 64 * 1024;
/// What stands for a value past [`PARAMS_MAX`].
pub const NOT_RECORDED: &str = "(not recorded: this statement's values passed 64 KiB)";

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// The years 0000 to 9999 in Unix milliseconds (what `Timestamp`'s display can write).
const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;

/// The values of `params` in text form (`None`: NULL); `types` are the parameter types the
/// statement's Parse named, in order (missing or `0`: unknown).
pub fn render(params: &BindParams<'_>, types: &[u32]) -> Vec<Option<String>> {
    let mut total = 0usize;
    params
        .iter()
        .enumerate()
        .map(|(i, (binary, value))| {
            value.map(|v| {
                if total >= PARAMS_MAX {
                    return NOT_RECORDED.to_owned();
                }
                let oid = types.get(i).copied().unwrap_or(0);
                let text = if binary { binary_text(oid, v) } else { None };
                let text = text.unwrap_or_else(|| plain(v, binary));
                total += text.len();
                text
            })
        })
        .collect()
}

/// A text-format value as sent (cut at [`VALUE_MAX`]), or hex when it is not UTF-8 or is
/// in binary format of a type not decoded.
fn plain(v: &[u8], binary: bool) -> String {
    let shown = &v[..v.len().min(VALUE_MAX)];
    let mut out = match std::str::from_utf8(shown) {
        Ok(s) if !binary => s.to_owned(),
        // Cut inside a character: up to the last whole one.
        Err(e) if !binary && e.error_len().is_none() => {
            String::from_utf8_lossy(&shown[..e.valid_up_to()]).into_owned()
        }
        _ => hex(shown),
    };
    if v.len() > shown.len() {
        let _ = write!(out, "… ({} bytes)", v.len());
    }
    out
}

/// Bytes of a `COPY … FROM STDIN`'s data recorded at most.
pub const COPY_MAX: usize = 64 * 1024;

/// A `COPY … FROM STDIN`'s data as recorded: its first [`COPY_MAX`] bytes (`total` in all),
/// as text (text and CSV formats; bytes that are not UTF-8 replaced) or, in binary format,
/// `\x` and hex of its first half as many.
pub fn copy_text(kept: &[u8], total: u64, binary: bool) -> String {
    let mut out = if binary {
        hex(&kept[..kept.len().min(COPY_MAX / 2)])
    } else {
        String::from_utf8_lossy(kept).into_owned()
    };
    let shown = if binary {
        kept.len().min(COPY_MAX / 2)
    } else {
        kept.len()
    };
    if total > shown as u64 {
        let _ = write!(out, "… ({total} bytes)");
    }
    out
}

fn hex(v: &[u8]) -> String {
    let mut out = String::with_capacity(2 + 2 * v.len());
    out.push_str("\\x");
    for b in v {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The text form of a binary-format value of type `oid`, when the type is one decoded here
/// and the bytes are a valid value of it.
fn binary_text(oid: u32, v: &[u8]) -> Option<String> {
    let int = |n: usize| -> Option<i64> {
        (v.len() == n).then(|| {
            let mut b = [0u8; 8];
            b[8 - n..].copy_from_slice(v);
            // Sign-extend from n bytes.
            let shift = 64 - 8 * u32::try_from(n).unwrap_or(8);
            (i64::from_be_bytes(b) << shift) >> shift
        })
    };
    Some(match oid {
        // bool
        16 => match v {
            [0] => "false".into(),
            [1] => "true".into(),
            _ => return None,
        },
        // int8, int2, int4
        20 => int(8)?.to_string(),
        21 => int(2)?.to_string(),
        23 => int(4)?.to_string(),
        // oid
        26 => u32::from_be_bytes(v.try_into().ok()?).to_string(),
        // float4, float8
        700 => f32::from_be_bytes(v.try_into().ok()?).to_string(),
        701 => f64::from_be_bytes(v.try_into().ok()?).to_string(),
        // text, varchar, bpchar, name, json, unknown: the text itself
        25 | 1043 | 1042 | 19 | 114 | 705 => return utf8(v),
        // jsonb: a version byte (1), then the text
        3802 => match v.split_first() {
            Some((1, rest)) => return utf8(rest),
            _ => return None,
        },
        // uuid
        2950 => {
            let h = hex(v.get(..16).filter(|_| v.len() == 16)?);
            let h = &h[2..];
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        }
        // numeric
        1700 => numeric(v)?,
        // time: microseconds since midnight
        1083 => {
            let us = int(8)?;
            (0..=86_400_000_000).contains(&us).then_some(())?;
            let (s, frac) = (us / 1_000_000, us % 1_000_000);
            format!(
                "{:02}:{:02}:{:02}.{frac:06}",
                s / 3600,
                s % 3600 / 60,
                s % 60
            )
        }
        // date: days since 2000-01-01
        1082 => match int(4)? {
            n if n == i64::from(i32::MAX) => "infinity".into(),
            n if n == i64::from(i32::MIN) => "-infinity".into(),
            days => {
                let ms = days.checked_add(10_957)?.checked_mul(86_400_000)?;
                (MIN_MS..=MAX_MS).contains(&ms).then_some(())?;
                Timestamp(ms).to_string()[..10].to_owned()
            }
        },
        // timestamp, timestamptz: microseconds since 2000-01-01
        1114 | 1184 => match int(8)? {
            i64::MAX => "infinity".into(),
            i64::MIN => "-infinity".into(),
            us => {
                let unix_us = us.checked_add(PG_EPOCH_US)?;
                let ms = unix_us.div_euclid(1000);
                (MIN_MS..=MAX_MS).contains(&ms).then_some(())?;
                let day_and_time = &Timestamp(ms).to_string()[..19];
                let zone = if oid == 1184 { "Z" } else { "" };
                format!("{day_and_time}.{:06}{zone}", unix_us.rem_euclid(1_000_000))
            }
        },
        // interval: microseconds, days, months
        1186 => interval(v)?,
        // bytea: as PostgreSQL shows it (inside an array; alone it is shown so anyway)
        17 => plain(v, true),
        oid if ARRAY_TYPES.contains(&oid) => array(v)?,
        _ => return None,
    })
}

/// Array types whose binary values are turned into text (their elements' types are among
/// those above): `bool[]`, `bytea[]`, `name[]`, `int2[]`, `int4[]`, `text[]`, `bpchar[]`,
/// `varchar[]`, `int8[]`, `float4[]`, `float8[]`, `oid[]`, `json[]`, `date[]`, `time[]`,
/// `timestamp[]`, `timestamptz[]`, `interval[]`, `numeric[]`, `uuid[]`, `jsonb[]`.
const ARRAY_TYPES: [u32; 21] = [
    1000, 1001, 1003, 1005, 1007, 1009, 1014, 1015, 1016, 1021, 1022, 1028, 199, 1182, 1183, 1115,
    1185, 1187, 1231, 2951, 3807,
];

/// Dimensions an array may have (PostgreSQL's `MAXDIM`).
const ARRAY_MAX_DIMS: usize = 6;

/// A binary array (`ndim`, a null flag, the element type, each dimension's length and lower
/// bound, then each element's length, -1 for NULL, and bytes) in PostgreSQL's text form:
/// `{1,2,NULL}`, `{{1,2},{3,4}}`, `[0:1]={a,b}`, elements quoted as `array_out` quotes them.
/// `None` (shown in hex) when the bytes are not an array of a type decoded here. Past
/// [`VALUE_MAX`] characters it is cut and says how many bytes the value had.
fn array(v: &[u8]) -> Option<String> {
    let mut at = 0usize;
    let i32_at = |at: &mut usize| -> Option<i32> {
        let b = v.get(*at..*at + 4)?;
        *at += 4;
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let ndim = usize::try_from(i32_at(&mut at)?).ok()?;
    let _has_nulls = i32_at(&mut at)?;
    let element = u32::from_be_bytes(i32_at(&mut at)?.to_be_bytes());
    if ndim > ARRAY_MAX_DIMS || ARRAY_TYPES.contains(&element) {
        return None;
    }
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        let len = usize::try_from(i32_at(&mut at)?).ok()?;
        let lower = i32_at(&mut at)?;
        dims.push((len, lower));
    }
    // Every element takes at least its 4-byte length: a count the bytes cannot hold is not
    // an array (and is not looped over).
    let count = dims
        .iter()
        .try_fold(1usize, |n, (len, _)| n.checked_mul(*len))?;
    if ndim > 0 && count > (v.len() - at) / 4 {
        return None;
    }
    let mut out = String::new();
    if dims.iter().any(|(_, lower)| *lower != 1) {
        for (len, lower) in &dims {
            let upper = i64::from(*lower) + i64::try_from(*len).ok()? - 1;
            let _ = write!(out, "[{lower}:{upper}]");
        }
        out.push('=');
    }
    if ndim == 0 || count == 0 {
        out.push_str("{}");
        return Some(out);
    }
    for _ in 0..ndim {
        out.push('{');
    }
    for n in 0..count {
        if n > 0 {
            // Close and open one brace per dimension this element starts anew.
            let mut stride = 1;
            let mut renewed = 0;
            for (len, _) in dims.iter().rev() {
                stride *= len;
                if n % stride != 0 {
                    break;
                }
                renewed += 1;
            }
            renewed = renewed.min(ndim - 1);
            out.extend(std::iter::repeat_n('}', renewed));
            out.push(',');
            out.extend(std::iter::repeat_n('{', renewed));
        }
        let len = i32_at(&mut at)?;
        if len == -1 {
            out.push_str("NULL");
        } else {
            let len = usize::try_from(len).ok()?;
            let bytes = v.get(at..at.checked_add(len)?)?;
            at += len;
            match (element, binary_text(element, bytes)?.as_str()) {
                // `boolout`, as arrays print their elements (alone, `bool::text` is `true`)
                (16, "true") => out.push('t'),
                (16, _) => out.push('f'),
                (_, text) => quote_element(&mut out, text),
            }
        }
        if out.len() > VALUE_MAX {
            let _ = write!(out, "… ({} bytes)", v.len());
            return Some(out);
        }
    }
    for _ in 0..ndim {
        out.push('}');
    }
    (at == v.len()).then_some(out)
}

/// An array element as `array_out` writes it: in double quotes, with `"` and `\` escaped,
/// when it is empty, `NULL`, or holds a brace, a quote, a backslash, a comma or white space.
fn quote_element(out: &mut String, text: &str) {
    let needs = text.is_empty()
        || text.eq_ignore_ascii_case("NULL")
        || text.bytes().any(|b| {
            matches!(
                b,
                b'{' | b'}' | b'"' | b'\\' | b',' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c
            )
        });
    if !needs {
        out.push_str(text);
        return;
    }
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A binary `interval` (microseconds, days, months) as PostgreSQL writes it with its default
/// `IntervalStyle` (`postgres`): `1 year 2 mons -3 days +04:05:06.5`, `00:00:00` when zero.
fn interval(v: &[u8]) -> Option<String> {
    let v: &[u8; 16] = v.try_into().ok()?;
    let micros = i64::from_be_bytes(v[..8].try_into().ok()?);
    let days = i32::from_be_bytes(v[8..12].try_into().ok()?);
    let months = i32::from_be_bytes(v[12..].try_into().ok()?);
    let mut out = String::new();
    let mut before_negative = false;
    let fields = [
        (i64::from(months / 12), "year"),
        (i64::from(months % 12), "mon"),
        (i64::from(days), "day"),
    ];
    for (value, unit) in fields {
        if value == 0 {
            continue;
        }
        let _ = write!(
            out,
            "{}{}{value} {unit}{}",
            if out.is_empty() { "" } else { " " },
            if before_negative && value > 0 {
                "+"
            } else {
                ""
            },
            if value == 1 { "" } else { "s" }
        );
        before_negative = value < 0;
    }
    // Hours, minutes, seconds and microseconds all carry the sign of the whole.
    let (hours, rest) = (micros / 3_600_000_000, micros % 3_600_000_000);
    let (minutes, rest) = (rest / 60_000_000, rest % 60_000_000);
    let (seconds, fraction) = (rest / 1_000_000, rest % 1_000_000);
    if out.is_empty() || micros != 0 {
        let sign = if micros < 0 {
            "-"
        } else if before_negative {
            "+"
        } else {
            ""
        };
        let _ = write!(
            out,
            "{}{sign}{:02}:{:02}:{:02}",
            if out.is_empty() { "" } else { " " },
            hours.unsigned_abs(),
            minutes.unsigned_abs(),
            seconds.unsigned_abs()
        );
        if fraction != 0 {
            let digits = format!("{:06}", fraction.unsigned_abs());
            let _ = write!(out, ".{}", digits.trim_end_matches('0'));
        }
    }
    Some(out)
}

/// A binary `numeric` in text: sign, weight (of the first base-10000 digit), display scale
/// and base-10000 digits. `None` (shown in hex) when the bytes are not one, or when it would
/// be longer than a recorded value may be.
fn numeric(v: &[u8]) -> Option<String> {
    let word = |i: usize| {
        v.get(2 * i..2 * i + 2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
    };
    let (ndigits, weight, sign, dscale) = (word(0)?, word(1)?, word(2)?, word(3)?);
    let weight = i32::from(i16::from_be_bytes(weight.to_be_bytes()));
    if v.len() != 8 + 2 * usize::from(ndigits) {
        return None;
    }
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => return None,
    }
    let digits: Vec<u16> = (0..usize::from(ndigits))
        .map(|i| word(4 + i))
        .collect::<Option<_>>()?;
    let dscale = usize::from(dscale);
    // Its text is about 4 × (weight + 1) + dscale characters.
    if digits.iter().any(|&d| d > 9999) || weight > 256 || dscale > 1000 {
        return None;
    }
    let digit = |i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    }
    for i in 0..=weight {
        let _ = if i == 0 {
            write!(out, "{}", digit(i))
        } else {
            write!(out, "{:04}", digit(i))
        };
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut i = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(i));
            i += 1;
        }
        out.push('.');
        out.push_str(&frac[..dscale]);
    }
    Some(out)
}

/// UTF-8 text, cut at [`VALUE_MAX`]; `None` (shown in hex) when it is not UTF-8.
fn utf8(v: &[u8]) -> Option<String> {
    std::str::from_utf8(v).ok()?;
    Some(plain(v, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ClientMessage, decode_client};

    /// A Bind of `values` (each `(binary, bytes)`), decoded.
    fn bind(values: &[(bool, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = b"\0\0".to_vec();
        b.extend(u16::try_from(values.len()).unwrap().to_be_bytes());
        for (binary, _) in values {
            b.extend(u16::from(*binary).to_be_bytes());
        }
        b.extend(u16::try_from(values.len()).unwrap().to_be_bytes());
        for (_, v) in values {
            match v {
                Some(v) => {
                    b.extend(i32::try_from(v.len()).unwrap().to_be_bytes());
                    b.extend(*v);
                }
                None => b.extend((-1i32).to_be_bytes()),
            }
        }
        b.extend([0, 0]);
        b
    }

    fn rendered(values: &[(bool, Option<&[u8]>)], types: &[u32]) -> Vec<Option<String>> {
        let body = bind(values);
        let ClientMessage::Bind { params, .. } = decode_client(b'B', &body).unwrap() else {
            panic!("not a Bind");
        };
        render(&params, types)
    }

    fn numeric_bytes(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        let weight = u16::from_be_bytes(weight.to_be_bytes());
        for w in [ndigits, weight, sign, dscale].iter().chain(digits) {
            b.extend(w.to_be_bytes());
        }
        b
    }

    #[test]
    fn binary_values_of_common_types_are_recorded_as_text() {
        let uuid = [
            0x67, 0xe5, 0x50, 0x44, 0x10, 0xb1, 0x42, 0x6f, 0x92, 0x47, 0xbb, 0x68, 0x0e, 0x5f,
            0xe0, 0xc8,
        ];
        // 2026-11-28 12:34:56.789012 UTC, in microseconds since 2000-01-01.
        let ts: i64 = (1_795_869_296_789_012) - PG_EPOCH_US;
        let cases: Vec<(u32, Vec<u8>, &str)> = vec![
            (16, vec![1], "true"),
            (16, vec![0], "false"),
            (21, (-7i16).to_be_bytes().to_vec(), "-7"),
            (23, 42i32.to_be_bytes().to_vec(), "42"),
            (23, (-42i32).to_be_bytes().to_vec(), "-42"),
            (20, i64::MIN.to_be_bytes().to_vec(), "-9223372036854775808"),
            (26, u32::MAX.to_be_bytes().to_vec(), "4294967295"),
            (700, 1.5f32.to_be_bytes().to_vec(), "1.5"),
            (701, (-0.25f64).to_be_bytes().to_vec(), "-0.25"),
            (25, "héllo".as_bytes().to_vec(), "héllo"),
            (1043, b"bulk".to_vec(), "bulk"),
            (3802, b"\x01{\"a\":1}".to_vec(), "{\"a\":1}"),
            (2950, uuid.to_vec(), "67e55044-10b1-426f-9247-bb680e5fe0c8"),
            (1082, 9_828i32.to_be_bytes().to_vec(), "2026-11-28"),
            (1082, (-1i32).to_be_bytes().to_vec(), "1999-12-31"),
            (1082, i32::MAX.to_be_bytes().to_vec(), "infinity"),
            (
                1184,
                ts.to_be_bytes().to_vec(),
                "2026-11-28T12:34:56.789012Z",
            ),
            (
                1114,
                ts.to_be_bytes().to_vec(),
                "2026-11-28T12:34:56.789012",
            ),
            (1114, i64::MIN.to_be_bytes().to_vec(), "-infinity"),
            (
                1083,
                45_296_000_007i64.to_be_bytes().to_vec(),
                "12:34:56.000007",
            ),
            // numeric: ndigits, weight, sign, dscale, base-10000 digits
            (1700, numeric_bytes(2, 0, 0, 2, &[12, 3400]), "12.34"),
            (
                1700,
                numeric_bytes(3, 1, 0x4000, 3, &[1, 2, 3450]),
                "-10002.345",
            ),
            (1700, numeric_bytes(1, -1, 0, 6, &[50]), "0.005000"),
            (1700, numeric_bytes(1, -2, 0, 8, &[7]), "0.00000007"),
            (1700, numeric_bytes(1, 2, 0, 0, &[3]), "300000000"),
            (1700, numeric_bytes(0, 0, 0, 0, &[]), "0"),
            (1700, numeric_bytes(0, 0, 0xC000, 0, &[]), "NaN"),
            (1700, numeric_bytes(0, 0, 0xF000, 0, &[]), "-Infinity"),
            // Unknown type, or bytes that are not a value of the type: hex.
            (0, vec![0, 0, 0, 7], "\\x00000007"),
            (1083, (-1i64).to_be_bytes().to_vec(), "\\xffffffffffffffff"),
            // A digit past 9999, a count that does not match, a weight too large to show.
            (
                1700,
                numeric_bytes(1, 0, 0, 0, &[10_000]),
                "\\x00010000000000002710",
            ),
            (
                1700,
                numeric_bytes(2, 0, 0, 0, &[1]),
                "\\x00020000000000000001",
            ),
            (
                1700,
                numeric_bytes(1, 300, 0, 0, &[1]),
                "\\x0001012c000000000001",
            ),
            (17, vec![0xde, 0xad], "\\xdead"),
            (23, vec![1, 2, 3], "\\x010203"),
            (16, vec![2], "\\x02"),
            (25, vec![0xff, 0xfe], "\\xfffe"),
            (3802, b"\x02{}".to_vec(), "\\x027b7d"),
            (
                1184,
                (i64::MAX - 1).to_be_bytes().to_vec(),
                "\\x7ffffffffffffffe",
            ),
        ];
        for (oid, bytes, text) in &cases {
            assert_eq!(
                rendered(&[(true, Some(bytes))], &[*oid]),
                [Some((*text).to_owned())],
                "type {oid}"
            );
        }
    }

    /// Arrays (dimensions, lower bounds, NULLs, quoting) and intervals, made by hand; what
    /// is not an array or interval of a decoded type stays in hex.
    #[test]
    fn arrays_and_intervals_are_recorded_as_text() {
        // int4[] {1,NULL,-3}
        let mut a = Vec::new();
        for w in [1i32, 1, 23, 3, 1, 4, 1, -1, 4, -3] {
            a.extend(w.to_be_bytes());
        }
        assert_eq!(
            rendered(&[(true, Some(&a))], &[1007]),
            [Some("{1,NULL,-3}".into())]
        );
        // text[][] {{a,"b c"},{"","\"q\""}} from lower bound 0 in the first dimension
        let mut t = Vec::new();
        for w in [2i32, 0, 25, 2, 0, 2, 1] {
            t.extend(w.to_be_bytes());
        }
        for e in ["a", "b c", "", "\"q\""] {
            t.extend(i32::try_from(e.len()).unwrap().to_be_bytes());
            t.extend(e.as_bytes());
        }
        assert_eq!(
            rendered(&[(true, Some(&t))], &[1009]),
            [Some("[0:1][1:2]={{a,\"b c\"},{\"\",\"\\\"q\\\"\"}}".into())]
        );
        // Empty; a count the bytes cannot hold; trailing bytes; an element type not decoded.
        let empty = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23];
        assert_eq!(
            rendered(&[(true, Some(&empty))], &[1007]),
            [Some("{}".into())]
        );
        let mut huge = Vec::new();
        for w in [1i32, 0, 23, i32::MAX, 1] {
            huge.extend(w.to_be_bytes());
        }
        let mut trailing = a.clone();
        trailing.push(0);
        let mut inet = a.clone();
        inet[8..12].copy_from_slice(&869u32.to_be_bytes());
        for bytes in [&huge, &trailing, &inet] {
            assert!(
                rendered(&[(true, Some(bytes))], &[1007])[0]
                    .as_deref()
                    .unwrap()
                    .starts_with("\\x"),
                "{bytes:?}"
            );
        }
        // A long array is cut past VALUE_MAX characters and says how long it was.
        let mut long = Vec::new();
        for w in [1i32, 0, 20, 1000, 1] {
            long.extend(w.to_be_bytes());
        }
        for n in 0..1000i64 {
            long.extend(8i32.to_be_bytes());
            long.extend(n.to_be_bytes());
        }
        let cut = rendered(&[(true, Some(&long))], &[1016])[0]
            .clone()
            .unwrap();
        assert!(cut.starts_with("{0,1,2,"), "{cut}");
        assert!(cut.ends_with(&format!("… ({} bytes)", long.len())), "{cut}");
        assert!(cut.len() < VALUE_MAX + 40, "{}", cut.len());
        // interval: microseconds, days, months
        let iv = |us: i64, days: i32, months: i32| {
            let mut b = us.to_be_bytes().to_vec();
            b.extend(days.to_be_bytes());
            b.extend(months.to_be_bytes());
            rendered(&[(true, Some(&b))], &[1186])[0].clone().unwrap()
        };
        assert_eq!(iv(0, 0, 0), "00:00:00");
        assert_eq!(
            iv(14_706_789_000, 3, 14),
            "1 year 2 mons 3 days 04:05:06.789"
        );
        assert_eq!(iv(7_200_000_000, -1, 0), "-1 days +02:00:00");
        assert_eq!(iv(-1, 0, 0), "-00:00:00.000001");
        assert_eq!(iv(0, -1, 1), "1 mon -1 days");
        assert_eq!(iv(360_000_000_000, 0, -10), "-10 mons +100:00:00");
    }

    /// Binary values PostgreSQL itself produced (its `*_send` functions) are recorded as the
    /// text it prints for them, for the types whose text form the recording shares with
    /// PostgreSQL (timestamps are recorded in RFC 3339 instead, floats as Rust prints them).
    #[tokio::test]
    async fn binary_values_read_as_postgresql_prints_them() {
        use sqlx::{Connection, Row};
        let test = "gateway params: binary values read as postgresql prints them";
        let Some(db) = breakglass_testkit::fresh_postgres(test).await else {
            return;
        };
        let mut c = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        let values = [
            ("int4send", "-42::int4"),
            ("int8send", "9223372036854775807::int8"),
            ("boolsend", "true"),
            ("numeric_send", "-10002.3450::numeric"),
            ("numeric_send", "0.00000007::numeric"),
            ("uuid_send", "'67e55044-10b1-426f-9247-bb680e5fe0c8'::uuid"),
            ("date_send", "'2026-11-28'::date"),
            ("textsend", "E'it''s «ü»'::text"),
            ("byteasend", "'\\x0102ff'::bytea"),
            (
                "interval_send",
                "'1 year 2 mons 3 days 04:05:06.789'::interval",
            ),
            ("interval_send", "'-1 days +02:00:00'::interval"),
            ("interval_send", "'-1 year 2 mons'::interval"),
            ("interval_send", "'1 day -00:00:01'::interval"),
            ("interval_send", "'-0.000001 seconds'::interval"),
            (
                "interval_send",
                "'-3 years -2 mons -1 days -00:00:05'::interval",
            ),
            ("interval_send", "'100 hours 0.5 seconds'::interval"),
            ("interval_send", "'0'::interval"),
            ("array_send", "'{1,2,NULL,-4}'::int4[]"),
            ("array_send", "'{{1,2},{3,4}}'::int8[]"),
            ("array_send", "'[0:1]={7,8}'::int2[]"),
            ("array_send", "'{{{1}},{{2}}}'::int4[]"),
            ("array_send", "'{}'::text[]"),
            (
                "array_send",
                "ARRAY['a b', '', 'NULL', 'null', E'x\"y', E'back\\\\slash', 'plain', 'ü', '{brace}', 'com,ma', E'tab\\tbed', NULL]::text[]",
            ),
            ("array_send", "ARRAY['x', 'y z']::varchar[]"),
            ("array_send", "'{true,false}'::bool[]"),
            ("array_send", "'{1.50,-2,NaN}'::numeric[]"),
            (
                "array_send",
                "'{67e55044-10b1-426f-9247-bb680e5fe0c8}'::uuid[]",
            ),
            ("array_send", "'{2026-11-28,infinity}'::date[]"),
            ("array_send", "ARRAY['\\x0102'::bytea]"),
            ("array_send", "ARRAY['{\"a\": [1, 2]}'::jsonb]"),
            ("array_send", "ARRAY['1 day'::interval, '-00:00:01', NULL]"),
        ];
        for (send, value) in values {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {send}(v) AS bin, v::text AS text, pg_typeof(v)::oid::int8 AS oid FROM (SELECT {value} AS v) AS x"
            )))
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{value}: {e}"));
            let bin: Vec<u8> = row.get("bin");
            let text: String = row.get("text");
            let oid = u32::try_from(row.get::<i64, _>("oid")).expect("oid");
            assert_eq!(
                rendered(&[(true, Some(&bin))], &[oid]),
                [Some(text.clone())],
                "{value} (type {oid}): PostgreSQL prints {text}"
            );
        }
        let _ = c.close().await;
        db.drop_db().await;
    }

    #[test]
    fn text_values_nulls_and_long_values() {
        // One byte, then two-byte characters: VALUE_MAX falls inside one.
        let long = format!("a{}", "ü".repeat(VALUE_MAX));
        let got = rendered(
            &[
                (false, Some(b"bulk")),
                (false, None),
                (true, None),
                (false, Some(long.as_bytes())),
                (false, Some(&[0xc3, 0x28])),
                (true, Some(&[7u8; 2 * VALUE_MAX])),
            ],
            &[],
        );
        assert_eq!(got[0].as_deref(), Some("bulk"));
        assert_eq!((got[1].as_deref(), got[2].as_deref()), (None, None));
        // Cut at a character boundary at most VALUE_MAX bytes in, with the whole length.
        let cut = got[3].as_deref().unwrap();
        let whole = format!("a{}", "ü".repeat(VALUE_MAX / 2 - 1));
        assert!(cut.starts_with(&format!("{whole}…")), "{cut}");
        assert!(cut.ends_with(&format!("… ({} bytes)", long.len())), "{cut}");
        assert_eq!(got[4].as_deref(), Some("\\xc328"), "not UTF-8: hex");
        let hexed = got[5].as_deref().unwrap();
        assert_eq!(hexed.len(), 2 + 2 * VALUE_MAX + "… (2048 bytes)".len());
        assert!(hexed.ends_with("… (2048 bytes)"));
    }

    /// Past 64 KiB of one statement's values, the rest are not recorded (NULLs stay NULL).
    #[test]
    fn one_statement_records_at_most_params_max() {
        let big = [b'v'; VALUE_MAX];
        let mut values: Vec<(bool, Option<&[u8]>)> = vec![(false, Some(&big[..])); 100];
        values.push((false, None));
        let got = rendered(&values, &[]);
        let kept = PARAMS_MAX / VALUE_MAX;
        let whole = "v".repeat(VALUE_MAX);
        assert!(got[..kept].iter().all(|v| v.as_deref() == Some(&whole[..])));
        assert!(
            got[kept..100]
                .iter()
                .all(|v| v.as_deref() == Some(NOT_RECORDED))
        );
        assert_eq!(got[100], None);
    }
}
