//! The traits the engine needs from the outside world: a transactional `Store` and a `Clock`.
//! Adapters implement them (`breakglass-store` for SQLite and PostgreSQL); the server wires them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use breakglass_audit::{Draft, Entry, Head, SignedCheckpoint};
use breakglass_custody::{EncryptedShare, ShareCommitment};
use breakglass_domain::{Actor, Break, Procedure, Timestamp};

/// Where time comes from. Tests use `ManualClock`; nothing else reads the system time.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one sanctioned read of the system time.
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(AtomicI64::new(start.0))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// A failure of the store itself (connection lost, constraint violated, corrupt row).
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// A procedure as kept in the store.
#[derive(Debug, Clone)]
pub struct StoredProcedure {
    /// The validated procedure.
    pub procedure: Procedure,
    /// Its specification as YAML (what `show` prints and what is re-validated on load).
    pub spec_yaml: String,
    /// SHA-256 of the file it was applied from.
    pub content_hash: String,
    /// The file name it was applied from.
    pub source: String,
    /// Incremented on every change.
    pub version: i64,
    /// When it was last changed.
    pub updated_at: Timestamp,
    /// The current seal, if sealed.
    pub seal_id: Option<String>,
    /// Why the procedure is not ready until re-sealed, if it is tainted.
    pub taint: Option<Taint>,
}

/// Why a procedure is tainted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// What happened, in words.
    pub reason: String,
    /// The break that caused it, if one did.
    pub break_id: Option<String>,
    /// Whether the secret itself was revealed (re-seal then needs a new secret).
    pub secret_revealed: bool,
}

/// A sealed credential as kept in the store: ciphertexts and commitments only.
#[derive(Debug, Clone)]
pub struct StoredSeal {
    /// Identifier.
    pub seal_id: String,
    /// Procedure sealed.
    pub procedure: String,
    /// Shares needed.
    pub threshold: u8,
    /// AEAD ciphertext of the secret under the data key.
    pub ciphertext: Vec<u8>,
    /// One commitment per share.
    pub commitments: Vec<ShareCommitment>,
    /// One age file per custodian.
    pub shares: Vec<EncryptedShare>,
    /// Argon2id fingerprint of the secret, to refuse re-sealing a revealed secret.
    pub secret_fingerprint: Vec<u8>,
    /// Salt of that fingerprint.
    pub fingerprint_salt: Vec<u8>,
    /// When it was sealed.
    pub created_at: Timestamp,
}

/// An actor as kept in the store.
#[derive(Debug, Clone)]
pub struct StoredActor {
    /// The actor.
    pub actor: Actor,
    /// SHA-256 (hex) of its API token, for machines.
    pub token_hash: Option<String>,
    /// Contact, for custodians.
    pub contact: String,
}

/// A delivery waiting in the outbox, committed with the audit entry it belongs to.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    /// Index into the drafts of the same commit that this item belongs to.
    pub draft: usize,
    /// Destination: `channel:NAME` for alerts, `sink:NAME` for audit sinks.
    pub destination: String,
    /// What to deliver (no secrets).
    pub payload: serde_json::Value,
}

/// An outbox row as stored.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// Audit sequence number of the event.
    pub seq: u64,
    /// Destination.
    pub destination: String,
    /// Payload.
    pub payload: serde_json::Value,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// When it was delivered, if it was.
    pub delivered_at: Option<Timestamp>,
}

/// Whether a break's alert was acknowledged, and by when it must be.
#[derive(Debug, Clone, PartialEq)]
pub struct AckState {
    /// Break.
    pub break_id: String,
    /// Procedure.
    pub procedure: String,
    /// When the break was requested.
    pub requested_at: Timestamp,
    /// Escalate after this instant without an acknowledgement (none: never escalates).
    pub ack_deadline: Option<Timestamp>,
    /// When a human acknowledged.
    pub acked_at: Option<Timestamp>,
    /// Who (as they gave it).
    pub acked_by: Option<String>,
    /// When it escalated.
    pub escalated_at: Option<Timestamp>,
}

/// One recorded delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// Outbox row.
    pub outbox_id: i64,
    /// Destination.
    pub destination: String,
    /// When.
    pub at: Timestamp,
    /// Whether the receiver accepted it.
    pub ok: bool,
    /// The receiver's answer, or the failure's kind.
    pub status: String,
    /// Milliseconds to the answer.
    pub latency_ms: Option<i64>,
    /// Why it failed (no secrets).
    pub error: Option<String>,
}

/// A channel's latest test.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelTest {
    /// Channel.
    pub channel: String,
    /// When.
    pub at: Timestamp,
    /// Whether a receipt came back.
    pub ok: bool,
    /// The receiver's answer.
    pub status: String,
    /// Milliseconds to the receipt.
    pub latency_ms: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone)]
pub enum DeliveryAttempt {
    /// Delivered.
    Delivered {
        /// When.
        at: Timestamp,
    },
    /// Failed; retry at `retry_at`.
    Failed {
        /// When.
        at: Timestamp,
        /// Next attempt.
        retry_at: Timestamp,
        /// Why (no secrets).
        error: String,
    },
}

/// A grant issued on a target, kept until the target confirms it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantRecord {
    /// Break.
    pub break_id: String,
    /// Procedure.
    pub procedure: String,
    /// Target kind (`postgres`, `mariadb`, `ssh`, `http`).
    pub kind: String,
    /// The adapter's non-secret handle (role name, certificate serial…).
    pub handle: serde_json::Value,
    /// When it was issued.
    pub created_at: Timestamp,
    /// The grant's deadline.
    pub deadline: Timestamp,
    /// When the break ended and the target was asked to end the grant.
    pub end_requested_at: Option<Timestamp>,
    /// Why it ends: `expired`, `closed`, `abandoned`.
    pub end_cause: Option<String>,
    /// When the target confirmed the end.
    pub ended_at: Option<Timestamp>,
    /// Failed attempts to end it.
    pub end_attempts: i64,
    /// Earliest next attempt after a failure.
    pub next_attempt_at: Option<Timestamp>,
    /// Why the last attempt failed (no secrets).
    pub last_error: Option<String>,
}

/// One statement a gateway session ran (or refused), as recorded by the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementRecord {
    /// Break the session belongs to.
    pub break_id: String,
    /// Gateway session id (one client connection).
    pub session_id: String,
    /// Position in the session, from 1.
    pub seq: u64,
    /// When the client sent it (milliseconds since the epoch).
    pub started_at: Timestamp,
    /// From the client's message to the server's answer, in microseconds.
    pub duration_us: u64,
    /// `simple` (Query), `extended` (Parse/Bind/Execute) or `function` (FunctionCall).
    pub protocol: String,
    /// The statement text as the client sent it.
    pub statement: String,
    /// The values bound to its parameters (extended protocol), in text form (`None`: NULL):
    /// text-format values as sent, binary ones decoded when their type is a common one, else
    /// `\x` and hex; each cut at 1 KiB. `None` when it had none.
    pub params: Option<Vec<Option<String>>>,
    /// The data a `COPY … FROM STDIN` sent: its first 64 KiB as text (in binary format, `\x`
    /// and hex of its first 32 KiB), then `… (N bytes)` when there was more.
    pub data: Option<String>,
    /// The server's command tag (`SELECT 1`, `UPDATE 3`…), when it completed.
    pub command: Option<String>,
    /// Rows returned or affected, when the command tag says.
    pub rows: Option<u64>,
    /// The server's error (SQLSTATE and message), or why the gateway refused it.
    pub error: Option<String>,
    /// The gateway refused it (a procedure's `refuse` pattern); it never reached the target.
    pub refused: bool,
}

