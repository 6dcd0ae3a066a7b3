//! MariaDB target: an ephemeral user per grant with the procedure's grants, ended by the
//! operator connection; and a server-side `EVENT` at the deadline as the target-side backstop,
//! because MariaDB has no `VALID UNTIL`.
//!
//! # Grant
//!
//! With the sealed credential (the password of `admin_user`, or a full `mysql://` URL for that
//! user) the adapter runs, on one admin connection with the session time zone at `+00:00`:
//!
//! 1. `CREATE USER 'bg_<suffix>'@'%' IDENTIFIED BY '<random>'` — never `IF NOT EXISTS`: an
//!    existing user of that name is a conflict, not something to take over;
//! 2. `CREATE DATABASE IF NOT EXISTS <backstop_db>` (only when it is missing) and the backstop
//!    `EVENT <backstop_db>.bg_<suffix>_end ON SCHEDULE AT <deadline, rounded up to the second>
//!    ON COMPLETION NOT PRESERVE`, before any privilege is granted, so the user never holds a
//!    privilege without its end scheduled;
//! 3. `GRANT <clause> TO 'bg_<suffix>'@'%'` for each of the procedure's clauses.
//!
//! When a step fails, what was created is dropped again (event, then user) before the error is
//! returned; a failure to undo is part of the error message.
//!
//! # The backstop, and what happens when breakglass is down
//!
//! The event's body runs as its definer, the admin account, and does three things:
//! `ALTER USER IF EXISTS … ACCOUNT LOCK` (no new logins), `KILL CONNECTION` for every row of
//! `information_schema.PROCESSLIST` whose user is the grant's user (a cursor and
//! `PREPARE`/`EXECUTE`; a connection that ended meanwhile is skipped), then
//! `DROP USER IF EXISTS …`. `ON COMPLETION NOT PRESERVE` removes the event once it has run.
//!
//! - Breakglass up: the engine's `end` at the deadline (or an early close) does the same with
//!   the operator connection and drops the event. Whichever runs first wins; the other finds
//!   nothing left and succeeds.
//! - Breakglass down, `event_scheduler = ON`: the event fires at the deadline on its own; the
//!   account is locked, its sessions are killed, the user is dropped. When breakglass comes back
//!   its `end` finds nothing and succeeds.
//! - Breakglass down, `event_scheduler = OFF` (or `DISABLED`): nothing fires. The grant lasts
//!   until breakglass runs again and ends it, or until someone turns the scheduler on: an event
//!   whose time has passed runs as soon as the scheduler starts. `check` reports a scheduler
//!   that is not `ON` as a failed line.
//! - The event runs with the admin account's privileges at the time it fires: the admin needs
//!   `CREATE USER`, `PROCESS` (to see other users' connections) and `CONNECTION ADMIN` or
//!   `SUPER` (to kill them); a grant is refused up front when the admin lacks the last two.
//!   Rotating the admin's password does not affect the event; dropping the admin account does
//!   (the event then fails at the deadline, in the server's error log).
//!
//! # Privileges
//!
//! - admin (sealed): `CREATE USER`; `PROCESS`; `CONNECTION ADMIN` or `SUPER`; every privilege
//!   of the procedure's grants `WITH GRANT OPTION` (at that level or above); `EVENT` on the
//!   backstop database (and `CREATE` on it until it exists).
//! - operator (targets file): `CREATE USER` (lock and drop), `PROCESS` and `CONNECTION ADMIN`
//!   or `SUPER` (find and kill sessions), `EVENT` on the backstop database (drop the event),
//!   `SELECT` on `mysql.*` (check and discovery read `mysql.global_priv` and other users'
//!   privileges).
//!
//! Every connection has sqlx's statement logging off: statements here carry passwords.
//! Error messages hold the server's text with every password involved replaced by `[redacted]`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use breakglass_custody::Secret;
use breakglass_domain::{
    MariadbTarget as Settings, Procedure, TargetConfig, TargetKind, Timestamp,
};
use breakglass_engine::ports::{
    EndCause, GrantRequest, HealthCheck, Issued, PrivilegedAccount, Target, TargetError,
};
use secrecy::{ExposeSecret, SecretString};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError};
use sqlx::{ConnectOptions, Connection, Row};
use zeroize::{Zeroize, Zeroizing};

/// How long a connection attempt may take before the target counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Privileges `ALL` confers on a database (`ALL ON db.*`), checked one by one.
const ALL_DB_PRIVILEGES: [&str; 19] = [
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "REFERENCES",
    "INDEX",
    "ALTER",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "EXECUTE",
    "CREATE VIEW",
    "SHOW VIEW",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EVENT",
    "TRIGGER",
    "DELETE HISTORY",
];

/// Ephemeral MariaDB users with a server-side backstop event (see the module documentation).
pub struct MariadbTarget {
    connections: HashMap<String, SecretString>,
}

impl MariadbTarget {
    /// Builds the adapter from the operator URLs (`mysql://user:password@host:port`) of the
    /// targets file, by connection name.
    pub fn new(connections: HashMap<String, SecretString>) -> Self {
        MariadbTarget { connections }
    }
}

#[async_trait]
impl Target for MariadbTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::Mariadb
    }

    async fn grant(
        &self,
        request: &GrantRequest<'_>,
        credential: &Secret,
    ) -> Result<Issued, TargetError> {
        let site = Site::of(request.procedure)?;
        let admin = AdminCredential::parse(&site, credential)?;
        let user = crate::grant_name(request.break_id);
        if user.len() <= "bg_".len() {
            return Err(site.config(format!(
                "break id `{}` has no suffix to name a user after",
                request.break_id
            )));
        }
        if request.deadline <= request.now {
            return Err(site.failed("the grant's deadline is not in the future".into()));
        }
        let password = crate::random_password();
        let mut scrub = Scrub::default();
        scrub.add(admin.password.as_str());
        scrub.add(password.expose_secret());
        let options = admin.options(&site)?;
        let mut conn = site.connect(&options, &scrub).await?;
        let result = issue(
            &site, &mut conn, &options, &scrub, &user, &password, request,
        )
        .await;
        let _ = conn.close().await;
        let event = result?;
        let mut access = String::with_capacity(128);
        access.push_str("mysql://");
        access.push_str(&user);
        access.push(':');
        access.push_str(password.expose_secret());
        access.push('@');
        access.push_str(&site.host_port);
        access.push('/');
        Ok(Issued {
            access: Secret::new(access.into_bytes()),
            handle: serde_json::json!({ "user": user, "host": "%", "event": event }),
        })
    }

    async fn end(
        &self,
        procedure: &Procedure,
        break_id: &str,
        handle: &serde_json::Value,
        _cause: EndCause,
    ) -> Result<serde_json::Value, TargetError> {
        let site = Site::of(procedure)?;
        let grant = Handle::read(&site, break_id, handle)?;
        let (mut conn, scrub) = self.operator(&site).await?;
        let result = end_grant(&site, &mut conn, &scrub, &grant).await;
        let _ = conn.close().await;
        let sessions = result?;
        Ok(serde_json::json!({
            "user": grant.user,
            "sessions_terminated": sessions,
            "dropped": true,
        }))
    }

    async fn check(&self, procedure: &Procedure) -> Result<Vec<HealthCheck>, TargetError> {
        let site = Site::of(procedure)?;
        let (mut conn, scrub) = self.operator(&site).await?;
        let result = check_target(&site, &mut conn, &scrub).await;
        let _ = conn.close().await;
        result
    }

    fn next_credential(
        &self,
        procedure: &Procedure,
        current: &Secret,
    ) -> Result<Option<Secret>, TargetError> {
        let site = Site::of(procedure)?;
        let text = credential_text(&site, current)?;
        let fresh = crate::random_password();
        if looks_like_url(text) {
            let url = UrlParts::parse(text).ok_or_else(|| {
                site.config("the sealed credential is not a valid mysql:// URL".into())
            })?;
            let next = url.with_password(text, fresh.expose_secret());
            Ok(Some(Secret::new(next.into_bytes())))
        } else {
            Ok(Some(Secret::new(fresh.expose_secret().as_bytes().to_vec())))
        }
    }

    async fn rotate(
        &self,
        procedure: &Procedure,
        current: &Secret,
        next: &Secret,
    ) -> Result<(), TargetError> {
        let site = Site::of(procedure)?;
        let current = AdminCredential::parse(&site, current)?;
        let next = AdminCredential::parse(&site, next)?;
        let mut scrub = Scrub::default();
        scrub.add(current.password.as_str());
        scrub.add(next.password.as_str());
        let options = current.options(&site)?;
        let mut conn = site.connect(&options, &scrub).await?;
        let result = rotate_admin(&site, &mut conn, &scrub, &current, &next).await;
        let _ = conn.close().await;
        result
    }

    async fn discover(&self, procedure: &Procedure) -> Result<Vec<PrivilegedAccount>, TargetError> {
        let site = Site::of(procedure)?;
        let (mut conn, scrub) = self.operator(&site).await?;
        let result = discover_accounts(&site, &mut conn, &scrub).await;
        let _ = conn.close().await;
        result
    }
}

