//! Sign-in, sessions and CSRF for the web UI.
//!
//! The browser never holds an API token: sign-in exchanges one (or a key-signed challenge) for
//! a session token (`bgs_…`, the engine's, expiring with the session), kept in an `HttpOnly`,
//! `SameSite=Strict` cookie. Forms that change state carry `csrf`, an HMAC of the session
//! token under a key made at start-up, compared in constant time; the sign-in forms (before
//! any session) carry a random value that must match a cookie of the same value.

use askama::Template;
use axum::extract::{Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use breakglass_domain::{Action, Actor};
use breakglass_engine::ChallengeKind;
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{UiError, render};
use crate::AppState;

/// Cookie holding the session token.
pub(crate) const SESSION_COOKIE: &str = "bg_session";
/// Cookie holding the sign-in form's anti-forgery value.
const PRE_COOKIE: &str = "bg_pre";

/// The key CSRF tokens are made with: `DATA_DIR/ui.key`, the same file on every server of a
/// deployment (sessions are stored, so a form rendered by one server may be posted to another);
/// a random one when none is given (tests).
pub(crate) struct UiKeys {
    csrf: Zeroizing<[u8; 32]>,
}

impl UiKeys {
    /// Keys from 32 secret bytes.
    pub(crate) fn from_key(key: Zeroizing<[u8; 32]>) -> UiKeys {
        UiKeys { csrf: key }
    }
}

impl Default for UiKeys {
    fn default() -> UiKeys {
        use rand::RngCore;
        let mut csrf = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(csrf.as_mut());
        UiKeys { csrf }
    }
}

impl UiKeys {
    /// The CSRF token of a session: hex HMAC-SHA256 of the session token.
    fn csrf_for(&self, session: &str) -> String {
        // HMAC accepts a key of any length; 32 bytes cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.csrf.as_ref()) else {
            return String::new();
        };
        mac.update(b"breakglass-ui-csrf\0");
        mac.update(session.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// The signed-in viewer of a page.
pub(crate) struct Viewer {
    /// Who.
    pub(crate) actor: Actor,
    session: SecretString,
    /// The CSRF token every form of this viewer carries.
    pub(crate) csrf: String,
}

impl Viewer {
    /// Whether the viewer may do `action` (forms are shown only then; the engine decides).
    pub(crate) fn may(&self, action: Action) -> bool {
        self.actor.may(action).is_ok()
    }

    /// The viewer's session as an `Authorization` header (marked sensitive), for a request
    /// the UI forwards to another server of several on the viewer's behalf.
    pub(crate) fn bearer(&self) -> axum::http::HeaderValue {
        let text = zeroize::Zeroizing::new(format!("Bearer {}", self.session.expose_secret()));
        let mut v = axum::http::HeaderValue::from_str(&text)
            .unwrap_or_else(|_| axum::http::HeaderValue::from_static("Bearer -"));
        v.set_sensitive(true);
        v
    }

    /// Whether the viewer may read the audit log (the Audit tab).
    pub(crate) fn can_audit(&self) -> bool {
        self.may(Action::ReadAudit)
    }

    /// Whether the viewer may read the people inventory (the People tab).
    pub(crate) fn can_read_people(&self) -> bool {
        self.may(Action::ReadPeople)
    }

    /// Role names, for the header.
    pub(crate) fn roles(&self) -> String {
        self.actor
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Refuses a state-changing form whose CSRF token is not this session's, or that came
    /// from another site.
    pub(crate) fn check_form(
        &self,
        state: &AppState,
        headers: &HeaderMap,
        csrf: &str,
    ) -> Result<(), UiError> {
        same_origin(headers)?;
        let expected = state.ui.keys.csrf_for(self.session.expose_secret());
        if bool::from(expected.as_bytes().ct_eq(csrf.as_bytes())) {
            Ok(())
        } else {
            Err(UiError(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or not this session's; reload the page and try again"
                    .into(),
            ))
        }
    }
}

/// Refuses a request a browser marks as cross-site, or whose `Origin` is not this host.
fn same_origin(headers: &HeaderMap) -> Result<(), UiError> {
    let refuse = || {
        UiError(
            StatusCode::FORBIDDEN,
            "a form from another site was refused".into(),
        )
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site == "cross-site"
    {
        return Err(refuse());
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin != "null"
    {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if origin_host != host {
            return Err(refuse());
        }
    }
    Ok(())
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| Cookie::split_parse(v.to_owned()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Whether cookies should be `Secure`: the server's public URL is https.
fn secure(state: &AppState) -> bool {
    state
        .engine
        .config()
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
}

fn set_cookie(state: &AppState, name: &str, value: String, max_age_s: i64) -> HeaderValue {
    let c = Cookie::build((name.to_owned(), value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure(state))
        .max_age(cookie::time::Duration::seconds(max_age_s))
        .build();
    HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let next = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let to_signin =
            || Redirect::to(&format!("/signin?next={}", url_escape(&next))).into_response();
        let Some(token) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Err(to_signin());
        };
        match state.engine.authenticate(&token).await {
            Ok(actor) => {
                let csrf = state.ui.keys.csrf_for(&token);
                Ok(Viewer {
                    actor,
                    session: SecretString::from(token),
                    csrf,
                })
            }
            Err(breakglass_engine::EngineError::Unauthenticated(_)) => Err(to_signin()),
            Err(e) => Err(UiError::from(e).into_response()),
        }
    }
}

/// Percent-encodes a path for a query value.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where to go after signing in: a local path only (never another site).
fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

#[derive(Template)]
#[template(path = "signin.html")]
pub(crate) struct SigninPage {
    pub(crate) pre: String,
    pub(crate) next: String,
    pub(crate) error: Option<String>,
    /// The challenge to answer (second step of the key sign-in).
    pub(crate) challenge: Option<ChallengeView>,
}

pub(crate) struct ChallengeView {
    pub(crate) id: String,
    pub(crate) actor: String,
    /// `sign` or `decrypt`.
    pub(crate) kind: &'static str,
    /// The message to sign, or the age file to decrypt.
    pub(crate) text: String,
    pub(crate) namespace: &'static str,
    pub(crate) expires: String,
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

fn new_pre() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Renders the sign-in page with a fresh anti-forgery value (also set as a cookie).
fn signin_response(
    state: &AppState,
    status: StatusCode,
    next: String,
    error: Option<String>,
    challenge: Option<ChallengeView>,
) -> Response {
    let pre = new_pre();
    let mut r = render(
        status,
        &SigninPage {
            pre: pre.clone(),
            next,
            error,
            challenge,
        },
    );
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(state, PRE_COOKIE, pre, 600));
    r
}

pub(crate) async fn signin_page(State(s): State<AppState>, Query(q): Query<NextQuery>) -> Response {
    signin_response(
        &s,
        StatusCode::OK,
        local_next(q.next.as_deref()),
        None,
        None,
    )
}

/// Checks the sign-in form's anti-forgery value against its cookie.
fn check_pre(headers: &HeaderMap, pre: &str) -> Result<(), UiError> {
    same_origin(headers)?;
    let cookie = cookie_value(headers, PRE_COOKIE).unwrap_or_default();
    if !cookie.is_empty() && bool::from(cookie.as_bytes().ct_eq(pre.as_bytes())) {
        Ok(())
    } else {
        Err(UiError(
            StatusCode::FORBIDDEN,
            "the sign-in form expired or came from elsewhere; reload the page".into(),
        ))
    }
}

/// Answers a successful sign-in: the session cookie, then the page asked for.
fn signed_in(state: &AppState, token: &SecretString, expires_in_s: i64, next: &str) -> Response {
    let mut r = Redirect::to(&local_next(Some(next))).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            state,
            SESSION_COOKIE,
            token.expose_secret().to_owned(),
            expires_in_s,
        ),
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, PRE_COOKIE, String::new(), 0),
    );
    r
}

#[derive(Deserialize)]
pub(crate) struct TokenForm {
    pre: String,
    token: SecretString,
    #[serde(default)]
    next: Option<String>,
}

pub(crate) async fn signin_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    let next = local_next(f.next.as_deref());
    if let Err(e) = check_pre(&headers, &f.pre) {
        return e.into_response();
    }
    let result = s
        .engine
        .session_for_token(f.token.expose_secret().trim())
        .await;
    finish_signin(&s, result, next)
}

/// A session cookie and the page asked for, or the sign-in page again with the reason.
fn finish_signin(
    s: &AppState,
    result: Result<breakglass_engine::Session, breakglass_engine::EngineError>,
    next: String,
) -> Response {
    match result {
        Ok(session) => {
            let ttl = session.expires_at.since(s.engine.now()) / 1000;
            signed_in(s, &session.token, ttl, &next)
        }
        Err(e) => {
            let UiError(status, message) = UiError::from(e);
            signin_response(s, status, next, Some(message), None)
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ChallengeForm {
    pre: String,
    actor: String,
    #[serde(default)]
    next: Option<String>,
}

pub(crate) async fn signin_challenge(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<ChallengeForm>,
) -> Response {
    let next = local_next(f.next.as_deref());
    if let Err(e) = check_pre(&headers, &f.pre) {
        return e.into_response();
    }
    match s.engine.challenge(f.actor.trim()).await {
        Ok(c) => {
            let (kind, text, namespace) = match c.kind {
                ChallengeKind::Sign { message, namespace } => ("sign", message, namespace),
                ChallengeKind::Decrypt { age_file } => (
                    "decrypt",
                    String::from_utf8_lossy(&age_file).into_owned(),
                    "",
                ),
            };
            signin_response(
                &s,
                StatusCode::OK,
                next,
                None,
                Some(ChallengeView {
                    id: c.id,
                    actor: c.actor,
                    kind,
                    text,
                    namespace,
                    expires: super::when(c.expires_at),
                }),
            )
        }
        Err(e) => {
            let UiError(status, message) = UiError::from(e);
            signin_response(&s, status, next, Some(message), None)
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct AnswerForm {
    pre: String,
    challenge_id: String,
    response: SecretString,
    #[serde(default)]
    next: Option<String>,
}

pub(crate) async fn signin_answer(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<AnswerForm>,
) -> Response {
    let next = local_next(f.next.as_deref());
    if let Err(e) = check_pre(&headers, &f.pre) {
        return e.into_response();
    }
    let result = s
        .engine
        .login(&f.challenge_id, f.response.expose_secret())
        .await;
    finish_signin(&s, result, next)
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

pub(crate) async fn signout(
    State(s): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Result<Response, UiError> {
    viewer.check_form(&s, &headers, &f.csrf)?;
    s.engine.end_session(viewer.session.expose_secret()).await?;
    let mut r = Redirect::to("/signin").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&s, SESSION_COOKIE, String::new(), 0),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(local_next(Some("/breaks/x")), "/breaks/x");
        assert_eq!(local_next(Some("//evil.example/")), "/");
        assert_eq!(local_next(Some("https://evil.example/")), "/");
        assert_eq!(local_next(Some("/\\evil")), "/");
        assert_eq!(local_next(None), "/");
    }

    #[test]
    fn csrf_is_bound_to_the_session() {
        let k = UiKeys::default();
        assert_eq!(k.csrf_for("bgs_a"), k.csrf_for("bgs_a"));
        assert_ne!(k.csrf_for("bgs_a"), k.csrf_for("bgs_b"));
        assert_ne!(UiKeys::default().csrf_for("bgs_a"), k.csrf_for("bgs_a"));
    }

    #[test]
    fn cross_site_forms_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("bg.local:8080"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://bg.local:8080"),
        );
        assert!(same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(same_origin(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_origin(&h).is_err());
    }
}
