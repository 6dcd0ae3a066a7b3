//! A running server ends a grant within a second of its deadline (its own expiry worker, real
//! clock), answers over a real port, and shuts down gracefully.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use common::requester;
use std::time::Duration;

use breakglass_custody::{ExposeSecret, Identity, Secret, decrypt_share, keygen};
use breakglass_domain::{Actor, Break, Role};
use breakglass_server::{ServerConfig, build, serve};

#[tokio::test]
async fn running_server_expires_grants_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let built = build(ServerConfig::new(dir.path())).await.unwrap();
    let engine = built.state.engine.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, built.state, async move {
        let _ = stopped.await;
    }));

    // Set up a procedure with three custodians and a requester, all with age keys.
    let mut ids = Vec::new();
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let (id, key) = keygen();
        ids.push(Identity::parse(id.expose_secret()).unwrap());
        custodians.push_str(&format!("  - name: {name}\n    key: {}\n", key.canonical()));
    }
    let yaml = format!(
        "id: p\ntarget:\n  kind: secret\ncustodians:\n{custodians}quorum: 2\nmax_grant: 5m\n"
    );
    let admin = Actor {
        name: "admin".into(),
        roles: vec![Role::Admin],
        key: None,
    };
    engine
        .apply(&admin, &[("p.yaml".into(), yaml)])
        .await
        .unwrap();
    let (_, dave) = requester(&engine, "dave").await;
    engine
        .seal(&admin, "p", Secret::new(b"pw".to_vec()))
        .await
        .unwrap();
    let id = engine
        .open_break(&dave, "p", "r", "t", Some(Duration::from_secs(1)))
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
    let Break::Granted(g) = engine.break_(&admin, &id).await.unwrap() else {
        panic!("not granted")
    };

    // Poll over HTTP until the worker has ended it.
    breakglass_testkit::install_tls();
    let client = reqwest::Client::new();
    let token = breakglass_engine::expose_token(built.bootstrap_token.as_ref().unwrap()).to_owned();
    let ended_at_ms = loop {
        let b: serde_json::Value = client
            .get(format!("http://{addr}/api/breaks/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if b["state"] == "expired" {
            break b["ended_at_ms"].as_i64().unwrap();
        }
        assert!(
            engine.now().since(g.deadline) < 5_000,
            "not expired 5 s after its deadline: {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let late = ended_at_ms - g.deadline.0;
    assert!(
        (0..1000).contains(&late),
        "expired {late} ms after the deadline"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("graceful shutdown")
        .unwrap()
        .unwrap();
}
