//! The two directions of a gateway session as pure functions over the bytes read so far, so
//! the recording and the refusals can be fuzzed without sockets (`fuzz/fuzz_targets/pg_wire.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use breakglass_domain::Timestamp;
use breakglass_engine::ports::StatementLine;

use crate::wire::{self, ClientMessage, ServerMessage, WireError};
use crate::{params, redact};

/// What a session refuses (its statements' break and session are added as they are written:
/// [`Finished::line`]).
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    /// Procedure (named in refusals).
    pub procedure: String,
    /// Statement patterns to refuse (normalized).
    pub refuse: Vec<String>,
}

/// A statement the gateway followed to its end: its recording line but for the session and
/// the position in it, which the session adds as it writes the line (nothing per statement
/// is copied that every statement of a session shares).
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// When the client sent it.
    pub started_at: Timestamp,
    /// From the client's message to the server's answer, in microseconds.
    pub duration_us: u64,
    /// `simple`, `extended` or `function` (a fast-path function call).
    pub protocol: &'static str,
    /// The statement text (shared with the session's prepared statements and portals: an
    /// Execute of a prepared statement copies no text).
    pub statement: Arc<str>,
    /// The values bound to its parameters (extended protocol), in text form (`None`: NULL);
    /// shared with its portal.
    pub params: Option<Arc<[Option<String>]>>,
    /// The data a `COPY … FROM STDIN` sent (its first 64 KiB, as text).
    pub data: Option<String>,
    /// The server's command tag.
    pub command: Option<String>,
    /// Rows returned or affected.
    pub rows: Option<u64>,
    /// The server's error, or why the gateway refused it.
    pub error: Option<String>,
    /// Refused by the gateway: the `refuse` pattern it matched.
    pub refused: Option<String>,
}

impl Finished {
    /// Its recording line as statement `seq` of session `session_id`.
    pub fn line<'a>(&'a self, session_id: &'a str, seq: u64) -> StatementLine<'a> {
        StatementLine {
            session_id,
            seq,
            started_at: self.started_at,
            duration_us: self.duration_us,
            protocol: self.protocol,
            statement: &self.statement,
            params: self.params.as_deref(),
            data: self.data.as_deref(),
            command: self.command.as_deref(),
            rows: self.rows,
            error: self.error.as_deref(),
            refused: self.refused.is_some(),
        }
    }
}

/// A statement on its way.
pub(crate) struct Flight {
    record: Finished,
    at: Instant,
    /// The `refuse` pattern it matched: its error is replaced by the gateway's.
    refused: Option<String>,
    /// Whether it becomes a recorded statement (an Execute of a statement whose Parse was
    /// refused is not recorded twice).
    recorded: bool,
    /// The passwords redacted from its text and values: scrubbed from its error too.
    secrets: Option<Arc<redact::Secrets>>,
}

pub(crate) enum Pending {
    /// A simple query (may hold several statements) or a function call; ends at
    /// ReadyForQuery.
    Query(Box<Flight>),
    /// A refused Parse (answered by an error).
    Parse(Box<Flight>),
    /// An Execute.
    Exec(Box<Flight>),
    /// A Sync.
    Sync,
}

impl Pending {
    pub(crate) fn into_statement(self) -> Option<Finished> {
        match self {
            Pending::Query(f) | Pending::Parse(f) | Pending::Exec(f) if f.recorded => {
                Some(f.finish())
            }
            _ => None,
        }
    }
}

impl Flight {
    /// Boxed: a statement moves from the client side's queue to the server side's and on to
    /// the recording, and a pointer moves where the whole record would be copied each time.
    fn new(protocol: &'static str, text: Arc<str>, now: Timestamp, at: Instant) -> Box<Flight> {
        Box::new(Flight {
            record: Finished {
                started_at: now,
                duration_us: 0,
                protocol,
                statement: text,
                params: None,
                data: None,
                command: None,
                rows: None,
                error: None,
                refused: None,
            },
            at,
            refused: None,
            recorded: true,
            secrets: None,
        })
    }

    fn finish(self: Box<Self>) -> Finished {
        let mut this = *self;
        this.record.duration_us = u64::try_from(this.at.elapsed().as_micros()).unwrap_or(u64::MAX);
        this.record.refused = this.refused;
        this.record
    }
}

/// What a session's statements came to.
#[derive(Default, Clone, Copy, Debug)]
pub struct Stats {
    /// Statements that failed on the server.
    pub errors: u64,
    /// Statements refused by the gateway.
    pub refused: u64,
    /// Rows returned or affected.
    pub rows: u64,
}

/// The statements of one session waiting for their answers, shared by its two directions.
#[derive(Default)]
pub struct Tracker {
    pending: VecDeque<Pending>,
    current: Option<Pending>,
    stats: Stats,
    /// The status of the last ReadyForQuery (`I` idle, `T` in a transaction, `E` failed
    /// transaction); none before the first.
    ready: Option<u8>,
    /// Prepared statements the client asked the server to describe, in order, with their
    /// text (`None`: not one the gateway knows) and the number of the ReadyForQuery that ends
    /// their batch ([`Tracker::batches_sent`] when the Describe was sent): each
    /// ParameterDescription answers the first of the batch the server is in.
    describing: VecDeque<(u64, String, Option<Arc<str>>)>,
    /// The client's messages that each end in one ReadyForQuery (Sync, a simple query, a
    /// function call), sent so far; and the ReadyForQuery the server sent so far (never more
    /// than those). A client may send its next batch before the last one's ReadyForQuery
    /// arrives (tokio-postgres does, after a statement's CommandComplete): the Describes of
    /// that next batch are not ended by it.
    batches_sent: u64,
    batches_ended: u64,
    /// The parameter types the server described, for the client side's next Bind.
    described: Vec<(String, Arc<str>, Vec<u32>)>,
    /// The data of the `COPY … FROM STDIN` running, while the server takes it.
    copy_in: Option<CopyCapture>,
}

/// What a `COPY … FROM STDIN` sent so far: the first [`params::COPY_MAX`] bytes, and how many
/// in all.
#[derive(Default)]
struct CopyCapture {
    binary: bool,
    kept: Vec<u8>,
    total: u64,
}

impl CopyCapture {
    fn push(&mut self, data: &[u8]) {
        let room = params::COPY_MAX.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
        self.total += data.len() as u64;
    }
}

impl Tracker {
    /// Drops the Describes whose batch the server has ended (never answered: a message
    /// before them failed).
    fn forget_ended_describes(&mut self) {
        while self
            .describing
            .front()
            .is_some_and(|(batch, ..)| *batch < self.batches_ended)
        {
            self.describing.pop_front();
        }
    }

