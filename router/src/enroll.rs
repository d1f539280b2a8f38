//! Router enrollment (`erott`): redeem the one-time JWT the controller issued for this
//! edge router, receiving a server certificate for the edge listener and a client
//! certificate for the control channel.
//!
//! The controller is authenticated the way OpenZiti's SDKs and router do it (facts
//! from openziti/sdk-golang `ziti/enroll` and openziti/edge `router/enroll`): the JWT
//! is RS256-signed by the key of the controller's TLS server certificate, so the
//! router first fetches that certificate (accepting it unverified), checks the JWT
//! signature with its key, then — trusting only that exact certificate — fetches the
//! CA bundle from `/.well-known/est/cacerts` (trust on first use), and from then on
//! verifies the controller against that bundle. The request body and response follow
//! OpenZiti's router enroller: `{"serverCertCsr", "certCsr"}` →
//! `{"data": {"serverCert", "cert", "ca"}}`. `server.cert` holds the server certificate
//! followed by the bundle's intermediate CA certificates (the chain the edge listener
//! serves).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Deserialize;

/// The control-channel client certificate.
pub const ROUTER_CERT_FILE: &str = "router.cert";
/// Its private key (mode 0600).
pub const ROUTER_KEY_FILE: &str = "router.key";
/// The edge listener's server certificate.
pub const SERVER_CERT_FILE: &str = "server.cert";
/// Its private key (mode 0600).
pub const SERVER_KEY_FILE: &str = "server.key";
/// The controller's CA bundle.
pub const CA_FILE: &str = "ca.pem";

/// Errors of enrollment.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The JWT is not a well-formed router enrollment token.
    #[error("invalid enrollment token: {0}")]
    Token(String),
    /// The JWT signature does not verify with the controller's certificate key.
    #[error("the enrollment token is not signed by the controller's certificate: {0}")]
    Signature(String),
    /// The controller could not be reached or its TLS failed.
    #[error("cannot reach the controller: {0}")]
    Connect(String),
    /// The controller answered with an error or an unexpected body.
    #[error("enrollment refused by the controller ({status}): {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// Key or CSR generation failed.
    #[error("key generation failed: {0}")]
    Keys(#[from] rcgen::Error),
    /// The CA bundle could not be parsed.
    #[error("invalid CA bundle: {0}")]
    Ca(String),
}

