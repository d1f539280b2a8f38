//! `weft-perf run`: boot everything, run the scenarios, write the results.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::baselines::{Baselines, Targets};
use crate::load::ping_pong;
use crate::net::WeftNet;
use crate::process::Binaries;
use crate::report::{PathInfo, Report, render_table};
use crate::scenarios::{self, Ctx, Settings};
use crate::sysinfo::Machine;

/// Options of `weft-perf run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Scenarios to run (default: all): idle, bulk1, bulk8, bulk64, latency, setup,
    /// io, shards.
    #[arg(long = "scenario", value_name = "NAME")]
    pub scenarios: Vec<String>,
    /// Seconds per throughput measurement (default 8; 1 with --quick); latency and
    /// setup take half of it in a full run.
    #[arg(long, value_name = "S")]
    pub duration: Option<u64>,
    /// Rounds over the paths (default 3; 1 with --quick).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Idle circuits to hold (default 10000; 1000 with --quick).
    #[arg(long)]
    pub idle_circuits: Option<usize>,
    /// Where to write results.json, results.md and the plots.
    #[arg(long, default_value = "weft-perf-results")]
    pub out: PathBuf,
    /// A short smoke run (well under 2 minutes): 1 round, short measurements, fewer
    /// idle circuits. No pass/fail on speed.
    #[arg(long)]
    pub quick: bool,
}

/// Raises the soft open-files limit to the hard one; returns the soft limit in force.
fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024)
}

/// Waits until one 64-byte round trip works through every path.
async fn probe_paths(paths: &[crate::paths::NetPath]) -> Result<()> {
    for p in paths {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match ping_pong(p.echo, 64, Duration::from_millis(1)).await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    return Err(e).with_context(|| format!("path {} does not echo", p.name));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}

/// Runs the suite; returns the report (already written to `args.out`).
pub async fn run(args: RunArgs) -> Result<Report> {
    let started_at = Instant::now();
    let started = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    for s in &args.scenarios {
        if !scenarios::ALL.contains(&s.as_str()) {
            bail!("unknown scenario {s}; known: {}", scenarios::ALL.join(", "));
        }
    }
    let selected: Vec<&str> = scenarios::ALL
        .iter()
        .copied()
        .filter(|s| args.scenarios.is_empty() || args.scenarios.iter().any(|x| x == s))
        .collect();
    let bins = Binaries::locate()?;
    let nofile = raise_nofile();
    let machine = Machine::detect();
    let settings = Settings::new(args.duration, args.quick, args.rounds, args.idle_circuits);
    eprintln!("weft-perf: {}", machine.describe());
    eprintln!("weft-perf: scenarios {}", selected.join(", "));

    let tmp = tempfile::Builder::new()
        .prefix("weft-perf-")
        .tempdir()
        .context("creating a temporary directory")?;
    eprintln!(
        "weft-perf: booting targets, baselines and the Weft network in {}",
        tmp.path().display()
    );
    let mut targets = Targets::start(&bins, tmp.path()).await?;
    let mut baselines = Baselines::start(&bins, tmp.path(), targets.ports).await?;
    let mut net = WeftNet::boot(&bins, tmp.path(), targets.ports, selected.contains(&"io"))
        .await
        .context("booting the Weft network")?;
    let mut notes = Vec::new();
    match &net.uring_unavailable {
        Some(why) => notes.push(format!(
            "io_uring unavailable, the router runs on epoll: {why}"
        )),
        None => notes.push("the main router runs on io_uring".into()),
    }
    let mut paths = baselines.paths.clone();
    paths.extend(net.paths.iter().cloned());
    probe_paths(&paths).await?;
    eprintln!(
        "weft-perf: up in {:.1} s: {}",
        started_at.elapsed().as_secs_f64(),
        paths
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let progress = ProgressBar::new(0);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let ctx = Ctx {
        bins: bins.clone(),
        paths: paths.clone(),
        settings: settings.clone(),
        iperf3_pid: targets.iperf3_pid(),
        echo_pid: targets.echo_pid(),
        progress: progress.clone(),
        nofile,
    };
    progress.set_length(selected.iter().map(|s| scenarios::steps(s, &ctx)).sum());

    let mut results = Vec::new();
    for id in &selected {
        let s = match *id {
            "idle" => scenarios::idle::run(&ctx).await,
            "bulk1" => scenarios::bulk::run(&ctx, 1).await,
            "bulk8" => scenarios::bulk::run(&ctx, 8).await,
            "bulk64" => scenarios::bulk::run(&ctx, 64).await,
            "latency" => scenarios::latency::run(&ctx).await,
            "setup" => scenarios::setup::run(&ctx).await,
            "io" => scenarios::io::run(&ctx, net.uring_unavailable.as_deref()).await,
            "shards" => scenarios::shards::run(&ctx, &net, targets.ports).await,
            _ => continue,
        };
        results.push(s);
        if let Err(e) = net
            .check_alive()
            .and_then(|()| baselines.check_alive())
            .and_then(|()| targets.check_alive())
        {
            notes.push(format!(
                "a process died after scenario {id}; the run stops: {e:#}"
            ));
            break;
        }
    }
    progress.finish_and_clear();

    let mut settings_map = BTreeMap::new();
    settings_map.insert("bulk_seconds".into(), settings.bulk_seconds as f64);
    settings_map.insert("multi_seconds".into(), settings.multi_seconds as f64);
    settings_map.insert("latency_seconds".into(), settings.latency.as_secs_f64());
    settings_map.insert("setup_seconds".into(), settings.setup.as_secs_f64());
    settings_map.insert(
        "setup_concurrency".into(),
        settings.setup_concurrency as f64,
    );
    settings_map.insert("rounds".into(), settings.rounds as f64);
    settings_map.insert("idle_circuits".into(), settings.idle_circuits as f64);
    settings_map.insert("nofile".into(), nofile as f64);
    let mut report = Report {
        suite: format!("weft-perf {}", env!("CARGO_PKG_VERSION")),
        started,
        elapsed_s: 0.0,
        quick: settings.quick,
        settings: settings_map,
        machine,
        paths: paths
            .iter()
            .map(|p| PathInfo {
                name: p.name.clone(),
                description: p.description.clone(),
                baseline: p.baseline,
            })
            .collect(),
        notes,
        scenarios: results,
        targets: Vec::new(),
    };
    report.targets = crate::targets::judge(&report);
    report.elapsed_s = started_at.elapsed().as_secs_f64();
    // Stop every process before writing (the drop order kills tunnels, routers, the
    // controller, relays and targets).
    drop(net);
    drop(baselines);
    drop(targets);

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let json = serde_json::to_string_pretty(&report).context("serializing the results")?;
    let json_file = args.out.join("results.json");
    std::fs::write(&json_file, json).with_context(|| format!("writing {}", json_file.display()))?;
    let table = render_table(&report);
    std::fs::write(args.out.join("results.md"), &table).context("writing results.md")?;
    let plots = crate::plot::write_all(&report, &args.out)?;
    println!("{table}");
    println!(
        "weft-perf: {:.0} s; wrote {}, results.md{}",
        report.elapsed_s,
        json_file.display(),
        plots
            .iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()))
            .map(|n| format!(", {n}"))
            .collect::<String>()
    );
    Ok(report)
}
