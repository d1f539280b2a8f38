//! Link sessions on bytes: two ends wired back to back, time simulated.
#![allow(clippy::disallowed_methods)] // tests start their simulated clock once
#![allow(clippy::indexing_slicing)]

use proptest::prelude::*;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn small() -> LinkConfig {
    LinkConfig {
        window: 1000,
        frame_cost: 0,
        credit_batch: 250,
        max_circuits: 4,
        max_unknown_replies: 2,
        reply_budget_bytes: 1024,
        health: HealthConfig::default(),
    }
}

fn pair(config: LinkConfig, t0: Instant) -> (LinkSession, LinkSession) {
    let dialer = LinkSession::new(
        config,
        Role::Dialer {
            own_id: "r-a".into(),
            peer: "r-b".into(),
            connection: 0,
        },
        t0,
    )
    .unwrap();
    (dialer, listener(config, t0))
}

/// A listener expecting router `r-a`.
fn listener(config: LinkConfig, t0: Instant) -> LinkSession {
    LinkSession::new(
        config,
        Role::Listener {
            expected_peer: "r-a".into(),
        },
        t0,
    )
    .unwrap()
}

/// Moves every queued frame from `from` to `to`; returns the bytes moved.
fn carry(now: Instant, from: &mut LinkSession, to: &mut LinkSession) -> Result<usize, LinkError> {
    let wire = queued_wire(from);
    to.handle_bytes(now, &wire)?;
    Ok(wire.len())
}

/// Every frame `s` queued, as the bytes on the wire.
fn queued_wire(s: &mut LinkSession) -> Vec<u8> {
    let mut wire = Vec::new();
    while let Some(t) = s.poll_transmit() {
        wire.extend_from_slice(&t.head);
        wire.extend_from_slice(&t.payload);
    }
    wire
}

fn events(s: &mut LinkSession) -> Vec<LinkEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn up(config: LinkConfig, t0: Instant) -> (LinkSession, LinkSession) {
    let (mut a, mut b) = pair(config, t0);
    carry(t0, &mut a, &mut b).unwrap();
    assert_eq!(events(&mut b), [LinkEvent::Up { peer: "r-a".into() }]);
    carry(t0, &mut b, &mut a).unwrap();
    assert_eq!(events(&mut a), [LinkEvent::Up { peer: "r-b".into() }]);
    assert_eq!((a.peer(), b.peer()), (Some("r-b"), Some("r-a")));
    (a, b)
}

#[test]
fn a_start_needs_no_credit_and_is_its_own_event() {
    let t0 = Instant::now();
    let (mut a, mut b) = up(small(), t0);
    a.open_circuit(7).unwrap();
    b.open_circuit(7).unwrap();
    assert!(
        a.send_data(7, 1, false, Bytes::from(vec![0u8; 1000]))
            .unwrap()
    );
    // The window is full; a start still goes, and counts against nothing.
    a.send_start(7).unwrap();
    // Of a circuit this side does not carry, nothing is sent.
    a.send_start(8).unwrap();
    carry(t0, &mut a, &mut b).unwrap();
    let got = events(&mut b);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1], LinkEvent::Start { circuit: 7 });
    assert_eq!(a.send_credit(7), 0);
}

