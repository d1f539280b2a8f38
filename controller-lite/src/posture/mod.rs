//! Posture checks: what an endpoint must prove about itself (operating system, MAC
//! address, domain, running processes, a recent TOTP answer) before a service policy
//! lets it use a service, and whether it still does while it uses it.
//!
//! Sans-IO: [`checks`] are the documents administrators write, [`data`] what endpoints
//! report, [`eval`] the judgement; the API handlers and the router view (which revokes
//! sessions whose posture no longer passes) feed them from the store.

pub mod checks;
pub mod data;
pub mod eval;
pub mod version_range;

pub use checks::PostureCheck;
pub use data::{PostureData, PostureResponse, SessionPosture};
pub use eval::{Judged, PolicyVerdict, any_passing};
