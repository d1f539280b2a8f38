//! Ping-pong latency with 64-byte messages on one connection (the suite's own client
//! and echo server); round-trip times in an HDR histogram.

use hdrhistogram::Histogram;

use super::Ctx;
use crate::load::{histogram, ping_pong};
use crate::paths::{NetPath, STUNNEL};
use crate::report::ScenarioReport;

/// Message size.
pub const MESSAGE: usize = 64;

/// Quantiles drawn in the latency plot.
const CURVE: &[f64] = &[
    0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

/// Records one round's percentiles (µs) of `h` for `path`.
pub fn record(s: &mut ScenarioReport, path: &str, h: &Histogram<u64>) {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    s.record(path, "p50", us(0.5));
    s.record(path, "p99", us(0.99));
    s.record(path, "p999", us(0.999));
    s.record(path, "mean", h.mean() / 1e3);
    s.record(path, "round_trips", h.len() as f64);
}

/// The percentile curve of `h` for the plot: (quantile, µs).
pub fn curve(h: &Histogram<u64>) -> Vec<[f64; 2]> {
    CURVE
        .iter()
        .map(|q| [*q, h.value_at_quantile(*q) as f64 / 1e3])
        .collect()
}

/// `latency`.
pub async fn run(ctx: &Ctx) -> ScenarioReport {
    let mut s = ScenarioReport::new(
        "latency",
        "Ping-pong latency, 64-byte messages, round trip",
        STUNNEL,
        &[
            ("p50", "p50", "µs", false),
            ("p99", "p99", "µs", false),
            ("p999", "p99.9", "µs", false),
            ("mean", "mean", "µs", false),
        ],
    );
    let paths: Vec<NetPath> = ctx.main_paths();
    let mut merged: Vec<Histogram<u64>> = paths.iter().filter_map(|_| histogram().ok()).collect();
    for round in 0..ctx.settings.rounds {
        for (i, path) in paths.iter().enumerate() {
            ctx.step(&format!("latency: {} (round {})", path.name, round + 1));
            match ping_pong(path.echo, MESSAGE, ctx.settings.latency).await {
                Ok(h) => {
                    record(&mut s, &path.name, &h);
                    if let Some(m) = merged.get_mut(i) {
                        let _ = m.add(&h);
                    }
                }
                Err(e) => ctx.failed(&mut s, &path.name, round, &e),
            }
            ctx.tick();
        }
    }
    for (path, h) in paths.iter().zip(&merged) {
        if !h.is_empty() {
            s.series(&path.name, "latency_us", curve(h));
        }
    }
    s.notes.push(
        "round-trip times (not half-RTT); one connection, one message in flight; \
         client and echo server are the suite's own (tokio, TCP_NODELAY)."
            .into(),
    );
    s.finish();
    s
}
