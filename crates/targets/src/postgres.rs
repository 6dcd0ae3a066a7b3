//! PostgreSQL target: an ephemeral login role per grant, ended by the operator connection.
//!
//! - **Sealed credential**: the password of the procedure's `admin_user` (UTF-8), or a whole
//!   `postgres://` / `postgresql://` URL whose user, password, host, port and database are used.
//! - **Grant** (admin connection, one transaction): `CREATE ROLE bg_… LOGIN PASSWORD …
//!   VALID UNTIL <deadline> IN ROLE <grant_role>`, then `GRANT bg_… TO <operator> WITH ADMIN
//!   OPTION` so the operator may later end it (PostgreSQL 16 lets a `CREATEROLE` role alter and
//!   drop only roles it administers; `DROP OWNED` needs the role's privileges on every version).
//!   The requester receives `postgresql://bg_…:PASSWORD@host:port/db?sslmode=…`; the server
//!   itself refuses the login after the deadline, whether or not `end` runs.
//! - **End** (operator connection, to the procedure's database): `ALTER ROLE … NOLOGIN`, every
//!   backend of the role terminated, `REASSIGN OWNED`/`DROP OWNED`, `DROP ROLE`. Idempotent.
//! - **Rotation**: `ALTER ROLE admin PASSWORD …`, proven by a fresh login; on failure the old
//!   password is put back on the still-open first connection.
//! - **TLS**: the procedure's `sslmode` applies to the admin and operator connections (unless
//!   a credential URL names its own) and is written into the requester's connection string,
//!   with its `channel_binding` when that is not libpq's default `prefer`. The admin and
//!   operator connections (sqlx) log in with SCRAM unbound: sqlx has no channel binding, so
//!   `sslmode=verify-full` is what protects them from a man in the middle.
//!
//! Passwords never reach a statement in clear: they are sent as SCRAM-SHA-256 verifiers
//! computed here (as `psql`'s `\password` does), so the server's statement log and
//! `pg_stat_statements` never hold them. Every connection also has sqlx's statement logging
//! off, and error messages are scrubbed of the secrets in play.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use breakglass_custody::Secret;
use breakglass_domain::{OnEnd, Procedure, TargetConfig, TargetKind, ident_ok};
use breakglass_engine::ports::{
    EndCause, GrantRequest, HealthCheck, Issued, PrivilegedAccount, Session, Target, TargetError,
};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{ConnectOptions, Connection};
use zeroize::Zeroizing;

use crate::{grant_name, random_password};

/// How long a connection attempt may take before the target counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `pg_terminate_backend` waits for each backend to exit (milliseconds).
const TERMINATE_WAIT_MS: i64 = 5000;

/// The PostgreSQL adapter. It holds the operator URLs of the targets file by connection name;
/// the sealed administrative credential reaches it only as an argument.
pub struct PostgresTarget {
    connections: HashMap<String, SecretString>,
}

impl PostgresTarget {
    /// Builds the adapter from the operator URLs of the targets file, by connection name.
    pub fn new(connections: HashMap<String, SecretString>) -> Self {
        PostgresTarget { connections }
    }

    /// The operator login for the procedure's connection.
    fn operator(&self, s: &Settings) -> Result<Login, TargetError> {
        let url = self.connections.get(&s.cfg.connection).ok_or_else(|| {
            s.config(format!(
                "no postgres connection `{}` in the targets file",
                s.cfg.connection
            ))
        })?;
        let login = Login::from_url(url.expose_secret(), s).map_err(|m| {
            s.config(format!(
                "operator URL of connection `{}`: {m}",
                s.cfg.connection
            ))
        })?;
        Ok(login)
    }
}

impl std::fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.connections.keys().collect();
        names.sort();
        f.debug_struct("PostgresTarget")
            .field("connections", &names)
            .finish()
    }
}

