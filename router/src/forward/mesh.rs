//! Circuits across routers (docs/adr/0007-mesh.md), on the shard that holds the links.
//!
//! - **Ingress**: a dial with no terminator on this router becomes a
//!   [`ControlRequest::CreateCircuit`] (from another shard via
//!   [`CrossMsg::MeshDial`]). The controller routes it and answers with the circuit's
//!   id and path ([`Forwarder::circuit_routed`]): the circuit opens on the link to the
//!   next router, a start goes down the path, and the dialer hears StateConnected.
//! - **Transit and egress**: the controller's [`pb::Route`]
//!   ([`Forwarder::install_route`]) joins two links (transit), or a link and the host of
//!   a terminator of this router, which is dialled (egress; answered once the host
//!   accepted). An egress relays what the host sends only after the ingress's start, so
//!   nothing reaches a router that does not know the circuit yet.
//! - **Flow**: payload toward a link is sent while the link's credit for the circuit
//!   covers it and waits in the circuit otherwise (the source is paused by the circuit
//!   window as for any leg); payload from a link is credited back to the peer router as
//!   the far side writes it (a local leg), as its shard credits it, or as the next link
//!   returns credit (transit). Each hop so holds at most one window per circuit.
//! - **Ends**: a close on any side travels to every other (LinkClose over links, with
//!   the same reason, so a clean end stays clean and a failure stays a failure); a lost
//!   link ends its circuits with an error. The controller hears of every end
//!   ([`ControlRequest::CircuitClosed`]).

use std::cmp::Reverse;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weft_wire::control::pb;

use super::{
    Circuit, CircuitId, ConnEnd, ConnKey, ControlRequest, CrossDial, CrossMsg, End, Ended,
    Forwarder, LinkLeg, MeshDial,
};
use crate::credit::{Drained, FRAME_COST, charge};

/// The id a circuit routed by `route` has on links: the Route's `link_circuit_id`, which
/// a reroute sets to a new id, else its `circuit_id`.
fn link_id(route: &pb::Route) -> u64 {
    match route.link_circuit_id {
        0 => route.circuit_id,
        lid => lid,
    }
}

/// Frames an end router receives on a circuit before it acknowledges them, whatever
/// their size (see `link_data`).
pub(crate) const ACK_FRAMES: usize = 64;

/// How long an end router waits for a new path after its circuit's path broke; then the
/// circuit ends with an error.
pub(crate) const REROUTE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a circuit that ended cleanly may take to send what its link leg still
/// holds (see `Closing`) before the leg closes with an error.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

impl Forwarder {
    fn new_circuit_id(&mut self) -> CircuitId {
        let id = CircuitId(self.next_circuit);
        self.next_circuit += 1;
        id
    }

    /// The dial of `from` has no terminator on this router: route it across routers
    /// (the shard holding the links asks the controller).
    pub(super) fn dial_across_routers(
        &mut self,
        now: Instant,
        from: super::Leg,
        mesh_shard: usize,
        request: pb::CircuitRequest,
        sticky: bool,
    ) {
        let circuit = self.new_circuit_id();
        let mut record = Circuit::new(End::Local(from), mesh_shard, now);
        record.sticky = sticky;
        self.circuits.insert(circuit, record);
        self.legs.insert(from.conn, from.conn_id, circuit);
        if mesh_shard == self.shard {
            self.control
                .push_back(ControlRequest::CreateCircuit { circuit, request });
        } else {
            self.cross.push_back((
                mesh_shard,
                CrossMsg::MeshDial(Box::new(MeshDial { circuit, request })),
            ));
        }
    }

    /// Shard `from` asks this shard (which holds the links) to route its dial.
    pub(super) fn routed_dial_from(&mut self, now: Instant, from: usize, dial: MeshDial) {
        self.circuits.insert(
            dial.circuit,
            Circuit::new(End::Remote(from), self.shard, now),
        );
        self.control.push_back(ControlRequest::CreateCircuit {
            circuit: dial.circuit,
            request: dial.request,
        });
    }

