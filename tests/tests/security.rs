//! The security model end to end, with real controller and router processes: an
//! identity with MFA must answer a TOTP query before a router lets it in (the Rust SDK
//! answers it from a code source); disabling an identity ends its live streams with an
//! error; a password login reaches routers with an API session certificate, which
//! stands for its own API session only; a client sending 1-byte frames toward a
//! reader that never reads costs the router little memory; an identity that fills its
//! budget on a router waits on all its connections, and other identities do not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_controller::auth::totp;
use weft_sdk::{Context, ErrorKind, Identity, Options};
use weft_testkit::traffic::{dial_soon, drip, scrape, serve_echo, serve_never_reading};
use weft_testkit::{
    Ctl, EdgeClient, Network, Router, free_port, hello_accepted, make_csr, pattern, tls_with,
};
use weft_wire::ContentType;
use weft_wire::edge::HelloResult;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `POST /authenticate?method=cert` with the identity's certificate; the answer's data.
async fn cert_login(identity: &Identity) -> Value {
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(identity.client_tls().unwrap())
        .build()
        .unwrap();
    let res = http
        .post(format!(
            "{}/edge/client/v1/authenticate?method=cert",
            identity.controller()
        ))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["data"].clone()
}

/// Whether the router refuses an edge connection with API session `token`. It answers
/// every hello first and then closes a refused connection (once it waited for the
/// controller to push an unknown API session): refused = closed within 20 s.
async fn router_refuses(identity: &Identity, port: u16, token: &str) -> bool {
    let mut config = identity.client_tls().unwrap();
    config.alpn_protocols.clear();
    let Ok(mut c) = EdgeClient::connect(([127, 0, 0, 1], port).into(), Arc::new(config)).await
    else {
        return true;
    };
    let Some((seq, frame)) = c.hello(token).await else {
        return true;
    };
    assert_eq!(frame.content_type(), ContentType::RESULT);
    assert_eq!(HelloResult::parse(&frame).unwrap().reply_for, seq);
    matches!(
        tokio::time::timeout(Duration::from_secs(20), c.next()).await,
        Ok(None)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_with_mfa_answers_totp_before_a_router_lets_it_in() {
    let net = Network::start().await;
    net.service("vault", &["vault"], true).await;
    let host = net.context("vault-h", &["vault-host"]).await;
    serve_echo(&host, "vault").await;

    // The client enrolls in MFA with the SDK and verifies a code.
    let identity = net.enrolled("vault-c", &["vault-client"]).await;
    let ctx = Context::new(identity.clone()).await.unwrap();
    let enrollment = ctx.enroll_mfa().await.unwrap();
    assert!(!enrollment.is_verified);
    assert_eq!(enrollment.recovery_codes.len(), 20);
    let secret = enrollment.secret().unwrap().to_owned();
    let e = ctx.verify_mfa("not-a-code").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Mfa, "{e}");
    ctx.verify_mfa(&totp::code_at(&secret, now()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        ctx.enroll_mfa().await.unwrap_err().kind(),
        ErrorKind::Mfa,
        "one enrollment per identity"
    );

    // A login now owes a TOTP answer: the router refuses its API session until then.
    let partial = cert_login(&identity).await;
    assert_eq!(partial["authQueries"][0]["typeId"], "MFA");
    let token = partial["token"].as_str().unwrap().to_owned();
    let port = net.router.edge_port;
    assert!(
        router_refuses(&identity, port, &token).await,
        "a partial API session reached the router"
    );
    // The SDK without a code source says what is missing.
    let e = Context::new(identity.clone()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Mfa, "{e}");

    // With a code source, it logs in and dials. The code of the current step was spent
    // at verify; the next step's is within the window.
    let options = Options::default().with_mfa_codes({
        let secret = secret.clone();
        move || {
            let code = totp::code_at(&secret, now() + 30);
            async move { code }
        }
    });
    let client = Context::with_options(identity.clone(), options)
        .await
        .unwrap();
    let mut stream = client.dial("vault").await.unwrap();
    let data = pattern(256 * 1024, 7);
    let (mut r, mut w) = tokio::io::split(&mut stream);
    let sent = data.clone();
    let (_, echoed) = tokio::join!(
        async move { w.write_all(&sent).await.unwrap() },
        async move {
            let mut got = vec![0u8; 256 * 1024];
            r.read_exact(&mut got).await.unwrap();
            got
        }
    );
    assert_eq!(Sha256::digest(&echoed), Sha256::digest(&data));

    // Disabling the identity ends its API sessions: the live stream fails, with an
    // error rather than a clean end.
    let id = net
        .admin
        .get("identities?filter=name%3D%22vault-c%22")
        .await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = net
        .controller
        .call(
            reqwest::Method::POST,
            &format!("/identities/{id}/disable"),
            &net.controller.admin_token().await,
            Some(json!({"durationMinutes": 0})),
        )
        .await;
    assert_eq!(res.0, 200, "{}", res.1);
    let mut buf = [0u8; 16];
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("the stream of a disabled identity stays open");
    assert!(ended.is_err(), "a clean end instead of an error: {ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_login_dials_through_a_router_with_an_api_session_certificate() {
    let net = Network::start().await;
    net.service("ledger", &["ledger"], false).await;
    let host = net.context("ledger-h", &["ledger-host"]).await;
    serve_echo(&host, "ledger").await;

    // An identity with a password only: no certificate of its own.
    let ctl = &net.controller;
    let admin = ctl.admin_token().await;
    let id = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "pat", "type": "User", "isAdmin": false, "roleAttributes": ["ledger-client"]}),
        )
        .await;
    let (s, v) = ctl
        .create(
            &admin,
            "authenticators",
            json!({"method": "updb", "identityId": id, "username": "pat", "password": "pat-password"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let login = || async {
        let res = ctl
            .http()
            .post(ctl.client_url("/authenticate?method=password"))
            .json(&json!({"username": "pat", "password": "pat-password"}))
            .send()
            .await
            .unwrap();
        res.json::<Value>().await.unwrap()["data"]["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let token = login().await;
    let other_token = login().await;
    let call = |method: reqwest::Method, path: &str, token: &str, body: Option<Value>| {
        let mut req = ctl
            .http()
            .request(method, ctl.client_url(path))
            .header("zt-session", token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (csr, key) = make_csr("pat");
    let (s, v) = call(
        reqwest::Method::POST,
        "/current-api-session/certificates",
        &token,
        Some(json!({"csr": csr})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let cert = v["data"]["certificate"].as_str().unwrap().to_owned();
    let cert_id = v["data"]["id"].as_str().unwrap().to_owned();
    let ca = ctl.ca_pem();
    let port = net.router.edge_port;

    // The certificate does not stand for another API session of the same identity.
    assert!(
        hello_accepted(port, tls_with(&ca, &cert, &key), &other_token)
            .await
            .is_none(),
        "the certificate opened another API session's edge connection"
    );
    // With its own API session it does: dial and move bytes. (The router learns the
    // certificate from the controller's push; on a loaded machine that may trail the
    // answer of the create, so a refusal is retried for a while.)
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut edge = loop {
        if let Some(c) = hello_accepted(port, tls_with(&ca, &cert, &key), &token).await {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the router refused the API session certificate"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (s, v) = call(
        reqwest::Method::POST,
        "/sessions",
        &token,
        Some(json!({"serviceId": net.admin.get("services?filter=name%3D%22ledger%22").await["data"][0]["id"], "type": "Dial"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let dial_token = v["data"]["token"].as_str().unwrap().to_owned();
    edge.send_connect(1, &dial_token).await;
    edge.expect(ContentType::STATE_CONNECTED).await;
    let data = pattern(64 * 1024, 3);
    edge.w.data(1, &data).await;
    let (echoed, _) = edge.r.data(1, data.len()).await;
    assert_eq!(Sha256::digest(&echoed), Sha256::digest(&data));

    // Deleting the certificate: a new edge connection with it is refused.
    let (s, _) = call(
        reqwest::Method::DELETE,
        &format!("/current-api-session/certificates/{cert_id}"),
        &token,
        None,
    )
    .await;
    assert_eq!(s, 200);
    // The router learns of the deletion from the controller's push, which may trail the
    // answer by a moment on a loaded machine (the epoll pass of CI once saw it): it must
    // refuse within 3 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while hello_accepted(port, tls_with(&ca, &cert, &key), &token)
        .await
        .is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "a deleted API session certificate still opens edge connections"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_extends_its_certificate_and_goes_on_with_the_new_one() {
    let net = Network::start().await;
    net.service("renew", &["renew"], true).await;
    let host = net.context("renew-h", &["renew-host"]).await;
    serve_echo(&host, "renew").await;
    let old = net.enrolled("renew-c", &["renew-client"]).await;
    let ctx = Context::new(old.clone()).await.unwrap();
    let echo = |ctx: Context| async move {
        let mut s = ctx.dial("renew").await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    };
    echo(ctx.clone()).await;
    let renewed = ctx.extend_certificate(true).await.unwrap();
    assert_ne!(renewed.cert_pem(), old.cert_pem());
    // The context goes on (its routers know the new certificate for its API session).
    echo(ctx.clone()).await;
    // A new context from the renewed identity logs in; the old certificate does not.
    let again = Context::new(renewed.clone()).await.unwrap();
    echo(again).await;
    let e = Context::new(old).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotAuthorized, "{e}");
    // The renewed identity survives a save and a load.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("renewed.json");
    renewed.save(&file).unwrap();
    Context::new(Identity::load(&file).unwrap()).await.unwrap();
}

/// More 1-byte frames than the router may take toward a reader that never reads: with
/// each frame charged its cost it stops reading the client after about 18,000 (the
/// sockets' buffers on the way hold some hundred thousand more); counting payload
/// alone, it took a window of payload, 4 million frames of some hundred bytes each.
const DRIP_MOST: usize = 1_500_000;

/// The most a router may grow while a drip stalls against it.
const DRIP_GROWTH_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_frames_toward_a_reader_that_never_reads_cost_the_router_little_memory() {
    let net = Network::start().await;
    net.service("drip", &["drip"], false).await;
    let host = net.context("drip-h", &["drip-host"]).await;
    let client = net.context("drip-c", &["drip-client"]).await;
    let server = serve_never_reading(&host, "drip").await;
    let mut stream = dial_soon(&client, "drip").await;
    let before = net.router.rss_kib();
    let sent = drip(&mut stream, DRIP_MOST, Duration::from_secs(2)).await;
    let grown = net.router.rss_kib().saturating_sub(before);
    eprintln!("the router took {sent} 1-byte frames and grew by {grown} KiB");
    assert!(
        sent < DRIP_MOST,
        "the router took {sent} 1-byte frames toward a reader that never reads"
    );
    assert!(grown < DRIP_GROWTH_KIB, "the router grew by {grown} KiB");
    server.abort();
}

/// The sum over shards of the router series `name` in `text`.
fn shard_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix("{shard="))
        .filter_map(|rest| rest.split_once("} ")?.1.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_that_fills_its_budget_waits_on_every_connection_and_others_do_not() {
    const WINDOW: usize = 64 * 1024;
    const BUDGET: usize = 256 * 1024;
    weft_testkit::init_logs();
    let controller = Ctl::start();
    let admin = controller.admin().await;
    admin.open_routers().await;
    let metrics = free_port();
    let extra = format!(
        "metrics.listen = \"127.0.0.1:{metrics}\"\nforwarder.window_bytes = {WINDOW}\n\
         forwarder.identity_budget_bytes = {BUDGET}\nruntime.shards = 1\n"
    );
    let control = controller.control_addr();
    let router = Router::start_configured(&admin, "edge-1", &control, &extra, &[]).await;
    let net = Network {
        controller,
        admin,
        router,
    };
    net.service("hog", &["hog"], false).await;
    net.service("echo", &["echo"], false).await;
    let hog_host = net.context("hog-h", &["hog-host"]).await;
    let server = serve_never_reading(&hog_host, "hog").await;
    let echo_host = net.context("echo-h", &["echo-host"]).await;
    serve_echo(&echo_host, "echo").await;
    let hog = net.enrolled("hog-c", &["hog-client", "echo-client"]).await;

    // The hog's first connection sends 1-byte frames toward a reader that never reads
    // until the router stops taking them: its identity is past its budget.
    let first = Context::new(hog.clone()).await.unwrap();
    let mut stalled = dial_soon(&first, "hog").await;
    let sent = drip(&mut stalled, 1_500_000, Duration::from_secs(2)).await;
    let text = scrape(metrics).await;
    let pauses = shard_sum(&text, "weft_router_identity_budget_pauses_total");
    let held = shard_sum(&text, "weft_router_held_bytes");
    eprintln!("{sent} frames sent; {pauses} budget pauses; the router holds {held} B");
    assert!(pauses >= 1, "the identity was never held to its budget");
    // The budget is checked between reads: what one read decodes past it (some
    // thousand 1-byte frames of at most 80 KiB read, each charged its cost) comes on
    // top. (Before the TLS buffer stopped growing with each full read, reads on
    // io_uring reached 2 MB and the router held 6-12 MB here.)
    assert!(
        held <= (BUDGET + 1024 * 1024) as u64,
        "the router holds {held} B for a budget of {BUDGET}"
    );

    // Another connection of the same identity waits too: its dial is not even read.
    let second = Context::new(hog).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(2), second.dial("echo")).await;
    assert!(
        waited.is_err(),
        "a connection of a paused identity was read"
    );
    // Another identity's stream through the same router goes on.
    let other = net.context("other-c", &["echo-client"]).await;
    let mut stream = dial_soon(&other, "echo").await;
    weft_testkit::traffic::echo(&mut stream, 64 * 1024, 9).await;

    // The reader goes (the host's streams are dropped, so its SDK reads its connection
    // again): the identity drains and its other connection is read again.
    server.abort();
    let mut resumed = tokio::time::timeout(Duration::from_secs(20), second.dial("echo"))
        .await
        .expect("the identity's other connection was never read again")
        .unwrap();
    weft_testkit::traffic::echo(&mut resumed, 1024, 10).await;
    drop((stalled, first));
}
