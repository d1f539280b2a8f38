//! `weft-benches`: criterion micro-benchmarks (`cargo bench -p weft-benches`).
//!
//! - `codec`: decode and encode of 16 KiB Data frames and of streams of small frames.
//! - `tls_record`: TLS 1.3 record seal/open through a rustls client/server pair in
//!   memory (16 KiB records) beside raw aws-lc-rs AES-256-GCM seal/open of 16 KiB, in
//!   the same run.
//! - `e2e`: the SDK's end-to-end secretstream seal/open (16 KiB and 64 B messages).
//! - `policy`: policy evaluation at 10,000 identities and 1,000 services
//!   ([`PolicyIndex`](weft_controller::policy::PolicyIndex) queries and rebuild, the
//!   [`NaiveEvaluator`](weft_controller::policy::NaiveEvaluator) for comparison).
//!
//! Shared inputs for the benches are built here so that tests can check them too.

use std::sync::Arc;

use bytes::BytesMut;
use rustls::{ClientConnection, ServerConnection};
use weft_wire::edge::Data;

/// A byte stream of `count` Data frames with `payload_len`-byte payloads on conn 1.
pub fn data_stream(count: usize, payload_len: usize) -> BytesMut {
    let payload = vec![0xA5u8; payload_len];
    let mut out = BytesMut::with_capacity(count * (payload_len + 64));
    for i in 0..count {
        let seq = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let data = Data {
            conn_id: 1,
            seq,
            flags: 0,
            payload: &payload,
        };
        // Encoding into a growable buffer of small frames cannot fail.
        if data
            .encode(i32::try_from(i).unwrap_or(i32::MAX), &mut out)
            .is_err()
        {
            break;
        }
    }
    out
}

/// Errors building the benches' inputs.
#[derive(Debug)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> SetupError + '_ {
    move |e| SetupError(format!("{what}: {e}"))
}

/// A rustls client and server (rustls' own buffered connections, TLS 1.3, the router's
/// edge configuration and the test PKI) with the handshake completed in memory.
pub fn tls_pair() -> Result<(ClientConnection, ServerConnection), SetupError> {
    // The router's edge configuration and a client of the test PKI: the same suites,
    // certificates and handshake as the router's own session is measured with.
    let pki = weft_router::tls::test_pki::TestPki::new().map_err(setup("test PKI"))?;
    let mut c = pki
        .client(&[&rustls::version::TLS13])
        .map_err(setup("client"))?;
    let mut s = ServerConnection::new(Arc::clone(&pki.server)).map_err(setup("server"))?;
    let mut buf = Vec::new();
    for _ in 0..10 {
        if !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
        buf.clear();
        c.write_tls(&mut buf).map_err(setup("client write"))?;
        s.read_tls(&mut buf.as_slice())
            .map_err(setup("server read"))?;
        s.process_new_packets().map_err(setup("server process"))?;
        buf.clear();
        s.write_tls(&mut buf).map_err(setup("server write"))?;
        c.read_tls(&mut buf.as_slice())
            .map_err(setup("client read"))?;
        c.process_new_packets().map_err(setup("client process"))?;
    }
    if c.is_handshaking() || s.is_handshaking() {
        return Err(SetupError("the in-memory handshake did not finish".into()));
    }
    // Drain the server's session tickets so the client's next read is data only.
    buf.clear();
    s.write_tls(&mut buf).map_err(setup("server write"))?;
    c.read_tls(&mut buf.as_slice())
        .map_err(setup("client read"))?;
    c.process_new_packets().map_err(setup("client process"))?;
    Ok((c, s))
}

pub use weft_controller::policy::synthetic::{Rng, model as policy_model};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weft_controller::policy::{NaiveEvaluator, PolicyEvaluator, PolicyIndex, PolicyType};
    use weft_wire::{Decoded, Decoder, Limits};

    #[test]
    fn tls_pair_moves_a_record_each_way() {
        use std::io::{Read, Write};
        let (mut c, mut s) = tls_pair().unwrap();
        c.writer().write_all(&[7u8; 16 * 1024]).unwrap();
        let mut wire = Vec::new();
        c.write_tls(&mut wire).unwrap();
        let mut rd = wire.as_slice();
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets().unwrap();
        }
        let mut got = vec![0u8; 16 * 1024];
        s.reader().read_exact(&mut got).unwrap();
        assert!(got.iter().all(|b| *b == 7));
    }

    #[test]
    fn policy_model_is_valid_and_the_evaluators_agree() {
        let model = policy_model(500, 100, 1);
        assert!(model.validate().is_empty());
        let index = PolicyIndex::new(&model);
        let naive = NaiveEvaluator::new(&model);
        for m in model.identities.iter().step_by(50) {
            assert_eq!(
                index.services_for(&m.id, PolicyType::Dial),
                naive.services_for(&m.id, PolicyType::Dial)
            );
        }
    }

    #[test]
    fn data_stream_decodes_to_count_frames() {
        let stream = data_stream(10, 100);
        let mut d = Decoder::new(Limits::DEFAULT);
        d.extend_from_slice(&stream);
        let mut n = 0;
        while let Ok(Decoded::Frame(f)) = d.decode() {
            assert_eq!(f.body().len(), 100);
            n += 1;
        }
        assert_eq!(n, 10);
    }
}
