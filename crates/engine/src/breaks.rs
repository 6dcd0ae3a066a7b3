//! The break lifecycle use cases: open, fetch one's share, approve, reveal, close, and the
//! expiry sweep. Shares accepted before the quorum are held in memory only; at the quorum the
//! data key is combined in memory, the secret opened, the grant issued, and everything
//! zeroized when it goes out of scope.

use std::time::Duration;

use breakglass_custody::{PlainShare, verify_share};
use breakglass_domain::{
    Action, Actor, ApproveError, Break, BreakId, CloseError, Requested, RevealError, Role,
    TargetKind, Timestamp,
};
use serde_json::json;

use crate::events::Record;
use crate::grants::{SealSlot, new_grant_record};
use crate::ports::{EndCause, GrantRequest, StoredProcedure, Taint, Tx};
use crate::totp::{Gate, SecondFactorProof};
use crate::{Engine, EngineError, new_id};

/// How a drill opens its break.
#[derive(Debug, Clone)]
pub(crate) struct DrillOpen {
    /// The drill.
    pub id: String,
    /// The drill credential's seal (automated drills); `None` opens the procedure's seal.
    pub seal_id: Option<String>,
    /// A shorter acknowledgement window for the drill, so escalation is proven in seconds.
    pub ack_within: Option<Duration>,
}

/// What a custodian needs to approve: their encrypted share of the break's seal.
#[derive(Debug, Clone)]
pub struct ShareForCustodian {
    /// Break.
    pub break_id: String,
    /// Procedure.
    pub procedure: String,
    /// Seal the share belongs to.
    pub seal_id: String,
    /// Custodian.
    pub custodian: String,
    /// The age file holding the share, encrypted to the custodian's key.
    pub age_file: Vec<u8>,
}

/// Another server holding a break's shares or gateway login (`Engine::other_holder`).
pub(crate) struct OtherHolder {
    /// Its instance name.
    pub(crate) instance: String,
    /// Its advertised URL.
    pub(crate) url: String,
    /// Whether its liveness lease runs.
    pub(crate) alive: bool,
}

/// Result of an accepted approval.
#[derive(Debug, Clone)]
pub struct ApproveOutcome {
    /// The break after the approval.
    pub state: Break,
    /// Approvals so far.
    pub approvals: usize,
    /// Approvals needed.
    pub quorum: u8,
}

/// The single reveal: the secret encrypted to the requester's own key.
#[derive(Debug, Clone)]
pub struct RevealedGrant {
    /// Break.
    pub break_id: String,
    /// Age file for the requester's key.
    pub age_file: Vec<u8>,
    /// When the grant ends.
    pub deadline: Timestamp,
}

impl Engine {
    /// Opens a break.
    pub async fn open_break(
        &self,
        by: &Actor,
        procedure: &str,
        reason: &str,
        ticket: &str,
        duration: Option<Duration>,
    ) -> Result<Requested, EngineError> {
        self.open_break_as(by, procedure, reason, ticket, duration, None)
            .await
    }

