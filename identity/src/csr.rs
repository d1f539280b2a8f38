//! Certificate signing requests for enrollment.

use crate::IdentityError;

/// A PEM CSR for `key` with only a common name (the controller chooses the rest).
pub fn csr(common_name: &str, key: &rcgen::KeyPair) -> Result<String, IdentityError> {
    csr_with_names(common_name, &[], key)
}

/// A PEM CSR for `key` with a common name that asks for `names` (DNS names, or IP
/// addresses) as subject alternative names.
fn csr_with_names(
    common_name: &str,
    names: &[String],
    key: &rcgen::KeyPair,
) -> Result<String, IdentityError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    for name in names {
        params.subject_alt_names.push(match name.parse() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(name.clone().try_into()?),
        });
    }
    Ok(params.serialize_request(key)?.pem()?)
}

/// A fresh P-256 key (what OpenZiti's enrollers make) and its PEM CSR.
pub fn key_and_csr(common_name: &str) -> Result<(rcgen::KeyPair, String), IdentityError> {
    server_key_and_csr(common_name, &[])
}

/// A fresh P-256 key and a PEM CSR for a server certificate that asks for `names`
/// (DNS names, or IP addresses) as subject alternative names, as an OpenZiti router's
/// server CSR does (its config's `csr.sans`).
pub fn server_key_and_csr(
    common_name: &str,
    names: &[String],
) -> Result<(rcgen::KeyPair, String), IdentityError> {
    let key = rcgen::KeyPair::generate()?;
    let csr = csr_with_names(common_name, names, &key)?;
    Ok((key, csr))
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::FromDer;

    #[test]
    fn the_csr_names_only_the_common_name() {
        let (_, pem) = super::key_and_csr("router-1").unwrap();
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|d: rustls::pki_types::CertificateSigningRequestDer<'_>| d.as_ref().to_vec())
            .unwrap();
        let (_, req) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
        let info = &req.certification_request_info;
        let cns: Vec<_> = info
            .subject
            .iter_common_name()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(cns, ["router-1"]);
        assert_eq!(info.subject.iter().count(), 1);
    }
}
