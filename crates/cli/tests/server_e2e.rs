//! End to end over a real port: `breakglass serve` as a child process, driven by the CLI binary
//! with key sign-in. Exact output where it is deterministic, and the documented exit codes.

mod common;

use common::{Server, breakglass, open_break, show_break, stderr, stdout, stdout_json, world};

#[test]
fn apply_is_idempotent() {
    let w = world("root-db", "15m");
    let file = w.keys.join("root-db.yaml");
    w.server
        .cli()
        .args(["procedure", "apply"])
        .arg(&file)
        .assert()
        .success()
        .stdout("root-db: unchanged (version 1)\n");
    let a = w
        .server
        .cli()
        .args(["--output", "json", "procedure", "list"])
        .assert()
        .success();
    let list = stdout_json(&a);
    let procedures = list["procedures"].as_array().expect("procedures");
    assert_eq!(procedures.len(), 1, "{list}");
    assert_eq!(procedures[0]["id"], "root-db");
    assert_eq!(procedures[0]["quorum"], 2);
}

#[test]
fn apply_refuses_an_invalid_file_with_its_problems() {
    let w = world("root-db", "15m");
    let bad = w.keys.join("bad.yaml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(w.keys.join("root-db.yaml"))
            .expect("read")
            .replace("quorum: 2", "quorum: 1"),
    )
    .expect("write");
    let a = w
        .server
        .cli()
        .args(["procedure", "apply"])
        .arg(&bad)
        .assert()
        .code(3)
        .stdout("");
    let err = stderr(&a);
    assert!(
        err.contains(&format!(
            "  {}:12:9: quorum: must be at least 2 (two-person rule), got 1\n",
            bad.display()
        )),
        "{err}"
    );
}

#[test]
fn full_break_lifecycle() {
    let w = world("root-db", "15m");
    let cli = || w.server.cli();

    let id = open_break(&w, "1m");

    // alice approves; twice is refused by the lifecycle.
    let a = w
        .as_actor("alice")
        .args(["approve", &id])
        .assert()
        .success();
    let out = stdout(&a);
    assert!(out.starts_with("approved: 1/2 approvals\n"), "{out}");
    assert!(
        out.contains(&format!(
            "{id} root-db [requested] by dave: r (T-1), approvals 1/2"
        )),
        "{out}"
    );
    let a = w
        .as_actor("alice")
        .args(["approve", &id])
        .assert()
        .code(6)
        .stdout("");
    assert!(stderr(&a).contains("already approved"), "{}", stderr(&a));

    // Before the quorum there is nothing to reveal.
    let a = w
        .as_actor("dave")
        .args(["break", "reveal", &id])
        .assert()
        .code(6)
        .stdout("");
    assert!(stderr(&a).starts_with("error: "), "{}", stderr(&a));

    // bob's approval reaches the quorum.
    let a = w
        .as_actor("bob")
        .args(["--output", "json", "approve", &id])
        .assert()
        .success();
    let r = stdout_json(&a);
    assert_eq!(r["approvals"], 2, "{r}");
    assert_eq!(r["quorum"], 2, "{r}");
    assert_eq!(r["break"]["state"], "granted", "{r}");

    // carol is too late: the break is already granted.
    w.as_actor("carol")
        .args(["approve", &id])
        .assert()
        .code(6)
        .stdout("");

    // The one reveal prints exactly the sealed secret (trailing newline from stdin removed).
    let a = w
        .as_actor("dave")
        .args(["break", "reveal", &id])
        .assert()
        .success()
        .stdout(format!("{}\n", w.secret));
    assert!(stderr(&a).starts_with("grant ends "), "{}", stderr(&a));
    let a = w
        .as_actor("dave")
        .args(["break", "reveal", &id])
        .assert()
        .code(6)
        .stdout("");
    assert!(stderr(&a).contains("already revealed"), "{}", stderr(&a));

    // alice is a custodian, not a requester: not allowed.
    w.as_actor("alice")
        .args(["break", "reveal", &id])
        .assert()
        .code(4)
        .stdout("");

    // reveal without an identity is a usage problem caught before the server.
    cli()
        .args(["break", "reveal", &id])
        .assert()
        .code(3)
        .stdout("");

    let b = show_break(&w.server, &id);
    assert_eq!(b["state"], "granted", "{b}");
    assert_eq!(b["requester"], "dave", "{b}");
    assert_eq!(b["procedure"], "root-db", "{b}");

    // The revealed secret taints the procedure.
    let a = cli()
        .args(["--output", "json", "procedure", "show", "root-db"])
        .assert()
        .success();
    assert_eq!(stdout_json(&a)["tainted"], true);

    // The admin closes it.
    let a = cli()
        .args(["--output", "json", "break", "close", &id])
        .assert()
        .success();
    assert_eq!(stdout_json(&a)["state"], "closed");
    assert_eq!(show_break(&w.server, &id)["state"], "closed");
    let a = cli().args(["break", "show", &id]).assert().success();
    let line = stdout(&a);
    assert!(
        line.starts_with(&format!(
            "{id} root-db [closed] by dave: r (T-1), approvals 2/2"
        )),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");
    // Closing again is refused by the lifecycle.
    cli().args(["break", "close", &id]).assert().code(6);

    // The audit chain on the server.
    let a = cli().args(["audit", "verify"]).assert().success();
    let out = stdout(&a);
    assert!(out.starts_with("audit chain intact: "), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");

    let a = cli()
        .args(["--output", "json", "audit", "list", "--limit", "1000"])
        .assert()
        .success();
    let kinds: Vec<String> = stdout_json(&a)["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["break"] == id.as_str())
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "break.requested",
            "share.accepted",
            "share.accepted",
            "break.granted",
            "grant.revealed",
            "break.closed"
        ]
    );
}

#[test]
fn listings_are_json() {
    let w = world("root-db", "15m");
    let id = open_break(&w, "1m");
    let cli = || w.server.cli();

    let a = cli()
        .args(["--output", "json", "procedure", "list"])
        .assert()
        .success();
    let doc = stdout_json(&a);
    assert_eq!(doc["procedures"][0]["id"], "root-db", "{doc}");

    let a = cli()
        .args(["--output", "json", "break", "list"])
        .assert()
        .success();
    let doc = stdout_json(&a);
    let breaks = doc["breaks"].as_array().expect("breaks");
    assert_eq!(breaks.len(), 1, "{doc}");
    assert_eq!(breaks[0]["id"], id.as_str());
    assert_eq!(breaks[0]["state"], "requested");

    let a = cli()
        .args([
            "--output",
            "json",
            "break",
            "list",
            "--procedure",
            "root-db",
        ])
        .assert()
        .success();
    assert_eq!(stdout_json(&a)["breaks"].as_array().map(Vec::len), Some(1));

    let a = cli()
        .args(["--output", "json", "actor", "list"])
        .assert()
        .success();
    let doc = stdout_json(&a);
    let mut names: Vec<&str> = doc["actors"]
        .as_array()
        .expect("actors")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["admin", "alice", "bob", "carol", "dave"], "{doc}");

    let a = cli()
        .args(["--output", "json", "audit", "list"])
        .assert()
        .success();
    let doc = stdout_json(&a);
    let entries = doc["entries"].as_array().expect("entries");
    assert!(!entries.is_empty(), "{doc}");
    assert_eq!(entries[0]["seq"], 1, "{doc}");

    // Text listings work too.
    let a = cli().args(["procedure", "list"]).assert().success();
    assert!(stdout(&a).contains("root-db"), "{}", stdout(&a));
    let a = cli().args(["break", "list"]).assert().success();
    assert!(stdout(&a).contains(&id), "{}", stdout(&a));
}

