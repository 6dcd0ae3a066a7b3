//! The engine's error: one enum whose variants say what the caller can do about it.

use breakglass_custody::{SealError, ShareError, UnsealError};
use breakglass_domain::{ApproveError, CloseError, Denied, OpenError, ProcedureError, RevealError};

use crate::ports::StoreError;

/// Why a use case failed. Messages never contain secret material.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No valid credentials.
    #[error("not signed in: {0}")]
    Unauthenticated(String),
    /// Signed in but not allowed.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// Signed in with a role that allows the action, but not allowed on this procedure or run
    /// (not one of its holders, not the run's opener).
    #[error("{0}")]
    NotAllowed(String),
    /// Something named does not exist.
    #[error("{what} `{id}` not found")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// Procedure files are invalid.
    #[error("{} problem(s) in procedure files:\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Procedure(Vec<ProcedureError>),
    /// A break cannot be opened.
    #[error("cannot open break: {0}")]
    Open(#[from] OpenError),
    /// An approval is refused.
    #[error("approval refused: {0}")]
    Approve(#[from] ApproveError),
    /// A submitted share is refused.
    #[error("share refused: {0}")]
    Share(#[from] ShareError),
    /// An approval's second factor (TOTP) is refused.
    #[error("{0}")]
    SecondFactor(#[from] crate::totp::SecondFactorError),
    /// A reveal is refused.
    #[error("reveal refused: {0}")]
    Reveal(#[from] RevealError),
    /// A close is refused.
    #[error("close refused: {0}")]
    Close(#[from] CloseError),
    /// Sealing failed.
    #[error("seal failed: {0}")]
    Seal(#[from] SealError),
    /// Combining the shares failed although each was verified.
    #[error("unseal failed: {0}")]
    Unseal(#[from] UnsealError),
    /// A human step of an external-custody run is refused (unknown, out of order, repeated,
    /// or the run has ended).
    #[error("step refused: {0}")]
    Step(#[from] breakglass_domain::StepError),
    /// The state changed in a way that conflicts with the request.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A target refused or failed (unreachable, credential refused, missing privilege…).
    #[error("target: {0}")]
    Target(#[from] crate::ports::TargetError),
    /// Another server holds the break's accepted shares: the request belongs there.
    #[error("break `{break_id}`'s accepted shares are held by the server at {url}")]
    Elsewhere {
        /// Break.
        break_id: String,
        /// That server's advertised URL.
        url: String,
    },
    /// The store failed; nothing was committed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    pub(crate) fn not_found(what: &'static str, id: impl Into<String>) -> EngineError {
        EngineError::NotFound {
            what,
            id: id.into(),
        }
    }
}
