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

pub mod bootstrap;
mod context;
mod controller;
pub mod crypto;
mod edge;
mod enroll;
mod error;
mod identity;
mod listener;
mod pool;
mod stream;
mod tls;
pub mod tunnel;

pub use context::{Context, Options};
pub use controller::Service;
pub use enroll::enroll;
pub use error::{Error, ErrorKind, Result};
pub use identity::Identity;
pub use listener::Listener;
pub use stream::Stream;
