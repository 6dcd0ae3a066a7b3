//! The evidence pack of a break: one self-contained HTML page whose content is fully
//! determined by a signed JSON bundle embedded in it.
//!
//! The bundle holds what happened (the break, its shares, alerts and receipts, the grant, the
//! gateway sessions, the end, the rotation), the **unbroken segment of the audit chain** from
//! the break's first entry to a signed checkpoint, that checkpoint, and the server's audit
//! public key; it is signed with the audit key over its format (`breakglass-evidence-v2`), a
//! zero byte and its canonical JSON. `verify` checks it with the public key alone, offline:
//! the signature, every link and hash of the segment, the checkpoint's signature and head,
//! each gateway session's recording against the digest its `gateway.session_ended` entry in
//! the segment carries, and that the page is exactly the rendering of the bundle — so an edit
//! of any byte of the file is detected, and so is a recording edited in the store before the
//! pack was made.
//!
//! A pack holds at most a budget of statements (the bundle's `recording.budget`): each session
//! whole, as its stored lines ([`RecordedStatement`]), or listed without them. Packs of the
//! first format (`breakglass-evidence-v1`, the whole recording as JSON objects, not checked
//! against the chain) still verify as they did.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use ed25519_dalek::{Signature, Signer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    AuditKey, AuditPublicKey, CanonicalError, Entry, SignedCheckpoint, canonical_json,
    format_rfc3339_ms,
};

/// The bundle's `format`: the recording is `recording.sessions`, each session's stored lines
/// or, over the pack's budget, its count and digest only.
pub const FORMAT: &str = "breakglass-evidence-v2";
/// The first format, still verified: the whole recording as `statements` (JSON objects), not
/// checked against the chain.
pub const FORMAT_V1: &str = "breakglass-evidence-v1";
const SCRIPT_OPEN: &str = "<script type=\"application/json\" id=\"breakglass-evidence\">";
const SCRIPT_CLOSE: &str = "</script>";

/// Why an evidence pack does not verify.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// Not an evidence page, or its bundle is not JSON.
    #[error("not a breakglass evidence pack: {0}")]
    Format(String),
    /// The bundle's signature does not verify.
    #[error(
        "the bundle's signature does not verify with key {key_id}: the pack was edited or signed by another key"
    )]
    Signature {
        /// Key tried.
        key_id: String,
    },
    /// A link or hash of the audit segment is wrong.
    #[error("audit entry {seq}: {why}")]
    Chain {
        /// Sequence number.
        seq: u64,
        /// What is wrong.
        why: String,
    },
    /// The checkpoint does not cover the segment or does not verify.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The page differs from the rendering of its bundle.
    #[error("the page differs from its signed bundle at byte {0}: the pack was edited")]
    Page(usize),
    /// A gateway session's recording in the pack is not the one its `gateway.session_ended`
    /// entry in the audit segment vouches for (its statements' count or SHA-256), or a line of
    /// it is not a recorded statement.
    #[error("gateway session {session}: {why}")]
    Recording {
        /// Session id.
        session: String,
        /// What differs.
        why: String,
    },
}

/// What a verified pack says.
#[derive(Debug, Clone)]
pub struct EvidenceReport {
    /// Break.
    pub break_id: String,
    /// Audit entries in the segment, and how many concern the break.
    pub entries: usize,
    /// Entries about the break.
    pub break_entries: usize,
    /// The checkpoint's sequence number.
    pub checkpoint_seq: u64,
    /// The key that signed it.
    pub key_id: String,
    /// Whether the key was pinned by the caller (otherwise the pack's own key was used).
    pub pinned: bool,
    /// The bundle's format ([`FORMAT`], or [`FORMAT_V1`] whose recording is not checked).
    pub format: String,
    /// Gateway sessions in the pack whose statements match their `gateway.session_ended`
    /// entry in the segment.
    pub sessions_bound: usize,
    /// Gateway sessions in the pack with no end in the segment (open when the pack was made):
    /// their statements are not bound to the chain.
    pub sessions_open: usize,
    /// Gateway sessions listed without their statements (over the pack's budget).
    pub sessions_not_included: usize,
    /// The statements the pack holds.
    pub statements: usize,
}

/// One recorded statement of a gateway session, read from its stored line: a JSON array
/// `[session, seq, started_at_ms, duration_us, protocol, statement, command, rows, error,
/// refused]`, with the bound parameters (strings and nulls) as an eleventh element when there
/// were any and a `COPY … FROM STDIN`'s data as a twelfth (the eleventh then `null` when there
/// were no parameters). A session's digest (`recording_sha256`) is SHA-256 over its lines in
/// order, each followed by `\n`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedStatement {
    /// Gateway session id.
    pub session: String,
    /// Position in the session, from 1.
    pub seq: u64,
    /// When the client sent it, in Unix milliseconds.
    pub started_at_ms: i64,
    /// From the client's message to the server's answer, in microseconds.
    pub duration_us: u64,
    /// `simple`, `extended` or `function`.
    pub protocol: String,
    /// The statement text.
    pub statement: String,
    /// The server's command tag.
    pub command: Option<String>,
    /// Rows returned or affected.
    pub rows: Option<u64>,
    /// The server's error, or why the gateway refused it.
    pub error: Option<String>,
    /// Refused by the gateway.
    pub refused: bool,
    /// The values bound to its parameters (`None`: NULL), when it had any.
    pub params: Option<Vec<Option<String>>>,
    /// A `COPY … FROM STDIN`'s data.
    pub data: Option<String>,
}

