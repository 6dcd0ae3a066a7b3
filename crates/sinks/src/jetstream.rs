//! NATS JetStream sink: every record is published to a stream that refuses message deletes
//! and purges (`deny_delete`, `deny_purge`), deduplicated by `Nats-Msg-Id`.
//!
//! URL: `nats://[user:pass@]host:port?stream=BREAKGLASS_AUDIT&subject=breakglass.audit`.
//! Entries go to `<subject>.entry`, checkpoints to `<subject>.checkpoint`; the stream captures
//! `<subject>.>`. The stream flags stop *message* deletion; deleting the whole *stream* must be
//! denied by the NATS account permissions of the sink's user (see `docs/sinks.md`).
//!
//! The connection is made in the background and retried forever, so the server starts while
//! NATS is down; until it is up, `deliver` returns [`SinkError::Unavailable`] and the outbox
//! keeps the record.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::context::{GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use async_trait::async_trait;
use breakglass_audit::SinkRecord;
use breakglass_engine::ports::{Sink, SinkError};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

/// Stream name used when the URL gives none.
pub const DEFAULT_STREAM: &str = "BREAKGLASS_AUDIT";
/// Subject prefix used when the URL gives none.
pub const DEFAULT_SUBJECT: &str = "breakglass.audit";
/// How long the server remembers a `Nats-Msg-Id` to drop a redelivery.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// How long `open` waits for a first connection before deferring the stream check.
const OPEN_WAIT: Duration = Duration::from_secs(3);
/// Timeout of each JetStream API request and publish acknowledgement.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the next message while reading the stream back.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// An audit sink writing to a locked NATS JetStream stream.
pub struct JetStreamSink {
    name: String,
    stream: String,
    subject: String,
    client: async_nats::Client,
    js: jetstream::Context,
    /// Set once the stream has been found locked (or created locked).
    checked: OnceCell<()>,
}