    /// The controller's answer to the [`ControlRequest::CreateCircuit`] of `circuit`:
    /// the route (the circuit opens on the link to the next router) or why there is
    /// none (the dial fails).
    pub fn circuit_routed(
        &mut self,
        now: Instant,
        circuit: CircuitId,
        result: Result<pb::CircuitResponse, String>,
    ) {
        let next_link = result.as_ref().ok().and_then(|r| {
            let next = r.path.get(1)?;
            self.link_for(next, r.circuit_id)
        });
        let Some(c) = self.circuits.get(&circuit) else {
            // The dialer went away while the controller routed: the path forgets it.
            if let Ok(r) = result {
                self.control
                    .push_back(ControlRequest::CircuitClosed(pb::CircuitClosed {
                        circuit_id: r.circuit_id,
                        reason: "the dialer went away".into(),
                        take_down: true,
                        ended_elsewhere: false,
                    }));
            }
            return;
        };
        let dialer = c.dialer;
        let routed = match (result, next_link) {
            (Err(reason), _) => Err((None, reason)),
            (Ok(r), None) => Err((
                Some(r.circuit_id),
                "this router has no link to the next router of the path".to_owned(),
            )),
            (Ok(r), Some(link)) => {
                let opened = self.links.get_mut(&link).map(|l| {
                    l.session
                        .open_circuit(r.circuit_id)
                        .and_then(|()| l.session.send_start(r.circuit_id))
                });
                match opened {
                    Some(Ok(())) => Ok((r, link)),
                    Some(Err(e)) => Err((Some(r.circuit_id), e.to_string())),
                    None => Err((Some(r.circuit_id), "the link is gone".to_owned())),
                }
            }
        };
        match routed {
            Ok((r, link)) => {
                let leg = LinkLeg {
                    link,
                    circuit: r.circuit_id,
                };
                let host_public_key =
                    (!r.host_public_key.is_empty()).then(|| Bytes::from(r.host_public_key));
                if let Some(c) = self.circuits.get_mut(&circuit) {
                    c.host = Some(End::Link(leg));
                    c.mesh_id = Some(r.circuit_id);
                    c.host_public_key = host_public_key.clone();
                    if c.sticky {
                        c.sticky_token = Some(r.terminator_id.clone());
                    }
                }
                self.link_legs
                    .entry(link)
                    .or_default()
                    .insert(r.circuit_id, circuit);
                self.mesh_ends.insert(r.circuit_id, circuit);
                self.stats.circuits_ingress += 1;
                self.mark_link(link);
                match dialer {
                    End::Remote(shard) => self.cross.push_back((
                        shard,
                        CrossMsg::Accepted {
                            circuit,
                            host_public_key,
                            terminator_id: Some(r.terminator_id),
                        },
                    )),
                    End::Local(_) | End::Link(_) => self.connected(now, circuit, None),
                }
            }
            Err((circuit_id, reason)) => {
                if let Some(circuit_id) = circuit_id {
                    // Routed on the rest of the path: the controller takes it down.
                    self.control
                        .push_back(ControlRequest::CircuitClosed(pb::CircuitClosed {
                            circuit_id,
                            reason: reason.clone(),
                            take_down: true,
                            ended_elsewhere: false,
                        }));
                }
                self.take_circuit(&circuit);
                match dialer {
                    End::Local(d) => self.dial_failed(now, d, &reason, None),
                    End::Remote(shard) => self
                        .cross
                        .push_back((shard, CrossMsg::Refused { circuit, reason })),
                    End::Link(_) => {}
                }
            }
        }
    }

    /// A Route from the controller: join two links (this router is a transit of the
    /// circuit), or a link and the host of one of this router's terminators (the egress:
    /// the host is dialled and the Route answered once it accepted).
    pub fn install_route(&mut self, now: Instant, request_id: i32, route: pb::Route) {
        let id = route.circuit_id;
        // The id on links (a rerouted circuit's is new): `lid` below.
        let lid = link_id(&route);
        let fail = |this: &mut Self, reason: String| {
            this.control.push_back(ControlRequest::RouteResult {
                request_id,
                circuit_id: id,
                error: Some(reason),
            });
        };
        if route.reroute {
            let result = self.reroute(&route);
            self.control.push_back(ControlRequest::RouteResult {
                request_id,
                circuit_id: id,
                error: result.err(),
            });
            return;
        }
        // The connection the previous router picks too, most likely; if it picked
        // another, the circuit moves there on its start (`start_unheld`).
        let Some(prev) = self.link_for(&route.previous_router_id, lid) else {
            return fail(self, "no link to the previous router of the path".into());
        };
        if let Err(e) = self.open_on_link(prev, lid) {
            return fail(self, e);
        }
        let prev_leg = LinkLeg {
            link: prev,
            circuit: lid,
        };
        if !route.next_router_id.is_empty() {
            let next = self.link_for(&route.next_router_id, lid);
            let opened = match next {
                None => Err("no link to the next router of the path".to_owned()),
                Some(next) => self.open_on_link(next, lid).map(|()| next),
            };
            let next = match opened {
                Ok(next) => next,
                Err(e) => {
                    self.close_on_link(prev_leg, b"route failed");
                    return fail(self, e);
                }
            };
            let circuit = self.new_circuit_id();
            let mut c = Circuit::new(End::Link(prev_leg), self.shard, now);
            c.host = Some(End::Link(LinkLeg {
                link: next,
                circuit: lid,
            }));
            c.mesh_id = Some(id);
            self.circuits.insert(circuit, c);
            for link in [prev, next] {
                self.link_legs.entry(link).or_default().insert(lid, circuit);
            }
            self.stats.circuits_transit += 1;
            self.control.push_back(ControlRequest::RouteResult {
                request_id,
                circuit_id: id,
                error: None,
            });
            return;
        }
        // The egress: the terminator's address is "<connection key>:<listener id>".
        let target = route
            .terminator_address
            .split_once(':')
            .and_then(|(k, l)| Some((ConnKey(k.parse().ok()?), l.parse::<u32>().ok()?)))
            .filter(|(conn, listener)| {
                // The terminator the controller means, confirmed here under that id.
                self.terminators
                    .get_mut(*conn, *listener)
                    .is_some_and(|t| t.id.as_deref() == Some(route.terminator_id.as_str()))
            });
        let Some((host_conn, listener)) = target else {
            self.close_on_link(prev_leg, b"terminator gone");
            return fail(self, "the terminator is gone from this router".into());
        };
        let circuit = self.new_circuit_id();
        let host_shard = host_conn.shard();
        let mut c = Circuit::new(End::Link(prev_leg), host_shard, now);
        c.mesh_id = Some(id);
        c.relaying = false;
        c.route_request = Some(request_id);
        self.circuits.insert(circuit, c);
        self.link_legs.entry(prev).or_default().insert(lid, circuit);
        self.mesh_ends.insert(id, circuit);
        let some = |v: Vec<u8>| (!v.is_empty()).then(|| Bytes::from(v));
        let dial = CrossDial {
            circuit,
            host_conn,
            listener,
            caller_id: Bytes::from(route.caller_id),
            public_key: some(route.public_key),
            app_data: some(route.app_data),
        };
        if host_shard != self.shard {
            self.cross
                .push_back((host_shard, CrossMsg::Dial(Box::new(dial))));
            return;
        }
        if !self.conns.contains_key(&host_conn) {
            self.take_circuit(&circuit);
            self.forget_link_leg(prev_leg);
            self.close_on_link(prev_leg, b"listener gone");
            return fail(self, "the listener is gone".into());
        }
        self.dial_host_here(now, &dial);
        self.after_input(now, host_conn);
    }

