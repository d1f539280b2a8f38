//! Bootstrapping trust in a controller from an enrollment JWT, shared by identity and
//! router enrollment.
//!
//! OpenZiti's SDKs and routers do it this way (facts from ziti-sdk-c 0.29.3
//! `library/ziti_enroll.c` and openziti/sdk-golang `ziti/enroll`): the JWT is RS256-signed by the key of the
//! controller's TLS server certificate, so the enroller first fetches that certificate
//! (accepting it unverified), checks the JWT signature with its key, then — trusting
//! only that exact certificate — fetches the CA bundle from `/.well-known/est/cacerts`
//! (a base64 certs-only PKCS#7), and from then on verifies the controller against that
//! bundle.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Deserialize;

use crate::error::{Error, ErrorKind, Result};

/// How long one bootstrap request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

fn enroll_err(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Enrollment, message)
}

/// The claims of an enrollment JWT (spec §9.2).
#[derive(Debug, Clone, Deserialize)]
pub struct EnrollmentClaims {
    /// Method: `ott` (identity), `erott` (edge router), `ottca`, `ca`.
    pub em: String,
    /// The controller's base URL.
    pub iss: String,
    /// The identity or router id.
    pub sub: String,
    /// The one-time token.
    pub jti: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

impl EnrollmentClaims {
    /// Fails with a clear error when the token expired before `now_unix`.
    pub fn check_expiry(&self, now_unix: i64) -> Result<()> {
        if self.exp <= now_unix {
            return Err(enroll_err(format!(
                "the enrollment token expired {} s ago; ask for a new one",
                now_unix - self.exp
            )));
        }
        Ok(())
    }
}

/// Decodes the JWT's claims without checking the signature (that needs the
/// controller's certificate, found through `iss`).
pub fn unverified_claims(jwt: &str) -> Result<EnrollmentClaims> {
    let bad = |e: &dyn std::fmt::Display| enroll_err(format!("not an enrollment token: {e}"));
    let part = jwt
        .trim()
        .split('.')
        .nth(1)
        .ok_or_else(|| bad(&"not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| bad(&e))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(&e))
}

/// The host and port of an `https://` URL.
pub fn host_port(url: &str) -> Result<(String, u16)> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| enroll_err(format!("{url:?} is not an https URL")))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h,
            p.parse()
                .map_err(|_| enroll_err(format!("bad port in {url:?}")))?,
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

/// The CA bundle (PEM) of the controller that signed `jwt`, fetched as OpenZiti does:
/// the JWT must verify with the controller's TLS certificate key, and the bundle is
/// read over a connection pinned to that certificate.
pub async fn controller_ca_bundle(jwt: &str, claims: &EnrollmentClaims) -> Result<String> {
    let (host, port) = host_port(&claims.iss)?;
    let leaf = fetch_server_leaf(&host, port).await?;
    verify_jwt(jwt.trim(), &leaf)?;
    let pinned = http_client(pinned_tls(Some(leaf))?)?;
    fetch_cacerts(&pinned, &claims.iss).await
}

/// The CA bundle of the controller at `url` (`https://host:port`), trusted on first
/// use: the certificate the controller presents is accepted as it is and pinned for
/// the `/.well-known/est/cacerts` request (what `ziti edge login` does without a CA).
pub async fn ca_bundle_trust_on_first_use(url: &str) -> Result<String> {
    let (host, port) = host_port(url)?;
    let leaf = fetch_server_leaf(&host, port).await?;
    let pinned = http_client(pinned_tls(Some(leaf))?)?;
    fetch_cacerts(&pinned, url).await
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::controller(format!("cannot reach the controller: {e}"))
}

/// Accepts exactly one server certificate (or, with `None`, any); handshake
/// signatures are always verified.
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

fn pinned_tls(pin: Option<CertificateDer<'static>>) -> Result<rustls::ClientConfig> {
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

/// A client configuration that verifies servers against `ca_pem` and presents no
/// client certificate.
pub fn verified_tls(ca_pem: &str) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| enroll_err(format!("invalid CA bundle: {e:?}")))?)
            .map_err(|e| enroll_err(format!("invalid CA bundle: {e}")))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(tls_err)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTP client over `tls` with the bootstrap timeout.
pub fn http_client(tls: rustls::ClientConfig) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(TIMEOUT)
        .build()
        .map_err(tls_err)
}

async fn fetch_server_leaf(host: &str, port: u16) -> Result<CertificateDer<'static>> {
    let tls = tokio_rustls::TlsConnector::from(Arc::new(pinned_tls(None)?));
    let name = ServerName::try_from(host.to_string()).map_err(tls_err)?;
    let stream = tokio::time::timeout(TIMEOUT, async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        tls.connect(name, tcp).await
    })
    .await
    .map_err(|_| Error::timed_out(format!("connecting to the controller at {host}:{port}")))?
    .map_err(tls_err)?;
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| Error::controller("the controller sent no certificate"))
}

/// Checks the RS256 signature (and expiry) with the RSA key of `leaf`.
fn verify_jwt(jwt: &str, leaf: &CertificateDer<'_>) -> Result<()> {
    let bad = |e: &dyn std::fmt::Display| {
        enroll_err(format!(
            "the enrollment token is not signed by the controller's certificate: {e}"
        ))
    };
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| bad(&e))?;
    // For RSA the SubjectPublicKeyInfo's bit string is the PKCS#1 RSAPublicKey.
    let key = jsonwebtoken::DecodingKey::from_rsa_der(&cert.public_key().subject_public_key.data);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    match jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation) {
        Ok(_) => Ok(()),
        Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature => Err(
            enroll_err("the enrollment token has expired; ask for a new one"),
        ),
        Err(e) => Err(bad(&e)),
    }
}

async fn fetch_cacerts(http: &reqwest::Client, iss: &str) -> Result<String> {
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
        return Err(Error::controller(format!(
            "GET /.well-known/est/cacerts answered {status}: {body}"
        )));
    }
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| enroll_err(format!("invalid CA bundle: {e}")))?;
    let certs = pkcs7_certificates(&der)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| enroll_err("invalid CA bundle: not a certs-only PKCS#7"))?;
    Ok(certs.into_iter().map(pem_certificate).collect())
}

/// One DER certificate as PEM.
pub fn pem_certificate(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
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

/// A PEM CSR for `key` with only a common name (the controller chooses the rest).
pub fn csr(common_name: &str, key: &rcgen::KeyPair) -> Result<String> {
    let fail = |e: rcgen::Error| enroll_err(format!("cannot build the CSR: {e}"));
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params
        .serialize_request(key)
        .map_err(fail)?
        .pem()
        .map_err(fail)
}

/// Creates `path` with `content`; never overwrites; mode 0600 when `secret`.
pub fn write_new_file(path: &Path, content: &str, secret: bool) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    if secret {
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(content.as_bytes())
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
    fn claims_are_read_without_verification_and_expiry_is_checked() {
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!(
            "{}.{}.sig",
            enc(r#"{"alg":"RS256"}"#),
            enc(r#"{"em":"erott","iss":"https://h:1","sub":"r1","jti":"j","exp":5}"#)
        );
        let c = unverified_claims(&jwt).unwrap();
        assert_eq!((c.em.as_str(), c.sub.as_str(), c.exp), ("erott", "r1", 5));
        assert!(c.check_expiry(4).is_ok());
        let err = c.check_expiry(10).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Enrollment);
        assert!(err.to_string().contains("expired"), "{err}");
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
