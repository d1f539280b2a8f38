//! The mesh as the controller sees it (docs/adr/0007-mesh.md): which connected routers
//! accept and dial links (from their hellos), which routers each may link with (the
//! [`pb::Peers`] pushed to all), the links they report, and the circuits routed across
//! them.
//!
//! - **Peers**: a router that connects says in its hello where its link listener is and
//!   which groups its listener and dialers have. Every connected router gets the list
//!   of connected routers with their link addresses and the fingerprints of the
//!   certificates they dial with (a listener admits a link only from a leaf on it),
//!   again whenever the list changes.
//! - **Links**: each end reports a link's state and measured latency
//!   ([`pb::LinkStatus`]). A link is up while one end says so and neither says it is
//!   down; its cost is OpenZiti's (static cost plus both ends' latency, `crate::path`).
//! - **Circuits**: [`create_circuit`] answers a router's [`pb::CircuitRequest`]:
//!   terminators of the service on other routers, ranked by path cost and chosen by the
//!   service's strategy; the route installed on every transit router, then on the egress
//!   router (which dials the host); the circuit id and path back to the ingress.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use weft_wire::control::pb;

use crate::controller::Controller;
use crate::model::{PolicyType, Service, Terminator};
use crate::path::{self, Candidate, Graph, Link, Precedence, Strategy};

/// How long a router has to install a route (the egress: to have its host accept).
pub const ROUTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Static cost of every link (OpenZiti's default).
const LINK_STATIC_COST: u32 = 1;
/// Messages queued toward one router's control connection at most.
pub const OUTBOUND_CAPACITY: usize = 1024;

/// A message the controller sends a router outside the reply to one of its requests.
#[derive(Debug)]
pub enum Outbound {
    /// Install a route; the reply (or the connection's end) answers `reply`.
    Route {
        /// The route.
        route: pb::Route,
        /// Gets `Ok` on a RouteResponse, the reason otherwise.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The answer to a CircuitRequest the router sent with sequence `reply_for`.
    CircuitReply {
        /// The request's sequence.
        reply_for: i32,
        /// The circuit, or why there is none.
        result: Result<pb::CircuitResponse, pb::ErrorReply>,
    },
    /// Forget a circuit whose setup failed elsewhere.
    CircuitClosed(pb::CircuitClosed),
}

/// A connected router as the mesh knows it.
#[derive(Debug, Clone)]
pub struct MeshRouter {
    /// Router id.
    pub id: String,
    /// Router name.
    pub name: String,
    /// Its control connection (a router that reconnects replaces the entry).
    pub conn_id: u64,
    /// Its link listener (`tls://host:port`), empty when it accepts no links.
    pub link_address: String,
    /// Groups of its link listener.
    pub link_groups: Vec<String>,
    /// Groups its dialers dial.
    pub dial_groups: Vec<String>,
    /// Fingerprint of its router (control-channel) certificate, which it dials with.
    pub client_fingerprint: String,
    /// Its cost (edge router `cost`).
    pub cost: u16,
    /// Whether circuits may only start or end on it.
    pub no_traversal: bool,
    /// Messages to its control connection.
    pub outbound: mpsc::Sender<Outbound>,
}

/// What one end said of a link last.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    dialed: bool,
    up: bool,
    latency_us: u64,
    reason: String,
    at: String,
}

/// A link as the management API lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkView {
    /// `dialer->listener`.
    pub id: String,
    /// The router that dialled.
    pub source_router_id: String,
    /// The router that listened.
    pub dest_router_id: String,
    /// `up` or `down`.
    pub state: String,
    /// Latency the dialer measured (ms; `null` while unknown).
    pub source_latency_ms: Option<f64>,
    /// Latency the listener measured.
    pub dest_latency_ms: Option<f64>,
    /// Static cost.
    pub static_cost: u32,
    /// Cost for path selection (static + both latencies in ms).
    pub cost: u64,
    /// Why it went down, as last reported.
    pub down_reason: String,
    /// When an end last reported it.
    pub updated_at: String,
}

/// A circuit routed across routers, as the management API lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitView {
    /// The circuit's id on every link of its path.
    pub id: String,
    /// The service.
    pub service_id: String,
    /// The session it was dialled with (OpenZiti's circuit `clientId`).
    pub session_id: String,
    /// The terminator it reaches.
    pub terminator_id: String,
    /// Router ids, ingress first.
    pub path: Vec<String>,
    /// Path cost when it was chosen.
    pub cost: u64,
    /// When it was created.
    pub created_at: String,
}

