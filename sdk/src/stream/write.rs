//! The write side of a [`super::Stream`]: Data frames (sealed when end-to-end
//! encrypted) into the connection's write queue, within the stream's credit, and the
//! FIN that half-closes it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::PollSender;

use super::{Shared, lock};
use crate::crypto::{IN_PLACE_ROOM, Sealer, SessionKeys};
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
/// Room for the largest Data frame (head or the in-place seal's room in front, the
/// payload, secretstream overhead).
const FRAME: usize = MAX_CHUNK + max(HEAD_ROOM, IN_PLACE_ROOM) + Sealer::ABYTES;
/// Sealed writes at least this long send a multiple of 8 bytes, the lengths sealed in one
/// pass (ADR 0011): a write of `n` bytes sends `n - n % 8` and leaves the rest (at most 7
/// bytes) for the next. Shorter writes go whole: a separate message for a few bytes
/// would cost more than the one pass saves on them.
const ONE_PASS_FROM: usize = 16 * 1024;

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}
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
    /// Sealed streams reading from a socket ([`Self::poll_send_from`]): the bytes read
    /// past the last multiple of 8, sent at the front of the next message.
    carry: [u8; 8],
    carry_len: usize,
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
            carry: [0; 8],
            carry_len: 0,
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
        let sequence = self.shared.channel.next_sequence();
        let seq = self.shared.next_seq.load(Ordering::Acquire);
        if !fin && self.sealer.is_some() {
            let body_len = payload.len() + Sealer::ABYTES;
            self.head.clear();
            proto::data_head(
                &mut self.head,
                sequence,
                self.shared.conn_id,
                seq,
                fin,
                body_len,
            )
            .map_err(|e| Error::protocol(e.to_string()))?;
            let lead = sealed_lead(self.head.len());
            let out = self.out.get(lead + body_len);
            out.resize(lead, 0);
            out.extend_from_slice(payload);
            let frame = seal_frame(self.sealer.as_mut(), &self.head, out, lead)?;
            return self.queue(frame, body_len);
        }
        let body_len = payload.len();
        let out = self.out.get(HEAD_ROOM + body_len);
        proto::data_head(out, sequence, self.shared.conn_id, seq, fin, body_len)
            .map_err(|e| Error::protocol(e.to_string()))?;
        out.extend_from_slice(payload);
        let frame = out.split().freeze();
        self.queue(frame, body_len)
    }

    /// Reads what `src` has (up to [`MAX_CHUNK`]) straight into a frame buffer behind
    /// room for the Data head, then fills the head in and queues the frame: the
    /// payload is copied once, from the kernel, instead of into a read buffer and
    /// again into the frame. A sealed stream's payload is sealed where it was read
    /// (behind the room the in-place seal needs, which the head then takes), and a read
    /// of at least [`ONE_PASS_FROM`] bytes sends its longest multiple of 8, carrying the
    /// rest to the front of the next message (sent alone at once if `src` has nothing
    /// more yet). Returns the payload bytes sent; `Ok(0)` when `src` is at end of stream
    /// and nothing is carried.
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
        let sealed = self.sealer.is_some();
        let lead = if sealed {
            sealed_lead(head_len)
        } else {
            head_len
        };
        let carried = self.carry_len;
        let out = self.out.get(lead + MAX_CHUNK + Sealer::ABYTES);
        out.resize(lead, 0);
        out.extend_from_slice(&self.carry[..carried]);
        let mut room = (&mut *out).limit(MAX_CHUNK - carried);
        let read = tokio_util::io::poll_read_buf(Pin::new(src), cx, &mut room);
        let n = match read {
            Poll::Ready(Ok(n)) if n > 0 => carried + n,
            // Nothing more yet, or the end: what is carried goes now.
            Poll::Pending | Poll::Ready(Ok(_)) if carried > 0 => carried,
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
        let payload = if sealed && n >= ONE_PASS_FROM {
            Sealer::one_pass_len(n)
        } else {
            n
        };
        // What goes with the next message; kept only once this one is queued.
        let mut carry = [0u8; 8];
        let keep = n - payload;
        carry[..keep].copy_from_slice(&out[lead + payload..lead + n]);
        out.truncate(lead + payload);
        let body_len = if sealed {
            payload + Sealer::ABYTES
        } else {
            payload
        };
        self.head.clear();
        let framed = proto::data_head(
            &mut self.head,
            self.shared.channel.next_sequence(),
            conn_id,
            seq,
            false,
            body_len,
        )
        .map_err(|e| Error::protocol(e.to_string()))
        .and_then(|()| {
            if self.head.len() != head_len {
                return Err(Error::protocol(
                    "a Data head changed length with its payload",
                ));
            }
            if sealed {
                seal_frame(self.sealer.as_mut(), &self.head, out, lead)
            } else {
                out[..head_len].copy_from_slice(&self.head);
                Ok(out.split().freeze())
            }
        });
        let frame = match framed {
            Ok(frame) => frame,
            Err(e) => {
                // Nothing was queued: the slot goes back and the stream is failed (what
                // was read from `src` can no longer be sent).
                out.clear();
                self.writer.abort_send();
                self.state = WriteState::Failed(e.clone());
                return Poll::Ready(Err(e.into()));
            }
        };
        if let Err(e) = self.queue(frame, body_len) {
            self.state = WriteState::Failed(e.clone());
            return Poll::Ready(Err(e.into()));
        }
        self.carry = carry;
        self.carry_len = keep;
        Poll::Ready(Ok(payload))
    }

    /// Sends what [`Self::poll_send_from`] carries, if anything, as a message of its own:
    /// before a write from elsewhere or the FIN, so that nothing read is left behind or
    /// sent out of order.
    fn poll_flush_carry(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.carry_len == 0 {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_credit(cx))?;
        ready!(self.poll_reserve(cx))?;
        let (carry, len) = (self.carry, self.carry_len);
        if let Err(e) = self.send_data(&carry[..len], false) {
            self.state = WriteState::Failed(e.clone());
            return Poll::Ready(Err(e.into()));
        }
        self.carry_len = 0;
        Poll::Ready(Ok(()))
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
        ready!(self.poll_flush_carry(cx))?;
        ready!(self.poll_credit(cx))?;
        ready!(self.poll_reserve(cx))?;
        let mut n = buf.len().min(MAX_CHUNK);
        if self.sealer.is_some() && n >= ONE_PASS_FROM {
            n = Sealer::one_pass_len(n);
        }
        self.send_data(&buf[..n], false)?;
        Poll::Ready(Ok(n))
    }

    /// [`AsyncWrite::poll_shutdown`]: the FIN.
    pub(super) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !matches!(self.state, WriteState::Open) {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_flush_carry(cx))?;
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

