//! The controller's certificate authority: a root CA, a signing (intermediate) CA
//! that issues identity certificates, and an RSA server certificate for the HTTPS
//! listener whose key also signs enrollment JWTs (RS256).
//!
//! Why RSA for the server: the C SDK 0.29.3 verifies the enrollment JWT with the
//! public key of the server's leaf certificate and cannot verify JWS ECDSA
//! signatures (spec `edge-client-api.md` §9.2).

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, RsaKeySize, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::error::PkiError;

/// Why a certificate signing request was refused.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// Not a PEM `CERTIFICATE REQUEST`.
    #[error("the body is not a PEM certificate signing request")]
    NotPem,
    /// DER structure could not be parsed.
    #[error("the certificate signing request could not be parsed")]
    Malformed,
    /// The CSR's self-signature does not verify.
    #[error("the certificate signing request signature is invalid")]
    BadSignature,
    /// The public key type is not supported.
    #[error("unsupported public key in certificate signing request")]
    UnsupportedKey,
    /// A subject alternative name is neither an IP address nor a valid DNS name.
    #[error("invalid DNS name {0:?}")]
    BadName(String),
    /// The CSR asks for more subject alternative names than allowed.
    #[error(
        "the certificate signing request asks for {0} names; at most {MAX_REQUESTED_NAMES} are allowed"
    )]
    TooManyNames(usize),
    /// Signing failed.
    #[error("could not issue certificate: {0}")]
    Sign(#[from] rcgen::Error),
}

/// The most subject alternative names a router's server CSR may ask for.
pub const MAX_REQUESTED_NAMES: usize = 32;

/// A host name as a certificate may name it: dot-separated labels of ASCII letters,
/// digits and inner hyphens, 1 to 63 characters each, 253 in all.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// What a certificate issued from a CSR is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertProfile {
    /// An identity's client certificate (`clientAuth`).
    Client,
    /// An edge router's control-channel client certificate (`clientAuth`, OU `router`).
    RouterClient,
    /// An edge router's edge-listener server certificate (`serverAuth`, OU `router`)
    /// with these DNS names or IP addresses as SANs.
    RouterServer {
        /// DNS names and IP addresses (textual) for the SAN extension.
        names: Vec<String>,
    },
    /// A certificate bound to one API session (`clientAuth`, a SPIFFE URI SAN naming
    /// the identity, API session and certificate, as OpenZiti's).
    ApiSession {
        /// The SAN URI.
        uri: String,
    },
}

/// A certificate issued to an identity.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// PEM encoding.
    pub pem: String,
    /// SHA-1 fingerprint (lower-case hex) of the DER, as OpenZiti stores it.
    pub fingerprint: String,
}

/// The controller PKI, loaded from or created in `DATA_DIR/pki`.
pub struct Pki {
    root_pem: String,
    signing_pem: String,
    root_der: CertificateDer<'static>,
    signing_der: CertificateDer<'static>,
    signing_issuer: Issuer<'static, KeyPair>,
    server_chain: Vec<CertificateDer<'static>>,
    /// This controller's server certificate (its identity among the controllers).
    server_cert: IssuedCert,
    server_key_pkcs8: Vec<u8>,
    jwt_key: jsonwebtoken::EncodingKey,
    /// The `/.well-known/est/cacerts` body, made once.
    cacerts_b64: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

const ROOT_CERT: &str = "root-ca.cert.pem";
const ROOT_KEY: &str = "root-ca.key.pem";
const SIGNING_CERT: &str = "signing-ca.cert.pem";
const SIGNING_KEY: &str = "signing-ca.key.pem";
const SERVER_CERT: &str = "server.cert.pem";
const SERVER_KEY: &str = "server.key.pem";

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    // aws-lc's system RNG only fails when the OS RNG is unavailable; a zero
    // serial is still a valid (if poor) serial, so ignore the error.
    let _ = aws_lc_rs::rand::fill(&mut b);
    b[0] &= 0x7f;
    b[0] |= 0x01;
    SerialNumber::from_slice(&b)
}

/// Base64 (64-character lines) of a certs-only PKCS#7 of `certs`.
fn cacerts_base64(certs: &[&[u8]]) -> Result<String, PkiError> {
    let der = weft_tls::pkcs7::certs_only(certs)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 1);
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    Ok(out)
}

