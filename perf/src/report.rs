//! Results: the JSON document (`results.json`), the readable table, and the targets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::sysinfo::Machine;

/// One metric a scenario reports for each path.
#[derive(Debug, Clone, Serialize)]
pub struct MetricSpec {
    /// Key in [`Row::values`].
    pub key: String,
    /// Column heading.
    pub label: String,
    /// Unit (`Gbit/s`, `µs`, `/s`, `s/GB`, `KiB`, `MiB`, `cores`, `count`).
    pub unit: String,
    /// Whether a larger value is better.
    pub higher_is_better: bool,
}

/// A metric's samples (one per round) for one path.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Value {
    /// Median of the samples.
    pub median: f64,
    /// Every round's value, in order.
    pub samples: Vec<f64>,
    /// `median` divided by the matching baseline's median (same scenario, same run).
    pub ratio: Option<f64>,
}

/// One path's results in a scenario.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    /// The path.
    pub path: String,
    /// Metric key → values.
    pub values: BTreeMap<String, Value>,
    /// Curves for the plots (latency percentiles, per-stream throughputs).
    pub series: BTreeMap<String, Vec<[f64; 2]>>,
}

/// One scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Short id (`bulk1`, `latency`, …).
    pub id: String,
    /// Title.
    pub title: String,
    /// The baseline path each figure is divided by.
    pub baseline: String,
    /// The metrics, in column order.
    pub metrics: Vec<MetricSpec>,
    /// One row per path, in path order.
    pub rows: Vec<Row>,
    /// What the reader should know (skips, failures, limits).
    pub notes: Vec<String>,
}

impl ScenarioReport {
    /// An empty scenario.
    pub fn new(
        id: &str,
        title: &str,
        baseline: &str,
        metrics: &[(&str, &str, &str, bool)],
    ) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            baseline: baseline.into(),
            metrics: metrics
                .iter()
                .map(|(key, label, unit, hib)| MetricSpec {
                    key: (*key).into(),
                    label: (*label).into(),
                    unit: (*unit).into(),
                    higher_is_better: *hib,
                })
                .collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn row_mut(&mut self, path: &str) -> &mut Row {
        if let Some(i) = self.rows.iter().position(|r| r.path == path) {
            // `i` was just found.
            &mut self.rows[i]
        } else {
            self.rows.push(Row {
                path: path.into(),
                ..Row::default()
            });
            let last = self.rows.len() - 1;
            &mut self.rows[last]
        }
    }

    /// Adds one round's value of `key` for `path`.
    pub fn record(&mut self, path: &str, key: &str, value: f64) {
        if value.is_finite() {
            self.row_mut(path)
                .values
                .entry(key.into())
                .or_default()
                .samples
                .push(value);
        }
    }

    /// Sets a plotted curve of `path` (the last round's wins).
    pub fn series(&mut self, path: &str, name: &str, points: Vec<[f64; 2]>) {
        self.row_mut(path).series.insert(name.into(), points);
    }

    /// The row of `path`.
    pub fn row(&self, path: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.path == path)
    }

    /// The median of `key` on `path`.
    pub fn median(&self, path: &str, key: &str) -> Option<f64> {
        self.row(path)?.values.get(key).map(|v| v.median)
    }

    /// Computes medians and the ratios to the baseline row.
    pub fn finish(&mut self) {
        for row in &mut self.rows {
            for v in row.values.values_mut() {
                v.median = median(&v.samples);
            }
        }
        let base: BTreeMap<String, f64> = self
            .row(&self.baseline)
            .map(|r| {
                r.values
                    .iter()
                    .map(|(k, v)| (k.clone(), v.median))
                    .collect()
            })
            .unwrap_or_default();
        for row in &mut self.rows {
            for (k, v) in &mut row.values {
                v.ratio = base
                    .get(k)
                    .filter(|b| **b != 0.0 && b.is_finite())
                    .map(|b| v.median / b);
            }
        }
    }
}

/// The median of `xs` (mean of the middle two for an even count); NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// A performance target and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The goal, in words.
    pub goal: String,
    /// The Weft path it was judged on.
    pub path: String,
    /// The measured figure, in words.
    pub measured: String,
    /// Met, not met, or not measured in this run.
    pub met: Option<bool>,
    /// What limits it (measured shares), when not met; or other context.
    pub note: String,
}

