//! Rate limits on the endpoints that cost the server work for anyone who can reach it or that
//! a guesser would hammer: sign-in (challenges, answers, the UI's sign-in forms), approvals,
//! and acknowledgements. Each is a GCRA limiter (the `governor` crate) keyed by the client's
//! address; a request over the limit gets 429 with `Retry-After`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;

/// Requests per minute per client address, by endpoint group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Sign-in: `POST /api/auth/*`, `POST /signin*`.
    pub sign_in_per_minute: u32,
    /// `POST /api/breaks/{id}/approvals`.
    pub approvals_per_minute: u32,
    /// `POST /api/ack`, `POST /ack/{token}`.
    pub acks_per_minute: u32,
}

impl Default for RateLimits {
    /// Generous enough that people in an incident never meet them; tight enough that a script
    /// hammering the server is slowed to a trickle.
    fn default() -> RateLimits {
        RateLimits {
            sign_in_per_minute: 300,
            approvals_per_minute: 120,
            acks_per_minute: 120,
        }
    }
}

/// The limiters of a running server.
pub(crate) struct Limiters {
    sign_in: Option<DefaultKeyedRateLimiter<IpAddr>>,
    approvals: Option<DefaultKeyedRateLimiter<IpAddr>>,
    acks: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

fn limiter(per_minute: u32) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
    // 0 turns a limit off. The burst is the whole minute's allowance.
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

impl Limiters {
    pub(crate) fn new(l: RateLimits) -> Limiters {
        Limiters {
            sign_in: limiter(l.sign_in_per_minute),
            approvals: limiter(l.approvals_per_minute),
            acks: limiter(l.acks_per_minute),
        }
    }

    /// The limiter of a request, if it is one of the limited endpoints.
    fn for_request(
        &self,
        method: &Method,
        path: &str,
    ) -> Option<(&DefaultKeyedRateLimiter<IpAddr>, &'static str)> {
        if method != Method::POST {
            return None;
        }
        let (limiter, what) = if path.starts_with("/api/auth/") || path.starts_with("/signin") {
            (&self.sign_in, "sign-in")
        } else if (path.starts_with("/api/breaks/") && path.ends_with("/approvals"))
            || path.starts_with("/api/totp/")
        {
            (&self.approvals, "approval")
        } else if path == "/api/ack" || path.starts_with("/ack/") {
            (&self.acks, "acknowledgement")
        } else {
            return None;
        };
        limiter.as_ref().map(|l| (l, what))
    }
}

/// Middleware: refuses a limited request over its client's allowance.
pub(crate) async fn enforce(
    State(limiters): State<Arc<Limiters>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some((limiter, what)) = limiters.for_request(request.method(), request.uri().path()) {
        // Without the peer address (in-process tests) every request shares one allowance.
        let ip = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        if let Err(not_until) = limiter.check_key(&ip) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs().max(1);
            tracing::warn!(client = %ip, what, "rate limit reached");
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"error": {
                    "code": "rate_limited",
                    "message": format!("too many {what} requests from this address; retry in {secs} s"),
                    "details": [],
                }})),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_limited_endpoints_are_limited() {
        let l = Limiters::new(RateLimits::default());
        assert!(l.for_request(&Method::POST, "/api/auth/login").is_some());
        assert!(l.for_request(&Method::POST, "/signin/answer").is_some());
        assert!(
            l.for_request(&Method::POST, "/api/breaks/brk_1/approvals")
                .is_some()
        );
        assert!(l.for_request(&Method::POST, "/ack/tok").is_some());
        assert!(l.for_request(&Method::GET, "/ack/tok").is_none());
        assert!(l.for_request(&Method::POST, "/api/breaks").is_none());
        let off = Limiters::new(RateLimits {
            sign_in_per_minute: 0,
            ..RateLimits::default()
        });
        assert!(off.for_request(&Method::POST, "/api/auth/login").is_none());
    }
}
