//! HTTP-managed emergency accounts (an identity provider's emergency account, a cloud console
//! user): templated calls of a targets-file connection enable the account at grant time with
//! the sealed admin API token, and disable it at the end with the connection's operator token.
//!
//! Templates (`config::TEMPLATE_VARS`) are rendered per call: in paths every substituted value
//! is percent-encoded (a `/` or `?` in a value cannot leave its path segment), in JSON bodies
//! it is JSON-string-escaped (the template puts it inside quotes; the rendered body must be
//! valid JSON), and in the access text it is inserted as-is. `{{password}}` is a fresh random
//! password per grant and exists only for `enable` and `access`. `disable` may use only
//! `{{account}}` and `{{break_id}}`, so a grant can be ended from the break alone (`grant`
//! checks this before enabling anything); `check` only `{{account}}`.
//!
//! Response bodies are never read: an API may echo the token or the password, so errors carry
//! the status code and a short reason only. Redirects are not followed (they would resend the
//! bearer token somewhere not configured). A `check` without a configured check call reports
//! "not verified" (`ok = false`): an unverifiable target must not look healthy.

use std::collections::HashMap;
use std::error::Error as _;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use breakglass_custody::Secret;
use breakglass_domain::{HttpTarget, Procedure, TargetConfig, TargetKind};
use breakglass_engine::ports::{
    EndCause, GrantRequest, HealthCheck, Issued, PrivilegedAccount, Target, TargetError,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::ExposeSecret;
use serde_json::json;
use zeroize::Zeroizing;

use crate::config::{HttpCall, HttpConnection, TEMPLATE_VARS};
use crate::random_password;

/// Longest wait for a TCP and TLS connection; each call's whole timeout is the connection's
/// `timeout` setting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The adapter for `http` targets: one HTTP client shared by every connection of the targets
/// file, built on first use.
pub struct HttpAccountTarget {
    connections: HashMap<String, HttpConnection>,
    client: OnceLock<Result<reqwest::Client, String>>,
}

impl HttpAccountTarget {
    /// An adapter for these HTTP connections of the targets file, by name.
    pub fn new(connections: HashMap<String, HttpConnection>) -> Self {
        HttpAccountTarget {
            connections,
            client: OnceLock::new(),
        }
    }

    /// The procedure's connection and account.
    fn resolve(&self, procedure: &Procedure) -> Result<Resolved<'_>, TargetError> {
        let config = http_config(procedure)?;
        self.lookup(&config.connection, config.account)
    }

    /// The connection and account a grant was made on: from its handle when the handle names
    /// them (what was enabled), else from the procedure as it is now.
    fn resolve_for_end(
        &self,
        procedure: &Procedure,
        handle: &serde_json::Value,
    ) -> Result<Resolved<'_>, TargetError> {
        let from_handle = |key: &str| {
            handle
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        match (from_handle("connection"), from_handle("account")) {
            (Some(connection), Some(account)) => self.lookup(&connection, account),
            (connection, account) => {
                let config = http_config(procedure)?;
                let connection = connection.unwrap_or(config.connection);
                self.lookup(&connection, account.unwrap_or(config.account))
            }
        }
    }

    fn lookup(&self, connection: &str, account: String) -> Result<Resolved<'_>, TargetError> {
        match self.connections.get(connection) {
            Some(conn) => Ok(Resolved {
                target: format!("http {connection} ({})", origin(&conn.base_url)),
                connection: connection.to_owned(),
                conn,
                account,
            }),
            None => Err(TargetError::Config {
                target: format!("http {connection}"),
                message: format!(
                    "no http connection `{connection}` in the targets file ({})",
                    self.known_connections()
                ),
            }),
        }
    }

    fn known_connections(&self) -> String {
        let mut names: Vec<&str> = self.connections.keys().map(String::as_str).collect();
        names.sort_unstable();
        if names.is_empty() {
            "it has none".to_owned()
        } else {
            format!("known: {}", names.join(", "))
        }
    }

    fn client(&self, t: &Resolved<'_>) -> Result<&reqwest::Client, TargetError> {
        self.client
            .get_or_init(build_client)
            .as_ref()
            .map_err(|reason| TargetError::Config {
                target: t.target.clone(),
                message: format!("cannot build the HTTP client: {reason}"),
            })
    }
}

