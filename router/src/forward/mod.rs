//! Forwarding on one shard: edge connections, the terminators they host, and the
//! circuits between them. Sans-IO like the rest of the protocol code.
//!
//! A circuit joins a dialing SDK's conn id to the conn id a hosting SDK accepted for it.
//! Payload crosses as the same `Bytes` it arrived in (no copy). Each direction of a
//! circuit has a window: bytes handed to the far connection and not yet reported
//! written by the driver. When it is full, the connection the bytes came from is paused
//! (the driver stops reading it) until the far side drains to half the window; so one
//! slow reader holds at most one window of memory. The edge protocol of the OpenZiti C
//! SDK 0.29.3 has no per-stream flow control, so pausing stops the whole source
//! connection (see `docs/adr/0003-edge-flow-control.md`).
//!
//! Driving contract, after every input (`add_conn`, `handle_received`, `handle_timeout`,
//! `handle_written`, `apply_*`, `terminator_*`):
//! 1. `poll_transmit(conn)` for each conn in `poll_ready()`; write them, then report
//!    each with `handle_written`;
//! 2. `poll_control()` for requests to the controller;
//! 3. `poll_close()` for connections to flush and close, then `remove_conn`;
//! 4. `wants_read(conn)` before reading a connection; `poll_timeout()` for the timer.

mod terminators;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use weft_wire::control::pb;

use crate::edge::{CircuitId, CloseReason, EdgeConfig, EdgeConnection, EdgeEvent, Transmit};
use crate::sessions::{Removed, RevisionGap, SessionTable};
pub use terminators::Terminator;
use terminators::Terminators;

/// A driver-assigned key of one edge connection on this shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey(pub u64);

/// Settings of a shard's forwarding.
#[derive(Clone, Debug)]
pub struct ForwardConfig {
    /// Edge connection settings.
    pub edge: EdgeConfig,
    /// Bytes one circuit direction may have queued toward a slow reader (default 4 MiB,
    /// near OpenZiti's xgress buffers).
    pub window: usize,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            edge: EdgeConfig::default(),
            window: 4 * 1024 * 1024,
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
}

/// One side of a circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Leg {
    conn: ConnKey,
    conn_id: u32,
}

#[derive(Debug)]
struct Circuit {
    dialer: Leg,
    /// When the dialer's Connect arrived, for the dial-setup histogram.
    started: Instant,
    /// The chosen terminator's key, for the dialer's StateConnected.
    host_public_key: Option<Bytes>,
    /// Set once the host accepted.
    host: Option<Leg>,
    /// Payload bytes handed to the host's connection and not yet written.
    toward_host: usize,
    /// Payload bytes handed to the dialer's connection and not yet written.
    toward_dialer: usize,
}

#[derive(Debug)]
struct ConnState {
    edge: EdgeConnection,
    /// Circuits whose window toward their far side is full because of this connection.
    pausing: HashSet<CircuitId>,
    closing: bool,
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
    sessions: SessionTable,
    conns: HashMap<ConnKey, ConnState>,
    terminators: Terminators,
    circuits: HashMap<CircuitId, Circuit>,
    legs: Legs,
    next_circuit: u64,
    ready: VecDeque<ConnKey>,
    in_ready: HashSet<ConnKey>,
    closes: VecDeque<(ConnKey, CloseReason)>,
    control: VecDeque<ControlRequest>,
    timers: BinaryHeap<Reverse<(Instant, ConnKey)>>,
    stats: ForwardStats,
    /// Connect → StateConnected times of this shard's dials, in microseconds.
    dial_setup: hdrhistogram::Histogram<u64>,
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
}

