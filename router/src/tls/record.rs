//! The TLS record layer after the handshake: records opened where they lie in the
//! session's incoming buffer and sealed where they go in the write buffer, with no
//! allocation per record (docs/adr/0004-router-runtime.md).
//!
//! rustls runs the handshake. Once it completes, the session takes the traffic secrets
//! and the key schedule from it ([`rustls::kernel`]) and carries on here:
//! - **open**: the suite's own `MessageDecrypter` from rustls' crypto provider (which
//!   also unpads TLS 1.3's inner plaintext), on the record in place;
//! - **seal**: aws-lc-rs' AEAD in place in the write buffer, into which the plaintext
//!   is copied once. Nonces and additional data as RFC 8446 §5.2–5.3 (TLS 1.3), RFC
//!   5288 §3 (AES-GCM in TLS 1.2; the explicit nonce is the IV's last 8 bytes XOR the
//!   sequence number, as rustls makes it) and RFC 7905 §2 (ChaCha20-Poly1305 in TLS
//!   1.2);
//! - **everything else rustls did after the handshake**: the peer's KeyUpdate (RFC 8446
//!   §4.6.3, one of ours in answer to any number of requests, before our next record),
//!   our own KeyUpdate before a key reaches its confidentiality limit (TLS 1.2 closes
//!   instead, as rustls does), alerts and close_notify, TLS 1.2
//!   renegotiation refused with a `no_renegotiation` warning, and rustls' caps: 32 key
//!   updates without application data in between, 4 warning alerts, 32 empty records in
//!   a row.
//!
//! Stricter than rustls in one point: a post-handshake handshake message must come
//! whole in one record (a KeyUpdate is 5 bytes; no client splits it).
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)

use aws_lc_rs::aead::{self, Aad, LessSafeKey, UnboundKey};
use bytes::BytesMut;
use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, Iv, MessageDecrypter, Nonce, make_tls12_aad, make_tls13_aad,
};
use rustls::kernel::KernelConnection;
use rustls::{
    AlertDescription, ConnectionTrafficSecrets, ContentType, Error, ExtractedSecrets,
    HandshakeType, InvalidMessage, PeerMisbehaved, ProtocolVersion, SupportedCipherSuite,
};

use super::session::{Fed, MAX_RECORD_PLAINTEXT, TlsBuf, append};
use super::side::Side;

/// A record header: content type, legacy version, length.
const HEADER: usize = 5;
/// The AEAD tag of every suite the router offers.
const TAG: usize = 16;
/// TLS 1.2 AES-GCM's explicit nonce (RFC 5288 §3).
const EXPLICIT_NONCE: usize = 8;
/// The largest ciphertext a TLS 1.3 record may carry (RFC 8446 §5.2).
const MAX_CIPHERTEXT_TLS13: usize = MAX_RECORD_PLAINTEXT + 256;
/// The largest ciphertext a TLS 1.2 record may carry (RFC 5246 §6.2.3).
const MAX_CIPHERTEXT_TLS12: usize = MAX_RECORD_PLAINTEXT + 2048;
/// Alert levels (RFC 5246 §7.2).
const WARNING: u8 = 1;
const FATAL: u8 = 2;
/// KeyUpdate's `request_update` values (RFC 8446 §4.6.3).
const UPDATE_NOT_REQUESTED: u8 = 0;
const UPDATE_REQUESTED: u8 = 1;
/// Key updates allowed without application data in between (rustls and BoringSSL).
const KEY_UPDATES: u8 = 32;
/// Warning alerts allowed on a connection (rustls and BoringSSL).
const WARNING_ALERTS: u8 = 4;
/// Empty records allowed in a row: fruitless traffic (rustls and BoringSSL).
const EMPTY_RECORDS: u8 = 32;
/// Post-handshake messages other than KeyUpdates (a client's session tickets) handed to
/// rustls per connection; later ones are ignored (each costs rustls a key derivation,
/// and it keeps 8 tickets per server anyway).
const POST_HANDSHAKE_MESSAGES: u8 = 16;
/// Records sealed with one key before it must change whatever the cipher (rustls'
/// soft limit), and the count it must never reach.
const SEQ_SOFT_LIMIT: u64 = 0xffff_ffff_ffff_0000;
const SEQ_HARD_LIMIT: u64 = 0xffff_ffff_ffff_fffe;

