//! Breaks against a real PostgreSQL (a private cluster with password authentication, so
//! passwords and `VALID UNTIL` are enforced) through the whole server: the grant is an
//! ephemeral role the requester logs in with; a session held past the deadline is terminated
//! within a second; the admin password is rotated and re-sealed (the old one stops working,
//! the new sealed one opens the next break); a login after the deadline fails with the server
//! stopped; and a restart ends grants whose deadline passed while it was down.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use common::admin;
use std::time::{Duration, Instant};

use breakglass_custody::{ExposeSecret, Identity, Secret, decrypt_share, decrypt_with, keygen};
use breakglass_domain::{Actor, Break, Role};
use breakglass_engine::Engine;
use breakglass_server::{ServerConfig, build};
use breakglass_testkit::pgcluster::{PgCluster, cluster};
use sqlx::{Connection, Executor};

struct Fixture {
    pg: &'static PgCluster,
    db: String,
    admin_role: String,
    app_role: String,
    admin_password: String,
    ids: Vec<Identity>,
    dave_id: Identity,
    dave: Actor,
    dir: tempfile::TempDir,
    yaml: String,
}

async fn sql(pg: &PgCluster, db: &str, text: &str) {
    let mut c = pg.connect(db).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(text.to_owned()))
        .execute(&mut c)
        .await
        .unwrap();
    let _ = c.close().await;
}

async fn fixture(test: &str) -> Option<Fixture> {
    let pg = cluster(test)?;
    let db = pg.fresh_db().await;
    let sfx = &db["bg_test_".len()..];
    let admin_role = format!("bgadm_{sfx}");
    let app_role = format!("app_{sfx}");
    let op_role = format!("bgop_{sfx}");
    let admin_password = format!("adm-{sfx}-initial");
    sql(
        pg,
        &db,
        &format!(
            "CREATE ROLE {admin_role} LOGIN PASSWORD '{admin_password}' CREATEROLE;
             CREATE ROLE {app_role} NOLOGIN;
             GRANT {app_role} TO {admin_role} WITH ADMIN OPTION;
             CREATE ROLE {op_role} LOGIN PASSWORD 'op-{sfx}' CREATEROLE;
             GRANT pg_signal_backend TO {op_role};
             GRANT CREATE ON SCHEMA public TO {app_role};"
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("targets.yaml"),
        format!(
            "connections:\n  - name: pg-main\n    kind: postgres\n    operator_url: {}\n",
            pg.url(&op_role, &format!("op-{sfx}"), &db)
        ),
    )
    .unwrap();
    let mut ids = Vec::new();
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let (id, key) = keygen();
        ids.push(Identity::parse(id.expose_secret()).unwrap());
        custodians.push_str(&format!("  - name: {name}\n    key: {}\n", key.canonical()));
    }
    let yaml = format!(
        "id: pg\ntarget:\n  kind: postgres\n  details:\n    host: {}\n    port: \"{}\"\n    dbname: {db}\n    admin_user: {admin_role}\n    grant_role: {app_role}\n    connection: pg-main\n    sslmode: disable\n    inventory: postgres, {admin_role}, {op_role}\ncustodians:\n{custodians}quorum: 2\nmax_grant: 1h\n",
        pg.host, pg.port
    );
    let (rid, rkey) = keygen();
    Some(Fixture {
        pg,
        db,
        admin_role,
        app_role,
        admin_password,
        ids,
        dave_id: Identity::parse(rid.expose_secret()).unwrap(),
        dave: Actor {
            name: "dave".into(),
            roles: vec![Role::Requester],
            key: Some(rkey),
        },
        dir,
        yaml,
    })
}

async fn start(f: &Fixture) -> Engine {
    let mut config = ServerConfig::new(f.dir.path());
    config.targets_file = Some(f.dir.path().join("targets.yaml"));
    build(config).await.unwrap().state.engine.clone()
}

async fn setup(f: &Fixture, engine: &Engine) {
    engine
        .apply(&admin(), &[("pg.yaml".into(), f.yaml.clone())])
        .await
        .unwrap();
    engine
        .enroll(
            &admin(),
            "dave",
            &[Role::Requester],
            Some(&f.dave.key.as_ref().unwrap().canonical()),
            "",
            false,
        )
        .await
        .unwrap();
    engine
        .seal(
            &admin(),
            "pg",
            Secret::new(f.admin_password.as_bytes().to_vec()),
        )
        .await
        .unwrap();
}

