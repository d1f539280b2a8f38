//! `weft tunnel dial|host` processes carry plain TCP over the overlay.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_testkit::{Network, Tunnel, free_port, pattern};

/// Enrolls a host and a client identity for `service` (Bind for `#{service}-host`, Dial
/// for `#{service}-client`) and starts `weft tunnel host` toward `target` and `weft
/// tunnel dial` on a free local port; returns that port's address and what keeps the
/// processes and identity files alive.
#[allow(clippy::unwrap_used)] // test setup: a failure is the test's failure
async fn tunnels(
    net: &Network,
    service: &str,
    target: &str,
) -> (String, (tempfile::TempDir, Tunnel, Tunnel)) {
    let dir = tempfile::tempdir().unwrap();
    let host_id = dir.path().join("host.json");
    let client_id = dir.path().join("client.json");
    net.enrolled(&format!("{service}-h"), &[&format!("{service}-host")])
        .await
        .save(&host_id)
        .unwrap();
    net.enrolled(&format!("{service}-c"), &[&format!("{service}-client")])
        .await
        .save(&client_id)
        .unwrap();
    let host = Tunnel::start("host", &host_id, service, &["--target", target]);
    let listen = format!("127.0.0.1:{}", free_port());
    let dial = Tunnel::start("dial", &client_id, service, &["--listen", &listen]);
    (listen, (dir, host, dial))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_rides_the_overlay_through_tunnel_processes() {
    let net = Network::start().await;
    net.service("tcp", &["tcp"], true).await;

    // A plain TCP server that answers each connection with the reverse of what it got.
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = server.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = server.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                sock.read_to_end(&mut got).await.unwrap();
                got.reverse();
                sock.write_all(&got).await.unwrap();
            });
        }
    });

    let (listen, _tunnels) = tunnels(&net, "tcp", &target).await;

    for round in 0..3u32 {
        let mut sock = TcpStream::connect(&listen).await.unwrap();
        let data = pattern(1_000_000 + round as usize, round);
        sock.write_all(&data).await.unwrap();
        // Half-close travels as a FIN: the server sees EOF and answers.
        sock.shutdown().await.unwrap();
        let mut back = Vec::new();
        sock.read_to_end(&mut back).await.unwrap();
        let mut expected = data;
        expected.reverse();
        assert_eq!(back.len(), expected.len(), "round {round}");
        assert!(back == expected, "round {round}: bytes differ");
    }
}

/// Bursts of odd sizes with pauses between them, both ways through end-to-end encrypted
/// tunnels: a sealed stream sends a multiple of 8 bytes from each large read and carries
/// the rest to the next message, or sends it alone when the socket has nothing more yet
/// (the pauses). Every byte arrives once and in order (sha256 of each direction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_sized_bursts_cross_encrypted_tunnels_whole_and_in_order() {
    use sha2::{Digest, Sha256};
    let net = Network::start().await;
    net.service("bursts", &["bursts"], true).await;
    // An echo server with a buffer of an odd size, so its writes are odd-sized too.
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = server.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = server.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 70_001];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 || sock.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let (listen, _tunnels) = tunnels(&net, "bursts", &target).await;

    let sock = TcpStream::connect(&listen).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    // Sizes around the 16 KiB from which a sealed write sends a multiple of 8, and up
    // to past a 64 KiB message, each residue mod 8.
    let sizes: Vec<usize> = (0..48)
        .map(|i| [16_377, 16_391, 40_003, 65_541, 131_075, 7, 16_384, 99][i % 8] + i)
        .collect();
    let total: usize = sizes.iter().sum::<usize>() + 100_003;
    let writer = tokio::spawn(async move {
        let mut sent = Sha256::new();
        for (i, &len) in sizes.iter().enumerate() {
            let burst = pattern(len, i as u32);
            sent.update(&burst);
            wr.write_all(&burst).await.unwrap();
            if i % 3 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        // A last large burst of an odd size and the end right behind it: what is
        // carried past its last multiple of 8 goes out when the read sees the end.
        let last = pattern(100_003, 99);
        sent.update(&last);
        wr.write_all(&last).await.unwrap();
        wr.shutdown().await.unwrap();
        sent.finalize()
    });
    let mut got = Sha256::new();
    let mut received = 0usize;
    let mut buf = vec![0u8; 50_000];
    let read_all = async {
        loop {
            let n = rd.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.update(&buf[..n]);
            received += n;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), read_all)
        .await
        .expect("the echo ended within a minute");
    let sent = writer.await.unwrap();
    assert_eq!(received, total, "every byte came back once");
    assert_eq!(got.finalize(), sent, "in order and unaltered");
}

