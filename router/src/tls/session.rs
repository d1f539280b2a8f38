//! One connection's TLS on buffers the session and its driver own: server side for the
//! edge and link listeners ([`ServerSession`]), client side for the link dialers
//! ([`ClientSession`]); both I/O backends drive their connections with it.
//!
//! - **Handshake**: rustls' unbuffered API. Once the handshake is over, the session
//!   takes the traffic keys from rustls ([`rustls::kernel`]) and runs the record layer
//!   itself ([`super::record`]), with no allocation per record; rustls keeps the key
//!   schedule for key updates.
//! - **Incoming**: the session owns the ciphertext buffer. The driver reads straight
//!   into its spare capacity ([`ServerSession::incoming_mut`] for a readiness read,
//!   [`ServerSession::take_incoming`] / [`ServerSession::put_incoming`] for an io_uring
//!   read, which owns its buffer while in flight) and calls [`ServerSession::process`],
//!   which opens the complete records in place and appends their plaintext to the
//!   forwarder's receive buffer. A partial record stays, moved to the front of the
//!   buffer once per call.
//! - **Outgoing**: [`ServerSession::encrypt`] seals a frame (head and payload) straight
//!   into the driver's write buffer; the records the session makes on its own
//!   (handshake, session tickets, key updates, alerts, close_notify) wait for
//!   [`ServerSession::take_tls`] (or go first into the next [`ServerSession::encrypt`]).
//!
//! Plaintext written during the handshake is held until it completes.
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)

use std::sync::Arc;

use bytes::BytesMut;
use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    AppDataRecord, ConnectionState, EncodeError, EncodeTlsData, InsufficientSizeError,
    ReadEarlyData, ReadTraffic, UnbufferedStatus,
};
use rustls::{ClientConfig, ServerConfig};

use super::record::{Records, SealError};
use super::side::{Client, Server, Side};

/// The most plaintext one TLS record carries.
pub const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;
/// The largest record the peer may send: header and TLS 1.2's ciphertext limit.
const MAX_RECORD: usize = 5 + MAX_RECORD_PLAINTEXT + 2048;
/// Capacity of the incoming buffer of [`ServerSession::new`]: a 64 KiB read and one
/// partial record.
pub const INCOMING_BUFFER: usize = 64 * 1024 + MAX_RECORD;
/// Free room the incoming buffer keeps for the next read (grown otherwise, which only a
/// handshake message spanning records can ask for).
const INCOMING_ROOM: usize = MAX_RECORD;
/// How much the plaintext buffer grows by when it runs out of room.
const PLAINTEXT_RESERVE: usize = 64 * 1024;
/// Room made for a handshake record before rustls says how much it needs.
const HANDSHAKE_ROOM: usize = 4 * 1024;

/// A write buffer of TLS records: its slice (`Deref`) is the records to send. The
/// storage after them stays initialized once written to, so that encrypting into it
/// again needs no zeroing; it grows only when a batch needs more room than ever before.
#[derive(Debug, Default)]
pub struct TlsBuf {
    storage: Vec<u8>,
    len: usize,
}

impl TlsBuf {
    /// An empty buffer on `storage` (whose contents are dropped; its length is kept as
    /// initialized room).
    pub fn new(storage: Vec<u8>) -> Self {
        Self { storage, len: 0 }
    }

    /// Forgets the records (they were sent).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The storage's capacity.
    pub fn capacity(&self) -> usize {
        self.storage.capacity()
    }

    /// Appends bytes after the records.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.room(data.len()).copy_from_slice(data);
        self.len += data.len();
    }

    /// The storage and how many of its first bytes are records, for a write operation
    /// that owns its buffer; [`Self::new`] takes the storage back.
    pub fn into_parts(self) -> (Vec<u8>, usize) {
        (self.storage, self.len)
    }

    /// Exactly `n` bytes of room after the records, zeroed only where never used
    /// before.
    pub(super) fn room(&mut self, n: usize) -> &mut [u8] {
        let end = self.len + n;
        if self.storage.len() < end {
            self.storage.resize(end, 0);
        }
        self.storage.get_mut(self.len..end).unwrap_or_default()
    }

    /// Counts `n` bytes written into [`Self::room`] as records.
    pub(super) fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(self.storage.len());
    }
}

impl std::ops::Deref for TlsBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.storage.get(..self.len).unwrap_or_default()
    }
}

/// Why a TLS session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The peer broke the TLS protocol (or a certificate was refused, or the keys
    /// reached their limit); an alert is queued for it where there is one to send (see
    /// [`ServerSession::wants_write`]).
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// rustls refused to encode a handshake record.
    #[error("TLS encoding: {0}")]
    Encode(#[from] EncodeError),
    /// Application data was written after the session's close_notify.
    #[error("TLS session already closed")]
    Closed,
    /// TLS 1.2 keys reached their confidentiality limit (they cannot change): the
    /// session's close_notify is queued, and the connection must end.
    #[error("TLS 1.2 keys reached their confidentiality limit; closing")]
    KeysExhausted,
    /// rustls reached a state the session does not know (a newer rustls).
    #[error("unexpected TLS state {0}")]
    UnexpectedState(String),
}

/// What [`ServerSession::process`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fed {
    /// The session goes on.
    Open,
    /// The peer sent its close_notify: no more application data will come.
    PeerClosed,
}

/// Who runs the records.
enum Phase<S: Side> {
    /// rustls, through the handshake.
    Handshake(Box<S::Conn>),
    /// The session, on rustls' keys.
    Traffic(Box<Records<S>>),
    /// Neither: the hand-over failed (the session holds the error).
    Gone,
}

