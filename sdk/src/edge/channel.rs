//! One multiplexed edge connection to a router: a TLS stream driven by a reader task
//! and a writer task, shared by every stream and listener of a context on that router.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;
use weft_wire::edge::{self, HelloResult};
use weft_wire::{Decoded, Decoder, EncodeError, Frame, Limits};

use super::credit::{self, SendCredit};
use super::proto::{self, Inbound};
use crate::error::{Error, Result};
use crate::pool::BufPool;

/// Frames queued for the writer; beyond this, writers wait.
const WRITE_QUEUE: usize = 256;
/// Events queued for one stream; beyond this, the reader waits (and with it every
/// stream on this connection), which bounds what a slow reader can pin in memory. With
/// per-stream credit the router's credit bounds it instead and the queue is longer, so
/// the reader waits only for a stream of unusually small messages.
const STREAM_QUEUE: usize = 64;
/// The queue of one stream with per-stream credit.
const STREAM_QUEUE_WITH_CREDIT: usize = 1024;
/// Free room below which the receive buffer grows before a read.
const READ_MIN: usize = 16 * 1024;
/// How much it grows by.
const READ_RESERVE: usize = 128 * 1024;
/// Receive buffers of a connection: when frames still hold the current one, the
/// partial frame moves to a pooled buffer whose frames are all gone, so a steady
/// stream reuses warm memory instead of allocating per read.
const READ_BUFFERS: usize = 8;
/// Size of a pooled receive buffer: a partial frame plus the growth step.
const READ_BUFFER: usize = 2 * READ_RESERVE;
/// Interval of latency probes (the C SDK's LATENCY_INTERVAL is 60 s).
const PROBE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a probe may go unanswered before it counts as lost.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the reader delivers what arrives for one conn id.
#[derive(Debug)]
pub(crate) enum Route {
    /// A dialed or accepted stream, with its send credit when negotiated.
    Stream {
        /// Its queue.
        events: mpsc::Sender<StreamEvent>,
        /// What it may still send.
        credit: Option<Arc<SendCredit>>,
    },
    /// A bound listener.
    Listener(mpsc::UnboundedSender<ListenerEvent>),
}

/// What the reader hands a stream.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// A Data body (ciphertext when encrypted), possibly the last before a FIN.
    Data(Bytes),
    /// The peer half-closed.
    Fin,
    /// The router closed the stream, with its reason.
    Closed(Bytes),
}

/// What the reader hands a listener.
#[derive(Debug)]
pub(crate) enum ListenerEvent {
    /// A dialer wants to connect.
    Dial {
        /// The Dial's channel sequence.
        sequence: i32,
        /// The dialer's key-exchange public key.
        public_key: Option<Bytes>,
        /// The dialer's identity name.
        caller_id: Bytes,
        /// Application data the dialer sent.
        app_data: Option<Bytes>,
    },
    /// The router removed the terminator.
    Closed(Bytes),
}

#[derive(Debug, Default)]
struct State {
    waiters: HashMap<i32, oneshot::Sender<Frame>>,
    routes: HashMap<u32, Route>,
    closed: Option<Error>,
    tasks: Vec<AbortHandle>,
}

#[derive(Debug)]
struct Shared {
    router: String,
    address: String,
    writer: mpsc::Sender<Bytes>,
    /// The credit the router grants each stream, when it speaks per-stream credit.
    send_window: Option<u32>,
    next_sequence: AtomicI32,
    latency_us: AtomicU64,
    state: Mutex<State>,
    /// Cancelled when the channel dies ([`Channel::closed`]).
    dead: CancellationToken,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the maps inconsistent (every
        // critical section is a single insert/remove), so a poisoned lock is usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks the channel dead: pending requests fail, routed streams see their queue
    /// end, the tasks stop.
    fn fail(&self, error: Error) {
        let (waiters, routes, tasks) = {
            let mut st = self.state();
            if st.closed.is_some() {
                return;
            }
            tracing::debug!(router = %self.router, address = %self.address, %error, "edge connection closed");
            st.closed = Some(error);
            self.dead.cancel();
            (
                std::mem::take(&mut st.waiters),
                std::mem::take(&mut st.routes),
                std::mem::take(&mut st.tasks),
            )
        };
        for route in routes.values() {
            if let Route::Stream {
                credit: Some(credit),
                ..
            } = route
            {
                credit.close();
            }
        }
        drop((waiters, routes));
        for t in tasks {
            t.abort();
        }
    }
}

/// A handle to one edge connection (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct Channel {
    shared: Arc<Shared>,
}

