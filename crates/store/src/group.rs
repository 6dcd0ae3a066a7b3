//! Group commit for SQLite: concurrent write transactions share one durable `COMMIT`.
//!
//! SQLite has one writer at a time and a durable commit costs an fsync, so independent
//! transactions committed one by one are bounded by fsync latency. Here every logical write
//! transaction runs inside a `SAVEPOINT` of one long SQL transaction owned by the store. When a
//! logical transaction commits while other writers are queued, it waits; the next writer
//! releases its savepoint in the same call that opens its own (one statement fewer per logical
//! transaction), and the last writer of the batch (or the batch size limit) issues the single
//! `COMMIT` and wakes everyone with its result. No caller returns before its changes are durable, and every
//! writer still sees the chain head left by the one before it, so the audit chain stays linear.
//!
//! sqlx has no group commit and no crate offers one for SQLite, hence this module.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use breakglass_audit::Head;
use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

/// Most logical transactions in one `COMMIT`.
const MAX_BATCH: usize = 256;

/// The shared writer state of one SQLite store.
#[derive(Debug)]
pub(crate) struct Group {
    state: Arc<Mutex<State>>,
    waiting: Arc<AtomicUsize>,
    pool: AnyPool,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    tx: Option<Transaction<'static, Any>>,
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
    /// A logical transaction is open (or was abandoned) inside `SAVEPOINT lt`.
    dirty: bool,
    /// The last logical transaction committed, but its savepoint is still open: its `RELEASE`
    /// goes with the next writer's `SAVEPOINT`, in one call, or the batch's `COMMIT` (which
    /// releases every savepoint) makes it unnecessary.
    release_pending: bool,
    /// The audit head as of the last committed logical transaction of this batch (`None`:
    /// not read yet). Cached so each logical commit skips a read, and written to the
    /// `audit_head` row once per batch, in the same `COMMIT`.
    head: Option<Option<Head>>,
    /// `head` differs from the `audit_head` row.
    head_dirty: bool,
}

/// One logical write transaction holding the writer lock.
pub(crate) struct Writer {
    guard: Option<OwnedMutexGuard<State>>,
    group: Arc<Group>,
}

/// Decrements the queue count even when a waiting `begin` is cancelled.
struct Queued(Arc<AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Group {
    pub(crate) fn new(pool: AnyPool) -> Arc<Group> {
        Arc::new(Group {
            state: Arc::new(Mutex::new(State::default())),
            waiting: Arc::new(AtomicUsize::new(0)),
            pool,
        })
    }

    /// Waits for the writer lock and opens a savepoint for one logical transaction.
    pub(crate) async fn begin(self: &Arc<Self>) -> Result<Writer, sqlx::Error> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let queued = Queued(self.waiting.clone());
        let mut guard = self.state.clone().lock_owned().await;
        drop(queued);
        cleanup(&mut guard).await?;
        if guard.tx.is_none() {
            guard.tx = Some(self.pool.begin_with("BEGIN IMMEDIATE").await?);
        }
        // One call to SQLite's worker thread instead of two: the previous writer's savepoint
        // is released before this one's opens, so a rollback of this one never reaches the
        // previous writer's rows.
        let release_pending = guard.release_pending;
        let opened = match guard.tx.as_mut() {
            Some(tx) if release_pending => {
                sqlx::raw_sql("RELEASE SAVEPOINT lt; SAVEPOINT lt")
                    .execute(&mut **tx)
                    .await
            }
            Some(tx) => sqlx::query("SAVEPOINT lt").execute(&mut **tx).await,
            None => Ok(Default::default()),
        };
        if let Err(e) = opened {
            // Whether the RELEASE ran is unknown: commit what the batch holds (the writers
            // before this one), so nobody waits on a batch left in an unknown state.
            flush(&mut guard).await;
            return Err(e);
        }
        guard.release_pending = false;
        guard.dirty = true;
        Ok(Writer {
            guard: Some(guard),
            group: self.clone(),
        })
    }
}

/// Rolls back an abandoned logical transaction.
async fn cleanup(state: &mut State) -> Result<(), sqlx::Error> {
    if state.dirty {
        if let Some(tx) = state.tx.as_mut() {
            sqlx::query("ROLLBACK TO SAVEPOINT lt")
                .execute(&mut **tx)
                .await?;
            sqlx::query("RELEASE SAVEPOINT lt")
                .execute(&mut **tx)
                .await?;
        }
        state.dirty = false;
    }
    Ok(())
}

