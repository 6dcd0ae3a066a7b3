//! `breakglass check --output sarif`: the real binary's log, on procedure files and on a
//! server's live verdicts, is valid against the official SARIF 2.1.0 schema (vendored in
//! `tests/vectors/`), points each finding at its rule, file, line and procedure, and keeps the
//! documented exit codes.

mod common;

use std::path::Path;

use common::{breakglass, keygen, stdout, stdout_json};
use serde_json::{Value, json};

/// The OASIS SARIF 2.1.0 schema (see `tests/vectors/README.md`).
fn validator() -> jsonschema::Validator {
    let text = include_str!("vectors/sarif-schema-2.1.0.json");
    let schema: Value = serde_json::from_str(text).expect("the vendored schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the vendored schema compiles")
}

/// Asserts `log` is valid SARIF 2.1.0, listing every schema error otherwise.
fn assert_valid(v: &jsonschema::Validator, log: &Value) {
    let errors: Vec<String> = v
        .iter_errors(log)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not valid SARIF 2.1.0: {errors:#?}\n{log:#}"
    );
}

/// `(procedure, ruleId)` → (uri, startLine, startColumn, level) of each result.
fn results(log: &Value) -> Vec<(String, String, String, u64, u64, String)> {
    log["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let loc = &r["locations"][0];
            let physical = &loc["physicalLocation"];
            (
                loc["logicalLocations"][0]["name"]
                    .as_str()
                    .expect("procedure")
                    .to_owned(),
                r["ruleId"].as_str().expect("ruleId").to_owned(),
                physical["artifactLocation"]["uri"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                physical["region"]["startLine"].as_u64().unwrap_or(0),
                physical["region"]["startColumn"].as_u64().unwrap_or(0),
                r["level"].as_str().expect("level").to_owned(),
            )
        })
        .collect()
}

fn custodians(keys: &[String], n: usize) -> String {
    keys.iter()
        .take(n)
        .enumerate()
        .map(|(i, k)| format!("  - name: c{i}\n    key: {k}\n"))
        .collect()
}

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).expect("write");
}

