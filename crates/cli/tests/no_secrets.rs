//! No secret at rest, in the logs or in any answer.
//!
//! - `secrets_never_reach_logs_or_disk`: a whole break runs against a server logging at
//!   `trace`; afterwards neither its log, nor any byte of its SQLite files (database and WAL),
//!   nor any answer of the API (listings, records, audit export, verification, readiness,
//!   /metrics) or the web UI (pages and their Server-Sent Event streams) contains the sealed
//!   secret (plain, hex, base64), a custodian's decrypted share, or an API token. The single
//!   reveal reaches the requester only, encrypted to their key.
//! - `the_demo_leaks_no_secret`: the real `breakglass demo --once` at `trace`; its stdout,
//!   stderr and every file it leaves (but the users' own keys) hold neither secret it sealed
//!   (recovered here from its database with the custodians' keys), nor a decrypted share, nor
//!   the admin token or a private key of the server.
//! - `a_drill_and_a_break_leak_nothing`: `breakglass serve` at `trace` with a PostgreSQL
//!   target; an automated drill through the CLI and a real break with its reveal; then the
//!   server's whole log, every CLI output but the one reveal, the drill's reports, the audit
//!   export, /metrics, the API's records, the UI's pages and Server-Sent Event streams (the
//!   drill's included) and the SQLite files hold no credential: neither the sealed admin
//!   password nor the drill credential (nor what they were rotated to), nor the operator's
//!   password, nor the grant's ephemeral password, nor a decrypted share or the admin token.
//!
//! Every secret is looked for as its bytes, in hex (lower and upper case) and in base64
//! (standard and URL-safe, at each of the three alignments it can take inside longer base64).

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use breakglass_custody::{Identity, ShareCommitment, decrypt_share, unseal, verify_share};
use common::{Server, bin_path, breakglass, keygen, procedure_yaml, stdout, stdout_json};
use serde_json::Value;

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

/// Every form a secret could leak in, each named for the failure message: its bytes, hex (lower
/// and upper case), and base64, standard and URL-safe, at each of the three alignments a secret
/// can take inside a longer base64 text. For an alignment the characters that also depend on the
/// bytes before or after the secret are cut, so the needle is found whatever surrounds it
/// (padded or not).
fn forms(what: &str, secret: &[u8]) -> Vec<(String, String)> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    assert!(
        secret.len() >= 8,
        "{what} is too short to look for without false alarms"
    );
    let text = std::str::from_utf8(secret).unwrap_or_else(|_| panic!("{what} is not UTF-8"));
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![
        (what.to_owned(), text.to_owned()),
        (format!("{what} in hex"), hex.clone()),
        (format!("{what} in upper-case hex"), hex.to_uppercase()),
    ];
    for (name, engine) in [
        ("base64", STANDARD_NO_PAD),
        ("URL-safe base64", URL_SAFE_NO_PAD),
    ] {
        for shift in 0..3usize {
            let mut bytes = vec![0u8; shift];
            bytes.extend_from_slice(secret);
            let encoded = engine.encode(&bytes);
            // With one filler byte the first two characters carry filler bits, with two the
            // first three; the last group is cut unless it is whole (it carries what follows).
            let skip = [0, 2, 3][shift];
            let whole = bytes.len() / 3 * 4;
            out.push((
                format!("{what} in {name} (alignment {shift})"),
                encoded[skip..whole].to_owned(),
            ));
        }
    }
    out
}

/// The needles of [`forms`] find a secret however it is embedded: as is, in hex, or inside a
/// longer base64 text (standard padded, URL-safe unpadded) at any alignment.
#[test]
fn forms_find_a_secret_wherever_it_is_encoded() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    // `?`, `>` and `~` make base64 use its `+`/`/` (or `-`/`_`) characters.
    let secret = b"Tr0ub4dor&3?>~never-on-disk";
    let needles = forms("the secret", secret);
    let found = |hay: &str| needles.iter().any(|(_, n)| hay.contains(n.as_str()));
    for before in 0..3 {
        for after in 0..3 {
            let mut bytes = b"{\"k\":"[..before].to_vec();
            bytes.extend_from_slice(secret);
            bytes.extend_from_slice(&b"\"}\n"[..after]);
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            for hay in [
                String::from_utf8(bytes.clone()).unwrap(),
                hex.clone(),
                hex.to_uppercase(),
                STANDARD.encode(&bytes),
                URL_SAFE_NO_PAD.encode(&bytes),
            ] {
                assert!(found(&hay), "{before}+{after}: not found in {hay}");
            }
        }
    }
    assert!(!found(&STANDARD.encode(b"Tr0ub4dor&3?>~never-on-dis")));
}

