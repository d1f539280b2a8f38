//! The io_uring backend's connection driver, on `tokio-uring`.
//!
//! tokio-uring sockets take owned buffers (`read(buf) -> (result, buf)`), so the
//! connection drives its TLS itself ([`ServerSession`], shared with the
//! epoll backend) on two buffers it owns for its lifetime, taken from the shard's
//! [`BufferPool`] and given back at the end:
//!
//! - **read buffer** (the session's incoming buffer, 64 KiB and a record): one read
//!   operation in flight at a time, submitted while the forwarder wants input, appends
//!   ciphertext after the partial record the session kept; the session decrypts the
//!   records in place and copies their plaintext into the forwarder's receive buffer of
//!   the connection.
//! - **write buffer** (16 KiB, grown on demand): when no write is in flight, every
//!   transmit the forwarder queued (up to a 256 KiB batch) is encrypted straight into
//!   the buffer, and the buffer goes out in one `write_all` operation.
//!
//! The shard logic (pump, wake-ups, pause and resume on full windows, close, drain) is
//! the same as on epoll ([`super::shard`]): the connection task parks its waker in its
//! slot, and the pump wakes it.
//!
//! Cancellation: a tokio-uring operation that is dropped in flight stays in the kernel
//! (holding its buffer and its descriptor) until it completes. Reads are therefore never
//! dropped while the connection lives, and every way out of a connection shuts the socket
//! down first so that the operations in flight complete at once and the descriptor
//! closes.
//!
//! Connections are accepted through tokio's reactor (the shard's accept loop, shared
//! with the epoll backend), never by a ring operation: a process that dies (SIGKILL, a
//! crash) leaves its ring's operations to a kernel worker that cancels them after the
//! process is gone, and an accept in flight kept the listening socket open and
//! listening until then, so a router restarted at once failed with "address in use"
//! (18 restarts in 40 here). Accepting is once per connection, not on the byte path.
//!
//! [`BufferPool`]: super::shard::BufferPool

use std::cell::RefCell;
use std::future::Future;
use std::net::{Shutdown, SocketAddr};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio_uring::BufResult;
use tokio_uring::buf::{BoundedBuf, Slice};
use tokio_uring::net::TcpStream;

use super::shard::{FLUSH_DEADLINE, Outcome, SHUTDOWN_DEADLINE, Shard, unix_ms};
use crate::forward::ConnKey;
use crate::tls::{Fed, ServerSession, SessionError, TlsBuf};

/// Submission queue entries of each shard's ring (the completion queue gets twice as
/// many). Each connection has at most two operations in flight.
pub(super) const ENTRIES: u32 = 1024;
/// Capacity of a connection's read buffer: one read operation and a partial record.
const READ_BUFFER: usize = crate::tls::INCOMING_BUFFER;
/// Records gathered for one write operation before it is submitted.
const WRITE_BATCH: usize = 256 * 1024;
/// Initial capacity of a connection's write buffer (it grows toward a batch when the
/// connection carries bulk data, and keeps that size in the pool).
const WRITE_BUFFER: usize = 16 * 1024;
/// Rounds one poll may make before yielding to the shard's other tasks.
const BUDGET: usize = 32;
/// How long the operations still in flight get to complete after the socket is shut
/// down, so their buffers come back to the pool.
const RECLAIM_DEADLINE: Duration = Duration::from_millis(100);

/// Drives an edge connection the shard's accept loop took (through tokio's reactor,
/// not a ring: see the module documentation) on the ring: the TLS handshake, then the
/// connection until it closes.
pub(super) fn spawn_connection(
    shard: Rc<RefCell<Shard>>,
    tls: Arc<rustls::ServerConfig>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    handshake_timeout: Duration,
) {
    // Out of tokio's reactor and onto the ring. io_uring never blocks on the socket
    // whatever its flag; blocking, as a ring accept would give it.
    let stream = match tcp
        .into_std()
        .and_then(|s| s.set_nonblocking(false).map(|()| s))
    {
        Ok(s) => TcpStream::from_std(s),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot move the connection onto the ring");
            return;
        }
    };
    tokio::task::spawn_local(run(shard, tls, stream, peer, handshake_timeout));
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] SessionError),
    #[error("peer closed during the handshake")]
    Closed,
}