#[async_trait]
impl Target for PostgresTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::Postgres
    }

    async fn grant(
        &self,
        request: &GrantRequest<'_>,
        credential: &Secret,
    ) -> Result<Issued, TargetError> {
        let s = Settings::of(request.procedure)?;
        let operator = self.operator(&s)?;
        let admin = Login::from_credential(credential, &s)?;
        let role = grant_name(request.break_id);
        if !ident_ok(&role) || role == "bg_" {
            return Err(s.config(format!(
                "break id `{}` gives no usable role name",
                request.break_id
            )));
        }
        let password = random_password();
        let valid_until = request.deadline.to_string();
        let scrub = [
            admin.password.expose_secret(),
            password.expose_secret(),
            operator.password.expose_secret(),
        ];
        let who = format!("admin role `{}`", admin.user);
        let mut conn = connect(&admin.options, &s, &who, &scrub).await?;

        let create = Zeroizing::new(format!(
            "CREATE ROLE {} LOGIN PASSWORD {} VALID UNTIL {} IN ROLE {}",
            quote_ident(&role),
            quote_literal(&password_for_statement(password.expose_secret())),
            quote_literal(&valid_until),
            quote_ident(&s.cfg.grant_role),
        ));
        let result = async {
            let mut tx = conn.begin().await?;
            execute(&mut tx, &create).await?;
            if operator.user != admin.user {
                let grant = format!(
                    "GRANT {} TO {} WITH ADMIN OPTION",
                    quote_ident(&role),
                    quote_ident(&operator.user)
                );
                execute(&mut tx, &grant).await?;
            }
            tx.commit().await
        }
        .await;
        // The transaction is over either way: committed, or rolled back when `tx` dropped.
        let _ = conn.close().await;
        if let Err(e) = result {
            return Err(match sqlstate(&e).as_deref() {
                Some("42710") => TargetError::Conflict {
                    target: s.label.clone(),
                    message: format!(
                        "role `{role}` already exists; nothing was created (end the earlier \
                         grant or drop that role)"
                    ),
                },
                Some("42704") => s.config(format!(
                    "{} (check grant_role `{}` and the operator user `{}`); nothing was created",
                    db_message(&e, &scrub),
                    s.cfg.grant_role,
                    operator.user
                )),
                _ => classify(e, &s, &format!("creating role `{role}` as {who}"), &scrub),
            });
        }
        tracing::info!(postgres = %s.label, %role, %valid_until, "postgres grant role created");

        Ok(Issued {
            access: access_url(&s, &role, password.expose_secret()),
            handle: serde_json::json!({
                "role": role,
                "member_of": s.cfg.grant_role,
                "valid_until": valid_until,
            }),
        })
    }

    async fn end(
        &self,
        procedure: &Procedure,
        break_id: &str,
        handle: &serde_json::Value,
        cause: EndCause,
    ) -> Result<serde_json::Value, TargetError> {
        let s = Settings::of(procedure)?;
        let operator = self.operator(&s)?;
        let role = match handle.get("role").and_then(|r| r.as_str()) {
            Some(r) if ident_ok(r) && r.starts_with("bg_") => r.to_owned(),
            _ => grant_name(break_id),
        };
        let cause = match cause {
            EndCause::Expired => "expired",
            EndCause::Closed => "closed",
            EndCause::Abandoned => "abandoned",
        };
        let gone = || {
            serde_json::json!({
                "role": role,
                "already_gone": true,
                "sessions_terminated": 0,
                "cause": cause,
            })
        };
        let scrub = [operator.password.expose_secret()];
        let who = format!("operator `{}`", operator.user);
        // Owned objects are dropped per database: the grant's database is where they are.
        let options = operator.options.clone().database(&s.cfg.dbname);
        let mut conn = connect(&options, &s, &who, &scrub).await?;
        // Two ends of one grant at once (the expiry sweep and a close, or a drill's own end)
        // both alter (and drop) the role; PostgreSQL refuses the second catalog change with
        // "tuple concurrently updated" or "… deleted" (XX000). Every step of the end is
        // idempotent: try again.
        let mut attempt = 0u32;
        let result = loop {
            let result = end_role(&mut conn, &s, &role, &scrub).await;
            match &result {
                Err(e) if attempt < 5 && e.to_string().contains("tuple concurrently ") => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt)))
                        .await;
                }
                _ => break result,
            }
        };
        let _ = conn.close().await;
        let Some((terminated, remaining)) = result? else {
            return Ok(gone());
        };
        let owned = match &s.cfg.on_end {
            OnEnd::Drop => "dropped".to_owned(),
            OnEnd::Reassign(to) => format!("reassigned to {to}"),
        };
        tracing::info!(postgres = %s.label, %role, terminated, "postgres grant role dropped");
        let mut done = serde_json::json!({
            "role": role,
            "sessions_terminated": terminated,
            "owned": owned,
            "dropped": true,
            "cause": cause,
        });
        if remaining > 0 {
            done["sessions_still_running"] = remaining.into();
        }
        Ok(done)
    }

    async fn renew_login(
        &self,
        procedure: &Procedure,
        break_id: &str,
        handle: &serde_json::Value,
    ) -> Result<Secret, TargetError> {
        let s = Settings::of(procedure)?;
        let operator = self.operator(&s)?;
        let role = match handle.get("role").and_then(|r| r.as_str()) {
            Some(r) if ident_ok(r) && r.starts_with("bg_") => r.to_owned(),
            _ => grant_name(break_id),
        };
        let password = random_password();
        let scrub = [password.expose_secret(), operator.password.expose_secret()];
        let who = format!("operator `{}`", operator.user);
        let context = format!("renewing the login of role `{role}` as {who}");
        let mut conn = connect(&operator.options, &s, &who, &scrub).await?;
        let result = async {
            // Only a grant role that can still log in is renewed: an ended grant stays ended.
            let can_login = sqlx::query_scalar::<_, bool>(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            )
            .bind(&role)
            .fetch_optional(&mut conn)
            .await?;
            if can_login != Some(true) {
                return Ok(false);
            }
            let alter = Zeroizing::new(format!(
                "ALTER ROLE {} PASSWORD {}",
                quote_ident(&role),
                quote_literal(&password_for_statement(password.expose_secret())),
            ));
            execute(&mut conn, &alter).await.map(|()| true)
        }
        .await;
        let _ = conn.close().await;
        match result {
            Ok(true) => {}
            Ok(false) => {
                return Err(TargetError::Conflict {
                    target: s.label.clone(),
                    message: format!(
                        "role `{role}` no longer exists or cannot log in: the grant has ended"
                    ),
                });
            }
            Err(e) => return Err(classify(e, &s, &context, &scrub)),
        }
        // Proven with a fresh login before anyone is given a token for it, as a rotation is.
        let access = access_url(&s, &role, password.expose_secret());
        let login = Login::from_credential(&access, &s)?;
        let who = format!("grant role `{role}` (renewed)");
        let _ = connect(&login.options, &s, &who, &scrub)
            .await?
            .close()
            .await;
        tracing::info!(postgres = %s.label, %role, "postgres grant login renewed");
        Ok(access)
    }

    async fn login(
        &self,
        procedure: &Procedure,
        access: &Secret,
    ) -> Result<Box<dyn Session>, TargetError> {
        let s = Settings::of(procedure)?;
        let login = Login::from_credential(access, &s)?;
        let scrub = [login.password.expose_secret()];
        let who = format!("grant role `{}`", login.user);
        let conn = connect(&login.options, &s, &who, &scrub).await?;
        Ok(Box::new(PgSession {
            conn: Some(conn),
            label: s.label.clone(),
            scrub: login.password,
        }))
    }

    async fn check(&self, procedure: &Procedure) -> Result<Vec<HealthCheck>, TargetError> {
        let s = Settings::of(procedure)?;
        let operator = self.operator(&s)?;
        let scrub = [operator.password.expose_secret()];
        let who = format!("operator `{}`", operator.user);
        let mut conn = connect(&operator.options, &s, &who, &scrub).await?;
        let result = check_roles(&mut conn, &s).await;
        let _ = conn.close().await;
        result.map_err(|e| classify(e, &s, "checking roles", &scrub))
    }

    fn next_credential(
        &self,
        procedure: &Procedure,
        current: &Secret,
    ) -> Result<Option<Secret>, TargetError> {
        let s = Settings::of(procedure)?;
        let text = std::str::from_utf8(current.expose_secret())
            .map_err(|_| s.config("the sealed credential is not UTF-8 text".into()))?;
        let password = random_password();
        if is_url(text) {
            let parts = UrlParts::split(text).map_err(|m| s.config(m))?;
            let next = Zeroizing::new(format!(
                "{}{}:{}@{}",
                parts.scheme,
                parts.user,
                password.expose_secret(),
                parts.after_at
            ));
            Ok(Some(Secret::new(next.as_bytes().to_vec())))
        } else {
            Ok(Some(Secret::new(
                password.expose_secret().as_bytes().to_vec(),
            )))
        }
    }

    async fn rotate(
        &self,
        procedure: &Procedure,
        current: &Secret,
        next: &Secret,
    ) -> Result<(), TargetError> {
        let s = Settings::of(procedure)?;
        let old = Login::from_credential(current, &s)?;
        let new = Login::from_credential(next, &s)?;
        if old.user != new.user {
            return Err(s.config(format!(
                "the new credential is for user `{}`, the current one for `{}`",
                new.user, old.user
            )));
        }
        let scrub = [old.password.expose_secret(), new.password.expose_secret()];
        let who = format!("admin role `{}`", old.user);
        let mut conn = connect(&old.options, &s, &who, &scrub).await?;
        let set = |password: &str| {
            Zeroizing::new(format!(
                "ALTER ROLE {} PASSWORD {}",
                quote_ident(&old.user),
                quote_literal(&password_for_statement(password))
            ))
        };
        if let Err(e) = execute(&mut conn, &set(new.password.expose_secret())).await {
            let _ = conn.close().await;
            return Err(classify(
                e,
                &s,
                &format!("changing the password of `{}` (nothing changed)", old.user),
                &scrub,
            ));
        }
        // Prove the new password with a login of its own before calling it done.
        let proof = async {
            let mut fresh = connect(&new.options, &s, &who, &scrub).await?;
            let one = sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&mut fresh)
                .await;
            let _ = fresh.close().await;
            one.map_err(|e| classify(e, &s, "proving the new password", &scrub))
        }
        .await;
        let Err(failure) = proof else {
            let _ = conn.close().await;
            tracing::info!(postgres = %s.label, user = %old.user, "postgres admin password rotated");
            return Ok(());
        };
        let restored = execute(&mut conn, &set(old.password.expose_secret())).await;
        let _ = conn.close().await;
        match restored {
            Ok(_) => Err(with_message(failure, |m| {
                format!(
                    "rotation undone, the old password of `{}` is back: {m}",
                    old.user
                )
            })),
            Err(e) => Err(TargetError::Failed {
                target: s.label.clone(),
                message: format!(
                    "rotation failed half-way: the new password of `{}` is set but was not \
                     proven ({failure}), and putting the old one back failed ({}); the role \
                     now has the NEW password",
                    old.user,
                    scrub_text(&e.to_string(), &scrub)
                ),
            }),
        }
    }

    async fn discover(&self, procedure: &Procedure) -> Result<Vec<PrivilegedAccount>, TargetError> {
        let s = Settings::of(procedure)?;
        let operator = self.operator(&s)?;
        let scrub = [operator.password.expose_secret()];
        let who = format!("operator `{}`", operator.user);
        let mut conn = connect(&operator.options, &s, &who, &scrub).await?;
        let rows = sqlx::query_as::<_, (String, bool, bool, bool, bool, Option<String>)>(
            "SELECT rolname::text, rolsuper, rolcreaterole, rolbypassrls, rolreplication, \
                    CASE WHEN rolvaliduntil IS NULL OR rolvaliduntil = 'infinity' THEN NULL \
                         ELSE to_char(rolvaliduntil AT TIME ZONE 'UTC', \
                                      'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') END \
             FROM pg_roles \
             WHERE rolcanlogin \
               AND (rolsuper OR rolcreaterole OR rolbypassrls OR rolreplication) \
             ORDER BY rolname",
        )
        .fetch_all(&mut conn)
        .await;
        let _ = conn.close().await;
        let rows = rows.map_err(|e| classify(e, &s, "listing privileged roles", &scrub))?;
        Ok(rows
            .into_iter()
            .map(|(name, sup, createrole, bypassrls, replication, expires)| {
                let privileges: Vec<String> = [
                    (sup, "superuser"),
                    (createrole, "createrole"),
                    (bypassrls, "bypassrls"),
                    (replication, "replication"),
                ]
                .into_iter()
                .filter(|(has, _)| *has)
                .map(|(_, p)| p.to_owned())
                .collect();
                let known = s.cfg.inventory.contains(&name)
                    || name == s.cfg.admin_user
                    || name == operator.user;
                let mut flags = Vec::new();
                if !known {
                    flags.push("not in inventory".to_owned());
                }
                if expires.is_none() {
                    flags.push("no expiry".to_owned());
                }
                PrivilegedAccount {
                    name,
                    privileges,
                    expires,
                    known,
                    flags,
                }
            })
            .collect())
    }
}

