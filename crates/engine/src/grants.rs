//! Grants on real targets: ending them at the deadline or on close (retried with backoff and
//! audited, never dropped), rotating and re-sealing the credential after each break, health
//! checks and discovery.
//!
//! Target calls are never made inside a store transaction except at the quorum (see
//! `breaks::issue_grant`), where holding the writer is what makes the grant exactly-once.

use std::sync::Arc;

use breakglass_custody::Secret;
use breakglass_domain::{Action, Actor, Break, Procedure, TargetKind};
use serde_json::json;

use crate::events::Record;
use crate::ports::{
    AuditAbout, EndCause, GrantRecord, HealthCheck, PrivilegedAccount, StoredSeal, Taint, Target,
    TargetError, TargetReport,
};
use crate::{Engine, EngineError};

/// A health check's result.
#[derive(Debug, Clone)]
pub struct TargetCheck {
    /// Procedure.
    pub procedure: String,
    /// Whether every line passed.
    pub ok: bool,
    /// The lines.
    pub checks: Vec<HealthCheck>,
}

/// A discovery's result.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// Procedure.
    pub procedure: String,
    /// Privileged accounts found.
    pub accounts: Vec<PrivilegedAccount>,
}

impl Discovery {
    /// Accounts with at least one flag (not in the inventory, no expiry).
    pub fn flagged(&self) -> impl Iterator<Item = &PrivilegedAccount> {
        self.accounts.iter().filter(|a| !a.flags.is_empty())
    }

    /// Privileged accounts nobody declared: not in the inventory and not created by
    /// breakglass. This is drift; an account that is known but never expires is flagged and
    /// reported, but is not drift.
    pub fn unknown(&self) -> impl Iterator<Item = &PrivilegedAccount> {
        self.accounts.iter().filter(|a| !a.known)
    }
}

impl EndCause {
    fn as_str(self) -> &'static str {
        match self {
            EndCause::Expired => "expired",
            EndCause::Closed => "closed",
            EndCause::Abandoned => "abandoned",
        }
    }

    fn parse(s: Option<&str>) -> EndCause {
        match s {
            Some("closed") => EndCause::Closed,
            Some("abandoned") => EndCause::Abandoned,
            _ => EndCause::Expired,
        }
    }
}

impl Engine {
    /// The adapter serving `kind`, if one is registered.
    pub(crate) fn target(&self, kind: TargetKind) -> Result<Arc<dyn Target>, EngineError> {
        self.inner.targets.get(&kind).cloned().ok_or_else(|| {
            EngineError::Invalid(format!(
                "no `{}` target adapter is configured on this server",
                kind.as_str()
            ))
        })
    }

    /// Ends every grant whose break has ended and whose target has not confirmed it yet.
    /// Called by the expiry sweep (every 200 ms and at start-up) and right after a close.
    /// A failure is audited (`grant.end_failed`, alerted) and retried with backoff; success
    /// is audited as `grant.ended` with what the target did. Returns how many ended.
    pub async fn end_grants(&self) -> Result<usize, EngineError> {
        let now = self.now();
        let due = {
            let mut tx = self.store().read().await?;
            let grants = tx.grants_to_end(now).await?;
            let mut due = Vec::new();
            for g in grants {
                if let Some(p) = tx.procedure(&g.procedure).await? {
                    due.push((g, p.procedure));
                }
            }
            due
        };
        let mut ended = 0;
        for (g, procedure) in due {
            // A proxy grant's gateway connections close with it.
            self.release_proxy_grant(&g.break_id);
            let cause = EndCause::parse(g.end_cause.as_deref());
            let result = match kind_of(&g.kind) {
                Some(kind) => match self.target(kind) {
                    Ok(t) => t.end(&procedure, &g.break_id, &g.handle, cause).await,
                    Err(e) => Err(TargetError::Config {
                        target: g.kind.clone(),
                        message: e.to_string(),
                    }),
                },
                None => Err(TargetError::Config {
                    target: g.kind.clone(),
                    message: "unknown target kind in the grant record".into(),
                }),
            };
            if self.record_end(&g, &procedure, cause, result).await? {
                ended += 1;
            }
        }
        Ok(ended)
    }

