//! The MariaDB target against a real server (`breakglass_testkit::mariadb`): real logins with
//! the issued URL, session killing by `end`, the backstop event firing while nothing calls
//! `end`, rotation with and without a failing proof, discovery, and the error cases, each
//! leaving no user and no event behind and showing no password.
//!
//! Users are server-wide, so every test names its users after its own database's suffix.
// Helpers outside `#[test]` functions unwrap too: a failed fixture is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use breakglass_custody::{CustodianKey, Secret};
use breakglass_domain::{Procedure, Target as ProcedureTarget, TargetKind, Timestamp};
use breakglass_engine::ports::{EndCause, GrantRequest, Issued, Target, TargetError};
use breakglass_targets::{MariadbTarget, grant_name, random_password};
use breakglass_testkit::mariadb::{FreshMariadb, fresh_mariadb};
use secrecy::{ExposeSecret, SecretString};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection};

/// What the test's admin account may do.
#[derive(Clone, Copy, PartialEq)]
enum AdminRights {
    /// Everything a grant needs.
    Full,
    /// No `CREATE USER`.
    NoCreateUser,
    /// The procedure's privileges without `GRANT OPTION`.
    NoGrantOption,
    /// No `CONNECTION ADMIN`: its backstop could not kill sessions.
    NoConnectionAdmin,
}

/// One test's database, admin and operator accounts.
struct Fx {
    db: FreshMariadb,
    tag: String,
    admin: String,
    admin_pw: String,
    op: String,
    op_pw: String,
    key: CustodianKey,
}

async fn fixture(test: &str, admin: AdminRights) -> Option<Fx> {
    let db = fresh_mariadb(test).await?;
    let tag = db.suffix.clone();
    let fx = Fx {
        tag: tag.clone(),
        admin: format!("bgt_adm_{tag}"),
        admin_pw: random_password().expose_secret().to_owned(),
        op: format!("bgt_op_{tag}"),
        op_pw: random_password().expose_secret().to_owned(),
        key: breakglass_custody::keygen().1,
        db,
    };
    let d = &fx.db.database;
    let global = match admin {
        AdminRights::Full | AdminRights::NoGrantOption => "CREATE USER, PROCESS, CONNECTION ADMIN",
        AdminRights::NoCreateUser => "PROCESS, CONNECTION ADMIN",
        AdminRights::NoConnectionAdmin => "CREATE USER, PROCESS",
    };
    let grant_option = if admin == AdminRights::NoGrantOption {
        ""
    } else {
        "WITH GRANT OPTION"
    };
    fx.db
        .root_exec(&format!(
            "SET GLOBAL event_scheduler = ON;
             CREATE TABLE `{d}`.t (n INT);
             CREATE USER '{adm}'@'%' IDENTIFIED BY '{apw}';
             GRANT {global} ON *.* TO '{adm}'@'%';
             GRANT SELECT, INSERT ON `{d}`.* TO '{adm}'@'%' {grant_option};
             GRANT EVENT ON `{d}`.* TO '{adm}'@'%';
             CREATE USER '{op}'@'%' IDENTIFIED BY '{opw}';
             GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO '{op}'@'%';
             GRANT SELECT ON mysql.* TO '{op}'@'%';
             GRANT EVENT ON `{d}`.* TO '{op}'@'%';",
            adm = fx.admin,
            apw = fx.admin_pw,
            op = fx.op,
            opw = fx.op_pw,
        ))
        .await;
    Some(fx)
}

impl Fx {
    fn procedure(&self, inventory: &str) -> Procedure {
        self.procedure_at(self.db.port, inventory)
    }