impl MariadbTarget {
    /// Connects with the operator URL of the procedure's connection.
    async fn operator(&self, site: &Site) -> Result<(MySqlConnection, Scrub), TargetError> {
        let name = &site.settings.connection;
        let url = self.connections.get(name).ok_or_else(|| {
            site.config(format!(
                "no mariadb connection named `{name}` in the targets file"
            ))
        })?;
        let text = url.expose_secret().trim();
        let mut scrub = Scrub::default();
        if let Some(parts) = UrlParts::parse(text) {
            scrub.add(parts.password.as_str());
        }
        let options = MySqlConnectOptions::from_str(text).map_err(|_| {
            site.config(format!(
                "the operator_url of connection `{name}` is not a valid mysql:// URL"
            ))
        })?;
        let conn = site.connect(&options, &scrub).await?;
        Ok((conn, scrub))
    }
}

/// The procedure's validated settings and the name errors give the target.
struct Site {
    label: String,
    host_port: String,
    settings: Settings,
}

impl Site {
    fn of(procedure: &Procedure) -> Result<Site, TargetError> {
        match procedure.target.config() {
            Ok(TargetConfig::Mariadb(settings)) => {
                let host_port = if settings.host.contains(':') && !settings.host.starts_with('[') {
                    format!("[{}]:{}", settings.host, settings.port)
                } else {
                    format!("{}:{}", settings.host, settings.port)
                };
                Ok(Site {
                    label: format!("mariadb {host_port}"),
                    host_port,
                    settings,
                })
            }
            Ok(_) => Err(TargetError::Config {
                target: "mariadb".into(),
                message: format!("procedure `{}` is not a mariadb target", procedure.id),
            }),
            Err(problems) => Err(TargetError::Config {
                target: "mariadb".into(),
                message: problems
                    .iter()
                    .map(|(field, problem)| format!("{field} {problem}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }

    fn config(&self, message: String) -> TargetError {
        TargetError::Config {
            target: self.label.clone(),
            message,
        }
    }

    fn failed(&self, message: String) -> TargetError {
        TargetError::Failed {
            target: self.label.clone(),
            message,
        }
    }

    fn privilege(&self, message: String) -> TargetError {
        TargetError::Privilege {
            target: self.label.clone(),
            message,
        }
    }

    /// The admin account as `'user'@'host'` (SQL) and `user@host` (messages).
    fn admin_account(&self, no_backslash_escapes: bool) -> (String, String) {
        let s = &self.settings;
        (
            format!(
                "'{}'@{}",
                s.admin_user,
                literal(&s.admin_host, no_backslash_escapes)
            ),
            format!("{}@{}", s.admin_user, s.admin_host),
        )
    }

    /// Opens a connection with statement logging off, within [`CONNECT_TIMEOUT`].
    async fn connect(
        &self,
        options: &MySqlConnectOptions,
        scrub: &Scrub,
    ) -> Result<MySqlConnection, TargetError> {
        let options = options
            .clone()
            .timezone(Some("+00:00".to_owned()))
            .disable_statement_logging();
        match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.connect_error(&e, scrub)),
            Err(_) => Err(TargetError::Unreachable {
                target: self.label.clone(),
                message: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            }),
        }
    }

    /// Classifies a failed login.
    fn connect_error(&self, e: &sqlx::Error, scrub: &Scrub) -> TargetError {
        let target = self.label.clone();
        let message = scrub.text(&describe(e));
        match e {
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                TargetError::Unreachable { target, message }
            }
            sqlx::Error::Database(_) => match db_number(e) {
                // Access denied, host not allowed, account locked, password expired.
                Some(1045 | 1130 | 4151 | 1820 | 1862) => {
                    TargetError::Credential { target, message }
                }
                Some(1044) => TargetError::Privilege { target, message },
                _ => TargetError::Failed { target, message },
            },
            sqlx::Error::Configuration(_) => TargetError::Config { target, message },
            _ => TargetError::Failed { target, message },
        }
    }

    /// Classifies a failed statement; `what` says which step failed.
    fn statement_error(&self, what: &str, e: &sqlx::Error, scrub: &Scrub) -> TargetError {
        let target = self.label.clone();
        let message = scrub.text(&format!("{what}: {}", describe(e)));
        match e {
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                TargetError::Unreachable { target, message }
            }
            sqlx::Error::Database(_) => match db_number(e) {
                // Access denied to a database, to the server, to a table or column, a missing
                // global privilege, a grant beyond one's own, an event definer's privileges.
                Some(1044 | 1045 | 1142 | 1143 | 1227 | 1370 | 1410) => {
                    TargetError::Privilege { target, message }
                }
                _ => TargetError::Failed { target, message },
            },
            _ => TargetError::Failed { target, message },
        }
    }
}

/// Text of an sqlx error without the driver's prefixes.
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<MySqlDatabaseError>() {
            Some(my) => format!("{} (error {})", my.message(), my.number()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}

/// The MariaDB error number of a database error.
fn db_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// Replaces known passwords in text that leaves the adapter (server messages may quote the
/// statement that failed).
#[derive(Default)]
struct Scrub(Vec<Zeroizing<String>>);

impl Scrub {
    fn add(&mut self, secret: &str) {
        if !secret.is_empty() {
            self.0.push(Zeroizing::new(secret.to_owned()));
        }
    }

    fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.0 {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "[redacted]");
            }
        }
        out
    }
}

/// The sealed administrative credential: a password for `admin_user`, or a full URL.
struct AdminCredential {
    password: Zeroizing<String>,
    /// The whole URL, when the credential is one.
    url: Option<Zeroizing<String>>,
}

