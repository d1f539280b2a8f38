//! Operations support shared by Weft's processes (the controller, the router and the
//! `weft` CLI), so that each is written once:
//!
//! - [`logging`]: `--log-format text|json` and `--log-level`, to stderr, with colour
//!   only on a terminal;
//! - [`http`]: the operations endpoint, `GET /metrics` (Prometheus text), `/health`
//!   (liveness) and `/ready` (readiness), on axum with bounded connections;
//! - [`process`]: process and build-information metrics from `/proc/self`;
//! - [`config`]: the flat configuration keys of earlier versions, moved to their
//!   sections;
//! - [`report`]: a fatal error as one line, each cause once;
//! - [`malloc`]: glibc's allocator told to keep the memory a data path frees.
//!
//! Depends on no other Weft crate.

pub mod config;
pub mod http;
pub mod logging;
pub mod malloc;
pub mod process;
pub mod report;
