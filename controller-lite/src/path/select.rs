//! Terminator choice: route costs in precedence bands, and the strategies.

use std::fmt;
use std::str::FromStr;

use super::graph::{Graph, Path};

/// The width of a precedence band (OpenZiti: 4 × `math.MaxUint16`).
const BAND: u64 = 4 * 65_535;

/// A terminator's precedence: required ones are chosen before default ones, default
/// before failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Precedence {
    /// Always preferred (the active side of an active/passive pair).
    Required,
    /// Where terminators start.
    Default,
    /// Used only when every other terminator has failed too.
    Failed,
}

impl Precedence {
    /// The lowest route cost of the band.
    pub fn base(self) -> u64 {
        match self {
            Self::Required => 0,
            Self::Default => BAND,
            Self::Failed => 2 * BAND,
        }
    }

    /// `cost` placed in the band: base + cost, clamped to the band's top.
    pub fn biased(self, cost: u64) -> u64 {
        self.base() + cost.min(BAND - 1)
    }

    /// OpenZiti's names: `required`, `default`, `failed`; anything else is default.
    pub fn from_name(name: &str) -> Self {
        match name {
            "required" => Self::Required,
            "failed" => Self::Failed,
            _ => Self::Default,
        }
    }
}

/// A terminator's cost from its use: 2 per circuit, plus a failure cost that each failed
/// dial raises by 20 and each successful one lowers by 2.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DynamicCost {
    /// Circuits open on the terminator.
    pub circuits: u32,
    /// The failure cost.
    pub failure: u16,
}

impl DynamicCost {
    /// The cost, clamped to 65,535.
    pub fn get(&self) -> u16 {
        let cost = u64::from(self.circuits) * 2 + u64::from(self.failure);
        u16::try_from(cost).unwrap_or(u16::MAX)
    }

    /// A dial through the terminator failed.
    pub fn dial_failed(&mut self) {
        self.failure = self.failure.saturating_add(20);
    }

    /// A dial through the terminator succeeded (a circuit now uses it).
    pub fn dial_succeeded(&mut self) {
        self.failure = self.failure.saturating_sub(2);
        self.circuits = self.circuits.saturating_add(1);
    }

    /// A circuit on the terminator ended.
    pub fn circuit_ended(&mut self) {
        self.circuits = self.circuits.saturating_sub(1);
    }
}

/// A terminator of the service being dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its id.
    pub id: String,
    /// The router it is bound on.
    pub router: String,
    /// Its precedence.
    pub precedence: Precedence,
    /// Its static cost (set at bind).
    pub static_cost: u16,
    /// Its dynamic cost.
    pub dynamic: DynamicCost,
}

/// A reachable candidate with the path to it and its route cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked {
    /// The candidate.
    pub candidate: Candidate,
    /// The shortest path from the dialler's router to the candidate's router.
    pub path: Path,
    /// Path cost + static cost + dynamic cost, in the band of its precedence.
    pub route_cost: u64,
}

impl Ranked {
    /// The route cost without its band's base.
    pub fn unbiased_cost(&self) -> u64 {
        self.route_cost - self.candidate.precedence.base()
    }
}

/// Ranks `candidates` for a dial entering the network at router `from`: the reachable
/// ones with their paths and route costs, cheapest first (ties by terminator id).
/// Candidates on routers `from` cannot reach are left out.
pub fn rank(graph: &Graph, from: &str, candidates: &[Candidate]) -> Vec<Ranked> {
    let paths = graph.shortest_paths(from);
    let mut ranked: Vec<Ranked> = candidates
        .iter()
        .filter_map(|c| {
            let path = paths.path_to(&c.router)?;
            let cost = path.cost + u64::from(c.static_cost) + u64::from(c.dynamic.get());
            Some(Ranked {
                route_cost: c.precedence.biased(cost),
                candidate: c.clone(),
                path,
            })
        })
        .collect();
    ranked.sort_by(|a, b| (a.route_cost, &a.candidate.id).cmp(&(b.route_cost, &b.candidate.id)));
    ranked
}

/// How a service's terminator is chosen among the best-precedence ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// The lowest route cost (OpenZiti's default).
    #[default]
    SmartRouting,
    /// At random, the cheaper the likelier: weight 1 − cost/Σcost.
    Weighted,
    /// Uniformly at random.
    Random,
    /// The terminator the dialler's stickiness token names while it stays in the best
    /// band, else as smart routing.
    Sticky,
}

/// A terminator strategy name Weft does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown terminator strategy {0:?} (smartrouting, weighted, random, sticky)")]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "smartrouting" | "" => Ok(Self::SmartRouting),
            "weighted" => Ok(Self::Weighted),
            "random" => Ok(Self::Random),
            "sticky" => Ok(Self::Sticky),
            other => Err(UnknownStrategy(other.to_owned())),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SmartRouting => "smartrouting",
            Self::Weighted => "weighted",
            Self::Random => "random",
            Self::Sticky => "sticky",
        })
    }
}

/// Chooses among `ranked` (as [`rank`] orders it) by `strategy`. `random` is a number in
/// `[0, 1)` the caller draws (so the choice is a pure function of its inputs); `sticky`
/// the terminator id of the dialler's stickiness token. `None` when nothing is
/// reachable.
pub fn choose<'a>(
    strategy: Strategy,
    ranked: &'a [Ranked],
    random: f64,
    sticky: Option<&str>,
) -> Option<&'a Ranked> {
    let first = ranked.first()?;
    let band_len = ranked
        .iter()
        .take_while(|r| r.candidate.precedence == first.candidate.precedence)
        .count();
    let band = ranked.get(..band_len)?;
    let random = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.0
    };
    match strategy {
        Strategy::SmartRouting => Some(first),
        Strategy::Sticky => sticky
            .and_then(|id| band.iter().find(|r| r.candidate.id == id))
            .or(Some(first)),
        Strategy::Random => {
            let pick = ((random * band.len() as f64) as usize).min(band.len() - 1);
            band.get(pick)
        }
        Strategy::Weighted => {
            if band.len() == 1 {
                return Some(first);
            }
            // An unbiased cost of 0 counts as 1, so every weight is defined.
            let costs: Vec<f64> = band
                .iter()
                .map(|r| r.unbiased_cost().max(1) as f64)
                .collect();
            let total: f64 = costs.iter().sum();
            let weights: Vec<f64> = costs.iter().map(|c| 1.0 - c / total).collect();
            let total_weight: f64 = weights.iter().sum();
            if total_weight <= 0.0 {
                return Some(first);
            }
            let mut cumulative = 0.0;
            for (r, w) in band.iter().zip(&weights) {
                cumulative += w / total_weight;
                if random < cumulative {
                    return Some(r);
                }
            }
            band.last()
        }
    }
}
