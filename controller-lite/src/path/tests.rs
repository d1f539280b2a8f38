//! Path selection tests: cases from the definitions, then Dijkstra and ranking checked
//! against the enumeration of every simple path on random graphs.
#![allow(clippy::indexing_slicing)]

use proptest::prelude::{Just, ProptestConfig, Strategy as _, prop, prop_assert_eq, proptest};

use super::naive::{cheapest_cost, check_path};
use super::*;

fn router(id: &str) -> Router {
    Router {
        id: id.into(),
        cost: 0,
        connected: true,
        no_traversal: false,
    }
}

fn link(id: &str, src: &str, dst: &str, latency: u32) -> Link {
    Link {
        id: id.into(),
        src: src.into(),
        dst: dst.into(),
        static_cost: 1,
        src_latency_ms: latency,
        dst_latency_ms: latency,
        up: true,
    }
}

fn candidate(id: &str, router: &str, precedence: Precedence) -> Candidate {
    Candidate {
        id: id.into(),
        router: router.into(),
        precedence,
        static_cost: 0,
        dynamic: DynamicCost::default(),
    }
}

/// A diamond: a–b–d costs 2×(1+2·5) = 22 in links, a–c–d 2×(1+2·20) = 82.
fn diamond() -> (Vec<Router>, Vec<Link>) {
    (
        ["a", "b", "c", "d"].map(router).to_vec(),
        vec![
            link("ab", "a", "b", 5),
            link("bd", "b", "d", 5),
            link("ac", "a", "c", 20),
            link("cd", "c", "d", 20),
        ],
    )
}

#[test]
fn the_cheaper_side_of_a_diamond_wins_and_costs_add_up() {
    let (routers, links) = diamond();
    let graph = Graph::new(routers, links);
    let path = graph.shortest_paths("a").path_to("d").unwrap();
    assert_eq!(path.routers, ["a", "b", "d"]);
    assert_eq!(path.links, ["ab", "bd"]);
    // Links 11 + 11, three routers at the floor of 10.
    assert_eq!(path.cost, 22 + 3 * MIN_ROUTER_COST);
    // The path to itself is the router alone.
    let own = graph.shortest_paths("a").path_to("a").unwrap();
    assert_eq!((own.routers.len(), own.links.len(), own.cost), (1, 0, 10));
}

#[test]
fn down_links_disconnected_and_no_traversal_routers_are_avoided() {
    let (mut routers, mut links) = diamond();
    links[0].up = false; // a–b down
    let graph = Graph::new(routers.clone(), links.clone());
    assert_eq!(
        graph.shortest_paths("a").path_to("d").unwrap().routers,
        ["a", "c", "d"]
    );
    links[0].up = true;
    routers[1].no_traversal = true; // b may end a path, not carry one
    let graph = Graph::new(routers.clone(), links.clone());
    assert_eq!(
        graph.shortest_paths("a").path_to("d").unwrap().routers,
        ["a", "c", "d"]
    );
    assert_eq!(
        graph.shortest_paths("a").path_to("b").unwrap().routers,
        ["a", "b"],
        "a no-traversal router is still an end"
    );
    assert_eq!(
        graph.shortest_paths("b").path_to("d").unwrap().routers,
        ["b", "d"],
        "and a start"
    );
    routers[2].connected = false; // c gone as well: d unreachable from a
    let graph = Graph::new(routers, links);
    assert!(graph.shortest_paths("a").path_to("d").is_none());
    assert!(graph.shortest_paths("c").path_to("a").is_none());
}

#[test]
fn a_router_cost_above_the_floor_counts_and_parallel_links_use_the_cheapest() {
    let (mut routers, mut links) = diamond();
    routers[1].cost = 100; // b now costs 100 instead of 10
    links.push(link("cd-fast", "d", "c", 1));
    let graph = Graph::new(routers, links);
    let path = graph.shortest_paths("a").path_to("d").unwrap();
    // a–c (41) + c–d via the fast link (3) + routers 30 = 74 < a–b–d 22 + 120 = 142
    assert_eq!(path.routers, ["a", "c", "d"]);
    assert_eq!(path.links, ["ac", "cd-fast"]);
    assert_eq!(path.cost, 41 + 3 + 30);
}