    /// The controller takes down the circuit `circuit_id` (its setup failed elsewhere,
    /// or it has no path left), or says it ended on another router of its path while
    /// this end waited for a new one (`ended_elsewhere`).
    pub fn unroute(&mut self, now: Instant, circuit_id: u64, reason: &str, ended_elsewhere: bool) {
        // A transit keys its legs by the id on links, which a reroute changes: found by
        // the controller's id it keeps (rare: a scan).
        let found = self.mesh_ends.get(&circuit_id).copied().or_else(|| {
            self.circuits
                .iter()
                .find(|(_, c)| c.mesh_id == Some(circuit_id))
                .map(|(k, _)| *k)
        });
        if let Some(circuit) = found {
            if let Some(c) = self.take_circuit(&circuit) {
                // An end waiting for a new path that has every byte of the other end
                // (its FIN came) and whose own were all acknowledged lost nothing: the
                // other end closed, its close was what the broken path lost.
                let whole = ended_elsewhere
                    && c.rerouting.is_some()
                    && c.peer_fin
                    && c.held.is_empty()
                    && c.unacked.is_empty();
                let reason = match whole {
                    true => ConnEnd::Closed.far_side_reason(),
                    false => reason,
                };
                self.end_circuit(now, circuit, &c, Ended::Here, reason);
            }
        }
    }

    /// The egress host of `circuit` accepted: the Route is answered.
    pub(super) fn route_done(&mut self, circuit: CircuitId) {
        let Some(c) = self.circuits.get_mut(&circuit) else {
            return;
        };
        if let (Some(request_id), Some(circuit_id)) = (c.route_request.take(), c.mesh_id) {
            self.stats.circuits_egress += 1;
            self.control.push_back(ControlRequest::RouteResult {
                request_id,
                circuit_id,
                error: None,
            });
        }
    }

    /// The egress host of the removed circuit `c` refused (or was gone).
    pub(super) fn route_failed(&mut self, c: &Circuit, leg: LinkLeg, reason: &str) {
        self.stats.dials_failed += 1;
        self.forget_link_leg(leg);
        self.close_on_link(leg, reason.as_bytes());
        if let (Some(request_id), Some(circuit_id)) = (c.route_request, c.mesh_id) {
            self.control.push_back(ControlRequest::RouteResult {
                request_id,
                circuit_id,
                error: Some(reason.to_owned()),
            });
        }
    }

    /// Sends `payload` of `circuit` on its link leg, or keeps it in the circuit while
    /// the circuit has not started relaying or the link's credit does not cover it.
    /// False when the link is gone.
    pub(super) fn send_on_link(
        &mut self,
        circuit: CircuitId,
        leg: LinkLeg,
        payload: Bytes,
        fin: bool,
        seq: Option<u64>,
    ) -> bool {
        let Some(c) = self.circuits.get_mut(&circuit) else {
            return false;
        };
        // While the circuit waits for a new path its link is gone: payload waits too.
        if c.rerouting.is_none() && !self.links.contains_key(&leg.link) {
            return false;
        }
        // A transit passes the end-to-end sequence on; an end numbers its payload.
        let seq = seq.unwrap_or_else(|| {
            let s = c.link_seq;
            c.link_seq += 1;
            s
        });
        if fin && c.is_mesh_end() {
            c.fin_sent = true;
        }
        match c.back_toward(leg) {
            true => c.held_back.push_back((seq, payload, fin)),
            false => c.held.push_back((seq, payload, fin)),
        }
        self.flush_held(circuit, leg);
        true
    }

