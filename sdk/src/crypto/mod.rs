//! End-to-end encryption of service data, byte-compatible with the OpenZiti C SDK.
//!
//! This is the protocol of edge-wire-protocol.md §5, built on libsodium:
//!
//! * **Key exchange** — `crypto_kx` (X25519 + BLAKE2b-512). The **dialer is the kx
//!   client** and makes a new [`KeyPair`] for every Connect; the **hosting listener is the
//!   kx server** and uses one long-lived [`KeyPair`] (the one whose public key went out in
//!   its Bind) for every Dial it accepts. Each side turns its own key pair and the peer's
//!   32-byte public key (edge header 1003) into [`SessionKeys`] with
//!   [`SessionKeys::client`] or [`SessionKeys::server`].
//! * **Stream** — `crypto_secretstream_xchacha20poly1305`, one stream per direction. The
//!   sender's [`Sealer`] produces a 24-byte header that must travel as the sender's
//!   **first** Data message; the receiver's [`Opener`] is built from that header. Every
//!   application write is one sealed Data body (`plaintext.len() + 17` bytes, tag
//!   `TAG_MESSAGE`, no additional data); every non-empty inbound Data body is opened once.
//!   An empty Data body (FIN) is never encrypted.
//! * [`E2eStream`] ties both directions of one connection together as a small sans-IO state
//!   machine for the connection driver.
//!
//! Data message boundaries and order must be preserved exactly: each message's nonce
//! depends on all the messages before it, so a dropped, split, merged or reordered body
//! fails to open.
//!
//! Nothing here performs I/O; all randomness comes from libsodium's `randombytes`.
//! libsodium is initialised (`sodium_init`) once per process on first use.
#![warn(missing_docs)]

mod one_pass;
mod sodium;
#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Range;

use bytes::BytesMut;
use zeroize::Zeroize;

/// Length of a `crypto_kx` public key, as carried in edge header 1003
/// (`crypto_kx_PUBLICKEYBYTES`; edge-wire-protocol.md §5).
pub const PUBLIC_KEY_BYTES: usize = sodium::KX_PUBLIC_KEY_BYTES;
/// Length of a `crypto_kx` seed accepted by [`KeyPair::from_seed`] (`crypto_kx_SEEDBYTES`).
pub const SEED_BYTES: usize = sodium::KX_SEED_BYTES;
/// Length of the secretstream header each side sends as its first Data message
/// (`crypto_secretstream_xchacha20poly1305_HEADERBYTES`; edge-wire-protocol.md §5).
pub const HEADER_BYTES: usize = sodium::SS_HEADER_BYTES;
/// Bytes a sealed message adds to its plaintext: one encrypted tag byte and a 16-byte
/// Poly1305 MAC (`crypto_secretstream_xchacha20poly1305_ABYTES`; edge-wire-protocol.md §5).
pub const ABYTES: usize = sodium::SS_ABYTES;

/// Bytes of room a caller leaves in front of a message sealed or opened in place
/// ([`Sealer::seal_in_place`], [`Opener::open_in_place`]): with it, a message whose length
/// allows is sealed and opened in one pass of the AEAD, without a copy (ADR 0011).
pub const IN_PLACE_ROOM: usize = 63;

/// Why an end-to-end encryption operation failed. Every failure is final for the
/// connection it happened on (the C SDK reports `ZITI_CRYPTO_FAIL` and disconnects).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// libsodium could not be initialised (`sodium_init()` failed).
    #[error("libsodium could not be initialised")]
    Init,
    /// The peer's public key is not [`PUBLIC_KEY_BYTES`] long.
    #[error("peer public key is {len} bytes, expected {PUBLIC_KEY_BYTES}")]
    BadPeerKey {
        /// Length of the key that was received.
        len: usize,
    },
    /// The key exchange failed: the peer's public key is of low order (e.g. all zero), so
    /// the shared secret would be all zero.
    #[error("key exchange failed (low-order peer public key)")]
    KeyExchange,
    /// The peer's stream header (its first Data body) is not [`HEADER_BYTES`] long.
    #[error("stream header is {len} bytes, expected {HEADER_BYTES}")]
    BadHeader {
        /// Length of the body that arrived in place of the header.
        len: usize,
    },
    /// A sealed message is shorter than [`ABYTES`], so it cannot be a secretstream message.
    #[error("sealed message is {len} bytes, shorter than the {ABYTES}-byte minimum")]
    Truncated {
        /// Length of the body that arrived.
        len: usize,
    },
    /// A sealed message failed authentication: it was altered, reordered, dropped, or
    /// sealed under another key or header.
    #[error("sealed message failed authentication")]
    Decrypt,
    /// A plaintext is longer than one secretstream message may be.
    #[error("plaintext of {len} bytes is too long for one sealed message")]
    MessageTooLong {
        /// Length of the plaintext.
        len: usize,
    },
    /// The caller's output buffer is too small for the result.
    #[error("output buffer holds {got} bytes, {needed} needed")]
    BufferTooSmall {
        /// Bytes the result needs.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
    /// [`E2eStream::seal`] was called before the stream header was taken with
    /// [`E2eStream::take_header`] (the header must be the first Data message sent).
    #[error("stream header has not been sent yet")]
    HeaderNotSent,
    /// The inbound side of an [`E2eStream`] already failed; nothing more can be opened.
    #[error("inbound stream already failed")]
    Failed,
}

