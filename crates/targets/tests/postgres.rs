//! The PostgreSQL target against a private cluster with password authentication
//! (`breakglass_testkit::pgcluster`): real logins with the issued connection strings, session
//! termination, `VALID UNTIL`, rotation with and without a failing proof, discovery, TLS (the
//! cluster serves it with a throwaway CA), and the error cases, each leaving nothing behind and
//! showing no password.
//!
//! Roles are cluster-wide, so every test uses its own tag in every role name.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use breakglass_custody::{CustodianKey, Secret};
use breakglass_domain::{Procedure, Target as ProcedureTarget, TargetKind, Timestamp};
use breakglass_engine::ports::{EndCause, GrantRequest, Issued, Target, TargetError};
use breakglass_targets::{PostgresTarget, grant_name, random_password};
use breakglass_testkit::pgcluster::{self, PgCluster};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};

/// One test's roles and database in the private cluster.
struct Fx {
    pg: &'static PgCluster,
    db: String,
    tag: String,
    admin: String,
    admin_pw: String,
    grant_role: String,
    op: String,
    op_pw: String,
    key: CustodianKey,
}

/// A fresh database; an admin role with CREATEROLE and ADMIN OPTION on the grant role; an
/// operator role with CREATEROLE and pg_signal_backend.
async fn fixture(test: &str, tag: &str) -> Option<Fx> {
    let pg = pgcluster::cluster(test)?;
    let db = pg.fresh_db().await;
    let fx = Fx {
        pg,
        db,
        tag: tag.to_owned(),
        admin: format!("adm_{tag}"),
        admin_pw: random_password().expose_secret().to_owned(),
        grant_role: format!("app_{tag}"),
        op: format!("op_{tag}"),
        op_pw: random_password().expose_secret().to_owned(),
        key: breakglass_custody::keygen().1,
    };
    fx.sql(&format!(
        "CREATE ROLE {adm} LOGIN PASSWORD '{apw}' CREATEROLE;
         CREATE ROLE {app} NOLOGIN;
         GRANT {app} TO {adm} WITH ADMIN OPTION;
         CREATE ROLE {op} LOGIN PASSWORD '{opw}' CREATEROLE;
         GRANT pg_signal_backend TO {op};
         GRANT CREATE ON SCHEMA public TO {app};",
        adm = fx.admin,
        apw = fx.admin_pw,
        app = fx.grant_role,
        op = fx.op,
        opw = fx.op_pw,
    ))
    .await;
    Some(fx)
}

impl Fx {
    /// Runs SQL as the superuser in the test's database.
    async fn sql(&self, sql: &str) {
        let mut conn = self.pg.connect(&self.db).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("setup SQL failed: {e}\n{sql}"));
        conn.close().await.unwrap();
    }

    /// One value of a superuser query.
    async fn scalar<T>(&self, sql: &'static str, bind: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        let mut conn = self.pg.connect(&self.db).await;
        let v = sqlx::query_scalar::<_, T>(sql)
            .bind(bind)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        v
    }

    /// One value of a superuser query without parameters.
    async fn value<T>(&self, sql: &'static str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        let mut conn = self.pg.connect(&self.db).await;
        let v = sqlx::query_scalar::<_, T>(sql)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        v
    }

    async fn role_exists(&self, role: &str) -> bool {
        self.scalar::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            role,
        )
        .await
    }

    /// The server's clock: it is the one `VALID UNTIL` is checked against.
    async fn now(&self) -> Timestamp {
        Timestamp(
            self.value::<i64>("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8")
                .await,
        )
    }

    fn url(&self, user: &str, password: &str) -> String {
        self.pg.url(user, password, &self.db)
    }

    fn procedure(&self, overrides: &[(&str, &str)]) -> Procedure {
        let mut details: BTreeMap<String, String> = [
            ("host", "127.0.0.1".to_owned()),
            ("port", self.pg.port.to_string()),
            ("dbname", self.db.clone()),
            ("admin_user", self.admin.clone()),
            ("grant_role", self.grant_role.clone()),
            ("connection", "pg".to_owned()),
            ("sslmode", "disable".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in overrides {
            details.insert((*k).to_owned(), (*v).to_owned());
        }
        Procedure {
            id: format!("pg-{}", self.tag),
            description: "test".into(),
            target: ProcedureTarget {
                kind: TargetKind::Postgres,
                details,
            },
            custodians: vec![],
            quorum: 1,
            max_grant: Duration::from_secs(3600),
            alert_channels: vec![],
            ack_within: None,
            escalation: vec![],
            max_credential_age: None,
            drill_every: None,
            drill_automated: false,
            drill_max_time_to_access: None,
            drill_cron: None,
            dependencies: vec![],
            protects_against: Vec::new(),
            second_factor: None,
            external: None,
        }
    }

    fn adapter(&self) -> PostgresTarget {
        self.adapter_with(&self.url(&self.op, &self.op_pw))
    }

    fn adapter_with(&self, operator_url: &str) -> PostgresTarget {
        PostgresTarget::new(HashMap::from([(
            "pg".to_owned(),
            SecretString::from(operator_url.to_owned()),
        )]))
    }

    async fn grant(
        &self,
        target: &PostgresTarget,
        procedure: &Procedure,
        break_id: &str,
        credential: &str,
        valid_for_ms: i64,
    ) -> Result<Issued, TargetError> {
        let now = self.now().await;
        let request = GrantRequest {
            procedure,
            break_id,
            requester: "alice",
            requester_key: &self.key,
            now,
            deadline: Timestamp(now.0 + valid_for_ms),
        };
        target
            .grant(&request, &Secret::new(credential.as_bytes().to_vec()))
            .await
    }

    /// Every password of this fixture plus `more`.
    fn secrets<'a>(&'a self, more: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec![
            self.admin_pw.as_str(),
            self.op_pw.as_str(),
            self.pg.superuser_password(),
        ];
        all.extend_from_slice(more);
        all
    }
}

