//! Two servers on one PostgreSQL store: the first share of a break makes the server that took
//! it the holder of the break's shares. Two first shares reaching the two servers at the same
//! moment must not split the shares between them (neither could then open the break, and the
//! second would try to with one share): the holder is recorded in the share's own commit, and
//! an approval that queued for the writer meanwhile is sent to the holder. Likewise a proxy
//! break's gateway login, taken over by the survivors of its holder: renewed once.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use common::{admin, requester};
use std::time::Duration;

use breakglass_custody::{ExposeSecret, Identity, Secret, decrypt_share, keygen};
use breakglass_domain::{Actor, Break, Role};
use breakglass_engine::{Engine, EngineError};
use breakglass_server::{ServerConfig, build};

const TEST: &str = "server::share_holders::first_shares_on_two_servers_at_once_go_to_one_holder";

async fn server(dir: &std::path::Path, url: &str, advertise: &str) -> Engine {
    let mut config = ServerConfig::new(dir);
    config.database_url = Some(url.to_owned());
    config.engine.advertise_url = Some(advertise.to_owned());
    let engine = build(config).await.unwrap().state.engine;
    // What the running server's heartbeat does: tells the other it is alive.
    engine.heartbeat().await;
    engine
}

/// Applies procedure `p` (`target` section; custodians alice, bob and carol, quorum 2) on
/// `engine`, enrols the requester dave and seals `secret`. Returns the custodians' identities
/// and dave.
async fn procedure(engine: &Engine, target: &str, secret: &[u8]) -> (Vec<Identity>, Actor) {
    let mut ids = Vec::new();
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let (id, key) = keygen();
        ids.push(Identity::parse(id.expose_secret()).unwrap());
        custodians.push_str(&format!("  - name: {name}\n    key: {}\n", key.canonical()));
    }
    let yaml = format!("id: p\n{target}custodians:\n{custodians}quorum: 2\nmax_grant: 1h\n");
    engine
        .apply(&admin(), &[("p.yaml".into(), yaml)])
        .await
        .unwrap();
    let (_, dave) = requester(engine, "dave").await;
    engine
        .seal(&admin(), "p", Secret::new(secret.to_vec()))
        .await
        .unwrap();
    (ids, dave)
}

fn custodian(name: &str) -> Actor {
    Actor {
        name: name.into(),
        roles: vec![Role::Custodian],
        key: None,
    }
}