#[async_trait]
impl Target for HttpAccountTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::Http
    }

    /// Sends `enable` with the sealed admin token and a fresh password. Every template is
    /// rendered first (including `disable`, which the end will need), so a configuration
    /// mistake fails before the API is touched. When `enable` fails in a way that may have
    /// enabled the account anyway (a timeout or a dropped connection after sending, a 5xx, an
    /// unexpected 2xx), `disable` is sent with the operator token and the error says how that
    /// went.
    async fn grant(
        &self,
        request: &GrantRequest<'_>,
        credential: &Secret,
    ) -> Result<Issued, TargetError> {
        let t = self.resolve(request.procedure)?;
        let token = std::str::from_utf8(credential.expose_secret())
            .map_err(|_| t.credential("the sealed credential is not a text API token".into()))?
            .trim();
        if token.is_empty() {
            return Err(t.credential("the sealed credential is empty".into()));
        }
        let admin = bearer(token).ok_or_else(|| {
            t.credential(
                "the sealed credential cannot be sent as a bearer token (control characters)"
                    .into(),
            )
        })?;
        let operator = t.operator_bearer()?;

        let password = random_password();
        let deadline = request.deadline.to_string();
        let deadline_unix = request.deadline.millis().div_euclid(1000);
        let deadline_unix_text = deadline_unix.to_string();
        let vars = Vars {
            account: &t.account,
            break_id: Some(request.break_id),
            requester: Some(request.requester),
            deadline: Some(&deadline),
            deadline_unix: Some(&deadline_unix_text),
            password: Some(password.expose_secret()),
        };
        let enable = t.prepare("enable", &t.conn.enable, &vars)?;
        let mut access = render(&t.conn.access, &vars, Escape::Text)
            .map_err(|m| t.config(format!("access: {m}")))?;
        // The end has only the break (after a crash, not even the handle): `disable` must
        // render from the account and the break id, or the account could be enabled and never
        // disabled.
        let disable = t.prepare(
            "disable",
            &t.conn.disable,
            &Vars::ending(&t.account, request.break_id),
        )?;
        let client = self.client(&t)?;
        let secrets = [
            token,
            password.expose_secret(),
            t.conn.operator_token.expose_secret(),
        ];

        let failure = match send(client, &t, "enable", &enable, admin, &secrets).await {
            Ok(status) if succeeded(&t.conn.enable, status) => {
                tracing::info!(
                    target_name = %t.target,
                    account = %t.account,
                    break_id = request.break_id,
                    status,
                    "http account enabled"
                );
                return Ok(Issued {
                    access: Secret::new(std::mem::take(&mut *access).into_bytes()),
                    handle: json!({
                        "connection": t.connection,
                        "account": t.account,
                        "deadline": deadline,
                        "deadline_unix": deadline_unix,
                    }),
                });
            }
            Ok(status) => {
                // A server error or a success status the call does not expect may come after
                // the API applied the change; a 4xx refusal did not.
                let maybe_applied = status >= 500 || (200..300).contains(&status);
                (
                    t.refused("enable", "sealed admin token", status),
                    maybe_applied,
                )
            }
            Err(SendError::Invalid(m)) => (t.config(m), false),
            Err(SendError::Unreachable {
                message,
                maybe_sent,
            }) => (t.unreachable(message), maybe_sent),
        };
        let (error, maybe_applied) = failure;
        if !maybe_applied {
            return Err(error);
        }
        tracing::warn!(
            target_name = %t.target,
            account = %t.account,
            break_id = request.break_id,
            "enable failed after it may have been applied; disabling the account again"
        );
        let undo = undo_enable(client, &t, &disable, operator, &secrets).await;
        Err(with_suffix(error, &undo))
    }

    /// Sends `disable` with the operator token; its templates see the account and the break
    /// id only, so a grant ends from the break alone (after a crash the handle may be `null`).
    /// A 404 means the account is already gone or disabled, which counts as ended. Returns
    /// `{"account", "status"}` with status `disabled` or `already_disabled`.
    async fn end(
        &self,
        procedure: &Procedure,
        break_id: &str,
        handle: &serde_json::Value,
        cause: EndCause,
    ) -> Result<serde_json::Value, TargetError> {
        let t = self.resolve_for_end(procedure, handle)?;
        let vars = Vars::ending(&t.account, break_id);
        let disable = t.prepare("disable", &t.conn.disable, &vars)?;
        let operator = t.operator_bearer()?;
        let client = self.client(&t)?;
        let secrets = [t.conn.operator_token.expose_secret()];
        let status = match send(client, &t, "disable", &disable, operator, &secrets).await {
            Ok(status) if succeeded(&t.conn.disable, status) => "disabled",
            Ok(404) => "already_disabled",
            Ok(status) => return Err(t.refused("disable", "operator token", status)),
            Err(SendError::Invalid(m)) => return Err(t.config(m)),
            Err(SendError::Unreachable { message, .. }) => return Err(t.unreachable(message)),
        };
        tracing::info!(
            target_name = %t.target,
            account = %t.account,
            break_id,
            ?cause,
            status,
            "http account disabled"
        );
        Ok(json!({ "account": t.account, "status": status }))
    }

    /// One line for the connection in the targets file and one for the `check` call (sent
    /// with the operator token; it may use `{{account}}` only). Without a check call the
    /// second line is not ok: nothing verifies the account between breaks.
    async fn check(&self, procedure: &Procedure) -> Result<Vec<HealthCheck>, TargetError> {
        let config = http_config(procedure)?;
        let line = |name: String, ok: bool, detail: String| HealthCheck { name, ok, detail };
        let mut lines = Vec::new();
        let connection_line = format!("connection `{}` in the targets file", config.connection);
        let t = match self.lookup(&config.connection, config.account) {
            Ok(t) => t,
            Err(_) => {
                lines.push(line(
                    connection_line,
                    false,
                    format!("missing ({})", self.known_connections()),
                ));
                return Ok(lines);
            }
        };
        lines.push(line(
            connection_line,
            true,
            format!("API at {}", origin(&t.conn.base_url)),
        ));
        let Some(call) = &t.conn.check else {
            lines.push(line(
                "check call".into(),
                false,
                format!(
                    "connection `{}` has no `check` call: account `{}` cannot be verified without a break",
                    t.connection, t.account
                ),
            ));
            return Ok(lines);
        };
        let name = format!("account `{}` answers the check call", t.account);
        let shown = format!("{} {}", call.method, call.path);
        let vars = Vars {
            break_id: None,
            ..Vars::ending(&t.account, "")
        };
        let sent = async {
            let prepared = t.prepare("check", call, &vars)?;
            let operator = t.operator_bearer()?;
            let client = self.client(&t)?;
            let secrets = [t.conn.operator_token.expose_secret()];
            Ok::<_, TargetError>(send(client, &t, "check", &prepared, operator, &secrets).await)
        };
        let (ok, detail) = match sent.await {
            Err(e) => (false, target_message(&e)),
            Ok(Ok(status)) if succeeded(call, status) => (true, format!("{shown}: HTTP {status}")),
            Ok(Ok(status)) => (
                false,
                format!(
                    "{shown}: HTTP {status}{}",
                    match status {
                        401 => ": the API refused the operator token",
                        403 => ": the operator token may not read the account",
                        404 => ": not found (does the account exist?)",
                        _ => "",
                    }
                ),
            ),
            Ok(Err(SendError::Invalid(m))) => (false, m),
            Ok(Err(SendError::Unreachable { message, .. })) => (false, message),
        };
        lines.push(line(name, ok, detail));
        Ok(lines)
    }

    /// `None`: the admin API token is re-sealed under a new data key. Rotating an identity
    /// provider's admin token through its API is not generic enough to template.
    fn next_credential(
        &self,
        _procedure: &Procedure,
        _current: &Secret,
    ) -> Result<Option<Secret>, TargetError> {
        Ok(None)
    }

    /// Nothing to do: `next_credential` keeps the token.
    async fn rotate(
        &self,
        _procedure: &Procedure,
        _current: &Secret,
        _next: &Secret,
    ) -> Result<(), TargetError> {
        Ok(())
    }

    /// HTTP APIs have no generic listing of privileged accounts: none are reported.
    async fn discover(
        &self,
        _procedure: &Procedure,
    ) -> Result<Vec<PrivilegedAccount>, TargetError> {
        Ok(Vec::new())
    }
}

