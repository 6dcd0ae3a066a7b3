//! Audit entries, appending a draft to the chain, and the canonical byte encoding the entry
//! hash covers.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::canonical::{CanonicalError, write_canonical};
use crate::hash::Hash;
use crate::timestamp::{MAX_TIME_MS, MIN_TIME_MS};

/// The domain-separation tag that opens every hashed encoding; a new encoding gets a new tag.
pub const HASH_DOMAIN: &str = "breakglass-audit-v1";

/// What the caller knows about an event before it is placed in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// When the event happened, in Unix milliseconds UTC (0000-01-01 to 9999-12-31).
    pub time_ms: i64,
    /// Who caused the event: a user name, or a service name such as `system`.
    pub actor: String,
    /// What happened, as a stable machine name such as `break.requested`.
    pub kind: String,
    /// The procedure the event concerns, if any.
    pub procedure: Option<String>,
    /// The break the event concerns, if any.
    pub break_id: Option<String>,
    /// Event details: a JSON object holding only integers, strings, bools, null, arrays and
    /// objects (no floats), nested at most [`MAX_DEPTH`](crate::MAX_DEPTH) deep.
    pub payload: Value,
}

/// One link of the audit chain: a [`Draft`] with its place in the log and its hashes.
///
/// It holds no secrets, so it is `Serialize`; the serde form is the JSON Lines export form
/// (see [`Entry::to_json_line`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, starting at 1 and increasing by exactly 1.
    pub seq: u64,
    /// When the event happened, in Unix milliseconds UTC. Not necessarily monotonic: clocks
    /// jump, and the log records what the clock said.
    pub time_ms: i64,
    /// Who caused the event.
    pub actor: String,
    /// What happened.
    pub kind: String,
    /// The procedure the event concerns, if any.
    pub procedure: Option<String>,
    /// The break the event concerns, if any.
    pub break_id: Option<String>,
    /// Event details, a JSON object with a canonical form.
    pub payload: Value,
    /// The hash of the entry before this one, or [`Hash::ZERO`] for seq 1.
    pub prev_hash: Hash,
    /// The hash of this entry's canonical encoding (see [`Entry::compute_hash`]).
    pub hash: Hash,
}

/// The end of a log: the last entry's seq and hash. An empty log has no head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    /// The seq of the last entry.
    pub seq: u64,
    /// The hash of the last entry.
    pub hash: Hash,
}

/// Why a draft cannot be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The payload is not a JSON object; wrap the value in one, e.g. `{"value": …}`.
    #[error("the payload must be a JSON object")]
    PayloadNotObject,
    /// The payload holds a float or nests too deep, so it has no canonical form.
    #[error("the payload has no canonical form: {0}")]
    Payload(#[from] CanonicalError),
    /// The time is outside 0000-01-01..9999-12-31 and cannot be written as RFC 3339.
    #[error("time {0} ms is outside the years 0000..=9999")]
    TimeOutOfRange(i64),
    /// The head already has the largest possible seq.
    #[error("the log is full: seq cannot exceed {}", u64::MAX)]
    SequenceExhausted,
}

/// Places `draft` after `head` (`None` for an empty log) and computes its hash.
///
/// The result has seq `head.seq + 1` (1 for an empty log) and `prev_hash` `head.hash`
/// ([`Hash::ZERO`] for an empty log). A time earlier than the previous entry's is recorded as
/// given, not refused.
pub fn append(head: Option<&Head>, draft: Draft) -> Result<Entry, AppendError> {
    let (seq, prev_hash) = match head {
        None => (1, Hash::ZERO),
        Some(h) => (
            h.seq.checked_add(1).ok_or(AppendError::SequenceExhausted)?,
            h.hash,
        ),
    };
    if !draft.payload.is_object() {
        return Err(AppendError::PayloadNotObject);
    }
    if !(MIN_TIME_MS..=MAX_TIME_MS).contains(&draft.time_ms) {
        return Err(AppendError::TimeOutOfRange(draft.time_ms));
    }
    let mut entry = Entry {
        seq,
        time_ms: draft.time_ms,
        actor: draft.actor,
        kind: draft.kind,
        procedure: draft.procedure,
        break_id: draft.break_id,
        payload: draft.payload,
        prev_hash,
        hash: Hash::ZERO,
    };
    entry.hash = entry.compute_hash()?;
    Ok(entry)
}

