//! Shared helpers for the CLI tests: running the real `breakglass` binary, a server child
//! process that is killed on drop, age keys made with `custodian keygen`, and procedure files.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

/// Environment variables the CLI reads; removed so the tests do not depend on the caller's shell.
const CLI_ENV: &[&str] = &[
    "BREAKGLASS_SERVER",
    "BREAKGLASS_TOKEN",
    "BREAKGLASS_IDENTITY",
    "BREAKGLASS_ACTOR",
    "BREAKGLASS_DATA_DIR",
    "BREAKGLASS_LISTEN",
    "BREAKGLASS_DATABASE_URL",
    "BREAKGLASS_LOG",
];

/// How long any single CLI invocation may take before the test fails.
const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of the `breakglass` binary under test.
pub(crate) fn bin_path() -> &'static Path {
    assert_cmd::cargo::cargo_bin!("breakglass")
}

/// A `breakglass` command with a clean environment (no `BREAKGLASS_*` variables) and a timeout.
pub(crate) fn breakglass() -> Command {
    let mut cmd = Command::new(bin_path());
    for var in CLI_ENV {
        cmd.env_remove(var);
    }
    cmd.timeout(CMD_TIMEOUT);
    cmd
}

/// Stdout of an assertion as UTF-8.
pub(crate) fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stdout.clone()).expect("stdout is UTF-8")
}

/// Stderr of an assertion as UTF-8.
pub(crate) fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stderr.clone()).expect("stderr is UTF-8")
}

/// Stdout of an assertion parsed as one JSON document.
pub(crate) fn stdout_json(a: &assert_cmd::assert::Assert) -> Value {
    let out = stdout(a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{out}"))
}

/// Makes an age identity with `breakglass custodian keygen --out DIR/NAME.key`; returns the
/// identity file and the public key printed on stdout.
pub(crate) fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}.key"));
    let a = breakglass()
        .args(["custodian", "keygen", "--out"])
        .arg(&path)
        .assert()
        .success();
    let public = stdout(&a).trim_end().to_owned();
    assert!(public.starts_with("age1"), "public key: {public:?}");
    (path, public)
}

/// A procedure file with the given custodians (name, key), quorum and max_grant.
///
/// With three custodians the layout is fixed: the third custodian's key is at 11:10, the
/// quorum at 12:9 and max_grant at 13:12, so tests can name exact positions.
pub(crate) fn procedure_yaml(
    id: &str,
    custodians: &[(&str, &str)],
    quorum: u8,
    max_grant: &str,
) -> String {
    let mut text = format!("id: {id}\ndescription: test\ntarget:\n  kind: secret\ncustodians:\n");
    for (name, key) in custodians {
        text.push_str(&format!("  - name: {name}\n    key: {key}\n"));
    }
    text.push_str(&format!("quorum: {quorum}\nmax_grant: {max_grant}\n"));
    text
}

/// A running `breakglass serve` child process; killed (and reaped) on drop, so a failing test
/// never leaves a server behind.
pub(crate) struct Server {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub(crate) url: String,
    /// The data dir the server was started with.
    pub(crate) data_dir: PathBuf,
    /// Every line the server wrote to stderr (its log), as the reader thread got them.
    log: Arc<Mutex<Captured>>,
}

/// A server's stderr as read so far, and how reading it ended (`None` while it runs).
#[derive(Default)]
struct Captured {
    lines: Vec<String>,
    ended: Option<Result<(), String>>,
}