#[test]
fn hello_then_data_and_credit_per_circuit() {
    let t0 = Instant::now();
    let (mut a, mut b) = up(small(), t0);
    for s in [&mut a, &mut b] {
        s.open_circuit(1).unwrap();
        s.open_circuit(2).unwrap();
    }
    // Circuit 1's reader stalls: a fills its window, and circuit 2 still flows.
    assert!(
        a.send_data(1, 1, false, Bytes::from(vec![1u8; 600]))
            .unwrap()
    );
    assert!(
        a.send_data(1, 2, false, Bytes::from(vec![1u8; 400]))
            .unwrap()
    );
    assert!(
        !a.send_data(1, 3, false, Bytes::from_static(b"x")).unwrap(),
        "window full"
    );
    assert!(
        a.send_data(2, 1, true, Bytes::from_static(b"other"))
            .unwrap()
    );
    carry(t0, &mut a, &mut b).unwrap();
    let got = events(&mut b);
    assert_eq!(got.len(), 3);
    assert!(
        matches!(&got[2], LinkEvent::Data { circuit: 2, fin: true, payload, .. } if payload == "other")
    );

    // Circuit 1's consumer drains 300: one credit batch (250 or more) goes back.
    b.consumed(1, Drained::frame(300)).unwrap();
    carry(t0, &mut b, &mut a).unwrap();
    assert_eq!(
        events(&mut a),
        [LinkEvent::Credit {
            circuit: 1,
            bytes: 300,
            frames: 1,
        }]
    );
    assert_eq!(a.send_credit(1), 300);
    assert!(
        a.send_data(1, 3, false, Bytes::from(vec![1u8; 300]))
            .unwrap()
    );
    carry(t0, &mut a, &mut b).unwrap();

    // Closing travels; data for the closed circuit is then unknown and answered once.
    a.close_circuit(2, b"done").unwrap();
    carry(t0, &mut a, &mut b).unwrap();
    let closed = events(&mut b).pop().unwrap();
    assert_eq!(
        closed,
        LinkEvent::Closed {
            circuit: 2,
            reason: Bytes::from_static(b"done"),
            reroute: false,
            link_up: false,
        }
    );
    assert_eq!((a.circuits(), b.circuits()), (1, 1));
}

/// A dialer's session for connection `connection` of its link to `r-b`.
fn dialer_of_connection(connection: u32, t0: Instant) -> LinkSession {
    LinkSession::new(
        small(),
        Role::Dialer {
            own_id: "r-a".into(),
            peer: "r-b".into(),
            connection,
        },
        t0,
    )
    .unwrap()
}

#[test]
fn the_listener_learns_the_connection_number_and_refuses_one_past_the_most() {
    let t0 = Instant::now();
    let mut a = dialer_of_connection(3, t0);
    let mut b = listener(small(), t0);
    assert_eq!((a.connection(), b.connection()), (3, 0));
    carry(t0, &mut a, &mut b).unwrap();
    assert_eq!(events(&mut b), [LinkEvent::Up { peer: "r-a".into() }]);
    assert_eq!(b.connection(), 3);

    let mut a = dialer_of_connection(MAX_CONNECTIONS, t0);
    let mut b = listener(small(), t0);
    assert_eq!(
        carry(t0, &mut a, &mut b),
        Err(LinkError::TooManyConnections(MAX_CONNECTIONS))
    );
    assert_eq!(b.peer(), None);
    // The dialer hears why.
    assert!(matches!(
        carry(t0, &mut b, &mut a),
        Err(LinkError::HelloRefused(m)) if m.contains("too many connections")
    ));
}

#[test]
fn a_start_for_a_circuit_the_connection_lacks_is_handed_up_then_taken_or_refused() {
    let t0 = Instant::now();
    let (mut a, mut b) = up(small(), t0);
    a.open_circuit(5).unwrap();
    a.send_start(5).unwrap();
    assert!(
        a.send_data(5, 1, false, Bytes::from_static(b"early"))
            .unwrap()
    );
    a.open_circuit(6).unwrap();
    a.send_start(6).unwrap();
    carry(t0, &mut a, &mut b).unwrap();
    // Decoding stops at the start, so that the data after it waits for the decision.
    assert_eq!(events(&mut b), [LinkEvent::StartUnheld { circuit: 5 }]);
    assert!(b.stopped_for_start());
    // 5 is taken: it carries data from now on, the data after its start first.
    b.open_circuit(5).unwrap();
    b.handle_received(t0).unwrap();
    let got = events(&mut b);
    assert!(
        matches!(
            got.as_slice(),
            [
                LinkEvent::Data { circuit: 5, .. },
                LinkEvent::StartUnheld { circuit: 6 }
            ]
        ),
        "{got:?}"
    );
    assert!(a.send_data(5, 1, false, Bytes::from_static(b"hi")).unwrap());
    // 6 is refused: the dialer hears a close that asks for a reroute over intact links
    // (the path is inconsistent, not broken).
    b.refuse_circuit(6).unwrap();
    b.handle_received(t0).unwrap();
    assert!(!b.stopped_for_start());
    carry(t0, &mut b, &mut a).unwrap();
    assert!(matches!(
        events(&mut a).as_slice(),
        [LinkEvent::Closed {
            circuit: 6,
            reroute: true,
            link_up: true,
            ..
        }]
    ));
    carry(t0, &mut a, &mut b).unwrap();
    assert!(matches!(
        events(&mut b).as_slice(),
        [LinkEvent::Data { circuit: 5, .. }]
    ));
}

