//! What the HTTP channels share: the client (rustls with the ring provider, 10 s timeout, no
//! redirects), the mapping of statuses and transport errors to `ChannelError`, and scrubbing
//! of secrets from every message.

use std::error::Error as _;
use std::time::{Duration, Instant};

use breakglass_engine::ports::ChannelError;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::config::BuildError;

/// Whole-request timeout: an alert that takes longer is retried by the outbox.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// The longest part of a refusal's body kept in the error message.
const MAX_BODY_IN_ERROR: usize = 200;

/// A client for one channel.
pub(crate) fn client(channel: &str) -> Result<reqwest::Client, BuildError> {
    // reqwest's `rustls-no-provider` needs a process-wide provider; ring is the one this
    // workspace uses everywhere. Installing fails only when one is already installed, which
    // is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        // A redirect would resend the alert (and its signature) somewhere not configured.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("breakglass/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| BuildError::HttpClient {
            channel: channel.to_owned(),
            reason: chain(&e.without_url()),
        })
}

/// A successful answer.
pub(crate) struct Answer {
    /// HTTP status code.
    pub(crate) status: u16,
    /// Response body.
    pub(crate) body: Vec<u8>,
    /// Milliseconds from sending to the answer.
    pub(crate) latency_ms: i64,
}

/// POSTs `body` as JSON and maps the outcome: 2xx → `Ok`, 429/5xx/connect/timeout →
/// `Unavailable`, other statuses → `Rejected`. `secrets` are scrubbed from every message
/// (the URL is never part of one in the first place).
pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    mut headers: HeaderMap,
    secrets: &[&str],
) -> Result<Answer, ChannelError> {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let started = Instant::now();
    let response = client
        .post(url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| transport_error(e, url, secrets))?;
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport_error(e, url, secrets))?;
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    match status {
        200..=299 => Ok(Answer {
            status,
            body: bytes.to_vec(),
            latency_ms,
        }),
        429 | 500..=599 => Err(ChannelError::Unavailable(refusal(
            status, &bytes, url, secrets,
        ))),
        _ => Err(ChannelError::Rejected(refusal(
            status, &bytes, url, secrets,
        ))),
    }
}

fn refusal(status: u16, body: &[u8], url: &str, secrets: &[&str]) -> String {
    // Scrub before truncating, so a cut cannot leave the start of a secret behind.
    let body = scrub(String::from_utf8_lossy(body).into_owned(), url, secrets);
    let text: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_BODY_IN_ERROR)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {text}")
    }
}

fn transport_error(e: reqwest::Error, url: &str, secrets: &[&str]) -> ChannelError {
    let what = if e.is_timeout() {
        format!("timed out after {} s", TIMEOUT.as_secs())
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let message = format!("{what}: {}", chain(&e.without_url()));
    ChannelError::Unavailable(scrub(message, url, secrets))
}

/// The error and its sources, joined with `: `.
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Removes the URL, its path and query, and every secret from `message`: reqwest and
/// servers are free to echo them, the audit log is not.
pub(crate) fn scrub(mut message: String, url: &str, secrets: &[&str]) -> String {
    let mut needles: Vec<&str> = secrets.to_vec();
    needles.push(url);
    if let Some((_, rest)) = url.split_once("://")
        && let Some(i) = rest.find('/')
        && rest.len() > i + 1
    {
        needles.push(&rest[i..]);
    }
    for needle in needles {
        if needle.len() >= 4 && message.contains(needle) {
            message = message.replace(needle, "[redacted]");
        }
    }
    message
}

/// Makes a link absolute with the server's public URL when it is relative (`/acks/…`).
pub(crate) fn absolute(public_url: Option<&str>, link: &str) -> String {
    match public_url {
        Some(base) if link.starts_with('/') => format!("{base}{link}"),
        _ => link.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_never_keep_part_of_a_secret() {
        let secret = "SECRET-ROUTING-KEY-0123456789";
        // The secret straddles the 200-character cut.
        let body = format!("{}{secret} tail", "x".repeat(190));
        let m = refusal(
            400,
            body.as_bytes(),
            "https://h.example/p/TOKENPATH",
            &[secret],
        );
        assert!(!m.contains("SECRET-RO"), "{m}");
        let m = refusal(
            500,
            b"bad https://h.example/p/TOKENPATH",
            "https://h.example/p/TOKENPATH",
            &[],
        );
        assert_eq!(m, "HTTP 500: bad [redacted]");
        let m = refusal(
            502,
            b"upstream /p/TOKENPATH\n",
            "https://h.example/p/TOKENPATH",
            &[],
        );
        assert_eq!(m, "HTTP 502: upstream [redacted]");
        assert_eq!(refusal(503, b"", "https://h.example/", &[]), "HTTP 503");
    }

    #[test]
    fn relative_links_use_the_public_url() {
        assert_eq!(
            absolute(Some("https://bg.example"), "/acks/1"),
            "https://bg.example/acks/1"
        );
        assert_eq!(absolute(None, "/acks/1"), "/acks/1");
        assert_eq!(
            absolute(Some("https://bg.example"), "https://x/y"),
            "https://x/y"
        );
    }
}
