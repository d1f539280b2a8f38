//! SVG plots (plotters, SVG backend only): throughput per path, the latency
//! percentile curves, and the per-stream throughput of the multi-stream runs.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::report::{Report, ScenarioReport};

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e:?}")
}

fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    C[i % C.len()]
}

/// Writes every plot the report has data for into `dir`; returns the files.
pub fn write_all(r: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let bulk: Vec<&ScenarioReport> = ["bulk1", "bulk8", "bulk64"]
        .iter()
        .filter_map(|id| r.scenario(id))
        .filter(|s| s.rows.iter().any(|row| row.values.contains_key("gbps")))
        .collect();
    if !bulk.is_empty() {
        let f = dir.join("throughput.svg");
        throughput(&bulk, &f)?;
        files.push(f);
    }
    if let Some(s) = r.scenario("latency")
        && s.rows
            .iter()
            .any(|row| row.series.contains_key("latency_us"))
    {
        let f = dir.join("latency.svg");
        latency(s, &f)?;
        files.push(f);
    }
    let multi: Vec<&ScenarioReport> = ["bulk8", "bulk64"]
        .iter()
        .filter_map(|id| r.scenario(id))
        .filter(|s| {
            s.rows
                .iter()
                .any(|row| row.series.contains_key("streams_gbps"))
        })
        .collect();
    if !multi.is_empty() {
        let f = dir.join("streams.svg");
        streams(&multi, &f)?;
        files.push(f);
    }
    Ok(files)
}

/// Bars of median throughput per path with min–max whiskers, one panel per scenario.
fn throughput(scenarios: &[&ScenarioReport], file: &Path) -> Result<()> {
    let height = 360 * u32::try_from(scenarios.len()).unwrap_or(1);
    let root = SVGBackend::new(file, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    for (area, s) in root
        .split_evenly((scenarios.len(), 1))
        .iter()
        .zip(scenarios)
    {
        let rows: Vec<(String, f64, f64, f64)> = s
            .rows
            .iter()
            .filter_map(|row| {
                let v = row.values.get("gbps")?;
                let lo = v.samples.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.samples.iter().copied().fold(0.0, f64::max);
                Some((row.path.clone(), v.median, lo, hi))
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let n = rows.len();
        let ymax = rows.iter().map(|r| r.3).fold(0.0, f64::max).max(0.001) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{} — Gbit/s (median, min–max)", s.title),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..ymax)
            .map_err(err)?;
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc("Gbit/s")
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    names.get(*i).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .draw()
            .map_err(err)?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .margin(12)
                    .style_func(|x, _| {
                        let i = match x {
                            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => *i,
                            SegmentValue::Last => 0,
                        };
                        color(i).filled()
                    })
                    .data(rows.iter().enumerate().map(|(i, r)| (i, r.1))),
            )
            .map_err(err)?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                PathElement::new(
                    vec![
                        (SegmentValue::CenterOf(i), r.2),
                        (SegmentValue::CenterOf(i), r.3),
                    ],
                    BLACK.stroke_width(2),
                )
            }))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// "Nines" scale: 0 → p0, 1 → p90, 2 → p99, 3 → p99.9, 4 → p99.99.
fn nines(q: f64) -> f64 {
    (-(1.0 - q).max(1e-4).log10()).clamp(0.0, 4.0)
}

/// Round-trip time percentile curves per path, log scale.
fn latency(s: &ScenarioReport, file: &Path) -> Result<()> {
    let curves: Vec<(&str, &Vec<[f64; 2]>)> = s
        .rows
        .iter()
        .filter_map(|r| Some((r.path.as_str(), r.series.get("latency_us")?)))
        .collect();
    let all = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p[1]));
    let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let root = SVGBackend::new(file, (960, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Ping-pong round trip, 64 B, by percentile (µs, log scale)",
            ("sans-serif", 20),
        )
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(
            0f64..4.0,
            ((lo * 0.8).max(0.1)..(hi * 1.3).max(1.0)).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("µs")
        .x_labels(5)
        .x_label_formatter(&|x| match x.round() as i64 {
            0 => "p0".into(),
            1 => "p90".into(),
            2 => "p99".into(),
            3 => "p99.9".into(),
            _ => "p99.99".into(),
        })
        .draw()
        .map_err(err)?;
    for (i, (name, c)) in curves.iter().enumerate() {
        let col = color(i);
        chart
            .draw_series(LineSeries::new(
                c.iter().map(|p| (nines(p[0]), p[1])),
                col.stroke_width(2),
            ))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Per-stream throughput, sorted, per path (one panel per multi-stream scenario).
fn streams(scenarios: &[&ScenarioReport], file: &Path) -> Result<()> {
    let height = 400 * u32::try_from(scenarios.len()).unwrap_or(1);
    let root = SVGBackend::new(file, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    for (area, s) in root
        .split_evenly((scenarios.len(), 1))
        .iter()
        .zip(scenarios)
    {
        let curves: Vec<(&str, &Vec<[f64; 2]>)> = s
            .rows
            .iter()
            .filter_map(|r| Some((r.path.as_str(), r.series.get("streams_gbps")?)))
            .collect();
        let n = curves.iter().map(|(_, c)| c.len()).max().unwrap_or(1) as f64;
        let hi = curves
            .iter()
            .flat_map(|(_, c)| c.iter().map(|p| p[1]))
            .fold(0.0, f64::max)
            .max(0.001);
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{} — per-stream Gbit/s, sorted (last round)", s.title),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.5f64..n + 0.5, 0f64..hi * 1.15)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("stream (slowest first)")
            .y_desc("Gbit/s")
            .draw()
            .map_err(err)?;
        for (i, (name, c)) in curves.iter().enumerate() {
            let col = color(i);
            chart
                .draw_series(LineSeries::new(
                    c.iter().map(|p| (p[0], p[1])),
                    col.stroke_width(2),
                ))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}