/// Claims of an enrollment JWT that enrollment needs.
#[derive(Debug, Clone, Deserialize)]
pub struct EnrollmentClaims {
    /// Method, must be `erott`.
    pub em: String,
    /// Controller base URL.
    pub iss: String,
    /// The edge router id.
    pub sub: String,
    /// The one-time token.
    pub jti: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// What enrollment wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The router's id (JWT `sub`, the certificates' common name).
    pub router_id: String,
    /// The controller's base URL (JWT `iss`).
    pub controller_url: String,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EnrollError + '_ {
    move |source| EnrollError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Enrolls the router whose `erott` JWT is in `jwt_path`, writing `router.cert`,
/// `router.key`, `server.cert`, `server.key` and `ca.pem` into `dir` (created if
/// missing; keys mode 0600, existing files are not overwritten).
pub async fn enroll(jwt_path: &Path, dir: &Path) -> Result<Enrolled, EnrollError> {
    let jwt = std::fs::read_to_string(jwt_path).map_err(io_err(jwt_path))?;
    let jwt = jwt.trim();
    let claims = unverified_claims(jwt)?;
    if claims.em != "erott" {
        return Err(EnrollError::Token(format!(
            "method {:?} is not router enrollment (erott)",
            claims.em
        )));
    }
    let (host, port) = host_port(&claims.iss)?;

    // 1. The controller's leaf certificate, unverified for now.
    let leaf = fetch_server_leaf(&host, port).await?;
    // 2. The JWT must be signed by its key.
    verify_jwt(jwt, &leaf)?;
    // 3. Trust on first use of the CA bundle, over a connection pinned to that leaf.
    let pinned = http_client(pinned_tls(Some(leaf.clone()))?)?;
    let ca_pem = fetch_cacerts(&pinned, &claims.iss).await?;
    // 4. From here on the controller is verified against the bundle.
    let verified = http_client(verified_tls(&ca_pem)?)?;

    let router_key = rcgen::KeyPair::generate()?;
    let server_key = rcgen::KeyPair::generate()?;
    let router_csr = csr(&claims.sub, &router_key)?;
    let server_csr = csr(&claims.sub, &server_key)?;
    let url = format!(
        "{}/edge/client/v1/enroll?method=erott&token={}",
        claims.iss.trim_end_matches('/'),
        claims.jti
    );
    let res = verified
        .post(url)
        .json(&serde_json::json!({"serverCertCsr": server_csr, "certCsr": router_csr}))
        .send()
        .await
        .map_err(|e| EnrollError::Connect(e.to_string()))?;
    let status = res.status().as_u16();
    let body = res
        .text()
        .await
        .map_err(|e| EnrollError::Connect(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let field = |k: &str| v["data"][k].as_str().map(str::to_owned);
    let (Some(server_cert), Some(cert), Some(ca)) =
        (field("serverCert"), field("cert"), field("ca"))
    else {
        return Err(EnrollError::Refused { status, body });
    };
    if status != 200 {
        return Err(EnrollError::Refused { status, body });
    }

    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    write_file(
        &dir.join(ROUTER_KEY_FILE),
        &router_key.serialize_pem(),
        true,
    )?;
    write_file(
        &dir.join(SERVER_KEY_FILE),
        &server_key.serialize_pem(),
        true,
    )?;
    write_file(&dir.join(ROUTER_CERT_FILE), &cert, false)?;
    write_file(
        &dir.join(SERVER_CERT_FILE),
        &server_chain(&server_cert, &ca),
        false,
    )?;
    write_file(&dir.join(CA_FILE), &ca, false)?;
    Ok(Enrolled {
        router_id: claims.sub,
        controller_url: claims.iss,
    })
}

/// The edge listener's chain: the server certificate followed by the intermediate
/// (not self-signed) certificates of the CA bundle, so SDKs that trust only the root
/// can build the path to it.
fn server_chain(server_cert: &str, ca_bundle: &str) -> String {
    let mut chain = server_cert.trim_end().to_string();
    chain.push('\n');
    for der in CertificateDer::pem_slice_iter(ca_bundle.as_bytes()).flatten() {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
            continue;
        };
        if cert.subject() == cert.issuer() {
            continue;
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        chain.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            chain.push_str(&String::from_utf8_lossy(line));
            chain.push('\n');
        }
        chain.push_str("-----END CERTIFICATE-----\n");
    }
    chain
}

/// Decodes the JWT's claims without checking the signature (that needs the
/// controller's certificate, found through `iss`).
pub fn unverified_claims(jwt: &str) -> Result<EnrollmentClaims, EnrollError> {
    let part = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| EnrollError::Token("not a JWT".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| EnrollError::Token(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| EnrollError::Token(e.to_string()))
}

fn host_port(iss: &str) -> Result<(String, u16), EnrollError> {
    let rest = iss
        .strip_prefix("https://")
        .ok_or_else(|| EnrollError::Token(format!("issuer {iss:?} is not an https URL")))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h,
            p.parse()
                .map_err(|_| EnrollError::Token(format!("bad port in {iss:?}")))?,
        ),
        _ => (authority, 443),
    };
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    ))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_err(e: impl std::fmt::Display) -> EnrollError {
    EnrollError::Connect(e.to_string())
}

/// Accepts exactly one server certificate (or, with `None`, any, recording it);
/// handshake signatures are always verified.
#[derive(Debug)]
struct Pinned {
    pin: Option<CertificateDer<'static>>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match &self.pin {
            Some(pin) if pin.as_ref() != end_entity.as_ref() => Err(rustls::Error::General(
                "the controller presented another certificate".into(),
            )),
            _ => Ok(rustls::client::danger::ServerCertVerified::assertion()),
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

fn pinned_tls(pin: Option<CertificateDer<'static>>) -> Result<rustls::ClientConfig, EnrollError> {
    let provider = provider();
    let verifier = Arc::new(Pinned {
        pin,
        algs: provider.signature_verification_algorithms,
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn verified_tls(ca_pem: &str) -> Result<rustls::ClientConfig, EnrollError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| EnrollError::Ca(format!("{e:?}")))?)
            .map_err(|e| EnrollError::Ca(e.to_string()))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(tls_err)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn http_client(tls: rustls::ClientConfig) -> Result<reqwest::Client, EnrollError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(tls_err)
}

async fn fetch_server_leaf(host: &str, port: u16) -> Result<CertificateDer<'static>, EnrollError> {
    let tls = tokio_rustls::TlsConnector::from(Arc::new(pinned_tls(None)?));
    let name = ServerName::try_from(host.to_string()).map_err(tls_err)?;
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(tls_err)?;
    let stream = tokio::time::timeout(Duration::from_secs(30), tls.connect(name, tcp))
        .await
        .map_err(tls_err)?
        .map_err(tls_err)?;
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| EnrollError::Connect("the controller sent no certificate".into()))
}

/// Checks the RS256 signature (and expiry) with the RSA key of `leaf`.
fn verify_jwt(jwt: &str, leaf: &CertificateDer<'_>) -> Result<(), EnrollError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| EnrollError::Signature(e.to_string()))?;
    // For RSA the SubjectPublicKeyInfo's bit string is the PKCS#1 RSAPublicKey.
    let key = jsonwebtoken::DecodingKey::from_rsa_der(&cert.public_key().subject_public_key.data);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation)
        .map(drop)
        .map_err(|e| EnrollError::Signature(e.to_string()))
}

