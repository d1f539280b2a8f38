//! The domain layer: the operations on the controller's entities, each one database
//! transaction, in one place. The HTTP handlers (`crate::api`), the control channel and
//! the command line parse their input, call an operation here and render what it
//! returns; they open no write transaction of their own for these operations.
//!
//! - [`entities`]: create (validated, references resolved and checked, unique fields
//!   checked, an enrollment issued for identities and routers), update (PUT and PATCH)
//!   and delete of every management collection ([`crate::model::Kind`]);
//! - [`cas`]: verifying a 3rd-party CA;
//! - [`cascade`]: what a delete or an update means for the entities that reference the
//!   one changed, run inside its transaction;
//! - [`credentials`]: authenticators and enrollments as an administrator manages
//!   them (password authenticators, certificate extension, re-enrollment of
//!   authenticators and routers);
//! - [`identities`]: disabling and enabling an identity, removing its TOTP enrollment;
//! - [`own_account`]: a caller's own API session certificates, certificate
//!   extension and password change;
//! - [`posture`]: posture responses recorded, and what a caller's posture allows;
//! - [`service_configs`]: an identity's own configs for services;
//! - [`sessions`]: issuing a service session (the Dial or Bind grant, the posture
//!   admission, the edge routers it may use, the cap per API session), and ending
//!   sessions and API sessions.
//!
//! Authentication (certificate, password, external JWT, TOTP MFA) is [`crate::auth`],
//! with [`crate::extjwt`] and [`crate::thirdparty_ca`]: outside the HTTP layer too.
//!
//! Errors are [`crate::error::ApiError`]s: typed, and mapped to OpenZiti's error codes
//! and HTTP statuses in one place (`crate::error`). After an operation commits it tells
//! the routers (the change feed), so what it revoked is enforced where traffic flows.

pub mod cas;
pub mod cascade;
pub mod credentials;
pub mod entities;
pub mod identities;
pub mod own_account;
pub mod posture;
pub mod service_configs;
pub mod sessions;