impl AdminCredential {
    fn parse(site: &Site, secret: &Secret) -> Result<AdminCredential, TargetError> {
        let text = credential_text(site, secret)?;
        if looks_like_url(text) {
            let parts = UrlParts::parse(text).ok_or_else(|| {
                site.config("the sealed credential is not a valid mysql:// URL".into())
            })?;
            if parts.user != site.settings.admin_user {
                return Err(site.config(format!(
                    "the sealed URL's user `{}` is not the procedure's admin_user `{}`",
                    parts.user, site.settings.admin_user
                )));
            }
            if parts.password.contains('\0') {
                return Err(site.config("the sealed password contains a NUL byte".into()));
            }
            Ok(AdminCredential {
                password: parts.password,
                url: Some(Zeroizing::new(text.trim().to_owned())),
            })
        } else {
            if text.contains('\0') {
                return Err(site.config("the sealed password contains a NUL byte".into()));
            }
            Ok(AdminCredential {
                password: Zeroizing::new(text.to_owned()),
                url: None,
            })
        }
    }

    /// How to log in with this credential: the URL as given, or the procedure's host and port
    /// as `admin_user`.
    fn options(&self, site: &Site) -> Result<MySqlConnectOptions, TargetError> {
        match &self.url {
            Some(url) => MySqlConnectOptions::from_str(url.as_str()).map_err(|_| {
                site.config("the sealed credential is not a valid mysql:// URL".into())
            }),
            None => Ok(MySqlConnectOptions::new()
                .host(&site.settings.host)
                .port(site.settings.port)
                .username(&site.settings.admin_user)
                .password(self.password.as_str())),
        }
    }
}

fn credential_text<'a>(site: &Site, secret: &'a Secret) -> Result<&'a str, TargetError> {
    std::str::from_utf8(secret.expose_secret())
        .map_err(|_| site.config("the sealed credential is not UTF-8 text".into()))
}

fn looks_like_url(text: &str) -> bool {
    let t = text.trim_start().to_ascii_lowercase();
    t.starts_with("mysql://") || t.starts_with("mariadb://")
}

/// The user and password of a `mysql://user:password@host…` URL, and where the password sits
/// in the text (so a new URL keeps everything else byte for byte).
struct UrlParts {
    user: String,
    password: Zeroizing<String>,
    /// Byte range of the user-info (`user[:password]`) in the trimmed text.
    userinfo: std::ops::Range<usize>,
    /// Offset of the trimmed text in the original.
    start: usize,
}

impl UrlParts {
    fn parse(text: &str) -> Option<UrlParts> {
        let start = text.len() - text.trim_start().len();
        let t = text.trim();
        let scheme_end = t.find("://")? + 3;
        let rest = &t[scheme_end..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let at = authority.rfind('@')?;
        let info = &authority[..at];
        let (user, password) = match info.split_once(':') {
            Some((u, p)) => (u, p),
            None => (info, ""),
        };
        Some(UrlParts {
            user: percent_decode(user)?,
            password: Zeroizing::new(percent_decode(password)?),
            userinfo: scheme_end..scheme_end + at,
            start,
        })
    }

    /// The same URL with `password` (URL-safe characters only) in place of the old one.
    fn with_password(&self, text: &str, password: &str) -> String {
        let t = &text[self.start..];
        let t = t.trim_end();
        let info = &t[self.userinfo.clone()];
        let user = info.split_once(':').map_or(info, |(u, _)| u);
        let mut out = String::with_capacity(t.len() + password.len());
        out.push_str(&t[..self.userinfo.start]);
        out.push_str(user);
        out.push(':');
        out.push_str(password);
        out.push_str(&t[self.userinfo.end..]);
        out
    }
}

/// Decodes `%XX` escapes; `None` when an escape or the result is malformed.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        Ok(s) => Some(s),
        Err(e) => {
            let mut bytes = e.into_bytes();
            bytes.zeroize();
            None
        }
    }
}

/// A quoted SQL string literal. `no_backslash_escapes`: the session's `sql_mode` has
/// `NO_BACKSLASH_ESCAPES`, where a backslash is an ordinary character.
fn literal(s: &str, no_backslash_escapes: bool) -> String {
    let mut out = String::with_capacity(2 * s.len() + 2);
    push_literal(&mut out, s, no_backslash_escapes);
    out
}

fn push_literal(out: &mut String, s: &str, no_backslash_escapes: bool) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' if !no_backslash_escapes => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// `<statement> IDENTIFIED BY '<password>'`, built in one buffer that is large enough from the
/// start (a reallocation would leave a copy of the password behind) and zeroized on drop.
fn identified_by(statement: &str, password: &str, no_backslash_escapes: bool) -> Zeroizing<String> {
    let mut sql = Zeroizing::new(String::with_capacity(
        statement.len() + " IDENTIFIED BY ".len() + 2 * password.len() + 2,
    ));
    sql.push_str(statement);
    sql.push_str(" IDENTIFIED BY ");
    push_literal(&mut sql, password, no_backslash_escapes);
    sql
}

/// A backquoted identifier.
fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Whether the session treats backslashes literally.
async fn no_backslash_escapes(conn: &mut MySqlConnection) -> Result<bool, sqlx::Error> {
    let mode: String = sqlx::query_scalar("SELECT CAST(@@SESSION.sql_mode AS CHAR)")
        .fetch_one(&mut *conn)
        .await?;
    Ok(mode.to_ascii_uppercase().contains("NO_BACKSLASH_ESCAPES"))
}

/// Runs one statement built at run time.
async fn exec(conn: &mut MySqlConnection, sql: String) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map(|_| ())
}

/// Runs one statement holding a password, and zeroizes our copy of its text afterwards.
async fn exec_secret(
    conn: &mut MySqlConnection,
    sql: Zeroizing<String>,
) -> Result<(), sqlx::Error> {
    let shared = Arc::new(String::from(sql.as_str()));
    drop(sql);
    let result = sqlx::raw_sql(sqlx::AssertSqlSafe(Arc::clone(&shared)))
        .execute(&mut *conn)
        .await
        .map(|_| ());
    if let Ok(mut text) = Arc::try_unwrap(shared) {
        text.zeroize();
    }
    result
}

/// `user@host` of the session's account, split.
async fn current_account(conn: &mut MySqlConnection) -> Result<(String, String), sqlx::Error> {
    let account: String = sqlx::query_scalar("SELECT CAST(CURRENT_USER() AS CHAR)")
        .fetch_one(&mut *conn)
        .await?;
    Ok(match account.rsplit_once('@') {
        Some((u, h)) => (u.to_owned(), h.to_owned()),
        None => (account, String::new()),
    })
}