    /// Sends what the circuit holds for `leg`, in order, while the link's credit lasts
    /// (and, on an end router, while what the other end has not acknowledged stays
    /// within a window).
    fn flush_held(&mut self, circuit: CircuitId, leg: LinkLeg) {
        let (Some(c), Some(link)) = (
            self.circuits.get_mut(&circuit),
            self.links.get_mut(&leg.link),
        ) else {
            return;
        };
        if !c.relaying || c.rerouting.is_some() {
            return;
        }
        let end = c.is_mesh_end();
        let limit = self.config.window;
        let mut sent = false;
        let back = c.back_toward(leg);
        loop {
            let held = match back {
                true => &mut c.held_back,
                false => &mut c.held,
            };
            let Some((_, payload, _)) = held.front() else {
                break;
            };
            // Unacknowledged frames are held here too: they count with their cost.
            let charged = charge(payload.len(), FRAME_COST) as usize;
            if end && c.unacked_bytes > 0 && c.unacked_bytes + charged > limit {
                break;
            }
            if !link.session.fits(leg.circuit, payload.len()) {
                self.stats.link_credit_stalls += 1;
                link.credit_stalls += 1;
                break;
            }
            let Some((seq, payload, fin)) = held.pop_front() else {
                break;
            };
            let len = payload.len();
            if end {
                // A reference to the same bytes, not a copy.
                c.unacked.push_back((seq, payload.clone(), fin));
                c.unacked_bytes += charged;
            }
            match link.session.send_data(leg.circuit, seq, fin, payload) {
                Ok(true) => {
                    self.stats.link_bytes_sent += len as u64;
                    sent = true;
                }
                // Covered by the credit checked above; a refusal means the circuit is
                // gone from the link (its close is on the way).
                Ok(false) | Err(_) => break,
            }
        }
        if sent {
            self.mark_link(leg.link);
        }
        self.closed_if_drained(circuit);
    }

    /// Whether the circuit `c`, ending cleanly (`ended` told already), still holds
    /// payload for a link leg that goes on, or (an end router) payload the other end
    /// has not acknowledged or a new path to wait for: then that leg closes only after.
    pub(super) fn drains(&self, c: &Circuit, ended: Ended) -> bool {
        let end = c.is_mesh_end();
        let pending = !c.held.is_empty()
            || !c.held_back.is_empty()
            || (end && (!c.unacked.is_empty() || c.rerouting.is_some()));
        let goes_on = (end && c.rerouting.is_some())
            || c.link_legs()
                .into_iter()
                .flatten()
                .any(|leg| ended != Ended::Link(leg) && self.links.contains_key(&leg.link));
        pending && c.route_request.is_none() && goes_on
    }

    /// Keeps `c`, which ended cleanly, until its link leg sent what it holds: only the
    /// link leg stays (its local legs and the other shard were told already).
    pub(super) fn closing_circuit(&mut self, circuit: CircuitId, c: Circuit) {
        let Some(closing) = &c.closing else {
            return;
        };
        self.reroute_timers
            .push(Reverse((closing.deadline, circuit)));
        let legs = c.link_legs();
        let ask_ack = c.is_mesh_end() && !c.fin_sent;
        self.circuits.insert(circuit, c);
        for leg in legs.into_iter().flatten() {
            if ask_ack {
                // A FIN, which the other end acknowledges at once, after the rest.
                self.send_on_link(circuit, leg, Bytes::new(), true, None);
            } else {
                self.flush_held(circuit, leg);
            }
        }
    }

    /// A closing circuit that sent all it held: its link leg closes now, cleanly.
    fn closed_if_drained(&mut self, circuit: CircuitId) {
        let drained = self.circuits.get(&circuit).is_some_and(|c| {
            c.closing.is_some()
                && c.held.is_empty()
                && c.held_back.is_empty()
                && c.unacked.is_empty()
                && c.rerouting.is_none()
        });
        if !drained {
            return;
        }
        if let Some(c) = self.take_circuit(&circuit) {
            let reason = c.closing.as_ref().map(|cl| cl.reason.clone());
            self.end_link_legs(circuit, &c, Ended::Here, reason.as_deref().unwrap_or(""));
        }
    }

    /// Credit for `drained` of what arrived on `leg` goes back to the peer router.
    pub(super) fn link_consumed(&mut self, leg: LinkLeg, drained: Drained) {
        if let Some(link) = self.links.get_mut(&leg.link) {
            if link.session.consumed(leg.circuit, drained).is_ok() {
                self.mark_link(leg.link);
            }
        }
    }

