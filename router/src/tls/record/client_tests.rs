//! The client side of the session ([`ClientSession`]): against the router's own server
//! side and against rustls' buffered server, for every suite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rustls::crypto::aws_lc_rs::cipher_suite as cs;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConnection, SupportedProtocolVersion};

use super::*;
use crate::tls::test_pki::{ClientOptions, TestPki, client_suites};
use crate::tls::{ClientSession, ServerSession, SessionError};

static TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
static TLS12: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];

fn versions(suite: SupportedCipherSuite) -> &'static [&'static SupportedProtocolVersion] {
    match suite {
        SupportedCipherSuite::Tls13(_) => &TLS13,
        SupportedCipherSuite::Tls12(_) => &TLS12,
    }
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

fn client_config(pki: &TestPki, suite: SupportedCipherSuite) -> Arc<ClientConfig> {
    pki.client_config_with(
        versions(suite),
        &ClientOptions {
            suite: Some(suite),
            extract_secrets: true,
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i + seed) % 251) as u8).collect()
}

/// Our client and our server, records moved between them in 11-byte pieces.
struct Ours {
    client: ClientSession,
    server: ServerSession,
    at_client: BytesMut,
    at_server: BytesMut,
}

impl Ours {
    fn new(pki: &TestPki, config: Arc<ClientConfig>) -> Self {
        let mut ours = Self {
            client: ClientSession::new(config, localhost()).unwrap(),
            server: ServerSession::new(Arc::clone(&pki.server)).unwrap(),
            at_client: BytesMut::new(),
            at_server: BytesMut::new(),
        };
        ours.pump();
        assert!(!ours.client.is_handshaking() && !ours.server.is_handshaking());
        ours
    }

    /// Moves records both ways until neither side has any.
    fn pump(&mut self) {
        for _ in 0..64 {
            let mut to_server = TlsBuf::default();
            self.client.take_tls(&mut to_server).unwrap();
            for piece in to_server.chunks(11) {
                self.server.feed(piece, &mut self.at_server).unwrap();
            }
            let mut to_client = TlsBuf::default();
            self.server.take_tls(&mut to_client).unwrap();
            for piece in to_client.chunks(11) {
                self.client.feed(piece, &mut self.at_client).unwrap();
            }
            if to_server.is_empty() && to_client.is_empty() {
                return;
            }
        }
        panic!("records still moving after 64 rounds");
    }
}

