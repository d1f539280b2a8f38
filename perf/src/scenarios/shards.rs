//! Shard scaling. For N shards this scenario places one hosting endpoint and one
//! dialing endpoint on *every* shard (it starts endpoints and keeps those that land on
//! a shard not yet covered, reading the router's per-shard `weft_router_terminators`
//! and `weft_router_connections`), then drives echo traffic through all N dialers at
//! once. A dial prefers a terminator on its own shard among equals, so these are N
//! shard-local circuit sets: the figure is the shards' scaling without cross-shard
//! hops (circuits that do cross are exercised by the router's tests). Scaling means aggregate echo throughput and router CPU per GB
//! against the 1-shard router of the same run.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use super::Ctx;
use crate::load::echo_bulk;
use crate::net::{TargetPorts, WeftNet, parse_shard_metric, router_metrics_text};
use crate::process::{Daemon, free_port};
use crate::report::ScenarioReport;
use crate::sysinfo::tree_cpu_seconds;

/// Connections per dialing endpoint.
const CONNS: usize = 2;

async fn per_shard(metrics: SocketAddr, name: &str, shards: usize) -> Result<Vec<f64>> {
    let text = router_metrics_text(metrics).await?;
    let mut v = vec![0.0; shards];
    for (shard, x) in parse_shard_metric(&text, name) {
        if let Some(slot) = v.get_mut(shard) {
            *slot = x;
        }
    }
    Ok(v)
}

/// The shard whose `name` grew between `before` and `after`.
fn grown(before: &[f64], after: &[f64]) -> Option<usize> {
    before.iter().zip(after).position(|(b, a)| a > b)
}

async fn probe(addr: SocketAddr) -> Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"p").await?;
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut b))
        .await
        .context("probe timed out")??;
    Ok(s)
}

async fn wait_change(
    metrics: SocketAddr,
    name: &str,
    shards: usize,
    before: &[f64],
) -> Result<Option<usize>> {
    for _ in 0..100 {
        let now = per_shard(metrics, name, shards).await?;
        if let Some(s) = grown(before, &now) {
            return Ok(Some(s));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(None)
}

/// One shard count: (bytes echoed, seconds, router CPU seconds, attempts).
async fn one(
    ctx: &Ctx,
    net: &WeftNet,
    targets: TargetPorts,
    shards: usize,
) -> Result<(u64, f64, f64, usize)> {
    let name = format!("perf-shards-{shards}");
    let router = net.start_router(&name, net.main_io(), shards).await?;
    let via = format!("via-{name}");
    let host_id = net
        .identity(&format!("host-{name}"), &["perf-host".into(), via.clone()])
        .await?;
    let client_id = net
        .identity(&format!("client-{name}"), &["perf-client".into(), via])
        .await?;
    let max_tries = 6 * shards + 6;
    let mut tries = 0;
    let mut hosts: Vec<Daemon> = Vec::new();
    let mut covered = vec![false; shards];
    while covered.iter().any(|c| !c) {
        tries += 1;
        if tries > max_tries {
            bail!("could not place a hosting endpoint on every shard in {max_tries} tries");
        }
        let before = per_shard(router.metrics, "weft_router_terminators", shards).await?;
        let d = net
            .spawn_tunnel(
                &format!("{name}-host-{tries}"),
                "host",
                &host_id,
                "perf-echo",
                &["--target".into(), format!("127.0.0.1:{}", targets.echo)],
            )
            .await?;
        if let Some(s) =
            wait_change(router.metrics, "weft_router_terminators", shards, &before).await?
            && !covered[s]
        {
            covered[s] = true;
            hosts.push(d);
        }
    }
    let mut dialers: Vec<(Daemon, SocketAddr)> = Vec::new();
    let mut covered = vec![false; shards];
    while covered.iter().any(|c| !c) {
        tries += 1;
        if tries > 2 * max_tries {
            bail!("could not place a dialing endpoint on every shard");
        }
        let before = per_shard(router.metrics, "weft_router_connections", shards).await?;
        let port = free_port()?;
        let d = net
            .spawn_tunnel(
                &format!("{name}-dial-{tries}"),
                "dial",
                &client_id,
                "perf-echo",
                &["--listen".into(), format!("127.0.0.1:{port}")],
            )
            .await?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // The dialer connects to the router on its first dial.
        let probe = probe(addr).await.context("probe through a new dialer")?;
        drop(probe);
        if let Some(s) =
            wait_change(router.metrics, "weft_router_connections", shards, &before).await?
            && !covered[s]
        {
            covered[s] = true;
            dialers.push((d, addr));
        }
    }
    let addrs: Vec<SocketAddr> = dialers.iter().map(|(_, a)| *a).collect();
    let cpu0 = tree_cpu_seconds(router.pid());
    let (bytes, secs) = echo_bulk(
        &addrs,
        CONNS,
        Duration::from_secs(ctx.settings.bulk_seconds),
    )
    .await?;
    let cpu = tree_cpu_seconds(router.pid()) - cpu0;
    drop(dialers);
    drop(hosts);
    drop(router);
    Ok((bytes, secs, cpu, tries))
}

/// `shards`.
pub async fn run(ctx: &Ctx, net: &WeftNet, targets: TargetPorts) -> ScenarioReport {
    let mut s = ScenarioReport::new(
        "shards",
        "Shard scaling: one host + one dialer endpoint per shard, echo traffic through all",
        "1-shard",
        &[
            ("gbps", "echoed back", "Gbit/s", true),
            ("router_cores", "router cores busy", "cores", false),
            ("cpu_per_gb", "router CPU per GB echoed", "s/GB", false),
        ],
    );
    for &n in &ctx.settings.shard_counts {
        let label = format!("{n}-shard");
        ctx.step(&format!("shards: {n}"));
        match one(ctx, net, targets, n).await {
            Ok((bytes, secs, cpu, tries)) => {
                let gb = bytes as f64 / 1e9;
                s.record(&label, "gbps", gb * 8.0 / secs);
                s.record(&label, "router_cores", cpu / secs);
                if gb > 0.0 {
                    s.record(&label, "cpu_per_gb", cpu / gb);
                }
                s.record(&label, "endpoint_starts", tries as f64);
            }
            Err(e) => ctx.failed(&mut s, &label, 0, &e),
        }
        ctx.tick();
    }
    s.notes.push(format!(
        "each shard gets its own hosting and dialing `weft tunnel` endpoint (placement read \
         from the router's per-shard metrics) and {CONNS} echo connections per dialer; a dial \
         prefers a terminator on its own shard, so the N shards carry N independent circuit \
         sets. On a machine with {} cores the load generator, echo \
         server and 2N tunnel endpoints share the cores with the router's shards.",
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    ));
    s.finish();
    s
}
