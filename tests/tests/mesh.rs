//! The mesh with real processes: routers with a `[link]` section find each other through
//! the controller's peer list, link up (mutual TLS with their enrolled certificates),
//! measure the link's latency and report it; a lost link is reported down and dialled
//! again; a certificate the controller does not vouch for as a router's is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_testkit::traffic::{drip, serve_never_reading};
use weft_testkit::{Ctl, Line, Router, free_port, init_logs, wait_links};

const WAIT: Duration = Duration::from_secs(30);

/// A `[link]` section listening on a free loopback port, and a metrics listener.
fn link_config() -> (String, u16, u16) {
    let (link, metrics) = (free_port(), free_port());
    (
        format!(
            "metrics.listen = \"127.0.0.1:{metrics}\"\n[link]\nlisten = \"127.0.0.1:{link}\"\n"
        ),
        link,
        metrics,
    )
}

fn is_up_with_latency(l: &Value) -> bool {
    l["state"] == "up" && l["sourceLatencyMs"].is_number() && l["destLatencyMs"].is_number()
}

/// The text of the metrics port `port`.
async fn metrics_text(http: &reqwest::Client, port: u16) -> String {
    http.get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn metric(http: &reqwest::Client, port: u16, name: &str) -> u64 {
    metrics_text(http, port)
        .await
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_link_up_measure_latency_and_redial_a_lost_link() {
    init_logs();
    let controller = Ctl::start();
    let admin = controller.admin().await;
    let http = controller.http();
    let control = controller.control_addr();
    let (config_a, _, metrics_a) = link_config();
    let (config_b, _, metrics_b) = link_config();
    let a = Router::start_configured(&admin, "mesh-a", &control, &config_a, &[]).await;
    let mut b = Router::start_configured(&admin, "mesh-b", &control, &config_b, &[]).await;

    // One link (both routers listen and dial: the one whose id sorts first dials),
    // with the latency both ends measured.
    let links = wait_links(&admin, "link up", |l| {
        l.len() == 1 && is_up_with_latency(&l[0])
    })
    .await;
    let (first, second) = if a.id < b.id {
        (&a.id, &b.id)
    } else {
        (&b.id, &a.id)
    };
    assert_eq!(links[0]["sourceRouterId"], first.as_str(), "{links:?}");
    assert_eq!(links[0]["destRouterId"], second.as_str(), "{links:?}");
    assert!(links[0]["cost"].as_u64().unwrap() >= 1);
    for port in [metrics_a, metrics_b] {
        assert_eq!(metric(&http, port, "weft_router_links_up_total").await, 1);
        assert_eq!(metric(&http, port, "weft_router_link_circuits").await, 0);
        // Heartbeats went both ways and were measured.
        assert!(metric(&http, port, "weft_router_link_rtt_seconds_count").await >= 1);
        assert!(metric(&http, port, "weft_router_link_tx_frames_total").await >= 2);
    }

    // The peer dies: the survivor reports the link down.
    b.kill();
    // (b's own reports left with its control connection; a's says down.)
    wait_links(&admin, "link down", |l| {
        l.len() == 1 && l[0]["state"] == "down"
    })
    .await;
    assert_eq!(
        metric(&http, metrics_a, "weft_router_links_lost_total").await,
        1
    );

    // It comes back (on the same link port): the link is dialled again.
    b.restart(&admin).await;
    wait_links(&admin, "link up again", |l| {
        l.len() == 1 && is_up_with_latency(&l[0])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_the_controller_does_not_vouch_for_gets_no_link() {
    init_logs();
    let controller = Ctl::start();
    let admin = controller.admin().await;
    let http = controller.http();
    let (config, link_port, metrics) = link_config();
    let _router = Router::start_configured(
        &admin,
        "mesh-lone",
        &controller.control_addr(),
        &config,
        &[],
    )
    .await;
    // An identity's certificate, issued by the network's own CA: the TLS handshake
    // succeeds, but no router has that certificate.
    let token = controller.admin_token().await;
    let (_, cert, key) = controller
        .enrolled_identity(&token, "not-a-router", &[])
        .await;
    let chain = weft_tls::pem::certificates(cert.as_bytes()).unwrap();
    let tls = controller.client_tls_with_chain(chain, &key);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", link_port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    // It says it is the router itself; nothing comes back but the end of the stream.
    let mut hello = bytes::BytesMut::new();
    weft_wire::link::LinkHello {
        router_id: "mesh-lone",
        connection: 0,
        frame_cost: 0,
    }
    .encode(1, &mut hello)
    .unwrap();
    let _ = stream.write_all(&hello).await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("the router kept the connection open");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the router answered: {read:?}"
    );
    let deadline = Instant::now() + WAIT;
    while metric(&http, metrics, "weft_router_links_refused_total").await < 1 {
        assert!(Instant::now() < deadline, "the refusal was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        admin.get("links").await["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// What an unauthenticated peer can make a link listener hold is bounded: silent
/// connections past the handshake cap are closed at once, the others at the handshake
/// deadline, garbage ends its connection with a TLS error; each counts as refused, and
/// a real router links up afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_listener_flooded_with_silent_and_garbage_connections_still_links() {
    init_logs();
    let controller = Ctl::start();
    let admin = controller.admin().await;
    let http = controller.http();
    let control = controller.control_addr();
    let (config, link_port, metrics) = link_config();
    let config = format!("edge.handshake_timeout_ms = 1500\n{config}");
    let _listener = Router::start_configured(&admin, "flood-target", &control, &config, &[]).await;

    // More silent connections than handshakes may run at once, then garbage.
    const SILENT: usize = 80;
    const GARBAGE: usize = 8;
    let mut silent = Vec::new();
    for _ in 0..SILENT {
        silent.push(
            tokio::net::TcpStream::connect(("127.0.0.1", link_port))
                .await
                .unwrap(),
        );
    }
    let mut garbage = Vec::new();
    for i in 0..GARBAGE {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", link_port))
            .await
            .unwrap();
        // A record header of a handshake record, then bytes that are no ClientHello.
        let mut junk = vec![0x16, 0x03, 0x01, 0x00, 0x40];
        junk.extend((0..64u8).map(|b| b.wrapping_mul(i as u8 + 7)));
        tcp.write_all(&junk).await.unwrap();
        garbage.push(tcp);
    }
    // Every one of them is closed by the router: garbage at once, the silent ones at
    // the cap or the deadline.
    for (i, mut tcp) in silent.into_iter().chain(garbage).enumerate() {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {} // an alert
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "connection {i} was held open");
    }
    let refused = metric(&http, metrics, "weft_router_links_refused_total").await;
    assert!(
        refused >= (SILENT + GARBAGE) as u64,
        "{refused} refusals counted"
    );

    // A router that dials it (no listener of its own) still links up.
    let _dialer = Router::start_configured(&admin, "flood-dialer", &control, "[link]\n", &[]).await;
    wait_links(&admin, "link up after the flood", |l| {
        l.len() == 1 && is_up_with_latency(&l[0])
    })
    .await;
}

fn sha(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

const TEN_MB: usize = 10 * 1024 * 1024;

/// Waits until the controller lists no circuit (every router of a path reported its
/// end).
async fn wait_no_circuits(admin: &weft_testkit::Admin) {
    let deadline = Instant::now() + WAIT;
    while !admin.get("circuits").await["data"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "a circuit is still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_crosses_three_routers_ten_megabytes_each_way() {
    let line = Line::start().await;
    line.service("line", true).await;
    let (host, client) = line.contexts("line").await;
    let listener = host.bind("line").await.unwrap();
    let upload = weft_testkit::pattern(TEN_MB, 7);
    let download = weft_testkit::pattern(TEN_MB, 8);
    let (up_sum, down_sum) = (sha(&upload), sha(&download));
    let server = tokio::spawn(async move {
        let mut stream = listener.accept().await.unwrap();
        assert_eq!(stream.dialer(), Some("line-c"));
        let got = weft_testkit::exchange(&mut stream, &download).await;
        assert_eq!(sha(&got), up_sum, "upload corrupted across the routers");
    });

    let mut stream = client.dial("line").await.unwrap();
    assert!(stream.is_encrypted());
    assert_eq!(stream.router(), "line-a");
    // The controller routed it A → B → C.
    let circuits = line.admin.get("circuits").await["data"].clone();
    let path: Vec<&str> = circuits[0]["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        path,
        [line.a.id.as_str(), line.b.id.as_str(), line.c.id.as_str()]
    );
    // The session's route path is that path (OpenZiti's `/sessions/{id}/route-path`).
    let session = circuits[0]["sessionId"].as_str().unwrap();
    let route = line
        .admin
        .get(&format!("sessions/{session}/route-path"))
        .await;
    assert_eq!(route["data"]["routePath"], circuits[0]["path"]);
    // The fabric view of an enrolled, connected router.
    let router = line.admin.get(&format!("routers/{}", line.a.id)).await;
    assert_eq!(router["data"]["isOnline"], true);
    assert_eq!(router["data"]["isVerified"], true);
    assert!(
        !router["data"]["fingerprint"].as_str().unwrap().is_empty(),
        "{router}"
    );
    let started = Instant::now();
    let got = weft_testkit::exchange(&mut stream, &upload).await;
    assert_eq!(sha(&got), down_sum, "download corrupted across the routers");
    eprintln!(
        "20 MB across three routers (encrypted) in {:?}",
        started.elapsed()
    );
    server.await.unwrap();
    drop(stream);
    // Every router of the path reports the end: the controller forgets the circuit.
    wait_no_circuits(&line.admin).await;
}

/// Revoking the dialer's Dial policy closes a circuit across three routers on every one
/// of them within the 1 s budget: the dialer and the host both see an error (never a
/// clean end), and the controller lists the circuit no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_dial_closes_a_circuit_across_routers_with_an_error_on_both_ends() {
    let line = Line::start().await;
    line.service("rev", false).await;
    let (host, client) = line.contexts("rev").await;
    let listener = host.bind("rev").await.unwrap();
    let server = tokio::spawn(async move {
        let mut stream = listener.accept().await.unwrap();
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await.unwrap();
        stream.write_all(&b).await.unwrap();
        // Then it waits: the revocation must end its stream with an error.
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await
    });
    let mut stream = client.dial("rev").await.unwrap();
    stream.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    stream.read_exact(&mut b).await.unwrap();
    assert_eq!(
        line.admin.get("circuits").await["data"][0]["path"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "the circuit crosses the three routers"
    );
    let policies = line
        .admin
        .get("service-policies?filter=name%3D%22rev-Dial%22")
        .await;
    let id = policies["data"][0]["id"].as_str().unwrap().to_owned();
    let revoked = Instant::now();
    line.admin.delete("service-policies", &id).await;
    let dialer_end = tokio::time::timeout(WAIT, stream.read(&mut b))
        .await
        .expect("the dialer's stream did not end");
    let dialer_after = revoked.elapsed();
    assert!(
        dialer_end.is_err(),
        "the dialer saw a clean end, not an error: {dialer_end:?}"
    );
    let host_end = tokio::time::timeout(WAIT, server)
        .await
        .expect("the host's stream did not end")
        .unwrap();
    let host_after = revoked.elapsed();
    assert!(host_end.is_err(), "the host saw a clean end: {host_end:?}");
    eprintln!(
        "revoked across three routers: dialer after {dialer_after:?}, host after {host_after:?}"
    );
    // Generous for a loaded machine; the budget (p99 ≤ 1 s) is measured by weft-perf.
    assert!(dialer_after < Duration::from_secs(5), "{dialer_after:?}");
    wait_no_circuits(&line.admin).await;
}

/// A host that writes and closes as soon as it accepts, across three routers: its
/// bytes and its close reach the egress before the ingress has started the circuit
/// (that takes a round trip through the controller), and the egress holds them until
/// then. Every stream must end with every byte and a clean end (sha256 each); before
/// the egress kept the close behind the held bytes, most ended with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_writes_and_closes_at_once_loses_nothing_across_routers() {
    const STREAMS: usize = 40;
    const LEN: usize = 64 * 1024;
    let line = Line::start().await;
    line.service("line", true).await;
    let (host, client) = line.contexts("line").await;
    let listener = host.bind("line").await.unwrap();
    let reply = weft_testkit::pattern(LEN, 3);
    let sum = sha(&reply);
    let server = tokio::spawn(async move {
        for _ in 0..STREAMS {
            let mut s = listener.accept().await.unwrap();
            let reply = reply.clone();
            tokio::spawn(async move {
                s.write_all(&reply).await.unwrap();
                s.shutdown().await.unwrap();
            });
        }
    });
    let mut reads = Vec::new();
    for _ in 0..STREAMS {
        let mut s = client.dial("line").await.unwrap();
        reads.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(LEN);
            let read = tokio::time::timeout(WAIT, s.read_to_end(&mut got))
                .await
                .expect("the stream did not end in time");
            (read.map_err(|e| e.to_string()), sha(&got))
        }));
    }
    for (i, read) in reads.into_iter().enumerate() {
        let (read, got) = read.await.unwrap();
        assert_eq!(read, Ok(LEN), "stream {i}");
        assert!(got == sum, "stream {i}: other bytes");
    }
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_only_path_ends_the_circuit_with_an_error_on_both_sides() {
    let mut line = Line::start().await;
    line.service("cut", false).await;
    let (host, client) = line.contexts("cut").await;
    let listener = host.bind("cut").await.unwrap();
    // The host sends until its stream fails, and reports how it ended.
    let server = tokio::spawn(async move {
        let mut stream = listener.accept().await.unwrap();
        let chunk = vec![7u8; 64 * 1024];
        loop {
            if let Err(e) = stream.write_all(&chunk).await {
                return e;
            }
        }
    });
    let mut stream = client.dial("cut").await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    while got < 1024 * 1024 {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the circuit ended before the cut");
        got += n;
    }
    // The middle router dies: there is no other path.
    line.b.kill();
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the dialer's stream did not end");
    let e = end.expect_err("the dialer saw a clean end of stream, not an error");
    eprintln!("dialer: {e}");
    let host_end = tokio::time::timeout(WAIT, server)
        .await
        .expect("the host's stream did not end")
        .unwrap();
    eprintln!("host: {host_end}");
}

/// Service `name` (attribute `name`) with a Dial policy for `#name-client` and a Bind
/// policy for `#name-host`, and SDK contexts of a host (`name-h`: `name-host`,
/// `hoster`) and a client (`name-c`: `name-client`, `dialer`): (host, client).
async fn service_with_host_and_client(
    admin: &weft_testkit::Admin,
    name: &str,
) -> (weft_sdk::Context, weft_sdk::Context) {
    admin.service(name, &[name], false).await;
    let (client_role, host_role) = (format!("{name}-client"), format!("{name}-host"));
    let service_role = format!("#{name}");
    for (policy, kind, role) in [("dial", "Dial", &client_role), ("bind", "Bind", &host_role)] {
        admin
            .service_policy(
                &format!("{name}-{policy}"),
                kind,
                &[&format!("#{role}")],
                &[&service_role],
            )
            .await;
    }
    let mut contexts = Vec::new();
    for (identity, role, kind) in [("h", &host_role, "hoster"), ("c", &client_role, "dialer")] {
        let (_, jwt) = admin
            .identity(&format!("{name}-{identity}"), &[role.as_str(), kind])
            .await;
        contexts.push(
            weft_sdk::Context::new(weft_sdk::enroll(&jwt).await.unwrap())
                .await
                .unwrap(),
        );
    }
    let client = contexts.pop().unwrap();
    let host = contexts.pop().unwrap();
    (host, client)
}

/// Four routers in a diamond: A dials B and C, which dial D. A reaches B through a
/// fault-injecting proxy. Dialers may use A only, hosts D only; service `dia`.
struct Diamond {
    controller: Ctl,
    admin: weft_testkit::Admin,
    proxy: weft_testkit::proxy::FaultProxy,
    a: Router,
    b: Router,
    c: Router,
    d: Router,
    host: weft_sdk::Context,
    client: weft_sdk::Context,
}

impl Diamond {
    async fn start() -> Self {
        init_logs();
        let controller = Ctl::start();
        let admin = controller.admin().await;
        let control = controller.control_addr();
        let b_port = free_port();
        let proxy = weft_testkit::proxy::FaultProxy::start(([127, 0, 0, 1], b_port).into()).await;
        let d_config = format!(
            "[link]\nlisten = \"127.0.0.1:{}\"\ngroups = [\"y\"]\ndial_groups = []\n",
            free_port()
        );
        let d = Router::start_configured(&admin, "dia-d", &control, &d_config, &[]).await;
        let b_config = format!(
            "[link]\nlisten = \"127.0.0.1:{b_port}\"\nadvertise = \"localhost:{}\"\n\
             groups = [\"x\"]\ndial_groups = [\"y\"]\n",
            proxy.addr().port()
        );
        let b = Router::start_configured(&admin, "dia-b", &control, &b_config, &[]).await;
        let c_config = format!(
            "[link]\nlisten = \"127.0.0.1:{}\"\ngroups = [\"x\"]\ndial_groups = [\"y\"]\n",
            free_port()
        );
        let c = Router::start_configured(&admin, "dia-c", &control, &c_config, &[]).await;
        let a = Router::start_configured(
            &admin,
            "dia-a",
            &control,
            "[link]\ndial_groups = [\"x\"]\n",
            &[],
        )
        .await;
        wait_links(&admin, "four links up", |l| {
            l.len() == 4 && l.iter().all(is_up_with_latency)
        })
        .await;
        admin.dialers_and_hosts_on("dia-a", "dia-d").await;
        let (host, client) = service_with_host_and_client(&admin, "dia").await;
        Self {
            controller,
            admin,
            proxy,
            a,
            b,
            c,
            d,
            host,
            client,
        }
    }

    /// The path of the only circuit listed.
    async fn path(&self) -> Vec<String> {
        let circuits = self.admin.get("circuits").await["data"].clone();
        circuits[0]["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_makes_new_circuits_take_the_other_path() {
    let dia = Diamond::start().await;
    let (admin, proxy, a, b, c, d) = (&dia.admin, &dia.proxy, &dia.a, &dia.b, &dia.c, &dia.d);
    let (host, client) = (&dia.host, &dia.client);
    let listener = host.bind("dia").await.unwrap();
    let _server = tokio::spawn(async move {
        while let Ok(mut s) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });

    // The link A - B grows slow (the proxy holds every chunk 60 ms each way): its
    // measured latency, and so its cost, rises above the path through C.
    proxy.set_latency(Duration::from_millis(60));
    let ab = format!("{}->{}", a.id, b.id);
    wait_links(admin, "A - B measured slow", |l| {
        l.iter().any(|l| {
            l["id"] == ab.as_str() && l["sourceLatencyMs"].as_f64().is_some_and(|ms| ms > 60.0)
        })
    })
    .await;
    for round in 0..3 {
        let mut s = client.dial("dia").await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ping");
        let circuits = admin.get("circuits").await["data"].clone();
        let paths: Vec<Vec<String>> = circuits
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                c["path"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect()
            })
            .collect();
        assert!(
            paths
                .iter()
                .all(|p| *p == [a.id.clone(), c.id.clone(), d.id.clone()]),
            "round {round}: a circuit took the slow link: {paths:?}"
        );
        drop(s);
    }
    drop(dia.controller);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_router_mid_transfer_reroutes_the_circuit_and_loses_nothing() {
    let mut dia = Diamond::start().await;
    let listener = dia.host.bind("dia").await.unwrap();
    let upload = weft_testkit::pattern(TEN_MB, 21);
    let download = weft_testkit::pattern(TEN_MB, 22);
    let (up_sum, down_sum) = (sha(&upload), sha(&download));
    let server = tokio::spawn(async move {
        let mut stream = listener.accept().await.unwrap();
        let mut got = Vec::with_capacity(TEN_MB);
        let (mut rd, mut wr) = tokio::io::split(&mut stream);
        let writer = async {
            for chunk in download.chunks(64 * 1024) {
                wr.write_all(chunk).await.unwrap();
                // Paced, so that the transfer is still going when the router dies.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            wr.shutdown().await.unwrap();
        };
        let reader = async { rd.read_to_end(&mut got).await.unwrap() };
        tokio::join!(writer, reader);
        assert_eq!(sha(&got), up_sum, "upload differs after the reroute");
    });
    let mut stream = dia.client.dial("dia").await.unwrap();
    let path = dia.path().await;
    assert_eq!(path.len(), 3, "{path:?}");
    let middle = if path[1] == dia.b.id { "b" } else { "c" };
    // Watches the circuit's path until it changes (the circuit leaves the list once the
    // transfer is over).
    let watcher = {
        let (admin, old) = (dia.admin.clone(), path.clone());
        tokio::spawn(async move {
            loop {
                let circuits = admin.get("circuits").await["data"].clone();
                if let Some(p) = circuits[0]["path"].as_array() {
                    let p: Vec<String> = p.iter().map(|r| r.as_str().unwrap().to_owned()).collect();
                    if p != old {
                        return (p, Instant::now());
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let (mut rd, mut wr) = tokio::io::split(&mut stream);
    let writer = async {
        for chunk in upload.chunks(64 * 1024) {
            wr.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        wr.shutdown().await.unwrap();
    };
    let started = Instant::now();
    let reader = async {
        let mut got = Vec::with_capacity(TEN_MB);
        let mut buf = vec![0u8; 64 * 1024];
        let mut killed = None;
        loop {
            let n = rd.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if killed.is_none() && got.len() >= TEN_MB / 3 {
                // The middle router of the path dies with the transfer under way.
                match middle {
                    "b" => dia.b.kill(),
                    _ => dia.c.kill(),
                }
                killed = Some(Instant::now());
            }
        }
        (got, killed)
    };
    let ((), (got, killed)) =
        tokio::time::timeout(WAIT * 2, async { tokio::join!(writer, reader) })
            .await
            .expect("the transfer did not finish after the reroute");
    assert_eq!(sha(&got), down_sum, "download differs after the reroute");
    server.await.unwrap();
    let (new_path, moved_at) = tokio::time::timeout(WAIT, watcher)
        .await
        .expect("the circuit's new path was never listed")
        .unwrap();
    assert_ne!(new_path, path, "the circuit moved to the other path");
    assert_eq!(new_path.len(), 3);
    let killed = killed.expect("the router was killed");
    eprintln!(
        "rerouted from {path:?} to {new_path:?} within {:?} of the kill; 20 MB in {:?}",
        moved_at.saturating_duration_since(killed),
        started.elapsed(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_streams_share_a_link_while_another_stream_stalls() {
    const STREAMS: usize = 64;
    const EACH: usize = 512 * 1024;
    let line = Line::start().await;
    line.service("many", false).await;
    let (host, client) = line.contexts("many").await;
    let listener = host.bind("many").await.unwrap();
    // The host answers each stream with its own pattern; the first stream it accepts
    // is the one whose reader (on the dialer's side) never reads.
    let server = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for i in 0..=STREAMS {
            let mut stream = listener.accept().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut id = [0u8; 1];
                stream.read_exact(&mut id).await.unwrap();
                let data =
                    weft_testkit::pattern(if i == 0 { 8 * EACH } else { EACH }, u32::from(id[0]));
                // The stalled stream's writes block once its window is full.
                let _ = stream.write_all(&data).await;
                let _ = stream.shutdown().await;
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
            }));
        }
        tasks
    });
    let mut stalled = client.dial("many").await.unwrap();
    stalled.write_all(&[255]).await.unwrap();
    let started = Instant::now();
    let mut readers = Vec::new();
    for i in 0..STREAMS {
        let mut stream = client.dial("many").await.unwrap();
        stream.write_all(&[i as u8]).await.unwrap();
        readers.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(EACH);
            stream.read_to_end(&mut got).await.unwrap();
            let want = weft_testkit::pattern(EACH, i as u32);
            assert!(
                got == want,
                "stream {i}: {} bytes, differ from the pattern",
                got.len()
            );
            started.elapsed()
        }));
    }
    let mut times = Vec::new();
    for r in readers {
        times.push(
            tokio::time::timeout(WAIT, r)
                .await
                .expect("a stream starved behind the stalled one")
                .unwrap(),
        );
    }
    times.sort();
    eprintln!(
        "{STREAMS} streams × {EACH} B across a link beside a stalled stream: fastest {:?}, slowest {:?}",
        times[0],
        times[STREAMS - 1]
    );
    drop(stalled);
    drop(server);
}

/// Stickiness across routers: the controller chooses the terminator of a circuit that
/// crosses the mesh, honouring the dialer's stickiness token (a `sticky` service), and
/// the ingress router hands the dialer the token of the terminator reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stickiness_token_picks_the_terminator_across_routers() {
    let line = Line::start().await;
    line.service("stick", false).await;
    let listed = line.admin.get("services?filter=name=\"stick\"").await;
    let id = listed["data"][0]["id"].as_str().unwrap().to_owned();
    line.admin
        .patch(
            &format!("services/{id}"),
            serde_json::json!({"terminatorStrategy": "sticky"}),
        )
        .await;
    let (_, jwt) = line
        .admin
        .identity("stick-h2", &["stick-host", "hoster"])
        .await;
    let second = weft_sdk::enroll(&jwt).await.unwrap();
    let mut hosts = Vec::new();
    for (identity, name) in [(line.host_identity("stick").await, "one"), (second, "two")] {
        let ctx = weft_sdk::Context::new(identity).await.unwrap();
        let listener = ctx.bind("stick").await.unwrap();
        hosts.push(ctx);
        tokio::spawn(async move {
            while let Ok(mut s) = listener.accept().await {
                // The host names itself and keeps the stream until the dialer ends it.
                tokio::spawn(async move {
                    let _ = s.write_all(name.as_bytes()).await;
                    let mut rest = Vec::new();
                    let _ = s.read_to_end(&mut rest).await;
                });
            }
        });
    }
    let client = weft_sdk::Context::new(line.client_identity("stick").await)
        .await
        .unwrap();
    let answer = |options: weft_sdk::DialOptions| {
        let client = client.clone();
        async move {
            let mut s = client.dial_with_options("stick", &options).await.unwrap();
            assert_eq!(s.router(), "line-a", "the circuit starts on router A");
            let token = s.stickiness_token().map(<[u8]>::to_vec);
            let mut name = [0u8; 3];
            s.read_exact(&mut name).await.unwrap();
            (String::from_utf8_lossy(&name).into_owned(), token)
        }
    };
    // Both terminators are up once the client sees two.
    let deadline = Instant::now() + Duration::from_secs(30);
    let terminators = loop {
        let t = client.terminators("stick").await.unwrap();
        if t.len() == 2 {
            break t;
        }
        assert!(Instant::now() < deadline, "terminators: {t:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for t in &terminators {
        let options = weft_sdk::DialOptions::default().with_stickiness_token(t.id.clone());
        let (first, token) = answer(options.clone()).await;
        assert_eq!(
            token.as_deref(),
            Some(t.id.as_bytes()),
            "the reply names it"
        );
        for _ in 0..4 {
            assert_eq!(answer(options.clone()).await.0, first, "token {}", t.id);
        }
    }
    let (a, _) =
        answer(weft_sdk::DialOptions::default().with_stickiness_token(terminators[0].id.clone()))
            .await;
    let (b, _) =
        answer(weft_sdk::DialOptions::default().with_stickiness_token(terminators[1].id.clone()))
            .await;
    assert_ne!(a, b, "each token reaches its own host");
}

/// Lines of `name{…}` series on the metrics port `port`.
async fn series(http: &reqwest::Client, port: u16, name: &str) -> usize {
    metrics_text(http, port)
        .await
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .count()
}

/// Waits until router metrics on `port` list `n` link connections.
async fn wait_connections(http: &reqwest::Client, port: u16, n: usize) {
    let deadline = Instant::now() + WAIT;
    while series(http, port, "weft_router_link_circuits").await != n {
        assert!(Instant::now() < deadline, "{n} link connections never up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A link of three connections (`[link] connections = 3` on the dialer), through a
/// fault-injecting proxy: twelve streams cross it both ways, two of its connections are
/// reset mid-transfer, and every stream ends byte-identical: the circuits of the lost
/// connections move to the third on the same path, the link stays up all along, and
/// the lost connections are dialled again. (The streams all start together and are
/// reset a quarter of the way; a clean close crossing a lost link is covered by the
/// simulated tests of `router/src/forward/mesh_tests.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_loses_two_of_its_three_connections_keeps_every_stream() {
    const STREAMS: usize = 12;
    const EACH: usize = 1024 * 1024;
    const CHUNK: usize = 16 * 1024;
    init_logs();
    let controller = Ctl::start();
    let admin = controller.admin().await;
    let control = controller.control_addr();
    let http = controller.http();
    let b_port = free_port();
    let proxy = weft_testkit::proxy::FaultProxy::start(([127, 0, 0, 1], b_port).into()).await;
    let (metrics_a, metrics_b) = (free_port(), free_port());
    let b_config = format!(
        "metrics.listen = \"127.0.0.1:{metrics_b}\"\n[link]\nlisten = \"127.0.0.1:{b_port}\"\n\
         advertise = \"localhost:{}\"\ndial_groups = []\n",
        proxy.addr().port()
    );
    let _b = Router::start_configured(&admin, "multi-b", &control, &b_config, &[]).await;
    let a_config = format!("metrics.listen = \"127.0.0.1:{metrics_a}\"\n[link]\nconnections = 3\n");
    let _a = Router::start_configured(&admin, "multi-a", &control, &a_config, &[]).await;
    wait_links(&admin, "link up", |l| {
        l.len() == 1 && is_up_with_latency(&l[0])
    })
    .await;
    for port in [metrics_a, metrics_b] {
        wait_connections(&http, port, 3).await;
    }
    admin.dialers_and_hosts_on("multi-a", "multi-b").await;
    let (host, client) = service_with_host_and_client(&admin, "multi").await;
    let listener = host.bind("multi").await.unwrap();
    // Every stream, both ways, starts once all are dialled.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(2 * STREAMS));

    // Paced writes, so that the transfers are under way when the connections go.
    async fn paced(wr: &mut (impl AsyncWriteExt + Unpin), data: &[u8]) {
        for chunk in data.chunks(CHUNK) {
            wr.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        wr.shutdown().await.unwrap();
    }
    // The host checks what each stream uploads and sends its own pattern down.
    let host_start = start.clone();
    let server = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..STREAMS {
            let mut stream = listener.accept().await.unwrap();
            let start = host_start.clone();
            tasks.push(tokio::spawn(async move {
                let mut id = [0u8; 1];
                stream.read_exact(&mut id).await.unwrap();
                let id = u32::from(id[0]);
                start.wait().await;
                let (mut rd, mut wr) = tokio::io::split(stream);
                let down = weft_testkit::pattern(EACH, 100 + id);
                let mut got = Vec::with_capacity(EACH);
                let ((), read) = tokio::join!(paced(&mut wr, &down), rd.read_to_end(&mut got));
                read.unwrap();
                assert!(
                    got == weft_testkit::pattern(EACH, id),
                    "upload {id} differs"
                );
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut dialers = Vec::new();
    for i in 0..STREAMS {
        let mut stream = client.dial("multi").await.unwrap();
        let (received, start) = (received.clone(), start.clone());
        dialers.push(tokio::spawn(async move {
            stream.write_all(&[i as u8]).await.unwrap();
            start.wait().await;
            let (mut rd, mut wr) = tokio::io::split(stream);
            let up = weft_testkit::pattern(EACH, i as u32);
            let reader = async {
                let mut got = Vec::with_capacity(EACH);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = rd.read(&mut buf).await.expect("a stream failed");
                    if n == 0 {
                        break got;
                    }
                    got.extend_from_slice(&buf[..n]);
                    received.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
            };
            let ((), got) = tokio::join!(paced(&mut wr, &up), reader);
            assert!(
                got == weft_testkit::pattern(EACH, 100 + i as u32),
                "download {i} differs ({} bytes)",
                got.len()
            );
        }));
    }
    // A quarter of the way down, two of the link's three connections are reset.
    while received.load(std::sync::atomic::Ordering::Relaxed) < STREAMS * EACH / 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.reset_connection(0);
    proxy.reset_connection(1);
    for d in dialers {
        tokio::time::timeout(WAIT, d)
            .await
            .expect("a stream did not finish after the connections were lost")
            .unwrap();
    }
    tokio::time::timeout(WAIT, server)
        .await
        .expect("the host did not finish")
        .unwrap();
    // The link never went down; the circuits of the lost connections moved (twelve
    // circuits on three connections by their ids: some were on the two lost ones).
    for port in [metrics_a, metrics_b] {
        assert_eq!(metric(&http, port, "weft_router_links_lost_total").await, 0);
        assert_eq!(metric(&http, port, "weft_router_links_up_total").await, 1);
    }
    let moved = metric(&http, metrics_a, "weft_router_circuits_rerouted_total").await;
    assert!(moved >= 1, "no circuit was on the lost connections");
    eprintln!("{moved} of {STREAMS} circuits moved to another connection of the link");
    // The lost connections are dialled again.
    for port in [metrics_a, metrics_b] {
        wait_connections(&http, port, 3).await;
    }
}

/// 1-byte frames across two links toward a reader that never reads: each router on the
/// path charges every frame its cost (the links' credit too, which both routers agreed
/// on in the link hello), so none of them holds more than about a window's worth of
/// frames, and the ingress stops reading the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_frames_across_links_toward_a_reader_that_never_reads_are_bounded() {
    const MOST: usize = 1_500_000;
    let line = Line::start().await;
    line.service("drip", false).await;
    let (host, client) = line.contexts("drip").await;
    let server = serve_never_reading(&host, "drip").await;
    let mut stream = client.dial("drip").await.unwrap();
    let routers = [&line.a, &line.b, &line.c];
    let before: Vec<u64> = routers.iter().map(|r| r.rss_kib()).collect();
    let sent = drip(&mut stream, MOST, Duration::from_secs(2)).await;
    let grown: Vec<u64> = routers
        .iter()
        .zip(&before)
        .map(|(r, b)| r.rss_kib().saturating_sub(*b))
        .collect();
    eprintln!("the path took {sent} 1-byte frames; routers A, B, C grew by {grown:?} KiB");
    assert!(sent < MOST, "the path took {sent} 1-byte frames");
    for (name, kib) in ["A", "B", "C"].iter().zip(&grown) {
        assert!(*kib < 64 * 1024, "router {name} grew by {kib} KiB");
    }
    server.abort();
}
