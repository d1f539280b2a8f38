//! The controller becomes unreachable for a router (the control connection is reset and
//! new ones refused, through the test kit's fault-injecting proxy): circuits through
//! the router keep carrying data on the state it holds, and when the controller is back
//! the router resynchronises without dropping them; new dials work again. Meanwhile the
//! router stays live (`/health`) but says it is not ready (`/ready` 503).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use weft_testkit::proxy::FaultProxy;
use weft_testkit::traffic::{WAIT, dial_soon, echo, ops_get, serve_echo};
use weft_testkit::{Ctl, Network, Router, free_port, init_logs};

async fn online(net: &Network, want: bool) {
    let deadline = Instant::now() + WAIT;
    while net
        .admin
        .get(&format!("edge-routers/{}", net.router.id))
        .await["data"]["isOnline"]
        != want
    {
        assert!(Instant::now() < deadline, "router online != {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the router's `/ready` answers 200 (`want`) or 503; returns the body.
async fn ready(port: u16, want: bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = ops_get(port, "/ready").await;
        if (status == 200) == want && (status == 200 || status == 503) {
            return body;
        }
        assert!(Instant::now() < deadline, "/ready answers {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuits_outlive_a_controller_outage_and_the_resync() {
    init_logs();
    let controller = Ctl::start();
    let admin = controller.admin().await;
    admin.open_routers().await;
    let proxy = FaultProxy::start(([127, 0, 0, 1], controller.control_port()).into()).await;
    let metrics_port = free_port();
    let router = Router::start_configured(
        &admin,
        "edge-1",
        &format!("localhost:{}", proxy.addr().port()),
        &format!("metrics.listen = \"127.0.0.1:{metrics_port}\"\n"),
        &[],
    )
    .await;
    ready(metrics_port, true).await;
    let net = Network {
        controller,
        admin,
        router,
    };
    net.service("outage", &["outage"], false).await;
    let host = net.context("outage-h", &["outage-host"]).await;
    let client = net.context("outage-c", &["outage-client"]).await;
    serve_echo(&host, "outage").await;
    let mut stream = client.dial("outage").await.unwrap();
    echo(&mut stream, 1 << 20, 1).await;

    // The controller goes away for the router.
    proxy.refuse(true);
    proxy.reset_all();
    online(&net, false).await;
    // Live, but not ready: without its control channel it learns of no revocation.
    let (health, _) = ops_get(metrics_port, "/health").await;
    assert_eq!(health, 200);
    let body = ready(metrics_port, false).await;
    assert!(body.contains("control channel"), "{body}");
    echo(&mut stream, 4 << 20, 2).await;

    // It comes back: the router reconnects and takes a fresh state.
    proxy.refuse(false);
    online(&net, true).await;
    ready(metrics_port, true).await;
    echo(&mut stream, 4 << 20, 3).await;

    // New dials work again once the host's terminator is registered anew.
    let mut fresh = dial_soon(&client, "outage").await;
    echo(&mut fresh, 1 << 20, 4).await;
    echo(&mut stream, 1 << 20, 5).await;
}
