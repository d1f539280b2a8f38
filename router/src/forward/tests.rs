//! Forwarding tests: two SDKs (a dialer and a host) on one shard, speaking bytes.

use std::time::Instant;

use bytes::BytesMut;
use weft_wire::control::pb;
use weft_wire::edge::*;
use weft_wire::{Decoded, Decoder, Frame, Limits};

use super::*;

const DIALER: ConnKey = ConnKey(1);
const HOST: ConnKey = ConnKey(2);
const HOST2: ConnKey = ConnKey(3);
const PK_D: [u8; 32] = [0xd; 32];
const PK_H: [u8; 32] = [0xe; 32];

fn sync() -> pb::StateSync {
    let api = |id: &str, token: &str, fp: &str| pb::ApiSession {
        id: id.into(),
        token: token.into(),
        identity_id: id.into(),
        identity_name: id.into(),
        cert_fingerprints: vec![fp.into()],
        expires_at_unix_ms: 0,
    };
    let session = |id: &str, api: &str, kind: pb::SessionType| pb::Session {
        id: id.into(),
        token: format!("tok-{id}"),
        api_session_id: api.into(),
        service_id: "svc".into(),
        r#type: kind as i32,
        identity_id: String::new(),
    };
    pb::StateSync {
        revision: 1,
        api_sessions: vec![
            api("api-d", "D", "fd"),
            api("api-h", "H", "fh"),
            api("api-h2", "H2", "fh2"),
        ],
        sessions: vec![
            session("dial", "api-d", pb::SessionType::Dial),
            session("bind", "api-h", pb::SessionType::Bind),
            session("bind2", "api-h2", pb::SessionType::Bind),
        ],
        ..Default::default()
    }
}

/// One SDK's view: its channel sequence and what the router wrote to it.
struct Sdk {
    key: ConnKey,
    seq: i32,
    inbox: Decoder,
    /// When set, transmits stay unwritten (a reader that does not read).
    stalled: bool,
}

struct Net {
    fwd: Forwarder,
    now: Instant,
}

impl Net {
    fn new(window: usize) -> Self {
        let now = Instant::now();
        let config = ForwardConfig {
            window,
            ..ForwardConfig::default()
        };
        let mut fwd = Forwarder::new(config, 0);
        fwd.apply_sync(now, sync());
        Self { fwd, now }
    }

    fn connect(&mut self, key: ConnKey, token: &[u8], fp: &str) -> Sdk {
        self.fwd.add_conn(self.now, key, vec![fp.into()]);
        let mut sdk = Sdk {
            key,
            seq: 0,
            inbox: Decoder::new(Limits::DEFAULT),
            stalled: false,
        };
        self.send(&mut sdk, |o, s| {
            Hello {
                session_token: token,
                client_info: b"test",
            }
            .encode(s, o)
            .unwrap()
        });
        let frames = self.recv(&mut sdk);
        assert!(HelloResult::parse(&frames[0]).unwrap().success);
        sdk
    }

    fn send(&mut self, sdk: &mut Sdk, encode: impl FnOnce(&mut BytesMut, i32)) -> i32 {
        let seq = sdk.seq;
        sdk.seq += 1;
        let mut out = BytesMut::new();
        encode(&mut out, seq);
        self.fwd.handle_input(self.now, sdk.key, &out, 0);
        seq
    }

    /// Writes (unless stalled) and decodes what the router queued for `sdk`.
    fn recv(&mut self, sdk: &mut Sdk) -> Vec<Frame> {
        while self.fwd.poll_ready().is_some() {}
        let mut frames = Vec::new();
        if sdk.stalled {
            return frames;
        }
        while let Some(t) = self.fwd.poll_transmit(sdk.key) {
            sdk.inbox.extend_from_slice(&t.head);
            sdk.inbox.extend_from_slice(&t.payload);
            self.fwd.handle_written(sdk.key, &t);
            while let Ok(Decoded::Frame(f)) = sdk.inbox.decode() {
                frames.push(f);
            }
        }
        frames
    }

    /// Binds `listener` on `host` and confirms the terminator as the controller would.
    fn bind(
        &mut self,
        host: &mut Sdk,
        listener: u32,
        token: &[u8],
        cost: u16,
        precedence: Precedence,
    ) {
        let seq = self.send(host, |o, s| {
            Bind {
                conn_id: listener,
                seq: 0,
                caller_id: Some(b"host"),
                public_key: Some(&PK_H),
                terminator_identity: None,
                cost: Some(cost),
                precedence: Some(precedence),
                session_token: token,
            }
            .encode(s, o)
            .unwrap()
        });
        let Some(ControlRequest::CreateTerminator {
            conn,
            listener: l,
            service_id,
            request,
        }) = self.fwd.poll_control()
        else {
            panic!("no terminator request");
        };
        assert_eq!((conn, l, service_id.as_str()), (host.key, listener, "svc"));
        assert_eq!(request.cost, u32::from(cost));
        assert_eq!(request.host_public_key, PK_H.to_vec());
        assert!(
            self.recv(host).is_empty(),
            "bound only once the controller confirms"
        );
        self.fwd
            .terminator_created(self.now, conn, listener, format!("t-{}-{listener}", conn.0));
        let frames = self.recv(host);
        assert_eq!(
            StateConnected::parse(&frames[0]).unwrap().reply_for,
            Some(seq)
        );
    }

