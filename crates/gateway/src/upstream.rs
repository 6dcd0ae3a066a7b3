//! The gateway's own login to the target, with the grant's login the requester never sees:
//! TLS by the procedure's `sslmode` (libpq's meaning: `require` encrypts without verifying,
//! `verify-ca`/`verify-full` verify against the system's roots), then SCRAM-SHA-256 (or MD5,
//! cleartext over TLS, or trust, whatever the server asks) with `postgres-protocol`. Over TLS,
//! SCRAM is bound to the TLS session (SCRAM-SHA-256-PLUS, `tls-server-end-point`) whenever the
//! server offers it, as libpq's default `channel_binding=prefer` does: with `sslmode=require`,
//! which checks no certificate, a man in the middle who terminates TLS cannot relay the
//! exchange, since the server's proof then covers the certificate it presented itself.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use breakglass_custody::Secret;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ScramSha256,
};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
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
    /// The target's login would not be bound to the TLS session, and the procedure's
    /// `channel_binding: require` demands it: the gateway itself hung up, sending nothing.
    #[error("the gateway did not log in to the target: {0}")]
    Unbound(String),
    /// A malformed message from the target.
    #[error("the target sent a malformed message: {0}")]
    Wire(#[from] wire::WireError),
}

/// A server connection's TCP socket. Its readiness is delivered by the event loop of the
/// runtime it was registered with: the relay thread that connected it. A kept connection taken
/// by a session on another relay thread (pool.rs) is moved to that thread's runtime
/// ([`ServerStream::rehome`]); left where it was, every answer of the server would wake the
/// first thread's event loop, which would then wake the second thread through its eventfd —
/// two wake-ups and a cross-thread hand-off per message (seen in the benchmark: one relay
/// thread writing another's eventfd ~3,400 times a second).
pub struct Socket(Option<TcpStream>);

fn moved() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the server socket was lost while moving it between relay threads",
    )
}

impl Socket {
    /// Deregisters the socket from the runtime it was registered with and registers it with
    /// the current one (the caller's relay thread). The socket, its buffered bytes and any TLS
    /// state above it are unchanged.
    fn rehome(&mut self) -> io::Result<()> {
        let tcp = self.0.take().ok_or_else(moved)?;
        let std = tcp.into_std()?;
        self.0 = Some(TcpStream::from_std(std)?);
        Ok(())
    }

    fn tcp(self: Pin<&mut Self>) -> io::Result<Pin<&mut TcpStream>> {
        self.get_mut().0.as_mut().map(Pin::new).ok_or_else(moved)
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.tcp()?.poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.tcp()?.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp()?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp()?.poll_shutdown(cx)
    }
}

/// A logged-in server connection's stream: plain TCP, TLS over TCP, or (tests) any stream.
pub enum ServerStream {
    /// Plain TCP (`sslmode=disable`, or `allow`/`prefer` refused by the server).
    Plain(Socket),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<Socket>>),
    /// Any other stream, never moved between threads (tests).
    Other(Box<dyn Io>),
}

impl ServerStream {
    /// Moves the socket to the current relay thread's runtime (see [`Socket`]).
    pub fn rehome(&mut self) -> io::Result<()> {
        match self {
            ServerStream::Plain(s) => s.rehome(),
            ServerStream::Tls(t) => t.get_mut().0.rehome(),
            ServerStream::Other(_) => Ok(()),
        }
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Tls(t) => Pin::new(&mut **t).poll_read(cx, buf),
            ServerStream::Other(o) => Pin::new(&mut **o).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Tls(t) => Pin::new(&mut **t).poll_write(cx, buf),
            ServerStream::Other(o) => Pin::new(&mut **o).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(t) => Pin::new(&mut **t).poll_flush(cx),
            ServerStream::Other(o) => Pin::new(&mut **o).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Tls(t) => Pin::new(&mut **t).poll_shutdown(cx),
            ServerStream::Other(o) => Pin::new(&mut **o).poll_shutdown(cx),
        }
    }
}

