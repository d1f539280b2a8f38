//! One link's protocol, sans-IO: the hello, circuits' data with a credit window per
//! circuit per direction, heartbeats, closes. Bytes in ([`LinkSession::handle_bytes`]),
//! frames out ([`LinkSession::poll_transmit`]), events ([`LinkSession::poll_event`]),
//! time as an argument ([`LinkSession::handle_timeout`]).
//!
//! - **Hello**: the dialer sends `LinkHello` with its router id; the listener, which
//!   knows from the dialer's verified leaf certificate which router it must be (the
//!   controller vouches for routers by fingerprint), answers a Result: success only when
//!   the ids match. Nothing else is accepted before.
//! - **Credit**: a sender has at most [`LinkConfig::window`] payload bytes in flight per
//!   circuit ([`LinkSession::send_data`] refuses beyond it); the receiver returns credit
//!   as its consumer drains ([`LinkSession::consumed`]), in batches. A peer that sends
//!   beyond the window is broken or hostile: the link ends. So one stalled reader holds
//!   one window and never stalls another circuit or the link.
//! - **Circuits** are opened locally ([`LinkSession::open_circuit`], when the controller
//!   routes one over the link); data for a circuit this side does not know is dropped
//!   and answered with one `LinkClose`, within a bounded budget.
//! - **Answers** to the peer (heartbeat acks, those closes) count against a reply
//!   budget; past it [`LinkSession::wants_read`] tells the driver to stop reading, so a
//!   peer that sends and never reads holds us to one budget.
//! - **Health**: [`super::health`]; a link silent for the dead time ends.
//!
//! Driving contract: after any input, drain `poll_transmit` (write each, in order) and
//! `poll_event`; wake at `poll_timeout`; read only while `wants_read`. An error ends the link: close the socket.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use weft_wire::edge::{FLAG_FIN, HelloResult};
use weft_wire::link::{
    CLOSE_FLAG_LINK_UP, CLOSE_FLAG_REROUTE, FLAG_START, LinkAck, LinkClose, LinkCredit, LinkData,
    LinkHeartbeat, LinkHeartbeatAck, LinkHello, hello_result_frame_cost,
};
use weft_wire::{ContentType, Decoded, Decoder, Frame, HeaderId, Limits};

use super::health::{HealthConfig, LinkHealth};
use crate::credit::{Drained, FRAME_COST, GrantBatch, Inflow, SendCredit, charge, detach};
use crate::edge::Head;

/// Settings of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// Credit one circuit may have in flight per direction (4 MiB): payload bytes and,
    /// when both routers charge frames, `frame_cost` per frame.
    pub window: u32,
    /// What this router charges per frame ([`FRAME_COST`]; 0 counts payload only, as
    /// routers before frame charges did). A link charges the smaller of its two
    /// routers' costs, which each states in the hello.
    pub frame_cost: u32,
    /// Credit is returned once this many bytes were consumed (a quarter window).
    pub credit_batch: u32,
    /// Circuits open on the link at most.
    pub max_circuits: usize,
    /// `LinkClose` answers to data for unknown circuits, at most per this many ids
    /// remembered (then the memory starts over).
    pub max_unknown_replies: usize,
    /// Bytes of answers to the peer (heartbeat acks, closes of unknown circuits, the
    /// hello's Result) queued at most before [`LinkSession::wants_read`] says to stop
    /// reading: a peer that sends and never reads cannot make the link hold more.
    pub reply_budget_bytes: usize,
    /// Heartbeats and the dead time; also how long the hello may take.
    pub health: HealthConfig,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            window: 4 * 1024 * 1024,
            frame_cost: FRAME_COST as u32,
            credit_batch: 1024 * 1024,
            max_circuits: 65_536,
            max_unknown_replies: 1024,
            reply_budget_bytes: 64 * 1024,
            health: HealthConfig::default(),
        }
    }
}