fn secret(text: &str) -> Secret {
    Secret::new(text.as_bytes().to_vec())
}

fn text(secret: &Secret) -> String {
    String::from_utf8(secret.expose_secret().to_vec()).unwrap()
}

async fn login(url: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect(url).await
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// Neither the message nor the `Debug` form holds any of `secrets`.
fn assert_clean(e: &TargetError, secrets: &[&str]) {
    let shown = format!("{e}\n{e:?}");
    for s in secrets {
        assert!(!shown.contains(s), "a secret leaked into: {shown}");
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn grant_logs_in_as_member_and_end_terminates_the_session_and_drops_the_role() {
    let Some(fx) = fixture(
        "postgres::grant_logs_in_as_member_and_end_terminates_the_session_and_drops_the_role",
        "ge",
    )
    .await
    else {
        return;
    };
    let target = fx.adapter();
    let procedure = fx.procedure(&[]);
    let break_id = "brk_ge0001";
    let role = grant_name(break_id);
    let issued = fx
        .grant(&target, &procedure, break_id, &fx.admin_pw, 3_600_000)
        .await
        .expect("grant");
    assert_eq!(issued.handle["role"], role.as_str());
    let access = text(&issued.access);
    assert!(
        access.starts_with(&format!("postgresql://{role}:")),
        "access form"
    );
    assert!(access.ends_with(&format!("/{}?sslmode=disable", fx.db)));
    assert!(!format!("{issued:?}").contains(&access));
    // The server stores a SCRAM verifier: the statement never carried the password.
    assert!(
        fx.scalar::<bool>(
            "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' AND rolvaliduntil IS NOT NULL \
             FROM pg_authid WHERE rolname = $1",
            &role,
        )
        .await
    );

    let password = access
        .split_once(&format!("{role}:"))
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(pw, _)| pw.to_owned())
        .unwrap();
    assert!(
        !fx.pg.server_log().contains(&password),
        "the target's statement log holds the grant's password"
    );
    let mut session = login(&access).await.expect("the requester logs in");
    let (user, member): (String, bool) =
        sqlx::query_as("SELECT current_user::text, pg_has_role(current_user, $1, 'MEMBER')")
            .bind(&fx.grant_role)
            .fetch_one(&mut session)
            .await
            .unwrap();
    assert_eq!(user, role);
    assert!(member, "member of the grant role");
    sqlx::raw_sql("CREATE TABLE scratch_ge (x int)")
        .execute(&mut session)
        .await
        .expect("the grant role may create tables");

    // Renewing the login (the gateway's, after a restart) with the operator connection: a new
    // password for the same role, the old one refused, the open session untouched, the expiry
    // kept, and the new password in no statement the server logged.
    let valid_until: String = fx
        .scalar(
            "SELECT rolvaliduntil::text FROM pg_roles WHERE rolname = $1",
            &role,
        )
        .await;
    let renewed = target
        .renew_login(&procedure, break_id, &issued.handle)
        .await
        .expect("renew");
    let renewed = text(&renewed);
    assert_ne!(renewed, access);
    assert!(renewed.starts_with(&format!("postgresql://{role}:")));
    assert!(renewed.ends_with(&format!("/{}?sslmode=disable", fx.db)));
    let mut second = login(&renewed).await.expect("the renewed login works");
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut second)
        .await
        .unwrap();
    assert_eq!(user, role);
    second.close().await.unwrap();
    let old = login(&access)
        .await
        .expect_err("the lost login stops working");
    assert_eq!(sqlstate(&old).as_deref(), Some("28P01"), "{old}");
    sqlx::query("SELECT 1")
        .execute(&mut session)
        .await
        .expect("an open session goes on");
    let kept: String = fx
        .scalar(
            "SELECT rolvaliduntil::text FROM pg_roles WHERE rolname = $1",
            &role,
        )
        .await;
    assert_eq!(kept, valid_until, "the role keeps its expiry");
    let renewed_pw = renewed
        .split_once(&format!("{role}:"))
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(pw, _)| pw.to_owned())
        .unwrap();
    assert!(!fx.pg.server_log().contains(&renewed_pw));

    let done = target
        .end(&procedure, break_id, &issued.handle, EndCause::Closed)
        .await
        .expect("end");
    assert_eq!(done["sessions_terminated"], 1, "{done}");
    assert_eq!(done["dropped"], true, "{done}");
    assert!(!fx.role_exists(&role).await, "role dropped");
    assert!(
        !fx.scalar::<bool>("SELECT to_regclass($1) IS NOT NULL", "public.scratch_ge")
            .await,
        "owned table dropped"
    );
    let after = sqlx::query("SELECT 1").execute(&mut session).await;
    assert!(after.is_err(), "the held session was terminated");
    assert!(login(&access).await.is_err());

    let again = target
        .end(&procedure, break_id, &issued.handle, EndCause::Closed)
        .await
        .expect("ending twice succeeds");
    assert_eq!(again["already_gone"], true, "{again}");
    // An ended grant stays ended: its login is not renewed.
    let e = target
        .renew_login(&procedure, break_id, &issued.handle)
        .await
        .expect_err("renewing an ended grant");
    assert!(matches!(e, TargetError::Conflict { .. }), "{e}");
    assert!(e.to_string().contains("the grant has ended"), "{e}");

    // The sealed credential may also be a whole URL.
    let url_credential = fx.url(&fx.admin, &fx.admin_pw);
    let issued = fx
        .grant(
            &target,
            &procedure,
            "brk_ge0002",
            &url_credential,
            3_600_000,
        )
        .await
        .expect("grant with a URL credential");
    login(&text(&issued.access))
        .await
        .expect("log in")
        .close()
        .await
        .unwrap();
    let done = target
        .end(&procedure, "brk_ge0002", &issued.handle, EndCause::Expired)
        .await
        .expect("end");
    assert_eq!(done["sessions_terminated"], 0, "{done}");
    assert!(!fx.role_exists(&grant_name("brk_ge0002")).await);
}

