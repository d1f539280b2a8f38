//! The test PKI (`weft_tls::test_pki`, re-exported) and in-memory handshakes with the
//! router's own [`ServerSession`], for tests, benches and fuzz targets. Built for the
//! router's own tests and with the `test-pki` feature; no production build has it.

use std::sync::Arc;

use bytes::BytesMut;
use rustls::{ClientConnection, SupportedProtocolVersion};
pub use weft_tls::test_pki::*;

use super::{ServerSession, SessionError, TlsBuf};

/// Why an in-memory handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The client side could not be made or moved.
    #[error(transparent)]
    Pki(#[from] TestPkiError),
    /// The router's session refused the client.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The handshake did not finish.
    #[error("handshake: {0}")]
    Unfinished(String),
}

/// Handshakes between a test client and the router's [`ServerSession`], in memory.
pub trait Handshake {
    /// A client over `versions` and the router's session for it, handshaken.
    fn handshaken(
        &self,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Result<(ClientConnection, ServerSession), HandshakeError>;

    /// [`Handshake::handshaken`] with a client made with `options`.
    fn handshaken_with(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        options: &ClientOptions,
    ) -> Result<(ClientConnection, ServerSession), HandshakeError>;
}

impl Handshake for TestPki {
    fn handshaken(
        &self,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Result<(ClientConnection, ServerSession), HandshakeError> {
        self.handshaken_with(versions, &ClientOptions::default())
    }

    fn handshaken_with(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        options: &ClientOptions,
    ) -> Result<(ClientConnection, ServerSession), HandshakeError> {
        let mut client = self.client_with(versions, options)?;
        let mut server = ServerSession::new(Arc::clone(&self.server))?;
        let mut early = BytesMut::new();
        for _ in 0..8 {
            let to_server = client_records(&mut client)?;
            server.feed(&to_server, &mut early)?;
            let mut to_client = TlsBuf::default();
            server.take_tls(&mut to_client)?;
            deliver(&mut client, &to_client)?;
        }
        if server.is_handshaking() || client.is_handshaking() || !early.is_empty() {
            return Err(HandshakeError::Unfinished(
                "not finished in 8 flights".into(),
            ));
        }
        Ok((client, server))
    }
}
