//! The relay path allocates nothing per Data frame in steady state: a frame read from
//! the dialer is decoded, handed to the host's connection as the same `Bytes`, given a
//! head in a reused buffer, and written.
//!
//! Both I/O backends add TLS through `tls::ServerSession` (rustls for the handshake, its
//! own record layer after it): the second phase measures that whole path per relayed
//! frame (ciphertext appended to the session's incoming buffer as a socket read does,
//! decrypted in place into the forwarder's receive buffer, the forwarder, each transmit
//! sealed into a reused write buffer), and asserts it allocates nothing either.
//!
//! One test per binary: the counting allocator is process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::io::Write as _;
use std::time::Instant;

use bytes::BytesMut;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

use weft_router::forward::{ConnKey, ControlRequest, CrossMsg, ForwardConfig, Forwarder};
use weft_router::tls::test_pki::{Handshake, TestPki};
use weft_router::tls::{Fed, ServerSession, TlsBuf};
use weft_wire::control::pb;
use weft_wire::edge::{Bind, Connect, Data, Dial, DialSuccess, Hello};
use weft_wire::{Decoded, Decoder, Limits};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const DIALER: ConnKey = ConnKey(1);
const HOST: ConnKey = ConnKey(2);

fn sync() -> pb::StateSync {
    use weft_testkit::state;
    let api = |id: &str| state::api_session(id, id, id, "fp");
    let session =
        |id: &str, api: &str, kind: pb::SessionType| state::session(id, id, api, "svc", kind);
    state::sync(
        "",
        1,
        vec![api("D"), api("H")],
        vec![
            session("dial", "D", pb::SessionType::Dial),
            session("bind", "H", pb::SessionType::Bind),
        ],
    )
}

/// Writes every queued transmit of `key` (into a sink that keeps nothing) and returns
/// the decoded frames when `decode` is given.
fn flush(fwd: &mut Forwarder, key: ConnKey, sink: &mut BytesMut) -> usize {
    while fwd.poll_ready().is_some() {}
    let mut written = 0;
    while let Some(t) = fwd.poll_transmit(key) {
        written += t.head.len() + t.payload.len();
        sink.clear();
        sink.extend_from_slice(&t.head);
        fwd.handle_written(key, &t);
    }
    written
}

fn frames_of(fwd: &mut Forwarder, key: ConnKey) -> Vec<weft_wire::Frame> {
    let mut d = Decoder::new(Limits::DEFAULT);
    while fwd.poll_ready().is_some() {}
    let mut out = Vec::new();
    while let Some(t) = fwd.poll_transmit(key) {
        d.extend_from_slice(&t.head);
        d.extend_from_slice(&t.payload);
        fwd.handle_written(key, &t);
        while let Ok(Decoded::Frame(f)) = d.decode() {
            out.push(f);
        }
    }
    out
}

/// The host's first frames: its hello and a Bind of listener 7.
fn host_hello_and_bind(wire: &mut BytesMut) {
    Hello {
        session_token: b"H",
        client_info: b"",
    }
    .encode(0, wire)
    .unwrap();
    Bind {
        conn_id: 7,
        seq: 0,
        caller_id: None,
        public_key: None,
        terminator_identity: None,
        cost: None,
        precedence: None,
        session_token: b"bind",
    }
    .encode(1, wire)
    .unwrap();
}

/// The dialer's first frames: its hello and a Connect on conn id 0.
/// The host's answer to the Dial `frame`: accepted as child connection 100.
fn accept_as_child_100(frame: &weft_wire::Frame, wire: &mut BytesMut) {
    let dial = Dial::parse(frame).unwrap();
    DialSuccess {
        conn_id: dial.conn_id,
        seq: 0,
        reply_for: frame.sequence(),
        new_conn_id: 100,
    }
    .encode(2, wire)
    .unwrap();
}

