//! Alerts that prove they arrived: delivery of the outbox to alert channels (in order per
//! channel, exponential backoff with jitter, an idempotency key per delivery, every attempt
//! recorded, the first success written to the audit log as a receipt), acknowledgement links
//! (single-use, HMAC-signed), escalation when nobody acknowledged in time, and channel tests.

use std::time::Instant;

use breakglass_domain::{Action, Actor, Break, Timestamp};
use serde_json::{Value, json};

use crate::LEASE_ALERTS;
use crate::events::Record;
use crate::ports::{
    AckState, Alert, AttemptRecord, ChannelError, ChannelTest, DeliveryAttempt, OnTheHook,
    OutboxRow, Severity,
};
use crate::{Engine, EngineError};

/// Result of acknowledging.
#[derive(Debug, Clone)]
pub struct Acknowledged {
    /// Break.
    pub break_id: String,
    /// Procedure.
    pub procedure: String,
    /// Milliseconds from the request to the acknowledgement.
    pub time_to_ack_ms: i64,
}

/// A channel as the API lists it.
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: &'static str,
    /// Undelivered alerts.
    pub pending: i64,
    /// Latest test.
    pub last_test: Option<ChannelTest>,
}

impl Engine {
    /// Resolves when a commit queued alerts, so the delivery worker sends them at once
    /// instead of at its next tick.
    pub async fn alerts_queued(&self) {
        self.inner.alerts_queued.notified().await;
    }

    /// The acknowledgement token of a break (what its alerts' links carry).
    pub fn ack_token(&self, break_id: &str) -> String {
        breakglass_custody::ack_token(&self.inner.ack_key, break_id)
    }

    fn ack_url(&self, break_id: &str) -> String {
        let base = self
            .config()
            .public_url
            .as_deref()
            .unwrap_or("http://127.0.0.1:8742")
            .trim_end_matches('/');
        format!("{base}/ack/{}", self.ack_token(break_id))
    }

    /// Records the first acknowledgement of a break's alert; the token is single-use.
    pub async fn acknowledge(&self, token: &str, by: &str) -> Result<Acknowledged, EngineError> {
        let break_id = breakglass_custody::verify_ack_token(&self.inner.ack_key, token)
            .map_err(|e| EngineError::Unauthenticated(e.to_string()))?;
        let by = by.trim();
        let by = if by.is_empty() { "(link)" } else { by };
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut ack = tx
            .ack(&break_id)
            .await?
            .ok_or_else(|| EngineError::not_found("acknowledgement for break", break_id.clone()))?;
        if let Some(at) = ack.acked_at {
            return Err(EngineError::Conflict(format!(
                "break {break_id} was already acknowledged at {at} by {}; the link works once",
                ack.acked_by.as_deref().unwrap_or("someone")
            )));
        }
        ack.acked_at = Some(now);
        ack.acked_by = Some(by.chars().take(64).collect());
        tx.put_ack(&ack).await?;
        let time_to_ack_ms = now.since(ack.requested_at);
        let mut record = Record::default();
        record.event(
            now,
            by,
            "alert.acknowledged",
            json!({"time_to_ack_ms": time_to_ack_ms, "escalated": ack.escalated_at.is_some()}),
        );
        if let Some(d) = record.drafts.last_mut() {
            d.procedure = Some(ack.procedure.clone());
            d.break_id = Some(break_id.clone());
        }
        self.commit(tx, record).await?;
        Ok(Acknowledged {
            break_id,
            procedure: ack.procedure,
            time_to_ack_ms,
        })
    }

