//! The Grafana dashboard shipped in `dist/grafana/weft.json` names only series that
//! Weft's processes export: every metric in every panel's query is looked for in what
//! a real controller and a real router (with a link up) serve on `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_testkit::traffic::scrape;
use weft_testkit::{Ctl, Router, free_port, init_logs, wait_links};

/// The sample names (`name` of `name{labels} value` or `name value`) of a scrape.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The metric names a PromQL expression reads: identifiers starting with `weft_` or
/// `process_` (the dashboard's queries use no others).
fn metrics_of(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            current.push(c);
            continue;
        }
        if (current.starts_with("weft_") || current.starts_with("process_")) && c != '=' {
            names.push(current.clone());
        }
        current.clear();
    }
    names
}

fn exprs(panels: &Value, out: &mut Vec<String>) {
    for p in panels.as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().unwrap().to_owned());
        }
        if p["panels"].is_array() {
            exprs(&p["panels"], out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_of_the_dashboard_is_exported() {
    init_logs();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/grafana/weft.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    exprs(&dashboard["panels"], &mut queries);
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        queries.push(v["definition"].as_str().unwrap().to_owned());
    }
    let wanted: BTreeSet<String> = queries.iter().flat_map(|q| metrics_of(q)).collect();
    assert!(wanted.len() > 20, "{wanted:?}");

    let controller = Ctl::start_with("metrics.listen = \"127.0.0.1:0\"");
    let admin = controller.admin().await;
    let control = controller.control_addr();
    let metrics_port = free_port();
    let listen = format!(
        "metrics.listen = \"127.0.0.1:{metrics_port}\"\n[link]\nlisten = \"127.0.0.1:{}\"\ngroups = [\"g\"]\n",
        free_port()
    );
    let _a = Router::start_configured(&admin, "dash-a", &control, &listen, &[]).await;
    let _b = Router::start_configured(
        &admin,
        "dash-b",
        &control,
        "[link]\ndial_groups = [\"g\"]\n",
        &[],
    )
    .await;
    wait_links(&admin, "the link up", |l| {
        l.len() == 1 && l[0]["state"] == "up"
    })
    .await;
    // Both routers are connected and the link has measured a round trip.
    let deadline = Instant::now() + Duration::from_secs(30);
    let exported = loop {
        let mut names = sample_names(&controller.metrics());
        let router = scrape(metrics_port).await;
        names.extend(sample_names(&router));
        if wanted.iter().all(|w| names.contains(w)) || Instant::now() > deadline {
            break names;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let missing: Vec<&String> = wanted.iter().filter(|w| !exported.contains(*w)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard reads series no process exports: {missing:?}"
    );
}

#[test]
fn metric_names_are_read_out_of_queries() {
    assert_eq!(
        metrics_of(
            "histogram_quantile(0.99, sum by (le) (rate(weft_a_bucket{x=~\"y\"}[5m]))) * process_b"
        ),
        ["weft_a_bucket", "process_b"]
    );
    assert_eq!(
        sample_names("# HELP x y\nweft_a{s=\"0\"} 1\nweft_b 2\n"),
        BTreeSet::from(["weft_a".to_owned(), "weft_b".to_owned()])
    );
}
