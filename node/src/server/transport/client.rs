//! The calling side of the peer port: openraft's network factory and clients, and tunnels to
//! the leader.

use super::wire::*;
use crate::server::net::{Conn, Dialer};
use crate::server::token::ClusterToken;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use storage::{NodeInfo, TypeConfig};

/// An authenticated connection to a peer's Raft port, as node `from`.
async fn connect(dialer: &dyn Dialer, addr: &str, token: &ClusterToken, from: u64) -> io::Result<Conn> {
    let mut stream = dialer.dial(addr).await?;
    let hello = Hello {
        token: token.secret().to_string(),
        from,
    };
    write_frame(&mut stream, &hello).await?;
    match read_frame::<_, Welcome>(&mut stream, MAX_HELLO).await? {
        Welcome::Accepted => Ok(stream),
        Welcome::Unauthorized => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the peer refused our cluster token",
        )),
    }
}

/// Opens a tunnel of `kind` to the peer whose Raft address is `addr`, within `deadline`.
pub async fn open_tunnel(
    dialer: &dyn Dialer,
    addr: &str,
    token: &ClusterToken,
    from: u64,
    kind: TunnelKind,
    deadline: Duration,
) -> io::Result<Conn> {
    let attempt = async {
        let mut stream = connect(dialer, addr, token, from).await?;
        write_frame(&mut stream, &Rpc::Tunnel(kind)).await?;
        match read_frame::<_, Reply>(&mut stream, MAX_HELLO).await? {
            Reply::TunnelOpen => Ok(stream),
            Reply::TunnelRefused => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the peer does not lead any more",
            )),
            Reply::NotMember => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the peer does not count this node as a member",
            )),
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "peer answered another RPC")),
        }
    };
    tokio::time::timeout(deadline, attempt).await.unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer did not answer in time",
        ))
    })
}

/// Asks the peer whose Raft address is `addr` for a pre-vote, within `deadline`.
pub async fn ask_pre_vote(
    dialer: &dyn Dialer,
    addr: &str,
    token: &ClusterToken,
    from: u64,
    request: PreVoteRequest,
    deadline: Duration,
) -> io::Result<bool> {
    let attempt = async {
        let mut stream = connect(dialer, addr, token, from).await?;
        match send(&mut stream, &Rpc::PreVote(request)).await {
            Ok(Reply::PreVote(granted)) => Ok(granted),
            // A member of an older version (during a rolling upgrade) cannot read the request
            // and closes the connection: its real vote decides, as before pre-votes.
            Err(e) if matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset) => Ok(true),
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        }
    };
    tokio::time::timeout(deadline, attempt)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no pre-vote in time")))
}

/// Creates a client per peer.
pub struct Network {
    /// This node's id: peers accept votes only from members.
    id: u64,
    token: ClusterToken,
    idle: Idle,
    dialer: Arc<dyn Dialer>,
}

impl Network {
    pub fn new(id: u64, token: ClusterToken, dialer: Arc<dyn Dialer>) -> Self {
        Network {
            id,
            token,
            idle: Idle::default(),
            dialer,
        }
    }
}

/// Idle authenticated connections, by peer address, shared by every client the factory makes:
/// openraft asks for a new client for every `ensure_linearizable`, and each would otherwise
/// dial and authenticate again.
#[derive(Clone, Default)]
struct Idle(Arc<Mutex<BTreeMap<String, Vec<Conn>>>>);

/// Idle connections kept per peer, at most.
const IDLE_PER_PEER: usize = 4;

impl Idle {
    fn take(&self, addr: &str) -> Option<Conn> {
        self.0.lock().expect("not poisoned").get_mut(addr)?.pop()
    }

    fn put(&self, addr: &str, stream: Conn) {
        let mut idle = self.0.lock().expect("not poisoned");
        let streams = idle.entry(addr.to_string()).or_default();
        if streams.len() < IDLE_PER_PEER {
            streams.push(stream);
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> PeerClient {
        PeerClient {
            target,
            addr: node.raft.clone(),
            token: self.token.clone(),
            from: self.id,
            stream: None,
            idle: self.idle.clone(),
            dialer: self.dialer.clone(),
        }
    }
}

pub struct PeerClient {
    target: u64,
    addr: String,
    token: ClusterToken,
    from: u64,
    stream: Option<Conn>,
    idle: Idle,
    dialer: Arc<dyn Dialer>,
}

impl Drop for PeerClient {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            self.idle.put(&self.addr, stream);
        }
    }
}

