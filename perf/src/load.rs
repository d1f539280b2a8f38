//! Load generators: iperf3 for bulk throughput (its `-J` JSON parsed here), and the
//! suite's own tokio clients for ping-pong latency, circuit setup rate and idle
//! connections, so the measurement loop is the suite's own.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one iperf3 run measured (receiver side where iperf3 reports it).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IperfResult {
    /// Bytes the server received.
    pub bytes: u64,
    /// Seconds of the test.
    pub seconds: f64,
    /// Aggregate receive rate, bit/s.
    pub bits_per_second: f64,
    /// Per-stream receive rate, bit/s.
    pub streams_bps: Vec<f64>,
    /// One-second intervals (per interval, per stream: bit/s); receiver side when the
    /// server's output was included (`--get-server-output`), else sender side.
    pub intervals_bps: Vec<Vec<f64>>,
    /// Number of (interval, stream) pairs that moved no byte (full intervals only).
    pub zero_intervals: usize,
}

/// Parses the JSON of `iperf3 -c … -J [--get-server-output]`.
pub fn parse_iperf3(json: &str) -> Result<IperfResult> {
    let v: Value = serde_json::from_str(json).context("iperf3 output is not JSON")?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        bail!("iperf3: {e}");
    }
    let end = v.get("end").context("iperf3 JSON without \"end\"")?;
    let sum = end
        .get("sum_received")
        .context("iperf3 JSON without end.sum_received")?;
    let num = |x: &Value, k: &str| x.get(k).and_then(Value::as_f64);
    let bytes = num(sum, "bytes").context("sum_received.bytes")?;
    let seconds = num(sum, "seconds").context("sum_received.seconds")?;
    let bits_per_second = num(sum, "bits_per_second").context("sum_received.bits_per_second")?;
    let streams_bps = end
        .get("streams")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.get("receiver").and_then(|r| num(r, "bits_per_second")))
                .collect()
        })
        .unwrap_or_default();
    // Receiver-side intervals from the server's own report when present.
    let intervals_src = v
        .get("server_output_json")
        .and_then(|s| s.get("intervals"))
        .or_else(|| v.get("intervals"))
        .and_then(Value::as_array);
    let mut intervals_bps = Vec::new();
    let mut zero_intervals = 0;
    for iv in intervals_src.into_iter().flatten() {
        let streams = iv.get("streams").and_then(Value::as_array);
        let mut row = Vec::new();
        for s in streams.into_iter().flatten() {
            let bps = num(s, "bits_per_second").unwrap_or(0.0);
            let secs = num(s, "seconds").unwrap_or(0.0);
            let b = num(s, "bytes").unwrap_or(0.0);
            // A short last interval (the test's tail) is not a stall.
            if secs >= 0.5 && b <= 0.0 {
                zero_intervals += 1;
            }
            row.push(bps);
        }
        intervals_bps.push(row);
    }
    Ok(IperfResult {
        // The byte count is an integer in the JSON; f64 holds it exactly below 2^53.
        bytes: bytes as u64,
        seconds,
        bits_per_second,
        streams_bps,
        intervals_bps,
        zero_intervals,
    })
}

/// Runs `iperf3 -c` against `addr` with `streams` parallel streams for `seconds`,
/// retrying for a few seconds while the server still winds down the previous test
/// ("the server is busy", or its listener not yet back: "Connection refused").
pub async fn iperf3(
    iperf3: &Path,
    addr: SocketAddr,
    streams: usize,
    seconds: u64,
) -> Result<IperfResult> {
    let mut tries = 0;
    loop {
        tries += 1;
        match iperf3_once(iperf3, addr, streams, seconds).await {
            Err(e)
                if tries < 10
                    && ["server is busy", "Connection refused"]
                        .iter()
                        .any(|m| format!("{e:#}").contains(m)) =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            r => return r,
        }
    }
}

