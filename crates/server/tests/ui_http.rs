//! The web UI over HTTP, without a browser (in-process, `tower::ServiceExt::oneshot`): the
//! pages read without JavaScript, sign-in sets a session cookie that is not the API token,
//! every form is protected (anti-forgery values, CSRF tokens bound to the session, cross-site
//! requests refused), untrusted text is escaped, security headers are set, assets are served
//! from the binary, sign-out ends the session, and the live view streams Server-Sent Events.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use breakglass_custody::{Secret, keygen};
use breakglass_domain::Role;
use breakglass_server::{ServerConfig, build, router};
use common::{admin, requester};
use futures_util::StreamExt;
use serde_json::json;
use tower::ServiceExt;

struct Ui {
    router: Router,
    admin_token: String,
    requester_token: String,
    engine: breakglass_engine::Engine,
    _dir: tempfile::TempDir,
}

async fn ui() -> Ui {
    let dir = tempfile::tempdir().unwrap();
    let built = build(ServerConfig::new(dir.path())).await.unwrap();
    let admin_token =
        breakglass_engine::expose_token(built.bootstrap_token.as_ref().unwrap()).to_owned();
    let engine = built.state.engine.clone();
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let key = keygen().1;
        custodians.push_str(&format!("  - name: {name}\n    key: {}\n", key.canonical()));
    }
    engine
        .apply(
            &admin(),
            &[(
                "vault.yaml".into(),
                format!(
                    "id: vault-root\ndescription: \"<script>alert('x')</script> root token\"\ntarget:\n  kind: secret\ncustodians:\n{custodians}quorum: 2\nmax_grant: 15m\n"
                ),
            )],
        )
        .await
        .unwrap();
    engine
        .seal(&admin(), "vault-root", Secret::new(b"pw".to_vec()))
        .await
        .unwrap();
    // A requester with a key (a revealed secret is encrypted to it) and an API token.
    let rita = engine
        .enroll(
            &admin(),
            "rita",
            &[Role::Requester],
            Some(&keygen().1.canonical()),
            "",
            true,
        )
        .await
        .unwrap();
    let requester_token = breakglass_engine::expose_token(rita.as_ref().unwrap()).to_owned();
    Ui {
        router: router(built.state),
        admin_token,
        requester_token,
        engine,
        _dir: dir,
    }
}

async fn send(router: &Router, req: Request<Body>) -> Response<Body> {
    router.clone().oneshot(req).await.unwrap()
}

async fn body_text(r: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 22).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn get(uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().uri(uri).header(header::HOST, "bg.test");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

fn post(uri: &str, cookie: Option<&str>, form: &str, origin: Option<&str>) -> Request<Body> {
    let mut b = Request::builder()
        .method("POST")
        .uri(uri)
        .header(header::HOST, "bg.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    if let Some(o) = origin {
        b = b.header(header::ORIGIN, o);
    }
    b.body(Body::from(form.to_owned())).unwrap()
}

/// The `NAME=VALUE` of a Set-Cookie header for `name`, and the whole header.
fn set_cookie(r: &Response<Body>, name: &str) -> Option<(String, String)> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().to_owned(), v.to_owned()))
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field"))
        + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// Signs in with `token`; returns the session cookie (`bg_session=…`).
