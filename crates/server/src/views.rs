//! Response bodies, converted by hand from engine and domain types. Only fields listed here
//! can reach a client.

use breakglass_audit::Entry;
use breakglass_domain::{Break, EndReason, Timestamp};
use breakglass_engine::{ProcedureStatus, SealState, StoredActor};
use serde_json::{Value, json};

fn ts(t: Timestamp) -> Value {
    Value::String(t.to_string())
}

fn opt_ts(t: Option<Timestamp>) -> Value {
    t.map(ts).unwrap_or(Value::Null)
}

/// A break in any state.
pub(crate) fn break_view(b: &Break) -> Value {
    let info = b.info();
    let (granted_at, deadline, revealed_at, ended_at, closed_by) = match b {
        Break::Requested(_) => (None, None, None, None, None),
        Break::Granted(g) => (
            Some(g.granted_at),
            Some(g.deadline),
            g.revealed_at,
            None,
            None,
        ),
        Break::Ended(e) => (
            e.granted_at,
            e.deadline,
            e.revealed_at,
            Some(e.ended_at),
            match &e.reason {
                EndReason::Closed { by } => Some(by.clone()),
                _ => None,
            },
        ),
    };
    json!({
        "id": info.id.0,
        "procedure": info.procedure,
        "state": b.state(),
        "requester": info.requester,
        "reason": info.reason,
        "ticket": info.ticket,
        "duration_s": info.duration.as_secs(),
        "quorum": info.quorum,
        "approvals": info.approvals.iter().map(|a| json!({"custodian": a.custodian, "at": ts(a.at)})).collect::<Vec<_>>(),
        "requested_at": ts(info.requested_at),
        "requested_at_ms": info.requested_at.0,
        "approval_deadline": ts(info.approval_deadline),
        "granted_at": opt_ts(granted_at),
        "granted_at_ms": granted_at.map(|t| t.0),
        "deadline": opt_ts(deadline),
        "revealed_at": opt_ts(revealed_at),
        "ended_at": opt_ts(ended_at),
        "ended_at_ms": ended_at.map(|t| t.0),
        "closed_by": closed_by,
        "time_to_access_ms": granted_at.map(|g| g.since(info.requested_at)),
    })
}

/// A procedure with its status.
pub(crate) fn procedure_view(p: &ProcedureStatus, with_spec: bool) -> Value {
    let proc_ = &p.stored.procedure;
    let mut v = json!({
        "id": proc_.id,
        "description": proc_.description,
        "target": {"kind": proc_.target.kind.as_str(), "details": proc_.target.details},
        "custodians": proc_.custodians.iter().map(|c| json!({
            "name": c.name,
            "contact": c.contact,
            "key_kind": c.key.kind().to_string(),
            "key_fingerprint": c.key.fingerprint(),
        })).collect::<Vec<_>>(),
        "quorum": proc_.quorum,
        "max_grant_s": proc_.max_grant.as_secs(),
        "alert_channels": proc_.alert_channels,
        "dependencies": proc_.dependencies,
        "max_credential_age_s": proc_.max_credential_age.map(|d| d.as_secs()),
        "drill_every_s": proc_.drill_every.map(|d| d.as_secs()),
        "version": p.stored.version,
        "content_hash": p.stored.content_hash,
        "source": p.stored.source,
        "updated_at": ts(p.stored.updated_at),
        "sealed": matches!(p.seal, SealState::Sealed { .. }),
        "seal_id": match &p.seal { SealState::Sealed { seal_id } => Value::String(seal_id.clone()), SealState::Unsealed => Value::Null },
        "tainted": p.stored.taint.is_some(),
        "taint": p.stored.taint.as_ref().map(|t| json!({"reason": t.reason, "break": t.break_id, "secret_revealed": t.secret_revealed})),
        "open_breaks": p.open_breaks.iter().map(break_view).collect::<Vec<_>>(),
        "custody": match &proc_.external {
            Some(c) => json!({
                "kind": "external",
                "location": c.location,
                "holders": c.holders.iter().map(|h| json!({"name": h.name, "contact": h.contact})).collect::<Vec<_>>(),
                "present": c.present,
                "steps": c.steps,
                "attest_every_s": c.attest_every.map(|d| d.as_secs()),
            }),
            None => json!({"kind": "sealed"}),
        },
    });
    if with_spec {
        v["spec_yaml"] = Value::String(p.stored.spec_yaml.clone());
    }
    v
}