impl StatementRecord {
    /// Appends this statement as one JSON line (with its newline) of a session chunk:
    /// `[session, seq, started_at_ms, duration_us, protocol, statement, command, rows, error,
    /// refused]`, and its parameters last when it has any (see [`StatementLine`]).
    pub fn write_line(&self, out: &mut String) {
        self.line().write(out);
    }

    /// This statement as a line to write.
    pub fn line(&self) -> StatementLine<'_> {
        StatementLine {
            session_id: &self.session_id,
            seq: self.seq,
            started_at: self.started_at,
            duration_us: self.duration_us,
            protocol: &self.protocol,
            statement: &self.statement,
            params: self.params.as_deref(),
            data: self.data.as_deref(),
            command: self.command.as_deref(),
            rows: self.rows,
            error: self.error.as_deref(),
            refused: self.refused,
        }
    }

    /// Its parameters for people: `$1 = 'bulk', $2 = NULL` (quotes doubled inside a value,
    /// as in SQL); empty when it has none.
    pub fn params_text(&self) -> String {
        params_text(self.params.as_deref().unwrap_or_default())
    }

    /// Reads one line written by [`StatementRecord::write_line`] (without its newline); the
    /// error names the field that is missing or of the wrong type. The evidence pack's verifier
    /// reads the lines with the same parser ([`breakglass_audit::evidence::RecordedStatement`]).
    pub fn from_line(break_id: &str, line: &str) -> Result<StatementRecord, String> {
        let s = breakglass_audit::evidence::RecordedStatement::parse(line)?;
        Ok(StatementRecord {
            break_id: break_id.to_owned(),
            session_id: s.session,
            seq: s.seq,
            started_at: Timestamp(s.started_at_ms),
            duration_us: s.duration_us,
            protocol: s.protocol,
            statement: s.statement,
            command: s.command,
            rows: s.rows,
            error: s.error,
            refused: s.refused,
            params: s.params,
            data: s.data,
        })
    }
}

pub use breakglass_audit::evidence::params_text;

/// A statement's recording line, borrowed from wherever its fields are: the gateway writes
/// its statements' lines straight from what it followed, without building a
/// [`StatementRecord`] (an owned break and session id) per statement.
#[derive(Debug, Clone, Copy)]
pub struct StatementLine<'a> {
    /// Gateway session id.
    pub session_id: &'a str,
    /// Position in the session, from 1.
    pub seq: u64,
    /// When the client sent it.
    pub started_at: Timestamp,
    /// From the client's message to the server's answer, in microseconds.
    pub duration_us: u64,
    /// `simple`, `extended` or `function` (a fast-path function call).
    pub protocol: &'a str,
    /// The statement text.
    pub statement: &'a str,
    /// The values bound to its parameters, when it had any.
    pub params: Option<&'a [Option<String>]>,
    /// A `COPY … FROM STDIN`'s data.
    pub data: Option<&'a str>,
    /// The server's command tag.
    pub command: Option<&'a str>,
    /// Rows returned or affected.
    pub rows: Option<u64>,
    /// The server's error, or why the gateway refused it.
    pub error: Option<&'a str>,
    /// Refused by the gateway.
    pub refused: bool,
}

impl StatementLine<'_> {
    /// Appends the line, with its newline, to `out`: a JSON array
    /// `[session, seq, started_at_ms, duration_us, protocol, statement, command, rows, error,
    /// refused]`, with the parameters as an eleventh element when there are any and a
    /// COPY's data as a twelfth (the eleventh then `null` when it had no parameters); read
    /// back by [`StatementRecord::from_line`].
    pub fn write(&self, out: &mut String) {
        let (a, b, c, d, e) = (
            self.session_id,
            self.seq,
            self.started_at.0,
            self.duration_us,
            self.protocol,
        );
        let (f, g, h, i, j) = (
            self.statement,
            self.command,
            self.rows,
            self.error,
            self.refused,
        );
        match (self.params, self.data) {
            (None, None) => Self::write_fields(&(a, b, c, d, e, f, g, h, i, j), out),
            (Some(params), None) => {
                Self::write_fields(&(a, b, c, d, e, f, g, h, i, j, params), out);
            }
            (params, Some(data)) => {
                Self::write_fields(&(a, b, c, d, e, f, g, h, i, j, params, data), out);
            }
        }
    }

    fn write_fields(fields: &impl serde::Serialize, out: &mut String) {
        // Serialized into a buffer kept by the thread (no allocation per line: a busy gateway
        // records thousands a second), checked as UTF-8 once and appended; serde_json writes
        // valid UTF-8, so the check does not fail, and if it did the line would still be
        // written (rendered whole).
        LINE.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            match serde_json::to_writer(&mut *buf, &fields)
                .ok()
                .and_then(|()| std::str::from_utf8(&buf).ok())
            {
                Some(line) => out.push_str(line),
                None => out.push_str(&serde_json::to_string(&fields).unwrap_or_default()),
            }
            if buf.capacity() > 64 * 1024 {
                *buf = Vec::new();
            }
        });
        out.push('\n');
    }
}

