//! Time-to-access per target: from the quorum-completing approval to a verified login by a real
//! client as the role or user the grant created, on PostgreSQL and on MariaDB, against a bare
//! login of a fixed account on the same server with the same client code.
//!
//! Each target gets an engine of its own (`Engine::wired`, the system clock, SQLite in a temp
//! dir, the real adapters of `breakglass_targets::build` over a targets file holding the
//! operator connection) with one procedure of that kind; custodians and requester are those of
//! the machine path (`access.rs`).

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use breakglass_custody::{Secret, decrypt_with};
use breakglass_domain::Break;
use breakglass_engine::{ChainVerdict, Config, Engine, Outputs, SystemClock};
use breakglass_store::SqlStore;
use breakglass_testkit::mariadb::FreshMariadb;
use breakglass_testkit::pgcluster::PgCluster;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::access::{Fixture, bench_admin, custodian};

/// How long each grant asks for; every grant is closed right after the login anyway.
const GRANT: Duration = Duration::from_secs(60);

/// The name of the operator connection in the targets file.
const CONNECTION: &str = "bench-target";

/// How long the MariaDB probe waits for an answer.
const PROBE: Duration = Duration::from_secs(5);

/// What the bench asks of this run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Measured breaks (and baseline logins) per target.
    pub(crate) breaks: usize,
    /// Untimed warm-up breaks (and baseline logins) before them.
    pub(crate) warmup: usize,
}

/// The two kinds of target measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Postgres,
    Mariadb,
}

impl Kind {
    /// The name used in the report.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Postgres => "PostgreSQL",
            Kind::Mariadb => "MariaDB",
        }
    }

    fn procedure(self) -> &'static str {
        match self {
            Kind::Postgres => "bench-pg",
            Kind::Mariadb => "bench-maria",
        }
    }
}

/// Figures of one target's run; every list is in break order, one entry per measured break.
#[derive(Debug, Clone)]
pub(crate) struct TargetFigures {
    /// The server and its relevant settings, as read back from it.
    pub(crate) server: String,
    /// The quorum-completing `approve` → `SELECT 1` answered on the grant's own login.
    pub(crate) access: Vec<Duration>,
    /// Its steps: the quorum-completing `approve` (the grant is created on the target here).
    pub(crate) approve: Vec<Duration>,
    /// `Engine::reveal`.
    pub(crate) reveal: Vec<Duration>,
    /// `decrypt_with` the requester's identity.
    pub(crate) decrypt: Vec<Duration>,
    /// Connect with the access string and `SELECT 1`.
    pub(crate) login: Vec<Duration>,
    /// Baseline: connect as the fixed account and `SELECT 1`.
    pub(crate) baseline: Vec<Duration>,
    /// Breaks run, warm-ups included.
    pub(crate) breaks_run: usize,
    /// `grant.ended` events in the audit log (each grant ended on the target).
    pub(crate) ended: usize,
    /// `credential.rotated` events (the admin credential rotated and re-sealed after a grant).
    pub(crate) rotated: usize,
    /// Roles or users the grants created that still exist on the target after the run.
    pub(crate) leftover: usize,
    /// Audit entries at the end (the chain verified).
    pub(crate) audit_entries: u64,
}

/// A target server set up for the run: the procedure's `target:` block, the targets file, the
/// sealed admin credential and the baseline account.
struct Site {
    kind: Kind,
    server: String,
    target_block: String,
    targets_file: String,
    admin_password: String,
    baseline_url: String,
    /// Where the bench reads which accounts exist (the catalogue), after the run.
    catalog_url: String,
}

/// Measures PostgreSQL on a private cluster with password authentication; `Err` says why it
/// was not measured (no server binaries, or the cluster would not start).
pub(crate) async fn postgres(store: SqlStore, plan: Plan) -> Result<Result<TargetFigures, String>> {
    let cluster =
        tokio::task::spawn_blocking(|| breakglass_testkit::pgcluster::cluster("bench::targets"))
            .await;
    let pg = match cluster {
        Ok(Some(pg)) => pg,
        Ok(None) => {
            return Ok(Err(
                "no private cluster: PostgreSQL server binaries (initdb, pg_ctl) not found in \
                 /usr/lib/postgresql/*/bin or $BREAKGLASS_PG_BIN, or running as root with no \
                 `postgres` user (see the SKIP line on stderr)"
                    .to_owned(),
            ));
        }
        Err(e) => {
            return Ok(Err(format!(
                "the private cluster did not start: {}",
                panic_text(e)
            )));
        }
    };
    let site = postgres_site(pg).await.context("PostgreSQL fixture")?;
    Ok(Ok(run(&site, store, plan).await?))
}

