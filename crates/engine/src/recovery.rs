//! Offline recovery, server side: exporting a procedure's recovery kit (by hand, and after
//! every re-seal into `serve --recovery-kit-dir`), and importing the spool an offline recovery
//! wrote: its lines join the main chain marked offline (each keeping its own signature), the
//! procedure is tainted as a revealed secret, and the alerts of a break are raised.

use breakglass_domain::{Action, Actor};
use breakglass_recovery::{Kit, KitCustodian, KitSeal, verify_spool};
use serde_json::{Value, json};

use crate::events::Record;
use crate::ports::{AuditAbout, KitExport, SpoolImport, StoredProcedure, StoredSeal, Taint};
use crate::{Engine, EngineError};

/// The actor name of automatic kit exports.
pub const KIT_EXPORTER: &str = "recovery-kit";

/// A kit just built.
#[derive(Debug, Clone)]
pub struct ExportedKit {
    /// Procedure.
    pub procedure: String,
    /// The seal it holds.
    pub seal_id: String,
    /// Its id.
    pub kit_id: String,
    /// The file's text (nothing secret without the custodians' private keys).
    pub text: String,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// Procedure.
    pub procedure: String,
    /// Kit.
    pub kit_id: String,
    /// Seal opened offline.
    pub seal_id: String,
    /// The spool's head hash.
    pub spool_head: String,
    /// Spool lines appended to the chain.
    pub lines: usize,
    /// Who recovered, as the spool says.
    pub recoverer: String,
    /// The enrolled actor whose key signed the spool, if one did.
    pub signer_actor: Option<String>,
    /// Fingerprint of the signing key.
    pub signer_fingerprint: String,
    /// Custodians whose shares were used.
    pub custodians: Vec<String>,
}

/// How a spool line's kind is alerted: the event a server-side break raises for it.
fn alert_event(kind: &str) -> Option<&'static str> {
    match kind {
        "spool.opened" => Some("break.requested"),
        "share.accepted" => Some("share.accepted"),
        "break.granted" => Some("break.granted"),
        "grant.revealed" => Some("grant.revealed"),
        _ => None,
    }
}

impl Engine {
    /// Builds and signs the recovery kit of `procedure`'s current seal (admin). Audited as
    /// `recovery_kit.exported`.
    pub async fn recovery_kit(
        &self,
        by: &Actor,
        procedure: &str,
    ) -> Result<ExportedKit, EngineError> {
        by.may(Action::Seal)?;
        let kit = self.build_kit(procedure).await?;
        let tx = self.store().begin().await?;
        let mut record = Record::default();
        record.procedure_event(
            self.now(),
            &by.name,
            "recovery_kit.exported",
            procedure,
            json!({"seal_id": kit.seal_id, "kit_id": kit.kit_id, "to": "cli"}),
        );
        self.commit(tx, record).await?;
        Ok(kit)
    }

    /// The latest automatic export of each sealed procedure: `(procedure, current seal, export)`.
    pub async fn recovery_kit_exports(
        &self,
    ) -> Result<Vec<(String, String, Option<KitExport>)>, EngineError> {
        let mut tx = self.store().read().await?;
        let mut out = Vec::new();
        for p in tx.procedures().await? {
            let Some(seal) = p.seal_id.clone() else {
                continue;
            };
            let last = tx.recovery_kit(&p.procedure.id).await?;
            out.push((p.procedure.id.clone(), seal, last));
        }
        Ok(out)
    }

    /// Builds the kit of a procedure for the kit worker (no actor: the server's own job).
    pub async fn build_kit_for_export(&self, procedure: &str) -> Result<ExportedKit, EngineError> {
        self.build_kit(procedure).await
    }

    /// Records that the kit worker wrote `kit` to `location`; audited as
    /// `recovery_kit.exported`.
    pub async fn record_kit_export(
        &self,
        kit: &ExportedKit,
        location: &str,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.put_recovery_kit(&KitExport {
            procedure: kit.procedure.clone(),
            seal_id: kit.seal_id.clone(),
            kit_id: kit.kit_id.clone(),
            location: location.to_owned(),
            exported_at: now,
        })
        .await?;
        let mut record = Record::default();
        record.procedure_event(
            now,
            KIT_EXPORTER,
            "recovery_kit.exported",
            &kit.procedure,
            json!({"seal_id": kit.seal_id, "kit_id": kit.kit_id, "to": location}),
        );
        self.commit(tx, record).await?;
        Ok(())
    }

