//! Two `breakglass serve` processes on one PostgreSQL store (the machine's PostgreSQL): breaks
//! opened on one are approved on the other, every alert reaches the webhook exactly once
//! (background jobs run under leases), a sign-in challenge issued by one server is answered on
//! the other and the session works on both, the audit chain is one chain without fork or gap, and a
//! server killed with SIGKILL while it holds the expiry lease has its grant ended by the other
//! within the lease time plus 1 s.
//!
//! A break's shares are held in the memory of the server that accepted the first one; an
//! approval reaching the other server is forwarded there; when that server dies, the next
//! approval resets the approvals (audited) and the survivor takes over. A proxy break's gateway
//! login is held by the server that granted it: token requests are forwarded there, and when it
//! dies the survivor renews the login and serves the break from its own gateway.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, keygen, stdout_json};

/// One HTTP/1.1 request to `base` (`http://ADDR`); returns the status and the JSON body.
async fn call(
    base: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Receives webhooks; counts deliveries per idempotency key.
async fn counting_receiver() -> (std::net::SocketAddr, Arc<Mutex<HashMap<String, usize>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = keep.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 65536];
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let header = |name: &str| {
                        text[..end].lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                        })
                    };
                    let len: usize = header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if got.len() < end + 4 + len {
                        continue;
                    }
                    if let Some(key) = header("idempotency-key") {
                        *seen
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(key)
                            .or_default() += 1;
                    }
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_run_each_job_once_and_keep_one_chain() {
    let Some(db) = breakglass_testkit::fresh_postgres(
        "cli::scale_out::two_servers_on_one_postgres_run_each_job_once_and_keep_one_chain",
    )
    .await
    else {
        return;
    };
    let url = db.url.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let (seen, channels) = webhook_channel(dir.path()).await;
    let (mut servers, keys) = cluster(2, dir.path(), &url, &channels);
    let mut two = servers.pop();
    let one = servers.pop().expect("server one");

    // Sign-in across servers: the challenge from one, the answer to the other, the session
    // honoured by the first.
    {
        let s2 = two.as_ref().expect("two");
        let (status, c) = call(
            &one.url,
            "POST",
            "/api/auth/challenge",
            None,
            Some(serde_json::json!({"actor": "dave"})),
        )
        .await;
        assert_eq!(status, 200, "{c}");
        let identity = breakglass_custody::Identity::parse(
            &std::fs::read_to_string(keys.join("dave.key")).expect("dave.key"),
        )
        .expect("identity");
        let plain = breakglass_custody::decrypt_with(
            &identity,
            c["challenge"]["age_file"]
                .as_str()
                .expect("an age challenge")
                .as_bytes(),
        )
        .expect("decrypt");
        let (status, session) = call(
            &s2.url,
            "POST",
            "/api/auth/login",
            None,
            Some(serde_json::json!({
                "challenge_id": c["challenge_id"],
                "response": String::from_utf8_lossy(&plain),
            })),
        )
        .await;
        assert_eq!(status, 200, "{session}");
        let token = session["token"].as_str().expect("session token");
        let (status, me) = call(&one.url, "GET", "/api/whoami", Some(token), None).await;
        assert_eq!((status, me["name"].as_str()), (200, Some("dave")), "{me}");
        // Single use across servers too.
        let (status, _) = call(
            &one.url,
            "POST",
            "/api/auth/login",
            None,
            Some(serde_json::json!({
                "challenge_id": c["challenge_id"],
                "response": String::from_utf8_lossy(&plain),
            })),
        )
        .await;
        assert_eq!(status, 401);
    }

    // Breaks opened on one server and approved on the other, alternately, then closed.
    let mut ids = Vec::new();
    for i in 0..6 {
        let s2 = two.as_ref().expect("two");
        let (opener, approver) = if i % 2 == 0 { (&one, s2) } else { (s2, &one) };
        let a = as_actor(opener, &keys, "dave")
            .args([
                "--output",
                "json",
                "break",
                "open",
                "p",
                "--reason",
                "scale",
                "--ticket",
                "T-1",
                "--duration",
                "10m",
            ])
            .assert()
            .success();
        let id = stdout_json(&a)["id"].as_str().expect("id").to_owned();
        // Alice's share reaches one server, Bob's the other: it is forwarded to the first.
        as_actor(opener, &keys, "alice")
            .args(["approve", &id])
            .assert()
            .success();
        let a = as_actor(approver, &keys, "bob")
            .args(["--output", "json", "approve", &id])
            .assert()
            .success();
        assert_eq!(stdout_json(&a)["break"]["state"], "granted");
        as_actor(opener, &keys, "dave")
            .args(["break", "close", &id])
            .assert()
            .success();
        ids.push(id);
    }

    // A short break; the server holding the expiry lease is killed before its deadline.
    let a = as_actor(&one, &keys, "dave")
        .args([
            "--output",
            "json",
            "break",
            "open",
            "p",
            "--reason",
            "lease",
            "--ticket",
            "T-2",
            "--duration",
            "4s",
        ])
        .assert()
        .success();
    let short = stdout_json(&a)["id"].as_str().expect("id").to_owned();
    for name in ["alice", "bob"] {
        as_actor(&one, &keys, name)
            .args(["approve", &short])
            .assert()
            .success();
    }
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    use sqlx::Connection;
    let holder: String = sqlx::query_scalar("SELECT holder FROM leases WHERE name = 'job:expiry'")
        .fetch_one(&mut conn)
        .await
        .expect("the expiry lease is held");
    // Kill the server holding it (SIGKILL), keep the other.
    let instance = |s: &Server| {
        s.log_lines()
            .iter()
            .find_map(|l| l.strip_prefix("breakglass instance ").map(str::to_owned))
            .expect("instance line")
    };
    let two = two.take().expect("two");
    let (doomed, survivor) = if instance(&one) == holder {
        (one, two)
    } else {
        assert_eq!(instance(&two), holder);
        (two, one)
    };
    // A break whose first share is held by the server about to die.
    let a = as_actor(&survivor, &keys, "dave")
        .args([
            "--output", "json", "break", "open", "p", "--reason", "held", "--ticket", "T-3",
        ])
        .assert()
        .success();
    let held = stdout_json(&a)["id"].as_str().expect("id").to_owned();
    as_actor(&doomed, &keys, "alice")
        .args(["approve", &held])
        .assert()
        .success();
    // Alerts not yet marked delivered when the server dies: it may have sent one and died
    // before marking it, and the survivor then sends it again with the same idempotency key
    // (at-least-once across a crash; the receiver can tell by the key). Every other alert must
    // arrive exactly once.
    let in_flight: Vec<String> = sqlx::query_scalar::<_, i64>(
        "SELECT id FROM outbox WHERE destination = 'channel:ops' AND delivered_at IS NULL",
    )
    .fetch_all(&mut conn)
    .await
    .expect("undelivered")
    .into_iter()
    .map(|id| format!("bg-{id}"))
    .collect();
    doomed.kill();
    let b = stdout_json(
        &survivor
            .cli()
            .args(["--output", "json", "break", "show", &short])
            .assert()
            .success(),
    );
    let deadline = b["granted_at_ms"].as_i64().expect("granted") + 4000;
    let started = Instant::now();
    let ended_at = loop {
        let b = stdout_json(
            &survivor
                .cli()
                .args(["--output", "json", "break", "show", &short])
                .assert()
                .success(),
        );
        if let Some(t) = b["ended_at_ms"].as_i64() {
            break t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never ended: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "grant of the killed lease holder ended {} ms after its deadline",
        ended_at - deadline
    );
    assert!(
        ended_at - deadline <= 5000 + 1000,
        "ended {} ms after the deadline (lease 5 s + 1 s allowed)",
        ended_at - deadline
    );

    // The dead server's shares are gone: Bob's approval on the survivor resets the approvals
    // (audited) and counts as the first; Alice approves again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let a = as_actor(&survivor, &keys, "bob")
        .args(["--output", "json", "approve", &held])
        .assert()
        .success();
    let r = stdout_json(&a);
    assert_eq!(
        (r["approvals"].as_u64(), r["break"]["state"].as_str()),
        (Some(1), Some("requested")),
        "{r}"
    );
    let a = as_actor(&survivor, &keys, "alice")
        .args(["--output", "json", "approve", &held])
        .assert()
        .success();
    assert_eq!(stdout_json(&a)["break"]["state"], "granted");
    let resets: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE kind = 'break.approvals_reset' AND break_id = $1",
    )
    .bind(&held)
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(resets, 1);

    // Every alert delivered exactly once, and all of them delivered.
    let started = Instant::now();
    loop {
        let expected: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE destination = 'channel:ops'")
                .fetch_one(&mut conn)
                .await
                .expect("count");
        let undelivered: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE destination = 'channel:ops' AND delivered_at IS NULL",
        )
        .fetch_one(&mut conn)
        .await
        .expect("count");
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if undelivered == 0 && seen.len() as i64 == expected {
            assert!(expected >= 6 * 4, "{expected} alerts");
            let twice: Vec<_> = seen
                .iter()
                .filter(|(key, n)| **n > 1 && !(in_flight.contains(key) && **n == 2))
                .collect();
            assert!(
                twice.is_empty(),
                "delivered more than once: {twice:?} (in flight at the kill: {in_flight:?})"
            );
            let again: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
            eprintln!("sent again after the kill (same key): {again:?}; in flight: {in_flight:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{undelivered} undelivered, {} of {expected} seen",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // One chain: no gap, no duplicate sequence, every link verifies.
    let (n, max, distinct): (i64, i64, i64) =
        sqlx::query_as("SELECT COUNT(*), MAX(seq), COUNT(DISTINCT seq) FROM audit_log")
            .fetch_one(&mut conn)
            .await
            .expect("chain");
    assert_eq!((n, distinct), (max, max), "gap or duplicate in the chain");
    survivor.cli().args(["audit", "verify"]).assert().success();
    for id in &ids {
        let b = stdout_json(
            &survivor
                .cli()
                .args(["--output", "json", "break", "show", id])
                .assert()
                .success(),
        );
        assert_eq!(b["state"], "closed", "{b}");
    }
}

/// A channels file in `dir` with webhook channel `ops` to a counting receiver.
async fn webhook_channel(
    dir: &std::path::Path,
) -> (Arc<Mutex<HashMap<String, usize>>>, std::path::PathBuf) {
    let (hook, seen) = counting_receiver().await;
    let channels = dir.join("channels.yaml");
    std::fs::write(
        &channels,
        format!(
            "channels:\n  - name: ops\n    kind: webhook\n    url: http://{hook}/hook\n    secret: s3cret-for-tests\n"
        ),
    )
    .expect("channels");
    (seen, channels)
}

/// Starts `n` servers on `url`, sharing the first one's keys (audit, acknowledgement and UI
/// keys, and the admin token for the CLI: docs/deployment.md); applies procedure `p` (secret,
/// quorum 2 of alice, bob, carol; alerts to `ops`), enrols dave, seals.
fn cluster(
    n: usize,
    dir: &std::path::Path,
    url: &str,
    channels: &std::path::Path,
) -> (Vec<Server>, std::path::PathBuf) {
    cluster_of(
        n,
        dir,
        url,
        channels,
        &[],
        "target:\n  kind: secret\n",
        "the-secret",
    )
}

/// `cluster` with extra `serve` arguments, procedure `p`'s `target` section and the
/// credential sealed.
fn cluster_of(
    n: usize,
    dir: &std::path::Path,
    url: &str,
    channels: &std::path::Path,
    extra: &[&str],
    target: &str,
    secret: &str,
) -> (Vec<Server>, std::path::PathBuf) {
    let mut args = vec![
        "--database-url",
        url,
        "--channels",
        channels.to_str().expect("utf-8"),
        "--advertise-url",
        "auto",
    ];
    args.extend_from_slice(extra);
    let first = dir.join("s0");
    let mut servers = vec![Server::start_with(&first, &args)];
    for i in 1..n {
        let d = dir.join(format!("s{i}"));
        std::fs::create_dir_all(&d).expect("data dir");
        for file in ["audit.key", "ack.key", "ui.key", "admin.token"] {
            std::fs::copy(first.join(file), d.join(file)).expect("copy key");
        }
        // Servers of one deployment share the certificate (`--tls-self-signed`'s too).
        if first.join("tls").is_dir() {
            std::fs::create_dir_all(d.join("tls")).expect("tls dir");
            for file in ["cert.pem", "key.pem"] {
                std::fs::copy(first.join("tls").join(file), d.join("tls").join(file))
                    .expect("copy certificate");
            }
        }
        servers.push(Server::start_with(&d, &args));
    }
    let keys = dir.join("keys");
    std::fs::create_dir(&keys).expect("keys");
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let (_, key) = keygen(&keys, name);
        custodians.push_str(&format!("  - name: {name}\n    key: {key}\n"));
    }
    let file = keys.join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "id: p\n{target}custodians:\n{custodians}quorum: 2\nmax_grant: 1h\nalert_channels: [ops]\n"
        ),
    )
    .expect("procedure");
    servers[0]
        .cli()
        .args(["procedure", "apply"])
        .arg(&file)
        .assert()
        .success();
    servers[n - 1].add_requester(&keys, "dave", &keygen(&keys, "dave").1);
    servers[0]
        .cli()
        .args(["seal", "p"])
        .write_stdin(format!("{secret}\n"))
        .assert()
        .success();
    (servers, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_take_concurrent_breaks_through_all_of_them() {
    let Some(db) = breakglass_testkit::fresh_postgres(
        "cli::scale_out::three_servers_take_concurrent_breaks_through_all_of_them",
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (seen, channels) = webhook_channel(dir.path()).await;
    let (servers, keys) = cluster(3, dir.path(), &db.url, &channels);
    let servers = Arc::new(servers);
    let keys = Arc::new(keys);

    // A live view on the third server, open before anything happens.
    let live = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let admin = std::fs::read_to_string(dir.path().join("s0").join("admin.token"))
            .expect("admin token");
        let addr = servers[2].url.trim_start_matches("http://").to_owned();
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        s.write_all(
            format!(
                "GET /events HTTP/1.1\r\nHost: {addr}\r\nCookie: bg_session={}\r\nAccept: text/event-stream\r\n\r\n",
                admin.trim()
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65536];
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
                if String::from_utf8_lossy(&got).contains("LIVE-MARKER") {
                    break;
                }
            }
            String::from_utf8_lossy(&got).to_string()
        })
    };

    // Six breaks at once, each opened, approved and closed on three different servers.
    let mut handles = Vec::new();
    for i in 0..6usize {
        let servers = servers.clone();
        let keys = keys.clone();
        handles.push(std::thread::spawn(move || {
            let on = |k: usize, name: &str| {
                let mut c = servers[(i + k) % 3].cli();
                c.arg("--identity").arg(keys.join(format!("{name}.key")));
                c
            };
            let reason = if i == 0 { "LIVE-MARKER" } else { "concurrent" };
            let a = on(0, "dave")
                .args([
                    "--output", "json", "break", "open", "p", "--reason", reason, "--ticket", "T-9",
                ])
                .assert()
                .success();
            let id = stdout_json(&a)["id"].as_str().expect("id").to_owned();
            on(1, "alice").args(["approve", &id]).assert().success();
            let a = on(2, "bob")
                .args(["--output", "json", "approve", &id])
                .assert()
                .success();
            assert_eq!(stdout_json(&a)["break"]["state"], "granted");
            on(0, "dave")
                .args(["break", "close", &id])
                .assert()
                .success();
            id
        }));
    }
    let ids: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().expect("a break cycle"))
        .collect();

    // The third server's live view showed the break opened on another server.
    let streamed = live.await.expect("live view");
    assert!(
        streamed.contains("LIVE-MARKER") || streamed.contains(&ids[0]),
        "the live view on server 3 did not show the break: {streamed}"
    );

    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    use sqlx::Connection;
    let started = Instant::now();
    loop {
        let (expected, undelivered): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE delivered_at IS NULL) FROM outbox WHERE destination = 'channel:ops'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("count");
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if undelivered == 0 && seen.len() as i64 == expected {
            assert!(expected >= 6 * 4, "{expected} alerts");
            assert!(
                seen.values().all(|n| *n == 1),
                "an alert delivered twice: {seen:?}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "alerts not all delivered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (n, max, distinct): (i64, i64, i64) =
        sqlx::query_as("SELECT COUNT(*), MAX(seq), COUNT(DISTINCT seq) FROM audit_log")
            .fetch_one(&mut conn)
            .await
            .expect("chain");
    assert_eq!((n, distinct), (max, max), "gap or duplicate in the chain");
    for s in servers.iter() {
        s.cli().args(["audit", "verify"]).assert().success();
    }
}

/// Runs a CLI command on a thread of its own; the handle answers its output and when it ended.
fn in_background(
    mut cmd: assert_cmd::Command,
) -> std::thread::JoinHandle<(std::process::Output, Instant)> {
    std::thread::spawn(move || {
        let out = cmd.output().expect("run the CLI");
        (out, Instant::now())
    })
}

/// How many audit entries of `kind` the break (or, with `None`, the log) has.
async fn entries(conn: &mut sqlx::PgConnection, kind: &str, break_id: Option<&str>) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE kind = $1 AND ($2::TEXT IS NULL OR break_id = $2)",
    )
    .bind(kind)
    .bind(break_id)
    .fetch_one(conn)
    .await
    .expect("count entries")
}

