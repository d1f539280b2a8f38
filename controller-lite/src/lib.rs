//! `weft-controller`: controller-lite.
//!
//! Planned contents (issue "controller-lite"): the HTTPS Edge Client and Management
//! APIs, the embedded store, PKI and enrollment, authentication, policy evaluation,
//! sessions and the control channel to routers. This crate holds no code yet.

// Attribute-based policy evaluation (role selectors, naive and indexed evaluators).
pub mod policy;
