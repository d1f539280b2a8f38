//! The SDK's end-to-end encryption (secretstream, as OpenZiti): seal and open of 64 KiB,
//! 16 KiB and 64 B messages (`cargo bench -p weft-benches --bench e2e`), out of place
//! (`seal`/`open`: libsodium's two passes) and in place (`seal_in_place`/`open_in_place`:
//! one pass of aws-lc's ChaCha20-Poly1305 at these lengths, ADR 0011). The in-place
//! open includes copying the message behind its room, as the SDK's reader does.
//!
//! Sealing advances one stream; opening replays a batch of messages sealed beforehand
//! through a fresh `Opener` per batch (secretstream is stateful, so each message can
//! only be opened once, in order).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use weft_sdk::crypto::{IN_PLACE_ROOM, KeyPair, Opener, Sealer, SessionKeys};

fn keys() -> (SessionKeys, SessionKeys) {
    let client = KeyPair::generate().unwrap();
    let server = KeyPair::generate().unwrap();
    (
        SessionKeys::client(&client, &server.public()).unwrap(),
        SessionKeys::server(&server, &client.public()).unwrap(),
    )
}

fn e2e(c: &mut Criterion) {
    let (ck, sk) = keys();
    let mut g = c.benchmark_group("e2e");
    for (name, len, batch) in [
        ("64KiB", 64 * 1024, 16),
        ("16KiB", 16 * 1024, 64),
        ("64B", 64, 4096),
    ] {
        let plain = vec![0x5au8; len];
        g.throughput(Throughput::Bytes(len as u64));
        let (mut sealer, _header) = Sealer::new(&ck);
        let mut out = BytesMut::with_capacity(len + Sealer::ABYTES);
        g.bench_function(format!("seal_{name}"), |b| {
            b.iter(|| {
                out.clear();
                sealer.seal(black_box(&plain), &mut out).unwrap();
                black_box(&out);
            })
        });

        // A batch sealed on a stream of its own, opened in order.
        let (mut sealer, header) = Sealer::new(&ck);
        let messages: Vec<BytesMut> = (0..batch)
            .map(|_| {
                let mut m = BytesMut::new();
                sealer.seal(&plain, &mut m).unwrap();
                m
            })
            .collect();
        g.throughput(Throughput::Bytes((len * batch) as u64));
        let mut opened = BytesMut::with_capacity(len);
        g.bench_function(format!("open_{name}"), |b| {
            b.iter_batched(
                || Opener::new(&sk, &header).unwrap(),
                |mut opener| {
                    for m in &messages {
                        opened.clear();
                        opener.open(m, &mut opened).unwrap();
                    }
                    black_box(&opened);
                },
                BatchSize::SmallInput,
            )
        });

        let (mut sealer, _header) = Sealer::new(&ck);
        let mut buf = vec![0u8; IN_PLACE_ROOM + 1 + len + 16];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("seal_in_place_{name}"), |b| {
            b.iter(|| {
                buf[IN_PLACE_ROOM + 1..IN_PLACE_ROOM + 1 + len].copy_from_slice(black_box(&plain));
                black_box(sealer.seal_in_place(&mut buf).unwrap());
            })
        });

        let mut room = Vec::with_capacity(IN_PLACE_ROOM + len + Sealer::ABYTES);
        g.throughput(Throughput::Bytes((len * batch) as u64));
        g.bench_function(format!("open_in_place_{name}"), |b| {
            b.iter_batched(
                || Opener::new(&sk, &header).unwrap(),
                |mut opener| {
                    for m in &messages {
                        room.clear();
                        room.resize(IN_PLACE_ROOM, 0);
                        room.extend_from_slice(m);
                        black_box(opener.open_in_place(&mut room).unwrap());
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = e2e
}
criterion_main!(benches);
