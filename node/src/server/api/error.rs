//! Errors as the admin API answers them: an HTTP status, a stable kebab-case code, a sentence.

use crate::protocol::{ErrorBody, ErrorDetail, MAX_BODY};
use crate::server::consensus::ProposeError;
use crate::server::host_io::HostIoError;
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
        ApiError::new(command_status(&e), e.code(), e.to_string())
    }
}

/// The HTTP status of a refusal. Every variant is listed, so a new one is classified on purpose:
/// 400 the request is malformed whatever the state, 404 it names something that does not exist,
/// 416 its range lies outside the volume, 413 it carries more than one command may, 409 the
/// request is well formed but the state refuses it now.
fn command_status(e: &CommandError) -> StatusCode {
    match e {
        CommandError::InvalidVolumeName { .. }
        | CommandError::InvalidSize { .. }
        | CommandError::InvalidPair { .. }
        | CommandError::NoPairs
        | CommandError::InvalidOption { .. }
        | CommandError::InvalidHostName { .. }
        | CommandError::WriteWithoutData { .. } => StatusCode::BAD_REQUEST,
        CommandError::VolumeNotFound { .. }
        | CommandError::RelationshipNotFound { .. }
        | CommandError::HostNotFound { .. }
        | CommandError::NotMapped { .. }
        | CommandError::PathNotFound { .. }
        | CommandError::PairNotFound { .. } => StatusCode::NOT_FOUND,
        CommandError::OutOfRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        CommandError::WriteTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        CommandError::VolumeExists { .. }
        | CommandError::VolumeInUse { .. }
        | CommandError::VolumeFrozen { .. }
        | CommandError::WritesDraining { .. }
        | CommandError::TargetWriteInhibited { .. }
        | CommandError::SizeMismatch { .. }
        | CommandError::TargetInUse { .. }
        | CommandError::TooManyTargets { .. }
        | CommandError::CascadeNotAllowed { .. }
        | CommandError::CascadeCopyRunning { .. }
        | CommandError::SourceFrozen { .. }
        | CommandError::SeqnumMismatch { .. }
        | CommandError::NotRecording { .. }
        | CommandError::CopyNotFinished { .. }
        | CommandError::WithdrawInProgress { .. }
        | CommandError::TargetFrozen { .. }
        | CommandError::NotFrozen { .. }
        | CommandError::BackgroundCopyOff { .. }
        | CommandError::VolumeReplaced { .. }
        | CommandError::ZeroingTooLarge { .. }
        | CommandError::HostExists { .. }
        | CommandError::IdentityInUse { .. }
        | CommandError::HostHasVolumes { .. }
        | CommandError::VolumeMapped { .. }
        | CommandError::PathExists { .. }
        | CommandError::PathInUse { .. }
        | CommandError::PairExists { .. }
        | CommandError::PairSizeMismatch { .. }
        | CommandError::PairState { .. }
        | CommandError::PairGeneration { .. }
        | CommandError::FailoverOfPrimary { .. }
        | CommandError::MirrorSecondary { .. }
        | CommandError::VolumeInMirrorPair { .. }
        | CommandError::TargetIsMirrorPrimary { .. }
        | CommandError::TargetIsMirrorSecondary { .. }
        | CommandError::PmirNotPossible { .. }
        | CommandError::PairSequenceGap { .. }
        | CommandError::PairCopyUnconfirmed { .. }
        | CommandError::NotRevertible { .. }
        | CommandError::RelationshipRevertible { .. }
        | CommandError::RevertibleWriteInhibited { .. }
        | CommandError::RevertibleNotPossible { .. } => StatusCode::CONFLICT,
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
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, format!("{e}; try again"))
    }
}

impl From<HostIoError> for ApiError {
    fn from(e: HostIoError) -> Self {
        match e {
            HostIoError::Refused(e) => e.into(),
            HostIoError::Propose(e) => e.into(),
            HostIoError::Denied(reason) => ApiError::new(StatusCode::FORBIDDEN, "access-denied", reason),
            HostIoError::Empty => ApiError::new(StatusCode::BAD_REQUEST, "empty-request", e.to_string()),
            HostIoError::DiskFull(_) => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk-full", e.to_string()),
            HostIoError::Unavailable(detail) => internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage-error",
                "the node could not read its storage",
                detail,
            ),
        }
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
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", cut(&text))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", cut(&r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", cut(&r.body_text()))
    }
}

pub(super) fn time_param(raw: &str) -> Result<Timestamp, ApiError> {
    raw.parse::<Timestamp>()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-time", cut(&e.to_string())))
}

/// Longest text from elsewhere (axum's rejections, which may repeat the request) a message
/// carries, in characters as shown.
const MAX_TEXT: usize = 200;

/// A text that may repeat what the client sent, as an error message carries it: control,
/// format (bidirectional, zero-width) and other unprintable characters escaped as `{:?}`
/// escapes them (quotes and backslashes stay as they are), cut after about 200 characters,
/// saying how long the text was.
pub(super) fn cut(text: &str) -> String {
    let mut shown = String::new();
    let mut width = 0;
    for c in text.chars() {
        let plain = matches!(c, '"' | '\'' | '\\');
        let escaped = c.escape_debug();
        let w = if plain { 1 } else { escaped.len() };
        if width + w > MAX_TEXT {
            return format!("{shown}… ({} characters)", text.chars().count());
        }
        width += w;
        if plain {
            shown.push(c);
        } else {
            shown.extend(escaped);
        }
    }
    shown
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

    #[test]
    fn malformed_input_is_a_bad_request_and_a_conflict_is_a_conflict() {
        let status = |e: CommandError| ApiError::from(e).status;
        assert_eq!(
            status(CommandError::InvalidVolumeName { name: "-x".into() }),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(CommandError::InvalidOption {
                option: "--psk-identity".into(),
                reason: "no".into()
            }),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(CommandError::OutOfRange {
                volume: "a".into(),
                offset: 10,
                length: 10,
                size: 16
            }),
            StatusCode::RANGE_NOT_SATISFIABLE
        );
        assert_eq!(
            status(CommandError::VolumeExists { name: "a".into() }),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(CommandError::VolumeNotFound { name: "a".into() }),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn rejection_texts_are_cut_and_escaped() {
        assert_eq!(cut("Cannot parse `abc` to a `u64`"), "Cannot parse `abc` to a `u64`");
        assert_eq!(cut("a \"b\"\n\u{202e}c"), "a \"b\"\\n\\u{202e}c");
        let long = cut(&format!("unknown field `{}`", "x".repeat(5000)));
        assert!(long.chars().count() < 240, "{long}");
        assert!(long.ends_with("… (5016 characters)"), "{long}");
    }
}
