//! The one error type of this crate.

use std::path::PathBuf;

/// Why a TLS configuration, a certificate or a bundle could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// A certificate PEM held no certificate or could not be parsed.
    #[error("no usable certificate in the certificate PEM: {0}")]
    Certificate(String),
    /// A key PEM held no private key or could not be parsed.
    #[error("no usable private key in the key PEM: {0}")]
    Key(String),
    /// A CA bundle held no usable CA certificate.
    #[error("no usable CA certificate in the CA bundle: {0}")]
    Ca(String),
    /// A PKCS#7 bundle could not be read or made.
    #[error("not a certs-only PKCS#7 bundle: {0}")]
    Pkcs7(String),
    /// A host name or address is not a valid TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// rustls refused the configuration (for example a key that does not match the
    /// certificate).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}