fn dialer_hello_and_connect(wire: &mut BytesMut) {
    Hello {
        session_token: b"D",
        client_info: b"",
    }
    .encode(0, wire)
    .unwrap();
    Connect {
        conn_id: 0,
        seq: 0,
        caller_id: None,
        public_key: None,
        terminator_identity: None,
        app_data: None,
        stickiness_token: None,
        session_token: b"dial",
    }
    .encode(1, wire)
    .unwrap();
}

/// A forwarder with one circuit: the dialer's conn id 0 to the host's child 100.
fn circuit(now: Instant) -> Forwarder {
    let mut fwd = Forwarder::new(ForwardConfig::default());
    fwd.apply_sync(now, sync());
    let mut wire = BytesMut::new();

    // Host: hello, bind, confirmed terminator.
    fwd.add_conn(now, HOST, Some("fp".into()));
    host_hello_and_bind(&mut wire);
    fwd.handle_input(now, HOST, &wire.split(), 0);
    let Some(ControlRequest::CreateTerminator { .. }) = fwd.poll_control() else {
        panic!()
    };
    fwd.terminator_created(now, HOST, 7, "t".into());
    frames_of(&mut fwd, HOST);

    // Dialer: hello, connect; host accepts as child 100.
    fwd.add_conn(now, DIALER, Some("fp".into()));
    dialer_hello_and_connect(&mut wire);
    fwd.handle_input(now, DIALER, &wire.split(), 0);
    let frames = frames_of(&mut fwd, HOST);
    accept_as_child_100(&frames[0], &mut wire);
    fwd.handle_input(now, HOST, &wire.split(), 0);
    frames_of(&mut fwd, HOST);
    frames_of(&mut fwd, DIALER);

    fwd
}

/// One period of dialer traffic: 16 Data frames of 16 KiB on conn id 0.
fn period() -> BytesMut {
    let payload = vec![0x42u8; 16 * 1024];
    let mut period = BytesMut::new();
    for i in 0..16 {
        Data {
            conn_id: 0,
            seq: i + 1,
            flags: 0,
            payload: &payload,
        }
        .encode(i as i32 + 2, &mut period)
        .unwrap();
    }
    period
}

#[test]
fn steady_state_relay_allocates_nothing_per_frame() {
    let now = Instant::now();
    let mut fwd = circuit(now);
    // One period of dialer traffic: 16 frames of 16 KiB.
    let period = period();
    let mut sink = BytesMut::with_capacity(1024);
    let mut pump = |fwd: &mut Forwarder, rounds: usize| {
        let mut bytes = 0;
        for _ in 0..rounds {
            for chunk in period.chunks(64 * 1024) {
                let buffer = fwd.receive_buffer(DIALER).unwrap();
                buffer.reserve(chunk.len());
                buffer.extend_from_slice(chunk);
                fwd.handle_received(now, DIALER, 0);
                bytes += flush(fwd, HOST, &mut sink);
            }
        }
        bytes
    };
    pump(&mut fwd, 50);
    let probe = Region::new(GLOBAL);
    std::hint::black_box(vec![0u8; 64]);
    assert!(probe.change().allocations > 0, "the counter is live");

    let region = Region::new(GLOBAL);
    let bytes = pump(&mut fwd, 500);
    let change = region.change();
    assert!(bytes > 500 * 16 * 16 * 1024, "relayed only {bytes} bytes");
    assert_eq!(fwd.stats().frames_relayed, 550 * 16);
    assert_eq!(
        change.allocations + change.reallocations,
        0,
        "allocations while relaying {} frames",
        500 * 16
    );
    cross_shard_relay_allocates_nothing_per_frame();
    tls_path_allocations_per_frame();
}

/// The host of the cross-shard circuit, on shard 1.
const X_HOST: ConnKey = ConnKey(1 << 48 | 2);

/// Carries the messages of two shards' forwarders to each other, through `moving` (its
/// capacity is kept, so carrying does not allocate once warm).
fn shuttle(shards: &mut [Forwarder; 2], moving: &mut Vec<(usize, usize, CrossMsg)>, now: Instant) {
    loop {
        for (from, fwd) in shards.iter_mut().enumerate() {
            while let Some((to, msg)) = fwd.poll_cross() {
                moving.push((from, to, msg));
            }
        }
        if moving.is_empty() {
            return;
        }
        for (from, to, msg) in moving.drain(..) {
            shards[to].handle_cross(now, from, msg);
        }
    }
}