thread_local! {
    /// The buffer [`StatementLine::write`] renders a line into.
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Consecutive statements of one gateway session, stored as one row: their lines (see
/// [`StatementRecord::write_line`]) in order. The gateway fills one per session as statements
/// finish and hands it over every 100 ms or so, so a statement costs no channel message, no
/// cross-thread allocation and no row of its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatementChunk {
    /// Break the session belongs to.
    pub break_id: String,
    /// Gateway session id.
    pub session_id: String,
    /// `seq` of the first statement.
    pub first_seq: u64,
    /// Statements in `body`.
    pub count: u64,
    /// One line per statement.
    pub body: String,
}

impl StatementChunk {
    /// An empty chunk of a session.
    pub fn new(break_id: &str, session_id: &str) -> StatementChunk {
        StatementChunk {
            break_id: break_id.to_owned(),
            session_id: session_id.to_owned(),
            ..StatementChunk::default()
        }
    }

    /// Appends a statement of this chunk's session.
    pub fn push(&mut self, s: &StatementRecord) {
        self.push_line(&s.line());
    }

    /// Appends a statement of this chunk's session, from its borrowed fields.
    pub fn push_line(&mut self, line: &StatementLine<'_>) {
        if self.count == 0 {
            self.first_seq = line.seq;
        }
        line.write(&mut self.body);
        self.count += 1;
    }

    /// Whether it holds no statement.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The statements so far, leaving this chunk empty for the session's next ones; `None`
    /// when there are none.
    pub fn take(&mut self) -> Option<StatementChunk> {
        if self.is_empty() {
            return None;
        }
        let next = StatementChunk::new(&self.break_id, &self.session_id);
        Some(std::mem::replace(self, next))
    }

    /// Statements grouped into one chunk per session (in their order).
    pub fn group(statements: &[StatementRecord]) -> Vec<StatementChunk> {
        let mut chunks: Vec<StatementChunk> = Vec::new();
        let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for s in statements {
            let i = *at.entry(&s.session_id).or_insert_with(|| {
                chunks.push(StatementChunk::new(&s.break_id, &s.session_id));
                chunks.len() - 1
            });
            chunks[i].push(s);
        }
        chunks
    }

    /// The statements of a stored chunk body; the error names the line.
    pub fn statements(break_id: &str, body: &str) -> Result<Vec<StatementRecord>, String> {
        body.lines()
            .enumerate()
            .map(|(i, line)| {
                StatementRecord::from_line(break_id, line)
                    .map_err(|e| format!("line {}: {e}", i + 1))
            })
            .collect()
    }
}

/// The latest health check or discovery of a procedure's target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetReport {
    /// Procedure.
    pub procedure: String,
    /// `check` or `discover`.
    pub kind: String,
    /// When.
    pub at: Timestamp,
    /// Whether everything passed (check) or nothing was flagged (discover).
    pub ok: bool,
    /// The report's lines, as JSON (no secrets).
    pub detail: serde_json::Value,
}

/// Which audit entries a query is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAbout<'a> {
    /// Every entry.
    All,
    /// Entries naming this procedure.
    Procedure(&'a str),
    /// Entries naming this break.
    Break(&'a str),
}

/// What is known of one custodian key: when its holder last proved they hold it, and whether
/// it was declared lost.
#[derive(Debug, Clone, PartialEq)]
pub struct AttestationRecord {
    /// Custodian name.
    pub custodian: String,
    /// Fingerprint of the key (`CustodianKey::fingerprint`).
    pub key_fingerprint: String,
    /// Latest successful attestation.
    pub attested_at: Option<Timestamp>,
    /// When the key was declared lost.
    pub lost_at: Option<Timestamp>,
    /// Why (no secrets).
    pub lost_reason: Option<String>,
}

/// A custodian's TOTP enrolment: the secret (encrypted under the server's TOTP key), whether
/// it was confirmed, the last accepted time step (a code is accepted once) and the count of
/// recent wrong codes that throttles guessing.
#[derive(Clone, PartialEq)]
pub struct TotpRecord {
    /// Custodian (actor) name.
    pub custodian: String,
    /// `nonce || ChaCha20-Poly1305(secret)` under the server's TOTP key, bound to the custodian.
    pub sealed_secret: Vec<u8>,
    /// Confirmed with a valid code: approvals need a code from now on.
    pub active: bool,
    /// When the enrolment started.
    pub created_at: Timestamp,
    /// When it was confirmed.
    pub confirmed_at: Option<Timestamp>,
    /// The last accepted time step (Unix seconds / 30); any step at or before it is refused.
    pub last_step: Option<i64>,
    /// Wrong codes since `failure_window_start`.
    pub failures: i64,
    /// Start of the current counting window of wrong codes.
    pub failure_window_start: Option<Timestamp>,
    /// Codes are refused until then (too many wrong ones).
    pub locked_until: Option<Timestamp>,
}

impl std::fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpRecord")
            .field("custodian", &self.custodian)
            .field("sealed_secret", &"[REDACTED]")
            .field("active", &self.active)
            .field("created_at", &self.created_at)
            .field("confirmed_at", &self.confirmed_at)
            .field("last_step", &self.last_step)
            .field("failures", &self.failures)
            .field("failure_window_start", &self.failure_window_start)
            .field("locked_until", &self.locked_until)
            .finish()
    }
}

/// One drill: what was asked, and (once finished) its outcome and report.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillRecord {
    /// Identifier (`drl_…`).
    pub id: String,
    /// Procedure drilled.
    pub procedure: String,
    /// `automated` or `live`.
    pub mode: String,
    /// Injected failures as written (`channel-down:slack`, `target-down`…).
    pub injections: Vec<String>,
    /// Who started it (`scheduler` for scheduled drills).
    pub requested_by: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
    /// `running`, `passed` or `failed`.
    pub outcome: String,
    /// The break it opened.
    pub break_id: Option<String>,
    /// SHA-256 of the procedure file at the time (a later change is untested).
    pub content_hash: String,
    /// Request to first successful login (automated) or to grant (live), in milliseconds.
    pub time_to_access_ms: Option<i64>,
    /// The timeline and checks, as JSON (no secrets): `{"steps": [...], "checks": [...]}`.
    pub report: serde_json::Value,
}

/// An automatic export of a procedure's recovery kit (`serve --recovery-kit-dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KitExport {
    /// Procedure.
    pub procedure: String,
    /// The seal the kit holds.
    pub seal_id: String,
    /// The kit's id.
    pub kit_id: String,
    /// Where it was written.
    pub location: String,
    /// When.
    pub exported_at: Timestamp,
}

/// An imported recovery spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolImport {
    /// The spool's head hash (its last line's hash).
    pub spool_head: String,
    /// Procedure.
    pub procedure: String,
    /// The kit the recovery used.
    pub kit_id: String,
    /// How many spool lines it held.
    pub lines: u64,
    /// Who imported it.
    pub imported_by: String,
    /// When.
    pub imported_at: Timestamp,
}

