//! The SDK's examples (`sdk/examples/`), built and run as processes against a real
//! controller and routers: an echo server and client, an axum server reached over the
//! overlay, and a client that rides out the loss of its router.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use weft_testkit::Network;
use weft_testkit::process::sdk_example;

/// Enrolls identity `name` and saves it under `dir`; returns the file's path.
async fn identity_file(net: &Network, dir: &std::path::Path, name: &str, attrs: &[&str]) -> String {
    let path = dir.join(format!("{name}.json"));
    net.enrolled(name, attrs).await.save(&path).unwrap();
    path.to_string_lossy().into_owned()
}

fn example(name: &str, args: &[&str]) -> Child {
    Command::new(sdk_example(name))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting example {name}: {e}"))
}

/// Reads `child`'s stdout lines until one contains `want` (20 s at most); returns it
/// and the lines before it.
async fn wait_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    want: &str,
) -> (String, Vec<String>) {
    let mut before = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.contains(want) => return (line, before),
            Ok(Ok(Some(line))) => before.push(line),
            other => panic!("no line with {want:?} ({other:?}); saw {before:#?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_and_axum_examples_serve_over_the_overlay() {
    let net = Network::start().await;
    net.service("ex-echo", &["ex-echo"], true).await;
    net.service("ex-web", &["ex-web"], true).await;
    let dir = tempfile::tempdir().unwrap();
    let host = identity_file(&net, dir.path(), "ex-h", &["ex-echo-host", "ex-web-host"]).await;
    let client = identity_file(
        &net,
        dir.path(),
        "ex-c",
        &["ex-echo-client", "ex-web-client"],
    )
    .await;

    let mut server = example("echo_server", &[&host, "ex-echo"]);
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    wait_line(&mut lines, "hosts ex-echo").await;
    let out = Command::new(sdk_example("echo_client"))
        .args([&client, "ex-echo", "hi there"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "echo_client: {stdout}");
    assert!(stdout.contains("reply: hi there"), "{stdout}");
    assert!(stdout.contains("end-to-end encrypted"), "{stdout}");

    let mut web = example("axum_server", &[&host, "ex-web"]);
    let mut web_lines = BufReader::new(web.stdout.take().unwrap()).lines();
    wait_line(&mut web_lines, "serving http on ex-web").await;
    let ctx = weft_sdk::Context::from_file(&client).await.unwrap();
    let mut s = ctx.dial("ex-web").await.unwrap();
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: ex-web\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut answer))
        .await
        .expect("axum answers and closes")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("hello ex-c from ex-web"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resilient_client_example_rides_out_the_loss_of_its_router() {
    let mut net = Network::start().await;
    let mut second = weft_testkit::Router::start(&net.controller, &net.admin, "edge-2", &[]).await;
    net.service("ex-lines", &["ex-lines"], false).await;
    let dir = tempfile::tempdir().unwrap();
    let client = identity_file(&net, dir.path(), "exr-c", &["ex-lines-client"]).await;
    // A line echo host bound on both routers.
    let host = net.context("exr-h", &["ex-lines-host"]).await;
    let listener = host.bind("ex-lines").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while listener.routers().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bound on {:?}",
            listener.routers()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _echo = tokio::spawn(async move {
        while let Ok(stream) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });

    let mut child = example("resilient_client", &[&client, "ex-lines", "25"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (dialed, _) = wait_line(&mut lines, "dialed ex-lines via").await;
    wait_line(&mut lines, "echoed line 4").await;
    if dialed.ends_with("edge-1") {
        net.router.kill();
    } else {
        second.kill();
    }
    let (failed, _) = wait_line(&mut lines, "stream failed").await;
    let (redialed, _) = wait_line(&mut lines, "dialed ex-lines via").await;
    assert_ne!(
        redialed, dialed,
        "the redial uses the other router ({failed})"
    );
    let (done, _) = wait_line(&mut lines, "done:").await;
    assert_eq!(done, "done: 25 lines echoed, 1 redials");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the example exits")
        .unwrap();
    assert!(status.success());
}
