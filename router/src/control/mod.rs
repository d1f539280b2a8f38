//! The control channel to the controller (`docs/wire-format.md` §8).
//!
//! - [`protocol`]: the sans-IO client state machine (bytes in, messages and requests out).
//! - [`client`]: the tokio task that connects with mutual TLS, drives the protocol,
//!   reconnects with backoff, and hands [`ControlEvent`]s to the rest of the router;
//! - [`failover`]: which of several controller addresses to connect to next, and when
//!   (sans-IO).

pub mod client;
pub mod failover;
pub mod protocol;

pub use client::{ClientError, ControlConfig, ControlEvent, ControlHandle, ControlStats, spawn};
pub use protocol::{ControlProtocol, ProtocolError, ProtocolEvent, RequestId};
