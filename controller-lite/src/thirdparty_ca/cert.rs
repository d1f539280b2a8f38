//! Certificates of 3rd-party CAs: checking a CA's `certPem`, the verification
//! certificate of `POST /cas/{id}/verify`, and client certificate chains (OpenZiti's
//! `controller/model/ca_manager.go` and `enrollment_mod_ca.go` / `authenticator_mod_cert.go`
//! verify with Go's `x509.Verify` and the `ClientAuth` extended key usage; Weft uses
//! rustls' webpki verifier for the chains). No I/O: times come in as Unix seconds.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

use super::CaError;
use super::claim::CertNames;

/// Most bytes of a CA's `certPem` or of a verification certificate body.
pub const MAX_PEM_BYTES: usize = 64 * 1024;
/// Most certificates a client chain may hold (leaf included) to be checked at all.
pub const MAX_CHAIN: usize = 8;

/// The facts of a CA certificate the controller keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCert {
    /// DER of the (first) certificate of `certPem`.
    pub der: Vec<u8>,
    /// Its SHA-1 fingerprint, lower-case hex.
    pub fingerprint: String,
}

fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing bytes after the certificate".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The first PEM block of `pem`: its label and contents.
fn first_block(pem: &[u8]) -> Result<x509_parser::pem::Pem, String> {
    x509_parser::pem::parse_x509_pem(pem)
        .map(|(_, p)| p)
        .map_err(|e| format!("no PEM block: {e}"))
}

/// Checks a CA's `certPem`: at most [`MAX_PEM_BYTES`], and its first PEM block a
/// certificate whose basic constraints say it is a CA (as OpenZiti checks; further
/// blocks are kept but not trusted).
pub fn parse_ca_pem(pem: &str) -> Result<CaCert, CaError> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(CaError::BadCertPem(format!(
            "at most {MAX_PEM_BYTES} bytes are accepted"
        )));
    }
    let block = first_block(pem.as_bytes()).map_err(CaError::BadCertPem)?;
    if block.label != "CERTIFICATE" {
        return Err(CaError::BadCertPem(format!(
            "the first PEM block is a {:?}, not a CERTIFICATE",
            block.label
        )));
    }
    let cert = parse_der(&block.contents).map_err(CaError::BadCertPem)?;
    if !cert.is_ca() {
        return Err(CaError::NotCa(
            "the certificate is not a CA certificate (basic constraints)".into(),
        ));
    }
    Ok(CaCert {
        fingerprint: weft_tls::fingerprint(&block.contents),
        der: block.contents,
    })
}

/// The subject's common names of a certificate, in order.
fn common_names(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect()
}

/// Checks the body of `POST /cas/{id}/verify` against the CA `ca_der` and its
/// `token`, with OpenZiti's codes in OpenZiti's order: one PEM certificate, whose common
/// name is the token, signed by the CA, valid at `now` (Unix seconds).
pub fn check_verification(
    ca_der: &[u8],
    token: &str,
    body: &[u8],
    now: i64,
) -> Result<(), CaError> {
    if body.len() > MAX_PEM_BYTES {
        return Err(CaError::CouldNotParseBody(format!(
            "at most {MAX_PEM_BYTES} bytes are accepted"
        )));
    }
    let block = first_block(body).map_err(CaError::CouldNotParseBody)?;
    if block.label != "CERTIFICATE" {
        return Err(CaError::ExpectedPemCertificate(block.label));
    }
    let cert = parse_der(&block.contents).map_err(CaError::CouldNotParseDer)?;
    let cns = common_names(&cert);
    if cns.first().map(String::as_str) != Some(token) || token.is_empty() {
        return Err(CaError::InvalidCommonName {
            found: cns.into_iter().next().unwrap_or_default(),
        });
    }
    let ca = parse_der(ca_der).map_err(CaError::CertificateFailedValidation)?;
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| CaError::CertificateFailedValidation("not signed by the CA".into()))?;
    let at = ASN1Time::from_timestamp(now)
        .map_err(|e| CaError::CertificateFailedValidation(e.to_string()))?;
    if !cert.validity().is_valid_at(at) {
        return Err(CaError::CertificateFailedValidation(
            "the certificate is not valid now".into(),
        ));
    }
    Ok(())
}

/// Whether `leaf` (with `intermediates`) chains to the CA `ca_der`, for client
/// authentication (`clientAuth` extended key usage when the leaf lists usages), at
/// `at` (Unix seconds). Longer chains than [`MAX_CHAIN`] never verify.
pub fn chains_to(
    ca_der: &[u8],
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    at: i64,
) -> bool {
    if intermediates.len() >= MAX_CHAIN {
        return false;
    }
    let mut roots = RootCertStore::empty();
    if roots.add(CertificateDer::from(ca_der.to_vec())).is_err() {
        return false;
    }
    let Ok(verifier) = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(weft_tls::provider()),
    )
    .build() else {
        return false;
    };
    let Ok(secs) = u64::try_from(at) else {
        return false;
    };
    let now = UnixTime::since_unix_epoch(Duration::from_secs(secs));
    verifier
        .verify_client_cert(leaf, intermediates, now)
        .is_ok()
}

