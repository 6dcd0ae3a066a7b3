//! `breakglass demo`: a real break end to end on the embedded default. It creates a data dir,
//! three custodians (quorum 2) and a requester with their own age keys, seals a demo secret,
//! starts the real server, and drives a whole break through the HTTP API: open, two
//! approvals (carol is "asleep"), reveal, expiry by the server's own worker, taint, re-seal.
//! It prints a timeline and the time-to-access, verifies the audit chain, and keeps the server
//! running for the user to explore (`--once` exits instead).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use breakglass_custody::{ExposeSecret, Identity};
use clap::Args;
use serde_json::{Value, json};

use crate::Cli;
use crate::client::Client;
use crate::commands::{approve_with, read_identity, shutdown_signal};
use crate::output::field;

/// `demo` arguments.
#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Run once and exit (for scripts and CI) instead of leaving the server running.
    #[arg(long)]
    pub(crate) once: bool,
    /// Address for the demo server (`--once` defaults to a free port).
    #[arg(long)]
    pub(crate) listen: Option<SocketAddr>,
    /// Directory for the demo's data and keys (recreated on every run).
    #[arg(long, default_value = ".breakglass-demo")]
    pub(crate) dir: PathBuf,
    /// Grant length of the demo break.
    #[arg(long, default_value = "3s")]
    pub(crate) grant: String,
}

const MARKER: &str = "BREAKGLASS-DEMO-DIR";

struct Timeline {
    start: Instant,
    steps: Vec<(Duration, String)>,
}

impl Timeline {
    fn step(&mut self, what: impl Into<String>) {
        let at = self.start.elapsed();
        let what = what.into();
        println!("  {:>9}  {what}", fmt_offset(at));
        self.steps.push((at, what));
    }
}

fn fmt_offset(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("+{} ms", d.as_millis())
    } else {
        format!("+{:.2} s", d.as_secs_f64())
    }
}

/// Runs the demo.
pub(crate) async fn run(_cli: &Cli, a: &DemoArgs) -> Result<()> {
    let dir = fresh_dir(&a.dir)?;
    println!("breakglass demo — data dir {}", dir.display());

    // People and keys: three custodians (quorum 2) and a requester, each with an age identity.
    let mut keys = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        let (identity, public) = breakglass_custody::keygen();
        let path = dir.join(format!("{name}.key"));
        breakglass_server::write_private_file(&path, identity.expose_secret().as_bytes())?;
        keys.push((name, path, public.canonical()));
    }
    let custodians: String = keys[..3]
        .iter()
        .map(|(n, _, k)| format!("  - name: {n}\n    contact: {n}@example.com\n    key: {k}\n"))
        .collect();
    let procedure = format!(
        "# A demo procedure: the root password of a vault host, split 2-of-3.\nid: demo-root\ndescription: Root password of vault-01 when SSO is down\ntarget:\n  kind: secret\n  details:\n    host: vault-01.example.internal\ncustodians:\n{custodians}quorum: 2\nmax_grant: 15m\nalert_channels: [security-oncall]\nrotation:\n  max_credential_age: 90d\ndrill:\n  every: 90d\ndependencies: [laptop, vpn]\n"
    );
    let procedure_file = dir.join("demo-root.yaml");
    std::fs::write(&procedure_file, &procedure)?;
    println!(
        "  procedure file {} (custodians alice, bob, carol; quorum 2)",
        procedure_file.display()
    );

    // The real server on the embedded default (SQLite in the data dir).
    // A JSON Lines file in the demo dir stands in for the separate, locked audit sink.
    let mut config = breakglass_server::ServerConfig::new(&dir);
    config.sinks = vec![format!(
        "file=file://{}",
        std::fs::canonicalize(&dir)?
            .join("audit-sink.jsonl")
            .display()
    )];
    let built = breakglass_server::build(config).await?;
    let token = built
        .bootstrap_token
        .as_ref()
        .map(|t| breakglass_engine::expose_token(t).to_owned())
        .context("fresh data dir has no admin token")?;
    let listen = a.listen.unwrap_or_else(|| {
        if a.once {
            SocketAddr::from(([127, 0, 0, 1], 0))
        } else {
            SocketAddr::from(([127, 0, 0, 1], 8742))
        }
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("binding {listen} (another server running? pass --listen 127.0.0.1:PORT)")
        })?;
    // HTTPS with a self-signed certificate made in the data dir; the demo's clients trust it.
    let (cert, key) = breakglass_server::tls::self_signed(&dir, &[])?;
    let tls = breakglass_server::tls::load(&cert, &key)?;
    let base = format!("https://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(breakglass_server::serve_tls(
        listener,
        tls,
        built.state,
        async move {
            let _ = stop_rx.await;
        },
    ));
    println!(
        "  server on {base} (SQLite at {}; self-signed certificate {})",
        dir.join("breakglass.db").display(),
        cert.display()
    );

    let result = drive(&base, &cert, &token, &keys, &procedure, &a.grant).await;
    if let Err(e) = result {
        let _ = stop_tx.send(());
        let _ = server.await;
        return Err(e);
    }

    if a.once {
        let _ = stop_tx.send(());
        server.await.context("server task")??;
        println!("demo complete.");
        return Ok(());
    }
    println!();
    println!("The server keeps running at {base}.");
    let cert = dir
        .join(breakglass_server::tls::TLS_DIR)
        .join(breakglass_server::tls::CERT_FILE);
    println!(
        "Open {base}/ in a browser (its certificate is the self-signed {}) and sign in with the admin token in {} (or your key);",
        cert.display(),
        dir.join("admin.token").display()
    );
    println!("a break opened below appears there live. Or try, in another terminal:");
    println!(
        "  export BREAKGLASS_SERVER={base} BREAKGLASS_DATA_DIR={}",
        dir.display()
    );
    println!("  breakglass procedure list");
    println!(
        "  breakglass break open demo-root --reason 'try it' --ticket DEMO-2 --duration 1m --identity {}",
        dir.join("dave.key").display()
    );
    println!(
        "  breakglass approve BREAK_ID --identity {}",
        dir.join("alice.key").display()
    );
    println!("  breakglass audit verify");
    println!("  curl --cacert {} {base}/api/openapi.json", cert.display());
    println!("Ctrl-C stops it.");
    shutdown_signal().await;
    let _ = stop_tx.send(());
    server.await.context("server task")??;
    Ok(())
}

