//! Drills: a real break run on demand and timed end to end.
//!
//! An **automated** drill plays every part itself with the procedure's *drill credential*
//! (sealed to drill identities the runner holds, one per custodian name, never to the real
//! custodians' keys): it opens a break flagged as a drill, waits for the alerts to arrive and
//! acknowledges them, approves with the drill identities, lets the real target create the
//! grant, logs in with the granted access as a real client, waits for the deadline, checks the
//! live session was killed and the access refused, and waits for the drill credential to be
//! rotated and re-sealed. A **live** drill opens a real break (alerts say DRILL) and measures
//! the humans: alerts, acknowledgement, each approval, the grant, its end and the rotation.
//!
//! The timeline is read back from the audit log (every step is an audit entry with its time),
//! merged with what only the runner sees (the login, the session's fate). Failures can be
//! injected: `idp-down`, `channel-down:NAME`, `custodian-lost:NAME`, `target-slow`,
//! `target-down`; each affects this drill's break only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use breakglass_audit::Entry;
use breakglass_custody::{CustodianKey, PlainShare, Secret, verify_share};
use breakglass_domain::{
    Action, Actor, Break, DrillMode, Injection, KeyState, Procedure, Role, TargetKind, Timestamp,
};
use serde_json::{Value, json};

use crate::breaks::DrillOpen;
use crate::events::Record;
use crate::ports::{
    AuditAbout, DrillKeys, DrillRecord, EndCause, GrantRequest, HealthCheck, Issued,
    PrivilegedAccount, Session, StoredProcedure, Target, TargetError,
};
use crate::seal::SealSummary;
use crate::{Engine, EngineError, new_id};

/// The actor an automated drill opens its break as (role requester; its key is the runner's
/// own drill identity, so the grant is revealed to the runner only).
pub const DRILL_RUNNER: &str = "drill-runner";

/// Time-to-access budget of a drill when neither the request nor the procedure sets one.
const DEFAULT_BUDGET: Duration = Duration::from_secs(300);

/// What a drill is asked to do.
#[derive(Debug, Clone)]
pub struct DrillRequest {
    /// Automated or live.
    pub mode: DrillMode,
    /// Failures to inject.
    pub injections: Vec<Injection>,
    /// Grant length (automated default 2 s; live default the procedure's `max_grant`).
    pub grant: Option<Duration>,
    /// Acknowledgement window of the drill's alerts (automated default 1 s), capped by the
    /// procedure's `ack_within`.
    pub ack_within: Option<Duration>,
    /// Time-to-access budget; default the procedure's `drill.max_time_to_access`, else 5 min.
    pub max_time_to_access: Option<Duration>,
    /// How long to wait for each step that is not a human's (alert receipts, the end of the
    /// grant, the rotation); default 10 s.
    pub step_timeout: Option<Duration>,
}

impl DrillRequest {
    /// An automated drill with no injection and the defaults.
    pub fn automated() -> DrillRequest {
        DrillRequest {
            mode: DrillMode::Automated,
            injections: Vec::new(),
            grant: None,
            ack_within: None,
            max_time_to_access: None,
            step_timeout: None,
        }
    }

    fn step_timeout(&self) -> Duration {
        self.step_timeout.unwrap_or(Duration::from_secs(10))
    }
}

/// Failures a running drill injects into its own break.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    channels_down: Vec<String>,
    custodians_lost: Vec<String>,
    target: TargetFault,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum TargetFault {
    #[default]
    None,
    Slow(Duration),
    Down,
}

/// A target adapter with a drill's injected failure in front of it (grant and login only;
/// ending grants and rotation always reach the real adapter).
struct FaultyTarget {
    inner: Arc<dyn Target>,
    fault: TargetFault,
    drill: String,
}

impl FaultyTarget {
    async fn before(&self, procedure: &Procedure) -> Result<(), TargetError> {
        match self.fault {
            TargetFault::None => Ok(()),
            TargetFault::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            TargetFault::Down => Err(TargetError::Unreachable {
                target: procedure.id.clone(),
                message: format!(
                    "injected failure (drill {}): the target is down",
                    self.drill
                ),
            }),
        }
    }
}

#[async_trait]
impl Target for FaultyTarget {
    fn kind(&self) -> TargetKind {
        self.inner.kind()
    }

    async fn grant(
        &self,
        request: &GrantRequest<'_>,
        credential: &Secret,
    ) -> Result<Issued, TargetError> {
        self.before(request.procedure).await?;
        self.inner.grant(request, credential).await
    }

    async fn end(
        &self,
        procedure: &Procedure,
        break_id: &str,
        handle: &Value,
        cause: EndCause,
    ) -> Result<Value, TargetError> {
        self.inner.end(procedure, break_id, handle, cause).await
    }

    async fn check(&self, procedure: &Procedure) -> Result<Vec<HealthCheck>, TargetError> {
        self.inner.check(procedure).await
    }

    fn next_credential(
        &self,
        procedure: &Procedure,
        current: &Secret,
    ) -> Result<Option<Secret>, TargetError> {
        self.inner.next_credential(procedure, current)
    }

    async fn rotate(
        &self,
        procedure: &Procedure,
        current: &Secret,
        next: &Secret,
    ) -> Result<(), TargetError> {
        self.inner.rotate(procedure, current, next).await
    }

    async fn discover(&self, procedure: &Procedure) -> Result<Vec<PrivilegedAccount>, TargetError> {
        self.inner.discover(procedure).await
    }

    async fn login(
        &self,
        procedure: &Procedure,
        access: &Secret,
    ) -> Result<Box<dyn Session>, TargetError> {
        self.before(procedure).await?;
        self.inner.login(procedure, access).await
    }
}

/// The audit entries of one break, read incrementally from where the drill started.
struct Watch {
    next: u64,
    break_id: String,
    seen: Vec<Entry>,
}

impl Watch {
    async fn poll(&mut self, engine: &Engine) -> Result<(), EngineError> {
        let mut tx = engine.store().read().await?;
        loop {
            let batch = tx.audit_entries(self.next, 500).await?;
            let Some(last) = batch.last() else {
                return Ok(());
            };
            self.next = last.seq + 1;
            for e in batch {
                let ours = e.break_id.as_deref() == Some(self.break_id.as_str())
                    || e.payload.get("break").and_then(Value::as_str) == Some(&self.break_id);
                if ours {
                    self.seen.push(e);
                }
            }
        }
    }

    fn find(&self, pred: impl Fn(&Entry) -> bool) -> Option<&Entry> {
        self.seen.iter().find(|e| pred(e))
    }
}

/// What a drill observed so far.
struct Run {
    start: Timestamp,
    /// Steps only the runner sees (login, session killed…), as (time, name, detail).
    own_steps: Vec<(Timestamp, String, String)>,
    checks: Vec<Value>,
    watch: Option<Watch>,
    time_to_access_ms: Option<i64>,
    from_seq: u64,
}

impl Run {
    fn step(&mut self, at: Timestamp, name: &str, detail: impl Into<String>) {
        self.own_steps.push((at, name.to_owned(), detail.into()));
    }

    fn check(&mut self, name: &str, ok: bool, reason: impl Into<String>) {
        self.checks
            .push(json!({"check": name, "ok": ok, "reason": reason.into()}));
    }

    fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c["ok"] == true)
    }

    fn break_id(&self) -> Option<&str> {
        self.watch.as_ref().map(|w| w.break_id.as_str())
    }

    /// The timeline: audit entries of the break and the runner's own steps, by time.
    fn steps(&self) -> Vec<Value> {
        let mut all: Vec<(Timestamp, String, String)> = self
            .watch
            .iter()
            .flat_map(|w| w.seen.iter())
            .filter_map(|e| step_of(e).map(|(n, d)| (Timestamp(e.time_ms), n.to_owned(), d)))
            .collect();
        all.extend(self.own_steps.iter().cloned());
        all.sort_by_key(|(t, _, _)| *t);
        all.into_iter()
            .map(|(at, name, detail)| {
                json!({
                    "step": name,
                    "at": at.to_string(),
                    "at_ms": at.0,
                    "offset_ms": at.since(self.start),
                    "detail": detail,
                })
            })
            .collect()
    }
}

/// The custodians whose share a drill's timeline accepted: its `share accepted` steps, whose
/// detail starts with the custodian's name (`alice (1/2)`).
pub(crate) fn shares_accepted(steps: &[Value]) -> Vec<&str> {
    steps
        .iter()
        .filter(|s| s["step"] == "share accepted")
        .filter_map(|s| s["detail"].as_str())
        .filter_map(|d| d.split(" (").next())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The people a drill concerned: every custodian of the procedure with their contact, and
/// whether their share was accepted in it.
fn drill_people(p: &breakglass_domain::Procedure, steps: &[Value]) -> Vec<Value> {
    let approved = shares_accepted(steps);
    p.custodians
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "contact": c.contact,
                "approved": approved.contains(&c.name.as_str()),
            })
        })
        .collect()
}

/// The timeline step an audit entry stands for, if it is one: its name and details in words
/// (no secrets: audit payloads hold none).
pub fn step_of(e: &Entry) -> Option<(&'static str, String)> {
    let p = &e.payload;
    let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let n = |k: &str| p.get(k).and_then(Value::as_i64).unwrap_or(0);
    Some(match e.kind.as_str() {
        "break.requested" => ("requested", format!("by {}: {}", e.actor, s("reason"))),
        "alert.delivered" => (
            "alert delivered",
            format!(
                "{}: {} ({} ms to the receipt)",
                s("channel"),
                s("event"),
                n("commit_to_receipt_ms")
            ),
        ),
        "alert.acknowledged" => (
            "acknowledged",
            format!("by {} after {} ms", e.actor, n("time_to_ack_ms")),
        ),
        "alert.escalated" => (
            "escalated",
            format!(
                "to {} after {} ms without acknowledgement",
                p.get("escalated_to")
                    .map(Value::to_string)
                    .unwrap_or_default(),
                n("waited_ms")
            ),
        ),
        "share.accepted" => (
            "share accepted",
            format!("{} ({}/{})", s("custodian"), n("approvals"), n("quorum")),
        ),
        "share.rejected" => ("share rejected", s("error")),
        "grant.failed" => ("grant failed", s("error")),
        "break.granted" => (
            "unsealed and granted",
            format!("{} ms after the request", n("time_to_access_ms")),
        ),
        "grant.revealed" => ("revealed", "access delivered to the requester's key".into()),
        "break.expired" => ("expired", format!("{} ms after the deadline", n("late_ms"))),
        "break.closed" => ("closed", format!("by {}", s("closed_by"))),
        "break.lapsed" => ("lapsed", "the quorum was not reached in time".into()),
        "grant.ended" => (
            "sessions ended",
            format!(
                "{} live session(s) terminated; {} ms after the deadline",
                p["target"]
                    .get("sessions_terminated")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                n("late_ms")
            ),
        ),
        "grant.end_failed" => ("grant end failed", s("error")),
        "credential.rotation_started" | "drill_credential.rotation_started" => (
            "rotation started",
            format!(
                "new credential sealed as pending seal {}",
                s("pending_seal")
            ),
        ),
        "credential.rotated" | "drill_credential.rotated" => (
            "rotated and re-sealed",
            format!("changed on the target; seal {}", s("seal_id")),
        ),
        "credential.rotation_failed" | "drill_credential.rotation_failed" => {
            ("rotation failed", s("error"))
        }
        _ => return None,
    })
}

/// One step of a break's timeline, read back from the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineStep {
    /// The audit entry it comes from.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// The step's name (`requested`, `alert delivered`, `share accepted`…).
    pub step: &'static str,
    /// What happened, in words.
    pub detail: String,
}

/// Audit entries read back per page while looking for the start of a break.
const TIMELINE_PAGE: i64 = 500;
/// Pages read at most: a break's timeline older than this many of its procedure's entries
/// is shown from where the pages ended.
const TIMELINE_PAGES: usize = 20;

impl Engine {
    /// A break and its timeline so far (the web UI's live view): the entries of the break and
    /// the procedure entries that name it (rotation), oldest first.
    pub async fn break_timeline(
        &self,
        by: &Actor,
        id: &str,
    ) -> Result<(Break, Vec<TimelineStep>), EngineError> {
        by.may(Action::Read)?;
        let mut tx = self.store().read().await?;
        let b = crate::breaks::load_break(tx.as_mut(), id).await?;
        let procedure = b.info().procedure.clone();
        let mut steps = Vec::new();
        let mut before = u64::MAX;
        'pages: for _ in 0..TIMELINE_PAGES {
            let page = tx
                .audit_entries_about(AuditAbout::Procedure(&procedure), before, TIMELINE_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            before = last.seq;
            let full = page.len() as i64 == TIMELINE_PAGE;
            for e in page {
                let ours = e.break_id.as_deref() == Some(id)
                    || e.payload.get("break").and_then(Value::as_str) == Some(id);
                if !ours {
                    continue;
                }
                let start = e.kind == "break.requested";
                if let Some((step, detail)) = step_of(&e) {
                    steps.push(TimelineStep {
                        seq: e.seq,
                        at: Timestamp(e.time_ms),
                        step,
                        detail,
                    });
                }
                if start {
                    break 'pages;
                }
            }
            if !full {
                break;
            }
        }
        steps.reverse();
        Ok((b, steps))
    }

    /// The adapter for a break's grant: for a drill's break, with its injected failure.
    pub(crate) fn target_for(
        &self,
        kind: TargetKind,
        drill: Option<&str>,
    ) -> Result<Arc<dyn Target>, EngineError> {
        let inner = self.target(kind)?;
        let fault = drill
            .and_then(|d| self.faults().get(d).map(|f| f.target))
            .unwrap_or_default();
        Ok(match (fault, drill) {
            (TargetFault::None, _) | (_, None) => inner,
            (fault, Some(d)) => Arc::new(FaultyTarget {
                inner,
                fault,
                drill: d.to_owned(),
            }),
        })
    }

    /// Why an alert of `drill` to `channel` must fail, when the drill injected its outage.
    pub(crate) fn injected_channel_down(&self, drill: &str, channel: &str) -> Option<String> {
        let faults = self.faults();
        let f = faults.get(drill)?;
        f.channels_down
            .iter()
            .any(|c| c == channel)
            .then(|| format!("injected failure (drill {drill}): channel `{channel}` is down"))
    }