/// Two shards with one circuit between them: the dialer's conn id 0 on shard 0, the
/// host's child 100 on shard 1.
fn cross_circuit(now: Instant, moving: &mut Vec<(usize, usize, CrossMsg)>) -> [Forwarder; 2] {
    let mut shards = [0, 1].map(|i| {
        let mut fwd = Forwarder::sharded(ForwardConfig::default(), i, 2);
        fwd.apply_sync(now, sync());
        fwd
    });
    let mut wire = BytesMut::new();
    let [a, b] = &mut shards;
    b.add_conn(now, X_HOST, Some("fp".into()));
    host_hello_and_bind(&mut wire);
    b.handle_input(now, X_HOST, &wire.split(), 0);
    let Some(ControlRequest::CreateTerminator { .. }) = b.poll_control() else {
        panic!()
    };
    b.terminator_created(now, X_HOST, 7, "t".into());
    frames_of(b, X_HOST);
    a.add_conn(now, DIALER, Some("fp".into()));
    dialer_hello_and_connect(&mut wire);
    shuttle(&mut shards, moving, now);
    shards[0].handle_input(now, DIALER, &wire.split(), 0);
    shuttle(&mut shards, moving, now);
    let frames = frames_of(&mut shards[1], X_HOST);
    accept_as_child_100(&frames[0], &mut wire);
    shards[1].handle_input(now, X_HOST, &wire.split(), 0);
    shuttle(&mut shards, moving, now);
    frames_of(&mut shards[1], X_HOST);
    let frames = frames_of(&mut shards[0], DIALER);
    assert!(!frames.is_empty(), "the dialer is connected");
    shards
}

/// A circuit across two shards: the payload crosses as the same `Bytes` in a message,
/// credits come back in batches, and nothing is allocated per frame.
fn cross_shard_relay_allocates_nothing_per_frame() {
    let now = Instant::now();
    let mut moving = Vec::with_capacity(1024);
    let mut shards = cross_circuit(now, &mut moving);
    let period = period();
    let mut sink = BytesMut::with_capacity(1024);
    let mut pump = |shards: &mut [Forwarder; 2], moving: &mut Vec<_>, rounds: usize| {
        let mut bytes = 0;
        for _ in 0..rounds {
            for chunk in period.chunks(64 * 1024) {
                let buffer = shards[0].receive_buffer(DIALER).unwrap();
                buffer.reserve(chunk.len());
                buffer.extend_from_slice(chunk);
                shards[0].handle_received(now, DIALER, 0);
                shuttle(shards, moving, now);
                bytes += flush(&mut shards[1], X_HOST, &mut sink);
                shuttle(shards, moving, now);
                assert!(shards[0].wants_read(DIALER), "credits keep the window open");
            }
        }
        bytes
    };
    pump(&mut shards, &mut moving, 50);
    let region = Region::new(GLOBAL);
    let bytes = pump(&mut shards, &mut moving, 500);
    let change = region.change();
    assert!(bytes > 500 * 16 * 16 * 1024, "relayed only {bytes} bytes");
    assert_eq!(shards[0].stats().frames_cross, 550 * 16);
    assert_eq!(
        change.allocations + change.reallocations,
        0,
        "allocations while relaying {} frames across shards",
        500 * 16
    );
}

/// A handshaken pair: a rustls client and the router's session for it.
fn tls_pair() -> (rustls::ClientConnection, ServerSession) {
    TestPki::new()
        .unwrap()
        .handshaken(&[&rustls::version::TLS13])
        .unwrap()
}

/// The number of TLS records in `wire` (whole records only).
fn records(mut wire: &[u8]) -> usize {
    let mut n = 0;
    while wire.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
        wire = &wire[(5 + len).min(wire.len())..];
        n += 1;
    }
    n
}

