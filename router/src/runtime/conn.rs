//! One edge connection on the epoll backend: tokio-rustls handshake, then reads into
//! the forwarder and writes its transmits, in one task.

use std::cell::RefCell;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::shard::{FLUSH_DEADLINE, Outcome, SHUTDOWN_DEADLINE, Shard, unix_ms};
use crate::edge::Transmit;
use crate::forward::ConnKey;
use crate::tls;

/// Free room below which the receive buffer is grown before a read.
const READ_MIN: usize = 16 * 1024;
/// How much to grow it by.
const READ_RESERVE: usize = 64 * 1024;
/// Reads and writes one poll may do before yielding to the shard's other tasks.
const BUDGET: usize = 32;

/// Accepts the TLS handshake and drives the connection until it closes.
pub(super) async fn run(
    shard: Rc<RefCell<Shard>>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    handshake_timeout: Duration,
) {
    let index = shard.borrow().index;
    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(shard = index, %peer, error = %e, "TLS handshake failed");
            shard.borrow_mut().handshakes_failed += 1;
            return;
        }
        Err(_) => {
            tracing::debug!(shard = index, %peer, "TLS handshake timed out");
            shard.borrow_mut().handshakes_failed += 1;
            return;
        }
    };
    let fingerprints = tls::client_fingerprints(tls.get_ref().1);
    let Some(key) = shard.borrow_mut().open_conn(fingerprints) else {
        return;
    };
    tracing::debug!(shard = index, conn = key.0, %peer, "edge connection open");

    let mut driver = Driver {
        key,
        tls,
        pending: None,
        unflushed: false,
    };
    let outcome = std::future::poll_fn(|cx| driver.poll(cx, &shard)).await;
    if let Outcome::Close(close) = &outcome {
        // A peer that does not read must not hold a closing connection open forever.
        let drained = tokio::time::timeout(
            FLUSH_DEADLINE,
            std::future::poll_fn(|cx| driver.poll_drain(cx, &shard)),
        )
        .await;
        if !matches!(drained, Ok(Ok(()))) {
            tracing::debug!(
                shard = index,
                conn = key.0,
                ?close,
                "closing without a full flush"
            );
        }
    }
    shard.borrow_mut().finish_conn(key, &outcome);
    if let Outcome::Close(close) = outcome {
        tracing::debug!(
            shard = index,
            conn = key.0,
            ?close,
            "edge connection closed"
        );
        let _ = tokio::time::timeout(SHUTDOWN_DEADLINE, driver.tls.shutdown()).await;
    } else {
        tracing::debug!(shard = index, conn = key.0, "edge connection lost");
    }
}

struct Driver {
    key: ConnKey,
    tls: TlsStream<TcpStream>,
    /// The transmit being written and how many of its bytes are written.
    pending: Option<(Transmit, usize)>,
    /// Bytes handed to TLS since the last completed flush.
    unflushed: bool,
}

impl Driver {
    fn poll(&mut self, cx: &mut Context<'_>, shard: &RefCell<Shard>) -> Poll<Outcome> {
        let mut guard = shard.borrow_mut();
        let s = &mut *guard;
        for _ in 0..BUDGET {
            let mut progress = match self.poll_writes(cx, s) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(conn = self.key.0, error = %e, "write failed");
                    return Poll::Ready(Outcome::Lost);
                }
            };
            match s.close_of(self.key) {
                None => return Poll::Ready(Outcome::Lost),
                // Flushing what is queued is bounded by `FLUSH_DEADLINE` in `run`.
                Some(Some(close)) => return Poll::Ready(Outcome::Close(close)),
                Some(None) => {}
            }
            if s.fwd.wants_read(self.key) {
                match self.poll_read(cx, s) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Outcome::Lost),
                    Poll::Ready(Ok(_)) => {
                        s.fwd.handle_received(Instant::now(), self.key, unix_ms());
                        s.pump();
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(conn = self.key.0, error = %e, "read failed");
                        return Poll::Ready(Outcome::Lost);
                    }
                    Poll::Pending => {}
                }
            } else {
                s.note_paused(self.key);
            }
            if !progress {
                s.park(self.key, cx.waker());
                return Poll::Pending;
            }
        }
        // Out of budget: let the shard's other connections run, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Writes what is queued for a closing connection; ready once all is flushed.
    fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
        shard: &RefCell<Shard>,
    ) -> Poll<std::io::Result<()>> {
        let mut guard = shard.borrow_mut();
        let s = &mut *guard;
        loop {
            let progress = self.poll_writes(cx, s)?;
            if self.pending.is_none() && !self.unflushed {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                s.park(self.key, cx.waker());
                return Poll::Pending;
            }
        }
    }

    /// Writes queued transmits until none is left or the socket is full; reports each
    /// written one to the forwarder. Returns whether anything was written.
    fn poll_writes(&mut self, cx: &mut Context<'_>, s: &mut Shard) -> std::io::Result<bool> {
        let mut progress = false;
        loop {
            if self.pending.is_none() {
                match s.fwd.poll_transmit(self.key) {
                    Some(t) => self.pending = Some((t, 0)),
                    None => break,
                }
            }
            let Some((transmit, written)) = &mut self.pending else {
                break;
            };
            let head: &[u8] = &transmit.head;
            let slices = if *written < head.len() {
                [
                    IoSlice::new(head.get(*written..).unwrap_or_default()),
                    IoSlice::new(&transmit.payload),
                ]
            } else {
                [
                    IoSlice::new(
                        transmit
                            .payload
                            .get(*written - head.len()..)
                            .unwrap_or_default(),
                    ),
                    IoSlice::new(&[]),
                ]
            };
            match Pin::new(&mut self.tls).poll_write_vectored(cx, &slices) {
                Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    *written += n;
                    self.unflushed = true;
                    progress = true;
                    if *written >= transmit.len() {
                        if let Some((done, _)) = self.pending.take() {
                            s.fwd.handle_written(self.key, &done);
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        if self.unflushed {
            match Pin::new(&mut self.tls).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        if progress {
            // Windows may have drained: wake the readers they paused.
            s.pump();
        }
        Ok(progress)
    }

    /// Reads decrypted bytes straight into the forwarder's receive buffer of this
    /// connection (room reserved first).
    fn poll_read(&mut self, cx: &mut Context<'_>, s: &mut Shard) -> Poll<std::io::Result<usize>> {
        let Some(buffer) = s.fwd.receive_buffer(self.key) else {
            return Poll::Ready(Ok(0));
        };
        if buffer.capacity() - buffer.len() < READ_MIN {
            buffer.reserve(READ_RESERVE);
        }
        // `read_buf` is polled once and dropped: it is cancel-safe, and a Pending poll
        // has registered the waker with the socket.
        pin!(self.tls.read_buf(buffer)).poll(cx)
    }
}
