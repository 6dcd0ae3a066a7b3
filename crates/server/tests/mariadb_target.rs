//! A break on a MariaDB procedure through the server's engine against the machine's MariaDB:
//! the requester logs in as the ephemeral user, a session held past the deadline is killed
//! within a second and the user dropped, and the admin password is rotated and re-sealed.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use common::requester;
use std::time::{Duration, Instant};

use breakglass_custody::{ExposeSecret, Identity, Secret, decrypt_share, decrypt_with, keygen};
use breakglass_domain::{Actor, Break, Role};
use breakglass_server::{ServerConfig, build};
use breakglass_testkit::mariadb::fresh_mariadb;
use sqlx::{Connection, Executor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_break_grants_kills_at_the_deadline_and_rotates() {
    let Some(db) = fresh_mariadb(
        "server::mariadb_target::mariadb_break_grants_kills_at_the_deadline_and_rotates",
    )
    .await
    else {
        return;
    };
    let (d, tag) = (db.database.clone(), db.suffix.clone());
    let (adm, apw) = (format!("bgs_adm_{tag}"), format!("adm-{tag}-initial"));
    let (op, opw) = (format!("bgs_op_{tag}"), format!("op-{tag}"));
    db.root_exec(&format!(
        "SET GLOBAL event_scheduler = ON;
         CREATE TABLE `{d}`.t (n INT);
         CREATE USER '{adm}'@'%' IDENTIFIED BY '{apw}';
         GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO '{adm}'@'%';
         GRANT SELECT, INSERT ON `{d}`.* TO '{adm}'@'%' WITH GRANT OPTION;
         GRANT EVENT ON `{d}`.* TO '{adm}'@'%';
         CREATE USER '{op}'@'%' IDENTIFIED BY '{opw}';
         GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO '{op}'@'%';
         GRANT SELECT ON mysql.* TO '{op}'@'%';
         GRANT EVENT ON `{d}`.* TO '{op}'@'%';"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let url = |user: &str, pw: &str| format!("mysql://{user}:{pw}@{}:{}/", db.host, db.port);
    std::fs::write(
        dir.path().join("targets.yaml"),
        format!(
            "connections:\n  - name: maria\n    kind: mariadb\n    operator_url: {}\n",
            url(&op, &opw)
        ),
    )
    .unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.targets_file = Some(dir.path().join("targets.yaml"));
    let engine = build(config).await.unwrap().state.engine.clone();
    let admin = Actor {
        name: "admin".into(),
        roles: vec![Role::Admin],
        key: None,
    };
    let mut ids = Vec::new();
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let (id, key) = keygen();
        ids.push(Identity::parse(id.expose_secret()).unwrap());
        custodians.push_str(&format!("  - name: {name}\n    key: {}\n", key.canonical()));
    }
    let yaml = format!(
        "id: maria\ntarget:\n  kind: mariadb\n  details:\n    host: {}\n    port: \"{}\"\n    admin_user: {adm}\n    grants: SELECT, INSERT ON {d}.*\n    connection: maria\n    backstop_db: {d}\ncustodians:\n{custodians}quorum: 2\nmax_grant: 1h\n",
        db.host, db.port
    );
    engine
        .apply(&admin, &[("m.yaml".into(), yaml)])
        .await
        .unwrap();
    let (dave_id, dave) = requester(&engine, "dave").await;
    engine
        .seal(&admin, "maria", Secret::new(apw.as_bytes().to_vec()))
        .await
        .unwrap();
    let id = engine
        .open_break(
            &dave,
            "maria",
            "db down",
            "INC-7",
            Some(Duration::from_secs(3)),
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
        let plain = decrypt_share(&share.age_file, &ids[i]).unwrap();
        engine.approve(&c, &id, &plain.encode()).await.unwrap();
    }
    let granted_at = Instant::now();
    assert!(matches!(
        engine.break_(&admin, &id).await.unwrap(),
        Break::Granted(_)
    ));
    let revealed = engine.reveal(&dave, &id).await.unwrap();
    let access =
        String::from_utf8(decrypt_with(&dave_id, &revealed.age_file).unwrap().to_vec()).unwrap();
    let mut session = sqlx::MySqlConnection::connect(&format!("{access}{d}"))
        .await
        .unwrap();
    session.execute("INSERT INTO t VALUES (1)").await.unwrap();

    // Rotation: the old admin password stops working, the procedure is re-sealed.
    engine.settle().await;
    assert!(
        sqlx::MySqlConnection::connect(&url(&adm, &apw))
            .await
            .is_err()
    );
    let status = engine.procedure(&admin, "maria").await.unwrap();
    assert!(status.stored.taint.is_none(), "{:?}", status.stored.taint);

    // The held session is killed within a second of the deadline by the sweep.
    let deadline = granted_at + Duration::from_secs(3);
    let killed = loop {
        engine.expire_due().await.unwrap();
        if session.execute("SELECT 1").await.is_err() {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(5),
            "never killed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(killed < deadline + Duration::from_secs(2));
    let g = engine.grant_record(&admin, &id).await.unwrap().unwrap();
    assert!(g.ended_at.is_some(), "{g:?}");
    assert!(
        sqlx::MySqlConnection::connect(&access).await.is_err(),
        "user dropped"
    );
    db.drop_db().await;
}
