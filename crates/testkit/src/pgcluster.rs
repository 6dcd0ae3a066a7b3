//! A private PostgreSQL cluster with password authentication, started by the tests.
//!
//! The machine's PostgreSQL trusts every local connection, so it cannot show that a password
//! is refused or that `VALID UNTIL` ends a login. [`cluster`] starts, once per test process, a
//! cluster of its own: `initdb` into a fresh directory under `$TMPDIR/breakglass-pgcluster/`
//! with a random superuser password, `host all all 127.0.0.1/32 scram-sha-256`, listening on
//! 127.0.0.1 at a free port, its unix socket in its own directory. As root the server runs as
//! the `postgres` user (`runuser`), because PostgreSQL refuses to run as root.
//!
//! **TLS.** The cluster also serves TLS (`ssl = on`), so a test can show that `sslmode=require`
//! really encrypts. At creation the `openssl` CLI makes a throwaway CA (P-256, valid 30 days)
//! and a server certificate it signs for `IP:127.0.0.1` only (so `localhost` is a name it does
//! not match, for `verify-full` to refuse). The CA's key is deleted at once, the server's key
//! is owned by the server's user with mode 0600, and [`PgCluster::ca_cert`] names the CA
//! certificate for `sslrootcert`. The `host` lines of `pg_hba.conf` match TLS and plain TCP
//! alike: clients that do not ask for TLS (`sslmode=disable`) keep connecting in plain text,
//! under the same password rule; only members of the group [`TLS_ONLY`] are refused without
//! TLS. When `openssl` is not installed the cluster runs without TLS and
//! [`PgCluster::ca_cert`] is `None` (the TLS tests then skip).
//!
//! **Stopping.** Static destructors do not run at process exit, and a test process can die
//! from a panic, a signal or `SIGKILL`. So the cluster is stopped by a *watchdog*: a small
//! `sh` in its own process group, started before `initdb`, that blocks reading a pipe whose
//! only write end this process holds (close-on-exec, so no other child inherits it). However
//! this process ends, the kernel closes that end, the watchdog reads end-of-file, runs
//! `pg_ctl stop -m immediate` and removes the directory. Its own process group keeps a
//! terminal's Ctrl-C (sent to the test's group) from killing it before it cleans up.
//!
//! **Leftovers.** Each run uses a new directory and a new port, so a leftover cluster never
//! collides with the next run. Directories are named `run-<pid>-<random>`; at start, any
//! directory whose process is gone (no `/proc/<pid>`) is stopped and removed, in case a
//! watchdog itself was killed.
//!
//! When no PostgreSQL server binaries are found (or, as root, no `postgres` user exists),
//! [`cluster`] records a skip with [`crate::skip`] and returns `None`.
//! `BREAKGLASS_PG_BIN` names the directory of `initdb`/`pg_ctl` explicitly.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use sqlx::{ConnectOptions, Connection};

/// The superuser's name in the private cluster.
pub const SUPERUSER: &str = "postgres";

/// A group role name: when the cluster serves TLS, `pg_hba.conf` refuses every plain-TCP login
/// of its members (direct or indirect), so a test can make the *server* prove that a client
/// used TLS. The cluster does not create the role; a test that wants it does.
pub const TLS_ONLY: &str = "tls_only";

/// The private cluster of this test process.
pub struct PgCluster {
    /// Address the server listens on (`127.0.0.1`).
    pub host: String,
    /// Its TCP port.
    pub port: u16,
    password: String,
    dir: PathBuf,
    /// The CA certificate that signed the server's; `None` when the cluster has no TLS.
    ca_cert: Option<PathBuf>,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dir", &self.dir)
            .field("ca_cert", &self.ca_cert)
            .finish_non_exhaustive()
    }
}

