//! Audit sinks through a real server: a file sink that is down at first (its directory does not
//! exist) holds up no state change and catches up once the directory appears; and tampering with
//! the real SQLite store — with its append-only triggers dropped — is caught by the local
//! verification or by comparison with the sink's copy.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use common::admin;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use breakglass_audit::{
    AuditKey, AuditPublicKey, Divergence, Draft, Entry, Finding, Head, SinkRecord, VerifyError,
    append, canonical_json, verify_records,
};
use breakglass_custody::{Secret, keygen};
use breakglass_domain::Role;
use breakglass_engine::{ChainVerdict, Config, Engine, SystemClock};
use breakglass_server::{ServerConfig, build, serve};
use breakglass_store::SqlStore;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SINK: &str = "audit";
const DESTINATION: &str = "sink:audit";

/// A `secret` procedure with three fresh custodians and a quorum of two.
fn procedure_yaml(id: &str) -> String {
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let (_, key) = keygen();
        custodians.push_str(&format!("  - name: {name}\n    key: {}\n", key.canonical()));
    }
    format!(
        "id: {id}\ntarget:\n  kind: secret\ncustodians:\n{custodians}quorum: 2\nmax_grant: 5m\n"
    )
}

fn config(data_dir: &Path, sink_file: &Path) -> ServerConfig {
    let mut config = ServerConfig::new(data_dir);
    config.sinks = vec![format!("{SINK}=file://{}", sink_file.display())];
    config.checkpoint_every_entries = 5;
    config
}

/// A server serving on a port of its own.
struct Running {
    engine: Engine,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

async fn start(config: ServerConfig) -> Running {
    let built = build(config).await.unwrap();
    let engine = built.state.engine.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, built.state, async move {
        let _ = stopped.await;
    }));
    Running {
        engine,
        addr,
        stop,
        server,
    }
}

impl Running {
    /// Graceful stop (final checkpoint, final delivery); returns the engine for inspection.
    async fn stop(self) -> Engine {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.server)
            .await
            .expect("graceful shutdown")
            .unwrap()
            .unwrap();
        self.engine
    }
}

/// Enrols `actors` actors and applies `procedures` procedures, each its own state change.
async fn changes(engine: &Engine, prefix: &str, actors: usize, procedures: usize) {
    let admin = admin();
    for i in 0..actors {
        engine
            .enroll(
                &admin,
                &format!("{prefix}-user-{i}"),
                &[Role::Requester],
                None,
                "",
                true,
            )
            .await
            .unwrap();
    }
    for i in 0..procedures {
        let id = format!("{prefix}-p{i}");
        engine
            .apply(&admin, &[(format!("{id}.yaml"), procedure_yaml(&id))])
            .await
            .unwrap();
    }
}

async fn pending(engine: &Engine) -> i64 {
    engine
        .outbox_lag()
        .await
        .unwrap()
        .iter()
        .find(|l| l.destination == DESTINATION)
        .map_or(0, |l| l.pending)
}

