//! Interoperability: the reference `age` CLI decrypts share files made by `seal`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use breakglass_custody::*;

/// Skips the calling test when the `age` binary is missing, or fails it in CI.
///
/// Returns `true` when the test should go on.
fn age_cli_available(test: &str) -> bool {
    if Command::new("age").arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("age CLI not installed: apt-get install age");
    }
    let reason = "age CLI not installed";
    eprintln!("SKIP: {test}: {reason}");
    if let Ok(dir) = std::env::var("BREAKGLASS_SKIP_DIR") {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(Path::new(&dir).join(test), format!("{reason}\n"));
    }
    false
}

fn age_decrypt(dir: &Path, identity_text: &str, age_file: &[u8]) -> Vec<u8> {
    let id_path = dir.join("id.txt");
    let share_path = dir.join("share.age");
    std::fs::write(&id_path, identity_text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&id_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::write(&share_path, age_file).unwrap();
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&id_path)
        .arg(&share_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "age -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn age_cli_decrypts_share() {
    if !age_cli_available("age_cli_decrypts_share") {
        return;
    }
    let (age_text, age_key) = keygen();
    let ssh_private =
        ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let ssh_pem = ssh_private.to_openssh(ssh_key::LineEnding::LF).unwrap();
    let ssh_key = Identity::parse(&ssh_pem).unwrap().public();

    let custodians = vec![("alice".to_owned(), age_key), ("bob".to_owned(), ssh_key)];
    let sealed = seal(&Secret::new(b"interop".to_vec()), 2, &custodians).unwrap();

    let identities = [age_text.expose_secret().to_owned(), ssh_pem.to_string()];
    for (share, identity_text) in sealed.shares.iter().zip(identities.iter()) {
        let dir = tempfile::tempdir().unwrap();
        let output = age_decrypt(dir.path(), identity_text, &share.age_file);
        let identity = Identity::parse(identity_text).unwrap();
        let expected = decrypt_share(&share.age_file, &identity).unwrap().encode();
        assert_eq!(output, expected.as_bytes(), "custodian {}", share.custodian);
        // What `age -d` prints is exactly what a custodian submits.
        let submitted = PlainShare::decode(std::str::from_utf8(&output).unwrap()).unwrap();
        verify_share(
            submitted,
            &sealed.seal_id,
            &share.custodian,
            &sealed.commitments,
        )
        .unwrap();
    }
}

#[test]
fn age_cli_decrypts_committed_vectors() {
    if !age_cli_available("age_cli_decrypts_committed_vectors") {
        return;
    }
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    for (identity, share) in [
        ("alice.identity.txt", "alice.share.age"),
        ("bob.id_ed25519", "bob.share.age"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let identity_text = std::fs::read_to_string(vectors.join(identity)).unwrap();
        let age_file = std::fs::read(vectors.join(share)).unwrap();
        let output = age_decrypt(dir.path(), &identity_text, &age_file);
        assert!(output.starts_with(b"Ymctc2hhcmUtdjE"), "{share}");
    }
}
