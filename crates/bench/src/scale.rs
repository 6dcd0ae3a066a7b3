//! Scale-out: breaks per second with one, two and three `breakglass serve` processes on one
//! PostgreSQL database, and the share of the database's active time spent waiting on locks.
//!
//! For each server count N the bench makes a fresh database on the machine's PostgreSQL, starts
//! N real servers (the release binary next to the bench) the way docs/deployment.md says — the
//! first one's `audit.key`, `ack.key`, `ui.key` and `admin.token` copied into the others' data
//! dirs before they start, `--advertise-url auto` so approvals are forwarded to the server
//! holding a break's earlier shares — without alert channels, and again with one webhook
//! channel to a receiver in this process (every alert then commits a receipt, which the server
//! holding the alert job's lease writes: more writes under the same lock).
//! It applies a `kind: secret` procedure (three custodians with age keys, quorum 2), enrols a
//! requester, seals, signs everyone in by key challenge, and then drives complete break cycles
//! through the HTTP API with a fixed number in flight, every request sent to the next server in
//! turn (a round-robin load balancer): open → the first custodian fetches, decrypts (locally,
//! as on their own machine) and submits their share → the second does the same and completes
//! the quorum → the requester takes the reveal and decrypts it → the requester closes.
//!
//! While the timed cycles run, a separate connection samples `pg_stat_activity` of that
//! database every `SAMPLE_EVERY`. The single-server run is the baseline of the others.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use breakglass_custody::{ExposeSecret, Identity, decrypt_share, decrypt_with, keygen};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The server counts measured; the first is the baseline.
pub(crate) const SERVERS: [usize; 3] = [1, 2, 3];

/// The order of the runs: every count twice, mirrored (1, 2, 3, 3, 2, 1), so a load that drifts
/// over the section weighs on every count alike; the faster run of each count is reported (on a
/// shared machine the fastest is the one least disturbed by other work), both are listed.
pub(crate) const ORDER: [usize; 6] = [1, 2, 3, 3, 2, 1];

/// The two set-ups, each run in `ORDER`: no alert channel, then one webhook channel.
pub(crate) const WEBHOOK: [bool; 2] = [false, true];

/// How often `pg_stat_activity` is sampled during the timed cycles.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// The procedure every break is opened on.
const PROCEDURE: &str = "bench-scale";

/// The sealed secret, and the same bytes in base64 for the seal request (the reveal of every
/// cycle is decrypted and compared with `SECRET`, so a mismatch here would fail every cycle).
const SECRET: &[u8] = b"bench-scale-secret";
const SECRET_B64: &str = "YmVuY2gtc2NhbGUtc2VjcmV0";

/// The webhook channel's name in the channels file.
const CHANNEL: &str = "hook";

/// Longest wait for any one HTTP request, for a server to start, and for the alert backlog.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const START_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What the bench asks of this run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Timed break cycles per server count.
    pub(crate) cycles: usize,
    /// Cycles in flight at once.
    pub(crate) concurrency: usize,
    /// Untimed cycles before the timed ones (connections and pools warmed up).
    pub(crate) warmup: usize,
}

/// Figures of the whole section.
#[derive(Debug, Clone)]
pub(crate) struct ScaleFigures {
    /// The `breakglass` binary that served.
    pub(crate) binary: PathBuf,
    /// One run per entry of `ORDER`, in that order.
    pub(crate) runs: Vec<ServerRun>,
}

impl ScaleFigures {
    /// The faster run of each server count, set-up by set-up (`WEBHOOK`), in the order of
    /// `SERVERS`.
    pub(crate) fn kept(&self) -> Vec<&ServerRun> {
        let mut kept = Vec::new();
        for webhook in WEBHOOK {
            for n in SERVERS {
                if let Some(r) = self
                    .runs
                    .iter()
                    .filter(|r| r.servers == n && r.webhook == webhook)
                    .max_by(|a, b| a.breaks_per_s().total_cmp(&b.breaks_per_s()))
                {
                    kept.push(r);
                }
            }
        }
        kept
    }

    /// The kept single-server run of `r`'s set-up: its baseline.
    pub(crate) fn baseline(&self, r: &ServerRun) -> Option<&ServerRun> {
        self.kept()
            .into_iter()
            .find(|k| k.servers == 1 && k.webhook == r.webhook)
    }

    /// Breaks per second of every run like `r` (same count and set-up), in run order.
    pub(crate) fn rounds(&self, r: &ServerRun) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|x| x.servers == r.servers && x.webhook == r.webhook)
            .map(ServerRun::breaks_per_s)
            .collect()
    }
}

/// Latencies of each HTTP step of the timed cycles that completed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Steps {
    pub(crate) open: Vec<Duration>,
    /// The first approval (1 of 2): share verified and held in the accepting server's memory.
    pub(crate) first: Vec<Duration>,
    /// The quorum approval sent to the server holding the first share.
    pub(crate) quorum_local: Vec<Duration>,
    /// The quorum approval sent to another server, which forwards it to the holder.
    pub(crate) quorum_forwarded: Vec<Duration>,
    pub(crate) reveal: Vec<Duration>,
    pub(crate) close: Vec<Duration>,
}