impl From<sodium::InitFailed> for CryptoError {
    fn from(_: sodium::InitFailed) -> Self {
        Self::Init
    }
}

impl From<sodium::KxFailed> for CryptoError {
    fn from(_: sodium::KxFailed) -> Self {
        Self::KeyExchange
    }
}

/// An X25519 key pair for `crypto_kx`.
///
/// The secret key never leaves this value: it is only used inside libsodium, is not printed
/// by `Debug`, and is zeroed when the key pair is dropped. A key pair is not `Clone`; share
/// a listener's key pair by reference (or in an `Arc`).
pub struct KeyPair {
    public: [u8; PUBLIC_KEY_BYTES],
    secret: [u8; sodium::KX_SECRET_KEY_BYTES],
}

impl KeyPair {
    /// A fresh random key pair (`crypto_kx_keypair`). The dialer makes one per Connect;
    /// a hosting listener makes one per Bind.
    ///
    /// # Errors
    /// [`CryptoError::Init`] if libsodium cannot be initialised.
    pub fn generate() -> Result<Self, CryptoError> {
        sodium::ensure_init()?;
        let mut this = Self {
            public: [0; PUBLIC_KEY_BYTES],
            secret: [0; sodium::KX_SECRET_KEY_BYTES],
        };
        sodium::kx_keypair(&mut this.public, &mut this.secret);
        Ok(this)
    }

    /// The key pair derived deterministically from `seed` (`crypto_kx_seed_keypair`:
    /// secret = BLAKE2b-256(seed), public = X25519(secret, basepoint)). For tests and
    /// reproducible fixtures; live connections use [`KeyPair::generate`].
    ///
    /// # Errors
    /// [`CryptoError::Init`] if libsodium cannot be initialised.
    pub fn from_seed(seed: &[u8; SEED_BYTES]) -> Result<Self, CryptoError> {
        sodium::ensure_init()?;
        let mut this = Self {
            public: [0; PUBLIC_KEY_BYTES],
            secret: [0; sodium::KX_SECRET_KEY_BYTES],
        };
        sodium::kx_seed_keypair(&mut this.public, &mut this.secret, seed);
        Ok(this)
    }

    /// The public key, sent to the peer in edge header 1003.
    pub fn public(&self) -> [u8; PUBLIC_KEY_BYTES] {
        self.public
    }
}

impl Drop for KeyPair {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &Hex(&self.public))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Reads a peer public key, checking its length.
fn peer_key(peer_pk: &[u8]) -> Result<&[u8; PUBLIC_KEY_BYTES], CryptoError> {
    peer_pk
        .try_into()
        .map_err(|_| CryptoError::BadPeerKey { len: peer_pk.len() })
}

/// The pair of 32-byte keys one side of a connection derives from the key exchange: `tx`
/// keys what it sends, `rx` what it receives. The client's `tx` is the server's `rx` and
/// vice versa. Zeroed on drop; `Debug` does not print them.
pub struct SessionKeys {
    rx: [u8; sodium::KX_SESSION_KEY_BYTES],
    tx: [u8; sodium::KX_SESSION_KEY_BYTES],
}

