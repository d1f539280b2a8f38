//! The control listener: mutual TLS (client certificate chained to the signing CA and
//! registered as an enrolled edge router's), channel V2 frames with protobuf bodies.
//!
//! Per connection: `RouterHello` (hello limits, deadline) → `HelloAck` + `StateSync`,
//! then `StateUpdate`s from the [`super::feed::ChangeFeed`] in revision order, and
//! terminator requests answered with `CreateTerminatorResponse` or `ErrorReply`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::BytesMut;
use serde_json::json;
use std::collections::HashMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot};
use weft_wire::control::{ControlMessage, pb};
use weft_wire::{ContentType, Decoded, Decoder, Frame, HeaderId, Limits};

use super::mesh::{MeshRouter, OUTBOUND_CAPACITY, Outbound};
use crate::clock;
use crate::controller::Controller;
use crate::error::StoreError;
use crate::model::{EdgeRouter, Entity, Kind, PolicyType, Terminator};

/// Circuit requests one router may have routing at once.
pub const MAX_PENDING_CIRCUITS: usize = 256;

/// How long a router has for the TLS handshake and for its hello.
pub const HELLO_DEADLINE: Duration = Duration::from_secs(10);

/// Errors ending one control connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Socket failure.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the framing.
    #[error("malformed frame: {0}")]
    Decode(#[from] weft_wire::DecodeError),
    /// A frame could not be encoded.
    #[error("encode failed: {0}")]
    Encode(#[from] weft_wire::EncodeError),
    /// A body was not the expected protobuf.
    #[error("bad message: {0}")]
    Message(#[from] weft_wire::MessageError),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// The hello did not come in time.
    #[error("no hello within the deadline")]
    HelloTimeout,
    /// The hello names another router than the certificate.
    #[error("hello names router {0:?}, not the certificate's")]
    WrongRouter(String),
    /// The first frame was not a RouterHello.
    #[error("expected RouterHello, got content type {0:?}")]
    NotHello(ContentType),
    /// The router did not take our writes within `control_write_timeout_ms`.
    #[error("the router is not reading (write blocked past the deadline)")]
    WriteTimeout,
    /// More than `control_max_outbound_bytes` were queued for the router.
    #[error("outbound queue full ({0} bytes): the router is not reading")]
    OutboundFull(usize),
}

/// Control-channel connections that may be in their TLS handshake or waiting for the
/// router certificate check at once. Routers are few and reconnect with backoff; an
/// unauthenticated flood beyond this is closed at accept instead of holding a
/// descriptor and a task each for up to [`HELLO_DEADLINE`].
pub const MAX_PENDING_HANDSHAKES: usize = 256;

/// Of [`MAX_PENDING_HANDSHAKES`], how many one source address may hold: a router opens
/// one control connection at a time, so a single host that floods the port cannot take
/// every slot and keep the routers from reconnecting (which would stop revocations from
/// reaching them).
pub const MAX_PENDING_PER_SOURCE: usize = 8;

/// Unauthenticated control connections per source address.
#[derive(Debug, Default)]
struct PendingBySource(std::sync::Mutex<HashMap<std::net::IpAddr, usize>>);

/// One pending connection of a source, released on drop.
struct SourceSlot {
    table: Arc<PendingBySource>,
    ip: std::net::IpAddr,
}

impl PendingBySource {
    /// A slot for `ip`, unless it holds [`MAX_PENDING_PER_SOURCE`] already.
    fn admit(table: &Arc<Self>, ip: std::net::IpAddr) -> Option<SourceSlot> {
        // Each critical section is one map update; a poisoned lock is consistent.
        let mut map = table
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = map.entry(ip).or_default();
        if *held >= MAX_PENDING_PER_SOURCE {
            return None;
        }
        *held += 1;
        Some(SourceSlot {
            table: Arc::clone(table),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self
            .table
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(held) = map.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Accepts router connections on `listener` forever.
pub async fn serve(ctl: Arc<Controller>, listener: TcpListener, tls: tokio_rustls::TlsAcceptor) {
    let _listening = crate::limits::Running::new(&ctl.metrics.control_listening);
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
    let by_source = Arc::new(PendingBySource::default());
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "control accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Control messages (revocations) go out at once, as the routers' side does.
        let _ = tcp.set_nodelay(true);
        let admitted = PendingBySource::admit(&by_source, peer.ip())
            .and_then(|slot| Some((slot, Arc::clone(&pending).try_acquire_owned().ok()?)));
        let Some(permit) = admitted else {
            ctl.metrics
                .control_refused_pending
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(%peer, "control connection refused: too many handshakes pending");
            continue;
        };
        let ctl = ctl.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HELLO_DEADLINE, tls.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "control TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let Some((router, fingerprint)) = authorize(&ctl, &stream).await else {
                tracing::warn!(%peer, "control connection refused: not an enrolled edge router");
                return;
            };
            drop(permit);
            serve_router(ctl, router, fingerprint, peer, stream).await;
        });
    }
}

/// The enrolled, enabled edge router whose certificate the peer presented, and the
/// fingerprint of that certificate.
async fn authorize<IO>(
    ctl: &Controller,
    stream: &tokio_rustls::server::TlsStream<IO>,
) -> Option<(Entity<EdgeRouter>, String)> {
    let fp = {
        let leaf = stream.get_ref().1.peer_certificates()?.first()?;
        // The TLS layer already checked the chain to the signing CA; checked again here
        // so that this function alone states the whole rule.
        if !ctl.pki.verify_client_leaf(leaf.as_ref(), false) {
            return None;
        }
        weft_tls::fingerprint(leaf.as_ref())
    };
    let router_id = ctl.store.router_by_fingerprint(&fp).await.ok()??;
    let router = ctl.store.entity::<EdgeRouter>(&router_id).await.ok()??;
    (!router.doc.disabled).then_some((router, fp))
}

/// Cleans up after a connection however it ends: terminators created over it are
/// removed and the router goes offline when this was its last connection.
struct ConnGuard {
    ctl: Arc<Controller>,
    router_id: String,
    conn_id: u64,
    terminators: Vec<String>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.ctl.routers.unregister(&self.router_id, self.conn_id);
        self.ctl.mesh.router_down(&self.router_id, self.conn_id);
        tracing::info!(router = %self.router_id, "router control connection closed");
        let terminators = std::mem::take(&mut self.terminators);
        let ctl = self.ctl.clone();
        let router_id = self.router_id.clone();
        // The store is async; the removal runs as its own task. Were this controller
        // to die first, the router's next hello (here or on another controller) removes
        // them instead.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if !ctl.routers.is_local(&router_id) {
                    if let Err(e) = ctl.store.presence_down(&router_id).await {
                        tracing::warn!(error = %e, "recording the router offline failed");
                    }
                }
                if let Err(e) = remove_terminators(&ctl, &terminators).await {
                    tracing::warn!(error = %e, "terminator removal failed");
                }
                ctl.notify_routers().await;
            });
        }
    }
}