#[derive(Debug, Default)]
struct State {
    routers: BTreeMap<String, MeshRouter>,
    /// (reporting router, router at the other end) → report.
    reports: BTreeMap<(String, String), Report>,
    circuits: BTreeMap<u64, CircuitView>,
    /// Circuits being rerouted; `Some(path_intact)` when asked again meanwhile (the
    /// path may have broken again: the reroute runs once more when it is done).
    rerouting: BTreeMap<u64, Option<bool>>,
    /// A rerouted circuit's id on links (absent: its circuit id), set when its latest
    /// reroute began.
    link_ids: BTreeMap<u64, u64>,
    /// Older control connections of a router that is connected more than once (a
    /// router reaches each controller through every address it is given; two of them
    /// may lead to this one), newest last: one takes over when the one in `routers`
    /// ends.
    standby: BTreeMap<String, Vec<MeshRouter>>,
}

/// Older connections of one router kept in [`State::standby`] at most (a router opens
/// one per controller address it is given; more are dropped oldest first).
const MAX_STANDBY: usize = 8;

/// The controller's view of the mesh.
#[derive(Debug)]
pub struct Mesh {
    state: Mutex<State>,
    peers: watch::Sender<Arc<pb::Peers>>,
    next_circuit: AtomicU64,
}

impl Default for Mesh {
    fn default() -> Self {
        let mut seed = [0u8; 8];
        // A random start keeps circuit ids of a restarted controller apart from those
        // of the last run that routers may still carry; the top bit stays clear.
        if crate::pki::random_bytes(&mut seed).is_err() {
            seed = [0; 8];
        }
        Self {
            state: Mutex::new(State::default()),
            peers: watch::Sender::new(Arc::new(pb::Peers::default())),
            next_circuit: AtomicU64::new((u64::from_le_bytes(seed) >> 2).max(1)),
        }
    }
}

impl Mesh {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is a map insert or remove, never left half-done.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current peer list, and its changes.
    pub fn subscribe_peers(&self) -> watch::Receiver<Arc<pb::Peers>> {
        self.peers.subscribe()
    }

    /// A router's control connection came up with this hello.
    pub fn router_up(&self, router: MeshRouter) {
        let mut s = self.lock();
        let id = router.id.clone();
        if let Some(older) = s.routers.insert(id.clone(), router) {
            if older.conn_id != s.routers[&id].conn_id {
                let standby = s.standby.entry(id).or_default();
                standby.push(older);
                if standby.len() > MAX_STANDBY {
                    standby.remove(0);
                }
            }
        }
        self.publish(&s);
    }

    /// The control connection `conn_id` of `router_id` ended: the router leaves the
    /// peer list and the graph (unless a newer connection replaced it), and what it
    /// reported of its links is forgotten.
    pub fn router_down(&self, router_id: &str, conn_id: u64) {
        let mut s = self.lock();
        if s.routers
            .get(router_id)
            .is_some_and(|r| r.conn_id == conn_id)
        {
            // Another connection of the router takes over: it is still connected.
            let next = s.standby.get_mut(router_id).and_then(Vec::pop);
            if s.standby.get(router_id).is_some_and(Vec::is_empty) {
                s.standby.remove(router_id);
            }
            match next {
                Some(next) => {
                    s.routers.insert(router_id.to_owned(), next);
                }
                None => {
                    s.routers.remove(router_id);
                    s.reports.retain(|(reporter, _), _| reporter != router_id);
                }
            }
            self.publish(&s);
        } else if let Some(standby) = s.standby.get_mut(router_id) {
            standby.retain(|r| r.conn_id != conn_id);
            if standby.is_empty() {
                s.standby.remove(router_id);
            }
        }
    }

    /// A router's report of one of its links.
    pub fn link_status(&self, reporter: &str, status: &pb::LinkStatus) {
        let mut s = self.lock();
        if !s.routers.contains_key(reporter) {
            return;
        }
        let report = Report {
            dialed: status.dialed,
            up: status.up,
            latency_us: status.latency_us,
            reason: status.reason.clone(),
            at: crate::clock::now_string(),
        };
        let key = (reporter.to_owned(), status.peer_router_id.clone());
        if !status.up && !s.reports.contains_key(&key) {
            // A link that never came up (a dial that failed) is no link.
            return;
        }
        s.reports.insert(key, report);
    }

    fn publish(&self, s: &State) {
        let peers = pb::Peers {
            peers: s
                .routers
                .values()
                .map(|r| pb::Peer {
                    router_id: r.id.clone(),
                    name: r.name.clone(),
                    link_address: r.link_address.clone(),
                    link_groups: r.link_groups.clone(),
                    dial_groups: r.dial_groups.clone(),
                    client_fingerprint: r.client_fingerprint.clone(),
                })
                .collect(),
        };
        self.peers.send_replace(Arc::new(peers));
    }

