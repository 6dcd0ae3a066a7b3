//! The TOTP second factor end to end over a real port: a custodian enrols and confirms with
//! their key, approves with a fresh code; a missing, wrong or reused code is refused saying
//! which; a procedure requiring `second_factor: totp` refuses a custodian without one; readiness
//! shows the count; a passphrase-protected age identity approves.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use breakglass_custody::TotpSecret;
use common::{open_break, stderr, stdout, stdout_json, world};

/// Unix seconds now (the server checks codes against its own clock).
#[allow(clippy::disallowed_methods)]
fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Encrypts `text` with a passphrase, armored, as `age -p -a` does.
fn passphrase_protect(text: &str, passphrase: &str) -> Vec<u8> {
    let mut recipient = age::scrypt::Recipient::new(secrecy::SecretString::from(passphrase));
    recipient.set_work_factor(10);
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .unwrap();
    let mut out = Vec::new();
    let armored =
        age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor).unwrap();
    let mut w = encryptor.wrap_output(armored).unwrap();
    w.write_all(text.as_bytes()).unwrap();
    w.finish().and_then(|a| a.finish()).unwrap();
    out
}

#[test]
fn totp_enrol_confirm_approve_and_refusals() {
    let w = world("root-db", "15m");

    // Enrolment: the secret and its URI, once, to alice's own terminal.
    let a = w
        .as_actor("alice")
        .args(["--output", "json", "totp", "enroll"])
        .assert()
        .success();
    let e = stdout_json(&a);
    let base32 = e["secret"].as_str().unwrap().to_owned();
    assert!(
        e["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/breakglass:alice?secret="),
        "{e}"
    );
    let secret = TotpSecret::from_base32(&base32).unwrap();
    let code = |t: u64| secret.expose_code_at(t).to_string();
    let t0 = now_s();

    // A wrong confirmation is refused (exit 4), naming why and never echoing the code.
    let wrong = if code(t0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let a = w
        .as_actor("alice")
        .args(["totp", "confirm", wrong])
        .assert()
        .code(4);
    let err = stderr(&a);
    assert!(
        err.contains("TOTP code refused: the TOTP code is wrong"),
        "{err}"
    );
    assert!(!err.contains(wrong), "{err}");
    w.as_actor("alice")
        .args(["totp", "confirm", &code(t0)])
        .assert()
        .success()
        .stdout("TOTP active for alice: approvals now need --totp CODE\n");

    // Readiness counts alice's second factor.
    let a = w.server.cli().args(["--output", "json", "check"]).assert();
    let r = stdout_json(&a);
    let sf = &r["procedures"][0]["second_factor"];
    assert_eq!(sf["custodians"], 3, "{r}");
    assert_eq!(sf["with_second_factor"], 1, "{r}");
    assert_eq!(sf["totp"], 1, "{r}");
    assert_eq!(sf["hardware"], 0, "{r}");
    assert!(sf["required"].is_null(), "{r}");
    let a = w.server.cli().arg("check").assert();
    assert!(
        stdout(&a).contains("  second factor: 1 of 3 custodians (TOTP 1, hardware key 0)\n"),
        "{}",
        stdout(&a)
    );

    let id = open_break(&w, "1m");
    let id2 = open_break(&w, "1m");

    // Missing (standard input is no terminal, so no prompt), the confirmation's own code
    // (already used), a wrong code: each refused with exit 4, saying which.
    let a = w.as_actor("alice").args(["approve", &id]).assert().code(4);
    assert!(
        stderr(&a).contains("a TOTP code is required to approve as `alice`"),
        "{}",
        stderr(&a)
    );
    let a = w
        .as_actor("alice")
        .args(["approve", &id, "--totp", &code(t0)])
        .assert()
        .code(4);
    let err = stderr(&a);
    assert!(err.contains("the TOTP code was already used"), "{err}");
    assert!(!err.contains(&code(t0)), "{err}");
    let a = w
        .as_actor("alice")
        .args(["approve", &id, "--totp", wrong])
        .assert()
        .code(4);
    assert!(
        stderr(&a).contains("the TOTP code is wrong"),
        "{}",
        stderr(&a)
    );

    // The next step's code (within the ±1 step window) is accepted, once.
    let fresh = code(t0 + 30);
    let a = w
        .as_actor("alice")
        .args(["approve", &id, "--totp", &fresh])
        .assert()
        .success();
    assert!(
        stdout(&a).starts_with("approved: 1/2 approvals\n"),
        "{}",
        stdout(&a)
    );
    let a = w
        .as_actor("alice")
        .env("BREAKGLASS_TOTP", &fresh)
        .args(["approve", &id2])
        .assert()
        .code(4);
    assert!(
        stderr(&a).contains("the TOTP code was already used"),
        "{}",
        stderr(&a)
    );

    // carol approves with a passphrase-protected age identity; a wrong passphrase is exit 4.
    let carol_key = std::fs::read_to_string(w.key("carol")).unwrap();
    let protected = w.keys.join("carol.key.age");
    std::fs::write(
        &protected,
        passphrase_protect(&carol_key, "hunter2 hunter2"),
    )
    .unwrap();
    let a = w
        .server
        .cli()
        .arg("--identity")
        .arg(&protected)
        .env("BREAKGLASS_IDENTITY_PASSPHRASE", "wrong")
        .args(["approve", &id])
        .assert()
        .code(4);
    assert!(
        stderr(&a).contains("wrong passphrase for the age-encrypted identity file"),
        "{}",
        stderr(&a)
    );
    let a = w
        .server
        .cli()
        .arg("--identity")
        .arg(&protected)
        .env("BREAKGLASS_IDENTITY_PASSPHRASE", "hunter2 hunter2")
        .args(["approve", &id])
        .assert()
        .success();
    assert!(
        stdout(&a).starts_with("approved: 2/2 approvals\n"),
        "{}",
        stdout(&a)
    );

    // The procedure now requires TOTP: bob (not enrolled) is refused, and readiness is broken
    // because only alice of the 2-of-3 quorum can give it.
    let file = w.keys.join("root-db.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}second_factor: totp\n")).unwrap();
    w.server
        .cli()
        .args(["procedure", "apply"])
        .arg(&file)
        .assert()
        .success();
    let a = w.as_actor("bob").args(["approve", &id2]).assert().code(6);
    assert!(
        stderr(&a).contains(
            "`bob` has no active TOTP enrolment: procedure `root-db` requires `second_factor: totp`"
        ),
        "{}",
        stderr(&a)
    );
    let a = w.server.cli().arg("check").assert().code(10);
    let out = stdout(&a);
    assert!(out.contains("second_factor.below_quorum"), "{out}");
    assert!(
        out.contains(
            "  second factor: 1 of 3 custodians (TOTP 1, hardware key 0); required: totp, 1 can approve\n"
        ),
        "{out}"
    );

    // Status without secrets; an admin resets alice's enrolment (audited).
    let a = w
        .as_actor("alice")
        .args(["--output", "json", "totp", "status"])
        .assert()
        .success();
    let s = stdout(&a);
    assert!(s.contains("\"active\": true"), "{s}");
    assert!(!s.contains(&base32), "{s}");
    w.server
        .cli()
        .args(["totp", "reset", "alice"])
        .assert()
        .success()
        .stdout("removed alice's TOTP enrolment\n");
    let a = w
        .server
        .cli()
        .args(["--output", "json", "audit", "list"])
        .assert()
        .success();
    let log = stdout(&a);
    for kind in [
        "totp.enrollment_started",
        "totp.enrolled",
        "totp.rejected",
        "totp.removed",
    ] {
        assert!(log.contains(kind), "{kind} missing");
    }
    assert!(!log.contains(&base32), "the secret reached the audit log");
    // As a JSON string (a 6-digit run may occur by chance inside a hash or a timestamp).
    assert!(
        !log.contains(&format!("\"{fresh}\"")),
        "a code reached the audit log"
    );
}