#[test]
fn precedence_bands_order_route_costs_before_paths_do() {
    let (routers, links) = diamond();
    let graph = Graph::new(routers, links);
    let candidates = [
        candidate("t-near", "a", Precedence::Default),
        candidate("t-far", "d", Precedence::Required),
        candidate("t-failed", "a", Precedence::Failed),
        candidate("t-nowhere", "z", Precedence::Required),
    ];
    let ranked = rank(&graph, "a", &candidates);
    let ids: Vec<&str> = ranked.iter().map(|r| r.candidate.id.as_str()).collect();
    assert_eq!(ids, ["t-far", "t-near", "t-failed"], "unreachable left out");
    assert_eq!(ranked[0].route_cost, 52);
    assert_eq!(ranked[1].route_cost, 4 * 65_535 + 10);
    assert_eq!(ranked[2].route_cost, 8 * 65_535 + 10);
    assert_eq!(ranked[1].unbiased_cost(), 10);
    // A huge cost stays in its band.
    assert_eq!(Precedence::Required.biased(u64::MAX), 4 * 65_535 - 1);
    assert_eq!(
        choose(Strategy::SmartRouting, &ranked, 0.5, None).map(|r| r.candidate.id.as_str()),
        Some("t-far")
    );
}

#[test]
fn strategies_choose_within_the_best_band() {
    let graph = Graph::new(
        ["a", "b", "c"].map(router),
        [link("ab", "a", "b", 0), link("ac", "a", "c", 10)],
    );
    // Unbiased costs: t-a 10, t-b 1+10+10 = 21... set static costs for round numbers.
    let mut t_a = candidate("t-a", "a", Precedence::Default);
    t_a.static_cost = 0; // 10
    let mut t_b = candidate("t-b", "b", Precedence::Default);
    t_b.static_cost = 9; // 1 + 20 + 9 = 30
    let t_c = candidate("t-c", "c", Precedence::Failed);
    let ranked = rank(&graph, "a", &[t_b, t_a, t_c]);
    let pick = |s, random, sticky| {
        choose(s, &ranked, random, sticky).map(|r: &Ranked| r.candidate.id.clone())
    };
    assert_eq!(
        pick(Strategy::SmartRouting, 0.99, None).as_deref(),
        Some("t-a")
    );
    // Weighted: costs 10 and 30 → weights 0.75 and 0.25.
    assert_eq!(pick(Strategy::Weighted, 0.74, None).as_deref(), Some("t-a"));
    assert_eq!(pick(Strategy::Weighted, 0.76, None).as_deref(), Some("t-b"));
    // Random: uniform over the band (t-c is failed, never picked).
    assert_eq!(pick(Strategy::Random, 0.49, None).as_deref(), Some("t-a"));
    assert_eq!(pick(Strategy::Random, 0.51, None).as_deref(), Some("t-b"));
    assert_eq!(pick(Strategy::Random, 1.0, None).as_deref(), Some("t-b"));
    assert_eq!(
        pick(Strategy::Random, f64::NAN, None).as_deref(),
        Some("t-a")
    );
    // Sticky: the token's terminator while it is in the best band.
    assert_eq!(
        pick(Strategy::Sticky, 0.0, Some("t-b")).as_deref(),
        Some("t-b")
    );
    assert_eq!(
        pick(Strategy::Sticky, 0.0, Some("t-c")).as_deref(),
        Some("t-a")
    );
    assert_eq!(
        pick(Strategy::Sticky, 0.0, Some("gone")).as_deref(),
        Some("t-a")
    );
    assert_eq!(choose(Strategy::SmartRouting, &[], 0.0, None), None);
}

#[test]
fn dynamic_cost_follows_circuits_and_failures() {
    let mut d = DynamicCost::default();
    d.dial_failed();
    d.dial_failed();
    assert_eq!(d.get(), 40);
    d.dial_succeeded();
    assert_eq!((d.failure, d.circuits, d.get()), (38, 1, 40));
    d.circuit_ended();
    d.circuit_ended();
    assert_eq!(d.get(), 38);
    for _ in 0..100 {
        d.dial_succeeded();
    }
    assert_eq!(d.failure, 0, "never below 0");
    let huge = DynamicCost {
        circuits: u32::MAX,
        failure: u16::MAX,
    };
    assert_eq!(huge.get(), u16::MAX);
}

#[test]
fn strategy_names_are_openzitis() {
    for s in [
        Strategy::SmartRouting,
        Strategy::Weighted,
        Strategy::Random,
        Strategy::Sticky,
    ] {
        assert_eq!(s.to_string().parse::<Strategy>(), Ok(s));
    }
    assert_eq!("".parse::<Strategy>(), Ok(Strategy::SmartRouting));
    assert!("ha".parse::<Strategy>().is_err());
    assert_eq!(Precedence::from_name("required"), Precedence::Required);
    assert_eq!(Precedence::from_name("anything"), Precedence::Default);
}

