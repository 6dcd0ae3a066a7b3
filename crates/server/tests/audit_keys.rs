//! The audit signing key: created at first start (0600), announced in the log, used for
//! checkpoints, rotated with the old key's endorsement, pinned by verifiers, and refused when
//! the key file is swapped for another key.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use breakglass_audit::{AuditKey, Finding, SinkRecord, verify_records};
use breakglass_domain::Role;
use breakglass_engine::ChainVerdict;
use breakglass_server::{ServerConfig, build, router};
use common::admin;
use serde_json::Value;
use tower::ServiceExt;

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn key_lifecycle_checkpoints_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let built = build(ServerConfig::new(dir.path())).await.unwrap();
    let engine = built.state.engine.clone();
    let token = breakglass_engine::expose_token(built.bootstrap_token.as_ref().unwrap()).to_owned();
    let app = router(built.state);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("audit.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "audit.key mode {mode:o}");
    }
    let (status, pk) = call(&app, "GET", "/api/audit/pubkey", None).await;
    assert_eq!(status, StatusCode::OK);
    let first_key = pk["public_key"].as_str().unwrap().to_owned();
    assert!(first_key.starts_with("ed25519:"));
    let first = engine.audit_entries(&admin(), 1, 1).await.unwrap();
    assert_eq!(first[0].kind, "audit.key_created");

    for i in 0..5 {
        engine
            .enroll(
                &admin(),
                &format!("bot{i}"),
                &[Role::Auditor],
                None,
                "",
                true,
            )
            .await
            .unwrap();
    }
    let (status, cp) = call(&app, "POST", "/api/audit/checkpoint", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{cp}");
    assert!(cp["checkpoint_seq"].as_u64().is_some());
    let (_, again) = call(&app, "POST", "/api/audit/checkpoint", Some(&token)).await;
    assert_eq!(
        again["checkpoint_seq"],
        Value::Null,
        "no new entries, no new checkpoint"
    );

    let (status, rotated) = call(&app, "POST", "/api/audit/rotate-key", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let (_, pk2) = call(&app, "GET", "/api/audit/pubkey", None).await;
    assert_ne!(pk2["public_key"], first_key.as_str());
    assert_eq!(pk2["key_id"], rotated["new_key_id"]);
    let (_, keys) = call(&app, "GET", "/api/audit/keys", Some(&token)).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);

    let (_, v) = call(&app, "GET", "/api/audit/verify", Some(&token)).await;
    assert_eq!(v["intact"], true, "{v}");
    // One checkpoint by the old key (covering the rotation's predecessor), one by the new.
    assert_eq!(v["checkpoints"], 2, "{v}");
    assert_eq!(v["latest_checkpoint"], v["head"]["seq"], "{v}");

    // Offline: an export verifies with either key pinned, and not with a stranger's.
    let records = engine.audit_records(&admin()).await.unwrap();
    let old: breakglass_audit::AuditPublicKey = first_key.parse().unwrap();
    verify_records(&records, Some(&old)).unwrap();
    let stranger = AuditKey::from_seed([42; 32]).public();
    assert!(matches!(
        verify_records(&records, Some(&stranger)),
        Err(Finding::UntrustedKey { .. })
    ));
    assert!(
        records
            .iter()
            .any(|r| matches!(r, SinkRecord::Checkpoint(c) if c.checkpoint.key_id == old.key_id()))
    );

    // A restart adopts the rotated key from the data dir.
    drop(app);
    drop(engine);
    let built = build(ServerConfig::new(dir.path())).await.unwrap();
    assert_eq!(
        built.state.engine.audit_public_key().unwrap().to_string(),
        pk2["public_key"].as_str().unwrap()
    );
    let ChainVerdict::Intact(_) = built.state.engine.verify_audit(&admin()).await.unwrap() else {
        panic!("broken after restart")
    };
    drop(built);

    // A key file swapped for another key is refused: it is not this log's signer.
    std::fs::write(
        dir.path().join("audit.key"),
        AuditKey::from_seed([7; 32]).expose_file_text().as_bytes(),
    )
    .unwrap();
    let err = build(ServerConfig::new(dir.path()))
        .await
        .err()
        .expect("swapped key must be refused");
    assert!(
        format!("{err:#}").contains("is not this log's current key"),
        "{err:#}"
    );
}