/// Measures MariaDB at the tests' server (`BREAKGLASS_TEST_MARIADB` or 127.0.0.1:3306 as
/// root); `Err` says why it was not measured. The fixture's users and database are removed
/// afterwards.
pub(crate) async fn mariadb(store: SqlStore, plan: Plan) -> Result<Result<TargetFigures, String>> {
    if let Err(reason) = mariadb_reachable().await {
        return Ok(Err(reason));
    }
    let Some(db) = breakglass_testkit::mariadb::fresh_mariadb("bench::targets").await else {
        return Ok(Err(
            "no fresh database on MariaDB (see the SKIP line on stderr)".to_owned(),
        ));
    };
    let result = async {
        let site = mariadb_site(&db).await.context("MariaDB fixture")?;
        run(&site, store, plan).await
    }
    .await;
    let cleanup = mariadb_cleanup(&db).await;
    db.drop_db().await;
    let figures = result?;
    cleanup.context("removing the MariaDB fixture users")?;
    Ok(Ok(figures))
}

/// The text of a panic that ended a blocking task.
fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panicked".to_owned()),
        Err(e) => e.to_string(),
    }
    .replace('\n', " ")
}

/// Roles on the private cluster: the admin whose password is sealed (CREATEROLE, ADMIN OPTION
/// on the grant role), the operator of the targets file (CREATEROLE, `pg_signal_backend`), the
/// grant role, and the baseline account (a login member of the grant role).
async fn postgres_site(pg: &PgCluster) -> Result<Site> {
    let db = pg.fresh_db().await;
    let sfx = &db["bg_test_".len()..];
    let (admin, app, op, base) = (
        format!("bgadm_{sfx}"),
        format!("app_{sfx}"),
        format!("bgop_{sfx}"),
        format!("bgbase_{sfx}"),
    );
    let admin_password = format!("adm-{sfx}-initial");
    let (op_password, base_password) = (format!("op-{sfx}"), format!("base-{sfx}"));
    let mut conn = pg.connect(&db).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {admin} LOGIN PASSWORD '{admin_password}' CREATEROLE;
         CREATE ROLE {app} NOLOGIN;
         GRANT {app} TO {admin} WITH ADMIN OPTION;
         CREATE ROLE {op} LOGIN PASSWORD '{op_password}' CREATEROLE;
         GRANT pg_signal_backend TO {op};
         CREATE ROLE {base} LOGIN PASSWORD '{base_password}' IN ROLE {app};"
    )))
    .execute(&mut conn)
    .await
    .context("creating the fixture roles")?;
    let mut settings = Vec::new();
    for (name, query) in [
        ("server", "SHOW server_version"),
        ("password_encryption", "SHOW password_encryption"),
        ("fsync", "SHOW fsync"),
        ("synchronous_commit", "SHOW synchronous_commit"),
    ] {
        let value: String = sqlx::query_scalar(query)
            .fetch_one(&mut conn)
            .await
            .with_context(|| query.to_owned())?;
        settings.push(format!("{name} {value}"));
    }
    let _ = conn.close().await;
    Ok(Site {
        kind: Kind::Postgres,
        server: format!(
            "private cluster (`breakglass_testkit::pgcluster`) at {}:{}, password logins over TCP \
             (`scram-sha-256` in pg_hba.conf), {}",
            pg.host,
            pg.port,
            settings.join(", ")
        ),
        target_block: format!(
            "target:\n  kind: postgres\n  details:\n    host: {}\n    port: \"{}\"\n    dbname: {db}\n    admin_user: {admin}\n    grant_role: {app}\n    connection: {CONNECTION}\n    sslmode: disable\n",
            pg.host, pg.port
        ),
        targets_file: format!(
            "connections:\n  - name: {CONNECTION}\n    kind: postgres\n    operator_url: {}\n",
            pg.url(&op, &op_password, &db)
        ),
        admin_password,
        baseline_url: format!(
            "postgresql://{base}:{base_password}@{}:{}/{db}?sslmode=disable",
            pg.host, pg.port
        ),
        catalog_url: pg.superuser_url(),
    })
}

