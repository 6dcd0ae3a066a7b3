//! Transport safety over real sockets: HTTPS with a self-signed certificate (HSTS on every
//! response, an untrusting client refused, plain HTTP not served), rate limits on sign-in
//! (429 with `Retry-After`, per client address), and request size limits (413).

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

use std::time::Duration;

use breakglass_server::limits::RateLimits;
use breakglass_server::{ServerConfig, build, serve, serve_tls, tls};
use serde_json::json;

struct Running {
    base: String,
    admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

async fn start(
    config: impl FnOnce(&mut ServerConfig),
    with_tls: bool,
) -> (Running, Option<std::path::PathBuf>) {
    breakglass_testkit::install_tls();
    let dir = tempfile::tempdir().unwrap();
    let mut c = ServerConfig::new(dir.path());
    config(&mut c);
    let built = build(c).await.unwrap();
    let admin = breakglass_engine::expose_token(built.bootstrap_token.as_ref().unwrap()).to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = rx.await;
    };
    let (base, cert, task) = if with_tls {
        let (cert, key) = tls::self_signed(dir.path(), &[]).unwrap();
        let config = tls::load(&cert, &key).unwrap();
        (
            format!("https://localhost:{}", addr.port()),
            Some(cert),
            tokio::spawn(serve_tls(listener, config, built.state, shutdown)),
        )
    } else {
        (
            format!("http://{addr}"),
            None,
            tokio::spawn(serve(listener, built.state, shutdown)),
        )
    };
    (
        Running {
            base,
            admin,
            stop: Some(tx),
            task,
            _dir: dir,
        },
        cert,
    )
}

#[tokio::test]
async fn https_sends_hsts_and_refuses_untrusting_clients() {
    let (server, cert) = start(|_| {}, true).await;
    let pem = std::fs::read(cert.unwrap()).unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let r = trusting
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let r = trusting
        .get(format!("{}/signin", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");

    // A client that does not trust the certificate is refused at the handshake.
    let err = reqwest::Client::new()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = server.base.replacen("https://", "http://", 1);
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        reqwest::Client::new()
            .get(format!("{plain}/healthz"))
            .send(),
    )
    .await
    .unwrap();
    assert!(r.is_err() || r.unwrap().status() != 200);
    server.stop().await;
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_address_and_bodies_are_bounded() {
    let (server, _) = start(
        |c| {
            c.rate_limits = RateLimits {
                sign_in_per_minute: 5,
                ..RateLimits::default()
            }
        },
        false,
    )
    .await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let r = client
            .post(format!("{}/api/auth/challenge", server.base))
            .json(&json!({"actor": "nobody"}))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
            statuses.push(429);
        } else {
            statuses.push(r.status().as_u16());
        }
    }
    // Five answered (an unknown actor is refused, but answered), then refused.
    assert!(statuses[..5].iter().all(|s| *s != 429), "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    assert!(
        retry_after.is_some_and(|s| (1..=60).contains(&s)),
        "{retry_after:?}"
    );
    // Other endpoints are not limited.
    let r = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A body over 1 MiB is refused before it is parsed.
    let big = "x".repeat(2 * 1024 * 1024);
    let r = client
        .post(format!("{}/api/breaks", server.base))
        .header("content-type", "application/json")
        .bearer_auth(&server.admin)
        .body(format!("{{\"procedure\": \"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Procedure files may be larger (a whole repository): 2 MiB of them are read.
    let r = client
        .post(format!("{}/api/procedures/validate", server.base))
        .bearer_auth(&server.admin)
        .json(&json!({"files": [{"name": "big.yaml", "content": format!("# {big}\nid: x\n")}]}))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 413, "procedure files have a larger limit");
    server.stop().await;
}
