//! Procedure locks (`Store::lock_procedure`): exclusive per procedure, bounded waits, released
//! on drop and taken again; on PostgreSQL shared by every store on the database (two stores
//! here stand for two servers), taken on the documented advisory-lock key, and released by the
//! database when the holding connection dies.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

use std::time::{Duration, Instant};

use breakglass_engine::ports::Store;
use breakglass_store::{SqlStore, procedure_lock_key};
use sqlx::Connection;

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(10);

#[test]
fn the_key_is_the_documented_formula() {
    // First 8 bytes of SHA-256("breakglass:procedure-lock:p"), big-endian, signed.
    use sha2::Digest;
    let digest = sha2::Sha256::digest(b"breakglass:procedure-lock:p");
    let expected = i64::from_be_bytes(digest[..8].try_into().unwrap());
    assert_eq!(procedure_lock_key("p"), expected);
    assert_ne!(procedure_lock_key("p"), procedure_lock_key("q"));
}

/// What every backend does within one store (one server).
async fn exclusive_bounded_and_taken_again(store: &SqlStore) {
    let held = store
        .lock_procedure("p", LONG)
        .await
        .unwrap()
        .expect("free");
    let started = Instant::now();
    assert!(
        store.lock_procedure("p", SHORT).await.unwrap().is_none(),
        "a held lock was taken twice"
    );
    assert!(
        started.elapsed() >= SHORT - Duration::from_millis(50),
        "gave up after {:?}, before the wait",
        started.elapsed()
    );
    // Another procedure is not held up.
    let other = store.lock_procedure("q", SHORT).await.unwrap();
    assert!(other.is_some(), "procedure q waited for p's lock");
    drop(other);
    // A waiter gets it as soon as the holder drops it.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            let lock = store.lock_procedure("p", LONG).await.unwrap();
            (lock.is_some(), Instant::now())
        })
    };
    tokio::time::sleep(SHORT).await;
    assert!(!waiter.is_finished(), "the waiter did not wait");
    let released = Instant::now();
    drop(held);
    let (got, at) = waiter.await.unwrap();
    assert!(got, "the waiter never got the lock");
    assert!(
        at.duration_since(released) < Duration::from_secs(2),
        "the waiter got the lock {:?} after its release",
        at.duration_since(released)
    );
    // Dropped by the waiter's task: free again, for as often as it is taken.
    for _ in 0..3 {
        let again = store.lock_procedure("p", LONG).await.unwrap();
        assert!(again.is_some(), "not taken again after its release");
    }
    // A caller that stops waiting strands nothing.
    let held = store
        .lock_procedure("p", LONG)
        .await
        .unwrap()
        .expect("free");
    let gave_up = tokio::time::timeout(SHORT, store.lock_procedure("p", LONG)).await;
    assert!(gave_up.is_err(), "got a held lock");
    drop(held);
    let again = store
        .lock_procedure("p", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(again.is_some(), "a cancelled wait stranded the lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lock_is_exclusive_bounded_and_taken_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_sqlite(&dir.path().join("s.db"))
        .await
        .unwrap();
    exclusive_bounded_and_taken_again(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lock_is_exclusive_bounded_and_taken_again() {
    let Some(db) = breakglass_testkit::fresh_postgres(
        "store::procedure_lock::postgres_lock_is_exclusive_bounded_and_taken_again",
    )
    .await
    else {
        return;
    };
    let store = SqlStore::connect(&db.url).await.unwrap();
    exclusive_bounded_and_taken_again(&store).await;
    store.close().await;
    db.drop_db().await;
}

/// Tries the advisory lock `key` from a session outside breakglass.
async fn try_raw(raw: &mut sqlx::PgConnection, key: i64) -> bool {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(raw)
        .await
        .unwrap()
}

/// Two stores on one PostgreSQL (two servers): one lock between them, on the documented key,
/// released by the database when the holder's connection dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lock_is_shared_by_servers_and_dies_with_its_connection() {
    let Some(db) = breakglass_testkit::fresh_postgres(
        "store::procedure_lock::postgres_lock_is_shared_by_servers_and_dies_with_its_connection",
    )
    .await
    else {
        return;
    };
    let a = SqlStore::connect(&db.url).await.unwrap();
    let b = SqlStore::connect(&db.url).await.unwrap();
    let mut raw = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let key = procedure_lock_key("p");

    // Held by A: B waits and gives up; the key is the one taken in the database.
    let held = a.lock_procedure("p", LONG).await.unwrap().expect("free");
    assert!(b.lock_procedure("p", SHORT).await.unwrap().is_none());
    assert!(
        !try_raw(&mut raw, key).await,
        "the advisory key is not held"
    );
    // Released by A: B takes it promptly.
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.lock_procedure("p", LONG).await.unwrap() })
    };
    tokio::time::sleep(SHORT).await;
    assert!(!waiter.is_finished(), "B did not wait for A");
    let released = Instant::now();
    drop(held);
    let held_by_b = waiter.await.unwrap().expect("B never got the lock");
    assert!(released.elapsed() < Duration::from_secs(2));
    assert!(a.lock_procedure("p", SHORT).await.unwrap().is_none());

    // B's server dies: its connection is killed, the database releases the lock, A takes it.
    let killed: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND classid::bigint = ($1 >> 32) & 4294967295 AND objid::bigint = $1 & 4294967295",
    )
    .bind(key)
    .fetch_one(&mut raw)
    .await
    .unwrap();
    assert_eq!(killed, 1, "one session holds the lock");
    let taken = a.lock_procedure("p", LONG).await.unwrap();
    assert!(taken.is_some(), "the lock outlived its connection");
    // B's guard, dropped after its connection died, neither panics nor releases A's lock.
    drop(held_by_b);
    tokio::time::sleep(SHORT).await;
    assert!(!try_raw(&mut raw, key).await, "A's lock was released by B");
    drop(taken);

    // A session outside breakglass holding the key holds the procedure too; when it goes, the
    // lock is free.
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let started = Instant::now();
    while !try_raw(&mut other, key).await {
        assert!(started.elapsed() < LONG, "A's released lock stayed held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(a.lock_procedure("p", SHORT).await.unwrap().is_none());
    other.close().await.unwrap();
    assert!(a.lock_procedure("p", LONG).await.unwrap().is_some());

    drop(raw);
    a.close().await;
    b.close().await;
    db.drop_db().await;
}
