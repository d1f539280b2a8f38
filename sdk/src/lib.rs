//! Weft SDK: enroll an identity, authenticate, list services, dial and host them over
//! end-to-end encrypted streams through Weft (or OpenZiti) edge routers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let identity = weft_sdk::Identity::load("client.json")?;
//! let ctx = weft_sdk::Context::new(identity).await?;
//! let mut stream = ctx.dial("echo").await?;
//! stream.write_all(b"hello").await?;
//! let mut buf = [0u8; 5];
//! stream.read_exact(&mut buf).await?;
//! # Ok(())
//! # }
//! ```

mod context;
mod controller;
// End-to-end encryption: internal, public only with the `internals` feature (for the
// benchmarks).
#[cfg(feature = "internals")]
pub mod crypto;
#[cfg(not(feature = "internals"))]
#[allow(unreachable_pub, dead_code)]
mod crypto;
mod edge;
mod error;
mod events;
mod listener;
mod options;
mod pool;
pub mod posture;
mod stream;
mod tls;
pub mod tunnel;

pub use context::{Context, Options};
pub use controller::{MfaCodes, MfaEnrollment, Service, Terminator};
pub use error::{Error, ErrorKind, Result};
pub use events::{Event, Events};
pub use weft_identity::Identity;

/// Enrolls an identity with its one-time JWT (`weft_identity::enroll_ott`): the
/// controller is trusted only through the token's signature, a fresh P-256 key and CSR
/// are made, and the identity comes back unsaved (see [`Identity::save`]).
///
/// # Errors
/// [`ErrorKind::Enrollment`] for a bad, expired, used or refused token,
/// [`ErrorKind::Controller`] when the controller cannot be reached.
pub async fn enroll(jwt: &str) -> Result<Identity> {
    Ok(weft_identity::enroll_ott(jwt).await?)
}
#[cfg(feature = "axum")]
pub use listener::ServiceAddr;
pub use listener::{DEFAULT_MAX_TERMINATORS, Listener};
pub use options::{BindOptions, DialOptions, Precedence};
pub use stream::{OwnedReadHalf, OwnedWriteHalf, ReuniteError, Stream};
