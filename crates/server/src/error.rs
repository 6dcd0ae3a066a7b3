//! One error type for every handler: the message shown to the caller is kept apart from the
//! cause that is logged, and a store failure never leaks its internals.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use breakglass_engine::EngineError;
use serde_json::json;

/// An error answered as `{"error": {"code", "message", "details"}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<serde_json::Value>,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
            details: vec![],
        }
    }

    pub(crate) fn too_large(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too_large",
            message: message.into(),
            details: vec![],
        }
    }

    pub(crate) fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
            message: message.into(),
            details: vec![],
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let (status, code) = match &e {
            EngineError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            EngineError::Denied(_) | EngineError::NotAllowed(_) => {
                (StatusCode::FORBIDDEN, "forbidden")
            }
            EngineError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            EngineError::Invalid(_) | EngineError::Seal(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
            }
            EngineError::Procedure(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_procedure"),
            EngineError::Open(_) => (StatusCode::UNPROCESSABLE_ENTITY, "cannot_open"),
            EngineError::Share(_) => (StatusCode::UNPROCESSABLE_ENTITY, "share_refused"),
            EngineError::Approve(_) => (StatusCode::CONFLICT, "approval_refused"),
            EngineError::SecondFactor(f) => (
                match f {
                    breakglass_engine::SecondFactorError::Locked { .. } => {
                        StatusCode::TOO_MANY_REQUESTS
                    }
                    breakglass_engine::SecondFactorError::NotEnrolled { .. } => {
                        StatusCode::CONFLICT
                    }
                    _ => StatusCode::FORBIDDEN,
                },
                f.code(),
            ),
            EngineError::Reveal(_) => (StatusCode::CONFLICT, "reveal_refused"),
            EngineError::Close(_) => (StatusCode::CONFLICT, "close_refused"),
            EngineError::Step(_) => (StatusCode::CONFLICT, "step_refused"),
            EngineError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            EngineError::Unseal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "unseal_failed"),
            EngineError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            EngineError::Elsewhere { .. } => (StatusCode::SERVICE_UNAVAILABLE, "held_elsewhere"),
            EngineError::Target(t) => (
                StatusCode::BAD_GATEWAY,
                match t.code() {
                    "unreachable" => "target_unreachable",
                    "credential" => "target_credential_refused",
                    "privilege" => "target_missing_privilege",
                    "conflict" => "target_conflict",
                    "config" => "target_config",
                    _ => "target_failed",
                },
            ),
        };
        let details = match &e {
            EngineError::Procedure(errors) => errors
                .iter()
                .map(|p| json!({"file": p.file, "line": p.line, "column": p.column, "field": p.field, "message": p.message}))
                .collect(),
            _ => vec![],
        };
        let message = match &e {
            // The cause is logged; the caller learns only that nothing was committed.
            EngineError::Store(cause) => {
                tracing::error!(error = %cause, "store failure");
                "the store is unavailable; nothing was committed, retry".to_owned()
            }
            other => other.to_string(),
        };
        ApiError {
            status,
            code,
            message,
            details,
        }
    }
}

impl ApiError {
    /// Status and caller-facing message.
    pub(crate) fn parts(&self) -> (StatusCode, String) {
        (self.status, self.message.clone())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        (self.status, Json(body)).into_response()
    }
}
