//! `breakglass custodian keygen`: a 0600 age identity, the public key on stdout, and no
//! overwriting of an existing key.

mod common;

use std::os::unix::fs::PermissionsExt;

use breakglass_custody::Identity;
use common::{breakglass, stderr, stdout, stdout_json};

#[test]
fn writes_a_private_identity_and_prints_the_public_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("alice.key");
    let a = breakglass()
        .args(["custodian", "keygen", "--out"])
        .arg(&path)
        .assert()
        .success();
    let out = stdout(&a);
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(out.starts_with("age1") && out.ends_with('\n'), "{out:?}");
    assert_eq!(
        stderr(&a),
        format!(
            "identity written to {} (mode 0600); give the public key above to your admin\n",
            path.display()
        )
    );
    let mode = std::fs::metadata(&path)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    // The file is an identity whose public key is the one printed.
    let text = std::fs::read_to_string(&path).expect("read");
    let identity = Identity::parse(&text).expect("identity parses");
    assert_eq!(identity.public().canonical(), out.trim_end());
    assert!(
        text.contains(&format!("# public key: {}", out.trim_end())),
        "{text}"
    );
}

#[test]
fn refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bob.key");
    breakglass()
        .args(["custodian", "keygen", "--out"])
        .arg(&path)
        .assert()
        .success();
    let before = std::fs::read(&path).expect("read");
    breakglass()
        .args(["custodian", "keygen", "--out"])
        .arg(&path)
        .assert()
        .code(3)
        .stdout("")
        .stderr(format!(
            "error: {} exists; refusing to overwrite a key\n",
            path.display()
        ));
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "the key was overwritten"
    );
    let mode = std::fs::metadata(&path)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn refuses_to_overwrite_any_existing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "keep me\n").expect("write");
    breakglass()
        .args(["custodian", "keygen", "--out"])
        .arg(&path)
        .assert()
        .code(3)
        .stdout("");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "keep me\n");
}

#[test]
fn json_output_names_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("carol.key");
    let a = breakglass()
        .args(["--output", "json", "custodian", "keygen", "--out"])
        .arg(&path)
        .assert()
        .success();
    let doc = stdout_json(&a);
    assert_eq!(doc["identity_file"], path.display().to_string());
    let public = doc["public_key"].as_str().expect("public_key");
    assert!(public.starts_with("age1"), "{doc}");
    let identity =
        Identity::parse(&std::fs::read_to_string(&path).expect("read")).expect("identity");
    assert_eq!(identity.public().canonical(), public);
}
