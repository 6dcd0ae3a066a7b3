//! The store: one implementation of the engine's `Store` over sqlx's `Any` driver, serving
//! SQLite (the embedded default, one file in the data dir) and PostgreSQL. Queries are
//! written once in the SQL both dialects accept (`$N` placeholders, `ON CONFLICT`); only the
//! schema and the write lock differ per backend.
//!
//! Only this crate knows SQL. It stores ciphertexts, commitments and hashes, never a data
//! key, a plaintext share or a secret.

mod group;
mod lock;
mod rows;
mod schema;

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use breakglass_audit::{Draft, Entry, Head, SignedCheckpoint};
use breakglass_domain::{Break, Timestamp};
use breakglass_engine::ports::{
    AckState, AttemptRecord, AttestationRecord, AuditAbout, ChannelTest, DeliveryAttempt,
    DrillRecord, GrantRecord, KitExport, OutboxItem, OutboxRow, ProcedureLock, SpoolImport,
    StatementChunk, StatementRecord, Store, StoreError, StoreResult, StoredActor, StoredProcedure,
    StoredSeal, TargetReport, TotpRecord, Tx,
};
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Row, Transaction};

pub use lock::procedure_lock_key;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A store on SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// SQLite writers share commits (see `group`); `None` on PostgreSQL.
    group: Option<std::sync::Arc<group::Group>>,
    /// This process's side of the procedure locks (see `lock`).
    locks: lock::LocalLocks,
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError(e.to_string())
}