impl SessionKeys {
    /// The dialer's (kx client's) keys: `crypto_kx_client_session_keys(rx, tx,
    /// client.public, client.secret, server_pk)`, with `server_pk` taken from header 1003
    /// of the StateConnected reply.
    ///
    /// # Errors
    /// [`CryptoError::BadPeerKey`] if `server_pk` is not 32 bytes;
    /// [`CryptoError::KeyExchange`] if it is a low-order point (e.g. all zero).
    pub fn client(client: &KeyPair, server_pk: &[u8]) -> Result<Self, CryptoError> {
        let server_pk = peer_key(server_pk)?;
        sodium::ensure_init()?;
        let (rx, tx) = sodium::kx_client_session_keys(&client.public, &client.secret, server_pk)?;
        Ok(Self { rx, tx })
    }

    /// The hosting listener's (kx server's) keys for one Dial:
    /// `crypto_kx_server_session_keys(rx, tx, listener.public, listener.secret, client_pk)`,
    /// with `client_pk` taken from header 1003 of the Dial and `listener` the key pair whose
    /// public key was sent in the Bind.
    ///
    /// # Errors
    /// [`CryptoError::BadPeerKey`] if `client_pk` is not 32 bytes;
    /// [`CryptoError::KeyExchange`] if it is a low-order point (e.g. all zero).
    pub fn server(listener: &KeyPair, client_pk: &[u8]) -> Result<Self, CryptoError> {
        let client_pk = peer_key(client_pk)?;
        sodium::ensure_init()?;
        let (rx, tx) =
            sodium::kx_server_session_keys(&listener.public, &listener.secret, client_pk)?;
        Ok(Self { rx, tx })
    }
}

impl Drop for SessionKeys {
    fn drop(&mut self) {
        self.rx.zeroize();
        self.tx.zeroize();
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKeys { rx: <redacted>, tx: <redacted> }")
    }
}

/// A secretstream message tag (`crypto_secretstream_xchacha20poly1305_TAG_*`, libsodium
/// `crypto_secretstream_xchacha20poly1305.h`). OpenZiti only ever sends
/// [`Tag::MESSAGE`] and its receivers ignore the tag (edge-wire-protocol.md §5); it is
/// reported for information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag(pub u8);

impl Tag {
    /// `TAG_MESSAGE` (0x00): an ordinary message. The only tag this crate sends.
    pub const MESSAGE: Self = Self(sodium::SS_TAG_MESSAGE);
    /// `TAG_PUSH` (0x01): end of a logical chunk.
    pub const PUSH: Self = Self(0x01);
    /// `TAG_REKEY` (0x02): the sender re-keyed after this message.
    pub const REKEY: Self = Self(0x02);
    /// `TAG_FINAL` (0x03 = PUSH | REKEY): the last message of the stream.
    pub const FINAL: Self = Self(0x03);

    /// Whether this is [`Tag::FINAL`].
    pub fn is_final(self) -> bool {
        self == Self::FINAL
    }
}

/// The sending (push) half of one direction of a connection:
/// `crypto_secretstream_xchacha20poly1305` keyed with this side's `tx` session key.
pub struct Sealer {
    state: sodium::PushState,
    /// The one-pass AEAD under the stream's current key (`None` only if aws-lc refused
    /// the key: then every message goes through libsodium).
    one_pass: Option<one_pass::OnePassKey>,
}

impl Sealer {
    /// Bytes [`Sealer::seal`] adds to each plaintext ([`ABYTES`] = 17).
    pub const ABYTES: usize = ABYTES;

    /// Starts the outbound stream (`init_push` with `keys.tx`). Returns the sealer and the
    /// random 24-byte header, which must be sent as this side's **first** Data message,
    /// before any sealed message.
    pub fn new(keys: &SessionKeys) -> (Self, [u8; HEADER_BYTES]) {
        // `keys` exists, so `SessionKeys::{client,server}` already ran `ensure_init`.
        let (state, header) = sodium::PushState::init(&keys.tx);
        let one_pass = one_pass::OnePassKey::new(state.message_key().key);
        (Self { state, one_pass }, header)
    }

    /// The sealed length of a plaintext of `plaintext_len` bytes (`plaintext_len + 17`),
    /// or `None` if that overflows `usize`.
    pub fn sealed_len(plaintext_len: usize) -> Option<usize> {
        plaintext_len.checked_add(ABYTES)
    }