impl RecordedStatement {
    /// Reads one stored line (without its newline); the error names the field that is missing
    /// or of the wrong type.
    pub fn parse(line: &str) -> Result<RecordedStatement, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let text = |k: usize| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let int = |k: usize| v.get(k).and_then(Value::as_u64);
        Ok(RecordedStatement {
            session: text(0).ok_or("session")?,
            seq: int(1).ok_or("seq")?,
            started_at_ms: v.get(2).and_then(Value::as_i64).ok_or("started_at")?,
            duration_us: int(3).ok_or("duration_us")?,
            protocol: text(4).ok_or("protocol")?,
            statement: text(5).ok_or("statement")?,
            command: text(6),
            rows: int(7),
            error: text(8),
            refused: v.get(9).and_then(Value::as_bool).unwrap_or(false),
            params: match v.get(10) {
                None | Some(Value::Null) => None,
                Some(Value::Array(values)) => Some(
                    values
                        .iter()
                        .map(|p| match p {
                            Value::Null => Ok(None),
                            Value::String(s) => Ok(Some(s.clone())),
                            _ => Err("params"),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                Some(_) => return Err("params".into()),
            },
            data: match v.get(11) {
                None | Some(Value::Null) => None,
                Some(Value::String(d)) => Some(d.clone()),
                Some(_) => return Err("data".into()),
            },
        })
    }
}

/// A session's end as the audit segment records it.
struct SessionEnd {
    seq: u64,
    recorded: Option<u64>,
    sha256: String,
}

/// How many sessions of a pack's recording are bound, open and not included, and its
/// statements.
#[derive(Default)]
struct RecordingCheck {
    bound: usize,
    open: usize,
    not_included: usize,
    statements: usize,
}

/// What is signed: the bundle's format (each format its own domain), a zero byte, and the
/// bundle's canonical JSON without its signature. The signature is taken out while the rest is
/// encoded and put back, rather than the bundle copied: a pack's recording can be large.
fn signing_bytes(bundle: &mut Value) -> Result<Vec<u8>, CanonicalError> {
    let format = match bundle["format"].as_str() {
        Some(FORMAT_V1) => FORMAT_V1,
        _ => FORMAT,
    };
    let signature = bundle.as_object_mut().and_then(|m| m.remove("signature"));
    let json = canonical_json(bundle);
    if let (Some(signature), Some(map)) = (signature, bundle.as_object_mut()) {
        map.insert("signature".into(), signature);
    }
    let mut bytes = json?.into_bytes();
    bytes.splice(0..0, format.bytes().chain([0]));
    Ok(bytes)
}

impl AuditKey {
    /// Signs `bundle` (its `signature` field is replaced) and renders the evidence page.
    pub fn sign_evidence(&self, mut bundle: Value) -> Result<String, CanonicalError> {
        let bytes = signing_bytes(&mut bundle)?;
        let signature = hex::encode(self.signing.sign(&bytes).to_bytes());
        if let Some(map) = bundle.as_object_mut() {
            map.insert("signature".into(), Value::from(signature));
        }
        render(&bundle)
    }
}

/// Verifies an evidence page offline: with `pinned` (the audit public key obtained apart from
/// the pack), or else with the key the pack names (then only its integrity is shown, not who
/// made it).
pub fn verify(
    page: &str,
    pinned: Option<&AuditPublicKey>,
) -> Result<EvidenceReport, EvidenceError> {
    let start = page
        .find(SCRIPT_OPEN)
        .ok_or_else(|| EvidenceError::Format("no embedded bundle".into()))?
        + SCRIPT_OPEN.len();
    let end = page[start..]
        .find(SCRIPT_CLOSE)
        .ok_or_else(|| EvidenceError::Format("the embedded bundle is not closed".into()))?
        + start;
    let mut bundle: Value = serde_json::from_str(&page[start..end])
        .map_err(|e| EvidenceError::Format(format!("bundle: {e}")))?;
    let format = match bundle["format"].as_str() {
        Some(f @ (FORMAT | FORMAT_V1)) => f.to_owned(),
        _ => {
            return Err(EvidenceError::Format(format!(
                "format is not {FORMAT} (or {FORMAT_V1})"
            )));
        }
    };
    let key: AuditPublicKey = match pinned {
        Some(k) => *k,
        None => bundle["public_key"]
            .as_str()
            .ok_or_else(|| EvidenceError::Format("no public_key".into()))?
            .parse()
            .map_err(|e| EvidenceError::Format(format!("public_key: {e}")))?,
    };
    let signature = bundle["signature"]
        .as_str()
        .and_then(|s| hex::decode(s).ok())
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| EvidenceError::Signature {
            key_id: key.key_id(),
        })?;
    let bytes = signing_bytes(&mut bundle).map_err(|e| EvidenceError::Format(e.to_string()))?;
    key.0
        .verify_strict(&bytes, &signature)
        .map_err(|_| EvidenceError::Signature {
            key_id: key.key_id(),
        })?;

    // The audit segment: consecutive, each hash recomputed, each linked to the one before.
    let lines = bundle["entries"]
        .as_array()
        .ok_or_else(|| EvidenceError::Format("no entries".into()))?;
    let break_id = bundle["break"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut last: Option<Entry> = None;
    let mut break_entries = 0;
    let mut ends: BTreeMap<String, SessionEnd> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let entry = Entry::from_json_line(line.as_str().unwrap_or_default()).map_err(|e| {
            EvidenceError::Chain {
                seq: i as u64,
                why: e.to_string(),
            }
        })?;
        let hash = entry.compute_hash().map_err(|e| EvidenceError::Chain {
            seq: entry.seq,
            why: e.to_string(),
        })?;
        if hash != entry.hash {
            return Err(EvidenceError::Chain {
                seq: entry.seq,
                why: "its hash does not match its content".into(),
            });
        }
        if let Some(prev) = &last
            && (entry.seq != prev.seq + 1 || entry.prev_hash != prev.hash)
        {
            return Err(EvidenceError::Chain {
                seq: entry.seq,
                why: format!("does not follow entry {}", prev.seq),
            });
        }
        if entry.break_id.as_deref() == Some(break_id.as_str())
            || entry.payload.get("break").and_then(Value::as_str) == Some(break_id.as_str())
        {
            break_entries += 1;
            if entry.kind == "gateway.session_ended"
                && let Some(session) = entry.payload.get("session").and_then(Value::as_str)
            {
                ends.insert(
                    session.to_owned(),
                    SessionEnd {
                        seq: entry.seq,
                        recorded: entry.payload.get("recorded").and_then(Value::as_u64),
                        sha256: entry
                            .payload
                            .get("recording_sha256")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    },
                );
            }
        }
        last = Some(entry);
    }
    let last = last.ok_or_else(|| EvidenceError::Format("an empty audit segment".into()))?;
    if break_entries == 0 {
        return Err(EvidenceError::Format(format!(
            "no audit entry of break {break_id} in the segment"
        )));
    }
    let checkpoint =
        SignedCheckpoint::from_json_line(bundle["checkpoint"].as_str().unwrap_or_default())
            .map_err(|e| EvidenceError::Checkpoint(e.to_string()))?;
    checkpoint
        .verify(&key)
        .map_err(|e| EvidenceError::Checkpoint(e.to_string()))?;
    if checkpoint.checkpoint.seq != last.seq || checkpoint.checkpoint.head != last.hash {
        return Err(EvidenceError::Checkpoint(format!(
            "it covers entry {} but the segment ends at {}",
            checkpoint.checkpoint.seq, last.seq
        )));
    }

    // Each session's statements are those its end in the segment vouches for.
    let recording = if format == FORMAT {
        check_recording(&bundle["recording"], &ends)?
    } else {
        RecordingCheck {
            statements: bundle["statements"].as_array().map_or(0, Vec::len),
            ..RecordingCheck::default()
        }
    };

    // The page is exactly the rendering of the signed bundle.
    let expected = render(&bundle).map_err(|e| EvidenceError::Format(e.to_string()))?;
    if expected != page {
        let at = expected
            .bytes()
            .zip(page.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.len().min(page.len()));
        return Err(EvidenceError::Page(at));
    }
    Ok(EvidenceReport {
        break_id,
        entries: lines.len(),
        break_entries,
        checkpoint_seq: checkpoint.checkpoint.seq,
        key_id: key.key_id(),
        pinned: pinned.is_some(),
        format,
        sessions_bound: recording.bound,
        sessions_open: recording.open,
        sessions_not_included: recording.not_included,
        statements: recording.statements,
    })
}

/// Checks a pack's `recording` against the sessions' ends in its verified audit segment: each
/// included session's lines are recorded statements of that session, and when the session
/// ended in the segment, their count and SHA-256 (each line and `\n`) are those its
/// `gateway.session_ended` entry records; a session listed without its lines carries the
/// count and digest of its end; every session that ended in the segment is listed.
fn check_recording(
    recording: &Value,
    ends: &BTreeMap<String, SessionEnd>,
) -> Result<RecordingCheck, EvidenceError> {
    let sessions = recording["sessions"]
        .as_array()
        .ok_or_else(|| EvidenceError::Format("no recording.sessions".into()))?;
    let budget = recording["budget"]
        .as_u64()
        .ok_or_else(|| EvidenceError::Format("no recording.budget".into()))?;
    let mut check = RecordingCheck::default();
    let mut listed: BTreeSet<&str> = BTreeSet::new();
    for s in sessions {
        let session = s["session"]
            .as_str()
            .ok_or_else(|| EvidenceError::Format("a recording session without its id".into()))?;
        let fail = |why: String| EvidenceError::Recording {
            session: session.to_owned(),
            why,
        };
        if !listed.insert(session) {
            return Err(fail("listed twice".into()));
        }
        let (Some(included), Some(lines), Some(recorded)) = (
            s["included"].as_bool(),
            s["lines"].as_array(),
            s["recorded"].as_u64(),
        ) else {
            return Err(fail("`included`, `lines` or `recorded` is missing".into()));
        };
        let end = ends.get(session);
        if s["sha256"].as_str() != end.map(|e| e.sha256.as_str()) {
            return Err(fail(
                "its digest in the pack is not the one its end in the segment records".into(),
            ));
        }
        if s["end_entry"].as_u64() != end.map(|e| e.seq) {
            return Err(fail(match end {
                Some(e) => format!(
                    "it ended at audit entry {} but the pack names {}",
                    e.seq, s["end_entry"]
                ),
                None => format!(
                    "the pack names its end as audit entry {}, which is not its end in the segment",
                    s["end_entry"]
                ),
            }));
        }
        if !included {
            if !lines.is_empty() {
                return Err(fail("listed as not included, yet with statements".into()));
            }
            if let Some(e) = end
                && Some(recorded) != e.recorded
            {
                return Err(fail(format!(
                    "the pack says {recorded} statements, its end (audit entry {}) records {}",
                    e.seq,
                    e.recorded
                        .map_or_else(|| "no count".to_owned(), |n| n.to_string())
                )));
            }
            check.not_included += 1;
            continue;
        }
        if recorded != lines.len() as u64 {
            return Err(fail(format!(
                "the pack says {recorded} statements but holds {}",
                lines.len()
            )));
        }
        let mut digest = Sha256::new();
        for (i, line) in lines.iter().enumerate() {
            let line = line.as_str().unwrap_or_default();
            let statement = RecordedStatement::parse(line).map_err(|e| {
                fail(format!(
                    "line {} is not a recorded statement (its {e} is missing or wrong)",
                    i + 1
                ))
            })?;
            if statement.session != session {
                return Err(fail(format!(
                    "line {} is a statement of session {}",
                    i + 1,
                    statement.session
                )));
            }
            digest.update(line.as_bytes());
            digest.update(b"\n");
        }
        check.statements += lines.len();
        let Some(end) = end else {
            check.open += 1;
            continue;
        };
        let sha256 = hex::encode(digest.finalize());
        let mut differs = Vec::new();
        if end.recorded != Some(recorded) {
            differs.push(format!(
                "{recorded} statements in the pack, {} in its end",
                end.recorded
                    .map_or_else(|| "no count".to_owned(), |n| n.to_string())
            ));
        }
        if sha256 != end.sha256 {
            differs.push(format!(
                "SHA-256 {sha256} in the pack, {} in its end",
                end.sha256
            ));
        }
        if !differs.is_empty() {
            return Err(fail(format!(
                "its recording is not the one its end (audit entry {}) vouches for ({}): it was edited in the store before the pack was made",
                end.seq,
                differs.join("; ")
            )));
        }
        check.bound += 1;
    }
    if let Some((session, e)) = ends.iter().find(|(s, _)| !listed.contains(s.as_str())) {
        return Err(EvidenceError::Recording {
            session: session.clone(),
            why: format!(
                "it ended in the audit segment (entry {}) but the pack does not list it",
                e.seq
            ),
        });
    }
    if check.statements as u64 > budget {
        return Err(EvidenceError::Format(format!(
            "the recording holds {} statements, over its budget of {budget}",
            check.statements
        )));
    }
    Ok(check)
}

/// The gateway sessions of a pack of [`FORMAT`]: each with its state and counts, then the
/// statements of those included.
fn render_recording(h: &mut String, bundle: &Value) {
    let recording = &bundle["recording"];
    let budget = text(&recording["budget"]);
    let break_id = text(&bundle["break"]["id"]);
    let sessions = recording["sessions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let _ = writeln!(
        h,
        "<h2>Gateway sessions</h2>\n<p>At most {budget} statements: each session whole, in order, while it fits. A session that ended is bound to the audit chain by its <code>gateway.session_ended</code> entry (the number of its statements and their SHA-256); <code>breakglass evidence verify</code> checks its statements against it.</p>\n<table>\n<tr><th>session</th><th>statements</th><th>recording</th><th>SHA-256 (from its end)</th></tr>"
    );
    for s in sessions {
        let session = text(&s["session"]);
        let state = match (s["included"].as_bool(), &s["end_entry"]) {
            (Some(true), Value::Null) => "open: not bound to the chain".to_owned(),
            (Some(true), end) => format!("bound to audit entry {}", text(end)),
            _ => format!(
                "not included (over the pack's budget of {budget} statements; <code>breakglass session show {break_id} --session {session}</code> prints it)"
            ),
        };
        let _ = writeln!(
            h,
            "<tr><td>{session}</td><td>{}</td><td>{state}</td><td><code>{}</code></td></tr>",
            text(&s["recorded"]),
            text(&s["sha256"])
        );
    }
    h.push_str("</table>\n<table>\n<tr><th>session</th><th>#</th><th>at</th><th>statement</th><th>outcome</th><th>rows</th></tr>\n");
    for s in sessions {
        for line in s["lines"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let line = line.as_str().unwrap_or_default();
            match RecordedStatement::parse(line) {
                Ok(r) => statement_row(
                    h,
                    &serde_json::json!({
                        "session": r.session,
                        "seq": r.seq,
                        "at": format_rfc3339_ms(r.started_at_ms)
                            .unwrap_or_else(|| r.started_at_ms.to_string()),
                        "statement": r.statement,
                        "params": r.params,
                        "data": r.data,
                        "command": r.command,
                        "rows": r.rows,
                        "error": r.error,
                    }),
                ),
                // `verify` refuses such a line; the page shows it as it is.
                Err(_) => {
                    let _ = writeln!(
                        h,
                        "<tr><td>{}</td><td>—</td><td>—</td><td><code>{}</code></td><td>—</td><td>—</td></tr>",
                        text(&s["session"]),
                        esc(line)
                    );
                }
            }
        }
    }
}

/// A statement's row: session, position, time, the statement with its parameters and COPY
/// data, the outcome (command tag or error) and rows.
fn statement_row(h: &mut String, s: &Value) {
    let outcome = if s["error"].is_null() {
        text(&s["command"])
    } else {
        text(&s["error"])
    };
    let mut params = match params_text_of(&s["params"]) {
        p if p.is_empty() => p,
        p => format!("<br><small>{}</small>", esc(&p)),
    };
    if let Some(d) = s["data"].as_str() {
        let _ = write!(params, "<pre>{}</pre>", esc(d));
    }
    let _ = writeln!(
        h,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code>{params}</td><td>{}</td><td>{}</td></tr>",
        text(&s["session"]),
        text(&s["seq"]),
        text(&s["at"]),
        text(&s["statement"]),
        outcome,
        text(&s["rows"])
    );
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A recorded statement's bound parameters for people: `$1 = 'bulk', $2 = NULL` (quotes
/// doubled inside a value, as in SQL); empty when there are none.
pub fn params_text(params: &[Option<String>]) -> String {
    let mut out = String::new();
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "${} = ", i + 1);
        match p {
            Some(v) => {
                out.push('\'');
                out.push_str(&v.replace('\'', "''"));
                out.push('\'');
            }
            None => out.push_str("NULL"),
        }
    }
    out
}

