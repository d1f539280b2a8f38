//! Circuits across routers, simulated: routers' forwarders joined by link sessions
//! whose bytes the test carries (three in a line, A - B - C, or four in a diamond, A -
//! B - D and A - C - D), a controller played by the test (it routes every circuit on a
//! path the test sets, and reroutes on another), and SDKs speaking edge frames as bytes:
//! a dialer on A, a host on the last router.
#![allow(clippy::disallowed_methods)] // the simulation starts its clock once
#![allow(clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use weft_wire::control::pb;
use weft_wire::edge::*;
use weft_wire::{Decoded, Decoder, Frame, Limits};

use super::sim::{HOST, PK_D, PK_H, sync};
use super::*;
use crate::link::session::{LinkConfig, LinkError, Role};

/// Router ids.
const IDS: [&str; 4] = ["r-a", "r-b", "r-c", "r-d"];
/// The dialer's connection, on A.
const DIALER: ConnKey = ConnKey(1);

/// A link between two routers: each end's key on its router.
#[derive(Clone, Copy, Debug)]
struct SimLink {
    ends: [(usize, ConnKey); 2],
}

/// An SDK's bytes from its router, and whether its socket takes them.
#[derive(Debug)]
struct Sdk {
    router: usize,
    key: ConnKey,
    seq: i32,
    inbox: Decoder,
    stalled: bool,
}

/// The routers, the links between them, and the controller's pending work.
struct Line {
    routers: Vec<Forwarder>,
    links: Vec<SimLink>,
    /// The path the controller routes circuits on, and the one it reroutes them to.
    path: Vec<usize>,
    detour: Vec<usize>,
    /// Circuits rerouted already (a second request is dropped, as the controller does).
    rerouted: Vec<u64>,
    /// When false, input does not carry link bytes by itself (frames stay in flight).
    auto_carry: bool,
    now: Instant,
    next_circuit: u64,
    /// Circuits the controller routed and waits for the egress to confirm:
    /// (the egress Route's request id, the ingress circuit, the response to give).
    pending: Vec<(i32, CircuitId, pb::CircuitResponse)>,
    next_request: i32,
    /// The terminator the host registered: (address, id).
    terminator: Option<(String, String)>,
    /// Ends the routers reported to the controller.
    closed: Vec<pb::CircuitClosed>,
}

impl Line {
    fn new(window: usize, link: LinkConfig) -> Self {
        Self::with(
            window,
            link,
            3,
            &[(0, 1), (2, 1)],
            vec![0, 1, 2],
            Vec::new(),
        )
    }

    /// A - B - D and A - C - D; circuits go through B, reroutes through C.
    fn diamond(window: usize, link: LinkConfig) -> Self {
        Self::with(
            window,
            link,
            4,
            &[(0, 1), (0, 2), (1, 3), (2, 3)],
            vec![0, 1, 3],
            vec![0, 2, 3],
        )
    }

    /// [`Self::diamond`] where router `older` states no frame cost on its links (a
    /// router from before frame charges): its links count payload only.
    fn diamond_with_older(window: usize, link: LinkConfig, older: usize) -> Self {
        let pairs = [(0, 1), (0, 2), (1, 3), (2, 3)];
        let mut line = Self::with(window, link, 4, &[], vec![0, 1, 3], vec![0, 2, 3]);
        line.add_links(link, &pairs, 1, Some(older));
        line
    }

    /// `count` routers with links `(dialer, listener)`.
    fn with(
        window: usize,
        link: LinkConfig,
        count: usize,
        pairs: &[(usize, usize)],
        path: Vec<usize>,
        detour: Vec<usize>,
    ) -> Self {
        Self::with_connections(window, link, count, pairs, 1, path, detour)
    }

    /// [`Self::with`], each link `connections` connections (in `links`, the pair's
    /// connections follow each other).
    fn with_connections(
        window: usize,
        link: LinkConfig,
        count: usize,
        pairs: &[(usize, usize)],
        connections: u32,
        path: Vec<usize>,
        detour: Vec<usize>,
    ) -> Self {
        let now = Instant::now();
        let routers: Vec<Forwarder> = IDS[..count]
            .iter()
            .map(|id| {
                let mut f = Forwarder::new(ForwardConfig {
                    router_id: (*id).to_owned(),
                    window,
                    mesh_shard: Some(0),
                    ..ForwardConfig::default()
                });
                let mut state = sync();
                for a in state
                    .identity_routers
                    .iter_mut()
                    .chain(state.service_routers.iter_mut())
                {
                    a.router_ids = vec![(*id).to_owned()];
                }
                f.apply_sync(now, state);
                f
            })
            .collect();
        let links = Vec::new();
        let mut line = Self {
            routers,
            links,
            path,
            detour,
            rerouted: Vec::new(),
            auto_carry: true,
            now,
            next_circuit: 1 << 40,
            pending: Vec::new(),
            next_request: 1,
            terminator: None,
            closed: Vec::new(),
        };
        line.add_links(link, pairs, connections, None);
        line
    }

