//! Tests of the syslog sink: the exact RFC 5424 bytes, and delivery to a real rsyslogd started
//! by the test on a free loopback port.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use breakglass_audit::{AuditKey, Draft, Head, SinkRecord, append};
use breakglass_engine::ports::{Sink, SinkError};
use breakglass_sinks::syslog::{SyslogSink, format_message, frame};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// The worked example of docs/audit-log-format.md.
fn worked_example() -> SinkRecord {
    let entry = append(
        None,
        Draft {
            time_ms: 1_795_910_341_123,
            actor: "alice".into(),
            kind: "break.requested".into(),
            procedure: Some("prod-db-root".into()),
            break_id: Some("brk_01".into()),
            payload: serde_json::json!({
                "duration_s": 3600, "reason": "primary DB down", "ticket": "INC-4711"
            }),
        },
    )
    .unwrap();
    SinkRecord::Entry(entry)
}

/// `n` chained entries (with awkward text) followed by a checkpoint of the last one.
fn records(n: u64) -> Vec<SinkRecord> {
    let mut head: Option<Head> = None;
    let mut out = Vec::new();
    for i in 0..n {
        let draft = Draft {
            time_ms: 1_795_910_341_123 + i as i64,
            actor: "ålice".into(),
            kind: if i == 1 {
                r#"odd"kind]\x"#.into()
            } else {
                "break.approved".into()
            },
            procedure: Some("prod-db-root".into()),
            break_id: None,
            payload: serde_json::json!({ "reason": "line\nbreak \"quoted\" ]", "n": i }),
        };
        let entry = append(head.as_ref(), draft).unwrap();
        head = Some(Head {
            seq: entry.seq,
            hash: entry.hash,
        });
        out.push(SinkRecord::Entry(entry));
    }
    let head = head.unwrap();
    let cp = AuditKey::from_seed([3; 32]).sign_checkpoint(head.seq, head.hash, 1_795_910_400_000);
    out.push(SinkRecord::Checkpoint(cp));
    out
}

