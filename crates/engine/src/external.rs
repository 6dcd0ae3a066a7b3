//! External custody use cases: a break or a drill of a procedure whose credential breakglass
//! does not hold (`kind: external`) is a run of the file's human steps, each confirmed by the
//! person who did it; holders attest the safe's contents and record rotations. Every change
//! commits with its audit entry; opening a break, finishing or stopping it, and a drill that
//! needs the holders, alert the procedure's channels naming the holders and their contact.
//! Nothing is ever unsealed: there is nothing to unseal.

use breakglass_domain::external::{MAX_TEXT, RecordKind, Run, RunKind, RunOutcome};
use breakglass_domain::{
    Action, Actor, CustodyRecord, ExternalCustody, Procedure, Role, Timestamp,
};
use serde_json::{Value, json};

use crate::breaks::load_procedure;
use crate::events::Record;
use crate::ports::{DrillRecord, OutboxItem, StoredProcedure, Taint, Tx};
use crate::{Engine, EngineError, new_id};

/// Runs read back when looking for a procedure's open break.
const RUNS_READ: i64 = 200;

/// The custody status of one external-custody procedure (`breakglass custody status`).
#[derive(Debug, Clone)]
pub struct CustodyStatus {
    /// Procedure id.
    pub procedure: String,
    /// The declaration as the applied file gives it.
    pub custody: ExternalCustody,
    /// Every attestation and rotation, oldest first.
    pub records: Vec<CustodyRecord>,
    /// Why the credential is tainted (used and its rotation not recorded), if it is.
    pub taint: Option<String>,
    /// Runs still going (breaks and drills).
    pub open_runs: Vec<Run>,
}

fn external_of(stored: &StoredProcedure) -> Result<&ExternalCustody, EngineError> {
    stored.procedure.external.as_ref().ok_or_else(|| {
        EngineError::Invalid(format!(
            "procedure `{}` is sealed by breakglass ({} target), not held externally: use `breakglass break open` and `breakglass drill run`",
            stored.procedure.id,
            stored.procedure.target.kind.as_str()
        ))
    })
}

fn text_field(field: &str, text: &str, required: bool) -> Result<String, EngineError> {
    let t = text.trim();
    if required && t.is_empty() {
        return Err(EngineError::Invalid(format!("{field} is required")));
    }
    if t.chars().count() > MAX_TEXT || t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(EngineError::Invalid(format!(
            "{field} must be at most {MAX_TEXT} characters of text"
        )));
    }
    Ok(t.to_owned())
}

fn holders_json(c: &ExternalCustody) -> Value {
    Value::from(
        c.holders
            .iter()
            .map(|h| json!({"name": h.name, "contact": h.contact}))
            .collect::<Vec<_>>(),
    )
}

/// The audit entry of a run's event, and its alert to each of the procedure's channels when
/// `alert` is set. The alert's people are the holders (`Alert::people`, role `holder`).
#[allow(clippy::too_many_arguments)]
fn run_event(
    record: &mut Record,
    now: Timestamp,
    actor: &str,
    kind: &str,
    p: &Procedure,
    run: &Run,
    alert: bool,
    payload: Value,
) {
    record.procedure_event(now, actor, kind, &p.id, payload.clone());
    let draft = record.drafts.len() - 1;
    record.drafts[draft].break_id = Some(run.id.clone());
    if !alert {
        return;
    }
    let drill = run.kind == RunKind::Drill;
    for channel in &p.alert_channels {
        record.outbox.push(OutboxItem {
            draft,
            destination: format!("channel:{channel}"),
            payload: json!({
                "event": kind,
                "procedure": p.id,
                "run": run.id,
                "requester": run.opened_by,
                "reason": run.reason,
                "ticket": run.ticket,
                "state": run.outcome.as_str(),
                "at": now.to_string(),
                "at_ms": now.0,
                "drill": drill,
                "drill_id": drill.then(|| run.id.clone()),
                "detail": payload,
            }),
        });
    }
}

