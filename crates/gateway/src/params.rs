//! A Bind message's parameter values as they are recorded with the statement they run.
//!
//! Text-format values are recorded as the client sent them. Binary-format values are turned
//! into their text form when the statement's Parse named the parameter's type and the type is
//! one of the common ones below (what an application binds most: integers, floats, numerics,
//! booleans, text, UUIDs, JSON, dates, times with and without a zone, timestamps, intervals,
//! network and MAC addresses, ranges and multiranges, the geometric types (points, line
//! segments, paths, boxes, polygons, lines, circles), `money`, and arrays of these), and
//! composite values (`record`, and a row of a type not known here when its bytes are one
//! whose every column is of a type decoded here); any other is recorded as `\x` and its
//! bytes in hex, like PostgreSQL shows a `bytea`. A value longer than
//! [`VALUE_MAX`] bytes is cut there and says how long it was, so one large value cannot swell
//! the recording.
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

/// A value recorded in hex from `v` (its first [`VALUE_MAX`] bytes), which stands for
/// `total` bytes (`v` redacted, [`crate::redact::bytes_keeping`]).
pub fn hex_value(v: &[u8], total: usize) -> String {
    let mut out = hex(&v[..v.len().min(VALUE_MAX)]);
    if total > VALUE_MAX || v.len() > VALUE_MAX {
        let _ = write!(out, "… ({total} bytes)");
    }
    out
}

/// The bytes of a value in `bytea`'s hex text format (`\x` and an even number of hex
/// digits, at least one byte's); `None` for any other text.
pub fn bytea_hex_text(v: &[u8]) -> Option<Vec<u8>> {
    let digits = v.strip_prefix(b"\\x")?;
    if digits.is_empty() || digits.len() % 2 != 0 {
        return None;
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    digits
        .chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
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
        // oid, xid, cid
        26 | 28 | 29 => u32::from_be_bytes(v.try_into().ok()?).to_string(),
        // xid8
        5069 => u64::from_be_bytes(v.try_into().ok()?).to_string(),
        // "char": one byte, in octal past ASCII (as `charout` writes it since PostgreSQL 15)
        18 => match v {
            [0] => String::new(),
            [b] if b.is_ascii() => char::from(*b).into(),
            [b] => format!("\\{b:03o}"),
            _ => return None,
        },
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
        1083 => time_of_day(int(8)?)?,
        // timetz: that, then the zone's offset in seconds west of UTC
        1266 => timetz(v)?,
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
        // inet, cidr
        869 => network(v, false)?,
        650 => network(v, true)?,
        // macaddr: 6 bytes; macaddr8: 8, or 6 that `macaddr8_recv` widens with `ff:fe`
        829 | 774 => {
            let bytes = match (oid, v.len()) {
                (829, 6) | (774, 8) => v.to_vec(),
                (774, 6) => [&v[..3], &[0xff, 0xfe], &v[3..]].concat(),
                _ => return None,
            };
            let pairs: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            pairs.join(":")
        }
        // point, lseg, path, box, polygon, line, circle
        600..=604 | 628 | 718 => geometry(oid, v)?,
        // money: an amount in hundredths
        790 => money(int(8)?),
        // record: a row of any composite type, each column with its own type
        2249 => record(v, false)?,
        oid if ARRAY_TYPES.contains(&oid) => array(v)?,
        oid => match (range_bound_type(oid), multirange_bound_type(oid)) {
            (Some(bound), _) => Range::read(bound, v)?.text(bound)?,
            (_, Some(bound)) => multirange(bound, v)?,
            // A type not known here (a client binding a row of a table or of a `CREATE TYPE
            // … AS (…)` names that type's own OID): a composite value when its bytes are
            // one, column by column, every column of a type decoded here.
            _ if oid != 0 => record(v, true)?,
            _ => return None,
        },
    })
}

/// `money` as PostgreSQL shows it where `lc_monetary` has two decimal places (the usual
/// ones, `C` among them), without the currency symbol and the thousands separators that
/// setting adds: `money_send` sends the amount in hundredths.
fn money(hundredths: i64) -> String {
    let sign = if hundredths < 0 { "-" } else { "" };
    let abs = hundredths.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Composite values nested in one another at most (through records, and arrays of records,
/// in records): the nesting of a client's bytes is bounded here, not by the stack.
const RECORD_MAX_DEPTH: u32 = 8;

/// Columns a composite value may have (PostgreSQL's `MaxTupleAttributeNumber`).
const RECORD_MAX_COLUMNS: usize = 1664;

thread_local! {
    /// How deep in composite values the value being decoded on this thread is.
    static RECORD_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A binary composite value (`record_send`: the column count, then each column's type OID
/// and length, -1 for NULL, and bytes) as `record_out` writes it: `(1,"a b",,t)`. `strict`
/// (the value's declared type is not known here, so the bytes may be anything): only when
/// it has at least one column and every column's type is decoded here (a composite one
/// included); otherwise a column of another type is shown in hex. `None` (shown in hex)
/// when the bytes are not such a value, or are nested past [`RECORD_MAX_DEPTH`]. Past
/// [`VALUE_MAX`] characters it is cut and says how many bytes the value had.
fn record(v: &[u8], strict: bool) -> Option<String> {
    let depth = RECORD_DEPTH.get();
    if depth >= RECORD_MAX_DEPTH {
        return None;
    }
    RECORD_DEPTH.set(depth + 1);
    let text = record_columns(v, strict);
    RECORD_DEPTH.set(depth);
    text
}

fn record_columns(v: &[u8], strict: bool) -> Option<String> {
    let mut at = 0usize;
    let word = |at: &mut usize| -> Option<[u8; 4]> {
        let b = v.get(*at..*at + 4)?;
        *at += 4;
        Some([b[0], b[1], b[2], b[3]])
    };
    let count = usize::try_from(i32::from_be_bytes(word(&mut at)?)).ok()?;
    // Every column takes at least its type and its length: a count the bytes cannot hold
    // is not a composite value (and is not looped over).
    if count > RECORD_MAX_COLUMNS || count > (v.len() - at) / 8 || (strict && count == 0) {
        return None;
    }
    let mut out = String::from("(");
    for n in 0..count {
        if n > 0 {
            out.push(',');
        }
        let oid = u32::from_be_bytes(word(&mut at)?);
        let len = i32::from_be_bytes(word(&mut at)?);
        if oid == 0 {
            return None;
        }
        if len == -1 {
            // NULL: nothing between the commas.
            continue;
        }
        let len = usize::try_from(len).ok()?;
        let bytes = v.get(at..at.checked_add(len)?)?;
        at += len;
        let text = match binary_text(oid, bytes) {
            Some(text) => text,
            None if strict => return None,
            None => plain(bytes, true),
        };
        match (oid, text.as_str()) {
            // `boolout`, as a row prints its columns
            (16, "true") => out.push('t'),
            (16, _) => out.push('f'),
            (_, text) => quote_column(&mut out, text),
        }
        if out.len() > VALUE_MAX {
            let _ = write!(out, "… ({} bytes)", v.len());
            return Some(out);
        }
    }
    out.push(')');
    (at == v.len()).then_some(out)
}

/// A composite value's column as `record_out` writes it: in double quotes, with `"` and `\`
/// doubled, when it is empty or holds a quote, a backslash, a parenthesis, a comma or white
/// space.
fn quote_column(out: &mut String, text: &str) {
    let needs = text.is_empty()
        || text
            .bytes()
            .any(|b| matches!(b, b'"' | b'\\' | b'(' | b')' | b',') || is_space(b));
    push_quoted(out, text, needs, true);
}

/// Array types whose binary values are turned into text (their elements' types are among
/// those above): `bool[]`, `bytea[]`, `name[]`, `int2[]`, `int4[]`, `text[]`, `bpchar[]`,
/// `varchar[]`, `int8[]`, `float4[]`, `float8[]`, `oid[]`, `json[]`, `date[]`, `time[]`,
/// `timestamp[]`, `timestamptz[]`, `interval[]`, `numeric[]`, `uuid[]`, `jsonb[]`;
/// `"char"[]`, `xid[]`, `cid[]`, `xid8[]`, `timetz[]`, `inet[]`, `cidr[]`, `macaddr[]`,
/// `macaddr8[]`; arrays of the six ranges and of the six multiranges; `point[]`, `lseg[]`,
/// `path[]`, `box[]`, `polygon[]`, `line[]`, `circle[]`; `money[]`, `record[]`.
const ARRAY_TYPES: [u32; 51] = [
    1000, 1001, 1003, 1005, 1007, 1009, 1014, 1015, 1016, 1021, 1022, 1028, 199, 1182, 1183, 1115,
    1185, 1187, 1231, 2951, 3807, 1002, 1011, 1012, 271, 1270, 1041, 651, 1040, 775, 3905, 3927,
    3907, 3913, 3909, 3911, 6150, 6157, 6151, 6155, 6152, 6153, 1017, 1018, 1019, 1020, 1027, 629,
    719, 791, 2287,
];

/// Dimensions an array may have (PostgreSQL's `MAXDIM`).
const ARRAY_MAX_DIMS: usize = 6;

/// A binary array (`ndim`, a null flag, the element type, each dimension's length and lower
/// bound, then each element's length, -1 for NULL, and bytes) in PostgreSQL's text form:
/// `{1,2,NULL}`, `{{1,2},{3,4}}`, `[0:1]={a,b}`, elements quoted as `array_out` quotes them
/// and separated by the element type's delimiter (`;` for `box`, `,` for the others).
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
    // The element type's `typdelim`: only `box`, whose text holds commas, has another.
    let delimiter = if element == 603 { b';' } else { b',' };
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
            out.push(char::from(delimiter));
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
                (_, text) => quote_element(&mut out, text, delimiter),
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
/// when it is empty, `NULL`, or holds a brace, a quote, a backslash, the array's `delimiter`
/// or white space.
fn quote_element(out: &mut String, text: &str, delimiter: u8) {
    let needs = text.is_empty()
        || text.eq_ignore_ascii_case("NULL")
        || text
            .bytes()
            .any(|b| matches!(b, b'{' | b'}' | b'"' | b'\\') || b == delimiter || is_space(b));
    push_quoted(out, text, needs, false);
}

/// A range bound as `range_out` writes it: in double quotes, with `"` and `\` doubled, when
/// it is empty or holds a quote, a backslash, a parenthesis, a bracket, a comma or white space.
fn quote_bound(out: &mut String, text: &str) {
    let needs = text.is_empty()
        || text
            .bytes()
            .any(|b| matches!(b, b'"' | b'\\' | b'(' | b')' | b'[' | b']' | b',') || is_space(b));
    push_quoted(out, text, needs, true);
}

/// White space as PostgreSQL's output functions see it (C's `isspace`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// `text`, in double quotes when `quoted`, with each `"` and `\` in it doubled or (arrays)
/// after a backslash.
fn push_quoted(out: &mut String, text: &str, quoted: bool, doubled: bool) {
    if !quoted {
        out.push_str(text);
        return;
    }
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push(if doubled { c } else { '\\' });
        }
        out.push(c);
    }
    out.push('"');
}

/// Range types and the types of their bounds: `int4range`, `int8range`, `numrange`,
/// `daterange`, `tsrange`, `tstzrange`.
const RANGE_TYPES: [(u32, u32); 6] = [
    (3904, 23),
    (3926, 20),
    (3906, 1700),
    (3912, 1082),
    (3908, 1114),
    (3910, 1184),
];

/// Multirange types (PostgreSQL 14 on) and the types of their ranges' bounds:
/// `int4multirange`, `int8multirange`, `nummultirange`, `datemultirange`, `tsmultirange`,
/// `tstzmultirange`.
const MULTIRANGE_TYPES: [(u32, u32); 6] = [
    (4451, 23),
    (4536, 20),
    (4532, 1700),
    (4535, 1082),
    (4533, 1114),
    (4534, 1184),
];

fn range_bound_type(oid: u32) -> Option<u32> {
    RANGE_TYPES.iter().find(|(r, _)| *r == oid).map(|(_, b)| *b)
}

fn multirange_bound_type(oid: u32) -> Option<u32> {
    MULTIRANGE_TYPES
        .iter()
        .find(|(m, _)| *m == oid)
        .map(|(_, b)| *b)
}

/// A range's flags (`range_send`'s first byte).
const RANGE_EMPTY: u8 = 0x01;
const RANGE_LB_INC: u8 = 0x02;
const RANGE_UB_INC: u8 = 0x04;
const RANGE_LB_INF: u8 = 0x08;
const RANGE_UB_INF: u8 = 0x10;

/// A range value as PostgreSQL keeps it once received: empty, or its two bounds (`None`:
/// infinite), lower not above upper, a discrete type's in the form `[a,b)`.
enum Range<'a> {
    Empty,
    Bounded(Option<Bound<'a>>, Option<Bound<'a>>),
}

/// A finite range bound: its value, in the binary form of the bound type, and whether the
/// range includes it.
struct Bound<'a> {
    value: std::borrow::Cow<'a, [u8]>,
    inclusive: bool,
}

