//! The TOTP second factor of approvals (RFC 6238 with the authenticator-app defaults: HMAC-SHA-1,
//! 6 digits, 30 s steps), through the `totp-rs` crate: the secret type, the check with ±1 step of
//! skew that refuses a step already used, and the encryption of a secret at rest under the
//! server's TOTP key.
//!
//! A code is accepted once: the caller keeps the last accepted step per custodian and passes it
//! in; [`check_totp`] refuses any step at or before it. The comparison of a code with the
//! expected one is constant-time (`totp-rs` compares tokens with `constant_time_eq`).

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use zeroize::Zeroizing;

/// Digits of a code.
pub const TOTP_DIGITS: usize = 6;
/// Seconds of one time step.
pub const TOTP_STEP_SECONDS: u64 = 30;
/// Steps before and after the current one that are also accepted (clock skew, typing time).
pub const TOTP_SKEW_STEPS: u64 = 1;
/// Bytes of a generated secret (160 bits, RFC 4226's recommendation).
pub const TOTP_SECRET_LEN: usize = 20;
/// Issuer shown by authenticator apps.
pub const TOTP_ISSUER: &str = "breakglass";
/// Domain of the associated data binding a sealed secret to its custodian.
const AAD_DOMAIN: &[u8] = b"breakglass-totp-secret-v1\0";
/// Nonce length of ChaCha20-Poly1305.
const NONCE_LEN: usize = 12;

/// Why a TOTP code or secret was refused. Messages never carry the code or the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// The code is not six digits.
    #[error("the TOTP code must be {TOTP_DIGITS} digits")]
    Malformed,
    /// No step in the accepted window has this code.
    #[error("the TOTP code is wrong (check the authenticator app and the device's clock)")]
    Wrong,
    /// The code is right, but its step was already accepted once.
    #[error(
        "the TOTP code was already used; a code is accepted once, wait for the next one (at most {TOTP_STEP_SECONDS} s)"
    )]
    Reused,
    /// The stored secret does not open with this key (another server's `totp.key`, or edited).
    #[error("the stored TOTP secret does not decrypt with this server's TOTP key")]
    Corrupt,
    /// The enrolment URI could not be built.
    #[error("cannot build the TOTP enrolment URI: {0}")]
    Uri(String),
}

/// A TOTP shared secret: zeroized on drop, no `Clone`, no `Serialize`, a redacted `Debug`.
pub struct TotpSecret(SecretSlice<u8>);

impl TotpSecret {
    /// A fresh random secret of [`TOTP_SECRET_LEN`] bytes from the OS.
    pub fn generate() -> TotpSecret {
        let mut bytes = vec![0u8; TOTP_SECRET_LEN];
        OsRng.fill_bytes(&mut bytes);
        TotpSecret(SecretSlice::from(bytes))
    }

    /// Takes `bytes` as a secret (tests and the at-rest decryption); at least 16 bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<TotpSecret, TotpError> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < 16 {
            return Err(TotpError::Corrupt);
        }
        Ok(TotpSecret(SecretSlice::from(bytes.to_vec())))
    }

    /// Reads a base32 secret as shown at enrolment (an authenticator's side; tests).
    pub fn from_base32(text: &str) -> Result<TotpSecret, TotpError> {
        let secret =
            totp_rs::Secret::try_from_base32(text.trim()).map_err(|_| TotpError::Corrupt)?;
        TotpSecret::from_bytes(AsRef::<[u8]>::as_ref(&secret).to_vec())
    }

    /// The secret in base32 (RFC 4648, no padding), as authenticator apps take it by hand.
    pub fn expose_base32(&self) -> SecretString {
        let totp = self.totp(0, "");
        SecretString::from(totp.secret().to_base32())
    }

    /// The `otpauth://totp/breakglass:ACCOUNT?secret=…&issuer=breakglass` URI apps scan.
    pub fn expose_otpauth_uri(&self, account: &str) -> Result<SecretString, TotpError> {
        // An account name may not hold `:` (it separates the issuer).
        let account: String = account
            .chars()
            .map(|c| if c == ':' { '_' } else { c })
            .collect();
        let totp = self.totp(0, &account);
        totp.to_url()
            .map(SecretString::from)
            .map_err(|e| TotpError::Uri(e.to_string()))
    }

    /// The code of the step holding `unix_seconds` (tests, and a drill's own authenticator).
    pub fn expose_code_at(&self, unix_seconds: u64) -> Zeroizing<String> {
        Zeroizing::new(self.totp(0, "").generate(unix_seconds).to_string())
    }

    fn totp(&self, skew: u16, account: &str) -> totp_rs::Totp {
        totp_rs::Builder::new()
            .with_algorithm(totp_rs::Algorithm::SHA1)
            .with_digits(TOTP_DIGITS as u8)
            .with_step_duration(TOTP_STEP_SECONDS)
            .with_skew(skew)
            .with_secret(self.0.expose_secret().to_vec())
            .with_issuer(Some(TOTP_ISSUER))
            .with_account_name(account)
            // The parameters above are the RFC's and the secret is at least 128 bits, which
            // is all `build` checks; the non-checking form needs no error path for it.
            .build_noncompliant()
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret([REDACTED])")
    }
}

