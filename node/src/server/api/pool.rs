//! `GET /v1/pool`: capacity as an administrator sees it (`lspool`) — what the volumes could
//! hold, what they use, and each node's disk (each holds a whole replica).

use super::cluster::{disk_status, peer_status};
use super::error::ApiError;
use super::Api;
use crate::protocol::{Pool, PoolNode};
use axum::extract::State;
use axum::Json;
use storage::StateQuery;

pub(super) async fn show(State(a): Api) -> Result<Json<Pool>, ApiError> {
    a.consensus.linearizable().await?;
    let volumes = a.state.query(|s| s.volumes());
    let mut nodes = Vec::new();
    for (id, info) in a.consensus.raft_metrics().membership_config.nodes() {
        let disk = if *id == a.consensus.id() {
            Some(disk_status(&a))
        } else {
            peer_status(&a, &info.api).await.map(|s| s.disk)
        };
        nodes.push(PoolNode { id: *id, disk });
    }
    let capacity = nodes
        .iter()
        .filter_map(|n| n.disk.as_ref().map(|d| d.capacity))
        .min()
        .unwrap_or(0);
    let virtual_capacity: u64 = volumes.iter().map(|v| v.size).sum();
    Ok(Json(Pool {
        volumes: volumes.len(),
        virtual_capacity,
        used_by_volumes: volumes.iter().map(|v| v.used).sum(),
        capacity,
        overallocation_percent: virtual_capacity.saturating_mul(100) / capacity.max(1),
        nodes,
    }))
}
