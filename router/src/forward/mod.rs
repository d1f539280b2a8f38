//! Forwarding on one shard: edge connections, the terminators they host, and the
//! circuits between them. Sans-IO like the rest of the protocol code.
//!
//! A circuit joins a dialing SDK's conn id to the conn id a hosting SDK accepted for it.
//! Payload crosses as the same `Bytes` it arrived in (no copy; a payload under 16 KiB
//! was copied out of its receive buffer by the edge connection). Each direction of a
//! circuit has a window: what was handed to the far connection and not yet reported
//! written by the driver, each frame charged its payload and its cost (`crate::credit`).
//! When it is full, the connection the bytes came from is paused (the driver stops
//! reading it) until the far side drains to half the window; so one slow reader holds
//! at most one window of memory. The edge protocol of the OpenZiti C SDK 0.29.3 has no
//! per-stream flow control, so pausing stops the whole source connection (see
//! `docs/adr/0003-edge-flow-control.md`). All the circuits of one identity's
//! connections on the shard share a budget (`budget`): past it none of those
//! connections is read.
//!
//! Driving contract, after every input (`add_conn`, `handle_received`, `handle_timeout`,
//! `handle_written`, `apply_*`, `terminator_*`):
//! 1. `poll_transmit(conn)` for each conn in `poll_ready()`; write them, then report
//!    each with `handle_written`;
//! 2. `poll_control()` for requests to the controller;
//! 3. `poll_close()` for connections to flush and close, then `remove_conn`;
//! 4. `wants_read(conn)` before reading a connection; `poll_timeout()` for the timer.
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)

mod budget;
mod cross;
mod links;
mod mesh;
mod terminators;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use weft_wire::control::pb;

use crate::credit::{Drained, FRAME_COST, charge};
use crate::edge::{
    CircuitId, CloseReason, ConnEnd, EdgeConfig, EdgeConnection, EdgeEvent, Stickiness, Transmit,
};
use crate::sessions::{Removed, RevisionGap, SessionTable};
use budget::{Budgets, Change, Slot};
pub use cross::{CrossDial, CrossMsg, MeshDial, SHARD_SHIFT, credit_batch};
pub use links::{LATENCY_REPORT_INTERVAL, LinkInfo};
pub use terminators::Terminator;
use terminators::Terminators;

/// `drained` as counted against a window charging `frame_cost` per frame.
fn charged(drained: Drained, frame_cost: u64) -> usize {
    usize::try_from(drained.charged(frame_cost)).unwrap_or(usize::MAX)
}

/// A driver-assigned key of one edge connection on this shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey(pub u64);

/// Settings of a shard's forwarding.
#[derive(Clone, Debug)]
pub struct ForwardConfig {
    /// This router's id at the controller: edge router policies and service edge router
    /// policies grant identities and services to routers by it.
    pub router_id: String,
    /// Edge connection settings.
    pub edge: EdgeConfig,
    /// Bytes one circuit direction may have queued toward a slow reader (default 4 MiB,
    /// near OpenZiti's xgress buffers).
    pub window: usize,
    /// Edge connections one API session may hold on this shard; a further hello is
    /// answered and its connection closed. SDKs open one per router.
    pub max_conns_per_api_session: usize,
    /// What the edge connections of one identity may make this shard hold, in charges
    /// (payload and each frame's cost) over all their circuits (default 1 GiB): past it
    /// none of them is read until half of it drained. A window bounds one circuit; this
    /// bounds an identity that opens many.
    pub identity_budget: usize,
    /// The shard that holds the links to other routers, when the router has any: a dial
    /// with no terminator on this router is routed there by the controller.
    pub mesh_shard: Option<usize>,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            router_id: String::new(),
            edge: EdgeConfig::default(),
            window: 4 * 1024 * 1024,
            max_conns_per_api_session: 16,
            identity_budget: 1 << 30,
            mesh_shard: None,
        }
    }
}

/// A request for the control thread to carry to the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlRequest {
    /// Register a terminator; answer with `terminator_created` or `terminator_failed`.
    CreateTerminator {
        /// Hosting connection.
        conn: ConnKey,
        /// Listener conn id.
        listener: u32,
        /// Service to host.
        service_id: String,
        /// The request body for the controller.
        request: pb::CreateTerminatorRequest,
    },
    /// Unregister a terminator.
    RemoveTerminator {
        /// Controller id of the terminator.
        terminator_id: String,
    },
    /// A link went up or down, or its latency changed.
    LinkStatus(pb::LinkStatus),
    /// The path of circuit `circuit_id` broke: this end router asks for a new one.
    Reroute {
        /// The circuit's id on links.
        circuit_id: u64,
        /// Every link of the path is still up (a link lost one connection of several):
        /// the same path will do.
        path_intact: bool,
        /// The circuit's id on links of the path that broke.
        link_circuit_id: u64,
    },
    /// Route `circuit` (its dialer has no terminator here) across routers; answer with
    /// [`Forwarder::circuit_routed`].
    CreateCircuit {
        /// The circuit on this shard.
        circuit: CircuitId,
        /// The request for the controller.
        request: pb::CircuitRequest,
    },
    /// The answer to a Route the controller sent ([`Forwarder::install_route`]).
    RouteResult {
        /// The Route's sequence.
        request_id: i32,
        /// The circuit's id on links.
        circuit_id: u64,
        /// Why it failed; `None` when installed.
        error: Option<String>,
    },
    /// A circuit across routers ended here.
    CircuitClosed(pb::CircuitClosed),
}

/// One side of a circuit on this shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Leg {
    conn: ConnKey,
    conn_id: u32,
}

/// One side of a circuit on a link to another router: the link and the circuit's id on
/// it (the same on every link of the circuit's path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LinkLeg {
    link: ConnKey,
    circuit: u64,
}

/// Which side of a circuit ended it (see `Forwarder::end_circuit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// This local leg (it is not told again).
    Leg(Leg),
    /// This link leg (the peer router ended it; it is not told again).
    Link(LinkLeg),
    /// This shard, for no leg in particular (every side is told).
    Here,
    /// The other shard (it is not told again).
    Remote,
}

/// Where one side of a circuit sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// On this shard.
    Local(Leg),
    /// On the shard with this index.
    Remote(usize),
    /// On another router, over a link of this shard.
    Link(LinkLeg),
}

impl End {
    fn local(self) -> Option<Leg> {
        match self {
            Self::Local(leg) => Some(leg),
            Self::Remote(_) | Self::Link(_) => None,
        }
    }

    fn link(self) -> Option<LinkLeg> {
        match self {
            Self::Link(leg) => Some(leg),
            Self::Local(_) | Self::Remote(_) => None,
        }
    }

    fn is(self, conn: ConnKey, conn_id: u32) -> bool {
        self == Self::Local(Leg { conn, conn_id })
    }
}

