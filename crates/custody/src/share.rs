//! Shares: the `bg-share-v1` plaintext encoding, commitments, and custodian/server-side checks.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::challenge::age_decrypt;
use crate::key::Identity;

/// Magic bytes that open every share plaintext.
pub const SHARE_MAGIC: &[u8; 11] = b"bg-share-v1";
/// Domain separator of the share commitment digest.
pub const COMMITMENT_DOMAIN: &[u8] = b"breakglass-share-commitment-v1";
/// Length of the data key, and so of every share's y-values, in bytes.
pub const SHARE_LEN: usize = 32;
/// The longest seal id a share may carry.
pub const MAX_SEAL_ID_LEN: usize = 64;
/// The longest custodian name (in UTF-8 bytes) a share may carry.
pub const MAX_CUSTODIAN_LEN: usize = 255;
/// The longest text [`PlainShare::decode`] looks at; longer input is rejected unread.
pub const MAX_ENCODED_SHARE_LEN: usize = 1024;
/// The longest age file [`decrypt_share`] accepts.
pub const MAX_SHARE_FILE_LEN: usize = 16 * 1024;

/// What is wrong with a share.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// The share belongs to another seal (an old share, or one for another procedure).
    #[error(
        "this share belongs to seal {found}, not {expected}; submit the share of the current seal"
    )]
    ForeignSeal {
        /// The seal the share was expected for.
        expected: String,
        /// The seal named inside the share.
        found: String,
    },
    /// The share is another custodian's share.
    #[error(
        "this is {found}'s share, but it was submitted by {expected}; each custodian submits their own share"
    )]
    WrongCustodian {
        /// The custodian who submitted the share.
        expected: String,
        /// The custodian named inside the share.
        found: String,
    },
    /// The submitting custodian holds no share of this seal.
    #[error("{custodian} holds no share of this seal")]
    UnknownCustodian {
        /// The custodian who submitted the share.
        custodian: String,
    },
    /// The share does not match its commitment: it was altered or damaged.
    #[error(
        "{custodian}'s share does not match its commitment; it is corrupted or was tampered with"
    )]
    Corrupted {
        /// The custodian named inside the share.
        custodian: String,
    },
    /// The share text or file is not a well-formed share.
    #[error("malformed share: {0}")]
    Malformed(&'static str),
    /// The share file was encrypted to a different key than the given identity.
    #[error(
        "this share file was not encrypted to this key; use the identity of the custodian it was sent to"
    )]
    NotForThisKey,
    /// The age file could not be decrypted.
    #[error("could not decrypt the share file: {0}")]
    Decrypt(String),
}

/// A public commitment to one custodian's share: SHA-256 over the share (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareCommitment {
    /// The custodian holding the share.
    pub custodian: String,
    /// The share index (Shamir x-coordinate), 1..=255.
    pub index: u8,
    /// The commitment digest.
    pub digest: [u8; 32],
}

impl ShareCommitment {
    /// The digest as 64 lowercase hex characters.
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }

    /// Builds a commitment from a stored hex digest.
    pub fn from_hex(
        custodian: impl Into<String>,
        index: u8,
        digest_hex: &str,
    ) -> Result<Self, ShareError> {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(digest_hex.trim(), &mut digest)
            .map_err(|_| ShareError::Malformed("commitment digest is not 64 hex characters"))?;
        Ok(Self {
            custodian: custodian.into(),
            index,
            digest,
        })
    }
}

/// One custodian's share, age-encrypted to their key. Not a secret: only the custodian can open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedShare {
    /// The custodian the share is for.
    pub custodian: String,
    /// The share index (Shamir x-coordinate), 1..=255.
    pub index: u8,
    /// A standard ASCII-armored age file (`-----BEGIN AGE ENCRYPTED FILE-----`).
    pub age_file: Vec<u8>,
}

