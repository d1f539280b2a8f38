//! A whole router: the control-channel client, the shard runtime and the bridge task
//! between them.
//!
//! The bridge maps [`ControlEvent`]s to [`ShardCommand`]s (state syncs and updates to
//! every shard, terminator answers to the shard that asked) and [`ShardRequest`]s to
//! control requests (create and remove terminators, resync after a revision gap). It
//! remembers which connection and listener each create request belongs to, fails the
//! ones still waiting when the control connection drops, and registers the terminators
//! it hosts again after a reconnect (the controller drops a router's terminators when
//! its control connection ends).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use weft_wire::control::pb;

use crate::config::{ConfigError, RouterConfig};
use crate::control::{self, ClientError, ControlConfig, ControlEvent, ControlHandle, RequestId};
use crate::edge::CircuitId;
use crate::enroll;
use crate::forward::{ConnKey, ControlRequest};
use crate::link::backoff::BackoffConfig;
use crate::link::session::LinkConfig;
use crate::runtime::{IoBackend, LinkSettings, Router, ShardCommand, ShardRequest, StartError};

/// Why a router could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration or the edge certificate is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A control-channel file (router certificate, key, CA) could not be read.
    #[error("cannot read {path}: {source} (run `weft-router enroll` first)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The router certificate names no router id.
    #[error("{0}: no common name (the router id) in the router certificate")]
    RouterId(PathBuf),
    /// The control client could not be configured.
    #[error("control channel: {0}")]
    Control(#[from] ClientError),
    /// The shard runtime could not start.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// The control-channel configuration `config` implies: `router.cert`, `router.key`
/// (written by [`enroll::enroll`] next to the edge certificate) and the CA bundle
/// (`ca`, or `ca.pem` next to the edge certificate); the router id is the common name
/// of `router.cert`; the hello advertises `tls://advertised_host:edge_port`.
pub fn control_config(config: &RouterConfig, edge_port: u16) -> Result<ControlConfig, NodeError> {
    let dir = config.cert_dir();
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).map_err(|source| NodeError::Read { path, source })
    };
    let cert_path = dir.join(enroll::ROUTER_CERT_FILE);
    let cert_pem = read(cert_path.clone())?;
    let key_pem = read(dir.join(enroll::ROUTER_KEY_FILE))?;
    let ca_pem = read(config.ca_path())?;
    let router_id = router_id(&cert_pem).ok_or(NodeError::RouterId(cert_path))?;
    Ok(ControlConfig {
        addresses: config.controller_addresses().to_vec(),
        ca_pem,
        cert_pem,
        key_pem,
        hello: pb::RouterHello {
            router_id,
            version: env!("CARGO_PKG_VERSION").to_string(),
            edge_listeners: vec![format!("tls://{}:{edge_port}", config.edge.advertised_host)],
            ..Default::default()
        },
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(10),
        event_capacity: 256,
        stats: Arc::default(),
    })
}

/// The link address other routers dial: `advertise` when it names a port (`host:port`,
/// an IPv6 host in brackets), else `advertise` with the listener's port.
fn link_address(advertise: &str, port: u16) -> String {
    let has_port = advertise.rsplit_once(':').is_some_and(|(host, p)| {
        !host.is_empty() && !host.ends_with(':') && p.parse::<u16>().is_ok()
    });
    if has_port && (!advertise.contains('[') || advertise.contains("]:")) {
        format!("tls://{advertise}")
    } else {
        format!("tls://{advertise}:{port}")
    }
}

/// The common name of the first certificate in `pem`.
fn router_id(pem: &str) -> Option<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// A running router: shards, control client and bridge.
#[derive(Debug)]
pub struct Node {
    router: Router,
    control: ControlHandle,
    commands: mpsc::UnboundedSender<ShardCommand>,
    control_task: tokio::task::JoinHandle<()>,
    bridge: tokio::task::JoinHandle<()>,
    grace: Duration,
}