// ---- property tests against the enumeration ----

const NAMES: [&str; 7] = ["r0", "r1", "r2", "r3", "r4", "r5", "r6"];

fn arb_graph() -> impl proptest::strategy::Strategy<Value = (Vec<Router>, Vec<Link>)> {
    let routers = proptest::collection::vec(
        (
            0u16..40,
            prop::bool::weighted(0.9),
            prop::bool::weighted(0.2),
        ),
        2..=7,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (cost, connected, no_traversal))| Router {
                id: NAMES[i].into(),
                cost,
                connected,
                no_traversal,
            })
            .collect::<Vec<_>>()
    });
    routers.prop_flat_map(|routers| {
        let n = routers.len();
        let links = proptest::collection::vec(
            (
                0..n,
                0..n,
                0u32..5,
                0u32..50,
                0u32..50,
                prop::bool::weighted(0.85),
            ),
            0..16,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (s, d, stat, sl, dl, up))| Link {
                    id: format!("l{i}"),
                    src: NAMES[s].into(),
                    dst: NAMES[d].into(),
                    static_cost: stat,
                    src_latency_ms: sl,
                    dst_latency_ms: dl,
                    up,
                })
                .collect::<Vec<_>>()
        });
        (Just(routers), links)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// For every pair of routers: Dijkstra's cost is the cheapest simple path's, and
    /// the path it returns is one the graph allows, costing what it says.
    #[test]
    fn shortest_paths_match_the_enumeration((routers, links) in arb_graph()) {
        let graph = Graph::new(routers.clone(), links);
        for from in &routers {
            let paths = graph.shortest_paths(&from.id);
            for to in &routers {
                let naive = cheapest_cost(&graph, &from.id, &to.id);
                prop_assert_eq!(paths.cost_to(&to.id), naive, "{} → {}", from.id, to.id);
                if let Some(path) = paths.path_to(&to.id) {
                    prop_assert_eq!(path.routers.first(), Some(&from.id));
                    prop_assert_eq!(path.routers.last(), Some(&to.id));
                    prop_assert_eq!(check_path(&graph, &path), Ok(path.cost));
                }
            }
        }
    }

    /// Ranking keeps exactly the reachable candidates, each at the band-placed cost of
    /// its cheapest path, cheapest first; every strategy picks within the best band,
    /// and smart routing picks the cheapest.
    #[test]
    fn ranking_and_choice_follow_the_definitions(
        (routers, links) in arb_graph(),
        terminators in proptest::collection::vec((0usize..7, 0u8..3, 0u16..100, 0u32..5, 0u16..60), 0..8),
        from in 0usize..7,
        random in 0.0f64..1.0,
        sticky in 0usize..8,
    ) {
        let graph = Graph::new(routers.clone(), links);
        let from = NAMES[from % routers.len()];
        let candidates: Vec<Candidate> = terminators
            .iter()
            .enumerate()
            .map(|(i, (r, p, stat, circuits, failure))| Candidate {
                id: format!("t{i}"),
                router: NAMES[r % routers.len()].into(),
                precedence: [Precedence::Required, Precedence::Default, Precedence::Failed][usize::from(*p)],
                static_cost: *stat,
                dynamic: DynamicCost { circuits: *circuits, failure: *failure },
            })
            .collect();
        let ranked = rank(&graph, from, &candidates);
        let expected: Vec<(String, u64)> = {
            let mut v: Vec<(String, u64)> = candidates
                .iter()
                .filter_map(|c| {
                    let cost = cheapest_cost(&graph, from, &c.router)?;
                    Some((
                        c.id.clone(),
                        c.precedence.biased(cost + u64::from(c.static_cost) + u64::from(c.dynamic.get())),
                    ))
                })
                .collect();
            v.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
            v
        };
        let got: Vec<(String, u64)> = ranked.iter().map(|r| (r.candidate.id.clone(), r.route_cost)).collect();
        prop_assert_eq!(&got, &expected);
        let sticky_id = format!("t{sticky}");
        for strategy in [Strategy::SmartRouting, Strategy::Weighted, Strategy::Random, Strategy::Sticky] {
            let chosen = choose(strategy, &ranked, random, Some(&sticky_id));
            prop_assert_eq!(chosen.is_some(), !ranked.is_empty());
            if let Some(chosen) = chosen {
                prop_assert_eq!(chosen.candidate.precedence, ranked[0].candidate.precedence);
            }
            if strategy == Strategy::SmartRouting {
                prop_assert_eq!(chosen.map(|c| c.route_cost), ranked.first().map(|r| r.route_cost));
            }
        }
    }
}