/// Issue 10: the rotation lock is one lock for all servers, held in PostgreSQL (a session
/// advisory lock on `breakglass_store::procedure_lock_key`). The test holds it, as a rotation
/// on a third server would: opening a break and approving one wait on both servers, and go on
/// as soon as it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_and_approving_wait_for_the_procedure_lock_held_in_postgres() {
    let Some(db) = breakglass_testkit::fresh_postgres(
        "cli::scale_out::opening_and_approving_wait_for_the_procedure_lock_held_in_postgres",
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_seen, channels) = webhook_channel(dir.path()).await;
    let (servers, keys) = cluster(2, dir.path(), &db.url, &channels);
    let open = |server: &Server| {
        let mut c = as_actor(server, &keys, "dave");
        c.args([
            "--output", "json", "break", "open", "p", "--reason", "lock", "--ticket", "T-L",
        ]);
        c
    };
    let a = open(&servers[0]).assert().success();
    let id = stdout_json(&a)["id"].as_str().expect("id").to_owned();

    use sqlx::Connection;
    let mut holder = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let key = breakglass_store::procedure_lock_key("p");
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut holder)
        .await
        .expect("take the procedure lock");
    let mut approve = as_actor(&servers[1], &keys, "alice");
    approve.args(["--output", "json", "approve", &id]);
    let approving = in_background(approve);
    let opening = in_background(open(&servers[0]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !approving.is_finished() && !opening.is_finished(),
        "an approval or an opening went ahead while the procedure lock was held elsewhere"
    );
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    assert_eq!(entries(&mut conn, "share.accepted", Some(&id)).await, 0);
    assert_eq!(entries(&mut conn, "break.requested", None).await, 1);

    let released = Instant::now();
    let unlocked: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .fetch_one(&mut holder)
        .await
        .expect("release the procedure lock");
    assert!(unlocked);
    for (what, handle) in [("approval", approving), ("opening", opening)] {
        let (out, at) = handle.join().expect("CLI thread");
        assert!(
            out.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let after = at.duration_since(released);
        eprintln!(
            "{what} completed {} ms after the release",
            after.as_millis()
        );
        assert!(
            after < Duration::from_secs(5),
            "{what} took {after:?} after the release"
        );
    }
    assert_eq!(entries(&mut conn, "share.accepted", Some(&id)).await, 1);
    assert_eq!(entries(&mut conn, "break.requested", None).await, 2);
    // The quorum on the other server (forwarded to the holder of Alice's share).
    let a = as_actor(&servers[0], &keys, "bob")
        .args(["--output", "json", "approve", &id])
        .assert()
        .success();
    assert_eq!(stdout_json(&a)["break"]["state"], "granted");
    db.drop_db().await;
}

/// Issue 10, two real servers: the credential rotation after a grant on server one holds the
/// procedure lock from its start to its promotion; an approval on server two waits for it,
/// then finds its break moved to the new seal (the old seal's share is refused), and the
/// custodians' new shares open the rotated credential. The test stalls the rotation on the
/// target: an uncommitted `ALTER ROLE` of the admin role holds the row the rotation's own
/// `ALTER ROLE … PASSWORD` must wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_on_one_server_waits_for_the_rotation_on_another() {
    let test = "cli::scale_out::an_approval_on_one_server_waits_for_the_rotation_on_another";
    let Some(pg) = breakglass_testkit::pgcluster::cluster(test) else {
        return;
    };
    let Some(db) = breakglass_testkit::fresh_postgres(test).await else {
        return;
    };
    let t = common::pg_target(pg, "so").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_seen, channels) = webhook_channel(dir.path()).await;
    let target = format!(
        "target:\n  kind: postgres\n  details:\n    host: {}\n    port: \"{}\"\n    dbname: {}\n    admin_user: {}\n    grant_role: {}\n    connection: pg\n    sslmode: disable\n    inventory: postgres, {}, {}, {}\n",
        pg.host, pg.port, t.db, t.adm, t.app, t.adm, t.op, t.drl
    );
    let targets = t.targets_file();
    let (servers, keys) = cluster_of(
        2,
        dir.path(),
        &db.url,
        &channels,
        &["--targets", targets.to_str().expect("utf-8")],
        &target,
        &t.admin_pw,
    );
    let (one, two) = (&servers[0], &servers[1]);
    let open = |server: &Server| {
        let a = as_actor(server, &keys, "dave")
            .args([
                "--output", "json", "break", "open", "p", "--reason", "rotate", "--ticket", "T-R",
            ])
            .assert()
            .success();
        stdout_json(&a)["id"].as_str().expect("id").to_owned()
    };
    let first = open(one);
    let second = open(one);

    use sqlx::Connection;
    let mut blocker = pg.connect(&t.db).await;
    let mut stall = blocker.begin().await.expect("begin");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE {} PASSWORD 'held-by-the-test'",
        t.adm
    )))
    .execute(&mut *stall)
    .await
    .expect("hold the admin role's row");
    for name in ["alice", "bob"] {
        as_actor(one, &keys, name)
            .args(["approve", &first])
            .assert()
            .success();
    }
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let started = Instant::now();
    while entries(&mut conn, "credential.rotation_started", None).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no rotation started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut approve = as_actor(two, &keys, "alice");
    approve.args(["approve", &second]);
    let approving = in_background(approve);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !approving.is_finished(),
        "an approval on server two went ahead during the rotation on server one"
    );
    assert_eq!(entries(&mut conn, "credential.rotated", None).await, 0);

    let released = Instant::now();
    stall.rollback().await.expect("let the rotation go on");
    let (out, at) = approving.join().expect("CLI thread");
    eprintln!(
        "approval on server two completed {} ms after the rotation was let go",
        at.duration_since(released).as_millis()
    );
    assert!(at.duration_since(released) < Duration::from_secs(8));
    // The rotation was promoted before the approval went on: the second break is on the new
    // seal, and Alice's share of the old one is refused.
    let seq = |kind: &'static str, break_id: Option<String>| {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MIN(seq) FROM audit_log WHERE kind = $1 AND ($2::TEXT IS NULL OR break_id = $2)",
        )
        .bind(kind)
        .bind(break_id)
    };
    let rotated = seq("credential.rotated", None)
        .fetch_one(&mut conn)
        .await
        .expect("seq")
        .expect("the credential was rotated");
    let rejected = seq("share.rejected", Some(second.clone()))
        .fetch_one(&mut conn)
        .await
        .expect("seq")
        .unwrap_or_else(|| {
            panic!(
                "the old seal's share was not refused: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(!out.status.success());
    assert!(
        rotated < rejected,
        "rotated at {rotated}, refused at {rejected}"
    );
    let (break_seal, current_seal): (String, String) = sqlx::query_as(
        "SELECT b.seal_id, p.seal_id FROM breaks b JOIN procedures p ON p.id = b.procedure_id WHERE b.id = $1",
    )
    .bind(&second)
    .fetch_one(&mut conn)
    .await
    .expect("seals");
    assert_eq!(break_seal, current_seal, "the waiting break was not moved");

    // New shares, on server two: the grant opens the rotated credential.
    for name in ["alice", "bob"] {
        as_actor(two, &keys, name)
            .args(["approve", &second])
            .assert()
            .success();
    }
    let a = as_actor(two, &keys, "dave")
        .args(["break", "reveal", &second])
        .assert()
        .success();
    let access = common::stdout(&a).trim().to_owned();
    let c = sqlx::PgConnection::connect(&access)
        .await
        .expect("login with the grant made with the rotated credential");
    let _ = c.close().await;
    db.drop_db().await;
}

/// The value of cookie `name` among a response's `Set-Cookie` headers.
fn set_cookie(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';')
                .next()?
                .strip_prefix(&format!("{name}="))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

/// The value of the hidden form field `name` in a page.
fn hidden_field(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no hidden {name}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').expect("value's end")].to_owned()
}

/// Signs in to `server`'s web UI with the admin token as a browser would: a client that does
/// not follow redirects, the session cookie and the CSRF token its forms carry.
async fn ui_admin(server: &Server) -> (reqwest::Client, String, String) {
    // reqwest is built without a default TLS provider (the product installs ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let token = std::fs::read_to_string(server.data_dir.join("admin.token")).expect("admin token");
    let page = client
        .get(format!("{}/signin", server.url))
        .send()
        .await
        .expect("sign-in page");
    let pre_cookie = set_cookie(&page, "bg_pre");
    let pre = hidden_field(&page.text().await.expect("page"), "pre");
    let signed = client
        .post(format!("{}/signin", server.url))
        .header(reqwest::header::COOKIE, format!("bg_pre={pre_cookie}"))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(format!("pre={pre}&token={}&next=%2F", token.trim()))
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed.status(), 303, "sign-in");
    let session = format!("bg_session={}", set_cookie(&signed, "bg_session"));
    let home = client
        .get(format!("{}/", server.url))
        .header(reqwest::header::COOKIE, &session)
        .send()
        .await
        .expect("home")
        .text()
        .await
        .expect("home page");
    let csrf = hidden_field(&home, "csrf");
    (client, session, csrf)
}

/// The `target:` section of a procedure on `t` in `pg` with `access: proxy` over TLS, its
/// gateway allowed `connections` server connections.
fn proxy_target(
    pg: &breakglass_testkit::pgcluster::PgCluster,
    t: &common::PgTarget,
    connections: u32,
) -> String {
    format!(
        "target:\n  kind: postgres\n  details:\n    host: {}\n    port: \"{}\"\n    dbname: {}\n    admin_user: {}\n    grant_role: {}\n    connection: pg\n    sslmode: require\n    access: proxy\n    gateway_connections: \"{connections}\"\n",
        pg.host, pg.port, t.db, t.adm, t.app
    )
}

/// The CLI against `server`, signed in as `name` (its key in `keys`).
fn as_actor(server: &Server, keys: &std::path::Path, name: &str) -> assert_cmd::Command {
    let mut c = server.cli();
    c.arg("--identity").arg(keys.join(format!("{name}.key")));
    c
}

/// Opens a 10-minute break of procedure `p` on the first server as dave and approves it as
/// alice there and as bob on the second: the first server takes the first share (Bob's,
/// sent to the second, is forwarded to it and completes the quorum), so it grants the break
/// and holds its login. The break's id.
fn granted_by_the_first(servers: &[Server], keys: &std::path::Path, ticket: &str) -> String {
    let a = as_actor(&servers[0], keys, "dave")
        .args([
            "--output",
            "json",
            "break",
            "open",
            "p",
            "--reason",
            "db on fire",
        ])
        .args(["--ticket", ticket, "--duration", "10m"])
        .assert()
        .success();
    let id = stdout_json(&a)["id"].as_str().expect("id").to_owned();
    for (server, who) in [(&servers[0], "alice"), (&servers[1], "bob")] {
        as_actor(server, keys, who)
            .args(["approve", &id])
            .assert()
            .success();
    }
    id
}

/// `SELECT current_user` with psql through `url`.
fn current_user(url: &str) -> String {
    let out = std::process::Command::new("psql")
        .arg(url)
        .args(["-X", "-A", "-t", "-c", "SELECT current_user"])
        .env_remove("PGPASSWORD")
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql through the gateway: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A proxy break's login is held in the memory of the server that granted it. Its gateway token
/// is asked of the other server: the request is forwarded, and the connection string names the
/// holder's gateway. When the holder dies, the next token request has the survivor renew the
/// grant role's login with the operator connection and serve the break from its own gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_break_is_served_by_the_server_holding_its_login_then_by_the_survivor() {
    let test = "cli::scale_out::a_proxy_break_is_served_by_the_server_holding_its_login_then_by_the_survivor";
    let Some(db) = breakglass_testkit::fresh_postgres(test).await else {
        return;
    };
    let Some(pg) = breakglass_testkit::pgcluster::cluster(test) else {
        return;
    };
    if !breakglass_testkit::tool(test, "psql", "postgresql-client") {
        return;
    }
    let t = common::pg_target(pg, "so").await;
    let channels = t.webhook_channel().await;
    let targets = t.targets_file();
    let target = proxy_target(pg, &t, 4);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut servers, keys) = cluster_of(
        2,
        dir.path(),
        &db.url,
        &channels,
        &[
            "--targets",
            targets.to_str().expect("utf-8"),
            "--gateway",
            "127.0.0.1:0",
        ],
        &target,
        &t.admin_pw,
    );
    let id = granted_by_the_first(&servers, &keys, "INC-9");
    let gw0 = servers[0].gateway_addr();
    let gw1 = servers[1].gateway_addr();
    let a = as_actor(&servers[1], &keys, "dave")
        .args(["break", "reveal", &id])
        .assert()
        .success();
    let revealed = common::stdout(&a).trim().to_owned();
    assert!(revealed.contains(&format!("@{gw0}/")), "{revealed}");
    let role = current_user(&revealed);
    assert!(role.starts_with("bg_"), "{role}");

    // A token asked of the second server comes from the first, for the first's gateway.
    let a = as_actor(&servers[1], &keys, "dave")
        .args(["break", "token", &id])
        .assert()
        .success();
    let forwarded = common::stdout(&a).trim().to_owned();
    assert!(forwarded.contains(&format!("@{gw0}/")), "{forwarded}");
    assert_eq!(current_user(&forwarded), role);

    // A session open on the first server's gateway is terminated through the second: the
    // request is forwarded to the server it runs on, and the client is cut with the reason.
    let running = common::Running::start(
        common::gateway_session(&forwarded).await,
        "SELECT pg_sleep(30)",
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let session = format!("{id}-s3");
    let a = servers[1]
        .cli()
        .args([
            "--output",
            "json",
            "session",
            "terminate",
            &id,
            "--session",
            &session,
        ])
        .args(["--reason", "terminated through the other server"])
        .assert()
        .success();
    assert_eq!(stdout_json(&a)["session"], session.as_str());
    let (cut, _) = running.cut().await;
    assert!(
        cut.contains("terminated by admin: terminated through the other server"),
        "{cut}"
    );
    // The same from the second server's web UI: its form is sent on to the first server with
    // the viewer's own session.
    let running = common::Running::start(
        common::gateway_session(&forwarded).await,
        "SELECT pg_sleep(30)",
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let session = format!("{id}-s4");
    let (ui, cookie, csrf) = ui_admin(&servers[1]).await;
    let r = ui
        .post(format!(
            "{}/breaks/{id}/sessions/{session}/terminate",
            servers[1].url
        ))
        .header(reqwest::header::COOKIE, &cookie)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(format!("csrf={csrf}&reason=from+the+other+UI"))
        .send()
        .await
        .expect("the terminate form");
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert_eq!(
        r.headers()[reqwest::header::LOCATION],
        format!("/breaks/{id}/sessions/{session}").as_str()
    );
    let (cut, _) = running.cut().await;
    assert!(
        cut.contains("terminated by admin: from the other UI"),
        "{cut}"
    );

    // Servers behind one address: a client that reaches the second server's gateway is
    // relayed to the first's, which checks the token and records the session; the second
    // audits that it relayed the client.
    let via_second = forwarded.replace(&format!("@{gw0}/"), &format!("@{gw1}/"));
    assert_ne!(via_second, forwarded);
    let out = std::process::Command::new("psql")
        .arg(&via_second)
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT current_user, 'relayed-' || 42",
        ])
        .env_remove("PGPASSWORD")
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql through the second server's gateway: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{role}|relayed-42")
    );
    let session = format!("{id}-s5");
    let a = servers[1]
        .cli()
        .args([
            "--output",
            "json",
            "session",
            "show",
            &id,
            "--session",
            &session,
        ])
        .assert()
        .success();
    let shown = common::stdout(&a);
    assert!(shown.contains("'relayed-' || 42"), "{shown}");
    assert!(shown.contains("(relayed by srv-"), "{shown}");
    // A wrong token through the second server gets the holder's refusal, saying why.
    let wrong = {
        let (head, rest) = via_second.split_once('@').expect("url");
        let (user, _) = head.rsplit_once(':').expect("user:token");
        format!("{user}:not-the-token@{rest}")
    };
    let out = std::process::Command::new("psql")
        .arg(&wrong)
        .args(["-X", "-A", "-t", "-c", "SELECT 1"])
        .env_remove("PGPASSWORD")
        .output()
        .expect("running psql");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong gateway token"), "{err}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = reqwest::get(format!("{}/metrics", servers[1].url))
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics
            .lines()
            .any(|l| l == "breakglass_gateway_relayed_total 2"),
        "{metrics}"
    );

    // The holder dies. Once its liveness lease (5 s) has run out, the survivor renews the
    // login and serves the break itself.
    let survivor = servers.pop().expect("second server");
    servers.pop().expect("first server").kill();
    let started = Instant::now();
    let renewed = loop {
        let out = as_actor(&survivor, &keys, "dave")
            .args(["break", "token", &id])
            .output()
            .expect("break token");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains("did not answer"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the survivor did not take the break over: {err}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(renewed.contains(&format!("@{gw1}/")), "{renewed}");
    assert_eq!(current_user(&renewed), role);
    let a = survivor
        .cli()
        .args(["--output", "json", "audit", "list", "--limit", "1000"])
        .assert()
        .success();
    let kinds: Vec<String> = stdout_json(&a)["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| {
            e["break"] == id.as_str()
                && e["kind"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("gateway."))
        })
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    // (Each session's end is audited as it ends, so only the starts have a fixed place.)
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert_eq!(count("gateway.session_started"), 6, "{kinds:?}");
    assert_eq!(count("gateway.relayed"), 2, "{kinds:?}");
    assert_eq!(count("gateway.refused"), 1, "{kinds:?}");
    assert_eq!(count("gateway.session_terminated"), 2, "{kinds:?}");
    assert_eq!(count("gateway.login_renewed"), 1, "{kinds:?}");
    assert_eq!(count("gateway.token_issued"), 2, "{kinds:?}");
    let renewal = kinds
        .iter()
        .position(|k| k == "gateway.login_renewed")
        .expect("renewed");
    assert_eq!(
        kinds[renewal + 1..].first().map(String::as_str),
        Some("gateway.token_issued"),
        "the renewal and its token are one commit: {kinds:?}"
    );
}

