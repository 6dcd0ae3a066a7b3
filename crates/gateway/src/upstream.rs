//! The gateway's own login to the target, with the grant's login the requester never sees:
//! TLS by the procedure's `sslmode` (libpq's meaning: `require` encrypts without verifying,
//! `verify-ca`/`verify-full` verify against the system's roots), then SCRAM-SHA-256 (or MD5,
//! cleartext over TLS, or trust, whatever the server asks) with `postgres-protocol`.

use std::sync::Arc;
use std::time::Duration;

use breakglass_custody::Secret;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Io;
use crate::wire::{self, MAX_INSPECTED};

/// Why the gateway could not log in upstream. Never holds the password.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The held login is not a connection string the gateway understands.
    #[error("the grant's login is not a usable connection string: {0}")]
    Login(String),
    /// Connecting failed.
    #[error("cannot reach the target at {addr}: {message}")]
    Connect {
        /// host:port.
        addr: String,
        /// Why.
        message: String,
    },
    /// The server refused the login or spoke out of turn.
    #[error("the target refused the gateway's login: {0}")]
    Refused(String),
    /// A malformed message from the target.
    #[error("the target sent a malformed message: {0}")]
    Wire(#[from] wire::WireError),
}

/// A logged-in upstream connection.
pub struct Upstream {
    /// The connection, after ReadyForQuery.
    pub stream: Box<dyn Io>,
    /// The messages the server sent after AuthenticationOk up to and including
    /// ReadyForQuery (ParameterStatus…), without BackendKeyData; bytes already read past them.
    pub greeting: Vec<u8>,
    /// Bytes read after ReadyForQuery (normally none).
    pub leftover: Vec<u8>,
    /// The backend's cancellation key.
    pub backend_key: Option<(i32, Vec<u8>)>,
    /// host:port, for cancel requests.
    pub addr: String,
    /// Whether cancel requests should go over TLS (they need their own connection).
    pub tls: bool,
}

struct Login {
    user: String,
    password: Secret,
    host: String,
    port: u16,
    sslmode: String,
}

