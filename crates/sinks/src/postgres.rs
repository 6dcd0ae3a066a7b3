//! The insert-only PostgreSQL sink: one row per record in `<schema>.audit_records`, written by
//! a role that may only INSERT and SELECT, into a table whose triggers refuse UPDATE, DELETE
//! and TRUNCATE even from its owner.
//!
//! URL: `postgres://breakglass_sink@host:5432/audit?schema=breakglass_audit` (`schema`
//! defaults to `breakglass_audit`; every other parameter goes to the driver). An administrator
//! runs [`setup`] once; the sink itself creates nothing, and its role has no privilege to.
//!
//! ```sql
//! CREATE TABLE <schema>.audit_records (
//!     id          BIGSERIAL   NOT NULL UNIQUE,      -- arrival order, for read_back
//!     kind        TEXT        NOT NULL,             -- 'entry' | 'checkpoint'
//!     seq         BIGINT      NOT NULL,
//!     key_id      TEXT        NOT NULL DEFAULT '',  -- the checkpoint's key id
//!     message_id  TEXT        PRIMARY KEY,          -- SinkRecord::message_id
//!     line        TEXT        NOT NULL,             -- SinkRecord::to_line
//!     received_at TIMESTAMPTZ NOT NULL DEFAULT now()
//! );
//! ```
//!
//! `deliver` is `INSERT … ON CONFLICT (message_id) DO NOTHING`, so a redelivered record leaves
//! one row. The pool connects lazily: a server starts while its sink database is down, and
//! `deliver` reports [`SinkError::Unavailable`] until it is back. Errors never repeat the URL,
//! which may hold a password.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use breakglass_audit::SinkRecord;
use breakglass_engine::ports::{Sink, SinkError};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// The schema used when the URL names none.
pub const DEFAULT_SCHEMA: &str = "breakglass_audit";

/// How long a delivery waits for a connection before reporting the sink unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `open` waits to check the table before starting with the sink unreachable.
const OPEN_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// An insert-only PostgreSQL sink.
#[derive(Debug)]
pub struct PostgresSink {
    name: String,
    schema: String,
    pool: PgPool,
}

impl PostgresSink {
    /// Builds the sink from `postgres://user@host:port/db?schema=NAME`.
    ///
    /// The pool is lazy. When the server answers, `open` checks that the table exists and is
    /// readable, and fails (saying to run [`setup`]) when it is not; when the server does not
    /// answer, `open` succeeds and deliveries report [`SinkError::Unavailable`] until it does.
    pub async fn open(name: &str, url: &str) -> Result<PostgresSink, String> {
        let (options, schema) = parse_url(url)?;
        let pool = PgPoolOptions::new()
            .min_connections(0)
            .max_connections(2)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        let sink = PostgresSink {
            name: name.to_owned(),
            schema,
            pool,
        };
        let probe = format!("SELECT 1 FROM {} LIMIT 0", sink.table());
        let probe = sqlx::query(AssertSqlSafe(probe)).execute(&sink.pool);
        let outcome = tokio::time::timeout(OPEN_PROBE_TIMEOUT, probe)
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut));
        match outcome {
            Ok(_) => Ok(sink),
            Err(e) => match classify(&e, &sink.table()) {
                SinkError::Unavailable(cause) => {
                    tracing::warn!(sink = name, %cause, "audit sink database unreachable; will retry on delivery");
                    Ok(sink)
                }
                SinkError::Rejected(cause) | SinkError::NotReadable(cause) => Err(cause),
            },
        }
    }

    /// `<schema>.audit_records`.
    fn table(&self) -> String {
        format!("{}.audit_records", self.schema)
    }
}