    async fn build_kit(&self, procedure: &str) -> Result<ExportedKit, EngineError> {
        let key = self
            .inner
            .audit_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| EngineError::Conflict("the server has no audit key yet".into()))?;
        let mut tx = self.store().read().await?;
        let (stored, seal) = load_sealed(tx.as_mut(), procedure).await?;
        drop(tx);
        let custodians = kit_custodians(&stored, &seal)?;
        let (text, kit_id) =
            Kit::export(&kit_seal(&stored, &seal, &custodians), &key, self.now().0).map_err(
                |e| EngineError::Conflict(format!("cannot build the recovery kit: {e}")),
            )?;
        Ok(ExportedKit {
            procedure: stored.procedure.id.clone(),
            seal_id: seal.seal_id.clone(),
            kit_id,
            text,
        })
    }

    /// Imports a recovery spool (admin): verifies its chain and signatures, checks that its kit
    /// is the kit of a seal of its procedure, appends every line to the chain as
    /// `offline.<kind>` (the original line, hash and signature kept in the payload), taints the
    /// procedure as a revealed secret, and queues the alerts a server-side break raises.
    /// A spool already imported is refused (by its head hash), so nothing is duplicated.
    pub async fn import_spool(&self, by: &Actor, text: &str) -> Result<ImportSummary, EngineError> {
        by.may(Action::Seal)?;
        let spool = verify_spool(text)
            .map_err(|e| EngineError::Invalid(format!("the spool does not verify: {e}")))?;
        let now = self.now();
        let known_keys: Vec<breakglass_audit::AuditPublicKey> = {
            let mut tx = self.store().read().await?;
            tx.audit_key_events()
                .await?
                .iter()
                .filter_map(|e| {
                    e.payload
                        .get("public_key")
                        .or_else(|| e.payload.get("new_public_key"))
                        .and_then(Value::as_str)
                        .and_then(|k| k.parse().ok())
                })
                .collect()
        };
        // Every kit this server exported for the procedure, as its audit log records them: a
        // kit made before the procedure file last changed is still this server's kit.
        let exported: Vec<(String, String)> = {
            let mut r = self.store().read().await?;
            let mut out = Vec::new();
            let mut before = u64::MAX;
            loop {
                let page = r
                    .audit_entries_about(AuditAbout::Procedure(&spool.procedure), before, 1000)
                    .await?;
                for e in page.iter().filter(|e| e.kind == "recovery_kit.exported") {
                    if let (Some(seal), Some(kit)) =
                        (e.payload["seal_id"].as_str(), e.payload["kit_id"].as_str())
                    {
                        out.push((seal.to_owned(), kit.to_owned()));
                    }
                }
                match page.last() {
                    Some(last) if page.len() == 1000 => before = last.seq,
                    _ => break,
                }
            }
            out
        };
        // The procedure's lock (held in PostgreSQL with several servers): two imports of one
        // spool run one after the other, so the second finds the first and says so, and an
        // import never interleaves with a rotation of the credential it taints.
        let _lock = self
            .rotation_lock(&spool.procedure, crate::REQUEST_LOCK_WAIT)
            .await?;
        let mut tx = self.store().begin().await?;
        let mut stored = tx
            .procedure(&spool.procedure)
            .await?
            .ok_or_else(|| EngineError::not_found("procedure", spool.procedure.clone()))?;
        let seal = tx
            .seal(&spool.seal_id)
            .await?
            .filter(|s| s.procedure == spool.procedure)
            .ok_or_else(|| {
                EngineError::Conflict(format!(
                    "the spool opened seal {}, which is not a seal of procedure {}",
                    spool.seal_id, spool.procedure
                ))
            })?;
        let custodians = kit_custodians(&stored, &seal)?;
        let source = kit_seal(&stored, &seal, &custodians);
        let matches = known_keys
            .iter()
            .any(|k| Kit::id_for(&source, k).is_ok_and(|id| id == spool.kit_id))
            || exported
                .iter()
                .any(|(seal_id, kit_id)| *seal_id == spool.seal_id && *kit_id == spool.kit_id);
        if !matches {
            return Err(EngineError::Conflict(format!(
                "the spool used kit {}, which this server never exported for seal {} of procedure {}",
                spool.kit_id, spool.seal_id, spool.procedure
            )));
        }
        if let Some(done) = tx.recovery_import(&spool.head).await? {
            return Err(EngineError::Conflict(format!(
                "spool {} was already imported at {} by {}; nothing was added",
                &spool.head[..16],
                done.imported_at,
                done.imported_by
            )));
        }
        let signer_actor = tx
            .actors()
            .await?
            .into_iter()
            .find(|a| a.actor.key.as_ref() == Some(&spool.signer_key))
            .map(|a| a.actor.name);
        let custodians_used: Vec<String> = spool
            .entries
            .iter()
            .filter(|e| e.kind == "share.accepted")
            .filter_map(|e| e.payload["custodian"].as_str().map(str::to_owned))
            .collect();
        let offline_id = format!("offline-{}", &spool.head[..16]);
        let who = signer_actor
            .clone()
            .unwrap_or_else(|| spool.recoverer.clone());

        let mut record = Record::default();
        record.procedure_event(
            now,
            &by.name,
            "recovery.imported",
            &stored.procedure.id,
            json!({
                "offline": true,
                "recovery": offline_id,
                "spool": spool.head,
                "kit_id": spool.kit_id,
                "seal_id": spool.seal_id,
                "lines": spool.entries.len(),
                "recoverer": spool.recoverer,
                "signer_key": spool.signer_key.fingerprint(),
                "signer_actor": signer_actor,
                "custodians": custodians_used,
                "reason": spool.reason,
                "ticket": spool.ticket,
            }),
        );
        for e in &spool.entries {
            let payload = json!({
                "offline": true,
                "recovery": offline_id,
                "spool": spool.head,
                "offline_seq": e.seq,
                "offline_time_ms": e.time_ms,
                "line": e.line,
            });
            let kind = format!("offline.{}", e.kind);
            match alert_event(&e.kind) {
                Some(event) => {
                    record.procedure_event(now, &who, &kind, &stored.procedure.id, payload);
                    record.offline_alert(
                        now,
                        event,
                        &stored.procedure,
                        &offline_id,
                        &who,
                        &spool.reason,
                        &spool.ticket,
                        json!({"offline": true, "spool": spool.head, "line": e.payload}),
                    );
                }
                None => {
                    record.procedure_event(now, &who, &kind, &stored.procedure.id, payload);
                }
            }
        }
        stored.taint = Some(Taint {
            reason: format!(
                "secret opened offline by {who} (recovery {offline_id}, kit {}); rotate it and re-seal a new one",
                &spool.kit_id[..16]
            ),
            break_id: None,
            secret_revealed: true,
        });
        tx.put_procedure(&stored).await?;
        record.procedure_event(
            now,
            &by.name,
            "procedure.tainted",
            &stored.procedure.id,
            json!({"reason": stored.taint.as_ref().map(|t| t.reason.clone()), "recovery": offline_id}),
        );
        tx.put_recovery_import(&SpoolImport {
            spool_head: spool.head.clone(),
            procedure: stored.procedure.id.clone(),
            kit_id: spool.kit_id.clone(),
            lines: spool.entries.len() as u64,
            imported_by: by.name.clone(),
            imported_at: now,
        })
        .await?;
        self.commit(tx, record).await?;
        Ok(ImportSummary {
            procedure: stored.procedure.id.clone(),
            kit_id: spool.kit_id,
            seal_id: spool.seal_id,
            spool_head: spool.head,
            lines: spool.entries.len(),
            recoverer: spool.recoverer,
            signer_actor,
            signer_fingerprint: spool.signer_key.fingerprint(),
            custodians: custodians_used,
        })
    }
}

