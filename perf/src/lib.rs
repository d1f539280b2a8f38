//! `weft-perf`: the perf suite.
//!
//! Planned contents (issue "perf"): boot a local Weft network and baselines, run
//! throughput, latency and setup-rate scenarios, and report ratios to the baselines
//! measured in the same run. This crate holds no code yet.
