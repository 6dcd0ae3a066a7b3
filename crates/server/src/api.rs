//! Routes and handlers of the JSON API. Each handler parses, authenticates, calls one engine
//! use case and maps the result; nothing here decides who may do what.

use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use breakglass_custody::ExposeSecret as _;
use breakglass_custody::Secret;
use breakglass_domain::{Actor, Role};
use breakglass_engine::ports::StatementRecord;
use breakglass_engine::{ChainVerdict, ChallengeKind};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::views::{actor_view, break_view, entry_view, procedure_view};

type ApiResult = Result<Json<Value>, ApiError>;

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/openapi.json", get(openapi))
        .route("/api/auth/challenge", post(challenge))
        .route("/api/auth/login", post(login))
        .route("/api/whoami", get(whoami))
        .route("/api/procedures", get(list_procedures))
        .route(
            "/api/procedures/validate",
            post(validate_procedures).layer(axum::extract::DefaultBodyLimit::max(FILES_LIMIT)),
        )
        .route(
            "/api/procedures/apply",
            post(apply_procedures).layer(axum::extract::DefaultBodyLimit::max(FILES_LIMIT)),
        )
        .route("/api/procedures/{id}", get(show_procedure))
        .route("/api/procedures/{id}/seal", post(seal))
        .route("/api/procedures/{id}/check", post(check_target))
        .route("/api/procedures/{id}/discover", post(discover))
        .route("/api/procedures/{id}/target", get(target_reports))
        .route("/api/procedures/{id}/drills", post(start_drill))
        .route("/api/procedures/{id}/recovery-kit", get(recovery_kit))
        .route("/api/procedures/{id}/custody", get(custody_status))
        .route(
            "/api/procedures/{id}/custody/breaks",
            post(open_custody_break),
        )
        .route("/api/procedures/{id}/custody/attest", post(attest_custody))
        .route(
            "/api/procedures/{id}/custody/rotated",
            post(custody_rotated),
        )
        .route("/api/custody/runs", get(list_custody_runs))
        .route("/api/custody/runs/{id}", get(show_custody_run))
        .route(
            "/api/custody/runs/{id}/steps/{step}",
            post(confirm_custody_step),
        )
        .route("/api/custody/runs/{id}/abort", post(abort_custody_run))
        .route("/api/drills", get(list_drills))
        .route("/api/drills/{id}", get(show_drill))
        .route("/api/drills/{id}/report", get(drill_report))
        .route("/api/readiness", get(readiness))
        .route("/api/whatif", get(what_if))
        .route("/api/attestations", get(list_attestations))
        .route("/api/attestations/{id}", post(answer_attestation))
        .route(
            "/api/custodians/{name}/attest",
            post(attestation_challenges),
        )
        .route("/api/custodians/{name}/lost", post(declare_lost))
        .route("/api/people", get(list_people))
        .route("/api/people/{name}", get(show_person))
        .route("/api/actors", get(list_actors).post(enroll))
        .route("/api/totp", get(totp_status))
        .route("/api/totp/enroll", post(totp_enroll))
        .route("/api/totp/confirm", post(totp_confirm))
        .route("/api/totp/reset", post(totp_reset))
        .route("/api/breaks", get(list_breaks).post(open_break))
        .route("/api/breaks/{id}", get(show_break))
        .route("/api/breaks/{id}/grant", get(grant_record))
        .route("/api/breaks/{id}/share", get(share))
        .route("/api/breaks/{id}/approvals", post(approve))
        .route("/api/breaks/{id}/reveal", post(reveal))
        .route("/api/breaks/{id}/token", post(gateway_token))
        .route("/api/sessions", get(open_sessions))
        .route("/api/breaks/{id}/sessions", get(sessions))
        .route("/api/breaks/{id}/sessions/{session}", get(session_page))
        .route(
            "/api/breaks/{id}/sessions/{session}/terminate",
            post(terminate_session),
        )
        .route("/api/breaks/{id}/evidence", get(evidence))
        .route("/api/breaks/{id}/close", post(close))
        .route("/api/audit", get(audit_entries))
        .route("/api/audit/verify", get(audit_verify))
        .route("/api/audit/export", get(audit_export))
        .route("/api/audit/pubkey", get(audit_pubkey))
        .route("/api/audit/keys", get(audit_keys))
        .route("/api/audit/rotate-key", post(audit_rotate_key))
        .route("/api/audit/checkpoint", post(audit_checkpoint))
        .route("/api/audit/sinks", get(audit_sinks))
        .route("/api/audit/import", post(audit_import))
        .route("/metrics", get(metrics))
        .route("/api/ack", post(ack))
        .route("/ack/{token}", get(ack_page).post(ack_form))
        .route("/api/channels", get(list_channels))
        .route("/api/channels/{name}/test", post(test_channel))
        .route("/api/channels/{name}/attempts", get(channel_attempts))
        .merge(crate::ui::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.limiters.clone(),
            crate::limits::enforce,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.tls,
            security_headers,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Largest request body, except procedure files: no request of the API needs more.
const BODY_LIMIT: usize = 1024 * 1024;
/// Largest body of `procedures/validate` and `procedures/apply` (a whole repository of files).
const FILES_LIMIT: usize = 64 * 1024 * 1024;

/// Over TLS, every response tells browsers to use nothing else for a year.
async fn security_headers(
    State(tls): State<bool>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut r = next.run(request).await;
    if tls {
        r.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            header::HeaderValue::from_static("max-age=31536000"),
        );
    }
    r.headers_mut()
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(header::HeaderValue::from_static("nosniff"));
    r
}

/// The authenticated caller, from `Authorization: Bearer …`.
pub(crate) struct Caller(pub(crate) Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthenticated("missing Authorization: Bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthenticated("Authorization must be `Bearer TOKEN`"))?;
        Ok(Caller(state.engine.authenticate(token.trim()).await?))
    }
}

/// JSON body with a clear error instead of axum's plain-text rejection.
pub(crate) struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::too_large(
                format!("the request body is over the limit of {BODY_LIMIT} bytes"),
            )),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// Query parameters with a clear JSON error instead of axum's plain-text rejection.
pub(crate) struct Params<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Params(v)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    match s.engine.store_ready().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "store": s.engine.backend()})),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "store": s.engine.backend()})),
            )
        }
    }
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeRequest {
    #[serde(default)]
    actor: Option<String>,
    /// Alternatively, the public key the caller holds (the server finds its actor).
    #[serde(default)]
    key: Option<String>,
}

