//! A raw edge-protocol client over TLS: what an SDK sends, frame by frame, so tests
//! can drive a router exactly (and send what no SDK would).
//!
//! [`EdgeClient`] holds a reader and a writer half ([`EdgeReader`], [`EdgeWriter`]) that
//! tests may use concurrently.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use weft_wire::edge::{Connect, Data, Hello, HelloResult};
use weft_wire::{ContentType, Decoded, Decoder, Frame, Limits};

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(30);

/// The reading half: decodes frames.
#[derive(Debug)]
pub struct EdgeReader {
    r: ReadHalf<TlsStream<TcpStream>>,
    decoder: Decoder,
}

/// The writing half: numbers frames with the channel sequence.
#[derive(Debug)]
pub struct EdgeWriter {
    w: WriteHalf<TlsStream<TcpStream>>,
    /// The last channel sequence sent.
    pub sequence: i32,
}

/// An edge connection: TLS to a router's edge listener, edge frames over it.
#[derive(Debug)]
pub struct EdgeClient {
    /// Reading half.
    pub r: EdgeReader,
    /// Writing half.
    pub w: EdgeWriter,
    /// The TLS version negotiated.
    pub version: Option<rustls::ProtocolVersion>,
}

impl EdgeClient {
    /// A TLS connection to `addr` (server name `localhost`) with `config`; an error when
    /// TCP or the handshake fails (a router refusing the client certificate).
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        let version = tls.get_ref().1.protocol_version();
        let (r, w) = tokio::io::split(tls);
        Ok(Self {
            r: EdgeReader {
                r,
                decoder: Decoder::new(Limits::DEFAULT),
            },
            w: EdgeWriter { w, sequence: 0 },
            version,
        })
    }

    /// Sends a Hello with the API session `token`; returns the router's answer, or
    /// `None` when it closes the connection instead (within [`WAIT`]).
    pub async fn hello(&mut self, token: &str) -> Option<(i32, Frame)> {
        let seq = self
            .w
            .send(|s, out| {
                Hello {
                    session_token: token.as_bytes(),
                    client_info: b"weft-testkit",
                }
                .encode(s, out)
            })
            .await;
        let frame = tokio::time::timeout(WAIT, self.r.next())
            .await
            .expect("no hello answer in time")?;
        Some((seq, frame))
    }

    /// [`Self::hello`] that must succeed: the answer is a successful `HelloResult` for
    /// this hello.
    pub async fn hello_ok(&mut self, token: &str) {
        let (seq, frame) = self
            .hello(token)
            .await
            .expect("hello refused: the router closed the connection");
        assert_eq!(frame.content_type(), ContentType::RESULT, "{frame:?}");
        let result = HelloResult::parse(&frame).unwrap();
        assert!(result.success, "hello refused");
        assert_eq!(result.reply_for, seq);
    }

    /// [`EdgeWriter::send`].
    pub async fn send(
        &mut self,
        encode: impl FnOnce(i32, &mut BytesMut) -> Result<(), weft_wire::EncodeError>,
    ) -> i32 {
        self.w.send(encode).await
    }

    /// [`EdgeWriter::send_connect`].
    pub async fn send_connect(&mut self, conn_id: u32, token: &str) -> i32 {
        self.w.send_connect(conn_id, token).await
    }

    /// [`EdgeReader::next`].
    pub async fn next(&mut self) -> Option<Frame> {
        self.r.next().await
    }

    /// [`EdgeReader::frame`].
    pub async fn frame(&mut self) -> Frame {
        self.r.frame().await
    }

    /// [`EdgeReader::frame_or_close`].
    pub async fn frame_or_close(&mut self) -> Option<Frame> {
        self.r.frame_or_close().await
    }

    /// [`EdgeReader::expect`].
    pub async fn expect(&mut self, content_type: ContentType) -> Frame {
        self.r.expect(content_type).await
    }
}