/// Why [`Records::seal`] stopped.
#[derive(Debug)]
pub(super) enum SealError {
    /// TLS 1.2 keys reached their confidentiality limit: the session must close.
    KeysExhausted,
    /// The session failed.
    Failed(Error),
}

impl From<Error> for SealError {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

/// An error that ends the session, and the fatal alert that tells the peer why.
struct Fatal {
    error: Error,
    alert: Option<AlertDescription>,
}

impl Fatal {
    fn new(error: impl Into<Error>, alert: AlertDescription) -> Self {
        Self {
            error: error.into(),
            alert: Some(alert),
        }
    }

    fn decode(error: InvalidMessage) -> Self {
        Self::new(error, AlertDescription::DecodeError)
    }

    fn unexpected(error: impl Into<Error>) -> Self {
        Self::new(error, AlertDescription::UnexpectedMessage)
    }

    fn unexpected_handshake(typ: HandshakeType) -> Self {
        Self::unexpected(Error::InappropriateHandshakeMessage {
            expect_types: Vec::new(),
            got_type: typ,
        })
    }

    /// An error our own side made (a key it cannot derive): told as internal_error.
    fn internal(error: Error) -> Self {
        Self::new(error, AlertDescription::InternalError)
    }
}

/// One connection's records after the handshake.
pub(super) struct Records<S: Side> {
    /// rustls' key schedule, for key updates (and a client's session tickets).
    kernel: KernelConnection<S::Data>,
    suite: SupportedCipherSuite,
    tls13: bool,
    opener: Opener,
    sealer: Sealer,
    /// Key updates the peer may still send before its next application data.
    key_updates: u8,
    /// Warning alerts the peer may still send.
    warning_alerts: u8,
    /// Empty records the peer may still send before one with content.
    empty_records: u8,
    /// A TLS 1.2 renegotiation was refused once; another one is fatal.
    refused_renegotiation: bool,
    /// Post-handshake messages rustls may still be handed.
    post_handshake_messages: u8,
    /// The peer asked for our key to change: done before the next record we seal
    /// (several requests meanwhile get one update, RFC 8446 §4.6.3).
    update_requested: bool,
    /// Key updates so far: the peer's, then ours.
    updates: (u64, u64),
}

impl<S: Side> std::fmt::Debug for Records<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("suite", &self.suite.suite())
            .field("rx_seq", &self.opener.seq)
            .field("tx_seq", &self.sealer.seq)
            .field("updates", &self.updates)
            .finish_non_exhaustive()
    }
}

impl<S: Side> Records<S> {
    /// The record layer on the secrets rustls extracted at the end of the handshake.
    pub(super) fn new(
        secrets: ExtractedSecrets,
        kernel: KernelConnection<S::Data>,
    ) -> Result<Self, Error> {
        let suite = kernel.negotiated_cipher_suite();
        let tls13 = kernel.protocol_version() == ProtocolVersion::TLSv1_3;
        let limit = match suite {
            SupportedCipherSuite::Tls13(suite) => suite.common.confidentiality_limit,
            SupportedCipherSuite::Tls12(suite) => suite.common.confidentiality_limit,
        }
        .min(SEQ_SOFT_LIMIT);
        Ok(Self {
            opener: Opener::new(suite, secrets.rx)?,
            sealer: Sealer::new(tls13, limit, secrets.tx)?,
            kernel,
            suite,
            tls13,
            key_updates: KEY_UPDATES,
            warning_alerts: WARNING_ALERTS,
            empty_records: EMPTY_RECORDS,
            refused_renegotiation: false,
            post_handshake_messages: POST_HANDSHAKE_MESSAGES,
            update_requested: false,
            updates: (0, 0),
        })
    }

    /// The negotiated protocol version.
    pub(super) fn protocol_version(&self) -> ProtocolVersion {
        self.kernel.protocol_version()
    }