    /// Escalates every break alert not acknowledged by its deadline: alerts the procedure's
    /// escalation channels and records it. Returns the breaks escalated.
    pub async fn escalate_due(&self) -> Result<Vec<String>, EngineError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let due = tx.due_escalations(now).await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut record = Record::default();
        let mut done = Vec::new();
        for mut ack in due {
            let Some(stored) = tx.procedure(&ack.procedure).await? else {
                continue;
            };
            let Some(b) = tx.break_(&ack.break_id).await? else {
                continue;
            };
            let waited = now.since(ack.requested_at);
            ack.escalated_at = Some(now);
            tx.put_ack(&ack).await?;
            let mut escalation = stored.procedure.clone();
            escalation.alert_channels = stored.procedure.escalation.clone();
            record.break_event(
                now,
                "breakglass",
                "alert.escalated",
                &escalation,
                &b,
                json!({"waited_ms": waited, "escalated_to": stored.procedure.escalation, "ack_within_s": stored.procedure.ack_within.map(|d| d.as_secs())}),
            );
            done.push(ack.break_id);
        }
        if !record.drafts.is_empty() {
            self.commit(tx, record).await?;
        }
        Ok(done)
    }

    /// Delivers what is due in the outbox to every alert channel. The first success of each
    /// alert commits a receipt (`alert.delivered`) to the audit log; failures are recorded and
    /// retried with backoff. Returns how many alerts were delivered.
    pub async fn deliver_alerts(&self) -> Result<usize, EngineError> {
        let _one_pass = self.inner.delivering.lock().await;
        let mut delivered = 0;
        for channel in &self.inner.channels {
            let destination = format!("channel:{}", channel.name());
            loop {
                let rows = self
                    .store()
                    .read()
                    .await?
                    .due_outbox(&destination, self.now(), 50)
                    .await?;
                if rows.is_empty() {
                    break;
                }
                let mut stop = false;
                for row in rows {
                    // Several servers: deliver only while this one holds the job's lease
                    // (renewed before each alert, as a channel may be slow).
                    if !self.lease(LEASE_ALERTS).await {
                        return Ok(delivered);
                    }
                    let alert = self.alert_for(&row).await?;
                    let started = Instant::now();
                    let injected = row
                        .payload
                        .get("drill_id")
                        .and_then(Value::as_str)
                        .and_then(|d| self.injected_channel_down(d, channel.name()));
                    let result = match injected {
                        Some(why) => Err(ChannelError::Unavailable(why)),
                        None => channel.send(&alert).await,
                    };
                    let latency_ms =
                        i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
                    let now = self.now();
                    let mut tx = self.store().begin().await?;
                    match result {
                        Ok(receipt) => {
                            if !tx
                                .mark_outbox(row.id, &DeliveryAttempt::Delivered { at: now })
                                .await?
                            {
                                // Another server delivered it first: its receipt stands.
                                continue;
                            }
                            tx.record_attempt(&AttemptRecord {
                                outbox_id: row.id,
                                destination: destination.clone(),
                                at: now,
                                ok: true,
                                status: receipt.status.clone(),
                                latency_ms: Some(receipt.latency_ms),
                                error: None,
                            })
                            .await?;
                            let mut record = Record::default();
                            record.event(
                                now,
                                "breakglass",
                                "alert.delivered",
                                json!({
                                    "channel": channel.name(),
                                    "kind": channel.kind(),
                                    "alert": alert.id,
                                    "event": alert.event,
                                    "event_seq": row.seq,
                                    "status": receipt.status,
                                    "remote_id": receipt.remote_id,
                                    "latency_ms": receipt.latency_ms,
                                    "attempts": row.attempts + 1,
                                    "commit_to_receipt_ms": now.since(alert.at),
                                }),
                            );
                            if let Some(d) = record.drafts.last_mut() {
                                d.procedure = alert.procedure.clone();
                                d.break_id = alert.break_id.clone();
                            }
                            self.commit(tx, record).await?;
                            delivered += 1;
                        }
                        Err(e) => {
                            let (status, error) = match &e {
                                ChannelError::Unavailable(m) => ("unavailable", m.clone()),
                                ChannelError::Rejected(m) => ("rejected", m.clone()),
                            };
                            tx.mark_outbox(
                                row.id,
                                &DeliveryAttempt::Failed {
                                    at: now,
                                    retry_at: now.plus(crate::audit_log::backoff(row.attempts)),
                                    error: e.to_string(),
                                },
                            )
                            .await?;
                            tx.record_attempt(&AttemptRecord {
                                outbox_id: row.id,
                                destination: destination.clone(),
                                at: now,
                                ok: false,
                                status: status.into(),
                                latency_ms: Some(latency_ms),
                                error: Some(error),
                            })
                            .await?;
                            tx.commit_bookkeeping().await?;
                            tracing::warn!(channel = channel.name(), error = %e, attempts = row.attempts + 1, "alert delivery failed; will retry");
                            stop = true;
                            break;
                        }
                    }
                }
                if stop {
                    break;
                }
            }
        }
        Ok(delivered)
    }

    /// Builds the alert of an outbox row (payload written by `Record::break_event`).
    async fn alert_for(&self, row: &OutboxRow) -> Result<Alert, EngineError> {
        let p = &row.payload;
        let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
        let event = text("event").unwrap_or_else(|| "event".into());
        let procedure = text("procedure");
        let break_id = text("break");
        let requester = text("requester");
        let drill = p.get("drill").and_then(Value::as_bool).unwrap_or(false);
        let at = p
            .get("at_ms")
            .and_then(Value::as_i64)
            .map(Timestamp)
            .unwrap_or_else(|| self.now());
        let proc_name = procedure.clone().unwrap_or_default();
        let who = requester.clone().unwrap_or_default();
        let ticket = text("ticket").unwrap_or_default();
        let people = self.alert_people(&event, procedure.as_deref(), p).await?;
        let approvers = if people.is_empty() {
            String::new()
        } else {
            format!(" — approvers: {}", crate::ports::named_list(&people))
        };
        let headline = match event.as_str() {
            "break.requested" => {
                format!("Break requested: {proc_name} by {who} ({ticket}){approvers}")
            }
            "share.accepted" => format!("Share accepted for {proc_name} ({ticket})"),
            "break.granted" => {
                format!("Quorum reached, access granted: {proc_name} to {who} ({ticket})")
            }
            "grant.revealed" => format!("Secret revealed: {proc_name} to {who} ({ticket})"),
            "break.expired" => format!("Grant expired: {proc_name} ({ticket})"),
            "break.closed" => format!("Break closed: {proc_name} ({ticket})"),
            "break.lapsed" => {
                format!("Break request lapsed without quorum: {proc_name} ({ticket})")
            }
            "alert.escalated" => {
                format!("ESCALATION: break on {proc_name} not acknowledged ({ticket}){approvers}")
            }
            "seal.created" if p["detail"]["replaces"].is_null() => {
                format!("Credential sealed: {proc_name}")
            }
            "seal.created" => format!("Credential rotated and re-sealed: {proc_name}"),
            "drill.failed" => format!("Drill failed: {proc_name}"),
            "external.opened" => format!(
                "Break opened on externally held credential: {proc_name} by {who} ({ticket}) — at {} — holders: {}",
                p["detail"]["location"].as_str().unwrap_or("?"),
                crate::ports::named_list(&people)
            ),
            "drill.started" if !people.is_empty() => format!(
                "Drill of externally held credential: {proc_name} by {who} — at {} — holders: {}",
                p["detail"]["location"].as_str().unwrap_or("?"),
                crate::ports::named_list(&people)
            ),
            "external.completed" => format!(
                "Every step done: {proc_name} ({ticket}); the credential is tainted until a holder records its rotation — holders: {}",
                crate::ports::named_list(&people)
            ),
            "external.aborted" => format!(
                "Break stopped: {proc_name} ({ticket}): {}",
                p["detail"]["reason"].as_str().unwrap_or("")
            ),
            "custody.attestation_requested" => format!(
                "Custody attestation due: {proc_name} — check {} and run `breakglass custody attest {proc_name}` — holders: {}",
                p["detail"]["location"].as_str().unwrap_or("?"),
                crate::ports::named_list(&people)
            ),
            "custody.rotated" => format!(
                "Externally held credential rotated: {proc_name} (recorded by {who} for {})",
                p["detail"]["holder"].as_str().unwrap_or("?")
            ),
            "attestation.requested" => format!(
                "Key attestation requested: {} (run `breakglass custodian attest`)",
                people
                    .first()
                    .map_or_else(|| "custodian".to_owned(), OnTheHook::named)
            ),
            "gateway.statement_refused" => format!(
                "Statement refused in gateway session {}: it matches `{}` ({proc_name}, {ticket})",
                p["detail"]["session"].as_str().unwrap_or("?"),
                p["detail"]["pattern"].as_str().unwrap_or("?")
            ),
            "gateway.session_terminated" => format!(
                "Gateway session {} terminated by {}: {} ({proc_name}, {ticket})",
                p["detail"]["session"].as_str().unwrap_or("?"),
                p["detail"]["terminated_by"].as_str().unwrap_or("?"),
                p["detail"]["reason"].as_str().unwrap_or("")
            ),
            other => format!("{other}: {proc_name}"),
        };
        let title = if drill {
            format!("[DRILL] {headline}")
        } else if p.get("offline").and_then(Value::as_bool) == Some(true) {
            format!("[OFFLINE RECOVERY] {headline}")
        } else {
            headline
        };
        let severity = match event.as_str() {
            "break.requested" | "break.granted" | "grant.revealed" | "external.opened" => {
                Severity::Critical
            }
            "alert.escalated"
            | "break.lapsed"
            | "audit.sink_lagging"
            | "grant.failed"
            | "grant.end_failed"
            | "credential.rotation_failed"
            | "drill.failed"
            | "external.completed"
            | "external.aborted"
            | "gateway.statement_refused"
            | "gateway.session_terminated" => Severity::Warning,
            _ => Severity::Info,
        };
        let ack_url = match &break_id {
            Some(b)
                if matches!(
                    event.as_str(),
                    "break.requested" | "alert.escalated" | "break.granted"
                ) =>
            {
                let mut tx = self.store().read().await?;
                match tx.ack(b).await? {
                    Some(a) if a.acked_at.is_none() => Some(self.ack_url(b)),
                    _ => None,
                }
            }
            _ => None,
        };
        let base = self.config().public_url.clone();
        let links = match (&base, &break_id) {
            (Some(u), Some(b)) => vec![(
                "Break".to_owned(),
                format!("{}/api/breaks/{b}", u.trim_end_matches('/')),
            )],
            _ => Vec::new(),
        };
        Ok(Alert {
            id: format!("bg-{}", row.id),
            event: event.clone(),
            title,
            dedup_key: format!(
                "breakglass-{}",
                break_id
                    .clone()
                    .or_else(|| text("run"))
                    .unwrap_or_else(|| proc_name.clone())
            ),
            procedure,
            break_id,
            requester,
            reason: text("reason"),
            ticket: text("ticket"),
            state: text("state"),
            at,
            drill,
            severity,
            resolve: matches!(
                event.as_str(),
                "break.expired"
                    | "break.closed"
                    | "break.lapsed"
                    | "external.completed"
                    | "external.aborted"
            ),
            ack_url,
            links,
            detail: p.get("detail").cloned().unwrap_or(Value::Null),
            people,
        })
    }

    /// The people an alert concerns, with their contact as the procedure file gives it now:
    /// every custodian of the procedure for the events that ask for approvals (who must
    /// approve), the custodian asked to attest for an attestation request.
    async fn alert_people(
        &self,
        event: &str,
        procedure: Option<&str>,
        p: &Value,
    ) -> Result<Vec<OnTheHook>, EngineError> {
        if event == "attestation.requested" {
            let d = &p["detail"];
            return Ok(d["custodian"]
                .as_str()
                .map(|name| OnTheHook {
                    name: name.to_owned(),
                    contact: d["contact"].as_str().unwrap_or("").to_owned(),
                    role: "custodian",
                })
                .into_iter()
                .collect());
        }
        // External custody: the holders, with their contact as the alert's event recorded it.
        if let Some(holders) = p["detail"]["holders"].as_array() {
            return Ok(holders
                .iter()
                .filter_map(|h| {
                    Some(OnTheHook {
                        name: h["name"].as_str()?.to_owned(),
                        contact: h["contact"].as_str().unwrap_or("").to_owned(),
                        role: "holder",
                    })
                })
                .collect());
        }
        let asks_approval = matches!(
            event,
            "break.requested" | "alert.escalated" | "share.accepted" | "break.lapsed"
        );
        let Some(id) = procedure.filter(|_| asks_approval) else {
            return Ok(Vec::new());
        };
        let stored = self.store().read().await?.procedure(id).await?;
        Ok(stored
            .map(|s| {
                s.procedure
                    .custodians
                    .iter()
                    .map(|c| OnTheHook {
                        name: c.name.clone(),
                        contact: c.contact.clone(),
                        role: "approver",
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Alerts the system channels when an audit sink starts lagging (its oldest undelivered
    /// record is older than `sink_lag_alert_after`) and when it recovers; both are audited.
    pub async fn check_sink_lag(&self) -> Result<(), EngineError> {
        let now = self.now();
        let threshold =
            i64::try_from(self.config().sink_lag_alert_after.as_millis()).unwrap_or(i64::MAX);
        let lag = self.outbox_lag().await?;
        let mut record = Record::default();
        for name in self.sink_names() {
            let dest = format!("sink:{name}");
            let l = lag.iter().find(|l| l.destination == dest);
            let lagging = l
                .and_then(|l| l.oldest_ms)
                .is_some_and(|ms| ms >= threshold);
            let was = self
                .inner
                .lagging
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&name);
            if lagging == was {
                continue;
            }
            let (kind, payload) = if lagging {
                (
                    "audit.sink_lagging",
                    json!({"sink": name, "pending": l.map_or(0, |l| l.pending), "oldest_pending_ms": l.and_then(|l| l.oldest_ms)}),
                )
            } else {
                ("audit.sink_recovered", json!({"sink": name}))
            };
            record.event(now, "breakglass", kind, payload.clone());
            let draft = record.drafts.len() - 1;
            for channel in &self.config().system_channels {
                record.outbox.push(crate::ports::OutboxItem {
                    draft,
                    destination: format!("channel:{channel}"),
                    payload: json!({"event": kind, "at": now.to_string(), "at_ms": now.0, "detail": payload}),
                });
            }
            let mut set = self.inner.lagging.lock().unwrap_or_else(|p| p.into_inner());
            if lagging {
                set.insert(name);
            } else {
                set.remove(&name);
            }
        }
        if !record.drafts.is_empty() {
            let tx = self.store().begin().await?;
            self.commit(tx, record).await?;
        }
        Ok(())
    }

    /// Sends a test alert to a channel now, waits for its receipt, stores and audits the result.
    pub async fn test_channel(&self, by: &Actor, name: &str) -> Result<ChannelTest, EngineError> {
        by.may(Action::ApplyProcedure)?;
        let channel = self
            .inner
            .channels
            .iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| EngineError::not_found("channel", name))?;
        let now = self.now();
        let alert = Alert {
            id: format!("bg-test-{}-{}", name, now.0),
            event: "channel.test".into(),
            title: format!(
                "Test alert from breakglass to channel {name} (requested by {})",
                by.name
            ),
            procedure: None,
            break_id: None,
            requester: Some(by.name.clone()),
            reason: Some("channel test".into()),
            ticket: None,
            state: None,
            at: now,
            drill: false,
            severity: Severity::Info,
            resolve: false,
            dedup_key: format!("breakglass-test-{name}"),
            ack_url: None,
            links: Vec::new(),
            detail: json!({"test": true}),
            people: Vec::new(),
        };
        let started = Instant::now();
        let result = channel.send(&alert).await;
        let elapsed = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let test = match &result {
            Ok(r) => ChannelTest {
                channel: name.into(),
                at: now,
                ok: true,
                status: r.status.clone(),
                latency_ms: Some(r.latency_ms),
                error: None,
            },
            Err(e) => ChannelTest {
                channel: name.into(),
                at: now,
                ok: false,
                status: "failed".into(),
                latency_ms: Some(elapsed),
                error: Some(e.to_string()),
            },
        };
        let mut tx = self.store().begin().await?;
        tx.put_channel_test(&test).await?;
        let mut record = Record::default();
        record.event(
            now,
            &by.name,
            "channel.tested",
            json!({"channel": name, "kind": channel.kind(), "ok": test.ok, "status": test.status, "latency_ms": test.latency_ms, "error": test.error}),
        );
        self.commit(tx, record).await?;
        Ok(test)
    }

    /// Names of the configured channels.
    pub fn channel_names(&self) -> Vec<String> {
        self.inner
            .channels
            .iter()
            .map(|c| c.name().to_owned())
            .collect()
    }

    /// The configured channels with their backlog and latest test.
    pub async fn channels(&self, by: &Actor) -> Result<Vec<ChannelInfo>, EngineError> {
        by.may(Action::Read)?;
        let mut tx = self.store().read().await?;
        let tests = tx.channel_tests().await?;
        let lag = tx.outbox_lag().await?;
        Ok(self
            .inner
            .channels
            .iter()
            .map(|c| {
                let dest = format!("channel:{}", c.name());
                ChannelInfo {
                    name: c.name().to_owned(),
                    kind: c.kind(),
                    pending: lag
                        .iter()
                        .find(|(d, _, _)| *d == dest)
                        .map_or(0, |(_, n, _)| *n),
                    last_test: tests.iter().find(|t| t.channel == c.name()).cloned(),
                }
            })
            .collect())
    }

    /// Recent delivery attempts (newest first).
    pub async fn delivery_attempts(
        &self,
        by: &Actor,
        channel: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AttemptRecord>, EngineError> {
        by.may(Action::Read)?;
        let dest = channel.map(|c| format!("channel:{c}"));
        Ok(self
            .store()
            .read()
            .await?
            .attempts(dest.as_deref(), limit.clamp(1, 1000))
            .await?)
    }

    /// Creates the acknowledgement state of a newly requested break (inside its transaction).
    pub(crate) async fn start_ack(
        &self,
        tx: &mut dyn crate::ports::Tx,
        b: &Break,
        procedure: &breakglass_domain::Procedure,
        ack_within: Option<std::time::Duration>,
    ) -> Result<(), EngineError> {
        if procedure.alert_channels.is_empty() {
            return Ok(());
        }
        let info = b.info();
        tx.put_ack(&AckState {
            break_id: info.id.0.clone(),
            procedure: info.procedure.clone(),
            requested_at: info.requested_at,
            ack_deadline: ack_within.map(|d| info.requested_at.plus(d)),
            acked_at: None,
            acked_by: None,
            escalated_at: None,
        })
        .await?;
        Ok(())
    }
}
