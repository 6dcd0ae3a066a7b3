//! The targets file: the server-side connections that hold operator credentials and HTTP
//! call templates. Procedures name a connection (`target.details.connection`); secrets are
//! never in a procedure file.
//!
//! ```yaml
//! connections:
//!   - name: pg-main
//!     kind: postgres
//!     operator_url: {env: BG_PG_OPERATOR_URL}   # postgres://bg_operator:…@db:5432/app
//!   - name: maria-main
//!     kind: mariadb
//!     operator_url: {file: /run/secrets/maria-operator}
//!   - name: idp
//!     kind: http
//!     base_url: https://idp.example.com
//!     operator_token: {env: IDP_OPERATOR_TOKEN}
//!     enable:  {method: POST, path: "/api/users/{{account}}/enable", body: '{"password": "{{password}}"}'}
//!     disable: {method: POST, path: "/api/users/{{account}}/disable"}
//!     check:   {method: GET, path: "/api/users/{{account}}"}
//!     access: "Sign in as {{account}} with {{password}} until {{deadline}}"
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use breakglass_alerts::SecretSpec;
use secrecy::SecretString;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

/// Largest targets file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 256 * 1024;

/// Template variables the HTTP calls and the access text may use.
pub const TEMPLATE_VARS: [&str; 6] = [
    "account",
    "break_id",
    "requester",
    "deadline",
    "deadline_unix",
    "password",
];

/// A validated targets file.
#[derive(Debug, Clone, Default)]
pub struct TargetsConfig {
    /// Connections, in file order; names are unique.
    pub connections: Vec<Connection>,
}

/// One named connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Name, referenced by procedures as `target.details.connection`.
    pub name: String,
    /// Kind-specific settings.
    pub settings: ConnectionSettings,
}

/// Settings of one connection, by kind.
#[derive(Debug, Clone)]
pub enum ConnectionSettings {
    /// A PostgreSQL operator connection URL (secret: it holds a password).
    Postgres {
        /// `postgres://user:password@host:port/db`.
        operator_url: SecretString,
    },
    /// A MariaDB operator connection URL.
    Mariadb {
        /// `mysql://user:password@host:port`.
        operator_url: SecretString,
    },
    /// An HTTP API managing an emergency account.
    Http(HttpConnection),
}

impl ConnectionSettings {
    /// The kind as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectionSettings::Postgres { .. } => "postgres",
            ConnectionSettings::Mariadb { .. } => "mariadb",
            ConnectionSettings::Http(_) => "http",
        }
    }
}

/// An HTTP-managed account's API.
#[derive(Debug, Clone)]
pub struct HttpConnection {
    /// Base URL, no trailing slash.
    pub base_url: String,
    /// Bearer token for `disable` and `check` (the sealed credential is the bearer token for
    /// `enable`).
    pub operator_token: SecretString,
    /// Enables the account at grant time (sent with the sealed credential).
    pub enable: HttpCall,
    /// Disables the account at the end (sent with the operator token).
    pub disable: HttpCall,
    /// Checks the account without unsealing (sent with the operator token).
    pub check: Option<HttpCall>,
    /// What the requester receives, templated (usually names the account and `{{password}}`).
    pub access: String,
    /// Per-call timeout.
    pub timeout: Duration,
}

/// One templated HTTP call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// Path under the base URL, templated.
    pub path: String,
    /// JSON body, templated (values are JSON-escaped when substituted).
    pub body: Option<String>,
    /// Status codes that mean success (default: any 2xx).
    pub expect: Vec<u16>,
}