/// What one run of rustls' handshake state machine is asked to do besides reading.
enum Job<'a> {
    /// Process the incoming records; application data that comes with the handshake
    /// goes here.
    Read(&'a mut BytesMut),
    /// Hold plaintext (its parts, in order) until the handshake completes.
    Hold(&'a [&'a [u8]]),
    /// Nothing but finding out whether the handshake is over.
    Check,
}

/// One connection's TLS, on side `S`.
pub struct Session<S: Side> {
    phase: Phase<S>,
    /// Ciphertext received and not processed yet: a partial record (and, during the
    /// handshake, parts of a handshake message), at the front.
    incoming: Vec<u8>,
    /// A read operation holds `incoming`.
    lent: bool,
    /// During the handshake, what `incoming` held when it was lent, which rustls sees
    /// meanwhile.
    shadow: Vec<u8>,
    /// During the handshake, where the first record rustls has not been shown whole
    /// starts in `incoming` (see [`show`]).
    whole: usize,
    /// Records the session made (handshake, tickets, key updates, alerts) for
    /// [`Self::take_tls`].
    outgoing: TlsBuf,
    /// Plaintext written before the handshake completed.
    held: Vec<u8>,
    /// The fingerprint of the peer's leaf certificate, kept when rustls hands over.
    leaf_fingerprint: Option<String>,
    /// The handshake resumed an earlier session, kept when rustls hands over.
    resumed: bool,
    /// The error that ended the session: every later call answers it.
    failed: Option<rustls::Error>,
    /// The peer's close_notify arrived.
    peer_closed: bool,
    /// Our close_notify is queued.
    closed: bool,
}

/// The server side: edge and link listeners.
pub type ServerSession = Session<Server>;
/// The client side: link dialers.
pub type ClientSession = Session<Client>;

impl<S: Side> std::fmt::Debug for Session<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("side", &S::PEER)
            .field("handshaking", &self.is_handshaking())
            .field("incoming", &self.incoming.len())
            .field("outgoing", &self.outgoing.len())
            .field("held", &self.held.len())
            .field("failed", &self.failed)
            .field("peer_closed", &self.peer_closed)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Session<Server> {
    /// A session waiting for the client's hello, with an incoming buffer of its own.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, SessionError> {
        Self::with_buffer(config, Vec::with_capacity(INCOMING_BUFFER))
    }

    /// A session waiting for the client's hello, reading into `buffer` (cleared; grown to
    /// hold at least a read and a partial record). [`Self::into_buffer`] gives it back.
    ///
    /// The configuration must allow secret extraction (as `weft_tls::server::edge`
    /// makes it): the session runs the records itself after the handshake.
    pub fn with_buffer(config: Arc<ServerConfig>, buffer: Vec<u8>) -> Result<Self, SessionError> {
        extraction(config.enable_secret_extraction)?;
        Self::start(UnbufferedServerConnection::new(config)?, buffer)
    }

    /// The fingerprint of the client's leaf certificate, the one whose key the
    /// handshake proved (`None` until the handshake has verified it).
    pub fn client_leaf_fingerprint(&self) -> Option<String> {
        self.peer_leaf_fingerprint()
    }
}

impl Session<Client> {
    /// A session that has its hello ready for the server `name` (sent by the first
    /// [`Self::take_tls`]), with an incoming buffer of its own.
    ///
    /// The configuration must allow secret extraction (as `weft_tls::client::link`
    /// makes it): the session runs the records itself after the handshake.
    pub fn new(config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<Self, SessionError> {
        extraction(config.enable_secret_extraction)?;
        let mut session = Self::start(
            UnbufferedClientConnection::new(config, name)?,
            Vec::with_capacity(INCOMING_BUFFER),
        )?;
        // The client speaks first: its hello goes into `outgoing`.
        session.handshake(Job::Check)?;
        Ok(session)
    }
}

/// Refuses a configuration whose keys the session cannot take over.
fn extraction(enabled: bool) -> Result<(), SessionError> {
    if enabled {
        Ok(())
    } else {
        Err(
            rustls::Error::General("the TLS configuration must enable secret extraction".into())
                .into(),
        )
    }
}

impl<S: Side> Session<S> {
    fn start(conn: S::Conn, mut buffer: Vec<u8>) -> Result<Self, SessionError> {
        buffer.clear();
        buffer.reserve(INCOMING_ROOM);
        Ok(Self {
            phase: Phase::Handshake(Box::new(conn)),
            incoming: buffer,
            lent: false,
            shadow: Vec::new(),
            whole: 0,
            outgoing: TlsBuf::default(),
            held: Vec::new(),
            leaf_fingerprint: None,
            resumed: false,
            failed: None,
            peer_closed: false,
            closed: false,
        })
    }

    /// The incoming buffer, for reuse once the session is over (empty while a read
    /// holds it).
    pub fn into_buffer(self) -> Vec<u8> {
        self.incoming
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        match &self.phase {
            Phase::Handshake(conn) => S::common(conn).is_handshaking(),
            Phase::Traffic(_) | Phase::Gone => false,
        }
    }

