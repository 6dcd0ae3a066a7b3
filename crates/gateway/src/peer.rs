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
//! that lost the login refuses it instead of sending it round), and [`CLIENT_ADDR`], the
//! client's own address, which the holder believes only from another server's registered
//! gateway host ([`TrustedPeers`], like a reverse proxy's trusted `X-Forwarded-For`): its
//! failed logins are counted and its session audited against the client, not the relayer.
//!
//! A cancel request for a key this server did not give is sent on, once, to the gateway of the
//! server that gave it ([`cancel`]; the store says which: `Engine::cancel_key_holder`).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::wire;
use crate::{Io, read_message};

/// Start-up parameter naming the server that relayed a client (not passed to the target).
pub const RELAYED_BY: &str = "breakglass_relayed_by";

/// Start-up parameter carrying a relayed client's own address (`IP:PORT`), set by the
/// relaying server; believed only from a trusted peer ([`believed_client`]), never passed to
/// the target.
pub const CLIENT_ADDR: &str = "breakglass_client_addr";

/// The address a client's failed logins and audit entries count against: the one a relaying
/// server passed on (`claimed`, [`CLIENT_ADDR`]) when the start-up says it was relayed and
/// its TCP peer is another server's registered gateway host (`from_peer`), else the TCP
/// `peer` itself. A claim that is not an address is ignored.
pub(crate) fn believed_client(
    peer: SocketAddr,
    relayed: bool,
    claimed: Option<&str>,
    from_peer: bool,
) -> SocketAddr {
    let Some(claimed) = claimed.filter(|_| relayed && from_peer) else {
        return peer;
    };
    let claimed = claimed.trim();
    claimed
        .parse::<SocketAddr>()
        .ok()
        .or_else(|| {
            claimed
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 0))
        })
        .unwrap_or(peer)
}

/// How long the set of other servers' gateway hosts is used before it is read again.
const PEERS_FRESH: Duration = Duration::from_secs(30);
/// At most one read of the store per this, when an address not in the set claims to relay
/// (a server that started since the last read, or a client pretending).
const PEERS_RETRY: Duration = Duration::from_secs(1);

/// The hosts of the gateways other servers registered (`instance_gateways`), read from the
/// store at most every [`PEERS_RETRY`] and kept for [`PEERS_FRESH`]: only relayed logins look
/// here, and a direct client's start-up never does.
#[derive(Default)]
pub(crate) struct TrustedPeers {
    state: Mutex<PeersState>,
}

#[derive(Default)]
struct PeersState {
    ips: HashSet<IpAddr>,
    /// When `ips` was last read.
    read: Option<Instant>,
    /// When a read was last started (they are spaced by [`PEERS_RETRY`]).
    tried: Option<Instant>,
}

/// What [`TrustedPeers::check`] says of an address.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PeerCheck {
    /// The answer, from the set as it is.
    Known(bool),
    /// Read the set again ([`TrustedPeers::set`]), then [`TrustedPeers::contains`].
    Refresh,
}

impl TrustedPeers {
    fn lock(&self) -> std::sync::MutexGuard<'_, PeersState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `ip` is another server's gateway host, at `now`, or whether the set must be
    /// read first: when it is older than [`PEERS_FRESH`], or lacks `ip` and was not read in
    /// the last [`PEERS_RETRY`]. Asking for a read counts as starting one.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> PeerCheck {
        let mut state = self.lock();
        let since = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t));
        let fresh = since(state.read).is_some_and(|d| d < PEERS_FRESH);
        let known = state.ips.contains(&ip);
        if fresh && known {
            return PeerCheck::Known(true);
        }
        if since(state.tried).is_some_and(|d| d < PEERS_RETRY) {
            return PeerCheck::Known(known);
        }
        state.tried = Some(now);
        PeerCheck::Refresh
    }

    /// Replaces the set with what was read at `now`.
    pub(crate) fn set(&self, ips: HashSet<IpAddr>, now: Instant) {
        let mut state = self.lock();
        state.ips = ips;
        state.read = Some(now);
    }

    /// Whether `ip` is in the set as it is.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.lock().ips.contains(&ip)
    }
}

