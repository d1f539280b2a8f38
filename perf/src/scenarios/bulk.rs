//! Bulk throughput with iperf3: 1 stream (with relay CPU per GB, RSS and CPU shares)
//! and 8 / 64 concurrent streams (aggregate, slowest and fastest stream, and whether
//! any stream had a one-second interval with no byte received).

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;

use super::Ctx;
use crate::load::{IperfResult, iperf3};
use crate::paths::{NetPath, STUNNEL};
use crate::report::ScenarioReport;
use crate::sysinfo::{self, rss, system_cpu, tree_cpu_seconds};

/// One iperf3 run with the CPU the path's processes spent during it.
#[derive(Debug)]
pub struct BulkSample {
    /// What iperf3 measured.
    pub iperf: IperfResult,
    /// Wall-clock seconds of the run.
    pub wall: f64,
    /// CPU seconds per role on the path, plus `iperf3-server` and `box` (whole
    /// machine).
    pub cpu: BTreeMap<String, f64>,
    /// CPU seconds of the key processes (the router, or every baseline relay).
    pub key_cpu: f64,
    /// CPU seconds of every process on the path.
    pub path_cpu: f64,
    /// RSS of the key processes after the run, bytes.
    pub key_rss: u64,
}

impl BulkSample {
    /// Gigabytes (10^9 bytes) received.
    pub fn gb(&self) -> f64 {
        self.iperf.bytes as f64 / 1e9
    }

