//! Alerts end to end through the real server and real HTTP receivers on loopback: a signed
//! webhook verified the way a receiver would, receipts in the audit log, acknowledgement by the
//! link's token (single use), escalation to PagerDuty when nobody acknowledged in time, and a
//! receiver that is down for a while: every alert arrives, none lost, each under its own
//! idempotency key.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use common::{admin, requester};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use breakglass_custody::{ExposeSecret, Identity, Secret, decrypt_share, keygen};
use breakglass_domain::{Actor, Role};
use breakglass_server::{ServerConfig, build, serve};
use serde_json::Value;

const SECRET: &str = "hmac-secret-for-tests";

/// A request the receiver accepted: path, headers, body.
type Received = (String, HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
struct Receiver {
    /// (path, headers, body) of every accepted request.
    got: Arc<Mutex<Vec<Received>>>,
    down: Arc<AtomicBool>,
    refused: Arc<Mutex<u32>>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    accept(&r, "/hook", headers, body)
}

async fn pd(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let status = accept(&r, "/pd", headers, body.clone());
    let dedup = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["dedup_key"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (
        if status == StatusCode::OK {
            StatusCode::ACCEPTED
        } else {
            status
        },
        format!(r#"{{"status":"success","message":"Event processed","dedup_key":"{dedup}"}}"#),
    )
}

fn accept(r: &Receiver, path: &str, headers: HeaderMap, body: Bytes) -> StatusCode {
    if r.down.load(Ordering::SeqCst) {
        *r.refused.lock().unwrap() += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.got
        .lock()
        .unwrap()
        .push((path.to_owned(), headers, body.to_vec()));
    StatusCode::OK
}

fn is_event(body: &[u8], event: &str) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| v["event"] == event)
}

async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_arrive_are_acknowledged_escalate_and_survive_a_receiver_outage() {
    // The receivers.
    let receiver = Receiver::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/pd", post(pd))
        .with_state(receiver.clone());
    let rl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raddr = rl.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(rl, app).await.unwrap() });

    // Channels file and server.
    let dir = tempfile::tempdir().unwrap();
    let channels = dir.path().join("channels.yaml");
    std::fs::write(
        &channels,
        format!(
            "public_url: https://bg.example.test\nchannels:\n  - name: hook\n    kind: webhook\n    url: http://{raddr}/hook\n    secret: {SECRET}\n  - name: pager\n    kind: pagerduty\n    routing_key: R0UTINGKEY0000000000000000000000\n    events_url: http://{raddr}/pd\n"
        ),
    )
    .unwrap();
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.channels_file = Some(channels);
    let built = build(config).await.unwrap();
    let engine = built.state.engine.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, built.state, async move {
        let _ = stopped.await;
    }));

    // A procedure alerting `hook`, escalating to `pager` after 1 s without acknowledgement.
    let mut ids = Vec::new();
    let mut custodians = String::new();
    for (name, contact) in [
        ("alice", "alice@example.com"),
        ("bob", "@bob on Slack"),
        ("carol", ""),
    ] {
        let (id, key) = keygen();
        ids.push(Identity::parse(id.expose_secret()).unwrap());
        custodians.push_str(&format!(
            "  - name: {name}\n    contact: \"{contact}\"\n    key: {}\n",
            key.canonical()
        ));
    }
    let yaml = format!(
        "id: p\ntarget:\n  kind: secret\ncustodians:\n{custodians}quorum: 2\nmax_grant: 5m\nalert_channels: [hook]\nack_within: 1s\nescalation: [pager]\n"
    );
    let typo = yaml.replace("escalation: [pager]", "escalation: [pagr]");
    let err = engine
        .apply(&admin(), &[("p.yaml".into(), typo)])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("escalation[0]: no channel `pagr` is configured (known: hook, pager)"),
        "{err}"
    );
    engine
        .apply(&admin(), &[("p.yaml".into(), yaml)])
        .await
        .unwrap();
    let (_, dave) = requester(&engine, "dave").await;
    engine
        .seal(&admin(), "p", Secret::new(b"pw".to_vec()))
        .await
        .unwrap();

    // 1. A break: the signed webhook arrives fast, with an acknowledgement link.
    let b1 = engine
        .open_break(&dave, "p", "db down", "INC-1", None)
        .await
        .unwrap()
        .info
        .id
        .0;
    let got = receiver.got.clone();
    wait_for(
        "the break.requested webhook",
        Duration::from_secs(5),
        || {
            got.lock()
                .unwrap()
                .iter()
                .any(|(p, _, b)| p == "/hook" && is_event(b, "break.requested"))
        },
    )
    .await;
    let (_, headers, body) = got
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _, b)| p == "/hook" && is_event(b, "break.requested"))
        .cloned()
        .unwrap();
    let ts = headers["x-breakglass-timestamp"]
        .to_str()
        .unwrap()
        .to_owned();
    let sig = headers["x-breakglass-signature"]
        .to_str()
        .unwrap()
        .to_owned();
    let now_unix = i64::try_from(
        std::time::SystemTime::UNIX_EPOCH
            .elapsed()
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    breakglass_alerts::webhook::verify_signature(
        SECRET.as_bytes(),
        &ts,
        &body,
        &sig,
        now_unix,
        300,
    )
    .expect("signature verifies like a receiver would");
    let mut forged = body.clone();
    forged[10] ^= 1;
    assert!(
        breakglass_alerts::webhook::verify_signature(
            SECRET.as_bytes(),
            &ts,
            &forged,
            &sig,
            now_unix,
            300
        )
        .is_err()
    );
    let alert: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(alert["event"], "break.requested");
    assert_eq!(alert["procedure"], "p");
    assert_eq!(alert["break_id"], b1.as_str());
    let ack_url = alert["ack_url"].as_str().expect("ack link").to_owned();
    assert!(
        ack_url.starts_with("https://bg.example.test/ack/"),
        "{ack_url}"
    );
    assert_eq!(headers["idempotency-key"], alert["id"].as_str().unwrap());
    // Who must approve, with their contact: in the message and in the structured payload.
    assert!(
        alert["title"].as_str().unwrap().ends_with(
            " — approvers: alice <alice@example.com>, bob <@bob on Slack>, carol <no contact>"
        ),
        "{alert}"
    );
    assert_eq!(
        alert["people"],
        serde_json::json!([
            {"name": "alice", "contact": "alice@example.com", "role": "approver"},
            {"name": "bob", "contact": "@bob on Slack", "role": "approver"},
            {"name": "carol", "contact": "", "role": "approver"},
        ])
    );

    // The receipt is in the audit log, with its latency.
    let receipts = || async {
        engine
            .audit_entries(&admin(), 1, 5000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "alert.delivered")
            .collect::<Vec<_>>()
    };
    let start = Instant::now();
    while receipts().await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = &receipts().await[0];
    assert_eq!(r.payload["channel"], "hook");
    assert_eq!(r.payload["status"], "HTTP 200");
    assert!(r.payload["latency_ms"].as_i64().is_some());

    // 2. Nobody acknowledges within 1 s: PagerDuty is triggered with a stable dedup key.
    wait_for(
        "the escalation to PagerDuty",
        Duration::from_secs(6),
        || got.lock().unwrap().iter().any(|(p, _, _)| p == "/pd"),
    )
    .await;
    let (_, _, pd_body) = got
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _, _)| p == "/pd")
        .cloned()
        .unwrap();
    let event: Value = serde_json::from_slice(&pd_body).unwrap();
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["dedup_key"], format!("breakglass-{b1}"));
    assert!(
        event["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("ESCALATION"),
        "{event}"
    );
    assert!(
        event["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("approvers: alice <alice@example.com>"),
        "{event}"
    );
    assert_eq!(
        event["payload"]["custom_details"]["people"][1]["contact"],
        "@bob on Slack"
    );

    // 3. Acknowledge with the link's token: once.
    let token = ack_url.rsplit('/').next().unwrap();
    let a = engine.acknowledge(token, "oncall-erin").await.unwrap();
    assert_eq!(a.break_id, b1);
    assert!(a.time_to_ack_ms >= 1000);
    let err = engine.acknowledge(token, "mallory").await.unwrap_err();
    assert!(err.to_string().contains("already acknowledged"), "{err}");
    assert!(
        engine
            .acknowledge(&format!("{b1}.{}", "0".repeat(64)), "x")
            .await
            .is_err(),
        "forged token"
    );

    // 4. The receiver goes down: breaks proceed; alerts wait; attempts are recorded.
    receiver.down.store(true, Ordering::SeqCst);
    let before = got
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _, _)| p == "/hook")
        .count();
    let b2 = engine
        .open_break(&dave, "p", "second", "INC-2", None)
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
        let share = engine.share_for(&c, &b2).await.unwrap();
        engine
            .approve(
                &c,
                &b2,
                &decrypt_share(&share.age_file, &ids[i]).unwrap().encode(),
            )
            .await
            .unwrap();
    }
    let refused = receiver.refused.clone();
    wait_for("a refused delivery", Duration::from_secs(5), || {
        *refused.lock().unwrap() > 0
    })
    .await;
    let attempts = engine
        .delivery_attempts(&admin(), Some("hook"), 100)
        .await
        .unwrap();
    assert!(
        attempts.iter().any(|a| !a.ok && a.status == "unavailable"),
        "{attempts:?}"
    );
    receiver.down.store(false, Ordering::SeqCst);

    // Back up: requested, 2 shares accepted, granted — 4 alerts for b2, each exactly once.
    wait_for("the backlog", Duration::from_secs(20), || {
        got.lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == "/hook")
            .count()
            >= before + 4
    })
    .await;
    let hook_alerts: Vec<Value> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _, _)| p == "/hook")
        .map(|(_, _, b)| serde_json::from_slice(b).unwrap())
        .collect();
    let b2_events: Vec<&str> = hook_alerts
        .iter()
        .filter(|a| a["break_id"] == b2.as_str())
        .map(|a| a["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        b2_events,
        [
            "break.requested",
            "share.accepted",
            "share.accepted",
            "break.granted"
        ],
        "in order, none lost"
    );
    let mut alert_ids: Vec<&str> = hook_alerts
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let n = alert_ids.len();
    alert_ids.sort();
    alert_ids.dedup();
    assert_eq!(alert_ids.len(), n, "no duplicate deliveries");
    // The receipt (and the outbox mark) commit just after the receiver answered.
    let start = Instant::now();
    loop {
        let lag = engine.outbox_lag().await.unwrap();
        if lag
            .iter()
            .all(|l| !l.destination.starts_with("channel:hook") || l.pending == 0)
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{lag:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// An audit sink that is down longer than the threshold alerts the system channels once, and
/// again when it catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_audit_sink_alerts_the_system_channels() {
    let receiver = Receiver::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(receiver.clone());
    let rl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raddr = rl.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(rl, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let channels = dir.path().join("channels.yaml");
    std::fs::write(&channels, format!("channels:\n  - name: ops\n    kind: webhook\n    url: http://{raddr}/hook\n    secret: {SECRET}\n")).unwrap();
    let sink_dir = dir.path().join("sink");
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.channels_file = Some(channels);
    config.sinks = vec![format!("file=file://{}/audit.jsonl", sink_dir.display())];
    config.engine.system_channels = vec!["ops".into()];
    config.engine.sink_lag_alert_after = Duration::from_millis(300);
    let built = build(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, built.state, async move {
        let _ = stopped.await;
    }));

    let got = receiver.got.clone();
    let events = move || -> Vec<String> {
        got.lock()
            .unwrap()
            .iter()
            .filter_map(|(_, _, b)| serde_json::from_slice::<Value>(b).ok())
            .map(|v| v["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let e1 = events.clone();
    wait_for("audit.sink_lagging", Duration::from_secs(10), move || {
        e1().contains(&"audit.sink_lagging".to_owned())
    })
    .await;
    std::fs::create_dir_all(&sink_dir).unwrap();
    let e2 = events.clone();
    wait_for("audit.sink_recovered", Duration::from_secs(20), move || {
        e2().contains(&"audit.sink_recovered".to_owned())
    })
    .await;
    assert_eq!(
        events()
            .iter()
            .filter(|e| *e == "audit.sink_lagging")
            .count(),
        1,
        "one alert per episode"
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
