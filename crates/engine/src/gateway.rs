//! The engine's side of the PostgreSQL credential-injection gateway (`access: proxy`).
//!
//! At the quorum a proxy procedure's grant is created as usual (an ephemeral role the target
//! itself expires), but its login never leaves the server: it is held here, in memory, and the
//! requester receives a *gateway token* instead (in the age file the reveal returns, as a
//! connection string to the gateway). The gateway admits a client whose user is the break id
//! and whose password is a token with connections left; it then logs in upstream with the
//! held login and records every statement. Tokens are random 32-byte values; only their
//! SHA-256 is kept and compared in constant time.
//!
//! The held logins live in memory only, like shares before the quorum: a restart loses them,
//! and the requester's connection string stops working. `breakglass break token` then has the
//! target give the grant role a new login with the operator credential (nothing sealed is
//! opened; the role keeps its expiry) and issues a fresh token for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use breakglass_custody::Secret;
use breakglass_domain::{Access, Action, Actor, Break, TargetConfig, Timestamp};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::breaks::{RevealedGrant, load_break};
use crate::ports::{StatementChunk, StatementRecord};
use crate::{Engine, EngineError};

/// Where requesters reach the gateway (written into the connection string they receive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayEndpoint {
    /// Host name or address clients connect to.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Whether the gateway requires TLS (`sslmode=require` in the connection string).
    pub tls: bool,
    /// `HOST:PORT` where the other servers of the deployment reach this gateway (servers
    /// sharing a store behind one address: a client that reaches a server not holding its
    /// break's login is relayed here). `None`: not reachable by them.
    pub peer: Option<String>,
}

/// A proxy grant's login, held for the gateway until the grant ends.
pub(crate) struct ProxyGrant {
    procedure: String,
    access: Secret,
    deadline: Timestamp,
    dbname: String,
    refuse: Vec<String>,
    idle_timeout: Option<std::time::Duration>,
    tokens: Vec<TokenSlot>,
    ended: tokio::sync::watch::Sender<bool>,
    sessions: u64,
}

struct TokenSlot {
    hash: [u8; 32],
    left: u32,
}

/// Held proxy grants by break id.
#[derive(Default)]
pub(crate) struct GatewayState {
    grants: std::sync::Mutex<HashMap<String, ProxyGrant>>,
    /// Held while a lost login is renewed (`Engine::gateway_token`).
    renewing: tokio::sync::Mutex<()>,
    counters: GatewayCounters,
    /// The sessions open on this server's gateway, by session id: from their admission to
    /// their end's audit entry.
    live: std::sync::Mutex<HashMap<String, LiveSession>>,
    /// The last list of open sessions read for [`Engine::open_gateway_sessions_shared`], and
    /// when.
    open_shared: tokio::sync::Mutex<Option<(std::time::Instant, std::sync::Arc<[OpenSession]>)>>,
    /// Ended breaks the lost-session scan found without an open session: an ended break
    /// admits no new one, so they are not read again (the scan looks at every break that
    /// ended in the last [`LOST_SESSIONS_WINDOW_MS`], and reads each one's audit entries once).
    lost_scan_done: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// An open gateway session, as the engine can end it from outside.
struct LiveSession {
    break_id: String,
    stop: tokio::sync::watch::Sender<Option<Termination>>,
}

/// Who ended an open gateway session before its break did, and why
/// ([`Engine::terminate_gateway_session`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// The actor who terminated it.
    pub by: String,
    /// Their reason (recorded in the audit log and sent to the client).
    pub reason: String,
}

/// How long a termination's reason may be, in characters.
pub const TERMINATION_REASON_MAX: usize = 500;

/// How long after its break ended a session left open by a stopped server is still closed
/// as lost ([`Engine::close_lost_gateway_sessions`]): a week.
pub const LOST_SESSIONS_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;

/// A break's audit entries are read this many at a time ([`break_entries`]).
const ENTRY_PAGE: i64 = 10_000;

/// Every audit entry about `break_id`, oldest first: read `ENTRY_PAGE` at a time, so no
/// entry is left out however many sessions a long break had.
pub(crate) async fn break_entries(
    tx: &mut dyn crate::ports::Tx,
    break_id: &str,
) -> Result<Vec<breakglass_audit::Entry>, EngineError> {
    break_entries_paged(tx, break_id, ENTRY_PAGE).await
}

async fn break_entries_paged(
    tx: &mut dyn crate::ports::Tx,
    break_id: &str,
    page: i64,
) -> Result<Vec<breakglass_audit::Entry>, EngineError> {
    let mut all = Vec::new();
    let mut before = u64::MAX;
    loop {
        let got = tx
            .audit_entries_about(crate::ports::AuditAbout::Break(break_id), before, page)
            .await?;
        if !page_back(&mut all, got, page, |e| e.seq, &mut before) {
            break;
        }
    }
    all.sort_by_key(|e| e.seq);
    Ok(all)
}

/// One step of reading newest first a page at a time: keeps `got`, moves `before` to its
/// oldest, and says whether another page may follow (this one was full).
fn page_back<T>(
    all: &mut Vec<T>,
    got: Vec<T>,
    page: i64,
    seq: impl Fn(&T) -> u64,
    before: &mut u64,
) -> bool {
    let full = i64::try_from(got.len()).unwrap_or(i64::MAX) >= page;
    match got.iter().map(seq).min() {
        Some(oldest) => *before = oldest,
        None => return false,
    }
    all.extend(got);
    full
}

/// The gateway's counters (`/metrics`), kept by the engine so the server can report them
/// whether or not this server runs a gateway.
#[derive(Default, Debug)]
pub struct GatewayCounters {
    /// Connections accepted.
    pub connections: std::sync::atomic::AtomicU64,
    /// Sessions admitted.
    pub admitted: std::sync::atomic::AtomicU64,
    /// Clients refused (bad token, ended break…).
    pub refused: std::sync::atomic::AtomicU64,
    /// Statements recorded.
    pub statements: std::sync::atomic::AtomicU64,
    /// Connections closed for a malformed message.
    pub protocol_errors: std::sync::atomic::AtomicU64,
    /// Sessions served by a kept server connection.
    pub reused: std::sync::atomic::AtomicU64,
    /// Statements the gateway refused (a procedure's `refuse` patterns).
    pub statements_refused: std::sync::atomic::AtomicU64,
    /// Logins refused unread because their address failed too many (`throttle.rs`).
    pub logins_throttled: std::sync::atomic::AtomicU64,
    /// Clients relayed to the gateway of the server holding their break's login.
    pub relayed: std::sync::atomic::AtomicU64,
    /// Sessions ended, by how they ended.
    pub ended: SessionEnds,
    /// Connections open on each of the gateway's relay threads (set when it starts serving).
    pub relay_connections: std::sync::Mutex<Option<std::sync::Arc<[AtomicUsize]>>>,
}

impl GatewayCounters {
    /// Connections open on each relay thread, in thread order (none without a gateway).
    pub fn relay_connections(&self) -> Vec<usize> {
        self.relay_connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|c| c.iter().map(|n| n.load(Ordering::Relaxed)).collect())
            .unwrap_or_default()
    }
}

/// Gateway sessions ended, by how (the `end` of their `gateway.session_ended` entry).
#[derive(Default, Debug)]
pub struct SessionEnds([std::sync::atomic::AtomicU64; SessionEnds::WORDS.len()]);

impl SessionEnds {
    /// How a session can end: the client left (or sent Terminate), the server closed, the
    /// grant's deadline, the break's close, the idle timeout, a termination, a malformed
    /// message, any other error.
    pub const WORDS: [&'static str; 8] = [
        "client",
        "server",
        "deadline",
        "closed",
        "idle",
        "terminated",
        "protocol_error",
        "error",
    ];