    /// The negotiated protocol version, once known.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.phase {
            Phase::Handshake(conn) => S::common(conn).protocol_version(),
            Phase::Traffic(records) => Some(records.protocol_version()),
            Phase::Gone => None,
        }
    }

    /// The fingerprint of the peer's leaf certificate, the one whose key the
    /// handshake proved (`None` until the handshake has verified it).
    pub fn peer_leaf_fingerprint(&self) -> Option<String> {
        match &self.phase {
            Phase::Handshake(conn) => weft_tls::leaf_fingerprint(S::common(conn)),
            Phase::Traffic(_) | Phase::Gone => self.leaf_fingerprint.clone(),
        }
    }

    /// Whether the handshake resumed an earlier session (a ticket or session id), once
    /// it is over.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The incoming buffer: ciphertext not processed yet, then spare capacity (at least
    /// a full record) for the next read to append to; [`Self::process`] afterwards.
    pub fn incoming_mut(&mut self) -> &mut Vec<u8> {
        &mut self.incoming
    }

    /// Hands the incoming buffer out to a read operation that owns it while in flight: it
    /// must append to it (into its spare capacity) and come back through
    /// [`Self::put_incoming`] before [`Self::process`]. Meanwhile the session goes on
    /// encrypting; during the handshake it does so on a copy of the unprocessed
    /// ciphertext (a partial record at most), which rustls must see again on every call
    /// (it may hold part of a handshake message there).
    pub fn take_incoming(&mut self) -> Vec<u8> {
        self.shadow.clear();
        if matches!(self.phase, Phase::Handshake(_)) {
            self.shadow.extend_from_slice(&self.incoming);
        }
        self.lent = true;
        std::mem::take(&mut self.incoming)
    }

    /// Takes the incoming buffer back from a read operation.
    pub fn put_incoming(&mut self, buffer: Vec<u8>) {
        // No room is made here: the buffer may come back full, and growing it then
        // would let the next read take twice as much (`process` makes room once it
        // consumed the records).
        self.incoming = buffer;
        self.lent = false;
    }

    /// Appends `ciphertext` to the incoming buffer and processes it (see
    /// [`Self::process`]): for drivers that read into buffers of their own, and tests.
    pub fn feed(
        &mut self,
        mut ciphertext: &[u8],
        plaintext: &mut BytesMut,
    ) -> Result<Fed, SessionError> {
        loop {
            let room = self.incoming.capacity() - self.incoming.len();
            let (now, later) = ciphertext.split_at(room.min(ciphertext.len()));
            self.incoming.extend_from_slice(now);
            ciphertext = later;
            if self.process(plaintext)? == Fed::PeerClosed {
                return Ok(Fed::PeerClosed);
            }
            if ciphertext.is_empty() {
                return Ok(Fed::Open);
            }
        }
    }

    /// Processes the complete records in the incoming buffer: handshake records are
    /// answered (the answers wait for [`Self::take_tls`]), application data is decrypted
    /// in place and appended to `plaintext`, growing it as needed. A partial record stays
    /// for the next read. Stops at the peer's close_notify.
    ///
    /// On an error, the alert for it (if any) waits for [`Self::take_tls`]; the
    /// plaintext decrypted before the error is in `plaintext`.
    ///
    /// After our close_notify the peer's input is discarded: the connection is going
    /// away, and no fatal alert may follow a close_notify.
    pub fn process(&mut self, plaintext: &mut BytesMut) -> Result<Fed, SessionError> {
        if let Some(e) = &self.failed {
            return Err(e.clone().into());
        }
        if self.lent {
            return Err(SessionError::UnexpectedState(
                "processing while a read holds the buffer".into(),
            ));
        }
        if self.closed || self.peer_closed {
            self.incoming.clear();
            return Ok(if self.peer_closed {
                Fed::PeerClosed
            } else {
                Fed::Open
            });
        }
        if matches!(self.phase, Phase::Handshake(_)) && self.handshake(Job::Read(plaintext))? {
            self.hand_over()?;
        }
        if let Phase::Traffic(records) = &mut self.phase {
            if !self.peer_closed {
                let (consumed, result) =
                    records.open(&mut self.incoming, plaintext, &mut self.outgoing);
                compact(&mut self.incoming, consumed);
                match result {
                    Ok(Fed::Open) => {}
                    Ok(Fed::PeerClosed) => self.peer_closed = true,
                    Err(e) => return Err(self.fail(e)),
                }
            }
        }
        self.keep_room();
        Ok(if self.peer_closed {
            Fed::PeerClosed
        } else {
            Fed::Open
        })
    }

    /// Encrypts `head` then `payload` as application data straight into `out` (grown
    /// only when it has too little room), after any record the session holds (so that
    /// records go out in order). During the handshake the plaintext is held until it
    /// completes.
    ///
    /// The frame goes in as few records as its length needs: each byte is copied once,
    /// into `out`, and sealed there.
    pub fn encrypt(
        &mut self,
        head: &[u8],
        payload: &[u8],
        out: &mut TlsBuf,
    ) -> Result<(), SessionError> {
        self.encrypt_parts(&[head, payload], out)
    }

    /// [`Self::encrypt`] for any number of parts, one after the other: several frames
    /// share full records.
    pub fn encrypt_parts(&mut self, parts: &[&[u8]], out: &mut TlsBuf) -> Result<(), SessionError> {
        if let Some(e) = &self.failed {
            return Err(e.clone().into());
        }
        if self.closed {
            return Err(SessionError::Closed);
        }
        if matches!(self.phase, Phase::Handshake(_)) && self.handshake(Job::Hold(parts))? {
            self.hand_over()?;
        }
        let Phase::Traffic(records) = &mut self.phase else {
            // Held until the handshake completes.
            return Ok(());
        };
        // Records the session made go first.
        if !self.outgoing.is_empty() {
            out.extend_from_slice(&self.outgoing);
            self.outgoing.clear();
        }
        let sealed = records.seal(parts, out);
        self.sealed(sealed)
    }

    /// Whether records (handshake, alerts, close_notify) wait for [`Self::take_tls`].
    pub fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Appends every record waiting to be sent to `out`.
    pub fn take_tls(&mut self, out: &mut TlsBuf) -> Result<(), SessionError> {
        if !self.outgoing.is_empty() {
            out.extend_from_slice(&self.outgoing);
            self.outgoing.clear();
        }
        Ok(())
    }

    /// Queues the close_notify alert (sent by the next [`Self::take_tls`]). Does nothing
    /// during the handshake or after an error.
    pub fn send_close_notify(&mut self) {
        if self.closed || self.failed.is_some() {
            return;
        }
        if matches!(self.phase, Phase::Handshake(_))
            && (!matches!(self.handshake(Job::Check), Ok(true)) || self.hand_over().is_err())
        {
            return;
        }
        if let Phase::Traffic(records) = &mut self.phase {
            match records.close_notify(&mut self.outgoing) {
                Ok(()) => self.closed = true,
                Err(e) => tracing::debug!(error = %e, "close_notify not queued"),
            }
        }
    }

    /// The record layer, once the handshake is over.
    #[cfg(test)]
    pub(super) fn records_mut(&mut self) -> Option<&mut Records<S>> {
        match &mut self.phase {
            Phase::Traffic(records) => Some(records),
            Phase::Handshake(_) | Phase::Gone => None,
        }
    }

    /// Keeps a full record's room free after the unprocessed ciphertext, growing the
    /// buffer by no more than that: a read takes at most the buffer's spare room, so
    /// the buffer's size bounds what one read hands on.
    fn keep_room(&mut self) {
        if !self.lent && self.incoming.capacity() - self.incoming.len() < INCOMING_ROOM {
            self.incoming.reserve_exact(INCOMING_ROOM);
        }
    }

    /// Records `e` as the session's end.
    fn fail(&mut self, e: rustls::Error) -> SessionError {
        self.failed = Some(e.clone());
        e.into()
    }

    /// Takes the keys from rustls once its handshake is over; data held during the
    /// handshake goes out next.
    fn hand_over(&mut self) -> Result<(), SessionError> {
        let Phase::Handshake(conn) = std::mem::replace(&mut self.phase, Phase::Gone) else {
            return Ok(());
        };
        if self.whole != 0 {
            // rustls holds part of a handshake message that began in the record that
            // ended the handshake (only a TLS 1.2 renegotiation could): a message
            // spanning the key change.
            return Err(self.fail(rustls::PeerMisbehaved::KeyEpochWithPendingFragment.into()));
        }
        self.leaf_fingerprint = weft_tls::leaf_fingerprint(S::common(&conn));
        self.resumed = S::common(&conn).handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let records =
            S::into_kernel(*conn).and_then(|(secrets, kernel)| Records::new(secrets, kernel));
        match records {
            Ok(records) => {
                self.phase = Phase::Traffic(Box::new(records));
                self.seal_held()
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Seals the plaintext held during the handshake after the records waiting.
    fn seal_held(&mut self) -> Result<(), SessionError> {
        let Phase::Traffic(records) = &mut self.phase else {
            return Ok(());
        };
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let sealed = records.seal(&[&held], &mut self.outgoing);
        self.sealed(sealed)
    }

    /// Ends the session where sealing could not go on: with close_notify where the keys
    /// are spent, as failed otherwise.
    fn sealed(&mut self, sealed: Result<(), SealError>) -> Result<(), SessionError> {
        match sealed {
            Ok(()) => Ok(()),
            Err(SealError::KeysExhausted) => {
                tracing::info!("TLS 1.2 keys reached their confidentiality limit: closing");
                if let Phase::Traffic(records) = &mut self.phase {
                    if let Err(e) = records.close_notify(&mut self.outgoing) {
                        tracing::debug!(error = %e, "close_notify not queued");
                    }
                }
                self.closed = true;
                Err(SessionError::KeysExhausted)
            }
            Err(SealError::Failed(e)) => Err(self.fail(e)),
        }
    }

    /// Runs rustls' handshake state machine over the incoming buffer until it wants more
    /// input or can send application data, doing `job` on the way. Returns whether the
    /// handshake is over (the keys are ready for [`Self::hand_over`]).
    ///
    /// rustls is shown the records one at a time ([`show`]): given more, it would go on
    /// past the end of the handshake and take records that are the record layer's (a
    /// client's KeyUpdate read with its Finished would have rustls queue its answer
    /// where the hand-over drops it).
    fn handshake(&mut self, mut job: Job<'_>) -> Result<bool, SessionError> {
        if let Some(e) = &self.failed {
            return Err(e.clone().into());
        }
        let Self {
            phase,
            incoming,
            lent,
            shadow,
            whole,
            outgoing,
            held,
            peer_closed,
            ..
        } = self;
        let Phase::Handshake(conn) = phase else {
            return Ok(false);
        };
        // Only a read consumes records; other jobs find none complete.
        let incoming = if *lent { shadow } else { incoming };
        // Bytes of `incoming` rustls is done with; removed once, at the end.
        let mut consumed = 0;
        let mut visible = show(incoming, whole);
        let result = loop {
            let unprocessed = incoming.get_mut(consumed..visible).unwrap_or_default();
            let UnbufferedStatus { mut discard, state } = S::process(conn, unprocessed);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    consumed += discard;
                    break Err(e);
                }
            };
            // `Some(writable)` ends the run: rustls would send application data
            // (`true`), or waits for the handshake to go on (`false`).
            let step: Result<Option<bool>, SessionError> = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    drain(&mut records, &mut job, &mut discard)
                }
                // The configuration accepts no early data; were it to, it is application
                // data like any other.
                ConnectionState::ReadEarlyData(mut records) => {
                    drain(&mut Early::<S>(&mut records), &mut job, &mut discard)
                }
                ConnectionState::EncodeTlsData(mut record) => {
                    encode(&mut record, outgoing).map(|()| None)
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    // The records wait in `outgoing`, which goes out in order with the
                    // driver's next write: they count as sent.
                    transmit.done();
                    Ok(None)
                }
                ConnectionState::PeerClosed => {
                    *peer_closed = true;
                    Ok(None)
                }
                ConnectionState::Closed => {
                    *peer_closed = true;
                    Ok(Some(false))
                }
                // rustls could send (0.5-RTT) data before the client's Finished, but
                // the keys are ours only once the handshake is over (seen below, once
                // the state no longer borrows the connection).
                ConnectionState::WriteTraffic(_) => Ok(Some(true)),
                ConnectionState::BlockedHandshake => Ok(Some(false)),
                other => Err(SessionError::UnexpectedState(format!("{other:?}"))),
            };
            consumed += discard;
            match step {
                Ok(Some(writable)) => {
                    let over = writable && !S::common(conn).is_handshaking();
                    if !over {
                        // rustls waits for input: the next record, if it has come.
                        let more = show(incoming, whole);
                        if more > visible {
                            visible = more;
                            continue;
                        }
                    }
                    if let (false, Job::Hold(parts)) = (over, &job) {
                        for part in *parts {
                            held.extend_from_slice(part);
                        }
                    }
                    break Ok(over);
                }
                Ok(None) => {}
                Err(e) => {
                    compact(incoming, consumed);
                    *whole = whole.saturating_sub(consumed);
                    self.failed = Some(match &e {
                        SessionError::Tls(e) => e.clone(),
                        other => rustls::Error::General(other.to_string()),
                    });
                    return Err(e);
                }
            }
        };
        compact(incoming, consumed);
        *whole = whole.saturating_sub(consumed);
        match result {
            Ok(over) => Ok(over),
            Err(e) => {
                self.failed = Some(e.clone());
                // rustls queued its alert (if any) before the error: encode it.
                while S::common(conn).wants_write() {
                    let UnbufferedStatus { state, .. } = S::process(conn, &mut []);
                    match state {
                        Ok(ConnectionState::EncodeTlsData(mut record)) => {
                            if encode(&mut record, outgoing).is_err() {
                                break;
                            }
                        }
                        _ => break,
                    }
                }
                Err(e.into())
            }
        }
    }
}