#[test]
fn our_client_and_server_agree_on_every_suite() {
    let pki = TestPki::new().unwrap();
    for suite in client_suites() {
        let config = client_config(&pki, suite);
        let mut p = Ours::new(&pki, Arc::clone(&config));
        // Each side knows the other by the leaf whose key the handshake proved.
        assert_eq!(
            p.server.client_leaf_fingerprint(),
            Some(weft_tls::fingerprint(pki.client_leaf_der()))
        );
        let server_leaf =
            rustls::pki_types::pem::PemObject::from_pem_slice(pki.server_cert_pem().as_bytes())
                .map(|c: rustls::pki_types::CertificateDer<'_>| weft_tls::fingerprint(&c))
                .unwrap();
        assert_eq!(p.client.peer_leaf_fingerprint(), Some(server_leaf));
        assert!(!p.client.resumed() && !p.server.resumed());

        // Frames of every size both ways, with the client's key changing every 3
        // records in TLS 1.3 (the server follows).
        if matches!(suite, SupportedCipherSuite::Tls13(_)) {
            p.client.records_mut().unwrap().set_key_limit(3);
        }
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for (i, len) in [0, 1, 1000, MAX_RECORD_PLAINTEXT, 70_000]
            .into_iter()
            .enumerate()
        {
            let payload = pattern(len, i);
            let mut wire = TlsBuf::default();
            p.client.encrypt(b"up:", &payload, &mut wire).unwrap();
            for piece in wire.chunks(13) {
                p.server.feed(piece, &mut p.at_server).unwrap();
            }
            up.extend_from_slice(b"up:");
            up.extend_from_slice(&payload);
            let mut wire = TlsBuf::default();
            p.server.encrypt(b"down:", &payload, &mut wire).unwrap();
            p.client.feed(&wire, &mut p.at_client).unwrap();
            down.extend_from_slice(b"down:");
            down.extend_from_slice(&payload);
            p.pump();
        }
        assert_eq!(&p.at_server[..], &up[..], "{suite:?}");
        assert_eq!(&p.at_client[..], &down[..], "{suite:?}");
        if matches!(suite, SupportedCipherSuite::Tls13(_)) {
            let client_updates = p.client.records_mut().unwrap().updates;
            let server_updates = p.server.records_mut().unwrap().updates;
            assert!(client_updates.1 >= 3, "{suite:?}: {client_updates:?}");
            assert_eq!(server_updates.0, client_updates.1, "{suite:?}");
        }

        // The client's close_notify ends the server's input (a session ignores what
        // comes after its own close_notify, so the server's answer is not fed back).
        p.client.send_close_notify();
        let mut wire = TlsBuf::default();
        p.client.take_tls(&mut wire).unwrap();
        assert_eq!(
            p.server.feed(&wire, &mut p.at_server).unwrap(),
            Fed::PeerClosed
        );
        p.server.send_close_notify();
        assert!(p.server.wants_write());

        // The server's session ticket reached rustls' store (in TLS 1.3 through the
        // record layer, after the handshake): the next session resumes.
        let again = Ours::new(&pki, config);
        assert!(
            again.client.resumed() && again.server.resumed(),
            "{suite:?}"
        );
    }
}

/// Hands `wire` to rustls' server and appends the plaintext it reads to `sink`.
fn to_rustls(server: &mut ServerConnection, mut wire: &[u8], sink: &mut Vec<u8>) {
    while !wire.is_empty() {
        server.read_tls(&mut wire).unwrap();
        server.process_new_packets().unwrap();
        let _ = std::io::Read::read_to_end(&mut server.reader(), sink);
    }
}

#[test]
fn our_client_works_with_rustls_own_server() {
    let pki = TestPki::new().unwrap();
    for suite in client_suites() {
        let mut client = ClientSession::new(client_config(&pki, suite), localhost()).unwrap();
        let mut server = ServerConnection::new(Arc::clone(&pki.server)).unwrap();
        let mut at_client = BytesMut::new();
        let mut at_server = Vec::new();
        let mut exchange = |client: &mut ClientSession, server: &mut ServerConnection| {
            for _ in 0..16 {
                let mut to_server = TlsBuf::default();
                client.take_tls(&mut to_server).unwrap();
                to_rustls(server, &to_server, &mut at_server);
                let mut to_client = Vec::new();
                while server.wants_write() {
                    server.write_tls(&mut to_client).unwrap();
                }
                client.feed(&to_client, &mut at_client).unwrap();
                if to_server.is_empty() && to_client.is_empty() {
                    return;
                }
            }
            panic!("records still moving");
        };
        exchange(&mut client, &mut server);
        assert!(!client.is_handshaking() && !server.is_handshaking());

        let payload = pattern(50_000, 7);
        let mut wire = TlsBuf::default();
        client.encrypt(b"hi", &payload, &mut wire).unwrap();
        let mut up = Vec::new();
        to_rustls(&mut server, &wire, &mut up);
        std::io::Write::write_all(&mut server.writer(), &payload).unwrap();
        if matches!(suite, SupportedCipherSuite::Tls13(_)) {
            // The server changes its key and asks for ours to change.
            server.refresh_traffic_keys().unwrap();
            std::io::Write::write_all(&mut server.writer(), b"after").unwrap();
        }
        exchange(&mut client, &mut server);
        let mut expected_up = b"hi".to_vec();
        expected_up.extend_from_slice(&payload);
        assert_eq!(up, expected_up, "{suite:?}");
        let mut expected_down = payload.clone();
        if matches!(suite, SupportedCipherSuite::Tls13(_)) {
            expected_down.extend_from_slice(b"after");
            // Our answer to the request went out before our next record, which the
            // server opens under our next key.
            let mut wire = TlsBuf::default();
            client.encrypt(b"", b"later", &mut wire).unwrap();
            let mut got = Vec::new();
            to_rustls(&mut server, &wire, &mut got);
            assert_eq!(got, b"later");
            assert_eq!(client.records_mut().unwrap().updates, (1, 1));
        }
        assert_eq!(&at_client[..], &expected_down[..], "{suite:?}");
    }
}

/// Our client and server after the handshake over `suite`.
fn crafted(suite: SupportedCipherSuite) -> Ours {
    let pki = TestPki::new().unwrap();
    Ours::new(&pki, client_config(&pki, suite))
}

/// A record of `typ` holding `content`, sealed with the server's key.
fn server_record(p: &mut Ours, typ: ContentType, content: &[u8]) -> Vec<u8> {
    let mut out = TlsBuf::default();
    p.server
        .records_mut()
        .unwrap()
        .sealer
        .seal_record(typ, content.len(), &mut out, |room| {
            room.copy_from_slice(content)
        })
        .unwrap();
    out.to_vec()
}

#[test]
fn a_tls12_hello_request_is_refused_then_fatal() {
    let mut p = crafted(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    let hello_request = [u8::from(HandshakeType::HelloRequest), 0, 0, 0];
    let record = server_record(&mut p, ContentType::Handshake, &hello_request);
    assert_eq!(p.client.feed(&record, &mut p.at_client).unwrap(), Fed::Open);
    // The refusal is a warning the server reads and lets pass.
    p.pump();
    let mut wire = TlsBuf::default();
    p.server.encrypt(b"", b"on", &mut wire).unwrap();
    p.client.feed(&wire, &mut p.at_client).unwrap();
    assert_eq!(&p.at_client[..], b"on");
    // A second request ends the session; so does a server's ClientHello.
    let record = server_record(&mut p, ContentType::Handshake, &hello_request);
    match p.client.feed(&record, &mut p.at_client) {
        Err(SessionError::Tls(e)) => {
            assert_eq!(e, PeerMisbehaved::TooManyRenegotiationRequests.into());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut p = crafted(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    let client_hello = [u8::from(HandshakeType::ClientHello), 0, 0, 0];
    let record = server_record(&mut p, ContentType::Handshake, &client_hello);
    assert!(p.client.feed(&record, &mut p.at_client).is_err());
}

#[test]
fn a_tls13_client_takes_only_tickets_and_key_updates() {
    let ticket = u8::from(HandshakeType::NewSessionTicket);
    let cases: [(Vec<u8>, AlertDescription); 4] = [
        // A CertificateRequest: rustls never offers post-handshake authentication.
        (
            vec![u8::from(HandshakeType::CertificateRequest), 0, 0, 1, 0],
            AlertDescription::UnexpectedMessage,
        ),
        // A ticket that is not one.
        (vec![ticket, 0, 0, 2, 0, 0], AlertDescription::DecodeError),
        // A ticket longer than its record (split across records).
        (vec![ticket, 0, 1, 0, 0, 0], AlertDescription::DecodeError),
        // A partial header after a message.
        (vec![ticket, 0], AlertDescription::DecodeError),
    ];
    for (content, alert) in cases {
        let mut p = crafted(cs::TLS13_AES_128_GCM_SHA256);
        let record = server_record(&mut p, ContentType::Handshake, &content);
        assert!(
            matches!(
                p.client.feed(&record, &mut p.at_client),
                Err(SessionError::Tls(_))
            ),
            "{content:?}"
        );
        // The alert reaches the server.
        let mut wire = TlsBuf::default();
        p.client.take_tls(&mut wire).unwrap();
        match p.server.feed(&wire, &mut p.at_server) {
            Err(SessionError::Tls(Error::AlertReceived(got))) => {
                assert_eq!(got, alert, "{content:?}")
            }
            other => panic!("{content:?}: expected alert {alert:?}, got {other:?}"),
        }
    }
}

#[test]
fn two_hello_requests_in_one_record_end_the_session() {
    let mut p = crafted(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    let two = [
        u8::from(HandshakeType::HelloRequest),
        0,
        0,
        0,
        u8::from(HandshakeType::HelloRequest),
        0,
        0,
        0,
    ];
    let record = server_record(&mut p, ContentType::Handshake, &two);
    match p.client.feed(&record, &mut p.at_client) {
        Err(SessionError::Tls(e)) => {
            assert_eq!(e, PeerMisbehaved::TooManyRenegotiationRequests.into());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