    /// Opens circuit `id` on `link`.
    fn open_on_link(&mut self, link: ConnKey, id: u64) -> Result<(), String> {
        let Some(l) = self.links.get_mut(&link) else {
            return Err("the link is gone".into());
        };
        l.session.open_circuit(id).map_err(|e| e.to_string())
    }

    /// Closes `leg` on its link, telling the peer router why.
    fn close_on_link(&mut self, leg: LinkLeg, reason: &[u8]) {
        if let Some(l) = self.links.get_mut(&leg.link) {
            if l.session.close_circuit(leg.circuit, reason).is_ok() {
                self.mark_link(leg.link);
            }
        }
    }

    fn forget_link_leg(&mut self, leg: LinkLeg) {
        if let Some(m) = self.link_legs.get_mut(&leg.link) {
            m.remove(&leg.circuit);
            if m.is_empty() {
                self.link_legs.remove(&leg.link);
            }
        }
    }

    /// Queues `link` for writing.
    pub(super) fn mark_link(&mut self, link: ConnKey) {
        if self.links.contains_key(&link) && self.in_ready.insert(link) {
            self.ready.push_back(link);
        }
    }

    /// The removed circuit `c` ended: its link legs close (but the one that `ended`),
    /// a pending Route is answered, and the controller hears of the end.
    pub(super) fn end_link_legs(
        &mut self,
        circuit: CircuitId,
        c: &Circuit,
        ended: Ended,
        reason: &str,
    ) {
        for leg in c.link_legs().into_iter().flatten() {
            self.forget_link_leg(leg);
            if ended != Ended::Link(leg) {
                self.close_on_link(leg, reason.as_bytes());
            }
        }
        if let Some(id) = c.mesh_id {
            if self.mesh_ends.get(&id) == Some(&circuit) {
                self.mesh_ends.remove(&id);
            }
        }
        if let (Some(request_id), Some(circuit_id)) = (c.route_request, c.mesh_id) {
            self.control.push_back(ControlRequest::RouteResult {
                request_id,
                circuit_id,
                error: Some(reason.to_owned()),
            });
        }
        if let Some(circuit_id) = c.mesh_id {
            self.control
                .push_back(ControlRequest::CircuitClosed(pb::CircuitClosed {
                    circuit_id,
                    reason: reason.to_owned(),
                    take_down: false,
                    ended_elsewhere: false,
                }));
        }
    }

    // ---- what links deliver ----

    /// The circuit a link leg belongs to.
    fn circuit_of(&self, leg: LinkLeg) -> Option<CircuitId> {
        self.link_legs.get(&leg.link)?.get(&leg.circuit).copied()
    }

    /// Payload of `leg` from the peer router, with its end-to-end sequence `seq`.
    pub(super) fn link_data(
        &mut self,
        now: Instant,
        leg: LinkLeg,
        seq: u64,
        payload: Bytes,
        fin: bool,
    ) {
        let Some(circuit) = self.circuit_of(leg) else {
            return self.close_on_link(leg, b"unknown circuit");
        };
        let Some(c) = self.circuits.get_mut(&circuit) else {
            return;
        };
        if c.closing.is_some() {
            // Nobody reads it any more (its reader closed); the credit goes back. An end
            // still acknowledges it: the other end may be closing too, and waits for
            // that before it closes.
            if c.is_mesh_end() {
                c.recv_seq = c.recv_seq.max(seq);
                c.recv_unacked_frames += 1;
                if fin || c.recv_unacked_frames >= ACK_FRAMES {
                    c.recv_unacked_frames = 0;
                    let upto = c.recv_seq;
                    self.ack_on(leg, upto);
                }
            }
            return self.link_consumed(leg, Drained::frame(payload.len()));
        }
        let Some((to, toward_host)) = c.across(End::Link(leg)) else {
            return;
        };
        let len = payload.len();
        let relayed = match to {
            // A transit passes the sequence on.
            End::Link(_) => Some(seq),
            End::Local(_) | End::Remote(_) => {
                // An end drops what arrives again after a reroute (its link credit goes
                // back at once) and acknowledges what it took, in batches.
                if seq <= c.recv_seq {
                    // Sent again after a reroute: the ack of it may have been lost with
                    // the old path, and the sender keeps it (and stops at a window of
                    // such) until acknowledged. The first of a run is acknowledged, a
                    // FIN, and every ACK_FRAMES more.
                    c.dup_frames += 1;
                    let ack = (c.dup_frames == 1 || fin || c.dup_frames % ACK_FRAMES == 0)
                        .then_some(c.recv_seq);
                    self.link_consumed(leg, Drained::frame(len));
                    if let Some(upto) = ack {
                        self.ack_on(leg, upto);
                    }
                    return;
                }
                c.dup_frames = 0;
                c.recv_seq = seq;
                c.peer_fin |= fin;
                c.recv_unacked += len;
                c.recv_unacked_frames += 1;
                // Every eighth of a window, and every ACK_FRAMES frames: the other end
                // keeps each frame until it is acknowledged, so small frames must not
                // pile up there (nor make a reroute send them all again).
                if fin
                    || c.recv_unacked >= super::credit_batch(self.config.window)
                    || c.recv_unacked_frames >= ACK_FRAMES
                {
                    c.recv_unacked = 0;
                    c.recv_unacked_frames = 0;
                    if let Some(l) = self.links.get_mut(&leg.link) {
                        if l.session.send_ack(leg.circuit, seq).is_ok() {
                            self.mark_link(leg.link);
                        }
                    }
                }
                None
            }
        };
        let charged = self.charge_toward(to, len);
        let Some(c) = self.circuits.get_mut(&circuit) else {
            return;
        };
        match toward_host {
            true => c.toward_host += charged,
            false => c.toward_dialer += charged,
        }
        if self.send_toward(circuit, to, payload, fin, relayed) {
            if let End::Local(l) = to {
                self.mark(l.conn);
            }
            self.stats.bytes_relayed += len as u64;
            self.stats.frames_relayed += 1;
        } else if let Some(c) = self.take_circuit(&circuit) {
            self.end_circuit(now, circuit, &c, Ended::Here, "peer is gone");
        }
    }

