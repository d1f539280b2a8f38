//! Property tests: on random small models, [`PolicyIndex`] answers every query exactly like
//! [`NaiveEvaluator`]; selectors round-trip through text and parsing never panics.
//!
//! The models are small (at most 6 entities of a type and 6 policies of a kind) with tiny
//! attribute and name alphabets, so that attributes, `@id` and `@name` references, name
//! collisions (ambiguous names, names equal to other ids), unknown references, `#all`
//! (alone or, through [`RoleSet::from_selectors`], mixed), empty role lists and disabled
//! identities all occur often.

use proptest::prelude::*;
use proptest::sample::subsequence;

use super::*;

/// Attributes entities carry.
const ATTRS: &[&str] = &["a", "b", "c", "d"];
/// Attributes role lists name: one more, which no entity carries.
const ROLE_ATTRS: &[&str] = &["a", "b", "c", "d", "e"];
/// Names: shared across entities (ambiguous), and one equal to an id of each type.
const NAMES: &[&str] = &["n0", "n1", "n2", "i1", "s1", "r1", "p1"];

fn strings(items: Vec<&str>) -> Vec<String> {
    items.into_iter().map(str::to_owned).collect()
}

/// (name, attributes, flag) for up to `max` entities.
fn entity_parts(max: usize) -> impl Strategy<Value = Vec<(String, Vec<String>, bool)>> {
    prop::collection::vec(
        (
            prop::sample::select(NAMES).prop_map(str::to_owned),
            subsequence(ATTRS, 0..=3).prop_map(strings),
            prop::bool::weighted(0.2),
        ),
        0..=max,
    )
}

fn role_set(prefix: &'static str) -> impl Strategy<Value = RoleSet> {
    let refs: Vec<String> = (0..7)
        .map(|k| format!("{prefix}{k}"))
        .chain(["n0", "n1", "n2", "zz"].map(str::to_owned))
        .collect();
    (
        prop::bool::weighted(0.12),
        subsequence(ROLE_ATTRS, 0..=3),
        subsequence(refs, 0..=2),
    )
        .prop_map(|(all, attributes, refs)| {
            RoleSet::from_selectors(
                all.then_some(RoleSelector::All)
                    .into_iter()
                    .chain(
                        attributes
                            .into_iter()
                            .map(|a| RoleSelector::Attribute(a.to_owned())),
                    )
                    .chain(refs.into_iter().map(RoleSelector::Entity)),
            )
        })
}

fn semantic() -> impl Strategy<Value = Semantic> {
    prop_oneof![Just(Semantic::AllOf), Just(Semantic::AnyOf)]
}

fn policy_type() -> impl Strategy<Value = PolicyType> {
    prop_oneof![Just(PolicyType::Dial), Just(PolicyType::Bind)]
}

/// Policy ids, unique, numbered against insertion order so that sorting matters.
fn policy_id(prefix: &str, k: usize) -> String {
    format!("{prefix}{}", 9 - k)
}

