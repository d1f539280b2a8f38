//! Weft's TLS: the one crate that knows rustls.
//!
//! Every TLS configuration of the network is built here, so that what a peer must
//! prove is written once:
//! - [`server::edge`]: a router's edge listener (and its link listener): client
//!   certificates required and verified against the identity CAs;
//! - [`server::control`]: the controller's router control listener: router
//!   certificates required;
//! - [`server::api`]: the controller's HTTPS APIs: a client certificate requested,
//!   its possession proven, its chain checked by the API;
//! - [`client::verified`]: every client that knows its CA bundle (SDK, router control
//!   client, CLI), with or without a client certificate;
//! - [`client::pinned`]: enrollment's bootstrap, trusting one certificate or none.
//!
//! Also the certificate [`fingerprint`] (a controller↔router contract), PEM reading and
//! writing ([`pem`]) and certs-only PKCS#7 bundles ([`pkcs7`], the format of
//! `/.well-known/est/cacerts`). The router's own TLS record layer stays in the router
//! (its shards run it on rustls' extracted keys; see the router's ADR 0004).
//!
//! With the `test-pki` feature, [`test_pki`] makes a throwaway CA for tests, benches
//! and fuzz targets; no production crate enables it.

#![warn(missing_docs)]

pub mod client;
mod error;
pub mod pem;
pub mod pkcs7;
pub mod server;
#[cfg(feature = "test-pki")]
pub mod test_pki;

use rustls::crypto::{CryptoProvider, aws_lc_rs};
use sha1::{Digest, Sha1};

pub use error::TlsError;
pub use rustls;

/// The crypto provider of every Weft TLS endpoint: aws-lc-rs, restricted to ECDHE
/// with AEAD ciphers (AES-GCM, ChaCha20-Poly1305) for TLS 1.2, and the TLS 1.3 suites.
/// AES-128-GCM first: on the data path it is the cheapest with AES-NI.
pub fn provider() -> CryptoProvider {
    use aws_lc_rs::cipher_suite as cs;
    CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..aws_lc_rs::default_provider()
    }
}

/// The TLS versions Weft speaks: 1.3 and 1.2 (all the OpenZiti C SDK 0.29.3 knows).
pub static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Lower-case hex SHA-1 of a DER certificate, as OpenZiti computes certificate
/// fingerprints (`edge:internal/cert/fingerprint.go`). The controller records router
/// and identity certificates by it; routers match peers against it.
pub fn fingerprint(der: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha1::digest(der)
        .iter()
        .fold(String::with_capacity(40), |mut s, b| {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The fingerprint of the peer's **leaf** certificate, the one whose key the handshake
/// proved; `None` before the handshake has verified it. Certificates after the leaf are
/// only presented and never identify the peer (OpenZiti's router accepted any
/// certificate of the chain: GHSA-mrpr-756c-xm47).
pub fn leaf_fingerprint(conn: &rustls::CommonState) -> Option<String> {
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| fingerprint(leaf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_lower_hex_sha1() {
        // SHA-1("abc")
        assert_eq!(
            fingerprint(b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn provider_offers_only_ecdhe_aead_suites() {
        for suite in provider().cipher_suites {
            let name = format!("{:?}", suite.suite());
            assert!(
                name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
                "{name}"
            );
            assert!(
                name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
                "{name}"
            );
        }
    }
}
