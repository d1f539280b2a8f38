//! The edge protocol, router side: one [`EdgeConnection`] per SDK connection.
//!
//! The state machine is sans-IO. A driver feeds it received bytes and the time, and
//! drains three outputs in this order after every input:
//! 1. [`EdgeConnection::poll_transmit`]: frames to write to the SDK, as a head and a
//!    payload for one vectored write;
//! 2. [`EdgeConnection::poll_event`]: what the forwarding layer must act on (a dial to
//!    route, a bind to register, payload to relay, a connection to close);
//! 3. [`EdgeConnection::poll_timeout`]: when to call [`EdgeConnection::handle_timeout`].
//!
//! The forwarding layer answers events with commands (`connect_succeeded`,
//! `bind_failed`, `send_data`, `dial_host`, ...), which queue more transmits.
//! Protocol facts: `docs/wire-format.md` (from ziti-sdk-c 0.29.3 and the Go router of
//! openziti/edge v0.22.39).
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)

mod connection;
mod event;

pub use connection::{EdgeConfig, EdgeConnection};
pub use event::{
    CircuitId, CloseReason, ConnEnd, EdgeEvent, Head, INLINE_HEAD, Stickiness, Transmit,
};

#[cfg(test)]
mod tests;