    /// The links reported, one per (dialer, listener) pair, ordered by id.
    pub fn links(&self) -> Vec<LinkView> {
        let s = self.lock();
        links_of(&s)
    }

    /// The circuits routed across routers, ordered by id.
    pub fn circuits(&self) -> Vec<CircuitView> {
        self.lock().circuits.values().cloned().collect()
    }

    /// The path (router ids, ingress first) of the oldest circuit routed for
    /// `session_id`, if it has one (as OpenZiti's `DetailRoutePath`: the first circuit of
    /// the session).
    pub fn session_path(&self, session_id: &str) -> Option<Vec<String>> {
        self.lock()
            .circuits
            .values()
            .find(|c| c.session_id == session_id)
            .map(|c| c.path.clone())
    }

    /// A connected router's outbound queue.
    pub fn outbound(&self, router_id: &str) -> Option<mpsc::Sender<Outbound>> {
        self.lock()
            .routers
            .get(router_id)
            .map(|r| r.outbound.clone())
    }

    /// The graph for path selection: connected routers and the links that are up.
    pub fn graph(&self) -> Graph {
        let s = self.lock();
        let routers = s.routers.values().map(|r| path::Router {
            id: r.id.clone(),
            cost: r.cost,
            connected: true,
            no_traversal: r.no_traversal,
        });
        let links = links_of(&s).into_iter().map(|l| Link {
            id: l.id.clone(),
            src: l.source_router_id.clone(),
            dst: l.dest_router_id.clone(),
            static_cost: l.static_cost,
            src_latency_ms: ms(l.source_latency_ms),
            dst_latency_ms: ms(l.dest_latency_ms),
            up: l.state == "up",
        });
        Graph::new(routers.collect::<Vec<_>>(), links.collect::<Vec<_>>())
    }

    /// A fresh circuit id, unique on every link (the top bit stays clear).
    fn new_circuit_id(&self) -> u64 {
        self.next_circuit.fetch_add(1, Ordering::Relaxed) & (u64::MAX >> 1)
    }

    /// A router on the path of `circuit` said it ended: the circuit is forgotten. With
    /// `take_down` (the ingress could not use it; no data has flowed), the other routers
    /// of its path are told to forget it too.
    pub fn circuit_closed(&self, reporter: &str, closed: &pb::CircuitClosed) {
        let mut s = self.lock();
        // Only a router of the circuit's path may end it, and only its ingress take it
        // down (a router may not end another router's circuits).
        let on_path = s
            .circuits
            .get(&closed.circuit_id)
            .is_some_and(|c| c.path.iter().any(|r| r == reporter));
        if !on_path {
            return;
        }
        let Some(circuit) = s.circuits.remove(&closed.circuit_id) else {
            return;
        };
        s.link_ids.remove(&closed.circuit_id);
        tracing::debug!(circuit = closed.circuit_id, router = reporter, reason = %closed.reason, "circuit ended");
        if !closed.take_down || circuit.path.first().map(String::as_str) != Some(reporter) {
            return;
        }
        for router in circuit.path.iter().filter(|r| *r != reporter) {
            if let Some(r) = s.routers.get(router) {
                send_closed(
                    &r.outbound,
                    pb::CircuitClosed {
                        circuit_id: closed.circuit_id,
                        reason: closed.reason.clone(),
                        take_down: false,
                        ended_elsewhere: false,
                    },
                );
            }
        }
    }
}

fn ms(latency: Option<f64>) -> u32 {
    latency.map_or(0, |l| l.round().clamp(0.0, f64::from(u32::MAX)) as u32)
}

/// Folds the reports of both ends into one view per link.
fn links_of(s: &State) -> Vec<LinkView> {
    let mut out: BTreeMap<String, LinkView> = BTreeMap::new();
    for ((reporter, peer), report) in &s.reports {
        let (dialer, listener) = match report.dialed {
            true => (reporter.clone(), peer.clone()),
            false => (peer.clone(), reporter.clone()),
        };
        let id = format!("{dialer}->{listener}");
        let view = out.entry(id.clone()).or_insert_with(|| LinkView {
            id,
            source_router_id: dialer,
            dest_router_id: listener,
            state: "up".into(),
            source_latency_ms: None,
            dest_latency_ms: None,
            static_cost: LINK_STATIC_COST,
            cost: 0,
            down_reason: String::new(),
            updated_at: String::new(),
        });
        let latency = (report.latency_us > 0).then(|| report.latency_us as f64 / 1000.0);
        match report.dialed {
            true => view.source_latency_ms = latency,
            false => view.dest_latency_ms = latency,
        }
        if !report.up {
            view.state = "down".into();
            view.down_reason = report.reason.clone();
        }
        if report.at > view.updated_at {
            view.updated_at = report.at.clone();
        }
    }
    out.into_values()
        .map(|mut v| {
            v.cost = u64::from(v.static_cost)
                + u64::from(ms(v.source_latency_ms))
                + u64::from(ms(v.dest_latency_ms));
            v
        })
        .collect()
}

