//! The network as the server's peer port and NBD server see it: listening and dialling, behind
//! one small seam that a simulation fills with its own network (turmoil's). Connections are
//! boxed streams, so nothing above this file names TCP; the box costs one indirect call per
//! read or write, next to a system call.

use std::future::Future;
use std::io;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// A connection's byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> Stream for T {}

pub type Conn = Box<dyn Stream>;

type Pending<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// Opens connections to peers (their Raft ports).
pub trait Dialer: Send + Sync + 'static {
    fn dial<'a>(&'a self, addr: &'a str) -> Pending<'a, Conn>;
}

/// Accepts connections; each comes with the peer's address, for logs.
pub trait Listener: Send + 'static {
    fn accept(&mut self) -> Pending<'_, (Conn, String)>;
}

/// TCP, as the product runs. Requests and replies are written whole: no Nagle delay.
pub struct Tcp;

impl Dialer for Tcp {
    fn dial<'a>(&'a self, addr: &'a str) -> Pending<'a, Conn> {
        Box::pin(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Conn)
        })
    }
}

impl Listener for TcpListener {
    fn accept(&mut self) -> Pending<'_, (Conn, String)> {
        Box::pin(async move {
            let (stream, peer) = TcpListener::accept(self).await?;
            let _ = stream.set_nodelay(true);
            Ok((Box::new(stream) as Conn, peer.to_string()))
        })
    }
}
