//! Audit append with durability: durable commits of audit events through the store's `Tx`,
//! one event per commit and a batch per commit, against raw INSERTs of a row of the same shape
//! into a scratch table of the same database, one commit each (the database's own commit cost).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use breakglass_audit::Draft;
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
}

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

/// The four workloads, in the order they ran.
#[derive(Debug, Clone)]
pub(crate) struct AppendFigures {
    /// Raw INSERT, one row per commit (baseline).
    pub(crate) raw_single: Workload,
    /// Store commit, one event per commit.
    pub(crate) store_single: Workload,
    /// Store commit, `batch_size` events per commit.
    pub(crate) store_batch: Workload,
    /// Raw INSERT, `batch_size` rows per commit (baseline for the batch).
    pub(crate) raw_batch: Workload,
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

    store.close().await;
    Ok(AppendFigures {
        raw_single,
        store_single,
        store_batch,
        raw_batch,
    })
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