/// The IP addresses of gateway `addresses` (`HOST:PORT`; a host name is looked up, at most
/// 2 s each; one that cannot be is left out).
pub(crate) async fn resolve(addresses: &[String]) -> HashSet<IpAddr> {
    let mut ips = HashSet::new();
    for address in addresses {
        if let Ok(ip) = host_of(address).parse::<IpAddr>() {
            ips.insert(ip);
            continue;
        }
        let found = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::lookup_host(address.as_str()),
        )
        .await;
        match found {
            Ok(Ok(addrs)) => ips.extend(addrs.map(|a| a.ip())),
            _ => tracing::warn!(%address, "a peer gateway's host name could not be resolved"),
        }
    }
    ips
}

/// Cancel requests a server sent on lately, and when: each key is sent on at most once per
/// [`FORWARD_ONCE`], so a request can never go round between servers however the store's
/// rows point (a server that took over a dead one's address under another spelling…).
#[derive(Default)]
pub(crate) struct Forwarded {
    sent: Mutex<std::collections::HashMap<(i32, [u8; 4]), Instant>>,
}

/// How long a key sent on is not sent on again.
const FORWARD_ONCE: Duration = Duration::from_secs(5);
/// Keys remembered at most (beyond it, nothing is sent on until they age out).
const FORWARDED_MAX: usize = 10_000;

impl Forwarded {
    /// Whether cancel key `(pid, key)` may be sent on at `now` (it was not in the last
    /// [`FORWARD_ONCE`]); if so it is remembered as sent.
    pub(crate) fn first(&self, pid: i32, key: [u8; 4], now: Instant) -> bool {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        sent.retain(|_, at| now.saturating_duration_since(*at) < FORWARD_ONCE);
        if sent.contains_key(&(pid, key)) || sent.len() >= FORWARDED_MAX {
            return false;
        }
        sent.insert((pid, key), now);
        true
    }
}

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
    client_addr: SocketAddr,
    params: &[(String, String)],
    token: &[u8],
    relayed_by: &str,
    holder: Holder<'_>,
    on_key: impl FnOnce(i32, [u8; 4]),
) -> Result<Relayed, String> {
    let address = holder.address;
    let relayed = Relaying {
        client: client_addr,
        by: relayed_by,
    };
    let (mut upstream, mut buf) =
        tokio::time::timeout(holder.timeout, login(params, token, &relayed, &holder))
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

/// Who is relayed, by whom: the start-up parameters the holder is told.
struct Relaying<'a> {
    client: SocketAddr,
    by: &'a str,
}

/// Sends a CancelRequest for `pid`/`key` to the gateway of the server that gave the key, at
/// `holder.address` (over TLS, its certificate verified, when that gateway asks for TLS).
/// That server answers it only if it gave that key: it never sends on a key it gave.
pub(crate) async fn cancel(holder: &Holder<'_>, pid: i32, key: [u8; 4]) -> Result<(), String> {
    let address = holder.address;
    let send = async {
        let mut stream = connect(holder).await?;
        let mut req = Vec::with_capacity(16);
        req.extend_from_slice(&16i32.to_be_bytes());
        req.extend_from_slice(&wire::CANCEL_REQUEST.to_be_bytes());
        req.extend_from_slice(&pid.to_be_bytes());
        req.extend_from_slice(&key);
        stream
            .write_all(&req)
            .await
            .map_err(|e| format!("the gateway at {address}: {e}"))?;
        let _ = stream.shutdown().await;
        Ok(())
    };
    tokio::time::timeout(holder.timeout, send)
        .await
        .map_err(|_| format!("the gateway at {address} did not answer in time"))?
}

/// A connection to the holder's gateway, over TLS when it asks for it.
async fn connect(holder: &Holder<'_>) -> Result<Box<dyn Io>, String> {
    let address = holder.address;
    let failed = |e: &dyn std::fmt::Display| format!("the gateway at {address}: {e}");
    let tcp = TcpStream::connect(address).await.map_err(|e| failed(&e))?;
    let _ = tcp.set_nodelay(true);
    Ok(if holder.tls {
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
    })
}

