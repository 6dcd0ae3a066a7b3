//! Who is on the hook: the people inventory through the engine (criticality over several
//! procedures and quorums, a contact that differs between procedures, an overdue
//! attestation, a lost key), the API's authorization (admin and auditor read; a custodian or
//! requester token is refused) and the `/people` pages of the web UI.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use breakglass_custody::{ExposeSecret, Identity, Secret, decrypt_with, keygen};
use breakglass_domain::{Actor, Role, Timestamp};
use breakglass_engine::Engine;
use breakglass_engine::ports::ManualClock;
use breakglass_server::{ServerConfig, build_with_clock, router};
use common::admin;
use serde_json::Value;
use tower::ServiceExt;

const DAY: Duration = Duration::from_secs(86_400);

struct World {
    engine: Engine,
    clock: Arc<ManualClock>,
    ids: Vec<Identity>,
    state: breakglass_server::AppState,
    admin_token: String,
    _dir: tempfile::TempDir,
}

/// Three procedures: `db` 2-of-2 (alice, bob), `vault` 2-of-3 (alice, bob, carol), `dns`
/// 2-of-3 (bob, carol, dave). Bob's contact differs between `db` and `vault`; no file gives
/// dave's.
async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(1_800_000_000_000)));
    let built = build_with_clock(ServerConfig::new(dir.path()), clock.clone())
        .await
        .unwrap();
    let engine = built.state.engine.clone();
    let admin_token =
        breakglass_engine::expose_token(built.bootstrap_token.as_ref().unwrap()).to_owned();
    let mut ids = Vec::new();
    let mut keys = Vec::new();
    for _ in 0..4 {
        let (id, key) = keygen();
        ids.push(Identity::parse(id.expose_secret()).unwrap());
        keys.push(key.canonical());
    }
    let custodian = |i: usize, contact: &str| {
        let name = ["alice", "bob", "carol", "dave"][i];
        format!(
            "  - name: {name}\n    contact: \"{contact}\"\n    key: {}\n",
            keys[i]
        )
    };
    let file = |id: &str, quorum: u8, custodians: String| {
        format!(
            "id: {id}\ntarget:\n  kind: secret\ncustodians:\n{custodians}quorum: {quorum}\nmax_grant: 15m\n"
        )
    };
    engine
        .apply(
            &admin(),
            &[
                (
                    "db.yaml".into(),
                    file(
                        "db",
                        2,
                        custodian(0, "alice@example.com") + &custodian(1, "bob@example.com"),
                    ),
                ),
                (
                    "vault.yaml".into(),
                    file(
                        "vault",
                        2,
                        custodian(0, "alice@example.com")
                            + &custodian(1, "@bob on Slack")
                            + &custodian(2, "+1 555 0100"),
                    ),
                ),
                (
                    "dns.yaml".into(),
                    file(
                        "dns",
                        2,
                        custodian(1, "bob@example.com")
                            + &custodian(2, "+1 555 0100")
                            + &custodian(3, ""),
                    ),
                ),
            ],
        )
        .await
        .unwrap();
    engine
        .seal(&admin(), "db", Secret::new(b"pw".to_vec()))
        .await
        .unwrap();
    World {
        engine,
        clock,
        ids,
        state: built.state,
        admin_token,
        _dir: dir,
    }
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

fn codes(p: &breakglass_domain::Person) -> Vec<&'static str> {
    p.warnings.iter().map(|w| w.code).collect()
}