    /// Cores used by each role (CPU seconds / wall seconds), for the notes.
    pub fn shares(&self) -> String {
        self.cpu
            .iter()
            .map(|(k, v)| format!("{k} {:.2}", v / self.wall))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Runs iperf3 through `path` and accounts the CPU of its processes.
pub async fn measure(
    ctx: &Ctx,
    path: &NetPath,
    streams: usize,
    seconds: u64,
) -> Result<BulkSample> {
    let ticks = sysinfo::clock_ticks() as f64;
    let mut procs: Vec<(String, u32)> = path
        .bulk_procs
        .iter()
        .map(|p| (p.role.clone(), p.pid))
        .collect();
    procs.push(("iperf3-server".into(), ctx.iperf3_pid));
    let before: Vec<f64> = procs
        .iter()
        .map(|(_, pid)| tree_cpu_seconds(*pid))
        .collect();
    let box_before = system_cpu()?;
    let t = Instant::now();
    let iperf = iperf3(&ctx.bins.iperf3, path.bulk, streams, seconds).await?;
    let wall = t.elapsed().as_secs_f64();
    let box_after = system_cpu()?;
    // socat forks a child per connection; its CPU reaches the parent's counters when
    // the parent reaps it, so wait (briefly) for the per-connection children to go.
    let settle = Instant::now();
    while settle.elapsed().as_secs() < 3
        && procs
            .iter()
            .any(|(role, pid)| role.starts_with("socat") && !sysinfo::descendants(*pid).is_empty())
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut cpu = BTreeMap::new();
    let key = path.key_bulk_pids();
    let (mut key_cpu, mut path_cpu) = (0.0, 0.0);
    let mut seen_key = Vec::new();
    for ((role, pid), b) in procs.iter().zip(before) {
        let d = (tree_cpu_seconds(*pid) - b).max(0.0);
        *cpu.entry(role.clone()).or_insert(0.0) += d;
        if role != "iperf3-server" {
            path_cpu += d;
        }
        if key.contains(pid) && !seen_key.contains(pid) {
            key_cpu += d;
            seen_key.push(*pid);
        }
    }
    cpu.insert(
        "box".into(),
        box_after.busy.saturating_sub(box_before.busy) as f64 / ticks,
    );
    let key_rss = key.iter().filter_map(|p| rss(*p).ok()).sum();
    Ok(BulkSample {
        iperf,
        wall,
        cpu,
        key_cpu,
        path_cpu,
        key_rss,
    })
}

/// `bulk1`, `bulk8` or `bulk64`.
pub async fn run(ctx: &Ctx, streams: usize) -> ScenarioReport {
    let id = format!("bulk{streams}");
    let mut s = if streams == 1 {
        ScenarioReport::new(
            &id,
            "Bulk throughput, 1 stream (iperf3)",
            STUNNEL,
            &[
                ("gbps", "throughput", "Gbit/s", true),
                ("cpu_key_per_gb", "router/relay CPU per GB", "s/GB", false),
                ("cpu_path_per_gb", "whole path CPU per GB", "s/GB", false),
                ("cpu_box_per_gb", "machine CPU per GB", "s/GB", false),
                ("rss_key_mib", "router/relay RSS", "MiB", false),
            ],
        )
    } else {
        ScenarioReport::new(
            &id,
            &format!("Bulk throughput, {streams} concurrent streams (iperf3 -P {streams})"),
            STUNNEL,
            &[
                ("gbps", "aggregate", "Gbit/s", true),
                ("min_stream_gbps", "slowest stream", "Gbit/s", true),
                ("max_stream_gbps", "fastest stream", "Gbit/s", true),
                ("min_fair_share", "slowest / fair share", "ratio", true),
                ("zero_intervals", "stream-seconds at zero", "count", false),
            ],
        )
    };
    let seconds = if streams == 1 {
        ctx.settings.bulk_seconds
    } else {
        ctx.settings.multi_seconds
    };
    let paths = if streams == 1 {
        ctx.main_paths()
    } else {
        ctx.multi_paths()
    };
    let mut shares: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..ctx.settings.rounds {
        for path in &paths {
            ctx.step(&format!("{id}: {} (round {})", path.name, round + 1));
            match measure(ctx, path, streams, seconds).await {
                Ok(m) => {
                    let gbps = m.iperf.bits_per_second / 1e9;
                    s.record(&path.name, "gbps", gbps);
                    if streams == 1 {
                        if !path.bulk_procs.is_empty() && m.gb() > 0.0 {
                            s.record(&path.name, "cpu_key_per_gb", m.key_cpu / m.gb());
                            s.record(&path.name, "cpu_path_per_gb", m.path_cpu / m.gb());
                            s.record(&path.name, "rss_key_mib", m.key_rss as f64 / 1048576.0);
                        }
                        if m.gb() > 0.0 {
                            s.record(&path.name, "cpu_box_per_gb", m.cpu["box"] / m.gb());
                        }
                        for (role, secs) in &m.cpu {
                            s.record(&path.name, &format!("cores:{role}"), secs / m.wall);
                        }
                        shares.insert(path.name.clone(), m.shares());
                    } else {
                        let min = m
                            .iperf
                            .streams_bps
                            .iter()
                            .copied()
                            .fold(f64::INFINITY, f64::min);
                        let max = m.iperf.streams_bps.iter().copied().fold(0.0, f64::max);
                        let fair = m.iperf.bits_per_second / streams as f64;
                        s.record(&path.name, "min_stream_gbps", min / 1e9);
                        s.record(&path.name, "max_stream_gbps", max / 1e9);
                        if fair > 0.0 {
                            s.record(&path.name, "min_fair_share", min / fair);
                        }
                        s.record(&path.name, "zero_intervals", m.iperf.zero_intervals as f64);
                        s.record(&path.name, "streams_seen", m.iperf.streams_bps.len() as f64);
                        for (role, secs) in &m.cpu {
                            s.record(&path.name, &format!("cores:{role}"), secs / m.wall);
                        }
                        let mut sorted = m.iperf.streams_bps.clone();
                        sorted.sort_by(f64::total_cmp);
                        s.series(
                            &path.name,
                            "streams_gbps",
                            sorted
                                .iter()
                                .enumerate()
                                .map(|(i, b)| [i as f64 + 1.0, b / 1e9])
                                .collect(),
                        );
                    }
                }
                Err(e) => ctx.failed(&mut s, &path.name, round, &e),
            }
            ctx.tick();
        }
    }
    if streams == 1 {
        for (path, sh) in shares {
            s.notes.push(format!(
                "{path}: cores busy during the last round (CPU s / wall s): {sh}"
            ));
        }
        s.notes.push(
            "router/relay CPU: the weft-router process on Weft paths (both routers on \
             weft-2router); every relay process on a baseline (both stunnel processes, the socat processes and their forked \
             children). Whole path adds the two weft tunnel endpoints on Weft paths. \
             Machine CPU counts every process, iperf3 included."
                .into(),
        );
    } else {
        s.notes.push(format!(
            "fair share = aggregate / {streams}; a stream-second at zero is a one-second \
             receiver-side interval of one stream that moved no byte."
        ));
    }
    s.finish();
    s
}
