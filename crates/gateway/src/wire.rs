//! The PostgreSQL wire protocol, as far as the gateway reads it: the untagged start-up
//! packets, message framing, the few client messages it records (Query, Parse, Bind,
//! Execute, Sync, Terminate, PasswordMessage) and the few server messages it follows
//! (CommandComplete, ErrorResponse, ReadyForQuery, EmptyQueryResponse, PortalSuspended,
//! BackendKeyData). Everything else is passed through as opaque bytes.
//!
//! Written here rather than taken from a crate: `postgres-protocol` (used for the upstream
//! login: start-up message, SCRAM-SHA-256) parses server messages only, into owned buffers;
//! `pgwire` is a whole server framework. The gateway needs zero-copy inspection of a
//! message's first fields in both directions, and every byte here is untrusted: each decoder
//! returns an error, never panics (fuzzed by `fuzz/fuzz_targets/pg_wire.rs`).

/// Protocol version 3.0.
pub const PROTOCOL_3: i32 = 196_608;
/// The SSLRequest code.
pub const SSL_REQUEST: i32 = 80_877_103;
/// The GSSENCRequest code.
pub const GSSENC_REQUEST: i32 = 80_877_104;
/// The CancelRequest code.
pub const CANCEL_REQUEST: i32 = 80_877_102;
/// Largest start-up packet accepted (PostgreSQL itself allows 10 000 bytes).
pub const MAX_STARTUP: usize = 10_000;
/// Largest client message the gateway buffers whole (CopyData streams through).
pub const MAX_CLIENT_MESSAGE: usize = 64 << 20;
/// Largest server message the gateway inspects (only small ones are inspected).
pub const MAX_INSPECTED: usize = 1 << 20;

/// A malformed message: the connection is closed with this error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A length field below 4 or above the limit.
    #[error("message `{tag}` declares a length of {len} bytes (allowed: 4 to {max})")]
    Length {
        /// The message tag, or `startup`.
        tag: Tag,
        /// Declared length.
        len: i64,
        /// Limit.
        max: usize,
    },
    /// A field that does not fit in the message.
    #[error("message `{tag}` is truncated: {what}")]
    Truncated {
        /// The message tag.
        tag: Tag,
        /// What was missing.
        what: &'static str,
    },
    /// Text that is not UTF-8.
    #[error("message `{tag}`: {what} is not UTF-8")]
    Utf8 {
        /// The message tag.
        tag: Tag,
        /// Which field.
        what: &'static str,
    },
    /// An unknown start-up code or protocol version.
    #[error("unsupported start-up request (code {0}); this gateway speaks protocol 3.0")]
    Startup(i32),
}

/// Which message an error is about: named only when an error is shown, so decoding a
/// message allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// The untagged start-up packet.
    Startup,
    /// A tagged message.
    Byte(u8),
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Tag::Startup => f.write_str("startup"),
            Tag::Byte(b) if b.is_ascii_graphic() => write!(f, "{}", b as char),
            Tag::Byte(b) => write!(f, "0x{b:02x}"),
        }
    }
}

/// An untagged packet a client sends first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// Asks for TLS.
    Ssl,
    /// Asks for GSSAPI encryption (refused with `N`).
    GssEnc,
    /// Cancels a running query of another connection.
    Cancel {
        /// Process id the gateway gave the client.
        pid: i32,
        /// Secret key the gateway gave the client.
        key: Vec<u8>,
    },
    /// The start-up message with its parameters (`user`, `database`, `application_name`…).
    Params(Vec<(String, String)>),
}

/// The length of the start-up packet at the front of `buf`, once its 4-byte length is there.
pub fn startup_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    match usize::try_from(len) {
        Ok(n) if (8..=MAX_STARTUP).contains(&n) => Ok(Some(n)),
        _ => Err(WireError::Length {
            tag: Tag::Startup,
            len: i64::from(len),
            max: MAX_STARTUP,
        }),
    }
}