impl std::fmt::Debug for JetStreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds the credentials; show only what identifies the sink.
        f.debug_struct("JetStreamSink")
            .field("name", &self.name)
            .field("stream", &self.stream)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl JetStreamSink {
    /// Opens the sink named `name` from a `nats://` URL.
    ///
    /// Fails on a malformed URL, and when NATS is reachable but the stream exists without
    /// `deny_delete`/`deny_purge` (or with rollups or limits that would drop entries). When NATS
    /// is unreachable the sink opens anyway and checks the stream on the first delivery.
    pub async fn open(name: &str, url: &str) -> Result<JetStreamSink, String> {
        let target = Target::parse(url)?;
        let sink_name = name.to_owned();
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("breakglass-sink-{name}"))
            .retry_on_initial_connect()
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .event_callback(move |event| {
                let sink = sink_name.clone();
                async move { tracing::info!(sink = %sink, "NATS: {event}") }
            });
        match target.credentials {
            Some(Credentials::UserPassword(user, pass)) => {
                options = options.user_and_password(user, pass);
            }
            Some(Credentials::Token(token)) => options = options.token(token),
            None => {}
        }
        let client = options
            .connect(target.server.as_str())
            .await
            .map_err(|e| format!("cannot start the NATS client for {}: {e}", target.server))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(REQUEST_TIMEOUT);
        let sink = JetStreamSink {
            name: name.to_owned(),
            stream: target.stream,
            subject: target.subject,
            client,
            js,
            checked: OnceCell::new(),
        };
        if sink.wait_connected(OPEN_WAIT).await {
            match sink.ensure_stream().await {
                Ok(()) => {}
                Err(SinkError::Unavailable(why)) => {
                    tracing::warn!(sink = %sink.name, "stream check deferred: {why}");
                }
                Err(e) => return Err(e.to_string()),
            }
        } else {
            tracing::warn!(
                sink = %sink.name,
                "NATS at {} not reachable yet; deliveries wait until it is",
                target.server
            );
        }
        Ok(sink)
    }

    /// The stream this sink writes to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The subject prefix: records go to `<subject>.entry` and `<subject>.checkpoint`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    async fn wait_connected(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.client.connection_state() != State::Connected {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        true
    }

    fn require_connected(&self) -> Result<(), SinkError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            _ => Err(SinkError::Unavailable("not connected to NATS".into())),
        }
    }

    /// Finds the stream and checks it is locked, or creates it locked; once per sink.
    async fn ensure_stream(&self) -> Result<(), SinkError> {
        self.checked
            .get_or_try_init(|| async {
                match self.js.get_stream(&self.stream).await {
                    Ok(stream) => check_locked(&stream.cached_info().config, &self.subject)
                        .map_err(SinkError::Rejected),
                    Err(e) => match e.kind() {
                        GetStreamErrorKind::JetStream(err)
                            if err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                        {
                            self.create_stream().await
                        }
                        GetStreamErrorKind::JetStream(err) => Err(SinkError::Rejected(format!(
                            "stream `{}`: {err}",
                            self.stream
                        ))),
                        _ => Err(SinkError::Unavailable(format!(
                            "stream `{}` info: {e}",
                            self.stream
                        ))),
                    },
                }
            })
            .await
            .map(|_| ())
    }

    async fn create_stream(&self) -> Result<(), SinkError> {
        let config = locked_config(&self.stream, &self.subject);
        match self.js.create_stream(config).await {
            Ok(stream) => {
                tracing::info!(sink = %self.name, stream = %self.stream, "created the audit stream");
                check_locked(&stream.cached_info().config, &self.subject)
                    .map_err(SinkError::Rejected)
            }
            Err(e) => {
                use async_nats::jetstream::context::CreateStreamErrorKind as K;
                match e.kind() {
                    // Another server created it meanwhile (or it differs): look again.
                    K::JetStream(err) if err.error_code() == ErrorCode::STREAM_NAME_EXIST => {
                        let stream = self
                            .js
                            .get_stream(&self.stream)
                            .await
                            .map_err(|e| SinkError::Unavailable(format!("stream info: {e}")))?;
                        check_locked(&stream.cached_info().config, &self.subject)
                            .map_err(SinkError::Rejected)
                    }
                    K::JetStream(err) => Err(SinkError::Rejected(format!(
                        "cannot create stream `{}`: {err}",
                        self.stream
                    ))),
                    K::TimedOut | K::Response | K::JetStreamUnavailable => {
                        Err(SinkError::Unavailable(format!(
                            "cannot create stream `{}`: {e}",
                            self.stream
                        )))
                    }
                    _ => Err(SinkError::Rejected(format!(
                        "cannot create stream `{}`: {e}",
                        self.stream
                    ))),
                }
            }
        }
    }

    fn record_subject(&self, record: &SinkRecord) -> String {
        match record {
            SinkRecord::Entry(_) => format!("{}.entry", self.subject),
            SinkRecord::Checkpoint(_) => format!("{}.checkpoint", self.subject),
        }
    }
}

#[async_trait]
impl Sink for JetStreamSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, record: &SinkRecord) -> Result<(), SinkError> {
        self.require_connected()?;
        self.ensure_stream().await?;
        let id = record.message_id();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        let ack = self
            .js
            .publish_with_headers(
                self.record_subject(record),
                headers,
                record.to_line().into(),
            )
            .await
            .map_err(|e| publish_error(e.kind(), &e.to_string(), &self.stream))?
            .await
            .map_err(|e| publish_error(e.kind(), &e.to_string(), &self.stream))?;
        if ack.stream != self.stream {
            // Another stream captures our subjects: the record is not where `read_back` looks.
            return Err(SinkError::Rejected(format!(
                "record stored in stream `{}`, expected `{}`",
                ack.stream, self.stream
            )));
        }
        if ack.duplicate {
            tracing::debug!(sink = %self.name, id = %id, "already stored; redelivery dropped");
        }
        Ok(())
    }

    async fn read_back(&self) -> Result<Vec<SinkRecord>, SinkError> {
        self.require_connected()?;
        self.ensure_stream().await?;
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| SinkError::Unavailable(format!("stream info: {e}")))?;
        let state = &stream.cached_info().state;
        let last = state.last_sequence;
        if state.messages == 0 {
            return Ok(Vec::new());
        }
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::All,
                description: Some(format!("breakglass sink `{}` read-back", self.name)),
                ..Default::default()
            })
            .await
            .map_err(|e| SinkError::Unavailable(format!("cannot create a reader: {e}")))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| SinkError::Unavailable(format!("cannot read the stream: {e}")))?;
        let mut reader = Dedup::default();
        loop {
            let next = tokio::time::timeout(READ_TIMEOUT, messages.next())
                .await
                .map_err(|_| SinkError::Unavailable("timed out reading the stream".into()))?;
            let message = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    return Err(SinkError::Unavailable(format!("reading the stream: {e}")));
                }
                None => break,
            };
            let info = message
                .info()
                .map_err(|e| SinkError::Unavailable(format!("bad delivery metadata: {e}")))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            reader.push(seq, &message.payload)?;
            if seq >= last || pending == 0 {
                break;
            }
        }
        Ok(reader.records)
    }
}

