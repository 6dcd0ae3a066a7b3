//! Use cases on procedures: validate and apply files, list and show them with their status.

use std::collections::HashSet;

use breakglass_domain::{Action, Actor, Break, Procedure, Role, parse_procedures};
use serde_json::json;

use crate::events::Record;
use crate::ports::{StoredActor, StoredProcedure, Taint};
use crate::{Engine, EngineError};

/// What applying did to one procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyChange {
    /// New procedure.
    Created,
    /// Existing procedure changed.
    Updated,
    /// Same content as stored: nothing written, nothing audited.
    Unchanged,
}

impl ApplyChange {
    /// Name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyChange::Created => "created",
            ApplyChange::Updated => "updated",
            ApplyChange::Unchanged => "unchanged",
        }
    }
}

/// Result of applying one procedure.
#[derive(Debug, Clone)]
pub struct ApplyOutcome {
    /// Procedure id.
    pub id: String,
    /// What happened.
    pub change: ApplyChange,
    /// Version after applying.
    pub version: i64,
}

/// Whether and how a procedure is sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealState {
    /// No credential sealed yet.
    Unsealed,
    /// Sealed.
    Sealed {
        /// Seal id.
        seal_id: String,
    },
}

/// A procedure with what a reader needs to judge it.
#[derive(Debug, Clone)]
pub struct ProcedureStatus {
    /// The stored procedure.
    pub stored: StoredProcedure,
    /// Seal state.
    pub seal: SealState,
    /// Breaks not yet ended.
    pub open_breaks: Vec<Break>,
}

impl Engine {
    /// Validates procedure files without touching the store (`procedure validate`).
    pub fn validate_files(
        &self,
        files: &[(String, String)],
    ) -> Result<Vec<Procedure>, EngineError> {
        Ok(parse_all(files, &self.config().limits)?
            .into_iter()
            .map(|p| p.procedure)
            .collect())
    }

    /// Applies procedure files: all-or-nothing, idempotent, audited.
    pub async fn apply(
        &self,
        by: &Actor,
        files: &[(String, String)],
    ) -> Result<Vec<ApplyOutcome>, EngineError> {
        by.may(Action::ApplyProcedure)?;
        let parsed = parse_all(files, &self.config().limits)?;
        self.check_channel_names(&parsed)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut record = Record::default();
        let mut outcomes = Vec::new();
        for (p, source) in parsed.into_iter().map(|p| {
            let source = p.source.clone();
            (p, source)
        }) {
            let existing = tx.procedure(&p.procedure.id).await?;
            let id = p.procedure.id.clone();
            let (change, stored) = match existing {
                Some(old) if old.spec_yaml == p.spec_yaml && old.content_hash == p.content_hash => {
                    outcomes.push(ApplyOutcome {
                        id,
                        change: ApplyChange::Unchanged,
                        version: old.version,
                    });
                    continue;
                }
                Some(old) => {
                    let custody_changed = old.procedure.quorum != p.procedure.quorum
                        || old
                            .procedure
                            .custodians
                            .iter()
                            .map(|c| (&c.name, c.key.fingerprint()))
                            .collect::<Vec<_>>()
                            != p.procedure
                                .custodians
                                .iter()
                                .map(|c| (&c.name, c.key.fingerprint()))
                                .collect::<Vec<_>>();
                    let taint = if custody_changed && old.seal_id.is_some() {
                        Some(Taint {
                            reason: "custodians or quorum changed since sealing; re-seal".into(),
                            break_id: None,
                            secret_revealed: old.taint.as_ref().is_some_and(|t| t.secret_revealed),
                        })
                    } else {
                        old.taint.clone()
                    };
                    let stored = StoredProcedure {
                        procedure: p.procedure,
                        spec_yaml: p.spec_yaml,
                        content_hash: p.content_hash,
                        source,
                        version: old.version + 1,
                        updated_at: now,
                        seal_id: old.seal_id,
                        taint,
                    };
                    (ApplyChange::Updated, stored)
                }
                None => (
                    ApplyChange::Created,
                    StoredProcedure {
                        procedure: p.procedure,
                        spec_yaml: p.spec_yaml,
                        content_hash: p.content_hash,
                        source,
                        version: 1,
                        updated_at: now,
                        seal_id: None,
                        taint: None,
                    },
                ),
            };
            tx.put_procedure(&stored).await?;
            let mut applied = json!({
                "change": change.as_str(),
                "version": stored.version,
                "content_hash": stored.content_hash,
                "source": stored.source,
                "custodians": stored.procedure.custodians.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
                "quorum": stored.procedure.quorum,
            });
            if let (Some(c), Some(map)) = (&stored.procedure.external, applied.as_object_mut()) {
                map.insert(
                    "custody".into(),
                    json!({
                        "location": c.location,
                        "holders": c.holders.iter().map(|h| h.name.clone()).collect::<Vec<_>>(),
                        "present": c.present,
                    }),
                );
            }
            record.procedure_event(now, &by.name, "procedure.applied", &id, applied);
            if let Some(t) = &stored.taint {
                record.procedure_event(
                    now,
                    &by.name,
                    "procedure.tainted",
                    &id,
                    json!({"reason": t.reason}),
                );
            }
            for c in &stored.procedure.custodians {
                let previous = tx.actor(&c.name).await?;
                let same_key = previous
                    .as_ref()
                    .and_then(|p| p.actor.key.as_ref())
                    .map(|k| k.fingerprint())
                    == Some(c.key.fingerprint());
                let has_role = previous
                    .as_ref()
                    .is_some_and(|p| p.actor.has(Role::Custodian));
                if same_key && has_role {
                    continue;
                }
                let mut roles = previous
                    .as_ref()
                    .map(|p| p.actor.roles.clone())
                    .unwrap_or_default();
                if !roles.contains(&Role::Custodian) {
                    roles.push(Role::Custodian);
                    roles.sort();
                }
                let token_hash = previous.as_ref().and_then(|p| p.token_hash.clone());
                tx.put_actor(&StoredActor {
                    actor: Actor {
                        name: c.name.clone(),
                        roles: roles.clone(),
                        key: Some(c.key.clone()),
                    },
                    token_hash,
                    contact: c.contact.clone(),
                })
                .await?;
                record.event(
                    now,
                    &by.name,
                    if previous.is_some() {
                        "actor.updated"
                    } else {
                        "actor.enrolled"
                    },
                    json!({
                        "name": c.name,
                        "roles": roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                        "key_fingerprint": c.key.fingerprint(),
                        "via_procedure": id,
                    }),
                );
            }
            outcomes.push(ApplyOutcome {
                id,
                change,
                version: stored.version,
            });
        }
        if !record.drafts.is_empty() {
            self.commit(tx, record).await?;
        }
        Ok(outcomes)
    }