    /// Acknowledges the other end's payload up to `seq` on `leg`.
    fn ack_on(&mut self, leg: LinkLeg, seq: u64) {
        if let Some(l) = self.links.get_mut(&leg.link) {
            if l.session.send_ack(leg.circuit, seq).is_ok() {
                self.mark_link(leg.link);
            }
        }
    }

    /// The ingress started the circuit of `leg`: a transit passes the start on, the
    /// egress relays what its host sent meanwhile.
    pub(super) fn link_start(&mut self, leg: LinkLeg) {
        let Some(circuit) = self.circuit_of(leg) else {
            return;
        };
        let Some(c) = self.circuits.get_mut(&circuit) else {
            return;
        };
        match c.across(End::Link(leg)) {
            Some((End::Link(next), _)) => {
                if let Some(l) = self.links.get_mut(&next.link) {
                    if l.session.send_start(next.circuit).is_ok() {
                        self.mark_link(next.link);
                    }
                }
            }
            _ => {
                c.relaying = true;
                self.flush_held(circuit, leg);
            }
        }
    }

    /// The peer router started circuit `id` on connection `key`, which does not carry it
    /// here: the router installed it on another connection to that router (it saw
    /// other connections up). The circuit moves to `key` (nothing crossed yet: a
    /// circuit's first frame is its start) and starts; a circuit this router does not
    /// hold is refused.
    pub(super) fn start_unheld(&mut self, key: ConnKey, id: u64) {
        let peer = self.links.get(&key).and_then(|l| l.peer.clone());
        let sibling = peer.as_deref().and_then(|peer| {
            self.link_legs.iter().find_map(|(link, m)| {
                let same_peer = *link != key
                    && self
                        .links
                        .get(link)
                        .is_some_and(|l| l.peer.as_deref() == Some(peer));
                (same_peer && m.contains_key(&id)).then_some(*link)
            })
        });
        let moved = sibling.and_then(|old| {
            let circuit = self.circuit_of(LinkLeg {
                link: old,
                circuit: id,
            })?;
            self.links.get_mut(&key)?.session.open_circuit(id).ok()?;
            Some((old, circuit))
        });
        let Some((old, circuit)) = moved else {
            tracing::debug!(
                circuit = id,
                link = key.0,
                "start of a circuit not held: refused"
            );
            if let Some(l) = self.links.get_mut(&key) {
                if l.session.refuse_circuit(id).is_ok() {
                    self.mark_link(key);
                }
            }
            return;
        };
        let (old_leg, new_leg) = (
            LinkLeg {
                link: old,
                circuit: id,
            },
            LinkLeg {
                link: key,
                circuit: id,
            },
        );
        self.forget_link_leg(old_leg);
        if let Some(l) = self.links.get_mut(&old) {
            l.session.forget_circuit(id);
        }
        self.link_legs.entry(key).or_default().insert(id, circuit);
        if let Some(c) = self.circuits.get_mut(&circuit) {
            if c.dialer == End::Link(old_leg) {
                c.dialer = End::Link(new_leg);
            }
            if c.host == Some(End::Link(old_leg)) {
                c.host = Some(End::Link(new_leg));
            }
        }
        self.stats.link_circuits_moved += 1;
        self.link_start(new_leg);
    }

