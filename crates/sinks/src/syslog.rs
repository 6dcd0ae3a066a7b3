//! Syslog sink: each record as one RFC 5424 message over TCP, framed by RFC 6587 octet
//! counting, to a collector such as rsyslog or a SIEM.
//!
//! URL: `syslog+tcp://host:port[?hostname=NAME]`. `syslog+tls://` is recognised but refused:
//! TLS is not supported in this build.
//!
//! The formatting is written here rather than taken from a crate: the syslog crates on
//! crates.io either speak RFC 3164, frame with newlines (which breaks on multi-line values), or
//! cannot carry structured data over a plain TCP stream with octet counting.
//!
//! Syslog has no acknowledgements: a record counts as delivered once the kernel accepted the
//! bytes. The sink is a copy for people and SIEMs, so it cannot be read back.

use std::time::Duration;

use async_trait::async_trait;
use breakglass_audit::{SinkRecord, format_rfc3339_ms};
use breakglass_engine::ports::{Sink, SinkError};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Facility `authpriv` (10) × 8 + severity `notice` (5).
pub const PRI: u8 = 10 * 8 + 5;
/// The SD-ID of the structured data element (32473 is the example enterprise number of
/// RFC 5612).
pub const SD_ID: &str = "breakglass@32473";
/// The APP-NAME field.
pub const APP_NAME: &str = "breakglass";

/// Limit on connecting and on writing one message.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// An audit sink sending RFC 5424 messages over TCP.
#[derive(Debug)]
pub struct SyslogSink {
    name: String,
    addr: String,
    hostname: String,
    procid: String,
    /// The open connection, kept between deliveries and replaced after an error.
    conn: Mutex<Option<TcpStream>>,
}

impl SyslogSink {
    /// Opens the sink named `name` from a `syslog+tcp://host:port[?hostname=NAME]` URL. Does
    /// not connect: the first delivery does, so the server starts while the collector is down.
    pub fn open(name: &str, url: &str) -> Result<SyslogSink, String> {
        if url.starts_with("syslog+tls://") {
            return Err("TLS not supported in this build; use syslog+tcp:// (e.g. through a local relay that adds TLS)".into());
        }
        let rest = url
            .strip_prefix("syslog+tcp://")
            .ok_or("URL must start with syslog+tcp://")?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        let port_ok = authority.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok || authority.contains(['/', '@', ' ']) {
            return Err("expected syslog+tcp://host:port".into());
        }
        let mut hostname = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("hostname", value)) => hostname = Some(value.to_owned()),
                _ => return Err("unknown URL parameter (hostname)".into()),
            }
        }
        let hostname = hostname
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| header_field(h.trim()))
            .unwrap_or_else(|| "-".into());
        Ok(SyslogSink {
            name: name.to_owned(),
            addr: authority.to_owned(),
            hostname,
            procid: std::process::id().to_string(),
            conn: Mutex::new(None),
        })
    }

    async fn send(&self, frame: &[u8]) -> Result<(), SinkError> {
        let mut conn = self.conn.lock().await;
        if conn.as_ref().is_some_and(|stream| !still_open(stream)) {
            *conn = None;
        }
        let stream = match conn.as_mut() {
            Some(stream) => stream,
            None => {
                let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(&self.addr))
                    .await
                    .map_err(|_| {
                        SinkError::Unavailable(format!("connecting to {}: timed out", self.addr))
                    })?
                    .map_err(|e| {
                        SinkError::Unavailable(format!("connecting to {}: {e}", self.addr))
                    })?;
                // A TCP connect to a local port nothing listens on can succeed by connecting
                // the socket to itself (the kernel picked that same port as its source port):
                // records written there would be reported shipped and never arrive.
                if let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr())
                    && local == peer
                {
                    return Err(SinkError::Unavailable(format!(
                        "connecting to {}: nothing listens there (the connection reached itself)",
                        self.addr
                    )));
                }
                // Messages are small and each should leave at once.
                let _ = stream.set_nodelay(true);
                conn.insert(stream)
            }
        };
        let written = tokio::time::timeout(IO_TIMEOUT, async {
            stream.write_all(frame).await?;
            stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                *conn = None;
                Err(SinkError::Unavailable(format!(
                    "writing to {}: {e}",
                    self.addr
                )))
            }
            Err(_) => {
                *conn = None;
                Err(SinkError::Unavailable(format!(
                    "writing to {}: timed out",
                    self.addr
                )))
            }
        }
    }
}