fn parse_login(url: &Secret) -> Result<Login, UpstreamError> {
    let text = std::str::from_utf8(url.expose_secret())
        .map_err(|_| UpstreamError::Login("not UTF-8".into()))?;
    let u = url::Url::parse(text).map_err(|e| UpstreamError::Login(e.to_string()))?;
    if !matches!(u.scheme(), "postgresql" | "postgres") {
        return Err(UpstreamError::Login(format!("scheme `{}`", u.scheme())));
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| UpstreamError::Login("bad percent-encoding".into()))
    };
    let host = u
        .host_str()
        .ok_or_else(|| UpstreamError::Login("no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let sslmode = u
        .query_pairs()
        .find(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| "prefer".into());
    let password = zeroize::Zeroizing::new(decode(u.password().unwrap_or_default())?);
    Ok(Login {
        user: decode(u.username())?,
        password: Secret::new(password.as_bytes().to_vec()),
        host,
        port: u.port().unwrap_or(5432),
        sslmode,
    })
}

/// Logs in to the target as the grant's role, for `database`, passing on the client's
/// harmless start-up parameters (`application_name`, `client_encoding`, `DateStyle`…).
pub async fn connect(
    login: &Secret,
    database: &str,
    client_params: &[(String, String)],
    timeout: Duration,
) -> Result<Upstream, UpstreamError> {
    let login = parse_login(login)?;
    tokio::time::timeout(timeout, connect_inner(&login, database, client_params))
        .await
        .map_err(|_| UpstreamError::Connect {
            addr: format!("{}:{}", login.host, login.port),
            message: format!("no answer within {}s", timeout.as_secs()),
        })?
}

async fn connect_inner(
    login: &Login,
    database: &str,
    client_params: &[(String, String)],
) -> Result<Upstream, UpstreamError> {
    let addr = format!("{}:{}", login.host, login.port);
    let connect_err = |e: std::io::Error| UpstreamError::Connect {
        addr: addr.clone(),
        message: e.to_string(),
    };
    let tcp = TcpStream::connect((login.host.as_str(), login.port))
        .await
        .map_err(connect_err)?;
    tcp.set_nodelay(true).map_err(connect_err)?;
    let mut stream: Box<dyn Io> = Box::new(tcp);
    let mut tls = false;
    if login.sslmode != "disable" {
        let mut req = Vec::with_capacity(8);
        req.extend_from_slice(&8i32.to_be_bytes());
        req.extend_from_slice(&wire::SSL_REQUEST.to_be_bytes());
        stream.write_all(&req).await.map_err(connect_err)?;
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer).await.map_err(connect_err)?;
        match answer[0] {
            b'S' => {
                stream = tls_connect(stream, &login.host, &login.sslmode)
                    .await
                    .map_err(|message| UpstreamError::Connect {
                        addr: addr.clone(),
                        message,
                    })?;
                tls = true;
            }
            b'N' if matches!(login.sslmode.as_str(), "allow" | "prefer") => {}
            b'N' => {
                return Err(UpstreamError::Connect {
                    addr,
                    message: format!(
                        "sslmode={} but the server does not offer TLS",
                        login.sslmode
                    ),
                });
            }
            other => {
                return Err(UpstreamError::Refused(format!(
                    "unexpected answer 0x{other:02x} to the TLS request"
                )));
            }
        }
    }

    let mut params: Vec<(&str, &str)> = vec![("user", &login.user), ("database", database)];
    for (k, v) in client_params {
        if matches!(
            k.as_str(),
            "application_name"
                | "client_encoding"
                | "DateStyle"
                | "TimeZone"
                | "extra_float_digits"
                | "search_path"
                | "IntervalStyle"
        ) {
            params.push((k, v));
        }
    }
    let mut out = bytes::BytesMut::new();
    frontend::startup_message(params.iter().copied(), &mut out)
        .map_err(|e| UpstreamError::Login(e.to_string()))?;
    stream.write_all(&out).await.map_err(connect_err)?;

    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut scram: Option<ScramSha256> = None;
    let mut greeting = Vec::new();
    let mut backend_key = None;
    loop {
        let (tag, len) = loop {
            if let Some(h) = wire::header(&buf, MAX_INSPECTED)?
                && buf.len() >= h.1
            {
                break h;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.map_err(connect_err)?;
            if n == 0 {
                return Err(UpstreamError::Refused(
                    "the server closed the connection during the login".into(),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let frame: Vec<u8> = buf.drain(..len).collect();
        let body = &frame[5..];
        match tag {
            b'R' => {
                let code = body
                    .get(..4)
                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or_else(|| UpstreamError::Refused("short authentication message".into()))?;
                let data = &body[4..];
                let mut reply = bytes::BytesMut::new();
                match code {
                    0 => {}
                    3 => {
                        if !tls {
                            return Err(UpstreamError::Refused(
                                "the server asks for a cleartext password over an unencrypted connection; use sslmode=require".into(),
                            ));
                        }
                        frontend::password_message(login.password.expose_secret(), &mut reply)
                            .map_err(|e| UpstreamError::Login(e.to_string()))?;
                    }
                    5 => {
                        let salt: [u8; 4] = data
                            .get(..4)
                            .and_then(|s| s.try_into().ok())
                            .ok_or_else(|| UpstreamError::Refused("short MD5 salt".into()))?;
                        let hashed = postgres_protocol::authentication::md5_hash(
                            login.user.as_bytes(),
                            login.password.expose_secret(),
                            salt,
                        );
                        frontend::password_message(hashed.as_bytes(), &mut reply)
                            .map_err(|e| UpstreamError::Login(e.to_string()))?;
                    }
                    10 => {
                        let offered = data
                            .split(|&b| b == 0)
                            .any(|m| m == SCRAM_SHA_256.as_bytes());
                        if !offered {
                            return Err(UpstreamError::Refused(
                                "the server offers no SCRAM-SHA-256".into(),
                            ));
                        }
                        // No channel binding (libpq's `channel_binding=disable`): the
                        // gateway does not bind SCRAM to the upstream TLS session.
                        let s = ScramSha256::new(
                            login.password.expose_secret(),
                            ChannelBinding::unsupported(),
                        );
                        frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut reply)
                            .map_err(|e| UpstreamError::Login(e.to_string()))?;
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram
                            .as_mut()
                            .ok_or_else(|| UpstreamError::Refused("SASL out of turn".into()))?;
                        s.update(data)
                            .map_err(|e| UpstreamError::Refused(format!("SCRAM: {e}")))?;
                        frontend::sasl_response(s.message(), &mut reply)
                            .map_err(|e| UpstreamError::Login(e.to_string()))?;
                    }
                    12 => {
                        let s = scram
                            .as_mut()
                            .ok_or_else(|| UpstreamError::Refused("SASL out of turn".into()))?;
                        s.finish(data).map_err(|e| {
                            UpstreamError::Refused(format!(
                                "the server's SCRAM proof is wrong: {e}"
                            ))
                        })?;
                    }
                    other => {
                        return Err(UpstreamError::Refused(format!(
                            "unsupported authentication method {other}"
                        )));
                    }
                }
                if !reply.is_empty() {
                    stream.write_all(&reply).await.map_err(connect_err)?;
                }
            }
            b'E' => {
                let why = match wire::decode_server(tag, body)? {
                    wire::ServerMessage::Error { code, message, .. } => {
                        format!("{code}: {message}")
                    }
                    _ => "error".into(),
                };
                return Err(UpstreamError::Refused(why));
            }
            b'K' => {
                if let wire::ServerMessage::BackendKey { pid, key } =
                    wire::decode_server(tag, body)?
                {
                    backend_key = Some((pid, key.to_vec()));
                }
            }
            b'Z' => {
                greeting.extend_from_slice(&frame);
                return Ok(Upstream {
                    stream,
                    greeting,
                    leftover: buf,
                    backend_key,
                    addr,
                    tls,
                });
            }
            _ => greeting.extend_from_slice(&frame),
        }
    }
}

/// Sends a CancelRequest for `pid`/`key` to the target on a new connection.
pub async fn cancel(addr: &str, tls: bool, pid: i32, key: &[u8]) -> std::io::Result<()> {
    let mut tcp = TcpStream::connect(addr).await?;
    let mut req = Vec::new();
    req.extend_from_slice(&i32::try_from(12 + key.len()).unwrap_or(16).to_be_bytes());
    req.extend_from_slice(&wire::CANCEL_REQUEST.to_be_bytes());
    req.extend_from_slice(&pid.to_be_bytes());
    req.extend_from_slice(key);
    if tls {
        let mut ssl = Vec::new();
        ssl.extend_from_slice(&8i32.to_be_bytes());
        ssl.extend_from_slice(&wire::SSL_REQUEST.to_be_bytes());
        tcp.write_all(&ssl).await?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer).await?;
        if answer[0] == b'S' {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            let mut s = tls_connect(Box::new(tcp), host, "require")
                .await
                .map_err(std::io::Error::other)?;
            s.write_all(&req).await?;
            return s.shutdown().await;
        }
    }
    tcp.write_all(&req).await?;
    tcp.shutdown().await
}

async fn tls_connect(
    stream: Box<dyn Io>,
    host: &str,
    sslmode: &str,
) -> Result<Box<dyn Io>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if matches!(sslmode, "verify-ca" | "verify-full") {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        // libpq's `require`/`prefer`: encrypted, not verified.
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("`{host}` is not a TLS server name: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let s = connector
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    Ok(Box::new(s))
}

/// libpq's `sslmode=require`: the connection is encrypted, the certificate is not checked
/// (signatures are, so the handshake itself is sound).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