/// How much of `incoming` rustls may see during the handshake: the records it has seen
/// whole (up to `*whole`), then the next record whole if it has all arrived (`*whole`
/// moves past it), else what has arrived of it (so that rustls checks its header).
fn show(incoming: &[u8], whole: &mut usize) -> usize {
    let start = *whole;
    if let Some(&[_, _, _, l0, l1]) = incoming.get(start..start + 5) {
        let end = start + 5 + usize::from(u16::from_be_bytes([l0, l1]));
        if end <= incoming.len() {
            *whole = end;
            return end;
        }
    }
    incoming.len()
}

/// Application data rustls decrypted during the handshake (with the client's last
/// flight, or as early data).
trait HandshakeAppData {
    fn next(&mut self) -> Option<Result<AppDataRecord<'_>, rustls::Error>>;
}

impl<Data> HandshakeAppData for ReadTraffic<'_, '_, Data> {
    fn next(&mut self) -> Option<Result<AppDataRecord<'_>, rustls::Error>> {
        self.next_record()
    }
}

/// Early data, which only a server receives.
struct Early<'r, 'c, 'i, S: Side>(&'r mut ReadEarlyData<'c, 'i, S::Data>);

impl<S: Side> HandshakeAppData for Early<'_, '_, '_, S> {
    fn next(&mut self) -> Option<Result<AppDataRecord<'_>, rustls::Error>> {
        S::next_early_data(self.0)
    }
}

