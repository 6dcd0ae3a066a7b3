//! Signed JSON documents (recovery kits): an Ed25519 signature by the audit key over a domain
//! separator and the canonical JSON of the document without its `signature` field, and the
//! SHA-256 helper the recovery formats use for their ids and chains.

use ed25519_dalek::{Signature, Signer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{AuditKey, AuditPublicKey, CanonicalError, Hash, canonical_json};

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Hash {
    Hash(Sha256::digest(bytes).into())
}

/// The bytes a document signature covers: `domain || 0x00 || canonical_json(doc − signature)`.
pub fn document_signing_bytes(domain: &str, document: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut unsigned = document.clone();
    if let Some(map) = unsigned.as_object_mut() {
        map.remove("signature");
    }
    let mut bytes = domain.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(canonical_json(&unsigned)?.as_bytes());
    Ok(bytes)
}

impl AuditKey {
    /// Signs `document` under `domain`; returns the signature as 128 hex digits.
    pub fn sign_document(&self, domain: &str, document: &Value) -> Result<String, CanonicalError> {
        let bytes = document_signing_bytes(domain, document)?;
        Ok(hex::encode(self.signing.sign(&bytes).to_bytes()))
    }
}

impl AuditPublicKey {
    /// Whether `signature_hex` is this key's signature of `document` under `domain`
    /// (`verify_strict`). Any malformed input is simply `false`.
    pub fn verify_document(&self, domain: &str, document: &Value, signature_hex: &str) -> bool {
        let Ok(bytes) = document_signing_bytes(domain, document) else {
            return false;
        };
        let Some(sig) = hex::decode(signature_hex)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
        else {
            return false;
        };
        self.0.verify_strict(&bytes, &sig).is_ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_signed_document_verifies_and_any_change_does_not() {
        let key = AuditKey::from_seed([3; 32]);
        let mut doc = json!({"format": "x", "n": 1, "list": ["a", "b"]});
        let sig = key.sign_document("dom", &doc).unwrap();
        doc["signature"] = Value::from(sig.clone());
        assert!(key.public().verify_document("dom", &doc, &sig));
        assert!(!key.public().verify_document("other", &doc, &sig));
        let mut changed = doc.clone();
        changed["n"] = Value::from(2);
        assert!(!key.public().verify_document("dom", &changed, &sig));
        let other = AuditKey::from_seed([4; 32]).public();
        assert!(!other.verify_document("dom", &doc, &sig));
        assert!(!key.public().verify_document("dom", &doc, "zz"));
    }

    #[test]
    fn sha256_is_sha256() {
        assert_eq!(
            sha256(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
