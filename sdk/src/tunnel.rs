//! Proxy mode: local TCP connections ride the overlay (`weft tunnel dial|host`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpStream};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::listener::Listener;
use crate::stream::Stream;

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
                    // Refused, not accepted and ended: the local client sees a reset.
                    tracing::warn!(%peer, %service, error = %e, "tunnel: dial failed");
                    reset(tcp);
                }
            }
        });
    }
}

/// Connects every stream accepted on `listener` to `target` (`host:port`), until the
/// listener fails.
pub async fn serve_host(listener: Listener, target: String, counters: Arc<Counters>) -> Result<()> {
    loop {
        let stream = listener.accept().await?;
        let (target, counters) = (target.clone(), Arc::clone(&counters));
        tokio::spawn(async move {
            match TcpStream::connect(&target).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    tracing::info!(dialer = stream.dialer().unwrap_or_default(), %target, "tunnel: accepted");
                    splice(tcp, stream, &counters).await;
                }
                // The dialer must see a failure, not an empty stream.
                Err(e) => {
                    tracing::warn!(%target, error = %e, "tunnel: target unreachable");
                    stream.abort("the tunnel host cannot reach its target");
                }
            }
        });
    }
}

/// Closes `tcp` with a reset (`SO_LINGER` 0) instead of a FIN, so that the local
/// application cannot take a failure for a complete transfer.
fn reset(tcp: TcpStream) {
    if let Err(e) = socket2::SockRef::from(&tcp).set_linger(Some(std::time::Duration::ZERO)) {
        tracing::debug!(error = %e, "tunnel: SO_LINGER 0 refused; closing normally");
    }
    drop(tcp);
}

/// Copies both ways until both sides are done; a half-close is passed on as one. A
/// failure on either side (the router or the peer lost, the session revoked, the local
/// socket reset) ends both with an error: the local socket is reset and the stream
/// aborted, so neither application reads a clean end-of-stream.
async fn splice(mut tcp: TcpStream, mut stream: Stream, counters: &Counters) {
    counters.connections.fetch_add(1, Ordering::Relaxed);
    let mut splice = Splice {
        tcp: &mut tcp,
        stream: &mut stream,
        out: Direction::default(),
        back: Direction::default(),
        chunk: Bytes::new(),
    };
    let copied = std::future::poll_fn(|cx| splice.poll(cx)).await;
    match copied {
        Ok((out, back)) => {
            counters.bytes_out.fetch_add(out, Ordering::Relaxed);
            counters.bytes_in.fetch_add(back, Ordering::Relaxed);
            tracing::debug!(out, back, "tunnel: connection done");
        }
        Err(e) => {
            tracing::info!(error = %e, "tunnel: connection failed; resetting it");
            reset(tcp);
            stream.abort(&format!("tunnel: {e}"));
        }
    }
}

/// One direction of a [`Splice`].
#[derive(Default)]
struct Direction {
    /// Bytes moved.
    bytes: u64,
    /// The source ended; the end is being passed on.
    shutting: bool,
    done: bool,
}

/// `copy_bidirectional` without its two intermediate buffers: local bytes are read
/// straight into Data frames ([`Stream::poll_send_from`], sealed there when the stream
/// is end-to-end encrypted) and received Data bodies are written to the local socket as
/// they arrived or as they were opened ([`Stream::poll_read_chunk`]). Same semantics:
/// each end of stream is passed on as a half-close, done when both directions are, the
/// first error ends both.
struct Splice<'a> {
    tcp: &'a mut TcpStream,
    stream: &'a mut Stream,
    out: Direction,
    back: Direction,
    /// The part of a received chunk not yet written to the local socket.
    chunk: Bytes,
}

impl Splice<'_> {
    fn poll(&mut self, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<(u64, u64)>> {
        if !self.out.done && self.poll_out(cx)?.is_ready() {
            self.out.done = true;
        }
        if !self.back.done && self.poll_back(cx)?.is_ready() {
            self.back.done = true;
        }
        if self.out.done && self.back.done {
            Poll::Ready(Ok((self.out.bytes, self.back.bytes)))
        } else {
            Poll::Pending
        }
    }

    /// Local socket → stream, then a FIN.
    fn poll_out(&mut self, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        loop {
            if self.out.shutting {
                return Pin::new(&mut *self.stream).poll_shutdown(cx);
            }
            match ready!(self.stream.poll_send_from(cx, self.tcp))? {
                0 => self.out.shutting = true,
                n => self.out.bytes += n as u64,
            }
        }
    }

    /// Stream → local socket, then a write shutdown.
    fn poll_back(&mut self, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        loop {
            if !self.chunk.is_empty() {
                let n = ready!(Pin::new(&mut *self.tcp).poll_write(cx, &self.chunk))?;
                if n == 0 {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                self.chunk.advance(n);
                self.back.bytes += n as u64;
                continue;
            }
            if self.back.shutting {
                return Pin::new(&mut *self.tcp).poll_shutdown(cx);
            }
            match ready!(self.stream.poll_read_chunk(cx))? {
                Some(chunk) => self.chunk = chunk,
                None => self.back.shutting = true,
            }
        }
    }
}
