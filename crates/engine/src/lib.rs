//! The breakglass engine: every use case (apply procedures, seal, open / approve / reveal /
//! close / expire breaks, enrol actors, sign in, read and verify the audit log) and the traits
//! it needs from the outside (`Store`, `Clock`).
//!
//! Every use case reads as its steps: authorize, load, apply a domain transition, save, and
//! commit together with its audit entry. The engine knows no HTTP, no SQL and no JSON wire
//! format; it never logs a secret.

mod alerting;
mod audit_log;
mod auth;
mod breaks;
mod drills;
mod error;
mod events;
mod evidence;
mod external;
mod gateway;
mod grants;
mod people;
mod procedures;
mod readiness;
mod recovery;
mod schedules;
mod seal;
mod totp;

pub mod ports;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use breakglass_custody::VerifiedShare;
use breakglass_domain::Limits;

pub use alerting::{Acknowledged, ChannelInfo};
pub use audit_log::{ChainVerdict, Lag};
pub use auth::{Challenge, ChallengeKind, LOGIN_NAMESPACE, LoginMethod, Session, expose_token};
pub use breaks::{ApproveOutcome, RevealedGrant, ShareForCustodian};
pub use drills::{DRILL_RUNNER, DrillRequest, TimelineStep, step_of};
pub use error::EngineError;
pub use evidence::{MAX_PACK_STATEMENTS, PACK_STATEMENTS};
pub use external::CustodyStatus;
pub use gateway::{
    Admission, GatewayCounters, GatewayEndpoint, LOST_SESSIONS_WINDOW_MS, OpenSession,
    RecordedSession, Refusal, SessionEnd, SessionEnds, SessionSummary, StatementPage,
    TERMINATION_REASON_MAX, Termination, recording_digest,
};
pub use grants::{Discovery, TargetCheck};
pub use ports::{
    AuditAbout, Clock, ManualClock, Store, StoredActor, StoredProcedure, StoredSeal, SystemClock,
    Taint, Tx,
};
pub use procedures::{ApplyChange, ApplyOutcome, ProcedureStatus, SealState};
pub use readiness::AttestChallenge;
pub use recovery::{ExportedKit, ImportSummary, KIT_EXPORTER};
pub use schedules::SCHEDULER;
pub use seal::SealSummary;
pub use totp::{
    SecondFactorError, SecondFactorProof, TOTP_FAILURE_WINDOW, TOTP_LOCKOUT, TOTP_MAX_FAILURES,
    TotpEnrollment, TotpStatus,
};

/// How long opening or approving a break waits for a rotation of the procedure's credential
/// in flight (on any server) before answering "try again".
pub(crate) const REQUEST_LOCK_WAIT: Duration = Duration::from_secs(30);
/// How long a rotation waits for the procedure's lock (breaks being opened or approved, an
/// earlier rotation) before it gives up and leaves the old seal current.
pub(crate) const ROTATION_LOCK_WAIT: Duration = Duration::from_secs(120);

/// Leases of the background jobs: with several servers on one PostgreSQL, each job runs on
/// the one server holding its lease (renewed every round; taken over when it expires).
pub const LEASE_ALERTS: &str = "job:alerts";
/// Checkpoints and delivery to the audit sinks.
pub const LEASE_AUDIT: &str = "job:audit";
/// The expiry sweep (breaks past their deadline, grants to end).
pub const LEASE_EXPIRY: &str = "job:expiry";
/// Scheduled drills and attestation requests.
pub const LEASE_SCHEDULE: &str = "job:schedule";

