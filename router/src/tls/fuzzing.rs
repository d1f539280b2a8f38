//! The entry point of the `tls_records` fuzz target (`fuzz/`), and of the test that
//! replays its corpus: a handshaken session fed what a hostile client can send. It
//! panics only on a real bug, never on bad input.

use std::sync::OnceLock;

use bytes::BytesMut;
use rustls::{ContentType, SupportedCipherSuite};

use super::TlsBuf;
use super::record::Sealer;
use super::test_pki::{ClientOptions, Handshake, TestPki, client_suites};

/// Reads `data` as a suite choice then steps, each an op byte, a length byte and that
/// many bytes: raw bytes fed to the session (any split), a record sealed under the
/// client's key with a content type and contents of the input's choosing (so that
/// alerts, handshake messages and application data reach the parsers behind the
/// decryption), a frame sealed by the session, or its close_notify.
pub fn records(data: &[u8]) {
    static PKI: OnceLock<Option<TestPki>> = OnceLock::new();
    static SUITES: OnceLock<Vec<SupportedCipherSuite>> = OnceLock::new();
    let Some(pki) = PKI.get_or_init(|| TestPki::new().ok()) else {
        panic!("the test PKI could not be made");
    };
    let suites = SUITES.get_or_init(client_suites);
    let Some((&choice, mut steps)) = data.split_first() else {
        return;
    };
    let Some(&suite) = suites.get(usize::from(choice) % suites.len().max(1)) else {
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
    let (client, mut server) = match pki.handshaken_with(versions, &options) {
        Ok(pair) => pair,
        Err(e) => panic!("handshake: {e}"),
    };
    let mut sealer = match client
        .dangerous_extract_secrets()
        .and_then(|secrets| Sealer::new(tls13, u64::MAX, secrets.tx))
    {
        Ok(sealer) => sealer,
        Err(e) => panic!("client keys: {e}"),
    };
    let mut plaintext = BytesMut::new();
    let mut out = TlsBuf::default();
    let mut failed = false;
    while let [op, len, rest @ ..] = steps {
        let (body, later) = rest.split_at(usize::from(*len).min(rest.len()));
        steps = later;
        let result = match op % 4 {
            0 => server.feed(body, &mut plaintext).map(|_| ()),
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
                server.feed(&record, &mut plaintext).map(|_| ())
            }
            2 => server
                .encrypt(&body[..body.len().min(3)], body, &mut out)
                .and_then(|()| server.take_tls(&mut out)),
            _ => {
                server.send_close_notify();
                server.take_tls(&mut out)
            }
        };
        if matches!(result, Err(super::SessionError::Tls(_))) {
            failed = true;
        }
        // A failed session refuses everything after.
        assert!(!failed || server.feed(&[0x17, 3, 3, 0, 1, 0], &mut plaintext).is_err());
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
