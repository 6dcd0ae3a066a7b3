//! The store conformance suite: the same cases run against SQLite and PostgreSQL, at the
//! `Store`/`Tx` level and through the engine's whole break lifecycle.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

use std::sync::Arc;
use std::time::Duration;

use breakglass_audit::Draft;
use breakglass_custody::{ExposeSecret, Identity, Secret, decrypt_share, decrypt_with, keygen};
use breakglass_domain::{Actor, Break, Role, Timestamp};
use breakglass_engine::ports::{OutboxItem, Store};
use breakglass_engine::{ChainVerdict, Config, Engine, EngineError, ManualClock, StoredActor};
use breakglass_store::SqlStore;
use serde_json::json;

const T0: i64 = 1_800_000_000_000;

/// Custodians with their identities, and a procedure file naming them.
struct Fixture {
    identities: Vec<(String, Identity)>,
    requester: Identity,
    yaml: String,
}

fn fixture() -> Fixture {
    let mut identities = Vec::new();
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        // bob holds an ssh-ed25519 key he already had; alice and carol hold age keys.
        let identity = if name == "bob" {
            Identity::parse(include_str!("../../custody/tests/vectors/bob.id_ed25519"))
                .expect("ssh identity")
        } else {
            Identity::parse(keygen().0.expose_secret()).expect("identity")
        };
        let key = identity.public();
        identities.push((name.to_owned(), identity));
        custodians.push_str(&format!(
            "  - name: {name}\n    contact: {name}@example.com\n    key: {}\n",
            key.canonical()
        ));
    }
    let (rid, _) = keygen();
    let yaml = format!(
        "id: root-secret\ndescription: root password of the vault host\ntarget:\n  kind: secret\ncustodians:\n{custodians}quorum: 2\nmax_grant: 15m\nalert_channels: [sec-slack]\ndependencies: [vpn]\n"
    );
    Fixture {
        identities,
        requester: Identity::parse(rid.expose_secret()).expect("requester"),
        yaml,
    }
}

fn admin() -> Actor {
    Actor {
        name: "root-admin".into(),
        roles: vec![Role::Admin],
        key: None,
    }
}

async fn engine_on(store: SqlStore) -> (Engine, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let engine = Engine::new(Arc::new(store), clock.clone(), Config::default());
    (engine, clock)
}

async fn approve(
    engine: &Engine,
    f: &Fixture,
    who: &str,
    break_id: &str,
) -> Result<breakglass_engine::ApproveOutcome, EngineError> {
    let actor = Actor {
        name: who.into(),
        roles: vec![Role::Custodian],
        key: None,
    };
    let share = engine.share_for(&actor, break_id).await?;
    let identity = &f
        .identities
        .iter()
        .find(|(n, _)| n == who)
        .expect("custodian")
        .1;
    let plain = decrypt_share(&share.age_file, identity).expect("decrypt own share");
    engine.approve(&actor, break_id, &plain.encode()).await
}