/// A procedure's connection, resolved in the targets file.
struct Resolved<'a> {
    /// How errors name the target: `http idp (https://idp.example.com)`.
    target: String,
    /// The connection's name.
    connection: String,
    conn: &'a HttpConnection,
    /// The emergency account.
    account: String,
}

impl Resolved<'_> {
    fn config(&self, message: String) -> TargetError {
        TargetError::Config {
            target: self.target.clone(),
            message,
        }
    }

    fn credential(&self, message: String) -> TargetError {
        TargetError::Credential {
            target: self.target.clone(),
            message,
        }
    }

    fn unreachable(&self, message: String) -> TargetError {
        TargetError::Unreachable {
            target: self.target.clone(),
            message,
        }
    }

    /// The error for a status that is not the call's success: 401, 403 and 409 have their
    /// own kinds; the rest is `Failed` with the status.
    fn refused(&self, call: &str, token: &str, status: u16) -> TargetError {
        let target = self.target.clone();
        let account = &self.account;
        match status {
            401 => TargetError::Credential {
                target,
                message: format!("{call}: the API refused the {token} (HTTP 401)"),
            },
            403 => TargetError::Privilege {
                target,
                message: format!(
                    "{call}: the {token} may not {call} account `{account}` (HTTP 403)"
                ),
            },
            409 => TargetError::Conflict {
                target,
                message: format!(
                    "{call}: account `{account}` is in a conflicting state (HTTP 409){}",
                    if call == "enable" {
                        "; is it already enabled?"
                    } else {
                        ""
                    }
                ),
            },
            _ => TargetError::Failed {
                target,
                message: format!("{call} answered HTTP {status}"),
            },
        }
    }

    /// `Authorization: Bearer <operator token>`.
    fn operator_bearer(&self) -> Result<HeaderValue, TargetError> {
        let token = self.conn.operator_token.expose_secret().trim();
        if token.is_empty() {
            return Err(self.config(format!(
                "connection `{}` has an empty operator token",
                self.connection
            )));
        }
        bearer(token).ok_or_else(|| {
            self.config(format!(
                "the operator token of connection `{}` cannot be sent as a bearer token (control characters)",
                self.connection
            ))
        })
    }

    /// Renders one call of this connection.
    fn prepare(
        &self,
        name: &str,
        call: &HttpCall,
        vars: &Vars<'_>,
    ) -> Result<Prepared, TargetError> {
        let method = reqwest::Method::from_bytes(call.method.as_bytes())
            .map_err(|_| self.config(format!("{name}.method `{}` is not valid", call.method)))?;
        let path = render(&call.path, vars, Escape::Path)
            .map_err(|m| self.config(format!("{name}.path: {m}")))?;
        let body = match &call.body {
            None => None,
            Some(template) => {
                let body = render(template, vars, Escape::Json)
                    .map_err(|m| self.config(format!("{name}.body: {m}")))?;
                if serde_json::from_str::<serde::de::IgnoredAny>(&body).is_err() {
                    return Err(self.config(format!(
                        "{name}.body is not valid JSON once rendered (string variables belong inside quotes)"
                    )));
                }
                Some(body)
            }
        };
        Ok(Prepared {
            method,
            url: Zeroizing::new(format!("{}{}", self.conn.base_url, path.as_str())),
            body,
            timeout: self.conn.timeout,
        })
    }
}

