//! Issue 11, offline recovery: a kit exported (by hand, and automatically after every seal),
//! the server stopped, each custodian's share re-encrypted to the recoverer and the secret
//! opened with the kit and the CLI alone (the CLI points at a closed port, so any network use
//! would fail), a signed spool written; the server back, `audit import` appends the spool
//! marked offline, the chain verifies, the procedure is tainted and the alerts are delivered.
//! A tampered kit, a share made from another kit, a broken or cut spool and a second import
//! are each refused with a clear error.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Server, breakglass, keygen, stderr, stdout, stdout_json};

/// Nothing listens here: an offline command that tried the network would fail.
const NO_SERVER: &str = "http://127.0.0.1:9";

/// An ssh-ed25519 key pair for the recoverer: (private key file, public key line).
fn ssh_keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
        .expect("ssh key");
    let path = dir.join(name);
    std::fs::write(
        &path,
        key.to_openssh(ssh_key::LineEnding::LF)
            .expect("openssh")
            .as_bytes(),
    )
    .expect("write key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (path, key.public_key().to_openssh().expect("public"))
}

fn offline() -> assert_cmd::Command {
    let mut c = breakglass();
    c.args(["--server", NO_SERVER]);
    c
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn audit_kinds(server: &Server) -> Vec<serde_json::Value> {
    let a = server
        .cli()
        .args(["--output", "json", "audit", "list", "--limit", "1000"])
        .assert()
        .success();
    stdout_json(&a)["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The seal a spool opened.
fn verified_seal(spool: &Path) -> String {
    breakglass_recovery::verify_spool(&std::fs::read_to_string(spool).expect("spool"))
        .expect("spool verifies")
        .seal_id
}

/// The readiness finding codes of one procedure, from the server.
fn finding_codes(server: &Server, procedure: &str) -> Vec<String> {
    let a = server.cli().args(["--output", "json", "check"]).assert();
    let v: serde_json::Value =
        serde_json::from_slice(&a.get_output().stdout).expect("check --output json");
    v["procedures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["procedure"] == procedure)
        .flat_map(|p| p["findings"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f["code"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_offline_recovery_is_imported_tainted_and_alerted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    let kits = dir.path().join("kits");
    let work = dir.path().join("work");
    std::fs::create_dir(&keys).expect("keys");
    std::fs::create_dir(&work).expect("work");
    let data = dir.path().join("data");

    let hook = common::webhook_receiver().await;
    let channels = dir.path().join("channels.yaml");
    std::fs::write(
        &channels,
        format!(
            "channels:\n  - name: ops\n    kind: webhook\n    url: http://{hook}/hook\n    secret: s3cret-for-tests\n"
        ),
    )
    .expect("channels");
    let args: Vec<String> = vec![
        "--channels".into(),
        channels.display().to_string(),
        "--recovery-kit-dir".into(),
        kits.display().to_string(),
    ];
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::start_with(&data, &args_ref);

    let custodians: Vec<(&str, String)> = ["alice", "bob", "carol"]
        .into_iter()
        .map(|n| (n, keygen(&keys, n).1))
        .collect();
    let (rita_key, rita_pub) = ssh_keypair(&keys, "rita");
    for id in ["vault", "other"] {
        let list: Vec<(&str, &str)> = custodians.iter().map(|(n, k)| (*n, k.as_str())).collect();
        let mut yaml = common::procedure_yaml(id, &list, 2, "15m");
        yaml.push_str("alert_channels: [ops]\n");
        let file = keys.join(format!("{id}.yaml"));
        std::fs::write(&file, yaml).expect("procedure");
        server
            .cli()
            .args(["procedure", "apply"])
            .arg(&file)
            .assert()
            .success();
        server
            .cli()
            .args(["seal", id])
            .write_stdin(format!("s3cr3t-of-{id}\n"))
            .assert()
            .success();
    }

    // The kit is exported automatically after the seal, and by hand: the same kit id.
    let auto = kits.join("vault.kit");
    wait_for("the automatic kit", || auto.exists());
    let kit = work.join("vault.kit");
    let a = server
        .cli()
        .args([
            "--output",
            "json",
            "recovery-kit",
            "export",
            "vault",
            "--out",
        ])
        .arg(&kit)
        .assert()
        .success();
    let kit_id = stdout_json(&a)["kit_id"]
        .as_str()
        .expect("kit id")
        .to_owned();
    let auto_doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&auto).expect("auto kit")).expect("json");
    assert_eq!(
        auto_doc["kit_id"],
        kit_id.as_str(),
        "the automatic kit is another kit"
    );
    let other_kit = work.join("other.kit");
    server
        .cli()
        .args(["recovery-kit", "export", "other", "--out"])
        .arg(&other_kit)
        .assert()
        .success();
    let pubkey = stdout(&server.cli().args(["audit", "pubkey"]).assert().success())
        .trim()
        .to_owned();
    let kit_text = std::fs::read_to_string(&kit).expect("kit");
    assert!(
        !kit_text.contains("s3cr3t-of-vault"),
        "the secret is in the kit"
    );

    // The server is stopped: from here on, the kit and the CLI only.
    server.kill_now();

    let share = |name: &str, kit: &PathBuf, out: &PathBuf| {
        offline()
            .args(["recover", "share", "--kit"])
            .arg(kit)
            .arg("--identity")
            .arg(keys.join(format!("{name}.key")))
            .args(["--to", &rita_pub, "--pubkey", &pubkey, "--out"])
            .arg(out)
            .assert()
    };
    let (a_share, b_share) = (work.join("alice.share"), work.join("bob.share"));
    let out = stdout(&share("alice", &kit, &a_share).success());
    assert!(out.contains("share of alice for vault"), "{out}");
    share("bob", &kit, &b_share).success();
    let share_text = std::fs::read_to_string(&a_share).expect("share file");
    assert!(
        share_text.contains(&kit_id),
        "the share file does not name its kit"
    );

    let open = |shares: &[&PathBuf], out: &PathBuf, spool: &PathBuf| {
        let mut c = offline();
        c.args(["recover", "open", "--kit"])
            .arg(&kit)
            .arg("--identity")
            .arg(&rita_key)
            .args(shares)
            .args([
                "--reason",
                "datacenter fire",
                "--ticket",
                "INC-7",
                "--recoverer",
                "rita",
            ])
            .args(["--pubkey", &pubkey, "--out"])
            .arg(out)
            .arg("--spool")
            .arg(spool);
        c.assert()
    };

    // Below the quorum: refused, nothing written.
    let e = open(&[&a_share], &work.join("no.txt"), &work.join("no.spool")).code(6);
    assert!(stderr(&e).contains("1 of 2 shares"), "{}", stderr(&e));
    assert!(!work.join("no.spool").exists() && !work.join("no.txt").exists());

    // A share made from another kit: refused, naming both kits.
    let foreign = work.join("alice-other.share");
    share("alice", &other_kit, &foreign).success();
    let e = open(
        &[&foreign, &b_share],
        &work.join("no.txt"),
        &work.join("no.spool"),
    )
    .code(8);
    let msg = stderr(&e);
    assert!(
        msg.contains("made from kit") && msg.contains(&kit_id),
        "{msg}"
    );

    // A tampered kit (one byte): refused by both commands.
    let tampered = work.join("tampered.kit");
    for at in [kit_text.len() / 3, kit_text.len() / 2, kit_text.len() - 2] {
        let mut bytes = kit_text.clone().into_bytes();
        bytes[at] = if bytes[at] == b'7' { b'8' } else { b'7' };
        std::fs::write(&tampered, &bytes).expect("tampered");
        let e = offline()
            .args(["recover", "share", "--kit"])
            .arg(&tampered)
            .arg("--identity")
            .arg(keys.join("carol.key"))
            .args(["--to", &rita_pub, "--out"])
            .arg(work.join("carol.share"))
            .assert()
            .code(8);
        assert!(stderr(&e).contains("tampered.kit"), "{}", stderr(&e));
        assert!(!work.join("carol.share").exists());
    }

    // The recovery itself.
    let secret = work.join("secret.txt");
    let spool = work.join("vault.spool");
    let e = open(&[&a_share, &b_share], &secret, &spool).success();
    assert!(
        stderr(&e).contains("secret opened for vault"),
        "{}",
        stderr(&e)
    );
    assert_eq!(
        std::fs::read_to_string(&secret).expect("secret"),
        "s3cr3t-of-vault",
        "the opened secret is not the sealed one"
    );
    let mode = std::fs::metadata(&secret)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the secret file is readable by others");
    let spool_text = std::fs::read_to_string(&spool).expect("spool");
    assert!(!spool_text.contains("s3cr3t"), "the secret is in the spool");
    let lines: Vec<&str> = spool_text.lines().collect();
    assert_eq!(
        lines.len(),
        6,
        "opened, 2 shares, granted, revealed, closed:\n{spool_text}"
    );

    // Broken spools are refused before anything is sent (the server is still down).
    let bad = work.join("bad.spool");
    let import = |file: &PathBuf| offline().args(["audit", "import"]).arg(file).assert();
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    std::fs::write(&bad, swapped.join("\n") + "\n").expect("bad");
    let e = import(&bad).code(8);
    assert!(stderr(&e).contains("spool line 2"), "{}", stderr(&e));
    std::fs::write(&bad, lines[..5].join("\n") + "\n").expect("bad");
    let e = import(&bad).code(8);
    assert!(stderr(&e).contains("cut short"), "{}", stderr(&e));
    let edited = spool_text.replacen("INC-7", "INC-8", 1);
    std::fs::write(&bad, edited).expect("bad");
    let e = import(&bad).code(8);
    assert!(stderr(&e).contains("spool line 1"), "{}", stderr(&e));

    // The server is back: import, verify, tainted, alerted. The procedure file changed
    // meanwhile (a shorter grant): the kit is still recognised, by its recorded export.
    let mut server = Server::start_with(&data, &args_ref);
    {
        let list: Vec<(&str, &str)> = custodians.iter().map(|(n, k)| (*n, k.as_str())).collect();
        let mut yaml = common::procedure_yaml("vault", &list, 2, "10m");
        yaml.push_str("alert_channels: [ops]\n");
        let file = keys.join("vault.yaml");
        std::fs::write(&file, yaml).expect("procedure");
        server
            .cli()
            .args(["procedure", "apply"])
            .arg(&file)
            .assert()
            .success();
    }
    let a = server
        .cli()
        .args(["audit", "import"])
        .arg(&spool)
        .assert()
        .success();
    assert!(
        stdout(&a).contains("vault is now tainted"),
        "{}",
        stdout(&a)
    );
    let again = server
        .cli()
        .args(["audit", "import"])
        .arg(&spool)
        .assert()
        .code(6);
    assert!(
        stderr(&again).contains("already imported"),
        "{}",
        stderr(&again)
    );
    // A well-signed spool that names a kit this server never made: refused, nothing added.
    let rita =
        breakglass_custody::Identity::parse(&std::fs::read_to_string(&rita_key).expect("key"))
            .expect("identity");
    let forged = |procedure: &str| {
        let mut w = breakglass_recovery::SpoolWriter::open(
            &rita,
            &"ab".repeat(32),
            procedure,
            &verified_seal(&spool),
            "rita",
            &rita.public(),
            "r",
            "T",
            1,
        )
        .expect("spool");
        w.push(
            "share.accepted",
            serde_json::json!({"custodian": "alice"}),
            2,
        )
        .expect("line");
        w.close("opened", 3).expect("close")
    };
    std::fs::write(&bad, forged("vault")).expect("forged");
    let e = server
        .cli()
        .args(["audit", "import"])
        .arg(&bad)
        .assert()
        .code(6);
    assert!(stderr(&e).contains("never exported"), "{}", stderr(&e));
    std::fs::write(&bad, forged("nope")).expect("forged");
    server
        .cli()
        .args(["audit", "import"])
        .arg(&bad)
        .assert()
        .code(5);
    server.cli().args(["audit", "verify"]).assert().success();
    let a = server
        .cli()
        .args(["--output", "json", "procedure", "show", "vault"])
        .assert()
        .success();
    let p = stdout_json(&a);
    assert_eq!(p["tainted"], true, "{p}");
    assert_eq!(p["taint"]["secret_revealed"], true, "{p}");

    let entries = audit_kinds(&server);
    let offline_lines: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| {
            e["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("offline."))
        })
        .collect();
    assert_eq!(offline_lines.len(), 6, "every spool line is in the chain");
    // Each imported line keeps its own signature: the spool verifies again from the chain.
    let rebuilt: String = offline_lines
        .iter()
        .map(|e| e["payload"]["line"].to_string() + "\n")
        .collect();
    let verified = breakglass_recovery::verify_spool(&rebuilt).expect("the spool from the chain");
    assert_eq!(verified.kit_id, kit_id);
    assert!(entries.iter().any(|e| e["kind"] == "recovery.imported"));
    assert!(entries.iter().any(|e| e["kind"] == "procedure.tainted"));
    // The alerts a server-side break raises, delivered (each receipt names its entry).
    let offline_seqs: Vec<u64> = offline_lines
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    let mut events = Vec::new();
    wait_for("the offline alerts' receipts", || {
        events = audit_kinds(&server)
            .iter()
            .filter(|e| e["kind"] == "alert.delivered")
            .filter(|e| {
                e["payload"]["event_seq"]
                    .as_u64()
                    .is_some_and(|s| offline_seqs.contains(&s))
            })
            .filter_map(|e| e["payload"]["event"].as_str().map(str::to_owned))
            .collect();
        events.len() >= 5
    });
    for event in [
        "break.requested",
        "share.accepted",
        "break.granted",
        "grant.revealed",
    ] {
        assert!(
            events.iter().any(|e| e == event),
            "no {event} alert: {events:?}"
        );
    }

    // Re-sealing needs a new secret, and the kit is exported again for the new seal.
    server
        .cli()
        .args(["seal", "vault"])
        .write_stdin("s3cr3t-of-vault\n")
        .assert()
        .failure();
    server
        .cli()
        .args(["seal", "vault"])
        .write_stdin("a-new-s3cr3t\n")
        .assert()
        .success();
    wait_for("the re-exported kit", || {
        std::fs::read_to_string(&auto)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|d| d["kit_id"] != kit_id.as_str())
    });
    let codes = finding_codes(&server, "vault");
    assert!(
        !codes.iter().any(|c| c.starts_with("recovery_kit")),
        "the kit is current: {codes:?}"
    );
    server.kill_now();
}

/// An SSH CA procedure: offline, the recoverer gets a short user certificate signed by the
/// sealed CA key (the target's own certificate code), never the CA key itself.
#[test]
fn an_ssh_ca_procedure_issues_a_short_certificate_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).expect("keys");
    // The kit directory cannot be created (its parent is a file): readiness says so.
    let not_a_dir = dir.path().join("not-a-dir");
    std::fs::write(&not_a_dir, "").expect("file");
    let kit_dir = not_a_dir.join("kits").display().to_string();
    let mut server =
        Server::start_with(&dir.path().join("data"), &["--recovery-kit-dir", &kit_dir]);
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let (_, key) = keygen(&keys, name);
        custodians.push_str(&format!("  - name: {name}\n    key: {key}\n"));
    }
    let (ca_key, ca_pub) = ssh_keypair(&keys, "ca");
    let (rita_key, rita_pub) = ssh_keypair(&keys, "rita");
    let rita_pub_file = keys.join("rita.pub");
    std::fs::write(&rita_pub_file, format!("{rita_pub}\n")).expect("rita.pub");
    let file = keys.join("hosts.yaml");
    std::fs::write(
        &file,
        format!(
            "id: hosts\ntarget:\n  kind: ssh\n  details:\n    principals: bg-root\n    hosts: 127.0.0.1:22\n    ca_public_key: {ca_pub}\ncustodians:\n{custodians}quorum: 2\nmax_grant: 1h\n"
        ),
    )
    .expect("procedure");
    server
        .cli()
        .args(["procedure", "apply"])
        .arg(&file)
        .assert()
        .success();
    server
        .cli()
        .args(["seal", "hosts", "--keep-newline"])
        .write_stdin(std::fs::read_to_string(&ca_key).expect("ca key"))
        .assert()
        .success();
    std::thread::sleep(Duration::from_millis(1500));
    let codes = finding_codes(&server, "hosts");
    assert!(
        codes.iter().any(|c| c == "recovery_kit.missing"),
        "{codes:?}"
    );
    let kit = keys.join("hosts.kit");
    server
        .cli()
        .args(["recovery-kit", "export", "hosts", "--out"])
        .arg(&kit)
        .assert()
        .success();
    server.kill_now();

    let mut shares = Vec::new();
    for name in ["alice", "carol"] {
        let out = keys.join(format!("{name}.share"));
        offline()
            .args(["recover", "share", "--kit"])
            .arg(&kit)
            .arg("--identity")
            .arg(keys.join(format!("{name}.key")))
            .arg("--to")
            .arg(&rita_pub_file)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        shares.push(out);
    }
    let open = |extra: &[&str], out: &Path, spool: &Path| {
        let mut c = offline();
        c.args(["recover", "open", "--kit"])
            .arg(&kit)
            .arg("--identity")
            .arg(&rita_key)
            .args(&shares)
            .args(["--reason", "bastion down", "--ticket", "INC-9"])
            .args(extra)
            .arg("--out")
            .arg(out)
            .arg("--spool")
            .arg(spool);
        c.assert()
    };
    let cert_for = rita_pub_file.display().to_string();
    // Without a key to certify, and longer than max_grant: refused before anything opens.
    open(&[], &keys.join("no"), &keys.join("no.spool")).code(3);
    open(
        &["--cert-for", &cert_for, "--duration", "2h"],
        &keys.join("no"),
        &keys.join("no.spool"),
    )
    .code(3);
    assert!(!keys.join("no.spool").exists());

    let cert_file = keys.join("rita-cert.pub");
    let spool = keys.join("hosts.spool");
    let e = open(
        &["--cert-for", &cert_for, "--duration", "10m"],
        &cert_file,
        &spool,
    )
    .success();
    assert!(
        stderr(&e).contains("certificate issued for hosts"),
        "{}",
        stderr(&e)
    );
    let text = std::fs::read_to_string(&cert_file).expect("certificate");
    assert!(!text.contains("PRIVATE KEY"), "the CA key was written");
    let cert = ssh_key::Certificate::from_openssh(text.trim()).expect("an OpenSSH certificate");
    assert_eq!(cert.valid_principals(), ["bg-root".to_owned()]);
    assert!(
        cert.valid_before() - cert.valid_after() <= 11 * 60,
        "not short"
    );
    assert!(
        cert.key_id().starts_with("breakglass:offline-"),
        "{}",
        cert.key_id()
    );
    let ca = ssh_key::PublicKey::from_openssh(&ca_pub).expect("ca");
    assert_eq!(
        cert.signature_key(),
        ca.key_data(),
        "not signed by the sealed CA"
    );
    let rita = ssh_key::PublicKey::from_openssh(&rita_pub).expect("rita");
    assert_eq!(cert.public_key(), rita.key_data());
    let v = breakglass_recovery::verify_spool(&std::fs::read_to_string(&spool).expect("spool"))
        .expect("the spool verifies");
    let kinds: Vec<&str> = v.entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "spool.opened",
            "share.accepted",
            "share.accepted",
            "break.granted",
            "spool.closed"
        ]
    );
    assert_eq!(v.entries[3].payload["grant"]["serial"], cert.serial());
}
