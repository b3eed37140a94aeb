//! The peer wire format: length-prefixed bincode frames. A connection opens with a small
//! `Hello` (the cluster secret and the sender's node id), answered before anything larger is
//! read; then one `Rpc` frame, one `Reply` frame, until either side closes. Public, so tests and
//! a simulated network can speak it.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::LogId;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io;
use storage::TypeConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The first frame of a connection, at most this long: nothing larger is read from a peer that
/// has not shown the cluster secret.
pub const MAX_HELLO: usize = 4 << 10;
/// Frames of an authenticated connection, at most (replication requests are bounded far below:
/// `storage::REPLICATION_BYTES`, plus one entry).
pub const MAX_FRAME: usize = 256 << 20;

#[derive(Serialize, Deserialize)]
pub struct Hello {
    /// The cluster secret (empty when the cluster runs without one).
    pub token: String,
    /// The sender's node id: RPCs on this connection must come from it, and it must be a member.
    pub from: u64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Welcome {
    Accepted,
    /// Wrong secret: the connection is closed.
    Unauthorized,
}

#[derive(Serialize, Deserialize)]
pub enum Rpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Turn this connection into a raw stream for the given service.
    Tunnel(TunnelKind),
    /// Would you vote for me (`server::pre_vote`)? Changes nothing at the peer.
    PreVote(PreVoteRequest),
}

/// A pre-vote asks with the candidate's last log id.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub last_log_id: Option<LogId<u64>>,
}

/// What a tunnel carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TunnelKind {
    /// An NBD connection a follower forwards, byte for byte.
    Nbd {
        /// The follower requires TLS (`--nbd-tls require`): the leader then requires it of this
        /// connection too, so no client gets around a node's policy through the leader's.
        tls_required: bool,
    },
}

#[derive(Serialize, Deserialize)]
pub enum Reply {
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    TunnelOpen,
    /// The peer does not take this tunnel now (it does not lead): try the leader.
    TunnelRefused,
    /// The sender is not a member of the cluster, or speaks for another node: the connection
    /// is closed.
    NotMember,
    /// Whether the peer would vote for the asking node now.
    PreVote(bool),
}

pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(out: &mut W, value: &T) -> io::Result<()> {
    let len = encoded_len(value)?;
    let len32 = u32::try_from(len).map_err(|_| io::Error::other("frame over 4 GiB"))?;
    let mut frame = Vec::with_capacity(4 + len);
    frame.extend_from_slice(&len32.to_le_bytes());
    bincode::serde::encode_into_std_write(value, &mut frame, bincode::config::standard()).map_err(io::Error::other)?;
    out.write_all(&frame).await?;
    out.flush().await
}

/// `value` encoded into a buffer of exactly its size: an append request carries up to several
/// MiB of host data, which a buffer grown by doubling would copy again and again.
pub fn encode_exact<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(encoded_len(value)?);
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard()).map_err(io::Error::other)?;
    Ok(out)
}

fn encoded_len<T: Serialize>(value: &T) -> io::Result<usize> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, bincode::config::standard()).map_err(io::Error::other)?;
    Ok(size.bytes_written)
}

/// Reads one frame of at most `max` bytes (the length is checked before anything is allocated).
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(input: &mut R, max: usize) -> io::Result<T> {
    let mut len = [0; 4];
    input.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("peer frame of {len} bytes, over the {max}-byte limit"),
        ));
    }
    let mut buf = vec![0; len];
    input.read_exact(&mut buf).await?;
    bincode::serde::decode_from_slice(&buf, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