/// The configuration of a new audit stream: file storage, no limits, no rollups, no deletes.
pub fn locked_config(stream: &str, subject: &str) -> StreamConfig {
    StreamConfig {
        name: stream.to_owned(),
        description: Some("breakglass audit log: entries and signed checkpoints".into()),
        subjects: vec![format!("{subject}.>")],
        storage: StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        allow_rollup: false,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

/// Checks that an existing stream keeps what it holds: refuses one without `deny_delete` or
/// `deny_purge`, with rollups, with limits that would discard entries, or not capturing
/// `<subject>.>`.
pub fn check_locked(config: &StreamConfig, subject: &str) -> Result<(), String> {
    let name = &config.name;
    let mut problems = Vec::new();
    if !config.deny_delete {
        problems.push("deny_delete is off (messages can be deleted)");
    }
    if !config.deny_purge {
        problems.push("deny_purge is off (the stream can be purged)");
    }
    if config.allow_rollup {
        problems.push("rollups are allowed (a publisher can purge with Nats-Rollup)");
    }
    if config.max_messages > 0
        || config.max_bytes > 0
        || config.max_messages_per_subject > 0
        || !config.max_age.is_zero()
    {
        problems.push(
            "limits (max_msgs, max_bytes, max_msgs_per_subject or max_age) would discard entries",
        );
    }
    let wanted = format!("{subject}.>");
    if !config.subjects.iter().any(|s| *s == wanted || s == ">") {
        problems.push("it does not capture the sink's subjects");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "stream `{name}` exists but is not locked for audit use: {}; fix it or use another stream",
            problems.join("; ")
        ))
    }
}

fn publish_error(kind: PublishErrorKind, text: &str, stream: &str) -> SinkError {
    match kind {
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
            SinkError::Unavailable(format!("publish: {text}"))
        }
        // The stream was there when the sink opened; a vanished stream is not recreated, since
        // the new one would silently miss every earlier entry.
        PublishErrorKind::StreamNotFound => SinkError::Rejected(format!(
            "stream `{stream}` not found (deleted?); recreate it deliberately and re-export the log"
        )),
        _ => SinkError::Rejected(format!("publish: {text}")),
    }
}

/// Parsed records in stream order, one per message id.
#[derive(Default)]
struct Dedup {
    records: Vec<SinkRecord>,
    lines: HashMap<String, String>,
}

impl Dedup {
    fn push(&mut self, seq: u64, payload: &[u8]) -> Result<(), SinkError> {
        let line = std::str::from_utf8(payload)
            .map_err(|_| SinkError::Rejected(format!("stream message {seq} is not UTF-8")))?;
        let record = SinkRecord::from_line(line).map_err(|e| {
            SinkError::Rejected(format!("stream message {seq} is not a sink record: {e}"))
        })?;
        let id = record.message_id();
        match self.lines.get(&id) {
            Some(seen) if seen == line => Ok(()),
            // Same id, other content: someone wrote a competing record; do not pick one.
            Some(_) => Err(SinkError::Rejected(format!(
                "stream message {seq}: `{id}` appears twice with different content"
            ))),
            None => {
                self.lines.insert(id, line.to_owned());
                self.records.push(record);
                Ok(())
            }
        }
    }
}

enum Credentials {
    UserPassword(String, String),
    Token(String),
}

