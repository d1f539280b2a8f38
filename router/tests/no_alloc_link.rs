//! A link carries circuit data without allocating per frame in steady state: the
//! sender's `LinkData` head is kept inline in its transmit and the payload is the
//! `Bytes` handed over; the receiver decodes into its reused buffer and hands the
//! payload on as a slice of it; credit goes back in inline frames.
//!
//! One test per binary: the counting allocator is process-wide. As in the wire's test,
//! three runs are measured and the quietest must show none (another thread of the test
//! harness may allocate during one).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::alloc::System;
use std::time::Instant;

use bytes::Bytes;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use weft_router::link::session::{LinkConfig, LinkEvent, LinkSession, Role};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Moves every queued frame of `from` into `wire` (reused), then into `to`.
fn carry(now: Instant, from: &mut LinkSession, to: &mut LinkSession, wire: &mut Vec<u8>) {
    wire.clear();
    while let Some(t) = from.poll_transmit() {
        wire.extend_from_slice(&t.head);
        wire.extend_from_slice(&t.payload);
    }
    to.handle_bytes(now, wire).unwrap();
}

/// `rounds` rounds of: a sends one 16 KiB frame on each of two circuits, b receives
/// them, consumes them, and returns credit. Returns the payload bytes b received.
fn pump(
    now: Instant,
    a: &mut LinkSession,
    b: &mut LinkSession,
    payload: &Bytes,
    seq: &mut u64,
    wire: &mut Vec<u8>,
    rounds: usize,
) -> usize {
    let mut received = 0;
    for _ in 0..rounds {
        for circuit in [1, 2] {
            *seq += 1;
            assert!(a.send_data(circuit, *seq, false, payload.clone()).unwrap());
        }
        carry(now, a, b, wire);
        while let Some(event) = b.poll_event() {
            if let LinkEvent::Data {
                circuit, payload, ..
            } = event
            {
                received += payload.len();
                b.consumed(circuit, weft_router::credit::Drained::frame(payload.len()))
                    .unwrap();
            }
        }
        carry(now, b, a, wire);
        while a.poll_event().is_some() {}
    }
    received
}

#[test]
fn steady_state_link_data_allocates_nothing_per_frame() {
    let now = Instant::now();
    let config = LinkConfig::default();
    let mut a = LinkSession::new(
        config,
        Role::Dialer {
            own_id: "r-a".into(),
            peer: "r-b".into(),
            connection: 0,
        },
        now,
    )
    .unwrap();
    let mut b = LinkSession::new(
        config,
        Role::Listener {
            expected_peer: "r-a".into(),
        },
        now,
    )
    .unwrap();
    let mut wire = Vec::with_capacity(1 << 20);
    carry(now, &mut a, &mut b, &mut wire);
    carry(now, &mut b, &mut a, &mut wire);
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
    for s in [&mut a, &mut b] {
        s.open_circuit(1).unwrap();
        s.open_circuit(2).unwrap();
    }
    let payload = Bytes::from(vec![7u8; 16 * 1024]);
    let mut seq = 0;
    // Warm-up: buffers and queues reach their working sizes.
    let warm = Region::new(GLOBAL);
    assert!(pump(now, &mut a, &mut b, &payload, &mut seq, &mut wire, 500) > 0);
    assert!(warm.change().allocations > 0, "the counter is live");

    let mut runs = Vec::new();
    for _ in 0..3 {
        let region = Region::new(GLOBAL);
        let received = pump(now, &mut a, &mut b, &payload, &mut seq, &mut wire, 2_000);
        let change = region.change();
        assert_eq!(received, 2_000 * 2 * payload.len());
        runs.push(change.allocations + change.reallocations);
    }
    let quietest = runs.iter().copied().min().unwrap();
    assert_eq!(quietest, 0, "allocations per run of 4,000 frames: {runs:?}");
}
