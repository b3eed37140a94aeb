//! The HTTP/JSON admin API (`/v1/...`) and `/metrics`.
//!
//! Every `/v1` request needs the bearer token when the cluster has one. A follower forwards
//! requests to the leader (only `/v1/node`, `GET /v1/cluster` and `GET /v1/audit/verify` are
//! answered locally), so a client may talk to any node. Errors are JSON:
//! `{"error": {"code", "message"}}` with the state machine's stable codes.

mod audit;
mod cluster;
mod error;
mod hosts;
mod metrics;
mod mirror;
mod pool;
mod relationships;
pub mod tls;
mod volumes;

use crate::protocol::*;
use crate::server::consensus::Consensus;
use crate::server::disk::DiskGuard;
use crate::server::host_io::HostIo;
use crate::server::metrics::Metrics;
use crate::server::mirror::Mirror;
use crate::server::token::ClusterToken;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, OriginalUri, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use error::{body_error, cut, ApiError};
use statemachine::Command;
use std::sync::Arc;
use storage::{LogStore, SharedState, Space};

/// What the admin API works with: consensus (propose, linearizable reads, membership), the
/// replicated state it reads, host I/O (the data route), the cluster secret, a client for peers.
pub struct AdminApi {
    pub consensus: Arc<Consensus>,
    pub state: SharedState,
    pub host_io: Arc<HostIo>,
    pub token: ClusterToken,
    pub peers: reqwest::Client,
    pub metrics: Arc<Metrics>,
    /// `/metrics` without the token.
    pub open_metrics: bool,
    pub disk: DiskGuard,
    /// What the state uses of the disk.
    pub space: Space,
    /// The Raft log (its size, for the disk's view).
    pub log: LogStore,
    /// Metro Mirror: links to remote clusters and what they cost.
    pub mirror: Arc<Mirror>,
}

type Api = State<Arc<AdminApi>>;

pub fn router(api: AdminApi) -> Router {
    let api = Arc::new(api);
    let v1 = Router::new()
        .route("/volumes", get(volumes::list).post(volumes::create))
        .route("/volumes/{name}", delete(volumes::delete))
        .route("/volumes/{name}/data", get(volumes::read_data).put(volumes::write_data))
        .route("/hosts", get(hosts::list).post(hosts::create))
        .route("/hosts/{name}", delete(hosts::delete))
        .route("/hosts/{name}/volumes", post(hosts::map))
        .route("/hosts/{name}/volumes/{volume}", delete(hosts::unmap))
        .route("/pool", get(pool::show))
        .route("/relationships", get(relationships::list))
        .route("/mkflash", post(relationships::mkflash))
        .route("/rmflash", post(relationships::rmflash))
        .route("/resyncflash", post(relationships::resyncflash))
        .route("/reverseflash", post(relationships::reverseflash))
        .route("/setflashrevertible", post(relationships::setflashrevertible))
        .route("/commitflash", post(relationships::commitflash))
        .route("/revertflash", post(relationships::revertflash))
        .route("/chflash", post(relationships::chflash))
        .route("/unfreezeflash", post(relationships::unfreezeflash))
        .route("/pprcpaths", get(mirror::list_paths).post(mirror::mkpath))
        .route("/pprcpaths/{remote}", delete(mirror::rmpath))
        .route("/pprc", get(mirror::list_pairs))
        .route("/mkpprc", post(mirror::mkpprc))
        .route("/pausepprc", post(mirror::pausepprc))
        .route("/resumepprc", post(mirror::resumepprc))
        .route("/rmpprc", post(mirror::rmpprc))
        .route("/failoverpprc", post(mirror::failoverpprc))
        .route("/failbackpprc", post(mirror::failbackpprc))
        .route("/pprc/accept", post(mirror::accept))
        .route("/pprc/apply", post(mirror::apply))
        .route("/pprc/become-secondary", post(mirror::become_secondary))
        .route("/pprc/remove", post(mirror::remove))
        .route("/pprc/flash", post(mirror::flash))
        .route("/audit", get(audit::list))
        .route("/audit/at", get(audit::at))
        .route("/audit/verify", get(audit::verify))
        .route("/cluster", get(cluster::status))
        .route("/cluster/nodes", post(cluster::add_node))
        .route("/cluster/nodes/{id}", delete(cluster::remove_node))
        .route("/node", get(cluster::node_status))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(from_fn_with_state(api.clone(), forward_to_leader))
        .layer(from_fn_with_state(api.clone(), authenticate));
    let mut metrics_route = Router::new()
        .route("/metrics", get(metrics::render))
        .method_not_allowed_fallback(method_not_allowed);
    if !api.open_metrics {
        metrics_route = metrics_route.layer(from_fn_with_state(api.clone(), authenticate));
    }
    Router::new()
        .nest(API_PREFIX, v1)
        .merge(metrics_route)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(trace_request))
        .with_state(api)
}

