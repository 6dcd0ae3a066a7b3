//! The breakglass domain: procedures as code, actors and their permissions, and the break
//! lifecycle as types. This crate does no I/O and is not async; every rule that decides what
//! may happen lives here or in the engine, never in an HTTP handler.

pub mod actor;
pub mod drill;
pub mod external;
pub mod lifecycle;
pub mod people;
pub mod procedure;
pub mod readiness;
pub mod target;
pub mod time;

pub use actor::{Action, Actor, Denied, Role};
pub use drill::{DrillMode, Injection};
pub use external::{
    CustodyRecord, ExternalCustody, Holder, RecordKind, Run, RunKind, RunOutcome, StepDone,
    StepError, TimedStep,
};
pub use lifecycle::{
    Approval, ApproveError, Break, BreakId, BreakInfo, CloseError, EndReason, Ended, Granted,
    OpenError, Requested, RevealError,
};
pub use people::{Person, named};
pub use procedure::{
    Custodian, Limits, Parsed, Procedure, ProcedureError, ProcedureSpec, SecondFactor, Target,
    TargetKind, parse_duration, parse_procedures,
};
pub use readiness::{
    Finding, KeyState, KitState, LintPolicy, Posture, Readiness, SecondFactorCount, Verdict, WhatIf,
};
pub use target::{
    Access, HttpTarget, MariadbTarget, OnEnd, PostgresTarget, SshTarget, TargetConfig, ident_ok,
};
pub use time::Timestamp;
