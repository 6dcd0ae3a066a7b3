//! SSH hosts trusting a certificate authority: a grant is an OpenSSH user certificate for the
//! requester's own ssh-ed25519 key, signed by the sealed CA key and valid only for the grant
//! window; an early close revokes it by serial in a key revocation list (`krl.rs`).
//!
//! The sealed credential is the CA's private key in OpenSSH format (unencrypted ed25519). The
//! hosts list the CA's public key in `TrustedUserCAKeys`, map users to principals with
//! `AuthorizedPrincipalsFile` (or accept the user name as principal), and read `RevokedKeys`
//! from the KRL the procedure's `krl_path` names (on a shared or synchronised path).
//!
//! The certificate's validity is the target-side backstop: sshd refuses it after
//! `valid_before`, whatever happens to breakglass. An early close cannot shorten it, so it
//! writes the serial to the KRL instead.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use breakglass_custody::{KeyKind, Secret};
use breakglass_domain::{Procedure, SshTarget, TargetConfig, TargetKind, Timestamp};
use breakglass_engine::ports::{
    Clock, EndCause, GrantRequest, HealthCheck, Issued, PrivilegedAccount, SystemClock, Target,
    TargetError,
};
use rand::RngCore;
use ssh_key::certificate::{Builder, CertType};
use ssh_key::{Algorithm, HashAlg, PrivateKey, PublicKey};
use tokio::io::AsyncReadExt;

use crate::krl;

/// The SSH certificate adapter. It holds no credential: the CA key arrives sealed with each
/// grant, and ending a grant needs only the certificate's public handle.
pub struct SshCaTarget {
    clock: Arc<dyn Clock>,
}

impl SshCaTarget {
    /// Builds the adapter; it dates revocation lists by the system clock.
    pub fn new() -> Self {
        SshCaTarget::with_clock(Arc::new(SystemClock))
    }

    /// Builds the adapter with the clock that dates revocation lists and decides when a
    /// revoked, long-expired serial may leave them (`end` receives no time of its own).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        SshCaTarget { clock }
    }
}

impl Default for SshCaTarget {
    fn default() -> Self {
        SshCaTarget::new()
    }
}

impl std::fmt::Debug for SshCaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SshCaTarget")
    }
}

