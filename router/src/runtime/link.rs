//! The link driver (docs/adr/0007-mesh.md): the listener and dialers of links to other
//! routers, on the first shard, whatever its backend.
//!
//! - **Who to dial**: the controller's peer list ([`ShardCommand::Peers`]) names every
//!   connected router with its link address, groups and the fingerprint of the
//!   certificate it dials with. This router dials each router whose listener shares a
//!   group with its `dial_groups`; of two routers that would dial each other, only the
//!   one whose id sorts first does ([`crate::link::duplicate`]), so one pair has one
//!   link. A link is `connections` TCP connections (`[link] connections`), each
//!   dialled by its own loop and numbered in its hello; a lost connection is dialled
//!   again after [`Backoff`] (500 ms to 60 s, ±20 %).
//! - **Dialling**: TCP, then TLS as a client presenting the router certificate; the
//!   listener's certificate must chain to the network CA, name the dialled host and
//!   carry the peer's router id as its common name ([`weft_tls::client::link`]).
//! - **Accepting**: TLS with a client certificate required (the edge listener's
//!   configuration); the leaf's fingerprint must be one the controller vouches for, which
//!   names the router the hello must name. At most [`MAX_PENDING_HANDSHAKES`]
//!   handshakes run at once, each within the handshake deadline.
//! - **Driving**: the [`crate::link::session::LinkSession`] lives in the shard's
//!   [`crate::forward::Forwarder`]; one task per link reads (while the session wants
//!   input) and writes its transmits.
//!
//! The TLS is the router's own record layer after rustls' handshake
//! ([`crate::tls::ClientSession`] on the dialer, [`crate::tls::ServerSession`] on the
//! listener; the handshake and the last records go through the edge driver's
//! `super::conn::handshake` and `send_last`), as on the edge: records are opened where they were read and their
//! plaintext appended straight to the link session's receive buffer; a batch of
//! transmits is sealed into full records in one write buffer, each payload byte copied
//! once, into it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use weft_wire::control::pb;

use super::conn::{HandshakeError, handshake, send_last};
use super::shard::Shard;
use crate::forward::ConnKey;
use crate::link::backoff::{Backoff, BackoffConfig};
use crate::link::duplicate::keep_link_dialled_by;
use crate::link::session::{LinkConfig, Role};
use crate::tls::{ClientSession, Fed, ServerSession, Session, SessionError, Side, TlsBuf};

/// Link TLS handshakes (accepted, not yet verified) one router runs at once; more
/// connections are closed at once.
pub const MAX_PENDING_HANDSHAKES: usize = 64;
/// A link that stayed up this long resets its dial backoff when it ends.
const STABLE: Duration = Duration::from_secs(10);
/// Transmits sealed into one write at most.
const WRITE_BATCH: usize = 64;
/// Plaintext bytes sealed into one write at most (more waits for the next write).
const WRITE_BYTES: usize = 256 * 1024;
/// Initial room of a link's write buffer: one full batch and its record overhead.
const WRITE_BUFFER: usize = WRITE_BYTES + 64 * 1024;

/// How this router links with others (from `[link]` and its router certificate).
#[derive(Clone, Debug)]
pub struct LinkSettings {
    /// This router's id.
    pub router_id: String,
    /// Where the link listener binds (none: dial only).
    pub listen: Option<std::net::SocketAddr>,
    /// Groups of the listener.
    pub groups: Vec<String>,
    /// Groups the dialers dial.
    pub dial_groups: Vec<String>,
    /// Connections each dialled link has (1 to [`crate::link::session::MAX_CONNECTIONS`]).
    pub connections: u32,
    /// The network CA bundle (PEM): verifies the listeners this router dials.
    pub ca_pem: String,
    /// The router certificate chain (PEM) this router dials with.
    pub cert_pem: String,
    /// Its key (PEM).
    pub key_pem: String,
    /// The link protocol's settings.
    pub session: LinkConfig,
    /// Dial backoff.
    pub backoff: BackoffConfig,
    /// Deadline of TCP connect and TLS handshake.
    pub handshake_timeout: Duration,
}

/// What a link task and the pump share.
#[derive(Debug, Default)]
pub(super) struct LinkSlot {
    /// The session may want to read again.
    read: Notify,
    /// The session has transmits.
    write: Notify,
    /// The link must close; `reason` says why.
    close: Notify,
    reason: RefCell<Option<String>>,
}

impl LinkSlot {
    /// Wakes both halves (new transmits, or room to read).
    pub(super) fn wake(&self) {
        self.read.notify_one();
        self.write.notify_one();
    }

