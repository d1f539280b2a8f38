//! A fake controller: the control channel's server side (mutual TLS, Weft's control
//! frames), driven step by step by the test, so a router's control client can be
//! tested against exactly the answers — and the misbehaviour — a test chooses.
//!
//! ```no_run
//! # async fn demo() {
//! use weft_testkit::control::FakeController;
//! let pki = weft_tls::test_pki::TestPki::new().unwrap();
//! let ctl = FakeController::start(&pki).await;
//! // … start a router's control client towards ctl.address() …
//! let mut router = ctl.accept().await;
//! let (seq, hello) = router.hello().await;
//! router.ack(seq).await;
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use weft_tls::test_pki::TestPki;
use weft_wire::control::{ControlMessage, pb};
use weft_wire::{ContentType, Decoded, Decoder, Frame, Limits};

/// How long the fake waits for a router's frame or connection.
pub const WAIT: Duration = Duration::from_secs(30);

/// A control listener on loopback with the test PKI's `localhost` certificate,
/// accepting routers that present a certificate of the test CA.
pub struct FakeController {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for FakeController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeController")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// One router's control connection, after the TLS handshake.
#[derive(Debug)]
pub struct RouterConn {
    tls: TlsStream<TcpStream>,
    decoder: Decoder,
    sequence: i32,
    /// The fingerprint of the leaf certificate the router proved (`weft_tls`).
    pub leaf_fingerprint: Option<String>,
}

impl FakeController {
    /// Listens on 127.0.0.1 with `pki`'s server certificate.
    pub async fn start(pki: &TestPki) -> Self {
        let config = pki.control_server().unwrap();
        Self {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        }
    }

    /// The address routers dial (`localhost:<port>`, the certificate's name).
    pub fn address(&self) -> String {
        format!("localhost:{}", self.local_addr().port())
    }

    /// The socket address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    /// The next router connection whose TLS handshake succeeds (within [`WAIT`]).
    pub async fn accept(&self) -> RouterConn {
        tokio::time::timeout(WAIT, async {
            loop {
                let (tcp, _) = self.listener.accept().await.unwrap();
                if let Ok(tls) = self.acceptor.accept(tcp).await {
                    let leaf_fingerprint = weft_tls::leaf_fingerprint(tls.get_ref().1);
                    return RouterConn {
                        tls,
                        decoder: Decoder::new(Limits::DEFAULT),
                        sequence: 0,
                        leaf_fingerprint,
                    };
                }
            }
        })
        .await
        .expect("no router connected in time")
    }

    /// Accepts connections for `within`: how many routers tried (TCP connections),
    /// and whether any TLS handshake completed (the first one ends the wait).
    pub async fn handshakes_within(&self, within: Duration) -> (usize, bool) {
        let mut tries = 0;
        let completed = tokio::time::timeout(within, async {
            loop {
                let Ok((tcp, _)) = self.listener.accept().await else {
                    continue;
                };
                tries += 1;
                if self.acceptor.accept(tcp).await.is_ok() {
                    return;
                }
            }
        })
        .await
        .is_ok();
        (tries, completed)
    }
}

impl RouterConn {
    /// The next frame, or `None` when the router closes the connection (within
    /// [`WAIT`]).
    pub async fn frame_or_close(&mut self) -> Option<Frame> {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.decoder.decode().unwrap() {
                    Decoded::Frame(f) => return Some(f),
                    Decoded::NeedMore { additional } => {
                        let buf = self.decoder.buffer_mut();
                        buf.reserve(additional.max(4096));
                        match self.tls.read_buf(buf).await {
                            Ok(0) | Err(_) => return None,
                            Ok(_) => {}
                        }
                    }
                }
            }
        })
        .await
        .expect("neither a frame nor a close from the router in time")
    }

    /// The next frame, which must be a `M`; returns its sequence and message.
    pub async fn expect<M: ControlMessage>(&mut self) -> (i32, M) {
        let frame = self.frame_or_close().await.expect("the router closed");
        assert_eq!(frame.content_type(), M::CONTENT_TYPE, "{frame:?}");
        (frame.sequence(), M::decode_frame(&frame).unwrap())
    }

    /// The router's hello (its first frame).
    pub async fn hello(&mut self) -> (i32, pb::RouterHello) {
        self.expect::<pb::RouterHello>().await
    }

    /// Sends `message`, replying to `reply_for` when given; returns its sequence.
    pub async fn send<M: ControlMessage>(&mut self, message: &M, reply_for: Option<i32>) -> i32 {
        self.sequence += 1;
        let mut out = BytesMut::new();
        message
            .encode_frame(self.sequence, reply_for, &mut out)
            .unwrap();
        self.tls.write_all(&out).await.unwrap();
        self.tls.flush().await.unwrap();
        self.sequence
    }

    /// Acknowledges the hello of sequence `hello_seq`.
    pub async fn ack(&mut self, hello_seq: i32) {
        let ack = pb::HelloAck {
            controller_id: "fake-controller".into(),
            version: "test".into(),
        };
        self.send(&ack, Some(hello_seq)).await;
    }

    /// Bytes as they are: garbage, or frames made by hand.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).await.unwrap();
        self.tls.flush().await.unwrap();
    }

    /// Whether the router closed the connection (EOF) within `within`, ignoring frames.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async {
            while self.frame_or_close().await.is_some() {}
        })
        .await
        .is_ok()
    }

    /// The content type of the next frame, for tests that skip a message.
    pub async fn next_content_type(&mut self) -> Option<ContentType> {
        self.frame_or_close().await.map(|f| f.content_type())
    }
}