/// A drill's report as the drill views read it: each confirmed step with who did it and how
/// long it took, the checks, and the holders with whether they did a step.
fn drill_report(
    run: &Run,
    custody: &ExternalCustody,
    budget: Option<std::time::Duration>,
) -> (Value, bool, Option<i64>) {
    let timed = run.timed_steps();
    let mut steps = vec![json!({
        "step": "requested",
        "at": run.started_at.to_string(),
        "at_ms": run.started_at.0,
        "offset_ms": 0,
        "detail": format!("by {}: {} steps at {}", run.opened_by, run.steps.len(), custody.location),
    })];
    for t in &timed {
        if let (Some(by), Some(at), Some(took)) = (&t.by, t.at, t.took) {
            steps.push(json!({
                "step": format!("step {}", t.step),
                "at": at.to_string(),
                "at_ms": at.0,
                "offset_ms": at.since(run.started_at),
                "detail": format!(
                    "{} — {by}, took {}{}",
                    t.text,
                    breakglass_domain::time::format_duration(took),
                    if t.note.is_empty() { String::new() } else { format!(" ({})", t.note) }
                ),
                "text": t.text,
                "by": by,
                "took_ms": u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                "note": t.note,
            }));
        }
    }
    let completed = run.outcome == RunOutcome::Completed;
    let elapsed_ms = i64::try_from(run.elapsed().as_millis()).unwrap_or(i64::MAX);
    let mut checks = vec![json!({
        "check": "every step confirmed",
        "ok": completed,
        "reason": match run.outcome {
            RunOutcome::Completed => format!("{} of {} steps, in {}", run.done.len(), run.steps.len(), breakglass_domain::time::format_duration(run.elapsed())),
            RunOutcome::Aborted => format!("stopped after {} of {} steps", run.done.len(), run.steps.len()),
            RunOutcome::Running => format!("{} of {} steps so far", run.done.len(), run.steps.len()),
        },
    })];
    let mut passed = completed;
    if let (Some(budget), true) = (budget, completed) {
        let within = run.elapsed() <= budget;
        passed &= within;
        checks.push(json!({
            "check": "time to access within budget",
            "ok": within,
            "reason": format!(
                "{} for a budget of {}",
                breakglass_domain::time::format_duration(run.elapsed()),
                breakglass_domain::time::format_duration(budget)
            ),
        }));
    }
    let people: Vec<Value> = custody
        .holders
        .iter()
        .map(|h| {
            json!({
                "name": h.name,
                "contact": h.contact,
                "approved": run.done.iter().any(|d| d.by == h.name),
            })
        })
        .collect();
    (
        json!({"steps": steps, "checks": checks, "people": people, "human_steps": true}),
        passed,
        completed.then_some(elapsed_ms),
    )
}

impl Engine {
    /// Opens a break on an external-custody procedure: a run of its human steps. Alerts the
    /// procedure's channels naming the holders; refused while another break on it runs.
    pub async fn open_external_break(
        &self,
        by: &Actor,
        procedure: &str,
        reason: &str,
        ticket: &str,
    ) -> Result<Run, EngineError> {
        by.may(Action::OpenBreak)?;
        let reason = text_field("reason", reason, true)?;
        let ticket = text_field("ticket", ticket, true)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let stored = load_procedure(tx.as_mut(), procedure).await?;
        let custody = external_of(&stored)?.clone();
        if let Some(open) = tx
            .external_runs(Some(procedure), RUNS_READ)
            .await?
            .into_iter()
            .find(|r| r.kind == RunKind::Break && r.outcome == RunOutcome::Running)
        {
            return Err(EngineError::Conflict(format!(
                "break {} on `{procedure}` is still running (opened by {}): finish its steps or stop it with `breakglass custody abort {}`",
                open.id, open.opened_by, open.id
            )));
        }
        let run = Run::open(
            new_id("ext_"),
            &stored.procedure,
            &custody,
            RunKind::Break,
            &by.name,
            &reason,
            &ticket,
            &stored.content_hash,
            now,
        );
        tx.put_external_run(&run).await?;
        let mut record = Record::default();
        run_event(
            &mut record,
            now,
            &by.name,
            "external.opened",
            &stored.procedure,
            &run,
            true,
            json!({
                "run": run.id,
                "reason": run.reason,
                "ticket": run.ticket,
                "location": custody.location,
                "present": custody.present,
                "holders": holders_json(&custody),
                "steps": run.steps,
            }),
        );
        self.commit(tx, record).await?;
        Ok(run)
    }