    /// Counts a session that ended with `end` (its audit entry's word; `error: …` and
    /// `protocol error: …` by their kind).
    pub fn count(&self, end: &str) {
        let word = if end.starts_with("protocol error") {
            "protocol_error"
        } else {
            end
        };
        let i = Self::WORDS
            .iter()
            .position(|w| *w == word)
            .unwrap_or(Self::WORDS.len() - 1);
        self.0[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Each way to end and how many sessions ended so.
    pub fn all(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Self::WORDS
            .iter()
            .zip(&self.0)
            .map(|(w, n)| (*w, n.load(std::sync::atomic::Ordering::Relaxed)))
    }
}

/// What the gateway needs to serve an admitted client.
pub struct Admission {
    /// The gateway session id (recorded with every statement).
    pub session_id: String,
    /// Break.
    pub break_id: String,
    /// Procedure.
    pub procedure: String,
    /// The grant's own login (`postgresql://role:password@host:port/db?sslmode=…`).
    pub upstream: Secret,
    /// Database to connect to when the client names none.
    pub dbname: String,
    /// When the grant ends: the gateway closes the connection then.
    pub deadline: Timestamp,
    /// Becomes `true` when the grant ends early (close).
    pub ended: tokio::sync::watch::Receiver<bool>,
    /// Statement patterns to refuse.
    pub refuse: Vec<String>,
    /// Close the session after this long without a byte either way (the procedure's
    /// `gateway_idle_timeout`).
    pub idle_timeout: Option<std::time::Duration>,
    /// Becomes `Some` when someone terminates this session
    /// ([`Engine::terminate_gateway_session`]).
    pub terminated: tokio::sync::watch::Receiver<Option<Termination>>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("session_id", &self.session_id)
            .field("break_id", &self.break_id)
            .field("procedure", &self.procedure)
            .field("upstream", &"[redacted]")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// Why the gateway refuses a client: each says why in words a responder can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// No break has that id.
    #[error("no break `{0}` (connect with the break id as the user name)")]
    UnknownBreak(String),
    /// The break is not a proxy break.
    #[error("break `{0}` is not served by the gateway (its procedure's access is not `proxy`)")]
    NotProxy(String),
    /// Not granted yet.
    #[error("break `{0}` is not granted yet: it is waiting for approvals")]
    NotGranted(String),
    /// The break ended.
    #[error("break `{break_id}` has ended ({reason}); open a new break")]
    Ended {
        /// Break.
        break_id: String,
        /// Why.
        reason: String,
    },
    /// Past the deadline.
    #[error("the grant of break `{break_id}` ended at {deadline}")]
    Expired {
        /// Break.
        break_id: String,
        /// Deadline.
        deadline: Timestamp,
    },
    /// This server does not hold the login (it restarted during the grant, or another server
    /// of several granted the break).
    #[error(
        "this server's gateway does not hold the login of break `{0}` (the server restarted, or another server granted the break); the requester gets a new connection string with `breakglass break token {0}`"
    )]
    Lost(String),
    /// Another running server of the deployment holds the login: the gateway relays the
    /// client to that server's gateway (`address`), which checks the token and records the
    /// session. Never shown to a client.
    #[error("break `{break_id}` is served by the gateway of server {instance} at {address}")]
    Elsewhere {
        /// Break.
        break_id: String,
        /// The holding server.
        instance: String,
        /// `HOST:PORT` of its gateway.
        address: String,
        /// Whether its gateway asks for TLS.
        tls: bool,
    },
    /// No token, or not one of this break's.
    #[error("wrong gateway token for break `{0}`")]
    WrongToken(String),
    /// The token has opened all the connections it may.
    #[error(
        "this gateway token for break `{0}` was already used; ask for a new one with `breakglass break token`"
    )]
    TokenUsed(String),
    /// The store failed.
    #[error("the server could not record the session: {0}")]
    Unavailable(String),
}

impl Refusal {
    /// The PostgreSQL SQLSTATE for this refusal.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Refusal::WrongToken(_) | Refusal::TokenUsed(_) => "28P01",
            Refusal::Unavailable(_) => "58000",
            Refusal::Elsewhere { .. } => "08001",
            _ => "28000",
        }
    }
}

/// The end of a gateway session, as the gateway counted it.
#[derive(Debug, Clone, Default)]
pub struct SessionSummary {
    /// Session id.
    pub session_id: String,
    /// Break.
    pub break_id: String,
    /// Client address.
    pub peer: String,
    /// Statements recorded.
    pub statements: u64,
    /// Statements that failed on the server.
    pub errors: u64,
    /// Statements the gateway refused.
    pub refused: u64,
    /// Rows returned or affected.
    pub rows: u64,
    /// Bytes from the client / to the client.
    pub bytes_in: u64,
    /// Bytes to the client.
    pub bytes_out: u64,
    /// How long the session lasted.
    pub duration_ms: u64,
    /// Why it ended: `client` (Terminate or disconnect), `deadline`, `closed`, `idle`, `server`
    /// (the target closed it), `error: …`.
    pub end: String,
}

/// The canonical digest of a session's recording: SHA-256 over one line per statement,
/// in order. The session's `gateway.session_ended` audit entry carries it, so an edit to the
/// stored recording is detected against the chain.
pub fn recording_digest<'a>(statements: impl IntoIterator<Item = &'a StatementRecord>) -> String {
    let mut h = Sha256::new();
    digest_lines(&mut h, statements);
    hex::encode(h.finalize())
}

/// Adds statements to a recording's digest: the lines exactly as stored
/// (`StatementRecord::write_line`), parameters and COPY data only where there are any, so the
/// digests of recordings made before they were recorded stay the same.
fn digest_lines<'a>(h: &mut Sha256, statements: impl IntoIterator<Item = &'a StatementRecord>) {
    let mut line = String::new();
    for s in statements {
        line.clear();
        s.write_line(&mut line);
        h.update(line.as_bytes());
    }
}

/// Stored chunks read per query when a session's recording is digested at its end: memory
/// stays bounded however long the session ran (a chunk holds at most about 1 MiB of lines).
const DIGEST_PAGE: u32 = 16;

fn token_hash(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes[..]);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    token
}

impl Engine {
    /// Whether `procedure` is served through the gateway.
    pub(crate) fn is_proxy(procedure: &breakglass_domain::Procedure) -> bool {
        matches!(procedure.target.config(), Ok(TargetConfig::Postgres(p)) if p.access == Access::Proxy)
    }

    /// The connection string a requester receives for a proxy grant, with a fresh token
    /// (its hash kept with `slots`).
    fn gateway_url(
        &self,
        break_id: &str,
        dbname: &str,
        token: &str,
    ) -> Result<String, EngineError> {
        let ep = self.inner.config.gateway.as_ref().ok_or_else(|| {
            EngineError::Invalid(
                "this procedure's access is `proxy` but the server runs no gateway (serve --gateway)"
                    .into(),
            )
        })?;
        let host = if ep.host.contains(':') {
            format!("[{}]", ep.host)
        } else {
            ep.host.clone()
        };
        Ok(format!(
            "postgresql://{break_id}:{token}@{host}:{}/{dbname}?sslmode={}",
            ep.port,
            if ep.tls { "require" } else { "disable" }
        ))
    }

    /// Called by `issue_grant` for a proxy procedure: holds the grant's login and returns
    /// what the requester receives instead (a gateway connection string with a token).
    pub(crate) fn hold_proxy_grant(
        &self,
        procedure: &breakglass_domain::Procedure,
        break_id: &str,
        access: Secret,
        deadline: Timestamp,
    ) -> Result<Secret, EngineError> {
        let Ok(TargetConfig::Postgres(cfg)) = procedure.target.config() else {
            return Err(EngineError::Invalid(
                "proxy access needs a postgres target".into(),
            ));
        };
        let token = zeroize::Zeroizing::new(new_token());
        let url = self.gateway_url(break_id, &cfg.dbname, &token)?;
        let slot = TokenSlot {
            hash: token_hash(token.as_bytes()),
            left: cfg.gateway_connections,
        };
        self.hold(break_id, procedure, &cfg, access, deadline, vec![slot], 0);
        Ok(Secret::new(url.into_bytes()))
    }

