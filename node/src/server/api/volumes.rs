//! Volumes: list, create, delete, and data reads and writes over HTTP (small ones; hosts use NBD).

use super::error::{internal, ApiError};
use super::{run, Api};
use crate::protocol::{CommandReply, CreateVolume, MAX_BODY};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use statemachine::{Command, WriteData};
use storage::ReadError;

pub(super) async fn list(State(a): Api) -> Result<impl IntoResponse, ApiError> {
    a.consensus.linearizable().await?;
    Ok(Json(a.state.query(|s| s.volumes())))
}

pub(super) async fn create(
    State(a): Api,
    body: Result<Json<CreateVolume>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(v) = body?;
    run(
        &a,
        Command::CreateVolume {
            name: v.name,
            size: v.size,
        },
    )
    .await
}

pub(super) async fn delete(
    State(a): Api,
    name: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(name) = name?;
    run(&a, Command::DeleteVolume { name }).await
}

#[derive(Deserialize)]
pub(super) struct Range {
    offset: u64,
    length: Option<u64>,
}

pub(super) async fn read_data(
    State(a): Api,
    name: Result<Path<String>, PathRejection>,
    range: Result<Query<Range>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (Path(name), Query(range)) = (name?, range?);
    let length = range
        .length
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", "length is required"))?;
    if length > MAX_BODY as u64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!("read at most {MAX_BODY} bytes at once"),
        ));
    }
    a.consensus.linearizable().await?;
    let bytes = a.state.read(&name, None, range.offset, length).map_err(|e| match e {
        ReadError::Refused(e) => ApiError::from(e),
        ReadError::Storage(e) => internal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage-error",
            "the node could not read its storage",
            e,
        ),
    })?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok((headers, bytes).into_response())
}

pub(super) async fn write_data(
    State(a): Api,
    name: Result<Path<String>, PathRejection>,
    range: Result<Query<Range>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let (Path(name), Query(range), body) = (name?, range?, body?);
    a.writes
        .write(&name, None, range.offset, WriteData::Bytes(body.to_vec()))
        .await??;
    Ok(Json(CommandReply {
        index: a.state.applied().0,
        events: vec![],
    }))
}