    /// Carries every link's frames and the controller's work until nothing moves (only
    /// the controller's with `auto_carry` off).
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            let carrying = if self.auto_carry {
                self.links.clone()
            } else {
                Vec::new()
            };
            for l in carrying {
                for (from, to) in [(l.ends[0], l.ends[1]), (l.ends[1], l.ends[0])] {
                    moved |= self.carry(from, to);
                }
            }
            moved |= self.control();
            if !moved {
                return;
            }
        }
    }

    /// Carries what both ends of link `i` queued, once.
    fn carry_link(&mut self, i: usize) {
        let l = self.links[i];
        self.carry(l.ends[0], l.ends[1]);
        self.carry(l.ends[1], l.ends[0]);
        while self.control() {}
    }

    /// Link `i` fails: both ends lose it, with whatever was queued on it.
    fn break_link(&mut self, i: usize) {
        let now = self.now;
        for (r, k) in self.links[i].ends {
            self.routers[r].link_lost(now, k, "connection reset");
        }
        self.links.remove(i);
        self.settle();
    }

    /// Moves what `from` queued on its link to `to`; whether anything moved.
    fn carry(&mut self, from: (usize, ConnKey), to: (usize, ConnKey)) -> bool {
        let mut wire = Vec::new();
        while let Some(t) = self.routers[from.0].poll_link_transmit(from.1) {
            wire.extend_from_slice(&t.head);
            wire.extend_from_slice(&t.payload);
        }
        if wire.is_empty() {
            return false;
        }
        let now = self.now;
        self.routers[to.0]
            .link_received(now, to.1, &wire)
            .expect("a link session failed (window exceeded or bad frame)");
        true
    }

    /// Plays the controller for every router's requests; whether anything moved.
    fn control(&mut self) -> bool {
        let mut moved = false;
        for r in 0..self.routers.len() {
            while let Some(req) = self.routers[r].poll_control() {
                moved = true;
                self.handle(r, req);
            }
        }
        moved
    }

    fn handle(&mut self, router: usize, req: ControlRequest) {
        let now = self.now;
        match req {
            ControlRequest::CreateTerminator {
                conn,
                listener,
                request,
                ..
            } => {
                let id = format!("t-{listener}");
                self.terminator = Some((request.address, id.clone()));
                self.routers[router].terminator_created(now, conn, listener, id);
            }
            ControlRequest::CreateCircuit { circuit, request } => {
                assert_eq!(router, 0, "only A has dialers");
                let id = self.next_circuit;
                self.next_circuit += 1;
                let path = self.path.clone();
                self.route_transits(id, 0, &path);
                let (address, terminator_id) = self.terminator.clone().expect("a terminator");
                let n = path.len();
                let egress = pb::Route {
                    circuit_id: id,
                    previous_router_id: IDS[path[n - 2]].into(),
                    terminator_id: terminator_id.clone(),
                    terminator_address: address,
                    caller_id: request.caller_id,
                    public_key: request.public_key,
                    app_data: request.app_data,
                    ..Default::default()
                };
                let egress_request = self.next_request;
                self.next_request += 1;
                self.routers[path[n - 1]].install_route(now, egress_request, egress);
                self.pending.push((
                    egress_request,
                    circuit,
                    pb::CircuitResponse {
                        circuit_id: id,
                        path: path.iter().map(|r| IDS[*r].to_owned()).collect(),
                        host_public_key: PK_H.to_vec(),
                        terminator_id,
                    },
                ));
            }
            ControlRequest::RouteResult {
                request_id, error, ..
            } => {
                if let Some(i) = self.pending.iter().position(|p| p.0 == request_id) {
                    let (_, circuit, response) = self.pending.remove(i);
                    let result = match error {
                        None => Ok(response),
                        Some(e) => Err(e),
                    };
                    self.routers[0].circuit_routed(now, circuit, result);
                } else {
                    assert_eq!(error, None, "the transit route failed");
                }
            }
            ControlRequest::CircuitClosed(c) => self.closed.push(c),
            ControlRequest::Reroute {
                circuit_id,
                path_intact,
                ..
            } => {
                if self.closed.iter().any(|c| c.circuit_id == circuit_id) {
                    // It ended on another router meanwhile, as the controller answers.
                    self.routers[router].unroute(
                        now,
                        circuit_id,
                        "the circuit ended on another router while its path broke",
                        true,
                    );
                    return;
                }
                if self.rerouted.contains(&circuit_id) {
                    return;
                }
                self.rerouted.push(circuit_id);
                // An intact path (a link lost one connection of several) is kept.
                let path = match path_intact {
                    true => self.path.clone(),
                    false => self.detour.clone(),
                };
                if path.is_empty() {
                    // No other path: the controller tells both ends to end the circuit.
                    let ends = [self.path[0], self.path[self.path.len() - 1]];
                    for r in ends {
                        self.routers[r].unroute(now, circuit_id, "no other path exists", false);
                    }
                    return;
                }
                // The new path gets a new id on links, as the controller gives it.
                let lid = self.next_circuit;
                self.next_circuit += 1;
                self.route_transits(circuit_id, lid, &path);
                let n = path.len();
                for (r, previous, next) in [
                    (path[n - 1], IDS[path[n - 2]], ""),
                    (path[0], "", IDS[path[1]]),
                ] {
                    let request_id = self.next_request;
                    self.next_request += 1;
                    let route = pb::Route {
                        circuit_id,
                        previous_router_id: previous.into(),
                        next_router_id: next.into(),
                        reroute: true,
                        link_circuit_id: lid,
                        ..Default::default()
                    };
                    self.routers[r].install_route(now, request_id, route);
                    // The answer comes at once (a reroute dials nothing), after what the
                    // router had queued already.
                    let queued: Vec<ControlRequest> =
                        std::iter::from_fn(|| self.routers[r].poll_control()).collect();
                    let mut answered = false;
                    for req in queued {
                        match req {
                            ControlRequest::RouteResult {
                                request_id: id,
                                error,
                                ..
                            } if id == request_id => {
                                assert_eq!(error, None, "reroute at {r}");
                                answered = true;
                            }
                            other => self.handle(r, other),
                        }
                    }
                    assert!(answered, "no answer to the reroute at {r}");
                }
                self.path = path;
            }
            ControlRequest::LinkStatus(_) | ControlRequest::RemoveTerminator { .. } => {}
        }
    }

    /// Routes the transit routers of `path` for circuit `id` (on links `lid`; 0: `id`).
    fn route_transits(&mut self, id: u64, lid: u64, path: &[usize]) {
        let now = self.now;
        for w in path.windows(3) {
            let request_id = self.next_request;
            self.next_request += 1;
            let route = pb::Route {
                circuit_id: id,
                previous_router_id: IDS[w[0]].into(),
                next_router_id: IDS[w[2]].into(),
                link_circuit_id: lid,
                ..Default::default()
            };
            self.routers[w[1]].install_route(now, request_id, route);
        }
    }

    fn connect(&mut self, router: usize, key: ConnKey, token: &[u8], fp: &str) -> Sdk {
        let now = self.now;
        self.routers[router].add_conn(now, key, Some(fp.into()));
        let mut sdk = Sdk {
            router,
            key,
            seq: 0,
            inbox: Decoder::new(Limits::DEFAULT),
            stalled: false,
        };
        self.send(&mut sdk, |o, s| {
            Hello {
                session_token: token,
                client_info: b"test",
            }
            .encode(s, o)
            .unwrap()
        });
        let frames = self.recv(&mut sdk);
        assert!(HelloResult::parse(&frames[0]).unwrap().success);
        sdk
    }

    fn send(&mut self, sdk: &mut Sdk, encode: impl FnOnce(&mut BytesMut, i32)) {
        let seq = sdk.seq;
        sdk.seq += 1;
        let mut out = BytesMut::new();
        encode(&mut out, seq);
        let now = self.now;
        self.routers[sdk.router].handle_input(now, sdk.key, &out, 0);
        self.settle();
    }

    /// Writes (unless stalled) what the router queued for `sdk`.
    fn recv(&mut self, sdk: &mut Sdk) -> Vec<Frame> {
        let fwd = &mut self.routers[sdk.router];
        let mut frames = Vec::new();
        if sdk.stalled {
            return frames;
        }
        while let Some(t) = fwd.poll_transmit(sdk.key) {
            sdk.inbox.extend_from_slice(&t.head);
            sdk.inbox.extend_from_slice(&t.payload);
            fwd.handle_written(sdk.key, &t);
            while let Ok(Decoded::Frame(f)) = sdk.inbox.decode() {
                frames.push(f);
            }
        }
        self.settle();
        frames
    }

    fn data(&mut self, sdk: &mut Sdk, conn_id: u32, payload: &[u8], fin: bool) {
        self.send(sdk, |o, s| {
            Data {
                conn_id,
                seq: 1,
                flags: if fin { FLAG_FIN } else { 0 },
                payload,
            }
            .encode(s, o)
            .unwrap()
        });
    }

    /// Adds links `(dialer, listener)` of `connections` connections each; router
    /// `older`, if any, states no frame cost on its links.
    fn add_links(
        &mut self,
        link: LinkConfig,
        pairs: &[(usize, usize)],
        connections: u32,
        older: Option<usize>,
    ) {
        let now = self.now;
        let config = |router: usize| match older == Some(router) {
            true => LinkConfig {
                frame_cost: 0,
                ..link
            },
            false => link,
        };
        let routers = &mut self.routers;
        let links = &mut self.links;
        // Connection keys go on after the links already there.
        let base = links.len();
        let each = pairs
            .iter()
            .flat_map(|pair| (0..connections).map(move |c| (*pair, c)));
        for (n, ((dialer, listener), connection)) in each.enumerate() {
            let n = (base + n) as u64;
            let (dk, lk) = (ConnKey(1000 + 2 * n), ConnKey(1001 + 2 * n));
            routers[dialer]
                .add_link(
                    now,
                    dk,
                    config(dialer),
                    Role::Dialer {
                        own_id: IDS[dialer].into(),
                        peer: IDS[listener].into(),
                        connection,
                    },
                )
                .unwrap();
            routers[listener]
                .add_link(
                    now,
                    lk,
                    config(listener),
                    Role::Listener {
                        expected_peer: IDS[dialer].into(),
                    },
                )
                .unwrap();
            links.push(SimLink {
                ends: [(dialer, dk), (listener, lk)],
            });
        }
        self.settle();
        for l in self.links.clone() {
            for (r, k) in l.ends {
                assert!(
                    self.routers[r]
                        .links()
                        .iter()
                        .any(|i| i.key == k && i.peer.is_some()),
                    "link up"
                );
            }
        }
    }

    /// A host bound on C and a dialer on A with one circuit across B: dialer conn 0,
    /// host child 100.
    fn established(window: usize, link: LinkConfig) -> (Self, Sdk, Sdk) {
        Self::established_on(Self::new(window, link))
    }

    fn established_on(line: Self) -> (Self, Sdk, Sdk) {
        let (mut line, mut dialer, mut host, accept) = Self::dialed(line);
        line.accept(&mut host, accept);
        assert!(StateConnected::parse(&line.recv(&mut host)[0]).is_ok());
        let frames = line.recv(&mut dialer);
        let connected = StateConnected::parse(&frames[0]).unwrap();
        assert_eq!(connected.public_key, Some(&PK_H[..]), "the host's key");
        (line, dialer, host)
    }

    /// A host bound on the last router and a dialer on A that dialed: the host holds
    /// the Dial, which it has not answered; returns its (listener, reply_for).
    fn dialed(mut line: Self) -> (Self, Sdk, Sdk, (u32, i32)) {
        let last = *line.path.last().unwrap_or(&0);
        let mut host = line.connect(last, HOST, b"H", "fh");
        line.send(&mut host, |o, s| {
            Bind {
                conn_id: 7,
                seq: 0,
                caller_id: Some(b"host"),
                public_key: Some(&PK_H),
                terminator_identity: None,
                cost: None,
                precedence: None,
                session_token: b"tok-bind",
            }
            .encode(s, o)
            .unwrap()
        });
        assert!(StateConnected::parse(&line.recv(&mut host)[0]).is_ok());
        let mut dialer = line.connect(0, DIALER, b"D", "fd");
        line.send(&mut dialer, |o, s| {
            Connect {
                conn_id: 0,
                seq: 0,
                caller_id: Some(b"dialer"),
                public_key: Some(&PK_D),
                terminator_identity: None,
                app_data: Some(b"app"),
                stickiness_token: None,
                session_token: b"tok-dial",
            }
            .encode(s, o)
            .unwrap()
        });
        // The egress dialled the host with what the dialer sent.
        let frames = line.recv(&mut host);
        let dial = Dial::parse(&frames[0]).unwrap();
        assert_eq!(
            (dial.caller_id, dial.public_key, dial.app_data),
            (&b"dialer"[..], Some(&PK_D[..]), Some(&b"app"[..]))
        );
        let accept = (dial.conn_id, frames[0].sequence());
        (line, dialer, host, accept)
    }

    /// `sdk` closes `conn_id` cleanly (StateClosed without a reason).
    fn close(&mut self, sdk: &mut Sdk, conn_id: u32) {
        self.send(sdk, |o, s| {
            StateClosed {
                conn_id,
                seq: 9,
                reply_for: None,
                reason: b"",
            }
            .encode(s, o)
            .unwrap()
        });
    }

    /// The host accepts the Dial `(listener, reply_for)` as conn 100.
    fn accept(&mut self, host: &mut Sdk, (listener, reply_for): (u32, i32)) {
        self.send(host, |o, s| {
            DialSuccess {
                conn_id: listener,
                seq: 0,
                reply_for,
                new_conn_id: 100,
            }
            .encode(s, o)
            .unwrap()
        });
    }
}

