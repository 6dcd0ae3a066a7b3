//! `audit verify --against SINK` end to end: the server ships its log to a file sink; verify
//! against it passes; a sink copy that differs from the local log is reported with the kind of
//! divergence and exit code 8. Also `audit pubkey`, `audit sinks`, `audit checkpoint`.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use std::time::{Duration, Instant};

use common::{Server, stderr, stdout, stdout_json};

#[test]
fn verify_against_a_file_sink() {
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("sink.jsonl");
    let spec = format!("file=file://{}", sink.display());
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--sink", &spec, "--checkpoint-every", "3"],
    );
    for i in 0..6 {
        server
            .cli()
            .args([
                "actor",
                "add",
                &format!("bot{i}"),
                "--role",
                "auditor",
                "--api-token",
            ])
            .assert()
            .success();
    }
    let a = server
        .cli()
        .args(["audit", "checkpoint"])
        .assert()
        .success();
    assert!(
        stdout(&a).starts_with("signed checkpoint at #") || stdout(&a).contains("already covers"),
        "{}",
        stdout(&a)
    );

    let start = Instant::now();
    loop {
        let a = server
            .cli()
            .args(["audit", "sinks", "--output", "json"])
            .assert()
            .success();
        let v = stdout_json(&a);
        assert_eq!(v["sinks"][0]["name"], "file");
        if v["sinks"][0]["pending"] == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "sink never caught up: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let a = server
        .cli()
        .args(["audit", "verify", "--against", "file"])
        .assert()
        .success();
    let out = stdout(&a);
    assert!(
        out.starts_with("audit chain intact: ") && out.contains("sink file holds the same history"),
        "{out}"
    );

    let a = server.cli().args(["audit", "pubkey"]).assert().success();
    let pubkey = stdout(&a).trim().to_owned();
    assert!(pubkey.starts_with("ed25519:"), "{pubkey}");

    // The server's verify with the pinned key passes; with a stranger's key it fails.
    server
        .cli()
        .args(["audit", "verify", "--pubkey", &pubkey])
        .assert()
        .success();
    let stranger = "ed25519:iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=";
    let a = server
        .cli()
        .args(["audit", "verify", "--pubkey", stranger])
        .assert()
        .code(8);
    assert!(
        stderr(&a).contains("not by the trusted key"),
        "{}",
        stderr(&a)
    );

    // The export verifies offline with the pinned key.
    let export = dir.path().join("export.jsonl");
    server
        .cli()
        .args(["audit", "export", "--out"])
        .arg(&export)
        .assert()
        .success();
    breakglass_verify(&export, &pubkey).success();

    // Rewrite one entry in the sink's copy: the histories now disagree → exit 8, named.
    let text = std::fs::read_to_string(&sink).unwrap();
    let tampered = text.replacen("\"actor\":\"admin\"", "\"actor\":\"mallory\"", 1);
    assert_ne!(text, tampered);
    std::fs::write(&sink, tampered).unwrap();
    let a = server
        .cli()
        .args(["audit", "verify", "--against", "file"])
        .assert()
        .code(8);
    let err = stderr(&a);
    assert!(
        err.contains("audit verification failed") && err.contains("forked"),
        "{err}"
    );

    // Cut the sink's tail: the sink is behind the local log.
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("{\"checkpoint\""))
        .collect();
    std::fs::write(&sink, lines[..lines.len() - 2].join("\n") + "\n").unwrap();
    let a = server
        .cli()
        .args(["audit", "verify", "--against", "file"])
        .assert()
        .code(8);
    assert!(stderr(&a).contains("sink_behind"), "{}", stderr(&a));

    // An unknown sink is named.
    let a = server
        .cli()
        .args(["audit", "verify", "--against", "nope"])
        .assert()
        .code(5);
    assert!(
        stderr(&a).contains("sink `nope` not found"),
        "{}",
        stderr(&a)
    );
}

fn breakglass_verify(file: &std::path::Path, pubkey: &str) -> assert_cmd::assert::Assert {
    common::breakglass()
        .args(["audit", "verify", "--file"])
        .arg(file)
        .args(["--pubkey", pubkey])
        .assert()
}