/// A rendered call, ready to send. Its URL and body may hold the password.
struct Prepared {
    method: reqwest::Method,
    url: Zeroizing<String>,
    body: Option<Zeroizing<String>>,
    timeout: Duration,
}

/// Why a call got no HTTP status.
enum SendError {
    /// The request could not be built (a configuration problem).
    Invalid(String),
    /// Connection refused, timeout, connection lost.
    Unreachable {
        /// What happened (scrubbed).
        message: String,
        /// Whether the request may have reached the API (anything but a failed connect).
        maybe_sent: bool,
    },
}

/// Sends one call and returns its status. The response body is never read.
async fn send(
    client: &reqwest::Client,
    t: &Resolved<'_>,
    name: &str,
    call: &Prepared,
    authorization: HeaderValue,
    secrets: &[&str],
) -> Result<u16, SendError> {
    let mut request = client
        .request(call.method.clone(), call.url.as_str())
        .timeout(call.timeout)
        .header(AUTHORIZATION, authorization);
    if let Some(body) = &call.body {
        request = request
            .header(CONTENT_TYPE, "application/json")
            .body(body.as_bytes().to_vec());
    }
    match request.send().await {
        Ok(response) => Ok(response.status().as_u16()),
        Err(e) => {
            let mut needles = secrets.to_vec();
            needles.push(call.url.as_str());
            let (builder, timeout, connect) = (e.is_builder(), e.is_timeout(), e.is_connect());
            let detail = scrub(chain(&e.without_url()), &needles);
            if builder {
                return Err(SendError::Invalid(format!(
                    "{name}: the request could not be built: {detail}"
                )));
            }
            let what = if timeout {
                format!(
                    "{name} timed out after {}",
                    humantime::format_duration(call.timeout)
                )
            } else if connect {
                format!("{name}: could not connect")
            } else {
                format!("{name} failed")
            };
            tracing::debug!(target_name = %t.target, call = name, "{what}");
            Err(SendError::Unreachable {
                message: format!("{what}: {detail}"),
                maybe_sent: !connect,
            })
        }
    }
}