impl Node {
    /// Starts the shards on the configured edge address, the control client toward
    /// the configured controllers, and the bridge. Must be called inside a tokio runtime (the
    /// control client and the bridge are tasks on it).
    pub fn start(config: &RouterConfig) -> Result<Self, NodeError> {
        let mut settings = config.settings()?;
        // Read the control-channel files before binding anything; the port is fixed
        // below once the listener has chosen it.
        let mut control_config = control_config(config, config.edge.listen.port())?;
        settings.forward.router_id = control_config.hello.router_id.clone();
        settings.control_stats = Some(Arc::clone(&control_config.stats));
        if let Some(link) = &config.link {
            settings.link = Some(LinkSettings {
                router_id: control_config.hello.router_id.clone(),
                listen: link.listen,
                groups: link.groups.clone(),
                dial_groups: link.dial_groups.clone(),
                connections: link.connections,
                ca_pem: control_config.ca_pem.clone(),
                cert_pem: control_config.cert_pem.clone(),
                key_pem: control_config.key_pem.clone(),
                session: LinkConfig::default(),
                backoff: BackoffConfig {
                    min: Duration::from_millis(link.backoff_min_ms),
                    max: Duration::from_millis(link.backoff_max_ms),
                    ..BackoffConfig::default()
                },
                handshake_timeout: settings.handshake_timeout,
            });
            settings.forward.mesh_shard = Some(0);
            control_config.hello.link_groups = link.groups.clone();
            control_config.hello.dial_groups = link.dial_groups.clone();
        }
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let edge_tls = settings.tls.clone();
        let router = Router::start(settings, commands_rx, requests_tx)?;
        control_config.hello.edge_listeners = vec![format!(
            "tls://{}:{}",
            config.edge.advertised_host,
            router.local_addr().port()
        )];
        if let (Some(link), Some(addr)) = (&config.link, router.link_addr()) {
            control_config.hello.link_listener = link_address(
                link.advertise
                    .as_deref()
                    .unwrap_or(&config.edge.advertised_host),
                addr.port(),
            );
        }
        let (control, events, control_task) = match control::spawn(control_config) {
            Ok(parts) => parts,
            Err(e) => {
                // Error path only: the shards stop at once (no grace), so the join is
                // short even though it blocks.
                stop_router(&commands, Duration::ZERO);
                router.join();
                return Err(e.into());
            }
        };
        let bridge = tokio::spawn(bridge(
            control.clone(),
            events,
            requests,
            commands.clone(),
            edge_tls,
        ));
        Ok(Self {
            router,
            control,
            commands,
            control_task,
            bridge,
            grace: config.shutdown_grace(),
        })
    }

    /// The edge listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.router.local_addr()
    }

    /// The metrics listener's address, when configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.router.metrics_addr()
    }

    /// The link listener's address, when configured.
    pub fn link_addr(&self) -> Option<SocketAddr> {
        self.router.link_addr()
    }

    /// The I/O backend the shards run on.
    pub fn backend(&self) -> IoBackend {
        self.router.backend()
    }

    /// Stops accepting, lets circuits finish for the configured grace, closes the
    /// control channel and waits until everything has stopped.
    pub async fn shutdown(self) {
        let grace = self.grace;
        self.shutdown_with(grace).await;
    }

    /// Like [`Node::shutdown`] with an explicit grace period.
    pub async fn shutdown_with(self, grace: Duration) {
        stop_router(&self.commands, grace);
        drop(self.commands);
        let router = self.router;
        if tokio::task::spawn_blocking(move || router.join())
            .await
            .is_err()
        {
            tracing::error!("joining the shards failed");
        }
        self.control.shutdown().await;
        drop(self.control);
        let _ = self.control_task.await;
        let _ = self.bridge.await;
    }
}

fn stop_router(commands: &mpsc::UnboundedSender<ShardCommand>, grace: Duration) {
    let _ = commands.send(ShardCommand::Shutdown { grace });
}

