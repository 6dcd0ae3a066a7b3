//! Sealing a secret under a fresh data key split among custodians, and unsealing it from shares.

use std::collections::HashSet;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::challenge::age_encrypt;
use crate::key::CustodianKey;
use crate::secret::Secret;
use crate::shamir;
use crate::share::{
    EncryptedShare, PlainShare, SHARE_LEN, ShareCommitment, VerifiedShare, commitment_digest,
    valid_custodian, valid_seal_id,
};

/// Prefix of every seal id.
pub const SEAL_ID_PREFIX: &str = "seal_";
/// Length of the ChaCha20-Poly1305 nonce that opens [`Sealed::ciphertext`].
pub const NONCE_LEN: usize = 12;
/// Length of the Poly1305 tag that ends [`Sealed::ciphertext`].
pub const TAG_LEN: usize = 16;
/// Domain separator of the sealed ciphertext's associated data.
pub const SEAL_AAD_DOMAIN: &[u8] = b"breakglass-seal-v1";

/// A sealed secret: everything the server stores. None of it is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The random seal id, `seal_` followed by 16 lowercase hex characters.
    pub seal_id: String,
    /// How many shares unseal the secret.
    pub threshold: u8,
    /// `nonce (12) || ChaCha20-Poly1305 ciphertext and tag` of the secret under the data key.
    pub ciphertext: Vec<u8>,
    /// One commitment per custodian, in the order the custodians were given.
    pub commitments: Vec<ShareCommitment>,
    /// One age-encrypted share per custodian, in the order the custodians were given.
    pub shares: Vec<EncryptedShare>,
}

/// Why a secret could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The secret is empty.
    #[error("the secret is empty; there is nothing to seal")]
    EmptySecret,
    /// A threshold below 2 would let one custodian unseal alone.
    #[error("threshold {threshold} is too low; at least 2 custodians must be needed")]
    ThresholdTooLow {
        /// The threshold asked for.
        threshold: u8,
    },
    /// The threshold is larger than the number of custodians.
    #[error("threshold {threshold} is more than the {custodians} custodians")]
    ThresholdTooHigh {
        /// The threshold asked for.
        threshold: u8,
        /// How many custodians were given.
        custodians: usize,
    },
    /// More than 255 custodians.
    #[error("{count} custodians is more than the 255 supported")]
    TooManyCustodians {
        /// How many custodians were given.
        count: usize,
    },
    /// A custodian name is empty, longer than 255 bytes, or contains control characters.
    #[error("invalid custodian name {name:?}: names are 1 to 255 bytes without control characters")]
    InvalidCustodianName {
        /// The rejected name.
        name: String,
    },
    /// The same custodian name appears twice.
    #[error("custodian {name} is listed twice")]
    DuplicateCustodian {
        /// The repeated name.
        name: String,
    },
    /// Two custodians have the same key, which would hand one person two shares.
    #[error("custodians {first} and {second} have the same key ({fingerprint})")]
    DuplicateKey {
        /// The custodian listed first.
        first: String,
        /// The custodian listed second.
        second: String,
        /// The shared key's fingerprint.
        fingerprint: String,
    },
    /// Shamir splitting failed; this is a bug, not a user error.
    #[error("splitting the data key failed: {0}")]
    Split(String),
    /// Encrypting the secret or a share failed.
    #[error("encrypting failed: {0}")]
    Encrypt(String),
}

/// Seals `secret` so that any `threshold` of `custodians` (name, key) can unseal it.
///
/// A fresh data key encrypts the secret; the key is split with Shamir's scheme (share `i + 1` for
/// custodian `i`), each share is committed to and age-encrypted to its custodian, and the data key
/// and plaintext shares are zeroized. See the crate docs for the exact formats.
pub fn seal(
    secret: &Secret,
    threshold: u8,
    custodians: &[(String, CustodianKey)],
) -> Result<Sealed, SealError> {
    check_custodians(secret, threshold, custodians)?;
    // Checked above: 2 <= threshold <= custodians.len() <= 255.
    let count = custodians.len() as u8;
    let seal_id = new_seal_id();

    let mut data_key = Zeroizing::new([0u8; SHARE_LEN]);
    OsRng.fill_bytes(data_key.as_mut_slice());
    let ciphertext = encrypt_secret(&data_key, &seal_id, secret)?;
    let ys =
        shamir::split(&data_key, threshold, count).map_err(|e| SealError::Split(e.to_string()))?;
    drop(data_key);

    let mut commitments = Vec::with_capacity(custodians.len());
    let mut shares = Vec::with_capacity(custodians.len());
    for (i, ((name, key), y)) in custodians.iter().zip(ys.iter()).enumerate() {
        let index = (i + 1) as u8;
        let plain = PlainShare::new(&seal_id, name, index, *y);
        commitments.push(ShareCommitment {
            custodian: name.clone(),
            index,
            digest: commitment_digest(&seal_id, name, index, plain.y()),
        });
        let text = plain.encode();
        let age_file = age_encrypt(
            key.age_recipient().map_err(SealError::Encrypt)?,
            text.as_bytes(),
        )
        .map_err(SealError::Encrypt)?;
        shares.push(EncryptedShare {
            custodian: name.clone(),
            index,
            age_file,
        });
    }
    Ok(Sealed {
        seal_id,
        threshold,
        ciphertext,
        commitments,
        shares,
    })
}

