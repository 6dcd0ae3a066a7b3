//! Drills end to end against a real PostgreSQL (a private cluster with password
//! authentication) and real HTTP alert receivers on loopback: an automated drill proves
//! alerting, acknowledgement, the approvals, the grant, a real client login, expiry, the kill
//! of the live session, the refusal of the expired access, and the rotation and re-seal of the
//! drill credential, without touching the real seal. Each injection fails or passes for the
//! right reason; a change to the procedure after a passed drill degrades readiness.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use common::admin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use breakglass_custody::{Secret, keygen};
use breakglass_domain::{DrillMode, Injection};
use breakglass_engine::ports::DrillRecord;
use breakglass_engine::{DrillRequest, Engine};
use breakglass_server::{ServerConfig, build};
use breakglass_testkit::pgcluster::{PgCluster, cluster};
use serde_json::Value;
use sqlx::Connection;

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn hook(State(r): State<Receiver>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.got.lock().unwrap().push(("hook".into(), v));
    StatusCode::OK
}

async fn pager(State(r): State<Receiver>, body: Bytes) -> (StatusCode, String) {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.got.lock().unwrap().push(("pager".into(), v));
    (
        StatusCode::ACCEPTED,
        r#"{"status":"success","message":"Event processed","dedup_key":"k"}"#.into(),
    )
}

struct Fixture {
    pg: &'static PgCluster,
    db: String,
    admin_role: String,
    admin_password: String,
    drill_url: String,
    app_role: String,
    op_role: String,
    dir: tempfile::TempDir,
    receiver: Receiver,
    engine: Engine,
}

async fn sql(pg: &PgCluster, db: &str, text: &str) {
    let mut c = pg.connect(db).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(text.to_owned()))
        .execute(&mut c)
        .await
        .unwrap();
    let _ = c.close().await;
}

/// A database with an admin role (the real sealed credential), a drill role (the drill
/// credential: may create roles and grant the procedure's role), an operator, and a server
/// whose alert channels are a webhook and a PagerDuty receiver on loopback.
async fn fixture(test: &str) -> Option<Fixture> {
    let pg = cluster(test)?;
    let db = pg.fresh_db().await;
    let sfx = db["bg_test_".len()..].to_owned();
    let admin_role = format!("bgadm_{sfx}");
    let drill_role = format!("bgdrl_{sfx}");
    let app_role = format!("app_{sfx}");
    let op_role = format!("bgop_{sfx}");
    let admin_password = format!("adm-{sfx}-initial");
    sql(
        pg,
        &db,
        &format!(
            "CREATE ROLE {admin_role} LOGIN PASSWORD '{admin_password}' CREATEROLE;
             CREATE ROLE {drill_role} LOGIN PASSWORD 'drl-{sfx}' CREATEROLE;
             CREATE ROLE {app_role} NOLOGIN;
             GRANT {app_role} TO {admin_role} WITH ADMIN OPTION;
             GRANT {app_role} TO {drill_role} WITH ADMIN OPTION;
             CREATE ROLE drillapp_{sfx} NOLOGIN;
             GRANT drillapp_{sfx} TO {drill_role} WITH ADMIN OPTION;
             CREATE ROLE {op_role} LOGIN PASSWORD 'op-{sfx}' CREATEROLE;
             GRANT pg_signal_backend TO {op_role};"
        ),
    )
    .await;
    let receiver = Receiver::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/pd", post(pager))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("targets.yaml"),
        format!(
            "connections:\n  - name: pg-main\n    kind: postgres\n    operator_url: {}\n",
            pg.url(&op_role, &format!("op-{sfx}"), &db)
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("channels.yaml"),
        format!(
            "channels:\n  - name: hook\n    kind: webhook\n    url: http://{raddr}/hook\n    secret: s3cret-for-tests\n  - name: pager\n    kind: pagerduty\n    routing_key: R0UTINGKEY0000000000000000000000\n    events_url: http://{raddr}/pd\n"
        ),
    )
    .unwrap();
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.targets_file = Some(dir.path().join("targets.yaml"));
    config.channels_file = Some(dir.path().join("channels.yaml"));
    config.engine.identity_providers = vec!["okta".into()];
    let engine = build(config).await.unwrap().state.engine.clone();
    let drill_url = pg.url(&drill_role, &format!("drl-{sfx}"), &db);
    Some(Fixture {
        pg,
        db,
        admin_role,
        admin_password,
        drill_url,
        app_role,
        op_role,
        dir,
        receiver,
        engine,
    })
}