/// A logged-in upstream connection.
pub struct Upstream {
    /// The connection, after ReadyForQuery.
    pub stream: ServerStream,
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
    /// libpq's `channel_binding`: `disable`, `prefer` (default) or `require`.
    channel_binding: String,
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
    let channel_binding = u
        .query_pairs()
        .find(|(k, _)| k == "channel_binding")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| "prefer".into());
    if !matches!(channel_binding.as_str(), "disable" | "prefer" | "require") {
        return Err(UpstreamError::Login(format!(
            "channel_binding `{channel_binding}` is not one of disable, prefer, require"
        )));
    }
    let password = zeroize::Zeroizing::new(decode(u.password().unwrap_or_default())?);
    Ok(Login {
        user: decode(u.username())?,
        password: Secret::new(password.as_bytes().to_vec()),
        host,
        port: u.port().unwrap_or(5432),
        sslmode,
        channel_binding,
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
    let mut socket = Socket(Some(tcp));
    // TLS by `sslmode`, and the server certificate's `tls-server-end-point` hash, for SCRAM
    // channel binding.
    let mut tls_answer = None;
    if login.sslmode != "disable" {
        let mut req = Vec::with_capacity(8);
        req.extend_from_slice(&8i32.to_be_bytes());
        req.extend_from_slice(&wire::SSL_REQUEST.to_be_bytes());
        socket.write_all(&req).await.map_err(connect_err)?;
        let mut answer = [0u8; 1];
        socket.read_exact(&mut answer).await.map_err(connect_err)?;
        match answer[0] {
            b'S' => tls_answer = Some(()),
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
    let (mut stream, tls, end_point) = match tls_answer {
        Some(()) => {
            let (s, hash) = tls_connect(socket, &login.host, &login.sslmode)
                .await
                .map_err(|message| UpstreamError::Connect {
                    addr: addr.clone(),
                    message,
                })?;
            (ServerStream::Tls(Box::new(s)), true, hash)
        }
        None => (ServerStream::Plain(socket), false, None),
    };

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
    // Whether the SCRAM exchange under way is bound to the TLS session.
    let mut bound = false;
    let mode = login.channel_binding.as_str();
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
                    0 => require_bound(mode, bound, "accepted the login")?,
                    3 => {
                        require_bound(mode, false, "asks for a cleartext password")?;
                        if !tls {
                            return Err(UpstreamError::Refused(
                                "the server asks for a cleartext password over an unencrypted connection; use sslmode=require".into(),
                            ));
                        }
                        frontend::password_message(login.password.expose_secret(), &mut reply)
                            .map_err(|e| UpstreamError::Login(e.to_string()))?;
                    }
                    5 => {
                        require_bound(mode, false, "asks for an MD5 password")?;
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
                        let mechanisms: Vec<&[u8]> = data.split(|&b| b == 0).collect();
                        let offers = |m: &str| mechanisms.contains(&m.as_bytes());
                        let (mechanism, binding) = scram_choice(
                            mode,
                            tls,
                            end_point.as_deref(),
                            offers(SCRAM_SHA_256_PLUS),
                            offers(SCRAM_SHA_256),
                        )
                        .map_err(|why| {
                            if mode == "require" {
                                UpstreamError::Unbound(why.into())
                            } else {
                                UpstreamError::Refused(why.into())
                            }
                        })?;
                        bound = mechanism == SCRAM_SHA_256_PLUS;
                        let s = ScramSha256::new(login.password.expose_secret(), binding);
                        frontend::sasl_initial_response(mechanism, s.message(), &mut reply)
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
            let (mut s, _) = tls_connect(tcp, host, "require")
                .await
                .map_err(std::io::Error::other)?;
            s.write_all(&req).await?;
            return s.shutdown().await;
        }
    }
    tcp.write_all(&req).await?;
    tcp.shutdown().await
}

/// The SCRAM mechanism and channel binding to use, by libpq's `channel_binding` `mode`:
/// bound to the TLS session when the server offers SCRAM-SHA-256-PLUS and the certificate's
/// hash is known (unless `disable`); otherwise plain SCRAM-SHA-256, telling the server (`y`)
/// that the client could bind when it is on TLS and the server offered no binding (so a server
/// that does offer it detects one stripped on the way), or (`n`) that it does not. With
/// `require`, an exchange that cannot be bound is an error; the error says why.
fn scram_choice(
    mode: &str,
    tls: bool,
    end_point: Option<&[u8]>,
    offers_plus: bool,
    offers_plain: bool,
) -> Result<(&'static str, ChannelBinding), &'static str> {
    match end_point {
        Some(hash) if tls && offers_plus && mode != "disable" => Ok((
            SCRAM_SHA_256_PLUS,
            ChannelBinding::tls_server_end_point(hash.to_vec()),
        )),
        _ if mode == "require" && !tls => {
            Err("channel_binding=require, but the connection is not encrypted")
        }
        _ if mode == "require" && !offers_plus => Err(
            "channel_binding=require, but the server does not offer SCRAM-SHA-256-PLUS (channel binding)",
        ),
        _ if mode == "require" => Err(
            "channel_binding=require, but the server's certificate has no hash to bind with (an Ed25519 certificate)",
        ),
        _ if !offers_plain => Err("the server offers no SCRAM-SHA-256"),
        _ if tls && !offers_plus && mode != "disable" => {
            Ok((SCRAM_SHA_256, ChannelBinding::unrequested()))
        }
        _ => Ok((SCRAM_SHA_256, ChannelBinding::unsupported())),
    }
}

/// With `channel_binding=require`, refuses a login the server would complete without a bound
/// SCRAM exchange (trust, a password, MD5, or SCRAM it accepted unbound), as libpq does: a man
/// in the middle could answer any of those itself.
fn require_bound(mode: &str, bound: bool, what: &str) -> Result<(), UpstreamError> {
    if mode == "require" && !bound {
        return Err(UpstreamError::Unbound(format!(
            "channel_binding=require, but the server {what} without channel binding"
        )));
    }
    Ok(())
}

/// The `tls-server-end-point` channel binding data of a server certificate (RFC 5929 §4.1):
/// the certificate hashed with its signature's hash function, SHA-256 where that is MD5 or
/// SHA-1. `None` for a signature without a hash function of its own (Ed25519), which
/// PostgreSQL cannot bind either, or a certificate that does not parse.
pub fn end_point_hash(cert_der: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest;
    use x509_parser::prelude::FromDer;
    use x509_parser::signature_algorithm::SignatureAlgorithm;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert_der).ok()?;
    let algorithm = &cert.signature_algorithm;
    let hash_oid = match SignatureAlgorithm::try_from(algorithm) {
        Ok(SignatureAlgorithm::RSASSA_PSS(params)) => params.hash_algorithm_oid().to_id_string(),
        Ok(SignatureAlgorithm::RSA | SignatureAlgorithm::ECDSA | SignatureAlgorithm::DSA) => {
            match algorithm.algorithm.to_id_string().as_str() {
                // sha384WithRSAEncryption, ecdsa-with-SHA384
                "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => "2.16.840.1.101.3.4.2.2".into(),
                // sha512WithRSAEncryption, ecdsa-with-SHA512
                "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => "2.16.840.1.101.3.4.2.3".into(),
                // sha256With…, and MD5 or SHA-1 signatures, which bind with SHA-256.
                "1.2.840.113549.1.1.11"
                | "1.2.840.10045.4.3.2"
                | "2.16.840.1.101.3.4.3.2"
                | "1.2.840.113549.1.1.4"
                | "1.2.840.113549.1.1.5"
                | "1.2.840.10045.4.1"
                | "1.2.840.10040.4.3" => "2.16.840.1.101.3.4.2.1".into(),
                _ => return None,
            }
        }
        _ => return None,
    };
    match hash_oid.as_str() {
        // SHA-256, and SHA-1 (RSASSA-PSS's default), which binds with SHA-256.
        "2.16.840.1.101.3.4.2.1" | "1.3.14.3.2.26" => Some(sha2::Sha256::digest(cert_der).to_vec()),
        "2.16.840.1.101.3.4.2.2" => Some(sha2::Sha384::digest(cert_der).to_vec()),
        "2.16.840.1.101.3.4.2.3" => Some(sha2::Sha512::digest(cert_der).to_vec()),
        _ => None,
    }
}

/// TLS to the target by `sslmode`; with the server certificate's channel binding hash.
async fn tls_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    sslmode: &str,
) -> Result<(tokio_rustls::client::TlsStream<S>, Option<Vec<u8>>), String> {
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
    let end_point = s
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| end_point_hash(cert.as_ref()));
    Ok((s, end_point))
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

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn cert(alg: &'static rcgen::SignatureAlgorithm) -> (Vec<u8>, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        (params.self_signed(&key).unwrap().der().to_vec(), key)
    }

    /// A TLS server configuration with a fresh self-signed P-256 certificate for `localhost`.
    fn tls_server_config() -> rustls::ServerConfig {
        let (der, key) = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(der)],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap()
    }

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A plain server connection registered with a runtime that is then dropped (a relay
    /// thread gone), and its peer.
    fn plain_of_a_dropped_runtime() -> (ServerStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let first = current_thread();
        let stream = first.block_on(async {
            ServerStream::Plain(Socket(Some(TcpStream::connect(addr).await.unwrap())))
        });
        let (peer, _) = listener.accept().unwrap();
        drop(first);
        (stream, peer)
    }

    /// A server connection registered with one relay thread's runtime and moved to another's
    /// is driven by the second alone: it goes on working after the first runtime is gone
    /// (without the move, its readiness could only come from the first one's event loop).
    #[test]
    fn a_moved_server_socket_is_driven_by_its_new_runtime() {
        let (mut stream, mut peer) = plain_of_a_dropped_runtime();
        let second = current_thread();
        let got = std::thread::spawn(move || {
            second.block_on(async move {
                stream.rehome().unwrap();
                let mut buf = [0u8; 5];
                tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
                    .await
                    .expect("the moved socket is woken by its new runtime")
                    .unwrap();
                stream.write_all(b"pong").await.unwrap();
                buf
            })
        });
        std::io::Write::write_all(&mut peer, b"hello").unwrap();
        assert_eq!(&got.join().unwrap(), b"hello");
        let mut back = [0u8; 4];
        std::io::Read::read_exact(&mut peer, &mut back).unwrap();
        assert_eq!(&back, b"pong");
    }

    /// Over TLS too: the socket under the TLS session moves, the session goes on.
    #[test]
    fn a_moved_tls_server_connection_goes_on_on_its_new_runtime() {
        let config = tls_server_config();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            current_thread().block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
                let mut tls = acceptor.accept(tcp).await.unwrap();
                tls.write_all(b"hello").await.unwrap();
                let mut back = [0u8; 4];
                tls.read_exact(&mut back).await.unwrap();
                back
            })
        });
        let first = current_thread();
        let mut stream = first.block_on(async {
            let socket = Socket(Some(TcpStream::connect(addr).await.unwrap()));
            let (tls, _) = tls_connect(socket, "localhost", "require").await.unwrap();
            ServerStream::Tls(Box::new(tls))
        });
        drop(first);
        let got = std::thread::spawn(move || {
            current_thread().block_on(async move {
                stream.rehome().unwrap();
                let mut buf = [0u8; 5];
                tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
                    .await
                    .expect("the moved TLS connection is woken by its new runtime")
                    .unwrap();
                stream.write_all(b"pong").await.unwrap();
                stream.flush().await.unwrap();
                buf
            })
        });
        assert_eq!(&got.join().unwrap(), b"hello");
        assert_eq!(&server.join().unwrap(), b"pong");
    }

    /// The same without the move fails: the socket is still the first runtime's.
    #[test]
    fn an_unmoved_server_socket_fails_once_its_runtime_is_gone() {
        let (mut stream, mut peer) = plain_of_a_dropped_runtime();
        std::io::Write::write_all(&mut peer, b"hello").unwrap();
        let second = current_thread();
        let got = second.block_on(async move {
            let mut buf = [0u8; 5];
            tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut buf)).await
        });
        assert!(
            !matches!(got, Ok(Ok(_))),
            "a socket left with a dropped runtime was read: the test above proves nothing"
        );
    }

    #[test]
    fn the_end_point_hash_follows_the_certificates_signature() {
        let (p256, _) = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            end_point_hash(&p256),
            Some(sha2::Sha256::digest(&p256).to_vec())
        );
        let (p384, _) = cert(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(
            end_point_hash(&p384),
            Some(sha2::Sha384::digest(&p384).to_vec())
        );
        let (ed, _) = cert(&rcgen::PKCS_ED25519);
        assert_eq!(
            end_point_hash(&ed),
            None,
            "Ed25519 has no hash to bind with"
        );
        assert_eq!(end_point_hash(b"not a certificate"), None);
    }

    #[test]
    fn scram_binds_when_it_can_and_says_so_when_it_cannot() {
        let gs2 = |c: Result<(&'static str, ChannelBinding), &'static str>| {
            c.map(|(m, b)| {
                let s = ScramSha256::new(b"pw", b);
                let first = String::from_utf8_lossy(s.message()).into_owned();
                (m, first.split(",n=").next().unwrap_or_default().to_owned())
            })
        };
        let hash = [7u8; 32];
        let bound = Ok((SCRAM_SHA_256_PLUS, "p=tls-server-end-point,".to_owned()));
        let could = Ok((SCRAM_SHA_256, "y,".to_owned()));
        let unbound = Ok((SCRAM_SHA_256, "n,".to_owned()));
        for mode in ["prefer", "require"] {
            assert_eq!(
                gs2(scram_choice(mode, true, Some(&hash), true, true)),
                bound
            );
        }
        // disable: never bound, even when both sides could.
        assert_eq!(
            gs2(scram_choice("disable", true, Some(&hash), true, true)),
            unbound
        );
        // On TLS, the server offers no binding: the client says it could have bound.
        assert_eq!(
            gs2(scram_choice("prefer", true, Some(&hash), false, true)),
            could
        );
        // The certificate's hash is unknown (Ed25519): no binding, and no claim it could.
        assert_eq!(gs2(scram_choice("prefer", true, None, true, true)), unbound);
        assert_eq!(
            gs2(scram_choice("prefer", false, None, false, true)),
            unbound
        );
        // require: every way of ending up unbound is an error naming why.
        let why = |tls, hash: Option<&[u8]>, plus| {
            scram_choice("require", tls, hash, plus, true)
                .map(|_| ())
                .unwrap_err()
        };
        assert!(why(false, None, false).contains("not encrypted"));
        assert!(why(true, Some(&hash), false).contains("does not offer SCRAM-SHA-256-PLUS"));
        assert!(why(true, None, true).contains("Ed25519"));
        assert!(scram_choice("prefer", true, None, true, false).is_err());
        assert!(scram_choice("prefer", false, None, false, false).is_err());
        // And a login completed without SCRAM, or with it unbound, is refused.
        assert!(require_bound("require", false, "accepted the login").is_err());
        assert!(require_bound("require", true, "accepted the login").is_ok());
        assert!(require_bound("prefer", false, "accepted the login").is_ok());
    }

    /// A TLS server on a free port that answers the login's start-up with the authentication
    /// request `auth` (code and data) and returns the client's next message (tag and body), or
    /// `None` when the client closed instead.
    async fn fake_tls_server(
        auth: Vec<u8>,
    ) -> (u16, tokio::task::JoinHandle<Option<(u8, Vec<u8>)>>) {
        let config = tls_server_config();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut ssl = [0u8; 8];
            tcp.read_exact(&mut ssl).await.unwrap();
            tcp.write_all(b"S").await.unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut len = [0u8; 4];
            tls.read_exact(&mut len).await.unwrap();
            let mut startup = vec![0u8; usize::try_from(i32::from_be_bytes(len)).unwrap() - 4];
            tls.read_exact(&mut startup).await.unwrap();
            let mut request = Vec::new();
            wire::message(&mut request, b'R', &auth);
            tls.write_all(&request).await.unwrap();
            let mut head = [0u8; 5];
            tls.read_exact(&mut head).await.ok()?;
            let n =
                usize::try_from(i32::from_be_bytes([head[1], head[2], head[3], head[4]])).unwrap();
            let mut answer = vec![0u8; n - 4];
            tls.read_exact(&mut answer).await.ok()?;
            Some((head[0], answer))
        });
        (port, server)
    }

    fn sasl_offer(mechanisms: &[u8]) -> Vec<u8> {
        let mut body = 10i32.to_be_bytes().to_vec();
        body.extend_from_slice(mechanisms);
        body
    }

    async fn login_to(port: u16, query: &str) -> Result<Upstream, UpstreamError> {
        let login =
            Secret::new(format!("postgresql://bg_x:pw@127.0.0.1:{port}/db?{query}").into_bytes());
        connect(&login, "db", &[], Duration::from_secs(5)).await
    }

    /// Against a TLS server that offers SCRAM-SHA-256-PLUS, the gateway's login starts the
    /// bound exchange: the mechanism and the GS2 header say `tls-server-end-point`.
    #[tokio::test]
    async fn the_upstream_login_binds_scram_to_the_tls_session() {
        let (port, server) =
            fake_tls_server(sasl_offer(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0")).await;
        let result = login_to(port, "sslmode=require").await;
        assert!(result.is_err(), "the fake server ends the login");
        let (tag, answer) = server.await.unwrap().expect("a SASL answer");
        assert_eq!(tag, b'p');
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("SCRAM-SHA-256-PLUS\0"), "{text:?}");
        assert!(text.contains("p=tls-server-end-point,,n="), "{text:?}");
    }

    /// With `channel_binding=require`, a server (or a man in the middle) that offers no bound
    /// mechanism, asks for a password, or lets the login in unauthenticated gets nothing: the
    /// gateway hangs up before answering and says why. With `disable`, it logs in unbound.
    #[tokio::test]
    async fn channel_binding_require_refuses_every_unbound_login() {
        let refusals: [(Vec<u8>, &str); 4] = [
            (
                sasl_offer(b"SCRAM-SHA-256\0\0"),
                "does not offer SCRAM-SHA-256-PLUS",
            ),
            (3i32.to_be_bytes().to_vec(), "asks for a cleartext password"),
            (
                [0, 0, 0, 5, 1, 2, 3, 4].to_vec(),
                "asks for an MD5 password",
            ),
            (
                0i32.to_be_bytes().to_vec(),
                "accepted the login without channel binding",
            ),
        ];
        for (auth, why) in refusals {
            let (port, server) = fake_tls_server(auth).await;
            let e = match login_to(port, "sslmode=require&channel_binding=require").await {
                Err(e) => e.to_string(),
                Ok(_) => panic!("an unbound login was accepted ({why})"),
            };
            assert!(e.contains(why), "{e}");
            assert!(e.starts_with("the gateway did not log in"), "{e}");
            assert!(!e.contains("pw"), "{e}");
            assert_eq!(server.await.unwrap(), None, "nothing was sent ({why})");
        }
        let (port, server) =
            fake_tls_server(sasl_offer(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0")).await;
        assert!(
            login_to(port, "sslmode=require&channel_binding=disable")
                .await
                .is_err()
        );
        let (tag, answer) = server.await.unwrap().expect("a SASL answer");
        assert_eq!(tag, b'p');
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("SCRAM-SHA-256\0"), "{text:?}");
        assert!(text.contains("n,,n="), "{text:?}");
        let e = login_to(1, "sslmode=require&channel_binding=maybe")
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("channel_binding `maybe`"), "{e}");
    }
}
