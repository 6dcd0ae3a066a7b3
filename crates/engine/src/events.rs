//! Audit drafts and outbox items for each kind of event, in one place so every use case
//! records the same shape and no payload can carry a secret by accident: payloads are built
//! here from named, non-secret fields only.

use breakglass_audit::Draft;
use breakglass_domain::{Break, Procedure, Timestamp};
use serde_json::{Value, json};

use crate::ports::OutboxItem;

/// Drafts and outbox items of one commit.
#[derive(Default)]
pub(crate) struct Record {
    pub(crate) drafts: Vec<Draft>,
    pub(crate) outbox: Vec<OutboxItem>,
}

impl Record {
    /// Adds an event with no procedure or break.
    pub(crate) fn event(
        &mut self,
        now: Timestamp,
        actor: &str,
        kind: &str,
        payload: Value,
    ) -> &mut Self {
        self.drafts.push(Draft {
            time_ms: now.0,
            actor: actor.to_owned(),
            kind: kind.to_owned(),
            procedure: None,
            break_id: None,
            payload,
        });
        self
    }

    /// Adds an event about a procedure.
    pub(crate) fn procedure_event(
        &mut self,
        now: Timestamp,
        actor: &str,
        kind: &str,
        procedure: &str,
        payload: Value,
    ) -> &mut Self {
        self.event(now, actor, kind, payload);
        if let Some(d) = self.drafts.last_mut() {
            d.procedure = Some(procedure.to_owned());
        }
        self
    }

    /// Adds an event about a procedure and queues an alert to each of its channels.
    pub(crate) fn procedure_alert(
        &mut self,
        now: Timestamp,
        actor: &str,
        kind: &str,
        procedure: &Procedure,
        payload: Value,
    ) -> &mut Self {
        self.procedure_event(now, actor, kind, &procedure.id, payload.clone());
        let draft = self.drafts.len() - 1;
        for channel in &procedure.alert_channels {
            self.outbox.push(OutboxItem {
                draft,
                destination: format!("channel:{channel}"),
                payload: json!({
                    "event": kind,
                    "procedure": procedure.id,
                    "requester": actor,
                    "at": now.to_string(),
                    "at_ms": now.0,
                    "detail": payload,
                }),
            });
        }
        self
    }

    /// Adds an event about a break, without an alert.
    pub(crate) fn break_note(
        &mut self,
        now: Timestamp,
        actor: &str,
        kind: &str,
        b: &Break,
        payload: Value,
    ) -> &mut Self {
        let info = b.info();
        self.drafts.push(Draft {
            time_ms: now.0,
            actor: actor.to_owned(),
            kind: kind.to_owned(),
            procedure: Some(info.procedure.clone()),
            break_id: Some(info.id.0.clone()),
            payload,
        });
        self
    }

    /// Adds an event about a break and queues an alert to each of the procedure's channels.
    pub(crate) fn break_event(
        &mut self,
        now: Timestamp,
        actor: &str,
        kind: &str,
        procedure: &Procedure,
        b: &Break,
        payload: Value,
    ) -> &mut Self {
        let info = b.info();
        let mut payload = payload;
        if let (Some(drill), Some(map)) = (&info.drill, payload.as_object_mut()) {
            map.insert("drill".into(), Value::from(drill.clone()));
        }
        self.drafts.push(Draft {
            time_ms: now.0,
            actor: actor.to_owned(),
            kind: kind.to_owned(),
            procedure: Some(info.procedure.clone()),
            break_id: Some(info.id.0.clone()),
            payload: payload.clone(),
        });
        let draft = self.drafts.len() - 1;
        for channel in &procedure.alert_channels {
            self.outbox.push(OutboxItem {
                draft,
                destination: format!("channel:{channel}"),
                payload: json!({
                    "event": kind,
                    "procedure": info.procedure,
                    "break": info.id.0,
                    "requester": info.requester,
                    "reason": info.reason,
                    "ticket": info.ticket,
                    "state": b.state(),
                    "at": now.to_string(),
                    "at_ms": now.0,
                    "drill": info.drill.is_some(),
                    "drill_id": info.drill,
                    "detail": payload,
                }),
            });
        }
        self
    }

    /// Adds no entry; queues, for the entry just added, the alert a server-side break raises
    /// for `event`, marked offline (an imported recovery spool).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn offline_alert(
        &mut self,
        now: Timestamp,
        event: &str,
        procedure: &Procedure,
        recovery: &str,
        requester: &str,
        reason: &str,
        ticket: &str,
        detail: Value,
    ) -> &mut Self {
        let Some(draft) = self.drafts.len().checked_sub(1) else {
            return self;
        };
        for channel in &procedure.alert_channels {
            self.outbox.push(OutboxItem {
                draft,
                destination: format!("channel:{channel}"),
                payload: json!({
                    "event": event,
                    "offline": true,
                    "procedure": procedure.id,
                    "break": recovery,
                    "requester": requester,
                    "reason": reason,
                    "ticket": ticket,
                    "state": "offline",
                    "at": now.to_string(),
                    "at_ms": now.0,
                    "drill": false,
                    "drill_id": null,
                    "detail": detail,
                }),
            });
        }
        self
    }
}
