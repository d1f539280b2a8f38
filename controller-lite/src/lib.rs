//! `weft-controller`: controller-lite.
//!
//! The HTTPS Edge Client API (OpenZiti paths and JSON shapes, consumable by the
//! OpenZiti C SDK 0.29.3), the Edge Management API, the embedded SQLite store,
//! the PKI with OTT enrollment, authentication, the router control channel ([`control`]: mutual TLS, change feed, terminators),
//! path selection over the router mesh ([`path`]), and attribute-based policy evaluation ([`policy`]: role selectors, a naive evaluator and
//! the indexed [`policy::PolicyIndex`], property-tested against each other).

#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod authz;
pub mod clock;
pub mod config;
pub mod control;
pub mod controller;
pub mod database;
pub mod domain;
pub mod enroll;
pub mod error;
pub mod extjwt;
pub mod filter;
/// The fuzz targets' entry points (`filter`, `unauth_bodies`): only under `cargo fuzz`
/// (`--cfg fuzzing`) and in this crate's tests, which replay the corpora.
#[cfg(any(test, fuzzing))]
pub mod fuzzing;
pub mod limits;
pub mod model;
pub mod ops;
pub mod path;
pub mod pki;
pub mod policy;
pub mod posture;
pub mod schema_check;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod thirdparty_ca;