/// The expiry sweep and a close (or a drill's own end) may end one grant at the same moment:
/// both succeed (PostgreSQL's "tuple concurrently updated/deleted" is tried again), and
/// the role is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ends_of_one_grant_at_once_both_succeed() {
    let Some(fx) = fixture("postgres::two_ends_of_one_grant_at_once_both_succeed", "tw").await
    else {
        return;
    };
    let target = fx.adapter();
    let procedure = fx.procedure(&[]);
    for i in 0..5 {
        let break_id = format!("brk_tw000{i}");
        let issued = fx
            .grant(&target, &procedure, &break_id, &fx.admin_pw, 3_600_000)
            .await
            .expect("grant");
        let session = login(&text(&issued.access)).await.expect("log in");
        let (a, b) = tokio::join!(
            target.end(&procedure, &break_id, &issued.handle, EndCause::Expired),
            target.end(&procedure, &break_id, &issued.handle, EndCause::Closed),
        );
        let (a, b) = (a.expect("first end"), b.expect("second end"));
        let terminated = [&a, &b]
            .iter()
            .map(|d| d["sessions_terminated"].as_u64().unwrap_or(0))
            .sum::<u64>();
        assert!(terminated <= 1, "{a} {b}");
        assert!(!fx.role_exists(&grant_name(&break_id)).await, "{a} {b}");
        drop(session);
    }
}

#[tokio::test]
async fn end_reassigns_owned_objects_when_the_procedure_says_so() {
    let Some(fx) = fixture(
        "postgres::end_reassigns_owned_objects_when_the_procedure_says_so",
        "ra",
    )
    .await
    else {
        return;
    };
    fx.sql("CREATE ROLE keeper_ra NOLOGIN; GRANT keeper_ra TO op_ra;")
        .await;
    let target = fx.adapter();
    let procedure = fx.procedure(&[("on_end", "reassign:keeper_ra")]);
    let issued = fx
        .grant(&target, &procedure, "brk_ra0001", &fx.admin_pw, 3_600_000)
        .await
        .expect("grant");
    let mut session = login(&text(&issued.access)).await.unwrap();
    sqlx::raw_sql("CREATE TABLE kept_ra (x int)")
        .execute(&mut session)
        .await
        .unwrap();
    session.close().await.unwrap();

    let done = target
        .end(&procedure, "brk_ra0001", &issued.handle, EndCause::Closed)
        .await
        .expect("end");
    assert_eq!(done["owned"], "reassigned to keeper_ra", "{done}");
    assert!(!fx.role_exists("bg_ra0001").await);
    let owner: String = fx
        .scalar(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = $1",
            "kept_ra",
        )
        .await;
    assert_eq!(owner, "keeper_ra");
}