impl<'a> Range<'a> {
    /// A binary range (flags, then each finite bound's length and bytes) of bounds of type
    /// `bound`, as `range_recv` takes it: bounds equal but not both inclusive make it empty,
    /// a discrete type's bounds are moved to `[a,b)`. `None` (shown in hex) when the bytes
    /// are not one, or PostgreSQL would refuse it (flags it does not send, a lower bound
    /// above the upper one, a bound that overflows when moved).
    fn read(bound: u32, v: &'a [u8]) -> Option<Self> {
        let (&flags, mut rest) = v.split_first()?;
        let known = RANGE_EMPTY | RANGE_LB_INC | RANGE_UB_INC | RANGE_LB_INF | RANGE_UB_INF;
        if flags & !known != 0 {
            return None;
        }
        if flags & RANGE_EMPTY != 0 {
            return rest.is_empty().then_some(Range::Empty);
        }
        let mut side = |infinite: u8, inclusive: u8| -> Option<Option<Bound<'a>>> {
            if flags & infinite != 0 {
                return Some(None);
            }
            Some(Some(Bound {
                value: take_sized(&mut rest)?.into(),
                inclusive: flags & inclusive != 0,
            }))
        };
        let lower = side(RANGE_LB_INF, RANGE_LB_INC)?;
        let upper = side(RANGE_UB_INF, RANGE_UB_INC)?;
        if !rest.is_empty() {
            return None;
        }
        let range = Range::Bounded(lower, upper).checked(bound)?;
        let Range::Bounded(mut lower, mut upper) = range else {
            return Some(range);
        };
        // `int4range_canonical`, `int8range_canonical`, `daterange_canonical` (which leaves
        // an infinite date as it is).
        if [23, 20, 1082].contains(&bound) {
            let infinite_date = |v: &[u8]| {
                bound == 1082 && (v == i32::MAX.to_be_bytes() || v == i32::MIN.to_be_bytes())
            };
            if let Some(l) = lower
                .as_mut()
                .filter(|l| !l.inclusive && !infinite_date(&l.value))
            {
                l.value = successor(bound, &l.value)?.into();
                l.inclusive = true;
            }
            if let Some(u) = upper
                .as_mut()
                .filter(|u| u.inclusive && !infinite_date(&u.value))
            {
                u.value = successor(bound, &u.value)?.into();
                u.inclusive = false;
            }
        }
        Range::Bounded(lower, upper).checked(bound)
    }

    /// The range as `range_serialize` keeps it: empty when its bounds are equal but not both
    /// inclusive, `None` when the lower is above the upper (or a bound is not a value).
    fn checked(self, bound: u32) -> Option<Self> {
        if let Range::Bounded(Some(l), Some(u)) = &self {
            match bound_cmp(bound, &l.value, &u.value)? {
                std::cmp::Ordering::Greater => return None,
                std::cmp::Ordering::Equal if !(l.inclusive && u.inclusive) => {
                    return Some(Range::Empty);
                }
                _ => {}
            }
        }
        Some(self)
    }

    /// The range as `range_out` writes it: `empty`, `[1,5)`, `(,10]`, each bound as its type
    /// is written, quoted as `range_out` quotes it. `None` when a bound is not a value.
    fn text(&self, bound: u32) -> Option<String> {
        let Range::Bounded(lower, upper) = self else {
            return Some("empty".into());
        };
        let mut out = String::new();
        out.push(if lower.as_ref().is_some_and(|l| l.inclusive) {
            '['
        } else {
            '('
        });
        if let Some(l) = lower {
            quote_bound(&mut out, &binary_text(bound, &l.value)?);
        }
        out.push(',');
        if let Some(u) = upper {
            quote_bound(&mut out, &binary_text(bound, &u.value)?);
        }
        out.push(if upper.as_ref().is_some_and(|u| u.inclusive) {
            ']'
        } else {
            ')'
        });
        Some(out)
    }
}

/// How two values of a range's bound type compare, as PostgreSQL orders them; `None` when
/// either is not a value of the type.
fn bound_cmp(bound: u32, a: &[u8], b: &[u8]) -> Option<std::cmp::Ordering> {
    match bound {
        // int4, date (whose infinities are the extreme values)
        23 | 1082 => Some(
            i32::from_be_bytes(a.try_into().ok()?).cmp(&i32::from_be_bytes(b.try_into().ok()?)),
        ),
        // int8, timestamp, timestamptz
        20 | 1114 | 1184 => Some(
            i64::from_be_bytes(a.try_into().ok()?).cmp(&i64::from_be_bytes(b.try_into().ok()?)),
        ),
        1700 => Some(Numeric::read(a)?.order(&Numeric::read(b)?)),
        _ => None,
    }
}

/// The value after `v` of a discrete bound type (`int4`, `int8`, `date`); `None` when it
/// overflows (PostgreSQL refuses the range) or `v` is not a value.
fn successor(bound: u32, v: &[u8]) -> Option<Vec<u8>> {
    match bound {
        23 => Some(
            i32::from_be_bytes(v.try_into().ok()?)
                .checked_add(1)?
                .to_be_bytes()
                .to_vec(),
        ),
        // A date past its range's end is not turned into `infinity`.
        1082 => {
            let next = i32::from_be_bytes(v.try_into().ok()?).checked_add(1)?;
            (next != i32::MAX).then(|| next.to_be_bytes().to_vec())
        }
        20 => Some(
            i64::from_be_bytes(v.try_into().ok()?)
                .checked_add(1)?
                .to_be_bytes()
                .to_vec(),
        ),
        _ => None,
    }
}

