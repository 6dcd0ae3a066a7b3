//! Multi-row `INSERT`s of a commit's audit entries and outbox rows.
//!
//! Inside one durable commit, what an appended row costs is its statement — a hop to sqlx's
//! SQLite worker thread, a round trip to PostgreSQL — not the flush, so a commit's rows go in
//! as few statements as the parameter limits allow. sqlx's `QueryBuilder` cannot serve here:
//! for the `Any` driver it writes `?` placeholders, which PostgreSQL refuses, so the
//! statements are written with `$N` placeholders, which both backends accept.

use std::fmt::Write as _;

use breakglass_audit::Entry;
use breakglass_engine::ports::{StoreError, StoreResult};
use sqlx::{AnyConnection, AssertSqlSafe};

use crate::db;

/// Most rows in one statement: 500 audit rows bind 4,500 parameters, far below SQLite's limit
/// (32,766) and PostgreSQL's (65,535).
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

// A full statement of either table binds under a quarter of SQLite's limit.
const _: () = assert!(ROWS_PER_STATEMENT * AUDIT_ROW.len() <= 32_766 / 4);

const AUDIT_INSERT: &str = "INSERT INTO audit_log (seq, time_ms, actor, kind, procedure_id, break_id, payload, prev_hash, hash) VALUES";
/// An audit row's nine parameters, in column order.
const AUDIT_ROW: [usize; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 8];

const OUTBOX_INSERT: &str =
    "INSERT INTO outbox (seq, destination, payload, created_at, next_attempt_at) VALUES";
/// An outbox row's four parameters: a new row is due at once, so `created_at` is bound once
/// and used for `next_attempt_at` too.
const OUTBOX_ROW: [usize; 5] = [0, 1, 2, 3, 3];

/// An outbox row to insert.
pub(crate) struct OutboxInsert {
    /// Audit sequence number of the entry it follows.
    pub(crate) seq: i64,
    /// `channel:NAME` or `sink:NAME`.
    pub(crate) destination: String,
    /// What to deliver, as JSON text.
    pub(crate) payload: String,
    /// When it was queued (and first due).
    pub(crate) created_at: i64,
}

/// Inserts `entries` (with `payloads`, their canonical payloads, in the same order) into
/// `audit_log`, in order, [`ROWS_PER_STATEMENT`] rows a statement.
pub(crate) async fn audit_rows(
    conn: &mut AnyConnection,
    entries: &[Entry],
    payloads: &[String],
) -> StoreResult<()> {
    if entries.len() != payloads.len() {
        return Err(StoreError(format!(
            "{} audit entries but {} payloads",
            entries.len(),
            payloads.len()
        )));
    }
    for (entries, payloads) in entries
        .chunks(ROWS_PER_STATEMENT)
        .zip(payloads.chunks(ROWS_PER_STATEMENT))
    {
        let sql = values_sql(AUDIT_INSERT, entries.len(), &AUDIT_ROW);
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (entry, payload) in entries.iter().zip(payloads) {
            let seq = i64::try_from(entry.seq)
                .map_err(|_| StoreError("audit sequence overflow".into()))?;
            query = query
                .bind(seq)
                .bind(entry.time_ms)
                .bind(entry.actor.clone())
                .bind(entry.kind.clone())
                .bind(entry.procedure.clone())
                .bind(entry.break_id.clone())
                .bind(payload.clone())
                .bind(entry.prev_hash.to_hex())
                .bind(entry.hash.to_hex());
        }
        query.execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

/// Inserts `rows` into `outbox` in the order given (so their ids, the delivery order, follow
/// it), [`ROWS_PER_STATEMENT`] rows a statement.
pub(crate) async fn outbox_rows(
    conn: &mut AnyConnection,
    rows: Vec<OutboxInsert>,
) -> StoreResult<()> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<OutboxInsert> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        let sql = values_sql(OUTBOX_INSERT, chunk.len(), &OUTBOX_ROW);
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for row in chunk {
            query = query
                .bind(row.seq)
                .bind(row.destination)
                .bind(row.payload)
                .bind(row.created_at);
        }
        query.execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

/// `prefix` followed by `rows` tuples of `$N` placeholders. Each tuple has one placeholder per
/// element of `shape`, which names the row's parameter it takes (0-based, repeats allowed);
/// each row binds `max(shape) + 1` parameters after those of the rows before it.
fn values_sql(prefix: &str, rows: usize, shape: &[usize]) -> String {
    let per_row = shape.iter().max().map_or(0, |m| m + 1);
    let mut sql = String::with_capacity(prefix.len() + rows * shape.len() * 8);
    sql.push_str(prefix);
    for r in 0..rows {
        sql.push_str(if r == 0 { " (" } else { ", (" });
        for (i, param) in shape.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            // Writing to a String cannot fail.
            let _ = write!(sql, "${}", r * per_row + param + 1);
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_audit_row_is_the_single_row_statement() {
        assert_eq!(
            values_sql(AUDIT_INSERT, 1, &AUDIT_ROW),
            "INSERT INTO audit_log (seq, time_ms, actor, kind, procedure_id, break_id, payload, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
    }

    #[test]
    fn rows_number_their_parameters_in_turn() {
        assert_eq!(
            values_sql(OUTBOX_INSERT, 3, &OUTBOX_ROW),
            "INSERT INTO outbox (seq, destination, payload, created_at, next_attempt_at) VALUES \
             ($1, $2, $3, $4, $4), ($5, $6, $7, $8, $8), ($9, $10, $11, $12, $12)"
        );
        let sql = values_sql(AUDIT_INSERT, ROWS_PER_STATEMENT, &AUDIT_ROW);
        assert!(sql.ends_with("($4492, $4493, $4494, $4495, $4496, $4497, $4498, $4499, $4500)"));
    }
}
