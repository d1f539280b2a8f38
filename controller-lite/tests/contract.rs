//! OpenZiti's API contract (`controller-lite/contract/`): which routes of the Edge Client
//! and Management specs Weft serves, and how the responses the tests produced conform.
//!
//! Every response of a controller started by the test kit (`Ctl`) is checked against the
//! contract by the controller itself (`WEFT_API_CONTRACT_LOG`), and the test that made it
//! fails on any problem. The outcomes are kept in `target/api-contract/observed/`; this
//! test writes `target/api-contract/report.md` from them and from the routes served (for a
//! fresh count, remove `observed/` and run the suite first).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use weft_controller::api::contract::{Contract, Outcome};
use weft_controller::api::endpoint::Endpoint;
use weft_controller::api::openapi::ApiKind;
use weft_controller::config::Config;
use weft_controller::controller::Controller;

fn endpoints() -> [Vec<Endpoint>; 2] {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Controller::open(
        dir.path(),
        Config::default(),
        "https://localhost:1280".into(),
    )
    .unwrap();
    weft_controller::api::build(Arc::new(ctl)).2
}

/// Outcomes recorded by earlier tests, by (api, method, spec path, status).
fn observed() -> BTreeMap<(String, String, String, u16), Vec<Outcome>> {
    let mut out: BTreeMap<_, Vec<Outcome>> = BTreeMap::new();
    let dir = weft_testkit::controller::contract_dir().join("observed");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for o in text
            .lines()
            .filter_map(|l| serde_json::from_str::<Outcome>(l).ok())
        {
            let key = (o.api.clone(), o.method.clone(), o.path.clone(), o.status);
            out.entry(key).or_default().push(o);
        }
    }
    out
}

#[tokio::test]
async fn served_routes_and_conformance_report() {
    let contract = Contract::embedded().unwrap();
    let endpoints = endpoints();
    let observed = observed();
    let mut report = String::new();
    let mut table = String::new();
    let (mut served_total, mut spec_total) = (0, 0);
    let mut wrong_status = Vec::new();
    let mut served_keys = BTreeSet::new();
    for (api, endpoints) in ApiKind::ALL.into_iter().zip(&endpoints) {
        let spec = contract.api(api);
        let mut served = 0;
        for op in &spec.operations {
            let ours = endpoints
                .iter()
                .find(|e| op.same_route(e.method.as_str(), &e.path));
            if let Some(e) = ours {
                served += 1;
                served_keys.insert((api.id().to_owned(), op.method.clone(), op.path.clone()));
                // The success status we document is one the spec declares.
                if !op.statuses().any(|s| s == e.status.to_string()) {
                    wrong_status.push(format!(
                        "{} {} {}: {} (spec: {})",
                        api.id(),
                        op.method,
                        op.path,
                        e.status,
                        op.statuses().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            let seen: Vec<String> = observed
                .iter()
                .filter(|((a, m, p, _), _)| a == api.id() && *m == op.method && *p == op.path)
                .map(|((_, _, _, s), os)| {
                    let ok = os.iter().all(|o| o.problems.is_empty());
                    format!("{s}{}", if ok { "✓" } else { "✗" })
                })
                .collect();
            let _ = writeln!(
                table,
                "| {} | {} | `{}` | {} | {} | {} |",
                api.id(),
                op.method,
                op.path,
                op.operation_id,
                if ours.is_some() { "served" } else { "–" },
                seen.join(" ")
            );
        }
        let _ = writeln!(
            report,
            "- {}: {served} of {} routes served",
            api.id(),
            spec.operations.len()
        );
        served_total += served;
        spec_total += spec.operations.len();
    }
    // Conformance of the (route, status) pairs the tests produced on served routes.
    let mut checked = 0;
    let mut conforming = 0;
    let mut problems = BTreeSet::new();
    let mut undeclared = BTreeSet::new();
    for ((api, method, path, status), outcomes) in &observed {
        if !served_keys.contains(&(api.clone(), method.clone(), path.clone())) {
            continue;
        }
        checked += 1;
        if outcomes.iter().all(|o| o.problems.is_empty()) {
            conforming += 1;
        }
        for o in outcomes {
            if !o.declared {
                undeclared.insert(format!("{api} {method} {path} {status}"));
            }
            for p in &o.problems {
                problems.insert(format!("{api} {method} {path} {status}: {p}"));
            }
        }
    }
    let summary = format!(
        "OpenZiti API contract (openziti/edge-api {}):\n\
         - served routes: {served_total} of {spec_total}\n{report}\
         - response operations (route, status) seen by the tests: {conforming} of {checked} conform\n",
        contract.source.commit
    );
    let mut doc = format!("# API contract report\n\n{summary}\n");
    if !problems.is_empty() {
        let _ = writeln!(doc, "## Problems\n");
        for p in &problems {
            let _ = writeln!(doc, "- {p}");
        }
        doc.push('\n');
    }
    if !undeclared.is_empty() {
        let _ = writeln!(doc, "## Error statuses the spec does not declare\n");
        for u in &undeclared {
            let _ = writeln!(doc, "- {u}");
        }
        doc.push('\n');
    }
    let _ = writeln!(
        doc,
        "## Routes\n\n| API | method | path | operationId | Weft | statuses seen (✓ conform) |\n|---|---|---|---|---|---|\n{table}"
    );
    let dir = weft_testkit::controller::contract_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("report.md"), &doc).unwrap();
    println!("{summary}(report: {})", dir.join("report.md").display());
    assert!(served_total > 0 && served_total <= spec_total);
    assert!(
        wrong_status.is_empty(),
        "success statuses the spec does not declare:\n{}",
        wrong_status.join("\n")
    );
}
