//! Interop with the unmodified OpenZiti C SDK 0.29.3 (`libziti.so` from the PyPI wheel
//! `openziti==0.6.0`), driven by `tests/interop/ziti_driver.py` in a virtualenv that
//! `.ci/run` prepares (`target/interop-venv`, or `WEFT_INTEROP_VENV`).
//!
//! Without the virtualenv the tests print why and pass (a local `cargo test`); with
//! `CI=true` a missing virtualenv fails them. `WEFT_INTEROP_SKIP_LONG=1` skips the one
//! long test (a connection held past the C SDK's 60 s latency probe);
//! `WEFT_INTEROP_LOG=1` prints the driver's stderr (the C SDK's log, at the level
//! `ZITI_LOG` sets, e.g. 4 = DEBUG) even when a test passes.
//! See docs/interop.md for what these tests taught about the C SDK.
// The helpers below are test code: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use weft_sdk::{Listener, Stream};
use weft_testkit::{Line, Network, Tunnel, pattern};

const TEN_MB: usize = 10 * 1024 * 1024;

/// How long one driver command may take (a 10 MB transfer through a debug build).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The virtualenv with `openziti==0.6.0`, or `None` (after saying why) when the test is
/// to be skipped. Panics under `CI=true` when it is missing.
fn venv() -> Option<PathBuf> {
    let dir = std::env::var_os("WEFT_INTEROP_VENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/interop-venv"),
        PathBuf::from,
    );
    let python = dir.join("bin/python");
    let lib = dir.join("lib");
    let has_openziti = std::fs::read_dir(&lib).ok().is_some_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            e.path()
                .join("site-packages/openziti/lib/libziti.so")
                .is_file()
        })
    });
    if python.is_file() && has_openziti {
        return Some(dir);
    }
    let why = format!(
        "no virtualenv with openziti==0.6.0 at {} (set WEFT_INTEROP_VENV, or run: \
         python3 -m venv target/interop-venv && target/interop-venv/bin/pip install openziti==0.6.0)",
        dir.display()
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "interop test cannot run in CI: {why}"
    );
    eprintln!("SKIPPED: {why}");
    None
}

/// One `ziti_driver.py` process: the C SDK in a Python interpreter.
struct Driver {
    child: Child,
    stdin: ChildStdin,
    answers: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: Arc<Mutex<String>>,
    name: String,
    /// Where its JWT and identity file live (removed with the driver).
    files: tempfile::TempDir,
}

impl Driver {
    /// Starts the driver with extra environment (e.g. `ZITI_LOG`).
    fn start(venv: &Path, name: &str, env: &[(&str, &str)]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/ziti_driver.py");
        let mut child = Command::new(venv.join("bin/python"))
            .arg("-u")
            .arg(script)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the Python driver");
        let stdin = child.stdin.take().unwrap();
        let answers = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err.next_line().await {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Self {
            child,
            stdin,
            answers,
            stderr,
            name: name.to_string(),
            files: tempfile::tempdir().unwrap(),
        }
    }

    /// What the driver (and the C SDK in it) wrote to stderr so far.
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a command and returns its answer (ok or not).
    async fn try_cmd(&mut self, cmd: Value) -> Value {
        let line = format!("{cmd}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{}: driver gone ({e}); stderr:\n{}",
                    self.name,
                    self.stderr()
                )
            });
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, self.answers.next_line()).await;
        match answer {
            Ok(Ok(Some(a))) => serde_json::from_str(&a)
                .unwrap_or_else(|e| panic!("{}: bad answer {a:?}: {e}", self.name)),
            Ok(_) => {
                let status = self.child.wait().await;
                panic!(
                    "{}: driver exited ({status:?}) on {cmd}; stderr:\n{}",
                    self.name,
                    self.stderr()
                )
            }
            Err(_) => panic!(
                "{}: no answer to {cmd} within {COMMAND_TIMEOUT:?}; stderr:\n{}",
                self.name,
                self.stderr()
            ),
        }
    }

    /// Sends a command that must succeed; returns its answer.
    async fn cmd(&mut self, cmd: Value) -> Value {
        let a = self.try_cmd(cmd.clone()).await;
        assert!(
            a["ok"] == true,
            "{}: {cmd} failed: {a}; stderr:\n{}",
            self.name,
            self.stderr()
        );
        a
    }

    /// Sends a command that must fail; returns its error text.
    async fn cmd_fails(&mut self, cmd: Value) -> String {
        let a = self.try_cmd(cmd.clone()).await;
        assert!(
            a["ok"] == false,
            "{}: {cmd} should have failed: {a}; stderr:\n{}",
            self.name,
            self.stderr()
        );
        a["error"].as_str().unwrap_or_default().to_string()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("WEFT_INTEROP_LOG").is_some() {
            eprintln!("---- {} stderr ----\n{}", self.name, self.stderr());
        }
    }
}

fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A network, a C SDK identity `c-sdk` (enrolled and loaded by the driver) with role
/// attributes `attrs`, and the driver.
async fn c_sdk_on(net: &Network, venv: &Path, attrs: &[&str], env: &[(&str, &str)]) -> Driver {
    c_sdk_with(&net.admin, venv, attrs, env).await
}

