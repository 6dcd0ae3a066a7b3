//! The SSH certificate target against a real sshd started by the test, with the real `ssh`
//! client and `ssh-keygen`: certificates log in inside the grant window and not after it,
//! an early close revokes by serial through the KRL, and bad keys are refused clearly.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use breakglass_custody::{CustodianKey, Secret};
use breakglass_domain::{Procedure, Target as TargetSpec, TargetKind, Timestamp};
use breakglass_engine::ports::{
    Clock, EndCause, GrantRequest, Issued, SystemClock, Target, TargetError,
};
use breakglass_targets::SshCaTarget;
use breakglass_testkit::sshd::{Sshd, current_user, free_port};
use ssh_key::{Algorithm, LineEnding, PrivateKey};

fn procedure(details: &[(&str, &str)]) -> Procedure {
    Procedure {
        id: "ssh-fleet".into(),
        description: String::new(),
        target: TargetSpec {
            kind: TargetKind::Ssh,
            details: details
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        },
        custodians: Vec::new(),
        quorum: 2,
        max_grant: Duration::from_secs(3600),
        alert_channels: Vec::new(),
        ack_within: None,
        escalation: Vec::new(),
        max_credential_age: None,
        drill_every: None,
        drill_automated: false,
        drill_max_time_to_access: None,
        drill_cron: None,
        dependencies: Vec::new(),
        protects_against: Vec::new(),
        second_factor: None,
        external: None,
    }
}

fn new_key() -> PrivateKey {
    PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap()
}

fn public_line(key: &PrivateKey) -> String {
    key.public_key().to_openssh().unwrap()
}

fn sealed(ca: &PrivateKey) -> Secret {
    Secret::new(ca.to_openssh(LineEnding::LF).unwrap().as_bytes().to_vec())
}

fn now() -> Timestamp {
    SystemClock.now()
}

/// A requester with an ssh-ed25519 key, its private key written where `ssh -i` takes it.
struct Requester {
    key: PrivateKey,
    enrolled: CustodianKey,
    dir: tempfile::TempDir,
}

