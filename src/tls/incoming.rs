//! Accepting TLS connections: one task accepts TCP connections and runs each
//! handshake in a task of its own (a slow or silent client holds up nobody else);
//! finished handshakes are handed to the server through a channel.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{Side, Tls};
use crate::shutdown::Shutdown;

/// A handshake not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once per listener; more connections wait to be accepted.
const HANDSHAKES_AT_ONCE: usize = 256;

type Accepted = (TlsStream<TcpStream>, SocketAddr);

/// Accepts on `listener` until `stop`, handing over connections whose handshake
/// succeeded.
fn accept(
    listener: TcpListener,
    tls: Arc<Tls>,
    side: Side,
    stop: Shutdown,
) -> mpsc::Receiver<Accepted> {
    let (tx, rx) = mpsc::channel(64);
    let permits = Arc::new(Semaphore::new(HANDSHAKES_AT_ONCE));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off a little.
                        tracing::warn!(error = %e, listener = side.name(), "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = stop.wait() => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.config(side));
            let (tx, tls) = (tx.clone(), tls.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send((stream, peer)).await;
                    }
                    Ok(Err(e)) => {
                        tls.metrics.tls_handshake_failed(side.name());
                        tracing::debug!(%peer, error = %e, listener = side.name(), "TLS handshake failed");
                    }
                    Err(_) => {
                        tls.metrics.tls_handshake_failed(side.name());
                        tracing::debug!(%peer, listener = side.name(), "TLS handshake timed out");
                    }
                }
            });
        }
    });
    rx
}

/// The gRPC listener's connections, for tonic's `serve_with_incoming`.
pub fn grpc_incoming(
    listener: TcpListener,
    tls: Arc<Tls>,
    stop: Shutdown,
) -> impl Stream<Item = std::io::Result<TlsStream<TcpStream>>> {
    let rx = accept(listener, tls, Side::Grpc, stop);
    futures::stream::unfold(rx, |mut rx| async move {
        let (stream, _) = rx.recv().await?;
        Some((Ok(stream), rx))
    })
}

/// The HTTP listener's connections, for `axum::serve`.
pub struct TlsListener {
    rx: mpsc::Receiver<Accepted>,
    local: SocketAddr,
}

pub fn http_listener(listener: TcpListener, tls: Arc<Tls>, stop: Shutdown) -> TlsListener {
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    TlsListener {
        rx: accept(listener, tls, Side::Http, stop),
        local,
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(accepted) => accepted,
            // The accept task stopped (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
