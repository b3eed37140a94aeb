//! `flashcopy serve`: open storage, start openraft, the peer transport, the admin API and the
//! copy scheduler; initialise a new single-node cluster or join an existing one.

use crate::controller::{Controller, Settings};
use crate::metrics::Metrics;
use crate::protocol::{AddNode, API_PREFIX};
use crate::{api, copy_scheduler, nbd, transport, write_batcher};
use openraft::{Config, Raft, SnapshotPolicy};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use storage::NodeInfo;
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub node_id: Option<u64>,
    pub api: String,
    pub raft: String,
    /// NBD listen address.
    pub nbd: String,
    pub advertise_api: Option<String>,
    pub advertise_raft: Option<String>,
    pub join: Option<String>,
    pub token: String,
    /// Background-copy limit in bytes per second.
    pub copy_rate: Option<u64>,
    /// Log entries between snapshots.
    pub snapshot_every: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Storage(#[from] storage::OpenError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    NodeId { path: String, reason: String },
    #[error("cannot start Raft: {0}")]
    Raft(String),
}

/// A running node.
pub struct Running {
    pub controller: Arc<Controller>,
    /// The admin API's URL (the real port when 0 was asked for).
    pub api_url: String,
    /// The NBD address as bound (the real port when 0 was asked for).
    pub nbd_addr: std::net::SocketAddr,
}

/// The node id is fixed by the data directory once chosen: a data dir never changes identity.
fn node_id(config: &ServeConfig) -> Result<u64, ServeError> {
    let path = config.data_dir.join("node-id");
    let err = |reason: String| ServeError::NodeId {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let stored: u64 = text
                .trim()
                .parse()
                .map_err(|_| err(format!("not a node id: {:?}", text.trim())))?;
            match config.node_id {
                Some(asked) if asked != stored => Err(err(format!(
                    "this data directory belongs to node {stored}, not {asked}; use --node-id {stored} or another --data-dir"
                ))),
                _ => Ok(stored),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = config.node_id.unwrap_or(1);
            if id == 0 {
                return Err(err("node ids start at 1".into()));
            }
            std::fs::create_dir_all(&config.data_dir).map_err(|e| err(e.to_string()))?;
            std::fs::write(&path, format!("{id}\n")).map_err(|e| err(e.to_string()))?;
            Ok(id)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// How peers reach a bound address: as bound, unless bound to every interface (0.0.0.0, ::),
/// which no peer can dial: then this machine's hostname.
fn advertised(bound: std::net::SocketAddr) -> String {
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    format!("{host}:{}", bound.port())
}

async fn listen(addr: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr).await.map_err(|source| ServeError::Listen {
        addr: addr.to_string(),
        source,
    })
}

pub fn raft_config(snapshot_every: u64) -> Config {
    Config {
        cluster_name: "flashcopy".into(),
        // A loaded 2-core machine needs more slack than openraft's defaults.
        heartbeat_interval: 200,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        install_snapshot_timeout: 10_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
        // Keep some log behind a snapshot, so a briefly lagging follower needs no snapshot.
        max_in_snapshot_log_to_keep: snapshot_every / 4,
        ..Default::default()
    }
}

pub async fn start(config: ServeConfig) -> Result<Running, ServeError> {
    let id = node_id(&config)?;
    let (log_store, state_store) = storage::open(&config.data_dir)?;
    let metrics = Arc::new(Metrics::new(log_store.committed_index()));
    let state_store = state_store.with_apply_observer({
        let metrics = metrics.clone();
        Arc::new(move |entries, elapsed| metrics.record_apply(entries, elapsed))
    });
    let view = state_store.view();

    let api_listener = listen(&config.api).await?;
    let raft_listener = listen(&config.raft).await?;
    let nbd_listener = listen(&config.nbd).await?;
    let nbd_addr = nbd_listener.local_addr().expect("bound");
    let api_url = config
        .advertise_api
        .clone()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("http://{}", advertised(api_listener.local_addr().expect("bound"))));
    let raft_addr = config
        .advertise_raft
        .clone()
        .unwrap_or_else(|| advertised(raft_listener.local_addr().expect("bound")));
    let info = NodeInfo {
        api: api_url.clone(),
        raft: raft_addr,
    };

    let token = Arc::new(config.token.clone());
    let raft_config = Arc::new(
        raft_config(config.snapshot_every)
            .validate()
            .map_err(|e| ServeError::Raft(e.to_string()))?,
    );
    let network = transport::Network { token: token.clone() };
    let raft = Raft::new(id, raft_config, network, log_store, state_store)
        .await
        .map_err(|e| ServeError::Raft(e.to_string()))?;
    let (writes, batches) = write_batcher::channel();
    let controller = Arc::new(Controller::new(
        id,
        info.clone(),
        raft.clone(),
        view,
        Settings {
            token: config.token.clone(),
            copy_rate: config.copy_rate,
        },
        writes,
        metrics,
    ));
    tokio::spawn(write_batcher::run(controller.clone(), batches));

    let tunnels: transport::TunnelHandler = {
        let c = controller.clone();
        Arc::new(
            move |kind: transport::TunnelKind, stream: tokio::net::TcpStream| match kind {
                transport::TunnelKind::Nbd => nbd::serve_tunnelled(stream, c.clone()),
            },
        )
    };
    tokio::spawn(transport::serve(raft_listener, raft.clone(), token, tunnels));
    tokio::spawn(nbd::serve(nbd_listener, controller.clone()));
    let app = api::router(controller.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(api_listener, app).await {
            tracing::error!(error = %e, "admin API stopped");
        }
    });
    tokio::spawn(copy_scheduler::run(controller.clone()));

    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| ServeError::Raft(e.to_string()))?;
    if !initialized {
        match &config.join {
            None => {
                raft.initialize(BTreeMap::from([(id, info)]))
                    .await
                    .map_err(|e| ServeError::Raft(e.to_string()))?;
                tracing::info!(node = id, "initialised a new single-node cluster");
            }
            Some(url) => {
                tokio::spawn(join(controller.clone(), url.trim_end_matches('/').to_string()));
            }
        }
    }
    tracing::info!(node = id, api = %api_url, nbd = %nbd_addr, "flashcopy node serving");
    Ok(Running {
        controller,
        api_url,
        nbd_addr,
    })
}

/// Asks an existing cluster to add this node, until it does.
async fn join(c: Arc<Controller>, url: String) {
    let body = AddNode {
        id: c.id,
        url: c.info.api.clone(),
    };
    loop {
        let mut request = c.http.post(format!("{url}{API_PREFIX}/cluster/nodes")).json(&body);
        if !c.token.is_empty() {
            request = request.bearer_auth(c.token.as_str());
        }
        match request.send().await {
            Ok(reply) if reply.status().is_success() => {
                tracing::info!(%url, "joined the cluster");
                return;
            }
            Ok(reply) => {
                let status = reply.status();
                let text = reply.text().await.unwrap_or_default();
                tracing::warn!(%url, %status, %text, "join refused; retrying");
            }
            Err(e) => tracing::warn!(%url, error = %e, "cluster not reachable; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::advertised;

    #[test]
    fn unspecified_binds_advertise_the_hostname() {
        assert_eq!(advertised("127.0.0.1:7700".parse().unwrap()), "127.0.0.1:7700");
        let any = advertised("0.0.0.0:7700".parse().unwrap());
        assert!(any.ends_with(":7700") && !any.starts_with("0.0.0.0"), "{any}");
        assert!(!advertised("[::]:7701".parse().unwrap()).starts_with("[::]"));
    }
}
