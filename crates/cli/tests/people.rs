//! `breakglass people` against a real `breakglass serve`: procedures applied and sealed with
//! the CLI, a custodian attesting with their own key, another's key declared lost; the
//! listing names each person with their contact, marks the single point of failure, and
//! `people show NAME` details one (text and `--output json`).

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use common::{Server, keygen, stdout, stdout_json};

#[test]
fn people_inventory_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (alice_key, alice) = keygen(&keys, "alice");
    let (_, bob) = keygen(&keys, "bob");
    let (_, carol) = keygen(&keys, "carol");
    let custodian = |name: &str, contact: &str, key: &str| {
        format!("  - name: {name}\n    contact: \"{contact}\"\n    key: {key}\n")
    };
    let file = |id: &str, quorum: u8, custodians: String| {
        format!(
            "id: {id}\ndescription: test\ntarget:\n  kind: secret\ncustodians:\n{custodians}quorum: {quorum}\nmax_grant: 15m\n"
        )
    };
    let db = dir.path().join("db.yaml");
    std::fs::write(
        &db,
        file(
            "db",
            2,
            custodian("alice", "alice@example.com", &alice)
                + &custodian("bob", "bob@example.com", &bob),
        ),
    )
    .unwrap();
    let vault = dir.path().join("vault.yaml");
    std::fs::write(
        &vault,
        file(
            "vault",
            2,
            custodian("alice", "alice@example.com", &alice)
                + &custodian("bob", "@bob on Slack", &bob)
                + &custodian("carol", "+1 555 0100", &carol),
        ),
    )
    .unwrap();
    let server = Server::start(&dir.path().join("data"));
    server.apply_sealed(&db, "db", "db-password");
    server.apply_sealed(&vault, "vault", "vault-token");

    // Alice proves she holds her key; carol's is declared lost.
    server
        .cli()
        .arg("--identity")
        .arg(&alice_key)
        .args(["custodian", "attest", "alice"])
        .assert()
        .success();
    server
        .cli()
        .args(["custodian", "lost", "carol", "--reason", "laptop stolen"])
        .assert()
        .success();

    // The listing: one row per person, contacts, the single point of failure, warnings.
    let a = server.cli().arg("people").assert().success();
    let out = stdout(&a);
    let row = |name: &str| {
        out.lines()
            .find(|l| l.trim_start_matches(['│', ' ']).starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{out}"))
            .to_owned()
    };
    assert!(row("alice").contains("alice@example.com"), "{out}");
    // With carol's key lost, neither db (2-of-2) nor vault (2-of-3) reaches its quorum
    // without alice, nor without bob.
    assert!(
        row("alice").contains("db, vault (SINGLE POINT OF FAILURE)"),
        "{out}"
    );
    assert!(
        row("bob").contains("bob@example.com / @bob on Slack"),
        "{out}"
    );
    assert!(row("carol").contains("lost"), "{out}");
    assert!(row("alice").contains("attested"), "{out}");
    assert!(
        out.contains("! bob: contact differs between procedures"),
        "{out}"
    );

    // JSON: the whole document.
    let a = server
        .cli()
        .args(["people", "--output", "json"])
        .assert()
        .success();
    let v = stdout_json(&a);
    let people = v["people"].as_array().unwrap();
    let names: Vec<&str> = people.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    let carol_json = &people[2];
    assert_eq!(carol_json["single_point_of_failure"], false);
    assert_eq!(carol_json["keys"][0]["lost_reason"], "laptop stolen");
    let holding = &people[0]["holdings"][0];
    assert_eq!(holding["procedure"], "db");
    assert_eq!(holding["quorum"], 2);
    assert_eq!(holding["custodians"], 2);
    assert_eq!(holding["reachable_without"], false);
    assert!(holding["seal_id"].is_string(), "{holding}");
    assert!(people[0]["keys"][0]["attested_at"].is_string());
    assert_eq!(people[0]["keys"][0]["attestation_overdue"], false);

    // One person.
    let a = server
        .cli()
        .args(["people", "show", "bob"])
        .assert()
        .success();
    let out = stdout(&a);
    assert!(
        out.starts_with("bob <bob@example.com / @bob on Slack>"),
        "{out}"
    );
    assert!(
        out.contains("SINGLE POINT OF FAILURE for db, vault"),
        "{out}"
    );
    assert!(out.contains("@bob on Slack (in vault)"), "{out}");
    assert!(out.contains("QUORUM LOST"), "{out}");
    assert!(out.contains("never (OVERDUE)"), "{out}");
    assert!(out.contains("last drill: none on record"), "{out}");
    let a = server
        .cli()
        .args(["people", "show", "carol", "--output", "json"])
        .assert()
        .success();
    assert_eq!(stdout_json(&a)["name"], "carol");

    // An unknown person: a clear error naming them.
    let a = server
        .cli()
        .args(["people", "show", "mallory"])
        .assert()
        .failure();
    let err = common::stderr(&a);
    assert!(err.contains("mallory"), "{err}");
}
