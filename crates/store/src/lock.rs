//! Procedure locks (`Store::lock_procedure`): a rotation of a procedure's credential excludes
//! opening and approving its breaks on every server sharing the database. In the process, a
//! tokio mutex per procedure; on PostgreSQL, behind it, a session advisory lock taken on a pool
//! connection that is held with the lock, so a server that dies releases its locks with its
//! connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use breakglass_engine::ports::{ProcedureLock, StoreError, StoreResult};
use sha2::{Digest, Sha256};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool};
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

/// What the advisory-lock key of a procedure is derived from, before the procedure id.
const KEY_NAMESPACE: &str = "breakglass:procedure-lock:";

/// The PostgreSQL advisory-lock key of procedure `id`: the first 8 bytes of the SHA-256 of
/// `breakglass:procedure-lock:` followed by the id, read as a big-endian signed 64-bit integer
/// (`pg_advisory_lock(bigint)`). Every server of a deployment derives the same key.
pub fn procedure_lock_key(id: &str) -> i64 {
    let digest = Sha256::digest(format!("{KEY_NAMESPACE}{id}"));
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// One tokio mutex per procedure, for the tasks of this process.
#[derive(Debug, Default, Clone)]
pub(crate) struct LocalLocks(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl LocalLocks {
    /// Waits for procedure `id`'s mutex until `deadline`; `None` when it is still held then.
    pub(crate) async fn lock(&self, id: &str, deadline: Instant) -> Option<OwnedMutexGuard<()>> {
        let mutex = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone();
        tokio::time::timeout_at(deadline, mutex.lock_owned())
            .await
            .ok()
    }
}

/// Takes advisory lock `key` on a pool connection of its own, waiting until `deadline`
/// (PostgreSQL's `lock_timeout`, so the database gives up the wait itself); `None` when it is
/// still held by another session then. `local` (this process's mutex) is released with it.
pub(crate) async fn advisory(
    pool: &AnyPool,
    key: i64,
    deadline: Instant,
    local: OwnedMutexGuard<()>,
) -> StoreResult<Option<ProcedureLock>> {
    // A task of its own, so a caller that stops waiting (a cancelled request) cannot strand
    // the lock: the task runs to its end, and a lock it took but could not hand over is
    // dropped, which releases it.
    tokio::spawn(take(pool.clone(), key, deadline, local))
        .await
        .map_err(|e| StoreError(format!("procedure lock task failed: {e}")))?
}

/// The body of `advisory`, run to its end whatever happens to the caller.
async fn take(
    pool: AnyPool,
    key: i64,
    deadline: Instant,
    local: OwnedMutexGuard<()>,
) -> StoreResult<Option<ProcedureLock>> {
    let conn = tokio::time::timeout_at(deadline, pool.acquire())
        .await
        .map_err(|_| StoreError("no database connection free to take a procedure lock".into()))?
        .map_err(|e| StoreError(e.to_string()))?;
    let mut held = Advisory {
        key,
        conn: Some(conn),
        locked: false,
        local: Some(local),
    };
    let wait_ms = deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .max(1);
    let conn = held.conn()?;
    if let Err(e) = sqlx::query("SELECT set_config('lock_timeout', $1, false)")
        .bind(format!("{wait_ms}ms"))
        .execute(&mut **conn)
        .await
    {
        conn.close_on_drop();
        return Err(StoreError(e.to_string()));
    }
    let locked = sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut **conn)
        .await;
    if let Err(e) = sqlx::query("RESET lock_timeout").execute(&mut **conn).await {
        // A connection whose settings are unknown does not go back to the pool.
        conn.close_on_drop();
        held.locked = locked.is_ok();
        return Err(StoreError(e.to_string()));
    }
    match locked {
        Ok(_) => {
            held.locked = true;
            Ok(Some(ProcedureLock::new(held)))
        }
        Err(e) if is_lock_timeout(&e) => Ok(None),
        Err(e) => Err(StoreError(e.to_string())),
    }
}

/// Whether `e` is PostgreSQL giving up a lock wait (`lock_not_available`, 55P03).
fn is_lock_timeout(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "55P03")
}

/// A held (or, until `locked`, wanted) advisory lock and its connection.
struct Advisory {
    key: i64,
    conn: Option<PoolConnection<Any>>,
    locked: bool,
    local: Option<OwnedMutexGuard<()>>,
}

impl Advisory {
    fn conn(&mut self) -> StoreResult<&mut PoolConnection<Any>> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError("procedure lock without its connection".into()))
    }
}

impl Drop for Advisory {
    fn drop(&mut self) {
        let (Some(mut conn), local) = (self.conn.take(), self.local.take()) else {
            return;
        };
        if !self.locked {
            return;
        }
        let key = self.key;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let unlocked: Result<bool, _> =
                        sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
                            .bind(key)
                            .fetch_one(&mut *conn)
                            .await;
                    if !matches!(unlocked, Ok(true)) {
                        // Closing the session releases every lock it holds.
                        tracing::warn!(
                            key,
                            "procedure lock not released by unlock; closing its connection"
                        );
                        conn.close_on_drop();
                    }
                    drop(conn);
                    // Only now may the next task of this process go for the lock.
                    drop(local);
                });
            }
            // No runtime left (the process is ending): closing the connection releases it.
            Err(_) => drop(conn.detach()),
        }
    }
}
