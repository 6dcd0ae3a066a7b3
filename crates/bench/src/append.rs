//! Audit append with durability: durable commits of audit events through the store's `Tx`,
//! one event per commit from one task, one event per commit from many concurrent tasks (which
//! the SQLite store groups into shared durable commits), and a batch per commit, against raw
//! INSERTs of a row of the same shape into a scratch table of the same database, one commit
//! each (the database's own commit cost). Afterwards the whole chain is read back and verified.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use breakglass_audit::{Draft, Verifier, verify_against_head};
use breakglass_engine::ports::Store;
use breakglass_engine::{Clock, SystemClock};
use breakglass_store::SqlStore;
use serde_json::json;
use sha2::{Digest, Sha256};

/// How much to append.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Single-event commits (and as many single-row raw commits).
    pub(crate) commits: usize,
    /// Batched commits.
    pub(crate) batches: usize,
    /// Events (rows) per batched commit.
    pub(crate) batch_size: usize,
    /// Concurrent writer tasks of the group-commit workload.
    pub(crate) writers: usize,
    /// Single-event commits of the group-commit workload, shared by all its writers.
    pub(crate) concurrent_commits: usize,
}

/// Longest the concurrent workload may take before it is reported as hung.
const CONCURRENT_TIMEOUT: Duration = Duration::from_secs(300);

/// Entries read per page when the chain is read back.
const PAGE: i64 = 5000;

/// Untimed commits of each kind before its timed run, to fill caches and connections.
pub(crate) const WARMUP: usize = 20;

/// One timed workload.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    /// What was done.
    pub(crate) label: String,
    /// Whether it is a baseline (raw SQL) row.
    pub(crate) baseline: bool,
    /// Durable commits.
    pub(crate) commits: usize,
    /// Events (rows) committed.
    pub(crate) events: usize,
    /// Wall time.
    pub(crate) elapsed: Duration,
}

impl Workload {
    /// Commits per second.
    pub(crate) fn commits_per_s(&self) -> f64 {
        self.commits as f64 / self.elapsed.as_secs_f64()
    }