/// Builds an [`pb::ErrorReply`].
fn error(code: &str, message: impl Into<String>) -> pb::ErrorReply {
    pb::ErrorReply {
        code: code.into(),
        message: message.into(),
    }
}

/// Answers router `ingress`'s request for a circuit: chooses a terminator of the
/// service on another router and a path to it, installs the route on every router of the
/// path after the ingress (transit routers first, then the egress, which dials the host),
/// and returns the circuit. On any failure the routes already installed are removed.
pub async fn create_circuit(
    ctl: Arc<Controller>,
    ingress: String,
    req: pb::CircuitRequest,
) -> Result<pb::CircuitResponse, pb::ErrorReply> {
    let internal = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "circuit request failed");
        error("INTERNAL", "internal error")
    };
    // The ingress checked the session against its state; checked again here, where
    // it counts: a router asks only for what an SDK may dial.
    let session = ctl
        .store
        .session_by_id(&req.session_id)
        .await
        .map_err(|e| internal(&e))?
        .ok_or_else(|| error("INVALID_SESSION", "no such session"))?;
    if session.session_type != PolicyType::Dial || session.service_id != req.service_id {
        return Err(error(
            "INVALID_SESSION",
            "the session is not a Dial session of this service",
        ));
    }
    // The policies must let the session's identity and the service use the asking
    // router, as they must for the router to accept the dial at all.
    let policy = ctl.policy.get(&ctl.store).await.map_err(|e| internal(&e))?;
    let granted = policy
        .edge_routers_for_session(&session.identity_id, &req.service_id)
        .iter()
        .any(|r| r.id == ingress);
    if !granted {
        return Err(error(
            "INVALID_SESSION",
            "the policies do not grant this router to the session",
        ));
    }
    let service = ctl
        .store
        .entity::<Service>(&req.service_id)
        .await
        .map_err(|e| internal(&e))?
        .ok_or_else(|| error("NO_SUCH_SERVICE", "the service is gone"))?;
    let strategy: Strategy = service.doc.terminator_strategy.parse().unwrap_or_default();
    let terminators: Vec<_> = ctl
        .store
        .entities::<Terminator>()
        .await
        .map_err(|e| internal(&e))?
        .into_iter()
        .filter(|t| {
            t.doc.service == req.service_id
                && t.doc.router != ingress
                && (req.instance.is_empty() || t.doc.instance_id == req.instance)
        })
        .collect();
    let candidates: Vec<Candidate> = terminators
        .iter()
        .map(|t| Candidate {
            id: t.id.clone(),
            router: t.doc.router.clone(),
            precedence: Precedence::from_name(t.doc.precedence.as_deref().unwrap_or("default")),
            static_cost: t.doc.cost,
            dynamic: path::DynamicCost::default(),
        })
        .collect();
    let graph = ctl.mesh.graph();
    let ranked = path::rank(&graph, &ingress, &candidates);
    let mut draw = [0u8; 8];
    crate::pki::random_bytes(&mut draw).map_err(|e| internal(&e))?;
    let random = (u64::from_le_bytes(draw) >> 11) as f64 / (1u64 << 53) as f64;
    // The dialer's stickiness token names the terminator an earlier dial reached
    // (a `sticky` service: the router sends the token only then).
    let sticky = (!req.stickiness_token.is_empty()).then_some(req.stickiness_token.as_str());
    let chosen = path::choose(strategy, &ranked, random, sticky).ok_or_else(|| {
        error(
            "NO_ROUTE",
            "no terminator of the service is reachable from this router",
        )
    })?;
    let terminator = terminators
        .iter()
        .find(|t| t.id == chosen.candidate.id)
        .ok_or_else(|| internal(&"chosen terminator vanished"))?;
    let routers = chosen.path.routers.clone();
    let circuit_id = ctl.mesh.new_circuit_id();
    let mut installed = Vec::new();
    let result = async {
        // Transit routers first, all at once; then the egress, which dials the host: by
        // the time the host can answer, every router between knows the circuit.
        let transits = routers
            .windows(3)
            .map(|w| pb::Route {
                circuit_id,
                previous_router_id: w[0].clone(),
                next_router_id: w[2].clone(),
                ..Default::default()
            })
            .zip(routers.iter().skip(1));
        let mut waits = Vec::new();
        for (route, router) in transits {
            waits.push(send_route(&ctl, router, route));
            installed.push(router.clone());
        }
        for wait in waits {
            wait.await?;
        }
        let egress = routers
            .last()
            .ok_or_else(|| internal(&"empty path"))?
            .clone();
        let previous = routers
            .iter()
            .rev()
            .nth(1)
            .ok_or_else(|| internal(&"path without ingress"))?
            .clone();
        installed.push(egress.clone());
        send_route(
            &ctl,
            &egress,
            pb::Route {
                circuit_id,
                previous_router_id: previous,
                next_router_id: String::new(),
                terminator_id: terminator.id.clone(),
                terminator_address: terminator.doc.address.clone(),
                caller_id: req.caller_id.clone(),
                public_key: req.public_key.clone(),
                app_data: req.app_data.clone(),
                reroute: false,
                link_circuit_id: 0,
            },
        )
        .await
    }
    .await;
    if let Err(e) = result {
        for router in installed {
            if let Some(out) = ctl.mesh.outbound(&router) {
                send_closed(
                    &out,
                    pb::CircuitClosed {
                        circuit_id,
                        reason: e.message.clone(),
                        take_down: false,
                        ended_elsewhere: false,
                    },
                );
            }
        }
        return Err(e);
    }
    let host_public_key = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        terminator.doc.host_public_key.clone(),
    )
    .unwrap_or_default();
    ctl.mesh.lock().circuits.insert(
        circuit_id,
        CircuitView {
            id: circuit_id.to_string(),
            service_id: req.service_id.clone(),
            session_id: req.session_id.clone(),
            terminator_id: terminator.id.clone(),
            path: routers.clone(),
            cost: chosen.path.cost,
            created_at: crate::clock::now_string(),
        },
    );
    tracing::debug!(circuit = circuit_id, path = ?routers, "circuit routed");
    Ok(pb::CircuitResponse {
        circuit_id,
        path: routers,
        host_public_key,
        terminator_id: terminator.id.clone(),
    })
}

