//! `breakglass evidence BREAK_ID` writes one signed page for a whole break; `evidence verify`
//! checks it offline with the audit public key alone, and a one-byte edit anywhere in it — in
//! the readable page, in the embedded bundle, in the audit segment — fails verification.

mod common;

use common::{open_break, stdout, world};

#[test]
fn an_evidence_pack_verifies_offline_and_any_edit_is_detected() {
    let w = world("p", "15m");
    let id = open_break(&w, "10m");
    for name in ["alice", "bob"] {
        w.as_actor(name).args(["approve", &id]).assert().success();
    }
    w.as_actor("dave")
        .args(["break", "reveal", &id])
        .assert()
        .success();
    w.as_actor("dave")
        .args(["break", "close", &id])
        .assert()
        .success();
    let pubkey = stdout(&w.server.cli().args(["audit", "pubkey"]).assert().success())
        .trim()
        .to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let pack = dir.path().join("pack.html");
    w.server
        .cli()
        .args(["evidence", &id, "--out"])
        .arg(&pack)
        .assert()
        .success();
    let page = std::fs::read(&pack).expect("pack");
    let text = String::from_utf8_lossy(&page).to_string();
    // Readable: the facts a reviewer looks for are on the page itself.
    for needle in [
        "share.accepted",
        "break.granted",
        "grant.revealed",
        "break.closed",
        "T-1",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from the page");
    }
    assert!(
        !text.contains(&w.secret),
        "the sealed secret is in the pack"
    );

    // Offline: the server is stopped; the public key alone.
    drop(w.server);
    let verify = |file: &std::path::Path, key: Option<&str>| {
        let mut c = common::breakglass();
        c.args(["evidence", "verify"]).arg(file);
        if let Some(k) = key {
            c.args(["--pubkey", k]);
        }
        c.assert()
    };
    let ok = verify(&pack, Some(&pubkey)).success();
    assert!(stdout(&ok).contains("verifies"), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("(pinned)"));
    verify(&pack, None).success();

    // Another key: refused.
    let other = breakglass_audit::AuditKey::from_seed([7; 32])
        .public()
        .to_string();
    verify(&pack, Some(&other)).code(8);

    // A one-byte edit anywhere fails: at 40 positions across the whole file.
    let edited = dir.path().join("edited.html");
    let mut failures = 0;
    for i in 0..40 {
        let at = (page.len() - 1) * i / 39;
        let mut bytes = page.clone();
        bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
        std::fs::write(&edited, &bytes).expect("write");
        let out = verify(&edited, Some(&pubkey)).code(8);
        let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(!err.is_empty(), "byte {at}: no reason given");
        failures += 1;
    }
    assert_eq!(failures, 40);
}