/// Decodes a whole start-up packet (length included).
pub fn decode_startup(packet: &[u8]) -> Result<Startup, WireError> {
    let truncated = |what| WireError::Truncated {
        tag: Tag::Startup,
        what,
    };
    let code = packet
        .get(4..8)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| truncated("code"))?;
    match code {
        SSL_REQUEST => Ok(Startup::Ssl),
        GSSENC_REQUEST => Ok(Startup::GssEnc),
        CANCEL_REQUEST => {
            let pid = packet
                .get(8..12)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| truncated("process id"))?;
            let key = packet.get(12..).unwrap_or_default().to_vec();
            if key.is_empty() || key.len() > 256 {
                return Err(truncated("secret key"));
            }
            Ok(Startup::Cancel { pid, key })
        }
        PROTOCOL_3 => {
            let mut params = Vec::new();
            let mut rest = packet.get(8..).unwrap_or_default();
            loop {
                let (name, after) = cstr(rest, Tag::Startup, "parameter name")?;
                if name.is_empty() {
                    break;
                }
                let (value, after) = cstr(after, Tag::Startup, "parameter value")?;
                params.push((name.to_owned(), value.to_owned()));
                rest = after;
            }
            Ok(Startup::Params(params))
        }
        other => Err(WireError::Startup(other)),
    }
}

/// A NUL-terminated UTF-8 string at the front of `b`, and what follows it.
fn cstr<'a>(b: &'a [u8], tag: Tag, what: &'static str) -> Result<(&'a str, &'a [u8]), WireError> {
    let end = memchr::memchr(0, b).ok_or(WireError::Truncated { tag, what })?;
    let s = std::str::from_utf8(&b[..end]).map_err(|_| WireError::Utf8 { tag, what })?;
    Ok((s, &b[end + 1..]))
}

/// The header of a tagged message at the front of `buf`: its tag and total size (tag and
/// length included), once the 5 header bytes are there.
pub fn header(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, WireError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    match usize::try_from(len) {
        Ok(n) if n >= 4 && n <= max => Ok(Some((buf[0], n + 1))),
        _ => Err(WireError::Length {
            tag: Tag::Byte(buf[0]),
            len: i64::from(len),
            max,
        }),
    }
}

/// A client message the gateway looks into (`body` is the message without tag and length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage<'a> {
    /// Simple query.
    Query(&'a str),
    /// Prepares `query` as statement `name` (`""`: the unnamed one).
    Parse {
        /// Statement name.
        name: &'a str,
        /// Its text.
        query: &'a str,
        /// The parameter types the client named (OIDs; `0`: left to the server).
        types: ParamTypes<'a>,
    },
    /// Binds statement `statement` to portal `portal`.
    Bind {
        /// Portal name.
        portal: &'a str,
        /// Statement name.
        statement: &'a str,
        /// The parameter values.
        params: BindParams<'a>,
    },
    /// Runs portal `portal`.
    Execute {
        /// Portal name.
        portal: &'a str,
    },
    /// Asks the server to describe a prepared statement (`S`) or portal (`P`).
    Describe {
        /// `S` or `P`.
        kind: u8,
        /// Its name.
        name: &'a str,
    },
    /// Closes a prepared statement (`S`) or portal (`P`).
    Close {
        /// `S` or `P`.
        kind: u8,
        /// Its name.
        name: &'a str,
    },
    /// A fast-path function call (libpq's `PQfn`, which its large-object functions use):
    /// the function's OID and its arguments.
    FunctionCall {
        /// The function's OID.
        oid: u32,
        /// Its arguments (laid out as a Bind's parameters).
        args: BindParams<'a>,
    },
    /// Data of a `COPY … FROM STDIN` (looked into only while one runs).
    CopyData(&'a [u8]),
    /// The end of a `COPY … FROM STDIN`'s data: `CopyDone`, or `CopyFail` (`failed`).
    CopyEnd {
        /// The client gave up (CopyFail).
        failed: bool,
    },
    /// Ends an extended-protocol batch.
    Sync,
    /// Ends the session.
    Terminate,
    /// A password (or SASL) message.
    Password(&'a [u8]),
    /// Anything else (passed through).
    Other(u8),
}

/// The parameter type OIDs of a Parse message (checked complete when decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParamTypes<'a>(&'a [u8]);

impl ParamTypes<'_> {
    /// The OIDs, in order.
    pub fn oids(&self) -> impl Iterator<Item = u32> + '_ {
        self.0
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len() / 4
    }

    /// Whether none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The parameter values of a Bind message (checked complete when decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BindParams<'a> {
    /// The format codes: none (all text), one (for all) or one per parameter; 2 bytes each.
    formats: &'a [u8],
    count: usize,
    /// The values, each a 4-byte length (`-1`: NULL) and its bytes.
    values: &'a [u8],
}