    fn dial(&mut self, dialer: &mut Sdk, conn_id: u32) -> i32 {
        self.send(dialer, |o, s| {
            Connect {
                conn_id,
                seq: 0,
                caller_id: Some(b"dialer"),
                public_key: Some(&PK_D),
                terminator_identity: None,
                app_data: None,
                session_token: b"tok-dial",
            }
            .encode(s, o)
            .unwrap()
        })
    }

    /// The host accepts the Dial it was sent, as child `child`.
    fn accept(&mut self, host: &mut Sdk, child: u32) {
        let frames = self.recv(host);
        let dial = Dial::parse(&frames[0]).unwrap();
        assert_eq!(dial.public_key, Some(&PK_D[..]));
        assert_eq!(dial.caller_id, b"dialer");
        let dial_seq = frames[0].sequence();
        let listener = dial.conn_id;
        let ok = self.send(host, |o, s| {
            DialSuccess {
                conn_id: listener,
                seq: 0,
                reply_for: dial_seq,
                new_conn_id: child,
            }
            .encode(s, o)
            .unwrap()
        });
        let frames = self.recv(host);
        assert_eq!(
            StateConnected::parse(&frames[0]).unwrap().reply_for,
            Some(ok)
        );
    }

    fn data(&mut self, sdk: &mut Sdk, conn_id: u32, payload: &[u8], fin: bool) {
        self.send(sdk, |o, s| {
            Data {
                conn_id,
                seq: 1,
                flags: if fin { FLAG_FIN } else { 0 },
                payload,
            }
            .encode(s, o)
            .unwrap()
        });
    }

    /// A dialer and a host with one established circuit: dialer conn 0 <-> host child 100.
    fn established(window: usize) -> (Self, Sdk, Sdk) {
        let mut net = Self::new(window);
        let mut host = net.connect(HOST, b"H", "fh");
        net.bind(&mut host, 7, b"tok-bind", 0, Precedence::Default);
        let mut dialer = net.connect(DIALER, b"D", "fd");
        let seq = net.dial(&mut dialer, 0);
        net.accept(&mut host, 100);
        let frames = net.recv(&mut dialer);
        let connected = StateConnected::parse(&frames[0]).unwrap();
        assert_eq!(connected.reply_for, Some(seq));
        assert_eq!(connected.public_key, Some(&PK_H[..]));
        (net, dialer, host)
    }
}

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

    net.send(&mut dialer, |o, s| {
        StateClosed {
            conn_id: 0,
            seq: 3,
            reply_for: None,
            reason: b"",
        }
        .encode(s, o)
        .unwrap()
    });
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
    let frames = net.recv(&mut host);
    let dial_seq = frames[0].sequence();
    net.send(&mut host, |o, s| {
        DialFailed {
            conn_id: 7,
            seq: 0,
            reply_for: dial_seq,
            reason: b"crypto failure",
        }
        .encode(s, o)
        .unwrap()
    });
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
    let frames = net.recv(&mut dialer);
    assert_eq!(
        StateClosed::parse(&frames[0]).unwrap().reason,
        b"session closed"
    );
    let frames = net.recv(&mut host);
    let closed = StateClosed::parse(&frames[0]).unwrap();
    // The host is told its peer's session went, not that the peer closed normally.
    assert_eq!(
        (closed.conn_id, closed.reason),
        (100, &b"peer session closed"[..])
    );
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
    net.fwd.remove_conn(HOST);
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
    let (mut net, mut dialer, mut host) = Net::established(1000);
    host.stalled = true;
    net.data(&mut dialer, 0, &[1; 600], false);
    net.recv(&mut host);
    assert!(net.fwd.wants_read(DIALER));
    net.data(&mut dialer, 0, &[2; 600], false);
    assert!(!net.fwd.wants_read(DIALER), "window of 1000 exceeded");
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
    net.send(&mut host, |o, s| {
        StateClosed {
            conn_id: 7,
            seq: 1,
            reply_for: None,
            reason: b"",
        }
        .encode(s, o)
        .unwrap()
    });
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
    net.fwd.add_conn(net.now, DIALER, vec![]);
    let deadline = net.fwd.poll_timeout().unwrap();
    net.fwd.handle_timeout(deadline);
    assert_eq!(
        net.fwd.poll_close(),
        Some((DIALER, CloseReason::HelloTimeout))
    );
}