#[tokio::test]
async fn inventory_criticality_contacts_attestations() {
    let w = world().await;
    let e = &w.engine;

    // Alice attests now; 40 days later (the default maximum age is 30 days) she is overdue,
    // and carol, who attests on day 39, is not.
    attest(e, "alice", &w.ids[0]).await;
    w.clock.advance(39 * DAY);
    attest(e, "carol", &w.ids[2]).await;
    w.clock.advance(DAY);

    let people = e.people(&admin()).await.unwrap();
    let names: Vec<&str> = people.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol", "dave"]);
    let (alice, bob, carol, dave) = (&people[0], &people[1], &people[2], &people[3]);

    // Criticality: without alice, db (2-of-2) cannot reach its quorum; vault (2-of-3) can.
    assert_eq!(alice.critical(), ["db"]);
    assert!(alice.single_point_of_failure());
    let db = alice.holdings.iter().find(|h| h.procedure == "db").unwrap();
    assert!(db.seal_id.is_some(), "db is sealed");
    assert_eq!((db.quorum, db.custodians, db.others_available), (2, 2, 1));
    let vault = alice
        .holdings
        .iter()
        .find(|h| h.procedure == "vault")
        .unwrap();
    assert!(vault.reachable_without && vault.seal_id.is_none());
    // Bob is critical to db only: dns (2-of-3) has carol and dave.
    assert_eq!(bob.critical(), ["db"]);
    assert_eq!(bob.holdings.len(), 3);
    assert!(!carol.single_point_of_failure());
    assert!(!dave.single_point_of_failure());
    assert!(codes(dave).contains(&"person.no_contact"));
    assert_eq!(dave.contact(), "no contact");

    // Keys: one key for every procedure of a person, with its kind.
    assert_eq!(alice.keys.len(), 1);
    assert_eq!(alice.keys[0].procedures, ["db", "vault"]);
    assert_eq!(alice.keys[0].kind, "age X25519");
    assert!(alice.keys[0].overdue, "attested 40 days ago");
    assert!(codes(alice).contains(&"person.attestation_overdue"));
    assert!(!carol.keys[0].overdue);
    assert!(bob.keys[0].overdue, "never attested");

    // Contacts: bob's differs between db/dns and vault.
    assert!(codes(bob).contains(&"person.contact_mismatch"), "{bob:?}");
    assert_eq!(bob.contact(), "bob@example.com / @bob on Slack");
    assert!(!codes(alice).contains(&"person.contact_mismatch"));
    assert_eq!(alice.contact(), "alice@example.com");

    // Bob's key is lost: alice becomes critical to db and vault, carol to dns and vault,
    // dave to dns.
    e.declare_key_lost(&admin(), "bob", "laptop stolen")
        .await
        .unwrap();
    let people = e.people(&admin()).await.unwrap();
    assert_eq!(people[0].critical(), ["db", "vault"]);
    assert_eq!(people[2].critical(), ["dns", "vault"]);
    assert_eq!(people[3].critical(), ["dns"]);
    let bob = e.person(&admin(), "bob").await.unwrap();
    assert!(codes(&bob).contains(&"person.key_lost"));
    assert_eq!(bob.keys[0].lost_reason.as_deref(), Some("laptop stolen"));

    // Unknown person; custodians and requesters may not read the inventory.
    let err = e.person(&admin(), "mallory").await.unwrap_err();
    assert!(err.to_string().contains("mallory"), "{err}");
    for role in [Role::Custodian, Role::Requester] {
        let who = Actor {
            name: "alice".into(),
            roles: vec![role],
            key: None,
        };
        assert!(e.people(&who).await.is_err(), "{role} refused");
    }
    let auditor = Actor {
        name: "audrey".into(),
        roles: vec![Role::Auditor],
        key: None,
    };
    assert_eq!(e.people(&auditor).await.unwrap().len(), 4);
}

async fn call(router: &axum::Router, uri: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut b = Request::builder().uri(uri).header(header::HOST, "bg.test");
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let r = router
        .clone()
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 22).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn token_for(engine: &Engine, name: &str, role: Role) -> String {
    let t = engine
        .enroll(
            &admin(),
            name,
            &[role],
            Some(&keygen().1.canonical()),
            "",
            true,
        )
        .await
        .unwrap();
    breakglass_engine::expose_token(t.as_ref().unwrap()).to_owned()
}