impl<'a> BindParams<'a> {
    /// How many parameters.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Each parameter: whether it is in binary format, and its bytes (`None`: NULL).
    pub fn iter(&self) -> impl Iterator<Item = (bool, Option<&'a [u8]>)> + 'a {
        let formats = self.formats;
        let mut rest = self.values;
        (0..self.count).map(move |i| {
            let code = match formats.len() / 2 {
                0 => 0,
                1 => u16::from_be_bytes([formats[0], formats[1]]),
                _ => formats
                    .get(2 * i..2 * i + 2)
                    .map_or(0, |c| u16::from_be_bytes([c[0], c[1]])),
            };
            // Lengths were checked by `decode_client`; a short value cannot happen here, and
            // would read as NULL rather than panic.
            let len = rest
                .get(..4)
                .map_or(-1, |l| i32::from_be_bytes([l[0], l[1], l[2], l[3]]));
            rest = rest.get(4..).unwrap_or_default();
            let value = usize::try_from(len).ok().map(|n| {
                let (v, after) = rest.split_at(n.min(rest.len()));
                rest = after;
                v
            });
            (code != 0, value)
        })
    }
}

/// Reads a 2-byte count at the front of `b`.
fn count16<'a>(b: &'a [u8], tag: Tag, what: &'static str) -> Result<(usize, &'a [u8]), WireError> {
    let c = b.get(..2).ok_or(WireError::Truncated { tag, what })?;
    Ok((usize::from(u16::from_be_bytes([c[0], c[1]])), &b[2..]))
}

/// Splits off `n` bytes at the front of `b`.
fn take<'a>(
    b: &'a [u8],
    n: usize,
    tag: Tag,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), WireError> {
    if b.len() < n {
        return Err(WireError::Truncated { tag, what });
    }
    Ok(b.split_at(n))
}

/// The names of a value list's fields in errors: a Bind's parameters or a function call's
/// arguments (`[format count, formats, count, length, value]`).
const PARAMETERS: [&str; 5] = [
    "parameter format count",
    "parameter formats",
    "parameter count",
    "parameter length",
    "parameter value",
];
const ARGUMENTS: [&str; 5] = [
    "argument format count",
    "argument formats",
    "argument count",
    "argument length",
    "argument value",
];

/// Format codes and values (a Bind's parameters after its names, a function call's arguments
/// after its OID), checked complete; `names` name the fields in errors.
fn values<'a>(
    b: &'a [u8],
    tag: Tag,
    names: &[&'static str; 5],
) -> Result<BindParams<'a>, WireError> {
    let (nformats, b) = count16(b, tag, names[0])?;
    let (formats, b) = take(b, 2 * nformats, tag, names[1])?;
    let (count, values) = count16(b, tag, names[2])?;
    let mut rest = values;
    for _ in 0..count {
        let (len, after) = take(rest, 4, tag, names[3])?;
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        rest = match usize::try_from(len) {
            Ok(n) => take(after, n, tag, names[4])?.1,
            Err(_) if len == -1 => after,
            Err(_) => {
                return Err(WireError::Truncated {
                    tag,
                    what: names[3],
                });
            }
        };
    }
    Ok(BindParams {
        formats,
        count,
        values: &values[..values.len() - rest.len()],
    })
}