/// Opens a break, approves it with alice and bob, reveals the access string.
async fn granted(f: &Fixture, engine: &Engine, secs: u64) -> (String, String) {
    let id = engine
        .open_break(
            &f.dave,
            "pg",
            "db down",
            "INC-1",
            Some(Duration::from_secs(secs)),
        )
        .await
        .unwrap()
        .info
        .id
        .0;
    for (i, name) in ["alice", "bob"].iter().enumerate() {
        let c = Actor {
            name: (*name).into(),
            roles: vec![Role::Custodian],
            key: None,
        };
        let share = engine.share_for(&c, &id).await.unwrap();
        let plain = decrypt_share(&share.age_file, &f.ids[i]).unwrap();
        engine.approve(&c, &id, &plain.encode()).await.unwrap();
    }
    assert!(matches!(
        engine.break_(&admin(), &id).await.unwrap(),
        Break::Granted(_)
    ));
    let revealed = engine.reveal(&f.dave, &id).await.unwrap();
    let access = decrypt_with(&f.dave_id, &revealed.age_file).unwrap();
    (id, String::from_utf8(access.to_vec()).unwrap())
}

async fn events(engine: &Engine, kind: &str) -> Vec<serde_json::Value> {
    engine
        .audit_entries(&admin(), 1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.payload)
        .collect()
}

