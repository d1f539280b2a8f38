//! A deterministic synthetic policy model at controller scale, for benchmarks
//! (`benches/benches/policy.rs`) and the ignored timing test (`policy::scale`): one
//! generator, so the two measure the same shape.

use super::{
    EdgeRouter, EdgeRouterPolicy, Identity, Model, PolicyType, PostureCheck, RoleSet, Semantic,
    Service, ServiceEdgeRouterPolicy, ServicePolicy,
};

/// xorshift64*: deterministic and dependency-free.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    fn attr(&mut self, prefix: &str, n: usize) -> String {
        format!("{prefix}{}", self.below(n))
    }
}

fn roles<I: IntoIterator<Item = String>>(entries: I) -> RoleSet {
    // Entries built here are `#attr` / `@ref` strings, always valid; an empty set
    // (selecting nothing) would only make the bench cheaper, never wrong.
    RoleSet::parse(entries).unwrap_or_default()
}

/// A policy model at controller scale: `identities` identities, `services` services,
/// 100 edge routers, 20 posture checks, 200 service policies, 50 edge router and 50
/// service edge router policies; `all_percent` of service policies name `#all`.
pub fn model(identities: usize, services: usize, all_percent: usize) -> Model {
    let rng = &mut Rng(0x5eed_1234_abcd_ef01);
    let identities = (0..identities)
        .map(|k| {
            let mut a = vec![rng.attr("dept", 20), rng.attr("region", 10)];
            for _ in 0..rng.below(3) {
                a.push(rng.attr("team", 30));
            }
            Identity {
                id: format!("identity-{k:05}"),
                name: format!("user{k}"),
                role_attributes: a,
                disabled: rng.below(100) < 2,
            }
        })
        .collect::<Vec<_>>();
    let n_identities = identities.len();
    let services = (0..services)
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
    let service_policies = (0..200)
        .map(|k| {
            let semantic = if rng.below(2) == 0 {
                Semantic::AnyOf
            } else {
                Semantic::AllOf
            };
            let identity_roles = if rng.below(100) < all_percent {
                RoleSet::all()
            } else {
                match rng.below(10) {
                    0 | 1 => {
                        roles((0..5).map(|_| format!("@identity-{:05}", rng.below(n_identities))))
                    }
                    2..=5 => roles([
                        format!("#{}", rng.attr("dept", 20)),
                        format!("#{}", rng.attr("team", 30)),
                    ]),
                    _ => roles([
                        format!("#{}", rng.attr("dept", 20)),
                        format!("#{}", rng.attr("region", 10)),
                    ]),
                }
            };
            let group = format!("#{}", rng.attr("group", 50));
            let tier = format!("#{}", rng.attr("tier", 20));
            let service_roles = if rng.below(100) < all_percent {
                RoleSet::all()
            } else if rng.below(10) <= 5 {
                roles([group])
            } else {
                roles([group, tier])
            };
            let posture_check_roles = if rng.below(100) < 30 {
                roles([format!("#{}", rng.attr("posture", 5))])
            } else {
                RoleSet::new()
            };
            ServicePolicy {
                id: format!("sp-{k:03}"),
                policy_type: if rng.below(100) < 70 {
                    PolicyType::Dial
                } else {
                    PolicyType::Bind
                },
                semantic,
                identity_roles,
                service_roles,
                posture_check_roles,
            }
        })
        .collect();
    let edge_router_policies = (0..50)
        .map(|k| {
            let region = format!("#{}", rng.attr("region", 10));
            EdgeRouterPolicy {
                id: format!("erp-{k:02}"),
                semantic: Semantic::AnyOf,
                identity_roles: if k == 0 {
                    RoleSet::all()
                } else {
                    roles([region.clone()])
                },
                edge_router_roles: roles([region]),
            }
        })
        .collect();
    let service_edge_router_policies = (0..50)
        .map(|k| ServiceEdgeRouterPolicy {
            id: format!("serp-{k:02}"),
            semantic: Semantic::AnyOf,
            service_roles: roles([format!("#{}", rng.attr("group", 50))]),
            edge_router_roles: if k % 10 == 0 {
                RoleSet::all()
            } else {
                roles([format!("#{}", rng.attr("region", 10))])
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
