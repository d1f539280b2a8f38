//! The Rust SDK's lifecycle against real controller and router processes: streams and
//! listeners keep their context alive, owned stream halves, explicit close, events,
//! and the configs services carry (issue 21, items 3–5).

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_sdk::{Context, ErrorKind, Event, Events, Listener, Options};
use weft_testkit::{Network, pattern};

/// Echoes every accepted stream until its peer half-closes, then half-closes.
fn spawn_echo(listener: Listener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(stream) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    })
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A dial on `ctx` that echoes `msg`.
async fn echoes(ctx: &Context, service: &str, msg: &[u8]) {
    let mut s = ctx.dial(service).await.unwrap();
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, msg);
}

/// Dropping every clone of a context breaks nothing it made: its listener keeps
/// accepting and its stream keeps moving bytes. The halves of a split stream work from
/// two tasks (dropping the write half half-closes), and halves of different streams do
/// not reunite. An explicit close ends the streams with an error, not end-of-stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_listeners_keep_their_context_and_close_ends_them() {
    let net = Network::start().await;
    net.service("keep", &["keep"], true).await;
    let host = net.context("keep-h", &["keep-host"]).await;
    let client = net.context("keep-c", &["keep-client"]).await;
    let _echo = spawn_echo(host.bind("keep").await.unwrap());
    drop(host);

    let mut s = client.dial("keep").await.unwrap();
    let other = client.dial("keep").await.unwrap();
    drop(client);
    // Past the moment a dropped context used to close its edge connections.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(b"still here").await.unwrap();
    let mut buf = [0u8; 10];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still here");

    // Owned halves, each in its own task: 3 MiB up, the same 3 MiB back.
    let upload = pattern(3 * 1024 * 1024, 7);
    let (mut r, mut w) = s.into_split();
    let writer = {
        let upload = upload.clone();
        tokio::spawn(async move {
            w.write_all(&upload).await.unwrap();
            // Dropping the write half is the half-close.
        })
    };
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut back))
        .await
        .expect("the echo ends after our half-close")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(sha(&back), sha(&upload), "the echo came back whole");

    let (r2, w2) = other.into_split();
    let err = r.reunite(w2).expect_err("halves of two streams");
    let (r, w2) = (err.0, err.1);
    let mut other = r2.reunite(w2).expect("the halves of one stream");
    drop(r);

    // A new context on the same identity file is not needed: close a fresh one.
    let ctx = net.context("keep-c2", &["keep-client"]).await;
    let mut s = ctx.dial("keep").await.unwrap();
    s.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    s.read_exact(&mut one).await.unwrap();
    let clone = ctx.clone();
    ctx.close().await.unwrap();
    let err = clone.dial("keep").await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Closed,
        "a clone of a closed context: {err}"
    );
    assert_eq!(
        clone.services().await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut one))
        .await
        .expect("the closed context's stream ends");
    assert!(
        read.is_err(),
        "a stream of a closed context fails: {read:?}"
    );
    // The stream put back together still works (its context lives on in it).
    other.write_all(b"reunited").await.unwrap();
    let mut buf = [0u8; 8];
    other.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"reunited");
}

/// Waits (up to 20 s) for an event `want` accepts, skipping others.
async fn expect(events: &mut Events, what: &str, want: impl Fn(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let next = tokio::time::timeout_at(deadline, events.recv()).await;
        match next {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(e)) => seen.push(format!("{e:?}")),
            Ok(None) => panic!("the events ended waiting for {what}; saw {seen:#?}"),
            Err(_) => panic!("no {what} within 20 s; saw {seen:#?}"),
        }
    }
}

fn fast_polls() -> Options {
    Options {
        refresh_interval: Duration::from_millis(500),
        ..Options::default()
    }
}

