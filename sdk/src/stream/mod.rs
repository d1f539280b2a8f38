//! [`Stream`]: one service connection, as tokio `AsyncRead + AsyncWrite`, and its owned
//! halves ([`Stream::into_split`]).
//!
//! The read half ([`read`]) owns what arrives (the router's events, decryption, the
//! credit granted back); the write half ([`write`]) owns what leaves (encryption, the
//! frame buffers, send credit). They share one [`Shared`]: the few facts each half needs
//! of the other (whether our FIN went out, whether what arrived ended the write side)
//! and the end of the stream, which the last half dropped sends.

mod read;
mod write;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::context::Inner;
use crate::crypto::SessionKeys;
use crate::edge::channel::{Channel, StreamEvent};
use crate::edge::credit::SendCredit;
use crate::error::Error;

pub use read::OwnedReadHalf;
pub use write::OwnedWriteHalf;

use read::Reader;
use write::Writer;

/// A connection to a service: bytes written here come out of the peer's stream, in
/// order, end-to-end encrypted when the service requires it.
///
/// [`AsyncWriteExt::shutdown`](tokio::io::AsyncWriteExt::shutdown) half-closes (the
/// peer reads end-of-stream and can still write back); dropping the stream closes it
/// (a FIN first if not shut down yet, then the close). A read returns end-of-stream
/// only after the peer's FIN (or the peer's close after our own FIN); a peer that went
/// away without one makes the read fail with `ConnectionReset`.
///
/// A stream keeps the [`crate::Context`] that made it alive: dropping every clone of
/// the context does not break streams still in use (its API session is refreshed until
/// the last of them is dropped). [`crate::Context::close`] ends them all.
///
/// [`Stream::into_split`] gives two owned halves for two tasks.
pub struct Stream {
    read: Reader,
    write: Writer,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("service", &self.read.shared.service)
            .field("router", &self.read.shared.channel.router())
            .field("conn_id", &self.read.shared.conn_id)
            .field("encrypted", &self.write.is_encrypted())
            .finish_non_exhaustive()
    }
}

/// What a connected stream is built from.
pub(crate) struct StreamParts {
    pub(crate) channel: Channel,
    pub(crate) conn_id: u32,
    pub(crate) service: String,
    /// The dialing identity (accepted streams).
    pub(crate) dialer: Option<String>,
    /// Application data the dialer sent (accepted streams).
    pub(crate) app_data: Option<Bytes>,
    /// The stickiness token the router answered a dial with.
    pub(crate) stickiness_token: Option<Bytes>,
    pub(crate) events: mpsc::Receiver<StreamEvent>,
    /// Send credit, when the router speaks per-stream credit.
    pub(crate) credit: Option<Arc<SendCredit>>,
    pub(crate) keys: Option<SessionKeys>,
    /// The context that made the stream, kept alive while the stream is.
    pub(crate) context: Arc<Inner>,
}

/// What both halves of a stream share. Dropped with the last half, it ends the stream
/// on the router (the StateClosed that follows everything either half sent).
struct Shared {
    channel: Channel,
    conn_id: u32,
    service: String,
    dialer: Option<String>,
    app_data: Option<Bytes>,
    stickiness_token: Option<Bytes>,
    /// Edge sequence of the next Data, FIN or StateClosed we send (only the write half
    /// sends Data and FIN; the close goes out after it is gone).
    next_seq: AtomicU32,
    /// Our FIN went out: a close from the peer after it is a clean end.
    fin_sent: AtomicBool,
    /// What arrived ended the write side too (the peer closed, the session was
    /// revoked, a frame failed to decrypt); `write_end` holds why.
    write_ended: AtomicBool,
    write_end: Mutex<Option<Error>>,
    /// The router forgot this conn id (it sent StateClosed, the connection died, or we
    /// aborted): nothing more is sent for it.
    gone: AtomicBool,
    /// A FIN still waiting for room in the connection's queue; the close must not
    /// overtake it.
    fin_in_flight: Mutex<Option<JoinHandle<()>>>,
    /// Keeps the context (its API session refresh, its edge connections) alive.
    _context: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is one assignment; a poisoned lock is consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Ends the write side with `error` (the first reason stays).
    fn end_writes(&self, error: &Error) {
        let mut end = lock(&self.write_end);
        if end.is_none() {
            *end = Some(error.clone());
        }
        self.write_ended.store(true, Ordering::Release);
    }

    /// Why the write side ended, when what arrived ended it.
    fn write_end(&self) -> Option<Error> {
        if !self.write_ended.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.write_end).clone()
    }

    fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.channel.deregister(self.conn_id);
        if self.is_gone() || self.channel.is_closed() {
            return;
        }
        // Tell the router (and through it the peer) that the stream is closed; after
        // our FIN when the write half sent one, so the peer reads a clean end.
        let seq = self.next_seq.load(Ordering::Acquire);
        match lock(&self.fin_in_flight).take() {
            None => self.channel.send_close_detached(self.conn_id, seq, b""),
            Some(fin) => {
                let (channel, conn_id) = (self.channel.clone(), self.conn_id);
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        let _ = fin.await;
                        channel.send_close_detached(conn_id, seq, b"");
                    });
                }
            }
        }
    }
}

