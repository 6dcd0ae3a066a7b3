//! `breakglass demo --once`: a whole break end to end on a fresh demo dir.

mod common;

use common::{breakglass, stdout};

#[test]
fn demo_once_runs_a_whole_break() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join("demo");
    let a = breakglass()
        .args(["demo", "--once", "--dir"])
        .arg(&demo)
        .assert()
        .success();
    let out = stdout(&a);
    assert!(
        out.starts_with(&format!("breakglass demo — data dir {}\n", demo.display())),
        "{out}"
    );
    assert!(out.contains("time to access"), "{out}");
    assert!(out.contains("audit chain intact"), "{out}");
    assert!(
        out.contains("break.requested → share.accepted → share.accepted → break.granted → grant.revealed → break.expired"),
        "{out}"
    );
    assert!(out.ends_with("demo complete.\n"), "{out}");
    assert!(demo.join("breakglass.db").exists());

    // A second run recreates its own demo dir (a shorter grant keeps it quick).
    let a = breakglass()
        .args(["demo", "--once", "--grant", "1s", "--dir"])
        .arg(&demo)
        .assert()
        .success();
    assert!(stdout(&a).contains("audit chain intact"), "{}", stdout(&a));
}

#[test]
fn demo_refuses_to_wipe_a_directory_it_did_not_create() {
    let dir = tempfile::tempdir().expect("tempdir");
    let precious = dir.path().join("precious.txt");
    std::fs::write(&precious, "keep\n").expect("write");
    breakglass()
        .args(["demo", "--once", "--dir"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout("");
    assert_eq!(std::fs::read_to_string(&precious).expect("read"), "keep\n");
}