async fn load_sealed(
    tx: &mut dyn crate::ports::Tx,
    procedure: &str,
) -> Result<(StoredProcedure, StoredSeal), EngineError> {
    let stored = tx
        .procedure(procedure)
        .await?
        .ok_or_else(|| EngineError::not_found("procedure", procedure))?;
    let seal_id = stored.seal_id.clone().ok_or_else(|| {
        EngineError::Conflict(format!(
            "procedure {procedure} is not sealed: there is nothing to recover"
        ))
    })?;
    let seal = tx
        .seal(&seal_id)
        .await?
        .ok_or_else(|| EngineError::not_found("seal", seal_id))?;
    Ok((stored, seal))
}

/// The seal of `stored` a kit holds.
fn kit_seal<'a>(
    stored: &'a StoredProcedure,
    seal: &'a StoredSeal,
    custodians: &'a [KitCustodian],
) -> KitSeal<'a> {
    KitSeal {
        procedure_id: &stored.procedure.id,
        procedure_yaml: &stored.spec_yaml,
        seal_id: &seal.seal_id,
        threshold: seal.threshold,
        ciphertext: &seal.ciphertext,
        sealed_at_ms: seal.created_at.0,
        custodians,
    }
}

fn kit_custodians(
    stored: &StoredProcedure,
    seal: &StoredSeal,
) -> Result<Vec<KitCustodian>, EngineError> {
    stored
        .procedure
        .custodians
        .iter()
        .map(|c| {
            let commitment = seal
                .commitments
                .iter()
                .find(|x| x.custodian == c.name)
                .cloned();
            let share = seal.shares.iter().find(|s| s.custodian == c.name);
            match (commitment, share) {
                (Some(commitment), Some(share)) => Ok(KitCustodian {
                    name: c.name.clone(),
                    key: c.key.clone(),
                    commitment,
                    share: share.age_file.clone(),
                }),
                _ => Err(EngineError::Conflict(format!(
                    "seal {} holds no share of custodian {}: the custodians changed since it was made; re-seal",
                    seal.seal_id, c.name
                ))),
            }
        })
        .collect()
}