/// A binary multirange (a count, then each range's length and bytes) of ranges of bounds of
/// type `bound`, as `multirange_out` writes it: `{[1,3),[5,7)}`, `{}`. Empty ranges are left
/// out as `multirange_recv` does; ranges that are out of order, overlap or touch (which
/// PostgreSQL would sort and merge, and never sends) are not decoded. Past [`VALUE_MAX`]
/// characters it is cut and says how many bytes the value had.
fn multirange(bound: u32, v: &[u8]) -> Option<String> {
    let mut rest = v;
    let count = usize::try_from(u32::from_be_bytes(take(&mut rest, 4)?.try_into().ok()?)).ok()?;
    // Every range takes at least its length and its flags: a count the bytes cannot hold is
    // not a multirange (and is not looped over).
    if count > rest.len() / 5 {
        return None;
    }
    let mut out = String::from("{");
    let mut last: Option<Range<'_>> = None;
    for _ in 0..count {
        let range = Range::read(bound, take_sized(&mut rest)?)?;
        let Range::Bounded(lower, _) = &range else {
            continue;
        };
        if let Some(Range::Bounded(_, before)) = &last {
            // The last range's upper bound must be below this one's lower bound, or equal
            // with both excluded.
            let (Some(before), Some(lower)) = (before, lower) else {
                return None;
            };
            match bound_cmp(bound, &before.value, &lower.value)? {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal if !before.inclusive && !lower.inclusive => {}
                _ => return None,
            }
            out.push(',');
        }
        out.push_str(&range.text(bound)?);
        if out.len() > VALUE_MAX {
            let _ = write!(out, "… ({} bytes)", v.len());
            return Some(out);
        }
        last = Some(range);
    }
    out.push('}');
    rest.is_empty().then_some(out)
}

/// The next `n` bytes of `v`, which then starts after them.
fn take<'a>(v: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, tail) = v.split_at_checked(n)?;
    *v = tail;
    Some(head)
}

/// The next value of `v` that is preceded by its length (4 bytes).
fn take_sized<'a>(v: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_be_bytes(take(v, 4)?.try_into().ok()?);
    take(v, usize::try_from(len).ok()?)
}

/// A time of day in microseconds as `time_out` writes it: `12:34:56`, `12:34:56.5`,
/// `24:00:00` at most. `None` past that or below zero.
fn time_of_day(us: i64) -> Option<String> {
    (0..=86_400_000_000).contains(&us).then_some(())?;
    let (s, fraction) = (us / 1_000_000, us % 1_000_000);
    let mut out = format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60);
    push_fraction(&mut out, fraction.unsigned_abs());
    Some(out)
}

/// A fraction of a second in microseconds as PostgreSQL writes it after the seconds: `.5`,
/// `.000001`, nothing when zero.
fn push_fraction(out: &mut String, micros: u64) {
    if micros != 0 {
        let digits = format!("{micros:06}");
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
}

/// A binary `timetz` (microseconds since midnight, then the zone's offset in seconds west of
/// UTC, under 16 hours) as `timetz_out` writes it: `12:34:56.789+02`, `01:02:03-05:30`,
/// `01:02:03+05:30:15`.
fn timetz(v: &[u8]) -> Option<String> {
    let v: &[u8; 12] = v.try_into().ok()?;
    let mut out = time_of_day(i64::from_be_bytes(v[..8].try_into().ok()?))?;
    let west = i32::from_be_bytes(v[8..].try_into().ok()?);
    (-57_599..=57_599).contains(&west).then_some(())?;
    let east = west.unsigned_abs();
    let (hours, minutes, seconds) = (east / 3600, east % 3600 / 60, east % 60);
    let _ = write!(out, "{}{hours:02}", if west <= 0 { '+' } else { '-' });
    if minutes != 0 || seconds != 0 {
        let _ = write!(out, ":{minutes:02}");
    }
    if seconds != 0 {
        let _ = write!(out, ":{seconds:02}");
    }
    Some(out)
}

/// A binary `inet` or `cidr` (family: 2 for IPv4, 3 for IPv6; mask length; a cidr flag,
/// which PostgreSQL ignores; address length; address) as `inet_out` and `cidr_out` write it:
/// the mask length after a `/`, which `inet` leaves out when it is the whole address, IPv6
/// compressed as PostgreSQL compresses it. `None` for a cidr with bits set past its mask,
/// which PostgreSQL refuses.
fn network(v: &[u8], cidr: bool) -> Option<String> {
    let [family, bits, _, len, address @ ..] = v else {
        return None;
    };
    let max = match (family, len) {
        (2, 4) => 32,
        (3, 16) => 128,
        _ => return None,
    };
    if address.len() != usize::from(*len) || *bits > max {
        return None;
    }
    // A cidr's host bits are zero.
    if cidr
        && address.iter().enumerate().any(|(i, b)| {
            let start = 8 * i;
            let host = match usize::from(*bits).checked_sub(start) {
                None | Some(0) => 0xff,
                Some(n) if n >= 8 => 0,
                Some(n) => 0xff >> n,
            };
            b & host != 0
        })
    {
        return None;
    }
    let mut out = if *family == 2 {
        ipv4(address)
    } else {
        ipv6(address)
    };
    if cidr || *bits != max {
        let _ = write!(out, "/{bits}");
    }
    Some(out)
}

fn ipv4(address: &[u8]) -> String {
    let octets: Vec<String> = address.iter().map(u8::to_string).collect();
    octets.join(".")
}

/// An IPv6 address as PostgreSQL's `inet_net_ntop` writes it: hex groups, the first longest
/// run of two or more zero groups as `::`, and the last 32 bits in dotted decimal after six
/// zero groups (`::1.2.3.4`) or five and `ffff` (`::ffff:1.2.3.4`).
fn ipv6(address: &[u8]) -> String {
    let words: Vec<u16> = address
        .chunks_exact(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]))
        .collect();
    // The longest run of zero groups (the first of equals), if two or more long.
    let (mut best, mut run) = ((0usize, 0usize), (0usize, 0usize));
    for (i, w) in words.iter().enumerate() {
        if *w == 0 {
            run = if run.1 == 0 {
                (i, 1)
            } else {
                (run.0, run.1 + 1)
            };
            if run.1 > best.1 {
                best = run;
            }
        } else {
            run = (0, 0);
        }
    }
    let best = (best.1 >= 2).then_some(best);
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        if let Some((start, len)) = best
            && (start..start + len).contains(&i)
        {
            if i == start {
                out.push(':');
            }
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 && (best == Some((0, 6)) || best == Some((0, 5)) && words[5] == 0xffff) {
            out.push_str(&ipv4(&address[12..]));
            break;
        }
        let _ = write!(out, "{w:x}");
    }
    if best.is_some_and(|(start, len)| start + len == words.len()) {
        out.push(':');
    }
    out
}

/// A binary value of a geometric type (`*_send`: float8 coordinates, after a path's closed
/// flag byte and point count and a polygon's point count) as its output function writes it:
/// point `(1,2)`, lseg `[(1,2),(3,4)]`, closed path `((0,0),(1,1))`, open path
/// `[(0,0),(1,1)]`, box `(1,1),(0,0)`, polygon `((0,0),(1,1))`, line `{1,-1,0}`, circle
/// `<(0,0),1.5>`. It is read as its `*_recv` reads it: a box's corners swapped so the first is
/// the upper right (as `float8_lt` orders, NaN above every number), a path closed by any flag
/// but 0. `None` (shown in hex) when the bytes are not one (a length that does not fit, bytes
/// after it) or PostgreSQL would refuse it: a path or polygon of no points, a line whose A and
/// B are both within 1e-6 of zero, a circle of negative radius. Past [`VALUE_MAX`] characters
/// it is cut there and says how many bytes the value had.
///
/// Coordinates are written as a `float8` is recorded (Rust's shortest form that reads back
/// the same), not always as `float8out` writes them: PostgreSQL 15 writes the same digits
/// (with its default `extra_float_digits`, 1), and `0`, `-0` and `NaN` alike, but uses an
/// exponent when the decimal exponent is below -4 or 15 and up (`1e-05`, `1.5e+15`, recorded
/// `0.00001`, `1500000000000000`) and writes infinity as `Infinity` (recorded `inf`).
fn geometry(oid: u32, v: &[u8]) -> Option<String> {
    let mut out = String::new();
    match oid {
        // point: x, y
        600 => {
            let [x, y] = floats(v)?;
            push_point(&mut out, x, y);
        }
        // lseg: two points
        601 => {
            let [x1, y1, x2, y2] = floats(v)?;
            out.push('[');
            push_point(&mut out, x1, y1);
            out.push(',');
            push_point(&mut out, x2, y2);
            out.push(']');
        }
        // path: closed flag, point count, points
        602 => {
            let (&closed, points) = v.split_first()?;
            let ends = if closed == 0 { ('[', ']') } else { ('(', ')') };
            push_points(&mut out, points, ends)?;
        }
        // box: the upper right corner, then the lower left
        603 => {
            let [mut high_x, mut high_y, mut low_x, mut low_y] = floats(v)?;
            let below = |a: f64, b: f64| !a.is_nan() && (b.is_nan() || a < b);
            if below(high_x, low_x) {
                std::mem::swap(&mut high_x, &mut low_x);
            }
            if below(high_y, low_y) {
                std::mem::swap(&mut high_y, &mut low_y);
            }
            push_point(&mut out, high_x, high_y);
            out.push(',');
            push_point(&mut out, low_x, low_y);
        }
        // polygon: point count, points
        604 => push_points(&mut out, v, ('(', ')'))?,
        // line: A, B, C of Ax + By + C = 0 (`FPzero` is within `EPSILON`, 1e-6, of zero)
        628 => {
            let [a, b, c] = floats(v)?;
            if a.abs() <= 1e-6 && b.abs() <= 1e-6 {
                return None;
            }
            let _ = write!(out, "{{{a},{b},{c}}}");
        }
        // circle: center, radius
        718 => {
            let [x, y, radius] = floats(v)?;
            if radius < 0.0 {
                return None;
            }
            out.push('<');
            push_point(&mut out, x, y);
            let _ = write!(out, ",{radius}>");
        }
        _ => return None,
    }
    if out.len() > VALUE_MAX {
        // The text is ASCII (digits, signs, points, brackets, `NaN`, `inf`): any length is a
        // character boundary.
        out.truncate(VALUE_MAX);
        let _ = write!(out, "… ({} bytes)", v.len());
    }
    Some(out)
}

