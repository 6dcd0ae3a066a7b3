//! The server's resident memory at idle: the real `breakglass serve` (release binary, SQLite
//! in a temp data dir) as its own process, read from `/proc/PID/status` after it started and
//! settled, then again once it settled after a load of procedure files and API requests.
//! The baseline is the same server right after its start: the ratio is what the load left
//! behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use breakglass_custody::keygen;
use serde_json::json;

/// How long the server is left alone before each reading.
pub(crate) const SETTLE: Duration = Duration::from_secs(5);

/// What the bench asks of this run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Procedure files applied (one request of them all).
    pub(crate) procedures: usize,
    /// API requests after the procedures (a mix of lists, readiness, people, metrics).
    pub(crate) requests: usize,
}

/// One way of running the server.
#[derive(Debug, Clone)]
pub(crate) struct IdleRun {
    /// What ran (`serve`, `serve --gateway …`).
    pub(crate) setup: &'static str,
    /// Readings after the start settled.
    pub(crate) started: Reading,
    /// Readings once the load settled.
    pub(crate) loaded: Reading,
    /// The load: applying the procedures, then the requests.
    pub(crate) apply: Duration,
    /// The requests.
    pub(crate) requests: Duration,
}

/// `/proc/PID/status` of the server at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reading {
    /// Resident set (`VmRSS`), KiB.
    pub(crate) rss_kib: u64,
    /// Peak resident set so far (`VmHWM`), KiB.
    pub(crate) hwm_kib: u64,
    /// Threads.
    pub(crate) threads: u64,
}

/// Figures of the idle-memory run.
#[derive(Debug, Clone)]
pub(crate) struct IdleFigures {
    /// The binary that ran.
    pub(crate) binary: PathBuf,
    /// One per set-up.
    pub(crate) runs: Vec<IdleRun>,
}

/// A `serve` process, killed when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release `breakglass` next to the bench.
pub(crate) fn binary() -> Result<PathBuf, String> {
    let path = std::env::current_exe()
        .map_err(|e| format!("the bench's own path: {e}"))?
        .with_file_name(format!("breakglass{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no `breakglass` binary next to the bench at {}: `cargo build --release -p breakglass-cli` first",
            path.display()
        ))
    }
}

/// Runs each set-up in turn.
pub(crate) async fn run(plan: Plan, binary: &Path) -> Result<IdleFigures> {
    let mut runs = Vec::new();
    for (setup, extra) in [
        ("`serve` (SQLite)", &[][..]),
        (
            "`serve --gateway 127.0.0.1:0` (SQLite, PostgreSQL gateway with its relay threads)",
            &["--gateway", "127.0.0.1:0"][..],
        ),
    ] {
        runs.push(
            one(plan, binary, setup, extra)
                .await
                .with_context(|| format!("idle memory of {setup}"))?,
        );
    }
    Ok(IdleFigures {
        binary: binary.to_owned(),
        runs,
    })
}

