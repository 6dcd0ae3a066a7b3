//! The PostgreSQL credential-injection gateway: a break on an `access: proxy` procedure gives
//! the responder access, not a credential.
//!
//! A client connects with any PostgreSQL client: user = the break id, password = a gateway
//! token. The gateway asks the engine to admit it (token, break granted, before the
//! deadline), logs in upstream with the grant's own login (SCRAM-SHA-256; the client never
//! sees it), then relays the session, recording every statement of the simple and extended
//! protocols with its timing, command tag, rows and error. Statements matching the
//! procedure's `refuse` list never reach the target: the client gets a clear PostgreSQL error.
//! At the deadline, or when the break is closed, the connection is ended with a FATAL error.
//!
//! Connections run on the gateway's own threads, one single-threaded Tokio runtime each
//! (connections are packed onto the first threads, [`PACK`] each, then spread evenly), not on
//! the server's work-stealing runtime: a relayed
//! message then never wakes another thread, which is most of what a proxy's time per
//! transaction is made of (see BENCHMARKS.md). Store work (admission, recording, a session's
//! end) still runs on the server's runtime, which owns the database pools.
//!
//! Each connection is one task, whose relay (`pump.rs`) drives both directions (client →
//! target and target → client) in one poll function: each reads into a buffer, forwards whole
//! reads with one write, and looks only at the headers and first fields of the messages it
//! follows. A malformed or oversized message ends that connection only.

pub mod params;
mod peer;
mod pool;
mod pump;
pub mod redact;
pub mod relay;
mod throttle;
pub mod upstream;
pub mod wire;

pub use peer::{CLIENT_ADDR, RELAYED_BY, peer_tls};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use breakglass_engine::ports::StatementChunk;
use breakglass_engine::{Engine, SessionSummary};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use wire::{ClientMessage, Startup, WireError};

/// A byte stream the gateway relays (TCP or TLS).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Gateway settings.
#[derive(Clone)]
pub struct Settings {
    /// TLS for clients (the server's certificate). Without it, clients connect in plaintext.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Accept clients that do not ask for TLS even when TLS is configured.
    pub allow_plaintext: bool,
    /// How long a client has to finish the start-up and login.
    pub login_timeout: Duration,
    /// How long the upstream login may take.
    pub upstream_timeout: Duration,
    /// Relay threads (0: one per available core). A relay thread with open sessions wakes ten
    /// times a second to hand their recordings over; one without sleeps (but for the pool's
    /// sweep every 5 s). Connections fill the first thread up to [`PACK`] before the next
    /// gets any, so a few sessions share one thread (fewer sleeps and wake-ups) and many are
    /// spread over all of them (BENCHMARKS.md).
    pub threads: usize,
    /// Refused logins allowed per minute per client address before the address is refused
    /// without its token being looked at (and without an audit entry) until the allowance
    /// refills; 0: no limit.
    pub failed_logins_per_minute: u32,
    /// TLS for relaying a client to another server's gateway ([`peer_tls`]; the system's
    /// roots when `None`).
    pub peer_tls: Option<Arc<rustls::ClientConfig>>,
}

/// [`Settings::failed_logins_per_minute`] unless told: far more than people mistyping or a
/// misconfigured pool retrying, far fewer than a script filling the audit log.
pub const FAILED_LOGINS_PER_MINUTE: u32 = 60;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tls: None,
            allow_plaintext: true,
            login_timeout: Duration::from_secs(15),
            upstream_timeout: Duration::from_secs(10),
            threads: 0,
            failed_logins_per_minute: FAILED_LOGINS_PER_MINUTE,
            peer_tls: None,
        }
    }
}

/// The gateway: shared by every connection.
#[derive(Clone)]
pub struct Gateway {
    engine: Engine,
    /// The server's runtime, where store work runs.
    main: tokio::runtime::Handle,
    settings: Settings,
    recorder: mpsc::UnboundedSender<Recorded>,
    cancels: Arc<Mutex<CancelMap>>,
    failed_logins: Arc<throttle::FailedLogins>,
    /// Other servers' gateway hosts, whose [`CLIENT_ADDR`] is believed.
    peers: Arc<peer::TrustedPeers>,
    /// Cancel requests sent on to other servers lately (each at most once).
    forwarded: Arc<peer::Forwarded>,
}

/// Where a client's login led.
enum LoggedIn {
    /// Admitted here: the client, its admission, start-up parameters, database and address
    /// (the one a trusted relaying server passed on, else its TCP peer's).
    Session(
        Box<dyn Io>,
        breakglass_engine::Admission,
        Vec<(String, String)>,
        String,
        SocketAddr,
    ),
    /// Another server holds the break's login: relay the client there.
    Relay(Box<Relay>),
    /// Nothing more to do (a cancel request, handled).
    Done,
}

/// A client to relay to the gateway of the server holding its break's login.
struct Relay {
    stream: Box<dyn Io>,
    params: Vec<(String, String)>,
    token: zeroize::Zeroizing<Vec<u8>>,
    break_id: String,
    instance: String,
    address: String,
    tls: bool,
}

/// Cancellation keys the gateway gave its clients (by process id: the secret half is compared
/// in constant time) → the backends' own, or the holder's for a relayed client.
#[derive(Default)]
struct CancelMap(HashMap<i32, Vec<([u8; 4], CancelTarget)>>);

/// What a cancel request's key is to this gateway.
enum CancelKey {
    /// A key it gave (or passed on from the holder of a relayed client): cancel there.
    Known(CancelTarget),
    /// A process id it gave, with another secret: ignored, never sent on.
    WrongSecret,
    /// A process id it did not give: perhaps another server's.
    Unknown,
}

impl CancelMap {
    fn insert(&mut self, pid: i32, key: [u8; 4], target: CancelTarget) {
        self.0.entry(pid).or_default().push((key, target));
    }

