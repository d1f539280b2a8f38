//! Several controllers (controllers sharing one database look the same to a router and
//! an SDK as one controller behind several addresses, which is how these tests build
//! them: the test kit's fault-injecting proxies in front of one real controller).
//!
//! - a router given `controllers = [dead, real]` skips the dead address, comes up and
//!   serves a dial;
//! - a router on controller A (proxy A) is connected to B too (mesh-only) and moves to
//!   B when A resets and refuses it: the failover is counted, new dials work once its
//!   terminators are registered on B, and a circuit carries data all along;
//! - an SDK identity with `ztAPIs = [dead, real]` authenticates, lists services and
//!   dials through the real one, and remembers it; an SDK whose controller goes away
//!   mid-session carries on with the next one and the same API session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;

use weft_testkit::proxy::FaultProxy;
use weft_testkit::traffic::{
    PacedEcho, control_connected_to, dial_soon, echo, metric_value, scrape, serve_echo, wait_scrape,
};
use weft_testkit::{Ctl, Network, Router, free_port, init_logs};

/// A loopback port that was bound and closed again: connecting to it is refused.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_skips_a_dead_controller_address_and_serves_a_dial() {
    init_logs();
    let controller = Ctl::start();
    let admin = controller.admin().await;
    admin.open_routers().await;
    let dead = format!("localhost:{}", dead_port());
    let real = controller.control_addr();
    let metrics_port = free_port();
    let router = Router::start_with_controllers(
        &admin,
        "edge-1",
        &[&dead, &real],
        &format!("metrics.listen = \"127.0.0.1:{metrics_port}\"\n"),
        &[],
    )
    .await;
    let net = Network {
        controller,
        admin,
        router,
    };
    let text = wait_scrape(metrics_port, "the router is on the real controller", |t| {
        control_connected_to(t, &real)
    })
    .await;
    // Coming up on the second address is no failover: no connection came before.
    assert_eq!(
        metric_value(&text, "weft_router_control_failovers_total"),
        0
    );

    net.service("skip", &["skip"], true).await;
    let host = net.context("skip-h", &["skip-host"]).await;
    let client = net.context("skip-c", &["skip-client"]).await;
    serve_echo(&host, "skip").await;
    let mut stream = dial_soon(&client, "skip").await;
    echo(&mut stream, 1 << 20, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_fails_over_to_the_next_controller_while_its_circuits_carry_data() {
    init_logs();
    let controller = Ctl::start();
    let admin = controller.admin().await;
    admin.open_routers().await;
    let upstream = ([127, 0, 0, 1], controller.control_port()).into();
    let proxy_a = FaultProxy::start(upstream).await;
    let proxy_b = FaultProxy::start(upstream).await;
    let a = format!("localhost:{}", proxy_a.addr().port());
    let b = format!("localhost:{}", proxy_b.addr().port());
    let metrics_port = free_port();
    let router = Router::start_with_controllers(
        &admin,
        "edge-1",
        &[&a, &b],
        &format!("metrics.listen = \"127.0.0.1:{metrics_port}\"\n"),
        &[],
    )
    .await;
    let net = Network {
        controller,
        admin,
        router,
    };
    let text = wait_scrape(metrics_port, "the router is on A", |t| {
        control_connected_to(t, &a)
    })
    .await;
    assert_eq!(
        metric_value(&text, "weft_router_control_failovers_total"),
        0
    );
    // B is connected too, mesh-only (so that it sees this router for routing).
    let text = wait_scrape(metrics_port, "the router is connected to B too", |t| {
        metric_value(t, "weft_router_control_channels_up") == 2
    })
    .await;
    assert!(control_connected_to(&text, &a), "{text}");
    assert_eq!(proxy_b.stats().connections.load(Ordering::Relaxed), 1);

    net.service("failover", &["failover"], true).await;
    let host = net.context("failover-h", &["failover-host"]).await;
    let client = net.context("failover-c", &["failover-client"]).await;
    serve_echo(&host, "failover").await;
    let mut stream = dial_soon(&client, "failover").await;
    echo(&mut stream, 1 << 20, 1).await;

    // A paced stream through the circuit for as long as the switch takes, and longer:
    // every byte sent is hashed, every byte echoed back too.
    let paced = PacedEcho::start(stream);
    paced.advance(256 * 1024, "before the switch").await;

    // Controller A goes away for the router: its connection is reset, new ones refused.
    proxy_a.refuse(true);
    proxy_a.reset_all();
    let text = wait_scrape(metrics_port, "the router moved to B", |t| {
        control_connected_to(t, &b) && metric_value(t, "weft_router_control_failovers_total") >= 1
    })
    .await;
    assert_eq!(
        metric_value(&text, "weft_router_control_failovers_total"),
        1
    );
    assert!(proxy_b.stats().connections.load(Ordering::Relaxed) >= 1);
    // The stream kept going across the switch.
    paced.advance(512 * 1024, "across the switch").await;

    // New dials work once the host's terminator is registered over B.
    let mut fresh = dial_soon(&client, "failover").await;
    echo(&mut fresh, 1 << 20, 2).await;

    paced.reach(4 << 20, "4 MiB in all").await;
    let sent = paced.finish().await;
    assert!(sent >= 4 << 20, "only {sent} bytes sent");
    // Still on B: no further switch.
    let text = scrape(metrics_port).await;
    assert!(control_connected_to(&text, &b), "{text}");
    assert_eq!(
        metric_value(&text, "weft_router_control_failovers_total"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_identity_with_zt_apis_uses_the_controller_that_answers() {
    let net = Network::start().await;
    net.service("ztapis", &["ztapis"], true).await;
    let host = net.context("ztapis-h", &["ztapis-host"]).await;
    serve_echo(&host, "ztapis").await;

    let enrolled = net.enrolled("ztapis-c", &["ztapis-client"]).await;
    let real = enrolled.controller().to_owned();
    let dead = format!("https://localhost:{}", dead_port());
    // Through the identity file: `ztAPIs` is written and read back.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.json");
    enrolled
        .clone()
        .with_controllers([&dead, &real])
        .unwrap()
        .save(&path)
        .unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(file["ztAPI"], dead.as_str());
    assert_eq!(file["ztAPIs"], serde_json::json!([dead, real]));
    let identity = weft_sdk::Identity::load(&path).unwrap();
    assert_eq!(identity.controllers(), [dead.clone(), real.clone()]);

    let client = weft_sdk::Context::new(identity).await.unwrap();
    assert_eq!(
        client.controller(),
        real,
        "the live controller is remembered"
    );
    let services = client.services().await.unwrap();
    assert!(services.iter().any(|s| s.name == "ztapis"), "{services:?}");
    let mut stream = dial_soon(&client, "ztapis").await;
    echo(&mut stream, 1 << 20, 3).await;
    assert_eq!(client.controller(), real);

    // The controller in use goes away mid-session (a proxy in front of it resets and
    // refuses): the next request goes to the next URL with the same API session.
    let proxy = FaultProxy::start(net.controller.addr).await;
    let via_proxy = format!("https://localhost:{}", proxy.addr().port());
    let moving = weft_sdk::Context::with_options(
        enrolled.clone(),
        weft_sdk::Options::default().with_controllers([via_proxy.clone(), real.clone()]),
    )
    .await
    .unwrap();
    assert_eq!(moving.controller(), via_proxy);
    proxy.refuse(true);
    proxy.reset_all();
    let services = moving.services().await.unwrap();
    assert!(services.iter().any(|s| s.name == "ztapis"), "{services:?}");
    assert_eq!(
        moving.controller(),
        real,
        "the controller that answered is kept"
    );
    let mut stream = dial_soon(&moving, "ztapis").await;
    echo(&mut stream, 256 * 1024, 5).await;

    // The same in code, through the options.
    let options = weft_sdk::Options::default().with_controllers([dead.clone(), real.clone()]);
    let other = weft_sdk::Context::with_options(enrolled, options)
        .await
        .unwrap();
    assert_eq!(other.controller(), real);
    let mut stream = dial_soon(&other, "ztapis").await;
    echo(&mut stream, 256 * 1024, 4).await;
}