/// Settings the engine needs, validated by the binary.
#[derive(Debug, Clone)]
pub struct Config {
    /// Limits applied to procedure files.
    pub limits: Limits,
    /// How long custodians have to approve before a request lapses.
    pub approval_window: Duration,
    /// How long a key-based sign-in session lasts.
    pub session_ttl: Duration,
    /// The server's external URL, used in links inside alerts.
    pub public_url: Option<String>,
    /// Channels told about the server itself (an audit sink lagging), not about a procedure.
    pub system_channels: Vec<String>,
    /// An audit sink whose oldest undelivered record is older than this is lagging.
    pub sink_lag_alert_after: Duration,
    /// Limits readiness applies to procedure files.
    pub lint: breakglass_domain::LintPolicy,
    /// Custodian attestations older than this no longer count for readiness.
    pub attestation_max_age: Duration,
    /// Names of the identity providers the organisation runs (e.g. `okta`): a drill with
    /// `idp-down` fails if any step of the path depends on one. Each procedure's
    /// `protects_against` counts too.
    pub identity_providers: Vec<String>,
    /// How often custodians are asked to attest their key through the alert channels.
    pub attestation_interval: Duration,
    /// Where requesters reach the PostgreSQL gateway, when the server runs one.
    pub gateway: Option<GatewayEndpoint>,
    /// This server's own URL as the other servers of a deployment reach it (`serve
    /// --advertise-url`): with it, a break's shares go to the one server holding the others,
    /// whichever server the custodian's request reached.
    pub advertise_url: Option<String>,
    /// How long a background job's lease lasts without renewal (several servers on one
    /// PostgreSQL: a dead server's jobs are taken over after this).
    pub lease_ttl: Duration,
    /// The server exports each procedure's recovery kit after every seal (`serve
    /// --recovery-kit-dir`): readiness then reports a kit missing or older than the seal.
    pub recovery_kits: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            approval_window: Duration::from_secs(3600),
            session_ttl: Duration::from_secs(15 * 60),
            public_url: None,
            system_channels: Vec::new(),
            sink_lag_alert_after: Duration::from_secs(60),
            lint: breakglass_domain::LintPolicy::default(),
            attestation_max_age: Duration::from_secs(30 * 86_400),
            identity_providers: Vec::new(),
            attestation_interval: Duration::from_secs(30 * 86_400),
            gateway: None,
            lease_ttl: Duration::from_secs(5),
            advertise_url: None,
            recovery_kits: false,
        }
    }
}

/// Where the engine sends what it records.
#[derive(Default)]
pub struct Outputs {
    /// Audit sinks.
    pub sinks: Vec<Arc<dyn ports::Sink>>,
    /// Alert channels.
    pub channels: Vec<Arc<dyn ports::Channel>>,
    /// Key of acknowledgement tokens (32 random bytes kept by the server).
    pub ack_key: [u8; 32],
    /// Key encrypting TOTP secrets at rest (32 random bytes kept by the server, `totp.key`).
    pub totp_key: [u8; 32],
    /// Target adapters, one per kind (`secret` needs none).
    pub targets: Vec<Arc<dyn ports::Target>>,
    /// The drill runner's identities (automated drills need them).
    pub drill_keys: Option<Arc<dyn ports::DrillKeys>>,
}

/// The engine: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: Config,
    /// Shares accepted for breaks still collecting. Held only in memory, never stored: a
    /// restart drops them and the start-up sweep asks custodians to approve again.
    pending: Mutex<HashMap<String, Vec<VerifiedShare>>>,
    /// Audit sinks fed through the outbox.
    sinks: Vec<Arc<dyn ports::Sink>>,
    /// Alert channels fed through the outbox.
    channels: Vec<Arc<dyn ports::Channel>>,
    /// Key of acknowledgement tokens.
    ack_key: [u8; 32],
    /// Key encrypting TOTP secrets at rest.
    totp_key: [u8; 32],
    /// Sinks currently reported as lagging (so each episode alerts once).
    lagging: Mutex<std::collections::HashSet<String>>,
    /// Woken by commits that queued alerts.
    alerts_queued: tokio::sync::Notify,
    /// The key signing checkpoints (replaced on rotation).
    audit_key: std::sync::RwLock<Option<Arc<breakglass_audit::AuditKey>>>,
    /// Target adapters by kind.
    targets: HashMap<breakglass_domain::TargetKind, Arc<dyn ports::Target>>,
    /// Attestation challenges waiting for an answer (in memory, single use).
    attest: Mutex<HashMap<String, readiness::PendingAttest>>,
    /// Background tasks (credential rotations after grants), awaited by `settle`.
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The drill runner's identities.
    drill_keys: Option<Arc<dyn ports::DrillKeys>>,
    /// Failures injected by running drills, by drill id.
    faults: Mutex<HashMap<String, drills::Faults>>,
    /// One alert delivery pass at a time (the worker and a drill runner may both drive it).
    delivering: tokio::sync::Mutex<()>,
    /// Logins of proxy grants, held for the gateway (memory only).
    gateway: gateway::GatewayState,
    /// This server's name among several on one database (`srv-` and random hex).
    instance: String,
}