    fn remove(&mut self, pid: i32, key: [u8; 4]) {
        if let Some(list) = self.0.get_mut(&pid) {
            list.retain(|(k, _)| *k != key);
            if list.is_empty() {
                self.0.remove(&pid);
            }
        }
    }

    fn find(&self, pid: i32, key: &[u8]) -> CancelKey {
        use subtle::ConstantTimeEq;
        let Some(list) = self.0.get(&pid) else {
            return CancelKey::Unknown;
        };
        let mut found = None;
        // Every entry is compared, so the time taken does not say which one matched.
        for (k, target) in list {
            if bool::from(k[..].ct_eq(key)) {
                found = Some(target.clone());
            }
        }
        found.map_or(CancelKey::WrongSecret, CancelKey::Known)
    }
}

/// An accepted client on its way to a relay thread, with the open-connection counts and the
/// thread's place in them.
type Handed = (
    std::net::TcpStream,
    SocketAddr,
    Arc<[std::sync::atomic::AtomicUsize]>,
    usize,
);

/// Connections a relay thread takes before the next thread gets any: the gateway packs
/// connections onto its first threads instead of dealing them out in turn. A thread with few
/// busy sessions finds nothing to do after each message and goes to sleep, and each sleep and
/// wake-up costs system time on the thread and on whoever wakes it; with pgbench's 8 clients
/// on this project's 2-core benchmark machine, one relay thread spent 87.5 µs of the machine's
/// CPU per transaction against 99.7 µs for two threads with four sessions each, and reached
/// 0.970× PgBouncer's TPS against 0.921× (BENCHMARKS.md). Past this many per thread (64
/// clients), connections are spread evenly, where two threads do better than one.
const PACK: usize = 8;

/// The relay thread for a new connection: the first with fewer than [`PACK`] open, else the
/// one with the fewest (the first of those). `None` when there is no relay thread.
fn relay_for(open: &[std::sync::atomic::AtomicUsize]) -> Option<usize> {
    let counts: Vec<usize> = open.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    counts.iter().position(|&n| n < PACK).or_else(|| {
        counts
            .iter()
            .enumerate()
            .min_by_key(|&(i, &n)| (n, i))
            .map(|(i, _)| i)
    })
}

