//! Typed target settings, read from a procedure's `target.details` and validated with the
//! procedure, so an adapter never meets a missing host or a malformed list at 2 a.m.
//!
//! `details` stays a string map in the file format (one shape for every kind, easy to diff);
//! list values are comma-separated (`principals: root, ops`), MariaDB privilege lists are
//! `;`-separated grant clauses (`SELECT, INSERT ON app.*; PROCESS ON *.*`).

use std::collections::BTreeMap;

use crate::procedure::{Target, TargetKind};

/// What to do with objects the ephemeral PostgreSQL role created, when it is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnEnd {
    /// `DROP OWNED BY` the ephemeral role (default: the grant leaves nothing behind).
    Drop,
    /// `REASSIGN OWNED BY` the ephemeral role `TO` this role, then drop the rest.
    Reassign(String),
}

/// A PostgreSQL target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresTarget {
    /// Host name or address.
    pub host: String,
    /// Port (default 5432).
    pub port: u16,
    /// Database the requester's connection string points at.
    pub dbname: String,
    /// The emergency administrative role whose password is the sealed credential.
    pub admin_user: String,
    /// The role the ephemeral login role becomes a member of.
    pub grant_role: String,
    /// The role automated drills grant instead (same shape, no data privileges), so the
    /// drill credential, which the server's drill identities open, cannot reach the data.
    pub drill_grant_role: Option<String>,
    /// What happens to objects the ephemeral role owns at the end.
    pub on_end: OnEnd,
    /// Name of the server-side connection (targets file) holding the operator credential.
    pub connection: String,
    /// Privileged roles expected to exist (discovery flags the others).
    pub inventory: Vec<String>,
    /// `sslmode` for connections (`disable`, `prefer`, `require`…; default `prefer`).
    pub sslmode: String,
    /// `channel_binding` for the grant's SCRAM logins (libpq's meaning: `disable`, `prefer`
    /// (default), `require`): the gateway's login upstream, and the requester's connection
    /// string. `require` refuses any login not bound to the TLS session
    /// (SCRAM-SHA-256-PLUS), so a man in the middle cannot relay it even where `sslmode`
    /// checks no certificate; it needs an `sslmode` that uses TLS.
    pub channel_binding: String,
    /// How the requester reaches the database: with the grant's own login (`direct`,
    /// default), or only through the server's credential-injection gateway (`proxy`).
    pub access: Access,
    /// Connections one gateway token may open (`proxy` only; default 1).
    pub gateway_connections: u32,
    /// Statements the gateway refuses (`proxy` only), e.g. `DROP DATABASE; ALTER SYSTEM`:
    /// upper-case keyword sequences matched as whole words anywhere in a statement.
    pub refuse: Vec<String>,
    /// A gateway session that sends and receives nothing for this long is closed (`proxy`
    /// only; default: never), e.g. `15m`; from 1 s to 24 h.
    pub gateway_idle_timeout: Option<std::time::Duration>,
}

/// How a requester reaches a database target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The requester receives the grant's own login (an ephemeral role and its password).
    Direct,
    /// The requester receives a gateway token; the gateway logs in upstream with the grant's
    /// login, which the requester never sees, and records every statement.
    Proxy,
}

/// A MariaDB target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariadbTarget {
    /// Host name or address.
    pub host: String,
    /// Port (default 3306).
    pub port: u16,
    /// The emergency administrative user whose password is the sealed credential.
    pub admin_user: String,
    /// Host part of the administrative account (default `%`).
    pub admin_host: String,
    /// Grant clauses for the ephemeral user, e.g. `SELECT, INSERT ON app.*`.
    pub grants: Vec<String>,
    /// Name of the server-side connection (targets file) holding the operator credential.
    pub connection: String,
    /// Privileged accounts (`user@host` or `user`) expected to exist.
    pub inventory: Vec<String>,
    /// Database holding the backstop events (default `breakglass`; created at grant time).
    pub backstop_db: String,
}

/// SSH hosts trusting a certificate authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Principals written into the certificate (the users it may log in as).
    pub principals: Vec<String>,
    /// `host:port` of hosts trusting the CA, for health checks.
    pub hosts: Vec<String>,
    /// Where early closes write the key revocation list the hosts read (`RevokedKeys`).
    pub krl_path: Option<String>,
    /// The CA's public key (`ssh-ed25519 …`), which the hosts list in `TrustedUserCAKeys`.
    pub ca_public_key: Option<String>,
}