/// The MariaDB root URL the tests use.
fn mariadb_root_url() -> String {
    std::env::var("BREAKGLASS_TEST_MARIADB")
        .unwrap_or_else(|_| breakglass_testkit::mariadb::DEFAULT_MARIADB.to_owned())
}

/// Connects as root once, to say why MariaDB is unusable (the testkit only prints it).
async fn mariadb_reachable() -> Result<(), String> {
    let url = mariadb_root_url();
    let options = MySqlConnectOptions::from_str(&url)
        .map_err(|_| "BREAKGLASS_TEST_MARIADB is not a mysql:// URL".to_owned())?;
    let place = format!("{}:{}", options.get_host(), options.get_port());
    match tokio::time::timeout(PROBE, options.disable_statement_logging().connect()).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(format!("MariaDB not reachable at {place}: {e}")),
        Err(_) => Err(format!(
            "MariaDB at {place} did not answer within {} s",
            PROBE.as_secs()
        )),
    }
}

/// The fixture's server-wide users, by the database's suffix.
fn mariadb_users(db: &FreshMariadb) -> [String; 3] {
    [
        format!("bgadm_{}", db.suffix),
        format!("bgop_{}", db.suffix),
        format!("bgbase_{}", db.suffix),
    ]
}

/// Users on the server: the admin whose password is sealed (the privileges the adapter's
/// module documentation lists, with the grant's `SELECT` grantable and `EVENT` on the backstop
/// database, here the fresh database), the operator of the targets file, and the baseline
/// account (the same `SELECT` the grants give).
async fn mariadb_site(db: &FreshMariadb) -> Result<Site> {
    let [admin, op, base] = mariadb_users(db);
    let sfx = &db.suffix;
    let d = &db.database;
    let admin_password = format!("adm-{sfx}-initial");
    let (op_password, base_password) = (format!("op-{sfx}"), format!("base-{sfx}"));
    let mut conn = db.root().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE USER '{admin}'@'%' IDENTIFIED BY '{admin_password}';
         GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO '{admin}'@'%';
         GRANT SELECT ON `{d}`.* TO '{admin}'@'%' WITH GRANT OPTION;
         GRANT EVENT ON `{d}`.* TO '{admin}'@'%';
         CREATE USER '{op}'@'%' IDENTIFIED BY '{op_password}';
         GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO '{op}'@'%';
         GRANT EVENT ON `{d}`.* TO '{op}'@'%';
         GRANT SELECT ON mysql.* TO '{op}'@'%';
         CREATE USER '{base}'@'%' IDENTIFIED BY '{base_password}';
         GRANT SELECT ON `{d}`.* TO '{base}'@'%';"
    )))
    .execute(&mut conn)
    .await
    .context("creating the fixture users")?;
    let (version, plugin, scheduler, flush): (String, String, String, String) = sqlx::query_as(
        "SELECT CAST(VERSION() AS CHAR), \
                (SELECT CAST(plugin AS CHAR) FROM mysql.user WHERE User = ? AND Host = '%'), \
                CAST(@@GLOBAL.event_scheduler AS CHAR), \
                CAST(@@GLOBAL.innodb_flush_log_at_trx_commit AS CHAR)",
    )
    .bind(&base)
    .fetch_one(&mut conn)
    .await
    .context("reading the server's version")?;
    let _ = conn.close().await;
    let host_port = format!("{}:{}", db.host, db.port);
    Ok(Site {
        kind: Kind::Mariadb,
        server: format!(
            "the machine's server at {host_port}, server {version}, password logins over TCP \
             (`{plugin}`), event_scheduler {scheduler}, innodb_flush_log_at_trx_commit {flush}"
        ),
        target_block: format!(
            "target:\n  kind: mariadb\n  details:\n    host: {}\n    port: \"{}\"\n    admin_user: {admin}\n    grants: SELECT ON {d}.*\n    connection: {CONNECTION}\n    backstop_db: {d}\n",
            db.host, db.port
        ),
        targets_file: format!(
            "connections:\n  - name: {CONNECTION}\n    kind: mariadb\n    operator_url: mysql://{op}:{op_password}@{host_port}\n"
        ),
        admin_password,
        baseline_url: format!("mysql://{base}:{base_password}@{host_port}/"),
        catalog_url: db.root_url.clone(),
    })
}

