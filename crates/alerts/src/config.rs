//! The channels configuration file: its YAML format, validation with file:line:column
//! errors, secret resolution (`{env: VAR}`, `{file: PATH}` or a literal), and `build`, which
//! turns a validated configuration into ready-to-use channels.
//!
//! ```yaml
//! public_url: https://breakglass.example.com
//! channels:
//!   - name: ops-slack
//!     kind: slack
//!     webhook_url: {env: SLACK_WEBHOOK_URL}
//! ```

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use breakglass_engine::ports::{Channel, Clock, SystemClock};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use crate::email::EmailChannel;
use crate::pagerduty::PagerDutyChannel;
use crate::slack::SlackChannel;
use crate::webhook::WebhookChannel;

/// Largest channels file accepted, in bytes: the file is small and hand-written.
pub const MAX_FILE_BYTES: usize = 256 * 1024;

/// Largest secret file read, in bytes.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// PagerDuty's Events API v2 endpoint, used when `events_url` is not given.
pub const DEFAULT_PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// A validated channels file.
#[derive(Debug, Clone, Default)]
pub struct ChannelsConfig {
    /// The server's external URL (no trailing slash); relative links in alerts are made
    /// absolute with it.
    pub public_url: Option<String>,
    /// The channels, in file order; names are unique.
    pub channels: Vec<ChannelConfig>,
}

/// One validated channel entry.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Name, unique in the file (outbox destination `channel:NAME`).
    pub name: String,
    /// Kind-specific settings.
    pub settings: ChannelSettings,
}

/// The settings of one channel, by kind.
#[derive(Debug, Clone)]
pub enum ChannelSettings {
    /// A Slack incoming webhook.
    Slack(SlackConfig),
    /// A PagerDuty service integration (Events API v2).
    PagerDuty(PagerDutyConfig),
    /// A generic HMAC-signed JSON webhook.
    Webhook(WebhookConfig),
    /// Email over SMTP.
    Email(EmailConfig),
}

impl ChannelSettings {
    /// The kind as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelSettings::Slack(_) => "slack",
            ChannelSettings::PagerDuty(_) => "pagerduty",
            ChannelSettings::Webhook(_) => "webhook",
            ChannelSettings::Email(_) => "email",
        }
    }
}

/// Slack settings.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// The incoming webhook URL; secret, since its path is the token.
    pub webhook_url: SecretString,
}

/// PagerDuty settings.
#[derive(Debug, Clone)]
pub struct PagerDutyConfig {
    /// The service integration's routing key (secret).
    pub routing_key: SecretString,
    /// The Events API v2 endpoint (default [`DEFAULT_PAGERDUTY_EVENTS_URL`]).
    pub events_url: String,
}

/// Generic webhook settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where to POST; secret, since such URLs often embed a token.
    pub url: SecretString,
    /// The HMAC-SHA256 signing key shared with the receiver.
    pub secret: SecretString,
}

/// Email settings.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// SMTP server host name (also the name its TLS certificate must carry).
    pub smtp_host: String,
    /// SMTP port (default 25 for `none`, 587 for `starttls`, 465 for `tls`).
    pub smtp_port: u16,
    /// Transport security.
    pub tls: EmailTls,
    /// SMTP user, if the server asks for authentication.
    pub username: Option<String>,
    /// SMTP password (secret).
    pub password: Option<SecretString>,
    /// Sender address (`alerts@example.com` or `Breakglass <alerts@example.com>`).
    pub from: String,
    /// Recipients, at least one.
    pub to: Vec<String>,
    /// PEM file of extra CA certificates trusted for the SMTP server (private CAs).
    pub ca_file: Option<PathBuf>,
}

/// How an email channel secures its SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTls {
    /// Plain text; only for a relay on the same host or a trusted network.
    None,
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    Starttls,
    /// TLS from the first byte, "SMTPS" (port 465).
    Tls,
}

impl EmailTls {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            EmailTls::None => "none",
            EmailTls::Starttls => "starttls",
            EmailTls::Tls => "tls",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            EmailTls::None => 25,
            EmailTls::Starttls => 587,
            EmailTls::Tls => 465,
        }
    }
}

/// A problem in a channels file, with its position. Never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
    /// Dotted path of the field, e.g. `channels[1].webhook_url`.
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