#[tokio::test]
async fn login_after_the_deadline_fails_even_without_end() {
    let Some(fx) = fixture(
        "postgres::login_after_the_deadline_fails_even_without_end",
        "dl",
    )
    .await
    else {
        return;
    };
    let target = fx.adapter();
    let procedure = fx.procedure(&[]);
    let issued = fx
        .grant(&target, &procedure, "brk_dl0001", &fx.admin_pw, 2_000)
        .await
        .expect("grant");
    let access = text(&issued.access);
    login(&access)
        .await
        .expect("before the deadline")
        .close()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let refused = login(&access).await.expect_err("after the deadline");
    assert_eq!(sqlstate(&refused).as_deref(), Some("28P01"), "{refused}");
    target
        .end(&procedure, "brk_dl0001", &issued.handle, EndCause::Expired)
        .await
        .expect("end");
    assert!(!fx.role_exists("bg_dl0001").await);
}

#[tokio::test]
async fn rotation_retires_the_old_admin_password() {
    let Some(fx) = fixture("postgres::rotation_retires_the_old_admin_password", "ro").await else {
        return;
    };
    let target = fx.adapter();
    let procedure = fx.procedure(&[]);

    // Password form.
    let current = secret(&fx.admin_pw);
    let next = target
        .next_credential(&procedure, &current)
        .unwrap()
        .expect("a new password");
    let next_pw = text(&next);
    assert_ne!(next_pw, fx.admin_pw);
    assert!(!next_pw.contains("://"));
    target
        .rotate(&procedure, &current, &next)
        .await
        .expect("rotate");
    let old = login(&fx.url(&fx.admin, &fx.admin_pw))
        .await
        .expect_err("the old password is refused");
    assert_eq!(sqlstate(&old).as_deref(), Some("28P01"));
    login(&fx.url(&fx.admin, &next_pw))
        .await
        .expect("the new password works")
        .close()
        .await
        .unwrap();
    assert!(
        !fx.pg.server_log().contains(&next_pw),
        "the target's statement log holds the new admin password"
    );

    // URL form: user, host, port and database stay; the password changes.
    let current_url = fx.url(&fx.admin, &next_pw);
    let current = secret(&current_url);
    let next = target
        .next_credential(&procedure, &current)
        .unwrap()
        .expect("a new URL");
    let next_url = text(&next);
    let prefix = format!("postgres://{}:", fx.admin);
    let suffix = format!("@127.0.0.1:{}/{}", fx.pg.port, fx.db);
    assert!(next_url.starts_with(&prefix) && next_url.ends_with(&suffix));
    assert_ne!(next_url, current_url);
    target
        .rotate(&procedure, &current, &next)
        .await
        .expect("rotate a URL");
    assert!(login(&current_url).await.is_err());
    login(&next_url)
        .await
        .expect("the new URL works")
        .close()
        .await
        .unwrap();
    // The new credential grants.
    let issued = fx
        .grant(&target, &procedure, "brk_ro0001", &next_url, 3_600_000)
        .await
        .expect("grant with the rotated credential");
    target
        .end(&procedure, "brk_ro0001", &issued.handle, EndCause::Closed)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rotation_whose_proof_fails_leaves_the_old_password_working() {
    let Some(fx) = fixture(
        "postgres::a_rotation_whose_proof_fails_leaves_the_old_password_working",
        "rf",
    )
    .await
    else {
        return;
    };
    let target = fx.adapter();
    let procedure = fx.procedure(&[]);
    let current_url = fx.url(&fx.admin, &fx.admin_pw);
    let current = secret(&current_url);
    let new_pw = random_password().expose_secret().to_owned();

    // The proof login goes to a port where nothing listens.
    let port = closed_port();
    let next_url = format!(
        "postgres://{}:{new_pw}@127.0.0.1:{port}/{}",
        fx.admin, fx.db
    );
    let e = target
        .rotate(&procedure, &current, &secret(&next_url))
        .await
        .expect_err("the proof fails");
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("rotation undone"), "{e}");
    assert_clean(&e, &fx.secrets(&[&new_pw]));
    login(&current_url)
        .await
        .expect("the old password still works")
        .close()
        .await
        .unwrap();
    assert!(login(&fx.url(&fx.admin, &new_pw)).await.is_err());

    // The proof login names a database that does not exist.
    let next_url = format!(
        "postgres://{}:{new_pw}@127.0.0.1:{}/no_such_db_rf",
        fx.admin, fx.pg.port
    );
    let e = target
        .rotate(&procedure, &current, &secret(&next_url))
        .await
        .expect_err("the proof fails");
    assert!(matches!(e, TargetError::Config { .. }), "{e}");
    assert_clean(&e, &fx.secrets(&[&new_pw]));
    login(&current_url)
        .await
        .expect("the old password still works")
        .close()
        .await
        .unwrap();

    // A wrong current credential changes nothing.
    let e = target
        .rotate(&procedure, &secret("not-the-password"), &secret(&new_pw))
        .await
        .expect_err("wrong current");
    assert!(matches!(e, TargetError::Credential { .. }), "{e}");
    assert_clean(&e, &fx.secrets(&[&new_pw, "not-the-password"]));
    login(&current_url).await.expect("still works");
}