/// One request and its reply on an authenticated connection.
async fn send(stream: &mut Conn, rpc: &Rpc) -> io::Result<Reply> {
    write_frame(stream, rpc).await?;
    read_frame(stream, MAX_FRAME).await
}

/// `None` if the host data of all `entries` fits in `budget` bytes; else how many leading
/// entries do (at least one).
fn entries_that_fit(entries: &[openraft::Entry<TypeConfig>], budget: usize) -> Option<u64> {
    let mut total = 0usize;
    for (i, entry) in entries.iter().enumerate() {
        if let openraft::EntryPayload::Normal(request) = &entry.payload {
            total += request.command.payload_bytes();
        }
        if total > budget {
            return Some(i.max(1) as u64);
        }
    }
    None
}

/// A failed exchange: the connection is useless, the peer is unreachable for now.
#[derive(Debug, thiserror::Error)]
#[error("peer {addr}: {source}")]
struct ExchangeError {
    addr: String,
    source: io::Error,
}

impl PeerClient {
    async fn exchange(&mut self, rpc: Rpc, deadline: Duration) -> Result<Reply, ExchangeError> {
        let addr = self.addr.clone();
        // The connection is taken out for the exchange and put back only after a whole reply:
        // if openraft drops this future at its own deadline, a half-written request or an
        // unread reply must not be left on a connection the next exchange would reuse.
        let kept = self.stream.take().or_else(|| self.idle.take(&addr));
        let attempt = async {
            // A kept connection may have been closed by the peer meanwhile (a restart): then
            // once more on a new one. Raft RPCs may be repeated.
            if let Some(mut stream) = kept {
                if let Ok(reply) = send(&mut stream, &rpc).await {
                    return Ok((stream, reply));
                }
            }
            let mut stream = connect(&*self.dialer, &addr, &self.token, self.from).await?;
            let reply = send(&mut stream, &rpc).await?;
            Ok((stream, reply))
        };
        let result = match tokio::time::timeout(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no reply before the deadline")),
        };
        match result {
            Ok((stream, reply)) => {
                // After a refusal the peer closes the connection: do not keep it.
                if !matches!(reply, Reply::NotMember) {
                    self.stream = Some(stream);
                }
                Ok(reply)
            }
            Err(source) => Err(ExchangeError { addr, source }),
        }
    }

    fn unreachable<E: std::error::Error>(e: ExchangeError) -> RPCError<u64, NodeInfo, E> {
        RPCError::Unreachable(Unreachable::new(&e))
    }

    fn unexpected<E: std::error::Error>(what: &str) -> RPCError<u64, NodeInfo, E> {
        let e = io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        // The log store already bounds what it hands out for replication; this catches any
        // larger request and tells openraft how many entries to send instead.
        if rpc.entries.len() > 1 {
            if let Some(fit) = entries_that_fit(&rpc.entries, storage::REPLICATION_BYTES) {
                return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fit)));
            }
        }
        match self
            .exchange(Rpc::AppendEntries(rpc), option.hard_ttl())
            .await
            .map_err(Self::unreachable)?
        {
            Reply::AppendEntries(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Reply::NotMember => Err(Self::unexpected("the peer does not count this node as a member")),
            _ => Err(Self::unexpected("peer answered another RPC")),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64, InstallSnapshotError>>> {
        match self
            .exchange(Rpc::InstallSnapshot(rpc), option.hard_ttl())
            .await
            .map_err(Self::unreachable)?
        {
            Reply::InstallSnapshot(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Reply::NotMember => Err(Self::unexpected("the peer does not count this node as a member")),
            _ => Err(Self::unexpected("peer answered another RPC")),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        match self
            .exchange(Rpc::Vote(rpc), option.hard_ttl())
            .await
            .map_err(Self::unreachable)?
        {
            Reply::Vote(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Reply::NotMember => Err(Self::unexpected("the peer does not count this node as a member")),
            _ => Err(Self::unexpected("peer answered another RPC")),
        }
    }
}
