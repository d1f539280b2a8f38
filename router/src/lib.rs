//! `weft-router`: the edge router's data plane.
//!
//! - [`sessions`]: the API sessions and service sessions the controller pushed, how they
//!   change, and the checks a hello, Connect or Bind must pass (sans-IO).
//! - [`edge`]: the per-connection edge protocol state machine (sans-IO).
//! - [`credit`]: the byte credit edge streams and link circuits share (sans-IO).
//! - [`forward`]: one shard's connections, terminators and circuits (sans-IO).
//! - [`tls`]: the edge listener's TLS (rustls, aws-lc-rs), and [`tls::ServerSession`]:
//!   rustls' handshake, then an own record layer on its keys, on caller-owned buffers.
//! - [`runtime`]: the I/O driver: shards on io_uring (`tokio-uring`) or epoll (tokio
//!   current-thread) runtimes, chosen at start ([`runtime::IoBackend`]), that drive the
//!   sans-IO core, the control seam ([`runtime::ShardCommand`],
//!   [`runtime::ShardRequest`]) and the metrics endpoint.
//! - [`control`]: the control-channel client (a sans-IO protocol state machine and a
//!   tokio task that drives it over mutual TLS), and [`enroll`]: `erott` enrollment.
//! - [`node`]: a whole router: control client, shards and the bridge between them.
//! - [`config`] reads `router.toml`.
//!
//! Circuits whose legs sit on different shards cross by per-shard-pair queues
//! ([`forward::CrossMsg`]). [`link`] is the link to another router (its session,
//! health, dial backoff, duplicate resolution); the forwarder's link legs carry circuits
//! across routers (`forward/mesh.rs`). See
//! `README.md` and `docs/adr/0004-router-runtime.md`.

pub mod config;
pub mod control;
pub mod credit;
pub mod edge;
pub mod enroll;
pub mod forward;
pub mod link;
pub mod node;
pub mod runtime;
pub mod sessions;
pub mod tls;