/// Events tell a client what it can see and reach, and a host what it hosts:
/// services added and removed, routers connected and lost, listeners bound, lost and
/// bound again, the identity revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_services_routers_listeners_and_the_identity() {
    let mut net = Network::start().await;
    net.service("ev", &["ev"], false).await;
    let client = Context::with_options(net.enrolled("ev-c", &["ev-client"]).await, fast_polls())
        .await
        .unwrap();
    let host = Context::with_options(net.enrolled("ev-h", &["ev-host"]).await, fast_polls())
        .await
        .unwrap();
    let mut client_events = client.events();
    let mut host_events = host.events();

    client.services().await.unwrap();
    expect(
        &mut client_events,
        "ev added",
        |e| matches!(e, Event::ServiceAdded(s) if s.name == "ev" && s.can_dial()),
    )
    .await;
    // A service created later with the attribute the Dial policy selects.
    let second = net.admin.service("ev-more", &["ev"], false).await;
    expect(
        &mut client_events,
        "ev-more added",
        |e| matches!(e, Event::ServiceAdded(s) if s.name == "ev-more"),
    )
    .await;
    net.admin.delete("services", &second).await;
    expect(
        &mut client_events,
        "ev-more removed",
        |e| matches!(e, Event::ServiceRemoved(s) if s.name == "ev-more"),
    )
    .await;

    let listener = host.bind("ev").await.unwrap();
    expect(
        &mut host_events,
        "the listener bound",
        |e| matches!(e, Event::ListenerBound { service, rebound: false, .. } if service == "ev"),
    )
    .await;
    let _echo = spawn_echo(listener);
    echoes(&client, "ev", b"one").await;
    expect(
        &mut client_events,
        "a router connected",
        |e| matches!(e, Event::RouterConnected { router, .. } if router == "edge-1"),
    )
    .await;

    // The router dies and comes back: both sides hear of it, the host binds again.
    net.router.kill();
    expect(
        &mut host_events,
        "the listener lost",
        |e| matches!(e, Event::ListenerLost { service, .. } if service == "ev"),
    )
    .await;
    expect(
        &mut client_events,
        "the router lost",
        |e| matches!(e, Event::RouterDisconnected { router, .. } if router == "edge-1"),
    )
    .await;
    net.router.restart(&net.admin).await;
    expect(
        &mut host_events,
        "the listener bound again",
        |e| matches!(e, Event::ListenerBound { service, rebound: true, .. } if service == "ev"),
    )
    .await;

    // The client's identity is deleted: the next dial says so, and so do the events.
    let ids = net.admin.get("identities?filter=name=\"ev-c\"").await;
    let id = ids["data"][0]["id"].as_str().unwrap().to_owned();
    net.admin.delete("identities", &id).await;
    let mut kind = None;
    for _ in 0..50 {
        match client.dial("ev").await {
            Err(e) if e.kind() == ErrorKind::NotAuthorized => {
                kind = Some(e.kind());
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(kind, Some(ErrorKind::NotAuthorized));
    expect(
        &mut client_events,
        "the identity revoked",
        |e| matches!(e, Event::IdentityRevoked(err) if err.kind() == ErrorKind::NotAuthorized),
    )
    .await;
}

/// A service carries the configs of the config types asked for at login: all by
/// default, none when the context asks for none, only the named type otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_carry_the_configs_of_the_types_asked_for() {
    let net = Network::start().await;
    let (svc, _, _) = net.service("cfg", &["cfg"], false).await;
    let mut types = Vec::new();
    for name in ["weft-test-a.v1", "weft-test-b.v1"] {
        let t = net
            .admin
            .create("config-types", serde_json::json!({"name": name}))
            .await;
        types.push(t["id"].as_str().unwrap().to_owned());
    }
    let mut configs = Vec::new();
    for (i, type_id) in types.iter().enumerate() {
        let c = net
            .admin
            .create(
                "configs",
                serde_json::json!({"name": format!("cfg-{i}"), "configTypeId": type_id,
                                   "data": {"port": 8000 + i}}),
            )
            .await;
        configs.push(c["id"].as_str().unwrap().to_owned());
    }
    net.admin
        .patch(
            &format!("services/{svc}"),
            serde_json::json!({"configs": configs}),
        )
        .await;

    let identity = net.enrolled("cfg-c", &["cfg-client"]).await;
    let all = Context::new(identity.clone()).await.unwrap();
    let seen = all.service("cfg").await.unwrap();
    assert_eq!(seen.configs["weft-test-a.v1"]["port"], 8000);
    assert_eq!(seen.configs["weft-test-b.v1"]["port"], 8001);

    let none = Context::with_options(
        identity.clone(),
        Options::default().with_config_types(Vec::<String>::new()),
    )
    .await
    .unwrap();
    assert!(none.service("cfg").await.unwrap().configs.is_empty());

    let one = Context::with_options(
        identity,
        Options::default().with_config_types(["weft-test-b.v1"]),
    )
    .await
    .unwrap();
    let seen = one.service("cfg").await.unwrap();
    assert_eq!(seen.configs.keys().collect::<Vec<_>>(), ["weft-test-b.v1"]);
}