#[test]
fn data_on_a_circuit_moved_away_is_dropped_without_an_answer() {
    let t0 = Instant::now();
    let (mut a, mut b) = up(small(), t0);
    a.open_circuit(3).unwrap();
    b.open_circuit(3).unwrap();
    // B moves the circuit away (a reroute gave it a new id) while A still sends on it.
    b.forget_circuit(3);
    assert!(
        a.send_data(3, 1, false, Bytes::from_static(b"late"))
            .unwrap()
    );
    carry(t0, &mut a, &mut b).unwrap();
    assert_eq!(events(&mut b), []);
    // No close goes back: A's circuit lives on until it moves too.
    assert!(b.poll_transmit().is_none());
    assert_eq!(a.circuits(), 1);
}

#[test]
fn a_reroute_close_says_whether_the_link_stays_up() {
    let t0 = Instant::now();
    let (mut a, mut b) = up(small(), t0);
    for c in [1, 2] {
        a.open_circuit(c).unwrap();
        b.open_circuit(c).unwrap();
    }
    a.close_for_reroute(1, b"lost", true).unwrap();
    a.close_for_reroute(2, b"lost", false).unwrap();
    carry(t0, &mut a, &mut b).unwrap();
    let got: Vec<(bool, bool)> = events(&mut b)
        .into_iter()
        .filter_map(|e| match e {
            LinkEvent::Closed {
                reroute, link_up, ..
            } => Some((reroute, link_up)),
            _ => None,
        })
        .collect();
    assert_eq!(got, [(true, true), (true, false)]);
}

/// `count` LinkData frames of `payload` on `circuit`, made by hand (a sender that
/// ignores its credit).
fn by_hand(circuit: u64, count: u64, payload: &[u8]) -> BytesMut {
    let mut wire = BytesMut::new();
    for seq in 1..=count {
        LinkData {
            circuit_id: circuit,
            seq,
            flags: 0,
            payload,
        }
        .encode(seq as i32 + 10, &mut wire)
        .unwrap();
    }
    wire
}

#[test]
fn a_peer_beyond_the_window_ends_the_link() {
    let t0 = Instant::now();
    let (mut a, mut b) = up(small(), t0);
    a.open_circuit(1).unwrap();
    b.open_circuit(1).unwrap();
    // A hostile sender ignores its credit: frames made by hand.
    let wire = by_hand(1, 3, &[0u8; 400]);
    assert_eq!(b.handle_bytes(t0, &wire), Err(LinkError::CreditExceeded(1)));
}

/// A link between a dialer charging `dialer` per frame and a listener charging
/// `listener`, up.
fn up_with_costs(dialer: u32, listener: u32, t0: Instant) -> (LinkSession, LinkSession) {
    let mut a = LinkSession::new(
        LinkConfig {
            frame_cost: dialer,
            ..small()
        },
        Role::Dialer {
            own_id: "r-a".into(),
            peer: "r-b".into(),
            connection: 0,
        },
        t0,
    )
    .unwrap();
    let mut b = self::listener(
        LinkConfig {
            frame_cost: listener,
            ..small()
        },
        t0,
    );
    carry(t0, &mut a, &mut b).unwrap();
    carry(t0, &mut b, &mut a).unwrap();
    assert!(a.peer().is_some() && b.peer().is_some());
    events(&mut a);
    events(&mut b);
    (a, b)
}

#[test]
fn a_link_charges_the_smaller_frame_cost_and_nothing_with_an_older_router() {
    let t0 = Instant::now();
    for (dialer, listener, agreed) in [(100, 100, 100), (100, 40, 40), (0, 100, 0), (100, 0, 0)] {
        let (a, b) = up_with_costs(dialer, listener, t0);
        assert_eq!(
            (a.frame_cost(), b.frame_cost()),
            (agreed, agreed),
            "dialer {dialer}, listener {listener}"
        );
    }
}

