//! Alert latency: from the commit of a `break.requested` event to a local webhook receiver
//! getting that break's alert, through the real server (SQLite, the channels file, `serve` with
//! its alert worker), against a plain HTTP POST of the same body to the same receiver.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use breakglass_custody::{Secret, keygen};
use breakglass_domain::{Actor, Role};
use breakglass_engine::{ChainVerdict, Engine};
use breakglass_server::{ServerConfig, build, serve};
use serde_json::Value;
use tokio::sync::mpsc;

/// The procedure every break is opened on.
const PROCEDURE: &str = "bench-alerts";

/// The one alert channel, a signed webhook to the receiver.
const CHANNEL: &str = "bench-hook";

/// How long one alert (or baseline request) may take before it is counted as missing.
const WAIT: Duration = Duration::from_secs(10);

/// How long to keep listening after the last break for late duplicates: longer than the alert
/// worker's 250 ms tick, so a redelivery due to a retry would be seen.
const DRAIN: Duration = Duration::from_millis(1500);

/// What the bench asks of this run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Measured breaks (and baseline requests).
    pub(crate) events: usize,
    /// Untimed warm-up breaks (and baseline requests) before them.
    pub(crate) warmup: usize,
}

/// Figures of the alert run.
#[derive(Debug, Clone)]
pub(crate) struct AlertFigures {
    /// Commit (`open_break` returned) → the receiver has the break's alert, per measured break.
    pub(crate) alert: Vec<Duration>,
    /// `send` of a plain POST of the same body → the receiver has it, per measured request.
    pub(crate) baseline: Vec<Duration>,
    /// Mean body size of the measured alerts, in bytes.
    pub(crate) alert_bytes: f64,
    /// Mean body size of the measured baseline requests, in bytes.
    pub(crate) baseline_bytes: f64,
    /// Breaks opened (warm-ups included): each should have exactly one alert.
    pub(crate) breaks_opened: usize,
    /// Breaks whose `break.requested` alert arrived exactly once.
    pub(crate) exactly_once: usize,
    /// Breaks whose alert never arrived (within `WAIT`, or in the drain after the run).
    pub(crate) missing: usize,
    /// Alerts beyond the first for a break (redeliveries).
    pub(crate) duplicates: usize,
    /// Distinct alert ids (`bg-<outbox id>`) among the `break.requested` alerts received.
    pub(crate) distinct_ids: usize,
    /// Other requests the receiver got (alerts of other events, or for no opened break), by
    /// event.
    pub(crate) unexpected: BTreeMap<String, usize>,
    /// Alerts that reached the receiver before `open_break` had returned (counted as 0 ms).
    pub(crate) early: usize,
    /// `alert.delivered` receipts in the audit log, once the server stopped.
    pub(crate) receipts: usize,
    /// The engine's own `commit_to_receipt_ms` of the measured breaks' receipts (context: it
    /// runs to the receipt's commit, on the wall clock, in whole milliseconds).
    pub(crate) commit_to_receipt: Vec<Duration>,
    /// Audit entries at the end (the chain verified).
    pub(crate) audit_entries: u64,
}

/// One request as the receiver got it.
#[derive(Debug, Clone)]
struct Got {
    /// When the receiver's handler had the whole body.
    at: Instant,
    id: Option<String>,
    break_id: Option<String>,
    event: Option<String>,
    body: Bytes,
}