#[test]
fn audit_export_verifies_offline_and_detects_an_edit() {
    let w = world("root-db", "15m");
    let id = open_break(&w, "1m");
    w.as_actor("alice")
        .args(["approve", &id])
        .assert()
        .success();
    let export = w.keys.join("audit.jsonl");
    w.server
        .cli()
        .args(["audit", "export", "--out"])
        .arg(&export)
        .assert()
        .success()
        .stdout("");
    let text = std::fs::read_to_string(&export).expect("read export");
    let a = breakglass()
        .args(["audit", "verify", "--file"])
        .arg(&export)
        .assert()
        .success();
    let out = stdout(&a);
    let entries = text
        .lines()
        .filter(|l| !l.starts_with("{\"checkpoint\""))
        .count();
    let checkpoints = text.lines().count() - entries;
    assert!(
        out.starts_with(&format!(
            "audit chain intact: {entries} entries, {checkpoints} signed checkpoints, head #"
        )),
        "{out}"
    );

    // The export on stdout is the same document.
    let a = w.server.cli().args(["audit", "export"]).assert().success();
    assert_eq!(stdout(&a), text);

    // Change one actor name in one line.
    let needle = "\"actor\":\"alice\"";
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let at = lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle}:\n{text}"));
    lines[at] = lines[at].replacen(needle, "\"actor\":\"mallory\"", 1);
    let tampered = w.keys.join("tampered.jsonl");
    std::fs::write(&tampered, lines.join("\n") + "\n").expect("write");
    let a = breakglass()
        .args(["audit", "verify", "--file"])
        .arg(&tampered)
        .assert()
        .code(8)
        .stdout("");
    assert!(
        stderr(&a).starts_with("error: audit log broken: entry "),
        "{}",
        stderr(&a)
    );
}

