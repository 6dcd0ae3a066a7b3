//! Alert channels: Slack incoming webhooks, PagerDuty Events API v2, HMAC-signed generic
//! webhooks and email over SMTP, each an implementation of the engine's `Channel` port; and
//! the channels configuration file that names them.
//!
//! `config::load` parses and validates the file (resolving secrets from the environment or
//! files), `config::build` turns it into ready-to-use channels. Secrets (webhook URLs,
//! routing keys, signing secrets, SMTP passwords) are held in `secrecy::SecretString` and
//! never appear in `Debug` output, logs or error messages.

pub mod config;
pub mod email;
mod http;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

pub use config::{
    BuildError, ChannelConfig, ChannelSettings, ChannelsConfig, ConfigError, EmailConfig, EmailTls,
    PagerDutyConfig, SecretSpec, SlackConfig, WebhookConfig, build, build_with_clock, load,
};
pub use email::EmailChannel;
pub use pagerduty::PagerDutyChannel;
pub use slack::SlackChannel;
pub use webhook::{SignatureError, WebhookChannel, sign, verify_signature};

use breakglass_engine::ports::Alert;

/// The fields every channel shows, as (label, value); absent values read `—`.
pub(crate) fn shown_fields(alert: &Alert) -> [(&'static str, String); 6] {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_owned());
    [
        ("Procedure", or_dash(&alert.procedure)),
        ("Requester", or_dash(&alert.requester)),
        ("Reason", or_dash(&alert.reason)),
        ("Ticket", or_dash(&alert.ticket)),
        ("Status", or_dash(&alert.state)),
        ("When", alert.at.to_string()),
    ]
}

/// The people an alert concerns in one line, labelled by what is asked of them
/// (`Approvers`, `Custodian`): `("Approvers", "alice <alice@example.com>, bob <@bob>")`.
pub(crate) fn people_line(alert: &Alert) -> Option<(&'static str, String)> {
    let first = alert.people.first()?;
    let label = if first.role == "approver" {
        "Approvers"
    } else {
        "Custodian"
    };
    Some((label, breakglass_engine::ports::named_list(&alert.people)))
}