    async fn record_end(
        &self,
        g: &GrantRecord,
        procedure: &Procedure,
        cause: EndCause,
        result: Result<serde_json::Value, TargetError>,
    ) -> Result<bool, EngineError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        // Another sweep may have ended it meanwhile (ending is idempotent on the target).
        let Some(mut row) = tx.grant(&g.break_id).await? else {
            return Ok(false);
        };
        if row.ended_at.is_some() {
            return Ok(false);
        }
        let b = tx
            .break_(&g.break_id)
            .await?
            .ok_or_else(|| EngineError::not_found("break", g.break_id.clone()))?;
        let mut record = Record::default();
        let ok = match result {
            Ok(detail) => {
                row.ended_at = Some(now);
                row.last_error = None;
                row.next_attempt_at = None;
                record.break_event(
                    now,
                    "breakglass",
                    "grant.ended",
                    procedure,
                    &b,
                    json!({
                        "cause": cause.as_str(),
                        "kind": row.kind,
                        "deadline": row.deadline.to_string(),
                        "late_ms": now.since(row.deadline).max(0),
                        "after_request_ms": row.end_requested_at.map(|t| now.since(t)),
                        "attempts": row.end_attempts + 1,
                        "target": detail,
                    }),
                );
                true
            }
            Err(e) => {
                row.end_attempts += 1;
                row.last_error = Some(e.to_string());
                let wait = crate::audit_log::backoff(row.end_attempts - 1);
                row.next_attempt_at = Some(now.plus(wait));
                record.break_event(
                    now,
                    "breakglass",
                    "grant.end_failed",
                    procedure,
                    &b,
                    json!({
                        "cause": cause.as_str(),
                        "kind": row.kind,
                        "error": e.to_string(),
                        "error_code": e.code(),
                        "attempts": row.end_attempts,
                        "next_attempt_at": row.next_attempt_at.map(|t| t.to_string()),
                    }),
                );
                false
            }
        };
        tx.put_grant(&row).await?;
        self.commit(tx, record).await?;
        Ok(ok)
    }

    /// After a grant on a target: rotates the credential that was combined (when the kind
    /// can) and re-seals it to the custodians under a new data key. The new credential is
    /// sealed and committed as a pending seal *before* the target changes, and becomes the
    /// procedure's seal only after the target proved it works; on any failure the old seal
    /// stays current and valid, and the failure is audited and alerted.
    pub(crate) async fn rotate_after_break(
        &self,
        procedure_id: &str,
        break_id: &str,
        current: Secret,
        slot: SealSlot,
    ) -> Result<(), EngineError> {
        // From here to the promotion, no break of this procedure opens or reaches its quorum.
        let _rotation = self
            .rotation_lock(procedure_id, crate::ROTATION_LOCK_WAIT)
            .await?;
        let (stored, drill_seal, break_seal) = {
            let mut tx = self.store().read().await?;
            let stored = tx
                .procedure(procedure_id)
                .await?
                .ok_or_else(|| EngineError::not_found("procedure", procedure_id))?;
            let break_seal = tx.break_(break_id).await?.map(|b| b.info().seal_id.clone());
            (stored, tx.drill_seal(procedure_id).await?, break_seal)
        };
        let procedure = stored.procedure.clone();
        let old_seal = match slot {
            SealSlot::Procedure => stored.seal_id.clone(),
            SealSlot::Drill => drill_seal,
        };
        // Another break's rotation already replaced the seal this break combined: the
        // credential it opened is no longer the target's, so there is nothing to rotate.
        if break_seal.is_some() && break_seal != old_seal {
            return self
                .rotation_superseded(&procedure, break_id, break_seal, old_seal, slot)
                .await;
        }
        let target = self.target(procedure.target.kind)?;
        let next = match target.next_credential(&procedure, &current) {
            Ok(n) => n,
            Err(e) => {
                return self
                    .rotation_failed(&procedure, break_id, None, &e, slot)
                    .await;
            }
        };
        let new_secret = next.as_ref().unwrap_or(&current);
        let custodians: Vec<(String, breakglass_custody::CustodianKey)> = match slot {
            SealSlot::Procedure => procedure
                .custodians
                .iter()
                .map(|c| (c.name.clone(), c.key.clone()))
                .collect(),
            SealSlot::Drill => self.drill_recipients(&procedure)?,
        };
        // Sealing and the argon2id fingerprint are CPU work (tens of milliseconds): off the
        // async workers, so requests served meanwhile (the requester's reveal) do not wait.
        let copy = Secret::new(new_secret.expose_secret().to_vec());
        let now = self.now();
        let seal = seal_off_thread(copy, procedure.quorum, custodians, &procedure.id, now).await?;
        let mut tx = self.store().begin().await?;
        tx.insert_seal(&seal).await?;
        let mut record = Record::default();
        record.procedure_event(
            now,
            "breakglass",
            slot.event("credential.rotation_started"),
            &procedure.id,
            json!({
                "break": break_id,
                "pending_seal": seal.seal_id,
                "current_seal": old_seal,
                "changes_target": next.is_some(),
                "commitments": seal.commitments.iter().map(|c| hex::encode(c.digest)).collect::<Vec<_>>(),
            }),
        );
        self.commit(tx, record).await?;

        if let Some(next) = &next
            && let Err(e) = target.rotate(&procedure, &current, next).await
        {
            return self
                .rotation_failed(&procedure, break_id, Some(&seal.seal_id), &e, slot)
                .await;
        }

        let promoted = match slot {
            SealSlot::Procedure => {
                self.promote_seal(
                    procedure_id,
                    break_id,
                    old_seal.as_deref(),
                    &seal,
                    next.is_some(),
                )
                .await
            }
            SealSlot::Drill => {
                self.promote_drill_seal(
                    procedure_id,
                    break_id,
                    old_seal.as_deref(),
                    &seal,
                    next.is_some(),
                )
                .await
            }
        };
        if let Err(e) = promoted {
            // The target has the new credential but the store did not take the new seal:
            // put the old credential back so the current seal keeps opening the target.
            if let Some(next) = &next
                && let Err(undo) = target.rotate(&procedure, next, &current).await
            {
                tracing::error!(procedure = procedure_id, error = %undo,
                    "rotation could not be committed nor undone; the pending seal {} holds the credential now in use", seal.seal_id);
            }
            return Err(e);
        }
        Ok(())
    }

    /// At start-up: a rotation that committed its pending seal but neither its promotion nor
    /// its failure was cut by a crash. Which credential the target holds now (the current
    /// seal's, if the crash came before the target changed; the pending seal's, if after) the
    /// server cannot tell: it holds neither. The procedure is tainted with both seals named and
    /// the remedy, and its channels are alerted. Returns the procedures flagged.
    pub async fn flag_interrupted_rotations(&self) -> Result<Vec<String>, EngineError> {
        const KINDS: [&str; 4] = [
            "credential.rotation_started",
            "credential.rotated",
            "credential.rotation_failed",
            "credential.rotation_interrupted",
        ];
        let procedures = self.store().read().await?.procedures().await?;
        let mut flagged = Vec::new();
        for stored in procedures {
            // A grant taints its procedure before the rotation starts and the promotion
            // clears it: only a tainted procedure can have a rotation cut short.
            if stored.taint.is_none() {
                continue;
            }
            let id = stored.procedure.id.clone();
            // The newest rotation event of the procedure, read newest first.
            let mut latest = None;
            let mut before = u64::MAX;
            {
                let mut tx = self.store().read().await?;
                for _ in 0..20 {
                    let page = tx
                        .audit_entries_about(AuditAbout::Procedure(&id), before, 500)
                        .await?;
                    let Some(last) = page.last() else { break };
                    before = last.seq;
                    let full = page.len() == 500;
                    if let Some(e) = page.into_iter().find(|e| KINDS.contains(&e.kind.as_str())) {
                        latest = Some(e);
                        break;
                    }
                    if !full {
                        break;
                    }
                }
            }
            let Some(started) = latest.filter(|e| e.kind == "credential.rotation_started") else {
                continue;
            };
            let field = |k: &str| {
                started
                    .payload
                    .get(k)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            let (break_id, pending, current) =
                (field("break"), field("pending_seal"), field("current_seal"));
            let changes_target = started
                .payload
                .get("changes_target")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            let reason = if changes_target {
                format!(
                    "rotation after break {} was interrupted by a restart: the target holds the credential of the current seal {} or of the pending seal {}; set a new credential on the target and re-seal it (`breakglass seal {id}`)",
                    break_id.as_deref().unwrap_or("?"),
                    current.as_deref().unwrap_or("(none)"),
                    pending.as_deref().unwrap_or("?"),
                )
            } else {
                format!(
                    "re-seal after break {} was interrupted by a restart: the data key was combined; re-seal (`breakglass seal {id}`)",
                    break_id.as_deref().unwrap_or("?"),
                )
            };
            let now = self.now();
            let mut tx = self.store().begin().await?;
            let Some(mut fresh) = tx.procedure(&id).await? else {
                continue;
            };
            fresh.taint = Some(Taint {
                reason: reason.clone(),
                break_id: break_id.clone(),
                secret_revealed: false,
            });
            tx.put_procedure(&fresh).await?;
            let mut record = Record::default();
            record.procedure_alert(
                now,
                "breakglass",
                "credential.rotation_interrupted",
                &fresh.procedure,
                json!({
                    "break": break_id,
                    "pending_seal": pending,
                    "current_seal": current,
                    "changes_target": changes_target,
                    "reason": reason,
                }),
            );
            self.commit(tx, record).await?;
            tracing::error!(procedure = %id, "{reason}");
            flagged.push(id);
        }
        Ok(flagged)
    }

    /// Records that a break's rotation had nothing to do (see `rotate_after_break`) and
    /// clears the taint this break set.
    async fn rotation_superseded(
        &self,
        procedure: &breakglass_domain::Procedure,
        break_id: &str,
        break_seal: Option<String>,
        current: Option<String>,
        slot: SealSlot,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut record = Record::default();
        record.procedure_event(
            now,
            "breakglass",
            slot.event("credential.rotation_skipped"),
            &procedure.id,
            json!({"break": break_id, "break_seal": break_seal, "current_seal": current, "why": "a later rotation already replaced the credential this break opened"}),
        );
        if slot == SealSlot::Procedure
            && let Some(mut stored) = tx.procedure(&procedure.id).await?
            && stored
                .taint
                .as_ref()
                .is_some_and(|t| t.break_id.as_deref() == Some(break_id) && !t.secret_revealed)
        {
            let cleared = stored.taint.take().map(|t| t.reason);
            tx.put_procedure(&stored).await?;
            record.procedure_event(
                now,
                "breakglass",
                "procedure.untainted",
                &procedure.id,
                json!({"cleared": cleared, "seal_id": current}),
            );
        }
        self.commit(tx, record).await?;
        Ok(())
    }

    async fn promote_seal(
        &self,
        procedure_id: &str,
        break_id: &str,
        old_seal: Option<&str>,
        seal: &StoredSeal,
        changed_target: bool,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut stored = tx
            .procedure(procedure_id)
            .await?
            .ok_or_else(|| EngineError::not_found("procedure", procedure_id))?;
        let replaced = stored.seal_id.replace(seal.seal_id.clone());
        let cleared = match &stored.taint {
            Some(t) if t.break_id.as_deref() == Some(break_id) && !t.secret_revealed => {
                stored.taint.take().map(|t| t.reason)
            }
            _ => None,
        };
        tx.put_procedure(&stored).await?;
        let mut record = Record::default();
        // Breaks still waiting for their quorum were opened on the old seal: move them to
        // the new one. Shares already accepted were of the old seal and are dropped; their
        // custodians approve again (and are told).
        if let Some(old) = replaced.as_deref() {
            for b in tx.breaks(Some(procedure_id), 200).await? {
                let Break::Requested(mut r) = b else { continue };
                if r.info.seal_id != old || r.info.drill.is_some() {
                    continue;
                }
                let custodians: Vec<String> = r
                    .info
                    .approvals
                    .iter()
                    .map(|a| a.custodian.clone())
                    .collect();
                r.info.seal_id = seal.seal_id.clone();
                r.info.approvals.clear();
                drop(self.take_pending(&r.info.id.0));
                let moved = Break::Requested(r);
                tx.put_break(&moved).await?;
                record.break_event(
                    now,
                    "breakglass",
                    "break.approvals_reset",
                    &stored.procedure,
                    &moved,
                    json!({"custodians": custodians, "seal_id": seal.seal_id, "why": format!("the credential was rotated after break {break_id}; approve again (the new seal's share)")}),
                );
            }
        }
        record.procedure_alert(
            now,
            "breakglass",
            "credential.rotated",
            &stored.procedure,
            json!({
                "break": break_id,
                "seal_id": seal.seal_id,
                "replaces": replaced,
                "expected_seal": old_seal,
                "changed_on_target": changed_target,
                "threshold": seal.threshold,
            }),
        );
        if let Some(reason) = cleared {
            record.procedure_event(
                now,
                "breakglass",
                "procedure.untainted",
                procedure_id,
                json!({"cleared": reason, "seal_id": seal.seal_id}),
            );
        }
        self.commit(tx, record).await?;
        Ok(())
    }

    async fn promote_drill_seal(
        &self,
        procedure_id: &str,
        break_id: &str,
        old_seal: Option<&str>,
        seal: &StoredSeal,
        changed_target: bool,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.put_drill_seal(procedure_id, &seal.seal_id, now).await?;
        let mut record = Record::default();
        record.procedure_event(
            now,
            "breakglass",
            "drill_credential.rotated",
            procedure_id,
            json!({
                "break": break_id,
                "seal_id": seal.seal_id,
                "replaces": old_seal,
                "changed_on_target": changed_target,
                "threshold": seal.threshold,
            }),
        );
        self.commit(tx, record).await?;
        Ok(())
    }

    async fn rotation_failed(
        &self,
        procedure: &Procedure,
        break_id: &str,
        pending_seal: Option<&str>,
        e: &TargetError,
        slot: SealSlot,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let tx = self.store().begin().await?;
        let mut record = Record::default();
        let payload = json!({
            "break": break_id,
            "error": e.to_string(),
            "error_code": e.code(),
            "abandoned_seal": pending_seal,
            "current_seal_still_valid": true,
        });
        match slot {
            // A drill's failure is reported by the drill itself; the real seal is untouched.
            SealSlot::Drill => {
                record.procedure_event(
                    now,
                    "breakglass",
                    "drill_credential.rotation_failed",
                    &procedure.id,
                    payload,
                );
            }
            SealSlot::Procedure => {
                record.procedure_alert(
                    now,
                    "breakglass",
                    "credential.rotation_failed",
                    procedure,
                    payload,
                );
            }
        }
        self.commit(tx, record).await?;
        Ok(())
    }

    /// Checks a procedure's target without unsealing, stores the report and audits it.
    pub async fn check_target(
        &self,
        by: &Actor,
        procedure: &str,
    ) -> Result<TargetCheck, EngineError> {
        by.may(Action::CheckTarget)?;
        let stored = self.read_procedure(procedure).await?;
        let kind = stored.procedure.target.kind;
        let checks = if kind == TargetKind::Secret {
            vec![HealthCheck {
                name: "sealed".into(),
                ok: stored.seal_id.is_some(),
                detail: match &stored.seal_id {
                    Some(s) => format!("sealed as {s}; a static secret has no target to check"),
                    None => "not sealed".into(),
                },
            }]
        } else {
            match self.target(kind)?.check(&stored.procedure).await {
                Ok(c) => c,
                Err(e) => vec![HealthCheck {
                    name: "target reachable".into(),
                    ok: false,
                    detail: e.to_string(),
                }],
            }
        };
        let ok = checks.iter().all(|c| c.ok);
        let detail = json!(
            checks
                .iter()
                .map(|c| json!({"name": c.name, "ok": c.ok, "detail": c.detail}))
                .collect::<Vec<_>>()
        );
        self.store_report(by, &stored.procedure, "check", ok, detail)
            .await?;
        Ok(TargetCheck {
            procedure: procedure.to_owned(),
            ok,
            checks,
        })
    }

    /// Lists privileged accounts on a procedure's target, stores the report and audits it;
    /// accounts not in the inventory or without expiry are flagged.
    pub async fn discover(&self, by: &Actor, procedure: &str) -> Result<Discovery, EngineError> {
        by.may(Action::CheckTarget)?;
        let stored = self.read_procedure(procedure).await?;
        let kind = stored.procedure.target.kind;
        let accounts = if kind == TargetKind::Secret {
            Vec::new()
        } else {
            match self.target(kind)?.discover(&stored.procedure).await {
                Ok(a) => a,
                Err(e) => {
                    // The failure is a finding too: stored and audited, then returned.
                    let detail = json!({"error": e.to_string(), "error_code": e.code()});
                    self.store_report(by, &stored.procedure, "discover", false, detail)
                        .await?;
                    return Err(e.into());
                }
            }
        };
        let discovery = Discovery {
            procedure: procedure.to_owned(),
            accounts,
        };
        let ok = discovery.unknown().next().is_none();
        let detail = json!(
            discovery
                .accounts
                .iter()
                .map(|a| json!({"name": a.name, "privileges": a.privileges, "expires": a.expires, "known": a.known, "flags": a.flags}))
                .collect::<Vec<_>>()
        );
        self.store_report(by, &stored.procedure, "discover", ok, detail)
            .await?;
        Ok(discovery)
    }

    /// The latest check and discovery reports, optionally of one procedure.
    pub async fn target_reports(
        &self,
        by: &Actor,
        procedure: Option<&str>,
    ) -> Result<Vec<TargetReport>, EngineError> {
        by.may(Action::Read)?;
        Ok(self.store().read().await?.target_reports(procedure).await?)
    }

    /// The grant record of a break (what was created on the target, and whether it ended).
    pub async fn grant_record(
        &self,
        by: &Actor,
        break_id: &str,
    ) -> Result<Option<GrantRecord>, EngineError> {
        by.may(Action::Read)?;
        Ok(self.store().read().await?.grant(break_id).await?)
    }

    async fn store_report(
        &self,
        by: &Actor,
        procedure: &Procedure,
        kind: &str,
        ok: bool,
        detail: serde_json::Value,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.put_target_report(&TargetReport {
            procedure: procedure.id.clone(),
            kind: kind.to_owned(),
            at: now,
            ok,
            detail: detail.clone(),
        })
        .await?;
        let mut record = Record::default();
        let event = if kind == "check" {
            "target.checked"
        } else {
            "target.discovered"
        };
        record.procedure_event(
            now,
            &by.name,
            event,
            &procedure.id,
            json!({"ok": ok, "kind": procedure.target.kind.as_str(), "report": detail}),
        );
        self.commit(tx, record).await?;
        Ok(())
    }

    async fn read_procedure(&self, id: &str) -> Result<crate::StoredProcedure, EngineError> {
        self.store()
            .read()
            .await?
            .procedure(id)
            .await?
            .ok_or_else(|| EngineError::not_found("procedure", id))
    }

    /// Waits for background work started by earlier calls (credential rotations after
    /// grants). Tests and the demo call it; the server lets it run.
    pub async fn settle(&self) {
        loop {
            let handles: Vec<_> = std::mem::take(
                &mut *self
                    .inner
                    .background
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            if handles.is_empty() {
                return;
            }
            for h in handles {
                let _ = h.await;
            }
        }
    }

    /// Starts the rotation after a grant in the background, holding the combined credential
    /// only inside the task.
    pub(crate) fn spawn_rotation(
        &self,
        procedure: String,
        break_id: String,
        current: Secret,
        slot: SealSlot,
    ) {
        let engine = self.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = engine
                .rotate_after_break(&procedure, &break_id, current, slot)
                .await
            {
                tracing::error!(procedure, break_id, error = %e, "credential rotation after the break failed");
            }
        });
        let mut bg = self
            .inner
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        bg.retain(|h| !h.is_finished());
        bg.push(handle);
    }
}

