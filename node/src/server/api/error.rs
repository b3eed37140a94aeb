//! Errors as the admin API answers them: an HTTP status, a stable kebab-case code, a sentence.

use crate::protocol::{ErrorBody, ErrorDetail, MAX_BODY};
use crate::server::consensus::ProposeError;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use statemachine::{CommandError, Timestamp};

/// An API error: HTTP status plus a stable code and a sentence.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let status = match e {
            CommandError::VolumeNotFound { .. }
            | CommandError::RelationshipNotFound { .. }
            | CommandError::HostNotFound { .. }
            | CommandError::NotMapped { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        let code = match e {
            ProposeError::NotLeader { .. } => "not-leader",
            ProposeError::NoQuorum(_) => "no-quorum",
            ProposeError::CommitTimeout => {
                return ApiError::new(StatusCode::GATEWAY_TIMEOUT, "commit-timeout", e.to_string());
            }
            ProposeError::Unavailable(detail) => {
                return internal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the cluster cannot commit right now; try again",
                    detail,
                );
            }
            ProposeError::DiskFull { .. } => {
                return ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk-full", e.to_string());
            }
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, format!("{e}; try again"))
    }
}

/// An error whose detail is for the node's operator, not the client: storage and Raft errors
/// name files under the data directory. The detail is logged; the client gets `message`.
pub(super) fn internal(status: StatusCode, code: &str, message: &str, detail: impl std::fmt::Display) -> ApiError {
    tracing::warn!(code, detail = %detail, "{message}");
    ApiError::new(status, code, format!("{message} (details in the node's log)"))
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        body_error(r.status(), r.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        body_error(r.status(), r.body_text())
    }
}

pub(super) fn body_error(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "body-too-large", format!("request body over {MAX_BODY} bytes"))
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", text)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", r.body_text())
    }
}

pub(super) fn time_param(raw: &str) -> Result<Timestamp, ApiError> {
    raw.parse::<Timestamp>()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-time", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_details_stay_in_the_log() {
        let e = ApiError::from(ProposeError::Unavailable(
            "IO error: No space left on device: While appending to file: /var/lib/flashcopy/db/000042.log".into(),
        ));
        assert_eq!(e.code, "unavailable");
        assert!(!e.message.contains('/'), "{}", e.message);
    }

    #[test]
    fn a_commit_timeout_says_the_outcome_is_unknown() {
        let e = ApiError::from(ProposeError::CommitTimeout);
        assert_eq!(
            (e.status, e.code.as_str()),
            (StatusCode::GATEWAY_TIMEOUT, "commit-timeout")
        );
        assert!(e.message.contains("may still take effect"), "{}", e.message);
    }
}
