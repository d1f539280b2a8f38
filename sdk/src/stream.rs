//! [`Stream`]: one service connection, as tokio `AsyncRead + AsyncWrite`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use crate::crypto::{Opener, Sealer, SessionKeys};
use crate::edge::channel::{Channel, StreamEvent};
use crate::edge::credit::{Grants, SendCredit};
use crate::edge::proto::{self, CloseCause};
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

/// Inbound decryption state.
enum Inbound {
    /// No end-to-end encryption.
    Plain,
    /// Encrypted; the peer's 24-byte stream header is the first Data to arrive.
    AwaitHeader(SessionKeys),
    /// Encrypted and initialised.
    Open(Opener),
}

enum ReadState {
    Open,
    Eof,
    Failed(Error),
}

enum WriteState {
    Open,
    Shut,
    Failed(Error),
}

/// A connection to a service: bytes written here come out of the peer's stream, in
/// order, end-to-end encrypted when the service requires it.
///
/// [`AsyncWriteExt::shutdown`](tokio::io::AsyncWriteExt::shutdown) half-closes (the
/// peer reads end-of-stream and can still write back); dropping the stream closes it
/// (a FIN first if not shut down yet, then the close). A read returns end-of-stream
/// only after the peer's FIN (or the peer's close after our own FIN); a peer that went
/// away without one makes the read fail with `ConnectionReset`.
pub struct Stream {
    channel: Channel,
    conn_id: u32,
    service: String,
    peer: String,
    app_data: Option<Bytes>,
    events: mpsc::Receiver<StreamEvent>,
    writer: PollSender<Bytes>,
    /// Edge sequence of the next Data, FIN or StateClosed we send.
    next_seq: u32,
    sealer: Option<Sealer>,
    inbound: Inbound,
    pending: Bytes,
    plain: BytesMut,
    out: BufPool,
    read: ReadState,
    write: WriteState,
    /// Scratch for a Data head encoded after its payload was read in place.
    head: BytesMut,
    /// The router forgot this conn id (it sent StateClosed, or the connection died).
    gone: bool,
    /// With per-stream credit: what we may still send, and what we owe the router.
    credit: Option<Arc<SendCredit>>,
    grants: Grants,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("service", &self.service)
            .field("router", &self.channel.router())
            .field("conn_id", &self.conn_id)
            .field("encrypted", &self.sealer.is_some())
            .finish_non_exhaustive()
    }
}

/// What a connected stream is built from.
pub(crate) struct StreamParts {
    pub(crate) channel: Channel,
    pub(crate) conn_id: u32,
    pub(crate) service: String,
    pub(crate) peer: String,
    /// Application data the dialer sent (accepted streams).
    pub(crate) app_data: Option<Bytes>,
    pub(crate) events: mpsc::Receiver<StreamEvent>,
    /// Send credit, when the router speaks per-stream credit.
    pub(crate) credit: Option<Arc<SendCredit>>,
    pub(crate) keys: Option<SessionKeys>,
}

impl Stream {
    /// Builds the stream of a conn that just got StateConnected; when encrypted, sends
    /// our stream header as its first Data (spec §5).
    pub(crate) async fn establish(parts: StreamParts) -> crate::Result<Self> {
        let StreamParts {
            channel,
            conn_id,
            service,
            peer,
            app_data,
            events,
            credit,
            keys,
        } = parts;
        let mut stream = Self {
            writer: PollSender::new(channel.writer()),
            channel,
            conn_id,
            service,
            peer,
            app_data,
            events,
            next_seq: 1,
            sealer: None,
            inbound: Inbound::Plain,
            pending: Bytes::new(),
            plain: BytesMut::new(),
            out: BufPool::new(FRAME, FRAME_BUFFERS),
            read: ReadState::Open,
            write: WriteState::Open,
            head: BytesMut::new(),
            gone: false,
            credit,
            grants: Grants::default(),
        };
        if let Some(keys) = keys {
            let (sealer, header) = Sealer::new(&keys);
            let mut out = BytesMut::new();
            proto::data_head(
                &mut out,
                stream.channel.next_sequence(),
                conn_id,
                stream.next_seq,
                false,
                header.len(),
            )
            .map_err(|e| Error::protocol(e.to_string()))?;
            out.extend_from_slice(&header);
            if let Some(credit) = &stream.credit {
                credit.spend(header.len());
            }
            stream.channel.send(out.freeze()).await?;
            stream.next_seq += 1;
            stream.sealer = Some(sealer);
            stream.inbound = Inbound::AwaitHeader(keys);
        }
        Ok(stream)
    }

