//! Client configurations: verified against a CA bundle (every client that has one),
//! or pinned to one certificate (enrollment's bootstrap).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore};

use crate::{TlsError, VERSIONS, pem, provider};

/// A client that verifies servers against `roots` and, with `identity` (certificate
/// chain leaf first, and its key), presents a client certificate.
pub fn verified(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, TlsError> {
    verified_with_versions(roots, identity, VERSIONS)
}

/// [`verified`] limited to `versions` (tests that must speak TLS 1.2 as the C SDK).
pub fn verified_with_versions(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(versions)?
        .with_root_certificates(roots);
    Ok(match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
    })
}

/// [`verified`] from PEM text: the CA bundle, and optionally the client certificate
/// chain and its key.
pub fn verified_from_pem(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<ClientConfig, TlsError> {
    let identity = match identity {
        None => None,
        Some((cert, key)) => Some((pem::certificates(cert)?, pem::private_key(key)?)),
    };
    verified(pem::roots(ca_pem)?, identity)
}

/// A client that accepts exactly the server certificate `pin` (or, with `None`, any
/// certificate: trust on first use), and still verifies the handshake signature. Only
/// enrollment's bootstrap uses it: the pinned certificate is the one whose key signed
/// the enrollment token.
pub fn pinned(pin: Option<CertificateDer<'static>>) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(provider());
    let verifier = Arc::new(Pinned {
        pin,
        algs: provider.signature_verification_algorithms,
    });
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The TLS server name of `host` (a DNS name or an IP address; IPv6 brackets removed).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))
}

/// Accepts exactly one server certificate (or, with `None`, any); handshake signatures
/// are always verified.
#[derive(Debug)]
struct Pinned {
    pin: Option<CertificateDer<'static>>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pin {
            Some(pin) if pin.as_ref() != end_entity.as_ref() => Err(rustls::Error::General(
                "the server presented another certificate than the pinned one".into(),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}