    fn procedure_at(&self, port: u16, inventory: &str) -> Procedure {
        let details: BTreeMap<String, String> = [
            ("host", self.db.host.clone()),
            ("port", port.to_string()),
            ("admin_user", self.admin.clone()),
            (
                "grants",
                format!("SELECT, INSERT ON {}.*", self.db.database),
            ),
            ("connection", "maria-test".to_owned()),
            ("inventory", inventory.to_owned()),
            ("backstop_db", self.db.database.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Procedure {
            id: format!("maria-{}", self.tag),
            description: String::new(),
            target: ProcedureTarget {
                kind: TargetKind::Mariadb,
                details,
            },
            custodians: Vec::new(),
            quorum: 2,
            max_grant: Duration::from_secs(3600),
            alert_channels: Vec::new(),
            ack_within: None,
            escalation: Vec::new(),
            max_credential_age: None,
            drill_every: None,
            drill_automated: false,
            drill_max_time_to_access: None,
            drill_cron: None,
            dependencies: Vec::new(),
            protects_against: Vec::new(),
            second_factor: None,
            external: None,
        }
    }

    fn operator_url(&self, port: u16) -> String {
        format!("mysql://{}:{}@{}:{port}", self.op, self.op_pw, self.db.host)
    }

    fn target(&self) -> MariadbTarget {
        self.target_at(self.db.port)
    }

    fn target_at(&self, port: u16) -> MariadbTarget {
        MariadbTarget::new(HashMap::from([(
            "maria-test".to_owned(),
            SecretString::from(self.operator_url(port)),
        )]))
    }

    fn admin_secret(&self) -> Secret {
        Secret::new(self.admin_pw.as_bytes().to_vec())
    }

    fn break_id(&self, n: u32) -> String {
        format!("brk_{}{n}", self.tag)
    }

    /// The server's clock (the one the backstop event follows).
    async fn now(&self) -> Timestamp {
        let mut conn = self.db.root().await;
        let ms: i64 = sqlx::query_scalar("SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        Timestamp(ms)
    }

    async fn grant(
        &self,
        target: &MariadbTarget,
        procedure: &Procedure,
        break_id: &str,
        credential: &Secret,
        ttl: Duration,
    ) -> Result<Issued, TargetError> {
        let now = self.now().await;
        let request = GrantRequest {
            procedure,
            break_id,
            requester: "alice",
            requester_key: &self.key,
            now,
            deadline: now.plus(ttl),
        };
        target.grant(&request, credential).await
    }

    async fn user_exists(&self, user: &str) -> bool {
        let mut conn = self.db.root().await;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mysql.global_priv WHERE User = ?")
            .bind(user)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        n > 0
    }

    async fn event_exists(&self, name: &str) -> bool {
        let mut conn = self.db.root().await;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.EVENTS \
             WHERE EVENT_SCHEMA = ? AND EVENT_NAME = ?",
        )
        .bind(&self.db.database)
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        n > 0
    }

    /// Asserts that neither the user nor the event of `break_id` exists.
    async fn assert_nothing_left(&self, break_id: &str) {
        let user = grant_name(break_id);
        assert!(
            !self.user_exists(&user).await,
            "user {user} was left behind"
        );
        assert!(
            !self.event_exists(&format!("{user}_end")).await,
            "event {user}_end was left behind"
        );
    }

    /// Asserts that no password of this test shows in `text`.
    fn assert_no_secret(&self, text: &str, more: &[&str]) {
        for secret in [self.admin_pw.as_str(), self.op_pw.as_str()]
            .into_iter()
            .chain(more.iter().copied())
        {
            assert!(!text.contains(secret), "a password leaked into: {text}");
        }
    }

    /// Drops the test's accounts and database.
    async fn cleanup(self, users: &[String]) {
        let mut drop = format!(
            "DROP USER IF EXISTS '{}'@'%', '{}'@'%'",
            self.admin, self.op
        );
        for u in users {
            drop.push_str(&format!(", '{u}'@'%'"));
        }
        self.db.root_exec(&drop).await;
        self.db.drop_db().await;
    }
}

/// Logs in with a URL (statement logging off: the URL holds a password).
async fn login(url: &str) -> Result<MySqlConnection, sqlx::Error> {
    MySqlConnectOptions::from_str(url)?
        .disable_statement_logging()
        .connect()
        .await
}

fn access_url(issued: &Issued) -> String {
    String::from_utf8(issued.access.expose_secret().to_vec()).unwrap()
}

fn password_of(url: &str) -> String {
    let info = url
        .trim_start_matches("mysql://")
        .split('@')
        .next()
        .unwrap();
    info.split_once(':').unwrap().1.to_owned()
}

/// Whether a held connection still answers.
async fn alive(conn: &mut MySqlConnection) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(conn)
        .await
        .is_ok()
}

#[tokio::test]
async fn grant_gives_a_working_login_and_end_kills_its_session_and_drops_the_user() {
    let Some(fx) = fixture("mariadb::grant_and_end", AdminRights::Full).await else {
        return;
    };
    let target = fx.target();
    let procedure = fx.procedure("");

    let checks = target.check(&procedure).await.unwrap();
    assert!(
        checks.iter().all(|c| c.ok),
        "every check should pass: {checks:#?}"
    );
    assert!(checks.iter().any(|c| c.name == "event scheduler is ON"));

    let break_id = fx.break_id(1);
    let user = grant_name(&break_id);
    let issued = fx
        .grant(
            &target,
            &procedure,
            &break_id,
            &fx.admin_secret(),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    let url = access_url(&issued);
    let password = password_of(&url);
    fx.assert_no_secret(&format!("{issued:?}"), &[&password]);
    assert_eq!(issued.handle["user"], user.as_str());
    assert_eq!(issued.handle["host"], "%");
    assert_eq!(
        issued.handle["event"],
        format!("{}.{user}_end", fx.db.database).as_str()
    );
    assert!(fx.event_exists(&format!("{user}_end")).await);
    assert!(url.starts_with(&format!("mysql://{user}:")));
    assert!(url.ends_with(&format!("@{}:{}/", fx.db.host, fx.db.port)));

    // The requester logs in and uses a granted privilege, and only those.
    let mut session = login(&url).await.unwrap();
    let d = &fx.db.database;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO `{d}`.t VALUES (7)"
    )))
    .execute(&mut session)
    .await
    .unwrap();
    let n: i64 = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM `{d}`.t")))
        .fetch_one(&mut session)
        .await
        .map(|row| sqlx::Row::get::<i64, _>(&row, 0))
        .unwrap();
    assert_eq!(n, 1);
    let denied = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DELETE FROM `{d}`.t")))
        .execute(&mut session)
        .await;
    assert!(denied.is_err(), "DELETE was not granted");

    let done = target
        .end(&procedure, &break_id, &issued.handle, EndCause::Closed)
        .await
        .unwrap();
    assert_eq!(done["user"], user.as_str());
    assert_eq!(done["sessions_terminated"], 1);
    assert_eq!(done["dropped"], true);
    assert!(!alive(&mut session).await, "the held session was killed");
    assert!(login(&url).await.is_err(), "the user can no longer log in");
    fx.assert_nothing_left(&break_id).await;

    // Ending again (a retry after a crash) succeeds and finds nothing.
    let again = target
        .end(&procedure, &break_id, &issued.handle, EndCause::Expired)
        .await
        .unwrap();
    assert_eq!(again["sessions_terminated"], 0);
    // So does ending from the break id alone (an abandoned grant without a handle).
    target
        .end(
            &procedure,
            &break_id,
            &serde_json::Value::Null,
            EndCause::Abandoned,
        )
        .await
        .unwrap();
    fx.cleanup(&[]).await;
}

