//! Forwarding tests: SDKs (dialers and hosts) speaking bytes to the forwarders of one
//! shard or of several (whose cross-shard messages the test carries).
#![allow(clippy::disallowed_methods)] // tests may start their simulated clock

use weft_wire::control::pb;
use weft_wire::edge::*;
use weft_wire::{Frame, Limits};

use super::sim::*;
use super::*;

#[test]
fn data_flows_both_ways_then_close_reaches_the_other_side() {
    let (mut net, mut dialer, mut host) = Net::established(1 << 20);
    net.data(&mut dialer, 0, b"ping", false);
    let frames = net.recv(&mut host);
    let d = Data::parse(&frames[0]).unwrap();
    assert_eq!((d.conn_id, d.payload, d.seq), (100, &b"ping"[..], 1));

    net.data(&mut host, 100, b"pong", false);
    net.data(&mut host, 100, b"", true);
    let frames = net.recv(&mut dialer);
    let d = Data::parse(&frames[0]).unwrap();
    assert_eq!((d.conn_id, d.payload), (0, &b"pong"[..]));
    assert!(Data::parse(&frames[1]).unwrap().is_fin());

    net.close(&mut dialer, 0);
    let frames = net.recv(&mut host);
    let closed = StateClosed::parse(&frames[0]).unwrap();
    assert_eq!((closed.conn_id, closed.reply_for), (100, None));
    assert!(!closed.reason.is_empty());
    assert_eq!(net.fwd.counts(), (2, 0, 1));
    let stats = net.fwd.stats();
    assert_eq!(
        (
            stats.circuits_opened,
            stats.frames_relayed,
            stats.bytes_relayed
        ),
        (1, 3, 8)
    );
}

#[test]
fn dials_without_a_confirmed_terminator_fail_with_a_reason() {
    let mut net = Net::new(1 << 20);
    let mut host = net.connect(HOST, b"H", "fh");
    net.send(&mut host, |o, s| {
        Bind {
            conn_id: 7,
            seq: 0,
            caller_id: None,
            public_key: None,
            terminator_identity: None,
            cost: None,
            precedence: None,
            session_token: b"tok-bind",
        }
        .encode(s, o)
        .unwrap()
    });
    let mut dialer = net.connect(DIALER, b"D", "fd");
    let seq = net.dial(&mut dialer, 0);
    let frames = net.recv(&mut dialer);
    let closed = StateClosed::parse(&frames[0]).unwrap();
    assert_eq!(closed.reply_for, Some(seq));
    assert!(closed.reason.starts_with(b"service has no terminators"));
    assert_ne!(closed.reason, INVALID_SESSION.as_bytes());

    // A refused registration fails the Bind.
    net.fwd.terminator_failed(net.now, HOST, 7, "not allowed");
    let frames = net.recv(&mut host);
    assert_eq!(
        StateClosed::parse(&frames[0]).unwrap().reason,
        b"not allowed"
    );
    assert_eq!(net.fwd.stats().dials_failed, 1);
}

#[test]
fn a_host_refusal_fails_the_dial() {
    let mut net = Net::new(1 << 20);
    let mut host = net.connect(HOST, b"H", "fh");
    net.bind(&mut host, 7, b"tok-bind", 0, Precedence::Default);
    let mut dialer = net.connect(DIALER, b"D", "fd");
    let seq = net.dial(&mut dialer, 0);
    net.refuse(&mut host, b"crypto failure");
    let frames = net.recv(&mut dialer);
    let closed = StateClosed::parse(&frames[0]).unwrap();
    assert_eq!(
        (closed.reply_for, closed.reason),
        (Some(seq), &b"crypto failure"[..])
    );
    assert_eq!(net.fwd.counts().1, 0);
}

#[test]
fn revoking_the_dial_session_closes_both_ends_at_once() {
    let (mut net, mut dialer, mut host) = Net::established(1 << 20);
    net.fwd
        .apply_update(
            net.now,
            pb::StateUpdate {
                revision: 2,
                sessions_removed: vec!["dial".into()],
                ..Default::default()
            },
        )
        .unwrap();
    net.expect_revoked(&mut dialer, &mut host);
    assert_eq!(net.fwd.counts(), (2, 0, 1));
    // The revoked token no longer dials.
    net.dial(&mut dialer, 1);
    let frames = net.recv(&mut dialer);
    assert_eq!(
        StateClosed::parse(&frames[0]).unwrap().reason,
        INVALID_SESSION.as_bytes()
    );
}