/// What the `pg_stat_activity` samples add up to. Counts are backend-samples: one backend of
/// the database seen in one state in one sample.
#[derive(Debug, Clone, Default)]
pub(crate) struct LockSamples {
    /// Samples taken.
    pub(crate) samples: u64,
    /// From the first to the last sample.
    pub(crate) span: Duration,
    /// Backends with `state = 'active'` (running a statement, waiting or not).
    pub(crate) active: u64,
    /// Active backends with `wait_event_type = 'Lock'` (a heavyweight lock: the head row).
    pub(crate) lock_waiting: u64,
    /// Backends `idle in transaction`: inside a transaction, between statements (the server
    /// is working or waiting for a pool connection while holding whatever it locked).
    pub(crate) idle_in_transaction: u64,
    /// Samples in which at least one backend waited on a lock.
    pub(crate) samples_with_waiter: u64,
    /// Active backend-samples by what they waited on (`Lock/transactionid`, `IO/WalSync`, …;
    /// `running` when not waiting).
    pub(crate) by_wait: BTreeMap<String, u64>,
    /// What the writer was doing in each sample: a backend with a transaction id
    /// (`backend_xid`, assigned when a transaction first locks or writes a row — every write
    /// transaction's first statement locks the head row) that is not itself waiting on a lock
    /// is, in practice, the transaction holding the head row. By its state (`idle in
    /// transaction`, or active and what it waits on); `none` when no such backend was seen.
    pub(crate) holder: BTreeMap<String, u64>,
    /// Times the alert job's lease (`job:alerts`) was seen held by another server than in the
    /// sample before, and how many servers held it during the run.
    pub(crate) alert_lease_changes: u64,
    pub(crate) alert_lease_holders: usize,
}

impl LockSamples {
    /// Lock-waiting backend-samples ÷ active backend-samples.
    pub(crate) fn lock_share(&self) -> f64 {
        self.lock_waiting as f64 / self.active.max(1) as f64
    }
}

/// CPU time of the machine during the timed cycles, as shares of all its cores' time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuShares {
    /// Everything but idle and iowait (`/proc/stat`).
    pub(crate) busy: f64,
    /// The `breakglass serve` processes (`/proc/PID/stat`, user + system).
    pub(crate) servers: f64,
    /// This bench process (HTTP client, local share and reveal decryption, sampling).
    pub(crate) bench: f64,
}

/// One server count's run.
#[derive(Debug, Clone)]
pub(crate) struct ServerRun {
    pub(crate) servers: usize,
    /// With the webhook channel (else no alert channel).
    pub(crate) webhook: bool,
    /// 1 for the first run of this count, 2 for the second.
    pub(crate) round: usize,
    /// Breaks per second in each third of the timed cycles (by completion time): drift shows.
    pub(crate) thirds: [f64; 3],
    /// Timed cycles that completed (reveal decrypted to the sealed secret, break closed).
    pub(crate) completed: usize,
    /// Timed cycles that failed (an HTTP error or an unexpected answer; see `errors`).
    pub(crate) failed: usize,
    /// First timed cycle started → last one finished.
    pub(crate) wall: Duration,
    /// Wall time of each completed timed cycle.
    pub(crate) cycle: Vec<Duration>,
    pub(crate) steps: Steps,
    /// Quorum approvals that reached a server other than the one holding the first share.
    pub(crate) forwarded: usize,
    /// Requests each server received from the bench (forwarded approvals not counted).
    pub(crate) requests_per_server: Vec<usize>,
    pub(crate) locks: LockSamples,
    pub(crate) cpu: Option<CpuShares>,
    /// Failures (warm-up included) by step and answer, break ids elided.
    pub(crate) errors: BTreeMap<String, usize>,
    /// Audit entries at the end, and whether every server verified the chain and the
    /// sequence numbers have neither gap nor duplicate.
    pub(crate) audit_entries: u64,
    /// Audit entries written from the first timed cycle's start to the last one's end (break
    /// events, alert receipts, sign-ins…): each is one append under the head row's lock.
    pub(crate) entries_timed: u64,
    pub(crate) chain: Result<(), String>,
    /// Audit events that should not happen in this run (`break.approvals_reset`,
    /// `share.rejected`, `grant.failed`, …), by kind.
    pub(crate) odd_events: BTreeMap<String, i64>,
    /// Every audit entry of the run (set-up and warm-up included), by kind.
    pub(crate) kinds: BTreeMap<String, i64>,
    /// Alerts queued for the webhook, how many distinct ones the receiver got, how many it got
    /// more than once, and how long after the last cycle the outbox was empty (`None`: not
    /// within `DRAIN_TIMEOUT`).
    pub(crate) alerts_queued: i64,
    pub(crate) alerts_received: usize,
    pub(crate) alerts_duplicated: usize,
    pub(crate) alerts_drained_after: Option<Duration>,
    /// Lines the servers logged (warnings and errors; start-up lines left out), normalized,
    /// with counts.
    pub(crate) server_log: BTreeMap<String, usize>,
    /// How each server ended after SIGTERM.
    pub(crate) shutdown: Vec<String>,
}

