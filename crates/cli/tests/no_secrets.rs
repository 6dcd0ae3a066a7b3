//! No secret at rest, in the logs or in any answer: a whole break runs against a server logging
//! at `trace`; afterwards neither its log, nor any byte of its SQLite files (database and WAL),
//! nor any answer of the API (listings, records, audit export, verification, readiness,
//! /metrics) or the web UI (pages and their Server-Sent Event streams) contains the sealed
//! secret (plain, hex, base64), a custodian's decrypted share, or an API token. The single
//! reveal reaches the requester only, encrypted to their key.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{bin_path, breakglass, keygen, procedure_yaml, stdout, stdout_json};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Kills the server when the test ends, even on panic.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A GET over plain HTTP/1.1 with `Connection: close`: status line, headers and body as they
/// came off the wire. A stream (SSE) is read for `stream_for`, then cut.
fn http_get(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    stream_for: Option<Duration>,
) -> Vec<u8> {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(stream_for.unwrap_or(Duration::from_secs(10))))
        .unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if stream_for.is_some()
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                break;
            }
            Err(e) => panic!("reading {path}: {e}"),
        }
    }
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "GET {path}: {}",
        String::from_utf8_lossy(&out[..out.len().min(300)])
    );
    out
}

/// Every ASCII-armored age file in `bytes` (shares are stored that way).
fn age_files(bytes: &[u8]) -> Vec<Vec<u8>> {
    const BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
    const END: &[u8] = b"-----END AGE ENCRYPTED FILE-----";
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(start) = bytes[i..].windows(BEGIN.len()).position(|w| w == BEGIN) {
        let start = i + start;
        let Some(len) = bytes[start..].windows(END.len()).position(|w| w == END) else {
            break;
        };
        let end = start + len + END.len();
        out.push(bytes[start..end].to_vec());
        i = end;
    }
    out
}

#[test]
fn secrets_never_reach_logs_or_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log_path = dir.path().join("server.log");
    let child = Command::new(bin_path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("BREAKGLASS_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let server = Kill(child);
    let start = Instant::now();
    let url = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.starts_with("breakglass serving on "))
        {
            break line
                .trim_start_matches("breakglass serving on ")
                .split(' ')
                .next()
                .unwrap()
                .to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let cli = || {
        let mut c = breakglass();
        c.args(["--server", &url, "--data-dir"]).arg(&data);
        c
    };

    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let custodians: Vec<(String, String)> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| (n.to_string(), keygen(&keys, n).1))
        .collect();
    let list: Vec<(&str, &str)> = custodians
        .iter()
        .map(|(n, k)| (n.as_str(), k.as_str()))
        .collect();
    let file = keys.join("p.yaml");
    std::fs::write(&file, procedure_yaml("p", &list, 2, "15m")).unwrap();
    cli()
        .args(["procedure", "apply"])
        .arg(&file)
        .assert()
        .success();
    let (dave_key, dave_pub) = keygen(&keys, "dave");
    let a = cli()
        .args([
            "actor",
            "add",
            "dave",
            "--role",
            "requester",
            "--key",
            &dave_pub,
            "--api-token",
        ])
        .assert()
        .success();
    let api_token = stdout(&a)
        .lines()
        .find_map(|l| l.strip_prefix("API token (shown once): "))
        .unwrap()
        .to_owned();
    let secret = "Tr0ub4dor&3-never-on-disk";
    cli()
        .args(["seal", "p"])
        .write_stdin(secret)
        .assert()
        .success();

    let a = cli()
        .arg("--identity")
        .arg(&dave_key)
        .args([
            "--output",
            "json",
            "break",
            "open",
            "p",
            "--reason",
            "scan",
            "--ticket",
            "T-9",
            "--duration",
            "1m",
        ])
        .assert()
        .success();
    let id = stdout_json(&a)["id"].as_str().unwrap().to_owned();
    for name in ["alice", "bob"] {
        cli()
            .arg("--identity")
            .arg(keys.join(format!("{name}.key")))
            .args(["approve", &id])
            .assert()
            .success();
    }
    let a = cli()
        .arg("--identity")
        .arg(&dave_key)
        .args(["break", "reveal", &id])
        .assert()
        .success();
    assert_eq!(stdout(&a), format!("{secret}\n"));

    // Every other answer the server gives: the API's listings and records, the audit export,
    // /metrics, the web UI's pages and their live streams.
    let admin_token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let bearer = format!("Bearer {}", admin_token.trim());
    let cookie = format!("bg_session={}", admin_token.trim());
    let mut answers = Vec::new();
    for path in [
        "/api/procedures".to_owned(),
        "/api/procedures/p".to_owned(),
        "/api/breaks".to_owned(),
        format!("/api/breaks/{id}"),
        "/api/audit".to_owned(),
        "/api/audit/export".to_owned(),
        "/api/audit/verify".to_owned(),
        "/api/readiness".to_owned(),
        "/api/actors".to_owned(),
        "/api/attestations".to_owned(),
        "/api/drills".to_owned(),
        "/metrics".to_owned(),
    ] {
        answers.extend(http_get(&url, &path, &[("Authorization", &bearer)], None));
    }
    for path in [
        "/".to_owned(),
        "/procedures/p".to_owned(),
        format!("/breaks/{id}"),
        "/audit".to_owned(),
        "/inventory".to_owned(),
    ] {
        answers.extend(http_get(&url, &path, &[("Cookie", &cookie)], None));
    }
    for path in ["/events".to_owned(), format!("/breaks/{id}/events")] {
        let got = http_get(
            &url,
            &path,
            &[("Cookie", &cookie)],
            Some(Duration::from_millis(800)),
        );
        assert!(contains(&got, b"event: "), "{path} streamed no event");
        answers.extend(got);
    }
    assert!(
        contains(&answers, b"break.granted"),
        "the answers were read"
    );
    drop(server);

    let log = std::fs::read(&log_path).unwrap();
    assert!(
        log.len() > 1000,
        "the trace log has only {} bytes",
        log.len()
    );
    let mut disk = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("breakglass.db")
        {
            disk.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(
        disk.len() > 10_000,
        "scanned only {} bytes of database files",
        disk.len()
    );

    // The decrypted shares, recovered here from the stored age files with the custodians' keys.
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("the secret".into(), secret.as_bytes().to_vec()),
        (
            "the secret in base64".into(),
            base64::engine::general_purpose::STANDARD
                .encode(secret)
                .into_bytes(),
        ),
        (
            "the secret in hex".into(),
            secret
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
        ),
        (
            "the secret in URL-safe base64".into(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(secret)
                .into_bytes(),
        ),
        ("dave's API token".into(), api_token.into_bytes()),
    ];
    for name in ["alice", "bob", "carol"] {
        let identity = breakglass_custody::Identity::parse(
            &std::fs::read_to_string(keys.join(format!("{name}.key"))).unwrap(),
        )
        .unwrap();
        let share = age_files(&disk)
            .iter()
            .find_map(|f| breakglass_custody::decrypt_share(f, &identity).ok())
            .unwrap_or_else(|| panic!("no stored share for {name}"));
        needles.push((
            format!("{name}'s decrypted share"),
            share.encode().as_bytes().to_vec(),
        ));
    }
    for (what, needle) in &needles {
        assert!(!contains(&log, needle), "{what} is in the server log");
        assert!(!contains(&disk, needle), "{what} is in the database files");
        assert!(!contains(&answers, needle), "{what} is in an HTTP answer");
    }
}