#[test]
fn revoking_the_hosts_api_session_drops_its_connection_terminator_and_circuits() {
    let (mut net, mut dialer, _host) = Net::established(1 << 20);
    net.fwd
        .apply_update(
            net.now,
            pb::StateUpdate {
                revision: 2,
                api_sessions_removed: vec!["api-h".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let frames = net.recv(&mut dialer);
    assert_eq!(StateClosed::parse(&frames[0]).unwrap().conn_id, 0);
    assert_eq!(
        net.fwd.poll_close(),
        Some((HOST, CloseReason::ApiSessionRevoked))
    );
    assert_eq!(
        net.fwd.poll_control(),
        Some(ControlRequest::RemoveTerminator {
            terminator_id: "t-2-7".into()
        })
    );
    assert!(!net.fwd.wants_read(HOST));
    net.fwd.remove_conn(net.now, HOST);
    assert_eq!(net.fwd.counts(), (1, 0, 0));
}

#[test]
fn a_lost_connection_ends_its_circuits_and_pending_dials() {
    let (mut net, mut dialer, _host) = Net::established(1 << 20);
    net.dial(&mut dialer, 1);
    net.fwd.conn_lost(net.now, HOST);
    let frames = net.recv(&mut dialer);
    let mut closed: Vec<(u32, Option<i32>)> = frames
        .iter()
        .map(|f| StateClosed::parse(f).unwrap())
        .map(|c| (c.conn_id, c.reply_for))
        .collect();
    closed.sort();
    assert_eq!(closed.len(), 2);
    assert_eq!(closed[0].0, 0);
    assert_eq!(closed[1].0, 1);
    assert!(closed[1].1.is_some(), "the pending dial is answered");
    assert_eq!(net.fwd.counts(), (1, 0, 0));
    assert_eq!(net.fwd.poll_close(), None);
}

#[test]
fn a_slow_reader_pauses_its_source_until_it_drains() {
    // Each frame counts its payload and its cost: 600 + 512.
    let (mut net, mut dialer, mut host) = Net::established(2000);
    host.stalled = true;
    net.data(&mut dialer, 0, &[1; 600], false);
    net.recv(&mut host);
    assert!(net.fwd.wants_read(DIALER));
    net.data(&mut dialer, 0, &[2; 600], false);
    assert!(!net.fwd.wants_read(DIALER), "window of 2000 exceeded");
    assert_eq!(net.fwd.stats().pauses, 1);
    // Other connections are unaffected.
    assert!(net.fwd.wants_read(HOST));
    host.stalled = false;
    let frames = net.recv(&mut host);
    assert_eq!(frames.len(), 2);
    assert!(net.fwd.wants_read(DIALER));
}

#[test]
fn the_best_terminator_wins() {
    let mut net = Net::new(1 << 20);
    let mut host = net.connect(HOST, b"H", "fh");
    let mut host2 = net.connect(HOST2, b"H2", "fh2");
    net.bind(&mut host, 7, b"tok-bind", 5, Precedence::Default);
    net.bind(&mut host2, 8, b"tok-bind2", 50, Precedence::Default);
    let mut dialer = net.connect(DIALER, b"D", "fd");
    net.dial(&mut dialer, 0);
    assert!(net.recv(&mut host2).is_empty());
    assert!(
        Dial::parse(&net.recv(&mut host)[0]).is_ok(),
        "lower cost wins"
    );

    net.bind(&mut host2, 9, b"tok-bind2", 50, Precedence::Required);
    net.dial(&mut dialer, 1);
    assert!(net.recv(&mut host).is_empty());
    assert_eq!(
        Dial::parse(&net.recv(&mut host2)[0]).unwrap().conn_id,
        9,
        "required wins"
    );
}

#[test]
fn unbinding_removes_the_terminator() {
    let mut net = Net::new(1 << 20);
    let mut host = net.connect(HOST, b"H", "fh");
    net.bind(&mut host, 7, b"tok-bind", 0, Precedence::Default);
    net.close(&mut host, 7);
    assert_eq!(
        net.fwd.poll_control(),
        Some(ControlRequest::RemoveTerminator {
            terminator_id: "t-2-7".into()
        })
    );
    assert_eq!(net.fwd.counts().2, 0);
}

#[test]
fn the_hello_deadline_fires_through_the_timer() {
    let mut net = Net::new(1 << 20);
    net.fwd.add_conn(net.now, DIALER, None);
    let deadline = net.fwd.poll_timeout().unwrap();
    net.fwd.handle_timeout(deadline);
    assert_eq!(
        net.fwd.poll_close(),
        Some((DIALER, CloseReason::HelloTimeout))
    );
}

// ---- circuits across shards ----

/// A host on shard 1 and a dialer on shard 0.
const X_HOST: ConnKey = ConnKey(1 << SHARD_SHIFT | 2);
const X_HOST2: ConnKey = ConnKey(1 << SHARD_SHIFT | 3);

/// Two shards, the host on shard 1 bound (and announced), the dialer on shard 0 with an
/// established circuit: dialer conn 0 <-> host child 100.
fn established_across(window: usize) -> (Net, Sdk, Sdk) {
    let mut net = Net::sharded(window, 2);
    let mut host = net.connect(X_HOST, b"H", "fh");
    net.bind(&mut host, 7, b"tok-bind", 0, Precedence::Default);
    assert_eq!(net.fwd.counts().2, 0, "shard 0 hosts no terminator");
    assert_eq!(net.others[0].counts().2, 1);
    let mut dialer = net.connect(DIALER, b"D", "fd");
    let seq = net.dial(&mut dialer, 0);
    net.accept(&mut host, 100);
    let frames = net.recv(&mut dialer);
    let connected = StateConnected::parse(&frames[0]).unwrap();
    assert_eq!(connected.reply_for, Some(seq));
    assert_eq!(
        connected.public_key,
        Some(&PK_H[..]),
        "the host's key crosses"
    );
    (net, dialer, host)
}

#[test]
fn a_circuit_crosses_shards_with_data_half_close_and_close() {
    let (mut net, mut dialer, mut host) = established_across(1 << 20);
    net.data(&mut dialer, 0, b"ping", false);
    let frames = net.recv(&mut host);
    let d = Data::parse(&frames[0]).unwrap();
    assert_eq!((d.conn_id, d.payload), (100, &b"ping"[..]));

    net.data(&mut host, 100, b"pong", false);
    net.data(&mut host, 100, b"", true);
    let frames = net.recv(&mut dialer);
    assert_eq!(Data::parse(&frames[0]).unwrap().payload, b"pong");
    assert!(Data::parse(&frames[1]).unwrap().is_fin());

    // Each circuit is counted once, by its dialer's shard.
    assert_eq!(net.fwd.counts().1 + net.others[0].counts().1, 1);
    net.close(&mut dialer, 0);
    let frames = net.recv(&mut host);
    let closed = StateClosed::parse(&frames[0]).unwrap();
    assert_eq!(
        (closed.conn_id, closed.reason),
        (100, &b"closed by peer"[..])
    );
    assert!(!net.fwd.has_circuits() && !net.others[0].has_circuits());
    let (s0, s1) = (net.fwd.stats(), net.others[0].stats());
    assert_eq!((s0.circuits_opened, s0.circuits_cross), (1, 1));
    assert_eq!(s1.circuits_opened, 0, "counted once, by the dialer's shard");
    assert_eq!((s0.frames_cross, s1.frames_cross), (1, 2));
}

#[test]
fn windows_hold_across_shards_through_credits() {
    // Each frame counts its payload and its cost (512).
    let (mut net, mut dialer, mut host) = established_across(2000);
    host.stalled = true;
    net.data(&mut dialer, 0, &[1; 600], false);
    net.recv(&mut host);
    assert!(net.fwd.wants_read(DIALER));
    net.data(&mut dialer, 0, &[2; 600], false);
    assert!(
        !net.fwd.wants_read(DIALER),
        "the dialer's shard pauses it on the far window"
    );
    assert!(net.others[0].wants_read(X_HOST));
    host.stalled = false;
    let frames = net.recv(&mut host);
    assert_eq!(frames.len(), 2);
    assert!(net.fwd.wants_read(DIALER), "credits resumed it");

    // The other direction, host paused on its own shard.
    dialer.stalled = true;
    net.data(&mut host, 100, &[3; 1600], false);
    assert!(!net.others[0].wants_read(X_HOST));
    dialer.stalled = false;
    net.recv(&mut dialer);
    assert!(net.others[0].wants_read(X_HOST));
}

#[test]
fn revocation_closes_both_shards_sides_at_once() {
    let (mut net, mut dialer, mut host) = established_across(1 << 20);
    net.update(pb::StateUpdate {
        revision: 2,
        sessions_removed: vec!["dial".into()],
        ..Default::default()
    });
    net.expect_revoked(&mut dialer, &mut host);
    assert!(!net.fwd.has_circuits() && !net.others[0].has_circuits());
}

#[test]
fn a_lost_host_ends_circuits_pending_dials_and_its_terminator_on_other_shards() {
    let (mut net, mut dialer, _host) = established_across(1 << 20);
    net.dial(&mut dialer, 1);
    let now = net.now;
    net.others[0].conn_lost(now, X_HOST);
    net.shuttle();
    let frames = net.recv(&mut dialer);
    let mut closed: Vec<(u32, bool)> = frames
        .iter()
        .map(|f| StateClosed::parse(f).unwrap())
        .map(|c| (c.conn_id, c.reply_for.is_some()))
        .collect();
    closed.sort();
    assert_eq!(
        closed,
        vec![(0, false), (1, true)],
        "circuit and pending dial"
    );
    assert!(!net.fwd.has_circuits() && !net.others[0].has_circuits());
    // Its terminator left shard 0's directory: the next dial fails at once.
    net.dial(&mut dialer, 2);
    let frames = net.recv(&mut dialer);
    assert!(
        StateClosed::parse(&frames[0])
            .unwrap()
            .reason
            .starts_with(b"service has no terminators")
    );
}

#[test]
fn a_dialer_gone_before_the_host_accepts_across_shards() {
    let mut net = Net::sharded(1 << 20, 2);
    let mut host = net.connect(X_HOST, b"H", "fh");
    net.bind(&mut host, 7, b"tok-bind", 0, Precedence::Default);
    let mut dialer = net.connect(DIALER, b"D", "fd");
    net.dial(&mut dialer, 0);
    let now = net.now;
    net.fwd.conn_lost(now, DIALER);
    net.shuttle();
    // The host answers the Dial it got; the router closes the new conn at once.
    let frames = net.recv(&mut host);
    let dial_seq = frames[0].sequence();
    net.send(&mut host, |o, s| {
        DialSuccess {
            conn_id: 7,
            seq: 0,
            reply_for: dial_seq,
            new_conn_id: 100,
        }
        .encode(s, o)
        .unwrap()
    });
    let frames = net.recv(&mut host);
    let closed: Vec<StateClosed<'_>> = frames
        .iter()
        .filter_map(|f| StateClosed::parse(f).ok())
        .collect();
    assert!(
        closed.iter().any(|c| c.conn_id == 100),
        "the host's new conn is closed: {closed:?}"
    );
    assert!(!net.fwd.has_circuits() && !net.others[0].has_circuits());
}

#[test]
fn a_refusal_on_the_host_shard_fails_the_dial() {
    let mut net = Net::sharded(1 << 20, 2);
    let mut host = net.connect(X_HOST, b"H", "fh");
    net.bind(&mut host, 7, b"tok-bind", 0, Precedence::Default);
    let mut dialer = net.connect(DIALER, b"D", "fd");
    let seq = net.dial(&mut dialer, 0);
    net.refuse(&mut host, b"no upstream");
    let frames = net.recv(&mut dialer);
    let closed = StateClosed::parse(&frames[0]).unwrap();
    assert_eq!(
        (closed.reply_for, closed.reason),
        (Some(seq), &b"no upstream"[..])
    );
    assert_eq!(net.fwd.stats().dials_failed, 1);
    assert!(!net.fwd.has_circuits() && !net.others[0].has_circuits());
}

#[test]
fn a_local_terminator_is_preferred_among_equals_and_unbinding_reaches_every_shard() {
    let mut net = Net::sharded(1 << 20, 2);
    let mut local = net.connect(HOST, b"H", "fh");
    let mut remote = net.connect(X_HOST2, b"H2", "fh2");
    net.bind(&mut local, 7, b"tok-bind", 0, Precedence::Default);
    net.bind(&mut remote, 8, b"tok-bind2", 0, Precedence::Default);
    let mut dialer = net.connect(DIALER, b"D", "fd");
    for conn_id in 0..4 {
        net.dial(&mut dialer, conn_id);
    }
    assert_eq!(
        net.recv(&mut local).len(),
        4,
        "every dial stays on its shard"
    );
    assert!(net.recv(&mut remote).is_empty());

    // The local host unbinds: dials now cross to the other shard.
    net.close(&mut local, 7);
    net.dial(&mut dialer, 10);
    assert_eq!(Dial::parse(&net.recv(&mut remote)[0]).unwrap().conn_id, 8);
    // And when that one unbinds too, shard 0 knows at once.
    net.close(&mut remote, 8);
    net.recv(&mut dialer);
    net.dial(&mut dialer, 11);
    let frames = net.recv(&mut dialer);
    let last = StateClosed::parse(frames.last().unwrap()).unwrap();
    assert_eq!(last.conn_id, 11);
    assert!(last.reason.starts_with(b"service has no terminators"));
}

mod properties {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// A step of the property tests: circuit 0 crosses shards (dialer on shard 0, host
    /// on shard 1), circuit 1 stays on shard 1.
    #[derive(Clone, Debug)]
    enum Op {
        /// The dialer of a circuit sends this many bytes (if its connection is read and,
        /// with credit, it has credit).
        Up(usize, u16),
        /// The host sends this many bytes on a circuit (likewise).
        Down(usize, u16),
        /// The host's socket stops or starts taking bytes.
        StallHost(bool),
        /// A dialer's socket stops or starts taking bytes.
        StallDialer(usize, bool),
        /// Write what is queued to every reader whose socket is not stalled.
        Flush,
        /// With credit: an application (0 = host, 1 and 2 = dialers) reads what its SDK
        /// received, so the SDK grants it back.
        AppReads(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..2usize, 1..20_000u16).prop_map(|(c, n)| Op::Up(c, n)),
            4 => (0..2usize, 1..20_000u16).prop_map(|(c, n)| Op::Down(c, n)),
            // Tiny frames, which the windows charge for their cost.
            3 => (0..2usize, 1..4u16).prop_map(|(c, n)| Op::Up(c, n)),
            3 => (0..2usize, 1..4u16).prop_map(|(c, n)| Op::Down(c, n)),
            1 => any::<bool>().prop_map(Op::StallHost),
            1 => (0..2usize, any::<bool>()).prop_map(|(d, s)| Op::StallDialer(d, s)),
            2 => Just(Op::Flush),
            2 => (0..3usize).prop_map(Op::AppReads),
        ]
    }

    /// Bytes sent and received per circuit and direction, and the SDKs' credit.
    #[derive(Default)]
    struct Tally {
        up_sent: [Vec<u8>; 2],
        up_recv: [Vec<u8>; 2],
        down_sent: [Vec<u8>; 2],
        down_recv: [Vec<u8>; 2],
        /// Frames sent and received per circuit, up and down.
        up_frames: [(usize, usize); 2],
        down_frames: [(usize, usize); 2],
        /// Send credit of each circuit's dialer and host (with credit).
        dialer_credit: [i64; 2],
        host_credit: [i64; 2],
        /// Received by the host / the dialer and not yet granted back.
        up_unread: [u32; 2],
        down_unread: [u32; 2],
    }

    /// Circuit of a dialer SDK.
    fn circuit_of(sdk: &Sdk) -> usize {
        if sdk.key == DIALER { 0 } else { 1 }
    }

    fn take(net: &mut Net, sdk: &mut Sdk, tally: &mut Tally, host: bool) {
        for frame in net.recv(sdk) {
            if let Ok(credit) = Credit::parse(&frame) {
                let bytes = i64::from(credit.bytes);
                match host {
                    true => tally.host_credit[(credit.conn_id - 100) as usize] += bytes,
                    false => tally.dialer_credit[circuit_of(sdk)] += bytes,
                }
                continue;
            }
            let Ok(data) = Data::parse(&frame) else {
                continue;
            };
            let len = data.payload.len() as u32;
            if host {
                let c = (data.conn_id - 100) as usize;
                tally.up_frames[c].1 += 1;
                tally.up_recv[c].extend_from_slice(data.payload);
                tally.up_unread[c] += len;
            } else {
                let c = circuit_of(sdk);
                tally.down_frames[c].1 += 1;
                tally.down_recv[c].extend_from_slice(data.payload);
                tally.down_unread[c] += len;
            }
        }
    }

    /// The application behind `sdk` reads everything: the SDK grants it back.
    fn app_reads(net: &mut Net, sdk: &mut Sdk, tally: &mut Tally, host: bool) {
        let grants: Vec<(u32, u32)> = match host {
            true => (0..2)
                .map(|c| (100 + c as u32, std::mem::take(&mut tally.up_unread[c])))
                .collect(),
            false => vec![(0, std::mem::take(&mut tally.down_unread[circuit_of(sdk)]))],
        };
        for (conn_id, bytes) in grants.into_iter().filter(|(_, b)| *b > 0) {
            net.send(sdk, |o, s| Credit { conn_id, bytes }.encode(s, o).unwrap());
        }
    }

    /// Runs `ops` on the two circuits; with `credit`, every SDK speaks per-stream credit
    /// with that receive window and behaves (sends only with credit).
    fn run(ops: Vec<Op>, window: usize, credit: Option<u32>) -> Result<(), TestCaseError> {
        let mut net = Net::sharded(window, 2);
        let mut host = net.connect_with(X_HOST, b"H", "fh", credit);
        net.bind(&mut host, 7, b"tok-bind", 0, Precedence::Default);
        let mut dialers = [
            net.connect_with(DIALER, b"D", "fd", credit),
            net.connect_with(ConnKey::on_shard(1, 9), b"D", "fd", credit),
        ];
        for (c, dialer) in dialers.iter_mut().enumerate() {
            net.dial(dialer, 0);
            net.accept(&mut host, 100 + c as u32);
            net.recv(dialer);
        }
        let mut tally = Tally {
            dialer_credit: [window as i64; 2],
            host_credit: [window as i64; 2],
            ..Tally::default()
        };
        let mut fill = 0u8;
        let mut bytes = |n: u16| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    fill = fill.wrapping_add(1);
                    fill
                })
                .collect()
        };
        // A window of charges (payload and each frame's cost), one frame past it, and
        // one credit batch of lag across shards.
        let cost = FRAME_COST as usize;
        let bound = window + 20_000 + cost + credit_batch(window);
        for op in ops {
            match op {
                Op::Up(c, n) => {
                    let key = dialers[c].key;
                    let allowed = credit.is_none() || tally.dialer_credit[c] > 0;
                    if net.at(key).wants_read(key) && allowed {
                        let payload = bytes(n);
                        net.data(&mut dialers[c], 0, &payload, false);
                        tally.up_sent[c].extend_from_slice(&payload);
                        tally.up_frames[c].0 += 1;
                        tally.dialer_credit[c] -= i64::from(n);
                    }
                }
                Op::Down(c, n) => {
                    let allowed = credit.is_none() || tally.host_credit[c] > 0;
                    if net.at(X_HOST).wants_read(X_HOST) && allowed {
                        let payload = bytes(n);
                        net.data(&mut host, 100 + c as u32, &payload, false);
                        tally.down_sent[c].extend_from_slice(&payload);
                        tally.down_frames[c].0 += 1;
                        tally.host_credit[c] -= i64::from(n);
                    }
                }
                Op::StallHost(s) => host.stalled = s,
                Op::StallDialer(d, s) => dialers[d].stalled = s,
                Op::Flush => {
                    take(&mut net, &mut host, &mut tally, true);
                    for dialer in &mut dialers {
                        take(&mut net, dialer, &mut tally, false);
                    }
                }
                Op::AppReads(0) => app_reads(&mut net, &mut host, &mut tally, true),
                Op::AppReads(d) => app_reads(&mut net, &mut dialers[d - 1], &mut tally, false),
            }
            for c in 0..2 {
                let (up, down) = (tally.up_frames[c], tally.down_frames[c]);
                let held_up =
                    tally.up_sent[c].len() - tally.up_recv[c].len() + (up.0 - up.1) * cost;
                let held_down =
                    tally.down_sent[c].len() - tally.down_recv[c].len() + (down.0 - down.1) * cost;
                prop_assert!(held_up <= bound, "circuit {c} holds {held_up} B up");
                prop_assert!(held_down <= bound, "circuit {c} holds {held_down} B down");
            }
        }
        host.stalled = false;
        for dialer in &mut dialers {
            dialer.stalled = false;
        }
        for _ in 0..16 {
            take(&mut net, &mut host, &mut tally, true);
            app_reads(&mut net, &mut host, &mut tally, true);
            for dialer in &mut dialers {
                take(&mut net, dialer, &mut tally, false);
                app_reads(&mut net, dialer, &mut tally, false);
            }
        }
        for c in 0..2 {
            prop_assert_eq!(&tally.up_recv[c], &tally.up_sent[c]);
            prop_assert_eq!(&tally.down_recv[c], &tally.down_sent[c]);
        }
        prop_assert!(net.fwd.wants_read(DIALER) && net.others[0].wants_read(X_HOST));
        if credit.is_some() {
            // Well-behaved credit speakers are held back by credit alone.
            let pauses = net.fwd.stats().pauses + net.others[0].stats().pauses;
            prop_assert_eq!(pauses, 0);
        }

        // Circuit 0 closed by its dialer, circuit 1 by the host.
        net.close(&mut dialers[0], 0);
        net.close(&mut host, 101);
        let to_host = net.recv(&mut host);
        let closed = |frames: &[Frame], id| {
            frames
                .iter()
                .any(|f| StateClosed::parse(f).is_ok_and(|c| c.conn_id == id))
        };
        prop_assert!(closed(&to_host, 100));
        prop_assert!(closed(&net.recv(&mut dialers[1]), 0));
        prop_assert!(!net.fwd.has_circuits() && !net.others[0].has_circuits());
        // Nothing is left on any identity's account.
        let held = net.fwd.stats().held_bytes + net.others[0].stats().held_bytes;
        prop_assert_eq!(held, 0);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the interleaving of sends, stalls and writes, on a circuit across
        /// shards and one within a shard (OpenZiti SDKs, no credit): every byte arrives
        /// once and in order, what the router holds for a stalled reader (payload and
        /// each frame's cost) stays within the window (plus one frame and one credit
        /// batch of lag), and closing leaves no circuit behind.
        #[test]
        fn every_byte_arrives_in_order_within_the_window(
            ops in vec(op(), 1..80),
            window in 1024usize..65_536,
        ) {
            run(ops, window, None)?;
        }

        /// The same with SDKs that speak per-stream credit, whose applications read
        /// when they like: the same guarantees, and no connection is ever paused.
        #[test]
        fn with_per_stream_credit_no_connection_is_paused(
            ops in vec(op(), 1..80),
            window in 1024usize..65_536,
            sdk_window in 1024u32..65_536,
        ) {
            run(ops, window, Some(sdk_window))?;
        }
    }
}