/// The whole lifecycle through the engine: apply, seal, open, approve ×2, reveal, expire,
/// taint, re-seal; every step audited and the chain verifies.
async fn lifecycle(store: SqlStore) {
    let f = fixture();
    let (engine, clock) = engine_on(store).await;
    let admin = admin();
    let applied = engine
        .apply(&admin, &[("p.yaml".into(), f.yaml.clone())])
        .await
        .expect("apply");
    assert_eq!(applied[0].change.as_str(), "created");
    let again = engine
        .apply(&admin, &[("p.yaml".into(), f.yaml.clone())])
        .await
        .expect("apply again");
    assert_eq!(again[0].change.as_str(), "unchanged");
    engine
        .enroll(
            &admin,
            "dave",
            &[Role::Requester],
            Some(&f.requester.public().canonical()),
            "dave@example.com",
            false,
        )
        .await
        .expect("enroll dave");
    let dave = Actor {
        name: "dave".into(),
        roles: vec![Role::Requester],
        key: Some(f.requester.public()),
    };

    let err = engine
        .open_break(&dave, "root-secret", "db down", "INC-1", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no sealed credential"), "{err}");
    engine
        .seal(&admin, "root-secret", Secret::new(b"hunter2-root".to_vec()))
        .await
        .expect("seal");

    let requested = engine
        .open_break(
            &dave,
            "root-secret",
            "db down",
            "INC-1",
            Some(Duration::from_secs(300)),
        )
        .await
        .expect("open");
    let id = requested.info.id.0.clone();
    // A foreign share (carol's, submitted by bob) is refused and names the problem.
    let bob = Actor {
        name: "bob".into(),
        roles: vec![Role::Custodian],
        key: None,
    };
    let carol_share = {
        let carol = Actor {
            name: "carol".into(),
            roles: vec![Role::Custodian],
            key: None,
        };
        let s = engine.share_for(&carol, &id).await.expect("carol share");
        decrypt_share(&s.age_file, &f.identities[2].1).expect("decrypt")
    };
    let err = engine
        .approve(&bob, &id, &carol_share.encode())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("carol"), "{err}");
    let err = engine
        .approve(&bob, &id, "bm90IGEgc2hhcmU=")
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Share(_)), "{err}");

    clock.advance(Duration::from_millis(1500));
    let first = approve(&engine, &f, "alice", &id).await.expect("alice");
    assert_eq!((first.approvals, first.quorum), (1, 2));
    assert!(matches!(first.state, Break::Requested(_)));
    let err = approve(&engine, &f, "alice", &id).await.unwrap_err();
    assert!(err.to_string().contains("already approved"), "{err}");
    let err = engine.reveal(&dave, &id).await.unwrap_err();
    assert!(err.to_string().contains("not granted yet (1 of 2"), "{err}");

    clock.advance(Duration::from_millis(500));
    let second = approve(&engine, &f, "bob", &id).await.expect("bob");
    let Break::Granted(granted) = &second.state else {
        panic!("not granted: {:?}", second.state)
    };
    assert_eq!(granted.granted_at.since(granted.info.requested_at), 2000);
    let err = approve(&engine, &f, "carol", &id).await.unwrap_err();
    assert!(err.to_string().contains("already granted"), "{err}");

    // Only the requester may reveal, once, inside the window.
    let eve = Actor {
        name: "eve".into(),
        roles: vec![Role::Requester],
        key: None,
    };
    let err = engine.reveal(&eve, &id).await.unwrap_err();
    assert!(
        err.to_string().contains("only the requester `dave`"),
        "{err}"
    );
    let revealed = engine.reveal(&dave, &id).await.expect("reveal");
    let secret = decrypt_with(&f.requester, &revealed.age_file).expect("requester decrypts");
    assert_eq!(secret.as_slice(), b"hunter2-root");
    let err = engine.reveal(&dave, &id).await.unwrap_err();
    assert!(err.to_string().contains("already revealed"), "{err}");

    let status = engine
        .procedure(&admin, "root-secret")
        .await
        .expect("status");
    assert!(
        status
            .stored
            .taint
            .as_ref()
            .is_some_and(|t| t.secret_revealed),
        "tainted after reveal"
    );

    // The deadline passes: the sweep expires the grant.
    clock.advance(Duration::from_secs(299));
    assert!(engine.expire_due().await.expect("sweep").is_empty());
    clock.advance(Duration::from_secs(1));
    assert_eq!(engine.expire_due().await.expect("sweep"), vec![id.clone()]);
    let ended = engine.break_(&admin, &id).await.expect("load");
    assert_eq!(ended.state(), "expired");
    let err = approve(&engine, &f, "carol", &id).await.unwrap_err();
    assert!(
        err.to_string().contains("break has ended (expired)"),
        "{err}"
    );

    // Re-sealing the revealed secret is refused; a new secret clears the taint.
    let err = engine
        .seal(&admin, "root-secret", Secret::new(b"hunter2-root".to_vec()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rotate it"), "{err}");
    let summary = engine
        .seal(&admin, "root-secret", Secret::new(b"new-root-pw".to_vec()))
        .await
        .expect("re-seal");
    assert!(summary.cleared_taint.is_some());
    assert!(
        engine
            .procedure(&admin, "root-secret")
            .await
            .expect("status")
            .stored
            .taint
            .is_none()
    );

    let verdict = engine.verify_audit(&admin).await.expect("verify");
    let ChainVerdict::Intact(report) = verdict else {
        panic!("chain broken: {verdict:?}")
    };
    let entries = engine
        .audit_entries(&admin, 1, 1000)
        .await
        .expect("entries");
    assert_eq!(report.entries, entries.len() as u64);
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    for kind in [
        "procedure.applied",
        "seal.created",
        "break.requested",
        "share.rejected",
        "share.accepted",
        "break.granted",
        "grant.revealed",
        "break.expired",
        "procedure.untainted",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    // No secret in any audit payload.
    for e in &entries {
        let text = e.to_json_line();
        assert!(
            !text.contains("hunter2") && !text.contains("new-root-pw"),
            "secret in audit: {text}"
        );
    }
}

/// `Tx` behaviour: rollback on drop, refusal of a commit without audit, outbox rows, tokens,
/// and the append-only audit table.
async fn transactions(store: SqlStore) {
    let tx = store.begin().await.expect("begin");
    let err = tx.commit(vec![], vec![]).await.unwrap_err();
    assert!(err.to_string().contains("without an audit entry"));

    let mut tx = store.begin().await.expect("begin");
    let actor = StoredActor {
        actor: Actor {
            name: "bot".into(),
            roles: vec![Role::Auditor],
            key: None,
        },
        token_hash: Some("ab".repeat(32)),
        contact: String::new(),
    };
    tx.put_actor(&actor).await.expect("put");
    drop(tx);
    assert!(
        store
            .read()
            .await
            .expect("read")
            .actor("bot")
            .await
            .expect("get")
            .is_none(),
        "dropped tx rolled back"
    );

    let mut tx = store.begin().await.expect("begin");
    tx.put_actor(&actor).await.expect("put");
    let draft = |kind: &str| Draft {
        time_ms: T0,
        actor: "t".into(),
        kind: kind.into(),
        procedure: None,
        break_id: None,
        payload: json!({"n": 1}),
    };
    let entries = tx
        .commit(
            vec![draft("a"), draft("b")],
            vec![OutboxItem {
                draft: 1,
                destination: "channel:x".into(),
                payload: json!({"k": "v"}),
            }],
        )
        .await
        .expect("commit");
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    let mut r = store.read().await.expect("read");
    assert_eq!(
        r.actor_by_token(&"ab".repeat(32))
            .await
            .expect("by token")
            .expect("found")
            .actor
            .name,
        "bot"
    );
    let outbox = r.pending_outbox(10).await.expect("outbox");
    assert_eq!(outbox.len(), 1);
    assert_eq!(
        (outbox[0].seq, outbox[0].destination.as_str()),
        (2, "channel:x")
    );
    let head = r.audit_head().await.expect("head").expect("some");
    assert_eq!(head.seq, 2);
    assert_eq!(head.hash, entries[1].hash);
    drop(r);

    // The database itself refuses to rewrite or delete audit entries.
    let update = sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
        .execute(store.pool())
        .await;
    assert!(update.is_err(), "UPDATE on audit_log must fail");
    let delete = sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(store.pool())
        .await;
    assert!(delete.is_err(), "DELETE on audit_log must fail");
    let entries = store
        .read()
        .await
        .expect("read")
        .audit_entries(1, 10)
        .await
        .expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].actor, "t");

    // Entries about a procedure or a break, newest first, paged by `before`.
    use breakglass_engine::ports::AuditAbout;
    let about = |procedure: Option<&str>, break_id: Option<&str>| Draft {
        time_ms: T0,
        actor: "t".into(),
        kind: "x".into(),
        procedure: procedure.map(str::to_owned),
        break_id: break_id.map(str::to_owned),
        payload: json!({}),
    };
    let tx = store.begin().await.expect("begin");
    tx.commit(
        vec![
            about(Some("p1"), Some("brk_a")),
            about(Some("p2"), None),
            about(Some("p1"), None),
            about(Some("p1"), Some("brk_b")),
        ],
        vec![],
    )
    .await
    .expect("commit");
    let mut r = store.read().await.expect("read");
    let seqs = |v: Vec<breakglass_audit::Entry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
    let p1 = r
        .audit_entries_about(AuditAbout::Procedure("p1"), u64::MAX, 10)
        .await
        .expect("p1");
    assert_eq!(seqs(p1), vec![6, 5, 3]);
    let page = r
        .audit_entries_about(AuditAbout::Procedure("p1"), 5, 1)
        .await
        .expect("page");
    assert_eq!(seqs(page), vec![3]);
    let brk = r
        .audit_entries_about(AuditAbout::Break("brk_b"), u64::MAX, 10)
        .await
        .expect("break");
    assert_eq!(seqs(brk), vec![6]);
    let all = r
        .audit_entries_about(AuditAbout::All, 3, 10)
        .await
        .expect("all");
    assert_eq!(seqs(all), vec![2, 1]);
}