#[tokio::test]
async fn discovery_flags_a_superuser_created_behind_our_back() {
    let Some(fx) = fixture(
        "postgres::discovery_flags_a_superuser_created_behind_our_back",
        "dv",
    )
    .await
    else {
        return;
    };
    fx.sql(
        "CREATE ROLE rogue_dv LOGIN SUPERUSER;
         CREATE ROLE known_dv LOGIN CREATEROLE BYPASSRLS VALID UNTIL '2099-01-01 00:00:00+00';
         CREATE ROLE plain_dv LOGIN;
         CREATE ROLE group_dv NOLOGIN SUPERUSER;",
    )
    .await;
    let target = fx.adapter();
    let procedure = fx.procedure(&[("inventory", "known_dv, postgres")]);
    let found = target.discover(&procedure).await.expect("discover");
    let by_name = |n: &str| found.iter().find(|a| a.name == n);

    let rogue = by_name("rogue_dv").expect("rogue superuser listed");
    assert!(!rogue.known);
    assert_eq!(rogue.privileges, vec!["superuser".to_owned()]);
    assert_eq!(
        rogue.flags,
        vec!["not in inventory".to_owned(), "no expiry".to_owned()]
    );
    assert_eq!(rogue.expires, None);

    let known = by_name("known_dv").expect("inventory role listed");
    assert!(known.known);
    assert_eq!(known.privileges, vec!["createrole", "bypassrls"]);
    assert_eq!(known.expires.as_deref(), Some("2099-01-01T00:00:00Z"));
    assert!(known.flags.is_empty(), "{:?}", known.flags);

    let admin = by_name(&fx.admin).expect("admin listed");
    assert!(admin.known);
    assert_eq!(admin.flags, vec!["no expiry".to_owned()]);
    assert!(by_name(&fx.op).expect("operator listed").known);
    assert!(by_name("plain_dv").is_none(), "no privilege attribute");
    assert!(by_name("group_dv").is_none(), "cannot log in");
}

#[tokio::test]
async fn check_reports_a_healthy_target_and_each_problem() {
    let Some(fx) = fixture(
        "postgres::check_reports_a_healthy_target_and_each_problem",
        "ck",
    )
    .await
    else {
        return;
    };
    let target = fx.adapter();
    let lines = target.check(&fx.procedure(&[])).await.expect("check");
    assert!(lines.len() >= 7, "{lines:#?}");
    assert!(lines.iter().all(|l| l.ok), "{lines:#?}");

    fx.sql(
        "ALTER ROLE adm_ck VALID UNTIL '2000-01-01 00:00:00+00';
         REVOKE pg_signal_backend FROM op_ck;
         CREATE ROLE other_ck NOLOGIN;",
    )
    .await;
    let lines = target
        .check(&fx.procedure(&[("grant_role", "missing_ck")]))
        .await
        .expect("check");
    let failed: Vec<&str> = lines
        .iter()
        .filter(|l| !l.ok)
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(
        failed,
        vec![
            "admin password not expired",
            "grant role exists",
            "operator may terminate sessions"
        ],
        "{lines:#?}"
    );
    // A grant role the admin may not hand out.
    let lines = target
        .check(&fx.procedure(&[("grant_role", "other_ck")]))
        .await
        .expect("check");
    let line = lines
        .iter()
        .find(|l| l.name == "admin may grant the grant role")
        .expect("line");
    // PostgreSQL 15 lets CREATEROLE grant any non-superuser role; 16 needs ADMIN OPTION.
    let version: i32 = fx
        .value("SELECT current_setting('server_version_num')::int")
        .await;
    assert_eq!(line.ok, version < 160_000, "{line:?}");
    for l in &lines {
        assert!(!l.detail.contains(&fx.op_pw) && !l.detail.contains(&fx.admin_pw));
    }
}

