//! Cluster membership and status: who leads, each node's applied index, add and remove nodes.

use super::error::ApiError;
use super::{AdminApi, Api};
use crate::protocol::{digest_hex, AddNode, ClusterNode, ClusterStatus, DiskStatus, NodeStatus, API_PREFIX};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use std::collections::BTreeSet;
use std::time::Duration;
use storage::{NodeInfo, StateQuery};

fn local_status(a: &AdminApi) -> NodeStatus {
    let (applied_index, digest) = a.state.applied();
    NodeStatus {
        id: a.consensus.id(),
        api: a.consensus.info().api.clone(),
        raft: a.consensus.info().raft.clone(),
        applied_index,
        digest: digest_hex(digest),
        disk: disk_status(a),
    }
}

/// This node's disk as `cluster status` and `lspool` show it.
pub(super) fn disk_status(a: &AdminApi) -> DiskStatus {
    let usage = a.space.last_usage();
    DiskStatus {
        status: a.disk.state().as_str().to_string(),
        capacity: a.disk.capacity(),
        free: a.disk.free(),
        reserve: a.disk.reserve(),
        warning_percent: a.disk.warning_percent(),
        used_by_state: usage.state,
        garbage: usage.garbage,
        // The spare segment files kept for reuse are the log's disk too.
        used_by_log: a.log.log_bytes() + a.log.spare_bytes(),
    }
}

pub(super) async fn node_status(State(a): Api) -> Json<NodeStatus> {
    Json(local_status(&a))
}

pub(super) async fn peer_status(a: &AdminApi, url: &str) -> Option<NodeStatus> {
    let mut request = a
        .peers
        .get(format!("{url}{API_PREFIX}/node"))
        .timeout(Duration::from_secs(2));
    if !a.token.is_open() {
        request = request.bearer_auth(a.token.secret());
    }
    request.send().await.ok()?.error_for_status().ok()?.json().await.ok()
}

pub(super) async fn status(State(a): Api) -> Json<ClusterStatus> {
    let metrics = a.consensus.raft_metrics();
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
        let status = if *id == a.consensus.id() {
            Some(local_status(&a))
        } else {
            peer_status(&a, &info.api).await
        };
        nodes.push(ClusterNode {
            id: *id,
            url: info.api.clone(),
            role: role.to_string(),
            applied_index: status.as_ref().map(|s| s.applied_index),
            disk: status.map(|s| s.disk),
        });
    }
    // A leader this node cannot reach (it just died, say) is not reported: clients would
    // be sent to it.
    let leader = metrics
        .current_leader
        .filter(|id| nodes.iter().any(|n| n.id == *id && n.applied_index.is_some()));
    let local = local_status(&a);
    Json(ClusterStatus {
        cluster_id: a.state.query(|s| s.cluster_id().map(str::to_string)),
        leader,
        nodes,
        node_id: a.consensus.id(),
        applied_index: local.applied_index,
        digest: local.digest,
    })
}

fn membership_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "membership-change-refused", e.to_string())
}

pub(super) async fn add_node(
    State(a): Api,
    body: Result<Json<AddNode>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(add) = body?;
    let url = add.url.trim_end_matches('/').to_string();
    let status = peer_status(&a, &url).await.ok_or_else(|| {
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
    a.consensus.add_voter(add.id, info).await.map_err(membership_error)?;
    Ok(Json(local_status(&a)))
}

pub(super) async fn remove_node(
    State(a): Api,
    id: Result<Path<u64>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(id) = id?;
    let known = a
        .consensus
        .raft_metrics()
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
    a.consensus.remove_voter(id).await.map_err(membership_error)?;
    Ok(Json(local_status(&a)))
}
