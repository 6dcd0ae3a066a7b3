//! The audit log through the engine: committing with outbox rows for every sink, the audit
//! signing key (adopt, rotate), signed checkpoints, delivery to sinks, and verification —
//! of the local chain and signatures, and against a sink's copy.

use std::sync::Arc;
use std::time::Duration;

use breakglass_audit::{
    AuditKey, AuditPublicKey, Divergence, Entry, Finding, Head, KEY_CREATED, KEY_ROTATED,
    RecordsReport, SinkRecord, compare_with_sink, verify_records,
};
use breakglass_domain::{Action, Actor, Timestamp};
use serde_json::json;

use crate::events::Record;
use crate::ports::{AuditAbout, DeliveryAttempt, OutboxItem, SinkError, Tx};
use crate::{Engine, EngineError};

/// Entries fetched per store round trip while verifying or exporting.
const PAGE: i64 = 5000;

/// Outcome of verifying the stored log.
#[derive(Debug, Clone)]
pub enum ChainVerdict {
    /// Chain, key events and checkpoint signatures all verify.
    Intact(RecordsReport),
    /// The first problem found.
    Broken(Finding),
}

/// Delivery state of one destination.
#[derive(Debug, Clone)]
pub struct Lag {
    /// `sink:NAME` or `channel:NAME`.
    pub destination: String,
    /// Rows waiting.
    pub pending: i64,
    /// Age of the oldest waiting row, in milliseconds.
    pub oldest_ms: Option<i64>,
}

impl Engine {
    /// Commits a transaction with its audit drafts, adding one outbox row per configured sink
    /// for every draft. Every use case commits through here.
    pub(crate) async fn commit(
        &self,
        tx: Box<dyn Tx>,
        mut record: Record,
    ) -> Result<Vec<Entry>, EngineError> {
        for draft in 0..record.drafts.len() {
            for sink in &self.inner.sinks {
                record.outbox.push(OutboxItem {
                    draft,
                    destination: format!("sink:{}", sink.name()),
                    payload: json!({"kind": "entry"}),
                });
            }
        }
        let alerts = record
            .outbox
            .iter()
            .any(|o| o.destination.starts_with("channel:"));
        let entries = tx.commit(record.drafts, record.outbox).await?;
        if alerts {
            self.inner.alerts_queued.notify_one();
        }
        Ok(entries)
    }

