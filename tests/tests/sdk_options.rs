//! The Rust SDK's dial and bind options against real controller and router processes
//! (issue 21, item 2): a dial naming a terminator identity reaches that host and hands
//! it application data; a host bound with `Required` precedence takes the dials while
//! it is up; a dial timeout and a controller request timeout end what would otherwise
//! wait; a context loads its identity from a file; a client lists where a service is
//! hosted; a stickiness token brings a dial back to the terminator of an earlier one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_sdk::{BindOptions, Context, DialOptions, ErrorKind, Options, Precedence};
use weft_testkit::Network;

/// Hosts `service` as `name`: every accepted stream gets `name:APP_DATA` and ends.
async fn host(ctx: &Context, service: &str, name: &'static str, options: BindOptions) {
    let listener = ctx.bind_with_options(service, options).await.unwrap();
    tokio::spawn(async move {
        while let Ok(mut s) = listener.accept().await {
            let data = String::from_utf8_lossy(s.app_data().unwrap_or_default()).into_owned();
            let _ = s.write_all(format!("{name}:{data}").as_bytes()).await;
            let _ = s.shutdown().await;
        }
    });
}

async fn answer(client: &Context, service: &str, options: &DialOptions) -> String {
    let mut s = client.dial_with_options(service, options).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_reaches_the_terminator_identity_it_names_with_its_app_data() {
    let net = Network::start().await;
    net.service("desks", &["desks"], true).await;
    let h1 = net.context("desk-1", &["desks-host"]).await;
    let h2 = net.context("desk-2", &["desks-host"]).await;
    host(
        &h1,
        "desks",
        "one",
        BindOptions::default().with_identity("one"),
    )
    .await;
    host(
        &h2,
        "desks",
        "two",
        BindOptions::default().with_identity("two"),
    )
    .await;
    let client = net.context("visitor", &["desks-client"]).await;
    // The client can see where the service is hosted, by terminator identity.
    let terminators = client.terminators("desks").await.unwrap();
    let mut identities: Vec<&str> = terminators.iter().map(|t| t.identity.as_str()).collect();
    identities.sort_unstable();
    assert_eq!(identities, ["one", "two"], "{terminators:?}");
    assert!(terminators.iter().all(|t| !t.router_id.is_empty()));
    // An identity without a permission on the service does not see them.
    let stranger = net.context("stranger", &[]).await;
    let err = stranger.terminators("desks").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchService, "{err}");
    for _ in 0..3 {
        for (identity, data) in [("two", "hello"), ("one", "{\"seat\":4}")] {
            let options = DialOptions::default()
                .with_identity(identity)
                .with_app_data(data);
            assert_eq!(
                answer(&client, "desks", &options).await,
                format!("{identity}:{data}")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_terminator_takes_the_dials_while_it_is_up() {
    let net = Network::start().await;
    net.service("prec", &["prec"], false).await;
    let spare = net.context("spare", &["prec-host"]).await;
    let main = net.context("main", &["prec-host"]).await;
    host(
        &spare,
        "prec",
        "spare",
        BindOptions::default().with_cost(10),
    )
    .await;
    host(
        &main,
        "prec",
        "main",
        BindOptions::default().with_precedence(Precedence::Required),
    )
    .await;
    let client = net.context("user", &["prec-client"]).await;
    for _ in 0..8 {
        assert_eq!(
            answer(&client, "prec", &DialOptions::default()).await,
            "main:"
        );
    }
    // The required host goes away: the default one serves.
    main.close().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match client
            .dial_with_options("prec", &DialOptions::default())
            .await
        {
            Ok(mut s) => {
                let mut out = String::new();
                if s.read_to_string(&mut out).await.is_ok() && out == "spare:" {
                    break;
                }
            }
            Err(e) => assert!(Instant::now() < deadline, "no dial after the switch: {e}"),
        }
        assert!(Instant::now() < deadline, "dials still reach the gone host");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_timeout_and_a_controller_timeout_end_the_wait() {
    let net = Network::start().await;
    net.service("slow", &["slow"], false).await;
    let h = net.context("slow-h", &["slow-host"]).await;
    host(&h, "slow", "h", BindOptions::default()).await;
    let identity = net.enrolled("slow-c", &["slow-client"]).await;
    // From its file, as OpenZiti's NewContextFromFile; a missing file is an identity error.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slow-c.json");
    identity.save(&file).unwrap();
    let client = Context::from_file(&file).await.unwrap();
    let e = Context::from_file(dir.path().join("absent.json"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Identity, "{e}");
    // A dial cannot finish in a microsecond: it fails as a timeout, and the context
    // goes on dialing.
    let e = client
        .dial_with_options(
            "slow",
            &DialOptions::default().with_timeout(Duration::from_micros(1)),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert_eq!(answer(&client, "slow", &DialOptions::default()).await, "h:");

    // A controller that accepts connections and never answers: the login gives up
    // after the configured request timeout, not the default 20 s.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", silent.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let options = Options {
        controller_timeout: Duration::from_secs(1),
        ..Options::default()
    }
    .with_controllers([url]);
    let started = Instant::now();
    let e = Context::with_options(identity, options).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "the login waited {took:?} despite a 1 s controller timeout"
    );
    assert!(
        matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Controller),
        "{e}"
    );
}

/// A service with the `sticky` terminator strategy (OpenZiti's stickiness tokens): a
/// dial's stream carries a token naming the terminator reached, and dials with that
/// token reach the same host while it is up (a token naming the other terminator, the
/// other host). Once that host is gone, the token's dial goes to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stickiness_token_brings_dials_back_to_the_same_host() {
    let net = Network::start().await;
    let svc = net
        .admin
        .create(
            "services",
            serde_json::json!({"name": "desk", "roleAttributes": ["desk"],
                               "encryptionRequired": false, "terminatorStrategy": "sticky"}),
        )
        .await;
    assert!(svc["id"].is_string());
    net.admin
        .service_policy("desk-dial", "Dial", &["#desk-client"], &["#desk"])
        .await;
    net.admin
        .service_policy("desk-bind", "Bind", &["#desk-host"], &["#desk"])
        .await;
    let h1 = net.context("desk-h1", &["desk-host"]).await;
    let h2 = net.context("desk-h2", &["desk-host"]).await;
    host(&h1, "desk", "one", BindOptions::default()).await;
    host(&h2, "desk", "two", BindOptions::default()).await;
    let client = net.context("desk-c", &["desk-client"]).await;
    // Both hosts are bound once the client sees two terminators. (Without a token the
    // router may keep choosing one: it prefers a host on the dialer's own shard.)
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.terminators("desk").await.unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "two terminators never showed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut first = client.dial("desk").await.unwrap();
    let token = first
        .stickiness_token()
        .expect("a sticky service's stream carries a token")
        .to_vec();
    let mut reached = String::new();
    first.read_to_string(&mut reached).await.unwrap();
    let sticky = DialOptions::default().with_stickiness_token(token.clone());
    for _ in 0..8 {
        assert_eq!(answer(&client, "desk", &sticky).await, reached);
    }
    // The token is the terminator's id: naming the other terminator reaches the other
    // host, every time.
    let terminators = client.terminators("desk").await.unwrap();
    assert!(
        terminators
            .iter()
            .any(|t| t.id.as_bytes() == token.as_slice())
    );
    let other = terminators
        .iter()
        .find(|t| t.id.as_bytes() != token.as_slice())
        .expect("two terminators");
    let to_other = DialOptions::default().with_stickiness_token(other.id.clone());
    for _ in 0..4 {
        assert_ne!(answer(&client, "desk", &to_other).await, reached);
    }
    // The token's host goes away: the next dial reaches the other one.
    if reached.starts_with("one") {
        h1.close().await.unwrap();
    } else {
        h2.close().await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.dial_with_options("desk", &sticky).await {
            Ok(mut s) => {
                let mut other = String::new();
                if s.read_to_string(&mut other).await.is_ok() && other != reached {
                    break;
                }
            }
            Err(e) => assert!(Instant::now() < deadline, "no dial after the loss: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the token still reaches the closed host"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
