//! The router side of one SDK edge connection.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use weft_wire::edge::{
    self, Bind, Connect, Credit, Data, Dial, DialFailed, DialSuccess, EdgeMessage, Hello,
    HelloResult, StateClosed, StateConnected, Unbind,
};
use weft_wire::{Decoded, Decoder, EncodeError, Frame, Limits};

use super::event::{CircuitId, CloseReason, ConnEnd, EdgeEvent, Head, Stickiness, Transmit};
use crate::credit::{Drained, GrantBatch, SendCredit, detach};
use crate::sessions::{HelloRejection, Removed, SessionKind, SessionRejection, SessionTable};

/// Settings of an edge connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeConfig {
    /// The hello must arrive this soon after the TLS handshake (OpenZiti channel default:
    /// 1 s, `openziti/channel` options.go).
    pub hello_timeout: Duration,
    /// How long a host has to answer a Dial (Go routers: 5 s, spec §4b step 6).
    pub dial_timeout: Duration,
    /// Most conn ids (dials, listeners, accepted) one connection may hold.
    pub max_conns: usize,
    /// Limits on frames after the hello.
    pub limits: Limits,
    /// Header 4 of the hello Result: `Version|Revision|BuildDate|OS|Arch`.
    pub version: String,
    /// How long a hello, Connect or Bind with an unknown token waits for the controller
    /// to push its (API) session before it is refused. The controller answers the SDK
    /// and notifies routers at the same time, so an SDK that dials at once can beat the
    /// update to the router; OpenZiti routers wait for such sessions too.
    pub session_wait: Duration,
    /// The credit each conn id starts with for its sends, when the SDK speaks Weft's
    /// per-stream credit (the circuit window; `Forwarder` sets it).
    pub stream_window: u32,
    /// Bytes of frames the router generated for this connection (latency answers,
    /// Results, StateClosed, Credit, ...) that may wait unwritten; beyond it the
    /// connection is not read until the peer takes them ([`EdgeConnection::output_full`]).
    /// Relayed Data is bounded by circuit windows instead.
    pub reply_budget: usize,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            hello_timeout: Duration::from_secs(1),
            dial_timeout: Duration::from_secs(5),
            // A busy host (one `weft tunnel host`, one SDK listener) holds one conn id
            // per client; each is a small fixed state here, and data is bounded by the
            // circuit windows, not by this count.
            max_conns: 65_536,
            session_wait: Duration::from_secs(3),
            stream_window: 4 * 1024 * 1024,
            reply_budget: 64 * 1024,
            limits: Limits::DEFAULT,
            version: format!(
                "v{}|unknown|unknown|{}|{}",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
        }
    }
}

#[derive(Debug)]
enum State {
    AwaitingHello { deadline: Instant },
    Open { api_session_id: String },
    Closed,
}

/// What a conn id of this connection is.
#[derive(Debug)]
enum ConnRole {
    /// The SDK dialed; waiting for the forwarding layer (`reply_for` = Connect seq).
    Dialing { reply_for: i32, wants_key: bool },
    /// The SDK bound; waiting for the terminator (`reply_for` = Bind seq).
    Binding { reply_for: i32 },
    /// A bound listener.
    Listener,
    /// Carries data (a dial that succeeded, or a conn the host accepted).
    Connected,
}

#[derive(Debug)]
struct Conn {
    role: ConnRole,
    session_id: String,
    /// Next edge Seq (1001) for unsolicited messages on this conn; from 1 (spec §7).
    next_seq: u32,
    /// With per-stream credit: payload bytes the SDK still lets us send (a frame may
    /// start while any is left, so it can be overdrawn by one frame).
    credit: SendCredit,
    /// With per-stream credit: Data waiting for credit (payload, FIN), in order.
    waiting: VecDeque<(Bytes, bool)>,
    /// With per-stream credit: bytes of the SDK's sends delivered and not yet granted
    /// back.
    ungranted: GrantBatch,
    /// The far side closed cleanly while Data still waited for credit: the StateClosed
    /// (with this reason) goes out once `waiting` is empty. The circuit is gone; what the
    /// SDK still sends on this conn id is dropped (and granted back).
    finishing: Option<String>,
}

impl Conn {
    fn new(role: ConnRole, session_id: String, credit: Option<u32>) -> Self {
        Self {
            role,
            session_id,
            next_seq: 1,
            credit: SendCredit::overdrawable(u64::from(credit.unwrap_or(0))),
            waiting: VecDeque::new(),
            ungranted: GrantBatch::default(),
            finishing: None,
        }
    }
}

/// A frame whose token was unknown, waiting for the controller's update. While one is
/// held the connection processes nothing else, so the SDK's order is kept.
#[derive(Debug)]
struct Held {
    frame: Frame,
    deadline: Instant,
    unix_ms: i64,
}