async fn iperf3_once(
    iperf3: &Path,
    addr: SocketAddr,
    streams: usize,
    seconds: u64,
) -> Result<IperfResult> {
    let mut cmd = tokio::process::Command::new(iperf3);
    cmd.args(["-c", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-t", &seconds.to_string(), "-P", &streams.to_string()])
        .args(["-J", "--get-server-output", "--connect-timeout", "10000"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let limit = Duration::from_secs(seconds + 60);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .with_context(|| format!("iperf3 -c {addr} did not finish within {limit:?}"))?
        .context("running iperf3")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_iperf3(&text).with_context(|| {
        format!(
            "iperf3 -c {addr} -P {streams} ({}){}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A latency histogram in nanoseconds, 3 significant digits, up to 60 s.
pub fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).context("creating a histogram")
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Ping-pong with `size`-byte messages on one connection for `duration` (after a
/// short warm-up); round-trip times in nanoseconds.
pub async fn ping_pong(
    addr: SocketAddr,
    size: usize,
    duration: Duration,
) -> Result<Histogram<u64>> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true).context("TCP_NODELAY")?;
    let ping = vec![0x42u8; size];
    let mut pong = vec![0u8; size];
    let mut hist = histogram()?;
    let warmup = Instant::now() + Duration::from_millis(200);
    let end = warmup + duration;
    loop {
        let t = Instant::now();
        if t >= end {
            break;
        }
        s.write_all(&ping).await.context("ping")?;
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut pong))
            .await
            .context("no pong within 10 s")?
            .context("pong")?;
        if t >= warmup {
            hist.record(nanos(t.elapsed()).max(1))
                .context("recording a round trip")?;
        }
    }
    Ok(hist)
}

/// What a setup-rate run counted.
#[derive(Debug)]
pub struct SetupResult {
    /// Connections that got their byte echoed.
    pub ok: u64,
    /// Connections that failed.
    pub failed: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Connect → first byte echoed, nanoseconds.
    pub hist: Histogram<u64>,
}

async fn one_setup(addr: SocketAddr) -> Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(b"x").await?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await?;
    Ok(())
}

/// Opens connections to `addr` from `concurrency` loops for `duration`; each writes
/// one byte, waits for its echo and closes.
pub async fn setup_rate(
    addr: SocketAddr,
    concurrency: usize,
    duration: Duration,
) -> Result<SetupResult> {
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        tasks.spawn(async move {
            let mut hist = histogram()?;
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < end {
                let t = Instant::now();
                match tokio::time::timeout(Duration::from_secs(10), one_setup(addr)).await {
                    Ok(Ok(())) => {
                        ok += 1;
                        hist.record(nanos(t.elapsed()).max(1))
                            .context("recording a setup time")?;
                    }
                    _ => {
                        failed += 1;
                        // Do not spin on a dead path.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            Ok::<_, anyhow::Error>((ok, failed, hist))
        });
    }
    let mut total = SetupResult {
        ok: 0,
        failed: 0,
        seconds: 0.0,
        hist: histogram()?,
    };
    while let Some(r) = tasks.join_next().await {
        let (ok, failed, hist) = r.context("setup task panicked")??;
        total.ok += ok;
        total.failed += failed;
        total.hist.add(&hist).context("merging histograms")?;
    }
    total.seconds = start.elapsed().as_secs_f64();
    Ok(total)
}

/// Opens `n` connections to `addr` (at most `concurrency` opening at once), each
/// confirmed by one echoed byte, and returns them open; also how many failed.
pub async fn open_idle(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
) -> Result<(Vec<TcpStream>, usize)> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let sem = std::sync::Arc::clone(&sem);
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await.ok()?;
            let open = async {
                let mut s = TcpStream::connect(addr).await?;
                s.write_all(b"i").await?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await?;
                Ok::<_, std::io::Error>(s)
            };
            tokio::time::timeout(Duration::from_secs(30), open)
                .await
                .ok()?
                .ok()
        });
    }
    let mut open = Vec::with_capacity(n);
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Some(s)) => open.push(s),
            _ => failed += 1,
        }
    }
    Ok((open, failed))
}

/// Bulk echo traffic: `conns` connections to each of `addrs`, each writing 64 KiB
/// blocks for `duration` while reading the echo back; returns the bytes echoed back
/// and the seconds it took (writers stop at the deadline, readers drain).
pub async fn echo_bulk(
    addrs: &[SocketAddr],
    conns: usize,
    duration: Duration,
) -> Result<(u64, f64)> {
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for addr in addrs {
        for _ in 0..conns {
            let addr = *addr;
            tasks.spawn(async move {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                let (mut rd, mut wr) = s.into_split();
                let writer = async move {
                    let block = vec![0x5au8; 64 * 1024];
                    while Instant::now() < end {
                        wr.write_all(&block).await?;
                    }
                    wr.shutdown().await?;
                    Ok::<_, std::io::Error>(())
                };
                let reader = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got = 0u64;
                    loop {
                        match tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf)).await
                        {
                            Ok(Ok(0)) | Err(_) => break,
                            Ok(Ok(n)) => got += n as u64,
                            Ok(Err(e)) => return Err(e),
                        }
                    }
                    Ok(got)
                };
                let (w, r) = tokio::join!(writer, reader);
                w?;
                r
            });
        }
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r
            .context("echo task panicked")?
            .context("echo bulk connection")?;
    }
    Ok((total, start.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ONE: &str = include_str!("../tests/fixtures/iperf3_p1.json");
    const TWO: &str = include_str!("../tests/fixtures/iperf3_p2_stall.json");

    #[test]
    fn one_stream_receiver_figures() {
        let r = parse_iperf3(ONE).unwrap();
        assert_eq!(r.bytes, 2_500_000_000);
        assert!((r.bits_per_second - 9.9e9).abs() < 1.0);
        assert_eq!(r.streams_bps, vec![9.9e9]);
        assert_eq!(r.intervals_bps.len(), 2);
        assert_eq!(r.zero_intervals, 0);
    }

    #[test]
    fn stalled_stream_intervals_are_counted_from_the_server_side() {
        let r = parse_iperf3(TWO).unwrap();
        assert_eq!(r.streams_bps.len(), 2);
        // Server-side intervals: stream 2 moved nothing in the second full second; the
        // 0.01 s tail with no bytes does not count.
        assert_eq!(r.intervals_bps.len(), 3);
        assert_eq!(r.zero_intervals, 1);
    }

    #[test]
    fn iperf3_error_is_reported() {
        let e = parse_iperf3(
            r#"{"start":{},"error":"unable to connect to server: Connection refused"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("Connection refused"));
    }

    #[tokio::test]
    async fn ping_pong_and_setup_against_a_local_echo() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::server::echo(listener));
        let h = ping_pong(addr, 64, Duration::from_millis(100))
            .await
            .unwrap();
        assert!(h.len() > 10);
        let s = setup_rate(addr, 2, Duration::from_millis(100))
            .await
            .unwrap();
        assert!(s.ok > 0);
        assert_eq!(s.failed, 0);
        let (open, failed) = open_idle(addr, 20, 4).await.unwrap();
        assert_eq!((open.len(), failed), (20, 0));
        let (bytes, secs) = echo_bulk(&[addr], 2, Duration::from_millis(100))
            .await
            .unwrap();
        assert!(bytes > 0 && secs > 0.0);
    }
}