#[test]
fn formats_rfc5424_with_octet_counting() {
    let record = worked_example();
    let message = format_message(&record, "bg-host", "4242");
    let expected = concat!(
        r#"<85>1 2026-11-28T23:59:01.123Z bg-host breakglass 4242 entry "#,
        r#"[breakglass@32473 seq="1" kind="break.requested"] "#,
        r#"{"seq":1,"time":"2026-11-28T23:59:01.123Z","time_ms":1795910341123,"actor":"alice","#,
        r#""kind":"break.requested","procedure":"prod-db-root","break":"brk_01","#,
        r#""payload":{"duration_s":3600,"reason":"primary DB down","ticket":"INC-4711"},"#,
        r#""prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","#,
        r#""hash":"91d7119d4b6f7626736c0a3bf9cb6467b66aff69b13b69c977d5155cb128dcfd"}"#,
    );
    assert_eq!(message, expected);
    let framed = frame(&message);
    assert_eq!(
        framed,
        format!("{} {expected}", expected.len()).into_bytes()
    );
    assert!(
        framed.starts_with(b"493 <85>1 "),
        "{}",
        String::from_utf8_lossy(&framed[..12])
    );

    let recs = records(2);
    let odd = format_message(&recs[1], "h", "1");
    assert!(
        odd.contains(r#"[breakglass@32473 seq="2" kind="odd\"kind\]\\x"] {"#),
        "{odd}"
    );
    let cp = format_message(&recs[2], "", "1");
    let SinkRecord::Checkpoint(c) = &recs[2] else {
        unreachable!()
    };
    assert!(
        cp.starts_with(&format!(
            r#"<85>1 2026-11-29T00:00:00.000Z - breakglass 1 checkpoint [breakglass@32473 seq="2" kind="checkpoint" key_id="{}"] {{"checkpoint""#,
            c.checkpoint.key_id
        )),
        "{cp}"
    );
}

#[tokio::test]
async fn cannot_be_read_back() {
    let sink = SyslogSink::open("siem", "syslog+tcp://127.0.0.1:9").unwrap();
    assert!(matches!(sink.read_back().await, Err(SinkError::NotReadable(n)) if n == "siem"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn have_rsyslog(test: &str) -> bool {
    if Path::new(RSYSLOGD).exists() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("rsyslog not installed: apt-get install rsyslog");
    }
    breakglass_testkit::skip(test, "rsyslog not installed: apt-get install rsyslog");
    false
}

/// An rsyslogd started by a test with its config, work directory and output in `dir`.
struct Rsyslog {
    child: Child,
    raw: PathBuf,
    parsed: PathBuf,
}

impl Rsyslog {
    async fn start(dir: &Path, port: u16) -> Rsyslog {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let raw = dir.join("raw.log");
        let parsed = dir.join("parsed.log");
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="imtcp")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="raw" type="string" string="%rawmsg%\n")
template(name="parsed" type="string" string="%pri% %app-name% %msgid% %structured-data% %msg%\n")
action(type="omfile" file="{raw}" template="raw")
action(type="omfile" file="{parsed}" template="parsed")
"#,
                work = work.display(),
                raw = raw.display(),
                parsed = parsed.display(),
            ),
        )
        .unwrap();
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rsyslogd.err")).unwrap())
            .spawn()
            .unwrap();
        let server = Rsyslog { child, raw, parsed };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let err = std::fs::read_to_string(dir.join("rsyslogd.err")).unwrap_or_default();
        panic!("rsyslogd did not listen on {port}:\n{err}");
    }

    /// Waits (10 s at most) until every record's JSON line is in both outputs, and checks
    /// rsyslog parsed each as RFC 5424 with our MSGID, structured data and message.
    async fn expect(&self, recs: &[SinkRecord]) {
        let mut last = String::new();
        for _ in 0..100 {
            let raw = std::fs::read_to_string(&self.raw).unwrap_or_default();
            let parsed = std::fs::read_to_string(&self.parsed).unwrap_or_default();
            let all = recs.iter().all(|r| {
                let line = r.to_line();
                let msgid = if matches!(r, SinkRecord::Entry(_)) {
                    "entry"
                } else {
                    "checkpoint"
                };
                raw.lines().any(|l| l.ends_with(&format!("] {line}")))
                    && parsed.lines().any(|l| {
                        l.starts_with(&format!("85 breakglass {msgid} [breakglass@32473 seq="))
                            && l.ends_with(&format!("] {line}"))
                    })
            });
            if all {
                return;
            }
            last = parsed;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("records missing from rsyslog's output:\n{last}");
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn delivers_to_rsyslog() {
    if !have_rsyslog("sinks::syslog::delivers_to_rsyslog") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start(dir.path(), port).await;
    let sink = SyslogSink::open("siem", &format!("syslog+tcp://127.0.0.1:{port}")).unwrap();
    let recs = records(5);
    for r in &recs {
        sink.deliver(r).await.unwrap();
    }
    rsyslog.expect(&recs).await;
}

#[tokio::test]
async fn unavailable_while_rsyslog_is_down_then_delivers() {
    if !have_rsyslog("sinks::syslog::unavailable_while_rsyslog_is_down_then_delivers") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The port is held (bound, not listening) while the collector is down: a connection to it
    // is refused, and the kernel gives it to no other test's listener meanwhile (a port only
    // picked and released could be, and then the "down" collector would accept).
    let hold = tokio::net::TcpSocket::new_v4().unwrap();
    hold.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = hold.local_addr().unwrap().port();
    let sink = SyslogSink::open("siem", &format!("syslog+tcp://127.0.0.1:{port}")).unwrap();
    let recs = records(3);
    for r in &recs {
        let got = sink.deliver(r).await;
        assert!(matches!(got, Err(SinkError::Unavailable(_))), "{got:?}");
    }

    drop(hold);
    let rsyslog = Rsyslog::start(dir.path(), port).await;
    for r in &recs {
        sink.deliver(r).await.unwrap();
    }
    rsyslog.expect(&recs).await;

    // A restarted collector: the kept connection is noticed as closed and replaced.
    drop(rsyslog);
    let rsyslog = Rsyslog::start(dir.path(), port).await;
    let more = records(6);
    for r in &more[3..] {
        sink.deliver(r).await.unwrap();
    }
    rsyslog.expect(&more[3..]).await;
}
