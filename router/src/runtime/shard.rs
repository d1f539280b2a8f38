//! One shard: a thread, a runtime (epoll or io_uring), a listener, a forwarder.
//!
//! Everything here is independent of the I/O backend: the shard state and its pump, the
//! timer, the command loop, draining and shutdown. Only the accept loop and the
//! connection driver differ ([`super::conn`] for epoll, [`super::uring`] for io_uring);
//! both open and close connections through [`Shard::open_conn`] and
//! [`Shard::finish_conn`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, mpsc};

use super::{IoBackend, ShardCommand, ShardMsg, ShardRequest, ShardStats, conn};
use crate::edge::CloseReason;
use crate::forward::{ConnKey, CrossMsg, Forwarder};

/// How often API session expiry is checked.
const EXPIRY_CHECK: Duration = Duration::from_secs(1);
/// How long connections get to flush and close once the grace period is over.
const CLOSE_DEADLINE: Duration = Duration::from_secs(2);
/// How long a closing connection may take to write what is queued for it.
pub(super) const FLUSH_DEADLINE: Duration = Duration::from_secs(5);
/// How long a closing connection may take to send its TLS close_notify.
pub(super) const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(1);
/// Most messages from another shard handled before the shard pumps its outputs.
const CROSS_BATCH: usize = 256;

/// `count` listeners on `addr` (one per shard), sharing it with `SO_REUSEPORT`, and
/// only with each other: `SO_REUSEPORT` alone would let a second router (or any process
/// of the same user that sets it) share the port silently and take some of the
/// connections. A probe bound without it first fails when anything listens there
/// already; once these are bound, the probe of a second router fails the same way.
/// (Two routers starting within the same microseconds could still both pass.)
pub(super) fn bind_shard_listeners(
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        drop(probe(addr)?);
    }
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(count);
    // The first bind fixes the port when 0 was asked; the others share it.
    for _ in 0..count {
        let listener = bind_reuseport(addr)?;
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// A socket bound to `addr` without `SO_REUSEPORT`: it fails while anything listens
/// there (`SO_REUSEADDR` only lets it past connections in TIME_WAIT).
fn probe(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// A listener socket with `SO_REUSEPORT`, so every shard binds the same address.
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(target_os = "solaris"), not(target_os = "illumos")))]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Logs why the router closes an edge connection: a refused hello, a revoked API
/// session or a connection over its API session's cap is a security event at WARN
/// (`event` = `edge_connection_refused` or `edge_connection_revoked`, with the client's
/// address and the reason); the rest is routine (debug). Each comes from a client that
/// completed the TLS handshake with a certificate of the network, at most one per
/// connection.
fn log_close(shard: usize, key: ConnKey, peer: Option<SocketAddr>, reason: &CloseReason) {
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    let refused = match reason {
        CloseReason::HelloRejected(why) => Some(why.to_string()),
        CloseReason::TooManyConnections => {
            Some("too many connections for its API session".to_owned())
        }
        _ => None,
    };
    if let Some(why) = refused {
        return tracing::warn!(
            event = "edge_connection_refused",
            shard,
            conn = key.0,
            %peer,
            reason = %why,
            "edge connection refused"
        );
    }
    match reason {
        CloseReason::ApiSessionRevoked => tracing::warn!(
            event = "edge_connection_revoked",
            shard,
            conn = key.0,
            %peer,
            "edge connection closed: its API session was removed"
        ),
        _ => tracing::debug!(shard, conn = key.0, %peer, ?reason, "closing connection"),
    }
}

/// The least time between two WARN lines about the shard's connection cap.
const CAP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a connection task must close its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Close {
    /// The forwarder closed it (`poll_close`): flush, shut down, `remove_conn`.
    Edge(CloseReason),
    /// The router shuts down: flush, shut down, `conn_lost`.
    Shutdown,
}

/// How a connection's driving ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Flushed (or the flush deadline passed); close as asked.
    Close(Close),
    /// The socket failed or the peer went away.
    Lost,
}

/// What the shard knows of one connection task.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// Wakes the connection's task.
    pub(super) waker: Option<Waker>,
    /// Set when the connection must close.
    pub(super) close: Option<Close>,
    /// The client's address, for security events.
    pub(super) peer: Option<SocketAddr>,
}

