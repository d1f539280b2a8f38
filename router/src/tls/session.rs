//! A rustls server connection driven on caller-owned buffers, for drivers whose sockets
//! take owned buffers (io_uring) and so cannot sit under tokio-rustls.
//!
//! The driver reads ciphertext into its own buffer and hands it to [`ServerSession::feed`],
//! which decrypts straight into the forwarder's receive buffer; it hands plaintext frames
//! to [`ServerSession::encrypt`] and collects the records with
//! [`ServerSession::take_tls`] into its own outgoing buffer, which it submits in one
//! write. The handshake is the same loop before the first application data.
//!
//! This uses rustls' buffered API (`read_tls`, `process_new_packets`, `reader`,
//! `writer`, `write_tls`): rustls keeps its own record buffers, so each direction copies
//! once more than the TLS crypto itself (ciphertext out of rustls into the caller's
//! buffer; plaintext out of rustls into the receive buffer), and rustls allocates a
//! buffer per record it encrypts or decrypts. rustls' unbuffered API would remove both;
//! it is the next step (docs/adr/0004-router-runtime.md).

use std::io::{BufRead as _, IoSlice, Write as _};
use std::sync::Arc;

use bytes::BytesMut;
use rustls::{ServerConfig, ServerConnection};

/// How much the plaintext buffer grows by when it runs out of room.
const PLAINTEXT_RESERVE: usize = 64 * 1024;

/// Why a TLS session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The peer broke the TLS protocol (or a certificate was refused); an alert is
    /// queued for it (see [`ServerSession::wants_write`]).
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// rustls refused to take bytes (its buffers are full: a driver bug).
    #[error("TLS buffers: {0}")]
    Io(#[from] std::io::Error),
}

/// What [`ServerSession::feed`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fed {
    /// The session goes on.
    Open,
    /// The peer sent its close_notify: no more application data will come.
    PeerClosed,
}

/// One edge connection's TLS, server side, on caller-owned buffers.
#[derive(Debug)]
pub struct ServerSession {
    conn: ServerConnection,
}

impl ServerSession {
    /// A session waiting for the client's hello.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, SessionError> {
        let mut conn = ServerConnection::new(config)?;
        // The driver drains everything rustls produces into its own bounded buffers
        // after each batch, so rustls' own limits would only split writes.
        conn.set_buffer_limit(None);
        Ok(Self { conn })
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The negotiated protocol version, once known.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The fingerprints of the client's certificates, leaf first (empty during the
    /// handshake).
    pub fn client_fingerprints(&self) -> Vec<String> {
        super::client_fingerprints(&self.conn)
    }

    /// Decrypts `ciphertext` (handshake records are processed, their answers queued for
    /// [`Self::take_tls`]) and appends the application data to `plaintext`, growing it
    /// as needed. Stops early once the peer's close_notify arrives.
    pub fn feed(
        &mut self,
        mut ciphertext: &[u8],
        plaintext: &mut BytesMut,
    ) -> Result<Fed, SessionError> {
        while !ciphertext.is_empty() {
            let n = self.conn.read_tls(&mut ciphertext)?;
            self.conn.process_new_packets()?;
            if self.drain_plaintext(plaintext)? == Fed::PeerClosed || n == 0 {
                // `read_tls` takes nothing after a close_notify.
                return Ok(Fed::PeerClosed);
            }
        }
        Ok(Fed::Open)
    }