#[async_trait]
impl Sink for SyslogSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, record: &SinkRecord) -> Result<(), SinkError> {
        let message = format_message(record, &self.hostname, &self.procid);
        self.send(&frame(&message)).await
    }

    async fn read_back(&self) -> Result<Vec<SinkRecord>, SinkError> {
        Err(SinkError::NotReadable(self.name.clone()))
    }
}

/// Formats `record` as an RFC 5424 message (without framing):
/// `<85>1 TIMESTAMP HOSTNAME breakglass PROCID MSGID [breakglass@32473 seq="N" kind="K"] LINE`.
///
/// TIMESTAMP is the record's own time (`-` if it has no four-digit-year form); MSGID is
/// `entry` or `checkpoint`; a checkpoint's element also carries `key_id`. MSG is the record's
/// JSON line, UTF-8 without a BOM.
pub fn format_message(record: &SinkRecord, hostname: &str, procid: &str) -> String {
    let (time_ms, msgid, seq, kind, key_id) = match record {
        SinkRecord::Entry(e) => (e.time_ms, "entry", e.seq, e.kind.as_str(), None),
        SinkRecord::Checkpoint(c) => (
            c.checkpoint.time_ms,
            "checkpoint",
            c.checkpoint.seq,
            "checkpoint",
            Some(c.checkpoint.key_id.as_str()),
        ),
    };
    let timestamp = format_rfc3339_ms(time_ms).unwrap_or_else(|| "-".into());
    let mut sd = format!("[{SD_ID} seq=\"{seq}\" kind=\"{}\"", sd_value(kind));
    if let Some(key_id) = key_id {
        sd.push_str(&format!(" key_id=\"{}\"", sd_value(key_id)));
    }
    sd.push(']');
    format!(
        "<{PRI}>1 {timestamp} {} {APP_NAME} {} {msgid} {sd} {}",
        header_field(hostname),
        header_field(procid),
        record.to_line()
    )
}

/// Frames a message by RFC 6587 octet counting: `LEN SP MSG`, LEN in bytes.
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message.as_bytes());
    out
}

/// Escapes an SD-PARAM value: `"`, `\` and `]` get a backslash (RFC 5424 §6.3.3).
fn sd_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A header field: printable US-ASCII without spaces, at most 255 bytes, `-` when empty.
fn header_field(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if cleaned.is_empty() {
        "-".into()
    } else {
        cleaned
    }
}

/// Whether a kept connection still looks usable: the collector may have closed it (restart,
/// idle timeout), and a write into a closed socket can succeed once and lose the message.
fn still_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 64];
    match stream.try_read(&mut probe) {
        Ok(0) => false,
        // A collector has nothing to say; ignore whatever it sent.
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_sd_values_and_cleans_header_fields() {
        assert_eq!(sd_value(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
        assert_eq!(sd_value("plain.kind"), "plain.kind");
        assert_eq!(header_field("host name\n"), "hostname");
        assert_eq!(header_field(" "), "-");
        assert_eq!(header_field(&"x".repeat(300)).len(), 255);
    }

    #[test]
    fn frames_by_byte_length() {
        assert_eq!(frame("é"), b"2 \xc3\xa9".to_vec());
    }

    #[test]
    fn parses_urls() {
        let s = SyslogSink::open("s", "syslog+tcp://127.0.0.1:6514?hostname=bg-1").unwrap();
        assert_eq!(
            (s.addr.as_str(), s.hostname.as_str()),
            ("127.0.0.1:6514", "bg-1")
        );
        assert!(
            SyslogSink::open("s", "syslog+tls://h:6514")
                .unwrap_err()
                .contains("TLS not supported")
        );
        for bad in [
            "syslog+tcp://h",
            "syslog+tcp://:1",
            "syslog+tcp://h:0",
            "syslog+tcp://h:1?x=y",
            "syslog://h:1",
        ] {
            assert!(SyslogSink::open("s", bad).is_err(), "{bad}");
        }
    }
}