async fn grant_records(store: SqlStore) {
    use breakglass_engine::ports::{GrantRecord, TargetReport};
    let g = GrantRecord {
        break_id: "brk_1".into(),
        procedure: "p".into(),
        kind: "postgres".into(),
        handle: json!({"role": "bg_1"}),
        created_at: Timestamp(T0),
        deadline: Timestamp(T0 + 1000),
        end_requested_at: None,
        end_cause: None,
        ended_at: None,
        end_attempts: 0,
        next_attempt_at: None,
        last_error: None,
    };
    let draft = Draft {
        time_ms: T0,
        actor: "t".into(),
        kind: "grant.test".into(),
        procedure: None,
        break_id: None,
        payload: json!({}),
    };
    let mut tx = store.begin().await.expect("begin");
    tx.put_grant(&g).await.expect("put");
    tx.put_target_report(&TargetReport {
        procedure: "p".into(),
        kind: "check".into(),
        at: Timestamp(T0),
        ok: false,
        detail: json!([{"name": "x", "ok": false}]),
    })
    .await
    .expect("report");
    tx.commit(vec![draft.clone()], vec![])
        .await
        .expect("commit");
    let mut r = store.read().await.expect("read");
    assert_eq!(r.grant("brk_1").await.expect("get"), Some(g.clone()));
    assert!(
        r.grants_to_end(Timestamp(T0 + 5000))
            .await
            .expect("due")
            .is_empty(),
        "not requested yet"
    );
    let reports = r.target_reports(Some("p")).await.expect("reports");
    assert_eq!(reports.len(), 1);
    assert!(!reports[0].ok);
    assert_eq!(reports[0].detail[0]["name"], "x");
    drop(r);

    // Requested, then failed once with a retry time: due only from that time on.
    let mut failed = g.clone();
    failed.end_requested_at = Some(Timestamp(T0 + 1000));
    failed.end_cause = Some("expired".into());
    failed.end_attempts = 1;
    failed.next_attempt_at = Some(Timestamp(T0 + 3000));
    failed.last_error = Some("postgres 127.0.0.1:1/app unreachable".into());
    let mut tx = store.begin().await.expect("begin");
    tx.put_grant(&failed).await.expect("put");
    tx.commit(vec![draft.clone()], vec![])
        .await
        .expect("commit");
    let mut r = store.read().await.expect("read");
    assert!(
        r.grants_to_end(Timestamp(T0 + 2000))
            .await
            .expect("due")
            .is_empty()
    );
    assert_eq!(
        r.grants_to_end(Timestamp(T0 + 3000)).await.expect("due"),
        vec![failed.clone()]
    );
    drop(r);

    let mut done = failed;
    done.ended_at = Some(Timestamp(T0 + 3100));
    let mut tx = store.begin().await.expect("begin");
    tx.put_grant(&done).await.expect("put");
    tx.commit(vec![draft], vec![]).await.expect("commit");
    let mut r = store.read().await.expect("read");
    assert!(
        r.grants_to_end(Timestamp(T0 + 9000))
            .await
            .expect("due")
            .is_empty()
    );
    assert_eq!(
        r.grant("brk_1").await.expect("get").expect("some").ended_at,
        Some(Timestamp(T0 + 3100))
    );
}

/// Drill history, drill seals and schedule runs: stored and read back alike on both backends.
/// Recovery kit exports (one row per procedure, replaced on re-export) and spool imports (one
/// per spool head; a second insert of the same head fails).
async fn recovery_records(store: SqlStore) {
    use breakglass_engine::ports::{KitExport, SpoolImport};
    let first = KitExport {
        procedure: "p".into(),
        seal_id: "seal_1".into(),
        kit_id: "kit_a".into(),
        location: "/kits/p.kit".into(),
        exported_at: Timestamp(T0),
    };
    let again = KitExport {
        seal_id: "seal_2".into(),
        kit_id: "kit_b".into(),
        exported_at: Timestamp(T0 + 10),
        ..first.clone()
    };
    for k in [&first, &again] {
        let mut tx = store.begin().await.expect("begin");
        tx.put_recovery_kit(k).await.expect("put kit");
        tx.commit_bookkeeping().await.expect("commit");
    }
    let import = SpoolImport {
        spool_head: "head_1".into(),
        procedure: "p".into(),
        kit_id: "kit_b".into(),
        lines: 7,
        imported_by: "admin".into(),
        imported_at: Timestamp(T0 + 20),
    };
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(
        tx.recovery_kit("p").await.expect("kit"),
        Some(again.clone())
    );
    assert_eq!(tx.recovery_kit("q").await.expect("no kit"), None);
    assert_eq!(tx.recovery_import("head_1").await.expect("none yet"), None);
    tx.put_recovery_import(&import).await.expect("import");
    tx.commit_bookkeeping().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(
        tx.recovery_import("head_1").await.expect("import"),
        Some(import.clone())
    );
    assert!(
        tx.put_recovery_import(&import).await.is_err(),
        "the same spool is not recorded twice"
    );
}

/// Gateway recordings: 250 sessions' chunks in one call (more rows than one INSERT takes),
/// a chunk stored twice (a retried hand-over) kept once, and every statement read back alike
/// on both backends, by break and by session, text with quotes, newlines and non-ASCII intact.
async fn statement_chunks(store: SqlStore) {
    use breakglass_engine::ports::{StatementChunk, StatementRecord};
    let statement = |session: usize, seq: u64| StatementRecord {
        break_id: "brk_1".into(),
        session_id: format!("brk_1-s{session}"),
        seq,
        started_at: Timestamp(T0 + i64::try_from(seq).unwrap()),
        duration_us: 120,
        protocol: if seq.is_multiple_of(2) {
            "extended"
        } else {
            "simple"
        }
        .into(),
        statement: format!("SELECT 'it''s {seq}'\n  -- «ünïcode» \"q\""),
        command: (seq != 3).then(|| "SELECT 1".to_owned()),
        rows: (seq != 3).then_some(1),
        error: (seq == 3).then(|| "42P01: relation \"x\" does not exist".to_owned()),
        refused: seq == 4,
        params: seq
            .is_multiple_of(2)
            .then(|| vec![Some(format!("it's «{seq}»")), None]),
        data: (seq == 3).then(|| "1\tit's «ü»\n2\t\\N\n".to_owned()),
    };
    let mut first = Vec::new();
    let mut second = Vec::new();
    for session in 0..250 {
        let mut c = StatementChunk::new("brk_1", &format!("brk_1-s{session}"));
        for seq in 1..=3 {
            c.push(&statement(session, seq));
        }
        first.push(c.take().expect("three statements"));
        assert!(c.is_empty() && c.take().is_none());
        c.push(&statement(session, 4));
        second.push(c.take().expect("one statement"));
    }
    let mut tx = store.begin().await.expect("begin");
    tx.put_statement_chunks(&first).await.expect("first chunks");
    tx.commit_bookkeeping().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    // The first chunk of session 7 again (a retry), with the second ones.
    let mut again = vec![first[7].clone()];
    again.extend(second.iter().cloned());
    tx.put_statement_chunks(&again)
        .await
        .expect("second chunks");
    tx.commit_bookkeeping().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    let one = tx
        .session_statements("brk_1-s7", 0, u32::MAX)
        .await
        .expect("session");
    assert_eq!(
        one,
        (1..=4).map(|seq| statement(7, seq)).collect::<Vec<_>>(),
        "in order, each once, every field as stored"
    );
    // A page at a time: whole chunks, from a position on, empty past the end.
    let seqs = |page: Vec<StatementRecord>| page.iter().map(|s| s.seq).collect::<Vec<_>>();
    let first_page = tx
        .session_statements("brk_1-s7", 0, 1)
        .await
        .expect("page 1");
    assert_eq!(seqs(first_page), [1, 2, 3]);
    let second_page = tx
        .session_statements("brk_1-s7", 4, 1)
        .await
        .expect("page 2");
    assert_eq!(seqs(second_page), [4]);
    let past = tx
        .session_statements("brk_1-s7", 2, 16)
        .await
        .expect("from 2");
    assert_eq!(
        seqs(past),
        [2, 3, 4],
        "a page may start inside a chunk: from the position on"
    );
    let inside = tx
        .session_statements("brk_1-s7", 3, 1)
        .await
        .expect("from 3, one chunk");
    assert_eq!(
        seqs(inside),
        [3],
        "the chunk holding the position counts as the page's first"
    );
    assert!(
        tx.session_statements("brk_1-s7", 5, 16)
            .await
            .expect("end")
            .is_empty()
    );
    let all = tx.statements("brk_1").await.expect("break");
    assert_eq!(all.len(), 250 * 4);
    assert!(tx.statements("brk_2").await.expect("none").is_empty());
    assert!(
        tx.session_statements("nope", 0, 16)
            .await
            .expect("none")
            .is_empty()
    );
}

