//! The HTTP/JSON admin API (`/v1/...`) and `/metrics`.
//!
//! Every `/v1` request needs the bearer token when the cluster has one. A follower forwards
//! requests to the leader (only `/v1/node`, `GET /v1/cluster` and `GET /v1/audit/verify` are
//! answered locally), so a client may talk to any node. Errors are JSON: `{"error": {"code", "message"}}` with the
//! state machine's stable codes.

use crate::controller::{Controller, ProposeError};
use crate::protocol::*;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use openraft::ChangeMembers;
use serde::Deserialize;
use statemachine::{Command, CommandError, EstablishOptions, Pair, RelationshipInfo, Timestamp, WriteData};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use storage::{AuditFilter, JournalError, NodeInfo, ReadError, StateView, Until, Verification};

type Ctl = State<Arc<Controller>>;

pub fn router(controller: Arc<Controller>) -> Router {
    let v1 = Router::new()
        .route("/volumes", get(list_volumes).post(create_volume))
        .route("/volumes/{name}", delete(delete_volume))
        .route("/volumes/{name}/data", get(read_data).put(write_data))
        .route("/relationships", get(list_relationships))
        .route("/mkflash", post(mkflash))
        .route("/rmflash", post(rmflash))
        .route("/resyncflash", post(resyncflash))
        .route("/reverseflash", post(reverseflash))
        .route("/unfreezeflash", post(unfreezeflash))
        .route("/audit", get(audit))
        .route("/audit/at", get(audit_at))
        .route("/audit/verify", get(audit_verify))
        .route("/cluster", get(cluster_status))
        .route("/cluster/nodes", post(add_node))
        .route("/cluster/nodes/{id}", delete(remove_node))
        .route("/node", get(node_status))
        .fallback(not_found)
        .layer(from_fn_with_state(controller.clone(), forward_to_leader))
        .layer(from_fn_with_state(controller.clone(), authenticate));
    Router::new()
        .nest(API_PREFIX, v1)
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(trace_request))
        .with_state(controller)
}

/// An API error: HTTP status plus a stable code and a sentence.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
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
            CommandError::VolumeNotFound { .. } | CommandError::RelationshipNotFound { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        let code = match e {
            ProposeError::NotLeader { .. } => "not-leader",
            ProposeError::Unavailable(_) => "unavailable",
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, format!("{e}; try again"))
    }
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

fn body_error(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "body-too-large", format!("request body over {MAX_BODY} bytes"))
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", text)
    }
}

fn pair(raw: &str) -> Result<Pair, ApiError> {
    raw.parse::<Pair>()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))
}

fn pairs(raw: &[String]) -> Result<Vec<Pair>, ApiError> {
    raw.iter().map(|p| pair(p)).collect()
}