/// Sends `disable` after an `enable` that may have been applied, and says how it went.
async fn undo_enable(
    client: &reqwest::Client,
    t: &Resolved<'_>,
    disable: &Prepared,
    operator: HeaderValue,
    secrets: &[&str],
) -> String {
    let by_hand = format!("check account `{}` by hand", t.account);
    match send(client, t, "disable", disable, operator, secrets).await {
        Ok(status) if succeeded(&t.conn.disable, status) => {
            "; the account was disabled again with the operator token".to_owned()
        }
        Ok(404) => "; disabling it again answered HTTP 404: it was not enabled".to_owned(),
        Ok(status) => {
            tracing::error!(target_name = %t.target, account = %t.account, status, "could not disable the account again");
            format!("; disabling it again failed (HTTP {status}): {by_hand}")
        }
        Err(SendError::Invalid(m) | SendError::Unreachable { message: m, .. }) => {
            tracing::error!(target_name = %t.target, account = %t.account, "could not disable the account again");
            format!("; disabling it again failed ({m}): {by_hand}")
        }
    }
}

/// Whether `status` is the call's success: one of `expect`, or any 2xx when it is empty.
fn succeeded(call: &HttpCall, status: u16) -> bool {
    if call.expect.is_empty() {
        (200..300).contains(&status)
    } else {
        call.expect.contains(&status)
    }
}

