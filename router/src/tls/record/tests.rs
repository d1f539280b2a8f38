#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::disallowed_methods)] // tests may start their simulated clock

use std::io::Write as _;

use rustls::crypto::aws_lc_rs::cipher_suite as cs;
use rustls::{ClientConnection, SupportedProtocolVersion};

use super::*;
use crate::tls::test_pki::{
    ClientOptions, Handshake, TestPki, client_records, client_suites, deliver,
};
use crate::tls::{ServerSession, SessionError};

/// The suites a client can agree with the router on (its certificate is ECDSA).
fn suites() -> Vec<SupportedCipherSuite> {
    let suites = client_suites();
    assert_eq!(suites.len(), 6, "3 TLS 1.3 and 3 TLS 1.2 ECDSA suites");
    suites
}

fn is_tls13(suite: SupportedCipherSuite) -> bool {
    matches!(suite, SupportedCipherSuite::Tls13(_))
}

fn handshaken(
    suite: SupportedCipherSuite,
    extract_secrets: bool,
) -> (ClientConnection, ServerSession) {
    let versions: &[&'static SupportedProtocolVersion] = if is_tls13(suite) {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12]
    };
    let options = ClientOptions {
        suite: Some(suite),
        extract_secrets,
        ..ClientOptions::default()
    };
    let (client, mut server) = TestPki::new()
        .unwrap()
        .handshaken_with(versions, &options)
        .unwrap();
    assert!(
        server.records_mut().is_some(),
        "the session runs the records"
    );
    (client, server)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The record lengths in `wire`.
fn record_lengths(mut wire: &[u8]) -> Vec<usize> {
    let mut lengths = Vec::new();
    while let Some(&[_, _, _, l0, l1]) = wire.get(..HEADER) {
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        lengths.push(len);
        wire = wire.get(HEADER + len..).unwrap_or_default();
    }
    lengths
}

#[test]
fn every_suite_carries_data_both_ways() {
    for suite in suites() {
        let (mut client, mut server) = handshaken(suite, false);
        // Up: 100 KiB in reads that split records anywhere.
        let up = pattern(100 * 1024 + 7);
        client.writer().write_all(&up).unwrap();
        let mut received = BytesMut::new();
        for piece in client_records(&mut client).unwrap().chunks(999) {
            assert_eq!(server.feed(piece, &mut received).unwrap(), Fed::Open);
        }
        assert_eq!(&received[..], &up[..], "{suite:?}");
        // Down: frames sealed in as few records as their length needs.
        for len in [
            0,
            1,
            MAX_RECORD_PLAINTEXT - 5,
            MAX_RECORD_PLAINTEXT,
            100 * 1024 + 3,
        ] {
            let payload = pattern(len);
            let mut out = TlsBuf::default();
            server.encrypt(b"head:", &payload, &mut out).unwrap();
            let got = deliver(&mut client, &out).unwrap();
            assert_eq!(&got[..5], b"head:");
            assert_eq!(&got[5..], &payload[..], "{suite:?}, {len} bytes");
            let records = record_lengths(&out);
            assert_eq!(records.len(), (5 + len).div_ceil(MAX_RECORD_PLAINTEXT));
            let overhead = if is_tls13(suite) {
                1 + TAG
            } else if matches!(
                suite.suite(),
                rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            ) {
                TAG
            } else {
                EXPLICIT_NONCE + TAG
            };
            assert_eq!(
                records.iter().sum::<usize>(),
                5 + len + records.len() * overhead
            );
        }
    }
}

#[test]
fn the_clients_key_updates_are_answered_and_followed() {
    for suite in suites().into_iter().filter(|s| is_tls13(*s)) {
        let (mut client, mut server) = handshaken(suite, false);
        for round in 0..40 {
            // A key update request and data under the new key, in one read.
            client.refresh_traffic_keys().unwrap();
            client
                .writer()
                .write_all(format!("up {round}").as_bytes())
                .unwrap();
            let mut received = BytesMut::new();
            server
                .feed(&client_records(&mut client).unwrap(), &mut received)
                .unwrap();
            assert_eq!(&received[..], format!("up {round}").as_bytes());
            // Our KeyUpdate goes first, then data under our new key.
            let mut out = TlsBuf::default();
            let reply = format!("down {round}");
            server.encrypt(b"", reply.as_bytes(), &mut out).unwrap();
            assert_eq!(record_lengths(&out).len(), 2);
            assert_eq!(deliver(&mut client, &out).unwrap(), reply.as_bytes());
        }
        assert_eq!(server.records_mut().unwrap().updates, (40, 40), "{suite:?}");
    }
}

/// A client of `suite` (TLS 1.3) and a session that has sent its flight; the client has
/// its Finished to send.
fn before_the_clients_finished(
    suite: SupportedCipherSuite,
    extract_secrets: bool,
) -> (ClientConnection, ServerSession) {
    let pki = TestPki::new().unwrap();
    let options = ClientOptions {
        suite: Some(suite),
        extract_secrets,
        ..ClientOptions::default()
    };
    let mut client = pki
        .client_with(&[&rustls::version::TLS13], &options)
        .unwrap();
    let mut server = ServerSession::new(std::sync::Arc::clone(&pki.server)).unwrap();
    let mut early = BytesMut::new();
    server
        .feed(&client_records(&mut client).unwrap(), &mut early)
        .unwrap();
    let mut flight = TlsBuf::default();
    server.take_tls(&mut flight).unwrap();
    deliver(&mut client, &flight).unwrap();
    assert!(!client.is_handshaking() && server.is_handshaking());
    (client, server)
}

#[test]
fn a_key_update_read_with_the_clients_finished_is_answered() {
    for suite in suites().into_iter().filter(|s| is_tls13(*s)) {
        let (mut client, mut server) = before_the_clients_finished(suite, false);
        // Finished, a KeyUpdate asking for ours, and data under the new key: one read.
        client.refresh_traffic_keys().unwrap();
        client.writer().write_all(b"ping").unwrap();
        let mut received = BytesMut::new();
        server
            .feed(&client_records(&mut client).unwrap(), &mut received)
            .unwrap();
        assert_eq!(&received[..], b"ping");
        // The KeyUpdate reached the record layer, which answers it before our data.
        assert_eq!(server.records_mut().unwrap().updates, (1, 0));
        let mut out = TlsBuf::default();
        server.encrypt(b"", b"pong", &mut out).unwrap();
        assert_eq!(deliver(&mut client, &out).unwrap(), b"pong", "{suite:?}");
        assert_eq!(server.records_mut().unwrap().updates, (1, 1));
    }
}

#[test]
fn a_handshake_message_split_after_the_clients_finished_is_refused() {
    let (mut client, mut server) = before_the_clients_finished(cs::TLS13_AES_128_GCM_SHA256, true);
    let finished = client_records(&mut client).unwrap();
    let secrets = client.dangerous_extract_secrets().unwrap();
    let mut sealer = Sealer::new(true, u64::MAX, secrets.tx).unwrap();
    // Finished, then the first 3 bytes of a KeyUpdate in a record of their own.
    let mut wire = finished;
    let mut fragment = TlsBuf::default();
    let start = [u8::from(HandshakeType::KeyUpdate), 0, 0];
    sealer
        .seal_record(ContentType::Handshake, start.len(), &mut fragment, |room| {
            room.copy_from_slice(&start);
        })
        .unwrap();
    wire.extend_from_slice(&fragment);
    let e = server.feed(&wire, &mut BytesMut::new());
    assert!(
        matches!(
            e,
            Err(SessionError::Tls(Error::InvalidMessage(
                InvalidMessage::MessageTooShort
            )))
        ),
        "{e:?}"
    );
}

#[test]
fn key_update_requests_meanwhile_get_one_update_of_ours() {
    let (mut client, mut server) = handshaken(cs::TLS13_CHACHA20_POLY1305_SHA256, false);
    let mut received = BytesMut::new();
    for _ in 0..5 {
        client.refresh_traffic_keys().unwrap();
        server
            .feed(&client_records(&mut client).unwrap(), &mut received)
            .unwrap();
    }
    // Nothing is sent until we send: then one KeyUpdate, and the data.
    assert!(!server.wants_write());
    assert_eq!(server.records_mut().unwrap().updates, (5, 0));
    let mut out = TlsBuf::default();
    server.encrypt(b"", b"data", &mut out).unwrap();
    assert_eq!(record_lengths(&out).len(), 2);
    assert_eq!(deliver(&mut client, &out).unwrap(), b"data");
    assert_eq!(server.records_mut().unwrap().updates, (5, 1));
    // A close_notify goes under the new key too.
    client.refresh_traffic_keys().unwrap();
    server
        .feed(&client_records(&mut client).unwrap(), &mut received)
        .unwrap();
    server.send_close_notify();
    let mut out = TlsBuf::default();
    server.take_tls(&mut out).unwrap();
    deliver(&mut client, &out).unwrap();
    assert!(client.process_new_packets().unwrap().peer_has_closed());
    assert_eq!(server.records_mut().unwrap().updates, (6, 2));
}

#[test]
fn records_match_rustls_own_encrypter_byte_for_byte() {
    use rustls::crypto::cipher::{MessageEncrypter, OutboundChunks, OutboundPlainMessage};
    for suite in suites() {
        let (client, mut server) = handshaken(suite, true);
        // The client's receiving key is the session's sending key.
        let (_, secrets) = client.dangerous_extract_secrets().unwrap().rx;
        let (key, iv, _) = key_and_iv(secrets).unwrap();
        let mut reference: Box<dyn MessageEncrypter> = match suite {
            SupportedCipherSuite::Tls13(s) => s.aead_alg.encrypter(key, iv),
            SupportedCipherSuite::Tls12(s) => {
                let fixed = s.aead_alg.key_block_shape().fixed_iv_len;
                let (implicit, explicit) = iv.as_ref().split_at(fixed);
                s.aead_alg.encrypter(key, implicit, explicit)
            }
        };
        let records = server.records_mut().unwrap();
        records.sealer.limit = SEQ_HARD_LIMIT;
        let first = records.sealer.seq;
        let content = pattern(1000);
        for seq in [
            first,
            first + 1,
            1 << 32,
            (1 << 32) + 0xff,
            1 << 63,
            SEQ_HARD_LIMIT - 1,
        ] {
            records.sealer.seq = seq;
            let mut out = TlsBuf::default();
            records
                .seal(&[&content[..10], &content[10..]], &mut out)
                .unwrap();
            let expected = reference
                .encrypt(
                    OutboundPlainMessage {
                        typ: ContentType::ApplicationData,
                        version: ProtocolVersion::TLSv1_2,
                        payload: OutboundChunks::Single(&content),
                    },
                    seq,
                )
                .unwrap()
                .encode();
            assert_eq!(&out[..], &expected[..], "{suite:?} at seq {seq}");
        }
    }
}

#[test]
fn key_updates_without_application_data_are_capped() {
    let (mut client, mut server) = handshaken(cs::TLS13_AES_128_GCM_SHA256, false);
    let mut sink = BytesMut::new();
    for _ in 0..KEY_UPDATES {
        client.refresh_traffic_keys().unwrap();
        let records = client_records(&mut client).unwrap();
        assert_eq!(server.feed(&records, &mut sink).unwrap(), Fed::Open);
    }
    client.refresh_traffic_keys().unwrap();
    let e = server.feed(&client_records(&mut client).unwrap(), &mut sink);
    assert!(
        matches!(
            e,
            Err(SessionError::Tls(Error::PeerMisbehaved(
                PeerMisbehaved::TooManyKeyUpdateRequests
            )))
        ),
        "{e:?}"
    );
    assert!(server.wants_write(), "an alert for the client");
}

#[test]
fn our_keys_change_before_they_reach_their_limit() {
    for suite in suites().into_iter().filter(|s| is_tls13(*s)) {
        let (mut client, mut server) = handshaken(suite, false);
        server.records_mut().unwrap().set_key_limit(3);
        // 13 records a frame, 39 in all: a key update after every 3.
        let payload = pattern(200 * 1024);
        for _ in 0..3 {
            let mut out = TlsBuf::default();
            server.encrypt(b"h", &payload, &mut out).unwrap();
            let got = deliver(&mut client, &out).unwrap();
            assert_eq!(&got[1..], &payload[..], "{suite:?}");
        }
        let updates = server.records_mut().unwrap().updates;
        assert_eq!(updates, (0, 12), "{suite:?}");
    }
}

#[test]
fn tls12_closes_when_its_keys_reach_their_limit() {
    let (mut client, mut server) = handshaken(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, false);
    server.records_mut().unwrap().set_key_limit(2);
    let mut out = TlsBuf::default();
    let e = server.encrypt(b"", &pattern(100 * 1024), &mut out);
    assert!(matches!(e, Err(SessionError::KeysExhausted)), "{e:?}");
    // Two records of data, then the close_notify the session queued.
    assert!(server.wants_write());
    server.take_tls(&mut out).unwrap();
    let got = deliver(&mut client, &out).unwrap();
    assert_eq!(got, pattern(2 * MAX_RECORD_PLAINTEXT));
    assert!(client.process_new_packets().unwrap().peer_has_closed());
    let e = server.encrypt(b"", b"more", &mut out);
    assert!(matches!(e, Err(SessionError::Closed)), "{e:?}");
}

/// A handshaken session and the client's keys, to make records by hand.
struct Crafted {
    server: ServerSession,
    /// The client's sending key.
    sealer: Sealer,
    /// The client's receiving key.
    opener: Opener,
}

impl Crafted {
    fn new(suite: SupportedCipherSuite) -> Self {
        let (client, server) = handshaken(suite, true);
        let secrets = client.dangerous_extract_secrets().unwrap();
        Self {
            server,
            sealer: Sealer::new(is_tls13(suite), u64::MAX, secrets.tx).unwrap(),
            opener: Opener::new(suite, secrets.rx).unwrap(),
        }
    }

    /// A record of `typ` holding `content`, under the client's key.
    fn record(&mut self, typ: ContentType, content: &[u8]) -> Vec<u8> {
        let mut out = TlsBuf::default();
        self.sealer
            .seal_record(typ, content.len(), &mut out, |room| {
                room.copy_from_slice(content);
            })
            .unwrap();
        out.to_vec()
    }

    /// Sends a record of `typ` holding `content`; returns the plaintext the server got.
    fn send(&mut self, typ: ContentType, content: &[u8]) -> Result<(Fed, Vec<u8>), SessionError> {
        let record = self.record(typ, content);
        self.feed(&record)
    }

    fn feed(&mut self, wire: &[u8]) -> Result<(Fed, Vec<u8>), SessionError> {
        let mut plaintext = BytesMut::new();
        let fed = self.server.feed(wire, &mut plaintext)?;
        Ok((fed, plaintext.to_vec()))
    }

    /// The records the server queued, opened with the client's key.
    fn replies(&mut self) -> Vec<(ContentType, Vec<u8>)> {
        let mut out = TlsBuf::default();
        self.server.take_tls(&mut out).unwrap();
        let mut wire = out.to_vec();
        let mut rest = &mut wire[..];
        let mut replies = Vec::new();
        while rest.len() >= HEADER {
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            let (record, after) = rest.split_at_mut(HEADER + len);
            let typ = ContentType::from(record[0]);
            let version = ProtocolVersion::from(u16::from_be_bytes([record[1], record[2]]));
            let message = InboundOpaqueMessage::new(typ, version, &mut record[HEADER..]);
            let plain = self
                .opener
                .decrypter
                .decrypt(message, self.opener.seq)
                .unwrap();
            self.opener.seq += 1;
            replies.push((plain.typ, plain.payload.to_vec()));
            rest = after;
        }
        replies
    }

    /// Sends a record that must end the session with `alert` (None: no alert).
    fn refused(
        &mut self,
        typ: ContentType,
        content: &[u8],
        alert: Option<AlertDescription>,
    ) -> Error {
        let record = self.record(typ, content);
        self.refused_wire(&record, alert)
    }

    fn refused_wire(&mut self, wire: &[u8], alert: Option<AlertDescription>) -> Error {
        let e = match self.feed(wire) {
            Err(SessionError::Tls(e)) => e,
            other => panic!("expected a TLS error, got {other:?}"),
        };
        let expected: Vec<_> = alert
            .map(|a| (ContentType::Alert, vec![FATAL, u8::from(a)]))
            .into_iter()
            .collect();
        assert_eq!(self.replies(), expected, "after {e}");
        // The session stays failed.
        let more = self.record(ContentType::ApplicationData, b"x");
        assert!(self.feed(&more).is_err());
        e
    }
}

#[test]
fn records_sealed_here_open_in_rustls_for_every_suite() {
    for suite in suites() {
        let mut c = Crafted::new(suite);
        for len in [0, 1, 1000, MAX_RECORD_PLAINTEXT] {
            let data = pattern(len);
            let (fed, got) = c.send(ContentType::ApplicationData, &data).unwrap();
            assert_eq!((fed, got), (Fed::Open, data), "{suite:?}");
        }
        // A close_notify, then whatever follows is ignored.
        let mut wire = c.record(ContentType::Alert, &[WARNING, 0]);
        wire.extend_from_slice(&c.record(ContentType::ApplicationData, b"late"));
        assert_eq!(c.feed(&wire).unwrap(), (Fed::PeerClosed, Vec::new()));
        assert_eq!(c.feed(&[0x99; 9]).unwrap(), (Fed::PeerClosed, Vec::new()));
        assert!(c.replies().is_empty());
    }
}

#[test]
fn a_malformed_or_misplaced_key_update_ends_the_session() {
    let key_update = u8::from(HandshakeType::KeyUpdate);
    let cases: [(&[u8], Error, AlertDescription); 5] = [
        (
            &[key_update, 0, 0, 1, 2],
            InvalidMessage::InvalidKeyUpdate.into(),
            AlertDescription::IllegalParameter,
        ),
        (
            &[key_update, 0, 0, 1, 0, key_update, 0, 0, 1, 0],
            PeerMisbehaved::KeyEpochWithPendingFragment.into(),
            AlertDescription::UnexpectedMessage,
        ),
        (
            &[key_update, 0, 0, 1],
            InvalidMessage::MessageTooShort.into(),
            AlertDescription::DecodeError,
        ),
        (
            &[key_update, 0, 0, 2, 0, 0],
            InvalidMessage::InvalidKeyUpdate.into(),
            AlertDescription::DecodeError,
        ),
        (
            &[u8::from(HandshakeType::NewSessionTicket), 0, 0, 0],
            Error::InappropriateHandshakeMessage {
                expect_types: Vec::new(),
                got_type: HandshakeType::NewSessionTicket,
            },
            AlertDescription::UnexpectedMessage,
        ),
    ];
    for (message, error, alert) in cases {
        let mut c = Crafted::new(cs::TLS13_AES_128_GCM_SHA256);
        let e = c.refused(ContentType::Handshake, message, Some(alert));
        assert_eq!(e, error, "{message:?}");
    }
}

#[test]
fn alerts_from_the_client() {
    for suite in [
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ] {
        // A fatal alert ends the session, with no alert back.
        let mut c = Crafted::new(suite);
        let e = c.refused(ContentType::Alert, &[FATAL, 40], None);
        assert_eq!(e, Error::AlertReceived(AlertDescription::HandshakeFailure));
        // Malformed alerts.
        let mut c = Crafted::new(suite);
        c.refused(
            ContentType::Alert,
            &[FATAL],
            Some(AlertDescription::DecodeError),
        );
        let mut c = Crafted::new(suite);
        c.refused(
            ContentType::Alert,
            &[3, 40],
            Some(AlertDescription::IllegalParameter),
        );
        // Four warnings pass (TLS 1.3 knows only user_canceled); the fifth ends it.
        let mut c = Crafted::new(suite);
        let warning = if is_tls13(suite) { 90 } else { 100 };
        for _ in 0..WARNING_ALERTS {
            assert_eq!(
                c.send(ContentType::Alert, &[WARNING, warning]).unwrap(),
                (Fed::Open, Vec::new())
            );
        }
        let e = c.refused(
            ContentType::Alert,
            &[WARNING, warning],
            Some(AlertDescription::UnexpectedMessage),
        );
        assert_eq!(e, PeerMisbehaved::TooManyWarningAlertsReceived.into());
    }
    // TLS 1.3 has no other warning.
    let mut c = Crafted::new(cs::TLS13_AES_256_GCM_SHA384);
    c.refused(
        ContentType::Alert,
        &[WARNING, 10],
        Some(AlertDescription::DecodeError),
    );
}

#[test]
fn empty_records_in_a_row_are_capped() {
    for suite in [
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ] {
        let mut c = Crafted::new(suite);
        // Content in between resets the count.
        for _ in 0..2 {
            for _ in 0..EMPTY_RECORDS {
                assert_eq!(
                    c.send(ContentType::ApplicationData, b"").unwrap(),
                    (Fed::Open, Vec::new())
                );
            }
            assert_eq!(
                c.send(ContentType::ApplicationData, b"x").unwrap(),
                (Fed::Open, b"x".to_vec())
            );
        }
        for _ in 0..EMPTY_RECORDS {
            c.send(ContentType::ApplicationData, b"").unwrap();
        }
        let e = c.refused(
            ContentType::ApplicationData,
            b"",
            Some(AlertDescription::UnexpectedMessage),
        );
        assert_eq!(e, PeerMisbehaved::TooManyEmptyFragments.into());
    }
}

#[test]
fn a_tls12_handshake_message_other_than_a_client_hello_ends_the_session() {
    let mut c = Crafted::new(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    let finished = [u8::from(HandshakeType::Finished), 0, 0, 0];
    let e = c.refused(
        ContentType::Handshake,
        &finished,
        Some(AlertDescription::UnexpectedMessage),
    );
    assert!(
        matches!(e, Error::InappropriateHandshakeMessage { .. }),
        "{e}"
    );
    let mut c = Crafted::new(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    c.refused(
        ContentType::Handshake,
        b"",
        Some(AlertDescription::DecodeError),
    );
}

#[test]
fn a_tls12_renegotiation_is_refused_then_fatal() {
    let mut c = Crafted::new(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    let client_hello = [u8::from(HandshakeType::ClientHello), 0, 0, 0];
    assert_eq!(
        c.send(ContentType::Handshake, &client_hello).unwrap(),
        (Fed::Open, Vec::new())
    );
    assert_eq!(
        c.replies(),
        [(
            ContentType::Alert,
            vec![WARNING, u8::from(AlertDescription::NoRenegotiation)]
        )]
    );
    // Data still flows; a second renegotiation ends the session.
    assert_eq!(
        c.send(ContentType::ApplicationData, b"on").unwrap(),
        (Fed::Open, b"on".to_vec())
    );
    let e = c.refused(
        ContentType::Handshake,
        &client_hello,
        Some(AlertDescription::UnexpectedMessage),
    );
    assert_eq!(e, PeerMisbehaved::TooManyRenegotiationRequests.into());
}

#[test]
fn bad_records_end_the_session_with_the_right_alert() {
    for suite in suites() {
        // A length beyond the version's limit is refused from the header alone.
        let max = if is_tls13(suite) {
            MAX_CIPHERTEXT_TLS13
        } else {
            MAX_CIPHERTEXT_TLS12
        };
        let [l0, l1] = u16::try_from(max + 1).unwrap().to_be_bytes();
        let mut c = Crafted::new(suite);
        let e = c.refused_wire(
            &[0x17, 3, 3, l0, l1],
            Some(AlertDescription::RecordOverflow),
        );
        assert_eq!(e, Error::PeerSentOversizedRecord);
        // Not TLS.
        let mut c = Crafted::new(suite);
        c.refused_wire(&[0x17, 4, 3, 0, 20], Some(AlertDescription::DecodeError));
        // change_cipher_spec is over, as is any content type the version hides.
        let mut c = Crafted::new(suite);
        c.refused_wire(
            &[20, 3, 3, 0, 1, 1],
            Some(AlertDescription::UnexpectedMessage),
        );
        let mut c = Crafted::new(suite);
        c.refused_wire(
            &[0x99, 3, 3, 0, 1, 1],
            Some(AlertDescription::UnexpectedMessage),
        );
        if is_tls13(suite) {
            let mut c = Crafted::new(suite);
            c.refused_wire(
                &[22, 3, 3, 0, 1, 1],
                Some(AlertDescription::UnexpectedMessage),
            );
        }
        // A flipped bit, a replayed record, a record too short for its tag.
        let mut c = Crafted::new(suite);
        let mut record = c.record(ContentType::ApplicationData, b"payload");
        record[HEADER + 3] ^= 1;
        assert_eq!(
            c.refused_wire(&record, Some(AlertDescription::BadRecordMac)),
            Error::DecryptError
        );
        let mut c = Crafted::new(suite);
        let record = c.record(ContentType::ApplicationData, b"payload");
        assert_eq!(c.feed(&record).unwrap(), (Fed::Open, b"payload".to_vec()));
        assert_eq!(
            c.refused_wire(&record, Some(AlertDescription::BadRecordMac)),
            Error::DecryptError
        );
        let mut c = Crafted::new(suite);
        c.refused_wire(
            &[0x17, 3, 3, 0, 3, 1, 2, 3],
            Some(AlertDescription::BadRecordMac),
        );
    }
}

mod properties {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// The client writes this many bytes.
        Up(u16),
        /// The router seals a frame with a head and this many payload bytes.
        Down(u16),
        /// The client changes its keys and asks for ours to change (TLS 1.3).
        KeyUpdate,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..40_000u16).prop_map(Op::Up),
            3 => (0..40_000u16).prop_map(Op::Down),
            1 => Just(Op::KeyUpdate),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever the suite, the reads' sizes, the key updates either side makes and
        /// the limit on our keys, every byte arrives once and in order both ways.
        #[test]
        fn every_byte_arrives_whatever_the_splits_and_key_updates(
            suite in 0..6usize,
            ops in vec(op(), 1..16),
            reads in vec(1..20_000usize, 1..16),
            key_limit in 1..8u64,
        ) {
            let suite = suites()[suite];
            let (mut client, mut server) = handshaken(suite, false);
            if is_tls13(suite) {
                server.records_mut().unwrap().set_key_limit(key_limit);
            }
            let (mut up, mut down) = (Vec::new(), Vec::new());
            let (mut received, mut read_back) = (BytesMut::new(), Vec::new());
            let mut reads = reads.iter().cycle();
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Up(n) => {
                        let data = vec![i as u8; usize::from(n)];
                        client.writer().write_all(&data).unwrap();
                        up.extend_from_slice(&data);
                    }
                    Op::Down(n) => {
                        let data = vec![!(i as u8); usize::from(n)];
                        let mut out = TlsBuf::default();
                        server.encrypt(&[i as u8; 3], &data, &mut out).unwrap();
                        down.extend_from_slice(&[i as u8; 3]);
                        down.extend_from_slice(&data);
                        read_back.extend(deliver(&mut client, &out).unwrap());
                    }
                    Op::KeyUpdate if is_tls13(suite) => client.refresh_traffic_keys().unwrap(),
                    Op::KeyUpdate => {}
                }
                let mut wire = &client_records(&mut client).unwrap()[..];
                while !wire.is_empty() {
                    let (now, later) = wire.split_at((*reads.next().unwrap()).min(wire.len()));
                    prop_assert_eq!(server.feed(now, &mut received).unwrap(), Fed::Open);
                    wire = later;
                }
            }
            // Our answers to the last key updates.
            let mut out = TlsBuf::default();
            server.take_tls(&mut out).unwrap();
            read_back.extend(deliver(&mut client, &out).unwrap());
            prop_assert_eq!(&received[..], &up[..]);
            prop_assert_eq!(read_back, down);
        }
    }
}
