//! Trusting a controller from an enrollment token, shared by identity and router
//! enrollment and by `weft login`.
//!
//! OpenZiti's SDKs and routers do it this way (facts from ziti-sdk-c 0.29.3
//! `library/ziti_enroll.c` and openziti/sdk-golang `ziti/enroll`): the JWT is
//! RS256-signed by the key of the controller's TLS server certificate, so the enroller
//! first fetches that certificate (accepting it unverified), checks the JWT signature
//! with its key, then — trusting only that exact certificate — fetches the CA bundle
//! from `/.well-known/est/cacerts` (a base64 certs-only PKCS#7, EST RFC 7030 §4.1.3),
//! and from then on verifies the controller against that bundle.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::CertificateDer;

use crate::{EnrollmentClaims, IdentityError};

/// How long one bootstrap request may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The host and port of an `https://` URL (port 443 when absent).
pub fn host_port(url: &str) -> Result<(String, u16), IdentityError> {
    if !url.starts_with("https://") {
        return Err(IdentityError::Invalid(format!(
            "{url:?} is not an https URL"
        )));
    }
    let endpoint = crate::endpoint::parse(url)
        .ok_or_else(|| IdentityError::Invalid(format!("{url:?} has no usable host and port")))?;
    Ok((endpoint.host, endpoint.port))
}

/// The CA bundle (PEM) of the controller that signed `jwt`, fetched as OpenZiti does:
/// the JWT must verify with the controller's TLS certificate key, and the bundle is
/// read over a connection pinned to that certificate.
pub async fn controller_ca_bundle(
    jwt: &str,
    claims: &EnrollmentClaims,
) -> Result<String, IdentityError> {
    let (host, port) = host_port(&claims.iss)?;
    let leaf = fetch_server_leaf(&host, port).await?;
    verify_jwt(jwt.trim(), &leaf)?;
    let pinned = http_client(pinned_tls(Some(leaf))?)?;
    fetch_cacerts(&pinned, &claims.iss).await
}

/// The CA bundle of the controller at `url` (`https://host:port`), trusted on first
/// use: the certificate the controller presents is accepted as it is and pinned for
/// the `/.well-known/est/cacerts` request (what `ziti edge login` does without a CA).
pub async fn ca_bundle_trust_on_first_use(url: &str) -> Result<String, IdentityError> {
    let (host, port) = host_port(url)?;
    let leaf = fetch_server_leaf(&host, port).await?;
    let pinned = http_client(pinned_tls(Some(leaf))?)?;
    fetch_cacerts(&pinned, url).await
}

/// A client configuration for the controller that verifies it against the CA bundle
/// `ca_pem` (refusing a router's certificate) and presents no client certificate.
pub fn verified_tls(ca_pem: &str) -> Result<rustls::ClientConfig, IdentityError> {
    weft_tls::client::controller_from_pem(ca_pem.as_bytes(), None).map_err(|source| {
        IdentityError::Tls {
            what: "the controller's CA bundle",
            source,
        }
    })
}

/// An HTTP client over `tls` with the bootstrap [`TIMEOUT`].
pub fn http_client(tls: rustls::ClientConfig) -> Result<reqwest::Client, IdentityError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| IdentityError::connect("(building the HTTP client)", e))
}

fn pinned_tls(pin: Option<CertificateDer<'static>>) -> Result<rustls::ClientConfig, IdentityError> {
    weft_tls::client::pinned(pin).map_err(|source| IdentityError::Tls {
        what: "the pinned TLS configuration",
        source,
    })
}

async fn fetch_server_leaf(
    host: &str,
    port: u16,
) -> Result<CertificateDer<'static>, IdentityError> {
    let url = format!("{host}:{port}");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(pinned_tls(None)?));
    let name = weft_tls::client::server_name(host).map_err(|e| IdentityError::connect(&url, e))?;
    let stream = tokio::time::timeout(TIMEOUT, async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        tls.connect(name, tcp).await
    })
    .await
    .map_err(|_| IdentityError::TimedOut(format!("connecting to the controller at {url}")))?
    .map_err(|e| IdentityError::connect(&url, e))?;
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| IdentityError::Answer("the controller sent no certificate".into()))
}

/// Checks the RS256 signature (and expiry) with the RSA key of `leaf`.
fn verify_jwt(jwt: &str, leaf: &CertificateDer<'_>) -> Result<(), IdentityError> {
    let bad = |e: &dyn std::fmt::Display| IdentityError::Signature(e.to_string());
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| bad(&e))?;
    // For RSA the SubjectPublicKeyInfo's bit string is the PKCS#1 RSAPublicKey.
    let key = jsonwebtoken::DecodingKey::from_rsa_der(&cert.public_key().subject_public_key.data);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    match jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation) {
        Ok(_) => Ok(()),
        Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
            Err(IdentityError::Expired { seconds_ago: 0 })
        }
        Err(e) => Err(bad(&e)),
    }
}

async fn fetch_cacerts(http: &reqwest::Client, base: &str) -> Result<String, IdentityError> {
    let url = format!("{}/.well-known/est/cacerts", base.trim_end_matches('/'));
    let res = http
        .get(&url)
        .header("accept", "application/pkcs7-mime")
        .send()
        .await
        .map_err(|e| IdentityError::connect(&url, e))?;
    let status = res.status().as_u16();
    let body = res
        .text()
        .await
        .map_err(|e| IdentityError::connect(&url, e))?;
    if status != 200 {
        return Err(IdentityError::Answer(format!(
            "GET /.well-known/est/cacerts answered {status}: {body}"
        )));
    }
    ca_bundle_from_cacerts(&body)
}

/// The PEM CA bundle of a `/.well-known/est/cacerts` answer (base64 certs-only PKCS#7,
/// line breaks allowed).
pub fn ca_bundle_from_cacerts(body: &str) -> Result<String, IdentityError> {
    let bad = |e: &dyn std::fmt::Display| IdentityError::Answer(format!("invalid CA bundle: {e}"));
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| bad(&e))?;
    let certs = weft_tls::pkcs7::certificates(&der).map_err(|e| bad(&e))?;
    Ok(weft_tls::pem::certificates_pem(
        certs.iter().map(Vec::as_slice),
    ))
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
        assert!(host_port("https://x:99999").is_err());
        assert!(host_port("not a url").is_err());
    }

    #[test]
    fn a_cacerts_answer_becomes_a_pem_bundle() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = weft_tls::pkcs7::certs_only(&[cert.der()]).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        // Wrapped the way some servers send it.
        let wrapped: String = b64
            .as_bytes()
            .chunks(64)
            .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
            .collect();
        let pem = ca_bundle_from_cacerts(&wrapped).unwrap();
        assert_eq!(pem, weft_tls::pem::certificate_pem(cert.der()));
        assert!(ca_bundle_from_cacerts("@@@").is_err());
        assert!(ca_bundle_from_cacerts("MAA=").is_err());
    }
}
