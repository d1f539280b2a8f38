//! The allowed dependency edges between Weft's crates (README, "Layout"), checked over
//! `cargo metadata`'s resolved graph, so an arrow that runs the wrong way fails CI:
//!
//! - `weft-wire`, `weft-tls` and `weft-ops` depend on no other Weft crate;
//!   `weft-identity` only on `weft-tls`;
//! - the router never depends on the SDK or the controller, and does not link
//!   libsodium; the controller never depends on the router or the SDK, and links
//!   neither the io_uring runtime nor libsodium;
//! - nothing depends on the CLI;
//! - a production crate has the test kit only as a dev-dependency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// The resolved graph: package name → names of its normal and build dependencies.
struct Graph {
    normal: BTreeMap<String, BTreeSet<String>>,
    dev: BTreeMap<String, BTreeSet<String>>,
}

fn graph() -> Graph {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut normal: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut dev: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let from = names[node["id"].as_str().unwrap()].to_owned();
        normal.entry(from.clone()).or_default();
        for dep in node["deps"].as_array().unwrap() {
            let to = names[dep["pkg"].as_str().unwrap()].to_owned();
            for kind in dep["dep_kinds"].as_array().unwrap() {
                match kind["kind"].as_str() {
                    Some("dev") => dev.entry(from.clone()).or_default().insert(to.clone()),
                    _ => normal.entry(from.clone()).or_default().insert(to.clone()),
                };
            }
        }
    }
    Graph { normal, dev }
}

impl Graph {
    /// Every package `name` links (normal and build dependencies, transitively).
    fn links(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![name.to_owned()];
        while let Some(next) = todo.pop() {
            for dep in self.normal.get(&next).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        seen
    }

    /// The Weft crates `name` links.
    fn weft_links(&self, name: &str) -> BTreeSet<String> {
        self.links(name)
            .into_iter()
            .filter(|d| d.starts_with("weft-"))
            .collect()
    }
}

const PRODUCTION: &[&str] = &[
    "weft-wire",
    "weft-tls",
    "weft-identity",
    "weft-ops",
    "weft-router",
    "weft-controller",
    "weft-sdk",
    "weft-cli",
];

#[test]
fn the_leaf_crates_depend_on_no_other_weft_crate() {
    let g = graph();
    assert_eq!(g.weft_links("weft-wire"), BTreeSet::new());
    assert_eq!(g.weft_links("weft-tls"), BTreeSet::new());
    assert_eq!(g.weft_links("weft-ops"), BTreeSet::new());
    assert_eq!(
        g.weft_links("weft-identity"),
        BTreeSet::from(["weft-tls".to_owned()])
    );
}

#[test]
fn the_router_links_neither_the_sdk_nor_the_controller_nor_libsodium() {
    let g = graph();
    let links = g.links("weft-router");
    for banned in [
        "weft-sdk",
        "weft-controller",
        "weft-cli",
        "libsodium-sys-stable",
    ] {
        assert!(!links.contains(banned), "weft-router links {banned}");
    }
}

#[test]
fn the_controller_links_neither_the_router_nor_the_sdk() {
    let g = graph();
    let links = g.links("weft-controller");
    for banned in [
        "weft-router",
        "weft-sdk",
        "weft-cli",
        "tokio-uring",
        "libsodium-sys-stable",
    ] {
        assert!(!links.contains(banned), "weft-controller links {banned}");
    }
}

#[test]
fn nothing_depends_on_the_cli() {
    let g = graph();
    for (from, deps) in g.normal.iter().chain(g.dev.iter()) {
        assert!(
            !deps.contains("weft-cli"),
            "{from} depends on weft-cli; the CLI only assembles the other crates"
        );
    }
}

#[test]
fn the_test_kit_is_only_a_dev_dependency_of_production_crates() {
    let g = graph();
    for name in PRODUCTION {
        assert!(
            !g.links(name).contains("weft-testkit"),
            "{name} links weft-testkit outside its tests"
        );
    }
    // It is used: the controller's and the router's tests run on it.
    for name in ["weft-controller", "weft-router"] {
        assert!(g.dev[name].contains("weft-testkit"), "{name}");
    }
}