fn payloads(frames: &[Frame], conn_id: u32) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut fin = false;
    for f in frames {
        if let Ok(d) = Data::parse(f) {
            if d.conn_id == conn_id {
                out.extend_from_slice(d.payload);
                fin |= d.is_fin();
            }
        }
    }
    (out, fin)
}

#[test]
fn a_circuit_across_three_routers_carries_both_ways_and_closes_cleanly() {
    let (mut line, mut dialer, mut host) = Line::established(1 << 20, LinkConfig::default());
    let stats: Vec<ForwardStats> = line.routers.iter().map(Forwarder::stats).collect();
    assert_eq!(
        (
            stats[0].circuits_ingress,
            stats[1].circuits_transit,
            stats[2].circuits_egress
        ),
        (1, 1, 1)
    );
    // The host speaks first (it was held at C until the ingress started the circuit).
    line.data(&mut host, 100, b"banner", false);
    assert_eq!(payloads(&line.recv(&mut dialer), 0).0, b"banner");
    line.data(&mut dialer, 0, b"ping", false);
    line.data(&mut dialer, 0, b"", true);
    let (up, fin) = payloads(&line.recv(&mut host), 100);
    assert_eq!((up.as_slice(), fin), (&b"ping"[..], true));
    line.data(&mut host, 100, b"pong", false);
    // The host closes: its last bytes arrive before the close, which is clean.
    line.close(&mut host, 100);
    let frames = line.recv(&mut dialer);
    assert_eq!(payloads(&frames, 0).0, b"pong");
    let closed = frames
        .iter()
        .find_map(|f| StateClosed::parse(f).ok())
        .expect("the dialer hears of the close");
    assert_eq!(closed.reason, ConnEnd::Closed.far_side_reason().as_bytes());
    for r in &line.routers {
        assert!(!r.has_circuits(), "every router forgot the circuit");
    }
    assert_eq!(line.closed.len(), 3, "every router reported the end");
}