    /// Asks the link's task to close it.
    pub(super) fn close(&self, reason: String) {
        self.reason.borrow_mut().get_or_insert(reason);
        self.close.notify_one();
    }
}

/// The first shard's links: peers, dialers, counters.
#[derive(Debug)]
pub(super) struct LinkManager {
    pub(super) settings: Arc<LinkSettings>,
    /// Whether this router has a link listener (for the duplicate rule).
    pub(super) listening: bool,
    /// The controller's peer list, by router id.
    peers: BTreeMap<String, pb::Peer>,
    /// Router id by the fingerprint of the certificate it dials with.
    by_fingerprint: HashMap<String, String>,
    /// Dial loops running: (peer, connection number).
    dialing: HashSet<(String, u32)>,
    /// Live link tasks.
    pub(super) slots: HashMap<ConnKey, Rc<LinkSlot>>,
    /// Handshakes in progress on the listener.
    pending: Rc<Cell<usize>>,
    /// Incoming links refused (unknown certificate, too many handshakes, failed TLS).
    pub(super) refused: u64,
    /// Dials that failed before the link came up.
    pub(super) dial_failures: u64,
}

impl LinkManager {
    pub(super) fn new(settings: Arc<LinkSettings>, listening: bool) -> Self {
        Self {
            settings,
            listening,
            peers: BTreeMap::new(),
            by_fingerprint: HashMap::new(),
            dialing: HashSet::new(),
            slots: HashMap::new(),
            pending: Rc::new(Cell::new(0)),
            refused: 0,
            dial_failures: 0,
        }
    }

    /// Whether this router dials `peer`: it listens, shares a group with our dialers,
    /// and is not a router that dials us (the duplicate rule).
    fn wants_dial(&self, peer: &pb::Peer) -> bool {
        let own = &self.settings;
        if peer.router_id == own.router_id || peer.link_address.is_empty() {
            return false;
        }
        let shares = |a: &[String], b: &[String]| a.iter().any(|g| b.contains(g));
        if !shares(&own.dial_groups, &peer.link_groups) {
            return false;
        }
        let dials_us = self.listening && shares(&peer.dial_groups, &own.groups);
        !dials_us || keep_link_dialled_by(&own.router_id, &own.router_id, &peer.router_id)
    }

    /// The peer to dial as `router_id` now, if it is still listed and wanted.
    fn dial_target(&self, router_id: &str) -> Option<pb::Peer> {
        self.peers
            .get(router_id)
            .filter(|p| self.wants_dial(p))
            .cloned()
    }
}

impl Shard {
    /// A new peer list: remembered, and a dial loop started for every router to dial
    /// that has none.
    pub(super) fn apply_peers(this: &Rc<RefCell<Self>>, peers: &pb::Peers) {
        let start: Vec<(String, u32)> = {
            let mut s = this.borrow_mut();
            let Some(mgr) = s.links.as_mut() else {
                return;
            };
            mgr.peers = peers
                .peers
                .iter()
                .map(|p| (p.router_id.clone(), p.clone()))
                .collect();
            mgr.by_fingerprint = peers
                .peers
                .iter()
                .filter(|p| !p.client_fingerprint.is_empty())
                .map(|p| (p.client_fingerprint.clone(), p.router_id.clone()))
                .collect();
            let connections = mgr.settings.connections;
            let wanted: Vec<(String, u32)> = mgr
                .peers
                .values()
                .filter(|p| mgr.wants_dial(p))
                .flat_map(|p| (0..connections).map(|c| (p.router_id.clone(), c)))
                .filter(|d| !mgr.dialing.contains(d))
                .collect();
            mgr.dialing.extend(wanted.iter().cloned());
            wanted
        };
        for (peer, connection) in start {
            tokio::task::spawn_local(dial_loop(this.clone(), peer, connection));
        }
    }
}

