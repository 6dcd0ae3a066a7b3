//! The breakglass server: the composition root (`build`), the HTTP API (axum), its request and
//! response types, the OpenAPI document, and the background expiry worker.
//!
//! Handlers only translate: parse the request, authenticate the bearer token, call one engine
//! use case, map the result. Every rule lives in the engine and the domain. API types are
//! separate from engine types and converted by hand, so a new engine field (a secret above
//! all) never reaches a response by accident.

mod api;
pub mod audit_key;
pub mod drill_keys;
pub mod drill_report;
mod error;
pub mod limits;
mod openapi;
pub mod recovery_kits;
pub mod tls;
mod ui;
mod views;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use breakglass_domain::Limits;
use breakglass_engine::{Clock, Config, Engine, SystemClock};
use breakglass_store::SqlStore;
use secrecy::SecretString;
use tokio::net::TcpListener;

pub use api::{decode_request_bodies, router};
pub use openapi::document as openapi_document;

/// Settings of a server, validated by the binary.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory (SQLite database, admin token file).
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of SQLite in the data dir.
    pub database_url: Option<String>,
    /// Engine settings.
    pub engine: Config,
    /// Audit sinks, each `NAME=URL` (see `breakglass-sinks`).
    pub sinks: Vec<String>,
    /// Alert channels file (YAML; see docs/alerts.md).
    pub channels_file: Option<PathBuf>,
    /// Targets file: operator connections for database and HTTP targets (docs/targets.md).
    pub targets_file: Option<PathBuf>,
    /// The server's external URL for links in alerts (overrides the channels file's).
    pub public_url: Option<String>,
    /// Sign a checkpoint after this many new entries…
    pub checkpoint_every_entries: u64,
    /// …or after this much time with new entries.
    pub checkpoint_interval: Duration,
    /// How often the scheduler looks for due drills and attestation requests.
    pub schedule_interval: Duration,
    /// Rate limits of sign-in, approvals and acknowledgements.
    pub rate_limits: limits::RateLimits,
    /// Write each procedure's recovery kit here (`PROCEDURE.kit`) after every seal.
    pub recovery_kit_dir: Option<PathBuf>,
}

impl ServerConfig {
    /// Defaults for a data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            data_dir: data_dir.into(),
            database_url: None,
            engine: Config::default(),
            sinks: Vec::new(),
            channels_file: None,
            targets_file: None,
            public_url: None,
            checkpoint_every_entries: 1000,
            checkpoint_interval: Duration::from_secs(60),
            schedule_interval: Duration::from_secs(30),
            rate_limits: limits::RateLimits::default(),
            recovery_kit_dir: None,
        }
    }

    /// Sets the grant ceiling.
    pub fn with_grant_ceiling(mut self, ceiling: Duration) -> ServerConfig {
        self.engine.limits = Limits {
            grant_ceiling: ceiling,
        };
        self
    }
}

/// Shared state of every request.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Engine,
    /// Data directory (holds the audit key).
    pub data_dir: PathBuf,
    /// Checkpoint cadence: entries.
    pub checkpoint_every_entries: u64,
    /// Checkpoint cadence: time.
    pub checkpoint_interval: Duration,
    /// Scheduler cadence.
    pub schedule_interval: Duration,
    /// Where recovery kits are exported after every seal.
    pub recovery_kit_dir: Option<PathBuf>,
    /// The web UI's CSRF key and latest audit verification.
    pub(crate) ui: ui::Ui,
    /// Rate limiters.
    pub(crate) limiters: Arc<limits::Limiters>,
    /// Whether the server answers over TLS (then every response carries HSTS).
    pub(crate) tls: bool,
    /// HTTP client to the other servers of a deployment (forwarded approvals).
    pub(crate) peers: reqwest::Client,
}

/// What `build` produced.
pub struct Built {
    /// State to serve.
    pub state: AppState,
    /// The first admin's token, when this start created it (also written to the data dir).
    pub bootstrap_token: Option<SecretString>,
    /// Where the admin token file is.
    pub admin_token_file: PathBuf,
}

/// Name of the web UI's CSRF key file in the data dir (the same on every server).
pub const UI_KEY_FILE: &str = "ui.key";

/// Name of the acknowledgement-token key file in the data dir.
pub const ACK_KEY_FILE: &str = "ack.key";

/// Name of the key file encrypting TOTP secrets at rest (the same on every server).
pub const TOTP_KEY_FILE: &str = "totp.key";