    /// Ends the capture of a running `COPY … FROM STDIN` (its data is all in, or it failed)
    /// and records the data with its statement, the one in flight.
    fn end_copy(&mut self) {
        if let Some(c) = self.copy_in.take()
            && let Some(f) = self.current.as_mut().and_then(flight_of)
        {
            // The passwords the data carries (a connection string in a row) are redacted
            // like a bound value's, and scrubbed from the COPY's error.
            let mut secrets = f.secrets.as_deref().map(|s| {
                let mut kept = redact::Secrets::default();
                kept.extend(s);
                kept
            });
            let data = match redact::bytes_keeping(&c.kept, &mut secrets) {
                Some(clean) => {
                    // All the data was kept: its length is the redacted data's.
                    let total = if c.total == c.kept.len() as u64 {
                        clean.len() as u64
                    } else {
                        c.total
                    };
                    f.secrets = secrets.map(Arc::new);
                    params::copy_text(&clean, total, c.binary)
                }
                None => params::copy_text(&c.kept, c.total, c.binary),
            };
            f.record.data = Some(data);
        }
    }
}

impl Tracker {
    /// Counts so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether the server is idle outside a transaction with nothing asked and unanswered:
    /// its connection could serve another session after a reset.
    pub fn idle(&self) -> bool {
        self.current.is_none() && self.pending.is_empty() && self.ready == Some(b'I')
    }

    /// Whether nothing the client asked is unanswered: it is the client's turn (idle, or idle
    /// in a transaction), which is when a session can be idle.
    pub fn nothing_in_flight(&self) -> bool {
        self.current.is_none() && self.pending.is_empty()
    }

    pub(crate) fn take_all(&mut self) -> Vec<Pending> {
        let mut all: Vec<Pending> = self.current.take().into_iter().collect();
        all.extend(self.pending.drain(..));
        all
    }

    /// The statement a result belongs to: the one in flight, or the next one waiting (a
    /// Sync is never taken: results before it belong to nothing recordable).
    fn take_current(&mut self) -> Option<&mut Pending> {
        if self.current.is_none() && !matches!(self.pending.front(), Some(Pending::Sync) | None) {
            self.current = self.pending.pop_front();
        }
        self.current.as_mut()
    }
}

fn flight_of(p: &mut Pending) -> Option<&mut Flight> {
    match p {
        Pending::Query(f) | Pending::Parse(f) | Pending::Exec(f) => Some(f.as_mut()),
        Pending::Sync => None,
    }
}

const SUBSTITUTE: &str = "BREAKGLASS GATEWAY REFUSED THIS STATEMENT";

/// Message framing shared by both directions: messages nobody looks into are copied to the
/// output as their bytes arrive (however long they are); the others are handed over whole.
#[derive(Default)]
struct Frames {
    /// Bytes of a passed-through message still to copy.
    skip: usize,
}

impl Frames {
    /// The next whole message at `*pos` that `inspects` wants, as `(tag, length)`, after
    /// copying to `out` every passed-through byte before it; `None` when more bytes are needed.
    fn next(
        &mut self,
        buf: &[u8],
        pos: &mut usize,
        out: &mut Vec<u8>,
        inspects: impl Fn(u8) -> bool,
        max: usize,
    ) -> Result<Option<(u8, usize)>, WireError> {
        while *pos < buf.len() {
            if self.skip > 0 {
                let n = self.skip.min(buf.len() - *pos);
                out.extend_from_slice(&buf[*pos..*pos + n]);
                *pos += n;
                self.skip -= n;
                continue;
            }
            let Some((tag, len)) = wire::header(&buf[*pos..], 1 << 30)? else {
                return Ok(None);
            };
            if !inspects(tag) {
                self.skip = len;
                continue;
            }
            if len > max {
                return Err(WireError::Length {
                    tag: wire::Tag::Byte(tag),
                    len: i64::try_from(len).unwrap_or(i64::MAX),
                    max,
                });
            }
            if buf.len() - *pos < len {
                return Ok(None);
            }
            return Ok(Some((tag, len)));
        }
        Ok(None)
    }
}

/// Client → target: forwards every byte, looks into the messages that carry statements,
/// replaces refused ones with a statement that fails (so the target keeps the protocol in
/// step) and notes what waits for an answer.
#[derive(Default)]
pub struct ClientSide {
    frames: Frames,
    /// Prepared statements by name.
    statements: HashMap<String, Prepared>,
    /// Portals by name.
    portals: HashMap<String, Portal>,
}

/// The values a Bind (or a fast-path function call) gives, as recorded: in text, with the
/// passwords of connection strings among them redacted ([`redact::value`]), in the bytes of
/// a value recorded in hex too ([`redact::bytes_keeping`]).
fn recorded_params(
    params: &wire::BindParams<'_>,
    types: &[u32],
    secrets: &mut Option<redact::Secrets>,
) -> Arc<[Option<String>]> {
    let mut values = params::render(params, types);
    for (v, (binary, raw)) in values.iter_mut().zip(params.iter()) {
        let (Some(v), Some(raw)) = (v.as_mut(), raw) else {
            continue;
        };
        if binary && v.starts_with("\\x") {
            if let Some(clean) = redact::bytes_keeping(raw, secrets) {
                *v = params::hex_value(&clean, raw.len());
            }
        } else if let Some(bytes) = (!binary).then(|| params::bytea_hex_text(raw)).flatten() {
            // A `bytea` in text format (how libpq sends one): its bytes, not the hex digits,
            // may hold the secret.
            if let Some(clean) = redact::bytes_keeping(&bytes, secrets) {
                *v = params::hex_value(&clean, bytes.len());
            }
        } else if let std::borrow::Cow::Owned(r) = redact::value_keeping(v, secrets) {
            *v = r;
        }
    }
    values.into()
}

/// A prepared statement of the session.
#[derive(Clone)]
struct Prepared {
    text: Arc<str>,
    /// The passwords redacted from its text.
    secrets: Option<Arc<redact::Secrets>>,
    /// The `refuse` pattern it matched.
    refused: Option<String>,
    /// The parameter types its Parse named.
    types: Vec<u32>,
}

/// A portal of the session: its statement and the values bound to it.
#[derive(Clone)]
struct Portal {
    text: Arc<str>,
    /// The passwords redacted from its statement and its values.
    secrets: Option<Arc<redact::Secrets>>,
    refused: Option<String>,
    params: Option<Arc<[Option<String>]>>,
}