/// Decodes a client message's first fields.
pub fn decode_client(tag: u8, body: &[u8]) -> Result<ClientMessage<'_>, WireError> {
    let t = Tag::Byte(tag);
    Ok(match tag {
        b'Q' => ClientMessage::Query(cstr(body, t, "query")?.0),
        b'P' => {
            let (name, rest) = cstr(body, t, "statement name")?;
            let (query, rest) = cstr(rest, t, "query")?;
            let (n, rest) = count16(rest, t, "parameter type count")?;
            let (types, _) = take(rest, 4 * n, t, "parameter types")?;
            ClientMessage::Parse {
                name,
                query,
                types: ParamTypes(types),
            }
        }
        b'B' => {
            let (portal, rest) = cstr(body, t, "portal name")?;
            let (statement, rest) = cstr(rest, t, "statement name")?;
            ClientMessage::Bind {
                portal,
                statement,
                params: values(rest, t, &PARAMETERS)?,
            }
        }
        b'E' => ClientMessage::Execute {
            portal: cstr(body, t, "portal name")?.0,
        },
        b'C' | b'D' => {
            let kind = *body.first().ok_or(WireError::Truncated {
                tag: t,
                what: if tag == b'C' {
                    "close kind"
                } else {
                    "describe kind"
                },
            })?;
            let name = cstr(&body[1..], t, "name")?.0;
            if tag == b'C' {
                ClientMessage::Close { kind, name }
            } else {
                ClientMessage::Describe { kind, name }
            }
        }
        b'F' => {
            let (oid, rest) = take(body, 4, t, "function OID")?;
            ClientMessage::FunctionCall {
                oid: u32::from_be_bytes([oid[0], oid[1], oid[2], oid[3]]),
                args: values(rest, t, &ARGUMENTS)?,
            }
        }
        b'd' => ClientMessage::CopyData(body),
        b'c' => ClientMessage::CopyEnd { failed: false },
        b'f' => ClientMessage::CopyEnd { failed: true },
        b'S' => ClientMessage::Sync,
        b'X' => ClientMessage::Terminate,
        b'p' => ClientMessage::Password(body),
        other => ClientMessage::Other(other),
    })
}