impl Channel {
    /// Connects to the router at `address` (`host:port`), says hello with the API
    /// session token, and starts the reader, writer and prober tasks.
    pub(crate) async fn connect(
        router: &str,
        address: &str,
        tls: Arc<rustls::ClientConfig>,
        api_token: &str,
        client_info: &str,
        timeout: Duration,
    ) -> Result<Self> {
        let started = Instant::now();
        let fut = handshake(address, tls, api_token, client_info);
        let (stream, decoder, send_window) = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| {
                Error::timed_out(format!("connecting to edge router {router} at {address}"))
            })?
            .map_err(|e| {
                Error::connection(format!(
                    "edge router {router} at {address}: {}",
                    e.message()
                ))
            })?;
        let rtt = started.elapsed();
        let (read, write) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let shared = Arc::new(Shared {
            router: router.to_string(),
            address: address.to_string(),
            writer: tx,
            send_window,
            next_sequence: AtomicI32::new(1),
            latency_us: AtomicU64::new(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX)),
            state: Mutex::new(State::default()),
            dead: CancellationToken::new(),
        });
        let reader = tokio::spawn(read_loop(Arc::clone(&shared), read, decoder));
        let writer = tokio::spawn(write_loop(Arc::clone(&shared), write, rx));
        let prober = tokio::spawn(probe_loop(Arc::downgrade(&shared)));
        shared.state().tasks = vec![
            reader.abort_handle(),
            writer.abort_handle(),
            prober.abort_handle(),
        ];
        tracing::debug!(%router, %address, rtt_us = rtt.as_micros(), "edge connection open");
        Ok(Self { shared })
    }

    /// The router's name.
    pub(crate) fn router(&self) -> &str {
        &self.shared.router
    }

    /// The last measured round trip to the router.
    pub(crate) fn latency(&self) -> Duration {
        Duration::from_micros(self.shared.latency_us.load(Ordering::Relaxed))
    }

    /// Whether the connection is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.state().closed.is_some()
    }

    /// Why the connection is gone (or a generic error if it is not).
    pub(crate) fn closed_error(&self) -> Error {
        self.shared.state().closed.clone().unwrap_or_else(|| {
            Error::connection(format!("edge router {} connection lost", self.router()))
        })
    }

    /// The address connected to.
    pub(crate) fn address(&self) -> &str {
        &self.shared.address
    }

    /// Completes when the connection is dead ([`Self::closed_error`] says why).
    pub(crate) async fn closed(&self) {
        self.shared.dead.cancelled().await;
    }

    /// The next channel sequence number.
    pub(crate) fn next_sequence(&self) -> i32 {
        self.shared.next_sequence.fetch_add(1, Ordering::Relaxed)
    }

    /// The writer queue, for streams that send with backpressure.
    pub(crate) fn writer(&self) -> mpsc::Sender<Bytes> {
        self.shared.writer.clone()
    }

    /// Opens the route of a new stream on `conn_id`: its event queue and, when the
    /// router speaks per-stream credit, its send credit.
    pub(crate) fn open_stream(
        &self,
        conn_id: u32,
    ) -> Result<(mpsc::Receiver<StreamEvent>, Option<Arc<SendCredit>>)> {
        let credit = self.shared.send_window.map(SendCredit::new);
        let queue = match credit {
            Some(_) => STREAM_QUEUE_WITH_CREDIT,
            None => STREAM_QUEUE,
        };
        let (events, rx) = mpsc::channel(queue);
        self.register(
            conn_id,
            Route::Stream {
                events,
                credit: credit.clone(),
            },
        )?;
        Ok((rx, credit))
    }

    /// Grants the router `bytes` more on `conn_id` (per-stream credit), without waiting.
    pub(crate) fn send_credit(&self, conn_id: u32, bytes: u32) {
        let mut out = BytesMut::new();
        let grant = edge::Credit { conn_id, bytes };
        if grant.encode(self.next_sequence(), &mut out).is_ok() {
            let _ = self.send_detached(out.freeze());
        }
    }

    /// Routes what arrives for `conn_id` to `route`.
    pub(crate) fn register(&self, conn_id: u32, route: Route) -> Result<()> {
        let mut st = self.shared.state();
        if let Some(e) = &st.closed {
            return Err(e.clone());
        }
        st.routes.insert(conn_id, route);
        Ok(())
    }

    /// Stops routing `conn_id`.
    pub(crate) fn deregister(&self, conn_id: u32) {
        self.shared.state().routes.remove(&conn_id);
    }

    /// Queues one encoded frame.
    pub(crate) async fn send(&self, frame: Bytes) -> Result<()> {
        self.shared
            .writer
            .send(frame)
            .await
            .map_err(|_| self.closed_error())
    }

    /// Queues one frame from a synchronous context (a `Drop`): at once if there is
    /// room, else from a spawned task (returned, for what must follow the frame), else
    /// not at all (the connection is going away).
    pub(crate) fn send_detached(&self, frame: Bytes) -> Option<JoinHandle<()>> {
        match self.shared.writer.try_send(frame) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => None,
            Err(mpsc::error::TrySendError::Full(frame)) => {
                let rt = tokio::runtime::Handle::try_current().ok()?;
                let writer = self.shared.writer.clone();
                Some(rt.spawn(async move {
                    let _ = writer.send(frame).await;
                }))
            }
        }
    }

    /// Half-closes `conn_id` without waiting: an empty Data with the FIN flag and edge
    /// Seq `seq`. When it had to wait for room, the task sending it is returned: a
    /// later close must wait for it, or it could overtake the FIN.
    pub(crate) fn send_fin_detached(&self, conn_id: u32, seq: u32) -> Option<JoinHandle<()>> {
        let mut out = BytesMut::new();
        proto::data_head(&mut out, self.next_sequence(), conn_id, seq, true, 0).ok()?;
        self.send_detached(out.freeze())
    }

    /// Tells the router `conn_id` is closed (StateClosed with edge Seq `seq`; no answer
    /// comes, spec §4a.8), without waiting. The body is empty for a clean close (as
    /// OpenZiti SDKs send it); a reason marks an abort, which the far side reads as an
    /// error.
    pub(crate) fn send_close_detached(&self, conn_id: u32, seq: u32, reason: &[u8]) {
        let mut out = BytesMut::new();
        let closed = edge::StateClosed {
            conn_id,
            seq,
            reply_for: None,
            reason,
        };
        if closed.encode(self.next_sequence(), &mut out).is_ok() {
            let _ = self.send_detached(out.freeze());
        }
    }

    /// Refuses the Dial with channel sequence `sequence` to `listener` (spec §4b.6).
    pub(crate) async fn send_dial_failed(&self, listener: u32, sequence: i32, reason: &[u8]) {
        let mut out = BytesMut::new();
        let failed = edge::DialFailed {
            conn_id: listener,
            seq: 0,
            reply_for: sequence,
            reason,
        };
        if failed.encode(self.next_sequence(), &mut out).is_ok() {
            let _ = self.send(out.freeze()).await;
        }
    }

    /// Sends a request built by `build(out, sequence)` and waits up to `timeout` for the
    /// frame that answers it (matched by the reply-for header).
    pub(crate) async fn request(
        &self,
        build: impl FnOnce(&mut BytesMut, i32) -> Result<(), EncodeError>,
        timeout: Duration,
    ) -> Result<Frame> {
        let sequence = self.next_sequence();
        let mut out = BytesMut::new();
        build(&mut out, sequence).map_err(|e| Error::protocol(format!("encoding: {e}")))?;
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.state();
            if let Some(e) = &st.closed {
                return Err(e.clone());
            }
            st.waiters.insert(sequence, tx);
        }
        self.send(out.freeze()).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => {
                self.shared.state().waiters.remove(&sequence);
                Err(Error::timed_out(format!(
                    "edge router {} did not answer within {timeout:?}",
                    self.router()
                )))
            }
        }
    }

    /// Closes the connection at once; what is queued is not sent.
    pub(crate) fn close(&self) {
        self.shared
            .fail(Error::closed("edge connection closed by the SDK"));
    }

    /// Closes the connection once what is queued now went out (the closes of streams
    /// just dropped among it), without waiting.
    pub(crate) fn close_when_flushed(&self) {
        // An empty frame is the writer's cue to stop: real frames are never empty.
        if self.send_detached(Bytes::new()).is_none() && self.shared.writer.is_closed() {
            self.close();
        }
    }
}

