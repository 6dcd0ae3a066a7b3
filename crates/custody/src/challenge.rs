//! Authenticating custodians without an IdP: age challenges, SSH signatures, and age wrapping.

use std::io::{Read, Write};
use std::iter;

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use ssh_key::{HashAlg, LineEnding, SshSig};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::key::{CustodianKey, Identity, KeyKind};

/// The longest armored signature [`verify_signature`] reads.
pub const MAX_SIGNATURE_LEN: usize = 8 * 1024;

/// Why a plaintext could not be encrypted to a key.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    /// age refused to encrypt.
    #[error("age encryption failed: {0}")]
    Age(String),
}

/// Why an age file could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// The file was encrypted to a different key.
    #[error("this file was not encrypted to this key")]
    NotForThisKey,
    /// The file is not a valid age file, or was altered.
    #[error("could not decrypt the age file: {0}")]
    Age(String),
}

/// Why a signature could not be made or checked.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// age keys have no signature scheme.
    #[error("age keys cannot sign; answer the challenge instead")]
    AgeKeyCannotSign,
    /// The namespace is empty (SSHSIG requires one).
    #[error("the signature namespace must not be empty")]
    EmptyNamespace,
    /// The text is not an armored SSH signature (`-----BEGIN SSH SIGNATURE-----`).
    #[error("malformed signature: {0}")]
    Malformed(&'static str),
    /// The signature was made by another key.
    #[error("the signature was made with a different key")]
    WrongKey,
    /// The signature was made for another namespace.
    #[error("the signature is for namespace {found:?}, expected {expected:?}")]
    WrongNamespace {
        /// The namespace the verifier asked for.
        expected: String,
        /// The namespace in the signature.
        found: String,
    },
    /// The signature does not match the message.
    #[error("the signature does not match the message")]
    Invalid,
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Encrypts `plaintext` to `key` as an ASCII-armored age file.
///
/// Used for age-key challenges and for handing a revealed secret to a requester.
pub fn encrypt_to(key: &CustodianKey, plaintext: &[u8]) -> Result<Vec<u8>, EncryptError> {
    age_encrypt(key.age_recipient().map_err(EncryptError::Age)?, plaintext)
        .map_err(EncryptError::Age)
}

/// Decrypts an age file (armored or binary) with `identity`.
pub fn decrypt_with(
    identity: &Identity,
    age_file: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    age_decrypt(identity.age_identity(), age_file).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => DecryptError::NotForThisKey,
        other => DecryptError::Age(other.to_string()),
    })
}

/// Signs `message` under `namespace` with an ssh-ed25519 identity; returns an armored SSHSIG
/// (`-----BEGIN SSH SIGNATURE-----`, SHA-512), as `ssh-keygen -Y sign -n <namespace>` makes.
pub fn sign(identity: &Identity, namespace: &str, message: &[u8]) -> Result<String, SignError> {
    let Some(key) = identity.ssh_private() else {
        return Err(SignError::AgeKeyCannotSign);
    };
    if namespace.is_empty() {
        return Err(SignError::EmptyNamespace);
    }
    let sig = key
        .sign(namespace, HashAlg::Sha512, message)
        .map_err(|e| SignError::Sign(e.to_string()))?;
    sig.to_pem(LineEnding::LF)
        .map_err(|e| SignError::Sign(e.to_string()))
}

/// Checks an armored SSHSIG over `message` under `namespace` by `key`.
pub fn verify_signature(
    key: &CustodianKey,
    namespace: &str,
    message: &[u8],
    armored_sig: &str,
) -> Result<(), SignError> {
    let Some(public) = key.ssh_public() else {
        return Err(SignError::AgeKeyCannotSign);
    };
    debug_assert_eq!(key.kind(), KeyKind::SshEd25519);
    if namespace.is_empty() {
        return Err(SignError::EmptyNamespace);
    }
    if armored_sig.len() > MAX_SIGNATURE_LEN {
        return Err(SignError::Malformed("signature is too long"));
    }
    let sig = SshSig::from_pem(armored_sig.trim())
        .map_err(|_| SignError::Malformed("not an armored SSH signature"))?;
    if sig.public_key() != public.key_data() {
        return Err(SignError::WrongKey);
    }
    if sig.namespace() != namespace {
        return Err(SignError::WrongNamespace {
            expected: namespace.to_owned(),
            found: sig.namespace().chars().take(64).collect(),
        });
    }
    public
        .verify(namespace, message, &sig)
        .map_err(|_| SignError::Invalid)
}

/// Compares two byte strings in constant time (for equal lengths).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Encrypts to one recipient as an ASCII-armored age file.
pub(crate) fn age_encrypt(
    recipient: &dyn age::Recipient,
    plaintext: &[u8],
) -> Result<Vec<u8>, String> {
    let encryptor =
        age::Encryptor::with_recipients(iter::once(recipient)).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(plaintext.len() + 512);
    let armor =
        ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(|e| e.to_string())?;
    let mut writer = encryptor.wrap_output(armor).map_err(|e| e.to_string())?;
    writer.write_all(plaintext).map_err(|e| e.to_string())?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Decrypts an armored or binary age file with one identity.
pub(crate) fn age_decrypt(
    identity: &dyn age::Identity,
    age_file: &[u8],
) -> Result<Zeroizing<Vec<u8>>, age::DecryptError> {
    let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(age_file))?;
    let mut reader = decryptor.decrypt(iter::once(identity))?;
    let mut plaintext = Zeroizing::new(Vec::new());
    reader.read_to_end(&mut plaintext)?;
    Ok(plaintext)
}
