//! `breakglass procedure validate` and `procedure schema`: no server needed. Exact output and
//! exit codes (0 valid, 3 invalid), with `file:line:column: field: message` lines on stderr.

mod common;

use std::path::Path;

use breakglass_custody::keygen;
use common::{breakglass, procedure_yaml, stderr, stdout, stdout_json};

/// Three fresh age public keys.
fn keys() -> [String; 3] {
    [
        keygen().1.canonical(),
        keygen().1.canonical(),
        keygen().1.canonical(),
    ]
}

/// A three-custodian procedure `root-db`.
fn file(keys: &[String; 3], quorum: u8, max_grant: &str) -> String {
    procedure_yaml(
        "root-db",
        &[("alice", &keys[0]), ("bob", &keys[1]), ("carol", &keys[2])],
        quorum,
        max_grant,
    )
}

/// Runs `procedure validate NAME` (plus `extra` arguments) in `dir`, where NAME holds `text`.
fn validate(dir: &Path, name: &str, text: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    std::fs::write(dir.join(name), text).expect("writing the procedure file");
    breakglass()
        .current_dir(dir)
        .args(["procedure", "validate"])
        .args(extra)
        .arg(name)
        .assert()
}

/// Asserts exit 3, nothing on stdout, and exactly `line` plus the summary on stderr.
fn assert_one_problem(a: assert_cmd::assert::Assert, line: &str) {
    a.code(3)
        .stdout("")
        .stderr(format!("{line}\nerror: 1 problem(s) found\n"));
}

#[test]
fn valid_file_prints_ok_with_its_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    validate(dir.path(), "p.yaml", &file(&keys(), 2, "15m"), &[])
        .success()
        .stdout("ok: p.yaml: root-db\n")
        .stderr("");
}

#[test]
fn valid_file_by_absolute_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("root.yaml");
    std::fs::write(&path, file(&keys(), 3, "1h")).expect("write");
    breakglass()
        .args(["procedure", "validate"])
        .arg(&path)
        .assert()
        .success()
        .stdout(format!("ok: {}: root-db\n", path.display()));
}

#[test]
fn two_documents_in_one_file_list_both_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys();
    let text = format!(
        "{}---\n{}",
        file(&k, 2, "15m"),
        file(&k, 2, "15m").replace("root-db", "other")
    );
    validate(dir.path(), "p.yaml", &text, &[])
        .success()
        .stdout("ok: p.yaml: root-db, other\n");
}

#[test]
fn quorum_larger_than_custodians() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_one_problem(
        validate(dir.path(), "p.yaml", &file(&keys(), 4, "15m"), &[]),
        "p.yaml:12:9: quorum: 4 is larger than the number of custodians (3)",
    );
}

#[test]
fn quorum_of_one_breaks_the_two_person_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_one_problem(
        validate(dir.path(), "p.yaml", &file(&keys(), 1, "15m"), &[]),
        "p.yaml:12:9: quorum: must be at least 2 (two-person rule), got 1",
    );
}

#[test]
fn same_key_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [a, b, _] = keys();
    let k = [a.clone(), b, a];
    assert_one_problem(
        validate(dir.path(), "p.yaml", &file(&k, 2, "15m"), &[]),
        "p.yaml:11:10: custodians[2].key: the same key is already used by custodian `alice`",
    );
}

#[test]
fn malformed_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [a, b, _] = keys();
    let k = [a, b, "age1notakey".to_owned()];
    assert_one_problem(
        validate(dir.path(), "p.yaml", &file(&k, 2, "15m"), &[]),
        "p.yaml:11:10: custodians[2].key: malformed key: age recipient: invalid Bech32 encoding",
    );
}

#[test]
fn max_grant_over_the_ceiling() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_one_problem(
        validate(
            dir.path(),
            "p.yaml",
            &file(&keys(), 2, "2h"),
            &["--grant-ceiling", "1h"],
        ),
        "p.yaml:13:12: max_grant: 2h is longer than the configured ceiling of 1h",
    );
    // The same file is fine under the default ceiling (4h).
    validate(dir.path(), "p.yaml", &file(&keys(), 2, "2h"), &[])
        .success()
        .stdout("ok: p.yaml: root-db\n");
}

#[test]
fn unknown_field_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = file(&keys(), 2, "15m") + "colour: red\n";
    assert_one_problem(
        validate(dir.path(), "p.yaml", &text, &[]),
        "p.yaml:14:1: colour: unknown field `colour`, expected one of id, description, target, custodians, \
         quorum, max_grant, custody, alert_channels, ack_within, escalation, rotation, drill, dependencies, protects_against, second_factor",
    );
}

#[test]
fn every_problem_of_every_file_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("good.yaml"), file(&keys(), 2, "15m")).expect("write");
    std::fs::write(dir.path().join("bad.yaml"), file(&keys(), 1, "5h")).expect("write");
    breakglass()
        .current_dir(dir.path())
        .args(["procedure", "validate", "good.yaml", "bad.yaml"])
        .assert()
        .code(3)
        .stdout("ok: good.yaml: root-db\n")
        .stderr(
            "bad.yaml:12:9: quorum: must be at least 2 (two-person rule), got 1\n\
             bad.yaml:13:12: max_grant: 5h is longer than the configured ceiling of 4h\n\
             error: 2 problem(s) found\n",
        );
}

#[test]
fn json_output_on_a_bad_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = validate(
        dir.path(),
        "p.yaml",
        &file(&keys(), 4, "15m"),
        &["--output", "json"],
    )
    .code(3);
    let doc = stdout_json(&a);
    assert_eq!(
        doc,
        serde_json::json!({
            "valid": false,
            "files": [],
            "errors": [{
                "file": "p.yaml",
                "line": 12,
                "column": 9,
                "field": "quorum",
                "message": "4 is larger than the number of custodians (3)",
            }],
        })
    );
    assert_eq!(stderr(&a), "error: 1 problem(s) found\n");
}

#[test]
fn json_output_on_a_good_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = validate(
        dir.path(),
        "p.yaml",
        &file(&keys(), 2, "15m"),
        &["--output", "json"],
    )
    .success();
    assert_eq!(
        stdout_json(&a),
        serde_json::json!({"valid": true, "files": [{"file": "p.yaml", "procedures": ["root-db"]}], "errors": []})
    );
}

#[test]
fn missing_file_is_a_failure_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = breakglass()
        .current_dir(dir.path())
        .args(["procedure", "validate", "nope.yaml"])
        .assert()
        .code(1)
        .stdout("");
    assert!(
        stderr(&a).starts_with("error: reading nope.yaml: "),
        "{}",
        stderr(&a)
    );
}

#[test]
fn validate_needs_a_file() {
    breakglass()
        .args(["procedure", "validate"])
        .assert()
        .code(2)
        .stdout("");
}

#[test]
fn schema_is_json_schema_naming_the_fields() {
    let a = breakglass()
        .args(["procedure", "schema"])
        .assert()
        .success()
        .stderr("");
    let schema = stdout_json(&a);
    let props = schema["properties"].as_object().expect("properties");
    for field in ["id", "target", "custodians", "quorum", "max_grant"] {
        assert!(props.contains_key(field), "{field} missing from {schema}");
    }
    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    // `custodians`, `quorum` and `max_grant` are required of sealed targets and refused on
    // `kind: external` ones (which need `custody`): validation says which, by field and line.
    assert_eq!(required, ["id", "target"]);
    assert!(
        props.contains_key("custody"),
        "custody missing from {schema}"
    );
    assert!(stdout(&a).contains("\"$schema\""), "no $schema keyword");
}