/// An actor (never its token hash).
pub(crate) fn actor_view(a: &StoredActor) -> Value {
    json!({
        "name": a.actor.name,
        "roles": a.actor.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "key_kind": a.actor.key.as_ref().map(|k| k.kind().to_string()),
        "key_fingerprint": a.actor.key.as_ref().map(|k| k.fingerprint()),
        "has_token": a.token_hash.is_some(),
        "contact": a.contact,
    })
}

/// An audit entry as exported.
pub(crate) fn entry_view(e: &Entry) -> Value {
    serde_json::from_str(&e.to_json_line()).unwrap_or(Value::Null)
}

/// A drill with its report: what `drill show` prints and the report renderers read.
pub(crate) fn drill(d: &breakglass_engine::ports::DrillRecord) -> Value {
    json!({
        "id": d.id,
        "procedure": d.procedure,
        "mode": d.mode,
        "injections": d.injections,
        "requested_by": d.requested_by,
        "started_at": d.started_at.to_string(),
        "finished_at": d.finished_at.map(|t| t.to_string()),
        "outcome": d.outcome,
        "break": d.break_id,
        "time_to_access_ms": d.time_to_access_ms,
        "content_hash": d.content_hash,
        "steps": d.report.get("steps").cloned().unwrap_or_else(|| json!([])),
        "checks": d.report.get("checks").cloned().unwrap_or_else(|| json!([])),
        "people": d.report.get("people").cloned().unwrap_or_else(|| json!([])),
    })
}

/// A run of an external-custody procedure's human steps, each with who did it and how long
/// it took.
pub(crate) fn run_view(r: &breakglass_domain::Run) -> Value {
    json!({
        "id": r.id,
        "procedure": r.procedure,
        "kind": r.kind.as_str(),
        "opened_by": r.opened_by,
        "reason": r.reason,
        "ticket": r.ticket,
        "started_at": ts(r.started_at),
        "finished_at": r.finished_at.map(ts),
        "outcome": r.outcome.as_str(),
        "next_step": r.next_step(),
        "elapsed_ms": u64::try_from(r.elapsed().as_millis()).unwrap_or(u64::MAX),
        "content_hash": r.content_hash,
        "steps": r.timed_steps().iter().map(|t| json!({
            "step": t.step,
            "text": t.text,
            "done": t.by.is_some(),
            "by": t.by,
            "at": t.at.map(ts),
            "took_ms": t.took.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            "note": t.note,
        })).collect::<Vec<_>>(),
    })
}

/// A holder's attestation or rotation.
pub(crate) fn custody_record_view(r: &breakglass_domain::CustodyRecord) -> Value {
    json!({
        "procedure": r.procedure,
        "holder": r.holder,
        "kind": r.kind.as_str(),
        "at": ts(r.at),
        "recorded_by": r.recorded_by,
        "note": r.note,
    })
}

/// The custody status of an external-custody procedure: where, who (with each holder's
/// latest attestation and whether it is overdue), rotations, taint and open runs.
pub(crate) fn custody_status_view(
    s: &breakglass_engine::CustodyStatus,
    now: breakglass_domain::Timestamp,
    default_schedule: std::time::Duration,
) -> Value {
    use breakglass_domain::RecordKind;
    use breakglass_domain::external::latest;
    let schedule = s.custody.attest_every.unwrap_or(default_schedule);
    let overdue = |at: Option<breakglass_domain::Timestamp>| {
        at.is_none_or(|t| u128::try_from(now.since(t)).unwrap_or(0) > schedule.as_millis())
    };
    let last_attested = latest(&s.records, &s.procedure, None, RecordKind::Attested).map(|r| r.at);
    json!({
        "procedure": s.procedure,
        "location": s.custody.location,
        "present": s.custody.present,
        "steps": s.custody.steps,
        "attest_every_s": schedule.as_secs(),
        "last_attested_at": last_attested.map(ts),
        "attestation_overdue": overdue(last_attested),
        "holders": s.custody.holders.iter().map(|h| {
            let at = latest(&s.records, &s.procedure, Some(&h.name), RecordKind::Attested).map(|r| r.at);
            json!({
                "name": h.name,
                "contact": h.contact,
                "attested_at": at.map(ts),
                "attestation_overdue": overdue(at),
            })
        }).collect::<Vec<_>>(),
        "last_rotated_at": latest(&s.records, &s.procedure, None, RecordKind::Rotated).map(|r| ts(r.at)),
        "tainted": s.taint.is_some(),
        "taint": s.taint,
        "records": s.records.iter().rev().take(50).map(custody_record_view).collect::<Vec<_>>(),
        "open_runs": s.open_runs.iter().map(run_view).collect::<Vec<_>>(),
    })
}