    /// Opens a break, possibly for a drill (then its alerts say DRILL and, for an automated
    /// drill, it opens the drill credential's seal instead of the procedure's).
    pub(crate) async fn open_break_as(
        &self,
        by: &Actor,
        procedure: &str,
        reason: &str,
        ticket: &str,
        duration: Option<Duration>,
        drill: Option<DrillOpen>,
    ) -> Result<Requested, EngineError> {
        by.may(Action::OpenBreak)?;
        // A break opened while the credential is being rotated would be on the seal about to
        // be replaced: wait for the rotation (it takes well under a second).
        let _rotation = self
            .rotation_lock(procedure, crate::REQUEST_LOCK_WAIT)
            .await?;
        let mut tx = self.store().begin().await?;
        let stored = load_procedure(tx.as_mut(), procedure).await?;
        if let Some(c) = &stored.procedure.external {
            return Err(EngineError::Invalid(format!(
                "procedure `{procedure}` is held outside breakglass ({}): there is nothing to unseal; open it with `breakglass custody open {procedure} --reason … --ticket …`",
                c.location
            )));
        }
        let seal_id = match drill.as_ref().and_then(|d| d.seal_id.clone()) {
            Some(s) => s,
            None => stored.seal_id.clone().ok_or_else(|| {
                EngineError::Invalid(format!("procedure `{procedure}` has no sealed credential; run `breakglass seal {procedure}`"))
            })?,
        };
        let kind = stored.procedure.target.kind;
        if kind != TargetKind::Secret {
            self.target(kind)?;
        }
        if kind == TargetKind::Ssh
            && by
                .key
                .as_ref()
                .is_some_and(|k| k.kind() != breakglass_custody::KeyKind::SshEd25519)
        {
            return Err(EngineError::Invalid(format!(
                "procedure `{procedure}` issues SSH certificates, which are signed for the requester's own ssh-ed25519 key; `{}` has an age key enrolled",
                by.name
            )));
        }
        if by.key.is_none() {
            return Err(EngineError::Invalid(format!(
                "`{}` has no enrolled key, so a revealed secret could not be encrypted to them; enrol a key first",
                by.name
            )));
        }
        let now = self.now();
        let mut requested = Requested::open(
            BreakId(new_id("brk_")),
            &stored.procedure,
            seal_id,
            &by.name,
            reason,
            ticket,
            duration,
            now,
            self.config().approval_window,
        )?;
        requested.info.drill = drill.as_ref().map(|d| d.id.clone());
        let b = Break::Requested(requested.clone());
        tx.put_break(&b).await?;
        let mut record = Record::default();
        record.break_event(
            now,
            &by.name,
            "break.requested",
            &stored.procedure,
            &b,
            json!({
                "reason": requested.info.reason,
                "ticket": requested.info.ticket,
                "duration_s": requested.info.duration.as_secs(),
                "quorum": requested.info.quorum,
                "approval_deadline": requested.info.approval_deadline.to_string(),
                "custodians": stored.procedure.custodians.iter().filter(|c| c.name != by.name).map(|c| json!({"name": c.name, "contact": c.contact})).collect::<Vec<_>>(),
            }),
        );
        let ack_within = stored.procedure.ack_within.map(|within| {
            match drill.as_ref().and_then(|d| d.ack_within) {
                Some(drill_within) => drill_within.min(within),
                None => within,
            }
        });
        self.start_ack(tx.as_mut(), &b, &stored.procedure, ack_within)
            .await?;
        self.commit(tx, record).await?;
        Ok(requested)
    }

    /// The calling custodian's encrypted share for a break.
    pub async fn share_for(
        &self,
        by: &Actor,
        break_id: &str,
    ) -> Result<ShareForCustodian, EngineError> {
        by.may(Action::Approve)?;
        let mut tx = self.store().read().await?;
        let b = load_break(tx.as_mut(), break_id).await?;
        let info = b.info();
        let seal = tx
            .seal(&info.seal_id)
            .await?
            .ok_or_else(|| EngineError::not_found("seal", info.seal_id.clone()))?;
        let share = seal
            .shares
            .into_iter()
            .find(|s| s.custodian == by.name)
            .ok_or_else(|| {
                EngineError::Approve(ApproveError::NotACustodian {
                    custodian: by.name.clone(),
                    procedure: info.procedure.clone(),
                })
            })?;
        Ok(ShareForCustodian {
            break_id: break_id.to_owned(),
            procedure: info.procedure.clone(),
            seal_id: info.seal_id.clone(),
            custodian: by.name.clone(),
            age_file: share.age_file,
        })
    }

    /// Accepts one custodian's share; at the quorum, unseals and issues the grant. Without a
    /// TOTP code: refused when the custodian enrolled TOTP or the procedure requires it.
    pub async fn approve(
        &self,
        by: &Actor,
        break_id: &str,
        encoded_share: &str,
    ) -> Result<ApproveOutcome, EngineError> {
        self.approve_as(
            by,
            &by.name,
            break_id,
            encoded_share,
            SecondFactorProof::None,
        )
        .await
    }

    /// `approve` with the custodian's second factor: a TOTP code, checked against their
    /// enrolment and accepted once (its step is stored with the approval).
    pub async fn approve_with_totp(
        &self,
        by: &Actor,
        break_id: &str,
        encoded_share: &str,
        totp: Option<&str>,
    ) -> Result<ApproveOutcome, EngineError> {
        let proof = match totp {
            Some(code) => SecondFactorProof::Code(code),
            None => SecondFactorProof::None,
        };
        self.approve_as(by, &by.name, break_id, encoded_share, proof)
            .await
    }