#[test]
fn a_lost_link_without_another_path_ends_the_circuit_with_an_error_on_both_ends() {
    let (mut line, mut dialer, mut host) = Line::established(1 << 20, LinkConfig::default());
    // The link B - C breaks; there is no other path.
    line.break_link(1);
    for (sdk, conn_id) in [(&mut dialer, 0), (&mut host, 100)] {
        let frames = line.recv(sdk);
        let closed = frames
            .iter()
            .find_map(|f| StateClosed::parse(f).ok())
            .unwrap_or_else(|| panic!("no close for {conn_id}"));
        assert_eq!(closed.conn_id, conn_id);
        assert!(
            String::from_utf8_lossy(closed.reason).contains("no other path"),
            "{:?}",
            String::from_utf8_lossy(closed.reason)
        );
    }
}

/// What the host and the dialer read until they have as many bytes as `up` and `down`
/// (or 100 rounds passed): (the host's, the dialer's).
fn receive_both_ways(
    line: &mut Line,
    dialer: &mut Sdk,
    host: &mut Sdk,
    up: &[u8],
    down: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let (mut got_up, mut got_down) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        got_up.extend(payloads(&line.recv(host), 100).0);
        got_down.extend(payloads(&line.recv(dialer), 0).0);
        if got_up.len() >= up.len() && got_down.len() >= down.len() {
            break;
        }
    }
    (got_up, got_down)
}

/// With `auto_carry` turned off (frames stay on the links until carried), the dialer
/// sends 200,000 bytes and the host 150,000, in 10,000-byte frames; returns both.
fn send_both_ways_uncarried(
    line: &mut Line,
    dialer: &mut Sdk,
    host: &mut Sdk,
) -> (Vec<u8>, Vec<u8>) {
    let up: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let down: Vec<u8> = (0..150_000u32).map(|i| (i % 241) as u8).collect();
    line.auto_carry = false;
    for chunk in up.chunks(10_000) {
        line.data(dialer, 0, chunk, false);
    }
    for chunk in down.chunks(10_000) {
        line.data(host, 100, chunk, false);
    }
    (up, down)
}