type Tls = TlsStream<TcpStream>;

/// TCP + TLS + hello (offering per-stream credit); returns the stream, the decoder
/// holding any bytes read past the hello result, and the credit the router grants each
/// stream when it accepted the offer.
async fn handshake(
    address: &str,
    tls: Arc<rustls::ClientConfig>,
    api_token: &str,
    client_info: &str,
) -> Result<(Tls, Decoder, Option<u32>)> {
    let host = weft_identity::endpoint::parse(address)
        .map(|e| e.host)
        .ok_or_else(|| Error::connection(format!("bad router address {address:?}")))?;
    let name = ServerName::try_from(host.clone())
        .map_err(|e| Error::connection(format!("bad router host {host:?}: {e}")))?;
    let tcp = TcpStream::connect(address).await.map_err(|e| {
        Error::connection("TCP connect to the edge router failed")
            .with_router(address)
            .with_source(e)
    })?;
    tcp.set_nodelay(true)
        .map_err(|e| Error::connection(format!("TCP_NODELAY: {e}")))?;
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            Error::connection("TLS handshake with the edge router failed")
                .with_router(address)
                .with_source(e)
        })?;

    let mut out = BytesMut::new();
    edge::Hello {
        session_token: api_token.as_bytes(),
        client_info: client_info.as_bytes(),
    }
    .encode_with_window(0, Some(credit::RECEIVE_WINDOW), &mut out)
    .map_err(|e| Error::protocol(format!("encoding hello: {e}")))?;
    stream
        .write_all(&out)
        .await
        .map_err(|e| Error::connection(format!("sending hello: {e}")))?;

    let mut decoder = Decoder::new(Limits::DEFAULT);
    loop {
        match decoder
            .decode()
            .map_err(|e| Error::protocol(format!("hello result: {e}")))?
        {
            Decoded::Frame(frame) => {
                let result = HelloResult::parse(&frame)
                    .map_err(|e| Error::protocol(format!("hello result: {e}")))?;
                if !result.success {
                    return Err(Error::connection(format!(
                        "the router refused the hello: {}",
                        String::from_utf8_lossy(result.message)
                    )));
                }
                let send_window = edge::stream_window(&frame);
                return Ok((stream, decoder, send_window));
            }
            Decoded::NeedMore { additional } => {
                decoder.buffer_mut().reserve(additional.max(READ_MIN));
                let n = stream
                    .read_buf(decoder.buffer_mut())
                    .await
                    .map_err(|e| Error::connection(format!("reading hello result: {e}")))?;
                if n == 0 {
                    return Err(Error::connection(
                        "the router closed the connection during the hello",
                    ));
                }
            }
        }
    }
}

