//! The HTTP API in-process (`tower::ServiceExt::oneshot`): the authorization matrix over every
//! endpoint and role, authentication, the error format, and the OpenAPI document's coverage.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use breakglass_server::{ServerConfig, build, router};
use serde_json::{Value, json};
use tower::ServiceExt;

struct App {
    router: Router,
    tokens: Vec<(&'static str, String)>,
    _dir: tempfile::TempDir,
}

async fn app() -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let built = build(ServerConfig::new(dir.path())).await.expect("build");
    let admin = breakglass_engine::expose_token(built.bootstrap_token.as_ref().expect("bootstrap"))
        .to_owned();
    let router = router(built.state);
    let mut tokens = vec![("admin", admin.clone())];
    for role in ["requester", "custodian", "auditor"] {
        let (status, body) = call(
            &router,
            "POST",
            "/api/actors",
            Some(&admin),
            Some(json!({"name": format!("{role}-bot"), "roles": [role], "token": true})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.push((role, body["token"].as_str().expect("token").to_owned()));
    }
    App {
        router,
        tokens,
        _dir: dir,
    }
}

async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let resp = router.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Every authenticated endpoint with a body that passes parsing, and the roles allowed.
fn endpoints() -> Vec<(
    &'static str,
    &'static str,
    Option<Value>,
    &'static [&'static str],
)> {
    let files = json!({"files": [{"name": "x.yaml", "content": "id: x\n"}]});
    vec![
        (
            "GET",
            "/api/whoami",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "GET",
            "/api/procedures",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "GET",
            "/api/procedures/nope",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "POST",
            "/api/procedures/validate",
            Some(files.clone()),
            &["admin", "requester", "custodian", "auditor"],
        ),
        ("POST", "/api/procedures/apply", Some(files), &["admin"]),
        (
            "POST",
            "/api/procedures/nope/seal",
            Some(json!({"secret_b64": "c2VjcmV0"})),
            &["admin"],
        ),
        ("POST", "/api/procedures/nope/check", None, &["admin"]),
        ("GET", "/api/procedures/nope/recovery-kit", None, &["admin"]),
        (
            "POST",
            "/api/audit/import",
            Some(json!({"spool": "not a spool"})),
            &["admin"],
        ),
        ("POST", "/api/procedures/nope/discover", None, &["admin"]),
        (
            "GET",
            "/api/procedures/nope/target",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "GET",
            "/api/breaks/brk_nope/grant",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "POST",
            "/api/procedures/nope/drills",
            Some(json!({})),
            &["admin", "requester"],
        ),
        (
            "GET",
            "/api/drills",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "GET",
            "/api/drills/drl_nope",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "GET",
            "/api/drills/drl_nope/report",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "GET",
            "/api/readiness",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "GET",
            "/api/whatif",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "GET",
            "/api/attestations",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "POST",
            "/api/attestations/nope",
            Some(json!({"response": "x"})),
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "POST",
            "/api/custodians/nope/attest",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        ("GET", "/api/people", None, &["admin", "auditor"]),
        ("GET", "/api/people/nope", None, &["admin", "auditor"]),
        (
            "GET",
            "/api/procedures/nope/custody",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "POST",
            "/api/procedures/nope/custody/breaks",
            Some(json!({"reason": "r", "ticket": "t"})),
            &["admin", "requester"],
        ),
        (
            "POST",
            "/api/procedures/nope/custody/attest",
            Some(json!({"note": "n"})),
            &["admin", "custodian"],
        ),
        (
            "POST",
            "/api/procedures/nope/custody/rotated",
            Some(json!({"note": "n"})),
            &["admin", "custodian"],
        ),
        (
            "GET",
            "/api/custody/runs",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "GET",
            "/api/custody/runs/nope",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "POST",
            "/api/custody/runs/nope/steps/1",
            Some(json!({"note": "n"})),
            &["admin", "requester", "custodian"],
        ),
        (
            "POST",
            "/api/custody/runs/nope/abort",
            Some(json!({"reason": "r"})),
            &["admin", "requester", "custodian"],
        ),
        (
            "POST",
            "/api/custodians/nope/lost",
            Some(json!({"reason": "r"})),
            &["admin"],
        ),
        (
            "GET",
            "/api/totp",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        // Before `enroll`: the custodian has no enrolment yet (409), the others are refused.
        (
            "POST",
            "/api/totp/confirm",
            Some(json!({"code": "x"})),
            &["custodian"],
        ),
        ("POST", "/api/totp/enroll", None, &["custodian"]),
        // Someone else's enrolment: admins only (a custodian resets only their own).
        (
            "POST",
            "/api/totp/reset",
            Some(json!({"custodian": "nope"})),
            &["admin"],
        ),
        (
            "GET",
            "/api/actors",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "POST",
            "/api/actors",
            Some(json!({"name": "new-bot", "roles": ["auditor"], "token": true})),
            &["admin"],
        ),
        (
            "GET",
            "/api/breaks",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        (
            "POST",
            "/api/breaks",
            Some(json!({"procedure": "nope", "reason": "r", "ticket": "t"})),
            &["admin", "requester"],
        ),
        (
            "GET",
            "/api/breaks/brk_nope",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        ("GET", "/api/breaks/brk_nope/share", None, &["custodian"]),
        (
            "POST",
            "/api/breaks/brk_nope/approvals",
            Some(json!({"share": "x"})),
            &["custodian"],
        ),
        (
            "POST",
            "/api/breaks/brk_nope/reveal",
            None,
            &["admin", "requester"],
        ),
        (
            "POST",
            "/api/breaks/brk_nope/close",
            None,
            &["admin", "requester"],
        ),
        (
            "POST",
            "/api/breaks/brk_nope/token",
            None,
            &["admin", "requester"],
        ),
        ("GET", "/api/sessions", None, &["admin", "auditor"]),
        (
            "GET",
            "/api/breaks/brk_nope/sessions",
            None,
            &["admin", "auditor"],
        ),
        (
            "GET",
            "/api/breaks/brk_nope/sessions/s_nope",
            None,
            &["admin", "auditor"],
        ),
        (
            "POST",
            "/api/breaks/brk_nope/sessions/s_nope/terminate",
            Some(json!({"reason": "the session ran a statement it must not"})),
            &["admin", "requester"],
        ),
        (
            "GET",
            "/api/breaks/brk_nope/evidence",
            None,
            &["admin", "auditor"],
        ),
        ("GET", "/api/audit", None, &["admin", "auditor"]),
        ("GET", "/api/audit/verify", None, &["admin", "auditor"]),
        ("GET", "/api/audit/export", None, &["admin", "auditor"]),
        ("GET", "/api/audit/keys", None, &["admin", "auditor"]),
        ("POST", "/api/audit/rotate-key", None, &["admin"]),
        ("POST", "/api/audit/checkpoint", None, &["admin", "auditor"]),
        ("GET", "/api/audit/sinks", None, &["admin", "auditor"]),
        (
            "GET",
            "/api/channels",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
        ("POST", "/api/channels/nope/test", None, &["admin"]),
        (
            "GET",
            "/api/channels/nope/attempts",
            None,
            &["admin", "requester", "custodian", "auditor"],
        ),
    ]
}

#[tokio::test]
async fn authorization_matrix() {
    let app = app().await;
    for (method, uri, body, allowed) in endpoints() {
        let (status, resp) = call(&app.router, method, uri, None, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} without a token: {resp}"
        );
        let (status, _) = call(
            &app.router,
            method,
            uri,
            Some("bgt_not-a-real-token"),
            body.clone(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} with a bad token"
        );
        for (role, token) in &app.tokens {
            let (status, resp) = call(&app.router, method, uri, Some(token), body.clone()).await;
            if allowed.contains(role) {
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "{role} must be allowed {method} {uri}, got {status}: {resp}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role} must be refused {method} {uri}: {resp}"
                );
                assert_eq!(resp["error"]["code"], "forbidden");
                assert!(
                    resp["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("may not"),
                    "{resp}"
                );
            }
        }
    }
}

#[tokio::test]
async fn errors_are_structured_and_name_the_problem() {
    let app = app().await;
    let admin = &app.tokens[0].1;
    let (status, resp) = call(
        &app.router,
        "GET",
        "/api/procedures/nope",
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        resp,
        json!({"error": {"code": "not_found", "message": "procedure `nope` not found", "details": []}})
    );

    let bad = json!({"files": [{"name": "p.yaml", "content": "id: p\ntarget:\n  kind: secret\ncustodians: []\nquorum: 1\nmax_grant: 1m\n"}]});
    let (status, resp) = call(
        &app.router,
        "POST",
        "/api/procedures/apply",
        Some(admin),
        Some(bad),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp["error"]["code"], "invalid_procedure");
    assert_eq!(
        resp["error"]["details"][0],
        json!({"file": "p.yaml", "line": 5, "column": 9, "field": "quorum", "message": "must be at least 2 (two-person rule), got 1"})
    );

    let (status, resp) = call(
        &app.router,
        "POST",
        "/api/actors",
        Some(admin),
        Some(json!({"name": "x", "roles": ["wizard"]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown role `wizard`"),
        "{resp}"
    );

    let (status, resp) = call(
        &app.router,
        "POST",
        "/api/breaks",
        Some(admin),
        Some(json!({"procedure": "p", "colour": "red"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("colour"),
        "{resp}"
    );

    // A query parameter that does not parse: a JSON 400 naming it.
    let (status, resp) = call(
        &app.router,
        "GET",
        "/api/breaks/brk_nope/evidence?max_statements=many",
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("max_statements"),
        "{resp}"
    );

    let (status, resp) = call(
        &app.router,
        "POST",
        "/api/auth/login",
        None,
        Some(json!({"challenge_id": "chl_x", "response": "y"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown or already used challenge")
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let app = app().await;
    assert_eq!(
        call(&app.router, "GET", "/healthz", None, None).await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    assert_eq!(
        call(&app.router, "GET", "/readyz", None, None).await,
        (
            StatusCode::OK,
            json!({"status": "ready", "store": "sqlite"})
        )
    );
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let app = app().await;
    let (status, doc) = call(&app.router, "GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut routes: Vec<(String, String)> = endpoints()
        .into_iter()
        .map(|(m, u, _, _)| {
            (
                m.to_lowercase(),
                u.replace("/sessions/s_nope", "/sessions/{session}")
                    .replace("/channels/nope", "/channels/{name}")
                    .replace("/custodians/nope", "/custodians/{name}")
                    .replace("/people/nope", "/people/{name}")
                    .replace("/steps/1", "/steps/{step}")
                    .replace("/nope", "/{id}")
                    .replace("/brk_nope", "/{id}")
                    .replace("/drl_nope", "/{id}"),
            )
        })
        .collect();
    routes.extend(
        [
            ("get", "/healthz"),
            ("get", "/readyz"),
            ("get", "/api/openapi.json"),
            ("post", "/api/auth/challenge"),
            ("post", "/api/auth/login"),
            ("get", "/api/audit/pubkey"),
            ("get", "/metrics"),
            ("post", "/api/ack"),
            ("get", "/ack/{token}"),
            ("post", "/ack/{token}"),
        ]
        .map(|(m, u)| (m.to_owned(), u.to_owned())),
    );
    for (method, path) in &routes {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    // Every route the router declares has its row (in the matrix, or public above), so a
    // route added without one fails here.
    let declared = breakglass_testkit::declared_routes(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api.rs"),
    );
    assert!(declared.len() > 40, "parsed {} routes", declared.len());
    for (method, path) in &declared {
        assert!(
            routes.iter().any(|(m, p)| m == method && p == path),
            "{method} {path} is served but has no row in the authorization matrix"
        );
    }
    assert_eq!(
        declared.len(),
        routes.len(),
        "a row for a route the router does not serve"
    );
    let documented: usize = paths
        .values()
        .map(|p| p.as_object().map_or(0, |o| o.len()))
        .sum();
    assert_eq!(
        documented,
        routes.len(),
        "the document lists a route the router does not serve"
    );
}

#[tokio::test]
async fn key_sign_in_with_an_age_identity() {
    let app = app().await;
    let admin = &app.tokens[0].1;
    let (identity, public) = breakglass_custody::keygen();
    let (status, _) = call(
        &app.router,
        "POST",
        "/api/actors",
        Some(admin),
        Some(json!({"name": "erin", "roles": ["auditor"], "key": public.canonical()})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, c) = call(
        &app.router,
        "POST",
        "/api/auth/challenge",
        None,
        Some(json!({"key": public.canonical()})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["actor"], "erin");
    let identity = breakglass_custody::Identity::parse(
        breakglass_custody::ExposeSecret::expose_secret(&identity),
    )
    .expect("identity");
    let answer = breakglass_custody::decrypt_with(
        &identity,
        c["challenge"]["age_file"]
            .as_str()
            .expect("age file")
            .as_bytes(),
    )
    .expect("decrypt");
    let answer = String::from_utf8(answer.to_vec()).expect("utf8");
    // A wrong answer is refused and burns the challenge.
    let (status, _) = call(
        &app.router,
        "POST",
        "/api/auth/login",
        None,
        Some(json!({"challenge_id": c["challenge_id"], "response": "wrong"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &app.router,
        "POST",
        "/api/auth/login",
        None,
        Some(json!({"challenge_id": c["challenge_id"], "response": answer})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a challenge is single-use"
    );
    let (_, c) = call(
        &app.router,
        "POST",
        "/api/auth/challenge",
        None,
        Some(json!({"actor": "erin"})),
    )
    .await;
    let answer = breakglass_custody::decrypt_with(
        &identity,
        c["challenge"]["age_file"]
            .as_str()
            .expect("age file")
            .as_bytes(),
    )
    .expect("decrypt");
    let (status, session) = call(
        &app.router,
        "POST",
        "/api/auth/login",
        None,
        Some(json!({"challenge_id": c["challenge_id"], "response": String::from_utf8(answer.to_vec()).expect("utf8")})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let token = session["token"].as_str().expect("token");
    assert!(token.starts_with("bgs_"));
    let (status, me) = call(&app.router, "GET", "/api/whoami", Some(token), None).await;
    assert_eq!(
        (status, me),
        (
            StatusCode::OK,
            json!({"name": "erin", "roles": ["auditor"]})
        )
    );
}

#[tokio::test]
async fn key_sign_in_with_an_ssh_ed25519_key() {
    let app = app().await;
    let admin = &app.tokens[0].1;
    let key = ssh_key_pair();
    let identity = breakglass_custody::Identity::parse(&key).expect("ssh identity");
    let public = identity.public();
    let (status, _) = call(
        &app.router,
        "POST",
        "/api/actors",
        Some(admin),
        Some(json!({"name": "frank", "roles": ["auditor"], "key": public.canonical()})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, c) = call(
        &app.router,
        "POST",
        "/api/auth/challenge",
        None,
        Some(json!({"actor": "frank"})),
    )
    .await;
    assert_eq!(c["challenge"]["type"], "sign");
    let message = c["challenge"]["message"].as_str().expect("message");
    let sig = breakglass_custody::sign(
        &identity,
        c["challenge"]["namespace"].as_str().expect("ns"),
        message.as_bytes(),
    )
    .expect("sign");
    // A signature over another message is refused.
    let other =
        breakglass_custody::sign(&identity, "breakglass-login", b"something else").expect("sign");
    let (status, _) = call(
        &app.router,
        "POST",
        "/api/auth/login",
        None,
        Some(json!({"challenge_id": c["challenge_id"], "response": other})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, c) = call(
        &app.router,
        "POST",
        "/api/auth/challenge",
        None,
        Some(json!({"actor": "frank"})),
    )
    .await;
    let sig2 = breakglass_custody::sign(
        &identity,
        "breakglass-login",
        c["challenge"]["message"].as_str().expect("m").as_bytes(),
    )
    .expect("sign");
    assert_ne!(sig, sig2);
    let (status, session) = call(
        &app.router,
        "POST",
        "/api/auth/login",
        None,
        Some(json!({"challenge_id": c["challenge_id"], "response": sig2})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{session}");
}

/// An unencrypted OpenSSH ed25519 private key, generated fresh.
fn ssh_key_pair() -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("id");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path)
        .status();
    match status {
        Ok(s) if s.success() => std::fs::read_to_string(&path).expect("key"),
        _ => include_str!("../../custody/tests/vectors/bob.id_ed25519").to_owned(),
    }
}