/// The grant's steps on the admin connection; returns the event's `db.name`.
async fn issue(
    site: &Site,
    conn: &mut MySqlConnection,
    options: &MySqlConnectOptions,
    scrub: &Scrub,
    user: &str,
    password: &SecretString,
    request: &GrantRequest<'_>,
) -> Result<String, TargetError> {
    let s = &site.settings;
    let step = |what: &str, e: sqlx::Error| site.statement_error(what, &e, scrub);
    exec(conn, "SET time_zone = '+00:00'".into())
        .await
        .map_err(|e| step("setting the session time zone", e))?;
    let nbe = no_backslash_escapes(conn)
        .await
        .map_err(|e| step("reading sql_mode", e))?;

    // The event kills sessions with the admin's privileges: refuse a grant whose backstop
    // could lock the user but not end its sessions.
    let (me_user, me_host) = current_account(conn)
        .await
        .map_err(|e| step("reading CURRENT_USER()", e))?;
    let mine = Privileges::load(conn, &me_user, &me_host)
        .await
        .map_err(|e| step("reading the admin's privileges", e))?;
    let mut missing = Vec::new();
    if !mine.global.contains_key("PROCESS") {
        missing.push("PROCESS");
    }
    if !mine.global.contains_key("CONNECTION ADMIN") && !mine.global.contains_key("SUPER") {
        missing.push("CONNECTION ADMIN (or SUPER)");
    }
    if !missing.is_empty() {
        return Err(site.privilege(format!(
            "the backstop event runs as `{me_user}`@`{me_host}`, which needs {} to end the \
             grant's sessions at the deadline",
            missing.join(" and ")
        )));
    }

    let account = format!("'{user}'@'%'");
    let event_name = format!("{user}_end");
    let event = format!("{}.{event_name}", s.backstop_db);
    let create = identified_by(
        &format!("CREATE USER {account}"),
        password.expose_secret(),
        nbe,
    );
    if let Err(e) = exec_secret(conn, create).await {
        return Err(if db_number(&e) == Some(1396) {
            TargetError::Conflict {
                target: site.label.clone(),
                message: format!(
                    "user `{user}`@`%` already exists; it was not created by this grant and \
                     was left as it is (end the earlier break, or drop the user)"
                ),
            }
        } else {
            step(&format!("CREATE USER `{user}`@`%`"), e)
        });
    }

    let mut created = Created {
        user: Some(account.clone()),
        event: None,
    };
    let result =
        backstop_and_grants(site, conn, scrub, user, &event_name, request, &mut created).await;
    match result {
        Ok(()) => Ok(event),
        Err(error) => Err(created.undo(site, conn, options, scrub, error).await),
    }
}

/// What a grant has created so far, to undo on failure.
struct Created {
    user: Option<String>,
    event: Option<String>,
}

impl Created {
    /// Drops the event and the user, on `conn` or, if that fails, on a fresh connection; adds
    /// any failure to `error`.
    async fn undo(
        &self,
        site: &Site,
        conn: &mut MySqlConnection,
        options: &MySqlConnectOptions,
        scrub: &Scrub,
        error: TargetError,
    ) -> TargetError {
        let first = self.undo_on(conn).await;
        let Err(first) = first else {
            return error;
        };
        let second = match site.connect(options, scrub).await {
            Ok(mut fresh) => {
                let r = self.undo_on(&mut fresh).await;
                let _ = fresh.close().await;
                r.map_err(|e| scrub.text(&describe(&e)))
            }
            Err(e) => Err(e.to_string()),
        };
        match second {
            Ok(()) => error,
            Err(second) => append(
                error,
                &format!(
                    "; undoing the grant failed too ({}; then {second}): end the break to \
                     remove what is left",
                    scrub.text(&describe(&first))
                ),
            ),
        }
    }

    async fn undo_on(&self, conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
        if let Some(event) = &self.event {
            exec(conn, format!("DROP EVENT IF EXISTS {event}")).await?;
        }
        if let Some(account) = &self.user {
            exec(conn, format!("DROP USER IF EXISTS {account}")).await?;
        }
        Ok(())
    }
}

/// Adds text to an error's message.
fn append(error: TargetError, more: &str) -> TargetError {
    match error {
        TargetError::Unreachable { target, message } => TargetError::Unreachable {
            target,
            message: message + more,
        },
        TargetError::Credential { target, message } => TargetError::Credential {
            target,
            message: message + more,
        },
        TargetError::Privilege { target, message } => TargetError::Privilege {
            target,
            message: message + more,
        },
        TargetError::Conflict { target, message } => TargetError::Conflict {
            target,
            message: message + more,
        },
        TargetError::Config { target, message } => TargetError::Config {
            target,
            message: message + more,
        },
        TargetError::Failed { target, message } => TargetError::Failed {
            target,
            message: message + more,
        },
    }
}

/// The backstop event (first, so no privilege exists without it), then the grants.
async fn backstop_and_grants(
    site: &Site,
    conn: &mut MySqlConnection,
    scrub: &Scrub,
    user: &str,
    event_name: &str,
    request: &GrantRequest<'_>,
    created: &mut Created,
) -> Result<(), TargetError> {
    let s = &site.settings;
    let step = |what: &str, e: sqlx::Error| site.statement_error(what, &e, scrub);
    let db_exists: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(&s.backstop_db)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| step("looking for the backstop database", e))?;
    if db_exists == 0 {
        exec(
            conn,
            format!("CREATE DATABASE IF NOT EXISTS {}", ident(&s.backstop_db)),
        )
        .await
        .map_err(|e| step(&format!("CREATE DATABASE `{}`", s.backstop_db), e))?;
    }

    // Whole seconds, rounded up: the backstop never fires before the deadline.
    let at = request.deadline.millis().div_euclid(1000)
        + i64::from(request.deadline.millis().rem_euclid(1000) != 0);
    let event = format!("{}.{}", ident(&s.backstop_db), ident(event_name));
    let sql = event_sql(&event, user, at, request.deadline, request.break_id);
    match exec(conn, sql).await {
        Ok(()) => created.event = Some(event.clone()),
        Err(e) if db_number(&e) == Some(1537) => {
            return Err(TargetError::Conflict {
                target: site.label.clone(),
                message: format!(
                    "event `{}`.`{event_name}` already exists; it was left as it is",
                    s.backstop_db
                ),
            });
        }
        Err(e) => {
            return Err(step(
                &format!("CREATE EVENT `{}`.`{event_name}`", s.backstop_db),
                e,
            ));
        }
    }
    // An `AT` already past on the server's clock drops a NOT PRESERVE event at once.
    let scheduled: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? AND EVENT_NAME = ?",
    )
    .bind(&s.backstop_db)
    .bind(event_name)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| step("reading back the backstop event", e))?;
    if scheduled == 0 {
        return Err(site.failed(format!(
            "the backstop event was not kept: the server's clock is past the deadline {}",
            request.deadline
        )));
    }

    for clause in &s.grants {
        exec(conn, format!("GRANT {clause} TO '{user}'@'%'"))
            .await
            .map_err(|e| step(&format!("GRANT {clause}"), e))?;
    }
    Ok(())
}

/// The backstop event: lock the account, kill its connections, drop it.
fn event_sql(event: &str, user: &str, at_unix: i64, deadline: Timestamp, break_id: &str) -> String {
    let break_id: String = break_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!(
        "CREATE EVENT {event}
ON SCHEDULE AT FROM_UNIXTIME({at_unix})
ON COMPLETION NOT PRESERVE
COMMENT 'breakglass backstop: ends grant {user} of break {break_id} at {deadline}'
DO BEGIN
  DECLARE done INT DEFAULT 0;
  DECLARE tid BIGINT UNSIGNED;
  DECLARE sessions CURSOR FOR
    SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{user}';
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  ALTER USER IF EXISTS '{user}'@'%' ACCOUNT LOCK;
  OPEN sessions;
  kill_loop: LOOP
    FETCH sessions INTO tid;
    IF done THEN LEAVE kill_loop; END IF;
    BEGIN
      DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END;
      SET @bg_kill = CONCAT('KILL CONNECTION ', tid);
      PREPARE bg_kill FROM @bg_kill;
      EXECUTE bg_kill;
      DEALLOCATE PREPARE bg_kill;
    END;
  END LOOP;
  CLOSE sessions;
  DROP USER IF EXISTS '{user}'@'%';
END"
    )
}

/// What `end` acts on: the grant's user and its event.
struct Handle {
    user: String,
    host: String,
    event_db: String,
    event_name: String,
}

