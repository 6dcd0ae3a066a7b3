//! Generic JSON webhooks signed with HMAC-SHA256, and the reference check a receiver runs
//! (`verify_signature`): signature over `"<timestamp>.<body>"`, a tolerance window against
//! replays, and the alert id as idempotency key.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use breakglass_engine::ports::{Alert, Channel, ChannelError, Clock, Receipt};
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::{BuildError, WebhookConfig};
use crate::http::{self, absolute};

/// Header carrying the alert id.
pub const HEADER_ID: &str = "x-breakglass-id";
/// Header carrying the signing time, in Unix seconds.
pub const HEADER_TIMESTAMP: &str = "x-breakglass-timestamp";
/// Header carrying the signature, `v1=<hex HMAC-SHA256>`.
pub const HEADER_SIGNATURE: &str = "x-breakglass-signature";
/// Standard idempotency header, equal to the alert id.
pub const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The tolerance window receivers should use, in seconds (5 minutes).
pub const DEFAULT_TOLERANCE_S: i64 = 300;

/// A signed generic webhook. `Debug` shows neither the URL nor the secret.
pub struct WebhookChannel {
    name: String,
    url: SecretString,
    secret: SecretString,
    public_url: Option<String>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
}

impl fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookChannel")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &self.secret)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl WebhookChannel {
    /// A channel posting to the configured URL, signing with the configured secret and
    /// timestamps from `clock`.
    pub fn new(
        name: &str,
        config: &WebhookConfig,
        public_url: Option<&str>,
        clock: Arc<dyn Clock>,
    ) -> Result<WebhookChannel, BuildError> {
        Ok(WebhookChannel {
            name: name.to_owned(),
            url: config.url.clone(),
            secret: config.secret.clone(),
            public_url: public_url.map(str::to_owned),
            clock,
            client: http::client(name)?,
        })
    }
}

#[async_trait]
impl Channel for WebhookChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, alert: &Alert) -> Result<Receipt, ChannelError> {
        let body = serde_json::to_vec(&body(alert, self.public_url.as_deref()))
            .map_err(|e| ChannelError::Rejected(format!("cannot encode the body: {e}")))?;
        let timestamp = self.clock.now().millis().div_euclid(1000).to_string();
        let secret = self.secret.expose_secret();
        let signature = sign(secret.as_bytes(), &timestamp, &body);
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| {
            // Ids come from the outbox (`bg-<n>`); one that is not a valid header value is a bug
            // upstream, reported as a refusal rather than a panic.
            let value = HeaderValue::from_str(value).map_err(|_| {
                ChannelError::Rejected(format!("`{name}` is not a valid header value"))
            })?;
            headers.insert(HeaderName::from_static(name), value);
            Ok::<(), ChannelError>(())
        };
        put(HEADER_ID, &alert.id)?;
        put(HEADER_TIMESTAMP, &timestamp)?;
        put(HEADER_SIGNATURE, &signature)?;
        put(HEADER_IDEMPOTENCY_KEY, &alert.id)?;
        let url = self.url.expose_secret();
        let answer = http::post_json(&self.client, url, body, headers, &[url, secret]).await?;
        Ok(Receipt {
            status: format!("HTTP {}", answer.status),
            latency_ms: answer.latency_ms,
            remote_id: None,
        })
    }
}

/// The JSON body for `alert`: every field of the alert, `id` being the idempotency key.
pub fn body(alert: &Alert, public_url: Option<&str>) -> Value {
    json!({
        "id": alert.id,
        "event": alert.event,
        "title": alert.title,
        "procedure": alert.procedure,
        "break_id": alert.break_id,
        "requester": alert.requester,
        "reason": alert.reason,
        "ticket": alert.ticket,
        "state": alert.state,
        "at": alert.at.to_string(),
        "at_ms": alert.at.millis(),
        "drill": alert.drill,
        "severity": alert.severity.as_str(),
        "resolve": alert.resolve,
        "dedup_key": alert.dedup_key,
        "ack_url": alert.ack_url.as_deref().map(|u| absolute(public_url, u)),
        "links": alert.links.iter().map(|(label, url)| json!({"label": label, "url": absolute(public_url, url)})).collect::<Vec<_>>(),
        "detail": alert.detail,
        "people": alert.people.iter().map(|p| json!({"name": p.name, "contact": p.contact, "role": p.role})).collect::<Vec<_>>(),
    })
}

