//! Host I/O over NBD (SPEC §6): fixed-newstyle handshake, pipelined transmission.
//!
//! Every node accepts NBD connections. The leader serves them itself; a follower forwards the
//! whole connection, byte for byte, through an authenticated tunnel on the leader's Raft port
//! (`transport::open_tunnel`), so the leader answers every request with linearizable reads and
//! committed writes. When the leader steps down its connections end (ESHUTDOWN), and a client
//! that reconnects to any node reaches the new leader.

pub mod backend;
mod handshake;
mod transmission;
pub mod wire;

use crate::controller::Controller;
use crate::transport::{self, TunnelKind};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// How long a new connection waits for the cluster to have a leader.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// Accepts NBD connections until the listener fails.
pub async fn serve(listener: TcpListener, controller: Arc<Controller>) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "NBD accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        controller.metrics.nbd_connections.fetch_add(1, Ordering::Relaxed);
        let c = controller.clone();
        tokio::spawn(async move {
            match leader(&c).await {
                Some((id, _)) if id == c.id => serve_here(socket, c, &peer.to_string()).await,
                Some((id, info)) => {
                    c.metrics.nbd_connections_proxied.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = forward(socket, &c, &info.raft).await {
                        tracing::info!(%peer, leader = id, error = %e, "forwarded NBD connection ended");
                    }
                }
                None => tracing::warn!(%peer, "NBD connection closed: the cluster has no leader"),
            }
        });
    }
}

/// Serves a connection a follower forwarded here. It is never forwarded again: if this node no
/// longer leads, the client finds out (ESHUTDOWN, or a closed connection) and reconnects.
pub fn serve_tunnelled(stream: TcpStream, controller: Arc<Controller>) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "tunnel".to_string(), |a| format!("tunnel from {a}"));
    tokio::spawn(async move {
        if controller.is_leader() {
            serve_here(stream, controller, &peer).await;
        } else {
            tracing::info!(%peer, "tunnelled NBD connection closed: this node does not lead");
        }
    });
}

async fn serve_here<S>(mut stream: S, c: Arc<Controller>, peer: &str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let export = match handshake::negotiate(&mut stream, &*c).await {
        Ok(Some(export)) => export,
        Ok(None) => return,
        Err(e) => {
            tracing::info!(%peer, error = %e, "NBD handshake ended");
            return;
        }
    };
    tracing::debug!(%peer, volume = %export.name, "NBD transmission starts");
    let metrics = c.metrics.clone();
    if let Err(e) = transmission::serve(stream, export, c, metrics).await {
        tracing::info!(%peer, error = %e, "NBD connection ended");
    }
}

/// The leader, waiting a while for one to be elected.
async fn leader(c: &Controller) -> Option<(u64, storage::NodeInfo)> {
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        if let Some(leader) = c.leader() {
            return Some(leader);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn forward(mut client: TcpStream, c: &Controller, leader_raft: &str) -> std::io::Result<()> {
    let mut leader = transport::open_tunnel(leader_raft, &c.token, TunnelKind::Nbd).await?;
    tokio::io::copy_bidirectional(&mut client, &mut leader).await?;
    Ok(())
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
