//! Links to other routers (the mesh), sans-IO:
//!
//! - [`session`]: one link's protocol (hello, circuits' data under per-circuit credit,
//!   heartbeats, closes; wire messages in `weft_wire::link`, `docs/wire-format.md` §7);
//! - [`health`]: heartbeats, the link's measured latency, and when a silent link is dead;
//! - [`backoff`]: when to dial a lost link again (exponential, with jitter);
//! - [`duplicate`]: which of two links between one pair of routers both keep.
//!
//! Not yet driven by the shards: the listeners, dialers and the forwarder's link legs
//! come next.
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)

pub mod backoff;
pub mod duplicate;
pub mod health;
pub mod session;