/// A procedure over the fixture's database; `extra` is appended YAML.
fn procedure(f: &Fixture, id: &str, custodians: &[&str], quorum: u8, extra: &str) -> String {
    let mut list = String::new();
    for name in custodians {
        let (_, key) = keygen();
        list.push_str(&format!("  - name: {name}\n    key: {}\n", key.canonical()));
    }
    format!(
        "id: {id}\ntarget:\n  kind: postgres\n  details:\n    host: {}\n    port: \"{}\"\n    dbname: {}\n    admin_user: {}\n    grant_role: {}\n    connection: pg-main\n    sslmode: disable\n    inventory: postgres, {}, {}\ncustodians:\n{list}quorum: {quorum}\nmax_grant: 1h\ndrill:\n  every: 30d\n{extra}",
        f.pg.host, f.pg.port, f.db, f.admin_role, f.app_role, f.admin_role, f.op_role
    )
}

/// Applies and seals a procedure; its drill credential is a role of its own (a drill rotates
/// it, so procedures must not share one).
async fn install(f: &Fixture, id: &str, yaml: &str) {
    let sfx = &f.db["bg_test_".len()..];
    let role = format!("bgdrl_{sfx}_{id}");
    let password = format!("drl-{sfx}-{id}");
    sql(
        f.pg,
        &f.db,
        &format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}' CREATEROLE;
             GRANT {} TO {role} WITH ADMIN OPTION;",
            f.app_role
        ),
    )
    .await;
    let drill_url = f.pg.url(&role, &password, &f.db);
    install_with(f, id, yaml, &drill_url).await;
}

async fn install_with(f: &Fixture, id: &str, yaml: &str, drill_url: &str) {
    f.engine
        .apply(&admin(), &[(format!("{id}.yaml"), yaml.to_owned())])
        .await
        .unwrap();
    f.engine
        .seal(
            &admin(),
            id,
            Secret::new(f.admin_password.as_bytes().to_vec()),
        )
        .await
        .unwrap();
    f.engine
        .seal_drill(&admin(), id, Secret::new(drill_url.as_bytes().to_vec()))
        .await
        .unwrap();
}

fn request(injections: &[&str]) -> DrillRequest {
    DrillRequest {
        mode: DrillMode::Automated,
        injections: injections
            .iter()
            .map(|i| Injection::parse(i).unwrap())
            .collect(),
        grant: Some(Duration::from_millis(1500)),
        ack_within: Some(Duration::from_millis(300)),
        max_time_to_access: None,
        step_timeout: Some(Duration::from_secs(10)),
    }
}

fn check<'a>(d: &'a DrillRecord, name: &str) -> &'a Value {
    d.report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {:#}", d.report))
}

fn steps(d: &DrillRecord) -> Vec<String> {
    d.report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_owned())
        .collect()
}

async fn can_login(url: &str) -> bool {
    match sqlx::PgConnection::connect(url).await {
        Ok(c) => {
            let _ = c.close().await;
            true
        }
        Err(_) => false,
    }
}