impl Handle {
    /// Reads the handle, falling back to the names derived from the break id.
    fn read(
        site: &Site,
        break_id: &str,
        handle: &serde_json::Value,
    ) -> Result<Handle, TargetError> {
        let derived = crate::grant_name(break_id);
        let user = handle
            .get("user")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(&derived)
            .to_owned();
        if !user.starts_with("bg_") || !breakglass_domain::ident_ok(&user) {
            return Err(site.config(format!(
                "the grant's handle names user `{user}`, which is not a breakglass user"
            )));
        }
        let host = handle
            .get("host")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("%")
            .to_owned();
        if host.contains('\0') {
            return Err(site.config("the grant's handle names an invalid host".into()));
        }
        let default_event = format!("{}.{user}_end", site.settings.backstop_db);
        let event = handle
            .get("event")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(&default_event);
        let Some((event_db, event_name)) = event
            .split_once('.')
            .filter(|(d, n)| breakglass_domain::ident_ok(d) && breakglass_domain::ident_ok(n))
        else {
            return Err(site.config(format!(
                "the grant's handle names event `{event}`, which is not `db.name`"
            )));
        };
        Ok(Handle {
            event_db: event_db.to_owned(),
            event_name: event_name.to_owned(),
            user,
            host,
        })
    }
}

/// Lock, kill, drop user, drop event; returns the number of sessions killed.
async fn end_grant(
    site: &Site,
    conn: &mut MySqlConnection,
    scrub: &Scrub,
    grant: &Handle,
) -> Result<u64, TargetError> {
    let step = |what: &str, e: sqlx::Error| site.statement_error(what, &e, scrub);
    let nbe = no_backslash_escapes(conn)
        .await
        .map_err(|e| step("reading sql_mode", e))?;
    let account = format!("'{}'@{}", grant.user, literal(&grant.host, nbe));
    let shown = format!("`{}`@`{}`", grant.user, grant.host);
    exec(conn, format!("ALTER USER IF EXISTS {account} ACCOUNT LOCK"))
        .await
        .map_err(|e| step(&format!("locking {shown}"), e))?;
    // A session killed before (an earlier end that is being retried) stays listed as
    // `Killed` until its thread notices: it is not killed, nor counted, twice.
    let ids: Vec<u64> = sqlx::query_scalar(
        "SELECT CAST(ID AS UNSIGNED) FROM information_schema.PROCESSLIST \
         WHERE USER = ? AND COMMAND <> 'Killed'",
    )
    .bind(&grant.user)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| step(&format!("listing the sessions of {shown}"), e))?;
    let mut killed = 0u64;
    for id in ids {
        match exec(conn, format!("KILL CONNECTION {id}")).await {
            Ok(()) => killed += 1,
            // The session ended by itself meanwhile.
            Err(e) if db_number(&e) == Some(1094) => {}
            Err(e) => return Err(step(&format!("killing session {id} of {shown}"), e)),
        }
    }
    exec(conn, format!("DROP USER IF EXISTS {account}"))
        .await
        .map_err(|e| step(&format!("dropping {shown}"), e))?;
    let event = format!("{}.{}", ident(&grant.event_db), ident(&grant.event_name));
    match exec(conn, format!("DROP EVENT IF EXISTS {event}")).await {
        // A backstop database that never came to be holds no event.
        Err(e) if db_number(&e) == Some(1049) => {}
        Err(e) => {
            return Err(step(
                &format!("dropping event `{}`.`{}`", grant.event_db, grant.event_name),
                e,
            ));
        }
        Ok(()) => {}
    }
    Ok(killed)
}

/// Replaces the admin's password with `next`, proves it, and puts `current` back on failure.
async fn rotate_admin(
    site: &Site,
    conn: &mut MySqlConnection,
    scrub: &Scrub,
    current: &AdminCredential,
    next: &AdminCredential,
) -> Result<(), TargetError> {
    let step = |what: &str, e: sqlx::Error| site.statement_error(what, &e, scrub);
    let nbe = no_backslash_escapes(conn)
        .await
        .map_err(|e| step("reading sql_mode", e))?;
    let (admin_sql, admin_shown) = site.admin_account(nbe);
    let (user, host) = current_account(conn)
        .await
        .map_err(|e| step("reading CURRENT_USER()", e))?;
    if user != site.settings.admin_user || host != site.settings.admin_host {
        return Err(site.config(format!(
            "the sealed credential logs in as `{user}`@`{host}`, not as the procedure's admin \
             account `{admin_shown}` (check admin_host)"
        )));
    }
    let alter = format!("ALTER USER {admin_sql}");
    let set_password = |password: &str| identified_by(&alter, password, nbe);
    exec_secret(conn, set_password(next.password.as_str()))
        .await
        .map_err(|e| step(&format!("ALTER USER `{admin_shown}`"), e))?;

    let proof = match next.options(site) {
        Ok(options) => prove(site, &options, scrub).await,
        Err(e) => Err(e),
    };
    let Err(failure) = proof else {
        return Ok(());
    };
    // The old password still works on this open connection's account: put it back.
    match exec_secret(conn, set_password(current.password.as_str())).await {
        Ok(()) => Err(site.failed(format!(
            "the new credential did not work ({failure}); the old one was put back and still \
             works"
        ))),
        Err(e) => Err(site.failed(format!(
            "the new credential did not work ({failure}) and putting the old one back failed \
             ({}): the admin password is now the new credential",
            scrub.text(&describe(&e))
        ))),
    }
}

/// Logs in with fresh options and runs a statement.
async fn prove(
    site: &Site,
    options: &MySqlConnectOptions,
    scrub: &Scrub,
) -> Result<(), TargetError> {
    let mut conn = site.connect(options, scrub).await?;
    let r = sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| site.statement_error("SELECT 1 with the new credential", &e, scrub));
    let _ = conn.close().await;
    r.map(|_| ())
}

/// One account's privileges as `information_schema` lists them: privilege → grantable.
#[derive(Default)]
struct Privileges {
    global: HashMap<String, bool>,
    schema: HashMap<String, HashMap<String, bool>>,
    table: HashMap<(String, String), HashMap<String, bool>>,
}