    /// Events per second.
    pub(crate) fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// The five workloads, in the order they ran, and the check of the chain after them.
#[derive(Debug, Clone)]
pub(crate) struct AppendFigures {
    /// Raw INSERT, one row per commit (baseline).
    pub(crate) raw_single: Workload,
    /// Store commit, one event per commit, one task.
    pub(crate) store_single: Workload,
    /// Store commit, one event per commit, `writers` concurrent tasks.
    pub(crate) store_concurrent: Workload,
    /// Latency of each `begin` + `commit` of the concurrent workload (queueing included).
    pub(crate) concurrent_latency: Vec<Duration>,
    /// Store commit, `batch_size` events per commit.
    pub(crate) store_batch: Workload,
    /// Raw INSERT, `batch_size` rows per commit (baseline for the batch).
    pub(crate) raw_batch: Workload,
    /// Entries in the chain after every workload, all verified (untimed).
    pub(crate) chain_entries: u64,
    /// Whether the store groups concurrent commits (SQLite) or not (PostgreSQL, so far).
    pub(crate) group_commit: bool,
}

fn draft(n: usize, time_ms: i64) -> Draft {
    Draft {
        time_ms,
        actor: "bench".into(),
        kind: "bench.append".into(),
        procedure: Some("bench-secret".into()),
        break_id: None,
        payload: json!({"n": n, "note": "audit append benchmark"}),
    }
}

/// Runs the workloads on `store` (which it closes at the end).
pub(crate) async fn run(store: SqlStore, plan: Plan) -> Result<AppendFigures> {
    let group_commit = store.backend() == "sqlite";
    let pool = store.pool();
    sqlx::query(
        "CREATE TABLE bench_scratch (id BIGINT PRIMARY KEY, time_ms BIGINT NOT NULL, actor TEXT NOT NULL, kind TEXT NOT NULL, \
         payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)",
    )
    .execute(pool)
    .await
    .context("creating the scratch table")?;
    let mut raw = Raw {
        store: &store,
        next_id: 0,
    };

    raw.commits(WARMUP, 1).await?;
    let raw_single = timed(
        "raw INSERT, 1 row per commit".into(),
        true,
        plan.commits,
        1,
        raw.commits(plan.commits, 1),
    )
    .await?;

    store_commits(&store, WARMUP, 1).await?;
    let store_single = timed(
        "store commit, 1 event per commit".into(),
        false,
        plan.commits,
        1,
        store_commits(&store, plan.commits, 1),
    )
    .await?;

    // Concurrent writers: warm up with one commit per writer (opens the pool's connections).
    concurrent(&store, plan.writers, plan.writers).await?;
    let t = Instant::now();
    let concurrent_latency = concurrent(&store, plan.writers, plan.concurrent_commits).await?;
    let store_concurrent = Workload {
        label: format!(
            "store commit, 1 event per commit, {} concurrent writers",
            plan.writers
        ),
        baseline: false,
        commits: plan.concurrent_commits,
        events: plan.concurrent_commits,
        elapsed: t.elapsed(),
    };

    let store_batch = timed(
        format!("store commit, {} events per commit", plan.batch_size),
        false,
        plan.batches,
        plan.batch_size,
        store_commits(&store, plan.batches, plan.batch_size),
    )
    .await?;

    let raw_batch = timed(
        format!("raw INSERT, {} rows per commit", plan.batch_size),
        true,
        plan.batches,
        plan.batch_size,
        raw.commits(plan.batches, plan.batch_size),
    )
    .await?;

    // Sanity check (untimed): every committed event is in the chain, and the chain verifies.
    let committed = WARMUP
        + plan.commits
        + plan.writers
        + plan.concurrent_commits
        + plan.batches * plan.batch_size;
    let chain_entries = verify_chain(&store).await?;
    ensure!(
        chain_entries == committed as u64,
        "the audit chain holds {chain_entries} entries but {committed} events were committed"
    );

    store.close().await;
    Ok(AppendFigures {
        raw_single,
        store_single,
        store_concurrent,
        concurrent_latency,
        store_batch,
        raw_batch,
        chain_entries,
        group_commit,
    })
}

/// `total` single-event store commits spread over `writers` tasks that each take the next
/// commit from a shared counter; returns the latency of every commit. Errors, panics and a run
/// past [`CONCURRENT_TIMEOUT`] are reported with how far the workload got.
async fn concurrent(store: &SqlStore, writers: usize, total: usize) -> Result<Vec<Duration>> {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (store, next, done) = (store.clone(), next.clone(), done.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(total / writers + 1);
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let t = Instant::now();
                let tx = store
                    .begin()
                    .await
                    .with_context(|| format!("store begin (commit {n})"))?;
                tx.commit(vec![draft(n, SystemClock.now().0)], vec![])
                    .await
                    .with_context(|| format!("store commit (commit {n})"))?;
                latencies.push(t.elapsed());
                done.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let collect = async {
        let mut all = Vec::with_capacity(total);
        while let Some(joined) = tasks.join_next().await {
            all.extend(joined.map_err(|e| anyhow!("a writer task panicked: {e}"))??);
        }
        Ok::<_, anyhow::Error>(all)
    };
    match tokio::time::timeout(CONCURRENT_TIMEOUT, collect).await {
        Ok(Ok(all)) => Ok(all),
        Ok(Err(e)) => Err(e.context(format!(
            "{writers} concurrent writers: failed after {} of {total} commits",
            done.load(Ordering::SeqCst)
        ))),
        Err(_) => Err(anyhow!(
            "{writers} concurrent writers hung: {} of {total} commits done after {} s",
            done.load(Ordering::SeqCst),
            CONCURRENT_TIMEOUT.as_secs()
        )),
    }
}

/// Reads the whole chain back, verifies it with `Verifier` and against the stored head, and
/// returns how many entries it holds.
async fn verify_chain(store: &SqlStore) -> Result<u64> {
    let mut tx = store.read().await.context("store read")?;
    let mut verifier = Verifier::new();
    let mut from = 1;
    loop {
        let page = tx
            .audit_entries(from, PAGE)
            .await
            .context("reading the audit chain")?;
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        for entry in &page {
            verifier.push(entry).with_context(|| {
                format!("the audit chain does not verify at entry {}", entry.seq)
            })?;
        }
    }
    let head = tx
        .audit_head()
        .await
        .context("reading the audit head")?
        .context("no audit head after the run")?;
    drop(tx);
    let report = verifier.finish();
    verify_against_head(&report, &head).context("the audit chain does not reach its head")?;
    Ok(report.entries)
}

async fn timed(
    label: String,
    baseline: bool,
    commits: usize,
    per_commit: usize,
    work: impl Future<Output = Result<()>>,
) -> Result<Workload> {
    let t = Instant::now();
    work.await?;
    Ok(Workload {
        label,
        baseline,
        commits,
        events: commits * per_commit,
        elapsed: t.elapsed(),
    })
}

/// `commits` store transactions of `per_commit` drafts each: `begin`, then `commit`.
async fn store_commits(store: &SqlStore, commits: usize, per_commit: usize) -> Result<()> {
    for c in 0..commits {
        let now = SystemClock.now().0;
        let drafts = (0..per_commit)
            .map(|i| draft(c * per_commit + i, now))
            .collect();
        let tx = store.begin().await.context("store begin")?;
        tx.commit(drafts, vec![]).await.context("store commit")?;
    }
    Ok(())
}

/// Raw INSERTs of rows shaped like audit rows (same columns, similar sizes).
struct Raw<'a> {
    store: &'a SqlStore,
    next_id: i64,
}

impl Raw<'_> {
    async fn commits(&mut self, commits: usize, per_commit: usize) -> Result<()> {
        let payload = json!({"n": 0, "note": "audit append benchmark"}).to_string();
        let hash = hex::encode(Sha256::digest(b"bench"));
        for _ in 0..commits {
            let now = SystemClock.now().0;
            let mut tx = self.store.pool().begin().await.context("raw begin")?;
            for _ in 0..per_commit {
                self.next_id += 1;
                sqlx::query(
                    "INSERT INTO bench_scratch (id, time_ms, actor, kind, payload, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(self.next_id)
                .bind(now)
                .bind("bench".to_owned())
                .bind("bench.append".to_owned())
                .bind(payload.clone())
                .bind(hash.clone())
                .bind(hash.clone())
                .execute(&mut *tx)
                .await
                .context("raw insert")?;
            }
            tx.commit().await.context("raw commit")?;
        }
        Ok(())
    }
}
