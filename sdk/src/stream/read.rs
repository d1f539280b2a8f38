//! The read side of a [`super::Stream`]: the router's events for the stream, in order,
//! decrypted when end-to-end encrypted, with the credit granted back as they are read.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

use super::Shared;
use crate::crypto::{IN_PLACE_ROOM, Opener, SessionKeys};
use crate::edge::channel::StreamEvent;
use crate::edge::credit::Grants;
use crate::edge::proto::{self, CloseCause};
use crate::error::{Error, ErrorKind};

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

/// What a stream's read side holds.
pub(super) struct Reader {
    pub(super) shared: Arc<Shared>,
    events: mpsc::Receiver<StreamEvent>,
    inbound: Inbound,
    pending: Bytes,
    state: ReadState,
    /// The router speaks per-stream credit: what is read is granted back.
    per_stream_credit: bool,
    grants: Grants,
}

impl Reader {
    pub(super) fn new(
        shared: Arc<Shared>,
        events: mpsc::Receiver<StreamEvent>,
        per_stream_credit: bool,
    ) -> Self {
        Self {
            shared,
            events,
            inbound: Inbound::Plain,
            pending: Bytes::new(),
            state: ReadState::Open,
            per_stream_credit,
            grants: Grants::default(),
        }
    }

    /// The stream is end-to-end encrypted: the peer's header comes first.
    pub(super) fn expect_header(&mut self, keys: SessionKeys) {
        self.inbound = Inbound::AwaitHeader(keys);
    }

    /// The next event from the router; a Data body taken off the queue is granted back
    /// to the router (per-stream credit), which may then send as much again.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<StreamEvent>> {
        let event = ready!(self.events.poll_recv(cx));
        if let Some(StreamEvent::Data(body)) = &event
            && self.per_stream_credit
            && let Some(bytes) = self.grants.consumed(body.len())
        {
            self.shared.channel.send_credit(self.shared.conn_id, bytes);
        }
        Poll::Ready(event)
    }

    /// Fails reads and ends writes with `error`.
    fn fail_both(&mut self, error: &Error) {
        if matches!(self.state, ReadState::Open) {
            self.state = ReadState::Failed(error.clone());
        }
        self.shared.end_writes(error);
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
                if matches!(self.state, ReadState::Open) {
                    self.state = ReadState::Eof;
                }
            }
            Some(StreamEvent::Closed(reason)) => {
                self.shared.gone.store(true, Ordering::Release);
                let text = String::from_utf8_lossy(&reason).into_owned();
                match proto::close_cause(&reason) {
                    CloseCause::PeerClosed => {
                        // A close is a clean end only after the peer's FIN (everything
                        // it wrote came before it; Weft SDKs send one before closing),
                        // or as the full close that answers our own FIN (how the C SDK
                        // closes once it has read ours). Otherwise the peer went away
                        // in the middle of the stream: an error, never end-of-stream.
                        if matches!(self.state, ReadState::Open) {
                            self.state = if self.shared.fin_sent.load(Ordering::Acquire) {
                                ReadState::Eof
                            } else {
                                ReadState::Failed(Error::connection(format!(
                                    "the peer closed the stream without ending it ({text}); \
                                     what it sent last may be missing"
                                )))
                            };
                        }
                        self.shared.end_writes(&Error::closed(format!(
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
                let e = if self.shared.is_gone() && !self.shared.channel.is_closed() {
                    // The write half aborted the stream.
                    Error::closed("the stream was aborted")
                } else {
                    self.shared.channel.closed_error()
                };
                self.shared.gone.store(true, Ordering::Release);
                self.fail_both(&e);
            }
        }
    }

    fn on_data(&mut self, body: Bytes) -> crate::Result<()> {
        if !matches!(self.state, ReadState::Open) {
            return Ok(());
        }
        match &mut self.inbound {
            Inbound::Plain => self.pending = body,
            Inbound::AwaitHeader(keys) => {
                let opener = Opener::new(keys, &body)
                    .map_err(|e| Error::new(ErrorKind::Crypto, format!("stream header: {e}")))?;
                self.inbound = Inbound::Open(opener);
            }
            Inbound::Open(opener) => self.pending = open(opener, &body)?,
        }
        Ok(())
    }

    /// The next received chunk, `None` at end of stream: a plain stream's as it arrived
    /// (no copy), an encrypted stream's as it was opened.
    pub(super) fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<Option<Bytes>>> {
        loop {
            if !self.pending.is_empty() {
                return Poll::Ready(Ok(Some(std::mem::take(&mut self.pending))));
            }
            match &self.state {
                ReadState::Eof => return Poll::Ready(Ok(None)),
                ReadState::Failed(e) => return Poll::Ready(Err(e.clone().into())),
                ReadState::Open => {}
            }
            let event = ready!(self.poll_event(cx));
            self.on_event(event);
        }
    }

    /// [`AsyncRead::poll_read`].
    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match &self.state {
                ReadState::Eof => return Poll::Ready(Ok(())),
                ReadState::Failed(e) => return Poll::Ready(Err(e.clone().into())),
                ReadState::Open => {}
            }
            let event = ready!(self.poll_event(cx));
            if let Some(StreamEvent::Data(body)) = &event
                && let Inbound::Open(opener) = &mut self.inbound
                && !Opener::opens_in_one_pass(body.len())
                && Opener::opened_len(body.len()).is_some_and(|n| n > 0 && n <= buf.remaining())
            {
                // A length libsodium opens (another SDK's message) that fits whole:
                // decrypt straight into the caller's buffer, without the copy behind
                // the room of an in-place open.
                match opener.open_into(body, buf.initialize_unfilled()) {
                    Ok((n, _tag)) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) => {
                        let e = Error::new(ErrorKind::Crypto, format!("decrypting: {e}"));
                        self.fail_both(&e);
                        continue;
                    }
                }
            }
            self.on_event(event);
        }
    }
}