impl Entry {
    /// The head of a log that ends with this entry.
    pub fn head(&self) -> Head {
        Head {
            seq: self.seq,
            hash: self.hash,
        }
    }

    /// Computes this entry's hash from every field except `hash` itself.
    ///
    /// SHA-256 over, in order: the tag [`HASH_DOMAIN`], `seq` (u64 BE), `time_ms` (i64 BE,
    /// two's complement), `actor`, `kind`, `procedure`, `break_id`, the canonical JSON of
    /// `payload`, and the 32 bytes of `prev_hash`. Strings and the payload are prefixed by
    /// their byte length as u64 BE; an `Option` is a `0x00` byte for `None` or `0x01` followed
    /// by the string. Fails only when the payload has no canonical form.
    pub fn compute_hash(&self) -> Result<Hash, CanonicalError> {
        self.compute_hash_with(&mut Vec::new())
    }

    /// [`Entry::compute_hash`] with a caller-owned buffer, so that verifying many entries
    /// reuses one allocation.
    ///
    /// The whole hash input is laid out in `scratch` and hashed with one call: SHA-256 then
    /// runs over whole blocks instead of being fed a dozen pieces of a few bytes each. The
    /// bytes are exactly those listed on [`Entry::compute_hash`].
    pub(crate) fn compute_hash_with(&self, scratch: &mut Vec<u8>) -> Result<Hash, CanonicalError> {
        scratch.clear();
        put_bytes(scratch, HASH_DOMAIN.as_bytes());
        scratch.extend_from_slice(&self.seq.to_be_bytes());
        scratch.extend_from_slice(&self.time_ms.to_be_bytes());
        put_bytes(scratch, self.actor.as_bytes());
        put_bytes(scratch, self.kind.as_bytes());
        put_option(scratch, self.procedure.as_deref());
        put_option(scratch, self.break_id.as_deref());
        // The payload's length prefix is only known once it is written: reserve its 8 bytes,
        // write the canonical JSON after them, then fill them in.
        let prefix_at = scratch.len();
        scratch.extend_from_slice(&[0u8; 8]);
        write_canonical(scratch, &self.payload)?;
        let payload_len = (scratch.len() - prefix_at - 8) as u64;
        scratch[prefix_at..prefix_at + 8].copy_from_slice(&payload_len.to_be_bytes());
        scratch.extend_from_slice(&self.prev_hash.0);
        Ok(Hash(Sha256::digest(&scratch[..]).into()))
    }
}