    /// The peer router's consumer drained `drained` of what this router sent on `leg`.
    pub(super) fn link_credit(&mut self, leg: LinkLeg, drained: Drained) {
        let cost = self.link_cost(leg.link);
        let Some(circuit) = self.circuit_of(leg) else {
            return;
        };
        let Some(c) = self.circuits.get_mut(&circuit) else {
            return;
        };
        if c.closing.is_some() {
            return self.flush_held(circuit, leg);
        }
        let toward_leg_is_host = c.host == Some(End::Link(leg));
        let (queued, source) = match toward_leg_is_host {
            true => (&mut c.toward_host, c.dialer),
            false => match c.host {
                Some(host) => (&mut c.toward_dialer, host),
                None => return,
            },
        };
        let charge = super::charged(drained, cost);
        *queued = queued.saturating_sub(charge);
        let resume = *queued <= self.config.window / 2;
        self.flush_held(circuit, leg);
        self.delivered(circuit, source, drained, charge, resume);
    }

    /// The peer router closed `leg` with `reason`; with `reroute`, only the path broke
    /// (`Some(true)`: and every link of it is still up).
    pub(super) fn link_closed(
        &mut self,
        now: Instant,
        leg: LinkLeg,
        reason: &[u8],
        reroute: Option<bool>,
    ) {
        let Some(circuit) = self.circuit_of(leg) else {
            return;
        };
        self.forget_link_leg(leg);
        let reason = String::from_utf8_lossy(reason);
        tracing::debug!(circuit = leg.circuit, link = leg.link.0, %reason, ?reroute, "circuit closed by the peer router");
        if let Some(link_up) = reroute {
            if self.path_broke(now, circuit, leg, &reason, link_up) {
                return;
            }
        }
        if let Some(c) = self.take_circuit(&circuit) {
            self.end_circuit(now, circuit, &c, Ended::Link(leg), &reason);
        }
    }

    /// The link of `leg` no longer carries `circuit` because its path broke. An end
    /// router keeps the circuit and asks for a new path; a transit forgets it and passes
    /// the break on toward the other end. `link_up`: the link broke only in one of its
    /// connections and is still up, so the same path will do. False when the circuit
    /// cannot be rerouted (it is not set up yet), so the caller ends it.
    fn path_broke(
        &mut self,
        now: Instant,
        circuit: CircuitId,
        leg: LinkLeg,
        why: &str,
        link_up: bool,
    ) -> bool {
        let Some(c) = self.circuits.get_mut(&circuit) else {
            return true;
        };
        let (Some(id), Some(host)) = (c.mesh_id, c.host) else {
            return false;
        };
        if c.closing.is_some() && !c.is_mesh_end() {
            // Its other side is gone: nothing would take the new path. (An end router
            // that is closing takes it: what the other end has not acknowledged goes
            // again, then the close.)
            return false;
        }
        if c.route_request.is_some() {
            return false;
        }
        let other = if c.dialer == End::Link(leg) {
            host
        } else {
            c.dialer
        };
        match other {
            End::Link(next) => {
                self.take_circuit(&circuit);
                self.forget_link_leg(next);
                if let Some(l) = self.links.get_mut(&next.link) {
                    if l.session
                        .close_for_reroute(next.circuit, why.as_bytes(), link_up)
                        .is_ok()
                    {
                        self.mark_link(next.link);
                    }
                }
                true
            }
            End::Local(_) | End::Remote(_) => {
                if c.rerouting.is_none() {
                    let deadline = now + REROUTE_TIMEOUT;
                    c.rerouting = Some(deadline);
                    self.reroute_timers.push(Reverse((deadline, circuit)));
                    tracing::info!(circuit = id, %why, "path broke; asking for a new one");
                    self.control.push_back(ControlRequest::Reroute {
                        circuit_id: id,
                        path_intact: link_up,
                        link_circuit_id: leg.circuit,
                    });
                }
                true
            }
        }
    }