async fn role_exists(f: &Fixture, role: &str) -> bool {
    let mut c = f.pg.connect(&f.db).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_one(&mut c)
        .await
        .unwrap();
    n == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_break_grants_terminates_rotates_and_reseals() {
    let Some(f) =
        fixture("server::targets::postgres_break_grants_terminates_rotates_and_reseals").await
    else {
        return;
    };
    let engine = start(&f).await;
    setup(&f, &engine).await;

    let (id, access) = granted(&f, &engine, 3).await;
    assert!(
        access.starts_with("postgresql://bg_"),
        "a connection string"
    );
    let role = access["postgresql://".len()..]
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let mut session = sqlx::PgConnection::connect(&access).await.unwrap();
    let member: bool = sqlx::query_scalar("SELECT pg_has_role(current_user, $1, 'member')")
        .bind(&f.app_role)
        .fetch_one(&mut session)
        .await
        .unwrap();
    assert!(
        member,
        "the ephemeral role is a member of the procedure's role"
    );
    let grant = engine.grant_record(&admin(), &id).await.unwrap().unwrap();
    assert_eq!(grant.handle["role"], role);

    // The admin password is rotated and re-sealed in the background.
    engine.settle().await;
    let rotated = events(&engine, "credential.rotated").await;
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert_eq!(rotated[0]["changed_on_target"], true);
    let old = f.pg.url(&f.admin_role, &f.admin_password, &f.db);
    assert!(
        sqlx::PgConnection::connect(&old).await.is_err(),
        "the old admin password no longer works"
    );
    let procedure = engine.procedure(&admin(), "pg").await.unwrap();
    assert!(
        procedure.stored.taint.is_none(),
        "re-sealed: {:?}",
        procedure.stored.taint
    );

    // The held session dies within a second of the deadline (the sweep runs as the expiry worker
    // does, every 100 ms here).
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut ended_at = None;
    while Instant::now() < deadline + Duration::from_secs(5) {
        engine.expire_due().await.unwrap();
        if session.execute("SELECT 1").await.is_err() {
            ended_at = Some(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ended_at = ended_at.expect("the session was terminated");
    assert!(
        ended_at < deadline + Duration::from_secs(2),
        "terminated late"
    );
    let ended = events(&engine, "grant.ended").await;
    assert_eq!(ended.len(), 1);
    assert!(ended[0]["late_ms"].as_i64().unwrap() < 1000, "{ended:?}");
    assert_eq!(ended[0]["target"]["sessions_terminated"], 1);
    assert!(!role_exists(&f, &role).await, "role dropped");
    assert!(sqlx::PgConnection::connect(&access).await.is_err());

    // The new sealed credential opens the next break (it is the only admin password now).
    let (_id2, access2) = granted(&f, &engine, 60).await;
    let mut c = sqlx::PgConnection::connect(&access2).await.unwrap();
    c.execute("SELECT 1").await.unwrap();
    let _ = c.close().await;
    engine.settle().await;
    assert_eq!(events(&engine, "credential.rotated").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_grant_expires_with_the_server_down_and_is_ended_at_restart() {
    let Some(f) = fixture(
        "server::targets::postgres_grant_expires_with_the_server_down_and_is_ended_at_restart",
    )
    .await
    else {
        return;
    };
    let engine = start(&f).await;
    setup(&f, &engine).await;
    let (id, access) = granted(&f, &engine, 2).await;
    let role = access["postgresql://".len()..]
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    sqlx::PgConnection::connect(&access).await.unwrap();
    engine.settle().await;
    drop(engine); // The server is down from here on: no worker, no expiry sweep.

    tokio::time::sleep(Duration::from_millis(2600)).await;
    let refused = sqlx::PgConnection::connect(&access).await;
    assert!(
        refused.is_err(),
        "PostgreSQL itself refuses the login after VALID UNTIL"
    );
    assert!(role_exists(&f, &role).await, "nobody ended it yet");

    // Start-up reconciliation ends it.
    let engine = start(&f).await;
    assert!(!role_exists(&f, &role).await, "dropped at start-up");
    let g = engine.grant_record(&admin(), &id).await.unwrap().unwrap();
    assert!(g.ended_at.is_some());
    assert_eq!(g.end_cause.as_deref(), Some("expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_grant_failure_is_audited_and_leaves_the_break_requested() {
    let Some(f) = fixture(
        "server::targets::postgres_grant_failure_is_audited_and_leaves_the_break_requested",
    )
    .await
    else {
        return;
    };
    let engine = start(&f).await;
    setup(&f, &engine).await;
    // Someone changed the admin password behind breakglass's back: the sealed one is wrong.
    sql(
        f.pg,
        &f.db,
        &format!("ALTER ROLE {} PASSWORD 'changed-by-hand'", f.admin_role),
    )
    .await;
    let id = engine
        .open_break(
            &f.dave,
            "pg",
            "db down",
            "INC-2",
            Some(Duration::from_secs(60)),
        )
        .await
        .unwrap()
        .info
        .id
        .0;
    let mut last = None;
    for (i, name) in ["alice", "bob"].iter().enumerate() {
        let c = Actor {
            name: (*name).into(),
            roles: vec![Role::Custodian],
            key: None,
        };
        let share = engine.share_for(&c, &id).await.unwrap();
        let plain = decrypt_share(&share.age_file, &f.ids[i]).unwrap();
        last = Some(engine.approve(&c, &id, &plain.encode()).await);
    }
    let err = last.unwrap().unwrap_err().to_string();
    assert!(err.contains("refused the credential"), "{err}");
    assert!(
        err.contains(&f.db) || err.contains("postgres"),
        "names the target: {err}"
    );
    assert!(!err.contains("changed-by-hand") && !err.contains(&f.admin_password));
    assert!(matches!(
        engine.break_(&admin(), &id).await.unwrap(),
        Break::Requested(_)
    ));
    let failed = events(&engine, "grant.failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["error_code"], "credential");
    assert!(engine.grant_record(&admin(), &id).await.unwrap().is_none());
}

/// A crash between creating the role and committing the grant leaves a role named after the
/// break. A later grant of the same break ends it and grants again; a break that closes
/// without a grant ends it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_leftovers_of_uncommitted_grants_are_ended() {
    let Some(f) =
        fixture("server::targets::postgres_leftovers_of_uncommitted_grants_are_ended").await
    else {
        return;
    };
    let engine = start(&f).await;
    setup(&f, &engine).await;
    let open = || async {
        engine
            .open_break(
                &f.dave,
                "pg",
                "db down",
                "INC-3",
                Some(Duration::from_secs(60)),
            )
            .await
            .unwrap()
            .info
            .id
            .0
    };
    let leftover = |id: &str| format!("bg_{}", id.trim_start_matches("brk_"));
    // What a grant leaves when its commit never happens: the role, administered by the operator.
    let op_role = format!("bgop_{}", &f.db["bg_test_".len()..]);
    let make_leftover = |id: String| {
        let sql_text = format!(
            "CREATE ROLE {0} LOGIN; GRANT {0} TO {op_role} WITH ADMIN OPTION;",
            leftover(&id)
        );
        let (pg, db) = (f.pg, f.db.clone());
        async move { sql(pg, &db, &sql_text).await }
    };

    // 1. The leftover is in the way of the grant: ended, then granted.
    let id = open().await;
    make_leftover(id.clone()).await;
    for (i, name) in ["alice", "bob"].iter().enumerate() {
        let c = Actor {
            name: (*name).into(),
            roles: vec![Role::Custodian],
            key: None,
        };
        let share = engine.share_for(&c, &id).await.unwrap();
        let plain = decrypt_share(&share.age_file, &f.ids[i]).unwrap();
        engine.approve(&c, &id, &plain.encode()).await.unwrap();
    }
    assert!(matches!(
        engine.break_(&admin(), &id).await.unwrap(),
        Break::Granted(_)
    ));
    assert_eq!(events(&engine, "grant.leftover_ended").await.len(), 1);
    engine.close(&f.dave, &id).await.unwrap();
    assert!(!role_exists(&f, &leftover(&id)).await);
    engine.settle().await;

    // 2. A request closed without a grant: its leftover is ended.
    let id = open().await;
    make_leftover(id.clone()).await;
    engine.close(&f.dave, &id).await.unwrap();
    assert!(!role_exists(&f, &leftover(&id)).await, "leftover dropped");
    let g = engine.grant_record(&admin(), &id).await.unwrap().unwrap();
    assert_eq!(g.end_cause.as_deref(), Some("abandoned"));
    assert!(g.ended_at.is_some());
}

/// Two breaks opened on the same seal: the first one's grant rotates the admin credential, so
/// the second, still waiting for its quorum, is moved to the new seal (the share accepted
/// from the old one is dropped and its custodian told to approve again); approved with the
/// new seal's shares, it is granted with the credential the target holds now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_break_waiting_during_a_rotation_moves_to_the_new_seal() {
    let Some(f) = fixture(
        "server::targets::postgres_a_break_waiting_during_a_rotation_moves_to_the_new_seal",
    )
    .await
    else {
        return;
    };
    let engine = start(&f).await;
    setup(&f, &engine).await;
    let custodian = |name: &str| Actor {
        name: name.into(),
        roles: vec![Role::Custodian],
        key: None,
    };
    let approve = |id: String, i: usize, name: &'static str| {
        let engine = engine.clone();
        let who = custodian(name);
        let identity = &f.ids[i];
        async move {
            let share = engine.share_for(&who, &id).await.unwrap();
            let plain = decrypt_share(&share.age_file, identity).unwrap();
            engine.approve(&who, &id, &plain.encode()).await
        }
    };
    let open = || {
        engine.open_break(
            &f.dave,
            "pg",
            "db down",
            "INC-2",
            Some(Duration::from_secs(60)),
        )
    };
    let first = open().await.unwrap().info.id.0;
    let second = open().await.unwrap().info.id.0;
    let old_seal = match engine.break_(&admin(), &second).await.unwrap() {
        Break::Requested(r) => r.info.seal_id,
        other => panic!("{other:?}"),
    };
    // alice approves the second on the old seal; the first is granted and rotates.
    approve(second.clone(), 0, "alice").await.unwrap();
    approve(first.clone(), 0, "alice").await.unwrap();
    approve(first.clone(), 1, "bob").await.unwrap();
    engine.settle().await;
    let rotated = events(&engine, "credential.rotated").await;
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    let new_seal = rotated[0]["seal_id"].as_str().unwrap().to_owned();
    assert_ne!(new_seal, old_seal);

    // The second break now waits on the new seal, with no approval.
    match engine.break_(&admin(), &second).await.unwrap() {
        Break::Requested(r) => {
            assert_eq!(r.info.seal_id, new_seal);
            assert!(r.info.approvals.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let resets = events(&engine, "break.approvals_reset").await;
    assert!(
        resets
            .iter()
            .any(|p| p["custodians"] == serde_json::json!(["alice"])
                && p["why"].as_str().unwrap().contains("approve again")),
        "{resets:?}"
    );

    // Approved again with the new seal's shares, it is granted: the combined credential is
    // the one the target holds now.
    approve(second.clone(), 0, "alice").await.unwrap();
    approve(second.clone(), 1, "bob").await.unwrap();
    assert!(matches!(
        engine.break_(&admin(), &second).await.unwrap(),
        Break::Granted(_)
    ));
    let revealed = engine.reveal(&f.dave, &second).await.unwrap();
    let access = decrypt_with(&f.dave_id, &revealed.age_file).unwrap();
    let url = String::from_utf8(access.to_vec()).unwrap();
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(one, 1);
    engine.settle().await;
}