/// Runs a router from `config` until `shutdown` completes, then shuts it down
/// gracefully.
pub async fn run(
    config: &RouterConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let node = Node::start(config)?;
    tracing::info!(
        edge = %node.local_addr(),
        controllers = %config.controller_addresses().join(", "),
        "router running"
    );
    shutdown.await;
    tracing::info!(grace = ?config.shutdown_grace(), "shutting down");
    node.shutdown().await;
    Ok(())
}

/// A terminator request and whose it is.
type Registration = (ConnKey, u32, pb::CreateTerminatorRequest);

/// A create request waiting for its answer.
struct Pending {
    registration: Registration,
    /// For a registration repeated after a reconnect: the terminator id it had. A
    /// connection loss then keeps it for the next reconnect instead of failing it.
    previous: Option<String>,
}

/// The bridge's state: create requests waiting for the controller's answer, and the
/// terminators registered (registered again after a reconnect: the controller drops a
/// router's terminators when its control connection ends).
struct Bridge {
    control: ControlHandle,
    commands: mpsc::UnboundedSender<ShardCommand>,
    pending: HashMap<RequestId, Pending>,
    hosted: HashMap<String, Registration>,
    /// Circuit requests waiting for the controller's answer, with their circuit.
    circuits: HashMap<RequestId, CircuitId>,
    /// The edge listener's trust, widened by the controller's 3rd-party CAs.
    edge_tls: crate::tls::EdgeTls,
}

impl Bridge {
    fn send(&self, command: ShardCommand) {
        // The runtime has stopped when this fails; the bridge ends with it.
        let _ = self.commands.send(command);
    }

    /// A create request that will not succeed: a first registration fails to its
    /// shard (the SDK hears of it); a repeated one waits for the next reconnect
    /// unless the controller refused it.
    fn lost(&mut self, pending: Pending, reason: String, refused: bool) {
        let (conn, listener, request) = pending.registration;
        match pending.previous {
            Some(previous) if !refused => {
                self.hosted.insert(previous, (conn, listener, request));
            }
            _ => self.send(ShardCommand::TerminatorFailed {
                conn,
                listener,
                reason,
            }),
        }
    }

    /// Handles one event; true when the connection came (back) up and the hosted
    /// terminators must be registered again.
    fn event(&mut self, event: ControlEvent) -> bool {
        match event {
            ControlEvent::Connected => return !self.hosted.is_empty(),
            ControlEvent::Disconnected => {
                // The client already failed what it had sent; anything left cannot be
                // answered any more.
                for (_, pending) in std::mem::take(&mut self.pending) {
                    self.lost(pending, "the control connection closed".into(), false);
                }
            }
            ControlEvent::Sync(sync) => self.send(ShardCommand::Sync(sync)),
            ControlEvent::Peers(peers) => self.send(ShardCommand::Peers(Arc::new(peers))),
            ControlEvent::TrustedCas(cas) => match self.edge_tls.set_extra_cas(&cas.certs) {
                Ok(n) => tracing::info!(cas = n, "3rd-party CAs trusted for edge connections"),
                Err(e) => {
                    tracing::error!(error = %e, "the edge listener's trust could not be rebuilt")
                }
            },
            ControlEvent::CircuitRouted { request_id, result } => {
                match self.circuits.remove(&request_id) {
                    Some(circuit) => self.send(ShardCommand::CircuitRouted { circuit, result }),
                    None => tracing::debug!(request_id, "circuit answer for no pending request"),
                }
            }
            ControlEvent::Route { request_id, route } => {
                self.send(ShardCommand::Route { request_id, route });
            }
            ControlEvent::CircuitClosed(closed) => self.send(ShardCommand::Unroute {
                circuit_id: closed.circuit_id,
                reason: closed.reason,
                ended_elsewhere: closed.ended_elsewhere,
            }),
            ControlEvent::Update(update) => self.send(ShardCommand::Update(update)),
            ControlEvent::TerminatorCreated {
                request_id,
                terminator,
            } => match self.pending.remove(&request_id) {
                Some(Pending {
                    registration: (conn, listener, request),
                    ..
                }) => {
                    self.hosted
                        .insert(terminator.id.clone(), (conn, listener, request));
                    self.send(ShardCommand::TerminatorCreated {
                        conn,
                        listener,
                        terminator_id: terminator.id,
                    });
                }
                None => tracing::debug!(request_id, "terminator answer for no pending request"),
            },
            ControlEvent::TerminatorFailed {
                request_id,
                code,
                message,
            } => match self.pending.remove(&request_id) {
                Some(pending) => {
                    // The client reports requests cut off by a connection loss so.
                    let refused = code != "DISCONNECTED";
                    let reason = match (code.is_empty(), message.is_empty()) {
                        (true, true) => "the controller refused the terminator".to_string(),
                        (false, true) => code,
                        (true, false) => message,
                        (false, false) => format!("{code}: {message}"),
                    };
                    self.lost(pending, reason, refused);
                }
                None => tracing::warn!(request_id, %code, %message, "terminator request failed"),
            },
        }
        false
    }

