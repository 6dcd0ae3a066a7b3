//! Relaying a client to the gateway of the server that holds its break's login.
//!
//! A proxy break's login lives in the memory of one server (the one that granted it, or renewed
//! it last). When several servers share a store behind one address, a client may reach
//! another: that server connects to the holder's gateway (its registered peer address, over
//! TLS when the holder asks for it, the certificate verified), logs in there with the client's
//! own start-up parameters and token, and from then on copies bytes both ways. The holder
//! checks the token, enforces the window and records every statement, as for a client of its
//! own; the relaying server records only that it passed the client on (`gateway.relayed`).
//! The start-up carries [`RELAYED_BY`], so a relayed client is never relayed again (a holder
//! that lost the login refuses it instead of sending it round).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::wire;
use crate::{Io, read_message};

/// Start-up parameter naming the server that relayed a client (not passed to the target).
pub const RELAYED_BY: &str = "breakglass_relayed_by";

/// How a relayed login ended.
pub(crate) enum Relayed {
    /// The holder refused the client (its error was passed on): with its SQLSTATE.
    Refused(String),
    /// The client was admitted and the session ran until the holder closed it.
    Served {
        /// Bytes from the holder to the client.
        bytes_out: u64,
    },
}

/// TLS settings for connecting to other servers' gateways: the system's trust roots plus
/// `extra_pem`'s certificates (the deployment's own, e.g. the data directory's self-signed
/// certificate that servers of one deployment share).
pub fn peer_tls(extra_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = extra_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("a certificate for peer gateways: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("a certificate for peer gateways: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Arc::new(config))
}

/// The host of `HOST:PORT` (an IPv6 address without its brackets).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// What the relay needs to reach the holder.
pub(crate) struct Holder<'a> {
    /// `HOST:PORT` of its gateway.
    pub(crate) address: &'a str,
    /// Whether its gateway asks for TLS.
    pub(crate) tls: bool,
    /// TLS settings (the system's roots when `None`).
    pub(crate) tls_config: Option<Arc<rustls::ClientConfig>>,
    /// How long connecting and logging in there may take.
    pub(crate) timeout: Duration,
}

/// Logs `client` in at the holder's gateway with its start-up `params` and `token`, passes
/// the holder's answers on, and then relays the session until either side closes.
/// `on_key` receives the holder's cancellation key (so a cancel request that reaches this
/// server is sent on to the holder). Errors name the holder and never carry the token.
pub(crate) async fn relay(
    client: &mut Box<dyn Io>,
    params: &[(String, String)],
    token: &[u8],
    relayed_by: &str,
    holder: Holder<'_>,
    on_key: impl FnOnce(i32, [u8; 4]),
) -> Result<Relayed, String> {
    let address = holder.address;
    let (mut upstream, mut buf) =
        tokio::time::timeout(holder.timeout, login(params, token, relayed_by, &holder))
            .await
            .map_err(|_| format!("the gateway at {address} did not answer in time"))??;
    // The holder's answers up to its ReadyForQuery (or its error) go to the client as they
    // are; the cancellation key is kept.
    let mut on_key = Some(on_key);
    loop {
        let (tag, body) = tokio::time::timeout(
            holder.timeout,
            read_message(&mut upstream, &mut buf, 1 << 20),
        )
        .await
        .map_err(|_| format!("the gateway at {address} did not answer in time"))?
        .map_err(|e| format!("the gateway at {address}: {e}"))?;
        let mut frame = Vec::with_capacity(body.len() + 5);
        wire::message(&mut frame, tag, &body);
        client.write_all(&frame).await.map_err(|e| e.to_string())?;
        match tag {
            b'E' => {
                client.flush().await.map_err(|e| e.to_string())?;
                let _ = client.shutdown().await;
                return Ok(Relayed::Refused(sqlstate(&body)));
            }
            b'K' if body.len() >= 8 => {
                let pid = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let key = [body[4], body[5], body[6], body[7]];
                if let Some(f) = on_key.take() {
                    f(pid, key);
                }
            }
            b'Z' => break,
            _ => {}
        }
    }
    client.flush().await.map_err(|e| e.to_string())?;
    // What the holder sent after its ReadyForQuery (nothing, unless the client was quick).
    if !buf.is_empty() {
        client.write_all(&buf).await.map_err(|e| e.to_string())?;
    }
    // Both ways until the holder closes (it ends the session at the deadline, on
    // termination, or after the client's Terminate or end of stream).
    let (mut from_client, mut to_client) = tokio::io::split(&mut *client);
    let (mut from_holder, mut to_holder) = tokio::io::split(&mut upstream);
    let up = async {
        let n = tokio::io::copy(&mut from_client, &mut to_holder).await;
        let _ = to_holder.shutdown().await;
        n.unwrap_or(0)
    };
    let down = async {
        let n = tokio::io::copy(&mut from_holder, &mut to_client).await;
        let _ = to_client.shutdown().await;
        n.unwrap_or(0)
    };
    tokio::pin!(up, down);
    let bytes_out = tokio::select! {
        bytes_out = &mut down => bytes_out,
        _ = &mut up => {
            // The client is done; the holder ends the session and closes.
            tokio::time::timeout(holder.timeout, &mut down).await.unwrap_or(0)
        }
    };
    Ok(Relayed::Served {
        bytes_out: bytes_out + buf.len() as u64,
    })
}