#[test]
fn tiny_frames_fill_a_window_that_charges_frames() {
    let t0 = Instant::now();
    let (mut a, mut b) = up_with_costs(100, 100, t0);
    a.open_circuit(1).unwrap();
    b.open_circuit(1).unwrap();
    // A window of 1,000 at 100 per frame: nine 1-byte frames, not a thousand.
    for seq in 1..=9 {
        assert!(
            a.send_data(1, seq, false, Bytes::from_static(b"x"))
                .unwrap()
        );
    }
    assert!(!a.fits(1, 1));
    assert!(!a.send_data(1, 10, false, Bytes::from_static(b"x")).unwrap());
    carry(t0, &mut a, &mut b).unwrap();
    assert_eq!(events(&mut b).len(), 9);
    // Draining three frames (303 charged) passes the batch of 250: the credit says
    // how many frames, and the sender gets their charge back.
    b.consumed(
        1,
        Drained {
            bytes: 3,
            frames: 3,
        },
    )
    .unwrap();
    carry(t0, &mut b, &mut a).unwrap();
    assert_eq!(
        events(&mut a),
        [LinkEvent::Credit {
            circuit: 1,
            bytes: 3,
            frames: 3
        }]
    );
    assert_eq!(a.send_credit(1), 1000 - 9 * 101 + 303);
}

#[test]
fn a_peer_beyond_a_window_of_frame_charges_ends_the_link() {
    let t0 = Instant::now();
    let (mut a, mut b) = up_with_costs(100, 100, t0);
    a.open_circuit(1).unwrap();
    b.open_circuit(1).unwrap();
    // A hostile sender ignores its credit: ten 1-byte frames by hand (1,010 charged).
    let wire = by_hand(1, 10, b"x");
    assert_eq!(b.handle_bytes(t0, &wire), Err(LinkError::CreditExceeded(1)));
}

#[test]
fn a_credit_for_more_than_was_sent_counts_for_what_was_sent() {
    let t0 = Instant::now();
    let (mut a, mut b) = up_with_costs(100, 100, t0);
    a.open_circuit(1).unwrap();
    b.open_circuit(1).unwrap();
    assert!(
        a.send_data(1, 1, false, Bytes::from(vec![1u8; 300]))
            .unwrap()
    );
    // A hostile peer credits far more bytes and frames than it was sent: the sender
    // hands on (and counts) only the one frame of 300 bytes it has in flight.
    let mut wire = BytesMut::new();
    LinkCredit {
        circuit_id: 1,
        credit: u32::MAX,
        frames: u32::MAX,
    }
    .encode(9, &mut wire)
    .unwrap();
    a.handle_bytes(t0, &wire).unwrap();
    assert_eq!(
        events(&mut a),
        [LinkEvent::Credit {
            circuit: 1,
            bytes: 300,
            frames: 1
        }]
    );
    assert_eq!(a.send_credit(1), 1000, "never past the window");
}

#[test]
fn a_small_payload_arrives_in_its_own_memory() {
    let t0 = Instant::now();
    let (mut a, mut b) = up(small(), t0);
    a.open_circuit(1).unwrap();
    b.open_circuit(1).unwrap();
    assert!(
        a.send_data(1, 1, false, Bytes::from_static(b"tiny"))
            .unwrap()
    );
    let wire = queued_wire(&mut a);
    b.handle_bytes(t0, &wire).unwrap();
    let [LinkEvent::Data { payload, .. }] = &events(&mut b)[..] else {
        panic!("one frame");
    };
    assert_eq!(payload, "tiny");
    // Its bytes are not inside the receive buffer the frame was decoded from: the
    // session copied them, so the buffer is free for the next read.
    assert_eq!(payload.len(), 4);
    assert!(payload.as_ptr() != wire[wire.len() - 4..].as_ptr());
}