#[tokio::test]
async fn backstop_event_ends_the_grant_when_breakglass_is_down() {
    let Some(fx) = fixture("mariadb::backstop", AdminRights::Full).await else {
        return;
    };
    let target = fx.target();
    let procedure = fx.procedure("");
    let break_id = fx.break_id(2);
    let user = grant_name(&break_id);
    let issued = fx
        .grant(
            &target,
            &procedure,
            &break_id,
            &fx.admin_secret(),
            Duration::from_millis(2000),
        )
        .await
        .unwrap();
    let url = access_url(&issued);
    let mut session = login(&url).await.unwrap();
    assert!(alive(&mut session).await);

    // Breakglass is "down": nothing calls `end`. The server's event must do it.
    let mut gone = false;
    for _ in 0..50 {
        if !fx.user_exists(&user).await {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gone, "the backstop event did not drop {user} within 10 s");
    assert!(!alive(&mut session).await, "the held session was killed");
    let refused = login(&url).await;
    assert!(refused.is_err(), "the user can no longer log in");
    fx.assert_nothing_left(&break_id).await;

    // Breakglass comes back and ends the grant: nothing left to do, and that is a success.
    let done = target
        .end(&procedure, &break_id, &issued.handle, EndCause::Expired)
        .await
        .unwrap();
    assert_eq!(done["sessions_terminated"], 0);
    fx.cleanup(&[]).await;
}

#[tokio::test]
async fn rotation_replaces_the_admin_password() {
    let Some(fx) = fixture("mariadb::rotation", AdminRights::Full).await else {
        return;
    };
    let target = fx.target();
    let procedure = fx.procedure("");
    let current = fx.admin_secret();
    let next = target
        .next_credential(&procedure, &current)
        .unwrap()
        .unwrap();
    let next_pw = String::from_utf8(next.expose_secret().to_vec()).unwrap();
    assert_ne!(next_pw, fx.admin_pw);
    target.rotate(&procedure, &current, &next).await.unwrap();

    let url = |pw: &str| format!("mysql://{}:{pw}@{}:{}", fx.admin, fx.db.host, fx.db.port);
    assert!(
        login(&url(&fx.admin_pw)).await.is_err(),
        "old password refused"
    );
    let mut conn = login(&url(&next_pw)).await.unwrap();
    assert!(alive(&mut conn).await);
    conn.close().await.unwrap();

    // A URL credential stays a URL with the same user and host; rotating with it works too.
    let url_now = Secret::new(url(&next_pw).into_bytes());
    let url_next = target
        .next_credential(&procedure, &url_now)
        .unwrap()
        .unwrap();
    let url_next = String::from_utf8(url_next.expose_secret().to_vec()).unwrap();
    assert!(url_next.starts_with(&format!("mysql://{}:", fx.admin)));
    assert!(url_next.ends_with(&format!("@{}:{}", fx.db.host, fx.db.port)));
    assert_ne!(url_next, url(&next_pw));
    target
        .rotate(
            &procedure,
            &url_now,
            &Secret::new(url_next.clone().into_bytes()),
        )
        .await
        .unwrap();
    assert!(login(&url(&next_pw)).await.is_err());
    login(&url_next).await.unwrap().close().await.unwrap();

    // A sealed password may hold quotes and backslashes: they reach the server as written.
    let odd = "it's a \\ \"pass\" word\\";
    target
        .rotate(
            &procedure,
            &Secret::new(url_next.clone().into_bytes()),
            &Secret::new(odd.as_bytes().to_vec()),
        )
        .await
        .unwrap();
    let mut conn = MySqlConnectOptions::new()
        .host(&fx.db.host)
        .port(fx.db.port)
        .username(&fx.admin)
        .password(odd)
        .disable_statement_logging()
        .connect()
        .await
        .unwrap();
    assert!(alive(&mut conn).await);
    conn.close().await.unwrap();
    assert!(login(&url_next).await.is_err());
    fx.cleanup(&[]).await;
}

#[tokio::test]
async fn failed_rotation_keeps_the_old_password() {
    let Some(fx) = fixture("mariadb::failed_rotation", AdminRights::Full).await else {
        return;
    };
    let target = fx.target();
    let procedure = fx.procedure("");
    let current = fx.admin_secret();
    let next = target
        .next_credential(&procedure, &current)
        .unwrap()
        .unwrap();
    let next_pw = String::from_utf8(next.expose_secret().to_vec()).unwrap();

    // The rotation's own connection is the only one the admin may hold, so the proof with
    // the new password fails after the password was changed.
    fx.db
        .root_exec(&format!(
            "ALTER USER '{}'@'%' WITH MAX_USER_CONNECTIONS 1",
            fx.admin
        ))
        .await;
    let e = target
        .rotate(&procedure, &current, &next)
        .await
        .unwrap_err();
    fx.db
        .root_exec(&format!(
            "ALTER USER '{}'@'%' WITH MAX_USER_CONNECTIONS 0",
            fx.admin
        ))
        .await;
    assert!(matches!(e, TargetError::Failed { .. }), "{e:?}");
    let shown = format!("{e} {e:?}");
    assert!(shown.contains(&format!("mariadb {}:{}", fx.db.host, fx.db.port)));
    assert!(shown.contains("old one was put back"), "{shown}");
    fx.assert_no_secret(&shown, &[&next_pw]);

    let url = |pw: &str| format!("mysql://{}:{pw}@{}:{}", fx.admin, fx.db.host, fx.db.port);
    login(&url(&fx.admin_pw))
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    assert!(login(&url(&next_pw)).await.is_err(), "new password refused");
    fx.cleanup(&[]).await;
}

#[tokio::test]
async fn discovery_flags_accounts_created_behind_breakglass() {
    let Some(fx) = fixture("mariadb::discovery", AdminRights::Full).await else {
        return;
    };
    let t = &fx.tag;
    let (all, sup, listed, expiring, role, via_role) = (
        format!("bgt_all_{t}"),
        format!("bgt_super_{t}"),
        format!("bgt_listed_{t}"),
        format!("bgt_exp_{t}"),
        format!("bgt_role_{t}"),
        format!("bgt_via_{t}"),
    );
    fx.db
        .root_exec(&format!(
            "CREATE USER '{all}'@'%';
             GRANT ALL PRIVILEGES ON *.* TO '{all}'@'%';
             CREATE USER '{sup}'@'%';
             GRANT SUPER ON *.* TO '{sup}'@'%';
             CREATE USER '{listed}'@'%';
             GRANT SUPER ON *.* TO '{listed}'@'%';
             CREATE USER '{expiring}'@'%' PASSWORD EXPIRE INTERVAL 30 DAY;
             GRANT SUPER ON *.* TO '{expiring}'@'%';
             CREATE ROLE '{role}';
             GRANT SUPER ON *.* TO '{role}';
             CREATE USER '{via_role}'@'%';
             GRANT '{role}' TO '{via_role}'@'%';"
        ))
        .await;
    let target = fx.target();
    let procedure = fx.procedure(&format!("{listed}@%, {expiring}"));
    let break_id = fx.break_id(3);
    let issued = fx
        .grant(
            &target,
            &procedure,
            &break_id,
            &fx.admin_secret(),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();

    let found = target.discover(&procedure).await.unwrap();
    let get = |user: &str| {
        found
            .iter()
            .find(|a| a.name == format!("{user}@%"))
            .unwrap_or_else(|| panic!("{user} not found in {found:#?}"))
    };
    let a = get(&all);
    assert!(a.privileges.contains(&"ALL PRIVILEGES".to_owned()), "{a:?}");
    assert!(!a.known);
    assert_eq!(a.flags, ["not in inventory", "no expiry"]);
    let s = get(&sup);
    assert_eq!(s.privileges, ["SUPER"]);
    assert!(!s.known);
    let l = get(&listed);
    assert!(l.known);
    assert_eq!(l.flags, ["no expiry"]);
    let e = get(&expiring);
    assert!(
        e.known && e.expires.is_some() && e.flags.is_empty(),
        "{e:?}"
    );
    let v = get(&via_role);
    assert_eq!(v.privileges, [format!("SUPER (role `{role}`)")]);
    assert!(
        !found.iter().any(|a| a.name == role),
        "roles are not accounts"
    );
    // The admin holds GRANT OPTION on the test database: known, as the procedure's admin.
    let adm = get(&fx.admin);
    assert!(adm.known, "{adm:?}");
    assert_eq!(
        adm.privileges,
        [format!("GRANT OPTION ON `{}`.*", fx.db.database)]
    );
    // The grant's user holds no such privilege, so it is not listed.
    assert!(
        !found
            .iter()
            .any(|a| a.name.starts_with(&grant_name(&break_id)))
    );

    target
        .end(&procedure, &break_id, &issued.handle, EndCause::Closed)
        .await
        .unwrap();
    fx.db.root_exec(&format!("DROP ROLE '{role}'")).await;
    fx.cleanup(&[all, sup, listed, expiring, via_role]).await;
}

#[tokio::test]
async fn unreachable_target_is_named_and_missing_connection_is_a_config_error() {
    let Some(fx) = fixture("mariadb::unreachable", AdminRights::Full).await else {
        return;
    };
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let procedure = fx.procedure_at(closed, "");
    let target = fx.target_at(closed);
    let break_id = fx.break_id(4);
    let e = fx
        .grant(
            &target,
            &procedure,
            &break_id,
            &fx.admin_secret(),
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    let name = format!("mariadb {}:{closed}", fx.db.host);
    assert!(
        matches!(&e, TargetError::Unreachable { target, .. } if *target == name),
        "{e:?}"
    );
    fx.assert_no_secret(&format!("{e} {e:?}"), &[]);
    fx.assert_nothing_left(&break_id).await;
    let e = target.check(&procedure).await.unwrap_err();
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e:?}");
    let e = target.discover(&procedure).await.unwrap_err();
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e:?}");
    fx.assert_no_secret(&format!("{e} {e:?}"), &[]);

    let unconfigured = MariadbTarget::new(HashMap::new());
    let e = unconfigured
        .end(
            &fx.procedure(""),
            &break_id,
            &serde_json::Value::Null,
            EndCause::Expired,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Config { .. }), "{e:?}");
    assert!(e.to_string().contains("maria-test"), "{e}");

    // A wrong operator password: the operator is refused, check says so as an error.
    let wrong_op = MariadbTarget::new(HashMap::from([(
        "maria-test".to_owned(),
        SecretString::from(format!(
            "mysql://{}:wrong-op-pw@{}:{}",
            fx.op, fx.db.host, fx.db.port
        )),
    )]));
    let e = wrong_op.check(&fx.procedure("")).await.unwrap_err();
    assert!(matches!(e, TargetError::Credential { .. }), "{e:?}");
    fx.assert_no_secret(&format!("{e} {e:?}"), &["wrong-op-pw"]);
    fx.cleanup(&[]).await;
}