impl ServerRun {
    /// `2 servers` or `2 servers + webhook`.
    pub(crate) fn label(&self) -> String {
        format!(
            "{} server{}{}",
            self.servers,
            if self.servers == 1 { "" } else { "s" },
            if self.webhook { " + webhook" } else { "" }
        )
    }

    /// Completed cycles per second of wall time.
    pub(crate) fn breaks_per_s(&self) -> f64 {
        self.completed as f64 / self.wall.as_secs_f64()
    }
}

/// Runs every server count; `Err` says why nothing was measured (no binary, no PostgreSQL).
pub(crate) async fn run(plan: Plan) -> Result<Result<ScaleFigures, String>> {
    let binary = std::env::current_exe()
        .context("the bench's own path")?
        .with_file_name(format!("breakglass{}", std::env::consts::EXE_SUFFIX));
    if !binary.is_file() {
        return Ok(Err(format!(
            "no `breakglass` binary next to the bench at {}: `cargo build --release -p breakglass-cli` first",
            binary.display()
        )));
    }
    // reqwest is built without a default TLS provider here (see alerts.rs); only plain HTTP
    // is used, but the client needs a provider installed to be built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut runs: Vec<ServerRun> = Vec::new();
    let plan_all = WEBHOOK
        .iter()
        .flat_map(|&w| ORDER.iter().map(move |&n| (w, n)));
    for (i, (webhook, n)) in plan_all.enumerate() {
        let round = runs
            .iter()
            .filter(|r| r.servers == n && r.webhook == webhook)
            .count()
            + 1;
        eprintln!(
            "[8] scale-out ({}/{}): {} servers{}, round {round}, {} cycles ({} in flight) after {} warm-up cycles",
            i + 1,
            ORDER.len() * WEBHOOK.len(),
            n,
            if webhook { " + webhook" } else { "" },
            plan.cycles,
            plan.concurrency,
            plan.warmup
        );
        let Some(db) = breakglass_testkit::fresh_postgres("bench::scale").await else {
            return Ok(Err(
                "PostgreSQL not reachable (see the SKIP line on stderr)".to_owned(),
            ));
        };
        let result = run_servers(&binary, &db.url, n, webhook, plan).await;
        db.drop_db().await;
        let mut r = result.with_context(|| format!("scale-out with {n} servers"))?;
        r.round = round;
        eprintln!(
            "[8]   {}: {} cycles in {:.2} s = {:.1} breaks/s (thirds {:.1} / {:.1} / {:.1}), lock waits {:.1} % of active, {} failed, {} alerts delivered twice or more",
            r.label(),
            r.completed,
            r.wall.as_secs_f64(),
            r.breaks_per_s(),
            r.thirds[0],
            r.thirds[1],
            r.thirds[2],
            r.locks.lock_share() * 100.0,
            r.failed,
            r.alerts_duplicated
        );
        runs.push(r);
    }
    Ok(Ok(ScaleFigures { binary, runs }))
}

/// A running `breakglass serve` child and everything it wrote to stderr.
struct ServerProcess {
    child: Child,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

/// Starts the servers, runs the cycles, checks the result, and stops the servers whatever
/// happened.
async fn run_servers(
    binary: &Path,
    db_url: &str,
    n: usize,
    webhook: bool,
    plan: Plan,
) -> Result<ServerRun> {
    let dir = tempfile::tempdir().context("temp dir for the data dirs")?;
    let (hook_url, received, receiver) = receiver().await?;
    let channels = dir.path().join("channels.yaml");
    std::fs::write(
        &channels,
        format!(
            "channels:\n  - name: {CHANNEL}\n    kind: webhook\n    url: {hook_url}\n    secret: bench-hmac-secret\n"
        ),
    )
    .context("writing the channels file")?;
    let mut servers: Vec<ServerProcess> = Vec::new();
    let result = async {
        for i in 0..n {
            let data = dir.path().join(format!("server-{}", i + 1));
            std::fs::create_dir_all(&data).context("data dir")?;
            if i > 0 {
                // docs/deployment.md: the same keys (and, for the bench, the admin token) on
                // every server, copied before it starts.
                let first = dir.path().join("server-1");
                for file in ["audit.key", "ack.key", "ui.key", "admin.token"] {
                    std::fs::copy(first.join(file), data.join(file))
                        .with_context(|| format!("copying {file} to server {}", i + 1))?;
                }
            }
            servers
                .push(start(binary, &data, db_url, webhook.then_some(channels.as_path())).await?);
        }
        let admin = std::fs::read_to_string(dir.path().join("server-1").join("admin.token"))
            .context("reading the admin token")?
            .trim()
            .to_owned();
        let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
        let pids: Vec<u32> = servers.iter().filter_map(|s| s.child.id()).collect();
        measure(urls, admin, db_url, &received, &pids, webhook, plan).await
    }
    .await;
    // Stop the servers (SIGTERM, then SIGKILL after 10 s) and collect their logs.
    let mut server_log = BTreeMap::new();
    let mut shutdown = Vec::new();
    for (i, s) in servers.iter_mut().enumerate() {
        shutdown.push(format!("server {}: {}", i + 1, stop(&mut s.child).await));
    }
    // The reader tasks see the end of stderr right after the exit.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for s in &servers {
        for line in s.log.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if line.starts_with("first start: ")
                || line.starts_with("breakglass instance ")
                || line.starts_with("breakglass serving on ")
                || line == "breakglass stopped"
            {
                continue;
            }
            *server_log.entry(normalize(line)).or_insert(0) += 1;
        }
    }
    receiver.abort();
    let mut r = result?;
    r.servers = n;
    r.webhook = webhook;
    r.server_log = server_log;
    r.shutdown = shutdown;
    Ok(r)
}

