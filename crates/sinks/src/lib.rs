//! Audit sinks: separate, locked systems that receive every audit entry and every signed
//! checkpoint through the durable outbox. One adapter per file; `open` builds one from its
//! configuration string `NAME=URL`.
//!
//! | URL | sink |
//! |---|---|
//! | `file:///var/log/breakglass/audit.jsonl?max_bytes=104857600` | JSON Lines, fsynced, rotated by size |
//! | `nats://127.0.0.1:4222?stream=BREAKGLASS_AUDIT&subject=breakglass.audit` | NATS JetStream, deny-delete and deny-purge |
//! | `syslog+tcp://127.0.0.1:6514` (or `syslog+tls://`) | RFC 5424 over TCP, octet-counted framing |
//! | `postgres://breakglass_sink@host/audit?schema=breakglass_audit` | insert-only PostgreSQL table |

pub mod file;
pub mod jetstream;
pub mod postgres;
pub mod syslog;

use std::sync::Arc;

use breakglass_engine::ports::Sink;

/// A sink configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("sink `{name}`: {message}")]
pub struct ConfigError {
    /// The sink's name (or the whole spec when it has none).
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// Builds a sink from `NAME=URL`.
pub async fn open(spec: &str) -> Result<Arc<dyn Sink>, ConfigError> {
    let (name, url) = spec.split_once('=').ok_or_else(|| ConfigError {
        name: spec.to_owned(),
        message: "expected NAME=URL".into(),
    })?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        return Err(ConfigError {
            name: name.to_owned(),
            message: "name must be letters, digits, '-' or '_'".into(),
        });
    }
    let err = |message: String| ConfigError {
        name: name.to_owned(),
        message,
    };
    let url = url.trim();
    if url.starts_with("file://") {
        Ok(Arc::new(file::FileSink::open(name, url).map_err(err)?))
    } else if url.starts_with("nats://") {
        Ok(Arc::new(
            jetstream::JetStreamSink::open(name, url)
                .await
                .map_err(err)?,
        ))
    } else if url.starts_with("syslog+tcp://") || url.starts_with("syslog+tls://") {
        Ok(Arc::new(syslog::SyslogSink::open(name, url).map_err(err)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PostgresSink::open(name, url).await.map_err(err)?,
        ))
    } else {
        Err(err(
            "unknown URL scheme (file://, nats://, syslog+tcp://, syslog+tls://, postgres://)"
                .into(),
        ))
    }
}
