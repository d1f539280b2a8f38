//! The mesh with real processes: routers with a `[link]` section find each other through
//! the controller's peer list, link up (mutual TLS with their enrolled certificates),
//! measure the link's latency and report it; a lost link is reported down and dialled
//! again; a certificate the controller does not vouch for as a router's is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_testkit::{Admin, Ctl, Router, free_port, init_logs};

const WAIT: Duration = Duration::from_secs(30);

/// A `[link]` section listening on a free loopback port, and a metrics listener.
fn link_config() -> (String, u16, u16) {
    let (link, metrics) = (free_port(), free_port());
    (
        format!(
            "metrics_listen = \"127.0.0.1:{metrics}\"\n[link]\nlisten = \"127.0.0.1:{link}\"\n"
        ),
        link,
        metrics,
    )
}

/// Polls `GET /links` until `done` holds for the list, which it returns.
async fn links_until(admin: &Admin, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let links = admin.get("links").await["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if done(&links) {
            return links;
        }
        assert!(Instant::now() < deadline, "{what}: links are {links:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_up_with_latency(l: &Value) -> bool {
    l["state"] == "up" && l["sourceLatencyMs"].is_number() && l["destLatencyMs"].is_number()
}

async fn metric(http: &reqwest::Client, port: u16, name: &str) -> u64 {
    let body = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
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
    let links = links_until(&admin, "link up", |l| {
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
    }

    // The peer dies: the survivor reports the link down.
    b.kill();
    // (b's own reports left with its control connection; a's says down.)
    links_until(&admin, "link down", |l| {
        l.len() == 1 && l[0]["state"] == "down"
    })
    .await;
    assert_eq!(
        metric(&http, metrics_a, "weft_router_links_lost_total").await,
        1
    );

    // It comes back (on the same link port): the link is dialled again.
    b.restart(&admin).await;
    links_until(&admin, "link up again", |l| {
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

/// A controller and three routers in a line, A - B - C: B listens, A and C dial it, and
/// A and C share no group (so no link joins them).
struct Line {
    controller: Ctl,
    admin: Admin,
    a: Router,
    b: Router,
    c: Router,
}

impl Line {
    async fn start() -> Self {
        init_logs();
        let controller = Ctl::start();
        let admin = controller.admin().await;
        let control = controller.control_addr();
        let b_config = format!(
            "[link]\nlisten = \"127.0.0.1:{}\"\ngroups = [\"ab\", \"bc\"]\ndial_groups = []\n",
            free_port()
        );
        let b = Router::start_configured(&admin, "line-b", &control, &b_config, &[]).await;
        let a_config = "[link]\ndial_groups = [\"ab\"]\n";
        let a = Router::start_configured(&admin, "line-a", &control, a_config, &[]).await;
        let c_config = "[link]\ndial_groups = [\"bc\"]\n";
        let c = Router::start_configured(&admin, "line-c", &control, c_config, &[]).await;
        links_until(&admin, "two links up", |l| {
            l.len() == 2 && l.iter().all(|l| l["state"] == "up")
        })
        .await;
        // Dialers may use router A only, hosts router C only: a circuit must cross B.
        for (name, identities, routers) in [
            ("dialers-on-a", "#dialer", "#line-a"),
            ("hosts-on-c", "#hoster", "#line-c"),
        ] {
            admin
                .create(
                    "edge-router-policies",
                    serde_json::json!({"name": name, "edgeRouterRoles": [routers],
                                       "identityRoles": [identities]}),
                )
                .await;
        }
        admin
            .create(
                "service-edge-router-policies",
                serde_json::json!({"name": "all-services", "edgeRouterRoles": ["#all"],
                                   "serviceRoles": ["#all"]}),
            )
            .await;
        Self {
            controller,
            admin,
            a,
            b,
            c,
        }
    }

    /// A service `name` with a host context (on C) and a client context (on A).
    async fn service(&self, name: &str, encrypted: bool) -> (weft_sdk::Context, weft_sdk::Context) {
        self.admin.service(name, &[name], encrypted).await;
        let role = format!("#{name}");
        for (kind, who) in [("Dial", "client"), ("Bind", "host")] {
            self.admin
                .service_policy(
                    &format!("{name}-{kind}"),
                    kind,
                    &[&format!("#{name}-{who}")],
                    &[&role],
                )
                .await;
        }
        let context = |id: String, attrs: Vec<String>| async move {
            let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
            let (_, jwt) = self.admin.identity(&id, &attrs).await;
            let identity = weft_sdk::enroll(&jwt).await.unwrap();
            weft_sdk::Context::new(identity).await.unwrap()
        };
        let host = context(
            format!("{name}-h"),
            vec![format!("{name}-host"), "hoster".into()],
        )
        .await;
        let client = context(
            format!("{name}-c"),
            vec![format!("{name}-client"), "dialer".into()],
        )
        .await;
        (host, client)
    }
}

fn sha(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

const TEN_MB: usize = 10 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_crosses_three_routers_ten_megabytes_each_way() {
    let line = Line::start().await;
    let (host, client) = line.service("line", true).await;
    let mut listener = host.bind("line").await.unwrap();
    let upload = weft_testkit::pattern(TEN_MB, 7);
    let download = weft_testkit::pattern(TEN_MB, 8);
    let (up_sum, down_sum) = (sha(&upload), sha(&download));
    let server = tokio::spawn(async move {
        let mut stream = listener.accept().await.unwrap();
        assert_eq!(stream.peer(), "line-c");
        let mut got = Vec::with_capacity(TEN_MB);
        let (mut rd, mut wr) = tokio::io::split(&mut stream);
        let writer = async {
            wr.write_all(&download).await.unwrap();
            wr.shutdown().await.unwrap();
        };
        let reader = async { rd.read_to_end(&mut got).await.unwrap() };
        tokio::join!(writer, reader);
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
    let started = Instant::now();
    let (mut rd, mut wr) = tokio::io::split(&mut stream);
    let writer = async {
        wr.write_all(&upload).await.unwrap();
        wr.shutdown().await.unwrap();
    };
    let reader = async {
        let mut got = Vec::with_capacity(TEN_MB);
        rd.read_to_end(&mut got).await.unwrap();
        got
    };
    let ((), got) = tokio::join!(writer, reader);
    assert_eq!(sha(&got), down_sum, "download corrupted across the routers");
    eprintln!(
        "20 MB across three routers (encrypted) in {:?}",
        started.elapsed()
    );
    server.await.unwrap();
    drop(stream);
    // Every router of the path reports the end: the controller forgets the circuit.
    let deadline = Instant::now() + WAIT;
    while !line.admin.get("circuits").await["data"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the circuit is still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(line.controller);
}