/// `who`'s share of break `id`, decrypted with their identity.
async fn share(
    engine: &Engine,
    who: &Actor,
    id: &str,
    identity: &Identity,
) -> impl std::ops::Deref<Target = String> {
    let s = engine.share_for(who, id).await.unwrap();
    decrypt_share(&s.age_file, identity).unwrap().encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_shares_on_two_servers_at_once_go_to_one_holder() {
    let Some(db) = breakglass_testkit::fresh_postgres(TEST).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (d0, d1) = (dir.path().join("s0"), dir.path().join("s1"));
    std::fs::create_dir_all(&d1).unwrap();
    let one = server(&d0, &db.url, "http://127.0.0.1:1/one").await;
    // The second server signs the same chain with the same audit key (docs/deployment.md).
    std::fs::copy(d0.join("audit.key"), d1.join("audit.key")).unwrap();
    let two = server(&d1, &db.url, "http://127.0.0.1:2/two").await;

    let (ids, dave) = procedure(&one, "target:\n  kind: secret\n", b"pw").await;

    let (alice, bob) = (custodian("alice"), custodian("bob"));
    let mut forwarded = [0usize; 2];
    for round in 0..8 {
        one.heartbeat().await;
        two.heartbeat().await;
        let id = one
            .open_break(&dave, "p", "r", "t", Some(Duration::from_secs(60)))
            .await
            .unwrap()
            .info
            .id
            .0;
        let (a, b) = (
            share(&one, &alice, &id, &ids[0]).await,
            share(&two, &bob, &id, &ids[1]).await,
        );
        // Alice's first share to the first server, Bob's to the second, at the same moment.
        let (on_one, on_two) =
            tokio::join!(one.approve(&alice, &id, &a), two.approve(&bob, &id, &b));
        let (winner, loser, loser_share, loser_who) = match (&on_one, &on_two) {
            (Ok(_), Err(EngineError::Elsewhere { url, .. })) => {
                assert_eq!(url, "http://127.0.0.1:1/one", "round {round}");
                forwarded[1] += 1;
                (&one, &two, &b, &bob)
            }
            (Err(EngineError::Elsewhere { url, .. }), Ok(_)) => {
                assert_eq!(url, "http://127.0.0.1:2/two", "round {round}");
                forwarded[0] += 1;
                (&two, &one, &a, &alice)
            }
            other => panic!(
                "round {round}: one first share must be taken and the other sent to its holder, got {:?}",
                (
                    other.0.as_ref().map(|o| o.approvals),
                    other.1.as_ref().map(|o| o.approvals)
                )
            ),
        };
        // Asked again, the loser still sends it to the holder; the holder opens the break.
        assert!(
            matches!(
                loser.approve(loser_who, &id, loser_share).await,
                Err(EngineError::Elsewhere { .. })
            ),
            "round {round}"
        );
        let done = winner.approve(loser_who, &id, loser_share).await.unwrap();
        assert!(
            matches!(done.state, Break::Granted(_)),
            "round {round}: the holder opens the break with both shares"
        );
        assert_eq!(done.approvals, 2, "round {round}");
    }
    eprintln!("first shares sent to the other server: {forwarded:?} (of 8 rounds)");
    db.drop_db().await;
}

/// A proxy break's login is held by the server that granted it; when that server is gone,
/// the first survivor asked for a token renews the login and becomes the holder. Two
/// survivors asked at the same moment must not both renew it (the later password would win
/// and the other's gateway would serve nothing): the holder is recorded in the renewal's own
/// commit, so the second finds the first holding it and the request goes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_survivors_asked_for_a_token_at_once_renew_the_login_once() {
    let test =
        "server::share_holders::two_survivors_asked_for_a_token_at_once_renew_the_login_once";
    let Some(db) = breakglass_testkit::fresh_postgres(test).await else {
        return;
    };
    let Some(pg) = breakglass_testkit::pgcluster::cluster(test) else {
        return;
    };
    let target_db = pg.fresh_db().await;
    let sfx = target_db["bg_test_".len()..].to_owned();
    let (adm, app, op) = (
        format!("bgadm_{sfx}"),
        format!("app_{sfx}"),
        format!("bgop_{sfx}"),
    );
    let admin_password = format!("adm-{sfx}-initial");
    let mut c = pg.connect(&target_db).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {adm} LOGIN PASSWORD '{admin_password}' CREATEROLE;
         CREATE ROLE {app} NOLOGIN;
         GRANT {app} TO {adm} WITH ADMIN OPTION;
         CREATE ROLE {op} LOGIN PASSWORD 'op-{sfx}' CREATEROLE;
         GRANT pg_signal_backend TO {op};"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    drop(c);
    let dir = tempfile::tempdir().unwrap();
    let targets = dir.path().join("targets.yaml");
    std::fs::write(
        &targets,
        format!(
            "connections:\n  - name: pg\n    kind: postgres\n    operator_url: {}\n",
            pg.url(&op, &format!("op-{sfx}"), &target_db)
        ),
    )
    .unwrap();
    let lease = Duration::from_secs(1);
    let mut engines = Vec::new();
    for i in 0..3u16 {
        let d = dir.path().join(format!("s{i}"));
        std::fs::create_dir_all(&d).unwrap();
        if i > 0 {
            std::fs::copy(dir.path().join("s0/audit.key"), d.join("audit.key")).unwrap();
        }
        let mut config = ServerConfig::new(&d);
        config.database_url = Some(db.url.clone());
        config.targets_file = Some(targets.clone());
        config.engine.advertise_url = Some(format!("http://127.0.0.1:{}/s{i}", 10 + i));
        config.engine.lease_ttl = lease;
        config.engine.gateway = Some(breakglass_engine::GatewayEndpoint {
            host: format!("gw{i}.example"),
            port: 6432,
            tls: false,
            peer: None,
        });
        let engine = build(config).await.unwrap().state.engine;
        engine.heartbeat().await;
        engines.push(engine);
    }

    let target = format!(
        "target:\n  kind: postgres\n  details:\n    host: {}\n    port: \"{}\"\n    dbname: {target_db}\n    admin_user: {adm}\n    grant_role: {app}\n    connection: pg\n    sslmode: require\n    access: proxy\n",
        pg.host, pg.port
    );
    let first = &engines[0];
    let (ids, dave) = procedure(first, &target, admin_password.as_bytes()).await;
    let id = first
        .open_break(&dave, "p", "r", "t", Some(Duration::from_secs(600)))
        .await
        .unwrap()
        .info
        .id
        .0;
    for (i, who) in [custodian("alice"), custodian("bob")].iter().enumerate() {
        let s = share(first, who, &id, &ids[i]).await;
        first.approve(who, &id, &s).await.unwrap();
    }
    assert!(matches!(
        first.break_(&admin(), &id).await.unwrap(),
        Break::Granted(_)
    ));

    // The first server stops (no more heartbeats); once its lease has run out, the two others
    // are asked for a token at the same moment.
    let survivors = engines.split_off(1);
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    for e in &survivors {
        e.heartbeat().await;
    }
    let (two, three) = (&survivors[0], &survivors[1]);
    let (on_two, on_three) = tokio::join!(
        two.gateway_token(&dave, &id),
        three.gateway_token(&dave, &id)
    );
    let sent_to = match (&on_two, &on_three) {
        (Ok(_), Err(EngineError::Elsewhere { url, .. }))
        | (Err(EngineError::Elsewhere { url, .. }), Ok(_)) => url.clone(),
        other => panic!(
            "one survivor must renew and the other send the request to it, got {:?}",
            (
                other
                    .0
                    .as_ref()
                    .map(|_| "token")
                    .map_err(ToString::to_string),
                other
                    .1
                    .as_ref()
                    .map(|_| "token")
                    .map_err(ToString::to_string)
            )
        ),
    };
    let winner = if on_two.is_ok() { "s1" } else { "s2" };
    assert!(sent_to.ends_with(winner), "{sent_to} is not {winner}");
    let renewals = two
        .audit_entries(&admin(), 1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "gateway.login_renewed")
        .count();
    assert_eq!(renewals, 1, "the login is renewed once");
    db.drop_db().await;
}