    /// Seals one application write as one message (tag [`Tag::MESSAGE`], no additional
    /// data) and appends the ciphertext (`plaintext.len() + 17` bytes) to `out`. Does not
    /// allocate when `out` already has the spare capacity.
    ///
    /// # Errors
    /// [`CryptoError::MessageTooLong`] if the plaintext exceeds libsodium's per-message
    /// limit (about 256 GiB); nothing is appended and the stream is unchanged.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), CryptoError> {
        let needed = Self::check_len(plaintext)?;
        let start = out.len();
        let end = start
            .checked_add(needed)
            .ok_or(CryptoError::MessageTooLong {
                len: plaintext.len(),
            })?;
        out.resize(end, 0);
        let written = self.seal_into(plaintext, &mut out[start..]);
        if written.is_err() {
            out.truncate(start);
        }
        written.map(|_| ())
    }

    /// Seals one application write as one message into the front of `out` and returns the
    /// number of bytes written (`plaintext.len() + 17`).
    ///
    /// # Errors
    /// [`CryptoError::BufferTooSmall`] if `out` is shorter than `plaintext.len() + 17`;
    /// [`CryptoError::MessageTooLong`] as for [`Sealer::seal`]. On error nothing is
    /// written and the stream is unchanged.
    pub fn seal_into(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, CryptoError> {
        let needed = Self::check_len(plaintext)?;
        let got = out.len();
        let Some(dst) = out.get_mut(..needed) else {
            return Err(CryptoError::BufferTooSmall { needed, got });
        };
        if let Some(rekeyed) = self.state.push(plaintext, dst, sodium::SS_TAG_MESSAGE) {
            self.rekeyed(rekeyed);
            Ok(needed)
        } else {
            // Unreachable: both preconditions of `push` were checked above.
            Err(CryptoError::MessageTooLong {
                len: plaintext.len(),
            })
        }
    }

    /// Seals one message in place, in one pass where its length allows
    /// ([`IN_PLACE_ROOM`]). `buf` is `[IN_PLACE_ROOM bytes of room][one byte of room][the
    /// plaintext][16 bytes of room]`; the sealed message (tag [`Tag::MESSAGE`], no
    /// additional data) is then `buf[IN_PLACE_ROOM..]`, `plaintext.len() + 17` bytes, and
    /// the room in front is overwritten. Returns the range of the sealed message.
    ///
    /// # Errors
    /// [`CryptoError::BufferTooSmall`] if `buf` is shorter than `IN_PLACE_ROOM + 17`;
    /// [`CryptoError::MessageTooLong`] as for [`Sealer::seal`]. On error nothing is sealed
    /// and the stream is unchanged.
    pub fn seal_in_place(&mut self, buf: &mut [u8]) -> Result<Range<usize>, CryptoError> {
        let least = IN_PLACE_ROOM + ABYTES;
        let got = buf.len();
        let Some(mlen) = got.checked_sub(least) else {
            return Err(CryptoError::BufferTooSmall { needed: least, got });
        };
        if mlen > sodium::secretstream_message_max() {
            return Err(CryptoError::MessageTooLong { len: mlen });
        }
        let tag = sodium::SS_TAG_MESSAGE;
        let body_end = IN_PLACE_ROOM + 1 + mlen;
        let sealed = match &self.one_pass {
            Some(key) if one_pass::fits(mlen) => {
                key.seal(&self.state.message_key(), tag, &mut buf[..body_end])
            }
            _ => None,
        };
        let rekeyed = match sealed {
            Some(mac) => {
                buf[body_end..].copy_from_slice(&mac);
                self.state.advance(&mac, tag)
            }
            // libsodium in place: the plaintext is still where it was (the one-pass seal
            // only fails before it writes, and only wrote the room in front).
            None => self
                .state
                .push_in_place(&mut buf[IN_PLACE_ROOM..], tag)
                .ok_or(CryptoError::MessageTooLong { len: mlen })?,
        };
        self.rekeyed(rekeyed);
        Ok(IN_PLACE_ROOM..got)
    }

    /// After a message: a new key for the one-pass AEAD if the stream re-keyed.
    fn rekeyed(&mut self, rekeyed: bool) {
        if rekeyed {
            self.one_pass = one_pass::OnePassKey::new(self.state.message_key().key);
        }
    }

    /// The longest part of `len` bytes that [`Sealer::seal_in_place`] seals in one pass
    /// (a multiple of 8, at most 1 GiB; ADR 0011); 0 below 8 bytes. A writer that sends
    /// that part now and the rest with a later message gets the one pass for most of
    /// its bytes.
    pub(crate) fn one_pass_len(len: usize) -> usize {
        let len = len.min(one_pass::MAX_LEN);
        len - len % 8
    }

    /// Checks the plaintext fits in one message; returns its sealed length.
    fn check_len(plaintext: &[u8]) -> Result<usize, CryptoError> {
        let len = plaintext.len();
        if len > sodium::secretstream_message_max() {
            return Err(CryptoError::MessageTooLong { len });
        }
        Self::sealed_len(len).ok_or(CryptoError::MessageTooLong { len })
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer { .. }")
    }
}

