//! Schedules the server runs: automated drills when a procedure's latest drill is older than
//! its `drill.every`, and custodian key attestation requests (through the alert channels)
//! when a key was not attested within the attestation interval. Due-ness is computed from
//! the store (drill history, attestations, the `schedule_runs` table), so schedules survive
//! restarts; each run is audited.

use std::collections::BTreeSet;
use std::time::Duration;

use breakglass_domain::{Actor, Role, Timestamp};
use serde_json::json;

use crate::drills::DrillRequest;
use crate::events::Record;
use crate::{Engine, EngineError};

/// The actor scheduled runs are recorded as.
pub const SCHEDULER: &str = "scheduler";

pub(crate) fn due(last: Option<Timestamp>, every: Duration, now: Timestamp) -> bool {
    match last {
        None => true,
        Some(t) => u128::try_from(now.since(t).max(0)).unwrap_or(0) >= every.as_millis(),
    }
}

impl Engine {
    /// Starts an automated drill for every procedure that asks for them (`drill.automated`),
    /// has a drill credential, no drill running, and whose latest drill started longer ago
    /// than `drill.every` — or, with `drill.cron`, before the expression's latest firing.
    /// Returns the drills started.
    pub async fn run_due_drills(&self) -> Result<Vec<String>, EngineError> {
        let now = self.now();
        let candidates = {
            let mut tx = self.store().read().await?;
            let mut out = Vec::new();
            for p in tx.procedures().await? {
                let Some(every) = p.procedure.drill_every else {
                    continue;
                };
                if !p.procedure.drill_automated || tx.drill_seal(&p.procedure.id).await?.is_none() {
                    continue;
                }
                let latest = tx.drills(Some(&p.procedure.id), 1).await?;
                if latest.first().is_some_and(|d| d.outcome == "running") {
                    continue;
                }
                let last_drill = latest.first().map(|d| d.started_at);
                let last_run = tx
                    .schedule_run(&format!("drill:{}", p.procedure.id))
                    .await?;
                let last = last_drill.max(last_run);
                let is_due = match &p.procedure.drill_cron {
                    // By cron: due once the first firing after the latest run has passed.
                    Some(cron) => match last {
                        None => true,
                        Some(t) => cron.next_after(t).is_some_and(|next| next <= now),
                    },
                    None => due(last, every, now),
                };
                if is_due {
                    out.push(p.procedure.id.clone());
                }
            }
            out
        };
        let scheduler = Actor {
            name: SCHEDULER.into(),
            roles: vec![Role::Admin],
            key: None,
        };
        let mut started = Vec::new();
        for id in candidates {
            let name = format!("drill:{id}");
            let result = self
                .start_drill(&scheduler, &id, DrillRequest::automated())
                .await;
            let mut tx = self.store().begin().await?;
            tx.put_schedule_run(&name, now).await?;
            let mut record = Record::default();
            let payload = match &result {
                Ok(d) => json!({"schedule": name, "drill": d.id}),
                Err(e) => json!({"schedule": name, "error": e.to_string()}),
            };
            record.procedure_event(now, SCHEDULER, "schedule.ran", &id, payload);
            self.commit(tx, record).await?;
            match result {
                Ok(d) => started.push(d.id),
                Err(e) => {
                    tracing::warn!(procedure = id, error = %e, "scheduled drill did not start")
                }
            }
        }
        Ok(started)
    }

    /// Asks every custodian whose key was not attested within the attestation interval (and
    /// was not asked within it either) to attest, through the alert channels of the
    /// procedures they hold a share of. Returns the custodians asked.
    pub async fn request_due_attestations(&self) -> Result<Vec<String>, EngineError> {
        let now = self.now();
        let every = self.config().attestation_interval;
        let mut tx = self.store().begin().await?;
        let procedures = tx.procedures().await?;
        let attestations = tx.attestations().await?;
        let mut names = BTreeSet::new();
        for p in &procedures {
            for c in &p.procedure.custodians {
                names.insert(c.name.clone());
            }
        }
        let mut record = Record::default();
        let mut asked = Vec::new();
        for name in names {
            let holding: Vec<&crate::StoredProcedure> = procedures
                .iter()
                .filter(|p| p.procedure.custodians.iter().any(|c| c.name == name))
                .collect();
            let Some(first) = holding.first() else {
                continue;
            };
            let Some(custodian) = first.procedure.custodians.iter().find(|c| c.name == name) else {
                continue;
            };
            let fingerprint = custodian.key.fingerprint();
            let known = attestations
                .iter()
                .find(|a| a.custodian == name && a.key_fingerprint == fingerprint);
            if known.is_some_and(|a| a.lost_at.is_some()) {
                continue;
            }
            let attested = known.and_then(|a| a.attested_at);
            let schedule = format!("attest:{name}");
            let last_asked = tx.schedule_run(&schedule).await?;
            if !due(attested, every, now) || !due(last_asked, every, now) {
                continue;
            }
            let mut channels: Vec<String> = Vec::new();
            for p in &holding {
                for c in &p.procedure.alert_channels {
                    if !channels.contains(c) {
                        channels.push(c.clone());
                    }
                }
            }
            let mut via = first.procedure.clone();
            via.alert_channels = channels.clone();
            tx.put_schedule_run(&schedule, now).await?;
            record.procedure_alert(
                now,
                SCHEDULER,
                "attestation.requested",
                &via,
                json!({
                    "custodian": name,
                    "contact": custodian.contact,
                    "key_fingerprint": fingerprint,
                    "last_attested": attested.map(|t| t.to_string()),
                    "procedures": holding.iter().map(|p| p.procedure.id.clone()).collect::<Vec<_>>(),
                    "channels": channels,
                    "how": format!("breakglass custodian attest {name} --identity YOUR_KEY_FILE"),
                }),
            );
            asked.push(name);
        }
        if record.drafts.is_empty() {
            return Ok(asked);
        }
        self.commit(tx, record).await?;
        Ok(asked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_when_never_run_or_older_than_the_interval() {
        let day = Duration::from_secs(86_400);
        let now = Timestamp(10 * 86_400_000);
        assert!(due(None, day, now));
        assert!(due(Some(Timestamp(now.0 - 86_400_000)), day, now));
        assert!(!due(Some(Timestamp(now.0 - 86_399_999)), day, now));
        assert!(
            !due(Some(Timestamp(now.0 + 5)), day, now),
            "a clock step back is not due"
        );
    }
}
