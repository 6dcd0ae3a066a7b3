//! Email alerts against a real SMTP server this project did not write: Python's aiosmtpd,
//! started by each test on a free loopback port (plain, STARTTLS and implicit TLS with a CA
//! made by `openssl` for the test), and one that refuses every recipient.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use breakglass_alerts::{EmailChannel, EmailConfig, EmailTls};
use breakglass_engine::ports::{Channel, ChannelError};
use common::{alert, closed_port};
use secrecy::SecretString;
use tokio::process::{Child, Command};

fn aiosmtpd_available(test: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("aiosmtpd not installed: pip install aiosmtpd");
        }
        breakglass_testkit::skip(
            &format!("alerts::email::{test}"),
            "aiosmtpd not installed: pip install aiosmtpd",
        );
    }
    ok
}

/// aiosmtpd on 127.0.0.1:`port` with the given extra arguments; killed on drop.
struct Smtpd {
    port: u16,
    _child: Child,
}

async fn smtpd(port: u16, args: &[&str], pythonpath: Option<&Path>) -> Smtpd {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(p) = pythonpath {
        cmd.env("PYTHONPATH", p);
    }
    let child = cmd.spawn().unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Smtpd {
                port,
                _child: child,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("aiosmtpd did not start on port {port}");
}

fn config(port: u16, tls: EmailTls, ca_file: Option<PathBuf>) -> EmailConfig {
    EmailConfig {
        smtp_host: "127.0.0.1".into(),
        smtp_port: port,
        tls,
        username: None,
        password: None,
        from: "Breakglass <breakglass@example.com>".into(),
        to: vec!["oncall@example.com".into(), "security@example.com".into()],
        ca_file,
    }
}

/// The messages of a Maildir, as text.
fn maildir(dir: &Path) -> Vec<String> {
    let new = dir.join("new");
    let Ok(entries) = std::fs::read_dir(new) else {
        return vec![];
    };
    entries
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

async fn wait_for_mail(dir: &Path) -> Vec<String> {
    for _ in 0..50 {
        let mails = maildir(dir);
        if !mails.is_empty() {
            return mails;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    vec![]
}

fn assert_delivered(mail: &str) {
    // Quoted-printable may fold long lines; unfold soft breaks before looking.
    let text = mail.replace("=\r\n", "").replace("=\n", "");
    assert!(
        text.contains("Subject: Break requested: root-db by dave (INC-42)"),
        "{text}"
    );
    assert!(text.contains("X-Breakglass-Id: bg-42"), "{text}");
    assert!(text.contains("Message-ID: <bg-42@breakglass>"), "{text}");
    for needle in [
        "Procedure  root-db",
        "Requester  dave",
        "Reason     primary is down",
        "Ticket     INC-42",
        "Status     requested",
        "When       2026-11-28T23:59:01.123Z",
        "Break      brk-7",
        "Alert id   bg-42",
        "Approvers  alice <alice@example.com>, bob <@bob on Slack>",
        "Acknowledge: https://bg.example.com/acks/tok123",
        "Break: https://bg.example.com/breaks/brk-7",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in {text}");
    }
}

#[tokio::test]
async fn delivers_to_a_real_smtp_server() {
    if !aiosmtpd_available("delivers_to_a_real_smtp_server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    let server = smtpd(
        closed_port(),
        &["-c", "aiosmtpd.handlers.Mailbox", mail.to_str().unwrap()],
        None,
    )
    .await;
    let channel = EmailChannel::new(
        "mail",
        &config(server.port, EmailTls::None, None),
        Some("https://bg.example.com"),
    )
    .await
    .unwrap();
    let receipt = channel.send(&alert()).await.unwrap();
    assert!(receipt.status.starts_with("250"), "{}", receipt.status);

    let mails = wait_for_mail(&mail).await;
    assert_eq!(mails.len(), 1, "one message for both recipients");
    assert_delivered(&mails[0]);
}

#[tokio::test]
async fn a_server_that_refuses_mail_is_rejected() {
    if !aiosmtpd_available("a_server_that_refuses_mail_is_rejected") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rejectall.py"),
        "class RejectAll:\n    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):\n        return '550 5.7.1 Relaying denied'\n",
    )
    .unwrap();
    let server = smtpd(
        closed_port(),
        &["-c", "rejectall.RejectAll"],
        Some(dir.path()),
    )
    .await;
    let mut cfg = config(server.port, EmailTls::None, None);
    cfg.username = None;
    let channel = EmailChannel::new("mail", &cfg, None).await.unwrap();
    let e = channel.send(&alert()).await.unwrap_err();
    match &e {
        ChannelError::Rejected(m) => assert!(m.contains("550"), "{m}"),
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_is_down_is_unavailable() {
    let channel = EmailChannel::new("mail", &config(closed_port(), EmailTls::None, None), None)
        .await
        .unwrap();
    let e = channel.send(&alert()).await.unwrap_err();
    assert!(matches!(e, ChannelError::Unavailable(_)), "{e:?}");
}

/// A server that accepts the connection and never says anything: the send gives up at its
/// deadline, as unavailable (it held the alert for good before).
#[tokio::test]
async fn a_server_that_never_greets_is_unavailable_at_the_deadline() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let (conn, _) = silent.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(conn);
    });
    let channel = EmailChannel::new("mail", &config(port, EmailTls::None, None), None)
        .await
        .unwrap()
        .with_deadline(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let e = channel.send(&alert()).await.unwrap_err();
    assert!(matches!(e, ChannelError::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("within 0.5 s"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    held.abort();
}

#[tokio::test]
async fn password_is_not_in_errors_or_debug() {
    // The server is down, so the credentials are never sent; the point is what we print.
    let mut cfg = config(closed_port(), EmailTls::Starttls, None);
    cfg.username = Some("bg".into());
    cfg.password = Some(SecretString::from("hunter2-smtp-password"));
    let channel = EmailChannel::new("mail", &cfg, None).await.unwrap();
    let e = channel.send(&alert()).await.unwrap_err();
    assert!(matches!(e, ChannelError::Unavailable(_)), "{e:?}");
    let shown = format!("{e} {e:?} {channel:?} {cfg:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl CLI.
fn make_certs(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let run = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .ok()?;
    let ok = run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=breakglass test CA",
    ]) && run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    ok.then(|| {
        (
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server.key"),
        )
    })
}

async fn tls_roundtrip(test: &str, mode: EmailTls) {
    if !aiosmtpd_available(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = make_certs(dir.path()) else {
        breakglass_testkit::skip(&format!("alerts::email::{test}"), "openssl CLI missing");
        return;
    };
    let mail = dir.path().join("mail");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let tls_args = match mode {
        EmailTls::Tls => ["--smtpscert", cert, "--smtpskey", key],
        _ => ["--tlscert", cert, "--tlskey", key],
    };
    let mut args = tls_args.to_vec();
    args.extend(["-c", "aiosmtpd.handlers.Mailbox", mail.to_str().unwrap()]);
    let server = smtpd(closed_port(), &args, None).await;

    // Without the CA the server's certificate is not trusted: unavailable, not sent.
    let untrusted = EmailChannel::new("mail", &config(server.port, mode, None), None)
        .await
        .unwrap();
    let e = untrusted.send(&alert()).await.unwrap_err();
    assert!(matches!(e, ChannelError::Unavailable(_)), "{e:?}");

    let channel = EmailChannel::new(
        "mail",
        &config(server.port, mode, Some(ca)),
        Some("https://bg.example.com"),
    )
    .await
    .unwrap();
    let receipt = channel.send(&alert()).await.unwrap();
    assert!(receipt.status.starts_with("250"), "{}", receipt.status);
    let mails = wait_for_mail(&mail).await;
    assert_eq!(mails.len(), 1);
    assert_delivered(&mails[0]);
}

#[tokio::test]
async fn starttls_with_a_private_ca() {
    tls_roundtrip("starttls_with_a_private_ca", EmailTls::Starttls).await;
}

#[tokio::test]
async fn implicit_tls_with_a_private_ca() {
    tls_roundtrip("implicit_tls_with_a_private_ca", EmailTls::Tls).await;
}

#[tokio::test]
async fn starttls_required_but_not_offered_is_unavailable() {
    if !aiosmtpd_available("starttls_required_but_not_offered_is_unavailable") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    let server = smtpd(
        closed_port(),
        &["-c", "aiosmtpd.handlers.Mailbox", mail.to_str().unwrap()],
        None,
    )
    .await;
    let channel = EmailChannel::new("mail", &config(server.port, EmailTls::Starttls, None), None)
        .await
        .unwrap();
    let e = channel.send(&alert()).await.unwrap_err();
    assert!(matches!(e, ChannelError::Unavailable(_)), "{e:?}");
    assert!(maildir(&mail).is_empty(), "nothing sent in clear text");
}