async fn fetch_cacerts(http: &reqwest::Client, iss: &str) -> Result<String, EnrollError> {
    let url = format!("{}/.well-known/est/cacerts", iss.trim_end_matches('/'));
    let res = http
        .get(url)
        .header("accept", "application/pkcs7-mime")
        .send()
        .await
        .map_err(tls_err)?;
    let status = res.status().as_u16();
    let body = res.text().await.map_err(tls_err)?;
    if status != 200 {
        return Err(EnrollError::Refused { status, body });
    }
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| EnrollError::Ca(e.to_string()))?;
    let certs = pkcs7_certificates(&der)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| EnrollError::Ca("not a certs-only PKCS#7".into()))?;
    let mut pem = String::new();
    for c in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(c);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    Ok(pem)
}

/// One DER TLV: (tag, whole TLV, content, rest of the input).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// Reads one DER TLV.
fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = input
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let whole = input.get(..head.checked_add(len)?)?;
    Some((tag, whole, whole.get(head..)?, input.get(whole.len()..)?))
}

/// The certificates of a certs-only PKCS#7 SignedData (RFC 2315): ContentInfo →
/// [0] → SignedData { version, digestAlgorithms, contentInfo, [0] certificates, … }.
fn pkcs7_certificates(der: &[u8]) -> Option<Vec<&[u8]>> {
    let (_, _, content_info, _) = tlv(der)?;
    let (_, _, _, rest) = tlv(content_info)?; // contentType OID
    let (_, _, explicit, _) = tlv(rest)?;
    let (_, _, signed, _) = tlv(explicit)?;
    let (_, _, _, rest) = tlv(signed)?; // version
    let (_, _, _, rest) = tlv(rest)?; // digestAlgorithms
    let (_, _, _, rest) = tlv(rest)?; // contentInfo
    let (tag, _, mut certs, _) = tlv(rest)?;
    if tag != 0xa0 {
        return None;
    }
    let mut out = Vec::new();
    while !certs.is_empty() {
        let (_, whole, _, rest) = tlv(certs)?;
        out.push(whole);
        certs = rest;
    }
    Some(out)
}

fn csr(common_name: &str, key: &rcgen::KeyPair) -> Result<String, EnrollError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    Ok(params.serialize_request(key)?.pem()?)
}

fn write_file(path: &Path, content: &str, secret: bool) -> Result<(), EnrollError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    if secret {
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(content.as_bytes()).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_host_and_port() {
        assert_eq!(
            host_port("https://localhost:1280").unwrap(),
            ("localhost".into(), 1280)
        );
        assert_eq!(
            host_port("https://ctl.example").unwrap(),
            ("ctl.example".into(), 443)
        );
        assert_eq!(host_port("https://[::1]:99/x").unwrap(), ("::1".into(), 99));
        assert!(host_port("http://x:1").is_err());
    }

    #[test]
    fn claims_are_read_without_verification() {
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!(
            "{}.{}.sig",
            enc(r#"{"alg":"RS256"}"#),
            enc(r#"{"em":"erott","iss":"https://h:1","sub":"r1","jti":"j","exp":5}"#)
        );
        let c = unverified_claims(&jwt).unwrap();
        assert_eq!((c.em.as_str(), c.sub.as_str(), c.exp), ("erott", "r1", 5));
        assert!(unverified_claims("garbage").is_err());
    }

    #[test]
    fn pkcs7_walk_rejects_truncation() {
        // ContentInfo { OID, [0] { SignedData { 1, {}, {id-data}, [0] { cert, cert } } } }
        let cert_a = [0x30, 0x01, 0x00];
        let cert_b = [0x30, 0x00];
        let certs = [&[0xa0, 0x05][..], &cert_a, &cert_b].concat();
        let signed_body = [
            &[0x02, 0x01, 0x01][..],
            &[0x31, 0x00],
            &[0x30, 0x02, 0x06, 0x00],
            &certs,
        ]
        .concat();
        let signed = [&[0x30, signed_body.len() as u8][..], &signed_body].concat();
        let explicit = [&[0xa0, signed.len() as u8][..], &signed].concat();
        let body = [&[0x06, 0x00][..], &explicit].concat();
        let der = [&[0x30, body.len() as u8][..], &body].concat();
        assert_eq!(
            pkcs7_certificates(&der).unwrap(),
            vec![&cert_a[..], &cert_b[..]]
        );
        assert!(pkcs7_certificates(&der[..der.len() - 1]).is_none());
    }
}