/// Appends the application data of `records` to a read's plaintext, counting the
/// ciphertext it came from into `discard`.
fn drain(
    records: &mut impl HandshakeAppData,
    job: &mut Job<'_>,
    discard: &mut usize,
) -> Result<Option<bool>, SessionError> {
    while let Some(record) = records.next() {
        let record = record?;
        *discard += record.discard;
        let Job::Read(plaintext) = job else {
            // `process` leaves no complete record behind, so no other job finds one.
            return Err(SessionError::UnexpectedState(
                "application data outside a read".into(),
            ));
        };
        append(plaintext, record.payload);
    }
    Ok(None)
}

/// Appends decrypted application data to the receive buffer.
pub(super) fn append(plaintext: &mut BytesMut, data: &[u8]) {
    if plaintext.capacity() - plaintext.len() < data.len() {
        plaintext.reserve(data.len().max(PLAINTEXT_RESERVE));
    }
    plaintext.extend_from_slice(data);
}

/// Removes the first `consumed` bytes of `buffer` (no reallocation).
fn compact(buffer: &mut Vec<u8>, consumed: usize) {
    if consumed == 0 {
        return;
    }
    let len = buffer.len();
    if consumed >= len {
        buffer.clear();
    } else {
        buffer.copy_within(consumed.., 0);
        buffer.truncate(len - consumed);
    }
}