/// Where each server's gateway is reached: recorded and replaced on PostgreSQL (servers share
/// it); a SQLite store has only one server, so none is kept.
async fn instance_gateways(store: SqlStore) {
    assert_eq!(store.instance_gateway("srv-a").await.expect("read"), None);
    store
        .put_instance_gateway("srv-a", "10.0.0.5:5433", true)
        .await
        .expect("put");
    store
        .put_instance_gateway("srv-b", "[::1]:6543", false)
        .await
        .expect("put");
    if store.backend() == "sqlite" {
        assert_eq!(store.instance_gateway("srv-a").await.expect("read"), None);
        return;
    }
    assert_eq!(
        store.instance_gateway("srv-a").await.expect("read"),
        Some(("10.0.0.5:5433".to_owned(), true))
    );
    // A restarted server registers again: the newest address counts.
    store
        .put_instance_gateway("srv-a", "10.0.0.6:5433", false)
        .await
        .expect("replace");
    assert_eq!(
        store.instance_gateway("srv-a").await.expect("read"),
        Some(("10.0.0.6:5433".to_owned(), false))
    );
    assert_eq!(
        store.instance_gateway("srv-b").await.expect("read"),
        Some(("[::1]:6543".to_owned(), false))
    );
    assert_eq!(store.instance_gateway("srv-c").await.expect("read"), None);
}

/// Which server gave each live gateway cancellation key: recorded, found with the server's
/// gateway, forgotten, and replaced once expired on PostgreSQL; a SQLite store has only one
/// server, so none is kept (and every pid is free).
async fn gateway_cancel_keys(store: SqlStore) {
    let now = Timestamp(T0);
    let later = Timestamp(T0 + 60_000);
    assert!(
        store
            .put_cancel_key(7, "srv-a", later, now)
            .await
            .expect("put")
    );
    if store.backend() == "sqlite" {
        assert!(
            store
                .put_cancel_key(7, "srv-b", later, now)
                .await
                .expect("put")
        );
        assert_eq!(store.cancel_key_gateway(7, now).await.expect("read"), None);
        assert!(store.instance_gateways().await.expect("list").is_empty());
        store
            .delete_cancel_key(7, "srv-a", now)
            .await
            .expect("delete");
        return;
    }
    // Known, but its server registered no gateway address yet.
    assert_eq!(store.cancel_key_gateway(7, now).await.expect("read"), None);
    store
        .put_instance_gateway("srv-a", "10.0.0.5:5433", true)
        .await
        .expect("put");
    store
        .put_instance_gateway("srv-b", "10.0.0.6:5433", false)
        .await
        .expect("put");
    let mut all = store.instance_gateways().await.expect("list");
    all.sort();
    assert_eq!(
        all,
        vec![
            ("srv-a".to_owned(), "10.0.0.5:5433".to_owned(), true),
            ("srv-b".to_owned(), "10.0.0.6:5433".to_owned(), false),
        ]
    );
    assert_eq!(
        store.cancel_key_gateway(7, now).await.expect("read"),
        Some(("srv-a".to_owned(), "10.0.0.5:5433".to_owned(), true))
    );
    // A live pid is not given twice; an unknown one is not found.
    assert!(
        !store
            .put_cancel_key(7, "srv-b", later, now)
            .await
            .expect("put")
    );
    assert_eq!(store.cancel_key_gateway(8, now).await.expect("read"), None);
    // Past its expiry a key is not found, and its pid may be given again.
    assert_eq!(
        store.cancel_key_gateway(7, later).await.expect("read"),
        None
    );
    assert!(
        store
            .put_cancel_key(7, "srv-b", Timestamp(T0 + 120_000), later)
            .await
            .expect("put")
    );
    assert_eq!(
        store.cancel_key_gateway(7, later).await.expect("read"),
        Some(("srv-b".to_owned(), "10.0.0.6:5433".to_owned(), false))
    );
    // Only its own server's end forgets it; expired keys go with any end.
    assert!(
        store
            .put_cancel_key(9, "srv-a", later, now)
            .await
            .expect("put")
    );
    store
        .delete_cancel_key(7, "srv-a", now)
        .await
        .expect("delete");
    assert!(
        store
            .cancel_key_gateway(7, later)
            .await
            .expect("read")
            .is_some()
    );
    store
        .delete_cancel_key(7, "srv-b", later)
        .await
        .expect("delete");
    assert_eq!(
        store.cancel_key_gateway(7, later).await.expect("read"),
        None
    );
    assert!(
        store
            .put_cancel_key(9, "srv-b", later, now)
            .await
            .is_ok_and(|put| put)
    );
}

async fn drill_records(store: SqlStore) {
    use breakglass_engine::ports::DrillRecord;
    let draft = Draft {
        time_ms: T0,
        actor: "t".into(),
        kind: "drill.test".into(),
        procedure: None,
        break_id: None,
        payload: json!({}),
    };
    let drill = |id: &str, procedure: &str, at: i64, outcome: &str| DrillRecord {
        id: id.into(),
        procedure: procedure.into(),
        mode: "automated".into(),
        injections: vec!["channel-down:ops".into(), "custodian-lost:alice".into()],
        requested_by: "admin".into(),
        started_at: Timestamp(at),
        finished_at: (outcome != "running").then_some(Timestamp(at + 900)),
        outcome: outcome.into(),
        break_id: Some(format!("brk_{id}")),
        content_hash: "ab12".into(),
        time_to_access_ms: Some(412),
        report: json!({"steps": [{"step": "requested", "offset_ms": 3}], "checks": [{"check": "granted", "ok": true, "reason": "r"}]}),
    };
    let a1 = drill("drl_a1", "a", T0, "failed");
    let a2 = drill("drl_a2", "a", T0 + 10, "passed");
    let a3 = drill("drl_a3", "a", T0 + 20, "running");
    let b1 = drill("drl_b1", "b", T0 + 5, "passed");
    let mut tx = store.begin().await.expect("begin");
    for d in [&a1, &a2, &a3, &b1] {
        tx.put_drill(d).await.expect("put drill");
    }
    tx.put_drill_seal("a", "seal_1", Timestamp(T0))
        .await
        .expect("drill seal");
    tx.put_drill_seal("a", "seal_2", Timestamp(T0 + 1))
        .await
        .expect("replace");
    tx.put_schedule_run("drill:a", Timestamp(T0))
        .await
        .expect("run");
    tx.put_schedule_run("drill:a", Timestamp(T0 + 7))
        .await
        .expect("again");
    tx.commit(vec![draft], vec![]).await.expect("commit");

    let mut r = store.read().await.expect("read");
    assert_eq!(r.drill("drl_a1").await.expect("get"), Some(a1.clone()));
    assert_eq!(r.drill("drl_none").await.expect("get"), None);
    let ids = |v: Vec<DrillRecord>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(r.drills(Some("a"), 10).await.expect("list")),
        vec!["drl_a3", "drl_a2", "drl_a1"],
        "newest first"
    );
    assert_eq!(
        ids(r.drills(None, 2).await.expect("list")),
        vec!["drl_a3", "drl_a2"]
    );
    assert_eq!(
        ids(r.latest_drills().await.expect("latest")),
        vec!["drl_a2", "drl_b1"],
        "the latest finished drill per procedure; a running one does not count"
    );
    assert_eq!(
        r.drill_seal("a").await.expect("seal").as_deref(),
        Some("seal_2")
    );
    assert_eq!(r.drill_seal("b").await.expect("seal"), None);
    assert_eq!(
        r.schedule_run("drill:a").await.expect("run"),
        Some(Timestamp(T0 + 7))
    );
    assert_eq!(r.schedule_run("attest:x").await.expect("run"), None);
}

