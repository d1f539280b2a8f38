//! Server configurations: the router's edge listener, the controller's control
//! listener and its HTTPS APIs.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};

use crate::{TlsError, VERSIONS, pem, provider};

/// A router's edge listener: TLS 1.3 and 1.2, ECDHE/AEAD only ([`crate::provider`]),
/// a client certificate **required** whose chain verifies against `client_cas` (the
/// CAs that may issue identity certificates). No CA names in the CertificateRequest
/// (the SDKs hold one certificate each; OpenZiti's router sends none either), no ALPN
/// (the C SDK offers none), and secret extraction on: after the handshake the router
/// runs the records itself on rustls' keys.
pub fn edge(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_cas: RootCertStore,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(client_cas), provider.clone())
            .clear_root_hint_subjects()
            .build()
            .map_err(|e| TlsError::Ca(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols.clear();
    config.enable_secret_extraction = true;
    Ok(config)
}

/// [`edge`] from PEM text: the server certificate chain (leaf first), its key and the
/// client CA bundle.
pub fn edge_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: &[u8],
) -> Result<ServerConfig, TlsError> {
    edge(
        pem::certificates(cert_pem)?,
        pem::private_key(key_pem)?,
        pem::roots(client_ca_pem)?,
    )
}

/// The controller's router control listener: TLS 1.3 and 1.2, a client certificate
/// required that chains to `router_cas` (the CA routers' certificates come from);
/// which router it is, the caller checks from the leaf [`crate::fingerprint`].
pub fn control(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    router_cas: RootCertStore,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(router_cas), provider.clone())
            .build()
            .map_err(|e| TlsError::Ca(e.to_string()))?;
    Ok(ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?)
}

/// The controller's HTTPS APIs: TLS 1.3 and 1.2, ALPN `http/1.1`, a client certificate
/// **requested but not required**. The handshake still proves possession of the
/// certificate's key; its chain and who it names are checked by the API handlers
/// (OpenZiti's XWEB server asks with `tls.RequestClientCert` the same way).
pub fn api(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(provider());
    let verifier = Arc::new(RequestClientCert {
        algs: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Asks for a client certificate, accepts any chain at the TLS layer, and still
/// checks the handshake signature (proof of key possession).
#[derive(Debug)]
struct RequestClientCert {
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
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
        // Chain and identity are verified by the API (the authenticate handler).
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}