#[test]
fn a_broken_path_moves_to_another_and_loses_nothing_in_flight() {
    let (mut line, mut dialer, mut host) =
        Line::established_on(Line::diamond(1 << 20, LinkConfig::default()));
    // Frames stay on the links until carried: some are in flight when B - D breaks.
    let (up, down) = send_both_ways_uncarried(&mut line, &mut dialer, &mut host);
    // A's frames reach B (and wait there for D); D's reach B (and wait for A).
    line.carry_link(0);
    line.carry_link(2);
    // The link B - D (index 2) breaks with frames queued on it both ways.
    line.break_link(2);
    line.auto_carry = true;
    line.settle();
    assert_eq!(line.rerouted.len(), 1, "one reroute for the circuit");
    assert_eq!(line.path, [0, 2, 3]);
    let (got_up, got_down) = receive_both_ways(&mut line, &mut dialer, &mut host, &up, &down);
    assert_eq!(got_up.len(), up.len(), "upload bytes after the reroute");
    assert!(got_up == up, "upload differs after the reroute");
    assert_eq!(
        got_down.len(),
        down.len(),
        "download bytes after the reroute"
    );
    assert!(got_down == down, "download differs after the reroute");
    assert_eq!(
        (
            line.routers[0].stats().circuits_rerouted,
            line.routers[3].stats().circuits_rerouted
        ),
        (1, 1)
    );
    // And on: more data, and a clean end.
    line.data(&mut dialer, 0, b"after", true);
    let (tail, fin) = payloads(&line.recv(&mut host), 100);
    assert_eq!((tail.as_slice(), fin), (&b"after"[..], true));
}

/// Three routers in a line, each link three connections (`links[3 * pair + n]`).
fn line_of_three_connection_links() -> Line {
    Line::with_connections(
        1 << 20,
        LinkConfig::default(),
        3,
        &[(0, 1), (2, 1)],
        3,
        vec![0, 1, 2],
        // No other path: a reroute that wanted one would end the circuit.
        Vec::new(),
    )
}

/// The index in `line.links` of the connection of link A - B carrying the circuit.
fn carrying_connection(line: &Line) -> usize {
    let a = &line.routers[0];
    let on: Vec<usize> = (0..3)
        .filter(|i| {
            let key = line.links[*i].ends[0].1;
            a.links().iter().any(|l| l.key == key && l.circuits == 1)
        })
        .collect();
    assert_eq!(on.len(), 1, "the circuit rides one connection");
    on[0]
}

#[test]
fn a_link_that_loses_one_of_its_connections_keeps_its_circuit_on_the_same_path() {
    let (mut line, mut dialer, mut host) = Line::established_on(line_of_three_connection_links());
    // Both routers of each link put the circuit on the same connection.
    let on = carrying_connection(&line);
    let (a_key, b_key) = (line.links[on].ends[0].1, line.links[on].ends[1].1);
    assert!(
        line.routers[1]
            .links()
            .iter()
            .any(|l| l.key == b_key && l.circuits == 1)
    );
    let (up, down) = send_both_ways_uncarried(&mut line, &mut dialer, &mut host);
    // What crossed B - C reaches B and C; then the connection of A - B carrying the
    // circuit breaks with frames queued on it both ways.
    for i in 3..6 {
        line.carry_link(i);
    }
    line.break_link(on);
    line.auto_carry = true;
    line.settle();
    assert_eq!(line.rerouted.len(), 1, "one reroute for the circuit");
    assert_eq!(line.path, [0, 1, 2], "the same path");
    let (got_up, got_down) = receive_both_ways(&mut line, &mut dialer, &mut host, &up, &down);
    assert_eq!((got_up.len(), got_down.len()), (up.len(), down.len()));
    assert!(got_up == up, "upload differs after the move");
    assert!(got_down == down, "download differs after the move");
    // The link stayed up for both routers: no down report, the circuit on another of
    // its connections.
    assert_eq!(
        (
            line.routers[0].stats().links_lost,
            line.routers[1].stats().links_lost
        ),
        (0, 0)
    );
    let now_on: Vec<ConnKey> = line.routers[0]
        .links()
        .iter()
        .filter(|l| l.circuits == 1)
        .map(|l| l.key)
        .collect();
    assert_eq!(now_on.len(), 1);
    assert_ne!(now_on[0], a_key, "another connection of the link");
    line.data(&mut dialer, 0, b"after", true);
    let (tail, fin) = payloads(&line.recv(&mut host), 100);
    assert_eq!((tail.as_slice(), fin), (&b"after"[..], true));
}

#[test]
fn a_listener_keeps_one_connection_per_number_from_a_dialer() {
    // Router B already has A's three connections of the A - B link; A (or a router
    // with A's certificate) says hello again as connection 1, and then as 16.
    let mut line = line_of_three_connection_links();
    let now = line.now;
    let (old_b_key, new_a, new_b) = (line.links[1].ends[1].1, ConnKey(9000), ConnKey(9001));
    let dialer = |connection| Role::Dialer {
        own_id: IDS[0].into(),
        peer: IDS[1].into(),
        connection,
    };
    line.routers[0]
        .add_link(now, new_a, LinkConfig::default(), dialer(1))
        .unwrap();
    let listener = Role::Listener {
        expected_peer: IDS[0].into(),
    };
    line.routers[1]
        .add_link(now, new_b, LinkConfig::default(), listener.clone())
        .unwrap();
    line.carry((0, new_a), (1, new_b));
    // The new one replaces the old one of the same number; the link stays up.
    let closes: Vec<ConnKey> = std::iter::from_fn(|| line.routers[1].poll_link_close())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(closes, [old_b_key]);
    assert_eq!(
        line.routers[1].stats().links_up,
        2,
        "A - B and C - B, no more"
    );
    // A number past the most is refused before anything else.
    let (past_a, past_b) = (ConnKey(9002), ConnKey(9003));
    line.routers[0]
        .add_link(now, past_a, LinkConfig::default(), dialer(16))
        .unwrap();
    line.routers[1]
        .add_link(now, past_b, LinkConfig::default(), listener)
        .unwrap();
    let mut wire = Vec::new();
    while let Some(t) = line.routers[0].poll_link_transmit(past_a) {
        wire.extend_from_slice(&t.head);
        wire.extend_from_slice(&t.payload);
    }
    assert!(matches!(
        line.routers[1].link_received(now, past_b, &wire),
        Err(LinkError::TooManyConnections(16))
    ));
}

