//! `weft-router`: the edge router's data plane.
//!
//! Present so far:
//! - [`sessions`] (sans-IO): the API sessions and service sessions the controller
//!   pushed, how they change, and the checks a hello, Connect or Bind must pass.
//! - [`control`]: the control-channel client (a sans-IO protocol state machine and a
//!   tokio task that drives it over mutual TLS), and [`enroll`]: `erott` enrollment.
//!
//! To come (issue "router"): the per-connection edge state machine, forwarding between
//! connections and shards, per-core io_uring drivers with an epoll fallback, and
//! metrics. See `shared/design/ARCHITECTURE.md`.

pub mod control;
pub mod edge;
pub mod enroll;
pub mod forward;
pub mod sessions;