/// A procedure's validated PostgreSQL settings and the name its errors carry.
struct Settings {
    cfg: breakglass_domain::PostgresTarget,
    /// `postgres HOST:PORT/DB`.
    label: String,
}

impl Settings {
    fn of(procedure: &Procedure) -> Result<Settings, TargetError> {
        let fallback = format!("postgres (procedure {})", procedure.id);
        match procedure.target.config() {
            Ok(TargetConfig::Postgres(cfg)) => Ok(Settings {
                label: format!(
                    "postgres {}:{}/{}",
                    url_host(&cfg.host),
                    cfg.port,
                    cfg.dbname
                ),
                cfg,
            }),
            Ok(_) => Err(TargetError::Config {
                target: fallback,
                message: format!(
                    "the procedure's target is `{}`, not `postgres`",
                    procedure.target.kind.as_str()
                ),
            }),
            Err(problems) => Err(TargetError::Config {
                target: fallback,
                message: problems
                    .iter()
                    .map(|(field, m)| format!("{field}: {m}"))
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
}

/// How to log in as one role: sqlx options (never shown: their `Debug` holds the password),
/// the user, and the password for statements and scrubbing.
/// A client session opened with a grant's access (drills log in as a real client would).
struct PgSession {
    conn: Option<PgConnection>,
    label: String,
    scrub: SecretString,
}

#[async_trait]
impl Session for PgSession {
    async fn ping(&mut self) -> Result<(), TargetError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(TargetError::Unreachable {
                target: self.label.clone(),
                message: "the session is closed".into(),
            });
        };
        let result = sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&mut *conn)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                // A terminated backend is gone for good: drop the connection.
                self.conn = None;
                Err(TargetError::Unreachable {
                    target: self.label.clone(),
                    message: format!(
                        "session ended: {}",
                        scrub_text(&e.to_string(), &[self.scrub.expose_secret()])
                    ),
                })
            }
        }
    }
}

