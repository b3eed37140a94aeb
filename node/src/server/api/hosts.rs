//! Hosts and their volume mappings: which TLS identity sees which volumes over NBD.

use super::error::ApiError;
use super::{run, Api};
use crate::protocol::{CreateHost, MapVolume};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use statemachine::{Command, HostIdentity};
use storage::StateQuery;

pub(super) async fn list(State(a): Api) -> Result<impl IntoResponse, ApiError> {
    a.consensus.linearizable().await?;
    Ok(Json(a.state.query(|s| s.host_infos())))
}

pub(super) async fn create(
    State(a): Api,
    body: Result<Json<CreateHost>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(h) = body?;
    let identity = match (h.psk_identity, h.cert_cn) {
        (Some(id), None) => HostIdentity::Psk(id),
        (None, Some(cn)) => HostIdentity::CertCn(cn),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "a host has one identity: give psk_identity or cert_cn",
            ))
        }
    };
    run(&a, Command::CreateHost { name: h.name, identity }).await
}

pub(super) async fn delete(
    State(a): Api,
    name: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(name) = name?;
    run(&a, Command::DeleteHost { name }).await
}

pub(super) async fn map(
    State(a): Api,
    host: Result<Path<String>, PathRejection>,
    body: Result<Json<MapVolume>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let (Path(host), Json(m)) = (host?, body?);
    run(
        &a,
        Command::MapVolume {
            volume: m.volume,
            host,
            read_only: m.read_only,
        },
    )
    .await
}

pub(super) async fn unmap(
    State(a): Api,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path((host, volume)) = path?;
    run(&a, Command::UnmapVolume { volume, host }).await
}