/// A `nats://` URL taken apart; `server` never holds the credentials.
struct Target {
    server: String,
    credentials: Option<Credentials>,
    stream: String,
    subject: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("nats://")
            .ok_or("URL must start with nats://")?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if hostport.is_empty() || hostport.contains(['/', '@', ' ']) {
            return Err("expected nats://[user:pass@]host:port".into());
        }
        let credentials = match userinfo {
            None => None,
            Some(u) => Some(match u.split_once(':') {
                Some((user, pass)) => Credentials::UserPassword(
                    percent_decode(user).ok_or("bad %-escape in the user name")?,
                    percent_decode(pass).ok_or("bad %-escape in the password")?,
                ),
                None => Credentials::Token(percent_decode(u).ok_or("bad %-escape in the token")?),
            }),
        };
        let mut stream = DEFAULT_STREAM.to_owned();
        let mut subject = DEFAULT_SUBJECT.to_owned();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "stream" => stream = value.to_owned(),
                "subject" => subject = value.to_owned(),
                other => return Err(format!("unknown URL parameter `{other}` (stream, subject)")),
            }
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 255
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !name_ok(&stream) {
            return Err("stream must be letters, digits, '_' or '-'".into());
        }
        if !subject.split('.').all(name_ok) {
            return Err(
                "subject must be dot-separated tokens of letters, digits, '_' or '-'".into(),
            );
        }
        Ok(Target {
            server: format!("nats://{hostport}"),
            credentials,
            stream,
            subject,
        })
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_keeps_credentials_out_of_the_server() {
        let t = Target::parse("nats://bg:p%40ss@127.0.0.1:4222?stream=S1&subject=a.b").unwrap();
        assert_eq!(t.server, "nats://127.0.0.1:4222");
        assert_eq!((t.stream.as_str(), t.subject.as_str()), ("S1", "a.b"));
        assert!(
            matches!(t.credentials, Some(Credentials::UserPassword(ref u, ref p)) if u == "bg" && p == "p@ss")
        );
        let t = Target::parse("nats://127.0.0.1:4222").unwrap();
        assert_eq!(
            (t.stream.as_str(), t.subject.as_str()),
            (DEFAULT_STREAM, DEFAULT_SUBJECT)
        );
        assert!(t.credentials.is_none());
        assert!(matches!(
            Target::parse("nats://tok@h:1/").unwrap().credentials,
            Some(Credentials::Token(ref t)) if t == "tok"
        ));
        for bad in [
            "nats://",
            "http://h:1",
            "nats://h:1?stream=a.b",
            "nats://h:1?subject=a.>",
            "nats://h:1?subject=a..b",
            "nats://h:1?x=1",
            "nats://u:%zz@h:1",
        ] {
            let err = Target::parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(!err.contains("%zz"), "{err}");
        }
    }

    #[test]
    fn refuses_unlocked_streams() {
        let good = locked_config("S", "a.b");
        assert_eq!(check_locked(&good, "a.b"), Ok(()));
        for (edit, needle) in [
            (
                Box::new(|c: &mut StreamConfig| c.deny_delete = false)
                    as Box<dyn Fn(&mut StreamConfig)>,
                "deny_delete",
            ),
            (
                Box::new(|c: &mut StreamConfig| c.deny_purge = false),
                "deny_purge",
            ),
            (
                Box::new(|c: &mut StreamConfig| c.allow_rollup = true),
                "rollups",
            ),
            (
                Box::new(|c: &mut StreamConfig| c.max_age = Duration::from_secs(60)),
                "limits",
            ),
            (
                Box::new(|c: &mut StreamConfig| c.max_messages_per_subject = 10),
                "limits",
            ),
            (
                Box::new(|c: &mut StreamConfig| c.subjects = vec!["other.>".into()]),
                "subjects",
            ),
        ] {
            let mut c = good.clone();
            edit(&mut c);
            let err = check_locked(&c, "a.b").unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn dedup_keeps_first_and_refuses_conflicts_and_garbage() {
        let entry = |reason: &str| {
            let draft = breakglass_audit::Draft {
                time_ms: 0,
                actor: "a".into(),
                kind: "k".into(),
                procedure: None,
                break_id: None,
                payload: serde_json::json!({ "reason": reason }),
            };
            SinkRecord::Entry(breakglass_audit::append(None, draft).unwrap())
        };
        let (one, forged) = (entry("one"), entry("forged"));
        let mut d = Dedup::default();
        d.push(1, one.to_line().as_bytes()).unwrap();
        d.push(2, one.to_line().as_bytes()).unwrap();
        assert_eq!(d.records, vec![one]);
        let err = d.push(3, forged.to_line().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("entry-1"), "{err}");
        for garbage in [&b"\xff"[..], b"{", b""] {
            assert!(d.push(4, garbage).is_err());
        }
        assert_eq!(d.records.len(), 1);
    }
}
