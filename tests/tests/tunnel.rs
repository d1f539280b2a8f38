//! `weft tunnel dial|host` processes carry plain TCP over the overlay.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_tests::{Network, Tunnel, free_port, pattern};

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