/// Encodes a handshake (or alert) record at the end of `out`, growing it when needed.
fn encode<Data>(
    record: &mut EncodeTlsData<'_, Data>,
    out: &mut TlsBuf,
) -> Result<(), SessionError> {
    let mut room = HANDSHAKE_ROOM;
    loop {
        match record.encode(out.room(room)) {
            Ok(n) => {
                out.commit(n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size }))
                if required_size > room =>
            {
                room = required_size;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::test_pki::{ClientOptions, deliver};
    use super::*;
    use std::io::Write as _;

    struct Pair {
        client: rustls::ClientConnection,
        server: ServerSession,
        /// The fingerprint of the certificate the CA issued to the client.
        leaf_fingerprint: String,
    }

    fn pair(tls12: bool) -> Pair {
        pair_with_chain(tls12, 0)
    }

    /// A pair whose client sends its certificate followed by `extra` copies of the CA's
    /// (a long chain: its Certificate message spans records).
    fn pair_with_chain(tls12: bool, extra: usize) -> Pair {
        let pki = super::super::test_pki::TestPki::new().unwrap();
        let versions: &[&'static rustls::SupportedProtocolVersion] = if tls12 {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        Pair {
            client: pki
                .client_with(
                    versions,
                    &ClientOptions {
                        extra_certs: extra,
                        ..ClientOptions::default()
                    },
                )
                .unwrap(),
            leaf_fingerprint: weft_tls::fingerprint(pki.client_leaf_der()),
            server: ServerSession::new(pki.server).unwrap(),
        }
    }

    /// Moves records both ways until neither side has anything to send; returns the
    /// plaintext the server received. Ciphertext goes to the server in 7-byte pieces.
    fn exchange(p: &mut Pair) -> BytesMut {
        let mut received = BytesMut::new();
        for _ in 0..16 {
            let mut to_server = Vec::new();
            while p.client.wants_write() {
                p.client.write_tls(&mut to_server).unwrap();
            }
            for piece in to_server.chunks(7) {
                assert_eq!(p.server.feed(piece, &mut received).unwrap(), Fed::Open);
            }
            let mut to_client = TlsBuf::default();
            p.server.take_tls(&mut to_client).unwrap();
            let mut slice = &to_client[..];
            while !slice.is_empty() {
                p.client.read_tls(&mut slice).unwrap();
                p.client.process_new_packets().unwrap();
            }
            if to_server.is_empty() && to_client.is_empty() {
                break;
            }
        }
        received
    }

    /// A read that fills the lent buffer to the last byte, round after round (a fast
    /// sender): the buffer stays at its size. It used to grow by half or double with
    /// every full read, so a read on io_uring took 2 MB at a time, past every budget
    /// checked between reads.
    #[test]
    fn a_buffer_lent_to_reads_and_returned_full_does_not_grow() {
        let mut p = pair(false);
        exchange(&mut p);
        let mut plaintext = BytesMut::new();
        let data = vec![7u8; 64 * 1024];
        let mut stream = Vec::new();
        for _ in 0..64 {
            p.client.writer().write_all(&data).unwrap();
            while p.client.wants_write() {
                p.client.write_tls(&mut stream).unwrap();
            }
        }
        let start = p.server.incoming_mut().capacity();
        let mut fed = 0;
        while fed < stream.len() {
            let mut buffer = p.server.take_incoming();
            let room = buffer.capacity() - buffer.len();
            let n = room.min(stream.len() - fed);
            buffer.extend_from_slice(&stream[fed..fed + n]);
            fed += n;
            p.server.put_incoming(buffer);
            p.server.process(&mut plaintext).unwrap();
            assert!(
                p.server.incoming_mut().capacity() <= start + INCOMING_ROOM,
                "grew to {} from {start}",
                p.server.incoming_mut().capacity()
            );
        }
        assert_eq!(plaintext.len(), 64 * data.len());
    }

    #[test]
    fn handshake_and_application_data_both_ways() {
        for tls12 in [true, false] {
            let mut p = pair(tls12);
            exchange(&mut p);
            assert!(!p.server.is_handshaking());
            assert!(!p.client.is_handshaking());
            assert_eq!(
                p.server.client_leaf_fingerprint(),
                Some(p.leaf_fingerprint.clone())
            );
            let expected = if tls12 {
                rustls::ProtocolVersion::TLSv1_2
            } else {
                rustls::ProtocolVersion::TLSv1_3
            };
            assert_eq!(p.server.protocol_version(), Some(expected));

            // 100 KiB from the client arrives in order (more than rustls' 16 KiB
            // plaintext limit in one feed).
            let up: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
            p.client.writer().write_all(&up).unwrap();
            let received = exchange(&mut p);
            assert_eq!(&received[..], &up[..]);

            // Head + payload from the server, small (one record) and large (more than
            // a record, with and without a partial record the head's record carries).
            for len in [7, 1000, 16 * 1024, 16 * 1024 + 100, 100 * 1024 + 5000] {
                let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
                let mut out = TlsBuf::default();
                p.server.encrypt(b"head:", &payload, &mut out).unwrap();
                p.server.take_tls(&mut out).unwrap();
                let got = to_client(&mut p, &out);
                assert_eq!(&got[..5], b"head:");
                assert_eq!(&got[5..], &payload[..], "payload of {len}");
            }

            // The client's close_notify is seen, in 7-byte pieces; the server answers
            // with its own.
            p.client.send_close_notify();
            let mut to_server = Vec::new();
            p.client.write_tls(&mut to_server).unwrap();
            let mut sink = BytesMut::new();
            let pieces: Vec<&[u8]> = to_server.chunks(7).collect();
            let (last, first) = pieces.split_last().unwrap();
            for piece in first {
                assert_eq!(p.server.feed(piece, &mut sink).unwrap(), Fed::Open);
            }
            assert_eq!(p.server.feed(last, &mut sink).unwrap(), Fed::PeerClosed);
            assert!(sink.is_empty());
            p.server.send_close_notify();
            assert!(p.server.wants_write());
            let mut out = TlsBuf::default();
            p.server.take_tls(&mut out).unwrap();
            to_client(&mut p, &out);
            assert!(p.client.received_close_notify_for_test());
            assert!(matches!(
                p.server.encrypt(b"h", b"p", &mut TlsBuf::default()),
                Err(SessionError::Closed)
            ));
        }
    }

    /// Hands `records` to the client and returns the plaintext it reads.
    fn to_client(p: &mut Pair, records: &[u8]) -> Vec<u8> {
        deliver(&mut p.client, records).unwrap()
    }

    trait ClosedForTest {
        fn received_close_notify_for_test(&mut self) -> bool;
    }

    impl ClosedForTest for rustls::ClientConnection {
        fn received_close_notify_for_test(&mut self) -> bool {
            self.process_new_packets()
                .map(|state| state.peer_has_closed())
                .unwrap_or(false)
        }
    }

    #[test]
    fn after_our_close_notify_the_peers_input_is_discarded() {
        for tls12 in [true, false] {
            let mut p = pair(tls12);
            exchange(&mut p);
            p.server.send_close_notify();
            let mut out = TlsBuf::default();
            p.server.take_tls(&mut out).unwrap();
            to_client(&mut p, &out);
            assert!(p.client.received_close_notify_for_test());
            // What the client sends after ours is discarded (the connection is going
            // away), and a malformed record cannot make rustls send a fatal alert after
            // the close_notify.
            p.client.writer().write_all(b"late").unwrap();
            p.client.send_close_notify();
            let mut to_server = Vec::new();
            while p.client.wants_write() {
                p.client.write_tls(&mut to_server).unwrap();
            }
            let mut sink = BytesMut::new();
            assert_eq!(p.server.feed(&to_server, &mut sink).unwrap(), Fed::Open);
            assert!(sink.is_empty());
            assert_eq!(p.server.feed(&[0x99; 16], &mut sink).unwrap(), Fed::Open);
            assert!(!p.server.wants_write(), "no alert after the close_notify");
        }
    }

    #[test]
    fn data_written_during_the_handshake_is_held_until_it_completes() {
        for tls12 in [true, false] {
            let mut p = pair(tls12);
            let mut out = TlsBuf::default();
            p.server.encrypt(b"early:", b"data", &mut out).unwrap();
            assert!(out.is_empty());
            exchange(&mut p);
            assert!(!p.server.is_handshaking());
            // `exchange` collected the held data with the handshake's records.
            let got = to_client(&mut p, &[]);
            assert_eq!(&got, b"early:data");
        }
    }

    #[test]
    fn encrypting_while_a_read_holds_the_buffer_amid_a_split_handshake_message() {
        for tls12 in [true, false] {
            // A client chain of ~40 KiB: its Certificate message spans three records.
            let mut p = pair_with_chain(tls12, 100);
            let mut sink = BytesMut::new();
            let mut out = TlsBuf::default();
            let mut done = false;
            for _ in 0..16 {
                let mut to_server = Vec::new();
                while p.client.wants_write() {
                    p.client.write_tls(&mut to_server).unwrap();
                }
                // Half of the flight, then a read takes the buffer and a frame is
                // encrypted meanwhile (rustls holds part of a handshake message in it).
                let (first, second) = to_server.split_at(to_server.len() / 2);
                p.server.feed(first, &mut sink).unwrap();
                let mut lent = p.server.take_incoming();
                p.server.encrypt(b"h", b"p", &mut out).unwrap();
                lent.extend_from_slice(second);
                p.server.put_incoming(lent);
                p.server.process(&mut sink).unwrap();
                let mut to_client = TlsBuf::default();
                p.server.take_tls(&mut to_client).unwrap();
                to_client.extend_from_slice(&out);
                out.clear();
                deliver(&mut p.client, &to_client).unwrap();
                if !p.server.is_handshaking() && !p.client.is_handshaking() {
                    done = true;
                    break;
                }
            }
            assert!(done, "handshake with a long chain");
            assert_eq!(
                p.server.client_leaf_fingerprint(),
                Some(p.leaf_fingerprint.clone()),
                "the leaf, not any of the 100 certificates after it"
            );
        }
    }

    #[test]
    fn a_large_malformed_handshake_message_is_an_error() {
        // A 60 KiB ClientHello of zeros split over records: rustls joins it in the
        // incoming buffer, then refuses it; the session errors, with an alert.
        let mut p = pair(false);
        let mut sink = BytesMut::new();
        // Handshake records carrying one 60 KiB ClientHello fragment by fragment.
        let mut msg = vec![0x01, 0x00, 0xf0, 0x00];
        msg.resize(4 + 0xf000, 0);
        let mut wire = Vec::new();
        for chunk in msg.chunks(16 * 1024) {
            wire.extend_from_slice(&[0x16, 0x03, 0x01]);
            wire.extend_from_slice(&u16::try_from(chunk.len()).unwrap().to_be_bytes());
            wire.extend_from_slice(chunk);
        }
        let e = p.server.feed(&wire, &mut sink);
        assert!(matches!(e, Err(SessionError::Tls(_))), "{e:?}");
        assert!(p.server.wants_write());
        // Later calls answer the same error.
        assert!(p.server.feed(&[0x16], &mut sink).is_err());
    }

    #[test]
    fn garbage_is_an_error_with_an_alert_queued() {
        let mut p = pair(false);
        let mut sink = BytesMut::new();
        // A record of an unknown content type.
        let e = p
            .server
            .feed(&[0x99, 0x03, 0x03, 0x00, 0x01, 0x00], &mut sink);
        assert!(matches!(e, Err(SessionError::Tls(_))), "{e:?}");
        assert!(p.server.wants_write());
        let mut alert = TlsBuf::default();
        p.server.take_tls(&mut alert).unwrap();
        // A plaintext fatal alert record.
        assert_eq!(&alert[..3], &[0x15, 0x03, 0x03]);
        assert_eq!(alert[5], 2, "fatal");
        assert!(!p.server.wants_write());
    }

    #[test]
    fn garbage_after_the_handshake_is_an_error_with_an_alert_queued() {
        for tls12 in [true, false] {
            let mut p = pair(tls12);
            exchange(&mut p);
            let mut sink = BytesMut::new();
            // An application data record that does not decrypt.
            let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
            record.resize(5 + 0x40, 0x5a);
            for piece in record.chunks(7).take(9) {
                assert_eq!(p.server.feed(piece, &mut sink).unwrap(), Fed::Open);
            }
            let e = p.server.feed(&record[63..], &mut sink);
            assert!(matches!(e, Err(SessionError::Tls(_))), "{e:?}");
            assert!(p.server.wants_write());
            let mut alert = TlsBuf::default();
            p.server.take_tls(&mut alert).unwrap();
            // The client reads a fatal alert (bad_record_mac).
            let mut slice = &alert[..];
            p.client.read_tls(&mut slice).unwrap();
            let e = p.client.process_new_packets().unwrap_err();
            assert!(e.to_string().contains("BadRecordMac"), "{e}");
        }
    }

    mod properties {
        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::*;

        /// A step a driver (or a hostile client) can take.
        #[derive(Clone, Debug)]
        enum Step {
            /// Bytes from the client: random, or the start of a valid record header.
            Feed(Vec<u8>),
            /// The io_uring pattern: lend the buffer, encrypt meanwhile, take it back
            /// with these bytes appended, process.
            LentRead(Vec<u8>),
            /// Encrypt a frame and collect what is queued.
            Encrypt(u16),
            /// A record the real client sends (valid application data).
            ClientData(u16),
            CloseNotify,
        }

        enum StepKind {
            CloseNotify,
            Other,
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                3 => vec(any::<u8>(), 0..300).prop_map(Step::Feed),
                2 => vec(any::<u8>(), 0..300).prop_map(Step::LentRead),
                2 => (0..40_000u16).prop_map(Step::Encrypt),
                3 => (0..40_000u16).prop_map(Step::ClientData),
                1 => Just(Step::CloseNotify),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Whatever a client sends and whatever order the driver calls in, the
            /// session answers with data or an error, never a panic; once failed, it
            /// stays failed.
            #[test]
            fn hostile_input_never_panics(
                handshake in any::<bool>(),
                tls12 in any::<bool>(),
                steps in vec(step(), 1..24),
            ) {
                let mut p = pair(tls12);
                if handshake {
                    exchange(&mut p);
                }
                let mut plain = BytesMut::new();
                let mut out = TlsBuf::default();
                let mut failed = false;
                for step in steps {
                    let step_was = match step {
                        Step::CloseNotify => StepKind::CloseNotify,
                        _ => StepKind::Other,
                    };
                    let result = match step {
                        Step::Feed(bytes) => p.server.feed(&bytes, &mut plain).map(|_| ()),
                        Step::LentRead(bytes) => {
                            let mut lent = p.server.take_incoming();
                            let encrypted = p.server.encrypt(b"head", &[1; 100], &mut out);
                            lent.extend_from_slice(&bytes);
                            p.server.put_incoming(lent);
                            encrypted.and_then(|()| p.server.process(&mut plain).map(|_| ()))
                        }
                        Step::Encrypt(n) => p
                            .server
                            .encrypt(b"h", &vec![2; usize::from(n)], &mut out)
                            .and_then(|()| p.server.take_tls(&mut out)),
                        Step::ClientData(n) => {
                            let mut records = Vec::new();
                            if std::io::Write::write_all(
                                &mut p.client.writer(),
                                &vec![3; usize::from(n)],
                            )
                            .is_ok()
                            {
                                while p.client.wants_write() {
                                    if p.client.write_tls(&mut records).is_err() {
                                        break;
                                    }
                                }
                            }
                            p.server.feed(&records, &mut plain).map(|_| ())
                        }
                        Step::CloseNotify => {
                            p.server.send_close_notify();
                            p.server.take_tls(&mut out)
                        }
                    };
                    if matches!(result, Err(SessionError::Tls(_))) {
                        failed = true;
                    }
                    if failed {
                        // A failed session refuses further input.
                        prop_assert!(p.server.feed(&[0x17, 3, 3, 0, 1, 0], &mut plain).is_err());
                    }
                    if matches!(step_was, StepKind::CloseNotify) && !failed && handshake {
                        // After our close_notify, input is discarded.
                        prop_assert!(p.server.feed(&[0x99; 8], &mut plain).is_ok());
                    }
                    out.clear();
                }
            }
        }
    }
}