/// Where a sealed Data frame's payload starts in its buffer: behind the room the in-place
/// seal needs in front of it and one byte for the encrypted tag, or behind the head and
/// that byte when the head is longer (the head is written into that room afterwards).
fn sealed_lead(head_len: usize) -> usize {
    head_len.max(IN_PLACE_ROOM) + 1
}

/// Seals the payload that `out` holds from `lead` ([`sealed_lead`]) in place, writes
/// `head` right before the sealed message and splits the frame off `out`.
fn seal_frame(
    sealer: Option<&mut Sealer>,
    head: &[u8],
    out: &mut BytesMut,
    lead: usize,
) -> crate::Result<Bytes> {
    let Some(sealer) = sealer else {
        return Err(Error::protocol("sealing a stream without its sealer"));
    };
    out.resize(out.len() + Sealer::ABYTES - 1, 0);
    let room = lead - 1 - IN_PLACE_ROOM;
    let sealed = match sealer.seal_in_place(&mut out[room..]) {
        Ok(range) => room + range.start,
        Err(e) => {
            out.clear();
            return Err(Error::new(ErrorKind::Crypto, e.to_string()));
        }
    };
    let start = sealed - head.len();
    out[start..sealed].copy_from_slice(head);
    out.advance(start);
    Ok(out.split().freeze())
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
        if self.carry_len > 0 {
            // Bytes read from the local socket were never sent: a FIN would tell the
            // peer it got everything. The stream ends as failed instead.
            self.abort("the stream was dropped with bytes not yet sent");
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
