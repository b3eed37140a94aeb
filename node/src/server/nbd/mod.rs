//! Host I/O over NBD (SPEC §6): fixed-newstyle handshake with TLS, structured replies, block
//! status and extended headers; pipelined transmission.
//!
//! Every node accepts NBD connections. The leader serves them itself; a follower forwards the
//! whole connection, byte for byte, through an authenticated tunnel on the leader's Raft port
//! (`transport::open_tunnel`), so the leader answers every request with linearizable reads and
//! committed writes. TLS ends at the leader too, so the identity a client proves there is the
//! one its access is checked against (every node needs the same credentials); the tunnel says
//! whether the follower requires TLS, and the stricter policy holds. When
//! the leader steps down its connections end (ESHUTDOWN), and a client that reconnects to any
//! node reaches the new leader.

pub mod backend;
mod connection;
mod handshake;
pub mod tls;
mod transmission;
pub mod wire;

pub use handshake::TlsPolicy;

use crate::server::consensus::Consensus;
use crate::server::host_io::HostIo;
use crate::server::metrics::Metrics;
use crate::server::net::{Conn, Dialer, Listener};
use crate::server::throttled::Throttled;
use crate::server::token::ClusterToken;
use crate::server::transport::{self, TunnelKind};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long a new connection waits for a leader it can reach.
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// How long one attempt to open a tunnel to the leader may take.
const TUNNEL_WAIT: Duration = Duration::from_secs(2);

/// What the NBD server runs on: the volumes, and who leads (to forward connections to).
pub struct NbdServer {
    pub backend: Arc<HostIo>,
    pub consensus: Arc<Consensus>,
    pub token: ClusterToken,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub tls: TlsPolicy,
    /// Dials the leader's Raft port for tunnels.
    pub dialer: Arc<dyn Dialer>,
}

/// What NBD clients may hold of a node, so no client — slow, idle or malformed — can take a
/// node's memory or file handles from the others (or from the admin API).
pub struct Limits {
    /// Connections open at once (direct and tunnelled); more are closed at accept.
    connections: Arc<Semaphore>,
    /// Time a connection has to pick an export.
    pub handshake: Duration,
    /// Request and reply data held in memory across all connections, in KiB permits; each
    /// connection also has its own budget (`transmission::CONNECTION_BUDGET_KIB`).
    memory: Arc<Semaphore>,
}

impl Limits {
    pub fn new(max_connections: usize, handshake: Duration, memory_bytes: u64) -> Self {
        let kib = (memory_bytes / 1024).clamp(u64::from(transmission::CONNECTION_BUDGET_KIB), u64::from(u32::MAX));
        Limits {
            connections: Arc::new(Semaphore::new(max_connections)),
            handshake,
            memory: Arc::new(Semaphore::new(kib as usize)),
        }
    }
}

static REFUSED: Throttled = Throttled::new();

/// A slot among the connections the node serves at once, or `None` (and a warning) when full.
fn admit(server: &NbdServer, peer: &str) -> Option<OwnedSemaphorePermit> {
    match server.limits.connections.clone().try_acquire_owned() {
        Ok(slot) => Some(slot),
        Err(_) => {
            server.metrics.nbd_connections_refused.fetch_add(1, Ordering::Relaxed);
            REFUSED.warn(|held_back| {
                tracing::warn!(%peer, held_back, "NBD connection closed: the connection limit (--nbd-max-connections) is reached")
            });
            None
        }
    }
}

/// Accepts NBD connections until the listener fails.
pub async fn serve(mut listener: Box<dyn Listener>, server: Arc<NbdServer>) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file handles, say: wait for some to be released.
                tracing::warn!(error = %e, "NBD accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = admit(&server, &peer) else {
            continue;
        };
        server.metrics.nbd_connections.fetch_add(1, Ordering::Relaxed);
        let c = server.clone();
        tokio::spawn(async move {
            let _slot = slot;
            route(socket, &c, &peer).await;
        });
    }
}