/// Queues `msg` for a router's control connection: at once when there is room, else
/// from a task that waits for room within [`ROUTE_TIMEOUT`] (a router busy with many
/// routes at once, a router of many paths having died, must still hear of ends).
fn send_closed(out: &mpsc::Sender<Outbound>, msg: pb::CircuitClosed) {
    if let Err(mpsc::error::TrySendError::Full(msg)) = out.try_send(Outbound::CircuitClosed(msg)) {
        let out = out.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(ROUTE_TIMEOUT, out.send(msg)).await;
        });
    }
}

/// How often (and how long apart) a reroute looks for a path other than the broken one
/// before it takes what the graph offers: the routers' reports that a link is down may
/// reach the controller just after an end router's request. Not when the router says
/// the path is intact (a link lost one of its connections and is still up): then the
/// shortest path is taken at once, the same one as a rule.
const REROUTE_TRIES: u32 = 8;
const REROUTE_RETRY: Duration = Duration::from_millis(250);

/// Answers an end router's [`pb::RerouteRequest`]: a new path between the circuit's
/// ingress and egress, its transit routers routed first, then the egress and the
/// ingress told to move the circuit to it (they send again what was not
/// acknowledged). Without a path, both ends are told to end the circuit.
pub async fn reroute_circuit(
    ctl: Arc<Controller>,
    requester: String,
    circuit_id: u64,
    path_intact: bool,
    broken_link_id: u64,
) {
    {
        let mut s = ctl.mesh.lock();
        let Some(c) = s.circuits.get(&circuit_id) else {
            // It ended on another router of its path meanwhile (whose close was lost
            // with the link): the requester ends it now rather than at its deadline.
            tracing::info!(circuit = circuit_id, router = %requester, "reroute of a circuit that ended elsewhere");
            if let Some(r) = s.routers.get(&requester) {
                send_closed(
                    &r.outbound,
                    pb::CircuitClosed {
                        circuit_id,
                        reason: "the circuit ended on another router while its path broke".into(),
                        take_down: false,
                        ended_elsewhere: true,
                    },
                );
            }
            return;
        };
        // Only an end router of the circuit may ask.
        if c.path.first() != Some(&requester) && c.path.last() != Some(&requester) {
            tracing::warn!(router = %requester, circuit = circuit_id, "reroute asked by a router that is no end of the circuit");
            return;
        }
        let current = s.link_ids.get(&circuit_id).copied().unwrap_or(circuit_id);
        if broken_link_id != 0 && broken_link_id != current {
            // About a path already being replaced (both ends of a broken path ask).
            tracing::debug!(
                circuit = circuit_id,
                "reroute about a path replaced already"
            );
            return;
        }
        if let Some(again) = s.rerouting.get_mut(&circuit_id) {
            // The new path broke too while being set up: once more after (one intact
            // report and one broken make a broken one).
            *again = Some(again.map_or(path_intact, |a| a && path_intact));
            tracing::debug!(circuit = circuit_id, "reroute asked again while one runs");
            return;
        }
        s.rerouting.insert(circuit_id, None);
        // The new path's id on links, from now on the one requests must name (under
        // the same lock: the other end's request about the old one is dropped).
        s.link_ids.insert(circuit_id, ctl.mesh.new_circuit_id());
    }
    let mut path_intact = path_intact;
    loop {
        let link_id = ctl
            .mesh
            .lock()
            .link_ids
            .get(&circuit_id)
            .copied()
            .unwrap_or(circuit_id);
        let rerouted = reroute_once(&ctl, circuit_id, path_intact, link_id).await;
        let mut s = ctl.mesh.lock();
        match s.rerouting.remove(&circuit_id) {
            Some(Some(again)) if rerouted => {
                s.rerouting.insert(circuit_id, None);
                s.link_ids.insert(circuit_id, ctl.mesh.new_circuit_id());
                path_intact = again;
            }
            _ => {
                if !rerouted {
                    s.link_ids.remove(&circuit_id);
                }
                return;
            }
        }
    }
}