/// An emergency account managed through an HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// Name of the server-side connection (targets file) holding the calls and operator token.
    pub connection: String,
    /// The emergency account's name, available to the call templates as `{{account}}`.
    pub account: String,
}

/// A target's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetConfig {
    /// A static secret: nothing to configure.
    Secret,
    /// A credential held outside breakglass (`custody` section): nothing to configure.
    External,
    /// PostgreSQL.
    Postgres(PostgresTarget),
    /// MariaDB.
    Mariadb(MariadbTarget),
    /// SSH certificates.
    Ssh(SshTarget),
    /// HTTP-managed account.
    Http(HttpTarget),
}

/// A problem with one detail: (`target.details.FIELD`, message).
pub type DetailProblem = (String, String);

impl Target {
    /// The typed settings of this target, or every problem with its details.
    pub fn config(&self) -> Result<TargetConfig, Vec<DetailProblem>> {
        let mut d = Details {
            map: &self.details,
            problems: Vec::new(),
            used: Vec::new(),
        };
        let config = match self.kind {
            TargetKind::Secret => TargetConfig::Secret,
            TargetKind::External => TargetConfig::External,
            TargetKind::Postgres => {
                let on_end = match d.optional("on_end").as_deref() {
                    None | Some("drop") => OnEnd::Drop,
                    Some(other) => match other.strip_prefix("reassign:") {
                        Some(role) if ident_ok(role.trim()) => OnEnd::Reassign(role.trim().into()),
                        _ => {
                            d.problem(
                                "on_end",
                                "must be `drop` or `reassign:ROLE` (a plain role name)".into(),
                            );
                            OnEnd::Drop
                        }
                    },
                };
                TargetConfig::Postgres(PostgresTarget {
                    host: d.required("host"),
                    port: d.port(5432),
                    dbname: d.ident("dbname"),
                    admin_user: d.ident("admin_user"),
                    grant_role: d.ident("grant_role"),
                    drill_grant_role: match d.optional("drill_grant_role") {
                        Some(r) if ident_ok(r.trim()) => Some(r.trim().to_owned()),
                        Some(_) => {
                            d.problem("drill_grant_role", "must be a plain role name".into());
                            None
                        }
                        None => None,
                    },
                    on_end,
                    connection: d.required("connection"),
                    inventory: d.list("inventory"),
                    sslmode: d.sslmode(),
                    channel_binding: d.channel_binding(),
                    access: match d.optional("access").as_deref() {
                        None | Some("direct") => Access::Direct,
                        Some("proxy") => Access::Proxy,
                        Some(other) => {
                            d.problem("access", format!("`{other}` must be `direct` or `proxy`"));
                            Access::Direct
                        }
                    },
                    gateway_connections: match d.optional("gateway_connections") {
                        None => 1,
                        Some(n) => match n.parse::<u32>() {
                            Ok(n @ 1..=1000) => n,
                            _ => {
                                d.problem(
                                    "gateway_connections",
                                    format!("`{n}` must be a number from 1 to 1000"),
                                );
                                1
                            }
                        },
                    },
                    refuse: d.refuse(),
                    gateway_idle_timeout: match d.optional("gateway_idle_timeout") {
                        None => None,
                        Some(t) => match crate::procedure::parse_duration(&t) {
                            Ok(t)
                                if (std::time::Duration::from_secs(1)
                                    ..=std::time::Duration::from_secs(24 * 3600))
                                    .contains(&t) =>
                            {
                                Some(t)
                            }
                            Ok(_) => {
                                d.problem(
                                    "gateway_idle_timeout",
                                    format!("`{t}` must be from 1s to 24h"),
                                );
                                None
                            }
                            Err(e) => {
                                d.problem(
                                    "gateway_idle_timeout",
                                    format!("`{t}`: {e} (a duration such as `15m`)"),
                                );
                                None
                            }
                        },
                    },
                })
            }
            TargetKind::Mariadb => {
                let grants: Vec<String> = d
                    .optional("grants")
                    .map(|g| {
                        g.split(';')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default();
                if grants.is_empty() {
                    d.problem(
                        "grants",
                        "is required: `;`-separated clauses like `SELECT, INSERT ON app.*`".into(),
                    );
                }
                for g in &grants {
                    if !grant_clause_ok(g) {
                        d.problem(
                            "grants",
                            format!("`{g}` is not a clause like `SELECT, INSERT ON app.*` (privileges, ON, a db.table pattern)"),
                        );
                    }
                }
                TargetConfig::Mariadb(MariadbTarget {
                    host: d.required("host"),
                    port: d.port(3306),
                    admin_user: d.ident("admin_user"),
                    admin_host: d.optional("admin_host").unwrap_or_else(|| "%".into()),
                    grants,
                    connection: d.required("connection"),
                    inventory: d.list("inventory"),
                    backstop_db: match d.optional("backstop_db") {
                        Some(db) if ident_ok(&db) => db,
                        Some(db) => {
                            d.problem(
                                "backstop_db",
                                format!("`{db}` is not a plain database name"),
                            );
                            db
                        }
                        None => "breakglass".into(),
                    },
                })
            }
            TargetKind::Ssh => {
                let principals = d.list("principals");
                if principals.is_empty() {
                    d.problem(
                        "principals",
                        "is required: the users the certificate may log in as".into(),
                    );
                }
                for p in &principals {
                    if !ident_ok(p) {
                        d.problem("principals", format!("`{p}` is not a plain user name"));
                    }
                }
                let ca_public_key = d.optional("ca_public_key");
                if let Some(k) = &ca_public_key
                    && !k.starts_with("ssh-ed25519 ")
                {
                    d.problem(
                        "ca_public_key",
                        "must be an `ssh-ed25519 …` public key".into(),
                    );
                }
                TargetConfig::Ssh(SshTarget {
                    principals,
                    hosts: d.list("hosts"),
                    krl_path: d.optional("krl_path"),
                    ca_public_key,
                })
            }
            TargetKind::Http => TargetConfig::Http(HttpTarget {
                connection: d.required("connection"),
                account: d.required("account"),
            }),
        };
        // A secret's details only describe where it belongs (`host: vault-01`), an external
        // one's the account it opens (`account: 123456789012`): free-form.
        for key in self
            .details
            .keys()
            .filter(|_| !matches!(self.kind, TargetKind::Secret | TargetKind::External))
        {
            if !d.used.contains(&key.as_str()) {
                d.problems.push((
                    format!("target.details.{key}"),
                    format!(
                        "unknown for a `{}` target (known: {})",
                        self.kind.as_str(),
                        known_details(self.kind).join(", ")
                    ),
                ));
            }
        }
        if d.problems.is_empty() {
            Ok(config)
        } else {
            Err(d.problems)
        }
    }
}

/// The detail names a kind accepts.
pub fn known_details(kind: TargetKind) -> &'static [&'static str] {
    match kind {
        // Free-form, non-secret facts about the account (its id, the console URL).
        TargetKind::Secret | TargetKind::External => &[],
        TargetKind::Postgres => &[
            "host",
            "port",
            "dbname",
            "admin_user",
            "grant_role",
            "on_end",
            "connection",
            "inventory",
            "sslmode",
            "channel_binding",
            "access",
            "gateway_connections",
            "refuse",
            "gateway_idle_timeout",
        ],
        TargetKind::Mariadb => &[
            "host",
            "port",
            "admin_user",
            "admin_host",
            "grants",
            "connection",
            "inventory",
            "backstop_db",
        ],
        TargetKind::Ssh => &["principals", "hosts", "krl_path", "ca_public_key"],
        TargetKind::Http => &["connection", "account"],
    }
}

struct Details<'a> {
    map: &'a BTreeMap<String, String>,
    problems: Vec<DetailProblem>,
    used: Vec<&'static str>,
}