/// Fills `buf` with cryptographically random bytes.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), PkiError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| PkiError::Pem("system RNG unavailable".into()))
}

fn write_private(path: &Path, data: &str) -> Result<(), PkiError> {
    Ok(weft_identity::secret::write_secret(path, data.as_bytes())?)
}

/// The first certificate of `pem`.
fn pem_to_der(pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    let mut certs = weft_tls::pem::certificates(pem.as_bytes())?;
    Ok(certs.swap_remove(0))
}

fn ca_params(cn: &str, constraint: BasicConstraints, years: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Weft");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(constraint);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(365 * years);
    p.serial_number = Some(random_serial());
    p.use_authority_key_identifier_extension = true;
    p
}

impl Pki {
    /// Loads the PKI from `dir`, creating every missing part on first start.
    pub fn load_or_create(dir: &Path, dns_names: &[String]) -> Result<Self, PkiError> {
        fs::create_dir_all(dir)?;
        let p = |n: &str| -> PathBuf { dir.join(n) };
        if !p(ROOT_CERT).exists() {
            let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
            let root_params = ca_params("Weft Root CA", BasicConstraints::Unconstrained, 10);
            let root_cert = root_params.self_signed(&root_key)?;
            let root_issuer = Issuer::new(root_params, root_key);
            let signing_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let mut signing_params =
                ca_params("Weft Signing CA", BasicConstraints::Constrained(0), 5);
            signing_params.use_authority_key_identifier_extension = true;
            let signing_cert = signing_params.signed_by(&signing_key, &root_issuer)?;
            write_private(&p(ROOT_KEY), &root_issuer_key_pem(&root_issuer))?;
            write_private(&p(SIGNING_KEY), &signing_key.serialize_pem())?;
            fs::write(p(SIGNING_CERT), signing_cert.pem())?;
            // The root certificate is written last: its presence marks a complete CA.
            fs::write(p(ROOT_CERT), root_cert.pem())?;
        }
        let root_pem = fs::read_to_string(p(ROOT_CERT))?;
        let signing_pem = fs::read_to_string(p(SIGNING_CERT))?;
        let signing_key = KeyPair::from_pem(&fs::read_to_string(p(SIGNING_KEY))?)?;
        let signing_issuer = Issuer::from_ca_cert_pem(&signing_pem, signing_key)?;

        if !p(SERVER_CERT).exists() {
            let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)?;
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, "Weft");
            dn.push(DnType::CommonName, "weft-controller");
            params.distinguished_name = dn;
            for name in dns_names {
                let ia5 = name
                    .clone()
                    .try_into()
                    .map_err(|_| PkiError::Pem(format!("invalid DNS name {name:?}")))?;
                params.subject_alt_names.push(SanType::DnsName(ia5));
            }
            params
                .subject_alt_names
                .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::hours(1);
            params.not_after = now + Duration::days(825);
            params.serial_number = Some(random_serial());
            params.use_authority_key_identifier_extension = true;
            let cert = params.signed_by(&key, &signing_issuer)?;
            write_private(&p(SERVER_KEY), &key.serialize_pem())?;
            fs::write(p(SERVER_CERT), cert.pem())?;
        }
        let server_pem = fs::read_to_string(p(SERVER_CERT))?;
        let server_key_pem = fs::read_to_string(p(SERVER_KEY))?;
        let server_key = KeyPair::from_pem(&server_key_pem)?;
        let jwt_key = jsonwebtoken::EncodingKey::from_rsa_pem(server_key_pem.as_bytes())?;
        let root_der = pem_to_der(&root_pem)?;
        let signing_der = pem_to_der(&signing_pem)?;
        let server_chain = vec![pem_to_der(&server_pem)?, signing_der.clone()];
        let server_cert = IssuedCert {
            fingerprint: weft_tls::fingerprint(server_chain[0].as_ref()),
            pem: server_pem,
        };
        let cacerts_b64 = cacerts_base64(&[signing_der.as_ref(), root_der.as_ref()])?;
        Ok(Self {
            root_pem,
            signing_pem,
            root_der,
            signing_der,
            signing_issuer,
            server_chain,
            server_cert,
            server_key_pkcs8: server_key.serialize_der(),
            jwt_key,
            cacerts_b64,
        })
    }

    /// This controller's server certificate and its fingerprint.
    pub fn server_cert(&self) -> &IssuedCert {
        &self.server_cert
    }

    /// PEM bundle of the CA chain (signing CA, then root) that clients trust.
    pub fn ca_bundle_pem(&self) -> String {
        format!("{}{}", self.signing_pem, self.root_pem)
    }

    /// Root CA certificate in DER.
    pub fn root_der(&self) -> &CertificateDer<'static> {
        &self.root_der
    }

    /// `GET /.well-known/est/cacerts` body: base64 of a degenerate certs-only PKCS#7
    /// with 64-character lines (spec §9.3; EDGE `enroll_router.go`).
    pub fn cacerts_pkcs7_base64(&self) -> String {
        self.cacerts_b64.clone()
    }

    /// Signs an RS256 JWT with the server certificate's key.
    pub fn sign_jwt<T: serde::Serialize>(&self, claims: &T) -> Result<String, PkiError> {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        Ok(jsonwebtoken::encode(&header, claims, &self.jwt_key)?)
    }

    /// Issues a client certificate for the public key of `csr_pem` (whose
    /// signature is checked); subject and extensions are chosen here.
    pub fn sign_client_csr(
        &self,
        csr_pem: &str,
        common_name: &str,
        days: i64,
    ) -> Result<IssuedCert, CsrError> {
        self.sign_csr(csr_pem, common_name, days, &CertProfile::Client)
    }

    /// Issues a certificate of `profile` for the public key of `csr_pem` (whose
    /// signature is checked). Subject, SANs and extensions are chosen here; nothing of
    /// the CSR but its public key is used.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        common_name: &str,
        days: i64,
        profile: &CertProfile,
    ) -> Result<IssuedCert, CsrError> {
        self.sign_csr_for(csr_pem, common_name, Duration::days(days), profile)
    }

    /// [`Self::sign_csr`] with a lifetime of any length.
    pub fn sign_csr_for(
        &self,
        csr_pem: &str,
        common_name: &str,
        lifetime: Duration,
        profile: &CertProfile,
    ) -> Result<IssuedCert, CsrError> {
        use rustls::pki_types::pem::PemObject;
        use x509_parser::prelude::FromDer;
        let csr_der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(
            csr_pem.trim().as_bytes(),
        )
        .map_err(|_| CsrError::NotPem)?;
        let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(
            csr_der.as_ref(),
        )
        .map_err(|_| CsrError::Malformed)?;
        csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
        let spki =
            rcgen::SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
                .map_err(|_| CsrError::UnsupportedKey)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Weft");
        if let CertProfile::RouterClient | CertProfile::RouterServer { .. } = profile {
            dn.push(
                DnType::OrganizationalUnitName,
                weft_tls::client::ROUTER_UNIT,
            );
        }
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        // No BasicConstraints extension: an end entity's `cA` is FALSE by default, and
        // DER forbids encoding a DEFAULT value (X.690 §11.5), which `ExplicitNoCa` did
        // (strict parsers such as Python's `cryptography` refused those certificates).
        params.is_ca = IsCa::NoCa;
        match profile {
            CertProfile::ApiSession { uri } => {
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyAgreement,
                ];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                params.subject_alt_names.push(SanType::URI(
                    uri.clone()
                        .try_into()
                        .map_err(|_| CsrError::BadName(uri.clone()))?,
                ));
            }
            CertProfile::Client | CertProfile::RouterClient => {
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyAgreement,
                ];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
            CertProfile::RouterServer { names } => {
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                    KeyUsagePurpose::KeyAgreement,
                ];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                for name in names {
                    let san = match name.parse::<std::net::IpAddr>() {
                        Ok(ip) => SanType::IpAddress(ip),
                        Err(_) => SanType::DnsName(
                            name.clone()
                                .try_into()
                                .map_err(|_| CsrError::BadName(name.clone()))?,
                        ),
                    };
                    params.subject_alt_names.push(san);
                }
            }
        }
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + lifetime;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&spki, &self.signing_issuer)?;
        Ok(IssuedCert {
            pem: cert.pem(),
            fingerprint: weft_tls::fingerprint(cert.der()),
        })
    }

    /// The DNS names and IP addresses a CSR asks for as subject alternative names (its
    /// extension request), each checked: a DNS name of letters, digits and hyphens in
    /// dot-separated labels (no wildcard), or an IP address; at most
    /// [`MAX_REQUESTED_NAMES`]. Its signature is checked too.
    pub fn requested_names(csr_pem: &str) -> Result<Vec<String>, CsrError> {
        use rustls::pki_types::pem::PemObject;
        use x509_parser::extensions::{GeneralName, ParsedExtension};
        use x509_parser::prelude::FromDer;
        let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(
            csr_pem.trim().as_bytes(),
        )
        .map_err(|_| CsrError::NotPem)?;
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
                .map_err(|_| CsrError::Malformed)?;
        csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
        let mut names = Vec::new();
        for ext in csr.requested_extensions().into_iter().flatten() {
            let ParsedExtension::SubjectAlternativeName(san) = ext else {
                continue;
            };
            for name in &san.general_names {
                let name = match name {
                    GeneralName::DNSName(d) if is_dns_name(d) => (*d).to_string(),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())
                            .to_string(),
                        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())
                            .to_string(),
                        _ => return Err(CsrError::BadName(format!("{b:?}"))),
                    },
                    other => return Err(CsrError::BadName(other.to_string())),
                };
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        if names.len() > MAX_REQUESTED_NAMES {
            return Err(CsrError::TooManyNames(names.len()));
        }
        Ok(names)
    }

    /// True when `leaf_der` was issued by the signing CA and is within its validity
    /// (or outside it, with `allow_expired`: an authentication policy may allow that).
    pub fn verify_client_leaf(&self, leaf_der: &[u8], allow_expired: bool) -> bool {
        let Ok((_, leaf)) = x509_parser::parse_x509_certificate(leaf_der) else {
            return false;
        };
        let Ok((_, ca)) = x509_parser::parse_x509_certificate(self.signing_der.as_ref()) else {
            return false;
        };
        (allow_expired || leaf.validity().is_valid())
            && leaf.verify_signature(Some(ca.public_key())).is_ok()
    }

    /// PEM of the signing CA certificate alone.
    pub fn signing_pem(&self) -> &str {
        &self.signing_pem
    }

    /// TLS configuration of the router control listener: TLS 1.3 and 1.2, a client
    /// certificate is required and must chain to the signing CA (which routers'
    /// certificates come from) with `clientAuth`; which router it is, is checked by the
    /// caller from the fingerprint.
    pub fn control_tls_config(&self) -> Result<rustls::ServerConfig, PkiError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.signing_der.clone())
            .map_err(weft_tls::TlsError::from)?;
        Ok(weft_tls::server::control(
            self.server_chain.clone(),
            self.server_key(),
            roots,
        )?)
    }

    /// TLS server configuration of the HTTPS APIs (`weft_tls::server::api`): TLS 1.2
    /// and 1.3, client certificates requested but not required and verified by the
    /// handlers, not by the TLS layer (spec §11; XWEB `server.go` uses
    /// `tls.RequestClientCert`).
    pub fn server_tls_config(&self) -> Result<rustls::ServerConfig, PkiError> {
        Ok(weft_tls::server::api(
            self.server_chain.clone(),
            self.server_key(),
        )?)
    }

    fn server_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_pkcs8.clone()))
    }
}