    /// The service this stream belongs to.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The edge router carrying it.
    pub fn router(&self) -> &str {
        self.channel.router()
    }

    /// The other end: the dialer's identity name on an accepted stream, the service
    /// name on a dialed one.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// On an accepted stream, the application data the dialer sent with its dial
    /// ([`crate::DialOptions::app_data`]); `None` on a dialed stream or when none was sent.
    pub fn app_data(&self) -> Option<&[u8]> {
        self.app_data.as_deref()
    }

    /// Whether the stream is end-to-end encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.sealer.is_some()
    }

    /// The conn id on the edge connection (for logs).
    pub fn conn_id(&self) -> u32 {
        self.conn_id
    }

    /// Why a stream whose credit closed cannot write: the connection's error, or the
    /// router's close of this stream (its reason reaches the read side, in order).
    fn ended_error(&self) -> Error {
        if self.channel.is_closed() {
            self.channel.closed_error()
        } else {
            Error::closed("the router closed the stream")
        }
    }

    /// Ready once a frame may go out: at once without per-stream credit, else when the
    /// stream has credit (an error when it ended first).
    fn poll_credit(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(credit) = &self.credit
            && !ready!(credit.poll_available(cx))
        {
            let e = self.ended_error();
            self.write = WriteState::Failed(e.clone());
            return Poll::Ready(Err(e.into()));
        }
        Poll::Ready(Ok(()))
    }

    /// The next event from the router; a Data body taken off the queue is granted back
    /// to the router (per-stream credit), which may then send as much again.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<StreamEvent>> {
        let event = ready!(self.events.poll_recv(cx));
        if let (Some(StreamEvent::Data(body)), Some(_)) = (&event, &self.credit)
            && let Some(bytes) = self.grants.consumed(body.len())
        {
            self.channel.send_credit(self.conn_id, bytes);
        }
        Poll::Ready(event)
    }

    fn fail_both(&mut self, error: &Error) {
        if matches!(self.read, ReadState::Open) {
            self.read = ReadState::Failed(error.clone());
        }
        if !matches!(self.write, WriteState::Failed(_)) {
            self.write = WriteState::Failed(error.clone());
        }
    }

    /// Takes one event from the router into `pending` or the read/write state.
    fn on_event(&mut self, event: Option<StreamEvent>) {
        match event {
            Some(StreamEvent::Data(body)) => {
                if let Err(e) = self.on_data(body) {
                    self.fail_both(&e);
                }
            }
            Some(StreamEvent::Fin) => {
                if matches!(self.read, ReadState::Open) {
                    self.read = ReadState::Eof;
                }
            }
            Some(StreamEvent::Closed(reason)) => {
                self.gone = true;
                let text = String::from_utf8_lossy(&reason).into_owned();
                match proto::close_cause(&reason) {
                    CloseCause::PeerClosed => {
                        // A close is a clean end only after the peer's FIN (everything
                        // it wrote came before it; Weft SDKs send one before closing),
                        // or as the full close that answers our own FIN (how the C SDK
                        // closes once it has read ours). Otherwise the peer went away
                        // in the middle of the stream: an error, never end-of-stream.
                        if matches!(self.read, ReadState::Open) {
                            self.read = match self.write {
                                WriteState::Shut => ReadState::Eof,
                                _ => ReadState::Failed(Error::connection(format!(
                                    "the peer closed the stream without ending it ({text}); \
                                     what it sent last may be missing"
                                ))),
                            };
                        }
                        self.write = WriteState::Failed(Error::closed(format!(
                            "the peer closed the stream ({text})"
                        )));
                    }
                    CloseCause::Revoked => self.fail_both(&Error::new(
                        ErrorKind::SessionRevoked,
                        format!("the router closed the stream: {text}"),
                    )),
                    CloseCause::Failed => self.fail_both(&Error::connection(format!(
                        "the router closed the stream: {text}"
                    ))),
                }
            }
            None => {
                self.gone = true;
                let e = self.channel.closed_error();
                self.fail_both(&e);
            }
        }
    }

    fn on_data(&mut self, body: Bytes) -> crate::Result<()> {
        if !matches!(self.read, ReadState::Open) {
            return Ok(());
        }
        match &mut self.inbound {
            Inbound::Plain => self.pending = body,
            Inbound::AwaitHeader(keys) => {
                let opener = Opener::new(keys, &body)
                    .map_err(|e| Error::new(ErrorKind::Crypto, format!("stream header: {e}")))?;
                self.inbound = Inbound::Open(opener);
            }
            Inbound::Open(opener) => {
                self.plain.clear();
                opener
                    .open(&body, &mut self.plain)
                    .map_err(|e| Error::new(ErrorKind::Crypto, format!("decrypting: {e}")))?;
                self.pending = self.plain.split().freeze();
            }
        }
        Ok(())
    }

    /// Encodes one Data (or FIN) into a pooled buffer and hands it to the writer.
    fn send_data(&mut self, payload: &[u8], fin: bool) -> crate::Result<()> {
        let body_len = match (&self.sealer, fin) {
            (Some(_), false) => payload.len() + Sealer::ABYTES,
            _ => payload.len(),
        };
        let out = self.out.get(HEAD_ROOM + body_len);
        let sequence = self.channel.next_sequence();
        proto::data_head(out, sequence, self.conn_id, self.next_seq, fin, body_len)
            .map_err(|e| Error::protocol(e.to_string()))?;
        match &mut self.sealer {
            Some(sealer) if !fin => sealer
                .seal(payload, out)
                .map_err(|e| Error::new(ErrorKind::Crypto, e.to_string()))?,
            _ => out.extend_from_slice(payload),
        }
        let frame = out.split().freeze();
        self.writer
            .send_item(frame)
            .map_err(|_| self.channel.closed_error())?;
        if let Some(credit) = &self.credit {
            credit.spend(body_len);
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(())
    }

    /// Whether writes can go out without a copy through [`Self::poll_send_from`] and
    /// reads through [`Self::poll_read_chunk`]: not when end-to-end encrypted.
    pub(crate) fn is_plain(&self) -> bool {
        self.sealer.is_none() && matches!(self.inbound, Inbound::Plain)
    }

    /// Fails a write before anything is queued, as [`AsyncWrite::poll_write`] does.
    fn write_gate(&self) -> std::io::Result<()> {
        match &self.write {
            WriteState::Open => Ok(()),
            WriteState::Shut => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )),
            WriteState::Failed(e) => Err(e.clone().into()),
        }
    }

    /// Reads what `src` has (up to [`MAX_CHUNK`]) straight into a frame buffer behind
    /// room for the Data head, then fills the head in and queues the frame: the
    /// payload is copied once, from the kernel, instead of into a read buffer and
    /// again into the frame. `Ok(0)` when `src` is at end of stream. Plain streams
    /// only ([`Self::is_plain`]).
    pub(crate) fn poll_send_from<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
    ) -> Poll<std::io::Result<usize>> {
        self.write_gate()?;
        ready!(self.poll_credit(cx))?;
        if ready!(self.writer.poll_reserve(cx)).is_err() {
            let e = self.channel.closed_error();
            self.fail_both(&e);
            return Poll::Ready(Err(e.into()));
        }
        // The head's length does not depend on the payload's (fixed-width fields):
        // encode it once for its length, then again with the real payload length.
        self.head.clear();
        proto::data_head(&mut self.head, 0, self.conn_id, self.next_seq, false, 0)
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
            self.channel.next_sequence(),
            self.conn_id,
            self.next_seq,
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
        self.writer
            .send_item(frame)
            .map_err(|_| self.channel.closed_error())?;
        if let Some(credit) = &self.credit {
            credit.spend(n);
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        Poll::Ready(Ok(n))
    }

    /// The next received chunk as it arrived (no copy), `None` at end of stream. Plain
    /// streams only ([`Self::is_plain`]); an encrypted stream's chunks are ciphertext.
    pub(crate) fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<Option<Bytes>>> {
        loop {
            if !self.pending.is_empty() {
                return Poll::Ready(Ok(Some(std::mem::take(&mut self.pending))));
            }
            match &self.read {
                ReadState::Eof => return Poll::Ready(Ok(None)),
                ReadState::Failed(e) => return Poll::Ready(Err(e.clone().into())),
                ReadState::Open => {}
            }
            let event = ready!(self.poll_event(cx));
            self.on_event(event);
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match &this.read {
                ReadState::Eof => return Poll::Ready(Ok(())),
                ReadState::Failed(e) => return Poll::Ready(Err(e.clone().into())),
                ReadState::Open => {}
            }
            let event = ready!(this.poll_event(cx));
            if let Some(StreamEvent::Data(body)) = &event
                && let Inbound::Open(opener) = &mut this.inbound
                && Opener::opened_len(body.len()).is_some_and(|n| n > 0 && n <= buf.remaining())
            {
                // The whole message fits: decrypt straight into the caller's buffer
                // instead of into `plain` and copying from there.
                match opener.open_into(body, buf.initialize_unfilled()) {
                    Ok((n, _tag)) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) => {
                        let e = Error::new(ErrorKind::Crypto, format!("decrypting: {e}"));
                        this.fail_both(&e);
                        continue;
                    }
                }
            }
            this.on_event(event);
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        // A close from the router is seen by the read side (as with TCP, writes after
        // the peer closed are dropped by the router until then).
        match &this.write {
            WriteState::Open => {}
            WriteState::Shut => {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "write after shutdown",
                )));
            }
            WriteState::Failed(e) => return Poll::Ready(Err(e.clone().into())),
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.poll_credit(cx))?;
        if ready!(this.writer.poll_reserve(cx)).is_err() {
            let e = this.channel.closed_error();
            this.fail_both(&e);
            return Poll::Ready(Err(e.into()));
        }
        let n = buf.len().min(MAX_CHUNK);
        this.send_data(&buf[..n], false)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // Frames are queued for the connection's writer, which flushes whenever its
        // queue runs empty; there is nothing buffered here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !matches!(this.write, WriteState::Open) {
            return Poll::Ready(Ok(()));
        }
        if ready!(this.writer.poll_reserve(cx)).is_err() {
            let e = this.channel.closed_error();
            this.fail_both(&e);
            return Poll::Ready(Err(e.into()));
        }
        this.send_data(&[], true)?;
        this.write = WriteState::Shut;
        Poll::Ready(Ok(()))
    }
}