    /// Confirms a step of a run, done by the caller now: a holder of the procedure, the run's
    /// opener or an admin. The last step finishes the run: a break leaves the credential
    /// tainted until a holder records its rotation; a drill records its report.
    pub async fn confirm_external_step(
        &self,
        by: &Actor,
        run_id: &str,
        step: usize,
        note: &str,
    ) -> Result<Run, EngineError> {
        by.may(Action::CustodyStep)?;
        let note = text_field("note", note, false)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut run = load_run(tx.as_mut(), run_id).await?;
        let mut stored = load_procedure(tx.as_mut(), &run.procedure).await?;
        let custody = external_of(&stored)?.clone();
        if custody.holder(&by.name).is_none() && by.name != run.opened_by && !by.has(Role::Admin) {
            return Err(EngineError::NotAllowed(format!(
                "`{}` may not confirm steps of {}: only its holders ({}), {} who opened it, or an admin",
                by.name,
                run.id,
                custody
                    .holders
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                run.opened_by
            )));
        }
        let done = run.confirm(step, &by.name, &note, now)?.clone();
        let took_ms = run
            .timed_steps()
            .get(step - 1)
            .and_then(|t| t.took)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        tx.put_external_run(&run).await?;
        let mut record = Record::default();
        run_event(
            &mut record,
            now,
            &by.name,
            "external.step_confirmed",
            &stored.procedure,
            &run,
            false,
            json!({
                "run": run.id,
                "kind": run.kind.as_str(),
                "step": done.step,
                "of": run.steps.len(),
                "text": run.steps[done.step - 1],
                "took_ms": took_ms,
                "note": done.note,
            }),
        );
        if run.outcome == RunOutcome::Completed {
            self.finish_run(
                tx.as_mut(),
                &mut record,
                &mut stored,
                &custody,
                &run,
                &by.name,
                now,
            )
            .await?;
        }
        self.commit(tx, record).await?;
        Ok(run)
    }

    /// Stops a running run before its last step (its opener or an admin), with a reason. A
    /// break in which a step was done still taints the credential: the safe was opened.
    pub async fn abort_external_run(
        &self,
        by: &Actor,
        run_id: &str,
        reason: &str,
    ) -> Result<Run, EngineError> {
        by.may(Action::CustodyStep)?;
        let reason = text_field("reason", reason, true)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut run = load_run(tx.as_mut(), run_id).await?;
        if by.name != run.opened_by && !by.has(Role::Admin) {
            return Err(EngineError::NotAllowed(format!(
                "`{}` may not stop {}: only {} who opened it, or an admin",
                by.name, run.id, run.opened_by
            )));
        }
        let mut stored = load_procedure(tx.as_mut(), &run.procedure).await?;
        let custody = external_of(&stored)?.clone();
        run.abort(now)?;
        tx.put_external_run(&run).await?;
        let mut record = Record::default();
        run_event(
            &mut record,
            now,
            &by.name,
            "external.aborted",
            &stored.procedure,
            &run,
            run.kind == RunKind::Break,
            json!({"run": run.id, "kind": run.kind.as_str(), "reason": reason, "steps_done": run.done.len(), "of": run.steps.len()}),
        );
        self.finish_run(
            tx.as_mut(),
            &mut record,
            &mut stored,
            &custody,
            &run,
            &by.name,
            now,
        )
        .await?;
        self.commit(tx, record).await?;
        Ok(run)
    }