    /// `approve`, recorded in the audit log as `actor` (a drill runner approving with a
    /// custodian's drill identity is recorded as the runner, not as the custodian).
    pub(crate) async fn approve_as(
        &self,
        by: &Actor,
        actor: &str,
        break_id: &str,
        encoded_share: &str,
        second: SecondFactorProof<'_>,
    ) -> Result<ApproveOutcome, EngineError> {
        by.may(Action::Approve)?;
        self.check_share_holder(break_id).await?;
        // Wait out a rotation of the procedure's credential in flight: it may re-target this
        // break to the new seal, and a quorum must not combine a credential the target is
        // about to drop. Taken before the writer, as the rotation takes it.
        let procedure_id = {
            let mut r = self.store().read().await?;
            load_break(r.as_mut(), break_id)
                .await?
                .info()
                .procedure
                .clone()
        };
        let _rotation = self
            .rotation_lock(&procedure_id, crate::REQUEST_LOCK_WAIT)
            .await?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let requested = match load_break(tx.as_mut(), break_id).await? {
            Break::Requested(r) => r,
            Break::Granted(_) => return Err(ApproveError::AlreadyGranted.into()),
            Break::Ended(e) => return Err(ApproveError::Ended(e.reason.as_str()).into()),
        };
        self.recheck_share_holder(tx.as_mut(), break_id).await?;
        let stored = load_procedure(tx.as_mut(), &requested.info.procedure).await?;
        if let Some(drill) = &requested.info.drill
            && self.injected_custodian_lost(drill, &by.name)
        {
            return Err(EngineError::Invalid(format!(
                "drill {drill} injects the loss of `{}`'s key: the quorum must be reached without them",
                by.name
            )));
        }
        requested.check_approval(&by.name, &stored.procedure, now)?;
        // The second factor before the share: a refusal is audited (and a wrong code counted)
        // in a commit of its own; a passed code's step is stored with this approval below.
        let second_factor = match self
            .second_factor_gate(tx.as_mut(), &stored.procedure, &by.name, second, now)
            .await?
        {
            Gate::Skip(why) => (None, why),
            Gate::Hardware => (None, "hardware"),
            Gate::Passed(step) => (Some(step), "totp"),
            Gate::Refused(e, counted) => {
                if let Some(rec) = &counted {
                    tx.put_totp(rec).await?;
                }
                let mut record = Record::default();
                record.break_event(
                    now,
                    actor,
                    "totp.rejected",
                    &stored.procedure,
                    &Break::Requested(requested),
                    json!({"custodian": by.name, "during": "approve", "reason": e.code(), "failures": counted.as_ref().map(|r| r.failures), "locked_until": counted.as_ref().and_then(|r| r.locked_until).map(|t| t.to_string())}),
                );
                self.commit(tx, record).await?;
                return Err(e.into());
            }
        };
        let seal = tx
            .seal(&requested.info.seal_id)
            .await?
            .ok_or_else(|| EngineError::not_found("seal", requested.info.seal_id.clone()))?;
        let verified = PlainShare::decode(encoded_share)
            .and_then(|share| verify_share(share, &seal.seal_id, &by.name, &seal.commitments));
        let verified = match verified {
            Ok(v) => v,
            Err(e) => {
                // A refused share changes no state, but the attempt itself is evidence.
                let mut record = Record::default();
                record.break_event(
                    now,
                    actor,
                    "share.rejected",
                    &stored.procedure,
                    &Break::Requested(requested),
                    json!({"error": e.to_string()}),
                );
                self.commit(tx, record).await?;
                return Err(e.into());
            }
        };
        if let (Some(step), _) = second_factor {
            // Conditional on the stored step being older: with the writer held this cannot
            // fail after the gate passed, but a code must never count twice, whatever happens.
            let step = i64::try_from(step).unwrap_or(i64::MAX);
            if !tx.advance_totp_step(&by.name, step).await? {
                return Err(crate::totp::SecondFactorError::Refused {
                    reason: breakglass_custody::TotpError::Reused,
                    lock: String::new(),
                }
                .into());
            }
        }
        let requested = requested.approve(&by.name, &stored.procedure, now)?;
        let approvals = requested.info.approvals.len();
        let quorum = requested.info.quorum;
        let mut record = Record::default();
        let mut held = self.take_pending(break_id);
        // A rotation promoted on another server moved this break to the new seal and reset
        // its approvals there; shares of the old seal still held here must not be combined.
        held.retain(|s| s.seal_id() == seal.seal_id);
        held.push(verified);
        record.break_event(
            now,
            actor,
            "share.accepted",
            &stored.procedure,
            &Break::Requested(requested.clone()),
            json!({"custodian": by.name, "approvals": approvals, "quorum": quorum, "second_factor": second_factor.1}),
        );
        let granted = match requested.grant(now) {
            Err(still_requested) => {
                let b = Break::Requested(still_requested);
                let written = async {
                    tx.put_break(&b).await?;
                    if let Some(url) = &self.inner.config.advertise_url {
                        // From now on the others send this break's shares here. Recorded in
                        // this commit: an approval reaching another server at the same moment
                        // queues on this writer, then finds this server holding the shares.
                        tx.set_share_holder(break_id, self.instance(), url).await?;
                    }
                    Ok::<(), EngineError>(())
                }
                .await;
                let committed = match written {
                    Ok(()) => self.commit(tx, record).await.map(drop),
                    Err(e) => Err(e),
                };
                match committed {
                    Ok(()) => self.put_pending(break_id, held),
                    Err(e) => {
                        held.pop();
                        self.put_pending(break_id, held);
                        return Err(e);
                    }
                }
                return Ok(ApproveOutcome {
                    state: b,
                    approvals,
                    quorum,
                });
            }
            Ok(granted) => granted,
        };
        // The quorum is reached: combine, open, hand the secret to the requester's key only.
        // If anything fails before the commit, the shares held so far go back to memory so
        // the custodians who approved need not approve again.
        let issued = self
            .issue_grant(tx, granted, stored, &seal, &held, record, actor, now)
            .await;
        match issued {
            Ok(state) => Ok(ApproveOutcome {
                state,
                approvals,
                quorum,
            }),
            Err(e) => {
                held.pop();
                self.put_pending(break_id, held);
                Err(e)
            }
        }
    }