/// Starts one server and waits for its `breakglass serving on http://ADDR (postgres store)`.
async fn start(
    binary: &Path,
    data: &Path,
    db_url: &str,
    channels: Option<&Path>,
) -> Result<ServerProcess> {
    let mut cmd = Command::new(binary);
    for var in [
        "BREAKGLASS_SERVER",
        "BREAKGLASS_TOKEN",
        "BREAKGLASS_IDENTITY",
        "BREAKGLASS_ACTOR",
        "BREAKGLASS_DATA_DIR",
        "BREAKGLASS_LISTEN",
        "BREAKGLASS_DATABASE_URL",
        "BREAKGLASS_LOG",
        "BREAKGLASS_CHANNELS",
        "BREAKGLASS_ADVERTISE_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("--data-dir")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", db_url])
        .args(["--advertise-url", "auto"])
        // Every request of the bench comes from 127.0.0.1, and so does every forwarded
        // approval: the per-address limits (120 approvals a minute) would measure themselves.
        .args(["--approval-rate", "0", "--sign-in-rate", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(channels) = channels {
        cmd.arg("--channels").arg(channels);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stderr = child.stderr.take().context("the server's stderr")?;
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let keep = log.clone();
    // Reads stderr for the server's whole life, so the pipe never fills.
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            keep.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(line.clone());
            let _ = tx.send(line);
        }
    });
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) => {
                if let Some(url) = line
                    .strip_prefix("breakglass serving on ")
                    .and_then(|rest| rest.strip_suffix(" (postgres store)"))
                {
                    return Ok(ServerProcess {
                        child,
                        url: url.to_owned(),
                        log,
                    });
                }
                seen.push(line);
            }
            Ok(None) | Err(_) => {
                let _ = child.kill().await;
                bail!(
                    "breakglass serve did not report its address; stderr:\n{}",
                    seen.join("\n")
                );
            }
        }
    }
}

/// SIGTERM (a clean shutdown gives the leases up and signs a final checkpoint), SIGKILL after
/// 10 s; says how the server ended.
async fn stop(child: &mut Child) -> String {
    let Some(pid) = child.id() else {
        return "had already exited".to_owned();
    };
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(Ok(status)) if status.success() => "stopped cleanly on SIGTERM".to_owned(),
        Ok(Ok(status)) => format!("exited with {status} on SIGTERM"),
        Ok(Err(e)) => format!("wait failed: {e}"),
        Err(_) => {
            let _ = child.kill().await;
            "did not stop within 10 s of SIGTERM; killed".to_owned()
        }
    }
}

/// The webhook receiver: answers 200 and counts deliveries per idempotency key.
async fn receiver() -> Result<(
    String,
    Arc<Mutex<HashMap<String, usize>>>,
    tokio::task::JoinHandle<()>,
)> {
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let keep = seen.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap| {
            let seen = keep.clone();
            async move {
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("(none)")
                    .to_owned();
                *seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(key)
                    .or_insert(0) += 1;
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the webhook receiver")?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, seen, task))
}

/// The HTTP side: the servers, the round-robin counter, and who is signed in.
struct Ctx {
    http: reqwest::Client,
    urls: Vec<String>,
    next: AtomicUsize,
    per_server: Vec<AtomicUsize>,
    admin: String,
    dave: String,
    alice: String,
    bob: String,
    alice_id: Identity,
    bob_id: Identity,
    dave_id: Identity,
}

/// A refused or failed request: which step, and what came back.
struct Failure(String);

impl Ctx {
    /// The server the next request goes to (round robin over all requests of all cycles).
    fn pick(&self) -> usize {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.urls.len();
        self.per_server[i].fetch_add(1, Ordering::Relaxed);
        i
    }

    /// One request to server `i`; the JSON answer of a 2xx, else a `Failure` naming `step`.
    async fn call(
        &self,
        step: &str,
        i: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.urls[i]))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| Failure(format!("{step}: {}", e.without_url())))?;
        let status = answer.status();
        let text = answer
            .text()
            .await
            .map_err(|e| Failure(format!("{step}: reading the answer: {}", e.without_url())))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = match v["error"]["message"].as_str() {
                Some(m) => format!("{} ({})", m, v["error"]["code"].as_str().unwrap_or("?")),
                None => text.chars().take(200).collect(),
            };
            return Err(Failure(format!(
                "{step}: HTTP {} {message}",
                status.as_u16()
            )));
        }
        Ok(v)
    }

    /// Signs `actor` in by key challenge (challenge from one server, answer to the next).
    async fn sign_in(&self, actor: &str, identity: &Identity) -> Result<String> {
        let c = self
            .call(
                "challenge",
                self.pick(),
                Method::POST,
                "/api/auth/challenge",
                "",
                Some(json!({"actor": actor})),
            )
            .await
            .map_err(|f| anyhow::anyhow!(f.0))?;
        let age_file = c["challenge"]["age_file"]
            .as_str()
            .context("an age challenge")?;
        let plain =
            decrypt_with(identity, age_file.as_bytes()).context("decrypting the challenge")?;
        let s = self
            .call(
                "login",
                self.pick(),
                Method::POST,
                "/api/auth/login",
                "",
                Some(json!({"challenge_id": c["challenge_id"], "response": String::from_utf8_lossy(&plain)})),
            )
            .await
            .map_err(|f| anyhow::anyhow!(f.0))?;
        Ok(s["token"].as_str().context("session token")?.to_owned())
    }
}

