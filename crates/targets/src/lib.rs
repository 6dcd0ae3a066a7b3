//! Target adapters: one file per kind, each implementing the engine's `Target` port.
//!
//! - `postgres.rs`: an ephemeral login role per grant (`VALID UNTIL` the deadline, member of
//!   the procedure's role), ended by the operator connection (backends terminated, owned
//!   objects dropped or reassigned, role dropped).
//! - `mariadb.rs`: an ephemeral user per grant with the procedure's grants and a server-side
//!   `EVENT` at the deadline as the target-side backstop.
//! - `ssh.rs`: an OpenSSH user certificate for the requester's key, valid for the grant
//!   window; early close writes a key revocation list (`krl.rs`).
//! - `http.rs`: templated HTTP calls that enable and disable an emergency account.
//!
//! The sealed administrative credential reaches an adapter only as an argument of `grant`
//! and `rotate`; adapters never keep it. Ending, checking and discovering use the operator
//! credentials of the targets file (`config.rs`).

pub mod config;
mod http;
mod krl;
mod mariadb;
mod postgres;
mod ssh;

use std::sync::Arc;

use breakglass_engine::ports::Target;
use rand::RngCore;
use secrecy::SecretString;

pub use config::{Connection, ConnectionSettings, HttpCall, HttpConnection, TargetsConfig, load};
pub use http::HttpAccountTarget;
pub use krl::write_krl;
pub use mariadb::MariadbTarget;
pub use postgres::PostgresTarget;
pub use ssh::SshCaTarget;

/// Every adapter, built from a validated targets file. Adapters whose kind has no connection
/// in the file still answer: with a configuration error naming the missing connection.
pub fn build(config: &TargetsConfig) -> Vec<Arc<dyn Target>> {
    vec![
        Arc::new(PostgresTarget::new(config.operator_urls("postgres"))),
        Arc::new(MariadbTarget::new(config.operator_urls("mariadb"))),
        Arc::new(SshCaTarget::new()),
        Arc::new(HttpAccountTarget::new(config.http_connections())),
    ]
}

/// The name of the role, user or account a grant creates for a break: `bg_` and the break
/// id's random suffix, so it can be found and ended from the break alone after a crash.
pub fn grant_name(break_id: &str) -> String {
    let suffix: String = break_id
        .trim_start_matches("brk_")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    format!("bg_{suffix}")
}

/// A random password of 32 URL-safe characters (192 bits), safe inside a connection URL and
/// a quoted SQL literal.
pub fn random_password() -> SecretString {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    use base64::Engine as _;
    let s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    SecretString::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn grant_names_are_plain_identifiers() {
        assert_eq!(grant_name("brk_0123456789abcdef"), "bg_0123456789abcdef");
        assert_eq!(grant_name("brk_\"; drop"), "bg_drop");
        assert!(breakglass_domain::ident_ok(&grant_name(
            "brk_0123456789abcdef"
        )));
    }

    #[test]
    fn passwords_are_random_and_url_safe() {
        let a = random_password();
        let b = random_password();
        assert_eq!(a.expose_secret().len(), 32);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(
            a.expose_secret()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
