//! The performance targets, judged on this run's figures (benchmark figures,
//! never assertions), each with what limits it when it is not met.

use crate::paths::{SOCAT1, STUNNEL, WEFT, WEFT_2ROUTER, WEFT_E2E};
use crate::report::{Report, ScenarioReport, Target};

fn target(goal: &str, path: &str, measured: String, met: Option<bool>, note: String) -> Target {
    Target {
        goal: goal.into(),
        path: path.into(),
        measured,
        met,
        note,
    }
}

fn cores(s: &ScenarioReport, path: &str) -> String {
    let Some(row) = s.row(path) else {
        return String::new();
    };
    let mut parts: Vec<(String, f64)> = row
        .values
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("cores:").map(|r| (r.to_owned(), v.median)))
        .collect();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    parts
        .iter()
        .map(|(r, v)| format!("{r} {v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Judges every target that this run measured.
pub fn judge(r: &Report) -> Vec<Target> {
    let mut out = Vec::new();
    let ncores = r.machine.cores;
    let weft_paths = [WEFT, WEFT_E2E];
    if let Some(s) = r.scenario("bulk1") {
        for p in weft_paths {
            let (Some(w), Some(b)) = (s.median(p, "gbps"), s.median(STUNNEL, "gbps")) else {
                continue;
            };
            let ratio = w / b;
            out.push(target(
                "1-stream throughput ≥ 1.5× stunnel pair",
                p,
                format!("{w:.2} vs {b:.2} Gbit/s = {ratio:.2}×"),
                Some(ratio >= 1.5),
                format!("cores busy (of {ncores}): {}", cores(s, p)),
            ));
        }
        if let (Some(two), Some(one)) = (s.median(WEFT_2ROUTER, "gbps"), s.median(WEFT, "gbps")) {
            let ratio = two / one;
            out.push(target(
                "two-router throughput ≥ 0.8× one-router",
                WEFT_2ROUTER,
                format!("{two:.2} vs {one:.2} Gbit/s = {ratio:.2}×"),
                Some(ratio >= 0.8),
                format!(
                    "router CPU per GB {:.2} (both routers) vs {:.2} s/GB; cores busy (of {ncores}): {}",
                    s.median(WEFT_2ROUTER, "cpu_key_per_gb").unwrap_or(f64::NAN),
                    s.median(WEFT, "cpu_key_per_gb").unwrap_or(f64::NAN),
                    cores(s, WEFT_2ROUTER)
                ),
            ));
        }
        for p in weft_paths {
            let (Some(w), Some(b)) = (
                s.median(p, "cpu_key_per_gb"),
                s.median(STUNNEL, "cpu_key_per_gb"),
            ) else {
                continue;
            };
            let ratio = w / b;
            let path_cpu = s.median(p, "cpu_path_per_gb").unwrap_or(f64::NAN);
            out.push(target(
                "router CPU per GB ≤ 0.67× stunnel pair",
                p,
                format!("{w:.2} vs {b:.2} s/GB = {ratio:.2}×"),
                Some(ratio <= 0.67),
                format!(
                    "whole Weft path (router + both tunnel endpoints) {path_cpu:.2} s/GB = {:.2}× stunnel",
                    path_cpu / b
                ),
            ));
        }
    }
    if let Some(s) = r.scenario("latency") {
        for p in weft_paths {
            let (Some(w), Some(b)) = (s.median(p, "p50"), s.median(STUNNEL, "p50")) else {
                continue;
            };
            out.push(target(
                "ping-pong p50 ≤ stunnel pair's",
                p,
                format!("{w:.1} vs {b:.1} µs = {:.2}×", w / b),
                Some(w <= b),
                format!(
                    "p99 {:.1} vs {:.1} µs",
                    s.median(p, "p99").unwrap_or(f64::NAN),
                    s.median(STUNNEL, "p99").unwrap_or(f64::NAN)
                ),
            ));
        }
    }
    if let Some(s) = r.scenario("bulk64") {
        for p in [WEFT, WEFT_E2E, WEFT_2ROUTER] {
            let Some(row) = s.row(p) else { continue };
            let (Some(share), Some(zero)) = (
                row.values.get("min_fair_share"),
                row.values.get("zero_intervals"),
            ) else {
                continue;
            };
            let worst_share = share.samples.iter().copied().fold(f64::INFINITY, f64::min);
            let zeros: f64 = zero.samples.iter().sum();
            out.push(target(
                "64 streams: none below ½ fair share, no zero second",
                p,
                format!("slowest stream {worst_share:.2}× fair share (worst round), {zeros:.0} stream-seconds at zero"),
                Some(worst_share >= 0.5 && zeros == 0.0),
                format!(
                    "aggregate {:.2} Gbit/s; stunnel slowest {:.2}× fair share; cores busy (of {ncores}): {}",
                    s.median(p, "gbps").unwrap_or(f64::NAN),
                    s.median(STUNNEL, "min_fair_share").unwrap_or(f64::NAN),
                    cores(s, p)
                ),
            ));
        }
    }
    if let Some(s) = r.scenario("setup") {
        for p in weft_paths {
            let (Some(w), Some(b)) = (s.median(p, "rate"), s.median(SOCAT1, "rate")) else {
                continue;
            };
            out.push(target(
                "setup rate ≥ 0.5× socat connect+echo",
                p,
                format!("{w:.0} vs {b:.0} /s = {:.2}×", w / b),
                Some(w / b >= 0.5),
                format!(
                    "setup p50 {:.0} µs (socat {:.0} µs)",
                    s.median(p, "p50").unwrap_or(f64::NAN),
                    s.median(SOCAT1, "p50").unwrap_or(f64::NAN)
                ),
            ));
        }
    }
    if let Some(s) = r.scenario("idle")
        && let Some(w) = s.median(WEFT, "kib_per_circuit")
    {
        out.push(target(
            "≤ 16 KiB router memory per idle circuit",
            WEFT,
            format!(
                "{w:.1} KiB at {:.0} circuits (stunnel pair {:.1} KiB per connection)",
                s.median(WEFT, "circuits").unwrap_or(f64::NAN),
                s.median(STUNNEL, "kib_per_circuit").unwrap_or(f64::NAN)
            ),
            Some(w <= 16.0),
            format!(
                "tunnel endpoints per circuit: dial {:.1} KiB, host {:.1} KiB",
                s.median(WEFT, "kib_per_circuit:tunnel-dial")
                    .unwrap_or(f64::NAN),
                s.median(WEFT, "kib_per_circuit:tunnel-host")
                    .unwrap_or(f64::NAN)
            ),
        ));
    }
    out
}