/// One reroute of `circuit_id` (see [`reroute_circuit`]); whether the circuit is still
/// up after it.
async fn reroute_once(
    ctl: &Arc<Controller>,
    circuit_id: u64,
    path_intact: bool,
    link_id: u64,
) -> bool {
    let Some(old) = ctl.mesh.lock().circuits.get(&circuit_id).cloned() else {
        return false;
    };
    let (Some(ingress), Some(egress)) = (old.path.first().cloned(), old.path.last().cloned())
    else {
        return false;
    };
    // `path_intact` is the asking router's view: a router that lost one connection of
    // a link first may not have seen the others go yet (its peer died). When the
    // intact path cannot be installed, the reroute goes on as for a broken one.
    let mut intact = path_intact;
    let result = loop {
        let mut found = None;
        for attempt in 0..REROUTE_TRIES {
            let path = ctl.mesh.graph().shortest_paths(&ingress).path_to(&egress);
            match path {
                Some(p) if intact || p.routers != old.path || attempt + 1 == REROUTE_TRIES => {
                    found = Some(p);
                    break;
                }
                _ if attempt + 1 == REROUTE_TRIES => break,
                _ => tokio::time::sleep(REROUTE_RETRY).await,
            }
        }
        let result = match found {
            None => Err(error(
                "NO_ROUTE",
                "the circuit's path broke and no other path exists",
            )),
            Some(p) => install_reroute(ctl, circuit_id, link_id, &p.routers)
                .await
                .map(|()| p),
        };
        match result {
            Err(e) if intact => {
                tracing::debug!(circuit = circuit_id, code = %e.code, "the path said intact is not: rerouting as broken");
                intact = false;
            }
            result => break result,
        }
    };
    let mut s = ctl.mesh.lock();
    match result {
        Ok(p) => {
            tracing::info!(circuit = circuit_id, path = ?p.routers, "circuit rerouted");
            if let Some(c) = s.circuits.get_mut(&circuit_id) {
                c.path = p.routers;
                c.cost = p.cost;
            }
            true
        }
        Err(e) => {
            tracing::warn!(circuit = circuit_id, code = %e.code, reason = %e.message, "reroute failed");
            s.circuits.remove(&circuit_id);
            for router in [&ingress, &egress] {
                if let Some(r) = s.routers.get(router) {
                    send_closed(
                        &r.outbound,
                        pb::CircuitClosed {
                            circuit_id,
                            reason: e.message.clone(),
                            take_down: false,
                            ended_elsewhere: false,
                        },
                    );
                }
            }
            false
        }
    }
}

/// Routes the transit routers of `routers`, then moves the egress and the ingress.
async fn install_reroute(
    ctl: &Controller,
    circuit_id: u64,
    link_circuit_id: u64,
    routers: &[String],
) -> Result<(), pb::ErrorReply> {
    // `link_circuit_id`: the new path's id on links (see `pb::Route::link_circuit_id`).
    let mut waits = Vec::new();
    for (w, router) in routers.windows(3).zip(routers.iter().skip(1)) {
        let route = pb::Route {
            circuit_id,
            previous_router_id: w[0].clone(),
            next_router_id: w[2].clone(),
            link_circuit_id,
            ..Default::default()
        };
        waits.push(send_route(ctl, router, route));
    }
    for wait in waits {
        wait.await?;
    }
    let n = routers.len();
    let (Some(ingress), Some(egress)) = (routers.first(), routers.last()) else {
        return Err(error("INTERNAL", "empty path"));
    };
    let previous = routers.get(n.wrapping_sub(2)).cloned().unwrap_or_default();
    let next = routers.get(1).cloned().unwrap_or_default();
    let moved = |previous_router_id: String, next_router_id: String| pb::Route {
        circuit_id,
        previous_router_id,
        next_router_id,
        reroute: true,
        link_circuit_id,
        ..Default::default()
    };
    send_route(ctl, egress, moved(previous, String::new())).await?;
    send_route(ctl, ingress, moved(String::new(), next)).await
}

