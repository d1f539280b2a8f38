//! Weft identities and enrollment bootstrap, shared by the router and the SDK.
//!
//! - [`Identity`]: an enrolled identity, read from and written to OpenZiti's identity
//!   JSON (one file works with both SDKs);
//! - [`bootstrap`]: trusting a controller from an enrollment token, as OpenZiti's SDKs
//!   and routers do, and fetching its CA bundle from `/.well-known/est/cacerts`;
//! - [`claims`]: the claims of an enrollment token;
//! - [`csr`]: certificate signing requests;
//! - [`endpoint`]: `tls://host:port` and `host:port` addresses;
//! - [`enroll_ott`]: identity enrollment with a one-time token;
//! - [`secret`]: files only their owner may read.
//!
//! TLS configurations, PEM and PKCS#7 come from `weft-tls`.

#![warn(missing_docs)]

pub mod bootstrap;
pub mod claims;
pub mod csr;
pub mod endpoint;
mod enroll;
mod error;
mod file;
pub mod secret;

pub use claims::EnrollmentClaims;
pub use enroll::enroll_ott;
pub use error::IdentityError;
pub use file::Identity;
