//! PEM reading (rustls' `pki-types`) and writing (the `pem` crate), and the file
//! reads every configuration starts from.

use std::path::Path;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// Every `CERTIFICATE` block of `pem`, in order; an error if there is none.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Certificate("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The private key of `pem` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Key(e.to_string()))
}

/// A root store of every certificate of the CA bundle `pem`; an error if one does not
/// parse or there is none.
pub fn roots(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pem) {
        let ca = ca.map_err(|e| TlsError::Ca(e.to_string()))?;
        roots.add(ca).map_err(|e| TlsError::Ca(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::Ca("no CERTIFICATE block".into()));
    }
    Ok(roots)
}

/// One DER certificate as a PEM block (64-column base64, `\n` line ends).
pub fn certificate_pem(der: &[u8]) -> String {
    let block = ::pem::Pem::new("CERTIFICATE", der.to_vec());
    ::pem::encode_config(
        &block,
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

/// A PKCS#8 private key as a `PRIVATE KEY` PEM block.
pub fn private_key_pem(pkcs8_der: &[u8]) -> String {
    let block = ::pem::Pem::new("PRIVATE KEY", pkcs8_der.to_vec());
    ::pem::encode_config(
        &block,
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

/// DER certificates as one PEM bundle, in order.
pub fn certificates_pem<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    ders.into_iter().map(certificate_pem).collect()
}

/// The bytes of a certificate, key or bundle file.
pub fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_round_trips_through_pem() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = certificate_pem(cert.der());
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let back = certificates(pem.as_bytes()).unwrap();
        assert_eq!(back[0].as_ref(), cert.der().as_ref());
        let two = certificates_pem([cert.der().as_ref(), cert.der().as_ref()]);
        assert_eq!(certificates(two.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(matches!(
            certificates(b"not pem"),
            Err(TlsError::Certificate(_))
        ));
        assert!(matches!(private_key(b"not pem"), Err(TlsError::Key(_))));
        assert!(matches!(roots(b""), Err(TlsError::Ca(_))));
    }
}