struct Login {
    options: PgConnectOptions,
    user: String,
    password: SecretString,
}

impl Login {
    /// The sealed credential: a URL, or the admin user's password.
    fn from_credential(credential: &Secret, s: &Settings) -> Result<Login, TargetError> {
        let text = std::str::from_utf8(credential.expose_secret())
            .map_err(|_| s.config("the sealed credential is not UTF-8 text".into()))?;
        if is_url(text) {
            return Login::from_url(text, s)
                .map_err(|m| s.config(format!("the sealed credential URL: {m}")));
        }
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(&s.cfg.host)
            .port(s.cfg.port)
            .username(&s.cfg.admin_user)
            .password(text)
            .database(&s.cfg.dbname);
        options = options.ssl_mode(
            PgSslMode::from_str(&s.cfg.sslmode)
                .map_err(|_| s.config(format!("unknown sslmode `{}`", s.cfg.sslmode)))?,
        );
        Ok(Login {
            options: harden(options),
            user: s.cfg.admin_user.clone(),
            password: SecretString::from(text.to_owned()),
        })
    }

    /// A `postgres://` URL; the error message never quotes it.
    fn from_url(url: &str, s: &Settings) -> Result<Login, String> {
        let parts = UrlParts::split(url)?;
        let user = percent_decode(parts.user)?;
        let password = Zeroizing::new(percent_decode(parts.password.unwrap_or(""))?);
        if user.is_empty() {
            return Err("names no user".into());
        }
        // Names are always quoted in statements; these could not be a role name at all.
        if user.len() > 63 || user.chars().any(char::is_control) {
            return Err("names a user that cannot be a PostgreSQL role".into());
        }
        // Parse errors of the URL are not shown: some quote the offending part.
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|_| "is not a valid postgres:// URL".to_owned())?;
        if !url.contains("sslmode=") && !url.contains("ssl-mode=") {
            let mode = PgSslMode::from_str(&s.cfg.sslmode)
                .map_err(|_| format!("unknown sslmode `{}`", s.cfg.sslmode))?;
            options = options.ssl_mode(mode);
        }
        Ok(Login {
            options: harden(options),
            user,
            password: SecretString::from(password.as_str().to_owned()),
        })
    }
}