    /// Holds `access`, the login of `break_id`'s grant, for the gateway until the grant ends.
    #[allow(clippy::too_many_arguments)]
    fn hold(
        &self,
        break_id: &str,
        procedure: &breakglass_domain::Procedure,
        cfg: &breakglass_domain::PostgresTarget,
        access: Secret,
        deadline: Timestamp,
        tokens: Vec<TokenSlot>,
        sessions: u64,
    ) {
        let (ended, _) = tokio::sync::watch::channel(false);
        self.inner
            .gateway
            .grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                break_id.to_owned(),
                ProxyGrant {
                    procedure: procedure.id.clone(),
                    access,
                    deadline,
                    dbname: cfg.dbname.clone(),
                    refuse: cfg.refuse.clone(),
                    idle_timeout: cfg.gateway_idle_timeout,
                    tokens,
                    ended,
                    sessions,
                },
            );
    }

    /// Whether this server holds the login of `break_id`'s proxy grant.
    pub(crate) fn holds_proxy_login(&self, break_id: &str) -> bool {
        self.inner
            .gateway
            .grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(break_id)
    }

    /// Drops a held proxy login (the grant ended or was never committed) and closes its
    /// open gateway connections.
    pub(crate) fn release_proxy_grant(&self, break_id: &str) {
        let held = self
            .inner
            .gateway
            .grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(break_id);
        if let Some(g) = held {
            let _ = g.ended.send(true);
        }
    }

    /// Admits a gateway client: `break_id` is its user name, `token` its password. Audited
    /// (`gateway.session_started`, or `gateway.refused` for an existing break).
    ///
    /// When another running server holds the break's login and `may_relay` (the client was not
    /// relayed here already), the answer is [`Refusal::Elsewhere`]: the gateway relays the client
    /// to that server's gateway, and `gateway.relayed` is audited here.
    pub async fn gateway_admit(
        &self,
        break_id: &str,
        token: &[u8],
        peer: &str,
        may_relay: bool,
    ) -> Result<Admission, Refusal> {
        let now = self.now();
        let unavailable = |e: EngineError| Refusal::Unavailable(e.to_string());
        let mut tx = self
            .store()
            .begin()
            .await
            .map_err(|e| unavailable(e.into()))?;
        let b = match load_break(tx.as_mut(), break_id).await {
            Ok(b) => b,
            Err(EngineError::NotFound { .. }) => {
                return Err(Refusal::UnknownBreak(break_id.chars().take(64).collect()));
            }
            Err(e) => return Err(unavailable(e)),
        };
        let stored = tx
            .procedure(&b.info().procedure)
            .await
            .map_err(|e| unavailable(e.into()))?
            .ok_or_else(|| Refusal::UnknownBreak(break_id.to_owned()))?;
        let mut verdict = self.check_admission(&b, &stored.procedure, token, now);
        if may_relay
            && matches!(verdict, Err(Refusal::Lost(_)))
            && let Some((instance, address, tls)) = self
                .gateway_elsewhere(tx.as_mut(), break_id)
                .await
                .map_err(unavailable)?
        {
            verdict = Err(Refusal::Elsewhere {
                break_id: break_id.to_owned(),
                instance,
                address,
                tls,
            });
        }
        let mut record = crate::events::Record::default();
        let admitted = match verdict {
            Ok(a) => {
                record.break_note(
                    now,
                    &b.info().requester,
                    "gateway.session_started",
                    &b,
                    json!({"session": a.session_id, "peer": peer, "deadline": a.deadline.to_string(), "instance": self.instance()}),
                );
                Ok(a)
            }
            Err(Refusal::Elsewhere {
                break_id,
                instance,
                address,
                tls,
            }) => {
                // The holder checks the token and audits the session; this server records
                // that it passed the client on, and to whom.
                record.break_note(
                    now,
                    "gateway",
                    "gateway.relayed",
                    &b,
                    json!({"peer": peer, "to": instance, "address": address, "instance": self.instance()}),
                );
                Err(Refusal::Elsewhere {
                    break_id,
                    instance,
                    address,
                    tls,
                })
            }
            Err(r) => {
                record.break_note(
                    now,
                    "gateway",
                    "gateway.refused",
                    &b,
                    json!({"peer": peer, "why": r.to_string()}),
                );
                Err(r)
            }
        };
        if let Err(e) = self.commit(tx, record).await {
            if admitted.is_ok() {
                self.give_back_token(break_id);
            }
            return Err(unavailable(e));
        }
        admitted.map(|mut a| {
            a.terminated = self.track_session(&a);
            a
        })
    }

    fn check_admission(
        &self,
        b: &Break,
        procedure: &breakglass_domain::Procedure,
        token: &[u8],
        now: Timestamp,
    ) -> Result<Admission, Refusal> {
        let id = b.info().id.0.clone();
        if !Engine::is_proxy(procedure) {
            return Err(Refusal::NotProxy(id));
        }
        let granted = match b {
            Break::Requested(_) => return Err(Refusal::NotGranted(id)),
            Break::Ended(e) => {
                return Err(Refusal::Ended {
                    break_id: id,
                    reason: e.reason.as_str().to_owned(),
                });
            }
            Break::Granted(g) => g,
        };
        if now >= granted.deadline {
            return Err(Refusal::Expired {
                break_id: id,
                deadline: granted.deadline,
            });
        }
        let mut grants = self
            .inner
            .gateway
            .grants
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(g) = grants.get_mut(&id) else {
            return Err(Refusal::Lost(id));
        };
        let hash = token_hash(token);
        let slot = g
            .tokens
            .iter_mut()
            .find(|t| bool::from(t.hash.ct_eq(&hash)));
        let Some(slot) = slot else {
            return Err(Refusal::WrongToken(id));
        };
        if slot.left == 0 {
            return Err(Refusal::TokenUsed(id));
        }
        slot.left -= 1;
        g.sessions += 1;
        Ok(Admission {
            session_id: format!("{id}-s{}", g.sessions),
            break_id: id,
            procedure: g.procedure.clone(),
            upstream: Secret::new(g.access.expose_secret().to_vec()),
            dbname: g.dbname.clone(),
            deadline: g.deadline,
            ended: g.ended.subscribe(),
            refuse: g.refuse.clone(),
            idle_timeout: g.idle_timeout,
            // Replaced by the live session's own once its admission is committed.
            terminated: tokio::sync::watch::channel(None).1,
        })
    }

    /// Registers an admitted session as open on this server; returns what tells it it was
    /// terminated.
    fn track_session(&self, a: &Admission) -> tokio::sync::watch::Receiver<Option<Termination>> {
        let (stop, terminated) = tokio::sync::watch::channel(None);
        self.live_sessions().insert(
            a.session_id.clone(),
            LiveSession {
                break_id: a.break_id.clone(),
                stop,
            },
        );
        terminated
    }

    fn live_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveSession>> {
        self.inner
            .gateway
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// An admission whose audit entry could not be committed gives its connection back.
    fn give_back_token(&self, break_id: &str) {
        let mut grants = self
            .inner
            .gateway
            .grants
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = grants.get_mut(break_id).and_then(|g| g.tokens.last_mut()) {
            slot.left += 1;
        }
    }

    /// The gateway's counters.
    pub fn gateway_counters(&self) -> &GatewayCounters {
        &self.inner.gateway.counters
    }

    /// Stores chunks of statements the gateway recorded (no audit entry of its own — the
    /// session's end entry carries their count and digest).
    pub async fn gateway_record(&self, chunks: &[StatementChunk]) -> Result<(), EngineError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut tx = self.store().begin().await?;
        tx.put_statement_chunks(chunks).await?;
        tx.commit_bookkeeping().await?;
        Ok(())
    }

    /// Records the end of a gateway session (`gateway.session_ended`, alerted), with the
    /// digest of its stored recording.
    pub async fn gateway_session_ended(&self, summary: &SessionSummary) -> Result<(), EngineError> {
        self.live_sessions().remove(&summary.session_id);
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let b = load_break(tx.as_mut(), &summary.break_id).await?;
        let procedure = crate::breaks::load_procedure(tx.as_mut(), &b.info().procedure).await?;
        // Read a page of chunks at a time (a session may have recorded millions of statements).
        let (recorded, digest) =
            digest_stored(tx.as_mut(), &summary.break_id, &summary.session_id).await?;
        let mut record = crate::events::Record::default();
        record.break_event(
            now,
            &b.info().requester,
            "gateway.session_ended",
            &procedure.procedure,
            &b,
            json!({
                "session": summary.session_id,
                "peer": summary.peer,
                "statements": summary.statements,
                "recorded": recorded,
                "errors": summary.errors,
                "refused": summary.refused,
                "rows": summary.rows,
                "bytes_in": summary.bytes_in,
                "bytes_out": summary.bytes_out,
                "duration_ms": summary.duration_ms,
                "end": summary.end,
                "recording_sha256": digest,
            }),
        );
        self.commit(tx, record).await?;
        Ok(())
    }

    /// Records the end of gateway sessions whose server stopped without recording it (killed,
    /// crashed, power lost): a session whose start names a server instance other than this
    /// one that is not running (with several servers: its liveness lease has lapsed; alone:
    /// any other, as instance ids are new with each start), or an older start naming none
    /// when this server runs alone. Its end, `lost`, binds what was stored of its recording
    /// (the count and SHA-256 of the stored statements, up to 100 ms of the last ones having
    /// died with the server) to the chain like any end, so the session no longer shows as
    /// open and its recording is checked like the others. Looks at every granted break, and
    /// at every granted one that ended in the last [`LOST_SESSIONS_WINDOW_MS`] (each of those
    /// only until a scan finds it without an open session). Returns the sessions it closed.
    /// Run at start-up and every minute.
    pub async fn close_lost_gateway_sessions(&self) -> Result<Vec<String>, EngineError> {
        let now = self.now();
        let alone = self.inner.config.advertise_url.is_none();
        let done = self.lost_scan_done().clone();
        // The ended breaks already found without an open session that are still in the window.
        let done_in_window = std::sync::Mutex::new(std::collections::HashSet::new());
        let candidates = self
            .proxy_breaks(
                Some(Timestamp(now.0 - LOST_SESSIONS_WINDOW_MS)),
                |b| match b {
                    Break::Requested(_) => false,
                    Break::Granted(_) => true,
                    Break::Ended(e) if done.contains(&e.info.id.0) => {
                        done_in_window
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(e.info.id.0.clone());
                        false
                    }
                    Break::Ended(e) => e.granted_at.is_some(),
                },
            )
            .await?;
        let mut closed = Vec::new();
        let mut still_ended: std::collections::HashSet<String> = std::collections::HashSet::new();
        for b in candidates {
            let break_id = b.info().id.0.clone();
            let open = {
                let mut tx = self.store().read().await?;
                open_sessions(&break_entries(tx.as_mut(), &break_id).await?)
            };
            let mut left_open = 0usize;
            for OpenStart {
                session,
                peer,
                instance,
                ..
            } in open
            {
                let lost = match &instance {
                    Some(i) if i == self.instance() => false,
                    Some(_) if alone => true,
                    Some(i) => !self.store().lease_alive(&format!("instance:{i}")).await?,
                    None => alone,
                };
                if lost
                    && self
                        .record_lost_session(&break_id, &session, &peer, now)
                        .await?
                {
                    closed.push(session);
                } else if !lost {
                    left_open += 1;
                }
            }
            if matches!(b, Break::Ended(_)) && left_open == 0 {
                still_ended.insert(break_id);
            }
        }
        // Those that left the window are forgotten: the set holds at most the window's breaks.
        let mut done = done_in_window
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        done.extend(still_ended);
        *self.lost_scan_done() = done;
        Ok(closed)
    }

    fn lost_scan_done(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.inner
            .gateway
            .lost_scan_done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The gateway sessions open now (their start audited, their end not yet), of every
    /// granted proxy break, oldest first (admin, auditor). `here`: running on this server.
    pub async fn open_gateway_sessions(&self, by: &Actor) -> Result<Vec<OpenSession>, EngineError> {
        by.may(Action::ReadAudit)?;
        let granted = self
            .proxy_breaks(None, |b| matches!(b, Break::Granted(_)))
            .await?;
        let live: std::collections::HashSet<String> =
            self.live_sessions().keys().cloned().collect();
        let mut out = Vec::new();
        for b in granted {
            let info = b.info();
            let starts = {
                let mut tx = self.store().read().await?;
                open_sessions(&break_entries(tx.as_mut(), &info.id.0).await?)
            };
            out.extend(starts.into_iter().map(|s| OpenSession {
                break_id: info.id.0.clone(),
                procedure: info.procedure.clone(),
                requester: info.requester.clone(),
                here: live.contains(&s.session),
                session_id: s.session,
                peer: s.peer,
                started_at: s.at,
                started_seq: s.seq,
            }));
        }
        out.sort_by_key(|s| s.started_seq);
        Ok(out)
    }

    /// [`Engine::open_gateway_sessions`], read at most once per `max_age` for every caller:
    /// the dashboard's event streams, one per admin or auditor looking at it, each ask every
    /// 250 ms, and the list reads the audit entries of every granted proxy break. A caller
    /// arriving while the list is being read waits for it and gets the same list.
    pub async fn open_gateway_sessions_shared(
        &self,
        by: &Actor,
        max_age: std::time::Duration,
    ) -> Result<std::sync::Arc<[OpenSession]>, EngineError> {
        by.may(Action::ReadAudit)?;
        let mut shared = self.inner.gateway.open_shared.lock().await;
        if let Some((at, list)) = shared.as_ref()
            && at.elapsed() < max_age
        {
            return Ok(list.clone());
        }
        let list: std::sync::Arc<[OpenSession]> = self.open_gateway_sessions(by).await?.into();
        *shared = Some((std::time::Instant::now(), list.clone()));
        Ok(list)
    }

    /// The breaks of proxy procedures that `keep` keeps, among every break not yet ended
    /// (however many were opened since: scheduled drills open breaks all day) and, with
    /// `ended_since`, every one that ended at or after it.
    async fn proxy_breaks(
        &self,
        ended_since: Option<Timestamp>,
        keep: impl Fn(&Break) -> bool,
    ) -> Result<Vec<Break>, EngineError> {
        let mut tx = self.store().read().await?;
        // Every open break has a deadline (its approval window or its grant's end).
        let mut candidates = tx.due_breaks(Timestamp(i64::MAX)).await?;
        if let Some(since) = ended_since {
            let open: std::collections::HashSet<String> =
                candidates.iter().map(|b| b.info().id.0.clone()).collect();
            candidates.extend(
                tx.breaks_ended_since(since)
                    .await?
                    .into_iter()
                    .filter(|b| !open.contains(&b.info().id.0)),
            );
        }
        let mut proxy: HashMap<String, bool> = HashMap::new();
        let mut out = Vec::new();
        for b in candidates {
            if !keep(&b) {
                continue;
            }
            let procedure = b.info().procedure.clone();
            let is_proxy = match proxy.get(&procedure) {
                Some(p) => *p,
                None => {
                    let p = tx
                        .procedure(&procedure)
                        .await?
                        .is_some_and(|s| Engine::is_proxy(&s.procedure));
                    proxy.insert(procedure, p);
                    p
                }
            };
            if is_proxy {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// Commits a lost session's end (unless its end was recorded meanwhile): `true` when it
    /// did.
    async fn record_lost_session(
        &self,
        break_id: &str,
        session: &str,
        peer: &str,
        now: Timestamp,
    ) -> Result<bool, EngineError> {
        let mut tx = self.store().begin().await?;
        let b = load_break(tx.as_mut(), break_id).await?;
        let already = break_entries(tx.as_mut(), break_id).await?.iter().any(|e| {
            e.kind == "gateway.session_ended"
                && e.payload.get("session").and_then(|s| s.as_str()) == Some(session)
        });
        if already {
            return Ok(false);
        }
        let procedure = crate::breaks::load_procedure(tx.as_mut(), &b.info().procedure).await?;
        let (recorded, digest) = digest_stored(tx.as_mut(), break_id, session).await?;
        let mut record = crate::events::Record::default();
        record.break_event(
            now,
            "breakglass",
            "gateway.session_ended",
            &procedure.procedure,
            &b,
            json!({
                "session": session,
                "peer": peer,
                "statements": recorded,
                "recorded": recorded,
                "end": "lost",
                "why": "the server running the session stopped before recording its end; what it had stored is bound here (its last 100 ms of statements may have died with it)",
                "recording_sha256": digest,
            }),
        );
        self.commit(tx, record).await?;
        Ok(true)
    }

    /// The first statement of a gateway session refused for matching `pattern` (one of its
    /// procedure's `refuse` patterns): audited as `gateway.statement_refused` and alerted to
    /// the procedure's channels — someone tried, during a break, what the procedure forbids.
    /// The entry names the session, the statement's position in its recording and the
    /// pattern, not the statement's text (which may hold data; it is in the recording, for
    /// those who may read it). Later refusals for the same pattern in the session are
    /// counted in its end.
    pub async fn gateway_statement_refused(
        &self,
        break_id: &str,
        session_id: &str,
        seq: u64,
        pattern: &str,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let b = load_break(tx.as_mut(), break_id).await?;
        let procedure = crate::breaks::load_procedure(tx.as_mut(), &b.info().procedure).await?;
        let mut record = crate::events::Record::default();
        record.break_event(
            now,
            &b.info().requester,
            "gateway.statement_refused",
            &procedure.procedure,
            &b,
            json!({"session": session_id, "statement_seq": seq, "pattern": pattern}),
        );
        self.commit(tx, record).await?;
        Ok(())
    }

    /// Ends one open gateway session of `break_id` now, before its break does: the client
    /// gets a FATAL error naming who terminated it and why, and the session's end is
    /// recorded as `terminated`. Audited first (`gateway.session_terminated`, with the
    /// reason), then the session is told. The break's requester or an admin may; the
    /// session must be open on this server (another running server holding the break's
    /// gateway login gets the request: [`EngineError::Elsewhere`]).
    pub async fn terminate_gateway_session(
        &self,
        by: &Actor,
        break_id: &str,
        session_id: &str,
        reason: &str,
    ) -> Result<Termination, EngineError> {
        by.may(Action::CloseBreak)?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(EngineError::Invalid(
                "reason: say why the session is terminated (it is recorded in the audit log and sent to the client)".into(),
            ));
        }
        if reason.chars().count() > TERMINATION_REASON_MAX {
            return Err(EngineError::Invalid(format!(
                "reason: at most {TERMINATION_REASON_MAX} characters"
            )));
        }
        if reason.chars().any(char::is_control) {
            return Err(EngineError::Invalid(
                "reason: one line, without control characters".into(),
            ));
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let b = load_break(tx.as_mut(), break_id).await?;
        if b.info().requester != by.name && !by.has(breakglass_domain::Role::Admin) {
            return Err(EngineError::Denied(breakglass_domain::Denied {
                actor: by.name.clone(),
                action: "terminate the gateway sessions of another requester's break",
                needs: "admin".into(),
            }));
        }
        let stop = {
            let mut live = self.live_sessions();
            // A session whose connection task is gone (it never recorded its end) is not open.
            live.retain(|_, l| l.stop.receiver_count() > 0);
            live.get(session_id)
                .filter(|l| l.break_id == break_id)
                .map(|l| l.stop.clone())
        };
        let Some(stop) = stop else {
            return Err(self.not_open_here(tx.as_mut(), break_id, session_id).await);
        };
        if let Some(earlier) = stop.borrow().clone() {
            return Err(EngineError::Conflict(format!(
                "gateway session {session_id} of break {break_id} is already being terminated by {}",
                earlier.by
            )));
        }
        let termination = Termination {
            by: by.name.clone(),
            reason: reason.to_owned(),
        };
        let procedure = crate::breaks::load_procedure(tx.as_mut(), &b.info().procedure).await?;
        // Alerted like the session's end: the team sees who cut a responder off, and why.
        let mut record = crate::events::Record::default();
        record.break_event(
            now,
            &by.name,
            "gateway.session_terminated",
            &procedure.procedure,
            &b,
            json!({"session": session_id, "reason": reason, "terminated_by": by.name}),
        );
        self.commit(tx, record).await?;
        stop.send_replace(Some(termination.clone()));
        Ok(termination)
    }

    /// Why a session to terminate is not open on this server: it ended, it is open on
    /// another running server, or no such session started.
    async fn not_open_here(
        &self,
        tx: &mut dyn crate::ports::Tx,
        break_id: &str,
        session_id: &str,
    ) -> EngineError {
        let entries = match break_entries(tx, break_id).await {
            Ok(e) => e,
            Err(e) => return e,
        };
        let of_session = |kind: &str| {
            entries.iter().find(|e| {
                e.kind == kind
                    && e.payload.get("session").and_then(|s| s.as_str()) == Some(session_id)
            })
        };
        if let Some(ended) = of_session("gateway.session_ended") {
            let end = ended
                .payload
                .get("end")
                .and_then(|s| s.as_str())
                .unwrap_or("unknown");
            return EngineError::Conflict(format!(
                "gateway session {session_id} of break {break_id} has already ended (end: {end})"
            ));
        }
        if of_session("gateway.session_started").is_none() {
            return EngineError::not_found("gateway session", session_id);
        }
        match self.proxy_held_elsewhere(tx, break_id).await {
            Ok(Some(url)) => EngineError::Elsewhere {
                break_id: break_id.to_owned(),
                url,
            },
            Ok(None) => EngineError::Conflict(format!(
                "gateway session {session_id} of break {break_id} is not open on this server, and no other running server holds the break's gateway login (the server it ran on restarted or is gone, which ended its connections)"
            )),
            Err(e) => e,
        }
    }

    /// A fresh gateway token for the requester of a granted proxy break (the earlier tokens
    /// stop working), encrypted to their key like a reveal. Audited `gateway.token_issued`.
    pub async fn gateway_token(
        &self,
        by: &Actor,
        break_id: &str,
    ) -> Result<RevealedGrant, EngineError> {
        by.may(Action::Reveal)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let b = load_break(tx.as_mut(), break_id).await?;
        if b.info().requester != by.name {
            return Err(EngineError::Conflict(format!(
                "only the requester `{}` receives gateway tokens for break {break_id}",
                b.info().requester
            )));
        }
        let Break::Granted(granted) = &b else {
            return Err(EngineError::Conflict(format!(
                "break {break_id} is not granted"
            )));
        };
        if now >= granted.deadline {
            return Err(EngineError::Conflict(format!(
                "the grant of break {break_id} ended at {}",
                granted.deadline
            )));
        }
        let procedure = tx
            .procedure(&granted.info.procedure)
            .await?
            .ok_or_else(|| EngineError::not_found("procedure", &granted.info.procedure))?;
        if !Engine::is_proxy(&procedure.procedure) {
            return Err(EngineError::Invalid(format!(
                "break {break_id} is not served by the gateway"
            )));
        }
        let key = tx
            .actor(&by.name)
            .await?
            .and_then(|a| a.actor.key)
            .ok_or_else(|| EngineError::Conflict(format!("`{}` has no enrolled key", by.name)))?;
        // One renewal at a time: two could otherwise store their logins in the other order
        // from the one they reached the database in.
        let _renewing = self.inner.gateway.renewing.lock().await;
        let renewed = if self.holds_proxy_login(break_id) {
            None
        } else {
            // Several servers: the one that granted the break holds its login; while it runs,
            // the request is sent there (`EngineError::Elsewhere`, which the HTTP layer
            // forwards), so its gateway goes on serving the break. Only when it is gone does
            // this server renew the login and take the break over.
            if let Some(url) = self.proxy_held_elsewhere(tx.as_mut(), break_id).await? {
                return Err(EngineError::Elsewhere {
                    break_id: break_id.to_owned(),
                    url,
                });
            }
            Some(
                self.renew_proxy_grant(
                    tx.as_mut(),
                    &procedure.procedure,
                    break_id,
                    granted.deadline,
                )
                .await?,
            )
        };
        // A renewal that is not on record is not kept: the next `break token` renews again,
        // and that one is audited.
        let renewed_login = renewed.is_some();
        let forget = |e: EngineError| {
            if renewed_login {
                self.release_proxy_grant(break_id);
            }
            e
        };
        let token = zeroize::Zeroizing::new(new_token());
        let (url, connections) = {
            let mut grants = self
                .inner
                .gateway
                .grants
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let g = grants.get_mut(break_id).ok_or_else(|| {
                EngineError::Conflict(Refusal::Lost(break_id.to_owned()).to_string())
            })?;
            let connections = match procedure.procedure.target.config() {
                Ok(TargetConfig::Postgres(c)) => c.gateway_connections,
                _ => 1,
            };
            self.gateway_url(break_id, &g.dbname, &token).map(|url| {
                g.tokens = vec![TokenSlot {
                    hash: token_hash(token.as_bytes()),
                    left: connections,
                }];
                (zeroize::Zeroizing::new(url), connections)
            })
        }
        .map_err(forget)?;
        let age_file = breakglass_custody::encrypt_to(&key, url.as_bytes())
            .map_err(|e| EngineError::Conflict(format!("cannot encrypt the token: {e}")))
            .map_err(forget)?;
        let mut record = crate::events::Record::default();
        if let Some(role) = renewed {
            record.break_note(
                now,
                "breakglass",
                "gateway.login_renewed",
                &b,
                json!({"role": role, "why": "this server held no login for the break (it restarted during the grant, or the server holding it is gone); renewed with the operator connection"}),
            );
        }
        record.break_note(
            now,
            &by.name,
            "gateway.token_issued",
            &b,
            json!({"connections": connections, "earlier_tokens": "revoked"}),
        );
        if renewed_login && let Some(url) = &self.inner.config.advertise_url {
            // From now on the other servers send this break's token requests here. Recorded in
            // the renewal's own commit: a second survivor asking at the same moment queues on
            // this writer and then finds this server holding the login, instead of renewing
            // it again over this one's.
            tx.set_share_holder(break_id, self.instance(), url)
                .await
                .map_err(|e| forget(e.into()))?;
        }
        self.commit(tx, record).await.map_err(forget)?;
        Ok(RevealedGrant {
            break_id: break_id.to_owned(),
            age_file,
            deadline: granted.deadline,
        })
    }

    /// The gateway of another running server that holds `break_id`'s login: `(instance,
    /// address, tls)`, when that server registered where the others reach its gateway.
    async fn gateway_elsewhere(
        &self,
        tx: &mut dyn crate::ports::Tx,
        break_id: &str,
    ) -> Result<Option<(String, String, bool)>, EngineError> {
        if self.inner.config.advertise_url.is_none() {
            return Ok(None);
        }
        let holder = tx.share_holder_in(break_id).await?;
        let Some(h) = self.other_holder(holder).await?.filter(|h| h.alive) else {
            return Ok(None);
        };
        Ok(self
            .store()
            .instance_gateway(&h.instance)
            .await?
            .map(|(address, tls)| (h.instance, address, tls)))
    }

    /// Records where the other servers reach this server's gateway
    /// ([`GatewayEndpoint::peer`]), when it runs one and shares its store with others
    /// (`advertise_url`). Called when the gateway starts serving.
    pub async fn register_gateway(&self) -> Result<(), EngineError> {
        let config = &self.inner.config;
        if config.advertise_url.is_none() {
            return Ok(());
        }
        if let Some(GatewayEndpoint {
            peer: Some(address),
            tls,
            ..
        }) = &config.gateway
        {
            self.store()
                .put_instance_gateway(self.instance(), address, *tls)
                .await?;
        }
        Ok(())
    }

    /// Whether this server shares its store with other servers (`advertise_url`): only then
    /// are its gateway's cancellation keys recorded and other servers' addresses read.
    pub fn shares_store(&self) -> bool {
        self.inner.config.advertise_url.is_some()
    }

    /// This server's registered gateway address (`GatewayEndpoint::peer`), when it shares
    /// its store with other servers.
    fn own_peer_address(&self) -> Option<&str> {
        let config = &self.inner.config;
        config.advertise_url.as_ref()?;
        config.gateway.as_ref()?.peer.as_deref()
    }

    /// The gateway addresses the other servers sharing this store registered (`HOST:PORT`):
    /// the gateway believes the client address a relayed start-up carries only from these
    /// hosts. Empty when this server shares its store with none.
    pub async fn gateway_peer_addresses(&self) -> Result<Vec<String>, EngineError> {
        if self.inner.config.advertise_url.is_none() {
            return Ok(Vec::new());
        }
        let own = self.own_peer_address();
        Ok(self
            .store()
            .instance_gateways()
            .await?
            .into_iter()
            .filter(|(instance, address, _)| {
                instance != self.instance() && Some(address.as_str()) != own
            })
            .map(|(_, address, _)| address)
            .collect())
    }

    /// Records in the shared store that this server's gateway gave a client cancellation key
    /// `pid`, valid until `until` (the session's deadline), so a cancel request for it that
    /// reaches another server is sent on here. `false` when another live session of the
    /// deployment holds `pid` (pick another). Always `true` without other servers.
    pub async fn register_cancel_key(
        &self,
        pid: i32,
        until: Timestamp,
    ) -> Result<bool, EngineError> {
        if self.inner.config.advertise_url.is_none() {
            return Ok(true);
        }
        Ok(self
            .store()
            .put_cancel_key(pid, self.instance(), until, self.now())
            .await?)
    }

    /// Forgets cancellation key `pid` of this server (its session ended).
    pub async fn forget_cancel_key(&self, pid: i32) -> Result<(), EngineError> {
        if self.inner.config.advertise_url.is_none() {
            return Ok(());
        }
        Ok(self
            .store()
            .delete_cancel_key(pid, self.instance(), self.now())
            .await?)
    }

    /// Where to send on a cancel request for cancellation key `pid`, which this server's
    /// gateway does not know: the gateway of the server that gave the key, `(instance, address,
    /// tls)`. `None` when no other server gave it, or the one that did is this server or is
    /// registered at this server's own address (a server that took over a dead one's address):
    /// a cancel request is never sent back to the server it reached.
    pub async fn cancel_key_holder(
        &self,
        pid: i32,
    ) -> Result<Option<(String, String, bool)>, EngineError> {
        if self.inner.config.advertise_url.is_none() {
            return Ok(None);
        }
        let own = self.own_peer_address();
        Ok(self
            .store()
            .cancel_key_gateway(pid, self.now())
            .await?
            .filter(|(instance, address, _)| {
                instance != self.instance() && Some(address.as_str()) != own
            }))
    }

    /// The advertised URL of another running server that holds `break_id`'s login (the one
    /// that granted it, or renewed it last), when several servers share the store.
    async fn proxy_held_elsewhere(
        &self,
        tx: &mut dyn crate::ports::Tx,
        break_id: &str,
    ) -> Result<Option<String>, EngineError> {
        if self.inner.config.advertise_url.is_none() {
            return Ok(None);
        }
        let holder = tx.share_holder_in(break_id).await?;
        Ok(self
            .other_holder(holder)
            .await?
            .filter(|h| h.alive)
            .map(|h| h.url))
    }

    /// After a restart the held login of a granted proxy break is gone (it lived in memory
    /// only). The target gives its grant role a new login with the operator credential —
    /// nothing sealed is opened, the role keeps its expiry, the lost login stops working —
    /// and the server holds that one. Session numbers go on from the sessions already
    /// audited, so no session id is used twice. Returns the role's name (for the audit).
    async fn renew_proxy_grant(
        &self,
        tx: &mut dyn crate::ports::Tx,
        procedure: &breakglass_domain::Procedure,
        break_id: &str,
        deadline: Timestamp,
    ) -> Result<String, EngineError> {
        let Ok(TargetConfig::Postgres(cfg)) = procedure.target.config() else {
            return Err(EngineError::Invalid(
                "proxy access needs a postgres target".into(),
            ));
        };
        let grant = tx.grant(break_id).await?.ok_or_else(|| {
            EngineError::Conflict(format!(
                "break {break_id} has no grant on its target to renew the login of"
            ))
        })?;
        let target = self.target(procedure.target.kind)?;
        let access = target
            .renew_login(procedure, break_id, &grant.handle)
            .await?;
        let sessions = break_entries(tx, break_id)
            .await?
            .iter()
            .filter(|e| e.kind == "gateway.session_started")
            .count() as u64;
        self.hold(
            break_id,
            procedure,
            &cfg,
            access,
            deadline,
            Vec::new(),
            sessions,
        );
        Ok(grant
            .handle
            .get("role")
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_owned())
    }

    /// A break's gateway sessions, from their audit entries, and for each ended one whether
    /// the stored recording still matches the digest its `gateway.session_ended` entry
    /// carries. Each recording is read a page at a time ([`DIGEST_PAGE`] chunks), so memory
    /// stays bounded however much a break recorded; the statements themselves are read with
    /// [`Engine::session_statements`]. With `only`, that session alone (the others' recordings
    /// are not read).
    pub async fn recorded_sessions(
        &self,
        by: &Actor,
        break_id: &str,
        only: Option<&str>,
    ) -> Result<Vec<RecordedSession>, EngineError> {
        self.sessions_where(by, break_id, only, 0).await
    }

    /// The sessions of [`Engine::recorded_sessions`] that started after audit entry `after`
    /// (their [`RecordedSession::started_seq`]); the recordings of those before are not read.
    /// A follower asks with the last start it saw, so each poll reads only what is new.
    pub async fn recorded_sessions_after(
        &self,
        by: &Actor,
        break_id: &str,
        after: u64,
    ) -> Result<Vec<RecordedSession>, EngineError> {
        self.sessions_where(by, break_id, None, after).await
    }

    async fn sessions_where(
        &self,
        by: &Actor,
        break_id: &str,
        only: Option<&str>,
        after: u64,
    ) -> Result<Vec<RecordedSession>, EngineError> {
        by.may(Action::ReadAudit)?;
        let mut tx = self.store().read().await?;
        load_break(tx.as_mut(), break_id).await?;
        let entries = break_entries(tx.as_mut(), break_id).await?;
        let peer = |p: &serde_json::Value| {
            p.get("peer")
                .and_then(|s| s.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let mut sessions: Vec<RecordedSession> = Vec::new();
        // Sessions that started at or before `after`: their ends are not looked at.
        let mut earlier: std::collections::HashSet<String> = std::collections::HashSet::new();
        for e in entries {
            let p = &e.payload;
            let session = p
                .get("session")
                .and_then(|s| s.as_str())
                .unwrap_or_default();
            if only.is_some_and(|only| only != session) {
                continue;
            }
            match e.kind.as_str() {
                "gateway.session_started" if e.seq <= after => {
                    earlier.insert(session.to_owned());
                }
                "gateway.session_started" => sessions.push(RecordedSession {
                    session_id: session.to_owned(),
                    peer: peer(p),
                    started_at: Timestamp(e.time_ms),
                    started_seq: e.seq,
                    ended: None,
                }),
                "gateway.session_ended" if e.seq <= after || earlier.contains(session) => {}
                "gateway.session_ended" => {
                    let (recorded, digest) = digest_stored(tx.as_mut(), break_id, session).await?;
                    let claimed = p
                        .get("recording_sha256")
                        .and_then(|s| s.as_str())
                        .unwrap_or_default();
                    if !sessions.iter().any(|s| s.session_id == session) {
                        // Its start is older than what was read (or was never committed).
                        sessions.push(RecordedSession {
                            session_id: session.to_owned(),
                            peer: peer(p),
                            started_at: Timestamp(e.time_ms),
                            started_seq: e.seq,
                            ended: None,
                        });
                    }
                    if let Some(s) = sessions.iter_mut().find(|s| s.session_id == session) {
                        s.ended = Some(SessionEnd {
                            at: Timestamp(e.time_ms),
                            end: p
                                .get("end")
                                .and_then(|s| s.as_str())
                                .unwrap_or_default()
                                .to_owned(),
                            statements: p
                                .get("statements")
                                .and_then(serde_json::Value::as_u64)
                                .unwrap_or(0),
                            recorded,
                            intact: bool::from(digest.as_bytes().ct_eq(claimed.as_bytes())),
                            audit_seq: e.seq,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(sessions)
    }

    /// Whether `break_id`'s gateway session `session_id` has ended (its `gateway.session_ended`
    /// entry is committed, so all of its statements are stored): read from the break's audit
    /// entries, without reading the recording.
    pub async fn gateway_session_has_ended(
        &self,
        by: &Actor,
        break_id: &str,
        session_id: &str,
    ) -> Result<bool, EngineError> {
        by.may(Action::ReadAudit)?;
        let mut tx = self.store().read().await?;
        load_break(tx.as_mut(), break_id).await?;
        Ok(break_entries(tx.as_mut(), break_id).await?.iter().any(|e| {
            e.kind == "gateway.session_ended"
                && e.payload.get("session").and_then(|s| s.as_str()) == Some(session_id)
        }))
    }

    /// A page of one of `break_id`'s gateway sessions: at most `limit` statements in order
    /// from position `from_seq` on, and where the next page starts when there are more.
    pub async fn session_statements(
        &self,
        by: &Actor,
        break_id: &str,
        session_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<StatementPage, EngineError> {
        by.may(Action::ReadAudit)?;
        let mut tx = self.store().read().await?;
        load_break(tx.as_mut(), break_id).await?;
        let mut statements: Vec<StatementRecord> = Vec::new();
        let mut from = from_seq;
        // One more than asked for tells whether there is a next page.
        while statements.len() <= limit {
            let mut page = tx
                .session_statements(session_id, from, STATEMENT_PAGE)
                .await?;
            if page.first().is_some_and(|s| s.break_id != break_id) {
                return Err(EngineError::not_found(
                    "gateway session of this break",
                    session_id,
                ));
            }
            let Some(next) = page.last().map(|s| s.seq.saturating_add(1)) else {
                break;
            };
            page.truncate(limit + 1 - statements.len());
            statements.append(&mut page);
            if next <= from {
                break; // positions that do not go forward: not read again
            }
            from = next;
        }
        let next_seq = (statements.len() > limit).then(|| statements[limit].seq);
        statements.truncate(limit);
        Ok(StatementPage {
            statements,
            next_seq,
        })
    }
}

/// Chunks read per query for a page of a session's statements.
const STATEMENT_PAGE: u32 = 4;

/// The statements stored for `session` of `break_id`, counted and digested a page at a
/// time (the digest [`recording_digest`] would give of them all).
async fn digest_stored(
    tx: &mut dyn crate::ports::Tx,
    break_id: &str,
    session: &str,
) -> Result<(u64, String), EngineError> {
    let (mut recorded, mut digest, mut from) = (0u64, Sha256::new(), 0u64);
    loop {
        let page = tx.session_statements(session, from, DIGEST_PAGE).await?;
        let Some(last) = page.last() else { break };
        if last.break_id != break_id {
            break; // another break's session of that name is not this one's recording
        }
        let next = last.seq.saturating_add(1);
        recorded += page.len() as u64;
        digest_lines(&mut digest, &page);
        if next <= from {
            // Stored positions that do not go forward: not read again (the digest then no
            // longer matches, which is reported).
            break;
        }
        from = next;
    }
    Ok((recorded, hex::encode(digest.finalize())))
}

/// A page of a gateway session's statements.
#[derive(Debug, Clone)]
pub struct StatementPage {
    /// The statements, in order.
    pub statements: Vec<StatementRecord>,
    /// Where the next page starts (`from_seq`), when there are more.
    pub next_seq: Option<u64>,
}

/// A gateway session open now ([`Engine::open_gateway_sessions`]).
#[derive(Debug, Clone)]
pub struct OpenSession {
    /// Break.
    pub break_id: String,
    /// Its procedure.
    pub procedure: String,
    /// The break's requester (who the session runs for).
    pub requester: String,
    /// Session id.
    pub session_id: String,
    /// Client address.
    pub peer: String,
    /// When the gateway admitted it.
    pub started_at: Timestamp,
    /// The audit entry of its start.
    pub started_seq: u64,
    /// Running on this server.
    pub here: bool,
}

/// A session's start whose end is not in the entries.
struct OpenStart {
    session: String,
    peer: String,
    instance: Option<String>,
    at: Timestamp,
    seq: u64,
}

/// The session an audit entry is about.
fn session_of(e: &breakglass_audit::Entry) -> Option<&str> {
    e.payload.get("session").and_then(|s| s.as_str())
}

/// The sessions among a break's audit entries that started and have not ended.
fn open_sessions(entries: &[breakglass_audit::Entry]) -> Vec<OpenStart> {
    let ended: std::collections::HashSet<&str> = entries
        .iter()
        .filter(|e| e.kind == "gateway.session_ended")
        .filter_map(session_of)
        .collect();
    entries
        .iter()
        .filter(|e| e.kind == "gateway.session_started")
        .filter_map(|e| {
            let session = session_of(e)?;
            let text = |k: &str| e.payload.get(k).and_then(|s| s.as_str()).map(str::to_owned);
            (!ended.contains(session)).then(|| OpenStart {
                session: session.to_owned(),
                peer: text("peer").unwrap_or_default(),
                instance: text("instance"),
                at: Timestamp(e.time_ms),
                seq: e.seq,
            })
        })
        .collect()
}

/// One gateway session of a break, from its audit entries.
#[derive(Debug, Clone)]
pub struct RecordedSession {
    /// Session id.
    pub session_id: String,
    /// Client address.
    pub peer: String,
    /// When the gateway admitted it.
    pub started_at: Timestamp,
    /// The audit entry of its start (`gateway.session_started`); that of its end when its
    /// start is older than what was read.
    pub started_seq: u64,
    /// Its end, once recorded.
    pub ended: Option<SessionEnd>,
}

/// The recorded end of a gateway session.
#[derive(Debug, Clone)]
pub struct SessionEnd {
    /// When.
    pub at: Timestamp,
    /// Why (`client`, `deadline`, `closed`, `idle`, `server`, `error: …`).
    pub end: String,
    /// Statements the gateway counted.
    pub statements: u64,
    /// Statements found in the store for it.
    pub recorded: u64,
    /// Whether the stored statements match the digest in the audit entry.
    pub intact: bool,
    /// The audit entry's sequence number.
    pub audit_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Session ends are counted by their word; errors by their kind.
    #[test]
    fn session_ends_are_counted_by_how_they_ended() {
        let ends = SessionEnds::default();
        for end in [
            "client",
            "client",
            "terminated",
            "error: connection reset",
            "protocol error: message too long",
            "deadline",
        ] {
            ends.count(end);
        }
        let all: Vec<(&str, u64)> = ends.all().collect();
        assert_eq!(
            all,
            [
                ("client", 2),
                ("server", 0),
                ("deadline", 1),
                ("closed", 0),
                ("idle", 0),
                ("terminated", 1),
                ("protocol_error", 1),
                ("error", 1)
            ]
        );
    }

    /// Reading newest first a page at a time gets every entry once, whatever the page size
    /// (a full last page costs one empty read more).
    #[test]
    fn paging_back_reads_every_entry_once() {
        let stored: Vec<u64> = (1..=23).map(|n| n * 3).collect();
        for page in [1i64, 2, 5, 22, 23, 24, 1000] {
            let mut all = Vec::new();
            let mut before = u64::MAX;
            let mut reads = 0;
            loop {
                reads += 1;
                let got: Vec<u64> = stored
                    .iter()
                    .rev()
                    .filter(|s| **s < before)
                    .take(usize::try_from(page).unwrap())
                    .copied()
                    .collect();
                if !page_back(&mut all, got, page, |s| *s, &mut before) {
                    break;
                }
            }
            all.sort_unstable();
            assert_eq!(all, stored, "page {page}");
            let pages = stored.len().div_ceil(usize::try_from(page).unwrap());
            let extra = usize::from(stored.len().is_multiple_of(usize::try_from(page).unwrap()));
            assert_eq!(reads, pages + extra, "page {page}");
        }
    }

    /// A recording without parameters keeps the digest it had before parameters were
    /// recorded; a parameter edited in the store changes it.
    #[test]
    fn the_digest_covers_parameters_and_keeps_older_recordings_digests() {
        let mut s = StatementRecord {
            break_id: "brk_1".into(),
            session_id: "brk_1-s1".into(),
            seq: 1,
            started_at: Timestamp(1_700_000_000_000),
            duration_us: 9,
            protocol: "extended".into(),
            statement: "UPDATE t SET v = $1".into(),
            command: Some("UPDATE 1".into()),
            rows: Some(1),
            error: None,
            refused: false,
            params: None,
            data: None,
        };
        let old = {
            let mut h = Sha256::new();
            h.update(
                br#"["brk_1-s1",1,1700000000000,9,"extended","UPDATE t SET v = $1","UPDATE 1",1,null,false]"#,
            );
            h.update(b"\n");
            hex::encode(h.finalize())
        };
        assert_eq!(recording_digest(std::slice::from_ref(&s)), old);
        s.params = Some(vec![Some("a".into())]);
        let with = recording_digest(std::slice::from_ref(&s));
        assert_ne!(with, old);
        s.params = Some(vec![Some("b".into())]);
        assert_ne!(recording_digest(std::slice::from_ref(&s)), with);
        let params_only = recording_digest(std::slice::from_ref(&s));
        s.data = Some("1\tx\n".into());
        let with_data = recording_digest(std::slice::from_ref(&s));
        assert_ne!(with_data, params_only);
        s.data = Some("1\ty\n".into());
        assert_ne!(recording_digest(std::slice::from_ref(&s)), with_data);
    }
}