/// The store: transactions over procedures, seals, breaks, actors and the audit log.
#[async_trait]
pub trait Store: Send + Sync {
    /// Begins a write transaction. Write transactions are serialized (SQLite `BEGIN IMMEDIATE`,
    /// PostgreSQL locks the audit head row), so the audit chain never forks.
    async fn begin(&self) -> StoreResult<Box<dyn Tx>>;
    /// Begins a read-only transaction (never commits).
    async fn read(&self) -> StoreResult<Box<dyn Tx>>;
    /// Which backend this is (`sqlite` or `postgres`).
    fn backend(&self) -> &'static str;
    /// Takes or renews the lease `name` for `holder` for `ttl`: `true` when `holder` holds it
    /// now (it was free, expired, or already its own). Background jobs run only under their
    /// lease, so several servers on one database run each job once; a lease whose holder
    /// died is taken over once it expires. (A store only one server can open holds every
    /// lease.)
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> StoreResult<bool>;
    /// Gives a lease up (clean shutdown), so another server takes it over at once.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()>;
    /// Whether lease `name` is held (by anyone) and not expired.
    async fn lease_alive(&self, name: &str) -> StoreResult<bool>;
    /// The server holding a break's accepted shares until the quorum: `(instance, url)`.
    async fn share_holder(&self, break_id: &str) -> StoreResult<Option<(String, String)>>;
    /// Records (or replaces) the server holding a break's accepted shares; `None` clears it.
    async fn put_share_holder(
        &self,
        break_id: &str,
        holder: Option<(&str, &str)>,
    ) -> StoreResult<()>;
    /// The address the other servers reach server `instance`'s gateway at, and whether that
    /// gateway asks for TLS (`None`: it registered none). Servers sharing a store relay a
    /// gateway client that arrived at a server not holding its break's login to the holder.
    /// (A store only one server can open has no other server: always `None`.)
    async fn instance_gateway(&self, instance: &str) -> StoreResult<Option<(String, bool)>>;
    /// Records (or replaces) where server `instance`'s gateway is reached by the others.
    async fn put_instance_gateway(
        &self,
        instance: &str,
        address: &str,
        tls: bool,
    ) -> StoreResult<()>;
    /// Every server's registered gateway: `(instance, address, tls)`, this server's too. The
    /// gateway trusts the client address another server's gateway passes on only from these
    /// addresses. (A store only one server can open: always empty.)
    async fn instance_gateways(&self) -> StoreResult<Vec<(String, String, bool)>>;
    /// Records that server `instance`'s gateway gave a client cancellation key `pid` (never
    /// the key's secret half), until `expires_at` at the latest. `false` when a row not
    /// expired at `now` already holds `pid` (the caller picks another); an expired one is
    /// replaced. A store only one server can open keeps nothing: always `true`.
    async fn put_cancel_key(
        &self,
        pid: i32,
        instance: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Forgets cancellation key `pid` of server `instance` (its session ended), and every key
    /// expired at `now` (of servers that died with sessions open).
    async fn delete_cancel_key(&self, pid: i32, instance: &str, now: Timestamp) -> StoreResult<()>;
    /// The server that gave cancellation key `pid` (not expired at `now`) and where its
    /// gateway is reached: `(instance, address, tls)`; `None` when no server registered it,
    /// or the server registered no gateway address.
    async fn cancel_key_gateway(
        &self,
        pid: i32,
        now: Timestamp,
    ) -> StoreResult<Option<(String, String, bool)>>;
    /// Takes procedure `id`'s lock, which a credential rotation holds from its start to its
    /// promotion and opening or approving a break holds briefly, on every server sharing this
    /// store (PostgreSQL: a session advisory lock on a connection held with the lock, so a
    /// server that dies releases it with its connection). Waits at most `wait`; `None` when
    /// the lock is still held by then. Dropping the returned lock releases it.
    async fn lock_procedure(
        &self,
        id: &str,
        wait: std::time::Duration,
    ) -> StoreResult<Option<ProcedureLock>>;
}

/// A procedure's lock (see [`Store::lock_procedure`]); dropping it releases the lock.
#[must_use = "the lock is released as soon as it is dropped"]
pub struct ProcedureLock {
    /// Whatever the store holds while the lock is held (it releases on drop).
    _held: Box<dyn Send>,
}

impl ProcedureLock {
    /// A lock that lasts as long as `held` does: the store releases it in `held`'s `Drop`.
    pub fn new(held: impl Send + 'static) -> ProcedureLock {
        ProcedureLock {
            _held: Box::new(held),
        }
    }
}

impl std::fmt::Debug for ProcedureLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcedureLock")
    }
}

