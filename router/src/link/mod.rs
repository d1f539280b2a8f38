//! Links to other routers (the mesh), sans-IO. So far the parts a link session is made
//! of, each a small state machine over time:
//!
//! - [`health`]: heartbeats, the link's measured latency, and when a silent link is dead;
//! - [`backoff`]: when to dial a lost link again (exponential, with jitter);
//! - [`duplicate`]: which of two links between one pair of routers both keep.
//!
//! The link session that carries circuits over them (wire messages in
//! `weft_wire::link`) builds on these; see `docs/wire-format.md` §7.
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)

pub mod backoff;
pub mod duplicate;
pub mod health;