/// Which side of the link this is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// It dialled: it says hello as `own_id` to router `peer`.
    Dialer {
        /// This router's id.
        own_id: String,
        /// The router dialled.
        peer: String,
        /// Which of this router's connections of the link to `peer` it is (below
        /// [`MAX_CONNECTIONS`]).
        connection: u32,
    },
    /// It accepted: the dialer must say hello as `expected_peer` (the router whose
    /// certificate the TLS handshake verified).
    Listener {
        /// The router the dialer's leaf certificate belongs to.
        expected_peer: String,
    },
}

/// Connections one link (one pair of routers, one dialer) may have: a listener refuses
/// a hello naming a connection at or past it. OpenZiti allows up to 100 payload
/// connections per link and maintainers report that more than 3 rarely helps.
pub const MAX_CONNECTIONS: u32 = 16;

/// What the link delivers to the forwarder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The hello succeeded; circuits may use the link.
    Up {
        /// The router at the other end.
        peer: String,
    },
    /// Payload of a circuit (shares memory with the received bytes).
    Data {
        /// The circuit.
        circuit: u64,
        /// Its sequence on this link.
        seq: u64,
        /// The sender half-closed after this payload.
        fin: bool,
        /// The bytes.
        payload: Bytes,
    },
    /// The circuit's ingress is routed: its egress may relay what the host sends.
    Start {
        /// The circuit.
        circuit: u64,
    },
    /// A start for a circuit this connection does not carry: the peer router chose this
    /// connection of the link for it, and this router installed it on another
    /// connection to that router. The forwarder moves it here
    /// ([`LinkSession::open_circuit`]) or refuses it ([`LinkSession::refuse_circuit`]).
    StartUnheld {
        /// The circuit.
        circuit: u64,
    },
    /// The peer consumed this much of what this side sent on `circuit`.
    Credit {
        /// The circuit.
        circuit: u64,
        /// Bytes the peer's consumer drained.
        bytes: u32,
        /// Frames that carried them.
        frames: u32,
    },
    /// The peer closed `circuit`.
    Closed {
        /// The circuit.
        circuit: u64,
        /// Why.
        reason: Bytes,
        /// Only the circuit's path broke: its end routers reroute it.
        reroute: bool,
        /// With `reroute`: the link that lost a connection stays up on another, so the
        /// same path will do.
        link_up: bool,
    },
    /// The far end router of `circuit` received its payload up to `seq` (end to end).
    Ack {
        /// The circuit.
        circuit: u64,
        /// The highest sequence received in order.
        seq: u64,
    },
    /// A round trip was measured.
    Latency(Duration),
}