impl Stream {
    /// Ends the stream as failed, not finished: the peer's reads fail (OpenZiti SDKs see
    /// a close) instead of reaching end-of-stream, and nothing more is sent. For a
    /// stream whose data source broke, e.g. a proxied socket that was reset; a stream
    /// that is simply dropped ends cleanly.
    pub fn abort(mut self, reason: &str) {
        self.write = WriteState::Failed(Error::closed("the stream was aborted"));
        self.channel.deregister(self.conn_id);
        if !self.gone && !self.channel.is_closed() {
            self.channel
                .send_close_detached(self.conn_id, self.next_seq, non_empty(reason));
        }
        self.gone = true;
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

impl Drop for Stream {
    fn drop(&mut self) {
        self.channel.deregister(self.conn_id);
        if self.gone || self.channel.is_closed() {
            return;
        }
        // Dropping a stream that is still open for writing ends it cleanly, as closing a
        // TCP socket does: a FIN first (after everything written, on the same queue),
        // so the peer reads end-of-stream rather than an abrupt close.
        // Tell the router (and through it the peer).
        if matches!(self.write, WriteState::Open) {
            self.channel
                .send_fin_and_close_detached(self.conn_id, self.next_seq);
        } else {
            self.channel
                .send_close_detached(self.conn_id, self.next_seq, b"");
        }
    }
}
