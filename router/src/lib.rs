//! `weft-router`: the edge router's data plane.
//!
//! Planned contents (issue "router"): per-core shards on io_uring (epoll fallback),
//! mTLS edge and link listeners speaking the frames of `weft-wire`, forwarding tables,
//! the control-channel client and push revocation. See `shared/design/ARCHITECTURE.md`.
//! This crate holds no code yet.
