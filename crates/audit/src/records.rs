//! Verification of a whole record stream — entries, signed checkpoints and the audit-key
//! events inside the log — and comparison of a local log with a sink's copy.
//!
//! Keys are learned from the log itself: an `audit.key_created` entry announces the first key
//! (`{"key_id", "public_key"}`), and each `audit.key_rotated` entry announces a successor with
//! the old key's endorsement (`{"old_key_id", "new_key_id", "new_public_key", "endorsement"}`).
//! A verifier that pins a trusted public key (from `breakglass audit pubkey`) therefore catches
//! a history rebuilt and re-signed with another key.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::checkpoint::{AuditPublicKey, CheckpointError, SignedCheckpoint, SinkRecord};
use crate::entry::{Entry, Head};
use crate::hash::Hash;
use crate::verify::{Verifier, VerifyError};

/// Kind of the entry announcing the first audit key.
pub const KEY_CREATED: &str = "audit.key_created";
/// Kind of the entry announcing a rotation.
pub const KEY_ROTATED: &str = "audit.key_rotated";

/// The first problem found in a record stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    /// The hash chain is broken (edited, deleted, reordered entry).
    #[error("{0}")]
    Chain(#[from] VerifyError),
    /// A checkpoint's signature does not verify.
    #[error("{0}")]
    Signature(#[from] CheckpointError),
    /// A checkpoint names a key the log never announced.
    #[error("checkpoint #{seq} is signed by key {key_id}, which the log never announced")]
    UnknownKey {
        /// Checkpoint sequence.
        seq: u64,
        /// Key id.
        key_id: String,
    },
    /// A checkpoint's head differs from the log's entry at that sequence.
    #[error(
        "checkpoint #{seq} was signed over a different entry #{seq}: the log was edited or rebuilt"
    )]
    CheckpointMismatch {
        /// Sequence.
        seq: u64,
    },
    /// A checkpoint covers entries the log no longer has.
    #[error(
        "log truncated: a checkpoint covers entry #{checkpoint_seq} but the log ends at #{head_seq}"
    )]
    Truncated {
        /// Newest checkpoint's sequence.
        checkpoint_seq: u64,
        /// Last entry present.
        head_seq: u64,
    },
    /// A key event is malformed or a rotation is not endorsed by the previous key.
    #[error("entry #{seq}: {reason}")]
    KeyEvent {
        /// Entry sequence.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The log's keys do not include the trusted key.
    #[error(
        "the log is signed by key(s) {found}, not by the trusted key {trusted}: a rebuilt history"
    )]
    UntrustedKey {
        /// Trusted key id.
        trusted: String,
        /// Key ids announced by the log.
        found: String,
    },
}

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsReport {
    /// Entries verified.
    pub entries: u64,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// Last entry.
    pub head: Option<Head>,
    /// Newest checkpoint's sequence.
    pub latest_checkpoint: Option<u64>,
    /// Key ids announced, oldest first.
    pub keys: Vec<String>,
}

