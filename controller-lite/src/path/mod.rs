//! Path selection, sans-IO: through which routers a circuit goes and which terminator it
//! reaches. The controller's half of the mesh: given the routers, the links between
//! them with their measured latencies, and a service's terminators, it answers a dial.
//!
//! # Semantics (after OpenZiti's fabric)
//!
//! - **Link cost** = static cost + the latency (ms) each side measured
//!   ([`Link::cost`]). OpenZiti: `controller/model/link_model.go` (static cost default 1,
//!   source and destination latency including queue time). A link that is not up is no
//!   edge of the graph.
//! - **Path cost** = Σ link costs + Σ over the path's routers of max(router cost,
//!   [`MIN_ROUTER_COST`]). Shortest paths by Dijkstra over routers connected to the
//!   controller; a router flagged *no traversal* may start or end a path but never be in
//!   the middle of one. OpenZiti: `controller/model/path.go`,
//!   `controller/network/network_path.go`.
//! - **Route cost** of a terminator = path cost to its router + its static cost + its
//!   dynamic cost ([`DynamicCost`]), placed in the band of its precedence
//!   ([`Precedence`]): required `[0, 4·65535)`, default `[4·65535, 8·65535)`, failed
//!   `[8·65535, 12·65535)`, clamped to the band's top. So any required terminator beats
//!   any default one, whatever the paths. OpenZiti: `controller/xt/costs.go`.
//! - **Strategies** ([`Strategy`]) choose among the reachable terminators of the best
//!   (lowest) precedence band: `smartrouting` the lowest route cost; `weighted` at random
//!   with weight 1 − cost/Σcost (an unbiased cost of 0 counts as 1); `random` uniformly;
//!   `sticky` the terminator a stickiness token names when it is in the best band, else
//!   as `smartrouting`. OpenZiti: `controller/xt_smartrouting`, `xt_weighted`,
//!   `xt_random`, `xt_sticky` (`impl.go` each).
//! - **Dynamic cost** = 2 per circuit + a failure cost that a failed dial raises by 20
//!   and a successful one lowers by 2 (never below 0), clamped to 65,535. OpenZiti:
//!   `controller/xt_common/cost_visitor.go` (`NewCostVisitor(2, 20, 2)`).
//!
//! Ties are broken deterministically (by router id, then by terminator id), so one state
//! gives one answer. [`naive`] answers the same questions by enumerating every simple
//! path; property tests check the two against each other.
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)
#![warn(missing_docs)]

mod graph;
pub mod naive;
mod select;

#[cfg(test)]
mod tests;

pub use graph::{Graph, Link, MIN_ROUTER_COST, Path, Router, ShortestPaths};
pub use select::{
    Candidate, DynamicCost, Precedence, Ranked, Strategy, UnknownStrategy, choose, rank,
};
