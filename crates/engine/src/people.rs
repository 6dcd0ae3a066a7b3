//! Who is on the hook: the people inventory (`breakglass people`). The engine gathers the
//! procedures, key records and drill reports; `breakglass_domain::people` applies the rules.

use breakglass_domain::people::{self, DrillSeen, Inputs, KeyRecord, Person};
use breakglass_domain::{Action, Actor};
use serde_json::Value;

use crate::ports::DrillRecord;
use crate::{Engine, EngineError};

/// Drills read back to find each person's latest participation.
const DRILLS_READ: i64 = 500;

impl Engine {
    /// Every person (custodian name) with what they hold (admin and auditor).
    pub async fn people(&self, by: &Actor) -> Result<Vec<Person>, EngineError> {
        by.may(Action::ReadPeople)?;
        let now = self.now();
        let mut tx = self.store().read().await?;
        let stored = tx.procedures().await?;
        let keys: Vec<KeyRecord> = tx
            .attestations()
            .await?
            .into_iter()
            .map(|a| KeyRecord {
                custodian: a.custodian,
                fingerprint: a.key_fingerprint,
                attested_at: a.attested_at,
                lost_at: a.lost_at,
                lost_reason: a.lost_reason,
            })
            .collect();
        let drills: Vec<DrillSeen> = tx
            .drills(None, DRILLS_READ)
            .await?
            .iter()
            .flat_map(participations)
            .collect();
        let custody = tx.custody_records(None).await?;
        let procedures: Vec<_> = stored
            .iter()
            .map(|p| (&p.procedure, p.seal_id.as_deref()))
            .collect();
        Ok(people::inventory(Inputs {
            procedures: &procedures,
            keys: &keys,
            drills: &drills,
            now,
            attestation_max_age: self.config().attestation_max_age,
            custody: &custody,
        }))
    }

    /// One person; an unknown name is a not-found error naming it.
    pub async fn person(&self, by: &Actor, name: &str) -> Result<Person, EngineError> {
        self.people(by)
            .await?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| EngineError::not_found("person", name))
    }
}

/// The custodians whose share a drill accepted ([`crate::drills::shares_accepted`]).
fn participations(d: &DrillRecord) -> Vec<DrillSeen> {
    let steps = d
        .report
        .get("steps")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut names: Vec<String> = if d.mode == "external" {
        // An external-custody drill: whoever confirmed a step took part.
        steps
            .iter()
            .filter_map(|s| s["by"].as_str())
            .map(str::to_owned)
            .collect()
    } else {
        crate::drills::shares_accepted(steps)
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|custodian| DrillSeen {
            custodian,
            drill: d.id.clone(),
            procedure: d.procedure.clone(),
            mode: d.mode.clone(),
            outcome: d.outcome.clone(),
            at: d.finished_at.unwrap_or(d.started_at),
        })
        .collect()
}
