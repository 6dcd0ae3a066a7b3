//! Fresh MariaDB databases for integration tests: a database of its own per test, and the
//! root URL to create users and check the server behind the code under test.
//!
//! MariaDB is expected at 127.0.0.1:3306 as `root` with an empty password; override with
//! `BREAKGLASS_TEST_MARIADB` (a `mysql://` URL). When it is unreachable the test is recorded
//! as skipped (see [`crate::skip`]). Every connection opened here has statement logging off,
//! because tests run statements that hold passwords (`CREATE USER … IDENTIFIED BY`).

use std::str::FromStr;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection};

/// Where the tests find MariaDB; override with `BREAKGLASS_TEST_MARIADB`.
pub const DEFAULT_MARIADB: &str = "mysql://root@127.0.0.1:3306";

/// A MariaDB database created for one test; dropped by [`FreshMariadb::drop_db`].
pub struct FreshMariadb {
    /// The root URL (server-wide privileges), without a database.
    pub root_url: String,
    /// Name of the new database (a plain identifier, `bg_test_…`).
    pub database: String,
    /// Host of the server, as the root URL names it.
    pub host: String,
    /// Port of the server.
    pub port: u16,
    /// A random hex suffix unique to this database, for naming users and breaks in the test
    /// (users are server-wide, so parallel tests need names of their own).
    pub suffix: String,
}

/// Creates a fresh database, or records a skip and returns `None` when MariaDB is absent.
pub async fn fresh_mariadb(test: &str) -> Option<FreshMariadb> {
    let root_url =
        std::env::var("BREAKGLASS_TEST_MARIADB").unwrap_or_else(|_| DEFAULT_MARIADB.to_owned());
    let options = match MySqlConnectOptions::from_str(&root_url) {
        Ok(o) => o,
        Err(e) => panic!("{test}: BREAKGLASS_TEST_MARIADB is not a mysql:// URL: {e}"),
    };
    let (host, port) = (options.get_host().to_owned(), options.get_port());
    let options = options.disable_statement_logging();
    let connect = options.connect();
    let mut conn = match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            crate::skip(
                test,
                &format!("MariaDB not reachable at {host}:{port}: {e}"),
            );
            return None;
        }
        Err(_) => {
            crate::skip(
                test,
                &format!("MariaDB at {host}:{port} did not answer within 5 s"),
            );
            return None;
        }
    };
    let suffix = format!("{:012x}", crate::rand_suffix() & 0xffff_ffff_ffff);
    let database = format!("bg_test_{suffix}");
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{database}`")))
        .execute(&mut conn)
        .await
    {
        panic!("{test}: cannot create test database: {e}");
    }
    let _ = conn.close().await;
    Some(FreshMariadb {
        root_url,
        database,
        host,
        port,
        suffix,
    })
}

impl FreshMariadb {
    /// A new root connection (statement logging off).
    ///
    /// # Panics
    /// When the server that answered a moment ago refuses (a test failure, not a skip).
    pub async fn root(&self) -> MySqlConnection {
        let options = match MySqlConnectOptions::from_str(&self.root_url) {
            Ok(o) => o,
            Err(e) => panic!("root URL is not a mysql:// URL: {e}"),
        };
        match options.disable_statement_logging().connect().await {
            Ok(c) => c,
            Err(e) => panic!("cannot connect to MariaDB as root: {e}"),
        }
    }

    /// Runs one or more statements as root (text protocol, statement logging off).
    ///
    /// # Panics
    /// When a statement fails.
    pub async fn root_exec(&self, sql: &str) {
        let mut conn = self.root().await;
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
        {
            panic!("root statement failed: {e}");
        }
        let _ = conn.close().await;
    }

    /// Drops the database (best effort; a leftover `bg_test_*` database is harmless).
    pub async fn drop_db(self) {
        let mut conn = self.root().await;
        let drop = format!("DROP DATABASE IF EXISTS `{}`", self.database);
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
}
