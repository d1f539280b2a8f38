//! Weft's test kit: the pieces every layer's tests share, so that each exists once.
//!
//! - [`boot`]: the steps of booting a network, fallible (shared with `weft-perf`);
//! - [`postgres`]: a real PostgreSQL cluster in a temporary directory;
//! - [`proxy`]: a fault-injecting TCP proxy (latency, stalls, byte-exact cuts, resets);
//! - [`process`]: the workspace binaries (built on demand) as killed-on-drop processes;
//! - [`control`]: a fake controller on the control channel, driven by the test;
//! - [`controller`]: a real `weft-controller` ([`Ctl`]) and a management session
//!   ([`Admin`]);
//! - [`edge`]: a raw edge-protocol client over TLS ([`EdgeClient`]);
//! - [`network`]: a controller with enrolled routers and `weft tunnel` endpoints;
//! - [`fixtures`]: the C SDK's login body, CSRs, JWT claims, byte patterns;
//! - [`state`]: what the controller pushes to routers (API sessions, sessions,
//!   `StateSync`s).
//!
//! ```no_run
//! # async fn demo() {
//! let net = weft_testkit::Network::start().await;
//! net.service("echo", &["echo"], true).await;
//! # }
//! ```
//!
//! Only ever a dev-dependency of a production crate. Its helpers panic on failure:
//! they are test code, and a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

pub mod boot;
pub mod control;
pub mod controller;
pub mod edge;
pub mod fixtures;
pub mod network;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod state;
pub mod third_party_ca;
pub mod traffic;

pub use controller::{Admin, Ctl};
pub use edge::{EdgeClient, EdgeReader, EdgeWriter, hello_accepted, tls_with};
pub use fixtures::{
    SDK_AUTH_BODY, certificate_names, exchange, join_all, jwt_claims, make_csr, pattern,
};
pub use network::{Line, Network, Router, Tunnel, init_logs, init_logs_or, wait_links};
pub use process::{bin_dir, free_port};
pub use third_party_ca::ThirdPartyCa;