async fn metrics_pending(addr: SocketAddr) -> i64 {
    breakglass_testkit::install_tls();
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("breakglass_outbox_pending{{destination=\"{DESTINATION}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {DESTINATION} gauge in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Polls until nothing waits for the sink (backoff is 0.5 s doubling, so this is quick when
/// the sink came back early).
async fn wait_delivered(engine: &Engine, within: Duration) {
    let start = tokio::time::Instant::now();
    loop {
        let n = pending(engine).await;
        if n == 0 {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{n} records still wait for {DESTINATION} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sink_records(path: &Path) -> Vec<SinkRecord> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| SinkRecord::from_line(l).unwrap())
        .collect()
}

fn head_of(records: &[SinkRecord]) -> u64 {
    records
        .iter()
        .filter_map(|r| match r {
            SinkRecord::Entry(e) => Some(e.seq),
            SinkRecord::Checkpoint(_) => None,
        })
        .max()
        .unwrap_or(0)
}

/// Asserts the sink file holds entries 1..=head exactly once each, and no record twice.
/// Returns the checkpoints' sequence numbers.
fn assert_exactly_once(path: &Path, head: u64) -> Vec<u64> {
    let records = sink_records(path);
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        *ids.entry(r.message_id()).or_default() += 1;
    }
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "records written twice: {twice:?}");
    for seq in 1..=head {
        assert_eq!(
            ids.get(&format!("entry-{seq}")),
            Some(&1),
            "entry #{seq} not in the sink file exactly once"
        );
    }
    assert_eq!(
        head_of(&records),
        head,
        "the sink holds entries past the head"
    );
    records
        .iter()
        .filter_map(|r| match r {
            SinkRecord::Checkpoint(c) => Some(c.checkpoint.seq),
            SinkRecord::Entry(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn file_sink_down_then_back_catches_up_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sink_dir = dir.path().join("sink");
    let sink_file = sink_dir.join("audit.jsonl");
    let running = start(config(&data, &sink_file)).await;
    let engine = running.engine.clone();
    let admin = admin();

    // The sink's directory does not exist: every state change still succeeds.
    changes(&engine, "down", 6, 2).await;
    engine
        .seal(&admin, "down-p0", Secret::new(b"pw-0".to_vec()))
        .await
        .unwrap();
    // Let the worker try (and fail) at least once, and sign a checkpoint on cadence.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let waiting = pending(&engine).await;
    assert!(waiting > 0, "nothing waits for the sink while it is down");
    let gauge = metrics_pending(running.addr).await;
    assert!(
        gauge > 0,
        "/metrics shows no pending rows for {DESTINATION}"
    );
    assert!(!sink_file.exists());
    println!("sink down: {waiting} records pending (/metrics says {gauge})");

    // The volume comes back: the outbox drains without a restart.
    std::fs::create_dir(&sink_dir).unwrap();
    wait_delivered(&engine, Duration::from_secs(15)).await;
    assert_eq!(metrics_pending(running.addr).await, 0);
    let divergences = engine.verify_against(&admin, SINK).await.unwrap();
    assert!(divergences.is_empty(), "{divergences:?}");
    let ChainVerdict::Intact(report) = engine.verify_audit(&admin).await.unwrap() else {
        panic!("local log does not verify")
    };
    let head = report.head.unwrap().seq;
    let checkpoints = assert_exactly_once(&sink_file, head);
    assert!(
        !checkpoints.is_empty(),
        "no checkpoint reached the sink (cadence 5 entries, head #{head})"
    );
    println!("sink back: {head} entries and checkpoints {checkpoints:?} delivered exactly once");

    // One more change, then a graceful stop: the final checkpoint covers it and reaches the file.
    changes(&engine, "last", 1, 0).await;
    let engine = running.stop().await;
    assert_eq!(
        pending(&engine).await,
        0,
        "records left after the final delivery"
    );
    let ChainVerdict::Intact(report) = engine.verify_audit(&admin).await.unwrap() else {
        panic!("local log does not verify after stop")
    };
    let head = report.head.unwrap();
    assert_eq!(
        report.latest_checkpoint,
        Some(head.seq),
        "no final checkpoint"
    );
    let checkpoints = assert_exactly_once(&sink_file, head.seq);
    assert_eq!(
        checkpoints.last(),
        Some(&head.seq),
        "the final checkpoint did not reach the sink file"
    );
    assert!(
        engine
            .verify_against(&admin, SINK)
            .await
            .unwrap()
            .is_empty()
    );
    let theirs = sink_records(&sink_file);
    let pinned = engine.audit_public_key().unwrap();
    verify_records(&theirs, Some(&pinned)).expect("the sink's copy verifies on its own");
}

/// One tampering with the stored log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    /// Nothing changed: the copy itself verifies.
    Control,
    EditActor,
    EditPayload,
    DeleteMiddle,
    SwapTwo,
    /// Cut the last 3 entries and move the head row back; the checkpoints stay.
    TruncateTail,
    /// The same, and also delete the checkpoints that covered the cut entries.
    TruncateTailAndCheckpoints,
    DeleteNewestCheckpoint,
    /// Edit the second-to-last entry, recompute the hashes after it, drop the checkpoints
    /// that covered them: the same key, a consistent log, only the sink can tell.
    RewriteTail,
    /// Rebuild the whole log with another signing key; the data dir's key file is untouched.
    Rebuild,
    /// Rebuild the whole log and also replace the data dir's key file with the forger's key.
    RebuildWithKeyFile,
}

/// What the original server left behind.
struct Original {
    entries: Vec<Entry>,
    latest_checkpoint_time: i64,
    trusted: AuditPublicKey,
}

const MIDDLE: u64 = 12;

#[tokio::test]
async fn tampering_with_the_sqlite_store_is_detected() {
    let base = tempfile::tempdir().unwrap();
    let data = base.path().join("orig").join("data");
    let sink_file = data.join("sink").join("audit.jsonl");
    std::fs::create_dir_all(sink_file.parent().unwrap()).unwrap();
    let admin = admin();

    let running = start(config(&data, &sink_file)).await;
    // In batches, so the worker (every 250 ms) signs checkpoints between them.
    for batch in 0..4 {
        changes(&running.engine, &format!("t{batch}"), 5, 1).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    for p in ["t0-p0", "t1-p0"] {
        running
            .engine
            .seal(&admin, p, Secret::new(format!("pw-{p}").into_bytes()))
            .await
            .unwrap();
    }
    wait_delivered(&running.engine, Duration::from_secs(15)).await;
    let engine = running.stop().await;
    assert_eq!(pending(&engine).await, 0);
    let records = engine.audit_records(&admin).await.unwrap();
    let ChainVerdict::Intact(report) = engine.verify_audit(&admin).await.unwrap() else {
        panic!("the original log does not verify")
    };
    let head = report.head.unwrap().seq;
    assert!(head >= 30, "only {head} entries");
    assert_eq!(report.latest_checkpoint, Some(head));
    assert!(report.checkpoints >= 2, "{report:?}");
    assert_eq!(assert_exactly_once(&sink_file, head).last(), Some(&head));
    let original = Original {
        entries: records
            .iter()
            .filter_map(|r| match r {
                SinkRecord::Entry(e) => Some(e.clone()),
                SinkRecord::Checkpoint(_) => None,
            })
            .collect(),
        latest_checkpoint_time: records
            .iter()
            .filter_map(|r| match r {
                SinkRecord::Checkpoint(c) => Some(c.checkpoint.time_ms),
                SinkRecord::Entry(_) => None,
            })
            .max()
            .unwrap(),
        trusted: engine.audit_public_key().unwrap(),
    };
    // Close every handle on the database before copying it (the pool closes as it drops).
    drop(engine);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let cases = [
        Tamper::Control,
        Tamper::EditActor,
        Tamper::EditPayload,
        Tamper::DeleteMiddle,
        Tamper::SwapTwo,
        Tamper::TruncateTail,
        Tamper::TruncateTailAndCheckpoints,
        Tamper::DeleteNewestCheckpoint,
        Tamper::RewriteTail,
        Tamper::Rebuild,
        Tamper::RebuildWithKeyFile,
    ];
    for (n, case) in cases.into_iter().enumerate() {
        let copy = base.path().join(format!("case{n}")).join("data");
        copy_dir(&data, &copy);
        check_case(case, &copy, &original).await;
    }
}

async fn check_case(case: Tamper, data: &Path, original: &Original) {
    let admin = admin();
    let sink_file = data.join("sink").join("audit.jsonl");
    let db = data.join("breakglass.db");
    let head = original.entries.len() as u64;
    tamper(case, &db, data, original).await;

    let built = build(config(data, &sink_file)).await;
    let engine = match (case, built) {
        (_, Ok(b)) => b.state.engine,
        (Tamper::Rebuild, Err(e)) => {
            // The server refuses to start: the log names a key the data dir does not hold.
            let why = format!("{e:#}");
            assert!(why.contains("is not this log's current key"), "{why}");
            println!("{case:?}: the server refuses to start: {why}");
            // Inspect the same store without the server's key, as an auditor would.
            let store = SqlStore::open_sqlite(&db).await.unwrap();
            let sink = breakglass_sinks::open(&format!("{SINK}=file://{}", sink_file.display()))
                .await
                .unwrap();
            Engine::with_sinks(
                Arc::new(store),
                Arc::new(SystemClock),
                Config::default(),
                vec![sink],
            )
        }
        (_, Err(e)) => panic!("{case:?}: build failed: {e:#}"),
    };
    let local = match engine.verify_audit(&admin).await.unwrap() {
        ChainVerdict::Intact(_) => None,
        ChainVerdict::Broken(f) => Some(f),
    };
    let against = engine.verify_against(&admin, SINK).await.unwrap();
    let records = engine.audit_records(&admin).await.unwrap();
    let pinned = verify_records(&records, Some(&original.trusted)).err();
    println!(
        "{case:?}: local: {}; against sink: [{}]; pinned key: {}",
        local.as_ref().map_or("intact".into(), ToString::to_string),
        against
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        pinned.as_ref().map_or("ok".into(), ToString::to_string),
    );
    let has = |want: &dyn Fn(&Divergence) -> bool| against.iter().any(want);
    match case {
        Tamper::Control => {
            assert!(local.is_none() && against.is_empty() && pinned.is_none());
        }
        Tamper::EditActor | Tamper::EditPayload => {
            assert!(
                matches!(local, Some(Finding::Chain(VerifyError::HashMismatch { seq })) if seq == MIDDLE),
                "{local:?}"
            );
            assert!(has(
                &|d| matches!(d, Divergence::LocalEdited { seq } if *seq == MIDDLE)
            ));
        }
        Tamper::DeleteMiddle => {
            assert!(
                matches!(local, Some(Finding::Chain(VerifyError::SequenceGap { expected, .. })) if expected == MIDDLE),
                "{local:?}"
            );
            assert!(has(
                &|d| matches!(d, Divergence::LocalDeleted { seq } if *seq == MIDDLE)
            ));
        }
        Tamper::SwapTwo => {
            assert!(matches!(local, Some(Finding::Chain(_))), "{local:?}");
            assert!(has(
                &|d| matches!(d, Divergence::LocalEdited { seq } if *seq == MIDDLE)
            ));
        }
        Tamper::TruncateTail => {
            assert!(
                matches!(local, Some(Finding::Truncated { checkpoint_seq, head_seq }) if checkpoint_seq > head - 3 && head_seq == head - 3),
                "{local:?}"
            );
            assert!(has(
                &|d| matches!(d, Divergence::LocalTruncated { from, .. } if *from == head - 2)
            ));
        }
        Tamper::TruncateTailAndCheckpoints => {
            // A consistent, shorter log: only the sink's copy shows what was cut.
            assert!(local.is_none(), "{local:?}");
            assert!(has(
                &|d| matches!(d, Divergence::LocalTruncated { from, .. } if *from == head - 2)
            ));
        }
        Tamper::DeleteNewestCheckpoint => {
            assert!(local.is_none(), "{local:?}");
            assert!(has(
                &|d| matches!(d, Divergence::LocalCheckpointMissing { seq, .. } if *seq == head)
            ));
        }
        Tamper::RewriteTail => {
            assert!(local.is_none() && pinned.is_none(), "{local:?} {pinned:?}");
            assert!(has(
                &|d| matches!(d, Divergence::Forked { seq } if *seq == head - 1)
            ));
        }
        Tamper::Rebuild | Tamper::RebuildWithKeyFile => {
            assert!(
                matches!(pinned, Some(Finding::UntrustedKey { .. })),
                "{pinned:?}"
            );
            assert!(has(
                &|d| matches!(d, Divergence::Forked { seq } if *seq == 1)
            ));
            if case == Tamper::RebuildWithKeyFile {
                // The server trusts the key in its own data dir, so with that file replaced
                // the local check passes: the pinned key and the sink are what catch it.
                assert!(local.is_none(), "{local:?}");
            }
        }
    }
}

/// Copies a directory tree. A SQLite `-wal` file is copied before its database and `-shm`
/// files are skipped, so the copy is consistent even if a checkpoint ran meanwhile.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(from)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort_by_key(|p| !p.to_string_lossy().ends_with("-wal"));
    for p in entries {
        let name = p.file_name().unwrap();
        if p.is_dir() {
            copy_dir(&p, &to.join(name));
        } else if !p.to_string_lossy().ends_with("-shm") {
            match std::fs::copy(&p, to.join(name)) {
                Ok(_) => {}
                // A closing connection may have checkpointed and removed the WAL meanwhile;
                // the database file then holds everything.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("copying {}: {e}", p.display()),
            }
        }
    }
}

async fn tamper(case: Tamper, db: &Path, data: &Path, original: &Original) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    for trigger in [
        "DROP TRIGGER audit_log_no_update",
        "DROP TRIGGER audit_log_no_delete",
        "DROP TRIGGER checkpoints_no_update",
        "DROP TRIGGER checkpoints_no_delete",
    ] {
        sqlx::query(trigger).execute(&pool).await.unwrap();
    }
    let head = original.entries.len() as u64;
    let middle = &original.entries[(MIDDLE - 1) as usize];
    match case {
        Tamper::Control => {}
        Tamper::EditActor => {
            assert_ne!(middle.actor, "mallory");
            sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = $1")
                .bind(MIDDLE as i64)
                .execute(&pool)
                .await
                .unwrap();
        }
        Tamper::EditPayload => {
            let mut payload = middle.payload.clone();
            let object = payload.as_object_mut().unwrap();
            let key = object
                .iter()
                .find(|(_, v)| v.is_string())
                .map(|(k, _)| k.clone())
                .unwrap_or_else(|| "note".into());
            object.insert(key, Value::String("tampered".into()));
            assert_ne!(payload, middle.payload);
            sqlx::query("UPDATE audit_log SET payload = $1 WHERE seq = $2")
                .bind(canonical_json(&payload).unwrap())
                .bind(MIDDLE as i64)
                .execute(&pool)
                .await
                .unwrap();
        }
        Tamper::DeleteMiddle => {
            sqlx::query("DELETE FROM audit_log WHERE seq = $1")
                .bind(MIDDLE as i64)
                .execute(&pool)
                .await
                .unwrap();
        }
        Tamper::SwapTwo => {
            let other = &original.entries[MIDDLE as usize];
            for (seq, e) in [(MIDDLE, other), (MIDDLE + 1, middle)] {
                sqlx::query("UPDATE audit_log SET time_ms = $1, actor = $2, kind = $3, procedure_id = $4, break_id = $5, payload = $6, prev_hash = $7, hash = $8 WHERE seq = $9")
                    .bind(e.time_ms)
                    .bind(e.actor.clone())
                    .bind(e.kind.clone())
                    .bind(e.procedure.clone())
                    .bind(e.break_id.clone())
                    .bind(canonical_json(&e.payload).unwrap())
                    .bind(e.prev_hash.to_hex())
                    .bind(e.hash.to_hex())
                    .bind(seq as i64)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
        Tamper::TruncateTail | Tamper::TruncateTailAndCheckpoints => {
            let last = &original.entries[(head - 4) as usize];
            assert_eq!(last.seq, head - 3);
            sqlx::query("DELETE FROM audit_log WHERE seq > $1")
                .bind(last.seq as i64)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(last.seq as i64)
                .bind(last.hash.to_hex())
                .execute(&pool)
                .await
                .unwrap();
            if case == Tamper::TruncateTailAndCheckpoints {
                sqlx::query("DELETE FROM checkpoints WHERE seq > $1")
                    .bind(last.seq as i64)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
        Tamper::DeleteNewestCheckpoint => {
            let done =
                sqlx::query("DELETE FROM checkpoints WHERE id = (SELECT MAX(id) FROM checkpoints)")
                    .execute(&pool)
                    .await
                    .unwrap();
            assert_eq!(done.rows_affected(), 1);
        }
        Tamper::RewriteTail => {
            let keep = &original.entries[(head - 3) as usize];
            assert_eq!(keep.seq, head - 2);
            let mut at = Head {
                seq: keep.seq,
                hash: keep.hash,
            };
            for e in &original.entries[(head - 2) as usize..] {
                let actor = if e.seq == head - 1 {
                    "mallory".to_owned()
                } else {
                    e.actor.clone()
                };
                let forged = append(
                    Some(&at),
                    Draft {
                        time_ms: e.time_ms,
                        actor,
                        kind: e.kind.clone(),
                        procedure: e.procedure.clone(),
                        break_id: e.break_id.clone(),
                        payload: e.payload.clone(),
                    },
                )
                .unwrap();
                sqlx::query(
                    "UPDATE audit_log SET actor = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
                )
                .bind(forged.actor.clone())
                .bind(forged.prev_hash.to_hex())
                .bind(forged.hash.to_hex())
                .bind(forged.seq as i64)
                .execute(&pool)
                .await
                .unwrap();
                at = Head {
                    seq: forged.seq,
                    hash: forged.hash,
                };
            }
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(at.seq as i64)
                .bind(at.hash.to_hex())
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("DELETE FROM checkpoints WHERE seq >= $1")
                .bind((head - 1) as i64)
                .execute(&pool)
                .await
                .unwrap();
        }
        Tamper::Rebuild | Tamper::RebuildWithKeyFile => {
            let forger = AuditKey::from_seed([9; 32]);
            let entries = rebuilt(&original.entries, &forger);
            for wipe in ["DELETE FROM audit_log", "DELETE FROM checkpoints"] {
                sqlx::query(wipe).execute(&pool).await.unwrap();
            }
            for e in &entries {
                sqlx::query("INSERT INTO audit_log (seq, time_ms, actor, kind, procedure_id, break_id, payload, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                    .bind(e.seq as i64)
                    .bind(e.time_ms)
                    .bind(e.actor.clone())
                    .bind(e.kind.clone())
                    .bind(e.procedure.clone())
                    .bind(e.break_id.clone())
                    .bind(canonical_json(&e.payload).unwrap())
                    .bind(e.prev_hash.to_hex())
                    .bind(e.hash.to_hex())
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            let last = entries.last().unwrap();
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(last.seq as i64)
                .bind(last.hash.to_hex())
                .execute(&pool)
                .await
                .unwrap();
            let cp =
                forger.sign_checkpoint(last.seq, last.hash, original.latest_checkpoint_time + 1);
            sqlx::query("INSERT INTO checkpoints (seq, key_id, head, time_ms, signature) VALUES ($1, $2, $3, $4, $5)")
                .bind(cp.checkpoint.seq as i64)
                .bind(cp.checkpoint.key_id.clone())
                .bind(cp.checkpoint.head.to_hex())
                .bind(cp.checkpoint.time_ms)
                .bind(hex_encode(&cp.signature))
                .execute(&pool)
                .await
                .unwrap();
            if case == Tamper::RebuildWithKeyFile {
                breakglass_server::write_private_file(
                    &data.join(breakglass_server::audit_key::KEY_FILE),
                    forger.expose_file_text().as_bytes(),
                )
                .unwrap();
            }
        }
    }
    pool.close().await;
}

/// The whole log again from seq 1, internally consistent: `audit.key_created` names the
/// forger's key, and the entry at `MIDDLE` (an inconvenient event) is left out.
fn rebuilt(entries: &[Entry], forger: &AuditKey) -> Vec<Entry> {
    let mut head: Option<Head> = None;
    let mut out = Vec::new();
    for e in entries.iter().filter(|e| e.seq != MIDDLE) {
        let payload = if e.kind == breakglass_audit::KEY_CREATED {
            json!({"key_id": forger.key_id(), "public_key": forger.public().to_string()})
        } else {
            e.payload.clone()
        };
        let entry = append(
            head.as_ref(),
            Draft {
                time_ms: e.time_ms,
                actor: e.actor.clone(),
                kind: e.kind.clone(),
                procedure: e.procedure.clone(),
                break_id: e.break_id.clone(),
                payload,
            },
        )
        .unwrap();
        head = Some(Head {
            seq: entry.seq,
            hash: entry.hash,
        });
        out.push(entry);
    }
    let report = verify_records(
        &out.iter()
            .cloned()
            .map(SinkRecord::Entry)
            .collect::<Vec<_>>(),
        None,
    )
    .unwrap();
    assert_eq!(report.keys, vec![forger.key_id()]);
    out
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