/// Accepts the TLS handshake and drives the connection until it closes.
async fn run(
    shard: Rc<RefCell<Shard>>,
    tls: Arc<rustls::ServerConfig>,
    stream: TcpStream,
    peer: SocketAddr,
    handshake_timeout: Duration,
) {
    let index = shard.borrow().index;
    let (rbuf, wbuf) = {
        let mut s = shard.borrow_mut();
        (s.buffers.take(READ_BUFFER), s.buffers.take(WRITE_BUFFER))
    };
    let mut early = BytesMut::new();
    let mut session = match ServerSession::with_buffer(tls, rbuf) {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!(shard = index, %peer, error = %e, "cannot start a TLS session");
            shard.borrow_mut().handshakes_failed += 1;
            let _ = stream.shutdown(Shutdown::Both);
            shard.borrow_mut().buffers.give(wbuf);
            return;
        }
    };
    let mut wbuf = TlsBuf::new(wbuf);
    let handshake = handshake(&stream, &mut session, &mut wbuf, &mut early);
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
        if session.wants_write() && wbuf.capacity() > 0 {
            wbuf.clear();
            if session.take_tls(&mut wbuf).is_ok() {
                let alert = tokio::time::timeout(SHUTDOWN_DEADLINE, write_all(&stream, wbuf));
                wbuf = match alert.await {
                    Ok((_, buf)) => TlsBuf::new(buf.into_inner()),
                    Err(_) => TlsBuf::default(),
                };
            }
        }
        // An operation cut off by the deadline completes now and frees the descriptor.
        let _ = stream.shutdown(Shutdown::Both);
        give_back(&shard, session.into_buffer(), wbuf);
        return;
    }
    let Some(key) = shard
        .borrow_mut()
        .open_conn(session.client_leaf_fingerprint(), peer)
    else {
        let _ = stream.shutdown(Shutdown::Both);
        give_back(&shard, session.into_buffer(), wbuf);
        return;
    };
    tracing::debug!(shard = index, conn = key.0, %peer, "edge connection open");
    shard.borrow_mut().receive_early(key, &early);
    drop(early);

    let conn = Conn {
        key,
        session,
        wbuf: Some(wbuf),
    };
    drive(&shard, &stream, conn).await;
}

/// The handshake: read, have rustls process, write what it answers, until it is done.
/// Plaintext that arrives with the client's last flight goes to `early`. A buffer whose
/// operation is cut off (by the caller's deadline) is left empty, without capacity.
async fn handshake(
    stream: &TcpStream,
    session: &mut ServerSession,
    wbuf: &mut TlsBuf,
    early: &mut BytesMut,
) -> Result<(), HandshakeError> {
    loop {
        if session.wants_write() {
            wbuf.clear();
            session.take_tls(wbuf)?;
            let (result, buf) = write_all(stream, std::mem::take(wbuf)).await;
            *wbuf = TlsBuf::new(buf.into_inner());
            result?;
        }
        if !session.is_handshaking() {
            return Ok(());
        }
        let (result, buf) = stream.read(spare(session.take_incoming())).await;
        session.put_incoming(buf.into_inner());
        if result? == 0 {
            return Err(HandshakeError::Closed);
        }
        // On an error rustls queues an alert, which the caller sends.
        if session.process(early)? == Fed::PeerClosed {
            return Err(HandshakeError::Closed);
        }
    }
}

/// The spare capacity of the incoming buffer, which a read appends to.
fn spare(buf: Vec<u8>) -> Slice<Vec<u8>> {
    let len = buf.len();
    buf.slice(len..)
}

/// Writes the records of `buf`; the storage comes back (see [`TlsBuf::new`]).
fn write_all(
    stream: &TcpStream,
    buf: TlsBuf,
) -> impl Future<Output = BufResult<(), Slice<Vec<u8>>>> + '_ {
    let (storage, len) = buf.into_parts();
    stream.write_all(storage.slice(..len))
}

fn give_back(shard: &RefCell<Shard>, rbuf: Vec<u8>, wbuf: TlsBuf) {
    let mut s = shard.borrow_mut();
    s.buffers.give(rbuf);
    s.buffers.give(wbuf.into_parts().0);
}

