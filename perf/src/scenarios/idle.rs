//! Memory per idle circuit: open N connections through a path (each confirmed by one
//! echoed byte), hold them, and divide the growth of the router's resident memory
//! (`VmRSS`) by N. The stunnel pair is the baseline (both processes); its count is
//! capped by the open-files limit (it holds two descriptors per connection).

use std::time::Duration;

use anyhow::{Context as _, Result};

use super::Ctx;
use crate::load::open_idle;
use crate::net::router_metrics;
use crate::paths::{NetPath, STUNNEL, WEFT};
use crate::report::ScenarioReport;
use crate::sysinfo::tree_rss;

/// Connections opened at once while building up the idle set.
const OPENING: usize = 64;

fn rss_of(pids: &[u32]) -> u64 {
    pids.iter().map(|p| tree_rss(*p)).sum()
}

async fn circuits(path: &NetPath) -> Option<f64> {
    let r = path.router.as_ref()?;
    router_metrics(r.metrics)
        .await
        .ok()?
        .get("weft_router_circuits")
        .copied()
}

async fn measure(s: &mut ScenarioReport, path: &NetPath, n: usize) -> Result<()> {
    let key = path.key_echo_pids();
    let others: Vec<(String, u32)> = path
        .echo_procs
        .iter()
        .filter(|p| !key.contains(&p.pid))
        .map(|p| (p.role.clone(), p.pid))
        .collect();
    let base_circuits = circuits(path).await.unwrap_or(0.0);
    let before = rss_of(&key);
    let others_before: Vec<u64> = others.iter().map(|(_, p)| rss_of(&[*p])).collect();
    let (conns, failed) = open_idle(path.echo, n, OPENING).await?;
    anyhow::ensure!(!conns.is_empty(), "no connection could be opened");
    // Let the processes settle (buffers returned, deferred frees done).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = rss_of(&key);
    let open = conns.len() as f64;
    let held = circuits(path).await.map(|c| c - base_circuits);
    s.record(&path.name, "circuits", open);
    s.record(&path.name, "failed", failed as f64);
    s.record(
        &path.name,
        "kib_per_circuit",
        (after as f64 - before as f64) / open / 1024.0,
    );
    s.record(&path.name, "rss_after_mib", after as f64 / 1048576.0);
    for ((role, pid), b) in others.iter().zip(others_before) {
        let a = rss_of(&[*pid]);
        s.record(
            &path.name,
            &format!("kib_per_circuit:{role}"),
            (a as f64 - b as f64) / open / 1024.0,
        );
    }
    if let Some(h) = held {
        s.notes.push(format!(
            "{}: the router counted {h:.0} open circuits while {open:.0} connections were held",
            path.name
        ));
    }
    drop(conns);
    // Wait for the circuits to close before the next scenario.
    if path.router.is_some() {
        for _ in 0..100 {
            if circuits(path).await.is_some_and(|c| c <= base_circuits) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// `idle`.
pub async fn run(ctx: &Ctx) -> ScenarioReport {
    let n = ctx.settings.idle_circuits;
    let mut s = ScenarioReport::new(
        "idle",
        &format!("Memory per idle circuit ({n} circuits held)"),
        STUNNEL,
        &[
            ("kib_per_circuit", "RSS growth per circuit", "KiB", false),
            ("circuits", "circuits held", "count", true),
            ("rss_after_mib", "RSS while held", "MiB", false),
        ],
    );
    // Two descriptors per connection in the stunnel client, plus headroom.
    let stunnel_n = n.min(usize::try_from(ctx.nofile.saturating_sub(512) / 2).unwrap_or(n));
    for name in [WEFT, STUNNEL] {
        let Some(path) = ctx.path(name).cloned() else {
            continue;
        };
        let count = if name == STUNNEL { stunnel_n } else { n };
        ctx.step(&format!("idle: {count} circuits through {name}"));
        if let Err(e) = measure(&mut s, &path, count)
            .await
            .with_context(|| format!("holding {count} connections"))
        {
            ctx.failed(&mut s, name, 0, &e);
        }
        ctx.tick();
    }
    if stunnel_n < n {
        s.notes.push(format!(
            "stunnel held {stunnel_n} connections (open-files limit {}; two descriptors \
             per connection); its figure is per connection all the same",
            ctx.nofile
        ));
    }
    s.notes.push(
        "router RSS growth on Weft paths (the tunnel endpoints' growth per circuit is in \
         results.json as kib_per_circuit:<role>); both stunnel processes on the baseline. \
         This scenario runs first, on routers that have carried no traffic yet."
            .into(),
    );
    s.finish();
    s
}
