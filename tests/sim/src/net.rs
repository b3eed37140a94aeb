//! The node's network seam (`node::server::net`) filled with turmoil's simulated TCP.

use node::server::net::{Conn, Dialer, Listener};
use std::future::Future;
use std::io;
use std::pin::Pin;

type Pending<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// Dials over the simulated network ("n2:7000" resolves through turmoil's names).
pub struct SimDialer;

impl Dialer for SimDialer {
    fn dial<'a>(&'a self, addr: &'a str) -> Pending<'a, Conn> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(stream) as Conn)
        })
    }
}

/// Accepts on the simulated network.
pub struct SimListener(pub turmoil::net::TcpListener);

impl Listener for SimListener {
    fn accept(&mut self) -> Pending<'_, (Conn, String)> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            Ok((Box::new(stream) as Conn, peer.to_string()))
        })
    }
}

/// Binds `0.0.0.0:port` on the current simulated host.
pub async fn listen(port: u16) -> io::Result<SimListener> {
    Ok(SimListener(turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?))
}
