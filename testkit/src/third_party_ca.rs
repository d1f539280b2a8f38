//! A 3rd-party CA for tests of `/cas`: a self-signed CA (rcgen) that issues client
//! certificates and the verification certificate `POST /cas/{id}/verify` takes.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A CA outside the controller's PKI.
#[derive(Debug)]
pub struct ThirdPartyCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate the CA issued and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its PKCS#8 key.
    pub key_pem: String,
}

impl ThirdPartyCa {
    /// A new CA with common name `name`.
    ///
    /// # Panics
    ///
    /// When rcgen fails (never with these parameters).
    #[allow(clippy::unwrap_used)]
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A client certificate (`clientAuth`) with common name `cn` and the URI and e-mail
    /// SANs given.
    ///
    /// # Panics
    ///
    /// When a SAN is not valid.
    #[allow(clippy::unwrap_used)]
    pub fn client(&self, cn: &str, uris: &[&str], emails: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        for u in uris {
            p.subject_alt_names
                .push(SanType::URI((*u).try_into().unwrap()));
        }
        for e in emails {
            p.subject_alt_names
                .push(SanType::Rfc822Name((*e).try_into().unwrap()));
        }
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A certificate for the server only (`serverAuth`): no good for client login.
    ///
    /// # Panics
    ///
    /// Never with these parameters.
    #[allow(clippy::unwrap_used)]
    pub fn server_only(&self, cn: &str) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// The verification certificate for `token` (its common name), PEM.
    pub fn verification_cert(&self, token: &str) -> String {
        self.client(token, &[], &[]).cert_pem
    }
}
