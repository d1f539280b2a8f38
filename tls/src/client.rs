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

/// A router dialling another router's link listener: the server's chain verifies
/// against `roots` (the network CA) for the dialled name, as [`verified`] does, **and**
/// its leaf's common name is `expected_router_id` (the controller issues each router's
/// server certificate with its id as the common name). The client presents `identity`,
/// its router certificate, which the listener matches by leaf fingerprint.
pub fn link(
    roots: RootCertStore,
    identity: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    expected_router_id: &str,
) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(provider());
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::Ca(e.to_string()))?;
    let verifier = Arc::new(CommonName {
        inner,
        expected: expected_router_id.to_owned(),
    });
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(identity.0, identity.1)?)
}

/// The common name of a DER certificate's subject, if it has one.
pub fn common_name(der: &[u8]) -> Option<String> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == const_oid::db::rfc4519::CN)
        .and_then(|atv| {
            der::asn1::Utf8StringRef::try_from(&atv.value)
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    der::asn1::PrintableStringRef::try_from(&atv.value)
                        .map(|s| s.as_str().to_owned())
                })
                .ok()
        })
}

/// WebPKI verification, then the leaf's common name must be the expected one.
#[derive(Debug)]
struct CommonName {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    expected: String,
}

impl ServerCertVerifier for CommonName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        match common_name(end_entity.as_ref()) {
            Some(cn) if cn == self.expected => Ok(verified),
            other => Err(rustls::Error::General(format!(
                "the link listener's certificate is {other:?}'s, not router {:?}'s",
                self.expected
            ))),
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_cn(cn: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["r.example".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn common_name_reads_the_subject_cn() {
        assert_eq!(
            common_name(&cert_with_cn("router-7")).as_deref(),
            Some("router-7")
        );
        let mut params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let key = rcgen::KeyPair::generate().unwrap();
        let none = params.self_signed(&key).unwrap().der().to_vec();
        assert_eq!(common_name(&none), None);
        assert_eq!(common_name(b"not a certificate"), None);
    }
}