/// Latencies of one completed cycle.
struct CycleTimes {
    finished: Instant,
    total: Duration,
    open: Duration,
    first: Duration,
    quorum: Duration,
    forwarded: bool,
    reveal: Duration,
    close: Duration,
}

/// One complete break cycle through the API.
async fn cycle(ctx: &Ctx) -> Result<CycleTimes, Failure> {
    let start = Instant::now();
    let t = Instant::now();
    let b = ctx
        .call(
            "open",
            ctx.pick(),
            Method::POST,
            "/api/breaks",
            &ctx.dave,
            Some(json!({"procedure": PROCEDURE, "reason": "scale-out benchmark", "ticket": "BENCH-8", "duration": "10m"})),
        )
        .await?;
    let open = t.elapsed();
    let id = b["id"]
        .as_str()
        .ok_or_else(|| Failure(format!("open: no break id in {b}")))?
        .to_owned();
    let result = approve_reveal_close(ctx, &id).await;
    if result.is_err() {
        // Leave nothing granted behind (best effort; the database is dropped anyway).
        let _ = ctx
            .call(
                "cleanup close",
                0,
                Method::POST,
                &format!("/api/breaks/{id}/close"),
                &ctx.admin,
                None,
            )
            .await;
    }
    let (first, quorum, forwarded, reveal, close) = result?;
    Ok(CycleTimes {
        finished: Instant::now(),
        total: start.elapsed(),
        open,
        first,
        quorum,
        forwarded,
        reveal,
        close,
    })
}

/// The rest of a cycle: both approvals, the reveal, the close.
async fn approve_reveal_close(
    ctx: &Ctx,
    id: &str,
) -> Result<(Duration, Duration, bool, Duration, Duration), Failure> {
    let share = |who: &'static str| async move {
        let (token, identity) = match who {
            "alice" => (&ctx.alice, &ctx.alice_id),
            _ => (&ctx.bob, &ctx.bob_id),
        };
        let v = ctx
            .call(
                "share fetch",
                ctx.pick(),
                Method::GET,
                &format!("/api/breaks/{id}/share"),
                token,
                None,
            )
            .await?;
        let age_file = v["age_file"]
            .as_str()
            .ok_or_else(|| Failure("share fetch: no age_file".to_owned()))?;
        let plain = decrypt_share(age_file.as_bytes(), identity)
            .map_err(|e| Failure(format!("share decrypt ({who}): {e}")))?;
        Ok::<_, Failure>(plain.encode().to_string())
    };

    let s = share("alice").await?;
    let holder = ctx.pick();
    let t = Instant::now();
    let a = ctx
        .call(
            "first approval",
            holder,
            Method::POST,
            &format!("/api/breaks/{id}/approvals"),
            &ctx.alice,
            Some(json!({"share": s})),
        )
        .await?;
    let first = t.elapsed();
    if a["approvals"].as_u64() != Some(1) || a["break"]["state"] != "requested" {
        return Err(Failure(format!(
            "first approval: unexpected answer approvals={} state={}",
            a["approvals"], a["break"]["state"]
        )));
    }

    let s = share("bob").await?;
    let to = ctx.pick();
    let forwarded = to != holder;
    let step = if forwarded {
        "quorum approval (forwarded)"
    } else {
        "quorum approval (holder)"
    };
    let t = Instant::now();
    let a = ctx
        .call(
            step,
            to,
            Method::POST,
            &format!("/api/breaks/{id}/approvals"),
            &ctx.bob,
            Some(json!({"share": s})),
        )
        .await?;
    let quorum = t.elapsed();
    if a["break"]["state"] != "granted" {
        return Err(Failure(format!(
            "{step}: unexpected answer approvals={} state={}",
            a["approvals"], a["break"]["state"]
        )));
    }

    let t = Instant::now();
    let r = ctx
        .call(
            "reveal",
            ctx.pick(),
            Method::POST,
            &format!("/api/breaks/{id}/reveal"),
            &ctx.dave,
            None,
        )
        .await?;
    let reveal = t.elapsed();
    let age_file = r["age_file"]
        .as_str()
        .ok_or_else(|| Failure("reveal: no age_file".to_owned()))?;
    let secret = decrypt_with(&ctx.dave_id, age_file.as_bytes())
        .map_err(|e| Failure(format!("reveal decrypt: {e}")))?;
    if secret.as_slice() != SECRET {
        return Err(Failure(
            "reveal: the decrypted secret is not the sealed one".to_owned(),
        ));
    }

    let t = Instant::now();
    let c = ctx
        .call(
            "close",
            ctx.pick(),
            Method::POST,
            &format!("/api/breaks/{id}/close"),
            &ctx.dave,
            None,
        )
        .await?;
    let close = t.elapsed();
    if c["state"] != "closed" {
        return Err(Failure(format!("close: unexpected state {}", c["state"])));
    }
    Ok((first, quorum, forwarded, reveal, close))
}