/// Fails, naming every needle found in every place (with its surroundings), unless none is.
/// Places are searched as text (binary files lossily), with the standard library's searcher:
/// the needles are ASCII or UTF-8 text, which survives the lossy conversion intact.
fn assert_absent(
    places: &[(String, String)],
    needles: &[(String, String)],
    skip: &dyn Fn(&str, &str) -> bool,
) {
    let mut found = Vec::new();
    for (place, text) in places {
        for (what, needle) in needles {
            if skip(place, what) {
                continue;
            }
            if let Some(at) = text.find(needle.as_str()) {
                let from = text.floor_char_boundary(at.saturating_sub(100));
                let to = text.ceil_char_boundary((at + needle.len() + 100).min(text.len()));
                found.push(format!(
                    "{what} is in {place} at byte {at}: …{}…",
                    &text[from..to]
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "{} leak(s):\n{}",
        found.len(),
        found.join("\n")
    );
}

/// A seal read from a SQLite store and opened with the keys the test holds.
struct Opened {
    seal_id: String,
    procedure: String,
    secret: String,
    /// The decrypted share texts (what a custodian submits).
    shares: Vec<String>,
}

/// Opens every seal in the SQLite database at `db`: each share file is decrypted with whichever
/// of `identities` it was made for, checked against its commitment, and `threshold` of them
/// unseal the ciphertext. Fails when a seal cannot be opened, so no sealed secret goes unsought.
async fn open_seals(db: &Path, identities: &[(String, Identity)]) -> Vec<Opened> {
    use sqlx::Connection as _;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let seals: Vec<(String, String, i64, Vec<u8>, String)> = sqlx::query_as(
        "SELECT seal_id, procedure_id, threshold, ciphertext, commitments FROM seals ORDER BY created_at, seal_id",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let mut out = Vec::new();
    for (seal_id, procedure, threshold, ciphertext, commitments) in seals {
        let commitments: Vec<ShareCommitment> = serde_json::from_str::<Value>(&commitments)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                ShareCommitment::from_hex(
                    c["custodian"].as_str().unwrap(),
                    u8::try_from(c["index"].as_u64().unwrap()).unwrap(),
                    c["digest"].as_str().unwrap(),
                )
                .unwrap()
            })
            .collect();
        let files: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT custodian, age_file FROM seal_shares WHERE seal_id = $1")
                .bind(&seal_id)
                .fetch_all(&mut c)
                .await
                .unwrap();
        let mut verified = Vec::new();
        let mut shares = Vec::new();
        for (custodian, file) in &files {
            if let Some(plain) = identities
                .iter()
                .find_map(|(_, id)| decrypt_share(file, id).ok())
            {
                shares.push(plain.encode().as_str().to_owned());
                verified.push(verify_share(plain, &seal_id, custodian, &commitments).unwrap());
            }
        }
        let threshold = u8::try_from(threshold).unwrap();
        assert!(
            verified.len() >= usize::from(threshold),
            "seal {seal_id} of {procedure}: only {} of its {} shares open with the test's keys ({})",
            verified.len(),
            files.len(),
            identities
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let secret = unseal(&seal_id, &ciphertext, threshold, &verified).unwrap();
        out.push(Opened {
            seal_id,
            procedure,
            secret: String::from_utf8(secret.expose_secret().to_vec()).unwrap(),
            shares,
        });
    }
    let _ = c.close().await;
    out
}

/// The identity in an age key file, named after it.
fn identity(path: &Path) -> (String, Identity) {
    (
        path.display().to_string(),
        Identity::parse(&std::fs::read_to_string(path).unwrap()).unwrap(),
    )
}

/// The secret tokens of a private text file (a key, a token): every whitespace-separated word
/// of 16 characters or more, leaving out comment lines (an age key file's `# public key: age1…`),
/// PEM armor lines and the audit key file's tag.
fn private_tokens(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("-----"))
        .flat_map(str::split_whitespace)
        .filter(|w| w.len() >= 16 && *w != "breakglass-audit-key-v1")
        .map(str::to_owned)
        .collect()
}

/// Every file under `dir`, recursively, with its path relative to `dir`.
fn files_under(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push((path.strip_prefix(dir).unwrap().to_path_buf(), path));
            }
        }
    }
    out.sort();
    out
}