#[async_trait]
impl Target for SshCaTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::Ssh
    }

    /// Signs a user certificate for the requester's enrolled ssh-ed25519 key: a random serial,
    /// key id `breakglass:<break>:<requester>`, the procedure's principals, valid from a
    /// minute before `now` (clock skew between hosts) until the deadline, with the usual
    /// extensions (`permit-pty`, forwarding, `permit-user-rc`) and no critical option.
    ///
    /// The access is the certificate's OpenSSH line (the requester keeps their private key);
    /// the handle holds its serial, key id, principals, validity and the CA's public key.
    /// Nothing is created on the hosts, so a failure leaves nothing behind.
    async fn grant(
        &self,
        request: &GrantRequest<'_>,
        credential: &Secret,
    ) -> Result<Issued, TargetError> {
        let config = settings(request.procedure)?;
        if request.requester_key.kind() != KeyKind::SshEd25519 {
            return Err(TargetError::Config {
                target: target_name(request.procedure),
                message: format!(
                    "requester `{}` enrolled an {} key, and SSH targets need an ssh-ed25519 key \
                     enrolled: the certificate is issued for that key",
                    request.requester,
                    request.requester_key.kind()
                ),
            });
        }
        let subject =
            PublicKey::from_openssh(&request.requester_key.canonical()).map_err(|_| {
                TargetError::Config {
                    target: target_name(request.procedure),
                    message: format!(
                        "requester `{}`'s enrolled key is not a usable ssh-ed25519 public key",
                        request.requester
                    ),
                }
            })?;
        let ca = ca_key(request.procedure, credential)?;
        let ca_public = ca.public_key();
        if let Some(trusted) = &config.ca_public_key {
            let trusted = parse_ca_public(request.procedure, trusted)?;
            if trusted.key_data() != ca_public.key_data() {
                return Err(TargetError::Credential {
                    target: target_name(request.procedure),
                    message: format!(
                        "the sealed key ({}) is not the CA the hosts trust (ca_public_key {}); \
                         re-seal the CA key the hosts list in TrustedUserCAKeys",
                        ca_public.fingerprint(HashAlg::Sha256),
                        trusted.fingerprint(HashAlg::Sha256)
                    ),
                });
            }
        }

        let now = unix_secs(request.now);
        let valid_before = unix_secs(request.deadline);
        if valid_before <= now {
            return Err(TargetError::Failed {
                target: target_name(request.procedure),
                message: format!(
                    "the deadline {} is not after now ({}): no certificate to issue",
                    request.deadline, request.now
                ),
            });
        }
        let valid_after = now.saturating_sub(CLOCK_SKEW_SECS);
        let serial = random_serial();
        let key_id = format!("breakglass:{}:{}", request.break_id, request.requester);
        let failed = |what: &str| TargetError::Failed {
            target: target_name(request.procedure),
            message: format!("could not build the certificate: {what}"),
        };

        let mut builder = Builder::new_with_random_nonce(
            &mut rand::rngs::OsRng,
            subject.key_data().clone(),
            valid_after,
            valid_before,
        )
        .map_err(|_| failed("validity window out of range"))?;
        builder
            .serial(serial)
            .and_then(|b| b.cert_type(CertType::User))
            .and_then(|b| b.key_id(key_id.clone()))
            .and_then(|b| b.comment(key_id.clone()))
            .map_err(|_| failed("serial, type or key id"))?;
        for principal in &config.principals {
            builder
                .valid_principal(principal.clone())
                .map_err(|_| failed("principal"))?;
        }
        for extension in EXTENSIONS {
            builder
                .extension(extension, "")
                .map_err(|_| failed("extension"))?;
        }
        let certificate = builder.sign(&ca).map_err(|_| failed("signing failed"))?;
        let line = certificate
            .to_openssh()
            .map_err(|_| failed("encoding failed"))?;
        let ca_line = PublicKey::new(ca_public.key_data().clone(), "")
            .to_openssh()
            .map_err(|_| failed("CA public key encoding failed"))?;
        let handle = serde_json::json!({
            "serial": serial,
            "key_id": key_id,
            "principals": config.principals,
            "valid_after": valid_after,
            "valid_before": valid_before,
            "ca": ca_public.fingerprint(HashAlg::Sha256).to_string(),
            "ca_public_key": ca_line,
        });
        Ok(Issued {
            access: Secret::new(format!("{line}\n").into_bytes()),
            handle,
        })
    }

    /// `Expired`: nothing to do on the hosts, which refuse the certificate after its
    /// `valid_before`. `Closed` and `Abandoned`: revokes the serial in the KRL at `krl_path`
    /// (idempotent). Without `krl_path` the revocation cannot be written: a configuration
    /// error, and the certificate stays valid until its `valid_before`.
    async fn end(
        &self,
        procedure: &Procedure,
        break_id: &str,
        handle: &serde_json::Value,
        cause: EndCause,
    ) -> Result<serde_json::Value, TargetError> {
        if cause == EndCause::Expired {
            return Ok(serde_json::json!({
                "action": "none",
                "serial": handle.get("serial"),
                "valid_before": handle.get("valid_before"),
                "reason": "the certificate's validity ended; hosts refuse it by date",
            }));
        }
        let config = settings(procedure)?;
        let grant = GrantHandle::read(procedure, handle)?;
        let Some(path) = config.krl_path.clone() else {
            return Err(TargetError::Config {
                target: target_name(procedure),
                message: format!(
                    "no krl_path in the procedure: the revocation of certificate serial {} \
                     (break {break_id}) could not be written; it stays valid until {} \
                     (Unix seconds {})",
                    grant.serial,
                    Timestamp(
                        i64::try_from(grant.valid_before)
                            .unwrap_or(i64::MAX)
                            .saturating_mul(1000)
                    ),
                    grant.valid_before
                ),
            });
        };
        let now = self.clock.now();
        let ca = grant.ca.clone();
        let (serial, valid_before) = (grant.serial, grant.valid_before);
        let file = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            krl::write_krl(std::path::Path::new(&file), &ca, serial, valid_before, now)
        })
        .await
        .map_err(|_| TargetError::Failed {
            target: target_name(procedure),
            message: "the revocation list writer stopped unexpectedly".into(),
        })?
        .map_err(|e| TargetError::Failed {
            target: target_name(procedure),
            message: format!(
                "could not write the revocation of certificate serial {serial} \
                 (break {break_id}): {e}"
            ),
        })?;
        Ok(serde_json::json!({
            "action": "revoked",
            "serial": serial,
            "ca": grant.ca.fingerprint(HashAlg::Sha256).to_string(),
            "krl_path": path,
            "krl": written,
        }))
    }

    /// For each `hosts` entry: connects and reads the SSH identification line (5 s timeout).
    /// Checks that `ca_public_key`, if set, is an ssh-ed25519 key, and that the KRL at
    /// `krl_path`, if set, exists, parses, can be updated (not signed) and that its directory
    /// takes new files (a probe file is created and removed). Nothing is unsealed.
    ///
    /// Limit: whether a host trusts the CA, maps the principals and reads the KRL cannot be
    /// proven without a certificate, so it is not checked here; a drill proves it.
    async fn check(&self, procedure: &Procedure) -> Result<Vec<HealthCheck>, TargetError> {
        let config = settings(procedure)?;
        let mut checks = Vec::new();
        if config.hosts.is_empty() {
            checks.push(HealthCheck {
                name: "hosts".into(),
                ok: false,
                detail: "no hosts listed in target.details.hosts: nothing to check".into(),
            });
        }
        let mut probes = tokio::task::JoinSet::new();
        for (i, host) in config.hosts.iter().enumerate() {
            let host = host.clone();
            probes.spawn(async move { (i, ssh_banner(&host).await) });
        }
        let mut answers: Vec<(usize, Result<String, String>)> = probes.join_all().await;
        answers.sort_by_key(|(i, _)| *i);
        for ((_, answer), host) in answers.into_iter().zip(&config.hosts) {
            let (ok, detail) = match answer {
                Ok(banner) => (true, banner),
                Err(e) => (false, e),
            };
            checks.push(HealthCheck {
                name: format!("host {host} answers SSH"),
                ok,
                detail,
            });
        }

        checks.push(match &config.ca_public_key {
            Some(text) => match parse_ca_public(procedure, text) {
                Ok(key) => HealthCheck {
                    name: "ca_public_key".into(),
                    ok: true,
                    detail: format!("ssh-ed25519 {}", key.fingerprint(HashAlg::Sha256)),
                },
                Err(e) => HealthCheck {
                    name: "ca_public_key".into(),
                    ok: false,
                    detail: e.to_string(),
                },
            },
            None => HealthCheck {
                name: "ca_public_key".into(),
                ok: true,
                detail: "not set: a grant cannot confirm the sealed key is the CA the hosts \
                         trust"
                    .into(),
            },
        });

        checks.push(match &config.krl_path {
            Some(path) => {
                let path = std::path::PathBuf::from(path);
                tokio::task::spawn_blocking(move || krl_check(&path))
                    .await
                    .unwrap_or_else(|_| HealthCheck {
                        name: "krl_path".into(),
                        ok: false,
                        detail: "the check stopped unexpectedly".into(),
                    })
            }
            None => HealthCheck {
                name: "krl_path".into(),
                ok: false,
                detail: "not set: an early close cannot revoke the certificate, which stays \
                         valid until the deadline"
                    .into(),
            },
        });
        Ok(checks)
    }

    /// `None`: the hosts trust the CA by its public key, so the same key is re-sealed.
    fn next_credential(
        &self,
        _procedure: &Procedure,
        _current: &Secret,
    ) -> Result<Option<Secret>, TargetError> {
        Ok(None)
    }

    /// Nothing to change on the hosts when `next` is the same CA key (the only rotation this
    /// kind has: a re-seal). A different CA would need every host's `TrustedUserCAKeys`
    /// changed, which breakglass does not manage, so that is refused.
    async fn rotate(
        &self,
        procedure: &Procedure,
        current: &Secret,
        next: &Secret,
    ) -> Result<(), TargetError> {
        let current = ca_key(procedure, current)?;
        let next = ca_key(procedure, next)?;
        if current.public_key().key_data() == next.public_key().key_data() {
            return Ok(());
        }
        Err(TargetError::Config {
            target: target_name(procedure),
            message: "a new SSH CA key must be added to every host's TrustedUserCAKeys, which \
                      breakglass does not manage: seal the new CA key after the hosts trust it"
                .into(),
        })
    }

    /// Empty: an SSH CA has no accounts to list; the hosts' accounts are theirs.
    async fn discover(&self, procedure: &Procedure) -> Result<Vec<PrivilegedAccount>, TargetError> {
        settings(procedure)?;
        Ok(Vec::new())
    }
}

