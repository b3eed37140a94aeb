//! The server: `flashcopy serve` opens storage, starts openraft, the peer transport, the admin
//! API, the NBD server, the write batcher and the copy scheduler, and initialises a new
//! single-node cluster or joins an existing one. Each part gets only what it uses.

pub mod api;
pub mod clock;
pub mod config;
pub mod consensus;
pub mod copy_scheduler;
pub mod disk;
pub mod host_io;
pub mod kept_sweeper;
pub mod metrics;
pub mod mirror;
pub mod nbd;
pub mod net;
pub mod pre_vote;
pub mod read_index;
pub mod space_keeper;
pub mod throttled;
pub mod token;
pub mod transport;
pub mod write_batcher;

pub use config::{ServeArgs, ServeConfig};

use crate::logs::{self, LogFormat};
use crate::protocol::{AddNode, API_PREFIX};
use consensus::Consensus;
use host_io::{HostIo, HostWrites};
use metrics::Metrics;
use mirror::Mirror;
use openraft::{Config, Raft, SnapshotPolicy};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use storage::{NodeInfo, SharedState};
use token::ClusterToken;
use tokio::net::TcpListener;

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
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
}

/// A running node.
pub struct Running {
    pub consensus: Arc<Consensus>,
    /// The applied state, flushed to disk at a clean stop.
    pub state: SharedState,
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
        // openraft purges nothing by itself: every purge is the space keeper's, asked for in
        // increasing order. Its own purge after a snapshot could go back below one already
        // scheduled, which its debug builds assert against (simulation seed 54 met it).
        max_in_snapshot_log_to_keep: u64::MAX,
        // `pre_vote` switches elections on while a majority would elect this node.
        enable_elect: false,
        ..Default::default()
    }
}

/// Entries the log keeps behind a snapshot, so a briefly lagging follower catches up from the
/// log, not by installing the snapshot.
pub fn log_kept_behind_snapshot(snapshot_every: u64) -> u64 {
    snapshot_every / 4
}

/// What a node runs on besides its data directory: the wall clock, the network of its peer
/// port and NBD server, the disk of its Raft log and how full its disk is. `start` passes the system's clock, TCP
/// and the data directory's `raft-log`; a simulation its own.
pub struct Environment {
    pub clock: Arc<dyn clock::Clock>,
    pub dialer: Arc<dyn net::Dialer>,
    pub raft_listener: Box<dyn net::Listener>,
    pub nbd_listener: Box<dyn net::Listener>,
    /// `None`: the data directory's `raft-log`.
    pub log_disk: Option<Arc<dyn storage::LogDisk>>,
    /// How full the data directory's disk is. `None`: as the kernel says.
    pub filesystem: Option<Arc<dyn disk::Filesystem>>,
}

/// A node's serving parts, started: Raft and its peer port, host I/O (and NBD), the mirror, and
/// the background work (write batcher, copy scheduler, space keeper). The admin API is not
/// among them: `start` adds it.
pub struct Core {
    pub id: u64,
    pub info: NodeInfo,
    pub raft: Raft<storage::TypeConfig>,
    pub consensus: Arc<Consensus>,
    pub state: SharedState,
    pub host_io: Arc<HostIo>,
    pub mirror: Arc<Mirror>,
    pub token: ClusterToken,
    pub metrics: Arc<Metrics>,
    pub disk: disk::DiskGuard,
    pub space: storage::Space,
    pub log: storage::LogStore,
}