#[tokio::test]
async fn grant_errors_are_clear_and_leave_nothing_behind() {
    let Some(fx) = fixture(
        "postgres::grant_errors_are_clear_and_leave_nothing_behind",
        "er",
    )
    .await
    else {
        return;
    };
    let target = fx.adapter();
    let procedure = fx.procedure(&[]);
    let label = format!("postgres 127.0.0.1:{}/{}", fx.pg.port, fx.db);

    // Unreachable.
    let port = closed_port();
    let e = fx
        .grant(
            &target,
            &fx.procedure(&[("port", &port.to_string())]),
            "brk_er0001",
            &fx.admin_pw,
            60_000,
        )
        .await
        .expect_err("unreachable");
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("postgres 127.0.0.1:{port}/{}", fx.db)),
        "{e}"
    );
    assert_clean(&e, &fx.secrets(&[]));

    // Wrong admin password.
    let wrong = "wrong-password-er";
    let e = fx
        .grant(&target, &procedure, "brk_er0002", wrong, 60_000)
        .await
        .expect_err("wrong password");
    assert!(matches!(e, TargetError::Credential { .. }), "{e}");
    assert!(e.to_string().contains(&label), "{e}");
    assert_clean(&e, &fx.secrets(&[wrong]));
    assert!(!fx.role_exists(&grant_name("brk_er0002")).await);

    // An admin that may not create roles.
    fx.sql("CREATE ROLE weak_er LOGIN PASSWORD 'weak-pass-er';")
        .await;
    let e = fx
        .grant(
            &target,
            &fx.procedure(&[("admin_user", "weak_er")]),
            "brk_er0003",
            "weak-pass-er",
            60_000,
        )
        .await
        .expect_err("no CREATEROLE");
    assert!(matches!(e, TargetError::Privilege { .. }), "{e}");
    assert!(e.to_string().contains(&label), "{e}");
    assert_clean(&e, &fx.secrets(&["weak-pass-er"]));
    assert!(!fx.role_exists(&grant_name("brk_er0003")).await);

    // A role with the grant's name already exists: it is left exactly as it was.
    let taken = grant_name("brk_er0004");
    fx.sql(&format!("CREATE ROLE {taken} NOLOGIN;")).await;
    let e = fx
        .grant(&target, &procedure, "brk_er0004", &fx.admin_pw, 60_000)
        .await
        .expect_err("conflict");
    assert!(matches!(e, TargetError::Conflict { .. }), "{e}");
    assert!(e.to_string().contains(&taken), "{e}");
    assert!(e.to_string().contains(&label), "{e}");
    assert_clean(&e, &fx.secrets(&[]));
    let (can_login, member): (bool, bool) = {
        let mut conn = fx.pg.connect(&fx.db).await;
        let row = sqlx::query_as(
            "SELECT rolcanlogin, pg_has_role(oid, $2, 'MEMBER') FROM pg_roles WHERE rolname = $1",
        )
        .bind(&taken)
        .bind(&fx.grant_role)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        row
    };
    assert!(!can_login && !member, "the existing role is untouched");

    // A grant role that does not exist: the whole transaction is undone.
    let e = fx
        .grant(
            &target,
            &fx.procedure(&[("grant_role", "missing_er")]),
            "brk_er0005",
            &fx.admin_pw,
            60_000,
        )
        .await
        .expect_err("missing grant role");
    assert!(matches!(e, TargetError::Config { .. }), "{e}");
    assert!(e.to_string().contains("missing_er"), "{e}");
    assert!(!fx.role_exists(&grant_name("brk_er0005")).await);

    // No operator connection of that name in the targets file: nothing is attempted.
    let e = fx
        .grant(
            &target,
            &fx.procedure(&[("connection", "nope")]),
            "brk_er0006",
            &fx.admin_pw,
            60_000,
        )
        .await
        .expect_err("missing connection");
    assert!(matches!(e, TargetError::Config { .. }), "{e}");
    assert!(e.to_string().contains("`nope`"), "{e}");
    assert!(!fx.role_exists(&grant_name("brk_er0006")).await);

    // The operator URL is rejected when the grant hands the role to an unknown operator.
    let ghost = fx.adapter_with(&fx.url("ghost_er", "whatever-pass"));
    let e = fx
        .grant(&ghost, &procedure, "brk_er0007", &fx.admin_pw, 60_000)
        .await
        .expect_err("unknown operator role");
    assert!(matches!(e, TargetError::Config { .. }), "{e}");
    assert_clean(&e, &fx.secrets(&["whatever-pass"]));
    assert!(!fx.role_exists(&grant_name("brk_er0007")).await);
}

#[tokio::test]
async fn operator_errors_are_clear() {
    let Some(fx) = fixture("postgres::operator_errors_are_clear", "oe").await else {
        return;
    };
    let procedure = fx.procedure(&[]);
    let handle = serde_json::json!({"role": "bg_oe0001"});

    let wrong = fx.adapter_with(&fx.url(&fx.op, "wrong-operator-pass"));
    let e = wrong
        .end(&procedure, "brk_oe0001", &handle, EndCause::Closed)
        .await
        .expect_err("wrong operator password");
    assert!(matches!(e, TargetError::Credential { .. }), "{e}");
    assert_clean(&e, &fx.secrets(&["wrong-operator-pass"]));
    let e = wrong.check(&procedure).await.expect_err("check");
    assert!(matches!(e, TargetError::Credential { .. }), "{e}");
    let e = wrong.discover(&procedure).await.expect_err("discover");
    assert!(matches!(e, TargetError::Credential { .. }), "{e}");

    let port = closed_port();
    let gone = fx.adapter_with(&format!(
        "postgres://{}:{}@127.0.0.1:{port}/{}",
        fx.op, fx.op_pw, fx.db
    ));
    let e = gone.check(&procedure).await.expect_err("unreachable");
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
    assert_clean(&e, &fx.secrets(&[]));

    // An operator without CREATEROLE cannot drop the role: a privilege error, role intact.
    let target = fx.adapter();
    let issued = fx
        .grant(&target, &procedure, "brk_oe0002", &fx.admin_pw, 60_000)
        .await
        .expect("grant");
    fx.sql("ALTER ROLE op_oe NOCREATEROLE;").await;
    let e = target
        .end(&procedure, "brk_oe0002", &issued.handle, EndCause::Closed)
        .await
        .expect_err("operator lacks CREATEROLE");
    assert!(matches!(e, TargetError::Privilege { .. }), "{e}");
    assert_clean(&e, &fx.secrets(&[]));
    fx.sql("ALTER ROLE op_oe CREATEROLE;").await;
    target
        .end(&procedure, "brk_oe0002", &issued.handle, EndCause::Closed)
        .await
        .expect("end once the operator may");
    assert!(!fx.role_exists("bg_oe0002").await);
}