/// One transaction. Dropping it without `commit` rolls it back. `commit` is the only way to
/// make changes durable and it always appends at least one audit entry.
#[async_trait]
pub trait Tx: Send {
    /// A procedure by id.
    async fn procedure(&mut self, id: &str) -> StoreResult<Option<StoredProcedure>>;
    /// Every procedure, ordered by id.
    async fn procedures(&mut self) -> StoreResult<Vec<StoredProcedure>>;
    /// Inserts or replaces a procedure.
    async fn put_procedure(&mut self, p: &StoredProcedure) -> StoreResult<()>;
    /// A seal by id.
    async fn seal(&mut self, seal_id: &str) -> StoreResult<Option<StoredSeal>>;
    /// Inserts a seal (seals are never modified).
    async fn insert_seal(&mut self, s: &StoredSeal) -> StoreResult<()>;
    /// A break by id.
    async fn break_(&mut self, id: &str) -> StoreResult<Option<Break>>;
    /// Breaks, newest first, optionally of one procedure, at most `limit`.
    async fn breaks(&mut self, procedure: Option<&str>, limit: i64) -> StoreResult<Vec<Break>>;
    /// Breaks whose deadline (grant or approval window) is at or before `now`.
    async fn due_breaks(&mut self, now: Timestamp) -> StoreResult<Vec<Break>>;
    /// Breaks that ended at or after `since`, the latest ended first.
    async fn breaks_ended_since(&mut self, since: Timestamp) -> StoreResult<Vec<Break>>;
    /// Requested breaks that have at least one approval.
    async fn requested_with_approvals(&mut self) -> StoreResult<Vec<Break>>;
    /// Inserts or replaces a break.
    async fn put_break(&mut self, b: &Break) -> StoreResult<()>;
    /// Stores the grant's payload for the requester (an age file encrypted to their key).
    async fn put_grant_payload(&mut self, break_id: &str, payload: &[u8]) -> StoreResult<()>;
    /// Removes and returns the grant's payload.
    async fn take_grant_payload(&mut self, break_id: &str) -> StoreResult<Option<Vec<u8>>>;
    /// An actor by name.
    async fn actor(&mut self, name: &str) -> StoreResult<Option<StoredActor>>;
    /// The actor holding this API token hash.
    async fn actor_by_token(&mut self, token_hash: &str) -> StoreResult<Option<StoredActor>>;
    /// Every actor, by name.
    async fn actors(&mut self) -> StoreResult<Vec<StoredActor>>;
    /// Inserts or replaces an actor.
    async fn put_actor(&mut self, a: &StoredActor) -> StoreResult<()>;
    /// The newest audit entry's sequence and hash.
    async fn audit_head(&mut self) -> StoreResult<Option<Head>>;
    /// Audit entries with `seq >= from`, ascending, at most `limit`.
    async fn audit_entries(&mut self, from: u64, limit: i64) -> StoreResult<Vec<Entry>>;
    /// Audit entries about one procedure or one break (or every entry when both are `None`),
    /// with `seq < before`, newest first, at most `limit` (the web UI's audit pages).
    async fn audit_entries_about(
        &mut self,
        about: AuditAbout<'_>,
        before: u64,
        limit: i64,
    ) -> StoreResult<Vec<Entry>>;
    /// Outbox rows not yet delivered, oldest first.
    async fn pending_outbox(&mut self, limit: i64) -> StoreResult<Vec<OutboxRow>>;
    /// Outbox rows of one destination not yet delivered and due at `now`, oldest first.
    async fn due_outbox(
        &mut self,
        destination: &str,
        now: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<OutboxRow>>;
    /// Per destination: undelivered rows and the creation time of the oldest.
    async fn outbox_lag(&mut self) -> StoreResult<Vec<(String, i64, Option<Timestamp>)>>;
    /// Entries announcing or rotating audit keys, ascending.
    async fn audit_key_events(&mut self) -> StoreResult<Vec<Entry>>;
    /// Every checkpoint, in the order they were made.
    async fn checkpoints(&mut self) -> StoreResult<Vec<SignedCheckpoint>>;
    /// The newest checkpoint.
    async fn latest_checkpoint(&mut self) -> StoreResult<Option<SignedCheckpoint>>;
    /// One checkpoint.
    async fn checkpoint(&mut self, seq: u64, key_id: &str)
    -> StoreResult<Option<SignedCheckpoint>>;
    /// Records a delivery attempt of an outbox row. Outbox bookkeeping is the one write that
    /// carries no audit entry of its own: it records the delivery of one.
    async fn mark_outbox(&mut self, id: i64, attempt: &DeliveryAttempt) -> StoreResult<bool>;
    /// The acknowledgement state of a break's alerts.
    async fn ack(&mut self, break_id: &str) -> StoreResult<Option<AckState>>;
    /// Inserts or replaces an acknowledgement state.
    async fn put_ack(&mut self, ack: &AckState) -> StoreResult<()>;
    /// Acknowledgements past their deadline, neither acknowledged nor escalated.
    async fn due_escalations(&mut self, now: Timestamp) -> StoreResult<Vec<AckState>>;
    /// Records one delivery attempt.
    async fn record_attempt(&mut self, attempt: &AttemptRecord) -> StoreResult<()>;
    /// The newest delivery attempts, optionally of one destination.
    async fn attempts(
        &mut self,
        destination: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<AttemptRecord>>;
    /// Stores a channel's latest test result.
    async fn put_channel_test(&mut self, test: &ChannelTest) -> StoreResult<()>;
    /// Every channel's latest test result.
    async fn channel_tests(&mut self) -> StoreResult<Vec<ChannelTest>>;
    /// Inserts or replaces a grant record.
    async fn put_grant(&mut self, g: &GrantRecord) -> StoreResult<()>;
    /// The grant record of a break.
    async fn grant(&mut self, break_id: &str) -> StoreResult<Option<GrantRecord>>;
    /// Grants whose end was requested, not yet confirmed, and due for an attempt at `now`.
    async fn grants_to_end(&mut self, now: Timestamp) -> StoreResult<Vec<GrantRecord>>;
    /// Stores a procedure's latest target report of its kind.
    async fn put_target_report(&mut self, r: &TargetReport) -> StoreResult<()>;
    /// The latest target reports, optionally of one procedure.
    async fn target_reports(&mut self, procedure: Option<&str>) -> StoreResult<Vec<TargetReport>>;
    /// Inserts or replaces what is known of a custodian key.
    async fn put_attestation(&mut self, a: &AttestationRecord) -> StoreResult<()>;
    /// Every custodian key record.
    async fn attestations(&mut self) -> StoreResult<Vec<AttestationRecord>>;
    /// A custodian's TOTP enrolment.
    async fn totp(&mut self, custodian: &str) -> StoreResult<Option<TotpRecord>>;
    /// Inserts or replaces a custodian's TOTP enrolment.
    async fn put_totp(&mut self, r: &TotpRecord) -> StoreResult<()>;
    /// Removes a custodian's TOTP enrolment; whether there was one.
    async fn delete_totp(&mut self, custodian: &str) -> StoreResult<bool>;
    /// Every TOTP enrolment, by custodian.
    async fn totp_records(&mut self) -> StoreResult<Vec<TotpRecord>>;
    /// Records `step` as the custodian's last accepted TOTP step and clears the failure count,
    /// only if the enrolment is active and `step` is after the stored one. `false`: the step
    /// was already used (or the enrolment is gone); the caller refuses the code.
    async fn advance_totp_step(&mut self, custodian: &str, step: i64) -> StoreResult<bool>;
    /// Inserts or replaces a drill.
    async fn put_drill(&mut self, d: &DrillRecord) -> StoreResult<()>;
    /// One drill.
    async fn drill(&mut self, id: &str) -> StoreResult<Option<DrillRecord>>;
    /// Drills, newest first, optionally of one procedure, at most `limit`.
    async fn drills(
        &mut self,
        procedure: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<DrillRecord>>;
    /// The latest finished drill of every procedure that has one.
    async fn latest_drills(&mut self) -> StoreResult<Vec<DrillRecord>>;
    /// The seal of a procedure's drill credential, if one was sealed.
    async fn drill_seal(&mut self, procedure: &str) -> StoreResult<Option<String>>;
    /// Makes `seal_id` the procedure's drill seal.
    async fn put_drill_seal(
        &mut self,
        procedure: &str,
        seal_id: &str,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// When a named schedule (`drill:PROCEDURE`, `attest:CUSTODIAN`) last ran.
    async fn schedule_run(&mut self, name: &str) -> StoreResult<Option<Timestamp>>;
    /// Records that a named schedule ran.
    async fn put_schedule_run(&mut self, name: &str, at: Timestamp) -> StoreResult<()>;
    /// Stores a session (the SHA-256 of its token), dropping expired ones.
    async fn put_session(
        &mut self,
        token_hash: &str,
        actor: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// The actor of a session not expired at `now`.
    async fn session_actor(
        &mut self,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<String>>;
    /// Removes a session; returns its actor when it existed.
    async fn take_session(&mut self, token_hash: &str) -> StoreResult<Option<String>>;
    /// Stores a sign-in challenge: `kind` `signature` (`expected`: the message to sign) or
    /// `decrypt` (`expected`: SHA-256 of the plaintext). Drops expired ones.
    async fn put_challenge(
        &mut self,
        id: &str,
        actor: &str,
        kind: &str,
        expected: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Removes a challenge (single use): `(actor, kind, expected, expires_at)`.
    async fn take_challenge(
        &mut self,
        id: &str,
    ) -> StoreResult<Option<(String, String, String, Timestamp)>>;
    /// Appends chunks of statements recorded by the gateway (committed with
    /// `commit_bookkeeping`; the session's audit entries carry their count and digest). A chunk
    /// already stored (same session and first position) is left as it is.
    async fn put_statement_chunks(&mut self, chunks: &[StatementChunk]) -> StoreResult<()>;
    /// A break's recorded statements, by time, session and position.
    async fn statements(&mut self, break_id: &str) -> StoreResult<Vec<StatementRecord>>;
    /// One session's recorded statements in order, a page at a time: those from position
    /// `from_seq` on in at most `max_chunks` stored chunks, the first being the chunk that holds
    /// `from_seq` (the next page starts after the last statement returned; empty at the end).
    async fn session_statements(
        &mut self,
        session_id: &str,
        from_seq: u64,
        max_chunks: u32,
    ) -> StoreResult<Vec<StatementRecord>>;
    /// The latest automatic export of a procedure's recovery kit.
    async fn recovery_kit(&mut self, procedure: &str) -> StoreResult<Option<KitExport>>;
    /// Records an automatic export of a recovery kit (replacing the procedure's previous one).
    async fn put_recovery_kit(&mut self, export: &KitExport) -> StoreResult<()>;
    /// The import of a recovery spool, by the spool's head hash.
    async fn recovery_import(&mut self, spool_head: &str) -> StoreResult<Option<SpoolImport>>;
    /// Records the import of a recovery spool; a second one with the same head is refused.
    async fn put_recovery_import(&mut self, import: &SpoolImport) -> StoreResult<()>;
    /// Inserts or replaces a run of an external-custody procedure's human steps.
    async fn put_external_run(&mut self, run: &breakglass_domain::Run) -> StoreResult<()>;
    /// One run of human steps (an external break or drill).
    async fn external_run(&mut self, id: &str) -> StoreResult<Option<breakglass_domain::Run>>;
    /// Runs of human steps, newest first; one procedure's or every one.
    async fn external_runs(
        &mut self,
        procedure: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<breakglass_domain::Run>>;
    /// Appends a holder's attestation or rotation of an externally kept credential (history:
    /// records are never changed).
    async fn insert_custody_record(
        &mut self,
        record: &breakglass_domain::CustodyRecord,
    ) -> StoreResult<()>;
    /// Attestations and rotations, oldest first; one procedure's or every one.
    async fn custody_records(
        &mut self,
        procedure: Option<&str>,
    ) -> StoreResult<Vec<breakglass_domain::CustodyRecord>>;
    /// The server holding a break's accepted shares or gateway login, read inside this write
    /// transaction: a writer that takes a break over sees the holder the previous writer
    /// committed (writers queue on the audit head), not one read before it queued.
    async fn share_holder_in(&mut self, break_id: &str) -> StoreResult<Option<(String, String)>>;
    /// Records `(instance, url)` as the holder of a break's shares or gateway login, committed
    /// with this transaction, so no other writer can take the break between the commit and
    /// the record.
    async fn set_share_holder(
        &mut self,
        break_id: &str,
        instance: &str,
        url: &str,
    ) -> StoreResult<()>;
    /// Commits outbox bookkeeping (`mark_outbox`), the one commit without an audit entry.
    async fn commit_bookkeeping(self: Box<Self>) -> StoreResult<()>;
    /// Stores a signed checkpoint with one outbox row per destination, and commits.
    async fn commit_checkpoint(
        self: Box<Self>,
        checkpoint: &SignedCheckpoint,
        destinations: &[String],
    ) -> StoreResult<()>;
    /// Appends the drafts to the audit chain, inserts the outbox items, and commits.
    async fn commit(
        self: Box<Self>,
        drafts: Vec<Draft>,
        outbox: Vec<OutboxItem>,
    ) -> StoreResult<Vec<Entry>>;
}

/// Why a sink could not take or give back records.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink is down or unreachable; the outbox keeps the record and retries.
    #[error("sink unavailable: {0}")]
    Unavailable(String),
    /// The sink refused the record (misconfiguration, permissions); retried, and reported.
    #[error("sink refused the record: {0}")]
    Rejected(String),
    /// This kind of sink cannot be read back (e.g. syslog).
    #[error("sink `{0}` cannot be read back")]
    NotReadable(String),
}

/// A separate, locked system that receives every audit entry and checkpoint through the
/// outbox. Implementations live in `breakglass-sinks`.
#[async_trait]
pub trait Sink: Send + Sync {
    /// The sink's configured name (outbox destination `sink:NAME`).
    fn name(&self) -> &str;
    /// Delivers one record. Records arrive in outbox order; delivering the same record again
    /// (same `message_id()`) must not leave a second copy where the sink can prevent it.
    async fn deliver(&self, record: &breakglass_audit::SinkRecord) -> Result<(), SinkError>;
    /// Everything the sink holds, in the order it holds it, for `audit verify --against`.
    async fn read_back(&self) -> Result<Vec<breakglass_audit::SinkRecord>, SinkError>;
}

/// How loud an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Informational (share accepted, grant ended, test).
    Info,
    /// Needs attention (escalation, rotation failed).
    Warning,
    /// Someone is breaking glass right now.
    Critical,
}

impl Severity {
    /// Lowercase name (`info`, `warning`, `critical`), as PagerDuty spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One alert to deliver to a channel. Holds no secret: it is built from audit data.
#[derive(Debug, Clone)]
pub struct Alert {
    /// Idempotency key, stable across retries of the same delivery (`bg-<outbox id>`).
    pub id: String,
    /// The event, e.g. `break.requested`, `break.granted`, `channel.test`.
    pub event: String,
    /// One line a human reads first, e.g. `Break requested: root-db by dave (INC-42)`.
    /// Starts with `[DRILL] ` for drills.
    pub title: String,
    /// Procedure, if any.
    pub procedure: Option<String>,
    /// Break, if any.
    pub break_id: Option<String>,
    /// Who asked.
    pub requester: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Ticket.
    pub ticket: Option<String>,
    /// The break's state after the event.
    pub state: Option<String>,
    /// When the event happened.
    pub at: Timestamp,
    /// Whether this is a drill.
    pub drill: bool,
    /// Severity.
    pub severity: Severity,
    /// For incident tools: this event ends the incident (grant expired or closed).
    pub resolve: bool,
    /// Stable key grouping all alerts of one break (PagerDuty `dedup_key`).
    pub dedup_key: String,
    /// Link that acknowledges the alert (single use), when acknowledgement is asked for.
    pub ack_url: Option<String>,
    /// Other links, as (label, URL).
    pub links: Vec<(String, String)>,
    /// Event details (non-secret).
    pub detail: serde_json::Value,
    /// The people the alert concerns, with their contact as the procedure files give it: the
    /// custodians who must approve a break, the custodian asked to attest.
    pub people: Vec<OnTheHook>,
}

/// A person an alert concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnTheHook {
    /// Custodian (actor) name.
    pub name: String,
    /// Their contact (empty when the procedure file gives none).
    pub contact: String,
    /// What is asked of them: `approver` or `custodian` (asked to attest).
    pub role: &'static str,
}

impl OnTheHook {
    /// `alice <alice@example.com>`, as messages write a person.
    pub fn named(&self) -> String {
        breakglass_domain::named(&self.name, &self.contact)
    }
}

/// The people of an alert in one line: `alice <alice@example.com>, bob <@bob>`.
pub fn named_list(people: &[OnTheHook]) -> String {
    people
        .iter()
        .map(OnTheHook::named)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Proof that a channel accepted an alert.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// What the receiver answered (e.g. `HTTP 202`, `250 2.0.0 Ok: queued as …`).
    pub status: String,
    /// Milliseconds from sending to the receiver's answer.
    pub latency_ms: i64,
    /// The receiver's id for it, when it gives one (PagerDuty `dedup_key`, SMTP queue id).
    pub remote_id: Option<String>,
}

/// Why a channel did not accept an alert. Messages never contain webhook URLs, tokens or
/// passwords.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Network or server trouble (connection refused, timeout, 5xx, 429): retried.
    #[error("channel unavailable: {0}")]
    Unavailable(String),
    /// The receiver refused the alert (4xx, SMTP 5xx): retried with backoff too, and reported.
    #[error("channel refused the alert: {0}")]
    Rejected(String),
}

/// Where alerts go. Implementations live in `breakglass-alerts`.
#[async_trait]
pub trait Channel: Send + Sync {
    /// Configured name (outbox destination `channel:NAME`).
    fn name(&self) -> &str;
    /// Kind: `slack`, `pagerduty`, `webhook`, `email`.
    fn kind(&self) -> &'static str;
    /// Sends one alert and returns the receiver's receipt. Retries reuse `alert.id` as the
    /// idempotency key so a receiver can drop duplicates.
    async fn send(&self, alert: &Alert) -> Result<Receipt, ChannelError>;
}

/// What a target adapter needs to issue a grant.
#[derive(Debug, Clone, Copy)]
pub struct GrantRequest<'a> {
    /// The procedure (its `target` holds the validated details).
    pub procedure: &'a Procedure,
    /// The break being granted; adapters derive their object names from it
    /// (`bg_<suffix>`), so a grant can always be found and ended from the break alone.
    pub break_id: &'a str,
    /// Who asked.
    pub requester: &'a str,
    /// The requester's enrolled public key (SSH certificates are issued for it).
    pub requester_key: &'a breakglass_custody::CustodianKey,
    /// Now, by the engine's clock.
    pub now: Timestamp,
    /// When the grant ends; adapters make the target enforce it where it can.
    pub deadline: Timestamp,
}

/// A grant issued on a target.
pub struct Issued {
    /// What the requester receives (a connection string, a certificate, an account password):
    /// encrypted to their key and revealed once.
    pub access: breakglass_custody::Secret,
    /// Non-secret record of what was created (role name, certificate serial…): stored with
    /// the break, used to end the grant after a restart, written to the audit log.
    pub handle: serde_json::Value,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("access", &"[redacted]")
            .field("handle", &self.handle)
            .finish()
    }
}

/// Why a grant is ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// The deadline passed.
    Expired,
    /// Closed before the deadline (SSH then writes a revocation).
    Closed,
    /// The break never completed (crash between grant and commit): end whatever exists.
    Abandoned,
}

/// One line of a health check.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// What was checked, e.g. `admin role exists`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found (no secrets).
    pub detail: String,
}

/// A privileged account found on a target.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivilegedAccount {
    /// Account name (`role`, or `user@host` on MariaDB).
    pub name: String,
    /// Why it counts as privileged, e.g. `superuser`, `createrole`, `GRANT OPTION`.
    pub privileges: Vec<String>,
    /// When it expires, if it does.
    pub expires: Option<String>,
    /// Listed in the procedure's inventory (or created by breakglass).
    pub known: bool,
    /// Problems: `not in inventory`, `no expiry`.
    pub flags: Vec<String>,
}

