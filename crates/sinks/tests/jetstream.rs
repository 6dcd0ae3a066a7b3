//! Integration tests of the JetStream sink: against the machine's NATS (127.0.0.1:4222), and
//! against `nats-server`s started here for the account-permission and sink-down cases.
#![allow(clippy::unwrap_used)]

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use breakglass_audit::{AuditKey, Draft, Head, SinkRecord, append};
use breakglass_engine::ports::{Sink, SinkError};
use breakglass_sinks::jetstream::JetStreamSink;

const NATS_SERVER: &str = "/usr/sbin/nats-server";
const MACHINE_NATS: &str = "127.0.0.1:4222";

/// `n` chained entries followed by a checkpoint of the last one.
fn records(n: u64) -> Vec<SinkRecord> {
    let mut head: Option<Head> = None;
    let mut out = Vec::new();
    for i in 0..n {
        let draft = Draft {
            time_ms: 1_795_910_341_123 + i as i64,
            actor: "alice".into(),
            kind: "break.requested".into(),
            procedure: Some("prod-db-root".into()),
            break_id: Some(format!("brk_{i}")),
            payload: serde_json::json!({ "reason": "primary \"DB\" down ]", "n": i }),
        };
        let entry = append(head.as_ref(), draft).unwrap();
        head = Some(Head {
            seq: entry.seq,
            hash: entry.hash,
        });
        out.push(SinkRecord::Entry(entry));
    }
    let head = head.unwrap();
    let cp = AuditKey::from_seed([7; 32]).sign_checkpoint(head.seq, head.hash, 1_795_910_400_000);
    out.push(SinkRecord::Checkpoint(cp));
    out
}

fn unique(prefix: &str) -> String {
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{prefix}_{}_{:x}", std::process::id(), r & 0xffff_ffff)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether the test can start its own nats-server; records a skip (or fails under CI) if not.
fn have_nats_server(test: &str) -> bool {
    if Path::new(NATS_SERVER).exists() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("nats-server not installed: apt-get install nats-server");
    }
    breakglass_testkit::skip(
        test,
        "nats-server not installed: apt-get install nats-server",
    );
    false
}

/// A nats-server started by a test; killed when dropped.
struct NatsServer {
    child: Child,
    port: u16,
}

impl NatsServer {
    async fn start(port: u16, store: &Path, config: Option<&Path>) -> NatsServer {
        let mut cmd = Command::new(NATS_SERVER);
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(store.with_extension("log")).unwrap());
        if let Some(config) = config {
            cmd.arg("-c").arg(config);
        }
        let server = NatsServer {
            child: cmd.spawn().unwrap(),
            port,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(store.with_extension("log")).unwrap_or_default();
        panic!("nats-server did not listen on {port}:\n{log}");
    }

