//! The evidence pack of a break (`breakglass evidence BREAK_ID`): who asked and why, each share
//! and who gave it, every alert with its receipt and acknowledgement, the grant and its window,
//! the gateway recording, the end, the rotation — and the unbroken audit segment from the
//! break's first entry to a checkpoint signed for the occasion, all signed with the audit key
//! (`breakglass_audit::evidence`).

use breakglass_domain::{Action, Actor, Break, Timestamp};
use serde_json::{Value, json};

use crate::ports::AuditAbout;
use crate::{Engine, EngineError};

/// Most audit entries a pack carries (the segment from the break's first entry to the
/// checkpoint); older breaks on a busy server exceed it and are refused with that reason.
const MAX_SEGMENT: u64 = 200_000;

impl Engine {
    /// The evidence page of `break_id` (admin, auditor). Audited as `evidence.exported`.
    pub async fn evidence(&self, by: &Actor, break_id: &str) -> Result<String, EngineError> {
        by.may(Action::ReadAudit)?;
        let key = self
            .inner
            .audit_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| EngineError::Conflict("the server has no audit key yet".into()))?;
        let first = {
            let mut tx = self.store().read().await?;
            crate::breaks::load_break(tx.as_mut(), break_id).await?;
            let about = tx
                .audit_entries_about(AuditAbout::Break(break_id), u64::MAX, 1_000_000)
                .await?;
            about.iter().map(|e| e.seq).min().ok_or_else(|| {
                EngineError::Conflict(format!("break {break_id} has no audit entry"))
            })?
        };
        // A checkpoint of the current head, so the pack's segment ends at a signed head.
        self.checkpoint_now().await?;
        let mut tx = self.store().read().await?;
        let b = crate::breaks::load_break(tx.as_mut(), break_id).await?;
        let checkpoint = tx
            .latest_checkpoint()
            .await?
            .filter(|c| c.checkpoint.seq >= first && c.checkpoint.key_id == key.key_id())
            .ok_or_else(|| EngineError::Conflict("no checkpoint covers the break yet".into()))?;
        let span = checkpoint.checkpoint.seq - first + 1;
        if span > MAX_SEGMENT {
            return Err(EngineError::Invalid(format!(
                "the audit segment from break {break_id}'s first entry to the newest checkpoint has {span} entries (more than {MAX_SEGMENT})"
            )));
        }
        let segment = tx
            .audit_entries(first, i64::try_from(span).unwrap_or(i64::MAX))
            .await?;
        let statements = tx.statements(break_id).await?;
        let grant = tx.grant(break_id).await?;
        drop(tx);

        let mine = |e: &breakglass_audit::Entry| {
            e.break_id.as_deref() == Some(break_id)
                || e.payload.get("break").and_then(Value::as_str) == Some(break_id)
        };
        let fact = |e: &breakglass_audit::Entry| {
            json!({
                "seq": e.seq,
                "at": Timestamp(e.time_ms).to_string(),
                "actor": e.actor,
                "kind": e.kind,
                "payload": e.payload,
            })
        };
        let pick = |prefixes: &[&str]| -> Vec<Value> {
            segment
                .iter()
                .filter(|e| mine(e) && prefixes.iter().any(|p| e.kind.starts_with(p)))
                .map(fact)
                .collect()
        };
        let info = b.info();
        let (granted_at, deadline, ended_at, state, closed_by) = match &b {
            Break::Requested(_) => (None, None, None, "requested", None),
            Break::Granted(g) => (Some(g.granted_at), Some(g.deadline), None, "granted", None),
            Break::Ended(e) => (
                e.granted_at,
                e.deadline,
                Some(e.ended_at),
                e.reason.as_str(),
                match &e.reason {
                    breakglass_domain::EndReason::Closed { by } => Some(by.clone()),
                    _ => None,
                },
            ),
        };
        let ts = |t: Option<Timestamp>| t.map(|t| t.to_string());
        let bundle = json!({
            "format": breakglass_audit::evidence::FORMAT,
            "made_at": self.now().to_string(),
            "public_key": key.public().to_string(),
            "break": {
                "id": info.id.0,
                "procedure": info.procedure,
                "requester": info.requester,
                "reason": info.reason,
                "ticket": info.ticket,
                "requested_at": info.requested_at.to_string(),
                "granted_at": ts(granted_at),
                "deadline": ts(deadline),
                "ended_at": ts(ended_at),
                "state": state,
                "closed_by": closed_by,
                "drill": info.drill,
            },
            "facts": {
                "shares": pick(&["share.", "break.approvals_reset"]),
                "alerts": pick(&["alert."]),
                "grant": pick(&["break.granted", "grant.", "gateway."]),
                "end": pick(&["break.expired", "break.closed", "break.lapsed"]),
                "rotation": pick(&["credential.", "procedure.tainted"]),
            },
            "grant": grant.map(|g| json!({
                "kind": g.kind,
                "handle": g.handle,
                "created_at": g.created_at.to_string(),
                "deadline": g.deadline.to_string(),
                "end_cause": g.end_cause,
                "ended_at": ts(g.ended_at),
            })),
            "statements": statements.iter().map(|s| json!({
                "session": s.session_id,
                "seq": s.seq,
                "at": s.started_at.to_string(),
                "duration_us": s.duration_us,
                "protocol": s.protocol,
                "statement": s.statement,
                "params": s.params,
                "data": s.data,
                "command": s.command,
                "rows": s.rows,
                "error": s.error,
                "refused": s.refused,
            })).collect::<Vec<_>>(),
            "entries": segment.iter().map(|e| e.to_json_line()).collect::<Vec<_>>(),
            "checkpoint": checkpoint.to_json_line(),
        });
        let page = key
            .sign_evidence(bundle)
            .map_err(|e| EngineError::Conflict(format!("cannot encode the evidence: {e}")))?;
        let now = self.now();
        let tx = self.store().begin().await?;
        let mut record = crate::events::Record::default();
        record.break_note(
            now,
            &by.name,
            "evidence.exported",
            &b,
            json!({"entries": segment.len(), "checkpoint_seq": checkpoint.checkpoint.seq}),
        );
        self.commit(tx, record).await?;
        Ok(page)
    }
}