/// Servers with TLS behind one address: a client that reaches the gateway of the server not
/// holding the login is relayed to the holder's over TLS, the holder's certificate verified
/// against the deployment's own (the holder refuses a plaintext client, so a session that runs
/// went over TLS both ways).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_the_other_tls_gateway_is_relayed_to_the_holder_over_tls() {
    let test =
        "cli::scale_out::a_client_of_the_other_tls_gateway_is_relayed_to_the_holder_over_tls";
    let Some(db) = breakglass_testkit::fresh_postgres(test).await else {
        return;
    };
    let Some(pg) = breakglass_testkit::pgcluster::cluster(test) else {
        return;
    };
    if !breakglass_testkit::tool(test, "psql", "postgresql-client") {
        return;
    }
    let t = common::pg_target(pg, "sr").await;
    let channels = t.webhook_channel().await;
    let targets = t.targets_file();
    let target = proxy_target(pg, &t, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let (servers, keys) = cluster_of(
        2,
        dir.path(),
        &db.url,
        &channels,
        &[
            "--tls-self-signed",
            "--targets",
            targets.to_str().expect("utf-8"),
            "--gateway",
            "127.0.0.1:0",
        ],
        &target,
        &t.admin_pw,
    );
    let id = granted_by_the_first(&servers, &keys, "INC-10");
    let (gw0, gw1) = (servers[0].gateway_addr(), servers[1].gateway_addr());
    let a = as_actor(&servers[1], &keys, "dave")
        .args(["break", "reveal", &id])
        .assert()
        .success();
    let url = common::stdout(&a).trim().to_owned();
    assert!(url.contains(&format!("@{gw0}/")), "{url}");
    assert!(url.contains("sslmode=require"), "{url}");
    let via_second = url.replace(&format!("@{gw0}/"), &format!("@{gw1}/"));
    let role = current_user(&via_second);
    assert!(role.starts_with("bg_"), "{role}");
    // The holder recorded it, naming the server that relayed it.
    let a = servers[0]
        .cli()
        .args(["--output", "json", "session", "show", &id])
        .args(["--session", &format!("{id}-s1")])
        .assert()
        .success();
    let shown = common::stdout(&a);
    assert!(shown.contains("SELECT current_user"), "{shown}");
    assert!(shown.contains("(relayed by srv-"), "{shown}");
    let a = servers[1]
        .cli()
        .args(["--output", "json", "audit", "list", "--limit", "1000"])
        .assert()
        .success();
    let relayed: Vec<serde_json::Value> = stdout_json(&a)["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["break"] == id.as_str() && e["kind"] == "gateway.relayed")
        .cloned()
        .collect();
    assert_eq!(relayed.len(), 1, "{relayed:?}");
    assert_eq!(
        relayed[0]["payload"]["address"],
        gw0.as_str(),
        "{relayed:?}"
    );
}

/// A raw PostgreSQL client connection made from a loopback address of the test's choosing (the
/// gateway sees it as the client's), for what psql does not show: the cancellation key, and
/// the SQLSTATE of an error.
struct Raw {
    s: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects to `gateway` (`IP:PORT`) from `from` (an IPv4 loopback address).
    async fn connect(gateway: &str, from: &str) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{from}:0").parse().expect("local address"))
            .expect("bind");
        let s = socket
            .connect(gateway.parse().expect("gateway address"))
            .await
            .expect("connect");
        Raw { s, buf: Vec::new() }
    }

    /// The next message: its tag and body (within 15 s).
    async fn message(&mut self) -> (u8, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() > len {
                    let frame: Vec<u8> = self.buf.drain(..=len).collect();
                    return (frame[0], frame[5..].to_vec());
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(15), self.s.read(&mut chunk))
                .await
                .expect("the gateway answers within 15 s")
                .expect("read");
            assert!(n > 0, "the gateway closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Logs in at `gateway` from `from` as `user` with `token`: the session and its
    /// cancellation key, or the refusal's SQLSTATE and message.
    async fn login(
        gateway: &str,
        from: &str,
        user: &str,
        token: &str,
    ) -> Result<(Raw, i32, [u8; 4]), (String, String)> {
        use tokio::io::AsyncWriteExt;
        let mut raw = Raw::connect(gateway, from).await;
        let mut body = 196_608i32.to_be_bytes().to_vec();
        for part in ["user", user] {
            body.extend_from_slice(part.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut startup = i32::try_from(body.len() + 4)
            .expect("length")
            .to_be_bytes()
            .to_vec();
        startup.extend_from_slice(&body);
        raw.s.write_all(&startup).await.expect("start-up");
        let mut key = None;
        loop {
            match raw.message().await {
                (b'R', b) if b[..4] == [0, 0, 0, 3] => {
                    raw.send(b'p', format!("{token}\0").as_bytes()).await;
                }
                (b'K', b) => {
                    key = Some((
                        i32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                        [b[4], b[5], b[6], b[7]],
                    ));
                }
                (b'E', b) => return Err(error_fields(&b)),
                (b'Z', _) => break,
                _ => {}
            }
        }
        let (pid, key) = key.expect("a cancellation key");
        Ok((raw, pid, key))
    }

    async fn send(&mut self, tag: u8, body: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mut frame = vec![tag];
        frame.extend_from_slice(&i32::try_from(body.len() + 4).expect("length").to_be_bytes());
        frame.extend_from_slice(body);
        self.s.write_all(&frame).await.expect("write");
    }

    /// Runs `sql` (simple protocol): its error's SQLSTATE and message, if it failed, once
    /// the session is ready again.
    async fn run(&mut self, sql: &str) -> Option<(String, String)> {
        self.send(b'Q', format!("{sql}\0").as_bytes()).await;
        let mut error = None;
        loop {
            match self.message().await {
                (b'E', b) => error = Some(error_fields(&b)),
                (b'Z', _) => return error,
                _ => {}
            }
        }
    }
}

/// The SQLSTATE and message of an ErrorResponse body.
fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    for field in body.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'C' => code = text,
            b'M' => message = text,
            _ => {}
        }
    }
    (code, message)
}

/// Sends a CancelRequest for `pid`/`key` to `gateway` from `from`.
async fn send_cancel(gateway: &str, from: &str, pid: i32, key: [u8; 4]) {
    use tokio::io::AsyncWriteExt;
    let mut raw = Raw::connect(gateway, from).await;
    let mut req = 16i32.to_be_bytes().to_vec();
    req.extend_from_slice(&80_877_102i32.to_be_bytes());
    req.extend_from_slice(&pid.to_be_bytes());
    req.extend_from_slice(&key);
    raw.s.write_all(&req).await.expect("cancel request");
    let _ = raw.s.shutdown().await;
}

/// Three servers behind one address. A statement running on a session of the holder's gateway
/// — reached directly, or relayed by the second server — is cancelled by a cancel request that
/// reaches the third server, which knows neither the session nor its holder: the store says
/// which server gave the key, and the request is sent on there (a wrong secret is not honoured).
/// A relayed client's failed logins count, at the holder, against the client's own address (the
/// relaying server passes it on, and the holder believes it from another server's gateway
/// host): that address is throttled at the holder, the relaying server's is not, and the audit
/// names the client with the server that relayed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaching_a_third_server_is_sent_on_and_relayed_clients_count_as_themselves() {
    let test = "cli::scale_out::a_cancel_reaching_a_third_server_is_sent_on_and_relayed_clients_count_as_themselves";
    let Some(db) = breakglass_testkit::fresh_postgres(test).await else {
        return;
    };
    let Some(pg) = breakglass_testkit::pgcluster::cluster(test) else {
        return;
    };
    let t = common::pg_target(pg, "sc").await;
    let channels = t.webhook_channel().await;
    let targets = t.targets_file();
    let target = proxy_target(pg, &t, 10);
    let dir = tempfile::tempdir().expect("tempdir");
    let (servers, keys) = cluster_of(
        3,
        dir.path(),
        &db.url,
        &channels,
        &[
            "--targets",
            targets.to_str().expect("utf-8"),
            "--gateway",
            "127.0.0.1:0",
            "--gateway-failed-logins",
            "3",
        ],
        &target,
        &t.admin_pw,
    );
    let id = granted_by_the_first(&servers, &keys, "INC-11");
    let gw: Vec<String> = servers.iter().map(Server::gateway_addr).collect();
    let a = as_actor(&servers[2], &keys, "dave")
        .args(["break", "reveal", &id])
        .assert()
        .success();
    let revealed = common::stdout(&a).trim().to_owned();
    assert!(revealed.contains(&format!("@{}/", gw[0])), "{revealed}");
    let token = revealed
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(creds, _)| creds.split_once(':'))
        .map(|(_, token)| token.to_owned())
        .expect("a token in the connection string");
    assert!(!token.contains('%'), "{token}");

    // A long statement on the holder's own gateway, then on a session the second server
    // relays there: a cancel request sent to the third server cancels it quickly.
    // (Each cancel request the third server sends on counts against its sender's allowance of
    // three failed logins a minute: each session's are sent from an address of their own.)
    for (via, from, canceller) in [
        (&gw[0], "127.0.0.4", "127.0.0.6"),
        (&gw[1], "127.0.0.5", "127.0.0.7"),
    ] {
        let (mut session, pid, key) = Raw::login(via, from, &id, &token)
            .await
            .expect("a session through the gateway");
        let sleeping = tokio::spawn(async move {
            let outcome = session.run("SELECT pg_sleep(30)").await;
            (outcome, Instant::now(), session)
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The right pid with the wrong secret is sent on, but the holder does not honour it.
        let mut wrong = key;
        wrong[0] ^= 0xff;
        send_cancel(&gw[2], canceller, pid, wrong).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            !sleeping.is_finished(),
            "a wrong secret cancelled the statement"
        );
        let sent = Instant::now();
        send_cancel(&gw[2], canceller, pid, key).await;
        let (outcome, at, mut session) = tokio::time::timeout(Duration::from_secs(10), sleeping)
            .await
            .expect("the statement is cancelled within 10 s")
            .expect("join");
        let (code, message) = outcome.expect("the statement failed");
        assert_eq!(code, "57014", "{message}");
        assert!(
            message.contains("canceling statement due to user request"),
            "{message}"
        );
        assert!(
            at.duration_since(sent) < Duration::from_secs(5),
            "cancelled after {:?}",
            at.duration_since(sent)
        );
        // The session goes on.
        assert_eq!(session.run("SELECT 1").await, None);
    }

    // Failed logins relayed by the second server count at the holder against the client's
    // own address: after three, that address is refused at the holder itself...
    for _ in 0..3 {
        let refused = Raw::login(&gw[1], "127.0.0.2", &id, "not-the-token")
            .await
            .err()
            .expect("refused");
        assert_eq!(refused.0, "28P01", "{refused:?}");
        assert!(refused.1.contains("wrong gateway token"), "{refused:?}");
    }
    let refused = Raw::login(&gw[0], "127.0.0.2", &id, &token)
        .await
        .err()
        .expect("throttled at the holder");
    assert_eq!(refused.0, "53300", "{refused:?}");
    assert!(refused.1.contains("too many failed logins"), "{refused:?}");
    // ...while another client relayed by the same server is not: the holder did not count
    // those failures against the relaying server's address.
    let refused = Raw::login(&gw[1], "127.0.0.3", &id, "not-the-token")
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.0, "28P01", "{refused:?}");
    let (mut session, _, _) = Raw::login(&gw[1], "127.0.0.3", &id, &token)
        .await
        .expect("a relayed session");
    assert_eq!(session.run("SELECT 1").await, None);
    drop(session);

    // The holder's audit names each relayed client by its own address, and the server that
    // relayed it, from its address.
    let a = servers[0]
        .cli()
        .args(["--output", "json", "audit", "list", "--limit", "1000"])
        .assert()
        .success();
    let peers = |kind: &str| -> Vec<String> {
        stdout_json(&a)["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["break"] == id.as_str() && e["kind"] == kind)
            .map(|e| e["payload"]["peer"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let started = peers("gateway.session_started");
    // (Relayed: `CLIENT (relayed by srv-… from RELAYER)`.)
    let count = |list: &[String], from: &str, relayed: bool| {
        list.iter()
            .filter(|p| p.starts_with(&format!("{from}:")))
            .filter(|p| {
                if relayed {
                    p.contains(" (relayed by srv-") && p.contains(" from 127.0.0.1:")
                } else {
                    !p.contains("relayed")
                }
            })
            .count()
    };
    assert_eq!(count(&started, "127.0.0.4", false), 1, "{started:?}");
    assert_eq!(count(&started, "127.0.0.5", true), 1, "{started:?}");
    assert_eq!(count(&started, "127.0.0.3", true), 1, "{started:?}");
    let refused = peers("gateway.refused");
    assert_eq!(count(&refused, "127.0.0.2", true), 3, "{refused:?}");
    assert_eq!(count(&refused, "127.0.0.3", true), 1, "{refused:?}");
    assert_eq!(refused.len(), 4, "{refused:?}");
}