/// A connection's per-frame work, TLS included: the dialer's ciphertext arrives in
/// 64 KiB reads appended to its session's incoming buffer and is decrypted into the
/// forwarder's receive buffer; each transmit for the host is encrypted straight into
/// one reused write buffer.
fn tls_path_allocations_per_frame() {
    const WARM: usize = 20;
    const ROUNDS: usize = 100;
    const FRAMES: usize = 16;
    let now = Instant::now();
    let mut fwd = circuit(now);
    let (mut dialer, mut dialer_session) = tls_pair();
    let (_host, mut host_session) = tls_pair();

    // The dialer's ciphertext for every round, made before counting (the client's
    // allocations are not the router's).
    let period = period();
    let rounds: Vec<Vec<u8>> = (0..WARM + ROUNDS)
        .map(|_| {
            dialer.writer().write_all(&period).unwrap();
            let mut ciphertext = Vec::with_capacity(period.len() + 4096);
            while dialer.wants_write() {
                dialer.write_tls(&mut ciphertext).unwrap();
            }
            ciphertext
        })
        .collect();
    let records_in: usize = rounds[WARM..].iter().map(|r| records(r)).sum();
    let mut wbuf = TlsBuf::new(Vec::with_capacity(512 * 1024));
    let mut relay = |fwd: &mut Forwarder, ciphertext: &[u8]| {
        let mut bytes = 0;
        let mut records_out = 0;
        for (i, read) in ciphertext.chunks(64 * 1024).enumerate() {
            // What a socket read does: append to the spare room the session keeps, in
            // place (epoll) or through a read operation that holds the buffer meanwhile
            // (io_uring), while the host's session encrypts.
            if i % 2 == 0 {
                let incoming = dialer_session.incoming_mut();
                assert!(incoming.capacity() - incoming.len() >= read.len());
                incoming.extend_from_slice(read);
            } else {
                let mut incoming = dialer_session.take_incoming();
                assert!(incoming.capacity() - incoming.len() >= read.len());
                incoming.extend_from_slice(read);
                dialer_session.put_incoming(incoming);
            }
            let buffer = fwd.receive_buffer(DIALER).unwrap();
            assert_eq!(dialer_session.process(buffer).unwrap(), Fed::Open);
            fwd.handle_received(now, DIALER, 0);
            while fwd.poll_ready().is_some() {}
            wbuf.clear();
            while let Some(t) = fwd.poll_transmit(HOST) {
                host_session
                    .encrypt(&t.head, &t.payload, &mut wbuf)
                    .unwrap();
                host_session.take_tls(&mut wbuf).unwrap();
                fwd.handle_written(HOST, &t);
            }
            bytes += wbuf.len();
            records_out += records(&wbuf);
        }
        (bytes, records_out)
    };
    for ciphertext in &rounds[..WARM] {
        relay(&mut fwd, ciphertext);
    }
    let region = Region::new(GLOBAL);
    let mut bytes = 0;
    let mut records_out = 0;
    for ciphertext in &rounds[WARM..] {
        let (b, r) = relay(&mut fwd, ciphertext);
        bytes += b;
        records_out += r;
    }
    let change = region.change();
    let frames = ROUNDS * FRAMES;
    assert!(bytes > frames * 16 * 1024, "sent only {bytes} bytes");
    let per_frame = (change.allocations + change.reallocations) as f64 / frames as f64;
    eprintln!(
        "TLS path: {} allocations, {} reallocations, {} bytes allocated for {frames} \
         frames relayed ({records_in} records decrypted, {records_out} encrypted): \
         {per_frame:.2} per frame",
        change.allocations, change.reallocations, change.bytes_allocated
    );
    // After the handshake the session opens and seals records in place in buffers
    // that are reused (rustls keeps only the key schedule), as are the driver's and the
    // forwarder's: any allocation or reallocation on the path is a regression.
    assert!(records_in >= frames && records_out >= frames);
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "allocations on the TLS path"
    );
}