fn root_issuer_key_pem(issuer: &Issuer<'static, KeyPair>) -> String {
    issuer.key().serialize_pem()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cacerts_is_the_ca_bundle_as_pkcs7() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &["localhost".into()]).unwrap();
        let b64: String = pki.cacerts_pkcs7_base64().split('\n').collect();
        assert!(pki.cacerts_pkcs7_base64().lines().all(|l| l.len() <= 64));
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let mut certs = weft_tls::pkcs7::certificates(&der).unwrap();
        certs.sort();
        let mut want = vec![pki.root_der().to_vec(), pki.signing_der.to_vec()];
        want.sort();
        assert_eq!(certs, want);
    }

    fn csr_with_netscape_cert_type() -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "requested");
        // Netscape cert type "SSL client", as the C SDK's CSR carries (spec §9.4).
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[2, 16, 840, 1, 113730, 1, 1],
                vec![0x03, 0x02, 0x07, 0x80],
            ));
        (params.serialize_request(&key).unwrap().pem().unwrap(), key)
    }

    #[test]
    fn signs_csr_public_key_with_controller_chosen_subject() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &["localhost".into()]).unwrap();
        let (csr, key) = csr_with_netscape_cert_type();
        let issued = pki.sign_client_csr(&csr, "identity-1", 1).unwrap();
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(issued.pem.as_bytes()).unwrap();
        assert!(pki.verify_client_leaf(der.as_ref(), false));
        assert_eq!(issued.fingerprint, weft_tls::fingerprint(der.as_ref()));
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "identity-1"
        );
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        // A restart loads the same CA.
        let again = Pki::load_or_create(dir.path(), &["localhost".into()]).unwrap();
        assert_eq!(again.ca_bundle_pem(), pki.ca_bundle_pem());
        assert!(again.verify_client_leaf(der.as_ref(), false));
    }

    fn csr_asking_for(names: &[&str]) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "r");
        for n in names {
            params.subject_alt_names.push(match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            });
        }
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_server_csr_may_ask_for_host_names_and_addresses_but_no_wildcard() {
        let csr = csr_asking_for(&["er1.example", "er1", "10.0.0.5", "::1", "er1.example"]);
        assert_eq!(
            Pki::requested_names(&csr).unwrap(),
            ["er1.example", "er1", "10.0.0.5", "::1"]
        );
        assert!(
            Pki::requested_names(&csr_asking_for(&[]))
                .unwrap()
                .is_empty()
        );
        for bad in ["*.example", "-er1.example", "er_1.example", "a..b"] {
            let got = Pki::requested_names(&csr_asking_for(&[bad]));
            assert!(matches!(got, Err(CsrError::BadName(_))), "{bad}: {got:?}");
        }
        let many: Vec<String> = (0..=MAX_REQUESTED_NAMES).map(|i| format!("h{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            Pki::requested_names(&csr_asking_for(&many)),
            Err(CsrError::TooManyNames(_))
        ));
        assert!(matches!(
            Pki::requested_names("not a csr"),
            Err(CsrError::NotPem)
        ));
    }

    #[test]
    fn rejects_tampered_or_garbage_csr() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &["localhost".into()]).unwrap();
        let (csr, _) = csr_with_netscape_cert_type();
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
            .unwrap();
        let mut bytes = der.as_ref().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n"
        );
        assert!(matches!(
            pki.sign_client_csr(&tampered, "x", 1),
            Err(CsrError::BadSignature)
        ));
        assert!(matches!(
            pki.sign_client_csr("hello", "x", 1),
            Err(CsrError::NotPem)
        ));
    }

    /// Checks DER strictness of `der`: definite, minimal lengths, BOOLEANs only 00/FF,
    /// and no BOOLEAN FALSE anywhere (every BOOLEAN of an X.509 certificate, extension
    /// `critical` and BasicConstraints `cA`, is `DEFAULT FALSE`, which DER must omit).
    /// Recurses into constructed values and into OCTET STRINGs that hold one SEQUENCE
    /// (extension values).
    fn strict_der(mut der: &[u8], depth: usize) -> Result<(), String> {
        assert!(depth < 32, "nesting too deep");
        while !der.is_empty() {
            let tag = der[0];
            let (len, hdr) = match *der.get(1).ok_or("truncated length")? {
                n if n < 0x80 => (usize::from(n), 2),
                0x80 => return Err("indefinite length".into()),
                n => {
                    let k = usize::from(n & 0x7f);
                    let bytes = der.get(2..2 + k).ok_or("truncated long length")?;
                    if bytes[0] == 0 {
                        return Err("length with a leading zero".into());
                    }
                    let len = bytes.iter().fold(0usize, |a, b| a << 8 | usize::from(*b));
                    if len < 0x80 {
                        return Err("long form for a short length".into());
                    }
                    (len, 2 + k)
                }
            };
            let content = der.get(hdr..hdr + len).ok_or("content past the end")?;
            match tag {
                0x01 => match content {
                    [0xff] => {}
                    [0x00] => return Err("BOOLEAN FALSE encoded (a DEFAULT value)".into()),
                    _ => return Err("BOOLEAN not 00/FF".into()),
                },
                0x04 => {
                    // An OCTET STRING holding exactly one SEQUENCE (an extension value)
                    // is checked too.
                    let seq_len = match content {
                        [0x30, n, ..] if *n < 0x80 => Some(usize::from(*n) + 2),
                        [0x30, 0x81, n, ..] => Some(usize::from(*n) + 3),
                        [0x30, 0x82, a, b, ..] => {
                            Some((usize::from(*a) << 8 | usize::from(*b)) + 4)
                        }
                        _ => None,
                    };
                    if seq_len == Some(content.len()) {
                        strict_der(content, depth + 1)?;
                    }
                }
                t if t & 0x20 != 0 => strict_der(content, depth + 1)?,
                _ => {}
            }
            der = &der[hdr + len..];
        }
        Ok(())
    }

    #[test]
    fn every_issued_certificate_is_strict_der() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &["localhost".into()]).unwrap();
        let (csr, _) = csr_with_netscape_cert_type();
        let profiles = [
            CertProfile::Client,
            CertProfile::RouterClient,
            CertProfile::RouterServer {
                names: vec!["er.test".into(), "10.0.0.1".into()],
            },
        ];
        use rustls::pki_types::pem::PemObject;
        let mut ders: Vec<Vec<u8>> = profiles
            .iter()
            .map(|profile| {
                let issued = pki.sign_csr(&csr, "leaf", 1, profile).unwrap();
                CertificateDer::from_pem_slice(issued.pem.as_bytes())
                    .unwrap()
                    .to_vec()
            })
            .collect();
        // The CAs and the controller's own server certificate as well.
        ders.push(pki.root_der().to_vec());
        ders.push(pki.signing_der.to_vec());
        ders.push(pki.server_chain[0].to_vec());
        for (i, der) in ders.iter().enumerate() {
            assert_eq!(strict_der(der, 0), Ok(()), "certificate {i}");
            let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
            // End entities carry no BasicConstraints; CAs carry cA TRUE.
            let bc = cert.basic_constraints().unwrap();
            assert_eq!(bc.map(|b| b.value.ca), (3..5).contains(&i).then_some(true));
        }
        // The checker itself refuses the old encoding: BasicConstraints {cA FALSE}.
        assert!(strict_der(&[0x30, 0x03, 0x01, 0x01, 0x00], 0).is_err());
    }
}