/// A grant's login as a connection string, the way the requester (or the gateway) uses it.
fn access_url(s: &Settings, role: &str, password: &str) -> Secret {
    let mut access = Zeroizing::new(format!(
        "postgresql://{role}:{password}@{}:{}/{}?sslmode={}",
        url_host(&s.cfg.host),
        s.cfg.port,
        s.cfg.dbname,
        s.cfg.sslmode
    ));
    // libpq's default is `prefer`; any other choice is written for the requester's client
    // (and the gateway's login) to follow.
    if s.cfg.channel_binding != "prefer" {
        access.push_str("&channel_binding=");
        access.push_str(&s.cfg.channel_binding);
    }
    Secret::new(access.as_bytes().to_vec())
}

/// Options every connection of this adapter gets: no statement logging (statements may set
/// passwords), a name in `pg_stat_activity`, and bounded waits.
fn harden(options: PgConnectOptions) -> PgConnectOptions {
    options
        .application_name("breakglass")
        .options([("lock_timeout", "10s"), ("statement_timeout", "60s")])
        .disable_statement_logging()
}

/// Connects, refusing to wait longer than [`CONNECT_TIMEOUT`].
async fn connect(
    options: &PgConnectOptions,
    s: &Settings,
    who: &str,
    scrub: &[&str],
) -> Result<PgConnection, TargetError> {
    install_crypto_provider();
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(classify(e, s, &format!("connecting as {who}"), scrub)),
        Err(_) => Err(TargetError::Unreachable {
            target: s.label.clone(),
            message: format!(
                "connecting as {who}: no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        }),
    }
}

/// Makes ring the process's rustls provider, once. sqlx builds its TLS client config with ring
/// explicitly, except for `sslmode=verify-ca`: its verifier (`WebPkiServerVerifier::builder`)
/// takes the process-level provider, which rustls can pick by itself only while exactly one
/// provider feature is compiled in; were aws-lc ever unified in, every verify-ca login would
/// panic. Installing fails only when a provider is already installed, which is fine.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Runs one statement built here (identifiers and literals quoted).
async fn execute(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Ends the role: `None` when it does not exist, else (sessions terminated, still running).
async fn end_role(
    conn: &mut PgConnection,
    s: &Settings,
    role: &str,
    scrub: &[&str],
) -> Result<Option<(u64, u64)>, TargetError> {
    let context = format!("ending role `{role}`");
    let fail = |e: sqlx::Error| classify(e, s, &context, scrub);
    let exists = sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_optional(&mut *conn)
        .await
        .map_err(fail)?;
    if exists.is_none() {
        return Ok(None);
    }
    // First NOLOGIN, so no new session starts while the old ones are terminated.
    match execute(conn, &format!("ALTER ROLE {} NOLOGIN", quote_ident(role))).await {
        Ok(()) => {}
        Err(e) if sqlstate(&e).as_deref() == Some("42704") => return Ok(None),
        Err(e) => return Err(fail(e)),
    }
    let mut terminated = 0u64;
    // A login that was past authentication when NOLOGIN committed can still appear: look twice.
    for _ in 0..2 {
        let pids = sessions_of(conn, role).await.map_err(fail)?;
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // False when the backend had already gone, or did not exit within the wait.
            let done = sqlx::query_scalar::<_, bool>("SELECT pg_terminate_backend($1, $2)")
                .bind(pid)
                .bind(TERMINATE_WAIT_MS)
                .fetch_one(&mut *conn)
                .await
                .map_err(fail)?;
            if done {
                terminated += 1;
            }
        }
    }
    let remaining = sessions_of(conn, role).await.map_err(fail)?.len() as u64;
    let mut statements = Vec::new();
    if let OnEnd::Reassign(to) = &s.cfg.on_end {
        statements.push(format!(
            "REASSIGN OWNED BY {} TO {}",
            quote_ident(role),
            quote_ident(to)
        ));
    }
    statements.push(format!("DROP OWNED BY {}", quote_ident(role)));
    statements.push(format!("DROP ROLE {}", quote_ident(role)));
    let result = async {
        let mut tx = conn.begin().await?;
        for sql in &statements {
            execute(&mut tx, sql).await?;
        }
        tx.commit().await
    }
    .await;
    match result {
        Ok(()) => Ok(Some((terminated, remaining))),
        Err(e) if sqlstate(&e).as_deref() == Some("42704") && !exists_now(conn, role).await => {
            Ok(None)
        }
        Err(e) if sqlstate(&e).as_deref() == Some("2BP01") => Err(TargetError::Failed {
            target: s.label.clone(),
            message: format!(
                "role `{role}` can no longer log in and its sessions are terminated, but it \
                 cannot be dropped: {} (objects in other databases must be dropped or \
                 reassigned there; then end again)",
                db_message(&e, scrub)
            ),
        }),
        Err(e) => Err(fail(e)),
    }
}

/// Backend pids of `role` (not ours).
async fn sessions_of(conn: &mut PgConnection, role: &str) -> Result<Vec<i32>, sqlx::Error> {
    sqlx::query_scalar::<_, i32>(
        "SELECT pid FROM pg_stat_activity WHERE usename::text = $1 AND pid <> pg_backend_pid()",
    )
    .bind(role)
    .fetch_all(conn)
    .await
}

async fn exists_now(conn: &mut PgConnection, role: &str) -> bool {
    !matches!(
        sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_optional(conn)
            .await,
        Ok(None)
    )
}

/// The health check lines, from the operator's point of view.
async fn check_roles(
    conn: &mut PgConnection,
    s: &Settings,
) -> Result<Vec<HealthCheck>, sqlx::Error> {
    let mut lines = Vec::new();
    let mut line = |name: &str, ok: bool, detail: String| {
        lines.push(HealthCheck {
            name: name.to_owned(),
            ok,
            detail,
        });
    };
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut *conn)
        .await?;
    let admin_user = &s.cfg.admin_user;
    let grant_role = &s.cfg.grant_role;

    // (oid, can log in, superuser, createrole, expired, valid until)
    let admin = sqlx::query_as::<_, (i64, bool, bool, bool, bool, Option<String>)>(
        "SELECT oid::int8, rolcanlogin, rolsuper, rolcreaterole, \
                COALESCE(rolvaliduntil < now(), false), rolvaliduntil::text \
         FROM pg_roles WHERE rolname = $1",
    )
    .bind(admin_user)
    .fetch_optional(&mut *conn)
    .await?;
    let grant = sqlx::query_as::<_, (i64, bool)>(
        "SELECT oid::int8, rolsuper FROM pg_roles WHERE rolname = $1",
    )
    .bind(grant_role)
    .fetch_optional(&mut *conn)
    .await?;

    match &admin {
        None => line(
            "admin role exists",
            false,
            format!("role `{admin_user}` does not exist"),
        ),
        Some((_, login, sup, createrole, expired, until)) => {
            line("admin role exists", true, format!("role `{admin_user}`"));
            line(
                "admin role can log in",
                *login,
                if *login {
                    "LOGIN".into()
                } else {
                    format!("role `{admin_user}` is NOLOGIN")
                },
            );
            line(
                "admin password not expired",
                !*expired,
                match until {
                    None => "no expiry".into(),
                    Some(t) if *expired => format!("expired at {t}"),
                    Some(t) => format!("valid until {t}"),
                },
            );
            line(
                "admin may create roles",
                *sup || *createrole,
                if *sup {
                    "superuser".into()
                } else if *createrole {
                    "CREATEROLE".into()
                } else {
                    format!("role `{admin_user}` has neither SUPERUSER nor CREATEROLE")
                },
            );
        }
    }
    match &grant {
        None => line(
            "grant role exists",
            false,
            format!("role `{grant_role}` does not exist"),
        ),
        Some(_) => line("grant role exists", true, format!("role `{grant_role}`")),
    }
    if let (Some((admin_oid, _, sup, createrole, _, _)), Some((grant_oid, grant_super))) =
        (&admin, &grant)
    {
        let admin_option: bool = sqlx::query_scalar(
            "SELECT pg_has_role($1::int8::oid, $2::int8::oid, 'MEMBER WITH ADMIN OPTION')",
        )
        .bind(admin_oid)
        .bind(grant_oid)
        .fetch_one(&mut *conn)
        .await?;
        // Before 16, CREATEROLE alone may grant any role but a superuser one.
        let by_createrole = *createrole && version < 160_000 && !*grant_super;
        let ok = *sup || admin_option || by_createrole;
        line(
            "admin may grant the grant role",
            ok,
            if *sup {
                "superuser".into()
            } else if admin_option {
                format!("`{admin_user}` holds ADMIN OPTION on `{grant_role}`")
            } else if by_createrole {
                "CREATEROLE (PostgreSQL before 16)".into()
            } else {
                format!("`{admin_user}` lacks ADMIN OPTION on `{grant_role}`")
            },
        );
    }

    let (op_user, op_super, op_createrole, op_signal) =
        sqlx::query_as::<_, (String, bool, bool, bool)>(
            "SELECT rolname::text, rolsuper, rolcreaterole, \
                    pg_has_role(current_user, 'pg_signal_backend', 'USAGE') \
             FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&mut *conn)
        .await?;
    line(
        "operator may drop roles",
        op_super || op_createrole,
        if op_super {
            "superuser".into()
        } else if op_createrole {
            "CREATEROLE".into()
        } else {
            format!("operator `{op_user}` has neither SUPERUSER nor CREATEROLE")
        },
    );
    line(
        "operator may terminate sessions",
        op_super || op_signal,
        if op_super {
            "superuser".into()
        } else if op_signal {
            "member of pg_signal_backend".into()
        } else {
            format!("operator `{op_user}` is not a member of pg_signal_backend")
        },
    );
    if let OnEnd::Reassign(to) = &s.cfg.on_end {
        let usable: Option<bool> = sqlx::query_scalar(
            "SELECT pg_has_role(current_user, oid, 'USAGE') FROM pg_roles WHERE rolname = $1",
        )
        .bind(to)
        .fetch_optional(&mut *conn)
        .await?;
        line(
            "operator may reassign to the on_end role",
            usable == Some(true),
            match usable {
                None => format!("role `{to}` does not exist"),
                Some(true) => format!("operator has the privileges of `{to}`"),
                Some(false) => format!("operator `{op_user}` lacks the privileges of `{to}`"),
            },
        );
    }
    Ok(lines)
}

/// The SQLSTATE of a database error.
fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// The server's message for a database error (scrubbed), or sqlx's description.
fn db_message(e: &sqlx::Error, scrub: &[&str]) -> String {
    let text = match e {
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    };
    scrub_text(&text, scrub)
}

/// Maps a sqlx error to the port's error, naming what was being done.
fn classify(e: sqlx::Error, s: &Settings, context: &str, scrub: &[&str]) -> TargetError {
    let target = s.label.clone();
    let detail = |text: String| scrub_text(&format!("{context}: {text}"), scrub);
    match &e {
        sqlx::Error::Io(io) => TargetError::Unreachable {
            target,
            message: detail(io.to_string()),
        },
        sqlx::Error::Tls(tls) => TargetError::Unreachable {
            target,
            message: detail(format!("TLS: {tls}")),
        },
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => TargetError::Unreachable {
            target,
            message: detail(e.to_string()),
        },
        sqlx::Error::Configuration(_) => TargetError::Config {
            target,
            message: detail("invalid connection settings".into()),
        },
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = detail(format!("{} (SQLSTATE {code})", db.message()));
            match code.as_str() {
                "28P01" | "28000" => TargetError::Credential { target, message },
                "42501" => TargetError::Privilege { target, message },
                "42710" => TargetError::Conflict { target, message },
                "3D000" => TargetError::Config { target, message },
                // Starting up, shutting down, too many connections.
                "57P03" | "57P01" | "53300" => TargetError::Unreachable { target, message },
                _ => TargetError::Failed { target, message },
            }
        }
        _ => TargetError::Failed {
            target,
            message: detail(e.to_string()),
        },
    }
}

/// The same error with its message rewritten.
fn with_message(e: TargetError, f: impl Fn(&str) -> String) -> TargetError {
    match e {
        TargetError::Unreachable { target, message } => TargetError::Unreachable {
            target,
            message: f(&message),
        },
        TargetError::Credential { target, message } => TargetError::Credential {
            target,
            message: f(&message),
        },
        TargetError::Privilege { target, message } => TargetError::Privilege {
            target,
            message: f(&message),
        },
        TargetError::Conflict { target, message } => TargetError::Conflict {
            target,
            message: f(&message),
        },
        TargetError::Config { target, message } => TargetError::Config {
            target,
            message: f(&message),
        },
        TargetError::Failed { target, message } => TargetError::Failed {
            target,
            message: f(&message),
        },
    }
}

/// Replaces every secret in play (and its URL-encoded form) with `[redacted]`, in case a
/// server or driver message quotes one.
fn scrub_text(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "[redacted]");
    }
    out
}