    /// Records sealed with each key from now on before it changes (TLS 1.3) or the
    /// session ends (TLS 1.2): for tests that reach the limit.
    #[cfg(test)]
    fn set_key_limit(&mut self, records: u64) {
        self.sealer.limit = self.sealer.seq + records;
        self.sealer.limit_per_key = records;
    }

    /// Opens the complete records at the front of `incoming` and appends their
    /// application data to `plaintext`; returns how many bytes of `incoming` were
    /// records, and what the peer said. Records our side must send in answer (a key
    /// update, an alert) are sealed into `outgoing`. After the peer's close_notify the
    /// rest of `incoming` counts as consumed and is ignored.
    ///
    /// On an error, the fatal alert for it (if the peer did not send one) is sealed
    /// into `outgoing`.
    pub(super) fn open(
        &mut self,
        incoming: &mut [u8],
        plaintext: &mut BytesMut,
        outgoing: &mut TlsBuf,
    ) -> (usize, Result<Fed, Error>) {
        let total = incoming.len();
        let mut rest = incoming;
        loop {
            let consumed = total - rest.len();
            let Some(&[typ, major, minor, len0, len1]) = rest.get(..HEADER) else {
                return (consumed, Ok(Fed::Open));
            };
            let len = usize::from(u16::from_be_bytes([len0, len1]));
            if let Err(fatal) = self.check_header(typ, major, len) {
                return (consumed, Err(self.fail(fatal, outgoing)));
            }
            if rest.len() < HEADER + len {
                return (consumed, Ok(Fed::Open));
            }
            let (record, after) = rest.split_at_mut(HEADER + len);
            let version = ProtocolVersion::from(u16::from_be_bytes([major, minor]));
            let body = record.get_mut(HEADER..).unwrap_or_default();
            match self.open_record(ContentType::from(typ), version, body, plaintext, outgoing) {
                Ok(Fed::Open) => rest = after,
                Ok(Fed::PeerClosed) => return (total, Ok(Fed::PeerClosed)),
                Err(fatal) => {
                    let consumed = total - after.len();
                    return (consumed, Err(self.fail(fatal, outgoing)));
                }
            }
        }
    }

    /// Seals `parts`, one after the other, as application data at the end of `out`, in
    /// as few records as their total length needs (the head of a frame and its payload
    /// share records). Our key changes first where the peer asked for it or it reached
    /// its limit (TLS 1.3); TLS 1.2 keys cannot change, and the session must close at
    /// the limit instead ([`SealError::KeysExhausted`]), as rustls does.
    pub(super) fn seal(&mut self, parts: &[&[u8]], out: &mut TlsBuf) -> Result<(), SealError> {
        let mut left: usize = parts.iter().map(|p| p.len()).sum();
        let mut gather = Gather::new(parts);
        while left > 0 {
            if self.sealer.seq >= self.sealer.limit {
                if !self.tls13 {
                    return Err(SealError::KeysExhausted);
                }
                self.update_requested = true;
            }
            self.update_key_if_requested(out)?;
            let n = left.min(MAX_RECORD_PLAINTEXT);
            self.sealer
                .seal_record(ContentType::ApplicationData, n, out, |room| {
                    gather.fill(room)
                })?;
            left -= n;
        }
        Ok(())
    }

    /// Seals the close_notify alert at the end of `out`.
    pub(super) fn close_notify(&mut self, out: &mut TlsBuf) -> Result<(), Error> {
        self.seal_alert(WARNING, AlertDescription::CloseNotify, out)
    }

    /// Refuses a record header before its body arrives.
    fn check_header(&self, typ: u8, major: u8, len: usize) -> Result<(), Fatal> {
        if major != 3 {
            return Err(Fatal::decode(InvalidMessage::UnknownProtocolVersion));
        }
        let typ = ContentType::from(typ);
        // TLS 1.3 hides the real type inside the encryption (RFC 8446 §5.2); a
        // change_cipher_spec is over once the handshake is.
        let allowed = if self.tls13 {
            typ == ContentType::ApplicationData
        } else {
            matches!(
                typ,
                ContentType::ApplicationData | ContentType::Alert | ContentType::Handshake
            )
        };
        if !allowed {
            return Err(Fatal::unexpected(Error::InappropriateMessage {
                expect_types: Vec::new(),
                got_type: typ,
            }));
        }
        let max = if self.tls13 {
            MAX_CIPHERTEXT_TLS13
        } else {
            MAX_CIPHERTEXT_TLS12
        };
        if len > max {
            return Err(Fatal::new(
                Error::PeerSentOversizedRecord,
                AlertDescription::RecordOverflow,
            ));
        }
        Ok(())
    }