/// [`c_sdk_on`] at the controller `admin` is logged in to.
async fn c_sdk_with(
    admin: &weft_testkit::Admin,
    venv: &Path,
    attrs: &[&str],
    env: &[(&str, &str)],
) -> Driver {
    let (_, jwt) = admin.identity("c-sdk", attrs).await;
    let mut driver = Driver::start(venv, "c-sdk", env);
    let jwt_path = driver.files.path().join("c-sdk.jwt");
    let id_path = driver.files.path().join("c-sdk.json");
    std::fs::write(&jwt_path, &jwt).unwrap();
    driver
        .cmd(json!({"op": "enroll", "jwt": jwt_path, "out": id_path}))
        .await;
    driver.cmd(json!({"op": "load", "identity": id_path})).await;
    driver
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_sdk_enrolls_with_a_weft_token_and_loads_the_identity() {
    let Some(venv) = venv() else { return };
    let net = Network::start().await;
    // `openziti.load` returns only after a first service list with a service in it.
    net.service("hello", &["hello"], true).await;
    let (id, jwt) = net.admin.identity("c-enrolled", &["hello-client"]).await;
    let dir = tempfile::tempdir().unwrap();
    let id_path = dir.path().join("c.json");
    let mut driver = Driver::start(&venv, "c-enrolled", &[]);
    let a = driver
        .cmd(json!({"op": "enroll", "jwt": jwt, "out": id_path}))
        .await;
    let identity = &a["identity"];
    assert_eq!(identity["ztAPI"], net.controller.url(""), "{identity}");
    for field in ["cert", "key", "ca"] {
        assert!(
            identity["id"][field]
                .as_str()
                .is_some_and(|p| p.contains("-----BEGIN")),
            "id.{field} is PEM: {identity}"
        );
    }
    assert!(id_path.is_file());
    driver.cmd(json!({"op": "load", "identity": id_path})).await;
    // The controller knows the identity as enrolled.
    let detail = net.admin.get(&format!("identities/{id}")).await;
    assert!(
        detail["data"]["enrollment"]["ott"].is_null(),
        "the one-time token is used up: {detail}"
    );
    // The token is single-use: a second enrollment is refused.
    let err = driver
        .cmd_fails(json!({"op": "enroll", "jwt": jwt, "out": dir.path().join("again.json")}))
        .await;
    eprintln!("second enrollment refused: {err}");
}

/// What the Weft end of one bulk connection saw.
struct WeftEnd {
    received_sha256: String,
    received: usize,
    /// Kept open until the C SDK has read everything: dropping it closes the
    /// connection, and the C SDK drops data it has not yet handed to its socket when a
    /// close arrives (docs/interop.md).
    _stream: Stream,
}

/// Sends `upload` while reading the C side's `TEN_MB`, then half-closes and reads the
/// C side's close.
///
/// The half-close waits until everything arrived: once the C SDK has our FIN, the C
/// app's own end closes the bridge with a StateClosed that can overtake its last writes
/// still queued in the SDK (docs/interop.md, socket bridge bug 4).
async fn weft_transfer(mut stream: Stream, upload: Arc<Vec<u8>>) -> WeftEnd {
    assert!(stream.is_encrypted(), "the service requires encryption");
    let (mut rd, mut wr) = tokio::io::split(&mut stream);
    let writer = async {
        wr.write_all(&upload).await.unwrap();
    };
    let reader = async {
        let mut got = vec![0u8; TEN_MB];
        rd.read_exact(&mut got)
            .await
            .expect("reading what the C side sent");
        got
    };
    let ((), got) = tokio::join!(writer, reader);
    stream.shutdown().await.unwrap();
    let rest = weft_read_to_end(&mut stream, COMMAND_TIMEOUT)
        .await
        .expect("a clean end after the transfer");
    assert!(rest.is_empty(), "the C side sent more than it said");
    WeftEnd {
        received_sha256: sha_hex(&got),
        received: got.len(),
        _stream: stream,
    }
}

/// Checks the driver's per-connection results against the Weft ends (in any order:
/// matched by what the Weft end received).
fn check_bulk(results: &Value, weft: &[WeftEnd], weft_sent_sha: &str, bytes: usize) {
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), weft.len());
    for r in results {
        assert!(
            r.get("send_error").is_none() && r.get("recv_error").is_none(),
            "C side error: {r}"
        );
        assert_eq!(r["received"], bytes, "C side got all bytes: {r}");
        assert_eq!(
            r["received_sha256"], weft_sent_sha,
            "C side got them intact: {r}"
        );
        let sent = r["sent_sha256"].as_str().unwrap();
        assert!(
            weft.iter()
                .any(|w| w.received == bytes && w.received_sha256 == sent),
            "no Weft end received what C connection {} sent",
            r["conn"]
        );
    }
}

