//! A throwaway PKI for tests and benches: a CA, a `localhost` server certificate for
//! the router and a client certificate, made with rcgen in memory.

use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, SupportedProtocolVersion};

use super::{ServerSession, SessionError, TlsBuf};

/// Why the test PKI could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TestPkiError {
    /// rcgen refused a certificate or key.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused a configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The router's own configuration builder refused the server certificate.
    #[error(transparent)]
    Server(#[from] super::TlsError),
    /// The router's session failed the handshake.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Moving the client's records failed, or the handshake did not finish.
    #[error("handshake: {0}")]
    Handshake(String),
}

/// The router's server configuration and what a client needs to reach it.
#[derive(Debug)]
pub struct TestPki {
    /// The router's edge TLS configuration (as [`super::server_config`] builds it).
    pub server: Arc<ServerConfig>,
    ca: CertificateDer<'static>,
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
        let server = super::server_config(
            server_cert.pem().as_bytes(),
            server_key.serialize_pem().as_bytes(),
        )?;
        Ok(Self {
            server: Arc::new(server),
            ca: ca.der().clone(),
            client_chain: vec![CertificateDer::from(client_cert.der().to_vec())],
            client_key: PrivatePkcs8KeyDer::from(client_key.serialize_der()),
        })
    }

    /// A client configuration trusting the CA and presenting the client certificate,
    /// limited to `versions`.
    pub fn client_config(
        &self,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Result<Arc<ClientConfig>, TestPkiError> {
        self.client_config_padded(versions, 0)
    }

    /// [`Self::client_config`] whose chain carries `extra` copies of the CA certificate
    /// after the client's (a long chain: its Certificate message spans records).
    pub fn client_config_padded(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        extra: usize,
    ) -> Result<Arc<ClientConfig>, TestPkiError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone())?;
        let config = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(versions)?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            self.client_chain
                .iter()
                .cloned()
                .chain(std::iter::repeat_n(self.ca.clone(), extra))
                .collect(),
            PrivateKeyDer::Pkcs8(self.client_key.clone_key()),
        )?;
        Ok(Arc::new(config))
    }

    /// A client connection to `localhost` over `versions`, with no buffer limit (tests
    /// drain everything it produces).
    pub fn client(
        &self,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Result<ClientConnection, TestPkiError> {
        self.client_padded(versions, 0)
    }

    /// [`Self::client`] with the padded chain of [`Self::client_config_padded`].
    pub fn client_padded(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        extra: usize,
    ) -> Result<ClientConnection, TestPkiError> {
        let name = ServerName::try_from("localhost").map_err(|e| {
            TestPkiError::Rustls(rustls::Error::General(format!("server name: {e}")))
        })?;
        let config = self.client_config_padded(versions, extra)?;
        let mut client = ClientConnection::new(config, name)?;
        client.set_buffer_limit(None);
        Ok(client)
    }

    /// A client over `versions` and the router's session for it, handshaken in memory.
    pub fn handshaken(
        &self,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Result<(ClientConnection, ServerSession), TestPkiError> {
        let mut client = self.client(versions)?;
        let mut server = ServerSession::new(Arc::clone(&self.server))?;
        let mut early = BytesMut::new();
        for _ in 0..8 {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client
                    .write_tls(&mut to_server)
                    .map_err(|e| TestPkiError::Handshake(e.to_string()))?;
            }
            server.feed(&to_server, &mut early)?;
            let mut to_client = TlsBuf::default();
            server.take_tls(&mut to_client)?;
            let mut slice = &to_client[..];
            while !slice.is_empty() {
                client
                    .read_tls(&mut slice)
                    .map_err(|e| TestPkiError::Handshake(e.to_string()))?;
                client.process_new_packets()?;
            }
        }
        if server.is_handshaking() || client.is_handshaking() || !early.is_empty() {
            return Err(TestPkiError::Handshake("not finished in 8 flights".into()));
        }
        Ok((client, server))
    }
}