// ---- per-stream credit (Weft SDKs) ----

/// Credit granted to `conn_id` in `frames`.
fn granted(frames: &[Frame], conn_id: u32) -> u64 {
    frames
        .iter()
        .filter_map(|f| Credit::parse(f).ok())
        .filter(|c| c.conn_id == conn_id)
        .map(|c| u64::from(c.bytes))
        .sum()
}

/// Payload received on `conn_id` in `frames`.
fn payload_on(frames: &[Frame], conn_id: u32) -> Vec<u8> {
    frames
        .iter()
        .filter_map(|f| Data::parse(f).ok())
        .filter(|d| d.conn_id == conn_id)
        .flat_map(|d| d.payload.to_vec())
        .collect()
}

#[test]
fn a_stalled_stream_does_not_block_the_others_on_its_connection() {
    const WINDOW: usize = 64 * 1024;
    const HOST_WINDOW: u32 = 16 * 1024;
    let mut net = Net::new(WINDOW);
    let mut host = net.connect_with(HOST, b"H", "fh", Some(HOST_WINDOW));
    net.bind(&mut host, 7, b"tok-bind", 0, Precedence::Default);
    let mut dialer = net.connect_with(DIALER, b"D", "fd", Some(1 << 20));
    for (conn_id, child) in [(0, 100), (1, 101)] {
        net.dial(&mut dialer, conn_id);
        net.accept(&mut host, child);
        net.recv(&mut dialer);
    }

    // Stream 0's reader (the host application) reads nothing: only its first 16 KiB
    // (the host's window) reach the host; the rest waits in the router.
    let chunk: Vec<u8> = (0..16 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..4 {
        net.data(&mut dialer, 0, &chunk, false);
    }
    let frames = net.recv(&mut host);
    assert_eq!(payload_on(&frames, 100).len(), 16 * 1024);
    assert!(
        net.fwd.wants_read(DIALER),
        "the dialer's connection is not paused"
    );
    // What left the router is granted back to the dialer, no more.
    let frames = net.recv(&mut dialer);
    assert_eq!(granted(&frames, 0), 16 * 1024);

    // Stream 1 on the same connections flows meanwhile.
    net.data(&mut dialer, 1, b"still moving", false);
    let frames = net.recv(&mut host);
    assert_eq!(payload_on(&frames, 101), b"still moving");

    // The host application reads stream 0: it grants credit and the rest arrives, in
    // order, and is granted back to the dialer.
    net.send(&mut host, |o, s| {
        Credit {
            conn_id: 100,
            bytes: 48 * 1024,
        }
        .encode(s, o)
        .unwrap()
    });
    let frames = net.recv(&mut host);
    assert_eq!(payload_on(&frames, 100).len(), 48 * 1024);
    let frames = net.recv(&mut dialer);
    assert_eq!(granted(&frames, 0), 48 * 1024);
    assert_eq!(net.fwd.stats().pauses, 0);
}

#[test]
fn a_credit_speaker_that_ignores_its_credit_is_paused_beyond_window_and_frame() {
    const WINDOW: usize = 16 * 1024;
    let mut net = Net::new(WINDOW);
    let mut host = net.connect_with(HOST, b"H", "fh", Some(1024));
    net.bind(&mut host, 7, b"tok-bind", 0, Precedence::Default);
    let mut dialer = net.connect_with(DIALER, b"D", "fd", Some(1 << 20));
    net.dial(&mut dialer, 0);
    net.accept(&mut host, 100);
    net.recv(&mut dialer);
    // Within two windows (one of payload, one of frame costs) and one largest frame,
    // charged: not paused.
    let max_frame = Limits::DEFAULT.max_body_len as usize;
    let cost = FRAME_COST as usize;
    net.data(&mut dialer, 0, &vec![7u8; 2 * WINDOW - 2 * cost], false);
    net.data(&mut dialer, 0, &vec![7u8; max_frame], false);
    assert!(net.fwd.wants_read(DIALER));
    net.data(&mut dialer, 0, b"one frame too many", false);
    assert!(
        !net.fwd.wants_read(DIALER),
        "paused beyond two windows and a frame"
    );
}

#[test]
fn an_identity_past_its_budget_is_not_read_until_it_drains_and_others_are() {
    const WINDOW: usize = 64 * 1024;
    const CIRCUITS: u32 = 8;
    let config = ForwardConfig {
        window: WINDOW,
        identity_budget: 4 * WINDOW,
        ..ForwardConfig::default()
    };
    let mut net = Net::configured(config, 1);
    let mut host = net.connect(HOST, b"H", "fh");
    net.bind(&mut host, 7, b"tok-bind", 0, Precedence::Default);
    let mut dialer = net.connect(DIALER, b"D", "fd");
    for c in 0..CIRCUITS {
        net.dial(&mut dialer, c);
        net.accept(&mut host, 100 + c);
    }
    net.recv(&mut dialer);
    // The host stops reading; the dialer fills each circuit to below its window.
    host.stalled = true;
    let each = WINDOW - 16 * 1024;
    let mut sent = 0;
    while sent < CIRCUITS && net.fwd.wants_read(DIALER) {
        net.data(&mut dialer, sent, &vec![1; each], false);
        sent += 1;
    }
    // Past four windows held for one identity (six shares of 48.5 KiB): its
    // connection is not read, though no window is full.
    assert_eq!(sent, 6, "paused after the sixth circuit's share");
    let stats = net.fwd.stats();
    assert_eq!((stats.identity_budget_pauses, stats.pauses), (1, 0));
    assert_eq!(stats.held_bytes as usize, 6 * (each + FRAME_COST as usize));
    // Another identity's connection is read.
    assert!(net.fwd.wants_read(HOST));
    // The host reads: the account drains and the dialer is read again.
    host.stalled = false;
    net.recv(&mut host);
    assert!(net.fwd.wants_read(DIALER));
    assert_eq!(net.fwd.stats().held_bytes, 0);
}

#[test]
fn a_connection_that_goes_takes_what_it_held_off_its_identity() {
    let mut net = Net::new(64 * 1024);
    let mut host = net.connect(HOST, b"H", "fh");
    net.bind(&mut host, 7, b"tok-bind", 0, Precedence::Default);
    let mut dialer = net.connect(DIALER, b"D", "fd");
    net.dial(&mut dialer, 0);
    net.accept(&mut host, 100);
    net.recv(&mut dialer);
    host.stalled = true;
    net.data(&mut dialer, 0, &[1; 1000], false);
    assert_eq!(net.fwd.stats().held_bytes, 1000 + FRAME_COST);
    net.fwd.conn_lost(net.now, DIALER);
    assert_eq!(net.fwd.stats().held_bytes, 0);
}

#[test]
fn tiny_frames_pause_their_source_long_before_a_window_of_payload() {
    const WINDOW: usize = 64 * 1024;
    let cost = FRAME_COST as usize;
    for credit in [None, Some(1 << 20)] {
        let mut net = Net::new(WINDOW);
        let mut host = net.connect_with(HOST, b"H", "fh", Some(1024));
        net.bind(&mut host, 7, b"tok-bind", 0, Precedence::Default);
        let mut dialer = net.connect_with(DIALER, b"D", "fd", credit);
        net.dial(&mut dialer, 0);
        net.accept(&mut host, 100);
        net.recv(&mut dialer);
        // The host's SDK grants 1 KiB and reads nothing more: the router holds what
        // comes, one byte a frame, charged the frame's cost each.
        let limit = match credit {
            None => WINDOW,
            Some(_) => 2 * WINDOW + Limits::DEFAULT.max_body_len as usize,
        };
        let frames = limit / (1 + cost) + 1;
        for i in 0..frames {
            assert!(net.fwd.wants_read(DIALER), "paused after {i} frames");
            net.data(&mut dialer, 0, b"x", false);
        }
        assert!(
            !net.fwd.wants_read(DIALER),
            "{credit:?}: paused after {frames} frames ({frames} payload bytes)"
        );
    }
}

#[test]
fn credit_frames_from_an_sdk_that_did_not_negotiate_are_ignored() {
    let (mut net, mut dialer, mut host) = Net::established(1 << 20);
    // The host never offered credit: a Credit frame changes nothing, data still flows
    // to it without waiting.
    net.send(&mut host, |o, s| {
        Credit {
            conn_id: 100,
            bytes: 1,
        }
        .encode(s, o)
        .unwrap()
    });
    net.data(&mut dialer, 0, &[1; 4096], false);
    assert_eq!(payload_on(&net.recv(&mut host), 100).len(), 4096);
    assert_eq!(
        granted(&net.recv(&mut dialer), 0),
        0,
        "no credit to a C SDK"
    );
}

// ---- a clean close comes after the data (no silent truncation) ----

mod clean_close {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// What the dialer's SDK received on conn 0, in order.
    #[derive(Debug, Default)]
    struct Received {
        payload: Vec<u8>,
        /// Index in `events` of the FIN and of the StateClosed.
        fin_at: Option<usize>,
        closed_at: Option<(usize, Vec<u8>)>,
        events: usize,
    }

    impl Received {
        fn take(&mut self, frames: &[Frame]) {
            for frame in frames {
                if let Ok(data) = Data::parse(frame) {
                    assert_eq!(data.conn_id, 0);
                    assert!(self.closed_at.is_none(), "Data after StateClosed");
                    self.payload.extend_from_slice(data.payload);
                    if data.is_fin() {
                        self.fin_at = Some(self.events);
                    }
                } else if let Ok(closed) = StateClosed::parse(frame) {
                    assert!(self.closed_at.is_none(), "two StateClosed");
                    self.closed_at = Some((self.events, closed.reason.to_vec()));
                } else {
                    continue;
                }
                self.events += 1;
            }
        }
    }

    /// A host writes `chunks` (within its credit), optionally half-closes, and closes
    /// at once; the dialer (per-stream credit, receive window `sdk_window`) reads slowly,
    /// granting `reads` bytes at a time. The dialer gets every byte in order, the FIN,
    /// and only then the StateClosed, which reads as a clean close.
    fn run(
        chunks: &[usize],
        sdk_window: u32,
        across: bool,
        host_fin: bool,
        reads: &[u32],
    ) -> Result<(), TestCaseError> {
        let mut net = Net::sharded(1 << 20, if across { 2 } else { 1 });
        let host_key = if across { X_HOST } else { HOST };
        let mut host = net.connect_with(host_key, b"H", "fh", Some(1 << 20));
        net.bind(&mut host, 7, b"tok-bind", 0, Precedence::Default);
        let mut dialer = net.connect_with(DIALER, b"D", "fd", Some(sdk_window));
        net.dial(&mut dialer, 0);
        net.accept(&mut host, 100);
        net.recv(&mut dialer);

        let mut sent = Vec::new();
        for (i, len) in chunks.iter().enumerate() {
            let chunk: Vec<u8> = (0..*len).map(|b| (b + i) as u8).collect();
            net.data(&mut host, 100, &chunk, false);
            sent.extend_from_slice(&chunk);
        }
        if host_fin {
            net.data(&mut host, 100, b"", true);
        }
        net.close(&mut host, 100);

        let mut got = Received::default();
        let mut unread = 0u64;
        for step in 0..100_000 {
            let before = got.payload.len();
            got.take(&net.recv(&mut dialer));
            unread += (got.payload.len() - before) as u64;
            if got.closed_at.is_some() {
                break;
            }
            prop_assert!(step < 99_999, "no close after {} bytes", got.payload.len());
            // The application reads a little of what arrived; its SDK grants that back.
            let bytes = u64::from(reads[step % reads.len()]).min(unread);
            if bytes > 0 {
                unread -= bytes;
                let bytes = bytes as u32;
                net.send(&mut dialer, |o, s| {
                    Credit { conn_id: 0, bytes }.encode(s, o).unwrap()
                });
            }
        }
        prop_assert!(
            got.payload == sent,
            "{} of {} bytes",
            got.payload.len(),
            sent.len()
        );
        let (closed_at, reason) = got.closed_at.clone().unwrap_or_default();
        prop_assert_eq!(reason, b"closed by peer".to_vec());
        prop_assert_eq!(closed_at + 1, got.events, "StateClosed comes last");
        if host_fin {
            prop_assert_eq!(got.fin_at, Some(closed_at - 1), "the FIN right before it");
        }
        prop_assert!(!net.fwd.has_circuits());
        // The conn id is free again: the dialer can dial anew on it.
        net.dial(&mut dialer, 0);
        net.accept(&mut host, 101);
        let frames = net.recv(&mut dialer);
        prop_assert!(StateConnected::parse(&frames[0]).is_ok(), "{:?}", frames);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Thousands of interleavings of a slow reader and a host that closes right
        /// after writing (on one shard and across two): nothing written before the close
        /// is lost, and the close never overtakes the data.
        #[test]
        fn everything_written_before_a_close_is_delivered_before_it(
            chunks in vec(1usize..40_000, 1..10),
            sdk_window in 1024u32..65_536,
            across in any::<bool>(),
            host_fin in any::<bool>(),
            reads in vec(1u32..70_000, 1..16),
        ) {
            run(&chunks, sdk_window, across, host_fin, &reads)?;
        }
    }

    /// What the dialer still sends on a conn whose far side closed (it has not heard
    /// yet) is dropped and granted back, so its writer never waits on the reader; and
    /// its own StateClosed then frees the conn id without a word back.
    #[test]
    fn writes_to_a_finishing_conn_are_granted_back_and_its_close_is_quiet() {
        const SDK_WINDOW: u32 = 16 * 1024;
        let mut net = Net::new(1 << 20);
        let mut host = net.connect_with(HOST, b"H", "fh", Some(1 << 20));
        net.bind(&mut host, 7, b"tok-bind", 0, Precedence::Default);
        let mut dialer = net.connect_with(DIALER, b"D", "fd", Some(SDK_WINDOW));
        net.dial(&mut dialer, 0);
        net.accept(&mut host, 100);
        net.recv(&mut dialer);
        for _ in 0..4 {
            net.data(&mut host, 100, &[7; 10_000], false);
        }
        net.close(&mut host, 100);
        let frames = net.recv(&mut dialer);
        // A frame may start while credit is left: two of the four fit the window.
        assert_eq!(payload_on(&frames, 0).len(), 20_000);
        assert!(!frames.iter().any(|f| StateClosed::parse(f).is_ok()));

        // 1 MiB (the router's stream window) of writes: all but less than one grant
        // batch comes back.
        let batch = (1 << 20) / 8;
        for _ in 0..16 {
            net.data(&mut dialer, 0, &[1; 64 * 1024], false);
        }
        let frames = net.recv(&mut dialer);
        assert!(
            granted(&frames, 0) > (1 << 20) - batch,
            "{}",
            granted(&frames, 0)
        );
        assert!(
            net.recv(&mut host).is_empty(),
            "nothing reaches the gone host"
        );

        net.close(&mut dialer, 0);
        assert!(net.recv(&mut dialer).is_empty());
        net.dial(&mut dialer, 0);
        net.accept(&mut host, 101);
        let frames = net.recv(&mut dialer);
        assert!(StateConnected::parse(&frames[0]).is_ok(), "{frames:?}");
    }
}

/// A StateClosed with a reason from an SDK (a Weft SDK's abort) reaches the far side
/// as "peer aborted", which Weft SDKs read as an error; an empty one (OpenZiti SDKs,
/// a clean close) as "closed by peer".
#[test]
fn an_sdk_close_with_a_reason_is_an_abort_for_the_far_side() {
    for (reason, far) in [
        (&b"tunnel: reset"[..], &b"peer aborted"[..]),
        (b"", b"closed by peer"),
    ] {
        let (mut net, mut dialer, mut host) = Net::established(1 << 20);
        net.send(&mut host, |o, s| {
            StateClosed {
                conn_id: 100,
                seq: 3,
                reply_for: None,
                reason,
            }
            .encode(s, o)
            .unwrap()
        });
        let frames = net.recv(&mut dialer);
        let closed = StateClosed::parse(&frames[0]).unwrap();
        assert_eq!((closed.conn_id, closed.reason), (0, far));
        assert!(!net.fwd.has_circuits());
    }
}

/// An API session holds at most `max_conns_per_api_session` edge connections on a
/// shard: a further hello is answered, then its connection closed; once one of them
/// goes, a new one is accepted.
#[test]
fn an_api_session_holds_a_bounded_number_of_connections() {
    let mut net = Net::new(1 << 20);
    net.fwd.config.max_conns_per_api_session = 2;
    for key in [ConnKey(11), ConnKey(12)] {
        net.connect(key, b"D", "fd");
        assert!(net.fwd.poll_close().is_none());
    }
    net.connect(ConnKey(13), b"D", "fd");
    assert_eq!(
        net.fwd.poll_close(),
        Some((ConnKey(13), CloseReason::TooManyConnections))
    );
    net.fwd.remove_conn(net.now, ConnKey(13));
    assert_eq!(net.fwd.stats().refused_per_api_session, 1);
    // Another API session is not affected.
    net.connect(ConnKey(14), b"H", "fh");
    assert!(net.fwd.poll_close().is_none());
    // One of the two goes: a new one fits again.
    net.fwd.conn_lost(net.now, ConnKey(11));
    net.connect(ConnKey(15), b"D", "fd");
    assert!(net.fwd.poll_close().is_none());
}
