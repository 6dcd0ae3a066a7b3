//! External custody through the engine and the API: a `kind: external` procedure (a cloud
//! root account's MFA token in a safe) gets a break whose human steps the people doing them
//! confirm (in order, once, by a holder, the opener or an admin; timed and audited), an alert
//! naming the holders with their contact (delivered to a real webhook receiver), the taint
//! of a use until a holder records the rotation, attestations on schedule, drills timed step
//! by step, readiness reasons, the people inventory, and the API's authorization.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Request, StatusCode, header};
use axum::routing::post;
use breakglass_domain::{Actor, Role, RunOutcome, Timestamp};
use breakglass_engine::ports::ManualClock;
use breakglass_engine::{Engine, EngineError};
use breakglass_server::{ServerConfig, build_with_clock, router};
use common::admin;
use serde_json::{Value, json};
use tower::ServiceExt;

const DAY: Duration = Duration::from_secs(86_400);

const FILE: &str = "id: aws-root
description: Root user of the AWS production organisation
target:
  kind: external
  details: {account: '123456789012'}
custody:
  location: safe B2, London office
  holders:
    - {name: erin, contact: erin@example.com}
    - {name: frank, contact: '+44 20 7946 0000'}
    - {name: grace, contact: ''}
  present: 2
  steps:
    - Two holders open safe B2 together
    - Take the MFA token and the envelope with the root password
    - Sign in to the AWS console as root
  attest_every: 30d
alert_channels: [hook]
rotation: {max_credential_age: 180d}
drill: {every: 90d, max_time_to_access: 1h}
";

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Value>>>,
}

async fn hook(State(r): State<Receiver>, body: Bytes) -> StatusCode {
    r.got
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    StatusCode::OK
}

struct World {
    engine: Engine,
    clock: Arc<ManualClock>,
    state: breakglass_server::AppState,
    admin_token: String,
    received: Receiver,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let received = Receiver::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(received.clone());
    let rl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raddr = rl.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(rl, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let channels = dir.path().join("channels.yaml");
    std::fs::write(
        &channels,
        format!(
            "channels:\n  - name: hook\n    kind: webhook\n    url: http://{raddr}/hook\n    secret: s3cret-for-tests\n"
        ),
    )
    .unwrap();
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.channels_file = Some(channels);
    let clock = Arc::new(ManualClock::new(Timestamp(1_800_000_000_000)));
    let built = build_with_clock(config, clock.clone()).await.unwrap();
    let engine = built.state.engine.clone();
    let admin_token =
        breakglass_engine::expose_token(built.bootstrap_token.as_ref().unwrap()).to_owned();
    engine
        .apply(&admin(), &[("aws-root.yaml".into(), FILE.into())])
        .await
        .unwrap();
    World {
        engine,
        clock,
        state: built.state,
        admin_token,
        received,
        _dir: dir,
    }
}

fn actor(name: &str, roles: &[Role]) -> Actor {
    Actor {
        name: name.into(),
        roles: roles.to_vec(),
        key: None,
    }
}

fn codes(r: &breakglass_domain::Readiness) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.code).collect()
}

async fn readiness(e: &Engine) -> breakglass_domain::Readiness {
    e.readiness(&admin())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.procedure == "aws-root")
        .unwrap()
}