/// Opens one sealed Data body into a buffer of its own, handed out as the plaintext
/// chunk. A length that opens in one pass (ADR 0011) is copied behind the room the
/// in-place open needs and opened there: one more pass over the message than libsodium's
/// out-of-place open, which the one pass more than pays for (`docs/perf.md`, the `e2e`
/// bench). Other lengths are opened by libsodium straight into the buffer. The buffer is
/// the message's size and lives as long as the chunk: a stream keeps nothing between
/// messages.
fn open(opener: &mut Opener, body: &[u8]) -> crate::Result<Bytes> {
    let failed = |e| Error::new(ErrorKind::Crypto, format!("decrypting: {e}"));
    if !Opener::opens_in_one_pass(body.len()) {
        let mut out = BytesMut::new();
        opener.open(body, &mut out).map_err(failed)?;
        return Ok(out.freeze());
    }
    let mut buf = BytesMut::with_capacity(IN_PLACE_ROOM + body.len());
    buf.resize(IN_PLACE_ROOM, 0);
    buf.extend_from_slice(body);
    let (plaintext, _tag) = opener.open_in_place(&mut buf).map_err(failed)?;
    buf.truncate(plaintext.end);
    buf.advance(plaintext.start);
    Ok(buf.freeze())
}

/// The read half of a [`super::Stream`] ([`super::Stream::into_split`]): reads what the
/// peer writes, as the whole stream would.
pub struct OwnedReadHalf(pub(super) Reader);

impl std::fmt::Debug for OwnedReadHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedReadHalf")
            .field("service", &self.0.shared.service)
            .field("conn_id", &self.0.shared.conn_id)
            .finish_non_exhaustive()
    }
}

impl OwnedReadHalf {
    /// The service the stream belongs to.
    pub fn service(&self) -> &str {
        &self.0.shared.service
    }

    /// On an accepted stream, the identity that dialed (see [`super::Stream::dialer`]).
    pub fn dialer(&self) -> Option<&str> {
        self.0.shared.dialer.as_deref()
    }
}

impl AsyncRead for OwnedReadHalf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.0.poll_read(cx, buf)
    }
}