/// The state of one shard, shared by its tasks on one thread.
#[derive(Debug)]
pub(super) struct Shard {
    pub(super) index: usize,
    pub(super) fwd: Forwarder,
    pub(super) conns: HashMap<ConnKey, Slot>,
    /// Connections that stopped reading because a window they feed is full.
    pub(super) paused: Vec<ConnKey>,
    requests: mpsc::UnboundedSender<ShardRequest>,
    /// The queue to each other shard (`None` at this shard's own index).
    peers: Vec<Option<mpsc::UnboundedSender<CrossMsg>>>,
    /// The deadline the timer task sleeps to.
    timer_armed: Option<Instant>,
    timer: Rc<Notify>,
    pub(super) draining: bool,
    next_key: u64,
    pub(super) accepted: u64,
    pub(super) handshakes_failed: u64,
    /// Most edge connections this shard holds; more are closed after the handshake.
    max_conns: usize,
    /// Connections refused by the cap.
    refused: u64,
    /// One WARN line per 10 s for connections refused by the cap.
    cap_log: super::log_throttle::LogThrottle,
    /// Owned I/O buffers of the io_uring backend, reused across connections.
    pub(super) buffers: BufferPool,
    /// Links to other routers (the first shard of a router with `[link]`).
    pub(super) links: Option<super::link::LinkManager>,
}

impl Shard {
    fn new(
        index: usize,
        settings: &super::RouterSettings,
        requests: mpsc::UnboundedSender<ShardRequest>,
        peers: Vec<Option<mpsc::UnboundedSender<CrossMsg>>>,
        timer: Rc<Notify>,
    ) -> Self {
        // `Router::start` allows at most 2^15 shards, so both fit.
        let (shard, shards) = (
            u16::try_from(index).unwrap_or(u16::MAX),
            u16::try_from(settings.shards).unwrap_or(u16::MAX),
        );
        Self {
            index,
            fwd: Forwarder::sharded(settings.forward.clone(), shard, shards),
            conns: HashMap::new(),
            paused: Vec::new(),
            requests,
            peers,
            timer_armed: None,
            timer,
            draining: false,
            next_key: 0,
            accepted: 0,
            handshakes_failed: 0,
            max_conns: settings.max_conns_per_shard,
            refused: 0,
            cap_log: super::log_throttle::LogThrottle::new(CAP_LOG_INTERVAL),
            buffers: BufferPool::default(),
            links: settings
                .link
                .as_ref()
                .filter(|_| index == 0)
                .map(|l| super::link::LinkManager::new(Arc::new(l.clone()), l.listen.is_some())),
        }
    }

    /// Registers a connection whose TLS handshake finished and hands it to the
    /// forwarder; `None` while the shard drains (the caller drops the connection).
    pub(super) fn open_conn(
        &mut self,
        leaf_fingerprint: Option<String>,
        peer: SocketAddr,
    ) -> Option<ConnKey> {
        if self.draining {
            return None;
        }
        if self.conns.len() >= self.max_conns {
            self.refused += 1;
            if let Some(refused) = self.cap_log.hit(Instant::now()) {
                tracing::warn!(
                    event = "edge_connection_refused",
                    shard = self.index,
                    cap = self.max_conns,
                    %peer,
                    refused,
                    "connection cap reached; refusing (`refused`: connections since the last such line)"
                );
            }
            return None;
        }
        let key = self.new_key();
        self.accepted += 1;
        self.conns.insert(
            key,
            Slot {
                peer: Some(peer),
                ..Slot::default()
            },
        );
        self.fwd.add_conn(Instant::now(), key, leaf_fingerprint);
        self.pump();
        Some(key)
    }

    /// Forgets a connection whose driving ended: the forwarder removes it (a close it
    /// asked for) or treats it as lost (its circuits end, the other sides are told).
    pub(super) fn finish_conn(&mut self, key: ConnKey, outcome: &Outcome) {
        self.conns.remove(&key);
        let now = Instant::now();
        match outcome {
            Outcome::Close(Close::Edge(_)) => self.fwd.remove_conn(now, key),
            Outcome::Close(Close::Shutdown) | Outcome::Lost => self.fwd.conn_lost(now, key),
        }
        self.pump();
    }