/// Runs `cycles` cycles with `concurrency` in flight; returns each outcome.
async fn drive(
    ctx: &Arc<Ctx>,
    cycles: usize,
    concurrency: usize,
) -> Vec<Result<CycleTimes, Failure>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(cycles) {
        let (ctx, next) = (ctx.clone(), next.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < cycles {
                out.push(cycle(&ctx).await);
            }
            out
        });
    }
    let mut all = Vec::with_capacity(cycles);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(out) => all.extend(out),
            Err(e) => all.push(Err(Failure(format!("cycle task: {e}")))),
        }
    }
    all
}

/// Sets up, warms up, runs and samples the timed cycles, then checks what the servers left.
async fn measure(
    urls: Vec<String>,
    admin: String,
    db_url: &str,
    received: &Arc<Mutex<HashMap<String, usize>>>,
    pids: &[u32],
    webhook: bool,
    plan: Plan,
) -> Result<ServerRun> {
    let n = urls.len();
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(plan.concurrency * 2)
        .build()
        .context("the bench's HTTP client")?;
    let ident = || -> Result<(Identity, String)> {
        let (id, key) = keygen();
        Ok((
            Identity::parse(id.expose_secret()).context("identity")?,
            key.canonical().to_string(),
        ))
    };
    let (alice_id, alice_key) = ident()?;
    let (bob_id, bob_key) = ident()?;
    let (_carol_id, carol_key) = ident()?;
    let (dave_id, dave_key) = ident()?;
    let mut ctx = Ctx {
        http,
        per_server: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        urls,
        next: AtomicUsize::new(0),
        admin,
        dave: String::new(),
        alice: String::new(),
        bob: String::new(),
        alice_id,
        bob_id,
        dave_id,
    };

    // Set-up, through the first server.
    let mut custodians = String::new();
    for (name, key) in [
        ("alice", &alice_key),
        ("bob", &bob_key),
        ("carol", &carol_key),
    ] {
        custodians.push_str(&format!(
            "  - name: {name}\n    contact: {name}@example.com\n    key: {key}\n"
        ));
    }
    let alerting = if webhook {
        format!("alert_channels: [{CHANNEL}]\n")
    } else {
        String::new()
    };
    let yaml = format!(
        "id: {PROCEDURE}\ndescription: scale-out benchmark\ntarget:\n  kind: secret\ncustodians:\n{custodians}quorum: 2\nmax_grant: 15m\n{alerting}"
    );
    let setup = |step: &'static str, path: &'static str, body: Value| {
        let ctx = &ctx;
        async move {
            ctx.call(step, 0, Method::POST, path, &ctx.admin, Some(body))
                .await
                .map_err(|f| anyhow::anyhow!(f.0))
        }
    };
    setup(
        "apply",
        "/api/procedures/apply",
        json!({"files": [{"name": "bench-scale.yaml", "content": yaml}]}),
    )
    .await?;
    setup(
        "enrol requester",
        "/api/actors",
        json!({"name": "dave", "roles": ["requester"], "key": dave_key, "contact": "dave@example.com"}),
    )
    .await?;
    let seal = ctx
        .call(
            "seal",
            0,
            Method::POST,
            &format!("/api/procedures/{PROCEDURE}/seal"),
            &ctx.admin,
            Some(json!({"secret_b64": SECRET_B64})),
        )
        .await
        .map_err(|f| anyhow::anyhow!(f.0))?;
    ensure!(seal["threshold"] == 2, "unexpected seal answer: {seal}");
    ctx.dave = ctx.sign_in("dave", &ctx.dave_id).await?;
    ctx.alice = ctx.sign_in("alice", &ctx.alice_id).await?;
    ctx.bob = ctx.sign_in("bob", &ctx.bob_id).await?;
    let ctx = Arc::new(ctx);

    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut note = |outcomes: &[Result<CycleTimes, Failure>]| {
        for o in outcomes {
            if let Err(Failure(e)) = o {
                *errors.entry(normalize(e)).or_insert(0) += 1;
            }
        }
    };
    let warm = drive(&ctx, plan.warmup, plan.concurrency).await;
    note(&warm);
    for c in &ctx.per_server {
        c.store(0, Ordering::Relaxed);
    }

    // The timed cycles, sampled.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(sample(db_url.to_owned(), stop_rx));
    // Let the sampler connect before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut conn = PgConnection::connect(db_url)
        .await
        .context("connecting to read the chain head")?;
    let head_before = head(&mut conn).await?;
    let cpu_before = cpu_ticks(pids);
    let started = Instant::now();
    let outcomes = drive(&ctx, plan.cycles, plan.concurrency).await;
    let wall = started.elapsed();
    let entries_timed = head(&mut conn).await?.saturating_sub(head_before);
    let cpu = match (cpu_before, cpu_ticks(pids)) {
        (Some(a), Some(b)) => Some(b.shares_since(&a)),
        _ => None,
    };
    let _ = stop_tx.send(true);
    let locks = sampler
        .await
        .context("the sampler task")?
        .context("sampling pg_stat_activity")?;
    note(&outcomes);

    let mut steps = Steps::default();
    let (mut cycle, mut forwarded, mut failed) = (Vec::new(), 0, 0);
    let mut thirds = [0.0; 3];
    let third = wall.as_secs_f64() / 3.0;
    for o in outcomes {
        match o {
            Ok(c) => {
                let at = c.finished.saturating_duration_since(started).as_secs_f64();
                thirds[((at / third) as usize).min(2)] += 1.0 / third;
                cycle.push(c.total);
                steps.open.push(c.open);
                steps.first.push(c.first);
                if c.forwarded {
                    forwarded += 1;
                    steps.quorum_forwarded.push(c.quorum);
                } else {
                    steps.quorum_local.push(c.quorum);
                }
                steps.reveal.push(c.reveal);
                steps.close.push(c.close);
            }
            Err(_) => failed += 1,
        }
    }
    let requests_per_server = ctx
        .per_server
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();

    // What the servers left: every alert delivered once, one chain.
    let last = Instant::now();
    let (alerts_queued, alerts_drained_after) = loop {
        let (queued, undelivered): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE delivered_at IS NULL) FROM outbox WHERE destination = $1",
        )
        .bind(format!("channel:{CHANNEL}"))
        .fetch_one(&mut conn)
        .await
        .context("counting alerts")?;
        if undelivered == 0 {
            break (queued, Some(last.elapsed()));
        }
        if last.elapsed() > DRAIN_TIMEOUT {
            break (queued, None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A receipt is committed after the receiver answered: give late answers a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (alerts_received, alerts_duplicated) = {
        let seen = received.lock().unwrap_or_else(|p| p.into_inner());
        (seen.len(), seen.values().filter(|n| **n > 1).count())
    };

    let odd: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, COUNT(*) FROM audit_log WHERE kind LIKE '%reset%' OR kind LIKE '%rejected%' \
         OR kind LIKE '%failed%' GROUP BY kind",
    )
    .fetch_all(&mut conn)
    .await
    .context("counting odd audit events")?;
    let kinds: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, COUNT(*) FROM audit_log GROUP BY kind")
            .fetch_all(&mut conn)
            .await
            .context("counting audit events by kind")?;
    let (count, max, distinct): (i64, Option<i64>, i64) =
        sqlx::query_as("SELECT COUNT(*), MAX(seq), COUNT(DISTINCT seq) FROM audit_log")
            .fetch_one(&mut conn)
            .await
            .context("reading the chain's sequence numbers")?;
    let _ = conn.close().await;
    let mut chain = if count == max.unwrap_or(0) && count == distinct {
        Ok(())
    } else {
        Err(format!(
            "{count} entries, highest seq {max:?}, {distinct} distinct: a gap or a duplicate"
        ))
    };
    for i in 0..n {
        match ctx
            .call(
                "audit verify",
                i,
                Method::GET,
                "/api/audit/verify",
                &ctx.admin,
                None,
            )
            .await
        {
            Ok(v) if v["intact"] == true => {}
            Ok(v) => {
                chain = Err(format!("server {} says the chain is broken: {v}", i + 1));
            }
            Err(Failure(e)) => chain = Err(format!("server {}: {e}", i + 1)),
        }
    }
    Ok(ServerRun {
        servers: n,
        webhook,
        round: 1,
        thirds,
        completed: cycle.len(),
        failed,
        wall,
        cycle,
        steps,
        forwarded,
        requests_per_server,
        locks,
        cpu,
        errors,
        audit_entries: count.max(0) as u64,
        entries_timed,
        chain,
        odd_events: odd.into_iter().collect(),
        kinds: kinds.into_iter().collect(),
        alerts_queued,
        alerts_received,
        alerts_duplicated,
        alerts_drained_after,
        server_log: BTreeMap::new(),
        shutdown: Vec::new(),
    })
}

