//! External custody end to end with the real binary: `check` lints a `kind: external` file
//! offline (and names file, line and field of an invalid one); against a real `breakglass
//! serve`, a requester opens a break (`custody open`), holders and the requester confirm
//! its steps in order (`custody step`; out of order exits 6, a stranger 4), the credential is
//! tainted until a holder records the rotation (`custody rotated`), a holder attests
//! (`custody attest`), `people` lists each holder holding it, and a drill is timed as the
//! people confirm its steps (`drill run --no-wait`, `drill show`).

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use common::{Server, breakglass, keygen, stderr, stdout, stdout_json};

const FILE: &str = "id: aws-root
description: Root user of the AWS production organisation
target:
  kind: external
custody:
  location: safe B2, London office
  holders:
    - {name: erin, contact: erin@example.com}
    - {name: frank, contact: '+44 20 7946 0000'}
  present: 2
  steps:
    - Two holders open safe B2 together
    - Take the MFA token and the envelope
    - Sign in to the AWS console as root
  attest_every: 30d
alert_channels: [security-oncall]
rotation: {max_credential_age: 180d}
drill: {every: 90d}
";

#[test]
fn external_custody_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aws-root.yaml");
    std::fs::write(&file, FILE).unwrap();

    // Offline lint: degraded (two holders, both must be present), with reasons.
    let a = breakglass().arg("check").arg(&file).assert().success();
    let out = stdout(&a);
    assert!(out.starts_with("aws-root: DEGRADED"), "{out}");
    assert!(out.contains("custody.no_spare"), "{out}");
    assert!(!out.contains("custodians.too_few"), "{out}");
    // An invalid file names file, line, column and field.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, FILE.replace("present: 2", "present: 3")).unwrap();
    let a = breakglass().arg("check").arg(&bad).assert().code(3);
    let err = stdout(&a) + &stderr(&a);
    assert!(
        err.contains(
            "bad.yaml:10:12: custody.present: 3 holders must be present but only 2 are listed"
        ),
        "{err}"
    );

    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let server = Server::start(&dir.path().join("data"));
    server
        .cli()
        .args(["procedure", "apply"])
        .arg(&file)
        .assert()
        .success();
    // The inventory shows its custody as external: where, and how many of whom.
    let a = server.cli().args(["procedure", "list"]).assert().success();
    assert!(
        stdout(&a).contains("external at safe B2, London office: 2 of 2 holders present"),
        "{}",
        stdout(&a)
    );
    let a = server
        .cli()
        .args(["procedure", "show", "aws-root"])
        .assert()
        .success();
    assert!(
        stdout(&a).contains("custody: external at safe B2, London office; 2 of 2 must be present: erin <erin@example.com>, frank <+44 20 7946 0000>"),
        "{}",
        stdout(&a)
    );
    let mut ids = std::collections::HashMap::new();
    for (name, role) in [
        ("erin", "custodian"),
        ("frank", "custodian"),
        ("dave", "requester"),
        ("mallory", "custodian"),
    ] {
        let (key, public) = keygen(&keys, name);
        let pubfile = keys.join(format!("{name}.pub"));
        std::fs::write(&pubfile, format!("{public}\n")).unwrap();
        server
            .cli()
            .args(["actor", "add", name, "--role", role, "--key-file"])
            .arg(&pubfile)
            .assert()
            .success();
        ids.insert(name, key);
    }
    let who = |name: &str| {
        let mut c = server.cli();
        c.arg("--identity").arg(&ids[name]);
        c
    };

    // Sealing is refused: there is nothing to seal.
    let a = server
        .cli()
        .args(["seal", "aws-root"])
        .write_stdin("x\n")
        .assert()
        .code(3);
    assert!(stderr(&a).contains("nothing to seal"), "{}", stderr(&a));

    // Dave opens a break.
    let a = who("dave")
        .args([
            "custody", "open", "aws-root", "--reason", "IdP down", "--ticket", "INC-42",
            "--output", "json",
        ])
        .assert()
        .success();
    let run = stdout_json(&a);
    let id = run["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ext_"), "{run}");

    // Out of order, and a stranger: refused with a clear error and exit code.
    let a = who("erin")
        .args(["custody", "step", &id, "2"])
        .assert()
        .code(6);
    assert!(
        stderr(&a).contains("step 2 is out of order: confirm step 1"),
        "{}",
        stderr(&a)
    );
    let a = who("mallory")
        .args(["custody", "step", &id, "1"])
        .assert()
        .code(4);
    assert!(
        stderr(&a).contains("only its holders (erin, frank)"),
        "{}",
        stderr(&a)
    );

    // The people confirm the steps.
    who("erin")
        .args(["custody", "step", &id, "1", "--note", "with frank"])
        .assert()
        .success();
    who("frank")
        .args(["custody", "step", &id, "2"])
        .assert()
        .success();
    let a = who("dave")
        .args(["custody", "step", &id, "3"])
        .assert()
        .success();
    let out = stdout(&a);
    assert!(out.contains("COMPLETED"), "{out}");
    assert!(
        out.contains("[x] 1. Two holders open safe B2 together — erin"),
        "{out}"
    );
    assert!(
        out.contains("[x] 3. Sign in to the AWS console as root — dave"),
        "{out}"
    );

    // Tainted until a holder records the rotation; a requester may not.
    let a = server
        .cli()
        .args(["custody", "status", "aws-root"])
        .assert()
        .success();
    assert!(
        stdout(&a).contains("TAINTED: used in break"),
        "{}",
        stdout(&a)
    );
    who("dave")
        .args(["custody", "rotated", "aws-root", "--note", "done"])
        .assert()
        .code(4);
    who("frank")
        .args([
            "custody",
            "rotated",
            "aws-root",
            "--note",
            "new password in envelope 4412; MFA re-enrolled",
        ])
        .assert()
        .success();
    let a = who("erin")
        .args([
            "custody",
            "attest",
            "aws-root",
            "--note",
            "token and envelope present",
        ])
        .assert()
        .success();
    assert!(
        stdout(&a).contains("aws-root attested by erin for erin"),
        "{}",
        stdout(&a)
    );
    let a = who("mallory")
        .args(["custody", "attest", "aws-root", "--note", "looks fine"])
        .assert()
        .code(4);
    assert!(
        stderr(&a).contains("`mallory` is not a holder of `aws-root`"),
        "{}",
        stderr(&a)
    );
    let a = server
        .cli()
        .args(["custody", "status", "aws-root", "--output", "json"])
        .assert()
        .success();
    let status = stdout_json(&a);
    assert_eq!(status["tainted"], false, "{status}");
    assert_eq!(
        status["holders"][0]["attestation_overdue"], false,
        "{status}"
    );
    assert_eq!(
        status["holders"][1]["attestation_overdue"], true,
        "{status}"
    );

    // Readiness: no taint, no seal finding.
    let a = server.cli().args(["check", "--output", "json"]).assert();
    let v = stdout_json(&a);
    let text = v.to_string();
    assert!(!text.contains("seal.missing"), "{text}");
    assert!(!text.contains("custody.tainted"), "{text}");
    assert!(text.contains("drill.never"), "{text}");

    // The people inventory: each holder holds it, externally.
    let a = server.cli().arg("people").assert().success();
    let out = stdout(&a);
    let erin_row = out
        .lines()
        .find(|l| l.trim_start_matches(['│', ' ']).starts_with("erin"))
        .unwrap_or_else(|| panic!("no erin row:\n{out}"));
    assert!(
        erin_row.contains("aws-root (external: safe B2, London office, 2/2 present)"),
        "{out}"
    );

    // A drill, timed as the people confirm its steps.
    let a = who("dave")
        .args(["drill", "run", "aws-root", "--no-wait", "--output", "json"])
        .assert()
        .success();
    let drill = stdout_json(&a);
    let drill_id = drill["id"].as_str().unwrap().to_owned();
    assert_eq!(drill["mode"], "external");
    for (step, name) in [(1, "erin"), (2, "frank"), (3, "erin")] {
        who(name)
            .args(["custody", "step", &drill_id, &step.to_string()])
            .assert()
            .success();
    }
    let a = server
        .cli()
        .args(["drill", "show", &drill_id])
        .assert()
        .success();
    let out = stdout(&a);
    assert!(out.contains("PASSED"), "{out}");
    assert!(out.contains("step 2"), "{out}");
    assert!(
        out.contains("Take the MFA token and the envelope — frank, took"),
        "{out}"
    );
    let a = server
        .cli()
        .args(["custody", "list", "aws-root", "--output", "json"])
        .assert()
        .success();
    assert_eq!(stdout_json(&a)["runs"].as_array().unwrap().len(), 2);
}