    /// Every procedure with its status.
    pub async fn procedures(&self, by: &Actor) -> Result<Vec<ProcedureStatus>, EngineError> {
        by.may(Action::Read)?;
        let mut tx = self.store().read().await?;
        let open = tx.breaks(None, 10_000).await?;
        let all = tx.procedures().await?;
        Ok(all
            .into_iter()
            .map(|stored| {
                let open_breaks = open
                    .iter()
                    .filter(|b| {
                        b.info().procedure == stored.procedure.id && !matches!(b, Break::Ended(_))
                    })
                    .cloned()
                    .collect();
                status(stored, open_breaks)
            })
            .collect())
    }

    /// One procedure with its status.
    pub async fn procedure(&self, by: &Actor, id: &str) -> Result<ProcedureStatus, EngineError> {
        by.may(Action::Read)?;
        let mut tx = self.store().read().await?;
        let stored = tx
            .procedure(id)
            .await?
            .ok_or_else(|| EngineError::not_found("procedure", id))?;
        let open_breaks = tx
            .breaks(Some(id), 1000)
            .await?
            .into_iter()
            .filter(|b| !matches!(b, Break::Ended(_)))
            .collect();
        Ok(status(stored, open_breaks))
    }
}

impl Engine {
    /// With channels configured, every channel a procedure names must exist: a typo would
    /// otherwise leave its alerts waiting forever. (A server with no channels at all accepts
    /// any name; its alerts wait in the outbox until the channels file names them.)
    fn check_channel_names(&self, parsed: &[ParsedWithSource]) -> Result<(), EngineError> {
        let known = self.channel_names();
        if known.is_empty() {
            return Ok(());
        }
        let mut errors = Vec::new();
        for p in parsed {
            for (field, names) in [
                ("alert_channels", &p.procedure.alert_channels),
                ("escalation", &p.procedure.escalation),
            ] {
                for (i, name) in names.iter().enumerate() {
                    if !known.contains(name) {
                        errors.push(breakglass_domain::ProcedureError {
                            file: p.source.clone(),
                            line: 0,
                            column: 0,
                            field: format!("{field}[{i}]"),
                            message: format!(
                                "no channel `{name}` is configured (known: {})",
                                known.join(", ")
                            ),
                        });
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Procedure(errors))
        }
    }
}

fn status(stored: StoredProcedure, open_breaks: Vec<Break>) -> ProcedureStatus {
    let seal = match &stored.seal_id {
        Some(seal_id) => SealState::Sealed {
            seal_id: seal_id.clone(),
        },
        None => SealState::Unsealed,
    };
    ProcedureStatus {
        stored,
        seal,
        open_breaks,
    }
}

struct ParsedWithSource {
    procedure: Procedure,
    spec_yaml: String,
    content_hash: String,
    source: String,
}

/// Parses every file; collects every error of every file; refuses an id defined twice.
fn parse_all(
    files: &[(String, String)],
    limits: &breakglass_domain::Limits,
) -> Result<Vec<ParsedWithSource>, EngineError> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let mut ids = HashSet::new();
    for (name, text) in files {
        match parse_procedures(name, text, limits) {
            Ok(parsed) => {
                for p in parsed {
                    if !ids.insert(p.procedure.id.clone()) {
                        errors.push(breakglass_domain::ProcedureError {
                            file: name.clone(),
                            line: 0,
                            column: 0,
                            field: "id".into(),
                            message: format!(
                                "procedure `{}` is defined in more than one file",
                                p.procedure.id
                            ),
                        });
                    }
                    let spec_yaml = p.spec_yaml();
                    out.push(ParsedWithSource {
                        procedure: p.procedure,
                        spec_yaml,
                        content_hash: p.content_hash,
                        source: name.clone(),
                    });
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(EngineError::Procedure(errors))
    }
}
