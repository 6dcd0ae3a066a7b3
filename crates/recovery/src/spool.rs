//! The recovery spool: what an offline recovery did, as JSON Lines, each line hash-chained to
//! the one before and signed (SSHSIG) by the recoverer's ssh-ed25519 key.

use breakglass_audit::{Hash, canonical_json, sha256};
use breakglass_custody::{CustodianKey, Identity, KeyKind, sign, verify_signature};
use serde_json::{Value, json};

/// The spool's format: line 0's `payload.format`, the hash domain and the signature namespace.
pub const SPOOL_FORMAT: &str = "breakglass-recovery-spool-v1";
/// The largest spool read.
pub const MAX_SPOOL_LEN: usize = 1024 * 1024;
/// The first line's kind.
pub(crate) const OPENED: &str = "spool.opened";
/// The last line's kind.
pub(crate) const CLOSED: &str = "spool.closed";

/// Why a spool is refused.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool as a whole is unusable (empty, too large, not text).
    #[error("not a recovery spool: {0}")]
    Format(String),
    /// A line is malformed, out of order, unlinked, altered or badly signed.
    #[error("spool line {line}: {why}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The spool ends without its closing line.
    #[error(
        "the spool ends at line {lines} without its `spool.closed` line: it was cut short (or the recovery did not finish)"
    )]
    Truncated {
        /// Lines present.
        lines: usize,
    },
    /// The signer cannot sign (an age key).
    #[error("the spool is signed with an ssh-ed25519 key; {0}")]
    Signer(String),
}

/// One verified spool line.
#[derive(Debug, Clone)]
pub struct SpoolEntry {
    /// Sequence number (from 0).
    pub seq: u64,
    /// When (ms since the epoch, the recoverer's clock).
    pub time_ms: i64,
    /// Kind: `spool.opened`, `share.accepted`, `break.granted`, `grant.revealed`, `spool.closed`.
    pub kind: String,
    /// Payload.
    pub payload: Value,
    /// The whole line as written (with its hash and signature), to keep it verifiable.
    pub line: Value,
}

/// A spool whose chain and signatures verified.
#[derive(Debug, Clone)]
pub struct VerifiedSpool {
    /// The kit the recovery used.
    pub kit_id: String,
    /// The procedure.
    pub procedure: String,
    /// The seal opened.
    pub seal_id: String,
    /// The key that signed every line.
    pub signer_key: CustodianKey,
    /// Who recovered (as they wrote it).
    pub recoverer: String,
    /// Why.
    pub reason: String,
    /// Ticket.
    pub ticket: String,
    /// Every line, in order.
    pub entries: Vec<SpoolEntry>,
    /// The last line's hash: the spool's identity (what makes an import idempotent).
    pub head: String,
}

/// Writes a spool line by line; every line is signed as it is added.
pub struct SpoolWriter<'a> {
    signer: &'a Identity,
    lines: Vec<String>,
    prev: Hash,
}

impl std::fmt::Debug for SpoolWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpoolWriter({} lines)", self.lines.len())
    }
}

impl<'a> SpoolWriter<'a> {
    /// Starts a spool with its `spool.opened` line. `signer` must be an ssh-ed25519 identity.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        signer: &'a Identity,
        kit_id: &str,
        procedure: &str,
        seal_id: &str,
        recoverer: &str,
        recoverer_key: &CustodianKey,
        reason: &str,
        ticket: &str,
        time_ms: i64,
    ) -> Result<SpoolWriter<'a>, SpoolError> {
        if signer.kind() != KeyKind::SshEd25519 {
            return Err(SpoolError::Signer(
                "age keys cannot sign: give an ssh-ed25519 private key with --signing-key".into(),
            ));
        }
        let mut w = SpoolWriter {
            signer,
            lines: Vec::new(),
            prev: Hash::ZERO,
        };
        w.push(
            OPENED,
            json!({
                "format": SPOOL_FORMAT,
                "kit_id": kit_id,
                "procedure": procedure,
                "seal_id": seal_id,
                "signer_key": signer.public().canonical(),
                "recoverer": recoverer,
                "recoverer_key": recoverer_key.canonical(),
                "reason": reason,
                "ticket": ticket,
            }),
            time_ms,
        )?;
        Ok(w)
    }

    /// Adds a signed line.
    pub fn push(&mut self, kind: &str, payload: Value, time_ms: i64) -> Result<(), SpoolError> {
        let seq = self.lines.len() as u64;
        let body = json!({
            "seq": seq,
            "time_ms": time_ms,
            "kind": kind,
            "payload": payload,
            "prev_hash": self.prev.to_hex(),
        });
        let hash = line_hash(&body).map_err(|why| SpoolError::Line {
            line: self.lines.len() + 1,
            why,
        })?;
        let signature = sign(self.signer, SPOOL_FORMAT, hash.to_hex().as_bytes())
            .map_err(|e| SpoolError::Signer(e.to_string()))?;
        let mut line = body;
        line["hash"] = Value::from(hash.to_hex());
        line["signature"] = Value::from(signature);
        self.lines.push(line.to_string());
        self.prev = hash;
        Ok(())
    }

    /// Adds the `spool.closed` line and returns the spool's text.
    pub fn close(mut self, outcome: &str, time_ms: i64) -> Result<String, SpoolError> {
        let lines = self.lines.len();
        self.push(CLOSED, json!({"lines": lines, "outcome": outcome}), time_ms)?;
        let mut text = self.lines.join("\n");
        text.push('\n');
        Ok(text)
    }
}

fn line_hash(body: &Value) -> Result<Hash, String> {
    let mut bytes = SPOOL_FORMAT.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(canonical_json(body).map_err(|e| e.to_string())?.as_bytes());
    Ok(sha256(&bytes))
}