/// Commits the batch and tells every waiter.
async fn flush(state: &mut State) {
    let result = match cleanup(state).await {
        Err(e) => Err(e.to_string()),
        Ok(()) => match write_head(state).await {
            Err(e) => Err(e.to_string()),
            Ok(()) => match state.tx.take() {
                Some(tx) => tx.commit().await.map_err(|e| e.to_string()),
                None => Ok(()),
            },
        },
    };
    // The COMMIT (or the rollback of a failed one) ended every savepoint.
    state.release_pending = false;
    // The next batch reads the head afresh.
    state.head = None;
    state.head_dirty = false;
    if result.is_err() {
        // A failed COMMIT leaves nothing committed; the transaction is gone either way.
        state.tx = None;
    }
    for w in state.waiters.drain(..) {
        let _ = w.send(result.clone());
    }
}

/// Writes the cached head to the `audit_head` row.
async fn write_head(state: &mut State) -> Result<(), sqlx::Error> {
    if let (true, Some(Some(h)), Some(tx)) = (state.head_dirty, state.head, state.tx.as_mut()) {
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(i64::try_from(h.seq).unwrap_or(i64::MAX))
            .bind(h.hash.to_hex())
            .execute(&mut **tx)
            .await?;
    }
    state.head_dirty = false;
    Ok(())
}

impl Writer {
    /// The batch's cached audit head, when known.
    pub(crate) fn cached_head(&self) -> Option<Option<Head>> {
        self.guard.as_ref().and_then(|g| g.head)
    }

    /// Caches the head read from the row.
    pub(crate) fn remember_head(&mut self, head: Option<Head>) {
        if let Some(g) = self.guard.as_mut() {
            g.head = Some(head);
        }
    }

    /// The connection of the open SQL transaction.
    pub(crate) fn conn(&mut self) -> Result<&mut AnyConnection, sqlx::Error> {
        match self.guard.as_mut().and_then(|g| g.tx.as_mut()) {
            Some(tx) => Ok(&mut **tx),
            None => Err(sqlx::Error::PoolClosed),
        }
    }

    /// Commits this logical transaction durably, sharing the `COMMIT` with queued writers.
    /// `new_head` is the audit head after its entries, when it appended any.
    pub(crate) async fn commit(mut self, new_head: Option<Head>) -> Result<(), String> {
        let Some(mut guard) = self.guard.take() else {
            return Err("transaction already finished".into());
        };
        // Its savepoint stays open until the next writer's `begin` releases it (or the batch's
        // `COMMIT` does): one statement fewer per logical transaction.
        guard.dirty = false;
        guard.release_pending = true;
        if let Some(h) = new_head {
            guard.head = Some(Some(h));
            guard.head_dirty = true;
        }
        let (done, mut result) = oneshot::channel();
        guard.waiters.push(done);
        if self.group.waiting.load(Ordering::SeqCst) == 0 || guard.waiters.len() >= MAX_BATCH {
            flush(&mut guard).await;
            drop(guard);
        } else {
            // Someone is queued: they commit the batch. If they vanish (cancelled or failed
            // before committing), the writer lock frees up and this waiter flushes itself.
            drop(guard);
            loop {
                tokio::select! {
                    r = &mut result => return r.unwrap_or_else(|_| Err("group commit abandoned".into())),
                    _ = tokio::time::sleep(Duration::from_millis(2)) => {
                        if let Ok(mut g) = self.group.state.clone().try_lock_owned() {
                            flush(&mut g).await;
                        }
                    }
                }
            }
        }
        result
            .try_recv()
            .unwrap_or_else(|_| Err("group commit lost its result".into()))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Dropped without commit: the savepoint is rolled back by whoever takes the lock next.
        // If nobody is queued, roll it back now so SQLite's write lock is not held idle.
        if let Some(guard) = self.guard.take() {
            drop(guard);
            if self.group.waiting.load(Ordering::SeqCst) == 0
                && let Ok(handle) = tokio::runtime::Handle::try_current()
            {
                let state = self.group.state.clone();
                handle.spawn(async move {
                    let mut g = state.lock_owned().await;
                    if g.dirty || g.tx.is_some() {
                        flush(&mut g).await;
                    }
                });
            }
        }
    }
}
