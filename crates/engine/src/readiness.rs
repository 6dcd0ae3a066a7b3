//! Custodian key attestation and the readiness verdict of every procedure.
//!
//! Attestation: the server encrypts a random challenge to a custodian's key (the key their
//! shares are sealed to); the custodian decrypts it on their own machine and answers. The
//! answer proves the key is still held without touching a share. A key can also be declared
//! lost. Both are audited, and both feed readiness.
//!
//! Readiness gathers the live posture of each procedure from the store and the server's
//! configuration and applies the pure rules of `breakglass_domain::readiness`.

use std::collections::HashMap;
use std::time::Duration;

use breakglass_domain::readiness::{self, KeyState, Posture, Readiness};
use breakglass_domain::{Action, Actor, Timestamp};
use serde_json::json;

use crate::events::Record;
use crate::ports::AttestationRecord;
use crate::{Engine, EngineError, new_id};

/// Each custodian's key state from the attestation records.
pub(crate) fn key_states(
    p: &breakglass_domain::Procedure,
    attestations: &[AttestationRecord],
    now: Timestamp,
) -> Vec<(String, KeyState)> {
    p.custodians
        .iter()
        .map(|c| {
            let fp = c.key.fingerprint();
            let state = match attestations
                .iter()
                .find(|a| a.custodian == c.name && a.key_fingerprint == fp)
            {
                Some(a) if a.lost_at.is_some() => KeyState::Lost,
                Some(AttestationRecord {
                    attested_at: Some(t),
                    ..
                }) => KeyState::Attested(Duration::from_millis(
                    u64::try_from(now.since(*t)).unwrap_or(0),
                )),
                _ => KeyState::Unknown,
            };
            (c.name.clone(), state)
        })
        .collect()
}

/// How long an attestation challenge may be answered.
const ATTEST_TTL: Duration = Duration::from_secs(300);

/// A challenge for one of a custodian's keys.
#[derive(Debug, Clone)]
pub struct AttestChallenge {
    /// Identifier to answer with.
    pub id: String,
    /// Custodian.
    pub custodian: String,
    /// Fingerprint of the key it is encrypted to.
    pub key_fingerprint: String,
    /// The procedures whose shares are sealed to that key.
    pub procedures: Vec<String>,
    /// The challenge, as an age file encrypted to the key.
    pub age_file: Vec<u8>,
    /// Answer before this instant.
    pub expires_at: Timestamp,
}

pub(crate) struct PendingAttest {
    custodian: String,
    key_fingerprint: String,
    nonce: zeroize::Zeroizing<String>,
    expires_at: Timestamp,
}

