//! `weft-perf sdk`: the Rust SDK end to end against the `weft tunnel` path, in the same
//! run on the same router (issue 21's benchmark).
//!
//! One controller (SQLite) and one router; a hosting and a dialing SDK context in this
//! process. Measured for a plain and an end-to-end encrypted service:
//! - **throughput**: one stream carries `--megabytes` from the dialer to a sink that
//!   counts them (best of `--rounds`);
//! - **dial + first echo**: `--dials` sequential new streams, each timed from the dial
//!   to its first echoed byte (p50, p99).
//!
//! The same figures through `weft tunnel dial` → router → `weft tunnel host` processes,
//! with a TCP client and a TCP sink/echo server in this process: what an application
//! gets from the SDK compared with riding the overlay as a stock TCP tool.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_testkit::boot::Management;

use crate::control::{Controllers, allow_all_routers, enrolled, sibling_bin};
use crate::revocation::start_router;

/// What to measure.
#[derive(Debug, clap::Args)]
pub struct SdkArgs {
    /// Bytes per throughput round, in MiB.
    #[arg(long, default_value_t = 512)]
    pub megabytes: usize,
    /// Throughput rounds (the best counts).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Sequential dials timed.
    #[arg(long, default_value_t = 300)]
    pub dials: usize,
}

/// The first byte of a stream: what the far end does with it.
const SINK: u8 = b'S';
const ECHO: u8 = b'E';
const CHUNK: usize = 64 * 1024;

/// Serves one stream: a sink (reads to the end, answers the count as 8 bytes
/// big-endian) or an echo of one byte.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> std::io::Result<()> {
    let mut mode = [0u8; 1];
    s.read_exact(&mut mode).await?;
    if mode[0] == ECHO {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        s.write_all(&b).await?;
        let _ = s.read(&mut b).await;
        return Ok(());
    }
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    s.write_all(&total.to_be_bytes()).await?;
    s.shutdown().await
}

/// Sends `bytes` to a sink on `s`; returns MB/s (10^6 bytes) from the first byte to
/// the sink's count.
async fn push<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, bytes: usize) -> Result<f64> {
    let started = Instant::now();
    s.write_all(&[SINK]).await?;
    let buf = vec![0x5au8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK);
        s.write_all(&buf[..n]).await?;
        left -= n;
    }
    s.shutdown().await?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count).await?;
    let secs = started.elapsed().as_secs_f64();
    if u64::from_be_bytes(count) != bytes as u64 {
        bail!(
            "the sink counted {} of {bytes} bytes",
            u64::from_be_bytes(count)
        );
    }
    Ok(bytes as f64 / secs / 1e6)
}

/// One byte echoed on a new stream `s` (already connected).
async fn echo_one<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> Result<()> {
    s.write_all(&[ECHO, 7]).await?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await?;
    if b[0] != 7 {
        bail!("echoed {} instead of 7", b[0]);
    }
    Ok(())
}

/// Figures of one path for one service.
struct Figures {
    mbps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// A `weft tunnel` process, killed on drop.
struct Tunnel(Child);

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tunnel(args: &[&str]) -> Result<Tunnel> {
    let child = Command::new(sibling_bin("weft")?)
        .arg("tunnel")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting weft tunnel")?;
    Ok(Tunnel(child))
}

/// Runs the measurement and prints the figures.
pub async fn run_sdk(args: SdkArgs) -> Result<()> {
    let ctls = Controllers::start(1, None).await?;
    let info = ctls.infos.first().context("no controller")?;
    let admin = Management::login(&info.url(), &info.ca_pem()?, &info.admin_password()?).await?;
    for (name, encrypted) in [("bench", false), ("bench-e2e", true)] {
        admin
            .create(
                "services",
                json!({"name": name, "roleAttributes": ["bench"], "encryptionRequired": encrypted}),
            )
            .await?;
    }
    admin
        .create("service-policies", json!({"name": "bench-dial", "type": "Dial", "semantic": "AnyOf", "identityRoles": ["#bench-client"], "serviceRoles": ["#bench"]}))
        .await?;
    admin
        .create("service-policies", json!({"name": "bench-bind", "type": "Bind", "semantic": "AnyOf", "identityRoles": ["#bench-host"], "serviceRoles": ["#bench"]}))
        .await?;
    allow_all_routers(&admin).await?;
    let _router = start_router(&admin, &info.control_addr, "bench-router", "").await?;

    let dir = tempfile::tempdir()?;
    let host_id = enrolled(&admin, "bench-host").await?;
    let client_id = enrolled(&admin, "bench-client").await?;
    let (host_file, client_file) = (dir.path().join("host.json"), dir.path().join("client.json"));
    host_id.save(&host_file)?;
    client_id.save(&client_file)?;

    // SDK paths: both contexts in this process.
    let host = weft_sdk::Context::new(host_id).await?;
    let client = weft_sdk::Context::new(client_id).await?;
    let mut rows = Vec::new();
    for service in ["bench", "bench-e2e"] {
        let listener = host.bind(service).await?;
        let server = tokio::spawn(async move {
            while let Ok(s) = listener.accept().await {
                tokio::spawn(serve(s));
            }
        });
        let figures = measure(&args, || async { Ok(client.dial(service).await?) }).await?;
        server.abort();
        rows.push((format!("SDK → SDK, {service}"), figures));
    }
    drop((host, client));

    // Tunnel paths: TCP → `weft tunnel dial` → router → `weft tunnel host` → TCP.
    let target = TcpListener::bind("127.0.0.1:0").await?;
    let target_addr = target.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = target.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(serve(s));
        }
    });
    for service in ["bench", "bench-e2e"] {
        let listen = SocketAddr::from(([127, 0, 0, 1], weft_testkit::free_port()));
        let target_s = target_addr.to_string();
        let listen_s = listen.to_string();
        let _host = tunnel(&[
            "host",
            "--identity",
            &host_file.to_string_lossy(),
            "--service",
            service,
            "--target",
            &target_s,
        ])?;
        let _dial = tunnel(&[
            "dial",
            "--identity",
            &client_file.to_string_lossy(),
            "--service",
            service,
            "--listen",
            &listen_s,
        ])?;
        // Ready once a connection echoes (the host bound, the dialer listens).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let attempt = async { echo_one(TcpStream::connect(listen).await?).await };
            match attempt.await {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => bail!("the tunnel did not come up: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let figures = measure(&args, || async {
            let s = TcpStream::connect(listen).await?;
            s.set_nodelay(true)?;
            Ok(s)
        })
        .await?;
        rows.push((format!("TCP → weft tunnel → TCP, {service}"), figures));
    }

    println!("| path | one stream MB/s | dial + first echo p50 ms | p99 ms |\n|---|---|---|---|");
    for (path, f) in rows {
        println!(
            "| {path} | {:.0} | {:.2} | {:.2} |",
            f.mbps, f.p50_ms, f.p99_ms
        );
    }
    drop(ctls);
    Ok(())
}

/// Throughput (best of the rounds) and dial latency over streams `open` makes.
async fn measure<S, F, Fut>(args: &SdkArgs, open: F) -> Result<Figures>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<S>>,
{
    let bytes = args.megabytes * 1024 * 1024;
    let mut best = 0f64;
    for _ in 0..args.rounds.max(1) {
        best = best.max(push(open().await?, bytes).await?);
    }
    let mut h = Histogram::<u64>::new(3)?;
    for _ in 0..args.dials.max(1) {
        let t = Instant::now();
        echo_one(open().await?).await?;
        h.record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX))?;
    }
    Ok(Figures {
        mbps: best,
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
    })
}