/// The step (Unix seconds / 30) holding `unix_seconds`.
pub fn totp_step(unix_seconds: u64) -> u64 {
    unix_seconds / TOTP_STEP_SECONDS
}

/// Checks `code` at `unix_seconds` with ±[`TOTP_SKEW_STEPS`] of skew, refusing a step at or
/// before `last_step` (the custodian's last accepted one). Returns the step to store as the new
/// last accepted step. Spaces in the code are ignored (`123 456`).
pub fn check_totp(
    secret: &TotpSecret,
    code: &str,
    unix_seconds: u64,
    last_step: Option<u64>,
) -> Result<u64, TotpError> {
    let code: Zeroizing<String> = Zeroizing::new(code.chars().filter(|c| *c != ' ').collect());
    if code.len() != TOTP_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TotpError::Malformed);
    }
    // Each step of the window is checked on its own (skew 0), so a code matching an already
    // used step and, by chance, a fresh one is still judged by the fresh one.
    let totp = secret.totp(0, "");
    let origin = totp_step(unix_seconds);
    let mut matched = Vec::new();
    for step in origin.saturating_sub(TOTP_SKEW_STEPS)..=origin + TOTP_SKEW_STEPS {
        if totp.check(&code, step * TOTP_STEP_SECONDS).is_some() {
            matched.push(step);
        }
    }
    if matched.is_empty() {
        return Err(TotpError::Wrong);
    }
    matched
        .into_iter()
        .filter(|s| last_step.is_none_or(|last| *s > last))
        .max()
        .ok_or(TotpError::Reused)
}

/// Encrypts a secret for storage: `nonce (12) || ChaCha20-Poly1305(secret)` under the server's
/// 32-byte TOTP key, bound to `custodian` (a row copied to another custodian does not open).
pub fn seal_totp_secret(key: &[u8; 32], custodian: &str, secret: &TotpSecret) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let aad = aad(custodian);
    let body = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: secret.0.expose_secret(),
                aad: &aad,
            },
        )
        // ChaCha20-Poly1305 fails only for messages over 256 GiB.
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + body.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    out
}

/// Opens what [`seal_totp_secret`] made.
pub fn open_totp_secret(
    key: &[u8; 32],
    custodian: &str,
    sealed: &[u8],
) -> Result<TotpSecret, TotpError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(TotpError::Corrupt);
    }
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let aad = aad(custodian);
    let plain = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: &aad,
            },
        )
        .map_err(|_| TotpError::Corrupt)?;
    TotpSecret::from_bytes(plain)
}