    /// Opens one record and acts on what it holds.
    fn open_record(
        &mut self,
        typ: ContentType,
        version: ProtocolVersion,
        body: &mut [u8],
        plaintext: &mut BytesMut,
        outgoing: &mut TlsBuf,
    ) -> Result<Fed, Fatal> {
        let seq = self.opener.seq;
        let message = InboundOpaqueMessage::new(typ, version, body);
        let plain = self
            .opener
            .decrypter
            .decrypt(message, seq)
            .map_err(|e| match e {
                Error::PeerSentOversizedRecord => Fatal::new(e, AlertDescription::RecordOverflow),
                Error::InvalidMessage(_) | Error::PeerMisbehaved(_) => Fatal::unexpected(e),
                e => Fatal::new(e, AlertDescription::BadRecordMac),
            })?;
        // A peer that sent 2^64 records with one key: never in practice, but the
        // counter must not wrap.
        self.opener.seq = seq.checked_add(1).ok_or_else(|| {
            Fatal::unexpected(Error::General("the peer's sequence number wrapped".into()))
        })?;
        if plain.payload.len() > MAX_RECORD_PLAINTEXT {
            return Err(Fatal::new(
                Error::PeerSentOversizedRecord,
                AlertDescription::RecordOverflow,
            ));
        }
        if !plain.payload.is_empty() {
            self.empty_records = EMPTY_RECORDS;
        } else if self.empty_records == 0 {
            return Err(Fatal::unexpected(PeerMisbehaved::TooManyEmptyFragments));
        } else {
            self.empty_records -= 1;
        }
        match plain.typ {
            ContentType::ApplicationData => {
                if !plain.payload.is_empty() {
                    self.key_updates = KEY_UPDATES;
                }
                append(plaintext, plain.payload);
                Ok(Fed::Open)
            }
            ContentType::Alert => self.alert(plain.payload),
            ContentType::Handshake if self.tls13 => self.post_handshake(plain.payload),
            ContentType::Handshake => self.renegotiation(plain.payload, outgoing),
            other => Err(Fatal::unexpected(Error::InappropriateMessage {
                expect_types: Vec::new(),
                got_type: other,
            })),
        }
    }

    /// An alert from the peer (RFC 8446 §6, RFC 5246 §7.2).
    fn alert(&mut self, payload: &[u8]) -> Result<Fed, Fatal> {
        let &[level, description] = payload else {
            return Err(Fatal::decode(InvalidMessage::TrailingData("alert")));
        };
        let description = AlertDescription::from(description);
        if !matches!(level, WARNING | FATAL) {
            return Err(Fatal::new(
                Error::AlertReceived(description),
                AlertDescription::IllegalParameter,
            ));
        }
        if description == AlertDescription::CloseNotify {
            return Ok(Fed::PeerClosed);
        }
        if level == FATAL {
            return Err(Fatal {
                error: Error::AlertReceived(description),
                alert: None,
            });
        }
        if self.warning_alerts == 0 {
            return Err(Fatal::unexpected(
                PeerMisbehaved::TooManyWarningAlertsReceived,
            ));
        }
        self.warning_alerts -= 1;
        // TLS 1.3 has no warnings but user_canceled (RFC 8446 §6.1).
        if self.tls13 && description != AlertDescription::UserCanceled {
            return Err(Fatal::decode(InvalidMessage::InvalidContentType));
        }
        tracing::debug!(?description, peer = S::PEER, "TLS warning alert");
        Ok(Fed::Open)
    }