/// The receiver's only route: note the time first, then who the body is for.
async fn hook(State(tx): State<mpsc::UnboundedSender<Got>>, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let got = Got {
        at,
        id: text("id"),
        break_id: text("break_id"),
        event: text("event"),
        body,
    };
    match tx.send(got) {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Everything the receiver got, and the next requests still to look at.
struct Inbox {
    rx: mpsc::UnboundedReceiver<Got>,
    log: Vec<Got>,
}

impl Inbox {
    /// Waits up to `WAIT` for a request matching `wanted`, logging every request seen.
    async fn wait_for(&mut self, wanted: impl Fn(&Got) -> bool) -> Option<Got> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(got)) => {
                    self.log.push(got.clone());
                    if wanted(&got) {
                        return Some(got);
                    }
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Logs whatever arrives within `DRAIN`.
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + DRAIN;
        while let Ok(Some(got)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            self.log.push(got);
        }
    }
}

/// Runs the receiver and the server, opens `warmup + events` breaks one after another, each
/// followed by one baseline POST, and returns the figures of the last `events` of each.
pub(crate) async fn run(plan: Plan) -> Result<AlertFigures> {
    // reqwest (through the alert channels) is built without a default TLS provider; install
    // ring, as the channels do, before building the baseline's client. Only plain HTTP is used.
    let _ = rustls::crypto::ring::default_provider().install_default();

    // The receiver.
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route("/hook", post(hook)).with_state(tx);
    let rl = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the receiver")?;
    let hook_url = format!("http://{}/hook", rl.local_addr()?);
    let receiver = tokio::spawn(async move { axum::serve(rl, app).await });
    let mut inbox = Inbox {
        rx,
        log: Vec::new(),
    };

    // The server: SQLite in a temp dir, one webhook channel, served so the alert worker runs.
    let dir = tempfile::tempdir().context("temp dir for the server")?;
    let channels = dir.path().join("channels.yaml");
    std::fs::write(
        &channels,
        format!(
            "public_url: https://bg.example.test\nchannels:\n  - name: {CHANNEL}\n    kind: webhook\n    url: {hook_url}\n    secret: bench-hmac-secret\n"
        ),
    )
    .context("writing the channels file")?;
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.channels_file = Some(channels);
    let built = build(config).await.context("building the server")?;
    let engine = built.state.engine.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the server")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, built.state, async move {
        let _ = stopped.await;
    }));

    let measured = measure(&engine, &mut inbox, &hook_url, plan).await;

    // Late duplicates, then stop the server (its worker finishes the delivery in hand and
    // commits its receipt), then the receiver.
    inbox.drain().await;
    let _ = stop.send(());
    server
        .await
        .context("the server task")?
        .context("serving")?;
    inbox.drain().await;
    receiver.abort();
    let (alert, baseline, opened) = measured?;

    let admin = admin();
    let mut figures = count(&inbox.log, &opened, plan, alert, baseline);
    let measured_ids: HashSet<&str> = opened[plan.warmup..].iter().map(String::as_str).collect();
    let mut from = 1;
    loop {
        let page = engine
            .audit_entries(&admin, from, 5000)
            .await
            .context("reading the audit log")?;
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        for e in page.iter().filter(|e| e.kind == "alert.delivered") {
            figures.receipts += 1;
            if e.break_id
                .as_deref()
                .is_some_and(|b| measured_ids.contains(b))
                && let Some(ms) = e.payload["commit_to_receipt_ms"].as_u64()
            {
                figures.commit_to_receipt.push(Duration::from_millis(ms));
            }
        }
    }
    match engine.verify_audit(&admin).await.context("verify audit")? {
        ChainVerdict::Intact(report) => figures.audit_entries = report.entries,
        other => bail!("the audit chain does not verify after the run: {other:?}"),
    }
    Ok(figures)
}