#[async_trait]
impl Sink for PostgresSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, record: &SinkRecord) -> Result<(), SinkError> {
        let (kind, seq, key_id) = match record {
            SinkRecord::Entry(e) => ("entry", e.seq, ""),
            SinkRecord::Checkpoint(c) => {
                ("checkpoint", c.checkpoint.seq, c.checkpoint.key_id.as_str())
            }
        };
        let seq = i64::try_from(seq)
            .map_err(|_| SinkError::Rejected(format!("seq {seq} does not fit a BIGINT")))?;
        let insert = format!(
            "INSERT INTO {} (kind, seq, key_id, message_id, line) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (message_id) DO NOTHING",
            self.table()
        );
        sqlx::query(AssertSqlSafe(insert))
            .bind(kind)
            .bind(seq)
            .bind(key_id)
            .bind(record.message_id())
            .bind(record.to_line())
            .execute(&self.pool)
            .await
            .map_err(|e| classify(&e, &self.table()))?;
        Ok(())
    }

    async fn read_back(&self) -> Result<Vec<SinkRecord>, SinkError> {
        let select = format!("SELECT id, line FROM {} ORDER BY id", self.table());
        let rows: Vec<(i64, String)> = sqlx::query_as(AssertSqlSafe(select))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(&e, &self.table()))?;
        rows.into_iter()
            .map(|(id, line)| {
                SinkRecord::from_line(&line)
                    .map_err(|e| SinkError::Rejected(format!("{} row id {id}: {e}", self.table())))
            })
            .collect()
    }
}

/// Prepares a database for the sink; run once by an administrator (idempotent).
///
/// Creates `schema` and its `audit_records` table, a trigger function and triggers that raise
/// an exception on UPDATE and DELETE (per row) and TRUNCATE (per statement), creates
/// `sink_role` (LOGIN, no password) when it does not exist, revokes everything on the table and
/// its id sequence from PUBLIC and from `sink_role`, then grants `sink_role` USAGE on the
/// schema, INSERT and SELECT on the table and USAGE on the id sequence. The table's owner is
/// the administrator, never the sink role (refused), because an owner can drop or alter the
/// table and disable its triggers. Names must be lowercase identifiers (`[a-z_][a-z0-9_]*`).
pub async fn setup(admin_url: &str, schema: &str, sink_role: &str) -> Result<(), String> {
    check_identifier("schema", schema)?;
    check_identifier("sink role", sink_role)?;
    let (options, _) = parse_url(admin_url)?;
    let mut conn = PgConnection::connect_with(&options)
        .await
        .map_err(|e| format!("cannot connect as the administrator: {}", describe(&e)))?;
    let admin: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| format!("setup: {}", describe(&e)))?;
    if admin == sink_role {
        return Err(format!(
            "the sink role `{sink_role}` must not be the administrator that owns the table"
        ));
    }
    let table = format!("{schema}.audit_records");
    let sequence = format!("{schema}.audit_records_id_seq");
    let function = format!("{schema}.audit_records_append_only");
    let statements = [
        format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (\
                id BIGSERIAL NOT NULL UNIQUE, \
                kind TEXT NOT NULL, \
                seq BIGINT NOT NULL, \
                key_id TEXT NOT NULL DEFAULT '', \
                message_id TEXT PRIMARY KEY, \
                line TEXT NOT NULL, \
                received_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION '%.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP; END $$"
        ),
        format!("DROP TRIGGER IF EXISTS audit_records_no_update_delete ON {table}"),
        format!(
            "CREATE TRIGGER audit_records_no_update_delete BEFORE UPDATE OR DELETE ON {table} \
             FOR EACH ROW EXECUTE FUNCTION {function}()"
        ),
        format!("DROP TRIGGER IF EXISTS audit_records_no_truncate ON {table}"),
        format!(
            "CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON {table} \
             FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        ),
        format!(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{sink_role}') THEN \
                 CREATE ROLE {sink_role} LOGIN; \
               END IF; \
             END $$"
        ),
        format!("REVOKE ALL ON TABLE {table} FROM PUBLIC, {sink_role}"),
        format!("REVOKE ALL ON SEQUENCE {sequence} FROM PUBLIC, {sink_role}"),
        format!("REVOKE ALL ON SCHEMA {schema} FROM PUBLIC, {sink_role}"),
        format!("GRANT USAGE ON SCHEMA {schema} TO {sink_role}"),
        format!("GRANT INSERT, SELECT ON TABLE {table} TO {sink_role}"),
        format!("GRANT USAGE ON SEQUENCE {sequence} TO {sink_role}"),
    ];
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| format!("setup: {}", describe(&e)))?;
    for statement in statements {
        // Only validated identifiers are interpolated (checked above).
        tx.execute(AssertSqlSafe(statement))
            .await
            .map_err(|e| format!("setup of {table}: {}", describe(&e)))?;
    }
    tx.commit()
        .await
        .map_err(|e| format!("setup of {table}: {}", describe(&e)))?;
    Ok(())
}