#[tokio::test]
async fn wrong_admin_password_is_a_credential_error() {
    let Some(fx) = fixture("mariadb::wrong_password", AdminRights::Full).await else {
        return;
    };
    let target = fx.target();
    let procedure = fx.procedure("");
    let break_id = fx.break_id(5);
    let wrong = "not-the-admin-password";
    let e = fx
        .grant(
            &target,
            &procedure,
            &break_id,
            &Secret::new(wrong.as_bytes().to_vec()),
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Credential { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains(&format!("mariadb {}:{}", fx.db.host, fx.db.port))
    );
    fx.assert_no_secret(&format!("{e} {e:?}"), &[wrong]);
    fx.assert_nothing_left(&break_id).await;

    // Rotation with a wrong current password changes nothing.
    let next = Secret::new(b"some-next-password".to_vec());
    let e = target
        .rotate(&procedure, &Secret::new(wrong.as_bytes().to_vec()), &next)
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Credential { .. }), "{e:?}");
    fx.assert_no_secret(&format!("{e} {e:?}"), &[wrong, "some-next-password"]);
    let admin_url = format!(
        "mysql://{}:{}@{}:{}",
        fx.admin, fx.admin_pw, fx.db.host, fx.db.port
    );
    login(&admin_url).await.unwrap().close().await.unwrap();
    fx.cleanup(&[]).await;
}