/// The receiving (pull) half of one direction of a connection:
/// `crypto_secretstream_xchacha20poly1305` keyed with this side's `rx` session key and the
/// peer's stream header.
pub struct Opener {
    state: sodium::PullState,
    /// The one-pass AEAD under the stream's current key (`None` only if aws-lc refused
    /// the key: then every message goes through libsodium).
    one_pass: Option<one_pass::OnePassKey>,
}

impl Opener {
    /// Starts the inbound stream (`init_pull` with `keys.rx`) from the peer's header, which
    /// is the body of the peer's first Data message.
    ///
    /// # Errors
    /// [`CryptoError::BadHeader`] if `header` is not exactly [`HEADER_BYTES`] long
    /// (including an empty FIN arriving first). A header of the right length that was not
    /// made with the matching key is only detected when the first message fails to open.
    pub fn new(keys: &SessionKeys, header: &[u8]) -> Result<Self, CryptoError> {
        let header: &[u8; HEADER_BYTES] = header
            .try_into()
            .map_err(|_| CryptoError::BadHeader { len: header.len() })?;
        // `keys` exists, so `SessionKeys::{client,server}` already ran `ensure_init`.
        let state = sodium::PullState::init(&keys.rx, header);
        let one_pass = one_pass::OnePassKey::new(state.message_key().key);
        Ok(Self { state, one_pass })
    }

    /// Whether a sealed message of `sealed_len` bytes opens in one pass (its plaintext
    /// length is a multiple of 8; ADR 0011).
    pub fn opens_in_one_pass(sealed_len: usize) -> bool {
        Self::opened_len(sealed_len).is_some_and(one_pass::fits)
    }

    /// The plaintext length of a sealed message of `sealed_len` bytes, or `None` if it is
    /// shorter than [`ABYTES`].
    pub fn opened_len(sealed_len: usize) -> Option<usize> {
        sealed_len.checked_sub(ABYTES)
    }

