//! The Rust SDK against real controller and router processes on loopback.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_sdk::{Context, ErrorKind, Listener, Stream};
use weft_testkit::{Network, pattern};

const TEN_MB: usize = 10 * 1024 * 1024;

/// Echoes every accepted stream until its peer half-closes, then closes.
fn spawn_echo(listener: Listener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(mut stream) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    })
}

async fn host_and_client(net: &Network, service: &str) -> (Context, Context) {
    let host = net
        .context(&format!("{service}-h"), &[&format!("{service}-host")])
        .await;
    let client = net
        .context(&format!("{service}-c"), &[&format!("{service}-client")])
        .await;
    (host, client)
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_bind_dial_and_move_ten_megabytes_each_way_encrypted() {
    let net = Network::start().await;
    net.service("bulk", &["bulk"], true).await;
    let (host, client) = host_and_client(&net, "bulk").await;
    let services = client.services().await.unwrap();
    let bulk = services.iter().find(|s| s.name == "bulk").unwrap();
    assert!(bulk.encryption_required && bulk.can_dial() && !bulk.can_bind());

    let listener = host.bind("bulk").await.unwrap();
    let upload = pattern(TEN_MB, 1);
    let download = pattern(TEN_MB, 2);
    let (up_sum, down_sum) = (sha(&upload), sha(&download));

    // Host: reads everything until the dialer half-closes, checks it, answers 10 MB.
    let server = tokio::spawn(async move {
        let mut stream = listener.accept().await.unwrap();
        assert!(stream.is_encrypted());
        assert_eq!(stream.dialer(), Some("bulk-c"));
        let mut got = Vec::with_capacity(TEN_MB);
        stream.read_to_end(&mut got).await.unwrap();
        assert_eq!(sha(&got), up_sum, "upload corrupted");
        stream.write_all(&download).await.unwrap();
        stream.shutdown().await.unwrap();
        // Keep the stream until the client has read everything.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });

    let mut stream = client.dial("bulk").await.unwrap();
    assert!(stream.is_encrypted());
    assert_eq!(stream.router(), "edge-1");
    let started = Instant::now();
    let got = weft_testkit::exchange(&mut stream, &upload).await;
    assert_eq!(sha(&got), down_sum, "download corrupted");
    eprintln!(
        "20 MB through the router (encrypted) in {:?}",
        started.elapsed()
    );
    drop(stream);
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streams_share_one_edge_connection() {
    let net = Network::start().await;
    net.service("echo", &["echo"], true).await;
    let (host, client) = host_and_client(&net, "echo").await;
    let _echo = spawn_echo(host.bind("echo").await.unwrap());

    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = client.dial("echo").await.unwrap();
            let data = pattern(50_000 + i as usize * 1000, i);
            let (mut rd, mut wr) = tokio::io::split(&mut s);
            let send = async {
                wr.write_all(&data).await.unwrap();
                wr.shutdown().await.unwrap();
            };
            let recv = async {
                let mut got = Vec::new();
                rd.read_to_end(&mut got).await.unwrap();
                got
            };
            let ((), got) = tokio::join!(send, recv);
            assert_eq!(got, data, "stream {i}");
            s.conn_id()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40, "conn ids are unique on the connection");
    assert_eq!(client.routers().len(), 1, "one edge connection per router");
}

/// Per-stream credit: one stream whose reader does not read fills its windows and
/// waits, while the other streams of the same edge connections keep moving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_reader_stalls_holds_up_no_other_stream() {
    const BIG: usize = 24 * 1024 * 1024;
    let net = Network::start().await;
    net.service("stall", &["stall"], false).await;
    let (host, client) = host_and_client(&net, "stall").await;
    let listener = host.bind("stall").await.unwrap();
    let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        // The first stream is read only when told; the others are echoed.
        let mut stalled = listener.accept().await.unwrap();
        let echo = spawn_echo(listener);
        go_rx.await.unwrap();
        let mut got = Vec::with_capacity(BIG);
        stalled.read_to_end(&mut got).await.unwrap();
        echo.abort();
        got
    });

    let mut big = client.dial("stall").await.unwrap();
    let data = pattern(BIG, 7);
    let expected = sha(&data);
    let writer = tokio::spawn(async move {
        big.write_all(&data).await.unwrap();
        big.shutdown().await.unwrap();
        big
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Round trips on other streams of the same two edge connections.
    for i in 0..5u8 {
        let round_trip = async {
            let mut s = client.dial("stall").await.unwrap();
            s.write_all(&[i; 100]).await.unwrap();
            let mut back = [0u8; 100];
            s.read_exact(&mut back).await.unwrap();
            assert_eq!(back, [i; 100]);
        };
        tokio::time::timeout(Duration::from_secs(10), round_trip)
            .await
            .unwrap_or_else(|_| panic!("round trip {i} held up by the stalled stream"));
    }
    assert!(
        !writer.is_finished(),
        "the stalled stream's writer waits for credit"
    );
    assert_eq!(client.routers().len(), 1, "one edge connection");

    go.send(()).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("the stalled stream resumed")
        .unwrap();
    assert_eq!(sha(&got), expected, "every byte, in order");
    drop(writer.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_lets_the_other_direction_finish() {
    let net = Network::start().await;
    net.service("half", &["half"], false).await;
    let (host, client) = host_and_client(&net, "half").await;
    let listener = host.bind("half").await.unwrap();
    let server = tokio::spawn(async move {
        let mut s = listener.accept().await.unwrap();
        assert!(!s.is_encrypted());
        let mut request = Vec::new();
        s.read_to_end(&mut request).await.unwrap();
        // The dialer's FIN arrived; we can still answer.
        s.write_all(format!("got {} bytes", request.len()).as_bytes())
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
    });
    let mut s = client.dial("half").await.unwrap();
    s.write_all(&[7u8; 1000]).await.unwrap();
    s.shutdown().await.unwrap();
    assert!(
        s.write_all(b"x").await.is_err(),
        "write after shutdown fails"
    );
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer, "got 1000 bytes");
    drop(s);
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_dial_policy_closes_a_live_stream_within_a_second() {
    let net = Network::start().await;
    let (_, dial_policy, _) = net.service("revoke", &["revoke"], true).await;
    let (host, client) = host_and_client(&net, "revoke").await;
    let _echo = spawn_echo(host.bind("revoke").await.unwrap());
    let mut s: Stream = client.dial("revoke").await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    let revoked_at = Instant::now();
    net.admin.delete("service-policies", &dial_policy).await;
    let mut rest = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(1), s.read(&mut rest))
        .await
        .expect("the stream was still open 1 s after the revocation");
    let err = read.expect_err("a revoked stream must fail, not end cleanly");
    eprintln!(
        "stream closed {:?} after the policy delete: {err}",
        revoked_at.elapsed()
    );
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    // And a new dial is refused.
    let again = client.dial("revoke").await.unwrap_err();
    assert!(
        matches!(
            again.kind(),
            ErrorKind::NotAuthorized | ErrorKind::NoSuchService
        ),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_services_and_missing_permissions_are_reported_as_such() {
    let net = Network::start().await;
    net.service("known", &["known"], false).await;
    let client = net.context("plain", &["known-client"]).await;
    let e = client.dial("nope").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSuchService, "{e}");
    let e = client.bind("known").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotAuthorized, "{e}");
    // Nobody hosts it: the router says so.
    let e = client.dial("known").await.unwrap_err();
    assert!(e.to_string().contains("no terminators"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_identity_files_and_expired_or_used_tokens_give_clear_errors() {
    // Bad identity files.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id.json");
    std::fs::write(&path, "{\"ztAPI\": \"https://x\"}").unwrap();
    // `Identity` is weft_identity's; its error converts into the SDK's (what `?` does).
    let e: weft_sdk::Error = weft_sdk::Identity::load(&path).unwrap_err().into();
    assert_eq!(e.kind(), ErrorKind::Identity);
    assert!(e.to_string().contains("id.json"), "{e}");
    let e: weft_sdk::Error = weft_sdk::Identity::load(dir.path().join("missing.json"))
        .unwrap_err()
        .into();
    assert_eq!(e.kind(), ErrorKind::Identity);

    // Tokens that expire after 3 s.
    let ctl = weft_testkit::Ctl::start_with("pki.enrollment_ttl_secs = 3");
    let admin = ctl.admin().await;
    let created = Instant::now();
    let (_, jwt) = admin.identity("late", &[]).await;
    let (_, used) = admin.identity("twice", &[]).await;
    weft_sdk::enroll(&used).await.unwrap();
    let e = weft_sdk::enroll(&used).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Enrollment, "{e}");
    tokio::time::sleep(
        (created + Duration::from_millis(4100)).saturating_duration_since(Instant::now()),
    )
    .await;
    let e = weft_sdk::enroll(&jwt).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Enrollment, "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
    let e = weft_sdk::enroll("not.a.jwt").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Enrollment, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_router_fails_its_streams_and_the_next_dial_uses_another_router() {
    let mut net = Network::start().await;
    let mut second = weft_testkit::Router::start(&net.controller, &net.admin, "edge-2", &[]).await;
    net.service("ha", &["ha"], true).await;
    let (host, client) = host_and_client(&net, "ha").await;
    let _echo = spawn_echo(host.bind("ha").await.unwrap());

    // Without router links a dial meets the host only on the host's router; the SDK
    // tries the session's routers in turn until one has the terminator.
    let mut s = client.dial("ha").await.unwrap();
    s.write_all(b"one").await.unwrap();
    let mut buf = [0u8; 3];
    s.read_exact(&mut buf).await.unwrap();
    let first_router = s.router().to_string();

    // That router dies: the live stream fails with an error, not a clean end.
    if first_router == "edge-1" {
        net.router.kill();
    } else {
        second.kill();
    }
    let mut rest = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut rest))
        .await
        .expect("the stream noticed the lost router");
    assert!(read.is_err(), "a lost router is an error: {read:?}");

    // The host rebinds on the surviving router; a new dial gets there.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut s = loop {
        match client.dial("ha").await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "no dial after failover: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_ne!(
        s.router(),
        first_router,
        "the next dial used the other router"
    );
    s.write_all(b"two").await.unwrap();
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"two");
}

/// A host that writes its reply, half-closes and drops the stream at once, while its
/// reader has not read yet (more than the reader's 4 MiB receive window is still on its
/// way, so the rest waits in the router for the reader's credit): the reader gets every
/// byte, then a clean end-of-stream, on every one of a hundred streams (sha256 each).
/// Before the router kept the close behind the data, about 4 % of such transfers ended
/// early with a clean end-of-stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_closes_right_after_writing_loses_nothing() {
    let net = Network::start().await;
    net.service("closer", &["closer"], false).await;
    let (host, client) = host_and_client(&net, "closer").await;
    // Beyond the reader's receive window (4 MiB): the rest waits in the router.
    weft_testkit::traffic::closes_right_after_writing(
        &host,
        &client,
        "closer",
        100,
        5,
        4 * 1024 * 1024 + 512 * 1024,
    )
    .await;
    // Many short streams: the FIN and the close of each dropped stream in order.
    weft_testkit::traffic::closes_right_after_writing(&host, &client, "closer", 300, 30, 64 * 1024)
        .await;
}

/// One hosting SDK context and one dialing context hold 10,000 concurrent streams
/// through one router (each SDK uses one edge connection to it): every stream echoes
/// its own message while all are open. The router once refused the 1,025th.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_streams_through_one_host_and_one_dialer() {
    const STREAMS: usize = 10_000;
    const AT_ONCE: usize = 250;
    let net = Network::start().await;
    net.service("many", &["many"], false).await;
    let (host, client) = host_and_client(&net, "many").await;
    let listener = host.bind("many").await.unwrap();
    // The host echoes one message per stream and keeps every stream open until the
    // dialer closes it.
    let server = tokio::spawn(async move {
        let mut open = Vec::with_capacity(STREAMS);
        for _ in 0..STREAMS {
            let mut s = listener.accept().await.unwrap();
            let mut id = [0u8; 8];
            s.read_exact(&mut id).await.unwrap();
            s.write_all(&id).await.unwrap();
            open.push(s);
        }
        for mut s in open {
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        }
    });
    let started = Instant::now();
    let mut streams: Vec<Stream> = Vec::with_capacity(STREAMS);
    for batch in 0..STREAMS / AT_ONCE {
        let dials: Vec<_> = (0..AT_ONCE)
            .map(|i| {
                let client = client.clone();
                let id = (batch * AT_ONCE + i) as u64;
                tokio::spawn(async move {
                    let mut s = client.dial("many").await.unwrap();
                    s.write_all(&id.to_le_bytes()).await.unwrap();
                    let mut back = [0u8; 8];
                    s.read_exact(&mut back).await.unwrap();
                    assert_eq!(u64::from_le_bytes(back), id);
                    s
                })
            })
            .collect();
        for dial in dials {
            streams.push(dial.await.unwrap());
        }
    }
    assert_eq!(streams.len(), STREAMS);
    eprintln!(
        "{STREAMS} concurrent streams open after {:?}",
        started.elapsed()
    );
    for mut s in streams {
        s.shutdown().await.unwrap();
    }
    eprintln!("shut down after {:?}", started.elapsed());
    tokio::time::timeout(Duration::from_secs(120), server)
        .await
        .expect("the host did not see every stream end")
        .unwrap();
}