/// Verifies a whole spool: every line parses, is numbered in order, links to the line before,
/// has the hash of its content and a valid signature by the key named in line 1; line 1 opens
/// the spool and the last line closes it, counting the lines before it.
pub fn verify_spool(text: &str) -> Result<VerifiedSpool, SpoolError> {
    if text.len() > MAX_SPOOL_LEN {
        return Err(SpoolError::Format(format!(
            "larger than {MAX_SPOOL_LEN} bytes"
        )));
    }
    let lines: Vec<&str> = text.lines().collect();
    if lines.iter().all(|l| l.trim().is_empty()) {
        return Err(SpoolError::Format("the file is empty".into()));
    }
    let mut entries: Vec<SpoolEntry> = Vec::with_capacity(lines.len());
    let mut signer: Option<CustodianKey> = None;
    let mut prev = Hash::ZERO;
    let mut closed = false;
    for (i, raw) in lines.iter().enumerate() {
        let n = i + 1;
        let bad = |why: String| SpoolError::Line { line: n, why };
        if closed {
            return Err(bad(
                "a line after `spool.closed`: the spool was extended".into()
            ));
        }
        let line: Value = serde_json::from_str(raw)
            .map_err(|e| bad(format!("not JSON (column {}: {e})", e.column())))?;
        let obj = line
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        for key in obj.keys() {
            if ![
                "seq",
                "time_ms",
                "kind",
                "payload",
                "prev_hash",
                "hash",
                "signature",
            ]
            .contains(&key.as_str())
            {
                return Err(bad(format!("unknown field `{key}`")));
            }
        }
        let seq = line["seq"]
            .as_u64()
            .ok_or_else(|| bad("`seq` is missing or not an integer".into()))?;
        if seq != i as u64 {
            return Err(bad(format!(
                "seq is {seq}, expected {i}: lines were removed, added or reordered"
            )));
        }
        let time_ms = line["time_ms"]
            .as_i64()
            .ok_or_else(|| bad("`time_ms` is missing or not an integer".into()))?;
        let kind = line["kind"]
            .as_str()
            .ok_or_else(|| bad("`kind` is missing".into()))?
            .to_owned();
        let payload = line
            .get("payload")
            .filter(|p| p.is_object())
            .cloned()
            .ok_or_else(|| bad("`payload` is missing or not an object".into()))?;
        let prev_hash = line["prev_hash"]
            .as_str()
            .ok_or_else(|| bad("`prev_hash` is missing".into()))?;
        if prev_hash != prev.to_hex() {
            return Err(bad(format!(
                "prev_hash does not link to line {}: the chain is broken",
                n - 1
            )));
        }
        let body = json!({
            "seq": seq, "time_ms": time_ms, "kind": kind, "payload": payload, "prev_hash": prev_hash,
        });
        let hash = line_hash(&body).map_err(bad)?;
        if line["hash"].as_str() != Some(hash.to_hex().as_str()) {
            return Err(bad(
                "its hash does not match its content: the line was edited".into(),
            ));
        }
        if i == 0 {
            if kind != OPENED || payload["format"] != SPOOL_FORMAT {
                return Err(bad(format!(
                    "the first line must be `{OPENED}` of format {SPOOL_FORMAT}"
                )));
            }
            let kit_id = payload["kit_id"].as_str().unwrap_or_default();
            if kit_id.len() != 64
                || !kit_id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(bad("payload.kit_id is not 64 lowercase hex digits".into()));
            }
            for field in ["procedure", "seal_id", "recoverer", "reason", "ticket"] {
                if payload[field].as_str().is_none_or(str::is_empty) {
                    return Err(bad(format!("payload.{field} is missing or empty")));
                }
            }
            let key = CustodianKey::parse(payload["signer_key"].as_str().unwrap_or_default())
                .map_err(|e| bad(format!("payload.signer_key: {e}")))?;
            if key.kind() != KeyKind::SshEd25519 {
                return Err(bad("payload.signer_key is not an ssh-ed25519 key".into()));
            }
            signer = Some(key);
        } else if kind == OPENED {
            return Err(bad(format!("a second `{OPENED}` line")));
        }
        let Some(key) = &signer else {
            return Err(bad("no signer key".into()));
        };
        let signature = line["signature"]
            .as_str()
            .ok_or_else(|| bad("`signature` is missing".into()))?;
        verify_signature(key, SPOOL_FORMAT, hash.to_hex().as_bytes(), signature)
            .map_err(|e| bad(format!("signature by {}: {e}", key.fingerprint())))?;
        if kind == CLOSED {
            if payload["lines"].as_u64() != Some(i as u64) {
                return Err(bad(format!(
                    "`spool.closed` counts {} lines before it, there are {i}",
                    payload["lines"]
                )));
            }
            closed = true;
        }
        prev = hash;
        entries.push(SpoolEntry {
            seq,
            time_ms,
            kind,
            payload,
            line,
        });
    }
    if !closed {
        return Err(SpoolError::Truncated {
            lines: entries.len(),
        });
    }
    let head = &entries[0].payload;
    let text_of = |f: &str| head[f].as_str().unwrap_or_default().to_owned();
    Ok(VerifiedSpool {
        kit_id: text_of("kit_id"),
        procedure: text_of("procedure"),
        seal_id: text_of("seal_id"),
        recoverer: text_of("recoverer"),
        reason: text_of("reason"),
        ticket: text_of("ticket"),
        signer_key: signer.ok_or_else(|| SpoolError::Format("no signer".into()))?,
        head: prev.to_hex(),
        entries,
    })
}
