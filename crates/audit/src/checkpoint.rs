//! Signed checkpoints: an Ed25519 signature over (sequence, head hash, time, key id), so a
//! holder of the public key alone can tell that the log once reached that head — and so that
//! truncation or a rebuilt history shows against any checkpoint kept elsewhere.
//!
//! Signing bytes (all integers big-endian):
//! `"breakglass-checkpoint-v1" 0x00 | seq u64 | time_ms i64 | head 32 bytes | len(key_id) u64 | key_id`.
//! A key id is the first 16 hex digits of SHA-256 over the 32-byte public key.
//! A rotation endorsement is the old key's signature over
//! `"breakglass-audit-key-rotation-v1" 0x00 | new public key (32 bytes)`.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::hash::Hash;
use crate::timestamp::format_rfc3339_ms;

/// Domain separation tag of checkpoint signatures.
pub const CHECKPOINT_DOMAIN: &str = "breakglass-checkpoint-v1";
/// Domain separation tag of key-rotation endorsements.
pub const ROTATION_DOMAIN: &str = "breakglass-audit-key-rotation-v1";
/// First line of an audit key file.
const KEY_FILE_TAG: &str = "breakglass-audit-key-v1";

/// Problems with keys, checkpoints and their encodings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// An audit key file is not in the expected form.
    #[error("audit key file: {0}")]
    KeyFile(&'static str),
    /// A public key is not in the expected form.
    #[error("audit public key: {0}")]
    PublicKey(&'static str),
    /// The signature does not verify.
    #[error("checkpoint #{seq} signature does not verify with key {key_id}")]
    BadSignature {
        /// Checkpoint sequence.
        seq: u64,
        /// Key id named by the checkpoint.
        key_id: String,
    },
    /// The checkpoint names a key that is not the one given.
    #[error("checkpoint #{seq} is signed by key {found}, not {expected}")]
    WrongKey {
        /// Checkpoint sequence.
        seq: u64,
        /// Key id expected.
        expected: String,
        /// Key id found.
        found: String,
    },
    /// A rotation endorsement does not verify.
    #[error("rotation to key {new} is not endorsed by key {old}")]
    BadEndorsement {
        /// Old key id.
        old: String,
        /// New key id.
        new: String,
    },
    /// A checkpoint line cannot be parsed.
    #[error("checkpoint line: {0}")]
    Parse(String),
}

/// The server's private audit signing key. Redacted `Debug`; zeroized on drop.
pub struct AuditKey {
    pub(crate) signing: SigningKey,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditKey({}, [REDACTED])", self.key_id())
    }
}

impl AuditKey {
    /// A key from 32 random bytes (the caller supplies the randomness; this crate does no I/O).
    pub fn from_seed(seed: [u8; 32]) -> AuditKey {
        let seed = Zeroizing::new(seed);
        AuditKey {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The public half.
    pub fn public(&self) -> AuditPublicKey {
        AuditPublicKey(self.signing.verifying_key())
    }

    /// The key id.
    pub fn key_id(&self) -> String {
        self.public().key_id()
    }

    /// Signs a checkpoint of the head `(seq, head)` at `time_ms`.
    pub fn sign_checkpoint(&self, seq: u64, head: Hash, time_ms: i64) -> SignedCheckpoint {
        let checkpoint = Checkpoint {
            seq,
            head,
            time_ms,
            key_id: self.key_id(),
        };
        let signature = self.signing.sign(&checkpoint.signing_bytes()).to_bytes();
        SignedCheckpoint {
            checkpoint,
            signature,
        }
    }

    /// Endorses `new` as this key's successor.
    pub fn endorse(&self, new: &AuditPublicKey) -> [u8; 64] {
        self.signing.sign(&rotation_bytes(new)).to_bytes()
    }

    /// The key file's text: `breakglass-audit-key-v1 <hex seed>`.
    pub fn expose_file_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{KEY_FILE_TAG} {}\n",
            hex::encode(self.signing.to_bytes())
        ))
    }

    /// Parses a key file's text.
    pub fn from_file_text(text: &str) -> Result<AuditKey, CheckpointError> {
        let mut parts = text.split_whitespace();
        if parts.next() != Some(KEY_FILE_TAG) {
            return Err(CheckpointError::KeyFile(
                "does not start with breakglass-audit-key-v1",
            ));
        }
        let hex_seed = Zeroizing::new(
            parts
                .next()
                .ok_or(CheckpointError::KeyFile("no key"))?
                .to_owned(),
        );
        if parts.next().is_some() {
            return Err(CheckpointError::KeyFile("trailing data"));
        }
        let bytes = Zeroizing::new(
            hex::decode(hex_seed.as_str())
                .map_err(|_| CheckpointError::KeyFile("key is not hex"))?,
        );
        let seed: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CheckpointError::KeyFile("key is not 32 bytes"))?;
        Ok(AuditKey::from_seed(seed))
    }
}

/// A public audit key: `ed25519:<base64 of 32 bytes>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuditPublicKey(pub(crate) VerifyingKey);

impl fmt::Debug for AuditPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditPublicKey({self})")
    }
}