/// The timed part: returns the alert and baseline latencies of the measured breaks and the id
/// of every break opened, in order.
async fn measure(
    engine: &Engine,
    inbox: &mut Inbox,
    hook_url: &str,
    plan: Plan,
) -> Result<(Vec<Duration>, Vec<Duration>, Vec<String>)> {
    let admin = admin();
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let (_id, key) = keygen();
        custodians.push_str(&format!(
            "  - name: {name}\n    contact: {name}@example.com\n    key: {}\n",
            key.canonical()
        ));
    }
    let yaml = format!(
        "id: {PROCEDURE}\ndescription: benchmark alerts\ntarget:\n  kind: secret\ncustodians:\n{custodians}quorum: 2\nmax_grant: 15m\nalert_channels: [{CHANNEL}]\n"
    );
    engine
        .apply(&admin, &[("bench-alerts.yaml".into(), yaml)])
        .await
        .context("apply")?;
    let (_rid, rkey) = keygen();
    engine
        .enroll(
            &admin,
            "dave",
            &[Role::Requester],
            Some(&rkey.canonical()),
            "dave@example.com",
            false,
        )
        .await
        .context("enrol requester")?;
    engine
        .seal(
            &admin,
            PROCEDURE,
            Secret::new(b"bench-alert-secret".to_vec()),
        )
        .await
        .context("seal")?;
    let dave = Actor {
        name: "dave".into(),
        roles: vec![Role::Requester],
        key: Some(rkey),
    };
    // Whatever the set-up queued (nothing alerts on it today) arrives before the first timer.
    inbox.drain().await;

    let client = reqwest::Client::builder()
        .build()
        .context("the baseline's HTTP client")?;
    let total = plan.warmup + plan.events;
    let mut alert = Vec::with_capacity(plan.events);
    let mut baseline = Vec::with_capacity(plan.events);
    let mut opened = Vec::with_capacity(total);
    for i in 0..total {
        // The event: `open_break` commits `break.requested`, which queues one alert.
        let id = engine
            .open_break(&dave, PROCEDURE, "benchmark", "BENCH-1", None)
            .await
            .context("open")?
            .info
            .id
            .0;
        let committed = Instant::now();
        opened.push(id.clone());
        let Some(got) = inbox
            .wait_for(|g| {
                g.break_id.as_deref() == Some(id.as_str())
                    && g.event.as_deref() == Some("break.requested")
            })
            .await
        else {
            // Counted as missing below; no latency sample, and no body to copy.
            continue;
        };
        let took = got.at.saturating_duration_since(committed);

        // The baseline: the same body, its id `bg-…` turned into `bl-…` (same length), POSTed
        // by the bench to the same receiver with a plain client.
        let mut body: Value = serde_json::from_slice(&got.body).context("alert body")?;
        let marker = got
            .id
            .as_deref()
            .unwrap_or("bg-?")
            .replacen("bg-", "bl-", 1);
        body["id"] = Value::String(marker.clone());
        let bytes = serde_json::to_vec(&body).context("baseline body")?;
        let sent = Instant::now();
        let answer = client
            .post(hook_url)
            .header("content-type", "application/json")
            .body(bytes)
            .send()
            .await
            .context("baseline POST")?;
        ensure!(
            answer.status().is_success(),
            "the receiver refused the baseline POST: {}",
            answer.status()
        );
        let base = inbox
            .wait_for(|g| g.id.as_deref() == Some(marker.as_str()))
            .await
            .context("the baseline POST was answered but not logged")?;
        if i >= plan.warmup {
            alert.push(took);
            baseline.push(base.at.saturating_duration_since(sent));
        }
        if (i + 1) % 250 == 0 {
            eprintln!("  {}/{} breaks", i + 1, total);
        }
    }
    Ok((alert, baseline, opened))
}

/// Counts what the receiver got against the breaks opened.
fn count(
    log: &[Got],
    opened: &[String],
    plan: Plan,
    alert: Vec<Duration>,
    baseline: Vec<Duration>,
) -> AlertFigures {
    let mut per_break: HashMap<&str, usize> = opened.iter().map(|b| (b.as_str(), 0)).collect();
    let mut ids = HashSet::new();
    let mut unexpected = BTreeMap::new();
    let (mut alert_bytes, mut alert_n, mut base_bytes, mut base_n) = (0usize, 0usize, 0usize, 0);
    let measured: HashSet<&str> = opened[plan.warmup.min(opened.len())..]
        .iter()
        .map(String::as_str)
        .collect();
    for g in log {
        if g.id.as_deref().is_some_and(|id| id.starts_with("bl-")) {
            if g.break_id.as_deref().is_some_and(|b| measured.contains(b)) {
                base_bytes += g.body.len();
                base_n += 1;
            }
            continue;
        }
        let counted = g.event.as_deref() == Some("break.requested")
            && g.break_id
                .as_deref()
                .and_then(|b| per_break.get_mut(b))
                .map(|n| *n += 1)
                .is_some();
        if !counted {
            let event = g.event.clone().unwrap_or_else(|| "(no event)".to_owned());
            *unexpected.entry(event).or_insert(0) += 1;
            continue;
        }
        if let Some(id) = &g.id {
            ids.insert(id.clone());
        }
        if g.break_id.as_deref().is_some_and(|b| measured.contains(b)) {
            alert_bytes += g.body.len();
            alert_n += 1;
        }
    }
    let early = alert.iter().filter(|d| d.is_zero()).count();
    AlertFigures {
        alert,
        baseline,
        alert_bytes: alert_bytes as f64 / alert_n.max(1) as f64,
        baseline_bytes: base_bytes as f64 / base_n.max(1) as f64,
        breaks_opened: opened.len(),
        exactly_once: per_break.values().filter(|n| **n == 1).count(),
        missing: per_break.values().filter(|n| **n == 0).count(),
        duplicates: per_break.values().map(|n| n.saturating_sub(1)).sum(),
        distinct_ids: ids.len(),
        unexpected,
        early,
        receipts: 0,
        commit_to_receipt: Vec::new(),
        audit_entries: 0,
    }
}

fn admin() -> Actor {
    Actor {
        name: "bench-admin".into(),
        roles: vec![Role::Admin],
        key: None,
    }
}
