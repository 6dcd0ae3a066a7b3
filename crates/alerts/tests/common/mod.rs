//! Shared test helpers: a sample alert and an HTTP receiver on loopback that records every
//! request and answers by path.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use breakglass_domain::Timestamp;
use breakglass_engine::ports::{Alert, Severity};

/// A break-requested alert with every field set.
pub fn alert() -> Alert {
    Alert {
        id: "bg-42".into(),
        event: "break.requested".into(),
        title: "Break requested: root-db by dave (INC-42)".into(),
        procedure: Some("root-db".into()),
        break_id: Some("brk-7".into()),
        requester: Some("dave".into()),
        reason: Some("primary is down".into()),
        ticket: Some("INC-42".into()),
        state: Some("requested".into()),
        at: Timestamp(1_795_910_341_123),
        drill: false,
        severity: Severity::Critical,
        resolve: false,
        dedup_key: "breakglass/brk-7".into(),
        ack_url: Some("/acks/tok123".into()),
        links: vec![("Break".into(), "/breaks/brk-7".into())],
        detail: serde_json::json!({"approvals_needed": 2}),
        people: vec![
            breakglass_engine::ports::OnTheHook {
                name: "alice".into(),
                contact: "alice@example.com".into(),
                role: "approver",
            },
            breakglass_engine::ports::OnTheHook {
                name: "bob".into(),
                contact: "@bob on Slack".into(),
                role: "approver",
            },
        ],
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_owned()
    }
}

/// A receiver on 127.0.0.1: `/status/<code>` answers that code and echoes the request body
/// (so tests can check secrets are scrubbed from errors), `/pd/...` answers 202 like
/// PagerDuty, anything else 200 `ok` like Slack.
pub struct Receiver {
    pub base: String,
    pub got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let app = axum::Router::new()
            .fallback(record)
            .with_state(Arc::clone(&got));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { base, got }
    }

    pub fn requests(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

async fn record(
    State(got): State<Arc<Mutex<Vec<Got>>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    got.lock().unwrap().push(Got {
        path: path.clone(),
        headers,
        body: body.to_vec(),
    });
    if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.split('/').next().unwrap().parse().unwrap();
        return (StatusCode::from_u16(code).unwrap(), body).into_response();
    }
    if path.starts_with("/pd") {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let reply = serde_json::json!({
            "status": "success",
            "message": "Event processed",
            "dedup_key": v["dedup_key"],
        });
        return (StatusCode::ACCEPTED, axum::Json(reply)).into_response();
    }
    (StatusCode::OK, "ok").into_response()
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
