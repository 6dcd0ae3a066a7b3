//! An SMTP server that refuses mail, through the real server's outbox: the alert is retried
//! with backoff, every refusal is recorded, no receipt is written; when the mail server starts
//! accepting, the alert is delivered and its receipt audited. The SMTP server is Python's
//! aiosmtpd, which this project did not write.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use common::admin;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use breakglass_custody::{Secret, keygen};
use breakglass_server::{ServerConfig, build, serve};
use tokio::process::{Child, Command};

fn aiosmtpd_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        breakglass_testkit::skip(
            "server::email_alerts",
            "aiosmtpd not installed: pip install aiosmtpd",
        );
    }
    ok
}

async fn smtpd(port: u16, handler: &str, pythonpath: &Path) -> Child {
    let child = Command::new("python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            handler,
        ])
        .env("PYTHONPATH", pythonpath)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("aiosmtpd did not start on port {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_mail_is_retried_recorded_and_delivered_later() {
    if !aiosmtpd_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("handlers.py"),
        "class RejectAll:\n    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):\n        return '550 5.7.1 mailbox unavailable'\n\nclass Accept:\n    async def handle_DATA(self, server, session, envelope):\n        return '250 2.0.0 queued as BG1'\n",
    )
    .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let refusing = smtpd(port, "handlers.RejectAll", dir.path()).await;

    let channels = dir.path().join("channels.yaml");
    std::fs::write(
        &channels,
        format!("channels:\n  - name: mail\n    kind: email\n    smtp_host: 127.0.0.1\n    smtp_port: {port}\n    tls: none\n    from: breakglass@example.test\n    to: [oncall@example.test]\n"),
    )
    .unwrap();
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.channels_file = Some(channels);
    let built = build(config).await.unwrap();
    let engine = built.state.engine.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, built.state, async move {
        let _ = stopped.await;
    }));

    let mut custodians = String::new();
    for name in ["alice", "bob"] {
        custodians.push_str(&format!(
            "  - name: {name}\n    key: {}\n",
            keygen().1.canonical()
        ));
    }
    let yaml = format!(
        "id: p\ntarget:\n  kind: secret\ncustodians:\n{custodians}quorum: 2\nmax_grant: 5m\nalert_channels: [mail]\n"
    );
    engine
        .apply(&admin(), &[("p.yaml".into(), yaml)])
        .await
        .unwrap();
    engine
        .seal(&admin(), "p", Secret::new(b"pw".to_vec()))
        .await
        .unwrap();

    // Refused twice or more, each attempt recorded; no receipt.
    let start = Instant::now();
    loop {
        let attempts = engine
            .delivery_attempts(&admin(), Some("mail"), 50)
            .await
            .unwrap();
        let refused = attempts
            .iter()
            .filter(|a| !a.ok && a.status == "rejected")
            .count();
        if refused >= 2 {
            assert!(
                attempts
                    .iter()
                    .all(|a| a.error.as_deref().is_some_and(|e| e.contains("550"))),
                "{attempts:?}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "expected two refusals: {attempts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let receipts = engine
        .audit_entries(&admin(), 1, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "alert.delivered")
        .count();
    assert_eq!(receipts, 0);

    // The mail server starts accepting: the same alert is delivered, and its receipt audited.
    drop(refusing);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _accepting = smtpd(port, "handlers.Accept", dir.path()).await;
    let start = Instant::now();
    loop {
        let entries = engine.audit_entries(&admin(), 1, 1000).await.unwrap();
        if let Some(r) = entries.iter().find(|e| e.kind == "alert.delivered") {
            assert_eq!(r.payload["channel"], "mail");
            assert!(
                r.payload["attempts"].as_i64().unwrap() >= 3,
                "{}",
                r.payload
            );
            assert!(
                r.payload["status"].as_str().unwrap().starts_with("250"),
                "{}",
                r.payload
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
