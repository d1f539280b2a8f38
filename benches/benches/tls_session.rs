//! The router's TLS path (`weft_router::tls::ServerSession`: rustls for the handshake,
//! the session's own record layer after it) per relayed frame (`cargo bench -p
//! weft-benches --bench tls_session`):
//!
//! - `tls_session/encrypt_frame/N`: a frame of a 30-byte head and an N-byte payload
//!   sealed into a reused write buffer as the session does it (head and payload copied
//!   once into the buffer, in as few records as their length needs, sealed in place).
//! - `tls_session/open_16KiB`: 64 records of 16 KiB appended to the session's buffer
//!   64 KiB at a time (as a read does) and opened in place into a receive buffer
//!   emptied after each read.
//!
//! Compare `tls_record/aead_seal_16KiB` and `aead_open_16KiB` (the AEAD alone) and
//! `tls_record/rustls_*` (rustls' buffered API).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::Write as _;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weft_router::tls::test_pki::{Handshake, TestPki};
use weft_router::tls::{ServerSession, TlsBuf};

fn pair() -> (rustls::ClientConnection, ServerSession) {
    TestPki::new()
        .unwrap()
        .handshaken(&[&rustls::version::TLS13])
        .unwrap()
}

fn encrypt(c: &mut Criterion) {
    let mut g = c.benchmark_group("tls_session");
    let (_client, mut server) = pair();
    let head = [0x11u8; 30];
    let mut out = TlsBuf::new(Vec::with_capacity(256 * 1024));
    for len in [256usize, 1024, 2048, 4096, 8192, 16 * 1024] {
        let payload = vec![0x5au8; len];
        g.throughput(Throughput::Bytes((head.len() + len) as u64));
        g.bench_with_input(BenchmarkId::new("encrypt_frame", len), &payload, |b, p| {
            b.iter(|| {
                out.clear();
                server.encrypt(&head, black_box(p), &mut out).unwrap();
                black_box(out.len());
            })
        });
    }
    g.finish();
}

fn open(c: &mut Criterion) {
    const RECORD: usize = 16 * 1024;
    const BATCH: usize = 64;
    let mut g = c.benchmark_group("tls_session");
    g.throughput(Throughput::Bytes((RECORD * BATCH) as u64));
    let plain = vec![0x5au8; RECORD];
    let mut received = BytesMut::with_capacity(128 * 1024);
    g.bench_function("open_16KiB", |b| {
        b.iter_batched(
            || {
                let (mut c, s) = pair();
                let mut wire = Vec::with_capacity(BATCH * (RECORD + 64));
                for _ in 0..BATCH {
                    c.writer().write_all(&plain).unwrap();
                    c.write_tls(&mut wire).unwrap();
                }
                (s, wire)
            },
            |(mut s, wire)| {
                let mut got = 0;
                for read in wire.chunks(64 * 1024) {
                    let incoming = s.incoming_mut();
                    incoming.extend_from_slice(read);
                    s.process(&mut received).unwrap();
                    // The forwarder takes the frames out.
                    got += received.len();
                    received.clear();
                }
                assert_eq!(got, RECORD * BATCH);
                black_box(got)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = encrypt, open
}
criterion_main!(benches);