    /// Hands the forwarder the application data that arrived with the end of `key`'s
    /// handshake (nothing to do when there was none).
    pub(super) fn receive_early(&mut self, key: ConnKey, early: &[u8]) {
        if early.is_empty() {
            return;
        }
        self.fwd.handle_input(Instant::now(), key, early, unix_ms());
        self.pump();
    }

    /// Ends the driving of `key`, whatever the backend: the shard forgets it
    /// ([`Self::finish_conn`]), the outcome is logged, and a close that flushed what was
    /// queued gets its TLS close_notify queued (the driver's last write sends it, or the
    /// alert of a TLS error).
    pub(super) fn end_conn(
        &mut self,
        key: ConnKey,
        outcome: &Outcome,
        flushed: bool,
        session: &mut crate::tls::ServerSession,
    ) {
        self.finish_conn(key, outcome);
        let shard = self.index;
        match outcome {
            Outcome::Close(close) => {
                tracing::debug!(shard, conn = key.0, ?close, "edge connection closed");
                if flushed {
                    session.send_close_notify();
                }
            }
            Outcome::Lost => tracing::debug!(shard, conn = key.0, "edge connection lost"),
        }
    }

    /// The close asked of `key`, `Some(None)` when it goes on, `None` when the shard no
    /// longer knows it.
    pub(super) fn close_of(&self, key: ConnKey) -> Option<Option<Close>> {
        self.conns.get(&key).map(|slot| slot.close.clone())
    }

    /// Parks the task of `key` until the pump wakes it.
    pub(super) fn park(&mut self, key: ConnKey, waker: &Waker) {
        if let Some(slot) = self.conns.get_mut(&key) {
            slot.waker = Some(waker.clone());
        }
    }

    /// Notes that `key` stopped reading on a full window, so the pump resumes it.
    pub(super) fn note_paused(&mut self, key: ConnKey) {
        if !self.paused.contains(&key) {
            self.paused.push(key);
        }
    }

    /// A fresh router-wide connection key owned by this shard.
    pub(super) fn new_key(&mut self) -> ConnKey {
        self.next_key += 1;
        ConnKey::on_shard(self.index, self.next_key)
    }

    pub(super) fn wake(&mut self, key: ConnKey) {
        if let Some(waker) = self.conns.get_mut(&key).and_then(|s| s.waker.take()) {
            waker.wake();
        } else if let Some(slot) = self.links.as_ref().and_then(|m| m.slots.get(&key)) {
            slot.wake();
        }
    }

    /// Drains the forwarder's outputs after an input: wakes writers, forwards control
    /// requests, starts closes, resumes drained readers, re-arms the timer.
    pub(super) fn pump(&mut self) {
        while let Some(key) = self.fwd.poll_ready() {
            self.wake(key);
        }
        while let Some((to, msg)) = self.fwd.poll_cross() {
            // A shard that is gone (shutdown) has nothing left to tell.
            if let Some(Some(peer)) = self.peers.get(to) {
                let _ = peer.send(msg);
            }
        }
        while let Some(request) = self.fwd.poll_control() {
            if self.requests.send(ShardRequest::Control(request)).is_err() {
                tracing::warn!(shard = self.index, "control side gone; request dropped");
            }
        }
        while let Some((key, reason)) = self.fwd.poll_close() {
            let peer = self.conns.get(&key).and_then(|s| s.peer);
            log_close(self.index, key, peer, &reason);
            if let Some(slot) = self.conns.get_mut(&key) {
                slot.close.get_or_insert(Close::Edge(reason));
            }
            self.wake(key);
        }
        while let Some((key, reason)) = self.fwd.poll_link_close() {
            if let Some(slot) = self.links.as_ref().and_then(|m| m.slots.get(&key)) {
                slot.close(reason);
            }
        }
        if !self.paused.is_empty() {
            let mut paused = std::mem::take(&mut self.paused);
            paused.retain(|key| {
                let keep = self.conns.contains_key(key) && !self.fwd.wants_read(*key);
                if !keep {
                    self.wake(*key);
                }
                keep
            });
            self.paused = paused;
        }
        if let Some(deadline) = self.fwd.poll_timeout() {
            if self.timer_armed.is_none_or(|armed| deadline < armed) {
                self.timer.notify_one();
            }
        }
    }

