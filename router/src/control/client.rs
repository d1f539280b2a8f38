//! The control-channel client: connects to the controllers with mutual TLS, runs
//! [`ControlProtocol`] on each connection, reconnects with exponential backoff, and
//! talks to the rest of the router through a [`ControlEvent`] receiver and a cloneable
//! [`ControlHandle`].
//!
//! A router given several controller addresses (controllers sharing one database)
//! keeps a connection to **every** one of them, so that each controller sees every
//! router of the mesh and can route circuits across all of them (a controller sends
//! routes only on its own connections). One connection is the **primary**
//! ([`super::failover::Election`]): the state the router enforces (StateSync and
//! StateUpdate), the 3rd-party CAs, terminator requests and circuit requests use it.
//! The others are mesh-only (`RouterHello.mesh_only`): they carry the peer lists
//! (merged over all connections), link reports (sent on every connection, and the
//! links up replayed to a connection that comes up), Routes from that controller and
//! their answers, and the reroute requests and circuit ends of the circuits that
//! controller routed (it alone knows them). When the primary's connection ends,
//! another connection that is up is promoted at once by a second hello, which brings a
//! full state sync; the shards keep their circuits and edge connections meanwhile.
//!
//! After every promotion the controller removed the terminators created over the
//! previous primary; the router re-creates what it still hosts after
//! [`ControlEvent::Connected`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};
use weft_wire::control::pb;

use super::failover::{Election, Promotion};
use super::protocol::{ControlProtocol, ProtocolError, ProtocolEvent, RequestId};
use crate::link::backoff::{Backoff, BackoffConfig};

/// How long the TCP connect and TLS handshake to one controller, and then its answer to
/// the hello, may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Circuits ending here whose controller is remembered at most (for their reroute
/// requests and ends); beyond, those of new circuits go to the primary.
const MAX_OWNED: usize = 1 << 20;
/// Routes waiting for this router's answer at most; more are refused at once.
const MAX_ROUTES: usize = 1 << 16;

/// What the control channel tells the router.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlEvent {
    /// The controller accepted the hello; a [`ControlEvent::Sync`] follows.
    Connected,
    /// The connection ended; the client reconnects by itself.
    Disconnected,
    /// Full state (after connecting, or after a resync); replaces everything.
    Sync(pb::StateSync),
    /// Changes of the next revision.
    Update(pb::StateUpdate),
    /// A terminator was created.
    TerminatorCreated {
        /// Id returned by [`ControlHandle::create_terminator`].
        request_id: RequestId,
        /// The stored terminator.
        terminator: pb::Terminator,
    },
    /// The routers this router may link with (replaces the last list).
    Peers(pb::Peers),
    /// The 3rd-party CAs edge clients may chain to (replaces the last list).
    TrustedCas(pb::TrustedCas),
    /// The answer to [`ControlHandle::circuit_request`] (an error with code
    /// `DISCONNECTED` when the connection ended before it).
    CircuitRouted {
        /// Id returned by [`ControlHandle::circuit_request`].
        request_id: RequestId,
        /// The circuit, or why there is none.
        result: Result<pb::CircuitResponse, String>,
    },
    /// The controller asks to install a route; answer with
    /// [`ControlHandle::route_reply`].
    Route {
        /// The id to answer it with (the client's own: Routes come on every control
        /// connection, each numbering its own).
        request_id: RequestId,
        /// The route.
        route: pb::Route,
    },
    /// The controller takes a circuit down.
    CircuitClosed(pb::CircuitClosed),
    /// A terminator request failed (code `DISCONNECTED` when the connection ended
    /// before the reply).
    TerminatorFailed {
        /// Id returned by [`ControlHandle::create_terminator`] or
        /// [`ControlHandle::remove_terminator`].
        request_id: RequestId,
        /// Machine-readable code, e.g. `INVALID_SESSION`.
        code: String,
        /// Reason.
        message: String,
    },
}

