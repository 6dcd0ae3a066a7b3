//! Reading and verifying the audit log through the engine (authorized like everything else).

use breakglass_audit::{Entry, Verifier, VerifyError, VerifyReport};
use breakglass_domain::{Action, Actor};

use crate::{Engine, EngineError};

/// Entries fetched per store round trip while verifying or exporting.
const PAGE: i64 = 5000;

/// Outcome of verifying the stored chain.
#[derive(Debug, Clone)]
pub enum ChainVerdict {
    /// Every entry links and hashes correctly and the chain reaches the stored head.
    Intact(VerifyReport),
    /// The first problem found.
    Broken(VerifyError),
}

impl Engine {
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

    /// Verifies the whole stored chain and that it ends at the stored head.
    pub async fn verify_audit(&self, by: &Actor) -> Result<ChainVerdict, EngineError> {
        by.may(Action::ReadAudit)?;
        let mut tx = self.store().read().await?;
        let head = tx.audit_head().await?;
        let mut verifier = Verifier::new();
        let mut from = 1;
        loop {
            let page = tx.audit_entries(from, PAGE).await?;
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            for e in &page {
                if let Err(err) = verifier.push(e) {
                    return Ok(ChainVerdict::Broken(err));
                }
            }
        }
        let report = verifier.finish();
        if let Some(head) = head
            && let Err(err) = breakglass_audit::verify_against_head(&report, &head)
        {
            return Ok(ChainVerdict::Broken(err));
        }
        Ok(ChainVerdict::Intact(report))
    }
}