/// Certificates start this long before `now`, for hosts whose clocks run behind.
const CLOCK_SKEW_SECS: u64 = 60;

/// The extensions `ssh-keygen` grants by default.
const EXTENSIONS: [&str; 5] = [
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

/// How long a host may take to connect and send its identification line.
const BANNER_TIMEOUT: Duration = Duration::from_secs(5);

/// RFC 4253 allows lines before the identification; a server sending more than this without
/// one is not an SSH server.
const MAX_BANNER_BYTES: usize = 8192;

fn target_name(procedure: &Procedure) -> String {
    format!("ssh ({})", procedure.id)
}

fn settings(procedure: &Procedure) -> Result<SshTarget, TargetError> {
    match procedure.target.config() {
        Ok(TargetConfig::Ssh(ssh)) => Ok(ssh),
        Ok(_) => Err(TargetError::Config {
            target: target_name(procedure),
            message: format!(
                "the procedure's target is `{}`, not `ssh`",
                procedure.target.kind.as_str()
            ),
        }),
        Err(problems) => Err(TargetError::Config {
            target: target_name(procedure),
            message: problems
                .iter()
                .map(|(field, message)| format!("{field}: {message}"))
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

/// The sealed CA key. Errors say what is wrong with it, never quoting it.
fn ca_key(procedure: &Procedure, credential: &Secret) -> Result<PrivateKey, TargetError> {
    let refused = |message: &str| TargetError::Credential {
        target: target_name(procedure),
        message: message.into(),
    };
    let text = std::str::from_utf8(credential.expose_secret())
        .map_err(|_| refused("the sealed credential is not an OpenSSH private key (not text)"))?;
    let key = PrivateKey::from_openssh(text.trim()).map_err(|_| {
        refused(
            "the sealed credential is not an OpenSSH private key \
             (-----BEGIN OPENSSH PRIVATE KEY-----)",
        )
    })?;
    if key.is_encrypted() {
        return Err(refused(
            "the sealed CA key is passphrase-protected; seal it without a passphrase",
        ));
    }
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(refused(&format!(
            "the sealed CA key is {}, and SSH targets use an ed25519 CA",
            key.algorithm().as_str()
        )));
    }
    Ok(key)
}

fn parse_ca_public(procedure: &Procedure, text: &str) -> Result<PublicKey, TargetError> {
    let key = PublicKey::from_openssh(text.trim()).map_err(|_| TargetError::Config {
        target: target_name(procedure),
        message: "ca_public_key is not a valid OpenSSH public key".into(),
    })?;
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(TargetError::Config {
            target: target_name(procedure),
            message: format!(
                "ca_public_key is {}, expected ssh-ed25519",
                key.algorithm().as_str()
            ),
        });
    }
    Ok(key)
}

/// Whole seconds since the epoch, rounded down (a certificate never outlives its deadline);
/// 0 before the epoch.
fn unix_secs(t: Timestamp) -> u64 {
    u64::try_from(t.millis().div_euclid(1000)).unwrap_or(0)
}

/// A random, non-zero serial below 2^53, so it survives any JSON reader (the handle is JSON);
/// 53 random bits keep serials of one CA apart. OpenSSH ignores serial 0 in KRLs.
fn random_serial() -> u64 {
    loop {
        let serial = rand::rngs::OsRng.next_u64() & ((1 << 53) - 1);
        if serial != 0 {
            return serial;
        }
    }
}

/// What `end` needs from a grant's handle.
struct GrantHandle {
    serial: u64,
    valid_before: u64,
    ca: PublicKey,
}

impl GrantHandle {
    fn read(procedure: &Procedure, handle: &serde_json::Value) -> Result<GrantHandle, TargetError> {
        let bad = |what: &str| TargetError::Failed {
            target: target_name(procedure),
            message: format!("the grant's handle {what}; the certificate cannot be revoked"),
        };
        let serial = handle
            .get("serial")
            .and_then(serde_json::Value::as_u64)
            .filter(|s| *s != 0)
            .ok_or_else(|| bad("has no certificate serial"))?;
        let valid_before = handle
            .get("valid_before")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("has no valid_before"))?;
        let ca = handle
            .get("ca_public_key")
            .and_then(serde_json::Value::as_str)
            .and_then(|text| PublicKey::from_openssh(text).ok())
            .ok_or_else(|| bad("has no valid CA public key"))?;
        if let Some(fingerprint) = handle.get("ca").and_then(serde_json::Value::as_str)
            && fingerprint != ca.fingerprint(HashAlg::Sha256).to_string()
        {
            return Err(bad("names a CA fingerprint that does not match its CA key"));
        }
        Ok(GrantHandle {
            serial,
            valid_before,
            ca,
        })
    }
}

/// Connects to `host` (`host:port`, port 22 when omitted) and returns its SSH identification
/// line.
async fn ssh_banner(host: &str) -> Result<String, String> {
    let read = async {
        // `hosts` entries are `host:port`; a bare host name means the SSH port.
        let address = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:22")
        };
        let mut stream = tokio::net::TcpStream::connect(address.as_str())
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("connection failed: {e}"))?;
            if n == 0 {
                return Err("closed the connection without an SSH identification line".into());
            }
            seen.extend_from_slice(&buf[..n]);
            // Only whole lines count: the identification may arrive in pieces.
            let complete = match seen.iter().rposition(|b| *b == b'\n') {
                Some(end) => &seen[..end],
                None => &[][..],
            };
            if let Some(line) = complete
                .split(|b| *b == b'\n')
                .find(|line| line.starts_with(b"SSH-"))
            {
                return Ok(printable(line));
            }
            if seen.len() > MAX_BANNER_BYTES {
                return Err("answered, but not with an SSH identification line".into());
            }
        }
    };
    match tokio::time::timeout(BANNER_TIMEOUT, read).await {
        Ok(answer) => answer,
        Err(_) => Err(format!(
            "no SSH identification within {} s",
            BANNER_TIMEOUT.as_secs()
        )),
    }
}

