//! The relay path allocates nothing per Data frame in steady state: a frame read from
//! the dialer is decoded, handed to the host's connection as the same `Bytes`, given a
//! head in a reused buffer, and written.
//!
//! One test per binary: the counting allocator is process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::time::Instant;

use bytes::BytesMut;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use weft_router::forward::{ConnKey, ControlRequest, ForwardConfig, Forwarder};
use weft_wire::control::pb;
use weft_wire::edge::{Bind, Connect, Data, Dial, DialSuccess, Hello};
use weft_wire::{Decoded, Decoder, Limits};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const DIALER: ConnKey = ConnKey(1);
const HOST: ConnKey = ConnKey(2);

fn sync() -> pb::StateSync {
    let api = |id: &str| pb::ApiSession {
        id: id.into(),
        token: id.into(),
        identity_id: id.into(),
        identity_name: id.into(),
        cert_fingerprints: vec!["fp".into()],
        expires_at_unix_ms: 0,
    };
    let session = |id: &str, api: &str, kind: pb::SessionType| pb::Session {
        id: id.into(),
        token: id.into(),
        api_session_id: api.into(),
        service_id: "svc".into(),
        r#type: kind as i32,
        identity_id: String::new(),
    };
    pb::StateSync {
        revision: 1,
        api_sessions: vec![api("D"), api("H")],
        sessions: vec![
            session("dial", "D", pb::SessionType::Dial),
            session("bind", "H", pb::SessionType::Bind),
        ],
        ..Default::default()
    }
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

#[test]
fn steady_state_relay_allocates_nothing_per_frame() {
    let now = Instant::now();
    let mut fwd = Forwarder::new(ForwardConfig::default(), 0);
    fwd.apply_sync(now, sync());
    let mut wire = BytesMut::new();

    // Host: hello, bind, confirmed terminator.
    fwd.add_conn(now, HOST, vec!["fp".into()]);
    Hello {
        session_token: b"H",
        client_info: b"",
    }
    .encode(0, &mut wire)
    .unwrap();
    let bind = Bind {
        conn_id: 7,
        seq: 0,
        caller_id: None,
        public_key: None,
        terminator_identity: None,
        cost: None,
        precedence: None,
        session_token: b"bind",
    };
    bind.encode(1, &mut wire).unwrap();
    fwd.handle_input(now, HOST, &wire.split(), 0);
    let Some(ControlRequest::CreateTerminator { .. }) = fwd.poll_control() else {
        panic!()
    };
    fwd.terminator_created(now, HOST, 7, "t".into());
    frames_of(&mut fwd, HOST);

    // Dialer: hello, connect; host accepts as child 100.
    fwd.add_conn(now, DIALER, vec!["fp".into()]);
    Hello {
        session_token: b"D",
        client_info: b"",
    }
    .encode(0, &mut wire)
    .unwrap();
    let connect = Connect {
        conn_id: 0,
        seq: 0,
        caller_id: None,
        public_key: None,
        terminator_identity: None,
        app_data: None,
        session_token: b"dial",
    };
    connect.encode(1, &mut wire).unwrap();
    fwd.handle_input(now, DIALER, &wire.split(), 0);
    let frames = frames_of(&mut fwd, HOST);
    let dial = Dial::parse(&frames[0]).unwrap();
    DialSuccess {
        conn_id: dial.conn_id,
        seq: 0,
        reply_for: frames[0].sequence(),
        new_conn_id: 100,
    }
    .encode(2, &mut wire)
    .unwrap();
    fwd.handle_input(now, HOST, &wire.split(), 0);
    frames_of(&mut fwd, HOST);
    frames_of(&mut fwd, DIALER);

    // One period of dialer traffic: 16 frames of 16 KiB.
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
}