const ALERTS: &str =
    "alert_channels: [hook]\nack_within: 5m\nescalation: [pager]\nprotects_against: [okta]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automated_drill_proves_the_whole_path_without_the_real_seal() {
    let Some(f) =
        fixture("server::drills::automated_drill_proves_the_whole_path_without_the_real_seal")
            .await
    else {
        return;
    };
    // The drill grants a role of its own (no data privileges) instead of the real grant role.
    let sfx = &f.db["bg_test_".len()..];
    let yaml = procedure(&f, "pg", &["alice", "bob", "carol"], 2, ALERTS).replace(
        "    connection: pg-main\n",
        &format!("    connection: pg-main\n    drill_grant_role: drillapp_{sfx}\n"),
    );
    install_with(&f, "pg", &yaml, &f.drill_url).await;
    // The drill credential must be its own role: the real one is refused (a drill rotates it).
    let e = f
        .engine
        .seal_drill(
            &admin(),
            "pg",
            Secret::new(f.admin_password.as_bytes().to_vec()),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("postgresql://DRILL_ROLE"), "{e}");
    let real_url = f.pg.url(&f.admin_role, &f.admin_password, &f.db);
    let e = f
        .engine
        .seal_drill(&admin(), "pg", Secret::new(real_url.as_bytes().to_vec()))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("not the procedure's admin_user"),
        "{e}"
    );
    assert!(
        !e.to_string().contains(&f.admin_password),
        "no secret in the error"
    );
    let real_seal = f.engine.procedure(&admin(), "pg").await.unwrap();
    let real_seal = real_seal.stored.seal_id.clone().unwrap();

    let d = f
        .engine
        .run_drill(&admin(), "pg", request(&[]))
        .await
        .unwrap();
    assert_eq!(d.outcome, "passed", "{:#}", d.report);
    let names = steps(&d);
    for expected in [
        "requested",
        "alert delivered",
        "acknowledged",
        "share accepted",
        "unsealed and granted",
        "revealed",
        "first login",
        "expired",
        "sessions ended",
        "live session gone",
        "login refused",
        "rotated and re-sealed",
        "re-seal verified",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "step `{expected}` in {names:?}"
        );
    }
    assert_eq!(names.iter().filter(|n| *n == "share accepted").count(), 2);
    let offsets: Vec<i64> = d.report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["offset_ms"].as_i64().unwrap())
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[0] <= w[1]),
        "timeline in order: {offsets:?}"
    );
    let tta = d.time_to_access_ms.unwrap();
    assert!(tta > 0 && tta < 5000, "time to access {tta} ms");
    assert_eq!(check(&d, "live session killed")["ok"], true);
    assert_eq!(check(&d, "access refused after expiry")["ok"], true);
    assert_eq!(check(&d, "re-sealed credential opens")["ok"], true);

    // The real seal was not touched: same seal, not tainted, the real password still works.
    let after = f.engine.procedure(&admin(), "pg").await.unwrap();
    assert_eq!(after.stored.seal_id.as_deref(), Some(real_seal.as_str()));
    assert!(after.stored.taint.is_none(), "{:?}", after.stored.taint);
    assert!(
        can_login(&f.pg.url(&f.admin_role, &f.admin_password, &f.db)).await,
        "the real admin password is unchanged"
    );
    // The drill credential was rotated: its old password no longer logs in.
    assert!(
        !can_login(&f.drill_url).await,
        "the drill credential was rotated"
    );

    // Alerts said DRILL; the drill is in the history and the audit log.
    let got = f.receiver.got.lock().unwrap().clone();
    let requested = got
        .iter()
        .find(|(_, v)| v["event"] == "break.requested")
        .expect("the webhook got the request");
    assert_eq!(requested.1["drill"], true);
    assert!(
        requested.1["title"]
            .as_str()
            .unwrap()
            .starts_with("[DRILL]")
    );
    let history = f.engine.drills(&admin(), Some("pg"), 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].id, d.id);
    let audit = f.engine.audit_entries(&admin(), 1, 10_000).await.unwrap();
    assert!(audit.iter().any(|e| e.kind == "drill.started"));
    let granted = audit
        .iter()
        .find(|e| e.kind == "break.granted" && e.payload["drill"] == d.id.as_str())
        .expect("the drill's grant");
    assert_eq!(
        granted.payload["grant"]["member_of"],
        format!("drillapp_{sfx}"),
        "the drill granted its own role, not the data role"
    );
    assert!(
        audit
            .iter()
            .any(|e| e.kind == "drill.finished" && e.payload["outcome"] == "passed")
    );

    // Readiness counts the passed drill; a change to the file makes it an untested change.
    let r = f.engine.readiness_all().await.unwrap();
    let pg = r.iter().find(|r| r.procedure == "pg").unwrap();
    let codes: Vec<&str> = pg.findings.iter().map(|x| x.code).collect();
    assert!(!codes.iter().any(|c| c.starts_with("drill.")), "{codes:?}");
    let changed = yaml.replace("max_grant: 1h", "max_grant: 30m");
    f.engine
        .apply(&admin(), &[("pg.yaml".into(), changed)])
        .await
        .unwrap();
    let r = f.engine.readiness_all().await.unwrap();
    let pg = r.iter().find(|r| r.procedure == "pg").unwrap();
    assert!(
        pg.findings
            .iter()
            .any(|x| x.code == "drill.untested_change"),
        "{:?}",
        pg.findings
    );
    assert_ne!(pg.verdict.as_str(), "ready");

    // The report renders in each format.
    let view = serde_json::json!({
        "id": d.id, "procedure": d.procedure, "mode": d.mode, "outcome": d.outcome,
        "time_to_access_ms": d.time_to_access_ms, "steps": d.report["steps"], "checks": d.report["checks"],
    });
    let html = breakglass_server::drill_report::html(&view);
    assert!(html.contains("id=\"timeline\""));
    assert!(html.contains("first login"));
    let md = breakglass_server::drill_report::markdown(&view);
    assert!(md.contains("PASSED"), "{md}");

    // No credential of the drill reached the audit log, the alerts or the report: neither the
    // drill credential nor the real admin password, plain, hex or base64.
    let mut seen = String::new();
    for e in f.engine.audit_entries(&admin(), 1, 10_000).await.unwrap() {
        seen.push_str(&e.payload.to_string());
    }
    for (_, v) in f.receiver.got.lock().unwrap().iter() {
        seen.push_str(&v.to_string());
    }
    seen.push_str(&d.report.to_string());
    seen.push_str(&html);
    seen.push_str(&md);
    assert!(seen.len() > 10_000, "scanned {} bytes", seen.len());
    for secret in [
        f.admin_password.clone(),
        format!("drl-{sfx}"),
        f.drill_url.clone(),
    ] {
        use base64::Engine as _;
        let forms = [
            secret.clone(),
            hex::encode(&secret),
            base64::engine::general_purpose::STANDARD.encode(&secret),
        ];
        for form in forms {
            assert!(
                !seen.contains(&form),
                "a drill credential leaked into an answer"
            );
        }
    }
    drop(f.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_failures_fail_or_pass_for_the_right_reason() {
    let Some(f) =
        fixture("server::drills::injected_failures_fail_or_pass_for_the_right_reason").await
    else {
        return;
    };
    install(
        &f,
        "pg",
        &procedure(&f, "pg", &["alice", "bob", "carol"], 2, ALERTS),
    )
    .await;
    let pair = procedure(&f, "pair", &["erin", "frank"], 2, ALERTS);
    install(&f, "pair", &pair).await;
    let noesc = procedure(
        &f,
        "noesc",
        &["gina", "hank"],
        2,
        "alert_channels: [hook]\n",
    );
    install(&f, "noesc", &noesc).await;
    let onidp = procedure(
        &f,
        "onidp",
        &["ivan", "judy"],
        2,
        "alert_channels: [hook]\ndependencies: [okta-sso]\nprotects_against: [okta-sso]\n",
    );
    install(&f, "onidp", &onidp).await;

    // channel-down: nobody acknowledges, the alert escalates to PagerDuty, the drill passes.
    let d = f
        .engine
        .run_drill(&admin(), "pg", request(&["channel-down:hook"]))
        .await
        .unwrap();
    assert_eq!(d.outcome, "passed", "{:#}", d.report);
    assert_eq!(check(&d, "escalated")["ok"], true);
    assert!(steps(&d).iter().any(|s| s == "escalated"));
    assert!(
        f.receiver
            .got
            .lock()
            .unwrap()
            .iter()
            .any(|(who, v)| who == "pager" && v.to_string().contains("ESCALATION")),
        "PagerDuty got the escalation"
    );
    // …and without an escalation path the same outage fails the drill.
    let d = f
        .engine
        .run_drill(&admin(), "noesc", request(&["channel-down:hook"]))
        .await
        .unwrap();
    assert_eq!(d.outcome, "failed");
    assert_eq!(check(&d, "escalated")["ok"], false);
    assert!(
        check(&d, "escalated")["reason"]
            .as_str()
            .unwrap()
            .contains("escalation")
    );

    // custodian-lost: 2-of-3 still reaches its quorum; 2-of-2 cannot.
    let d = f
        .engine
        .run_drill(&admin(), "pg", request(&["custodian-lost:alice"]))
        .await
        .unwrap();
    assert_eq!(d.outcome, "passed", "{:#}", d.report);
    assert_eq!(
        check(&d, "quorum reachable without lost custodians")["ok"],
        true
    );
    let approvers: Vec<String> = d.report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == "share accepted")
        .map(|s| s["detail"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        approvers.iter().all(|a| !a.starts_with("alice")),
        "{approvers:?}"
    );
    // The report names every custodian with their contact and whether they approved.
    let people = d.report["people"].as_array().unwrap();
    let alice = people.iter().find(|p| p["name"] == "alice").unwrap();
    assert_eq!(alice["approved"], false, "{people:?}");
    assert!(alice["contact"].is_string(), "{people:?}");
    assert!(people.iter().any(|p| p["approved"] == true), "{people:?}");
    let md = breakglass_server::drill_report::markdown(&serde_json::json!({
        "id": d.id, "procedure": d.procedure, "people": d.report["people"],
    }));
    assert!(md.contains("- Did not approve: alice "), "{md}");
    let d = f
        .engine
        .run_drill(&admin(), "pair", request(&["custodian-lost:erin"]))
        .await
        .unwrap();
    assert_eq!(d.outcome, "failed");
    let c = check(&d, "quorum reachable without lost custodians");
    assert_eq!(c["ok"], false);
    assert!(c["reason"].as_str().unwrap().contains("1 of the 2"), "{c}");

    // target-down: a clear failure naming the injected outage; nothing is left on the target.
    let d = f
        .engine
        .run_drill(&admin(), "pg", request(&["target-down"]))
        .await
        .unwrap();
    assert_eq!(d.outcome, "failed");
    let c = check(&d, "granted");
    assert_eq!(c["ok"], false);
    assert!(
        c["reason"].as_str().unwrap().contains("target is down"),
        "{c}"
    );
    let b = d.break_id.clone().unwrap();
    assert!(
        matches!(
            f.engine.break_(&admin(), &b).await.unwrap(),
            breakglass_domain::Break::Ended(_)
        ),
        "the drill closed its break"
    );

    // target-slow: the time budget is exceeded, with the reason.
    let mut slow = request(&["target-slow:2s"]);
    slow.max_time_to_access = Some(Duration::from_millis(800));
    let d = f.engine.run_drill(&admin(), "pg", slow).await.unwrap();
    assert_eq!(d.outcome, "failed");
    let c = check(&d, "granted");
    assert!(
        c["reason"]
            .as_str()
            .unwrap()
            .contains("time-to-access budget"),
        "{c}"
    );
    assert!(c["reason"].as_str().unwrap().contains("target-slow"), "{c}");

    // idp-down: a path that does not depend on the identity provider passes…
    let d = f
        .engine
        .run_drill(&admin(), "pg", request(&["idp-down"]))
        .await
        .unwrap();
    assert_eq!(d.outcome, "passed", "{:#}", d.report);
    assert_eq!(check(&d, "independent of identity providers")["ok"], true);
    // …one that depends on it fails, naming the dependency.
    let d = f
        .engine
        .run_drill(&admin(), "onidp", request(&["idp-down"]))
        .await
        .unwrap();
    assert_eq!(d.outcome, "failed");
    let c = check(&d, "independent of identity providers");
    assert!(c["reason"].as_str().unwrap().contains("okta-sso"), "{c}");

    // Injections that name nothing the procedure has are refused before anything runs.
    let e = f
        .engine
        .run_drill(&admin(), "pg", request(&["channel-down:nope"]))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("no alert or escalation channel `nope`"),
        "{e}"
    );

    // The drill role's leftovers: every ephemeral role was dropped.
    let mut c = f.pg.connect(&f.db).await;
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member \
         JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname = $1 AND r.rolname LIKE 'bg\\_%'",
    )
    .bind(&f.app_role)
    .fetch_one(&mut c)
    .await
    .unwrap();
    let _ = c.close().await;
    assert_eq!(left, 0, "no grant role left on the target");
    f.engine.settle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_run_due_drills_and_attestation_requests_once_across_restarts() {
    let Some(f) = fixture(
        "server::drills::schedules_run_due_drills_and_attestation_requests_once_across_restarts",
    )
    .await
    else {
        return;
    };
    let auto = procedure(&f, "auto", &["alice", "bob"], 2, "alert_channels: [hook]\n").replace(
        "drill:\n  every: 30d\n",
        "drill:\n  every: 30d\n  automated: true\n  cron: \"0 0 1 1 *\"\n",
    );
    install(&f, "auto", &auto).await;
    // Scheduled but without a drill credential: skipped, not failed.
    let manual = procedure(
        &f,
        "manual",
        &["carol", "dan"],
        2,
        "alert_channels: [hook]\n",
    );
    f.engine
        .apply(&admin(), &[("manual.yaml".into(), manual)])
        .await
        .unwrap();

    let started = f.engine.run_due_drills().await.unwrap();
    assert_eq!(started.len(), 1, "{started:?}");
    // Running: not started again.
    assert!(f.engine.run_due_drills().await.unwrap().is_empty());
    let mut done = None;
    for _ in 0..300 {
        let d = f.engine.drill(&admin(), &started[0]).await.unwrap();
        if d.outcome != "running" {
            done = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = done.expect("the scheduled drill finished");
    assert_eq!(d.outcome, "passed", "{:#}", d.report);
    assert_eq!(d.requested_by, "scheduler");
    assert!(
        f.engine.run_due_drills().await.unwrap().is_empty(),
        "never drilled: due at once; then not before its cron fires (next 1 January)"
    );

    // Attestation requests: every custodian of every procedure, once per interval.
    let asked = f.engine.request_due_attestations().await.unwrap();
    assert_eq!(asked, vec!["alice", "bob", "carol", "dan"]);
    assert!(
        f.engine
            .request_due_attestations()
            .await
            .unwrap()
            .is_empty()
    );
    // Deliver them: the webhook receives one request per custodian, naming the command.
    f.engine.deliver_alerts().await.unwrap();
    let got = f.receiver.got.lock().unwrap().clone();
    let requests: Vec<&Value> = got
        .iter()
        .map(|(_, v)| v)
        .filter(|v| v["event"] == "attestation.requested")
        .collect();
    assert_eq!(requests.len(), 4, "{requests:?}");
    assert!(
        requests[0]
            .to_string()
            .contains("breakglass custodian attest")
    );

    // A restart (a new server on the same data dir) neither repeats nor skips.
    let mut config = ServerConfig::new(f.dir.path().join("data"));
    config.targets_file = Some(f.dir.path().join("targets.yaml"));
    config.channels_file = Some(f.dir.path().join("channels.yaml"));
    config.engine.attestation_interval = Duration::from_secs(2);
    let restarted = build(config).await.unwrap().state.engine.clone();
    assert!(restarted.run_due_drills().await.unwrap().is_empty());
    assert!(
        restarted
            .request_due_attestations()
            .await
            .unwrap()
            .is_empty()
    );
    // Once the (shortened) interval passed, they are due again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(restarted.request_due_attestations().await.unwrap().len(), 4);
    let audit = restarted.audit_entries(&admin(), 1, 100_000).await.unwrap();
    assert_eq!(
        audit.iter().filter(|e| e.kind == "schedule.ran").count(),
        1,
        "one scheduled drill, audited"
    );
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.kind == "attestation.requested")
            .count(),
        8
    );
    f.engine.settle().await;
}