fn is_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// The pieces of a `postgres://user:password@rest` URL, still percent-encoded.
struct UrlParts<'a> {
    /// `postgres://` or `postgresql://`.
    scheme: &'a str,
    user: &'a str,
    password: Option<&'a str>,
    /// Everything after the `@`: host, port, path, query.
    after_at: &'a str,
}

impl<'a> UrlParts<'a> {
    fn split(url: &'a str) -> Result<UrlParts<'a>, String> {
        let scheme_len = if url.starts_with("postgresql://") {
            "postgresql://".len()
        } else if url.starts_with("postgres://") {
            "postgres://".len()
        } else {
            return Err("is not a postgres:// URL".into());
        };
        let (scheme, rest) = url.split_at(scheme_len);
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let Some(at) = authority.rfind('@') else {
            return Err("names no user (expected postgres://USER:PASSWORD@HOST/DB)".into());
        };
        let userinfo = &authority[..at];
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        Ok(UrlParts {
            scheme,
            user,
            password,
            after_at: &rest[at + 1..],
        })
    }
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out.to_vec()).map_err(|_| "holds a user or password that is not UTF-8".into())
}

/// `"name"` with inner quotes doubled (names are validated plain identifiers anyway).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with inner quotes doubled (`standard_conforming_strings` is on since 9.1, so
/// backslashes are plain characters).
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A host as it appears in a URL: IPv6 addresses in brackets.
fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// What a `PASSWORD '…'` clause carries: a SCRAM-SHA-256 verifier, so the statement (which a
/// server may log, and `pg_stat_statements` keeps) never holds the password. Passwords with
/// characters outside printable ASCII go in clear instead, because the server prepares those
/// with SASLprep, which is not reimplemented here; generated passwords never need it.
fn password_for_statement(password: &str) -> Zeroizing<String> {
    if password.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Zeroizing::new(scram_verifier(password, &salt, SCRAM_ITERATIONS))
    } else {
        Zeroizing::new(password.to_owned())
    }
}