impl Requester {
    fn new() -> Requester {
        let key = new_key();
        let enrolled = CustodianKey::parse(&public_line(&key)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        key.write_openssh_file(&path, LineEnding::LF).unwrap();
        set_private(&path);
        Requester { key, enrolled, dir }
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// Writes the issued certificate to a file of its own.
    fn save(&self, issued: &Issued, name: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}-cert.pub"));
        std::fs::write(&path, issued.access.expose_secret()).unwrap();
        path
    }
}

#[cfg(unix)]
fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

async fn grant(
    target: &SshCaTarget,
    procedure: &Procedure,
    requester: &CustodianKey,
    ca: &Secret,
    break_id: &str,
    window: Duration,
) -> Result<Issued, TargetError> {
    let now = now();
    target
        .grant(
            &GrantRequest {
                procedure,
                break_id,
                requester: "alice",
                requester_key: requester,
                now,
                deadline: now.plus(window),
            },
            ca,
        )
        .await
}

fn ssh_keygen(args: &[&str], file: &Path) -> (bool, String) {
    let out = Command::new("ssh-keygen")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn login_ok(sshd: &Sshd, user: &str, requester: &Requester, cert: &Path) -> bool {
    let out = sshd.login(user, &requester.key_path(), cert);
    if !out.status.success() {
        eprintln!("ssh: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

#[tokio::test]
async fn certificate_is_read_by_ssh_keygen_and_logs_in_until_the_deadline() {
    let test = "ssh::certificate_is_read_by_ssh_keygen_and_logs_in_until_the_deadline";
    let user = current_user();
    let ca = new_key();
    let Some(sshd) = Sshd::start(test, &public_line(&ca), &[(&user, &[&user])]) else {
        return;
    };
    let procedure = procedure(&[
        ("principals", &user),
        ("hosts", &sshd.address()),
        ("ca_public_key", &public_line(&ca)),
        ("krl_path", &sshd.krl_path().display().to_string()),
    ]);
    let requester = Requester::new();
    let target = SshCaTarget::new();
    let issued = grant(
        &target,
        &procedure,
        &requester.enrolled,
        &sealed(&ca),
        "brk_window",
        Duration::from_secs(4),
    )
    .await
    .unwrap();
    let cert = requester.save(&issued, "window");

    let serial = issued.handle["serial"].as_u64().unwrap();
    let valid_before = issued.handle["valid_before"].as_u64().unwrap();
    assert_eq!(issued.handle["key_id"], "breakglass:brk_window:alice");
    assert_eq!(
        issued.handle["ca"],
        ca.public_key()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string()
    );
    let (ok, listing) = ssh_keygen(&["-L", "-f"], &cert);
    assert!(ok, "{listing}");
    assert!(
        listing.contains("ssh-ed25519-cert-v01@openssh.com user certificate"),
        "{listing}"
    );
    assert!(
        listing.contains("Key ID: \"breakglass:brk_window:alice\""),
        "{listing}"
    );
    assert!(listing.contains(&format!("Serial: {serial}")), "{listing}");
    let principals = listing
        .split("Principals:")
        .nth(1)
        .and_then(|rest| rest.split("Critical Options:").next())
        .unwrap();
    assert_eq!(principals.trim(), user, "{listing}");
    assert!(listing.contains("Valid: from "), "{listing}");
    assert!(listing.contains("permit-pty"), "{listing}");
    assert!(
        listing.contains(
            &ca.public_key()
                .fingerprint(ssh_key::HashAlg::Sha256)
                .to_string()
        ),
        "{listing}"
    );

    assert!(
        login_ok(&sshd, &user, &requester, &cert),
        "login inside the window failed:\n{}",
        sshd.log()
    );

    // Past valid_before (whole seconds), sshd refuses the certificate by date.
    let after = i64::try_from(valid_before).unwrap() * 1000 + 1500;
    let wait = after - now().millis();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    assert!(
        !login_ok(&sshd, &user, &requester, &cert),
        "login after the deadline worked:\n{}",
        sshd.log()
    );
    assert!(sshd.log().contains("expired"), "{}", sshd.log());

    // Ending an expired grant leaves the hosts alone.
    let krl_before = std::fs::read(sshd.krl_path()).unwrap();
    let done = target
        .end(&procedure, "brk_window", &issued.handle, EndCause::Expired)
        .await
        .unwrap();
    assert_eq!(done["action"], "none");
    assert_eq!(std::fs::read(sshd.krl_path()).unwrap(), krl_before);
}

#[tokio::test]
async fn early_close_revokes_by_serial_and_other_certificates_still_work() {
    let test = "ssh::early_close_revokes_by_serial_and_other_certificates_still_work";
    let user = current_user();
    let ca = new_key();
    let Some(sshd) = Sshd::start(test, &public_line(&ca), &[(&user, &[&user])]) else {
        return;
    };
    let krl = sshd.krl_path();
    let procedure = procedure(&[
        ("principals", &user),
        ("hosts", &sshd.address()),
        ("krl_path", &krl.display().to_string()),
    ]);
    let requester = Requester::new();
    let target = SshCaTarget::new();
    let hour = Duration::from_secs(3600);
    let first = grant(
        &target,
        &procedure,
        &requester.enrolled,
        &sealed(&ca),
        "brk_a",
        hour,
    )
    .await
    .unwrap();
    let second = grant(
        &target,
        &procedure,
        &requester.enrolled,
        &sealed(&ca),
        "brk_b",
        hour,
    )
    .await
    .unwrap();
    assert_ne!(first.handle["serial"], second.handle["serial"]);
    let first_cert = requester.save(&first, "first");
    let second_cert = requester.save(&second, "second");
    assert!(
        login_ok(&sshd, &user, &requester, &first_cert),
        "{}",
        sshd.log()
    );
    assert!(
        login_ok(&sshd, &user, &requester, &second_cert),
        "{}",
        sshd.log()
    );

    let done = target
        .end(&procedure, "brk_a", &first.handle, EndCause::Closed)
        .await
        .unwrap();
    assert_eq!(done["action"], "revoked");
    assert_eq!(done["krl"]["written"], true);
    assert_eq!(done["krl"]["krl_version"], 1);

    let (ok, out) = ssh_keygen(&["-Q", "-f", &krl.display().to_string()], &first_cert);
    assert!(!ok && out.contains("REVOKED"), "{out}");
    let (ok, out) = ssh_keygen(&["-Q", "-f", &krl.display().to_string()], &second_cert);
    assert!(ok && out.contains("ok"), "{out}");
    let (ok, dump) = ssh_keygen(&["-Q", "-l", "-f"], &krl);
    assert!(ok, "{dump}");
    assert!(
        dump.contains(&format!("serial: {}", first.handle["serial"])),
        "{dump}"
    );

    assert!(
        !login_ok(&sshd, &user, &requester, &first_cert),
        "a revoked certificate logged in:\n{}",
        sshd.log()
    );
    assert!(sshd.log().contains("revoked"), "{}", sshd.log());
    assert!(
        login_ok(&sshd, &user, &requester, &second_cert),
        "{}",
        sshd.log()
    );

    // Idempotent, and the list accumulates.
    let again = target
        .end(&procedure, "brk_a", &first.handle, EndCause::Closed)
        .await
        .unwrap();
    assert_eq!(again["krl"]["written"], false);
    let done = target
        .end(&procedure, "brk_b", &second.handle, EndCause::Abandoned)
        .await
        .unwrap();
    assert_eq!(done["krl"]["krl_version"], 2);
    assert_eq!(done["krl"]["serials"], 2);
    for cert in [&first_cert, &second_cert] {
        let (ok, out) = ssh_keygen(&["-Q", "-f", &krl.display().to_string()], cert);
        assert!(!ok && out.contains("REVOKED"), "{out}");
    }
    assert!(
        !login_ok(&sshd, &user, &requester, &second_cert),
        "{}",
        sshd.log()
    );
}

#[tokio::test]
async fn certificate_for_an_unlisted_principal_is_refused() {
    let test = "ssh::certificate_for_an_unlisted_principal_is_refused";
    let user = current_user();
    let ca = new_key();
    let Some(sshd) = Sshd::start(test, &public_line(&ca), &[(&user, &[&user])]) else {
        return;
    };
    let procedure = procedure(&[("principals", "bg_ops"), ("hosts", &sshd.address())]);
    let requester = Requester::new();
    let issued = grant(
        &SshCaTarget::new(),
        &procedure,
        &requester.enrolled,
        &sealed(&ca),
        "brk_principal",
        Duration::from_secs(600),
    )
    .await
    .unwrap();
    let cert = requester.save(&issued, "ops");
    assert!(
        !login_ok(&sshd, &user, &requester, &cert),
        "a certificate for an unlisted principal logged in:\n{}",
        sshd.log()
    );
    assert!(
        sshd.log()
            .contains("Certificate does not contain an authorized principal"),
        "{}",
        sshd.log()
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let test = "ssh::a_certificate_from_another_ca_is_refused";
    let user = current_user();
    let trusted = new_key();
    let Some(sshd) = Sshd::start(test, &public_line(&trusted), &[(&user, &[&user])]) else {
        return;
    };
    // No ca_public_key in the procedure: nothing stops the grant, but the host does.
    let procedure = procedure(&[("principals", &user)]);
    let requester = Requester::new();
    let issued = grant(
        &SshCaTarget::new(),
        &procedure,
        &requester.enrolled,
        &sealed(&new_key()),
        "brk_other_ca",
        Duration::from_secs(600),
    )
    .await
    .unwrap();
    let cert = requester.save(&issued, "other");
    assert!(!login_ok(&sshd, &user, &requester, &cert), "{}", sshd.log());
    assert!(
        sshd.log()
            .contains(&format!("Failed publickey for {user} from 127.0.0.1")),
        "{}",
        sshd.log()
    );

    // The same requester, signed by the trusted CA, gets in.
    let trusted_issued = grant(
        &SshCaTarget::new(),
        &procedure,
        &requester.enrolled,
        &sealed(&trusted),
        "brk_trusted_ca",
        Duration::from_secs(600),
    )
    .await
    .unwrap();
    let cert = requester.save(&trusted_issued, "trusted");
    assert!(login_ok(&sshd, &user, &requester, &cert), "{}", sshd.log());
}

#[tokio::test]
async fn sealed_key_that_is_not_the_trusted_ca_is_a_credential_error() {
    let trusted = new_key();
    let other = new_key();
    let sealed_other = sealed(&other);
    let procedure = procedure(&[
        ("principals", "root"),
        ("ca_public_key", &public_line(&trusted)),
    ]);
    let requester = Requester::new();
    let err = grant(
        &SshCaTarget::new(),
        &procedure,
        &requester.enrolled,
        &sealed_other,
        "brk_wrong_ca",
        Duration::from_secs(600),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TargetError::Credential { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("not the CA the hosts trust"), "{text}");
    assert_no_secret(&format!("{text} {err:?}"), &sealed_other);
}

#[tokio::test]
async fn a_sealed_credential_that_is_not_a_key_is_refused_without_echo() {
    let procedure = procedure(&[("principals", "root")]);
    let requester = Requester::new();
    for junk in [
        Secret::new(b"hunter2-not-a-key".to_vec()),
        Secret::new(vec![0xff, 0xfe, 0x00]),
        Secret::new(Vec::new()),
    ] {
        let err = grant(
            &SshCaTarget::new(),
            &procedure,
            &requester.enrolled,
            &junk,
            "brk_junk",
            Duration::from_secs(600),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, TargetError::Credential { .. }), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("hunter2"), "{err}");
    }
}

#[tokio::test]
async fn an_age_requester_key_is_refused_clearly() {
    let (_identity, age_key) = breakglass_custody::keygen();
    let ca = new_key();
    let procedure = procedure(&[("principals", "root")]);
    let err = grant(
        &SshCaTarget::new(),
        &procedure,
        &age_key,
        &sealed(&ca),
        "brk_age",
        Duration::from_secs(600),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TargetError::Config { .. }), "{err:?}");
    assert!(
        err.to_string().contains("need an ssh-ed25519 key enrolled"),
        "{err}"
    );
}

#[tokio::test]
async fn a_deadline_already_passed_issues_nothing() {
    let ca = new_key();
    let procedure = procedure(&[("principals", "root")]);
    let requester = Requester::new();
    let now = now();
    let err = SshCaTarget::new()
        .grant(
            &GrantRequest {
                procedure: &procedure,
                break_id: "brk_late",
                requester: "alice",
                requester_key: &requester.enrolled,
                now,
                deadline: Timestamp(now.millis() - 1000),
            },
            &sealed(&ca),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TargetError::Failed { .. }), "{err:?}");
}

#[tokio::test]
async fn early_close_without_krl_path_is_a_config_error() {
    let ca = new_key();
    let procedure = procedure(&[("principals", "root")]);
    let requester = Requester::new();
    let target = SshCaTarget::new();
    let issued = grant(
        &target,
        &procedure,
        &requester.enrolled,
        &sealed(&ca),
        "brk_no_krl",
        Duration::from_secs(600),
    )
    .await
    .unwrap();
    let err = target
        .end(&procedure, "brk_no_krl", &issued.handle, EndCause::Closed)
        .await
        .unwrap_err();
    assert!(matches!(err, TargetError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("could not be written"), "{err}");

    // A handle without a serial cannot be revoked, and says so.
    let err = target
        .end(
            &procedure,
            "brk_no_krl",
            &serde_json::json!({"key_id": "x"}),
            EndCause::Closed,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("serial"), "{err}");
}

#[tokio::test]
async fn issued_grants_and_errors_hold_no_secret() {
    let ca = new_key();
    let secret = sealed(&ca);
    let procedure = procedure(&[("principals", "root")]);
    let requester = Requester::new();
    let issued = grant(
        &SshCaTarget::new(),
        &procedure,
        &requester.enrolled,
        &secret,
        "brk_debug",
        Duration::from_secs(600),
    )
    .await
    .unwrap();
    let shown = format!("{issued:?} {}", issued.handle);
    assert_no_secret(&shown, &secret);
    let cert = String::from_utf8(issued.access.expose_secret().to_vec()).unwrap();
    assert!(!shown.contains(cert.split_whitespace().nth(1).unwrap()));
    assert!(shown.contains("[redacted]"));
    // The requester's private key never reaches the adapter; only its public half is in
    // the certificate.
    assert!(cert.starts_with("ssh-ed25519-cert-v01@openssh.com "));
    let parsed = ssh_key::Certificate::from_openssh(cert.trim()).unwrap();
    assert_eq!(parsed.public_key(), requester.key.public_key().key_data());
    assert_eq!(parsed.valid_principals(), ["root".to_string()]);
    assert!(parsed.critical_options().is_empty());
}

#[tokio::test]
async fn check_reports_the_banner_a_down_host_and_the_krl() {
    let test = "ssh::check_reports_the_banner_a_down_host_and_the_krl";
    let user = current_user();
    let ca = new_key();
    let Some(sshd) = Sshd::start(test, &public_line(&ca), &[(&user, &[&user])]) else {
        return;
    };
    let down = format!("127.0.0.1:{}", free_port());
    let hosts = format!("{}, {down}", sshd.address());
    let krl = sshd.krl_path().display().to_string();
    let procedure = procedure(&[
        ("principals", &user),
        ("hosts", &hosts),
        ("ca_public_key", &public_line(&ca)),
        ("krl_path", &krl),
    ]);
    let checks = SshCaTarget::new().check(&procedure).await.unwrap();
    let find = |prefix: &str| {
        checks
            .iter()
            .find(|c| c.name.starts_with(prefix))
            .unwrap_or_else(|| panic!("no check {prefix}: {checks:?}"))
    };
    let up = find(&format!("host {} ", sshd.address()));
    assert!(up.ok, "{up:?}");
    assert!(up.detail.starts_with("SSH-2.0-OpenSSH"), "{up:?}");
    let gone = find(&format!("host {down} "));
    assert!(!gone.ok, "{gone:?}");
    assert!(gone.detail.contains("cannot connect"), "{gone:?}");
    assert!(find("ca_public_key").ok);
    let krl_check = find("krl_path");
    assert!(krl_check.ok, "{krl_check:?}");

    // A missing KRL and a file that is not one are reported, not errors.
    let missing = procedure_with_krl(&user, "/nonexistent/dir/revoked.krl");
    let checks = SshCaTarget::new().check(&missing).await.unwrap();
    let line = checks
        .iter()
        .find(|c| c.name.starts_with("krl_path"))
        .unwrap();
    assert!(
        !line.ok && line.detail.contains("does not exist"),
        "{line:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "not a krl").unwrap();
    let checks = SshCaTarget::new()
        .check(&procedure_with_krl(&user, &junk.display().to_string()))
        .await
        .unwrap();
    let line = checks
        .iter()
        .find(|c| c.name.starts_with("krl_path"))
        .unwrap();
    assert!(
        !line.ok && line.detail.contains("not a key revocation list"),
        "{line:?}"
    );
}

fn procedure_with_krl(user: &str, krl: &str) -> Procedure {
    procedure(&[("principals", user), ("krl_path", krl)])
}

#[tokio::test]
async fn a_port_that_is_not_ssh_fails_the_check() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let procedure = procedure(&[("principals", "root"), ("hosts", &address)]);
    let checks = SshCaTarget::new().check(&procedure).await.unwrap();
    assert!(!checks[0].ok, "{checks:?}");
}

#[tokio::test]
async fn next_credential_keeps_the_ca_and_rotate_refuses_another() {
    let ca = new_key();
    let procedure = procedure(&[("principals", "root")]);
    let target = SshCaTarget::new();
    assert!(
        target
            .next_credential(&procedure, &sealed(&ca))
            .unwrap()
            .is_none()
    );
    target
        .rotate(&procedure, &sealed(&ca), &sealed(&ca))
        .await
        .unwrap();
    let err = target
        .rotate(&procedure, &sealed(&ca), &sealed(&new_key()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TrustedUserCAKeys"), "{err}");
    assert!(target.discover(&procedure).await.unwrap().is_empty());
}

fn assert_no_secret(shown: &str, secret: &Secret) {
    let text = String::from_utf8(secret.expose_secret().to_vec()).unwrap();
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    // Whole base64 lines only: a short last line could occur anywhere by chance.
    for line in text
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 40)
    {
        assert!(!shown.contains(line.trim()), "secret line shown: {shown}");
    }
}

#[test]
fn a_krl_written_by_ssh_keygen_is_kept_and_extended() {
    let test = "ssh::a_krl_written_by_ssh_keygen_is_kept_and_extended";
    if !Path::new(breakglass_testkit::sshd::SSH_KEYGEN).exists() {
        breakglass_testkit::skip(test, "ssh-keygen is not installed (openssh-client)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = new_key();
    let other = new_key();
    let ca_pub = dir.path().join("ca.pub");
    let other_pub = dir.path().join("other.pub");
    std::fs::write(&ca_pub, public_line(&ca)).unwrap();
    std::fs::write(&other_pub, public_line(&other)).unwrap();
    let krl = dir.path().join("revoked.krl");
    let spec = dir.path().join("spec");
    std::fs::write(&spec, "serial: 5-9\nserial: 12\nid: bob\n").unwrap();
    let made = Command::new("ssh-keygen")
        .args(["-k", "-z", "7", "-f"])
        .arg(&krl)
        .arg("-s")
        .arg(&ca_pub)
        .arg(&spec)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    std::fs::write(&spec, "serial: 77\n").unwrap();
    let updated = Command::new("ssh-keygen")
        .args(["-k", "-u", "-f"])
        .arg(&krl)
        .arg("-s")
        .arg(&other_pub)
        .arg(&spec)
        .output()
        .unwrap();
    assert!(updated.status.success(), "{updated:?}");

    let done =
        breakglass_targets::write_krl(&krl, ca.public_key(), 42, 4_000_000_000, now()).unwrap();
    // `-z 7`, kept by `-u`, plus one.
    assert_eq!(done["krl_version"], 8, "{done}");
    let (ok, dump) = ssh_keygen(&["-Q", "-l", "-f"], &krl);
    assert!(ok, "{dump}");
    for line in [
        "serial: 5-9",
        "serial: 12",
        "serial: 42",
        "id: bob",
        "serial: 77",
    ] {
        assert!(dump.contains(line), "{line} missing:\n{dump}");
    }
}
