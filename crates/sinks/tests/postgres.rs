//! The insert-only PostgreSQL sink against a real server: setup, delivery as a least-privilege
//! role, exactly-once redelivery, refused UPDATE/DELETE/TRUNCATE/DROP (by privilege and by
//! trigger, even for the owner), a missing table, and a sink that is down at start.
#![allow(clippy::unwrap_used)]

use breakglass_audit::{AuditKey, Draft, Head, SinkRecord, append};
use breakglass_engine::ports::{Sink, SinkError};
use breakglass_sinks::postgres::{PostgresSink, setup};
use breakglass_testkit::{DEFAULT_POSTGRES, fresh_postgres};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const SCHEMA: &str = "bg_audit_sink";

fn records(n: u64) -> Vec<SinkRecord> {
    let mut head: Option<Head> = None;
    let mut out = Vec::new();
    for i in 0..n {
        let entry = append(
            head.as_ref(),
            Draft {
                time_ms: 1_795_910_341_123 + i as i64,
                actor: "alice".into(),
                kind: "break.approved".into(),
                procedure: Some("prod-db-root".into()),
                break_id: Some("brk_01".into()),
                payload: json!({"custodian": format!("c{i}")}),
            },
        )
        .unwrap();
        head = Some(Head {
            seq: entry.seq,
            hash: entry.hash,
        });
        out.push(SinkRecord::Entry(entry));
    }
    let head = head.unwrap();
    out.push(SinkRecord::Checkpoint(
        AuditKey::from_seed([1; 32]).sign_checkpoint(head.seq, head.hash, 1_795_910_400_000),
    ));
    out
}

/// A role name no other test (or run) uses; roles are cluster-wide.
fn unique_role() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    let n = RandomState::new().hash_one(std::process::id());
    format!("bg_sink_{:x}", n & 0xffff_ffff_ffff)
}

/// `url` with its user replaced by `user` (and no password: trust auth on 127.0.0.1).
fn as_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host_and_path = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}@{host_and_path}")
}

fn with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}schema={schema}")
}

async fn drop_role(role: &str) {
    let admin =
        std::env::var("BREAKGLASS_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Runs `sql` on `conn` and returns the error text, failing the test if it succeeds.
async fn refused(conn: &mut PgConnection, sql: &str) -> String {
    match sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(&mut *conn)
        .await
    {
        Ok(_) => panic!("`{sql}` succeeded"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn insert_only_table_delivers_exactly_once_and_refuses_changes() {
    let Some(db) = fresh_postgres("sinks::postgres::insert_only").await else {
        return;
    };
    let role = unique_role();
    setup(&db.url, SCHEMA, &role).await.unwrap();
    // Idempotent: an administrator may run it again.
    setup(&db.url, SCHEMA, &role).await.unwrap();

    let sink_url = with_schema(&as_user(&db.url, &role), SCHEMA);
    let sink = PostgresSink::open("pg", &sink_url).await.unwrap();
    assert_eq!(sink.name(), "pg");
    assert!(sink.read_back().await.unwrap().is_empty());

    let recs = records(4);
    for r in &recs {
        sink.deliver(r).await.unwrap();
    }
    // The outbox redelivers after a crash: no second copy.
    sink.deliver(recs.last().unwrap()).await.unwrap();
    sink.deliver(&recs[0]).await.unwrap();
    assert_eq!(sink.read_back().await.unwrap(), recs);

    // As the sink role: no privilege beyond INSERT and SELECT.
    let table = format!("{SCHEMA}.audit_records");
    let mut as_sink = PgConnection::connect(&as_user(&db.url, &role))
        .await
        .unwrap();
    for sql in [
        format!("UPDATE {table} SET line = 'x'"),
        format!("DELETE FROM {table}"),
        format!("TRUNCATE {table}"),
        format!("DROP TABLE {table}"),
        format!("ALTER TABLE {table} DISABLE TRIGGER ALL"),
        format!("CREATE TABLE {SCHEMA}.other (x INT)"),
    ] {
        let err = refused(&mut as_sink, &sql).await;
        assert!(
            err.contains("permission denied") || err.contains("must be owner"),
            "{sql}: {err}"
        );
    }

    // As the owner (a superuser): the triggers still refuse.
    let mut as_owner = PgConnection::connect(&db.url).await.unwrap();
    for sql in [
        format!("UPDATE {table} SET line = 'x'"),
        format!("DELETE FROM {table}"),
        format!("TRUNCATE {table}"),
    ] {
        let err = refused(&mut as_owner, &sql).await;
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(sink.read_back().await.unwrap(), recs);

    // A corrupt row (written around the sink, as the owner) is reported with its id.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "INSERT INTO {table} (kind, seq, message_id, line) VALUES ('entry', 99, 'entry-99', '{{')"
    )))
    .execute(&mut as_owner)
    .await
    .unwrap();
    let err = sink.read_back().await.unwrap_err();
    assert!(matches!(err, SinkError::Rejected(_)), "{err}");
    assert!(err.to_string().contains("row id"), "{err}");

    as_sink.close().await.unwrap();
    as_owner.close().await.unwrap();
    drop(sink);
    db.drop_db().await;
    drop_role(&role).await;
}

#[tokio::test]
async fn missing_table_says_to_run_setup() {
    let Some(db) = fresh_postgres("sinks::postgres::missing_table").await else {
        return;
    };
    let err = PostgresSink::open("pg", &with_schema(&db.url, "no_such_schema"))
        .await
        .unwrap_err();
    assert!(err.contains("setup"), "{err}");

    let err = setup(&db.url, "bad-name", "bg_sink_x").await.unwrap_err();
    assert!(err.contains("schema"), "{err}");
    let err = setup(&db.url, SCHEMA, "postgres").await.unwrap_err();
    assert!(err.contains("must not be the administrator"), "{err}");
    db.drop_db().await;
}

#[tokio::test]
async fn sink_down_at_start_then_up_delivers_exactly_once() {
    // Port 1 is closed: the server starts anyway and deliveries are retried.
    let down = PostgresSink::open(
        "pg",
        "postgres://bg_sink:s3cret-pw@127.0.0.1:1/audit?schema=breakglass_audit",
    )
    .await
    .unwrap();
    let recs = records(2);
    let err = down.deliver(&recs[0]).await.unwrap_err();
    assert!(matches!(err, SinkError::Unavailable(_)), "{err}");
    assert!(!err.to_string().contains("s3cret-pw"), "{err}");
    assert!(matches!(
        down.read_back().await,
        Err(SinkError::Unavailable(_))
    ));
    let err = PostgresSink::open("pg", "postgres://u:s3cret-pw@h/db?schema=x;y")
        .await
        .unwrap_err();
    assert!(!err.contains("s3cret-pw"), "{err}");

    // The database comes up; the outbox delivers everything again, some of it twice.
    let Some(db) = fresh_postgres("sinks::postgres::sink_down").await else {
        return;
    };
    let role = unique_role();
    setup(&db.url, SCHEMA, &role).await.unwrap();
    let up = PostgresSink::open("pg", &with_schema(&as_user(&db.url, &role), SCHEMA))
        .await
        .unwrap();
    for r in recs.iter().chain(&recs) {
        up.deliver(r).await.unwrap();
    }
    assert_eq!(up.read_back().await.unwrap(), recs);
    drop(up);
    db.drop_db().await;
    drop_role(&role).await;
}
