//! A fault-injecting TCP proxy, because the machines' kernel has no `netem`: put it
//! between two processes (a router and its controller, two routers on a link) and
//! impair what flows through it while a test runs. The model is smoltcp's
//! fault-injecting devices: each fault is a knob turned at run time.
//!
//! - [`FaultProxy::set_latency`]: every chunk is held back that long, each way;
//! - [`FaultProxy::stall`] / [`FaultProxy::resume`]: nothing is forwarded meanwhile
//!   (the bytes wait in the proxy and then in the kernel's buffers: back-pressure);
//! - [`FaultProxy::cut_after`]: each connection forwards exactly that many more bytes
//!   per direction, then both its sockets are closed (a byte-exact cut);
//! - [`FaultProxy::reset_all`]: every open connection is reset (RST on both sides);
//! - [`FaultProxy::reset_connection`]: one connection (by the order it was accepted in)
//!   is reset;
//! - [`FaultProxy::refuse`]: new connections are reset at once.
//!
//! Memory is bounded: at most [`QUEUE_CHUNKS`] chunks of [`CHUNK`] bytes wait per
//! direction of a connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The largest chunk read at once.
pub const CHUNK: usize = 16 * 1024;
/// Chunks waiting per direction of a connection, at most.
pub const QUEUE_CHUNKS: usize = 64;

/// The faults in force; every connection watches them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Faults {
    latency: Duration,
    stalled: bool,
    /// Bytes each direction may still forward (per connection, from when it was set),
    /// with a generation so a new setting reaches connections already open.
    cut_after: Option<(u64, u64)>,
    /// Bumped to reset every open connection.
    reset_generation: u64,
    /// Connections to reset, by the order they were accepted in (from 0).
    reset_ids: Vec<u64>,
    refuse: bool,
}

