//! The peer transport: Raft RPCs as length-prefixed bincode frames over TCP.
//!
//! One request frame, one reply frame, on a connection kept per peer. The framing is generic
//! over `AsyncRead + AsyncWrite`, so a simulated network (turmoil) can replace TCP. Every RPC
//! honours openraft's deadline, and a peer that cannot be reached is reported `Unreachable`.
//!
//! The same port also carries tunnels: after an authenticated `Tunnel` request the connection
//! becomes a raw byte stream handed to the node (NBD connections a follower forwards to the
//! leader). A tunnel is never forwarded again, so a stale view of the leader cannot loop.

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::Raft;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use storage::{NodeInfo, TypeConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Frames larger than this are refused (snapshot chunks are far smaller).
const MAX_FRAME: usize = 256 << 20;

#[derive(Serialize, Deserialize)]
struct PeerRequest {
    /// The cluster secret (empty when the cluster runs without a token).
    token: String,
    rpc: Rpc,
}

#[derive(Serialize, Deserialize)]
enum Rpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Turn this connection into a raw stream for the given service.
    Tunnel(TunnelKind),
}

/// What a tunnel carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TunnelKind {
    Nbd,
}

/// Receives the streams of accepted tunnels.
pub type TunnelHandler = Arc<dyn Fn(TunnelKind, TcpStream) + Send + Sync>;

#[derive(Serialize, Deserialize)]
enum Reply {
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    TunnelOpen,
    Unauthorized,
}

async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(out: &mut W, value: &T) -> io::Result<()> {
    let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(io::Error::other)?;
    out.write_all(&(bytes.len() as u32).to_le_bytes()).await?;
    out.write_all(&bytes).await?;
    out.flush().await
}

async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(input: &mut R) -> io::Result<T> {
    let mut len = [0; 4];
    input.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "peer frame too large"));
    }
    let mut buf = vec![0; len];
    input.read_exact(&mut buf).await?;
    bincode::serde::decode_from_slice(&buf, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Serves Raft RPCs and tunnels from peers until the listener fails.
pub async fn serve(listener: TcpListener, raft: Raft<TypeConfig>, token: Arc<String>, tunnels: TunnelHandler) {
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (raft, token, tunnels) = (raft.clone(), token.clone(), tunnels.clone());
        tokio::spawn(async move {
            loop {
                let request: PeerRequest = match read_frame(&mut stream).await {
                    Ok(r) => r,
                    Err(e) => {
                        if e.kind() != io::ErrorKind::UnexpectedEof {
                            tracing::debug!(%peer, error = %e, "peer connection closed");
                        }
                        return;
                    }
                };
                let reply = if request.token != *token {
                    tracing::warn!(%peer, "peer RPC with a wrong cluster token refused");
                    Reply::Unauthorized
                } else {
                    match request.rpc {
                        Rpc::AppendEntries(r) => Reply::AppendEntries(raft.append_entries(r).await),
                        Rpc::Vote(r) => Reply::Vote(raft.vote(r).await),
                        Rpc::InstallSnapshot(r) => Reply::InstallSnapshot(raft.install_snapshot(r).await),
                        Rpc::Tunnel(kind) => {
                            if write_frame(&mut stream, &Reply::TunnelOpen).await.is_ok() {
                                tunnels(kind, stream);
                            }
                            return;
                        }
                    }
                };
                if write_frame(&mut stream, &reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A connection to a peer's Raft port, for small frames sent at once.
async fn dial(addr: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens a tunnel of `kind` to the peer whose Raft address is `addr`.
pub async fn open_tunnel(addr: &str, token: &str, kind: TunnelKind) -> io::Result<TcpStream> {
    let mut stream = dial(addr).await?;
    let request = PeerRequest {
        token: token.to_string(),
        rpc: Rpc::Tunnel(kind),
    };
    write_frame(&mut stream, &request).await?;
    match read_frame::<_, Reply>(&mut stream).await? {
        Reply::TunnelOpen => Ok(stream),
        Reply::Unauthorized => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "peer refused our cluster token",
        )),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "peer answered another RPC")),
    }
}

/// Creates a client per peer.
pub struct Network {
    pub token: Arc<String>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> PeerClient {
        PeerClient {
            target,
            addr: node.raft.clone(),
            token: self.token.clone(),
            stream: None,
        }
    }
}

pub struct PeerClient {
    target: u64,
    addr: String,
    token: Arc<String>,
    stream: Option<TcpStream>,
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
        let request = PeerRequest {
            token: self.token.to_string(),
            rpc,
        };
        let addr = self.addr.clone();
        let attempt = async {
            if self.stream.is_none() {
                self.stream = Some(dial(&addr).await?);
            }
            let stream = self.stream.as_mut().expect("connected above");
            write_frame(stream, &request).await?;
            read_frame::<_, Reply>(stream).await
        };
        let result = match tokio::time::timeout(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no reply before the deadline")),
        };
        if result.is_err() {
            self.stream = None;
        }
        result.map_err(|source| ExchangeError { addr, source })
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
        match self
            .exchange(Rpc::AppendEntries(rpc), option.hard_ttl())
            .await
            .map_err(Self::unreachable)?
        {
            Reply::AppendEntries(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Reply::Unauthorized => Err(Self::unexpected("peer refused our cluster token")),
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
            Reply::Unauthorized => Err(Self::unexpected("peer refused our cluster token")),
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
            Reply::Unauthorized => Err(Self::unexpected("peer refused our cluster token")),
            _ => Err(Self::unexpected("peer answered another RPC")),
        }
    }
}