/// Opens the data directory and starts the serving parts on `env`; `info` is how peers and
/// clients reach this node.
pub async fn start_core(config: &ServeConfig, info: NodeInfo, env: Environment) -> Result<Core, ServeError> {
    let id = node_id(config)?;
    let (log_store, state_store) = match env.log_disk.clone() {
        None => storage::open(&config.data_dir)?,
        Some(disk) => storage::open_with_log(&config.data_dir, disk)?,
    };
    let metrics = Arc::new(Metrics::new(log_store.committed_index()));
    let state_store = state_store.with_apply_observer({
        let metrics = metrics.clone();
        Arc::new(move |entries, elapsed| metrics.record_apply(entries, elapsed))
    });
    let state: SharedState = Arc::new(state_store.view());
    let space = state_store.space();
    let mirror = Mirror::new(state.clone(), config.mirror_timeout, metrics.clone());
    let state_store = state_store.with_mirror_tap(mirror.tap_fn());

    let token = ClusterToken::new(config.token.clone());
    let raft_config = Arc::new(
        raft_config(config.snapshot_every)
            .validate()
            .map_err(|e| ServeError::Raft(e.to_string()))?,
    );
    let (quiet, heartbeat) = (
        Duration::from_millis(raft_config.election_timeout_max),
        Duration::from_millis(raft_config.heartbeat_interval),
    );
    let network = transport::Network::new(id, token.clone(), env.dialer.clone());
    let log = log_store.clone();
    let raft = Raft::new(id, raft_config, network, log_store, state_store)
        .await
        .map_err(|e| ServeError::Raft(e.to_string()))?;
    let consensus = Arc::new(Consensus::new(
        id,
        info.clone(),
        raft.clone(),
        metrics.clone(),
        env.clock,
    ));
    let elections = Arc::new(pre_vote::Elections {
        id,
        raft: raft.clone(),
        log: log.clone(),
        contact: Arc::default(),
        quiet,
        token: token.clone(),
        dialer: env.dialer.clone(),
    });
    tokio::spawn(pre_vote::run(elections.clone(), heartbeat));

    let (queue, batches) = write_batcher::channel();
    let writes_waiting = queue.waiting();
    let filesystem = env.filesystem.clone().unwrap_or_else(|| Arc::new(disk::Statvfs));
    let disk = disk::DiskGuard::start(
        config.data_dir.clone(),
        filesystem,
        config.disk_reserve,
        config.disk_warning,
    );
    tokio::spawn(space_keeper::run(space_keeper::SpaceKeeper {
        raft: raft.clone(),
        log: log.clone(),
        space: space.clone(),
        metrics: metrics.clone(),
        disk: disk.clone(),
        max_log_bytes: config.max_log_size,
        kept_behind_snapshot: log_kept_behind_snapshot(config.snapshot_every),
    }));
    let writes = HostWrites::new(queue, state.clone(), disk.clone(), id, consensus.now_millis());
    let host_io = Arc::new(HostIo::new(consensus.clone(), state.clone(), writes, mirror.clone()));
    tokio::spawn(mirror::run(mirror.clone(), consensus.clone()));
    tokio::spawn(write_batcher::run(consensus.clone(), metrics.clone(), batches));
    tokio::spawn(copy_scheduler::run(copy_scheduler::CopyScheduler {
        proposer: consensus.clone(),
        state: state.clone(),
        host_writes: writes_waiting,
        disk: disk.clone(),
        metrics: metrics.clone(),
        copy_rate: config.copy_rate,
    }));

    let nbd_server = Arc::new(nbd::NbdServer {
        backend: host_io.clone(),
        consensus: consensus.clone(),
        token: token.clone(),
        metrics: metrics.clone(),
        limits: nbd::Limits::new(
            config.nbd_max_connections,
            config.nbd_handshake_limit,
            config.nbd_memory,
        ),
        tls: config.nbd_tls.clone(),
        dialer: env.dialer,
    });
    tokio::spawn(transport::serve(
        env.raft_listener,
        raft.clone(),
        token.clone(),
        Arc::new(nbd::Tunnels(nbd_server.clone())),
        elections,
    ));
    tokio::spawn(nbd::serve(env.nbd_listener, nbd_server));
    Ok(Core {
        id,
        info,
        raft,
        consensus,
        state,
        host_io,
        mirror,
        token,
        metrics,
        disk,
        space,
        log,
    })
}

