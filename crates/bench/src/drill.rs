//! A full automated drill on PostgreSQL, end to end: request, alert receipt and
//! acknowledgement, two approvals with the drill identities, the grant on the target, a real
//! client login, the grant's expiry, the kill of the live session, the refusal of the expired
//! access, and the rotation and re-seal of the drill credential — against a baseline run in the
//! same process: the same break done by hand through the same engine (open, approve, approve,
//! reveal, login, close, wait for the rotation), which has no grant window to wait out.
//!
//! The server is the real one (`breakglass_server::build`: SQLite in a temp dir, the targets
//! file, a webhook channel to a receiver on loopback, the drill identities in the data dir),
//! over a private PostgreSQL cluster with password authentication.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use breakglass_custody::{Secret, decrypt_share, decrypt_with, keygen};
use breakglass_domain::{Actor, DrillMode, Role};
use breakglass_engine::{DrillRequest, Engine};
use breakglass_testkit::pgcluster::PgCluster;
use sqlx::{Connection, PgConnection};

/// The grant each drill asks for: the drill waits it out (expiry is one of its steps).
pub(crate) const GRANT: Duration = Duration::from_millis(300);

/// Figures of the run.
#[derive(Debug, Clone)]
pub(crate) struct DrillFigures {
    /// PostgreSQL server version.
    pub(crate) server: String,
    /// Wall time of each measured automated drill, from the call to its recorded result.
    pub(crate) drills: Vec<Duration>,
    /// Time to access each drill recorded (request → first login).
    pub(crate) time_to_access: Vec<Duration>,
    /// Wall time of each baseline break cycle done by hand.
    pub(crate) baseline: Vec<Duration>,
    /// Drills that passed (all of them, or the bench fails).
    pub(crate) passed: usize,
}

fn admin() -> Actor {
    Actor {
        name: "admin".into(),
        roles: vec![Role::Admin],
        key: None,
    }
}

async fn sql(pg: &PgCluster, db: &str, text: String) -> Result<()> {
    let mut c = pg.connect(db).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(text))
        .execute(&mut c)
        .await
        .context("fixture SQL")?;
    let _ = c.close().await;
    Ok(())
}