    /// The TLS 1.3 handshake messages of one record after the handshake, each whole in
    /// it: a KeyUpdate (last in its record, RFC 8446 §4.6.3, §5.1) from either peer, and
    /// whatever else the side takes ([`Side::post_handshake`]: a client's
    /// NewSessionTickets).
    fn post_handshake(&mut self, mut payload: &[u8]) -> Result<Fed, Fatal> {
        if payload.is_empty() {
            return Err(Fatal::decode(InvalidMessage::MessageTooShort));
        }
        while let &[typ, l0, l1, l2, ref rest @ ..] = payload {
            let typ = HandshakeType::from(typ);
            let len = usize::try_from(u32::from_be_bytes([0, l0, l1, l2])).unwrap_or(usize::MAX);
            if typ == HandshakeType::KeyUpdate {
                return self.key_update(len, rest);
            }
            if !S::takes(typ) {
                return Err(Fatal::unexpected_handshake(typ));
            }
            let Some((body, after)) = rest.split_at_checked(len) else {
                // A message split across records: rustls would reassemble it; no
                // peer of ours splits its small post-handshake messages.
                return Err(Fatal::decode(InvalidMessage::MessageTooShort));
            };
            if self.post_handshake_messages > 0 {
                self.post_handshake_messages -= 1;
                S::post_handshake(&mut self.kernel, typ, body).map_err(|e| match e {
                    Error::InvalidMessage(m) => Fatal::decode(m),
                    other => Fatal::internal(other),
                })?;
            }
            payload = after;
        }
        if !payload.is_empty() {
            return Err(Fatal::decode(InvalidMessage::MessageTooShort));
        }
        Ok(Fed::Open)
    }

    /// A KeyUpdate whose body is `len` bytes announced and `body` present.
    fn key_update(&mut self, len: usize, body: &[u8]) -> Result<Fed, Fatal> {
        if len != 1 {
            return Err(Fatal::decode(InvalidMessage::InvalidKeyUpdate));
        }
        let request = match body {
            [request] => *request,
            [] => return Err(Fatal::decode(InvalidMessage::MessageTooShort)),
            _ => {
                return Err(Fatal::unexpected(
                    PeerMisbehaved::KeyEpochWithPendingFragment,
                ));
            }
        };
        if !matches!(request, UPDATE_NOT_REQUESTED | UPDATE_REQUESTED) {
            return Err(Fatal::new(
                InvalidMessage::InvalidKeyUpdate,
                AlertDescription::IllegalParameter,
            ));
        }
        if self.key_updates == 0 {
            return Err(Fatal::unexpected(PeerMisbehaved::TooManyKeyUpdateRequests));
        }
        self.key_updates -= 1;
        let secrets = self.kernel.update_rx_secret().map_err(Fatal::internal)?;
        self.opener = Opener::new(self.suite, secrets).map_err(Fatal::internal)?;
        self.updates.0 += 1;
        // Ours goes before any more of our records (RFC 8446 §4.6.3).
        self.update_requested |= request == UPDATE_REQUESTED;
        Ok(Fed::Open)
    }

    /// A TLS 1.2 handshake record after the handshake: the peer's request to
    /// renegotiate (a client's ClientHello, a server's HelloRequest), which rustls never
    /// does. The first is refused with a warning (RFC 5246 §7.2.2), another ends the
    /// session, and so does any other handshake message.
    fn renegotiation(&mut self, payload: &[u8], outgoing: &mut TlsBuf) -> Result<Fed, Fatal> {
        if payload.is_empty() {
            return Err(Fatal::decode(InvalidMessage::MessageTooShort));
        }
        // Each message of the record is a request (a ClientHello may run on past the
        // record: what follows in the next record is read as a message, and refused).
        let mut rest = payload;
        while let Some(&typ) = rest.first() {
            let typ = HandshakeType::from(typ);
            if typ != S::RENEGOTIATION {
                return Err(Fatal::unexpected_handshake(typ));
            }
            if self.refused_renegotiation {
                return Err(Fatal::unexpected(
                    PeerMisbehaved::TooManyRenegotiationRequests,
                ));
            }
            self.refused_renegotiation = true;
            self.seal_alert(WARNING, AlertDescription::NoRenegotiation, outgoing)
                .map_err(Fatal::internal)?;
            rest = match rest {
                &[_, l0, l1, l2, ref body @ ..] => {
                    let len =
                        usize::try_from(u32::from_be_bytes([0, l0, l1, l2])).unwrap_or(usize::MAX);
                    body.get(len..).unwrap_or_default()
                }
                _ => &[],
            };
        }
        Ok(Fed::Open)
    }

