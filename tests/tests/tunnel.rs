//! `weft tunnel dial|host` processes carry plain TCP over the overlay.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_tests::{Network, Tunnel, free_port, pattern};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_rides_the_overlay_through_tunnel_processes() {
    let net = Network::start().await;
    net.service("tcp", &["tcp"], true).await;
    let dir = tempfile::tempdir().unwrap();
    let host_id = dir.path().join("host.json");
    let client_id = dir.path().join("client.json");
    net.enrolled("tcp-h", &["tcp-host"])
        .await
        .save(&host_id)
        .unwrap();
    net.enrolled("tcp-c", &["tcp-client"])
        .await
        .save(&client_id)
        .unwrap();

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

    let _host = Tunnel::start("host", &host_id, "tcp", &["--target", &target]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _dial = Tunnel::start("dial", &client_id, "tcp", &["--listen", &listen]);

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
