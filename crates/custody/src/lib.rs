//! Split-custody sealing: a secret is encrypted under a fresh data key, the data key is split
//! M-of-N with Shamir's scheme, and each share is committed to and age-encrypted to one custodian.
//!
//! This crate does no I/O and is not async. Secret-bearing types ([`Secret`], [`PlainShare`],
//! [`VerifiedShare`], [`Identity`]) zeroize on drop, have a redacted `Debug`, and are not
//! `Serialize`.
//!
//! # Flow
//!
//! 1. [`seal`] → [`Sealed`]: the server stores the seal id, threshold, ciphertext and commitments,
//!    and hands each custodian their [`EncryptedShare`] (a standard age file).
//! 2. A custodian opens their share with [`decrypt_share`] (or `age -d -i key share.age`, which
//!    prints exactly the [`PlainShare::encode`] text) and submits the text.
//! 3. The server parses it with [`PlainShare::decode`] and checks it with [`verify_share`].
//! 4. With `threshold` verified shares, [`unseal`] recovers the secret.
//!
//! # Formats (security-relevant; changing any of them is a new version)
//!
//! All lengths are in bytes; `u8`/`u32be` are unsigned integers, big-endian.
//!
//! ## Seal id
//!
//! `seal_` followed by 16 lowercase hex characters (8 random bytes from the OS RNG).
//!
//! ## Sealed ciphertext ([`Sealed::ciphertext`])
//!
//! ```text
//! nonce (12 random bytes) || ChaCha20-Poly1305(key = data key, nonce, plaintext = secret, aad)
//! aad = "breakglass-seal-v1" || 0x00 || seal id (ASCII)
//! ```
//!
//! The data key is 32 bytes from the OS RNG. The AAD binds the ciphertext to its seal id, so a
//! ciphertext moved to another seal record does not decrypt.
//!
//! ## Shamir split
//!
//! The data key is split byte-wise over GF(2^8) (AES field, polynomial x^8 + x^4 + x^3 + x + 1) by
//! vsss-rs `Gf256`, with threshold M and x-coordinates `1..=N`: the custodian listed at position
//! `i` (from 0) gets index `x = i + 1`. A share value `y` is the 32 polynomial evaluations at `x`,
//! one per key byte. Shares carry no integrity of their own; the commitments below provide it.
//!
//! ## Share plaintext, binary (`bg-share-v1`)
//!
//! ```text
//! magic       11   "bg-share-v1"
//! S            1   seal id length, 1..=64
//! seal id      S   ASCII [A-Za-z0-9_-]
//! C            1   custodian name length, 1..=255
//! custodian    C   UTF-8, no control characters
//! index        1   x-coordinate, 1..=255
//! L            1   share value length, exactly 32 in v1
//! y            L   share value
//! ```
//!
//! Nothing may follow `y`. Decoding rejects any other magic, length, or trailing bytes.
//!
//! ## Share text ([`PlainShare::encode`])
//!
//! Standard base64 with padding (RFC 4648 §4) of the binary form, no line breaks, no trailing
//! newline; at most 488 characters. [`PlainShare::decode`] trims surrounding whitespace and
//! rejects input over 1024 bytes.
//!
//! ## Share file ([`EncryptedShare::age_file`])
//!
//! A standard ASCII-armored age v1 file (`-----BEGIN AGE ENCRYPTED FILE-----`) whose plaintext is
//! exactly the share text. The single recipient is the custodian's key: an X25519 stanza for
//! `age1…` keys, an `ssh-ed25519` stanza for OpenSSH ed25519 keys. Any age implementation
//! (`age -d -i identity share.age`) decrypts it.
//!
//! ## Commitment ([`ShareCommitment::digest`])
//!
//! ```text
//! SHA-256( lp("breakglass-share-commitment-v1") || lp(seal id) || lp(custodian)
//!          || index (1 byte) || lp(y) )
//! lp(x) = u32be(len(x)) || x
//! ```
//!
//! [`verify_share`] recomputes it from the submitted share and compares it, together with the
//! index, in constant time.
//!
//! ## Custodian key fingerprint ([`CustodianKey::fingerprint`])
//!
//! `SHA256:` followed by unpadded standard base64 of SHA-256 of [`CustodianKey::canonical`] (the
//! `age1…` string, or `ssh-ed25519 <base64 key blob>` without comment). Note that for SSH keys
//! this differs from `ssh-keygen -l`, which hashes the key blob.
//!
//! ## Secret fingerprint ([`fingerprint_secret`])
//!
//! argon2id v0x13, m = 19456 KiB, t = 2, p = 1, 32-byte output, 16-byte random salt.
//!
//! ## Signatures ([`sign`], [`verify_signature`])
//!
//! OpenSSH SSHSIG, armored (`-----BEGIN SSH SIGNATURE-----`), SHA-512, with a caller-chosen
//! namespace; compatible with `ssh-keygen -Y sign/verify`. Only ssh-ed25519 keys sign; age keys
//! prove possession by decrypting a challenge made with [`encrypt_to`].

mod ack;
mod challenge;
mod key;
mod seal;
mod secret;
mod shamir;
mod share;
mod totp;

pub use ack::{AckTokenError, ack_token, verify_ack_token};
pub use challenge::{
    DecryptError, EncryptError, MAX_SIGNATURE_LEN, SignError, ct_eq, decrypt_with, encrypt_to,
    sign, verify_signature,
};
pub use key::{CustodianKey, Identity, KeyError, KeyKind, keygen};
pub use seal::{
    NONCE_LEN, SEAL_AAD_DOMAIN, SEAL_ID_PREFIX, SealError, Sealed, TAG_LEN, UnsealError, seal,
    unseal,
};
pub use secret::{
    FINGERPRINT_ITERATIONS, FINGERPRINT_MEMORY_KIB, FINGERPRINT_PARALLELISM, FingerprintError,
    Secret, fingerprint_secret, random_salt,
};
pub use share::{
    COMMITMENT_DOMAIN, EncryptedShare, MAX_CUSTODIAN_LEN, MAX_ENCODED_SHARE_LEN, MAX_SEAL_ID_LEN,
    MAX_SHARE_FILE_LEN, PlainShare, SHARE_LEN, SHARE_MAGIC, ShareCommitment, ShareError,
    VerifiedShare, decrypt_share, verify_share,
};

pub use totp::{
    TOTP_DIGITS, TOTP_ISSUER, TOTP_SECRET_LEN, TOTP_SKEW_STEPS, TOTP_STEP_SECONDS, TotpError,
    TotpSecret, check_totp, open_totp_secret, seal_totp_secret, totp_step,
};

/// Re-exported so callers can read the identity file text returned by [`keygen`] without
/// depending on `secrecy` themselves.
pub use secrecy::{ExposeSecret, SecretString};
