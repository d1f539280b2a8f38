//! The I/O driver: shards that own sockets and drive the sans-IO [`Forwarder`].
//!
//! # Threading model
//!
//! - **Shards.** `shards` threads, each with its own runtime, its own `SO_REUSEPORT`
//!   listener on the edge address, its own [`Forwarder`] and its own connections. The
//!   runtime is the [`IoBackend`] chosen at start ([`select_backend`]): a `tokio-uring`
//!   runtime (io_uring; a tokio current-thread runtime underneath, so timers, channels
//!   and local tasks are the same) or a plain tokio current-thread runtime (epoll). The
//!   shard logic is the same code on both; only the accept loop and the connection
//!   driver differ. The kernel spreads new connections over the listeners. Inside a
//!   shard everything runs on one thread: the forwarder lives in an `Rc<RefCell<..>>`
//!   that each connection task borrows only inside a synchronous poll, never across an
//!   `.await`. Nothing on the data path is shared between shards, and no lock is taken.
//! - **Per connection** one task: TLS handshake (with a deadline), then one future that
//!   reads decrypted bytes straight into the forwarder's receive buffer for that
//!   connection and writes the forwarder's transmits, honouring `wants_read` and
//!   `poll_close`. Both backends drive TLS on buffers they own
//!   ([`crate::tls::ServerSession`]: rustls for the handshake, its own record layer
//!   after it): the read appends ciphertext to the session's buffer, where records are
//!   opened in place; transmits are sealed straight into the connection's write
//!   buffer. On epoll over a tokio `TcpStream` (readiness reads,
//!   the write buffer written as the socket takes it); on io_uring one read and one
//!   write operation in flight at a time, the write carrying every record encrypted
//!   since the last one. A shard-wide "pump" runs after every
//!   input and wakes the connections that got something to write, that must close, or
//!   whose window drained.
//! - **Control.** One dispatcher thread receives [`ShardCommand`]s from the control side
//!   and hands them to the shards (session changes to all, terminator answers to the
//!   shard owning the connection), and serves the metrics endpoint, which asks every
//!   shard for its counters by message. Shards send [`ShardRequest`]s (terminator
//!   requests for the controller) up one channel.
//!
//! - **Across shards.** Every ordered pair of shards has one FIFO queue
//!   ([`CrossMsg`]s; tokio's unbounded mpsc: lock-free, one writer and one reader, the
//!   send wakes the receiving shard). Confirmed terminators are announced to every
//!   shard, so a dial on any shard can choose any terminator (a local one first among
//!   equals). A circuit whose dialer and host sit on different shards has a record on
//!   each; payload crosses as the same `Bytes` it arrived in, and the windows work across
//!   shards through batched credits (see `forward::cross`). Nothing else is shared: a
//!   message is the only way one shard touches another's state.
//!
//! [`Forwarder`]: crate::forward::Forwarder

mod backend;
mod conn;
mod link;
mod log_throttle;
mod metrics;
mod shard;
#[cfg(target_os = "linux")]
mod uring;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use weft_wire::control::pb;

use crate::forward::{ConnKey, ControlRequest, CrossMsg, ForwardConfig, ForwardStats};
use crate::sessions::RevisionGap;

pub use backend::{
    IoBackend, IoSelection, UnknownIoSelection, UringUnavailable, probe_uring, select_backend,
};
pub use link::{LinkSettings, MAX_PENDING_HANDSHAKES};

/// What the control side tells the shards.
#[derive(Clone, Debug)]
pub enum ShardCommand {
    /// A full state sync: every shard replaces its sessions.
    Sync(pb::StateSync),
    /// An incremental update: every shard applies it (revocations close at once).
    Update(pb::StateUpdate),
    /// The controller registered the terminator a shard asked for.
    TerminatorCreated {
        /// The hosting connection (names its shard).
        conn: ConnKey,
        /// Its listener conn id.
        listener: u32,
        /// The controller's terminator id.
        terminator_id: String,
    },
    /// The controller refused the terminator a shard asked for.
    TerminatorFailed {
        /// The hosting connection (names its shard).
        conn: ConnKey,
        /// Its listener conn id.
        listener: u32,
        /// Why, for the SDK.
        reason: String,
    },
    /// The routers this router may link with (to the shard that holds the links).
    Peers(Arc<pb::Peers>),
    /// The controller's answer to a circuit request of the shard holding the links.
    CircuitRouted {
        /// The circuit on that shard.
        circuit: crate::edge::CircuitId,
        /// The route, or why there is none.
        result: Result<pb::CircuitResponse, String>,
    },
    /// A route to install (on the shard holding the links).
    Route {
        /// The Route's request id, for the answer.
        request_id: i32,
        /// The route.
        route: pb::Route,
    },
    /// The controller takes a circuit across routers down.
    Unroute {
        /// The circuit's id on links.
        circuit_id: u64,
        /// Why.
        reason: String,
        /// It ended on another router of its path meanwhile (see
        /// [`crate::forward::Forwarder::unroute`]).
        ended_elsewhere: bool,
    },
    /// Stop accepting, let circuits finish for up to `grace`, then close everything.
    Shutdown {
        /// How long circuits may go on.
        grace: Duration,
    },
}