impl SqlStore {
    /// Opens (creating if needed) the SQLite database at `path`.
    pub async fn open_sqlite(path: &Path) -> StoreResult<SqlStore> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        SqlStore::connect(&url).await
    }

    /// Connects to `url` (`sqlite://…` or `postgres://…`) and applies the schema.
    pub async fn connect(url: &str) -> StoreResult<SqlStore> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError(
                "database URL must start with sqlite:// or postgres://".into(),
            ));
        };
        let options =
            AnyPoolOptions::new().max_connections(if backend == Backend::Sqlite { 4 } else { 8 });
        let options = if backend == Backend::Sqlite {
            options.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL lets readers run beside the single writer; FULL makes every commit
                    // durable before it is acknowledged; the busy timeout queues writers.
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 10000")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options
            .connect(url)
            .await
            .map_err(|e| StoreError(redact_url(&e.to_string(), url)))?;
        let group = (backend == Backend::Sqlite).then(|| group::Group::new(pool.clone()));
        let store = SqlStore {
            pool,
            backend,
            group,
            locks: lock::LocalLocks::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let statements = match self.backend {
            Backend::Sqlite => schema::SQLITE,
            Backend::Postgres => schema::POSTGRES,
        };
        let mut tx = self.pool.begin().await.map_err(db)?;
        if self.backend == Backend::Postgres {
            // Several servers may start at once; one applies the schema at a time.
            sqlx::query("SELECT pg_advisory_xact_lock(7405524812)")
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for statement in statements {
            sqlx::query(*statement)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for (table, column, alter) in schema::ADDED_COLUMNS {
            let exists: i64 = match self.backend {
                Backend::Sqlite => sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2",
                ),
                Backend::Postgres => sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
                ),
            }
            .bind(*table)
            .bind(*column)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            if exists == 0 {
                sqlx::query(*alter).execute(&mut *tx).await.map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)
    }

    /// The pool (for tests that tamper with tables on purpose).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Records (or replaces) the holder of a break's shares or gateway login.
const UPSERT_HOLDER: &str = "INSERT INTO share_holders (break_id, instance, url) VALUES ($1, $2, $3) \
     ON CONFLICT (break_id) DO UPDATE SET instance = excluded.instance, url = excluded.url";

/// The holder of a break's shares or gateway login: `(instance, url)`.
async fn read_holder<'e>(
    on: impl sqlx::Executor<'e, Database = Any>,
    break_id: &str,
) -> StoreResult<Option<(String, String)>> {
    let row = sqlx::query("SELECT instance, url FROM share_holders WHERE break_id = $1")
        .bind(break_id.to_owned())
        .fetch_optional(on)
        .await
        .map_err(db)?;
    row.map(|r| {
        Ok((
            r.try_get("instance").map_err(db)?,
            r.try_get("url").map_err(db)?,
        ))
    })
    .transpose()
}

/// Never echo a connection URL (it may carry a password) in an error.
fn redact_url(message: &str, url: &str) -> String {
    message.replace(url, "[database url]")
}

#[async_trait]
impl Store for SqlStore {
    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        if let Some(group) = &self.group {
            return Ok(Box::new(SqlTx {
                conn: Conn::Group(group.begin().await.map_err(db)?),
            }));
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Every write appends to the audit chain, so writers queue on its head row.
        sqlx::query("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        Ok(Box::new(SqlTx {
            conn: Conn::Own(tx),
        }))
    }

    async fn read(&self) -> StoreResult<Box<dyn Tx>> {
        // One snapshot for the whole read: SQLite's WAL readers have one by nature; PostgreSQL
        // needs REPEATABLE READ (its default gives each statement its own snapshot).
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin().await.map_err(db)?,
            Backend::Postgres => self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(db)?,
        };
        Ok(Box::new(SqlTx {
            conn: Conn::Own(tx),
        }))
    }

    fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> StoreResult<bool> {
        if self.backend == Backend::Sqlite {
            // One server per SQLite file: it holds every lease.
            return Ok(true);
        }
        // The database's clock decides expiry, so servers with skewed clocks agree.
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let held: Option<String> = sqlx::query_scalar(
            "INSERT INTO leases (name, holder, expires_at) \
             VALUES ($1, $2, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder \
                OR leases.expires_at < (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT \
             RETURNING holder",
        )
        .bind(name.to_owned())
        .bind(holder.to_owned())
        .bind(ttl_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(held.as_deref() == Some(holder))
    }

    async fn lease_alive(&self, name: &str) -> StoreResult<bool> {
        if self.backend == Backend::Sqlite {
            return Ok(true);
        }
        let alive: Option<i64> = sqlx::query_scalar(
            "SELECT 1::BIGINT FROM leases WHERE name = $1 \
             AND expires_at >= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        )
        .bind(name.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(alive.is_some())
    }

    async fn share_holder(&self, break_id: &str) -> StoreResult<Option<(String, String)>> {
        if self.backend == Backend::Sqlite {
            return Ok(None);
        }
        read_holder(&self.pool, break_id).await
    }

    async fn put_share_holder(
        &self,
        break_id: &str,
        holder: Option<(&str, &str)>,
    ) -> StoreResult<()> {
        if self.backend == Backend::Sqlite {
            return Ok(());
        }
        match holder {
            Some((instance, url)) => sqlx::query(UPSERT_HOLDER)
                .bind(break_id.to_owned())
                .bind(instance.to_owned())
                .bind(url.to_owned()),
            None => sqlx::query("DELETE FROM share_holders WHERE break_id = $1")
                .bind(break_id.to_owned()),
        }
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn instance_gateway(&self, instance: &str) -> StoreResult<Option<(String, bool)>> {
        if self.backend == Backend::Sqlite {
            return Ok(None);
        }
        let row = sqlx::query("SELECT address, tls FROM instance_gateways WHERE instance = $1")
            .bind(instance.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| {
            Ok((
                r.try_get("address").map_err(db)?,
                r.try_get::<i64, _>("tls").map_err(db)? != 0,
            ))
        })
        .transpose()
    }

    async fn put_instance_gateway(
        &self,
        instance: &str,
        address: &str,
        tls: bool,
    ) -> StoreResult<()> {
        if self.backend == Backend::Sqlite {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO instance_gateways (instance, address, tls) VALUES ($1, $2, $3) \
             ON CONFLICT (instance) DO UPDATE SET address = excluded.address, tls = excluded.tls",
        )
        .bind(instance.to_owned())
        .bind(address.to_owned())
        .bind(i64::from(tls))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn instance_gateways(&self) -> StoreResult<Vec<(String, String, bool)>> {
        if self.backend == Backend::Sqlite {
            return Ok(Vec::new());
        }
        let rows = sqlx::query("SELECT instance, address, tls FROM instance_gateways")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("instance").map_err(db)?,
                    r.try_get("address").map_err(db)?,
                    r.try_get::<i64, _>("tls").map_err(db)? != 0,
                ))
            })
            .collect()
    }

    async fn put_cancel_key(
        &self,
        pid: i32,
        instance: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        if self.backend == Backend::Sqlite {
            return Ok(true);
        }
        // A row past its expiry (its server died with the session open) gives its pid up.
        let inserted = sqlx::query(
            "INSERT INTO gateway_cancel_keys (pid, instance, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (pid) DO UPDATE SET instance = excluded.instance, expires_at = excluded.expires_at \
             WHERE gateway_cancel_keys.expires_at <= $4",
        )
        .bind(i64::from(pid))
        .bind(instance.to_owned())
        .bind(expires_at.0)
        .bind(now.0)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn delete_cancel_key(&self, pid: i32, instance: &str, now: Timestamp) -> StoreResult<()> {
        if self.backend == Backend::Sqlite {
            return Ok(());
        }
        // The expired rows (of servers that died with sessions open) go too.
        sqlx::query(
            "DELETE FROM gateway_cancel_keys WHERE (pid = $1 AND instance = $2) OR expires_at <= $3",
        )
        .bind(i64::from(pid))
        .bind(instance.to_owned())
        .bind(now.0)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn cancel_key_gateway(
        &self,
        pid: i32,
        now: Timestamp,
    ) -> StoreResult<Option<(String, String, bool)>> {
        if self.backend == Backend::Sqlite {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT k.instance, g.address, g.tls FROM gateway_cancel_keys k \
             JOIN instance_gateways g ON g.instance = k.instance \
             WHERE k.pid = $1 AND k.expires_at > $2",
        )
        .bind(i64::from(pid))
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| {
            Ok((
                r.try_get("instance").map_err(db)?,
                r.try_get("address").map_err(db)?,
                r.try_get::<i64, _>("tls").map_err(db)? != 0,
            ))
        })
        .transpose()
    }

    async fn lock_procedure(
        &self,
        id: &str,
        wait: std::time::Duration,
    ) -> StoreResult<Option<ProcedureLock>> {
        let deadline = tokio::time::Instant::now() + wait;
        // Tasks of this process queue here first, so each holds a pool connection only once
        // it is next in line.
        let Some(local) = self.locks.lock(id, deadline).await else {
            return Ok(None);
        };
        if self.backend == Backend::Sqlite {
            // One server per SQLite file: the process's lock is the whole lock.
            return Ok(Some(ProcedureLock::new(local)));
        }
        lock::advisory(&self.pool, procedure_lock_key(id), deadline, local).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        if self.backend == Backend::Sqlite {
            return Ok(());
        }
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name.to_owned())
            .bind(holder.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}

struct SqlTx {
    conn: Conn,
}

/// Where a transaction's statements go.
enum Conn {
    /// A transaction of its own (reads; PostgreSQL writes).
    Own(Transaction<'static, Any>),
    /// A savepoint in SQLite's shared write transaction (group commit).
    Group(group::Writer),
}

impl SqlTx {
    fn c(&mut self) -> StoreResult<&mut sqlx::AnyConnection> {
        match &mut self.conn {
            Conn::Own(tx) => Ok(&mut **tx),
            Conn::Group(w) => w.conn().map_err(db),
        }
    }

    /// Makes the transaction durable.
    async fn finish(self) -> StoreResult<()> {
        self.finish_with_head(None).await
    }

    /// Makes the transaction durable; `head` is the audit head after its entries. In a group
    /// the head row is written once per batch; on its own, it is written here.
    async fn finish_with_head(mut self, head: Option<Head>) -> StoreResult<()> {
        match self.conn {
            Conn::Own(_) => {
                if let Some(h) = &head {
                    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                        .bind(i64::try_from(h.seq).unwrap_or(i64::MAX))
                        .bind(h.hash.to_hex())
                        .execute(self.c()?)
                        .await
                        .map_err(db)?;
                }
                let Conn::Own(tx) = self.conn else {
                    return Ok(());
                };
                tx.commit().await.map_err(db)
            }
            Conn::Group(w) => w.commit(head).await.map_err(StoreError),
        }
    }
}

impl SqlTx {
    async fn read_head_row(&mut self) -> StoreResult<Option<Head>> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(self.c()?)
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let seq: i64 = row.try_get(0).map_err(db)?;
        if seq == 0 {
            return Ok(None);
        }
        let hash: String = row.try_get(1).map_err(db)?;
        Ok(Some(Head {
            seq: u64::try_from(seq).map_err(|_| StoreError("negative audit head".into()))?,
            hash: breakglass_audit::Hash::from_str(&hash)
                .map_err(|e| StoreError(format!("audit head hash: {e}")))?,
        }))
    }

    async fn entries_from(&mut self, from: u64, limit: i64) -> StoreResult<Vec<Entry>> {
        let rows = sqlx::query(
            "SELECT seq, time_ms, actor, kind, procedure_id, break_id, payload, prev_hash, hash FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(i64::try_from(from).unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        rows.iter().map(rows::entry).collect()
    }
}

/// `SELECT` of every procedure column, followed by the rest of the query.
macro_rules! select_procedures {
    ($rest:literal) => {
        concat!("SELECT id, spec_yaml, content_hash, source, version, updated_at, seal_id, taint_reason, taint_break, taint_revealed FROM procedures", $rest)
    };
}

/// `SELECT` of every break column, followed by the rest of the query.
macro_rules! select_breaks {
    ($rest:literal) => {
        concat!("SELECT id, procedure_id, seal_id, requester, reason, ticket, duration_ms, quorum, requested_at, approval_deadline, approvals, state, granted_at, deadline, revealed_at, ended_at, closed_by, drill_id FROM breaks", $rest)
    };
}

#[async_trait]
impl Tx for SqlTx {
    async fn procedure(&mut self, id: &str) -> StoreResult<Option<StoredProcedure>> {
        let row = sqlx::query(select_procedures!(" WHERE id = $1"))
            .bind(id.to_owned())
            .fetch_optional(self.c()?)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::procedure).transpose()
    }

    async fn procedures(&mut self) -> StoreResult<Vec<StoredProcedure>> {
        let rows = sqlx::query(select_procedures!(" ORDER BY id"))
            .fetch_all(self.c()?)
            .await
            .map_err(db)?;
        rows.iter().map(rows::procedure).collect()
    }

    async fn put_procedure(&mut self, p: &StoredProcedure) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO procedures (id, spec_yaml, content_hash, source, version, updated_at, seal_id, taint_reason, taint_break, taint_revealed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO UPDATE SET spec_yaml = excluded.spec_yaml, \
             content_hash = excluded.content_hash, source = excluded.source, version = excluded.version, updated_at = excluded.updated_at, \
             seal_id = excluded.seal_id, taint_reason = excluded.taint_reason, taint_break = excluded.taint_break, taint_revealed = excluded.taint_revealed",
        )
        .bind(p.procedure.id.clone())
        .bind(p.spec_yaml.clone())
        .bind(p.content_hash.clone())
        .bind(p.source.clone())
        .bind(p.version)
        .bind(p.updated_at.0)
        .bind(p.seal_id.clone())
        .bind(p.taint.as_ref().map(|t| t.reason.clone()))
        .bind(p.taint.as_ref().and_then(|t| t.break_id.clone()))
        .bind(i64::from(p.taint.as_ref().is_some_and(|t| t.secret_revealed)))
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn seal(&mut self, seal_id: &str) -> StoreResult<Option<StoredSeal>> {
        let Some(row) = sqlx::query(
            "SELECT seal_id, procedure_id, threshold, ciphertext, commitments, secret_fingerprint, fingerprint_salt, created_at FROM seals WHERE seal_id = $1",
        )
        .bind(seal_id.to_owned())
        .fetch_optional(self.c()?)
        .await
        .map_err(db)?
        else {
            return Ok(None);
        };
        let shares = sqlx::query(
            "SELECT custodian, idx, age_file FROM seal_shares WHERE seal_id = $1 ORDER BY idx",
        )
        .bind(seal_id.to_owned())
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        rows::seal(&row, &shares).map(Some)
    }

    async fn insert_seal(&mut self, s: &StoredSeal) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO seals (seal_id, procedure_id, threshold, ciphertext, commitments, secret_fingerprint, fingerprint_salt, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(s.seal_id.clone())
        .bind(s.procedure.clone())
        .bind(i64::from(s.threshold))
        .bind(s.ciphertext.clone())
        .bind(rows::commitments_json(&s.commitments))
        .bind(s.secret_fingerprint.clone())
        .bind(s.fingerprint_salt.clone())
        .bind(s.created_at.0)
        .execute(self.c()?)
        .await
        .map_err(db)?;
        for share in &s.shares {
            sqlx::query("INSERT INTO seal_shares (seal_id, custodian, idx, age_file) VALUES ($1, $2, $3, $4)")
                .bind(s.seal_id.clone())
                .bind(share.custodian.clone())
                .bind(i64::from(share.index))
                .bind(share.age_file.clone())
                .execute(self.c()?)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    async fn break_(&mut self, id: &str) -> StoreResult<Option<Break>> {
        let row = sqlx::query(select_breaks!(" WHERE id = $1"))
            .bind(id.to_owned())
            .fetch_optional(self.c()?)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::break_).transpose()
    }

    async fn breaks(&mut self, procedure: Option<&str>, limit: i64) -> StoreResult<Vec<Break>> {
        let rows = match procedure {
            Some(p) => {
                sqlx::query(select_breaks!(
                    " WHERE procedure_id = $1 ORDER BY requested_at DESC, id DESC LIMIT $2"
                ))
                .bind(p.to_owned())
                .bind(limit)
                .fetch_all(self.c()?)
                .await
            }
            None => {
                sqlx::query(select_breaks!(
                    " ORDER BY requested_at DESC, id DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(self.c()?)
                .await
            }
        }
        .map_err(db)?;
        rows.iter().map(rows::break_).collect()
    }

    async fn due_breaks(&mut self, now: Timestamp) -> StoreResult<Vec<Break>> {
        let rows = sqlx::query(select_breaks!(
            " WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at"
        ))
        .bind(now.0)
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        rows.iter().map(rows::break_).collect()
    }

    async fn breaks_ended_since(&mut self, since: Timestamp) -> StoreResult<Vec<Break>> {
        let rows = sqlx::query(select_breaks!(
            " WHERE ended_at IS NOT NULL AND ended_at >= $1 ORDER BY ended_at DESC, id DESC"
        ))
        .bind(since.0)
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        rows.iter().map(rows::break_).collect()
    }

    async fn requested_with_approvals(&mut self) -> StoreResult<Vec<Break>> {
        let rows = sqlx::query(select_breaks!(
            " WHERE state = 'requested' AND approvals <> '[]' ORDER BY requested_at"
        ))
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        rows.iter().map(rows::break_).collect()
    }

    async fn put_break(&mut self, b: &Break) -> StoreResult<()> {
        let r = rows::BreakRow::from(b);
        sqlx::query(
            "INSERT INTO breaks (id, procedure_id, seal_id, requester, reason, ticket, duration_ms, quorum, requested_at, approval_deadline, approvals, state, granted_at, deadline, revealed_at, ended_at, closed_by, due_at, drill_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) ON CONFLICT (id) DO UPDATE SET \
             seal_id = excluded.seal_id, approvals = excluded.approvals, state = excluded.state, granted_at = excluded.granted_at, deadline = excluded.deadline, \
             revealed_at = excluded.revealed_at, ended_at = excluded.ended_at, closed_by = excluded.closed_by, due_at = excluded.due_at",
        )
        .bind(r.id)
        .bind(r.procedure)
        .bind(r.seal_id)
        .bind(r.requester)
        .bind(r.reason)
        .bind(r.ticket)
        .bind(r.duration_ms)
        .bind(r.quorum)
        .bind(r.requested_at)
        .bind(r.approval_deadline)
        .bind(r.approvals)
        .bind(r.state)
        .bind(r.granted_at)
        .bind(r.deadline)
        .bind(r.revealed_at)
        .bind(r.ended_at)
        .bind(r.closed_by)
        .bind(r.due_at)
        .bind(r.drill_id)
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn put_grant_payload(&mut self, break_id: &str, payload: &[u8]) -> StoreResult<()> {
        sqlx::query("INSERT INTO grant_payloads (break_id, payload) VALUES ($1, $2) ON CONFLICT (break_id) DO UPDATE SET payload = excluded.payload")
            .bind(break_id.to_owned())
            .bind(payload.to_vec())
            .execute(self.c()?)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn take_grant_payload(&mut self, break_id: &str) -> StoreResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT payload FROM grant_payloads WHERE break_id = $1")
            .bind(break_id.to_owned())
            .fetch_optional(self.c()?)
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        sqlx::query("DELETE FROM grant_payloads WHERE break_id = $1")
            .bind(break_id.to_owned())
            .execute(self.c()?)
            .await
            .map_err(db)?;
        Ok(Some(row.try_get::<Vec<u8>, _>(0).map_err(db)?))
    }

    async fn actor(&mut self, name: &str) -> StoreResult<Option<StoredActor>> {
        let row = sqlx::query(
            "SELECT name, roles, public_key, token_hash, contact FROM actors WHERE name = $1",
        )
        .bind(name.to_owned())
        .fetch_optional(self.c()?)
        .await
        .map_err(db)?;
        row.as_ref().map(rows::actor).transpose()
    }

    async fn actor_by_token(&mut self, token_hash: &str) -> StoreResult<Option<StoredActor>> {
        let row = sqlx::query(
            "SELECT name, roles, public_key, token_hash, contact FROM actors WHERE token_hash = $1",
        )
        .bind(token_hash.to_owned())
        .fetch_optional(self.c()?)
        .await
        .map_err(db)?;
        row.as_ref().map(rows::actor).transpose()
    }

    async fn actors(&mut self) -> StoreResult<Vec<StoredActor>> {
        let rows = sqlx::query(
            "SELECT name, roles, public_key, token_hash, contact FROM actors ORDER BY name",
        )
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        rows.iter().map(rows::actor).collect()
    }

    async fn put_actor(&mut self, a: &StoredActor) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO actors (name, roles, public_key, token_hash, contact) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET \
             roles = excluded.roles, public_key = excluded.public_key, token_hash = excluded.token_hash, contact = excluded.contact",
        )
        .bind(a.actor.name.clone())
        .bind(a.actor.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","))
        .bind(a.actor.key.as_ref().map(|k| k.canonical()))
        .bind(a.token_hash.clone())
        .bind(a.contact.clone())
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn audit_head(&mut self) -> StoreResult<Option<Head>> {
        if let Conn::Group(w) = &self.conn
            && let Some(head) = w.cached_head()
        {
            return Ok(head);
        }
        let head = self.read_head_row().await?;
        if let Conn::Group(w) = &mut self.conn {
            w.remember_head(head);
        }
        Ok(head)
    }

    async fn audit_entries(&mut self, from: u64, limit: i64) -> StoreResult<Vec<Entry>> {
        self.entries_from(from, limit).await
    }

    async fn audit_entries_about(
        &mut self,
        about: AuditAbout<'_>,
        before: u64,
        limit: i64,
    ) -> StoreResult<Vec<Entry>> {
        // One statement per filter (not `$1 IS NULL OR …`), so each uses its index.
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        let query = match about {
            AuditAbout::All => sqlx::query(
                "SELECT seq, time_ms, actor, kind, procedure_id, break_id, payload, prev_hash, hash FROM audit_log WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
            )
            .bind(before),
            AuditAbout::Procedure(id) => sqlx::query(
                "SELECT seq, time_ms, actor, kind, procedure_id, break_id, payload, prev_hash, hash FROM audit_log WHERE procedure_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
            )
            .bind(id.to_owned())
            .bind(before),
            AuditAbout::Break(id) => sqlx::query(
                "SELECT seq, time_ms, actor, kind, procedure_id, break_id, payload, prev_hash, hash FROM audit_log WHERE break_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
            )
            .bind(id.to_owned())
            .bind(before),
        };
        let rows = query.bind(limit).fetch_all(self.c()?).await.map_err(db)?;
        rows.iter().map(rows::entry).collect()
    }

    async fn pending_outbox(&mut self, limit: i64) -> StoreResult<Vec<OutboxRow>> {
        let rows = sqlx::query("SELECT id, seq, destination, payload, attempts, delivered_at FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT $1")
            .bind(limit)
            .fetch_all(self.c()?)
            .await
            .map_err(db)?;
        rows.iter().map(rows::outbox).collect()
    }

    async fn due_outbox(
        &mut self,
        destination: &str,
        now: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT id, seq, destination, payload, attempts, delivered_at, next_attempt_at FROM outbox WHERE destination = $1 AND delivered_at IS NULL ORDER BY id LIMIT $2",
        )
        .bind(destination.to_owned())
        .bind(limit)
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        // Delivery is in order per destination: when the oldest row is not due yet, nothing is.
        let first_due = match rows.first() {
            Some(first) => first.try_get::<i64, _>("next_attempt_at").map_err(db)? <= now.0,
            None => false,
        };
        if !first_due {
            return Ok(Vec::new());
        }
        rows.iter().map(rows::outbox).collect()
    }

    async fn outbox_lag(&mut self) -> StoreResult<Vec<(String, i64, Option<Timestamp>)>> {
        let rows = sqlx::query(
            "SELECT destination, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox WHERE delivered_at IS NULL GROUP BY destination ORDER BY destination",
        )
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let oldest: Option<i64> = r.try_get("oldest").map_err(db)?;
                Ok((
                    r.try_get("destination").map_err(db)?,
                    r.try_get("n").map_err(db)?,
                    oldest.map(Timestamp),
                ))
            })
            .collect()
    }

    async fn audit_key_events(&mut self) -> StoreResult<Vec<Entry>> {
        let rows = sqlx::query(
            "SELECT seq, time_ms, actor, kind, procedure_id, break_id, payload, prev_hash, hash FROM audit_log WHERE kind IN ('audit.key_created', 'audit.key_rotated') ORDER BY seq",
        )
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        rows.iter().map(rows::entry).collect()
    }

    async fn checkpoints(&mut self) -> StoreResult<Vec<SignedCheckpoint>> {
        let rows = sqlx::query(
            "SELECT seq, key_id, head, time_ms, signature FROM checkpoints ORDER BY id",
        )
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        rows.iter().map(rows::checkpoint).collect()
    }

    async fn latest_checkpoint(&mut self) -> StoreResult<Option<SignedCheckpoint>> {
        let row = sqlx::query("SELECT seq, key_id, head, time_ms, signature FROM checkpoints ORDER BY id DESC LIMIT 1")
            .fetch_optional(self.c()?)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::checkpoint).transpose()
    }

    async fn checkpoint(
        &mut self,
        seq: u64,
        key_id: &str,
    ) -> StoreResult<Option<SignedCheckpoint>> {
        let row = sqlx::query("SELECT seq, key_id, head, time_ms, signature FROM checkpoints WHERE seq = $1 AND key_id = $2")
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .bind(key_id.to_owned())
            .fetch_optional(self.c()?)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::checkpoint).transpose()
    }

    async fn mark_outbox(&mut self, id: i64, attempt: &DeliveryAttempt) -> StoreResult<bool> {
        match attempt {
            DeliveryAttempt::Delivered { at } => {
                // Only the first delivery counts (another server may have delivered it too).
                let done = sqlx::query("UPDATE outbox SET attempts = attempts + 1, delivered_at = $1, last_error = NULL WHERE id = $2 AND delivered_at IS NULL")
                    .bind(at.0)
                    .bind(id)
                    .execute(self.c()?)
                    .await
                    .map_err(db)?;
                return Ok(done.rows_affected() == 1);
            }
            DeliveryAttempt::Failed {
                retry_at, error, ..
            } => {
                sqlx::query("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE id = $3")
                    .bind(retry_at.0)
                    .bind(error.clone())
                    .bind(id)
                    .execute(self.c()?)
                    .await
                    .map_err(db)?;
            }
        }
        Ok(true)
    }

    async fn ack(&mut self, break_id: &str) -> StoreResult<Option<AckState>> {
        let row = sqlx::query("SELECT break_id, procedure_id, requested_at, ack_deadline, acked_at, acked_by, escalated_at FROM acks WHERE break_id = $1")
            .bind(break_id.to_owned())
            .fetch_optional(self.c()?)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::ack).transpose()
    }

    async fn put_ack(&mut self, a: &AckState) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO acks (break_id, procedure_id, requested_at, ack_deadline, acked_at, acked_by, escalated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (break_id) DO UPDATE SET ack_deadline = excluded.ack_deadline, acked_at = excluded.acked_at, acked_by = excluded.acked_by, escalated_at = excluded.escalated_at",
        )
        .bind(a.break_id.clone())
        .bind(a.procedure.clone())
        .bind(a.requested_at.0)
        .bind(a.ack_deadline.map(|t| t.0))
        .bind(a.acked_at.map(|t| t.0))
        .bind(a.acked_by.clone())
        .bind(a.escalated_at.map(|t| t.0))
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn due_escalations(&mut self, now: Timestamp) -> StoreResult<Vec<AckState>> {
        let rows = sqlx::query(
            "SELECT break_id, procedure_id, requested_at, ack_deadline, acked_at, acked_by, escalated_at FROM acks \
             WHERE ack_deadline IS NOT NULL AND ack_deadline <= $1 AND acked_at IS NULL AND escalated_at IS NULL ORDER BY ack_deadline",
        )
        .bind(now.0)
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        rows.iter().map(rows::ack).collect()
    }

    async fn record_attempt(&mut self, a: &AttemptRecord) -> StoreResult<()> {
        sqlx::query("INSERT INTO delivery_attempts (outbox_id, destination, at, ok, status, latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(a.outbox_id)
            .bind(a.destination.clone())
            .bind(a.at.0)
            .bind(i64::from(a.ok))
            .bind(a.status.clone())
            .bind(a.latency_ms)
            .bind(a.error.clone())
            .execute(self.c()?)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn attempts(
        &mut self,
        destination: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<AttemptRecord>> {
        let rows = match destination {
            Some(d) => sqlx::query("SELECT outbox_id, destination, at, ok, status, latency_ms, error FROM delivery_attempts WHERE destination = $1 ORDER BY id DESC LIMIT $2")
                .bind(d.to_owned())
                .bind(limit)
                .fetch_all(self.c()?)
                .await,
            None => sqlx::query("SELECT outbox_id, destination, at, ok, status, latency_ms, error FROM delivery_attempts ORDER BY id DESC LIMIT $1")
                .bind(limit)
                .fetch_all(self.c()?)
                .await,
        }
        .map_err(db)?;
        rows.iter().map(rows::attempt).collect()
    }

    async fn put_channel_test(&mut self, t: &ChannelTest) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO channel_tests (channel, at, ok, status, latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (channel) DO UPDATE SET at = excluded.at, ok = excluded.ok, status = excluded.status, latency_ms = excluded.latency_ms, error = excluded.error",
        )
        .bind(t.channel.clone())
        .bind(t.at.0)
        .bind(i64::from(t.ok))
        .bind(t.status.clone())
        .bind(t.latency_ms)
        .bind(t.error.clone())
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn channel_tests(&mut self) -> StoreResult<Vec<ChannelTest>> {
        let rows = sqlx::query(
            "SELECT channel, at, ok, status, latency_ms, error FROM channel_tests ORDER BY channel",
        )
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        rows.iter().map(rows::channel_test).collect()
    }

    async fn put_grant(&mut self, g: &GrantRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO grants (break_id, procedure_id, kind, handle, created_at, deadline, end_requested_at, end_cause, ended_at, end_attempts, next_attempt_at, last_error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (break_id) DO UPDATE SET handle = excluded.handle, end_requested_at = excluded.end_requested_at, end_cause = excluded.end_cause, ended_at = excluded.ended_at, \
             end_attempts = excluded.end_attempts, next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error",
        )
        .bind(g.break_id.clone())
        .bind(g.procedure.clone())
        .bind(g.kind.clone())
        .bind(g.handle.to_string())
        .bind(g.created_at.0)
        .bind(g.deadline.0)
        .bind(g.end_requested_at.map(|t| t.0))
        .bind(g.end_cause.clone())
        .bind(g.ended_at.map(|t| t.0))
        .bind(g.end_attempts)
        .bind(g.next_attempt_at.map(|t| t.0))
        .bind(g.last_error.clone())
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn grant(&mut self, break_id: &str) -> StoreResult<Option<GrantRecord>> {
        let row = sqlx::query("SELECT * FROM grants WHERE break_id = $1")
            .bind(break_id.to_owned())
            .fetch_optional(self.c()?)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::grant).transpose()
    }

    async fn grants_to_end(&mut self, now: Timestamp) -> StoreResult<Vec<GrantRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM grants WHERE ended_at IS NULL AND end_requested_at IS NOT NULL \
             AND (next_attempt_at IS NULL OR next_attempt_at <= $1) ORDER BY end_requested_at LIMIT 100",
        )
        .bind(now.0)
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        rows.iter().map(rows::grant).collect()
    }

    async fn put_target_report(&mut self, r: &TargetReport) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO target_reports (procedure_id, kind, at, ok, detail) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (procedure_id, kind) DO UPDATE SET at = excluded.at, ok = excluded.ok, detail = excluded.detail",
        )
        .bind(r.procedure.clone())
        .bind(r.kind.clone())
        .bind(r.at.0)
        .bind(i64::from(r.ok))
        .bind(r.detail.to_string())
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn target_reports(&mut self, procedure: Option<&str>) -> StoreResult<Vec<TargetReport>> {
        let rows = match procedure {
            Some(p) => {
                sqlx::query("SELECT * FROM target_reports WHERE procedure_id = $1 ORDER BY kind")
                    .bind(p.to_owned())
                    .fetch_all(self.c()?)
                    .await
            }
            None => {
                sqlx::query("SELECT * FROM target_reports ORDER BY procedure_id, kind")
                    .fetch_all(self.c()?)
                    .await
            }
        }
        .map_err(db)?;
        rows.iter().map(rows::target_report).collect()
    }

    async fn put_attestation(&mut self, a: &AttestationRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO attestations (custodian, key_fingerprint, attested_at, lost_at, lost_reason) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (custodian, key_fingerprint) DO UPDATE SET attested_at = excluded.attested_at, lost_at = excluded.lost_at, lost_reason = excluded.lost_reason",
        )
        .bind(a.custodian.clone())
        .bind(a.key_fingerprint.clone())
        .bind(a.attested_at.map(|t| t.0))
        .bind(a.lost_at.map(|t| t.0))
        .bind(a.lost_reason.clone())
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn attestations(&mut self) -> StoreResult<Vec<AttestationRecord>> {
        let rows = sqlx::query("SELECT * FROM attestations ORDER BY custodian, key_fingerprint")
            .fetch_all(self.c()?)
            .await
            .map_err(db)?;
        rows.iter().map(rows::attestation).collect()
    }

    async fn totp(&mut self, custodian: &str) -> StoreResult<Option<TotpRecord>> {
        let row = sqlx::query("SELECT * FROM totp_enrollments WHERE custodian = $1")
            .bind(custodian.to_owned())
            .fetch_optional(self.c()?)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::totp).transpose()
    }

    async fn put_totp(&mut self, r: &TotpRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO totp_enrollments (custodian, sealed_secret, active, created_at, confirmed_at, last_step, failures, failure_window_start, locked_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (custodian) DO UPDATE SET \
             sealed_secret = excluded.sealed_secret, active = excluded.active, created_at = excluded.created_at, \
             confirmed_at = excluded.confirmed_at, last_step = excluded.last_step, failures = excluded.failures, \
             failure_window_start = excluded.failure_window_start, locked_until = excluded.locked_until",
        )
        .bind(r.custodian.clone())
        .bind(r.sealed_secret.clone())
        .bind(i64::from(r.active))
        .bind(r.created_at.0)
        .bind(r.confirmed_at.map(|t| t.0))
        .bind(r.last_step)
        .bind(r.failures)
        .bind(r.failure_window_start.map(|t| t.0))
        .bind(r.locked_until.map(|t| t.0))
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn delete_totp(&mut self, custodian: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM totp_enrollments WHERE custodian = $1")
            .bind(custodian.to_owned())
            .execute(self.c()?)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn totp_records(&mut self) -> StoreResult<Vec<TotpRecord>> {
        let rows = sqlx::query("SELECT * FROM totp_enrollments ORDER BY custodian")
            .fetch_all(self.c()?)
            .await
            .map_err(db)?;
        rows.iter().map(rows::totp).collect()
    }

    async fn advance_totp_step(&mut self, custodian: &str, step: i64) -> StoreResult<bool> {
        // Conditional in the database itself: a step at or before the stored one never
        // counts, whichever server or transaction tries.
        let done = sqlx::query(
            "UPDATE totp_enrollments SET last_step = $1, failures = 0, failure_window_start = NULL, locked_until = NULL \
             WHERE custodian = $2 AND active = 1 AND (last_step IS NULL OR last_step < $1)",
        )
        .bind(step)
        .bind(custodian.to_owned())
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_drill(&mut self, d: &DrillRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO drills (id, procedure_id, mode, injections, requested_by, started_at, finished_at, outcome, break_id, content_hash, time_to_access_ms, report) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO UPDATE SET \
             finished_at = excluded.finished_at, outcome = excluded.outcome, break_id = excluded.break_id, \
             time_to_access_ms = excluded.time_to_access_ms, report = excluded.report",
        )
        .bind(d.id.clone())
        .bind(d.procedure.clone())
        .bind(d.mode.clone())
        .bind(serde_json::Value::from(d.injections.clone()).to_string())
        .bind(d.requested_by.clone())
        .bind(d.started_at.0)
        .bind(d.finished_at.map(|t| t.0))
        .bind(d.outcome.clone())
        .bind(d.break_id.clone())
        .bind(d.content_hash.clone())
        .bind(d.time_to_access_ms)
        .bind(d.report.to_string())
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn drill(&mut self, id: &str) -> StoreResult<Option<DrillRecord>> {
        let row = sqlx::query("SELECT * FROM drills WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(self.c()?)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::drill).transpose()
    }

    async fn drills(
        &mut self,
        procedure: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<DrillRecord>> {
        let rows = match procedure {
            Some(p) => sqlx::query(
                "SELECT * FROM drills WHERE procedure_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
            )
            .bind(p.to_owned())
            .bind(limit),
            None => sqlx::query("SELECT * FROM drills ORDER BY started_at DESC, id DESC LIMIT $1")
                .bind(limit),
        }
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        rows.iter().map(rows::drill).collect()
    }

    async fn latest_drills(&mut self) -> StoreResult<Vec<DrillRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM drills d WHERE finished_at IS NOT NULL AND started_at = \
             (SELECT MAX(started_at) FROM drills e WHERE e.procedure_id = d.procedure_id AND e.finished_at IS NOT NULL) \
             ORDER BY procedure_id, id",
        )
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        rows.iter().map(rows::drill).collect()
    }

    async fn drill_seal(&mut self, procedure: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT seal_id FROM drill_seals WHERE procedure_id = $1")
            .bind(procedure.to_owned())
            .fetch_optional(self.c()?)
            .await
            .map_err(db)
    }

    async fn put_drill_seal(
        &mut self,
        procedure: &str,
        seal_id: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO drill_seals (procedure_id, seal_id, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (procedure_id) DO UPDATE SET seal_id = excluded.seal_id, updated_at = excluded.updated_at",
        )
        .bind(procedure.to_owned())
        .bind(seal_id.to_owned())
        .bind(at.0)
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn schedule_run(&mut self, name: &str) -> StoreResult<Option<Timestamp>> {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT last_run_at FROM schedule_runs WHERE name = $1")
                .bind(name.to_owned())
                .fetch_optional(self.c()?)
                .await
                .map_err(db)?;
        Ok(at.map(Timestamp))
    }

    async fn put_schedule_run(&mut self, name: &str, at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO schedule_runs (name, last_run_at) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at",
        )
        .bind(name.to_owned())
        .bind(at.0)
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn put_session(
        &mut self,
        token_hash: &str,
        actor: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now.0)
            .execute(self.c()?)
            .await
            .map_err(db)?;
        sqlx::query("INSERT INTO sessions (token_hash, actor, expires_at) VALUES ($1, $2, $3)")
            .bind(token_hash.to_owned())
            .bind(actor.to_owned())
            .bind(expires_at.0)
            .execute(self.c()?)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn session_actor(
        &mut self,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT actor FROM sessions WHERE token_hash = $1 AND expires_at > $2")
            .bind(token_hash.to_owned())
            .bind(now.0)
            .fetch_optional(self.c()?)
            .await
            .map_err(db)
    }

    async fn take_session(&mut self, token_hash: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("DELETE FROM sessions WHERE token_hash = $1 RETURNING actor")
            .bind(token_hash.to_owned())
            .fetch_optional(self.c()?)
            .await
            .map_err(db)
    }

    async fn put_challenge(
        &mut self,
        id: &str,
        actor: &str,
        kind: &str,
        expected: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM challenges WHERE expires_at <= $1")
            .bind(now.0)
            .execute(self.c()?)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO challenges (id, actor, kind, expected, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_owned())
        .bind(actor.to_owned())
        .bind(kind.to_owned())
        .bind(expected.to_owned())
        .bind(expires_at.0)
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn take_challenge(
        &mut self,
        id: &str,
    ) -> StoreResult<Option<(String, String, String, Timestamp)>> {
        let row = sqlx::query(
            "DELETE FROM challenges WHERE id = $1 RETURNING actor, kind, expected, expires_at",
        )
        .bind(id.to_owned())
        .fetch_optional(self.c()?)
        .await
        .map_err(db)?;
        row.map(|r| {
            Ok((
                r.try_get("actor").map_err(db)?,
                r.try_get("kind").map_err(db)?,
                r.try_get("expected").map_err(db)?,
                Timestamp(r.try_get("expires_at").map_err(db)?),
            ))
        })
        .transpose()
    }

    async fn put_statement_chunks(&mut self, chunks: &[StatementChunk]) -> StoreResult<()> {
        // One row per chunk (a session's statements of the last 100 ms or so), many rows per
        // INSERT: a busy gateway hands over dozens of sessions' chunks ten times a second.
        // 100 rows × 5 parameters stays under every SQLite build's parameter limit.
        for rows in chunks.chunks(100) {
            let mut sql = String::from(
                "INSERT INTO session_chunks (session_id, first_seq, break_id, statements, body) VALUES ",
            );
            for i in 0..rows.len() {
                let n = i * 5;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4,
                    n + 5
                ));
            }
            sql.push_str(" ON CONFLICT DO NOTHING");
            // Audited: the text is constant but for the count of rows; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for c in rows {
                q = q
                    .bind(c.session_id.clone())
                    .bind(i64::try_from(c.first_seq).unwrap_or(i64::MAX))
                    .bind(c.break_id.clone())
                    .bind(i64::try_from(c.count).unwrap_or(i64::MAX))
                    .bind(c.body.clone());
            }
            q.execute(self.c()?).await.map_err(db)?;
        }
        Ok(())
    }

    async fn statements(&mut self, break_id: &str) -> StoreResult<Vec<StatementRecord>> {
        let rows = sqlx::query(
            "SELECT body FROM session_chunks WHERE break_id = $1 ORDER BY session_id, first_seq",
        )
        .bind(break_id.to_owned())
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        let mut out = rows::statements(break_id, &rows)?;
        out.sort_by(|a, b| {
            (a.started_at.0, &a.session_id, a.seq).cmp(&(b.started_at.0, &b.session_id, b.seq))
        });
        Ok(out)
    }

    async fn session_statements(
        &mut self,
        session_id: &str,
        from_seq: u64,
        max_chunks: u32,
    ) -> StoreResult<Vec<StatementRecord>> {
        // From the chunk holding `from_seq` (the last one starting at or before it), so a
        // page may start inside a chunk; its statements before `from_seq` are dropped below.
        let rows = sqlx::query(
            "SELECT break_id, body FROM session_chunks WHERE session_id = $1 AND first_seq >= \
             COALESCE((SELECT MAX(first_seq) FROM session_chunks WHERE session_id = $1 AND first_seq <= $2), $2) \
             ORDER BY first_seq LIMIT $3",
        )
        .bind(session_id.to_owned())
        .bind(i64::try_from(from_seq).unwrap_or(i64::MAX))
        .bind(i64::from(max_chunks))
        .fetch_all(self.c()?)
        .await
        .map_err(db)?;
        let break_id: String = match rows.first() {
            Some(r) => r.try_get("break_id").map_err(db)?,
            None => return Ok(Vec::new()),
        };
        let mut out = rows::statements(&break_id, &rows)?;
        out.retain(|s| s.seq >= from_seq);
        Ok(out)
    }

    async fn recovery_kit(&mut self, procedure: &str) -> StoreResult<Option<KitExport>> {
        let row = sqlx::query(
            "SELECT procedure_id, seal_id, kit_id, location, exported_at FROM recovery_kits WHERE procedure_id = $1",
        )
        .bind(procedure.to_owned())
        .fetch_optional(self.c()?)
        .await
        .map_err(db)?;
        row.map(|r| {
            Ok(KitExport {
                procedure: r.try_get("procedure_id").map_err(db)?,
                seal_id: r.try_get("seal_id").map_err(db)?,
                kit_id: r.try_get("kit_id").map_err(db)?,
                location: r.try_get("location").map_err(db)?,
                exported_at: Timestamp(r.try_get("exported_at").map_err(db)?),
            })
        })
        .transpose()
    }

    async fn put_recovery_kit(&mut self, k: &KitExport) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO recovery_kits (procedure_id, seal_id, kit_id, location, exported_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (procedure_id) DO UPDATE SET seal_id = excluded.seal_id, kit_id = excluded.kit_id, \
             location = excluded.location, exported_at = excluded.exported_at",
        )
        .bind(k.procedure.clone())
        .bind(k.seal_id.clone())
        .bind(k.kit_id.clone())
        .bind(k.location.clone())
        .bind(k.exported_at.0)
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn recovery_import(&mut self, spool_head: &str) -> StoreResult<Option<SpoolImport>> {
        let row = sqlx::query(
            "SELECT spool_head, procedure_id, kit_id, lines, imported_by, imported_at FROM recovery_imports WHERE spool_head = $1",
        )
        .bind(spool_head.to_owned())
        .fetch_optional(self.c()?)
        .await
        .map_err(db)?;
        row.map(|r| {
            let lines: i64 = r.try_get("lines").map_err(db)?;
            Ok(SpoolImport {
                spool_head: r.try_get("spool_head").map_err(db)?,
                procedure: r.try_get("procedure_id").map_err(db)?,
                kit_id: r.try_get("kit_id").map_err(db)?,
                lines: u64::try_from(lines).unwrap_or(0),
                imported_by: r.try_get("imported_by").map_err(db)?,
                imported_at: Timestamp(r.try_get("imported_at").map_err(db)?),
            })
        })
        .transpose()
    }

    async fn share_holder_in(&mut self, break_id: &str) -> StoreResult<Option<(String, String)>> {
        read_holder(self.c()?, break_id).await
    }

    async fn set_share_holder(
        &mut self,
        break_id: &str,
        instance: &str,
        url: &str,
    ) -> StoreResult<()> {
        sqlx::query(UPSERT_HOLDER)
            .bind(break_id.to_owned())
            .bind(instance.to_owned())
            .bind(url.to_owned())
            .execute(self.c()?)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn put_recovery_import(&mut self, i: &SpoolImport) -> StoreResult<()> {
        // No ON CONFLICT: a second import of the same spool fails (the engine checks first).
        sqlx::query(
            "INSERT INTO recovery_imports (spool_head, procedure_id, kit_id, lines, imported_by, imported_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(i.spool_head.clone())
        .bind(i.procedure.clone())
        .bind(i.kit_id.clone())
        .bind(i64::try_from(i.lines).unwrap_or(i64::MAX))
        .bind(i.imported_by.clone())
        .bind(i.imported_at.0)
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn put_external_run(&mut self, r: &breakglass_domain::Run) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO external_runs (id, procedure_id, kind, opened_by, reason, ticket, started_at, finished_at, outcome, steps, done, content_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (id) DO UPDATE SET finished_at = excluded.finished_at, outcome = excluded.outcome, done = excluded.done",
        )
        .bind(r.id.clone())
        .bind(r.procedure.clone())
        .bind(r.kind.as_str())
        .bind(r.opened_by.clone())
        .bind(r.reason.clone())
        .bind(r.ticket.clone())
        .bind(r.started_at.0)
        .bind(r.finished_at.map(|t| t.0))
        .bind(r.outcome.as_str())
        .bind(rows::json_text(&r.steps)?)
        .bind(rows::done_text(&r.done)?)
        .bind(r.content_hash.clone())
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn external_run(&mut self, id: &str) -> StoreResult<Option<breakglass_domain::Run>> {
        let row = sqlx::query("SELECT * FROM external_runs WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(self.c()?)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::external_run).transpose()
    }

    async fn external_runs(
        &mut self,
        procedure: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<breakglass_domain::Run>> {
        let rows = match procedure {
            Some(p) => {
                sqlx::query(
                    "SELECT * FROM external_runs WHERE procedure_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
                )
                .bind(p.to_owned())
                .bind(limit)
                .fetch_all(self.c()?)
                .await
            }
            None => {
                sqlx::query("SELECT * FROM external_runs ORDER BY started_at DESC, id DESC LIMIT $1")
                    .bind(limit)
                    .fetch_all(self.c()?)
                    .await
            }
        }
        .map_err(db)?;
        rows.iter().map(rows::external_run).collect()
    }

    async fn insert_custody_record(
        &mut self,
        r: &breakglass_domain::CustodyRecord,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO custody_records (procedure_id, holder, kind, at, recorded_by, note) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(r.procedure.clone())
        .bind(r.holder.clone())
        .bind(r.kind.as_str())
        .bind(r.at.0)
        .bind(r.recorded_by.clone())
        .bind(r.note.clone())
        .execute(self.c()?)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn custody_records(
        &mut self,
        procedure: Option<&str>,
    ) -> StoreResult<Vec<breakglass_domain::CustodyRecord>> {
        let rows = match procedure {
            Some(p) => {
                sqlx::query("SELECT * FROM custody_records WHERE procedure_id = $1 ORDER BY at, id")
                    .bind(p.to_owned())
                    .fetch_all(self.c()?)
                    .await
            }
            None => {
                sqlx::query("SELECT * FROM custody_records ORDER BY at, id")
                    .fetch_all(self.c()?)
                    .await
            }
        }
        .map_err(db)?;
        rows.iter().map(rows::custody_record).collect()
    }

    async fn commit_bookkeeping(self: Box<Self>) -> StoreResult<()> {
        self.finish().await
    }

    async fn commit_checkpoint(
        mut self: Box<Self>,
        checkpoint: &SignedCheckpoint,
        destinations: &[String],
    ) -> StoreResult<()> {
        let c = &checkpoint.checkpoint;
        let seq =
            i64::try_from(c.seq).map_err(|_| StoreError("checkpoint sequence overflow".into()))?;
        sqlx::query("INSERT INTO checkpoints (seq, key_id, head, time_ms, signature) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
            .bind(seq)
            .bind(c.key_id.clone())
            .bind(c.head.to_hex())
            .bind(c.time_ms)
            .bind(hex::encode(checkpoint.signature))
            .execute(self.c()?)
            .await
            .map_err(db)?;
        for d in destinations {
            sqlx::query("INSERT INTO outbox (seq, destination, payload, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $4)")
                .bind(seq)
                .bind(d.clone())
                .bind(serde_json::json!({"kind": "checkpoint", "seq": c.seq, "key_id": c.key_id}).to_string())
                .bind(c.time_ms)
                .execute(self.c()?)
                .await
                .map_err(db)?;
        }
        self.finish().await
    }

    async fn commit(
        mut self: Box<Self>,
        drafts: Vec<Draft>,
        outbox: Vec<OutboxItem>,
    ) -> StoreResult<Vec<Entry>> {
        if drafts.is_empty() {
            return Err(StoreError(
                "refusing to commit a change without an audit entry".into(),
            ));
        }
        let mut head = self.audit_head().await?;
        let mut entries = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let time_ms = draft.time_ms;
            let entry = breakglass_audit::append(head.as_ref(), draft)
                .map_err(|e| StoreError(format!("audit entry: {e}")))?;
            let payload = breakglass_audit::canonical_json(&entry.payload)
                .map_err(|e| StoreError(format!("audit payload: {e}")))?;
            sqlx::query(
                "INSERT INTO audit_log (seq, time_ms, actor, kind, procedure_id, break_id, payload, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(i64::try_from(entry.seq).map_err(|_| StoreError("audit sequence overflow".into()))?)
            .bind(time_ms)
            .bind(entry.actor.clone())
            .bind(entry.kind.clone())
            .bind(entry.procedure.clone())
            .bind(entry.break_id.clone())
            .bind(payload)
            .bind(entry.prev_hash.to_hex())
            .bind(entry.hash.to_hex())
            .execute(self.c()?)
            .await
            .map_err(db)?;
            head = Some(Head {
                seq: entry.seq,
                hash: entry.hash,
            });
            entries.push(entry);
        }
        for item in outbox {
            let Some(entry) = entries.get(item.draft) else {
                return Err(StoreError(format!(
                    "outbox item refers to draft {} of {}",
                    item.draft,
                    entries.len()
                )));
            };
            sqlx::query("INSERT INTO outbox (seq, destination, payload, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $4)")
                .bind(i64::try_from(entry.seq).unwrap_or(i64::MAX))
                .bind(item.destination)
                .bind(item.payload.to_string())
                .bind(entry.time_ms)
                .execute(self.c()?)
                .await
                .map_err(db)?;
        }
        self.finish_with_head(head).await?;
        Ok(entries)
    }
}