async fn sign_in(u: &Ui, token: &str) -> String {
    let page = send(&u.router, get("/signin", None)).await;
    let (pre_cookie, _) = set_cookie(&page, "bg_pre").unwrap();
    let pre = hidden(&body_text(page).await, "pre");
    let r = send(
        &u.router,
        post(
            "/signin",
            Some(&pre_cookie),
            &format!("pre={pre}&token={token}&next=%2F"),
            Some("http://bg.test"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    set_cookie(&r, "bg_session").unwrap().0
}

#[tokio::test]
async fn pages_forms_and_sessions() {
    let u = ui().await;

    // Anonymous: every page sends to the sign-in page, remembering where to come back.
    let r = send(&u.router, get("/procedures/vault-root", None)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[header::LOCATION],
        "/signin?next=/procedures/vault-root"
    );

    // The sign-in page: security headers, an anti-forgery cookie matching its field.
    let page = send(&u.router, get("/signin", None)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.headers()[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(page.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let (pre_cookie, whole) = set_cookie(&page, "bg_pre").unwrap();
    assert!(
        whole.contains("HttpOnly") && whole.contains("SameSite=Strict"),
        "{whole}"
    );
    let pre = hidden(&body_text(page).await, "pre");

    // The sign-in form without its cookie, or from another site, is refused.
    let form = format!("pre={pre}&token={}", u.admin_token);
    let r = send(&u.router, post("/signin", None, &form, None)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = send(
        &u.router,
        post(
            "/signin",
            Some(&pre_cookie),
            &form,
            Some("https://evil.example"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A wrong token: the page says why, and no session is set.
    let r = send(
        &u.router,
        post(
            "/signin",
            Some(&pre_cookie),
            &format!("pre={pre}&token=bgt_nope"),
            None,
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&r, "bg_session").is_none());
    assert!(body_text(r).await.contains("invalid or expired token"));
    // `next` never leaves this site.
    let r = send(
        &u.router,
        post(
            "/signin",
            Some(&pre_cookie),
            &format!(
                "pre={pre}&token={}&next=%2F%2Fevil.example%2F",
                u.requester_token
            ),
            None,
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/");
    let (session, whole) = set_cookie(&r, "bg_session").unwrap();
    assert!(
        whole.contains("HttpOnly") && whole.contains("SameSite=Strict"),
        "{whole}"
    );
    assert!(
        session.starts_with("bg_session=bgs_"),
        "a session token, not the API token"
    );
    assert!(!whole.contains(&u.requester_token));

    // Pages read without JavaScript; untrusted text is escaped.
    let r = send(&u.router, get("/", Some(&session))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = body_text(r).await;
    assert!(html.contains("id=\"proc-vault-root\""), "{html}");
    assert!(html.contains("data-verdict=\"degraded\"") || html.contains("data-verdict=\"broken\""));
    assert!(!html.contains("<script>alert"), "descriptions are escaped");
    assert!(
        html.contains("&lt;script&gt;") || html.contains("&#60;script&#62;"),
        "{html}"
    );
    let r = send(&u.router, get("/procedures/vault-root", Some(&session))).await;
    let html = body_text(r).await;
    assert!(html.contains("<svg id=\"workflow\""));
    assert!(!html.contains("<script>alert"));
    let csrf = hidden(&html, "csrf");

    // Forms that change state: the CSRF token must be this session's, and same-origin.
    let open = |csrf: &str| format!("csrf={csrf}&reason=disk+full&ticket=INC-1&minutes=5");
    let r = send(
        &u.router,
        post(
            "/procedures/vault-root/breaks",
            Some(&session),
            &open("forged"),
            None,
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(body_text(r).await.contains("CSRF"));
    let r = send(
        &u.router,
        post(
            "/procedures/vault-root/breaks",
            Some(&session),
            &open(&csrf),
            Some("https://evil.example"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = send(
        &u.router,
        post(
            "/procedures/vault-root/breaks",
            Some(&session),
            &open(&csrf),
            Some("http://bg.test"),
        ),
    )
    .await;
    if r.status() != StatusCode::SEE_OTHER {
        panic!("{}: {}", r.status(), body_text(r).await);
    }
    let location = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with("/breaks/brk_"), "{location}");
    // A bad number names the field.
    let r = send(
        &u.router,
        post(
            "/procedures/vault-root/breaks",
            Some(&session),
            &format!("csrf={csrf}&reason=r&ticket=T&minutes=ten"),
            None,
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body_text(r).await.contains("minutes"));

    // The break page, and its live stream: the first events carry the status and timeline.
    let r = send(&u.router, get(&location, Some(&session))).await;
    let html = body_text(r).await;
    assert!(html.contains("sse-connect=\"/breaks/"), "{html}");
    assert!(html.contains("disk full"));
    let r = send(
        &u.router,
        get(&format!("{location}/events"), Some(&session)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = r.into_body().into_data_stream();
    let mut got = String::new();
    while !(got.contains("event: status") && got.contains("event: timeline")) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
            .await
            .expect("an event within 5 s")
            .expect("the stream stays open")
            .unwrap();
        got.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(got.contains("requested"), "{got}");

    // Assets come from the binary, with their types.
    let r = send(&u.router, get("/assets/htmx.min.js", None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let r = send(&u.router, get("/assets/app.css", None)).await;
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let r = send(&u.router, get("/assets/../Cargo.toml", None)).await;
    assert_ne!(r.status(), StatusCode::OK);

    // An unknown procedure is a page with the API's message, not a crash.
    let r = send(&u.router, get("/procedures/nope", Some(&session))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(body_text(r).await.contains("nope"));

    // Sign-out ends the session on the server, not only in the browser.
    let r = send(
        &u.router,
        post("/signout", Some(&session), &format!("csrf={csrf}"), None),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = send(&u.router, get("/", Some(&session))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the old session is gone");

    // The audit log records the sessions.
    let entries = u.engine.audit_entries(&admin(), 1, 1000).await.unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"session.opened") && kinds.contains(&"session.closed"));
}

#[tokio::test]
async fn an_auditor_reads_everything_and_changes_nothing() {
    let u = ui().await;
    let auditor = u
        .engine
        .enroll(&admin(), "audra", &[Role::Auditor], None, "", true)
        .await
        .unwrap();
    let token = breakglass_engine::expose_token(auditor.as_ref().unwrap()).to_owned();
    let session = sign_in(&u, &token).await;
    for path in ["/", "/procedures/vault-root", "/audit", "/inventory"] {
        let r = send(&u.router, get(path, Some(&session))).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let html = body_text(r).await;
        assert!(
            !html.contains("data-changes-state"),
            "no state-changing form on {path}"
        );
    }
    let html = body_text(send(&u.router, get("/audit", Some(&session))).await).await;
    assert!(html.contains("id=\"verify-result\""), "{html}");
    let csrf = hidden(&html, "csrf");
    let r = send(
        &u.router,
        post(
            "/procedures/vault-root/breaks",
            Some(&session),
            &format!("csrf={csrf}&reason=r&ticket=T"),
            None,
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(body_text(r).await.contains("may not open breaks"));
}

/// Every UI route with the roles allowed it; a form's fields (a CSRF token is added).
fn ui_matrix() -> Vec<(
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
)> {
    const ALL: &[&str] = &["admin", "requester", "custodian", "auditor"];
    vec![
        ("GET", "/", None, ALL),
        ("GET", "/events", None, ALL),
        ("GET", "/procedures/vault-root", None, ALL),
        (
            "POST",
            "/procedures/vault-root/breaks",
            Some("reason=r&ticket=T&minutes=1"),
            &["admin", "requester"],
        ),
        (
            "POST",
            "/procedures/vault-root/drills",
            Some("mode=automated"),
            &["admin", "requester"],
        ),
        (
            "POST",
            "/procedures/vault-root/discover",
            Some(""),
            &["admin"],
        ),
        ("GET", "/people", None, &["admin", "auditor"]),
        ("GET", "/people/alice", None, &["admin", "auditor"]),
        ("GET", "/breaks/brk_nope", None, ALL),
        ("GET", "/breaks/brk_nope/events", None, ALL),
        (
            "GET",
            "/breaks/brk_nope/sessions/brk_nope-s1",
            None,
            &["admin", "auditor"],
        ),
        (
            "GET",
            "/breaks/brk_nope/sessions/brk_nope-s1/events",
            None,
            &["admin", "auditor"],
        ),
        (
            "POST",
            "/breaks/brk_nope/sessions/brk_nope-s1/terminate",
            Some("reason=r"),
            &["admin", "requester"],
        ),
        (
            "POST",
            "/breaks/brk_nope/close",
            Some(""),
            &["admin", "requester"],
        ),
        ("GET", "/drills/drl_nope", None, ALL),
        ("GET", "/drills/drl_nope/events", None, ALL),
        ("GET", "/audit", None, &["admin", "auditor"]),
        ("GET", "/inventory", None, ALL),
    ]
}

#[tokio::test]
async fn ui_authorization_matrix() {
    let u = ui().await;
    let mut sessions = vec![
        ("admin", sign_in(&u, &u.admin_token).await),
        ("requester", sign_in(&u, &u.requester_token).await),
    ];
    for (name, role) in [("cus", Role::Custodian), ("aud", Role::Auditor)] {
        let token = u
            .engine
            .enroll(&admin(), name, &[role], None, "", true)
            .await
            .unwrap();
        let token = breakglass_engine::expose_token(token.as_ref().unwrap()).to_owned();
        sessions.push((role.as_str(), sign_in(&u, &token).await));
    }
    for (method, uri, form, allowed) in ui_matrix() {
        // Anonymous: sent to the sign-in page, nothing done.
        let req = match form {
            Some(f) => post(uri, None, f, None),
            None => get(uri, None),
        };
        let r = send(&u.router, req).await;
        assert_eq!(
            r.status(),
            StatusCode::SEE_OTHER,
            "anonymous {method} {uri}"
        );
        assert!(
            r.headers()[header::LOCATION]
                .to_str()
                .unwrap()
                .starts_with("/signin"),
            "anonymous {method} {uri}"
        );
        for (role, session) in &sessions {
            let req = match form {
                Some(f) => {
                    let page = body_text(send(&u.router, get("/", Some(session))).await).await;
                    let csrf = hidden(&page, "csrf");
                    let body = if f.is_empty() {
                        format!("csrf={csrf}")
                    } else {
                        format!("csrf={csrf}&{f}")
                    };
                    post(uri, Some(session), &body, None)
                }
                None => get(uri, Some(session)),
            };
            let r = send(&u.router, req).await;
            let status = r.status();
            if allowed.contains(role) {
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "{role} must be allowed {method} {uri}, got {status}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role} must be refused {method} {uri}"
                );
                assert!(
                    body_text(r).await.contains("may not"),
                    "{role} {method} {uri}"
                );
            }
        }
    }
    // Every route the UI declares has its row here, or is public (sign-in, assets).
    let mut rows: Vec<(String, String)> = ui_matrix()
        .into_iter()
        .map(|(m, u, _, _)| {
            (
                m.to_lowercase(),
                u.replace("/sessions/brk_nope-s1", "/sessions/{session}")
                    .replace("/people/alice", "/people/{name}")
                    .replace("/vault-root", "/{id}")
                    .replace("/brk_nope", "/{id}")
                    .replace("/drl_nope", "/{id}"),
            )
        })
        .collect();
    rows.extend(
        [
            ("get", "/signin"),
            ("post", "/signin"),
            ("post", "/signin/challenge"),
            ("post", "/signin/answer"),
            ("post", "/signout"),
            ("get", "/assets/{name}"),
        ]
        .map(|(m, p)| (m.to_owned(), p.to_owned())),
    );
    let declared = breakglass_testkit::declared_routes(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ui/mod.rs"),
    );
    for (method, path) in &declared {
        assert!(
            rows.iter().any(|(m, p)| m == method && p == path),
            "{method} {path} is served but has no row in the UI matrix"
        );
    }
    assert_eq!(
        declared.len(),
        rows.len(),
        "a row for a route the UI does not serve"
    );
}

#[tokio::test]
async fn gateway_sessions_show_on_the_break_page_to_admins_and_auditors_only() {
    let u = ui().await;
    let opened = send(
        &u.router,
        Request::builder()
            .method("POST")
            .uri("/api/breaks")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", u.requester_token),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                r#"{"procedure":"vault-root","reason":"db down","ticket":"INC-1"}"#,
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(opened.status(), StatusCode::OK);
    let b: serde_json::Value = serde_json::from_str(&body_text(opened).await).unwrap();
    let id = b["id"].as_str().unwrap().to_owned();
    // What the gateway stores and audits for a session (crates/gateway calls these).
    let statement = |seq: u64, text: &str, error: Option<&str>, refused: bool| {
        breakglass_engine::ports::StatementRecord {
            break_id: id.clone(),
            session_id: format!("{id}-s1"),
            seq,
            started_at: u.engine.now(),
            duration_us: 1500,
            protocol: "simple".into(),
            statement: text.into(),
            command: error.is_none().then(|| "SELECT 1".to_owned()),
            rows: error.is_none().then_some(1),
            error: error.map(str::to_owned),
            refused,
            params: None,
            data: None,
        }
    };
    u.engine
        .gateway_record(&breakglass_engine::ports::StatementChunk::group(&[
            statement(1, "SELECT '<script>alert(1)</script>'", None, false),
            statement(2, "DROP DATABASE app", Some("refused by the gateway"), true),
            breakglass_engine::ports::StatementRecord {
                protocol: "extended".into(),
                params: Some(vec![Some("<b>bulk</b>".into()), None]),
                ..statement(3, "UPDATE items SET v = $1 WHERE w = $2", None, false)
            },
            breakglass_engine::ports::StatementRecord {
                data: Some("1\t<i>copied</i>\n".into()),
                ..statement(4, "COPY items FROM STDIN", None, false)
            },
        ]))
        .await
        .unwrap();
    u.engine
        .gateway_session_ended(&breakglass_engine::SessionSummary {
            session_id: format!("{id}-s1"),
            break_id: id.clone(),
            peer: "127.0.0.1:5555".into(),
            statements: 4,
            refused: 1,
            end: "client".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let cookie = sign_in(&u, &u.admin_token).await;
    let page = body_text(send(&u.router, get(&format!("/breaks/{id}"), Some(&cookie))).await).await;
    assert!(page.contains("Gateway sessions"), "{page}");
    assert!(page.contains("recording matches its audit entry"), "{page}");
    assert!(page.contains("refused: refused by the gateway"), "{page}");
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            && !page.contains("<script>alert(1)"),
        "statements are escaped: {page}"
    );
    assert!(
        page.contains("$1 = &#39;&#60;b&#62;bulk&#60;/b&#62;&#39;, $2 = NULL"),
        "bound parameters are shown, escaped: {page}"
    );
    assert!(
        page.contains("1\t&#60;i&#62;copied&#60;/i&#62;"),
        "a COPY's data is shown, escaped: {page}"
    );
    // A requester sees the break but not the recording.
    let cookie = sign_in(&u, &u.requester_token).await;
    let page = body_text(send(&u.router, get(&format!("/breaks/{id}"), Some(&cookie))).await).await;
    assert!(
        page.contains(&id) && !page.contains("Gateway sessions"),
        "{page}"
    );
}

/// A long session's recording is digested at its end a page of stored chunks at a time: with
/// more chunks than one page, what the `gateway.session_ended` entry carries still matches the
/// whole recording (and stops matching once a stored statement is changed).
#[tokio::test]
async fn a_recording_of_many_chunks_is_digested_a_page_at_a_time() {
    use breakglass_engine::ports::{StatementChunk, StatementRecord};
    let u = ui().await;
    let (_, dave) = requester(&u.engine, "dave").await;
    let id = u
        .engine
        .open_break(&dave, "vault-root", "db down", "INC-2", None)
        .await
        .unwrap()
        .info
        .id
        .0;
    let session = format!("{id}-s1");
    let statement = |break_id: &str, session: &str, seq: u64, text: String| StatementRecord {
        break_id: break_id.to_owned(),
        session_id: session.to_owned(),
        seq,
        started_at: u.engine.now(),
        duration_us: 10,
        protocol: "simple".into(),
        statement: text,
        command: Some("SELECT 1".into()),
        rows: Some(1),
        error: None,
        refused: false,
        params: None,
        data: None,
    };
    // 200 chunks of 3 statements (the gateway hands a session's statements over in chunks).
    let chunks: Vec<StatementChunk> = (0..200u64)
        .map(|c| {
            let mut chunk = StatementChunk::new(&id, &session);
            for seq in c * 3 + 1..=c * 3 + 3 {
                chunk.push(&statement(&id, &session, seq, format!("SELECT {seq}")));
            }
            chunk.take().unwrap()
        })
        .collect();
    u.engine.gateway_record(&chunks).await.unwrap();
    u.engine
        .gateway_session_ended(&breakglass_engine::SessionSummary {
            session_id: session.clone(),
            break_id: id.clone(),
            peer: "127.0.0.1:5555".into(),
            statements: 600,
            end: "client".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let sessions = u
        .engine
        .recorded_sessions(&admin(), &id, None)
        .await
        .unwrap();
    let ended = sessions[0].ended.as_ref().unwrap();
    assert!(
        ended.intact,
        "the digest of 200 chunks read 16 at a time matches"
    );
    assert_eq!(ended.recorded, 600);
    // Read back a page at a time; pages of 40 start inside chunks of 3.
    let (mut seen, mut from, mut pages) = (Vec::new(), Some(0), 0);
    while let Some(seq) = from {
        let page = u
            .engine
            .session_statements(&admin(), &id, &session, seq, 40)
            .await
            .unwrap();
        assert!(page.statements.len() <= 40);
        seen.extend(page.statements.iter().map(|s| s.seq));
        from = page.next_seq;
        pages += 1;
    }
    assert_eq!(seen, (1..=600).collect::<Vec<u64>>());
    assert_eq!(pages, 15);
    let audited = u
        .engine
        .audit_about(
            &admin(),
            breakglass_engine::ports::AuditAbout::Break(&id),
            None,
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "gateway.session_ended")
        .unwrap();
    assert_eq!(audited.payload["recorded"], 600);
    // The API: each session with the first `limit` statements and where its next page
    // starts; then a page from a position; a bad parameter is a JSON error naming it.
    let api = |uri: String| {
        let mut r = get(&uri, None);
        r.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {}", u.admin_token).parse().unwrap(),
        );
        r
    };
    let r = send(&u.router, api(format!("/api/breaks/{id}/sessions?limit=7"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body_text(r).await).unwrap();
    assert_eq!(v["statements"].as_array().unwrap().len(), 7, "{v}");
    assert_eq!(v["statements"][6]["seq"], 7);
    let s = &v["sessions"][0];
    assert_eq!(
        (&s["next_seq"], &s["recorded"], &s["recording_intact"]),
        (&json!(8), &json!(600), &json!(true)),
        "{s}"
    );
    let r = send(
        &u.router,
        api(format!(
            "/api/breaks/{id}/sessions/{session}?from_seq=599&limit=5"
        )),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body_text(r).await).unwrap();
    let seqs: Vec<u64> = v["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        (seqs, &v["next_seq"]),
        (vec![599, 600], &json!(null)),
        "{v}"
    );
    let r = send(
        &u.router,
        api(format!("/api/breaks/{id}/sessions/{session}?limit=many")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = body_text(r).await;
    assert!(text.contains("limit"), "{text}");
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_ok(),
        "{text}"
    );
    // A second session: the list names one session (`session`), or those started after an
    // audit entry (`started_after`, a follower's last `started_seq`); an unknown name is 404.
    let second_session = format!("{id}-s2");
    let mut chunk = StatementChunk::new(&id, &second_session);
    chunk.push(&statement(
        &id,
        &second_session,
        1,
        "SELECT 'second'".into(),
    ));
    u.engine
        .gateway_record(&[chunk.take().unwrap()])
        .await
        .unwrap();
    u.engine
        .gateway_session_ended(&breakglass_engine::SessionSummary {
            session_id: second_session.clone(),
            break_id: id.clone(),
            peer: "127.0.0.1:5556".into(),
            statements: 1,
            end: "client".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let list = |query: String| {
        let router = u.router.clone();
        let req = api(format!("/api/breaks/{id}/sessions?limit=0&{query}"));
        async move {
            let r = send(&router, req).await;
            (r.status(), body_text(r).await)
        }
    };
    let names = |text: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["session"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = list(String::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&all), [session.clone(), second_session.clone()]);
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    let first_start = all["sessions"][0]["started_seq"].as_u64().unwrap();
    let second_start = all["sessions"][1]["started_seq"].as_u64().unwrap();
    assert!(first_start < second_start, "{all}");
    let (_, after) = list(format!("started_after={first_start}")).await;
    assert_eq!(names(&after), [second_session.as_str()]);
    let (_, none) = list(format!("started_after={second_start}")).await;
    assert!(names(&none).is_empty(), "{none}");
    let (_, one) = list(format!("session={session}")).await;
    assert_eq!(names(&one), [session.as_str()]);
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["sessions"][0]["recorded"], 600, "{one}");
    let (status, unknown) = list(format!("session={id}-s9")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
    assert!(unknown.contains(&format!("{id}-s9")), "{unknown}");
    // The break page shows the first 500 statements and links to the session's next page,
    // which shows the rest and links back to the first.
    let cookie = sign_in(&u, &u.admin_token).await;
    let page = body_text(send(&u.router, get(&format!("/breaks/{id}"), Some(&cookie))).await).await;
    assert!(page.contains("<code>SELECT 500</code>"), "{page}");
    assert!(!page.contains("<code>SELECT 501</code>"), "{page}");
    let next = format!("/breaks/{id}/sessions/{session}?from=501");
    assert!(page.contains("100 more statements"), "{page}");
    assert!(page.contains(&format!("href=\"{next}\"")), "{page}");
    let r = send(&u.router, get(&next, Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let second = body_text(r).await;
    assert!(
        second.contains("<code>SELECT 501</code>") && second.contains("<code>SELECT 600</code>"),
        "{second}"
    );
    assert!(!second.contains("<code>SELECT 500</code>"), "{second}");
    assert!(!second.contains("next page"), "the last page: {second}");
    assert!(
        second.contains("recording matches its audit entry (600 statements)")
            && second.contains(&format!("href=\"/breaks/{id}/sessions/{session}\"")),
        "{second}"
    );
    // An ended session's page is not live; its stream, asked from #598, sends the last three
    // rows, then the session's state (its recording checked) and `ended`, and stops.
    assert!(!second.contains("sse-connect"), "{second}");
    let r = send(
        &u.router,
        get(
            &format!("/breaks/{id}/sessions/{session}/events?from=598"),
            Some(&cookie),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let stream = tokio::time::timeout(std::time::Duration::from_secs(10), body_text(r))
        .await
        .expect("the stream of an ended session ends");
    let events: Vec<(&str, &str)> = stream
        .split("\n\n")
        .filter_map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: "))?;
            Some((name, e))
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["rows", "state", "ended"], "{stream}");
    let rows = events[0].1;
    assert!(
        rows.contains("<code>SELECT 598</code>") && rows.contains("<code>SELECT 600</code>"),
        "{rows}"
    );
    assert!(!rows.contains("SELECT 597"), "{rows}");
    assert!(
        events[1]
            .1
            .contains("recording matches its audit entry (600 statements)"),
        "{stream}"
    );
    let r = send(
        &u.router,
        get(
            &format!("/breaks/{id}/sessions/{id}-s9/events"),
            Some(&cookie),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Another break's session is not read through this break.
    let mut other = StatementChunk::new("brk_other", "brk_other-s1");
    other.push(&statement(
        "brk_other",
        "brk_other-s1",
        1,
        "SELECT 'not yours'".into(),
    ));
    u.engine
        .gateway_record(&[other.take().unwrap()])
        .await
        .unwrap();
    let r = send(
        &u.router,
        api(format!("/api/breaks/{id}/sessions/brk_other-s1")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(!body_text(r).await.contains("not yours"));
    let r = send(
        &u.router,
        get(
            &format!("/breaks/{id}/sessions/brk_other-s1"),
            Some(&cookie),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(!body_text(r).await.contains("not yours"));
}

/// The dashboard's open-session list is read once per interval for every viewer asking
/// within it (one event stream per admin or auditor each asks every 250 ms): callers within
/// `max_age` of a read share its list, a caller after it reads anew, and a caller who may
/// not read the audit log gets nothing, shared or not.
#[tokio::test]
async fn the_open_session_list_is_shared_between_viewers() {
    let u = ui().await;
    let long = std::time::Duration::from_secs(60);
    let first = u
        .engine
        .open_gateway_sessions_shared(&admin(), long)
        .await
        .unwrap();
    let second = u
        .engine
        .open_gateway_sessions_shared(&admin(), long)
        .await
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &second), "read twice");
    let fresh = u
        .engine
        .open_gateway_sessions_shared(&admin(), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &fresh), "not read anew");
    let denied = u
        .engine
        .open_gateway_sessions_shared(
            &breakglass_domain::Actor {
                name: "rita".into(),
                roles: vec![Role::Requester],
                key: None,
            },
            long,
        )
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("may not"), "{denied}");
}

/// A live session page keeps 1 to 5,000 rows (`?keep=`); another count is refused naming the
/// field, before anything is read.
#[tokio::test]
async fn a_live_page_keeps_a_bounded_number_of_rows() {
    let u = ui().await;
    let cookie = sign_in(&u, &u.admin_token).await;
    for keep in ["0", "5001", "-1", "many"] {
        let r = send(
            &u.router,
            get(
                &format!("/breaks/brk_00/sessions/brk_00-s1?keep={keep}"),
                Some(&cookie),
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "keep={keep}");
        let body = body_text(r).await;
        assert!(body.contains("keep"), "keep={keep}: {body}");
    }
    // A count in range goes on to look the session up.
    let r = send(
        &u.router,
        get("/breaks/brk_00/sessions/brk_00-s1?keep=5000", Some(&cookie)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
