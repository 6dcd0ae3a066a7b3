//! PagerDuty Events API v2: `trigger` events for a break's alerts and a `resolve` event when
//! the break ends, all with the break's `dedup_key` so they form one incident.

use async_trait::async_trait;
use breakglass_engine::ports::{Alert, Channel, ChannelError, Receipt};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use crate::config::{BuildError, PagerDutyConfig};
use crate::http::{self, absolute};

/// PagerDuty's limit on `payload.summary`.
const MAX_SUMMARY_CHARS: usize = 1024;

/// A PagerDuty service integration. `Debug` shows no secret.
#[derive(Debug)]
pub struct PagerDutyChannel {
    name: String,
    routing_key: SecretString,
    events_url: String,
    public_url: Option<String>,
    client: reqwest::Client,
}

impl PagerDutyChannel {
    /// A channel sending events with the configured routing key.
    pub fn new(
        name: &str,
        config: &PagerDutyConfig,
        public_url: Option<&str>,
    ) -> Result<PagerDutyChannel, BuildError> {
        Ok(PagerDutyChannel {
            name: name.to_owned(),
            routing_key: config.routing_key.clone(),
            events_url: config.events_url.clone(),
            public_url: public_url.map(str::to_owned),
            client: http::client(name)?,
        })
    }
}

#[async_trait]
impl Channel for PagerDutyChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    async fn send(&self, alert: &Alert) -> Result<Receipt, ChannelError> {
        let key = self.routing_key.expose_secret();
        let event = event(alert, key, self.public_url.as_deref());
        let body = serde_json::to_vec(&event)
            .map_err(|e| ChannelError::Rejected(format!("cannot encode the event: {e}")))?;
        let answer = http::post_json(
            &self.client,
            &self.events_url,
            body,
            HeaderMap::new(),
            &[key],
        )
        .await?;
        let remote_id = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| {
                v.get("dedup_key")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
        Ok(Receipt {
            status: format!("HTTP {}", answer.status),
            latency_ms: answer.latency_ms,
            remote_id,
        })
    }
}

/// The Events API v2 event for `alert`: `resolve` (no payload) when the alert ends the
/// incident, `trigger` otherwise.
pub fn event(alert: &Alert, routing_key: &str, public_url: Option<&str>) -> Value {
    if alert.resolve {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": alert.dedup_key,
        });
    }
    let mut details = Map::new();
    let mut put = |k: &str, v: Value| {
        details.insert(k.to_owned(), v);
    };
    put("alert_id", json!(alert.id));
    put("event", json!(alert.event));
    put("break_id", json!(alert.break_id));
    put("procedure", json!(alert.procedure));
    put("requester", json!(alert.requester));
    put("reason", json!(alert.reason));
    put("ticket", json!(alert.ticket));
    put("state", json!(alert.state));
    put("drill", json!(alert.drill));
    if let Some(ack) = &alert.ack_url {
        put("ack_url", json!(absolute(public_url, ack)));
    }
    put("detail", alert.detail.clone());
    if !alert.people.is_empty() {
        put(
            "people",
            json!(
                alert
                    .people
                    .iter()
                    .map(|p| json!({"name": p.name, "contact": p.contact, "role": p.role}))
                    .collect::<Vec<_>>()
            ),
        );
    }

    let mut payload = json!({
        "summary": alert.title.chars().take(MAX_SUMMARY_CHARS).collect::<String>(),
        "source": "breakglass",
        "severity": alert.severity.as_str(),
        "timestamp": alert.at.to_string(),
        "group": "breakglass",
        "class": alert.event,
        "custom_details": details,
    });
    if let (Some(procedure), Some(p)) = (&alert.procedure, payload.as_object_mut()) {
        p.insert("component".into(), json!(procedure));
    }
    let mut links: Vec<Value> = Vec::new();
    if let Some(ack) = &alert.ack_url {
        links.push(json!({"href": absolute(public_url, ack), "text": "Acknowledge"}));
    }
    links.extend(
        alert
            .links
            .iter()
            .map(|(text, href)| json!({"href": absolute(public_url, href), "text": text})),
    );
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.dedup_key,
        "payload": payload,
        "links": links,
        "client": "breakglass",
    });
    if let (Some(base), Some(e)) = (public_url, event.as_object_mut()) {
        e.insert("client_url".into(), json!(base));
    }
    event
}