async fn one(plan: Plan, binary: &Path, setup: &'static str, extra: &[&str]) -> Result<IdleRun> {
    let dir = tempfile::tempdir().context("temp data dir")?;
    let served = start(binary, dir.path(), extra)?;
    let pid = served.child.id();
    tokio::time::sleep(SETTLE).await;
    let started = read(pid)?;

    let token = std::fs::read_to_string(dir.path().join("admin.token"))
        .context("the server's admin token")?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .context("HTTP client")?;
    let auth = format!("Bearer {}", token.trim());
    let keys: Vec<String> = (0..8).map(|_| keygen().1.canonical().to_owned()).collect();
    let files: Vec<serde_json::Value> = (0..plan.procedures)
        .map(|i| json!({"name": format!("p{i:05}.yaml"), "content": procedure(i, &keys)}))
        .collect();
    let t = Instant::now();
    let r = http
        .post(format!("{}/api/procedures/apply", served.url))
        .header("authorization", &auth)
        .json(&json!({ "files": files }))
        .send()
        .await
        .context("applying the procedures")?;
    ensure!(
        r.status().is_success(),
        "applying the procedures: {} {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
    let apply = t.elapsed();
    eprintln!(
        "[9] {setup}: {} procedures applied in {:.1} s; {} requests",
        plan.procedures,
        apply.as_secs_f64(),
        plan.requests
    );
    let paths = [
        "/api/procedures",
        "/api/readiness",
        "/api/people",
        "/api/breaks",
        "/api/audit?limit=100",
        "/metrics",
    ];
    let t = Instant::now();
    for i in 0..plan.requests {
        let path = paths[i % paths.len()];
        let r = http
            .get(format!("{}{path}", served.url))
            .header("authorization", &auth)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = r.status();
        let _ = r.bytes().await;
        ensure!(status.is_success(), "GET {path}: {status}");
    }
    let requests = t.elapsed();
    tokio::time::sleep(SETTLE).await;
    let loaded = read(pid)?;
    Ok(IdleRun {
        setup,
        started,
        loaded,
        apply,
        requests,
    })
}

/// Starts `binary serve` on 127.0.0.1:0 with the data dir `dir`; waits for its address.
fn start(binary: &Path, dir: &Path, extra: &[&str]) -> Result<Served> {
    let mut child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env_remove("BREAKGLASS_TOKEN")
        .env_remove("BREAKGLASS_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} serve", binary.display()))?;
    let stderr = child.stderr.take().context("the server's stderr")?;
    let mut served = Served {
        child,
        url: String::new(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads the log for the server's whole life, so its pipe never fills.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("breakglass serving on ") {
                let _ = tx.send(rest.split(' ').next().unwrap_or_default().to_owned());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => served.url = url,
        Err(_) => bail!("the server did not report its address within 60 s"),
    }
    Ok(served)
}

/// `VmRSS`, `VmHWM` and `Threads` of process `pid`.
fn read(pid: u32) -> Result<Reading> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("/proc/{pid}/status"))?;
    let field = |key: &str| -> Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("{key} in /proc/{pid}/status"))
    };
    Ok(Reading {
        rss_kib: field("VmRSS")?,
        hwm_kib: field("VmHWM")?,
        threads: field("Threads")?,
    })
}

/// A procedure file: a sealed secret held by 2 to 6 custodians (quorum 2), a drill schedule and
/// a rotation policy, no alert channel (the server runs without a channels file).
pub(crate) fn procedure(i: usize, keys: &[String]) -> String {
    let n = 2 + i % 5;
    let mut s = format!(
        "id: idle-{i:05}\ndescription: generated procedure {i} for the idle-memory benchmark\ntarget:\n  kind: secret\ncustodians:\n"
    );
    for c in 0..n {
        let key = &keys[(i + c) % keys.len()];
        s.push_str(&format!(
            "  - name: custodian-{c}\n    contact: custodian-{c}@example.com\n    key: {key}\n"
        ));
    }
    s.push_str(
        "quorum: 2\nmax_grant: 15m\ndrill:\n  every: 30d\nrotation:\n  max_credential_age: 90d\n",
    );
    s
}

impl Reading {
    /// Resident set in MiB.
    pub(crate) fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    /// Peak resident set in MiB.
    pub(crate) fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_domain::Limits;
    use breakglass_domain::readiness::{self, LintPolicy};

    #[test]
    fn generated_procedures_are_valid() {
        let keys: Vec<String> = (0..8).map(|_| keygen().1.canonical().to_owned()).collect();
        for i in 0..10 {
            let text = procedure(i, &keys);
            readiness::lint_file("p.yaml", &text, &Limits::default(), &LintPolicy::default())
                .unwrap_or_else(|e| panic!("procedure {i} is invalid: {e:?}\n{text}"));
        }
    }

    #[test]
    fn a_reading_of_this_process_has_its_memory_and_threads() {
        let r = read(std::process::id()).expect("reading this process");
        assert!(
            r.rss_kib > 0 && r.hwm_kib >= r.rss_kib && r.threads >= 1,
            "{r:?}"
        );
    }
}