/// `Bearer <token>` as a header value marked sensitive; `None` if the token holds characters
/// a header cannot.
fn bearer(token: &str) -> Option<HeaderValue> {
    let text = Zeroizing::new(format!("Bearer {token}"));
    let mut value = HeaderValue::from_str(&text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The procedure's validated `http` settings.
fn http_config(procedure: &Procedure) -> Result<HttpTarget, TargetError> {
    let target = format!("http target of procedure `{}`", procedure.id);
    match procedure.target.config() {
        Ok(TargetConfig::Http(h)) => Ok(h),
        Ok(_) => Err(TargetError::Config {
            target,
            message: format!(
                "the procedure's target is `{}`, not `http`",
                procedure.target.kind.as_str()
            ),
        }),
        Err(problems) => Err(TargetError::Config {
            target,
            message: problems
                .iter()
                .map(|(field, message)| format!("{field}: {message}"))
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

/// `scheme://host[:port]` of a base URL: no user info, path or query, which may hold secrets.
fn origin(base_url: &str) -> String {
    let (scheme, rest) = base_url.split_once("://").unwrap_or(("http", base_url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}")
}

fn build_client() -> Result<reqwest::Client, String> {
    // reqwest's `rustls-no-provider` needs a process-wide provider; ring is the one this
    // workspace uses everywhere. Installing fails only when one is already installed, which
    // is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        // A redirect would resend the bearer token somewhere not configured.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("breakglass/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| chain(&e.without_url()))
}

/// The error and its sources, joined with `: `.
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Replaces every secret (and the URL) in `message`: transport errors are free to echo them,
/// the audit log is not.
fn scrub(mut message: String, needles: &[&str]) -> String {
    for needle in needles {
        if needle.len() >= 4 && message.contains(needle) {
            message = message.replace(needle, "[redacted]");
        }
    }
    message
}

/// An error's message without its target (a health check line names the target already).
fn target_message(e: &TargetError) -> String {
    match e {
        TargetError::Unreachable { message, .. }
        | TargetError::Credential { message, .. }
        | TargetError::Privilege { message, .. }
        | TargetError::Conflict { message, .. }
        | TargetError::Config { message, .. }
        | TargetError::Failed { message, .. } => message.clone(),
    }
}

/// The same error with `suffix` appended to its message.
fn with_suffix(mut e: TargetError, suffix: &str) -> TargetError {
    match &mut e {
        TargetError::Unreachable { message, .. }
        | TargetError::Credential { message, .. }
        | TargetError::Privilege { message, .. }
        | TargetError::Conflict { message, .. }
        | TargetError::Config { message, .. }
        | TargetError::Failed { message, .. } => message.push_str(suffix),
    }
    e
}

/// The values a template may use; `None` where the call cannot know them.
#[derive(Clone, Copy)]
struct Vars<'a> {
    account: &'a str,
    break_id: Option<&'a str>,
    requester: Option<&'a str>,
    deadline: Option<&'a str>,
    deadline_unix: Option<&'a str>,
    password: Option<&'a str>,
}

impl<'a> Vars<'a> {
    /// What `disable` may use: the account and the break id.
    fn ending(account: &'a str, break_id: &'a str) -> Self {
        Vars {
            account,
            break_id: Some(break_id),
            requester: None,
            deadline: None,
            deadline_unix: None,
            password: None,
        }
    }

    fn value(&self, name: &str) -> Option<&'a str> {
        match name {
            "account" => Some(self.account),
            "break_id" => self.break_id,
            "requester" => self.requester,
            "deadline" => self.deadline,
            "deadline_unix" => self.deadline_unix,
            "password" => self.password,
            _ => None,
        }
    }
}

/// How a substituted value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    /// Percent-encoded: everything but `A-Z a-z 0-9 - . _ ~`.
    Path,
    /// Escaped for the inside of a JSON string.
    Json,
    /// As is.
    Text,
}

/// Renders `template`. Errors name the variable, never a value.
fn render(template: &str, vars: &Vars<'_>, escape: Escape) -> Result<Zeroizing<String>, String> {
    // Reserve the worst case up front, so the buffer holding the password never reallocates
    // (a reallocation would leave a copy behind that `Zeroizing` cannot reach).
    let longest = TEMPLATE_VARS
        .iter()
        .filter_map(|name| vars.value(name))
        .map(str::len)
        .max()
        .unwrap_or(0);
    let placeholders = template.matches("{{").count();
    let mut out = Zeroizing::new(String::with_capacity(
        template.len() + placeholders * longest * 6,
    ));
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a `{{` is never closed".to_owned())?;
        let name = after[..end].trim();
        let value = match vars.value(name) {
            Some(value) => value,
            None if TEMPLATE_VARS.contains(&name) => {
                return Err(format!(
                    "`{{{{{name}}}}}` is not available to this call (`enable` and `access` may use every variable, `disable` only `{{{{account}}}}` and `{{{{break_id}}}}`, `check` only `{{{{account}}}}`)"
                ));
            }
            None => {
                return Err(format!(
                    "unknown template variable `{{{{{name}}}}}` (known: {})",
                    TEMPLATE_VARS.join(", ")
                ));
            }
        };
        match escape {
            Escape::Path => push_percent_encoded(&mut out, value),
            Escape::Json => push_json_escaped(&mut out, value),
            Escape::Text => out.push_str(value),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn push_percent_encoded(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn push_json_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars<'static> {
        Vars {
            account: "ops/admin ü",
            break_id: Some("brk_1"),
            requester: Some("dave \"the\" \\ admin\n"),
            deadline: Some("2026-11-28T23:59:01.123Z"),
            deadline_unix: Some("1795910341"),
            password: None,
        }
    }

    #[test]
    fn paths_are_percent_encoded() {
        let p = render("/u/{{account}}/on?b={{ break_id }}", &vars(), Escape::Path).expect("ok");
        assert_eq!(p.as_str(), "/u/ops%2Fadmin%20%C3%BC/on?b=brk_1");
    }

    #[test]
    fn json_values_are_escaped() {
        let b = render(
            r#"{"who": "{{requester}}", "exp": {{deadline_unix}}}"#,
            &vars(),
            Escape::Json,
        )
        .expect("ok");
        let v: serde_json::Value = serde_json::from_str(&b).expect("valid json");
        assert_eq!(v["who"], "dave \"the\" \\ admin\n");
        assert_eq!(v["exp"], 1_795_910_341);
        let c = render("{{account}}", &vars(), Escape::Text).expect("ok");
        assert_eq!(c.as_str(), "ops/admin ü");
    }

    #[test]
    fn missing_and_unknown_variables_are_named() {
        let e = render("{{password}}", &vars(), Escape::Json).expect_err("no password");
        assert!(e.contains("`{{password}}` is not available"), "{e}");
        let e = render("{{pasword}}", &vars(), Escape::Json).expect_err("unknown");
        assert!(e.contains("unknown template variable `{{pasword}}`"), "{e}");
        assert!(render("{{account", &vars(), Escape::Json).is_err());
    }

    #[test]
    fn origins_drop_user_info_and_paths() {
        assert_eq!(
            origin("https://op:hunter2@idp.example.com:8443/api/TOKEN?x=1"),
            "https://idp.example.com:8443"
        );
        assert_eq!(origin("http://127.0.0.1:9"), "http://127.0.0.1:9");
    }
}