    fn stats(&self) -> ShardStats {
        let (connections, circuits, terminators) = self.fwd.counts();
        ShardStats {
            shard: self.index,
            forward: self.fwd.stats(),
            connections,
            circuits,
            terminators,
            accepted: self.accepted,
            handshakes_failed: self.handshakes_failed,
            refused: self.refused,
            dial_setup: self.fwd.dial_setup(),
            revision: self.fwd.sessions().revision(),
            services: self.fwd.sessions().services_granted() as u64,
            links: self.fwd.links(),
            links_refused: self.links.as_ref().map_or(0, |m| m.refused),
            link_dial_failures: self.links.as_ref().map_or(0, |m| m.dial_failures),
        }
    }
}

/// Unix time in milliseconds, for session expiry.
pub(super) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Owned byte buffers, reused: the io_uring backend's per-connection ciphertext
/// buffers come from here and go back when the connection ends. At most
/// [`BufferPool::KEEP`] are kept; beyond that they are freed.
#[derive(Debug, Default)]
pub(super) struct BufferPool {
    free: Vec<Vec<u8>>,
}

impl BufferPool {
    /// Buffers kept for reuse.
    const KEEP: usize = 256;

    /// An empty buffer with at least `capacity` bytes of room.
    pub(super) fn take(&mut self, capacity: usize) -> Vec<u8> {
        match self.free.pop() {
            Some(mut buffer) => {
                buffer.clear();
                buffer.reserve(capacity);
                buffer
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// Largest buffer kept for reuse; a larger one (a write batch that carried a huge
    /// frame) is freed.
    const KEEP_CAPACITY: usize = 1024 * 1024;

    /// Returns `buffer` for reuse.
    pub(super) fn give(&mut self, buffer: Vec<u8>) {
        if self.free.len() < Self::KEEP
            && buffer.capacity() > 0
            && buffer.capacity() <= Self::KEEP_CAPACITY
        {
            self.free.push(buffer);
        }
    }
}

/// What a shard thread reports once its runtime is built (or could not be).
pub(super) type Ready = std::sync::mpsc::Sender<(usize, std::io::Result<()>)>;

/// What a shard thread is started with.
pub(super) struct ShardIo {
    pub(super) index: usize,
    pub(super) backend: IoBackend,
    pub(super) settings: super::RouterSettings,
    pub(super) listener: std::net::TcpListener,
    /// The link listener (first shard only).
    pub(super) link_listener: Option<std::net::TcpListener>,
    pub(super) commands: mpsc::UnboundedReceiver<ShardMsg>,
    pub(super) requests: mpsc::UnboundedSender<ShardRequest>,
    /// Queues to the other shards, by index.
    pub(super) peers: Vec<Option<mpsc::UnboundedSender<CrossMsg>>>,
    /// Queues from the other shards, with the sender's index.
    pub(super) inbox: Vec<(usize, mpsc::UnboundedReceiver<CrossMsg>)>,
    pub(super) ready: Ready,
}

/// The shard thread's body: builds the backend's runtime, reports it on `ready`, then
/// runs the shard until it shuts down.
pub(super) fn run(io: ShardIo) {
    let (index, backend, ready) = (io.index, io.backend, io.ready.clone());
    match backend {
        IoBackend::Epoll => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready.send((index, Err(e)));
                    return;
                }
            };
            let _ = ready.send((index, Ok(())));
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, shard_main(io));
        }
        #[cfg(target_os = "linux")]
        IoBackend::Uring => {
            let runtime = match super::backend::uring_runtime(super::uring::ENTRIES) {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready.send((index, Err(e)));
                    return;
                }
            };
            let _ = ready.send((index, Ok(())));
            runtime.block_on(shard_main(io));
        }
        #[cfg(not(target_os = "linux"))]
        IoBackend::Uring => {
            let _ = ready.send((
                index,
                Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "io_uring exists only on Linux",
                )),
            ));
        }
    }
}

