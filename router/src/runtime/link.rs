//! The link driver (docs/adr/0007-mesh.md): the listener and dialers of links to other
//! routers, on the first shard, whatever its backend.
//!
//! - **Who to dial**: the controller's peer list ([`ShardCommand::Peers`]) names every
//!   connected router with its link address, groups and the fingerprint of the
//!   certificate it dials with. This router dials each router whose listener shares a
//!   group with its `dial_groups`; of two routers that would dial each other, only the
//!   one whose id sorts first does ([`crate::link::duplicate`]), so one pair has one
//!   link. A lost link is dialled again after [`Backoff`] (500 ms to 60 s, ±20 %).
//! - **Dialling**: TCP, then TLS as a client presenting the router certificate; the
//!   listener's certificate must chain to the network CA, name the dialled host and
//!   carry the peer's router id as its common name ([`weft_tls::client::link`]).
//! - **Accepting**: TLS with a client certificate required (the edge listener's
//!   configuration); the leaf's fingerprint must be one the controller vouches for, which
//!   names the router the hello must name. At most [`MAX_PENDING_HANDSHAKES`]
//!   handshakes run at once, each within the handshake deadline.
//! - **Driving**: the [`crate::link::session::LinkSession`] lives in the shard's
//!   [`crate::forward::Forwarder`]; one task per link reads (while the session wants
//!   input) and writes its transmits, head and payload in one vectored write.
//!
//! The TLS here is tokio-rustls (rustls' buffered connection): one copy of the payload
//! on each side beyond the encryption pass. The edge's own record layer
//! (`crate::tls::ServerSession`) has no client side yet; see the ADR.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::io::IoSlice;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use weft_wire::control::pb;

use super::shard::Shard;
use crate::forward::ConnKey;
use crate::link::backoff::{Backoff, BackoffConfig};
use crate::link::duplicate::keep_link_dialled_by;
use crate::link::session::{LinkConfig, Role};

/// Link TLS handshakes (accepted, not yet verified) one router runs at once; more
/// connections are closed at once.
pub const MAX_PENDING_HANDSHAKES: usize = 64;
/// A link that stayed up this long resets its dial backoff when it ends.
const STABLE: Duration = Duration::from_secs(10);
/// Transmits written per batch before the write is flushed.
const WRITE_BATCH: usize = 64;
/// Bytes read from a link at once.
const READ_CHUNK: usize = 64 * 1024;

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
    /// Peers with a dial loop running.
    dialing: HashSet<String>,
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
        let start: Vec<String> = {
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
            let wanted: Vec<String> = mgr
                .peers
                .values()
                .filter(|p| mgr.wants_dial(p) && !mgr.dialing.contains(&p.router_id))
                .map(|p| p.router_id.clone())
                .collect();
            mgr.dialing.extend(wanted.iter().cloned());
            wanted
        };
        for peer in start {
            tokio::task::spawn_local(dial_loop(this.clone(), peer));
        }
    }
}

/// A number in `[0, 1)` for backoff jitter (not for anything secret).
fn jitter_draw() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Dials `peer_id` while it is listed and wanted, again after each loss or failure.
async fn dial_loop(shard: Rc<RefCell<Shard>>, peer_id: String) {
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
            Ok(stream) => {
                let role = Role::Dialer {
                    own_id: settings.router_id.clone(),
                    peer: peer.router_id.clone(),
                };
                let was_up = run_link(shard.clone(), stream, role).await;
                if was_up && started.elapsed() >= STABLE {
                    backoff.reset();
                }
            }
            Err(e) => {
                tracing::info!(peer = %peer.name, address = %peer.link_address, error = %e, "link dial failed");
                if let Some(mgr) = shard.borrow_mut().links.as_mut() {
                    mgr.dial_failures += 1;
                }
            }
        }
        tokio::time::sleep(backoff.next_delay(jitter_draw())).await;
    }
    if let Some(mgr) = shard.borrow_mut().links.as_mut() {
        mgr.dialing.remove(&peer_id);
    }
}

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("invalid link address {0:?}")]
    Address(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] weft_tls::TlsError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
}

async fn dial(
    settings: &LinkSettings,
    peer: &pb::Peer,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, DialError> {
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
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
        tcp.set_nodelay(true)?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    };
    tokio::time::timeout(settings.handshake_timeout, connect)
        .await
        .map_err(|_| DialError::Timeout)?
        .map_err(DialError::Io)
}

/// The link listener's accept loop (first shard only).
pub(super) async fn accept_loop(
    shard: Rc<RefCell<Shard>>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    stop: Rc<Notify>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
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
        let acceptor = acceptor.clone();
        tokio::task::spawn_local(async move {
            let handshake = tokio::time::timeout(timeout, acceptor.accept(tcp)).await;
            pending.set(pending.get().saturating_sub(1));
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::info!(%from, error = %e, "link TLS handshake refused");
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
            let fingerprint = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|leaf| weft_tls::fingerprint(leaf.as_ref()));
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
            run_link(shard, stream, Role::Listener { expected_peer }).await;
        });
    }
}

fn refuse(shard: &Rc<RefCell<Shard>>) {
    if let Some(mgr) = shard.borrow_mut().links.as_mut() {
        mgr.refused += 1;
    }
}