/// Concurrent C SDK connections in the bulk tests, each moving 10 MB each way.
const BULK_CONNS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_sdk_dials_a_weft_hosted_service_ten_megabytes_each_way_encrypted() {
    let Some(venv) = venv() else { return };
    let net = Network::start().await;
    net.service("bulk", &["bulk"], true).await;
    let host = net.context("weft-host", &["bulk-host"]).await;
    let listener: Listener = host.bind("bulk").await.unwrap();
    let download = Arc::new(pattern(TEN_MB, 7));
    let download_sha = sha_hex(&download);
    let mut driver = c_sdk_on(&net, &venv, &["bulk-client"], &[]).await;

    let server = {
        let download = download.clone();
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..BULK_CONNS {
                let stream = listener.accept().await.unwrap();
                assert_eq!(
                    stream.dialer(),
                    Some("c-sdk"),
                    "the caller id is the C identity's name"
                );
                tasks.push(tokio::spawn(weft_transfer(stream, download.clone())));
            }
            let mut ends = Vec::new();
            for t in tasks {
                ends.push(t.await.unwrap());
            }
            (ends, listener)
        })
    };
    let started = Instant::now();
    let a = driver
        .cmd(json!({"op": "bulk_dial", "service": "bulk", "conns": BULK_CONNS, "bytes": TEN_MB}))
        .await;
    let (ends, _listener) = server.await.unwrap();
    eprintln!(
        "{BULK_CONNS} C SDK dials × 10 MB each way (encrypted) in {:?}",
        started.elapsed()
    );
    check_bulk(&a["results"], &ends, &download_sha, TEN_MB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_dials_a_c_sdk_hosted_service_ten_megabytes_each_way_encrypted() {
    let Some(venv) = venv() else { return };
    let net = Network::start().await;
    net.service("cbulk", &["cbulk"], true).await;
    let client = net.context("weft-client", &["cbulk-client"]).await;
    let mut driver = c_sdk_on(&net, &venv, &["cbulk-host"], &[]).await;
    driver
        .cmd(json!({"op": "bind", "service": "cbulk", "listener": "l"}))
        .await;
    let upload = Arc::new(pattern(TEN_MB, 8));
    let upload_sha = sha_hex(&upload);

    let started = Instant::now();
    let dials = (0..BULK_CONNS)
        .map(|_| {
            let client = client.clone();
            let upload = upload.clone();
            tokio::spawn(async move {
                let stream = client.dial("cbulk").await.unwrap();
                weft_transfer(stream, upload).await
            })
        })
        .collect::<Vec<_>>();
    let a = driver
        .cmd(json!({"op": "bulk_accept", "listener": "l", "conns": BULK_CONNS, "bytes": TEN_MB}))
        .await;
    let mut ends = Vec::new();
    for d in dials {
        ends.push(d.await.unwrap());
    }
    eprintln!(
        "{BULK_CONNS} Weft dials to the C SDK × 10 MB each way (encrypted) in {:?}",
        started.elapsed()
    );
    check_bulk(&a["results"], &ends, &upload_sha, TEN_MB);
}

/// Reads from a Weft stream until end-of-stream or an error, within `limit`.
async fn weft_read_to_end(stream: &mut Stream, limit: Duration) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut got))
        .await
        .expect("the Weft stream did not end in time")
        .map(|_| got)
}

/// Half-close and close, each side first, on one connection between the driver's
/// `conn` and the Weft `stream` (whichever side dialed).
async fn half_close_and_close_both_ways(driver: &mut Driver, conn: &str, mut stream: Stream) {
    // The C side half-closes: Weft reads its bytes, then a clean end-of-stream, and can
    // still answer; the C side reads the answer and then a clean EOF.
    driver
        .cmd(json!({"op": "send", "conn": conn, "data": "hello from C"}))
        .await;
    driver.cmd(json!({"op": "shut_wr", "conn": conn})).await;
    let got = weft_read_to_end(&mut stream, Duration::from_secs(10))
        .await
        .expect("a C half-close is a clean end-of-stream for Weft");
    assert_eq!(got, b"hello from C");
    stream.write_all(b"answer after your FIN").await.unwrap();
    stream.shutdown().await.unwrap();
    let a = driver
        .cmd(json!({"op": "wait_end", "conn": conn, "timeout": 10}))
        .await;
    assert_eq!(a["data"], "answer after your FIN");
    assert_eq!(
        a["end"], "eof",
        "a Weft FIN is a clean EOF for the C side: {a}"
    );
    driver.cmd(json!({"op": "close", "conn": conn})).await;
    // The C close after both FINs reaches Weft as a clean end too.
    let rest = weft_read_to_end(&mut stream, Duration::from_secs(5))
        .await
        .expect("reading after both FINs and the C close");
    assert!(rest.is_empty());
}

/// Weft half-closes first; the C side reads EOF and can still send.
async fn weft_half_closes_first(driver: &mut Driver, conn: &str, mut stream: Stream) {
    stream.write_all(b"hello from Weft").await.unwrap();
    stream.shutdown().await.unwrap();
    let a = driver
        .cmd(json!({"op": "wait_end", "conn": conn, "timeout": 10}))
        .await;
    assert_eq!(
        (a["data"].as_str(), a["end"].as_str()),
        (Some("hello from Weft"), Some("eof")),
        "{a}"
    );
    driver
        .cmd(json!({"op": "send", "conn": conn, "data": "still talking"}))
        .await;
    // Wait for the bytes before the C side closes: after our FIN, a C close goes out as
    // StateClosed at once and can overtake a write still queued in the SDK
    // (docs/interop.md, socket bridge bug 4).
    let mut got = [0u8; 13];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut got))
        .await
        .expect("the C side's bytes did not arrive")
        .unwrap();
    assert_eq!(&got, b"still talking");
    driver.cmd(json!({"op": "close", "conn": conn})).await;
    let rest = weft_read_to_end(&mut stream, Duration::from_secs(10))
        .await
        .expect("a C close is a clean end-of-stream for Weft");
    assert!(rest.is_empty());
}

