//! A throwaway PKI for tests, benches and fuzz targets: a CA, a `localhost` server
//! certificate and a client certificate, made with rcgen in memory (feature
//! `test-pki`; never enabled by a production crate).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, SupportedProtocolVersion};

use crate::TlsError;

/// Why the test PKI could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TestPkiError {
    /// rcgen refused a certificate or key.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused a configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The edge configuration builder refused the server certificate.
    #[error(transparent)]
    Server(#[from] TlsError),
    /// Moving the client's records failed, or the handshake did not finish.
    #[error("handshake: {0}")]
    Handshake(String),
}

/// The suites of [`crate::provider`] that its test certificate (ECDSA) can serve:
/// every TLS 1.3 suite and the ECDSA ones of TLS 1.2.
pub fn client_suites() -> Vec<rustls::SupportedCipherSuite> {
    crate::provider()
        .cipher_suites
        .into_iter()
        .filter(|suite| match suite {
            rustls::SupportedCipherSuite::Tls13(_) => true,
            rustls::SupportedCipherSuite::Tls12(suite) => suite
                .sign
                .contains(&rustls::SignatureScheme::ECDSA_NISTP256_SHA256),
        })
        .collect()
}

/// What a test client does besides the defaults.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Copies of the CA certificate sent after the client's (a long chain: its
    /// Certificate message spans records).
    pub extra_certs: usize,
    /// The one cipher suite the client offers (all of [`crate::provider`]'s otherwise).
    pub suite: Option<rustls::SupportedCipherSuite>,
    /// Whether the client's traffic secrets can be extracted, to make records by hand.
    pub extract_secrets: bool,
    /// The client presents a leaf of its own (a fresh self-signed certificate whose key
    /// it holds) followed by the real client certificate, whose key it does not hold:
    /// the chain trick of GHSA-mrpr-756c-xm47.
    pub forged_leaf: bool,
    /// The client presents a certificate from a CA the server does not trust.
    pub foreign_ca: bool,
}

/// Hands `records` from the server to `client` and returns the plaintext it reads.
pub fn deliver(client: &mut ClientConnection, records: &[u8]) -> Result<Vec<u8>, TestPkiError> {
    let mut slice = records;
    let mut plaintext = Vec::new();
    loop {
        match std::io::Read::read_to_end(&mut client.reader(), &mut plaintext) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(TestPkiError::Handshake(e.to_string())),
        }
        if slice.is_empty() {
            return Ok(plaintext);
        }
        client
            .read_tls(&mut slice)
            .map_err(|e| TestPkiError::Handshake(e.to_string()))?;
        client.process_new_packets()?;
    }
}

/// Every record `client` has to send.
pub fn client_records(client: &mut ClientConnection) -> Result<Vec<u8>, TestPkiError> {
    let mut records = Vec::new();
    while client.wants_write() {
        client
            .write_tls(&mut records)
            .map_err(|e| TestPkiError::Handshake(e.to_string()))?;
    }
    Ok(records)
}

/// An edge server configuration and what a client needs to reach it.
#[derive(Debug)]
pub struct TestPki {
    /// The edge TLS configuration (as [`crate::server::edge`] builds it).
    pub server: Arc<ServerConfig>,
    ca: CertificateDer<'static>,
    server_cert_pem: String,
    server_key_pem: String,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: PrivatePkcs8KeyDer<'static>,
}

impl TestPki {
    /// A fresh CA with a `localhost` server certificate and a client certificate.
    pub fn new() -> Result<Self, TestPkiError> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = rcgen::KeyPair::generate()?;
        let server_cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?
            .signed_by(&server_key, &issuer)?;
        let client_key = rcgen::KeyPair::generate()?;
        let client_cert =
            rcgen::CertificateParams::new(Vec::<String>::new())?.signed_by(&client_key, &issuer)?;
        let server = crate::server::edge_from_pem(
            server_cert.pem().as_bytes(),
            server_key.serialize_pem().as_bytes(),
            ca.pem().as_bytes(),
        )?;
        Ok(Self {
            server: Arc::new(server),
            ca: ca.der().clone(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_chain: vec![CertificateDer::from(client_cert.der().to_vec())],
            client_key: PrivatePkcs8KeyDer::from(client_key.serialize_der()),
        })
    }

