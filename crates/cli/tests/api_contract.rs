//! API contract: schemathesis (from PyPI) generates requests for every operation of
//! `/api/openapi.json` against the real `breakglass serve` (signed in as the admin), with a
//! bounded number of examples, and checks that no answer is a server error and that every
//! status code, content type, header and body matches the document. Schema-valid requests that
//! the API refuses for a reason the schema cannot express (an empty procedure file, an unknown
//! challenge) are allowed: the check `positive_data_acceptance` is left out.

mod common;

use std::process::Command;

use common::Server;

const TEST: &str = "cli::api_contract::every_answer_matches_the_openapi_document";

/// Examples per operation (CI's bound; `BREAKGLASS_CONTRACT_EXAMPLES` overrides).
const EXAMPLES: &str = "30";

#[test]
fn every_answer_matches_the_openapi_document() {
    let found = Command::new("schemathesis").arg("--version").output();
    if !found.is_ok_and(|o| o.status.success()) {
        breakglass_testkit::skip(
            TEST,
            "schemathesis not installed (pip install schemathesis)",
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // No rate limit: the generated requests come from one address, quickly.
    let server = Server::start_with(
        &data,
        &[
            "--sign-in-rate",
            "0",
            "--approval-rate",
            "0",
            "--ack-rate",
            "0",
        ],
    );
    let token = std::fs::read_to_string(data.join("admin.token")).expect("admin token");
    let examples =
        std::env::var("BREAKGLASS_CONTRACT_EXAMPLES").unwrap_or_else(|_| EXAMPLES.to_owned());
    let out = Command::new("schemathesis")
        .args(["run", &format!("{}/api/openapi.json", server.url)])
        .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
        .args(["--max-examples", &examples])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
        ])
        .args(["--seed", "20261129"])
        .env("NO_COLOR", "1")
        .output()
        .expect("running schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains("generated"))
        .unwrap_or("(no summary)");
    println!("schemathesis: {}", summary.trim());
    assert!(
        out.status.success(),
        "schemathesis found answers that break the document:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("passed"), "{stdout}");
}
