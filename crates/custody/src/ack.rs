//! Acknowledgement tokens: the capability in an alert's "acknowledge" link. A token is
//! `<break id>.<hex HMAC-SHA256(ack key, "breakglass-ack-v1:" + break id)>`, so the server can
//! check it without storing it, and nobody without the server's ack key can forge one. The
//! server records the first use, which makes each token single-use.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why an acknowledgement token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckTokenError {
    /// Not of the form `<break id>.<64 hex digits>`.
    #[error("not an acknowledgement token")]
    Malformed,
    /// The signature does not match.
    #[error("acknowledgement token is not valid")]
    Invalid,
}

fn mac(key: &[u8; 32], break_id: &str) -> Hmac<Sha256> {
    #[allow(clippy::expect_used)] // HMAC takes keys of any length; this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(b"breakglass-ack-v1:");
    m.update(break_id.as_bytes());
    m
}

/// The token acknowledging `break_id`.
pub fn ack_token(key: &[u8; 32], break_id: &str) -> String {
    format!(
        "{break_id}.{}",
        hex::encode(mac(key, break_id).finalize().into_bytes())
    )
}

/// Checks a token (untrusted input) and returns the break it acknowledges.
pub fn verify_ack_token(key: &[u8; 32], token: &str) -> Result<String, AckTokenError> {
    let token = token.trim();
    if token.len() > 256 {
        return Err(AckTokenError::Malformed);
    }
    let (break_id, sig) = token.rsplit_once('.').ok_or(AckTokenError::Malformed)?;
    if break_id.is_empty() || sig.len() != 64 {
        return Err(AckTokenError::Malformed);
    }
    let sig = hex::decode(sig).map_err(|_| AckTokenError::Malformed)?;
    mac(key, break_id)
        .verify_slice(&sig)
        .map_err(|_| AckTokenError::Invalid)?;
    Ok(break_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let key = [7u8; 32];
        let t = ack_token(&key, "brk_0123456789abcdef");
        assert_eq!(
            verify_ack_token(&key, &t),
            Ok("brk_0123456789abcdef".into())
        );
        assert_eq!(
            verify_ack_token(&[8u8; 32], &t),
            Err(AckTokenError::Invalid)
        );
        let other = t.replace("brk_0123456789abcdef", "brk_ffffffffffffffff");
        assert_eq!(verify_ack_token(&key, &other), Err(AckTokenError::Invalid));
        for bad in ["", ".", "x.y", "brk.zz", &"a".repeat(300)] {
            assert!(verify_ack_token(&key, bad).is_err(), "{bad}");
        }
    }
}