/// Why a target refused or failed. Every message names the target and holds no secret.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The target could not be reached (connection refused, timeout, DNS).
    #[error("{target} unreachable: {message}")]
    Unreachable {
        /// Which target.
        target: String,
        /// What happened.
        message: String,
    },
    /// The credential was refused (wrong password, wrong key).
    #[error("{target} refused the credential: {message}")]
    Credential {
        /// Which target.
        target: String,
        /// What happened.
        message: String,
    },
    /// The credential lacks a privilege the operation needs.
    #[error("{target}: missing privilege: {message}")]
    Privilege {
        /// Which target.
        target: String,
        /// What happened.
        message: String,
    },
    /// An object the grant would create already exists.
    #[error("{target}: {message}")]
    Conflict {
        /// Which target.
        target: String,
        /// What happened.
        message: String,
    },
    /// The server's or the procedure's target configuration is wrong or missing.
    #[error("{target}: configuration: {message}")]
    Config {
        /// Which target.
        target: String,
        /// What happened.
        message: String,
    },
    /// Anything else the target answered.
    #[error("{target}: {message}")]
    Failed {
        /// Which target.
        target: String,
        /// What happened.
        message: String,
    },
}

impl TargetError {
    /// A short code for the audit log and the API: `unreachable`, `credential`, `privilege`,
    /// `conflict`, `config`, `failed`.
    pub fn code(&self) -> &'static str {
        match self {
            TargetError::Unreachable { .. } => "unreachable",
            TargetError::Credential { .. } => "credential",
            TargetError::Privilege { .. } => "privilege",
            TargetError::Conflict { .. } => "conflict",
            TargetError::Config { .. } => "config",
            TargetError::Failed { .. } => "failed",
        }
    }
}