pub async fn start(config: ServeConfig) -> Result<Running, ServeError> {
    let api_listener = listen(&config.api).await?;
    let raft_listener = listen(&config.raft).await?;
    let nbd_listener = listen(&config.nbd).await?;
    let nbd_addr = nbd_listener.local_addr().expect("bound");
    let api_url = config
        .advertise_api
        .clone()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| {
            let scheme = if config.api_tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{}", advertised(api_listener.local_addr().expect("bound")))
        });
    let raft_addr = config
        .advertise_raft
        .clone()
        .unwrap_or_else(|| advertised(raft_listener.local_addr().expect("bound")));
    let info = NodeInfo {
        api: api_url.clone(),
        raft: raft_addr,
    };
    let env = Environment {
        clock: Arc::new(clock::SystemClock),
        dialer: Arc::new(net::Tcp),
        raft_listener: Box::new(raft_listener),
        log_disk: None,
        filesystem: None,
        nbd_listener: Box::new(nbd_listener),
    };
    let Core {
        id,
        raft,
        consensus,
        state,
        host_io,
        mirror,
        token,
        metrics,
        disk,
        space,
        log,
        ..
    } = start_core(&config, info.clone(), env).await?;

    let mut peers = reqwest::Client::builder();
    if let Some(pem) = &config.api_ca {
        peers = peers.add_root_certificate(reqwest::Certificate::from_pem(pem).expect("checked at start"));
    }
    let peers = peers.build().map_err(|e| ServeError::Http(e.to_string()))?;
    let app = api::router(api::AdminApi {
        consensus: consensus.clone(),
        state: state.clone(),
        host_io,
        token: token.clone(),
        peers: peers.clone(),
        metrics,
        open_metrics: config.open_metrics,
        disk,
        space,
        log,
        mirror,
    });
    match config.api_tls.clone() {
        Some(acceptor) => {
            let listener = api::tls::TlsListener::new(api_listener, acceptor);
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "admin API stopped");
                }
            });
        }
        None => {
            tokio::spawn(async move {
                if let Err(e) = axum::serve(api_listener, app).await {
                    tracing::error!(error = %e, "admin API stopped");
                }
            });
        }
    }

    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| ServeError::Raft(e.to_string()))?;
    if !initialized {
        match &config.join {
            None => {
                raft.initialize(BTreeMap::from([(id, info.clone())]))
                    .await
                    .map_err(|e| ServeError::Raft(e.to_string()))?;
                tracing::info!(node = id, "initialised a new single-node cluster");
            }
            Some(url) => {
                let joining = Joining {
                    id,
                    api: info.api.clone(),
                    token,
                    peers,
                };
                tokio::spawn(join(joining, url.trim_end_matches('/').to_string()));
            }
        }
    }
    tracing::info!(node = id, api = %api_url, nbd = %nbd_addr, "flashcopy node serving");
    Ok(Running {
        consensus,
        state,
        api_url,
        nbd_addr,
    })
}

/// `flashcopy serve`: runs a node until SIGINT or SIGTERM; returns the exit status.
pub async fn run(args: ServeArgs) -> i32 {
    logs::init("info", args.log_format);
    let config = match args.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let running = match start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: serve: {e}");
            return 1;
        }
    };
    let ready = format!(
        "flashcopy: node {} serving the admin API at {} and NBD at nbd://{}",
        running.consensus.id(),
        running.api_url,
        running.nbd_addr
    );
    match args.log_format {
        LogFormat::Text => eprintln!("{ready}"),
        LogFormat::Json => tracing::info!(target: "flashcopy", "{ready}"),
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        reason = running.consensus.stopped() => {
            // Serving on without Raft would be a zombie: answering 503 while looking alive.
            eprintln!(
                "error: raft-stopped: node {} cannot go on: {reason}; check its data directory (free space, permissions), then restart it",
                running.consensus.id()
            );
            return 1;
        }
    }
    running.consensus.shutdown().await;
    // The state is written without a WAL: a clean stop puts it on disk, so the next start
    // re-applies nothing and an offline audit of the directory sees everything applied.
    if let Err(e) = running.state.flush() {
        eprintln!(
            "error: the applied state could not be flushed at stop ({e}); the next start re-applies it from the log"
        );
        return 1;
    }
    0
}

/// What a joining node tells the cluster, and how.
struct Joining {
    id: u64,
    api: String,
    token: ClusterToken,
    peers: reqwest::Client,
}

/// Asks an existing cluster to add this node, until it does.
async fn join(j: Joining, url: String) {
    let body = AddNode { id: j.id, url: j.api };
    loop {
        let mut request = j.peers.post(format!("{url}{API_PREFIX}/cluster/nodes")).json(&body);
        if !j.token.is_open() {
            request = request.bearer_auth(j.token.secret());
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