/// Drops the fixture's users (the database goes with `drop_db`).
async fn mariadb_cleanup(db: &FreshMariadb) -> Result<()> {
    let mut conn = db.root().await;
    for user in mariadb_users(db) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP USER IF EXISTS '{user}'@'%'"
        )))
        .execute(&mut conn)
        .await
        .with_context(|| format!("DROP USER {user}"))?;
    }
    let _ = conn.close().await;
    Ok(())
}

/// A client session on the target, opened the way a requester's tool would: a single
/// connection (no pool) from a URL.
enum Session {
    Pg(PgConnection),
    My(MySqlConnection),
}

impl Session {
    /// Connects with `url` and runs `SELECT 1`, which must answer 1: the verified login.
    async fn login(kind: Kind, url: &str) -> Result<Session> {
        match kind {
            Kind::Postgres => {
                let mut c = PgConnection::connect(url).await.context("login")?;
                let one: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut c)
                    .await
                    .context("SELECT 1")?;
                ensure!(one == 1, "SELECT 1 answered {one}");
                Ok(Session::Pg(c))
            }
            Kind::Mariadb => {
                let mut c = MySqlConnection::connect(url).await.context("login")?;
                let one: i64 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut c)
                    .await
                    .context("SELECT 1")?;
                ensure!(one == 1, "SELECT 1 answered {one}");
                Ok(Session::My(c))
            }
        }
    }

    /// The account the server says the session runs as (`user` on MariaDB, without the host).
    async fn current_user(&mut self) -> Result<String> {
        Ok(match self {
            Session::Pg(c) => {
                sqlx::query_scalar("SELECT current_user::text")
                    .fetch_one(c)
                    .await?
            }
            Session::My(c) => {
                let account: String = sqlx::query_scalar("SELECT CAST(CURRENT_USER() AS CHAR)")
                    .fetch_one(c)
                    .await?;
                account
                    .rsplit_once('@')
                    .map_or(account.clone(), |(u, _)| u.to_owned())
            }
        })
    }

    async fn close(self) {
        let _ = match self {
            Session::Pg(c) => c.close().await,
            Session::My(c) => c.close().await,
        };
    }
}

/// The user of a `scheme://user:password@…` access string.
fn user_of(access: &str) -> Option<&str> {
    let rest = access.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    Some(userinfo.split_once(':').map_or(userinfo, |(u, _)| u))
}