/// Deletes these terminators in one transaction.
async fn remove_terminators(ctl: &Controller, ids: &[String]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut tx = ctl.store.begin_write().await?;
    for id in ids {
        tx.delete_entity(Kind::Terminators.collection(), id).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// At most this many edge listeners of one router are kept.
const MAX_EDGE_LISTENERS: usize = 8;
/// The longest edge listener URL kept.
const MAX_EDGE_LISTENER_LEN: usize = 256;

/// The edge listeners of a hello worth serving: `tls://host:port` with a host and a
/// non-zero port, of bounded length and number, duplicates dropped.
fn checked_edge_listeners(reported: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for url in reported {
        let ok = url.len() <= MAX_EDGE_LISTENER_LEN
            && url.starts_with("tls://")
            && weft_identity::endpoint::parse(url).is_some_and(|e| e.port != 0);
        if ok && !kept.contains(url) && kept.len() < MAX_EDGE_LISTENERS {
            kept.push(url.clone());
        }
    }
    kept
}

async fn serve_router<S: AsyncRead + AsyncWrite + Unpin>(
    ctl: Arc<Controller>,
    router: Entity<EdgeRouter>,
    fingerprint: String,
    peer: SocketAddr,
    stream: S,
) {
    let (id, kick) = ctl.routers.register(&router.id);
    if let Err(e) = ctl
        .store
        .presence_up(&router.id, clock::now_unix_ms())
        .await
    {
        tracing::warn!(router = %router.name, error = %e, "recording the router online failed");
    }
    let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let mut conn = Conn {
        guard: ConnGuard {
            ctl: ctl.clone(),
            router_id: router.id.clone(),
            conn_id: id,
            terminators: Vec::new(),
        },
        router: router.clone(),
        fingerprint,
        outbound,
        outbound_rx,
        pending_routes: HashMap::new(),
        circuit_permits: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_CIRCUITS)),
        out: BytesMut::new(),
        seq: 0,
        greeted: false,
    };
    tracing::info!(router = %router.name, %peer, "router control connection up");
    let res = tokio::select! {
        r = conn.run(stream) => r,
        () = kick.notified() => Ok(()),
    };
    match res {
        Ok(()) | Err(ConnError::Closed) => {}
        Err(e) => tracing::info!(router = %router.name, error = %e, "control connection ended"),
    }
}