/// Why validated settings could not be turned into a channel.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The HTTP client could not be set up (TLS backend).
    #[error("channel `{channel}`: could not set up the HTTP client: {reason}")]
    HttpClient {
        /// Channel name.
        channel: String,
        /// Cause, without URLs.
        reason: String,
    },
    /// The SMTP transport could not be set up.
    #[error("channel `{channel}`: could not set up SMTP: {reason}")]
    Smtp {
        /// Channel name.
        channel: String,
        /// Cause.
        reason: String,
    },
    /// The CA file of an email channel could not be read or parsed.
    #[error("channel `{channel}`: CA file {path}: {reason}")]
    CaFile {
        /// Channel name.
        channel: String,
        /// The file.
        path: String,
        /// Cause.
        reason: String,
    },
}

/// Parses and validates a channels file, resolving every secret through `env` (for
/// `{env: VAR}`) or by reading the named file (for `{file: PATH}`, relative to the current
/// directory, trailing newline removed). Returns every problem found, not only the first.
pub fn load(
    file_name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ChannelsConfig, Vec<ConfigError>> {
    let err = |loc: Option<Location>, field: &str, message: String| {
        let (line, column) = loc.map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        ConfigError {
            file: file_name.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message,
        }
    };
    if text.len() > MAX_FILE_BYTES {
        return Err(vec![err(
            None,
            "(file)",
            format!("larger than {MAX_FILE_BYTES} bytes"),
        )]);
    }
    let spec: FileSpec = match serde_saphyr::from_str(text) {
        Ok(spec) => spec,
        Err(e) => {
            let loc = e.location();
            let message = e.without_snippet().to_string();
            let field = unknown_field_name(&message).unwrap_or_else(|| "(document)".into());
            return Err(vec![err(loc, &field, first_line(&message))]);
        }
    };
    let mut errors = Vec::new();
    let mut problem = |loc: Option<Location>, field: String, message: String| {
        errors.push(err(loc, &field, message));
    };

    let public_url = spec.public_url.as_ref().and_then(|u| {
        let value = u.value.trim().trim_end_matches('/');
        match check_http_url(value) {
            Ok(()) => Some(value.to_owned()),
            Err(m) => {
                problem(Some(u.referenced), "public_url".into(), m);
                None
            }
        }
    });

    let mut channels = Vec::new();
    let mut names = HashSet::new();
    for (i, entry) in spec.channels.iter().enumerate() {
        let at = entry.referenced;
        let c = &entry.value;
        let path = |f: &str| format!("channels[{i}].{f}");
        let name = c.name.value.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "-_.".contains(ch))
        {
            problem(
                Some(c.name.referenced),
                path("name"),
                "must be 1-64 characters of a-z, 0-9, '-', '_' or '.'".into(),
            );
        } else if !names.insert(name.to_owned()) {
            problem(
                Some(c.name.referenced),
                path("name"),
                format!("channel `{name}` appears twice in this file"),
            );
        }

        // Fields that belong to another kind are refused rather than ignored: a typo in
        // `kind` must not silently drop the secret the user meant to configure.
        let kind = c.kind.value.trim();
        let allowed: &[&str] = match kind {
            "slack" => &["webhook_url"],
            "pagerduty" => &["routing_key", "events_url"],
            "webhook" => &["url", "secret"],
            "email" => &[
                "smtp_host",
                "smtp_port",
                "tls",
                "username",
                "password",
                "from",
                "to",
                "ca_file",
            ],
            other => {
                problem(
                    Some(c.kind.referenced),
                    path("kind"),
                    format!("unknown kind `{other}` (expected slack, pagerduty, webhook or email)"),
                );
                continue;
            }
        };
        for (field, loc) in c.present_fields() {
            if !allowed.contains(&field) {
                problem(
                    Some(loc),
                    path(field),
                    format!("not a setting of a `{kind}` channel"),
                );
            }
        }

        let mut required_secret = |spec: &Option<Spanned<SecretSpec>>, field: &str| match spec {
            Some(s) => match s.value.resolve(env) {
                Ok(secret) => Some(secret),
                Err(m) => {
                    problem(Some(s.referenced), path(field), m);
                    None
                }
            },
            None => {
                problem(Some(at), path(field), "missing (required)".into());
                None
            }
        };

        let settings = match kind {
            "slack" => required_secret(&c.webhook_url, "webhook_url").map(|webhook_url| {
                (
                    ChannelSettings::Slack(SlackConfig { webhook_url }),
                    vec![("webhook_url", c.webhook_url.as_ref().map(|s| s.referenced))],
                )
            }),
            "pagerduty" => {
                let routing_key = required_secret(&c.routing_key, "routing_key");
                let events_url = match &c.events_url {
                    Some(u) => match check_http_url(u.value.trim()) {
                        Ok(()) => Some(u.value.trim().to_owned()),
                        Err(m) => {
                            problem(Some(u.referenced), path("events_url"), m);
                            None
                        }
                    },
                    None => Some(DEFAULT_PAGERDUTY_EVENTS_URL.to_owned()),
                };
                match (routing_key, events_url) {
                    (Some(routing_key), Some(events_url)) => Some((
                        ChannelSettings::PagerDuty(PagerDutyConfig {
                            routing_key,
                            events_url,
                        }),
                        vec![],
                    )),
                    _ => None,
                }
            }
            "webhook" => {
                let url = required_secret(&c.url, "url");
                let secret = required_secret(&c.secret, "secret");
                match (url, secret) {
                    (Some(url), Some(secret)) => Some((
                        ChannelSettings::Webhook(WebhookConfig { url, secret }),
                        vec![("url", c.url.as_ref().map(|s| s.referenced))],
                    )),
                    _ => None,
                }
            }
            _ => email_settings(c, &path, at, env, &mut problem)
                .map(|e| (ChannelSettings::Email(e), vec![])),
        };
        let Some((settings, urls)) = settings else {
            continue;
        };
        // Secret URLs are checked after resolution; the message never repeats the value.
        for (field, loc) in urls {
            let value = match (&settings, field) {
                (ChannelSettings::Slack(s), _) => &s.webhook_url,
                (ChannelSettings::Webhook(w), _) => &w.url,
                _ => continue,
            };
            if let Err(m) = check_http_url(value.expose_secret().trim()) {
                problem(loc.or(Some(at)), path(field), m);
            }
        }
        channels.push(ChannelConfig {
            name: name.to_owned(),
            settings,
        });
    }
    if errors.is_empty() {
        Ok(ChannelsConfig {
            public_url,
            channels,
        })
    } else {
        Err(errors)
    }
}

