//! HTTPS for the admin API (`--api-tls-cert`, `--api-tls-key`): clients and remote sites then
//! reach it over TLS and check its certificate against a CA they name (`--ca-file`,
//! `mkpprcpath --remote-ca`). Handshakes run on their own tasks, bounded in time, so a client
//! that stalls one holds up no other.

use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod};
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_openssl::SslStream;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// The admin API's TLS context, built once at start.
#[derive(Clone)]
pub struct ApiTls(Arc<SslAcceptor>);

impl std::fmt::Debug for ApiTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiTls")
    }
}

/// The server's certificate chain and key, checked at start.
pub fn acceptor(cert: &Path, key: &Path) -> Result<ApiTls, String> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(|e| e.to_string())?;
    builder
        .set_certificate_chain_file(cert)
        .map_err(|e| format!("--api-tls-cert {}: {e}", cert.display()))?;
    builder
        .set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| format!("--api-tls-key {}: {e}", key.display()))?;
    builder
        .check_private_key()
        .map_err(|_| format!("--api-tls-key {}: does not match --api-tls-cert", key.display()))?;
    Ok(ApiTls(Arc::new(builder.build())))
}

/// Accepted connections, handshaken.
pub struct TlsListener {
    ready: mpsc::Receiver<(SslStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, ApiTls(acceptor): ApiTls) -> TlsListener {
        let local = listener.local_addr().expect("bound");
        let (done, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (acceptor, done) = (acceptor.clone(), done.clone());
                tokio::spawn(async move {
                    let Ok(ssl) = Ssl::new(acceptor.context()) else {
                        return;
                    };
                    let Ok(mut tls) = SslStream::new(ssl, tcp) else {
                        return;
                    };
                    match tokio::time::timeout(HANDSHAKE_LIMIT, Pin::new(&mut tls).accept()).await {
                        Ok(Ok(())) => {
                            let _ = done.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "admin API TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "admin API TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = SslStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task never ends.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