/// The cluster of this process, started on first use; `None` (after recording a skip for
/// `test`) when PostgreSQL is not installed. Blocks while the cluster starts (a few seconds).
///
/// # Panics
///
/// When the binaries exist but the cluster cannot be started (the reason and the server log
/// are in the message): that is a broken machine, not a missing service.
pub fn cluster(test: &str) -> Option<&'static PgCluster> {
    static CLUSTER: OnceLock<Result<PgCluster, Missing>> = OnceLock::new();
    match CLUSTER.get_or_init(start) {
        Ok(c) => Some(c),
        Err(Missing::Skip(reason)) => {
            crate::skip(test, reason);
            None
        }
        Err(Missing::Broken(reason)) => panic!("{test}: private PostgreSQL cluster: {reason}"),
    }
}

impl PgCluster {
    /// The superuser's password (test-only; the cluster listens on 127.0.0.1 only).
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres`.
    pub fn superuser_url(&self) -> String {
        self.url(SUPERUSER, &self.password, "postgres")
    }

    /// A URL for `user` with `password` on database `db` (URL-safe names and passwords only).
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{user}:{password}@{}:{}/{db}",
            self.host, self.port
        )
    }

    /// The directory holding the cluster (data, log, socket, certificates).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The PEM file of the CA that signed the server's certificate (for `sslrootcert`), or
    /// `None` when the cluster serves no TLS because `openssl` is not installed.
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// The server's log so far. The cluster logs every statement (`log_statement = 'all'`),
    /// so a test can show that a secret never reached one.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A superuser connection to `db`, with statement logging off.
    ///
    /// # Panics
    ///
    /// When the cluster does not answer.
    pub async fn connect(&self, db: &str) -> sqlx::PgConnection {
        let options = sqlx::postgres::PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .username(SUPERUSER)
            .password(&self.password)
            .database(db)
            .disable_statement_logging();
        match sqlx::PgConnection::connect_with(&options).await {
            Ok(c) => c,
            Err(e) => panic!("private cluster at port {} does not answer: {e}", self.port),
        }
    }

    /// Creates a new, empty database and returns its name (`bg_test_<n>`). Databases live as
    /// long as the cluster, so nobody needs to drop them.
    ///
    /// # Panics
    ///
    /// When the cluster refuses.
    pub async fn fresh_db(&self) -> String {
        let name = format!("bg_test_{:x}", crate::rand_suffix());
        let mut conn = self.connect("postgres").await;
        let sql = format!("CREATE DATABASE \"{name}\"");
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
        {
            panic!("cannot create database {name}: {e}");
        }
        let _ = conn.close().await;
        name
    }
}

/// Why there is no cluster.
enum Missing {
    /// The service is not installed here: skip.
    Skip(String),
    /// It is installed but would not start: fail.
    Broken(String),
}

/// The write end of the watchdog's pipe, held until the process ends.
static WATCHDOG: Mutex<Option<ChildStdin>> = Mutex::new(None);

fn start() -> Result<PgCluster, Missing> {
    let bin = find_bin().ok_or_else(|| {
        Missing::Skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin \
             or $BREAKGLASS_PG_BIN"
                .to_owned(),
        )
    })?;
    let as_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    let owner = if as_root {
        Some(postgres_ids().ok_or_else(|| {
            Missing::Skip(
                "running as root and there is no `postgres` user to run the server".into(),
            )
        })?)
    } else {
        None
    };
    let parent = std::env::temp_dir().join("breakglass-pgcluster");
    std::fs::create_dir_all(&parent).map_err(|e| broken(format!("create {parent:?}: {e}")))?;
    sweep_leftovers(&parent, &bin, as_root);

    let dir = parent.join(format!(
        "run-{}-{:x}",
        std::process::id(),
        crate::rand_suffix()
    ));
    std::fs::create_dir(&dir).map_err(|e| broken(format!("create {dir:?}: {e}")))?;
    set_mode(&dir, 0o700)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| broken(format!("chown {dir:?}: {e}")))?;
    }
    let data = dir.join("data");
    start_watchdog(&dir, &bin, &data, as_root)?;

    let password = format!("{:x}{:x}", crate::rand_suffix(), crate::rand_suffix());
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, format!("{password}\n"))
        .map_err(|e| broken(format!("write {pwfile:?}: {e}")))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))
            .map_err(|e| broken(format!("chown {pwfile:?}: {e}")))?;
    }
    set_mode(&pwfile, 0o600)?;

    let mut initdb = server_command(&bin.join("initdb"), as_root);
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"]);
    run(initdb, "initdb", None)?;
    let _ = std::fs::remove_file(&pwfile);

    let tls = make_certificates(&dir, owner)?;
    let tls_settings = match &tls {
        Some(files) => format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            files.server_cert.display(),
            files.server_key.display()
        ),
        None => "ssl = off\n".to_owned(),
    };

    // The socket directory is private (0700), so trusting the socket lets only this user in;
    // every TCP login must present a password, and members of TLS_ONLY must also use TLS.
    let mut hba = String::from("local all all trust\n");
    if tls.is_some() {
        hba.push_str(&format!("hostnossl all +{TLS_ONLY} 127.0.0.1/32 reject\n"));
    }
    hba.push_str("host all all 127.0.0.1/32 scram-sha-256\n");
    std::fs::write(data.join("pg_hba.conf"), hba)
        .map_err(|e| broken(format!("write pg_hba.conf: {e}")))?;

    let log = dir.join("server.log");
    let mut last = String::new();
    // A free port can be taken between probing and binding: try a few.
    for _ in 0..5 {
        let port = free_port().map_err(|e| broken(format!("find a free port: {e}")))?;
        let settings = format!(
            "\n# breakglass test cluster\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\npassword_encryption = 'scram-sha-256'\n\
             max_connections = 100\nshared_buffers = '16MB'\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\n\
             log_statement = 'all'\n{tls_settings}",
            dir.display()
        );
        let conf = data.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| broken(format!("open {conf:?}: {e}")))?;
        file.write_all(settings.as_bytes())
            .map_err(|e| broken(format!("write {conf:?}: {e}")))?;
        drop(file);

        let mut pg_ctl = server_command(&bin.join("pg_ctl"), as_root);
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "30", "start"]);
        match run(pg_ctl, "pg_ctl start", Some(&log)) {
            Ok(()) => {
                return Ok(PgCluster {
                    host: "127.0.0.1".into(),
                    port,
                    password,
                    dir,
                    ca_cert: tls.map(|files| files.ca_cert),
                });
            }
            Err(Missing::Broken(reason)) => last = reason,
            Err(skip) => return Err(skip),
        }
    }
    Err(broken(last))
}

/// The certificate files of a cluster that serves TLS.
struct TlsFiles {
    ca_cert: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

/// `openssl` configuration for the throwaway CA and the server certificate (extensions only:
/// names come from `-subj`).
const OPENSSL_CONF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// Makes a CA and a server certificate signed by it in `dir`; `None` when `openssl` is not
/// installed. The CA's key is removed once it has signed; the server's key is given to the
/// server's user (`owner`) with mode 0600, as PostgreSQL demands.
fn make_certificates(dir: &Path, owner: Option<(u32, u32)>) -> Result<Option<TlsFiles>, Missing> {
    match Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(broken(format!("openssl: cannot run: {e}"))),
        Ok(_) => {}
    }
    let conf = dir.join("openssl.cnf");
    std::fs::write(&conf, OPENSSL_CONF).map_err(|e| broken(format!("write {conf:?}: {e}")))?;
    let files = TlsFiles {
        ca_cert: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    };
    let ca_key = dir.join("ca.key");
    let csr = dir.join("server.csr");
    let p256 = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];

    let mut ca = Command::new("openssl");
    ca.args(["req", "-x509", "-config"])
        .arg(&conf)
        .args([
            "-extensions",
            "ca",
            "-days",
            "30",
            "-subj",
            "/CN=breakglass test CA",
        ])
        .args(p256)
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&files.ca_cert)
        .stdin(Stdio::null());
    run(ca, "openssl req (CA)", None)?;

    let mut request = Command::new("openssl");
    request
        .args(["req", "-new", "-config"])
        .arg(&conf)
        .args(["-subj", "/CN=127.0.0.1"])
        .args(p256)
        .arg("-keyout")
        .arg(&files.server_key)
        .arg("-out")
        .arg(&csr)
        .stdin(Stdio::null());
    run(request, "openssl req (server)", None)?;

    let mut sign = Command::new("openssl");
    sign.args(["x509", "-req", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&files.ca_cert)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-set_serial")
        .arg(format!("0x{:x}", crate::rand_suffix() | 1))
        .args(["-days", "30", "-extfile"])
        .arg(&conf)
        .args(["-extensions", "server", "-out"])
        .arg(&files.server_cert)
        .stdin(Stdio::null());
    run(sign, "openssl x509 (sign the server certificate)", None)?;

    for leftover in [&ca_key, &csr, &conf] {
        let _ = std::fs::remove_file(leftover);
    }
    if let Some((uid, gid)) = owner {
        for file in [&files.server_cert, &files.server_key] {
            std::os::unix::fs::chown(file, Some(uid), Some(gid))
                .map_err(|e| broken(format!("chown {file:?}: {e}")))?;
        }
    }
    set_mode(&files.server_key, 0o600)?;
    set_mode(&files.server_cert, 0o644)?;
    set_mode(&files.ca_cert, 0o644)?;
    Ok(Some(files))
}

fn broken(reason: String) -> Missing {
    Missing::Broken(reason)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Missing> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| broken(format!("chmod {path:?}: {e}")))
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and `pg_ctl`, or
/// `$BREAKGLASS_PG_BIN`.
fn find_bin() -> Option<PathBuf> {
    let usable = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(dir) = std::env::var("BREAKGLASS_PG_BIN") {
        let dir = PathBuf::from(dir);
        return usable(&dir).then_some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            usable(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Uid and gid of the `postgres` user, from `id`.
fn postgres_ids() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// A command for a server binary: as the `postgres` user when running as root. Its output
/// never goes to our stdout or stderr, whose pipes a daemon must not hold open (the test
/// harness would wait for them forever); its own process group keeps Ctrl-C away.
fn server_command(program: &Path, as_root: bool) -> Command {
    let mut cmd = if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.stdin(Stdio::null()).process_group(0);
    cmd
}

/// Runs a setup command to completion; on failure, its output and the server log's tail.
fn run(mut cmd: Command, what: &str, log: Option<&Path>) -> Result<(), Missing> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| broken(format!("{what}: cannot run: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let mut reason = format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(text) = log.and_then(|l| std::fs::read_to_string(l).ok()) {
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        reason.push_str("\nserver log:\n");
        for line in tail.into_iter().rev() {
            reason.push_str(line);
            reason.push('\n');
        }
    }
    Err(broken(reason))
}

/// Starts the watchdog that stops the cluster and removes `dir` once this process is gone.
fn start_watchdog(dir: &Path, bin: &Path, data: &Path, as_root: bool) -> Result<(), Missing> {
    // `$0` is the directory to remove; `"$@"` the stop command. `cat` returns at end-of-file,
    // which happens exactly when every write end of the pipe is closed: when we exit.
    let script = "cat >/dev/null 2>&1; \"$@\" >/dev/null 2>&1; rm -rf -- \"$0\"";
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).arg(dir);
    if as_root {
        cmd.args(["runuser", "-u", "postgres", "--"]);
    }
    cmd.arg(bin.join("pg_ctl"))
        .arg("-D")
        .arg(data)
        .args(["-m", "immediate", "-w", "stop"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| broken(format!("start the watchdog: {e}")))?;
    let stdin = child.stdin.take();
    // The child is never waited for: it outlives us by design (init reaps it).
    drop(child);
    if let Ok(mut slot) = WATCHDOG.lock() {
        *slot = stdin;
    }
    Ok(())
}

/// Stops and removes clusters of test processes that no longer exist.
fn sweep_leftovers(parent: &Path, bin: &Path, as_root: bool) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("run-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let dir = entry.path();
        let data = dir.join("data");
        if data.join("postmaster.pid").exists() {
            let mut stop = server_command(&bin.join("pg_ctl"), as_root);
            stop.arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"]);
            let _ = run(stop, "pg_ctl stop (leftover)", None);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