/// What the shards ask of the control side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardRequest {
    /// A terminator to create or remove at the controller.
    Control(ControlRequest),
    /// A [`ShardCommand::Update`] did not follow the revision a shard holds: the control
    /// side must fetch a full [`ShardCommand::Sync`].
    ResyncNeeded {
        /// The shard.
        shard: usize,
        /// The revisions.
        gap: RevisionGap,
    },
}

/// What [`Router::start`] needs; build it by hand or with
/// [`crate::config::RouterConfig::settings`].
#[derive(Clone, Debug)]
pub struct RouterSettings {
    /// Edge listener address (port 0 picks one; every shard then binds the same port).
    pub edge_listen: SocketAddr,
    /// Number of shards (threads), at least 1.
    pub shards: usize,
    /// Forwarding and edge settings of each shard.
    pub forward: ForwardConfig,
    /// TLS of the edge listener (3rd-party CAs can be added at run time; links use its
    /// base configuration, the network CA alone).
    pub tls: crate::tls::EdgeTls,
    /// Deadline of the TLS handshake.
    pub handshake_timeout: Duration,
    /// Where to serve Prometheus metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// Most edge connections one shard holds.
    pub max_conns_per_shard: usize,
    /// The I/O backend to run the shards on (`auto` probes io_uring once at start).
    pub io: IoSelection,
    /// Links to other routers (the first shard holds them); none without `[link]`.
    pub link: Option<LinkSettings>,
    /// The control client's counters, rendered with the shards' on the metrics port
    /// (none: no control-channel metrics).
    pub control_stats: Option<Arc<crate::control::ControlStats>>,
}

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `shards` was 0 or beyond the key space.
    #[error("invalid shard count {0}")]
    Shards(usize),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        error: std::io::Error,
    },
    /// `io = "uring"` on a host without io_uring.
    #[error(transparent)]
    Uring(#[from] UringUnavailable),
    /// A thread or runtime could not be created.
    #[error("cannot start the {what}: {error}")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// The cause.
        error: std::io::Error,
    },
}

/// Counters of one shard, as the metrics endpoint reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// The shard.
    pub shard: usize,
    /// Forwarding counters.
    pub forward: ForwardStats,
    /// Open edge connections.
    pub connections: usize,
    /// Open circuits.
    pub circuits: usize,
    /// Terminators hosted.
    pub terminators: usize,
    /// TLS connections accepted (handshake done).
    pub accepted: u64,
    /// Handshakes that failed or timed out.
    pub handshakes_failed: u64,
    /// Connections refused by the per-shard cap.
    pub refused: u64,
    /// Dial setup latency.
    pub dial_setup: crate::forward::DialSetup,
    /// The controller state revision the shard's session table holds (0 before the
    /// first sync).
    pub revision: u64,
    /// Services the controller's state grants this router.
    pub services: u64,
    /// Links to other routers held by this shard.
    pub links: Vec<crate::forward::LinkInfo>,
    /// Incoming links refused (unknown certificate, failed handshake, too many).
    pub links_refused: u64,
    /// Link dials that failed before the link came up.
    pub link_dial_failures: u64,
}

/// Messages to one shard.
#[derive(Debug)]
enum ShardMsg {
    // Boxed: a state update is large, a stats request small.
    Command(Box<ShardCommand>),
    Stats(oneshot::Sender<ShardStats>),
}

/// A running router: shard threads and the control dispatcher.
#[derive(Debug)]
pub struct Router {
    backend: IoBackend,
    local_addr: SocketAddr,
    link_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    shard_threads: Vec<JoinHandle<()>>,
    dispatcher: Option<JoinHandle<()>>,
}