struct Conn {
    guard: ConnGuard,
    /// The router's entity (name, cost, no-traversal) as it connected.
    router: Entity<EdgeRouter>,
    /// Fingerprint of the router certificate it connected with.
    fingerprint: String,
    /// Messages for this router from elsewhere (routes of circuits, circuit replies).
    outbound: mpsc::Sender<Outbound>,
    outbound_rx: mpsc::Receiver<Outbound>,
    /// Routes sent and not answered yet, by the sequence of their frame.
    pending_routes: HashMap<i32, oneshot::Sender<Result<(), String>>>,
    /// Circuit requests of this router being routed.
    circuit_permits: Arc<tokio::sync::Semaphore>,
    out: BytesMut,
    seq: i32,
    /// Whether the router's first hello was answered (stale terminators are removed
    /// once per connection, not on every resync a router asks for).
    greeted: bool,
}

/// The next state update for a connection that takes state; never for one that does
/// not (mesh-only).
async fn next_update(
    rx: &mut Option<tokio::sync::broadcast::Receiver<Arc<pb::StateUpdate>>>,
) -> Result<Arc<pb::StateUpdate>, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn read_more<R: AsyncRead + Unpin>(rd: &mut R, dec: &mut Decoder) -> Result<(), ConnError> {
    let buf = dec.buffer_mut();
    buf.reserve(16 * 1024);
    if rd.read_buf(buf).await? == 0 {
        return Err(ConnError::Closed);
    }
    Ok(())
}

async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    dec: &mut Decoder,
) -> Result<Frame, ConnError> {
    loop {
        if let Decoded::Frame(f) = dec.decode()? {
            return Ok(f);
        }
        read_more(rd, dec).await?;
    }
}

impl Conn {
    fn next_seq(&mut self) -> i32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn push<M: ControlMessage>(
        &mut self,
        msg: &M,
        reply_for: Option<i32>,
    ) -> Result<(), ConnError> {
        let seq = self.next_seq();
        msg.encode_frame(seq, reply_for, &mut self.out)?;
        // Replies to one read (a resync answers a small hello with a whole StateSync)
        // are queued before the next flush: bounded, so a router that sends but never
        // reads cannot grow this buffer without end.
        if self.out.len() > self.ctl().config.control.max_outbound_bytes {
            return Err(ConnError::OutboundFull(self.out.len()));
        }
        Ok(())
    }

    /// Writes the queued frames; a router that does not take them within
    /// `control_write_timeout_ms` is disconnected (while a write blocks, nothing is read
    /// from it and its feed receiver lags, which the bounded broadcast absorbs).
    async fn flush<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> Result<(), ConnError> {
        if !self.out.is_empty() {
            let deadline = Duration::from_millis(self.ctl().config.control.write_timeout_ms);
            tokio::time::timeout(deadline, async {
                wr.write_all(&self.out).await?;
                wr.flush().await
            })
            .await
            .map_err(|_| ConnError::WriteTimeout)??;
            self.out.clear();
        }
        Ok(())
    }