/// Untrusted bytes made safe for a report: printable ASCII only, at most 255 characters.
fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .filter(|b| **b != b'\r')
        .take(255)
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b)
            } else {
                '?'
            }
        })
        .collect()
}

fn krl_check(path: &std::path::Path) -> HealthCheck {
    let check = |ok: bool, detail: String| HealthCheck {
        name: format!("krl_path {}", path.display()),
        ok,
        detail,
    };
    let summary = match krl::inspect(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return check(
                false,
                "does not exist: sshd refuses every key while its RevokedKeys file is \
                 missing; create it empty"
                    .into(),
            );
        }
        Err(e) => return check(false, e.to_string()),
    };
    if summary.signed {
        return check(
            false,
            "the KRL is signed: breakglass cannot add revocations to it".into(),
        );
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let probe = dir.join(format!(
        ".breakglass-check-{}-{:016x}",
        std::process::id(),
        rand::rngs::OsRng.next_u64()
    ));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => {
            return check(
                false,
                format!(
                    "readable, but its directory {} does not take new files ({e}): the \
                     revocation is written to a temporary file and renamed",
                    dir.display()
                ),
            );
        }
    }
    check(
        true,
        format!(
            "KRL version {}, {} serial(s) revoked; writable",
            summary.version, summary.serials
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_random_nonzero_and_json_safe() {
        let a = random_serial();
        let b = random_serial();
        assert_ne!(a, b);
        assert!(a > 0 && a < (1 << 53));
    }

    #[test]
    fn banners_are_made_printable() {
        assert_eq!(printable(b"SSH-2.0-x\x1b[31m\r"), "SSH-2.0-x?[31m");
        assert_eq!(printable(&[b'a'; 400]).len(), 255);
    }

    #[test]
    fn times_round_down_to_seconds() {
        assert_eq!(unix_secs(Timestamp(1999)), 1);
        assert_eq!(unix_secs(Timestamp(-5)), 0);
    }
}