impl Privileges {
    async fn load(
        conn: &mut MySqlConnection,
        user: &str,
        host: &str,
    ) -> Result<Privileges, sqlx::Error> {
        let grantee = format!("'{user}'@'{host}'");
        let mut p = Privileges::default();
        let rows = sqlx::query(
            "SELECT CAST(PRIVILEGE_TYPE AS CHAR), CAST(IS_GRANTABLE AS CHAR) \
             FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?",
        )
        .bind(&grantee)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let privilege: String = row.try_get(0)?;
            let grantable: String = row.try_get(1)?;
            p.global.insert(privilege, grantable == "YES");
        }
        let rows = sqlx::query(
            "SELECT CAST(TABLE_SCHEMA AS CHAR), CAST(PRIVILEGE_TYPE AS CHAR), \
             CAST(IS_GRANTABLE AS CHAR) \
             FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?",
        )
        .bind(&grantee)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let db: String = row.try_get(0)?;
            let privilege: String = row.try_get(1)?;
            let grantable: String = row.try_get(2)?;
            p.schema
                .entry(db)
                .or_default()
                .insert(privilege, grantable == "YES");
        }
        let rows = sqlx::query(
            "SELECT CAST(TABLE_SCHEMA AS CHAR), CAST(TABLE_NAME AS CHAR), \
             CAST(PRIVILEGE_TYPE AS CHAR), CAST(IS_GRANTABLE AS CHAR) \
             FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE = ?",
        )
        .bind(&grantee)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let db: String = row.try_get(0)?;
            let table: String = row.try_get(1)?;
            let privilege: String = row.try_get(2)?;
            let grantable: String = row.try_get(3)?;
            p.table
                .entry((db, table))
                .or_default()
                .insert(privilege, grantable == "YES");
        }
        Ok(p)
    }

    /// Holds `privilege` globally or on database `db`.
    fn holds(&self, privilege: &str, db: &str) -> bool {
        self.global.contains_key(privilege)
            || self
                .schema
                .get(db)
                .is_some_and(|m| m.contains_key(privilege))
    }

    /// May grant `privilege` on `db.table` (`*` for every database or table).
    fn may_grant(&self, privilege: &str, db: &str, table: &str) -> bool {
        let grantable = |m: Option<&HashMap<String, bool>>| {
            m.and_then(|m| m.get(privilege)).copied().unwrap_or(false)
        };
        grantable(Some(&self.global))
            || (db != "*" && grantable(self.schema.get(db)))
            || (db != "*"
                && table != "*"
                && grantable(self.table.get(&(db.to_owned(), table.to_owned()))))
    }

    fn has_grant_option(&self) -> bool {
        self.global.values().any(|g| *g)
            || self.schema.values().any(|m| m.values().any(|g| *g))
            || self.table.values().any(|m| m.values().any(|g| *g))
    }
}

/// The privileges and object of a grant clause (`SELECT, INSERT ON app.*`).
fn clause_parts(clause: &str) -> Option<(Vec<String>, String, String)> {
    let upper = clause.to_ascii_uppercase();
    let at = upper.find(" ON ")?;
    let privileges: Vec<String> = upper[..at]
        .split(',')
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty() && p != "USAGE")
        .flat_map(|p| {
            if p == "ALL" || p == "ALL PRIVILEGES" {
                ALL_DB_PRIVILEGES.iter().map(|s| (*s).to_owned()).collect()
            } else {
                vec![p]
            }
        })
        .collect();
    let object = clause.get(at + 4..)?.trim();
    let (db, table) = object.split_once('.')?;
    Some((privileges, db.trim().to_owned(), table.trim().to_owned()))
}

fn line(name: &str, ok: bool, detail: String) -> HealthCheck {
    HealthCheck {
        name: name.to_owned(),
        ok,
        detail,
    }
}

/// The health checks, with the operator connection.
async fn check_target(
    site: &Site,
    conn: &mut MySqlConnection,
    scrub: &Scrub,
) -> Result<Vec<HealthCheck>, TargetError> {
    let s = &site.settings;
    let step = |what: &str, e: sqlx::Error| site.statement_error(what, &e, scrub);
    let mut checks = Vec::new();
    let version: String = sqlx::query_scalar("SELECT CAST(VERSION() AS CHAR)")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| step("SELECT VERSION()", e))?;
    let (op_user, op_host) = current_account(conn)
        .await
        .map_err(|e| step("reading CURRENT_USER()", e))?;
    checks.push(line(
        "operator connection",
        true,
        format!("connected as `{op_user}`@`{op_host}` to MariaDB {version}"),
    ));

    let scheduler: String = sqlx::query_scalar("SELECT CAST(@@GLOBAL.event_scheduler AS CHAR)")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| step("reading event_scheduler", e))?;
    let scheduler_on = scheduler.eq_ignore_ascii_case("ON");
    checks.push(line(
        "event scheduler is ON",
        scheduler_on,
        if scheduler_on {
            "ON: the backstop event ends a grant at its deadline even when breakglass is down"
                .into()
        } else {
            format!(
                "{scheduler}: the backstop events will not fire; a grant ends only when \
                 breakglass ends it (SET GLOBAL event_scheduler = ON, and event_scheduler=ON in \
                 the server's configuration)"
            )
        },
    ));

    let operator = Privileges::load(conn, &op_user, &op_host)
        .await
        .map_err(|e| step("reading the operator's privileges", e))?;
    let mut missing = Vec::new();
    for p in ["CREATE USER", "PROCESS"] {
        if !operator.global.contains_key(p) {
            missing.push(p.to_owned());
        }
    }
    if !operator.global.contains_key("CONNECTION ADMIN") && !operator.global.contains_key("SUPER") {
        missing.push("CONNECTION ADMIN (or SUPER)".into());
    }
    if !operator.holds("EVENT", &s.backstop_db) {
        missing.push(format!("EVENT on `{}`.*", s.backstop_db));
    }
    if !operator.holds("SELECT", "mysql") {
        missing.push("SELECT on `mysql`.*".into());
    }
    checks.push(line(
        "operator may end grants",
        missing.is_empty(),
        if missing.is_empty() {
            "CREATE USER, PROCESS, CONNECTION ADMIN, EVENT on the backstop database, SELECT on \
             mysql.*"
                .into()
        } else {
            format!("missing: {}", missing.join(", "))
        },
    ));

    admin_checks(site, conn, scrub, &mut checks).await?;
    Ok(checks)
}