    fn url(&self, userinfo: &str) -> String {
        format!("nats://{userinfo}127.0.0.1:{}", self.port)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain JetStream client, as `user` (with `password`) when given.
async fn admin(url: &str, user: Option<(&str, &str)>) -> jetstream::Context {
    let mut options =
        async_nats::ConnectOptions::new().request_timeout(Some(Duration::from_secs(2)));
    if let Some((user, password)) = user {
        options = options.user_and_password(user.into(), password.into());
    }
    let client = options.connect(url).await.unwrap();
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_secs(2));
    js
}

async fn machine_nats(test: &str) -> Option<jetstream::Context> {
    match async_nats::connect(MACHINE_NATS).await {
        Ok(client) => {
            let mut js = jetstream::new(client);
            js.set_timeout(Duration::from_secs(2));
            Some(js)
        }
        Err(e) => {
            breakglass_testkit::skip(test, &format!("NATS not reachable at {MACHINE_NATS}: {e}"));
            None
        }
    }
}

#[tokio::test]
async fn delivers_deduplicates_reads_back_and_refuses_deletes() {
    let test = "sinks::jetstream::delivers_deduplicates_reads_back_and_refuses_deletes";
    let Some(js) = machine_nats(test).await else {
        return;
    };
    let stream_name = unique("BG_TEST");
    let subject = unique("bgtest").replace('_', "-");
    let url = format!("nats://{MACHINE_NATS}?stream={stream_name}&subject={subject}");
    let sink = JetStreamSink::open("js", &url).await.unwrap();

    let recs = records(3);
    for r in &recs {
        sink.deliver(r).await.unwrap();
    }
    // Redelivery (the outbox retrying after a lost acknowledgement) leaves no second copy.
    for r in &recs {
        sink.deliver(r).await.unwrap();
    }
    let mut stream = js.get_stream(&stream_name).await.unwrap();
    let info = stream.info().await.unwrap().clone();
    assert_eq!(info.state.messages, recs.len() as u64);
    assert!(info.config.deny_delete && info.config.deny_purge && !info.config.allow_rollup);
    assert_eq!(info.config.subjects, vec![format!("{subject}.>")]);
    let first = stream.get_raw_message(1).await.unwrap();
    assert_eq!(first.subject.as_str(), format!("{subject}.entry"));
    let last = stream.get_raw_message(4).await.unwrap();
    assert_eq!(last.subject.as_str(), format!("{subject}.checkpoint"));

    assert_eq!(sink.read_back().await.unwrap(), recs);

    // The stream itself refuses to lose messages.
    assert!(
        stream.delete_message(1).await.is_err(),
        "message delete accepted"
    );
    assert!(stream.purge().await.is_err(), "purge accepted");
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        recs.len() as u64
    );

    // A second sink on the same stream finds it locked and reads the same records.
    let again = JetStreamSink::open("js2", &url).await.unwrap();
    assert_eq!(again.read_back().await.unwrap(), recs);

    // Stream deletion is stopped only by account permissions (see the next test); this
    // account has none, which is also how the test cleans up.
    js.delete_stream(&stream_name).await.unwrap();
}

#[tokio::test]
async fn refuses_an_existing_unlocked_stream() {
    let test = "sinks::jetstream::refuses_an_existing_unlocked_stream";
    let Some(js) = machine_nats(test).await else {
        return;
    };
    let stream_name = unique("BG_TEST_OPEN");
    let subject = unique("bgtest").replace('_', "-");
    js.create_stream(jetstream::stream::Config {
        name: stream_name.clone(),
        subjects: vec![format!("{subject}.>")],
        ..Default::default()
    })
    .await
    .unwrap();
    let url = format!("nats://{MACHINE_NATS}?stream={stream_name}&subject={subject}");
    let err = JetStreamSink::open("js", &url).await.unwrap_err();
    js.delete_stream(&stream_name).await.unwrap();
    assert!(
        err.contains("deny_delete") && err.contains("deny_purge"),
        "{err}"
    );
}

/// The permissions documented in docs/sinks.md, for stream `BREAKGLASS_AUDIT` (JetStream
/// and its store directory come from the command line: `-js -sd DIR`).
const PERMISSIONS_CONFIG: &str = r#"
authorization {
  users = [
    { user: admin, password: "admin-test-pw" }
    {
      user: breakglass
      password: "sink-test-pw"
      permissions: {
        publish: {
          allow: [
            "breakglass.audit.>",
            "$JS.API.INFO",
            "$JS.API.STREAM.CREATE.BREAKGLASS_AUDIT",
            "$JS.API.STREAM.INFO.BREAKGLASS_AUDIT",
            "$JS.API.CONSUMER.CREATE.BREAKGLASS_AUDIT",
            "$JS.API.CONSUMER.CREATE.BREAKGLASS_AUDIT.>",
            "$JS.API.CONSUMER.INFO.BREAKGLASS_AUDIT.>",
            "$JS.API.CONSUMER.DELETE.BREAKGLASS_AUDIT.>",
            "$JS.API.CONSUMER.MSG.NEXT.BREAKGLASS_AUDIT.>",
          ]
          deny: [
            "$JS.API.STREAM.DELETE.>",
            "$JS.API.STREAM.PURGE.>",
            "$JS.API.STREAM.MSG.DELETE.>",
            "$JS.API.STREAM.UPDATE.>",
          ]
        }
        subscribe: { allow: ["_INBOX.>"] }
      }
    }
  ]
}
"#;