#[test]
fn a_circuit_started_on_another_connection_than_installed_moves_there() {
    let mut line = line_of_three_connection_links();
    // A has lost connection 2 of A - B and B has not seen it yet: A sees two
    // connections up and B three, so they choose differently for the circuit
    // (2^40 % 2 = 0 on A, 2^40 % 3 = 1 on B).
    let (a_end, _) = (line.links[2].ends[0], line.links[2].ends[1]);
    let now = line.now;
    line.routers[0].link_lost(now, a_end.1, "connection reset");
    line.links.remove(2);
    let (mut line, mut dialer, mut host) = Line::established_on(line);
    assert_eq!(line.routers[1].stats().link_circuits_moved, 1);
    line.data(&mut host, 100, b"banner", false);
    assert_eq!(payloads(&line.recv(&mut dialer), 0).0, b"banner");
    line.data(&mut dialer, 0, b"ping", true);
    let (got, fin) = payloads(&line.recv(&mut host), 100);
    assert_eq!((got.as_slice(), fin), (&b"ping"[..], true));
    assert_eq!(line.routers[0].stats().links_lost, 0, "the link stayed up");
}

/// Reads `dialer` until its circuit closes: the payload and the close's reason.
fn read_to_close(line: &mut Line, dialer: &mut Sdk) -> (Vec<u8>, Option<String>) {
    let mut got = Vec::new();
    for _ in 0..100 {
        let frames = line.recv(dialer);
        got.extend(payloads(&frames, 0).0);
        if let Some(c) = frames.iter().find_map(|f| StateClosed::parse(f).ok()) {
            return (got, Some(String::from_utf8_lossy(c.reason).into_owned()));
        }
    }
    (got, None)
}

#[test]
fn small_frames_are_acknowledged_every_so_many_so_that_few_wait_for_a_reroute() {
    let (mut line, mut dialer, mut host) = Line::established(1 << 20, LinkConfig::default());
    for i in 0..200u32 {
        line.data(&mut dialer, 0, &i.to_be_bytes(), false);
    }
    let (got, _) = payloads(&line.recv(&mut host), 100);
    assert_eq!(got.len(), 800);
    // 800 bytes are far below an eighth of the window, yet the ingress keeps fewer
    // than 64 of the 200 frames for a reroute (ACK_FRAMES).
    let kept: Vec<usize> = line.routers[0]
        .circuits
        .values()
        .map(|c| c.unacked.len())
        .collect();
    assert_eq!(kept.len(), 1);
    assert!(kept[0] < 64, "{kept:?} frames kept");
}

#[test]
fn a_clean_close_whose_link_is_lost_on_the_way_is_sent_again_on_the_new_path() {
    let (mut line, mut dialer, mut host) =
        Line::established_on(Line::diamond(1 << 20, LinkConfig::default()));
    let down: Vec<u8> = (0..50_000u32).map(|i| (i % 239) as u8).collect();
    // The host writes and closes; all of it waits on the link B - D, which is lost.
    line.auto_carry = false;
    line.data(&mut host, 100, &down, false);
    line.close(&mut host, 100);
    line.break_link(2);
    line.auto_carry = true;
    line.settle();
    assert_eq!(line.path, [0, 2, 3], "rerouted");
    let (got, closed) = read_to_close(&mut line, &mut dialer);
    assert_eq!(got.len(), down.len(), "bytes before the close");
    assert!(got == down, "the bytes differ");
    assert_eq!(closed.as_deref(), Some(ConnEnd::Closed.far_side_reason()));
    for r in &line.routers {
        assert!(!r.has_circuits(), "every router forgot the circuit");
    }
}

#[test]
fn a_closing_end_whose_ack_was_lost_with_the_path_gets_it_for_what_it_sends_again() {
    let (mut line, mut dialer, mut host) =
        Line::established_on(Line::diamond(1 << 20, LinkConfig::default()));
    line.auto_carry = false;
    line.data(&mut host, 100, b"all of it", false);
    line.close(&mut host, 100);
    // The payload and its FIN reach A, whose ack gets as far as B ...
    line.carry_link(2);
    line.carry_link(0);
    line.carry_link(0);
    // ... and is lost with the link B - D: D sends it all again on the new path, and A,
    // which has it, acknowledges it again, so that D can close.
    line.break_link(2);
    line.auto_carry = true;
    line.settle();
    assert_eq!(line.path, [0, 2, 3], "rerouted");
    let (got, closed) = read_to_close(&mut line, &mut dialer);
    assert_eq!(got, b"all of it");
    assert_eq!(closed.as_deref(), Some(ConnEnd::Closed.far_side_reason()));
    for r in &line.routers {
        assert!(!r.has_circuits(), "every router forgot the circuit");
    }
}

#[test]
fn both_ends_closing_at_once_acknowledge_each_other_and_close_cleanly() {
    let (mut line, mut dialer, mut host) = Line::established(1 << 20, LinkConfig::default());
    line.auto_carry = false;
    line.data(&mut dialer, 0, b"from the dialer", false);
    line.close(&mut dialer, 0);
    line.data(&mut host, 100, b"from the host", false);
    line.close(&mut host, 100);
    // Each end's payload and FIN cross the other's on the way.
    line.auto_carry = true;
    line.settle();
    for r in &line.routers {
        assert!(
            !r.has_circuits(),
            "a router still holds the circuit (waiting for an ack that never comes)"
        );
    }
    assert!(
        line.closed
            .iter()
            .all(|c| c.reason == ConnEnd::Closed.far_side_reason()),
        "{:?}",
        line.closed
    );
}

