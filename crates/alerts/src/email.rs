//! Email over SMTP with lettre (tokio, rustls with ring): a plain-text message per alert,
//! `Message-ID` and `X-Breakglass-Id` derived from the alert id, TLS modes `none`,
//! `starttls` and `tls`, optional credentials.

use std::error::Error as _;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use breakglass_engine::ports::{Alert, Channel, ChannelError, Receipt};
use lettre::message::Mailbox;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{BuildError, EmailConfig, EmailTls};
use crate::http::{TIMEOUT, absolute};

/// An SMTP channel. `Debug` shows no password.
pub struct EmailChannel {
    name: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    tls: EmailTls,
    password: Option<SecretString>,
    public_url: Option<String>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// The longest a whole send may take ([`SEND_DEADLINE`]).
    deadline: Duration,
}

/// The longest one message's whole SMTP exchange may take. lettre's own timeout bounds the
/// connect and each command, but not every read: a server that accepts the connection and
/// never greets held a send (and the alert behind it) for good.
pub const SEND_DEADLINE: Duration = Duration::from_secs(30);

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("name", &self.name)
            .field("from", &self.from.to_string())
            .field(
                "to",
                &self.to.iter().map(ToString::to_string).collect::<Vec<_>>(),
            )
            .field("tls", &self.tls)
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

impl EmailChannel {
    /// A channel sending through the configured SMTP server. Reads `ca_file` if given.
    pub async fn new(
        name: &str,
        config: &EmailConfig,
        public_url: Option<&str>,
    ) -> Result<EmailChannel, BuildError> {
        let smtp = |reason: String| BuildError::Smtp {
            channel: name.to_owned(),
            reason,
        };
        let parse = |s: &str| {
            s.parse::<Mailbox>()
                .map_err(|e| smtp(format!("address: {e}")))
        };
        let from = parse(&config.from)?;
        let to = config
            .to
            .iter()
            .map(|t| parse(t))
            .collect::<Result<Vec<_>, _>>()?;

        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.smtp_host.as_str())
                .port(config.smtp_port)
                .timeout(Some(TIMEOUT));
        if config.tls != EmailTls::None {
            // lettre picks the process-wide rustls provider when one is installed; make it ring.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut params = TlsParameters::builder(config.smtp_host.clone());
            if let Some(path) = &config.ca_file {
                let ca_error = |reason: String| BuildError::CaFile {
                    channel: name.to_owned(),
                    path: path.display().to_string(),
                    reason,
                };
                let pem = tokio::fs::read(path)
                    .await
                    .map_err(|e| ca_error(e.to_string()))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| smtp(format!("TLS: {e}")))?;
            builder = builder.tls(match config.tls {
                EmailTls::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(EmailChannel {
            name: name.to_owned(),
            from,
            to,
            tls: config.tls,
            password: config.password.clone(),
            public_url: public_url.map(str::to_owned),
            transport: builder.build(),
            deadline: SEND_DEADLINE,
        })
    }

    /// The same channel with another bound on a whole send (tests: a short one).
    pub fn with_deadline(mut self, deadline: Duration) -> EmailChannel {
        self.deadline = deadline;
        self
    }

    /// The message sent for `alert`.
    pub fn message(&self, alert: &Alert) -> Result<Message, ChannelError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(one_line(&alert.title))
            .message_id(Some(format!("<{}@breakglass>", alert.id)))
            .header(XBreakglassId(alert.id.clone()))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .body(text(alert, self.public_url.as_deref()))
            .map_err(|e| ChannelError::Rejected(format!("cannot build the message: {e}")))
    }
}

#[async_trait]
impl Channel for EmailChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "email"
    }

    async fn send(&self, alert: &Alert) -> Result<Receipt, ChannelError> {
        let message = self.message(alert)?;
        let started = Instant::now();
        let response = tokio::time::timeout(self.deadline, self.transport.send(message))
            .await
            .map_err(|_| {
                ChannelError::Unavailable(format!(
                    "the SMTP server did not finish the exchange within {} s",
                    self.deadline.as_secs_f64()
                ))
            })?
            .map_err(|e| self.error(&e))?;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let lines: Vec<&str> = response.message().collect();
        let status = format!("{} {}", response.code(), lines.join(" "));
        // Postfix and most MTAs answer `250 2.0.0 Ok: queued as 4FZ…`.
        let remote_id = lines.iter().find_map(|l| {
            l.split_once("queued as ")
                .map(|(_, id)| id.split_whitespace().next().unwrap_or_default().to_owned())
        });
        Ok(Receipt {
            status,
            latency_ms,
            remote_id: remote_id.filter(|id| !id.is_empty()),
        })
    }
}

impl EmailChannel {
    /// Permanent SMTP errors (5xx) are refusals; everything else (4xx, network, TLS,
    /// timeouts) is the server being unavailable.
    fn error(&self, e: &lettre::transport::smtp::Error) -> ChannelError {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                let _ = write!(message, ": {text}");
            }
            source = s.source();
        }
        if let Some(p) = &self.password {
            let p = p.expose_secret();
            if !p.is_empty() {
                message = message.replace(p, "[redacted]");
            }
        }
        let message = format!("SMTP {message}");
        if e.is_permanent() {
            ChannelError::Rejected(message)
        } else {
            ChannelError::Unavailable(message)
        }
    }
}

/// The plain-text body: every field of the alert and the acknowledge link.
pub fn text(alert: &Alert, public_url: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", alert.title);
    let _ = writeln!(out);
    if alert.drill {
        let _ = writeln!(out, "*** DRILL: an exercise, not a real emergency ***");
        let _ = writeln!(out);
    }
    for (label, value) in crate::shown_fields(alert) {
        let _ = writeln!(out, "{label:<10} {value}");
    }
    if let Some((label, value)) = crate::people_line(alert) {
        let _ = writeln!(out, "{label:<10} {value}");
    }
    let _ = writeln!(
        out,
        "{:<10} {}",
        "Break",
        alert.break_id.as_deref().unwrap_or("—")
    );
    let _ = writeln!(out, "{:<10} {}", "Event", alert.event);
    let _ = writeln!(out, "{:<10} {}", "Severity", alert.severity.as_str());
    let _ = writeln!(out, "{:<10} {}", "Alert id", alert.id);
    let _ = writeln!(out);
    if let Some(ack) = &alert.ack_url {
        let _ = writeln!(out, "Acknowledge: {}", absolute(public_url, ack));
    }
    for (label, url) in &alert.links {
        let _ = writeln!(out, "{label}: {}", absolute(public_url, url));
    }
    if !alert.detail.is_null() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Details: {}", alert.detail);
    }
    out
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The `X-Breakglass-Id` header: the alert id, for deduplication by mail rules.
#[derive(Debug, Clone)]
struct XBreakglassId(String);

impl Header for XBreakglassId {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Breakglass-Id")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(XBreakglassId(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), one_line(&self.0))
    }
}