    /// Unseals with the held shares, stores the grant for the requester, taints the procedure,
    /// and commits. The secret exists only inside this function.
    #[allow(clippy::too_many_arguments)]
    async fn issue_grant(
        &self,
        mut tx: Box<dyn Tx>,
        granted: breakglass_domain::Granted,
        mut stored: StoredProcedure,
        seal: &crate::ports::StoredSeal,
        held: &[breakglass_custody::VerifiedShare],
        mut record: Record,
        actor: &str,
        now: Timestamp,
    ) -> Result<Break, EngineError> {
        let break_id = granted.info.id.0.clone();
        // An automated drill opens the drill credential: the real seal is not touched, so
        // the procedure is not tainted and the rotation re-seals the drill credential.
        let drill_seal = match &granted.info.drill {
            Some(d) => tx.drill(d).await?.is_some_and(|d| d.mode == "automated"),
            None => false,
        };
        let secret =
            breakglass_custody::unseal(&seal.seal_id, &seal.ciphertext, seal.threshold, held)?;
        let requester = tx
            .actor(&granted.info.requester)
            .await?
            .and_then(|a| a.actor.key)
            .ok_or_else(|| {
                EngineError::Conflict(format!(
                    "requester `{}` no longer has an enrolled key",
                    granted.info.requester
                ))
            })?;
        let kind = stored.procedure.target.kind;
        let b = Break::Granted(granted.clone());
        // For a target, the grant is created on it now, while this transaction holds the
        // writer: a second approval cannot race this one into a second grant.
        let issued = if kind == TargetKind::Secret {
            None
        } else {
            let target = self.target_for(kind, granted.info.drill.as_deref())?;
            // An automated drill grants the procedure's `drill_grant_role` when it names one.
            let drill_view = if drill_seal {
                crate::drills::drill_grant_view(&stored.procedure)
            } else {
                None
            };
            let request = GrantRequest {
                procedure: drill_view.as_ref().unwrap_or(&stored.procedure),
                break_id: &break_id,
                requester: &granted.info.requester,
                requester_key: &requester,
                now,
                deadline: granted.deadline,
            };
            let mut result = target.grant(&request, &secret).await;
            if matches!(result, Err(crate::ports::TargetError::Conflict { .. }))
                && per_break_names(kind)
            {
                // Names derive from the break id, so the object in the way is this break's
                // own, left by a grant whose commit never happened (a crash between the two).
                // End it, record that, and grant again.
                let leftover = target
                    .end(
                        &stored.procedure,
                        &break_id,
                        &json!({}),
                        EndCause::Abandoned,
                    )
                    .await;
                tracing::warn!(
                    break_id,
                    ended = leftover.is_ok(),
                    "a grant left by an uncommitted attempt was in the way"
                );
                if leftover.is_ok() {
                    record.break_event(
                        now,
                        "breakglass",
                        "grant.leftover_ended",
                        &stored.procedure,
                        &Break::Requested(breakglass_domain::Requested {
                            info: granted.info.clone(),
                        }),
                        json!({"why": "an earlier grant attempt for this break was not committed"}),
                    );
                    result = target.grant(&request, &secret).await;
                }
            }
            match result {
                Ok(issued) => Some((target, issued)),
                Err(e) => {
                    // Nothing changed: the break stays requested; the failure is evidence.
                    let mut failed = Record::default();
                    failed.break_event(
                        now,
                        "breakglass",
                        "grant.failed",
                        &stored.procedure,
                        &Break::Requested(breakglass_domain::Requested {
                            info: granted.info.clone(),
                        }),
                        json!({"error": e.to_string(), "error_code": e.code(), "kind": kind.as_str()}),
                    );
                    self.commit(tx, failed).await?;
                    return Err(e.into());
                }
            }
        };
        // A proxy grant's own login stays with the server (for the gateway); the requester
        // receives a gateway connection string with a token instead. Automated drills log in
        // directly with the drill credential's grant.
        let proxy = issued.is_some() && !drill_seal && Engine::is_proxy(&stored.procedure);
        let gateway_access = match &issued {
            Some((_, i)) if proxy => {
                let access = breakglass_custody::Secret::new(i.access.expose_secret().to_vec());
                Some(self.hold_proxy_grant(&stored.procedure, &break_id, access, granted.deadline))
            }
            _ => None,
        };
        let gateway_access = match gateway_access.transpose() {
            Ok(g) => g,
            Err(e) => {
                if let Some((target, i)) = &issued {
                    let _ = target
                        .end(&stored.procedure, &break_id, &i.handle, EndCause::Abandoned)
                        .await;
                }
                return Err(e);
            }
        };
        let plaintext = match (&issued, &gateway_access) {
            (_, Some(g)) => g.expose_secret(),
            (None, None) => secret.expose_secret(),
            (Some((_, i)), None) => i.access.expose_secret(),
        };
        let payload = breakglass_custody::encrypt_to(&requester, plaintext).map_err(|e| {
            EngineError::Conflict(format!("cannot encrypt the grant to the requester: {e}"))
        });
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                self.release_proxy_grant(&break_id);
                if let Some((target, i)) = &issued {
                    let _ = target
                        .end(&stored.procedure, &break_id, &i.handle, EndCause::Abandoned)
                        .await;
                }
                return Err(e);
            }
        };
        tx.put_grant_payload(&break_id, &payload).await?;
        if let Some((_, i)) = &issued {
            tx.put_grant(&new_grant_record(
                &b,
                kind,
                i.handle.clone(),
                now,
                granted.deadline,
            ))
            .await?;
        }
        tx.put_break(&b).await?;
        if !drill_seal {
            stored.taint = Some(Taint {
                reason: if issued.is_some() {
                    format!(
                        "data key combined by break {break_id}; rotating the credential and re-sealing"
                    )
                } else {
                    format!("data key combined by break {break_id}; re-seal")
                },
                break_id: Some(break_id.clone()),
                secret_revealed: stored.taint.as_ref().is_some_and(|t| t.secret_revealed),
            });
            tx.put_procedure(&stored).await?;
        }
        record.break_event(
            now,
            actor,
            "break.granted",
            &stored.procedure,
            &b,
            json!({
                "granted_at": granted.granted_at.to_string(),
                "deadline": granted.deadline.to_string(),
                "time_to_access_ms": granted.granted_at.since(granted.info.requested_at),
                "approvers": granted.info.approvals.iter().map(|a| a.custodian.clone()).collect::<Vec<_>>(),
                "kind": kind.as_str(),
                "grant": issued.as_ref().map(|(_, i)| i.handle.clone()),
                "access": if proxy { "proxy" } else { "direct" },
            }),
        );
        if !drill_seal {
            record.procedure_event(
                now,
                actor,
                "procedure.tainted",
                &stored.procedure.id,
                json!({"reason": stored.taint.as_ref().map(|t| t.reason.clone()), "break": break_id}),
            );
        }
        if let Err(e) = self.commit(tx, record).await {
            self.release_proxy_grant(&break_id);
            // The grant exists on the target but not in the store: end it there.
            if let Some((target, i)) = &issued
                && let Err(end) = target
                    .end(&stored.procedure, &break_id, &i.handle, EndCause::Abandoned)
                    .await
            {
                tracing::error!(break_id, error = %end, "grant not committed and not ended on the target");
            }
            return Err(e);
        }
        if issued.is_some() {
            let slot = if drill_seal {
                SealSlot::Drill
            } else {
                SealSlot::Procedure
            };
            self.spawn_rotation(stored.procedure.id.clone(), break_id, secret, slot);
        }
        Ok(b)
    }

    /// The single reveal of a granted secret, to the requester, within the window.
    pub async fn reveal(&self, by: &Actor, break_id: &str) -> Result<RevealedGrant, EngineError> {
        by.may(Action::Reveal)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let granted = match load_break(tx.as_mut(), break_id).await? {
            Break::Granted(g) => g,
            Break::Requested(r) => {
                return Err(RevealError::NotGranted {
                    approvals: r.info.approvals.len(),
                    quorum: r.info.quorum,
                }
                .into());
            }
            Break::Ended(e) => return Err(RevealError::Ended(e.reason.as_str()).into()),
        };
        let granted = granted.reveal(&by.name, now)?;
        let age_file = tx
            .take_grant_payload(break_id)
            .await?
            .ok_or_else(|| EngineError::Conflict("the grant holds no secret any more".into()))?;
        let b = Break::Granted(granted.clone());
        tx.put_break(&b).await?;
        let mut stored = load_procedure(tx.as_mut(), &granted.info.procedure).await?;
        let mut record = Record::default();
        record.break_event(
            now,
            &by.name,
            "grant.revealed",
            &stored.procedure,
            &b,
            json!({"deadline": granted.deadline.to_string(), "kind": stored.procedure.target.kind.as_str()}),
        );
        // A static secret is now known to a person; a target grant revealed only its own
        // ephemeral access, which ends at the deadline.
        if stored.procedure.target.kind == TargetKind::Secret {
            stored.taint = Some(Taint {
                reason: format!(
                    "secret revealed by break {break_id}; rotate it and re-seal a new one"
                ),
                break_id: Some(break_id.to_owned()),
                secret_revealed: true,
            });
            tx.put_procedure(&stored).await?;
            record.procedure_event(
                now,
                &by.name,
                "procedure.tainted",
                &stored.procedure.id,
                json!({"reason": stored.taint.as_ref().map(|t| t.reason.clone()), "break": break_id}),
            );
        }
        self.commit(tx, record).await?;
        Ok(RevealedGrant {
            break_id: break_id.to_owned(),
            age_file,
            deadline: granted.deadline,
        })
    }

    /// Closes a break early (the requester or an admin).
    pub async fn close(&self, by: &Actor, break_id: &str) -> Result<Break, EngineError> {
        by.may(Action::CloseBreak)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let b = load_break(tx.as_mut(), break_id).await?;
        if b.info().requester != by.name && !by.has(Role::Admin) {
            return Err(CloseError::NotAllowed(b.info().requester.clone()).into());
        }
        let ended = match b {
            Break::Requested(r) => {
                abandon(tx.as_mut(), &r, now).await?;
                r.close(&by.name, now)
            }
            Break::Granted(g) => {
                tx.take_grant_payload(break_id).await?;
                g.close(&by.name, now)
            }
            Break::Ended(e) => return Err(CloseError::Ended(e.reason.as_str()).into()),
        };
        let stored = load_procedure(tx.as_mut(), &ended.info.procedure).await?;
        let b = Break::Ended(ended);
        tx.put_break(&b).await?;
        request_end(tx.as_mut(), break_id, "closed", now).await?;
        let mut record = Record::default();
        record.break_event(
            now,
            &by.name,
            "break.closed",
            &stored.procedure,
            &b,
            json!({"closed_by": by.name}),
        );
        self.commit(tx, record).await?;
        drop(self.take_pending(break_id));
        self.end_grants().await?;
        Ok(b)
    }

    /// Ends every grant past its deadline and every request past its approval window.
    /// Called at start-up and by the expiry worker; returns the ids it ended.
    pub async fn expire_due(&self) -> Result<Vec<String>, EngineError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let due = tx.due_breaks(now).await?;
        if due.is_empty() {
            drop(tx);
            self.end_grants().await?;
            return Ok(Vec::new());
        }
        let mut record = Record::default();
        let mut ended_ids = Vec::new();
        for b in due {
            let id = b.info().id.0.clone();
            let stored = load_procedure(tx.as_mut(), &b.info().procedure).await?;
            let (ended, kind, payload) = match b {
                Break::Granted(g) => {
                    let deadline = g.deadline;
                    match g.expire(now) {
                        Ok(e) => {
                            tx.take_grant_payload(&id).await?;
                            request_end(tx.as_mut(), &id, "expired", now).await?;
                            (
                                e,
                                "break.expired",
                                json!({"deadline": deadline.to_string(), "late_ms": now.since(deadline)}),
                            )
                        }
                        Err(_) => continue,
                    }
                }
                Break::Requested(r) => {
                    let approvals = r.info.approvals.len();
                    abandon(tx.as_mut(), &r, now).await?;
                    match r.lapse(now) {
                        Ok(e) => (e, "break.lapsed", json!({"approvals": approvals})),
                        Err(_) => continue,
                    }
                }
                Break::Ended(_) => continue,
            };
            let b = Break::Ended(ended);
            tx.put_break(&b).await?;
            record.break_event(now, "breakglass", kind, &stored.procedure, &b, payload);
            ended_ids.push(id);
        }
        if !record.drafts.is_empty() {
            self.commit(tx, record).await?;
        }
        for id in &ended_ids {
            drop(self.take_pending(id));
        }
        self.end_grants().await?;
        Ok(ended_ids)
    }

    /// Several servers on one database: a break's accepted shares are held by the server that
    /// took the first one (`share_holders`). An approval reaching another server is sent there
    /// (`EngineError::Elsewhere`, which the HTTP layer forwards). When that server is gone (its
    /// liveness lease expired) its shares went with it: the approvals are reset, audited, and
    /// this server takes over.
    async fn check_share_holder(&self, break_id: &str) -> Result<(), EngineError> {
        if self.inner.config.advertise_url.is_none() {
            return Ok(());
        }
        let holder = self.store().share_holder(break_id).await?;
        let Some(OtherHolder {
            instance,
            url,
            alive,
        }) = self.other_holder(holder).await?
        else {
            return Ok(());
        };
        if alive {
            return Err(EngineError::Elsewhere {
                break_id: break_id.to_owned(),
                url,
            });
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        if let Break::Requested(r) = load_break(tx.as_mut(), break_id).await?
            && !r.info.approvals.is_empty()
        {
            let custodians: Vec<String> = r
                .info
                .approvals
                .iter()
                .map(|a| a.custodian.clone())
                .collect();
            let mut r = r;
            r.info.approvals.clear();
            let b = Break::Requested(r);
            tx.put_break(&b).await?;
            let stored = load_procedure(tx.as_mut(), &b.info().procedure).await?;
            let mut record = Record::default();
            record.break_event(
                now,
                "breakglass",
                "break.approvals_reset",
                &stored.procedure,
                &b,
                json!({"custodians": custodians, "why": format!("the server holding the accepted shares ({instance}) stopped; approve again")}),
            );
            self.commit(tx, record).await?;
        }
        self.store().put_share_holder(break_id, None).await?;
        Ok(())
    }

    /// The server named as a break's holder (`holder`, from `share_holders`) when it is
    /// another one than this, and whether it runs (its `instance:ID` lease is alive).
    pub(crate) async fn other_holder(
        &self,
        holder: Option<(String, String)>,
    ) -> Result<Option<OtherHolder>, EngineError> {
        let Some((instance, url)) = holder else {
            return Ok(None);
        };
        if instance == self.instance() {
            return Ok(None);
        }
        let alive = self
            .store()
            .lease_alive(&format!("instance:{instance}"))
            .await?;
        Ok(Some(OtherHolder {
            instance,
            url,
            alive,
        }))
    }

    /// `check_share_holder` again inside the approval's write transaction: another server
    /// may have taken the first share while this approval queued for the writer (writers
    /// queue on the audit head, so it is committed and visible now). Its shares are there,
    /// so this one goes there too; combining here would miss them.
    async fn recheck_share_holder(
        &self,
        tx: &mut dyn Tx,
        break_id: &str,
    ) -> Result<(), EngineError> {
        if self.inner.config.advertise_url.is_none() {
            return Ok(());
        }
        let holder = tx.share_holder_in(break_id).await?;
        let Some(OtherHolder {
            instance,
            url,
            alive,
        }) = self.other_holder(holder).await?
        else {
            return Ok(());
        };
        if alive {
            return Err(EngineError::Elsewhere {
                break_id: break_id.to_owned(),
                url,
            });
        }
        Err(EngineError::Conflict(format!(
            "the server that took the first share of break {break_id} ({instance}) stopped while this approval waited; approve again"
        )))
    }

    /// At start-up: shares accepted before a restart were held only in memory and are gone,
    /// so approvals recorded for breaks still collecting are reset (and audited) and their
    /// custodians must approve again.
    pub async fn reset_lost_approvals(&self) -> Result<usize, EngineError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let breaks = tx.requested_with_approvals().await?;
        let mut record = Record::default();
        for b in &breaks {
            let Break::Requested(r) = b else { continue };
            // Shares held by another server that is still running are not lost.
            if let Some((instance, _)) = self.store().share_holder(&r.info.id.0).await?
                && instance != self.instance()
                && self
                    .store()
                    .lease_alive(&format!("instance:{instance}"))
                    .await?
            {
                continue;
            }
            let custodians: Vec<String> = r
                .info
                .approvals
                .iter()
                .map(|a| a.custodian.clone())
                .collect();
            let mut r = r.clone();
            r.info.approvals.clear();
            let b = Break::Requested(r);
            tx.put_break(&b).await?;
            let stored = load_procedure(tx.as_mut(), &b.info().procedure).await?;
            record.break_event(
                now,
                "breakglass",
                "break.approvals_reset",
                &stored.procedure,
                &b,
                json!({"custodians": custodians, "why": "server restarted; accepted shares are held only in memory; approve again"}),
            );
        }
        let n = record.drafts.len();
        if n > 0 {
            self.commit(tx, record).await?;
        }
        Ok(n)
    }

    /// Breaks, newest first.
    pub async fn breaks(
        &self,
        by: &Actor,
        procedure: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Break>, EngineError> {
        by.may(Action::Read)?;
        Ok(self.store().read().await?.breaks(procedure, limit).await?)
    }

    /// One break.
    pub async fn break_(&self, by: &Actor, id: &str) -> Result<Break, EngineError> {
        by.may(Action::Read)?;
        let mut tx = self.store().read().await?;
        load_break(tx.as_mut(), id).await
    }

    pub(crate) fn take_pending(&self, break_id: &str) -> Vec<breakglass_custody::VerifiedShare> {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(break_id)
            .unwrap_or_default()
    }

    fn put_pending(&self, break_id: &str, shares: Vec<breakglass_custody::VerifiedShare>) {
        if !shares.is_empty() {
            self.inner
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(break_id.to_owned(), shares);
        }
    }
}