impl ClientSide {
    /// Processes the bytes read so far: appends to `out` what goes to the target and queues
    /// statements in `tracker`. Returns how many bytes of `buf` were used (the rest is an
    /// incomplete message) and whether the client sent Terminate (which is not forwarded: the
    /// gateway ends or keeps the server connection itself).
    pub fn process(
        &mut self,
        s: &SessionInfo,
        buf: &[u8],
        out: &mut Vec<u8>,
        tracker: &mut Tracker,
        now: Timestamp,
        at: Instant,
    ) -> Result<(usize, bool), WireError> {
        let patterns = &s.refuse;
        let mut terminate = false;
        let mut pos = 0usize;
        // A COPY's data is looked into only while the server takes it (it streams otherwise).
        let copying = tracker.copy_in.is_some();
        while let Some((tag, len)) = self.frames.next(
            buf,
            &mut pos,
            out,
            |t| {
                matches!(
                    t,
                    b'Q' | b'P' | b'B' | b'E' | b'C' | b'D' | b'F' | b'S' | b'X'
                ) || (copying && matches!(t, b'd' | b'c' | b'f'))
            },
            wire::MAX_CLIENT_MESSAGE,
        )? {
            let frame = &buf[pos..pos + len];
            let msg = wire::decode_client(tag, &frame[5..])?;
            let mut forward = true;
            match msg {
                ClientMessage::Query(text) => {
                    let mut secrets = None;
                    let recorded = redact::statement_keeping(text, &mut secrets);
                    let mut f = Flight::new("simple", recorded.as_ref().into(), now, at);
                    f.secrets = secrets.map(Arc::new);
                    if let Some(p) = wire::refused(text, patterns) {
                        f.refused = Some(p.to_owned());
                        let mut body = SUBSTITUTE.as_bytes().to_vec();
                        body.push(0);
                        wire::message(out, b'Q', &body);
                        forward = false;
                    }
                    tracker.pending.push_back(Pending::Query(f));
                    tracker.batches_sent += 1;
                }
                ClientMessage::Parse { name, query, types } => {
                    let refused = wire::refused(query, patterns).map(str::to_owned);
                    if self.statements.len() >= 10_000 && !self.statements.contains_key(name) {
                        self.statements.clear();
                    }
                    let mut secrets = None;
                    let query: Arc<str> = redact::statement_keeping(query, &mut secrets)
                        .as_ref()
                        .into();
                    let secrets = secrets.map(Arc::new);
                    self.statements.insert(
                        name.to_owned(),
                        Prepared {
                            text: query.clone(),
                            secrets: secrets.clone(),
                            refused: refused.clone(),
                            types: types.oids().collect(),
                        },
                    );
                    if let Some(p) = refused {
                        let mut f = Flight::new("extended", query, now, at);
                        f.refused = Some(p);
                        f.secrets = secrets;
                        let mut body = name.as_bytes().to_vec();
                        body.push(0);
                        body.extend_from_slice(SUBSTITUTE.as_bytes());
                        body.extend_from_slice(&[0, 0, 0]);
                        wire::message(out, b'P', &body);
                        forward = false;
                        tracker.pending.push_back(Pending::Parse(f));
                    }
                }
                ClientMessage::Bind {
                    portal,
                    statement,
                    params,
                } => {
                    self.learn_types(tracker);
                    let (text, refused, types, of_statement) = match self.statements.get(statement)
                    {
                        Some(p) => (
                            p.text.clone(),
                            p.refused.clone(),
                            p.types.as_slice(),
                            p.secrets.clone(),
                        ),
                        None => (
                            format!("(prepared statement `{statement}`)").into(),
                            None,
                            &[][..],
                            None,
                        ),
                    };
                    let mut of_values = None;
                    let params = (!params.is_empty())
                        .then(|| recorded_params(&params, types, &mut of_values));
                    let secrets = match (of_statement, of_values) {
                        (s, None) => s,
                        (None, Some(v)) => Some(Arc::new(v)),
                        (Some(s), Some(mut v)) => {
                            v.extend(&s);
                            Some(Arc::new(v))
                        }
                    };
                    let bound = Portal {
                        text,
                        secrets,
                        refused,
                        params,
                    };
                    if self.portals.len() >= 10_000 && !self.portals.contains_key(portal) {
                        self.portals.clear();
                    }
                    self.portals.insert(portal.to_owned(), bound);
                }
                ClientMessage::Execute { portal } => {
                    let p = self.portals.get(portal).cloned().unwrap_or_else(|| Portal {
                        text: format!("(portal `{portal}`)").into(),
                        secrets: None,
                        refused: None,
                        params: None,
                    });
                    let mut f = Flight::new("extended", p.text, now, at);
                    f.record.params = p.params;
                    f.secrets = p.secrets;
                    if p.refused.is_some() {
                        f.recorded = false;
                        f.refused = p.refused;
                    }
                    tracker.pending.push_back(Pending::Exec(f));
                }
                ClientMessage::Describe { kind: b'S', name } => {
                    let text = self.statements.get(name).map(|p| p.text.clone());
                    tracker
                        .describing
                        .push_back((tracker.batches_sent, name.to_owned(), text));
                }
                ClientMessage::Close { kind, name } => {
                    if kind == b'S' {
                        self.statements.remove(name);
                    } else {
                        self.portals.remove(name);
                    }
                }
                ClientMessage::FunctionCall { oid, args } => {
                    // Answered like a simple query: a result or an error, then ReadyForQuery.
                    let n = args.len();
                    let name = large_object_function(oid)
                        .map(|f| format!("{f}, "))
                        .unwrap_or_default();
                    let text = format!(
                        "(function call: {name}OID {oid}, {n} argument{})",
                        if n == 1 { "" } else { "s" }
                    );
                    let mut f = Flight::new("function", text.into(), now, at);
                    // Recorded like a Bind's values (types unknown: binary ones in hex), the
                    // passwords they carry redacted.
                    let mut secrets = None;
                    f.record.params =
                        (!args.is_empty()).then(|| recorded_params(&args, &[], &mut secrets));
                    f.secrets = secrets.map(Arc::new);
                    tracker.pending.push_back(Pending::Query(f));
                    tracker.batches_sent += 1;
                }
                ClientMessage::CopyData(data) => {
                    if let Some(c) = tracker.copy_in.as_mut() {
                        c.push(data);
                    }
                }
                ClientMessage::CopyEnd { .. } => tracker.end_copy(),
                ClientMessage::Sync => {
                    tracker.pending.push_back(Pending::Sync);
                    tracker.batches_sent += 1;
                }
                ClientMessage::Terminate => {
                    terminate = true;
                    pos += len;
                    break;
                }
                ClientMessage::Describe { .. }
                | ClientMessage::Password(_)
                | ClientMessage::Other(_) => {}
            }
            if forward {
                out.extend_from_slice(frame);
            }
            pos += len;
        }
        Ok((pos, terminate))
    }
}

