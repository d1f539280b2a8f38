//! The router graph and shortest paths over it (Dijkstra with router costs).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// A router counts at least this much on a path (OpenZiti's floor on router cost).
pub const MIN_ROUTER_COST: u64 = 10;

/// A router as path selection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    /// Its id.
    pub id: String,
    /// Its static cost (counted as at least [`MIN_ROUTER_COST`]).
    pub cost: u16,
    /// Whether it is connected to the controller (others are not in the graph).
    pub connected: bool,
    /// May start or end a path but never carry one through.
    pub no_traversal: bool,
}

impl Router {
    /// What the router adds to a path's cost.
    pub fn path_cost(&self) -> u64 {
        u64::from(self.cost).max(MIN_ROUTER_COST)
    }
}

/// A link between two routers, as the routers reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its id.
    pub id: String,
    /// The router that dialled it.
    pub src: String,
    /// The router that accepted it.
    pub dst: String,
    /// Its static cost.
    pub static_cost: u32,
    /// The latency the source side measured, ms.
    pub src_latency_ms: u32,
    /// The latency the destination side measured, ms.
    pub dst_latency_ms: u32,
    /// Whether it is up (a down link is no edge).
    pub up: bool,
}

impl Link {
    /// Static cost + both sides' latency.
    pub fn cost(&self) -> u64 {
        u64::from(self.static_cost)
            + u64::from(self.src_latency_ms)
            + u64::from(self.dst_latency_ms)
    }
}

/// A path from one router to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The routers, first to last (one router when both ends are the same).
    pub routers: Vec<String>,
    /// The links between consecutive routers.
    pub links: Vec<String>,
    /// Σ link costs + Σ router costs.
    pub cost: u64,
}

/// The connected routers and the up links between them. Traffic flows both ways on a
/// link, so each is an edge in both directions; of several links between one pair, the
/// cheapest (then the lowest id) is the edge.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    routers: BTreeMap<String, Router>,
    /// router → neighbour → (link cost, link id)
    edges: BTreeMap<String, BTreeMap<String, (u64, String)>>,
}

impl Graph {
    /// The graph of `routers` and `links`; routers not connected, links not up and links
    /// to unknown or unconnected routers are left out.
    pub fn new(
        routers: impl IntoIterator<Item = Router>,
        links: impl IntoIterator<Item = Link>,
    ) -> Self {
        let routers: BTreeMap<String, Router> = routers
            .into_iter()
            .filter(|r| r.connected)
            .map(|r| (r.id.clone(), r))
            .collect();
        let mut edges: BTreeMap<String, BTreeMap<String, (u64, String)>> = BTreeMap::new();
        for link in links {
            if !link.up
                || link.src == link.dst
                || !routers.contains_key(&link.src)
                || !routers.contains_key(&link.dst)
            {
                continue;
            }
            let entry = (link.cost(), link.id.clone());
            for (a, b) in [(&link.src, &link.dst), (&link.dst, &link.src)] {
                let slot = edges.entry(a.clone()).or_default().entry(b.clone());
                slot.and_modify(|e| {
                    if entry < *e {
                        *e = entry.clone();
                    }
                })
                .or_insert_with(|| entry.clone());
            }
        }
        Self { routers, edges }
    }

    /// The router `id`, if it is in the graph.
    pub fn router(&self, id: &str) -> Option<&Router> {
        self.routers.get(id)
    }

    /// The routers in the graph, by id.
    pub fn routers(&self) -> impl Iterator<Item = &Router> {
        self.routers.values()
    }

    /// The neighbours of `id` with the cost and id of the link to each.
    pub fn neighbours(&self, id: &str) -> impl Iterator<Item = (&str, u64, &str)> {
        self.edges
            .get(id)
            .into_iter()
            .flatten()
            .map(|(n, (cost, link))| (n.as_str(), *cost, link.as_str()))
    }

    /// Shortest paths from router `from` to every router it can reach (empty when
    /// `from` is not in the graph).
    pub fn shortest_paths(&self, from: &str) -> ShortestPaths {
        let mut best: BTreeMap<String, (u64, Option<(String, String)>)> = BTreeMap::new();
        let Some(start) = self.routers.get(from) else {
            return ShortestPaths { best };
        };
        // (cost so far, router) — ties popped by router id, so answers are stable.
        let mut queue = BinaryHeap::new();
        best.insert(from.to_owned(), (start.path_cost(), None));
        queue.push(Reverse((start.path_cost(), from.to_owned())));
        while let Some(Reverse((cost, at))) = queue.pop() {
            if best.get(&at).is_some_and(|(c, _)| *c < cost) {
                continue;
            }
            // A no-traversal router ends paths; it forwards none (the start excepted:
            // a path may start there).
            if at != from && self.routers.get(&at).is_some_and(|r| r.no_traversal) {
                continue;
            }
            for (next, link_cost, link_id) in self.neighbours(&at) {
                let Some(router) = self.routers.get(next) else {
                    continue;
                };
                let through = cost + link_cost + router.path_cost();
                let better = match best.get(next) {
                    None => true,
                    Some((c, _)) => through < *c,
                };
                if better {
                    best.insert(
                        next.to_owned(),
                        (through, Some((at.clone(), link_id.to_owned()))),
                    );
                    queue.push(Reverse((through, next.to_owned())));
                }
            }
        }
        ShortestPaths { best }
    }
}

/// The answer of [`Graph::shortest_paths`].
#[derive(Debug, Clone)]
pub struct ShortestPaths {
    /// router → (path cost, previous router and the link from it)
    best: BTreeMap<String, (u64, Option<(String, String)>)>,
}

impl ShortestPaths {
    /// The cost of the shortest path to `to`, if it is reachable.
    pub fn cost_to(&self, to: &str) -> Option<u64> {
        self.best.get(to).map(|(c, _)| *c)
    }

    /// The shortest path to `to`, if it is reachable.
    pub fn path_to(&self, to: &str) -> Option<Path> {
        let (cost, _) = self.best.get(to)?;
        let mut routers = vec![to.to_owned()];
        let mut links = Vec::new();
        let mut at = to;
        while let Some((_, Some((prev, link)))) = self.best.get(at) {
            routers.push(prev.clone());
            links.push(link.clone());
            at = prev;
            // A path is at most as long as the graph; a cycle here would be a bug.
            if routers.len() > self.best.len() {
                return None;
            }
        }
        routers.reverse();
        links.reverse();
        Some(Path {
            routers,
            links,
            cost: *cost,
        })
    }
}