/// Applies the fixture's procedure, enrols dave as requester, seals; returns dave.
async fn sealed_with_requester(engine: &Engine, f: &Fixture) -> Actor {
    engine
        .apply(&admin(), &[("p.yaml".into(), f.yaml.clone())])
        .await
        .expect("apply");
    engine
        .enroll(
            &admin(),
            "dave",
            &[Role::Requester],
            Some(&f.requester.public().canonical()),
            "",
            false,
        )
        .await
        .expect("enroll");
    engine
        .seal(&admin(), "root-secret", Secret::new(b"s3cret".to_vec()))
        .await
        .expect("seal");
    Actor {
        name: "dave".into(),
        roles: vec![Role::Requester],
        key: Some(f.requester.public()),
    }
}

/// A restart across a deadline: a new engine on the same store expires the grant at start-up.
async fn restart_across_deadline(make: impl Fn() -> futures_like::BoxStore) {
    let f = fixture();
    let id = {
        let (engine, clock) = engine_on(make().await).await;
        let dave = sealed_with_requester(&engine, &f).await;
        let r = engine
            .open_break(
                &dave,
                "root-secret",
                "r",
                "t",
                Some(Duration::from_secs(60)),
            )
            .await
            .expect("open");
        let id = r.info.id.0.clone();
        approve(&engine, &f, "alice", &id).await.expect("alice");
        approve(&engine, &f, "carol", &id).await.expect("carol");
        clock.advance(Duration::from_secs(1));
        id
    };
    // "Restart": a fresh engine and store at a time past the deadline.
    let store = make().await;
    let clock = Arc::new(ManualClock::new(Timestamp(T0 + 61_001)));
    let engine = Engine::new(Arc::new(store), clock, Config::default());
    assert_eq!(
        engine.expire_due().await.expect("start-up sweep"),
        vec![id.clone()]
    );
    assert_eq!(
        engine.break_(&admin(), &id).await.expect("load").state(),
        "expired"
    );
    let ChainVerdict::Intact(_) = engine.verify_audit(&admin()).await.expect("verify") else {
        panic!("chain broken")
    };
    // Ended at the sweep's time: found by its end (the lost-session scan's query), not after.
    let store = make().await;
    let mut r = store.read().await.expect("read");
    let ended: Vec<String> = r
        .breaks_ended_since(Timestamp(T0 + 61_001))
        .await
        .expect("ended since")
        .iter()
        .map(|b| b.info().id.0.clone())
        .collect();
    assert_eq!(ended, vec![id]);
    assert!(
        r.breaks_ended_since(Timestamp(T0 + 61_002))
            .await
            .expect("ended since")
            .is_empty()
    );
}

/// Shares held in memory are lost at restart: the start-up sweep resets those approvals.
async fn restart_resets_pending_approvals(make: impl Fn() -> futures_like::BoxStore) {
    let f = fixture();
    let id = {
        let (engine, _) = engine_on(make().await).await;
        let dave = sealed_with_requester(&engine, &f).await;
        let id = engine
            .open_break(&dave, "root-secret", "r", "t", None)
            .await
            .expect("open")
            .info
            .id
            .0;
        approve(&engine, &f, "alice", &id).await.expect("alice");
        id
    };
    let (engine, _) = engine_on(make().await).await;
    assert_eq!(engine.reset_lost_approvals().await.expect("reset"), 1);
    approve(&engine, &f, "alice", &id)
        .await
        .expect("alice again");
    let done = approve(&engine, &f, "bob", &id).await.expect("bob");
    assert!(matches!(done.state, Break::Granted(_)));
}

/// The custodian's actor (custodian role, no key needed by the engine).
fn custodian(name: &str) -> Actor {
    Actor {
        name: name.into(),
        roles: vec![Role::Custodian],
        key: None,
    }
}

/// `approve` with a TOTP code.
async fn approve_totp(
    engine: &Engine,
    f: &Fixture,
    who: &str,
    break_id: &str,
    code: Option<&str>,
) -> Result<breakglass_engine::ApproveOutcome, EngineError> {
    let actor = custodian(who);
    let share = engine.share_for(&actor, break_id).await?;
    let identity = &f.identities.iter().find(|(n, _)| n == who).unwrap().1;
    let plain = decrypt_share(&share.age_file, identity).unwrap();
    engine
        .approve_with_totp(&actor, break_id, &plain.encode(), code)
        .await
}

/// The code of alice's authenticator at `ms` (Unix milliseconds).
fn code_at(secret: &breakglass_custody::TotpSecret, ms: i64) -> String {
    secret.expose_code_at((ms / 1000) as u64).to_string()
}

fn totp_code_of(e: &EngineError) -> &'static str {
    match e {
        EngineError::SecondFactor(f) => f.code(),
        other => panic!("not a second-factor refusal: {other}"),
    }
}