/// A circuit as this shard sees it. A circuit whose sides sit on two shards has a
/// record on each, with one local side (see [`CrossMsg`]).
#[derive(Clone, Debug)]
struct Circuit {
    dialer: End,
    /// When the dialer's Connect arrived, for the dial-setup histogram (meaningful on
    /// the dialer's shard).
    started: Instant,
    /// The chosen terminator's key, for the dialer's StateConnected.
    host_public_key: Option<Bytes>,
    /// Set once the host accepted.
    host: Option<End>,
    /// The shard of the host (known from the terminator before it accepts).
    host_shard: usize,
    /// What was sent toward the host and not yet written (or credited), charged per
    /// frame ([`crate::credit::charge`]: payload and the frame's cost).
    toward_host: usize,
    /// What was sent toward the dialer and not yet written (or credited), charged.
    toward_dialer: usize,
    /// What the local leg wrote that came from the other shard, not yet credited.
    uncredited: Drained,
    /// The circuit's id on links, when it crosses routers.
    mesh_id: Option<u64>,
    /// Sequence of the next payload sent on its link leg.
    link_seq: u64,
    /// False on an egress router until the ingress says the circuit is routed: what the
    /// host sends meanwhile waits in `held`.
    relaying: bool,
    /// Payload for the link leg that waits, with its sequence: for the start, for the
    /// link's credit, for acks (the retransmit bound), or for a new path. On a transit
    /// (both sides links), the payload toward the host's side only.
    held: VecDeque<(u64, Bytes, bool)>,
    /// On a transit: the payload toward the dialer's side that waits for that link's
    /// credit (each direction waits for its own link).
    held_back: VecDeque<(u64, Bytes, bool)>,
    /// On an egress router, the Route to answer once the host accepted.
    route_request: Option<i32>,
    /// On an end router of a circuit across routers: payload sent on the link and not
    /// yet acknowledged by the other end router, kept to send again on a new path.
    unacked: VecDeque<(u64, Bytes, bool)>,
    /// Bytes in `unacked`.
    unacked_bytes: usize,
    /// On an end router: the highest sequence received from the link in order (what
    /// arrives again after a reroute is dropped), and the bytes since the last ack.
    recv_seq: u64,
    recv_unacked: usize,
    /// Frames received since the last ack.
    recv_unacked_frames: usize,
    /// Frames received again (after a reroute) since the last new one.
    dup_frames: usize,
    /// Set while an end router waits for a new path: until when.
    rerouting: Option<Instant>,
    /// On an end router: a FIN went into the link leg's payload (the local side
    /// half-closed, or the circuit began closing: the other end acknowledges a FIN at
    /// once).
    fin_sent: bool,
    /// On an end router: the other end's FIN arrived, with everything before it.
    peer_fin: bool,
    /// On the dialer's shard, for a service with the `sticky` strategy: the dialer's
    /// StateConnected names the terminator reached (`sticky_token` once known).
    sticky: bool,
    sticky_token: Option<String>,
    /// Set once the circuit ended cleanly while payload still waited for a link leg
    /// (see [`Closing`]).
    closing: Option<Closing>,
}

/// A circuit that ended cleanly with payload still waiting for its link leg (held back
/// by the link's credit, or by an ingress that has not started the circuit yet) or, on
/// an end router, not yet acknowledged by the other end (a link lost meanwhile must not
/// lose it: the circuit is rerouted and sends it again). Its
/// record stays, with no side but the link, until that payload is sent; then the leg
/// closes with `reason`, after the last byte. Past `deadline` it closes with an error
/// instead: the far end must not read a clean end of a stream that lost its tail.
#[derive(Clone, Debug)]
struct Closing {
    reason: String,
    deadline: Instant,
}

impl Circuit {
    /// A circuit record with its dialer, the shard its host is (to be) on, and nothing
    /// in flight.
    fn new(dialer: End, host_shard: usize, now: Instant) -> Self {
        Self {
            dialer,
            started: now,
            host_public_key: None,
            host: None,
            host_shard,
            toward_host: 0,
            toward_dialer: 0,
            uncredited: Drained::default(),
            mesh_id: None,
            link_seq: 1,
            relaying: true,
            held: VecDeque::new(),
            held_back: VecDeque::new(),
            route_request: None,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            recv_seq: 0,
            recv_unacked: 0,
            recv_unacked_frames: 0,
            dup_frames: 0,
            rerouting: None,
            fin_sent: false,
            peer_fin: false,
            sticky: false,
            sticky_token: None,
            closing: None,
        }
    }

    /// Whether payload for `leg` waits in `held_back`: `leg` is the dialer's side of a
    /// transit (both sides links); everything else waits in `held`.
    fn back_toward(&self, leg: LinkLeg) -> bool {
        self.dialer == End::Link(leg) && matches!(self.host, Some(End::Link(_)))
    }

    /// Whether this record is an end of a circuit across routers: one side on a link,
    /// the other not.
    fn is_mesh_end(&self) -> bool {
        matches!(
            (self.dialer, self.host),
            (End::Link(_), Some(End::Local(_) | End::Remote(_)))
                | (End::Local(_) | End::Remote(_), Some(End::Link(_)))
        ) || (matches!(self.dialer, End::Link(_)) && self.host.is_none())
    }

    /// The sides on links.
    fn link_legs(&self) -> [Option<LinkLeg>; 2] {
        [self.dialer.link(), self.host.and_then(End::link)]
    }

    /// The side across from `from`, and whether it is toward the host; `None` while
    /// the host has not accepted or `from` is no side of the circuit.
    fn across(&self, from: End) -> Option<(End, bool)> {
        if self.dialer == from {
            self.host.map(|h| (h, true))
        } else if self.host == Some(from) {
            Some((self.dialer, false))
        } else {
            None
        }
    }
}

impl Circuit {
    /// The sides on this shard.
    fn local_legs(&self) -> [Option<Leg>; 2] {
        [self.dialer.local(), self.host.and_then(End::local)]
    }

    /// The side across from the local leg `(conn, conn_id)`, and whether that leg is
    /// the dialer; `None` while the host has not accepted.
    fn other_side(&self, conn: ConnKey, conn_id: u32) -> Option<(End, bool)> {
        if self.dialer.is(conn, conn_id) {
            self.host.map(|h| (h, true))
        } else {
            Some((self.dialer, false))
        }
    }
}

#[derive(Debug)]
struct ConnState {
    edge: EdgeConnection,
    /// Circuits whose window toward their far side is full because of this connection.
    pausing: HashSet<CircuitId>,
    closing: bool,
    /// Its reply budget was full after the last input (for the pause counter).
    reply_paused: bool,
    /// The API session it authenticated with, once it did.
    api_session: Option<String>,
    /// Its identity's budget, once it authenticated.
    budget: Option<Slot>,
    /// Charges of what it sent that the shard still holds or has in flight.
    held: usize,
    /// The deadline last pushed to the timer heap, to avoid duplicates.
    armed: Option<Instant>,
}

