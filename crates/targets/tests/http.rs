//! The HTTP account target against a local identity provider: an axum server on 127.0.0.1:0
//! that holds emergency accounts (enabled, password, expiry), accepts `enable` only with the
//! admin token and `disable`/`check` only with the operator token, records every call, and
//! answers 401/403/409/500 or stalls on demand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use breakglass_custody::{CustodianKey, Secret, keygen};
use breakglass_domain::{Limits, Procedure, Timestamp, parse_procedures};
use breakglass_engine::ports::{EndCause, GrantRequest, Issued, Target, TargetError};
use breakglass_targets::{HttpAccountTarget, HttpConnection, load};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "admin-token-7f3a9c1e5b";
const OPERATOR_TOKEN: &str = "operator-token-2d8e4f6a0c";
const WRONG_TOKEN: &str = "wrong-admin-token-4b1d9e";
const ACCOUNT: &str = "bg-emergency";
const NOW: Timestamp = Timestamp(1_795_910_341_000);
const DEADLINE: Timestamp = Timestamp(1_795_913_941_000);

// ---------------------------------------------------------------------------------------------
// The identity provider.

#[derive(Default)]
struct Idp {
    accounts: HashMap<String, Account>,
    calls: Vec<Call>,
    /// `enable` answers this status without doing anything.
    refuse_enable: Option<u16>,
    /// `enable` applies the change, then stalls this long before answering.
    enable_delay: Option<Duration>,
}

#[derive(Clone, Debug, Default)]
struct Account {
    enabled: bool,
    password: Option<String>,
    expires: Option<String>,
    note: Option<String>,
}

#[derive(Clone, Debug)]
struct Call {
    op: &'static str,
    account: String,
    token: String,
    body: String,
}

type Shared = Arc<Mutex<Idp>>;

fn token(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned()
}

