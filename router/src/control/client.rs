//! The control-channel client task: connects to a controller with mutual TLS, runs
//! [`ControlProtocol`], reconnects with exponential backoff, and talks to the rest of
//! the router through a [`ControlEvent`] receiver and a cloneable [`ControlHandle`].
//!
//! With several controller addresses (controllers sharing one database) the client
//! connects to one at a time and, when a connection fails or is lost, moves on to the
//! next, round robin ([`super::failover::Rotation`]: the backoff is waited only after a
//! whole round failed). Every new connection, to the same controller or another, starts
//! with the hello and a full state sync, exactly as a reconnect does; the shards keep
//! their circuits and edge connections meanwhile.
//!
//! After every (re)connection the controller removed the terminators created over the
//! previous connection; the router re-creates what it still hosts after
//! [`ControlEvent::Connected`].

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use weft_wire::control::pb;

use super::failover::{Next, Rotation};

/// How long the TCP connect and TLS handshake to one controller, and then its answer to
/// the hello, may take before the client gives up on that address and moves on.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
use super::protocol::{ControlProtocol, ProtocolError, ProtocolEvent, RequestId};

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
        /// The Route's request id.
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
    /// Controller control addresses, `host:port`, tried in this order and then round
    /// robin (each address's host is also its TLS server name). At least one.
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

    /// The controller address the control channel is up on, if it is.
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

/// Messages of the mesh sent on the current connection.
#[derive(Debug)]
enum Outgoing {
    LinkStatus(pb::LinkStatus),
    CircuitRequest(pb::CircuitRequest),
    RouteReply {
        request_id: RequestId,
        circuit_id: u64,
        error: Option<String>,
    },
    CircuitClosed(pb::CircuitClosed),
    RerouteRequest(pb::RerouteRequest),
}

impl Outgoing {
    /// Queues the message; a request's id (0 for messages without a reply).
    fn queue(&self, proto: &mut ControlProtocol) -> Result<RequestId, ClientError> {
        let sent = match self {
            Self::LinkStatus(s) => proto.link_status(s).map(|()| 0),
            Self::CircuitRequest(r) => proto.circuit_request(r),
            Self::RouteReply {
                request_id,
                circuit_id,
                error,
            } => proto
                .route_reply(*request_id, *circuit_id, error.as_deref())
                .map(|()| 0),
            Self::CircuitClosed(c) => proto.circuit_closed(c).map(|()| 0),
            Self::RerouteRequest(request) => proto.reroute_request(request).map(|()| 0),
        };
        sent.map_err(|e| match e {
            ProtocolError::NotReady => ClientError::NotConnected,
            e => e.into(),
        })
    }
}

/// Cloneable handle for requests; the client stops when every handle is dropped or
/// [`ControlHandle::shutdown`] is called.
#[derive(Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for ControlHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlHandle").finish_non_exhaustive()
    }
}

impl ControlHandle {
    /// Sends a CreateTerminatorRequest on the current connection; returns its request
    /// id, which the [`ControlEvent::TerminatorCreated`] or
    /// [`ControlEvent::TerminatorFailed`] answering it carries.
    pub async fn create_terminator(
        &self,
        req: pb::CreateTerminatorRequest,
    ) -> Result<RequestId, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Create(req, tx))
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    /// Sends a RemoveTerminatorRequest; only a failure is reported (as
    /// [`ControlEvent::TerminatorFailed`] with the returned id).
    pub async fn remove_terminator(&self, terminator_id: &str) -> Result<RequestId, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Remove(terminator_id.to_string(), tx))
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    /// Asks the controller for a full state sync on the current connection (answered by
    /// a [`ControlEvent::Sync`]); used when a consumer saw a revision gap.
    pub async fn request_resync(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Resync(tx))
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    async fn send(&self, msg: Outgoing) -> Result<RequestId, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Send(msg, tx))
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    /// Tells the controller of a link's state (no reply; lost when not connected: the
    /// links are reported again on their next change).
    pub async fn link_status(&self, status: pb::LinkStatus) -> Result<(), ClientError> {
        self.send(Outgoing::LinkStatus(status)).await.map(|_| ())
    }

    /// Asks the controller to route a circuit; returns the request id that the
    /// [`ControlEvent::CircuitRouted`] answering it carries.
    pub async fn circuit_request(&self, req: pb::CircuitRequest) -> Result<RequestId, ClientError> {
        self.send(Outgoing::CircuitRequest(req)).await
    }

    /// Answers the Route `request_id` ([`ControlEvent::Route`]).
    pub async fn route_reply(
        &self,
        request_id: RequestId,
        circuit_id: u64,
        error: Option<String>,
    ) -> Result<(), ClientError> {
        self.send(Outgoing::RouteReply {
            request_id,
            circuit_id,
            error,
        })
        .await
        .map(|_| ())
    }

    /// Asks the controller for a new path for a circuit whose path broke.
    pub async fn reroute_request(&self, request: pb::RerouteRequest) -> Result<(), ClientError> {
        self.send(Outgoing::RerouteRequest(request))
            .await
            .map(|_| ())
    }

    /// Tells the controller a circuit across routers ended here.
    pub async fn circuit_closed(&self, msg: pb::CircuitClosed) -> Result<(), ClientError> {
        self.send(Outgoing::CircuitClosed(msg)).await.map(|_| ())
    }

    /// Closes the connection and stops the client.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}