/// Every admin request runs in its own span; its end is logged at debug level.
async fn trace_request(request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let span = tracing::info_span!("admin_request", method = %request.method(), path = %request.uri().path());
    let started = std::time::Instant::now();
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

async fn authenticate(State(c): Ctl, request: Request, next: Next) -> Response {
    if c.token.is_empty() {
        return next.run(request).await;
    }
    let expected = format!("Bearer {}", c.token);
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given == Some(expected.as_str()) {
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
async fn forward_to_leader(State(c): Ctl, OriginalUri(uri): OriginalUri, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let local = path == "/node" || (request.method() == Method::GET && (path == "/cluster" || path == "/audit/verify"));
    if local || c.is_leader() {
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
    let Some((_, leader)) = c.leader() else {
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
    let mut outgoing = c
        .http
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

async fn not_found(uri: OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no such endpoint: {}", uri.0.path()),
    )
}

async fn run(c: &Controller, command: Command) -> Result<Json<CommandReply>, ApiError> {
    let (result, events, index) = c.propose_at(command).await?;
    result?;
    Ok(Json(CommandReply { index, events }))
}

async fn list_volumes(State(c): Ctl) -> Result<impl IntoResponse, ApiError> {
    c.linearizable().await?;
    Ok(Json(c.view.query(|s| s.volumes())))
}

async fn create_volume(
    State(c): Ctl,
    body: Result<Json<CreateVolume>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(v) = body?;
    run(
        &c,
        Command::CreateVolume {
            name: v.name,
            size: v.size,
        },
    )
    .await
}

async fn delete_volume(State(c): Ctl, Path(name): Path<String>) -> Result<impl IntoResponse, ApiError> {
    run(&c, Command::DeleteVolume { name }).await
}

#[derive(Deserialize)]
struct Range {
    offset: u64,
    length: Option<u64>,
}

async fn read_data(State(c): Ctl, Path(name): Path<String>, Query(range): Query<Range>) -> Result<Response, ApiError> {
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
    c.linearizable().await?;
    let bytes = c.view.read(&name, range.offset, length).map_err(|e| match e {
        ReadError::Refused(e) => ApiError::from(e),
        ReadError::Storage(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage-error", e.to_string()),
    })?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok((headers, bytes).into_response())
}

async fn write_data(
    State(c): Ctl,
    Path(name): Path<String>,
    Query(range): Query<Range>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body?;
    c.write(&name, range.offset, WriteData::Bytes(body.to_vec())).await??;
    Ok(Json(CommandReply {
        index: c.view.applied().0,
        events: vec![],
    }))
}

async fn list_relationships(
    State(c): Ctl,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<impl IntoResponse, ApiError> {
    let volumes: Vec<String> = query
        .into_iter()
        .filter(|(k, _)| k == "volume")
        .map(|(_, v)| v)
        .collect();
    c.linearizable().await?;
    Ok(Json(c.view.query(|s| s.relationships(&volumes))))
}

async fn mkflash(State(c): Ctl, body: Result<Json<MkFlash>, JsonRejection>) -> Result<impl IntoResponse, ApiError> {
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
        &c,
        Command::MkFlash {
            pairs: pairs(&m.pairs)?,
            options,
        },
    )
    .await
}

async fn rmflash(State(c): Ctl, body: Result<Json<RmFlash>, JsonRejection>) -> Result<impl IntoResponse, ApiError> {
    let Json(r) = body?;
    run(
        &c,
        Command::RmFlash {
            pairs: pairs(&r.pairs)?,
            cp: r.cp,
            seqnum: r.seqnum,
        },
    )
    .await
}

async fn resyncflash(
    State(c): Ctl,
    body: Result<Json<ResyncFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(r) = body?;
    let command = Command::ResyncFlash {
        pairs: pairs(&r.pairs)?,
        nocp: r.nocp,
        tgtinhibit: r.tgtinhibit,
        seqnum: r.seqnum,
    };
    run(&c, command).await
}

async fn reverseflash(
    State(c): Ctl,
    body: Result<Json<ReverseFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(r) = body?;
    run(
        &c,
        Command::ReverseFlash {
            pairs: pairs(&r.pairs)?,
            fast: r.fast,
            seqnum: r.seqnum,
        },
    )
    .await
}

async fn unfreezeflash(
    State(c): Ctl,
    body: Result<Json<UnfreezeFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(u) = body?;
    run(&c, Command::UnfreezeFlash { sources: u.sources }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    volume: Option<String>,
    /// `SRC:TGT`: records about both volumes.
    relationship: Option<String>,
    /// RFC 3339: records applied at or after it.
    since: Option<String>,
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

fn query_error(r: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad-request", r.body_text())
}

fn time_param(raw: &str) -> Result<Timestamp, ApiError> {
    raw.parse::<Timestamp>()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-time", e.to_string()))
}

fn journal_error(e: JournalError) -> ApiError {
    match e {
        JournalError::NothingBefore(_) => ApiError::new(StatusCode::NOT_FOUND, "no-history", e.to_string()),
        e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage-error", e.to_string()),
    }
}

/// Runs a journal read or replay off the async workers (a replay reads the whole history).
async fn with_journal<T: Send + 'static>(
    c: &Controller,
    f: impl FnOnce(&StateView) -> Result<T, JournalError> + Send + 'static,
) -> Result<T, ApiError> {
    let view = c.view.clone();
    tokio::task::spawn_blocking(move || f(&view))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(journal_error)
}

async fn audit(
    State(c): Ctl,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let Query(q) = query.map_err(query_error)?;
    let filter = AuditFilter {
        volume: q.volume,
        relationship: q.relationship.as_deref().map(pair).transpose()?,
        since: q.since.as_deref().map(time_param).transpose()?,
    };
    c.linearizable().await?;
    let limit = q.limit.unwrap_or(10_000).clamp(1, 100_000);
    let after = q.after;
    let records = with_journal(&c, move |view| view.audit(&filter, after, limit)).await?;
    Ok(Json(records.iter().map(AuditEntry::from).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AtQuery {
    index: Option<u64>,
    time: Option<String>,
}

async fn audit_at(State(c): Ctl, query: Result<Query<AtQuery>, QueryRejection>) -> Result<Json<AuditAt>, ApiError> {
    let Query(q) = query.map_err(query_error)?;
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
    c.linearizable().await?;
    let rebuilt = with_journal(&c, move |view| view.state_at(until)).await?;
    Ok(Json(AuditAt {
        index: rebuilt.index,
        time: rebuilt.time.rfc3339(),
        entries: rebuilt.entries,
        volumes: rebuilt.state.volumes(),
        relationships: rebuilt.state.relationships(&[]),
    }))
}

/// Answered by the node asked (not forwarded): it verifies its own replica.
async fn audit_verify(State(c): Ctl) -> Result<Json<Verification>, ApiError> {
    Ok(Json(with_journal(&c, |view| view.verify()).await?))
}

fn local_status(c: &Controller) -> NodeStatus {
    let (applied_index, digest) = c.view.applied();
    NodeStatus {
        id: c.id,
        api: c.info.api.clone(),
        raft: c.info.raft.clone(),
        applied_index,
        digest: digest_hex(digest),
    }
}

async fn node_status(State(c): Ctl) -> Json<NodeStatus> {
    Json(local_status(&c))
}

async fn peer_status(c: &Controller, url: &str) -> Option<NodeStatus> {
    let mut request = c
        .http
        .get(format!("{url}{API_PREFIX}/node"))
        .timeout(Duration::from_secs(2));
    if !c.token.is_empty() {
        request = request.bearer_auth(c.token.as_str());
    }
    request.send().await.ok()?.error_for_status().ok()?.json().await.ok()
}

async fn cluster_status(State(c): Ctl) -> Json<ClusterStatus> {
    let metrics = c.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.clone();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let mut nodes = Vec::new();
    for (id, info) in membership.nodes() {
        let role = if Some(*id) == metrics.current_leader {
            "leader"
        } else if voters.contains(id) {
            "follower"
        } else {
            "learner"
        };
        let applied_index = if *id == c.id {
            Some(c.view.applied().0)
        } else {
            peer_status(&c, &info.api).await.map(|s| s.applied_index)
        };
        nodes.push(ClusterNode {
            id: *id,
            url: info.api.clone(),
            role: role.to_string(),
            applied_index,
        });
    }
    let local = local_status(&c);
    Json(ClusterStatus {
        leader: metrics.current_leader,
        nodes,
        node_id: c.id,
        applied_index: local.applied_index,
        digest: local.digest,
    })
}

fn membership_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "membership-change-refused", e.to_string())
}

async fn add_node(State(c): Ctl, body: Result<Json<AddNode>, JsonRejection>) -> Result<impl IntoResponse, ApiError> {
    let Json(add) = body?;
    let url = add.url.trim_end_matches('/').to_string();
    let status = peer_status(&c, &url).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "node-unreachable",
            format!("no flashcopy node answers at {url}"),
        )
    })?;
    if status.id != add.id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "node-id-mismatch",
            format!("the node at {url} has id {}, not {}", status.id, add.id),
        ));
    }
    let info = NodeInfo {
        api: url,
        raft: status.raft,
    };
    c.raft.add_learner(add.id, info, true).await.map_err(membership_error)?;
    c.raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([add.id])), false)
        .await
        .map_err(membership_error)?;
    Ok(Json(local_status(&c)))
}