/// Why the link ended.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkError {
    /// The bytes are not valid framing.
    #[error("malformed frame: {0}")]
    Decode(#[from] weft_wire::DecodeError),
    /// A frame is not the message its content type names.
    #[error("bad message: {0}")]
    Message(#[from] weft_wire::MessageError),
    /// A frame could not be encoded.
    #[error("encode failed: {0}")]
    Encode(#[from] weft_wire::EncodeError),
    /// The listener refused the hello.
    #[error("hello refused: {0}")]
    HelloRefused(String),
    /// The dialer said it is another router than its certificate says.
    #[error("the dialer says it is {got:?}, its certificate is {expected:?}'s")]
    WrongPeer {
        /// From the certificate.
        expected: String,
        /// From the hello.
        got: String,
    },
    /// A message that is not allowed at this point.
    #[error("unexpected {0:?}")]
    Unexpected(ContentType),
    /// The peer sent beyond a circuit's window.
    #[error("the peer sent beyond the window of circuit {0}")]
    CreditExceeded(u64),
    /// Nothing arrived for the dead time (or the hello did not finish in it).
    #[error("the link is silent")]
    Dead,
    /// Circuits cannot be used before the hello finished.
    #[error("the link is not up")]
    NotUp,
    /// The link carries its maximum of circuits.
    #[error("too many circuits on the link")]
    TooManyCircuits,
    /// The dialer's hello named a connection at or past [`MAX_CONNECTIONS`].
    #[error("the hello names connection {0}, past the most one link may have")]
    TooManyConnections(u32),
    /// A payload larger than the whole window can never be sent.
    #[error("a payload of {0} bytes exceeds the circuit window")]
    TooLarge(usize),
}

/// One frame to write: `head`, then `payload` (one vectored write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Prefix and headers.
    pub head: Head,
    /// Body (shares memory with what the forwarder handed over).
    pub payload: Bytes,
}

/// One circuit's credit on the link (the same machinery an edge stream uses,
/// [`crate::credit`]).
#[derive(Clone, Debug)]
struct CircuitCredit {
    /// What this side may still send (strict: a frame goes only when covered).
    send: SendCredit,
    /// What this side sent and the peer has not credited yet: a credit counts for no
    /// more than that (a peer that credits more cannot make this side over-count).
    outstanding: Inflow,
    /// What arrived and is not consumed yet.
    inflow: Inflow,
    /// Consumed and not yet granted back.
    grants: GrantBatch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Hello,
    Up,
}

/// One link's protocol state.
#[derive(Debug)]
pub struct LinkSession {
    config: LinkConfig,
    role: Role,
    /// Which of the dialer's connections of the link this is.
    connection: u32,
    /// What a frame is charged on this link, agreed in the hello.
    frame_cost: u64,
    state: State,
    started: Instant,
    hello_seq: i32,
    decoder: Decoder,
    scratch: BytesMut,
    sequence: i32,
    /// Frames to write, each marked when it answers the peer.
    out: VecDeque<(Transmit, bool)>,
    /// Bytes of answers in `out`.
    replies_queued: usize,
    events: VecDeque<LinkEvent>,
    circuits: HashMap<u64, CircuitCredit>,
    unknown_replied: HashSet<u64>,
    /// The ids of `unknown_replied`, oldest first (the oldest goes when it is full).
    unknown_order: VecDeque<u64>,
    /// Decoding stopped after a [`LinkEvent::StartUnheld`]: what follows the start
    /// waits until the forwarder took or refused the circuit.
    stopped_for_start: bool,
    health: LinkHealth,
    traffic: Traffic,
}

/// What crossed a link, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Frames received.
    pub frames_received: u64,
    /// Payload bytes received (circuit data).
    pub bytes_received: u64,
    /// Frames handed to the driver to send.
    pub frames_sent: u64,
    /// Payload bytes handed to the driver to send.
    pub bytes_sent: u64,
}

impl LinkSession {
    /// A link in `role`, its TLS handshake done at `now`; a dialer's hello is queued.
    pub fn new(config: LinkConfig, role: Role, now: Instant) -> Result<Self, LinkError> {
        let connection = match &role {
            Role::Dialer { connection, .. } => *connection,
            Role::Listener { .. } => 0,
        };
        let mut s = Self {
            config,
            role,
            connection,
            frame_cost: 0,
            state: State::Hello,
            started: now,
            hello_seq: 0,
            decoder: Decoder::new(Limits::DEFAULT),
            scratch: BytesMut::with_capacity(256),
            sequence: 0,
            out: VecDeque::new(),
            replies_queued: 0,
            events: VecDeque::new(),
            circuits: HashMap::new(),
            unknown_replied: HashSet::new(),
            unknown_order: VecDeque::new(),
            stopped_for_start: false,
            health: LinkHealth::new(config.health, now),
            traffic: Traffic::default(),
        };
        if let Role::Dialer { own_id, .. } = &s.role {
            let own_id = own_id.clone();
            s.hello_seq = s.push(|seq, out| {
                LinkHello {
                    router_id: &own_id,
                    connection,
                    frame_cost: config.frame_cost,
                }
                .encode(seq, out)
            })?;
        }
        Ok(s)
    }