impl EdgeReader {
    /// The next frame, or `None` at EOF or on a read error.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            match self.decoder.decode().unwrap() {
                Decoded::Frame(f) => return Some(f),
                Decoded::NeedMore { additional } => {
                    let buf = self.decoder.buffer_mut();
                    buf.reserve(additional.max(64 * 1024));
                    match self.r.read_buf(buf).await {
                        Ok(0) | Err(_) => return None,
                        Ok(_) => {}
                    }
                }
            }
        }
    }

    /// The next frame within [`WAIT`]; panics on a close.
    pub async fn frame(&mut self) -> Frame {
        self.frame_or_close().await.expect("connection closed")
    }

    /// The next frame, or `None` when the connection closes first (within [`WAIT`]).
    pub async fn frame_or_close(&mut self) -> Option<Frame> {
        tokio::time::timeout(WAIT, self.next())
            .await
            .expect("neither a frame nor a close in time")
    }

    /// The next frame, which must be of `content_type`.
    pub async fn expect(&mut self, content_type: ContentType) -> Frame {
        let frame = self.frame().await;
        assert_eq!(frame.content_type(), content_type, "{frame:?}");
        frame
    }

    /// Reads until the connection ends (EOF or error), within [`WAIT`]; returns the
    /// frames seen meanwhile.
    pub async fn until_closed(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        tokio::time::timeout(WAIT, async {
            while let Some(f) = self.next().await {
                frames.push(f);
            }
        })
        .await
        .expect("connection not closed in time");
        frames
    }

    /// Reads Data frames on `conn_id` until `len` payload bytes or a FIN; returns the
    /// bytes and whether a FIN came. Any other frame fails the test.
    pub async fn data(&mut self, conn_id: u32, len: usize) -> (Vec<u8>, bool) {
        let mut got = Vec::with_capacity(len);
        loop {
            let Ok(Some(frame)) = tokio::time::timeout(WAIT, self.next()).await else {
                panic!(
                    "no Data on conn {conn_id} in time after {} of {len} bytes",
                    got.len()
                );
            };
            assert_eq!(frame.content_type(), ContentType::DATA, "{frame:?}");
            let data = Data::parse(&frame).unwrap();
            assert_eq!(data.conn_id, conn_id);
            got.extend_from_slice(data.payload);
            if data.is_fin() {
                return (got, true);
            }
            if got.len() >= len {
                return (got, false);
            }
        }
    }
}

impl EdgeWriter {
    /// The TLS stream's write half, for bytes no frame encoder makes (garbage, frames
    /// batched by hand).
    pub fn raw(&mut self) -> &mut WriteHalf<TlsStream<TcpStream>> {
        &mut self.w
    }

    /// Encodes one frame with the next channel sequence and writes it; returns the
    /// sequence.
    pub async fn send(
        &mut self,
        encode: impl FnOnce(i32, &mut BytesMut) -> Result<(), weft_wire::EncodeError>,
    ) -> i32 {
        self.sequence += 1;
        let seq = self.sequence;
        let mut out = BytesMut::new();
        encode(seq, &mut out).unwrap();
        self.w.write_all(&out).await.unwrap();
        // tokio-rustls accepts bytes into its buffer before the socket takes them.
        self.w.flush().await.unwrap();
        seq
    }

    /// Sends a Connect (a dial) on `conn_id` with the Dial session `token`; returns its
    /// sequence.
    pub async fn send_connect(&mut self, conn_id: u32, token: &str) -> i32 {
        self.send(|s, out| {
            Connect {
                conn_id,
                seq: 0,
                caller_id: None,
                public_key: None,
                terminator_identity: None,
                app_data: None,
                stickiness_token: None,
                session_token: token.as_bytes(),
            }
            .encode(s, out)
        })
        .await
    }

    /// Sends `bytes` on `conn_id` in Data frames of varying sizes (1 B to 48 KiB), edge
    /// sequence numbers from 1.
    pub async fn data(&mut self, conn_id: u32, bytes: &[u8]) {
        let mut offset = 0;
        let mut edge_seq = 1;
        let mut size = 1usize;
        let mut out = BytesMut::new();
        while offset < bytes.len() {
            size = (size * 7 + 1013) % (48 * 1024) + 1;
            let end = (offset + size).min(bytes.len());
            self.sequence += 1;
            Data {
                conn_id,
                seq: edge_seq,
                flags: 0,
                payload: &bytes[offset..end],
            }
            .encode(self.sequence, &mut out)
            .unwrap();
            edge_seq += 1;
            offset = end;
            if out.len() > 128 * 1024 {
                self.w.write_all(&out.split()).await.unwrap();
            }
        }
        self.w.write_all(&out).await.unwrap();
        // Without it the last records can stay in tokio-rustls' buffer when the socket
        // was full, and the far side waits for them forever.
        self.w.flush().await.unwrap();
    }
}

/// A client TLS configuration presenting `cert`/`key` (PEM) and trusting `ca` (PEM).
pub fn tls_with(ca: &str, cert: &str, key: &str) -> Arc<rustls::ClientConfig> {
    Arc::new(
        weft_tls::client::verified_from_pem(ca.as_bytes(), Some((cert.as_bytes(), key.as_bytes())))
            .expect("a client TLS configuration from test PEM"),
    )
}

/// A hello with API session `token` over `tls` to the router's edge `port`:
/// `Some(client)` when the router keeps the connection open past its wait for unknown
/// API sessions (3 s: accepted), `None` when the handshake fails or it closes the
/// connection (refused).
pub async fn hello_accepted(
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    token: &str,
) -> Option<EdgeClient> {
    let mut c = EdgeClient::connect(([127, 0, 0, 1], port).into(), tls)
        .await
        .ok()?;
    let (seq, frame) = c.hello(token).await?;
    assert_eq!(frame.content_type(), ContentType::RESULT);
    assert_eq!(
        HelloResult::parse(&frame).map(|r| r.reply_for).ok(),
        Some(seq)
    );
    match tokio::time::timeout(Duration::from_secs(6), c.next()).await {
        Err(_) => Some(c),
        Ok(_) => None,
    }
}