/// One backend in a sample: `state`, `wait_event_type`, `wait_event`, has a transaction id.
type Backend = (Option<String>, Option<String>, Option<String>, bool);

/// The chain head's sequence number.
async fn head(conn: &mut PgConnection) -> Result<u64> {
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM audit_head WHERE id = 1")
        .fetch_one(conn)
        .await
        .context("reading the chain head")?;
    Ok(seq.max(0) as u64)
}

/// Samples the database's backends every `SAMPLE_EVERY` until told to stop.
async fn sample(url: String, mut stop: tokio::sync::watch::Receiver<bool>) -> Result<LockSamples> {
    let mut conn = PgConnection::connect(&url)
        .await
        .context("the sampler's connection")?;
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut s = LockSamples::default();
    let mut lease_holder: Option<String> = None;
    let mut lease_holders = std::collections::BTreeSet::new();
    let mut first = None;
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let rows: Vec<Backend> = sqlx::query_as(
            "SELECT state, wait_event_type, wait_event, backend_xid IS NOT NULL FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND backend_type = 'client backend'",
        )
        .fetch_all(&mut conn)
        .await
        .context("reading pg_stat_activity")?;
        last = Instant::now();
        first.get_or_insert(last);
        s.samples += 1;
        let mut waiter = false;
        let mut holders = 0;
        for (state, kind, event, has_xid) in rows {
            let locked = kind.as_deref() == Some("Lock");
            match state.as_deref() {
                Some("active") => {
                    s.active += 1;
                    let label = match (kind.as_deref(), event.as_deref()) {
                        (Some(k), Some(e)) => format!("{k}/{e}"),
                        (Some(k), None) => k.to_owned(),
                        _ => "running (no wait event)".to_owned(),
                    };
                    if locked {
                        s.lock_waiting += 1;
                        waiter = true;
                    } else if has_xid {
                        holders += 1;
                        *s.holder.entry(format!("active: {label}")).or_insert(0) += 1;
                    }
                    *s.by_wait.entry(label).or_insert(0) += 1;
                }
                Some("idle in transaction") => {
                    s.idle_in_transaction += 1;
                    if has_xid {
                        holders += 1;
                        *s.holder
                            .entry("idle in transaction (between statements)".to_owned())
                            .or_insert(0) += 1;
                    }
                }
                _ => {}
            }
        }
        if holders == 0 {
            *s.holder.entry("none".to_owned()).or_insert(0) += 1;
        }
        let holder: Option<String> =
            sqlx::query_scalar("SELECT holder FROM leases WHERE name = 'job:alerts'")
                .fetch_optional(&mut conn)
                .await
                .context("reading the alert job's lease")?;
        if let Some(h) = holder {
            if lease_holder.as_ref().is_some_and(|prev| *prev != h) {
                s.alert_lease_changes += 1;
            }
            lease_holders.insert(h.clone());
            lease_holder = Some(h);
        }
        if waiter {
            s.samples_with_waiter += 1;
        }
    }
    s.span = first.map_or(Duration::ZERO, |f| last.duration_since(f));
    s.alert_lease_holders = lease_holders.len();
    let _ = conn.close().await;
    Ok(s)
}

