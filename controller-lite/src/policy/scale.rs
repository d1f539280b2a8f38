//! A timing run at controller scale: 10,000 identities, 1,000 services, 100 edge routers,
//! 300 policies. Ignored by default; run it in release mode:
//!
//! ```text
//! cargo test --release -p weft-controller scale -- --ignored --nocapture
//! ```
//!
//! It prints timings and asserts only agreement with the naive evaluator on a sample,
//! never a duration.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::*;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn attr(&mut self, prefix: &str, n: usize) -> String {
        format!("{prefix}{}", self.below(n))
    }
}

/// `all_percent`: share of service policies naming `#all` identities (and, separately,
/// `#all` services).
fn scale_model(rng: &mut Rng, all_percent: usize) -> Model {
    let identities = (0..10_000)
        .map(|k| {
            let mut a = vec![rng.attr("dept", 20), rng.attr("region", 10)];
            for _ in 0..rng.below(3) {
                a.push(rng.attr("team", 30));
            }
            Identity {
                id: format!("identity-{k:05}"),
                name: format!("user{k}"),
                role_attributes: a,
                disabled: rng.chance(2),
            }
        })
        .collect();
    let services = (0..1_000)
        .map(|k| Service {
            id: format!("service-{k:04}"),
            name: format!("svc{k}"),
            role_attributes: vec![rng.attr("group", 50), rng.attr("tier", 20)],
        })
        .collect();
    let edge_routers = (0..100)
        .map(|k| EdgeRouter {
            id: format!("router-{k:03}"),
            name: format!("er{k}"),
            role_attributes: vec![rng.attr("region", 10), rng.attr("class", 3)],
        })
        .collect();
    let posture_checks = (0..20)
        .map(|k| PostureCheck {
            id: format!("check-{k:02}"),
            name: format!("pc{k}"),
            role_attributes: vec![rng.attr("posture", 5)],
        })
        .collect();

    let mut service_policies = Vec::new();
    for k in 0..200 {
        let semantic = if rng.chance(50) {
            Semantic::AnyOf
        } else {
            Semantic::AllOf
        };
        let identity_roles = match rng.below(10) {
            _ if rng.chance(all_percent) => RoleSet::all(),
            0 | 1 => RoleSet::parse((0..5).map(|_| format!("@identity-{:05}", rng.below(10_000))))
                .unwrap(),
            2..=5 => RoleSet::parse([
                format!("#{}", rng.attr("dept", 20)),
                format!("#{}", rng.attr("team", 30)),
            ])
            .unwrap(),
            _ => RoleSet::parse([
                format!("#{}", rng.attr("dept", 20)),
                format!("#{}", rng.attr("region", 10)),
            ])
            .unwrap(),
        };
        let group = format!("#{}", rng.attr("group", 50));
        let tier = format!("#{}", rng.attr("tier", 20));
        let service_roles = match rng.below(10) {
            _ if rng.chance(all_percent) => RoleSet::all(),
            0..=5 => RoleSet::parse([group]).unwrap(),
            _ => RoleSet::parse([group, tier]).unwrap(),
        };
        let posture_check_roles = if rng.chance(30) {
            RoleSet::parse([format!("#{}", rng.attr("posture", 5))]).unwrap()
        } else {
            RoleSet::new()
        };
        service_policies.push(ServicePolicy {
            id: format!("sp-{k:03}"),
            policy_type: if rng.chance(70) {
                PolicyType::Dial
            } else {
                PolicyType::Bind
            },
            semantic,
            identity_roles,
            service_roles,
            posture_check_roles,
        });
    }
    let edge_router_policies = (0..50)
        .map(|k| {
            let region = format!("#{}", rng.attr("region", 10));
            EdgeRouterPolicy {
                id: format!("erp-{k:02}"),
                semantic: Semantic::AnyOf,
                identity_roles: if k == 0 {
                    RoleSet::all()
                } else {
                    RoleSet::parse([&region]).unwrap()
                },
                edge_router_roles: RoleSet::parse([&region]).unwrap(),
            }
        })
        .collect();
    let service_edge_router_policies = (0..50)
        .map(|k| ServiceEdgeRouterPolicy {
            id: format!("serp-{k:02}"),
            semantic: Semantic::AnyOf,
            service_roles: RoleSet::parse([format!("#{}", rng.attr("group", 50))]).unwrap(),
            edge_router_roles: if k % 10 == 0 {
                RoleSet::all()
            } else {
                RoleSet::parse([format!("#{}", rng.attr("region", 10))]).unwrap()
            },
        })
        .collect();
    Model {
        identities,
        services,
        edge_routers,
        posture_checks,
        service_policies,
        edge_router_policies,
        service_edge_router_policies,
    }
}

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
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let model = scale_model(&mut rng, all_percent);
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