/// Builds one ready-to-use channel per entry, in file order. Webhook timestamps come from
/// the system clock; see [`build_with_clock`].
pub async fn build(config: &ChannelsConfig) -> Result<Vec<Arc<dyn Channel>>, BuildError> {
    build_with_clock(config, Arc::new(SystemClock)).await
}

/// Builds one ready-to-use channel per entry, in file order, with `clock` as the source of
/// webhook signature timestamps.
pub async fn build_with_clock(
    config: &ChannelsConfig,
    clock: Arc<dyn Clock>,
) -> Result<Vec<Arc<dyn Channel>>, BuildError> {
    let public_url = config.public_url.as_deref();
    let mut out: Vec<Arc<dyn Channel>> = Vec::with_capacity(config.channels.len());
    for c in &config.channels {
        let channel: Arc<dyn Channel> = match &c.settings {
            ChannelSettings::Slack(s) => Arc::new(SlackChannel::new(&c.name, s, public_url)?),
            ChannelSettings::PagerDuty(p) => {
                Arc::new(PagerDutyChannel::new(&c.name, p, public_url)?)
            }
            ChannelSettings::Webhook(w) => Arc::new(WebhookChannel::new(
                &c.name,
                w,
                public_url,
                Arc::clone(&clock),
            )?),
            ChannelSettings::Email(e) => Arc::new(EmailChannel::new(&c.name, e, public_url).await?),
        };
        out.push(channel);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The file as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    public_url: Option<Spanned<String>>,
    #[serde(default)]
    channels: Vec<Spanned<ChannelSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelSpec {
    name: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    webhook_url: Option<Spanned<SecretSpec>>,
    #[serde(default)]
    routing_key: Option<Spanned<SecretSpec>>,
    #[serde(default)]
    events_url: Option<Spanned<String>>,
    #[serde(default)]
    url: Option<Spanned<SecretSpec>>,
    #[serde(default)]
    secret: Option<Spanned<SecretSpec>>,
    #[serde(default)]
    smtp_host: Option<Spanned<String>>,
    #[serde(default)]
    smtp_port: Option<Spanned<u16>>,
    #[serde(default)]
    tls: Option<Spanned<String>>,
    #[serde(default)]
    username: Option<Spanned<String>>,
    #[serde(default)]
    password: Option<Spanned<SecretSpec>>,
    #[serde(default)]
    from: Option<Spanned<String>>,
    #[serde(default)]
    to: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    ca_file: Option<Spanned<String>>,
}

impl ChannelSpec {
    /// The kind-specific fields present in the entry, with their positions.
    fn present_fields(&self) -> Vec<(&'static str, Location)> {
        fn loc<T>(s: &Option<Spanned<T>>) -> Option<Location> {
            s.as_ref().map(|s| s.referenced)
        }
        [
            ("webhook_url", loc(&self.webhook_url)),
            ("routing_key", loc(&self.routing_key)),
            ("events_url", loc(&self.events_url)),
            ("url", loc(&self.url)),
            ("secret", loc(&self.secret)),
            ("smtp_host", loc(&self.smtp_host)),
            ("smtp_port", loc(&self.smtp_port)),
            ("tls", loc(&self.tls)),
            ("username", loc(&self.username)),
            ("password", loc(&self.password)),
            ("from", loc(&self.from)),
            ("to", loc(&self.to)),
            ("ca_file", loc(&self.ca_file)),
        ]
        .into_iter()
        .filter_map(|(f, l)| l.map(|l| (f, l)))
        .collect()
    }
}

/// Where a secret comes from: `{env: VAR}`, `{file: PATH}` or a literal string (which is
/// held as a secret from the moment it is parsed). Also used by the targets file.
#[derive(Clone)]
pub enum SecretSpec {
    /// The value itself.
    Literal(SecretString),
    /// An environment variable's name.
    Env(String),
    /// A file's path (read at start-up, trailing newline removed).
    File(String),
}

impl fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSpec::Literal(_) => f.write_str("Literal([redacted])"),
            SecretSpec::Env(v) => write!(f, "Env({v})"),
            SecretSpec::File(p) => write!(f, "File({p})"),
        }
    }
}