#[test]
fn the_listener_accepts_only_the_router_the_certificate_names() {
    let t0 = Instant::now();
    let mut impostor = LinkSession::new(
        small(),
        Role::Dialer {
            own_id: "r-evil".into(),
            peer: "r-b".into(),
            connection: 0,
        },
        t0,
    )
    .unwrap();
    let mut b = listener(small(), t0);
    assert!(matches!(
        carry(t0, &mut impostor, &mut b),
        Err(LinkError::WrongPeer { .. })
    ));
    // It is told no, and hears it as a refusal.
    assert!(matches!(
        carry(t0, &mut b, &mut impostor),
        Err(LinkError::HelloRefused(_))
    ));
    assert_eq!(b.peer(), None);
    assert_eq!(b.open_circuit(1), Err(LinkError::NotUp));
}

#[test]
fn nothing_but_a_hello_before_the_hello() {
    let t0 = Instant::now();
    let mut b = listener(small(), t0);
    let mut wire = BytesMut::new();
    LinkHeartbeat { stamp: 1 }.encode(1, &mut wire).unwrap();
    assert!(b.handle_bytes(t0, &wire).is_err());
    // And a hello that never comes ends the link at the dead time.
    let mut c = listener(small(), t0);
    assert_eq!(c.poll_timeout(), t0 + Duration::from_secs(3));
    assert_eq!(c.handle_timeout(t0 + Duration::from_secs(2)), Ok(()));
    assert_eq!(
        c.handle_timeout(t0 + Duration::from_secs(3)),
        Err(LinkError::Dead)
    );
}

#[test]
fn heartbeats_measure_latency_and_silence_ends_the_link() {
    let t0 = Instant::now();
    let (mut a, mut b) = up(small(), t0);
    a.handle_timeout(t0).unwrap();
    carry(t0 + 20 * MS, &mut a, &mut b).unwrap();
    carry(t0 + 45 * MS, &mut b, &mut a).unwrap();
    assert_eq!(events(&mut a), [LinkEvent::Latency(45 * MS)]);
    assert_eq!(a.latency(), Some(45 * MS));
    // Then b goes silent.
    let silent_from = t0 + 45 * MS;
    a.handle_timeout(silent_from + Duration::from_secs(2))
        .unwrap();
    assert_eq!(
        a.handle_timeout(silent_from + Duration::from_secs(3)),
        Err(LinkError::Dead)
    );
}

#[test]
fn data_on_unknown_circuits_is_answered_within_a_budget() {
    let t0 = Instant::now();
    let (_a, mut b) = up(small(), t0);
    let mut wire = BytesMut::new();
    for circuit in [7u64, 7, 8, 9, 9] {
        LinkData {
            circuit_id: circuit,
            seq: 1,
            flags: 0,
            payload: b"?",
        }
        .encode(1, &mut wire)
        .unwrap();
    }
    b.handle_bytes(t0, &wire).unwrap();
    let answers: Vec<Transmit> = std::iter::from_fn(|| b.poll_transmit()).collect();
    // 7 once, 8 once; the memory (2 ids) starts over, so 9 once.
    assert_eq!(answers.len(), 3);
    assert!(events(&mut b).is_empty(), "nothing delivered");
}

/// A peer that floods heartbeats and never reads the acks: the driver stops reading
/// once the acks queued pass the budget, so the link holds at most the budget plus
/// what one read's worth of input asked for; written out, the acks free it again.
#[test]
fn a_peer_that_never_reads_its_answers_is_not_read_either() {
    let t0 = Instant::now();
    let (_a, mut b) = up(small(), t0);
    // One "socket read" = 20 heartbeats (36 bytes each).
    let mut read = BytesMut::new();
    for stamp in 0..20 {
        LinkHeartbeat { stamp }
            .encode(stamp as i32, &mut read)
            .unwrap();
    }
    let mut reads = 0;
    while b.wants_read() {
        b.handle_bytes(t0, &read).unwrap();
        reads += 1;
        assert!(reads < 1000, "never stopped reading");
    }
    let queued: usize = std::iter::from_fn(|| b.poll_transmit())
        .map(|t| t.head.len())
        .sum();
    assert!(queued >= 1024, "{queued}");
    assert!(
        queued < 1024 + 20 * 64,
        "{queued}: more than one read past the budget"
    );
    assert!(b.wants_read(), "written out, the answers free the budget");
}

