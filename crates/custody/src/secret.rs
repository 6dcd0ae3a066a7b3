//! The secret being sealed, and a salted fingerprint that tells two secrets apart without keeping either.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretSlice};

/// A secret value (password, private key, token) held in memory that is zeroized on drop.
///
/// It is deliberately neither `Clone` nor `Serialize`, and its `Debug` shows only its length.
pub struct Secret(SecretSlice<u8>);

impl Secret {
    /// Takes ownership of `bytes` as a secret.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(SecretSlice::from(bytes))
    }

    /// Exposes the secret bytes; every call site is a place where the secret leaves this type.
    pub fn expose_secret(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// The length of the secret in bytes.
    pub fn len(&self) -> usize {
        self.0.expose_secret().len()
    }

    /// Whether the secret is empty (an empty secret cannot be sealed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([REDACTED; {} bytes])", self.len())
    }
}

/// Why a secret could not be fingerprinted.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    /// The argon2 implementation refused the fixed parameters; this is a bug, not a user error.
    #[error("argon2 failed: {0}")]
    Argon2(String),
}

/// Memory cost of [`fingerprint_secret`] in KiB (the OWASP argon2id minimum).
pub const FINGERPRINT_MEMORY_KIB: u32 = 19_456;
/// Iterations of [`fingerprint_secret`].
pub const FINGERPRINT_ITERATIONS: u32 = 2;
/// Parallelism of [`fingerprint_secret`].
pub const FINGERPRINT_PARALLELISM: u32 = 1;

/// Derives a 32-byte argon2id fingerprint of `secret` under `salt`.
///
/// The server keeps `(salt, fingerprint)` of the current secret so that a re-seal can be checked to
/// use a *new* secret without the server ever keeping the secret itself. Parameters are argon2id
/// v0x13, m = [`FINGERPRINT_MEMORY_KIB`], t = [`FINGERPRINT_ITERATIONS`],
/// p = [`FINGERPRINT_PARALLELISM`], 32-byte output.
pub fn fingerprint_secret(secret: &Secret, salt: &[u8; 16]) -> Result<[u8; 32], FingerprintError> {
    let params = Params::new(
        FINGERPRINT_MEMORY_KIB,
        FINGERPRINT_ITERATIONS,
        FINGERPRINT_PARALLELISM,
        Some(32),
    )
    .map_err(|e| FingerprintError::Argon2(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = [0u8; 32];
    argon
        .hash_password_into(secret.expose_secret(), salt, &mut out)
        .map_err(|e| FingerprintError::Argon2(e.to_string()))?;
    Ok(out)
}

/// A fresh random 16-byte salt for [`fingerprint_secret`].
pub fn random_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    salt
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let secret = Secret::new(b"hunter2-hunter2".to_vec());
        let shown = format!("{secret:?}");
        assert_eq!(shown, "Secret([REDACTED; 15 bytes])");
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn fingerprint_is_stable_and_separates_secrets_and_salts() {
        let salt = [7u8; 16];
        let a = fingerprint_secret(&Secret::new(b"one".to_vec()), &salt).unwrap();
        let a2 = fingerprint_secret(&Secret::new(b"one".to_vec()), &salt).unwrap();
        let b = fingerprint_secret(&Secret::new(b"two".to_vec()), &salt).unwrap();
        let c = fingerprint_secret(&Secret::new(b"one".to_vec()), &[8u8; 16]).unwrap();
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(random_salt(), random_salt());
    }
}