/// When the certificate `der` starts to be valid (Unix seconds); `None` when it does
/// not parse. Certificate login with `allowExpiredCerts` verifies chains at that time.
pub fn not_before(der: &[u8]) -> Option<i64> {
    parse_der(der)
        .ok()
        .map(|c| c.validity().not_before.timestamp())
}

/// The names of the certificate `der` an `externalIdClaim` and `identityNameFormat`
/// read; `None` when it does not parse.
pub fn names(der: &[u8]) -> Option<CertNames> {
    let cert = parse_der(der).ok()?;
    let mut names = CertNames {
        common_names: common_names(&cert),
        ..CertNames::default()
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => names.uris.push((*u).to_owned()),
                GeneralName::RFC822Name(e) => names.emails.push((*e).to_owned()),
                _ => {}
            }
        }
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType,
    };

    use super::*;

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    fn leaf(ca: &Ca, cn: &str, eku: Vec<ExtendedKeyUsagePurpose>) -> rcgen::Certificate {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = eku;
        p.subject_alt_names = vec![
            SanType::URI("spiffe://corp.test/u/1".try_into().unwrap()),
            SanType::Rfc822Name("a@corp.test".try_into().unwrap()),
        ];
        p.signed_by(&key, &ca.issuer).unwrap()
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn ca_pem_must_be_a_ca_certificate() {
        let a = ca("A");
        let c = parse_ca_pem(&a.pem).unwrap();
        assert_eq!(c.fingerprint.len(), 40);
        let l = leaf(&a, "x", vec![]);
        assert_eq!(
            parse_ca_pem(&l.pem()).unwrap_err().code(),
            "CERTIFICATE_IS_NOT_CA"
        );
        for bad in [
            "",
            "garbage",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            assert_eq!(
                parse_ca_pem(bad).unwrap_err().code(),
                "INVALID_CERT_PEM",
                "{bad}"
            );
        }
        let huge = format!("{}{}", a.pem, "x".repeat(MAX_PEM_BYTES));
        assert_eq!(parse_ca_pem(&huge).unwrap_err().code(), "INVALID_CERT_PEM");
    }

    #[test]
    fn verification_checks_pem_name_and_signature_in_order() {
        let a = ca("A");
        let other = ca("B");
        let der = parse_ca_pem(&a.pem).unwrap().der;
        let good = leaf(&a, "tok123", vec![]);
        assert_eq!(
            check_verification(&der, "tok123", good.pem().as_bytes(), now()),
            Ok(())
        );
        let code = |body: &[u8], token: &str| {
            check_verification(&der, token, body, now())
                .unwrap_err()
                .code()
        };
        assert_eq!(code(b"", "tok123"), "COULD_NOT_PARSE_BODY");
        assert_eq!(code(b"not pem", "tok123"), "COULD_NOT_PARSE_BODY");
        assert_eq!(
            code(
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "tok123"
            ),
            "EXPECTED_PEM_CERTIFICATE"
        );
        assert_eq!(
            code(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "tok123"
            ),
            "COULD_NOT_PARSE_DER_BLOCK"
        );
        assert_eq!(code(good.pem().as_bytes(), "other"), "INVALID_COMMON_NAME");
        // The right name, signed by another CA.
        let forged = leaf(&other, "tok123", vec![]);
        assert_eq!(
            code(forged.pem().as_bytes(), "tok123"),
            "CERTIFICATE_FAILED_VALIDATION"
        );
    }

    #[test]
    fn client_chains_need_the_ca_and_client_auth() {
        let a = ca("A");
        let b = ca("B");
        let der = parse_ca_pem(&a.pem).unwrap().der;
        let ok = leaf(&a, "c", vec![ExtendedKeyUsagePurpose::ClientAuth]);
        assert!(chains_to(&der, ok.der(), &[], now()));
        let no_eku = leaf(&a, "c", vec![]);
        assert!(chains_to(&der, no_eku.der(), &[], now()));
        let server_only = leaf(&a, "c", vec![ExtendedKeyUsagePurpose::ServerAuth]);
        assert!(!chains_to(&der, server_only.der(), &[], now()));
        let foreign = leaf(&b, "c", vec![ExtendedKeyUsagePurpose::ClientAuth]);
        assert!(!chains_to(&der, foreign.der(), &[], now()));
        let long: Vec<CertificateDer<'_>> = (0..MAX_CHAIN).map(|_| ok.der().clone()).collect();
        assert!(!chains_to(&der, ok.der(), &long, now()));
        let n = names(ok.der()).unwrap();
        assert_eq!(n.common_names, vec!["c".to_owned()]);
        assert_eq!(n.uris, vec!["spiffe://corp.test/u/1".to_owned()]);
        assert_eq!(n.emails, vec!["a@corp.test".to_owned()]);
        assert!(not_before(ok.der()).is_some());
        assert!(names(b"junk").is_none());
    }
}
