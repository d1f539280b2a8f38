//! Decode and encode throughput of the V2 codec (`cargo bench -p weft-benches --bench codec`).
//!
//! Decoding includes moving bytes into the decoder's buffer in 64 KiB pieces, as a socket
//! read would; frames are parsed as edge Data and dropped. Encoding writes heads only
//! (the vectored-write path, payload untouched) or whole frames (head + payload copy).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weft_benches::data_stream;
use weft_wire::edge::{Data, EdgeMessage};
use weft_wire::{Decoded, Decoder, Limits};

const READ: usize = 64 * 1024;

fn decode_all(decoder: &mut Decoder, stream: &[u8]) -> usize {
    let mut payload = 0;
    for piece in stream.chunks(READ) {
        decoder.extend_from_slice(piece);
        while let Decoded::Frame(frame) = decoder.decode().unwrap() {
            if let EdgeMessage::Data(d) = EdgeMessage::parse(&frame).unwrap() {
                payload += d.payload.len();
            }
        }
    }
    payload
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, count, len) in [("data_16KiB", 64, 16 * 1024), ("data_64B", 8192, 64)] {
        let stream = data_stream(count, len);
        group.throughput(Throughput::Bytes(stream.len() as u64));
        let mut decoder = Decoder::with_capacity(Limits::DEFAULT, 256 * 1024);
        group.bench_function(name, |b| {
            b.iter(|| black_box(decode_all(&mut decoder, black_box(&stream))))
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (name, count, len) in [("data_16KiB", 64, 16 * 1024), ("data_64B", 8192, 64)] {
        let payload = vec![0x5Au8; len];
        let wire_len = data_stream(count, len).len();
        group.throughput(Throughput::Bytes(wire_len as u64));
        let mut out = BytesMut::with_capacity(wire_len);
        group.bench_function(format!("{name}/head_only"), |b| {
            b.iter(|| {
                for i in 0..count as u32 {
                    out.clear();
                    let data = Data {
                        conn_id: 1,
                        seq: i,
                        flags: 0,
                        payload: &payload,
                    };
                    data.encode_head(i as i32, &mut out).unwrap();
                    black_box(&out);
                }
            })
        });
        group.bench_function(format!("{name}/whole_frame"), |b| {
            b.iter(|| {
                out.clear();
                for i in 0..count as u32 {
                    let data = Data {
                        conn_id: 1,
                        seq: i,
                        flags: 0,
                        payload: &payload,
                    };
                    data.encode(i as i32, &mut out).unwrap();
                }
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = decode, encode
}
criterion_main!(benches);
