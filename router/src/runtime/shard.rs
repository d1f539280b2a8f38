//! One shard: a thread, a current-thread tokio runtime, a listener, a forwarder.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Waker;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, mpsc};
use tokio_rustls::TlsAcceptor;

use super::{SHARD_SHIFT, ShardCommand, ShardMsg, ShardRequest, ShardStats, conn};
use crate::edge::CloseReason;
use crate::forward::{ConnKey, Forwarder};

/// How often API session expiry is checked.
const EXPIRY_CHECK: Duration = Duration::from_secs(1);
/// How long connections get to flush and close once the grace period is over.
const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

/// A listener socket with `SO_REUSEPORT`, so every shard binds the same address.
pub(super) fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
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

/// Why a connection task must close its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Close {
    /// The forwarder closed it (`poll_close`): flush, shut down, `remove_conn`.
    Edge(CloseReason),
    /// The router shuts down: flush, shut down, `conn_lost`.
    Shutdown,
}

/// What the shard knows of one connection task.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// Wakes the connection's task.
    pub(super) waker: Option<Waker>,
    /// Set when the connection must close.
    pub(super) close: Option<Close>,
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
    /// The deadline the timer task sleeps to.
    timer_armed: Option<Instant>,
    timer: Rc<Notify>,
    pub(super) draining: bool,
    next_key: u64,
    pub(super) accepted: u64,
    pub(super) handshakes_failed: u64,
}

impl Shard {
    /// A fresh router-wide connection key owned by this shard.
    pub(super) fn new_key(&mut self) -> ConnKey {
        self.next_key += 1;
        ConnKey(((self.index as u64) << SHARD_SHIFT) | self.next_key)
    }

    fn wake(&mut self, key: ConnKey) {
        if let Some(waker) = self.conns.get_mut(&key).and_then(|s| s.waker.take()) {
            waker.wake();
        }
    }

    /// Drains the forwarder's outputs after an input: wakes writers, forwards control
    /// requests, starts closes, resumes drained readers, re-arms the timer.
    pub(super) fn pump(&mut self) {
        while let Some(key) = self.fwd.poll_ready() {
            self.wake(key);
        }
        while let Some(request) = self.fwd.poll_control() {
            if self.requests.send(ShardRequest::Control(request)).is_err() {
                tracing::warn!(shard = self.index, "control side gone; request dropped");
            }
        }
        while let Some((key, reason)) = self.fwd.poll_close() {
            tracing::debug!(
                shard = self.index,
                conn = key.0,
                ?reason,
                "closing connection"
            );
            if let Some(slot) = self.conns.get_mut(&key) {
                slot.close.get_or_insert(Close::Edge(reason));
            }
            self.wake(key);
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
        }
    }
}

/// Unix time in milliseconds, for session expiry.
pub(super) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The shard thread's body.
pub(super) fn run(
    index: usize,
    settings: super::RouterSettings,
    listener: std::net::TcpListener,
    commands: mpsc::UnboundedReceiver<ShardMsg>,
    requests: mpsc::UnboundedSender<ShardRequest>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(shard = index, error = %e, "cannot build the shard runtime");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(shard = index, error = %e, "cannot register the listener");
                return;
            }
        };
        let timer = Rc::new(Notify::new());
        let shard = Rc::new(RefCell::new(Shard {
            index,
            fwd: Forwarder::new(settings.forward.clone(), u16::try_from(index).unwrap_or(0)),
            conns: HashMap::new(),
            paused: Vec::new(),
            requests,
            timer_armed: None,
            timer: timer.clone(),
            draining: false,
            next_key: 0,
            accepted: 0,
            handshakes_failed: 0,
        }));
        let stop_accept = Rc::new(Notify::new());
        let acceptor = TlsAcceptor::from(settings.tls.clone());
        tokio::task::spawn_local(accept_loop(
            shard.clone(),
            listener,
            acceptor,
            settings.handshake_timeout,
            stop_accept.clone(),
        ));
        tokio::task::spawn_local(timer_loop(shard.clone(), timer));
        command_loop(shard, commands, stop_accept).await;
        tracing::info!(shard = index, "shard stopped");
    });
}

async fn accept_loop(
    shard: Rc<RefCell<Shard>>,
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
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
                tokio::task::spawn_local(conn::run(
                    shard.clone(),
                    acceptor.clone(),
                    tcp,
                    peer,
                    handshake_timeout,
                ));
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
            ShardMsg::Command(c) => c,
        };
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
    while Instant::now() < deadline && shard.borrow().fwd.counts().1 > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open = {
        let mut s = shard.borrow_mut();
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