async fn enable(
    State(idp): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let token = token(&headers);
    let delay = {
        let mut idp = idp.lock().expect("lock");
        idp.calls.push(Call {
            op: "enable",
            account: account.clone(),
            token: token.clone(),
            body: body.clone(),
        });
        // Error bodies echo what they were sent, as careless APIs do: none of it may reach an
        // error message.
        if token != ADMIN_TOKEN {
            return (StatusCode::UNAUTHORIZED, format!("invalid token {token}"));
        }
        if let Some(code) = idp.refuse_enable {
            let code = StatusCode::from_u16(code).expect("status");
            return (code, format!("refused request {body}"));
        }
        let Ok(v) = serde_json::from_str::<Value>(&body) else {
            return (StatusCode::BAD_REQUEST, "body is not JSON".into());
        };
        let delay = idp.enable_delay;
        let Some(a) = idp.accounts.get_mut(&account) else {
            return (StatusCode::NOT_FOUND, "no such account".into());
        };
        if a.enabled {
            return (StatusCode::CONFLICT, "already enabled".into());
        }
        a.enabled = true;
        a.password = v["password"].as_str().map(str::to_owned);
        a.expires = v["expires"].as_str().map(str::to_owned);
        a.note = v["note"].as_str().map(str::to_owned);
        delay
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    (
        StatusCode::OK,
        json!({"account": account, "enabled": true}).to_string(),
    )
}

async fn disable(
    State(idp): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let token = token(&headers);
    let mut idp = idp.lock().expect("lock");
    idp.calls.push(Call {
        op: "disable",
        account: account.clone(),
        token: token.clone(),
        body,
    });
    if token != OPERATOR_TOKEN {
        return (StatusCode::UNAUTHORIZED, format!("invalid token {token}"));
    }
    match idp.accounts.get_mut(&account) {
        Some(a) if a.enabled => {
            a.enabled = false;
            a.password = None;
            (StatusCode::OK, "disabled".into())
        }
        _ => (StatusCode::NOT_FOUND, "not enabled".into()),
    }
}

async fn show(
    State(idp): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let token = token(&headers);
    let mut idp = idp.lock().expect("lock");
    idp.calls.push(Call {
        op: "check",
        account: account.clone(),
        token: token.clone(),
        body: String::new(),
    });
    if token != OPERATOR_TOKEN {
        return (StatusCode::UNAUTHORIZED, format!("invalid token {token}"));
    }
    match idp.accounts.get(&account) {
        Some(a) => (
            StatusCode::OK,
            json!({"account": account, "enabled": a.enabled, "password": a.password}).to_string(),
        ),
        None => (StatusCode::NOT_FOUND, "no such account".into()),
    }
}

/// Starts the identity provider with these accounts (all disabled); returns its base URL.
async fn start_idp(accounts: &[&str]) -> (Shared, String) {
    breakglass_testkit::install_tls();
    let idp: Shared = Arc::new(Mutex::new(Idp {
        accounts: accounts
            .iter()
            .map(|a| ((*a).to_owned(), Account::default()))
            .collect(),
        ..Idp::default()
    }));
    let app = Router::new()
        .route("/api/users/{account}/enable", post(enable))
        .route("/api/users/{account}/disable", post(disable))
        .route("/api/users/{account}", get(show))
        .with_state(idp.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (idp, format!("http://{addr}"))
}

fn calls(idp: &Shared) -> Vec<Call> {
    idp.lock().expect("lock").calls.clone()
}

fn account(idp: &Shared, name: &str) -> Account {
    idp.lock().expect("lock").accounts[name].clone()
}

// ---------------------------------------------------------------------------------------------
// The adapter's configuration.

const ENABLE_BODY: &str = r#"{"password": "{{password}}", "expires": "{{deadline}}", "expires_unix": {{deadline_unix}}, "note": "break {{break_id}} by {{requester}}"}"#;

/// A targets file with one `idp` connection, read through the real loader.
fn targets_file(base_url: &str, timeout: &str, check: bool) -> String {
    let check = if check {
        "    check:\n      method: GET\n      path: \"/api/users/{{account}}\"\n"
    } else {
        ""
    };
    format!(
        "connections:\n  - name: idp\n    kind: http\n    base_url: {base_url}\n    operator_token: {{env: IDP_OPERATOR_TOKEN}}\n    timeout: {timeout}\n    enable:\n      method: POST\n      path: \"/api/users/{{{{account}}}}/enable\"\n      body: '{ENABLE_BODY}'\n    disable:\n      method: POST\n      path: \"/api/users/{{{{account}}}}/disable\"\n      body: '{{\"reason\": \"break {{{{break_id}}}} ended\"}}'\n{check}    access: \"Sign in to {{{{account}}}} with {{{{password}}}} until {{{{deadline}}}}\"\n"
    )
}

fn connections(text: &str) -> HashMap<String, HttpConnection> {
    let env = |k: &str| (k == "IDP_OPERATOR_TOKEN").then(|| OPERATOR_TOKEN.to_owned());
    load("targets.yaml", text, &env)
        .unwrap_or_else(|e| panic!("targets file: {e:?}"))
        .http_connections()
}

fn adapter(base_url: &str) -> HttpAccountTarget {
    HttpAccountTarget::new(connections(&targets_file(base_url, "5s", true)))
}

fn procedure(connection: &str, account: &str) -> Procedure {
    let (_, a) = keygen();
    let (_, b) = keygen();
    let text = format!(
        "id: idp-emergency\ntarget:\n  kind: http\n  details:\n    connection: {connection}\n    account: \"{account}\"\ncustodians:\n  - name: alice\n    key: {}\n  - name: bob\n    key: {}\nquorum: 2\nmax_grant: 1h\n",
        a.canonical(),
        b.canonical()
    );
    let mut parsed = parse_procedures("idp.yaml", &text, &Limits::default())
        .unwrap_or_else(|e| panic!("procedure: {e:?}"));
    parsed.remove(0).procedure
}

fn request<'a>(
    procedure: &'a Procedure,
    break_id: &'a str,
    requester: &'a str,
    key: &'a CustodianKey,
) -> GrantRequest<'a> {
    GrantRequest {
        procedure,
        break_id,
        requester,
        requester_key: key,
        now: NOW,
        deadline: DEADLINE,
    }
}

fn sealed(token: &str) -> Secret {
    Secret::new(token.as_bytes().to_vec())
}

fn access_text(issued: &Issued) -> String {
    String::from_utf8(issued.access.expose_secret().to_vec()).expect("utf-8")
}