/// A decrypted share as the custodian holds it; zeroized on drop, redacted in `Debug`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct PlainShare {
    seal_id: String,
    custodian: String,
    index: u8,
    y: [u8; SHARE_LEN],
}

impl PlainShare {
    pub(crate) fn new(seal_id: &str, custodian: &str, index: u8, y: [u8; SHARE_LEN]) -> Self {
        Self {
            seal_id: seal_id.to_owned(),
            custodian: custodian.to_owned(),
            index,
            y,
        }
    }

    /// The seal this share belongs to.
    pub fn seal_id(&self) -> &str {
        &self.seal_id
    }

    /// The custodian this share was made for.
    pub fn custodian(&self) -> &str {
        &self.custodian
    }

    /// The share index (Shamir x-coordinate).
    pub fn index(&self) -> u8 {
        self.index
    }

    pub(crate) fn y(&self) -> &[u8; SHARE_LEN] {
        &self.y
    }

    /// The text form: standard padded base64 of the binary encoding, without a newline.
    ///
    /// This is also exactly the plaintext of the share's age file, so `age -d` prints what a
    /// custodian submits.
    pub fn encode(&self) -> Zeroizing<String> {
        let bytes = self.to_bytes();
        Zeroizing::new(STANDARD.encode(bytes.as_slice()))
    }

    /// Parses the text form; the input is untrusted and never echoed in errors.
    ///
    /// Surrounding whitespace is ignored; inputs over [`MAX_ENCODED_SHARE_LEN`] are rejected.
    pub fn decode(text: &str) -> Result<PlainShare, ShareError> {
        if text.len() > MAX_ENCODED_SHARE_LEN {
            return Err(ShareError::Malformed("share text is too long"));
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(ShareError::Malformed("share text is empty"));
        }
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text)
                .map_err(|_| ShareError::Malformed("share text is not base64"))?,
        );
        Self::from_bytes(&bytes)
    }

    pub(crate) fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            SHARE_MAGIC.len() + 4 + self.seal_id.len() + self.custodian.len() + SHARE_LEN,
        ));
        out.extend_from_slice(SHARE_MAGIC);
        // Lengths were checked when the share was built or decoded, so they fit in a byte.
        out.push(self.seal_id.len() as u8);
        out.extend_from_slice(self.seal_id.as_bytes());
        out.push(self.custodian.len() as u8);
        out.extend_from_slice(self.custodian.as_bytes());
        out.push(self.index);
        out.push(SHARE_LEN as u8);
        out.extend_from_slice(&self.y);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<PlainShare, ShareError> {
        let mut r = Reader(bytes);
        if r.take(SHARE_MAGIC.len())? != SHARE_MAGIC {
            return Err(ShareError::Malformed("not a bg-share-v1 share"));
        }
        let seal_len = usize::from(r.byte()?);
        let seal_id = std::str::from_utf8(r.take(seal_len)?)
            .map_err(|_| ShareError::Malformed("seal id is not UTF-8"))?;
        if !valid_seal_id(seal_id) {
            return Err(ShareError::Malformed("invalid seal id"));
        }
        let name_len = usize::from(r.byte()?);
        let custodian = std::str::from_utf8(r.take(name_len)?)
            .map_err(|_| ShareError::Malformed("custodian name is not UTF-8"))?;
        if !valid_custodian(custodian) {
            return Err(ShareError::Malformed("invalid custodian name"));
        }
        let index = r.byte()?;
        if index == 0 {
            return Err(ShareError::Malformed("share index 0 is not allowed"));
        }
        if usize::from(r.byte()?) != SHARE_LEN {
            return Err(ShareError::Malformed("share value has the wrong length"));
        }
        let mut y = [0u8; SHARE_LEN];
        y.copy_from_slice(r.take(SHARE_LEN)?);
        if !r.0.is_empty() {
            y.zeroize();
            return Err(ShareError::Malformed("trailing bytes after the share"));
        }
        let share = PlainShare::new(seal_id, custodian, index, y);
        y.zeroize();
        Ok(share)
    }
}

