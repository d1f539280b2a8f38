//! Posture checks end to end, with real controller and router processes and the Rust
//! SDK answering posture queries itself: a PROCESS check on both the Dial and the Bind
//! policy of a service admits the client and the host while the process runs; when it
//! stops, the SDK reports it, the controller removes both sessions and the router closes
//! the live circuit (an error on the stream, never a clean end) and the binding; a new
//! dial is refused with `ErrorKind::Posture`; once the process runs again, service
//! resumes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_sdk::{Context, ErrorKind, Options};
use weft_testkit::traffic::serve_echo;
use weft_testkit::{Network, pattern};

/// The "agent" the posture check asks for: a copy of `sleep` at a path of the test's;
/// killed when dropped.
struct Agent(Child);

impl Agent {
    fn start(path: &Path) -> Self {
        Self(Command::new(path).arg("600").spawn().unwrap())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn context(net: &Network, name: &str, attrs: &[&str]) -> Context {
    let options = Options {
        posture_interval: Duration::from_millis(200),
        ..Options::default()
    };
    Context::with_options(net.enrolled(name, attrs).await, options)
        .await
        .unwrap()
}

async fn echo_round(stream: &mut weft_sdk::Stream, len: usize, seed: u32) {
    let data = pattern(len, seed);
    let (mut r, mut w) = tokio::io::split(stream);
    let sent = data.clone();
    let (_, echoed) = tokio::join!(
        async move { w.write_all(&sent).await.unwrap() },
        async move {
            let mut got = vec![0u8; len];
            r.read_exact(&mut got).await.unwrap();
            got
        }
    );
    assert_eq!(Sha256::digest(&echoed), Sha256::digest(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_process_check_closes_the_live_circuit_and_the_binding() {
    let net = Network::start().await;
    let (_, dial_policy, bind_policy) = net.service("files", &["files"], true).await;
    let dir = tempfile::tempdir().unwrap();
    let agent_path = dir.path().join("posture-agent");
    std::fs::copy("/bin/sleep", &agent_path).unwrap();
    let agent = Agent::start(&agent_path);

    net.admin
        .posture_check(json!({"name": "agent-runs", "typeId": "PROCESS", "roleAttributes": ["agent"],
                              "process": {"osType": "Linux", "path": agent_path.to_str().unwrap()}}))
        .await;
    for policy in [&dial_policy, &bind_policy] {
        net.admin.require_posture(policy, &["#agent"]).await;
    }

    // The SDKs report the running agent before they ask for sessions.
    let host = context(&net, "files-h", &["files-host"]).await;
    serve_echo(&host, "files").await;
    let client = context(&net, "files-c", &["files-client"]).await;
    let mut stream = client.dial("files").await.unwrap();
    echo_round(&mut stream, 256 * 1024, 3).await;

    // The agent stops: within the SDK's posture interval the controller learns it,
    // removes the Dial and Bind sessions, and the router ends the circuit with an error.
    drop(agent);
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let ended = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buf))
        .await
        .expect("the circuit outlived its posture");
    assert!(ended.is_err(), "a clean end instead of an error: {ended:?}");
    println!(
        "posture failure to circuit closed: {} ms",
        started.elapsed().as_millis()
    );
    let e = client.dial("files").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Posture, "{e}");

    // The agent runs again: the next report admits the client, and the host binds anew.
    let _agent = Agent::start(&agent_path);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut stream = loop {
        match client.dial("files").await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "service did not resume: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    echo_round(&mut stream, 64 * 1024, 4).await;
}
