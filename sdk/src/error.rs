//! The SDK's one public error type.

use std::fmt;

/// What went wrong, in terms a caller can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The identity file is missing, malformed, or its certificate and key are unusable.
    Identity,
    /// Enrollment failed: bad, expired or used token, or the controller refused the CSR.
    Enrollment,
    /// The controller refused the credentials, or policy does not grant this action.
    NotAuthorized,
    /// No service of that name is visible to this identity.
    NoSuchService,
    /// None of the edge routers offered for the service could be reached.
    NoEdgeRouter,
    /// The controller removed the session (or API session) this stream relied on.
    SessionRevoked,
    /// An operation did not finish in time.
    TimedOut,
    /// The controller could not be reached or answered something unexpected.
    Controller,
    /// The edge router connection failed or the router refused the request.
    Connection,
    /// End-to-end encryption failed (missing or bad peer key, corrupt data).
    Crypto,
    /// The peer or router broke the protocol.
    Protocol,
    /// The stream, listener or context is closed.
    Closed,
    /// The controller asks for a TOTP code (an MFA authentication query) and none was
    /// supplied ([`crate::Options::with_mfa_codes`]), or it refused the code given.
    Mfa,
    /// The controller refused a session because this host's posture fails the posture
    /// checks of every policy that grants the service (`INVALID_POSTURE`).
    Posture,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Enrollment => "enrollment",
            Self::NotAuthorized => "not authorized",
            Self::NoSuchService => "no such service",
            Self::NoEdgeRouter => "no edge router reachable",
            Self::SessionRevoked => "session revoked",
            Self::TimedOut => "timed out",
            Self::Controller => "controller",
            Self::Connection => "edge router connection",
            Self::Crypto => "end-to-end encryption",
            Self::Protocol => "protocol",
            Self::Closed => "closed",
            Self::Mfa => "MFA",
            Self::Posture => "posture check failed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An SDK error: a [`kind`](Error::kind) to branch on, a message for people, the
/// service and edge router it concerns when there is one, and the underlying error as
/// its [`source`](std::error::Error::source) (walk the chain, e.g. with anyhow's
/// `{:#}`, for the root cause: "connection refused" under a failed controller request).
///
/// Inside an [`std::io::Error`] (what [`crate::Stream`]'s reads and writes return),
/// [`Error::from_io`] finds it again.
#[derive(Clone, Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    service: Option<String>,
    router: Option<String>,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            service: None,
            router: None,
            source: None,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable detail (without the source's).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The service the failed operation was for, when it was for one.
    pub fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }

    /// The edge router involved, when one was.
    pub fn router(&self) -> Option<&str> {
        self.router.as_deref()
    }

    /// The SDK error inside an [`std::io::Error`] returned by a [`crate::Stream`]
    /// read or write (or made with `io::Error::from(sdk_error)`); `None` for other I/O
    /// errors.
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ctx = weft_sdk::Context::from_file("alice.json").await?;
    /// use tokio::io::AsyncReadExt;
    /// let mut stream = ctx.dial("echo").await?;
    /// let mut buf = [0u8; 64];
    /// if let Err(e) = stream.read(&mut buf).await {
    ///     match weft_sdk::Error::from_io(&e).map(weft_sdk::Error::kind) {
    ///         Some(weft_sdk::ErrorKind::SessionRevoked) => println!("access was withdrawn"),
    ///         other => println!("the stream failed: {other:?}: {e}"),
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_io(e: &std::io::Error) -> Option<&Self> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Self>())
    }

    /// This error with `source` as its cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(std::sync::Arc::new(source));
        self
    }

    /// This error, naming the service it concerns.
    #[must_use]
    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// This error, naming the edge router involved.
    #[must_use]
    pub fn with_router(mut self, router: impl Into<String>) -> Self {
        self.router = Some(router.into());
        self
    }

    pub(crate) fn controller(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Controller, message)
    }

    pub(crate) fn connection(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Connection, message)
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol, message)
    }

    pub(crate) fn closed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Closed, message)
    }

    pub(crate) fn timed_out(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TimedOut, message)
    }
}

impl From<weft_identity::IdentityError> for Error {
    /// Identity-file problems are [`ErrorKind::Identity`], token and CSR problems
    /// [`ErrorKind::Enrollment`], an unreachable or odd controller
    /// [`ErrorKind::Controller`]. The message carries the whole cause chain.
    fn from(e: weft_identity::IdentityError) -> Self {
        use weft_identity::IdentityError as E;
        let kind = match &e {
            E::File { .. } | E::Invalid(_) | E::Tls { .. } => ErrorKind::Identity,
            E::TimedOut(_) => ErrorKind::TimedOut,
            E::Connect { .. } | E::Answer(_) => ErrorKind::Controller,
            _ => ErrorKind::Enrollment,
        };
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        Self::new(kind, message)
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match e.kind {
            ErrorKind::TimedOut => Io::TimedOut,
            ErrorKind::NotAuthorized => Io::PermissionDenied,
            ErrorKind::SessionRevoked | ErrorKind::Connection => Io::ConnectionReset,
            ErrorKind::Closed => Io::BrokenPipe,
            ErrorKind::NoSuchService | ErrorKind::NoEdgeRouter => Io::ConnectionRefused,
            ErrorKind::Crypto | ErrorKind::Protocol => Io::InvalidData,
            _ => Io::Other,
        };
        Self::new(kind, e)
    }
}

/// The SDK's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_the_source_and_survives_an_io_error() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::connection("TCP connect to the edge router failed")
            .with_router("localhost:1")
            .with_service("echo")
            .with_source(refused);
        assert_eq!(
            e.to_string(),
            "edge router connection: TCP connect to the edge router failed"
        );
        let cause = std::error::Error::source(&e).unwrap();
        assert_eq!(cause.to_string(), "refused");
        assert_eq!(
            (e.service(), e.router()),
            (Some("echo"), Some("localhost:1"))
        );

        let io: std::io::Error = e.clone().into();
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
        let back = Error::from_io(&io).unwrap();
        assert_eq!(back.kind(), ErrorKind::Connection);
        assert_eq!(back.service(), Some("echo"));
        assert!(Error::from_io(&std::io::Error::other("plain")).is_none());
    }
}
