//! Interoperability: OpenSSH's `ssh-keygen -Y` verifies our signatures and makes ones we accept.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use breakglass_custody::*;

/// Skips the calling test when `ssh-keygen` is missing, or fails it in CI.
fn ssh_keygen_available(test: &str) -> bool {
    if Command::new("ssh-keygen")
        .arg("-?")
        .stderr(Stdio::null())
        .status()
        .is_ok()
    {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("ssh-keygen not installed: apt-get install openssh-client");
    }
    let reason = "ssh-keygen not installed";
    eprintln!("SKIP: {test}: {reason}");
    if let Ok(dir) = std::env::var("BREAKGLASS_SKIP_DIR") {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(Path::new(&dir).join(test), format!("{reason}\n"));
    }
    false
}

#[test]
fn ssh_keygen_interoperates_with_sshsig() {
    if !ssh_keygen_available("ssh_keygen_interoperates_with_sshsig") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let private =
        ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let pem = private.to_openssh(ssh_key::LineEnding::LF).unwrap();
    let key_path = dir.path().join("id_ed25519");
    std::fs::write(&key_path, pem.as_bytes()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let identity = Identity::parse(&pem).unwrap();
    let public = identity.public();
    let namespace = "breakglass-challenge";
    let message = b"challenge 0123456789";

    // Ours, checked by OpenSSH.
    let sig_path = dir.path().join("ours.sig");
    std::fs::write(&sig_path, sign(&identity, namespace, message).unwrap()).unwrap();
    let signers = dir.path().join("allowed_signers");
    std::fs::write(&signers, format!("custodian {}\n", public.canonical())).unwrap();
    let mut child = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-I", "custodian", "-n", namespace, "-f"])
        .arg(&signers)
        .arg("-s")
        .arg(&sig_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen -Y verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // OpenSSH's, checked by us.
    let msg_path = dir.path().join("message");
    std::fs::write(&msg_path, message).unwrap();
    let out = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", namespace, "-f"])
        .arg(&key_path)
        .arg(&msg_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen -Y sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = std::fs::read_to_string(dir.path().join("message.sig")).unwrap();
    verify_signature(&public, namespace, message, &theirs).unwrap();
}