/// Reads 32 secret bytes (hex) from `path`, creating the file (0600) with random bytes first.
fn secret_file(path: &Path) -> anyhow::Result<zeroize::Zeroizing<[u8; 32]>> {
    use anyhow::Context;
    if !path.exists() {
        use rand::RngCore;
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(bytes.as_mut());
        write_private_file(
            path,
            zeroize::Zeroizing::new(hex::encode(&bytes[..])).as_bytes(),
        )?;
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    let bytes = zeroize::Zeroizing::new(
        hex::decode(text.trim()).map_err(|_| anyhow::anyhow!("{} is not hex", path.display()))?,
    );
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} does not hold 32 bytes", path.display()))?;
    Ok(zeroize::Zeroizing::new(key))
}

/// Name of the admin token file in the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Builds the application: opens the store, creates the engine, runs the start-up sweep
/// (expire what passed its deadline while the server was down; reset approvals whose shares
/// were lost), and bootstraps the first admin.
pub async fn build(config: ServerConfig) -> anyhow::Result<Built> {
    build_with_clock(config, Arc::new(SystemClock)).await
}

/// `build` with an injected clock (tests).
pub async fn build_with_clock(
    config: ServerConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Built> {
    use anyhow::Context;
    create_private_dir(&config.data_dir)?;
    let store = match &config.database_url {
        Some(url) => SqlStore::connect(url)
            .await
            .context("opening PostgreSQL store")?,
        None => SqlStore::open_sqlite(&config.data_dir.join("breakglass.db"))
            .await
            .context("opening SQLite store")?,
    };
    let mut sinks = Vec::new();
    for spec in &config.sinks {
        sinks.push(
            breakglass_sinks::open(spec)
                .await
                .context("opening an audit sink")?,
        );
    }
    let mut engine_config = config.engine.clone();
    engine_config.recovery_kits |= config.recovery_kit_dir.is_some();
    let channels = match &config.channels_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let parsed =
                breakglass_alerts::config::load(&path.display().to_string(), &text, &|k| {
                    std::env::var(k).ok()
                })
                .map_err(|errors| {
                    anyhow::anyhow!(
                        "{}",
                        errors
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("\n")
                    )
                })?;
            if engine_config.public_url.is_none() {
                engine_config.public_url = parsed.public_url.clone();
            }
            breakglass_alerts::config::build(&parsed)
                .await
                .context("building alert channels")?
        }
        None => Vec::new(),
    };
    if config.public_url.is_some() {
        engine_config.public_url = config.public_url.clone();
    }
    let targets = match &config.targets_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            breakglass_targets::load(&path.display().to_string(), &text, &|k| {
                std::env::var(k).ok()
            })
            .map_err(|errors| {
                anyhow::anyhow!(
                    "{}",
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })?
        }
        None => breakglass_targets::TargetsConfig::default(),
    };
    let ack_key = secret_file(&config.data_dir.join(ACK_KEY_FILE))?;
    let totp_key = secret_file(&config.data_dir.join(TOTP_KEY_FILE))?;
    let engine = Engine::wired(
        Arc::new(store),
        clock,
        engine_config,
        breakglass_engine::Outputs {
            sinks,
            channels,
            ack_key: *ack_key,
            totp_key: *totp_key,
            targets: breakglass_targets::build(&targets),
            drill_keys: Some(Arc::new(drill_keys::DirDrillKeys::new(
                config.data_dir.join("drill"),
            ))),
        },
    );
    let key = audit_key::load_or_create(&config.data_dir, &engine).await?;
    let announced = engine
        .adopt_audit_key(key)
        .await
        .context("installing the audit key")?;
    if announced {
        tracing::info!("created the audit signing key; `breakglass audit pubkey` prints it");
    }
    let expired = engine.expire_due().await.context("start-up expiry sweep")?;
    if !expired.is_empty() {
        tracing::info!(
            count = expired.len(),
            "expired grants whose deadline passed while the server was down"
        );
    }
    match engine.close_lost_gateway_sessions().await {
        Ok(lost) if !lost.is_empty() => tracing::warn!(
            count = lost.len(),
            sessions = %lost.join(", "),
            "gateway sessions left open by a server that stopped: their ends recorded as lost"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "closing lost gateway sessions failed; retried every minute")
        }
    }
    let reset = engine
        .reset_lost_approvals()
        .await
        .context("start-up approval reset")?;
    if reset > 0 {
        tracing::warn!(
            count = reset,
            "approvals reset: their shares were held in memory before the restart"
        );
    }
    let cut = engine
        .flag_interrupted_rotations()
        .await
        .context("start-up rotation check")?;
    if !cut.is_empty() {
        tracing::error!(
            procedures = ?cut,
            "rotations interrupted by the restart: procedures tainted until re-sealed"
        );
    }
    let interrupted = engine
        .fail_interrupted_drills()
        .await
        .context("start-up drill sweep")?;
    if interrupted > 0 {
        tracing::warn!(
            count = interrupted,
            "drills interrupted by the restart were recorded as failed"
        );
    }
    let admin_token_file = config.data_dir.join(ADMIN_TOKEN_FILE);
    let bootstrap_token = engine
        .bootstrap_admin("admin")
        .await
        .context("bootstrapping the first admin")?;
    if let Some(token) = &bootstrap_token {
        write_private_file(
            &admin_token_file,
            breakglass_engine::expose_token(token).as_bytes(),
        )?;
    }
    let state = AppState {
        engine,
        data_dir: config.data_dir.clone(),
        checkpoint_every_entries: config.checkpoint_every_entries.max(1),
        checkpoint_interval: config.checkpoint_interval,
        schedule_interval: config.schedule_interval,
        recovery_kit_dir: config.recovery_kit_dir.clone(),
        ui: Arc::new(ui::UiState {
            keys: ui::UiKeys::from_key(secret_file(&config.data_dir.join(UI_KEY_FILE))?),
            last_verify: Default::default(),
        }),
        limiters: Arc::new(limits::Limiters::new(config.rate_limits)),
        tls: false,
        peers: peer_client(&config.data_dir)?,
    };
    Ok(Built {
        state,
        bootstrap_token,
        admin_token_file,
    })
}

