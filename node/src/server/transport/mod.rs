//! The peer transport: Raft RPCs as length-prefixed bincode frames over TCP ([`wire`]).
//!
//! A connection is authenticated first, with a small `Hello` frame (the cluster secret,
//! compared in constant time, and the sender's node id); a wrong secret closes it before
//! anything large is read. After that, an RPC is served only if it speaks for the node the
//! `Hello` named, and a vote or a tunnel only from a member (see `server::admitted`). openraft
//! asks the factory for a new `PeerClient` when it (re)starts replication to a peer and for
//! every `ensure_linearizable`; the clients share a small pool of idle authenticated connections
//! per peer, so a new client seldom dials: a connection is taken out for one exchange and put
//! back only after a whole reply. The framing is generic over `AsyncRead + AsyncWrite`, so a
//! simulated network (turmoil) can replace TCP.
//!
//! The same port also carries tunnels: after a `Tunnel` request the connection becomes a raw
//! byte stream handed to the node (NBD connections a follower forwards to the leader). A
//! tunnel is never forwarded again, so a stale view of the leader cannot loop.

mod client;
mod server;
pub mod wire;

pub use client::{ask_pre_vote, open_tunnel, Network, PeerClient};
pub use server::{serve, TunnelHandler};
pub use wire::{PreVoteRequest, TunnelKind};
