//! The evidence pack of a break (`breakglass evidence BREAK_ID`): who asked and why, each share
//! and who gave it, every alert with its receipt and acknowledgement, the grant and its window,
//! the gateway recording, the end, the rotation — and the unbroken audit segment from the
//! break's first entry to a checkpoint signed for the occasion, all signed with the audit key
//! (`breakglass_audit::evidence`).
//!
//! The recording is read one session at a time, a page of stored chunks at a time, and a pack
//! holds at most a budget of statements ([`PACK_STATEMENTS`] unless asked otherwise): each
//! session whole, as its stored lines, while it fits; the others are listed with the count and
//! digest of their `gateway.session_ended` entry. So the memory a pack takes is bounded by its
//! budget, not by what the break recorded.

use std::collections::{HashMap, HashSet};

use breakglass_audit::Entry;
use breakglass_domain::{Action, Actor, Break, Timestamp};
use serde_json::{Value, json};

use crate::ports::Tx;
use crate::{Engine, EngineError};

/// Statements a pack holds at most unless the caller asks for another budget.
pub const PACK_STATEMENTS: u64 = 100_000;
/// The largest budget a caller may ask for: the server holds a pack's statements in memory
/// while it builds and signs it.
pub const MAX_PACK_STATEMENTS: u64 = 500_000;
/// Stored chunks read per query while a session is read into a pack (a chunk holds at most
/// about 1 MiB of lines).
const PACK_PAGE: u32 = 16;

/// Most audit entries a pack carries (the segment from the break's first entry to the
/// checkpoint); older breaks on a busy server exceed it and are refused with that reason.
const MAX_SEGMENT: u64 = 200_000;

impl Engine {
    /// The evidence page of `break_id` (admin, auditor), with at most `max_statements` of its
    /// gateway recording ([`PACK_STATEMENTS`] when `None`, at most [`MAX_PACK_STATEMENTS`]).
    /// Audited as `evidence.exported`.
    pub async fn evidence(
        &self,
        by: &Actor,
        break_id: &str,
        max_statements: Option<u64>,
    ) -> Result<String, EngineError> {
        by.may(Action::ReadAudit)?;
        let budget = max_statements.unwrap_or(PACK_STATEMENTS);
        if budget > MAX_PACK_STATEMENTS {
            return Err(EngineError::Invalid(format!(
                "max_statements: a pack holds at most {MAX_PACK_STATEMENTS} statements (asked for {budget})"
            )));
        }
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
            let about = crate::gateway::break_entries(tx.as_mut(), break_id).await?;
            about.first().map(|e| e.seq).ok_or_else(|| {
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
        let mine = |e: &Entry| {
            e.break_id.as_deref() == Some(break_id)
                || e.payload.get("break").and_then(Value::as_str) == Some(break_id)
        };
        let (recording, included) =
            read_recording(tx.as_mut(), break_id, &segment, &mine, budget).await?;
        let grant = tx.grant(break_id).await?;
        drop(tx);

        let fact = |e: &Entry| {
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
        let mut bundle = json!({
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
            "recording": {"budget": budget},
            "checkpoint": checkpoint.to_json_line(),
        });
        // Moved in: `json!` would copy them, and the recording can be large.
        bundle["recording"]["sessions"] = Value::Array(recording);
        bundle["entries"] = segment
            .iter()
            .map(|e| Value::String(e.to_json_line()))
            .collect();
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
            json!({
                "entries": segment.len(),
                "checkpoint_seq": checkpoint.checkpoint.seq,
                "max_statements": budget,
                "statements": included,
            }),
        );
        self.commit(tx, record).await?;
        Ok(page)
    }
}

/// The break's gateway sessions in the order they started (from the audit segment), each
/// with its stored statements while they fit in `budget`: `(sessions, statements included)`.
/// A session is read a page of chunks at a time and kept whole or not at all; one whose end
/// records more statements than are left is not read.
async fn read_recording(
    tx: &mut dyn Tx,
    break_id: &str,
    segment: &[Entry],
    mine: &(dyn Fn(&Entry) -> bool + Sync),
    budget: u64,
) -> Result<(Vec<Value>, u64), EngineError> {
    let session_of = |e: &Entry| {
        e.payload
            .get("session")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    // Sessions in the order they started (or ended, when their start is not in the segment).
    let (mut sessions, mut seen) = (Vec::new(), HashSet::new());
    let mut ends: HashMap<String, &Entry> = HashMap::new();
    for e in segment.iter().filter(|e| mine(e)) {
        let ("gateway.session_started" | "gateway.session_ended", Some(s)) =
            (e.kind.as_str(), session_of(e))
        else {
            continue;
        };
        if seen.insert(s.clone()) {
            sessions.push(s.clone());
        }
        if e.kind == "gateway.session_ended" {
            ends.insert(s, e);
        }
    }
    let (mut listed, mut room) = (Vec::with_capacity(sessions.len()), budget);
    for session in &sessions {
        let end = ends.get(session.as_str()).copied();
        let claimed = end.and_then(|e| e.payload.get("recorded").and_then(Value::as_u64));
        let stored = match claimed {
            Some(n) if n > room => Err(n),
            _ => read_session(tx, break_id, session, room, claimed.is_none()).await?,
        };
        let (recorded, included, lines) = match stored {
            Ok(lines) => (lines.len() as u64, true, lines),
            Err(counted) => (claimed.unwrap_or(counted), false, Vec::new()),
        };
        if included {
            room -= recorded;
        }
        let mut listing = json!({
            "session": session,
            "end_entry": end.map(|e| e.seq),
            "recorded": recorded,
            "sha256": end.and_then(|e| e.payload.get("recording_sha256")),
            "included": included,
        });
        // Moved in: `json!` would copy them.
        listing["lines"] = Value::Array(lines.into_iter().map(Value::String).collect());
        listed.push(listing);
    }
    Ok((listed, budget - room))
}

/// `session`'s stored statements as their lines (as `StatementRecord::write_line` writes them,
/// without the newline) when there are at most `room`; else their count (all of them with
/// `count_all`, else as far as it was read), keeping no line. Read [`PACK_PAGE`] chunks at a
/// time, stopping where the engine's digest of the session stops (another break's session of
/// that name, positions that do not go forward), so the lines are those the digest covers.
async fn read_session(
    tx: &mut dyn Tx,
    break_id: &str,
    session: &str,
    room: u64,
    count_all: bool,
) -> Result<Result<Vec<String>, u64>, EngineError> {
    let (mut lines, mut count, mut from) = (Vec::new(), 0u64, 0u64);
    loop {
        let page = tx.session_statements(session, from, PACK_PAGE).await?;
        let Some(last) = page.last() else { break };
        if last.break_id != break_id {
            break;
        }
        let next = last.seq.saturating_add(1);
        count += page.len() as u64;
        if count <= room {
            lines.extend(page.iter().map(|s| {
                let mut line = String::new();
                s.write_line(&mut line);
                line.pop(); // its newline
                line
            }));
        } else if !count_all {
            return Ok(Err(count));
        } else {
            lines = Vec::new();
        }
        if next <= from {
            break;
        }
        from = next;
    }
    Ok(if count <= room { Ok(lines) } else { Err(count) })
}