    fn ctl(&self) -> &Controller {
        &self.guard.ctl
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: S) -> Result<(), ConnError> {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut dec = Decoder::new(Limits::HELLO);
        let hello = tokio::time::timeout(HELLO_DEADLINE, read_frame(&mut rd, &mut dec))
            .await
            .map_err(|_| ConnError::HelloTimeout)??;
        if hello.content_type() != ContentType::CONTROL_ROUTER_HELLO {
            return Err(ConnError::NotHello(hello.content_type()));
        }
        let msg = pb::RouterHello::decode_frame(&hello)?;
        if msg.router_id != self.guard.router_id {
            let err = pb::ErrorReply {
                code: "WRONG_ROUTER".into(),
                message: "the hello does not name the router of the certificate".into(),
            };
            self.push(&err, Some(hello.sequence()))?;
            self.flush(&mut wr).await?;
            return Err(ConnError::WrongRouter(msg.router_id));
        }
        dec.set_limits(Limits::DEFAULT);
        tracing::debug!(router = %msg.router_id, version = %msg.version, "router hello");
        self.record_edge_listeners(&msg).await;
        // A mesh-only connection (one of a router's several) gets no state until the
        // router promotes it with a full hello (`handle`).
        let mut rx = if msg.mesh_only {
            self.ack(hello.sequence())?;
            None
        } else {
            Some(self.send_sync(hello.sequence()).await?)
        };
        self.join_mesh(&msg);
        let mut peers = self.ctl().mesh.subscribe_peers();
        let current = peers.borrow_and_update().clone();
        self.push(current.as_ref(), None)?;
        let mut trusted_cas = self.ctl().trusted_cas.subscribe();
        let mut cas_sent = false;
        self.flush(&mut wr).await?;
        loop {
            // The 3rd-party CAs go with the state: on a full connection, at once and
            // after each change.
            if rx.is_some() && !cas_sent {
                cas_sent = true;
                let current = trusted_cas.borrow_and_update().clone();
                self.push(current.as_ref(), None)?;
                self.flush(&mut wr).await?;
            }
            tokio::select! {
                changed = trusted_cas.changed(), if cas_sent => {
                    if changed.is_ok() {
                        let current = trusted_cas.borrow_and_update().clone();
                        self.push(current.as_ref(), None)?;
                    }
                }
                changed = peers.changed() => {
                    if changed.is_ok() {
                        let current = peers.borrow_and_update().clone();
                        self.push(current.as_ref(), None)?;
                    }
                }
                Some(msg) = self.outbound_rx.recv() => self.send_outbound(msg)?,
                r = read_more(&mut rd, &mut dec) => {
                    r?;
                    while let Decoded::Frame(frame) = dec.decode()? {
                        if let Some(new_rx) = self.handle(&frame).await? {
                            rx = Some(new_rx);
                        }
                    }
                }
                u = next_update(&mut rx) => match u {
                    Ok(update) => self.push(update.as_ref(), None)?,
                    Err(RecvError::Lagged(n)) => {
                        tracing::info!(router = %self.guard.router_id, lagged = n, "router fell behind; resynchronising");
                        let (sync, new_rx) = self.ctl().feed.subscribe().await;
                        self.push(&sync, None)?;
                        rx = Some(new_rx);
                    }
                    Err(RecvError::Closed) => return Ok(()),
                },
            }
            self.flush(&mut wr).await?;
        }
    }