/// The part of the PKI that every controller of one network shares (several
/// controllers on one database): the root certificate and the signing CA with its
/// key. The root key never leaves the first controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCa {
    /// Root CA certificate (PEM).
    pub root_cert_pem: String,
    /// Signing CA certificate (PEM).
    pub signing_cert_pem: String,
    /// Signing CA private key (PEM).
    pub signing_key_pem: String,
}

/// The text of every PEM block labelled `label` in `text`, in order.
fn pem_blocks(text: &str, label: &str) -> Vec<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(b) = rest.find(&begin) {
        let Some(e) = rest[b..].find(&end) else { break };
        let stop = b + e + end.len();
        out.push(format!("{}\n", &rest[b..stop]));
        rest = &rest[stop..];
    }
    out
}

impl SharedCa {
    /// Reads it from a controller's PKI directory.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let read = |n: &str| fs::read_to_string(dir.join(n));
        Ok(Self {
            root_cert_pem: read(ROOT_CERT)?,
            signing_cert_pem: read(SIGNING_CERT)?,
            signing_key_pem: read(SIGNING_KEY)?,
        })
    }

    /// One PEM file: root certificate, signing certificate, signing key.
    pub fn to_bundle(&self) -> String {
        format!(
            "{}{}{}",
            self.root_cert_pem, self.signing_cert_pem, self.signing_key_pem
        )
    }

    /// Parses [`Self::to_bundle`]'s output and checks it: the signing certificate is
    /// a CA issued by the root, and the key is the signing certificate's.
    pub fn from_bundle(bundle: &str) -> Result<Self, PkiError> {
        let certs = pem_blocks(bundle, "CERTIFICATE");
        let keys = pem_blocks(bundle, "PRIVATE KEY");
        let (Some(root), Some(signing), Some(key), 2, 1) = (
            certs.first(),
            certs.get(1),
            keys.first(),
            certs.len(),
            keys.len(),
        ) else {
            return Err(PkiError::Pem(
                "a CA bundle holds two certificates (root, signing CA) and one PKCS#8 private key"
                    .into(),
            ));
        };
        let root_der = pem_to_der(root)?;
        let signing_der = pem_to_der(signing)?;
        fn parse(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, PkiError> {
            x509_parser::parse_x509_certificate(der)
                .map(|(_, c)| c)
                .map_err(|e| PkiError::Pem(format!("certificate: {e}")))
        }
        let root_cert = parse(root_der.as_ref())?;
        let signing_cert = parse(signing_der.as_ref())?;
        if !signing_cert.is_ca() || !root_cert.is_ca() {
            return Err(PkiError::Pem(
                "both certificates must be CA certificates".into(),
            ));
        }
        signing_cert
            .verify_signature(Some(root_cert.public_key()))
            .map_err(|_| PkiError::Pem("the signing CA is not issued by the root".into()))?;
        let pair = KeyPair::from_pem(key)?;
        if rcgen::PublicKeyData::subject_public_key_info(&pair) != signing_cert.public_key().raw {
            return Err(PkiError::Pem(
                "the private key is not the signing CA's".into(),
            ));
        }
        Ok(Self {
            root_cert_pem: root.clone(),
            signing_cert_pem: signing.clone(),
            signing_key_pem: key.clone(),
        })
    }

    /// Writes it into an empty PKI directory (the signing key with mode 0600), so
    /// [`Pki::load_or_create`] then only creates this controller's server certificate.
    /// Refuses a directory that already has a CA.
    pub fn install(&self, dir: &Path) -> Result<(), PkiError> {
        if dir.join(ROOT_CERT).exists() {
            return Err(PkiError::Pem(format!(
                "{} already has a CA; join a new data directory",
                dir.display()
            )));
        }
        fs::create_dir_all(dir)?;
        write_private(&dir.join(SIGNING_KEY), &self.signing_key_pem)?;
        fs::write(dir.join(SIGNING_CERT), &self.signing_cert_pem)?;
        // Last: its presence marks a complete CA.
        fs::write(dir.join(ROOT_CERT), &self.root_cert_pem)?;
        Ok(())
    }
}