fn is_private(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o077 == 0
}

#[tokio::test]
async fn the_demo_leaks_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    // One process: the demo's server and its clients (reqwest, hyper, rustls) all log to stderr.
    let a = breakglass()
        .env("BREAKGLASS_LOG", "trace")
        .timeout(Duration::from_secs(300))
        .args(["demo", "--once", "--grant", "1s", "--dir"])
        .arg(&dir)
        .assert();
    let out = a.get_output();
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the demo failed ({}):\n{stdout}\n…{}",
        out.status,
        &stderr[stderr.floor_char_boundary(stderr.len().saturating_sub(5000))..]
    );
    // The run was whole and its log was at trace: an empty or partial scan cannot pass.
    assert!(stdout.ends_with("demo complete.\n"), "{stdout}");
    let break_id = stdout
        .lines()
        .find_map(|l| l.split("dave opened ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no break in the demo's output:\n{stdout}"))
        .to_owned();
    assert!(
        stdout.contains("grant.revealed → break.expired"),
        "{stdout}"
    );
    assert!(
        stderr.len() > 50_000,
        "the demo's trace log has only {} bytes",
        stderr.len()
    );
    for marker in ["TRACE", "DEBUG", "sqlx::query", break_id.as_str()] {
        assert!(stderr.contains(marker), "the demo's log lacks `{marker}`");
    }

    // Every file the demo leaves is scanned, except the users' own private keys
    // (alice/bob/carol/dave.key, age identities of the custodians and the requester): the demo
    // writes them as stand-ins for keys that live on each person's own machine, where holding
    // their own key is the design. Their secret lines are still looked for everywhere else.
    // The server's private files (admin.token, ack.key, audit.key, tls/key.pem: any file of
    // mode 0600 but the database) are scanned, and their tokens looked for in every other
    // place. Nothing is left out of stdout: with `--once` the demo prints no token (without it,
    // it prints only the *path* of admin.token for signing in to the UI).
    const USER_KEYS: [&str; 4] = ["alice.key", "bob.key", "carol.key", "dave.key"];
    let mut places = vec![
        ("the demo's stdout".to_owned(), stdout.clone()),
        (
            "the demo's stderr (its trace log)".to_owned(),
            stderr.clone(),
        ),
    ];
    let mut private = Vec::new();
    let mut scanned_db = 0;
    for (rel, path) in files_under(&dir) {
        let name = rel.display().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let is_db = name.starts_with("breakglass.db");
        if is_db {
            scanned_db += bytes.len();
        }
        if (is_private(&path) && !is_db) || USER_KEYS.contains(&name.as_str()) {
            let text = String::from_utf8(bytes.clone())
                .unwrap_or_else(|_| panic!("private file {name} is not text"));
            let tokens = private_tokens(&text);
            assert!(!tokens.is_empty(), "no secret found in private file {name}");
            private.push((name.clone(), tokens));
        }
        if USER_KEYS.contains(&name.as_str()) {
            continue;
        }
        places.push((name, String::from_utf8_lossy(&bytes).into_owned()));
    }
    assert!(
        scanned_db > 10_000,
        "scanned only {scanned_db} bytes of database files"
    );
    for expected in [
        "admin.token",
        "audit.key",
        "audit-sink.jsonl",
        "demo-root.yaml",
    ] {
        assert!(
            places.iter().any(|(p, _)| p == expected),
            "the demo left no {expected}: {:?}",
            places.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
    }

    // The secrets the demo sealed, recovered from its own database with the custodians' keys:
    // the demo secret and the one it was rotated to.
    let keys: Vec<(String, Identity)> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| identity(&dir.join(format!("{n}.key"))))
        .collect();
    let seals = open_seals(&dir.join("breakglass.db"), &keys).await;
    let secrets: Vec<&str> = seals.iter().map(|s| s.secret.as_str()).collect();
    assert_eq!(
        seals.len(),
        2,
        "{:?}",
        seals.iter().map(|s| &s.seal_id).collect::<Vec<_>>()
    );
    assert!(secrets[0].starts_with("demo-root-") && secrets[1].starts_with("rotated-"));
    assert!(stdout.contains(&seals[0].seal_id) && stdout.contains(&seals[1].seal_id));

    let mut needles = Vec::new();
    for (i, s) in seals.iter().enumerate() {
        let what = ["the demo secret", "the rotated secret"][i];
        needles.extend(forms(what, s.secret.as_bytes()));
        assert_eq!(s.shares.len(), 3, "{what}: every custodian's share");
        for (j, share) in s.shares.iter().enumerate() {
            needles.push((format!("decrypted share {j} of {what}"), share.clone()));
        }
    }
    for (file, tokens) in &private {
        for t in tokens {
            needles.push((format!("the secret of {file}"), t.clone()));
        }
    }
    // A private file holds its own secret, and nothing else.
    assert_absent(&places, &needles, &|place, what| {
        what == format!("the secret of {place}")
    });
}