/// Verifies entries (chain), key events (endorsements), and checkpoints (signature, head
/// equality, nothing beyond the log's end). With `trusted`, the log must be signed by it.
pub fn verify_records(
    records: &[SinkRecord],
    trusted: Option<&AuditPublicKey>,
) -> Result<RecordsReport, Finding> {
    let mut verifier = Verifier::new();
    let mut hashes: BTreeMap<u64, Hash> = BTreeMap::new();
    let mut keys: Vec<(String, AuditPublicKey)> = Vec::new();
    let mut checkpoints: Vec<&SignedCheckpoint> = Vec::new();
    for r in records {
        match r {
            SinkRecord::Entry(e) => {
                verifier.push(e)?;
                hashes.insert(e.seq, e.hash);
                learn_key(e, &mut keys)?;
            }
            SinkRecord::Checkpoint(c) => checkpoints.push(c),
        }
    }
    let report = verifier.finish();
    if let Some(t) = trusted
        && !keys.iter().any(|(_, k)| k == t)
    {
        {
            return Err(Finding::UntrustedKey {
                trusted: t.key_id(),
                found: if keys.is_empty() {
                    "(none)".into()
                } else {
                    keys.iter()
                        .map(|(id, _)| id.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        }
    }
    let head_seq = report.head.map_or(0, |h| h.seq);
    let mut latest = None;
    for c in &checkpoints {
        let cp = &c.checkpoint;
        let key = keys
            .iter()
            .find(|(id, _)| *id == cp.key_id)
            .map(|(_, k)| k)
            .ok_or_else(|| Finding::UnknownKey {
                seq: cp.seq,
                key_id: cp.key_id.clone(),
            })?;
        c.verify(key)?;
        if cp.seq > head_seq {
            return Err(Finding::Truncated {
                checkpoint_seq: cp.seq,
                head_seq,
            });
        }
        match hashes.get(&cp.seq) {
            Some(h) if *h == cp.head => {}
            _ => return Err(Finding::CheckpointMismatch { seq: cp.seq }),
        }
        latest = latest.max(Some(cp.seq));
    }
    Ok(RecordsReport {
        entries: report.entries,
        checkpoints: checkpoints.len() as u64,
        head: report.head,
        latest_checkpoint: latest,
        keys: keys.into_iter().map(|(id, _)| id).collect(),
    })
}

fn learn_key(e: &Entry, keys: &mut Vec<(String, AuditPublicKey)>) -> Result<(), Finding> {
    let bad = |reason: &str| Finding::KeyEvent {
        seq: e.seq,
        reason: reason.to_owned(),
    };
    let field = |name: &str| {
        e.payload
            .get(name)
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad(&format!("{} has no `{name}`", e.kind)))
    };
    match e.kind.as_str() {
        KEY_CREATED => {
            if !keys.is_empty() {
                return Err(bad(
                    "a second audit.key_created: keys change only by an endorsed rotation",
                ));
            }
            let key = AuditPublicKey::from_str(field("public_key")?)
                .map_err(|err| bad(&err.to_string()))?;
            if key.key_id() != field("key_id")? {
                return Err(bad("key_id does not match public_key"));
            }
            keys.push((key.key_id(), key));
        }
        KEY_ROTATED => {
            let old_id = field("old_key_id")?;
            let old = keys
                .iter()
                .find(|(id, _)| id == old_id)
                .map(|(_, k)| *k)
                .ok_or_else(|| bad("rotation from an unknown key"))?;
            let new = AuditPublicKey::from_str(field("new_public_key")?)
                .map_err(|err| bad(&err.to_string()))?;
            let endorsement =
                hex::decode(field("endorsement")?).map_err(|_| bad("endorsement is not hex"))?;
            old.verify_endorsement(&new, &endorsement)?;
            keys.push((new.key_id(), new));
        }
        _ => {}
    }
    Ok(())
}

/// How a local log differs from a sink's copy. Each is its own finding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Divergence {
    /// The sink holds entries past the local head: the local tail was cut.
    #[error(
        "local tail truncated: the sink holds entries #{from}..#{sink_head}, the local log ends at #{local_head}"
    )]
    LocalTruncated {
        /// First entry missing locally.
        from: u64,
        /// Local head.
        local_head: u64,
        /// Sink head.
        sink_head: u64,
    },
    /// A local entry no longer matches its own hash (edited in place).
    #[error(
        "local entry #{seq} was edited (its content no longer matches its hash; the sink holds the original)"
    )]
    LocalEdited {
        /// Sequence.
        seq: u64,
    },
    /// A local entry is missing where the sink has it.
    #[error("local entry #{seq} was deleted (the sink holds it)")]
    LocalDeleted {
        /// Sequence.
        seq: u64,
    },
    /// Both copies are internally consistent but differ from `seq` on: a rebuilt history.
    #[error(
        "forked history from entry #{seq}: the local log and the sink disagree and both hash consistently"
    )]
    Forked {
        /// First differing sequence.
        seq: u64,
    },
    /// The sink lacks entries the local log has at its end (delivery lag, or loss).
    #[error(
        "sink behind: it lacks entries #{from}..#{local_head} ({missing} entries; delivery lag)"
    )]
    SinkBehind {
        /// First entry missing in the sink.
        from: u64,
        /// Local head.
        local_head: u64,
        /// How many.
        missing: u64,
    },
    /// The sink lacks an entry in the middle of what it holds.
    #[error("sink is missing entry #{seq} in the middle of its copy")]
    SinkMissing {
        /// Sequence.
        seq: u64,
    },
    /// The sink holds a signed checkpoint the local log lacks or holds differently.
    #[error(
        "local checkpoint #{seq} (key {key_id}) is missing or altered (the sink holds the original)"
    )]
    LocalCheckpointMissing {
        /// Checkpoint sequence.
        seq: u64,
        /// Signing key id.
        key_id: String,
    },
}

/// Compares the local records with a sink's copy, entry by entry; returns every kind of
/// divergence found, each with its first sequence number (empty when they agree).
pub fn compare_with_sink(local: &[SinkRecord], sink: &[SinkRecord]) -> Vec<Divergence> {
    let entries = |records: &[SinkRecord]| -> BTreeMap<u64, Entry> {
        records
            .iter()
            .filter_map(|r| match r {
                SinkRecord::Entry(e) => Some((e.seq, e.clone())),
                SinkRecord::Checkpoint(_) => None,
            })
            .collect()
    };
    let (mine, theirs) = (entries(local), entries(sink));
    let local_head = mine.keys().next_back().copied().unwrap_or(0);
    let sink_head = theirs.keys().next_back().copied().unwrap_or(0);
    let mut found: Vec<Divergence> = Vec::new();
    let mut push = |d: Divergence| {
        if !found
            .iter()
            .any(|f| std::mem::discriminant(f) == std::mem::discriminant(&d))
        {
            found.push(d);
        }
    };
    let checkpoints = |records: &[SinkRecord]| -> Vec<SignedCheckpoint> {
        records
            .iter()
            .filter_map(|r| match r {
                SinkRecord::Checkpoint(c) => Some(c.clone()),
                SinkRecord::Entry(_) => None,
            })
            .collect()
    };
    let local_checkpoints = checkpoints(local);
    for c in checkpoints(sink) {
        if c.checkpoint.seq <= local_head && !local_checkpoints.contains(&c) {
            push(Divergence::LocalCheckpointMissing {
                seq: c.checkpoint.seq,
                key_id: c.checkpoint.key_id.clone(),
            });
        }
    }
    for seq in 1..=local_head.max(sink_head) {
        match (mine.get(&seq), theirs.get(&seq)) {
            (Some(a), Some(b)) => {
                if a == b {
                    continue;
                }
                if a.compute_hash().ok() != Some(a.hash) {
                    push(Divergence::LocalEdited { seq });
                } else {
                    push(Divergence::Forked { seq });
                }
            }
            (None, Some(_)) if seq > local_head => {
                push(Divergence::LocalTruncated {
                    from: seq,
                    local_head,
                    sink_head,
                });
            }
            (None, Some(_)) => push(Divergence::LocalDeleted { seq }),
            (Some(_), None) if seq > sink_head => {
                push(Divergence::SinkBehind {
                    from: seq,
                    local_head,
                    missing: local_head - sink_head,
                });
            }
            (Some(_), None) => push(Divergence::SinkMissing { seq }),
            (None, None) => {}
        }
    }
    found
}
