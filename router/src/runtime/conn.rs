//! One edge connection on the epoll backend: the TLS handshake, then reads into the
//! forwarder and writes its transmits, in one task.
//!
//! TLS is the io_uring backend's [`ServerSession`] (on rustls' keys) over a tokio
//! `TcpStream`, on two buffers taken from the shard's pool for the connection's lifetime:
//!
//! - **read buffer** (the session's incoming buffer): a readiness read appends
//!   ciphertext to it; the session decrypts the records in place and copies their
//!   plaintext into the forwarder's receive buffer of the connection.
//! - **write buffer**: when all of it is written, the transmits the forwarder queued (up
//!   to a batch) are encrypted straight into it, each reported written once encrypted,
//!   and it is written as the socket takes it.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::shard::{FLUSH_DEADLINE, Outcome, SHUTDOWN_DEADLINE, Shard, unix_ms};
use crate::forward::ConnKey;
use crate::tls::{Fed, INCOMING_BUFFER, ServerSession, Session, SessionError, Side, TlsBuf};

/// Records gathered in the write buffer before it is written.
const WRITE_BATCH: usize = 256 * 1024;
/// Initial capacity of a connection's write buffer (it grows toward a batch when the
/// connection carries bulk data, and keeps that size in the pool).
const WRITE_BUFFER: usize = 16 * 1024;
/// Reads and writes one poll may do before yielding to the shard's other tasks.
const BUDGET: usize = 32;

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum HandshakeError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] SessionError),
    #[error("peer closed during the handshake")]
    Closed,
}

/// Accepts the TLS handshake and drives the connection until it closes.
pub(super) async fn run(
    shard: Rc<RefCell<Shard>>,
    tls: Arc<rustls::ServerConfig>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    handshake_timeout: Duration,
) {
    let index = shard.borrow().index;
    let (rbuf, wbuf) = {
        let mut s = shard.borrow_mut();
        (
            s.buffers.take(INCOMING_BUFFER),
            s.buffers.take(WRITE_BUFFER),
        )
    };
    let mut session = match ServerSession::with_buffer(tls, rbuf) {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!(shard = index, %peer, error = %e, "cannot start a TLS session");
            let mut s = shard.borrow_mut();
            s.handshakes_failed += 1;
            s.buffers.give(wbuf);
            return;
        }
    };
    let mut wbuf = TlsBuf::new(wbuf);
    let mut early = BytesMut::new();
    let handshake = handshake(&mut tcp, &mut session, &mut wbuf, &mut early);
    let failed = match tokio::time::timeout(handshake_timeout, handshake).await {
        Ok(Ok(())) => false,
        Ok(Err(e)) => {
            tracing::debug!(shard = index, %peer, error = %e, "TLS handshake failed");
            true
        }
        Err(_) => {
            tracing::debug!(shard = index, %peer, "TLS handshake timed out");
            true
        }
    };
    if failed {
        shard.borrow_mut().handshakes_failed += 1;
        // Tell the client why (best effort): rustls queued an alert.
        wbuf.clear();
        send_last(&mut tcp, &mut session, &mut wbuf).await;
        give_back(&shard, session, wbuf);
        return;
    }
    let Some(key) = shard
        .borrow_mut()
        .open_conn(session.client_leaf_fingerprint(), peer)
    else {
        give_back(&shard, session, wbuf);
        return;
    };
    tracing::debug!(shard = index, conn = key.0, %peer, "edge connection open");
    shard.borrow_mut().receive_early(key, &early);
    drop(early);

    wbuf.clear();
    let mut driver = Driver {
        key,
        tcp,
        session,
        wbuf,
        sent: 0,
    };
    let outcome = std::future::poll_fn(|cx| driver.poll(cx, &shard)).await;
    let mut flushed = true;
    if let Outcome::Close(close) = &outcome {
        // A peer that does not read must not hold a closing connection open forever.
        let drained = tokio::time::timeout(
            FLUSH_DEADLINE,
            std::future::poll_fn(|cx| driver.poll_drain(cx, &shard)),
        )
        .await;
        if !matches!(drained, Ok(Ok(()))) {
            flushed = false;
            tracing::debug!(
                shard = index,
                conn = key.0,
                ?close,
                "closing without a full flush"
            );
        }
    }
    shard
        .borrow_mut()
        .end_conn(key, &outcome, flushed, &mut driver.session);
    // close_notify, or the alert of a TLS error, after what is written: best effort,
    // bounded. Records encrypted but not started on are dropped (as the io_uring
    // driver does); after part of one, nothing more can follow.
    let Driver {
        mut tcp,
        mut session,
        mut wbuf,
        sent,
        ..
    } = driver;
    if sent == wbuf.len() || sent == 0 {
        wbuf.clear();
        send_last(&mut tcp, &mut session, &mut wbuf).await;
    }
    give_back(&shard, session, wbuf);
}

