//! A Bind message's parameter values as they are recorded with the statement they run.
//!
//! Text-format values are recorded as the client sent them. Binary-format values are turned
//! into their text form when the statement's Parse named the parameter's type and the type is
//! one of the common ones below (what an application binds most: integers, floats, numerics,
//! booleans, text, UUIDs, JSON, dates, times and timestamps); any other is recorded as `\x` and its bytes in hex,
//! like PostgreSQL shows a `bytea`. A value longer than [`VALUE_MAX`] bytes is cut there and
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
        _ => return None,
    })
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
