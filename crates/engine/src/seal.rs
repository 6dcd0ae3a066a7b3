//! Sealing a procedure's credential: encrypt under a fresh data key, split the key M-of-N to
//! the custodians, store ciphertexts and commitments only. Re-sealing clears the taint; where
//! the secret was revealed, only a different secret may be sealed.

use breakglass_custody::Secret;
use breakglass_domain::{Action, Actor};
use serde_json::json;

use crate::events::Record;
use crate::ports::StoredSeal;
use crate::{Engine, EngineError};

/// What sealing produced (no secret material).
#[derive(Debug, Clone)]
pub struct SealSummary {
    /// New seal id.
    pub seal_id: String,
    /// Procedure.
    pub procedure: String,
    /// Shares needed.
    pub threshold: u8,
    /// Custodians holding a share.
    pub custodians: Vec<String>,
    /// The seal this one replaces.
    pub replaces: Option<String>,
    /// The taint this cleared, if any.
    pub cleared_taint: Option<String>,
}

impl Engine {
    /// Seals `secret` for `procedure` to its custodians.
    pub async fn seal(
        &self,
        by: &Actor,
        procedure: &str,
        secret: Secret,
    ) -> Result<SealSummary, EngineError> {
        by.may(Action::Seal)?;
        let mut tx = self.store().begin().await?;
        let mut stored = tx
            .procedure(procedure)
            .await?
            .ok_or_else(|| EngineError::not_found("procedure", procedure))?;
        if let Some(c) = &stored.procedure.external {
            return Err(EngineError::Invalid(format!(
                "procedure `{procedure}` is held outside breakglass ({}): there is nothing to seal; its holders record rotations with `breakglass custody rotated {procedure}`",
                c.location
            )));
        }
        if let (Some(taint), Some(old_id)) = (&stored.taint, &stored.seal_id)
            && taint.secret_revealed
        {
            {
                let old = tx
                    .seal(old_id)
                    .await?
                    .ok_or_else(|| EngineError::not_found("seal", old_id.clone()))?;
                let salt: [u8; 16] = old.fingerprint_salt.as_slice().try_into().map_err(|_| {
                    EngineError::Conflict(format!("seal {old_id} has a malformed fingerprint salt"))
                })?;
                let again =
                    breakglass_custody::fingerprint_secret(&secret, &salt).map_err(|e| {
                        EngineError::Conflict(format!("cannot fingerprint the secret: {e}"))
                    })?;
                if breakglass_custody::ct_eq(&again, &old.secret_fingerprint) {
                    // A taint without a break comes from an imported offline recovery.
                    let by = match &taint.break_id {
                        Some(b) => format!("break {b}"),
                        None => "an offline recovery".to_owned(),
                    };
                    return Err(EngineError::Invalid(format!(
                        "this is the secret that {by} revealed; rotate it on the target and seal the new one"
                    )));
                }
            }
        }
        let custodians: Vec<(String, breakglass_custody::CustodianKey)> = stored
            .procedure
            .custodians
            .iter()
            .map(|c| (c.name.clone(), c.key.clone()))
            .collect();
        let sealed = breakglass_custody::seal(&secret, stored.procedure.quorum, &custodians)?;
        let salt = breakglass_custody::random_salt();
        let fingerprint = breakglass_custody::fingerprint_secret(&secret, &salt)
            .map_err(|e| EngineError::Conflict(format!("cannot fingerprint the secret: {e}")))?;
        drop(secret);
        let now = self.now();
        let seal = StoredSeal {
            seal_id: sealed.seal_id.clone(),
            procedure: procedure.to_owned(),
            threshold: sealed.threshold,
            ciphertext: sealed.ciphertext,
            commitments: sealed.commitments,
            shares: sealed.shares,
            secret_fingerprint: fingerprint.to_vec(),
            fingerprint_salt: salt.to_vec(),
            created_at: now,
        };
        tx.insert_seal(&seal).await?;
        let replaces = stored.seal_id.replace(seal.seal_id.clone());
        let cleared_taint = stored.taint.take().map(|t| t.reason);
        tx.put_procedure(&stored).await?;
        let mut record = Record::default();
        record.procedure_alert(
            now,
            &by.name,
            "seal.created",
            &stored.procedure,
            json!({
                "seal_id": seal.seal_id,
                "threshold": seal.threshold,
                "custodians": custodians.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                "commitments": seal.commitments.iter().map(|c| hex::encode(c.digest)).collect::<Vec<_>>(),
                "replaces": replaces,
            }),
        );
        if let Some(reason) = &cleared_taint {
            record.procedure_event(
                now,
                &by.name,
                "procedure.untainted",
                procedure,
                json!({"cleared": reason, "seal_id": seal.seal_id}),
            );
        }
        self.commit(tx, record).await?;
        Ok(SealSummary {
            seal_id: seal.seal_id,
            procedure: procedure.to_owned(),
            threshold: seal.threshold,
            custodians: custodians.into_iter().map(|(n, _)| n).collect(),
            replaces,
            cleared_taint,
        })
    }
}