impl Stream {
    /// Builds the stream of a conn that just got StateConnected; when encrypted, sends
    /// our stream header as its first Data (spec §5).
    pub(crate) async fn establish(parts: StreamParts) -> crate::Result<Self> {
        let StreamParts {
            channel,
            conn_id,
            service,
            dialer,
            app_data,
            stickiness_token,
            events,
            credit,
            keys,
            context,
        } = parts;
        let shared = Arc::new(Shared {
            channel,
            conn_id,
            service,
            dialer,
            app_data,
            stickiness_token,
            next_seq: AtomicU32::new(1),
            fin_sent: AtomicBool::new(false),
            write_ended: AtomicBool::new(false),
            write_end: Mutex::new(None),
            gone: AtomicBool::new(false),
            fin_in_flight: Mutex::new(None),
            _context: context,
        });
        let read = Reader::new(Arc::clone(&shared), events, credit.is_some());
        let mut write = Writer::new(shared, credit);
        let inbound = match keys {
            Some(keys) => write.start_encryption(&keys).await.map(|()| Some(keys))?,
            None => None,
        };
        let mut stream = Self { read, write };
        if let Some(keys) = inbound {
            stream.read.expect_header(keys);
        }
        Ok(stream)
    }

    /// The service this stream belongs to.
    pub fn service(&self) -> &str {
        &self.read.shared.service
    }

    /// The edge router carrying it.
    pub fn router(&self) -> &str {
        self.read.shared.channel.router()
    }

    /// On an accepted stream, the name of the identity that dialed (as the router
    /// vouches for it); `None` on a dialed stream (a dialer is not told who hosts).
    pub fn dialer(&self) -> Option<&str> {
        self.read.shared.dialer.as_deref()
    }

    /// On an accepted stream, the application data the dialer sent with its dial
    /// ([`crate::DialOptions::app_data`]); `None` on a dialed stream or when none was sent.
    pub fn app_data(&self) -> Option<&[u8]> {
        self.read.shared.app_data.as_deref()
    }

    /// On a dialed stream of a service whose terminator strategy is `sticky`, the token
    /// naming the terminator reached: a later dial with
    /// [`crate::DialOptions::with_stickiness_token`] reaches the same one while it is up
    /// and its precedence is the best (OpenZiti's `GetStickinessToken`). `None`
    /// otherwise.
    pub fn stickiness_token(&self) -> Option<&[u8]> {
        self.read.shared.stickiness_token.as_deref()
    }

    /// Whether the stream is end-to-end encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.write.is_encrypted()
    }

    /// The conn id on the edge connection (for logs).
    pub fn conn_id(&self) -> u32 {
        self.read.shared.conn_id
    }

    /// Splits the stream into a read half and a write half that two tasks own, without
    /// a lock between them (tokio's `TcpStream::into_split`). Dropping the write half
    /// half-closes the stream (the peer reads end-of-stream); the stream ends when both
    /// are dropped. [`OwnedReadHalf::reunite`] puts them back together.
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ctx = weft_sdk::Context::from_file("alice.json").await?;
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// let (mut read, mut write) = ctx.dial("echo").await?.into_split();
    /// tokio::spawn(async move {
    ///     let _ = write.write_all(b"request").await;   // dropping `write` sends the FIN
    /// });
    /// let mut reply = Vec::new();
    /// read.read_to_end(&mut reply).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        (OwnedReadHalf(self.read), OwnedWriteHalf(self.write))
    }

    /// Ends the stream as failed, not finished: the peer's reads fail (OpenZiti SDKs see
    /// a close) instead of reaching end-of-stream, and nothing more is sent. For a
    /// stream whose data source broke, e.g. a proxied socket that was reset; a stream
    /// that is simply dropped ends cleanly.
    pub fn abort(mut self, reason: &str) {
        self.write.abort(reason);
    }

    /// See [`Writer::poll_send_from`].
    pub(crate) fn poll_send_from<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
    ) -> Poll<std::io::Result<usize>> {
        self.write.poll_send_from(cx, src)
    }

    /// See [`Reader::poll_read_chunk`].
    pub(crate) fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<Option<Bytes>>> {
        self.read.poll_read_chunk(cx)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.read.poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // Frames are queued for the connection's writer, which flushes whenever its
        // queue runs empty; there is nothing buffered here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.write.poll_shutdown(cx)
    }
}

/// [`OwnedReadHalf::reunite`] was given halves of two different streams; here they are
/// back.
#[derive(Debug)]
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl std::fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the two halves are not of the same stream")
    }
}

impl std::error::Error for ReuniteError {}

impl OwnedReadHalf {
    /// The stream both halves came from, or both back when they are of different
    /// streams.
    pub fn reunite(self, write: OwnedWriteHalf) -> Result<Stream, Box<ReuniteError>> {
        if Arc::ptr_eq(&self.0.shared, &write.0.shared) {
            Ok(Stream {
                read: self.0,
                write: write.0,
            })
        } else {
            Err(Box::new(ReuniteError(self, write)))
        }
    }
}