/// The `N` float8s that are the whole of `v`.
fn floats<const N: usize>(v: &[u8]) -> Option<[f64; N]> {
    if v.len() != 8 * N {
        return None;
    }
    let mut out = [0.0; N];
    for (f, b) in out.iter_mut().zip(v.chunks_exact(8)) {
        *f = f64::from_be_bytes(b.try_into().ok()?);
    }
    Some(out)
}

/// A point as `pair_encode` writes it between parentheses: `(x,y)`.
fn push_point(out: &mut String, x: f64, y: f64) {
    let _ = write!(out, "({x},{y})");
}

/// A point count (an int32, 1 or more) and that many points, the whole of `v`, as
/// `path_encode` writes them between `ends`: `((0,0),(1,1))`. `None` when the count is not
/// that of the bytes (checked before anything is written); past [`VALUE_MAX`] characters the
/// points after are left out.
fn push_points(out: &mut String, v: &[u8], ends: (char, char)) -> Option<()> {
    let mut points = v;
    let count = i32::from_be_bytes(take(&mut points, 4)?.try_into().ok()?);
    let count = usize::try_from(count).ok().filter(|n| *n > 0)?;
    if count.checked_mul(16)? != points.len() {
        return None;
    }
    out.push(ends.0);
    for (i, point) in points.chunks_exact(16).enumerate() {
        if out.len() > VALUE_MAX {
            return Some(());
        }
        if i > 0 {
            out.push(',');
        }
        let [x, y] = floats(point)?;
        push_point(out, x, y);
    }
    out.push(ends.1);
    Some(())
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
        push_fraction(&mut out, fraction.unsigned_abs());
    }
    Some(out)
}

/// A binary `numeric` in text: sign, weight (of the first base-10000 digit), display scale
/// and base-10000 digits. `None` (shown in hex) when the bytes are not one, or when it would
/// be longer than a recorded value may be.
fn numeric(v: &[u8]) -> Option<String> {
    Some(Numeric::read(v)?.text())
}

/// A binary `numeric`'s parts: its sign (or `NaN`, `Infinity`, `-Infinity`), the weight of
/// its first base-10000 digit, its display scale and its digits.
struct Numeric {
    sign: u16,
    weight: i32,
    dscale: usize,
    digits: Vec<u16>,
}

impl Numeric {
    const NEGATIVE: u16 = 0x4000;
    const NAN: u16 = 0xC000;
    const INFINITY: u16 = 0xD000;
    const NEGATIVE_INFINITY: u16 = 0xF000;

    /// `None` when the bytes are not a `numeric`, or when its text would be longer than a
    /// recorded value may be.
    fn read(v: &[u8]) -> Option<Self> {
        let word = |i: usize| {
            v.get(2 * i..2 * i + 2)
                .map(|w| u16::from_be_bytes([w[0], w[1]]))
        };
        let (ndigits, weight, sign, dscale) = (word(0)?, word(1)?, word(2)?, word(3)?);
        let weight = i32::from(i16::from_be_bytes(weight.to_be_bytes()));
        if v.len() != 8 + 2 * usize::from(ndigits) {
            return None;
        }
        let digits: Vec<u16> = (0..usize::from(ndigits))
            .map(|i| word(4 + i))
            .collect::<Option<_>>()?;
        let dscale = usize::from(dscale);
        match sign {
            0x0000 | Self::NEGATIVE => {}
            Self::NAN | Self::INFINITY | Self::NEGATIVE_INFINITY => {}
            _ => return None,
        }
        // Its text is about 4 × (weight + 1) + dscale characters.
        let finite = matches!(sign, 0 | Self::NEGATIVE);
        if finite && (digits.iter().any(|&d| d > 9999) || weight > 256 || dscale > 1000) {
            return None;
        }
        Some(Numeric {
            sign,
            weight,
            dscale,
            digits,
        })
    }

    fn text(&self) -> String {
        match self.sign {
            Self::NAN => return "NaN".into(),
            Self::INFINITY => return "Infinity".into(),
            Self::NEGATIVE_INFINITY => return "-Infinity".into(),
            _ => {}
        }
        let digit = |i: i32| {
            usize::try_from(i)
                .ok()
                .and_then(|i| self.digits.get(i))
                .copied()
                .unwrap_or(0)
        };
        let mut out = String::new();
        if self.sign == Self::NEGATIVE {
            out.push('-');
        }
        if self.weight < 0 {
            out.push('0');
        }
        for i in 0..=self.weight {
            let _ = if i == 0 {
                write!(out, "{}", digit(i))
            } else {
                write!(out, "{:04}", digit(i))
            };
        }
        if self.dscale > 0 {
            let mut frac = String::new();
            let mut i = self.weight + 1;
            while frac.len() < self.dscale {
                let _ = write!(frac, "{:04}", digit(i));
                i += 1;
            }
            out.push('.');
            out.push_str(&frac[..self.dscale]);
        }
        out
    }

    /// How two numerics compare as PostgreSQL orders them: `-Infinity`, the negative
    /// numbers, zero, the positive ones, `Infinity`, then `NaN` (equal to itself).
    fn order(&self, other: &Numeric) -> std::cmp::Ordering {
        let (a, b) = (self.magnitude(), other.magnitude());
        let rank = |n: &Numeric, magnitude: &(i64, &[u16])| match n.sign {
            Self::NEGATIVE_INFINITY => 0,
            0 | Self::NEGATIVE if magnitude.1.is_empty() => 2,
            Self::NEGATIVE => 1,
            0 => 3,
            Self::INFINITY => 4,
            _ => 5,
        };
        let (rank_a, rank_b) = (rank(self, &a), rank(other, &b));
        rank_a.cmp(&rank_b).then_with(|| match rank_a {
            1 => b.cmp(&a),
            3 => a.cmp(&b),
            _ => std::cmp::Ordering::Equal,
        })
    }

    /// The weight of the first digit that is not zero, and the digits from it to the last
    /// that is not zero: two magnitudes compare as these do.
    fn magnitude(&self) -> (i64, &[u16]) {
        let lead = self.digits.iter().take_while(|d| **d == 0).count();
        let digits = &self.digits[lead..];
        let trail = digits.iter().rev().take_while(|d| **d == 0).count();
        (
            i64::from(self.weight) - i64::try_from(lead).unwrap_or(0),
            &digits[..digits.len() - trail],
        )
    }
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
    /// A value as the protocol frames it: its length and bytes, or length -1 for NULL.
    fn push_value(b: &mut Vec<u8>, v: Option<&[u8]>) {
        match v {
            Some(v) => {
                b.extend(i32::try_from(v.len()).unwrap().to_be_bytes());
                b.extend(v);
            }
            None => b.extend((-1i32).to_be_bytes()),
        }
    }