/// Counts a connection on relay thread `.1` until dropped.
struct Counted(Arc<[std::sync::atomic::AtomicUsize]>, usize);

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(n) = self.0.get(self.1) {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[derive(Clone)]
struct CancelTarget {
    addr: String,
    tls: bool,
    pid: i32,
    key: Vec<u8>,
}

pub(crate) enum Recorded {
    /// Statements to store.
    Chunks(Vec<StatementChunk>),
    /// Answered once everything sent before it is stored.
    Flush(tokio::sync::oneshot::Sender<()>),
    /// A session's first statement refused for a `refuse` pattern: audited and alerted.
    Refused(RefusedStatement),
}

/// A refused statement, as its audit entry names it (its text stays in the recording).
pub(crate) struct RefusedStatement {
    pub(crate) break_id: String,
    pub(crate) session_id: String,
    /// Its position in the session's recording.
    pub(crate) seq: u64,
    /// The `refuse` pattern it matched.
    pub(crate) pattern: String,
}

/// How often a relay thread hands its sessions' new statements to the recorder.
const HAND_OVER: Duration = Duration::from_millis(100);
/// A session's unstored statements are handed over at once past this size.
pub(crate) const CHUNK_MAX: usize = 1 << 20;

thread_local! {
    /// The statement chunks of the sessions running on this relay thread: each session appends
    /// its finished statements to its own chunk (no channel message, no allocation freed on
    /// another thread), and the thread hands every chunk over every [`HAND_OVER`].
    static CHUNKS: std::cell::RefCell<Vec<std::sync::Weak<Mutex<StatementChunk>>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Gateway {
    /// A gateway over `engine`; starts its recorder task (needs a Tokio runtime).
    pub fn new(engine: Engine, settings: Settings) -> Gateway {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(record(engine.clone(), rx));
        Gateway {
            engine,
            main: tokio::runtime::Handle::current(),
            recorder: tx,
            cancels: Arc::default(),
            failed_logins: Arc::new(throttle::FailedLogins::new(
                settings.failed_logins_per_minute,
            )),
            peers: Arc::default(),
            forwarded: Arc::default(),
            settings,
        }
    }

    /// Accepts clients until `shutdown` resolves; each connection runs in its own task on one
    /// of the relay threads. Connections still open when it returns go on until they end.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        let threads = match self.settings.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let mut relays = Vec::with_capacity(threads);
        for i in 0..threads {
            match self.relay_thread(i) {
                Ok(tx) => relays.push(tx),
                Err(e) => tracing::error!(error = %e, "starting a gateway relay thread failed"),
            }
        }
        // Connections open on each relay thread: counted up here, down by the thread when one
        // ends, reported in `/metrics`.
        let open: Arc<[std::sync::atomic::AtomicUsize]> = (0..relays.len())
            .map(|_| std::sync::atomic::AtomicUsize::new(0))
            .collect();
        *self
            .engine
            .gateway_counters()
            .relay_connections
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(open.clone());
        // Tells the other servers sharing the store where to relay this server's clients.
        if let Err(e) = self.engine.register_gateway().await {
            tracing::error!(error = %e, "registering the gateway's peer address failed: clients of breaks this server holds that reach another server are refused there");
        }
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "gateway accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            self.count(|c| &c.connections);
            // Handed to a relay thread as a std socket, registered again in its runtime.
            let handed = stream.into_std().ok().and_then(|s| {
                let i = relay_for(&open)?;
                open[i].fetch_add(1, Ordering::Relaxed);
                let sent = relays[i].send((s, peer, open.clone(), i));
                if sent.is_err() {
                    open[i].fetch_sub(1, Ordering::Relaxed);
                }
                Some(sent)
            });
            if !matches!(handed, Some(Ok(()))) {
                tracing::error!(%peer, "no gateway relay thread took the connection; closed");
            }
        }
    }

    /// Starts relay thread `i`: a single-threaded runtime running the connections sent to it.
    /// When the accept loop is gone, the thread ends after its last connection.
    fn relay_thread(&self, i: usize) -> std::io::Result<mpsc::UnboundedSender<Handed>> {
        // Sockets and timers. (Tokio ties its process driver to the I/O driver whenever its
        // `process` feature is built in: the product's build leaves that feature out, see the
        // workspace Cargo.toml, or each sleep of this thread would look for orphaned child
        // processes under a lock every runtime shares.)
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Handed>();
        let gw = self.clone();
        std::thread::Builder::new()
            .name(format!("gateway-relay-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let mut open = tokio::task::JoinSet::new();
                    let mut sweep = tokio::time::interval(Duration::from_secs(5));
                    let mut hand_over = tokio::time::interval(HAND_OVER);
                    hand_over.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        let (std_stream, peer, counts, me) = tokio::select! {
                            handed = rx.recv() => match handed {
                                Some(h) => h,
                                None => break,
                            },
                            Some(_) = open.join_next() => continue,
                            _ = sweep.tick() => {
                                pool::sweep(gw.engine.now());
                                continue;
                            }
                            // Only while sessions are open: an idle thread sleeps.
                            _ = hand_over.tick(), if !open.is_empty() => {
                                gw.hand_over();
                                continue;
                            }
                        };
                        // Counted until this connection's task ends, however it ends.
                        let counted = Counted(counts, me);
                        let stream = match std_stream
                            .set_nonblocking(true)
                            .and_then(|()| tokio::net::TcpStream::from_std(std_stream))
                        {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::warn!(%peer, error = %e, "gateway socket not registered");
                                continue;
                            }
                        };
                        let gw = gw.clone();
                        open.spawn(async move {
                            let _counted = counted;
                            if let Err(e) = gw.connection(Box::new(stream), peer).await {
                                tracing::info!(%peer, error = %e, "gateway connection ended");
                            }
                        });
                    }
                    while open.join_next().await.is_some() {}
                });
            })?;
        Ok(tx)
    }

    /// Sends the new statements of every session on this thread to the recorder.
    fn hand_over(&self) {
        let chunks: Vec<StatementChunk> = CHUNKS.with(|all| {
            let mut all = all.borrow_mut();
            all.retain(|w| w.strong_count() > 0);
            all.iter()
                .filter_map(std::sync::Weak::upgrade)
                .filter_map(|c| relay::lock(&c).take())
                .collect()
        });
        if !chunks.is_empty() {
            let _ = self.recorder.send(Recorded::Chunks(chunks));
        }
    }

    /// Adds one to a counter of `/metrics`.
    fn count(&self, which: impl FnOnce(&breakglass_engine::GatewayCounters) -> &AtomicU64) {
        which(self.engine.gateway_counters()).fetch_add(1, Ordering::Relaxed);
    }

    /// Runs store work on the server's runtime (which owns the database pools) and waits for
    /// it from a relay thread.
    async fn on_main<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        self.main
            .spawn(work)
            .await
            .map_err(|e| format!("gateway store task failed: {e}"))
    }

    async fn connection(&self, stream: Box<dyn Io>, peer: SocketAddr) -> Result<(), String> {
        let login = tokio::time::timeout(self.settings.login_timeout, self.login(stream, peer));
        let (client, admission, params, database, from) = match login.await {
            Err(_) => return Err("the client did not log in in time".into()),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(LoggedIn::Done)) => return Ok(()),
            Ok(Ok(LoggedIn::Relay(r))) => return self.relay(*r, peer).await,
            Ok(Ok(LoggedIn::Session(client, admission, params, database, from))) => {
                (client, admission, params, database, from)
            }
        };
        self.session(client, admission, params, database, from)
            .await
    }

    /// Relays a client whose break's login another server holds to that server's gateway
    /// (`peer.rs`), for as long as the session lasts.
    async fn relay(&self, r: Relay, peer: SocketAddr) -> Result<(), String> {
        let Relay {
            mut stream,
            params,
            token,
            break_id,
            instance,
            address,
            tls,
        } = r;
        self.count(|c| &c.relayed);
        let key = Arc::new(Mutex::new(None));
        let kept = key.clone();
        let cancels = self.cancels.clone();
        let (target_addr, target_tls) = (address.clone(), tls);
        let outcome = peer::relay(
            &mut stream,
            peer,
            &params,
            &token,
            self.engine.instance(),
            peer::Holder {
                address: &address,
                tls,
                tls_config: self.settings.peer_tls.clone(),
                timeout: self.settings.upstream_timeout,
            },
            move |pid, k| {
                relay::lock(&cancels).insert(
                    pid,
                    k,
                    CancelTarget {
                        addr: target_addr,
                        tls: target_tls,
                        pid,
                        key: k.to_vec(),
                    },
                );
                *relay::lock(&kept) = Some((pid, k));
            },
        )
        .await;
        if let Some((pid, k)) = relay::lock(&key).take() {
            self.forget_cancel(pid, k);
        }
        match outcome {
            Ok(peer::Relayed::Served { bytes_out }) => {
                tracing::info!(%peer, break_id, to = %instance, bytes_out, "relayed gateway session ended");
                Ok(())
            }
            Ok(peer::Relayed::Refused(code)) => {
                if code.starts_with("28") {
                    self.failed_logins.failed(peer.ip());
                }
                Err(format!(
                    "the gateway of server {instance} refused the relayed client ({code})"
                ))
            }
            Err(e) => {
                tracing::warn!(%peer, break_id, to = %instance, error = %e, "relaying a gateway client failed");
                fatal(
                    &mut stream,
                    "08001",
                    &format!(
                        "breakglass gateway: break `{break_id}` is served by another server ({instance}), which could not be reached: {e}"
                    ),
                    None,
                )
                .await;
                Err(e)
            }
        }
    }

    /// Start-up and the client's login.
    async fn login(&self, mut stream: Box<dyn Io>, peer: SocketAddr) -> Result<LoggedIn, String> {
        let mut tls = false;
        let params = loop {
            let packet = read_startup(&mut stream).await?;
            match wire::decode_startup(&packet).map_err(|e| e.to_string())? {
                Startup::Ssl => match &self.settings.tls {
                    Some(config) if !tls => {
                        stream.write_all(b"S").await.map_err(|e| e.to_string())?;
                        let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                        let s = acceptor
                            .accept(stream)
                            .await
                            .map_err(|e| format!("TLS handshake: {e}"))?;
                        stream = Box::new(s);
                        tls = true;
                    }
                    _ => stream.write_all(b"N").await.map_err(|e| e.to_string())?,
                },
                Startup::GssEnc => stream.write_all(b"N").await.map_err(|e| e.to_string())?,
                Startup::Cancel { pid, key } => {
                    self.cancel(pid, &key, peer).await;
                    return Ok(LoggedIn::Done);
                }
                Startup::Params(p) => break p,
            }
        };
        // The gateway's own parameters, between servers: taken out here, so they reach
        // neither the target nor the kept connections' key.
        let mut params = params;
        let mut own = |name: &str| {
            let at = params.iter().position(|(k, _)| k == name)?;
            let (_, v) = params.remove(at);
            params.retain(|(k, _)| k != name);
            Some(v)
        };
        let relayed_by_param = own(peer::RELAYED_BY);
        let client_addr_param = own(peer::CLIENT_ADDR);
        // A client another server relayed here is never relayed again; the audit names the
        // server that relayed it. The client's own address, which the relaying server passes
        // on, is believed only from another server's gateway host.
        let relayed_by = relayed_by_param.map(|v| {
            v.chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                .take(64)
                .collect::<String>()
        });
        let from_peer = match (&relayed_by, &client_addr_param) {
            (Some(_), Some(_)) => self.trusted_peer(peer.ip()).await,
            _ => false,
        };
        let client = peer::believed_client(
            peer,
            relayed_by.is_some(),
            client_addr_param.as_deref(),
            from_peer,
        );
        let peer_text = match &relayed_by {
            Some(by) if client != peer => format!("{client} (relayed by {by} from {peer})"),
            Some(by) => format!("{peer} (relayed by {by})"),
            None => peer.to_string(),
        };
        if self.settings.tls.is_some() && !tls && !self.settings.allow_plaintext {
            fatal(
                &mut stream,
                "28000",
                "the breakglass gateway requires TLS: connect with sslmode=require",
                None,
            )
            .await;
            return Err("plaintext client refused".into());
        }
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let user = get("user");
        if user.is_empty() {
            fatal(
                &mut stream,
                "28000",
                "no user name: connect with the break id as the user",
                None,
            )
            .await;
            return Err("no user".into());
        }
        if params.iter().any(|(k, _)| k == "replication") {
            fatal(
                &mut stream,
                "28000",
                "the breakglass gateway does not serve replication connections",
                None,
            )
            .await;
            return Err("replication refused".into());
        }
        if let Some(left) = self.failed_logins.blocked(client.ip()) {
            self.count(|c| &c.logins_throttled);
            tracing::warn!(peer = %peer_text, "gateway login refused: too many failed logins from this address");
            fatal(
                &mut stream,
                "53300",
                &format!(
                    "breakglass gateway: too many failed logins from this address; retry in {} s",
                    left.as_secs().max(1)
                ),
                None,
            )
            .await;
            return Err("too many failed logins".into());
        }
        // AuthenticationCleartextPassword: the token comes over the (TLS) connection.
        let mut ask = Vec::new();
        wire::message(&mut ask, b'R', &3i32.to_be_bytes());
        stream.write_all(&ask).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let (tag, body) = read_message(&mut stream, &mut buf, 4096).await?;
        let token = match wire::decode_client(tag, &body).map_err(|e| e.to_string())? {
            ClientMessage::Password(p) => {
                zeroize::Zeroizing::new(p.strip_suffix(&[0]).unwrap_or(p).to_vec())
            }
            _ => {
                fatal(&mut stream, "08P01", "expected a password message", None).await;
                return Err("no password message".into());
            }
        };
        let admitted = {
            let (engine, user, token, peer, may_relay) = (
                self.engine.clone(),
                user.clone(),
                token.clone(),
                peer_text.clone(),
                relayed_by.is_none(),
            );
            self.on_main(async move { engine.gateway_admit(&user, &token, &peer, may_relay).await })
                .await?
        };
        match admitted {
            Ok(admission) => {
                self.count(|c| &c.admitted);
                let database = match get("database") {
                    d if d.is_empty() || d == user => admission.dbname.clone(),
                    d => d,
                };
                Ok(LoggedIn::Session(
                    stream, admission, params, database, client,
                ))
            }
            Err(breakglass_engine::Refusal::Elsewhere {
                break_id,
                instance,
                address,
                tls,
            }) => Ok(LoggedIn::Relay(Box::new(Relay {
                stream,
                params,
                token,
                break_id,
                instance,
                address,
                tls,
            }))),
            Err(refusal) => {
                self.count(|c| &c.refused);
                if !matches!(refusal, breakglass_engine::Refusal::Unavailable(_)) {
                    self.failed_logins.failed(client.ip());
                }
                tracing::info!(peer = %peer_text, why = %refusal, "gateway refused a client");
                fatal(
                    &mut stream,
                    refusal.sqlstate(),
                    &format!("breakglass gateway: {refusal}"),
                    None,
                )
                .await;
                Err(refusal.to_string())
            }
        }
    }

    /// Whether `ip` is another server's registered gateway host (whose [`CLIENT_ADDR`] is
    /// believed): from the cached set, read again from the store when it is stale or lacks
    /// `ip` (at most once a second).
    async fn trusted_peer(&self, ip: std::net::IpAddr) -> bool {
        match self.peers.check(ip, Instant::now()) {
            peer::PeerCheck::Known(trusted) => trusted,
            peer::PeerCheck::Refresh => {
                let engine = self.engine.clone();
                let read = self
                    .on_main(async move {
                        let addresses = engine.gateway_peer_addresses().await?;
                        Ok::<_, breakglass_engine::EngineError>(peer::resolve(&addresses).await)
                    })
                    .await
                    .and_then(|r| r.map_err(|e| e.to_string()));
                match read {
                    Ok(ips) => self.peers.set(ips, Instant::now()),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the other servers' gateway addresses failed")
                    }
                }
                self.peers.contains(ip)
            }
        }
    }

    /// Answers a CancelRequest from `peer`. A key this gateway gave (or passed on for a
    /// relayed client) is sent to its backend (or the holder); a process id it gave with
    /// another secret is ignored. A process id it did not give is sent on, once, to the
    /// gateway of the server the store says gave it — never to this server, never twice in
    /// a few seconds — so a request goes at most client → any server → the giver, which
    /// knows its own keys and never sends one on. A wrong secret, and every request for a
    /// key this gateway did not give, counts as a failed login of `peer` (so guessing keys is
    /// throttled like guessing tokens; a request another server sent on is counted there).
    async fn cancel(&self, pid: i32, key: &[u8], peer: SocketAddr) {
        let found = relay::lock(&self.cancels).find(pid, key);
        match found {
            CancelKey::Known(t) => {
                if let Err(e) = upstream::cancel(&t.addr, t.tls, t.pid, &t.key).await {
                    tracing::info!(error = %e, "forwarding a cancel request failed");
                }
            }
            CancelKey::WrongSecret => {
                // Counted against the client, not against a server that sent it on.
                if !self.engine.shares_store() || !self.trusted_peer(peer.ip()).await {
                    self.failed_logins.failed(peer.ip());
                }
                tracing::info!(%peer, "a cancel request with a wrong secret key was ignored");
            }
            CancelKey::Unknown => {
                let Ok(key4) = <[u8; 4]>::try_from(key) else {
                    return;
                };
                // Alone on its store, no other server gave it.
                if !self.engine.shares_store() {
                    return;
                }
                if self.failed_logins.blocked(peer.ip()).is_some() {
                    self.count(|c| &c.logins_throttled);
                    return;
                }
                let engine = self.engine.clone();
                let holder = self
                    .on_main(async move { engine.cancel_key_holder(pid).await })
                    .await
                    .and_then(|r| r.map_err(|e| e.to_string()));
                // Every request sent on counts against the sender's allowance too: the server
                // that gave the key cannot tell the sender's wrong secrets from another's.
                self.failed_logins.failed(peer.ip());
                let (instance, address, tls) = match holder {
                    Ok(Some(h)) => h,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "looking up the server of a cancel key failed");
                        return;
                    }
                };
                if !self.forwarded.first(pid, key4, Instant::now()) {
                    tracing::info!(%peer, to = %instance, "a cancel request sent on lately came back; dropped");
                    return;
                }
                let holder = peer::Holder {
                    address: &address,
                    tls,
                    tls_config: self.settings.peer_tls.clone(),
                    timeout: self.settings.upstream_timeout,
                };
                match peer::cancel(&holder, pid, key4).await {
                    Ok(()) => {
                        tracing::info!(%peer, to = %instance, "cancel request sent on to the server that gave its key")
                    }
                    Err(e) => {
                        tracing::info!(to = %instance, error = %e, "sending a cancel request on failed")
                    }
                }
            }
        }
    }

    async fn session(
        &self,
        mut client: Box<dyn Io>,
        admission: breakglass_engine::Admission,
        params: Vec<(String, String)>,
        database: String,
        client_addr: SocketAddr,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut summary = SessionSummary {
            session_id: admission.session_id.clone(),
            break_id: admission.break_id.clone(),
            peer: client_addr.to_string(),
            ..SessionSummary::default()
        };
        // A server connection kept from an earlier session of this break, or a new login.
        let pool_key = pool::key(&admission.break_id, &database, &params);
        let kept = pool::take(&pool_key, self.engine.now());
        let reused = kept.is_some();
        if reused {
            self.count(|c| &c.reused);
        }
        let connect = async {
            match kept {
                Some(u) => Ok(u),
                None => {
                    upstream::connect(
                        &admission.upstream,
                        &database,
                        &params,
                        self.settings.upstream_timeout,
                    )
                    .await
                }
            }
        };
        // The client's cancellation key is drawn (and recorded in a shared store) while the
        // server connection is made.
        let (connected, (our_pid, our_key)) =
            tokio::join!(connect, self.new_cancel_key(admission.deadline));
        let up = match connected {
            Ok(u) => u,
            Err(e) => {
                self.forget_session_cancel(our_pid, our_key);
                fatal(
                    &mut client,
                    "08006",
                    &format!("breakglass gateway: {e}"),
                    None,
                )
                .await;
                summary.end = format!("error: {e}");
                self.finish(&summary).await;
                return Err(e.to_string());
            }
        };
        // Our own cancellation key, mapped to the backend's.
        if let Some((pid, key)) = &up.backend_key {
            relay::lock(&self.cancels).insert(
                our_pid,
                our_key,
                CancelTarget {
                    addr: up.addr.clone(),
                    tls: up.tls,
                    pid: *pid,
                    key: key.clone(),
                },
            );
        }
        let mut hello = Vec::new();
        wire::message(&mut hello, b'R', &0i32.to_be_bytes());
        let z_at = up.greeting.len().saturating_sub(6);
        hello.extend_from_slice(&up.greeting[..z_at]);
        let mut key_body = our_pid.to_be_bytes().to_vec();
        key_body.extend_from_slice(&our_key);
        wire::message(&mut hello, b'K', &key_body);
        notice(
            &mut hello,
            &format!(
                "breakglass: session {} of break {} is recorded; it ends at {}",
                admission.session_id, admission.break_id, admission.deadline
            ),
        );
        hello.extend_from_slice(&up.greeting[z_at..]);
        if let Err(e) = client.write_all(&hello).await {
            summary.end = format!("error: {e}");
            self.forget_session_cancel(our_pid, our_key);
            self.finish(&summary).await;
            return Err(e.to_string());
        }

        let chunk = Arc::new(Mutex::new(StatementChunk::new(
            &admission.break_id,
            &admission.session_id,
        )));
        CHUNKS.with(|all| all.borrow_mut().push(Arc::downgrade(&chunk)));
        let info = relay::SessionInfo {
            procedure: admission.procedure.clone(),
            refuse: admission.refuse.clone(),
        };
        let recording = pump::Recording {
            break_id: admission.break_id.clone(),
            session_id: admission.session_id.clone(),
            chunk,
            seq: 0,
            recorder: self.recorder.clone(),
            refusals: Vec::new(),
        };
        let mut relay = pump::Relay::new(client, up.stream, &up.leftover, recording);
        let now_ms = self.engine.now().0;
        let left = Duration::from_millis(u64::try_from(admission.deadline.0 - now_ms).unwrap_or(0));
        let mut ended = admission.ended.clone();
        // A second receiver, only to ask cheaply (one atomic load) whether the first may be
        // ready: polling a watch's `changed()` takes the channel's lock to park its waker again.
        let mut ended_check = admission.ended.clone();
        let mut terminated = admission.terminated.clone();
        let mut terminated_check = admission.terminated.clone();
        let end = {
            let engine = &self.engine;
            let now = || engine.now();
            let mut deadline = std::pin::pin!(tokio::time::sleep(left));
            let mut closed = std::pin::pin!(async {
                while ended.changed().await.is_ok() && !*ended.borrow() {}
            });
            // Terminated by an admin or the requester (`breakglass session terminate`).
            let mut killed = std::pin::pin!(async {
                loop {
                    if terminated.changed().await.is_err() {
                        // The engine forgot the session: only its end can follow.
                        std::future::pending::<()>().await;
                    }
                    if let Some(t) = terminated.borrow().clone() {
                        return t;
                    }
                }
            });
            // The waker the deadline and the close were last polled with. Polled once, each
            // wakes that waker when it becomes ready, so while the task's waker stays the same
            // they are polled again only when they may be ready (the timer fired, the watch
            // changed) — not on every message relayed.
            let mut registered: Option<std::task::Waker> = None;
            // The idle timeout is checked every eighth of it: the session is idle once no byte
            // went either way, and no statement was running, since a check at least the
            // timeout ago (a long statement is the server's turn, not idleness).
            let idle_check = admission
                .idle_timeout
                .map(|t| (t / 8).max(Duration::from_millis(100)));
            let mut idle_timer = std::pin::pin!(tokio::time::sleep(
                idle_check.unwrap_or(Duration::from_secs(86_400 * 365))
            ));
            let mut traffic = (0u64, tokio::time::Instant::now());
            let counters = self.engine.gateway_counters();
            let mut refused_seen = 0u64;
            std::future::poll_fn(|cx| {
                let polled = relay.poll_relay(cx, &info, &now);
                // Refused statements counted as they happen (`/metrics`).
                let refused = relay.tracker.stats().refused;
                if refused != refused_seen {
                    counters
                        .statements_refused
                        .fetch_add(refused - refused_seen, Ordering::Relaxed);
                    refused_seen = refused;
                }
                if let Poll::Ready(end) = polled {
                    return Poll::Ready(end);
                }
                let fresh = !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
                if (fresh || deadline.is_elapsed()) && deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(End::Deadline);
                }
                if let (Some(limit), Some(every)) = (admission.idle_timeout, idle_check)
                    && (fresh || idle_timer.is_elapsed())
                    && idle_timer.as_mut().poll(cx).is_ready()
                {
                    let at = tokio::time::Instant::now();
                    let (read, written) = relay.bytes();
                    let moved = relay
                        .server_bytes()
                        .saturating_add(read)
                        .saturating_add(written);
                    if moved != traffic.0 || !relay.tracker.nothing_in_flight() {
                        traffic = (moved, at);
                    } else if at.duration_since(traffic.1) >= limit {
                        return Poll::Ready(End::Idle(limit));
                    }
                    idle_timer.as_mut().reset(at + every);
                    let _ = idle_timer.as_mut().poll(cx);
                }
                if fresh || ended_check.has_changed().unwrap_or(true) {
                    ended_check.mark_unchanged();
                    if closed.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(End::Closed);
                    }
                }
                if fresh || terminated_check.has_changed().unwrap_or(false) {
                    terminated_check.mark_unchanged();
                    if let Poll::Ready(t) = killed.as_mut().poll(cx) {
                        return Poll::Ready(End::Killed(t));
                    }
                }
                if fresh {
                    registered = Some(cx.waker().clone());
                }
                Poll::Pending
            })
            .await
        };
        // The sweep may release the grant a moment before this connection's own timer fires.
        let end = match end {
            End::Closed if self.engine.now() >= admission.deadline => End::Deadline,
            other => other,
        };
        // What the client is told when the gateway ends its session.
        let told = match &end {
            End::Deadline => Some((
                "57P01",
                format!(
                    "breakglass gateway: the grant of break {} ended at {}; the session is closed",
                    admission.break_id, admission.deadline
                ),
            )),
            End::Closed => Some((
                "57P01",
                format!(
                    "breakglass gateway: break {} was closed; the session is closed",
                    admission.break_id
                ),
            )),
            End::Killed(t) => Some((
                "57P01",
                format!(
                    "breakglass gateway: session {} of break {} was terminated by {}: {}",
                    admission.session_id, admission.break_id, t.by, t.reason
                ),
            )),
            End::Idle(limit) => Some((
                "57P05",
                format!(
                    "breakglass gateway: the session sent and received nothing for {} (the procedure's gateway_idle_timeout); it is closed",
                    humantime::format_duration(*limit)
                ),
            )),
            End::Protocol(e) => {
                self.count(|c| &c.protocol_errors);
                Some(("08P01", format!("breakglass gateway: {e}")))
            }
            _ => None,
        };
        if let Some((code, message)) = told {
            let mut out = Vec::new();
            wire::error_response(&mut out, "FATAL", code, &message, None);
            let _ = relay.client.write_all(&out).await;
        }
        let _ = relay.client.shutdown().await;
        // Ended by the gateway (deadline, close, termination) while a statement runs: the
        // server is asked to cancel it, or the backend would run it to its end although its
        // connection is gone.
        if matches!(end, End::Deadline | End::Closed | End::Killed(_))
            && !relay.tracker.nothing_in_flight()
            && let Some((pid, key)) = &up.backend_key
        {
            let cancel = upstream::cancel(&up.addr, up.tls, *pid, key);
            match tokio::time::timeout(self.settings.upstream_timeout, cancel).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "cancelling the statement of an ended session failed")
                }
                Err(_) => tracing::info!("cancelling the statement of an ended session timed out"),
            }
        }
        let (bytes_in, bytes_out) = relay.bytes();
        let pump::Relay {
            server: stream,
            mut tracker,
            mut recording,
            ..
        } = relay;
        // The server connection: kept for the break's next session when the client ended
        // cleanly with the server idle, otherwise ended.
        let reusable =
            matches!(end, End::Terminated) && tracker.idle() && !*admission.ended.borrow();
        if reusable {
            let kept = upstream::Upstream {
                stream,
                greeting: up.greeting,
                leftover: Vec::new(),
                backend_key: up.backend_key,
                addr: up.addr,
                tls: up.tls,
            };
            tokio::spawn(pool::keep(
                pool_key,
                kept,
                admission.deadline,
                admission.ended.clone(),
            ));
        } else {
            pool::terminate(stream).await;
        }
        tracing::debug!(session = %admission.session_id, reused, reusable, "gateway session ended");
        self.forget_session_cancel(our_pid, our_key);
        // Statements still waiting for an answer are recorded as cut off.
        let mut cut: Vec<relay::Finished> = tracker
            .take_all()
            .into_iter()
            .filter_map(relay::Pending::into_statement)
            .collect();
        for s in &mut cut {
            s.error
                .get_or_insert_with(|| format!("no answer: the session ended ({})", end.word()));
        }
        recording.emit(&mut cut);
        if let Some(last) = relay::lock(&recording.chunk).take() {
            let _ = self.recorder.send(Recorded::Chunks(vec![last]));
        }
        let t = tracker.stats();
        summary.statements = recording.seq;
        summary.errors = t.errors;
        summary.refused = t.refused;
        summary.rows = t.rows;
        summary.bytes_in = bytes_in;
        summary.bytes_out = bytes_out;
        summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        summary.end = end.word();
        self.finish(&summary).await;
        Ok(())
    }

    fn forget_cancel(&self, pid: i32, key: [u8; 4]) {
        relay::lock(&self.cancels).remove(pid, key);
    }

    /// Forgets the cancellation key of a session of this gateway, here and in the store
    /// (without waiting for the store).
    fn forget_session_cancel(&self, pid: i32, key: [u8; 4]) {
        self.forget_cancel(pid, key);
        if !self.engine.shares_store() {
            return;
        }
        let engine = self.engine.clone();
        self.main.spawn(async move {
            if let Err(e) = engine.forget_cancel_key(pid).await {
                tracing::warn!(error = %e, "forgetting a gateway cancel key in the store failed");
            }
        });
    }

    /// A cancellation key for a session of this gateway, lasting until `until`, recorded in
    /// the store (servers sharing it send a cancel request for it on to this one): a new
    /// process id while another live session of the deployment holds the one drawn. When the
    /// store cannot be written the key still works here.
    async fn new_cancel_key(&self, until: breakglass_domain::Timestamp) -> (i32, [u8; 4]) {
        let key: [u8; 4] = rand::random();
        let draw = || i32::try_from(rand::random::<u32>() >> 1).unwrap_or(1);
        let mut pid = draw();
        if !self.engine.shares_store() {
            return (pid, key);
        }
        for _ in 0..4 {
            let engine = self.engine.clone();
            let put = self
                .on_main(async move { engine.register_cancel_key(pid, until).await })
                .await;
            match put {
                Ok(Ok(true)) => break,
                Ok(Ok(false)) => pid = draw(),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "recording a gateway cancel key failed: a cancel request reaching another server is not sent on");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "recording a gateway cancel key failed: a cancel request reaching another server is not sent on");
                    break;
                }
            }
        }
        (pid, key)
    }

    /// Flushes the session's recording, then records its end.
    async fn finish(&self, summary: &SessionSummary) {
        self.engine.gateway_counters().ended.count(&summary.end);
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.recorder.send(Recorded::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
        let engine = self.engine.clone();
        let owned = summary.clone();
        let ended = self
            .on_main(async move { engine.gateway_session_ended(&owned).await })
            .await;
        if let Err(e) = ended.and_then(|r| r.map_err(|e| e.to_string())) {
            tracing::error!(session = %summary.session_id, error = %e, "recording a gateway session's end failed");
        }
    }
}