fn model() -> impl Strategy<Value = Model> {
    let service_policies = prop::collection::vec(
        (
            policy_type(),
            semantic(),
            role_set("i"),
            role_set("s"),
            role_set("p"),
        ),
        0..=6,
    );
    let edge_router_policies =
        prop::collection::vec((semantic(), role_set("i"), role_set("r")), 0..=4);
    let service_edge_router_policies =
        prop::collection::vec((semantic(), role_set("s"), role_set("r")), 0..=4);
    (
        (
            entity_parts(6),
            entity_parts(5),
            entity_parts(4),
            entity_parts(3),
        ),
        (
            service_policies,
            edge_router_policies,
            service_edge_router_policies,
        ),
    )
        .prop_map(
            |((identities, services, routers, checks), (sps, erps, serps))| Model {
                identities: identities
                    .into_iter()
                    .enumerate()
                    .map(|(k, (name, role_attributes, disabled))| Identity {
                        id: format!("i{k}"),
                        name,
                        role_attributes,
                        disabled,
                    })
                    .collect(),
                services: services
                    .into_iter()
                    .enumerate()
                    .map(|(k, (name, role_attributes, _))| Service {
                        id: format!("s{k}"),
                        name,
                        role_attributes,
                    })
                    .collect(),
                edge_routers: routers
                    .into_iter()
                    .enumerate()
                    .map(|(k, (name, role_attributes, _))| EdgeRouter {
                        id: format!("r{k}"),
                        name,
                        role_attributes,
                    })
                    .collect(),
                posture_checks: checks
                    .into_iter()
                    .enumerate()
                    .map(|(k, (name, role_attributes, _))| PostureCheck {
                        id: format!("p{k}"),
                        name,
                        role_attributes,
                    })
                    .collect(),
                service_policies: sps
                    .into_iter()
                    .enumerate()
                    .map(
                        |(k, (policy_type, semantic, ids, svcs, pcs))| ServicePolicy {
                            id: policy_id("sp", k),
                            policy_type,
                            semantic,
                            identity_roles: ids,
                            service_roles: svcs,
                            posture_check_roles: pcs,
                        },
                    )
                    .collect(),
                edge_router_policies: erps
                    .into_iter()
                    .enumerate()
                    .map(|(k, (semantic, ids, routers))| EdgeRouterPolicy {
                        id: policy_id("erp", k),
                        semantic,
                        identity_roles: ids,
                        edge_router_roles: routers,
                    })
                    .collect(),
                service_edge_router_policies: serps
                    .into_iter()
                    .enumerate()
                    .map(|(k, (semantic, svcs, routers))| ServiceEdgeRouterPolicy {
                        id: policy_id("serp", k),
                        semantic,
                        service_roles: svcs,
                        edge_router_roles: routers,
                    })
                    .collect(),
            },
        )
}

/// Compares every query, over every entity plus one unknown id of each type.
fn assert_same(model: &Model) -> Result<(), TestCaseError> {
    let naive = NaiveEvaluator::new(model);
    let index = PolicyIndex::new(model);
    let identities: Vec<&str> = model
        .identities
        .iter()
        .map(|i| i.id.as_str())
        .chain(["i9"])
        .collect();
    let services: Vec<&str> = model
        .services
        .iter()
        .map(|s| s.id.as_str())
        .chain(["s9"])
        .collect();
    for &s in &services {
        prop_assert_eq!(
            naive.edge_routers_for_service(s),
            index.edge_routers_for_service(s)
        );
    }
    for &i in &identities {
        prop_assert_eq!(
            naive.edge_routers_for_identity(i),
            index.edge_routers_for_identity(i)
        );
        for kind in [PolicyType::Dial, PolicyType::Bind] {
            prop_assert_eq!(naive.services_for(i, kind), index.services_for(i, kind));
            for &s in &services {
                prop_assert_eq!(
                    naive.can_access(i, s, kind),
                    index.can_access(i, s, kind),
                    "can_access({}, {}, {})",
                    i,
                    s,
                    kind
                );
                prop_assert_eq!(
                    naive.edge_routers_for_session(i, s, kind),
                    index.edge_routers_for_session(i, s, kind)
                );
                let checks = index.posture_checks_for(i, s, kind);
                prop_assert_eq!(naive.posture_checks_for(i, s, kind), checks.clone());
                prop_assert_eq!(checks.is_empty(), !index.can_access(i, s, kind));
            }
        }
    }
    assert_same_selections(model, &index)
}