/// Runs `warmup` + `n` drills and as many baseline cycles; `Err` says why nothing was measured.
pub(crate) async fn run(n: usize, warmup: usize) -> Result<Result<DrillFigures, String>> {
    let cluster =
        tokio::task::spawn_blocking(|| breakglass_testkit::pgcluster::cluster("bench::drill"))
            .await;
    let pg = match cluster {
        Ok(Some(pg)) => pg,
        Ok(None) => {
            return Ok(Err(
                "no private PostgreSQL cluster (see the SKIP line on stderr)".into(),
            ));
        }
        Err(e) => return Ok(Err(format!("the cluster did not start: {e}"))),
    };
    let db = pg.fresh_db().await;
    let sfx = db["bg_test_".len()..].to_owned();
    let (adm, drl, app, op) = (
        format!("badm_{sfx}"),
        format!("bdrl_{sfx}"),
        format!("bapp_{sfx}"),
        format!("bop_{sfx}"),
    );
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
    .await?;
    let server: String = {
        let mut c = pg.connect(&db).await;
        let v = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut c)
            .await
            .context("server version")?;
        let _ = c.close().await;
        v
    };

    // A webhook receiver on loopback for the alert channel.
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { axum::http::StatusCode::OK }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let raddr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, receiver).await;
    });
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("targets.yaml"),
        format!(
            "connections:\n  - name: pg\n    kind: postgres\n    operator_url: {}\n",
            pg.url(&op, &format!("op-{sfx}"), &db)
        ),
    )?;
    std::fs::write(
        dir.path().join("channels.yaml"),
        format!(
            "channels:\n  - name: ops\n    kind: webhook\n    url: http://{raddr}/hook\n    secret: bench-secret\n"
        ),
    )?;
    let mut config = breakglass_server::ServerConfig::new(dir.path().join("data"));
    config.targets_file = Some(dir.path().join("targets.yaml"));
    config.channels_file = Some(dir.path().join("channels.yaml"));
    let engine = breakglass_server::build(config)
        .await
        .context("building the server")?
        .state
        .engine
        .clone();

    // Custodians with real keys (the baseline approves with them), the requester, the procedure.
    let mut ids = Vec::new();
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let (text, key) = keygen();
        ids.push(breakglass_custody::Identity::parse(
            breakglass_custody::ExposeSecret::expose_secret(&text),
        )?);
        custodians.push_str(&format!("  - name: {name}\n    key: {}\n", key.canonical()));
    }
    let yaml = format!(
        "id: pg\ntarget:\n  kind: postgres\n  details:\n    host: {}\n    port: \"{}\"\n    dbname: {db}\n    admin_user: {adm}\n    grant_role: {app}\n    connection: pg\n    sslmode: disable\n    inventory: postgres, {adm}, {op}, {drl}\ncustodians:\n{custodians}quorum: 2\nmax_grant: 1h\nalert_channels: [ops]\ndrill:\n  every: 30d\n",
        pg.host, pg.port
    );
    engine
        .apply(&admin(), &[("pg.yaml".into(), yaml)])
        .await
        .context("apply")?;
    engine
        .seal(&admin(), "pg", Secret::new(admin_pw.as_bytes().to_vec()))
        .await
        .context("seal")?;
    engine
        .seal_drill(
            &admin(),
            "pg",
            Secret::new(pg.url(&drl, &format!("drl-{sfx}"), &db).into_bytes()),
        )
        .await
        .context("seal --drill")?;
    let (rtext, rkey) = keygen();
    let requester_id = breakglass_custody::Identity::parse(
        breakglass_custody::ExposeSecret::expose_secret(&rtext),
    )?;
    engine
        .enroll(
            &admin(),
            "dave",
            &[Role::Requester],
            Some(&rkey.canonical()),
            "",
            false,
        )
        .await
        .context("enrol the requester")?;
    let dave = Actor {
        name: "dave".into(),
        roles: vec![Role::Requester],
        key: Some(rkey),
    };
    let ids = Arc::new(ids);

    let mut figures = DrillFigures {
        server,
        drills: Vec::new(),
        time_to_access: Vec::new(),
        baseline: Vec::new(),
        passed: 0,
    };
    for i in 0..warmup + n {
        let measured = i >= warmup;
        // Baseline first, then the drill, alternating so drift affects both alike.
        let t = Instant::now();
        cycle_by_hand(&engine, &dave, &requester_id, &ids).await?;
        let base = t.elapsed();
        let t = Instant::now();
        let d = engine
            .run_drill(
                &admin(),
                "pg",
                DrillRequest {
                    mode: DrillMode::Automated,
                    injections: Vec::new(),
                    grant: Some(GRANT),
                    ack_within: Some(Duration::from_millis(200)),
                    max_time_to_access: None,
                    step_timeout: Some(Duration::from_secs(10)),
                },
            )
            .await
            .context("drill")?;
        let took = t.elapsed();
        if d.outcome != "passed" {
            bail!("drill {} failed: {}", d.id, d.report["checks"]);
        }
        if measured {
            figures.baseline.push(base);
            figures.drills.push(took);
            figures.passed += 1;
            figures.time_to_access.push(Duration::from_millis(
                u64::try_from(d.time_to_access_ms.unwrap_or(0)).unwrap_or(0),
            ));
        }
    }
    Ok(Ok(figures))
}

/// The baseline: the same break by hand through the same engine, closed right after the login,
/// with the rotation awaited.
async fn cycle_by_hand(
    engine: &Engine,
    dave: &Actor,
    dave_id: &breakglass_custody::Identity,
    ids: &[breakglass_custody::Identity],
) -> Result<()> {
    let id = engine
        .open_break(
            dave,
            "pg",
            "bench",
            "BENCH-1",
            Some(Duration::from_secs(60)),
        )
        .await
        .context("open")?
        .info
        .id
        .0;
    for (i, name) in ["alice", "bob"].iter().enumerate() {
        let c = Actor {
            name: (*name).into(),
            roles: vec![Role::Custodian],
            key: None,
        };
        let share = engine.share_for(&c, &id).await.context("share")?;
        let plain = decrypt_share(&share.age_file, &ids[i])?;
        engine
            .approve(&c, &id, &plain.encode())
            .await
            .context("approve")?;
    }
    let revealed = engine.reveal(dave, &id).await.context("reveal")?;
    let access = decrypt_with(dave_id, &revealed.age_file)?;
    let url = String::from_utf8(access.to_vec())?;
    let mut c = PgConnection::connect(&url).await.context("login")?;
    sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&mut c)
        .await?;
    let _ = c.close().await;
    engine.close(dave, &id).await.context("close")?;
    engine.settle().await;
    Ok(())
}
