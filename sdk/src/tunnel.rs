//! Proxy mode: local TCP connections ride the overlay (`weft tunnel dial|host`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::listener::Listener;
use crate::stream::{MAX_CHUNK, Stream};

/// Bytes moved by a tunnel endpoint, both directions.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections handled.
    pub connections: AtomicU64,
    /// Bytes from local TCP into the overlay.
    pub bytes_out: AtomicU64,
    /// Bytes from the overlay to local TCP.
    pub bytes_in: AtomicU64,
}

/// Turns every connection accepted on `listener` into a dial of `service`, until an
/// accept fails.
pub async fn serve_dial(
    ctx: Context,
    service: String,
    listener: TcpListener,
    counters: Arc<Counters>,
) -> Result<()> {
    loop {
        let (tcp, peer) = listener
            .accept()
            .await
            .map_err(|e| Error::connection(format!("accepting local connections: {e}")))?;
        let (ctx, service, counters) = (ctx.clone(), service.clone(), Arc::clone(&counters));
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match ctx.dial(&service).await {
                Ok(stream) => {
                    tracing::info!(%peer, %service, router = %stream.router(), "tunnel: dialed");
                    splice(tcp, stream, &counters).await;
                }
                Err(e) => {
                    tracing::warn!(%peer, %service, error = %e, "tunnel: dial failed");
                    let mut tcp = tcp;
                    let _ = tcp.shutdown().await;
                }
            }
        });
    }
}

/// Connects every stream accepted on `listener` to `target` (`host:port`), until the
/// listener fails.
pub async fn serve_host(
    mut listener: Listener,
    target: String,
    counters: Arc<Counters>,
) -> Result<()> {
    loop {
        let stream = listener.accept().await?;
        let (target, counters) = (target.clone(), Arc::clone(&counters));
        tokio::spawn(async move {
            match TcpStream::connect(&target).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    tracing::info!(peer = %stream.peer(), %target, "tunnel: accepted");
                    splice(tcp, stream, &counters).await;
                }
                // Dropping the stream closes it: the dialer sees the close.
                Err(e) => tracing::warn!(%target, error = %e, "tunnel: target unreachable"),
            }
        });
    }
}

/// Copies both ways until both sides are done; a half-close is passed on as one.
async fn splice(mut tcp: TcpStream, mut stream: Stream, counters: &Counters) {
    counters.connections.fetch_add(1, Ordering::Relaxed);
    match tokio::io::copy_bidirectional_with_sizes(&mut tcp, &mut stream, MAX_CHUNK, MAX_CHUNK)
        .await
    {
        Ok((out, back)) => {
            counters.bytes_out.fetch_add(out, Ordering::Relaxed);
            counters.bytes_in.fetch_add(back, Ordering::Relaxed);
            tracing::debug!(out, back, "tunnel: connection done");
        }
        Err(e) => tracing::debug!(error = %e, "tunnel: connection ended with an error"),
    }
}