/// Whether a kind's grants are named after the break (an ephemeral role or user), so a
/// leftover of an uncommitted grant can be found and ended from the break id alone.
fn per_break_names(kind: TargetKind) -> bool {
    matches!(kind, TargetKind::Postgres | TargetKind::Mariadb)
}

/// A request that ends without a grant: for kinds with per-break names, queue an idempotent
/// end in case a grant was created on the target but its commit never happened (a crash).
async fn abandon(
    tx: &mut dyn Tx,
    r: &breakglass_domain::Requested,
    now: Timestamp,
) -> Result<(), EngineError> {
    // Approvals are no guide: a restart resets them, and a crash is what leaves a leftover.
    let Some(stored) = tx.procedure(&r.info.procedure).await? else {
        return Ok(());
    };
    let kind = stored.procedure.target.kind;
    if !per_break_names(kind) || tx.grant(&r.info.id.0).await?.is_some() {
        return Ok(());
    }
    let b = Break::Requested(r.clone());
    let mut g = new_grant_record(&b, kind, json!({}), now, now);
    g.end_requested_at = Some(now);
    g.end_cause = Some("abandoned".into());
    tx.put_grant(&g).await?;
    Ok(())
}

/// Marks a break's grant on a target (if it has one) for ending by `end_grants`.
async fn request_end(
    tx: &mut dyn Tx,
    break_id: &str,
    cause: &str,
    now: Timestamp,
) -> Result<(), EngineError> {
    if let Some(mut g) = tx.grant(break_id).await?
        && g.end_requested_at.is_none()
    {
        g.end_requested_at = Some(now);
        g.end_cause = Some(cause.to_owned());
        tx.put_grant(&g).await?;
    }
    Ok(())
}

pub(crate) async fn load_break(tx: &mut dyn Tx, id: &str) -> Result<Break, EngineError> {
    tx.break_(id)
        .await?
        .ok_or_else(|| EngineError::not_found("break", id))
}

pub(crate) async fn load_procedure(
    tx: &mut dyn Tx,
    id: &str,
) -> Result<StoredProcedure, EngineError> {
    tx.procedure(id)
        .await?
        .ok_or_else(|| EngineError::not_found("procedure", id))
}
