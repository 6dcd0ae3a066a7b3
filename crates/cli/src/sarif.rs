//! `breakglass check --output sarif`: the readiness verdicts as a SARIF 2.1.0 log, for code
//! scanning in CI. One run; the tool's rules are the domain's readiness rules; one result per
//! finding, at its file, line and column when the verdicts came from files, and at its
//! procedure (a logical location) always.

use std::collections::HashMap;

use breakglass_domain::readiness::{RULES, Verdict};
use serde_json::{Value, json};

/// The schema the log declares: the OASIS SARIF 2.1.0 schema (errata 01), the one vendored
/// for the tests in `tests/vectors/`.
const SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// The SARIF log of `check`'s verdicts: the same documents `--output json` prints under
/// `procedures` (`procedure`, `verdict`, `findings` with `code`, `verdict`, `message`, and
/// `file` with each finding's `line` and `column` when they came from files).
pub(crate) fn log(verdicts: &[Value]) -> Value {
    // Each file once, in the order given; results refer to it by index (a map, as `check`
    // may be given thousands of files).
    let mut artifacts: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut results = Vec::new();
    for v in verdicts {
        let procedure = v["procedure"].as_str().unwrap_or_default();
        let file = v["file"].as_str().map(|f| {
            let i = *index.entry(f).or_insert_with(|| {
                artifacts.push(f);
                artifacts.len() - 1
            });
            (f, i)
        });
        for finding in v["findings"].as_array().into_iter().flatten() {
            results.push(result(procedure, file, finding));
        }
    }
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.code,
                "shortDescription": {"text": r.summary},
                "help": {"text": r.help},
                "defaultConfiguration": {"level": level(r.verdict.as_str())},
                "properties": {"verdict": r.verdict.as_str()},
            })
        })
        .collect();
    let verdicts: Vec<Value> = verdicts
        .iter()
        .map(|v| {
            let mut out = json!({"procedure": v["procedure"], "verdict": v["verdict"]});
            if !v["file"].is_null() {
                out["file"] = v["file"].clone();
            }
            out
        })
        .collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "breakglass",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "artifacts": artifacts.iter().map(|a| json!({"location": {"uri": uri(a)}})).collect::<Vec<_>>(),
            "columnKind": "unicodeCodePoints",
            "results": results,
            // Every procedure's verdict, the ready ones too, which have no result.
            "properties": {"verdicts": verdicts},
        }],
    })
}

/// One result: the finding's rule, level and message, at its file (name and artifact index)
/// and position when it has them, and at its procedure.
fn result(procedure: &str, file: Option<(&str, usize)>, finding: &Value) -> Value {
    let code = finding["code"].as_str().unwrap_or_default();
    let mut location = json!({
        "logicalLocations": [{"name": procedure, "kind": "resource"}],
    });
    if let Some((f, index)) = file {
        let mut physical = json!({"artifactLocation": {"uri": uri(f), "index": index}});
        let line = finding["line"].as_u64().unwrap_or(0);
        let column = finding["column"].as_u64().unwrap_or(0);
        if line > 0 {
            physical["region"] = json!({"startLine": line});
            if column > 0 {
                physical["region"]["startColumn"] = json!(column);
            }
        }
        location["physicalLocation"] = physical;
    }
    let mut out = json!({
        "ruleId": code,
        "level": level(finding["verdict"].as_str().unwrap_or_default()),
        "message": {"text": finding["message"].as_str().unwrap_or_default()},
        "locations": [location],
    });
    // A server newer than this CLI may report a rule it does not know: no index then.
    if let Some(index) = RULES.iter().position(|r| r.code == code) {
        out["ruleIndex"] = json!(index);
    }
    out
}

/// SARIF level of a verdict: broken is an error, anything else a warning.
fn level(verdict: &str) -> &'static str {
    if verdict == Verdict::Broken.as_str() {
        "error"
    } else {
        "warning"
    }
}

/// A file path as given on the command line, as a URI reference: relative paths stay relative
/// (to the directory `check` ran in), absolute ones become `file://` URIs; characters a URI
/// path cannot hold are percent-encoded.
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    if path.starts_with('/') {
        out.push_str("file://");
    } else if path.split('/').next().is_some_and(|s| s.contains(':')) {
        // `c:x.yaml` would read as a URI with the scheme `c`.
        out.push_str("./");
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(uri("procedures/root-db.yaml"), "procedures/root-db.yaml");
        assert_eq!(uri("/srv/p q/ü.yaml"), "file:///srv/p%20q/%C3%BC.yaml");
        assert_eq!(uri("c:x.yaml"), "./c:x.yaml");
        assert_eq!(uri("a%b#c?.yaml"), "a%25b%23c%3F.yaml");
    }

    #[test]
    fn findings_without_a_file_point_at_their_procedure() {
        let log = log(&[json!({
            "procedure": "root-db",
            "verdict": "broken",
            "findings": [
                {"verdict": "broken", "code": "seal.missing", "message": "not sealed"},
                {"verdict": "degraded", "code": "some.future_rule", "message": "new"},
            ],
        })]);
        let run = &log["runs"][0];
        assert_eq!(run["artifacts"], json!([]));
        let r = &run["results"][0];
        assert_eq!(r["ruleId"], "seal.missing");
        assert_eq!(r["level"], "error");
        assert_eq!(
            run["tool"]["driver"]["rules"][r["ruleIndex"].as_u64().expect("index") as usize]["id"],
            "seal.missing"
        );
        assert_eq!(r["locations"][0]["logicalLocations"][0]["name"], "root-db");
        assert!(r["locations"][0].get("physicalLocation").is_none());
        let unknown = &run["results"][1];
        assert_eq!(unknown["level"], "warning");
        assert!(unknown.get("ruleIndex").is_none());
    }
}