#[tokio::test]
async fn admin_without_create_user_is_a_privilege_error() {
    let Some(fx) = fixture("mariadb::no_create_user", AdminRights::NoCreateUser).await else {
        return;
    };
    let target = fx.target();
    let procedure = fx.procedure("");
    let checks = target.check(&procedure).await.unwrap();
    let line = checks
        .iter()
        .find(|c| c.name == "admin may create users")
        .unwrap();
    assert!(!line.ok, "{checks:#?}");

    let break_id = fx.break_id(6);
    let e = fx
        .grant(
            &target,
            &procedure,
            &break_id,
            &fx.admin_secret(),
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Privilege { .. }), "{e:?}");
    assert!(e.to_string().contains("CREATE USER"), "{e}");
    fx.assert_no_secret(&format!("{e} {e:?}"), &[]);
    fx.assert_nothing_left(&break_id).await;
    fx.cleanup(&[]).await;
}

#[tokio::test]
async fn admin_without_grant_option_is_refused_and_undone() {
    let Some(fx) = fixture("mariadb::no_grant_option", AdminRights::NoGrantOption).await else {
        return;
    };
    let target = fx.target();
    let procedure = fx.procedure("");
    let checks = target.check(&procedure).await.unwrap();
    let line = checks
        .iter()
        .find(|c| c.name == "admin may grant the procedure's privileges")
        .unwrap();
    assert!(!line.ok, "{checks:#?}");

    let break_id = fx.break_id(7);
    let e = fx
        .grant(
            &target,
            &procedure,
            &break_id,
            &fx.admin_secret(),
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    // The user and its event were created before the GRANT failed, and were removed again.
    assert!(matches!(e, TargetError::Privilege { .. }), "{e:?}");
    assert!(e.to_string().contains("GRANT SELECT, INSERT"), "{e}");
    fx.assert_no_secret(&format!("{e} {e:?}"), &[]);
    fx.assert_nothing_left(&break_id).await;
    fx.cleanup(&[]).await;
}

#[tokio::test]
async fn admin_whose_backstop_cannot_kill_sessions_is_refused() {
    let Some(fx) = fixture(
        "mariadb::no_connection_admin",
        AdminRights::NoConnectionAdmin,
    )
    .await
    else {
        return;
    };
    let target = fx.target();
    let procedure = fx.procedure("");
    let checks = target.check(&procedure).await.unwrap();
    let line = checks
        .iter()
        .find(|c| c.name == "admin may schedule the backstop")
        .unwrap();
    assert!(
        !line.ok && line.detail.contains("CONNECTION ADMIN"),
        "{checks:#?}"
    );

    let break_id = fx.break_id(8);
    let e = fx
        .grant(
            &target,
            &procedure,
            &break_id,
            &fx.admin_secret(),
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Privilege { .. }), "{e:?}");
    assert!(e.to_string().contains("CONNECTION ADMIN"), "{e}");
    fx.assert_nothing_left(&break_id).await;
    fx.cleanup(&[]).await;
}

#[tokio::test]
async fn existing_user_name_is_a_conflict_and_left_alone() {
    let Some(fx) = fixture("mariadb::conflict", AdminRights::Full).await else {
        return;
    };
    let target = fx.target();
    let procedure = fx.procedure("");
    let break_id = fx.break_id(9);
    let user = grant_name(&break_id);
    fx.db
        .root_exec(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'theirs'"))
        .await;
    let e = fx
        .grant(
            &target,
            &procedure,
            &break_id,
            &fx.admin_secret(),
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Conflict { .. }), "{e:?}");
    assert!(e.to_string().contains(&user), "{e}");
    fx.assert_no_secret(&format!("{e} {e:?}"), &["theirs"]);
    // The existing user is someone else's: still there, with its own password, and no
    // backstop event was scheduled against it.
    assert!(fx.user_exists(&user).await);
    assert!(!fx.event_exists(&format!("{user}_end")).await);
    let theirs = format!("mysql://{user}:theirs@{}:{}", fx.db.host, fx.db.port);
    login(&theirs).await.unwrap().close().await.unwrap();
    fx.cleanup(&[user]).await;
}