/// Errors of the control client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A certificate, key or CA file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A controller address has no valid host name, or there is none.
    #[error("invalid controller address {0:?}")]
    Address(String),
    /// The certificates or key are unusable, or rustls refused them.
    #[error("control channel TLS: {0}")]
    Tls(#[from] weft_tls::TlsError),
    /// No control connection is up (or its hello is not acknowledged yet).
    #[error("not connected to the controller")]
    NotConnected,
    /// The client task has stopped.
    #[error("the control client has stopped")]
    Stopped,
    /// A protocol violation ended the connection.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// How to reach the controllers and who this router is.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Controller control addresses, `host:port` (each address's host is also its TLS
    /// server name). At least one. The router keeps a connection to each; the first is
    /// preferred as the primary ([`super::failover`]).
    pub addresses: Vec<String>,
    /// Root certificates trusted for the controller (PEM, `ca.pem` from enrollment).
    pub ca_pem: String,
    /// The router's control-channel client certificate (PEM, `router.cert`).
    pub cert_pem: String,
    /// Its private key (PEM, `router.key`).
    pub key_pem: String,
    /// The hello to send; `router_id` must be the enrolled router's id.
    pub hello: pb::RouterHello,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Capacity of the event channel (a slow consumer slows the client down; the
    /// controller then resynchronises it).
    pub event_capacity: usize,
    /// Counters the client keeps (shared with the metrics endpoint).
    pub stats: Arc<ControlStats>,
}

/// What the control client counts, for the router's metrics: shared by the client task
/// (which writes) and the metrics endpoint (which reads).
#[derive(Debug, Default)]
pub struct ControlStats {
    failovers: AtomicU64,
    connections: AtomicU64,
    channels_up: AtomicU64,
    connected: Mutex<Option<String>>,
}

impl ControlStats {
    /// Connections that came up on another controller address than the connection
    /// before (`weft_router_control_failovers_total`).
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Control connections whose hello was acknowledged.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Control connections up now, the primary's and the mesh-only ones
    /// (`weft_router_control_channels_up`).
    pub fn channels_up(&self) -> u64 {
        self.channels_up.load(Ordering::Relaxed)
    }

    /// The controller address the primary control connection is up on, if it is.
    pub fn connected(&self) -> Option<String> {
        self.connected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records the controller the channel is up on (`None`: down).
    pub(crate) fn set_connected(&self, address: Option<&str>) {
        *self
            .connected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = address.map(str::to_owned);
    }
}

impl ControlConfig {
    /// Reads `router.cert`, `router.key` and `ca.pem` written by
    /// [`crate::enroll::enroll`] from `dir`, with default backoff (100 ms to 10 s), for
    /// one controller at `address`.
    pub fn from_dir(
        dir: &Path,
        address: impl Into<String>,
        hello: pb::RouterHello,
    ) -> Result<Self, ClientError> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|source| ClientError::Read {
                path: dir.join(name).display().to_string(),
                source,
            })
        };
        Ok(Self {
            addresses: vec![address.into()],
            ca_pem: read(crate::enroll::CA_FILE)?,
            cert_pem: read(crate::enroll::ROUTER_CERT_FILE)?,
            key_pem: read(crate::enroll::ROUTER_KEY_FILE)?,
            hello,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            event_capacity: 256,
            stats: Arc::default(),
        })
    }

    /// The TLS connector, and each address's server name (its host).
    fn tls(&self) -> Result<(tokio_rustls::TlsConnector, Vec<ServerName<'static>>), ClientError> {
        let cfg = weft_tls::client::controller_from_pem(
            self.ca_pem.as_bytes(),
            Some((self.cert_pem.as_bytes(), self.key_pem.as_bytes())),
        )?;
        if self.addresses.is_empty() {
            return Err(ClientError::Address(String::new()));
        }
        let names = self
            .addresses
            .iter()
            .map(|address| {
                let endpoint = weft_identity::endpoint::parse(address)
                    .ok_or_else(|| ClientError::Address(address.clone()))?;
                weft_tls::client::server_name(&endpoint.host)
                    .map_err(|_| ClientError::Address(address.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((tokio_rustls::TlsConnector::from(Arc::new(cfg)), names))
    }
}

/// A request for one connection's task.
enum Command {
    Create(
        pb::CreateTerminatorRequest,
        oneshot::Sender<Result<RequestId, ClientError>>,
    ),
    Remove(String, oneshot::Sender<Result<RequestId, ClientError>>),
    Resync(oneshot::Sender<Result<(), ClientError>>),
    Send(Outgoing, oneshot::Sender<Result<RequestId, ClientError>>),
    Shutdown,
}

impl Command {
    /// Answers the command with `NotConnected` (no connection, or not the one asked).
    fn refuse(self) {
        match self {
            Self::Create(_, reply) | Self::Remove(_, reply) | Self::Send(_, reply) => {
                let _ = reply.send(Err(ClientError::NotConnected));
            }
            Self::Resync(reply) => {
                let _ = reply.send(Err(ClientError::NotConnected));
            }
            Self::Shutdown => {}
        }
    }
}

/// Messages of the mesh sent on one connection.
#[derive(Debug)]
enum Outgoing {
    LinkStatus(pb::LinkStatus),
    CircuitRequest(pb::CircuitRequest),
    RouteReply {
        /// The Route's sequence on its connection.
        seq: RequestId,
        /// The connection it came on (its number from [`Hub::up`]).
        generation: u64,
        circuit_id: u64,
        error: Option<String>,
    },
    CircuitClosed(pb::CircuitClosed),
    RerouteRequest(pb::RerouteRequest),
}

impl Outgoing {
    /// Whether only the primary connection sends it.
    fn primary_only(&self) -> bool {
        matches!(self, Self::CircuitRequest(_))
    }

    /// Queues the message; a request's id (0 for messages without a reply).
    fn queue(
        &self,
        proto: &mut ControlProtocol,
        generation: u64,
    ) -> Result<RequestId, ClientError> {
        let sent = match self {
            Self::LinkStatus(s) => proto.link_status(s).map(|()| 0),
            Self::CircuitRequest(r) => proto.circuit_request(r),
            Self::RouteReply {
                seq,
                generation: of,
                circuit_id,
                error,
            } => {
                if *of != generation {
                    // The connection the Route came on is gone.
                    return Err(ClientError::NotConnected);
                }
                proto
                    .route_reply(*seq, *circuit_id, error.as_deref())
                    .map(|()| 0)
            }
            Self::CircuitClosed(c) => proto.circuit_closed(c).map(|()| 0),
            Self::RerouteRequest(request) => proto.reroute_request(request).map(|()| 0),
        };
        sent.map_err(not_ready)
    }
}

fn not_ready(e: ProtocolError) -> ClientError {
    match e {
        ProtocolError::NotReady => ClientError::NotConnected,
        e => e.into(),
    }
}

/// A Route waiting for this router's answer.
#[derive(Debug, Clone, Copy)]
struct PendingRoute {
    slot: usize,
    generation: u64,
    seq: RequestId,
    /// Whether it sets up a new circuit ending here (its controller was remembered as
    /// the circuit's; forgotten again when the route fails).
    new_end: bool,
}

/// What the connections share: which is primary, the Routes to answer, which
/// controller routed each circuit ending here, the peer lists and the links up.
struct HubState {
    election: Election,
    /// The number the next connection that comes up gets (routes answer on theirs).
    next_generation: u64,
    routes: HashMap<RequestId, PendingRoute>,
    next_route: RequestId,
    /// Circuit id → the address of the controller that routed it.
    owners: HashMap<u64, usize>,
    peers: Vec<Option<pb::Peers>>,
    /// The merged peer list last handed to the router (at first: none).
    merged: Option<pb::Peers>,
    /// Links up, by (peer, dialed): replayed to a connection that comes up.
    links: BTreeMap<(String, bool), pb::LinkStatus>,
    /// A promotion decided for an address's connection by another's task, waiting for
    /// that connection's task (whether it is a failover).
    promoted: Vec<Option<bool>>,
}

struct Hub {
    state: Mutex<HubState>,
    /// Wakes an address's task when its connection was made primary.
    promote: Vec<Notify>,
}

impl Hub {
    fn new(n: usize) -> Self {
        Self {
            state: Mutex::new(HubState {
                election: Election::new(n),
                next_generation: 1,
                routes: HashMap::new(),
                next_route: 1,
                owners: HashMap::new(),
                peers: vec![None; n],
                merged: Some(pb::Peers::default()),
                links: BTreeMap::new(),
                promoted: vec![None; n],
            }),
            promote: (0..n).map(|_| Notify::new()).collect(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Every change is a few map operations, never left half-done.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn primary(&self) -> Option<usize> {
        self.lock().election.primary()
    }

    /// Hands a promotion decided here to the connection it is for: the caller's own
    /// (`own`) is returned for it to act on at once; another's task is woken.
    fn decided(
        &self,
        s: &mut HubState,
        promotion: Option<Promotion>,
        own: Option<usize>,
    ) -> Option<Promotion> {
        let p = promotion?;
        if Some(p.slot) == own {
            return Some(p);
        }
        if let Some(slot) = s.promoted.get_mut(p.slot) {
            *slot = Some(p.failover);
        }
        if let Some(notify) = self.promote.get(p.slot) {
            notify.notify_one();
        }
        None
    }

    /// The promotion decided for `slot`'s connection by another task, if it is still
    /// the primary (whether it is a failover).
    fn take_promotion(&self, slot: usize) -> Option<bool> {
        let mut s = self.lock();
        let failover = s.promoted.get_mut(slot)?.take()?;
        (s.election.primary() == Some(slot)).then_some(failover)
    }

    /// The connection to `slot` came up: its generation, the links to tell it of, and
    /// the promotion this decides (of this connection or, at start, of none).
    fn up(&self, slot: usize) -> (u64, Vec<pb::LinkStatus>, Option<Promotion>) {
        let mut s = self.lock();
        let generation = s.next_generation;
        s.next_generation += 1;
        let links = s.links.values().cloned().collect();
        let promotion = s.election.up(slot);
        let own = self.decided(&mut s, promotion, Some(slot));
        (generation, links, own)
    }

    /// The connection to `slot` ended or an attempt failed: the routes it brought can
    /// no longer be answered; returns the promotion this decides and the peer list if
    /// it changed.
    fn down(&self, slot: usize) -> (Option<pb::Peers>, usize) {
        let mut s = self.lock();
        s.routes.retain(|_, r| r.slot != slot);
        if let Some(p) = s.peers.get_mut(slot) {
            *p = None;
        }
        if let Some(p) = s.promoted.get_mut(slot) {
            *p = None;
        }
        let merged = merge_peers(&mut s);
        let promotion = s.election.down(slot);
        // The connection that ended is never the one promoted.
        let _ = self.decided(&mut s, promotion, None);
        (merged, s.election.up_count())
    }

    fn up_count(&self) -> usize {
        self.lock().election.up_count()
    }

    /// `slot`'s controller sent its peer list: the merged list, if it changed.
    fn set_peers(&self, slot: usize, peers: pb::Peers) -> Option<pb::Peers> {
        let mut s = self.lock();
        if let Some(p) = s.peers.get_mut(slot) {
            *p = Some(peers);
        }
        merge_peers(&mut s)
    }

    /// A Route arrived on `slot`: the id the router answers it with (`None` when too
    /// many wait already).
    fn add_route(
        &self,
        slot: usize,
        generation: u64,
        seq: RequestId,
        route: &pb::Route,
    ) -> Option<RequestId> {
        let mut s = self.lock();
        if s.routes.len() >= MAX_ROUTES {
            return None;
        }
        // A route ending here (egress) or moving an end (reroute): the circuit's
        // reroute requests and end go to this controller.
        let ends_here = route.reroute || route.next_router_id.is_empty();
        let new_end = ends_here && !route.reroute;
        if ends_here && (s.owners.len() < MAX_OWNED || s.owners.contains_key(&route.circuit_id)) {
            s.owners.insert(route.circuit_id, slot);
        }
        let mut id = s.next_route;
        while s.routes.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        s.next_route = id.wrapping_add(1);
        s.routes.insert(
            id,
            PendingRoute {
                slot,
                generation,
                seq,
                new_end,
            },
        );
        Some(id)
    }

    /// The answer to Route `id`: where it goes.
    fn take_route(&self, id: RequestId, circuit_id: u64, failed: bool) -> Option<PendingRoute> {
        let mut s = self.lock();
        let route = s.routes.remove(&id)?;
        if failed && route.new_end && s.owners.get(&circuit_id) == Some(&route.slot) {
            s.owners.remove(&circuit_id);
        }
        Some(route)
    }

    /// `slot`'s controller routed circuit `circuit_id` from here.
    fn own(&self, circuit_id: u64, slot: usize) {
        let mut s = self.lock();
        if s.owners.len() < MAX_OWNED || s.owners.contains_key(&circuit_id) {
            s.owners.insert(circuit_id, slot);
        }
    }

    /// The controller of circuit `circuit_id` (else the primary's); `forget` when the
    /// circuit ended.
    fn owner(&self, circuit_id: u64, forget: bool) -> Option<usize> {
        let mut s = self.lock();
        let owner = if forget {
            s.owners.remove(&circuit_id)
        } else {
            s.owners.get(&circuit_id).copied()
        };
        owner.or_else(|| s.election.primary())
    }

    /// Remembers a link's state for connections that come up later; returns the
    /// connections up now.
    fn link(&self, status: &pb::LinkStatus) -> Vec<usize> {
        let mut s = self.lock();
        let key = (status.peer_router_id.clone(), status.dialed);
        if status.up {
            s.links.insert(key, status.clone());
        } else {
            s.links.remove(&key);
        }
        s.election.up_slots().collect()
    }
}

/// Every connection's peers, once each (the first list naming a router wins), in
/// router id order; `Some` when that differs from what was handed over last.
fn merge_peers(s: &mut HubState) -> Option<pb::Peers> {
    let mut by_id: BTreeMap<&str, &pb::Peer> = BTreeMap::new();
    for list in s.peers.iter().flatten() {
        for peer in &list.peers {
            by_id.entry(peer.router_id.as_str()).or_insert(peer);
        }
    }
    let merged = pb::Peers {
        peers: by_id.into_values().cloned().collect(),
    };
    if s.merged.as_ref() == Some(&merged) {
        return None;
    }
    s.merged = Some(merged.clone());
    Some(merged)
}

/// Cloneable handle for requests; the client stops when every handle is dropped or
/// [`ControlHandle::shutdown`] is called.
#[derive(Clone)]
pub struct ControlHandle {
    hub: Arc<Hub>,
    /// One request channel per controller address.
    slots: Arc<[mpsc::Sender<Command>]>,
}

impl std::fmt::Debug for ControlHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlHandle").finish_non_exhaustive()
    }
}

impl ControlHandle {
    /// Sends `command` to the connection to address `slot` and waits for its answer.
    async fn ask<T>(
        &self,
        slot: Option<usize>,
        command: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Command,
    ) -> Result<T, ClientError> {
        let tx = slot
            .and_then(|s| self.slots.get(s))
            .ok_or(ClientError::NotConnected)?;
        let (reply, answer) = oneshot::channel();
        tx.send(command(reply))
            .await
            .map_err(|_| ClientError::Stopped)?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    /// Sends a CreateTerminatorRequest on the primary connection; returns its request
    /// id, which the [`ControlEvent::TerminatorCreated`] or
    /// [`ControlEvent::TerminatorFailed`] answering it carries.
    pub async fn create_terminator(
        &self,
        req: pb::CreateTerminatorRequest,
    ) -> Result<RequestId, ClientError> {
        self.ask(self.hub.primary(), |reply| Command::Create(req, reply))
            .await
    }

    /// Sends a RemoveTerminatorRequest; only a failure is reported (as
    /// [`ControlEvent::TerminatorFailed`] with the returned id).
    pub async fn remove_terminator(&self, terminator_id: &str) -> Result<RequestId, ClientError> {
        let id = terminator_id.to_string();
        self.ask(self.hub.primary(), |reply| Command::Remove(id, reply))
            .await
    }

    /// Asks the primary's controller for a full state sync (answered by a
    /// [`ControlEvent::Sync`]); used when a consumer saw a revision gap.
    pub async fn request_resync(&self) -> Result<(), ClientError> {
        self.ask(self.hub.primary(), Command::Resync).await
    }

    async fn send(&self, slot: Option<usize>, msg: Outgoing) -> Result<RequestId, ClientError> {
        self.ask(slot, |reply| Command::Send(msg, reply)).await
    }

    /// Tells every controller connected of a link's state (no reply; a controller that
    /// connects later is told of the links up then).
    pub async fn link_status(&self, status: pb::LinkStatus) -> Result<(), ClientError> {
        let slots = self.hub.link(&status);
        let mut told = false;
        for slot in slots {
            told |= self
                .send(Some(slot), Outgoing::LinkStatus(status.clone()))
                .await
                .is_ok();
        }
        if told {
            Ok(())
        } else {
            Err(ClientError::NotConnected)
        }
    }

    /// Asks the primary's controller to route a circuit; returns the request id that
    /// the [`ControlEvent::CircuitRouted`] answering it carries.
    pub async fn circuit_request(&self, req: pb::CircuitRequest) -> Result<RequestId, ClientError> {
        self.send(self.hub.primary(), Outgoing::CircuitRequest(req))
            .await
    }

    /// Answers the Route `request_id` ([`ControlEvent::Route`]) on the connection it
    /// came on.
    pub async fn route_reply(
        &self,
        request_id: RequestId,
        circuit_id: u64,
        error: Option<String>,
    ) -> Result<(), ClientError> {
        let route = self
            .hub
            .take_route(request_id, circuit_id, error.is_some())
            .ok_or(ClientError::NotConnected)?;
        let msg = Outgoing::RouteReply {
            seq: route.seq,
            generation: route.generation,
            circuit_id,
            error,
        };
        self.send(Some(route.slot), msg).await.map(|_| ())
    }

    /// Asks the controller that routed a circuit for a new path (its path broke).
    pub async fn reroute_request(&self, request: pb::RerouteRequest) -> Result<(), ClientError> {
        let slot = self.hub.owner(request.circuit_id, false);
        self.send(slot, Outgoing::RerouteRequest(request))
            .await
            .map(|_| ())
    }

    /// Tells the controller that routed a circuit that it ended here.
    pub async fn circuit_closed(&self, msg: pb::CircuitClosed) -> Result<(), ClientError> {
        let slot = self.hub.owner(msg.circuit_id, true);
        self.send(slot, Outgoing::CircuitClosed(msg))
            .await
            .map(|_| ())
    }

    /// Closes the connections and stops the client.
    pub async fn shutdown(&self) {
        for tx in self.slots.iter() {
            let _ = tx.send(Command::Shutdown).await;
        }
    }
}

/// What every connection's task shares.
struct Shared {
    config: ControlConfig,
    connector: tokio_rustls::TlsConnector,
    hub: Arc<Hub>,
    events: mpsc::Sender<ControlEvent>,
}

/// Starts the client: a task per controller address. Returns the request handle, the
/// event receiver and a task that ends when all of them did (after
/// [`ControlHandle::shutdown`], when every handle is dropped, or when the event
/// receiver is dropped).
pub fn spawn(
    config: ControlConfig,
) -> Result<
    (
        ControlHandle,
        mpsc::Receiver<ControlEvent>,
        tokio::task::JoinHandle<()>,
    ),
    ClientError,
> {
    let (connector, names) = config.tls()?;
    let (ev_tx, ev_rx) = mpsc::channel(config.event_capacity.max(1));
    let hub = Arc::new(Hub::new(names.len()));
    let shared = Arc::new(Shared {
        config,
        connector,
        hub: hub.clone(),
        events: ev_tx,
    });
    let mut senders = Vec::with_capacity(names.len());
    let mut tasks = Vec::with_capacity(names.len());
    for (slot, name) in names.into_iter().enumerate() {
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        senders.push(cmd_tx);
        tasks.push(tokio::spawn(run_slot(shared.clone(), slot, name, cmd_rx)));
    }
    let task = tokio::spawn(async move {
        for task in tasks {
            let _ = task.await;
        }
    });
    let handle = ControlHandle {
        hub,
        slots: senders.into(),
    };
    Ok((handle, ev_rx, task))
}

/// Why one connection ended.
enum End {
    /// Stop the client.
    Stop,
    /// Reconnect.
    Reconnect,
}

/// Keeps a connection to address `slot` up: connects, runs it, and after it ended or
/// failed waits out the backoff (refusing requests meanwhile) and connects again.
async fn run_slot(
    shared: Arc<Shared>,
    slot: usize,
    name: ServerName<'static>,
    mut cmds: mpsc::Receiver<Command>,
) {
    let address = shared.config.addresses[slot].clone();
    let mut backoff = Backoff::new(BackoffConfig {
        min: shared.config.backoff_min,
        max: shared.config.backoff_max.max(shared.config.backoff_min),
        factor: 2.0,
        jitter: 0.2,
    });
    let mut next_seq: i32 = 1;
    loop {
        let connected = async {
            let tcp = TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            shared.connector.connect(name.clone(), tcp).await
        };
        let connected = async {
            match tokio::time::timeout(CONNECT_TIMEOUT, connected).await {
                Ok(r) => r,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect and TLS handshake timed out",
                )),
            }
        };
        let end = match connected.await {
            Ok(stream) => {
                let (end, was_up) =
                    connection(stream, &shared, slot, &address, &mut next_seq, &mut cmds).await;
                if was_up {
                    backoff.reset();
                }
                end
            }
            Err(e) => {
                tracing::debug!(error = %e, controller = %address, "control connect failed");
                End::Reconnect
            }
        };
        let (peers, up) = shared.hub.down(slot);
        shared
            .config
            .stats
            .channels_up
            .store(up as u64, Ordering::Relaxed);
        if let Some(peers) = peers {
            if shared
                .events
                .send(ControlEvent::Peers(peers))
                .await
                .is_err()
            {
                return;
            }
        }
        if let End::Stop = end {
            return;
        }
        let delay = backoff.next_delay(jitter_draw());
        if up == 0 && slot == 0 {
            tracing::info!(controller = %address, retry_in = ?delay, "no controller reachable");
        }
        // Wait out the backoff, refusing requests meanwhile.
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                cmd = cmds.recv() => match cmd {
                    None | Some(Command::Shutdown) => return,
                    Some(cmd) => cmd.refuse(),
                },
            }
        }
    }
}

/// A number in `[0, 1)` for the backoff's jitter (no RNG dependency: a randomly
/// keyed hash of the time).
fn jitter_draw() -> f64 {
    use std::hash::BuildHasher as _;
    let bits = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// One connection's state in its task.
struct Conn<'a> {
    shared: &'a Shared,
    slot: usize,
    address: &'a str,
    proto: ControlProtocol,
    /// Set when the hello was acknowledged.
    generation: Option<u64>,
    /// Whether this is the router's primary connection.
    primary: bool,
}

impl Conn<'_> {
    /// Makes this connection the primary (asking for the state if it was mesh-only);
    /// the event to hand over.
    fn become_primary(&mut self, failover: bool) -> Result<ControlEvent, ProtocolError> {
        self.proto.promote()?;
        self.primary = true;
        let stats = &self.shared.config.stats;
        stats.set_connected(Some(self.address));
        if failover {
            stats.failovers.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                controller = %self.address,
                index = self.slot,
                "control channel failed over to another controller"
            );
        } else {
            tracing::info!(controller = %self.address, "control channel up");
        }
        Ok(ControlEvent::Connected)
    }

    /// Turns a protocol event into what the router hears, if anything.
    fn event(&mut self, ev: ProtocolEvent) -> Result<Option<ControlEvent>, ProtocolError> {
        let hub = &self.shared.hub;
        Ok(match ev {
            ProtocolEvent::HelloAck(_) => {
                let (generation, links, promotion) = hub.up(self.slot);
                self.generation = Some(generation);
                let stats = &self.shared.config.stats;
                stats.connections.fetch_add(1, Ordering::Relaxed);
                stats
                    .channels_up
                    .store(hub.up_count() as u64, Ordering::Relaxed);
                for status in &links {
                    self.proto.link_status(status)?;
                }
                match promotion {
                    Some(p) => Some(self.become_primary(p.failover)?),
                    None => {
                        tracing::info!(controller = %self.address, "mesh-only control connection up");
                        None
                    }
                }
            }
            ProtocolEvent::Peers(peers) => hub.set_peers(self.slot, peers).map(ControlEvent::Peers),
            ProtocolEvent::Route { request_id, route } => {
                let generation = self.generation.unwrap_or_default();
                match hub.add_route(self.slot, generation, request_id, &route) {
                    Some(id) => Some(ControlEvent::Route {
                        request_id: id,
                        route,
                    }),
                    None => {
                        self.proto.route_reply(
                            request_id,
                            route.circuit_id,
                            Some("the router has too many routes to answer"),
                        )?;
                        None
                    }
                }
            }
            ProtocolEvent::CircuitClosed(c) => Some(ControlEvent::CircuitClosed(c)),
            ProtocolEvent::ResyncRequested { held, got } => {
                tracing::warn!(held, got, "revision gap; resynchronising");
                None
            }
            // The rest is the primary's business; a mesh-only connection ignores it (an
            // older controller may send it the state anyway).
            _ if !self.primary => None,
            ProtocolEvent::Sync(s) => Some(ControlEvent::Sync(s)),
            ProtocolEvent::Update(u) => Some(ControlEvent::Update(u)),
            ProtocolEvent::TrustedCas(cas) => Some(ControlEvent::TrustedCas(cas)),
            ProtocolEvent::TerminatorCreated {
                request_id,
                terminator,
            } => Some(ControlEvent::TerminatorCreated {
                request_id,
                terminator,
            }),
            ProtocolEvent::TerminatorFailed {
                request_id,
                code,
                message,
            } => Some(ControlEvent::TerminatorFailed {
                request_id,
                code,
                message,
            }),
            ProtocolEvent::CircuitRouted { request_id, result } => {
                if let Ok(r) = &result {
                    hub.own(r.circuit_id, self.slot);
                }
                Some(ControlEvent::CircuitRouted { request_id, result })
            }
        })
    }

    /// Carries out a request from the router.
    fn command(&mut self, cmd: Command) {
        let ready = self.generation.is_some();
        match cmd {
            Command::Create(req, reply) if self.primary => {
                let _ = reply.send(self.proto.create_terminator(&req).map_err(not_ready));
            }
            Command::Remove(id, reply) if self.primary => {
                let _ = reply.send(self.proto.remove_terminator(&id).map_err(not_ready));
            }
            Command::Resync(reply) if self.primary => {
                let _ = reply.send(self.proto.request_resync().map_err(not_ready));
            }
            Command::Send(msg, reply) if ready && (self.primary || !msg.primary_only()) => {
                let generation = self.generation.unwrap_or_default();
                let _ = reply.send(msg.queue(&mut self.proto, generation));
            }
            cmd => cmd.refuse(),
        }
    }
}