#[cfg(test)]
mod shared_ca_tests {
    use super::*;

    #[test]
    fn a_bundle_round_trips_and_a_joined_pki_issues_under_the_same_ca() {
        let a = tempfile::tempdir().unwrap();
        let first = Pki::load_or_create(a.path(), &["localhost".into()]).unwrap();
        let bundle = SharedCa::load(a.path()).unwrap().to_bundle();
        let ca = SharedCa::from_bundle(&bundle).unwrap();
        let b = tempfile::tempdir().unwrap();
        ca.install(b.path()).unwrap();
        assert!(!b.path().join(ROOT_KEY).exists(), "the root key stays home");
        let second = Pki::load_or_create(b.path(), &["ctrl-b".into()]).unwrap();
        assert_eq!(first.ca_bundle_pem(), second.ca_bundle_pem());
        // A second install into the same directory is refused.
        assert!(ca.install(b.path()).is_err());
    }

    #[test]
    fn a_bundle_with_a_foreign_key_or_missing_parts_is_refused() {
        let a = tempfile::tempdir().unwrap();
        Pki::load_or_create(a.path(), &["localhost".into()]).unwrap();
        let ca = SharedCa::load(a.path()).unwrap();
        let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let foreign = SharedCa {
            signing_key_pem: other.serialize_pem(),
            ..ca.clone()
        };
        let err = SharedCa::from_bundle(&foreign.to_bundle()).unwrap_err();
        assert!(err.to_string().contains("not the signing CA's"), "{err}");
        let swapped = format!(
            "{}{}{}",
            ca.signing_cert_pem, ca.root_cert_pem, ca.signing_key_pem
        );
        assert!(SharedCa::from_bundle(&swapped).is_err());
        assert!(SharedCa::from_bundle(&ca.root_cert_pem).is_err());
        assert!(SharedCa::from_bundle("not pem").is_err());
    }
}