    /// Sends a create request, remembering it until answered; `previous` is the
    /// terminator id of a registration repeated after a reconnect.
    async fn create(
        &mut self,
        registration: Registration,
        previous: Option<String>,
        events: &mut mpsc::Receiver<ControlEvent>,
        backlog: &mut VecDeque<ControlEvent>,
    ) {
        let control = self.control.clone();
        let sent = with_events(
            control.create_terminator(registration.2.clone()),
            events,
            backlog,
        )
        .await;
        let pending = Pending {
            registration,
            previous,
        };
        match sent {
            Ok(id) => {
                self.pending.insert(id, pending);
            }
            Err(e) => self.lost(pending, format!("cannot reach the controller: {e}"), false),
        }
    }
}

/// Awaits `call` while buffering the control events that arrive meanwhile (the client
/// may be waiting to hand them over before it answers).
async fn with_events<T>(
    call: impl Future<Output = T>,
    events: &mut mpsc::Receiver<ControlEvent>,
    backlog: &mut VecDeque<ControlEvent>,
) -> T {
    tokio::pin!(call);
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            out = &mut call => return out,
            ev = events.recv(), if open => match ev {
                Some(ev) => backlog.push_back(ev),
                None => open = false,
            },
        }
    }
}

async fn bridge(
    control: ControlHandle,
    mut events: mpsc::Receiver<ControlEvent>,
    mut requests: mpsc::UnboundedReceiver<ShardRequest>,
    commands: mpsc::UnboundedSender<ShardCommand>,
    edge_tls: crate::tls::EdgeTls,
) {
    let mut state = Bridge {
        control,
        commands,
        pending: HashMap::new(),
        hosted: HashMap::new(),
        circuits: HashMap::new(),
        edge_tls,
    };
    let mut backlog = VecDeque::new();
    let mut requests_open = true;
    let mut reconnected = false;
    loop {
        while let Some(ev) = backlog.pop_front() {
            reconnected |= state.event(ev);
        }
        if std::mem::take(&mut reconnected) {
            let hosted: Vec<(String, Registration)> = state.hosted.drain().collect();
            tracing::info!(
                terminators = hosted.len(),
                "registering hosted terminators again"
            );
            for (previous, registration) in hosted {
                state
                    .create(registration, Some(previous), &mut events, &mut backlog)
                    .await;
            }
            continue;
        }
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => reconnected = state.event(ev),
                // The control client stopped: nothing more will be answered.
                None => break,
            },
            req = requests.recv(), if requests_open => match req {
                None => requests_open = false,
                Some(ShardRequest::Control(ControlRequest::CreateTerminator {
                    conn,
                    listener,
                    request,
                    ..
                })) => {
                    state
                        .create((conn, listener, request), None, &mut events, &mut backlog)
                        .await;
                }
                Some(ShardRequest::Control(ControlRequest::RemoveTerminator { terminator_id })) => {
                    state.hosted.remove(&terminator_id);
                    let control = state.control.clone();
                    let sent = with_events(
                        control.remove_terminator(&terminator_id),
                        &mut events,
                        &mut backlog,
                    )
                    .await;
                    if let Err(e) = sent {
                        // The controller drops a disconnected router's terminators itself.
                        tracing::debug!(%terminator_id, error = %e, "terminator not removed");
                    }
                }
                Some(ShardRequest::Control(ControlRequest::CreateCircuit { circuit, request })) => {
                    let control = state.control.clone();
                    let sent =
                        with_events(control.circuit_request(request), &mut events, &mut backlog)
                            .await;
                    match sent {
                        Ok(id) => {
                            state.circuits.insert(id, circuit);
                        }
                        Err(e) => state.send(ShardCommand::CircuitRouted {
                            circuit,
                            result: Err(format!("cannot reach the controller: {e}")),
                        }),
                    }
                }
                Some(ShardRequest::Control(ControlRequest::RouteResult {
                    request_id,
                    circuit_id,
                    error,
                })) => {
                    let control = state.control.clone();
                    let sent = with_events(
                        control.route_reply(request_id, circuit_id, error),
                        &mut events,
                        &mut backlog,
                    )
                    .await;
                    if let Err(e) = sent {
                        tracing::debug!(error = %e, circuit_id, "route answer not sent");
                    }
                }
                Some(ShardRequest::Control(ControlRequest::CircuitClosed(closed))) => {
                    let control = state.control.clone();
                    let sent =
                        with_events(control.circuit_closed(closed), &mut events, &mut backlog)
                            .await;
                    if let Err(e) = sent {
                        tracing::debug!(error = %e, "circuit end not reported");
                    }
                }
                Some(ShardRequest::Control(ControlRequest::Reroute {
                    circuit_id,
                    path_intact,
                    link_circuit_id,
                })) => {
                    let control = state.control.clone();
                    let request = pb::RerouteRequest {
                        circuit_id,
                        path_intact,
                        link_circuit_id,
                    };
                    let sent = with_events(
                        control.reroute_request(request),
                        &mut events,
                        &mut backlog,
                    )
                    .await;
                    if let Err(e) = sent {
                        // The circuit waits out its reroute deadline, then ends.
                        tracing::warn!(error = %e, circuit_id, "reroute not requested");
                    }
                }
                Some(ShardRequest::Control(ControlRequest::LinkStatus(status))) => {
                    let control = state.control.clone();
                    let sent =
                        with_events(control.link_status(status), &mut events, &mut backlog).await;
                    if let Err(e) = sent {
                        tracing::debug!(error = %e, "link status not reported");
                    }
                }
                Some(ShardRequest::ResyncNeeded { shard, gap }) => {
                    tracing::warn!(shard, ?gap, "a shard missed an update; resynchronising");
                    let control = state.control.clone();
                    let sent =
                        with_events(control.request_resync(), &mut events, &mut backlog).await;
                    if let Err(e) = sent {
                        // A reconnect brings a full sync anyway.
                        tracing::debug!(error = %e, "resync not requested");
                    }
                }
            },
        }
    }
    for (_, pending) in std::mem::take(&mut state.pending) {
        state.lost(pending, "the control client stopped".into(), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_address_takes_the_advertised_port_or_the_listeners() {
        assert_eq!(link_address("r1.example", 4022), "tls://r1.example:4022");
        assert_eq!(link_address("r1.example:443", 4022), "tls://r1.example:443");
        assert_eq!(link_address("[::1]:443", 4022), "tls://[::1]:443");
        assert_eq!(link_address("[::1]", 4022), "tls://[::1]:4022");
        assert_eq!(link_address("::1", 4022), "tls://::1:4022");
    }
}
