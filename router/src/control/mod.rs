//! The control channel to the controller (`docs/wire-format.md` §8).
//!
//! - [`protocol`]: the sans-IO client state machine (bytes in, messages and requests out).
//! - [`client`]: the tokio tasks (one per controller address) that connect with mutual
//!   TLS, drive the protocol, reconnect with backoff, and hand [`ControlEvent`]s to the
//!   rest of the router;
//! - [`failover`]: which of the connections to several controllers is the primary
//!   (sans-IO).

pub mod client;
pub mod failover;
pub mod protocol;

pub use client::{ClientError, ControlConfig, ControlEvent, ControlHandle, ControlStats, spawn};
pub use protocol::{ControlProtocol, ProtocolError, ProtocolEvent, RequestId};