    /// Opens one sealed Data body and appends its plaintext (`ciphertext.len() - 17`
    /// bytes) to `out`; returns the message's tag, which OpenZiti peers ignore.
    ///
    /// # Errors
    /// [`CryptoError::Truncated`] if `ciphertext` is shorter than 17 bytes;
    /// [`CryptoError::Decrypt`] if it fails authentication. On error `out` is left as it
    /// was and the stream state is unchanged (but the connection should be dropped).
    pub fn open(&mut self, ciphertext: &[u8], out: &mut BytesMut) -> Result<Tag, CryptoError> {
        let len = Self::opened_len(ciphertext.len()).ok_or(CryptoError::Truncated {
            len: ciphertext.len(),
        })?;
        let start = out.len();
        let end = start.checked_add(len).ok_or(CryptoError::BufferTooSmall {
            needed: len,
            got: usize::MAX - start,
        })?;
        out.resize(end, 0);
        let opened = self.open_into(ciphertext, &mut out[start..]);
        match opened {
            Ok((_, tag)) => Ok(tag),
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Opens one sealed Data body into the front of `out`; returns the plaintext length and
    /// the message's tag.
    ///
    /// # Errors
    /// [`CryptoError::Truncated`] if `ciphertext` is shorter than 17 bytes;
    /// [`CryptoError::BufferTooSmall`] if `out` is shorter than `ciphertext.len() - 17`;
    /// [`CryptoError::Decrypt`] if it fails authentication. On error the stream state is
    /// unchanged and the contents of `out` are unspecified.
    pub fn open_into(
        &mut self,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, Tag), CryptoError> {
        let needed = Self::opened_len(ciphertext.len()).ok_or(CryptoError::Truncated {
            len: ciphertext.len(),
        })?;
        let got = out.len();
        let Some(dst) = out.get_mut(..needed) else {
            return Err(CryptoError::BufferTooSmall { needed, got });
        };
        match self.state.pull(ciphertext, dst) {
            Ok((tag, rekeyed)) => {
                self.rekeyed(rekeyed);
                Ok((needed, Tag(tag)))
            }
            Err(sodium::PullFailed) => Err(CryptoError::Decrypt),
        }
    }

    /// Opens one sealed message in place, in one pass where its length allows
    /// ([`IN_PLACE_ROOM`]). `buf` is `[IN_PLACE_ROOM bytes of room][the sealed message]`;
    /// on success this returns where the plaintext now is (`buf[IN_PLACE_ROOM + 1..]`
    /// less the 16-byte MAC at the end) and the message's tag. The room in front is
    /// overwritten.
    ///
    /// # Errors
    /// [`CryptoError::Truncated`] if the message is shorter than 17 bytes;
    /// [`CryptoError::Decrypt`] if it fails authentication. On error the stream state is
    /// unchanged and the contents of `buf` are unspecified.
    pub fn open_in_place(&mut self, buf: &mut [u8]) -> Result<(Range<usize>, Tag), CryptoError> {
        let sealed = buf.len().saturating_sub(IN_PLACE_ROOM);
        let mlen = Self::opened_len(sealed).ok_or(CryptoError::Truncated { len: sealed })?;
        if mlen > sodium::secretstream_message_max() {
            return Err(CryptoError::Decrypt);
        }
        let body_end = IN_PLACE_ROOM + 1 + mlen;
        let (tag, rekeyed) = match &self.one_pass {
            Some(key) if one_pass::fits(mlen) => {
                let mut mac = [0u8; sodium::MAC_BYTES];
                mac.copy_from_slice(&buf[body_end..]);
                let tag = key
                    .open(&self.state.message_key(), &mac, &mut buf[..body_end])
                    .map_err(|one_pass::Forged| CryptoError::Decrypt)?;
                (tag, self.state.advance(&mac, tag))
            }
            _ => self
                .state
                .pull_in_place(&mut buf[IN_PLACE_ROOM..])
                .map_err(|sodium::PullFailed| CryptoError::Decrypt)?,
        };
        self.rekeyed(rekeyed);
        Ok((IN_PLACE_ROOM + 1..body_end, Tag(tag)))
    }

    /// After a message: a new key for the one-pass AEAD if the stream re-keyed.
    fn rekeyed(&mut self, rekeyed: bool) {
        if rekeyed {
            self.one_pass = one_pass::OnePassKey::new(self.state.message_key().key);
        }
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Opener { .. }")
    }
}

/// What [`E2eStream::open`] made of one inbound Data body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// The body was the peer's 24-byte stream header; the inbound stream is now open.
    /// Nothing is delivered to the application.
    Header,
    /// The body was a sealed message; its plaintext was appended to `out`.
    Data {
        /// Plaintext bytes appended.
        len: usize,
        /// The message's tag (OpenZiti peers ignore it).
        tag: Tag,
    },
    /// The body was empty (a FIN Data message), which is never encrypted: pass it on as
    /// end of stream. Nothing was appended.
    Fin,
}

/// Where the inbound direction of an [`E2eStream`] stands.
enum InboundState {
    /// Waiting for the peer's header; holds the `rx` key to start the stream with.
    AwaitingHeader(SessionKeys),
    /// The peer's header arrived; each non-empty body is one sealed message.
    Open(Opener),
    /// Something failed; every later body is refused.
    Failed,
}

/// Sans-IO end-to-end encryption for both directions of one connection
/// (edge-wire-protocol.md §5).
///
/// Outbound: take the stream header with [`E2eStream::take_header`] and send it as the
/// first Data message, then [`E2eStream::seal`] each application write into one Data body.
/// A FIN is an empty Data message sent as is, without calling `seal`.
///
/// Inbound: hand every Data body, in order, to [`E2eStream::open`]. The first must be the
/// peer's 24-byte header; after it, each non-empty body is opened and an empty body is
/// reported as [`Inbound::Fin`]. Any error is final: the connection must be closed
/// (the C SDK reports `ZITI_CRYPTO_FAIL`), and later calls to `open` return
/// [`CryptoError::Failed`].
pub struct E2eStream {
    sealer: Sealer,
    header: Option<[u8; HEADER_BYTES]>,
    inbound: InboundState,
}

impl E2eStream {
    /// The dialer's stream: session keys from [`SessionKeys::client`] with the host's
    /// public key (header 1003 of StateConnected).
    ///
    /// # Errors
    /// As for [`SessionKeys::client`].
    pub fn client(client: &KeyPair, server_pk: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self::new(SessionKeys::client(client, server_pk)?))
    }