/// A system a break opens. One adapter per kind lives in `breakglass-targets`; the server
/// registers them with the engine. Adapters hold the server-side operator credentials (from
/// the targets file); the sealed administrative credential reaches them only as an argument,
/// only while it is combined, and they never keep it.
#[async_trait]
pub trait Target: Send + Sync {
    /// The kind this adapter serves.
    fn kind(&self) -> breakglass_domain::TargetKind;

    /// Creates the grant with the sealed credential: an ephemeral role or user that the
    /// target itself expires at the deadline, a certificate valid only until it, an enabled
    /// account. On error nothing must be left behind (the adapter undoes what it created).
    async fn grant(
        &self,
        request: &GrantRequest<'_>,
        credential: &breakglass_custody::Secret,
    ) -> Result<Issued, TargetError>;

    /// Ends a grant with the operator credential: terminates its live sessions and removes
    /// what it created. Idempotent: ending a grant already gone succeeds. Returns what was
    /// done (sessions terminated, role dropped…) for the audit log.
    async fn end(
        &self,
        procedure: &Procedure,
        break_id: &str,
        handle: &serde_json::Value,
        cause: EndCause,
    ) -> Result<serde_json::Value, TargetError>;

    /// Checks the target without unsealing anything.
    async fn check(&self, procedure: &Procedure) -> Result<Vec<HealthCheck>, TargetError>;

    /// A new random credential to replace `current` (same form: a password stays a password,
    /// a URL keeps its user and host). `None`: this kind keeps its credential (an SSH CA key,
    /// which the hosts trust by its public key), and the engine re-seals the same secret under
    /// a new data key.
    fn next_credential(
        &self,
        procedure: &Procedure,
        current: &breakglass_custody::Secret,
    ) -> Result<Option<breakglass_custody::Secret>, TargetError>;

    /// Replaces `current` with `next` on the target and proves `next` works with a fresh
    /// login before returning. On any failure `current` still works (the adapter puts it
    /// back). The engine has already stored `next` sealed (as a pending seal) before this
    /// call, so a crash after it loses nothing; it calls this again with the arguments
    /// swapped to undo a rotation it could not commit.
    async fn rotate(
        &self,
        procedure: &Procedure,
        current: &breakglass_custody::Secret,
        next: &breakglass_custody::Secret,
    ) -> Result<(), TargetError>;

    /// Lists privileged accounts with the operator credential.
    async fn discover(&self, procedure: &Procedure) -> Result<Vec<PrivilegedAccount>, TargetError>;

    /// A new login for a live grant, replacing the one it was issued with, with the operator
    /// credential: the gateway's held login after a server restart (it was kept in memory
    /// only). The grant keeps its expiry on the target, and its earlier login stops working.
    /// Kinds whose grants are not served by the gateway say so.
    async fn renew_login(
        &self,
        procedure: &Procedure,
        break_id: &str,
        handle: &serde_json::Value,
    ) -> Result<breakglass_custody::Secret, TargetError> {
        let _ = (break_id, handle);
        Err(TargetError::Config {
            target: procedure.id.clone(),
            message: format!(
                "the login of a `{}` grant cannot be renewed",
                self.kind().as_str()
            ),
        })
    }

