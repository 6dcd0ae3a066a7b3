//! The web UI, served by `breakglass serve` itself: server-rendered pages (askama templates in
//! `crates/server/templates`, compiled in), htmx and its Server-Sent Events extension for the
//! live parts, every asset served from the binary. Every page reads without JavaScript; the
//! scripts only add live updates and countdowns.
//!
//! Sign-in exchanges an API token, or a key-signed challenge, for a short session token held
//! in an `HttpOnly`, `SameSite=Strict` cookie. Every state-changing form carries a CSRF token
//! bound to that session (HMAC of the session token under a per-process key) and is refused
//! from another origin. Handlers call the same engine use cases as the JSON API, so the roles
//! are enforced in one place; the pages only hide what the viewer may not do.

mod auth;
mod graph;
mod live;
mod pages;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use breakglass_domain::Timestamp;
use breakglass_engine::EngineError;

use crate::AppState;
use crate::error::ApiError;

pub(crate) use auth::UiKeys;

/// The latest audit verification the audit page ran, kept so the page can show it.
#[derive(Debug, Clone)]
pub(crate) struct LastVerify {
    /// When it ran.
    pub(crate) at: Timestamp,
    /// Whether the chain, keys and checkpoints verified.
    pub(crate) intact: bool,
    /// Entries and checkpoints checked, or the first problem, in words.
    pub(crate) summary: String,
}

/// State of the UI shared by its handlers.
#[derive(Default)]
pub(crate) struct UiState {
    /// CSRF key of this process.
    pub(crate) keys: UiKeys,
    /// The latest audit verification.
    pub(crate) last_verify: Mutex<Option<LastVerify>>,
}

/// The UI's routes, merged into the API router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::dashboard))
        .route("/events", get(live::dashboard_events))
        .route("/signin", get(auth::signin_page).post(auth::signin_token))
        .route("/signin/challenge", post(auth::signin_challenge))
        .route("/signin/answer", post(auth::signin_answer))
        .route("/signout", post(auth::signout))
        .route("/procedures/{id}", get(pages::procedure))
        .route("/procedures/{id}/breaks", post(pages::open_break))
        .route("/procedures/{id}/drills", post(pages::run_drill))
        .route("/procedures/{id}/discover", post(pages::discover))
        .route("/breaks/{id}", get(pages::break_page))
        .route("/breaks/{id}/events", get(live::break_events))
        .route("/breaks/{id}/sessions/{session}", get(pages::session_page))
        .route(
            "/breaks/{id}/sessions/{session}/events",
            get(live::session_events),
        )
        .route(
            "/breaks/{id}/sessions/{session}/terminate",
            post(pages::terminate_session),
        )
        .route("/breaks/{id}/close", post(pages::close_break))
        .route("/drills/{id}", get(pages::drill_page))
        .route("/drills/{id}/events", get(live::drill_events))
        .route("/audit", get(pages::audit))
        .route("/inventory", get(pages::inventory))
        .route("/people", get(pages::people))
        .route("/people/{name}", get(pages::person))
        .route("/assets/{name}", get(asset))
}

/// Assets compiled into the binary: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/htmx.min.js"),
    ),
    (
        "htmx-ext-sse.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/htmx-ext-sse.js"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/app.css"),
    ),
];

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// Content-Security-Policy of every page: scripts and connections only from this server, no
/// framing, forms only to this server. Inline styles are allowed for the SVG charts.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// A rendered page with the UI's security headers.
pub(crate) fn page(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Html(html),
    )
        .into_response()
}

/// Renders a template, or answers 500 naming the template (its cause is logged).
pub(crate) fn render(status: StatusCode, t: &impl askama::Template) -> Response {
    match t.render() {
        Ok(html) => page(status, html),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!DOCTYPE html><title>Error</title><p>The page could not be rendered; the server log has the cause.</p>".into(),
            )
        }
    }
}

/// An error shown as a page: the same status and caller-facing message as the JSON API.
pub(crate) struct UiError(pub(crate) StatusCode, pub(crate) String);

impl From<EngineError> for UiError {
    fn from(e: EngineError) -> UiError {
        let (status, message) = ApiError::from(e).parts();
        UiError(status, message)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        render(
            self.0,
            &pages::ErrorPage {
                status: self.0.as_u16(),
                title: self.0.canonical_reason().unwrap_or("Error"),
                message: self.1,
            },
        )
    }
}

/// `Arc` of the UI state inside [`AppState`].
pub(crate) type Ui = Arc<UiState>;

/// `2026-11-29 07:48:15Z`: a timestamp for people (UTC, seconds).
pub(crate) fn when(t: Timestamp) -> String {
    let s = t.to_string();
    // RFC 3339 with milliseconds: keep date and time to the second.
    match (s.get(..10), s.get(11..19)) {
        (Some(d), Some(h)) => format!("{d} {h}Z"),
        _ => s,
    }
}

/// `1.234 s`, `87 ms`, `2 min 5 s`: a duration in milliseconds for people.
pub(crate) fn millis(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

/// `3 d ago`, `5 min ago`: how long ago, for people.
pub(crate) fn ago(now: Timestamp, t: Timestamp) -> String {
    let ms = now.since(t).max(0);
    if ms < 60_000 {
        format!("{} s ago", ms / 1000)
    } else if ms < 3_600_000 {
        format!("{} min ago", ms / 60_000)
    } else if ms < 86_400_000 {
        format!("{} h ago", ms / 3_600_000)
    } else {
        format!("{} d ago", ms / 86_400_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_formats() {
        assert_eq!(when(Timestamp(0)), "1970-01-01 00:00:00Z");
        assert_eq!(millis(87), "87 ms");
        assert_eq!(millis(1234), "1.2 s");
        assert_eq!(millis(125_000), "2 min 5 s");
        assert_eq!(ago(Timestamp(90_000_000), Timestamp(0)), "1 d ago");
    }
}