/// [`PolicyIndex::selects`] against [`selects`], for every policy, role list and entity
/// (plus unknown ids).
fn assert_same_selections(model: &Model, index: &PolicyIndex) -> Result<(), TestCaseError> {
    fn check<E: RoleEntity>(
        index: &PolicyIndex,
        policies: PolicyCollection,
        policy_id: &str,
        kind: EntityKind,
        roles: &RoleSet,
        semantic: Semantic,
        entities: &[E],
    ) -> Result<(), TestCaseError> {
        for e in entities {
            prop_assert_eq!(
                index.selects(policies, policy_id, kind, e.id()),
                selects(roles, semantic, entities, e),
                "{:?} {} selects {} {}",
                policies,
                policy_id,
                kind,
                e.id()
            );
        }
        prop_assert!(!index.selects(policies, policy_id, kind, "x9"));
        Ok(())
    }
    let m = model;
    for p in &m.service_policies {
        let (c, id, sem) = (PolicyCollection::Service, p.id.as_str(), p.semantic);
        check(
            index,
            c,
            id,
            EntityKind::Identity,
            &p.identity_roles,
            sem,
            &m.identities,
        )?;
        check(
            index,
            c,
            id,
            EntityKind::Service,
            &p.service_roles,
            sem,
            &m.services,
        )?;
        check(
            index,
            c,
            id,
            EntityKind::PostureCheck,
            &p.posture_check_roles,
            sem,
            &m.posture_checks,
        )?;
        prop_assert!(m.edge_routers.iter().all(|r| !index.selects(
            c,
            id,
            EntityKind::EdgeRouter,
            &r.id
        )));
    }
    for p in &m.edge_router_policies {
        let (c, id, sem) = (PolicyCollection::EdgeRouter, p.id.as_str(), p.semantic);
        check(
            index,
            c,
            id,
            EntityKind::Identity,
            &p.identity_roles,
            sem,
            &m.identities,
        )?;
        check(
            index,
            c,
            id,
            EntityKind::EdgeRouter,
            &p.edge_router_roles,
            sem,
            &m.edge_routers,
        )?;
        prop_assert!(
            m.services
                .iter()
                .all(|s| !index.selects(c, id, EntityKind::Service, &s.id))
        );
    }
    for p in &m.service_edge_router_policies {
        let (c, id, sem) = (
            PolicyCollection::ServiceEdgeRouter,
            p.id.as_str(),
            p.semantic,
        );
        check(
            index,
            c,
            id,
            EntityKind::Service,
            &p.service_roles,
            sem,
            &m.services,
        )?;
        check(
            index,
            c,
            id,
            EntityKind::EdgeRouter,
            &p.edge_router_roles,
            sem,
            &m.edge_routers,
        )?;
        prop_assert!(m.identities.iter().all(|i| !index.selects(
            c,
            id,
            EntityKind::Identity,
            &i.id
        )));
    }
    for c in [
        PolicyCollection::Service,
        PolicyCollection::EdgeRouter,
        PolicyCollection::ServiceEdgeRouter,
    ] {
        prop_assert!(m.identities.iter().all(|i| !index.selects(
            c,
            "nope",
            EntityKind::Identity,
            &i.id
        )));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn index_matches_naive(model in model()) {
        assert_same(&model)?;
    }
}

fn selector() -> impl Strategy<Value = RoleSelector> {
    prop_oneof![
        Just(RoleSelector::All),
        "[a-z0-9._:-]{1,12}"
            .prop_map(RoleSelector::Attribute)
            .prop_filter("#all is not an attribute", |s| *s
                != RoleSelector::Attribute("all".into())),
        "[a-zA-Z0-9._:-]{1,12}".prop_map(RoleSelector::Entity),
    ]
}

proptest! {
    #[test]
    fn selector_round_trips(selector in selector()) {
        prop_assert_eq!(RoleSelector::parse(&selector.to_string()), Ok(selector));
    }

    #[test]
    fn parse_never_panics_and_accepts_only_prefixed_text(text in "\\PC{0,8}|[#@ ]{0,3}[a-z ]{0,3}") {
        if let Ok(selector) = RoleSelector::parse(&text) {
            prop_assert!(text.starts_with(['#', '@']));
            prop_assert!(!text.contains(char::is_whitespace));
            prop_assert_eq!(selector.to_string(), text);
        }
    }
}
