//! `serve --tls-self-signed` over a real port: the CLI trusts the certificate in the data dir
//! on its own, or the one given with `--ca-cert`, and refuses the server without it; plain
//! HTTP to the TLS port gets no answer.

mod common;

use common::{Server, breakglass, stderr, stdout_json};

#[test]
fn https_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &["--tls-self-signed", "--tls-name", "bg.test"]);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let cert = data.join("tls").join("cert.pem");
    assert!(cert.exists());

    // With the server's data dir, the CLI trusts its certificate.
    let a = server
        .cli()
        .args(["--output", "json", "procedure", "list"])
        .assert()
        .success();
    assert_eq!(stdout_json(&a)["procedures"], serde_json::json!([]));

    // From elsewhere, only with --ca-cert.
    let token = std::fs::read_to_string(data.join("admin.token")).expect("token");
    let elsewhere = dir.path().join("elsewhere");
    let a = breakglass()
        .args(["--server", &server.url, "--data-dir"])
        .arg(&elsewhere)
        .args(["--token", token.trim(), "procedure", "list"])
        .assert()
        .failure();
    let err = stderr(&a).to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("tls") || err.contains("connect"),
        "{err}"
    );
    breakglass()
        .args(["--server", &server.url, "--data-dir"])
        .arg(&elsewhere)
        .arg("--ca-cert")
        .arg(&cert)
        .args(["--token", token.trim(), "procedure", "list"])
        .assert()
        .success();

    // Plain HTTP to the TLS port is not served.
    let http = server.url.replacen("https://", "http://", 1);
    breakglass()
        .args(["--server", &http, "--data-dir"])
        .arg(&elsewhere)
        .args(["--token", token.trim(), "procedure", "list"])
        .assert()
        .failure();
}