/// Proposes a command; a refusal is an error reply, an accepted command lists its events.
/// What no state would accept (a bad name) is refused before it reaches the log.
async fn run(a: &AdminApi, command: Command) -> Result<Json<CommandReply>, ApiError> {
    command.precheck()?;
    let committed = a.consensus.propose(command).await?;
    committed.result?;
    Ok(Json(CommandReply {
        index: committed.index,
        events: committed.events,
    }))
}

/// URIs longer than this are refused with a JSON error (no path or query of the API comes
/// near it; beyond 64 KiB the HTTP server itself answers a bare 414).
const MAX_URI: usize = 8 << 10;

/// Every admin request runs in its own span; its end is logged at debug level.
async fn trace_request(request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let uri = request.uri();
    let uri_len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if uri_len > MAX_URI {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            format!("the request URI has {uri_len} bytes; the API takes at most {MAX_URI}"),
        )
        .into_response();
    }
    let span = tracing::info_span!("admin_request", method = %request.method(), path = %request.uri().path());
    let started = tokio::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "answered"
        )
    });
    response
}

async fn authenticate(State(a): Api, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if a.token.admits_bearer(given) {
        next.run(request).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this cluster requires a token: set FLASHCOPY_TOKEN or pass --token-file",
        )
        .into_response()
    }
}

/// Sends the request to the leader unless this node is the leader or the request is local.
async fn forward_to_leader(State(a): Api, OriginalUri(uri): OriginalUri, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let local = path == "/node" || (request.method() == Method::GET && (path == "/cluster" || path == "/audit/verify"));
    if local || a.consensus.is_leader() {
        return next.run(request).await;
    }
    if request.headers().contains_key(FORWARDED_HEADER) {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-leader",
            "leadership is changing; try again",
        )
        .into_response();
    }
    let Some((_, leader)) = a.consensus.leader() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-leader",
            "the cluster has no leader right now; try again",
        )
        .into_response();
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return body_error(StatusCode::PAYLOAD_TOO_LARGE, String::new()).into_response();
    };
    let url = format!(
        "{}{}",
        leader.api,
        uri.path_and_query().map_or(uri.path(), |p| p.as_str())
    );
    let mut outgoing = a
        .peers
        .request(parts.method, &url)
        .header(FORWARDED_HEADER, "1")
        .body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(value) = parts.headers.get(&name) {
            outgoing = outgoing.header(name, value);
        }
    }
    match outgoing.send().await {
        Ok(reply) => {
            let status = reply.status();
            let content_type = reply.headers().get(header::CONTENT_TYPE).cloned();
            let bytes = reply.bytes().await.unwrap_or_default();
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            if let Some(ct) = content_type {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            response
        }
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-leader",
            format!("the leader at {} cannot be reached: {e}; try again", leader.api),
        )
        .into_response(),
    }
}

/// A path the API has, asked with a method it does not take (axum's own answer has no body).
/// Behind the token check, like every route.
async fn method_not_allowed(method: Method, uri: OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{} is not allowed on {}", cut(method.as_str()), cut(uri.0.path())),
    )
}

async fn not_found(uri: OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no such endpoint: {}", uri.0.path()),
    )
}