    /// The host's stream for one Dial: session keys from [`SessionKeys::server`] with the
    /// listener's key pair and the dialer's public key (header 1003 of the Dial).
    ///
    /// # Errors
    /// As for [`SessionKeys::server`].
    pub fn server(listener: &KeyPair, client_pk: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self::new(SessionKeys::server(listener, client_pk)?))
    }

    /// A stream over already derived session keys. Starts the outbound stream at once; the
    /// `rx` key is kept until the peer's header arrives.
    pub fn new(keys: SessionKeys) -> Self {
        let (sealer, header) = Sealer::new(&keys);
        Self {
            sealer,
            header: Some(header),
            inbound: InboundState::AwaitingHeader(keys),
        }
    }

    /// The outbound stream header, the first time it is asked for; `None` afterwards. The
    /// caller must send it as this side's first Data message (dialer: right after
    /// StateConnected; host: right after its StateConnected reply to DialSuccess) before
    /// any sealed message.
    pub fn take_header(&mut self) -> Option<[u8; HEADER_BYTES]> {
        self.header.take()
    }

    /// Whether the outbound header has been taken (so [`E2eStream::seal`] may be used).
    pub fn header_sent(&self) -> bool {
        self.header.is_none()
    }

    /// Seals one application write into one Data body, appended to `out`
    /// (`plaintext.len() + 17` bytes).
    ///
    /// # Errors
    /// [`CryptoError::HeaderNotSent`] if [`E2eStream::take_header`] has not been called yet;
    /// otherwise as for [`Sealer::seal`].
    pub fn seal(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), CryptoError> {
        if !self.header_sent() {
            return Err(CryptoError::HeaderNotSent);
        }
        self.sealer.seal(plaintext, out)
    }

    /// Handles one inbound Data body (in arrival order), appending any plaintext to `out`.
    ///
    /// # Errors
    /// [`CryptoError::BadHeader`] if the first body is not exactly 24 bytes (an empty FIN
    /// included); [`CryptoError::Truncated`] or [`CryptoError::Decrypt`] if a later
    /// non-empty body does not open; [`CryptoError::Failed`] once any of these happened.
    /// On error nothing is appended to `out`.
    pub fn open(&mut self, body: &[u8], out: &mut BytesMut) -> Result<Inbound, CryptoError> {
        match &mut self.inbound {
            InboundState::Failed => Err(CryptoError::Failed),
            InboundState::AwaitingHeader(keys) => match Opener::new(keys, body) {
                Ok(opener) => {
                    // Dropping the `AwaitingHeader` keys zeroes them.
                    self.inbound = InboundState::Open(opener);
                    Ok(Inbound::Header)
                }
                Err(e) => {
                    self.inbound = InboundState::Failed;
                    Err(e)
                }
            },
            InboundState::Open(_) if body.is_empty() => Ok(Inbound::Fin),
            InboundState::Open(opener) => {
                let start = out.len();
                match opener.open(body, out) {
                    Ok(tag) => Ok(Inbound::Data {
                        len: out.len() - start,
                        tag,
                    }),
                    Err(e) => {
                        self.inbound = InboundState::Failed;
                        Err(e)
                    }
                }
            }
        }
    }

    /// Whether the peer's header has arrived and the inbound stream is open.
    pub fn inbound_open(&self) -> bool {
        matches!(self.inbound, InboundState::Open(_))
    }

    /// Whether the inbound side has failed (the connection must be closed).
    pub fn failed(&self) -> bool {
        matches!(self.inbound, InboundState::Failed)
    }
}

impl fmt::Debug for E2eStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inbound = match self.inbound {
            InboundState::AwaitingHeader(_) => "awaiting header",
            InboundState::Open(_) => "open",
            InboundState::Failed => "failed",
        };
        f.debug_struct("E2eStream")
            .field("header_sent", &self.header_sent())
            .field("inbound", &inbound)
            .finish()
    }
}

/// Lower-case hex for `Debug` of public values.
struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