impl fmt::Debug for PlainShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainShare")
            .field("seal_id", &self.seal_id)
            .field("custodian", &self.custodian)
            .field("index", &self.index)
            .field("share", &"[REDACTED]")
            .finish()
    }
}

/// A share that matched its commitment; only [`verify_share`] makes one.
pub struct VerifiedShare(PlainShare);

impl VerifiedShare {
    /// The seal this share belongs to.
    pub fn seal_id(&self) -> &str {
        self.0.seal_id()
    }

    /// The custodian who holds this share.
    pub fn custodian(&self) -> &str {
        self.0.custodian()
    }

    /// The share index (Shamir x-coordinate).
    pub fn index(&self) -> u8 {
        self.0.index()
    }

    /// The underlying share, e.g. to [`PlainShare::encode`] it for storage until the threshold is met
    /// (it must be verified again when loaded).
    pub fn as_plain(&self) -> &PlainShare {
        &self.0
    }

    /// Gives back the underlying share.
    pub fn into_plain(self) -> PlainShare {
        self.0
    }
}

impl fmt::Debug for VerifiedShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VerifiedShare").field(&self.0).finish()
    }
}

/// Custodian side: opens an age share file with the custodian's identity.
pub fn decrypt_share(age_file: &[u8], identity: &Identity) -> Result<PlainShare, ShareError> {
    if age_file.len() > MAX_SHARE_FILE_LEN {
        return Err(ShareError::Malformed("share file is too large"));
    }
    let plaintext = age_decrypt(identity.age_identity(), age_file).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => ShareError::NotForThisKey,
        other => ShareError::Decrypt(other.to_string()),
    })?;
    let text = std::str::from_utf8(&plaintext)
        .map_err(|_| ShareError::Malformed("share plaintext is not text"))?;
    PlainShare::decode(text)
}

/// Server side: checks that `share`, submitted by `custodian` for `seal_id`, matches its commitment.
///
/// Checks, in order: the seal id ([`ShareError::ForeignSeal`]), that `custodian` holds a share
/// ([`ShareError::UnknownCustodian`]), that the share is `custodian`'s own
/// ([`ShareError::WrongCustodian`]), and the digest in constant time ([`ShareError::Corrupted`]).
pub fn verify_share(
    share: PlainShare,
    seal_id: &str,
    custodian: &str,
    commitments: &[ShareCommitment],
) -> Result<VerifiedShare, ShareError> {
    if share.seal_id != seal_id {
        return Err(ShareError::ForeignSeal {
            expected: seal_id.to_owned(),
            found: share.seal_id.clone(),
        });
    }
    let commitment = commitments
        .iter()
        .find(|c| c.custodian == custodian)
        .ok_or_else(|| ShareError::UnknownCustodian {
            custodian: custodian.to_owned(),
        })?;
    if share.custodian != custodian {
        return Err(ShareError::WrongCustodian {
            expected: custodian.to_owned(),
            found: share.custodian.clone(),
        });
    }
    let digest = commitment_digest(&share.seal_id, &share.custodian, share.index, &share.y);
    let same_index = share.index.ct_eq(&commitment.index);
    let same_digest = digest.ct_eq(&commitment.digest);
    if !bool::from(same_index & same_digest) {
        return Err(ShareError::Corrupted {
            custodian: custodian.to_owned(),
        });
    }
    Ok(VerifiedShare(share))
}

/// The commitment digest of one share (see the crate docs for the exact encoding).
pub(crate) fn commitment_digest(seal_id: &str, custodian: &str, index: u8, y: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [COMMITMENT_DOMAIN, seal_id.as_bytes(), custodian.as_bytes()] {
        hasher.update((part.len() as u32).to_be_bytes());
        hasher.update(part);
    }
    hasher.update([index]);
    hasher.update((y.len() as u32).to_be_bytes());
    hasher.update(y);
    hasher.finalize().into()
}