/// A server message the gateway follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage<'a> {
    /// A command finished, with its tag (`SELECT 3`).
    CommandComplete(&'a str),
    /// An empty query string.
    EmptyQuery,
    /// An Execute stopped at its row limit.
    PortalSuspended,
    /// An error (`code`: SQLSTATE, `message`).
    Error {
        /// SQLSTATE.
        code: &'a str,
        /// Primary message.
        message: &'a str,
        /// Severity (`ERROR`, `FATAL`…).
        severity: &'a str,
    },
    /// Ready for the next query, with the transaction status (`I`, `T`, `E`).
    Ready(u8),
    /// The parameter types of a described statement.
    ParameterTypes(ParamTypes<'a>),
    /// The server waits for a `COPY … FROM STDIN`'s data; `binary`: in binary format.
    CopyIn {
        /// Binary format (otherwise text or CSV).
        binary: bool,
    },
    /// The backend's cancellation key.
    BackendKey {
        /// Process id.
        pid: i32,
        /// Secret key.
        key: &'a [u8],
    },
    /// Anything else.
    Other(u8),
}

/// Whether the gateway decodes server messages with this tag (the others stream through).
pub fn server_inspects(tag: u8) -> bool {
    matches!(tag, b'C' | b'I' | b's' | b'E' | b'Z' | b'K' | b't' | b'G')
}

/// Decodes a server message the gateway follows.
pub fn decode_server(tag: u8, body: &[u8]) -> Result<ServerMessage<'_>, WireError> {
    let t = Tag::Byte(tag);
    Ok(match tag {
        b'C' => ServerMessage::CommandComplete(cstr(body, t, "command tag")?.0),
        b'I' => ServerMessage::EmptyQuery,
        b's' => ServerMessage::PortalSuspended,
        b'E' => {
            let (mut code, mut message, mut severity) = ("", "", "");
            let mut rest = body;
            while let Some((&field, after)) = rest.split_first() {
                if field == 0 {
                    break;
                }
                let (value, after) = cstr(after, t, "error field")?;
                match field {
                    b'C' => code = value,
                    b'M' => message = value,
                    b'V' => severity = value,
                    b'S' if severity.is_empty() => severity = value,
                    _ => {}
                }
                rest = after;
            }
            ServerMessage::Error {
                code,
                message,
                severity,
            }
        }
        b'Z' => ServerMessage::Ready(*body.first().ok_or(WireError::Truncated {
            tag: t,
            what: "transaction status",
        })?),
        b'G' => ServerMessage::CopyIn {
            binary: *body.first().ok_or(WireError::Truncated {
                tag: t,
                what: "copy format",
            })? != 0,
        },
        b't' => {
            let (n, rest) = count16(body, t, "parameter type count")?;
            ServerMessage::ParameterTypes(ParamTypes(take(rest, 4 * n, t, "parameter types")?.0))
        }
        b'K' => {
            let pid = body
                .get(0..4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(WireError::Truncated {
                    tag: t,
                    what: "process id",
                })?;
            ServerMessage::BackendKey {
                pid,
                key: &body[4..],
            }
        }
        other => ServerMessage::Other(other),
    })
}

/// Rows returned or affected, from a command tag (`SELECT 5`, `INSERT 0 3`, `UPDATE 2`).
pub fn rows_of(tag: &str) -> Option<u64> {
    let mut words = tag.split(' ');
    let command = words.next()?;
    let last = tag.rsplit(' ').next()?;
    match command {
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "FETCH" | "MOVE" | "COPY" => {
            last.parse().ok()
        }
        _ => None,
    }
}

/// Appends an ErrorResponse (or NoticeResponse with `tag` `N`).
pub fn error_response(
    out: &mut Vec<u8>,
    severity: &str,
    code: &str,
    message: &str,
    hint: Option<&str>,
) {
    let start = out.len();
    out.push(b'E');
    out.extend_from_slice(&[0; 4]);
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ]
    .into_iter()
    .chain(hint.map(|h| (b'H', h)))
    {
        out.push(field);
        out.extend(value.bytes().filter(|&b| b != 0));
        out.push(0);
    }
    out.push(0);
    let len = i32::try_from(out.len() - start - 1).unwrap_or(i32::MAX);
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

/// Appends a message with `tag` and `body`.
pub fn message(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    let len = i32::try_from(body.len() + 4).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
}

/// `text` reduced to upper-case words separated by single spaces, with comments and the
/// contents of quoted strings and identifiers kept as words too (a refused keyword inside a
/// `DO` block's string is still found: the check errs on the side of refusing).
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last_space = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        // `--` comments to the end of the line and `/* */` comments become a space.
        if c == '-' && chars.peek() == Some(&'-') {
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
            if !last_space {
                out.push(' ');
                last_space = true;
            }
            continue;
        }
        if c == '/' && chars.peek() == Some(&'*') {
            chars.next();
            let mut prev = ' ';
            for c in chars.by_ref() {
                if prev == '*' && c == '/' {
                    break;
                }
                prev = c;
            }
            if !last_space {
                out.push(' ');
                last_space = true;
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            out.extend(c.to_uppercase());
            last_space = false;
        } else if !last_space {
            out.push(' ');
            last_space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// The first of `patterns` (normalized, e.g. `DROP DATABASE`) that `text` contains as whole
/// words.
pub fn refused<'p>(text: &str, patterns: &'p [String]) -> Option<&'p str> {
    // Fast path, taken by almost every statement: a pattern can match only when its first word
    // appears in the raw text (in any case), since normalizing only removes and separates.
    let maybe = patterns.iter().any(|p| {
        let first = p
            .as_bytes()
            .split(|&b| b == b' ')
            .next()
            .unwrap_or_default();
        contains_ignore_ascii_case(text.as_bytes(), first)
    });
    if !maybe {
        return None;
    }
    let words = format!(" {} ", normalize(text));
    patterns
        .iter()
        .find(|p| words.contains(&format!(" {p} ")))
        .map(String::as_str)
}

/// Whether `word` (non-empty) occurs in `text` in any ASCII case: `memchr` finds the
/// candidates by the first byte, in either case, a block at a time.
fn contains_ignore_ascii_case(text: &[u8], word: &[u8]) -> bool {
    let Some(&first) = word.first() else {
        return false;
    };
    memchr::memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), text).any(|i| {
        text.get(i..i + word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_packets_decode() {
        let mut p = vec![0, 0, 0, 0];
        p.extend_from_slice(&PROTOCOL_3.to_be_bytes());
        p.extend_from_slice(b"user\0b-1\0database\0app\0\0");
        let n = p.len() as i32;
        p[..4].copy_from_slice(&n.to_be_bytes());
        assert_eq!(startup_len(&p).unwrap(), Some(p.len()));
        assert_eq!(
            decode_startup(&p).unwrap(),
            Startup::Params(vec![
                ("user".into(), "b-1".into()),
                ("database".into(), "app".into())
            ])
        );
        let mut ssl = 8i32.to_be_bytes().to_vec();
        ssl.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        assert_eq!(decode_startup(&ssl).unwrap(), Startup::Ssl);
        assert!(startup_len(&[0, 0, 0, 3]).is_err());
        assert!(startup_len(&[0x7f, 0, 0, 0]).is_err());
        let mut bad = 8i32.to_be_bytes().to_vec();
        bad.extend_from_slice(&1234i32.to_be_bytes());
        assert_eq!(decode_startup(&bad).unwrap_err(), WireError::Startup(1234));
        // A parameter without its terminator is an error, not a panic.
        let mut cut = 12i32.to_be_bytes().to_vec();
        cut.extend_from_slice(&PROTOCOL_3.to_be_bytes());
        cut.extend_from_slice(b"user");
        assert!(decode_startup(&cut).is_err());
    }

    #[test]
    fn client_and_server_messages_decode() {
        assert_eq!(
            decode_client(b'Q', b"SELECT 1\0").unwrap(),
            ClientMessage::Query("SELECT 1")
        );
        assert_eq!(
            decode_client(b'P', b"s1\0SELECT $1\0\0\0").unwrap(),
            ClientMessage::Parse {
                name: "s1",
                query: "SELECT $1",
                types: ParamTypes::default(),
            }
        );
        let ClientMessage::Parse { types, .. } =
            decode_client(b'P', b"\0SELECT $1, $2\0\0\x02\0\0\0\x17\0\0\0\0").unwrap()
        else {
            panic!("not a Parse");
        };
        assert_eq!(types.oids().collect::<Vec<_>>(), [23, 0]);
        // Two parameters: a format code for each (text, binary), 'ab' and NULL.
        let bind = b"p\0s\0\0\x02\0\0\0\x01\0\x02\0\0\0\x02ab\xff\xff\xff\xff\0\0";
        let ClientMessage::Bind {
            portal,
            statement,
            params,
        } = decode_client(b'B', bind).unwrap()
        else {
            panic!("not a Bind");
        };
        assert_eq!((portal, statement, params.len()), ("p", "s", 2));
        assert_eq!(
            params.iter().collect::<Vec<_>>(),
            [(false, Some(&b"ab"[..])), (true, None)]
        );
        // One format code for all.
        let ClientMessage::Bind { params, .. } =
            decode_client(b'B', b"\0\0\0\x01\0\x01\0\x01\0\0\0\x01z\0\0").unwrap()
        else {
            panic!("not a Bind");
        };
        assert_eq!(params.iter().collect::<Vec<_>>(), [(true, Some(&b"z"[..]))]);
        // Cut anywhere, a Bind is an error naming what is missing, never a panic.
        for cut in 0..bind.len() - 2 {
            assert!(decode_client(b'B', &bind[..cut]).is_err(), "cut at {cut}");
        }
        assert!(matches!(
            decode_client(b'B', b"\0\0\0\0\0\x01\0\0\0\x09ab"),
            Err(WireError::Truncated {
                what: "parameter value",
                ..
            })
        ));
        assert!(decode_client(b'P', b"s\0SELECT 1\0\0\x01\0\0").is_err());
        assert!(decode_client(b'Q', b"no terminator").is_err());
        assert!(decode_client(b'C', b"").is_err());
        assert_eq!(
            decode_server(b'C', b"UPDATE 3\0").unwrap(),
            ServerMessage::CommandComplete("UPDATE 3")
        );
        let mut e = Vec::new();
        error_response(&mut e, "ERROR", "42501", "refused", Some("why"));
        let (tag, len) = header(&e, MAX_INSPECTED).unwrap().unwrap();
        assert_eq!((tag, len), (b'E', e.len()));
        assert_eq!(
            decode_server(b'E', &e[5..]).unwrap(),
            ServerMessage::Error {
                code: "42501",
                message: "refused",
                severity: "ERROR"
            }
        );
        assert!(header(&[b'D', 0, 0, 0, 2], 100).is_err());
        assert!(header(&[b'D', 0xff, 0, 0, 0], 100).is_err());
        assert_eq!(header(&[b'D', 0, 0], 100).unwrap(), None);
    }

    #[test]
    fn rows_come_from_command_tags() {
        assert_eq!(rows_of("SELECT 5"), Some(5));
        assert_eq!(rows_of("INSERT 0 3"), Some(3));
        assert_eq!(rows_of("CREATE TABLE"), None);
        assert_eq!(rows_of(""), None);
    }

    #[test]
    fn the_first_word_search_finds_any_case_anywhere() {
        for (text, word, found) in [
            ("select 1; DrOp x", "DROP", true),
            ("drop", "DROP", true),
            ("xdro", "DROP", false),
            ("dro", "DROP", false),
            ("ddrop", "DROP", true),
            ("", "DROP", false),
            ("anything", "", false),
            ("é drop", "DROP", true),
        ] {
            assert_eq!(
                contains_ignore_ascii_case(text.as_bytes(), word.as_bytes()),
                found,
                "{text:?} {word:?}"
            );
        }
    }

    #[test]
    fn refusal_matches_whole_words_through_case_comments_and_spacing() {
        let p = vec!["DROP DATABASE".to_owned(), "ALTER SYSTEM".to_owned()];
        assert_eq!(refused("drop   database app", &p), Some("DROP DATABASE"));
        assert_eq!(
            refused("DROP/* x */DATABASE app", &p),
            Some("DROP DATABASE")
        );
        assert_eq!(
            refused("select 1; -- c\n alter\tsystem set x = 1", &p),
            Some("ALTER SYSTEM")
        );
        assert_eq!(
            refused("DO $$ BEGIN EXECUTE 'drop database app'; END $$", &p),
            Some("DROP DATABASE")
        );
        assert_eq!(refused("DROP TABLE dropdatabase", &p), None);
        assert_eq!(refused("SELECT 1", &p), None);
        assert_eq!(refused("DROP DATABASE x", &[]), None);
    }
}