/// The client forwarded approvals use: the system's roots plus the self-signed certificate of
/// the data dir when there is one (servers of one deployment share it).
fn peer_client(data_dir: &Path) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none());
    let cert = data_dir.join(tls::TLS_DIR).join(tls::CERT_FILE);
    if let Ok(pem) = std::fs::read(&cert) {
        for c in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?
        {
            builder = builder.add_root_certificate(c);
        }
    }
    builder
        .build()
        .map_err(|e| anyhow::anyhow!("HTTP client for peer servers: {e}"))
}

/// Serves the API and the web UI over plain HTTP on `listener` until `shutdown` resolves,
/// with the background workers beside it.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    with_workers(state, async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    })
    .await
}

/// Serves over HTTPS with `tls` (see [`tls::load`] and [`tls::self_signed`]); every response
/// carries `Strict-Transport-Security`.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.tls = true;
    let app = router(state.clone());
    let listener = listener.into_std()?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    with_workers(state, async move {
        axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(tls),
        )?
        .handle(handle)
        .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
    })
    .await
}

/// Runs `server` with the expiry, audit, alert and schedule workers beside it; when it ends,
/// stops them, signs a final checkpoint and hands what it can to the sinks.
async fn with_workers(
    state: AppState,
    server: impl Future<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = [
        tokio::spawn(expiry_worker(state.engine.clone(), stop_rx.clone())),
        tokio::spawn(audit_worker(state.clone(), stop_rx.clone())),
        tokio::spawn(alert_worker(state.engine.clone(), stop_rx.clone())),
        tokio::spawn(schedule_worker(
            state.engine.clone(),
            state.schedule_interval,
            stop_rx.clone(),
        )),
        tokio::spawn(recovery_kits::worker(
            state.engine.clone(),
            state.recovery_kit_dir.clone(),
            stop_rx.clone(),
        )),
        tokio::spawn(heartbeat_worker(state.engine.clone(), stop_rx)),
    ];
    let engine = state.engine.clone();
    let result = server.await;
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    engine
        .release_leases(&[LEASE_ALERTS, LEASE_EXPIRY, LEASE_SCHEDULE])
        .await;
    // Clean shutdown: sign a checkpoint of the final head and try to hand it (and anything
    // still waiting) to the sinks; what cannot be delivered now waits in the outbox.
    if let Err(e) = engine.checkpoint_now().await {
        tracing::error!(error = %e, "final checkpoint failed");
    }
    match tokio::time::timeout(Duration::from_secs(5), engine.deliver_to_sinks()).await {
        Ok(Err(e)) => tracing::warn!(error = %e, "final delivery to audit sinks failed"),
        Err(_) => {
            tracing::warn!("final delivery to audit sinks timed out; records wait in the outbox")
        }
        Ok(Ok(_)) => {}
    }
    result
}