/// The admin account's lines of the health check.
async fn admin_checks(
    site: &Site,
    conn: &mut MySqlConnection,
    scrub: &Scrub,
    checks: &mut Vec<HealthCheck>,
) -> Result<(), TargetError> {
    let s = &site.settings;
    let step = |what: &str, e: sqlx::Error| site.statement_error(what, &e, scrub);
    let (_, shown) = site.admin_account(false);
    let account = sqlx::query(
        "SELECT CAST(Priv AS CHAR), CAST(UNIX_TIMESTAMP() AS SIGNED), \
         CAST(@@GLOBAL.default_password_lifetime AS SIGNED) \
         FROM mysql.global_priv WHERE User = ? AND Host = ?",
    )
    .bind(&s.admin_user)
    .bind(&s.admin_host)
    .fetch_optional(&mut *conn)
    .await;
    let row = match account {
        Ok(row) => row,
        // Without SELECT on mysql.*, the account cannot be seen: say so, as a failed line.
        Err(e) if matches!(db_number(&e), Some(1044 | 1142 | 1143)) => {
            checks.push(line(
                "admin account exists",
                false,
                format!(
                    "cannot tell: the operator may not read mysql.global_priv ({})",
                    scrub.text(&describe(&e))
                ),
            ));
            return Ok(());
        }
        Err(e) => return Err(step("reading mysql.global_priv", e)),
    };
    let Some(row) = row else {
        checks.push(line(
            "admin account exists",
            false,
            format!("no account `{shown}`"),
        ));
        return Ok(());
    };
    checks.push(line("admin account exists", true, format!("`{shown}`")));
    let priv_json: String = row.try_get(0).unwrap_or_default();
    let now: i64 = row.try_get(1).unwrap_or(0);
    let default_lifetime: i64 = row.try_get(2).unwrap_or(0);
    let state = AccountState::parse(&priv_json, default_lifetime);
    checks.push(line(
        "admin account not locked",
        !state.locked,
        if state.locked {
            "locked (ALTER USER … ACCOUNT UNLOCK)".into()
        } else {
            "unlocked".into()
        },
    ));
    let expired = state.password_expired(now);
    checks.push(line(
        "admin password not expired",
        !expired,
        match (expired, state.password_expires()) {
            (true, _) => {
                "expired: the sealed password must be changed before it can be used".into()
            }
            (false, Some(at)) => format!("expires {at}"),
            (false, None) => "no expiry".into(),
        },
    ));

    let admin = Privileges::load(conn, &s.admin_user, &s.admin_host)
        .await
        .map_err(|e| step("reading the admin's privileges", e))?;
    checks.push(line(
        "admin may create users",
        admin.global.contains_key("CREATE USER"),
        if admin.global.contains_key("CREATE USER") {
            "CREATE USER".into()
        } else {
            "missing: CREATE USER".into()
        },
    ));
    let mut missing = Vec::new();
    for clause in &s.grants {
        match clause_parts(clause) {
            Some((privileges, db, table)) => {
                for p in privileges {
                    if !admin.may_grant(&p, &db, &table) {
                        missing.push(format!("{p} ON {db}.{table} WITH GRANT OPTION"));
                    }
                }
            }
            None => missing.push(format!("cannot read clause `{clause}`")),
        }
    }
    let grant_option = admin.has_grant_option();
    checks.push(line(
        "admin may grant the procedure's privileges",
        grant_option && missing.is_empty(),
        if !grant_option {
            "missing: GRANT OPTION".into()
        } else if missing.is_empty() {
            format!("GRANT OPTION for {}", s.grants.join("; "))
        } else {
            format!("missing: {}", missing.join(", "))
        },
    ));

    let db_exists: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(&s.backstop_db)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| step("looking for the backstop database", e))?;
    let mut missing = Vec::new();
    if !admin.global.contains_key("PROCESS") {
        missing.push("PROCESS".to_owned());
    }
    if !admin.global.contains_key("CONNECTION ADMIN") && !admin.global.contains_key("SUPER") {
        missing.push("CONNECTION ADMIN (or SUPER)".into());
    }
    if !admin.holds("EVENT", &s.backstop_db) {
        missing.push(format!("EVENT on `{}`.*", s.backstop_db));
    }
    if db_exists == 0 && !admin.holds("CREATE", &s.backstop_db) {
        missing.push(format!(
            "CREATE on `{}`.* (the database does not exist yet)",
            s.backstop_db
        ));
    }
    checks.push(line(
        "admin may schedule the backstop",
        missing.is_empty(),
        if missing.is_empty() {
            format!(
                "events in `{}` lock, kill and drop the grant's user at the deadline",
                s.backstop_db
            )
        } else {
            format!("missing: {}", missing.join(", "))
        },
    ));
    Ok(())
}

/// What `mysql.global_priv.Priv` says about an account's lock and password.
struct AccountState {
    locked: bool,
    is_role: bool,
    /// Seconds since the epoch; 0 means "expired by ALTER USER … PASSWORD EXPIRE".
    last_changed: Option<i64>,
    /// Days; 0 means never.
    lifetime_days: i64,
}

impl AccountState {
    fn parse(json: &str, default_lifetime_days: i64) -> AccountState {
        let v: serde_json::Value = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
        let lifetime = v
            .get("password_lifetime")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(-1);
        AccountState {
            locked: v
                .get("account_locked")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            is_role: v
                .get("is_role")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            last_changed: v
                .get("password_last_changed")
                .and_then(serde_json::Value::as_i64),
            lifetime_days: if lifetime < 0 {
                default_lifetime_days.max(0)
            } else {
                lifetime
            },
        }
    }

    /// When the password expires by its lifetime, if it does.
    fn password_expires(&self) -> Option<Timestamp> {
        match self.last_changed {
            Some(changed) if changed > 0 && self.lifetime_days > 0 => Some(Timestamp(
                changed
                    .saturating_add(self.lifetime_days.saturating_mul(86_400))
                    .saturating_mul(1000),
            )),
            _ => None,
        }
    }

    fn password_expired(&self, now_unix: i64) -> bool {
        self.last_changed == Some(0)
            || self
                .password_expires()
                .is_some_and(|at| at.millis() <= now_unix.saturating_mul(1000))
    }
}

/// What one `SHOW GRANTS` says about an account.
#[derive(Default)]
struct GrantsSummary {
    privileged: BTreeSet<String>,
    roles: Vec<String>,
}

/// Reads `SHOW GRANTS` lines: SUPER or ALL PRIVILEGES on `*.*`, any `WITH GRANT OPTION`, and
/// granted roles.
fn summarize_grants(lines: &[String]) -> GrantsSummary {
    let mut summary = GrantsSummary::default();
    for l in lines {
        let Some(rest) = l.strip_prefix("GRANT ") else {
            continue;
        };
        if let Some(role) = rest.strip_prefix('`') {
            // `GRANT `role` TO `user`@`host``: a role, privileged if the role is.
            let mut name = String::new();
            let mut chars = role.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '`' {
                    if chars.peek() == Some(&'`') {
                        chars.next();
                        name.push('`');
                    } else {
                        break;
                    }
                } else {
                    name.push(c);
                }
            }
            summary.roles.push(name);
            continue;
        }
        let Some((privileges, after)) = rest.split_once(" ON ") else {
            continue;
        };
        if privileges.starts_with("PROXY") {
            continue;
        }
        let object = after.split(" TO ").next().unwrap_or("").trim();
        let global = object == "*.*";
        if global {
            if privileges.trim() == "ALL PRIVILEGES" {
                summary.privileged.insert("ALL PRIVILEGES".into());
            }
            if privileges.split(',').any(|p| p.trim() == "SUPER") {
                summary.privileged.insert("SUPER".into());
            }
        }
        if after.contains(" WITH GRANT OPTION") {
            summary.privileged.insert(if global {
                "GRANT OPTION".into()
            } else {
                format!("GRANT OPTION ON {object}")
            });
        }
    }
    summary
}