/// A number in `[0, 1)` for backoff jitter (not for anything secret).
fn jitter_draw() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Dials connection `connection` of the link to `peer_id` while the peer is listed and
/// wanted, again after each loss or failure.
async fn dial_loop(shard: Rc<RefCell<Shard>>, peer_id: String, connection: u32) {
    let Some(settings) = shard.borrow().links.as_ref().map(|m| m.settings.clone()) else {
        return;
    };
    let mut backoff = Backoff::new(settings.backoff);
    loop {
        let target = {
            let s = shard.borrow();
            match (&s.links, s.draining) {
                (Some(mgr), false) => mgr.dial_target(&peer_id),
                _ => None,
            }
        };
        let Some(peer) = target else {
            break;
        };
        let started = Instant::now();
        match dial(&settings, &peer).await {
            Ok((tcp, session, early)) => {
                let role = Role::Dialer {
                    own_id: settings.router_id.clone(),
                    peer: peer.router_id.clone(),
                    connection,
                };
                let was_up = run_link(shard.clone(), tcp, session, early, role).await;
                if was_up && started.elapsed() >= STABLE {
                    backoff.reset();
                }
            }
            Err(e) => {
                tracing::info!(peer = %peer.name, address = %peer.link_address, connection, error = %e, "link dial failed");
                if let Some(mgr) = shard.borrow_mut().links.as_mut() {
                    mgr.dial_failures += 1;
                }
            }
        }
        tokio::time::sleep(backoff.next_delay(jitter_draw())).await;
    }
    if let Some(mgr) = shard.borrow_mut().links.as_mut() {
        mgr.dialing.remove(&(peer_id, connection));
    }
}

/// Why a dial or a link handshake failed.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("invalid link address {0:?}")]
    Address(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] weft_tls::TlsError),
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
}

/// TCP to `peer`'s link listener, then the TLS handshake as a client presenting this
/// router's certificate; returns the connection, its session and any plaintext that
/// came with the handshake.
async fn dial(
    settings: &LinkSettings,
    peer: &pb::Peer,
) -> Result<(TcpStream, ClientSession, BytesMut), DialError> {
    let endpoint = weft_identity::endpoint::parse(&peer.link_address)
        .ok_or_else(|| DialError::Address(peer.link_address.clone()))?;
    let roots = weft_tls::pem::roots(settings.ca_pem.as_bytes())?;
    let identity = (
        weft_tls::pem::certificates(settings.cert_pem.as_bytes())?,
        weft_tls::pem::private_key(settings.key_pem.as_bytes())?,
    );
    let config = weft_tls::client::link(roots, identity, &peer.router_id)?;
    let name = weft_tls::client::server_name(&endpoint.host)?;
    let connect = async {
        let mut tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
        tcp.set_nodelay(true)?;
        let mut session = ClientSession::new(Arc::new(config), name)?;
        let (mut early, mut out) = (BytesMut::new(), TlsBuf::default());
        if let Err(e) = handshake(&mut tcp, &mut session, &mut out, &mut early).await {
            // Tell the listener why (best effort): rustls queued an alert.
            out.clear();
            send_last(&mut tcp, &mut session, &mut out).await;
            return Err(e.into());
        }
        Ok((tcp, session, early))
    };
    tokio::time::timeout(settings.handshake_timeout, connect)
        .await
        .map_err(|_| DialError::Timeout)?
}

/// Writes every byte of `data` to `tcp`.
async fn write_all(tcp: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        tcp.writable().await?;
        match tcp.try_write(data) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => data = data.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The link listener's accept loop (first shard only).
pub(super) async fn accept_loop(
    shard: Rc<RefCell<Shard>>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    stop: Rc<Notify>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.notified() => break,
        };
        let (tcp, from) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "link accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (pending, timeout) = {
            let mut s = shard.borrow_mut();
            let Some(mgr) = s.links.as_mut() else {
                return;
            };
            if mgr.pending.get() >= MAX_PENDING_HANDSHAKES {
                mgr.refused += 1;
                tracing::debug!(%from, "link refused: too many handshakes in progress");
                continue;
            }
            mgr.pending.set(mgr.pending.get() + 1);
            (mgr.pending.clone(), mgr.settings.handshake_timeout)
        };
        let _ = tcp.set_nodelay(true);
        let shard = shard.clone();
        let tls = tls.clone();
        tokio::task::spawn_local(async move {
            let mut tcp = tcp;
            let mut session = match ServerSession::new(tls) {
                Ok(session) => session,
                Err(e) => {
                    pending.set(pending.get().saturating_sub(1));
                    tracing::warn!(%from, error = %e, "cannot start a link TLS session");
                    refuse(&shard);
                    return;
                }
            };
            let (mut early, mut out) = (BytesMut::new(), TlsBuf::default());
            let shaken = handshake(&mut tcp, &mut session, &mut out, &mut early);
            let handshake = tokio::time::timeout(timeout, shaken).await;
            pending.set(pending.get().saturating_sub(1));
            match handshake {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::info!(%from, error = %e, "link TLS handshake refused");
                    // Tell the peer why (best effort): rustls queued an alert.
                    out.clear();
                    send_last(&mut tcp, &mut session, &mut out).await;
                    refuse(&shard);
                    return;
                }
                Err(_) => {
                    tracing::info!(%from, "link TLS handshake timed out");
                    refuse(&shard);
                    return;
                }
            };
            // The leaf is the certificate whose key the handshake proved.
            let fingerprint = session.client_leaf_fingerprint();
            let peer = fingerprint.as_ref().and_then(|fp| {
                shard
                    .borrow()
                    .links
                    .as_ref()
                    .and_then(|m| m.by_fingerprint.get(fp).cloned())
            });
            let Some(expected_peer) = peer else {
                tracing::warn!(%from, fingerprint = ?fingerprint, "link refused: not a router the controller vouches for");
                refuse(&shard);
                return;
            };
            run_link(shard, tcp, session, early, Role::Listener { expected_peer }).await;
        });
    }
}

