//! `breakglass check FILES` lints procedure files without a server: each procedure gets ready,
//! degraded or broken with its reasons; exit 10 when one is broken (or degraded with
//! --strict); invalid files exit 3 with file:line:column errors.

mod common;

use common::{breakglass, keygen, stdout, stdout_json};

fn file(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write");
    path
}

#[test]
fn check_lints_files_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| keygen(dir.path(), n).1)
        .collect();
    let custodians = |n: usize| {
        keys.iter()
            .take(n)
            .enumerate()
            .map(|(i, k)| format!("  - name: c{i}\n    key: {k}\n"))
            .collect::<String>()
    };
    let good = file(
        dir.path(),
        "good.yaml",
        &format!(
            "id: good\ntarget:\n  kind: secret\ncustodians:\n{}quorum: 2\nmax_grant: 15m\nalert_channels: [ops]\ndrill: {{every: 30d}}\nrotation: {{max_credential_age: 90d}}\n",
            custodians(3)
        ),
    );
    let a = breakglass()
        .args(["check", "--strict"])
        .arg(&good)
        .assert()
        .success();
    assert_eq!(stdout(&a), "good: READY\n");

    let bad = file(
        dir.path(),
        "bad.yaml",
        &format!(
            "id: bad\ntarget:\n  kind: secret\ncustodians:\n{}quorum: 2\nmax_grant: 15m\ndependencies: [okta]\nprotects_against: [okta]\n",
            custodians(2)
        ),
    );
    let a = breakglass()
        .arg("check")
        .arg(&bad)
        .arg(&good)
        .assert()
        .code(10);
    let out = stdout(&a);
    assert!(
        out.starts_with("bad: BROKEN\n  broken   dependency.on_outage"),
        "{out}"
    );
    assert!(out.contains("quorum.no_spare"), "{out}");
    let a = breakglass()
        .args(["--output", "json", "check"])
        .arg(&bad)
        .assert()
        .code(10);
    let v = stdout_json(&a);
    assert_eq!(v["procedures"][0]["verdict"], "broken");
    assert_eq!(v["procedures"][0]["file"], bad.display().to_string());

    // Degraded passes without --strict, fails with it.
    let degraded = file(
        dir.path(),
        "degraded.yaml",
        &format!(
            "id: degraded\ntarget:\n  kind: secret\ncustodians:\n{}quorum: 2\nmax_grant: 15m\n",
            custodians(3)
        ),
    );
    breakglass().arg("check").arg(&degraded).assert().success();
    breakglass()
        .args(["check", "--strict"])
        .arg(&degraded)
        .assert()
        .code(10);

    let invalid = file(dir.path(), "invalid.yaml", "id: x\nquorum: 1\n");
    breakglass().arg("check").arg(&invalid).assert().code(3);
}

#[test]
fn whatif_names_who_can_still_open_it() {
    let w = common::world("root-db", "15m");
    let a = w
        .server
        .cli()
        .args(["whatif", "--down", "alice"])
        .assert()
        .success();
    let out = stdout(&a);
    assert!(
        out.contains("root-db: can open — custodians bob, carol"),
        "{out}"
    );
    let a = w
        .server
        .cli()
        .args(["whatif", "--down", "alice,bob"])
        .assert()
        .code(10);
    let out = stdout(&a);
    assert!(out.contains("root-db: CANNOT OPEN"), "{out}");
    assert!(out.contains("alice (down), bob (down)"), "{out}");
}