/// Appends a byte string as its length (u64 BE) followed by the bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // usize is at most 64 bits on every target Rust supports, so this never truncates.
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Appends an optional string as a 0x00 tag, or a 0x01 tag followed by the string.
fn put_option(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_bytes(out, s.as_bytes());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft(time_ms: i64) -> Draft {
        Draft {
            time_ms,
            actor: "alice".into(),
            kind: "break.requested".into(),
            procedure: Some("db-root".into()),
            break_id: None,
            payload: json!({"reason": "outage"}),
        }
    }

    #[test]
    fn first_entry_starts_the_chain() {
        let e = append(None, draft(1000)).unwrap();
        assert_eq!(e.seq, 1);
        assert_eq!(e.prev_hash, Hash::ZERO);
        assert_eq!(e.hash, e.compute_hash().unwrap());
        assert_ne!(e.hash, Hash::ZERO);
    }

    #[test]
    fn appends_link_and_time_may_go_backwards() {
        let a = append(None, draft(5000)).unwrap();
        let b = append(Some(&a.head()), draft(1000)).unwrap();
        assert_eq!(b.seq, 2);
        assert_eq!(b.prev_hash, a.hash);
        assert_eq!(b.time_ms, 1000);
    }

    #[test]
    fn refuses_bad_drafts() {
        let mut d = draft(0);
        d.payload = json!([1]);
        assert_eq!(append(None, d), Err(AppendError::PayloadNotObject));
        let mut d = draft(0);
        d.payload = json!({"x": {"y": 0.5}});
        assert!(matches!(
            append(None, d),
            Err(AppendError::Payload(CanonicalError::NotInteger(_)))
        ));
        assert_eq!(
            append(None, draft(MAX_TIME_MS + 1)),
            Err(AppendError::TimeOutOfRange(MAX_TIME_MS + 1))
        );
        let full = Head {
            seq: u64::MAX,
            hash: Hash::ZERO,
        };
        assert_eq!(
            append(Some(&full), draft(0)),
            Err(AppendError::SequenceExhausted)
        );
    }

    /// The hash as the format describes it, fed to SHA-256 field by field: the reference the
    /// one-buffer `compute_hash_with` must agree with.
    fn reference_hash(e: &Entry) -> Hash {
        fn bytes(h: &mut Sha256, b: &[u8]) {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        }
        fn option(h: &mut Sha256, v: Option<&str>) {
            match v {
                None => h.update([0u8]),
                Some(s) => {
                    h.update([1u8]);
                    bytes(h, s.as_bytes());
                }
            }
        }
        let mut h = Sha256::new();
        bytes(&mut h, HASH_DOMAIN.as_bytes());
        h.update(e.seq.to_be_bytes());
        h.update(e.time_ms.to_be_bytes());
        bytes(&mut h, e.actor.as_bytes());
        bytes(&mut h, e.kind.as_bytes());
        option(&mut h, e.procedure.as_deref());
        option(&mut h, e.break_id.as_deref());
        bytes(
            &mut h,
            crate::canonical_json(&e.payload).unwrap().as_bytes(),
        );
        h.update(e.prev_hash.0);
        Hash(h.finalize().into())
    }

    proptest::proptest! {
        #[test]
        fn one_buffer_hash_matches_the_field_by_field_reference(
            seq in proptest::prelude::any::<u64>(),
            time_ms in proptest::prelude::any::<i64>(),
            actor in ".{0,40}",
            kind in "[a-z.]{0,300}",
            procedure in proptest::option::of(".{0,20}"),
            break_id in proptest::option::of("[a-z0-9_]{0,30}"),
            key in "\\PC{0,8}",
            text in "\\PC{0,200}",
            number in proptest::prelude::any::<i64>(),
            big in proptest::prelude::any::<u64>(),
            prev in proptest::prelude::any::<[u8; 32]>(),
        ) {
            let e = Entry {
                seq,
                time_ms,
                actor,
                kind,
                procedure,
                break_id,
                payload: json!({key: text, "n": number, "u": big, "nested": {"b": [1, -2, null], "a": true}}),
                prev_hash: Hash(prev),
                hash: Hash::ZERO,
            };
            // One scratch buffer across calls, as the verifier uses it.
            let mut scratch = vec![0xAA; 7];
            proptest::prop_assert_eq!(e.compute_hash_with(&mut scratch).unwrap(), reference_hash(&e));
            proptest::prop_assert_eq!(e.compute_hash_with(&mut scratch).unwrap(), reference_hash(&e));
        }
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = append(None, draft(1000)).unwrap();
        let mut variants = Vec::new();
        let mut push = |f: &dyn Fn(&mut Entry)| {
            let mut e = base.clone();
            f(&mut e);
            variants.push(e.compute_hash().unwrap());
        };
        push(&|e| e.seq = 2);
        push(&|e| e.time_ms = 1001);
        push(&|e| e.actor = "alicf".into());
        push(&|e| e.kind = "break.requestee".into());
        push(&|e| e.procedure = None);
        push(&|e| e.procedure = Some(String::new()));
        push(&|e| e.break_id = Some(String::new()));
        push(&|e| e.payload = json!({"reason": "outagf"}));
        push(&|e| e.prev_hash = Hash([1; 32]));
        // Moving bytes between adjacent strings must change the hash (length prefixes).
        push(&|e| {
            e.actor = "alicebreak.requested".into();
            e.kind = String::new();
        });
        variants.push(base.hash);
        let mut unique = variants.clone();
        unique.sort_by_key(|h| h.0);
        unique.dedup();
        assert_eq!(unique.len(), variants.len());
        // The stored hash itself is not an input.
        let mut e = base.clone();
        e.hash = Hash([7; 32]);
        assert_eq!(e.compute_hash().unwrap(), base.hash);
    }
}
