//! Test helpers shared by the integration tests: honest skipping when a service is missing,
//! and fresh PostgreSQL databases so each test run has its own schema.
//!
//! A test that needs an absent service fails under `CI=true` with a clear message; elsewhere it
//! reports itself skipped (stderr, plus a file in `$BREAKGLASS_SKIP_DIR` that `cargo xtask test`
//! counts in its summary). It never passes silently.

pub mod browser;
pub mod mariadb;
pub mod pgcluster;
pub mod sshd;

use std::path::PathBuf;

use sqlx::Connection;

/// Where the tests find PostgreSQL; override with `BREAKGLASS_TEST_POSTGRES`.
pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Installs ring as the process's TLS provider. The workspace builds reqwest without a
/// provider of its own (to keep aws-lc out), so any process that makes an HTTP client must
/// install one first; doing it twice is harmless.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Records that `test` could not run because of `reason`. Panics under CI.
pub fn skip(test: &str, reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: required service missing under CI: {reason}");
    }
    eprintln!("SKIP: {test}: {reason}");
    if let Ok(dir) = std::env::var("BREAKGLASS_SKIP_DIR") {
        let dir = PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(test.replace("::", "__")), reason);
    }
}

/// Whether command `tool` runs (`tool --version`); when it does not, records the skip of
/// `test` (counted by `cargo xtask test`; a failure under CI) naming the Debian `package`.
pub fn tool(test: &str, tool: &str, package: &str) -> bool {
    if std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    skip(
        test,
        &format!("`{tool}` is not installed (Debian package {package})"),
    );
    false
}

/// A PostgreSQL database created for one test; dropped by `drop_db`.
pub struct FreshDb {
    /// Connection URL of the new database.
    pub url: String,
    admin_url: String,
    name: String,
}

/// Creates a fresh database, or records a skip and returns `None` when PostgreSQL is absent.
pub async fn fresh_postgres(test: &str) -> Option<FreshDb> {
    let admin_url =
        std::env::var("BREAKGLASS_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
    let mut conn = match sqlx::PgConnection::connect(&admin_url).await {
        Ok(c) => c,
        Err(e) => {
            skip(
                test,
                &format!("PostgreSQL not reachable at {admin_url}: {e}"),
            );
            return None;
        }
    };
    let name = format!("bg_test_{}_{:x}", std::process::id(), rand_suffix());
    let create = format!("CREATE DATABASE {name}");
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(&mut conn)
        .await
    {
        panic!("{test}: cannot create test database: {e}");
    }
    let _ = conn.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(admin_url.clone());
    Some(FreshDb {
        url: format!("{base}/{name}"),
        admin_url,
        name,
    })
}

impl FreshDb {
    /// Drops the database (best effort; a leftover `bg_test_*` database is harmless).
    pub async fn drop_db(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
            let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                .execute(&mut conn)
                .await;
        }
    }
}

fn rand_suffix() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    // RandomState is seeded randomly per process; the counter separates calls within one.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.finish()
}

/// The `(method, path)` pairs an axum router declares in a source file: each `.route("PATH",
/// get(…).post(…))` call, read as text, so a test can hold every declared route against its
/// own table (a route added without a row fails the test). Methods are lower-case.
pub fn declared_routes(source: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(source)
        .unwrap_or_else(|e| panic!("reading {}: {e}", source.display()));
    let mut out = Vec::new();
    for chunk in text.split(".route(").skip(1) {
        // The call ends at the next route, merge, layer or state; enough for our style.
        let end = [".route(", ".merge(", ".with_state(", "\n        .layer("]
            .iter()
            .filter_map(|m| chunk.find(m))
            .min()
            .unwrap_or(chunk.len());
        let call = &chunk[..end];
        let Some(start) = call.find('"') else {
            continue;
        };
        let Some(len) = call[start + 1..].find('"') else {
            continue;
        };
        let path = &call[start + 1..start + 1 + len];
        for method in ["get", "post", "put", "patch", "delete"] {
            let needle = format!("{method}(");
            let found = call.match_indices(&needle).any(|(i, _)| {
                i == 0
                    || !call.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && call.as_bytes()[i - 1] != b'_'
            });
            if found {
                out.push((method.to_owned(), path.to_owned()));
            }
        }
    }
    out
}
