//! The serving side of the peer port: authenticate a connection, then answer RPCs from members
//! (or hand the connection to a tunnel's end).

use super::wire::*;
use crate::server::net::{Conn, Listener};
use crate::server::pre_vote::Elections;
use crate::server::throttled::Throttled;
use crate::server::token::ClusterToken;
use openraft::Raft;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use storage::TypeConfig;

/// Time a new connection has to show the cluster secret.
const HELLO_WAIT: Duration = Duration::from_secs(5);

/// Where tunnels end: it says whether it takes one now (the NBD server takes connections only
/// while this node leads) and then serves the stream.
pub trait TunnelHandler: Send + Sync + 'static {
    fn accepts(&self, kind: TunnelKind) -> bool;
    fn serve(&self, kind: TunnelKind, stream: Conn, peer: String);
}

static WRONG_TOKEN: Throttled = Throttled::new();
static NOT_MEMBER: Throttled = Throttled::new();

/// Serves Raft RPCs and tunnels from peers until the listener fails.
pub async fn serve(
    mut listener: Box<dyn Listener>,
    raft: Raft<TypeConfig>,
    token: ClusterToken,
    tunnels: Arc<dyn TunnelHandler>,
    elections: Arc<Elections>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (raft, token, tunnels, elections) = (raft.clone(), token.clone(), tunnels.clone(), elections.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &peer, &raft, &token, &*tunnels, &elections).await {
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    tracing::debug!(%peer, error = %e, "peer connection closed");
                }
            }
        });
    }
}

async fn connection(
    mut stream: Conn,
    peer: &str,
    raft: &Raft<TypeConfig>,
    token: &ClusterToken,
    tunnels: &dyn TunnelHandler,
    elections: &Elections,
) -> io::Result<()> {
    let hello: Hello = tokio::time::timeout(HELLO_WAIT, read_frame(&mut stream, MAX_HELLO))
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no hello in time")))?;
    if !token.matches(&hello.token) {
        WRONG_TOKEN.warn(|held_back| tracing::warn!(%peer, held_back, "peer with a wrong cluster token refused"));
        return write_frame(&mut stream, &Welcome::Unauthorized).await;
    }
    write_frame(&mut stream, &Welcome::Accepted).await?;
    loop {
        let rpc: Rpc = read_frame(&mut stream, MAX_FRAME).await?;
        if !admitted(raft, hello.from, &rpc) {
            NOT_MEMBER.warn(|held_back| {
                tracing::warn!(%peer, node = hello.from, held_back, "peer RPC refused: not from a member of this cluster")
            });
            return write_frame(&mut stream, &Reply::NotMember).await;
        }
        let reply = match rpc {
            Rpc::AppendEntries(r) => {
                elections.contact.heard_from(&r.vote, raft);
                Reply::AppendEntries(raft.append_entries(r).await)
            }
            Rpc::Vote(r) => Reply::Vote(raft.vote(r).await),
            Rpc::InstallSnapshot(r) => {
                elections.contact.heard_from(&r.vote, raft);
                Reply::InstallSnapshot(raft.install_snapshot(r).await)
            }
            Rpc::PreVote(r) => Reply::PreVote(elections.grant(&r)),
            Rpc::Tunnel(kind) if tunnels.accepts(kind) => {
                write_frame(&mut stream, &Reply::TunnelOpen).await?;
                tunnels.serve(kind, stream, format!("tunnel from {peer}"));
                return Ok(());
            }
            Rpc::Tunnel(_) => Reply::TunnelRefused,
        };
        write_frame(&mut stream, &reply).await?;
    }
}

/// Whether `rpc` may be served: it speaks for the node the connection said it is, and a vote
/// request (the message that makes a leader step down) comes from a member this node knows. A
/// node that knows no membership yet (it is about to be added) accepts any holder of the
/// secret. Replication is not checked against membership: a lagging or re-added node may not
/// know the current leader yet, and must still hear from it (the secret authenticates it).
fn admitted(raft: &Raft<TypeConfig>, from: u64, rpc: &Rpc) -> bool {
    let speaks_for = match rpc {
        Rpc::AppendEntries(r) => r.vote.leader_id().voted_for(),
        Rpc::Vote(r) => r.vote.leader_id().voted_for(),
        Rpc::InstallSnapshot(r) => r.vote.leader_id().voted_for(),
        Rpc::Tunnel(_) | Rpc::PreVote(_) => Some(from),
    };
    if speaks_for != Some(from) {
        return false;
    }
    if !matches!(rpc, Rpc::Vote(_) | Rpc::Tunnel(_) | Rpc::PreVote(_)) {
        return true;
    }
    let metrics = raft.metrics().borrow().clone();
    let mut members = metrics.membership_config.nodes().map(|(id, _)| *id).peekable();
    members.peek().is_none() || members.any(|id| id == from)
}
