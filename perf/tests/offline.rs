//! Light checks of the suite that start no network: the CLI's argument handling, and
//! the table, targets and plots rendered from a synthetic report.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::process::Command;

use weft_perf::paths::{SOCAT1, STUNNEL, WEFT, WEFT_2ROUTER};
use weft_perf::report::{Report, ScenarioReport, render_table};
use weft_perf::sysinfo::Machine;

#[test]
fn unknown_scenario_is_refused_before_anything_starts() {
    let out = Command::new(env!("CARGO_BIN_EXE_weft-perf"))
        .args(["run", "--scenario", "nonsense", "--out"])
        .arg(std::env::temp_dir().join("weft-perf-never-written"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown scenario nonsense"), "{err}");
}

fn synthetic() -> Report {
    let mut bulk = ScenarioReport::new(
        "bulk1",
        "Bulk throughput, 1 stream",
        STUNNEL,
        &[
            ("gbps", "throughput", "Gbit/s", true),
            ("cpu_key_per_gb", "router/relay CPU per GB", "s/GB", false),
        ],
    );
    for (p, g, c) in [(STUNNEL, 4.0, 3.8), (WEFT, 7.0, 2.0)] {
        bulk.record(p, "gbps", g);
        bulk.record(p, "gbps", g * 1.1);
        bulk.record(p, "cpu_key_per_gb", c);
        bulk.record(p, "cores:router", 0.9);
    }
    bulk.finish();
    let mut lat = ScenarioReport::new(
        "latency",
        "Latency",
        STUNNEL,
        &[("p50", "p50", "µs", false)],
    );
    for (p, v) in [(STUNNEL, 70.0), (WEFT, 60.0)] {
        lat.record(p, "p50", v);
        lat.series(
            p,
            "latency_us",
            vec![[0.0, v / 2.0], [0.5, v], [0.99, v * 3.0], [1.0, v * 9.0]],
        );
    }
    lat.finish();
    let mut multi = ScenarioReport::new(
        "bulk64",
        "64 streams",
        STUNNEL,
        &[("gbps", "aggregate", "Gbit/s", true)],
    );
    for p in [STUNNEL, WEFT] {
        multi.record(p, "gbps", 5.0);
        multi.record(p, "min_fair_share", 0.8);
        multi.record(p, "zero_intervals", 0.0);
        multi.series(
            p,
            "streams_gbps",
            (1..=64)
                .map(|i| [f64::from(i), 0.05 + f64::from(i) * 0.001])
                .collect(),
        );
    }
    multi.finish();
    let mut setup =
        ScenarioReport::new("setup", "Setup", SOCAT1, &[("rate", "setups", "/s", true)]);
    setup.record(SOCAT1, "rate", 2000.0);
    setup.record(WEFT, "rate", 900.0);
    setup.finish();
    let mut r = Report {
        suite: "weft-perf test".into(),
        started: "2025-01-01T00:00:00Z".into(),
        elapsed_s: 1.0,
        quick: true,
        settings: BTreeMap::new(),
        machine: Machine::detect(),
        paths: Vec::new(),
        notes: vec!["synthetic".into()],
        scenarios: vec![bulk, lat, multi, setup],
        targets: Vec::new(),
    };
    r.targets = weft_perf::targets::judge(&r);
    r
}

#[test]
fn table_targets_and_plots_from_a_synthetic_report() {
    let r = synthetic();
    let table = render_table(&r);
    assert!(
        table.contains("| weft | 7.35 (1.75×) [7.00–7.70] |"),
        "{table}"
    );
    let met = |goal: &str| {
        r.targets
            .iter()
            .find(|t| t.goal.starts_with(goal) && t.path == WEFT)
            .and_then(|t| t.met)
    };
    assert_eq!(met("1-stream throughput"), Some(true));
    assert_eq!(met("router CPU per GB"), Some(true));
    assert_eq!(met("ping-pong p50"), Some(true));
    assert_eq!(met("64 streams"), Some(true));
    assert_eq!(met("setup rate"), Some(false));

    let dir = tempfile::tempdir().unwrap();
    let files = weft_perf::plot::write_all(&r, dir.path()).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["throughput.svg", "latency.svg", "streams.svg"]);
    for f in files {
        let svg = std::fs::read_to_string(f).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains(WEFT));
    }
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["scenarios"][0]["rows"][1]["values"]["gbps"]["ratio"],
        1.75
    );
}

/// A report of one bulk1 scenario with the one- and two-router paths at these rates.
fn two_router_report(one: f64, two: f64) -> Report {
    let mut bulk = ScenarioReport::new(
        "bulk1",
        "Bulk throughput, 1 stream",
        STUNNEL,
        &[("gbps", "throughput", "Gbit/s", true)],
    );
    for (p, g) in [(STUNNEL, 4.0), (WEFT, one), (WEFT_2ROUTER, two)] {
        bulk.record(p, "gbps", g);
    }
    bulk.finish();
    Report {
        suite: "weft-perf test".into(),
        started: "2025-01-01T00:00:00Z".into(),
        elapsed_s: 1.0,
        quick: true,
        settings: BTreeMap::new(),
        machine: Machine::detect(),
        paths: Vec::new(),
        notes: Vec::new(),
        scenarios: vec![bulk],
        targets: Vec::new(),
    }
}

#[test]
fn two_router_throughput_is_judged_against_the_one_router_path() {
    for (one, two, measured, met) in [
        (4.0, 3.0, "3.00 vs 4.00 Gbit/s = 0.75×", false),
        (4.0, 3.6, "3.60 vs 4.00 Gbit/s = 0.90×", true),
    ] {
        let r = two_router_report(one, two);
        let t = weft_perf::targets::judge(&r)
            .into_iter()
            .find(|t| t.goal.starts_with("two-router throughput"))
            .unwrap();
        assert_eq!(t.path, WEFT_2ROUTER);
        assert_eq!(t.measured, measured);
        assert_eq!(t.met, Some(met));
        let table = render_table(&r);
        assert!(
            table.contains(&format!("| {WEFT_2ROUTER} | {two:.2}")),
            "{table}"
        );
    }
}