#[test]
fn circuits_are_bounded_and_payloads_larger_than_the_window_refused() {
    let t0 = Instant::now();
    let (mut a, _b) = up(small(), t0);
    for c in 0..4 {
        a.open_circuit(c).unwrap();
    }
    assert_eq!(a.open_circuit(99), Err(LinkError::TooManyCircuits));
    assert_eq!(a.open_circuit(3), Ok(()), "reopening is not a new one");
    assert_eq!(
        a.send_data(0, 1, false, Bytes::from(vec![0u8; 1001])),
        Err(LinkError::TooLarge(1001))
    );
    assert_eq!(
        a.send_data(42, 1, false, Bytes::from_static(b"x")),
        Ok(false)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Random sends, consumption and deliveries on three circuits: every byte arrives
    /// once and in order on its circuit, no sender ever has more than a window in
    /// flight, and a stalled circuit never keeps another from moving.
    #[test]
    fn every_byte_arrives_once_in_order_within_the_window(
        ops in proptest::collection::vec((0u8..4, 0u64..3, 1usize..400), 1..300),
        frame_cost in prop_oneof![Just(0u32), Just(50u32)],
    ) {
        let t0 = Instant::now();
        let config = LinkConfig { frame_cost, ..small() };
        let cost = u64::from(frame_cost);
        let (mut a, mut b) = up(config, t0);
        for c in 0..3 {
            a.open_circuit(c).unwrap();
            b.open_circuit(c).unwrap();
        }
        let mut sent: Vec<Vec<u8>> = vec![Vec::new(); 3];
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); 3];
        // The lengths of the frames b received and its consumer did not drain yet.
        let mut unconsumed: Vec<VecDeque<usize>> = vec![VecDeque::new(); 3];
        let mut seq = [0u64; 3];
        let mut next_byte = 0u8;
        for (op, circuit, len) in ops {
            let c = circuit as usize;
            match op {
                // a sends on the circuit, if its credit allows
                0 => {
                    let payload: Vec<u8> = (0..len).map(|_| { next_byte = next_byte.wrapping_add(1); next_byte }).collect();
                    let before = a.send_credit(circuit);
                    if a.send_data(circuit, seq[c] + 1, false, Bytes::from(payload.clone())).unwrap() {
                        seq[c] += 1;
                        sent[c].extend_from_slice(&payload);
                        prop_assert_eq!(a.send_credit(circuit), before - charge(len, cost));
                    } else {
                        prop_assert!(before < charge(len, cost));
                    }
                }
                // a's frames reach b
                1 => {
                    carry(t0, &mut a, &mut b).unwrap();
                    for e in events(&mut b) {
                        if let LinkEvent::Data { circuit, payload, .. } = e {
                            got[circuit as usize].extend_from_slice(&payload);
                            unconsumed[circuit as usize].push_back(payload.len());
                        }
                    }
                }
                // b's consumer drains some of a circuit
                2 => {
                    // Whole frames (the forwarder reports each written frame), at
                    // least one, up to `len` bytes.
                    let mut drained = Drained::default();
                    while let Some(&first) = unconsumed[c].front() {
                        if !drained.is_empty() && drained.bytes + first as u64 > len as u64 {
                            break;
                        }
                        unconsumed[c].pop_front();
                        drained.add(Drained::frame(first));
                    }
                    b.consumed(circuit, drained).unwrap();
                }
                // b's credits reach a
                _ => {
                    carry(t0, &mut b, &mut a).unwrap();
                    events(&mut a);
                }
            }
            for k in 0..3 {
                // In flight from a's view never exceeds the window.
                let in_flight = u64::from(config.window) - a.send_credit(k as u64);
                prop_assert!(in_flight <= u64::from(config.window));
                prop_assert!(got[k].len() <= sent[k].len());
                prop_assert_eq!(&sent[k][..got[k].len()], &got[k][..]);
            }
        }
        // Drain everything: all of it arrives.
        carry(t0, &mut a, &mut b).unwrap();
        for e in events(&mut b) {
            if let LinkEvent::Data { circuit, payload, .. } = e {
                got[circuit as usize].extend_from_slice(&payload);
            }
        }
        prop_assert_eq!(sent, got);
    }
}