/// Sets up the engine on `store` with the real adapters and the site's procedure, then runs
/// `warmup + breaks` breaks: open and the first approval (untimed); the quorum approval,
/// reveal, decrypt and login (timed); close and settle (untimed); then one baseline login.
async fn run(site: &Site, store: SqlStore, plan: Plan) -> Result<TargetFigures> {
    let kind = site.kind;
    let procedure = kind.procedure();
    let f = Fixture::with_target(
        procedure,
        &format!("benchmark {} target", kind.label()),
        &site.target_block,
    )?;
    let targets = breakglass_targets::load("targets.yaml", &site.targets_file, &|_| None).map_err(
        |errors| {
            anyhow!(
                "targets file: {}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        },
    )?;
    let outputs = Outputs {
        targets: breakglass_targets::build(&targets),
        ..Default::default()
    };
    // The system clock, so that deadlines (`VALID UNTIL`, the backstop event) are real.
    let engine = Engine::wired(
        Arc::new(store),
        Arc::new(SystemClock),
        Config::default(),
        outputs,
    );
    let admin = bench_admin();
    let dave = f
        .install(
            &engine,
            procedure,
            Secret::new(site.admin_password.as_bytes().to_vec()),
        )
        .await?;
    let (alice, bob) = (custodian("alice"), custodian("bob"));

    let total = plan.warmup + plan.breaks;
    let mut figures = TargetFigures {
        server: site.server.clone(),
        access: Vec::with_capacity(plan.breaks),
        approve: Vec::with_capacity(plan.breaks),
        reveal: Vec::with_capacity(plan.breaks),
        decrypt: Vec::with_capacity(plan.breaks),
        login: Vec::with_capacity(plan.breaks),
        baseline: Vec::with_capacity(plan.breaks),
        breaks_run: total,
        ended: 0,
        rotated: 0,
        leftover: 0,
        audit_entries: 0,
    };
    let mut issued = BTreeSet::new();
    for i in 0..total {
        let id = engine
            .open_break(&dave, procedure, "benchmark", "BENCH-5", Some(GRANT))
            .await
            .context("open")?
            .info
            .id
            .0;
        let share = f.share(&engine, &alice, &id).await?;
        let first = engine
            .approve(&alice, &id, &share)
            .await
            .context("first approval")?;
        ensure!(
            matches!(first.state, Break::Requested(_)),
            "the first approval must not complete the quorum"
        );
        let share = f.share(&engine, &bob, &id).await?;

        // Timed: quorum approval (the grant is created on the target) → verified login.
        let t0 = Instant::now();
        let second = engine
            .approve(&bob, &id, &share)
            .await
            .context("quorum approval")?;
        let t1 = Instant::now();
        ensure!(
            matches!(second.state, Break::Granted(_)),
            "the second approval must issue the grant"
        );
        let revealed = engine.reveal(&dave, &id).await.context("reveal")?;
        let t2 = Instant::now();
        let access = decrypt_with(&f.requester, &revealed.age_file).context("decrypt")?;
        let access = std::str::from_utf8(&access).context("the access string is not UTF-8")?;
        let t3 = Instant::now();
        let mut session = Session::login(kind, access)
            .await
            .with_context(|| format!("{} login with the granted access", kind.label()))?;
        let t4 = Instant::now();

        // Untimed: the session is the grant's own account; then end the grant and let the
        // admin credential's rotation finish.
        let user = user_of(access).context("the access string names no user")?;
        ensure!(
            user.starts_with("bg_"),
            "the access string is not for an ephemeral account"
        );
        let current = session.current_user().await.context("current user")?;
        ensure!(
            current == user,
            "logged in as `{current}`, the grant is for `{user}`"
        );
        issued.insert(user.to_owned());
        session.close().await;
        engine.close(&admin, &id).await.context("close")?;
        engine.settle().await;

        // Baseline: the same client code, a fixed account, a quiet engine.
        let b0 = Instant::now();
        let base = Session::login(kind, &site.baseline_url)
            .await
            .with_context(|| format!("{} baseline login", kind.label()))?;
        let b1 = Instant::now();
        base.close().await;

        if i >= plan.warmup {
            figures.access.push(t4 - t0);
            figures.approve.push(t1 - t0);
            figures.reveal.push(t2 - t1);
            figures.decrypt.push(t3 - t2);
            figures.login.push(t4 - t3);
            figures.baseline.push(b1 - b0);
        }
        if (i + 1) % 50 == 0 {
            eprintln!("  {}: {}/{total} breaks", kind.label(), i + 1);
        }
    }

    // Sanity checks (untimed).
    let mut from = 1;
    loop {
        let page = engine
            .audit_entries(&admin, from, 1000)
            .await
            .context("audit entries")?;
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        figures.ended += page.iter().filter(|e| e.kind == "grant.ended").count();
        figures.rotated += page
            .iter()
            .filter(|e| e.kind == "credential.rotated")
            .count();
    }
    let status = engine
        .procedure(&admin, procedure)
        .await
        .context("procedure")?;
    if let Some(taint) = &status.stored.taint {
        bail!("the procedure is tainted after the run: {}", taint.reason);
    }
    figures.leftover = leftover(site, &issued).await?;
    match engine.verify_audit(&admin).await.context("verify audit")? {
        ChainVerdict::Intact(report) => figures.audit_entries = report.entries,
        other => bail!("the audit chain does not verify after the run: {other:?}"),
    }
    Ok(figures)
}

/// How many of the `issued` roles or users still exist on the target.
async fn leftover(site: &Site, issued: &BTreeSet<String>) -> Result<usize> {
    let pattern = "bg\\_%";
    let names: Vec<String> = match site.kind {
        Kind::Postgres => {
            let mut c = PgConnection::connect(&site.catalog_url).await?;
            let names =
                sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1")
                    .bind(pattern)
                    .fetch_all(&mut c)
                    .await?;
            let _ = c.close().await;
            names
        }
        Kind::Mariadb => {
            let mut c = MySqlConnection::connect(&site.catalog_url).await?;
            let names =
                sqlx::query_scalar("SELECT CAST(User AS CHAR) FROM mysql.user WHERE User LIKE ?")
                    .bind(pattern)
                    .fetch_all(&mut c)
                    .await?;
            let _ = c.close().await;
            names
        }
    };
    Ok(names.iter().filter(|n| issued.contains(*n)).count())
}