    /// Where the peer asked for it (or our key reached its limit), sends a KeyUpdate
    /// (not requesting the peer's) under the current key, then seals with the next one
    /// (TLS 1.3 only).
    fn update_key_if_requested(&mut self, out: &mut TlsBuf) -> Result<(), Error> {
        if !self.update_requested {
            return Ok(());
        }
        // The next key first: should rustls fail to make it, nothing was sent.
        let next = Sealer::new(
            true,
            self.sealer.limit_per_key,
            self.kernel.update_tx_secret()?,
        )?;
        let message = [
            u8::from(HandshakeType::KeyUpdate),
            0,
            0,
            1,
            UPDATE_NOT_REQUESTED,
        ];
        self.sealer
            .seal_record(ContentType::Handshake, message.len(), out, |room| {
                room.copy_from_slice(&message);
            })?;
        self.sealer = next;
        self.update_requested = false;
        self.updates.1 += 1;
        Ok(())
    }

    /// Seals an alert (under the next key if the peer asked for one). Alerts are sealed
    /// whatever the key's limit, as rustls does.
    fn seal_alert(
        &mut self,
        level: u8,
        description: AlertDescription,
        out: &mut TlsBuf,
    ) -> Result<(), Error> {
        self.update_key_if_requested(out)?;
        let alert = [level, u8::from(description)];
        self.sealer
            .seal_record(ContentType::Alert, alert.len(), out, |room| {
                room.copy_from_slice(&alert);
            })
    }

    /// Seals the alert for `fatal` (if any) and gives its error.
    fn fail(&mut self, fatal: Fatal, outgoing: &mut TlsBuf) -> Error {
        if let Some(alert) = fatal.alert {
            if let Err(e) = self.seal_alert(FATAL, alert, outgoing) {
                tracing::debug!(error = %e, "fatal alert not sealed");
            }
        }
        fatal.error
    }
}

/// The receiving direction's key.
struct Opener {
    decrypter: Box<dyn MessageDecrypter>,
    seq: u64,
}

impl Opener {
    fn new(
        suite: SupportedCipherSuite,
        (seq, secrets): (u64, ConnectionTrafficSecrets),
    ) -> Result<Self, Error> {
        let (key, iv, _) = key_and_iv(secrets)?;
        let decrypter = match suite {
            SupportedCipherSuite::Tls13(suite) => suite.aead_alg.decrypter(key, iv),
            SupportedCipherSuite::Tls12(suite) => {
                // TLS 1.2 opens with the fixed (implicit) part of the IV only: the
                // salt for AES-GCM, all of it for ChaCha20-Poly1305.
                let fixed = suite.aead_alg.key_block_shape().fixed_iv_len;
                let fixed = iv.as_ref().get(..fixed).ok_or_else(|| {
                    Error::General("the suite's IV is shorter than its fixed part".into())
                })?;
                suite.aead_alg.decrypter(key, fixed)
            }
        };
        Ok(Self { decrypter, seq })
    }
}

/// The sending direction's key.
pub(super) struct Sealer {
    key: LessSafeKey,
    iv: Iv,
    seq: u64,
    /// `seq` at which the key must change.
    limit: u64,
    /// The suite's limit for each key (`limit` starts at it).
    limit_per_key: u64,
    /// TLS 1.3: the real content type goes inside the encryption.
    tls13: bool,
    /// TLS 1.2 AES-GCM: the record starts with an explicit nonce.
    explicit_nonce: bool,
}

impl Sealer {
    /// A sealer on one direction's secrets, changing keys at `limit` records.
    pub(super) fn new(
        tls13: bool,
        limit: u64,
        (seq, secrets): (u64, ConnectionTrafficSecrets),
    ) -> Result<Self, Error> {
        let (key, iv, algorithm) = key_and_iv(secrets)?;
        let key = UnboundKey::new(algorithm, key.as_ref())
            .map_err(|_| Error::General("aws-lc-rs refused the traffic key".into()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            iv,
            seq,
            limit,
            limit_per_key: limit,
            tls13,
            explicit_nonce: !tls13 && algorithm != &aead::CHACHA20_POLY1305,
        })
    }