/// Drives one link until it ends; returns whether its hello succeeded.
async fn run_link<S>(shard: Rc<RefCell<Shard>>, stream: S, role: Role) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let slot = Rc::new(LinkSlot::default());
    let key = {
        let mut s = shard.borrow_mut();
        let Some(config) = s.links.as_ref().map(|m| m.settings.session) else {
            return false;
        };
        let key = s.new_key();
        if let Err(e) = s.fwd.add_link(Instant::now(), key, config, role) {
            tracing::warn!(error = %e, "link session could not start");
            return false;
        }
        if let Some(mgr) = s.links.as_mut() {
            mgr.slots.insert(key, slot.clone());
        }
        s.pump();
        key
    };
    let (rd, wr) = tokio::io::split(stream);
    let reason = tokio::select! {
        r = read_half(&shard, key, rd, &slot) => r,
        r = write_half(&shard, key, wr, &slot) => r,
        () = slot.close.notified() => slot
            .reason
            .borrow_mut()
            .take()
            .unwrap_or_else(|| "closed".into()),
    };
    let mut s = shard.borrow_mut();
    let peer = s.fwd.link_peer(key).map(str::to_owned);
    let was_up = peer.is_some();
    match &peer {
        Some(peer) => tracing::info!(%peer, %reason, "link down"),
        None => tracing::info!(%reason, "link ended before its hello"),
    }
    if let Some(mgr) = s.links.as_mut() {
        mgr.slots.remove(&key);
    }
    s.fwd.link_lost(Instant::now(), key, &reason);
    s.pump();
    was_up
}

async fn read_half<R: AsyncRead + Unpin>(
    shard: &Rc<RefCell<Shard>>,
    key: ConnKey,
    mut rd: R,
    slot: &LinkSlot,
) -> String {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        if !shard.borrow().fwd.link_wants_read(key) {
            slot.read.notified().await;
            continue;
        }
        let n = match rd.read(&mut buf).await {
            Ok(0) => return "the peer closed the link".into(),
            Ok(n) => n,
            Err(e) => return format!("read failed: {e}"),
        };
        let mut s = shard.borrow_mut();
        let result = match buf.get(..n) {
            Some(bytes) => s.fwd.link_received(Instant::now(), key, bytes),
            None => Ok(()),
        };
        s.pump();
        if let Err(e) = result {
            return e.to_string();
        }
    }
}

async fn write_half<W: AsyncWrite + Unpin>(
    shard: &Rc<RefCell<Shard>>,
    key: ConnKey,
    mut wr: W,
    slot: &LinkSlot,
) -> String {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        {
            let mut s = shard.borrow_mut();
            while batch.len() < WRITE_BATCH {
                match s.fwd.poll_link_transmit(key) {
                    Some(t) => batch.push(t),
                    None => break,
                }
            }
        }
        if batch.is_empty() {
            slot.write.notified().await;
            continue;
        }
        // The whole batch in vectored writes: TLS packs the frames into full records
        // instead of one record per head and one per payload. (On the stack: nothing
        // is allocated per batch.)
        let mut parts: [&[u8]; 2 * WRITE_BATCH] = [&[]; 2 * WRITE_BATCH];
        for (slot, t) in parts.chunks_exact_mut(2).zip(&batch) {
            slot[0] = &t.head;
            slot[1] = &t.payload;
        }
        let written = write_all_vectored(&mut wr, &mut parts[..2 * batch.len()]).await;
        batch.clear();
        if let Err(e) = written {
            return format!("write failed: {e}");
        }
        if let Err(e) = wr.flush().await {
            return format!("write failed: {e}");
        }
        // Answers went out: the reply budget may allow reading again.
        slot.read.notify_one();
    }
}

/// Writes every byte of `parts`, in order, with vectored writes.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    wr: &mut W,
    parts: &mut [&[u8]],
) -> std::io::Result<()> {
    let mut first = 0;
    while first < parts.len() {
        let mut slices = [IoSlice::new(&[]); 2 * WRITE_BATCH];
        let rest = parts.get(first..).unwrap_or_default();
        for (slice, part) in slices.iter_mut().zip(rest) {
            *slice = IoSlice::new(part);
        }
        let count = rest.len().min(slices.len());
        let mut n = wr.write_vectored(&slices[..count]).await?;
        if n == 0 && rest.iter().any(|p| !p.is_empty()) {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        // Skip what went out: whole parts, then the front of a part.
        while let Some(p) = parts.get_mut(first) {
            if n >= p.len() {
                n -= p.len();
                first += 1;
            } else {
                *p = p.get(n..).unwrap_or_default();
                break;
            }
        }
    }
    Ok(())
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

    /// A writer that takes at most `max` bytes per call, vectored or not.
    struct Trickle {
        max: usize,
        out: Vec<u8>,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut left = self.max;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                left -= take;
                if left == 0 {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_batch_goes_out_whole_and_in_order_however_little_each_write_takes() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for max in [1, 3, 7, 64, 10_000] {
            // More parts than one vectored write takes, some of them empty.
            let data: Vec<Vec<u8>> = (0..200u32)
                .map(|i| vec![(i % 251) as u8; (i % 40) as usize])
                .collect();
            let mut parts: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let mut w = Trickle {
                max,
                out: Vec::new(),
            };
            rt.block_on(write_all_vectored(&mut w, &mut parts)).unwrap();
            assert_eq!(w.out, data.concat(), "max {max}");
        }
    }

    #[test]
    fn jitter_draws_are_in_range() {
        for _ in 0..100 {
            let x = jitter_draw();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