/// PostgreSQL's default SCRAM iteration count.
const SCRAM_ITERATIONS: u32 = 4096;

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (RFC 5802, RFC 7677), the form
/// PostgreSQL stores in `pg_authid` and accepts in `PASSWORD '…'`.
fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    use sha2::{Digest, Sha256};
    let salted = pbkdf2_sha256(password.as_bytes(), salt, iterations);
    let client_key = Zeroizing::new(hmac_sha256(&salted[..], &[b"Client Key"]));
    let stored_key: [u8; 32] = Sha256::digest(&client_key[..]).into();
    let server_key = hmac_sha256(&salted[..], &[b"Server Key"]);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    )
}

/// PBKDF2-HMAC-SHA-256 with one 32-byte block (RFC 8018), SCRAM's `Hi()`.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    let mut u = Zeroizing::new(hmac_sha256(password, &[salt, &1u32.to_be_bytes()]));
    let mut out = Zeroizing::new(*u);
    for _ in 1..iterations {
        *u = hmac_sha256(password, &[&u[..]]);
        for (o, b) in out.iter_mut().zip(u.iter()) {
            *o ^= b;
        }
    }
    out
}

/// HMAC-SHA-256 (RFC 2104) over the concatenation of `parts`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut block = Zeroizing::new([0u8; 64]);
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut ipad = Zeroizing::new([0x36u8; 64]);
    let mut opad = Zeroizing::new([0x5cu8; 64]);
    for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(block.iter()) {
        *i ^= k;
        *o ^= k;
    }
    let mut inner = Sha256::new();
    inner.update(&ipad[..]);
    for part in parts {
        inner.update(part);
    }
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(&opad[..]);
    outer.update(inner);
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than a block is hashed first (RFC 4231 case 6).
        let mac = hmac_sha256(
            &[0xaa; 131],
            &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn scram_verifier_matches_reference() {
        // Computed independently with Python's hashlib.pbkdf2_hmac and hmac.
        let v = scram_verifier("pencil", b"0123456789abcdef", 4096);
        assert_eq!(v, REFERENCE_VERIFIER);
    }

    const REFERENCE_VERIFIER: &str = "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$nQpbZ77WudtqufPwikHXGRt6g2QJ4zns8bZLw273DRM=:jn2amWP1q1h+jgjy0YTO14S6/F02SV7taipOeB7ef20=";

    #[test]
    fn statements_never_carry_generated_passwords() {
        let pw = random_password();
        let shown = password_for_statement(pw.expose_secret());
        assert!(shown.starts_with("SCRAM-SHA-256$4096:"));
        assert!(!shown.contains(pw.expose_secret()));
        // Outside printable ASCII the server's SASLprep applies: sent as is.
        assert_eq!(password_for_statement("pässwort").as_str(), "pässwort");
    }

    #[test]
    fn url_parts_and_percent_decoding() {
        let p = UrlParts::split("postgresql://adm:p%40ss@db.example:5433/app?sslmode=require")
            .expect("valid");
        assert_eq!(p.scheme, "postgresql://");
        assert_eq!(p.user, "adm");
        assert_eq!(p.password, Some("p%40ss"));
        assert_eq!(p.after_at, "db.example:5433/app?sslmode=require");
        assert_eq!(percent_decode("p%40ss%").expect("utf-8"), "p@ss%");
        assert_eq!(percent_decode("%zz%4").expect("utf-8"), "%zz%4");
        assert!(UrlParts::split("postgres://db.example/app").is_err());
        assert!(UrlParts::split("mysql://a:b@c/d").is_err());
        // An `@` in the path does not count as the user separator.
        let p = UrlParts::split("postgres://u:x@h/db?application_name=a@b").expect("valid");
        assert_eq!((p.user, p.password), ("u", Some("x")));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(url_host("::1"), "[::1]");
        assert_eq!(url_host("db"), "db");
    }

    #[test]
    fn scrubbing_hides_secrets() {
        assert_eq!(
            scrub_text("bad hunter22 here", &["hunter22", "abc"]),
            "bad [redacted] here"
        );
    }
}