/// The shard, whatever the backend: state, accept loop, timer, other shards, commands.
async fn shard_main(io: ShardIo) {
    let ShardIo {
        index,
        backend,
        settings,
        listener,
        link_listener,
        commands,
        requests,
        peers,
        inbox,
        ready: _,
    } = io;
    let timer = Rc::new(Notify::new());
    let shard = Rc::new(RefCell::new(Shard::new(
        index,
        &settings,
        requests,
        peers,
        timer.clone(),
    )));
    for (from, receiver) in inbox {
        tokio::task::spawn_local(cross_loop(shard.clone(), from, receiver));
    }
    let stop_accept = Rc::new(Notify::new());
    // Both backends accept through tokio's reactor (why not the ring: `super::uring`).
    match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => {
            tokio::task::spawn_local(accept_loop(
                shard.clone(),
                backend,
                listener,
                settings.tls.clone(),
                settings.handshake_timeout,
                stop_accept.clone(),
            ));
        }
        Err(e) => {
            tracing::error!(shard = index, error = %e, "cannot register the listener");
            return;
        }
    }
    if let Some(link_listener) = link_listener {
        match tokio::net::TcpListener::from_std(link_listener) {
            Ok(l) => {
                // Links trust the network CA alone, never a 3rd-party CA.
                tokio::task::spawn_local(super::link::accept_loop(
                    shard.clone(),
                    l,
                    settings.tls.base(),
                    stop_accept.clone(),
                ));
            }
            Err(e) => tracing::error!(error = %e, "cannot register the link listener"),
        }
    }
    tokio::task::spawn_local(timer_loop(shard.clone(), timer));
    command_loop(shard, commands, stop_accept).await;
    tracing::info!(shard = index, %backend, "shard stopped");
}

/// The edge listener's accept loop: each connection goes to a task of `backend`.
async fn accept_loop(
    shard: Rc<RefCell<Shard>>,
    backend: IoBackend,
    listener: tokio::net::TcpListener,
    tls: crate::tls::EdgeTls,
    handshake_timeout: Duration,
    stop: Rc<Notify>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.notified() => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                // The trust current now: a 3rd-party CA added or removed applies to the
                // handshakes that start afterwards.
                let (shard, tls) = (shard.clone(), tls.current());
                match backend {
                    IoBackend::Epoll => {
                        tokio::task::spawn_local(conn::run(
                            shard,
                            tls,
                            tcp,
                            peer,
                            handshake_timeout,
                        ));
                    }
                    #[cfg(target_os = "linux")]
                    IoBackend::Uring => {
                        super::uring::spawn_connection(shard, tls, tcp, peer, handshake_timeout)
                    }
                    #[cfg(not(target_os = "linux"))]
                    IoBackend::Uring => drop(tcp),
                }
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::debug!(shard = shard.borrow().index, "stopped accepting");
}

/// Handles what shard `from` sends, a batch at a time, pumping after each batch.
async fn cross_loop(
    shard: Rc<RefCell<Shard>>,
    from: usize,
    mut inbox: mpsc::UnboundedReceiver<CrossMsg>,
) {
    while let Some(msg) = inbox.recv().await {
        let now = Instant::now();
        let mut s = shard.borrow_mut();
        s.fwd.handle_cross(now, from, msg);
        for _ in 1..CROSS_BATCH {
            match inbox.try_recv() {
                Ok(msg) => s.fwd.handle_cross(now, from, msg),
                Err(_) => break,
            }
        }
        s.pump();
    }
}

async fn timer_loop(shard: Rc<RefCell<Shard>>, timer: Rc<Notify>) {
    let mut next_expiry = Instant::now() + EXPIRY_CHECK;
    loop {
        let deadline = {
            let mut s = shard.borrow_mut();
            let deadline = s
                .fwd
                .poll_timeout()
                .map_or(next_expiry, |t| t.min(next_expiry));
            s.timer_armed = Some(deadline);
            deadline
        };
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => {}
            () = timer.notified() => continue,
        }
        let now = Instant::now();
        let mut s = shard.borrow_mut();
        s.fwd.handle_timeout(now);
        if now >= next_expiry {
            s.fwd.expire_sessions(now, unix_ms());
            next_expiry = now + EXPIRY_CHECK;
        }
        s.pump();
    }
}

