//! The entry point of the `tls_records` fuzz target (`fuzz/`), and of the test that
//! replays its corpus: a handshaken session fed what a hostile peer can send, on the
//! server side (an edge or link listener's, before any authentication beyond the
//! handshake) or the client side (a link dialer's). It panics only on a real bug, never
//! on bad input.

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use rustls::{ContentType, SupportedCipherSuite};

use super::record::Sealer;
use super::test_pki::{ClientOptions, Handshake, TestPki, client_suites};
use super::{ClientSession, Session, SessionError, Side, TlsBuf};

/// Reads `data` as a choice byte (its top bit: the client side; the rest: the suite)
/// then steps, each an op byte, a length byte and that many bytes: raw bytes fed to the
/// session (any split), a record sealed under the peer's key with a content type and
/// contents of the input's choosing (so that alerts, handshake messages and application
/// data reach the parsers behind the decryption), a frame sealed by the session, or its
/// close_notify.
pub fn records(data: &[u8]) {
    static PKI: OnceLock<Option<TestPki>> = OnceLock::new();
    static SUITES: OnceLock<Vec<SupportedCipherSuite>> = OnceLock::new();
    let Some(pki) = PKI.get_or_init(|| TestPki::new().ok()) else {
        panic!("the test PKI could not be made");
    };
    let suites = SUITES.get_or_init(client_suites);
    let Some((&choice, steps)) = data.split_first() else {
        return;
    };
    let client_side = choice & 0x80 != 0;
    let Some(&suite) = suites.get(usize::from(choice & 0x7f) % suites.len().max(1)) else {
        panic!("the router offers no suite the test certificate can serve");
    };
    let tls13 = matches!(suite, SupportedCipherSuite::Tls13(_));
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls13 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12]
    };
    let options = ClientOptions {
        suite: Some(suite),
        extract_secrets: true,
        ..ClientOptions::default()
    };
    if client_side {
        let (mut client, server) = client_handshaken(pki, versions, &options);
        let sealer = server
            .dangerous_extract_secrets()
            .and_then(|secrets| Sealer::new(tls13, u64::MAX, secrets.tx));
        match sealer {
            Ok(mut sealer) => drive(&mut client, &mut sealer, steps),
            Err(e) => panic!("server keys: {e}"),
        }
    } else {
        let (client, mut server) = match pki.handshaken_with(versions, &options) {
            Ok(pair) => pair,
            Err(e) => panic!("handshake: {e}"),
        };
        let sealer = client
            .dangerous_extract_secrets()
            .and_then(|secrets| Sealer::new(tls13, u64::MAX, secrets.tx));
        match sealer {
            Ok(mut sealer) => drive(&mut server, &mut sealer, steps),
            Err(e) => panic!("client keys: {e}"),
        }
    }
}

/// Our client session and rustls' server, handshaken in memory.
fn client_handshaken(
    pki: &TestPki,
    versions: &[&'static rustls::SupportedProtocolVersion],
    options: &ClientOptions,
) -> (ClientSession, rustls::ServerConnection) {
    let config = match pki.client_config_with(versions, options) {
        Ok(config) => config,
        Err(e) => panic!("client configuration: {e}"),
    };
    let name = rustls::pki_types::ServerName::from(
        rustls::pki_types::DnsName::try_from("localhost")
            .unwrap_or_else(|e| panic!("server name: {e}")),
    );
    let (client, server) = (
        ClientSession::new(config, name),
        rustls::ServerConnection::new(Arc::clone(&pki.server)),
    );
    let (Ok(mut client), Ok(mut server)) = (client, server) else {
        panic!("the sessions could not be made");
    };
    let mut early = BytesMut::new();
    for _ in 0..8 {
        let mut to_server = TlsBuf::default();
        if let Err(e) = client.take_tls(&mut to_server) {
            panic!("client records: {e}");
        }
        let mut wire = &to_server[..];
        while !wire.is_empty() {
            if let Err(e) = server.read_tls(&mut wire).map(|_| ()).and_then(|()| {
                server
                    .process_new_packets()
                    .map(|_| ())
                    .map_err(std::io::Error::other)
            }) {
                panic!("server: {e}");
            }
        }
        let mut to_client = Vec::new();
        while server.wants_write() {
            if let Err(e) = server.write_tls(&mut to_client) {
                panic!("server records: {e}");
            }
        }
        if let Err(e) = client.feed(&to_client, &mut early) {
            panic!("client: {e}");
        }
    }
    if client.is_handshaking() || server.is_handshaking() {
        panic!("the handshake did not finish in 8 flights");
    }
    (client, server)
}

/// Runs the steps against `session`, records sealed with `sealer` (the peer's key).
fn drive<S: Side>(session: &mut Session<S>, sealer: &mut Sealer, mut steps: &[u8]) {
    let mut plaintext = BytesMut::new();
    let mut out = TlsBuf::default();
    let mut failed = false;
    while let [op, len, rest @ ..] = steps {
        let (body, later) = rest.split_at(usize::from(*len).min(rest.len()));
        steps = later;
        let result = match op % 4 {
            0 => session.feed(body, &mut plaintext).map(|_| ()),
            1 => {
                let Some((&typ, content)) = body.split_first() else {
                    continue;
                };
                let mut record = TlsBuf::default();
                if sealer
                    .seal_record(ContentType::from(typ), content.len(), &mut record, |room| {
                        room.copy_from_slice(content);
                    })
                    .is_err()
                {
                    continue;
                }
                session.feed(&record, &mut plaintext).map(|_| ())
            }
            2 => session
                .encrypt(&body[..body.len().min(3)], body, &mut out)
                .and_then(|()| session.take_tls(&mut out)),
            _ => {
                session.send_close_notify();
                session.take_tls(&mut out)
            }
        };
        if matches!(result, Err(SessionError::Tls(_))) {
            failed = true;
        }
        // A failed session refuses everything after.
        assert!(
            !failed
                || session
                    .feed(&[0x17, 3, 3, 0, 1, 0], &mut plaintext)
                    .is_err()
        );
        out.clear();
        plaintext.clear();
    }
}

/// Replays the committed corpus of the `tls_records` fuzz target (fuzz/corpus/) through
/// the same entry point, so every input the fuzzer found interesting stays a regression
/// test in ordinary test runs.
#[cfg(test)]
mod corpus {
    use std::path::PathBuf;

    #[test]
    fn tls_records_corpus() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/tls_records");
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            super::records(&data);
            inputs += 1;
        }
        assert!(
            inputs >= 10,
            "corpus at {} has only {inputs} inputs",
            dir.display()
        );
    }
}