fn refuse(shard: &Rc<RefCell<Shard>>) {
    if let Some(mgr) = shard.borrow_mut().links.as_mut() {
        mgr.refused += 1;
    }
}

/// Drives one link until it ends; returns whether its hello succeeded. `early` is
/// plaintext that came with the TLS handshake.
async fn run_link<S: Side>(
    shard: Rc<RefCell<Shard>>,
    mut tcp: TcpStream,
    session: Session<S>,
    early: BytesMut,
    role: Role,
) -> bool {
    let slot = Rc::new(LinkSlot::default());
    let key = {
        let mut s = shard.borrow_mut();
        let Some(config) = s.links.as_ref().map(|m| m.settings.session) else {
            return false;
        };
        let key = s.new_key();
        let now = Instant::now();
        if let Err(e) = s.fwd.add_link(now, key, config, role) {
            tracing::warn!(error = %e, "link session could not start");
            return false;
        }
        if let Some(mgr) = s.links.as_mut() {
            mgr.slots.insert(key, slot.clone());
        }
        if !early.is_empty() {
            if let Some(buffer) = s.fwd.link_receive_buffer(key) {
                buffer.extend_from_slice(&early);
            }
            if let Err(e) = s.fwd.link_handle_received(now, key) {
                slot.close(e.to_string());
            }
        }
        s.pump();
        key
    };
    let session = RefCell::new(session);
    // A write in progress when the link ends leaves part of a record unsent: nothing
    // may follow it then.
    let writing = Cell::new(false);
    let reason = tokio::select! {
        r = read_half(&shard, key, &tcp, &session, &slot) => r,
        r = write_half(&shard, key, &tcp, &session, &slot, &writing) => r,
        () = slot.close.notified() => slot
            .reason
            .borrow_mut()
            .take()
            .unwrap_or_else(|| "closed".into()),
    };
    let was_up = {
        let mut s = shard.borrow_mut();
        let peer = s.fwd.link_peer(key).map(str::to_owned);
        match &peer {
            Some(peer) => tracing::info!(%peer, %reason, "link down"),
            None => tracing::info!(%reason, "link ended before its hello"),
        }
        if let Some(mgr) = s.links.as_mut() {
            mgr.slots.remove(&key);
        }
        s.fwd.link_lost(Instant::now(), key, &reason);
        s.pump();
        peer.is_some()
    };
    // Tell the peer the link ends (best effort, bounded), unless a record was left
    // half written.
    if !writing.get() {
        let mut session = session.into_inner();
        session.send_close_notify();
        send_last(&mut tcp, &mut session, &mut TlsBuf::default()).await;
    }
    was_up
}