/// One open connection's state outside its operations in flight.
struct Conn {
    key: ConnKey,
    /// The TLS session; its incoming buffer is the read buffer, which a read operation
    /// holds while in flight.
    session: ServerSession,
    /// The write buffer; `None` while a write operation holds it.
    wbuf: Option<TlsBuf>,
}

/// Drives an open connection until it closes, then flushes, says close_notify, shuts
/// the socket down and gives the buffers back.
async fn drive(shard: &RefCell<Shard>, stream: &TcpStream, mut conn: Conn) {
    let index = shard.borrow().index;
    let key = conn.key;
    let read = |buf: Vec<u8>| stream.read(spare(buf));
    let write = |buf: TlsBuf| write_all(stream, buf);
    let mut reading = pin!(None);
    let mut writing = pin!(None);

    let outcome = std::future::poll_fn(|cx| {
        conn.poll(cx, shard, reading.as_mut(), writing.as_mut(), &read, &write)
    })
    .await;
    let mut flushed = true;
    if let Outcome::Close(close) = &outcome {
        // A peer that does not read must not hold a closing connection open forever.
        let drained = tokio::time::timeout(
            FLUSH_DEADLINE,
            std::future::poll_fn(|cx| conn.poll_drain(cx, shard, writing.as_mut(), &write)),
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
        .end_conn(key, &outcome, flushed, &mut conn.session);
    // close_notify, or the alert of a TLS error: best effort, bounded.
    if writing.is_none() && conn.session.wants_write() {
        if let Some(mut buf) = conn.wbuf.take() {
            buf.clear();
            if conn.session.take_tls(&mut buf).is_ok() {
                match tokio::time::timeout(SHUTDOWN_DEADLINE, write_all(stream, buf)).await {
                    Ok((_, buf)) => conn.wbuf = Some(TlsBuf::new(buf.into_inner())),
                    Err(_) => tracing::debug!(conn = key.0, "close_notify not sent in time"),
                }
            } else {
                conn.wbuf = Some(buf);
            }
        }
    }
    // Operations still in flight complete now; their buffers come back to the pool.
    let _ = stream.shutdown(Shutdown::Both);
    let mut rbuf = None;
    if let Some(op) = reading.as_mut().as_pin_mut() {
        if let Ok((_, buf)) = tokio::time::timeout(RECLAIM_DEADLINE, op).await {
            rbuf = Some(buf.into_inner());
        }
    } else {
        rbuf = Some(conn.session.take_incoming());
    }
    if let Some(op) = writing.as_mut().as_pin_mut() {
        if let Ok((_, buf)) = tokio::time::timeout(RECLAIM_DEADLINE, op).await {
            conn.wbuf = Some(TlsBuf::new(buf.into_inner()));
        }
    }
    let mut s = shard.borrow_mut();
    let wbuf = conn.wbuf.take().map(|buf| buf.into_parts().0);
    for buf in [rbuf, wbuf].into_iter().flatten() {
        s.buffers.give(buf);
    }
}

impl Conn {
    /// Writes the forwarder's transmits, reads into it, until the connection must close
    /// or is lost.
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        shard: &RefCell<Shard>,
        mut reading: Pin<&mut Option<R>>,
        mut writing: Pin<&mut Option<W>>,
        read: &impl Fn(Vec<u8>) -> R,
        write: &impl Fn(TlsBuf) -> W,
    ) -> Poll<Outcome>
    where
        R: Future<Output = BufResult<usize, Slice<Vec<u8>>>>,
        W: Future<Output = BufResult<(), Slice<Vec<u8>>>>,
    {
        let mut guard = shard.borrow_mut();
        let s = &mut *guard;
        for _ in 0..BUDGET {
            let mut progress = match self.poll_write(cx, s, writing.as_mut(), write) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(conn = self.key.0, error = %e, "write failed");
                    return Poll::Ready(Outcome::Lost);
                }
            };
            match s.close_of(self.key) {
                None => return Poll::Ready(Outcome::Lost),
                // Flushing what is queued is bounded by `FLUSH_DEADLINE` in `drive`.
                Some(Some(close)) => return Poll::Ready(Outcome::Close(close)),
                Some(None) => {}
            }
            if let Some(op) = reading.as_mut().as_pin_mut() {
                if let Poll::Ready((result, buf)) = op.poll(cx) {
                    reading.set(None);
                    progress = true;
                    self.session.put_incoming(buf.into_inner());
                    if let Err(lost) = self.received(s, result) {
                        return Poll::Ready(lost);
                    }
                }
            }
            if reading.is_none() {
                if s.fwd.wants_read(self.key) {
                    reading.set(Some(read(self.session.take_incoming())));
                    // Polled in the next round, which registers the waker.
                    progress = true;
                } else {
                    s.note_paused(self.key);
                }
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

    /// Hands a completed read (back in the session's incoming buffer) to TLS and the
    /// forwarder.
    fn received(&mut self, s: &mut Shard, result: std::io::Result<usize>) -> Result<(), Outcome> {
        match result {
            Ok(0) => return Err(Outcome::Lost),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(conn = self.key.0, error = %e, "read failed");
                return Err(Outcome::Lost);
            }
        }
        let Some(plaintext) = s.fwd.receive_buffer(self.key) else {
            return Err(Outcome::Lost);
        };
        let fed = self.session.process(plaintext);
        // What was decrypted before a close or an error still counts.
        s.fwd.handle_received(Instant::now(), self.key, unix_ms());
        s.pump();
        match fed {
            Ok(Fed::Open) => Ok(()),
            Ok(Fed::PeerClosed) => Err(Outcome::Lost),
            Err(e) => {
                tracing::debug!(conn = self.key.0, error = %e, "TLS failed");
                Err(Outcome::Lost)
            }
        }
    }

    /// Writes what is queued for a closing connection; ready once all is written.
    fn poll_drain<W>(
        &mut self,
        cx: &mut Context<'_>,
        shard: &RefCell<Shard>,
        mut writing: Pin<&mut Option<W>>,
        write: &impl Fn(TlsBuf) -> W,
    ) -> Poll<std::io::Result<()>>
    where
        W: Future<Output = BufResult<(), Slice<Vec<u8>>>>,
    {
        let mut guard = shard.borrow_mut();
        let s = &mut *guard;
        loop {
            let progress = self.poll_write(cx, s, writing.as_mut(), write)?;
            if writing.is_none() {
                // Nothing was left to start a write with.
                return Poll::Ready(Ok(()));
            }
            if !progress {
                s.park(self.key, cx.waker());
                return Poll::Pending;
            }
        }
    }

    /// Completes the write in flight; when none is, encrypts the queued transmits (up to
    /// a batch) and any TLS records rustls has, and submits them as one write. Each
    /// transmit is reported written once encrypted. Returns whether anything moved.
    fn poll_write<W>(
        &mut self,
        cx: &mut Context<'_>,
        s: &mut Shard,
        mut writing: Pin<&mut Option<W>>,
        write: &impl Fn(TlsBuf) -> W,
    ) -> std::io::Result<bool>
    where
        W: Future<Output = BufResult<(), Slice<Vec<u8>>>>,
    {
        let mut progress = false;
        if let Some(op) = writing.as_mut().as_pin_mut() {
            let Poll::Ready((result, buf)) = op.poll(cx) else {
                return Ok(false);
            };
            writing.set(None);
            self.wbuf = Some(TlsBuf::new(buf.into_inner()));
            result?;
            progress = true;
        }
        let Some(buf) = self.wbuf.as_mut() else {
            // Invariant: the buffer is here whenever no write is in flight.
            return Ok(progress);
        };
        let mut encrypted = false;
        while buf.len() < WRITE_BATCH {
            let Some(transmit) = s.fwd.poll_transmit(self.key) else {
                break;
            };
            self.session
                .encrypt(&transmit.head, &transmit.payload, buf)
                .map_err(std::io::Error::other)?;
            s.fwd.handle_written(self.key, &transmit);
            encrypted = true;
        }
        self.session.take_tls(buf).map_err(std::io::Error::other)?;
        if encrypted {
            // Windows may have drained: wake the readers they paused.
            s.pump();
        }
        if !buf.is_empty() {
            if let Some(buf) = self.wbuf.take() {
                writing.set(Some(write(buf)));
                progress = true;
            }
        }
        Ok(progress)
    }
}