#[tokio::test]
async fn account_permissions_stop_stream_deletion() {
    let test = "sinks::jetstream::account_permissions_stop_stream_deletion";
    if !have_nats_server(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store: PathBuf = dir.path().join("js");
    let conf = dir.path().join("nats.conf");
    std::fs::write(&conf, PERMISSIONS_CONFIG).unwrap();
    let server = NatsServer::start(free_port(), &store, Some(&conf)).await;

    let sink = JetStreamSink::open("js", &server.url("breakglass:sink-test-pw@"))
        .await
        .unwrap();
    let recs = records(2);
    for r in recs.iter().chain(&recs) {
        sink.deliver(r).await.unwrap();
    }
    assert_eq!(sink.read_back().await.unwrap(), recs);

    // As the sink's own user: stream deletion, purge and message deletion are all refused.
    let user = admin(&server.url(""), Some(("breakglass", "sink-test-pw"))).await;
    assert!(
        user.delete_stream("BREAKGLASS_AUDIT").await.is_err(),
        "stream delete accepted"
    );
    let stream = user.get_stream("BREAKGLASS_AUDIT").await.unwrap();
    assert!(stream.purge().await.is_err(), "purge accepted");
    assert!(
        stream.delete_message(1).await.is_err(),
        "message delete accepted"
    );
    assert!(
        user.update_stream(jetstream::stream::Config {
            deny_delete: false,
            ..stream.cached_info().config.clone()
        })
        .await
        .is_err(),
        "stream update accepted"
    );

    // Everything is still there, as an unrestricted user sees it.
    let root = admin(&server.url(""), Some(("admin", "admin-test-pw"))).await;
    let mut stream = root.get_stream("BREAKGLASS_AUDIT").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        recs.len() as u64
    );
    assert!(
        stream.delete_message(1).await.is_err(),
        "deny_delete did not hold"
    );
    assert_eq!(sink.read_back().await.unwrap(), recs);
    server.stop();
}

#[tokio::test]
async fn unavailable_while_nats_is_down_then_catches_up() {
    let test = "sinks::jetstream::unavailable_while_nats_is_down_then_catches_up";
    if !have_nats_server(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("js");
    let port = free_port();
    let recs = records(3);

    // The sink opens while NATS is down, and waits.
    let sink = JetStreamSink::open("js", &format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    assert!(matches!(
        sink.deliver(&recs[0]).await,
        Err(SinkError::Unavailable(_))
    ));

    let server = NatsServer::start(port, &store, None).await;
    deliver_eventually(&sink, &recs[..2]).await;
    server.stop();

    // NATS goes away: the outbox keeps the records.
    for r in &recs[2..] {
        let got = sink.deliver(r).await;
        assert!(matches!(got, Err(SinkError::Unavailable(_))), "{got:?}");
    }

    let _server = NatsServer::start(port, &store, None).await;
    // The outbox retries what it holds (the last acknowledged record may come again too).
    deliver_eventually(&sink, &recs[1..]).await;
    assert_eq!(sink.read_back().await.unwrap(), recs);
    let js = admin(&format!("nats://127.0.0.1:{port}"), None).await;
    let mut stream = js.get_stream("BREAKGLASS_AUDIT").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        recs.len() as u64
    );
}

/// Delivers each record, retrying `Unavailable` for up to 30 s as the outbox would.
async fn deliver_eventually(sink: &JetStreamSink, recs: &[SinkRecord]) {
    for r in recs {
        let mut tries = 0;
        loop {
            match sink.deliver(r).await {
                Ok(()) => break,
                Err(SinkError::Unavailable(_)) if tries < 150 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("{}: {e}", r.message_id()),
            }
        }
    }
}