#[test]
fn an_end_with_every_byte_whose_peer_closed_before_the_path_broke_ends_cleanly() {
    let (mut line, mut dialer, mut host) =
        Line::established_on(Line::diamond(1 << 20, LinkConfig::default()));
    line.auto_carry = false;
    line.data(&mut host, 100, b"last words", false);
    line.close(&mut host, 100);
    // The payload and its FIN reach A through B; A's ack reaches D, which closes.
    line.carry_link(2);
    line.carry_link(0);
    line.carry_link(0);
    let (b, d) = (line.links[2].ends[0], line.links[2].ends[1]);
    line.carry(b, d);
    while line.control() {}
    assert!(
        line.closed
            .iter()
            .any(|c| c.reason == ConnEnd::Closed.far_side_reason()),
        "D ended the circuit: {:?}",
        line.closed
    );
    // Its close to A is lost with the link B - D.
    line.break_link(2);
    line.auto_carry = true;
    line.settle();
    let (got, closed) = read_to_close(&mut line, &mut dialer);
    assert_eq!(got, b"last words");
    assert_eq!(closed.as_deref(), Some(ConnEnd::Closed.far_side_reason()));
}

/// The host closes cleanly (`StateClosed`, no reason) with `sent` bytes still held at
/// its router; the dialer must read every byte and then a clean close.
fn host_close_after(line: &mut Line, dialer: &mut Sdk, host: &mut Sdk, sent: &[u8]) {
    line.close(host, 100);
    line.auto_carry = true;
    line.settle();
    let mut got = Vec::new();
    let mut closed = None;
    for _ in 0..100 {
        let frames = line.recv(dialer);
        got.extend(payloads(&frames, 0).0);
        if let Some(c) = frames.iter().find_map(|f| StateClosed::parse(f).ok()) {
            closed = Some(String::from_utf8_lossy(c.reason).into_owned());
            break;
        }
    }
    assert_eq!(got.len(), sent.len(), "bytes before the close");
    assert!(got == sent, "the bytes differ");
    assert_eq!(
        closed.as_deref(),
        Some(ConnEnd::Closed.far_side_reason()),
        "a clean close after the last byte"
    );
    for r in &line.routers {
        assert!(!r.has_circuits(), "every router forgot the circuit");
    }
}

#[test]
fn a_clean_close_waits_for_what_the_link_credit_held_back() {
    let link = LinkConfig {
        window: 16 * 1024,
        credit_batch: 4 * 1024,
        ..LinkConfig::default()
    };
    let (mut line, mut dialer, mut host) = Line::established(1 << 20, link);
    let down: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    // Nothing is carried: C holds all but the first link window of it.
    line.auto_carry = false;
    for chunk in down.chunks(10_000) {
        line.data(&mut host, 100, chunk, false);
    }
    host_close_after(&mut line, &mut dialer, &mut host, &down);
}

#[test]
fn a_host_that_writes_and_closes_before_the_circuit_starts_loses_nothing() {
    let (mut line, mut dialer, mut host, accept) =
        Line::dialed(Line::new(1 << 20, LinkConfig::default()));
    // The ingress's start stays on the link while the host accepts, writes and closes.
    line.auto_carry = false;
    line.accept(&mut host, accept);
    line.data(&mut host, 100, b"banner and goodbye", false);
    host_close_after(&mut line, &mut dialer, &mut host, b"banner and goodbye");
}

#[test]
fn a_closing_circuit_that_cannot_drain_in_time_ends_with_an_error() {
    let link = LinkConfig {
        window: 16 * 1024,
        credit_batch: 4 * 1024,
        health: crate::link::health::HealthConfig {
            interval: Duration::from_secs(60),
            dead_after: Duration::from_secs(600),
        },
        ..LinkConfig::default()
    };
    let (mut line, mut dialer, mut host) = Line::established(1 << 20, link);
    // C's frames stay on the link B - C, so no credit comes back.
    line.auto_carry = false;
    line.data(&mut host, 100, &[7; 50_000], false);
    line.close(&mut host, 100);
    // Past C's link credit the tail cannot leave: it is held.
    assert!(
        line.routers[2].has_circuits(),
        "C keeps the circuit to drain it"
    );
    line.now += mesh::DRAIN_TIMEOUT + Duration::from_secs(1);
    let now = line.now;
    line.routers[2].handle_timeout(now);
    assert!(!line.routers[2].has_circuits(), "C gave up on it");
    line.auto_carry = true;
    line.settle();
    let frames = line.recv(&mut dialer);
    let closed = frames
        .iter()
        .find_map(|f| StateClosed::parse(f).ok())
        .expect("the dialer hears of the end");
    assert_ne!(
        closed.reason,
        ConnEnd::Closed.far_side_reason().as_bytes(),
        "not a clean end"
    );
}