/// Whether `id` is a seal id a share may carry: 1..=64 ASCII letters, digits, `_` or `-`.
pub(crate) fn valid_seal_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SEAL_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `name` is a custodian name a share may carry: 1..=255 UTF-8 bytes, no control characters.
pub(crate) fn valid_custodian(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_CUSTODIAN_LEN && !name.chars().any(char::is_control)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ShareError> {
        if self.0.len() < n {
            return Err(ShareError::Malformed("share is truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, ShareError> {
        Ok(self.take(1)?[0])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> PlainShare {
        PlainShare::new("seal_0123456789abcdef", "alice", 3, [0xA5; SHARE_LEN])
    }

    #[test]
    fn encode_decode_round_trip() {
        let share = sample();
        let text = share.encode();
        let back = PlainShare::decode(&format!(" {}\n", text.as_str())).unwrap();
        assert_eq!(back.seal_id(), "seal_0123456789abcdef");
        assert_eq!(back.custodian(), "alice");
        assert_eq!(back.index(), 3);
        assert_eq!(back.y(), &[0xA5; SHARE_LEN]);
    }

    #[test]
    fn binary_layout_is_as_documented() {
        let bytes = sample().to_bytes();
        let mut expected = b"bg-share-v1".to_vec();
        expected.push(21);
        expected.extend_from_slice(b"seal_0123456789abcdef");
        expected.push(5);
        expected.extend_from_slice(b"alice");
        expected.push(3);
        expected.push(32);
        expected.extend_from_slice(&[0xA5; 32]);
        assert_eq!(bytes.as_slice(), expected.as_slice());
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        let bytes = sample().to_bytes();
        for n in 0..bytes.len() {
            let text = STANDARD.encode(&bytes[..n]);
            assert!(
                matches!(PlainShare::decode(&text), Err(ShareError::Malformed(_))),
                "truncation to {n} bytes accepted"
            );
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(
            PlainShare::decode(&STANDARD.encode(&longer)).unwrap_err(),
            ShareError::Malformed("trailing bytes after the share")
        );
    }

    #[test]
    fn garbage_is_rejected_without_panic() {
        for text in ["", "   ", "!!!!", "AAAA", "bg-share-v1", &"A".repeat(5000)] {
            assert!(matches!(
                PlainShare::decode(text),
                Err(ShareError::Malformed(_))
            ));
        }
        // Every single-byte change to a field's length or content either fails to decode or
        // decodes to a share that is caught by the commitment check; neither panics.
        let bytes = sample().to_bytes();
        for i in 0..bytes.len() {
            for v in [0u8, 1, 0x1f, 0x7f, 0xff] {
                let mut b = bytes.to_vec();
                b[i] = v;
                let _ = PlainShare::decode(&STANDARD.encode(&b));
            }
        }
        // Pseudo-random inputs behind a valid magic.
        let mut state = 0x1234_5678_u32;
        for _ in 0..2000 {
            let mut b = SHARE_MAGIC.to_vec();
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = (state >> 16) as usize % 120;
            for _ in 0..len {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                b.push((state >> 16) as u8);
            }
            let _ = PlainShare::decode(&STANDARD.encode(&b));
        }
    }

    #[test]
    fn debug_is_redacted() {
        let share = sample();
        let shown = format!("{share:?}");
        assert!(shown.contains("REDACTED"));
        assert!(!shown.to_lowercase().contains("a5"));
        assert!(!shown.contains("165"));
    }

    #[test]
    fn commitment_hex_round_trip() {
        let c = ShareCommitment {
            custodian: "alice".into(),
            index: 1,
            digest: [0xAB; 32],
        };
        assert_eq!(c.digest_hex(), "ab".repeat(32));
        assert_eq!(
            ShareCommitment::from_hex("alice", 1, &c.digest_hex()).unwrap(),
            c
        );
        assert!(ShareCommitment::from_hex("alice", 1, "abc").is_err());
    }
}