/// Stores the chunks the relay threads hand over (each already a batch of 100 ms), everything
/// waiting in one transaction; a flush request is answered once everything before it is
/// stored.
async fn record(engine: Engine, mut rx: mpsc::UnboundedReceiver<Recorded>) {
    let mut batch: Vec<StatementChunk> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut flushes = Vec::new();
        let mut refusals = Vec::new();
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Recorded::Chunks(c) => batch.extend(c),
                Recorded::Flush(f) => flushes.push(f),
                Recorded::Refused(r) => refusals.push(r),
            }
            next = if batch.len() >= 1000 {
                None
            } else {
                rx.try_recv().ok()
            };
        }
        let mut attempt = 0;
        while !batch.is_empty() {
            match engine.gateway_record(&batch).await {
                Ok(()) => {
                    engine
                        .gateway_counters()
                        .statements
                        .fetch_add(batch.iter().map(|c| c.count).sum(), Ordering::Relaxed);
                    batch.clear();
                }
                Err(e) => {
                    attempt += 1;
                    tracing::error!(error = %e, attempt, "storing gateway statements failed; retrying");
                    if attempt >= 5 {
                        tracing::error!(
                            lost = batch.iter().map(|c| c.count).sum::<u64>(),
                            "gateway statements dropped after 5 attempts"
                        );
                        batch.clear();
                    }
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        }
        // After the statements they name are stored, before a session's end is recorded.
        for r in refusals {
            if let Err(e) = engine
                .gateway_statement_refused(&r.break_id, &r.session_id, r.seq, &r.pattern)
                .await
            {
                tracing::error!(session = %r.session_id, error = %e, "recording a refused gateway statement failed");
            }
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

async fn read_startup(stream: &mut Box<dyn Io>) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| e.to_string())?;
    let n = wire::startup_len(&len)
        .map_err(|e| e.to_string())?
        .ok_or("short start-up packet")?;
    let mut packet = vec![0u8; n];
    packet[..4].copy_from_slice(&len);
    stream
        .read_exact(&mut packet[4..])
        .await
        .map_err(|e| e.to_string())?;
    Ok(packet)
}

async fn read_message(
    stream: &mut Box<dyn Io>,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<(u8, Vec<u8>), String> {
    loop {
        if let Some((tag, len)) = wire::header(buf, max).map_err(|e| e.to_string())?
            && buf.len() >= len
        {
            let frame: Vec<u8> = buf.drain(..len).collect();
            return Ok((tag, frame[5..].to_vec()));
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the client closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn fatal(stream: &mut Box<dyn Io>, code: &str, message: &str, hint: Option<&str>) {
    let mut out = Vec::new();
    wire::error_response(&mut out, "FATAL", code, message, hint);
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

fn notice(out: &mut Vec<u8>, message: &str) {
    let start = out.len();
    wire::error_response(out, "NOTICE", "00000", message, None);
    out[start] = b'N';
}

/// Why a session ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The client sent Terminate.
    Terminated,
    /// The client closed the connection.
    Client,
    Server,
    Deadline,
    Closed,
    /// Nothing went either way for the procedure's idle timeout.
    Idle(Duration),
    /// Terminated by an admin or the requester.
    Killed(breakglass_engine::Termination),
    Io(String),
    Protocol(WireError),
}

impl End {
    fn word(&self) -> String {
        match self {
            End::Terminated | End::Client => "client".into(),
            End::Server => "server".into(),
            End::Deadline => "deadline".into(),
            End::Closed => "closed".into(),
            End::Idle(_) => "idle".into(),
            End::Killed(_) => "terminated".into(),
            End::Io(e) => format!("error: {e}"),
            End::Protocol(e) => format!("protocol error: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn pick(counts: &[usize]) -> Option<usize> {
        let open: Vec<AtomicUsize> = counts.iter().map(|&n| AtomicUsize::new(n)).collect();
        relay_for(&open)
    }

    #[test]
    fn cancel_keys_are_found_by_pid_and_secret() {
        let target = |pid| CancelTarget {
            addr: "127.0.0.1:5432".into(),
            tls: false,
            pid,
            key: vec![0; 4],
        };
        let mut map = CancelMap::default();
        map.insert(7, [1, 2, 3, 4], target(100));
        // The same pid from another origin (a relayed client's holder): both kept.
        map.insert(7, [5, 6, 7, 8], target(200));
        let found = |map: &CancelMap, pid, key: &[u8]| match map.find(pid, key) {
            CancelKey::Known(t) => format!("known {}", t.pid),
            CancelKey::WrongSecret => "wrong secret".into(),
            CancelKey::Unknown => "unknown".into(),
        };
        assert_eq!(found(&map, 7, &[1, 2, 3, 4]), "known 100");
        assert_eq!(found(&map, 7, &[5, 6, 7, 8]), "known 200");
        assert_eq!(found(&map, 7, &[1, 2, 3, 5]), "wrong secret");
        assert_eq!(found(&map, 7, &[1, 2, 3]), "wrong secret");
        assert_eq!(found(&map, 8, &[1, 2, 3, 4]), "unknown");
        map.remove(7, [1, 2, 3, 4]);
        assert_eq!(found(&map, 7, &[1, 2, 3, 4]), "wrong secret");
        map.remove(7, [5, 6, 7, 8]);
        assert_eq!(found(&map, 7, &[5, 6, 7, 8]), "unknown");
        assert!(map.0.is_empty());
    }

    #[test]
    fn connections_fill_the_first_relay_thread_then_spread() {
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[0, 0]), Some(0));
        assert_eq!(pick(&[PACK - 1, 0]), Some(0));
        assert_eq!(pick(&[PACK, 0]), Some(1));
        assert_eq!(pick(&[PACK, PACK - 1, 0]), Some(1));
        assert_eq!(pick(&[PACK, PACK, 3]), Some(2));
        // All past PACK: the fewest, the first of equals.
        assert_eq!(pick(&[PACK + 2, PACK + 1]), Some(1));
        assert_eq!(pick(&[PACK + 1, PACK + 1]), Some(0));
        // A thread that emptied takes connections again before a fuller later one.
        assert_eq!(pick(&[2, PACK + 5]), Some(0));
        assert_eq!(pick(&[PACK]), Some(0));
    }
}
