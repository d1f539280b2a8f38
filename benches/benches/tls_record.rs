//! TLS record seal/open through rustls against the raw AEAD underneath it, in the same
//! run (`cargo bench -p weft-benches --bench tls_record`).
//!
//! - `tls_record/rustls_seal_16KiB`: 16 KiB of plaintext written to a
//!   `rustls::ClientConnection` and the record collected with `write_tls` (TLS 1.3,
//!   AES-256-GCM, the aws-lc-rs provider: what the SDK and router use).
//! - `tls_record/rustls_open_16KiB`: 64 such records fed to a `ServerConnection`
//!   (`read_tls`, `process_new_packets`, plaintext read out); a fresh connection pair per
//!   batch, its handshake and sealing untimed.
//! - `tls_record/aead_seal_16KiB`, `aead_open_16KiB`: aws-lc-rs AES-256-GCM
//!   `seal_in_place_separate_tag` / `open_in_place` of 16 KiB with a counter nonce.
//!
//! The ratio rustls / AEAD is the cost of the record layer's copies and framing.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use weft_benches::tls_pair;

const RECORD: usize = 16 * 1024;
const BATCH: usize = 64;

fn rustls(c: &mut Criterion) {
    let mut g = c.benchmark_group("tls_record");
    g.throughput(Throughput::Bytes(RECORD as u64));
    let (mut client, _server) = tls_pair().unwrap();
    let plain = vec![0x5au8; RECORD];
    let mut wire = Vec::with_capacity(RECORD + 64);
    g.bench_function("rustls_seal_16KiB", |b| {
        b.iter(|| {
            client.writer().write_all(black_box(&plain)).unwrap();
            wire.clear();
            client.write_tls(&mut wire).unwrap();
            black_box(&wire);
        })
    });

    g.throughput(Throughput::Bytes((RECORD * BATCH) as u64));
    let mut out = vec![0u8; RECORD];
    g.bench_function("rustls_open_16KiB", |b| {
        b.iter_batched(
            || {
                let (mut c, s) = tls_pair().unwrap();
                let mut wire = Vec::with_capacity(BATCH * (RECORD + 64));
                for _ in 0..BATCH {
                    c.writer().write_all(&plain).unwrap();
                    c.write_tls(&mut wire).unwrap();
                }
                (s, wire)
            },
            |(mut s, wire)| {
                let mut rd = wire.as_slice();
                let mut got = 0;
                while !rd.is_empty() {
                    s.read_tls(&mut rd).unwrap();
                    s.process_new_packets().unwrap();
                    loop {
                        match s.reader().read(&mut out) {
                            Ok(0) => break,
                            Ok(n) => got += n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                assert_eq!(got, RECORD * BATCH);
                black_box(got)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aead(c: &mut Criterion) {
    let mut g = c.benchmark_group("tls_record");
    g.throughput(Throughput::Bytes(RECORD as u64));
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x11u8; 32]).unwrap());
    let mut buf = vec![0x5au8; RECORD];
    let mut counter = 0u64;
    g.bench_function("aead_seal_16KiB", |b| {
        b.iter(|| {
            counter += 1;
            let tag = key
                .seal_in_place_separate_tag(nonce(counter), Aad::empty(), black_box(&mut buf))
                .unwrap();
            let _ = black_box(tag);
        })
    });
    // One sealed message (ciphertext + tag) to open again and again, copied back into
    // the working buffer outside the timed part.
    let mut sealed = vec![0x5au8; RECORD];
    let tag = key
        .seal_in_place_separate_tag(nonce(0), Aad::empty(), &mut sealed)
        .unwrap();
    sealed.extend_from_slice(tag.as_ref());
    g.bench_function("aead_open_16KiB", |b| {
        b.iter_batched_ref(
            || sealed.clone(),
            |m| {
                let p = key.open_in_place(nonce(0), Aad::empty(), m).unwrap();
                black_box(p.len());
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = rustls, aead
}
criterion_main!(benches);
