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

    // The server is back: import, verify, tainted, alerted.
    let mut server = Server::start_with(&data, &args_ref);
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
    server.kill_now();
}