#[test]
fn sarif_from_files_is_valid_and_points_at_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| keygen(dir.path(), n).1)
        .collect();
    write(
        dir.path(),
        "clean.yaml",
        &format!(
            "id: clean\ntarget:\n  kind: secret\ncustodians:\n{}quorum: 2\nmax_grant: 15m\nalert_channels: [ops]\ndrill: {{every: 30d}}\nrotation: {{max_credential_age: 90d}}\n",
            custodians(&keys, 3)
        ),
    );
    // Two procedures in one file: `degraded` on lines 1-12, `outage` from line 14 (the layout
    // the line numbers below rely on).
    let two = format!(
        "id: degraded\ntarget:\n  kind: secret\ncustodians:\n{}quorum: 2\nmax_grant: 15m\n---\nid: outage\ntarget:\n  kind: secret\ncustodians:\n{}quorum: 2\nmax_grant: 15m\ndrill: {{every: 180d}}\ndependencies: [okta]\nprotects_against: [okta]\n",
        custodians(&keys, 3),
        custodians(&keys, 2)
    );
    assert_eq!(two.lines().nth(13), Some("id: outage"));
    write(dir.path(), "two procedures.yaml", &two);
    write(
        dir.path(),
        "abs.yaml",
        &format!(
            "id: abs\ntarget:\n  kind: secret\ncustodians:\n{}quorum: 2\nmax_grant: 15m\nalert_channels: [ops]\ndependencies: [vpn]\nprotects_against: [VPN]\n",
            custodians(&keys, 3)
        ),
    );
    let absolute = dir.path().join("abs.yaml");

    let a = breakglass()
        .current_dir(dir.path())
        .args([
            "--output",
            "sarif",
            "check",
            "clean.yaml",
            "two procedures.yaml",
        ])
        .arg(&absolute)
        .assert()
        .code(10);
    let log = stdout_json(&a);
    let v = validator();
    assert_valid(&v, &log);

    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "breakglass");
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    let rule = |id: &str| {
        driver["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("rule {id} missing"))
            .clone()
    };
    assert_eq!(
        rule("dependency.on_outage")["defaultConfiguration"]["level"],
        "error"
    );
    assert_eq!(
        rule("quorum.no_spare")["defaultConfiguration"]["level"],
        "warning"
    );
    assert!(rule("seal.missing")["help"]["text"].is_string());
    for r in run["results"].as_array().expect("results") {
        let index = r["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(driver["rules"][index]["id"], r["ruleId"]);
    }

    let found = results(&log);
    let at = |procedure: &str, rule: &str| {
        found
            .iter()
            .find(|r| r.0 == procedure && r.1 == rule)
            .map(|r| (r.2.as_str(), r.3, r.4, r.5.as_str()))
            .unwrap_or_else(|| panic!("no {rule} for {procedure} in {found:#?}"))
    };
    let file = "two%20procedures.yaml";
    // The field the rule is about, where the file has it…
    assert_eq!(at("outage", "quorum.no_spare"), (file, 22, 9, "warning"));
    assert_eq!(at("outage", "drill.interval"), (file, 24, 16, "warning"));
    assert_eq!(
        at("outage", "custodians.too_few"),
        (file, 18, 11, "warning")
    );
    // …otherwise the procedure's id.
    assert_eq!(at("outage", "dependency.on_outage"), (file, 14, 5, "error"));
    assert_eq!(at("degraded", "channels.none"), (file, 1, 5, "warning"));
    assert_eq!(at("degraded", "drill.unscheduled"), (file, 1, 5, "warning"));
    let (uri, line, _, level) = at("abs", "dependency.on_outage");
    assert_eq!(
        uri,
        format!("file://{}", absolute.display()).replace(' ', "%20")
    );
    assert_eq!((line, level), (1, "error"));
    assert!(
        found.iter().all(|r| r.0 != "clean"),
        "a ready procedure has no result: {found:#?}"
    );
    let artifacts: Vec<&str> = run["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| a["location"]["uri"].as_str().expect("uri"))
        .collect();
    assert_eq!(artifacts[..2], ["clean.yaml", file]);
    assert_eq!(run["properties"]["verdicts"][0]["verdict"], "ready");

    // The same findings, with the same messages, as `--output json`.
    let a = breakglass()
        .current_dir(dir.path())
        .args([
            "--output",
            "json",
            "check",
            "clean.yaml",
            "two procedures.yaml",
        ])
        .arg(&absolute)
        .assert()
        .code(10);
    let json = stdout_json(&a);
    let mut from_json: Vec<(String, String)> = Vec::new();
    for p in json["procedures"].as_array().expect("procedures") {
        for f in p["findings"].as_array().expect("findings") {
            from_json.push((
                f["code"].as_str().expect("code").to_owned(),
                f["message"].as_str().expect("message").to_owned(),
            ));
        }
    }
    let from_sarif: Vec<(String, String)> = run["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["ruleId"].as_str().expect("ruleId").to_owned(),
                r["message"]["text"].as_str().expect("text").to_owned(),
            )
        })
        .collect();
    assert_eq!(from_sarif, from_json);

    // Exit codes stay: 0 for ready and degraded, 10 for degraded with --strict, 3 for an
    // invalid file, 2 for SARIF asked of another command.
    let a = breakglass()
        .current_dir(dir.path())
        .args(["--output", "sarif", "check", "clean.yaml"])
        .assert()
        .success();
    let clean = stdout_json(&a);
    assert_valid(&v, &clean);
    assert_eq!(clean["runs"][0]["results"], json!([]));
    write(
        dir.path(),
        "degraded.yaml",
        two.split("---\n").next().expect("first document"),
    );
    breakglass()
        .current_dir(dir.path())
        .args(["--output", "sarif", "check", "degraded.yaml"])
        .assert()
        .success();
    breakglass()
        .current_dir(dir.path())
        .args(["--output", "sarif", "check", "--strict", "degraded.yaml"])
        .assert()
        .code(10);
    write(dir.path(), "invalid.yaml", "id: x\nquorum: 1\n");
    let a = breakglass()
        .current_dir(dir.path())
        .args(["--output", "sarif", "check", "invalid.yaml"])
        .assert()
        .code(3);
    assert_eq!(stdout(&a), "");
    breakglass()
        .args(["--output", "sarif", "whatif", "--down", "okta"])
        .assert()
        .code(2);

    // The validator is not a rubber stamp: each of these breaks the log.
    type Spoil = fn(&mut Value);
    let broken: [(&str, Spoil); 5] = [
        ("an unknown level", |l| {
            l["runs"][0]["results"][0]["level"] = json!("fatal")
        }),
        ("a line 0", |l| {
            l["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
                json!(0)
        }),
        ("a driver without a name", |l| {
            l["runs"][0]["tool"]["driver"]
                .as_object_mut()
                .expect("driver")
                .remove("name");
        }),
        ("a message without text", |l| {
            l["runs"][0]["results"][0]["message"] = json!({})
        }),
        ("another version", |l| l["version"] = json!("2.0.0")),
    ];
    for (what, spoil) in broken {
        let mut bad = log.clone();
        spoil(&mut bad);
        assert!(!v.is_valid(&bad), "{what} passed the schema");
    }
}

#[test]
fn sarif_from_a_server_names_the_procedure() {
    let w = common::world("root-db", "15m");
    // A second procedure, applied but never sealed: broken (seal.missing).
    let text = std::fs::read_to_string(w.keys.join("root-db.yaml"))
        .expect("the world's procedure file")
        .replace("id: root-db", "id: unsealed");
    let file = w.keys.join("unsealed.yaml");
    std::fs::write(&file, text).expect("write");
    w.server
        .cli()
        .args(["procedure", "apply"])
        .arg(&file)
        .assert()
        .success();

    let a = w
        .server
        .cli()
        .args(["--output", "sarif", "check"])
        .assert()
        .code(10);
    let log = stdout_json(&a);
    assert_valid(&validator(), &log);
    let run = &log["runs"][0];
    assert_eq!(run["artifacts"], json!([]));
    let found = results(&log);
    assert!(
        found.contains(&(
            "unsealed".into(),
            "seal.missing".into(),
            String::new(),
            0,
            0,
            "error".into()
        )),
        "{found:#?}"
    );
    assert!(found.iter().any(|r| r.0 == "root-db"), "{found:#?}");
    for r in run["results"].as_array().expect("results") {
        assert!(
            r["locations"][0].get("physicalLocation").is_none(),
            "live findings have no file: {r:#}"
        );
    }
}