async fn challenge(State(s): State<AppState>, Body(req): Body<ChallengeRequest>) -> ApiResult {
    let c = match (req.actor, req.key) {
        (Some(actor), _) => s.engine.challenge(&actor).await?,
        (None, Some(key)) => s.engine.challenge_for_key(&key).await?,
        (None, None) => return Err(ApiError::bad_request("give `actor` or `key`")),
    };
    let kind = match c.kind {
        ChallengeKind::Sign { message, namespace } => {
            json!({"type": "sign", "message": message, "namespace": namespace})
        }
        ChallengeKind::Decrypt { age_file } => {
            json!({"type": "decrypt", "age_file": String::from_utf8_lossy(&age_file)})
        }
    };
    Ok(Json(
        json!({"challenge_id": c.id, "actor": c.actor, "challenge": kind, "expires_at": c.expires_at.to_string()}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    challenge_id: String,
    response: String,
}

async fn login(State(s): State<AppState>, Body(req): Body<LoginRequest>) -> ApiResult {
    let session = s.engine.login(&req.challenge_id, &req.response).await?;
    Ok(Json(json!({
        "token": breakglass_engine::expose_token(&session.token),
        "actor": session.actor,
        "expires_at": session.expires_at.to_string(),
    })))
}

async fn whoami(Caller(me): Caller) -> ApiResult {
    Ok(Json(
        json!({"name": me.name, "roles": me.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesRequest {
    files: Vec<FileBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    name: String,
    content: String,
}

fn files(req: FilesRequest) -> Vec<(String, String)> {
    req.files.into_iter().map(|f| (f.name, f.content)).collect()
}

async fn validate_procedures(
    State(s): State<AppState>,
    Caller(_me): Caller,
    Body(req): Body<FilesRequest>,
) -> ApiResult {
    let procedures = s.engine.validate_files(&files(req))?;
    Ok(Json(
        json!({"valid": true, "procedures": procedures.iter().map(|p| p.id.clone()).collect::<Vec<_>>()}),
    ))
}

async fn apply_procedures(
    State(s): State<AppState>,
    Caller(me): Caller,
    Body(req): Body<FilesRequest>,
) -> ApiResult {
    let outcomes = s.engine.apply(&me, &files(req)).await?;
    Ok(Json(json!({
        "results": outcomes.iter().map(|o| json!({"id": o.id, "change": o.change.as_str(), "version": o.version})).collect::<Vec<_>>()
    })))
}

async fn list_procedures(State(s): State<AppState>, Caller(me): Caller) -> ApiResult {
    let all = s.engine.procedures(&me).await?;
    Ok(Json(
        json!({"procedures": all.iter().map(|p| procedure_view(p, false)).collect::<Vec<_>>()}),
    ))
}

async fn show_procedure(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let p = s.engine.procedure(&me, &id).await?;
    Ok(Json(procedure_view(&p, true)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SealRequest {
    /// The secret, base64 (standard alphabet). Transported once, never stored.
    secret_b64: String,
    /// Seal the procedure's drill credential (to the drill identities) instead.
    #[serde(default)]
    drill: bool,
}

async fn seal(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<SealRequest>,
) -> ApiResult {
    let bytes = zeroize::Zeroizing::new(
        B64.decode(req.secret_b64.trim())
            .map_err(|_| ApiError::bad_request("secret_b64: not valid base64"))?,
    );
    let secret = Secret::new(bytes.to_vec());
    let summary = if req.drill {
        s.engine.seal_drill(&me, &id, secret).await?
    } else {
        s.engine.seal(&me, &id, secret).await?
    };
    Ok(Json(json!({
        "drill": req.drill,
        "seal_id": summary.seal_id,
        "procedure": summary.procedure,
        "threshold": summary.threshold,
        "custodians": summary.custodians,
        "replaces": summary.replaces,
        "cleared_taint": summary.cleared_taint,
    })))
}

async fn check_target(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let c = s.engine.check_target(&me, &id).await?;
    Ok(Json(json!({
        "procedure": c.procedure,
        "ok": c.ok,
        "checks": c.checks.iter().map(|h| json!({"name": h.name, "ok": h.ok, "detail": h.detail})).collect::<Vec<_>>(),
    })))
}

async fn discover(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let d = s.engine.discover(&me, &id).await?;
    Ok(Json(json!({
        "procedure": d.procedure,
        "flagged": d.flagged().count(),
        "unknown": d.unknown().count(),
        "accounts": d.accounts.iter().map(|a| json!({
            "name": a.name, "privileges": a.privileges, "expires": a.expires, "known": a.known, "flags": a.flags,
        })).collect::<Vec<_>>(),
    })))
}

async fn target_reports(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let reports = s.engine.target_reports(&me, Some(&id)).await?;
    Ok(Json(json!({
        "procedure": id,
        "reports": reports.iter().map(|r| json!({
            "kind": r.kind, "at": r.at.to_string(), "ok": r.ok, "detail": r.detail,
        })).collect::<Vec<_>>(),
    })))
}

async fn grant_record(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let g = s.engine.grant_record(&me, &id).await?.ok_or_else(|| {
        ApiError::from(breakglass_engine::EngineError::NotFound {
            what: "grant on a target for break",
            id: id.clone(),
        })
    })?;
    let t = |t: Option<breakglass_domain::Timestamp>| t.map(|t| t.to_string());
    Ok(Json(json!({
        "break": g.break_id,
        "procedure": g.procedure,
        "kind": g.kind,
        "handle": g.handle,
        "created_at": g.created_at.to_string(),
        "deadline": g.deadline.to_string(),
        "end_requested_at": t(g.end_requested_at),
        "end_cause": g.end_cause,
        "ended_at": t(g.ended_at),
        "end_attempts": g.end_attempts,
        "last_error": g.last_error,
    })))
}

fn readiness_view(r: &breakglass_domain::Readiness) -> Value {
    json!({
        "procedure": r.procedure,
        "verdict": r.verdict.as_str(),
        "findings": r.findings.iter().map(|f| json!({"verdict": f.verdict.as_str(), "code": f.code, "message": f.message})).collect::<Vec<_>>(),
        "second_factor": r.second_factor.as_ref().map(second_factor_view),
    })
}

pub(crate) fn second_factor_view(c: &breakglass_domain::SecondFactorCount) -> Value {
    json!({
        "custodians": c.custodians,
        "with_second_factor": c.with_second_factor,
        "totp": c.totp,
        "hardware": c.hardware,
        "required": c.required.map(|r| r.as_str()),
        "can_approve": c.can_approve,
        "missing": c.missing,
    })
}

fn totp_status_view(t: &breakglass_engine::TotpStatus) -> Value {
    let ts = |t: Option<breakglass_domain::Timestamp>| t.map(|t| t.to_string());
    json!({
        "custodian": t.custodian,
        "active": t.active,
        "created_at": t.created_at.to_string(),
        "confirmed_at": ts(t.confirmed_at),
        "failures": t.failures,
        "locked_until": ts(t.locked_until),
    })
}

async fn totp_status(State(s): State<AppState>, Caller(me): Caller) -> ApiResult {
    let all = s.engine.totp_status(&me).await?;
    Ok(Json(
        json!({"enrollments": all.iter().map(totp_status_view).collect::<Vec<_>>()}),
    ))
}

/// Starts the caller's TOTP enrolment; the only answer that carries the TOTP secret, to the
/// custodian who asked, once.
async fn totp_enroll(State(s): State<AppState>, Caller(me): Caller) -> ApiResult {
    let e = s.engine.totp_enroll(&me).await?;
    Ok(Json(json!({
        "custodian": e.custodian,
        "secret": e.secret_base32.expose_secret(),
        "otpauth_uri": e.uri.expose_secret(),
        "digits": breakglass_custody::TOTP_DIGITS,
        "period": breakglass_custody::TOTP_STEP_SECONDS,
        "algorithm": "SHA1",
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TotpCodeRequest {
    /// The current code of the authenticator app.
    code: String,
}

async fn totp_confirm(
    State(s): State<AppState>,
    Caller(me): Caller,
    Body(req): Body<TotpCodeRequest>,
) -> ApiResult {
    let code = zeroize::Zeroizing::new(req.code);
    let t = s.engine.totp_confirm(&me, &code).await?;
    Ok(Json(totp_status_view(&t)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TotpResetRequest {
    /// Whose enrolment (default: the caller's own; someone else's needs the admin role).
    #[serde(default)]
    custodian: Option<String>,
}

async fn totp_reset(
    State(s): State<AppState>,
    Caller(me): Caller,
    Body(req): Body<TotpResetRequest>,
) -> ApiResult {
    let custodian = req.custodian.unwrap_or_else(|| me.name.clone());
    s.engine.totp_reset(&me, &custodian).await?;
    Ok(Json(json!({"custodian": custodian, "removed": true})))
}

async fn readiness(State(s): State<AppState>, Caller(me): Caller) -> ApiResult {
    let all = s.engine.readiness(&me).await?;
    Ok(Json(
        json!({"procedures": all.iter().map(readiness_view).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhatIfQuery {
    /// Comma-separated names that are down.
    #[serde(default)]
    down: String,
}

async fn what_if(
    State(s): State<AppState>,
    Caller(me): Caller,
    Params(q): Params<WhatIfQuery>,
) -> ApiResult {
    let down: Vec<String> = q
        .down
        .split(',')
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .collect();
    let all = s.engine.what_if(&me, &down).await?;
    Ok(Json(
        json!({"down": down, "procedures": all.iter().map(what_if_view).collect::<Vec<_>>()}),
    ))
}

fn what_if_view(w: &breakglass_domain::WhatIf) -> Value {
    json!({
        "procedure": w.procedure,
        "can_open": w.can_open,
        "blockers": w.blockers,
        "custodians": w.custodians,
        "channels": w.channels,
        "warnings": w.warnings,
        "latest_drill_time_to_access_ms": w.latest_drills_ms.first(),
        "latest_drills_time_to_access_ms": w.latest_drills_ms,
    })
}

fn attestation_view(a: &breakglass_engine::ports::AttestationRecord) -> Value {
    let t = |t: Option<breakglass_domain::Timestamp>| t.map(|t| t.to_string());
    json!({
        "custodian": a.custodian,
        "key": a.key_fingerprint,
        "attested_at": t(a.attested_at),
        "lost_at": t(a.lost_at),
        "lost_reason": a.lost_reason,
    })
}

/// A person of the inventory as the API shows it (converted by hand: no engine type is
/// `Serialize`).
pub(crate) fn person_view(p: &breakglass_domain::Person) -> Value {
    let t = |t: Option<breakglass_domain::Timestamp>| t.map(|t| t.to_string());
    json!({
        "name": p.name,
        "contact": p.contact(),
        "contacts": p.contacts.iter().map(|c| json!({
            "contact": c.contact,
            "procedures": c.procedures,
        })).collect::<Vec<_>>(),
        "single_point_of_failure": p.single_point_of_failure(),
        "critical_for": p.critical(),
        "holdings": p.holdings.iter().map(|h| json!({
            "procedure": h.procedure,
            "seal_id": h.seal_id,
            "quorum": h.quorum,
            "custodians": h.custodians,
            "others_available": h.others_available,
            "reachable_without": h.reachable_without,
            "custody": if h.location.is_some() { "external" } else { "sealed" },
            "location": h.location,
            "attested_at": t(h.attested_at),
        })).collect::<Vec<_>>(),
        "keys": p.keys.iter().map(|k| json!({
            "fingerprint": k.fingerprint,
            "kind": k.kind,
            "procedures": k.procedures,
            "attested_at": t(k.attested_at),
            "attestation_overdue": k.overdue,
            "lost_at": t(k.lost_at),
            "lost_reason": k.lost_reason,
        })).collect::<Vec<_>>(),
        "last_drill": p.last_drill.as_ref().map(|d| json!({
            "drill": d.drill,
            "procedure": d.procedure,
            "mode": d.mode,
            "outcome": d.outcome,
            "at": d.at.to_string(),
        })),
        "warnings": p.warnings.iter().map(|w| json!({
            "code": w.code,
            "message": w.message,
        })).collect::<Vec<_>>(),
    })
}

async fn list_people(State(s): State<AppState>, Caller(me): Caller) -> ApiResult {
    let all = s.engine.people(&me).await?;
    Ok(Json(
        json!({"people": all.iter().map(person_view).collect::<Vec<_>>()}),
    ))
}

async fn show_person(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> ApiResult {
    Ok(Json(person_view(&s.engine.person(&me, &name).await?)))
}

async fn list_attestations(State(s): State<AppState>, Caller(me): Caller) -> ApiResult {
    let all = s.engine.attestations(&me).await?;
    Ok(Json(
        json!({"attestations": all.iter().map(attestation_view).collect::<Vec<_>>()}),
    ))
}

async fn attestation_challenges(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> ApiResult {
    let all = s.engine.attestation_challenges(&me, &name).await?;
    Ok(Json(json!({"challenges": all.iter().map(|c| json!({
        "id": c.id,
        "custodian": c.custodian,
        "key": c.key_fingerprint,
        "procedures": c.procedures,
        "age_file": String::from_utf8_lossy(&c.age_file),
        "expires_at": c.expires_at.to_string(),
    })).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttestRequest {
    /// The decrypted challenge.
    response: String,
}

async fn answer_attestation(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<AttestRequest>,
) -> ApiResult {
    let r = s.engine.attest(&me, &id, &req.response).await?;
    Ok(Json(attestation_view(&r)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LostRequest {
    /// Why the key is considered lost.
    reason: String,
}

async fn declare_lost(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
    Body(req): Body<LostRequest>,
) -> ApiResult {
    let all = s.engine.declare_key_lost(&me, &name, &req.reason).await?;
    Ok(Json(
        json!({"attestations": all.iter().map(attestation_view).collect::<Vec<_>>()}),
    ))
}

/// Opening a break on an external-custody procedure.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustodyOpenRequest {
    /// Why.
    reason: String,
    /// The incident ticket.
    ticket: String,
}

/// Confirming a step.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustodyNoteRequest {
    /// What the person noted (no secrets).
    #[serde(default)]
    note: String,
}

/// An attestation or rotation by a holder.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustodyRecordRequest {
    /// The holder it is about (default: the caller; an admin may name a holder).
    #[serde(default)]
    holder: Option<String>,
    /// What they saw or did (no secrets).
    note: String,
}

/// Stopping a run.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustodyAbortRequest {
    /// Why.
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRuns {
    #[serde(default)]
    procedure: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

async fn custody_status(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let status = s.engine.custody_status(&me, &id).await?;
    Ok(Json(crate::views::custody_status_view(
        &status,
        s.engine.now(),
        s.engine.config().attestation_max_age,
    )))
}

async fn open_custody_break(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<CustodyOpenRequest>,
) -> ApiResult {
    let run = s
        .engine
        .open_external_break(&me, &id, &req.reason, &req.ticket)
        .await?;
    Ok(Json(crate::views::run_view(&run)))
}

async fn attest_custody(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<CustodyRecordRequest>,
) -> ApiResult {
    let r = s
        .engine
        .attest_custody(&me, &id, req.holder.as_deref(), &req.note)
        .await?;
    Ok(Json(crate::views::custody_record_view(&r)))
}

async fn custody_rotated(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<CustodyRecordRequest>,
) -> ApiResult {
    let r = s
        .engine
        .record_custody_rotation(&me, &id, req.holder.as_deref(), &req.note)
        .await?;
    Ok(Json(crate::views::custody_record_view(&r)))
}

async fn list_custody_runs(
    State(s): State<AppState>,
    Caller(me): Caller,
    Params(q): Params<ListRuns>,
) -> ApiResult {
    let all = s
        .engine
        .external_runs(
            &me,
            q.procedure.as_deref(),
            q.limit.unwrap_or(50).clamp(1, 1000),
        )
        .await?;
    Ok(Json(
        json!({"runs": all.iter().map(crate::views::run_view).collect::<Vec<_>>()}),
    ))
}

async fn show_custody_run(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(crate::views::run_view(
        &s.engine.external_run(&me, &id).await?,
    )))
}

async fn confirm_custody_step(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path((id, step)): Path<(String, String)>,
    Body(req): Body<CustodyNoteRequest>,
) -> ApiResult {
    let step: usize = step.parse().map_err(|_| {
        ApiError::bad_request(format!("step: `{step}` is not a step number (1, 2, …)"))
    })?;
    let run = s
        .engine
        .confirm_external_step(&me, &id, step, &req.note)
        .await?;
    Ok(Json(crate::views::run_view(&run)))
}

async fn abort_custody_run(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<CustodyAbortRequest>,
) -> ApiResult {
    let run = s.engine.abort_external_run(&me, &id, &req.reason).await?;
    Ok(Json(crate::views::run_view(&run)))
}

async fn list_actors(State(s): State<AppState>, Caller(me): Caller) -> ApiResult {
    let all = s.engine.actors(&me).await?;
    Ok(Json(
        json!({"actors": all.iter().map(actor_view).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollRequest {
    name: String,
    roles: Vec<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    contact: String,
    #[serde(default)]
    token: bool,
}

async fn enroll(
    State(s): State<AppState>,
    Caller(me): Caller,
    Body(req): Body<EnrollRequest>,
) -> ApiResult {
    let roles = req
        .roles
        .iter()
        .map(|r| {
            Role::parse(r).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "roles: unknown role `{r}` (admin, requester, custodian, auditor)"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let token = s
        .engine
        .enroll(
            &me,
            &req.name,
            &roles,
            req.key.as_deref(),
            &req.contact,
            req.token,
        )
        .await?;
    Ok(Json(
        json!({"name": req.name, "token": token.as_ref().map(breakglass_engine::expose_token)}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenRequest {
    procedure: String,
    reason: String,
    ticket: String,
    /// e.g. `15m`; defaults to the procedure's max_grant.
    #[serde(default)]
    duration: Option<String>,
}

async fn open_break(
    State(s): State<AppState>,
    Caller(me): Caller,
    Body(req): Body<OpenRequest>,
) -> ApiResult {
    let duration: Option<Duration> = req
        .duration
        .as_deref()
        .map(breakglass_domain::parse_duration)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("duration: {e}")))?;
    let r = s
        .engine
        .open_break(&me, &req.procedure, &req.reason, &req.ticket, duration)
        .await?;
    Ok(Json(break_view(&breakglass_domain::Break::Requested(r))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrillStart {
    /// `automated` (default) or `live`.
    #[serde(default)]
    mode: Option<String>,
    /// Failures to inject: `idp-down`, `channel-down:NAME`, `custodian-lost:NAME`,
    /// `target-slow[:DELAY]`, `target-down`.
    #[serde(default)]
    inject: Vec<String>,
    /// Grant length, e.g. `2s`.
    #[serde(default)]
    grant: Option<String>,
    /// Acknowledgement window of the drill's alerts, e.g. `1s`.
    #[serde(default)]
    ack_within: Option<String>,
    /// Time-to-access budget, e.g. `30s`.
    #[serde(default)]
    max_time_to_access: Option<String>,
    /// Longest wait for each machine step, e.g. `10s`.
    #[serde(default)]
    step_timeout: Option<String>,
    /// Answer only when the drill finished (default: answer at once with `running`).
    #[serde(default)]
    wait: bool,
}

fn optional_duration(field: &str, v: Option<&str>) -> Result<Option<Duration>, ApiError> {
    v.map(breakglass_domain::parse_duration)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

async fn start_drill(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<DrillStart>,
) -> ApiResult {
    let mode = breakglass_domain::DrillMode::parse(req.mode.as_deref().unwrap_or("automated"))
        .map_err(|e| ApiError::bad_request(format!("mode: {e}")))?;
    let injections = req
        .inject
        .iter()
        .map(|i| breakglass_domain::Injection::parse(i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad_request(format!("inject: {e}")))?;
    let request = breakglass_engine::DrillRequest {
        mode,
        injections,
        grant: optional_duration("grant", req.grant.as_deref())?,
        ack_within: optional_duration("ack_within", req.ack_within.as_deref())?,
        max_time_to_access: optional_duration(
            "max_time_to_access",
            req.max_time_to_access.as_deref(),
        )?,
        step_timeout: optional_duration("step_timeout", req.step_timeout.as_deref())?,
    };
    let d = if req.wait {
        s.engine.run_drill(&me, &id, request).await?
    } else {
        s.engine.start_drill(&me, &id, request).await?
    };
    Ok(Json(crate::views::drill(&d)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListDrills {
    #[serde(default)]
    procedure: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

async fn list_drills(
    State(s): State<AppState>,
    Caller(me): Caller,
    Params(q): Params<ListDrills>,
) -> ApiResult {
    let all = s
        .engine
        .drills(
            &me,
            q.procedure.as_deref(),
            q.limit.unwrap_or(50).clamp(1, 1000),
        )
        .await?;
    Ok(Json(
        json!({"drills": all.iter().map(crate::views::drill).collect::<Vec<_>>()}),
    ))
}

async fn show_drill(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(crate::views::drill(&s.engine.drill(&me, &id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    /// `json` (default), `md` or `html`.
    #[serde(default)]
    format: Option<String>,
}

async fn drill_report(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Params(q): Params<ReportQuery>,
) -> Result<axum::response::Response, ApiError> {
    let view = crate::views::drill(&s.engine.drill(&me, &id).await?);
    Ok(match q.format.as_deref().unwrap_or("json") {
        "json" => Json(view).into_response(),
        "md" | "markdown" => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            crate::drill_report::markdown(&view),
        )
            .into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            crate::drill_report::html(&view),
        )
            .into_response(),
        other => {
            return Err(ApiError::bad_request(format!(
                "format: `{other}` is not json, md or html"
            )));
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListBreaks {
    #[serde(default)]
    procedure: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

async fn list_breaks(
    State(s): State<AppState>,
    Caller(me): Caller,
    Params(q): Params<ListBreaks>,
) -> ApiResult {
    let all = s
        .engine
        .breaks(
            &me,
            q.procedure.as_deref(),
            q.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    Ok(Json(
        json!({"breaks": all.iter().map(break_view).collect::<Vec<_>>()}),
    ))
}

async fn show_break(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(break_view(&s.engine.break_(&me, &id).await?)))
}

async fn share(State(s): State<AppState>, Caller(me): Caller, Path(id): Path<String>) -> ApiResult {
    let sh = s.engine.share_for(&me, &id).await?;
    Ok(Json(json!({
        "break": sh.break_id,
        "procedure": sh.procedure,
        "seal_id": sh.seal_id,
        "custodian": sh.custodian,
        "age_file": String::from_utf8_lossy(&sh.age_file),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveRequest {
    /// The decrypted share, as the text inside the custodian's age file.
    share: String,
    /// The custodian's current TOTP code, when they enrolled TOTP or the procedure requires it.
    #[serde(default)]
    totp: Option<String>,
}

/// Marks an approval forwarded by another server (it is never forwarded twice).
const FORWARDED: &str = "x-breakglass-forwarded";

async fn approve(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Body(req): Body<ApproveRequest>,
) -> Result<axum::response::Response, ApiError> {
    let share = zeroize::Zeroizing::new(req.share);
    let totp = req.totp.map(zeroize::Zeroizing::new);
    let outcome = match s
        .engine
        .approve_with_totp(&me, &id, &share, totp.as_deref().map(String::as_str))
        .await
    {
        Ok(o) => o,
        Err(breakglass_engine::EngineError::Elsewhere { url, .. })
            if !headers.contains_key(FORWARDED) =>
        {
            return forward_to_holder(
                &s,
                &url,
                &id,
                "approvals",
                "shares are",
                &headers,
                json!({ "share": &*share, "totp": totp.as_deref() }),
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(
        json!({"approvals": outcome.approvals, "quorum": outcome.quorum, "break": break_view(&outcome.state)}),
    )
    .into_response())
}

/// Sends a request about break `id` to the server holding what it needs in memory (several
/// servers on one database): an approval to the server holding the break's other shares, a
/// gateway token request to the server holding its gateway login. With the caller's own
/// credentials; returns that server's answer as is. `held` says what that server holds.
async fn forward_to_holder(
    s: &AppState,
    url: &str,
    id: &str,
    action: &str,
    held: &str,
    headers: &axum::http::HeaderMap,
    body: Value,
) -> Result<axum::response::Response, ApiError> {
    let (status, body) = forward(
        s,
        url,
        id,
        action,
        held,
        headers.get(header::AUTHORIZATION),
        body,
    )
    .await?;
    Ok((status, Json(body)).into_response())
}

/// [`forward_to_holder`]'s request: that server's status and JSON answer. `auth`: the
/// `Authorization` header to send (the caller's own).
pub(crate) async fn forward(
    s: &AppState,
    url: &str,
    id: &str,
    action: &str,
    held: &str,
    auth: Option<&axum::http::HeaderValue>,
    body: Value,
) -> Result<(StatusCode, Value), ApiError> {
    let unavailable = |why: String| {
        ApiError::from(breakglass_engine::EngineError::Conflict(format!(
            "break {id}'s {held} held by the server at {url}, which did not answer: {why}"
        )))
    };
    let mut request = s
        .peers
        // `id` names a break with a share holder row, so it is a real break id (`brk_` + hex).
        .post(format!(
            "{}/api/breaks/{id}/{action}",
            url.trim_end_matches('/')
        ))
        .header(FORWARDED, s.engine.instance())
        .json(&body);
    if let Some(auth) = auth {
        request = request.header(header::AUTHORIZATION, auth.clone());
    }
    let answer = request
        .send()
        .await
        .map_err(|e| unavailable(e.without_url().to_string()))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body: Value = answer
        .json()
        .await
        .map_err(|e| unavailable(e.without_url().to_string()))?;
    Ok((status, body))
}

async fn reveal(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let g = s.engine.reveal(&me, &id).await?;
    Ok(Json(
        json!({"break": g.break_id, "deadline": g.deadline.to_string(), "age_file": String::from_utf8_lossy(&g.age_file)}),
    ))
}

async fn gateway_token(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    let g = match s.engine.gateway_token(&me, &id).await {
        Ok(g) => g,
        Err(breakglass_engine::EngineError::Elsewhere { url, .. })
            if !headers.contains_key(FORWARDED) =>
        {
            return forward_to_holder(
                &s,
                &url,
                &id,
                "token",
                "gateway login is",
                &headers,
                json!({}),
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(
        json!({"break": g.break_id, "deadline": g.deadline.to_string(), "age_file": String::from_utf8_lossy(&g.age_file)}),
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceQuery {
    /// Statements of the gateway recording the pack holds at most (default
    /// [`breakglass_engine::PACK_STATEMENTS`]); the sessions over it are listed without them.
    #[serde(default)]
    max_statements: Option<u64>,
}

async fn evidence(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Params(q): Params<EvidenceQuery>,
) -> ApiResult {
    let page = s.engine.evidence(&me, &id, q.max_statements).await?;
    // The page is moved in: `json!` would copy it.
    let mut body = json!({"break": id});
    body["page"] = Value::String(page);
    Ok(Json(body))
}

async fn recovery_kit(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let kit = s.engine.recovery_kit(&me, &id).await?;
    Ok(Json(json!({
        "procedure": kit.procedure,
        "seal_id": kit.seal_id,
        "kit_id": kit.kit_id,
        "kit": kit.text,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRequest {
    /// The recovery spool (JSON Lines) exactly as `recover open` wrote it.
    spool: String,
}

async fn audit_import(
    State(s): State<AppState>,
    Caller(me): Caller,
    Body(req): Body<ImportRequest>,
) -> ApiResult {
    let r = s.engine.import_spool(&me, &req.spool).await?;
    Ok(Json(json!({
        "procedure": r.procedure,
        "kit_id": r.kit_id,
        "seal_id": r.seal_id,
        "spool": r.spool_head,
        "lines": r.lines,
        "recoverer": r.recoverer,
        "signer_actor": r.signer_actor,
        "signer_key": r.signer_fingerprint,
        "custodians": r.custodians,
        "tainted": true,
    })))
}

/// Statements per session in a page when the caller names no `limit`.
const STATEMENTS_PER_PAGE: usize = 1_000;
/// The most statements a page holds.
const MAX_STATEMENTS_PER_PAGE: usize = 10_000;
/// Statements of each session the session list holds unless told, and at most: it holds every
/// session of the break (a list of 151 sessions with 1,000 each held ~870 MB while built).
const LISTED_PER_SESSION: usize = 100;
const MAX_LISTED_PER_SESSION: usize = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionsQuery {
    /// Statements of each session to include (from its first); 0 for the sessions only.
    #[serde(default)]
    limit: Option<usize>,
    /// Only this session (404 when the break has none of that name).
    #[serde(default)]
    session: Option<String>,
    /// Only the sessions that started after this audit entry (a follower's last
    /// `started_seq`): the recordings of the others are not read.
    #[serde(default)]
    started_after: Option<u64>,
}

/// A break's gateway sessions, with the first page of each one's statements (their next
/// pages: [`session_page`]).
async fn sessions(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Params(q): Params<SessionsQuery>,
) -> ApiResult {
    let limit = q
        .limit
        .unwrap_or(LISTED_PER_SESSION)
        .min(MAX_LISTED_PER_SESSION);
    let after = q.started_after.unwrap_or(0);
    let sessions = match &q.session {
        Some(only) => {
            let mut one = s.engine.recorded_sessions(&me, &id, Some(only)).await?;
            if one.is_empty() {
                return Err(ApiError::from(breakglass_engine::EngineError::NotFound {
                    what: "gateway session",
                    id: format!("{only}` of break `{id}"),
                }));
            }
            one.retain(|x| x.started_seq > after);
            one
        }
        None => s.engine.recorded_sessions_after(&me, &id, after).await?,
    };
    let mut listed = Vec::with_capacity(sessions.len());
    let mut statements = Vec::new();
    for x in &sessions {
        let page = if limit == 0 {
            None
        } else {
            Some(
                s.engine
                    .session_statements(&me, &id, &x.session_id, 0, limit)
                    .await?,
            )
        };
        listed.push(json!({
            "session": x.session_id,
            "peer": x.peer,
            "started_at": x.started_at.to_string(),
            "started_seq": x.started_seq,
            "ended_at": x.ended.as_ref().map(|e| e.at.to_string()),
            "end": x.ended.as_ref().map(|e| e.end.clone()),
            "statements": x.ended.as_ref().map(|e| e.statements),
            "recorded": x.ended.as_ref().map(|e| e.recorded),
            "recording_intact": x.ended.as_ref().map(|e| e.intact),
            "audit_seq": x.ended.as_ref().map(|e| e.audit_seq),
            "next_seq": match &page {
                Some(p) => p.next_seq,
                None => Some(0),
            },
        }));
        if let Some(p) = page {
            statements.extend(p.statements.iter().map(statement_view));
        }
    }
    Ok(Json(json!({
        "break": id,
        "sessions": listed,
        "statements": statements,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionPageQuery {
    /// The first statement's position (`next_seq` of the previous page).
    #[serde(default)]
    from_seq: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

/// A page of one gateway session's statements.
async fn session_page(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path((id, session)): Path<(String, String)>,
    Params(q): Params<SessionPageQuery>,
) -> ApiResult {
    let page = s
        .engine
        .session_statements(
            &me,
            &id,
            &session,
            q.from_seq.unwrap_or(0),
            q.limit
                .unwrap_or(STATEMENTS_PER_PAGE)
                .clamp(1, MAX_STATEMENTS_PER_PAGE),
        )
        .await?;
    // On the last page, whether more can still come (a live session), for followers.
    let ended = match page.next_seq {
        Some(_) => None,
        None => Some(
            s.engine
                .gateway_session_has_ended(&me, &id, &session)
                .await?,
        ),
    };
    Ok(Json(json!({
        "break": id,
        "session": session,
        "statements": page.statements.iter().map(statement_view).collect::<Vec<_>>(),
        "next_seq": page.next_seq,
        "ended": ended,
    })))
}

/// The gateway sessions open now, across breaks.
async fn open_sessions(State(s): State<AppState>, Caller(me): Caller) -> ApiResult {
    let open = s.engine.open_gateway_sessions(&me).await?;
    Ok(Json(json!({"sessions": open.iter().map(|o| json!({
        "break": o.break_id,
        "procedure": o.procedure,
        "requester": o.requester,
        "session": o.session_id,
        "peer": o.peer,
        "started_at": o.started_at.to_string(),
        "started_seq": o.started_seq,
        "here": o.here,
    })).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TerminateRequest {
    /// Why (recorded in the audit log and sent to the client).
    reason: String,
}

/// Terminates one open gateway session; forwarded to the server holding the break's gateway
/// login when that is another one.
async fn terminate_session(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path((id, session)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    Body(req): Body<TerminateRequest>,
) -> Result<axum::response::Response, ApiError> {
    let t = match s
        .engine
        .terminate_gateway_session(&me, &id, &session, &req.reason)
        .await
    {
        Ok(t) => t,
        Err(breakglass_engine::EngineError::Elsewhere { url, .. })
            if !headers.contains_key(FORWARDED) =>
        {
            return forward_to_holder(
                &s,
                &url,
                &id,
                // Elsewhere only for a session whose start is audited: a real session id
                // (`brk_…-sN`), nothing to escape.
                &format!("sessions/{session}/terminate"),
                "gateway sessions are",
                &headers,
                json!({ "reason": req.reason }),
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(json!({
        "break": id,
        "session": session,
        "terminated_by": t.by,
        "reason": t.reason,
    }))
    .into_response())
}

/// A recorded statement, for the API.
fn statement_view(x: &StatementRecord) -> serde_json::Value {
    json!({
        "session": x.session_id,
        "seq": x.seq,
        "at": x.started_at.to_string(),
        "duration_us": x.duration_us,
        "protocol": x.protocol,
        "statement": x.statement,
        "params": x.params,
        "data": x.data,
        "command": x.command,
        "rows": x.rows,
        "error": x.error,
        "refused": x.refused,
    })
}

async fn close(State(s): State<AppState>, Caller(me): Caller, Path(id): Path<String>) -> ApiResult {
    Ok(Json(break_view(&s.engine.close(&me, &id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    limit: Option<i64>,
}

async fn audit_entries(
    State(s): State<AppState>,
    Caller(me): Caller,
    Params(q): Params<AuditQuery>,
) -> ApiResult {
    let entries = s
        .engine
        .audit_entries(&me, q.from.unwrap_or(1).max(1), q.limit.unwrap_or(100))
        .await?;
    Ok(Json(
        json!({"entries": entries.iter().map(entry_view).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyQuery {
    /// Also compare with what this sink holds.
    #[serde(default)]
    against: Option<String>,
    /// Verify signatures against this trusted key (`ed25519:…`) instead of the server's own.
    #[serde(default)]
    pubkey: Option<String>,
}

async fn audit_verify(
    State(s): State<AppState>,
    Caller(me): Caller,
    Params(q): Params<VerifyQuery>,
) -> ApiResult {
    let pinned = q
        .pubkey
        .as_deref()
        .map(str::parse::<breakglass_audit::AuditPublicKey>)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("pubkey: {e}")))?;
    let mut v = match s.engine.verify_audit_pinned(&me, pinned).await? {
        ChainVerdict::Intact(r) => json!({
            "intact": true,
            "entries": r.entries,
            "checkpoints": r.checkpoints,
            "latest_checkpoint": r.latest_checkpoint,
            "keys": r.keys,
            "head": r.head.map(|h| json!({"seq": h.seq, "hash": h.hash.to_hex()})),
            "findings": [],
        }),
        ChainVerdict::Broken(e) => {
            json!({"intact": false, "error": e.to_string(), "findings": [{"kind": "local", "message": e.to_string()}]})
        }
    };
    if let Some(name) = q.against {
        let divergences = s.engine.verify_against(&me, &name).await?;
        v["against"] = Value::String(name);
        if !divergences.is_empty() {
            v["intact"] = Value::Bool(false);
        }
        let list = v["findings"]
            .as_array_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        v["findings"] = Value::Array(
            list.into_iter()
                .chain(
                    divergences
                        .iter()
                        .map(|d| json!({"kind": divergence_kind(d), "message": d.to_string()})),
                )
                .collect(),
        );
    }
    Ok(Json(v))
}

fn divergence_kind(d: &breakglass_audit::Divergence) -> &'static str {
    use breakglass_audit::Divergence as D;
    match d {
        D::LocalTruncated { .. } => "local_truncated",
        D::LocalEdited { .. } => "local_edited",
        D::LocalDeleted { .. } => "local_deleted",
        D::Forked { .. } => "forked",
        D::SinkBehind { .. } => "sink_behind",
        D::SinkMissing { .. } => "sink_missing",
        D::LocalCheckpointMissing { .. } => "local_checkpoint_missing",
    }
}

async fn audit_pubkey(State(s): State<AppState>) -> ApiResult {
    let key = s
        .engine
        .audit_public_key()
        .ok_or_else(|| ApiError::unauthenticated("no audit key installed"))?;
    Ok(Json(
        json!({"public_key": key.to_string(), "key_id": key.key_id()}),
    ))
}

async fn audit_keys(State(s): State<AppState>, Caller(me): Caller) -> ApiResult {
    let keys = s.engine.audit_keys(&me).await?;
    Ok(Json(
        json!({"keys": keys.iter().map(|(id, k, seq)| json!({"key_id": id, "public_key": k, "announced_at_seq": seq})).collect::<Vec<_>>()}),
    ))
}

async fn audit_rotate_key(State(s): State<AppState>, Caller(me): Caller) -> ApiResult {
    let (old, new) = crate::audit_key::rotate(&s.data_dir, &s.engine, &me)
        .await
        .map_err(|e| match e.downcast::<breakglass_engine::EngineError>() {
            Ok(engine) => ApiError::from(engine),
            Err(other) => {
                tracing::error!(error = %other, "audit key rotation failed");
                ApiError::from(breakglass_engine::EngineError::Conflict(
                    "audit key rotation failed; see the server log".into(),
                ))
            }
        })?;
    let key = s.engine.audit_public_key().map(|k| k.to_string());
    Ok(Json(
        json!({"old_key_id": old, "new_key_id": new, "public_key": key}),
    ))
}

async fn audit_checkpoint(State(s): State<AppState>, Caller(me): Caller) -> ApiResult {
    me.may(breakglass_domain::Action::ReadAudit)
        .map_err(breakglass_engine::EngineError::from)?;
    let seq = s.engine.checkpoint_now().await?;
    Ok(Json(json!({"checkpoint_seq": seq})))
}

async fn audit_sinks(State(s): State<AppState>, Caller(me): Caller) -> ApiResult {
    me.may(breakglass_domain::Action::ReadAudit)
        .map_err(breakglass_engine::EngineError::from)?;
    let lag = s.engine.outbox_lag().await?;
    let sinks: Vec<Value> = s
        .engine
        .sink_names()
        .into_iter()
        .map(|name| {
            let dest = format!("sink:{name}");
            let l = lag.iter().find(|l| l.destination == dest);
            json!({"name": name, "pending": l.map_or(0, |l| l.pending), "oldest_pending_ms": l.and_then(|l| l.oldest_ms)})
        })
        .collect();
    Ok(Json(json!({"sinks": sinks})))
}

/// Prometheus text exposition of the outbox lag per destination.
async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let lag = s.engine.outbox_lag().await?;
    let mut out = String::from(
        "# HELP breakglass_outbox_pending Records waiting for delivery, per destination.\n# TYPE breakglass_outbox_pending gauge\n",
    );
    let mut names: Vec<String> = s
        .engine
        .sink_names()
        .into_iter()
        .map(|n| format!("sink:{n}"))
        .collect();
    names.extend(lag.iter().map(|l| l.destination.clone()));
    names.sort();
    names.dedup();
    for d in &names {
        let n = lag
            .iter()
            .find(|l| &l.destination == d)
            .map_or(0, |l| l.pending);
        out.push_str(&format!(
            "breakglass_outbox_pending{{destination=\"{d}\"}} {n}\n"
        ));
    }
    out.push_str("# HELP breakglass_outbox_oldest_pending_seconds Age of the oldest waiting record, per destination.\n# TYPE breakglass_outbox_oldest_pending_seconds gauge\n");
    for d in &names {
        let age = lag
            .iter()
            .find(|l| &l.destination == d)
            .and_then(|l| l.oldest_ms)
            .unwrap_or(0);
        out.push_str(&format!(
            "breakglass_outbox_oldest_pending_seconds{{destination=\"{d}\"}} {:.3}\n",
            age as f64 / 1000.0
        ));
    }
    out.push_str("# HELP breakglass_procedure_readiness 1 for each procedure's current verdict (ready, degraded, broken).\n# TYPE breakglass_procedure_readiness gauge\n");
    for r in s.engine.readiness_all().await? {
        for v in ["ready", "degraded", "broken"] {
            out.push_str(&format!(
                "breakglass_procedure_readiness{{procedure=\"{}\",verdict=\"{v}\"}} {}\n",
                r.procedure,
                u8::from(r.verdict.as_str() == v)
            ));
        }
    }
    out.push_str("# HELP breakglass_drill_last_passed 1 when the procedure's latest drill passed.\n# TYPE breakglass_drill_last_passed gauge\n");
    let drills = s.engine.latest_drills_all().await?;
    for d in &drills {
        out.push_str(&format!(
            "breakglass_drill_last_passed{{procedure=\"{}\"}} {}\n",
            d.procedure,
            u8::from(d.outcome == "passed")
        ));
    }
    out.push_str("# HELP breakglass_drill_last_time_to_access_seconds Request to first login in the latest drill.\n# TYPE breakglass_drill_last_time_to_access_seconds gauge\n");
    for d in &drills {
        if let Some(ms) = d.time_to_access_ms {
            out.push_str(&format!(
                "breakglass_drill_last_time_to_access_seconds{{procedure=\"{}\"}} {:.3}\n",
                d.procedure,
                ms as f64 / 1000.0
            ));
        }
    }
    let g = s.engine.gateway_counters();
    for (name, help, value) in [
        (
            "breakglass_gateway_connections_total",
            "Connections the PostgreSQL gateway accepted.",
            &g.connections,
        ),
        (
            "breakglass_gateway_sessions_admitted_total",
            "Gateway sessions admitted with a valid token.",
            &g.admitted,
        ),
        (
            "breakglass_gateway_clients_refused_total",
            "Gateway clients refused (wrong or used-up token, break not granted…).",
            &g.refused,
        ),
        (
            "breakglass_gateway_statements_total",
            "Statements the gateway recorded.",
            &g.statements,
        ),
        (
            "breakglass_gateway_protocol_errors_total",
            "Gateway connections closed for a malformed message.",
            &g.protocol_errors,
        ),
        (
            "breakglass_gateway_server_connections_reused_total",
            "Gateway sessions served by a kept server connection.",
            &g.reused,
        ),
        (
            "breakglass_gateway_logins_throttled_total",
            "Gateway logins refused before their token was read: their address failed too many logins.",
            &g.logins_throttled,
        ),
        (
            "breakglass_gateway_relayed_total",
            "Gateway clients relayed to the server holding their break's login.",
            &g.relayed,
        ),
        (
            "breakglass_gateway_statements_refused_total",
            "Statements the gateway refused (the procedures' refuse patterns).",
            &g.statements_refused,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            value.load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
    let relays = g.relay_connections();
    if !relays.is_empty() {
        out.push_str("# HELP breakglass_gateway_relay_connections Connections open on each of the gateway's relay threads (each takes 8 before the next gets any).\n# TYPE breakglass_gateway_relay_connections gauge\n");
        for (thread, n) in relays.iter().enumerate() {
            out.push_str(&format!(
                "breakglass_gateway_relay_connections{{thread=\"{thread}\"}} {n}\n"
            ));
        }
    }
    out.push_str("# HELP breakglass_gateway_sessions_ended_total Gateway sessions ended, by how (client, server, deadline, closed, idle, terminated, protocol_error, error).\n# TYPE breakglass_gateway_sessions_ended_total counter\n");
    for (end, n) in g.ended.all() {
        out.push_str(&format!(
            "breakglass_gateway_sessions_ended_total{{end=\"{end}\"}} {n}\n"
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

async fn audit_export(
    State(s): State<AppState>,
    Caller(me): Caller,
) -> Result<impl IntoResponse, ApiError> {
    let records = s.engine.audit_records(&me).await?;
    let mut out = String::new();
    for r in &records {
        out.push_str(&r.to_line());
        out.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    /// The token from the alert's link.
    token: String,
    /// Who acknowledges (free text: a name or handle).
    #[serde(default)]
    by: String,
}

async fn ack(State(s): State<AppState>, Body(req): Body<AckRequest>) -> ApiResult {
    let a = s.engine.acknowledge(&req.token, &req.by).await?;
    Ok(Json(
        json!({"break": a.break_id, "procedure": a.procedure, "time_to_ack_ms": a.time_to_ack_ms}),
    ))
}

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> axum::response::Html<String> {
    axum::response::Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\"><title>{t}</title></head><body style=\"font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem\"><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    ))
}

/// The link in an alert: a page whose button acknowledges (a GET never changes state, so link
/// previews and scanners cannot acknowledge by accident).
async fn ack_page(Path(token): Path<String>) -> axum::response::Html<String> {
    page(
        "Acknowledge break-glass alert",
        &format!(
            "<p>Acknowledging tells breakglass a human has seen this break. It stops escalation and records the time to acknowledge.</p><form method=post action=\"/ack/{}\"><label>Your name <input name=by autocomplete=name></label> <button type=submit>Acknowledge</button></form>",
            esc(&token)
        ),
    )
}

#[derive(Deserialize)]
struct AckForm {
    #[serde(default)]
    by: String,
}

async fn ack_form(
    State(s): State<AppState>,
    Path(token): Path<String>,
    axum::extract::Form(form): axum::extract::Form<AckForm>,
) -> impl IntoResponse {
    match s.engine.acknowledge(&token, &form.by).await {
        Ok(a) => (
            StatusCode::OK,
            page(
                "Acknowledged",
                &format!(
                    "<p>Break <code>{}</code> on <code>{}</code> acknowledged {} s after it was requested.</p>",
                    esc(&a.break_id),
                    esc(&a.procedure),
                    a.time_to_ack_ms / 1000
                ),
            ),
        ),
        Err(e) => {
            let status = ApiError::from(e);
            let (code, msg) = status.parts();
            (
                code,
                page("Not acknowledged", &format!("<p>{}</p>", esc(&msg))),
            )
        }
    }
}

async fn list_channels(State(s): State<AppState>, Caller(me): Caller) -> ApiResult {
    let channels = s.engine.channels(&me).await?;
    Ok(Json(json!({"channels": channels.iter().map(|c| json!({
        "name": c.name,
        "kind": c.kind,
        "pending": c.pending,
        "last_test": c.last_test.as_ref().map(|t| json!({"at": t.at.to_string(), "ok": t.ok, "status": t.status, "latency_ms": t.latency_ms, "error": t.error})),
    })).collect::<Vec<_>>()})))
}

async fn test_channel(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
) -> ApiResult {
    let t = s.engine.test_channel(&me, &name).await?;
    Ok(Json(
        json!({"channel": t.channel, "at": t.at.to_string(), "ok": t.ok, "status": t.status, "latency_ms": t.latency_ms, "error": t.error}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttemptsQuery {
    #[serde(default)]
    limit: Option<i64>,
}

async fn channel_attempts(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(name): Path<String>,
    Params(q): Params<AttemptsQuery>,
) -> ApiResult {
    let attempts = s
        .engine
        .delivery_attempts(&me, Some(&name), q.limit.unwrap_or(50))
        .await?;
    Ok(Json(json!({"attempts": attempts.iter().map(|a| json!({
        "outbox_id": a.outbox_id,
        "at": a.at.to_string(),
        "ok": a.ok,
        "status": a.status,
        "latency_ms": a.latency_ms,
        "error": a.error,
    })).collect::<Vec<_>>()})))
}

/// Decodes `bytes` as each JSON request body the API accepts, as the handlers' extractor does;
/// returns how many decoded. For the fuzzer (`fuzz/fuzz_targets/api_body.rs`): none may panic.
#[doc(hidden)]
pub fn decode_request_bodies(bytes: &[u8]) -> usize {
    fn ok<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> usize {
        usize::from(serde_json::from_slice::<T>(bytes).is_ok())
    }
    ok::<ChallengeRequest>(bytes)
        + ok::<LoginRequest>(bytes)
        + ok::<FilesRequest>(bytes)
        + ok::<SealRequest>(bytes)
        + ok::<AttestRequest>(bytes)
        + ok::<LostRequest>(bytes)
        + ok::<EnrollRequest>(bytes)
        + ok::<OpenRequest>(bytes)
        + ok::<DrillStart>(bytes)
        + ok::<ApproveRequest>(bytes)
        + ok::<TotpCodeRequest>(bytes)
        + ok::<TotpResetRequest>(bytes)
        + ok::<AckRequest>(bytes)
        + ok::<ImportRequest>(bytes)
        + ok::<CustodyOpenRequest>(bytes)
        + ok::<CustodyNoteRequest>(bytes)
        + ok::<CustodyRecordRequest>(bytes)
        + ok::<CustodyAbortRequest>(bytes)
}