mod properties {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// The dialer sends this many bytes (if its connection is read).
        Up(u16),
        /// The host sends this many bytes (likewise).
        Down(u16),
        StallDialer(bool),
        StallHost(bool),
        /// Write what is queued to every unstalled reader.
        Flush,
        /// Links carry their frames by themselves, or only when told.
        AutoCarry(bool),
        /// Carry the frames of one link once.
        CarryOne(usize),
        /// The link B - D breaks (once; the circuit moves to A - C - D).
        Break,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1..30_000u16).prop_map(Op::Up),
            4 => (1..30_000u16).prop_map(Op::Down),
            // Tiny frames, which windows and link credit charge for their cost.
            2 => (1..4u16).prop_map(Op::Up),
            2 => (1..4u16).prop_map(Op::Down),
            1 => any::<bool>().prop_map(Op::StallDialer),
            1 => any::<bool>().prop_map(Op::StallHost),
            2 => Just(Op::Flush),
            1 => any::<bool>().prop_map(Op::AutoCarry),
            2 => (0..4usize).prop_map(Op::CarryOne),
            1 => Just(Op::Break),
        ]
    }

    /// What a circuit direction holds anywhere on a router, at most: its window plus
    /// the frame that filled it.
    fn check_bounds(line: &Line, window: usize) -> Result<(), TestCaseError> {
        let max_frame = ForwardConfig::default().edge.limits.max_body_len as usize;
        for (r, fwd) in line.routers.iter().enumerate() {
            for c in fwd.circuits.values() {
                let held: usize = c
                    .held
                    .iter()
                    .chain(&c.held_back)
                    .map(|(_, p, _)| p.len())
                    .sum();
                prop_assert!(
                    c.toward_host <= window + 2 * max_frame
                        && c.toward_dialer <= window + 2 * max_frame
                        && held <= window + 2 * max_frame,
                    "router {r}: {} toward host, {} toward dialer, {held} held",
                    c.toward_host,
                    c.toward_dialer
                );
            }
        }
        Ok(())
    }

    /// Runs `ops`; with `older`, that router states no frame cost on its links (its
    /// links count payload only, the others charge frames).
    fn run(
        ops: Vec<Op>,
        window: usize,
        link_window: u32,
        older: Option<usize>,
    ) -> Result<(), TestCaseError> {
        let link = LinkConfig {
            window: link_window,
            credit_batch: link_window / 4,
            ..LinkConfig::default()
        };
        let diamond = match older {
            Some(r) => Line::diamond_with_older(window, link, r),
            None => Line::diamond(window, link),
        };
        let (mut line, mut dialer, mut host) = Line::established_on(diamond);
        let mut broken = false;
        let (mut up_sent, mut up_recv, mut down_sent, mut down_recv) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut n = 0u8;
        let mut pattern = |len: u16| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    n = n.wrapping_add(1);
                    n
                })
                .collect()
        };
        for op in ops {
            match op {
                Op::Up(len) if line.routers[0].wants_read(DIALER) => {
                    let p = pattern(len);
                    line.data(&mut dialer, 0, &p, false);
                    up_sent.extend_from_slice(&p);
                }
                Op::Down(len) if line.routers[2].wants_read(HOST) => {
                    let p = pattern(len);
                    line.data(&mut host, 100, &p, false);
                    down_sent.extend_from_slice(&p);
                }
                Op::Up(_) | Op::Down(_) => {}
                Op::AutoCarry(on) => {
                    line.auto_carry = on;
                    line.settle();
                }
                Op::CarryOne(i) => {
                    if i < line.links.len() {
                        line.carry_link(i);
                    }
                }
                Op::Break => {
                    if !broken {
                        broken = true;
                        // Links 0..4 are A-B, A-C, B-D, C-D.
                        line.break_link(2);
                    }
                }
                Op::StallDialer(s) => dialer.stalled = s,
                Op::StallHost(s) => host.stalled = s,
                Op::Flush => {
                    up_recv.extend(payloads(&line.recv(&mut host), 100).0);
                    down_recv.extend(payloads(&line.recv(&mut dialer), 0).0);
                }
            }
            check_bounds(&line, window)?;
        }
        // Both ends read everything and half-close; every byte arrives once, in order.
        dialer.stalled = false;
        host.stalled = false;
        line.auto_carry = true;
        line.settle();
        line.data(&mut dialer, 0, b"", true);
        line.data(&mut host, 100, b"", true);
        let (mut up_fin, mut down_fin) = (false, false);
        for _ in 0..1000 {
            let (u, uf) = payloads(&line.recv(&mut host), 100);
            let (d, df) = payloads(&line.recv(&mut dialer), 0);
            up_recv.extend(u);
            down_recv.extend(d);
            up_fin |= uf;
            down_fin |= df;
            if up_fin && down_fin {
                break;
            }
        }
        prop_assert!(up_fin && down_fin, "the half-closes arrived");
        prop_assert_eq!(up_recv.len(), up_sent.len());
        prop_assert!(up_recv == up_sent, "upload differs");
        prop_assert_eq!(down_recv.len(), down_sent.len());
        prop_assert!(down_recv == down_sent, "download differs");
        // Closed, the circuit leaves nothing on any identity's account.
        line.close(&mut dialer, 0);
        line.recv(&mut host);
        for (r, fwd) in line.routers.iter().enumerate() {
            prop_assert_eq!(fwd.stats().held_bytes, 0, "router {}", r);
        }
        Ok(())
    }

    /// A transit whose link toward the host waits for credit while the host's FIN comes
    /// the other way: found by the property below (with a router that charges no frame
    /// cost, which makes the transit's link stall sooner). The transit kept one queue
    /// for both directions, so the FIN's flush sent the held upload back to the dialer
    /// (three bytes it read as the host's).
    pub(super) fn transit_stalled_toward_the_host(
        older: Option<usize>,
    ) -> Result<(), TestCaseError> {
        let ops = vec![
            Op::Up(3676),
            Op::Up(15792),
            Op::Up(7340),
            Op::Up(7640),
            Op::AutoCarry(false),
            Op::Up(11631),
            Op::Up(2),
            Op::Up(1),
        ];
        run(ops, 128 * 1024, 48 * 1024, older)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Links with a smaller window than the circuits' (payload waits for the link's
        /// credit) and with a larger one, stalled readers on either side, frames held on
        /// the links, the path breaking with frames in flight (the circuit moves), tiny
        /// frames, and a router that charges no frame cost among routers that do.
        #[test]
        fn every_byte_crosses_the_routers_once_in_order_across_a_reroute(
            ops in vec(op(), 1..80),
            small_link in any::<bool>(),
            older in proptest::option::of(0..4usize),
        ) {
            let link_window = if small_link { 48 * 1024 } else { 512 * 1024 };
            run(ops, 128 * 1024, link_window, older)?;
        }
    }
}

#[test]
fn a_transit_keeps_each_direction_waiting_for_its_own_link() {
    for older in [None, Some(0), Some(1), Some(3)] {
        let result = properties::transit_stalled_toward_the_host(older);
        assert!(result.is_ok(), "older router {older:?}: {result:?}");
    }
}
