//! The edge listener's trust, which the controller may widen at run time: besides the
//! network's CA bundle (the static `ca.pem`), the certificates of the 3rd-party CAs the
//! controller reports verified and auth-enabled (`TrustedCas` on the control channel).
//!
//! Each accept takes the configuration current then ([`EdgeTls::current`], one read
//! lock and an `Arc` clone per connection, never per frame); a change builds a new
//! rustls `ServerConfig` and swaps it in, so only handshakes that start afterwards see
//! it. Connections already up keep going: which API session a connection belongs to is
//! checked from its leaf fingerprint at the edge hello, and the controller removes the
//! API sessions it no longer trusts. Links between routers always use the network CA
//! alone ([`EdgeTls::base`]).

use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Most 3rd-party CAs the router trusts at once (more reported are ignored, logged).
pub const MAX_EXTRA_CAS: usize = 256;

/// What rebuilding the configuration needs.
struct Parts {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Vec<CertificateDer<'static>>,
}

struct Inner {
    base: Arc<ServerConfig>,
    parts: Option<Parts>,
    current: RwLock<Arc<ServerConfig>>,
}

/// The edge listener's TLS configuration, shared by every shard.
#[derive(Clone)]
pub struct EdgeTls {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EdgeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeTls")
            .field("rebuildable", &self.inner.parts.is_some())
            .finish_non_exhaustive()
    }
}

impl From<Arc<ServerConfig>> for EdgeTls {
    /// A fixed configuration ([`EdgeTls::set_extra_cas`] then changes nothing).
    fn from(config: Arc<ServerConfig>) -> Self {
        Self {
            inner: Arc::new(Inner {
                current: RwLock::new(config.clone()),
                base: config,
                parts: None,
            }),
        }
    }
}

impl EdgeTls {
    /// The edge configuration of the server chain (leaf first), its key and the
    /// network's CA certificates, which 3rd-party CAs can later be added to.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, TlsError> {
        let parts = Parts { chain, key, roots };
        let base = Arc::new(build(&parts, &[])?);
        Ok(Self {
            inner: Arc::new(Inner {
                current: RwLock::new(base.clone()),
                base,
                parts: Some(parts),
            }),
        })
    }

    /// [`Self::new`] from PEM text.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], ca_pem: &[u8]) -> Result<Self, TlsError> {
        use weft_tls::pem;
        Self::new(
            pem::certificates(cert_pem)?,
            pem::private_key(key_pem)?,
            pem::certificates(ca_pem)?,
        )
    }

    /// The configuration new edge handshakes use.
    pub fn current(&self) -> Arc<ServerConfig> {
        match self.inner.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The configuration with the network's CA alone (router links).
    pub fn base(&self) -> Arc<ServerConfig> {
        self.inner.base.clone()
    }

    /// Trusts the network CA and these 3rd-party CA certificates (DER) from now on,
    /// replacing the last list; returns how many were taken (certificates that do not
    /// parse are skipped). A fixed configuration takes none.
    pub fn set_extra_cas(&self, certs: &[Vec<u8>]) -> Result<usize, TlsError> {
        let Some(parts) = &self.inner.parts else {
            return Ok(0);
        };
        if certs.len() > MAX_EXTRA_CAS {
            tracing::warn!(
                reported = certs.len(),
                kept = MAX_EXTRA_CAS,
                "too many 3rd-party CAs; the rest are not trusted"
            );
        }
        let extra: Vec<CertificateDer<'static>> = certs
            .iter()
            .take(MAX_EXTRA_CAS)
            .map(|c| CertificateDer::from(c.clone()))
            .collect();
        let (config, taken) = build_counting(parts, &extra)?;
        let config = Arc::new(config);
        match self.inner.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(taken)
    }
}

fn build(parts: &Parts, extra: &[CertificateDer<'static>]) -> Result<ServerConfig, TlsError> {
    build_counting(parts, extra).map(|(c, _)| c)
}

/// The edge configuration trusting the network's roots and `extra`; the number of
/// `extra` certificates taken.
fn build_counting(
    parts: &Parts,
    extra: &[CertificateDer<'static>],
) -> Result<(ServerConfig, usize), TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for r in &parts.roots {
        roots.add(r.clone())?;
    }
    let mut taken = 0;
    for c in extra {
        match roots.add(c.clone()) {
            Ok(()) => taken += 1,
            Err(e) => tracing::warn!(error = %e, "a 3rd-party CA certificate was skipped"),
        }
    }
    let config = weft_tls::server::edge(parts.chain.clone(), parts.key.clone_key(), roots)?;
    Ok((config, taken))
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, ServerConnection};
    use weft_testkit::ThirdPartyCa;

    use super::*;
    use crate::tls::test_pki::TestPki;

    /// Whether a client presenting `cert`/`key` completes a handshake with `server`
    /// (in memory, rustls on both sides).
    fn handshakes(pki: &TestPki, server: Arc<ServerConfig>, cert: &str, key: &str) -> bool {
        let roots = weft_tls::pem::roots(pki.ca_pem().as_bytes()).unwrap();
        let chain = weft_tls::pem::certificates(cert.as_bytes()).unwrap();
        let key = weft_tls::pem::private_key(key.as_bytes()).unwrap();
        let client = ClientConfig::builder_with_provider(Arc::new(weft_tls::provider()))
            .with_protocol_versions(weft_tls::VERSIONS)
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            if s.read_tls(&mut buf.as_slice()).is_err() || s.process_new_packets().is_err() {
                return false;
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            if c.read_tls(&mut buf.as_slice()).is_err() || c.process_new_packets().is_err() {
                return false;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return true;
            }
        }
        false
    }

    fn der(pem: &str) -> Vec<u8> {
        weft_tls::pem::certificates(pem.as_bytes()).unwrap()[0].to_vec()
    }

    /// A client of a 3rd-party CA fails the handshake until that CA is added, and
    /// again once it is removed; the network's own clients always pass; links never
    /// trust the 3rd-party CA.
    #[test]
    fn extra_cas_are_trusted_while_listed() {
        let pki = TestPki::new().unwrap();
        let ca = ThirdPartyCa::new("corp");
        let client = ca.client("laptop", &[], &[]);
        let edge = EdgeTls::from_pem(
            pki.server_cert_pem().as_bytes(),
            pki.server_key_pem().as_bytes(),
            pki.ca_pem().as_bytes(),
        )
        .unwrap();
        let own = |server| handshakes(&pki, server, &pki.client_cert_pem(), &pki.client_key_pem());
        let third = |server| handshakes(&pki, server, &client.cert_pem, &client.key_pem);
        assert!(own(edge.current()));
        assert!(!third(edge.current()));
        assert_eq!(
            edge.set_extra_cas(&[der(ca.pem()), b"junk".to_vec()])
                .unwrap(),
            1
        );
        assert!(third(edge.current()));
        assert!(own(edge.current()));
        assert!(!third(edge.base()));
        edge.set_extra_cas(&[]).unwrap();
        assert!(!third(edge.current()));
        // A fixed configuration takes nothing.
        let fixed = EdgeTls::from(edge.base());
        assert_eq!(fixed.set_extra_cas(&[der(ca.pem())]).unwrap(), 0);
    }
}