impl Server {
    /// Starts `breakglass serve --listen 127.0.0.1:0 --data-dir DATA_DIR` and waits for the
    /// `breakglass serving on http://ADDR (sqlite store)` line on stderr (or `postgres store`).
    pub(crate) fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// `start` with extra `serve` arguments.
    pub(crate) fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(data_dir, extra, &[])
    }

    /// `start_with` with environment variables for the server (e.g. `BREAKGLASS_LOG=trace`).
    pub(crate) fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = std::process::Command::new(bin_path());
        for var in CLI_ENV {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning breakglass serve");
        let stderr = child.stderr.take().expect("piped stderr");
        // A thread reads stderr for the whole life of the server (so the pipe never fills) and
        // hands the lines over until the address is found.
        // It also keeps every line, for tests that read the whole log (`log_lines`).
        let (tx, rx) = mpsc::channel::<String>();
        let log = Arc::new(Mutex::new(Captured::default()));
        let captured = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut ended = Ok(());
            for line in BufReader::new(stderr).lines() {
                let line = match line {
                    Ok(line) => line,
                    Err(e) => {
                        ended = Err(e.to_string());
                        break;
                    }
                };
                captured
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .lines
                    .push(line.clone());
                let _ = tx.send(line);
            }
            captured.lock().unwrap_or_else(|p| p.into_inner()).ended = Some(ended);
        });
        // Guard first, so a failure below still kills the child.
        let mut server = Server {
            child,
            url: String::new(),
            data_dir: data_dir.to_path_buf(),
            log,
        };
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("breakglass serving on ") {
                        let url = rest
                            .strip_suffix(" (sqlite store)")
                            .or_else(|| rest.strip_suffix(" (postgres store)"))
                            .unwrap_or_else(|| panic!("unexpected serve line: {line}"));
                        assert!(
                            url.starts_with("http://127.0.0.1:")
                                || url.starts_with("https://127.0.0.1:"),
                            "{line}"
                        );
                        server.url = url.to_owned();
                        return server;
                    }
                    seen.push(line);
                }
                Err(e) => panic!(
                    "breakglass serve did not report its address ({e}); stderr so far:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// A CLI command pointed at this server and its data dir (so it uses the admin token).
    pub(crate) fn cli(&self) -> Command {
        let mut cmd = breakglass();
        cmd.arg("--server")
            .arg(&self.url)
            .arg("--data-dir")
            .arg(&self.data_dir);
        cmd
    }

    /// [`Server::cli`] as a plain process command, for a CLI that runs alongside the test
    /// (`session show --follow`); the caller bounds how long it may run.
    #[allow(dead_code)] // not every test binary that shares this module runs one
    /// Enrols requester `name` with the age public key `public`, written to `keys/NAME.pub`
    /// first (as admin).
    pub(crate) fn add_requester(&self, keys: &Path, name: &str, public: &str) {
        let file = keys.join(format!("{name}.pub"));
        std::fs::write(&file, format!("{public}\n")).expect("writing the public key");
        self.cli()
            .args(["actor", "add", name, "--role", "requester", "--key-file"])
            .arg(&file)
            .assert()
            .success();
    }

    #[allow(dead_code)] // not every test binary that shares this module runs one
    /// Applies the procedure file and seals procedure `id` with `secret` (as admin).
    pub(crate) fn apply_sealed(&self, file: &Path, id: &str, secret: &str) {
        self.cli()
            .args(["procedure", "apply"])
            .arg(file)
            .assert()
            .success();
        self.cli()
            .args(["seal", id])
            .write_stdin(format!("{secret}\n"))
            .assert()
            .success();
    }

    pub(crate) fn cli_process(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(bin_path());
        for var in CLI_ENV {
            cmd.env_remove(var);
        }
        cmd.arg("--server")
            .arg(&self.url)
            .arg("--data-dir")
            .arg(&self.data_dir);
        cmd
    }

    /// The lines the server wrote to stderr so far (its log; all of it with `BREAKGLASS_LOG`).
    pub(crate) fn log_lines(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lines
            .clone()
    }

    /// Kills the server, waits until its stderr has been read to the end, and returns every
    /// line of it. Panics when the log could not be read whole (e.g. a line that is not UTF-8),
    /// so a scan of the log never passes on a part of it.
    pub(crate) fn stop_and_take_log(&mut self) -> Vec<String> {
        self.stop();
        let start = Instant::now();
        loop {
            {
                let captured = self.log.lock().unwrap_or_else(|p| p.into_inner());
                match &captured.ended {
                    Some(Ok(())) => return captured.lines.clone(),
                    Some(Err(e)) => panic!(
                        "the server's stderr was not read to the end ({e}) after {} lines",
                        captured.lines.len()
                    ),
                    None => {}
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the server's stderr did not end after it was killed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address of the server's PostgreSQL gateway (`serve --gateway`), from its log.
    pub(crate) fn gateway_addr(&self) -> String {
        self.log_lines()
            .iter()
            .find_map(|l| l.strip_prefix("breakglass gateway (PostgreSQL) on "))
            .and_then(|rest| rest.split(' ').next())
            .map(str::to_owned)
            .expect("the server reports the gateway's address")
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server with SIGKILL and waits for it: no graceful shutdown.
    pub(crate) fn kill(mut self) {
        self.stop();
    }

    /// `kill`, keeping the (dead) value so its owner can replace it.
    pub(crate) fn kill_now(&mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh data dir with a server, three custodians (alice, bob, carol; quorum 2) whose keys
/// were made with `custodian keygen`, a requester dave, and a sealed procedure.
pub(crate) struct World {
    /// The server (declared first, so it is killed before the temp dir is removed).
    pub(crate) server: Server,
    /// Where the key files are.
    pub(crate) keys: PathBuf,
    /// The procedure id.
    pub(crate) procedure: String,
    /// The sealed secret.
    pub(crate) secret: String,
    /// Extra `serve` arguments a restart must pass again (a targets file…).
    pub(crate) serve_args: Vec<String>,
    /// Holds the data dir and the keys; removed on drop.
    pub(crate) _dir: tempfile::TempDir,
}

impl World {
    /// The extra `serve` arguments, as `Server::start_with` takes them.
    pub(crate) fn server_args(&self) -> Vec<&str> {
        self.serve_args.iter().map(String::as_str).collect()
    }

    /// The identity file of `name` (alice, bob, carol or dave).
    pub(crate) fn key(&self, name: &str) -> PathBuf {
        self.keys.join(format!("{name}.key"))
    }

    /// Kills the server with SIGKILL (no graceful shutdown), waits `down`, and starts a new
    /// server on the same data dir.
    pub(crate) fn restart_after(&mut self, down: Duration) {
        self.server.stop();
        std::thread::sleep(down);
        self.server = Server::start_with(&self.server.data_dir.clone(), &self.server_args());
    }

    /// A CLI command signed in with `name`'s identity.
    pub(crate) fn as_actor(&self, name: &str) -> Command {
        let mut cmd = self.server.cli();
        cmd.arg("--identity").arg(self.key(name));
        cmd
    }
}

/// Writes the procedure file for three custodians to `keys/PROCEDURE.yaml`.
pub(crate) fn write_procedure(
    keys: &Path,
    id: &str,
    custodians: &[(&str, String)],
    max_grant: &str,
) -> PathBuf {
    let list: Vec<(&str, &str)> = custodians.iter().map(|(n, k)| (*n, k.as_str())).collect();
    let path = keys.join(format!("{id}.yaml"));
    std::fs::write(&path, procedure_yaml(id, &list, 2, max_grant))
        .expect("writing the procedure file");
    path
}

/// Starts a server on a fresh data dir and sets up a procedure: apply, enrol dave, seal.
pub(crate) fn world(procedure: &str, max_grant: &str) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).expect("keys dir");
    let server = Server::start(&data);
    let custodians: Vec<(&str, String)> = ["alice", "bob", "carol"]
        .into_iter()
        .map(|n| (n, keygen(&keys, n).1))
        .collect();
    let file = write_procedure(&keys, procedure, &custodians, max_grant);
    server
        .cli()
        .args(["procedure", "apply"])
        .arg(&file)
        .assert()
        .success()
        .stdout(format!("{procedure}: created (version 1)\n"));
    let (_, dave) = keygen(&keys, "dave");
    std::fs::write(keys.join("dave.pub"), format!("{dave}\n")).expect("writing dave.pub");
    server
        .cli()
        .args(["actor", "add", "dave", "--role", "requester", "--key-file"])
        .arg(keys.join("dave.pub"))
        .assert()
        .success()
        .stdout("enrolled dave\n");
    let secret = format!("s3cr3t-for-{procedure}");
    let a = server
        .cli()
        .args(["seal", procedure])
        .write_stdin(format!("{secret}\n"))
        .assert()
        .success();
    let out = stdout(&a);
    assert!(out.starts_with(&format!("sealed {procedure} as ")), "{out}");
    assert!(
        out.ends_with(": 2 of 3 custodians (alice, bob, carol)\n"),
        "{out}"
    );
    World {
        server,
        keys,
        procedure: procedure.to_owned(),
        secret,
        serve_args: Vec::new(),
        _dir: dir,
    }
}

/// Opens a break as dave and returns its id (from `--output json`).
pub(crate) fn open_break(w: &World, duration: &str) -> String {
    let a = w
        .as_actor("dave")
        .args([
            "--output",
            "json",
            "break",
            "open",
            &w.procedure,
            "--reason",
            "r",
            "--ticket",
            "T-1",
            "--duration",
            duration,
        ])
        .assert()
        .success();
    let b = stdout_json(&a);
    assert_eq!(b["state"], "requested", "{b}");
    assert_eq!(b["requester"], "dave", "{b}");
    b["id"].as_str().expect("break id").to_owned()
}

/// `break show ID --output json` with the admin token.
pub(crate) fn show_break(server: &Server, id: &str) -> Value {
    let a = server
        .cli()
        .args(["--output", "json", "break", "show", id])
        .assert()
        .success();
    stdout_json(&a)
}

/// A webhook receiver on loopback answering 200 to everything.
pub(crate) async fn webhook_receiver() -> std::net::SocketAddr {
    webhook_recorder().await.0
}

/// A webhook receiver on loopback answering 200 to everything, and every request it got
/// (head and body, as text).
pub(crate) async fn webhook_recorder() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = requests.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                kept.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(String::from_utf8_lossy(&got).into_owned());
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, requests)
}

/// Runs SQL on a database of the private test cluster.
pub(crate) async fn sql(pg: &breakglass_testkit::pgcluster::PgCluster, db: &str, text: String) {
    let mut c = pg.connect(db).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(text))
        .execute(&mut c)
        .await
        .expect("setup SQL");
    let _ = sqlx::Connection::close(c).await;
}

/// A PostgreSQL target on the private test cluster, for `serve --targets`: a fresh database;
/// an admin role (`PREFIXadm_…`, CREATEROLE, admin of the grant role), a drill role
/// (`PREFIXdrl_…`, the same rights, for `seal --drill`), the grant role (`PREFIXapp_…`) and an
/// operator role (`PREFIXop_…`, the targets file's connection `pg`); and a temp dir holding
/// `keys/` and `targets.yaml`.
pub(crate) struct PgTarget {
    /// The database.
    pub(crate) db: String,
    /// The database's random suffix, shared by the role names.
    pub(crate) sfx: String,
    /// Admin role, its password.
    pub(crate) adm: String,
    pub(crate) admin_pw: String,
    /// Drill role.
    pub(crate) drl: String,
    /// Grant role.
    pub(crate) app: String,
    /// Operator role.
    pub(crate) op: String,
    /// URL of the drill role (what `seal --drill` takes).
    pub(crate) drill_url: String,
    /// Where `keys/` and `targets.yaml` are.
    pub(crate) dir: tempfile::TempDir,
    /// `dir/keys`.
    pub(crate) keys: PathBuf,
}

/// Sets up a [`PgTarget`] whose role names start with `prefix`.
pub(crate) async fn pg_target(
    pg: &breakglass_testkit::pgcluster::PgCluster,
    prefix: &str,
) -> PgTarget {
    let db = pg.fresh_db().await;
    let sfx = db["bg_test_".len()..].to_owned();
    let role = |r: &str| format!("{prefix}{r}_{sfx}");
    let (adm, drl, app, op) = (role("adm"), role("drl"), role("app"), role("op"));
    let admin_pw = format!("adm-{sfx}");
    sql(
        pg,
        &db,
        format!(
            "CREATE ROLE {adm} LOGIN PASSWORD '{admin_pw}' CREATEROLE;
             CREATE ROLE {drl} LOGIN PASSWORD 'drl-{sfx}' CREATEROLE;
             CREATE ROLE {app} NOLOGIN;
             GRANT {app} TO {adm} WITH ADMIN OPTION;
             GRANT {app} TO {drl} WITH ADMIN OPTION;
             CREATE ROLE {op} LOGIN PASSWORD 'op-{sfx}' CREATEROLE;
             GRANT pg_signal_backend TO {op};"
        ),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).expect("keys dir");
    std::fs::write(
        dir.path().join("targets.yaml"),
        format!(
            "connections:\n  - name: pg\n    kind: postgres\n    operator_url: {}\n",
            pg.url(&op, &format!("op-{sfx}"), &db)
        ),
    )
    .expect("targets file");
    let drill_url = pg.url(&drl, &format!("drl-{sfx}"), &db);
    PgTarget {
        db,
        sfx,
        adm,
        admin_pw,
        drl,
        app,
        op,
        drill_url,
        dir,
        keys,
    }
}

impl PgTarget {
    /// The targets file.
    pub(crate) fn targets_file(&self) -> PathBuf {
        self.dir.path().join("targets.yaml")
    }

    /// Writes `channels.yaml` with one webhook channel `ops` to a receiver on loopback that
    /// answers 200 to everything; returns its path.
    pub(crate) async fn webhook_channel(&self) -> PathBuf {
        let raddr = webhook_receiver().await;
        let path = self.dir.path().join("channels.yaml");
        std::fs::write(
            &path,
            format!(
                "channels:\n  - name: ops\n    kind: webhook\n    url: http://{raddr}/hook\n    secret: s3cret-for-tests\n"
            ),
        )
        .expect("channels file");
        path
    }
}

/// A statement a test leaves running on a gateway session (a `pg_sleep`) while it cuts the
/// session: its outcome, and when it came.
pub(crate) struct Running(tokio::task::JoinHandle<(Result<(), sqlx::Error>, Instant)>);

impl Running {
    /// Runs `sql` on `conn` in a task.
    pub(crate) fn start(mut conn: sqlx::PgConnection, sql: &'static str) -> Running {
        Running(tokio::spawn(async move {
            let r = sqlx::query(sql).execute(&mut conn).await.map(|_| ());
            (r, Instant::now())
        }))
    }

    /// The error the statement ended with, within 10 s, and when it came.
    pub(crate) async fn cut(self) -> (String, Instant) {
        let (r, at) = tokio::time::timeout(Duration::from_secs(10), self.0)
            .await
            .expect("the client is cut within 10 s")
            .expect("join");
        (
            r.expect_err("the cut session's statement fails")
                .to_string(),
            at,
        )
    }
}

/// A session through the gateway at `url` (sqlx).
pub(crate) async fn gateway_session(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .expect("a session through the gateway")
}