/// Connects to the holder's gateway and sends the start-up and the token; the holder's
/// answer is left to read: from the bytes returned with the stream, then the stream.
async fn login(
    params: &[(String, String)],
    token: &[u8],
    relayed_by: &str,
    holder: &Holder<'_>,
) -> Result<(Box<dyn Io>, Vec<u8>), String> {
    let address = holder.address;
    let failed = |e: &dyn std::fmt::Display| format!("the gateway at {address}: {e}");
    let tcp = TcpStream::connect(address).await.map_err(|e| failed(&e))?;
    let _ = tcp.set_nodelay(true);
    let mut stream: Box<dyn Io> = if holder.tls {
        let mut tcp = tcp;
        let mut ssl = Vec::with_capacity(8);
        ssl.extend_from_slice(&8i32.to_be_bytes());
        ssl.extend_from_slice(&wire::SSL_REQUEST.to_be_bytes());
        tcp.write_all(&ssl).await.map_err(|e| failed(&e))?;
        let mut answer = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut answer)
            .await
            .map_err(|e| failed(&e))?;
        if answer[0] != b'S' {
            return Err(failed(&"it does not offer TLS"));
        }
        let config = match &holder.tls_config {
            Some(c) => c.clone(),
            None => peer_tls(None)?,
        };
        let name = rustls::pki_types::ServerName::try_from(host_of(address).to_owned())
            .map_err(|e| failed(&format!("not a TLS server name: {e}")))?;
        let s = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| failed(&format!("TLS: {e}")))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let mut startup: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k != RELAYED_BY)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    startup.push((RELAYED_BY, relayed_by));
    let mut out = bytes::BytesMut::new();
    postgres_protocol::message::frontend::startup_message(startup.iter().copied(), &mut out)
        .map_err(|e| failed(&e))?;
    stream.write_all(&out).await.map_err(|e| failed(&e))?;
    // The holder asks for the token as a cleartext password, as it asks every client.
    let mut buf = Vec::new();
    let (tag, body) = read_message(&mut stream, &mut buf, 1 << 16)
        .await
        .map_err(|e| failed(&e))?;
    match (tag, body.get(..4)) {
        (b'R', Some([0, 0, 0, 3])) => {}
        (b'E', _) => {
            // Refused before the token (too many failed logins from this server…): the
            // caller reads the same error first.
            let mut again = Vec::new();
            wire::message(&mut again, tag, &body);
            again.extend_from_slice(&buf);
            return Ok((stream, again));
        }
        _ => return Err(failed(&"it did not ask for the token")),
    }
    let mut password = zeroize::Zeroizing::new(Vec::with_capacity(token.len() + 6));
    let mut body = zeroize::Zeroizing::new(Vec::with_capacity(token.len() + 1));
    body.extend_from_slice(token);
    body.push(0);
    wire::message(&mut password, b'p', &body);
    stream.write_all(&password).await.map_err(|e| failed(&e))?;
    stream.flush().await.map_err(|e| failed(&e))?;
    Ok((stream, buf))
}

/// The SQLSTATE of an ErrorResponse body (empty when it has none).
fn sqlstate(body: &[u8]) -> String {
    let mut fields = body;
    while let Some((&kind, rest)) = fields.split_first() {
        if kind == 0 {
            break;
        }
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        if kind == b'C' {
            return String::from_utf8_lossy(&rest[..end]).into_owned();
        }
        fields = rest.get(end + 1..).unwrap_or_default();
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_sqlstates_are_read() {
        assert_eq!(host_of("10.0.0.5:5433"), "10.0.0.5");
        assert_eq!(host_of("[::1]:5433"), "::1");
        assert_eq!(host_of("gw.example.com:5433"), "gw.example.com");
        let mut body = Vec::new();
        for (k, v) in [(b'S', "FATAL"), (b'C', "28P01"), (b'M', "wrong token")] {
            body.push(k);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        assert_eq!(sqlstate(&body), "28P01");
        assert_eq!(sqlstate(&[0]), "");
        assert_eq!(sqlstate(b"Cunterminated"), "unterminated");
    }
}