impl ClientSide {
    /// Takes the parameter types the server described (a client that leaves them to the
    /// server, as tokio-postgres does, learns them with a Describe before its first Bind),
    /// so binary values of those types are recorded as text. A statement closed and
    /// prepared again under the same name since is not given the old one's types.
    fn learn_types(&mut self, tracker: &mut Tracker) {
        for (name, text, types) in tracker.described.drain(..) {
            if let Some(p) = self.statements.get_mut(&name)
                && Arc::ptr_eq(&p.text, &text)
            {
                p.types = types;
            }
        }
    }
}

/// The name of a large-object function called by OID (what libpq's fast-path calls are):
/// their OIDs are fixed in PostgreSQL's catalog (`pg_proc`), the same in every version.
fn large_object_function(oid: u32) -> Option<&'static str> {
    Some(match oid {
        715 => "lo_create",
        952 => "lo_open",
        953 => "lo_close",
        954 => "loread",
        955 => "lowrite",
        956 => "lo_lseek",
        957 => "lo_creat",
        958 => "lo_tell",
        964 => "lo_unlink",
        1004 => "lo_truncate",
        3170 => "lo_lseek64",
        3171 => "lo_tell64",
        3172 => "lo_truncate64",
        _ => return None,
    })
}

pub(crate) fn lock<T>(t: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Target → client: forwards every byte, follows results to finish recorded statements, and
/// replaces the error of a refused statement with the gateway's own.
#[derive(Default)]
pub struct ServerSide {
    frames: Frames,
}

impl ServerSide {
    /// Processes the bytes read so far: appends to `out` what goes to the client and pushes
    /// finished statements to `done`. Returns how many bytes of `buf` were used.
    pub fn process(
        &mut self,
        s: &SessionInfo,
        buf: &[u8],
        out: &mut Vec<u8>,
        tracker: &mut Tracker,
        done: &mut Vec<Finished>,
    ) -> Result<usize, WireError> {
        let mut pos = 0usize;
        while let Some((tag, len)) = self.frames.next(
            buf,
            &mut pos,
            out,
            wire::server_inspects,
            wire::MAX_INSPECTED,
        )? {
            let frame = &buf[pos..pos + len];
            let msg = wire::decode_server(tag, &frame[5..])?;
            let mut replaced = false;
            {
                let t = &mut *tracker;
                match msg {
                    ServerMessage::CommandComplete(command) => {
                        let rows = wire::rows_of(command);
                        if let Some(f) = t.take_current().and_then(flight_of) {
                            f.record.command = Some(command.to_owned());
                            if let Some(r) = rows {
                                *f.record.rows.get_or_insert(0) += r;
                            }
                        }
                        t.stats.rows += rows.unwrap_or(0);
                        finish_exec(t, done);
                    }
                    ServerMessage::EmptyQuery | ServerMessage::PortalSuspended => {
                        if let Some(f) = t.take_current().and_then(flight_of)
                            && matches!(msg, ServerMessage::PortalSuspended)
                        {
                            f.record.command = Some("(suspended at the row limit)".into());
                        }
                        finish_exec(t, done);
                    }
                    ServerMessage::Error {
                        code,
                        message,
                        severity,
                    } => {
                        let mut refused_by = None;
                        if let Some(f) = t.take_current().and_then(flight_of) {
                            if let Some(p) = &f.refused {
                                refused_by = Some(p.clone());
                                f.record.error =
                                    Some(format!("refused by the gateway: matches `{p}`"));
                            } else {
                                let error = format!("{code}: {message}");
                                f.record.error = Some(match &f.secrets {
                                    Some(s) => s.scrub(&error),
                                    None => error,
                                });
                            }
                        }
                        if let Some(p) = refused_by {
                            t.stats.refused += 1;
                            wire::error_response(
                                out,
                                "ERROR",
                                "42501",
                                &format!(
                                    "breakglass gateway: statement refused by procedure `{}`: it matches `{p}`",
                                    s.procedure
                                ),
                                Some(
                                    "The procedure's `refuse` list blocks it; it did not reach the database.",
                                ),
                            );
                            replaced = true;
                        } else if severity != "NOTICE" {
                            t.stats.errors += 1;
                        }
                        // An error ends an Execute or a refused Parse; a simple query ends
                        // at ReadyForQuery.
                        if matches!(t.current, Some(Pending::Exec(_) | Pending::Parse(_))) {
                            finish_exec(t, done);
                        }
                    }
                    ServerMessage::CopyIn { binary } => {
                        // The COPY in front takes the data the client sends now.
                        t.take_current();
                        t.copy_in = Some(CopyCapture {
                            binary,
                            ..CopyCapture::default()
                        });
                    }
                    ServerMessage::ParameterTypes(types) => {
                        t.forget_ended_describes();
                        if let Some((_, name, Some(text))) = t.describing.pop_front() {
                            if t.described.len() >= 10_000 {
                                // Described and never bound: bounded like the statements.
                                t.described.clear();
                            }
                            t.described.push((name, text, types.oids().collect()));
                        }
                    }
                    ServerMessage::Ready(status) => {
                        t.ready = Some(status);
                        // A COPY the server failed ends without the client's CopyDone.
                        t.end_copy();
                        // Describes after a failed message of the batch were never answered.
                        if t.batches_ended < t.batches_sent {
                            t.batches_ended += 1;
                        }
                        t.forget_ended_describes();
                        // A function call's result (FunctionCallResponse) is not looked
                        // into: the call in front ends here.
                        if t.current.is_none()
                            && matches!(t.pending.front(), Some(Pending::Query(_)))
                        {
                            t.current = t.pending.pop_front();
                        }
                        if let Some(p) = t.current.take()
                            && let Some(s) = p.into_statement()
                        {
                            done.push(s);
                        }
                        // Executes of the batch that never ran (an earlier message failed).
                        while let Some(front) = t.pending.pop_front() {
                            match front {
                                Pending::Sync => break,
                                Pending::Query(f) => {
                                    t.pending.push_front(Pending::Query(f));
                                    break;
                                }
                                other => {
                                    if let Some(mut s) = other.into_statement() {
                                        s.error.get_or_insert_with(|| {
                                            "not executed: an earlier message of its batch failed".into()
                                        });
                                        done.push(s);
                                    }
                                }
                            }
                        }
                    }
                    ServerMessage::BackendKey { .. } | ServerMessage::Other(_) => {}
                }
            }
            if !replaced {
                out.extend_from_slice(frame);
            }
            pos += len;
        }
        Ok(pos)
    }
}

/// Ends the statement in flight if it is an Execute or a refused Parse (a simple query waits
/// for ReadyForQuery).
fn finish_exec(t: &mut Tracker, done: &mut Vec<Finished>) {
    t.end_copy();
    if matches!(t.current, Some(Pending::Exec(_) | Pending::Parse(_)))
        && let Some(p) = t.current.take()
        && let Some(s) = p.into_statement()
    {
        done.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> SessionInfo {
        SessionInfo {
            procedure: "p".into(),
            refuse: vec!["DROP DATABASE".into()],
        }
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        wire::message(&mut out, tag, body);
        out
    }

    #[test]
    fn a_simple_query_is_recorded_with_its_tag_and_rows() {
        let (s, mut t) = (info(), Tracker::default());
        let mut c = ClientSide::default();
        let mut out = Vec::new();
        let q = msg(b'Q', b"UPDATE t SET x = 1\0");
        // Cut in two reads: nothing is used until the message is whole.
        assert_eq!(
            c.process(&s, &q[..3], &mut out, &mut t, Timestamp(1), Instant::now())
                .unwrap(),
            (0, false)
        );
        assert_eq!(
            c.process(&s, &q, &mut out, &mut t, Timestamp(1), Instant::now())
                .unwrap(),
            (q.len(), false)
        );
        assert_eq!(out, q, "forwarded unchanged");
        let mut answer = msg(b'C', b"UPDATE 4\0");
        answer.extend(msg(b'Z', b"I"));
        let (mut srv, mut done, mut back) = (ServerSide::default(), Vec::new(), Vec::new());
        assert_eq!(
            srv.process(&s, &answer, &mut back, &mut t, &mut done)
                .unwrap(),
            answer.len()
        );
        assert_eq!(back, answer);
        assert_eq!(done.len(), 1);
        assert_eq!(&*done[0].statement, "UPDATE t SET x = 1");
        assert_eq!(
            (done[0].command.as_deref(), done[0].rows),
            (Some("UPDATE 4"), Some(4))
        );
    }

    /// Both directions of one session, for the tests: what each forwarded, what finished.
    #[derive(Default)]
    struct Both {
        s: SessionInfo,
        t: Tracker,
        c: ClientSide,
        srv: ServerSide,
        out: Vec<u8>,
        back: Vec<u8>,
        done: Vec<Finished>,
    }

    impl Both {
        /// The client sends `bytes` (all of them, whole messages): forwarded unchanged.
        fn client(&mut self, bytes: &[u8]) {
            let before = self.out.len();
            let used = self
                .c
                .process(
                    &self.s,
                    bytes,
                    &mut self.out,
                    &mut self.t,
                    Timestamp(1),
                    Instant::now(),
                )
                .unwrap();
            assert_eq!(used, (bytes.len(), false));
            assert_eq!(&self.out[before..], bytes, "forwarded unchanged");
        }

        /// The server answers `bytes`.
        fn server(&mut self, bytes: &[u8]) {
            let used = self
                .srv
                .process(&self.s, bytes, &mut self.back, &mut self.t, &mut self.done)
                .unwrap();
            assert_eq!(used, bytes.len());
        }
    }

    fn msgs(all: &[(u8, &[u8])]) -> Vec<u8> {
        all.iter().flat_map(|(tag, body)| msg(*tag, body)).collect()
    }

    /// The extended protocol: a Parse naming an int4 parameter, then Bind (binary 7) and
    /// Execute; then an unnamed statement bound to text `x'y` and NULL: each Execute is
    /// recorded with the values bound to it.
    #[test]
    fn an_execute_is_recorded_with_its_bound_parameters() {
        let mut b = Both::default();
        b.client(&msgs(&[
            (
                b'P',
                b"s1\0UPDATE t SET v = 1 WHERE id = $1\0\0\x01\0\0\0\x17",
            ),
            (b'B', b"\0s1\0\0\x01\0\x01\0\x01\0\0\0\x04\0\0\0\x07\0\0"),
            (b'E', b"\0\0\0\0\0"),
            (b'P', b"\0SELECT $1, $2\0\0\0"),
            (b'B', b"\0\0\0\0\0\x02\0\0\0\x03x'y\xff\xff\xff\xff\0\0"),
            (b'E', b"\0\0\0\0\0"),
            (b'S', b""),
        ]));
        b.server(&msgs(&[
            (b'1', b""),
            (b'2', b""),
            (b'C', b"UPDATE 1\0"),
            (b'1', b""),
            (b'2', b""),
            (b'C', b"SELECT 1\0"),
            (b'Z', b"I"),
        ]));
        let done = &b.done;
        assert_eq!(done.len(), 2);
        assert_eq!(&*done[0].statement, "UPDATE t SET v = 1 WHERE id = $1");
        assert_eq!(done[0].params.as_deref(), Some(&[Some("7".to_owned())][..]));
        assert_eq!(
            done[1].params.as_deref(),
            Some(&[Some("x'y".to_owned()), None][..])
        );
        assert_eq!(done[1].line("s1", 2).params, done[1].params.as_deref());
        assert!(b.t.idle());
    }

    /// A server error that quotes a password the recording redacted (PostgreSQL's "at or
    /// near" echoes the token it stopped at) is recorded with the password redacted too, in
    /// both protocols; errors of statements that carried none are recorded as sent.
    #[test]
    fn errors_quoting_a_redacted_password_are_recorded_without_it() {
        let mut b = Both::default();
        let failed = |message: &str| {
            let mut e = Vec::new();
            wire::error_response(&mut e, "ERROR", "42601", message, None);
            e.extend(msg(b'Z', b"I"));
            e
        };
        b.client(&msg(b'Q', b"ALTER ROLE app PASSWORD 'it''s-hunter2\0"));
        b.server(&failed(
            "unterminated quoted string at or near \"'it''s-hunter2\"",
        ));
        b.client(&msg(b'Q', b"SELECT 'it''s-hunter2' AS not_a_password\0"));
        b.server(&failed("syntax error at or near \"it's-hunter2\""));
        // Extended: the password in a bound connection string.
        let conn = b"host=db password=s3cr3t-pw dbname=app";
        let mut bind = b"\0c1\0\0\0\0\x01".to_vec();
        bind.extend(i32::try_from(conn.len()).unwrap().to_be_bytes());
        bind.extend(conn);
        bind.extend([0, 0]);
        b.client(&msgs(&[
            (b'P', b"c1\0SELECT dblink_connect($1)\0\0\0"),
            (b'B', &bind),
            (b'E', b"\0\0\0\0\0"),
            (b'S', b""),
        ]));
        b.server(&msgs(&[(b'1', b""), (b'2', b"")]));
        b.server(&failed("could not connect with \"s3cr3t-pw\""));
        let errors: Vec<&str> = b.done.iter().map(|d| d.error.as_deref().unwrap()).collect();
        assert_eq!(
            errors,
            [
                "42601: unterminated quoted string at or near \"'[redacted]\"",
                "42601: syntax error at or near \"it's-hunter2\"",
                "42601: could not connect with \"[redacted]\"",
            ]
        );
        assert_eq!(
            &*b.done[0].statement,
            "ALTER ROLE app PASSWORD '[redacted]'"
        );
        assert!(!format!("{:?}", b.done).contains("s3cr3t"));
    }

    /// A Bind of statement `name`'s one parameter to binary `value`, executed.
    fn run(name: &str, value: &[u8]) -> Vec<u8> {
        let mut bind = format!("\0{name}\0").into_bytes();
        bind.extend([0, 1, 0, 1, 0, 1]);
        bind.extend(i32::try_from(value.len()).unwrap().to_be_bytes());
        bind.extend(value);
        bind.extend([0, 0]);
        msgs(&[(b'B', &bind), (b'E', b"\0\0\0\0\0"), (b'S', b"")])
    }

    /// tokio-postgres sends its next batch as soon as a statement's CommandComplete arrives,
    /// before that batch's ReadyForQuery: the ReadyForQuery that follows ends the earlier
    /// batch, not the Describe just sent, whose types still decode the next Bind's values.
    /// A Describe of a batch the server ended without answering it (an earlier message
    /// failed) is dropped at that batch's ReadyForQuery.
    #[test]
    fn a_describe_sent_before_the_last_batch_ended_keeps_its_types() {
        let mut b = Both::default();
        b.client(&msgs(&[
            (b'P', b"s0\0UPDATE t SET v = 1\0\0\0"),
            (b'B', b"\0s0\0\0\0\0\0\0\0"),
            (b'E', b"\0\0\0\0\0"),
            (b'S', b""),
        ]));
        b.server(&msgs(&[(b'1', b""), (b'2', b""), (b'C', b"UPDATE 1\0")]));
        // The next batch, before the first one's ReadyForQuery.
        b.client(&msgs(&[
            (b'P', b"s1\0SELECT $1, $2::money\0\0\0"),
            (b'D', b"Ss1\0"),
            (b'S', b""),
        ]));
        b.server(&msg(b'Z', b"I"));
        b.server(&msgs(&[
            (b'1', b""),
            (b't', b"\0\x02\0\0\0\x17\0\0\x03\x16"),
            (b'n', b""),
            (b'Z', b"I"),
        ]));
        let mut bind = b"\0s1\0\0\x01\0\x01\0\x02".to_vec();
        bind.extend(4i32.to_be_bytes());
        bind.extend(7i32.to_be_bytes());
        bind.extend(8i32.to_be_bytes());
        bind.extend(123_456i64.to_be_bytes());
        bind.extend([0, 0]);
        b.client(&msgs(&[(b'B', &bind), (b'E', b"\0\0\0\0\0"), (b'S', b"")]));
        b.server(&msgs(&[(b'2', b""), (b'C', b"SELECT 1\0"), (b'Z', b"I")]));
        assert_eq!(&*b.done[1].statement, "SELECT $1, $2::money");
        assert_eq!(
            b.done[1].params.as_deref(),
            Some(&[Some("7".to_owned()), Some("1234.56".to_owned())][..])
        );
        // A batch whose Parse failed: its Describe is never answered, and the next batch's
        // ParameterDescription is not taken for it.
        b.client(&msgs(&[
            (b'P', b"s2\0SELEC $1\0\0\0"),
            (b'D', b"Ss2\0"),
            (b'S', b""),
            (b'P', b"s3\0SELECT $1\0\0\0"),
            (b'D', b"Ss3\0"),
            (b'S', b""),
        ]));
        let mut failed = Vec::new();
        wire::error_response(&mut failed, "ERROR", "42601", "syntax error", None);
        failed.extend(msg(b'Z', b"I"));
        b.server(&failed);
        b.server(&msgs(&[
            (b'1', b""),
            (b't', b"\0\x01\0\0\0\x17"),
            (b'n', b""),
            (b'Z', b"I"),
        ]));
        b.client(&run("s3", &9i32.to_be_bytes()));
        b.server(&msgs(&[(b'2', b""), (b'C', b"SELECT 1\0"), (b'Z', b"I")]));
        let last = b.done.last().unwrap();
        assert_eq!(
            (&*last.statement, last.params.as_deref()),
            ("SELECT $1", Some(&[Some("9".to_owned())][..]))
        );
        assert!(b.t.describing.is_empty() && b.t.described.is_empty());
        assert_eq!(b.t.batches_sent, b.t.batches_ended);
    }

    /// A client that leaves the types to the server (tokio-postgres: Parse without types,
    /// Describe, then Bind in binary): the types the server described decode the values. A
    /// statement prepared again under the same name before its Bind does not take them.
    #[test]
    fn described_parameter_types_decode_binary_values() {
        let mut b = Both::default();
        let result = msgs(&[(b'2', b""), (b'C', b"SELECT 1\0"), (b'Z', b"I")]);
        b.client(&msgs(&[
            (b'P', b"s0\0SELECT $1\0\0\0"),
            (b'D', b"Ss0\0"),
            (b'D', b"Sunknown\0"),
            (b'S', b""),
        ]));
        b.server(&msgs(&[
            (b'1', b""),
            (b't', b"\0\x01\0\0\0\x17"),
            (b'n', b""),
            (b't', b"\0\x01\0\0\0\x19"),
            (b'n', b""),
            (b'Z', b"I"),
        ]));
        b.client(&run("s0", &7i32.to_be_bytes()));
        b.server(&result);
        assert_eq!(
            b.done[0].params.as_deref(),
            Some(&[Some("7".to_owned())][..])
        );
        // Described, then closed and prepared again (no types) before the Bind.
        b.client(&msgs(&[
            (b'P', b"s1\0SELECT $1\0\0\0"),
            (b'D', b"Ss1\0"),
            (b'S', b""),
        ]));
        b.server(&msgs(&[
            (b'1', b""),
            (b't', b"\0\x01\0\0\0\x17"),
            (b'n', b""),
            (b'Z', b"I"),
        ]));
        b.client(&msgs(&[
            (b'C', b"Ss1\0"),
            (b'P', b"s1\0SELECT $1::int8\0\0\0"),
        ]));
        b.client(&run("s1", &7i32.to_be_bytes()));
        b.server(&msgs(&[(b'3', b""), (b'1', b"")]));
        b.server(&result);
        assert_eq!(&*b.done[1].statement, "SELECT $1::int8");
        assert_eq!(
            b.done[1].params.as_deref(),
            Some(&[Some("\\x00000007".to_owned())][..]),
            "the old statement's types are not the new one's"
        );
        assert!(b.t.describing.is_empty() && b.t.described.is_empty());
    }

    /// `COPY … FROM STDIN`: the data the client sends after the server's CopyInResponse is
    /// recorded with the COPY (its first 64 KiB, with the whole length); a COPY the server
    /// fails keeps what was sent until then, and data sent after is not taken.
    #[test]
    fn a_copy_from_stdin_is_recorded_with_its_data() {
        let mut b = Both::default();
        let q = msg(b'Q', b"COPY items FROM STDIN\0");
        b.client(&q);
        b.server(&msg(b'G', b"\0\0\x02\0\0\0\0"));
        let row = "1\tit's\n".repeat(10_000);
        let mut data: Vec<u8> = row
            .as_bytes()
            .chunks(7_000)
            .flat_map(|p| msg(b'd', p))
            .collect();
        data.extend(msg(b'c', b""));
        // Cut in two reads.
        let used =
            b.c.process(
                &b.s,
                &data[..10_000],
                &mut b.out,
                &mut b.t,
                Timestamp(1),
                Instant::now(),
            )
            .unwrap()
            .0;
        b.client(&data[used..]);
        b.server(&msgs(&[(b'C', b"COPY 10000\0"), (b'Z', b"I")]));
        assert_eq!(b.out.len(), q.len() + data.len(), "every byte forwarded");
        assert_eq!((b.done.len(), b.done[0].rows), (1, Some(10_000)));
        let recorded = b.done[0].data.as_deref().expect("the COPY's data");
        let tail = format!("… ({} bytes)", row.len());
        assert!(recorded.starts_with("1\tit's\n1\tit's\n"), "{recorded:.40}");
        assert!(recorded.ends_with(&tail));
        assert_eq!(recorded.len(), params::COPY_MAX + tail.len());
        assert!(b.t.copy_in.is_none());

        // Failed by the server after one row: what came before is recorded; the rest, sent
        // before the client saw the error, is passed on and not taken.
        b.done.clear();
        b.client(&q);
        b.server(&msg(b'G', b"\0\0\0"));
        b.client(&msg(b'd', b"x\n"));
        let mut failed = Vec::new();
        wire::error_response(&mut failed, "ERROR", "22P02", "invalid input syntax", None);
        failed.extend(msg(b'Z', b"I"));
        b.server(&failed);
        b.client(&msg(b'd', b"y\n"));
        assert_eq!(b.done[0].data.as_deref(), Some("x\n"));
        assert!(b.done[0].error.as_deref().unwrap().starts_with("22P02"));
        assert!(b.t.copy_in.is_none());
    }

    /// Passwords in bytes recorded in hex or as data: a fast-path call's binary argument
    /// (`\lo_import` of a file holding a connection string), a `bytea` bound in text format
    /// (`\x…`, as libpq sends one), a `COPY … FROM STDIN`'s rows in text and in binary
    /// format. Each is recorded with `[redacted]` in place of the password, its other bytes
    /// kept, and an error quoting the password is recorded without it.
    #[test]
    fn passwords_in_hex_values_and_copy_data_are_redacted() {
        let hex_of = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let conf: &[u8] = b"\x00\x01host=db password=fn-s3cr3t dbname=app\n\xff";
        let mut b = Both::default();
        // lowrite(fd 0, conf): OID 955, both arguments binary.
        let mut body = 955u32.to_be_bytes().to_vec();
        body.extend([0, 1, 0, 1, 0, 2]);
        body.extend(4i32.to_be_bytes());
        body.extend(0i32.to_be_bytes());
        body.extend(i32::try_from(conf.len()).unwrap().to_be_bytes());
        body.extend(conf);
        body.extend([0, 1]);
        b.client(&msg(b'F', &body));
        let mut failed = Vec::new();
        wire::error_response(
            &mut failed,
            "ERROR",
            "XX000",
            "cannot write \"password=fn-s3cr3t\"",
            None,
        );
        failed.extend(msg(b'Z', b"I"));
        b.server(&failed);
        let args = b.done[0].params.as_deref().unwrap();
        let data = args[1].as_deref().unwrap();
        assert_eq!(
            data,
            format!(
                "\\x{}",
                hex_of(b"\x00\x01host=db password=[redacted] dbname=app\n\xff")
            )
        );
        assert_eq!(
            b.done[0].error.as_deref(),
            Some("XX000: cannot write \"password=[redacted]\"")
        );

        // A bytea in text format: its bytes, not its hex digits, are looked into.
        let bytea = format!("\\x{}", hex_of(b"postgresql://app:bytea-s3cr3t@db/app"));
        let mut bind = b"\0\0\0\0\0\x01".to_vec();
        bind.extend(i32::try_from(bytea.len()).unwrap().to_be_bytes());
        bind.extend(bytea.as_bytes());
        bind.extend([0, 0]);
        b.client(&msgs(&[
            (b'P', b"\0INSERT INTO f VALUES ($1)\0\0\0"),
            (b'B', &bind),
            (b'E', b"\0\0\0\0\0"),
            (b'S', b""),
        ]));
        b.server(&msgs(&[
            (b'1', b""),
            (b'2', b""),
            (b'C', b"INSERT 0 1\0"),
            (b'Z', b"I"),
        ]));
        assert_eq!(
            b.done[1].params.as_deref(),
            Some(
                &[Some(format!(
                    "\\x{}",
                    hex_of(b"postgresql://app:[redacted]@db/app")
                ))][..]
            )
        );

        // COPY in text format, then in binary format.
        b.client(&msg(b'Q', b"COPY dsn FROM STDIN\0"));
        b.server(&msg(b'G', b"\0\0\x01\0\0"));
        b.client(&msgs(&[
            (b'd', b"1\tpostgresql://app:copy-s3cr3t@db/app\n"),
            (b'd', b"2\tplain\n"),
            (b'c', b""),
        ]));
        b.server(&msgs(&[(b'C', b"COPY 2\0"), (b'Z', b"I")]));
        assert_eq!(
            b.done[2].data.as_deref(),
            Some("1\tpostgresql://app:[redacted]@db/app\n2\tplain\n")
        );
        b.client(&msg(b'Q', b"COPY dsn FROM STDIN (FORMAT binary)\0"));
        b.server(&msg(b'G', b"\x01\0\x01\0\x01"));
        b.client(&msgs(&[(b'd', conf), (b'c', b"")]));
        b.server(&msgs(&[(b'C', b"COPY 1\0"), (b'Z', b"I")]));
        assert_eq!(
            b.done[3].data.as_deref(),
            Some(
                format!(
                    "\\x{}",
                    hex_of(b"\x00\x01host=db password=[redacted] dbname=app\n\xff")
                )
                .as_str()
            )
        );
        let all = format!("{:?}", b.done);
        for secret in ["s3cr3t", &hex_of(b"s3cr3t")] {
            assert!(!all.contains(secret), "{secret} in {all}");
        }
    }

    #[test]
    fn a_function_call_is_recorded_with_its_oid_and_outcome() {
        let (s, mut t) = (info(), Tracker::default());
        let mut c = ClientSide::default();
        let mut out = Vec::new();
        // lo_open(16400, 0x20000): OID 952, one format code (binary), two int4 arguments.
        let mut body = 952u32.to_be_bytes().to_vec();
        body.extend([0, 1, 0, 1, 0, 2]);
        for arg in [16_400i32, 0x20000] {
            body.extend(4i32.to_be_bytes());
            body.extend(arg.to_be_bytes());
        }
        body.extend([0, 1]);
        let call = msg(b'F', &body);
        let failing = msg(
            b'F',
            &99u32
                .to_be_bytes()
                .iter()
                .chain(&[0, 0, 0, 1, 255, 255, 255, 255, 0, 0])
                .copied()
                .collect::<Vec<_>>(),
        );
        let both: Vec<u8> = call.iter().chain(&failing).copied().collect();
        assert_eq!(
            c.process(&s, &both, &mut out, &mut t, Timestamp(1), Instant::now())
                .unwrap(),
            (both.len(), false)
        );
        assert_eq!(out, both, "forwarded unchanged");
        let mut answer = msg(b'V', &[0, 0, 0, 4, 0, 0, 0, 0]);
        answer.extend(msg(b'Z', b"I"));
        answer.extend(msg(
            b'E',
            b"SERROR\0C42883\0Mfunction 99 does not exist\0\0",
        ));
        answer.extend(msg(b'Z', b"I"));
        let (mut srv, mut done, mut back) = (ServerSide::default(), Vec::new(), Vec::new());
        srv.process(&s, &answer, &mut back, &mut t, &mut done)
            .unwrap();
        assert_eq!(back, answer);
        assert_eq!(done.len(), 2);
        assert_eq!(
            &*done[0].statement,
            "(function call: lo_open, OID 952, 2 arguments)"
        );
        assert_eq!(
            (done[0].protocol, done[0].error.as_deref()),
            ("function", None)
        );
        // Its arguments, binary and of unknown types: in hex.
        assert_eq!(
            done[0].params.as_deref(),
            Some(
                &[
                    Some("\\x00004010".to_owned()),
                    Some("\\x00020000".to_owned())
                ][..]
            )
        );
        assert_eq!(&*done[1].statement, "(function call: OID 99, 1 argument)");
        assert_eq!(
            done[1].error.as_deref(),
            Some("42883: function 99 does not exist")
        );
        assert_eq!(
            done[1].params.as_deref(),
            Some(&[None][..]),
            "a NULL argument"
        );
        assert!(t.idle());
        // Truncated: three format codes announced, one sent; then no argument count.
        for (short, what) in [
            (&[0u8, 0, 3, 184, 0, 3, 0, 1][..], "argument formats"),
            (&[0, 0, 3, 184, 0, 1, 0, 1][..], "argument count"),
        ] {
            let r = c.process(
                &s,
                &msg(b'F', short),
                &mut out,
                &mut t,
                Timestamp(1),
                Instant::now(),
            );
            assert!(
                matches!(r, Err(WireError::Truncated { what: w, .. }) if w == what),
                "{what}: {:?}",
                r.err()
            );
        }
    }

    #[test]
    fn a_refused_statement_never_reaches_the_server_and_its_error_is_the_gateways() {
        let (s, mut t) = (info(), Tracker::default());
        let mut out = Vec::new();
        let q = msg(b'Q', b"drop database app\0");
        ClientSide::default()
            .process(&s, &q, &mut out, &mut t, Timestamp(1), Instant::now())
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&out)
                .to_lowercase()
                .contains("drop")
        );
        let mut server_error = Vec::new();
        wire::error_response(&mut server_error, "ERROR", "42601", "syntax error", None);
        server_error.extend(msg(b'Z', b"I"));
        let (mut back, mut done) = (Vec::new(), Vec::new());
        ServerSide::default()
            .process(&s, &server_error, &mut back, &mut t, &mut done)
            .unwrap();
        let text = String::from_utf8_lossy(&back);
        assert!(
            text.contains("42501") && text.contains("it matches `DROP DATABASE`"),
            "{text}"
        );
        assert!(!text.contains("syntax error"));
        assert_eq!(done[0].refused.as_deref(), Some("DROP DATABASE"));
        assert_eq!(t.stats().refused, 1);
    }

    #[test]
    fn malformed_messages_are_errors() {
        let (s, mut t) = (info(), Tracker::default());
        let mut out = Vec::new();
        for bad in [
            vec![b'Q', 0, 0, 0, 2],
            vec![b'Q', 0, 0, 0, 6, b'x', b'y'],
            vec![b'P', 0x7f, 0xff, 0xff, 0xff],
        ] {
            assert!(
                ClientSide::default()
                    .process(&s, &bad, &mut out, &mut t, Timestamp(1), Instant::now())
                    .is_err(),
                "{bad:?}"
            );
        }
        let mut done = Vec::new();
        assert!(
            ServerSide::default()
                .process(&s, &[b'E', 0x10, 0, 0, 0], &mut out, &mut t, &mut done)
                .is_err()
        );
    }
}