impl Details<'_> {
    fn problem(&mut self, field: &str, message: String) {
        self.problems
            .push((format!("target.details.{field}"), message));
    }

    fn optional(&mut self, field: &'static str) -> Option<String> {
        self.used.push(field);
        self.map
            .get(field)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn required(&mut self, field: &'static str) -> String {
        match self.optional(field) {
            Some(v) => v,
            None => {
                self.problem(field, "is required".into());
                String::new()
            }
        }
    }

    /// A required SQL identifier (role, user or database name).
    fn ident(&mut self, field: &'static str) -> String {
        let v = self.required(field);
        if !v.is_empty() && !ident_ok(&v) {
            self.problem(
                field,
                format!("`{v}` must be 1-63 characters of letters, digits, `_` and `-`"),
            );
        }
        v
    }

    fn port(&mut self, default: u16) -> u16 {
        match self.optional("port") {
            None => default,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => {
                    self.problem("port", format!("`{p}` is not a port number"));
                    default
                }
            },
        }
    }

    fn list(&mut self, field: &'static str) -> Vec<String> {
        self.optional(field)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `;`-separated statement patterns: words of letters and `_`, kept upper-case with single
    /// spaces, so matching is a whole-word comparison.
    fn refuse(&mut self) -> Vec<String> {
        let Some(v) = self.optional("refuse") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for pattern in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            if !pattern
                .chars()
                .all(|c| c.is_ascii_alphabetic() || c == '_' || c.is_ascii_whitespace())
            {
                self.problem(
                    "refuse",
                    format!(
                        "`{pattern}` must be SQL keywords (letters, `_` and spaces), e.g. `DROP DATABASE`"
                    ),
                );
                continue;
            }
            out.push(
                pattern
                    .split_ascii_whitespace()
                    .map(str::to_ascii_uppercase)
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        out
    }

    fn channel_binding(&mut self) -> String {
        let v = self
            .optional("channel_binding")
            .unwrap_or_else(|| "prefer".into());
        const MODES: [&str; 3] = ["disable", "prefer", "require"];
        if !MODES.contains(&v.as_str()) {
            self.problem(
                "channel_binding",
                format!("`{v}` is not one of {}", MODES.join(", ")),
            );
        } else if v == "require"
            && matches!(
                self.optional("sslmode").as_deref(),
                None | Some("disable" | "allow" | "prefer")
            )
        {
            // Binding needs TLS; with `allow`/`prefer` a downgrade to plaintext would make
            // every login fail instead of being refused up front.
            self.problem(
                "channel_binding",
                "`require` needs TLS: set sslmode to require, verify-ca or verify-full".into(),
            );
        }
        v
    }

    fn sslmode(&mut self) -> String {
        let v = self.optional("sslmode").unwrap_or_else(|| "prefer".into());
        const MODES: [&str; 6] = [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ];
        if !MODES.contains(&v.as_str()) {
            self.problem(
                "sslmode",
                format!("`{v}` is not one of {}", MODES.join(", ")),
            );
        }
        v
    }
}

/// A plain identifier, safe to quote into SQL: letters, digits, `_`, `-`; 1-63 characters.
pub fn ident_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `PRIV[, PRIV…] ON db.table` with plain words and `*` only: no quotes, semicolons or
/// comments can reach the statement.
fn grant_clause_ok(clause: &str) -> bool {
    let upper = clause.to_ascii_uppercase();
    let Some((privs, object)) = upper.split_once(" ON ") else {
        return false;
    };
    let privs_ok = privs.split(',').all(|p| {
        let p = p.trim();
        !p.is_empty() && p.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')
    });
    let object = object.trim();
    let object_ok = !object.is_empty()
        && object.split('.').count() == 2
        && object
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '*' || c == '.');
    privs_ok && object_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: TargetKind, pairs: &[(&str, &str)]) -> Target {
        Target {
            kind,
            details: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn postgres_defaults_and_required_fields() {
        let t = target(
            TargetKind::Postgres,
            &[
                ("host", "127.0.0.1"),
                ("dbname", "app"),
                ("admin_user", "bg_admin"),
                ("grant_role", "app_owner"),
                ("connection", "pg-main"),
                ("inventory", "postgres, bg_admin"),
            ],
        );
        let TargetConfig::Postgres(pg) = t.config().expect("valid") else {
            panic!("kind")
        };
        assert_eq!(pg.port, 5432);
        assert_eq!(pg.on_end, OnEnd::Drop);
        assert_eq!(pg.inventory, ["postgres", "bg_admin"]);
        let e = target(TargetKind::Postgres, &[("host", "h"), ("port", "99999")])
            .config()
            .expect_err("invalid");
        let fields: Vec<&str> = e.iter().map(|(f, _)| f.as_str()).collect();
        assert!(fields.contains(&"target.details.port"), "{e:?}");
        assert!(fields.contains(&"target.details.dbname"), "{e:?}");
        assert!(fields.contains(&"target.details.connection"), "{e:?}");
    }

    #[test]
    fn the_gateway_idle_timeout_is_a_duration_from_a_second_to_a_day() {
        let with = |idle: &str| {
            target(
                TargetKind::Postgres,
                &[
                    ("host", "127.0.0.1"),
                    ("dbname", "app"),
                    ("admin_user", "bg_admin"),
                    ("grant_role", "app_owner"),
                    ("connection", "pg-main"),
                    ("access", "proxy"),
                    ("gateway_idle_timeout", idle),
                ],
            )
            .config()
        };
        let Ok(TargetConfig::Postgres(pg)) = with("15m") else {
            panic!("valid")
        };
        assert_eq!(
            pg.gateway_idle_timeout,
            Some(std::time::Duration::from_secs(900))
        );
        for (bad, says) in [
            ("soon", "a duration such as `15m`"),
            ("500ms", "from 1s to 24h"),
            ("2d", "from 1s to 24h"),
        ] {
            let e = with(bad).expect_err(bad);
            assert!(
                e.iter()
                    .any(|(f, m)| f == "target.details.gateway_idle_timeout" && m.contains(says)),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn channel_binding_is_checked_against_sslmode() {
        let base = [
            ("host", "h"),
            ("dbname", "app"),
            ("admin_user", "a"),
            ("grant_role", "r"),
            ("connection", "c"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            target(TargetKind::Postgres, &pairs).config()
        };
        let Ok(TargetConfig::Postgres(pg)) = with(&[]) else {
            panic!("valid")
        };
        assert_eq!(pg.channel_binding, "prefer", "libpq's default");
        let Ok(TargetConfig::Postgres(pg)) =
            with(&[("sslmode", "verify-full"), ("channel_binding", "require")])
        else {
            panic!("valid")
        };
        assert_eq!(pg.channel_binding, "require");
        for sslmode in ["disable", "allow", "prefer"] {
            let e = with(&[("sslmode", sslmode), ("channel_binding", "require")])
                .expect_err("binding needs TLS");
            assert_eq!(e[0].0, "target.details.channel_binding", "{e:?}");
            assert!(e[0].1.contains("needs TLS"), "{e:?}");
        }
        let e = with(&[("channel_binding", "always")]).expect_err("unknown");
        assert_eq!(e[0].0, "target.details.channel_binding");
        assert!(e[0].1.contains("`always`"), "{e:?}");
    }

    #[test]
    fn identifiers_cannot_carry_sql() {
        let e = target(
            TargetKind::Postgres,
            &[
                ("host", "h"),
                ("dbname", "app"),
                ("admin_user", "x\"; DROP ROLE postgres; --"),
                ("grant_role", "r"),
                ("connection", "c"),
            ],
        )
        .config()
        .expect_err("refused");
        assert_eq!(e[0].0, "target.details.admin_user");
        let e = target(
            TargetKind::Mariadb,
            &[
                ("host", "h"),
                ("admin_user", "root"),
                ("grants", "SELECT ON app.*; DROP USER root"),
                ("connection", "c"),
            ],
        )
        .config()
        .expect_err("refused");
        assert!(e[0].1.contains("DROP USER root"), "{e:?}");
    }

    #[test]
    fn unknown_details_are_named() {
        let e = target(
            TargetKind::Ssh,
            &[("principals", "root"), ("colour", "red")],
        )
        .config()
        .expect_err("unknown");
        assert_eq!(e[0].0, "target.details.colour");
        assert!(e[0].1.contains("principals"), "{e:?}");
    }

    #[test]
    fn grant_clauses() {
        assert!(grant_clause_ok("SELECT, INSERT ON app.*"));
        assert!(grant_clause_ok("ALL PRIVILEGES ON *.*"));
        assert!(!grant_clause_ok("SELECT ON app.* TO 'x'@'%'"));
        assert!(!grant_clause_ok("SELECT ON `app`.*"));
        assert!(!grant_clause_ok("SELECT"));
    }
}