/// The cluster's CA certificate file, or `None` after recording a skip for `test`: without
/// `openssl` the private cluster serves no TLS.
fn ca_cert(fx: &Fx, test: &str) -> Option<String> {
    match fx.pg.ca_cert() {
        Some(path) => Some(path.to_str().unwrap().to_owned()),
        None => {
            breakglass_testkit::skip(
                test,
                "the private cluster serves no TLS (the openssl CLI is not installed)",
            );
            None
        }
    }
}

/// Whether the server counts this session as encrypted.
async fn encrypted(conn: &mut PgConnection) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

/// The access string's password (between `ROLE:` and `@`).
fn access_password(access: &str, role: &str) -> String {
    access
        .split_once(&format!("{role}:"))
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(pw, _)| pw.to_owned())
        .unwrap()
}

#[tokio::test]
async fn sslmode_require_encrypts_every_connection_and_disable_does_not() {
    let test = "postgres::sslmode_require_encrypts_every_connection_and_disable_does_not";
    let Some(fx) = fixture(test, "tl").await else {
        return;
    };
    if ca_cert(&fx, test).is_none() {
        return;
    }
    // The server itself refuses plain-TCP logins of the admin, the operator and every member
    // of the grant role: whatever works below went over TLS, by the server's account.
    let tls_only = pgcluster::TLS_ONLY;
    fx.sql(&format!(
        "DO $$ BEGIN CREATE ROLE {tls_only} NOLOGIN;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         GRANT {tls_only} TO {adm}, {op}, {app};",
        adm = fx.admin,
        op = fx.op,
        app = fx.grant_role,
    ))
    .await;
    let target = fx.adapter();

    // The rule bites: with sslmode=disable the admin cannot even log in.
    let plain = fx.procedure(&[]);
    let e = fx
        .grant(&target, &plain, "brk_tl0000", &fx.admin_pw, 60_000)
        .await
        .expect_err("a plain admin login is refused");
    assert!(matches!(e, TargetError::Credential { .. }), "{e}");
    assert!(e.to_string().contains("no encryption"), "{e}");
    assert_clean(&e, &fx.secrets(&[]));

    let procedure = fx.procedure(&[("sslmode", "require"), ("channel_binding", "require")]);
    // check: the operator connection.
    let lines = target.check(&procedure).await.expect("check over TLS");
    assert!(lines.iter().all(|l| l.ok), "{lines:#?}");

    // grant: the admin connection; the requester's string asks for TLS too.
    let break_id = "brk_tl0001";
    let role = grant_name(break_id);
    let issued = fx
        .grant(&target, &procedure, break_id, &fx.admin_pw, 3_600_000)
        .await
        .expect("grant over TLS");
    let access = text(&issued.access);
    assert!(
        access.ends_with(&format!(
            "/{}?sslmode=require&channel_binding=require",
            fx.db
        )),
        "access form: the requester's client is told to bind its login"
    );
    let mut session = login(&access).await.expect("the requester logs in");
    assert!(
        encrypted(&mut session).await,
        "the requester's session is TLS"
    );
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut session)
        .await
        .unwrap();
    assert_eq!(user, role);
    let refused = login(&access.replace("sslmode=require&", "sslmode=disable&"))
        .await
        .expect_err("the grant's role may not log in without TLS");
    assert_eq!(sqlstate(&refused).as_deref(), Some("28000"), "{refused}");

    // end: the operator connection, to the grant's database.
    let done = target
        .end(&procedure, break_id, &issued.handle, EndCause::Closed)
        .await
        .expect("end over TLS");
    assert_eq!(done["sessions_terminated"], 1, "{done}");
    assert_eq!(done["dropped"], true, "{done}");
    assert!(!fx.role_exists(&role).await);
    assert!(sqlx::query("SELECT 1").execute(&mut session).await.is_err());

    // rotate: the admin connection and the proof login; the sealed credential a URL without
    // sslmode, so the procedure's applies.
    let current = secret(&fx.url(&fx.admin, &fx.admin_pw));
    let next = target
        .next_credential(&procedure, &current)
        .unwrap()
        .expect("a new URL");
    target
        .rotate(&procedure, &current, &next)
        .await
        .expect("rotate over TLS");
    let next_url = text(&next);
    assert!(
        !next_url.contains("sslmode"),
        "the rotated URL names no sslmode"
    );
    let mut admin = login(&format!("{next_url}?sslmode=require"))
        .await
        .expect("the new password works");
    assert!(encrypted(&mut admin).await);
    admin.close().await.unwrap();
    let issued = fx
        .grant(&target, &procedure, "brk_tl0002", &next_url, 3_600_000)
        .await
        .expect("grant with the rotated URL over TLS");
    target
        .end(&procedure, "brk_tl0002", &issued.handle, EndCause::Closed)
        .await
        .expect("end");

    // sslmode=disable: once TLS is no longer demanded, the requester's session is plain.
    fx.sql(&format!(
        "REVOKE {tls_only} FROM {adm}, {op}, {app};",
        adm = fx.admin,
        op = fx.op,
        app = fx.grant_role,
    ))
    .await;
    let issued = fx
        .grant(&target, &plain, "brk_tl0003", &next_url, 3_600_000)
        .await
        .expect("grant without TLS");
    let access = text(&issued.access);
    assert!(access.ends_with("?sslmode=disable"), "access form");
    let mut session = login(&access).await.expect("the requester logs in");
    assert!(
        !encrypted(&mut session).await,
        "the requester's session is plain"
    );
    session.close().await.unwrap();
    let done = target
        .end(&plain, "brk_tl0003", &issued.handle, EndCause::Closed)
        .await
        .expect("end without TLS");
    assert_eq!(done["dropped"], true, "{done}");
    assert!(!fx.role_exists(&grant_name("brk_tl0003")).await);
    let password = access_password(&access, &grant_name("brk_tl0003"));
    assert!(!fx.pg.server_log().contains(&password));
}

