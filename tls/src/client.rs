//! Client configurations: verified against a CA bundle (every client that has one),
//! or pinned to one certificate (enrollment's bootstrap).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore};

use crate::{TlsError, VERSIONS, pem, provider};

/// A client certificate chain (leaf first) and its key.
pub type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A client that verifies servers against `roots` and, with `identity` (certificate
/// chain leaf first, and its key), presents a client certificate.
pub fn verified(
    roots: RootCertStore,
    identity: Option<ClientIdentity>,
) -> Result<ClientConfig, TlsError> {
    verified_with_versions(roots, identity, VERSIONS)
}

/// [`verified`] limited to `versions` (tests that must speak TLS 1.2 as the C SDK).
pub fn verified_with_versions(
    roots: RootCertStore,
    identity: Option<ClientIdentity>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(versions)?
        .with_root_certificates(roots);
    with_identity(builder, identity)
}

/// Finishes `builder` presenting `identity` (chain and key), or no client certificate.
fn with_identity(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    identity: Option<ClientIdentity>,
) -> Result<ClientConfig, TlsError> {
    Ok(match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
    })
}

/// A client identity from PEM text: the certificate chain (leaf first) and its key.
fn identity_from_pem(identity: Option<(&[u8], &[u8])>) -> Result<Option<ClientIdentity>, TlsError> {
    identity
        .map(|(cert, key)| Ok((pem::certificates(cert)?, pem::private_key(key)?)))
        .transpose()
}

/// A client of the **controller** (its APIs and its control channel): [`verified`],
/// and the server's leaf must not be a router's (organizational unit `router`). The
/// controller signs routers' edge certificates with the CA that signs its own, and a
/// router's enrolment chooses the names in its certificate, so without this check a
/// router's key could stand in for the controller's (docs/security.md).
pub fn controller(
    roots: RootCertStore,
    identity: Option<ClientIdentity>,
) -> Result<ClientConfig, TlsError> {
    with_identity(checked(roots, LeafCheck::NotARouter)?, identity)
}

/// [`controller`] from PEM text: the CA bundle, and optionally the client certificate
/// chain and its key.
pub fn controller_from_pem(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<ClientConfig, TlsError> {
    let identity = identity_from_pem(identity)?;
    controller(pem::roots(ca_pem)?, identity)
}

/// The organizational unit the controller puts in every router certificate it issues.
pub const ROUTER_UNIT: &str = "router";

/// [`verified`] from PEM text: the CA bundle, and optionally the client certificate
/// chain and its key.
pub fn verified_from_pem(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<ClientConfig, TlsError> {
    let identity = identity_from_pem(identity)?;
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
/// its router certificate, which the listener matches by leaf fingerprint. Secret
/// extraction is on (after the handshake the router runs the records itself) and
/// session resumption off.
pub fn link(
    roots: RootCertStore,
    identity: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    expected_router_id: &str,
) -> Result<ClientConfig, TlsError> {
    let mut config = checked(roots, LeafCheck::RouterId(expected_router_id.to_owned()))?
        .with_client_auth_cert(identity.0, identity.1)?;
    config.enable_secret_extraction = true;
    // No resumption: a resumed handshake would not check the listener's leaf again.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// A client configuration builder that verifies the server's chain against `roots`
/// (WebPKI, for the dialled name), then its leaf with `check`.
fn checked(
    roots: RootCertStore,
    check: LeafCheck,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, TlsError> {
    let provider = Arc::new(provider());
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::Ca(e.to_string()))?;
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CheckedLeaf { inner, check })))
}

/// The common name of a DER certificate's subject, if it has one.
pub fn common_name(der: &[u8]) -> Option<String> {
    subject_attributes(der, const_oid::db::rfc4519::CN)
        .ok()?
        .into_iter()
        .next()
}

/// The values of attribute `oid` in a DER certificate's subject (empty when it has
/// none); an error when `der` is not a certificate.
fn subject_attributes(
    der: &[u8],
    oid: const_oid::ObjectIdentifier,
) -> Result<Vec<String>, der::Error> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(der)?;
    Ok(cert
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == oid)
        .filter_map(|atv| {
            der::asn1::Utf8StringRef::try_from(&atv.value)
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    der::asn1::PrintableStringRef::try_from(&atv.value)
                        .map(|s| s.as_str().to_owned())
                })
                .ok()
        })
        .collect())
}

/// What a server's leaf must also be, once its chain verified.
#[derive(Debug)]
enum LeafCheck {
    /// Not a router's (organizational unit [`ROUTER_UNIT`]): [`controller`].
    NotARouter,
    /// Router `expected`'s (its common name): [`link`].
    RouterId(String),
}

impl LeafCheck {
    fn check(&self, leaf: &[u8]) -> Result<(), rustls::Error> {
        match self {
            Self::NotARouter => {
                let units = subject_attributes(leaf, const_oid::db::rfc4519::OU)
                    .map_err(|e| rustls::Error::General(format!("the server certificate: {e}")))?;
                if units.iter().any(|unit| unit == ROUTER_UNIT) {
                    return Err(rustls::Error::General(format!(
                        "the server presented a router's certificate ({:?}), not the controller's",
                        common_name(leaf).unwrap_or_default()
                    )));
                }
                Ok(())
            }
            Self::RouterId(expected) => match common_name(leaf) {
                Some(cn) if cn == *expected => Ok(()),
                other => Err(rustls::Error::General(format!(
                    "the link listener's certificate is {other:?}'s, not router {expected:?}'s"
                ))),
            },
        }
    }
}

/// WebPKI verification, then [`LeafCheck`] on the leaf.
#[derive(Debug)]
struct CheckedLeaf {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    check: LeafCheck,
}

impl ServerCertVerifier for CheckedLeaf {
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
        self.check.check(end_entity.as_ref())?;
        Ok(verified)
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

    /// A CA, and a leaf for `localhost` it signed with organizational unit `unit`.
    fn ca_and_leaf(unit: Option<&str>) -> (RootCertStore, CertificateDer<'static>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut leaf = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        leaf.distinguished_name = rcgen::DistinguishedName::new();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "r1");
        if let Some(unit) = unit {
            leaf.distinguished_name
                .push(rcgen::DnType::OrganizationalUnitName, unit);
        }
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        (roots, leaf.der().clone())
    }

    fn controller_verifier(roots: RootCertStore) -> CheckedLeaf {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(provider()),
        )
        .build()
        .unwrap();
        CheckedLeaf {
            inner,
            check: LeafCheck::NotARouter,
        }
    }

    #[test]
    fn a_controller_client_refuses_a_router_certificate() {
        let name = server_name("localhost").unwrap();
        let (roots, router) = ca_and_leaf(Some(ROUTER_UNIT));
        let err = controller_verifier(roots)
            .verify_server_cert(&router, &[], &name, &[], UnixTime::now())
            .unwrap_err();
        assert!(err.to_string().contains("router's certificate"), "{err}");
        for unit in [None, Some("controller")] {
            let (roots, leaf) = ca_and_leaf(unit);
            controller_verifier(roots)
                .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
                .unwrap();
        }
        // The chain is still verified first: another CA's leaf fails as usual.
        let (_, foreign) = ca_and_leaf(None);
        let (roots, _) = ca_and_leaf(None);
        assert!(
            controller_verifier(roots)
                .verify_server_cert(&foreign, &[], &name, &[], UnixTime::now())
                .is_err()
        );
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