/// Neither token nor `also` appears in the error's message or its `Debug`.
fn assert_clean(e: &TargetError, also: &[&str]) {
    let shown = format!("{e} / {e:?}");
    for secret in [ADMIN_TOKEN, OPERATOR_TOKEN, WRONG_TOKEN]
        .iter()
        .chain(also)
    {
        assert!(!shown.contains(secret), "secret in error: {shown}");
    }
}

fn password_sent(idp: &Shared) -> String {
    let body = &calls(idp)
        .iter()
        .find(|c| c.op == "enable")
        .expect("an enable call")
        .body
        .clone();
    let v: Value = serde_json::from_str(body).expect("enable body is JSON");
    v["password"].as_str().expect("password").to_owned()
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn grant_enables_the_account_with_a_fresh_password() {
    let (idp, url) = start_idp(&[ACCOUNT]).await;
    let target = adapter(&url);
    let p = procedure("idp", ACCOUNT);
    let (_, key) = keygen();
    let issued = target
        .grant(&request(&p, "brk_0001", "dave", &key), &sealed(ADMIN_TOKEN))
        .await
        .expect("granted");

    let a = account(&idp, ACCOUNT);
    assert!(a.enabled);
    let password = a.password.expect("password set");
    assert_eq!(password.len(), 32);
    assert_eq!(a.expires.as_deref(), Some("2026-11-29T00:59:01.000Z"));
    let access = access_text(&issued);
    assert_eq!(
        access,
        format!("Sign in to {ACCOUNT} with {password} until 2026-11-29T00:59:01.000Z")
    );
    let body: Value = serde_json::from_str(&calls(&idp)[0].body).expect("json");
    assert_eq!(body["expires_unix"], 1_795_913_941);

    // The handle is stored and audited: it names the account, never the password.
    assert_eq!(issued.handle["connection"], "idp");
    assert_eq!(issued.handle["account"], ACCOUNT);
    let handle = issued.handle.to_string();
    assert!(!handle.contains(&password) && !handle.contains(ADMIN_TOKEN));
    assert!(!format!("{issued:?}").contains(&password));

    let c = calls(&idp);
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].op, c[0].token.as_str()), ("enable", ADMIN_TOKEN));

    // A second grant gets another password.
    target
        .end(&p, "brk_0001", &issued.handle, EndCause::Closed)
        .await
        .expect("ended");
    let again = target
        .grant(&request(&p, "brk_0002", "dave", &key), &sealed(ADMIN_TOKEN))
        .await
        .expect("granted again");
    assert!(!access_text(&again).contains(&password));
}

#[tokio::test]
async fn bodies_are_json_escaped_and_paths_percent_encoded() {
    let odd = "ops/emergency admin";
    let (idp, url) = start_idp(&[odd]).await;
    let target = adapter(&url);
    let p = procedure("idp", odd);
    let (_, key) = keygen();
    let requester = "dave \"the admin\" \\ o'brien";
    let break_id = "brk_\"0003\"";
    let issued = target
        .grant(
            &request(&p, break_id, requester, &key),
            &sealed(ADMIN_TOKEN),
        )
        .await
        .expect("granted");

    // The IdP parsed the body as JSON and got the values back exactly; the `/` in the account
    // stayed inside its path segment.
    let a = account(&idp, odd);
    assert!(a.enabled);
    assert_eq!(
        a.note.as_deref(),
        Some("break brk_\"0003\" by dave \"the admin\" \\ o'brien")
    );
    assert_eq!(calls(&idp)[0].account, odd);
    // The access text is not JSON: values go in as they are.
    assert!(access_text(&issued).starts_with("Sign in to ops/emergency admin with "));

    let ended = target
        .end(&p, break_id, &issued.handle, EndCause::Expired)
        .await
        .expect("ended");
    assert_eq!(ended, json!({"account": odd, "status": "disabled"}));
    let disable = calls(&idp)[1].clone();
    let v: Value = serde_json::from_str(&disable.body).expect("disable body is JSON");
    assert_eq!(v["reason"], "break brk_\"0003\" ended");
}