async fn drive(
    base: &str,
    cert: &Path,
    admin_token: &str,
    keys: &[(&str, PathBuf, String)],
    procedure: &str,
    grant: &str,
) -> Result<()> {
    let client = |token: Option<String>| -> Result<Client> {
        let mut c = Client::new(base, token);
        c.trust(cert)?;
        Ok(c)
    };
    let admin = client(Some(admin_token.to_owned()))?;
    let identity = |name: &str| -> Result<Identity> {
        let (_, path, _) = keys
            .iter()
            .find(|(n, _, _)| *n == name)
            .context("demo key")?;
        read_identity(path)
    };
    let applied = admin
        .post(
            "/api/procedures/apply",
            &json!({"files": [{"name": "demo-root.yaml", "content": procedure}]}),
        )
        .await?;
    println!("  applied: {}", field(&applied["results"][0]["change"]));
    admin
        .post("/api/actors", &json!({"name": "dave", "roles": ["requester"], "key": keys[3].2, "contact": "dave@example.com"}))
        .await?;
    println!("  enrolled requester dave (age key)");
    let demo_secret = format!("demo-root-{}", random_word());
    let sealed = admin
        .post(
            "/api/procedures/demo-root/seal",
            &json!({"secret_b64": B64.encode(&demo_secret)}),
        )
        .await?;
    println!(
        "  sealed the demo secret as {} (2 of alice, bob, carol); the server keeps only ciphertexts",
        field(&sealed["seal_id"])
    );

    println!();
    println!("break timeline:");
    let mut dave = client(None)?;
    dave.login(Some("dave"), &identity("dave")?).await?;
    let mut t = Timeline {
        start: Instant::now(),
        steps: Vec::new(),
    };
    let opened = dave
        .post("/api/breaks", &json!({"procedure": "demo-root", "reason": "SSO is down; vault-01 needs a root fix", "ticket": "INC-2031", "duration": grant}))
        .await?;
    let id = field(&opened["id"]);
    t.step(format!(
        "dave opened {id} (INC-2031); alert queued for security-oncall"
    ));
    for name in ["alice", "bob"] {
        let who = identity(name)?;
        let mut c = client(None)?;
        c.login(Some(name), &who).await?;
        let r = approve_with(&c, &who, &id).await?;
        let state = field(&r["break"]["state"]);
        t.step(format!(
            "{name} decrypted their share locally and approved ({}/{}){}",
            field(&r["approvals"]),
            field(&r["quorum"]),
            if state == "granted" {
                format!(
                    " → quorum: unsealed, grant issued until {}",
                    field(&r["break"]["deadline"])
                )
            } else {
                String::new()
            }
        ));
    }
    println!("  {:>9}  (carol is asleep: 2 of 3 is enough)", "");
    let revealed = dave
        .post(&format!("/api/breaks/{id}/reveal"), &json!({}))
        .await?;
    let secret = breakglass_custody::decrypt_with(
        &identity("dave")?,
        revealed["age_file"].as_str().unwrap_or_default().as_bytes(),
    )?;
    if secret.as_slice() != demo_secret.as_bytes() {
        bail!("revealed secret does not match what was sealed");
    }
    t.step(format!("dave revealed the secret once ({} bytes, decrypted with his own key; a second reveal is refused)", secret.len()));
    let again = dave
        .post(&format!("/api/breaks/{id}/reveal"), &json!({}))
        .await;
    if again.is_ok() {
        bail!("a second reveal was allowed");
    }
    let b = wait_for_state(&admin, &id, "expired", Duration::from_secs(120)).await?;
    t.step(format!(
        "grant expired at its deadline (ended by the server's expiry worker at {})",
        field(&b["ended_at"])
    ));
    let p = admin.get("/api/procedures/demo-root").await?;
    t.step(format!(
        "procedure demo-root tainted: {}",
        field(&p["taint"]["reason"])
    ));
    let resealed = admin
        .post(
            "/api/procedures/demo-root/seal",
            &json!({"secret_b64": B64.encode(format!("rotated-{}", random_word()))}),
        )
        .await?;
    t.step(format!(
        "rotated and re-sealed as {}; taint cleared",
        field(&resealed["seal_id"])
    ));

    let tta = b["time_to_access_ms"].as_i64().unwrap_or_default();
    println!();
    println!("time to access (request → grant, measured by the server): {tta} ms");
    // Sign a checkpoint of the final head and wait for the sink to hold everything.
    admin.post("/api/audit/checkpoint", &json!({})).await?;
    let start = Instant::now();
    loop {
        let sinks = admin.get("/api/audit/sinks").await?;
        if sinks["sinks"][0]["pending"].as_i64() == Some(0) {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the audit sink did not catch up: {sinks}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let verify = admin.get("/api/audit/verify?against=file").await?;
    if verify["intact"].as_bool() != Some(true) {
        bail!("audit verification failed: {}", verify["findings"]);
    }
    let pubkey = admin.get("/api/audit/pubkey").await?;
    println!(
        "audit chain intact: {} entries, {} signed checkpoints (key {}), head #{} {}",
        field(&verify["entries"]),
        field(&verify["checkpoints"]),
        field(&pubkey["key_id"]),
        field(&verify["head"]["seq"]),
        field(&verify["head"]["hash"])
    );
    println!("the audit sink (audit-sink.jsonl) holds the same history, entry for entry");
    let entries = admin.get("/api/audit?from=1&limit=1000").await?;
    let kinds: Vec<String> = entries["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["break"].as_str() == Some(id.as_str()))
        .map(|e| field(&e["kind"]))
        .collect();
    println!("audited for {id}: {}", kinds.join(" → "));
    Ok(())
}

async fn wait_for_state(client: &Client, id: &str, state: &str, limit: Duration) -> Result<Value> {
    let start = Instant::now();
    loop {
        let b = client.get(&format!("/api/breaks/{id}")).await?;
        if b["state"].as_str() == Some(state) {
            return Ok(b);
        }
        if start.elapsed() > limit {
            bail!(
                "break {id} did not reach {state} within {limit:?} (it is {})",
                field(&b["state"])
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn random_word() -> String {
    let (id, _) = breakglass_custody::keygen();
    let text = id.expose_secret();
    let key = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap_or("X");
    key.chars().rev().take(8).collect::<String>().to_lowercase()
}

/// Recreates the demo dir; refuses to wipe a directory that is not a demo dir.
fn fresh_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            bail!(
                "{} exists and is not a demo directory; pass --dir with a new path",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing old demo dir {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "created by `breakglass demo`; safe to delete\n",
    )?;
    Ok(dir.to_path_buf())
}