/// Whether a handler may hold its frame for an unknown token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// First look: hold it.
    Allowed,
    /// The wait is over: decide now.
    Expired,
}

#[derive(Debug)]
struct PendingDial {
    circuit: CircuitId,
    listener: u32,
    deadline: Instant,
}

/// The router side of one SDK connection: hello, latency, dial, bind, data, close and
/// revocation. See the module docs for the driving contract.
#[derive(Debug)]
pub struct EdgeConnection {
    config: EdgeConfig,
    state: State,
    decoder: Decoder,
    client_fingerprint: Option<String>,
    /// Channel sequence for frames we send.
    next_sequence: i32,
    conns: HashMap<u32, Conn>,
    /// Dials sent to the host, by the Dial frame's sequence.
    pending_dials: HashMap<i32, PendingDial>,
    /// A frame waiting for its session to arrive.
    held: Option<Held>,
    /// The hello Result went out (it is sent once, before the verdict).
    hello_acked: bool,
    /// The SDK's per-stream receive window, when it speaks Weft's per-stream credit
    /// (negotiated on the hello; `None` for OpenZiti SDKs).
    sdk_window: Option<u32>,
    out: BytesMut,
    transmits: VecDeque<Transmit>,
    /// Bytes of the router's own frames (not relayed Data) in `transmits`.
    queued_replies: usize,
    events: VecDeque<EdgeEvent>,
}

impl EdgeConnection {
    /// A connection whose TLS handshake finished at `now`, with the lower-case hex SHA-1
    /// fingerprint of the client's leaf certificate (the one whose key the handshake
    /// proved; `None` without one, which no API session matches).
    pub fn new(config: EdgeConfig, now: Instant, client_fingerprint: Option<String>) -> Self {
        Self {
            state: State::AwaitingHello {
                deadline: now + config.hello_timeout,
            },
            decoder: Decoder::with_capacity(Limits::HELLO, 16 * 1024),
            client_fingerprint,
            next_sequence: 1,
            conns: HashMap::new(),
            pending_dials: HashMap::new(),
            held: None,
            hello_acked: false,
            sdk_window: None,
            out: BytesMut::with_capacity(4096),
            transmits: VecDeque::new(),
            queued_replies: 0,
            events: VecDeque::new(),
            config,
        }
    }

    /// The receive buffer, for reading straight into it.
    pub fn receive_buffer(&mut self) -> &mut BytesMut {
        self.decoder.buffer_mut()
    }

    /// Processes bytes received into [`Self::receive_buffer`] (and a held frame whose
    /// session may have arrived since).
    pub fn handle_received(&mut self, sessions: &SessionTable, now: Instant, now_unix_ms: i64) {
        if let Some(held) = self.held.take() {
            self.handle_frame(
                &held.frame,
                sessions,
                now,
                held.unix_ms.max(now_unix_ms),
                Wait::Allowed,
            );
            if let Some(again) = self.held.as_mut() {
                // Still unknown: keep the first deadline.
                again.deadline = held.deadline;
                return;
            }
        }
        while !matches!(self.state, State::Closed) && self.held.is_none() {
            match self.decoder.decode() {
                Ok(Decoded::Frame(frame)) => {
                    self.handle_frame(&frame, sessions, now, now_unix_ms, Wait::Allowed);
                }
                Ok(Decoded::NeedMore { .. }) => return,
                Err(e) => return self.close(CloseReason::Malformed(e.to_string())),
            }
        }
    }

    /// Copies `bytes` into the receive buffer and processes them.
    pub fn handle_input(
        &mut self,
        bytes: &[u8],
        sessions: &SessionTable,
        now: Instant,
        now_unix_ms: i64,
    ) {
        self.decoder.extend_from_slice(bytes);
        self.handle_received(sessions, now, now_unix_ms);
    }

    /// Whether a frame waits for its session (the driver should not read meanwhile).
    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// Fires deadlines that passed: the hello deadline, unanswered dials, the wait for
    /// a held frame's session (then it is refused and the frames after it processed).
    pub fn handle_timeout(&mut self, sessions: &SessionTable, now: Instant) {
        if let Some(held) = self.held.take_if(|h| h.deadline <= now) {
            self.handle_frame(&held.frame, sessions, now, held.unix_ms, Wait::Expired);
            self.handle_received(sessions, now, held.unix_ms);
        }
        if let State::AwaitingHello { deadline } = self.state {
            if now >= deadline && self.held.is_none() {
                self.close(CloseReason::HelloTimeout);
            }
            return;
        }
        let expired: Vec<i32> = self
            .pending_dials
            .iter()
            .filter(|(_, d)| d.deadline <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in expired {
            if let Some(dial) = self.pending_dials.remove(&seq) {
                self.events.push_back(EdgeEvent::HostRefused {
                    circuit: dial.circuit,
                    reason: "timeout waiting for the hosting SDK to accept".into(),
                });
            }
        }
    }

    /// The next frame to write.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let transmit = self.transmits.pop_front()?;
        if transmit.data_conn_id.is_none() {
            self.queued_replies = self.queued_replies.saturating_sub(transmit.len());
        }
        Some(transmit)
    }