#[test]
fn error_exit_codes() {
    let w = world("root-db", "15m");

    // Unknown procedure: not found.
    let a = w
        .as_actor("dave")
        .args(["break", "open", "nope", "--reason", "r", "--ticket", "T-1"])
        .assert()
        .code(5)
        .stdout("");
    assert!(stderr(&a).starts_with("error: "), "{}", stderr(&a));
    w.server
        .cli()
        .args(["procedure", "show", "nope"])
        .assert()
        .code(5);
    w.server
        .cli()
        .args(["break", "show", "brk_nope"])
        .assert()
        .code(5);

    // A wrong token: not signed in.
    w.server
        .cli()
        .args(["--token", "bgt_wrong", "procedure", "list"])
        .assert()
        .code(4)
        .stdout("");
    // No token at all (a data dir without admin.token).
    let empty = tempfile::tempdir().expect("tempdir");
    breakglass()
        .arg("--server")
        .arg(&w.server.url)
        .arg("--data-dir")
        .arg(empty.path())
        .args(["procedure", "list"])
        .assert()
        .code(4);

    // A requester may not apply procedures or enrol actors.
    w.as_actor("dave")
        .args(["procedure", "apply"])
        .arg(w.keys.join("root-db.yaml"))
        .assert()
        .code(4);
    w.as_actor("dave")
        .args(["actor", "add", "eve", "--role", "admin"])
        .assert()
        .code(4);

    // A bad duration is invalid input.
    w.as_actor("dave")
        .args([
            "break",
            "open",
            "root-db",
            "--reason",
            "r",
            "--ticket",
            "T-1",
            "--duration",
            "soon",
        ])
        .assert()
        .code(3);
    // Longer than the procedure's max_grant.
    w.as_actor("dave")
        .args([
            "break",
            "open",
            "root-db",
            "--reason",
            "r",
            "--ticket",
            "T-1",
            "--duration",
            "1h",
        ])
        .assert()
        .code(3);

    // An unenrolled key cannot sign in.
    let stranger = common::keygen(&w.keys, "stranger").0;
    w.server
        .cli()
        .arg("--identity")
        .arg(&stranger)
        .args(["break", "list"])
        .assert()
        .code(4);
}

#[test]
fn unreachable_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = breakglass()
        .args([
            "--server",
            "http://127.0.0.1:1",
            "--token",
            "bgt_x",
            "--data-dir",
        ])
        .arg(dir.path())
        .args(["procedure", "list"])
        .assert()
        .code(7)
        .stdout("");
    assert!(
        stderr(&a).starts_with("error: cannot reach the breakglass server at http://127.0.0.1:1"),
        "{}",
        stderr(&a)
    );
    breakglass()
        .args(["--server", "http://127.0.0.1:1", "--data-dir"])
        .arg(dir.path())
        .args(["audit", "verify"])
        .assert()
        .code(7);
}

#[test]
fn server_guard_kills_the_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let url = server.url.clone();
    assert!(dir.path().join("data").join("admin.token").exists());
    server.cli().args(["audit", "verify"]).assert().success();
    drop(server);
    breakglass()
        .args(["--server", &url, "--token", "bgt_x", "procedure", "list"])
        .assert()
        .code(7);
}

/// Opens a break as dave and has alice and bob approve it; returns its id.
fn granted_break(w: &common::World) -> String {
    let id = open_break(w, "1m");
    w.as_actor("alice")
        .args(["approve", &id])
        .assert()
        .success();
    w.as_actor("bob").args(["approve", &id]).assert().success();
    id
}

#[test]
fn reveal_to_a_new_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let w = world("root-db", "15m");
    let id = granted_break(&w);
    let out = w.keys.join("secret.txt");
    let a = w
        .as_actor("dave")
        .args(["break", "reveal", &id, "--out"])
        .arg(&out)
        .assert()
        .success()
        .stdout("");
    assert!(
        stderr(&a).starts_with(&format!(
            "secret written to {} (mode 0600); grant ends ",
            out.display()
        )),
        "{}",
        stderr(&a)
    );
    // Exactly the secret: no newline added in a file.
    assert_eq!(std::fs::read_to_string(&out).expect("read"), w.secret);
    let mode = std::fs::metadata(&out)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

/// Regression: revealing into an existing 0644 file must never leave the secret readable
/// (`write_private_file` once set 0600 only on files it created).
#[test]
fn reveal_into_an_existing_file_does_not_leave_it_readable() {
    use std::os::unix::fs::PermissionsExt;
    let w = world("root-db", "15m");
    let id = granted_break(&w);
    let out = w.keys.join("secret.txt");
    std::fs::write(&out, "").expect("write");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let a = w
        .as_actor("dave")
        .args(["break", "reveal", &id, "--out"])
        .arg(&out)
        .assert();
    let mode = std::fs::metadata(&out)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777;
    // Either refuse (and keep the grant) or make the file private; never a readable secret.
    if a.get_output().status.success() {
        assert_eq!(mode, 0o600, "the secret sits in a {mode:o} file");
    } else {
        assert_eq!(std::fs::read_to_string(&out).expect("read"), "");
    }
}

/// Regression: a `--out` path that cannot be written must not use up the single reveal (the
/// CLI once asked the server before opening the file).
#[test]
fn reveal_to_an_unwritable_path_keeps_the_grant() {
    let w = world("root-db", "15m");
    let id = granted_break(&w);
    w.as_actor("dave")
        .args(["break", "reveal", &id, "--out"])
        .arg(w.keys.join("no-such-dir/secret.txt"))
        .assert()
        .failure();
    // The grant is still there to reveal.
    w.as_actor("dave")
        .args(["break", "reveal", &id])
        .assert()
        .success()
        .stdout(format!("{}\n", w.secret));
}