    /// Queues HelloAck (reply to `hello_seq`).
    fn ack(&mut self, hello_seq: i32) -> Result<(), ConnError> {
        let ack = pb::HelloAck {
            controller_id: self.ctl().instance_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        self.push(&ack, Some(hello_seq))
    }

    /// Queues HelloAck (reply to `hello_seq`) and a full StateSync; returns the
    /// receiver of the updates after it.
    ///
    /// At the first hello, terminators of this router that were not created over this
    /// connection are left from an earlier one (a controller that died before removing them, possibly
    /// another controller on the same database): the router creates its terminators
    /// again after every hello, so those are removed first.
    async fn send_sync(
        &mut self,
        hello_seq: i32,
    ) -> Result<tokio::sync::broadcast::Receiver<Arc<pb::StateUpdate>>, ConnError> {
        self.ack(hello_seq)?;
        if !self.greeted {
            self.greeted = true;
            if let Err(e) = self.remove_stale_terminators().await {
                tracing::warn!(router = %self.guard.router_id, error = %e, "removing stale terminators failed");
            }
        }
        let (sync, rx) = self.ctl().feed.subscribe().await;
        self.push(&sync, None)?;
        Ok(rx)
    }

    /// See [`Self::send_sync`].
    async fn remove_stale_terminators(&self) -> Result<(), StoreError> {
        let ctl = self.ctl();
        let stale: Vec<String> = ctl
            .store
            .entities::<Terminator>()
            .await?
            .into_iter()
            .filter(|t| {
                t.doc.router == self.guard.router_id && !self.guard.terminators.contains(&t.id)
            })
            .map(|t| t.id)
            .collect();
        if !stale.is_empty() {
            tracing::info!(router = %self.guard.router_id, count = stale.len(), "removing terminators left from an earlier connection");
            remove_terminators(ctl, &stale).await?;
            ctl.notify_routers().await;
        }
        Ok(())
    }

    /// Keeps the edge listeners the hello reports (the checked ones), here and in the
    /// store's presence row, so every controller serves them for a router created
    /// without `supportedProtocols`.
    async fn record_edge_listeners(&self, hello: &pb::RouterHello) {
        let listeners = checked_edge_listeners(&hello.edge_listeners);
        if listeners.len() != hello.edge_listeners.len() {
            tracing::warn!(router = %self.router.name, reported = ?hello.edge_listeners,
                kept = ?listeners, "ignoring edge listeners that are not tls://host:port");
        }
        if let Err(e) = self
            .ctl()
            .store
            .presence_listeners(&self.router.id, &listeners)
            .await
        {
            tracing::warn!(router = %self.router.name, error = %e, "recording the router's edge listeners failed");
        }
        self.ctl().routers.set_reported(&self.router.id, listeners);
    }

    /// Enters the router into the mesh with what its hello says of its links.
    fn join_mesh(&self, hello: &pb::RouterHello) {
        let doc = &self.router.doc;
        self.ctl().mesh.router_up(MeshRouter {
            id: self.router.id.clone(),
            name: self.router.name.clone(),
            conn_id: self.guard.conn_id,
            link_address: hello.link_listener.clone(),
            link_groups: hello.link_groups.clone(),
            dial_groups: hello.dial_groups.clone(),
            client_fingerprint: self.fingerprint.clone(),
            cost: doc.cost,
            no_traversal: doc.no_traversal,
            outbound: self.outbound.clone(),
        });
    }

    /// Queues a message that came from elsewhere for this router.
    fn send_outbound(&mut self, msg: Outbound) -> Result<(), ConnError> {
        match msg {
            Outbound::Route { route, reply } => {
                let seq = self.seq.wrapping_add(1);
                self.push(&route, None)?;
                self.pending_routes.insert(seq, reply);
            }
            Outbound::CircuitReply { reply_for, result } => match result {
                Ok(response) => self.push(&response, Some(reply_for))?,
                Err(error) => self.push(&error, Some(reply_for))?,
            },
            Outbound::CircuitClosed(closed) => self.push(&closed, None)?,
        }
        Ok(())
    }

    /// Handles one frame after the hello; a resync request returns a new receiver.
    async fn handle(
        &mut self,
        frame: &Frame,
    ) -> Result<Option<tokio::sync::broadcast::Receiver<Arc<pb::StateUpdate>>>, ConnError> {
        let seq = frame.sequence();
        // Answers to the routes this connection sent.
        if let Some(reply_for) = frame
            .header(HeaderId::REPLY_FOR)
            .and_then(|v| v.as_i32().ok())
        {
            if let Some(reply) = self.pending_routes.remove(&reply_for) {
                let answer = match frame.content_type() {
                    ContentType::CONTROL_ROUTE_RESPONSE => Ok(()),
                    ContentType::CONTROL_ERROR => Err(pb::ErrorReply::decode_frame(frame)
                        .map_or_else(|e| e.to_string(), |e| e.message)),
                    other => Err(format!("unexpected answer {other:?}")),
                };
                let _ = reply.send(answer);
                return Ok(None);
            }
        }
        match frame.content_type() {
            ContentType::CONTROL_LINK_STATUS => {
                let status = pb::LinkStatus::decode_frame(frame)?;
                tracing::info!(
                    router = %self.router.name,
                    peer = %status.peer_router_id,
                    up = status.up,
                    latency_us = status.latency_us,
                    reason = %status.reason,
                    "link status"
                );
                self.ctl().mesh.link_status(&self.guard.router_id, &status);
            }
            ContentType::CONTROL_CIRCUIT_REQUEST => {
                let req = pb::CircuitRequest::decode_frame(frame)?;
                // A router has at most MAX_PENDING_CIRCUITS requests routing at once; more
                // are refused at once (it cannot make the controller hold more).
                let Ok(permit) = self.circuit_permits.clone().try_acquire_owned() else {
                    self.ctl()
                        .metrics
                        .control_circuits_refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let busy = pb::ErrorReply {
                        code: "BUSY".into(),
                        message: "too many circuit requests in progress".into(),
                    };
                    self.push(&busy, Some(seq))?;
                    return Ok(None);
                };
                let (ctl, ingress, out) = (
                    self.guard.ctl.clone(),
                    self.guard.router_id.clone(),
                    self.outbound.clone(),
                );
                // Routing waits for other routers: it runs beside this connection.
                tokio::spawn(async move {
                    let result = super::mesh::create_circuit(ctl, ingress, req).await;
                    drop(permit);
                    let _ = out
                        .send(Outbound::CircuitReply {
                            reply_for: seq,
                            result,
                        })
                        .await;
                });
            }
            ContentType::CONTROL_REROUTE_REQUEST => {
                let req = pb::RerouteRequest::decode_frame(frame)?;
                tracing::info!(router = %self.router.name, circuit = req.circuit_id, path_intact = req.path_intact, "reroute requested");
                tokio::spawn(super::mesh::reroute_circuit(
                    self.guard.ctl.clone(),
                    self.guard.router_id.clone(),
                    req.circuit_id,
                    req.path_intact,
                    req.link_circuit_id,
                ));
            }
            ContentType::CONTROL_CIRCUIT_CLOSED => {
                let closed = pb::CircuitClosed::decode_frame(frame)?;
                self.ctl()
                    .mesh
                    .circuit_closed(&self.guard.router_id, &closed);
            }
            ContentType::CONTROL_ROUTER_HELLO => {
                let msg = pb::RouterHello::decode_frame(frame)?;
                if msg.router_id != self.guard.router_id {
                    return Err(ConnError::WrongRouter(msg.router_id));
                }
                if msg.mesh_only {
                    // Nothing to send a connection that takes no state.
                    self.ack(seq)?;
                    return Ok(None);
                }
                // A resync, or a mesh-only connection promoted to the router's primary.
                return self.send_sync(seq).await.map(Some);
            }
            ContentType::CONTROL_CREATE_TERMINATOR => {
                let req = pb::CreateTerminatorRequest::decode_frame(frame)?;
                match self.create_terminator(&req).await {
                    Ok(terminator) => {
                        self.guard.terminators.push(terminator.id.clone());
                        let res = pb::CreateTerminatorResponse {
                            terminator: Some(terminator),
                        };
                        self.push(&res, Some(seq))?;
                    }
                    Err(err) => self.push(&err, Some(seq))?,
                }
            }
            ContentType::CONTROL_REMOVE_TERMINATOR => {
                let req = pb::RemoveTerminatorRequest::decode_frame(frame)?;
                if let Err(err) = self.remove_terminator(&req.terminator_id).await {
                    self.push(&err, Some(seq))?;
                }
            }
            ContentType::CONTROL_ERROR => {
                let e = pb::ErrorReply::decode_frame(frame)?;
                tracing::warn!(router = %self.guard.router_id, code = %e.code, message = %e.message, "router reported an error");
            }
            other => {
                let reply_for = frame.header(HeaderId::REPLY_FOR).is_none().then_some(seq);
                if let Some(reply_for) = reply_for {
                    let err = pb::ErrorReply {
                        code: "UNSUPPORTED".into(),
                        message: format!("content type {other:?} is not supported"),
                    };
                    self.push(&err, Some(reply_for))?;
                }
            }
        }
        Ok(None)
    }

    /// Checks the Bind session and stores a terminator for it on this router.
    async fn create_terminator(
        &self,
        req: &pb::CreateTerminatorRequest,
    ) -> Result<pb::Terminator, pb::ErrorReply> {
        let ctl = self.ctl();
        let invalid = |m: &str| pb::ErrorReply {
            code: "INVALID_SESSION".into(),
            message: m.into(),
        };
        let internal = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "terminator creation failed");
            pb::ErrorReply {
                code: "INTERNAL".into(),
                message: "internal error".into(),
            }
        };
        let session = ctl
            .store
            .session_by_id(&req.session_id)
            .await
            .map_err(|e| internal(&e))?
            .ok_or_else(|| invalid("no such session"))?;
        if session.session_type != PolicyType::Bind {
            return Err(invalid("the session is not a Bind session"));
        }
        let api = ctl
            .store
            .api_session_by_id(&session.api_session_id)
            .await
            .map_err(|e| internal(&e))?
            .ok_or_else(|| invalid("the session's API session is gone"))?;
        if api.last_activity + ctl.config.auth.api_session_timeout_secs <= clock::now_unix() {
            return Err(invalid("the session's API session expired"));
        }
        let precedence = match pb::Precedence::try_from(req.precedence) {
            Ok(pb::Precedence::Required) => "required",
            Ok(pb::Precedence::Failed) => "failed",
            _ => "default",
        };
        let mut obj = serde_json::Map::new();
        obj.insert("service".into(), json!(session.service_id));
        obj.insert("router".into(), json!(self.guard.router_id));
        obj.insert("binding".into(), json!("edge"));
        obj.insert("address".into(), json!(req.address));
        obj.insert("cost".into(), json!(req.cost.min(u32::from(u16::MAX))));
        obj.insert("precedence".into(), json!(precedence));
        obj.insert("identity".into(), json!(session.identity_id));
        obj.insert("instanceId".into(), json!(req.instance_id));
        obj.insert(
            "hostPublicKey".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(&req.host_public_key)),
        );
        obj.insert("sessionId".into(), json!(session.id));
        let (row, _) = crate::domain::entities::create(ctl, Kind::Terminators, obj)
            .await
            .map_err(|e| internal(&e))?;
        let terminator = Entity::<Terminator>::from_row(row).map_err(|e| internal(&e))?;
        Ok(super::view::judge::terminator_pb(&terminator))
    }

    async fn remove_terminator(&mut self, id: &str) -> Result<(), pb::ErrorReply> {
        let ctl = self.ctl();
        let not_found = || pb::ErrorReply {
            code: "NOT_FOUND".into(),
            message: format!("no terminator {id:?} on this router"),
        };
        let row = ctl
            .store
            .entity::<Terminator>(id)
            .await
            .ok()
            .flatten()
            .filter(|t| t.doc.router == self.guard.router_id)
            .ok_or_else(not_found)?;
        remove_terminators(ctl, std::slice::from_ref(&row.id))
            .await
            .map_err(|_| not_found())?;
        ctl.notify_routers().await;
        self.guard.terminators.retain(|t| t != id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_tls_listeners_with_a_host_and_port_are_kept() {
        let long = format!("tls://{}.example:3022", "a".repeat(MAX_EDGE_LISTENER_LEN));
        let reported: Vec<String> = [
            "tls://er1.example:3022",
            "tls://er1.example:3022",
            "tls://[::1]:443",
            "tcp://er1.example:3022",
            "tls://er1.example:0",
            "tls://:3022",
            "er1.example:3022",
            long.as_str(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            checked_edge_listeners(&reported),
            ["tls://er1.example:3022", "tls://[::1]:443"]
        );
        let many: Vec<String> = (1..=20).map(|i| format!("tls://h{i}:1")).collect();
        assert_eq!(checked_edge_listeners(&many).len(), MAX_EDGE_LISTENERS);
    }
}