/// Sends `route` to `router` and waits for its answer.
fn send_route(
    ctl: &Controller,
    router: &str,
    route: pb::Route,
) -> impl Future<Output = Result<(), pb::ErrorReply>> + use<> {
    let out = ctl.mesh.outbound(router);
    let router = router.to_owned();
    async move {
        let out = out.ok_or_else(|| {
            error(
                "ROUTER_OFFLINE",
                format!("router {router} is not connected"),
            )
        })?;
        let (reply, answer) = oneshot::channel();
        // A router's queue fills when many circuits are routed at once (a router of
        // their path died): the route waits for room, within the same deadline.
        let deadline = tokio::time::Instant::now() + ROUTE_TIMEOUT;
        match tokio::time::timeout_at(deadline, out.send(Outbound::Route { route, reply })).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                return Err(error(
                    "ROUTER_OFFLINE",
                    format!("router {router} went away"),
                ));
            }
            Err(_) => {
                return Err(error(
                    "ROUTER_BUSY",
                    format!("router {router} is not keeping up"),
                ));
            }
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(reason))) => Err(error("ROUTE_FAILED", format!("{router}: {reason}"))),
            Ok(Err(_)) => Err(error(
                "ROUTER_OFFLINE",
                format!("router {router} went away"),
            )),
            Err(_) => Err(error(
                "ROUTE_TIMEOUT",
                format!("router {router} did not answer in time"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(id: &str, link: &str) -> (MeshRouter, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(4);
        (
            MeshRouter {
                id: id.into(),
                name: format!("name-{id}"),
                conn_id: 1,
                link_address: link.into(),
                link_groups: vec!["default".into()],
                dial_groups: vec!["default".into()],
                client_fingerprint: format!("fp-{id}"),
                cost: 0,
                no_traversal: false,
                outbound: tx,
            },
            rx,
        )
    }

    fn status(peer: &str, dialed: bool, up: bool, latency_us: u64) -> pb::LinkStatus {
        pb::LinkStatus {
            peer_router_id: peer.into(),
            dialed,
            up,
            latency_us,
            reason: if up { String::new() } else { "gone".into() },
        }
    }

    #[test]
    fn peers_follow_connections_and_a_stale_disconnect_changes_nothing() {
        let mesh = Mesh::default();
        let peers = mesh.subscribe_peers();
        let (a, _a) = router("a", "tls://a:1");
        let (mut b, _b) = router("b", "");
        mesh.router_up(a);
        mesh.router_up(b.clone());
        let ids: Vec<_> = peers
            .borrow()
            .peers
            .iter()
            .map(|p| p.router_id.clone())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(peers.borrow().peers[0].client_fingerprint, "fp-a");
        // b reconnects (conn 2) before its old connection's end is seen.
        b.conn_id = 2;
        mesh.router_up(b);
        mesh.router_down("b", 1);
        assert_eq!(peers.borrow().peers.len(), 2);
        mesh.router_down("b", 2);
        assert_eq!(peers.borrow().peers.len(), 1);
    }

    #[test]
    fn a_router_connected_twice_stays_while_either_connection_lives() {
        let mesh = Mesh::default();
        let peers = mesh.subscribe_peers();
        let (a, _a) = router("a", "tls://a:1");
        let (mut b, _b1) = router("b", "");
        mesh.router_up(a);
        mesh.router_up(b.clone());
        mesh.link_status("b", &status("a", true, true, 1_000));
        // b reaches this controller through a second address (conn 2) and keeps both.
        let (tx2, mut rx2) = mpsc::channel(4);
        let mut b2 = b.clone();
        b2.conn_id = 2;
        b2.outbound = tx2;
        mesh.router_up(b2);
        // The newer ends first: the older takes over, b stays a peer with its links.
        mesh.router_down("b", 2);
        assert_eq!(peers.borrow().peers.len(), 2);
        assert_eq!(mesh.links().len(), 1, "b's link reports are kept");
        assert_eq!(mesh.lock().routers["b"].conn_id, 1);
        assert!(rx2.try_recv().is_err());
        // A connection that already ended changes nothing; the last one's end does.
        mesh.router_down("b", 2);
        assert_eq!(peers.borrow().peers.len(), 2);
        mesh.router_down("b", 1);
        assert_eq!(peers.borrow().peers.len(), 1);
        assert!(mesh.links().is_empty());
        assert!(mesh.lock().standby.is_empty());
        // An older connection that ends while a newer one serves leaves no standby.
        b.conn_id = 3;
        mesh.router_up(b.clone());
        b.conn_id = 4;
        mesh.router_up(b);
        mesh.router_down("b", 3);
        assert!(mesh.lock().standby.is_empty());
        assert_eq!(mesh.lock().routers["b"].conn_id, 4);
    }

    #[test]
    fn a_router_opening_many_connections_keeps_a_bounded_standby() {
        let mesh = Mesh::default();
        let (b, _b) = router("b", "");
        // An enrolled but hostile router: 100 control connections, none closed.
        for conn_id in 1..=100 {
            let mut c = b.clone();
            c.conn_id = conn_id;
            mesh.router_up(c);
        }
        assert_eq!(mesh.lock().standby["b"].len(), MAX_STANDBY);
        assert_eq!(mesh.lock().routers["b"].conn_id, 100);
        // The newest standby takes over when the one in use ends.
        mesh.router_down("b", 100);
        assert_eq!(mesh.lock().routers["b"].conn_id, 99);
    }

    #[test]
    fn both_ends_reports_make_one_link_with_its_cost_and_a_down_end_downs_it() {
        let mesh = Mesh::default();
        let (a, _a) = router("a", "");
        let (b, _b) = router("b", "tls://b:1");
        mesh.router_up(a);
        mesh.router_up(b);
        // A failed dial that never came up is not a link.
        mesh.link_status("a", &status("b", true, false, 0));
        assert!(mesh.links().is_empty());
        mesh.link_status("a", &status("b", true, true, 2_400));
        mesh.link_status("b", &status("a", false, true, 3_600));
        let links = mesh.links();
        assert_eq!(links.len(), 1);
        let l = &links[0];
        assert_eq!((l.id.as_str(), l.state.as_str()), ("a->b", "up"));
        assert_eq!(
            (l.source_latency_ms, l.dest_latency_ms),
            (Some(2.4), Some(3.6))
        );
        assert_eq!(l.cost, 1 + 2 + 4);
        let graph = mesh.graph();
        assert_eq!(graph.neighbours("a").count(), 1);
        mesh.link_status("b", &status("a", false, false, 0));
        assert_eq!(mesh.links()[0].state, "down");
        assert_eq!(mesh.graph().neighbours("a").count(), 0);
        // A router that leaves takes its reports along.
        mesh.router_down("b", 1);
        let links = mesh.links();
        assert_eq!(links[0].state, "up", "only a's report is left");
        assert_eq!(
            mesh.graph().neighbours("a").count(),
            0,
            "b is not connected"
        );
    }

    #[test]
    fn only_routers_of_its_path_end_a_circuit_and_only_its_ingress_takes_it_down() {
        let mesh = Mesh::default();
        let (a, mut rx_a) = router("a", "");
        let (b, mut rx_b) = router("b", "tls://b:1");
        mesh.router_up(a);
        mesh.router_up(b);
        let record = |id: u64| CircuitView {
            id: id.to_string(),
            service_id: "s".into(),
            session_id: "s".into(),
            terminator_id: "t".into(),
            path: vec!["a".into(), "b".into()],
            cost: 1,
            created_at: String::new(),
        };
        let closed = |id: u64, take_down: bool| pb::CircuitClosed {
            circuit_id: id,
            reason: "x".into(),
            take_down,
            ended_elsewhere: false,
        };
        mesh.lock().circuits.insert(1, record(1));
        mesh.circuit_closed("mallory", &closed(1, true));
        assert_eq!(mesh.circuits().len(), 1, "a router off the path ended it");
        // The egress may end it but not take the path down.
        mesh.circuit_closed("b", &closed(1, true));
        assert!(mesh.circuits().is_empty());
        assert!(rx_a.try_recv().is_err(), "the egress took the path down");
        // The ingress takes it down: the other routers of the path are told.
        mesh.lock().circuits.insert(2, record(2));
        mesh.circuit_closed("a", &closed(2, true));
        assert!(matches!(rx_b.try_recv(), Ok(Outbound::CircuitClosed(c)) if c.circuit_id == 2));
    }

    #[test]
    fn circuit_ids_are_distinct_and_keep_the_top_bit_clear() {
        let mesh = Mesh::default();
        let a = mesh.new_circuit_id();
        let b = mesh.new_circuit_id();
        assert_ne!(a, b);
        assert_eq!(a >> 63, 0);
    }
}