#[tokio::test]
async fn end_disables_with_the_operator_token_and_twice_is_fine() {
    let (idp, url) = start_idp(&[ACCOUNT]).await;
    let target = adapter(&url);
    let p = procedure("idp", ACCOUNT);
    let (_, key) = keygen();
    let issued = target
        .grant(&request(&p, "brk_0004", "dave", &key), &sealed(ADMIN_TOKEN))
        .await
        .expect("granted");

    let ended = target
        .end(&p, "brk_0004", &issued.handle, EndCause::Expired)
        .await
        .expect("ended");
    assert_eq!(ended, json!({"account": ACCOUNT, "status": "disabled"}));
    assert!(!account(&idp, ACCOUNT).enabled);
    let c = calls(&idp);
    assert_eq!((c[1].op, c[1].token.as_str()), ("disable", OPERATOR_TOKEN));
    assert_ne!(c[1].token, ADMIN_TOKEN);

    let again = target
        .end(&p, "brk_0004", &issued.handle, EndCause::Expired)
        .await
        .expect("ending twice is fine");
    assert_eq!(
        again,
        json!({"account": ACCOUNT, "status": "already_disabled"})
    );

    // After a crash the engine may hold no handle: the procedure names the account.
    let abandoned = target
        .end(&p, "brk_0004", &Value::Null, EndCause::Abandoned)
        .await
        .expect("ends from the procedure alone");
    assert_eq!(abandoned["status"], "already_disabled");
    assert!(
        calls(&idp)
            .iter()
            .filter(|c| c.op == "disable")
            .all(|c| c.token == OPERATOR_TOKEN)
    );
}

#[tokio::test]
async fn wrong_admin_token_is_a_credential_error_naming_the_target() {
    let (idp, url) = start_idp(&[ACCOUNT]).await;
    let target = adapter(&url);
    let p = procedure("idp", ACCOUNT);
    let (_, key) = keygen();
    let e = target
        .grant(&request(&p, "brk_0005", "dave", &key), &sealed(WRONG_TOKEN))
        .await
        .expect_err("refused");
    assert!(matches!(e, TargetError::Credential { .. }), "{e:?}");
    assert_eq!(e.code(), "credential");
    let shown = e.to_string();
    assert!(shown.starts_with(&format!("http idp ({url})")), "{shown}");
    assert!(shown.contains("HTTP 401"), "{shown}");
    // The IdP echoed the token in its answer, and the request carried a password.
    assert_clean(&e, &[&password_sent(&idp)]);
    // A refusal changes nothing, so nothing is undone.
    assert!(!account(&idp, ACCOUNT).enabled);
    assert_eq!(calls(&idp).len(), 1);
}

#[tokio::test]
async fn forbidden_is_a_privilege_error() {
    let (idp, url) = start_idp(&[ACCOUNT]).await;
    idp.lock().expect("lock").refuse_enable = Some(403);
    let target = adapter(&url);
    let p = procedure("idp", ACCOUNT);
    let (_, key) = keygen();
    let e = target
        .grant(&request(&p, "brk_0006", "dave", &key), &sealed(ADMIN_TOKEN))
        .await
        .expect_err("forbidden");
    assert!(matches!(e, TargetError::Privilege { .. }), "{e:?}");
    let shown = e.to_string();
    assert!(shown.contains(&format!("http idp ({url})")), "{shown}");
    assert!(
        shown.contains(ACCOUNT) && shown.contains("HTTP 403"),
        "{shown}"
    );
    assert_clean(&e, &[&password_sent(&idp)]);
    assert!(!account(&idp, ACCOUNT).enabled);
    assert_eq!(calls(&idp).len(), 1);
}

#[tokio::test]
async fn an_account_already_enabled_is_a_conflict_and_stays_as_it_was() {
    let (idp, url) = start_idp(&[ACCOUNT]).await;
    idp.lock()
        .expect("lock")
        .accounts
        .get_mut(ACCOUNT)
        .expect("account")
        .enabled = true;
    let target = adapter(&url);
    let p = procedure("idp", ACCOUNT);
    let (_, key) = keygen();
    let e = target
        .grant(&request(&p, "brk_0007", "dave", &key), &sealed(ADMIN_TOKEN))
        .await
        .expect_err("conflict");
    assert!(matches!(e, TargetError::Conflict { .. }), "{e:?}");
    assert!(e.to_string().contains("HTTP 409"), "{e}");
    assert_clean(&e, &[&password_sent(&idp)]);
    // Someone else's enabled account is not ours to disable.
    assert!(account(&idp, ACCOUNT).enabled);
    assert_eq!(calls(&idp).len(), 1);
}

