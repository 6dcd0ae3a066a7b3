//! Conversions between rows and engine/domain types. Every column read from the database is
//! treated as untrusted: a malformed value becomes a `StoreError` naming the column, never a
//! panic.

use std::str::FromStr;
use std::time::Duration;

use breakglass_audit::{Entry, Hash};
use breakglass_custody::{CustodianKey, EncryptedShare, ShareCommitment};
use breakglass_domain::{
    Actor, Approval, Break, BreakId, BreakInfo, EndReason, Ended, Granted, Limits, Requested, Role,
    Timestamp,
};
use breakglass_engine::ports::{
    DrillRecord, OutboxRow, StatementChunk, StatementRecord, StoreError, StoreResult, StoredActor,
    StoredProcedure, StoredSeal, Taint,
};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

fn col<'r, T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>>(
    row: &'r AnyRow,
    name: &str,
) -> StoreResult<T> {
    row.try_get(name)
        .map_err(|e| StoreError(format!("column {name}: {e}")))
}

fn bad(column: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError(format!("column {column}: {what}"))
}

pub(crate) fn procedure(row: &AnyRow) -> StoreResult<StoredProcedure> {
    let id: String = col(row, "id")?;
    let spec_yaml: String = col(row, "spec_yaml")?;
    // Stored procedures were validated against the ceiling in force when applied.
    let limits = Limits {
        grant_ceiling: Duration::MAX,
    };
    let mut parsed =
        breakglass_domain::parse_procedures(&format!("stored procedure {id}"), &spec_yaml, &limits)
            .map_err(|e| {
                bad(
                    "spec_yaml",
                    e.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
    if parsed.len() != 1 {
        return Err(bad("spec_yaml", "does not hold exactly one procedure"));
    }
    let procedure = parsed.remove(0).procedure;
    let taint_reason: Option<String> = col(row, "taint_reason")?;
    let taint_break: Option<String> = col(row, "taint_break")?;
    let taint_revealed: i64 = col(row, "taint_revealed")?;
    Ok(StoredProcedure {
        procedure,
        spec_yaml,
        content_hash: col(row, "content_hash")?,
        source: col(row, "source")?,
        version: col(row, "version")?,
        updated_at: Timestamp(col(row, "updated_at")?),
        seal_id: col(row, "seal_id")?,
        taint: taint_reason.map(|reason| Taint {
            reason,
            break_id: taint_break,
            secret_revealed: taint_revealed != 0,
        }),
    })
}

pub(crate) fn commitments_json(c: &[ShareCommitment]) -> String {
    Value::Array(
        c.iter().map(|c| json!({"custodian": c.custodian, "index": c.index, "digest": hex::encode(c.digest)})).collect(),
    )
    .to_string()
}

fn parse_commitments(text: &str) -> StoreResult<Vec<ShareCommitment>> {
    let value: Value = serde_json::from_str(text).map_err(|e| bad("commitments", e))?;
    let items = value
        .as_array()
        .ok_or_else(|| bad("commitments", "not an array"))?;
    items
        .iter()
        .map(|item| {
            let custodian = item["custodian"]
                .as_str()
                .ok_or_else(|| bad("commitments", "custodian missing"))?;
            let index = item["index"]
                .as_u64()
                .and_then(|i| u8::try_from(i).ok())
                .ok_or_else(|| bad("commitments", "index invalid"))?;
            let digest_hex = item["digest"]
                .as_str()
                .ok_or_else(|| bad("commitments", "digest missing"))?;
            let digest: [u8; 32] = hex::decode(digest_hex)
                .ok()
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| bad("commitments", "digest is not 32 bytes of hex"))?;
            Ok(ShareCommitment {
                custodian: custodian.to_owned(),
                index,
                digest,
            })
        })
        .collect()
}

pub(crate) fn seal(row: &AnyRow, shares: &[AnyRow]) -> StoreResult<StoredSeal> {
    let threshold: i64 = col(row, "threshold")?;
    let commitments: String = col(row, "commitments")?;
    let shares = shares
        .iter()
        .map(|s| {
            let index: i64 = col(s, "idx")?;
            Ok(EncryptedShare {
                custodian: col(s, "custodian")?,
                index: u8::try_from(index).map_err(|_| bad("idx", index))?,
                age_file: col(s, "age_file")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(StoredSeal {
        seal_id: col(row, "seal_id")?,
        procedure: col(row, "procedure_id")?,
        threshold: u8::try_from(threshold).map_err(|_| bad("threshold", threshold))?,
        ciphertext: col(row, "ciphertext")?,
        commitments: parse_commitments(&commitments)?,
        shares,
        secret_fingerprint: col(row, "secret_fingerprint")?,
        fingerprint_salt: col(row, "fingerprint_salt")?,
        created_at: Timestamp(col(row, "created_at")?),
    })
}

/// A break flattened to columns.
pub(crate) struct BreakRow {
    pub(crate) id: String,
    pub(crate) procedure: String,
    pub(crate) seal_id: String,
    pub(crate) requester: String,
    pub(crate) reason: String,
    pub(crate) ticket: String,
    pub(crate) duration_ms: i64,
    pub(crate) quorum: i64,
    pub(crate) requested_at: i64,
    pub(crate) approval_deadline: i64,
    pub(crate) approvals: String,
    pub(crate) state: String,
    pub(crate) granted_at: Option<i64>,
    pub(crate) deadline: Option<i64>,
    pub(crate) revealed_at: Option<i64>,
    pub(crate) ended_at: Option<i64>,
    pub(crate) closed_by: Option<String>,
    pub(crate) due_at: Option<i64>,
    pub(crate) drill_id: Option<String>,
}

impl From<&Break> for BreakRow {
    fn from(b: &Break) -> BreakRow {
        let info = b.info();
        let (granted_at, deadline, revealed_at, ended_at, closed_by, due_at) = match b {
            Break::Requested(r) => (
                None,
                None,
                None,
                None,
                None,
                Some(r.info.approval_deadline.0),
            ),
            Break::Granted(g) => (
                Some(g.granted_at.0),
                Some(g.deadline.0),
                g.revealed_at.map(|t| t.0),
                None,
                None,
                Some(g.deadline.0),
            ),
            Break::Ended(e) => (
                e.granted_at.map(|t| t.0),
                e.deadline.map(|t| t.0),
                e.revealed_at.map(|t| t.0),
                Some(e.ended_at.0),
                match &e.reason {
                    EndReason::Closed { by } => Some(by.clone()),
                    _ => None,
                },
                None,
            ),
        };
        BreakRow {
            id: info.id.0.clone(),
            procedure: info.procedure.clone(),
            seal_id: info.seal_id.clone(),
            requester: info.requester.clone(),
            reason: info.reason.clone(),
            ticket: info.ticket.clone(),
            duration_ms: i64::try_from(info.duration.as_millis()).unwrap_or(i64::MAX),
            quorum: i64::from(info.quorum),
            requested_at: info.requested_at.0,
            approval_deadline: info.approval_deadline.0,
            approvals: Value::Array(
                info.approvals
                    .iter()
                    .map(|a| json!({"custodian": a.custodian, "at": a.at.0}))
                    .collect(),
            )
            .to_string(),
            state: b.state().to_owned(),
            granted_at,
            deadline,
            revealed_at,
            ended_at,
            closed_by,
            due_at,
            drill_id: info.drill.clone(),
        }
    }
}

pub(crate) fn break_(row: &AnyRow) -> StoreResult<Break> {
    let approvals_text: String = col(row, "approvals")?;
    let approvals_value: Value =
        serde_json::from_str(&approvals_text).map_err(|e| bad("approvals", e))?;
    let approvals = approvals_value
        .as_array()
        .ok_or_else(|| bad("approvals", "not an array"))?
        .iter()
        .map(|a| {
            Ok(Approval {
                custodian: a["custodian"]
                    .as_str()
                    .ok_or_else(|| bad("approvals", "custodian missing"))?
                    .to_owned(),
                at: Timestamp(
                    a["at"]
                        .as_i64()
                        .ok_or_else(|| bad("approvals", "at missing"))?,
                ),
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let duration_ms: i64 = col(row, "duration_ms")?;
    let quorum: i64 = col(row, "quorum")?;
    let info = BreakInfo {
        id: BreakId(col(row, "id")?),
        procedure: col(row, "procedure_id")?,
        seal_id: col(row, "seal_id")?,
        requester: col(row, "requester")?,
        reason: col(row, "reason")?,
        ticket: col(row, "ticket")?,
        duration: Duration::from_millis(
            u64::try_from(duration_ms).map_err(|_| bad("duration_ms", duration_ms))?,
        ),
        requested_at: Timestamp(col(row, "requested_at")?),
        approval_deadline: Timestamp(col(row, "approval_deadline")?),
        approvals,
        quorum: u8::try_from(quorum).map_err(|_| bad("quorum", quorum))?,
        drill: col(row, "drill_id")?,
    };
    let state: String = col(row, "state")?;
    let granted_at: Option<i64> = col(row, "granted_at")?;
    let deadline: Option<i64> = col(row, "deadline")?;
    let revealed_at: Option<i64> = col(row, "revealed_at")?;
    let ended_at: Option<i64> = col(row, "ended_at")?;
    let closed_by: Option<String> = col(row, "closed_by")?;
    let need = |v: Option<i64>, name: &str| {
        v.map(Timestamp)
            .ok_or_else(|| bad(name, format!("missing for state {state}")))
    };
    Ok(match state.as_str() {
        "requested" => Break::Requested(Requested { info }),
        "granted" => Break::Granted(Granted {
            info,
            granted_at: need(granted_at, "granted_at")?,
            deadline: need(deadline, "deadline")?,
            revealed_at: revealed_at.map(Timestamp),
        }),
        "expired" | "closed" | "lapsed" => Break::Ended(Ended {
            info,
            granted_at: granted_at.map(Timestamp),
            deadline: deadline.map(Timestamp),
            revealed_at: revealed_at.map(Timestamp),
            ended_at: need(ended_at, "ended_at")?,
            reason: match state.as_str() {
                "expired" => EndReason::Expired,
                "lapsed" => EndReason::Lapsed,
                _ => EndReason::Closed {
                    by: closed_by.unwrap_or_default(),
                },
            },
        }),
        other => return Err(bad("state", format!("unknown state {other:?}"))),
    })
}

pub(crate) fn actor(row: &AnyRow) -> StoreResult<StoredActor> {
    let roles: String = col(row, "roles")?;
    let roles = roles
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| Role::parse(r).ok_or_else(|| bad("roles", format!("unknown role {r:?}"))))
        .collect::<StoreResult<Vec<_>>>()?;
    let key: Option<String> = col(row, "public_key")?;
    let key = key
        .map(|k| CustodianKey::parse(&k).map_err(|e| bad("public_key", e)))
        .transpose()?;
    Ok(StoredActor {
        actor: Actor {
            name: col(row, "name")?,
            roles,
            key,
        },
        token_hash: col(row, "token_hash")?,
        contact: col(row, "contact")?,
    })
}

pub(crate) fn entry(row: &AnyRow) -> StoreResult<Entry> {
    let seq: i64 = col(row, "seq")?;
    let payload: String = col(row, "payload")?;
    let prev: String = col(row, "prev_hash")?;
    let hash: String = col(row, "hash")?;
    Ok(Entry {
        seq: u64::try_from(seq).map_err(|_| bad("seq", seq))?,
        time_ms: col(row, "time_ms")?,
        actor: col(row, "actor")?,
        kind: col(row, "kind")?,
        procedure: col(row, "procedure_id")?,
        break_id: col(row, "break_id")?,
        payload: serde_json::from_str(&payload).map_err(|e| bad("payload", e))?,
        prev_hash: Hash::from_str(&prev).map_err(|e| bad("prev_hash", e))?,
        hash: Hash::from_str(&hash).map_err(|e| bad("hash", e))?,
    })
}

pub(crate) fn outbox(row: &AnyRow) -> StoreResult<OutboxRow> {
    let seq: i64 = col(row, "seq")?;
    let payload: String = col(row, "payload")?;
    let delivered_at: Option<i64> = col(row, "delivered_at")?;
    Ok(OutboxRow {
        id: col(row, "id")?,
        seq: u64::try_from(seq).map_err(|_| bad("seq", seq))?,
        destination: col(row, "destination")?,
        payload: serde_json::from_str(&payload).map_err(|e| bad("payload", e))?,
        attempts: col(row, "attempts")?,
        delivered_at: delivered_at.map(Timestamp),
    })
}

pub(crate) fn checkpoint(row: &AnyRow) -> StoreResult<breakglass_audit::SignedCheckpoint> {
    let seq: i64 = col(row, "seq")?;
    let head: String = col(row, "head")?;
    let signature: String = col(row, "signature")?;
    Ok(breakglass_audit::SignedCheckpoint {
        checkpoint: breakglass_audit::Checkpoint {
            seq: u64::try_from(seq).map_err(|_| bad("seq", seq))?,
            head: Hash::from_str(&head).map_err(|e| bad("head", e))?,
            time_ms: col(row, "time_ms")?,
            key_id: col(row, "key_id")?,
        },
        signature: hex::decode(&signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("signature", "not 64 bytes of hex"))?,
    })
}

pub(crate) fn ack(row: &AnyRow) -> StoreResult<breakglass_engine::ports::AckState> {
    let ts = |name: &str| -> StoreResult<Option<Timestamp>> {
        Ok(col::<Option<i64>>(row, name)?.map(Timestamp))
    };
    Ok(breakglass_engine::ports::AckState {
        break_id: col(row, "break_id")?,
        procedure: col(row, "procedure_id")?,
        requested_at: Timestamp(col(row, "requested_at")?),
        ack_deadline: ts("ack_deadline")?,
        acked_at: ts("acked_at")?,
        acked_by: col(row, "acked_by")?,
        escalated_at: ts("escalated_at")?,
    })
}

pub(crate) fn attempt(row: &AnyRow) -> StoreResult<breakglass_engine::ports::AttemptRecord> {
    let ok: i64 = col(row, "ok")?;
    Ok(breakglass_engine::ports::AttemptRecord {
        outbox_id: col(row, "outbox_id")?,
        destination: col(row, "destination")?,
        at: Timestamp(col(row, "at")?),
        ok: ok != 0,
        status: col(row, "status")?,
        latency_ms: col(row, "latency_ms")?,
        error: col(row, "error")?,
    })
}

pub(crate) fn channel_test(row: &AnyRow) -> StoreResult<breakglass_engine::ports::ChannelTest> {
    let ok: i64 = col(row, "ok")?;
    Ok(breakglass_engine::ports::ChannelTest {
        channel: col(row, "channel")?,
        at: Timestamp(col(row, "at")?),
        ok: ok != 0,
        status: col(row, "status")?,
        latency_ms: col(row, "latency_ms")?,
        error: col(row, "error")?,
    })
}

pub(crate) fn grant(row: &AnyRow) -> StoreResult<breakglass_engine::ports::GrantRecord> {
    let handle: String = col(row, "handle")?;
    let opt = |name: &str| -> StoreResult<Option<Timestamp>> {
        Ok(col::<Option<i64>>(row, name)?.map(Timestamp))
    };
    Ok(breakglass_engine::ports::GrantRecord {
        break_id: col(row, "break_id")?,
        procedure: col(row, "procedure_id")?,
        kind: col(row, "kind")?,
        handle: serde_json::from_str(&handle)
            .map_err(|e| StoreError(format!("grant handle is not JSON: {e}")))?,
        created_at: Timestamp(col(row, "created_at")?),
        deadline: Timestamp(col(row, "deadline")?),
        end_requested_at: opt("end_requested_at")?,
        end_cause: col(row, "end_cause")?,
        ended_at: opt("ended_at")?,
        end_attempts: col(row, "end_attempts")?,
        next_attempt_at: opt("next_attempt_at")?,
        last_error: col(row, "last_error")?,
    })
}

pub(crate) fn target_report(row: &AnyRow) -> StoreResult<breakglass_engine::ports::TargetReport> {
    let ok: i64 = col(row, "ok")?;
    let detail: String = col(row, "detail")?;
    Ok(breakglass_engine::ports::TargetReport {
        procedure: col(row, "procedure_id")?,
        kind: col(row, "kind")?,
        at: Timestamp(col(row, "at")?),
        ok: ok != 0,
        detail: serde_json::from_str(&detail)
            .map_err(|e| StoreError(format!("target report is not JSON: {e}")))?,
    })
}

pub(crate) fn attestation(
    row: &AnyRow,
) -> StoreResult<breakglass_engine::ports::AttestationRecord> {
    let opt = |name: &str| -> StoreResult<Option<Timestamp>> {
        Ok(col::<Option<i64>>(row, name)?.map(Timestamp))
    };
    Ok(breakglass_engine::ports::AttestationRecord {
        custodian: col(row, "custodian")?,
        key_fingerprint: col(row, "key_fingerprint")?,
        attested_at: opt("attested_at")?,
        lost_at: opt("lost_at")?,
        lost_reason: col(row, "lost_reason")?,
    })
}

pub(crate) fn totp(row: &AnyRow) -> StoreResult<breakglass_engine::ports::TotpRecord> {
    let opt = |name: &str| -> StoreResult<Option<Timestamp>> {
        Ok(col::<Option<i64>>(row, name)?.map(Timestamp))
    };
    Ok(breakglass_engine::ports::TotpRecord {
        custodian: col(row, "custodian")?,
        sealed_secret: col(row, "sealed_secret")?,
        active: col::<i64>(row, "active")? != 0,
        created_at: Timestamp(col(row, "created_at")?),
        confirmed_at: opt("confirmed_at")?,
        last_step: col(row, "last_step")?,
        failures: col(row, "failures")?,
        failure_window_start: opt("failure_window_start")?,
        locked_until: opt("locked_until")?,
    })
}

pub(crate) fn drill(row: &AnyRow) -> StoreResult<DrillRecord> {
    let injections: String = col(row, "injections")?;
    let injections: Vec<String> =
        serde_json::from_str(&injections).map_err(|e| bad("injections", e))?;
    let report: String = col(row, "report")?;
    let finished_at: Option<i64> = col(row, "finished_at")?;
    Ok(DrillRecord {
        id: col(row, "id")?,
        procedure: col(row, "procedure_id")?,
        mode: col(row, "mode")?,
        injections,
        requested_by: col(row, "requested_by")?,
        started_at: Timestamp(col(row, "started_at")?),
        finished_at: finished_at.map(Timestamp),
        outcome: col(row, "outcome")?,
        break_id: col(row, "break_id")?,
        content_hash: col(row, "content_hash")?,
        time_to_access_ms: col(row, "time_to_access_ms")?,
        report: serde_json::from_str(&report).map_err(|e| bad("report", e))?,
    })
}

/// A JSON array of strings, as stored.
pub(crate) fn json_text(items: &[String]) -> StoreResult<String> {
    serde_json::to_string(items).map_err(|e| StoreError(format!("encoding steps: {e}")))
}

/// Confirmed steps as a JSON array, as stored.
pub(crate) fn done_text(done: &[breakglass_domain::StepDone]) -> StoreResult<String> {
    let items: Vec<serde_json::Value> = done
        .iter()
        .map(|d| serde_json::json!({"step": d.step, "by": d.by, "at": d.at.0, "note": d.note}))
        .collect();
    serde_json::to_string(&items).map_err(|e| StoreError(format!("encoding steps: {e}")))
}

pub(crate) fn external_run(row: &AnyRow) -> StoreResult<breakglass_domain::Run> {
    let kind: String = col(row, "kind")?;
    let outcome: String = col(row, "outcome")?;
    let steps: String = col(row, "steps")?;
    let done: String = col(row, "done")?;
    let done: Vec<serde_json::Value> = serde_json::from_str(&done).map_err(|e| bad("done", e))?;
    let done = done
        .iter()
        .map(|d| {
            Ok(breakglass_domain::StepDone {
                step: d["step"]
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| bad("done", "a step without its number"))?,
                by: d["by"].as_str().unwrap_or_default().to_owned(),
                at: Timestamp(
                    d["at"]
                        .as_i64()
                        .ok_or_else(|| bad("done", "a step without its time"))?,
                ),
                note: d["note"].as_str().unwrap_or_default().to_owned(),
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let finished_at: Option<i64> = col(row, "finished_at")?;
    Ok(breakglass_domain::Run {
        id: col(row, "id")?,
        procedure: col(row, "procedure_id")?,
        kind: breakglass_domain::RunKind::parse(&kind).ok_or_else(|| bad("kind", &kind))?,
        opened_by: col(row, "opened_by")?,
        reason: col(row, "reason")?,
        ticket: col(row, "ticket")?,
        started_at: Timestamp(col(row, "started_at")?),
        finished_at: finished_at.map(Timestamp),
        outcome: breakglass_domain::RunOutcome::parse(&outcome)
            .ok_or_else(|| bad("outcome", &outcome))?,
        steps: serde_json::from_str(&steps).map_err(|e| bad("steps", e))?,
        done,
        content_hash: col(row, "content_hash")?,
    })
}

pub(crate) fn custody_record(row: &AnyRow) -> StoreResult<breakglass_domain::CustodyRecord> {
    let kind: String = col(row, "kind")?;
    Ok(breakglass_domain::CustodyRecord {
        procedure: col(row, "procedure_id")?,
        holder: col(row, "holder")?,
        kind: breakglass_domain::RecordKind::parse(&kind).ok_or_else(|| bad("kind", &kind))?,
        at: Timestamp(col(row, "at")?),
        recorded_by: col(row, "recorded_by")?,
        note: col(row, "note")?,
    })
}

/// The statements of session chunk rows (column `body`), in order.
pub(crate) fn statements(break_id: &str, rows: &[AnyRow]) -> StoreResult<Vec<StatementRecord>> {
    let mut out = Vec::new();
    for row in rows {
        let body: String = col(row, "body")?;
        out.extend(
            StatementChunk::statements(break_id, &body)
                .map_err(|e| StoreError(format!("session chunk of break {break_id}, {e}")))?,
        );
    }
    Ok(out)
}
