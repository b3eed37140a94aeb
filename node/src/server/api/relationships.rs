//! FlashCopy relationships: lsflash and the DS CLI verbs, each one log entry.

use super::error::ApiError;
use super::{run, Api};
use crate::protocol::{MkFlash, ResyncFlash, ReverseFlash, RmFlash, UnfreezeFlash};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use statemachine::{Command, EstablishOptions, Pair};

pub(super) fn pair(raw: &str) -> Result<Pair, ApiError> {
    raw.parse::<Pair>()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))
}

fn pairs(raw: &[String]) -> Result<Vec<Pair>, ApiError> {
    raw.iter().map(|p| pair(p)).collect()
}

pub(super) async fn list(
    State(a): Api,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query?;
    let volumes: Vec<String> = query
        .into_iter()
        .filter(|(k, _)| k == "volume")
        .map(|(_, v)| v)
        .collect();
    a.consensus.linearizable().await?;
    Ok(Json(a.state.query(|s| s.relationships(&volumes))))
}

pub(super) async fn mkflash(
    State(a): Api,
    body: Result<Json<MkFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(m) = body?;
    let options = EstablishOptions {
        nocp: m.nocp,
        persist: m.persist,
        record: m.record,
        tgtinhibit: m.tgtinhibit,
        freeze: m.freeze,
        seqnum: m.seqnum,
    };
    run(
        &a,
        Command::MkFlash {
            pairs: pairs(&m.pairs)?,
            options,
        },
    )
    .await
}

pub(super) async fn rmflash(
    State(a): Api,
    body: Result<Json<RmFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(r) = body?;
    run(
        &a,
        Command::RmFlash {
            pairs: pairs(&r.pairs)?,
            cp: r.cp,
            seqnum: r.seqnum,
        },
    )
    .await
}

pub(super) async fn resyncflash(
    State(a): Api,
    body: Result<Json<ResyncFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(r) = body?;
    let command = Command::ResyncFlash {
        pairs: pairs(&r.pairs)?,
        nocp: r.nocp,
        tgtinhibit: r.tgtinhibit,
        seqnum: r.seqnum,
    };
    run(&a, command).await
}

pub(super) async fn reverseflash(
    State(a): Api,
    body: Result<Json<ReverseFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(r) = body?;
    run(
        &a,
        Command::ReverseFlash {
            pairs: pairs(&r.pairs)?,
            fast: r.fast,
            seqnum: r.seqnum,
        },
    )
    .await
}

pub(super) async fn unfreezeflash(
    State(a): Api,
    body: Result<Json<UnfreezeFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(u) = body?;
    run(&a, Command::UnfreezeFlash { sources: u.sources }).await
}