/// Why a secret could not be unsealed.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// Fewer verified shares than the threshold.
    #[error("{have} of {need} shares; {missing} more custodian(s) must submit their share", missing = need - have)]
    NotEnoughShares {
        /// Distinct shares given.
        have: usize,
        /// The seal's threshold.
        need: usize,
    },
    /// The same share was given twice.
    #[error("share {index} was given twice")]
    DuplicateShare {
        /// The repeated share index.
        index: u8,
    },
    /// A share belongs to another seal.
    #[error("a share of seal {found} was given to unseal {expected}")]
    ForeignShare {
        /// The seal being unsealed.
        expected: String,
        /// The seal named in the share.
        found: String,
    },
    /// The stored threshold is below 2.
    #[error("threshold {threshold} is invalid; a seal needs at least 2 shares")]
    InvalidThreshold {
        /// The threshold given.
        threshold: u8,
    },
    /// The stored ciphertext is too short to be a sealed secret.
    #[error("the sealed ciphertext is malformed")]
    MalformedCiphertext,
    /// Combining the shares failed.
    #[error("combining the shares failed: {0}")]
    Combine(String),
    /// The recovered key does not open the ciphertext: the shares or the ciphertext do not belong
    /// together (wrong seal record, or shares and commitments replaced together).
    #[error("the recovered key does not decrypt the sealed secret")]
    Decrypt,
}

/// Recovers the sealed secret from at least `threshold` verified shares of `seal_id`.
pub fn unseal(
    seal_id: &str,
    ciphertext: &[u8],
    threshold: u8,
    shares: &[VerifiedShare],
) -> Result<Secret, UnsealError> {
    if threshold < 2 {
        return Err(UnsealError::InvalidThreshold { threshold });
    }
    let mut seen = HashSet::new();
    for share in shares {
        if share.seal_id() != seal_id {
            return Err(UnsealError::ForeignShare {
                expected: seal_id.to_owned(),
                found: share.seal_id().to_owned(),
            });
        }
        if !seen.insert(share.index()) {
            return Err(UnsealError::DuplicateShare {
                index: share.index(),
            });
        }
    }
    if shares.len() < usize::from(threshold) {
        return Err(UnsealError::NotEnoughShares {
            have: shares.len(),
            need: usize::from(threshold),
        });
    }
    if ciphertext.len() < NONCE_LEN + TAG_LEN {
        return Err(UnsealError::MalformedCiphertext);
    }
    let points: Vec<(u8, &[u8; SHARE_LEN])> = shares
        .iter()
        .map(|s| (s.index(), s.as_plain().y()))
        .collect();
    let data_key = shamir::combine(&points).map_err(|e| UnsealError::Combine(e.to_string()))?;
    decrypt_secret(&data_key, seal_id, ciphertext)
}

fn check_custodians(
    secret: &Secret,
    threshold: u8,
    custodians: &[(String, CustodianKey)],
) -> Result<(), SealError> {
    if secret.is_empty() {
        return Err(SealError::EmptySecret);
    }
    if custodians.len() > 255 {
        return Err(SealError::TooManyCustodians {
            count: custodians.len(),
        });
    }
    if threshold < 2 {
        return Err(SealError::ThresholdTooLow { threshold });
    }
    if usize::from(threshold) > custodians.len() {
        return Err(SealError::ThresholdTooHigh {
            threshold,
            custodians: custodians.len(),
        });
    }
    for (i, (name, key)) in custodians.iter().enumerate() {
        if !valid_custodian(name) {
            return Err(SealError::InvalidCustodianName { name: name.clone() });
        }
        for (other, other_key) in &custodians[..i] {
            if other == name {
                return Err(SealError::DuplicateCustodian { name: name.clone() });
            }
            if other_key.fingerprint() == key.fingerprint() {
                return Err(SealError::DuplicateKey {
                    first: other.clone(),
                    second: name.clone(),
                    fingerprint: key.fingerprint(),
                });
            }
        }
    }
    Ok(())
}

fn new_seal_id() -> String {
    let mut bytes = [0u8; 8];
    OsRng.fill_bytes(&mut bytes);
    let id = format!("{SEAL_ID_PREFIX}{}", hex::encode(bytes));
    debug_assert!(valid_seal_id(&id));
    id
}

fn aad(seal_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SEAL_AAD_DOMAIN.len() + 1 + seal_id.len());
    aad.extend_from_slice(SEAL_AAD_DOMAIN);
    aad.push(0);
    aad.extend_from_slice(seal_id.as_bytes());
    aad
}

fn encrypt_secret(
    data_key: &[u8; SHARE_LEN],
    seal_id: &str,
    secret: &Secret,
) -> Result<Vec<u8>, SealError> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(data_key));
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let aad = aad(seal_id);
    let body = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: secret.expose_secret(),
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Encrypt("ChaCha20-Poly1305 encryption failed".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + body.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

fn decrypt_secret(
    data_key: &[u8; SHARE_LEN],
    seal_id: &str,
    ciphertext: &[u8],
) -> Result<Secret, UnsealError> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(data_key));
    let (nonce, body) = ciphertext.split_at(NONCE_LEN);
    let aad = aad(seal_id);
    let plain = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: &aad,
            },
        )
        .map_err(|_| UnsealError::Decrypt)?;
    Ok(Secret::new(plain))
}
