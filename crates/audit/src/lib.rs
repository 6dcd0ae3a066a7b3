//! The audit log's format and integrity: entries, canonical encoding, the hash chain and its
//! verification. This crate does no I/O and is not async; storage and delivery live elsewhere.
//!
//! `docs/audit-log-format.md` specifies the format well enough to write an independent
//! verifier; this crate is the reference implementation and `tests/vectors/chain.jsonl` its
//! test vectors.

mod canonical;
mod checkpoint;
mod document;
mod entry;
pub mod evidence;
mod hash;
mod line;
mod records;
mod timestamp;
mod verify;

pub use canonical::{CanonicalError, MAX_DEPTH, canonical_json};
pub use checkpoint::{
    AuditKey, AuditPublicKey, CHECKPOINT_DOMAIN, Checkpoint, CheckpointError, ROTATION_DOMAIN,
    SignedCheckpoint, SinkRecord,
};
pub use document::{document_signing_bytes, sha256};
pub use entry::{AppendError, Draft, Entry, HASH_DOMAIN, Head, append};
pub use hash::{Hash, HashParseError};
pub use line::ParseError;
pub use records::{
    Divergence, Finding, KEY_CREATED, KEY_ROTATED, RecordsReport, compare_with_sink, verify_records,
};
pub use timestamp::{MAX_TIME_MS, MIN_TIME_MS, format_rfc3339_ms};
pub use verify::{Verifier, VerifyError, VerifyReport, verify_against_head, verify_lines};