#[tokio::test]
async fn verify_modes_check_the_server_certificate() {
    let test = "postgres::verify_modes_check_the_server_certificate";
    let Some(fx) = fixture(test, "tv").await else {
        return;
    };
    let Some(ca) = ca_cert(&fx, test) else {
        return;
    };
    let port = fx.pg.port;
    let with_root = |url: String| format!("{url}?sslrootcert={ca}");
    let operator =
        |host: &str| format!("postgres://{}:{}@{host}:{port}/{}", fx.op, fx.op_pw, fx.db);

    // verify-full against the address the certificate names, trusting the cluster's CA.
    let procedure = fx.procedure(&[("sslmode", "verify-full")]);
    let target = fx.adapter_with(&with_root(operator("127.0.0.1")));
    let lines = target
        .check(&procedure)
        .await
        .expect("check with verify-full");
    assert!(lines.iter().all(|l| l.ok), "{lines:#?}");
    let admin_url = with_root(fx.url(&fx.admin, &fx.admin_pw));
    let issued = fx
        .grant(&target, &procedure, "brk_tv0001", &admin_url, 3_600_000)
        .await
        .expect("grant with verify-full");
    let access = text(&issued.access);
    assert!(access.ends_with("?sslmode=verify-full"), "access form");
    // The requester brings the CA: the access string cannot know where it is.
    let mut session = login(&format!("{access}&sslrootcert={ca}"))
        .await
        .expect("the requester logs in with verify-full");
    assert!(encrypted(&mut session).await);
    session.close().await.unwrap();
    let refused = login(&access)
        .await
        .expect_err("without the CA the certificate is not trusted");
    assert!(
        refused.to_string().contains("invalid peer certificate"),
        "{refused}"
    );
    target
        .end(&procedure, "brk_tv0001", &issued.handle, EndCause::Closed)
        .await
        .expect("end with verify-full");
    assert!(!fx.role_exists("bg_tv0001").await);

    // Without the CA the certificate is unknown: unreachable, saying why, no secret shown.
    let untrusting = fx.adapter_with(&operator("127.0.0.1"));
    let e = untrusting
        .check(&procedure)
        .await
        .expect_err("untrusted certificate");
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    assert_clean(&e, &fx.secrets(&[]));
    let e = fx
        .grant(
            &untrusting,
            &procedure,
            "brk_tv0002",
            &fx.url(&fx.admin, &fx.admin_pw),
            60_000,
        )
        .await
        .expect_err("untrusted certificate");
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
    assert_clean(&e, &fx.secrets(&[]));
    assert!(!fx.role_exists("bg_tv0002").await);

    // `localhost` is not a name in the certificate: verify-full refuses it, verify-ca (which
    // checks only the chain) accepts it.
    let by_name = fx.adapter_with(&with_root(operator("localhost")));
    let e = by_name
        .check(&procedure)
        .await
        .expect_err("the certificate does not name localhost");
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
    assert!(
        e.to_string().contains("not valid for name \"localhost\""),
        "{e}"
    );
    // verify-ca is the mode whose verifier takes rustls's process-level crypto provider; the
    // adapter installs ring as that provider, so this works whatever rustls features the
    // build unifies.
    let lines = by_name
        .check(&fx.procedure(&[("sslmode", "verify-ca")]))
        .await
        .expect("check with verify-ca");
    assert!(lines.iter().all(|l| l.ok), "{lines:#?}");
    assert!(
        rustls::crypto::CryptoProvider::get_default().is_some(),
        "a process-level provider is installed"
    );
}
