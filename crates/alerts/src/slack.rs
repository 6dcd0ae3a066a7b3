//! Slack incoming webhooks: a Block Kit message (header, fields, drill marker, acknowledge
//! button, links) with a plain `text` fallback for notifications.

use async_trait::async_trait;
use breakglass_engine::ports::{Alert, Channel, ChannelError, Receipt};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::config::{BuildError, SlackConfig};
use crate::http::{self, absolute};

/// Slack's limit on a header block's text.
const MAX_HEADER_CHARS: usize = 150;

/// A Slack incoming webhook. `Debug` shows no secret.
#[derive(Debug)]
pub struct SlackChannel {
    name: String,
    webhook_url: SecretString,
    public_url: Option<String>,
    client: reqwest::Client,
}

impl SlackChannel {
    /// A channel posting to the configured incoming webhook.
    pub fn new(
        name: &str,
        config: &SlackConfig,
        public_url: Option<&str>,
    ) -> Result<SlackChannel, BuildError> {
        Ok(SlackChannel {
            name: name.to_owned(),
            webhook_url: config.webhook_url.clone(),
            public_url: public_url.map(str::to_owned),
            client: http::client(name)?,
        })
    }

    /// The JSON message sent for `alert`.
    pub fn payload(&self, alert: &Alert) -> Value {
        payload(alert, self.public_url.as_deref())
    }
}

#[async_trait]
impl Channel for SlackChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "slack"
    }

    async fn send(&self, alert: &Alert) -> Result<Receipt, ChannelError> {
        let body = serde_json::to_vec(&self.payload(alert))
            .map_err(|e| ChannelError::Rejected(format!("cannot encode the message: {e}")))?;
        let url = self.webhook_url.expose_secret();
        let answer = http::post_json(&self.client, url, body, HeaderMap::new(), &[url]).await?;
        Ok(Receipt {
            status: format!("HTTP {}", answer.status),
            latency_ms: answer.latency_ms,
            remote_id: None,
        })
    }
}

/// The Block Kit message for `alert`; relative links are made absolute with `public_url`.
pub fn payload(alert: &Alert, public_url: Option<&str>) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&alert.title, MAX_HEADER_CHARS), "emoji": true},
    })];
    if alert.drill {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": ":test_tube: *DRILL* — an exercise, not a real emergency"}],
        }));
    }
    let fields: Vec<Value> = crate::shown_fields(alert)
        .iter()
        .map(|(label, value)| {
            json!({"type": "mrkdwn", "text": format!("*{label}*\n{}", truncate(&escape(value), 1900))})
        })
        .collect();
    blocks.push(json!({"type": "section", "fields": fields}));
    if let Some((label, value)) = crate::people_line(alert) {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*{label}*\n{}", truncate(&escape(&value), 2900))},
        }));
    }
    if let Some(ack) = &alert.ack_url {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "action_id": "breakglass_ack",
                "style": "primary",
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "url": absolute(public_url, ack),
            }],
        }));
    }
    let mut context: Vec<String> = alert
        .links
        .iter()
        .map(|(label, url)| format!("<{}|{}>", escape(&absolute(public_url, url)), escape(label)))
        .collect();
    if let Some(ack) = &alert.ack_url {
        context.push(format!(
            "<{}|acknowledge>",
            escape(&absolute(public_url, ack))
        ));
    }
    context.push(format!(
        "`{}` · id `{}`",
        escape(&alert.event),
        escape(&alert.id)
    ));
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": context.join(" · ")}],
    }));
    let mut text = alert.title.clone();
    if let Some(ack) = &alert.ack_url {
        text.push_str(&format!(" — acknowledge: {}", absolute(public_url, ack)));
    }
    json!({"text": escape(&text), "blocks": blocks})
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}