async fn command_loop(
    shard: Rc<RefCell<Shard>>,
    mut commands: mpsc::UnboundedReceiver<ShardMsg>,
    stop_accept: Rc<Notify>,
) {
    let mut grace = Duration::ZERO;
    while let Some(msg) = commands.recv().await {
        let command = match msg {
            ShardMsg::Stats(reply) => {
                let _ = reply.send(shard.borrow().stats());
                continue;
            }
            ShardMsg::Command(c) => *c,
        };
        if let ShardCommand::Peers(peers) = &command {
            Shard::apply_peers(&shard, peers);
            shard.borrow_mut().pump();
            continue;
        }
        let now = Instant::now();
        let mut s = shard.borrow_mut();
        match command {
            ShardCommand::Sync(sync) => {
                tracing::debug!(shard = s.index, revision = sync.revision, "state sync");
                s.fwd.apply_sync(now, sync);
            }
            ShardCommand::Update(update) => {
                if let Err(gap) = s.fwd.apply_update(now, update) {
                    tracing::warn!(shard = s.index, %gap, "state update out of order");
                    let shard_index = s.index;
                    let _ = s.requests.send(ShardRequest::ResyncNeeded {
                        shard: shard_index,
                        gap,
                    });
                }
            }
            ShardCommand::TerminatorCreated {
                conn,
                listener,
                terminator_id,
            } => s.fwd.terminator_created(now, conn, listener, terminator_id),
            ShardCommand::TerminatorFailed {
                conn,
                listener,
                reason,
            } => s.fwd.terminator_failed(now, conn, listener, &reason),
            ShardCommand::Shutdown { grace: g } => {
                grace = g;
                break;
            }
            ShardCommand::CircuitRouted { circuit, result } => {
                s.fwd.circuit_routed(now, circuit, result);
            }
            ShardCommand::Route { request_id, route } => {
                s.fwd.install_route(now, request_id, route);
            }
            ShardCommand::Unroute {
                circuit_id,
                reason,
                ended_elsewhere,
            } => {
                s.fwd.unroute(now, circuit_id, &reason, ended_elsewhere);
            }
            // Handled above, before the shard is borrowed.
            ShardCommand::Peers(_) => {}
        }
        s.pump();
    }
    shutdown(&shard, &stop_accept, grace).await;
}

/// Stops accepting, lets circuits run for up to `grace`, then closes every connection.
async fn shutdown(shard: &Rc<RefCell<Shard>>, stop_accept: &Notify, grace: Duration) {
    shard.borrow_mut().draining = true;
    stop_accept.notify_one();
    let index = shard.borrow().index;
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && shard.borrow().fwd.has_circuits() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open = {
        let mut s = shard.borrow_mut();
        if let Some(mgr) = &s.links {
            for slot in mgr.slots.values() {
                slot.close("the router is shutting down".into());
            }
        }
        let keys: Vec<ConnKey> = s.conns.keys().copied().collect();
        for key in keys {
            if let Some(slot) = s.conns.get_mut(&key) {
                slot.close.get_or_insert(Close::Shutdown);
            }
            s.wake(key);
        }
        s.conns.len()
    };
    tracing::info!(shard = index, connections = open, "shutting down");
    let hard = Instant::now() + CLOSE_DEADLINE;
    while !shard.borrow().conns.is_empty() && Instant::now() < hard {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_pool_reuses_and_bounds_what_it_keeps() {
        let mut pool = BufferPool::default();
        let mut a = pool.take(64);
        assert!(a.capacity() >= 64 && a.is_empty());
        a.extend_from_slice(b"old bytes");
        let ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take(16);
        assert!(b.is_empty(), "a reused buffer comes back cleared");
        assert_eq!(b.as_ptr(), ptr, "the same allocation is reused");
        // Empty and oversized buffers are not kept.
        pool.give(Vec::new());
        pool.give(Vec::with_capacity(BufferPool::KEEP_CAPACITY + 1));
        assert!(pool.free.is_empty());
        for _ in 0..BufferPool::KEEP + 10 {
            pool.give(Vec::with_capacity(8));
        }
        assert_eq!(pool.free.len(), BufferPool::KEEP);
    }

    #[test]
    fn a_second_group_of_shard_listeners_cannot_share_the_port() {
        let first = bind_shard_listeners("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = first[0].local_addr().unwrap();
        assert_eq!(first[1].local_addr().unwrap(), addr, "the shards share it");
        let second = bind_shard_listeners(addr, 2).unwrap_err();
        assert_eq!(second.kind(), std::io::ErrorKind::AddrInUse);
        // Nor next to a plain listener of another program.
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = plain.local_addr().unwrap();
        let err = bind_shard_listeners(taken, 1).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        // Once the first group is gone, the port is free again.
        drop(first);
        assert_eq!(bind_shard_listeners(addr, 2).unwrap().len(), 2);
    }
}
