//! The write side of a [`super::Stream`]: Data frames (sealed when end-to-end
//! encrypted) into the connection's write queue, within the stream's credit, and the
//! FIN that half-closes it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::PollSender;

use super::{Shared, lock};
use crate::crypto::{Sealer, SessionKeys};
use crate::edge::credit::SendCredit;
use crate::edge::proto;
use crate::error::{Error, ErrorKind};
use crate::pool::BufPool;

/// Largest plaintext sent in one Data message. The router forwards each message whole
/// (a message is also the unit of end-to-end encryption), so this bounds what one
/// write holds in the router's and the peer's buffers.
pub(crate) const MAX_CHUNK: usize = 64 * 1024;
/// Room for a Data head (prefix + conn id + seq + flags headers).
const HEAD_ROOM: usize = 64;
/// Room for the largest Data frame (head, payload, secretstream overhead).
const FRAME: usize = MAX_CHUNK + HEAD_ROOM + Sealer::ABYTES;
/// Frame buffers per stream: frames are split off them and they are reused once the
/// writer dropped them, so steady streaming does not allocate per frame. More frames
/// than this in the writer's queue are allocated one by one.
const FRAME_BUFFERS: usize = 8;

enum WriteState {
    Open,
    Shut,
    Failed(Error),
}

/// What a stream's write side holds.
pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    writer: PollSender<Bytes>,
    sealer: Option<Sealer>,
    out: BufPool,
    state: WriteState,
    /// Scratch for a Data head encoded after its payload was read in place.
    head: BytesMut,
    /// With per-stream credit: what we may still send.
    credit: Option<Arc<SendCredit>>,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>, credit: Option<Arc<SendCredit>>) -> Self {
        Self {
            writer: PollSender::new(shared.channel.writer()),
            shared,
            sealer: None,
            out: BufPool::new(FRAME, FRAME_BUFFERS),
            state: WriteState::Open,
            head: BytesMut::new(),
            credit,
        }
    }

    pub(super) fn is_encrypted(&self) -> bool {
        self.sealer.is_some()
    }

    /// Starts end-to-end encryption: our stream header goes out as the first Data
    /// (spec §5).
    pub(super) async fn start_encryption(&mut self, keys: &SessionKeys) -> crate::Result<()> {
        let (sealer, header) = Sealer::new(keys);
        let mut out = BytesMut::new();
        let seq = self.shared.next_seq.load(Ordering::Acquire);
        proto::data_head(
            &mut out,
            self.shared.channel.next_sequence(),
            self.shared.conn_id,
            seq,
            false,
            header.len(),
        )
        .map_err(|e| Error::protocol(e.to_string()))?;
        out.extend_from_slice(&header);
        if let Some(credit) = &self.credit {
            credit.spend(header.len());
        }
        self.shared.channel.send(out.freeze()).await?;
        self.shared.next_seq.store(seq + 1, Ordering::Release);
        self.sealer = Some(sealer);
        Ok(())
    }

    /// Why a stream whose credit closed cannot write: what the read side learnt (the
    /// router's close of this stream), or the connection's error.
    fn ended_error(&self) -> Error {
        if let Some(e) = self.shared.write_end() {
            e
        } else if self.shared.channel.is_closed() {
            self.shared.channel.closed_error()
        } else {
            Error::closed("the router closed the stream")
        }
    }

    /// Fails a write before anything is queued: after shutdown, after a failure, or
    /// once what arrived ended the write side.
    fn write_gate(&mut self) -> std::io::Result<()> {
        if matches!(self.state, WriteState::Open)
            && let Some(e) = self.shared.write_end()
        {
            self.state = WriteState::Failed(e);
        }
        match &self.state {
            WriteState::Open => Ok(()),
            WriteState::Shut => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )),
            WriteState::Failed(e) => Err(e.clone().into()),
        }
    }

    /// Ready once a frame may go out: at once without per-stream credit, else when the
    /// stream has credit (an error when it ended first).
    fn poll_credit(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(credit) = &self.credit
            && !ready!(credit.poll_available(cx))
        {
            let e = self.ended_error();
            self.state = WriteState::Failed(e.clone());
            return Poll::Ready(Err(e.into()));
        }
        Poll::Ready(Ok(()))
    }

    /// Ready once the connection's queue has room for one frame.
    fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if ready!(self.writer.poll_reserve(cx)).is_err() {
            let e = self.shared.channel.closed_error();
            self.state = WriteState::Failed(e.clone());
            return Poll::Ready(Err(e.into()));
        }
        Poll::Ready(Ok(()))
    }

    /// Queues `frame` (room was reserved) and counts `body_len` against the credit.
    fn queue(&mut self, frame: Bytes, body_len: usize) -> crate::Result<()> {
        self.writer
            .send_item(frame)
            .map_err(|_| self.shared.channel.closed_error())?;
        if let Some(credit) = &self.credit {
            credit.spend(body_len);
        }
        self.shared.next_seq.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Encodes one Data (or FIN) into a pooled buffer and hands it to the writer.
    fn send_data(&mut self, payload: &[u8], fin: bool) -> crate::Result<()> {
        let body_len = match (&self.sealer, fin) {
            (Some(_), false) => payload.len() + Sealer::ABYTES,
            _ => payload.len(),
        };
        let out = self.out.get(HEAD_ROOM + body_len);
        let sequence = self.shared.channel.next_sequence();
        let seq = self.shared.next_seq.load(Ordering::Acquire);
        proto::data_head(out, sequence, self.shared.conn_id, seq, fin, body_len)
            .map_err(|e| Error::protocol(e.to_string()))?;
        match &mut self.sealer {
            Some(sealer) if !fin => sealer
                .seal(payload, out)
                .map_err(|e| Error::new(ErrorKind::Crypto, e.to_string()))?,
            _ => out.extend_from_slice(payload),
        }
        let frame = out.split().freeze();
        self.queue(frame, body_len)
    }

    /// Reads what `src` has (up to [`MAX_CHUNK`]) straight into a frame buffer behind
    /// room for the Data head, then fills the head in and queues the frame: the
    /// payload is copied once, from the kernel, instead of into a read buffer and
    /// again into the frame. `Ok(0)` when `src` is at end of stream. Plain streams
    /// only.
    pub(super) fn poll_send_from<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
    ) -> Poll<std::io::Result<usize>> {
        self.write_gate()?;
        ready!(self.poll_credit(cx))?;
        ready!(self.poll_reserve(cx))?;
        let (conn_id, seq) = (
            self.shared.conn_id,
            self.shared.next_seq.load(Ordering::Acquire),
        );
        // The head's length does not depend on the payload's (fixed-width fields):
        // encode it once for its length, then again with the real payload length.
        self.head.clear();
        proto::data_head(&mut self.head, 0, conn_id, seq, false, 0)
            .map_err(|e| Error::protocol(e.to_string()))?;
        let head_len = self.head.len();
        let out = self.out.get(head_len + MAX_CHUNK);
        out.resize(head_len, 0);
        let mut room = (&mut *out).limit(MAX_CHUNK);
        let read = tokio_util::io::poll_read_buf(Pin::new(src), cx, &mut room);
        let n = match read {
            Poll::Ready(Ok(n)) if n > 0 => n,
            other => {
                // Nothing to send: give the writer queue's slot back. A slot held while
                // the local socket is idle would starve the connection's other streams
                // (the queue is shared, so a few hundred idle streams would hold it all).
                out.clear();
                self.writer.abort_send();
                return match other {
                    Poll::Ready(Ok(_)) => Poll::Ready(Ok(0)),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                };
            }
        };
        self.head.clear();
        proto::data_head(
            &mut self.head,
            self.shared.channel.next_sequence(),
            conn_id,
            seq,
            false,
            n,
        )
        .map_err(|e| Error::protocol(e.to_string()))?;
        if self.head.len() != head_len {
            out.clear();
            return Poll::Ready(Err(Error::protocol(
                "a Data head changed length with its payload",
            )
            .into()));
        }
        out[..head_len].copy_from_slice(&self.head);
        let frame = out.split().freeze();
        self.queue(frame, n)?;
        Poll::Ready(Ok(n))
    }

    /// [`AsyncWrite::poll_write`].
    pub(super) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // A close from the router is seen by the read side, which ends writes too (as
        // with TCP, writes after the peer closed are dropped by the router until then).
        self.write_gate()?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.poll_credit(cx))?;
        ready!(self.poll_reserve(cx))?;
        let n = buf.len().min(MAX_CHUNK);
        self.send_data(&buf[..n], false)?;
        Poll::Ready(Ok(n))
    }

    /// [`AsyncWrite::poll_shutdown`]: the FIN.
    pub(super) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !matches!(self.state, WriteState::Open) {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_reserve(cx))?;
        self.send_data(&[], true)?;
        self.state = WriteState::Shut;
        self.shared.fin_sent.store(true, Ordering::Release);
        Poll::Ready(Ok(()))
    }

    /// Ends the stream as failed (see [`super::Stream::abort`]).
    pub(super) fn abort(&mut self, reason: &str) {
        self.state = WriteState::Failed(Error::closed("the stream was aborted"));
        let shared = &self.shared;
        let was_gone = shared.gone.swap(true, Ordering::AcqRel);
        shared.channel.deregister(shared.conn_id);
        if !was_gone && !shared.channel.is_closed() {
            shared.channel.send_close_detached(
                shared.conn_id,
                shared.next_seq.load(Ordering::Acquire),
                non_empty(reason),
            );
        }
    }
}