impl Engine {
    /// One challenge per distinct key the custodian holds across procedures.
    pub async fn attestation_challenges(
        &self,
        by: &Actor,
        custodian: &str,
    ) -> Result<Vec<AttestChallenge>, EngineError> {
        by.may(Action::Read)?;
        let procedures = self.store().read().await?.procedures().await?;
        let mut keys: Vec<(breakglass_custody::CustodianKey, Vec<String>)> = Vec::new();
        for p in &procedures {
            if let Some(c) = p.procedure.custodian(custodian) {
                match keys
                    .iter_mut()
                    .find(|(k, _)| k.fingerprint() == c.key.fingerprint())
                {
                    Some((_, ps)) => ps.push(p.procedure.id.clone()),
                    None => keys.push((c.key.clone(), vec![p.procedure.id.clone()])),
                }
            }
        }
        if keys.is_empty() {
            return Err(EngineError::not_found("custodian", custodian));
        }
        let now = self.now();
        let expires_at = now.plus(ATTEST_TTL);
        let mut out = Vec::new();
        let mut pending = self.inner.attest.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, p| p.expires_at > now);
        for (key, procedures) in keys {
            let nonce = {
                use rand::RngCore;
                let mut b = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut b);
                hex::encode(b)
            };
            let age_file = breakglass_custody::encrypt_to(&key, nonce.as_bytes()).map_err(|e| {
                EngineError::Invalid(format!("cannot encrypt a challenge to `{custodian}`: {e}"))
            })?;
            let id = new_id("att_");
            pending.insert(
                id.clone(),
                PendingAttest {
                    custodian: custodian.to_owned(),
                    key_fingerprint: key.fingerprint(),
                    nonce: zeroize::Zeroizing::new(nonce),
                    expires_at,
                },
            );
            out.push(AttestChallenge {
                id,
                custodian: custodian.to_owned(),
                key_fingerprint: key.fingerprint(),
                procedures,
                age_file,
                expires_at,
            });
        }
        Ok(out)
    }

    /// Answers an attestation challenge (single use). A right answer records that the key is
    /// held (clearing a lost declaration); a wrong one is audited and refused.
    pub async fn attest(
        &self,
        by: &Actor,
        challenge_id: &str,
        response: &str,
    ) -> Result<AttestationRecord, EngineError> {
        by.may(Action::Read)?;
        let pending = self
            .inner
            .attest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(challenge_id)
            .ok_or_else(|| {
                EngineError::Invalid("unknown or already used attestation challenge".into())
            })?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut record = tx
            .attestations()
            .await?
            .into_iter()
            .find(|a| {
                a.custodian == pending.custodian && a.key_fingerprint == pending.key_fingerprint
            })
            .unwrap_or(AttestationRecord {
                custodian: pending.custodian.clone(),
                key_fingerprint: pending.key_fingerprint.clone(),
                attested_at: None,
                lost_at: None,
                lost_reason: None,
            });
        let mut audit = Record::default();
        let right = now < pending.expires_at
            && breakglass_custody::ct_eq(pending.nonce.as_bytes(), response.trim().as_bytes());
        if !right {
            audit.event(
                now,
                &by.name,
                "custodian.attestation_failed",
                json!({"custodian": pending.custodian, "key": pending.key_fingerprint, "expired": now >= pending.expires_at}),
            );
            self.commit(tx, audit).await?;
            return Err(EngineError::Invalid(if now >= pending.expires_at {
                "attestation challenge expired; ask for a new one".into()
            } else {
                "attestation answer is wrong: the key that decrypted it is not the custodian's"
                    .into()
            }));
        }
        record.attested_at = Some(now);
        let was_lost = record.lost_at.take().is_some();
        record.lost_reason = None;
        tx.put_attestation(&record).await?;
        audit.event(
            now,
            &by.name,
            "custodian.attested",
            json!({"custodian": record.custodian, "key": record.key_fingerprint, "cleared_lost": was_lost}),
        );
        self.commit(tx, audit).await?;
        Ok(record)
    }

    /// Declares every key of a custodian lost (admin): readiness counts them out of the quorum
    /// until they attest again or the procedures are re-sealed to someone else.
    pub async fn declare_key_lost(
        &self,
        by: &Actor,
        custodian: &str,
        reason: &str,
    ) -> Result<Vec<AttestationRecord>, EngineError> {
        by.may(Action::ManageActors)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let procedures = tx.procedures().await?;
        let existing = tx.attestations().await?;
        let mut fingerprints: Vec<String> = procedures
            .iter()
            .filter_map(|p| {
                p.procedure
                    .custodian(custodian)
                    .map(|c| c.key.fingerprint())
            })
            .collect();
        fingerprints.sort();
        fingerprints.dedup();
        if fingerprints.is_empty() {
            return Err(EngineError::not_found("custodian", custodian));
        }
        let mut out = Vec::new();
        for fp in fingerprints {
            let mut r = existing
                .iter()
                .find(|a| a.custodian == custodian && a.key_fingerprint == fp)
                .cloned()
                .unwrap_or(AttestationRecord {
                    custodian: custodian.to_owned(),
                    key_fingerprint: fp,
                    attested_at: None,
                    lost_at: None,
                    lost_reason: None,
                });
            r.lost_at = Some(now);
            r.lost_reason = Some(reason.to_owned());
            tx.put_attestation(&r).await?;
            out.push(r);
        }
        let mut audit = Record::default();
        audit.event(
            now,
            &by.name,
            "custodian.key_lost",
            json!({"custodian": custodian, "keys": out.iter().map(|r| r.key_fingerprint.clone()).collect::<Vec<_>>(), "reason": reason}),
        );
        self.commit(tx, audit).await?;
        Ok(out)
    }

    /// Every custodian key record.
    pub async fn attestations(&self, by: &Actor) -> Result<Vec<AttestationRecord>, EngineError> {
        by.may(Action::Read)?;
        Ok(self.store().read().await?.attestations().await?)
    }

    /// The readiness verdict of every procedure, with its reasons.
    pub async fn readiness(&self, by: &Actor) -> Result<Vec<Readiness>, EngineError> {
        by.may(Action::Read)?;
        self.readiness_all().await
    }

    /// What-if analysis: for each procedure, whether it could still be opened with `down`
    /// (dependencies, channels, custodians, target connections or hosts) unavailable, by which
    /// custodians and over which channels. Lost keys count as down.
    pub async fn what_if(
        &self,
        by: &Actor,
        down: &[String],
    ) -> Result<Vec<breakglass_domain::WhatIf>, EngineError> {
        by.may(Action::Read)?;
        let now = self.now();
        let mut tx = self.store().read().await?;
        let attestations = tx.attestations().await?;
        let mut out = Vec::new();
        for p in tx.procedures().await? {
            let mut w = readiness::what_if(
                &p.procedure,
                down,
                &key_states(&p.procedure, &attestations, now),
            );
            w.latest_drills_ms = tx
                .drills(Some(&p.procedure.id), 20)
                .await?
                .iter()
                .filter(|d| d.outcome == "passed")
                .filter_map(|d| d.time_to_access_ms)
                .take(3)
                .collect();
            out.push(w);
        }
        Ok(out)
    }

    /// Readiness without an actor, for the metrics page.
    pub async fn readiness_all(&self) -> Result<Vec<Readiness>, EngineError> {
        let now = self.now();
        let lagging: Vec<String> = self
            .outbox_lag()
            .await?
            .into_iter()
            .filter(|l| {
                l.destination.starts_with("sink:")
                    && l.oldest_ms.is_some_and(|ms| {
                        u128::try_from(ms).unwrap_or(0)
                            > self.config().sink_lag_alert_after.as_millis()
                    })
            })
            .map(|l| l.destination.trim_start_matches("sink:").to_owned())
            .collect();
        let mut tx = self.store().read().await?;
        let procedures = tx.procedures().await?;
        let tests: HashMap<String, bool> = tx
            .channel_tests()
            .await?
            .into_iter()
            .map(|t| (t.channel, t.ok))
            .collect();
        let reports = tx.target_reports(None).await?;
        let attestations = tx.attestations().await?;
        let drills = tx.latest_drills().await?;
        let totp_active = self.totp_active(tx.as_mut()).await?;
        let custody_records = tx.custody_records(None).await?;
        let configured: Vec<&str> = self.inner.channels.iter().map(|c| c.name()).collect();
        let mut out = Vec::new();
        for p in procedures {
            let seal = match &p.seal_id {
                Some(id) => tx.seal(id).await?,
                None => None,
            };
            let age =
                |t: Timestamp| Duration::from_millis(u64::try_from(now.since(t)).unwrap_or(0));
            let report = |kind: &str| {
                reports
                    .iter()
                    .find(|r| r.procedure == p.procedure.id && r.kind == kind)
            };
            let posture = Posture {
                sealed: seal.is_some(),
                taint: p.taint.as_ref().map(|t| t.reason.clone()),
                credential_age: seal.as_ref().map(|s| age(s.created_at)),
                last_drill: drills
                    .iter()
                    .find(|d| d.procedure == p.procedure.id)
                    .map(|d| {
                        (
                            age(d.finished_at.unwrap_or(d.started_at)),
                            d.outcome == "passed",
                            d.content_hash.clone(),
                        )
                    }),
                content_hash: p.content_hash.clone(),
                channels: p
                    .procedure
                    .alert_channels
                    .iter()
                    .map(|c| {
                        (
                            c.clone(),
                            configured.contains(&c.as_str()),
                            tests.get(c).copied(),
                        )
                    })
                    .collect(),
                custodian_keys: key_states(&p.procedure, &attestations, now),
                attestation_max_age: self.config().attestation_max_age,
                target_check: report("check").map(|r| (age(r.at), r.ok)),
                discovery_unknown: report("discover").map(|r| {
                    r.detail
                        .as_array()
                        .map(|a| a.iter().filter(|x| x["known"] == false).count())
                        .unwrap_or(0)
                }),
                sinks_lagging: lagging.clone(),
                drill_credential: tx.drill_seal(&p.procedure.id).await?.is_some(),
                recovery_kit: if self.config().recovery_kits {
                    Some(
                        match (tx.recovery_kit(&p.procedure.id).await?, &p.seal_id) {
                            (Some(k), Some(seal)) if &k.seal_id == seal => {
                                breakglass_domain::KitState::Current(age(k.exported_at))
                            }
                            (Some(k), _) => breakglass_domain::KitState::Stale(age(k.exported_at)),
                            (None, _) => breakglass_domain::KitState::Missing,
                        },
                    )
                } else {
                    None
                },
                totp_active: totp_active.clone(),
                custody_attested: breakglass_domain::external::latest(
                    &custody_records,
                    &p.procedure.id,
                    None,
                    breakglass_domain::RecordKind::Attested,
                )
                .map(|r| age(r.at)),
                custody_rotated: breakglass_domain::external::latest(
                    &custody_records,
                    &p.procedure.id,
                    None,
                    breakglass_domain::RecordKind::Rotated,
                )
                .map(|r| age(r.at)),
            };
            out.push(readiness::assess(
                &p.procedure,
                &self.config().lint,
                &posture,
            ));
        }
        Ok(out)
    }
}