    /// Seals one record of `len` plaintext bytes of type `typ`, which `fill` writes into
    /// the room it is given, at the end of `out`.
    pub(super) fn seal_record(
        &mut self,
        typ: ContentType,
        len: usize,
        out: &mut TlsBuf,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), Error> {
        if self.seq >= SEQ_HARD_LIMIT {
            return Err(Error::General("TLS sequence numbers exhausted".into()));
        }
        let explicit = if self.explicit_nonce {
            EXPLICIT_NONCE
        } else {
            0
        };
        let inner_type = usize::from(self.tls13);
        let body = explicit + len + inner_type + TAG;
        let body_len = u16::try_from(body)
            .map_err(|_| Error::General("record longer than TLS allows".into()))?;
        let nonce = Nonce::new(&self.iv, self.seq).0;
        let outer = if self.tls13 {
            ContentType::ApplicationData
        } else {
            typ
        };
        let room = out.room(HEADER + body);
        let (header, rest) = room.split_at_mut(HEADER);
        let (explicit_part, rest) = rest.split_at_mut(explicit);
        let (sealed, tag) = rest.split_at_mut(len + inner_type);
        let [h0, h1, h2, h3, h4] = header else {
            // `room` is HEADER + body long.
            return Err(Error::General("record room too short".into()));
        };
        [*h0, *h1, *h2] = [
            u8::from(outer),
            ProtocolVersion::TLSv1_2.to_array()[0],
            ProtocolVersion::TLSv1_2.to_array()[1],
        ];
        [*h3, *h4] = body_len.to_be_bytes();
        if let Some(tail) = nonce.get(aead::NONCE_LEN - EXPLICIT_NONCE..) {
            if explicit_part.len() == EXPLICIT_NONCE {
                explicit_part.copy_from_slice(tail);
            }
        }
        let (content, inner) = sealed.split_at_mut(len);
        fill(content);
        if let [inner] = inner {
            *inner = u8::from(typ);
        }
        let nonce = aead::Nonce::assume_unique_for_key(nonce);
        let sealed_tag = if self.tls13 {
            let aad = make_tls13_aad(body);
            self.key
                .seal_in_place_separate_tag(nonce, Aad::from(aad), sealed)
        } else {
            let aad = make_tls12_aad(self.seq, typ, ProtocolVersion::TLSv1_2, len);
            self.key
                .seal_in_place_separate_tag(nonce, Aad::from(aad), sealed)
        }
        .map_err(|_| Error::EncryptError)?;
        tag.copy_from_slice(sealed_tag.as_ref());
        out.commit(HEADER + body);
        self.seq += 1;
        Ok(())
    }
}

/// The key, IV and AEAD of a direction's secrets.
fn key_and_iv(
    secrets: ConnectionTrafficSecrets,
) -> Result<(AeadKey, Iv, &'static aead::Algorithm), Error> {
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => Ok((key, iv, &aead::AES_128_GCM)),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => Ok((key, iv, &aead::AES_256_GCM)),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            Ok((key, iv, &aead::CHACHA20_POLY1305))
        }
        _ => Err(Error::General(
            "the negotiated cipher has no in-place record layer".into(),
        )),
    }
}

/// Reads slices one after the other into record-sized pieces.
struct Gather<'a> {
    parts: &'a [&'a [u8]],
    current: &'a [u8],
}

impl<'a> Gather<'a> {
    fn new(parts: &'a [&'a [u8]]) -> Self {
        Self {
            parts,
            current: &[],
        }
    }

    /// Fills `room` with the next bytes (the caller never asks for more than are left).
    fn fill(&mut self, mut room: &mut [u8]) {
        while !room.is_empty() {
            if self.current.is_empty() {
                let Some((first, rest)) = self.parts.split_first() else {
                    return;
                };
                self.current = first;
                self.parts = rest;
                continue;
            }
            let n = room.len().min(self.current.len());
            let (now, later) = self.current.split_at(n);
            let (into, after) = room.split_at_mut(n);
            into.copy_from_slice(now);
            self.current = later;
            room = after;
        }
    }
}

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod tests;