/// The handshake: read, have rustls process, write what it answers, until it is done
/// (either side: edge and link listeners, link dialers). Plaintext that arrives with
/// the peer's last flight goes to `early`. On an error the alert rustls queued waits
/// for [`send_last`].
pub(super) async fn handshake<S: Side>(
    tcp: &mut TcpStream,
    session: &mut Session<S>,
    wbuf: &mut TlsBuf,
    early: &mut BytesMut,
) -> Result<(), HandshakeError> {
    loop {
        if session.wants_write() {
            wbuf.clear();
            session.take_tls(wbuf)?;
            tcp.write_all(wbuf).await?;
            wbuf.clear();
        }
        if !session.is_handshaking() {
            return Ok(());
        }
        tcp.readable().await?;
        match tcp.try_read_buf(session.incoming_mut()) {
            Ok(0) => return Err(HandshakeError::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
        // On an error rustls queues an alert, which the caller sends.
        if session.process(early)? == Fed::PeerClosed {
            return Err(HandshakeError::Closed);
        }
    }
}

/// Writes the records the session still holds (an alert, the close_notify), then
/// shuts the sending side down; bounded by [`SHUTDOWN_DEADLINE`].
pub(super) async fn send_last<S: Side>(
    tcp: &mut TcpStream,
    session: &mut Session<S>,
    wbuf: &mut TlsBuf,
) {
    let last = async {
        if session.wants_write() && session.take_tls(wbuf).is_ok() {
            tcp.write_all(wbuf).await?;
        }
        tcp.shutdown().await
    };
    if !matches!(
        tokio::time::timeout(SHUTDOWN_DEADLINE, last).await,
        Ok(Ok(()))
    ) {
        tracing::debug!("last records not sent in time");
    }
}

fn give_back(shard: &RefCell<Shard>, session: ServerSession, wbuf: TlsBuf) {
    let mut s = shard.borrow_mut();
    s.buffers.give(session.into_buffer());
    s.buffers.give(wbuf.into_parts().0);
}

struct Driver {
    key: ConnKey,
    tcp: TcpStream,
    session: ServerSession,
    /// Records to write; `..sent` are written.
    wbuf: TlsBuf,
    sent: usize,
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
                    Poll::Ready(Ok(())) => progress = true,
                    Poll::Ready(Err(lost)) => return Poll::Ready(lost),
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

    /// Writes what is queued for a closing connection; ready once all is written.
    fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
        shard: &RefCell<Shard>,
    ) -> Poll<std::io::Result<()>> {
        let mut guard = shard.borrow_mut();
        let s = &mut *guard;
        loop {
            let progress = self.poll_writes(cx, s)?;
            if self.sent == self.wbuf.len() {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                s.park(self.key, cx.waker());
                return Poll::Pending;
            }
        }
    }

    /// Writes the write buffer; once it is all written, encrypts the queued transmits
    /// (up to a batch) and the session's own records into it, and goes on until nothing
    /// is left or the socket is full. Each transmit is reported written once encrypted.
    /// Returns whether anything moved.
    fn poll_writes(&mut self, cx: &mut Context<'_>, s: &mut Shard) -> std::io::Result<bool> {
        let mut progress = false;
        let mut encrypted = false;
        loop {
            if self.sent == self.wbuf.len() {
                self.wbuf.clear();
                self.sent = 0;
                while self.wbuf.len() < WRITE_BATCH {
                    let Some(transmit) = s.fwd.poll_transmit(self.key) else {
                        break;
                    };
                    self.session
                        .encrypt(&transmit.head, &transmit.payload, &mut self.wbuf)
                        .map_err(std::io::Error::other)?;
                    s.fwd.handle_written(self.key, &transmit);
                    encrypted = true;
                }
                self.session
                    .take_tls(&mut self.wbuf)
                    .map_err(std::io::Error::other)?;
                if self.wbuf.is_empty() {
                    break;
                }
            }
            let unsent = self.wbuf.get(self.sent..).unwrap_or_default();
            match Pin::new(&mut self.tcp).poll_write(cx, unsent) {
                Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.sent += n;
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        if encrypted {
            // Windows may have drained: wake the readers they paused.
            s.pump();
        }
        Ok(progress || encrypted)
    }

    /// Reads ciphertext into the session's buffer and has it decrypted straight into
    /// the forwarder's receive buffer of this connection; an error is the outcome.
    fn poll_read(&mut self, cx: &mut Context<'_>, s: &mut Shard) -> Poll<Result<(), Outcome>> {
        loop {
            match self.tcp.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    tracing::debug!(conn = self.key.0, error = %e, "read failed");
                    return Poll::Ready(Err(Outcome::Lost));
                }
                Poll::Pending => return Poll::Pending,
            }
            match self.tcp.try_read_buf(self.session.incoming_mut()) {
                Ok(0) => return Poll::Ready(Err(Outcome::Lost)),
                Ok(_) => break,
                // The readiness was stale; polling it again registers the waker.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    tracing::debug!(conn = self.key.0, error = %e, "read failed");
                    return Poll::Ready(Err(Outcome::Lost));
                }
            }
        }
        let Some(plaintext) = s.fwd.receive_buffer(self.key) else {
            return Poll::Ready(Err(Outcome::Lost));
        };
        let fed = self.session.process(plaintext);
        // What was decrypted before a close or an error still counts.
        s.fwd.handle_received(Instant::now(), self.key, unix_ms());
        s.pump();
        Poll::Ready(match fed {
            Ok(Fed::Open) => Ok(()),
            Ok(Fed::PeerClosed) => Err(Outcome::Lost),
            Err(e) => {
                tracing::debug!(conn = self.key.0, error = %e, "TLS failed");
                Err(Outcome::Lost)
            }
        })
    }
}