/// Serves a new connection here if this node leads, else forwards it to the leader. While the
/// leader is unknown or cannot be reached (an election, a leader that just died), the client
/// waits — up to `LEADER_WAIT` — instead of being dropped before the greeting.
async fn route(socket: Conn, c: &NbdServer, peer: &str) {
    let deadline = Instant::now() + LEADER_WAIT;
    let mut last_error = String::from("the cluster has no leader");
    while Instant::now() < deadline {
        match c.consensus.leader() {
            // Confirmed with the majority first: once the greeting is sent the connection can
            // no longer be forwarded, so a leader that was just deposed must not take it.
            Some((id, _)) if id == c.consensus.id() => match c.consensus.linearizable().await {
                Ok(()) => return serve_here(socket, c, &c.tls, peer).await,
                Err(e) => last_error = format!("this node's leadership is not confirmed: {e}"),
            },
            Some((id, info)) => {
                let kind = TunnelKind::Nbd {
                    tls_required: c.tls.required,
                };
                match transport::open_tunnel(&*c.dialer, &info.raft, &c.token, c.consensus.id(), kind, TUNNEL_WAIT)
                    .await
                {
                    Ok(mut tunnel) => {
                        c.metrics.nbd_connections_proxied.fetch_add(1, Ordering::Relaxed);
                        let mut socket = socket;
                        if let Err(e) = tokio::io::copy_bidirectional(&mut socket, &mut tunnel).await {
                            tracing::info!(%peer, leader = id, error = %e, "forwarded NBD connection ended");
                        }
                        return;
                    }
                    Err(e) => last_error = format!("leader {id} at {}: {e}", info.raft),
                }
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(%peer, reason = %last_error, "NBD connection closed: no reachable leader");
}

/// The NBD end of tunnels from followers: taken only while this node leads, and never
/// forwarded again (if this node stops leading, the client is told ESHUTDOWN and reconnects).
pub struct Tunnels(pub Arc<NbdServer>);

impl transport::TunnelHandler for Tunnels {
    fn accepts(&self, kind: TunnelKind) -> bool {
        // A full node refuses here, so the follower hears it instead of a silent close.
        matches!(kind, TunnelKind::Nbd { .. })
            && self.0.consensus.is_leader()
            && self.0.limits.connections.available_permits() > 0
    }

    fn serve(&self, kind: TunnelKind, stream: Conn, peer: String) {
        let TunnelKind::Nbd { tls_required } = kind;
        // The stricter of the two nodes' policies (a leader without credentials then refuses
        // the connection: STARTTLS cannot succeed).
        let tls = TlsPolicy {
            server: self.0.tls.server.clone(),
            required: self.0.tls.required || tls_required,
        };
        let Some(slot) = admit(&self.0, &peer) else {
            return;
        };
        let server = self.0.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_here(stream, &server, &tls, &peer).await;
        });
    }
}

async fn serve_here<S>(stream: S, c: &NbdServer, tls: &TlsPolicy, peer: &str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let negotiated = tokio::time::timeout(c.limits.handshake, handshake::negotiate(stream, &*c.backend, tls)).await;
    let negotiated = match negotiated {
        Ok(Ok(Some(negotiated))) => negotiated,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "NBD handshake ended");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, limit = ?c.limits.handshake, "NBD connection closed: no export chosen in time");
            return;
        }
    };
    tracing::debug!(%peer, volume = %negotiated.export.name, framing = ?negotiated.framing, "NBD transmission starts");
    let budget = transmission::Budget::new(c.limits.memory.clone());
    if let Err(e) = transmission::serve(negotiated, c.backend.clone(), c.metrics.clone(), budget).await {
        tracing::info!(%peer, error = %e, "NBD connection ended");
    }
}

/// Reads and drops `length` bytes: the payload of a request that is refused.
async fn discard<R: AsyncRead + Unpin>(reader: &mut R, mut length: u64) -> std::io::Result<()> {
    let mut sink = vec![0u8; 64 * 1024];
    while length > 0 {
        let n = (length as usize).min(sink.len());
        reader.read_exact(&mut sink[..n]).await?;
        length -= n as u64;
    }
    Ok(())
}