impl Engine {
    /// Takes the rotation lock of a procedure, held by a credential rotation from its start
    /// to its promotion and by opening a break and approving one, so no break combines a
    /// credential the target no longer holds. It is the store's `lock_procedure`: one lock
    /// for every server on the database. Waits at most `wait`, then answers a conflict.
    pub(crate) async fn rotation_lock(
        &self,
        procedure: &str,
        wait: Duration,
    ) -> Result<ports::ProcedureLock, EngineError> {
        self.store()
            .lock_procedure(procedure, wait)
            .await?
            .ok_or_else(|| {
                EngineError::Conflict(format!(
                    "procedure `{procedure}` is being rotated on this or another server (waited {} s for its lock); try again",
                    wait.as_secs()
                ))
            })
    }

    /// Builds an engine over a store and a clock.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: Config) -> Engine {
        Engine::with_sinks(store, clock, config, Vec::new())
    }

    /// Builds an engine whose audit entries and checkpoints are also shipped to `sinks`.
    pub fn with_sinks(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: Config,
        sinks: Vec<Arc<dyn ports::Sink>>,
    ) -> Engine {
        Engine::wired(
            store,
            clock,
            config,
            Outputs {
                sinks,
                ..Outputs::default()
            },
        )
    }

    /// Builds an engine with its audit sinks, alert channels and acknowledgement key.
    pub fn wired(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: Config,
        outputs: Outputs,
    ) -> Engine {
        let Outputs {
            sinks,
            channels,
            ack_key,
            totp_key,
            targets,
            drill_keys,
        } = outputs;
        let targets = targets.into_iter().map(|t| (t.kind(), t)).collect();
        Engine {
            inner: Arc::new(Inner {
                store,
                clock,
                config,
                pending: Mutex::new(HashMap::new()),
                sinks,
                channels,
                ack_key,
                totp_key,
                alerts_queued: tokio::sync::Notify::new(),
                lagging: Mutex::new(std::collections::HashSet::new()),
                audit_key: std::sync::RwLock::new(None),
                targets,
                attest: Mutex::new(HashMap::new()),
                background: Mutex::new(Vec::new()),
                drill_keys,
                faults: Mutex::new(HashMap::new()),
                delivering: tokio::sync::Mutex::new(()),
                gateway: gateway::GatewayState::default(),
                instance: format!("srv-{:016x}", rand::random::<u64>()),
            }),
        }
    }

    /// This server's name in leases (random per start).
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Takes or renews the lease of background job `job` (see `Store::try_lease`); `false`
    /// when another server holds it, or when the store cannot say (the job waits).
    pub async fn lease(&self, job: &str) -> bool {
        match self
            .inner
            .store
            .try_lease(job, &self.inner.instance, self.inner.config.lease_ttl)
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(job, error = %e, "lease check failed; skipping this round");
                false
            }
        }
    }

    /// Renews this server's liveness lease (`instance:ID`), which tells the others it still
    /// holds the shares it accepted.
    pub async fn heartbeat(&self) {
        if self.inner.config.advertise_url.is_some() {
            let _ = self
                .lease(&format!("instance:{}", self.inner.instance))
                .await;
        }
    }

    /// Gives up this server's leases (clean shutdown).
    pub async fn release_leases(&self, jobs: &[&str]) {
        for job in jobs {
            let _ = self
                .inner
                .store
                .release_lease(job, &self.inner.instance)
                .await;
        }
    }

    /// The engine's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The store's backend name.
    pub fn backend(&self) -> &'static str {
        self.inner.store.backend()
    }

    /// The current time by the engine's clock.
    pub fn now(&self) -> breakglass_domain::Timestamp {
        self.inner.clock.now()
    }

    /// Whether the store answers a read.
    pub async fn store_ready(&self) -> Result<(), EngineError> {
        let mut tx = self.store().read().await?;
        tx.audit_head().await?;
        Ok(())
    }

    fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }
}

/// A new random identifier: `prefix` + 16 hex digits.
fn new_id(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}
