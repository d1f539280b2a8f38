//! The fault-injecting proxy on real sockets: bytes pass unchanged, and each fault does
//! what it says (lower bounds only on time, so a loaded machine passes too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_testkit::pattern;
use weft_testkit::proxy::FaultProxy;

const WAIT: Duration = Duration::from_secs(30);

/// An echo server; returns its address.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A server that reads until EOF or an error and sends what it got on `tx`.
async fn sink_server() -> (SocketAddr, tokio::sync::mpsc::Receiver<(Vec<u8>, bool)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let clean = s.read_to_end(&mut got).await.is_ok();
                let _ = tx.send((got, clean)).await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn bytes_pass_unchanged_both_ways() {
    let proxy = FaultProxy::start(echo_server().await).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let data = pattern(1 << 20, 7);
    let (mut r, mut w) = c.split();
    let mut back = vec![0u8; data.len()];
    let (wrote, read) = tokio::join!(w.write_all(&data), r.read_exact(&mut back));
    wrote.unwrap();
    read.unwrap();
    assert!(back == data, "echoed bytes differ");
    assert_eq!(
        proxy
            .stats()
            .bytes_up
            .load(std::sync::atomic::Ordering::Relaxed),
        1 << 20
    );
}

#[tokio::test]
async fn latency_holds_each_direction_back() {
    let proxy = FaultProxy::start(echo_server().await).await;
    proxy.set_latency(Duration::from_millis(100));
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let start = Instant::now();
    c.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tokio::time::timeout(WAIT, c.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"ping");
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    proxy.heal();
    let start = Instant::now();
    c.write_all(b"pong").await.unwrap();
    tokio::time::timeout(WAIT, c.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"pong");
    // Healed: no added latency (a generous bound, not a timing claim).
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_stall_holds_bytes_until_resumed() {
    let proxy = FaultProxy::start(echo_server().await).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.stall();
    c.write_all(b"held").await.unwrap();
    let mut back = [0u8; 4];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.read_exact(&mut back))
            .await
            .is_err(),
        "nothing passes a stall"
    );
    proxy.resume();
    tokio::time::timeout(WAIT, c.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"held");
}

#[tokio::test]
async fn a_cut_forwards_exactly_that_many_bytes_then_closes() {
    let (sink, mut got) = sink_server().await;
    let proxy = FaultProxy::start(sink).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    // A first connection-opening chunk, then the cut.
    c.write_all(&pattern(100, 1)).await.unwrap();
    while proxy
        .stats()
        .bytes_up
        .load(std::sync::atomic::Ordering::Relaxed)
        < 100
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.cut_after(1000);
    let data = pattern(50_000, 2);
    // The write may fail once the proxy closed: that is the point.
    let _ = c.write_all(&data).await;
    let (bytes, clean) = tokio::time::timeout(WAIT, got.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(clean, "a cut is a close, not a reset");
    assert_eq!(
        bytes.len(),
        1100,
        "100 before the cut and exactly 1000 after"
    );
    assert_eq!(&bytes[100..], &data[..1000]);
    // The client side is closed too.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, c.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(read.is_ok() || read.is_err(), "ended");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn reset_all_resets_both_sides() {
    let (sink, mut got) = sink_server().await;
    let proxy = FaultProxy::start(sink).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(b"before").await.unwrap();
    while proxy
        .stats()
        .bytes_up
        .load(std::sync::atomic::Ordering::Relaxed)
        < 6
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.reset_all();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, c.read(&mut buf)).await.unwrap();
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "the client sees a reset"
    );
    let (bytes, clean) = tokio::time::timeout(WAIT, got.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bytes, b"before");
    assert!(!clean, "the server sees a reset too");
}

#[tokio::test]
async fn refused_connections_are_reset() {
    let proxy = FaultProxy::start(echo_server().await).await;
    proxy.refuse(true);
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut buf = [0u8; 4];
    let read = tokio::time::timeout(WAIT, c.read(&mut buf)).await.unwrap();
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset)
    );
    proxy.refuse(false);
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(b"fine").await.unwrap();
    tokio::time::timeout(WAIT, c.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"fine");
}
