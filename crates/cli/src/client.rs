//! HTTP client of the breakglass API, with key-based sign-in (ssh-ed25519 signature or age
//! challenge decryption) and errors that carry the server's code, message and details.

use breakglass_custody::{Identity, KeyKind};
use serde_json::{Value, json};

/// A failure talking to the server, with what the exit code needs.
#[derive(Debug)]
pub(crate) struct ApiFailure {
    /// HTTP status, `None` when the server was not reached.
    pub(crate) status: Option<u16>,
    /// Machine-readable code.
    pub(crate) code: String,
    /// Human message.
    pub(crate) message: String,
    /// Extra details (e.g. procedure problems).
    pub(crate) details: Vec<Value>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        for d in &self.details {
            if let (Some(file), Some(line), Some(col), Some(field), Some(msg)) = (
                d["file"].as_str(),
                d["line"].as_u64(),
                d["column"].as_u64(),
                d["field"].as_str(),
                d["message"].as_str(),
            ) {
                write!(f, "\n  {file}:{line}:{col}: {field}: {msg}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ApiFailure {}

/// The API client.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8742`).
    pub(crate) fn new(base: &str, token: Option<String>) -> Client {
        // reqwest is built without a TLS provider of its own (to keep aws-lc out of the
        // build); install ring before the first client. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// Trusts the PEM certificate(s) in `path` for HTTPS, besides the system's roots.
    pub(crate) fn trust(&mut self, path: &std::path::Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate: {e}", path.display()))?;
        let mut builder = reqwest::Client::builder();
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
        self.http = builder
            .build()
            .map_err(|e| anyhow::anyhow!("HTTPS client with {}: {e}", path.display()))?;
        Ok(())
    }

    /// Uses `token` from now on.
    pub(crate) fn set_token(&mut self, token: String) {
        self.token = Some(token);
    }

    /// Whether a token is set.
    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// GET a JSON document.
    pub(crate) async fn get(&self, path: &str) -> Result<Value, ApiFailure> {
        self.send(self.http.get(self.url(path))).await
    }

    /// GET a text document.
    pub(crate) async fn get_text(&self, path: &str) -> Result<String, ApiFailure> {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(unreachable(&self.base))?;
        if resp.status().is_success() {
            return resp.text().await.map_err(unreachable(&self.base));
        }
        Err(failure(resp).await)
    }

    /// POST JSON, get JSON.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value, ApiFailure> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, mut req: reqwest::RequestBuilder) -> Result<Value, ApiFailure> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(unreachable(&self.base))?;
        if resp.status().is_success() {
            return resp.json().await.map_err(|e| ApiFailure {
                status: None,
                code: "bad_response".into(),
                message: format!("the server's answer is not JSON: {e}"),
                details: vec![],
            });
        }
        Err(failure(resp).await)
    }

    /// Signs in with a key: asks for a challenge (by actor name, or by public key when
    /// `actor` is `None`), answers it with the identity, and keeps the session token.
    pub(crate) async fn login(
        &mut self,
        actor: Option<&str>,
        identity: &Identity,
    ) -> Result<String, anyhow::Error> {
        let body = match actor {
            Some(a) => json!({"actor": a}),
            None => json!({"key": identity.public().canonical()}),
        };
        let c = self.post("/api/auth/challenge", &body).await?;
        let id = c["challenge_id"].as_str().unwrap_or_default().to_owned();
        let response = match identity.kind() {
            KeyKind::SshEd25519 => {
                let message = c["challenge"]["message"].as_str().unwrap_or_default();
                let namespace = c["challenge"]["namespace"].as_str().unwrap_or_default();
                breakglass_custody::sign(identity, namespace, message.as_bytes())?
            }
            // An identity file never holds a plugin key (age plugin identities are refused
            // when the file is read), so this is the age X25519 case.
            KeyKind::AgeX25519 | KeyKind::AgePlugin => {
                let file = c["challenge"]["age_file"].as_str().unwrap_or_default();
                let plain = breakglass_custody::decrypt_with(identity, file.as_bytes())?;
                String::from_utf8(plain.to_vec())
                    .map_err(|_| anyhow::anyhow!("challenge is not text"))?
            }
        };
        let session = self
            .post(
                "/api/auth/login",
                &json!({"challenge_id": id, "response": response}),
            )
            .await?;
        let token = session["token"].as_str().unwrap_or_default().to_owned();
        self.token = Some(token);
        Ok(session["actor"].as_str().unwrap_or_default().to_owned())
    }
}

fn unreachable(base: &str) -> impl Fn(reqwest::Error) -> ApiFailure + '_ {
    move |e| ApiFailure {
        status: None,
        code: "unreachable".into(),
        message: format!("cannot reach the breakglass server at {base}: {e}"),
        details: vec![],
    }
}

async fn failure(resp: reqwest::Response) -> ApiFailure {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    ApiFailure {
        status: Some(status),
        code: body["error"]["code"]
            .as_str()
            .unwrap_or("http_error")
            .to_owned(),
        message: body["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("HTTP {status}")),
        details: body["error"]["details"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    }
}