/// Weft drops the stream without a FIN: the C side reads what was sent, then a clean
/// close (EOF), promptly.
async fn weft_closes(driver: &mut Driver, conn: &str, mut stream: Stream) {
    stream.write_all(b"bye").await.unwrap();
    stream.flush().await.unwrap();
    let a = driver
        .cmd(json!({"op": "recv", "conn": conn, "n": 3, "timeout": 10}))
        .await;
    assert_eq!(a["data"], "bye");
    drop(stream);
    let a = driver
        .cmd(json!({"op": "wait_end", "conn": conn, "timeout": 10}))
        .await;
    assert_eq!(
        a["end"], "eof",
        "a Weft close is a clean close for the C side: {a}"
    );
    assert!(a["after_ms"].as_u64().unwrap() <= 5000, "{a}");
    driver.cmd(json!({"op": "close", "conn": conn})).await;
}

/// The C side closes without a half-close first: Weft reads a clean end-of-stream.
async fn c_closes(driver: &mut Driver, conn: &str, mut stream: Stream) {
    driver
        .cmd(json!({"op": "send", "conn": conn, "data": "last words"}))
        .await;
    driver.cmd(json!({"op": "close", "conn": conn})).await;
    let got = weft_read_to_end(&mut stream, Duration::from_secs(10))
        .await
        .expect("a C close is a clean end-of-stream for Weft");
    assert_eq!(got, b"last words");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_half_close_when_the_c_sdk_dials() {
    let Some(venv) = venv() else { return };
    let net = Network::start().await;
    net.service("closes", &["closes"], true).await;
    let host = net.context("weft-host", &["closes-host"]).await;
    let listener = host.bind("closes").await.unwrap();
    let mut driver = c_sdk_on(&net, &venv, &["closes-client"], &[]).await;
    for (i, case) in [
        "half-close both ways",
        "weft half-closes first",
        "weft closes",
        "c closes",
    ]
    .into_iter()
    .enumerate()
    {
        eprintln!("case: {case}");
        let conn = format!("c{i}");
        driver
            .cmd(json!({"op": "dial", "service": "closes", "conn": conn}))
            .await;
        let stream = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("accept")
            .unwrap();
        match i {
            0 => half_close_and_close_both_ways(&mut driver, &conn, stream).await,
            1 => weft_half_closes_first(&mut driver, &conn, stream).await,
            2 => weft_closes(&mut driver, &conn, stream).await,
            _ => c_closes(&mut driver, &conn, stream).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_half_close_when_the_c_sdk_hosts() {
    let Some(venv) = venv() else { return };
    let net = Network::start().await;
    net.service("hcloses", &["hcloses"], true).await;
    let client = net.context("weft-client", &["hcloses-client"]).await;
    let mut driver = c_sdk_on(&net, &venv, &["hcloses-host"], &[]).await;
    driver
        .cmd(json!({"op": "bind", "service": "hcloses", "listener": "l"}))
        .await;
    for (i, case) in [
        "half-close both ways",
        "weft half-closes first",
        "weft closes",
        "c closes",
    ]
    .into_iter()
    .enumerate()
    {
        eprintln!("case: {case}");
        let conn = format!("c{i}");
        let dial = {
            let client = client.clone();
            tokio::spawn(async move { client.dial("hcloses").await })
        };
        let a = driver
            .cmd(json!({"op": "accept", "listener": "l", "conn": conn}))
            .await;
        assert_eq!(
            a["peer"], "weft-client",
            "the C host sees the dialer's name"
        );
        let stream = dial.await.unwrap().unwrap();
        match i {
            0 => half_close_and_close_both_ways(&mut driver, &conn, stream).await,
            1 => weft_half_closes_first(&mut driver, &conn, stream).await,
            2 => weft_closes(&mut driver, &conn, stream).await,
            _ => c_closes(&mut driver, &conn, stream).await,
        }
    }
}

/// Echoes every accepted stream until its peer half-closes, then closes.
fn spawn_echo(listener: Listener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(mut stream) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    })
}

/// Dials `service` from the driver as `conn` and checks one echo round trip.
async fn c_dial_and_echo(driver: &mut Driver, service: &str, conn: &str) {
    driver
        .cmd(json!({"op": "dial", "service": service, "conn": conn}))
        .await;
    driver
        .cmd(json!({"op": "send", "conn": conn, "data": "ping"}))
        .await;
    let a = driver
        .cmd(json!({"op": "recv", "conn": conn, "n": 4, "timeout": 10}))
        .await;
    assert_eq!(a["data"], "ping");
}

/// Waits for the driver's `conn` to end; asserts it ended (not timed out) within 5 s.
async fn c_conn_ends_promptly(driver: &mut Driver, conn: &str, since: Instant) {
    let a = driver
        .cmd(json!({"op": "wait_end", "conn": conn, "timeout": 10}))
        .await;
    let elapsed = since.elapsed();
    eprintln!(
        "C connection ended ({}) {elapsed:?} after the revocation",
        a["end"]
    );
    assert_ne!(a["end"], "timeout", "the C connection stayed open: {a}");
    assert!(
        elapsed <= Duration::from_secs(5),
        "closed only after {elapsed:?}"
    );
    driver.cmd(json!({"op": "close", "conn": conn})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_c_sdk_dial_policy_closes_its_connection_and_refuses_new_dials() {
    let Some(venv) = venv() else { return };
    let net = Network::start().await;
    let (_, dial_policy, _) = net.service("revoke", &["revoke"], true).await;
    let host = net.context("weft-host", &["revoke-host"]).await;
    let _echo = spawn_echo(host.bind("revoke").await.unwrap());
    let mut driver = c_sdk_on(&net, &venv, &["revoke-client"], &[]).await;
    c_dial_and_echo(&mut driver, "revoke", "c").await;

    let revoked_at = Instant::now();
    net.admin.delete("service-policies", &dial_policy).await;
    c_conn_ends_promptly(&mut driver, "c", revoked_at).await;
    let err = driver
        .cmd_fails(json!({"op": "dial", "service": "revoke", "conn": "again"}))
        .await;
    eprintln!("new dial refused: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_c_sdk_identity_ends_its_api_session_connection_and_dials() {
    let Some(venv) = venv() else { return };
    let net = Network::start().await;
    net.service("gone", &["gone"], true).await;
    let host = net.context("weft-host", &["gone-host"]).await;
    let _echo = spawn_echo(host.bind("gone").await.unwrap());
    let mut driver = c_sdk_on(&net, &venv, &["gone-client"], &[]).await;
    c_dial_and_echo(&mut driver, "gone", "c").await;
    let ids = net.admin.get("identities?filter=name=\"c-sdk\"").await;
    let id = ids["data"][0]["id"].as_str().unwrap().to_string();

    let revoked_at = Instant::now();
    net.admin.delete("identities", &id).await;
    c_conn_ends_promptly(&mut driver, "c", revoked_at).await;
    let err = driver
        .cmd_fails(json!({"op": "dial", "service": "gone", "conn": "again"}))
        .await;
    eprintln!("new dial refused: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_c_sdk_bind_policy_closes_hosted_connections_and_the_terminator() {
    let Some(venv) = venv() else { return };
    let net = Network::start().await;
    let (_, _, bind_policy) = net.service("unbind", &["unbind"], true).await;
    let client = net.context("weft-client", &["unbind-client"]).await;
    let mut driver = c_sdk_on(&net, &venv, &["unbind-host"], &[]).await;
    driver
        .cmd(json!({"op": "bind", "service": "unbind", "listener": "l"}))
        .await;
    let dial = {
        let client = client.clone();
        tokio::spawn(async move { client.dial("unbind").await })
    };
    driver
        .cmd(json!({"op": "accept", "listener": "l", "conn": "c"}))
        .await;
    let mut stream = dial.await.unwrap().unwrap();
    stream.write_all(b"hi").await.unwrap();
    let a = driver
        .cmd(json!({"op": "recv", "conn": "c", "n": 2, "timeout": 10}))
        .await;
    assert_eq!(a["data"], "hi");

    let revoked_at = Instant::now();
    net.admin.delete("service-policies", &bind_policy).await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the Weft end stayed open 5 s after the revocation");
    // The router closes the C host's conn ("session closed") and tells the Weft dialer
    // its peer's session went ("peer session closed"): an error, not a clean end, so a
    // cut-off transfer is not mistaken for a complete one.
    eprintln!("Weft end: {read:?} after {:?}", revoked_at.elapsed());
    let err = read.expect_err("the peer's revocation is an error for the Weft end");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert!(err.to_string().contains("peer session closed"), "{err}");
    c_conn_ends_promptly(&mut driver, "c", revoked_at).await;
    // The terminator is gone: a new dial is refused.
    let err = client.dial("unbind").await.unwrap_err();
    eprintln!("new Weft dial refused: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_sdk_dial_and_bind_errors_are_reported_and_leave_the_sdk_usable() {
    let Some(venv) = venv() else { return };
    let net = Network::start().await;
    net.service("known", &["known"], true).await;
    net.service("hostless", &["hostless"], true).await;
    let host = net.context("weft-host", &["known-host"]).await;
    let _echo = spawn_echo(host.bind("known").await.unwrap());
    let mut driver = c_sdk_on(&net, &venv, &["known-client", "hostless-client"], &[]).await;

    // The C SDK's own codes and texts (0.29.3, as its `ziti_errorstr` reports them):
    // -17 "Service not available" when no service of that name is visible or it may not
    // be bound, -23 "connection is closed" when the router refuses the dial.
    let err = driver
        .cmd_fails(json!({"op": "dial", "service": "no-such-service", "conn": "x"}))
        .await;
    eprintln!("unknown service: {err}");
    assert!(
        err.contains("-17") && err.contains("Service not available"),
        "{err}"
    );
    let err = driver
        .cmd_fails(json!({"op": "dial", "service": "hostless", "conn": "x"}))
        .await;
    eprintln!("service nobody hosts: {err}");
    assert!(
        err.contains("-23") && err.contains("connection is closed"),
        "{err}"
    );
    let err = driver
        .cmd_fails(json!({"op": "bind", "service": "known", "listener": "x"}))
        .await;
    eprintln!("bind without a Bind policy: {err}");
    assert!(
        err.contains("-17") && err.contains("Service not available"),
        "{err}"
    );
    // The context still works after the failures.
    c_dial_and_echo(&mut driver, "known", "ok").await;
}

/// The C SDK's latency probe interval (channel.c LATENCY_INTERVAL) and reply timeout
/// (LATENCY_TIMEOUT): an unanswered probe closes the channel 70 s after it came up.
const PROBE_INTERVAL: Duration = Duration::from_secs(60);
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_sdk_latency_probes_are_answered_and_connections_outlive_them() {
    let Some(venv) = venv() else { return };
    if std::env::var_os("WEFT_INTEROP_SKIP_LONG").is_some()
        && std::env::var("CI").as_deref() != Ok("true")
    {
        eprintln!("SKIPPED: WEFT_INTEROP_SKIP_LONG is set (a 75 s test)");
        return;
    }
    // A 70 s API session: the C SDK refreshes it after max(70 - 60, 60) = 60 s
    // (GET /current-api-session), within this test.
    let net = Network::start_with("auth.api_session_timeout_secs = 70", &[]).await;
    net.service("long", &["long"], true).await;
    net.service("clong", &["clong"], true).await;
    let host = net.context("weft-host", &["long-host"]).await;
    let _echo = spawn_echo(host.bind("long").await.unwrap());
    let client = net.context("weft-client", &["clong-client"]).await;
    // Level 5 (VERBOSE) logs "latency is now N" for every answered probe.
    let mut driver = c_sdk_on(
        &net,
        &venv,
        &["long-client", "clong-host"],
        &[("ZITI_LOG", "5")],
    )
    .await;
    let up = Instant::now();
    // One connection the C SDK dialed, one it accepted; both on its one channel.
    c_dial_and_echo(&mut driver, "long", "dialed").await;
    driver
        .cmd(json!({"op": "bind", "service": "clong", "listener": "l"}))
        .await;
    let dial = {
        let client = client.clone();
        tokio::spawn(async move { client.dial("clong").await })
    };
    driver
        .cmd(json!({"op": "accept", "listener": "l", "conn": "accepted"}))
        .await;
    let mut hosted = dial.await.unwrap().unwrap();

    // The first probe goes out 60 s after the channel's hello; wait for its answer.
    let deadline = up + PROBE_INTERVAL + PROBE_TIMEOUT;
    while !driver.stderr().contains("latency is now") {
        assert!(
            Instant::now() < deadline,
            "no latency probe answered within {:?}; stderr:\n{}",
            PROBE_INTERVAL + PROBE_TIMEOUT,
            driver.stderr()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "first latency probe answered {:?} after start",
        up.elapsed()
    );
    // Hold the connections past the point where an unanswered probe would have closed
    // the channel, then use them again.
    tokio::time::sleep_until((up + PROBE_INTERVAL + PROBE_TIMEOUT + Duration::from_secs(5)).into())
        .await;
    driver
        .cmd(json!({"op": "send", "conn": "dialed", "data": "still here"}))
        .await;
    let a = driver
        .cmd(json!({"op": "recv", "conn": "dialed", "n": 10, "timeout": 10}))
        .await;
    assert_eq!(a["data"], "still here");
    hosted.write_all(b"and here").await.unwrap();
    let a = driver
        .cmd(json!({"op": "recv", "conn": "accepted", "n": 8, "timeout": 10}))
        .await;
    assert_eq!(a["data"], "and here");
    driver
        .cmd(json!({"op": "send", "conn": "accepted", "data": "back"}))
        .await;
    let mut back = [0u8; 4];
    hosted.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"back");
    let log = driver.stderr();
    assert!(
        log.contains("completed GET[/current-api-session]"),
        "the C SDK refreshed its API session:\n{log}"
    );
    for bad in [
        "invalid latency probe result",
        "channel was closed",
        "reconnecting in",
    ] {
        assert!(!log.contains(bad), "the C SDK logged {bad:?}:\n{log}");
    }
    eprintln!("connections alive after {:?}", up.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_sdk_pages_services_looks_up_new_ones_by_name_and_speaks_plaintext() {
    let Some(venv) = venv() else { return };
    let net = Network::start().await;
    // More services than the C SDK's page size (25): it pages through /services.
    for i in 0..30 {
        net.admin
            .service(&format!("many-{i:02}"), &["many"], false)
            .await;
    }
    net.admin
        .service_policy("many-dial", "Dial", &["#many-client"], &["#many"])
        .await;
    net.admin
        .service_policy("many-bind", "Bind", &["#many-host"], &["#many"])
        .await;
    let host = net.context("weft-host", &["many-host"]).await;
    let _echo = spawn_echo(host.bind("many-29").await.unwrap());
    let mut driver = c_sdk_on(
        &net,
        &venv,
        &["many-client", "many-host", "late-client"],
        &[],
    )
    .await;
    // Plaintext (encryptionRequired false), on the last page.
    c_dial_and_echo(&mut driver, "many-29", "plain").await;

    // A service created after the C SDK loaded its list (its next poll is 60 s away):
    // the dial looks it up by name (GET /services?filter=name="late svc").
    net.admin.service("late svc", &["late"], true).await;
    net.admin
        .service_policy("late-dial", "Dial", &["#late-client"], &["#late"])
        .await;
    net.admin
        .service_policy("late-bind", "Bind", &["#late-host"], &["#late"])
        .await;
    let late_host = net.context("weft-late-host", &["late-host"]).await;
    let _late = spawn_echo(late_host.bind("late svc").await.unwrap());
    c_dial_and_echo(&mut driver, "late svc", "late").await;

    // The C SDK hosting a plaintext service for a Weft dialer.
    driver
        .cmd(json!({"op": "bind", "service": "many-00", "listener": "l"}))
        .await;
    let client = net.context("weft-client", &["many-client"]).await;
    let dial = {
        let client = client.clone();
        tokio::spawn(async move { client.dial("many-00").await })
    };
    driver
        .cmd(json!({"op": "accept", "listener": "l", "conn": "hosted"}))
        .await;
    let mut stream = dial.await.unwrap().unwrap();
    assert!(!stream.is_encrypted());
    stream.write_all(b"plain").await.unwrap();
    let a = driver
        .cmd(json!({"op": "recv", "conn": "hosted", "n": 5, "timeout": 10}))
        .await;
    assert_eq!(a["data"], "plain");
    driver
        .cmd(json!({"op": "send", "conn": "hosted", "data": "text"}))
        .await;
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_the_c_sdk_host_does_not_accept_in_time_fails_and_a_later_accept_gets_the_next_dial()
{
    let Some(venv) = venv() else { return };
    let net = Network::start().await;
    net.service("slow", &["slow"], true).await;
    let client = net.context("weft-client", &["slow-client"]).await;
    let mut driver = c_sdk_on(&net, &venv, &["slow-host"], &[]).await;
    driver
        .cmd(json!({"op": "bind", "service": "slow", "listener": "l"}))
        .await;
    // Nobody calls accept: the C SDK holds the dial in its backlog without answering,
    // and the router gives up.
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), client.dial("slow"))
        .await
        .expect("the dial hung")
        .unwrap_err();
    eprintln!(
        "unaccepted dial failed after {:?}: {err}",
        started.elapsed()
    );
    // The app accepts late: the C SDK answers the stale dial now (DialSuccess), the
    // router refuses it, and the accept waits for the next dial, which it gets.
    let dial = {
        let client = client.clone();
        tokio::spawn(async move { client.dial("slow").await })
    };
    driver
        .cmd(json!({"op": "accept", "listener": "l", "conn": "c"}))
        .await;
    let mut stream = dial.await.unwrap().expect("the second dial");
    stream.write_all(b"second").await.unwrap();
    let a = driver
        .cmd(json!({"op": "recv", "conn": "c", "n": 6, "timeout": 10}))
        .await;
    assert_eq!(a["data"], "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_sdk_dials_a_service_it_hosts_itself_through_the_router() {
    let Some(venv) = venv() else { return };
    let net = Network::start().await;
    net.service("loop", &["loop"], true).await;
    // Both ends on one C SDK context, so both legs of the circuit share one edge
    // connection.
    let mut driver = c_sdk_on(&net, &venv, &["loop-client", "loop-host"], &[]).await;
    driver
        .cmd(json!({"op": "bind", "service": "loop", "listener": "l"}))
        .await;
    let a = driver
        .cmd(json!({"op": "bulk_self", "service": "loop", "listener": "l", "bytes": 1_000_000}))
        .await;
    let [dialer, acceptor] = a["results"].as_array().unwrap().as_slice() else {
        panic!("two results: {a}")
    };
    for r in [dialer, acceptor] {
        assert!(
            r.get("send_error").is_none() && r.get("recv_error").is_none(),
            "{r}"
        );
        assert_eq!(r["received"], 1_000_000, "{r}");
    }
    assert_eq!(dialer["sent_sha256"], acceptor["received_sha256"]);
    assert_eq!(acceptor["sent_sha256"], dialer["received_sha256"]);
}

/// The mesh with the unmodified C SDK: it dials through router A a service that `weft
/// tunnel host` hosts on router C, and the circuit crosses router B (the three routers
/// of `weft_testkit::Line`). 10 MB each way, encrypted end to end, byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_sdk_dials_across_three_routers_a_service_hosted_by_weft_tunnel() {
    let Some(venv) = venv() else { return };
    let line = Line::start().await;
    line.service("mesh", true).await;
    // The tunnel's target: takes 10 MB, answers 10 MB, then half-closes.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = target.local_addr().unwrap().to_string();
    let download = Arc::new(pattern(TEN_MB, 11));
    let download_sha = sha_hex(&download);
    let server = {
        let download = download.clone();
        tokio::spawn(async move {
            let (mut tcp, _) = target.accept().await.unwrap();
            let (mut rd, mut wr) = tcp.split();
            let writer = async {
                wr.write_all(&download).await.unwrap();
            };
            let reader = async {
                let mut got = vec![0u8; TEN_MB];
                rd.read_exact(&mut got).await.unwrap();
                got
            };
            let ((), got) = tokio::join!(writer, reader);
            wr.shutdown().await.unwrap();
            let mut rest = Vec::new();
            let _ = rd.read_to_end(&mut rest).await;
            assert!(rest.is_empty(), "the C side sent more than it said");
            sha_hex(&got)
        })
    };
    let files = tempfile::tempdir().unwrap();
    let host_file = files.path().join("host.json");
    line.host_identity("mesh").await.save(&host_file).unwrap();
    let _host = Tunnel::start("host", &host_file, "mesh", &["--target", &target_addr]);
    let mut driver = c_sdk_with(&line.admin, &venv, &["mesh-client", "dialer"], &[]).await;
    let started = Instant::now();
    let a = driver
        .cmd(json!({"op": "bulk_dial", "service": "mesh", "conns": 1, "bytes": TEN_MB}))
        .await;
    let received_by_target = server.await.unwrap();
    eprintln!(
        "C SDK through three routers, 10 MB each way (encrypted) in {:?}",
        started.elapsed()
    );
    let r = &a["results"][0];
    assert!(
        r.get("send_error").is_none() && r.get("recv_error").is_none(),
        "C side error: {r}"
    );
    assert_eq!(r["received"], TEN_MB, "{r}");
    assert_eq!(r["received_sha256"], download_sha.as_str(), "{r}");
    assert_eq!(r["sent_sha256"], received_by_target.as_str(), "{r}");
    // Dialers may use router A only and hosts router C only, and no link joins A and C:
    // the circuit crossed B (the Line's policies). Every router of it reported its end.
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while !line.admin.get("circuits").await["data"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the circuit is still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The C SDK answers posture queries itself: with an OS, a MAC and a PROCESS check on
/// its Dial policy it reports this host (Linux and its kernel release, its interface
/// addresses, its own Python process) and passes; once an administrator tightens the
/// OS check past this kernel, its live connection ends and new dials are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_sdk_submits_posture_and_passes_or_fails_checks_accordingly() {
    let Some(venv) = venv() else { return };
    let net = Network::start().await;
    let (_, dial_policy, _) = net.service("pst", &["pst"], true).await;
    let host = net.context("weft-host", &["pst-host"]).await;
    let _echo = spawn_echo(host.bind("pst").await.unwrap());
    let macs: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("address")).ok())
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty() && m != "00:00:00:00:00:00")
        .collect();
    assert!(!macs.is_empty(), "this host has no MAC address to check");
    let python = std::fs::canonicalize(venv.join("bin/python")).unwrap();
    let os_check = net
        .admin
        .posture_check(
            json!({"name": "linux", "typeId": "OS", "roleAttributes": ["c-posture"],
                              "operatingSystems": [{"type": "Linux", "versions": [">=2.0.0"]}]}),
        )
        .await;
    for body in [
        json!({"name": "nic", "typeId": "MAC", "roleAttributes": ["c-posture"], "macAddresses": macs}),
        json!({"name": "python-runs", "typeId": "PROCESS", "roleAttributes": ["c-posture"],
               "process": {"osType": "Linux", "path": python.to_str().unwrap()}}),
    ] {
        net.admin.posture_check(body).await;
    }
    net.admin
        .require_posture(&dial_policy, &["#c-posture"])
        .await;

    let mut driver = c_sdk_on(&net, &venv, &["pst-client"], &[]).await;
    // The C SDK reports posture when it lists services (and every 20 s): the first
    // dials may precede the first report.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = driver
            .try_cmd(json!({"op": "dial", "service": "pst", "conn": "c"}))
            .await;
        if a["ok"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the C SDK never passed posture: {a}; stderr:\n{}",
            driver.stderr()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    driver
        .cmd(json!({"op": "send", "conn": "c", "data": "ping"}))
        .await;
    let a = driver
        .cmd(json!({"op": "recv", "conn": "c", "n": 4, "timeout": 10}))
        .await;
    assert_eq!(a["data"], "ping");
    let ids = net.admin.get("identities?filter=name=\"c-sdk\"").await;
    let id = ids["data"][0]["id"].as_str().unwrap().to_string();
    let data = net
        .admin
        .get(&format!("identities/{id}/posture-data"))
        .await;
    eprintln!("C SDK posture data: {}", data["data"]);
    assert_eq!(data["data"]["os"]["type"], "Linux");
    assert!(
        !data["data"]["mac"]["addresses"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        data["data"]["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["isRunning"] == true),
        "{}",
        data["data"]
    );

    // The OS check now asks for a kernel no host runs: the connection ends at once.
    let tightened = Instant::now();
    net.admin
        .patch(
            &format!("posture-checks/{os_check}"),
            json!({"operatingSystems": [{"type": "Linux", "versions": [">=99.0.0"]}]}),
        )
        .await;
    c_conn_ends_promptly(&mut driver, "c", tightened).await;
    let err = driver
        .cmd_fails(json!({"op": "dial", "service": "pst", "conn": "again"}))
        .await;
    eprintln!("new dial refused: {err}");
}