/// The JSON body of a GET over plain HTTP/1.1 (chunked or not).
fn get_json(base: &str, path: &str, bearer: &str) -> Value {
    let raw = http_get(base, path, &[("Authorization", bearer)], None);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: no header end"));
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = std::str::from_utf8(&rest[..eol]).unwrap();
            let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("GET {path}: {e}: {}", String::from_utf8_lossy(&body)))
}

/// Polls `path` until `done` holds for its JSON, for at most `limit`.
fn wait_json(
    base: &str,
    path: &str,
    bearer: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let v = get_json(base, path, bearer);
        if done(&v) {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "GET {path} did not get there within {limit:?}: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stdout and stderr of a CLI run, for the scan.
fn outputs(a: &assert_cmd::assert::Assert) -> String {
    let o = a.get_output();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_and_a_break_leak_nothing() {
    let test = "cli::no_secrets::a_drill_and_a_break_leak_nothing";
    let Some(pg) = breakglass_testkit::pgcluster::cluster(test) else {
        return;
    };
    // Left out of the scan, each holding a secret by design: the one reveal's stdout (the
    // grant, for the requester); the configuration the operator writes (targets.yaml with the
    // operator URL, channels.yaml with the webhook's signing secret) and the stdin of `seal`;
    // the custodians' and the requester's own keys (keys/), and the drill identities the
    // server keeps (DATA_DIR/drill/, the drill custodians' keys). Of the data dir the database
    // files are scanned.
    let t = common::pg_target(pg, "n").await;
    let channels = t.webhook_channel().await;
    let targets = t.targets_file();
    let operator_pw = format!("op-{}", t.sfx);
    let operator_url = pg.url(&t.op, &operator_pw, &t.db);
    assert!(
        std::fs::read_to_string(&targets)
            .unwrap()
            .contains(&operator_url),
        "the targets file names the operator by this URL"
    );
    let drill_pw = format!("drl-{}", t.sfx);
    assert!(t.drill_url.contains(&drill_pw));
    let data = t.dir.path().join("data");
    let mut server = Server::start_with_env(
        &data,
        &[
            "--targets",
            targets.to_str().unwrap(),
            "--channels",
            channels.to_str().unwrap(),
        ],
        &[("BREAKGLASS_LOG", "trace")],
    );
    assert!(server.url.starts_with("http://"), "{}", server.url);
    // Every CLI output is scanned but the one reveal's stdout.
    let mut cli_out = String::new();

    let keys = &t.keys;
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let (_, key) = keygen(keys, name);
        custodians.push_str(&format!("  - name: {name}\n    key: {key}\n"));
    }
    let file = keys.join("pg.yaml");
    std::fs::write(
        &file,
        format!(
            "id: pg\ntarget:\n  kind: postgres\n  details:\n    host: {}\n    port: \"{}\"\n    dbname: {}\n    admin_user: {}\n    grant_role: {}\n    connection: pg\n    sslmode: disable\n    inventory: postgres, {}, {}, {}\ncustodians:\n{custodians}quorum: 2\nmax_grant: 1h\nalert_channels: [ops]\ndrill:\n  every: 30d\n  max_time_to_access: 1m\n",
            pg.host, pg.port, t.db, t.adm, t.app, t.adm, t.op, t.drl
        ),
    )
    .unwrap();
    let a = server
        .cli()
        .args(["procedure", "apply"])
        .arg(&file)
        .assert()
        .success();
    cli_out.push_str(&outputs(&a));
    let a = server
        .cli()
        .args(["seal", "pg"])
        .write_stdin(format!("{}\n", t.admin_pw))
        .assert()
        .success();
    cli_out.push_str(&outputs(&a));
    let a = server
        .cli()
        .args(["seal", "pg", "--drill"])
        .write_stdin(format!("{}\n", t.drill_url))
        .assert()
        .success();
    cli_out.push_str(&outputs(&a));
    let (dave_key, dave) = keygen(keys, "dave");
    std::fs::write(keys.join("dave.pub"), format!("{dave}\n")).unwrap();
    let a = server
        .cli()
        .args(["actor", "add", "dave", "--role", "requester", "--key-file"])
        .arg(keys.join("dave.pub"))
        .assert()
        .success();
    cli_out.push_str(&outputs(&a));
    let admin_token = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let bearer = format!("Bearer {admin_token}");
    let cookie = format!("bg_session={admin_token}");
    let real_seal = get_json(&server.url, "/api/procedures/pg", &bearer)["seal_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // An automated drill through the CLI, with its report.
    let reports = t.dir.path().join("reports");
    let a = server
        .cli()
        .args(["drill", "run", "pg", "--grant", "1s", "--report"])
        .arg(&reports)
        .assert()
        .success();
    cli_out.push_str(&outputs(&a));
    assert!(outputs(&a).contains("PASSED"), "{}", outputs(&a));
    let drills = get_json(&server.url, "/api/drills?procedure=pg", &bearer);
    let drill = drills["drills"][0]["id"].as_str().unwrap().to_owned();
    let drill_view = get_json(&server.url, &format!("/api/drills/{drill}"), &bearer);
    assert_eq!(drill_view["outcome"], "passed", "{drill_view:#}");
    let drill_break = drill_view["break"].as_str().unwrap().to_owned();
    for args in [
        vec!["drill", "show", drill.as_str()],
        vec!["drill", "show", drill.as_str(), "--format", "md"],
        vec!["drill", "show", drill.as_str(), "--format", "html"],
        vec!["--output", "json", "drill", "show", drill.as_str()],
    ] {
        let a = server.cli().args(&args).assert().success();
        cli_out.push_str(&outputs(&a));
    }

    // A real break with its one reveal: dave gets the grant's connection string.
    let a = server
        .cli()
        .arg("--identity")
        .arg(&dave_key)
        .args([
            "--output",
            "json",
            "break",
            "open",
            "pg",
            "--reason",
            "leak scan",
            "--ticket",
            "T-8",
            "--duration",
            "2s",
        ])
        .assert()
        .success();
    cli_out.push_str(&outputs(&a));
    let id = stdout_json(&a)["id"].as_str().unwrap().to_owned();
    for name in ["alice", "bob"] {
        let a = server
            .cli()
            .arg("--identity")
            .arg(keys.join(format!("{name}.key")))
            .args(["approve", &id])
            .assert()
            .success();
        cli_out.push_str(&outputs(&a));
    }
    let a = server
        .cli()
        .arg("--identity")
        .arg(&dave_key)
        .args(["break", "reveal", &id])
        .assert()
        .success();
    // The one reveal: its stdout is the only place the grant may be; its stderr is scanned.
    cli_out.push_str(&String::from_utf8_lossy(&a.get_output().stderr));
    let access = stdout(&a).trim_end().to_owned();
    let userinfo = access
        .strip_prefix("postgresql://")
        .and_then(|rest| rest.split_once('@'))
        .map(|(userinfo, _)| userinfo)
        .unwrap_or_else(|| {
            panic!(
                "the reveal is not a connection string: {} bytes",
                access.len()
            )
        });
    let (grant_role, grant_pw) = userinfo.split_once(':').unwrap();
    assert!(grant_role.starts_with("bg_"), "{grant_role}");
    assert!(
        grant_pw.len() >= 16,
        "the grant's password has {} characters",
        grant_pw.len()
    );

    // Let the break run its course: expiry, the grant ended on the target, the revealed
    // credential rotated and re-sealed (so the rotation's log is scanned too).
    let limit = Duration::from_secs(90);
    wait_json(
        &server.url,
        &format!("/api/breaks/{id}"),
        &bearer,
        limit,
        |b| b["state"] == "expired",
    );
    wait_json(
        &server.url,
        &format!("/api/breaks/{id}/grant"),
        &bearer,
        limit,
        |g| !g["ended_at"].is_null(),
    );
    wait_json(&server.url, "/api/procedures/pg", &bearer, limit, |p| {
        p["tainted"] == false && p["seal_id"].as_str().is_some_and(|s| s != real_seal)
    });

    // Every answer but the reveal: the API's records, the audit export, /metrics, the UI's
    // pages, and the live streams of the drill, its break and the real break.
    let mut answers = Vec::new();
    for path in [
        "/api/procedures".to_owned(),
        "/api/procedures/pg".to_owned(),
        "/api/procedures/pg/target".to_owned(),
        "/api/breaks".to_owned(),
        format!("/api/breaks/{id}"),
        format!("/api/breaks/{id}/grant"),
        format!("/api/breaks/{drill_break}"),
        format!("/api/breaks/{drill_break}/grant"),
        "/api/drills".to_owned(),
        format!("/api/drills/{drill}"),
        format!("/api/drills/{drill}/report"),
        "/api/audit?from=1&limit=10000".to_owned(),
        "/api/audit/export".to_owned(),
        "/api/audit/verify".to_owned(),
        "/api/audit/sinks".to_owned(),
        "/api/readiness".to_owned(),
        "/api/channels".to_owned(),
        "/api/channels/ops/attempts".to_owned(),
        "/api/actors".to_owned(),
        "/metrics".to_owned(),
    ] {
        let got = http_get(&server.url, &path, &[("Authorization", &bearer)], None);
        answers.push((
            format!("the answer to GET {path}"),
            String::from_utf8_lossy(&got).into_owned(),
        ));
    }
    for path in [
        "/".to_owned(),
        "/procedures/pg".to_owned(),
        format!("/breaks/{id}"),
        format!("/breaks/{drill_break}"),
        format!("/drills/{drill}"),
        "/audit".to_owned(),
        "/inventory".to_owned(),
    ] {
        let got = http_get(&server.url, &path, &[("Cookie", &cookie)], None);
        answers.push((
            format!("the page {path}"),
            String::from_utf8_lossy(&got).into_owned(),
        ));
    }
    for path in [
        format!("/drills/{drill}/events"),
        format!("/breaks/{id}/events"),
        format!("/breaks/{drill_break}/events"),
        "/events".to_owned(),
    ] {
        let got = http_get(
            &server.url,
            &path,
            &[("Cookie", &cookie)],
            Some(Duration::from_millis(800)),
        );
        let got = String::from_utf8_lossy(&got).into_owned();
        // The dashboard's stream has nothing to say once every break has ended.
        assert!(
            path == "/events" || got.contains("event: "),
            "{path} streamed no event"
        );
        answers.push((format!("the stream {path}"), got));
    }
    let export = &answers
        .iter()
        .find(|(p, _)| p.ends_with("/api/audit/export"))
        .unwrap()
        .1;
    for kind in [
        "drill.finished",
        "grant.revealed",
        "grant.ended",
        "credential.rotated",
    ] {
        assert!(export.contains(kind), "the audit export has no {kind}");
    }

    let drill_role = get_json(
        &server.url,
        &format!("/api/breaks/{drill_break}/grant"),
        &bearer,
    )["handle"]["role"]
        .as_str()
        .unwrap()
        .to_owned();
    let log = server.stop_and_take_log().join("\n");
    // The log is whole and at trace, and it saw the drill and the break: a scan of an empty or
    // partial log cannot pass. (The drill's id is not logged, its grant is; so are the real
    // break, its grant and both rotations: the drill credential's role and the admin role.)
    assert!(
        log.len() > 50_000,
        "the server's trace log has only {} bytes",
        log.len()
    );
    for marker in [
        "TRACE",
        "DEBUG",
        "serving on",
        drill_role.as_str(),
        id.as_str(),
        grant_role,
        "postgres grant role created",
        "postgres grant role dropped",
        "postgres admin password rotated",
        t.drl.as_str(),
        t.adm.as_str(),
    ] {
        assert!(log.contains(marker), "the server's log lacks `{marker}`");
    }

    let mut places = vec![
        ("the server's trace log".to_owned(), log),
        ("the CLI's outputs".to_owned(), cli_out),
    ];
    places.extend(answers);
    let mut reported = 0;
    for (rel, path) in files_under(&reports) {
        places.push((
            format!("the drill report {}", rel.display()),
            std::fs::read_to_string(&path).unwrap(),
        ));
        reported += 1;
    }
    assert_eq!(
        reported, 3,
        "the drill wrote its report as JSON, Markdown and HTML"
    );
    let mut db_bytes = 0;
    for (rel, path) in files_under(&data) {
        let name = rel.display().to_string();
        if name.starts_with("breakglass.db") {
            let bytes = std::fs::read(&path).unwrap();
            db_bytes += bytes.len();
            places.push((
                format!("the database file {name}"),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    assert!(
        db_bytes > 10_000,
        "scanned only {db_bytes} bytes of database files"
    );

    // Every credential ever sealed, recovered from the store: the real seal and its rotation
    // (sealed to the custodians' keys), the drill credential and its rotation (sealed to the
    // drill identities the server keeps in DATA_DIR/drill/).
    let mut identities: Vec<(String, Identity)> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| identity(&keys.join(format!("{n}.key"))))
        .collect();
    for (_, path) in files_under(&data.join("drill")) {
        identities.push(identity(&path));
    }
    let seals = open_seals(&data.join("breakglass.db"), &identities).await;
    let secrets: Vec<&str> = seals.iter().map(|s| s.secret.as_str()).collect();
    assert!(
        secrets.contains(&t.admin_pw.as_str()),
        "the real seal was opened"
    );
    assert!(
        secrets.contains(&t.drill_url.as_str()),
        "the drill seal was opened"
    );
    assert!(
        seals.len() >= 4,
        "the real seal, the drill seal and a rotation of each: {:?}",
        seals.iter().map(|s| &s.seal_id).collect::<Vec<_>>()
    );

    let mut needles = Vec::new();
    for s in &seals {
        let what = if s.secret == t.admin_pw {
            "the sealed admin password".to_owned()
        } else if s.secret == t.drill_url {
            "the drill credential".to_owned()
        } else {
            format!("the rotated credential of seal {}", s.seal_id)
        };
        assert_eq!(s.procedure, "pg");
        needles.extend(forms(&what, s.secret.as_bytes()));
        // A URL credential's password on its own.
        if let Some(pw) = s
            .secret
            .strip_prefix("postgresql://")
            .and_then(|r| r.split_once('@'))
            .and_then(|(u, _)| u.split_once(':'))
            .map(|(_, pw)| pw)
        {
            needles.extend(forms(&format!("the password of {what}"), pw.as_bytes()));
        }
        for (i, share) in s.shares.iter().enumerate() {
            needles.push((format!("decrypted share {i} of {what}"), share.clone()));
        }
    }
    needles.extend(forms("the drill password", drill_pw.as_bytes()));
    needles.extend(forms("the operator password", operator_pw.as_bytes()));
    needles.extend(forms("the operator URL", operator_url.as_bytes()));
    needles.extend(forms("the grant's password", grant_pw.as_bytes()));
    needles.extend(forms("the grant's connection string", access.as_bytes()));
    needles.extend(forms("the webhook's signing secret", b"s3cret-for-tests"));
    needles.extend(forms("the admin token", admin_token.as_bytes()));
    // The server's private files (admin.token, ack.key, audit.key, the drill identities) and
    // the people's own keys: no token of theirs anywhere.
    let private = files_under(&data)
        .into_iter()
        .chain(files_under(keys))
        .filter(|(rel, path)| {
            !rel.display().to_string().starts_with("breakglass.db") && is_private(path)
        });
    let mut private_files = 0;
    for (rel, path) in private {
        let tokens = private_tokens(&std::fs::read_to_string(&path).unwrap());
        assert!(!tokens.is_empty(), "no secret found in {}", path.display());
        for token in tokens {
            needles.push((format!("the secret of {}", rel.display()), token));
        }
        private_files += 1;
    }
    assert!(private_files >= 8, "only {private_files} private files");
    assert_absent(&places, &needles, &|_, _| false);
}
