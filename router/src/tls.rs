//! The router's TLS sessions: its own record layer over rustls' handshake.
//!
//! The configuration (suites, versions, the client-certificate verifier) is
//! `weft_tls::server::edge`, shared with every other Weft TLS endpoint; this module
//! runs the sessions the shards drive ([`ServerSession`]; ADR 0004).
//!
//! The edge listener speaks TLS 1.2 (all the OpenZiti C SDK 0.29.3 knows, spec §8) and
//! TLS 1.3, ECDHE key exchange only, with AES-GCM or ChaCha20-Poly1305. Client
//! certificates are **required** and their chain must verify against the CAs that may
//! issue identity certificates (the controller's CA bundle, `ca.pem`). The handshake
//! signature proves the client holds the key of the **leaf** certificate only, so only
//! the leaf's fingerprint is kept ([`client_leaf_fingerprint`]) and bound to an API
//! session in [`crate::sessions::SessionTable::check_hello`]; any other certificate of
//! the chain is merely presented, never proof of an identity. (OpenZiti's router
//! accepted a session when any certificate of the chain matched, GHSA-mrpr-756c-xm47.)

use std::path::Path;

use rustls::ServerConfig;

/// The `tls_records` fuzz target's entry point: only under `cargo fuzz` (`--cfg
/// fuzzing`, with the `test-pki` feature) and in this crate's tests.
#[cfg(any(test, all(fuzzing, feature = "test-pki")))]
pub mod fuzzing;
mod record;
mod session;
mod side;
#[cfg(any(test, feature = "test-pki"))]
pub mod test_pki;
pub mod trust;

pub use session::{
    ClientSession, Fed, INCOMING_BUFFER, MAX_RECORD_PLAINTEXT, ServerSession, Session,
    SessionError, TlsBuf,
};
pub use side::{Client, Server, Side};
pub use trust::EdgeTls;
pub use weft_tls::TlsError;

/// The edge listener's TLS configuration (`weft_tls::server::edge`) from PEM files: the
/// server certificate chain (leaf first), its key, and the CA bundle client
/// certificates must chain to.
pub fn load_server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<ServerConfig, TlsError> {
    use weft_tls::pem::read;
    weft_tls::server::edge_from_pem(&read(cert)?, &read(key)?, &read(client_ca)?)
}

/// [`load_server_config`] as an [`EdgeTls`], which 3rd-party CAs can be added to.
pub fn load_edge_tls(cert: &Path, key: &Path, client_ca: &Path) -> Result<EdgeTls, TlsError> {
    use weft_tls::pem::read;
    EdgeTls::from_pem(&read(cert)?, &read(key)?, &read(client_ca)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the leaf whose key the handshake proved identifies a client: a chain that
    /// puts the client's own self-signed leaf before a victim's certificate
    /// (GHSA-mrpr-756c-xm47), or a certificate of a CA the router does not trust, fails
    /// the handshake; a good client is known by its leaf's fingerprint.
    #[test]
    fn only_a_leaf_the_ca_issued_identifies_a_client() {
        use test_pki::{ClientOptions, Handshake, TestPki};
        let pki = TestPki::new().unwrap();
        for versions in [&[&rustls::version::TLS12], &[&rustls::version::TLS13]] {
            for options in [
                ClientOptions {
                    forged_leaf: true,
                    ..ClientOptions::default()
                },
                ClientOptions {
                    foreign_ca: true,
                    ..ClientOptions::default()
                },
            ] {
                let result = pki.handshaken_with(versions, &options);
                assert!(result.is_err(), "{options:?} must fail the handshake");
            }
            let (_, server) = pki.handshaken(versions).unwrap();
            assert_eq!(
                server.client_leaf_fingerprint(),
                Some(weft_tls::fingerprint(pki.client_leaf_der()))
            );
        }
    }
}