    fn bind(values: &[(bool, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = b"\0\0".to_vec();
        b.extend(u16::try_from(values.len()).unwrap().to_be_bytes());
        for (binary, _) in values {
            b.extend(u16::from(*binary).to_be_bytes());
        }
        b.extend(u16::try_from(values.len()).unwrap().to_be_bytes());
        for (_, v) in values {
            push_value(&mut b, *v);
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
        let mut money = a.clone();
        money[8..12].copy_from_slice(&790u32.to_be_bytes());
        for bytes in [&huge, &trailing, &money] {
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

    /// The text of one binary value of type `oid`.
    fn text_of(oid: u32, bytes: &[u8]) -> String {
        rendered(&[(true, Some(bytes))], &[oid])[0].clone().unwrap()
    }

    /// A binary range: its flags, then each bound given, with its length.
    fn range_bytes(flags: u8, bounds: &[&[u8]]) -> Vec<u8> {
        let mut b = vec![flags];
        for bound in bounds {
            b.extend(u32::try_from(bound.len()).unwrap().to_be_bytes());
            b.extend(*bound);
        }
        b
    }

    /// A binary multirange of the given binary ranges.
    fn multirange_bytes(ranges: &[&[u8]]) -> Vec<u8> {
        let mut b = u32::try_from(ranges.len()).unwrap().to_be_bytes().to_vec();
        for range in ranges {
            b.extend(u32::try_from(range.len()).unwrap().to_be_bytes());
            b.extend(*range);
        }
        b
    }

    /// Ranges as a client may send them (sqlx sends `1..=5` as `[1,5]`) are recorded as
    /// PostgreSQL keeps them: a discrete type's bounds moved to `[a,b)`, equal bounds not both
    /// included made `empty`, an infinite bound never included. A `macaddr8` of 6 bytes is
    /// widened as `macaddr8_recv` widens it.
    #[test]
    fn ranges_are_recorded_as_postgresql_keeps_them() {
        let int4 = |n: i32| n.to_be_bytes();
        let (one, two, five) = (int4(1), int4(2), int4(5));
        let num = |n: u16| numeric_bytes(1, 0, 0, 0, &[n]);
        let negative = numeric_bytes(2, 0, 0x4000, 4, &[1, 5000]);
        let nan = numeric_bytes(0, 0, 0xC000, 0, &[]);
        let cases: Vec<(u32, Vec<u8>, &str)> = vec![
            (3904, range_bytes(0x06, &[&one, &five]), "[1,6)"),
            (3904, range_bytes(0x00, &[&one, &five]), "[2,5)"),
            (3904, range_bytes(0x00, &[&one, &two]), "empty"),
            (3904, range_bytes(0x02, &[&two, &two]), "empty"),
            (3904, range_bytes(0x06, &[&two, &two]), "[2,3)"),
            (3904, range_bytes(0x0a, &[&five]), "(,5)"),
            (3904, range_bytes(0x18 | 0x06, &[]), "(,)"),
            (3904, range_bytes(0x01, &[]), "empty"),
            (
                3926,
                range_bytes(0x04, &[&1i64.to_be_bytes(), &9i64.to_be_bytes()]),
                "[2,10)",
            ),
            (
                3912,
                range_bytes(0x04, &[&9_497i32.to_be_bytes(), &9_498i32.to_be_bytes()]),
                "[2026-01-02,2026-01-03)",
            ),
            (
                3912,
                range_bytes(0x00, &[&i32::MIN.to_be_bytes(), &i32::MAX.to_be_bytes()]),
                "(-infinity,infinity)",
            ),
            (3906, range_bytes(0x04, &[&num(1), &num(1)]), "empty"),
            (3906, range_bytes(0x06, &[&num(1), &num(1)]), "[1,1]"),
            (
                3906,
                range_bytes(0x02, &[&negative, &num(0)]),
                "[-1.5000,0)",
            ),
            (3906, range_bytes(0x02, &[&num(2), &nan]), "[2,NaN)"),
            (
                3908,
                range_bytes(0x02, &[&7i64.to_be_bytes(), &7i64.to_be_bytes()]),
                "empty",
            ),
            (
                3910,
                range_bytes(0x08, &[&0i64.to_be_bytes()]),
                "(,2000-01-01T00:00:00.000000Z)",
            ),
            // Empty ranges in a multirange are left out.
            (
                4451,
                multirange_bytes(&[
                    &range_bytes(0x02, &[&one, &two]),
                    &range_bytes(0x01, &[]),
                    &range_bytes(0x00, &[&two, &five]),
                ]),
                "{[1,2),[3,5)}",
            ),
            (4532, multirange_bytes(&[]), "{}"),
            (774, vec![8, 0, 0x2b, 1, 2, 3], "08:00:2b:ff:fe:01:02:03"),
        ];
        for (oid, bytes, text) in &cases {
            assert_eq!(text_of(*oid, bytes), *text, "type {oid}: {bytes:?}");
        }
        // Bounds are quoted as range_out quotes them: `"` and `\` doubled.
        let mut quoted = String::new();
        quote_bound(&mut quoted, "a \"b\" \\c");
        assert_eq!(quoted, "\"a \"\"b\"\" \\\\c\"");
        let mut plain_bound = String::new();
        quote_bound(&mut plain_bound, "{x}");
        assert_eq!(plain_bound, "{x}");
    }

    /// Bytes that are not a value of the new types (or that PostgreSQL would refuse) are
    /// recorded in hex, whole.
    #[test]
    fn malformed_network_time_and_range_values_stay_in_hex() {
        let int4 = |n: i32| n.to_be_bytes();
        let (one, three, five) = (int4(1), int4(3), int4(5));
        let timetz = |us: i64, west: i32| {
            let mut b = us.to_be_bytes().to_vec();
            b.extend(west.to_be_bytes());
            b
        };
        let ok_range = range_bytes(0x02, &[&one, &three]);
        let mut long_timetz = timetz(0, 0);
        long_timetz.push(0);
        let mut trailing_range = ok_range.clone();
        trailing_range.push(0);
        let mut trailing_multirange = multirange_bytes(&[&ok_range]);
        trailing_multirange.push(0);
        let mut huge_count = multirange_bytes(&[&ok_range]);
        huge_count[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        let mut huge_bound = ok_range.clone();
        huge_bound[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        let mut inet_array = Vec::new();
        for w in [1i32, 1, 869, 1, 1, 4] {
            inet_array.extend(w.to_be_bytes());
        }
        inet_array.extend([10, 0, 0, 1]);
        let cases: Vec<(u32, Vec<u8>)> = vec![
            // timetz: short, long, a zone of 16 hours, a time past a day or below zero
            (1266, timetz(0, 0)[..11].to_vec()),
            (1266, long_timetz),
            (1266, timetz(0, 57_600)),
            (1266, timetz(0, -57_600)),
            (1266, timetz(86_400_000_001, 0)),
            (1266, timetz(-1, 0)),
            (1083, 86_400_000_001i64.to_be_bytes().to_vec()),
            // inet, cidr: family, lengths, mask, host bits of a cidr, trailing bytes
            (869, vec![]),
            (869, vec![4, 32, 0, 4, 1, 2, 3, 4]),
            (869, vec![2, 32, 0, 16, 1, 2, 3, 4]),
            (869, vec![3, 128, 0, 4, 1, 2, 3, 4]),
            (869, vec![2, 33, 0, 4, 1, 2, 3, 4]),
            (869, vec![2, 32, 0, 4, 1, 2, 3]),
            (869, vec![2, 32, 0, 4, 1, 2, 3, 4, 5]),
            (869, [vec![3, 129, 0, 16], vec![0; 16]].concat()),
            (650, vec![2, 8, 1, 4, 10, 0, 0, 1]),
            (650, vec![2, 0, 1, 4, 128, 0, 0, 0]),
            (650, [vec![3, 120, 1, 16], vec![0; 15], vec![1]].concat()),
            // macaddr, macaddr8, "char", xid, xid8: lengths
            (829, vec![1, 2, 3, 4, 5]),
            (829, vec![1, 2, 3, 4, 5, 6, 7, 8]),
            (774, vec![1, 2, 3, 4, 5, 6, 7]),
            (18, vec![]),
            (18, vec![b'a', b'b']),
            (28, vec![1, 2, 3]),
            (5069, vec![1, 2, 3, 4]),
            // ranges: no flags, flags PostgreSQL does not send, bytes after an empty range
            // or the bounds, a bound longer than the bytes, a bound not of the type, lower
            // above upper, a bound that overflows when made canonical, NaN below a number
            (3904, vec![]),
            (3904, range_bytes(0x20 | 0x02, &[&one, &three])),
            (3904, range_bytes(0x80 | 0x02, &[&one, &three])),
            (3904, vec![0x01, 0]),
            (3904, trailing_range),
            (3904, huge_bound),
            (3904, range_bytes(0x02, &[&one])),
            (3904, range_bytes(0x02, &[&[0, 1, 2], &three])),
            (3904, range_bytes(0x02, &[&five, &one])),
            (3904, range_bytes(0x10, &[&i32::MAX.to_be_bytes()])),
            (3904, range_bytes(0x0c, &[&i32::MAX.to_be_bytes()])),
            (
                3906,
                range_bytes(
                    0x02,
                    &[
                        &numeric_bytes(0, 0, 0xC000, 0, &[]),
                        &numeric_bytes(1, 0, 0, 0, &[1]),
                    ],
                ),
            ),
            (
                3906,
                range_bytes(0x02, &[&numeric_bytes(1, 0, 0, 0, &[10_000]), &one]),
            ),
            (
                3912,
                range_bytes(0x04, &[&one, &(i32::MAX - 1).to_be_bytes()]),
            ),
            // multiranges: a count the bytes cannot hold, trailing bytes, ranges out of
            // order, overlapping or touching (PostgreSQL would merge them), an infinite
            // bound between two ranges
            (4451, vec![0, 0, 0]),
            (4451, huge_count),
            (4451, trailing_multirange),
            (
                4451,
                multirange_bytes(&[&range_bytes(0x02, &[&three, &five]), &ok_range]),
            ),
            (
                4451,
                multirange_bytes(&[&ok_range, &range_bytes(0x02, &[&int4(2), &five])]),
            ),
            (
                4451,
                multirange_bytes(&[&ok_range, &range_bytes(0x02, &[&three, &five])]),
            ),
            (
                4451,
                multirange_bytes(&[
                    &range_bytes(0x12, &[&one]),
                    &range_bytes(0x02, &[&three, &five]),
                ]),
            ),
            (4451, multirange_bytes(&[&[0x40]])),
            // an array of inet whose element is not one
            (1041, inet_array),
        ];
        for (oid, bytes) in &cases {
            assert_eq!(text_of(*oid, bytes), hex(bytes), "type {oid}: {bytes:?}");
        }
    }

    /// The float8s given, one after another, as the geometric types' `*_send` writes them.
    fn float8s(values: &[f64]) -> Vec<u8> {
        values.iter().flat_map(|f| f.to_be_bytes()).collect()
    }

    /// A binary path (`Some(closed flag)`) or polygon (`None`): the flag, the point count
    /// given, then the coordinates.
    fn points_bytes(closed: Option<u8>, count: i32, coordinates: &[f64]) -> Vec<u8> {
        let mut b: Vec<u8> = closed.into_iter().collect();
        b.extend(count.to_be_bytes());
        b.extend(float8s(coordinates));
        b
    }

    /// A one-dimensional binary array of `element`s from lower bound 1 (`None`: NULL).
    fn array_bytes(element: u32, values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(1i32.to_be_bytes());
        b.extend(i32::from(values.iter().any(Option::is_none)).to_be_bytes());
        b.extend(element.to_be_bytes());
        b.extend(i32::try_from(values.len()).unwrap().to_be_bytes());
        b.extend(1i32.to_be_bytes());
        for v in values {
            push_value(&mut b, *v);
        }
        b
    }

    /// Geometric values as a client may send them are recorded as PostgreSQL keeps them
    /// (`box_recv` swaps corners, `path_recv` takes any flag but 0 as closed), and with
    /// coordinates written as a `float8` is recorded, where that differs from PostgreSQL (an
    /// exponent, infinity). Long ones are cut at VALUE_MAX.
    #[test]
    fn geometric_values_are_read_as_their_recv_reads_them() {
        let cases: Vec<(u32, Vec<u8>, &str)> = vec![
            (600, float8s(&[1.0, -2.5]), "(1,-2.5)"),
            (601, float8s(&[0.0, 0.5, -1.0, 3.0]), "[(0,0.5),(-1,3)]"),
            // box: corners sent lower left first, or crossed, are swapped; NaN counts as
            // above every number.
            (603, float8s(&[0.0, 0.0, 1.0, 1.0]), "(1,1),(0,0)"),
            (603, float8s(&[0.0, 5.0, 2.0, -5.0]), "(2,5),(0,-5)"),
            (603, float8s(&[1.0, 2.0, f64::NAN, 0.0]), "(NaN,2),(1,0)"),
            (
                602,
                points_bytes(Some(0), 2, &[0.0, 0.0, 1.0, 1.0]),
                "[(0,0),(1,1)]",
            ),
            (
                602,
                points_bytes(Some(1), 2, &[0.0, 0.0, 1.0, 1.0]),
                "((0,0),(1,1))",
            ),
            (602, points_bytes(Some(7), 1, &[-0.0, 2.0]), "((-0,2))"),
            (
                604,
                points_bytes(None, 3, &[0.0, 0.0, 1.0, 0.0, 0.0, 1.0]),
                "((0,0),(1,0),(0,1))",
            ),
            // line: A and B just outside 1e-6 of zero, or one of them zero, are a line.
            (628, float8s(&[0.0, 2e-6, 1.0]), "{0,0.000002,1}"),
            (628, float8s(&[-1.0, 0.0, 0.0]), "{-1,0,0}"),
            (628, float8s(&[f64::NAN, 0.0, 0.0]), "{NaN,0,0}"),
            (718, float8s(&[1.0, 2.0, 0.5]), "<(1,2),0.5>"),
            (718, float8s(&[0.0, 0.0, -0.0]), "<(0,0),-0>"),
            (718, float8s(&[0.0, 0.0, f64::NAN]), "<(0,0),NaN>"),
            // Where the text differs from PostgreSQL's (`(1e+15,1e-05)`, `Infinity`).
            (600, float8s(&[1e15, 1e-5]), "(1000000000000000,0.00001)"),
            (
                718,
                float8s(&[f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY]),
                "<(inf,-inf),inf>",
            ),
            // Arrays: box[] is delimited by `;` (its elements hold commas and are not
            // quoted), the others by `,` (their elements are quoted).
            (
                1020,
                array_bytes(
                    603,
                    &[
                        Some(&float8s(&[1.0, 1.0, 0.0, 0.0])),
                        None,
                        Some(&float8s(&[0.0, 0.0, 2.0, 2.0])),
                    ],
                ),
                "{(1,1),(0,0);NULL;(2,2),(0,0)}",
            ),
            (
                1017,
                array_bytes(600, &[Some(&float8s(&[1.0, 2.0])), None]),
                "{\"(1,2)\",NULL}",
            ),
            (
                629,
                array_bytes(628, &[Some(&float8s(&[1.0, 2.0, 3.0]))]),
                "{\"{1,2,3}\"}",
            ),
            (
                719,
                array_bytes(718, &[Some(&float8s(&[1.0, 2.0, 3.0]))]),
                "{\"<(1,2),3>\"}",
            ),
            (
                1019,
                array_bytes(602, &[Some(&points_bytes(Some(0), 1, &[1.0, 2.0]))]),
                "{\"[(1,2)]\"}",
            ),
            (
                1027,
                array_bytes(604, &[Some(&points_bytes(None, 1, &[1.0, 2.0]))]),
                "{\"((1,2))\"}",
            ),
            (
                1018,
                array_bytes(601, &[Some(&float8s(&[1.0, 2.0, 3.0, 4.0]))]),
                "{\"[(1,2),(3,4)]\"}",
            ),
        ];
        for (oid, bytes, text) in &cases {
            assert_eq!(text_of(*oid, bytes), *text, "type {oid}: {bytes:?}");
        }
        // A polygon of many points, and a box of four long coordinates (5e-324 is written
        // with 323 zeros), are cut at VALUE_MAX and say how long they were.
        let coordinates: Vec<f64> = (0..10_000).map(f64::from).collect();
        let long = points_bytes(None, 5_000, &coordinates);
        let cut = text_of(604, &long);
        assert!(cut.starts_with("((0,1),(2,3),"), "{cut}");
        let tail = format!("… ({} bytes)", long.len());
        assert!(cut.ends_with(&tail), "{cut}");
        assert_eq!(cut.len(), VALUE_MAX + tail.len());
        let tiny = float8s(&[-5e-324; 4]);
        let cut = text_of(603, &tiny);
        assert!(cut.starts_with("(-0.000"), "{cut}");
        assert!(cut.ends_with("… (32 bytes)"), "{cut}");
        assert_eq!(cut.len(), VALUE_MAX + "… (32 bytes)".len());
    }

    /// Bytes that are not a value of a geometric type (a length that does not fit, a count
    /// the bytes do not hold, bytes after it), or that PostgreSQL would refuse (no points, a
    /// line of A and B zero, a negative radius), are recorded in hex, whole.
    #[test]
    fn malformed_geometric_values_stay_in_hex() {
        let point = float8s(&[1.0, 2.0]);
        let mut long_path = points_bytes(Some(1), 1, &[1.0, 2.0]);
        long_path.push(0);
        let mut long_polygon = points_bytes(None, 1, &[1.0, 2.0]);
        long_polygon.push(0);
        let cases: Vec<(u32, Vec<u8>)> = vec![
            // fixed sizes: empty, a byte short, a byte long
            (600, vec![]),
            (600, point[..15].to_vec()),
            (600, [&point[..], &[0]].concat()),
            (601, float8s(&[1.0; 4])[..31].to_vec()),
            (601, float8s(&[1.0; 5])),
            (603, float8s(&[1.0; 3])),
            (603, [&float8s(&[1.0; 4])[..], &[0]].concat()),
            (628, float8s(&[1.0; 2])),
            (628, float8s(&[1.0; 4])),
            (718, float8s(&[1.0; 2])),
            (718, [&float8s(&[1.0; 3])[..], &[0]].concat()),
            // a line of A and B within 1e-6 of zero; a circle of negative radius
            (628, float8s(&[0.0, 0.0, 1.0])),
            (628, float8s(&[1e-7, -1e-6, 1.0])),
            (718, float8s(&[0.0, 0.0, -1.0])),
            (718, float8s(&[0.0, 0.0, f64::NEG_INFINITY])),
            // paths: no bytes, no count, no points, a negative count, a count the bytes do
            // not hold (or hold more than), half a point, a byte after, no closed flag
            (602, vec![]),
            (602, vec![1, 0, 0, 0]),
            (602, points_bytes(Some(1), 0, &[])),
            (602, points_bytes(Some(1), -1, &[1.0, 2.0])),
            (602, points_bytes(Some(1), i32::MAX, &[1.0, 2.0])),
            (602, points_bytes(Some(0), 2, &[1.0, 2.0])),
            (602, points_bytes(Some(0), 1, &[1.0, 2.0, 3.0, 4.0])),
            (602, points_bytes(Some(0), 1, &[1.0])),
            (602, long_path),
            (602, points_bytes(None, 1, &[1.0, 2.0])),
            // polygons: the same
            (604, vec![]),
            (604, vec![0, 0, 1]),
            (604, points_bytes(None, 0, &[])),
            (604, points_bytes(None, i32::MIN, &[1.0, 2.0])),
            (604, points_bytes(None, i32::MAX, &[1.0, 2.0])),
            (604, points_bytes(None, 3, &[1.0, 2.0, 3.0, 4.0])),
            (604, long_polygon),
            // arrays of them whose element is not one
            (1017, array_bytes(600, &[Some(&point[..15])])),
            (1020, array_bytes(603, &[Some(&point)])),
            (1027, array_bytes(604, &[Some(&points_bytes(None, 0, &[]))])),
            (629, array_bytes(628, &[Some(&float8s(&[0.0, 0.0, 1.0]))])),
            (719, array_bytes(718, &[Some(&float8s(&[0.0, 0.0, -1.0]))])),
        ];
        for (oid, bytes) in &cases {
            assert_eq!(text_of(*oid, bytes), hex(bytes), "type {oid}: {bytes:?}");
        }
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
            ("time_send", "'12:34:56.5'::time"),
            ("time_send", "'24:00'::time"),
            ("time_send", "'00:00:00.000001'::time"),
            ("time_send", "'00:00'::time"),
            ("timetz_send", "'12:34:56.789+02'::timetz"),
            ("timetz_send", "'01:02:03-05:30'::timetz"),
            ("timetz_send", "'01:02:03+05:30:15'::timetz"),
            ("timetz_send", "'01:02:03-00:00:01'::timetz"),
            ("timetz_send", "'23:59:59.999999-15:59'::timetz"),
            ("timetz_send", "'00:00:00+00'::timetz"),
            ("timetz_send", "'24:00:00+14'::timetz"),
            ("inet_send", "'192.168.1.5'::inet"),
            ("inet_send", "'192.168.1.5/24'::inet"),
            ("inet_send", "'192.168.1.5/32'::inet"),
            ("inet_send", "'0.0.0.0/0'::inet"),
            ("inet_send", "'::1'::inet"),
            ("inet_send", "'::'::inet"),
            ("inet_send", "'::1/128'::inet"),
            ("inet_send", "'2001:db8::1/64'::inet"),
            ("inet_send", "'1::'::inet"),
            ("inet_send", "'1:2:3:4:5:6:7:0'::inet"),
            ("inet_send", "'0:1:2:3:4:5:6:7'::inet"),
            ("inet_send", "'1:0:0:2:0:0:3:4'::inet"),
            ("inet_send", "'1:0:2:0:0:3:0:0'::inet"),
            ("inet_send", "'2001:db8:0:0:1:0:0:1'::inet"),
            ("inet_send", "'1:0:0:0:2:0:0:0'::inet"),
            ("inet_send", "'fe80::1:0:0:1'::inet"),
            ("inet_send", "'::ffff:1.2.3.4'::inet"),
            ("inet_send", "'::ffff:0.0.0.0'::inet"),
            ("inet_send", "'::1.2.3.4'::inet"),
            ("inet_send", "'::0.1.0.0'::inet"),
            ("inet_send", "'::2'::inet"),
            ("inet_send", "'::ffff:1:2:3'::inet"),
            ("inet_send", "'0:0:0:0:0:1:0:1'::inet"),
            ("cidr_send", "'10.0.0.0/8'::cidr"),
            ("cidr_send", "'0.0.0.0/0'::cidr"),
            ("cidr_send", "'1.2.3.4/32'::cidr"),
            ("cidr_send", "'192.168.1.128/25'::cidr"),
            ("cidr_send", "'::/0'::cidr"),
            ("cidr_send", "'::1/128'::cidr"),
            ("cidr_send", "'2001:db8::/32'::cidr"),
            ("cidr_send", "'::ffff:1.2.3.0/120'::cidr"),
            ("macaddr_send", "'08:00:2b:01:02:03'::macaddr"),
            ("macaddr_send", "'ff:ff:ff:ff:ff:ff'::macaddr"),
            ("macaddr8_send", "'08:00:2b:01:02:03:04:05'::macaddr8"),
            ("macaddr8_send", "'00:00:00:00:00:00:00:00'::macaddr8"),
            ("charsend", "'a'::\"char\""),
            ("charsend", "'\\351'::\"char\""),
            ("charsend", "''::\"char\""),
            ("oidsend", "12345::oid"),
            ("xidsend", "'4294967295'::xid"),
            ("cidsend", "'7'::cid"),
            ("xid8send", "'18446744073709551615'::xid8"),
            ("range_send", "'[1,5)'::int4range"),
            ("range_send", "'[1,5]'::int4range"),
            ("range_send", "'(1,5)'::int4range"),
            ("range_send", "'empty'::int4range"),
            ("range_send", "'(,10]'::int4range"),
            ("range_send", "'[3,)'::int4range"),
            ("range_send", "'(,)'::int4range"),
            ("range_send", "'[-2147483648,0)'::int4range"),
            (
                "range_send",
                "'[-9223372036854775808,9223372036854775806]'::int8range",
            ),
            ("range_send", "'[1.5,2.25]'::numrange"),
            ("range_send", "'(,0)'::numrange"),
            ("range_send", "'(-1,1]'::numrange"),
            ("range_send", "'[1,1]'::numrange"),
            ("range_send", "'[1,NaN)'::numrange"),
            ("range_send", "'[-Infinity,Infinity]'::numrange"),
            ("range_send", "'(0.0001,1e10)'::numrange"),
            ("range_send", "'[2026-01-01,2026-02-01)'::daterange"),
            ("range_send", "'[2026-01-01,2026-01-31]'::daterange"),
            ("range_send", "'(-infinity,infinity)'::daterange"),
            ("range_send", "'[-infinity,2026-01-01]'::daterange"),
            ("range_send", "'empty'::daterange"),
            ("multirange_send", "'{[1,3), [5,7)}'::int4multirange"),
            ("multirange_send", "'{}'::int4multirange"),
            ("multirange_send", "'{(,0), [10,)}'::int8multirange"),
            ("multirange_send", "'{[1.5,2), (2,3]}'::nummultirange"),
            (
                "multirange_send",
                "'{[2026-01-01,2026-01-05], [2026-02-01,)}'::datemultirange",
            ),
            (
                "array_send",
                "ARRAY['12:00+01'::timetz, '01:02:03.5-05:30', NULL]",
            ),
            ("array_send", "ARRAY['192.168.0.1/24'::inet, '::1', NULL]"),
            ("array_send", "ARRAY['10.0.0.0/8'::cidr, '::/0']"),
            ("array_send", "ARRAY['08:00:2b:01:02:03'::macaddr, NULL]"),
            ("array_send", "ARRAY['08:00:2b:01:02:03:04:05'::macaddr8]"),
            ("array_send", "ARRAY['a'::\"char\", 'b', NULL]"),
            ("array_send", "ARRAY['1'::xid, '2']"),
            ("array_send", "ARRAY['[1,5)'::int4range, 'empty', NULL]"),
            ("array_send", "ARRAY['(,1.5]'::numrange, '[2,3)']"),
            (
                "array_send",
                "'{{\"[2026-01-01,2026-02-01)\"},{empty}}'::daterange[]",
            ),
            (
                "array_send",
                "ARRAY['{[1,3), [5,7)}'::int4multirange, '{}', NULL]",
            ),
            // Geometric types, with coordinates PostgreSQL writes without an exponent.
            ("point_send", "'(1.5,-2.25)'::point"),
            ("point_send", "'(0,-0)'::point"),
            ("point_send", "'(NaN,100000000000000)'::point"),
            ("point_send", "'(0.0001,-123456.789)'::point"),
            ("point_send", "point(0.1::float8 + 0.2, 1::float8 / 3)"),
            ("lseg_send", "'[(1,2),(-3.5,0)]'::lseg"),
            ("lseg_send", "'[(0,0),(0,0)]'::lseg"),
            ("path_send", "'((0,0),(1,1),(2,0))'::path"),
            ("path_send", "'[(0,0),(1,1),(2,-0.5),(3,3)]'::path"),
            ("path_send", "'[(7,8)]'::path"),
            ("path_send", "'((7,8))'::path"),
            ("box_send", "'(0,1),(1,0)'::box"),
            ("box_send", "'((-3,-4),(-1,-2))'::box"),
            ("box_send", "'(2.5,0),(-2.5,0)'::box"),
            ("box_send", "'(NaN,1),(2,NaN)'::box"),
            ("poly_send", "'((0,0),(0,1),(1,1),(1,0))'::polygon"),
            ("poly_send", "'((-1.5,2))'::polygon"),
            ("line_send", "'{1,-2,0.5}'::line"),
            ("line_send", "'[(0,0),(1,1)]'::line"),
            ("line_send", "'{0,3,-0}'::line"),
            ("circle_send", "'<(1,-2),3.5>'::circle"),
            ("circle_send", "'<(0,0),0>'::circle"),
            ("circle_send", "'<(0,0),NaN>'::circle"),
            ("array_send", "ARRAY['(1,2)'::point, '(-0.5,0)', NULL]"),
            ("array_send", "'[0:1]={\"(1,2)\",\"(3,4)\"}'::point[]"),
            ("array_send", "ARRAY['[(1,2),(3,4)]'::lseg]"),
            (
                "array_send",
                "ARRAY['((0,0),(1,1))'::path, '[(0,0),(1,1)]']",
            ),
            (
                "array_send",
                "ARRAY['(0,1),(1,0)'::box, '(3,3),(2,2)', NULL]",
            ),
            ("array_send", "'{{(1,1),(0,0)};{(2,2),(1,1)}}'::box[]"),
            ("array_send", "'{}'::box[]"),
            ("array_send", "ARRAY['((0,0),(1,0),(0,1))'::polygon, NULL]"),
            ("array_send", "ARRAY['{1,2,3}'::line, '{-1,0,0.25}']"),
            ("array_send", "ARRAY['<(1,2),3>'::circle, NULL]"),
        ];
        // `inet::text` writes the mask always (`network_show`); an `inet` is recorded as its
        // output function writes it (as psql shows it, and as it is written in an array),
        // without the mask when it is the whole address.
        let text = "CASE WHEN pg_typeof(v) = 'inet'::regtype THEN format('%s', v) ELSE v::text END";
        for (send, value) in values {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {send}(v) AS bin, {text} AS text, pg_typeof(v)::oid::int8 AS oid FROM (SELECT {value} AS v) AS x"
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
        // Every pattern of zero groups in an IPv6 address (where `::` goes, when the last 32
        // bits are written as IPv4), and every mask length of an inet and a cidr.
        let addresses = sqlx::query(
            "SELECT inet_send(a) AS bin, format('%s', a) AS text, 869::int8 AS oid FROM (
               SELECT array_to_string(ARRAY(
                 SELECT CASE WHEN i >> g & 1 = 0 THEN '0' WHEN g = 5 THEN 'ffff' ELSE to_hex(g + 1) END
                 FROM generate_series(0, 7) AS g), ':')::inet AS a
               FROM generate_series(0, 255) AS i) AS x
             UNION ALL
             SELECT inet_send(set_masklen(a, n)), format('%s', set_masklen(a, n)), 869
             FROM (VALUES ('255.255.255.255'::inet, 32), ('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 128)) AS x (a, m),
               generate_series(0, m) AS n
             UNION ALL
             SELECT cidr_send(network(set_masklen(a, n))), format('%s', network(set_masklen(a, n))), 650
             FROM (VALUES ('255.255.255.255'::inet, 32), ('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 128)) AS x (a, m),
               generate_series(0, m) AS n",
        )
        .fetch_all(&mut c)
        .await
        .expect("addresses");
        assert_eq!(addresses.len(), 256 + 2 * (33 + 129));
        for row in addresses {
            let bin: Vec<u8> = row.get("bin");
            let text: String = row.get("text");
            let oid = u32::try_from(row.get::<i64, _>("oid")).expect("oid");
            assert_eq!(text_of(oid, &bin), text, "type {oid}: {bin:?}");
        }

        // Timestamps are recorded in RFC 3339 (`timestamptz` in UTC, whatever the session's
        // TimeZone), not as PostgreSQL prints them: a range of them is held against the
        // bounds and flags PostgreSQL gives, with the bounds written so.
        sqlx::raw_sql("SET TimeZone = 'Asia/Kathmandu'")
            .execute(&mut c)
            .await
            .expect("set TimeZone");
        let rfc3339 = |bound: &str, zoned: bool| {
            let (utc, z) = if zoned {
                (" AT TIME ZONE 'UTC'", "\"Z\"")
            } else {
                ("", "")
            };
            format!(
                "CASE WHEN isfinite({bound}) THEN to_char({bound}{utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US{z}') ELSE {bound}::text END"
            )
        };
        let timestamp_ranges = [
            "'[\"2026-01-01 00:00\",\"2026-02-01 00:00\")'::tsrange",
            "'(,2026-01-01 12:34:56.789]'::tsrange",
            "'[-infinity,infinity]'::tsrange",
            "'empty'::tsrange",
            "'[2026-01-01 00:00+02,2026-01-01 00:00:00.5+02)'::tstzrange",
            "'(,)'::tstzrange",
            "'[2026-06-30 23:59:59.999999-07,infinity]'::tstzrange",
            "'[2026-01-01 00:00+00,2026-01-01 00:00+00)'::tstzrange",
            "'(2026-01-01 05:45+05:45,)'::tstzrange",
        ];
        for value in timestamp_ranges {
            let zoned = value.ends_with("tstzrange");
            let (lower, upper) = (rfc3339("lower(v)", zoned), rfc3339("upper(v)", zoned));
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT range_send(v) AS bin, v::text AS shown, pg_typeof(v)::oid::int8 AS oid,
                   CASE WHEN isempty(v) THEN 'empty'
                   ELSE CASE WHEN lower_inc(v) THEN '[' ELSE '(' END
                     || coalesce({lower}, '') || ',' || coalesce({upper}, '')
                     || CASE WHEN upper_inc(v) THEN ']' ELSE ')' END
                   END AS text
                 FROM (SELECT {value} AS v) AS x"
            )))
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{value}: {e}"));
            let bin: Vec<u8> = row.get("bin");
            let (text, shown): (String, String) = (row.get("text"), row.get("shown"));
            let oid = u32::try_from(row.get::<i64, _>("oid")).expect("oid");
            assert_eq!(
                rendered(&[(true, Some(&bin))], &[oid]),
                [Some(text.clone())],
                "{value} (type {oid}): PostgreSQL prints {shown}"
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

    /// A binary composite value: its columns, each `(type OID, bytes)` (`None`: NULL), as
    /// `record_send` writes them.
    fn record_bytes(columns: &[(u32, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = i32::try_from(columns.len()).unwrap().to_be_bytes().to_vec();
        for (oid, value) in columns {
            b.extend(oid.to_be_bytes());
            push_value(&mut b, *value);
        }
        b
    }

    /// Composite values and `money` as PostgreSQL prints them (the expected texts are what
    /// PostgreSQL 15 printed for `ROW(1,'a b',NULL::int,true,'')`, `ROW(1, ROW(2,'x'))`,
    /// `ARRAY[ROW(1,'a'),ROW(2,'b')]`, `ROW('\x0102'::bytea)`, `ROW('q"b\c'::text)`, and
    /// `money` without its currency symbol and separators).
    #[test]
    fn composite_values_and_money_are_recorded_as_text() {
        let one = 1i32.to_be_bytes();
        let two = 2i32.to_be_bytes();
        let row = record_bytes(&[
            (23, Some(&one)),
            (25, Some(b"a b")),
            (23, None),
            (16, Some(&[1])),
            (25, Some(b"")),
        ]);
        assert_eq!(text_of(2249, &row), "(1,\"a b\",,t,\"\")");
        // A row of a type the gateway does not know (a table's row type, say): decoded the
        // same when every column is of a type decoded here.
        assert_eq!(text_of(16_390, &row), "(1,\"a b\",,t,\"\")");
        let inner = record_bytes(&[(23, Some(&two)), (25, Some(b"x"))]);
        let nested = record_bytes(&[(23, Some(&one)), (2249, Some(&inner))]);
        assert_eq!(text_of(2249, &nested), "(1,\"(2,x)\")");
        assert_eq!(text_of(16_391, &nested), "(1,\"(2,x)\")");
        // A nested row of an unknown type too.
        let nested = record_bytes(&[(23, Some(&one)), (16_392, Some(&inner))]);
        assert_eq!(text_of(16_391, &nested), "(1,\"(2,x)\")");
        assert_eq!(
            text_of(2249, &record_bytes(&[(17, Some(&[1, 2]))])),
            "(\"\\\\x0102\")"
        );
        assert_eq!(
            text_of(2249, &record_bytes(&[(25, Some(b"q\"b\\c"))])),
            "(\"q\"\"b\\\\c\")"
        );
        assert_eq!(text_of(2249, &record_bytes(&[])), "()");
        // record[]
        let a = record_bytes(&[(23, Some(&one)), (25, Some(b"a"))]);
        let b = record_bytes(&[(23, Some(&two)), (25, Some(b"b"))]);
        let mut array = Vec::new();
        for w in [1i32, 0, 2249, 2, 1] {
            array.extend(w.to_be_bytes());
        }
        for r in [&a, &b] {
            array.extend(i32::try_from(r.len()).unwrap().to_be_bytes());
            array.extend(r);
        }
        assert_eq!(text_of(2287, &array), "{\"(1,a)\",\"(2,b)\"}");
        // In a record, a column of a type not decoded is in hex; a row of an unknown type
        // with such a column is not taken for a composite value at all.
        let odd = record_bytes(&[(23, Some(&one)), (16_500, Some(&[7, 7, 7]))]);
        assert_eq!(text_of(2249, &odd), "(1,\"\\\\x070707\")");
        assert!(text_of(16_390, &odd).starts_with("\\x"));
        // Bytes of another unknown type are not mistaken for a row: an int4 domain's 0 and
        // 1, a text, a count the bytes cannot hold, trailing bytes, a zero type OID.
        let mut trailing = row.clone();
        trailing.push(0);
        let mut zero_oid = row.clone();
        zero_oid[4..8].copy_from_slice(&[0, 0, 0, 0]);
        let mut count = row.clone();
        count[..4].copy_from_slice(&6i32.to_be_bytes());
        for bytes in [
            &0i32.to_be_bytes()[..],
            &one[..],
            b"enum label",
            &count,
            &trailing,
            &zero_oid,
        ] {
            assert!(text_of(16_390, bytes).starts_with("\\x"), "{bytes:?}");
        }
        for bytes in [&count, &trailing, &zero_oid] {
            assert!(text_of(2249, bytes).starts_with("\\x"), "{bytes:?}");
        }
        // Nesting is bounded (the bytes are the client's): past the limit a row is in hex.
        let mut deep = record_bytes(&[(23, Some(&one))]);
        for _ in 0..1000 {
            deep = record_bytes(&[(2249, Some(&deep))]);
        }
        let text = text_of(2249, &deep);
        assert!(text.starts_with("(\"(\"\"(\"\"\"\"("), "{text}");
        assert!(text.contains("\\x"), "{text}");
        // Rows of unknown types nested past the limit are not taken for one at all.
        let mut deep = record_bytes(&[(23, Some(&one))]);
        for _ in 0..1000 {
            deep = record_bytes(&[(16_392, Some(&deep))]);
        }
        assert!(text_of(16_390, &deep).starts_with("\\x"));
        let mut shallow = record_bytes(&[(23, Some(&one))]);
        for _ in 0..usize::try_from(RECORD_MAX_DEPTH).unwrap() - 1 {
            shallow = record_bytes(&[(16_392, Some(&shallow))]);
        }
        assert!(text_of(16_390, &shallow).starts_with("(\""));
        // money: hundredths
        assert_eq!(text_of(790, &123_456i64.to_be_bytes()), "1234.56");
        assert_eq!(text_of(790, &(-5i64).to_be_bytes()), "-0.05");
        assert_eq!(
            text_of(790, &i64::MIN.to_be_bytes()),
            "-92233720368547758.08"
        );
        assert!(text_of(790, &one).starts_with("\\x"));
        let mut money = Vec::new();
        for w in [1i32, 0, 790, 2, 1] {
            money.extend(w.to_be_bytes());
        }
        for m in [100i64, 250] {
            money.extend(8i32.to_be_bytes());
            money.extend(m.to_be_bytes());
        }
        assert_eq!(text_of(791, &money), "{1.00,2.50}");
    }
}
