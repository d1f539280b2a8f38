//! `weft-router`: the edge router's data plane.
//!
//! Present so far, all sans-IO (no sockets, no clock: time is an input):
//! - [`sessions`]: the API sessions and service sessions the controller pushed, how they
//!   change, and the checks a hello, Connect or Bind must pass.
//!
//! To come (issue "router"): the per-connection edge state machine, forwarding between
//! connections and shards, per-core io_uring drivers with an epoll fallback, the
//! control-channel client and metrics. See `shared/design/ARCHITECTURE.md`.

pub mod edge;
pub mod forward;
pub mod sessions;