    /// A reroute Route: this end's circuit moves to the link toward the router the Route
    /// names and sends again what the other end has not acknowledged (the ingress
    /// starts the new path; the egress waits for that start).
    fn reroute(&mut self, route: &pb::Route) -> Result<(), String> {
        let id = route.circuit_id;
        let lid = link_id(route);
        let missing = || "no such circuit on this router".to_owned();
        let circuit = *self.mesh_ends.get(&id).ok_or_else(missing)?;
        let c = self.circuits.get(&circuit).ok_or_else(missing)?;
        let ingress = matches!(c.host, Some(End::Link(_)));
        let (old, peer) = match (ingress, c.dialer, c.host) {
            (true, _, Some(End::Link(old))) => (old, route.next_router_id.clone()),
            (false, End::Link(old), _) => (old, route.previous_router_id.clone()),
            _ => return Err("the circuit has no link leg here".into()),
        };
        let link = self
            .link_for(&peer, lid)
            .ok_or_else(|| format!("no link to router {peer}"))?;
        // The old leg, if its link is still up, carries the circuit no more. First: the
        // new leg may be on the same connection (the path stayed the same and so did
        // the connection on this side), where the circuit opens again afresh.
        self.forget_link_leg(old);
        if let Some(l) = self.links.get_mut(&old.link) {
            l.session.forget_circuit(old.circuit);
        }
        self.open_on_link(link, lid)?;
        let leg = LinkLeg { link, circuit: lid };
        self.link_legs.entry(link).or_default().insert(lid, circuit);
        let window = self.config.window;
        let cost = self.link_cost(link);
        let c = self.circuits.get_mut(&circuit).ok_or_else(missing)?;
        match ingress {
            true => c.host = Some(End::Link(leg)),
            false => {
                c.dialer = End::Link(leg);
                c.relaying = false;
            }
        }
        c.rerouting = None;
        // What the other end has not acknowledged goes first, in order.
        while let Some(entry) = c.unacked.pop_back() {
            c.held.push_front(entry);
        }
        c.unacked_bytes = 0;
        // Only what waits here is in flight on the new path, charged as that link
        // charges.
        let waiting: usize = c
            .held
            .iter()
            .map(|(_, p, _)| charge(p.len(), cost) as usize)
            .sum();
        let (source, before) = match ingress {
            true => (c.dialer, std::mem::replace(&mut c.toward_host, waiting)),
            false => (
                c.host.unwrap_or(c.dialer),
                std::mem::replace(&mut c.toward_dialer, waiting),
            ),
        };
        // What the old path lost and is sent again counts once, as it waits here now.
        if let End::Local(l) = source {
            match waiting >= before {
                true => self.hold(l.conn, waiting - before),
                false => self.release_held(l.conn, before - waiting),
            }
        }
        self.stats.circuits_rerouted += 1;
        tracing::info!(circuit = id, via = %peer, "circuit rerouted");
        if ingress {
            if let Some(l) = self.links.get_mut(&link) {
                l.session.send_start(lid).map_err(|e| e.to_string())?;
            }
            self.mark_link(link);
            self.flush_held(circuit, leg);
        }
        if waiting <= window / 2 {
            if let End::Local(l) = source {
                if let Some(state) = self.conns.get_mut(&l.conn) {
                    state.pausing.remove(&circuit);
                }
            }
        }
        Ok(())
    }

    /// Circuits that waited for a new path past their deadline end with an error.
    pub(super) fn reroute_deadlines(&mut self, now: Instant) {
        while let Some(Reverse((deadline, circuit))) = self.reroute_timers.peek().copied() {
            if deadline > now {
                break;
            }
            self.reroute_timers.pop();
            let (rerouting, closing) = self.circuits.get(&circuit).map_or((false, false), |c| {
                (
                    c.rerouting == Some(deadline),
                    c.closing.as_ref().is_some_and(|cl| cl.deadline == deadline),
                )
            });
            if rerouting || closing {
                if let Some(c) = self.take_circuit(&circuit) {
                    let reason = match rerouting {
                        true => {
                            self.stats.reroutes_failed += 1;
                            "the circuit's path broke and no other path was found"
                        }
                        false => "the circuit's last data was not delivered in time",
                    };
                    self.end_circuit(now, circuit, &c, Ended::Here, reason);
                }
            }
        }
    }

    /// The other end router acknowledged payload of `leg` up to `seq` (a transit passes
    /// the ack on).
    pub(super) fn link_ack(&mut self, leg: LinkLeg, seq: u64) {
        let Some(circuit) = self.circuit_of(leg) else {
            return;
        };
        let Some(c) = self.circuits.get_mut(&circuit) else {
            return;
        };
        match c.across(End::Link(leg)) {
            Some((End::Link(next), _)) => {
                if let Some(l) = self.links.get_mut(&next.link) {
                    if l.session.send_ack(next.circuit, seq).is_ok() {
                        self.mark_link(next.link);
                    }
                }
            }
            _ => {
                while c.unacked.front().is_some_and(|(s, _, _)| *s <= seq) {
                    if let Some((_, p, _)) = c.unacked.pop_front() {
                        c.unacked_bytes -= charge(p.len(), FRAME_COST) as usize;
                    }
                }
                self.flush_held(circuit, leg);
                // A closing circuit ends once all it sent is acknowledged.
                self.closed_if_drained(circuit);
            }
        }
    }

    /// The link connection `link` to `peer` is gone: every circuit over it is rerouted
    /// (`link_up`: on the same path, another connection of the link being up) or ends
    /// with an error.
    pub(super) fn link_circuits_lost(
        &mut self,
        now: Instant,
        link: ConnKey,
        peer: &str,
        link_up: bool,
    ) {
        let Some(circuits) = self.link_legs.remove(&link) else {
            return;
        };
        let reason = format!("the link to router {peer} was lost");
        let circuits: HashMap<u64, CircuitId> = circuits;
        for (id, circuit) in circuits {
            let leg = LinkLeg { link, circuit: id };
            if self.path_broke(now, circuit, leg, &reason, link_up) {
                continue;
            }
            if let Some(c) = self.take_circuit(&circuit) {
                self.end_circuit(now, circuit, &c, Ended::Link(leg), &reason);
            }
        }
    }
}