/// Range of the dial-setup histogram: 1 µs to 60 s, 3 significant digits.
#[allow(clippy::expect_used)]
fn dial_setup_histogram() -> hdrhistogram::Histogram<u64> {
    // Invariant: low >= 1, high >= 2 * low and 3 significant figures are valid bounds,
    // the only conditions under which construction fails.
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

impl Forwarder {
    /// A shard's forwarder with `shard` in the top bits of its circuit ids, so ids are
    /// unique across shards.
    pub fn new(config: ForwardConfig, shard: u16) -> Self {
        Self {
            config,
            sessions: SessionTable::new(),
            conns: HashMap::new(),
            terminators: Terminators::default(),
            circuits: HashMap::new(),
            legs: Legs::default(),
            next_circuit: u64::from(shard) << 48,
            ready: VecDeque::new(),
            in_ready: HashSet::new(),
            closes: VecDeque::new(),
            control: VecDeque::new(),
            timers: BinaryHeap::new(),
            stats: ForwardStats::default(),
            dial_setup: dial_setup_histogram(),
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
        }
    }

    /// The sessions this shard validates against.
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// Counters.
    pub fn stats(&self) -> ForwardStats {
        self.stats
    }

    /// Number of (connections, circuits, terminators).
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.conns.len(),
            self.circuits.len(),
            self.terminators.count(),
        )
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
    pub fn add_conn(&mut self, now: Instant, key: ConnKey, client_fingerprints: Vec<String>) {
        let edge = EdgeConnection::new(self.config.edge.clone(), now, client_fingerprints);
        self.conns.insert(
            key,
            ConnState {
                edge,
                pausing: HashSet::new(),
                closing: false,
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
        self.remove_conn(key);
    }

    /// Forgets `key` after the driver flushed and closed it (after `poll_close`), or
    /// after `conn_lost`. Removes its terminators and circuits.
    pub fn remove_conn(&mut self, key: ConnKey) {
        self.conns.remove(&key);
        self.ready.retain(|k| *k != key);
        self.in_ready.remove(&key);
        self.closes.retain(|(k, _)| *k != key);
        for circuit_id in self.legs.take_conn(key).into_values() {
            if let Some(c) = self.circuits.remove(&circuit_id) {
                for leg in [Some(c.dialer), c.host].into_iter().flatten() {
                    self.legs.remove(leg.conn, leg.conn_id);
                }
            }
        }
        for t in self.terminators.remove_conn(key) {
            if let Some(terminator_id) = t.id {
                self.control
                    .push_back(ControlRequest::RemoveTerminator { terminator_id });
            }
        }
    }

    /// Fires deadlines that passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((deadline, key))) = self.timers.peek().copied() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            if let Some(state) = self.conns.get_mut(&key) {
                state.armed = None;
                state.edge.handle_timeout(&self.sessions, now);
            }
            self.after_input(now, key);
        }
    }

    /// The earliest deadline of any connection.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
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
        let (queued, source) = if circuit.dialer.conn == key && circuit.dialer.conn_id == conn_id {
            (&mut circuit.toward_dialer, circuit.host.map(|h| h.conn))
        } else {
            (&mut circuit.toward_host, Some(circuit.dialer.conn))
        };
        *queued = queued.saturating_sub(len);
        if *queued <= self.config.window / 2 {
            if let Some(state) = source.and_then(|s| self.conns.get_mut(&s)) {
                state.pausing.remove(&circuit_id);
            }
        }
    }

    /// Whether the driver should read from `key` (false while a window it feeds is full).
    pub fn wants_read(&self, key: ConnKey) -> bool {
        self.conns
            .get(&key)
            .is_some_and(|s| s.pausing.is_empty() && !s.closing && !s.edge.is_holding())
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
            EdgeEvent::Authenticated { .. } => {}
            EdgeEvent::Dial {
                conn_id,
                service_id,
                caller_id,
                public_key,
                terminator_identity,
                app_data,
                ..
            } => {
                let Some(t) = self
                    .terminators
                    .choose(&service_id, terminator_identity.as_deref())
                    .cloned()
                else {
                    self.stats.dials_failed += 1;
                    if let Some(state) = self.conns.get_mut(&key) {
                        state
                            .edge
                            .connect_failed(conn_id, "service has no terminators on this router");
                    }
                    return;
                };
                let circuit_id = CircuitId(self.next_circuit);
                self.next_circuit += 1;
                self.circuits.insert(
                    circuit_id,
                    Circuit {
                        dialer: Leg { conn: key, conn_id },
                        started: now,
                        host_public_key: t.public_key.clone(),
                        host: None,
                        toward_host: 0,
                        toward_dialer: 0,
                    },
                );
                self.legs.insert(key, conn_id, circuit_id);
                if let Some(host) = self.conns.get_mut(&t.conn) {
                    host.edge.dial_host(
                        now,
                        circuit_id,
                        t.listener,
                        &caller_id,
                        public_key.as_deref(),
                        app_data.as_deref(),
                    );
                }
                if t.conn != key {
                    self.after_input(now, t.conn);
                }
            }
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
                c.host = Some(Leg { conn: key, conn_id });
                let dialer = c.dialer;
                let public_key = c.host_public_key.clone();
                let setup = now.saturating_duration_since(c.started);
                self.legs.insert(key, conn_id, circuit);
                self.stats.circuits_opened += 1;
                // Recording into the preallocated histogram does not allocate; values
                // beyond its range are clamped.
                self.dial_setup
                    .saturating_record(u64::try_from(setup.as_micros()).unwrap_or(u64::MAX));
                if let Some(state) = self.conns.get_mut(&dialer.conn) {
                    state
                        .edge
                        .connect_succeeded(dialer.conn_id, public_key.as_deref());
                }
                if dialer.conn != key {
                    self.after_input(now, dialer.conn);
                }
            }
            EdgeEvent::HostRefused { circuit, reason } => {
                let Some(c) = self.circuits.remove(&circuit) else {
                    return;
                };
                self.stats.dials_failed += 1;
                self.legs.remove(c.dialer.conn, c.dialer.conn_id);
                if let Some(state) = self.conns.get_mut(&c.dialer.conn) {
                    state.edge.connect_failed(c.dialer.conn_id, &reason);
                }
                if c.dialer.conn != key {
                    self.after_input(now, c.dialer.conn);
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
                    if let Some(terminator_id) = t.id {
                        self.control
                            .push_back(ControlRequest::RemoveTerminator { terminator_id });
                    }
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

    fn relay(&mut self, now: Instant, from: ConnKey, conn_id: u32, payload: Bytes, fin: bool) {
        let Some(circuit_id) = self.legs.get(from, conn_id) else {
            return;
        };
        let Some(c) = self.circuits.get_mut(&circuit_id) else {
            return;
        };
        let Some(host) = c.host else {
            return;
        };
        let (to, queued) = if c.dialer.conn == from && c.dialer.conn_id == conn_id {
            (host, &mut c.toward_host)
        } else {
            (c.dialer, &mut c.toward_dialer)
        };
        let len = payload.len();
        *queued += len;
        let full = *queued > self.config.window;
        let sent = self
            .conns
            .get_mut(&to.conn)
            .is_some_and(|s| s.edge.send_data(to.conn_id, payload, fin));
        if !sent {
            return self.close_circuit_of(now, from, conn_id, "peer is gone");
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
        if to.conn != from {
            self.mark(to.conn);
        }
    }

    /// Ends the circuit `(key, conn_id)` belongs to, telling the other side.
    fn close_circuit_of(&mut self, now: Instant, key: ConnKey, conn_id: u32, reason: &str) {
        let Some(circuit_id) = self.legs.remove(key, conn_id) else {
            return;
        };
        let Some(c) = self.circuits.remove(&circuit_id) else {
            return;
        };
        let other = if c.dialer.conn == key && c.dialer.conn_id == conn_id {
            c.host
        } else {
            Some(c.dialer)
        };
        for leg in [Some(c.dialer), c.host].into_iter().flatten() {
            self.legs.remove(leg.conn, leg.conn_id);
            if let Some(state) = self.conns.get_mut(&leg.conn) {
                state.pausing.remove(&circuit_id);
            }
        }
        if let Some(other) = other {
            if let Some(state) = self.conns.get_mut(&other.conn) {
                state.edge.close_conn(other.conn_id, reason);
            }
            if other.conn != key {
                self.after_input(now, other.conn);
            }
        }
    }
}

#[cfg(test)]
mod tests;
