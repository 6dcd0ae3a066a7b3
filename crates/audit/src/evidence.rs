//! The evidence pack of a break: one self-contained HTML page whose content is fully
//! determined by a signed JSON bundle embedded in it.
//!
//! The bundle holds what happened (the break, its shares, alerts and receipts, the grant, the
//! gateway sessions, the end, the rotation), the **unbroken segment of the audit chain** from
//! the break's first entry to a signed checkpoint, that checkpoint, and the server's audit
//! public key; it is signed with the audit key over `breakglass-evidence-v1\0` and its
//! canonical JSON. `verify` checks it with the public key alone, offline: the signature, every
//! link and hash of the segment, the checkpoint's signature and head, and that the page is
//! exactly the rendering of the bundle — so an edit of any byte of the file is detected.

use std::fmt::Write as _;

use ed25519_dalek::{Signature, Signer};
use serde_json::Value;

use crate::{AuditKey, AuditPublicKey, CanonicalError, Entry, SignedCheckpoint, canonical_json};

/// The bundle's `format`.
pub const FORMAT: &str = "breakglass-evidence-v1";
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
}

fn signing_bytes(bundle: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut unsigned = bundle.clone();
    if let Some(map) = unsigned.as_object_mut() {
        map.remove("signature");
    }
    let mut bytes = FORMAT.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(canonical_json(&unsigned)?.as_bytes());
    Ok(bytes)
}

impl AuditKey {
    /// Signs `bundle` (its `signature` field is replaced) and renders the evidence page.
    pub fn sign_evidence(&self, mut bundle: Value) -> Result<String, CanonicalError> {
        let bytes = signing_bytes(&bundle)?;
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
    let bundle: Value = serde_json::from_str(&page[start..end])
        .map_err(|e| EvidenceError::Format(format!("bundle: {e}")))?;
    if bundle["format"] != FORMAT {
        return Err(EvidenceError::Format(format!("format is not {FORMAT}")));
    }
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
    let bytes = signing_bytes(&bundle).map_err(|e| EvidenceError::Format(e.to_string()))?;
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
    })
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
    h.push_str("<h2>Gateway sessions</h2>\n<table>\n<tr><th>session</th><th>#</th><th>at</th><th>statement</th><th>outcome</th><th>rows</th></tr>\n");
    for s in bundle["statements"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
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
    // The bundle itself, canonical, with `<` escaped so it cannot end the script element.
    let json = canonical_json(bundle)?.replace('<', "\\u003c");
    let _ = write!(h, "{SCRIPT_OPEN}{json}{SCRIPT_CLOSE}\n</body>\n</html>\n");
    Ok(h)
}