/// Hundreds of idle connections through one pair of plain (not end-to-end encrypted)
/// tunnel endpoints: each stays usable, and an idle one holds nothing the others need
/// (an idle stream once kept a slot of its edge connection's shared write queue, and the
/// 257th connection hung).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_idle_connections_share_the_tunnel() {
    const CONNS: usize = 400;
    let net = Network::start().await;
    net.service("idle", &["idle"], false).await;
    // An echo server.
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = server.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = server.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 || sock.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let (listen, _tunnels) = tunnels(&net, "idle", &target).await;

    let mut held = Vec::with_capacity(CONNS);
    for i in 0..CONNS {
        let round_trip = async {
            let mut sock = TcpStream::connect(&listen).await.unwrap();
            sock.write_all(&[i as u8]).await.unwrap();
            let mut back = [0u8; 1];
            sock.read_exact(&mut back).await.unwrap();
            assert_eq!(back[0], i as u8);
            sock
        };
        let sock = tokio::time::timeout(std::time::Duration::from_secs(20), round_trip)
            .await
            .unwrap_or_else(|_| panic!("connection {i} got no echo while {i} others idle"));
        held.push(sock);
    }
    // The first ones still work after all the others opened.
    for (i, sock) in held.iter_mut().enumerate().take(3) {
        sock.write_all(b"again").await.unwrap();
        let mut back = [0u8; 5];
        sock.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"again", "connection {i}");
    }
}

// ---- failures end the local connection with a reset, never a clean end ----

/// A TCP server that sends `len` bytes (rounded up to 64 KiB) on every connection, then
/// waits for the peer; each connection's outcome (`Ok(())` when all was written and the
/// peer closed, else the error) is sent on the returned channel.
#[allow(clippy::unwrap_used)] // test setup: a failure is the test's failure
async fn sender(
    len: usize,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<std::io::Result<()>>,
) {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = server.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = server.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let block = pattern(64 * 1024, 7);
                let mut outcome = Ok(());
                for _ in 0..len.div_ceil(block.len()) {
                    if let Err(e) = sock.write_all(&block).await {
                        outcome = Err(e);
                        break;
                    }
                }
                if outcome.is_ok() {
                    // Wait for the peer's end: EOF, or the reset of a failure.
                    let mut rest = Vec::new();
                    outcome = sock.read_to_end(&mut rest).await.map(drop);
                }
                let _ = tx.send(outcome);
            });
        }
    });
    (target, rx)
}

/// Checks that `bytes`, read from offset `at` of a [`sender`] stream, are what it sent:
/// nothing before a failure was lost, duplicated, reordered or altered.
fn check_sent(at: usize, bytes: &[u8], block: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        let offset = at + i;
        assert_eq!(*b, block[offset % block.len()], "byte {offset} differs");
    }
}

/// Reads `sock` (a [`sender`] stream) to its end, checking every byte: the bytes read
/// and how it ended.
async fn read_all(sock: &mut TcpStream, from: usize) -> (usize, std::io::Result<usize>) {
    let block = pattern(64 * 1024, 7);
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(30), sock.read(&mut buf)).await {
            Err(_) => panic!("the local connection neither ended nor failed in 30 s"),
            Ok(Ok(0)) => return (got, Ok(got)),
            Ok(Ok(n)) => {
                check_sent(from + got, &buf[..n], &block);
                got += n;
            }
            Ok(Err(e)) => return (got, Err(e)),
        }
    }
}

/// Reads at least `at_least` bytes of a [`sender`] stream from `sock`, checking them;
/// returns how many it read.
#[allow(clippy::unwrap_used)] // test code: a failure is the test's failure
async fn read_some(sock: &mut TcpStream, at_least: usize) -> usize {
    let block = pattern(64 * 1024, 7);
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < at_least {
        let n = sock.read(&mut buf).await.unwrap();
        assert!(n > 0, "ended after {got} bytes");
        check_sent(got, &buf[..n], &block);
        got += n;
    }
    got
}

const BIG: usize = 100 * 1024 * 1024;

/// Asserts that a local connection ended with a reset.
fn assert_reset(end: std::io::Result<usize>, got: usize, what: &str) {
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "{what}, after {got} bytes"
    );
}

