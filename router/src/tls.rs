//! The router's TLS: the one module that knows rustls.
//!
//! The edge listener speaks TLS 1.2 (all the OpenZiti C SDK 0.29.3 knows, spec §8) and
//! TLS 1.3, ECDHE key exchange only, with AES-GCM or ChaCha20-Poly1305. Client
//! certificates are **required** but their chain is not checked here, as OpenZiti's
//! router does with Go's `tls.RequireAnyClientCert`: the handshake signature still proves
//! the client holds the key, and the certificate is bound to an API session by its
//! fingerprint in [`crate::sessions::SessionTable::check_hello`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use sha1::{Digest, Sha1};

#[doc(hidden)]
pub mod fuzzing;
mod record;
mod session;
#[doc(hidden)]
pub mod test_pki;

pub use session::{
    Fed, INCOMING_BUFFER, MAX_RECORD_PLAINTEXT, ServerSession, SessionError, TlsBuf,
};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// The certificate PEM held no certificate or could not be parsed.
    #[error("no usable certificate in the certificate PEM: {0}")]
    Certificate(String),
    /// The key PEM held no private key or could not be parsed.
    #[error("no usable private key in the key PEM: {0}")]
    Key(String),
    /// rustls refused the configuration (for example a key that does not match the
    /// certificate).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider the router uses: aws-lc-rs, restricted to ECDHE with AEAD
/// ciphers (AES-GCM, ChaCha20-Poly1305) for TLS 1.2, and the TLS 1.3 suites.
pub fn provider() -> CryptoProvider {
    use aws_lc_rs::cipher_suite as cs;
    CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..aws_lc_rs::default_provider()
    }
}

/// The edge listener's TLS configuration from PEM text: the server certificate chain
/// (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<ServerConfig, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Certificate("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    let provider = Arc::new(provider());
    let verifier = Arc::new(RequireAnyClientCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    // The C SDK offers no ALPN; neither do we.
    config.alpn_protocols.clear();
    // After the handshake the session runs the records itself on rustls' keys
    // (`session`, `record`).
    config.enable_secret_extraction = true;
    Ok(config)
}

/// [`server_config`] from PEM files.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|error| TlsError::Read {
            path: path.to_owned(),
            error,
        })
    };
    server_config(&read(cert)?, &read(key)?)
}

/// Lower-case hex SHA-1 of a DER certificate, as OpenZiti computes certificate
/// fingerprints (`edge:internal/cert/fingerprint.go`).
pub fn fingerprint(der: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha1::digest(der)
        .iter()
        .fold(String::with_capacity(40), |mut s, b| {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The fingerprints of every certificate the client presented, leaf first; empty when
/// the handshake has not finished.
pub fn client_fingerprints(conn: &rustls::CommonState) -> Vec<String> {
    conn.peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| fingerprint(c))
        .collect()
}

/// Requires a client certificate, accepts any chain, verifies the handshake signature.
#[derive(Debug)]
struct RequireAnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for RequireAnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The chain is deliberately not checked (module docs): the certificate is bound
        // to an API session by fingerprint when the hello arrives.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_lower_hex_sha1() {
        // SHA-1("abc"), FIPS 180-1 appendix A.
        assert_eq!(
            fingerprint(b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn provider_offers_only_ecdhe_aead_suites() {
        let p = provider();
        assert_eq!(p.cipher_suites.len(), 9);
        for suite in &p.cipher_suites {
            let name = format!("{:?}", suite.suite());
            assert!(
                name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
                "{name}"
            );
            assert!(name.contains("GCM") || name.contains("CHACHA20"), "{name}");
        }
    }

    #[test]
    fn garbage_pem_is_a_typed_error() {
        assert!(matches!(
            server_config(b"nothing", b"nothing"),
            Err(TlsError::Certificate(_))
        ));
    }
}
