//! `weft-controller`: controller-lite.
//!
//! Present so far:
//! - [`policy`]: attribute-based policy evaluation (role selectors, a naive evaluator and
//!   the indexed [`policy::PolicyIndex`], property-tested against each other).
//!
//! To come (issue "controller-lite"): the HTTPS Edge Client and Management APIs, the
//! embedded store, PKI and enrollment, authentication, sessions and the control channel
//! to routers.

pub mod policy;