async fn remove_node(State(c): Ctl, Path(id): Path<u64>) -> Result<impl IntoResponse, ApiError> {
    let known = c
        .raft
        .metrics()
        .borrow()
        .membership_config
        .nodes()
        .any(|(n, _)| *n == id);
    if !known {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "node-not-found",
            format!("node {id} is not a member"),
        ));
    }
    c.raft
        .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
        .await
        .map_err(membership_error)?;
    Ok(Json(local_status(&c)))
}

async fn metrics(State(c): Ctl) -> impl IntoResponse {
    use std::fmt::Write as _;
    let raft = c.raft.metrics().borrow().clone();
    let (applied, _) = c.view.applied();
    let (volumes, relationships) = c.view.query(|s| (s.volumes().len(), s.relationships(&[])));
    let out_of_sync: u64 = relationships.iter().map(|r| r.out_of_sync_tracks).sum();
    let mut text = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    gauge("flashcopy_term", "Current Raft term.", raft.current_term);
    gauge(
        "flashcopy_leader_id",
        "Id of the node this node follows as leader (0: none known).",
        raft.current_leader.unwrap_or(0),
    );
    gauge(
        "flashcopy_is_leader",
        "1 if this node leads the cluster.",
        u64::from(raft.current_leader == Some(c.id)),
    );
    gauge(
        "flashcopy_last_log_index",
        "Last log index in this node's log.",
        raft.last_log_index.unwrap_or(0),
    );
    gauge(
        "flashcopy_commit_index",
        "Last log index this node knows to be committed.",
        c.metrics.commit_index(),
    );
    gauge(
        "flashcopy_applied_index",
        "Last log index applied by this node.",
        applied,
    );
    gauge(
        "flashcopy_snapshot_index",
        "Log index of this node's latest snapshot.",
        raft.snapshot.map_or(0, |l| l.index),
    );
    gauge(
        "flashcopy_log_purged_index",
        "Log entries up to this index are purged (they live in the snapshot).",
        raft.purged.map_or(0, |l| l.index),
    );
    gauge("flashcopy_volumes", "Number of volumes.", volumes as u64);
    gauge(
        "flashcopy_relationships",
        "Number of FlashCopy relationships.",
        relationships.len() as u64,
    );
    gauge(
        "flashcopy_out_of_sync_tracks",
        "Tracks still to copy, over all relationships.",
        out_of_sync,
    );
    for (name, help, value) in [
        (
            "flashcopy_relationship_out_of_sync_tracks",
            "Tracks of the target still living on the source, per relationship.",
            (|r: &RelationshipInfo| r.out_of_sync_tracks) as fn(&RelationshipInfo) -> u64,
        ),
        (
            "flashcopy_relationship_tracks",
            "Tracks of the relationship's volumes.",
            |r: &RelationshipInfo| u64::from(r.total_tracks),
        ),
    ] {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
        for r in &relationships {
            let _ = writeln!(
                text,
                "{name}{{source=\"{}\",target=\"{}\"}} {}",
                r.source,
                r.target,
                value(r)
            );
        }
    }
    c.metrics.render(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