/// Seals `secret` M-of-N to `recipients` with its argon2id fingerprint, as a seal of
/// `procedure`. Sealing and the fingerprint are CPU work (tens of milliseconds): they run off
/// the async workers, so requests served meanwhile do not wait.
pub(crate) async fn seal_off_thread(
    secret: Secret,
    quorum: u8,
    recipients: Vec<(String, breakglass_custody::CustodianKey)>,
    procedure: &str,
    now: breakglass_domain::Timestamp,
) -> Result<StoredSeal, EngineError> {
    let (sealed, salt, fingerprint) = tokio::task::spawn_blocking(move || {
        let sealed = breakglass_custody::seal(&secret, quorum, &recipients)?;
        let salt = breakglass_custody::random_salt();
        let fingerprint = breakglass_custody::fingerprint_secret(&secret, &salt)
            .map_err(|e| EngineError::Conflict(format!("cannot fingerprint the secret: {e}")))?;
        Ok::<_, EngineError>((sealed, salt, fingerprint))
    })
    .await
    .map_err(|e| EngineError::Conflict(format!("sealing task failed: {e}")))??;
    Ok(StoredSeal {
        seal_id: sealed.seal_id.clone(),
        procedure: procedure.to_owned(),
        threshold: sealed.threshold,
        ciphertext: sealed.ciphertext,
        commitments: sealed.commitments,
        shares: sealed.shares,
        secret_fingerprint: fingerprint.to_vec(),
        fingerprint_salt: salt.to_vec(),
        created_at: now,
    })
}