    /// What the end of a run leaves behind: a break that did a step taints the credential (and
    /// alerts); a drill records its report as a drill.
    #[allow(clippy::too_many_arguments)]
    async fn finish_run(
        &self,
        tx: &mut dyn Tx,
        record: &mut Record,
        stored: &mut StoredProcedure,
        custody: &ExternalCustody,
        run: &Run,
        actor: &str,
        now: Timestamp,
    ) -> Result<(), EngineError> {
        match run.kind {
            RunKind::Break => {
                if run.outcome == RunOutcome::Completed {
                    run_event(
                        record,
                        now,
                        actor,
                        "external.completed",
                        &stored.procedure,
                        run,
                        true,
                        json!({"run": run.id, "elapsed_ms": u64::try_from(run.elapsed().as_millis()).unwrap_or(u64::MAX), "holders": holders_json(custody)}),
                    );
                }
                if !run.done.is_empty() {
                    stored.taint = Some(Taint {
                        reason: format!(
                            "used in break {} ({}): rotate the credential, put it back in {} and record it with `breakglass custody rotated {}`",
                            run.id, run.ticket, custody.location, stored.procedure.id
                        ),
                        break_id: Some(run.id.clone()),
                        secret_revealed: true,
                    });
                    tx.put_procedure(stored).await?;
                    run_event(
                        record,
                        now,
                        actor,
                        "procedure.tainted",
                        &stored.procedure,
                        run,
                        false,
                        json!({"run": run.id, "reason": "external credential used; rotation not recorded"}),
                    );
                }
            }
            RunKind::Drill => {
                let Some(mut d) = tx.drill(&run.id).await? else {
                    return Err(EngineError::not_found("drill", run.id.clone()));
                };
                let (report, passed, tta) =
                    drill_report(run, custody, stored.procedure.drill_max_time_to_access);
                d.report = report;
                d.finished_at = run.finished_at;
                d.outcome = if passed { "passed" } else { "failed" }.into();
                d.time_to_access_ms = tta;
                tx.put_drill(&d).await?;
                let failed: Vec<Value> = d.report["checks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| c["ok"] == false)
                    .cloned()
                    .collect();
                let payload = json!({"drill": d.id, "mode": d.mode, "outcome": d.outcome, "time_to_access_ms": d.time_to_access_ms, "failed": failed});
                run_event(
                    record,
                    now,
                    actor,
                    "drill.finished",
                    &stored.procedure,
                    run,
                    false,
                    payload.clone(),
                );
                if !passed {
                    run_event(
                        record,
                        now,
                        actor,
                        "drill.failed",
                        &stored.procedure,
                        run,
                        true,
                        payload,
                    );
                }
            }
        }
        Ok(())
    }

    /// Starts a drill of an external-custody procedure: a run of its human steps, timed as the
    /// people do them. Recorded as a drill (`external` mode, `running`) at once; the holders
    /// are alerted (DRILL) so they go to the safe.
    pub(crate) async fn start_external_drill(
        &self,
        by: &Actor,
        stored: &StoredProcedure,
        injections: &[String],
    ) -> Result<DrillRecord, EngineError> {
        by.may(Action::RunDrill)?;
        let custody = external_of(stored)?.clone();
        if !injections.is_empty() {
            return Err(EngineError::Invalid(format!(
                "`{}` is held outside breakglass: its drill is the people doing its steps, so there is no machine path to inject failures into",
                stored.procedure.id
            )));
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let run = Run::open(
            new_id("drl_"),
            &stored.procedure,
            &custody,
            RunKind::Drill,
            &by.name,
            "drill",
            "",
            &stored.content_hash,
            now,
        );
        let (report, _, _) = drill_report(&run, &custody, None);
        let d = DrillRecord {
            id: run.id.clone(),
            procedure: stored.procedure.id.clone(),
            mode: "external".into(),
            injections: Vec::new(),
            requested_by: by.name.clone(),
            started_at: now,
            finished_at: None,
            outcome: "running".into(),
            break_id: None,
            content_hash: stored.content_hash.clone(),
            time_to_access_ms: None,
            report,
        };
        tx.put_external_run(&run).await?;
        tx.put_drill(&d).await?;
        let mut record = Record::default();
        run_event(
            &mut record,
            now,
            &by.name,
            "drill.started",
            &stored.procedure,
            &run,
            true,
            json!({
                "drill": d.id,
                "mode": d.mode,
                "injections": d.injections,
                "location": custody.location,
                "present": custody.present,
                "holders": holders_json(&custody),
                "steps": run.steps,
            }),
        );
        self.commit(tx, record).await?;
        Ok(d)
    }

    /// A holder confirms that the credential is where the file says (`note`: what they saw).
    /// `holder` defaults to the caller; an admin may record for a named holder.
    pub async fn attest_custody(
        &self,
        by: &Actor,
        procedure: &str,
        holder: Option<&str>,
        note: &str,
    ) -> Result<CustodyRecord, EngineError> {
        self.custody_record(by, procedure, holder, note, RecordKind::Attested)
            .await
    }

    /// A holder records that the credential was rotated and put back (`note`: what was done);
    /// clears the taint of a use.
    pub async fn record_custody_rotation(
        &self,
        by: &Actor,
        procedure: &str,
        holder: Option<&str>,
        note: &str,
    ) -> Result<CustodyRecord, EngineError> {
        self.custody_record(by, procedure, holder, note, RecordKind::Rotated)
            .await
    }

    async fn custody_record(
        &self,
        by: &Actor,
        procedure: &str,
        holder: Option<&str>,
        note: &str,
        kind: RecordKind,
    ) -> Result<CustodyRecord, EngineError> {
        by.may(Action::AttestCustody)?;
        let note = text_field("note", note, true)?;
        let holder = holder.unwrap_or(&by.name).trim().to_owned();
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut stored = load_procedure(tx.as_mut(), procedure).await?;
        let custody = external_of(&stored)?.clone();
        if custody.holder(&holder).is_none() {
            return Err(EngineError::NotAllowed(format!(
                "`{holder}` is not a holder of `{procedure}` (holders: {})",
                custody
                    .holders
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if holder != by.name && !by.has(Role::Admin) {
            return Err(EngineError::NotAllowed(format!(
                "`{}` may not record for `{holder}`: a holder records for themselves; an admin may record for a holder",
                by.name
            )));
        }
        let r = CustodyRecord {
            procedure: procedure.to_owned(),
            holder: holder.clone(),
            kind,
            at: now,
            recorded_by: by.name.clone(),
            note,
        };
        tx.insert_custody_record(&r).await?;
        let mut record = Record::default();
        match kind {
            RecordKind::Attested => {
                record.procedure_event(
                    now,
                    &by.name,
                    "custody.attested",
                    procedure,
                    json!({"holder": r.holder, "location": custody.location, "note": r.note}),
                );
            }
            RecordKind::Rotated => {
                let cleared = stored.taint.take();
                if cleared.is_some() {
                    tx.put_procedure(&stored).await?;
                }
                record.procedure_alert(
                    now,
                    &by.name,
                    "custody.rotated",
                    &stored.procedure,
                    json!({"holder": r.holder, "location": custody.location, "note": r.note, "cleared_taint": cleared.map(|t| t.reason)}),
                );
            }
        }
        self.commit(tx, record).await?;
        Ok(r)
    }

    /// Asks the holders of every external-custody procedure whose latest attestation is older
    /// than its schedule (`attest_every`, else the server's attestation interval), and who were
    /// not asked within it either, to check the safe, through the procedure's alert channels.
    /// Due-ness is read from the store, so restarts neither skip nor repeat a request.
    /// Returns the procedures asked about.
    pub async fn request_due_custody_attestations(&self) -> Result<Vec<String>, EngineError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let procedures = tx.procedures().await?;
        let records = tx.custody_records(None).await?;
        let mut record = Record::default();
        let mut asked = Vec::new();
        for stored in &procedures {
            let Some(custody) = &stored.procedure.external else {
                continue;
            };
            let id = &stored.procedure.id;
            let every = custody
                .attest_every
                .unwrap_or(self.config().attestation_interval);
            let attested =
                breakglass_domain::external::latest(&records, id, None, RecordKind::Attested)
                    .map(|r| r.at);
            let schedule = format!("custody-attest:{id}");
            let last_asked = tx.schedule_run(&schedule).await?;
            if !crate::schedules::due(attested, every, now)
                || !crate::schedules::due(last_asked, every, now)
            {
                continue;
            }
            tx.put_schedule_run(&schedule, now).await?;
            record.procedure_alert(
                now,
                crate::SCHEDULER,
                "custody.attestation_requested",
                &stored.procedure,
                json!({
                    "location": custody.location,
                    "holders": holders_json(custody),
                    "last_attested": attested.map(|t| t.to_string()),
                    "how": format!("breakglass custody attest {id} --note \"what you saw\""),
                }),
            );
            asked.push(id.clone());
        }
        if record.drafts.is_empty() {
            return Ok(asked);
        }
        self.commit(tx, record).await?;
        Ok(asked)
    }

    /// One run of human steps.
    pub async fn external_run(&self, by: &Actor, id: &str) -> Result<Run, EngineError> {
        by.may(Action::Read)?;
        load_run(self.store().read().await?.as_mut(), id).await
    }

    /// Runs of human steps, newest first.
    pub async fn external_runs(
        &self,
        by: &Actor,
        procedure: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Run>, EngineError> {
        by.may(Action::Read)?;
        Ok(self
            .store()
            .read()
            .await?
            .external_runs(procedure, limit)
            .await?)
    }

    /// The custody status of an external-custody procedure.
    pub async fn custody_status(
        &self,
        by: &Actor,
        procedure: &str,
    ) -> Result<CustodyStatus, EngineError> {
        by.may(Action::Read)?;
        let mut tx = self.store().read().await?;
        let stored = load_procedure(tx.as_mut(), procedure).await?;
        let custody = external_of(&stored)?.clone();
        Ok(CustodyStatus {
            procedure: procedure.to_owned(),
            custody,
            records: tx.custody_records(Some(procedure)).await?,
            taint: stored.taint.as_ref().map(|t| t.reason.clone()),
            open_runs: tx
                .external_runs(Some(procedure), RUNS_READ)
                .await?
                .into_iter()
                .filter(|r| r.outcome == RunOutcome::Running)
                .collect(),
        })
    }
}

async fn load_run(tx: &mut dyn Tx, id: &str) -> Result<Run, EngineError> {
    tx.external_run(id)
        .await?
        .ok_or_else(|| EngineError::not_found("external custody run", id))
}
