//! Volumes: list, create, delete, and the administrator's data reads and writes over HTTP
//! (small ones, through host I/O like NBD's; hosts use NBD).

use super::error::ApiError;
use super::{run, Api};
use crate::protocol::{CommandReply, CreateVolume, MAX_BODY};
use crate::server::host_io::Opener;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use statemachine::{Command, WriteData};
use storage::StateQuery;

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

/// The data route carries volume data around the NBD host mappings, so it is the
/// administrator's alone: only on a cluster with a token (which every request here has proved).
fn open_data_route(a: &super::AdminApi) -> Result<(), ApiError> {
    if a.token.is_open() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "data-needs-token",
            "the admin API carries volume data only on a cluster started with --token-file; hosts read and write volumes over NBD",
        ));
    }
    Ok(())
}

pub(super) async fn read_data(
    State(a): Api,
    name: Result<Path<String>, PathRejection>,
    range: Result<Query<Range>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (Path(name), Query(range)) = (name?, range?);
    open_data_route(&a)?;
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
    let volume = a.host_io.open(&name, &Opener::Admin).await?;
    let bytes = a.host_io.read(&volume, range.offset, length).await?;
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
    open_data_route(&a)?;
    let volume = a.host_io.open(&name, &Opener::Admin).await?;
    let index = a.host_io.write(&volume, range.offset, WriteData::Bytes(body)).await?;
    Ok(Json(CommandReply { index, events: vec![] }))
}