/// Runs one connection; returns how it ended and whether the hello was acknowledged.
async fn connection<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: S,
    shared: &Shared,
    slot: usize,
    address: &str,
    next_seq: &mut i32,
    cmds: &mut mpsc::Receiver<Command>,
) -> (End, bool) {
    let config = &shared.config;
    // With one controller there is nothing to choose: the connection is full at once.
    let hello = pb::RouterHello {
        mesh_only: config.addresses.len() > 1,
        ..config.hello.clone()
    };
    let proto = match ControlProtocol::new(hello, *next_seq) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the hello");
            return (End::Stop, false);
        }
    };
    let mut conn = Conn {
        shared,
        slot,
        address,
        proto,
        generation: None,
        primary: false,
    };
    let events = &shared.events;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // The hello must be acknowledged in time, or the attempt counts as failed.
    let hello_deadline = tokio::time::sleep(CONNECT_TIMEOUT);
    tokio::pin!(hello_deadline);
    let end = 'conn: loop {
        while let Some(ev) = conn.proto.poll_event() {
            match conn.event(ev) {
                Ok(Some(ev)) => {
                    if events.send(ev).await.is_err() {
                        break 'conn End::Stop;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, controller = %address, "control protocol error");
                    break 'conn End::Reconnect;
                }
            }
        }
        // What the hello, the events and the requests queued.
        *next_seq = conn.proto.next_sequence();
        if let Some(out) = conn.proto.poll_transmit() {
            if let Err(e) = wr.write_all(&out).await {
                tracing::info!(error = %e, controller = %address, "control write failed");
                break 'conn End::Reconnect;
            }
        }
        buf.reserve(16 * 1024);
        let up = conn.generation.is_some();
        let promote = shared.hub.promote.get(slot);
        tokio::select! {
            () = &mut hello_deadline, if !up => {
                tracing::info!(controller = %address, "the controller did not answer the hello in time");
                break 'conn End::Reconnect;
            }
            () = async {
                match promote {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            }, if up && !conn.primary => {
                if let Some(failover) = shared.hub.take_promotion(slot) {
                    match conn.become_primary(failover) {
                        Ok(ev) => {
                            if events.send(ev).await.is_err() {
                                break 'conn End::Stop;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, controller = %address, "promotion failed");
                            break 'conn End::Reconnect;
                        }
                    }
                }
            }
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break 'conn End::Reconnect,
                Ok(_) => {
                    if let Err(e) = conn.proto.handle_bytes(&buf) {
                        tracing::warn!(error = %e, controller = %address, "control protocol error");
                        break 'conn End::Reconnect;
                    }
                    buf.clear();
                }
                Err(e) => {
                    tracing::info!(error = %e, controller = %address, "control read failed");
                    break 'conn End::Reconnect;
                }
            },
            cmd = cmds.recv() => match cmd {
                None | Some(Command::Shutdown) => break 'conn End::Stop,
                Some(cmd) => conn.command(cmd),
            },
        }
    };
    *next_seq = conn.proto.next_sequence();
    let up = conn.generation.is_some();
    if conn.primary {
        config.stats.set_connected(None);
        tracing::info!(controller = %address, "control channel to the controller lost");
        // Requests that will never be answered on this connection.
        let pending: Vec<RequestId> = conn.proto.pending_creates().collect();
        for request_id in pending {
            let _ = events
                .send(ControlEvent::TerminatorFailed {
                    request_id,
                    code: "DISCONNECTED".into(),
                    message: "the control connection closed before the reply".into(),
                })
                .await;
        }
        let pending: Vec<RequestId> = conn.proto.pending_circuits().collect();
        for request_id in pending {
            let _ = events
                .send(ControlEvent::CircuitRouted {
                    request_id,
                    result: Err(
                        "DISCONNECTED: the control connection closed before the reply".into(),
                    ),
                })
                .await;
        }
        let _ = events.send(ControlEvent::Disconnected).await;
    } else if up {
        tracing::info!(controller = %address, "mesh-only control connection lost");
    }
    let _ = wr.shutdown().await;
    (end, up)
}
