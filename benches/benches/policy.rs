//! Policy evaluation at controller scale: 10,000 identities, 1,000 services, 100 edge
//! routers, 300 policies (`cargo bench -p weft-benches --bench policy`).
//!
//! Through the controller's public policy API (`weft_controller::policy`):
//! `PolicyIndex` queries (one `can_access`, the Dial service list of an identity, the
//! edge routers for a session), an index rebuild, and the `NaiveEvaluator` on the same
//! queries for comparison.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use weft_benches::{Rng, policy_model};
use weft_controller::policy::{NaiveEvaluator, PolicyEvaluator, PolicyIndex, PolicyType};

const IDENTITIES: usize = 10_000;
const SERVICES: usize = 1_000;

fn policy(c: &mut Criterion) {
    let model = policy_model(IDENTITIES, SERVICES, 1);
    let index = PolicyIndex::new(&model);
    let naive = NaiveEvaluator::new(&model);
    let mut rng = Rng(42);
    let pairs: Vec<(String, String)> = (0..1024)
        .map(|_| {
            (
                format!("identity-{:05}", rng.below(IDENTITIES)),
                format!("service-{:04}", rng.below(SERVICES)),
            )
        })
        .collect();
    let mut g = c.benchmark_group("policy_10k_identities_1k_services");
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % pairs.len();
        &pairs[i]
    };
    g.bench_function("index/can_access", |b| {
        b.iter(|| {
            let (id, svc) = next();
            black_box(index.can_access(id, svc, PolicyType::Dial))
        })
    });
    g.bench_function("index/services_for", |b| {
        b.iter(|| black_box(index.services_for(&next().0, PolicyType::Dial).len()))
    });
    g.bench_function("index/edge_routers_for_session", |b| {
        b.iter(|| {
            let (id, svc) = next();
            black_box(
                index
                    .edge_routers_for_session(id, svc, PolicyType::Dial)
                    .len(),
            )
        })
    });
    g.bench_function("naive/can_access", |b| {
        b.iter(|| {
            let (id, svc) = next();
            black_box(naive.can_access(id, svc, PolicyType::Dial))
        })
    });
    // The naive evaluator lists an identity's services in about 2 s: few samples.
    g.sample_size(10);
    g.bench_function("naive/services_for", |b| {
        b.iter(|| black_box(naive.services_for(&next().0, PolicyType::Dial).len()))
    });
    let mut rebuilt = PolicyIndex::new(&model);
    g.bench_function("index/rebuild", |b| {
        b.iter(|| rebuilt.rebuild(black_box(&model)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = policy
}
criterion_main!(benches);