    /// The router at the other end, once the hello succeeded.
    pub fn peer(&self) -> Option<&str> {
        match (&self.state, &self.role) {
            (State::Up, Role::Dialer { peer, .. }) => Some(peer),
            (State::Up, Role::Listener { expected_peer }) => Some(expected_peer),
            (State::Hello, _) => None,
        }
    }

    /// Whether the last [`Self::handle_received`] stopped at a start it handed up, with
    /// frames perhaps left to process.
    pub fn stopped_for_start(&self) -> bool {
        self.stopped_for_start
    }

    /// Which of the dialer's connections of the link this is (from the hello on the
    /// listener's side; 0 until then).
    pub fn connection(&self) -> u32 {
        self.connection
    }

    /// What crossed the link so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// The link's round trips per bucket of [`super::health::RTT_BUCKETS_US`] and their
    /// sum in microseconds.
    pub fn rtt_histogram(&self) -> ([u64; super::health::RTT_BUCKETS_US.len() + 1], u64) {
        self.health.rtt_histogram()
    }

    /// The smoothed round trip of the link, once measured.
    pub fn latency(&self) -> Option<Duration> {
        self.health.latency()
    }

    /// Bytes received from the peer.
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) -> Result<(), LinkError> {
        self.decoder.extend_from_slice(data);
        self.handle_received(now)
    }

    /// The receive buffer, for a driver (or its TLS session) to append what it received
    /// to; [`Self::handle_received`] afterwards.
    pub fn receive_buffer(&mut self) -> &mut BytesMut {
        self.decoder.buffer_mut()
    }

    /// Processes the bytes appended to [`Self::receive_buffer`]. It stops after a start
    /// it hands up as [`LinkEvent::StartUnheld`] ([`Self::stopped_for_start`]): the
    /// caller takes or refuses the circuit, then calls this again for the rest (data of
    /// that circuit may follow its start).
    pub fn handle_received(&mut self, now: Instant) -> Result<(), LinkError> {
        self.stopped_for_start = false;
        while !self.stopped_for_start {
            let Decoded::Frame(frame) = self.decoder.decode()? else {
                break;
            };
            self.health.handle_received(now);
            self.traffic.frames_received += 1;
            if frame.content_type() == ContentType::LINK_DATA {
                self.traffic.bytes_received += frame.body().len() as u64;
            }
            self.handle_frame(now, &frame)?;
        }
        Ok(())
    }

    fn handle_frame(&mut self, now: Instant, frame: &Frame) -> Result<(), LinkError> {
        let ct = frame.content_type();
        if self.state == State::Hello {
            return self.handle_hello(frame);
        }
        match ct {
            ContentType::LINK_DATA => {
                let data = LinkData::parse(frame)?;
                let Some(credit) = self.circuits.get_mut(&data.circuit_id) else {
                    if data.flags & FLAG_START != 0 {
                        self.events.push_back(LinkEvent::StartUnheld {
                            circuit: data.circuit_id,
                        });
                        self.stopped_for_start = true;
                        return Ok(());
                    }
                    return self.unknown_circuit(data.circuit_id);
                };
                if data.flags & FLAG_START != 0 {
                    self.events.push_back(LinkEvent::Start {
                        circuit: data.circuit_id,
                    });
                    return Ok(());
                }
                let window = u64::from(self.config.window);
                if !credit
                    .inflow
                    .receive(data.payload.len(), self.frame_cost, window)
                {
                    return Err(LinkError::CreditExceeded(data.circuit_id));
                }
                // A short payload gets its own memory (`detach`): behind a slow reader,
                // a slice would keep the link's whole receive buffer alive.
                let payload = detach(frame.body());
                self.events.push_back(LinkEvent::Data {
                    circuit: data.circuit_id,
                    seq: data.seq,
                    fin: data.flags & FLAG_FIN != 0,
                    payload,
                });
            }
            ContentType::LINK_CREDIT => {
                let c = LinkCredit::parse(frame)?;
                if let Some(credit) = self.circuits.get_mut(&c.circuit_id) {
                    let credited = credit.outstanding.consume(Drained {
                        bytes: u64::from(c.credit),
                        frames: u64::from(c.frames),
                    });
                    credit.send.grant(credited.charged(self.frame_cost));
                    // At most what was sent, so both fit the frame's u32 fields.
                    self.events.push_back(LinkEvent::Credit {
                        circuit: c.circuit_id,
                        bytes: u32::try_from(credited.bytes).unwrap_or(u32::MAX),
                        frames: u32::try_from(credited.frames).unwrap_or(u32::MAX),
                    });
                }
            }
            ContentType::LINK_CLOSE => {
                let c = LinkClose::parse(frame)?;
                if self.circuits.remove(&c.circuit_id).is_some() {
                    self.events.push_back(LinkEvent::Closed {
                        circuit: c.circuit_id,
                        // The reason is the frame's body: a slice of it, not a copy.
                        reason: frame.body().clone(),
                        reroute: c.flags & CLOSE_FLAG_REROUTE != 0,
                        link_up: c.flags & CLOSE_FLAG_LINK_UP != 0,
                    });
                }
            }
            ContentType::LINK_ACK => {
                let a = LinkAck::parse(frame)?;
                if self.circuits.contains_key(&a.circuit_id) {
                    self.events.push_back(LinkEvent::Ack {
                        circuit: a.circuit_id,
                        seq: a.seq,
                    });
                }
            }
            ContentType::LINK_HEARTBEAT => {
                let stamp = LinkHeartbeat::parse(frame)?.stamp;
                self.push_reply(|seq, out| LinkHeartbeatAck { stamp }.encode(seq, out))?;
            }
            ContentType::LINK_HEARTBEAT_ACK => {
                let stamp = LinkHeartbeatAck::parse(frame)?.stamp;
                if let Some(rtt) = self.health.handle_ack(now, stamp) {
                    self.events.push_back(LinkEvent::Latency(rtt));
                }
            }
            other => return Err(LinkError::Unexpected(other)),
        }
        Ok(())
    }

    fn handle_hello(&mut self, frame: &Frame) -> Result<(), LinkError> {
        match self.role.clone() {
            Role::Listener { expected_peer } => {
                let hello = LinkHello::parse(frame)?;
                if hello.connection >= MAX_CONNECTIONS {
                    self.refuse_hello(frame, b"too many connections for one link")?;
                    return Err(LinkError::TooManyConnections(hello.connection));
                }
                self.connection = hello.connection;
                if hello.router_id != expected_peer {
                    let err = LinkError::WrongPeer {
                        expected: expected_peer,
                        got: hello.router_id.to_owned(),
                    };
                    self.refuse_hello(frame, b"not the router its certificate names")?;
                    return Err(err);
                }
                let reply_for = frame.sequence();
                let own_cost = self.config.frame_cost;
                self.push_reply(|seq, out| {
                    HelloResult {
                        success: true,
                        reply_for,
                        version: None,
                        connection_id: None,
                        message: b"",
                    }
                    .encode_with_u32(
                        seq,
                        (own_cost != 0).then_some((HeaderId::LINK_FRAME_COST, own_cost)),
                        out,
                    )
                })?;
                self.frame_cost = u64::from(own_cost.min(hello.frame_cost));
                self.up(expected_peer);
                Ok(())
            }
            Role::Dialer { peer, .. } => {
                let result = HelloResult::parse(frame)?;
                if result.reply_for != self.hello_seq {
                    return Err(LinkError::Unexpected(frame.content_type()));
                }
                if !result.success {
                    return Err(LinkError::HelloRefused(
                        String::from_utf8_lossy(result.message).into_owned(),
                    ));
                }
                let peer_cost = hello_result_frame_cost(frame)?;
                self.frame_cost = u64::from(self.config.frame_cost.min(peer_cost));
                self.up(peer);
                Ok(())
            }
        }
    }

    /// Answers the dialer's hello `frame` with a failed Result saying why.
    fn refuse_hello(&mut self, frame: &Frame, message: &[u8]) -> Result<(), LinkError> {
        let reply_for = frame.sequence();
        self.push_reply(|seq, out| {
            HelloResult {
                success: false,
                reply_for,
                version: None,
                connection_id: None,
                message,
            }
            .encode(seq, out)
        })
        .map(|_| ())
    }

    fn up(&mut self, peer: String) {
        self.state = State::Up;
        self.events.push_back(LinkEvent::Up { peer });
    }

    /// Data for a circuit this side does not hold: dropped, and answered with one
    /// close per circuit id while the memory of answered ids lasts.
    fn unknown_circuit(&mut self, circuit: u64) -> Result<(), LinkError> {
        if self.remember_answered(circuit) {
            self.push_reply(|seq, out| {
                LinkClose {
                    circuit_id: circuit,
                    reason: b"unknown circuit",
                    flags: 0,
                }
                .encode(seq, out)
            })?;
        }
        Ok(())
    }

    /// Heartbeats, and the dead time (which also bounds the hello).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), LinkError> {
        if self.state == State::Hello {
            if now.saturating_duration_since(self.started) >= self.config.health.dead_after {
                return Err(LinkError::Dead);
            }
            return Ok(());
        }
        if self.health.is_dead(now) {
            return Err(LinkError::Dead);
        }
        if let Some(stamp) = self.health.poll_heartbeat(now) {
            self.push(|seq, out| LinkHeartbeat { stamp }.encode(seq, out))?;
        }
        Ok(())
    }

    /// When to call [`Self::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Instant {
        match self.state {
            State::Hello => self.started + self.config.health.dead_after,
            State::Up => self.health.poll_timeout(),
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// The next frame to write.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let (transmit, reply) = self.out.pop_front()?;
        if reply {
            self.replies_queued -= transmit.head.len();
        }
        self.traffic.frames_sent += 1;
        self.traffic.bytes_sent += transmit.payload.len() as u64;
        Some(transmit)
    }

    /// Carries `circuit` over this link from now on, with a full window each way.
    pub fn open_circuit(&mut self, circuit: u64) -> Result<(), LinkError> {
        if self.state != State::Up {
            return Err(LinkError::NotUp);
        }
        if self.circuits.len() >= self.config.max_circuits && !self.circuits.contains_key(&circuit)
        {
            return Err(LinkError::TooManyCircuits);
        }
        let window = u64::from(self.config.window);
        self.circuits
            .entry(circuit)
            .or_insert_with(|| CircuitCredit {
                send: SendCredit::strict(window),
                outstanding: Inflow::default(),
                inflow: Inflow::default(),
                grants: GrantBatch::default(),
            });
        self.unknown_replied.remove(&circuit);
        Ok(())
    }

    /// Ends `circuit` on this link and tells the peer why.
    pub fn close_circuit(&mut self, circuit: u64, reason: &[u8]) -> Result<(), LinkError> {
        self.close_with(circuit, reason, 0)
    }

    /// Ends `circuit` on this link because its path broke elsewhere: the peer passes it
    /// on toward the circuit's end router, which reroutes the circuit. `link_up`: the
    /// broken link stays up on another connection (the same path will do).
    pub fn close_for_reroute(
        &mut self,
        circuit: u64,
        reason: &[u8],
        link_up: bool,
    ) -> Result<(), LinkError> {
        let flags = match link_up {
            true => CLOSE_FLAG_REROUTE | CLOSE_FLAG_LINK_UP,
            false => CLOSE_FLAG_REROUTE,
        };
        self.close_with(circuit, reason, flags)
    }

    /// Refuses a circuit the peer started on this connection ([`LinkEvent::StartUnheld`])
    /// that this router does not carry, as data for an unknown circuit is, but with a
    /// close for a reroute over intact links: the path is inconsistent (this router lost
    /// the circuit's leg with a connection the peer had not seen go yet), and the
    /// circuit's ends get another one rather than an error.
    pub fn refuse_circuit(&mut self, circuit: u64) -> Result<(), LinkError> {
        // Always answered (within the reply budget): the start's sender waits for it.
        self.remember_answered(circuit);
        self.push_reply(|seq, out| {
            LinkClose {
                circuit_id: circuit,
                reason: b"unknown circuit",
                flags: CLOSE_FLAG_REROUTE | CLOSE_FLAG_LINK_UP,
            }
            .encode(seq, out)
        })
        .map(|_| ())
    }

    fn close_with(&mut self, circuit: u64, reason: &[u8], flags: u32) -> Result<(), LinkError> {
        if self.circuits.remove(&circuit).is_some() {
            self.push(|seq, out| {
                LinkClose {
                    circuit_id: circuit,
                    reason,
                    flags,
                }
                .encode(seq, out)
            })?;
        }
        Ok(())
    }

    /// Forgets `circuit` without telling the peer (it moved to another link or id; the
    /// peer forgot it already, or hears of it from its own path). What the peer still
    /// sends on it was sent before the peer moved too and is dropped without an answer
    /// (the circuit's end sends again what was not acknowledged): a close would end the
    /// peer's circuit while it still has the id.
    pub fn forget_circuit(&mut self, circuit: u64) {
        if self.circuits.remove(&circuit).is_some() {
            self.remember_answered(circuit);
        }
    }

    /// Notes that frames on `circuit` get no (more) answer, within the bounded memory
    /// of answered ids (the oldest is forgotten first: a peer that keeps sending on
    /// unknown ids gets at most one close per id while it is remembered); whether it
    /// was new there.
    fn remember_answered(&mut self, circuit: u64) -> bool {
        if self.unknown_replied.contains(&circuit) {
            return false;
        }
        while self.unknown_replied.len() >= self.config.max_unknown_replies.max(1) {
            match self.unknown_order.pop_front() {
                Some(old) => {
                    self.unknown_replied.remove(&old);
                }
                None => {
                    self.unknown_replied.clear();
                    break;
                }
            }
        }
        self.unknown_order.push_back(circuit);
        self.unknown_replied.insert(circuit)
    }

    /// Queues an end-to-end ack of `circuit` up to `seq` (no credit needed).
    pub fn send_ack(&mut self, circuit: u64, seq: u64) -> Result<(), LinkError> {
        if self.circuits.contains_key(&circuit) {
            self.push(|s, out| {
                LinkAck {
                    circuit_id: circuit,
                    seq,
                }
                .encode(s, out)
            })?;
        }
        Ok(())
    }

    /// Credit this side may still spend on `circuit` now (payload bytes and
    /// [`Self::frame_cost`] per frame).
    pub fn send_credit(&self, circuit: u64) -> u64 {
        self.circuits
            .get(&circuit)
            .map_or(0, |c| c.send.available())
    }

    /// Whether a frame of `len` payload bytes may go on `circuit` now.
    pub fn fits(&self, circuit: u64, len: usize) -> bool {
        self.send_credit(circuit) >= charge(len, self.frame_cost)
    }

    /// What a frame is charged on this link beyond its payload: the smaller of the two
    /// routers' costs (0 before the hello, and with a router that does not charge).
    pub fn frame_cost(&self) -> u64 {
        self.frame_cost
    }

    /// Queues `payload` on `circuit` (sequence `seq`, half-closing when `fin`); `false`
    /// when the circuit's credit does not cover it (wait for a [`LinkEvent::Credit`]),
    /// or the circuit is not open here.
    pub fn send_data(
        &mut self,
        circuit: u64,
        seq: u64,
        fin: bool,
        payload: Bytes,
    ) -> Result<bool, LinkError> {
        if self.state != State::Up {
            return Err(LinkError::NotUp);
        }
        let charged = charge(payload.len(), self.frame_cost);
        if charged > u64::from(self.config.window) {
            return Err(LinkError::TooLarge(payload.len()));
        }
        let Some(credit) = self.circuits.get_mut(&circuit) else {
            return Ok(false);
        };
        if credit.send.available() < charged {
            return Ok(false);
        }
        credit
            .send
            .spend(usize::try_from(charged).unwrap_or(usize::MAX));
        // Within the window (the credit above covered it), so never refused.
        credit
            .outstanding
            .receive(payload.len(), self.frame_cost, u64::MAX);
        self.sequence += 1;
        self.scratch.clear();
        LinkData {
            circuit_id: circuit,
            seq,
            flags: if fin { FLAG_FIN } else { 0 },
            payload: &payload,
        }
        .encode_head(self.sequence, &mut self.scratch)?;
        self.out.push_back((
            Transmit {
                head: Head::new(&self.scratch),
                payload,
            },
            false,
        ));
        Ok(true)
    }

    /// Queues the start of `circuit` (see [`LinkEvent::Start`]); it needs no credit.
    pub fn send_start(&mut self, circuit: u64) -> Result<(), LinkError> {
        if self.state != State::Up {
            return Err(LinkError::NotUp);
        }
        if !self.circuits.contains_key(&circuit) {
            return Ok(());
        }
        self.push(|seq, out| {
            LinkData {
                circuit_id: circuit,
                seq: 0,
                flags: FLAG_START,
                payload: &[],
            }
            .encode(seq, out)
        })?;
        Ok(())
    }

    /// The consumer drained `drained` of what arrived on `circuit`: credit goes back to
    /// the peer once a batch has gathered.
    pub fn consumed(&mut self, circuit: u64, drained: Drained) -> Result<(), LinkError> {
        let batch = u64::from(self.config.credit_batch);
        let cost = self.frame_cost;
        let Some(credit) = self.circuits.get_mut(&circuit) else {
            return Ok(());
        };
        let held = credit.inflow.consume(drained);
        if let Some(grant) = credit.grants.add(held, cost, batch) {
            self.push(|seq, out| {
                LinkCredit {
                    circuit_id: circuit,
                    credit: grant.bytes,
                    frames: grant.frames,
                }
                .encode(seq, out)
            })?;
        }
        Ok(())
    }

    /// Circuits open on the link.
    pub fn circuits(&self) -> usize {
        self.circuits.len()
    }

    /// Encodes a control frame with the next sequence and queues it; returns the
    /// sequence.
    fn push(
        &mut self,
        encode: impl FnOnce(i32, &mut BytesMut) -> Result<(), weft_wire::EncodeError>,
    ) -> Result<i32, LinkError> {
        self.queue(false, encode)
    }

    /// [`Self::push`] of an answer to the peer, counted against the reply budget.
    fn push_reply(
        &mut self,
        encode: impl FnOnce(i32, &mut BytesMut) -> Result<(), weft_wire::EncodeError>,
    ) -> Result<i32, LinkError> {
        self.queue(true, encode)
    }

    fn queue(
        &mut self,
        reply: bool,
        encode: impl FnOnce(i32, &mut BytesMut) -> Result<(), weft_wire::EncodeError>,
    ) -> Result<i32, LinkError> {
        self.sequence += 1;
        self.scratch.clear();
        encode(self.sequence, &mut self.scratch)?;
        // The whole frame goes out as the head (inline when it fits: heartbeats and
        // credits do, so they allocate nothing).
        let head = Head::new(&self.scratch);
        if reply {
            self.replies_queued += head.len();
        }
        self.out.push_back((
            Transmit {
                head,
                payload: Bytes::new(),
            },
            reply,
        ));
        Ok(self.sequence)
    }

    /// Whether the driver should read from the peer: false while the answers queued
    /// for it exceed [`LinkConfig::reply_budget_bytes`] (it is not reading them).
    pub fn wants_read(&self) -> bool {
        self.replies_queued < self.config.reply_budget_bytes
    }
}

#[cfg(test)]
mod tests;
