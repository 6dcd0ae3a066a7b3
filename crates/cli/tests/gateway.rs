//! The PostgreSQL credential-injection gateway end to end: `breakglass serve --gateway` with
//! TLS, procedures with `access: proxy` on a private PostgreSQL cluster (SCRAM, TLS
//! upstream), and real clients — psql (simple protocol), pgbench (many connections), an
//! sqlx application (extended protocol). The responder receives a gateway connection string,
//! never the grant's login; every statement is recorded and `session show` prints it; refused
//! statements never reach the database; wrong, reused and late tokens are refused with a
//! PostgreSQL error that says why; the session is closed at the deadline.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{PgTarget, Server, keygen, pg_target, sql, stderr, stdout, stdout_json};
use sqlx::Connection;

/// A proxy procedure on `t`, applied and sealed: `(connection, connections)` names its
/// operator connection and how many connections one token may open; `extra_details` are more
/// lines of its target's details, `extra` more lines of the procedure (`alert_channels: …`).
fn proxy_procedure(
    server: &Server,
    keys: &std::path::Path,
    id: &str,
    t: &PgTarget,
    pg: &breakglass_testkit::pgcluster::PgCluster,
    (connection, connections): (&str, u32),
    (extra_details, extra): (&str, &str),
) {
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let key = std::fs::read_to_string(keys.join(format!("{name}.pub"))).expect("pub");
        custodians.push_str(&format!("  - name: {name}\n    key: {}\n", key.trim()));
    }
    let file = keys.join(format!("{id}.yaml"));
    std::fs::write(
        &file,
        format!(
            "id: {id}\ntarget:\n  kind: postgres\n  details:\n    host: {}\n    port: \"{}\"\n    dbname: {}\n    admin_user: {}\n    grant_role: {}\n    connection: {connection}\n    sslmode: require\n    channel_binding: require\n    access: proxy\n    gateway_connections: \"{connections}\"\n    refuse: DROP DATABASE; ALTER SYSTEM\n{extra_details}custodians:\n{custodians}quorum: 2\nmax_grant: 1h\n{extra}",
            pg.host, pg.port, t.db, t.adm, t.app
        ),
    )
    .expect("procedure");
    server.apply_sealed(&file, id, &t.admin_pw);
}