/// Splits the sink's URL into driver options and the schema name. Errors never hold the URL.
fn parse_url(url: &str) -> Result<(PgConnectOptions, String), String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut schema = None;
    let mut rest = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some(("schema", value)) => {
                if schema.replace(value.to_owned()).is_some() {
                    return Err("the URL names `schema` twice".into());
                }
            }
            _ if pair.is_empty() => {}
            _ => rest.push(pair),
        }
    }
    let schema = schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
    check_identifier("schema", &schema)?;
    let stripped = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    // The driver's parse errors name what is wrong, not the URL itself.
    let options = PgConnectOptions::from_str(&stripped)
        .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
    Ok((options, schema))
}

/// Accepts lowercase SQL identifiers only, since they are interpolated into statements.
fn check_identifier(what: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{name}` must be 1 to 63 of a-z, 0-9 and _, not starting with a digit"
        ))
    }
}

/// Sorts a driver error into "retry later" and "refused", with a message for operators.
fn classify(e: &sqlx::Error, table: &str) -> SinkError {
    if let sqlx::Error::Database(db) = e {
        let code = db.code().unwrap_or_default();
        return match &*code {
            // undefined_table, invalid_schema_name
            "42P01" | "3F000" => SinkError::Rejected(format!(
                "table {table} does not exist: run the sink setup (breakglass_sinks::postgres::setup) as an administrator"
            )),
            // insufficient_privilege
            "42501" => SinkError::Rejected(format!(
                "the sink role lacks a privilege on {table} ({}): run the sink setup for this role",
                db.message()
            )),
            // connection exceptions, resources, operator intervention, rollbacks: transient.
            c if c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57")
                || c.starts_with("40") =>
            {
                SinkError::Unavailable(format!("{c}: {}", db.message()))
            }
            c => SinkError::Rejected(format!("{c}: {}", db.message())),
        };
    }
    SinkError::Unavailable(describe(e))
}

/// The driver error's text; sqlx never includes the connection URL in it.
fn describe(e: &sqlx::Error) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_stripped_and_checked() {
        let (o, s) =
            parse_url("postgres://u:pw@127.0.0.1:5433/audit?schema=bg_audit&sslmode=disable")
                .expect("parses");
        assert_eq!(s, "bg_audit");
        assert_eq!(o.get_port(), 5433);
        assert_eq!(o.get_database(), Some("audit"));
        let (_, s) = parse_url("postgres://u@h/db").expect("parses");
        assert_eq!(s, DEFAULT_SCHEMA);
        for bad in [
            "postgres://u:hunter2@h/db?schema=a;drop",
            "postgres://u:hunter2@h/db?schema=",
            "postgres://u:hunter2@h/db?schema=1a",
            "postgres://u:hunter2@h/db?schema=Audit",
            "postgres://u:hunter2@h/db?schema=a&schema=b",
            "postgres://u:hunter2@h:notaport/db",
        ] {
            let e = parse_url(bad).expect_err(bad);
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
