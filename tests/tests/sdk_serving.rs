//! Serving with the Rust SDK's listener (issue 21, item 4) against real controller and
//! router processes: an axum app served straight on a bound service, with the dialing
//! identity as its connect info; one listener accepting from several tasks at once
//! (`accept(&self)`); the listener as a `futures_core::Stream` of accepted streams.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use futures_core::Stream as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_sdk::{Context, Listener, ServiceAddr};
use weft_testkit::Network;

/// One HTTP/1.1 request over a dialed stream, as a stock client would send it.
async fn get(client: &Context, service: &str, path: &str) -> String {
    let mut s = client.dial(service).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {service}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_app_is_served_on_a_bound_service_and_knows_who_dialed() {
    let net = Network::start().await;
    net.service("web", &["web"], true).await;
    let host = net.context("web-server", &["web-host"]).await;
    let client = net.context("web-browser", &["web-client"]).await;
    let listener = host.bind("web").await.unwrap();
    let app = axum::Router::new().route(
        "/hello",
        axum::routing::get(|ConnectInfo(from): ConnectInfo<ServiceAddr>| async move {
            format!("hello {} on {}", from.identity, from.service)
        }),
    );
    let server = tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<ServiceAddr>(),
        )
        .into_future(),
    );
    for _ in 0..3 {
        let response = get(&client, "web", "/hello").await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.ends_with("\r\n\r\nhello web-browser on web"),
            "{response}"
        );
    }
    let missing = get(&client, "web", "/nothing").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    server.abort();
}

/// Accepts on `listener` (shared) and answers each stream with `name`.
fn answer_as(listener: Arc<Listener>, name: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(mut s) = listener.accept().await {
            let _ = s.write_all(name.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    })
}

async fn read_all(client: &Context, service: &str) -> String {
    let mut s = client.dial(service).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listener_accepts_from_several_tasks_and_as_a_stream() {
    let net = Network::start().await;
    net.service("pool", &["pool"], false).await;
    let host = net.context("pool-server", &["pool-host"]).await;
    let client = net.context("pool-client", &["pool-client"]).await;

    // Two tasks share one listener: every dial is answered by exactly one of them.
    let listener = Arc::new(host.bind("pool").await.unwrap());
    let workers = [
        answer_as(listener.clone(), "a"),
        answer_as(listener.clone(), "b"),
    ];
    for _ in 0..8 {
        let who = read_all(&client, "pool").await;
        assert!(who == "a" || who == "b", "{who:?}");
    }
    for w in workers {
        w.abort();
        let _ = w.await;
    }
    drop(listener);

    // The listener as a stream of accepted streams.
    let mut listener = host.bind("pool").await.unwrap();
    let served = tokio::spawn(async move {
        let mut n = 0;
        while let Some(next) =
            std::future::poll_fn(|cx| Pin::new(&mut listener).poll_next(cx)).await
        {
            let mut s = next.unwrap();
            s.write_all(b"streamed").await.unwrap();
            s.shutdown().await.unwrap();
            n += 1;
            if n == 3 {
                return n;
            }
        }
        n
    });
    for _ in 0..3 {
        assert_eq!(read_all(&client, "pool").await, "streamed");
    }
    assert_eq!(served.await.unwrap(), 3);
}
