//! Custodian key attestation and readiness through the engine: custodians prove they hold
//! their keys by decrypting a challenge; a key declared lost makes a 2-of-2 procedure broken
//! and a 2-of-3 one degraded; a fresh attestation restores them; a wrong answer is refused and
//! audited; `/metrics` exports the verdicts.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use breakglass_custody::{ExposeSecret, Identity, Secret, decrypt_with, keygen};
use breakglass_domain::{Actor, Readiness, Role, Verdict};
use breakglass_engine::Engine;
use breakglass_server::{ServerConfig, build};
use common::admin;

fn verdict<'a>(all: &'a [Readiness], id: &str) -> &'a Readiness {
    all.iter().find(|r| r.procedure == id).unwrap()
}

fn codes(r: &Readiness) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.code).collect()
}

/// The server's `/metrics` page.
async fn metrics_of(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn attest(engine: &Engine, name: &str, id: &Identity) {
    let who = Actor {
        name: name.into(),
        roles: vec![Role::Custodian],
        key: None,
    };
    for c in engine.attestation_challenges(&who, name).await.unwrap() {
        let answer = decrypt_with(id, &c.age_file).unwrap();
        engine
            .attest(&who, &c.id, std::str::from_utf8(&answer).unwrap())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn attestation_and_lost_keys_drive_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let built = build(ServerConfig::new(dir.path())).await.unwrap();
    let engine = built.state.engine.clone();
    let bootstrap = built
        .bootstrap_token
        .as_ref()
        .map(|t| breakglass_engine::expose_token(t).to_owned());
    let mut ids = Vec::new();
    let mut keys = Vec::new();
    for _ in 0..3 {
        let (id, key) = keygen();
        ids.push(Identity::parse(id.expose_secret()).unwrap());
        keys.push(key.canonical());
    }
    let file = |id: &str, n: usize| {
        let mut t = format!("id: {id}\ntarget:\n  kind: secret\ncustodians:\n");
        for (name, key) in ["alice", "bob", "carol"].iter().zip(&keys).take(n) {
            t.push_str(&format!("  - name: {name}\n    key: {key}\n"));
        }
        t + "quorum: 2\nmax_grant: 15m\nrotation: {max_credential_age: 90d}\n"
    };
    engine
        .apply(
            &admin(),
            &[
                ("two.yaml".into(), file("two-of-two", 2)),
                ("three.yaml".into(), file("two-of-three", 3)),
            ],
        )
        .await
        .unwrap();
    for p in ["two-of-two", "two-of-three"] {
        engine
            .seal(&admin(), p, Secret::new(b"pw".to_vec()))
            .await
            .unwrap();
    }

    // Nobody attested yet: the quorum is unproven.
    let all = engine.readiness(&admin()).await.unwrap();
    assert!(codes(verdict(&all, "two-of-three")).contains(&"attestation.quorum_unproven"));

    for (i, name) in ["alice", "bob", "carol"].iter().enumerate() {
        attest(&engine, name, &ids[i]).await;
    }
    let records = engine.attestations(&admin()).await.unwrap();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.attested_at.is_some()));
    let all = engine.readiness(&admin()).await.unwrap();
    let three = verdict(&all, "two-of-three");
    assert!(
        !codes(three)
            .iter()
            .any(|c| c.starts_with("attestation.") || c.starts_with("custodians.lost")),
        "{:?}",
        three.findings
    );

    // bob's key is lost: 2-of-2 is broken, 2-of-3 degraded.
    engine
        .declare_key_lost(&admin(), "bob", "laptop stolen")
        .await
        .unwrap();
    let all = engine.readiness(&admin()).await.unwrap();
    let two = verdict(&all, "two-of-two");
    assert_eq!(two.verdict, Verdict::Broken, "{:?}", two.findings);
    assert_eq!(two.findings[0].code, "custodians.lost_quorum");
    let three = verdict(&all, "two-of-three");
    assert_eq!(three.verdict, Verdict::Degraded, "{:?}", three.findings);
    assert!(codes(three).contains(&"custodians.lost_spare"));

    // A wrong answer (carol's key cannot open bob's challenge) is refused and audited.
    let bob = Actor {
        name: "bob".into(),
        roles: vec![Role::Custodian],
        key: None,
    };
    let challenges = engine.attestation_challenges(&bob, "bob").await.unwrap();
    assert!(decrypt_with(&ids[2], &challenges[0].age_file).is_err());
    let err = engine
        .attest(&bob, &challenges[0].id, "guess")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("wrong"), "{err}");
    assert!(
        engine
            .attest(&bob, &challenges[0].id, "guess")
            .await
            .is_err(),
        "single use"
    );

    // bob proves he still holds it: the lost declaration is cleared.
    attest(&engine, "bob", &ids[1]).await;
    let all = engine.readiness(&admin()).await.unwrap();
    assert_ne!(verdict(&all, "two-of-two").verdict, Verdict::Broken);

    let kinds: Vec<String> = engine
        .audit_entries(&admin(), 1, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for k in [
        "custodian.attested",
        "custodian.key_lost",
        "custodian.attestation_failed",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} audited");
    }

    // What if alice is down: 2-of-2 cannot be opened, 2-of-3 can, by bob and carol.
    let answers = engine
        .what_if(&admin(), &["alice".to_owned()])
        .await
        .unwrap();
    let two = answers
        .iter()
        .find(|w| w.procedure == "two-of-two")
        .unwrap();
    assert!(!two.can_open, "{two:?}");
    assert!(two.blockers[0].contains("alice (down)"), "{two:?}");
    let three = answers
        .iter()
        .find(|w| w.procedure == "two-of-three")
        .unwrap();
    assert!(three.can_open, "{three:?}");
    assert_eq!(three.custodians, ["bob", "carol"]);

    // The verdicts are on /metrics.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(breakglass_server::serve(
        listener,
        built.state,
        async move {
            let _ = stopped.await;
        },
    ));
    breakglass_testkit::install_tls();
    let metrics = metrics_of(addr).await;
    let expected = verdict(&all, "two-of-three").verdict.as_str();
    assert!(
        metrics.contains(&format!(
            "breakglass_procedure_readiness{{procedure=\"two-of-three\",verdict=\"{expected}\"}} 1"
        )),
        "{metrics}"
    );
    // The gateway's counters are there too, as the engine counts them.
    assert!(
        metrics.contains("# TYPE breakglass_gateway_statements_total counter\nbreakglass_gateway_statements_total 0\n"),
        "{metrics}"
    );
    engine
        .gateway_counters()
        .statements
        .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
    let metrics = metrics_of(addr).await;
    assert!(
        metrics.contains("breakglass_gateway_statements_total 3\n"),
        "{metrics}"
    );
    let token = bootstrap.clone().unwrap();
    let w: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{addr}/api/whatif?down=alice%2Cops"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(w["down"], serde_json::json!(["alice", "ops"]), "{w}");
    assert_eq!(w["procedures"].as_array().unwrap().len(), 2, "{w}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