#[tokio::test]
async fn a_server_error_on_enable_fails_and_is_undone() {
    let (idp, url) = start_idp(&[ACCOUNT]).await;
    idp.lock().expect("lock").refuse_enable = Some(500);
    let target = adapter(&url);
    let p = procedure("idp", ACCOUNT);
    let (_, key) = keygen();
    let e = target
        .grant(&request(&p, "brk_0008", "dave", &key), &sealed(ADMIN_TOKEN))
        .await
        .expect_err("failed");
    assert!(matches!(e, TargetError::Failed { .. }), "{e:?}");
    let shown = e.to_string();
    assert!(shown.contains("enable answered HTTP 500"), "{shown}");
    // A 500 may come after the change: the adapter disables, which finds nothing enabled.
    assert!(shown.contains("it was not enabled"), "{shown}");
    assert_clean(&e, &[&password_sent(&idp)]);
    let c = calls(&idp);
    assert_eq!(c.len(), 2);
    assert_eq!((c[1].op, c[1].token.as_str()), ("disable", OPERATOR_TOKEN));
}

#[tokio::test]
async fn a_timeout_on_enable_disables_the_account_again() {
    let (idp, url) = start_idp(&[ACCOUNT]).await;
    idp.lock().expect("lock").enable_delay = Some(Duration::from_secs(5));
    let target = HttpAccountTarget::new(connections(&targets_file(&url, "300ms", true)));
    let p = procedure("idp", ACCOUNT);
    let (_, key) = keygen();
    let e = target
        .grant(&request(&p, "brk_0009", "dave", &key), &sealed(ADMIN_TOKEN))
        .await
        .expect_err("timed out");
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e:?}");
    let shown = e.to_string();
    assert!(shown.contains(&format!("http idp ({url})")), "{shown}");
    assert!(shown.contains("enable timed out after 300ms"), "{shown}");
    assert!(
        shown.contains("the account was disabled again with the operator token"),
        "{shown}"
    );
    assert_clean(&e, &[&password_sent(&idp)]);
    // The IdP had enabled the account before stalling; it is disabled again.
    let a = account(&idp, ACCOUNT);
    assert!(!a.enabled && a.password.is_none(), "{a:?}");
    let c = calls(&idp);
    assert_eq!((c[0].op, c[0].token.as_str()), ("enable", ADMIN_TOKEN));
    assert_eq!((c[1].op, c[1].token.as_str()), ("disable", OPERATOR_TOKEN));
}