impl TargetsConfig {
    /// The operator URLs of every connection of `kind` (`postgres` or `mariadb`), by name.
    pub fn operator_urls(&self, kind: &str) -> HashMap<String, SecretString> {
        self.connections
            .iter()
            .filter_map(|c| match &c.settings {
                ConnectionSettings::Postgres { operator_url } if kind == "postgres" => {
                    Some((c.name.clone(), operator_url.clone()))
                }
                ConnectionSettings::Mariadb { operator_url } if kind == "mariadb" => {
                    Some((c.name.clone(), operator_url.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Every HTTP connection, by name.
    pub fn http_connections(&self) -> HashMap<String, HttpConnection> {
        self.connections
            .iter()
            .filter_map(|c| match &c.settings {
                ConnectionSettings::Http(h) => Some((c.name.clone(), h.clone())),
                _ => None,
            })
            .collect()
    }
}

/// A problem in a targets file, with its position. Never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
    /// Dotted path of the field, e.g. `connections[1].operator_url`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.field, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Parses and validates a targets file, resolving secrets through `env` (`{env: VAR}`) or by
/// reading files (`{file: PATH}`). Returns every problem found.
pub fn load(
    file_name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TargetsConfig, Vec<ConfigError>> {
    let err = |loc: Option<Location>, field: String, message: String| {
        let (line, column) = loc.map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        ConfigError {
            file: file_name.to_owned(),
            line,
            column,
            field,
            message,
        }
    };
    if text.len() > MAX_FILE_BYTES {
        return Err(vec![err(
            None,
            "(file)".into(),
            format!("larger than {MAX_FILE_BYTES} bytes"),
        )]);
    }
    let spec: FileSpec = match serde_saphyr::from_str(text) {
        Ok(spec) => spec,
        Err(e) => {
            let loc = e.location();
            let message = e.without_snippet().to_string();
            let line = message.lines().next().unwrap_or_default().trim().to_owned();
            return Err(vec![err(loc, "(document)".into(), line)]);
        }
    };
    let mut errors = Vec::new();
    let mut connections = Vec::new();
    let mut names = HashSet::new();
    for (i, entry) in spec.connections.iter().enumerate() {
        let at = Some(entry.referenced);
        let c = &entry.value;
        let path = |f: &str| format!("connections[{i}].{f}");
        let name = c.name.value.trim().to_owned();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "-_.".contains(ch))
        {
            errors.push(err(
                Some(c.name.referenced),
                path("name"),
                "must be 1-64 characters of a-z, 0-9, '-', '_' or '.'".into(),
            ));
        } else if !names.insert(name.clone()) {
            errors.push(err(
                Some(c.name.referenced),
                path("name"),
                format!("connection `{name}` appears twice in this file"),
            ));
        }
        let kind = c.kind.value.trim();
        let allowed: &[&str] = match kind {
            "postgres" | "mariadb" => &["operator_url"],
            "http" => &[
                "base_url",
                "operator_token",
                "enable",
                "disable",
                "check",
                "access",
                "timeout",
            ],
            other => {
                errors.push(err(
                    Some(c.kind.referenced),
                    path("kind"),
                    format!("unknown kind `{other}` (expected postgres, mariadb or http)"),
                ));
                continue;
            }
        };
        for (field, loc) in c.present_fields() {
            if !allowed.contains(&field) {
                errors.push(err(
                    Some(loc),
                    path(field),
                    format!("not a setting of a `{kind}` connection"),
                ));
            }
        }
        let mut secret = |s: &Option<Spanned<SecretSpec>>, field: &str| match s {
            None => {
                errors.push(err(at, path(field), "missing (required)".into()));
                None
            }
            Some(s) => match s.value.resolve(env) {
                Ok(v) => Some(v),
                Err(m) => {
                    errors.push(err(Some(s.referenced), path(field), m));
                    None
                }
            },
        };
        let settings = match kind {
            "postgres" => secret(&c.operator_url, "operator_url")
                .map(|operator_url| ConnectionSettings::Postgres { operator_url }),
            "mariadb" => secret(&c.operator_url, "operator_url")
                .map(|operator_url| ConnectionSettings::Mariadb { operator_url }),
            _ => {
                let token = secret(&c.operator_token, "operator_token");
                http_settings(c, &path, at, &mut errors, &err)
                    .zip(token)
                    .map(|(mut h, t)| {
                        h.operator_token = t;
                        ConnectionSettings::Http(h)
                    })
            }
        };
        if let Some(settings) = settings {
            connections.push(Connection { name, settings });
        }
    }
    if errors.is_empty() {
        Ok(TargetsConfig { connections })
    } else {
        Err(errors)
    }
}

type ErrFn<'a> = dyn Fn(Option<Location>, String, String) -> ConfigError + 'a;

fn http_settings(
    c: &ConnectionSpec,
    path: &dyn Fn(&str) -> String,
    at: Option<Location>,
    errors: &mut Vec<ConfigError>,
    err: &ErrFn<'_>,
) -> Option<HttpConnection> {
    let before = errors.len();
    let base_url = match &c.base_url {
        Some(u) => {
            let v = u.value.trim().trim_end_matches('/').to_owned();
            if !(v.starts_with("http://") || v.starts_with("https://"))
                || v.contains(char::is_whitespace)
            {
                errors.push(err(
                    Some(u.referenced),
                    path("base_url"),
                    "must be an http:// or https:// URL".into(),
                ));
            }
            v
        }
        None => {
            errors.push(err(at, path("base_url"), "missing (required)".into()));
            String::new()
        }
    };
    let mut call =
        |s: &Option<Spanned<CallSpec>>, field: &str, required: bool| -> Option<HttpCall> {
            let Some(s) = s else {
                if required {
                    errors.push(err(at, path(field), "missing (required)".into()));
                }
                return None;
            };
            let method = s.value.method.trim().to_ascii_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                errors.push(err(
                    Some(s.referenced),
                    path(&format!("{field}.method")),
                    format!("`{method}` is not one of GET, POST, PUT, PATCH, DELETE"),
                ));
            }
            if !s.value.path.starts_with('/') {
                errors.push(err(
                    Some(s.referenced),
                    path(&format!("{field}.path")),
                    "must start with `/`".into(),
                ));
            }
            for text in std::iter::once(&s.value.path).chain(s.value.body.iter()) {
                if let Err(m) = check_template(text) {
                    errors.push(err(Some(s.referenced), path(field), m));
                }
            }
            Some(HttpCall {
                method,
                path: s.value.path.clone(),
                body: s.value.body.clone(),
                expect: s.value.expect.clone(),
            })
        };
    let enable = call(&c.enable, "enable", true);
    let disable = call(&c.disable, "disable", true);
    let check = call(&c.check, "check", false);
    let access = match &c.access {
        Some(a) => {
            if let Err(m) = check_template(&a.value) {
                errors.push(err(Some(a.referenced), path("access"), m));
            }
            a.value.clone()
        }
        None => "account {{account}} password {{password}} until {{deadline}}".into(),
    };
    let timeout = match &c.timeout {
        Some(t) => match humantime::parse_duration(t.value.trim()) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                errors.push(err(
                    Some(t.referenced),
                    path("timeout"),
                    format!("`{}` is not a duration like 10s", t.value.trim()),
                ));
                Duration::from_secs(10)
            }
        },
        None => Duration::from_secs(10),
    };
    if errors.len() > before {
        return None;
    }
    Some(HttpConnection {
        base_url,
        operator_token: SecretString::from(String::new()),
        enable: enable?,
        disable: disable?,
        check,
        access,
        timeout,
    })
}

/// Every `{{name}}` in `text` is a known variable and braces are balanced.
pub fn check_template(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a `{{` is never closed".to_owned())?;
        let name = after[..end].trim();
        if !TEMPLATE_VARS.contains(&name) {
            return Err(format!(
                "unknown template variable `{{{{{name}}}}}` (known: {})",
                TEMPLATE_VARS.join(", ")
            ));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    connections: Vec<Spanned<ConnectionSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionSpec {
    name: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    operator_url: Option<Spanned<SecretSpec>>,
    #[serde(default)]
    base_url: Option<Spanned<String>>,
    #[serde(default)]
    operator_token: Option<Spanned<SecretSpec>>,
    #[serde(default)]
    enable: Option<Spanned<CallSpec>>,
    #[serde(default)]
    disable: Option<Spanned<CallSpec>>,
    #[serde(default)]
    check: Option<Spanned<CallSpec>>,
    #[serde(default)]
    access: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
}

impl ConnectionSpec {
    fn present_fields(&self) -> Vec<(&'static str, Location)> {
        fn loc<T>(s: &Option<Spanned<T>>) -> Option<Location> {
            s.as_ref().map(|s| s.referenced)
        }
        [
            ("operator_url", loc(&self.operator_url)),
            ("base_url", loc(&self.base_url)),
            ("operator_token", loc(&self.operator_token)),
            ("enable", loc(&self.enable)),
            ("disable", loc(&self.disable)),
            ("check", loc(&self.check)),
            ("access", loc(&self.access)),
            ("timeout", loc(&self.timeout)),
        ]
        .into_iter()
        .filter_map(|(f, l)| l.map(|l| (f, l)))
        .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallSpec {
    method: String,
    path: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    expect: Vec<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(k: &str) -> Option<String> {
        (k == "PG_OP").then(|| "postgres://op:pw@127.0.0.1/app".to_owned())
    }

    #[test]
    fn valid_file() {
        let text = "connections:\n  - name: pg\n    kind: postgres\n    operator_url: {env: PG_OP}\n  - name: idp\n    kind: http\n    base_url: http://127.0.0.1:9/\n    operator_token: tok\n    enable: {method: post, path: \"/u/{{account}}/on\", body: '{\"p\": \"{{password}}\"}'}\n    disable: {method: POST, path: \"/u/{{account}}/off\"}\n";
        let c = load("t.yaml", text, &env).expect("valid");
        assert_eq!(c.connections.len(), 2);
        let urls = c.operator_urls("postgres");
        assert_eq!(urls["pg"].expose_secret(), "postgres://op:pw@127.0.0.1/app");
        let http = &c.http_connections()["idp"];
        assert_eq!(http.base_url, "http://127.0.0.1:9");
        assert_eq!(http.enable.method, "POST");
        assert_eq!(http.operator_token.expose_secret(), "tok");
    }

    #[test]
    fn errors_name_line_and_field_without_secrets() {
        let text = "connections:\n  - name: pg\n    kind: postgres\n    operator_url: {env: MISSING}\n  - name: idp\n    kind: http\n    base_url: ftp://x\n    operator_token: s3cr3t-token\n    enable: {method: POST, path: \"/u/{{acount}}\"}\n    disable: {method: POST, path: \"/off\"}\n    operator_url: postgres://a:hunter2@h/db\n";
        let e = load("t.yaml", text, &env).expect_err("invalid");
        let shown: Vec<String> = e.iter().map(ToString::to_string).collect();
        let all = shown.join("\n");
        assert!(all.contains("t.yaml:4:19: connections[0].operator_url: environment variable `MISSING` is not set"), "{all}");
        assert!(
            all.contains("connections[1].base_url: must be an http"),
            "{all}"
        );
        assert!(
            all.contains("unknown template variable `{{acount}}`"),
            "{all}"
        );
        assert!(
            all.contains("connections[1].operator_url: not a setting of a `http` connection"),
            "{all}"
        );
        assert!(!all.contains("hunter2") && !all.contains("s3cr3t"), "{all}");
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let text = "connections:\n  - name: pg\n    kind: postgres\n    operator_url: postgres://op:hunter2@h/db\n";
        let c = load("t.yaml", text, &env).expect("valid");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