impl Router {
    /// Binds the listeners and starts the shards. Commands arrive on `commands` (fanned
    /// out to the shards); requests for the controller leave on `requests`. When
    /// `commands` closes, the router shuts down as for [`ShardCommand::Shutdown`] with no
    /// grace.
    pub fn start(
        settings: RouterSettings,
        commands: mpsc::UnboundedReceiver<ShardCommand>,
        requests: mpsc::UnboundedSender<ShardRequest>,
    ) -> Result<Self, StartError> {
        if settings.shards == 0 || settings.shards > 1 << 15 {
            return Err(StartError::Shards(settings.shards));
        }
        let backend = select_backend(settings.io, probe_uring)?;
        let control_stats = settings.control_stats.clone();
        let asked = settings.edge_listen;
        let listeners = shard::bind_shard_listeners(asked, settings.shards)
            .map_err(|error| StartError::Listen { addr: asked, error })?;
        // With the port chosen when 0 was asked.
        let addr = match listeners.first() {
            Some(l) => l
                .local_addr()
                .map_err(|error| StartError::Listen { addr: asked, error })?,
            None => asked,
        };
        let mut link_listener = match settings.link.as_ref().and_then(|l| l.listen) {
            Some(a) => Some(
                std::net::TcpListener::bind(a)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|error| StartError::Listen { addr: a, error })?,
            ),
            None => None,
        };
        let link_addr = match &link_listener {
            Some(l) => Some(
                l.local_addr()
                    .map_err(|error| StartError::Listen { addr, error })?,
            ),
            None => None,
        };
        let metrics_listener = match settings.metrics_listen {
            Some(m) => Some(
                std::net::TcpListener::bind(m)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|error| StartError::Listen { addr: m, error })?,
            ),
            None => None,
        };
        let metrics_addr = match &metrics_listener {
            Some(l) => Some(l.local_addr().map_err(|error| StartError::Listen {
                addr: settings.metrics_listen.unwrap_or(addr),
                error,
            })?),
            None => None,
        };

        let mut shard_txs = Vec::with_capacity(settings.shards);
        let mut shard_threads = Vec::with_capacity(settings.shards);
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let mut links = cross_links(settings.shards);
        for (index, listener) in listeners.into_iter().enumerate() {
            let (peers, inbox) = links.remove(0);
            let (tx, rx) = mpsc::unbounded_channel();
            shard_txs.push(tx);
            let shard_settings = settings.clone();
            let requests = requests.clone();
            let ready_tx = ready_tx.clone();
            let shard_link = if index == 0 {
                link_listener.take()
            } else {
                None
            };
            let thread = std::thread::Builder::new()
                .name(format!("weft-shard-{index}"))
                .spawn(move || {
                    shard::run(shard::ShardIo {
                        index,
                        backend,
                        settings: shard_settings,
                        listener,
                        link_listener: shard_link,
                        commands: rx,
                        requests,
                        peers,
                        inbox,
                        ready: ready_tx,
                    });
                })
                .map_err(|error| StartError::Spawn {
                    what: "shard thread",
                    error,
                });
            match thread {
                Ok(thread) => shard_threads.push(thread),
                Err(e) => {
                    stop_shards(shard_txs, shard_threads);
                    return Err(e);
                }
            }
        }
        drop(ready_tx);
        // Every shard reports whether its runtime could be built (an io_uring ring can
        // still fail here, for example on the locked-memory limit of an old kernel).
        for _ in 0..shard_threads.len() {
            let failure = match ready.recv() {
                Ok((_, Ok(()))) => continue,
                Ok((index, Err(error))) => {
                    tracing::error!(shard = index, io = %backend, %error, "shard runtime failed");
                    StartError::Spawn {
                        what: match backend {
                            IoBackend::Uring => "io_uring shard runtime",
                            IoBackend::Epoll => "shard runtime",
                        },
                        error,
                    }
                }
                Err(_) => StartError::Spawn {
                    what: "shard runtime",
                    error: std::io::Error::other("a shard thread ended before starting"),
                },
            };
            stop_shards(shard_txs, shard_threads);
            return Err(failure);
        }
        let dispatcher = std::thread::Builder::new()
            .name("weft-control".into())
            .spawn(move || dispatch(commands, shard_txs, metrics_listener, control_stats))
            .map_err(|error| StartError::Spawn {
                what: "control dispatcher",
                error,
            })?;
        tracing::info!(
            %addr,
            shards = settings.shards,
            io = %backend,
            ?metrics_addr,
            "edge router started"
        );
        Ok(Self {
            backend,
            local_addr: addr,
            link_addr,
            metrics_addr,
            shard_threads,
            dispatcher: Some(dispatcher),
        })
    }

    /// The I/O backend the shards run on.
    pub fn backend(&self) -> IoBackend {
        self.backend
    }

    /// The edge listener's address (with the port chosen when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The metrics listener's address, when configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The link listener's address, when `[link] listen` is configured.
    pub fn link_addr(&self) -> Option<SocketAddr> {
        self.link_addr
    }

    /// Waits until every shard has stopped (after [`ShardCommand::Shutdown`] or the
    /// command channel closing).
    pub fn join(mut self) {
        self.join_threads();
    }

    fn join_threads(&mut self) {
        if let Some(d) = self.dispatcher.take() {
            if d.join().is_err() {
                tracing::error!("control dispatcher panicked");
            }
        }
        for t in self.shard_threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a shard panicked");
            }
        }
    }
}