    /// Whether the router's own frames for this connection (answers to what it sent)
    /// fill the reply budget: the driver must not read it until the peer takes them, so
    /// a peer that sends requests and never reads holds a bounded amount of memory.
    pub fn output_full(&self) -> bool {
        self.queued_replies >= self.config.reply_budget
    }

    /// The next event for the forwarding layer.
    pub fn poll_event(&mut self) -> Option<EdgeEvent> {
        self.events.pop_front()
    }

    /// The earliest deadline, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let held = self.held.as_ref().map(|h| h.deadline);
        let own = match self.state {
            // A held hello waits for its session instead.
            State::AwaitingHello { .. } if held.is_some() => None,
            State::AwaitingHello { deadline } => Some(deadline),
            State::Open { .. } => self.pending_dials.values().map(|d| d.deadline).min(),
            State::Closed => None,
        };
        match (held, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True once the connection must be closed (a [`EdgeEvent::Close`] was emitted).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The API session this connection authenticated with.
    pub fn api_session_id(&self) -> Option<&str> {
        match &self.state {
            State::Open { api_session_id } => Some(api_session_id),
            _ => None,
        }
    }

    /// Number of conn ids in use.
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    // ---- commands from the forwarding layer ----

    /// A dial found its terminator and the host accepted: tell the SDK. `host_public_key`
    /// is sent only when the Connect carried a key (spec §5: otherwise the C SDK would
    /// switch encryption on with a zero key).
    /// `stickiness_token` names the terminator reached, for a sticky service.
    pub fn connect_succeeded(
        &mut self,
        conn_id: u32,
        host_public_key: Option<&[u8]>,
        stickiness_token: Option<&str>,
    ) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let ConnRole::Dialing {
            reply_for,
            wants_key,
        } = conn.role
        else {
            return;
        };
        conn.role = ConnRole::Connected;
        let msg = StateConnected {
            conn_id,
            seq: 0,
            reply_for: Some(reply_for),
            public_key: host_public_key.filter(|_| wants_key),
            stickiness_token: stickiness_token.map(str::as_bytes),
        };
        self.emit(|out, seq| msg.encode(seq, out), Bytes::new());
    }

    /// A dial cannot be completed; `reason` must be non-empty, and exactly
    /// [`edge::INVALID_SESSION`] only for session problems.
    pub fn connect_failed(&mut self, conn_id: u32, reason: &str) {
        let reply_for = match self.conns.get(&conn_id).map(|c| &c.role) {
            Some(ConnRole::Dialing { reply_for, .. }) => *reply_for,
            _ => return,
        };
        self.conns.remove(&conn_id);
        self.reply_closed(conn_id, reply_for, reason);
    }