/// Reads records while the link session wants input, opens them in place and hands
/// their plaintext to the session (appended to its receive buffer, no other copy).
async fn read_half<S: Side>(
    shard: &Rc<RefCell<Shard>>,
    key: ConnKey,
    tcp: &TcpStream,
    session: &RefCell<Session<S>>,
    slot: &LinkSlot,
) -> String {
    loop {
        if !shard.borrow().fwd.link_wants_read(key) {
            slot.read.notified().await;
            continue;
        }
        if let Err(e) = tcp.readable().await {
            return format!("read failed: {e}");
        }
        let read = tcp.try_read_buf(session.borrow_mut().incoming_mut());
        match read {
            Ok(0) => return "the peer closed the connection without close_notify".into(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return format!("read failed: {e}"),
        }
        let mut s = shard.borrow_mut();
        let mut session = session.borrow_mut();
        let fed = match s.fwd.link_receive_buffer(key) {
            Some(buffer) => session.process(buffer),
            None => return "the link session is gone".into(),
        };
        let result = s.fwd.link_handle_received(Instant::now(), key);
        if session.wants_write() {
            // A key update or an alert to send.
            slot.write.notify_one();
        }
        drop(session);
        s.pump();
        match (fed, result) {
            (Err(e), _) => return format!("TLS: {e}"),
            (_, Err(e)) => return e.to_string(),
            (Ok(Fed::PeerClosed), _) => return "the peer closed the link".into(),
            (Ok(Fed::Open), Ok(())) => {}
        }
    }
}

/// Seals the link session's transmits, a batch at a time, into full records in one
/// write buffer and writes it.
async fn write_half<S: Side>(
    shard: &Rc<RefCell<Shard>>,
    key: ConnKey,
    tcp: &TcpStream,
    session: &RefCell<Session<S>>,
    slot: &LinkSlot,
    writing: &Cell<bool>,
) -> String {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut out = TlsBuf::new(Vec::with_capacity(WRITE_BUFFER));
    loop {
        let sealed = {
            let mut s = shard.borrow_mut();
            let mut bytes = 0;
            while batch.len() < WRITE_BATCH && bytes < WRITE_BYTES {
                match s.fwd.poll_link_transmit(key) {
                    Some(t) => {
                        bytes += t.head.len() + t.payload.len();
                        batch.push(t);
                    }
                    None => break,
                }
            }
            // Head and payload of every transmit, in order (on the stack: nothing is
            // allocated per batch), sealed into as few records as they fill.
            let mut parts: [&[u8]; 2 * WRITE_BATCH] = [&[]; 2 * WRITE_BATCH];
            for (pair, t) in parts.chunks_exact_mut(2).zip(&batch) {
                pair[0] = &t.head;
                pair[1] = &t.payload;
            }
            let mut session = session.borrow_mut();
            let sealed = session.take_tls(&mut out).and_then(|()| {
                if batch.is_empty() {
                    Ok(())
                } else {
                    session.encrypt_parts(&parts[..2 * batch.len()], &mut out)
                }
            });
            batch.clear();
            sealed
        };
        if out.is_empty() && sealed.is_ok() {
            slot.write.notified().await;
            continue;
        }
        writing.set(true);
        // On a sealing error, what the session queued for the peer (an alert,
        // close_notify) still goes out before the link ends.
        let written = write_all(tcp, &out).await;
        writing.set(false);
        if let Err(e) = sealed {
            return format!("TLS: {e}");
        }
        if let Err(e) = written {
            return format!("write failed: {e}");
        }
        out.clear();
        // Answers went out: the reply budget may allow reading again.
        slot.read.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(id: &str, dial_groups: &[&str], groups: &[&str]) -> Arc<LinkSettings> {
        Arc::new(LinkSettings {
            router_id: id.into(),
            listen: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            dial_groups: dial_groups.iter().map(|g| g.to_string()).collect(),
            connections: 1,
            ca_pem: String::new(),
            cert_pem: String::new(),
            key_pem: String::new(),
            session: LinkConfig::default(),
            backoff: BackoffConfig::default(),
            handshake_timeout: Duration::from_secs(1),
        })
    }

    fn peer(id: &str, address: &str, groups: &[&str], dial_groups: &[&str]) -> pb::Peer {
        pb::Peer {
            router_id: id.into(),
            name: id.into(),
            link_address: address.into(),
            link_groups: groups.iter().map(|g| g.to_string()).collect(),
            dial_groups: dial_groups.iter().map(|g| g.to_string()).collect(),
            client_fingerprint: format!("fp-{id}"),
        }
    }

    #[test]
    fn dials_listeners_of_shared_groups_and_one_side_of_a_mutual_pair() {
        let d = &["default"];
        // b listens in our group and does not dial us: dialled, whatever the ids.
        let a = LinkManager::new(settings("b2", d, d), false);
        assert!(a.wants_dial(&peer("a1", "tls://a:1", d, d)));
        // Not ourselves, not a router without a listener, not another group.
        assert!(!a.wants_dial(&peer("b2", "tls://b:1", d, d)));
        assert!(!a.wants_dial(&peer("c", "", d, d)));
        assert!(!a.wants_dial(&peer("c", "tls://c:1", &["east"], d)));
        // Both listen and dial each other: only the router whose id sorts first dials.
        let first = LinkManager::new(settings("a1", d, d), true);
        let second = LinkManager::new(settings("b2", d, d), true);
        assert!(first.wants_dial(&peer("b2", "tls://b:1", d, d)));
        assert!(!second.wants_dial(&peer("a1", "tls://a:1", d, d)));
        // A peer that dials no group of ours is dialled by us even from the second id.
        assert!(second.wants_dial(&peer("a1", "tls://a:1", d, &["west"])));
    }

    #[test]
    fn jitter_draws_are_in_range() {
        for _ in 0..100 {
            let x = jitter_draw();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