    /// Installs the server's audit key. A log with no key yet records `audit.key_created`; a
    /// log whose current key is another one refuses the key (it is not this log's signer).
    pub async fn adopt_audit_key(&self, key: AuditKey) -> Result<bool, EngineError> {
        let mut tx = self.store().begin().await?;
        let events = tx.audit_key_events().await?;
        let current = current_key_id(&events);
        let announced = match current {
            None => {
                let mut record = Record::default();
                record.event(
                    self.now(),
                    "breakglass",
                    KEY_CREATED,
                    json!({"key_id": key.key_id(), "public_key": key.public().to_string()}),
                );
                self.commit(tx, record).await?;
                true
            }
            Some(id) if id == key.key_id() => false,
            Some(id) => {
                return Err(EngineError::Conflict(format!(
                    "the audit key in the data dir ({}) is not this log's current key ({id})",
                    key.key_id()
                )));
            }
        };
        *self
            .inner
            .audit_key
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(key));
        Ok(announced)
    }

    /// The id of the log's current audit key (from its key events).
    pub async fn current_audit_key_id(&self) -> Result<Option<String>, EngineError> {
        let events = self.store().read().await?.audit_key_events().await?;
        Ok(current_key_id(&events))
    }

    /// The current audit public key.
    pub fn audit_public_key(&self) -> Option<AuditPublicKey> {
        self.inner
            .audit_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|k| k.public())
    }

    /// Every audit key the log announced, oldest first, as `(key id, public key, seq)`.
    pub async fn audit_keys(&self, by: &Actor) -> Result<Vec<(String, String, u64)>, EngineError> {
        by.may(Action::ReadAudit)?;
        let events = self.store().read().await?.audit_key_events().await?;
        Ok(events
            .iter()
            .filter_map(|e| {
                let (id, key) = match e.kind.as_str() {
                    KEY_CREATED => (e.payload.get("key_id")?, e.payload.get("public_key")?),
                    _ => (
                        e.payload.get("new_key_id")?,
                        e.payload.get("new_public_key")?,
                    ),
                };
                Some((id.as_str()?.to_owned(), key.as_str()?.to_owned(), e.seq))
            })
            .collect())
    }

    /// Rotates the audit key: a checkpoint by the old key, then `audit.key_rotated` carrying
    /// the old key's endorsement of the new one. Returns the old key id.
    pub async fn rotate_audit_key(&self, by: &Actor, new: AuditKey) -> Result<String, EngineError> {
        by.may(Action::ManageActors)?;
        let old = self
            .inner
            .audit_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| EngineError::Conflict("no audit key installed".into()))?;
        self.checkpoint_now().await?;
        let tx = self.store().begin().await?;
        let mut record = Record::default();
        record.event(
            self.now(),
            &by.name,
            KEY_ROTATED,
            json!({
                "old_key_id": old.key_id(),
                "new_key_id": new.key_id(),
                "new_public_key": new.public().to_string(),
                "endorsement": hex::encode(old.endorse(&new.public())),
            }),
        );
        self.commit(tx, record).await?;
        *self
            .inner
            .audit_key
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(new));
        self.checkpoint_now().await?;
        Ok(old.key_id())
    }

    /// Signs a checkpoint of the current head unless the newest checkpoint already covers it.
    /// Returns the checkpoint's sequence when one was made.
    pub async fn checkpoint_now(&self) -> Result<Option<u64>, EngineError> {
        let Some(key) = self
            .inner
            .audit_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return Ok(None);
        };
        let mut tx = self.store().begin().await?;
        let Some(head) = tx.audit_head().await? else {
            return Ok(None);
        };
        if let Some(latest) = tx.latest_checkpoint().await?
            && latest.checkpoint.seq == head.seq
            && latest.checkpoint.key_id == key.key_id()
        {
            return Ok(None);
        }
        let cp = key.sign_checkpoint(head.seq, head.hash, self.now().0);
        let destinations: Vec<String> = self
            .inner
            .sinks
            .iter()
            .map(|s| format!("sink:{}", s.name()))
            .collect();
        tx.commit_checkpoint(&cp, &destinations).await?;
        Ok(Some(head.seq))
    }

    /// Signs a checkpoint when `every_entries` entries or `every` time passed since the last.
    pub async fn checkpoint_if_due(
        &self,
        every_entries: u64,
        every: Duration,
    ) -> Result<Option<u64>, EngineError> {
        let (head, latest) = {
            let mut tx = self.store().read().await?;
            (tx.audit_head().await?, tx.latest_checkpoint().await?)
        };
        let Some(head) = head else { return Ok(None) };
        let due = match latest {
            None => true,
            Some(l) if l.checkpoint.seq >= head.seq => false,
            Some(l) => {
                head.seq - l.checkpoint.seq >= every_entries
                    || self.now().since(Timestamp(l.checkpoint.time_ms))
                        >= i64::try_from(every.as_millis()).unwrap_or(i64::MAX)
            }
        };
        if due {
            self.checkpoint_now().await
        } else {
            Ok(None)
        }
    }

    /// Delivers what is due in the outbox to every sink, in order per sink; a failing sink is
    /// retried later with exponential backoff and never blocks the others or any break.
    /// Returns the number of records delivered.
    pub async fn deliver_to_sinks(&self) -> Result<usize, EngineError> {
        let mut delivered = 0;
        for sink in &self.inner.sinks {
            let destination = format!("sink:{}", sink.name());
            loop {
                let rows = self
                    .store()
                    .read()
                    .await?
                    .due_outbox(&destination, self.now(), 200)
                    .await?;
                if rows.is_empty() {
                    break;
                }
                // Several servers: deliver only while this one holds the job's lease.
                if !self.lease(crate::LEASE_AUDIT).await {
                    return Ok(delivered);
                }
                let mut stop = false;
                for row in rows {
                    let record = self.sink_record(&row.payload, row.seq).await?;
                    let result = match record {
                        Some(r) => sink.deliver(&r).await,
                        None => Err(SinkError::Rejected(format!(
                            "outbox row {} refers to a missing record",
                            row.id
                        ))),
                    };
                    let now = self.now();
                    let attempt = match &result {
                        Ok(()) => DeliveryAttempt::Delivered { at: now },
                        Err(e) => DeliveryAttempt::Failed {
                            at: now,
                            retry_at: now.plus(backoff(row.attempts)),
                            error: e.to_string(),
                        },
                    };
                    let mut tx = self.store().begin().await?;
                    tx.mark_outbox(row.id, &attempt).await?;
                    tx.commit_bookkeeping().await?;
                    match result {
                        Ok(()) => delivered += 1,
                        Err(e) => {
                            tracing::warn!(sink = sink.name(), error = %e, attempts = row.attempts + 1, "audit sink delivery failed; will retry");
                            stop = true;
                            break;
                        }
                    }
                }
                if stop {
                    break;
                }
            }
        }
        Ok(delivered)
    }

    async fn sink_record(
        &self,
        payload: &serde_json::Value,
        seq: u64,
    ) -> Result<Option<SinkRecord>, EngineError> {
        let mut tx = self.store().read().await?;
        Ok(match payload.get("kind").and_then(|k| k.as_str()) {
            Some("checkpoint") => {
                let key_id = payload
                    .get("key_id")
                    .and_then(|k| k.as_str())
                    .unwrap_or_default();
                tx.checkpoint(seq, key_id)
                    .await?
                    .map(SinkRecord::Checkpoint)
            }
            _ => tx
                .audit_entries(seq, 1)
                .await?
                .into_iter()
                .find(|e| e.seq == seq)
                .map(SinkRecord::Entry),
        })
    }

    /// Undelivered outbox rows per destination.
    pub async fn outbox_lag(&self) -> Result<Vec<Lag>, EngineError> {
        let now = self.now();
        let rows = self.store().read().await?.outbox_lag().await?;
        Ok(rows
            .into_iter()
            .map(|(destination, pending, oldest)| Lag {
                destination,
                pending,
                oldest_ms: oldest.map(|t| now.since(t)),
            })
            .collect())
    }

    /// Audit entries with `seq >= from`, ascending.
    pub async fn audit_entries(
        &self,
        by: &Actor,
        from: u64,
        limit: i64,
    ) -> Result<Vec<Entry>, EngineError> {
        by.may(Action::ReadAudit)?;
        Ok(self
            .store()
            .read()
            .await?
            .audit_entries(from, limit.clamp(1, PAGE))
            .await?)
    }

    /// Audit entries about a procedure, a break or everything, with `seq < before` (`None`:
    /// from the head), newest first. A break's own entries are its story, which anyone who
    /// may read the break may read; the rest of the log needs the audit role.
    pub async fn audit_about(
        &self,
        by: &Actor,
        about: AuditAbout<'_>,
        before: Option<u64>,
        limit: i64,
    ) -> Result<Vec<Entry>, EngineError> {
        match about {
            AuditAbout::Break(_) => by.may(Action::Read)?,
            _ => by.may(Action::ReadAudit)?,
        }
        Ok(self
            .store()
            .read()
            .await?
            .audit_entries_about(about, before.unwrap_or(u64::MAX), limit.clamp(1, PAGE))
            .await?)
    }

    /// The newest entry's sequence number and hash.
    pub async fn audit_head(&self, by: &Actor) -> Result<Option<Head>, EngineError> {
        by.may(Action::ReadAudit)?;
        Ok(self.store().read().await?.audit_head().await?)
    }

    /// Every entry then every checkpoint, as records (what `audit export` writes).
    pub async fn audit_records(&self, by: &Actor) -> Result<Vec<SinkRecord>, EngineError> {
        Ok(self.audit_snapshot(by).await?.0)
    }

    /// Every entry and checkpoint with the stored head, read in one transaction (one snapshot),
    /// so a write landing meanwhile cannot make the head look ahead of the log.
    async fn audit_snapshot(
        &self,
        by: &Actor,
    ) -> Result<(Vec<SinkRecord>, Option<breakglass_audit::Head>), EngineError> {
        by.may(Action::ReadAudit)?;
        let mut tx = self.store().read().await?;
        let head = tx.audit_head().await?;
        let mut records = Vec::new();
        let mut from = 1;
        loop {
            let page = tx.audit_entries(from, PAGE).await?;
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            records.extend(page.into_iter().map(SinkRecord::Entry));
        }
        records.extend(
            tx.checkpoints()
                .await?
                .into_iter()
                .map(SinkRecord::Checkpoint),
        );
        Ok((records, head))
    }

    /// Verifies the stored log: the chain, the key events, every checkpoint's signature and
    /// head, that no checkpoint lies beyond the log's end, that the chain reaches the stored
    /// head row, and that the server's own key is among the log's keys.
    pub async fn verify_audit(&self, by: &Actor) -> Result<ChainVerdict, EngineError> {
        self.verify_audit_pinned(by, None).await
    }

    /// `verify_audit` against a key the caller trusts (from `audit pubkey`, kept elsewhere)
    /// instead of the key in the server's data dir, which whoever rebuilt the log could have
    /// replaced too.
    pub async fn verify_audit_pinned(
        &self,
        by: &Actor,
        pinned: Option<AuditPublicKey>,
    ) -> Result<ChainVerdict, EngineError> {
        let (records, head) = self.audit_snapshot(by).await?;
        let trusted = pinned.or_else(|| self.audit_public_key());
        let report = match verify_records(&records, trusted.as_ref()) {
            Ok(r) => r,
            Err(f) => return Ok(ChainVerdict::Broken(f)),
        };
        if let Some(head) = head {
            let chain = breakglass_audit::VerifyReport {
                entries: report.entries,
                head: report.head,
            };
            if let Err(e) = breakglass_audit::verify_against_head(&chain, &head) {
                return Ok(ChainVerdict::Broken(Finding::Chain(e)));
            }
        }
        Ok(ChainVerdict::Intact(report))
    }

    /// Compares the stored log with what sink `name` holds.
    pub async fn verify_against(
        &self,
        by: &Actor,
        name: &str,
    ) -> Result<Vec<Divergence>, EngineError> {
        let records = self.audit_records(by).await?;
        let sink = self
            .inner
            .sinks
            .iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| EngineError::not_found("sink", name))?;
        let theirs = sink
            .read_back()
            .await
            .map_err(|e| EngineError::Conflict(format!("sink `{name}`: {e}")))?;
        Ok(compare_with_sink(&records, &theirs))
    }

    /// Names of the configured sinks.
    pub fn sink_names(&self) -> Vec<String> {
        self.inner
            .sinks
            .iter()
            .map(|s| s.name().to_owned())
            .collect()
    }
}

fn current_key_id(events: &[Entry]) -> Option<String> {
    events.iter().rev().find_map(|e| {
        let field = if e.kind == KEY_CREATED {
            "key_id"
        } else {
            "new_key_id"
        };
        e.payload
            .get(field)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    })
}

/// 0.5 s doubling per attempt up to 60 s, plus up to 25 % jitter so sinks recovering together
/// are not hit in lockstep.
pub(crate) fn backoff(attempts: i64) -> Duration {
    use rand::Rng;
    let base = 500u64
        .saturating_mul(1u64 << attempts.clamp(0, 7))
        .min(60_000);
    Duration::from_millis(base + rand::thread_rng().gen_range(0..=base / 4))
}