/// The first `max` characters of `text`, then `…` when there were more.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// [`params_text`] of a statement's `params` as JSON (an array of strings and nulls; anything
/// else counts as none).
pub fn params_text_of(v: &Value) -> String {
    let params: Vec<Option<String>> = v
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| p.as_str().map(str::to_owned))
        .collect();
    params_text(&params)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        Value::Null => "—".into(),
        other => esc(&other.to_string()),
    }
}

/// The page for `bundle`: deterministic, so `verify` can compare it byte for byte.
fn render(bundle: &Value) -> Result<String, CanonicalError> {
    let b = &bundle["break"];
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Evidence: break {id}</title>\n<style>body{{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}}code{{font-size:12px}}</style>\n</head>\n<body>\n<h1>Evidence: break <code>{id}</code></h1>\n<p>Signed by the breakglass audit key <code>{key}</code>. Check it offline: <code>breakglass evidence verify FILE --pubkey KEY</code>.</p>\n",
        id = text(&b["id"]),
        key = text(&bundle["public_key"]),
    );
    h.push_str("<h2>The break</h2>\n<table>\n");
    for (label, field) in [
        ("procedure", "procedure"),
        ("requested by", "requester"),
        ("reason", "reason"),
        ("ticket", "ticket"),
        ("requested at", "requested_at"),
        ("granted at", "granted_at"),
        ("deadline", "deadline"),
        ("ended at", "ended_at"),
        ("state", "state"),
        ("closed by", "closed_by"),
    ] {
        let _ = writeln!(h, "<tr><th>{label}</th><td>{}</td></tr>", text(&b[field]));
    }
    h.push_str("</table>\n");
    for (title, key) in [
        ("Shares", "shares"),
        ("Alerts, receipts and acknowledgements", "alerts"),
        ("The grant", "grant"),
        ("The end", "end"),
        ("Rotation", "rotation"),
    ] {
        let _ = writeln!(
            h,
            "<h2>{title}</h2>\n<table>\n<tr><th>seq</th><th>at</th><th>who</th><th>event</th><th>details</th></tr>"
        );
        for e in bundle["facts"][key]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                text(&e["seq"]),
                text(&e["at"]),
                text(&e["actor"]),
                text(&e["kind"]),
                esc(&canonical_json(&e["payload"])?)
            );
        }
        h.push_str("</table>\n");
    }
    if bundle["format"] == FORMAT_V1 {
        h.push_str("<h2>Gateway sessions</h2>\n<table>\n<tr><th>session</th><th>#</th><th>at</th><th>statement</th><th>outcome</th><th>rows</th></tr>\n");
        for s in bundle["statements"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            statement_row(&mut h, s);
        }
    } else {
        render_recording(&mut h, bundle);
    }
    h.push_str("</table>\n<h2>Audit entries (an unbroken segment of the chain)</h2>\n<table>\n<tr><th>entry</th></tr>\n");
    for line in bundle["entries"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let _ = writeln!(h, "<tr><td><code>{}</code></td></tr>", text(line));
    }
    let _ = write!(
        h,
        "</table>\n<h2>Checkpoint</h2>\n<p><code>{}</code></p>\n",
        text(&bundle["checkpoint"])
    );
    // The bundle itself, canonical, with `<` escaped so it cannot end the script element
    // (written in parts rather than copied whole with `replace`: it can be large).
    let json = canonical_json(bundle)?;
    h.reserve(json.len() + 64);
    h.push_str(SCRIPT_OPEN);
    for (i, part) in json.split('<').enumerate() {
        if i > 0 {
            h.push_str("\\u003c");
        }
        h.push_str(part);
    }
    let _ = write!(h, "{SCRIPT_CLOSE}\n</body>\n</html>\n");
    Ok(h)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Draft, append};
    use serde_json::json;

    const BREAK: &str = "brk_1";

    fn key() -> AuditKey {
        AuditKey::from_seed([3; 32])
    }

    /// The break's audit entries: each `(kind, payload)` in order, from seq 1.
    fn chain(events: Vec<(&str, Value)>) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for (i, (kind, payload)) in events.into_iter().enumerate() {
            let head = out.last().map(Entry::head);
            let draft = Draft {
                time_ms: 1_700_000_000_000 + i as i64 * 1000,
                actor: "dave".into(),
                kind: kind.into(),
                procedure: Some("db".into()),
                break_id: Some(BREAK.into()),
                payload,
            };
            out.push(append(head.as_ref(), draft).unwrap());
        }
        out
    }

    /// A bundle of `format` over `entries` (with a checkpoint of the last), and `rest`'s fields.
    fn bundle(format: &str, entries: &[Entry], rest: Value) -> Value {
        let k = key();
        let last = entries.last().unwrap();
        let checkpoint = k.sign_checkpoint(last.seq, last.hash, 1_700_000_100_000);
        let mut b = json!({
            "format": format,
            "made_at": "2023-11-14T22:15:00.000Z",
            "public_key": k.public().to_string(),
            "break": {
                "id": BREAK, "procedure": "db", "requester": "dave", "reason": "db <on> fire",
                "ticket": "INC-7", "requested_at": "2023-11-14T22:13:20.000Z",
                "granted_at": "2023-11-14T22:13:21.000Z", "deadline": "2023-11-14T22:23:21.000Z",
                "ended_at": "2023-11-14T22:14:00.000Z", "state": "closed", "closed_by": "dave",
                "drill": false,
            },
            "facts": {
                "shares": [], "alerts": [], "end": [], "rotation": [],
                "grant": entries.iter().map(|e| json!({
                    "seq": e.seq, "at": format_rfc3339_ms(e.time_ms), "actor": e.actor,
                    "kind": e.kind, "payload": e.payload,
                })).collect::<Vec<_>>(),
            },
            "grant": null,
            "entries": entries.iter().map(Entry::to_json_line).collect::<Vec<_>>(),
            "checkpoint": checkpoint.to_json_line(),
        });
        for (k, v) in rest.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    }

    /// A pack of the first format (`breakglass-evidence-v1`: the statements as JSON objects).
    fn v1_pack() -> String {
        let entries = chain(vec![
            ("break.requested", json!({"reason": "db <on> fire"})),
            (
                "gateway.session_started",
                json!({"session": "brk_1-s1", "peer": "127.0.0.1:5"}),
            ),
            (
                "gateway.session_ended",
                json!({"session": "brk_1-s1", "recorded": 3, "recording_sha256": "00"}),
            ),
        ]);
        let statement = |seq: u64, text: &str, params: Value, data: Value, error: Value| {
            json!({
                "session": "brk_1-s1", "seq": seq, "at": "2023-11-14T22:13:25.000Z",
                "duration_us": 9, "protocol": "extended", "statement": text, "params": params,
                "data": data, "command": if error.is_null() { json!("UPDATE 2") } else { json!(null) },
                "rows": if error.is_null() { json!(2) } else { json!(null) }, "error": error,
                "refused": !error.is_null(),
            })
        };
        let b = bundle(
            "breakglass-evidence-v1",
            &entries,
            json!({"statements": [
                statement(1, "UPDATE t SET v = $1 WHERE id < $2", json!(["it's", null]), json!(null), json!(null)),
                statement(2, "COPY t FROM STDIN", json!(null), json!("1\t<x>\n"), json!(null)),
                statement(3, "DROP DATABASE x", json!(null), json!(null), json!("refused: DROP DATABASE")),
            ]}),
        );
        key().sign_evidence(b).unwrap()
    }

    /// The committed pack of the first format, made by the code of that format, still
    /// verifies, and its page is still the rendering of its bundle.
    #[test]
    fn a_pack_of_the_first_format_still_verifies() {
        const V1: &str = include_str!("../tests/vectors/evidence-v1.html");
        assert_eq!(v1_pack(), V1, "the rendering of a v1 bundle changed");
        let r = verify(V1, Some(&key().public())).unwrap();
        assert_eq!(
            (
                r.format.as_str(),
                r.statements,
                r.sessions_bound,
                r.break_entries
            ),
            (FORMAT_V1, 3, 0, 3)
        );
        assert!(V1.contains("$1 = &#39;it&#39;&#39;s&#39;, $2 = NULL"));
        // Its signature is over its own format: the same bundle claimed as v2 does not verify.
        let forged = V1.replace("\"breakglass-evidence-v1\"", "\"breakglass-evidence-v2\"");
        assert!(verify(&forged, None).is_err());
    }

    #[test]
    fn an_unknown_format_is_refused() {
        let page = v1_pack().replace("\"breakglass-evidence-v1\"", "\"breakglass-evidence-v9\"");
        let e = verify(&page, None).unwrap_err();
        assert!(e.to_string().contains("format is not"), "{e}");
    }

    /// A statement's stored line.
    fn line(session: &str, seq: u64, statement: &str) -> String {
        json!([
            session,
            seq,
            1_700_000_000_000i64 + seq as i64,
            10,
            "simple",
            statement,
            "SELECT 1",
            1,
            null,
            false
        ])
        .to_string()
    }

    fn sha(lines: &[String]) -> String {
        let mut h = Sha256::new();
        for l in lines {
            h.update(l.as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }

    /// A session of a test pack: the lines the pack holds and what its end entry records.
    struct Session {
        id: &'static str,
        lines: Vec<String>,
        /// `(recorded, recording_sha256)` of its `gateway.session_ended`; `None`: open.
        end: Option<(u64, String)>,
        included: bool,
        listed: bool,
    }

    fn session(id: &'static str, n: u64, ended: bool) -> Session {
        let lines: Vec<String> = (1..=n)
            .map(|i| line(id, i, &format!("SELECT {i} -- <{id}>")))
            .collect();
        Session {
            id,
            end: ended.then(|| (n, sha(&lines))),
            lines,
            included: true,
            listed: true,
        }
    }

    /// Three sessions with a budget of 3: `s1` (ended, 2 statements) fits, `s2` (ended, 3)
    /// does not, `s3` (open, 1) fits in what is left.
    fn sessions() -> Vec<Session> {
        let mut s2 = session("brk_1-s2", 3, true);
        s2.included = false;
        vec![
            session("brk_1-s1", 2, true),
            s2,
            session("brk_1-s3", 1, false),
        ]
    }

    fn v2_pack(sessions: &[Session]) -> String {
        let mut events = vec![("break.requested", json!({"reason": "db <on> fire"}))];
        for s in sessions {
            events.push(("gateway.session_started", json!({"session": s.id})));
        }
        for s in sessions {
            if let Some((recorded, digest)) = &s.end {
                events.push((
                    "gateway.session_ended",
                    json!({"session": s.id, "recorded": recorded, "recording_sha256": digest}),
                ));
            }
        }
        let entries = chain(events);
        let end_of = |id: &str| {
            entries
                .iter()
                .find(|e| e.kind == "gateway.session_ended" && e.payload["session"] == id)
                .map(|e| e.seq)
        };
        let listed: Vec<Value> = sessions
            .iter()
            .filter(|s| s.listed)
            .map(|s| {
                json!({
                    "session": s.id,
                    "end_entry": end_of(s.id),
                    "recorded": match (&s.end, s.included) {
                        (Some((n, _)), false) => *n,
                        _ => s.lines.len() as u64,
                    },
                    "sha256": s.end.as_ref().map(|e| &e.1),
                    "included": s.included,
                    "lines": if s.included { s.lines.clone() } else { Vec::new() },
                })
            })
            .collect();
        let b = bundle(
            FORMAT,
            &entries,
            json!({"recording": {"budget": 3, "sessions": listed}}),
        );
        key().sign_evidence(b).unwrap()
    }

    fn recording_error(page: &str) -> (String, String) {
        match verify(page, Some(&key().public())) {
            Err(EvidenceError::Recording { session, why }) => (session, why),
            other => panic!("not a recording error: {other:?}"),
        }
    }

    #[test]
    fn sessions_are_reported_bound_open_or_not_included() {
        let page = v2_pack(&sessions());
        let r = verify(&page, Some(&key().public())).unwrap();
        assert_eq!(
            (
                r.format.as_str(),
                r.sessions_bound,
                r.sessions_open,
                r.sessions_not_included,
                r.statements
            ),
            (FORMAT, 1, 1, 1, 3)
        );
        for needle in [
            "<tr><td>brk_1-s1</td><td>2</td><td>bound to audit entry 5</td>",
            "<tr><td>brk_1-s3</td><td>1</td><td>open: not bound to the chain</td><td><code>—</code></td></tr>",
            "<tr><td>brk_1-s2</td><td>3</td><td>not included (over the pack's budget of 3 statements; <code>breakglass session show brk_1 --session brk_1-s2</code> prints it)</td>",
            "<td><code>SELECT 2 -- &lt;brk_1-s1&gt;</code></td><td>SELECT 1</td><td>1</td></tr>",
            "<td>brk_1-s3</td><td>1</td><td>2023-11-14T22:13:20.001Z</td>",
        ] {
            assert!(page.contains(needle), "`{needle}` not on the page:\n{page}");
        }
        assert!(
            !page.contains("-- &lt;brk_1-s2&gt;"),
            "s2's statements are not in the pack"
        );
        // An edit of the page alone is still caught.
        let edited = page.replacen("open: not bound", "bound", 1);
        assert!(matches!(
            verify(&edited, Some(&key().public())),
            Err(EvidenceError::Page(_))
        ));
    }

    #[test]
    fn a_statement_edited_before_the_pack_was_made_is_named() {
        let mut s = sessions();
        s[0].lines[1] = line("brk_1-s1", 2, "SELECT 'edited'");
        let (session, why) = recording_error(&v2_pack(&s));
        assert_eq!(session, "brk_1-s1");
        assert!(
            why.contains("audit entry 5")
                && why.contains("SHA-256")
                && !why.contains("statements in the pack"),
            "{why}"
        );
        assert!(why.contains("edited in the store"), "{why}");
    }

    #[test]
    fn a_statement_missing_from_a_session_is_a_count_that_differs() {
        let mut s = sessions();
        s[0].lines.pop();
        let (session, why) = recording_error(&v2_pack(&s));
        assert_eq!(session, "brk_1-s1");
        assert!(
            why.contains("1 statements in the pack, 2 in its end"),
            "{why}"
        );
        // A session over the budget is listed with the count its end records.
        let mut s = sessions();
        s[1].lines.push(line("brk_1-s2", 4, "SELECT 4"));
        s[1].end = Some((4, sha(&s[1].lines)));
        assert_eq!(verify(&v2_pack(&s), None).unwrap().sessions_not_included, 1);
    }

    #[test]
    fn a_line_that_is_not_a_recorded_statement_is_named() {
        for (bad, what) in [
            ("not json".to_owned(), "line 2 is not a recorded statement"),
            (json!(["brk_1-s3", "two"]).to_string(), "its seq is missing"),
            (
                line("brk_1-s9", 2, "SELECT 2"),
                "line 2 is a statement of session brk_1-s9",
            ),
        ] {
            let mut s = sessions();
            s[2].lines.push(bad);
            let (session, why) = recording_error(&v2_pack(&s));
            assert_eq!(session, "brk_1-s3");
            assert!(why.contains(what), "{why}");
        }
    }

    #[test]
    fn every_session_that_ended_in_the_segment_is_listed_with_its_end() {
        let mut s = sessions();
        s[1].listed = false;
        let (session, why) = recording_error(&v2_pack(&s));
        assert_eq!(session, "brk_1-s2");
        assert!(why.contains("the pack does not list it"), "{why}");
    }

    #[test]
    fn lines_parse_as_the_gateway_writes_them() {
        let r = RecordedStatement::parse(
            r#"["brk_1-s1",1,1700000000000,9,"extended","UPDATE t SET v = $1","UPDATE 1",1,null,false,["a",null],"1\tx\n"]"#,
        )
        .unwrap();
        assert_eq!(
            (r.params, r.data.as_deref(), r.rows),
            (Some(vec![Some("a".into()), None]), Some("1\tx\n"), Some(1))
        );
        assert_eq!(
            RecordedStatement::parse(r#"["s",1,2,3,"simple","SELECT 1",null,null,null,false,[1]]"#),
            Err("params".into())
        );
    }
}