    /// Whether `drill` declared `custodian`'s key lost.
    pub(crate) fn injected_custodian_lost(&self, drill: &str, custodian: &str) -> bool {
        self.faults()
            .get(drill)
            .is_some_and(|f| f.custodians_lost.iter().any(|c| c == custodian))
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, HashMap<String, Faults>> {
        self.inner.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn drill_keys(&self) -> Result<&Arc<dyn DrillKeys>, EngineError> {
        self.inner.drill_keys.as_ref().ok_or_else(|| {
            EngineError::Invalid("this server holds no drill identities (no data directory)".into())
        })
    }

    fn drill_identity(&self, name: &str) -> Result<breakglass_custody::Identity, EngineError> {
        self.drill_keys()?
            .identity(name)
            .map_err(|e| EngineError::Conflict(format!("drill identity `{name}`: {e}")))
    }

    /// The drill identities' public keys, one per custodian of the procedure.
    pub(crate) fn drill_recipients(
        &self,
        procedure: &Procedure,
    ) -> Result<Vec<(String, CustodianKey)>, EngineError> {
        procedure
            .custodians
            .iter()
            .map(|c| Ok((c.name.clone(), self.drill_identity(&c.name)?.public())))
            .collect()
    }

    /// Seals a procedure's drill credential (for PostgreSQL, a role that may create roles and
    /// grant the procedure's role) to the runner's drill identities, M-of-N like the real one.
    /// The real seal is not touched.
    pub async fn seal_drill(
        &self,
        by: &Actor,
        procedure: &str,
        secret: Secret,
    ) -> Result<SealSummary, EngineError> {
        by.may(Action::Seal)?;
        let stored = self.read_procedure_status(procedure).await?;
        check_drill_credential(&stored.procedure, &secret)?;
        let recipients = self.drill_recipients(&stored.procedure)?;
        let names: Vec<String> = recipients.iter().map(|(n, _)| n.clone()).collect();
        let now = self.now();
        let seal = crate::grants::seal_off_thread(
            secret,
            stored.procedure.quorum,
            recipients,
            procedure,
            now,
        )
        .await?;
        let mut tx = self.store().begin().await?;
        let replaces = tx.drill_seal(procedure).await?;
        tx.insert_seal(&seal).await?;
        tx.put_drill_seal(procedure, &seal.seal_id, now).await?;
        let mut record = Record::default();
        record.procedure_event(
            now,
            &by.name,
            "drill_credential.sealed",
            procedure,
            json!({
                "seal_id": seal.seal_id,
                "threshold": seal.threshold,
                "drill_identities": names,
                "replaces": replaces,
            }),
        );
        self.commit(tx, record).await?;
        Ok(SealSummary {
            seal_id: seal.seal_id,
            procedure: procedure.to_owned(),
            threshold: seal.threshold,
            custodians: names,
            replaces,
            cleared_taint: None,
        })
    }

    async fn read_procedure_status(&self, id: &str) -> Result<StoredProcedure, EngineError> {
        self.store()
            .read()
            .await?
            .procedure(id)
            .await?
            .ok_or_else(|| EngineError::not_found("procedure", id))
    }

    /// Starts a drill in the background and returns it as `running`.
    pub async fn start_drill(
        &self,
        by: &Actor,
        procedure: &str,
        request: DrillRequest,
    ) -> Result<DrillRecord, EngineError> {
        if let Some(d) = self.external_drill(by, procedure, &request).await? {
            return Ok(d);
        }
        let (record, stored, from_seq) = self.prepare_drill(by, procedure, &request).await?;
        let engine = self.clone();
        let by = by.clone();
        let started = record.clone();
        tokio::spawn(async move {
            let id = record.id.clone();
            if let Err(e) = engine
                .execute_drill(record, stored, request, by, from_seq)
                .await
            {
                tracing::error!(drill = id, error = %e, "drill could not record its result");
            }
        });
        Ok(started)
    }

    /// Runs a drill to the end and returns its record with the report.
    pub async fn run_drill(
        &self,
        by: &Actor,
        procedure: &str,
        request: DrillRequest,
    ) -> Result<DrillRecord, EngineError> {
        // People do an external-custody drill's steps: it runs until they confirm them all.
        if let Some(d) = self.external_drill(by, procedure, &request).await? {
            return Ok(d);
        }
        let (record, stored, from_seq) = self.prepare_drill(by, procedure, &request).await?;
        self.execute_drill(record, stored, request, by.clone(), from_seq)
            .await
    }

    /// Starts the drill of an external-custody procedure (`None` for any other procedure).
    async fn external_drill(
        &self,
        by: &Actor,
        procedure: &str,
        request: &DrillRequest,
    ) -> Result<Option<DrillRecord>, EngineError> {
        by.may(Action::RunDrill)?;
        let stored = self.read_procedure_status(procedure).await?;
        if stored.procedure.external.is_none() {
            return Ok(None);
        }
        let injections: Vec<String> = request.injections.iter().map(|i| i.to_string()).collect();
        self.start_external_drill(by, &stored, &injections)
            .await
            .map(Some)
    }

    /// Drills, newest first.
    pub async fn drills(
        &self,
        by: &Actor,
        procedure: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DrillRecord>, EngineError> {
        by.may(Action::Read)?;
        Ok(self.store().read().await?.drills(procedure, limit).await?)
    }

    /// The latest finished drill of every procedure, without an actor (the metrics page).
    pub async fn latest_drills_all(&self) -> Result<Vec<DrillRecord>, EngineError> {
        Ok(self.store().read().await?.latest_drills().await?)
    }

    /// One drill.
    pub async fn drill(&self, by: &Actor, id: &str) -> Result<DrillRecord, EngineError> {
        by.may(Action::Read)?;
        self.store()
            .read()
            .await?
            .drill(id)
            .await?
            .ok_or_else(|| EngineError::not_found("drill", id))
    }

    /// At start-up: a drill still `running` was interrupted by the restart; it is failed with
    /// that reason (its break ends through the usual sweep).
    pub async fn fail_interrupted_drills(&self) -> Result<usize, EngineError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let running: Vec<DrillRecord> = tx
            .drills(None, 10_000)
            .await?
            .into_iter()
            .filter(|d| d.outcome == "running")
            // An external-custody drill is people doing steps; its state is in the store
            // and it goes on after a restart.
            .filter(|d| d.mode != "external")
            .collect();
        if running.is_empty() {
            return Ok(0);
        }
        let mut record = Record::default();
        for mut d in running.clone() {
            d.outcome = "failed".into();
            d.finished_at = Some(now);
            if let Some(checks) = d.report.get_mut("checks").and_then(Value::as_array_mut) {
                checks.push(json!({"check": "drill completed", "ok": false, "reason": "the server restarted while the drill ran"}));
            } else {
                d.report = json!({"steps": [], "checks": [{"check": "drill completed", "ok": false, "reason": "the server restarted while the drill ran"}]});
            }
            tx.put_drill(&d).await?;
            record.procedure_event(
                now,
                "breakglass",
                "drill.finished",
                &d.procedure,
                json!({"drill": d.id, "outcome": "failed", "why": "interrupted by a server restart"}),
            );
        }
        self.commit(tx, record).await?;
        Ok(running.len())
    }

    /// Checks the request, records the drill as running (audited) and returns it.
    async fn prepare_drill(
        &self,
        by: &Actor,
        procedure: &str,
        request: &DrillRequest,
    ) -> Result<(DrillRecord, StoredProcedure, u64), EngineError> {
        by.may(Action::RunDrill)?;
        let stored = self.read_procedure_status(procedure).await?;
        let p = &stored.procedure;
        for inj in &request.injections {
            inj.check(p).map_err(EngineError::Invalid)?;
        }
        let kind = p.target.kind;
        match request.mode {
            DrillMode::Automated => {
                if kind != TargetKind::Postgres {
                    return Err(EngineError::Invalid(format!(
                        "automated drills need a drill credential with the same grant path and a real client login, which breakglass has for postgres targets; `{procedure}` is a `{}` target: run a live drill (`--live`)",
                        kind.as_str()
                    )));
                }
                self.target(kind)?;
                self.drill_keys()?;
                if self
                    .store()
                    .read()
                    .await?
                    .drill_seal(procedure)
                    .await?
                    .is_none()
                {
                    return Err(EngineError::Invalid(format!(
                        "`{procedure}` has no drill credential; seal one with `breakglass seal {procedure} --drill`"
                    )));
                }
            }
            DrillMode::Live => {
                by.may(Action::OpenBreak)?;
                if by.key.is_none() {
                    return Err(EngineError::Invalid(format!(
                        "a live drill opens a real break for `{}`, who has no enrolled key to receive the grant",
                        by.name
                    )));
                }
            }
        }
        let now = self.now();
        let record = DrillRecord {
            id: new_id("drl_"),
            procedure: procedure.to_owned(),
            mode: request.mode.as_str().to_owned(),
            injections: request.injections.iter().map(|i| i.to_string()).collect(),
            requested_by: by.name.clone(),
            started_at: now,
            finished_at: None,
            outcome: "running".into(),
            break_id: None,
            content_hash: stored.content_hash.clone(),
            time_to_access_ms: None,
            report: json!({"steps": [], "checks": []}),
        };
        let mut tx = self.store().begin().await?;
        let from_seq = tx.audit_head().await?.map(|h| h.seq).unwrap_or(0) + 1;
        tx.put_drill(&record).await?;
        let mut audit = Record::default();
        audit.procedure_event(
            now,
            &by.name,
            "drill.started",
            procedure,
            json!({"drill": record.id, "mode": record.mode, "injections": record.injections}),
        );
        self.commit(tx, audit).await?;
        Ok((record, stored, from_seq))
    }

    async fn execute_drill(
        &self,
        mut record: DrillRecord,
        stored: StoredProcedure,
        request: DrillRequest,
        by: Actor,
        from_seq: u64,
    ) -> Result<DrillRecord, EngineError> {
        let mut run = Run {
            start: record.started_at,
            own_steps: Vec::new(),
            checks: Vec::new(),
            watch: None,
            time_to_access_ms: None,
            from_seq,
        };
        let faults = self.faults_for(&stored.procedure, &request);
        self.faults().insert(record.id.clone(), faults.clone());
        let result = match request.mode {
            DrillMode::Automated => {
                self.automated(&mut run, &record, &stored, &request, &faults)
                    .await
            }
            DrillMode::Live => {
                self.live(&mut run, &record, &stored, &request, &faults, &by)
                    .await
            }
        };
        if let Err(e) = result {
            run.check("drill completed", false, e.to_string());
        }
        // A drill that stopped early leaves nothing open.
        if let Some(break_id) = run.break_id().map(str::to_owned) {
            self.end_drill_break(&break_id, &record.requested_by, request.mode)
                .await;
            if let Some(w) = run.watch.as_mut() {
                let _ = w.poll(self).await;
            }
        }
        self.faults().remove(&record.id);

        let now = self.now();
        let passed = run.passed();
        record.finished_at = Some(now);
        record.outcome = if passed { "passed" } else { "failed" }.into();
        record.break_id = run.break_id().map(str::to_owned);
        record.time_to_access_ms = run.time_to_access_ms;
        let steps = run.steps();
        let people = drill_people(&stored.procedure, &steps);
        record.report = json!({"steps": steps, "checks": run.checks, "people": people});
        let failed: Vec<Value> = run
            .checks
            .iter()
            .filter(|c| c["ok"] == false)
            .cloned()
            .collect();
        let mut tx = self.store().begin().await?;
        tx.put_drill(&record).await?;
        let mut audit = Record::default();
        let payload = json!({
            "drill": record.id,
            "mode": record.mode,
            "outcome": record.outcome,
            "break": record.break_id,
            "time_to_access_ms": record.time_to_access_ms,
            "injections": record.injections,
            "failed_checks": failed,
            "content_hash": record.content_hash,
        });
        if passed {
            audit.procedure_event(
                now,
                "breakglass",
                "drill.finished",
                &record.procedure,
                payload,
            );
        } else {
            audit.procedure_alert(
                now,
                "breakglass",
                "drill.failed",
                &stored.procedure,
                payload,
            );
        }
        self.commit(tx, audit).await?;
        Ok(record)
    }

    fn faults_for(&self, p: &Procedure, request: &DrillRequest) -> Faults {
        let mut f = Faults::default();
        let budget = self.budget(p, request);
        for inj in &request.injections {
            match inj {
                Injection::ChannelDown(c) => f.channels_down.push(c.clone()),
                Injection::CustodianLost(c) => f.custodians_lost.push(c.clone()),
                Injection::TargetDown => f.target = TargetFault::Down,
                Injection::TargetSlow(d) => {
                    f.target = TargetFault::Slow(d.unwrap_or(budget + Duration::from_secs(1)));
                }
                Injection::IdpDown => {
                    let idps = self.identity_providers(p);
                    for c in p.alert_channels.iter().chain(&p.escalation) {
                        if idps.iter().any(|i| i.eq_ignore_ascii_case(c)) {
                            f.channels_down.push(c.clone());
                        }
                    }
                    let target_on_idp = ["connection", "host"].iter().any(|k| {
                        p.target
                            .details
                            .get(*k)
                            .is_some_and(|v| idps.iter().any(|i| i.eq_ignore_ascii_case(v)))
                    });
                    if target_on_idp {
                        f.target = TargetFault::Down;
                    }
                }
            }
        }
        f
    }

    fn budget(&self, p: &Procedure, request: &DrillRequest) -> Duration {
        request
            .max_time_to_access
            .or(p.drill_max_time_to_access)
            .unwrap_or(DEFAULT_BUDGET)
    }

    /// The identity providers a drill's `idp-down` takes down: the server's declared ones
    /// and the outages the procedure protects against.
    fn identity_providers(&self, p: &Procedure) -> Vec<String> {
        let mut idps: Vec<String> = self
            .config()
            .identity_providers
            .iter()
            .chain(&p.protects_against)
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        idps.sort();
        idps.dedup();
        idps
    }

    /// Checks shared by both modes: `idp-down` and lost custodians. Returns the custodians
    /// who can still approve, or `None` when the quorum is out of reach.
    async fn preflight(
        &self,
        run: &mut Run,
        p: &Procedure,
        request: &DrillRequest,
        faults: &Faults,
    ) -> Result<Option<Vec<String>>, EngineError> {
        if request.injections.contains(&Injection::IdpDown) {
            let idps = self.identity_providers(p);
            if idps.is_empty() {
                run.check(
                    "independent of identity providers",
                    false,
                    "idp-down injected but no identity provider is declared: list it in the procedure's `protects_against` or start the server with `--identity-provider NAME`",
                );
            } else {
                let w = breakglass_domain::readiness::what_if(p, &idps, &[]);
                let mut blockers = w.blockers.clone();
                for c in &faults.channels_down {
                    if idps.iter().any(|i| i.eq_ignore_ascii_case(c)) {
                        blockers.push(format!("alert channel `{c}` is the identity provider"));
                    }
                }
                let ok = blockers.is_empty();
                run.check(
                    "independent of identity providers",
                    ok,
                    if ok {
                        format!(
                            "with {} down no step depends on them: custodians approve with their own keys, not through a sign-in provider",
                            idps.join(", ")
                        )
                    } else {
                        format!("with {} down: {}", idps.join(", "), blockers.join("; "))
                    },
                );
            }
        }
        let now = self.now();
        let attestations = self.store().read().await?.attestations().await?;
        let states = crate::readiness::key_states(p, &attestations, now);
        let lost: Vec<String> = p
            .custodians
            .iter()
            .filter(|c| {
                faults.custodians_lost.contains(&c.name)
                    || states
                        .iter()
                        .any(|(n, k)| n == &c.name && *k == KeyState::Lost)
            })
            .map(|c| c.name.clone())
            .collect();
        let available: Vec<String> = p
            .custodians
            .iter()
            .filter(|c| !lost.contains(&c.name))
            .map(|c| c.name.clone())
            .collect();
        let quorum = usize::from(p.quorum);
        if !lost.is_empty() {
            let ok = available.len() >= quorum;
            run.check(
                "quorum reachable without lost custodians",
                ok,
                format!(
                    "{} lost; {} of the {quorum} approvals needed remain ({})",
                    lost.join(", "),
                    available.len(),
                    if available.is_empty() {
                        "nobody".to_owned()
                    } else {
                        available.join(", ")
                    }
                ),
            );
        }
        Ok((available.len() >= quorum).then_some(available))
    }

    async fn automated(
        &self,
        run: &mut Run,
        record: &DrillRecord,
        stored: &StoredProcedure,
        request: &DrillRequest,
        faults: &Faults,
    ) -> Result<(), EngineError> {
        let p = &stored.procedure;
        let Some(available) = self.preflight(run, p, request, faults).await? else {
            return Ok(());
        };
        let runner_identity = self.drill_identity(DRILL_RUNNER)?;
        let runner = self.drill_runner(&runner_identity).await?;
        let drill_seal_id = self
            .store()
            .read()
            .await?
            .drill_seal(&p.id)
            .await?
            .ok_or_else(|| EngineError::Invalid(format!("`{}` has no drill credential", p.id)))?;
        let budget = self.budget(p, request);
        let step = request.step_timeout();
        let started = tokio::time::Instant::now();
        let grant = request
            .grant
            .unwrap_or(Duration::from_secs(2))
            .min(p.max_grant);
        let opened = self
            .open_break_as(
                &runner,
                &p.id,
                &format!("automated drill {}", record.id),
                &record.id,
                Some(grant),
                Some(DrillOpen {
                    id: record.id.clone(),
                    seal_id: Some(drill_seal_id.clone()),
                    ack_within: Some(request.ack_within.unwrap_or(Duration::from_secs(1))),
                }),
            )
            .await;
        let Some(requested) = self.watch_opened(run, record, opened).await? else {
            return Ok(());
        };
        let break_id = requested.info.id.0.clone();

        // Alerts: every channel that is up must return a receipt; then acknowledge, unless a
        // channel is down, in which case nobody acknowledges and the alert must escalate.
        self.alerts_arrived(run, p, faults, step).await?;
        let channel_down = p
            .alert_channels
            .iter()
            .any(|c| faults.channels_down.contains(c));
        if !channel_down
            && !p.alert_channels.is_empty()
            && let Err(e) = self
                .acknowledge(&self.ack_token(&break_id), DRILL_RUNNER)
                .await
        {
            run.check("acknowledged", false, e.to_string());
        }

        // Approvals with the drill identities, in file order, skipping the lost.
        let seal = self
            .store()
            .read()
            .await?
            .seal(&drill_seal_id)
            .await?
            .ok_or_else(|| EngineError::not_found("seal", drill_seal_id.clone()))?;
        // Drill identities are the server's, not the custodians': no person approves, so no
        // second factor is exercised. Said in the report when one would be asked for.
        let totp_active = {
            let mut r = self.store().read().await?;
            self.totp_active(r.as_mut()).await?
        };
        let second_factor_of: Vec<&String> = available
            .iter()
            .take(usize::from(p.quorum))
            .filter(|n| {
                totp_active.contains(n)
                    || p.second_factor
                        .is_some_and(|rule| p.custodian(n).is_none_or(|c| rule.needs_totp(&c.key)))
            })
            .collect();
        if !second_factor_of.is_empty() {
            run.step(
                self.now(),
                "second factor not exercised",
                format!(
                    "automated drills approve with drill identities; the TOTP codes of {} were not asked for (a live drill asks for them)",
                    second_factor_of
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let mut granted_at = None;
        for name in available.iter().take(usize::from(p.quorum)) {
            let identity = self.drill_identity(name)?;
            let share = seal
                .shares
                .iter()
                .find(|s| &s.custodian == name)
                .ok_or_else(|| {
                    EngineError::Conflict(format!("the drill seal has no share for `{name}`"))
                })?;
            let plain = breakglass_custody::decrypt_share(&share.age_file, &identity)?;
            let encoded = plain.encode();
            let as_custodian = Actor {
                name: name.clone(),
                roles: vec![Role::Custodian],
                key: None,
            };
            let remaining = budget.saturating_sub(started.elapsed());
            let approved = tokio::time::timeout(
                remaining,
                self.approve_as(
                    &as_custodian,
                    DRILL_RUNNER,
                    &break_id,
                    &encoded,
                    crate::totp::SecondFactorProof::DrillExempt,
                ),
            )
            .await;
            match approved {
                Err(_) => {
                    run.check(
                        "granted",
                        false,
                        format!(
                            "no grant within the time-to-access budget of {}: the target did not answer in time{}",
                            humantime::format_duration(budget),
                            slow_note(faults)
                        ),
                    );
                    return Ok(());
                }
                Ok(Err(e)) => {
                    run.check(
                        "granted",
                        false,
                        format!("approval by `{name}` failed: {e}"),
                    );
                    return Ok(());
                }
                Ok(Ok(out)) => {
                    if let Break::Granted(g) = &out.state {
                        granted_at = Some(g.granted_at);
                    }
                }
            }
        }
        let Some(granted_at) = granted_at else {
            run.check("granted", false, "the quorum of approvals did not grant");
            return Ok(());
        };
        run.check(
            "granted",
            true,
            format!(
                "{} of {} drill identities approved; the target created the grant {} ms after the request",
                p.quorum,
                p.custodians.len(),
                granted_at.since(requested.info.requested_at)
            ),
        );

        // The grant reaches the requester (the runner) and a real client logs in with it.
        let revealed = self.reveal(&runner, &break_id).await?;
        let access = breakglass_custody::decrypt_with(&runner_identity, &revealed.age_file)
            .map_err(|e| EngineError::Conflict(format!("cannot open the drill grant: {e}")))?;
        let access = Secret::new(access.to_vec());
        let target = self.target_for(p.target.kind, Some(&record.id))?;
        let remaining = budget.saturating_sub(started.elapsed());
        let session = match tokio::time::timeout(remaining, target.login(p, &access)).await {
            Err(_) => {
                run.check(
                    "first login",
                    false,
                    format!(
                        "no login within the time-to-access budget of {}{}",
                        humantime::format_duration(budget),
                        slow_note(faults)
                    ),
                );
                return Ok(());
            }
            Ok(Err(e)) => {
                run.check("first login", false, e.to_string());
                return Ok(());
            }
            Ok(Ok(mut s)) => match s.ping().await {
                Ok(()) => s,
                Err(e) => {
                    run.check("first login", false, e.to_string());
                    return Ok(());
                }
            },
        };
        let login_at = self.now();
        let mut session = session;
        let tta = login_at.since(requested.info.requested_at);
        run.time_to_access_ms = Some(tta);
        run.step(
            login_at,
            "first login",
            format!(
                "a real {} client logged in with the grant",
                p.target.kind.as_str()
            ),
        );
        run.check("first login", true, format!("{tta} ms after the request"));
        let within = u128::try_from(tta).unwrap_or(0) <= budget.as_millis();
        run.check(
            "time to access within budget",
            within,
            format!(
                "{tta} ms; the budget is {}{}",
                humantime::format_duration(budget),
                if within {
                    String::new()
                } else {
                    slow_note(faults)
                }
            ),
        );

        if channel_down {
            self.escalation_arrived(run, p, faults, step).await?;
        }

        // The deadline: the grant expires, the target ends it and kills the live session.
        let deadline = requested.info.requested_at.plus(grant);
        let wait =
            Duration::from_millis(u64::try_from(deadline.since(self.now()).max(0)).unwrap_or(0))
                + step;
        let expired = self
            .wait_for(run, wait, |e| e.kind == "break.expired")
            .await?;
        let ended = self
            .wait_for(run, step, |e| {
                e.kind == "grant.ended" || e.kind == "grant.end_failed"
            })
            .await?;
        match (&expired, &ended) {
            (Some(_), Some(e)) if e.kind == "grant.ended" => run.check(
                "grant ended at expiry",
                true,
                format!(
                    "the target ended the grant {} ms after the deadline",
                    e.payload["late_ms"].as_i64().unwrap_or(0)
                ),
            ),
            (None, _) => run.check(
                "grant ended at expiry",
                false,
                format!(
                    "the break did not expire within {} of its deadline",
                    humantime::format_duration(step)
                ),
            ),
            (Some(_), Some(e)) => run.check(
                "grant ended at expiry",
                false,
                format!(
                    "the target did not end the grant: {}",
                    e.payload["error"].as_str().unwrap_or("")
                ),
            ),
            (Some(_), None) => run.check(
                "grant ended at expiry",
                false,
                format!(
                    "no confirmation from the target within {}",
                    humantime::format_duration(step)
                ),
            ),
        }
        let killed = session.ping().await;
        let now = self.now();
        match killed {
            Err(e) => {
                run.step(now, "live session gone", e.to_string());
                run.check(
                    "live session killed",
                    true,
                    "the session opened with the grant no longer answers",
                );
            }
            Ok(()) => run.check(
                "live session killed",
                false,
                "the session opened with the grant still answers after the grant ended",
            ),
        }
        drop(session);
        match target.login(p, &access).await {
            Ok(_) => run.check(
                "access refused after expiry",
                false,
                "a fresh login with the expired grant succeeded",
            ),
            Err(e) => {
                run.step(self.now(), "login refused", e.to_string());
                run.check(
                    "access refused after expiry",
                    true,
                    format!("a fresh login was refused ({})", e.code()),
                );
            }
        }
        drop(access);

        // The drill credential is rotated on the target and re-sealed to the drill identities.
        let rotated = self
            .wait_for(run, step, |e| {
                e.kind == "drill_credential.rotated" || e.kind == "drill_credential.rotation_failed"
            })
            .await?;
        match rotated {
            Some(e) if e.kind == "drill_credential.rotated" => {
                run.check(
                    "rotated and re-sealed",
                    true,
                    format!(
                        "new drill seal {}",
                        e.payload["seal_id"].as_str().unwrap_or("")
                    ),
                );
                let seal_id = e.payload["seal_id"].as_str().unwrap_or("").to_owned();
                let opened = self.open_drill_seal(p, &seal_id, &available).await;
                run.step(
                    self.now(),
                    "re-seal verified",
                    match &opened {
                        Ok(()) => "the new drill seal opens with the drill identities".to_owned(),
                        Err(e) => e.to_string(),
                    },
                );
                run.check(
                    "re-sealed credential opens",
                    opened.is_ok(),
                    match opened {
                        Ok(()) => format!("{} drill identities recombine the new seal", p.quorum),
                        Err(e) => e.to_string(),
                    },
                );
            }
            Some(e) => run.check(
                "rotated and re-sealed",
                false,
                e.payload["error"]
                    .as_str()
                    .unwrap_or("rotation failed")
                    .to_owned(),
            ),
            None => run.check(
                "rotated and re-sealed",
                false,
                format!("no rotation within {}", humantime::format_duration(step)),
            ),
        }
        Ok(())
    }

    /// A live drill: a real break on the real seal, flagged as a drill. The runner watches
    /// the humans and the server until the break ended and the credential was rotated.
    async fn live(
        &self,
        run: &mut Run,
        record: &DrillRecord,
        stored: &StoredProcedure,
        request: &DrillRequest,
        faults: &Faults,
        by: &Actor,
    ) -> Result<(), EngineError> {
        let p = &stored.procedure;
        if self.preflight(run, p, request, faults).await?.is_none() {
            return Ok(());
        }
        let budget = self.budget(p, request);
        let step = request.step_timeout();
        let opened = self
            .open_break_as(
                by,
                &p.id,
                &format!("live drill {}", record.id),
                &record.id,
                request.grant,
                Some(DrillOpen {
                    id: record.id.clone(),
                    seal_id: None,
                    ack_within: request.ack_within,
                }),
            )
            .await;
        let Some(requested) = self.watch_opened(run, record, opened).await? else {
            return Ok(());
        };
        self.alerts_arrived(run, p, faults, step).await?;
        // Humans: wait until the break ends (the approval window, then the grant).
        let longest = self.config().approval_window + requested.info.duration + step;
        let end = self
            .wait_for(run, longest, |e| {
                matches!(
                    e.kind.as_str(),
                    "break.expired" | "break.closed" | "break.lapsed"
                )
            })
            .await?;
        let w = run
            .watch
            .as_ref()
            .map(|w| w.seen.clone())
            .unwrap_or_default();
        let acked = w.iter().find(|e| e.kind == "alert.acknowledged");
        if !p.alert_channels.is_empty() {
            run.check(
                "acknowledged",
                acked.is_some(),
                match acked {
                    Some(e) => format!(
                        "by {} after {} ms",
                        e.actor,
                        e.payload["time_to_ack_ms"].as_i64().unwrap_or(0)
                    ),
                    None => "nobody acknowledged the alert".into(),
                },
            );
        }
        if p.alert_channels
            .iter()
            .any(|c| faults.channels_down.contains(c))
        {
            self.escalation_arrived(run, p, faults, step).await?;
        }
        let granted = w.iter().find(|e| e.kind == "break.granted");
        match granted {
            Some(g) => {
                let tta = g.time_ms - requested.info.requested_at.0;
                run.time_to_access_ms = Some(tta);
                run.check(
                    "granted",
                    true,
                    format!("quorum reached {tta} ms after the request"),
                );
                let within = u128::try_from(tta).unwrap_or(0) <= budget.as_millis();
                run.check(
                    "time to access within budget",
                    within,
                    format!(
                        "{tta} ms; the budget is {}",
                        humantime::format_duration(budget)
                    ),
                );
            }
            None => {
                run.check(
                    "granted",
                    false,
                    match &end {
                        Some(e) => format!("the break ended ({}) without a grant", e.kind),
                        None => "no grant before the drill gave up".into(),
                    },
                );
                return Ok(());
            }
        }
        if end.is_none() {
            run.check(
                "grant ended",
                false,
                "the break had not ended when the drill gave up",
            );
            return Ok(());
        }
        if p.target.kind != TargetKind::Secret {
            let ended = self
                .wait_for(run, step, |e| e.kind == "grant.ended")
                .await?;
            run.check(
                "grant ended",
                ended.is_some(),
                match &ended {
                    Some(e) => format!(
                        "{} live session(s) terminated",
                        e.payload["target"]["sessions_terminated"]
                            .as_i64()
                            .unwrap_or(0)
                    ),
                    None => "the target did not confirm the end".into(),
                },
            );
            let rotated = self
                .wait_for(run, step, |e| {
                    e.kind == "credential.rotated" || e.kind == "credential.rotation_failed"
                })
                .await?;
            run.check(
                "rotated and re-sealed",
                rotated
                    .as_ref()
                    .is_some_and(|e| e.kind == "credential.rotated"),
                match &rotated {
                    Some(e) if e.kind == "credential.rotated" => {
                        format!("new seal {}", e.payload["seal_id"].as_str().unwrap_or(""))
                    }
                    Some(e) => e.payload["error"]
                        .as_str()
                        .unwrap_or("rotation failed")
                        .to_owned(),
                    None => "no rotation recorded".into(),
                },
            );
        } else {
            run.check("grant ended", true, "the reveal window closed");
        }
        Ok(())
    }

    /// Waits for every channel that is up to return a receipt of the request's alert, and
    /// records the injected failures of the others.
    async fn alerts_arrived(
        &self,
        run: &mut Run,
        p: &Procedure,
        faults: &Faults,
        step: Duration,
    ) -> Result<(), EngineError> {
        if p.alert_channels.is_empty() {
            run.check(
                "alerted",
                false,
                "the procedure declares no alert channel: nobody is told",
            );
            return Ok(());
        }
        let up: Vec<String> = p
            .alert_channels
            .iter()
            .filter(|c| !faults.channels_down.contains(c))
            .cloned()
            .collect();
        let delivered = |run: &Run, c: &str| {
            run.watch.as_ref().is_some_and(|w| {
                w.find(|e| {
                    e.kind == "alert.delivered"
                        && e.payload["channel"] == c
                        && e.payload["event"] == "break.requested"
                })
                .is_some()
            })
        };
        let until = tokio::time::Instant::now() + step;
        loop {
            self.drive().await;
            if let Some(w) = run.watch.as_mut() {
                w.poll(self).await?;
            }
            if up.iter().all(|c| delivered(run, c)) || tokio::time::Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let missing: Vec<&String> = up.iter().filter(|c| !delivered(run, c)).collect();
        let down: Vec<&String> = p
            .alert_channels
            .iter()
            .filter(|c| faults.channels_down.contains(c))
            .collect();
        for c in &down {
            run.step(
                self.now(),
                "alert failed",
                format!("{c}: channel down (injected)"),
            );
        }
        let ok = missing.is_empty() && !up.is_empty();
        run.check(
            "alerted",
            ok || (missing.is_empty() && !down.is_empty()),
            if up.is_empty() {
                format!(
                    "every alert channel is down ({}); only escalation can tell anyone",
                    p.alert_channels.join(", ")
                )
            } else if missing.is_empty() {
                format!("receipts from {}", up.join(", "))
            } else {
                format!(
                    "no receipt within {} from {}",
                    humantime::format_duration(step),
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        );
        Ok(())
    }

    /// With an alert channel down nobody acknowledges: the alert must escalate, and the
    /// escalation must reach a channel that is up.
    async fn escalation_arrived(
        &self,
        run: &mut Run,
        p: &Procedure,
        faults: &Faults,
        step: Duration,
    ) -> Result<(), EngineError> {
        let up: Vec<&String> = p
            .escalation
            .iter()
            .filter(|c| !faults.channels_down.contains(c))
            .collect();
        if p.ack_within.is_none() || p.escalation.is_empty() {
            run.check(
                "escalated",
                false,
                "an alert channel was down and the procedure declares no `ack_within` and `escalation`: nothing escalates",
            );
            return Ok(());
        }
        if up.is_empty() {
            run.check("escalated", false, "every escalation channel is down too");
            return Ok(());
        }
        let ack_wait = p
            .ack_within
            .unwrap_or_default()
            .min(Duration::from_secs(600));
        let found = self
            .wait_for(run, ack_wait + step, |e| {
                e.kind == "alert.delivered"
                    && e.payload["event"] == "alert.escalated"
                    && up.iter().any(|c| e.payload["channel"] == c.as_str())
            })
            .await?;
        run.check(
            "escalated",
            found.is_some(),
            match &found {
                Some(e) => format!(
                    "nobody acknowledged; the escalation reached {}",
                    e.payload["channel"].as_str().unwrap_or("")
                ),
                None => format!(
                    "no escalation reached {} in time",
                    up.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            },
        );
        Ok(())
    }

    /// Polls the break's audit entries (driving deliveries, escalations and the expiry sweep
    /// as the server's workers do) until one matches or `within` passes.
    async fn wait_for(
        &self,
        run: &mut Run,
        within: Duration,
        pred: impl Fn(&Entry) -> bool,
    ) -> Result<Option<Entry>, EngineError> {
        let until = tokio::time::Instant::now() + within;
        loop {
            self.drive().await;
            if let Some(w) = run.watch.as_mut() {
                w.poll(self).await?;
                if let Some(e) = w.find(&pred) {
                    return Ok(Some(e.clone()));
                }
            }
            if tokio::time::Instant::now() >= until {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// One pass of what the server's workers do, so a drill does not wait for their tick.
    async fn drive(&self) {
        if let Err(e) = self.deliver_alerts().await {
            tracing::warn!(error = %e, "drill: alert delivery pass failed");
        }
        if let Err(e) = self.escalate_due().await {
            tracing::warn!(error = %e, "drill: escalation pass failed");
        }
        if let Err(e) = self.expire_due().await {
            tracing::warn!(error = %e, "drill: expiry pass failed");
        }
    }

    /// The drill runner's actor, enrolled (audited) on first use with its drill identity.
    async fn drill_runner(
        &self,
        identity: &breakglass_custody::Identity,
    ) -> Result<Actor, EngineError> {
        let key = identity.public();
        let mut tx = self.store().begin().await?;
        if let Some(a) = tx.actor(DRILL_RUNNER).await?
            && a.actor.key.as_ref() == Some(&key)
        {
            return Ok(a.actor);
        }
        let actor = Actor {
            name: DRILL_RUNNER.into(),
            roles: vec![Role::Requester],
            key: Some(key.clone()),
        };
        tx.put_actor(&crate::ports::StoredActor {
            actor: actor.clone(),
            token_hash: None,
            contact: "automated drills".into(),
        })
        .await?;
        let mut record = Record::default();
        record.event(
            self.now(),
            "breakglass",
            "actor.enrolled",
            json!({"name": DRILL_RUNNER, "roles": ["requester"], "key": key.canonical(), "why": "automated drills open their breaks as the runner"}),
        );
        self.commit(tx, record).await?;
        Ok(actor)
    }

    /// The drill's break once opened: recorded on the drill and watched in the audit log
    /// from then on; `None` (with the failed check) when it could not be opened.
    async fn watch_opened(
        &self,
        run: &mut Run,
        record: &DrillRecord,
        opened: Result<breakglass_domain::Requested, EngineError>,
    ) -> Result<Option<breakglass_domain::Requested>, EngineError> {
        let requested = match opened {
            Ok(r) => r,
            Err(e) => {
                run.check("break opened", false, e.to_string());
                return Ok(None);
            }
        };
        let break_id = requested.info.id.0.clone();
        self.note_drill_break(record, &break_id).await?;
        run.watch = Some(Watch {
            next: run.from_seq,
            break_id,
            seen: Vec::new(),
        });
        Ok(Some(requested))
    }

    /// Records which break a drill opened (so `drill show` names it while it runs).
    async fn note_drill_break(
        &self,
        record: &DrillRecord,
        break_id: &str,
    ) -> Result<(), EngineError> {
        let mut tx = self.store().begin().await?;
        let mut d = tx
            .drill(&record.id)
            .await?
            .ok_or_else(|| EngineError::not_found("drill", record.id.clone()))?;
        d.break_id = Some(break_id.to_owned());
        tx.put_drill(&d).await?;
        let mut audit = Record::default();
        audit.procedure_event(
            self.now(),
            "breakglass",
            "drill.break_opened",
            &record.procedure,
            json!({"drill": record.id, "break": break_id}),
        );
        self.commit(tx, audit).await?;
        Ok(())
    }

    /// Closes a drill's break if it is still open (a drill that stopped early).
    async fn end_drill_break(&self, break_id: &str, requested_by: &str, mode: DrillMode) {
        let open = match self.store().read().await {
            Ok(mut tx) => matches!(
                tx.break_(break_id).await,
                Ok(Some(Break::Requested(_) | Break::Granted(_)))
            ),
            Err(_) => false,
        };
        if !open {
            return;
        }
        let closer = Actor {
            name: match mode {
                DrillMode::Automated => DRILL_RUNNER.into(),
                DrillMode::Live => requested_by.into(),
            },
            roles: vec![Role::Requester],
            key: None,
        };
        if let Err(e) = self.close(&closer, break_id).await {
            tracing::warn!(break_id, error = %e, "drill: could not close its break");
        }
    }

    /// Proves a re-sealed drill credential opens with the drill identities (the secret is
    /// dropped at once).
    async fn open_drill_seal(
        &self,
        p: &Procedure,
        seal_id: &str,
        available: &[String],
    ) -> Result<(), EngineError> {
        let seal = self
            .store()
            .read()
            .await?
            .seal(seal_id)
            .await?
            .ok_or_else(|| EngineError::not_found("seal", seal_id))?;
        let mut shares = Vec::new();
        for name in available.iter().take(usize::from(p.quorum)) {
            let identity = self.drill_identity(name)?;
            let share = seal
                .shares
                .iter()
                .find(|s| &s.custodian == name)
                .ok_or_else(|| EngineError::Conflict(format!("no share for `{name}`")))?;
            let plain: PlainShare = breakglass_custody::decrypt_share(&share.age_file, &identity)?;
            shares.push(verify_share(plain, &seal.seal_id, name, &seal.commitments)?);
        }
        let secret =
            breakglass_custody::unseal(&seal.seal_id, &seal.ciphertext, seal.threshold, &shares)?;
        drop(secret);
        Ok(())
    }
}

fn slow_note(faults: &Faults) -> String {
    match faults.target {
        TargetFault::Slow(d) => format!(
            " (injected target-slow: every target call {} slower)",
            humantime::format_duration(d)
        ),
        _ => String::new(),
    }
}

/// A drill credential must not be the real one: it is rotated after every drill, and rotating
/// the real administrative role would leave the real seal opening a stale password. For
/// PostgreSQL it is a URL naming a role other than the procedure's `admin_user`.
fn check_drill_credential(p: &Procedure, secret: &Secret) -> Result<(), EngineError> {
    let breakglass_domain::TargetConfig::Postgres(cfg) = p.target.config().map_err(|e| {
        EngineError::Invalid(format!(
            "`{}` target details: {}",
            p.id,
            e.iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?
    else {
        return Err(EngineError::Invalid(format!(
            "drill credentials are for postgres targets; `{}` is a `{}` target",
            p.id,
            p.target.kind.as_str()
        )));
    };
    let text = std::str::from_utf8(secret.expose_secret()).unwrap_or("");
    let user = text
        .split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "postgres" | "postgresql"))
        .and_then(|(_, rest)| rest.split(['@', '/']).next())
        .and_then(|userinfo| {
            // `user:password@…`: a userinfo without `@` after it is a host, not a user.
            rest_has_at(text).then(|| userinfo.split(':').next().unwrap_or("").to_owned())
        });
    match user {
        None => Err(EngineError::Invalid(
            "a drill credential is a URL `postgresql://DRILL_ROLE:PASSWORD@HOST:PORT/DB` of a role that may create roles and grant the procedure's role".into(),
        )),
        Some(u) if u.is_empty() || u == cfg.admin_user => Err(EngineError::Invalid(format!(
            "the drill credential must name its own role, not the procedure's admin_user `{}`: each drill rotates it",
            cfg.admin_user
        ))),
        Some(_) => Ok(()),
    }
}

fn rest_has_at(url: &str) -> bool {
    url.split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or("").contains('@'))
        .unwrap_or(false)
}

/// The procedure as an automated drill's grant sees it: for PostgreSQL with a
/// `drill_grant_role`, that role in place of `grant_role`. `None`: the procedure as it is.
pub(crate) fn drill_grant_view(p: &Procedure) -> Option<Procedure> {
    let role = p.target.details.get("drill_grant_role")?;
    if p.target.kind != TargetKind::Postgres {
        return None;
    }
    let mut view = p.clone();
    view.target
        .details
        .insert("grant_role".into(), role.clone());
    Some(view)
}