/// TOTP: enrol, confirm, approve with a fresh code; a missing, wrong or reused code is refused
/// (across breaks, and after a "restart" on the same database), audited, throttled; the
/// secret is stored encrypted and never reaches the audit log. `make` opens the same database.
async fn totp_approvals(make: impl Fn() -> futures_like::BoxStore) {
    let f = fixture();
    let alice = custodian("alice");
    let (secret, first_code, id) = {
        let (engine, clock) = engine_on(make().await).await;
        let dave = sealed_with_requester(&engine, &f).await;
        let enrolment = engine.totp_enroll(&alice).await.expect("enroll");
        let base32 = enrolment.secret_base32.expose_secret().to_owned();
        assert!(
            enrolment
                .uri
                .expose_secret()
                .starts_with("otpauth://totp/breakglass:alice?secret=")
        );
        assert!(!format!("{enrolment:?}").contains(&base32));
        let secret = breakglass_custody::TotpSecret::from_base32(&base32).unwrap();
        let status = engine.totp_status(&alice).await.expect("status");
        assert_eq!(status.len(), 1);
        assert!(!status[0].active);
        // Pending: approvals do not need a code yet; a wrong confirmation is refused.
        let e = engine
            .totp_confirm(&alice, "000000")
            .await
            .expect_err("wrong");
        assert!(matches!(totp_code_of(&e), "totp_wrong"), "{e}");
        let first_code = code_at(&secret, T0);
        engine
            .totp_confirm(&alice, &first_code)
            .await
            .expect("confirm");
        let id = engine
            .open_break(&dave, "root-secret", "r", "t", None)
            .await
            .expect("open")
            .info
            .id
            .0;
        // Missing, then the confirmation's own code (same step): refused, saying which.
        let e = approve_totp(&engine, &f, "alice", &id, None)
            .await
            .expect_err("missing");
        assert_eq!(totp_code_of(&e), "totp_required");
        assert!(e.to_string().contains("--totp"), "{e}");
        let e = approve_totp(&engine, &f, "alice", &id, Some(&first_code))
            .await
            .expect_err("reused");
        assert_eq!(totp_code_of(&e), "totp_reused");
        assert!(e.to_string().contains("already used"), "{e}");
        assert!(!e.to_string().contains(&first_code));
        // The next step's code is accepted once.
        clock.advance(Duration::from_secs(30));
        let code = code_at(&secret, T0 + 30_000);
        let out = approve_totp(&engine, &f, "alice", &id, Some(&code))
            .await
            .expect("fresh code");
        assert_eq!(out.approvals, 1);
        // bob has no enrolment and the procedure requires none: no code needed, and a code
        // given anyway is refused as there is nothing to check it against.
        let e = approve_totp(&engine, &f, "bob", &id, Some("123456"))
            .await
            .expect_err("not enrolled");
        assert_eq!(totp_code_of(&e), "totp_not_enrolled");
        let done = approve_totp(&engine, &f, "bob", &id, None)
            .await
            .expect("bob");
        assert!(matches!(done.state, Break::Granted(_)));
        (secret, code, id)
    };
    // A "restart" (or another server on the same database): the used code stays used, on
    // another break too.
    let store = make().await;
    {
        // Stored encrypted: the raw row does not hold the secret; its Debug hides the bytes.
        let base32 = secret.expose_base32().expose_secret().to_owned();
        let mut r = store.read().await.expect("read");
        let rec = r.totp("alice").await.expect("row").expect("enrolled");
        assert!(rec.active);
        assert_eq!(rec.last_step, Some((T0 + 30_000) / 30_000));
        assert!(!rec.sealed_secret.is_empty());
        assert!(!String::from_utf8_lossy(&rec.sealed_secret).contains(&base32));
        assert!(format!("{rec:?}").contains("sealed_secret: \"[REDACTED]\""));
    }
    let clock = Arc::new(ManualClock::new(Timestamp(T0 + 40_000)));
    let engine = Engine::new(Arc::new(store), clock.clone(), Config::default());
    let dave = Actor {
        name: "dave".into(),
        roles: vec![Role::Requester],
        key: Some(f.requester.public()),
    };
    engine
        .close(&dave, &id)
        .await
        .expect("close the granted break");
    engine
        .seal(&admin(), "root-secret", Secret::new(b"s3cret-2".to_vec()))
        .await
        .expect("re-seal");
    let id2 = engine
        .open_break(&dave, "root-secret", "r2", "t2", None)
        .await
        .expect("open 2")
        .info
        .id
        .0;
    let e = approve_totp(&engine, &f, "alice", &id2, Some(&first_code))
        .await
        .expect_err("reused across restart and breaks");
    assert_eq!(totp_code_of(&e), "totp_reused");
    // Five wrong codes within five minutes lock TOTP; then even the right code is refused.
    for i in 0..5 {
        let e = approve_totp(&engine, &f, "alice", &id2, Some("000001"))
            .await
            .expect_err("wrong");
        assert_eq!(totp_code_of(&e), "totp_wrong", "attempt {i}: {e}");
        if i == 4 {
            assert!(e.to_string().contains("locked until"), "{e}");
        }
    }
    clock.advance(Duration::from_secs(30));
    let fresh = code_at(&secret, T0 + 70_000);
    let e = approve_totp(&engine, &f, "alice", &id2, Some(&fresh))
        .await
        .expect_err("locked");
    assert_eq!(totp_code_of(&e), "totp_locked");
    assert!(e.to_string().contains("ask an admin to reset"), "{e}");
    // An admin resets it (audited); alice approves without a code again.
    let e = engine
        .totp_reset(&custodian("carol"), "alice")
        .await
        .expect_err("not admin");
    assert!(matches!(e, EngineError::Denied(_)), "{e}");
    engine.totp_reset(&admin(), "alice").await.expect("reset");
    approve_totp(&engine, &f, "alice", &id2, None)
        .await
        .expect("no enrolment, no code");
    let entries = engine
        .audit_entries(&admin(), 1, 10_000)
        .await
        .expect("entries");
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    for kind in [
        "totp.enrollment_started",
        "totp.enrolled",
        "totp.rejected",
        "totp.removed",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let rejected: Vec<String> = entries
        .iter()
        .filter(|e| e.kind == "totp.rejected")
        .map(|e| e.payload["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    for reason in ["totp_wrong", "totp_required", "totp_reused", "totp_locked"] {
        assert!(
            rejected.iter().any(|r| r == reason),
            "{reason}: {rejected:?}"
        );
    }
    // No secret and no code in any entry.
    let base32 = secret.expose_base32().expose_secret().to_owned();
    for e in &entries {
        let text = e.payload.to_string();
        assert!(!text.contains(&base32), "secret in {}", e.kind);
        // As a JSON string: a 6-digit run may occur by chance inside a hash or a timestamp.
        assert!(
            !text.contains(&format!("\"{first_code}\"")),
            "code in {}: {text}",
            e.kind
        );
    }
    let ChainVerdict::Intact(_) = engine.verify_audit(&admin()).await.expect("verify") else {
        panic!("chain broken")
    };
}

/// External custody: runs of human steps (inserted, then updated step by step and read back
/// with who did each and when, newest first, per procedure) and holders' attestations and
/// rotations (appended history, oldest first, per procedure), text with quotes and non-ASCII
/// intact; an unknown run is `None`.
async fn external_custody_records(store: SqlStore) {
    use breakglass_domain::{CustodyRecord, RecordKind, Run, RunKind, RunOutcome, StepDone};
    let run = |id: &str, procedure: &str, at: i64| Run {
        id: id.into(),
        procedure: procedure.into(),
        kind: RunKind::Break,
        opened_by: "dave".into(),
        reason: "IdP down — “console” locked".into(),
        ticket: "INC-7".into(),
        started_at: Timestamp(T0 + at),
        finished_at: None,
        outcome: RunOutcome::Running,
        steps: vec!["open safe 'B2'".into(), "take the token".into()],
        done: vec![],
        content_hash: "h".into(),
    };
    let mut first = run("ext_1", "aws-root", 0);
    let drill = Run {
        kind: RunKind::Drill,
        ..run("drl_2", "aws-root", 10)
    };
    let other = run("ext_3", "gcp-root", 20);
    let mut tx = store.begin().await.expect("begin");
    for r in [&first, &drill, &other] {
        tx.put_external_run(r).await.expect("put run");
    }
    tx.commit_bookkeeping().await.expect("commit");
    first.done.push(StepDone {
        step: 1,
        by: "erin".into(),
        at: Timestamp(T0 + 5),
        note: "with frank — «ok»".into(),
    });
    first.done.push(StepDone {
        step: 2,
        by: "frank".into(),
        at: Timestamp(T0 + 9),
        note: String::new(),
    });
    first.outcome = RunOutcome::Completed;
    first.finished_at = Some(Timestamp(T0 + 9));
    let mut tx = store.begin().await.expect("begin");
    tx.put_external_run(&first).await.expect("update run");
    tx.commit_bookkeeping().await.expect("commit");

    let mut r = store.read().await.expect("read");
    assert_eq!(
        r.external_run("ext_1").await.expect("read"),
        Some(first.clone())
    );
    assert_eq!(
        r.external_run("drl_2").await.expect("read"),
        Some(drill.clone())
    );
    assert_eq!(r.external_run("ext_none").await.expect("read"), None);
    let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(r.external_runs(Some("aws-root"), 10).await.expect("list")),
        ["drl_2", "ext_1"]
    );
    assert_eq!(
        ids(r.external_runs(None, 2).await.expect("list")),
        ["ext_3", "drl_2"]
    );
    drop(r);

    let record = |holder: &str, kind, at: i64, procedure: &str| CustodyRecord {
        procedure: procedure.into(),
        holder: holder.into(),
        kind,
        at: Timestamp(T0 + at),
        recorded_by: holder.into(),
        note: "token present, seal “4411” intact".into(),
    };
    let records = [
        record("frank", RecordKind::Rotated, 30, "aws-root"),
        record("erin", RecordKind::Attested, 10, "aws-root"),
        record("erin", RecordKind::Attested, 20, "gcp-root"),
        record("erin", RecordKind::Attested, 10, "aws-root"),
    ];
    let mut tx = store.begin().await.expect("begin");
    for rec in &records {
        tx.insert_custody_record(rec).await.expect("insert record");
    }
    tx.commit_bookkeeping().await.expect("commit");
    let mut r = store.read().await.expect("read");
    let aws = r.custody_records(Some("aws-root")).await.expect("records");
    assert_eq!(
        aws,
        [records[1].clone(), records[3].clone(), records[0].clone()],
        "oldest first; the same attestation twice is kept twice (history)"
    );
    assert_eq!(r.custody_records(None).await.expect("all").len(), 4);
    assert!(
        r.custody_records(Some("none"))
            .await
            .expect("none")
            .is_empty()
    );
}

/// Many concurrent writers (SQLite shares their commits): every commit lands exactly once,
/// in one linear chain, and an abandoned transaction in the middle loses nothing of the others.
/// One commit of more events and outbox items than one multi-row `INSERT` holds (the store
/// writes 500 rows a statement), after a small commit and before another: every entry is
/// stored as returned, the chain verifies and reaches the stored head, and the outbox rows
/// follow their entries in the order given.
async fn large_commit(store: SqlStore) {
    use breakglass_audit::{Verifier, verify_against_head};

    const N: usize = 1_200;
    let draft = |n: usize| Draft {
        time_ms: T0 + i64::try_from(n).unwrap(),
        actor: format!("writer-{}", n % 7),
        kind: "test.bulk".into(),
        procedure: n.is_multiple_of(3).then(|| "p1".to_owned()),
        break_id: n.is_multiple_of(5).then(|| format!("brk_{n}")),
        payload: json!({"n": n, "quote": "it's \"quoted\"", "list": [n, null, true]}),
    };
    let tx = store.begin().await.expect("begin");
    tx.commit(vec![draft(0)], vec![])
        .await
        .expect("first commit");

    // Every draft goes to the file sink, every fourth also to a channel: 1,500 outbox rows,
    // interleaved.
    let mut outbox = Vec::new();
    let mut expected = Vec::new();
    for i in 0..N {
        let seq = u64::try_from(i).unwrap() + 2;
        for destination in ["sink:file", "channel:x"] {
            if destination == "channel:x" && i % 4 != 0 {
                continue;
            }
            let payload = json!({"draft": i, "to": destination});
            outbox.push(OutboxItem {
                draft: i,
                destination: destination.into(),
                payload: payload.clone(),
            });
            expected.push((seq, destination.to_owned(), payload));
        }
    }
    assert_eq!(expected.len(), 1_500);
    let tx = store.begin().await.expect("begin");
    let entries = tx
        .commit((1..=N).map(draft).collect(), outbox)
        .await
        .expect("large commit");
    assert_eq!(entries.len(), N);
    assert_eq!(entries.first().map(|e| e.seq), Some(2));
    assert_eq!(entries.last().map(|e| e.seq), Some(1 + N as u64));

    let tx = store.begin().await.expect("begin");
    let after = tx
        .commit(vec![draft(N + 1)], vec![])
        .await
        .expect("commit after");
    assert_eq!(after[0].seq, 2 + N as u64);
    assert_eq!(after[0].prev_hash, entries[N - 1].hash);

    let mut r = store.read().await.expect("read");
    let stored = r.audit_entries(1, 10_000).await.expect("entries");
    assert_eq!(stored.len(), N + 2);
    assert_eq!(&stored[1..=N], &entries[..], "stored as returned");
    let mut verifier = Verifier::new();
    for e in &stored {
        verifier.push(e).expect("the chain verifies");
    }
    let head = r.audit_head().await.expect("head").expect("some");
    assert_eq!(head.seq, 2 + N as u64);
    verify_against_head(&verifier.finish(), &head).expect("the chain reaches the head");

    let rows = r.pending_outbox(10_000).await.expect("outbox");
    let got: Vec<_> = rows
        .iter()
        .map(|o| (o.seq, o.destination.clone(), o.payload.clone()))
        .collect();
    assert_eq!(got, expected, "outbox rows in the order given");
    assert!(
        rows.iter()
            .all(|o| o.attempts == 0 && o.delivered_at.is_none())
    );
    // Each row is due from its entry's time on (`next_attempt_at` = `created_at`).
    let early = r
        .due_outbox("channel:x", Timestamp(T0), 10_000)
        .await
        .expect("due");
    assert!(early.is_empty());
    let due = r
        .due_outbox("channel:x", Timestamp(T0 + 1), 10_000)
        .await
        .expect("due");
    assert_eq!(due.len(), 300);
}

async fn concurrent_writers(store: SqlStore) {
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for w in 0..32u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20u32 {
                let mut tx = store.begin().await.expect("begin");
                if i % 7 == 3 {
                    // Abandoned after a write: rolled back, must not disturb the batch (nor
                    // the writer committed just before it in the same batch).
                    tx.put_actor(&ghost(w, i)).await.expect("put");
                    drop(tx);
                    continue;
                }
                let draft = Draft {
                    time_ms: T0,
                    actor: format!("w{w}"),
                    kind: "test.append".into(),
                    procedure: None,
                    break_id: None,
                    payload: json!({"i": i}),
                };
                tx.commit(vec![draft], vec![]).await.expect("commit");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let expected = 32 * (20 - 3);
    let entries = store
        .read()
        .await
        .expect("read")
        .audit_entries(1, 10_000)
        .await
        .expect("entries");
    assert_eq!(entries.len(), expected);
    let mut v = breakglass_audit::Verifier::new();
    for e in &entries {
        v.push(e).expect("linear chain");
    }
    let head = store
        .read()
        .await
        .expect("read")
        .audit_head()
        .await
        .expect("head")
        .expect("some");
    assert_eq!(head.seq, expected as u64);
    let mut r = store.read().await.expect("read");
    for w in 0..32u32 {
        for i in (0..20u32).filter(|i| i % 7 == 3) {
            let name = ghost(w, i).actor.name;
            assert!(
                r.actor(&name).await.expect("actor").is_none(),
                "{name} rolled back"
            );
        }
    }
}

/// The actor an abandoned transaction of `concurrent_writers` writes.
fn ghost(w: u32, i: u32) -> StoredActor {
    StoredActor {
        actor: Actor {
            name: format!("ghost-{w}-{i}"),
            roles: vec![Role::Auditor],
            key: None,
        },
        token_hash: None,
        contact: String::new(),
    }
}

mod futures_like {
    use std::future::Future;
    use std::pin::Pin;

    /// A future producing a store (so a test can "restart" on the same database).
    pub(super) type BoxStore = Pin<Box<dyn Future<Output = breakglass_store::SqlStore>>>;
}

mod sqlite {
    use super::*;

    fn path() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("breakglass.db");
        (dir, p)
    }

    #[tokio::test]
    async fn lifecycle() {
        let (_d, p) = path();
        super::lifecycle(SqlStore::open_sqlite(&p).await.expect("open")).await;
    }

    #[tokio::test]
    async fn transactions() {
        let (_d, p) = path();
        super::transactions(SqlStore::open_sqlite(&p).await.expect("open")).await;
    }

    #[tokio::test]
    async fn grant_records() {
        let (_d, p) = path();
        super::grant_records(SqlStore::open_sqlite(&p).await.expect("open")).await;
    }

    #[tokio::test]
    async fn recovery_records() {
        let (_d, p) = path();
        super::recovery_records(SqlStore::open_sqlite(&p).await.expect("open")).await;
    }

    #[tokio::test]
    async fn statement_chunks() {
        let (_d, p) = path();
        super::statement_chunks(SqlStore::open_sqlite(&p).await.expect("open")).await;
    }

    #[tokio::test]
    async fn instance_gateways() {
        let (_d, p) = path();
        super::instance_gateways(SqlStore::open_sqlite(&p).await.expect("open")).await;
    }

    #[tokio::test]
    async fn gateway_cancel_keys() {
        let (_d, p) = path();
        super::gateway_cancel_keys(SqlStore::open_sqlite(&p).await.expect("open")).await;
    }

    #[tokio::test]
    async fn drill_records() {
        let (_d, p) = path();
        super::drill_records(SqlStore::open_sqlite(&p).await.expect("open")).await;
    }

    #[tokio::test]
    async fn external_custody_records() {
        let (_d, p) = path();
        super::external_custody_records(SqlStore::open_sqlite(&p).await.expect("open")).await;
    }

    /// A data dir made before `breaks.drill_id` existed: opening it adds the column and keeps
    /// every row.
    #[tokio::test]
    async fn upgrades_an_earlier_breaks_table() {
        let (_d, p) = path();
        {
            let url = format!("sqlite://{}?mode=rwc", p.display());
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                .await
                .expect("raw sqlite");
            sqlx::raw_sql(
                "CREATE TABLE breaks (id TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, seal_id TEXT NOT NULL, requester TEXT NOT NULL, reason TEXT NOT NULL, ticket TEXT NOT NULL, duration_ms BIGINT NOT NULL, quorum BIGINT NOT NULL, requested_at BIGINT NOT NULL, approval_deadline BIGINT NOT NULL, approvals TEXT NOT NULL, state TEXT NOT NULL, granted_at BIGINT, deadline BIGINT, revealed_at BIGINT, ended_at BIGINT, closed_by TEXT, due_at BIGINT);
                 INSERT INTO breaks VALUES ('brk_old', 'p', 'seal_x', 'dave', 'r', 't', 60000, 2, 1, 2, '[]', 'requested', NULL, NULL, NULL, NULL, NULL, 2);",
            )
            .execute(&mut c)
            .await
            .expect("old schema");
        }
        let store = SqlStore::open_sqlite(&p).await.expect("open upgrades");
        let mut r = store.read().await.expect("read");
        let b = r.break_("brk_old").await.expect("read").expect("kept");
        assert_eq!(b.info().drill, None);
        drop(r);
        // Opening again is a no-op.
        drop(store);
        SqlStore::open_sqlite(&p).await.expect("reopen");
    }

    #[tokio::test]
    async fn large_commit() {
        let (_d, p) = path();
        super::large_commit(SqlStore::open_sqlite(&p).await.expect("open")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers() {
        let (_d, p) = path();
        super::concurrent_writers(SqlStore::open_sqlite(&p).await.expect("open")).await;
    }

    #[tokio::test]
    async fn restart_across_deadline() {
        let (_d, p) = path();
        super::restart_across_deadline(|| {
            let p = p.clone();
            Box::pin(async move { SqlStore::open_sqlite(&p).await.expect("open") })
        })
        .await;
    }

    #[tokio::test]
    async fn totp_approvals() {
        let (_d, p) = path();
        super::totp_approvals(|| {
            let p = p.clone();
            Box::pin(async move { SqlStore::open_sqlite(&p).await.expect("open") })
        })
        .await;
    }

    #[tokio::test]
    async fn restart_resets_pending_approvals() {
        let (_d, p) = path();
        super::restart_resets_pending_approvals(|| {
            let p = p.clone();
            Box::pin(async move { SqlStore::open_sqlite(&p).await.expect("open") })
        })
        .await;
    }
}

mod postgres {
    use super::*;
    use breakglass_testkit::fresh_postgres;

    macro_rules! pg_test {
        ($name:ident, $body:expr) => {
            #[tokio::test]
            async fn $name() {
                let Some(db) =
                    fresh_postgres(concat!("store::postgres::", stringify!($name))).await
                else {
                    return;
                };
                let url = db.url.clone();
                ($body)(url).await;
                db.drop_db().await;
            }
        };
    }

    pg_test!(lifecycle, |url: String| async move {
        super::lifecycle(SqlStore::connect(&url).await.expect("connect")).await
    });
    pg_test!(concurrent_writers, |url: String| async move {
        super::concurrent_writers(SqlStore::connect(&url).await.expect("connect")).await
    });
    pg_test!(large_commit, |url: String| async move {
        super::large_commit(SqlStore::connect(&url).await.expect("connect")).await
    });
    pg_test!(transactions, |url: String| async move {
        super::transactions(SqlStore::connect(&url).await.expect("connect")).await
    });
    pg_test!(grant_records, |url: String| async move {
        super::grant_records(SqlStore::connect(&url).await.expect("connect")).await
    });
    pg_test!(recovery_records, |url: String| async move {
        super::recovery_records(SqlStore::connect(&url).await.expect("connect")).await
    });
    pg_test!(statement_chunks, |url: String| async move {
        super::statement_chunks(SqlStore::connect(&url).await.expect("connect")).await
    });
    pg_test!(instance_gateways, |url: String| async move {
        super::instance_gateways(SqlStore::connect(&url).await.expect("connect")).await
    });
    pg_test!(gateway_cancel_keys, |url: String| async move {
        super::gateway_cancel_keys(SqlStore::connect(&url).await.expect("connect")).await
    });
    pg_test!(drill_records, |url: String| async move {
        super::drill_records(SqlStore::connect(&url).await.expect("connect")).await
    });
    pg_test!(external_custody_records, |url: String| async move {
        super::external_custody_records(SqlStore::connect(&url).await.expect("connect")).await
    });
    pg_test!(restart_across_deadline, |url: String| async move {
        super::restart_across_deadline(|| {
            let url = url.clone();
            Box::pin(async move { SqlStore::connect(&url).await.expect("connect") })
        })
        .await
    });
    pg_test!(totp_approvals, |url: String| async move {
        super::totp_approvals(|| {
            let url = url.clone();
            Box::pin(async move { SqlStore::connect(&url).await.expect("connect") })
        })
        .await
    });
    pg_test!(restart_resets_pending_approvals, |url: String| async move {
        super::restart_resets_pending_approvals(|| {
            let url = url.clone();
            Box::pin(async move { SqlStore::connect(&url).await.expect("connect") })
        })
        .await
    });
}