impl SecretSpec {
    /// The secret's value; the error message names the variable or file, never a value.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<SecretString, String> {
        let value = match self {
            SecretSpec::Literal(s) => s.clone(),
            SecretSpec::Env(var) => match env(var) {
                Some(v) => SecretString::from(v),
                None => return Err(format!("environment variable `{var}` is not set")),
            },
            SecretSpec::File(path) => SecretString::from(read_secret_file(path)?),
        };
        if value.expose_secret().trim().is_empty() {
            return Err("the secret is empty".into());
        }
        Ok(value)
    }
}

fn read_secret_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    let mut text = String::new();
    file.take(MAX_SECRET_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read `{path}`: {e}"))?;
    // Editors and `echo` add a final newline that is not part of the secret.
    let trimmed = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(trimmed);
    Ok(text)
}

impl<'de> Deserialize<'de> for SecretSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret: `{env: VAR}`, `{file: PATH}` or a literal string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretSpec, E> {
                Ok(SecretSpec::Literal(SecretString::from(v)))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<SecretSpec, E> {
                Ok(SecretSpec::Literal(SecretString::from(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretSpec, A::Error> {
                let mut out = None;
                while let Some(key) = map.next_key::<String>()? {
                    if out.is_some() {
                        return Err(de::Error::custom(
                            "a secret takes exactly one of `env` or `file`",
                        ));
                    }
                    let value: String = map.next_value()?;
                    out = Some(match key.as_str() {
                        "env" => SecretSpec::Env(value),
                        "file" => SecretSpec::File(value),
                        other => return Err(de::Error::unknown_field(other, &["env", "file"])),
                    });
                }
                out.ok_or_else(|| de::Error::custom("a secret takes one of `env` or `file`"))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------
// Validation helpers.

fn email_settings(
    c: &ChannelSpec,
    path: &dyn Fn(&str) -> String,
    at: Location,
    env: &dyn Fn(&str) -> Option<String>,
    problem: &mut dyn FnMut(Option<Location>, String, String),
) -> Option<EmailConfig> {
    let mut ok = true;
    let mut fail = |loc: Location, field: &str, m: String| {
        problem(Some(loc), path(field), m);
        false
    };
    let smtp_host = match &c.smtp_host {
        Some(h) if is_host(h.value.trim()) => h.value.trim().to_owned(),
        Some(h) => {
            ok &= fail(h.referenced, "smtp_host", "not a valid host name".into());
            String::new()
        }
        None => {
            ok &= fail(at, "smtp_host", "missing (required)".into());
            String::new()
        }
    };
    let tls = match &c.tls {
        Some(t) => match t.value.trim() {
            "none" => EmailTls::None,
            "starttls" => EmailTls::Starttls,
            "tls" => EmailTls::Tls,
            other => {
                ok &= fail(
                    t.referenced,
                    "tls",
                    format!("unknown TLS mode `{other}` (expected none, starttls or tls)"),
                );
                EmailTls::Starttls
            }
        },
        None => {
            ok &= fail(
                at,
                "tls",
                "missing (required: none, starttls or tls)".into(),
            );
            EmailTls::Starttls
        }
    };
    let smtp_port = match &c.smtp_port {
        Some(p) if p.value == 0 => {
            ok &= fail(p.referenced, "smtp_port", "must be 1-65535".into());
            0
        }
        Some(p) => p.value,
        None => tls.default_port(),
    };
    let username = c.username.as_ref().map(|u| u.value.clone());
    let password = match &c.password {
        Some(p) => match p.value.resolve(env) {
            Ok(s) => Some(s),
            Err(m) => {
                ok &= fail(p.referenced, "password", m);
                None
            }
        },
        None => None,
    };
    if username.is_some() != c.password.is_some() {
        let loc = c
            .username
            .as_ref()
            .map(|u| u.referenced)
            .or(c.password.as_ref().map(|p| p.referenced))
            .unwrap_or(at);
        ok &= fail(
            loc,
            if c.username.is_some() {
                "password"
            } else {
                "username"
            },
            "`username` and `password` go together".into(),
        );
    }
    let from = match &c.from {
        Some(f) => match f.value.trim().parse::<lettre::message::Mailbox>() {
            Ok(_) => f.value.trim().to_owned(),
            Err(_) => {
                ok &= fail(f.referenced, "from", "not a valid email address".into());
                String::new()
            }
        },
        None => {
            ok &= fail(at, "from", "missing (required)".into());
            String::new()
        }
    };
    let mut to = Vec::new();
    match &c.to {
        Some(list) if list.value.is_empty() => {
            ok &= fail(list.referenced, "to", "needs at least one recipient".into());
        }
        Some(list) => {
            for (j, addr) in list.value.iter().enumerate() {
                match addr.value.trim().parse::<lettre::message::Mailbox>() {
                    Ok(_) => to.push(addr.value.trim().to_owned()),
                    Err(_) => {
                        ok &= fail(
                            addr.referenced,
                            &format!("to[{j}]"),
                            "not a valid email address".into(),
                        );
                    }
                }
            }
        }
        None => {
            ok &= fail(at, "to", "missing (required)".into());
        }
    }
    let ca_file = c.ca_file.as_ref().map(|f| PathBuf::from(f.value.trim()));
    ok.then_some(EmailConfig {
        smtp_host,
        smtp_port,
        tls,
        username,
        password,
        from,
        to,
        ca_file,
    })
}

/// Checks that `value` is an absolute http(s) URL. The message never repeats the value,
/// which may be a secret.
fn check_http_url(value: &str) -> Result<(), String> {
    match reqwest::Url::parse(value) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => Ok(()),
        Ok(_) => Err("must be an http:// or https:// URL".into()),
        Err(e) => Err(format!("not a valid URL ({e})")),
    }
}

fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
}

fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default().trim();
    match line.rfind(" at line ") {
        Some(i) if line[i..].contains(", column ") => line[..i].to_owned(),
        _ => line.to_owned(),
    }
}

fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    Some(rest.split('`').next()?.to_owned())
}
