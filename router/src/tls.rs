//! The router's TLS: the one module that knows rustls.
//!
//! The edge listener speaks TLS 1.2 (all the OpenZiti C SDK 0.29.3 knows, spec §8) and
//! TLS 1.3, ECDHE key exchange only, with AES-GCM or ChaCha20-Poly1305. Client
//! certificates are **required** and their chain must verify against the CAs that may
//! issue identity certificates (the controller's CA bundle, `ca.pem`). The handshake
//! signature proves the client holds the key of the **leaf** certificate only, so only
//! the leaf's fingerprint is kept ([`client_leaf_fingerprint`]) and bound to an API
//! session in [`crate::sessions::SessionTable::check_hello`]; any other certificate of
//! the chain is merely presented, never proof of an identity. (OpenZiti's router
//! accepted a session when any certificate of the chain matched, GHSA-mrpr-756c-xm47.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
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
    /// The CA bundle that verifies client certificates held no usable CA certificate.
    #[error("no usable CA certificate in the client CA bundle: {0}")]
    ClientCa(String),
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
/// (leaf first), its private key (PKCS#8, PKCS#1 or SEC1) and the CA certificates that
/// client certificates must chain to.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: &[u8],
) -> Result<ServerConfig, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Certificate("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    let provider = Arc::new(provider());
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca_pem) {
        let ca = ca.map_err(|e| TlsError::ClientCa(e.to_string()))?;
        roots
            .add(ca)
            .map_err(|e| TlsError::ClientCa(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::ClientCa("no CERTIFICATE block".into()));
    }
    // No CA names in the CertificateRequest: the SDKs hold one identity certificate
    // each, and OpenZiti's router sends none either.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .clear_root_hint_subjects()
        .build()
        .map_err(|e| TlsError::ClientCa(e.to_string()))?;
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
pub fn load_server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<ServerConfig, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|error| TlsError::Read {
            path: path.to_owned(),
            error,
        })
    };
    server_config(&read(cert)?, &read(key)?, &read(client_ca)?)
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

/// The fingerprint of the client's **leaf** certificate, the one whose key the
/// handshake proved; `None` before the handshake has verified it. Certificates after the
/// leaf are only presented and never identify the client.
pub fn client_leaf_fingerprint(conn: &rustls::CommonState) -> Option<String> {
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| fingerprint(leaf))
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

    /// Only the leaf whose key the handshake proved identifies a client: a chain that
    /// puts the client's own self-signed leaf before a victim's certificate
    /// (GHSA-mrpr-756c-xm47), or a certificate of a CA the router does not trust, fails
    /// the handshake; a good client is known by its leaf's fingerprint.
    #[test]
    fn only_a_leaf_the_ca_issued_identifies_a_client() {
        use test_pki::{ClientOptions, TestPki};
        let pki = TestPki::new().unwrap();
        for versions in [&[&rustls::version::TLS12], &[&rustls::version::TLS13]] {
            for options in [
                ClientOptions {
                    forged_leaf: true,
                    ..ClientOptions::default()
                },
                ClientOptions {
                    foreign_ca: true,
                    ..ClientOptions::default()
                },
            ] {
                let result = pki.handshaken_with(versions, &options);
                assert!(result.is_err(), "{options:?} must fail the handshake");
            }
            let (_, server) = pki.handshaken(versions).unwrap();
            assert_eq!(
                server.client_leaf_fingerprint(),
                Some(fingerprint(pki.client_leaf_der()))
            );
        }
    }

    #[test]
    fn a_client_ca_bundle_without_certificates_is_refused() {
        let pki = test_pki::TestPki::new().unwrap();
        assert!(matches!(
            server_config(
                pki.server_cert_pem().as_bytes(),
                pki.server_key_pem().as_bytes(),
                b""
            ),
            Err(TlsError::ClientCa(_))
        ));
    }

    #[test]
    fn garbage_pem_is_a_typed_error() {
        assert!(matches!(
            server_config(b"nothing", b"nothing", b"nothing"),
            Err(TlsError::Certificate(_))
        ));
    }
}