/// A reason the router reads as an abort (a non-empty StateClosed body).
fn non_empty(reason: &str) -> &[u8] {
    if reason.is_empty() {
        b"aborted"
    } else {
        reason.as_bytes()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Dropping the write side while it is open ends it cleanly, as closing a TCP
        // socket does: a FIN after everything written, on the same queue, so the peer
        // reads end-of-stream rather than an abrupt close. The close follows when the
        // read side is gone too (`Shared`'s drop).
        if !matches!(self.state, WriteState::Open)
            || self.shared.is_gone()
            || self.shared.write_end().is_some()
            || self.shared.channel.is_closed()
        {
            return;
        }
        let seq = self.shared.next_seq.fetch_add(1, Ordering::AcqRel);
        self.shared.fin_sent.store(true, Ordering::Release);
        let spawned = self
            .shared
            .channel
            .send_fin_detached(self.shared.conn_id, seq);
        *lock(&self.shared.fin_in_flight) = spawned;
    }
}

/// The write half of a [`super::Stream`] ([`super::Stream::into_split`]). Dropping it
/// half-closes the stream, as [`tokio::io::AsyncWriteExt::shutdown`] does.
pub struct OwnedWriteHalf(pub(super) Writer);

impl std::fmt::Debug for OwnedWriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedWriteHalf")
            .field("service", &self.0.shared.service)
            .field("conn_id", &self.0.shared.conn_id)
            .finish_non_exhaustive()
    }
}

impl OwnedWriteHalf {
    /// The service the stream belongs to.
    pub fn service(&self) -> &str {
        &self.0.shared.service
    }

    /// Ends the whole stream as failed (see [`super::Stream::abort`]); the read half's
    /// reads fail too.
    pub fn abort(mut self, reason: &str) {
        self.0.abort(reason);
    }
}

impl AsyncWrite for OwnedWriteHalf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.0.poll_shutdown(cx)
    }
}