/// The `X-Breakglass-Signature` value for a body sent at `timestamp` (Unix seconds, as sent
/// in `X-Breakglass-Timestamp`): `v1=` and the hex HMAC-SHA256 of `"<timestamp>.<body>"`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Why a webhook request is not authentic or not fresh.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The timestamp header is not a whole number of seconds.
    #[error("the timestamp is not a number of seconds")]
    MalformedTimestamp,
    /// The signature header holds no `v1=<64 hex digits>` entry.
    #[error("the signature header holds no v1 signature")]
    MalformedSignature,
    /// The timestamp is further from now than the tolerance: a replay or a badly wrong clock.
    #[error("the timestamp is {age_s} s from now, outside the {tolerance_s} s tolerance")]
    OutsideTolerance {
        /// Seconds between now and the timestamp (negative: in the future).
        age_s: i64,
        /// The tolerance used.
        tolerance_s: i64,
    },
    /// No signature matches: wrong secret, or the body or timestamp was changed.
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks a received webhook the way a receiver should: `timestamp` within `tolerance_s` of
/// `now_unix` (either direction), then one of the `v1=` signatures in `header` (comma
/// separated, so a sender may sign with an old and a new secret during rotation) equal to
/// HMAC-SHA256(`secret`, `"<timestamp>.<body>"`), compared in constant time. Receivers also
/// remember the `X-Breakglass-Id` values seen within the window and drop repeats.
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    header: &str,
    now_unix: i64,
    tolerance_s: i64,
) -> Result<(), SignatureError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::MalformedTimestamp)?;
    let age_s = now_unix.saturating_sub(ts);
    if age_s.saturating_abs() > tolerance_s {
        return Err(SignatureError::OutsideTolerance { age_s, tolerance_s });
    }
    let candidates: Vec<Vec<u8>> = header
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("v1="))
        .filter_map(|h| hex::decode(h.trim()).ok())
        .filter(|sig| sig.len() == 32)
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::MalformedSignature);
    }
    let expected = mac(secret, timestamp.trim(), body);
    // Every candidate is checked, so the time taken does not tell which one matched.
    let mut matched = false;
    for sig in &candidates {
        matched |= expected.clone().verify_slice(sig).is_ok();
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of docs/alerts.md; if this changes, the doc must too.
    #[test]
    fn documented_example() {
        let secret = b"whsec_example";
        let timestamp = "1795910341";
        let body = br#"{"id":"bg-42","event":"break.requested"}"#;
        let sig = sign(secret, timestamp, body);
        assert_eq!(sig, DOC_SIGNATURE);
        let doc = include_str!("../../../docs/alerts.md");
        assert!(
            doc.contains(DOC_SIGNATURE),
            "docs/alerts.md shows another signature"
        );
        assert_eq!(
            verify_signature(secret, timestamp, body, &sig, 1_795_910_341 + 10, 300),
            Ok(())
        );
    }

    const DOC_SIGNATURE: &str =
        "v1=b4b9a2497704dbfd4afe72697fa887c9f45ea532df55aad0a3a5d4318552aef4";

    #[test]
    fn rejects_outside_window_tampering_and_garbage() {
        let secret = b"k";
        let sig = sign(secret, "1000", b"{}");
        assert_eq!(
            verify_signature(secret, "1000", b"{}", &sig, 1301, 300),
            Err(SignatureError::OutsideTolerance {
                age_s: 301,
                tolerance_s: 300
            })
        );
        assert!(matches!(
            verify_signature(secret, "1000", b"{}", &sig, 699, 300),
            Err(SignatureError::OutsideTolerance { .. })
        ));
        assert_eq!(
            verify_signature(secret, "1000", b"{ }", &sig, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(secret, "1001", b"{}", &sig, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(secret, "x", b"{}", &sig, 1000, 300),
            Err(SignatureError::MalformedTimestamp)
        );
        assert_eq!(
            verify_signature(secret, "1000", b"{}", "sha256=00", 1000, 300),
            Err(SignatureError::MalformedSignature)
        );
        let rotated = format!("v1={},{sig}", "0".repeat(64));
        assert_eq!(
            verify_signature(secret, "1000", b"{}", &rotated, 1000, 300),
            Ok(())
        );
    }
}
