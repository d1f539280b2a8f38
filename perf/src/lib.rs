//! `weft-perf`: Weft's perf suite.
//!
//! `weft-perf run` boots a local Weft network (controller, router, `weft tunnel`
//! endpoints — processes of the workspace binaries next to this executable) and the
//! baselines (direct loopback, one and two socat hops, an stunnel pair), runs each
//! scenario on every path in alternation, and reports every figure with its ratio to
//! the matching baseline of the same run: `results.json`, a table on stdout
//! (`results.md`) and SVG plots. See `docs/perf.md`.

pub mod baselines;
pub mod control;
pub mod load;
pub mod net;
pub mod paths;
pub mod plot;
pub mod process;
pub mod report;
pub mod reroute;
pub mod revocation;
pub mod run;
pub mod scenarios;
pub mod sdk;
pub mod server;
pub mod sysinfo;
pub mod targets;