#[tokio::test]
async fn api_authorization_and_ui_pages() {
    let w = world().await;
    let auditor = token_for(&w.engine, "audrey", Role::Auditor).await;
    let requester = token_for(&w.engine, "rita", Role::Requester).await;
    let custodian = token_for(&w.engine, "carl", Role::Custodian).await;
    let router = router(w.state.clone());

    // Admin and auditor read; a requester or custodian token is refused; no token is 401.
    for token in [&w.admin_token, &auditor] {
        let (status, body) = call(&router, "/api/people", Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let people = v["people"].as_array().unwrap();
        assert_eq!(people.len(), 4);
        assert_eq!(people[0]["name"], "alice");
        assert_eq!(people[0]["single_point_of_failure"], true);
        assert_eq!(people[0]["critical_for"], serde_json::json!(["db"]));
        assert_eq!(people[0]["contact"], "alice@example.com");
        assert_eq!(people[0]["keys"][0]["kind"], "age X25519");
    }
    for token in [&requester, &custodian] {
        for uri in ["/api/people", "/api/people/alice"] {
            let (status, body) = call(&router, uri, Some(token)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {body}");
            assert!(body.contains("people inventory"), "{body}");
        }
    }
    let (status, _) = call(&router, "/api/people", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = call(&router, "/api/people/bob", Some(&auditor)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bob: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(bob["holdings"].as_array().unwrap().len(), 3);
    assert!(
        bob["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "person.contact_mismatch"),
        "{bob}"
    );
    let (status, body) = call(&router, "/api/people/nobody", Some(&auditor)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("nobody"), "{body}");

    // The web UI: signed in with the admin's token (a session cookie), /people lists the
    // people with the single point of failure marked, and the per-person page shows one.
    let cookie = sign_in(&router, &w.admin_token).await;
    let (status, html) = page(&router, "/people", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("href=\"/people\""),
        "linked from the navigation"
    );
    for name in ["alice", "bob", "carol", "dave"] {
        assert!(
            html.contains(&format!("href=\"/people/{name}\"")),
            "{name} listed"
        );
    }
    assert!(html.contains("single point of failure"), "{html}");
    assert!(html.contains("alice@example.com"));
    assert!(html.contains("bob@example.com / @bob on Slack"));
    let (status, html) = page(&router, "/people/alice", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("id=\"spof\""), "{html}");
    assert!(html.contains("quorum lost"), "{html}");
    assert!(html.contains("age X25519"));
    // A requester signed in to the UI sees no People link, and the page is refused.
    let cookie = sign_in(&router, &requester).await;
    let (status, html) = page(&router, "/", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("href=\"/people\""), "no People link");
    let (status, _) = page(&router, "/people", &cookie).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn page(router: &axum::Router, uri: &str, cookie: &str) -> (StatusCode, String) {
    let r = router
        .clone()
        .oneshot(
            Request::builder()
                .uri(uri)
                .header(header::HOST, "bg.test")
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 22).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// The value of `name`'s Set-Cookie header (`NAME=VALUE`).
fn cookie_of(r: &axum::http::Response<Body>, name: &str) -> String {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap()
}

/// Signs in to the UI with an API token, as the sign-in form does; returns the session cookie.
async fn sign_in(router: &axum::Router, token: &str) -> String {
    let r = router
        .clone()
        .oneshot(
            Request::builder()
                .uri("/signin")
                .header(header::HOST, "bg.test")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let pre_cookie = cookie_of(&r, "bg_pre");
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 22).await.unwrap();
    let html = String::from_utf8(bytes.to_vec()).unwrap();
    let marker = "name=\"pre\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    let pre = &html[start..start + html[start..].find('"').unwrap()];
    let r = router
        .clone()
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/signin")
                .header(header::HOST, "bg.test")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, pre_cookie)
                .header(header::ORIGIN, "http://bg.test")
                .body(Body::from(format!("pre={pre}&token={token}&next=%2F")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    cookie_of(&r, "bg_session")
}