#[tokio::test]
async fn a_server_down_is_unreachable() {
    breakglass_testkit::install_tls();
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let target = adapter(&url);
    let p = procedure("idp", ACCOUNT);
    let (_, key) = keygen();
    let e = target
        .grant(&request(&p, "brk_0010", "dave", &key), &sealed(ADMIN_TOKEN))
        .await
        .expect_err("unreachable");
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e:?}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!(
            "http idp ({url}) unreachable: enable: could not connect"
        )),
        "{shown}"
    );
    // Nothing was sent, so there is nothing to undo.
    assert!(!shown.contains("disabl"), "{shown}");
    assert_clean(&e, &[]);

    let e = target
        .end(&p, "brk_0010", &Value::Null, EndCause::Expired)
        .await
        .expect_err("unreachable");
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e:?}");
    assert_clean(&e, &[]);

    let lines = target.check(&p).await.expect("checked");
    assert!(lines[0].ok, "{lines:?}");
    assert!(
        !lines[1].ok && lines[1].detail.contains("could not connect"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_disable_call_needing_the_password_is_refused_before_enabling() {
    let (idp, url) = start_idp(&[ACCOUNT]).await;
    let text =
        targets_file(&url, "5s", true).replace("ended\"}'", "ended\", \"p\": \"{{password}}\"}'");
    assert!(text.contains("\"p\": \"{{password}}\""), "{text}");
    let target = HttpAccountTarget::new(connections(&text));
    let p = procedure("idp", ACCOUNT);
    let (_, key) = keygen();
    let e = target
        .grant(&request(&p, "brk_0011", "dave", &key), &sealed(ADMIN_TOKEN))
        .await
        .expect_err("refused");
    assert!(matches!(e, TargetError::Config { .. }), "{e:?}");
    assert!(
        e.to_string().contains("disable.body: `{{password}}`"),
        "{e}"
    );
    assert!(calls(&idp).is_empty());
}

#[tokio::test]
async fn end_with_a_refused_operator_token_is_a_credential_error() {
    let (idp, url) = start_idp(&[ACCOUNT]).await;
    let mut conns = connections(&targets_file(&url, "5s", true));
    conns.get_mut("idp").expect("idp").operator_token = WRONG_TOKEN.to_owned().into();
    let target = HttpAccountTarget::new(conns);
    let p = procedure("idp", ACCOUNT);
    let e = target
        .end(&p, "brk_0012", &Value::Null, EndCause::Closed)
        .await
        .expect_err("refused");
    assert!(matches!(e, TargetError::Credential { .. }), "{e:?}");
    assert!(e.to_string().contains("refused the operator token"), "{e}");
    assert_clean(&e, &[]);
    assert_eq!(calls(&idp)[0].token, WRONG_TOKEN);
}

#[tokio::test]
async fn check_reports_the_account_and_its_configuration() {
    let (idp, url) = start_idp(&[ACCOUNT]).await;
    let target = adapter(&url);

    let lines = target
        .check(&procedure("idp", ACCOUNT))
        .await
        .expect("checked");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.ok), "{lines:?}");
    assert_eq!(lines[0].name, "connection `idp` in the targets file");
    assert_eq!(lines[1].detail, "GET /api/users/{{account}}: HTTP 200");
    let c = calls(&idp);
    assert_eq!((c[0].op, c[0].token.as_str()), ("check", OPERATOR_TOKEN));

    // An account the IdP does not know.
    let lines = target
        .check(&procedure("idp", "ghost"))
        .await
        .expect("checked");
    assert!(!lines[1].ok, "{lines:?}");
    assert!(lines[1].detail.contains("HTTP 404"), "{lines:?}");

    // A connection the targets file does not have.
    let lines = target
        .check(&procedure("nowhere", ACCOUNT))
        .await
        .expect("checked");
    assert_eq!(lines.len(), 1);
    assert!(
        !lines[0].ok && lines[0].detail.contains("known: idp"),
        "{lines:?}"
    );

    // A refused operator token.
    let mut conns = connections(&targets_file(&url, "5s", true));
    conns.get_mut("idp").expect("idp").operator_token = WRONG_TOKEN.to_owned().into();
    let lines = HttpAccountTarget::new(conns)
        .check(&procedure("idp", ACCOUNT))
        .await
        .expect("checked");
    assert!(!lines[1].ok, "{lines:?}");
    assert!(lines[1].detail.contains("HTTP 401"), "{lines:?}");
    assert!(!format!("{lines:?}").contains(WRONG_TOKEN));

    // Without a check call nothing verifies the account: that is not healthy.
    let lines = HttpAccountTarget::new(connections(&targets_file(&url, "5s", false)))
        .check(&procedure("idp", ACCOUNT))
        .await
        .expect("checked");
    assert!(lines[0].ok, "{lines:?}");
    assert!(!lines[1].ok, "{lines:?}");
    assert!(lines[1].detail.contains("no `check` call"), "{lines:?}");
}

#[tokio::test]
async fn rotation_keeps_the_token_and_discovery_lists_nothing() {
    let target = HttpAccountTarget::new(HashMap::new());
    let p = procedure("idp", ACCOUNT);
    assert!(
        target
            .next_credential(&p, &sealed(ADMIN_TOKEN))
            .expect("ok")
            .is_none()
    );
    target
        .rotate(&p, &sealed(ADMIN_TOKEN), &sealed(ADMIN_TOKEN))
        .await
        .expect("nothing to rotate");
    assert!(target.discover(&p).await.expect("ok").is_empty());
    // Without the connection, a grant names what is missing and sends nothing.
    let (_, key) = keygen();
    let e = target
        .grant(&request(&p, "brk_0013", "dave", &key), &sealed(ADMIN_TOKEN))
        .await
        .expect_err("no connection");
    assert!(matches!(e, TargetError::Config { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("no http connection `idp` in the targets file"),
        "{e}"
    );
}