impl fmt::Display for AuditPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", B64.encode(self.0.as_bytes()))
    }
}

impl FromStr for AuditPublicKey {
    type Err = CheckpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b64 = s
            .trim()
            .strip_prefix("ed25519:")
            .ok_or(CheckpointError::PublicKey("must start with ed25519:"))?;
        let bytes = B64
            .decode(b64)
            .map_err(|_| CheckpointError::PublicKey("not base64"))?;
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CheckpointError::PublicKey("not 32 bytes"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(AuditPublicKey)
            .map_err(|_| CheckpointError::PublicKey("not a valid Ed25519 point"))
    }
}

impl AuditPublicKey {
    /// First 16 hex digits of SHA-256 over the 32-byte key.
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }

    /// Checks that `endorsement` is this key's endorsement of `new`.
    pub fn verify_endorsement(
        &self,
        new: &AuditPublicKey,
        endorsement: &[u8],
    ) -> Result<(), CheckpointError> {
        let bad = || CheckpointError::BadEndorsement {
            old: self.key_id(),
            new: new.key_id(),
        };
        let sig = Signature::from_slice(endorsement).map_err(|_| bad())?;
        self.0
            .verify_strict(&rotation_bytes(new), &sig)
            .map_err(|_| bad())
    }
}

fn rotation_bytes(new: &AuditPublicKey) -> Vec<u8> {
    let mut b = Vec::with_capacity(ROTATION_DOMAIN.len() + 33);
    b.extend_from_slice(ROTATION_DOMAIN.as_bytes());
    b.push(0);
    b.extend_from_slice(new.0.as_bytes());
    b
}

/// What a checkpoint asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Sequence number of the newest entry covered.
    pub seq: u64,
    /// That entry's hash.
    pub head: Hash,
    /// When it was signed.
    pub time_ms: i64,
    /// Which key signed it.
    pub key_id: String,
}

impl Checkpoint {
    /// The exact bytes signed (see the module documentation).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut b =
            Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 1 + 8 + 8 + 32 + 8 + self.key_id.len());
        b.extend_from_slice(CHECKPOINT_DOMAIN.as_bytes());
        b.push(0);
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.time_ms.to_be_bytes());
        b.extend_from_slice(self.head.as_bytes());
        b.extend_from_slice(&(self.key_id.len() as u64).to_be_bytes());
        b.extend_from_slice(self.key_id.as_bytes());
        b
    }
}

/// A checkpoint with its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The statement.
    pub checkpoint: Checkpoint,
    /// Ed25519 signature over `checkpoint.signing_bytes()`.
    pub signature: [u8; 64],
}

impl SignedCheckpoint {
    /// Verifies the signature with `key`, which must be the key the checkpoint names.
    pub fn verify(&self, key: &AuditPublicKey) -> Result<(), CheckpointError> {
        let c = &self.checkpoint;
        if key.key_id() != c.key_id {
            return Err(CheckpointError::WrongKey {
                seq: c.seq,
                expected: key.key_id(),
                found: c.key_id.clone(),
            });
        }
        let sig = Signature::from_bytes(&self.signature);
        key.0
            .verify_strict(&c.signing_bytes(), &sig)
            .map_err(|_| CheckpointError::BadSignature {
                seq: c.seq,
                key_id: c.key_id.clone(),
            })
    }

    /// One JSON line: `{"checkpoint":{"seq":…,"head":…,"time":…,"time_ms":…,"key_id":…,"signature":…}}`.
    pub fn to_json_line(&self) -> String {
        let c = &self.checkpoint;
        json!({"checkpoint": {
            "seq": c.seq,
            "head": c.head.to_hex(),
            "time": format_rfc3339_ms(c.time_ms),
            "time_ms": c.time_ms,
            "key_id": c.key_id,
            "signature": hex::encode(self.signature),
        }})
        .to_string()
    }

    /// Parses `to_json_line`'s output (untrusted input: errors, never panics).
    pub fn from_json_line(line: &str) -> Result<SignedCheckpoint, CheckpointError> {
        let p = |m: &str| CheckpointError::Parse(m.to_owned());
        let v: Value =
            serde_json::from_str(line).map_err(|e| CheckpointError::Parse(e.to_string()))?;
        let c = v
            .get("checkpoint")
            .and_then(Value::as_object)
            .ok_or_else(|| p("no checkpoint object"))?;
        let seq = c
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| p("seq"))?;
        let head = c
            .get("head")
            .and_then(Value::as_str)
            .and_then(|h| Hash::from_str(h).ok())
            .ok_or_else(|| p("head"))?;
        let time_ms = c
            .get("time_ms")
            .and_then(Value::as_i64)
            .ok_or_else(|| p("time_ms"))?;
        let key_id = c
            .get("key_id")
            .and_then(Value::as_str)
            .ok_or_else(|| p("key_id"))?
            .to_owned();
        let signature: [u8; 64] = c
            .get("signature")
            .and_then(Value::as_str)
            .and_then(|s| hex::decode(s).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| p("signature"))?;
        Ok(SignedCheckpoint {
            checkpoint: Checkpoint {
                seq,
                head,
                time_ms,
                key_id,
            },
            signature,
        })
    }
}

