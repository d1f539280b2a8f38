//! The one error type of this crate.

use std::path::PathBuf;

/// Why an identity could not be read, written or enrolled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An identity document is malformed (a missing field, a URL that is not https).
    #[error("{0}")]
    Invalid(String),
    /// A certificate, key or CA bundle does not parse, or they do not fit together.
    #[error("{what}: {source}")]
    Tls {
        /// Which part (`id.cert`, `id.key`, `id.ca`, the controller's CA bundle).
        what: &'static str,
        /// Why.
        #[source]
        source: weft_tls::TlsError,
    },
    /// The text is not an enrollment token of the expected method.
    #[error("not a usable enrollment token: {0}")]
    Token(String),
    /// The enrollment token expired.
    #[error("the enrollment token expired {seconds_ago} s ago; ask for a new one")]
    Expired {
        /// How long ago (0 when the controller's check said so).
        seconds_ago: i64,
    },
    /// The token's signature does not verify with the controller's certificate key.
    #[error("the enrollment token is not signed by the controller's certificate: {0}")]
    Signature(String),
    /// The controller could not be reached, or TLS to it failed.
    #[error("cannot reach the controller at {url}")]
    Connect {
        /// Where.
        url: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The controller did not answer in time.
    #[error("timed out {0}")]
    TimedOut(String),
    /// The controller refused the request.
    #[error("the controller refused the enrollment ({status}, {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// OpenZiti error code (`error.code`), `UNKNOWN` without one.
        code: String,
        /// Its message.
        message: String,
    },
    /// The controller answered something that is not what the protocol says.
    #[error("unexpected answer from the controller: {0}")]
    Answer(String),
    /// Key or CSR generation failed.
    #[error("key or CSR generation failed: {0}")]
    Keys(#[from] rcgen::Error),
}

impl IdentityError {
    pub(crate) fn connect(
        url: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Connect {
            url: url.into(),
            source: source.into(),
        }
    }
}