    fn drain_plaintext(&mut self, plaintext: &mut BytesMut) -> Result<Fed, SessionError> {
        let mut reader = self.conn.reader();
        loop {
            let chunk = match reader.fill_buf() {
                Ok([]) => return Ok(Fed::PeerClosed),
                Ok(chunk) => chunk,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Fed::Open),
                Err(e) => return Err(e.into()),
            };
            let len = chunk.len();
            if plaintext.capacity() - plaintext.len() < len {
                plaintext.reserve(len.max(PLAINTEXT_RESERVE));
            }
            plaintext.extend_from_slice(chunk);
            reader.consume(len);
        }
    }

    /// Encrypts `head` then `payload` as application data (in as few records as their
    /// total length allows); the records wait for [`Self::take_tls`]. During the
    /// handshake the plaintext is held until it completes.
    pub fn encrypt(&mut self, head: &[u8], payload: &[u8]) -> Result<(), SessionError> {
        let mut slices = [IoSlice::new(head), IoSlice::new(payload)];
        let mut slices: &mut [IoSlice<'_>] = &mut slices;
        while !slices.is_empty() {
            let n = self.conn.writer().write_vectored(slices)?;
            if n == 0 {
                return Err(SessionError::Io(std::io::ErrorKind::WriteZero.into()));
            }
            IoSlice::advance_slices(&mut slices, n);
        }
        Ok(())
    }

    /// Whether records (handshake, application data, alerts) wait for [`Self::take_tls`].
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Appends every record waiting to be sent to `out`.
    pub fn take_tls(&mut self, out: &mut Vec<u8>) -> Result<(), SessionError> {
        while self.conn.wants_write() {
            if self.conn.write_tls(out)? == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Queues the close_notify alert (sent by the next [`Self::take_tls`]).
    pub fn send_close_notify(&mut self) {
        self.conn.send_close_notify();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

    struct Pair {
        client: rustls::ClientConnection,
        server: ServerSession,
    }

    fn pair(tls12: bool) -> Pair {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let client_cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .signed_by(&client_key, &issuer)
            .unwrap();
        let server_config = super::super::server_config(
            server_cert.pem().as_bytes(),
            server_key.serialize_pem().as_bytes(),
        )
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from(client_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client_key.serialize_der())),
        )
        .unwrap();
        let mut client = rustls::ClientConnection::new(
            Arc::new(client_config),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        client.set_buffer_limit(None);
        Pair {
            client,
            server: ServerSession::new(Arc::new(server_config)).unwrap(),
        }
    }

    /// Moves records both ways until neither side has anything to send; returns the
    /// plaintext the server received. Ciphertext goes to the server in 7-byte pieces.
    fn exchange(p: &mut Pair) -> BytesMut {
        let mut received = BytesMut::new();
        for _ in 0..16 {
            let mut to_server = Vec::new();
            while p.client.wants_write() {
                p.client.write_tls(&mut to_server).unwrap();
            }
            for piece in to_server.chunks(7) {
                assert_eq!(p.server.feed(piece, &mut received).unwrap(), Fed::Open);
            }
            let mut to_client = Vec::new();
            p.server.take_tls(&mut to_client).unwrap();
            let mut slice = &to_client[..];
            while !slice.is_empty() {
                p.client.read_tls(&mut slice).unwrap();
                p.client.process_new_packets().unwrap();
            }
            if to_server.is_empty() && to_client.is_empty() {
                break;
            }
        }
        received
    }

    #[test]
    fn handshake_and_application_data_both_ways() {
        for tls12 in [true, false] {
            let mut p = pair(tls12);
            exchange(&mut p);
            assert!(!p.server.is_handshaking());
            assert!(!p.client.is_handshaking());
            assert_eq!(p.server.client_fingerprints().len(), 1);
            let expected = if tls12 {
                rustls::ProtocolVersion::TLSv1_2
            } else {
                rustls::ProtocolVersion::TLSv1_3
            };
            assert_eq!(p.server.protocol_version(), Some(expected));

            // 100 KiB from the client arrives in order (more than rustls' 16 KiB
            // plaintext limit in one feed).
            let up: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
            p.client.writer().write_all(&up).unwrap();
            let received = exchange(&mut p);
            assert_eq!(&received[..], &up[..]);

            // Head + payload from the server.
            p.server.encrypt(b"head:", b"payload").unwrap();
            let mut out = Vec::new();
            p.server.take_tls(&mut out).unwrap();
            let mut slice = &out[..];
            while !slice.is_empty() {
                p.client.read_tls(&mut slice).unwrap();
                p.client.process_new_packets().unwrap();
            }
            let mut got = [0u8; 12];
            std::io::Read::read_exact(&mut p.client.reader(), &mut got).unwrap();
            assert_eq!(&got, b"head:payload");

            // The client's close_notify is seen.
            p.client.send_close_notify();
            let mut to_server = Vec::new();
            p.client.write_tls(&mut to_server).unwrap();
            let mut sink = BytesMut::new();
            assert_eq!(
                p.server.feed(&to_server, &mut sink).unwrap(),
                Fed::PeerClosed
            );
        }
    }

    #[test]
    fn garbage_is_an_error_with_an_alert_queued() {
        let mut p = pair(false);
        let mut sink = BytesMut::new();
        // A record of an unknown content type.
        let e = p
            .server
            .feed(&[0x99, 0x03, 0x03, 0x00, 0x01, 0x00], &mut sink);
        assert!(matches!(e, Err(SessionError::Tls(_))), "{e:?}");
        assert!(p.server.wants_write());
    }
}