/// Counters of one shard, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Circuits established.
    pub circuits_opened: u64,
    /// Dials that failed (no terminator, host refused, timed out).
    pub dials_failed: u64,
    /// Payload bytes relayed.
    pub bytes_relayed: u64,
    /// Data frames relayed.
    pub frames_relayed: u64,
    /// Times a connection was paused by a full window.
    pub pauses: u64,
    /// Times a connection stopped being read because the router's answers to it filled
    /// its reply budget (a peer that sends requests and does not read).
    pub reply_budget_pauses: u64,
    /// Times an identity's connections stopped being read because together they made
    /// the shard hold more than `identity_budget`.
    pub identity_budget_pauses: u64,
    /// What the identities' connections make the shard hold now, in charges (a gauge).
    pub held_bytes: u64,
    /// Hellos refused because their API session held `max_conns_per_api_session`
    /// connections on this shard already.
    pub refused_per_api_session: u64,
    /// Circuits established with the host on another shard (counted by the dialer's
    /// shard; included in `circuits_opened`).
    pub circuits_cross: u64,
    /// Data frames handed to another shard.
    pub frames_cross: u64,
    /// Links that came up (the hello of their first connection succeeded).
    pub links_up: u64,
    /// Links that went down (their last connection was lost after its hello).
    pub links_lost: u64,
    /// Circuits moved to the connection of a link the peer router started them on
    /// (the two routers saw different connections of the link up).
    pub link_circuits_moved: u64,
    /// Circuits across routers set up with this router as the ingress.
    pub circuits_ingress: u64,
    /// Circuits across routers this router carries between two links.
    pub circuits_transit: u64,
    /// Circuits across routers set up with this router as the egress.
    pub circuits_egress: u64,
    /// Payload bytes sent on links.
    pub link_bytes_sent: u64,
    /// Times payload for a link waited for the link's credit.
    pub link_credit_stalls: u64,
    /// Circuits whose path broke and that moved to a new one.
    pub circuits_rerouted: u64,
    /// Circuits whose path broke and that found no other in time (ended with an error).
    pub reroutes_failed: u64,
}

/// Which circuit each (connection, conn id) carries, grouped by connection so that a
/// closing connection finds its circuits without scanning the others.
#[derive(Debug, Default)]
struct Legs(HashMap<ConnKey, HashMap<u32, CircuitId>>);

impl Legs {
    fn get(&self, conn: ConnKey, conn_id: u32) -> Option<CircuitId> {
        self.0.get(&conn)?.get(&conn_id).copied()
    }

    fn insert(&mut self, conn: ConnKey, conn_id: u32, circuit: CircuitId) {
        self.0.entry(conn).or_default().insert(conn_id, circuit);
    }

    fn remove(&mut self, conn: ConnKey, conn_id: u32) -> Option<CircuitId> {
        let ids = self.0.get_mut(&conn)?;
        let circuit = ids.remove(&conn_id);
        if ids.is_empty() {
            self.0.remove(&conn);
        }
        circuit
    }

    /// Removes and returns every leg of `conn`.
    fn take_conn(&mut self, conn: ConnKey) -> HashMap<u32, CircuitId> {
        self.0.remove(&conn).unwrap_or_default()
    }
}

/// Edge connections, terminators and circuits of one shard.
#[derive(Debug)]
pub struct Forwarder {
    config: ForwardConfig,
    /// This shard's index, and how many shards the router runs.
    shard: usize,
    shards: usize,
    sessions: SessionTable,
    conns: HashMap<ConnKey, ConnState>,
    /// Links to other routers.
    links: HashMap<ConnKey, links::LinkState>,
    terminators: Terminators,
    circuits: HashMap<CircuitId, Circuit>,
    legs: Legs,
    /// Which circuit each (link, circuit id on it) carries.
    link_legs: HashMap<ConnKey, HashMap<u64, CircuitId>>,
    /// The circuits across routers this router is an end of, by their id on links.
    mesh_ends: HashMap<u64, CircuitId>,
    /// When circuits waiting for a new path give up.
    reroute_timers: BinaryHeap<Reverse<(Instant, CircuitId)>>,
    next_circuit: u64,
    ready: VecDeque<ConnKey>,
    in_ready: HashSet<ConnKey>,
    closes: VecDeque<(ConnKey, CloseReason)>,
    /// Links to close, with why.
    link_closes: VecDeque<(ConnKey, String)>,
    control: VecDeque<ControlRequest>,
    /// Messages for other shards: (destination shard, message).
    cross: VecDeque<(usize, CrossMsg)>,
    timers: BinaryHeap<Reverse<(Instant, ConnKey)>>,
    /// Edge connections per API session on this shard.
    per_api_session: HashMap<String, usize>,
    /// What each identity's connections make this shard hold.
    budgets: Budgets,
    stats: ForwardStats,
    /// Connect → StateConnected times of this shard's dials, in microseconds.
    dial_setup: hdrhistogram::Histogram<u64>,
    /// Sum of the setup times recorded in `dial_setup`, in µs.
    dial_setup_sum_us: u64,
}

/// Dial setup latency of one shard (Connect received → StateConnected sent), in
/// microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DialSetup {
    /// Dials measured.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest.
    pub max_us: u64,
    /// Sum of every dial's setup time (for the summary's `_sum`).
    pub sum_us: u64,
}

