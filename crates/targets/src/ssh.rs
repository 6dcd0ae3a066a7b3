//! Placeholder: being written.

use async_trait::async_trait;
use breakglass_custody::Secret;
use breakglass_domain::{Procedure, TargetKind};
use breakglass_engine::ports::{
    EndCause, GrantRequest, HealthCheck, Issued, PrivilegedAccount, Target, TargetError,
};

/// Placeholder adapter.
#[derive(Default)]
pub struct SshCaTarget;

impl SshCaTarget {
    /// Builds the adapter.
    pub fn new() -> Self {
        SshCaTarget
    }
}

fn todo_err() -> TargetError {
    TargetError::Config {
        target: "ssh".into(),
        message: "not built yet".into(),
    }
}

#[async_trait]
impl Target for SshCaTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::Ssh
    }
    async fn grant(&self, _r: &GrantRequest<'_>, _c: &Secret) -> Result<Issued, TargetError> {
        Err(todo_err())
    }
    async fn end(
        &self,
        _p: &Procedure,
        _b: &str,
        _h: &serde_json::Value,
        _c: EndCause,
    ) -> Result<serde_json::Value, TargetError> {
        Err(todo_err())
    }
    async fn check(&self, _p: &Procedure) -> Result<Vec<HealthCheck>, TargetError> {
        Err(todo_err())
    }
    fn next_credential(&self, _p: &Procedure, _c: &Secret) -> Result<Option<Secret>, TargetError> {
        Err(todo_err())
    }
    async fn rotate(&self, _p: &Procedure, _c: &Secret, _n: &Secret) -> Result<(), TargetError> {
        Err(todo_err())
    }
    async fn discover(&self, _p: &Procedure) -> Result<Vec<PrivilegedAccount>, TargetError> {
        Err(todo_err())
    }
}