fn aad(custodian: &str) -> Vec<u8> {
    let mut aad = AAD_DOMAIN.to_vec();
    aad.extend_from_slice(custodian.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// RFC 6238 appendix B's SHA-1 secret ("12345678901234567890").
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap()
    }

    #[test]
    fn rfc_6238_vectors() {
        // Appendix B gives 8 digits; the 6-digit codes are their last six.
        let s = rfc_secret();
        for (t, code8) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(*s.expose_code_at(t), code8[2..], "at {t}");
        }
    }

    #[test]
    fn accepts_the_current_and_adjacent_steps_once() {
        let s = rfc_secret();
        let t = 1_800_000_000;
        let now = totp_step(t);
        assert_eq!(check_totp(&s, &s.expose_code_at(t), t, None), Ok(now));
        // The previous and next steps (clock skew) are accepted too.
        let prev = s.expose_code_at(t - 30);
        assert_eq!(check_totp(&s, &prev, t, None), Ok(now - 1));
        let next = s.expose_code_at(t + 30);
        assert_eq!(check_totp(&s, &next, t, None), Ok(now + 1));
        // Two steps away is wrong.
        let far = s.expose_code_at(t - 60);
        assert_eq!(check_totp(&s, &far, t, None), Err(TotpError::Wrong));
        // A code is never accepted twice: its step, or an earlier one, is refused as reused.
        let code = s.expose_code_at(t);
        assert_eq!(check_totp(&s, &code, t, Some(now)), Err(TotpError::Reused));
        assert_eq!(
            check_totp(&s, &code, t + 20, Some(now)),
            Err(TotpError::Reused)
        );
        assert_eq!(check_totp(&s, &prev, t, Some(now)), Err(TotpError::Reused));
        // The next step's code is still fresh after this one.
        assert_eq!(check_totp(&s, &next, t, Some(now)), Ok(now + 1));
        // After the next step was used, the current one is refused too (never go back).
        assert_eq!(
            check_totp(&s, &code, t, Some(now + 1)),
            Err(TotpError::Reused)
        );
    }

    #[test]
    fn refuses_malformed_codes_without_echoing_them() {
        let s = rfc_secret();
        for bad in ["", "12345", "1234567", "12a456", "+12345", "١٢٣٤٥٦"] {
            let e = check_totp(&s, bad, 1_800_000_000, None).unwrap_err();
            assert_eq!(e, TotpError::Malformed, "{bad:?}");
        }
        let e = check_totp(&s, "000000", 1_800_000_000, None).unwrap_err();
        assert!(!e.to_string().contains("000000"));
        // Spaces are ignored.
        let code = s.expose_code_at(1_800_000_000);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert!(check_totp(&s, &spaced, 1_800_000_000, None).is_ok());
    }

    #[test]
    fn uri_and_base32() {
        let s = rfc_secret();
        assert_eq!(
            s.expose_base32().expose_secret(),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        let uri = s.expose_otpauth_uri("ali:ce").unwrap();
        assert_eq!(
            uri.expose_secret(),
            "otpauth://totp/breakglass:ali_ce?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=breakglass"
        );
        assert_eq!(format!("{s:?}"), "TotpSecret([REDACTED])");
        let back = TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        assert_eq!(*back.expose_code_at(59), *s.expose_code_at(59));
    }

    #[test]
    fn sealed_at_rest_bound_to_key_and_custodian() {
        let key = [7u8; 32];
        let s = TotpSecret::generate();
        let sealed = seal_totp_secret(&key, "alice", &s);
        assert!(
            !sealed
                .windows(TOTP_SECRET_LEN)
                .any(|w| w == s.0.expose_secret())
        );
        let opened = open_totp_secret(&key, "alice", &sealed).unwrap();
        assert_eq!(opened.0.expose_secret(), s.0.expose_secret());
        assert_eq!(
            open_totp_secret(&key, "bob", &sealed).unwrap_err(),
            TotpError::Corrupt
        );
        assert_eq!(
            open_totp_secret(&[8u8; 32], "alice", &sealed).unwrap_err(),
            TotpError::Corrupt
        );
        assert_eq!(
            open_totp_secret(&key, "alice", &sealed[..20]).unwrap_err(),
            TotpError::Corrupt
        );
        let mut flipped = sealed.clone();
        flipped[15] ^= 1;
        assert!(open_totp_secret(&key, "alice", &flipped).is_err());
    }
}
