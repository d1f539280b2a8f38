//! The scenarios. Each runs its measurement on every path it concerns, path after
//! path within a round and round after round, so slow drifts of a shared machine
//! spread over all paths alike; each returns a [`ScenarioReport`] whose figures
//! carry their ratio to the matching baseline of the same run.

use std::time::Duration;

use indicatif::ProgressBar;

use crate::paths::{NetPath, WEFT_EPOLL};
use crate::process::Binaries;
use crate::report::ScenarioReport;

pub mod bulk;
pub mod idle;
pub mod io;
pub mod latency;
pub mod setup;
pub mod shards;

/// Every scenario, in the order they run (idle circuits first, on routers that have
/// not carried traffic yet, so freed heap does not hide the growth).
pub const ALL: &[&str] = &[
    "idle", "bulk1", "bulk8", "bulk64", "latency", "setup", "io", "shards",
];

/// What a run measures and for how long.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Seconds of each 1-stream iperf3 run.
    pub bulk_seconds: u64,
    /// Seconds of each 8/64-stream iperf3 run.
    pub multi_seconds: u64,
    /// Ping-pong time per path and round.
    pub latency: Duration,
    /// Setup-rate time per path and round.
    pub setup: Duration,
    /// Concurrent connect loops of the setup-rate scenario.
    pub setup_concurrency: usize,
    /// Rounds over the paths.
    pub rounds: usize,
    /// Idle circuits to hold open.
    pub idle_circuits: usize,
    /// Shard counts for the scaling scenario.
    pub shard_counts: Vec<usize>,
    /// `--quick`.
    pub quick: bool,
}

impl Settings {
    /// The settings for `--duration` seconds per measurement (full run) or `--quick`.
    pub fn new(
        duration: Option<u64>,
        quick: bool,
        rounds: Option<usize>,
        idle: Option<usize>,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        if quick {
            let d = duration.unwrap_or(1);
            Self {
                bulk_seconds: d,
                multi_seconds: d.max(2),
                latency: Duration::from_secs(d),
                setup: Duration::from_secs(d),
                setup_concurrency: 4,
                rounds: rounds.unwrap_or(1),
                idle_circuits: idle.unwrap_or(1_000),
                shard_counts: vec![1, 2.min(cores.max(1))],
                quick,
            }
        } else {
            let d = duration.unwrap_or(8);
            Self {
                bulk_seconds: d,
                multi_seconds: d,
                latency: Duration::from_secs(d.div_ceil(2).max(1)),
                setup: Duration::from_secs(d.div_ceil(2).max(1)),
                setup_concurrency: 4,
                rounds: rounds.unwrap_or(3),
                idle_circuits: idle.unwrap_or(10_000),
                shard_counts: (1..=cores.clamp(1, 8)).collect(),
                quick,
            }
        }
    }
}

/// Everything a scenario needs.
#[derive(Debug)]
pub struct Ctx {
    /// The binaries.
    pub bins: Binaries,
    /// Every path, baselines first.
    pub paths: Vec<NetPath>,
    /// Timings.
    pub settings: Settings,
    /// The iperf3 server's process id (its CPU share is reported).
    pub iperf3_pid: u32,
    /// The echo server's process id.
    pub echo_pid: u32,
    /// The progress bar (one tick per measurement).
    pub progress: ProgressBar,
    /// The soft open-files limit in force.
    pub nofile: u64,
}

impl Ctx {
    /// The path named `name`.
    pub fn path(&self, name: &str) -> Option<&NetPath> {
        self.paths.iter().find(|p| p.name == name)
    }

    /// The paths of the common scenarios: every one but the epoll-router path (which
    /// only the io scenario uses).
    pub fn main_paths(&self) -> Vec<NetPath> {
        self.paths
            .iter()
            .filter(|p| p.name != WEFT_EPOLL)
            .cloned()
            .collect()
    }

    /// The paths of the 8- and 64-stream scenarios: all main paths, or in a quick run
    /// only direct, stunnel and the Weft paths (to stay well under two minutes).
    pub fn multi_paths(&self) -> Vec<NetPath> {
        let mut p = self.main_paths();
        if self.settings.quick {
            p.retain(|p| !p.name.starts_with("socat"));
        }
        p
    }

    /// Shows `what` on the progress bar.
    pub fn step(&self, what: &str) {
        self.progress.set_message(what.to_owned());
    }

    /// One measurement done.
    pub fn tick(&self) {
        self.progress.inc(1);
    }

    /// Records a measurement's failure in the scenario's notes.
    pub fn failed(&self, s: &mut ScenarioReport, path: &str, round: usize, e: &anyhow::Error) {
        let msg = format!("{path}, round {}: failed: {e:#}", round + 1);
        self.progress.println(format!("  {}: {msg}", s.id));
        s.notes.push(msg);
    }
}

/// How many measurements scenario `id` makes (for the progress bar).
pub fn steps(id: &str, ctx: &Ctx) -> u64 {
    let rounds = ctx.settings.rounds as u64;
    let main = ctx.main_paths().len() as u64;
    match id {
        "bulk1" | "latency" | "setup" => rounds * main,
        "bulk8" | "bulk64" => rounds * ctx.multi_paths().len() as u64,
        "idle" => 2,
        "io" => rounds * 2 * 3,
        "shards" => ctx.settings.shard_counts.len() as u64,
        _ => 0,
    }
}