    /// Logs in with a grant's `access` as a real client would (drills): returns the open
    /// session, which stays open until dropped. Kinds a drill cannot log in to say so.
    async fn login(
        &self,
        procedure: &Procedure,
        access: &breakglass_custody::Secret,
    ) -> Result<Box<dyn Session>, TargetError> {
        let _ = access;
        Err(TargetError::Config {
            target: procedure.id.clone(),
            message: format!(
                "automated drills cannot log in to `{}` targets",
                self.kind().as_str()
            ),
        })
    }
}

/// A live session opened by `Target::login`.
#[async_trait]
pub trait Session: Send {
    /// Runs a trivial statement on the session; fails once the target ended it.
    async fn ping(&mut self) -> Result<(), TargetError>;
}

/// The identities a drill runner holds: one per custodian name (the drill credential is
/// sealed to them) and one for the runner itself (`drill-runner`, the drill's requester).
/// They open only drill credentials, never a real seal.
pub trait DrillKeys: Send + Sync {
    /// The identity for `name`, created on first use.
    fn identity(&self, name: &str) -> Result<breakglass_custody::Identity, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(session: &str, seq: u64) -> StatementRecord {
        StatementRecord {
            break_id: "brk_1".into(),
            session_id: session.into(),
            seq,
            started_at: Timestamp(1_700_000_000_000 + i64::try_from(seq).unwrap_or(0)),
            duration_us: 7,
            protocol: "simple".into(),
            statement: "SELECT '\n\"x\"', 'é'".into(),
            command: Some("SELECT 1".into()),
            rows: Some(1),
            error: None,
            refused: false,
            params: None,
            data: None,
        }
    }

    /// Parameters are the line's eleventh element, only when there are any; they read back,
    /// NULLs included, and a line with something else there is refused naming the field.
    #[test]
    fn parameters_are_written_last_and_read_back() {
        let mut s = record("brk_1-s1", 4);
        let mut plain = String::new();
        s.write_line(&mut plain);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&plain)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            10
        );
        s.params = Some(vec![Some("it's".into()), None, Some("\\x00ff".into())]);
        let mut line = String::new();
        s.write_line(&mut line);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v[10], serde_json::json!(["it's", null, "\\x00ff"]));
        assert_eq!(
            StatementRecord::from_line("brk_1", line.trim_end()).unwrap(),
            s
        );
        assert_eq!(s.params_text(), "$1 = 'it''s', $2 = NULL, $3 = '\\x00ff'");
        let bad = line.replace("null", "7");
        assert_eq!(
            StatementRecord::from_line("brk_1", bad.trim_end()).unwrap_err(),
            "params"
        );
        s.params = None;
        assert_eq!(s.params_text(), "");
        // A COPY's data is the twelfth element, after a null when there were no parameters.
        s.data = Some("1\tit's\n2\t\\N\n".into());
        let mut line = String::new();
        s.write_line(&mut line);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v[10].clone(), v[11].clone()),
            (
                serde_json::Value::Null,
                serde_json::json!("1\tit's\n2\t\\N\n")
            )
        );
        assert_eq!(
            StatementRecord::from_line("brk_1", line.trim_end()).unwrap(),
            s
        );
        s.params = Some(vec![None]);
        let mut line = String::new();
        s.write_line(&mut line);
        assert_eq!(
            StatementRecord::from_line("brk_1", line.trim_end()).unwrap(),
            s
        );
        let data = serde_json::to_string(s.data.as_ref().unwrap()).unwrap();
        let bad = line.trim_end().replacen(&data, "7", 1);
        assert_eq!(
            StatementRecord::from_line("brk_1", &bad).unwrap_err(),
            "data"
        );
    }

    /// The line rendered through the thread's buffer is exactly serde_json's own rendering
    /// (so the fallback, which renders it whole, never differs), whatever the text holds:
    /// escapes, control characters, multi-byte and four-byte characters next to escapes.
    #[test]
    fn a_line_written_in_place_is_serde_jsons_rendering() {
        let mut s = record("brk_1-s1", 9);
        for text in [
            "",
            "plain",
            "é\"\\\n\u{1}ü\t日本\u{7f}😀\"",
            "\u{1F600}\n\u{1F600}",
        ] {
            s.statement = text.into();
            s.error = Some(format!("{text}!"));
            let mut body = String::from("before\n");
            s.write_line(&mut body);
            let expected = serde_json::to_string(&(
                &s.session_id,
                s.seq,
                s.started_at.0,
                s.duration_us,
                &s.protocol,
                &s.statement,
                &s.command,
                s.rows,
                &s.error,
                s.refused,
            ))
            .unwrap();
            assert_eq!(body, format!("before\n{expected}\n"));
            assert_eq!(
                StatementRecord::from_line("brk_1", body.lines().nth(1).unwrap()).unwrap(),
                s
            );
        }
    }

    #[test]
    fn chunk_lines_read_back_as_written() {
        let mut c = StatementChunk::new("brk_1", "brk_1-s1");
        assert!(c.take().is_none(), "nothing to hand over");
        let mut refused = record("brk_1-s1", 3);
        refused.command = None;
        refused.rows = None;
        refused.error = Some("refused by the gateway".into());
        refused.refused = true;
        let written = vec![record("brk_1-s1", 2), refused];
        for s in &written {
            c.push(s);
        }
        let full = c.take().expect("two statements");
        assert_eq!((full.first_seq, full.count), (2, 2));
        assert_eq!(
            full.body.lines().count(),
            2,
            "one line each, newlines escaped"
        );
        assert!(c.is_empty() && c.session_id == "brk_1-s1");
        assert_eq!(
            StatementChunk::statements("brk_1", &full.body).unwrap(),
            written
        );
    }

    #[test]
    fn statements_are_grouped_by_session_in_order() {
        let all = [
            record("a", 1),
            record("b", 1),
            record("a", 2),
            record("b", 2),
        ];
        let chunks = StatementChunk::group(&all);
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            (
                chunks[0].session_id.as_str(),
                chunks[0].first_seq,
                chunks[0].count
            ),
            ("a", 1, 2)
        );
        let b = StatementChunk::statements("brk_1", &chunks[1].body).unwrap();
        assert_eq!(b, vec![all[1].clone(), all[3].clone()]);
    }

    #[test]
    fn a_bad_line_is_named() {
        let mut c = StatementChunk::new("brk_1", "s");
        c.push(&record("s", 1));
        let body = format!("{}[\"s\", \"two\"]\n", c.body);
        let e = StatementChunk::statements("brk_1", &body).unwrap_err();
        assert_eq!(e, "line 2: seq");
        let e = StatementChunk::statements("brk_1", "not json").unwrap_err();
        assert!(e.starts_with("line 1: "), "{e}");
    }
}