/// A path as the report describes it.
#[derive(Debug, Clone, Serialize)]
pub struct PathInfo {
    /// Its name.
    pub name: String,
    /// What it is.
    pub description: String,
    /// Baseline or Weft.
    pub baseline: bool,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `weft-perf` and its version.
    pub suite: String,
    /// When the run started (UTC, RFC 3339).
    pub started: String,
    /// Wall-clock seconds of the run.
    pub elapsed_s: f64,
    /// Whether `--quick` was given.
    pub quick: bool,
    /// Seconds per measurement, rounds per scenario, idle circuits.
    pub settings: BTreeMap<String, f64>,
    /// Where it ran.
    pub machine: Machine,
    /// The paths measured.
    pub paths: Vec<PathInfo>,
    /// Run-wide notes (io_uring availability, skipped scenarios).
    pub notes: Vec<String>,
    /// The scenarios.
    pub scenarios: Vec<ScenarioReport>,
    /// The targets, met or not.
    pub targets: Vec<Target>,
}

impl Report {
    /// The scenario `id`.
    pub fn scenario(&self, id: &str) -> Option<&ScenarioReport> {
        self.scenarios.iter().find(|s| s.id == id)
    }
}

/// A number in `unit` with sensible precision.
pub fn fmt_value(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    match unit {
        "/s" | "count" => format!("{v:.0}"),
        "µs" | "KiB" | "MiB" => {
            if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        }
        _ => format!("{v:.2}"),
    }
}

/// The readable table: one block per scenario, each cell `median (ratio×)`, then the
/// targets.
pub fn render_table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "weft-perf {} — {}{}",
        r.started,
        r.machine.describe(),
        if r.quick { " — QUICK run" } else { "" }
    );
    for s in &r.scenarios {
        let _ = writeln!(
            out,
            "\n### {} (ratios to {} in the same run)\n",
            s.title, s.baseline
        );
        let mut head = String::from("| path |");
        let mut rule = String::from("|---|");
        for m in &s.metrics {
            let _ = write!(head, " {} ({}) |", m.label, m.unit);
            rule.push_str("---|");
        }
        let _ = writeln!(out, "{head}\n{rule}");
        for row in &s.rows {
            let _ = write!(out, "| {} |", row.path);
            for m in &s.metrics {
                match row.values.get(&m.key) {
                    Some(v) => {
                        let ratio = v.ratio.map_or(String::new(), |x| format!(" ({x:.2}×)"));
                        let n = if v.samples.len() > 1 {
                            format!(
                                " [{}–{}]",
                                fmt_value(min(&v.samples), &m.unit),
                                fmt_value(max(&v.samples), &m.unit)
                            )
                        } else {
                            String::new()
                        };
                        let _ = write!(out, " {}{ratio}{n} |", fmt_value(v.median, &m.unit));
                    }
                    None => out.push_str(" – |"),
                }
            }
            out.push('\n');
        }
        for n in &s.notes {
            let _ = writeln!(out, "\n- {n}");
        }
    }
    if !r.targets.is_empty() {
        let _ = writeln!(out, "\n### Targets (benchmark figures, not assertions)\n");
        let _ = writeln!(
            out,
            "| goal | path | measured | met | what limits it / note |\n|---|---|---|---|---|"
        );
        for t in &r.targets {
            let met = match t.met {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "not measured",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {met} | {} |",
                t.goal, t.path, t.measured, t.note
            );
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for n in &r.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}

fn min(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios_to_the_baseline() {
        let mut s = ScenarioReport::new("t", "T", "base", &[("x", "X", "Gbit/s", true)]);
        for v in [1.0, 3.0, 2.0] {
            s.record("base", "x", v);
        }
        for v in [4.0, 6.0] {
            s.record("weft", "x", v);
        }
        s.finish();
        assert_eq!(s.median("base", "x"), Some(2.0));
        assert_eq!(s.median("weft", "x"), Some(5.0));
        assert_eq!(s.row("weft").and_then(|r| r.values["x"].ratio), Some(2.5));
        assert!(median(&[]).is_nan());
    }
}