/// Range of the dial-setup histogram: 1 µs to 60 s, 3 significant digits.
#[allow(clippy::expect_used)]
fn dial_setup_histogram() -> hdrhistogram::Histogram<u64> {
    // Invariant: low >= 1, high >= 2 * low and 3 significant figures are valid bounds,
    // the only conditions under which construction fails.
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

impl Forwarder {
    /// The forwarder of a router with one shard.
    pub fn new(config: ForwardConfig) -> Self {
        Self::sharded(config, 0, 1)
    }

    /// The forwarder of shard `shard` of `shards`: its circuit ids carry `shard` in their
    /// top bits, so ids are unique across shards; its connection keys must come from
    /// [`ConnKey::on_shard`].
    pub fn sharded(mut config: ForwardConfig, shard: u16, shards: u16) -> Self {
        // An SDK that speaks per-stream credit may have one window in flight per stream.
        config.edge.stream_window = u32::try_from(config.window).unwrap_or(u32::MAX);
        let sessions = SessionTable::new(config.router_id.clone());
        let budgets = Budgets::new(config.identity_budget);
        Self {
            config,
            shard: usize::from(shard),
            shards: usize::from(shards.max(1)),
            sessions,
            conns: HashMap::new(),
            links: HashMap::new(),
            terminators: Terminators::default(),
            circuits: HashMap::new(),
            legs: Legs::default(),
            link_legs: HashMap::new(),
            mesh_ends: HashMap::new(),
            reroute_timers: BinaryHeap::new(),
            next_circuit: u64::from(shard) << 48,
            ready: VecDeque::new(),
            in_ready: HashSet::new(),
            closes: VecDeque::new(),
            link_closes: VecDeque::new(),
            control: VecDeque::new(),
            cross: VecDeque::new(),
            timers: BinaryHeap::new(),
            per_api_session: HashMap::new(),
            budgets,
            stats: ForwardStats::default(),
            dial_setup: dial_setup_histogram(),
            dial_setup_sum_us: 0,
        }
    }

    /// The dial-setup latency distribution so far.
    pub fn dial_setup(&self) -> DialSetup {
        let h = &self.dial_setup;
        DialSetup {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
            sum_us: self.dial_setup_sum_us,
        }
    }

    /// The sessions this shard validates against.
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// Counters.
    pub fn stats(&self) -> ForwardStats {
        ForwardStats {
            held_bytes: self.budgets.held_total() as u64,
            ..self.stats
        }
    }

    /// Number of (connections, circuits, terminators) of this shard. A circuit is
    /// counted by the shard of its dialer, so the sums over shards count each once;
    /// terminators of other shards (known for dialing) are not counted.
    pub fn counts(&self) -> (usize, usize, usize) {
        let circuits = self
            .circuits
            .values()
            .filter(|c| matches!(c.dialer, End::Local(_) | End::Link(_)))
            .count();
        let shard = self.shard;
        (
            self.conns.len(),
            circuits,
            self.terminators.count_where(|t| t.conn.shard() == shard),
        )
    }

    /// Whether any circuit has a side on this shard (draining waits for none).
    pub fn has_circuits(&self) -> bool {
        !self.circuits.is_empty()
    }

    /// The next message for another shard: (its index, the message).
    pub fn poll_cross(&mut self) -> Option<(usize, CrossMsg)> {
        self.cross.pop_front()
    }

    /// Queues `msg` for every other shard.
    fn broadcast(&mut self, mut msg: impl FnMut() -> CrossMsg) {
        for shard in (0..self.shards).filter(|s| *s != self.shard) {
            self.cross.push_back((shard, msg()));
        }
    }

    // ---- control plane ----

    /// Replaces the session state with a full sync and closes what it removed.
    pub fn apply_sync(&mut self, now: Instant, sync: pb::StateSync) {
        let removed = self.sessions.apply_sync(sync);
        self.revoke(now, &removed);
        self.retry_held(now);
    }

    /// Applies an incremental update and closes what it removed, at once.
    pub fn apply_update(
        &mut self,
        now: Instant,
        update: pb::StateUpdate,
    ) -> Result<(), RevisionGap> {
        let removed = self.sessions.apply_update(update)?;
        self.revoke(now, &removed);
        self.retry_held(now);
        Ok(())
    }

    /// Gives frames that wait for their session another look after an update.
    fn retry_held(&mut self, now: Instant) {
        let holding: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, s)| s.edge.is_holding())
            .map(|(k, _)| *k)
            .collect();
        for key in holding {
            if let Some(state) = self.conns.get_mut(&key) {
                // The held frame keeps the wall-clock time it arrived with.
                state.edge.handle_received(&self.sessions, now, 0);
            }
            self.after_input(now, key);
        }
    }

    /// Expires API sessions whose time has come and closes what used them.
    pub fn expire_sessions(&mut self, now: Instant, now_unix_ms: i64) {
        let removed = self.sessions.expire(now_unix_ms);
        self.revoke(now, &removed);
    }

    fn revoke(&mut self, now: Instant, removed: &Removed) {
        if removed.is_empty() {
            return;
        }
        let keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        for key in keys {
            if let Some(state) = self.conns.get_mut(&key) {
                state.edge.revoke(removed);
            }
            self.after_input(now, key);
        }
    }

    /// The controller registered the terminator of `(conn, listener)`.
    pub fn terminator_created(
        &mut self,
        now: Instant,
        conn: ConnKey,
        listener: u32,
        terminator_id: String,
    ) {
        let Some(terminator) = self.terminators.get_mut(conn, listener) else {
            // The listener went away meanwhile: undo the registration.
            self.control
                .push_back(ControlRequest::RemoveTerminator { terminator_id });
            return;
        };
        terminator.id = Some(terminator_id);
        if self.shards > 1 {
            let announced = terminator.clone();
            if let Some(service_id) = self.terminators.service_of(conn, listener) {
                let service_id = service_id.to_owned();
                self.broadcast(|| CrossMsg::TerminatorUp {
                    service_id: service_id.clone(),
                    terminator: Box::new(announced.clone()),
                });
            }
        }
        if let Some(state) = self.conns.get_mut(&conn) {
            state.edge.bind_succeeded(listener);
        }
        self.after_input(now, conn);
    }

    /// The controller refused the terminator of `(conn, listener)`.
    pub fn terminator_failed(&mut self, now: Instant, conn: ConnKey, listener: u32, reason: &str) {
        self.terminators.remove(conn, listener);
        if let Some(state) = self.conns.get_mut(&conn) {
            state.edge.bind_failed(listener, reason);
        }
        self.after_input(now, conn);
    }

    // ---- connections ----

    /// A new edge connection whose TLS handshake finished.
    pub fn add_conn(&mut self, now: Instant, key: ConnKey, client_fingerprint: Option<String>) {
        let edge = EdgeConnection::new(self.config.edge.clone(), now, client_fingerprint);
        self.conns.insert(
            key,
            ConnState {
                edge,
                pausing: HashSet::new(),
                closing: false,
                reply_paused: false,
                api_session: None,
                budget: None,
                held: 0,
                armed: None,
            },
        );
        self.after_input(now, key);
    }

    /// The receive buffer of `key`, to read into; `None` for an unknown connection.
    pub fn receive_buffer(&mut self, key: ConnKey) -> Option<&mut bytes::BytesMut> {
        self.conns.get_mut(&key).map(|s| s.edge.receive_buffer())
    }

    /// Processes what was read into the receive buffer of `key`.
    pub fn handle_received(&mut self, now: Instant, key: ConnKey, now_unix_ms: i64) {
        if let Some(state) = self.conns.get_mut(&key) {
            state.edge.handle_received(&self.sessions, now, now_unix_ms);
            let full = state.edge.output_full();
            if full && !state.reply_paused {
                self.stats.reply_budget_pauses += 1;
            }
            state.reply_paused = full;
        }
        self.after_input(now, key);
    }

    /// Copies `bytes` into the receive buffer of `key` and processes them.
    pub fn handle_input(&mut self, now: Instant, key: ConnKey, bytes: &[u8], now_unix_ms: i64) {
        if let Some(buffer) = self.receive_buffer(key) {
            buffer.extend_from_slice(bytes);
        }
        self.handle_received(now, key, now_unix_ms);
    }

    /// The connection's socket failed or reached EOF: every circuit on it ends (the
    /// other sides are told), its terminators go, pending dials to it fail.
    pub fn conn_lost(&mut self, now: Instant, key: ConnKey) {
        if let Some(state) = self.conns.get_mut(&key) {
            state.edge.abort(CloseReason::Lost);
        }
        self.after_input(now, key);
        self.remove_conn(now, key);
    }

    /// Forgets `key` after the driver flushed and closed it (after `poll_close`), or
    /// after `conn_lost`. Removes its terminators and circuits.
    pub fn remove_conn(&mut self, now: Instant, key: ConnKey) {
        let state = self.conns.remove(&key);
        if let Some((slot, held)) = state.as_ref().and_then(|s| Some((s.budget?, s.held))) {
            self.budgets.leave(slot, held);
        }
        if let Some(api_session) = state.and_then(|s| s.api_session) {
            if let Some(count) = self.per_api_session.get_mut(&api_session) {
                *count -= 1;
                if *count == 0 {
                    self.per_api_session.remove(&api_session);
                }
            }
        }
        self.ready.retain(|k| *k != key);
        self.in_ready.remove(&key);
        self.closes.retain(|(k, _)| *k != key);
        // The connection's events normally ended its circuits already; any left are
        // ended here so their other sides hear of it.
        for circuit_id in self.legs.take_conn(key).into_values() {
            if let Some(c) = self.take_circuit(&circuit_id) {
                self.end_circuit(now, circuit_id, &c, Ended::Here, "peer is gone");
            }
        }
        for t in self.terminators.remove_conn(key) {
            self.terminator_gone(t);
        }
    }

    /// A terminator of this shard went away: unregister it at the controller and tell
    /// the other shards.
    fn terminator_gone(&mut self, t: Terminator) {
        let Some(terminator_id) = t.id else {
            // Never confirmed, so never announced either.
            return;
        };
        self.control
            .push_back(ControlRequest::RemoveTerminator { terminator_id });
        let (conn, listener) = (t.conn, t.listener);
        self.broadcast(|| CrossMsg::TerminatorDown { conn, listener });
    }

    /// Fires deadlines that passed. A link whose session ends at its deadline (silent
    /// past the dead time) comes out of [`Self::poll_link_close`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.reroute_deadlines(now);
        while let Some(Reverse((deadline, key))) = self.timers.peek().copied() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            if self.links.contains_key(&key) {
                if let Err(e) = self.link_timeout(now, key) {
                    self.link_closes.push_back((key, e.to_string()));
                }
                continue;
            }
            if let Some(state) = self.conns.get_mut(&key) {
                state.armed = None;
                state.edge.handle_timeout(&self.sessions, now);
            }
            self.after_input(now, key);
        }
    }

    /// The earliest deadline of any connection, link or rerouting circuit.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.timers.peek().map(|Reverse((t, _))| *t);
        let reroutes = self.reroute_timers.peek().map(|Reverse((t, _))| *t);
        match (conns, reroutes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next connection with frames to write.
    pub fn poll_ready(&mut self) -> Option<ConnKey> {
        let key = self.ready.pop_front()?;
        self.in_ready.remove(&key);
        Some(key)
    }

    /// The next frame to write on `key`.
    pub fn poll_transmit(&mut self, key: ConnKey) -> Option<Transmit> {
        self.conns.get_mut(&key)?.edge.poll_transmit()
    }

    /// The driver wrote `transmit` on `key`: the circuit's window opens again.
    pub fn handle_written(&mut self, key: ConnKey, transmit: &Transmit) {
        let Some(conn_id) = transmit.data_conn_id else {
            return;
        };
        let Some(circuit_id) = self.legs.get(key, conn_id) else {
            return;
        };
        let Some(circuit) = self.circuits.get_mut(&circuit_id) else {
            return;
        };
        let len = transmit.payload.len();
        let Some((source, written_to_dialer)) = circuit.other_side(key, conn_id) else {
            return;
        };
        let drained = Drained::frame(len);
        match source {
            End::Remote(shard) => {
                // The source shard counts these bytes against its window: credit them
                // back in batches.
                circuit.uncredited.add(drained);
                if circuit.uncredited.charged(FRAME_COST) >= credit_batch(self.config.window) as u64
                {
                    let drained = std::mem::take(&mut circuit.uncredited);
                    self.cross.push_back((
                        shard,
                        CrossMsg::Credit {
                            circuit: circuit_id,
                            drained,
                        },
                    ));
                }
            }
            End::Local(_) | End::Link(_) => {
                let queued = match written_to_dialer {
                    true => &mut circuit.toward_dialer,
                    false => &mut circuit.toward_host,
                };
                let charge = charged(drained, FRAME_COST);
                *queued = queued.saturating_sub(charge);
                let resume = *queued <= self.config.window / 2;
                self.delivered(circuit_id, source, drained, charge, resume);
            }
        }
    }

    /// `drained`, which `source` sent on `circuit`, was written (or consumed) on the far
    /// side: a source with per-stream credit gets its bytes granted back and a paused
    /// one resumes when `resume`; another shard is credited; a link returns the credit
    /// to its peer router.
    /// `charge` is what `drained` counted against the window it left.
    fn delivered(
        &mut self,
        circuit: CircuitId,
        source: End,
        drained: Drained,
        charge: usize,
        resume: bool,
    ) {
        match source {
            End::Local(source) => {
                self.release_held(source.conn, charge);
                let Some(state) = self.conns.get_mut(&source.conn) else {
                    return;
                };
                if resume {
                    state.pausing.remove(&circuit);
                }
                if state.edge.has_stream_credit() {
                    let bytes = usize::try_from(drained.bytes).unwrap_or(usize::MAX);
                    state.edge.grant(source.conn_id, bytes);
                    self.mark(source.conn);
                }
            }
            End::Remote(shard) => self
                .cross
                .push_back((shard, CrossMsg::Credit { circuit, drained })),
            End::Link(leg) => self.link_consumed(leg, drained),
        }
    }

    /// `conn` sent `charge` more that the shard holds: its identity's account grows.
    fn hold(&mut self, conn: ConnKey, charge: usize) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        state.held = state.held.saturating_add(charge);
        if let Some(slot) = state.budget {
            if self.budgets.hold(slot, charge) == Change::Paused {
                self.stats.identity_budget_pauses += 1;
            }
        }
    }

    /// `charge` of what `conn` sent left the shard (its connections' reading resumes
    /// with [`Self::wants_read`] once its identity drained to half its budget).
    fn release_held(&mut self, conn: ConnKey, charge: usize) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        let charge = charge.min(state.held);
        state.held -= charge;
        if let Some(slot) = state.budget {
            self.budgets.release(slot, charge);
        }
    }

    /// Removes circuit `id`'s record: what its local sides sent and it still counted
    /// leaves their accounts with it.
    fn take_circuit(&mut self, id: &CircuitId) -> Option<Circuit> {
        let c = self.circuits.remove(id)?;
        if let End::Local(dialer) = c.dialer {
            self.release_held(dialer.conn, c.toward_host);
        }
        if let Some(End::Local(host)) = c.host {
            self.release_held(host.conn, c.toward_dialer);
        }
        Some(c)
    }

    /// What a frame costs on link `link` beyond its payload (the cost its routers
    /// agreed on; a link to a router that does not charge frames charges none).
    fn link_cost(&self, link: ConnKey) -> u64 {
        self.links
            .get(&link)
            .map_or(FRAME_COST, |l| l.session.frame_cost())
    }

    /// What a frame of `len` payload bytes counts against the window toward `to`: the
    /// frame's cost here, or the one its link agreed on (a link to a router that does
    /// not charge frames returns credit for payload only).
    fn charge_toward(&self, to: End, len: usize) -> usize {
        let cost = match to {
            End::Local(_) | End::Remote(_) => FRAME_COST,
            End::Link(leg) => self.link_cost(leg.link),
        };
        usize::try_from(charge(len, cost)).unwrap_or(usize::MAX)
    }

    /// Whether the driver should read from `key`: false while a window it feeds is
    /// full, while its identity's connections hold more than their budget, while the
    /// router's own answers to it fill its reply budget (a peer that does not read),
    /// while it closes or a frame of it waits for its session.
    pub fn wants_read(&self, key: ConnKey) -> bool {
        self.conns.get(&key).is_some_and(|s| {
            s.pausing.is_empty()
                && !s.closing
                && !s.edge.is_holding()
                && !s.edge.output_full()
                && !s.budget.is_some_and(|b| self.budgets.is_over(b))
        })
    }

    /// The next request for the controller.
    pub fn poll_control(&mut self) -> Option<ControlRequest> {
        self.control.pop_front()
    }

    /// The next connection to flush and close.
    pub fn poll_close(&mut self) -> Option<(ConnKey, CloseReason)> {
        self.closes.pop_front()
    }

    // ---- event handling ----

    /// Drains the events of `key` and keeps the ready list and timers current.
    fn after_input(&mut self, now: Instant, key: ConnKey) {
        loop {
            let Some(state) = self.conns.get_mut(&key) else {
                return;
            };
            let Some(event) = state.edge.poll_event() else {
                break;
            };
            self.handle_event(now, key, event);
        }
        self.mark(key);
    }

    /// Queues `key` for writing when it has transmits, and re-arms its timer.
    fn mark(&mut self, key: ConnKey) {
        let Some(state) = self.conns.get_mut(&key) else {
            return;
        };
        if self.in_ready.insert(key) {
            self.ready.push_back(key);
        }
        let deadline = state.edge.poll_timeout();
        if deadline.is_some() && deadline != state.armed {
            state.armed = deadline;
            self.timers.extend(deadline.map(|d| Reverse((d, key))));
        }
    }

    fn handle_event(&mut self, now: Instant, key: ConnKey, event: EdgeEvent) {
        match event {
            EdgeEvent::Authenticated {
                api_session_id,
                identity_id,
            } => {
                let count = self
                    .per_api_session
                    .entry(api_session_id.clone())
                    .or_default();
                if *count >= self.config.max_conns_per_api_session {
                    self.stats.refused_per_api_session += 1;
                    if let Some(state) = self.conns.get_mut(&key) {
                        state.edge.abort(CloseReason::TooManyConnections);
                    }
                    return;
                }
                *count += 1;
                if let Some(state) = self.conns.get_mut(&key) {
                    state.api_session = Some(api_session_id);
                    state.budget = Some(self.budgets.join(&identity_id));
                }
            }
            EdgeEvent::Dial {
                conn_id,
                session_id,
                service_id,
                caller_id,
                public_key,
                terminator_identity,
                app_data,
                stickiness,
            } => self.dial(
                now,
                Leg { conn: key, conn_id },
                &session_id,
                &service_id,
                terminator_identity.as_deref(),
                caller_id,
                public_key,
                app_data,
                &stickiness,
            ),
            EdgeEvent::Bind {
                conn_id,
                session_id,
                service_id,
                public_key,
                terminator_identity,
                cost,
                precedence,
            } => {
                let request = pb::CreateTerminatorRequest {
                    session_id: session_id.clone(),
                    address: format!("{}:{}", key.0, conn_id),
                    instance_id: terminator_identity
                        .as_deref()
                        .map(|i| String::from_utf8_lossy(i).into_owned())
                        .unwrap_or_default(),
                    cost: u32::from(cost),
                    precedence: precedence.as_i32(),
                    host_public_key: public_key
                        .as_deref()
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default(),
                };
                self.terminators.insert(
                    &service_id,
                    Terminator {
                        conn: key,
                        listener: conn_id,
                        session_id,
                        cost,
                        precedence,
                        public_key,
                        instance: terminator_identity,
                        id: None,
                    },
                );
                self.control.push_back(ControlRequest::CreateTerminator {
                    conn: key,
                    listener: conn_id,
                    service_id,
                    request,
                });
            }
            EdgeEvent::HostAccepted { circuit, conn_id } => {
                let Some(c) = self.circuits.get_mut(&circuit) else {
                    // The dialer went away meanwhile.
                    if let Some(state) = self.conns.get_mut(&key) {
                        state.edge.close_conn(conn_id, "dialer went away");
                    }
                    return;
                };
                c.host = Some(End::Local(Leg { conn: key, conn_id }));
                self.legs.insert(key, conn_id, circuit);
                match c.dialer {
                    End::Local(_) => self.connected(now, circuit, Some(key)),
                    End::Remote(shard) => {
                        self.cross.push_back((
                            shard,
                            CrossMsg::Accepted {
                                circuit,
                                host_public_key: None,
                                terminator_id: None,
                            },
                        ));
                    }
                    End::Link(_) => self.route_done(circuit),
                }
            }
            EdgeEvent::HostRefused { circuit, reason } => {
                let Some(c) = self.take_circuit(&circuit) else {
                    return;
                };
                match c.dialer {
                    End::Local(dialer) => self.dial_failed(now, dialer, &reason, Some(key)),
                    End::Remote(shard) => {
                        self.cross
                            .push_back((shard, CrossMsg::Refused { circuit, reason }));
                    }
                    End::Link(leg) => self.route_failed(&c, leg, &reason),
                }
            }
            EdgeEvent::Data {
                conn_id,
                payload,
                fin,
            } => self.relay(now, key, conn_id, payload, fin),
            EdgeEvent::ConnClosed { conn_id, cause } => {
                self.close_circuit_of(now, key, conn_id, cause.far_side_reason());
            }
            EdgeEvent::Unbound { conn_id } => {
                if let Some((_, t)) = self.terminators.remove(key, conn_id) {
                    self.terminator_gone(t);
                }
            }
            EdgeEvent::Close(reason) => {
                if let Some(state) = self.conns.get_mut(&key) {
                    state.closing = true;
                }
                self.closes.push_back((key, reason));
            }
        }
    }

    /// The dialer `from` asks for `service_id`: choose a terminator and dial its host,
    /// here or on its shard.
    #[allow(clippy::too_many_arguments)]
    fn dial(
        &mut self,
        now: Instant,
        from: Leg,
        session_id: &str,
        service_id: &str,
        instance: Option<&[u8]>,
        caller_id: Bytes,
        public_key: Option<Bytes>,
        app_data: Option<Bytes>,
        stickiness: &Stickiness,
    ) {
        let (sticky, token) = match stickiness {
            Stickiness::Off => (false, None),
            Stickiness::On(token) => (true, token.as_deref()),
        };
        // A token that is not UTF-8 names no terminator.
        let wanted = token.and_then(|t| std::str::from_utf8(t).ok());
        let Some(t) = self
            .terminators
            .choose(service_id, instance, self.shard, wanted)
        else {
            if let Some(mesh_shard) = self.config.mesh_shard {
                let request = pb::CircuitRequest {
                    session_id: session_id.to_owned(),
                    service_id: service_id.to_owned(),
                    instance: instance
                        .map(|i| String::from_utf8_lossy(i).into_owned())
                        .unwrap_or_default(),
                    caller_id: caller_id.to_vec(),
                    public_key: public_key.map(|k| k.to_vec()).unwrap_or_default(),
                    app_data: app_data.map(|d| d.to_vec()).unwrap_or_default(),
                    stickiness_token: wanted.unwrap_or_default().to_owned(),
                };
                return self.dial_across_routers(now, from, mesh_shard, request, sticky);
            }
            self.stats.dials_failed += 1;
            if let Some(state) = self.conns.get_mut(&from.conn) {
                state
                    .edge
                    .connect_failed(from.conn_id, "service has no terminators on this router");
            }
            return;
        };
        let (host_conn, listener) = (t.conn, t.listener);
        let host_public_key = t.public_key.clone();
        let circuit = CircuitId(self.next_circuit);
        self.next_circuit += 1;
        let host_shard = host_conn.shard();
        let mut record = Circuit::new(End::Local(from), host_shard, now);
        record.host_public_key = host_public_key;
        record.sticky = sticky;
        record.sticky_token = t.id.clone().filter(|_| sticky);
        self.circuits.insert(circuit, record);
        self.legs.insert(from.conn, from.conn_id, circuit);
        let dial = CrossDial {
            circuit,
            host_conn,
            listener,
            caller_id,
            public_key,
            app_data,
        };
        if host_shard != self.shard {
            self.cross
                .push_back((host_shard, CrossMsg::Dial(Box::new(dial))));
            return;
        }
        self.dial_host_here(now, &dial);
        if host_conn != from.conn {
            self.after_input(now, host_conn);
        }
    }

    /// The host of `circuit` accepted: tell the dialer (on this shard). `current` is
    /// the connection whose events are being handled, if any (not re-entered).
    fn connected(&mut self, now: Instant, circuit: CircuitId, current: Option<ConnKey>) {
        let Some(c) = self.circuits.get(&circuit) else {
            return;
        };
        let Some(dialer) = c.dialer.local() else {
            return;
        };
        let setup = now.saturating_duration_since(c.started);
        let public_key = c.host_public_key.clone();
        let sticky_token = c.sticky_token.clone();
        if c.host_shard != self.shard {
            self.stats.circuits_cross += 1;
        }
        self.stats.circuits_opened += 1;
        // Recording into the preallocated histogram does not allocate; values beyond
        // its range are clamped.
        let setup_us = u64::try_from(setup.as_micros()).unwrap_or(u64::MAX);
        self.dial_setup.saturating_record(setup_us);
        self.dial_setup_sum_us = self.dial_setup_sum_us.saturating_add(setup_us);
        if let Some(state) = self.conns.get_mut(&dialer.conn) {
            state.edge.connect_succeeded(
                dialer.conn_id,
                public_key.as_deref(),
                sticky_token.as_deref(),
            );
        }
        if current != Some(dialer.conn) {
            self.after_input(now, dialer.conn);
        }
    }

    /// The dial of `dialer` failed (its circuit is already gone). `current` as for
    /// [`Self::connected`].
    fn dial_failed(&mut self, now: Instant, dialer: Leg, reason: &str, current: Option<ConnKey>) {
        self.stats.dials_failed += 1;
        self.legs.remove(dialer.conn, dialer.conn_id);
        if let Some(state) = self.conns.get_mut(&dialer.conn) {
            state.edge.connect_failed(dialer.conn_id, reason);
        }
        if current != Some(dialer.conn) {
            self.after_input(now, dialer.conn);
        }
    }

    fn relay(&mut self, now: Instant, from: ConnKey, conn_id: u32, payload: Bytes, fin: bool) {
        let Some(circuit_id) = self.legs.get(from, conn_id) else {
            return;
        };
        let Some(c) = self.circuits.get_mut(&circuit_id) else {
            return;
        };
        let Some((to, toward_host)) = c.other_side(from, conn_id) else {
            return;
        };
        let len = payload.len();
        let charged = self.charge_toward(to, len);
        let Some(c) = self.circuits.get_mut(&circuit_id) else {
            return;
        };
        let queued = match toward_host {
            true => &mut c.toward_host,
            false => &mut c.toward_dialer,
        };
        *queued = queued.saturating_add(charged);
        // A source that speaks per-stream credit is held back by its credit (it may have
        // a window of payload plus the frame it started out); pausing its connection,
        // which stops all its streams, is only the guard against one that ignores it,
        // or whose credit, counting payload only, covers so many tiny frames that their
        // cost would pass another window.
        let credited = self
            .conns
            .get(&from)
            .is_some_and(|s| s.edge.has_stream_credit());
        let max_frame = self.config.edge.limits.max_body_len as usize;
        let limit = match credited {
            true => (2 * self.config.window).saturating_add(max_frame),
            false => self.config.window,
        };
        let full = *queued > limit;
        self.hold(from, charged);
        if !self.send_toward(circuit_id, to, payload, fin, None) {
            return self.close_circuit_of(now, from, conn_id, "peer is gone");
        }
        if let End::Local(to) = to {
            if to.conn != from {
                self.mark(to.conn);
            }
        }
        self.stats.bytes_relayed += len as u64;
        self.stats.frames_relayed += 1;
        if full {
            if let Some(state) = self.conns.get_mut(&from) {
                if state.pausing.insert(circuit_id) {
                    self.stats.pauses += 1;
                }
            }
        }
    }

    /// Hands `payload` of `circuit` to its side `to`: a local leg (marked by the
    /// caller), another shard, or a link. False when that side cannot take it.
    fn send_toward(
        &mut self,
        circuit: CircuitId,
        to: End,
        payload: Bytes,
        fin: bool,
        seq: Option<u64>,
    ) -> bool {
        match to {
            End::Local(to) => self
                .conns
                .get_mut(&to.conn)
                .is_some_and(|s| s.edge.send_data(to.conn_id, payload, fin)),
            End::Remote(shard) => {
                self.stats.frames_cross += 1;
                self.cross.push_back((
                    shard,
                    CrossMsg::Data {
                        circuit,
                        payload,
                        fin,
                    },
                ));
                true
            }
            End::Link(leg) => self.send_on_link(circuit, leg, payload, fin, seq),
        }
    }

    /// Ends the circuit `(key, conn_id)` belongs to, telling the other side.
    fn close_circuit_of(&mut self, now: Instant, key: ConnKey, conn_id: u32, reason: &str) {
        let Some(circuit_id) = self.legs.remove(key, conn_id) else {
            return;
        };
        let Some(c) = self.take_circuit(&circuit_id) else {
            return;
        };
        let leg = Leg { conn: key, conn_id };
        self.end_circuit(now, circuit_id, &c, Ended::Leg(leg), reason);
    }

    /// Forgets the removed circuit `c`: its local legs go; every side but the one that
    /// `ended` is closed with `reason`, on this shard, by message or over its link.
    fn end_circuit(
        &mut self,
        now: Instant,
        circuit_id: CircuitId,
        c: &Circuit,
        ended: Ended,
        reason: &str,
    ) {
        if c.closing.is_some() {
            // Its local and remote sides were told when it began closing.
            return self.end_link_legs(circuit_id, c, ended, reason);
        }
        let ended_leg = match ended {
            Ended::Leg(leg) => Some(leg),
            Ended::Here | Ended::Remote | Ended::Link(_) => None,
        };
        for leg in c.local_legs().into_iter().flatten() {
            self.legs.remove(leg.conn, leg.conn_id);
            if let Some(state) = self.conns.get_mut(&leg.conn) {
                state.pausing.remove(&circuit_id);
            }
            if Some(leg) == ended_leg {
                continue;
            }
            if let Some(state) = self.conns.get_mut(&leg.conn) {
                // A clean close comes after every byte sent before it; failures and
                // revocations close at once.
                if reason == ConnEnd::Closed.far_side_reason() {
                    state.edge.finish_conn(leg.conn_id, reason);
                } else {
                    state.edge.close_conn(leg.conn_id, reason);
                }
            }
            if Some(leg.conn) != ended_leg.map(|e| e.conn) {
                self.after_input(now, leg.conn);
            }
        }
        // A clean end waits for what its link leg still holds.
        let drains = reason == ConnEnd::Closed.far_side_reason() && self.drains(c, ended);
        if drains {
            let mut lingering = c.clone();
            lingering.closing = Some(Closing {
                reason: reason.to_owned(),
                deadline: now + mesh::DRAIN_TIMEOUT,
            });
            self.closing_circuit(circuit_id, lingering);
        } else {
            self.end_link_legs(circuit_id, c, ended, reason);
        }
        if ended == Ended::Remote {
            return;
        }
        // The other shard's side: a remote dialer, a remote host, or a host still
        // being dialed (or a circuit still being routed) on its shard.
        let remote = match (c.dialer, c.host) {
            (End::Remote(shard), _) | (_, Some(End::Remote(shard))) => Some(shard),
            (_, None) if c.host_shard != self.shard => Some(c.host_shard),
            _ => None,
        };
        if let Some(shard) = remote {
            self.cross.push_back((
                shard,
                CrossMsg::Close {
                    circuit: circuit_id,
                    reason: reason.to_owned(),
                },
            ));
        }
    }

    // ---- other shards ----

    /// Handles a message from shard `from` (see [`CrossMsg`]).
    pub fn handle_cross(&mut self, now: Instant, from: usize, msg: CrossMsg) {
        match msg {
            CrossMsg::TerminatorUp {
                service_id,
                terminator,
            } => self.terminators.insert(&service_id, *terminator),
            CrossMsg::TerminatorDown { conn, listener } => {
                self.terminators.remove(conn, listener);
            }
            CrossMsg::Dial(dial) => self.cross_dial(now, from, *dial),
            CrossMsg::Accepted {
                circuit,
                host_public_key,
                terminator_id,
            } => {
                // Unknown when the dialer went away meanwhile (its Close is on the way).
                if let Some(c) = self.circuits.get_mut(&circuit) {
                    c.host = Some(End::Remote(from));
                    if host_public_key.is_some() {
                        c.host_public_key = host_public_key;
                    }
                    if c.sticky && terminator_id.is_some() {
                        c.sticky_token = terminator_id;
                    }
                    match c.dialer {
                        End::Link(_) => self.route_done(circuit),
                        End::Local(_) | End::Remote(_) => self.connected(now, circuit, None),
                    }
                }
            }
            CrossMsg::Refused { circuit, reason } => {
                if let Some(c) = self.take_circuit(&circuit) {
                    match c.dialer {
                        End::Local(dialer) => self.dial_failed(now, dialer, &reason, None),
                        End::Link(leg) => self.route_failed(&c, leg, &reason),
                        End::Remote(_) => {}
                    }
                }
            }
            CrossMsg::Data {
                circuit,
                payload,
                fin,
            } => {
                let Some(c) = self.circuits.get(&circuit) else {
                    // Ended here; the other shard has been told.
                    return;
                };
                // The side on this shard: a local leg or a link.
                let to = match (c.dialer, c.host) {
                    (End::Remote(_), Some(host)) => host,
                    (dialer, _) => dialer,
                };
                if self.send_toward(circuit, to, payload, fin, None) {
                    if let End::Local(leg) = to {
                        self.mark(leg.conn);
                    }
                } else if let End::Local(leg) = to {
                    self.close_circuit_of(now, leg.conn, leg.conn_id, "peer is gone");
                } else if let Some(c) = self.take_circuit(&circuit) {
                    self.end_circuit(now, circuit, &c, Ended::Here, "peer is gone");
                }
            }
            CrossMsg::Credit { circuit, drained } => {
                let Some(c) = self.circuits.get_mut(&circuit) else {
                    return;
                };
                // The credit is for what this shard's side sent to the other shard.
                let (queued, source) = match (c.dialer, c.host) {
                    (End::Remote(_), Some(host)) => (&mut c.toward_dialer, host),
                    (End::Remote(_), None) => return,
                    (dialer, _) => (&mut c.toward_host, dialer),
                };
                let charge = charged(drained, FRAME_COST);
                *queued = queued.saturating_sub(charge);
                let resume = *queued <= self.config.window / 2;
                self.delivered(circuit, source, drained, charge, resume);
            }
            CrossMsg::MeshDial(dial) => self.routed_dial_from(now, from, *dial),
            CrossMsg::Close { circuit, reason } => {
                if let Some(c) = self.take_circuit(&circuit) {
                    // The sender already forgot its side: nothing goes back.
                    self.end_circuit(now, circuit, &c, Ended::Remote, &reason);
                }
            }
        }
    }

    /// Shard `from` asks this shard to dial the host of a terminator here.
    fn cross_dial(&mut self, now: Instant, from: usize, dial: CrossDial) {
        let circuit = dial.circuit;
        if !self.conns.contains_key(&dial.host_conn) {
            let reason = "listener is gone".to_owned();
            self.cross
                .push_back((from, CrossMsg::Refused { circuit, reason }));
            return;
        }
        self.circuits
            .insert(circuit, Circuit::new(End::Remote(from), self.shard, now));
        self.dial_host_here(now, &dial);
        self.after_input(now, dial.host_conn);
    }

    /// Sends `dial` to its host's connection, on this shard (nothing if it is gone).
    fn dial_host_here(&mut self, now: Instant, dial: &CrossDial) {
        if let Some(host) = self.conns.get_mut(&dial.host_conn) {
            host.edge.dial_host(
                now,
                dial.circuit,
                dial.listener,
                &dial.caller_id,
                dial.public_key.as_deref(),
                dial.app_data.as_deref(),
            );
        }
    }
}

#[cfg(test)]
mod mesh_tests;
#[cfg(test)]
pub(crate) mod sim;
#[cfg(test)]
mod tests;