/// Waits for the [`sender`]'s connection to end and asserts it ended with an error.
#[allow(clippy::expect_used, clippy::unwrap_used)] // test code
async fn assert_server_failed(
    outcomes: &mut tokio::sync::mpsc::UnboundedReceiver<std::io::Result<()>>,
) {
    let server_end = tokio::time::timeout(std::time::Duration::from_secs(30), outcomes.recv())
        .await
        .expect("the target server's connection did not end")
        .unwrap();
    assert!(
        server_end.is_err(),
        "the target server saw a clean end: {server_end:?}"
    );
}

/// The hosting `weft tunnel host` process dies mid-transfer: the local client of
/// `weft tunnel dial` reads a reset after a partial transfer, never a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_tunnel_host_resets_the_dialing_client() {
    let net = Network::start().await;
    net.service("die-host", &["die-host"], false).await;
    let (target, _outcomes) = sender(BIG).await;
    let (listen, (_dir, mut host, _dial)) = tunnels(&net, "die-host", &target).await;
    let mut sock = TcpStream::connect(&listen).await.unwrap();
    let first = read_some(&mut sock, 1024 * 1024).await;
    host.kill();
    let (got, end) = read_all(&mut sock, first).await;
    assert!(got < BIG);
    assert_reset(end, got, "local client");
}

/// The dialing `weft tunnel dial` process dies mid-transfer: the target server behind
/// `weft tunnel host` sees its connection reset, not a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_tunnel_dialer_resets_the_target_connection() {
    let net = Network::start().await;
    net.service("die-dial", &["die-dial"], false).await;
    let (target, mut outcomes) = sender(BIG).await;
    let (listen, (_dir, _host, mut dial)) = tunnels(&net, "die-dial", &target).await;
    let mut sock = TcpStream::connect(&listen).await.unwrap();
    read_some(&mut sock, 1024 * 1024).await;
    dial.kill();
    assert_server_failed(&mut outcomes).await;
}

/// The router dies mid-transfer: both local ends are reset, the dialing client and
/// the target server behind `weft tunnel host`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_router_resets_both_local_ends() {
    let mut net = Network::start().await;
    net.service("die-router", &["die-router"], false).await;
    let (target, mut outcomes) = sender(BIG).await;
    let (listen, _tunnels) = tunnels(&net, "die-router", &target).await;
    let mut sock = TcpStream::connect(&listen).await.unwrap();
    let first = read_some(&mut sock, 1024 * 1024).await;
    net.router.kill();
    let (got, end) = read_all(&mut sock, first).await;
    assert_reset(end, got, "dialing client");
    assert_server_failed(&mut outcomes).await;
}

/// The target resets its connection to `weft tunnel host` mid-transfer, or cannot be
/// reached at all: the dialing client is reset too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_reset_or_unreachable_resets_the_dialing_client() {
    let net = Network::start().await;
    net.service("rst", &["rst"], false).await;
    // Sends 1 MiB, then resets.
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = server.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = server.accept().await {
            // 1 MiB of the sender's pattern, so the client can check what arrives.
            let block = pattern(64 * 1024, 7);
            for _ in 0..16 {
                sock.write_all(&block).await.unwrap();
            }
            // A zero linger does not block on drop (the deprecation's concern).
            #[allow(deprecated)]
            sock.set_linger(Some(std::time::Duration::ZERO)).unwrap();
            drop(sock);
        }
    });
    let (listen, _tunnels) = tunnels(&net, "rst", &target).await;
    let mut sock = TcpStream::connect(&listen).await.unwrap();
    let (got, end) = read_all(&mut sock, 0).await;
    assert_reset(end, got, "local client");

    // A target nobody listens on.
    let closed = format!("127.0.0.1:{}", free_port());
    net.service("nowhere", &["nowhere"], false).await;
    let (listen, _tunnels) = tunnels(&net, "nowhere", &closed).await;
    let mut sock = TcpStream::connect(&listen).await.unwrap();
    let (got, end) = read_all(&mut sock, 0).await;
    assert_reset(end, got, "local client");
}

/// No router is reachable: a connection accepted by `weft tunnel dial` is refused with
/// a reset, not accepted and ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_router_the_dialing_client_is_reset() {
    let mut net = Network::start().await;
    net.service("norouter", &["norouter"], false).await;
    let (target, _outcomes) = sender(1024).await;
    let (listen, _tunnels) = tunnels(&net, "norouter", &target).await;
    net.router.kill();
    let mut sock = TcpStream::connect(&listen).await.unwrap();
    let (got, end) = read_all(&mut sock, 0).await;
    assert_reset(end, got, "local client");
}
