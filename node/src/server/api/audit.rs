//! The journal endpoints: the history (`/audit`), the state at a point of it (`/audit/at`), and
//! the replay check (`/audit/verify`, answered by the replica asked).

use super::error::{internal, time_param, ApiError};
use super::relationships::pair;
use super::{AdminApi, Api};
use crate::protocol::{AuditAt, AuditEntry};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use storage::{AuditFilter, JournalError, StateRead, Until, Verification};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    volume: Option<String>,
    /// `SRC:TGT`: records about both volumes.
    relationship: Option<String>,
    /// RFC 3339: records applied at or after it.
    since: Option<String>,
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

fn journal_error(e: JournalError) -> ApiError {
    match e {
        JournalError::NothingBefore(_) => ApiError::new(StatusCode::NOT_FOUND, "no-history", e.to_string()),
        e => internal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage-error",
            "the node could not read its journal",
            e,
        ),
    }
}

/// Runs a journal read or replay off the async workers (a replay reads the whole history).
async fn with_journal<T: Send + 'static>(
    a: &AdminApi,
    f: impl FnOnce(&dyn StateRead) -> Result<T, JournalError> + Send + 'static,
) -> Result<T, ApiError> {
    let view = a.state.clone();
    storage::runtime::offload(move || f(view.as_ref()))
        .await
        .map_err(|e| {
            internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the journal task failed",
                e,
            )
        })?
        .map_err(journal_error)
}

pub(super) async fn list(
    State(a): Api,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let Query(q) = query?;
    let filter = AuditFilter {
        volume: q.volume,
        relationship: q.relationship.as_deref().map(pair).transpose()?,
        since: q.since.as_deref().map(time_param).transpose()?,
    };
    a.consensus.linearizable().await?;
    let limit = q.limit.unwrap_or(10_000).clamp(1, 100_000);
    let after = q.after;
    let records = with_journal(&a, move |view| view.audit(&filter, after, limit)).await?;
    Ok(Json(records.iter().map(AuditEntry::from).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AtQuery {
    index: Option<u64>,
    time: Option<String>,
}

pub(super) async fn at(
    State(a): Api,
    query: Result<Query<AtQuery>, QueryRejection>,
) -> Result<Json<AuditAt>, ApiError> {
    let Query(q) = query?;
    let until = match (q.index, q.time.as_deref()) {
        (Some(index), None) => Until::Index(index),
        (None, Some(time)) => Until::Time(time_param(time)?),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "give exactly one of index=N or time=RFC3339",
            ))
        }
    };
    a.consensus.linearizable().await?;
    if let Until::Index(index) = until {
        // Otherwise the answer would be the state now, labelled with a lower index: a typo
        // in the index would go unnoticed.
        let (applied, _) = a.state.applied();
        if index > applied {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "index-not-reached",
                format!("log index {index} is not applied yet: the journal ends at index {applied}"),
            ));
        }
    }
    let rebuilt = with_journal(&a, move |view| view.state_at(until)).await?;
    Ok(Json(AuditAt {
        index: rebuilt.index,
        time: rebuilt.time.rfc3339(),
        entries: rebuilt.entries,
        volumes: rebuilt.state.volumes(),
        relationships: rebuilt.state.relationships(&[]),
    }))
}

/// Answered by the node asked (not forwarded): it verifies its own replica.
pub(super) async fn verify(State(a): Api) -> Result<Json<Verification>, ApiError> {
    Ok(Json(with_journal(&a, |view| view.verify()).await?))
}