/// Renews this server's liveness lease every second (several servers: the others forward a
/// break's shares here while it holds them).
async fn heartbeat_worker(engine: Engine, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => engine.heartbeat().await,
            _ = stop.changed() => return,
        }
    }
}

/// Runs what is due on a schedule (automated drills, attestation requests) every
/// `interval`. Due-ness lives in the store, so a restart neither skips nor repeats a run.
async fn schedule_worker(
    engine: Engine,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if !engine.lease(LEASE_SCHEDULE).await {
            continue;
        }
        match engine.run_due_drills().await {
            Ok(started) if !started.is_empty() => {
                tracing::info!(drills = ?started, "scheduled drills started");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "scheduled drills: check failed; retrying"),
        }
        match engine.request_due_attestations().await {
            Ok(asked) if !asked.is_empty() => {
                tracing::info!(custodians = ?asked, "key attestation requested");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "attestation requests failed; retrying"),
        }
        match engine.request_due_custody_attestations().await {
            Ok(asked) if !asked.is_empty() => {
                tracing::info!(procedures = ?asked, "custody attestation requested");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "custody attestation requests failed; retrying")
            }
        }
    }
}

pub use breakglass_engine::{LEASE_ALERTS, LEASE_AUDIT, LEASE_EXPIRY, LEASE_SCHEDULE};

/// Escalates late acknowledgements and delivers alerts: at once when a commit queued one,
/// otherwise every 250 ms (retries are due by then).
async fn alert_worker(engine: Engine, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = engine.alerts_queued() => {}
            _ = stop.changed() => return,
        }
        if !engine.lease(LEASE_ALERTS).await {
            continue;
        }
        if let Err(e) = engine.escalate_due().await {
            tracing::error!(error = %e, "escalation check failed; retrying");
        }
        if let Err(e) = engine.deliver_alerts().await {
            tracing::error!(error = %e, "alert delivery failed; retrying");
        }
    }
}

/// Signs checkpoints on cadence and delivers the outbox to the audit sinks.
async fn audit_worker(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if !state.engine.lease(LEASE_AUDIT).await {
            continue;
        }
        if let Err(e) = state
            .engine
            .checkpoint_if_due(state.checkpoint_every_entries, state.checkpoint_interval)
            .await
        {
            tracing::error!(error = %e, "checkpoint failed; retrying");
        }
        if let Err(e) = state.engine.deliver_to_sinks().await {
            tracing::error!(error = %e, "outbox delivery failed; retrying");
        }
        if let Err(e) = state.engine.check_sink_lag().await {
            tracing::error!(error = %e, "sink lag check failed; retrying");
        }
    }
}

/// Ends grants at their deadline: checks every 200 ms, so a running server ends a grant
/// within a second of its deadline. Deadlines live in the store, so nothing is lost if the
/// server stops; `build` sweeps again at start-up.
async fn expiry_worker(engine: Engine, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Gateway sessions left open by another server that stopped: looked for every minute.
    let mut lost_check = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if !engine.lease(LEASE_EXPIRY).await {
            continue;
        }
        if tokio::time::Instant::now() >= lost_check {
            lost_check = tokio::time::Instant::now() + Duration::from_secs(60);
            match engine.close_lost_gateway_sessions().await {
                Ok(lost) => {
                    for session in lost {
                        tracing::warn!(%session, "gateway session left open by a server that stopped: its end recorded as lost");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "closing lost gateway sessions failed; retrying")
                }
            }
        }
        match engine.expire_due().await {
            Ok(ids) => {
                for id in ids {
                    tracing::info!(break_id = %id, "break ended at its deadline");
                }
            }
            Err(e) => tracing::error!(error = %e, "expiry sweep failed; retrying"),
        }
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    Ok(())
}

/// Writes a file readable by its owner only. An existing file is truncated and its mode set
/// to 0600 before anything is written, so a secret never lands in a world-readable file.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = open_private(path, false)?;
    file.write_all(bytes)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// Creates a new file readable by its owner only; refuses an existing path.
pub fn create_private_file(path: &Path) -> anyhow::Result<std::fs::File> {
    open_private(path, true)
}

fn open_private(path: &Path, create_new: bool) -> anyhow::Result<std::fs::File> {
    use anyhow::Context;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // `mode` applies only to files this call created; an existing file keeps its mode.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(file)
}