async fn read_loop(shared: Arc<Shared>, mut read: ReadHalf<Tls>, mut decoder: Decoder) {
    let mut pool = BufPool::new(READ_BUFFER, READ_BUFFERS);
    let error = loop {
        match decoder.decode() {
            Ok(Decoded::Frame(frame)) => {
                if let Err(e) = dispatch(&shared, frame).await {
                    break e;
                }
            }
            Ok(Decoded::NeedMore { additional }) => {
                let buf = decoder.buffer_mut();
                let want = READ_MIN.max(additional);
                if buf.capacity() - buf.len() < want && !buf.try_reclaim(want) {
                    // Frames handed out still share this buffer: carry the partial
                    // frame over to a free pooled buffer and pool this one, to be
                    // reused once those frames are dropped.
                    let spare = pool.get(buf.len() + READ_RESERVE.max(additional));
                    spare.extend_from_slice(buf);
                    std::mem::swap(buf, spare);
                    spare.clear();
                }
                match read.read_buf(buf).await {
                    Ok(0) => {
                        break Error::connection(format!(
                            "edge router {} closed the connection",
                            shared.router
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        break Error::connection(format!("edge router {}: {e}", shared.router));
                    }
                }
            }
            Err(e) => {
                break Error::protocol(format!(
                    "edge router {} sent a malformed frame: {e}",
                    shared.router
                ));
            }
        }
    };
    shared.fail(error);
}

/// Routes one inbound frame. Waiting on a full stream queue is the backpressure that
/// keeps a slow reader from buffering without bound.
async fn dispatch(shared: &Arc<Shared>, frame: Frame) -> Result<()> {
    let inbound = match proto::classify(frame) {
        Ok(inbound) => inbound,
        Err(e) => {
            tracing::warn!(router = %shared.router, error = %e, "dropping a malformed message");
            return Ok(());
        }
    };
    match inbound {
        Inbound::Reply { reply_for, frame } => {
            if let Some(waiter) = shared.state().waiters.remove(&reply_for) {
                let _ = waiter.send(frame);
            }
        }
        Inbound::Data {
            conn_id,
            payload,
            fin,
        } => {
            let sender = match shared.state().routes.get(&conn_id) {
                Some(Route::Stream { events, .. }) => Some(events.clone()),
                _ => None,
            };
            if let Some(sender) = sender {
                if !payload.is_empty() {
                    // Waiting in the stream's queue, a slice would keep its whole
                    // receive buffer (up to 256 KiB) alive: a short one gets its own.
                    let payload = weft_wire::payload::detach(&payload);
                    let _ = sender.send(StreamEvent::Data(payload)).await;
                }
                if fin {
                    let _ = sender.send(StreamEvent::Fin).await;
                }
            }
        }
        Inbound::Closed { conn_id, reason } => {
            let route = shared.state().routes.remove(&conn_id);
            match route {
                Some(Route::Stream { events, credit }) => {
                    if let Some(credit) = credit {
                        credit.close();
                    }
                    let _ = events.send(StreamEvent::Closed(reason)).await;
                }
                Some(Route::Listener(l)) => {
                    let _ = l.send(ListenerEvent::Closed(reason));
                }
                None => {}
            }
        }
        Inbound::Dial {
            listener,
            sequence,
            public_key,
            caller_id,
            app_data,
        } => {
            let route = match shared.state().routes.get(&listener) {
                Some(Route::Listener(l)) => Some(l.clone()),
                _ => None,
            };
            let delivered = route.is_some_and(|l| {
                l.send(ListenerEvent::Dial {
                    sequence,
                    public_key,
                    caller_id,
                    app_data,
                })
                .is_ok()
            });
            if !delivered {
                let channel = Channel {
                    shared: Arc::clone(shared),
                };
                channel
                    .send_dial_failed(listener, sequence, b"unexpected dial request")
                    .await;
            }
        }
        Inbound::LatencyProbe {
            sequence,
            probe_time,
        } => {
            let mut out = BytesMut::new();
            let seq = shared.next_sequence.fetch_add(1, Ordering::Relaxed);
            if proto::latency_reply(&mut out, seq, sequence, probe_time.as_deref()).is_ok() {
                let _ = shared.writer.send(out.freeze()).await;
            }
        }
        Inbound::Credit { conn_id, bytes } => {
            if let Some(Route::Stream {
                credit: Some(credit),
                ..
            }) = shared.state().routes.get(&conn_id)
            {
                credit.grant(bytes);
            }
        }
        Inbound::Ignored(ct) => {
            tracing::debug!(router = %shared.router, content_type = %ct, "ignoring a message");
        }
    }
    Ok(())
}

async fn write_loop(shared: Arc<Shared>, mut write: WriteHalf<Tls>, mut rx: mpsc::Receiver<Bytes>) {
    let result: std::io::Result<()> = async {
        while let Some(frame) = rx.recv().await {
            let mut last = frame.is_empty();
            write.write_all(&frame).await?;
            // Batch what is already queued into the same flush.
            while !last && let Ok(frame) = rx.try_recv() {
                last = frame.is_empty();
                write.write_all(&frame).await?;
            }
            write.flush().await?;
            if last {
                // `close_when_flushed`: everything queued before it went out.
                break;
            }
        }
        Ok(())
    }
    .await;
    let error = match result {
        Ok(()) => Error::closed("edge connection closed"),
        Err(e) => Error::connection(format!("writing to edge router {}: {e}", shared.router)),
    };
    let _ = write.shutdown().await;
    shared.fail(error);
}

/// Measures the round trip to the router every [`PROBE_INTERVAL`] (and keeps idle
/// connections visibly alive).
async fn probe_loop(shared: std::sync::Weak<Shared>) {
    let epoch = Instant::now();
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let channel = Channel { shared: strong };
        let sent = Instant::now();
        let ms = u64::try_from(sent.duration_since(epoch).as_millis()).unwrap_or(u64::MAX);
        let probe = channel
            .request(
                |out, seq| {
                    edge::LatencyProbe {
                        probe_time: Some(&ms.to_le_bytes()),
                    }
                    .encode(seq, out)
                },
                PROBE_TIMEOUT,
            )
            .await;
        match probe {
            Ok(_) => {
                let rtt = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                channel.shared.latency_us.store(rtt, Ordering::Relaxed);
            }
            Err(e) if channel.is_closed() => {
                tracing::debug!(error = %e, "prober stops");
                return;
            }
            Err(e) => {
                tracing::debug!(router = %channel.router(), error = %e, "latency probe lost");
                channel.shared.latency_us.store(
                    u64::try_from(PROBE_TIMEOUT.as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
            }
        }
    }
}
