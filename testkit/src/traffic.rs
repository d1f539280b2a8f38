//! Traffic for system tests that break things mid-transfer: a paced echo transfer whose
//! every byte is hashed both ways ([`PacedEcho`]), echo services and dials through the
//! SDK, and reading a process's Prometheus metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::fixtures::pattern;

/// How long the helpers here wait for progress before failing the test.
pub const WAIT: Duration = Duration::from_secs(60);

/// A paced transfer through an echo: 32 KiB every 5 ms written, everything read back,
/// both directions hashed, until [`PacedEcho::finish`].
#[derive(Debug)]
pub struct PacedEcho {
    stop: Arc<AtomicBool>,
    echoed: Arc<AtomicU64>,
    writer: JoinHandle<(u64, Vec<u8>)>,
    reader: JoinHandle<(u64, Vec<u8>)>,
}

impl PacedEcho {
    /// Starts writing into and reading from `stream` (connected to an echo).
    pub fn start<S>(stream: S) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let echoed = Arc::new(AtomicU64::new(0));
        let (mut rd, mut wr) = tokio::io::split(stream);
        let writer = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move {
                let mut hash = Sha256::new();
                let mut sent = 0u64;
                let mut seed = 100;
                while !stop.load(Ordering::Relaxed) {
                    let chunk = pattern(32 * 1024, seed);
                    seed += 1;
                    hash.update(&chunk);
                    wr.write_all(&chunk).await.expect("paced write failed");
                    sent += chunk.len() as u64;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                wr.shutdown().await.expect("paced shutdown failed");
                (sent, hash.finalize().to_vec())
            }
        });
        let reader = tokio::spawn({
            let echoed = Arc::clone(&echoed);
            async move {
                let mut hash = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = rd.read(&mut buf).await.expect("paced read failed");
                    if n == 0 {
                        break;
                    }
                    hash.update(buf.get(..n).unwrap_or_default());
                    echoed.fetch_add(n as u64, Ordering::Relaxed);
                }
                (echoed.load(Ordering::Relaxed), hash.finalize().to_vec())
            }
        });
        Self {
            stop,
            echoed,
            writer,
            reader,
        }
    }

    /// Bytes echoed back so far.
    pub fn echoed(&self) -> u64 {
        self.echoed.load(Ordering::Relaxed)
    }

    /// Waits until `more` bytes beyond what was echoed now came back; fails the test
    /// (naming `what`) when the stream stalls for [`WAIT`].
    pub async fn advance(&self, more: u64, what: &str) {
        self.reach(self.echoed() + more, what).await;
    }

    /// Waits until `target` bytes in all came back (see [`Self::advance`]).
    pub async fn reach(&self, target: u64, what: &str) {
        let deadline = Instant::now() + WAIT;
        while self.echoed() < target {
            assert!(Instant::now() < deadline, "{what}: the stream stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops writing, waits for the echo to drain and checks that every byte came
    /// back, in order (sha256 equal); returns the bytes sent.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let (sent, sent_hash) = tokio::time::timeout(WAIT, self.writer)
            .await
            .expect("the writer did not finish")
            .expect("the writer failed");
        let (got, got_hash) = tokio::time::timeout(WAIT, self.reader)
            .await
            .expect("the echo did not finish")
            .expect("the reader failed");
        assert_eq!(got, sent, "echoed {got} of {sent} bytes");
        assert_eq!(got_hash, sent_hash, "echoed bytes differ");
        sent
    }
}

/// The Prometheus text served at `http://127.0.0.1:{port}/metrics`.
pub async fn scrape(port: u16) -> String {
    ops_get(port, "/metrics").await.1
}

/// The status code and body of the operations endpoint at `127.0.0.1:{port}` for
/// `GET path` (a plain HTTP/1.0 request: the endpoint closes after one answer).
pub async fn ops_get(port: u16, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("operations endpoint connection failed");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("operations endpoint request failed");
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .expect("operations endpoint answer timed out")
        .expect("operations endpoint answer failed");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    match out.split_once("\r\n\r\n") {
        Some((_, body)) => (status, body.to_owned()),
        None => (status, out),
    }
}

/// The value of the unlabelled series `name` in `text`.
pub fn metric_value(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics:\n{text}"))
}

/// Scrapes `port` until `done` holds; returns that text (fails naming `what`).
pub async fn wait_scrape(port: u16, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = scrape(port).await;
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}; metrics:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a router's metrics say its control channel is up to `address`.
pub fn control_connected_to(text: &str, address: &str) -> bool {
    text.contains(&format!(
        "weft_router_control_connected{{controller=\"{address}\"}} 1"
    ))
}

/// Sends `len` bytes of a pattern through an echo and checks what comes back.
#[cfg(feature = "sdk")]
pub async fn echo(stream: &mut weft_sdk::Stream, len: usize, seed: u32) {
    let data = pattern(len, seed);
    let (mut r, mut w) = tokio::io::split(stream);
    let mut back = vec![0u8; len];
    let (wrote, read) = tokio::time::timeout(WAIT, async {
        tokio::join!(w.write_all(&data), r.read_exact(&mut back))
    })
    .await
    .expect("the echo did not come back in time");
    wrote.expect("echo write failed");
    read.expect("echo read failed");
    assert_eq!(
        Sha256::digest(&back),
        Sha256::digest(&data),
        "echoed bytes differ"
    );
}

/// Binds `service` and echoes every stream accepted on it.
#[cfg(feature = "sdk")]
pub async fn serve_echo(host: &weft_sdk::Context, service: &str) {
    let listener = host.bind(service).await.expect("bind failed");
    tokio::spawn(async move {
        while let Ok(mut s) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(&mut s);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

/// Dials `service` until it works (after a control reconnect the host's terminator is
/// registered anew first).
#[cfg(feature = "sdk")]
pub async fn dial_soon(client: &weft_sdk::Context, service: &str) -> weft_sdk::Stream {
    let deadline = Instant::now() + WAIT;
    loop {
        match client.dial(service).await {
            Ok(s) => return s,
            Err(e) => {
                assert!(Instant::now() < deadline, "no dial of {service}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// `streams` streams, `at_once` at a time, on each of which the host writes `len`
/// bytes, half-closes and drops the stream before the dialer reads anything.
#[cfg(feature = "sdk")]
pub async fn closes_right_after_writing(
    host: &weft_sdk::Context,
    client: &weft_sdk::Context,
    service: &str,
    streams: u32,
    at_once: u32,
    len: usize,
) {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use tokio::sync::oneshot;

    let listener = host.bind(service).await.unwrap();
    let replies: Arc<Vec<Vec<u8>>> = Arc::new((0..4).map(|s| pattern(len, s)).collect());
    let sums: Vec<[u8; 32]> = replies
        .iter()
        .map(|r| <[u8; 32]>::from(Sha256::digest(r)))
        .collect();
    // The host tells the dialer with that id when it has dropped its stream.
    let dropped: Arc<Mutex<HashMap<u32, oneshot::Sender<()>>>> = Arc::default();
    let server = {
        let (replies, dropped) = (replies.clone(), dropped.clone());
        tokio::spawn(async move {
            for _ in 0..streams {
                let mut s = listener.accept().await.unwrap();
                let (replies, dropped) = (replies.clone(), dropped.clone());
                tokio::spawn(async move {
                    let id = s.read_u32().await.unwrap();
                    s.write_all(&replies[id as usize % 4]).await.unwrap();
                    s.shutdown().await.unwrap();
                    drop(s);
                    let tx = dropped.lock().unwrap().remove(&id);
                    tx.unwrap().send(()).unwrap();
                });
            }
        })
    };
    let started = Instant::now();
    for round in 0..streams / at_once {
        let mut dials = Vec::new();
        for i in 0..at_once {
            let id = round * at_once + i;
            let (tx, rx) = oneshot::channel();
            dropped.lock().unwrap().insert(id, tx);
            let mut s = client.dial(service).await.unwrap();
            dials.push(tokio::spawn(async move {
                s.write_u32(id).await.unwrap();
                // Read nothing until the host is gone.
                tokio::time::timeout(Duration::from_secs(60), rx)
                    .await
                    .expect("the host never dropped its stream")
                    .unwrap();
                let mut got = Vec::with_capacity(len);
                let read = s.read_to_end(&mut got).await;
                (
                    id,
                    read.map_err(|e| e.to_string()),
                    <[u8; 32]>::from(Sha256::digest(&got)),
                    got.len(),
                )
            }));
        }
        for dial in dials {
            let (id, read, sum, got_len) = dial.await.unwrap();
            assert_eq!(read, Ok(len), "stream {id} ended early");
            assert_eq!(got_len, len, "stream {id}");
            assert!(sum == sums[id as usize % 4], "stream {id}: other bytes");
        }
    }
    server.await.unwrap();
    eprintln!(
        "{streams} streams of {len} B closed right after writing: all complete in {:?}",
        started.elapsed()
    );
}

/// Binds `service` and accepts streams whose application never reads: each is kept,
/// unread, until the returned task is aborted.
#[cfg(feature = "sdk")]
pub async fn serve_never_reading(host: &weft_sdk::Context, service: &str) -> JoinHandle<()> {
    let listener = host.bind(service).await.expect("bind failed");
    tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok(s) = listener.accept().await {
            kept.push(s);
        }
    })
}

/// Writes 1-byte writes (one Data frame each from the SDK) on `stream` until one waits
/// `stall` (the overlay stopped taking them) or `most` were written; returns how many
/// were. A write that fails fails the test.
pub async fn drip<S: AsyncWrite + Unpin>(stream: &mut S, most: usize, stall: Duration) -> usize {
    for sent in 0..most {
        match tokio::time::timeout(stall, stream.write_all(&[0x5a])).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("write {sent} failed: {e}"),
            Err(_) => return sent,
        }
    }
    most
}