/// Lists accounts with SUPER, ALL PRIVILEGES or GRANT OPTION (directly or through roles).
async fn discover_accounts(
    site: &Site,
    conn: &mut MySqlConnection,
    scrub: &Scrub,
) -> Result<Vec<PrivilegedAccount>, TargetError> {
    let s = &site.settings;
    let step = |what: &str, e: sqlx::Error| site.statement_error(what, &e, scrub);
    let (op_user, op_host) = current_account(conn)
        .await
        .map_err(|e| step("reading CURRENT_USER()", e))?;
    let nbe = no_backslash_escapes(conn)
        .await
        .map_err(|e| step("reading sql_mode", e))?;
    let default_lifetime: i64 =
        sqlx::query_scalar("SELECT CAST(@@GLOBAL.default_password_lifetime AS SIGNED)")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| step("reading default_password_lifetime", e))?;
    let rows = sqlx::query(
        "SELECT CAST(User AS CHAR), CAST(Host AS CHAR), CAST(Priv AS CHAR) FROM mysql.global_priv",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| step("reading mysql.global_priv", e))?;
    // Backstop events of live grants: `bg_x_end` → when it fires.
    let events: HashMap<String, i64> = sqlx::query(
        "SELECT CAST(EVENT_NAME AS CHAR), CAST(UNIX_TIMESTAMP(EXECUTE_AT) AS SIGNED) \
         FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?",
    )
    .bind(&s.backstop_db)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| step("reading the backstop events", e))?
    .into_iter()
    .filter_map(|r| {
        Some((
            r.try_get::<String, _>(0).ok()?,
            r.try_get::<i64, _>(1).ok()?,
        ))
    })
    .collect();

    let mut accounts = Vec::new();
    let mut summaries: HashMap<String, GrantsSummary> = HashMap::new();
    for row in rows {
        let (Ok(user), Ok(host)) = (row.try_get::<String, _>(0), row.try_get::<String, _>(1))
        else {
            continue;
        };
        let json: String = row.try_get(2).unwrap_or_default();
        let state = AccountState::parse(&json, default_lifetime);
        if user.contains('\0') || host.contains('\0') {
            continue;
        }
        let target = if state.is_role {
            literal(&user, nbe)
        } else {
            format!("{}@{}", literal(&user, nbe), literal(&host, nbe))
        };
        let lines: Vec<String> =
            match sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SHOW GRANTS FOR {target}")))
                .fetch_all(&mut *conn)
                .await
            {
                Ok(rows) => rows
                    .iter()
                    .filter_map(|r| r.try_get::<String, _>(0).ok())
                    .collect(),
                // Dropped between the two reads.
                Err(e) if matches!(db_number(&e), Some(1141 | 1133)) => continue,
                Err(e) => return Err(step(&format!("SHOW GRANTS FOR `{user}`@`{host}`"), e)),
            };
        let summary = summarize_grants(&lines);
        if state.is_role {
            summaries.insert(user, summary);
        } else {
            accounts.push((user, host, state, summary));
        }
    }

    let mut found = Vec::new();
    for (user, host, state, summary) in accounts {
        let mut privileges: BTreeMap<String, ()> =
            summary.privileged.iter().map(|p| (p.clone(), ())).collect();
        // Roles granted to the account, and the roles those roles hold.
        let mut seen = BTreeSet::new();
        let mut queue = summary.roles.clone();
        while let Some(role) = queue.pop() {
            if !seen.insert(role.clone()) {
                continue;
            }
            if let Some(r) = summaries.get(&role) {
                for p in &r.privileged {
                    privileges.insert(format!("{p} (role `{role}`)"), ());
                }
                queue.extend(r.roles.iter().cloned());
            }
        }
        if privileges.is_empty() {
            continue;
        }
        let name = format!("{user}@{host}");
        let backstop = if user.starts_with("bg_") && host == "%" {
            events.get(&format!("{user}_end")).copied()
        } else {
            None
        };
        let known = s.inventory.iter().any(|i| *i == user || *i == name)
            || (user == s.admin_user && host == s.admin_host)
            || (user == op_user && host == op_host)
            || backstop.is_some();
        let expires = match backstop {
            Some(at) => Some(Timestamp(at.saturating_mul(1000)).to_string()),
            None if state.last_changed == Some(0) => Some("password expired".into()),
            None => state.password_expires().map(|t| t.to_string()),
        };
        let mut flags = Vec::new();
        if !known {
            flags.push("not in inventory".to_owned());
        }
        if expires.is_none() {
            flags.push("no expiry".to_owned());
        }
        found.push(PrivilegedAccount {
            name,
            privileges: privileges.into_keys().collect(),
            expires,
            known,
            flags,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("a'b", false), "'a''b'");
        assert_eq!(literal("a\\'b", false), "'a\\\\''b'");
        assert_eq!(literal("a\\'b", true), "'a\\''b'");
        assert_eq!(ident("a`b"), "`a``b`");
    }

    #[test]
    fn urls_give_user_and_password_and_keep_the_rest() {
        let text = "mysql://admin:p%40ss%3Aw@db.example:3307/app?ssl-mode=required";
        let u = UrlParts::parse(text).unwrap();
        assert_eq!(u.user, "admin");
        assert_eq!(u.password.as_str(), "p@ss:w");
        assert_eq!(
            u.with_password(text, "NEW"),
            "mysql://admin:NEW@db.example:3307/app?ssl-mode=required"
        );
        let bare = "mysql://admin@db";
        let u = UrlParts::parse(bare).unwrap();
        assert_eq!(u.password.as_str(), "");
        assert_eq!(u.with_password(bare, "X"), "mysql://admin:X@db");
        assert!(UrlParts::parse("mysql://db:3306").is_none());
        assert!(UrlParts::parse("mysql://a:%zz@db").is_none());
        assert!(UrlParts::parse("mysql://a:%4@db").is_none());
    }

    #[test]
    fn grants_lines_are_summarized() {
        let lines = [
            "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION".to_owned(),
            "GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION".to_owned(),
        ];
        let s = summarize_grants(&lines);
        assert_eq!(
            s.privileged.into_iter().collect::<Vec<_>>(),
            ["ALL PRIVILEGES", "GRANT OPTION"]
        );
        let lines = [
            "GRANT SUPER, PROCESS ON *.* TO `x`@`%` IDENTIFIED BY PASSWORD '*AB'".to_owned(),
            "GRANT SELECT ON `app`.* TO `x`@`%` WITH GRANT OPTION".to_owned(),
            "GRANT `ops``r` TO `x`@`%`".to_owned(),
            "SET DEFAULT ROLE `ops` FOR `x`@`%`".to_owned(),
            "GRANT".to_owned(),
            "GRANT ON".to_owned(),
        ];
        let s = summarize_grants(&lines);
        assert_eq!(
            s.privileged.into_iter().collect::<Vec<_>>(),
            ["GRANT OPTION ON `app`.*", "SUPER"]
        );
        assert_eq!(s.roles, ["ops`r"]);
    }

    #[test]
    fn clauses_split_into_privileges_and_object() {
        let (p, db, t) = clause_parts("SELECT, insert ON app.*").unwrap();
        assert_eq!(p, ["SELECT", "INSERT"]);
        assert_eq!((db.as_str(), t.as_str()), ("app", "*"));
        let (p, _, _) = clause_parts("ALL PRIVILEGES ON app.t").unwrap();
        assert_eq!(p.len(), ALL_DB_PRIVILEGES.len());
        assert!(clause_parts("SELECT").is_none());
    }

    #[test]
    fn account_state_reads_lock_and_expiry() {
        let s = AccountState::parse(
            r#"{"account_locked":true,"password_last_changed":100,"password_lifetime":1}"#,
            0,
        );
        assert!(s.locked);
        assert_eq!(s.password_expires(), Some(Timestamp((100 + 86_400) * 1000)));
        assert!(!s.password_expired(100));
        assert!(s.password_expired(100 + 86_400));
        let s = AccountState::parse(r#"{"password_last_changed":0}"#, 0);
        assert!(s.password_expired(5));
        let s = AccountState::parse("not json", 30);
        assert!(!s.locked && s.password_expires().is_none());
        let s = AccountState::parse(r#"{"password_last_changed":10}"#, 2);
        assert_eq!(
            s.password_expires(),
            Some(Timestamp((10 + 2 * 86_400) * 1000))
        );
    }

    #[test]
    fn scrub_replaces_every_password() {
        let mut s = Scrub::default();
        s.add("hunter2");
        s.add("");
        assert_eq!(
            s.text("near 'hunter2' at line 1 hunter2"),
            "near '[redacted]' at line 1 [redacted]"
        );
    }

    #[test]
    fn the_event_locks_kills_and_drops() {
        let sql = event_sql("`bg`.`bg_x_end`", "bg_x", 60, Timestamp(59_500), "brk_x'--");
        assert!(sql.contains("AT FROM_UNIXTIME(60)"));
        assert!(sql.contains("ALTER USER IF EXISTS 'bg_x'@'%' ACCOUNT LOCK"));
        assert!(sql.contains("KILL CONNECTION"));
        assert!(sql.contains("DROP USER IF EXISTS 'bg_x'@'%'"));
        assert!(sql.contains("of break brk_x at"));
    }
}