#[tokio::test]
async fn a_break_is_human_steps_then_tainted_until_a_holder_records_the_rotation() {
    let w = world().await;
    let e = &w.engine;
    let dave = actor("dave", &[Role::Requester]);
    let erin = actor("erin", &[Role::Custodian]);
    let frank = actor("frank", &[Role::Custodian]);
    let mallory = actor("mallory", &[Role::Custodian]);

    // Nothing to seal, nothing to unseal: the sealed paths refuse with the way to go.
    let e1 = e
        .seal(
            &admin(),
            "aws-root",
            breakglass_custody::Secret::new(b"x".to_vec()),
        )
        .await
        .unwrap_err();
    assert!(e1.to_string().contains("nothing to seal"), "{e1}");
    let e2 = e
        .open_break(&dave, "aws-root", "IdP down", "INC-7", None)
        .await
        .unwrap_err();
    assert!(
        e2.to_string().contains("breakglass custody open aws-root"),
        "{e2}"
    );

    // Readiness before anything happened: never attested, rotation unknown, never drilled,
    // a holder without contact; no seal rule applies.
    let r = readiness(e).await;
    let c = codes(&r);
    for code in [
        "custody.never_attested",
        "custody.rotation_unrecorded",
        "custody.no_contact",
        "drill.never",
    ] {
        assert!(c.contains(&code), "{code} missing from {c:?}");
    }
    for code in [
        "seal.missing",
        "custodians.too_few",
        "quorum.no_spare",
        "target.unchecked",
    ] {
        assert!(!c.contains(&code), "{code} should not apply: {c:?}");
    }

    // Dave opens a break; the alert names the holders with their contact.
    let run = e
        .open_external_break(&dave, "aws-root", "IdP down, console locked", "INC-7")
        .await
        .unwrap();
    assert!(run.id.starts_with("ext_"));
    assert_eq!(run.steps.len(), 3);
    let again = e
        .open_external_break(&dave, "aws-root", "again", "INC-8")
        .await
        .unwrap_err();
    assert!(matches!(again, EngineError::Conflict(_)), "{again}");
    assert!(e.deliver_alerts().await.unwrap() >= 1);
    let got = w.received.got.lock().unwrap().clone();
    let alert = got
        .iter()
        .find(|a| a["event"] == "external.opened")
        .expect("the break alert arrived");
    let title = alert["title"].as_str().unwrap();
    assert!(
        title.contains("erin <erin@example.com>, frank <+44 20 7946 0000>, grace <no contact>"),
        "{title}"
    );
    assert!(title.contains("safe B2, London office"), "{title}");
    assert_eq!(alert["people"].as_array().unwrap().len(), 3, "{alert}");

    // Steps: out of order, unknown, by a stranger — each refused with a clear error.
    let out_of_order = e
        .confirm_external_step(&erin, &run.id, 2, "")
        .await
        .unwrap_err();
    assert!(
        out_of_order
            .to_string()
            .contains("step 2 is out of order: confirm step 1"),
        "{out_of_order}"
    );
    let unknown = e
        .confirm_external_step(&erin, &run.id, 9, "")
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("steps 1 to 3"), "{unknown}");
    let stranger = e
        .confirm_external_step(&mallory, &run.id, 1, "")
        .await
        .unwrap_err();
    assert!(matches!(stranger, EngineError::NotAllowed(_)), "{stranger}");
    let auditor = e
        .confirm_external_step(&actor("audrey", &[Role::Auditor]), &run.id, 1, "")
        .await
        .unwrap_err();
    assert!(matches!(auditor, EngineError::Denied(_)), "{auditor}");

    // The people do the steps; each is timed from the previous one.
    w.clock.advance(Duration::from_secs(300));
    e.confirm_external_step(&erin, &run.id, 1, "with frank")
        .await
        .unwrap();
    w.clock.advance(Duration::from_secs(60));
    e.confirm_external_step(&frank, &run.id, 2, "token serial 4411")
        .await
        .unwrap();
    let twice = e
        .confirm_external_step(&frank, &run.id, 2, "")
        .await
        .unwrap_err();
    assert!(
        twice.to_string().contains("already confirmed by frank"),
        "{twice}"
    );
    assert!(
        readiness(e)
            .await
            .findings
            .iter()
            .all(|f| f.code != "custody.tainted")
    );
    w.clock.advance(Duration::from_secs(120));
    let done = e
        .confirm_external_step(&dave, &run.id, 3, "")
        .await
        .unwrap();
    assert_eq!(done.outcome, RunOutcome::Completed);
    let took: Vec<u64> = done
        .timed_steps()
        .iter()
        .map(|t| t.took.unwrap().as_secs())
        .collect();
    assert_eq!(took, [300, 60, 120]);
    let who: Vec<String> = done
        .timed_steps()
        .iter()
        .map(|t| t.by.clone().unwrap())
        .collect();
    assert_eq!(who, ["erin", "frank", "dave"]);

    // Audited: who did each step, when; then the taint.
    let kinds: Vec<String> = e
        .audit_entries(&admin(), 1, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|x| x.break_id.as_deref() == Some(run.id.as_str()))
        .map(|x| format!("{} {}", x.kind, x.actor))
        .collect();
    assert_eq!(
        kinds,
        [
            "external.opened dave",
            "external.step_confirmed erin",
            "external.step_confirmed frank",
            "external.step_confirmed dave",
            "external.completed dave",
            "procedure.tainted dave",
        ]
    );
    let r = readiness(e).await;
    let tainted = r
        .findings
        .iter()
        .find(|f| f.code == "custody.tainted")
        .unwrap();
    assert!(tainted.message.contains(&run.id), "{}", tainted.message);

    // Only a holder (or an admin for one) records the rotation, with a note.
    let not_holder = e
        .record_custody_rotation(&mallory, "aws-root", None, "rotated")
        .await
        .unwrap_err();
    assert!(
        not_holder
            .to_string()
            .contains("`mallory` is not a holder of `aws-root` (holders: erin, frank, grace)"),
        "{not_holder}"
    );
    let for_other = e
        .record_custody_rotation(&erin, "aws-root", Some("frank"), "rotated")
        .await
        .unwrap_err();
    assert!(
        matches!(for_other, EngineError::NotAllowed(_)),
        "{for_other}"
    );
    let no_note = e
        .record_custody_rotation(&erin, "aws-root", None, "  ")
        .await
        .unwrap_err();
    assert!(matches!(no_note, EngineError::Invalid(_)), "{no_note}");
    let requester = e
        .record_custody_rotation(&dave, "aws-root", None, "rotated")
        .await
        .unwrap_err();
    assert!(matches!(requester, EngineError::Denied(_)), "{requester}");
    e.record_custody_rotation(&erin, "aws-root", None, "new password in envelope 4412")
        .await
        .unwrap();
    let c = codes(&readiness(e).await);
    assert!(!c.contains(&"custody.tainted"), "{c:?}");
    assert!(!c.contains(&"custody.rotation_unrecorded"), "{c:?}");

    // A second break is allowed now; stopped before any step, it taints nothing.
    let second = e
        .open_external_break(&dave, "aws-root", "false alarm", "INC-9")
        .await
        .unwrap();
    let by_other = e
        .abort_external_run(&erin, &second.id, "not mine")
        .await
        .unwrap_err();
    assert!(matches!(by_other, EngineError::NotAllowed(_)), "{by_other}");
    let stopped = e
        .abort_external_run(&dave, &second.id, "false alarm")
        .await
        .unwrap();
    assert_eq!(stopped.outcome, RunOutcome::Aborted);
    assert!(!codes(&readiness(e).await).contains(&"custody.tainted"));
    let after = e
        .confirm_external_step(&erin, &second.id, 1, "")
        .await
        .unwrap_err();
    assert!(after.to_string().contains("is aborted"), "{after}");
}