/// Waits until `listener` holds terminators on exactly `want` (sorted router names).
async fn wait_routers(listener: &Listener, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while listener.routers() != want {
        assert!(
            Instant::now() < deadline,
            "terminators on {:?}, expected {want:?}",
            listener.routers()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A host keeps a terminator on each router its Bind session lists (OpenZiti's
/// `MaxTerminators`, 3 by default; issue 21 item 2): when one router dies the service
/// is still hosted on the other without waiting for a rebind, and the binding comes
/// back when the router does. `max_terminators = 1` keeps one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_is_bound_on_every_router_and_keeps_serving_when_one_dies() {
    let mut net = Network::start().await;
    let mut second = weft_testkit::Router::start(&net.controller, &net.admin, "edge-2", &[]).await;
    net.service("multi", &["multi"], false).await;
    let (host, client) = host_and_client(&net, "multi").await;
    let listener = host.bind("multi").await.unwrap();
    wait_routers(&listener, &["edge-1", "edge-2"]).await;
    let single = host
        .bind_with_options(
            "multi",
            weft_sdk::BindOptions::default().with_max_terminators(1),
        )
        .await
        .unwrap();
    assert_eq!(single.routers().len(), 1);
    drop(single);
    // Waiting for two terminators (OpenZiti's WaitForNEstablishedListeners): both are
    // up when bind returns; waiting for three on two routers times out.
    let both = host
        .bind_with_options(
            "multi",
            weft_sdk::BindOptions::default().with_wait_for_terminators(2),
        )
        .await
        .unwrap();
    assert_eq!(both.routers().len(), 2, "{:?}", both.routers());
    drop(both);
    let impatient = Context::with_options(
        net.enrolled("multi-h2", &["multi-host"]).await,
        weft_sdk::Options {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            ..weft_sdk::Options::default()
        },
    )
    .await
    .unwrap();
    let err = impatient
        .bind_with_options(
            "multi",
            weft_sdk::BindOptions::default().with_wait_for_terminators(3),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    let terminators = net.admin.get("terminators").await;
    let on: std::collections::BTreeSet<&str> = terminators["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["router"]["name"].as_str())
        .collect();
    assert!(
        on.contains("edge-1") && on.contains("edge-2"),
        "terminators on {on:?}"
    );
    let _echo = spawn_echo(listener);
    let (listener_routers, dialed) = {
        let mut s = client.dial("multi").await.unwrap();
        s.write_all(b"one").await.unwrap();
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).await.unwrap();
        (s.router().to_string(), s)
    };
    // The router the client uses dies: its stream fails, the other router still holds
    // a terminator, and the next dial goes there.
    if listener_routers == "edge-1" {
        net.router.kill();
    } else {
        second.kill();
    }
    let mut dialed = dialed;
    let mut rest = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(10), dialed.read(&mut rest))
        .await
        .expect("the stream noticed the lost router");
    assert!(read.is_err(), "a lost router is an error: {read:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match client.dial("multi").await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "no dial after the loss: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_ne!(s.router(), listener_routers);
    s.write_all(b"two").await.unwrap();
    let mut buf = [0u8; 3];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"two");
    // The lost router comes back: so does the terminator on it.
    if listener_routers == "edge-1" {
        net.router.restart(&net.admin).await;
    } else {
        second.restart(&net.admin).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let terminators = net.admin.get("terminators").await;
        let on: Vec<String> = terminators["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["router"]["name"].as_str().map(str::to_owned))
            .collect();
        if on.iter().any(|r| r == &listener_routers) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no terminator back on {listener_routers}: {on:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A deleted identity is told so (issue 21, item 1): its live stream fails on both
/// halves with one kind, and its next dial fails at once as not authorized, instead of
/// looking like a router outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_identity_gets_one_error_kind_on_both_halves_and_not_authorized_on_dial() {
    let net = Network::start().await;
    net.service("gone", &["gone"], false).await;
    let (host, client) = host_and_client(&net, "gone").await;
    let _echo = spawn_echo(host.bind("gone").await.unwrap());
    let mut s = client.dial("gone").await.unwrap();
    s.write_all(b"hi").await.unwrap();
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).await.unwrap();

    let ids = net.admin.get("identities?filter=name=\"gone-c\"").await;
    let id = ids["data"][0]["id"].as_str().unwrap().to_owned();
    net.admin.delete("identities", &id).await;

    let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the stream noticed");
    let read_err = read.expect_err("a revoked stream is an error");
    let write_err = s.write_all(b"more").await.expect_err("and so is writing");
    let kind = |e: &std::io::Error| weft_sdk::Error::from_io(e).map(weft_sdk::Error::kind);
    assert_eq!(
        kind(&read_err),
        kind(&write_err),
        "both halves say the same"
    );
    assert_eq!(kind(&read_err), Some(ErrorKind::SessionRevoked));

    let started = Instant::now();
    let err = client
        .dial("gone")
        .await
        .expect_err("a deleted identity cannot dial");
    assert_eq!(err.kind(), ErrorKind::NotAuthorized, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Waits until the controller says `router_id` is offline; returns its detail.
async fn offline_detail(net: &Network, router_id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = net.admin.get(&format!("edge-routers/{router_id}")).await["data"].clone();
        if d["isOnline"] == false {
            return d;
        }
        assert!(Instant::now() < deadline, "{router_id} stayed online: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_created_without_an_address_reports_its_own_and_carries_traffic() {
    // The test kit creates its routers without `supportedProtocols`.
    let mut net = Network::start().await;
    let id = net.router.id.clone();
    let url = format!("tls://localhost:{}", net.router.edge_port);
    let detail = net.admin.get(&format!("edge-routers/{id}")).await["data"].clone();
    assert_eq!(
        detail["supportedProtocols"],
        serde_json::json!({"tls": url}),
        "{detail}"
    );
    assert_eq!(detail["hostname"], "localhost");

    // Clients are told the reported address and dial through it.
    net.service("adv", &["adv"], true).await;
    let (host, client) = host_and_client(&net, "adv").await;
    let echo = spawn_echo(host.bind("adv").await.unwrap());
    let mut stream = client.dial("adv").await.unwrap();
    let data = pattern(256 * 1024, 7);
    stream.write_all(&data).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.unwrap();
    assert_eq!(sha(&back), sha(&data));
    echo.abort();

    // The edge certificate names what the router's config asks for at enrolment.
    let second = weft_testkit::network::Router::start_configured(
        &net.admin,
        "edge-2",
        &net.controller.control_addr(),
        "edge.cert_sans = [\"er-2.internal\", \"127.0.0.2\"]\n",
        &[],
    )
    .await;
    let names = weft_testkit::certificate_names(&second.dir.path().join("certs/server.cert"));
    for want in ["localhost", "er-2.internal", "127.0.0.2"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }

    // An address set through the API wins over the report (a proxy in front).
    net.admin
        .patch(
            &format!("edge-routers/{}", second.id),
            serde_json::json!({"supportedProtocols": {"tls": "tls://proxy.example:443"}}),
        )
        .await;
    let d = net.admin.get(&format!("edge-routers/{}", second.id)).await["data"].clone();
    assert_eq!(
        d["supportedProtocols"]["tls"], "tls://proxy.example:443",
        "{d}"
    );

    // A reporting router that went offline has no address to give.
    net.router.kill();
    let d = offline_detail(&net, &id).await;
    assert_eq!(d["supportedProtocols"], serde_json::json!({}), "{d}");
}

/// A router's edge certificate is signed by the network CA and names the router's host,
/// which may be the controller's: whoever holds a router's key could answer in the
/// controller's place. Clients of the controller refuse a router's certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_certificate_does_not_pass_for_the_controller() {
    let net = Network::start().await;
    let identity = net.enrolled("impostor-target", &[]).await;
    // An impostor listening with the router's certificate (it names localhost).
    let certs = net.router.dir.path().join("certs");
    let tls = weft_tls::server::api(
        weft_tls::pem::certificates(&std::fs::read(certs.join("server.cert")).unwrap()).unwrap(),
        weft_tls::pem::private_key(&std::fs::read(certs.join("server.key")).unwrap()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if acceptor.accept(tcp).await.is_ok() {
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });

    let options = weft_sdk::Options {
        controllers: vec![format!("https://localhost:{port}")],
        ..Default::default()
    };
    let Err(err) = Context::with_options(identity.clone(), options).await else {
        panic!("the SDK authenticated to a router posing as the controller");
    };
    let mut chain = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(e) = cause {
        chain.push_str(&format!(": {e}"));
        cause = e.source();
    }
    assert!(chain.contains("router's certificate"), "{chain}");
    assert_eq!(handshakes.load(std::sync::atomic::Ordering::SeqCst), 0);

    // The real controller, with the same identity, is trusted as before.
    Context::new(identity).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_enrolled_router_is_cut_off_until_it_enrolls_again_with_new_names() {
    let mut net = Network::start().await;
    let id = net.router.id.clone();
    net.admin
        .post(
            &format!("edge-routers/{id}/re-enroll"),
            serde_json::json!({}),
        )
        .await;
    // Its control connection closes at once, and its old certificate no longer connects
    // (the process keeps trying).
    offline_detail(&net, &id).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let d = net.admin.get(&format!("edge-routers/{id}")).await["data"].clone();
    assert_eq!(d["isOnline"], false, "{d}");
    assert_eq!(d["isVerified"], false, "{d}");
    let jwt = d["enrollmentJwt"]
        .as_str()
        .expect("a new enrollment JWT")
        .to_owned();

    // The operator enrolls it again, with another name in its config.
    net.router.kill();
    let dir = net.router.dir.path().to_owned();
    std::fs::remove_dir_all(dir.join("certs")).unwrap();
    let mut config = std::fs::read_to_string(dir.join("router.toml")).unwrap();
    config.push_str("edge.cert_sans = [\"er-moved.example\"]\n");
    std::fs::write(dir.join("router.toml"), config).unwrap();
    std::fs::write(dir.join("router.jwt"), jwt).unwrap();
    weft_testkit::boot::enroll_router(
        &weft_testkit::bin_dir().join("weft-router"),
        &dir.join("router.jwt"),
        &dir.join("router.toml"),
        "warn",
    )
    .unwrap();
    net.router.restart(&net.admin).await;
    let names = weft_testkit::certificate_names(&dir.join("certs/server.cert"));
    assert!(names.iter().any(|n| n == "er-moved.example"), "{names:?}");

    // And carries traffic again.
    net.service("moved", &["moved"], true).await;
    let (host, client) = host_and_client(&net, "moved").await;
    let echo = spawn_echo(host.bind("moved").await.unwrap());
    let mut stream = client.dial("moved").await.unwrap();
    stream.write_all(b"still here").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"still here");
    echo.abort();
}