/// CPU ticks (USER_HZ) of the whole machine and of some processes.
struct Ticks {
    total: u64,
    idle: u64,
    servers: u64,
    bench: u64,
}

impl Ticks {
    fn shares_since(&self, before: &Ticks) -> CpuShares {
        let total = self.total.saturating_sub(before.total).max(1) as f64;
        CpuShares {
            busy: (total - self.idle.saturating_sub(before.idle) as f64) / total,
            servers: self.servers.saturating_sub(before.servers) as f64 / total,
            bench: self.bench.saturating_sub(before.bench) as f64 / total,
        }
    }
}

/// Reads `/proc/stat` and the processes' `/proc/PID/stat`; `None` off Linux.
fn cpu_ticks(pids: &[u32]) -> Option<Ticks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    if cpu.len() < 5 {
        return None;
    }
    let process = |path: String| -> Option<u64> {
        let text = std::fs::read_to_string(path).ok()?;
        let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    };
    Some(Ticks {
        total: cpu.iter().sum(),
        idle: cpu[3] + cpu[4],
        servers: pids
            .iter()
            .filter_map(|p| process(format!("/proc/{p}/stat")))
            .sum(),
        bench: process("/proc/self/stat".to_owned()).unwrap_or(0),
    })
}

/// A log line or error without what differs between occurrences: the leading timestamp,
/// break ids, hex strings and port numbers.
fn normalize(line: &str) -> String {
    let mut line = line.trim();
    // tracing's `2026-01-01T00:00:00.000000Z  WARN …`
    if line.len() > 20 && line.as_bytes()[4] == b'-' && line.as_bytes()[10] == b'T' {
        line = line
            .split_once(' ')
            .map_or(line, |(_, rest)| rest.trim_start());
    }
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let hexy = word.len() >= 8 && word.chars().all(|c| c.is_ascii_hexdigit());
        if let Some(rest) = word.strip_prefix("brk_")
            && rest.chars().all(|c| c.is_ascii_hexdigit())
        {
            out.push_str("brk_…");
        } else if hexy {
            out.push('…');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in line.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    // `127.0.0.1:41234` → `127.0.0.1:PORT`
    let mut s = out;
    let mut from = 0;
    while let Some(i) = s[from..].find("127.0.0.1:") {
        let start = from + i + "127.0.0.1:".len();
        let end = s[start..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(s.len(), |e| start + e);
        if end > start {
            s.replace_range(start..end, "PORT");
        }
        from = start;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_b64_is_the_secret() {
        // Standard base64 of 18 bytes, no padding needed.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in SECRET.chunks(3) {
            assert_eq!(chunk.len(), 3);
            let n = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
            for shift in [18, 12, 6, 0] {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            }
        }
        assert_eq!(out, SECRET_B64);
    }

    #[test]
    fn normalize_elides_what_varies() {
        assert_eq!(
            normalize(
                "2026-11-29T10:00:00.123456Z  WARN breakglass: break brk_0a1b2c3d4e held at http://127.0.0.1:41234 failed"
            ),
            "WARN breakglass: break brk_… held at http://127.0.0.1:PORT failed"
        );
    }
}