#[tokio::test]
async fn attestations_on_schedule_drills_timed_and_the_people_inventory() {
    let w = world().await;
    let e = &w.engine;
    let erin = actor("erin", &[Role::Custodian]);
    let frank = actor("frank", &[Role::Custodian]);

    // Never attested: the holders are asked through the channels, once per schedule.
    assert_eq!(
        e.request_due_custody_attestations().await.unwrap(),
        ["aws-root"]
    );
    assert!(
        e.request_due_custody_attestations()
            .await
            .unwrap()
            .is_empty(),
        "asked once per schedule"
    );
    e.deliver_alerts().await.unwrap();
    let asked = w
        .received
        .got
        .lock()
        .unwrap()
        .iter()
        .find(|a| a["event"] == "custody.attestation_requested")
        .cloned()
        .expect("the request arrived");
    assert!(
        asked["title"]
            .as_str()
            .unwrap()
            .contains("check safe B2, London office and run `breakglass custody attest aws-root` — holders: erin <erin@example.com>"),
        "{asked}"
    );

    // A non-holder cannot attest; erin can, an admin can for frank.
    let e1 = e
        .attest_custody(&actor("zed", &[Role::Custodian]), "aws-root", None, "seen")
        .await
        .unwrap_err();
    assert!(matches!(e1, EngineError::NotAllowed(_)), "{e1}");
    e.attest_custody(
        &erin,
        "aws-root",
        None,
        "token and envelope present, seal 4411 intact",
    )
    .await
    .unwrap();
    let c = codes(&readiness(e).await);
    assert!(!c.contains(&"custody.never_attested"), "{c:?}");
    assert!(!c.contains(&"custody.attestation_overdue"), "{c:?}");

    // 31 days later the attestation is overdue (the file says every 30 days).
    w.clock.advance(31 * DAY);
    let r = readiness(e).await;
    let overdue = r
        .findings
        .iter()
        .find(|f| f.code == "custody.attestation_overdue")
        .expect("overdue");
    assert!(
        overdue
            .message
            .contains("ago; the schedule is every 30days"),
        "{}",
        overdue.message
    );
    e.attest_custody(
        &admin(),
        "aws-root",
        Some("frank"),
        "checked with frank on a call",
    )
    .await
    .unwrap();
    let status = e.custody_status(&admin(), "aws-root").await.unwrap();
    assert_eq!(status.records.len(), 2);
    assert_eq!(status.records[1].recorded_by, "admin");
    assert_eq!(status.records[1].holder, "frank");
    assert!(!codes(&readiness(e).await).contains(&"custody.attestation_overdue"));

    // A drill: started, each step confirmed by its person, the report has per-step durations
    // and who did each; readiness sees a passed drill.
    let drill = e
        .start_drill(
            &actor("dave", &[Role::Requester]),
            "aws-root",
            breakglass_engine::DrillRequest::automated(),
        )
        .await
        .unwrap();
    assert_eq!(drill.mode, "external");
    assert_eq!(drill.outcome, "running");
    // A restart does not fail a drill people are doing.
    assert_eq!(e.fail_interrupted_drills().await.unwrap(), 0);
    for (i, (who, secs)) in [(&erin, 600), (&frank, 30), (&erin, 90)].iter().enumerate() {
        w.clock.advance(Duration::from_secs(*secs));
        e.confirm_external_step(who, &drill.id, i + 1, "")
            .await
            .unwrap();
    }
    let d = e.drill(&admin(), &drill.id).await.unwrap();
    assert_eq!(d.outcome, "passed", "{:?}", d.report);
    assert_eq!(d.time_to_access_ms, Some(720_000));
    let steps = d.report["steps"].as_array().unwrap();
    let per_step: Vec<(String, u64)> = steps
        .iter()
        .filter(|s| s["by"].is_string())
        .map(|s| {
            (
                s["by"].as_str().unwrap().to_owned(),
                s["took_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per_step,
        [
            ("erin".to_owned(), 600_000),
            ("frank".to_owned(), 30_000),
            ("erin".to_owned(), 90_000)
        ]
    );
    let grace = d.report["people"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "grace")
        .unwrap()
        .clone();
    assert_eq!(grace["approved"], json!(false));
    let c = codes(&readiness(e).await);
    assert!(
        !c.contains(&"drill.never") && !c.contains(&"drill.failed"),
        "{c:?}"
    );
    // A drill does not taint the credential.
    assert!(!c.contains(&"custody.tainted"), "{c:?}");

    // The people inventory: each holder holds aws-root, externally, with their attestation.
    let people = e.people(&admin()).await.unwrap();
    let erin_p = people.iter().find(|p| p.name == "erin").unwrap();
    let held = &erin_p.holdings[0];
    assert_eq!(held.procedure, "aws-root");
    assert_eq!(held.location.as_deref(), Some("safe B2, London office"));
    assert_eq!((held.quorum, held.custodians), (2, 3));
    assert!(held.attested_at.is_some());
    assert_eq!(erin_p.last_drill.as_ref().unwrap().drill, drill.id);
    let grace_p = people.iter().find(|p| p.name == "grace").unwrap();
    assert!(grace_p.holdings[0].attested_at.is_none());
    assert!(
        grace_p
            .warnings
            .iter()
            .any(|w| w.code == "person.no_contact")
    );
}

async fn call(
    w: &World,
    method: &str,
    path: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(if method == "GET" {
            Body::empty()
        } else {
            Body::from(body.to_string())
        })
        .unwrap();
    let res = router(w.state.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn token(w: &World, name: &str, role: Role) -> String {
    let token = w
        .engine
        .enroll(&admin(), name, &[role], None, "", true)
        .await
        .unwrap();
    breakglass_engine::expose_token(token.as_ref().unwrap()).to_owned()
}

#[tokio::test]
async fn the_api_runs_a_break_and_refuses_who_may_not() {
    let w = world().await;
    let admin_t = w.admin_token.clone();
    let dave = token(&w, "dave", Role::Requester).await;
    let erin = token(&w, "erin", Role::Custodian).await;
    let audrey = token(&w, "audrey", Role::Auditor).await;

    // The procedure shows its custody as external: where and who.
    let (s, p) = call(&w, "GET", "/api/procedures/aws-root", &audrey, Value::Null).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["custody"]["kind"], "external");
    assert_eq!(p["custody"]["location"], "safe B2, London office");
    assert_eq!(p["custody"]["holders"][0]["name"], "erin");
    assert_eq!(p["target"]["kind"], "external");

    // An auditor may read but not open; a requester opens.
    let body = json!({"reason": "IdP down", "ticket": "INC-1"});
    let (s, _) = call(
        &w,
        "POST",
        "/api/procedures/aws-root/custody/breaks",
        &audrey,
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, bad) = call(
        &w,
        "POST",
        "/api/procedures/aws-root/custody/breaks",
        &dave,
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    let (s, run) = call(
        &w,
        "POST",
        "/api/procedures/aws-root/custody/breaks",
        &dave,
        body,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(run["next_step"], 1);
    assert_eq!(run["steps"][0]["done"], false);

    // Steps through the API: bad number, out of order, stranger, then done.
    let (s, e) = call(
        &w,
        "POST",
        &format!("/api/custody/runs/{id}/steps/first"),
        &erin,
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, e) = call(
        &w,
        "POST",
        &format!("/api/custody/runs/{id}/steps/2"),
        &erin,
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap_or_default()
            .contains("out of order")
            || e.to_string().contains("out of order"),
        "{e}"
    );
    let (s, _) = call(
        &w,
        "POST",
        &format!("/api/custody/runs/{id}/steps/1"),
        &audrey,
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for step in 1..=3 {
        let (s, r) = call(
            &w,
            "POST",
            &format!("/api/custody/runs/{id}/steps/{step}"),
            &erin,
            json!({"note": format!("step {step} ok")}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
    let (s, r) = call(
        &w,
        "GET",
        &format!("/api/custody/runs/{id}"),
        &audrey,
        Value::Null,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["outcome"], "completed");
    assert_eq!(r["steps"][2]["by"], "erin");
    let (_, list) = call(
        &w,
        "GET",
        "/api/custody/runs?procedure=aws-root",
        &audrey,
        Value::Null,
    )
    .await;
    assert_eq!(list["runs"].as_array().unwrap().len(), 1);

    // Tainted until a holder records the rotation; a requester may not.
    let (_, st) = call(
        &w,
        "GET",
        "/api/procedures/aws-root/custody",
        &audrey,
        Value::Null,
    )
    .await;
    assert_eq!(st["tainted"], true);
    assert_eq!(st["attestation_overdue"], true, "never attested");
    let note = json!({"note": "rotated, new envelope 4412"});
    let (s, _) = call(
        &w,
        "POST",
        "/api/procedures/aws-root/custody/rotated",
        &dave,
        note.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &w,
        "POST",
        "/api/procedures/aws-root/custody/rotated",
        &erin,
        note,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, a) = call(
        &w,
        "POST",
        "/api/procedures/aws-root/custody/attest",
        &admin_t,
        json!({"holder": "nobody", "note": "x"}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{a}");
    let (s, a) = call(
        &w,
        "POST",
        "/api/procedures/aws-root/custody/attest",
        &erin,
        json!({"note": "all there"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["holder"], "erin");
    let (_, st) = call(
        &w,
        "GET",
        "/api/procedures/aws-root/custody",
        &audrey,
        Value::Null,
    )
    .await;
    assert_eq!(st["tainted"], false);
    assert_eq!(st["attestation_overdue"], false);
    assert_eq!(st["holders"][0]["attestation_overdue"], false);
    assert_eq!(st["holders"][1]["attestation_overdue"], true);

    // The people inventory shows each holder holding it, externally.
    let (_, erin_p) = call(&w, "GET", "/api/people/erin", &audrey, Value::Null).await;
    assert_eq!(erin_p["holdings"][0]["custody"], "external");
    assert_eq!(erin_p["holdings"][0]["location"], "safe B2, London office");

    // Nothing in any answer or the audit log is a secret: there is none. The run views do
    // not leak the break of another kind of procedure either: a sealed one is refused.
    let (s, _) = call(
        &w,
        "GET",
        "/api/procedures/nope/custody",
        &audrey,
        Value::Null,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
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

#[tokio::test]
async fn the_web_ui_shows_the_custody_as_external() {
    let w = world().await;
    let router = router(w.state.clone());
    let cookie = sign_in(&router, &w.admin_token).await;
    let (status, html) = page(&router, "/", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("held outside breakglass at safe B2, London office: 2 of 3 holders present"),
        "{html}"
    );
    assert!(
        !html.contains("not sealed"),
        "an external credential is never flagged unsealed"
    );
    let (status, html) = page(&router, "/procedures/aws-root", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("external: safe B2, London office"), "{html}");
    assert!(html.contains("erin &#60;erin@example.com&#62;"), "{html}");
    assert!(html.contains("breakglass custody open aws-root"), "{html}");
    assert!(!html.contains("id=\"open-break\""), "no sealed-break form");
    let (status, html) = page(&router, "/people/erin", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("external: safe B2, London office"), "{html}");
}