/// Which seal a rotation replaces: the procedure's own, or its drill credential's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SealSlot {
    /// The real emergency credential, sealed to the custodians.
    Procedure,
    /// The drill credential, sealed to the runner's drill identities.
    Drill,
}

impl SealSlot {
    fn event(self, kind: &'static str) -> &'static str {
        match (self, kind) {
            (SealSlot::Drill, "credential.rotation_started") => "drill_credential.rotation_started",
            (SealSlot::Drill, "credential.rotation_skipped") => "drill_credential.rotation_skipped",
            _ => kind,
        }
    }
}

/// A grant record for a break just granted on a target.
pub(crate) fn new_grant_record(
    b: &Break,
    kind: TargetKind,
    handle: serde_json::Value,
    now: breakglass_domain::Timestamp,
    deadline: breakglass_domain::Timestamp,
) -> GrantRecord {
    GrantRecord {
        break_id: b.info().id.0.clone(),
        procedure: b.info().procedure.clone(),
        kind: kind.as_str().to_owned(),
        handle,
        created_at: now,
        deadline,
        end_requested_at: None,
        end_cause: None,
        ended_at: None,
        end_attempts: 0,
        next_attempt_at: None,
        last_error: None,
    }
}

fn kind_of(s: &str) -> Option<TargetKind> {
    [
        TargetKind::Secret,
        TargetKind::Postgres,
        TargetKind::Mariadb,
        TargetKind::Ssh,
        TargetKind::Http,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
}