    /// The terminator for a Bind exists: the listener is bound.
    pub fn bind_succeeded(&mut self, conn_id: u32) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let ConnRole::Binding { reply_for } = conn.role else {
            return;
        };
        conn.role = ConnRole::Listener;
        let msg = StateConnected {
            conn_id,
            seq: 0,
            reply_for: Some(reply_for),
            public_key: None,
            stickiness_token: None,
        };
        self.emit(|out, seq| msg.encode(seq, out), Bytes::new());
    }

    /// The terminator could not be created.
    pub fn bind_failed(&mut self, conn_id: u32, reason: &str) {
        let reply_for = match self.conns.get(&conn_id).map(|c| &c.role) {
            Some(ConnRole::Binding { reply_for }) => *reply_for,
            _ => return,
        };
        self.conns.remove(&conn_id);
        self.reply_closed(conn_id, reply_for, reason);
    }

    /// Asks the SDK hosting `listener` to accept a client for `circuit`. The answer comes
    /// as [`EdgeEvent::HostAccepted`] or [`EdgeEvent::HostRefused`].
    #[allow(clippy::too_many_arguments)]
    pub fn dial_host(
        &mut self,
        now: Instant,
        circuit: CircuitId,
        listener: u32,
        caller_id: &[u8],
        public_key: Option<&[u8]>,
        app_data: Option<&[u8]>,
    ) {
        if !matches!(
            self.conns.get(&listener).map(|c| &c.role),
            Some(ConnRole::Listener)
        ) {
            self.events.push_back(EdgeEvent::HostRefused {
                circuit,
                reason: "listener is gone".into(),
            });
            return;
        }
        let msg = Dial {
            conn_id: listener,
            seq: 0,
            caller_id,
            public_key,
            app_data,
            // The C SDK ignores the body; Go routers send the bind session token, which
            // we do not keep (only its id). An id is as opaque to the host.
            session_token: b"",
        };
        let sequence = self.emit(|out, seq| msg.encode(seq, out), Bytes::new());
        self.pending_dials.insert(
            sequence,
            PendingDial {
                circuit,
                listener,
                deadline: now + self.config.dial_timeout,
            },
        );
    }

    /// Relays payload to the SDK on `conn_id` (a FIN when `fin`). Returns false when the
    /// conn id is not connected (the caller tears the circuit down).
    /// With per-stream credit, Data beyond the SDK's credit for `conn_id` waits here
    /// (in order) until the SDK grants more.
    pub fn send_data(&mut self, conn_id: u32, payload: Bytes, fin: bool) -> bool {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return false;
        };
        if !matches!(conn.role, ConnRole::Connected) {
            return false;
        }
        if self.sdk_window.is_some() {
            let blocked = !conn.waiting.is_empty() || !conn.credit.fits(payload.len());
            if blocked {
                conn.waiting.push_back((payload, fin));
                return true;
            }
            conn.credit.spend(payload.len());
        }
        self.emit_data(conn_id, payload, fin);
        true
    }

    /// Encodes one Data frame for `conn_id` (connected).
    fn emit_data(&mut self, conn_id: u32, payload: Bytes, fin: bool) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let edge_seq = conn.next_seq;
        conn.next_seq = conn.next_seq.wrapping_add(1);
        let msg = Data {
            conn_id,
            seq: edge_seq,
            flags: if fin { edge::FLAG_FIN } else { 0 },
            payload: &payload,
        };
        let head = |out: &mut BytesMut, seq| msg.encode_head(seq, out);
        self.emit_tagged(head, payload.clone(), Some(conn_id));
    }

    /// Whether the SDK speaks Weft's per-stream credit: the forwarding layer then holds
    /// a fast sender back by withholding [`Self::grant`]s instead of pausing the whole
    /// connection.
    pub fn has_stream_credit(&self) -> bool {
        self.sdk_window.is_some()
    }

    /// `bytes` the SDK sent on `conn_id` have left the router (written on the far side):
    /// with per-stream credit they are granted back, an eighth of the window at a time.
    pub fn grant(&mut self, conn_id: u32, bytes: usize) {
        if self.sdk_window.is_none() {
            return;
        }
        let batch = (self.config.stream_window / 8).max(1);
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        // The SDK's credit is in payload bytes (its protocol): no frame counts here.
        let drained = Drained {
            bytes: bytes as u64,
            frames: 0,
        };
        let Some(grant) = conn.ungranted.add(drained, 0, u64::from(batch)) else {
            return;
        };
        let msg = Credit {
            conn_id,
            bytes: grant.bytes,
        };
        self.emit(|out, seq| msg.encode(seq, out), Bytes::new());
    }

    /// The SDK granted credit for `conn_id`: send what waited for it.
    fn handle_credit(&mut self, credit: Credit) {
        if self.sdk_window.is_none() {
            // Not negotiated: ignored like any unknown message.
            return;
        }
        let Some(conn) = self.conns.get_mut(&credit.conn_id) else {
            return;
        };
        conn.credit.grant(u64::from(credit.bytes));
        loop {
            let Some(conn) = self.conns.get_mut(&credit.conn_id) else {
                return;
            };
            let Some((payload, _)) = conn.waiting.front() else {
                if let Some(reason) = conn.finishing.take() {
                    // Everything before the far side's close is out: now the close.
                    self.close_conn(credit.conn_id, &reason);
                }
                return;
            };
            if !conn.credit.fits(payload.len()) {
                return;
            }
            let Some((payload, fin)) = conn.waiting.pop_front() else {
                return;
            };
            conn.credit.spend(payload.len());
            self.emit_data(credit.conn_id, payload, fin);
        }
    }

    /// Closes `conn_id` because the far side closed it cleanly: Data (and the FIN) that
    /// still wait for the SDK's credit go out first, then StateClosed with `reason`, so
    /// that everything written before a close is delivered before it. Without per-stream
    /// credit nothing waits here and the close goes out at once, after the Data queued
    /// before it.
    pub fn finish_conn(&mut self, conn_id: u32, reason: &str) {
        match self.conns.get_mut(&conn_id) {
            Some(conn) if matches!(conn.role, ConnRole::Connected) && !conn.waiting.is_empty() => {
                conn.finishing = Some(reason.to_owned());
            }
            _ => self.close_conn(conn_id, reason),
        }
    }

    /// Closes `conn_id` from the router's side (session removed, peer lost) at once: the
    /// SDK gets StateClosed with `reason`, Data still waiting for its credit is dropped,
    /// and the conn id is forgotten (spec §4a step 9).
    pub fn close_conn(&mut self, conn_id: u32, reason: &str) {
        let Some(conn) = self.conns.remove(&conn_id) else {
            return;
        };
        match conn.role {
            ConnRole::Dialing { reply_for, .. } | ConnRole::Binding { reply_for } => {
                self.reply_closed(conn_id, reply_for, reason);
            }
            ConnRole::Listener | ConnRole::Connected => {
                let msg = StateClosed {
                    conn_id,
                    seq: conn.next_seq,
                    reply_for: None,
                    reason: non_empty(reason).as_bytes(),
                };
                self.emit(|out, seq| msg.encode(seq, out), Bytes::new());
            }
        }
        self.pending_dials.retain(|_, d| d.listener != conn_id);
    }

    /// Applies what the controller removed: a removed API session closes the whole
    /// connection; a removed session closes every conn and listener that used it, with
    /// events so the circuits and terminators go too.
    pub fn revoke(&mut self, removed: &Removed) {
        let Some(api_session_id) = self.api_session_id() else {
            return;
        };
        // The whole API session (identity deleted or disabled, logged out, idled out):
        // every conn ends, and the connection with them.
        let whole = removed.api_sessions.iter().any(|id| id == api_session_id);
        let mut affected: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| whole || removed.sessions.contains(&c.session_id))
            .map(|(id, _)| *id)
            .collect();
        affected.sort_unstable();
        for conn_id in affected {
            let listener = matches!(
                self.conns.get(&conn_id).map(|c| &c.role),
                Some(ConnRole::Listener | ConnRole::Binding { .. })
            );
            // Go routers' texts (spec §4c): "session ended" for a terminator, "session
            // closed" for a dial; neither is a prefix of "Invalid Session".
            self.close_conn(
                conn_id,
                if listener {
                    "session ended"
                } else {
                    "session closed"
                },
            );
            self.events.push_back(match listener {
                true => EdgeEvent::Unbound { conn_id },
                false => EdgeEvent::ConnClosed {
                    conn_id,
                    cause: ConnEnd::Revoked,
                },
            });
        }
        if whole {
            // Each conn was told first (its StateClosed is flushed before the
            // connection closes), so an SDK reports a revocation on both halves of its
            // streams, not a lost router.
            self.close(CloseReason::ApiSessionRevoked);
        }
    }

    /// Closes the connection from the router's side (socket lost, shutdown): events
    /// for every conn id, listener and pending dial, then [`EdgeEvent::Close`].
    pub fn abort(&mut self, reason: CloseReason) {
        self.close(reason);
    }

    // ---- input ----

    fn handle_frame(
        &mut self,
        frame: &Frame,
        sessions: &SessionTable,
        now: Instant,
        now_unix_ms: i64,
        wait: Wait,
    ) {
        let hold = |this: &mut Self| {
            this.held = Some(Held {
                frame: frame.clone(),
                deadline: now + this.config.session_wait,
                unix_ms: now_unix_ms,
            });
        };
        if let State::AwaitingHello { .. } = self.state {
            return self.handle_hello(frame, sessions, now_unix_ms, wait, hold);
        }
        let message = match EdgeMessage::parse(frame) {
            Ok(m) => m,
            Err(e) => return self.close(CloseReason::Malformed(e.to_string())),
        };
        match message {
            EdgeMessage::LatencyProbe(probe) => {
                let reply = probe.reply(frame.sequence());
                self.emit(|out, seq| reply.encode(seq, out), Bytes::new());
            }
            EdgeMessage::Connect(connect) => {
                if self.session_unknown(connect.session_token, sessions, wait) {
                    return hold(self);
                }
                self.handle_connect(frame, &connect, sessions);
            }
            EdgeMessage::Bind(bind) => {
                if self.session_unknown(bind.session_token, sessions, wait) {
                    return hold(self);
                }
                self.handle_bind(frame, &bind, sessions);
            }
            EdgeMessage::Data(data) => self.handle_data(frame, &data),
            // A reason from the SDK (Weft SDKs' abort; OpenZiti SDKs send none) means the
            // stream failed on its side: the far side must not read a clean end.
            EdgeMessage::StateClosed(closed) => {
                let cause = match closed.reason.is_empty() {
                    true => ConnEnd::Closed,
                    false => ConnEnd::Aborted,
                };
                self.handle_sdk_close(closed.conn_id, cause);
            }
            EdgeMessage::Unbind(unbind) => self.handle_unbind(&unbind),
            EdgeMessage::DialSuccess(ok) => self.handle_dial_success(frame, &ok),
            EdgeMessage::DialFailed(failed) => self.handle_dial_failed(&failed),
            EdgeMessage::Credit(credit) => self.handle_credit(credit),
            // A second hello, router-bound messages from the SDK, and the types the C
            // SDK never sends (Probe, UpdateBind, HealthEvent, ...) are ignored, as Go
            // routers ignore unknown types.
            _ => {}
        }
    }

    /// Whether a Connect or Bind token is unknown and may still arrive.
    fn session_unknown(&self, token: &[u8], sessions: &SessionTable, wait: Wait) -> bool {
        wait == Wait::Allowed
            && self.api_session_id().is_some_and(|api| {
                matches!(
                    sessions.check_session(token, api, SessionKind::Dial),
                    Err(SessionRejection::UnknownToken)
                )
            })
    }

    fn handle_hello(
        &mut self,
        frame: &Frame,
        sessions: &SessionTable,
        now_unix_ms: i64,
        wait: Wait,
        hold: impl FnOnce(&mut Self),
    ) {
        let Ok(hello) = Hello::parse(frame) else {
            return self.close(CloseReason::ExpectedHello);
        };
        if !self.hello_acked {
            // Acknowledge first, whatever the verdict (spec §2.4): a refused SDK then sees
            // the connection close and refreshes its API session.
            self.hello_acked = true;
            // A Weft SDK offers per-stream credit; the Result accepts it with ours.
            self.sdk_window = edge::stream_window(frame);
            let ours = self.sdk_window.map(|_| self.config.stream_window.max(1));
            let version = self.config.version.clone();
            let result = HelloResult {
                success: true,
                reply_for: frame.sequence(),
                version: Some(version.as_bytes()),
                connection_id: None,
                message: b"",
            };
            self.emit_with_sequence(edge::HELLO_RESULT_SEQUENCE, |out, seq| {
                result.encode_with_window(seq, ours, out)
            });
        }
        match sessions.check_hello(
            hello.session_token,
            self.client_fingerprint.as_deref(),
            now_unix_ms,
        ) {
            // An API session or a certificate of it (an API session certificate, a
            // 3rd-party claim) the controller's next update may bring: wait for it.
            Err(HelloRejection::UnknownToken | HelloRejection::CertificateMismatch)
                if wait == Wait::Allowed =>
            {
                hold(self)
            }
            Ok(api_session) => {
                self.events.push_back(EdgeEvent::Authenticated {
                    api_session_id: api_session.id.clone(),
                    identity_id: api_session.identity_id.clone(),
                });
                self.state = State::Open {
                    api_session_id: api_session.id.clone(),
                };
                self.decoder.set_limits(self.config.limits);
            }
            Err(rejection) => self.close(CloseReason::HelloRejected(rejection)),
        }
    }

    /// Checks the conn id is free and under the cap; answers StateClosed if not.
    fn admit_conn(&mut self, conn_id: u32, reply_for: i32) -> bool {
        let reason = if self.conns.contains_key(&conn_id) {
            "conn id already in use"
        } else if self.conns.len() >= self.config.max_conns {
            "too many connections on this edge connection"
        } else {
            return true;
        };
        self.reply_closed(conn_id, reply_for, reason);
        false
    }

    fn handle_connect(&mut self, frame: &Frame, connect: &Connect<'_>, sessions: &SessionTable) {
        let reply_for = frame.sequence();
        if !self.admit_conn(connect.conn_id, reply_for) {
            return;
        }
        let Some(api_session_id) = self.api_session_id() else {
            return;
        };
        let Ok(session) =
            sessions.check_session(connect.session_token, api_session_id, SessionKind::Dial)
        else {
            return self.reply_closed(connect.conn_id, reply_for, edge::INVALID_SESSION);
        };
        self.conns.insert(
            connect.conn_id,
            Conn::new(
                ConnRole::Dialing {
                    reply_for,
                    wants_key: connect.public_key.is_some(),
                },
                session.id.clone(),
                self.sdk_window,
            ),
        );
        let slice = |v: &[u8]| frame_slice(frame, v);
        self.events.push_back(EdgeEvent::Dial {
            conn_id: connect.conn_id,
            session_id: session.id.clone(),
            service_id: session.service_id.clone(),
            caller_id: connect.caller_id.map(slice).unwrap_or_default(),
            public_key: connect.public_key.map(slice),
            terminator_identity: connect.terminator_identity.map(slice),
            app_data: connect.app_data.map(slice),
            stickiness: if sessions.is_sticky(&session.service_id) {
                Stickiness::On(connect.stickiness_token.map(slice))
            } else {
                Stickiness::Off
            },
        });
    }

    fn handle_bind(&mut self, frame: &Frame, bind: &Bind<'_>, sessions: &SessionTable) {
        let reply_for = frame.sequence();
        if !self.admit_conn(bind.conn_id, reply_for) {
            return;
        }
        let Some(api_session_id) = self.api_session_id() else {
            return;
        };
        let Ok(session) =
            sessions.check_session(bind.session_token, api_session_id, SessionKind::Bind)
        else {
            return self.reply_closed(bind.conn_id, reply_for, edge::INVALID_SESSION);
        };
        self.conns.insert(
            bind.conn_id,
            Conn::new(
                ConnRole::Binding { reply_for },
                session.id.clone(),
                self.sdk_window,
            ),
        );
        let slice = |v: &[u8]| frame_slice(frame, v);
        self.events.push_back(EdgeEvent::Bind {
            conn_id: bind.conn_id,
            session_id: session.id.clone(),
            service_id: session.service_id.clone(),
            public_key: bind.public_key.map(slice),
            terminator_identity: bind.terminator_identity.map(slice),
            cost: bind.cost.unwrap_or(0),
            precedence: bind.precedence.unwrap_or_default(),
        });
    }

    fn handle_data(&mut self, frame: &Frame, data: &Data<'_>) {
        // Data for a conn id that is not connected is dropped, as the Go router and the
        // C SDK both do; it is not a protocol violation worth a disconnect.
        let Some(conn) = self.conns.get(&data.conn_id) else {
            return;
        };
        if conn.finishing.is_some() {
            // The far side is gone (cleanly) and the SDK has not heard yet: what it sends
            // is dropped, and granted back so that its writer never waits on a stream
            // whose reader must first drain the close.
            let len = frame.body().len();
            return self.grant(data.conn_id, len);
        }
        if let ConnRole::Connected = conn.role {
            self.events.push_back(EdgeEvent::Data {
                conn_id: data.conn_id,
                // A short payload gets its own memory: queued behind a slow reader, a
                // slice would keep the whole receive buffer alive.
                payload: detach(frame.body()),
                fin: data.is_fin(),
            });
        }
    }

    fn handle_sdk_close(&mut self, conn_id: u32, cause: ConnEnd) {
        let Some(conn) = self.conns.remove(&conn_id) else {
            return;
        };
        if conn.finishing.is_some() {
            // Its circuit already ended; nothing else to tell.
            return;
        }
        self.pending_dials.retain(|_, d| d.listener != conn_id);
        self.events.push_back(match conn.role {
            // StateClosed on a listener id is how the C SDK unbinds (spec §9 item 3).
            ConnRole::Listener | ConnRole::Binding { .. } => EdgeEvent::Unbound { conn_id },
            ConnRole::Dialing { .. } | ConnRole::Connected => {
                EdgeEvent::ConnClosed { conn_id, cause }
            }
        });
    }

    fn handle_unbind(&mut self, unbind: &Unbind<'_>) {
        if matches!(
            self.conns.get(&unbind.conn_id).map(|c| &c.role),
            Some(ConnRole::Listener | ConnRole::Binding { .. })
        ) {
            self.handle_sdk_close(unbind.conn_id, ConnEnd::Closed);
        }
    }

    fn handle_dial_success(&mut self, frame: &Frame, ok: &DialSuccess) {
        let Some(dial) = self.pending_dials.remove(&ok.reply_for) else {
            // A late accept (the dial timed out) or a reply to no dial. The C SDK waits
            // for an answer to its DialSuccess without a timeout of its own, and its
            // accept stays stuck until one comes: refuse it.
            self.reply_closed(
                ok.conn_id,
                frame.sequence(),
                "the dial is no longer pending",
            );
            return;
        };
        let session_id = match self.conns.get(&dial.listener) {
            Some(_) if self.conns.contains_key(&ok.new_conn_id) => {
                self.reply_closed(ok.conn_id, frame.sequence(), "conn id already in use");
                self.events.push_back(EdgeEvent::HostRefused {
                    circuit: dial.circuit,
                    reason: "host reused a conn id".into(),
                });
                return;
            }
            Some(listener) => listener.session_id.clone(),
            None => {
                self.events.push_back(EdgeEvent::HostRefused {
                    circuit: dial.circuit,
                    reason: "listener is gone".into(),
                });
                return;
            }
        };
        self.conns.insert(
            ok.new_conn_id,
            Conn::new(ConnRole::Connected, session_id, self.sdk_window),
        );
        // Go copies the DialSuccess ConnId (the listener id); C matches by reply-for.
        let msg = StateConnected {
            conn_id: ok.conn_id,
            seq: 0,
            reply_for: Some(frame.sequence()),
            public_key: None,
            stickiness_token: None,
        };
        self.emit(|out, seq| msg.encode(seq, out), Bytes::new());
        self.events.push_back(EdgeEvent::HostAccepted {
            circuit: dial.circuit,
            conn_id: ok.new_conn_id,
        });
    }

    fn handle_dial_failed(&mut self, failed: &DialFailed<'_>) {
        if let Some(dial) = self.pending_dials.remove(&failed.reply_for) {
            self.events.push_back(EdgeEvent::HostRefused {
                circuit: dial.circuit,
                reason: String::from_utf8_lossy(failed.reason).into_owned(),
            });
        }
    }

    // ---- output ----

    fn reply_closed(&mut self, conn_id: u32, reply_for: i32, reason: &str) {
        let msg = StateClosed {
            conn_id,
            seq: 0,
            reply_for: Some(reply_for),
            reason: non_empty(reason).as_bytes(),
        };
        self.emit(|out, seq| msg.encode(seq, out), Bytes::new());
    }

    /// Encodes a frame with the next channel sequence; returns that sequence.
    fn emit(
        &mut self,
        encode: impl FnOnce(&mut BytesMut, i32) -> Result<(), EncodeError>,
        payload: Bytes,
    ) -> i32 {
        self.emit_tagged(encode, payload, None)
    }

    /// [`Self::emit`] for relayed Data, tagged with its conn id.
    fn emit_tagged(
        &mut self,
        encode: impl FnOnce(&mut BytesMut, i32) -> Result<(), EncodeError>,
        payload: Bytes,
        data_conn_id: Option<u32>,
    ) -> i32 {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.push_transmit(sequence, encode, payload, data_conn_id);
        sequence
    }

    fn emit_with_sequence(
        &mut self,
        sequence: i32,
        encode: impl FnOnce(&mut BytesMut, i32) -> Result<(), EncodeError>,
    ) {
        self.push_transmit(sequence, encode, Bytes::new(), None);
    }

    fn push_transmit(
        &mut self,
        sequence: i32,
        encode: impl FnOnce(&mut BytesMut, i32) -> Result<(), EncodeError>,
        payload: Bytes,
        data_conn_id: Option<u32>,
    ) {
        self.out.clear();
        match encode(&mut self.out, sequence) {
            Ok(()) => {
                let transmit = Transmit {
                    head: Head::new(&self.out),
                    payload,
                    data_conn_id,
                };
                if data_conn_id.is_none() {
                    self.queued_replies += transmit.len();
                }
                self.transmits.push_back(transmit);
            }
            // Only a >4 GiB body or header block fails to encode; nothing we build is.
            Err(e) => self.close(CloseReason::Malformed(format!("cannot encode: {e}"))),
        }
    }

    fn close(&mut self, reason: CloseReason) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.state = State::Closed;
        // Every conn dies with the connection; the forwarding layer tears circuits down.
        let mut ids: Vec<(u32, bool)> = self
            .conns
            .drain()
            .map(|(id, c)| {
                (
                    id,
                    matches!(c.role, ConnRole::Listener | ConnRole::Binding { .. }),
                )
            })
            .collect();
        ids.sort_unstable();
        for (conn_id, listener) in ids {
            self.events.push_back(match listener {
                true => EdgeEvent::Unbound { conn_id },
                false => EdgeEvent::ConnClosed {
                    conn_id,
                    cause: ConnEnd::Lost,
                },
            });
        }
        for (_, dial) in self.pending_dials.drain() {
            self.events.push_back(EdgeEvent::HostRefused {
                circuit: dial.circuit,
                reason: "hosting connection closed".into(),
            });
        }
        self.events.push_back(EdgeEvent::Close(reason));
    }
}

/// A router's StateClosed body is never empty: the C SDK reads an empty body as
/// "Invalid Session" (spec §3.3 QUIRK).
fn non_empty(reason: &str) -> &str {
    if reason.is_empty() { "closed" } else { reason }
}

/// `value` (a header value of `frame`) as a slice of the frame's shared memory: a
/// reference count, no copy.
fn frame_slice(frame: &Frame, value: &[u8]) -> Bytes {
    let block = frame.header_block();
    let inside = block.as_ptr_range();
    let sub = value.as_ptr_range();
    if value.is_empty() || sub.start < inside.start || sub.end > inside.end {
        // Not reachable for values read from this frame; copy rather than panic.
        return Bytes::copy_from_slice(value);
    }
    block.slice_ref(value)
}