/// What audit sinks receive: entries and checkpoints, each as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkRecord {
    /// An audit entry (its line is `Entry::to_json_line`).
    Entry(crate::Entry),
    /// A signed checkpoint (its line is `SignedCheckpoint::to_json_line`).
    Checkpoint(SignedCheckpoint),
}

impl SinkRecord {
    /// A stable id for deduplication: `entry-<seq>` or `checkpoint-<seq>-<key id>`.
    pub fn message_id(&self) -> String {
        match self {
            SinkRecord::Entry(e) => format!("entry-{}", e.seq),
            SinkRecord::Checkpoint(c) => {
                format!("checkpoint-{}-{}", c.checkpoint.seq, c.checkpoint.key_id)
            }
        }
    }

    /// The record as one JSON line (no newline).
    pub fn to_line(&self) -> String {
        match self {
            SinkRecord::Entry(e) => e.to_json_line(),
            SinkRecord::Checkpoint(c) => c.to_json_line(),
        }
    }

    /// Parses a line written by `to_line`.
    pub fn from_line(line: &str) -> Result<SinkRecord, CheckpointError> {
        if line.trim_start().starts_with("{\"checkpoint\"") {
            SignedCheckpoint::from_json_line(line).map(SinkRecord::Checkpoint)
        } else {
            crate::Entry::from_json_line(line)
                .map(SinkRecord::Entry)
                .map_err(|e| CheckpointError::Parse(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> AuditKey {
        AuditKey::from_seed([n; 32])
    }

    #[test]
    fn sign_and_verify() {
        let k = key(1);
        let cp = k.sign_checkpoint(42, Hash([7; 32]), 1_800_000_000_000);
        cp.verify(&k.public()).expect("verifies");
        let mut forged = cp.clone();
        forged.checkpoint.seq = 43;
        assert_eq!(
            forged.verify(&k.public()),
            Err(CheckpointError::BadSignature {
                seq: 43,
                key_id: k.key_id()
            })
        );
        assert!(matches!(
            cp.verify(&key(2).public()),
            Err(CheckpointError::WrongKey { .. })
        ));
    }

    #[test]
    fn line_round_trip_and_sink_record() {
        let cp = key(1).sign_checkpoint(3, Hash([9; 32]), 5);
        let line = cp.to_json_line();
        assert_eq!(SignedCheckpoint::from_json_line(&line), Ok(cp.clone()));
        let r = SinkRecord::from_line(&line).expect("record");
        assert_eq!(r.message_id(), format!("checkpoint-3-{}", key(1).key_id()));
        for bad in [
            "",
            "{",
            "{\"checkpoint\":{}}",
            "{\"checkpoint\":{\"seq\":-1}}",
        ] {
            assert!(SinkRecord::from_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_file_and_public_key_round_trip() {
        let k = key(5);
        let again = AuditKey::from_file_text(&k.expose_file_text()).expect("parse");
        assert_eq!(again.public(), k.public());
        assert!(!format!("{k:?}").contains(&hex::encode([5u8; 32])));
        let p: AuditPublicKey = k.public().to_string().parse().expect("public");
        assert_eq!(p, k.public());
        assert!(AuditKey::from_file_text("breakglass-audit-key-v1 zz").is_err());
        assert!("ed25519:AAAA".parse::<AuditPublicKey>().is_err());
    }

    #[test]
    fn rotation_endorsement() {
        let (old, new) = (key(1), key(2));
        let e = old.endorse(&new.public());
        old.public()
            .verify_endorsement(&new.public(), &e)
            .expect("endorsed");
        assert!(new.public().verify_endorsement(&old.public(), &e).is_err());
    }

    /// Committed vector: a fixed key and checkpoint; if the encoding changes this fails.
    #[test]
    fn vector() {
        let k = key(1);
        let cp = k.sign_checkpoint(5, Hash([0xab; 32]), 1_795_910_341_123);
        assert_eq!(k.public().to_string(), VECTOR_PUBLIC);
        assert_eq!(hex::encode(cp.checkpoint.signing_bytes()), VECTOR_BYTES);
        assert_eq!(cp.to_json_line(), VECTOR_LINE);
    }

    const VECTOR_PUBLIC: &str = "ed25519:iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=";
    const VECTOR_BYTES: &str = "627265616b676c6173732d636865636b706f696e742d7631000000000000000005000001a224991203abababababababababababababababababababababababababababababababab000000000000001033343735306639386264353966636663";
    const VECTOR_LINE: &str = r#"{"checkpoint":{"head":"abababababababababababababababababababababababababababababababab","key_id":"34750f98bd59fcfc","seq":5,"signature":"90c9d9c79d8d3e34eb26457ee94b582ee65ef4063134d05586ca00804f4f84963476692b5cb0ee9fd8a5a5e84127e27f4960c99d9910bc5483fb86378473430a","time":"2026-11-28T23:59:01.123Z","time_ms":1795910341123}}"#;
}
