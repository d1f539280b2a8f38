//! Path selection straight from the definitions, for tests: every simple path is
//! enumerated, so it is only for small graphs.

use super::graph::{Graph, Path};

/// The lowest cost of any path from `from` to `to` that only passes through routers
/// allowed to carry traffic, by enumerating every simple path; `None` when unreachable.
pub fn cheapest_cost(graph: &Graph, from: &str, to: &str) -> Option<u64> {
    let start = graph.router(from)?;
    graph.router(to)?;
    let mut best = None;
    let mut visited = vec![from.to_owned()];
    walk(graph, from, to, start.path_cost(), &mut visited, &mut best);
    best
}

fn walk(
    graph: &Graph,
    at: &str,
    to: &str,
    cost: u64,
    visited: &mut Vec<String>,
    best: &mut Option<u64>,
) {
    if at == to {
        *best = Some(best.map_or(cost, |b: u64| b.min(cost)));
        return;
    }
    let Some(router) = graph.router(at) else {
        return;
    };
    if visited.len() > 1 && router.no_traversal {
        return;
    }
    for (next, link_cost, _) in graph.neighbours(at) {
        if visited.iter().any(|v| v == next) {
            continue;
        }
        let Some(next_router) = graph.router(next) else {
            continue;
        };
        visited.push(next.to_owned());
        walk(
            graph,
            next,
            to,
            cost + link_cost + next_router.path_cost(),
            visited,
            best,
        );
        visited.pop();
    }
}

/// The cost of `path` recomputed from the graph, and whether it is a path the graph
/// allows (consecutive routers joined by the named links, no router twice, no
/// no-traversal router in the middle).
pub fn check_path(graph: &Graph, path: &Path) -> Result<u64, String> {
    let first = path.routers.first().ok_or("empty path")?;
    let mut cost = graph
        .router(first)
        .ok_or("unknown first router")?
        .path_cost();
    if path.links.len() + 1 != path.routers.len() {
        return Err("links and routers do not alternate".into());
    }
    for (i, pair) in path.routers.windows(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        if i > 0 && graph.router(a).is_some_and(|r| r.no_traversal) {
            return Err(format!("{a} carries traffic but is no-traversal"));
        }
        let (link_cost, link_id) = graph
            .neighbours(a)
            .find(|(n, _, _)| n == b)
            .map(|(_, c, l)| (c, l.to_owned()))
            .ok_or_else(|| format!("no link {a}–{b}"))?;
        if link_id != path.links[i] {
            return Err(format!("link {} is not the edge {a}–{b}", path.links[i]));
        }
        cost += link_cost + graph.router(b).ok_or("unknown router")?.path_cost();
    }
    let mut seen = path.routers.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != path.routers.len() {
        return Err("a router appears twice".into());
    }
    Ok(cost)
}
