//! A timing run at controller scale: 10,000 identities, 1,000 services, 100 edge routers,
//! 300 policies. Ignored by default; run it in release mode:
//!
//! ```text
//! cargo test --release -p weft-controller scale -- --ignored --nocapture
//! ```
//!
//! It prints timings and asserts only agreement with the naive evaluator on a sample,
//! never a duration.
#![allow(clippy::disallowed_methods)] // tests may start their simulated clock

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::*;

use super::synthetic::{self, Rng};

fn per_op(total: Duration, ops: usize) -> String {
    format!("{:.3} us", total.as_secs_f64() * 1e6 / ops as f64)
}

#[test]
#[ignore = "timing run; use --release --ignored --nocapture"]
fn scale_rebuild_and_query_timings() {
    for (label, all_percent) in [("segmented: 1% #all", 1), ("broad: 10% #all", 10)] {
        println!("-- {label}");
        run_scale(all_percent);
    }
}

fn run_scale(all_percent: usize) {
    let model = synthetic::model(10_000, 1_000, all_percent);
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    assert!(model.validate().is_empty());

    let mut builds = Vec::new();
    let mut index = PolicyIndex::new(&model);
    for _ in 0..5 {
        let start = Instant::now();
        index.rebuild(black_box(&model));
        builds.push(start.elapsed());
    }
    builds.sort();
    println!(
        "rebuild (10k identities, 1k services, 100 routers, 200+50+50 policies): \
         min {:?}, median {:?}",
        builds[0], builds[2]
    );

    let identity = |rng: &mut Rng| format!("identity-{:05}", rng.below(10_000));
    let service = |rng: &mut Rng| format!("service-{:04}", rng.below(1_000));
    let pairs: Vec<(String, String)> = (0..100_000)
        .map(|_| (identity(&mut rng), service(&mut rng)))
        .collect();

    let start = Instant::now();
    let granted = pairs
        .iter()
        .filter(|(i, s)| index.can_dial(black_box(i), black_box(s)))
        .count();
    println!(
        "can_dial: {} per query ({granted} of {} granted)",
        per_op(start.elapsed(), pairs.len()),
        pairs.len()
    );

    let start = Instant::now();
    let mut listed = 0;
    for m in &model.identities {
        listed += black_box(index.dial_services(&m.id)).len();
    }
    println!(
        "dial_services: {} per query (mean {} services)",
        per_op(start.elapsed(), model.identities.len()),
        listed / model.identities.len()
    );

    let start = Instant::now();
    let mut routers = 0;
    for (i, s) in &pairs {
        routers += black_box(index.edge_routers_for_session(i, s, PolicyType::Dial)).len();
    }
    println!(
        "edge_routers_for_session: {} per query (mean {:.1} routers)",
        per_op(start.elapsed(), pairs.len()),
        routers as f64 / pairs.len() as f64
    );

    let start = Instant::now();
    let mut policies = 0;
    for (i, s) in &pairs {
        policies += black_box(index.posture_checks_for(i, s, PolicyType::Dial)).len();
    }
    println!(
        "posture_checks_for: {} per query (mean {:.2} policies)",
        per_op(start.elapsed(), pairs.len()),
        policies as f64 / pairs.len() as f64
    );

    // Agreement with the naive evaluator on a sample, and its cost for comparison.
    let naive = NaiveEvaluator::new(&model);
    let start = Instant::now();
    for m in model.identities.iter().step_by(2_000) {
        assert_eq!(naive.dial_services(&m.id), index.dial_services(&m.id));
        assert_eq!(
            naive.edge_routers_for_identity(&m.id),
            index.edge_routers_for_identity(&m.id)
        );
    }
    println!(
        "naive dial_services + edge_routers_for_identity: {} per identity",
        per_op(start.elapsed(), 5)
    );
    for (i, s) in pairs.iter().take(300) {
        assert_eq!(naive.can_dial(i, s), index.can_dial(i, s));
        assert_eq!(
            naive.edge_routers_for_session(i, s, PolicyType::Dial),
            index.edge_routers_for_session(i, s, PolicyType::Dial)
        );
        assert_eq!(
            naive.posture_checks_for(i, s, PolicyType::Dial),
            index.posture_checks_for(i, s, PolicyType::Dial)
        );
    }
}