/// Counters of what went through.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Bytes forwarded client → upstream.
    pub bytes_up: AtomicU64,
    /// Bytes forwarded upstream → client.
    pub bytes_down: AtomicU64,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`, with faults a test turns on and off.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on an ephemeral loopback port (in the current tokio
    /// runtime).
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (faults, watcher) = watch::channel(Faults::default());
        let stats = Arc::new(ProxyStats::default());
        let task = tokio::spawn(accept_loop(listener, upstream, watcher, stats.clone()));
        Self {
            addr,
            faults,
            stats,
            task,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What went through so far.
    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }

    /// Holds every chunk back by `latency`, each way (zero: none).
    pub fn set_latency(&self, latency: Duration) {
        self.faults.send_modify(|f| f.latency = latency);
    }

    /// Stops forwarding, both ways, until [`Self::resume`].
    pub fn stall(&self) {
        self.faults.send_modify(|f| f.stalled = true);
    }

    /// Forwards again after [`Self::stall`].
    pub fn resume(&self) {
        self.faults.send_modify(|f| f.stalled = false);
    }

    /// Every open connection, and every new one, forwards exactly `bytes` more bytes in
    /// each direction and is then closed on both sides (FIN, not RST).
    pub fn cut_after(&self, bytes: u64) {
        self.faults.send_modify(|f| {
            let generation = f.cut_after.map_or(1, |(_, g)| g + 1);
            f.cut_after = Some((bytes, generation));
        });
    }

    /// Resets the `n`th connection accepted (from 0), if it is open (RST to both sides).
    pub fn reset_connection(&self, n: u64) {
        self.faults.send_modify(|f| f.reset_ids.push(n));
    }

    /// Resets every open connection (RST to both sides).
    pub fn reset_all(&self) {
        self.faults.send_modify(|f| f.reset_generation += 1);
    }

    /// While `refuse`, new connections are reset as soon as they are accepted.
    pub fn refuse(&self, refuse: bool) {
        self.faults.send_modify(|f| f.refuse = refuse);
    }

    /// Removes every fault (latency, stall, cut, refusal).
    pub fn heal(&self) {
        self.faults.send_modify(|f| {
            let reset_generation = f.reset_generation;
            let reset_ids = std::mem::take(&mut f.reset_ids);
            *f = Faults {
                reset_generation,
                reset_ids,
                ..Faults::default()
            };
        });
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Open connections end with it: the reset makes their tasks close both sides.
        self.reset_all();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Receiver<Faults>,
    stats: Arc<ProxyStats>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let id = stats.connections.fetch_add(1, Ordering::Relaxed);
        if faults.borrow().refuse {
            reset(&client);
            continue;
        }
        let faults = faults.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                reset(&client);
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            connection(id, client, server, faults, stats).await;
        });
    }
}

/// Makes the next close of `stream` a reset (SO_LINGER 0).
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Whether `f` resets connection `id`, opened when the reset generation was
/// `reset_at_start`.
fn resets(f: &Faults, id: u64, reset_at_start: u64) -> bool {
    f.reset_generation != reset_at_start || f.reset_ids.contains(&id)
}

/// Resolves when the proxy resets this connection or it is stopped.
async fn until_stopped(
    faults: &mut watch::Receiver<Faults>,
    id: u64,
    reset_at_start: u64,
    stopped: &mut watch::Receiver<Option<Stop>>,
) -> Stop {
    loop {
        if resets(&faults.borrow_and_update(), id, reset_at_start) {
            return Stop::Reset;
        }
        if let Some(s) = *stopped.borrow_and_update() {
            return s;
        }
        tokio::select! {
            changed = faults.changed() => if changed.is_err() { return Stop::Reset },
            changed = stopped.changed() => if changed.is_err() { return Stop::Reset },
        }
    }
}

/// How a connection is ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Close both sides (FIN): a cut.
    Close,
    /// Reset both sides (RST).
    Reset,
}

/// One proxied connection: a pump each way; a reset or a cut by either ends both.
async fn connection(
    id: u64,
    client: TcpStream,
    server: TcpStream,
    faults: watch::Receiver<Faults>,
    stats: Arc<ProxyStats>,
) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let (stop, _) = watch::channel(None::<Stop>);
    let stop = Arc::new(stop);
    let up = tokio::spawn(pump(
        id,
        cr,
        sw,
        faults.clone(),
        stats.clone(),
        true,
        stop.clone(),
    ));
    let down = tokio::spawn(pump(id, sr, cw, faults, stats, false, stop));
    let _ = tokio::join!(up, down);
}

/// Forwards `from` → `to` under the faults in force, until the source closes or the
/// connection is stopped.
async fn pump(
    id: u64,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
    stats: Arc<ProxyStats>,
    up: bool,
    stop: Arc<watch::Sender<Option<Stop>>>,
) {
    let reset_at_start = faults.borrow().reset_generation;
    let mut stopped = stop.subscribe();
    // Reader: chunks with their arrival time into a bounded queue.
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE_CHUNKS);
    let reader = tokio::spawn(async move {
        loop {
            let mut buf = vec![0u8; CHUNK];
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send((Instant::now(), buf)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let counter = if up {
        &stats.bytes_up
    } else {
        &stats.bytes_down
    };
    // (bytes this direction may still forward, the cut setting's generation)
    let mut cut: Option<(u64, u64)> = None;
    let outcome: Option<Stop> = 'forward: loop {
        // The next chunk, unless the connection is stopped or reset first.
        let (arrived, chunk) = loop {
            let f = faults.borrow_and_update().clone();
            if resets(&f, id, reset_at_start) {
                break 'forward Some(Stop::Reset);
            }
            if let Some(s) = *stopped.borrow_and_update() {
                break 'forward Some(s);
            }
            if let Some((bytes, generation)) = f.cut_after {
                if cut.is_none_or(|(_, g)| g != generation) {
                    cut = Some((bytes, generation));
                }
            }
            if cut.is_some_and(|(left, _)| left == 0) {
                break 'forward Some(Stop::Close);
            }
            tokio::select! {
                next = rx.recv() => match next {
                    Some(next) => break next,
                    None => break 'forward None,
                },
                _ = faults.changed() => {}
                _ = stopped.changed() => {}
            }
        };
        // Wait out the latency and any stall.
        loop {
            let f = faults.borrow_and_update().clone();
            if resets(&f, id, reset_at_start) {
                break 'forward Some(Stop::Reset);
            }
            if let Some(s) = *stopped.borrow_and_update() {
                break 'forward Some(s);
            }
            let due = arrived + f.latency;
            if !f.stalled && Instant::now() >= due {
                break;
            }
            tokio::select! {
                _ = faults.changed() => {}
                _ = stopped.changed() => {}
                () = tokio::time::sleep_until(due), if !f.stalled => {}
            }
        }
        let mut chunk = &chunk[..];
        if let Some((left, generation)) = cut {
            let take = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
            chunk = &chunk[..take];
            cut = Some((left - take as u64, generation));
        }
        // A peer that does not read must not keep a reset from happening.
        tokio::select! {
            written = to.write_all(chunk) => {
                if written.is_err() {
                    break None;
                }
            }
            s = until_stopped(&mut faults, id, reset_at_start, &mut stopped) => break Some(s),
        }
        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    };
    reader.abort();
    match outcome {
        Some(Stop::Reset) => {
            stop.send_replace(Some(Stop::Reset));
            let _ = socket2::SockRef::from(to.as_ref()).set_linger(Some(Duration::ZERO));
            // Dropping a write half would send a FIN first; without it the close is a
            // bare RST once the other pump drops the read half.
            to.forget();
        }
        Some(Stop::Close) => {
            if stop.borrow().is_none() {
                stop.send_replace(Some(Stop::Close));
            }
            let _ = to.shutdown().await;
        }
        // The source closed: pass the close on; the other direction goes on.
        None => {
            let _ = to.shutdown().await;
        }
    }
}