/// Connects to the holder's gateway and sends the start-up and the token; the holder's
/// answer is left to read: from the bytes returned with the stream, then the stream.
async fn login(
    params: &[(String, String)],
    token: &[u8],
    relayed: &Relaying<'_>,
    holder: &Holder<'_>,
) -> Result<(Box<dyn Io>, Vec<u8>), String> {
    let address = holder.address;
    let failed = |e: &dyn std::fmt::Display| format!("the gateway at {address}: {e}");
    let mut stream = connect(holder).await?;
    let client = relayed.client.to_string();
    let mut startup: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k != RELAYED_BY && k != CLIENT_ADDR)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    startup.push((RELAYED_BY, relayed.by));
    startup.push((CLIENT_ADDR, &client));
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

    #[test]
    fn a_relayed_client_address_is_believed_only_from_a_peer() {
        let peer: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let check = |relayed, claimed, from_peer| {
            believed_client(peer, relayed, claimed, from_peer).to_string()
        };
        // Relayed by another server's gateway: the client's own address counts.
        assert_eq!(check(true, Some("192.0.2.7:5555"), true), "192.0.2.7:5555");
        assert_eq!(
            check(true, Some("[2001:db8::1]:6"), true),
            "[2001:db8::1]:6"
        );
        assert_eq!(check(true, Some(" 192.0.2.7 "), true), "192.0.2.7:0");
        // Anyone else's claim, a claim without the relaying server's name, no claim, or one
        // that is not an address: the TCP peer counts.
        assert_eq!(check(true, Some("192.0.2.7:5555"), false), "10.0.0.5:40000");
        assert_eq!(check(false, Some("192.0.2.7:5555"), true), "10.0.0.5:40000");
        assert_eq!(check(true, None, true), "10.0.0.5:40000");
        assert_eq!(check(true, Some("not-an-address"), true), "10.0.0.5:40000");
        assert_eq!(check(true, Some(""), true), "10.0.0.5:40000");
    }

    #[test]
    fn the_peer_set_is_read_when_stale_or_missing_at_most_once_a_second() {
        let peers = TrustedPeers::default();
        let a: IpAddr = "10.0.0.5".parse().unwrap();
        let b: IpAddr = "10.0.0.6".parse().unwrap();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Never read: read it (once a second at most, whoever asks).
        assert_eq!(peers.check(a, at(0)), PeerCheck::Refresh);
        assert_eq!(peers.check(a, at(10)), PeerCheck::Known(false));
        peers.set([a].into_iter().collect(), at(20));
        assert!(peers.contains(a) && !peers.contains(b));
        // Fresh and known: no read.
        assert_eq!(peers.check(a, at(30)), PeerCheck::Known(true));
        assert_eq!(peers.check(a, at(29_000)), PeerCheck::Known(true));
        // Unknown: read again, but not within a second of the last attempt.
        assert_eq!(peers.check(b, at(500)), PeerCheck::Known(false));
        assert_eq!(peers.check(b, at(1_000)), PeerCheck::Refresh);
        assert_eq!(peers.check(b, at(1_500)), PeerCheck::Known(false));
        peers.set([a, b].into_iter().collect(), at(1_600));
        assert_eq!(peers.check(b, at(1_700)), PeerCheck::Known(true));
        // Stale: read again even for a known address.
        assert_eq!(peers.check(a, at(40_000)), PeerCheck::Refresh);
        assert_eq!(peers.check(a, at(40_100)), PeerCheck::Known(true));
        // A server no longer registered is no longer believed.
        peers.set([b].into_iter().collect(), at(40_200));
        assert_eq!(peers.check(a, at(40_300)), PeerCheck::Known(false));
    }

    #[tokio::test]
    async fn peer_hosts_resolve_to_their_addresses() {
        let ips = resolve(&[
            "10.0.0.5:5433".to_owned(),
            "[::1]:6432".to_owned(),
            "localhost:5433".to_owned(),
        ])
        .await;
        assert!(ips.contains(&"10.0.0.5".parse::<IpAddr>().unwrap()));
        assert!(ips.contains(&"::1".parse::<IpAddr>().unwrap()));
        assert!(ips.iter().any(IpAddr::is_loopback));
    }

    #[test]
    fn a_cancel_key_is_sent_on_once_in_a_while() {
        let sent = Forwarded::default();
        let t0 = Instant::now();
        assert!(sent.first(7, [1, 2, 3, 4], t0));
        // Coming back (a loop): dropped.
        assert!(!sent.first(7, [1, 2, 3, 4], t0 + Duration::from_millis(5)));
        // Another key, or the same pid with another secret, is another request.
        assert!(sent.first(8, [1, 2, 3, 4], t0));
        assert!(sent.first(7, [9, 9, 9, 9], t0));
        // Later on, the same key may be sent on again (the client pressed Ctrl-C again).
        assert!(sent.first(7, [1, 2, 3, 4], t0 + FORWARD_ONCE));
    }
}