    /// The server certificate, PEM.
    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }

    /// The server key, PEM.
    pub fn server_key_pem(&self) -> &str {
        &self.server_key_pem
    }

    /// The DER of the client certificate the CA issued.
    pub fn client_leaf_der(&self) -> &[u8] {
        &self.client_chain[0]
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        crate::pem::certificate_pem(&self.ca)
    }

    /// The client certificate, PEM.
    pub fn client_cert_pem(&self) -> String {
        crate::pem::certificate_pem(&self.client_chain[0])
    }

    /// The client's private key, PEM (PKCS#8).
    pub fn client_key_pem(&self) -> String {
        crate::pem::private_key_pem(self.client_key.secret_pkcs8_der())
    }

    /// A server configuration for a control listener (`crate::server::control`) with
    /// the `localhost` certificate, requiring client certificates of this CA.
    pub fn control_server(&self) -> Result<ServerConfig, TestPkiError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(crate::server::control(
            crate::pem::certificates(self.server_cert_pem.as_bytes())?,
            crate::pem::private_key(self.server_key_pem.as_bytes())?,
            roots,
        )?)
    }

    /// A client configuration trusting the CA and presenting the client certificate,
    /// limited to `versions`.
    pub fn client_config(
        &self,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Result<Arc<ClientConfig>, TestPkiError> {
        self.client_config_with(versions, &ClientOptions::default())
    }

    /// [`Self::client_config`] with `options`.
    pub fn client_config_with(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        options: &ClientOptions,
    ) -> Result<Arc<ClientConfig>, TestPkiError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone())?;
        let mut provider = crate::provider();
        if let Some(suite) = options.suite {
            provider.cipher_suites = vec![suite];
        }
        let (mut chain, key) = (self.client_chain.clone(), self.client_key.clone_key());
        let key = if options.forged_leaf || options.foreign_ca {
            let own_key = rcgen::KeyPair::generate()?;
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
            let own = if options.foreign_ca {
                let foreign_key = rcgen::KeyPair::generate()?;
                let mut foreign = rcgen::CertificateParams::new(Vec::<String>::new())?;
                foreign.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                params.signed_by(&own_key, &rcgen::Issuer::new(foreign, foreign_key))?
            } else {
                params.is_ca = rcgen::IsCa::NoCa;
                params.self_signed(&own_key)?
            };
            let own = CertificateDer::from(own.der().to_vec());
            if options.forged_leaf {
                chain.insert(0, own);
            } else {
                chain = vec![own];
            }
            PrivatePkcs8KeyDer::from(own_key.serialize_der())
        } else {
            key
        };
        chain.extend(std::iter::repeat_n(self.ca.clone(), options.extra_certs));
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, PrivateKeyDer::Pkcs8(key))?;
        config.enable_secret_extraction = options.extract_secrets;
        Ok(Arc::new(config))
    }

    /// A client connection to `localhost` over `versions`, with no buffer limit (tests
    /// drain everything it produces).
    pub fn client(
        &self,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Result<ClientConnection, TestPkiError> {
        self.client_with(versions, &ClientOptions::default())
    }

    /// [`Self::client`] with `options`.
    pub fn client_with(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        options: &ClientOptions,
    ) -> Result<ClientConnection, TestPkiError> {
        let name = ServerName::try_from("localhost").map_err(|e| {
            TestPkiError::Rustls(rustls::Error::General(format!("server name: {e}")))
        })?;
        let config = self.client_config_with(versions, options)?;
        let mut client = ClientConnection::new(config, name)?;
        client.set_buffer_limit(None);
        Ok(client)
    }
}