/// One shard's ends of the per-shard-pair queues: senders to every shard (`None` for
/// itself) and receivers from every other shard, with the sender's index.
type CrossLinks = (
    Vec<Option<mpsc::UnboundedSender<CrossMsg>>>,
    Vec<(usize, mpsc::UnboundedReceiver<CrossMsg>)>,
);

/// The per-shard-pair queues of `shards` shards: one FIFO for every ordered pair, so no
/// queue has two writers or two readers. A send wakes the receiving shard's task.
fn cross_links(shards: usize) -> Vec<CrossLinks> {
    let mut links: Vec<CrossLinks> = (0..shards)
        .map(|_| ((0..shards).map(|_| None).collect(), Vec::new()))
        .collect();
    for from in 0..shards {
        for to in (0..shards).filter(|to| *to != from) {
            let (tx, rx) = mpsc::unbounded_channel();
            if let Some(slot) = links.get_mut(from).and_then(|l| l.0.get_mut(to)) {
                *slot = Some(tx);
            }
            if let Some(l) = links.get_mut(to) {
                l.1.push((from, rx));
            }
        }
    }
    links
}

/// Stops shards that started when a later one could not: their command channels close,
/// so they shut down at once.
fn stop_shards(
    shard_txs: Vec<mpsc::UnboundedSender<ShardMsg>>,
    shard_threads: Vec<JoinHandle<()>>,
) {
    drop(shard_txs);
    for t in shard_threads {
        let _ = t.join();
    }
}

/// The dispatcher thread: fans commands out to shards and serves metrics.
fn dispatch(
    mut commands: mpsc::UnboundedReceiver<ShardCommand>,
    shards: Vec<mpsc::UnboundedSender<ShardMsg>>,
    metrics_listener: Option<std::net::TcpListener>,
    control_stats: Option<Arc<crate::control::ControlStats>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the control dispatcher runtime");
            return;
        }
    };
    runtime.block_on(async move {
        if let Some(listener) = metrics_listener {
            let shards = shards.clone();
            tokio::spawn(metrics::serve(listener, shards, control_stats));
        }
        let mut shutdown = Duration::ZERO;
        while let Some(command) = commands.recv().await {
            match command {
                ShardCommand::TerminatorCreated { conn, .. }
                | ShardCommand::TerminatorFailed { conn, .. } => match shards.get(conn.shard()) {
                    Some(tx) => {
                        let _ = tx.send(ShardMsg::Command(Box::new(command)));
                    }
                    None => tracing::warn!(?conn, "terminator answer for an unknown shard"),
                },
                ShardCommand::Shutdown { grace } => {
                    shutdown = grace;
                    break;
                }
                // The first shard holds the links.
                ShardCommand::Peers(_)
                | ShardCommand::CircuitRouted { .. }
                | ShardCommand::Route { .. }
                | ShardCommand::Unroute { .. } => {
                    if let Some(tx) = shards.first() {
                        let _ = tx.send(ShardMsg::Command(Box::new(command)));
                    }
                }
                ShardCommand::Sync(_) | ShardCommand::Update(_) => {
                    for tx in &shards {
                        let _ = tx.send(ShardMsg::Command(Box::new(command.clone())));
                    }
                }
            }
        }
        for tx in &shards {
            let _ = tx.send(ShardMsg::Command(Box::new(ShardCommand::Shutdown {
                grace: shutdown,
            })));
        }
    });
}