/// Waits (at most 20 s) for a `session show --follow` process to return, successfully:
/// its standard output.
async fn follower_output(follower: std::process::Child, what: &str) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || follower.wait_with_output()),
    )
    .await
    .unwrap_or_else(|_| panic!("{what} returns within 20 s"))
    .expect("join")
    .expect("output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Keys for the custodians alice, bob and carol and the requester dave (`keys/NAME.key` and
/// `.pub`); dave is added as a requester.
fn people(server: &Server, keys: &std::path::Path) {
    for name in ["alice", "bob", "carol"] {
        let (_, key) = keygen(keys, name);
        std::fs::write(keys.join(format!("{name}.pub")), format!("{key}\n")).expect("pub");
    }
    server.add_requester(keys, "dave", &keygen(keys, "dave").1);
}

/// A CLI command run as `name` (with that custodian's or requester's identity).
fn as_actor(server: &Server, keys: &std::path::Path, name: &str) -> assert_cmd::Command {
    let mut c = server.cli();
    c.arg("--identity").arg(keys.join(format!("{name}.key")));
    c
}

/// Opens a break as dave, approves it as alice and bob, reveals it: the gateway URL.
fn granted_break(
    server: &Server,
    keys: &std::path::Path,
    procedure: &str,
    duration: &str,
) -> (String, String) {
    let as_actor = |name: &str| as_actor(server, keys, name);
    let a = as_actor("dave")
        .args([
            "--output",
            "json",
            "break",
            "open",
            procedure,
            "--reason",
            "db on fire",
            "--ticket",
            "INC-7",
            "--duration",
            duration,
        ])
        .assert()
        .success();
    let id = stdout_json(&a)["id"].as_str().expect("id").to_owned();
    for name in ["alice", "bob"] {
        as_actor(name).args(["approve", &id]).assert().success();
    }
    let a = as_actor("dave")
        .args(["break", "reveal", &id])
        .assert()
        .success();
    (id, stdout(&a).trim().to_owned())
}

/// `session terminate BREAK --session SESSION --reason REASON`.
fn terminate_cmd(
    server: &Server,
    break_id: &str,
    session: &str,
    reason: &str,
) -> assert_cmd::Command {
    let mut c = server.cli();
    c.args([
        "session",
        "terminate",
        break_id,
        "--session",
        session,
        "--reason",
        reason,
    ]);
    c
}

/// `session show BREAK --output json`: the break's recording.
fn recording(server: &Server, break_id: &str) -> serde_json::Value {
    recording_with(server, break_id, &[])
}

/// `session show BREAK --output json` with more options (`--page-size 7`…).
fn recording_with(server: &Server, break_id: &str, options: &[&str]) -> serde_json::Value {
    let a = server
        .cli()
        .args(["--output", "json", "session", "show", break_id])
        .args(options)
        .assert()
        .success();
    stdout_json(&a)
}

/// Milliseconds since the epoch of a time the API printed (RFC 3339).
fn rfc3339_ms(text: &str) -> i64 {
    let t = humantime::parse_rfc3339_weak(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    i64::try_from(ms).expect("ms")
}

/// The wall clock, to compare with the server's deadline (the server runs on this machine).
#[allow(clippy::disallowed_methods)]
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The server's relay threads (`gateway-relay-N`) and their context switches so far,
/// voluntary and not, from `/proc/PID/task/*/status`.
fn relay_switches(pid: u32) -> (u64, u64) {
    let (mut threads, mut switches) = (0, 0);
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task");
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("gateway-relay") {
            continue;
        }
        threads += 1;
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        switches += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    (threads, switches)
}

/// A row of the test table `items` (`id int`, `v text`), sent as `record_send` writes one:
/// the column count, then each column's type OID, length and bytes.
#[derive(Debug)]
struct ItemsRow(i32, &'static str);

impl tokio_postgres::types::ToSql for ItemsRow {
    fn to_sql(
        &self,
        _: &tokio_postgres::types::Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&2i32.to_be_bytes());
        out.extend_from_slice(&23u32.to_be_bytes());
        out.extend_from_slice(&4i32.to_be_bytes());
        out.extend_from_slice(&self.0.to_be_bytes());
        out.extend_from_slice(&25u32.to_be_bytes());
        out.extend_from_slice(&i32::try_from(self.1.len())?.to_be_bytes());
        out.extend_from_slice(self.1.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        matches!(ty.kind(), tokio_postgres::types::Kind::Composite(_))
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A `money` amount in hundredths, as `money_send` sends one.
#[derive(Debug)]
struct Money(i64);

impl tokio_postgres::types::ToSql for Money {
    fn to_sql(
        &self,
        _: &tokio_postgres::types::Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0.to_be_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::MONEY
    }

    tokio_postgres::types::to_sql_checked!();
}

fn psql(url: &str, commands: &[&str]) -> std::process::Output {
    let mut c = Command::new("psql");
    c.arg(url).args(["-X", "-A", "-t"]);
    for command in commands {
        c.args(["-c", command]);
    }
    c.env_remove("PGPASSWORD").output().expect("running psql")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_serves_real_clients_records_every_statement_and_ends_at_the_deadline() {
    let test = "cli::gateway::gateway_serves_real_clients_records_every_statement_and_ends_at_the_deadline";
    let Some(pg) = breakglass_testkit::pgcluster::cluster(test) else {
        return;
    };
    for tool in ["psql", "pgbench"] {
        if !breakglass_testkit::tool(test, tool, "postgresql-client") {
            return;
        }
    }
    let t = pg_target(pg, "gw").await;
    let t2 = pg_target(pg, "gx").await;
    // Its own admin role: a break's end rotates the procedure's sealed credential.
    let t3 = pg_target(pg, "gy").await;
    let app = &t.app;
    sql(
        pg,
        &t.db,
        format!(
            "CREATE TABLE items (id int PRIMARY KEY, v text);
             INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 10) g;
             GRANT SELECT, INSERT, UPDATE ON items TO {app};"
        ),
    )
    .await;
    let init = Command::new("pgbench")
        .args(["-i", "-s", "1", "-q"])
        .arg(pg.url(
            breakglass_testkit::pgcluster::SUPERUSER,
            pg.superuser_password(),
            &t.db,
        ))
        .output()
        .expect("pgbench -i");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    sql(
        pg,
        &t.db,
        format!("GRANT SELECT, UPDATE, INSERT ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO {app};"),
    )
    .await;

    // One targets file with the three databases' operator connections.
    let targets = t.dir.path().join("both.yaml");
    let op_url = |x: &PgTarget| pg.url(&x.op, &format!("op-{}", x.sfx), &x.db);
    std::fs::write(
        &targets,
        format!(
            "connections:\n  - name: pg\n    kind: postgres\n    operator_url: {}\n  - name: pg2\n    kind: postgres\n    operator_url: {}\n  - name: pg3\n    kind: postgres\n    operator_url: {}\n",
            op_url(&t),
            op_url(&t2),
            op_url(&t3)
        ),
    )
    .expect("targets");
    let (hook, alerts) = common::webhook_recorder().await;
    let channels = t.dir.path().join("channels.yaml");
    std::fs::write(
        &channels,
        format!("channels:\n  - name: ops\n    kind: webhook\n    url: http://{hook}/hook\n    secret: s3cret-for-tests\n"),
    )
    .expect("channels file");
    // The webhook requests whose body has `text`, waiting up to 20 s for the first.
    let alerted = |text: String| {
        let alerts = alerts.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let got: Vec<String> = alerts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .filter(|r| r.contains(&text))
                    .cloned()
                    .collect();
                if !got.is_empty() || Instant::now() > deadline {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let data = t.dir.path().join("data");
    let server = Server::start_with(
        &data,
        &[
            "--targets",
            targets.to_str().expect("utf-8"),
            "--channels",
            channels.to_str().expect("utf-8"),
            "--tls-self-signed",
            "--gateway",
            "127.0.0.1:0",
        ],
    );
    let gw = server.gateway_addr();
    let keys = &t.keys;
    people(&server, keys);
    // Alerts of the pgw procedure go to a webhook that keeps what it gets.
    proxy_procedure(
        &server,
        keys,
        "pgw",
        &t,
        pg,
        ("pg", 8),
        ("", "alert_channels: [ops]\n"),
    );
    proxy_procedure(&server, keys, "pgw1", &t2, pg, ("pg2", 1), ("", ""));
    proxy_procedure(
        &server,
        keys,
        "pgwi",
        &t3,
        pg,
        ("pg3", 1),
        ("    gateway_idle_timeout: 2s\n", "alert_channels: [ops]\n"),
    );

    // The requester receives a gateway connection string: no role, no password of the grant.
    let (id, url) = granted_break(&server, keys, "pgw", "10m");
    assert!(
        url.starts_with(&format!("postgresql://{id}:")) && url.contains(&format!("@{gw}/")),
        "{url}"
    );
    assert!(url.ends_with("sslmode=require"), "{url}");
    assert!(
        !url.contains(&t.admin_pw) && !url.contains("bg_brk"),
        "{url}"
    );
    let token = url
        .split_once(':')
        .and_then(|(_, r)| r.split_once(':'))
        .and_then(|(_, r)| r.split_once('@'))
        .map(|(t, _)| t.to_owned())
        .expect("token in the URL");

    // psql, simple protocol: a read, a write, a refused statement, an error.
    let out = psql(
        &url,
        &[
            "SELECT count(*) FROM items",
            "UPDATE items SET v = 'fixed' WHERE id <= 3",
            "drop   database postgres",
            "SELECT current_user",
            "SELECT * FROM no_such_table",
            // A password in a statement: sent to the target, recorded redacted (the grant's
            // role may not create roles, so the target refuses it; it is recorded all the same).
            "CREATE ROLE gw_not_allowed LOGIN PASSWORD 'gw-role-pw-1'",
        ],
    );
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(o.lines().any(|l| l == "10"), "stdout: {o}\nstderr: {e}");
    assert!(o.contains("UPDATE 3"), "{o}\n{e}");
    // The session runs as the grant's own ephemeral role, which the responder never named.
    let role = o
        .lines()
        .find(|l| l.starts_with("bg_"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("the session runs as the grant's role: {o}"));
    assert!(!url.contains(&role), "the reveal names the grant's login");
    assert!(
        e.contains("statement refused by procedure `pgw`: it matches `DROP DATABASE`"),
        "{e}"
    );
    assert!(e.contains("no_such_table"), "{e}");
    assert!(e.contains("permission denied to create role"), "{e}");
    assert!(
        e.contains("is recorded; it ends at"),
        "the gateway's notice: {e}"
    );

    // pgbench: four clients (five connections with its first), select-only.
    let bench = Command::new("pgbench")
        .args(["-n", "-S", "-c", "4", "-j", "2", "-t", "50"])
        .arg(&url)
        .output()
        .expect("pgbench");
    let bout = String::from_utf8_lossy(&bench.stdout).to_string();
    assert!(
        bench.status.success(),
        "{bout}\n{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    assert!(
        bout.contains("number of transactions actually processed: 200/200"),
        "{bout}"
    );

    // An sqlx application: the extended protocol, prepared statements, parameters.
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("sqlx through the gateway");
    let v: String = sqlx::query_scalar("SELECT v FROM items WHERE id = $1")
        .bind(2i32)
        .fetch_one(&mut conn)
        .await
        .expect("select");
    assert_eq!(v, "fixed");
    // Session state, to show that a kept server connection is reset for the next session.
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .expect("backend pid");
    let work_mem: String = sqlx::query_scalar("SHOW work_mem")
        .fetch_one(&mut conn)
        .await
        .expect("work_mem");
    sqlx::query("SET work_mem = '7MB'")
        .execute(&mut conn)
        .await
        .expect("set");
    let done = sqlx::query("UPDATE items SET v = $1 WHERE id > $2")
        .bind("bulk")
        .bind(7i32)
        .execute(&mut conn)
        .await
        .expect("update");
    assert_eq!(done.rows_affected(), 3);
    // A connection string with a password, bound as a parameter and inside a literal.
    let echoed: String = sqlx::query_scalar(
        "SELECT $1::text || ' ' || 'postgresql://app:gw-uri-pw-3@db.internal/app'",
    )
    .bind("host=db.internal password=gw-param-pw-2 dbname=app")
    .fetch_one(&mut conn)
    .await
    .expect("bound connection string");
    assert!(echoed.contains("gw-param-pw-2") && echoed.contains("gw-uri-pw-3"));
    // An unterminated password literal: PostgreSQL's error quotes it back ("unterminated
    // quoted string at or near …"); the client sees it, the recording does not.
    let unterminated = sqlx::raw_sql("ALTER ROLE gw_nobody PASSWORD 'gw-echo-pw-4")
        .execute(&mut conn)
        .await
        .expect_err("unterminated literal");
    assert!(
        unterminated.to_string().contains("gw-echo-pw-4"),
        "{unterminated}"
    );
    // COPY … FROM STDIN: its data is recorded with it.
    let mut copy = conn
        .copy_in_raw("COPY items (id, v) FROM STDIN")
        .await
        .expect("copy");
    copy.send(b"11\tcopied\n12\tit's\n".as_slice())
        .await
        .expect("copy data");
    assert_eq!(copy.finish().await.expect("copy done"), 2);
    let refused = sqlx::query("ALTER SYSTEM SET work_mem = '1GB'")
        .execute(&mut conn)
        .await
        .expect_err("refused");
    assert!(
        refused.to_string().contains("it matches `ALTER SYSTEM`"),
        "{refused}"
    );
    // The same pattern again in this session: refused, recorded, counted, not audited twice.
    sqlx::query("alter  system reset all")
        .execute(&mut conn)
        .await
        .expect_err("refused again");
    // Malformed start-up packets end their own connection; the open session is unaffected.
    for bad in [
        vec![0u8, 0, 0, 3],
        vec![0x7f, 0xff, 0xff, 0xff],
        vec![0, 0, 0, 8, 0x12, 0x34, 0x56, 0x78],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::TcpStream::connect(&gw)
            .await
            .expect("raw connect");
        raw.write_all(&bad).await.expect("write");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the gateway closes a malformed connection");
    }
    // The session goes on after a refusal.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE v = $1")
        .bind("bulk")
        .fetch_one(&mut conn)
        .await
        .expect("after the refusal");
    assert_eq!(n, 3);
    // Recorded while the session is still open: its relay thread hands its statements to the
    // store every 100 ms, not only when the session ends.
    let live_from = std::time::Instant::now();
    let live_session = loop {
        let rec = recording(&server, &id);
        let seen = rec["statements"].as_array().and_then(|all| {
            all.iter().find(|s| {
                s["statement"]
                    .as_str()
                    .is_some_and(|t| t.contains("SELECT count(*) FROM items WHERE v = $1"))
            })
        });
        if let Some(s) = seen {
            break s["session"].as_str().expect("session").to_owned();
        }
        assert!(
            live_from.elapsed() < Duration::from_secs(5),
            "a statement of an open session is not recorded within 5 s: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // `session show --follow` prints the open session's statements as they are recorded and
    // returns once it has ended.
    let follower = server
        .cli_process()
        .args([
            "session",
            "show",
            &id,
            "--session",
            &live_session,
            "--follow",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("session show --follow");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let followed: String = sqlx::query_scalar("SELECT 'followed, then closed'")
        .fetch_one(&mut conn)
        .await
        .expect("a statement while followed");
    assert_eq!(followed, "followed, then closed");
    conn.close().await.expect("close");
    let text = follower_output(follower, "session show --follow, after the session's end").await;
    for seen in [
        "SELECT count(*) FROM items WHERE v = $1",
        "SELECT 'followed, then closed'",
        &format!("session {live_session} ended"),
    ] {
        assert!(text.contains(seen), "`{seen}` not followed: {text}");
    }

    // The token has opened 7 of its 8 connections: one more, then "already used". The
    // session above ended cleanly with its server idle, so the gateway reset its server
    // connection (`DISCARD ALL`, just after the session's end) and hands it to this one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut last = sqlx::PgConnection::connect(&url)
        .await
        .expect("8th connection");
    let again: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut last)
        .await
        .expect("backend pid");
    assert_eq!(
        again, backend,
        "the kept server connection serves the next session"
    );
    let reset: String = sqlx::query_scalar("SHOW work_mem")
        .fetch_one(&mut last)
        .await
        .expect("work_mem");
    assert_eq!(reset, work_mem, "the kept connection was reset");
    let used = sqlx::PgConnection::connect(&url)
        .await
        .expect_err("9th connection");
    assert!(used.to_string().contains("was already used"), "{used}");
    drop(last);
    let wrong = sqlx::PgConnection::connect(&url.replace(&token, "not-the-token"))
        .await
        .expect_err("wrong token");
    assert!(wrong.to_string().contains("wrong gateway token"), "{wrong}");
    // A fresh token replaces the old one.
    let a = as_actor(&server, keys, "dave")
        .args(["break", "token", &id])
        .assert()
        .success();
    let fresh = stdout(&a).trim().to_owned();
    assert_ne!(fresh, url);
    let old = sqlx::PgConnection::connect(&url)
        .await
        .expect_err("revoked token");
    assert!(old.to_string().contains("wrong gateway token"), "{old}");
    let mut c = sqlx::PgConnection::connect(&fresh)
        .await
        .expect("fresh token");
    sqlx::query("SELECT 1")
        .execute(&mut c)
        .await
        .expect("select");
    c.close().await.expect("close");

    // A tokio-postgres application: it prepares without parameter types (the server
    // describes them) and binds in binary; over TLS, trusting the server's certificate.
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        for cert in CertificateDer::pem_file_iter(data.join("tls").join("cert.pem"))
            .expect("the server's certificate")
        {
            roots.add(cert.expect("PEM")).expect("a root");
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let (client, connection) =
        tokio_postgres::connect(&fresh, tokio_postgres_rustls::MakeRustlsConnect::new(tls))
            .await
            .expect("tokio-postgres through the gateway");
    let driver = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT v FROM items WHERE id = $1 -- tokio-postgres",
            &[&4i32],
        )
        .await
        .expect("select");
    assert_eq!(row.get::<_, String>(0), "v4");
    let n = client
        .execute(
            "UPDATE items SET v = $1 WHERE id = $2 -- tokio-postgres",
            &[&"tp", &5i32],
        )
        .await
        .expect("update");
    assert_eq!(n, 1);
    // A row of a table's type and a `money`, bound in binary by the application's own
    // `ToSql` (the server names the types: `items`, a composite type the gateway does not
    // know, and `money`).
    let row = client
        .query_one(
            "SELECT ($1::items).v, $2::money::text -- composite",
            &[&ItemsRow(4, "it s"), &Money(123_456)],
        )
        .await
        .expect("a composite and a money value");
    assert_eq!(row.get::<_, String>(0), "it s");
    drop(client);
    let _ = driver.await;

    // The recording: every statement, with outcome and rows; each session's recording
    // matches the digest in its audit entry.
    // (Sessions end asynchronously after the client leaves.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rec = recording(&server, &id);
    let statements = rec["statements"].as_array().expect("statements");
    let find = |needle: &str| {
        statements
            .iter()
            .find(|s| s["statement"].as_str().unwrap_or_default().contains(needle))
            .unwrap_or_else(|| panic!("`{needle}` not recorded: {rec}"))
    };
    assert_eq!(find("SELECT count(*) FROM items")["rows"], 1);
    assert_eq!(find("UPDATE items SET v = 'fixed'")["command"], "UPDATE 3");
    assert_eq!(find("UPDATE items SET v = 'fixed'")["rows"], 3);
    let drop_db = find("drop   database postgres");
    assert_eq!(drop_db["refused"], true, "{drop_db}");
    assert!(
        find("no_such_table")["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("42P01")
    );
    let extended = find("UPDATE items SET v = $1 WHERE id > $2");
    assert_eq!(
        (extended["protocol"].as_str(), extended["rows"].as_u64()),
        (Some("extended"), Some(3))
    );
    // sqlx binds in binary format and names the types in its Parse (text, int4): recorded as
    // their text.
    assert_eq!(
        extended["params"],
        serde_json::json!(["bulk", "7"]),
        "{extended}"
    );
    assert_eq!(
        find("SELECT v FROM items WHERE id = $1")["params"],
        serde_json::json!(["2"])
    );
    assert!(find("SELECT pg_backend_pid()")["params"].is_null());
    let copy = find("COPY items (id, v) FROM STDIN");
    assert_eq!(
        (&copy["data"], &copy["command"], &copy["rows"]),
        (
            &serde_json::json!("11\tcopied\n12\tit's\n"),
            &serde_json::json!("COPY 2"),
            &serde_json::json!(2)
        ),
        "{copy}"
    );
    assert_eq!(
        find("WHERE id = $1 -- tokio-postgres")["params"],
        serde_json::json!(["4"])
    );
    assert_eq!(
        find("WHERE id = $2 -- tokio-postgres")["params"],
        serde_json::json!(["tp", "5"])
    );
    // As PostgreSQL prints them (`money` without its currency symbol).
    assert_eq!(
        find("-- composite")["params"],
        serde_json::json!(["(4,\"it s\")", "1234.56"])
    );
    assert_eq!(find("ALTER SYSTEM SET work_mem")["refused"], true);
    assert_eq!(find("alter  system reset all")["refused"], true);
    // Passwords are not recorded: the statement, its parameters and its error are, with
    // `[redacted]` in the password's place.
    let create_role = find("CREATE ROLE gw_not_allowed");
    assert_eq!(
        create_role["statement"], "CREATE ROLE gw_not_allowed LOGIN PASSWORD '[redacted]'",
        "{create_role}"
    );
    assert!(
        create_role["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("42501"),
        "{create_role}"
    );
    let bound = find("SELECT $1::text || ' ' || 'postgresql://app:");
    assert_eq!(
        (&bound["statement"], &bound["params"]),
        (
            &serde_json::json!(
                "SELECT $1::text || ' ' || 'postgresql://app:[redacted]@db.internal/app'"
            ),
            &serde_json::json!(["host=db.internal password=[redacted] dbname=app"])
        ),
        "{bound}"
    );
    let echoed_error = find("ALTER ROLE gw_nobody PASSWORD");
    assert_eq!(
        (&echoed_error["statement"], &echoed_error["error"]),
        (
            &serde_json::json!("ALTER ROLE gw_nobody PASSWORD '[redacted]'"),
            &serde_json::json!("42601: unterminated quoted string at or near \"'[redacted]\"")
        ),
        "{echoed_error}"
    );
    for secret in [
        "gw-role-pw-1",
        "gw-param-pw-2",
        "gw-uri-pw-3",
        "gw-echo-pw-4",
    ] {
        assert!(!rec.to_string().contains(secret), "{secret} recorded");
    }
    // Each session's first statement refused for a pattern is audited (and alerted) with the
    // pattern and its place in the recording, not its text; a repeat only counts.
    let refusals = loop {
        let a = server.cli().args(["audit", "export"]).assert().success();
        let found: Vec<serde_json::Value> = stdout(&a)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["kind"] == "gateway.statement_refused" && e["break"] == id.as_str())
            .collect();
        if found.len() >= 2 {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    for (entry, text, pattern) in [
        (&refusals[0], "drop   database postgres", "DROP DATABASE"),
        (&refusals[1], "ALTER SYSTEM SET work_mem", "ALTER SYSTEM"),
    ] {
        let recorded = find(text);
        let p = &entry["payload"];
        assert_eq!(p["pattern"], pattern, "{entry}");
        assert_eq!(p["session"], recorded["session"], "{entry}\n{recorded}");
        assert_eq!(p["statement_seq"], recorded["seq"], "{entry}\n{recorded}");
        assert!(!entry.to_string().contains(text), "{entry}");
        assert_eq!(entry["actor"], "dave", "{entry}");
        // Alerted to the procedure's channel.
        let headline = format!(
            "Statement refused in gateway session {}: it matches `{pattern}`",
            recorded["session"].as_str().expect("session")
        );
        let got = alerted(headline.clone()).await;
        assert_eq!(got.len(), 1, "{headline}: {got:?}");
    }
    let selects = statements
        .iter()
        .filter(|s| {
            s["statement"]
                .as_str()
                .unwrap_or_default()
                .contains("FROM pgbench_accounts WHERE aid")
        })
        .count();
    assert_eq!(selects, 200, "every pgbench transaction is recorded");
    let sessions = rec["sessions"].as_array().expect("sessions");
    assert!(sessions.len() >= 9, "{}", sessions.len());
    // Read 7 statements per request (the pgbench sessions recorded 50 each): the same document.
    assert_eq!(recording_with(&server, &id, &["--page-size", "7"]), rec);
    let text = server
        .cli()
        .args(["session", "show", &id, "--page-size", "7"])
        .assert()
        .success();
    assert!(
        stdout(&text).contains("FROM pgbench_accounts WHERE aid"),
        "{}",
        stdout(&text)
    );
    // One session, from a position on.
    let one = sessions
        .iter()
        .find(|s| s["statements"].as_u64().unwrap_or(0) > 20)
        .expect("a pgbench session");
    let name = one["session"].as_str().expect("session id");
    let part = recording_with(
        &server,
        &id,
        &["--session", name, "--from-seq", "11", "--page-size", "4"],
    );
    assert_eq!(part["sessions"].as_array().map(Vec::len), Some(1), "{part}");
    let seqs: Vec<u64> = part["statements"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| s["seq"].as_u64().expect("seq"))
        .collect();
    let all: Vec<u64> = statements
        .iter()
        .filter(|s| s["session"] == name && s["seq"].as_u64() >= Some(11))
        .map(|s| s["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!((seqs.first(), &seqs), (Some(&11), &all));
    let unknown = server
        .cli()
        .args(["session", "show", &id, "--session", "brk_x-s1"])
        .assert()
        .failure();
    assert!(
        stderr(&unknown).contains(&format!(
            "break {id} has no gateway session brk_x-s1 (its sessions: {id}-s1"
        )),
        "{}",
        stderr(&unknown)
    );
    for s in sessions {
        assert_eq!(s["recording_intact"], true, "{s}");
    }
    // The grant's login is not in the recording either (its password never left the server:
    // the requester's side only ever had the token).
    let text = rec.to_string();
    assert!(
        !text.contains(&role),
        "the recording names the grant's login: {text}"
    );
    let a = server
        .cli()
        .args(["session", "show", &id])
        .assert()
        .success();
    let human = stdout(&a);
    assert!(human.contains("recording matches audit entry"), "{human}");
    assert!(human.contains("REFUSED"), "{human}");
    assert!(human.contains("$1 = 'bulk', $2 = '7'"), "{human}");
    assert!(human.contains("data: 11\tcopied"), "{human}");
    assert!(
        !human.contains(&role),
        "session show names the grant's login"
    );

    // The break's evidence pack carries the recording and verifies offline.
    let pack = t.dir.path().join("evidence.html");
    server
        .cli()
        .args(["evidence", &id, "--out"])
        .arg(&pack)
        .assert()
        .success();
    let page = std::fs::read_to_string(&pack).expect("pack");
    assert!(
        page.contains("UPDATE items SET v = $1 WHERE id &gt; $2"),
        "the recording is in the pack"
    );
    assert!(
        page.contains("$1 = &#39;bulk&#39;, $2 = &#39;7&#39;"),
        "with the bound parameters"
    );
    assert!(page.contains("gateway.session_ended"));
    common::breakglass()
        .args(["evidence", "verify"])
        .arg(&pack)
        .assert()
        .success();

    // Short break on the second procedure: one connection per token, closed at the deadline.
    let (id2, url2) = granted_break(&server, keys, "pgw1", "6s");
    // `session show --follow` without `--session` follows the whole break: sessions as they
    // start, their statements, their ends, until the break has ended (JSON: one event a line).
    let break_follower = server
        .cli_process()
        .args(["--output", "json", "session", "show", &id2, "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("session show --follow of a break");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut held = sqlx::PgConnection::connect(&url2).await.expect("connect");
    let again = sqlx::PgConnection::connect(&url2)
        .await
        .expect_err("single use");
    assert!(again.to_string().contains("was already used"), "{again}");
    let b = stdout_json(
        &server
            .cli()
            .args(["--output", "json", "break", "show", &id2])
            .assert()
            .success(),
    );
    let deadline_ms = b["granted_at_ms"]
        .as_i64()
        .zip(b["duration_s"].as_i64())
        .map(|(g, d)| g + d * 1000);
    let long = sqlx::query("SELECT pg_sleep(30)").execute(&mut held);
    let started = Instant::now();
    let cut = tokio::time::timeout(Duration::from_secs(20), long)
        .await
        .expect("the deadline ends the session")
        .expect_err("the query is cut off");
    let waited = started.elapsed();
    assert!(
        cut.to_string().contains("ended at") || cut.to_string().contains("closed"),
        "{cut}"
    );
    assert!(waited < Duration::from_secs(8), "cut after {waited:?}");
    if let Some(d) = deadline_ms {
        let now_ms = wall_clock_ms();
        assert!(
            now_ms - d < 1000,
            "closed {} ms after the deadline",
            now_ms - d
        );
    }
    let late = sqlx::PgConnection::connect(&url2).await.expect_err("late");
    let late = late.to_string();
    assert!(late.contains("ended"), "{late}");
    let text = follower_output(break_follower, "following a break, after its end").await;
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    let session2 = format!("{id2}-s1");
    assert_eq!(events[0]["event"], "session", "{text}");
    assert_eq!(events[0]["session"]["session"], session2.as_str(), "{text}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "statement"
                && e["statement"]["statement"] == "SELECT pg_sleep(30)"),
        "the statement cut at the deadline is followed: {text}"
    );
    let ended = events
        .iter()
        .find(|e| e["event"] == "session_ended")
        .unwrap_or_else(|| panic!("no session_ended: {text}"));
    assert_eq!(ended["session"]["end"], "deadline", "{text}");
    assert_eq!(ended["session"]["recording_intact"], true, "{text}");
    assert_eq!(
        kinds.last(),
        Some(&"break_ended"),
        "the break's end is the last event: {text}"
    );
    assert_eq!(
        events.last().map(|e| e["state"].clone()),
        Some("expired".into())
    );

    // Closing a break ends its open sessions at once, well before their deadline.
    let (id3, url3) = granted_break(&server, keys, "pgw1", "1h");
    let mut open = sqlx::PgConnection::connect(&url3).await.expect("connect");
    let long = tokio::spawn(async move {
        let r = sqlx::query("SELECT pg_sleep(30)").execute(&mut open).await;
        r.map(|_| ()).map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let closing = Instant::now();
    as_actor(&server, keys, "dave")
        .args(["break", "close", &id3])
        .assert()
        .success();
    let cut = tokio::time::timeout(Duration::from_secs(10), long)
        .await
        .expect("closing the break ends the session")
        .expect("task")
        .expect_err("the query is cut off");
    assert!(cut.contains("was closed"), "{cut}");
    assert!(
        closing.elapsed() < Duration::from_secs(5),
        "cut {:?} after the close",
        closing.elapsed()
    );

    // The procedure's gateway_idle_timeout (2 s) closes a session that sent and received
    // nothing for that long while it was the client's turn: not one that keeps talking, nor
    // one waiting on a long statement.
    let (id4, url4) = granted_break(&server, keys, "pgwi", "1h");
    let mut talking = sqlx::PgConnection::connect(&url4).await.expect("connect");
    for _ in 0..8 {
        sqlx::query("SELECT 1")
            .execute(&mut talking)
            .await
            .expect("a session that keeps talking stays open");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sqlx::query("SELECT pg_sleep(3.5)")
        .execute(&mut talking)
        .await
        .expect("a statement running longer than the idle timeout is not idleness");
    let quiet = Instant::now();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let idle = sqlx::query("SELECT 'after the idle timeout'")
        .execute(&mut talking)
        .await
        .expect_err("the idle session was closed");
    drop(talking);
    let recorded = recording(&server, &id4);
    let s = &recorded["sessions"][0];
    assert_eq!(s["end"], "idle", "{s}\n(the client saw: {idle})");
    assert_eq!(s["recording_intact"], true, "{s}");
    let statements: Vec<&str> = recorded["statements"]
        .as_array()
        .expect("statements")
        .iter()
        .filter_map(|x| x["statement"].as_str())
        .collect();
    assert_eq!(statements.len(), 9, "{statements:?}");
    assert!(
        !statements.contains(&"SELECT 'after the idle timeout'"),
        "{statements:?}"
    );
    let ended_after = rfc3339_ms(s["ended_at"].as_str().expect("ended_at"))
        - rfc3339_ms(
            recorded["statements"][8]["at"]
                .as_str()
                .expect("last statement's time"),
        );
    assert!(
        (5_000..9_000).contains(&ended_after),
        "ended {ended_after} ms after the pg_sleep started (3.5 s of it, then 2 s idle, checked every 0.25 s); waited {:?}",
        quiet.elapsed()
    );

    // One session is terminated with a reason while a long statement runs: the client gets
    // FATAL 57P01 naming who and why at once, the statement is cancelled on the database
    // (not run to its end by an orphaned backend), the end is recorded as `terminated`, the
    // audit log has who and why, and the break goes on: a second session still works.
    let a = as_actor(&server, keys, "dave")
        .args(["break", "token", &id4])
        .assert()
        .success();
    let url5 = stdout(&a).trim().to_owned();
    let mut doomed = sqlx::PgConnection::connect(&url5).await.expect("connect");
    sqlx::query("SELECT 'before the termination'")
        .execute(&mut doomed)
        .await
        .expect("a statement");
    let session5 = format!("{id4}-s2");
    let running = common::Running::start(doomed, "SELECT pg_sleep(60)");
    // The pg_sleep is running on the database.
    let sleeping = |n: i64| {
        let db = t3.db.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mut c = pg.connect(&db).await;
                let (count,): (i64,) = sqlx::query_as(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'",
                )
                .fetch_one(&mut c)
                .await
                .expect("pg_stat_activity");
                let _ = sqlx::Connection::close(c).await;
                if count == n || Instant::now() > deadline {
                    return count;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(sleeping(1).await, 1, "the pg_sleep runs on the database");
    // An auditor may watch but not terminate; an empty reason is refused naming the field;
    // an unknown session is not found.
    let a = terminate_cmd(&server, &id4, &session5, "  ")
        .assert()
        .failure();
    assert!(stderr(&a).contains("reason"), "{}", stderr(&a));
    let a = terminate_cmd(&server, &id4, &format!("{id4}-s9"), "r")
        .assert()
        .failure();
    assert!(
        stderr(&a).contains(&format!("{id4}-s9")) && stderr(&a).contains("not found"),
        "{}",
        stderr(&a)
    );
    let asked = Instant::now();
    let a = terminate_cmd(
        &server,
        &id4,
        &session5,
        "ran pg_sleep in an emergency session",
    )
    .args(["--output", "json"])
    .assert()
    .success();
    let answer = stdout_json(&a);
    assert_eq!(answer["session"], session5.as_str(), "{answer}");
    assert_eq!(answer["terminated_by"], "admin", "{answer}");
    let (cut, at) = running.cut().await;
    assert!(
        cut.contains("terminated by admin: ran pg_sleep in an emergency session"),
        "{cut}"
    );
    assert!(
        at.duration_since(asked) < Duration::from_secs(5),
        "cut after {:?}",
        at.duration_since(asked)
    );
    assert_eq!(
        sleeping(0).await,
        0,
        "the statement was cancelled on the database"
    );
    // Its end is recorded once its connection closed; terminating it again says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ended = loop {
        let r = recording_with(&server, &id4, &["--session", &session5]);
        if r["sessions"][0]["end"].is_string() || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let s = &ended["sessions"][0];
    assert_eq!(s["end"], "terminated", "{s}");
    assert_eq!(s["recording_intact"], true, "{s}");
    let statements: Vec<&str> = ended["statements"]
        .as_array()
        .expect("statements")
        .iter()
        .filter_map(|x| x["statement"].as_str())
        .collect();
    assert_eq!(
        statements,
        ["SELECT 'before the termination'", "SELECT pg_sleep(60)"]
    );
    let cut_off = &ended["statements"][1];
    assert!(
        cut_off["error"]
            .as_str()
            .is_some_and(|e| e.contains("terminated")),
        "{cut_off}"
    );
    let a = terminate_cmd(&server, &id4, &session5, "again")
        .assert()
        .failure();
    assert!(
        stderr(&a).contains("already ended (end: terminated)"),
        "{}",
        stderr(&a)
    );
    let a = server.cli().args(["audit", "export"]).assert().success();
    let terminated: Vec<serde_json::Value> = stdout(&a)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "gateway.session_terminated")
        .collect();
    assert_eq!(terminated.len(), 1, "{terminated:?}");
    assert_eq!(terminated[0]["actor"], "admin", "{:?}", terminated[0]);
    assert_eq!(
        terminated[0]["payload"]["reason"], "ran pg_sleep in an emergency session",
        "{:?}",
        terminated[0]
    );
    assert_eq!(terminated[0]["payload"]["session"], session5.as_str());
    let headline = format!(
        "Gateway session {session5} terminated by admin: ran pg_sleep in an emergency session"
    );
    assert_eq!(alerted(headline.clone()).await.len(), 1, "{headline}");
    // `/metrics` counts sessions by how they ended and every refused statement.
    let metrics = metrics_text(&server, &data).await;
    for line in [
        "breakglass_gateway_sessions_ended_total{end=\"terminated\"} 1",
        "breakglass_gateway_sessions_ended_total{end=\"idle\"} 1",
        "breakglass_gateway_statements_refused_total 3",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    }

    // The break goes on: a second session of the same token's break works.
    let a = as_actor(&server, keys, "dave")
        .args(["break", "token", &id4])
        .assert()
        .success();
    let url6 = stdout(&a).trim().to_owned();
    let mut after = sqlx::PgConnection::connect(&url6)
        .await
        .expect("the break goes on");
    sqlx::query("SELECT 'after the termination'")
        .execute(&mut after)
        .await
        .expect("a statement after the termination");
    // That session is still open when the server is killed below: once its statement is
    // stored, the kill leaves the session without an end.
    let session6 = format!("{id4}-s3");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = recording_with(&server, &id4, &["--session", &session6]);
        if r["statements"].as_array().is_some_and(|s| !s.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "not stored: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Tampering with a stored recording is detected against the audit chain.
    drop(server);
    let db = store_db(&data).await;
    sqlx::query(
        "UPDATE session_chunks SET body = replace(body, '\"drop   database postgres\"', '\"SELECT 1\"')",
    )
    .execute(&db)
    .await
    .expect("tamper");
    db.close().await;
    let server = Server::start_with(
        &data,
        &[
            "--targets",
            targets.to_str().expect("utf-8"),
            "--channels",
            channels.to_str().expect("utf-8"),
            "--tls-self-signed",
            "--gateway",
            "127.0.0.1:0",
        ],
    );
    let a = server.cli().args(["session", "show", &id]).assert().code(8);
    assert!(
        stdout(&a).contains("RECORDING DOES NOT MATCH"),
        "{}",
        stdout(&a)
    );
    server.cli().args(["audit", "verify"]).assert().success();
    // The session the kill left open was closed at start-up as `lost`, binding what was
    // stored of it to the chain.
    drop(after);
    let r = recording_with(&server, &id4, &["--session", &session6]);
    let s = &r["sessions"][0];
    assert_eq!(s["end"], "lost", "{r}");
    assert_eq!(s["recording_intact"], true, "{r}");
    assert_eq!(
        r["statements"][0]["statement"], "SELECT 'after the termination'",
        "{r}"
    );
    assert!(
        server
            .log_lines()
            .iter()
            .any(|l| l.contains("their ends recorded as lost") && l.contains(&session6)),
        "{:?}",
        server.log_lines()
    );

    // The restart lost the held login of break `id` (memory only): its connection string is
    // refused with the reason and what to do. `break token` has the target give the grant role
    // a new login with the operator connection (nothing sealed is opened) and issues a fresh
    // token for it; the session numbers go on after the ones already recorded.
    let gw2 = server.gateway_addr();
    // An idle gateway sleeps: with no session open its relay threads wake only for the sweep
    // of kept server connections (every 5 s), not for the tenth-of-a-second hand-over of
    // recordings.
    let (threads, before) = relay_switches(server.pid());
    assert!(threads >= 1, "no gateway-relay thread in the server");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, after) = relay_switches(server.pid());
    assert!(
        after - before <= 2 * threads,
        "{threads} idle relay threads were switched {} times in 2 s",
        after - before
    );
    let stale = fresh.replace(&gw, &gw2);
    let lost = sqlx::PgConnection::connect(&stale)
        .await
        .expect_err("the held login is gone");
    assert!(
        lost.to_string().contains("the server restarted")
            && lost
                .to_string()
                .contains(&format!("breakglass break token {id}")),
        "{lost}"
    );
    let a = as_actor(&server, keys, "dave")
        .args(["break", "token", &id])
        .assert()
        .success();
    let renewed = stdout(&a).trim().to_owned();
    assert!(renewed.contains(&format!("@{gw2}/")), "{renewed}");
    // psql's \lo_import writes a large object with libpq's fast-path function calls.
    let blob = t.dir.path().join("blob.bin");
    std::fs::write(&blob, vec![7u8; 20_000]).expect("blob");
    let lo_import = format!("\\lo_import {}", blob.display());
    // And a configuration file holding a password: recorded in hex, the password redacted.
    let conf = t.dir.path().join("app.conf");
    std::fs::write(&conf, "host=db password=lo-s3cr3t\n").expect("conf");
    let lo_import_conf = format!("\\lo_import {}", conf.display());
    let out = psql(
        &renewed,
        &[
            "SELECT current_user",
            "SELECT count(*) FROM items",
            &lo_import,
            &lo_import_conf,
        ],
    );
    let o = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{o}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = o.lines().collect();
    // The 10 rows made at the start and the 2 the COPY added.
    assert_eq!(lines[..2], [role.as_str(), "12"], "{o}");
    assert!(lines[2].starts_with("lo_import "), "{o}");
    assert!(lines[3].starts_with("lo_import "), "{o}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The JSON document of a break with an edited recording: whole, and exit 8 as well.
    let a = server
        .cli()
        .args(["--output", "json", "session", "show", &id])
        .assert()
        .code(8);
    let rec = stdout_json(&a);
    assert_eq!(
        rec["sessions"][0]["recording_intact"], false,
        "the first session's recording was edited: {rec}"
    );
    let sessions: Vec<&str> = rec["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["session"].as_str().unwrap_or_default())
        .collect();
    let mut unique = sessions.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), sessions.len(), "{sessions:?}");
    let last = sessions.last().copied().unwrap_or_default();
    assert_eq!(last, format!("{id}-s{}", sessions.len()), "{sessions:?}");
    let mine: Vec<&serde_json::Value> = rec["statements"]
        .as_array()
        .expect("statements")
        .iter()
        .filter(|s| s["session"] == last)
        .collect();
    assert!(
        mine.iter().any(|s| s["statement"] == "SELECT current_user"),
        "{rec}"
    );
    // Each fast-path call is recorded (lo_creat, lo_open, lo_write, lo_close…), none failed.
    let calls: Vec<&&serde_json::Value> = mine
        .iter()
        .filter(|s| s["protocol"] == "function")
        .collect();
    assert!(calls.len() >= 3, "{mine:?}");
    for c in &calls {
        assert!(
            c["statement"]
                .as_str()
                .is_some_and(|t| t.starts_with("(function call: lo"))
                && c["error"].is_null(),
            "{c}"
        );
    }
    // lo_write's arguments (libpq writes 8 KiB at a time): the descriptor, then the blob's
    // bytes, binary, so in hex: the first KiB of each, and its length.
    let written: u64 = calls
        .iter()
        .filter_map(|c| c["params"][1].as_str())
        .filter_map(|v| v.strip_prefix(&format!("\\x{}… (", "07".repeat(1024))))
        .filter_map(|rest| rest.strip_suffix(" bytes)")?.parse::<u64>().ok())
        .sum();
    assert_eq!(written, 20_000, "lo_write's data recorded: {calls:?}");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let conf_written = format!("\\x{}", hex(b"host=db password=[redacted]\n"));
    assert!(
        calls
            .iter()
            .any(|c| c["params"][1] == conf_written.as_str()),
        "{calls:?}"
    );
    let whole = rec.to_string();
    assert!(
        !whole.contains("lo-s3cr3t") && !whole.contains(&hex(b"lo-s3cr3t")),
        "a password in the recording: {calls:?}"
    );
    let a = server
        .cli()
        .args(["--output", "json", "audit", "list", "--limit", "1000"])
        .assert()
        .success();
    let entries = stdout_json(&a);
    let renewal = entries["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["break"] == id.as_str() && e["kind"] == "gateway.login_renewed")
        .unwrap_or_else(|| panic!("no gateway.login_renewed entry: {entries}"));
    assert_eq!(renewal["payload"]["role"], role.as_str(), "{renewal}");
}

/// The SQLite store of a server's data dir `data`, opened directly (to write what no API
/// writes: an edited recording, many breaks at once).
async fn store_db(data: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        data.join("breakglass.db").display()
    ))
    .await
    .expect("sqlite")
}

/// `/metrics` of a server started with `--tls-self-signed` in data dir `data`.
async fn metrics_text(server: &Server, data: &std::path::Path) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(
        &std::fs::read(data.join("tls").join("cert.pem")).expect("the server's certificate"),
    )
    .expect("pem");
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .expect("client")
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("metrics text")
}

/// Gateway connections fill the first relay thread up to 8 before the second gets any (a few
/// sessions on one thread sleep and wake less: BENCHMARKS.md), then spread; `/metrics` shows
/// each thread's open connections, back to 0 once they end. `session list` lists the open
/// sessions of a break older than the newest 1,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_connections_fill_one_relay_thread_before_the_next() {
    let test = "cli::gateway::gateway_connections_fill_one_relay_thread_before_the_next";
    let Some(pg) = breakglass_testkit::pgcluster::cluster(test) else {
        return;
    };
    let t = pg_target(pg, "rt").await;
    let data = t.dir.path().join("data");
    let targets = t.targets_file();
    let server = Server::start_with(
        &data,
        &[
            "--targets",
            targets.to_str().expect("utf-8"),
            "--tls-self-signed",
            "--gateway",
            "127.0.0.1:0",
            "--gateway-threads",
            "2",
        ],
    );
    let keys = &t.keys;
    people(&server, keys);
    proxy_procedure(&server, keys, "pgr", &t, pg, ("pg", 18), ("", ""));
    let (id, url) = granted_break(&server, keys, "pgr", "10m");
    let mut open = Vec::new();
    for (n, spread) in [
        (5, [5, 0]),
        (8, [8, 0]),
        (9, [8, 1]),
        (12, [8, 4]),
        (13, [8, 5]),
    ] {
        while open.len() < n {
            let mut c = sqlx::PgConnection::connect(&url)
                .await
                .expect("through the gateway");
            let one: i32 = sqlx::query_scalar("SELECT 1")
                .fetch_one(&mut c)
                .await
                .expect("select");
            assert_eq!(one, 1);
            open.push(c);
        }
        relays_reach(&server, &data, spread).await;
    }
    // The open sessions are listed however many breaks were opened since this one (scheduled
    // drills open breaks all day): 1,100 newer breaks, lapsed, written to the store directly.
    let db = store_db(&data).await;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1100) \
         INSERT INTO breaks (id, procedure_id, seal_id, requester, reason, ticket, duration_ms, \
         quorum, requested_at, approval_deadline, approvals, state, ended_at) \
         SELECT printf('brk_f%015x', i), procedure_id, seal_id, requester, 'newer', ticket, \
         duration_ms, quorum, requested_at + i, approval_deadline + i, '[]', 'lapsed', \
         approval_deadline + i FROM breaks, n WHERE breaks.id = $1",
    )
    .bind(&id)
    .execute(&db)
    .await
    .expect("newer breaks");
    db.close().await;
    let a = server
        .cli()
        .args(["--output", "json", "session", "list"])
        .assert()
        .success();
    let listed = stdout_json(&a);
    let sessions = listed["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 13, "{listed}");
    assert!(
        sessions.iter().all(|x| x["break"] == id.as_str()),
        "{listed}"
    );
    // Closing the 4 oldest (on thread 0) makes room there: the next 4 go to thread 0, the
    // one after to thread 1, which has fewer than 8.
    for c in open.drain(..4) {
        c.close().await.expect("close");
    }
    relays_reach(&server, &data, [4, 5]).await;
    for _ in 0..5 {
        open.push(
            sqlx::PgConnection::connect(&url)
                .await
                .expect("through the gateway"),
        );
    }
    relays_reach(&server, &data, [8, 6]).await;
    for c in open.drain(..) {
        c.close().await.expect("close");
    }
    relays_reach(&server, &data, [0, 0]).await;

    // A session left open by a server that was killed, on a break whose grant ended while
    // no server ran, is closed as lost at the next start-up, however many breaks were opened
    // after it (the lost-session scan looks at every break that ended in the last week).
    let a = as_actor(&server, keys, "dave")
        .args(["break", "token", &id])
        .assert()
        .success();
    let mut left = sqlx::PgConnection::connect(stdout(&a).trim())
        .await
        .expect("through the gateway");
    sqlx::query("SELECT 'left open'")
        .execute(&mut left)
        .await
        .expect("a statement");
    let stored = |r: &serde_json::Value| {
        r["statements"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x["statement"] == "SELECT 'left open'"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !stored(&recording_with(&server, &id, &[])) {
        assert!(std::time::Instant::now() < deadline, "not stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
    drop(left);
    let db = store_db(&data).await;
    sqlx::query(
        "UPDATE breaks SET deadline = granted_at + 1, due_at = granted_at + 1 WHERE id = $1",
    )
    .bind(&id)
    .execute(&db)
    .await
    .expect("the grant's deadline passes while no server runs");
    db.close().await;
    let server = Server::start_with(
        &data,
        &[
            "--targets",
            targets.to_str().expect("utf-8"),
            "--tls-self-signed",
            "--gateway",
            "127.0.0.1:0",
        ],
    );
    let r = recording_with(&server, &id, &[]);
    let lost: Vec<&serde_json::Value> = r["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter(|s| s["end"] == "lost")
        .collect();
    assert_eq!(lost.len(), 1, "{r}");
    assert_eq!(lost[0]["recording_intact"], true, "{r}");
    assert!(stored(&r), "{r}");
    let a = server
        .cli()
        .args(["--output", "json", "break", "show", &id])
        .assert()
        .success();
    assert_ne!(
        stdout_json(&a)["state"],
        "granted",
        "the grant ended at start-up"
    );
}

/// Waits (at most 10 s) until `/metrics` shows `expected` connections open on relay threads 0
/// and 1 (and no other thread).
async fn relays_reach(server: &Server, data: &std::path::Path, expected: [usize; 2]) {
    let want: Vec<String> = expected
        .iter()
        .enumerate()
        .map(|(thread, n)| {
            format!("breakglass_gateway_relay_connections{{thread=\"{thread}\"}} {n}")
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics_text(server, data).await;
        let got: Vec<&str> = m
            .lines()
            .filter(|l| l.starts_with("breakglass_gateway_relay_connections{"))
            .collect();
        if got == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "want {want:?}\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bundle embedded in an evidence page.
fn evidence_bundle(page: &str) -> serde_json::Value {
    let open = "<script type=\"application/json\" id=\"breakglass-evidence\">";
    let start = page.find(open).expect("the bundle") + open.len();
    let end = page[start..].find("</script>").expect("its end") + start;
    serde_json::from_str(&page[start..end]).expect("the bundle is JSON")
}

/// A break's evidence pack holds its gateway sessions as their stored lines, within a budget
/// of statements (each session whole or listed without its statements), and `evidence verify`
/// checks each ended session's statements against its `gateway.session_ended` entry: a pack
/// made after a recording was edited in the store does not verify, naming the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evidence_pack_binds_each_session_to_the_chain_within_its_budget() {
    use serde_json::json;
    let test = "cli::gateway::the_evidence_pack_binds_each_session_to_the_chain_within_its_budget";
    let Some(pg) = breakglass_testkit::pgcluster::cluster(test) else {
        return;
    };
    if !breakglass_testkit::tool(test, "psql", "postgresql-client") {
        return;
    }
    let t = pg_target(pg, "ev").await;
    let data = t.dir.path().join("data");
    let targets = t.targets_file();
    let args = [
        "--targets",
        targets.to_str().expect("utf-8"),
        "--tls-self-signed",
        "--gateway",
        "127.0.0.1:0",
    ];
    let server = Server::start_with(&data, &args);
    let keys = &t.keys;
    people(&server, keys);
    proxy_procedure(&server, keys, "pge", &t, pg, ("pg", 8), ("", ""));
    let (id, url) = granted_break(&server, keys, "pge", "10m");
    // Three sessions, one after the other: 3, 5 and 1 statements.
    for statements in [
        &["SELECT 1", "SELECT 'to be edited'", "SELECT 3"][..],
        &[
            "SELECT 21",
            "SELECT 22",
            "SELECT 23",
            "SELECT 24",
            "SELECT 25",
        ],
        &["SELECT 'last'"],
    ] {
        let out = psql(&url, statements);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sessions: Vec<String> = (1..=3).map(|n| format!("{id}-s{n}")).collect();
    let waited = Instant::now();
    let rec = loop {
        let rec = recording(&server, &id);
        let ended = rec["sessions"]
            .as_array()
            .is_some_and(|all| all.len() == 3 && all.iter().all(|s| !s["ended_at"].is_null()));
        if ended {
            break rec;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the sessions have not all ended: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recorded: Vec<u64> = rec["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["recorded"].as_u64().expect("recorded"))
        .collect();
    assert_eq!(recorded, [3, 5, 1], "{rec}");
    let pubkey = stdout(&server.cli().args(["audit", "pubkey"]).assert().success())
        .trim()
        .to_owned();
    let pack = |name: &str, options: &[&str]| {
        let path = t.dir.path().join(name);
        let made = server
            .cli()
            .args(["evidence", &id, "--out"])
            .arg(&path)
            .args(options)
            .assert()
            .success();
        (
            path.clone(),
            std::fs::read_to_string(&path).expect("the pack"),
            stdout(&made),
        )
    };
    let verify = |path: &std::path::Path| {
        common::breakglass()
            .args(["--output", "json", "evidence", "verify"])
            .arg(path)
            .args(["--pubkey", &pubkey])
            .assert()
    };

    // The whole recording fits the default budget: every session is bound to the chain.
    let (whole, page, said) = pack("whole.html", &[]);
    assert!(
        said.contains("it verifies")
            && said.contains("3 bound to the audit chain, 0 open (not bound), 0 not included"),
        "{said}"
    );
    let report = stdout_json(&verify(&whole).success());
    assert_eq!(
        (
            &report["sessions_bound"],
            &report["sessions_open"],
            &report["sessions_not_included"],
            &report["statements"]
        ),
        (&json!(3), &json!(0), &json!(0), &json!(9)),
        "{report}"
    );
    let bundle = evidence_bundle(&page);
    assert_eq!(bundle["format"], "breakglass-evidence-v2");
    assert_eq!(bundle["recording"]["budget"], 100_000);
    let human = common::breakglass()
        .args(["evidence", "verify"])
        .arg(&whole)
        .assert()
        .success();
    assert!(
        stdout(&human).contains("gateway sessions: 3 bound to the audit chain, 0 open"),
        "{}",
        stdout(&human)
    );
    // The lines are those `session show` reads, session by session.
    let shown = |session: &str| -> Vec<(u64, String)> {
        rec["statements"]
            .as_array()
            .expect("statements")
            .iter()
            .filter(|s| s["session"] == session)
            .map(|s| {
                (
                    s["seq"].as_u64().expect("seq"),
                    s["statement"].as_str().expect("statement").to_owned(),
                )
            })
            .collect()
    };
    let lines_of = |bundle: &serde_json::Value, session: &str| -> Vec<(u64, String)> {
        let s = bundle["recording"]["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .find(|s| s["session"] == session)
            .unwrap_or_else(|| panic!("{session} not listed: {bundle}"));
        s["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| {
                let l: serde_json::Value =
                    serde_json::from_str(l.as_str().expect("a line")).expect("JSON");
                assert_eq!(l[0], session, "{l}");
                (
                    l[1].as_u64().expect("seq"),
                    l[5].as_str().expect("statement").to_owned(),
                )
            })
            .collect()
    };
    for s in &sessions {
        assert_eq!(lines_of(&bundle, s), shown(s), "{s}");
    }

    // A budget of 4: the first session (3) fits, the second (5) does not, the third (1) fits
    // in what is left.
    let (small, page, said) = pack("small.html", &["--max-statements", "4"]);
    assert!(
        said.contains("2 bound to the audit chain, 0 open (not bound), 1 not included")
            && said.contains("raise it with --max-statements"),
        "{said}"
    );
    let report = stdout_json(&verify(&small).success());
    assert_eq!(
        (
            &report["sessions_bound"],
            &report["sessions_not_included"],
            &report["statements"]
        ),
        (&json!(2), &json!(1), &json!(4)),
        "{report}"
    );
    let bundle = evidence_bundle(&page);
    assert_eq!(bundle["recording"]["budget"], 4);
    let listed = bundle["recording"]["sessions"]
        .as_array()
        .expect("sessions");
    let included: Vec<(&str, bool, u64)> = listed
        .iter()
        .map(|s| {
            (
                s["session"].as_str().expect("session"),
                s["included"].as_bool().expect("included"),
                s["recorded"].as_u64().expect("recorded"),
            )
        })
        .collect();
    assert_eq!(
        included,
        [
            (sessions[0].as_str(), true, 3),
            (sessions[1].as_str(), false, 5),
            (sessions[2].as_str(), true, 1)
        ]
    );
    assert_eq!(lines_of(&bundle, &sessions[0]), shown(&sessions[0]));
    assert_eq!(lines_of(&bundle, &sessions[1]), []);
    assert_eq!(lines_of(&bundle, &sessions[2]), shown(&sessions[2]));
    assert!(
        !page.contains("SELECT 23"),
        "the second session's statements"
    );
    assert!(
        page.contains(&format!(
            "not included (over the pack's budget of 4 statements; <code>breakglass session show {id} --session {}</code> prints it)",
            sessions[1]
        )),
        "{page}"
    );
    // A budget the server does not allow is refused, naming the option.
    let over = server
        .cli()
        .args(["evidence", &id, "--max-statements", "500001"])
        .assert()
        .failure();
    assert!(
        stderr(&over).contains("max_statements"),
        "{}",
        stderr(&over)
    );

    // A statement of the first session edited in the store: the pack made afterwards does not
    // verify, and names that session.
    drop(server);
    let db = store_db(&data).await;
    let edited = sqlx::query(
        "UPDATE session_chunks SET body = replace(body, '\"SELECT ''to be edited''\"', '\"SELECT ''harmless''\"') WHERE body LIKE '%to be edited%'",
    )
    .execute(&db)
    .await
    .expect("tamper");
    assert_eq!(edited.rows_affected(), 1);
    db.close().await;
    let server = Server::start_with(&data, &args);
    let path = t.dir.path().join("edited.html");
    // The pack is written, and checked at once: exit 8, the session named.
    let made = server
        .cli()
        .args(["evidence", &id, "--out"])
        .arg(&path)
        .assert()
        .code(8);
    assert!(path.exists(), "the pack is written all the same");
    assert!(
        stderr(&made).contains("was written but does not verify")
            && stderr(&made).contains(&format!("gateway session {}:", sessions[0])),
        "{}",
        stderr(&made)
    );
    let failed = common::breakglass()
        .args(["evidence", "verify"])
        .arg(&path)
        .args(["--pubkey", &pubkey])
        .assert()
        .code(8);
    let why = stderr(&failed);
    assert!(
        why.contains(&format!("gateway session {}:", sessions[0]))
            && why.contains("edited in the store"),
        "{why}"
    );
    // The pack made before the edit still verifies.
    verify(&whole).success();
}

/// An address whose gateway logins keep failing is refused before its token is read — not
/// audited, counted — until its allowance refills; another outcome than a wrong token is not
/// needed to see it (an unknown break is refused like a wrong token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_gateway_logins_are_limited_per_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--gateway", "127.0.0.1:0", "--gateway-failed-logins", "3"],
    );
    let url = format!(
        "postgresql://brk_0000000000000000:not-a-token@{}/db?sslmode=disable",
        server.gateway_addr()
    );
    for attempt in 1..=3 {
        let e = sqlx::PgConnection::connect(&url)
            .await
            .expect_err("no such break")
            .to_string();
        assert!(
            e.contains("no break `brk_0000000000000000`"),
            "attempt {attempt}: {e}"
        );
    }
    // The third failure used the allowance up: the next attempts are refused unread.
    for attempt in 4..=5 {
        let e = sqlx::PgConnection::connect(&url)
            .await
            .expect_err("throttled")
            .to_string();
        assert!(
            e.contains("too many failed logins from this address; retry in"),
            "attempt {attempt}: {e}"
        );
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("text");
    for line in [
        "breakglass_gateway_clients_refused_total 3",
        "breakglass_gateway_logins_throttled_total 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    }
}
