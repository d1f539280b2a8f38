//! Per-dial and per-bind options, at parity with OpenZiti's Go SDK (`DialOptions`:
//! `ConnectTimeout`, `AppData`, `Identity`; `ListenOptions`: `Identity`, `Cost`,
//! `Precedence`), carried by the edge Connect and Bind messages (headers
//! `TerminatorIdentity`, `AppData`, `Cost`, `Precedence`; openziti/sdk-golang
//! `ziti/edge/msg.go`).

use std::time::Duration;

/// Options of one [`crate::Context::dial_with_options`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// # let ctx = weft_sdk::Context::from_file("alice.json").await?;
/// use std::time::Duration;
/// let first = ctx.dial("desks").await?;
/// let options = weft_sdk::DialOptions::default()
///     .with_timeout(Duration::from_secs(3))              // ErrorKind::TimedOut past it
///     .with_app_data(br#"{"seat":4}"#.to_vec())          // the host's Stream::app_data
///     .with_stickiness_token(first.stickiness_token().unwrap_or_default().to_vec());
/// let again = ctx.dial_with_options("desks", &options).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DialOptions {
    /// The whole dial (session, router, host) must finish within this; otherwise it
    /// fails with [`crate::ErrorKind::TimedOut`]. `None`: the context's own limits.
    pub timeout: Option<Duration>,
    /// Bytes handed to the host with the dial ([`crate::Stream::app_data`] there).
    pub app_data: Option<Vec<u8>>,
    /// Reach the terminator bound with this identity
    /// ([`BindOptions::identity`]); `None`: any.
    pub identity: Option<String>,
    /// The stickiness token of an earlier stream of the service
    /// ([`crate::Stream::stickiness_token`]; OpenZiti's `DialOptions.StickinessToken`):
    /// when the service's terminator strategy is `sticky`, the dial reaches the same
    /// terminator while it is up and its precedence is the best there is.
    pub stickiness_token: Option<Vec<u8>>,
}

impl DialOptions {
    /// These options with a timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// These options with application data for the host.
    pub fn with_app_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.app_data = Some(data.into());
        self
    }

    /// These options addressing the terminator bound with `identity`.
    pub fn with_identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// These options asking for the terminator an earlier dial reached (see
    /// [`Self::stickiness_token`]).
    pub fn with_stickiness_token(mut self, token: impl Into<Vec<u8>>) -> Self {
        self.stickiness_token = Some(token.into());
        self
    }
}

/// How a terminator ranks against the service's other terminators: `Default`,
/// `Required` (dials go to required terminators while any is up) or `Failed` (used only
/// when no other terminator is left). The wire type of the edge protocol's header.
pub use weft_wire::edge::Precedence;

/// Options of one [`crate::Context::bind_with_options`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// # let ctx = weft_sdk::Context::from_file("host.json").await?;
/// use weft_sdk::{BindOptions, Precedence};
/// let options = BindOptions::default()
///     .with_identity("desk-7")                   // dials naming "desk-7" reach this host
///     .with_cost(5)
///     .with_precedence(Precedence::Required)
///     .with_max_terminators(2)                   // on two edge routers
///     .with_wait_for_terminators(2);             // bind returns once both are up
/// let listener = ctx.bind_with_options("desks", options).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindOptions {
    /// The terminator's identity: dials with [`DialOptions::identity`] equal to it
    /// reach this host (one service, many addressable hosts).
    pub identity: Option<String>,
    /// The terminator's cost (lower is preferred by the cost-based strategies).
    pub cost: Option<u16>,
    /// The terminator's precedence.
    pub precedence: Option<Precedence>,
    /// How many terminators to keep, each on a different edge router the Bind session
    /// lists (OpenZiti's `MaxTerminators`; default
    /// [`crate::DEFAULT_MAX_TERMINATORS`], at least 1). Several let dials
    /// arriving at any of those routers reach this host directly, and keep the service
    /// reachable while one router is lost.
    pub max_terminators: Option<u16>,
    /// How many terminators must be up before [`crate::Context::bind`] returns
    /// (OpenZiti's `WaitForNEstablishedListeners`; at most
    /// [`Self::max_terminators`]); default 1: it returns once the first is up and the
    /// others follow. Past [`crate::Options::connect_timeout`] plus
    /// [`crate::Options::request_timeout`] the bind fails with
    /// [`crate::ErrorKind::TimedOut`].
    pub wait_for_terminators: Option<u16>,
}

impl BindOptions {
    /// These options with a terminator identity.
    pub fn with_identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// These options with a cost.
    pub fn with_cost(mut self, cost: u16) -> Self {
        self.cost = Some(cost);
        self
    }

    /// These options with a precedence.
    pub fn with_precedence(mut self, precedence: Precedence) -> Self {
        self.precedence = Some(precedence);
        self
    }

    /// These options making [`crate::Context::bind`] wait until `n` terminators are up
    /// (see [`Self::wait_for_terminators`]).
    pub fn with_wait_for_terminators(mut self, n: u16) -> Self {
        self.wait_for_terminators = Some(n);
        self
    }

    /// These options keeping at most `n` terminators (one per edge router).
    pub fn with_max_terminators(mut self, n: u16) -> Self {
        self.max_terminators = Some(n);
        self
    }
}