/// Starts the client task. Returns the request handle, the event receiver and the
/// task (which ends after [`ControlHandle::shutdown`], when every handle is dropped, or
/// when the event receiver is dropped).
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
    let tls = config.tls()?;
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (ev_tx, ev_rx) = mpsc::channel(config.event_capacity.max(1));
    let task = tokio::spawn(run(config, tls, cmd_rx, ev_tx));
    Ok((ControlHandle { tx: cmd_tx }, ev_rx, task))
}

/// Why one connection ended.
enum End {
    /// Stop the client.
    Stop,
    /// Reconnect.
    Reconnect,
}

async fn run(
    config: ControlConfig,
    (connector, names): (tokio_rustls::TlsConnector, Vec<ServerName<'static>>),
    mut cmds: mpsc::Receiver<Command>,
    events: mpsc::Sender<ControlEvent>,
) {
    let mut rotation = Rotation::new(
        config.addresses.clone(),
        config.backoff_min,
        config.backoff_max,
    );
    let mut next_seq: i32 = 1;
    loop {
        let address = rotation.address().to_owned();
        let Some(name) = names.get(rotation.index()) else {
            // `names` has one entry per address (`ControlConfig::tls`).
            return;
        };
        let connected = async {
            let tcp = TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            connector.connect(name.clone(), tcp).await
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
        match connected.await {
            Ok(stream) => {
                let (end, was_up) = connection(
                    stream,
                    &config,
                    &mut rotation,
                    &mut next_seq,
                    &mut cmds,
                    &events,
                )
                .await;
                if was_up {
                    config.stats.set_connected(None);
                    tracing::info!(controller = %address, "control channel to the controller lost");
                    if events.send(ControlEvent::Disconnected).await.is_err() {
                        return;
                    }
                }
                if let End::Stop = end {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, controller = %address, "control connect failed");
            }
        }
        let delay = match rotation.ended(jitter_draw()) {
            Next::Now => continue,
            Next::After(delay) => delay,
        };
        if rotation.len() > 1 {
            tracing::info!(
                controllers = rotation.len(),
                retry_in = ?delay,
                "no controller reachable; trying them all again after the backoff"
            );
        }
        // Wait out the backoff, refusing requests meanwhile.
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                cmd = cmds.recv() => match cmd {
                    None | Some(Command::Shutdown) => return,
                    Some(Command::Create(_, reply) | Command::Remove(_, reply)) => {
                        let _ = reply.send(Err(ClientError::NotConnected));
                    }
                    Some(Command::Resync(reply)) => {
                        let _ = reply.send(Err(ClientError::NotConnected));
                    }
                    Some(Command::Send(_, reply)) => {
                        let _ = reply.send(Err(ClientError::NotConnected));
                    }
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

/// Runs one connection; returns how it ended and whether the hello was acknowledged.
async fn connection<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: S,
    config: &ControlConfig,
    rotation: &mut Rotation,
    next_seq: &mut i32,
    cmds: &mut mpsc::Receiver<Command>,
    events: &mpsc::Sender<ControlEvent>,
) -> (End, bool) {
    let mut proto = match ControlProtocol::new(config.hello.clone(), *next_seq) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the hello");
            return (End::Stop, false);
        }
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut up = false;
    // The hello must be acknowledged in time, or the next controller is tried.
    let hello_deadline = tokio::time::sleep(CONNECT_TIMEOUT);
    tokio::pin!(hello_deadline);
    let end = 'conn: loop {
        *next_seq = proto.next_sequence();
        if let Some(out) = proto.poll_transmit() {
            if let Err(e) = wr.write_all(&out).await {
                tracing::info!(error = %e, "control write failed");
                break 'conn End::Reconnect;
            }
        }
        while let Some(ev) = proto.poll_event() {
            let ev = match ev {
                ProtocolEvent::HelloAck(_) => {
                    up = true;
                    let address = rotation.address().to_owned();
                    config.stats.connections.fetch_add(1, Ordering::Relaxed);
                    config.stats.set_connected(Some(&address));
                    if rotation.up() {
                        config.stats.failovers.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            controller = %address,
                            index = rotation.index(),
                            "control channel failed over to another controller"
                        );
                    } else {
                        tracing::info!(controller = %address, "control channel up");
                    }
                    ControlEvent::Connected
                }
                ProtocolEvent::Sync(s) => ControlEvent::Sync(s),
                ProtocolEvent::Update(u) => ControlEvent::Update(u),
                ProtocolEvent::TerminatorCreated {
                    request_id,
                    terminator,
                } => ControlEvent::TerminatorCreated {
                    request_id,
                    terminator,
                },
                ProtocolEvent::TerminatorFailed {
                    request_id,
                    code,
                    message,
                } => ControlEvent::TerminatorFailed {
                    request_id,
                    code,
                    message,
                },
                ProtocolEvent::Peers(peers) => ControlEvent::Peers(peers),
                ProtocolEvent::TrustedCas(cas) => ControlEvent::TrustedCas(cas),
                ProtocolEvent::CircuitRouted { request_id, result } => {
                    ControlEvent::CircuitRouted { request_id, result }
                }
                ProtocolEvent::Route { request_id, route } => {
                    ControlEvent::Route { request_id, route }
                }
                ProtocolEvent::CircuitClosed(c) => ControlEvent::CircuitClosed(c),
                ProtocolEvent::ResyncRequested { held, got } => {
                    tracing::warn!(held, got, "revision gap; resynchronising");
                    continue;
                }
            };
            if events.send(ev).await.is_err() {
                break 'conn End::Stop;
            }
        }
        buf.reserve(16 * 1024);
        tokio::select! {
            () = &mut hello_deadline, if !up => {
                tracing::info!(controller = %rotation.address(), "the controller did not answer the hello in time");
                break 'conn End::Reconnect;
            }
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break 'conn End::Reconnect,
                Ok(_) => {
                    if let Err(e) = proto.handle_bytes(&buf) {
                        tracing::warn!(error = %e, "control protocol error");
                        break 'conn End::Reconnect;
                    }
                    buf.clear();
                }
                Err(e) => {
                    tracing::info!(error = %e, "control read failed");
                    break 'conn End::Reconnect;
                }
            },
            cmd = cmds.recv() => match cmd {
                None | Some(Command::Shutdown) => break 'conn End::Stop,
                Some(Command::Create(req, reply)) => {
                    let _ = reply.send(proto.create_terminator(&req).map_err(|e| match e {
                        ProtocolError::NotReady => ClientError::NotConnected,
                        e => e.into(),
                    }));
                }
                Some(Command::Resync(reply)) => {
                    let _ = reply.send(proto.request_resync().map_err(|e| match e {
                        ProtocolError::NotReady => ClientError::NotConnected,
                        e => e.into(),
                    }));
                }
                Some(Command::Send(msg, reply)) => {
                    let _ = reply.send(msg.queue(&mut proto));
                }
                Some(Command::Remove(id, reply)) => {
                    let _ = reply.send(proto.remove_terminator(&id).map_err(|e| match e {
                        ProtocolError::NotReady => ClientError::NotConnected,
                        e => e.into(),
                    }));
                }
            },
        }
    };
    *next_seq = proto.next_sequence();
    // Requests that will never be answered on this connection.
    let pending: Vec<RequestId> = proto.pending_creates().collect();
    for request_id in pending {
        let _ = events
            .send(ControlEvent::TerminatorFailed {
                request_id,
                code: "DISCONNECTED".into(),
                message: "the control connection closed before the reply".into(),
            })
            .await;
    }
    let pending: Vec<RequestId> = proto.pending_circuits().collect();
    for request_id in pending {
        let _ = events
            .send(ControlEvent::CircuitRouted {
                request_id,
                result: Err("DISCONNECTED: the control connection closed before the reply".into()),
            })
            .await;
    }
    let _ = wr.shutdown().await;
    (end, up)
}
