//! State-machine tests on bytes: frames in as the C SDK writes them, frames out as it
//! must receive them.
#![allow(clippy::disallowed_methods)] // tests may start their simulated clock

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use weft_wire::control::pb;
use weft_wire::edge::*;
use weft_wire::{ContentType, Decoded, Decoder, Frame, HeaderId, Limits};

use weft_testkit::state;

use super::*;
use crate::sessions::{HelloRejection, Removed, SessionTable};

const FP: &str = "aa11";
const PK_DIALER: [u8; 32] = [1; 32];
const PK_HOST: [u8; 32] = [2; 32];

fn sessions() -> SessionTable {
    let mut t = SessionTable::new("");
    let api = |id: &str, token: &str| state::api_session(id, token, &format!("identity-{id}"), FP);
    let session = |id: &str, api: &str, kind: pb::SessionType| {
        state::session(id, &format!("tok-{id}"), api, "svc-1", kind)
    };
    t.apply_sync(state::sync(
        "",
        1,
        vec![api("api-1", "API-TOKEN"), api("api-2", "OTHER")],
        vec![
            session("dial-1", "api-1", pb::SessionType::Dial),
            session("bind-1", "api-1", pb::SessionType::Bind),
            session("dial-2", "api-2", pb::SessionType::Dial),
        ],
    ));
    t
}

struct Harness {
    conn: EdgeConnection,
    sessions: SessionTable,
    now: Instant,
    sdk_seq: i32,
}

impl Harness {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            conn: EdgeConnection::new(EdgeConfig::default(), now, Some(FP.into())),
            sessions: sessions(),
            now,
            sdk_seq: 0,
        }
    }

    /// Sends what `encode` writes with the SDK's next channel sequence; returns it.
    fn send(&mut self, encode: impl FnOnce(&mut BytesMut, i32)) -> i32 {
        let seq = self.sdk_seq;
        self.sdk_seq += 1;
        let mut out = BytesMut::new();
        encode(&mut out, seq);
        self.conn
            .handle_input(&out, &self.sessions, self.now, 1_000);
        seq
    }

    fn hello(&mut self, token: &[u8]) {
        self.send(|o, s| {
            Hello {
                session_token: token,
                client_info: b"ziti-sdk-c[0]@test",
            }
            .encode(s, o)
            .unwrap()
        });
    }

    fn open() -> Self {
        let mut h = Self::new();
        h.hello(b"API-TOKEN");
        assert_eq!(h.frames().len(), 1);
        assert!(matches!(h.events()[..], [EdgeEvent::Authenticated { .. }]));
        h
    }

    /// Everything the router wrote, decoded.
    fn frames(&mut self) -> Vec<Frame> {
        let mut d = Decoder::new(Limits::DEFAULT);
        let mut out = Vec::new();
        while let Some(t) = self.conn.poll_transmit() {
            d.extend_from_slice(&t.head);
            d.extend_from_slice(&t.payload);
            let Ok(Decoded::Frame(f)) = d.decode() else {
                panic!("transmit is not one frame")
            };
            assert_eq!(d.buffered(), 0);
            out.push(f);
        }
        out
    }

    fn events(&mut self) -> Vec<EdgeEvent> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }

    fn connect(&mut self, conn_id: u32, token: &[u8], key: Option<&[u8]>) -> i32 {
        self.send(|o, s| {
            Connect {
                conn_id,
                seq: 0,
                caller_id: Some(b"api-1"),
                public_key: key,
                terminator_identity: None,
                app_data: Some(b"{\"k\":1}"),
                stickiness_token: None,
                session_token: token,
            }
            .encode(s, o)
            .unwrap()
        })
    }

    fn bind(&mut self, conn_id: u32) -> i32 {
        self.send(|o, s| {
            Bind {
                conn_id,
                seq: 0,
                caller_id: Some(b"api-1"),
                public_key: Some(&PK_HOST),
                terminator_identity: None,
                cost: Some(10),
                precedence: Some(Precedence::Required),
                session_token: b"tok-bind-1",
            }
            .encode(s, o)
            .unwrap()
        })
    }
}

#[test]
fn hello_is_answered_and_authenticates() {
    let mut h = Harness::new();
    h.hello(b"API-TOKEN");
    let frames = h.frames();
    let result = HelloResult::parse(&frames[0]).unwrap();
    assert!(result.success);
    assert_eq!(result.reply_for, 0);
    assert_eq!(frames[0].sequence(), HELLO_RESULT_SEQUENCE);
    assert!(result.version.unwrap().starts_with(b"v"));
    assert_eq!(
        h.events(),
        vec![EdgeEvent::Authenticated {
            api_session_id: "api-1".into(),
            identity_id: "identity-api-1".into(),
        }]
    );
    assert_eq!(h.conn.api_session_id(), Some("api-1"));
    assert_eq!(h.conn.poll_timeout(), None);
}

#[test]
fn refused_hello_is_acknowledged_then_closed() {
    let mut h = Harness::new();
    h.hello(b"NOT-A-TOKEN");
    assert!(HelloResult::parse(&h.frames()[0]).unwrap().success);
    // An unknown token waits for the controller's update, past the hello deadline...
    let wait_until = h.now + EdgeConfig::default().session_wait;
    h.conn
        .handle_timeout(&h.sessions, h.now + Duration::from_secs(1));
    assert!(h.events().is_empty());
    assert_eq!(h.conn.poll_timeout(), Some(wait_until));
    // ...and is refused when the wait is over.
    h.conn.handle_timeout(&h.sessions, wait_until);
    assert!(h.frames().is_empty(), "the hello result is sent once");
    assert_eq!(
        h.events(),
        vec![EdgeEvent::Close(CloseReason::HelloRejected(
            HelloRejection::UnknownToken
        ))]
    );
    assert!(h.conn.is_closed());

    let now = Instant::now();
    let mut wrong_cert = EdgeConnection::new(EdgeConfig::default(), now, Some("bb22".into()));
    let mut out = BytesMut::new();
    Hello {
        session_token: b"API-TOKEN",
        client_info: b"",
    }
    .encode(0, &mut out)
    .unwrap();
    wrong_cert.handle_input(&out, &sessions(), now, 0);
    assert!(wrong_cert.poll_transmit().is_some());
    // A certificate the API session does not hold yet may come with the controller's
    // next update (an API session certificate just issued): held like an unknown
    // token, refused when the wait is over.
    assert_eq!(wrong_cert.poll_event(), None);
    let wait_until = wrong_cert.poll_timeout().unwrap();
    wrong_cert.handle_timeout(&sessions(), wait_until);
    assert_eq!(
        wrong_cert.poll_event(),
        Some(EdgeEvent::Close(CloseReason::HelloRejected(
            HelloRejection::CertificateMismatch
        )))
    );
}

#[test]
fn a_held_hello_is_accepted_once_the_update_binds_its_certificate() {
    // The client presents "bb22" (say, an API session certificate just issued); the
    // router's table does not bind it to API-TOKEN yet.
    let now = Instant::now();
    let mut conn = EdgeConnection::new(EdgeConfig::default(), now, Some("bb22".into()));
    let mut out = BytesMut::new();
    Hello {
        session_token: b"API-TOKEN",
        client_info: b"",
    }
    .encode(0, &mut out)
    .unwrap();
    conn.handle_input(&out, &sessions(), now, 0);
    assert!(conn.is_holding());
    assert_eq!(conn.poll_event(), None);
    // The controller's update binds it: the held hello authenticates.
    let mut t = SessionTable::new("");
    t.apply_sync(state::sync(
        "",
        1,
        vec![state::api_session(
            "api-1",
            "API-TOKEN",
            "identity-api-1",
            "bb22",
        )],
        vec![],
    ));
    conn.handle_received(&t, now + Duration::from_millis(50), 0);
    assert_eq!(
        conn.poll_event(),
        Some(EdgeEvent::Authenticated {
            api_session_id: "api-1".into(),
            identity_id: "identity-api-1".into(),
        })
    );
}

#[test]
fn first_frame_must_be_a_hello_within_the_deadline() {
    let mut h = Harness::new();
    h.send(|o, s| LatencyProbe { probe_time: None }.encode(s, o).unwrap());
    assert!(h.frames().is_empty());
    assert_eq!(
        h.events(),
        vec![EdgeEvent::Close(CloseReason::ExpectedHello)]
    );

    let mut h = Harness::new();
    let deadline = h.conn.poll_timeout().unwrap();
    assert_eq!(deadline, h.now + Duration::from_secs(1));
    h.conn
        .handle_timeout(&h.sessions, deadline - Duration::from_millis(1));
    assert!(h.events().is_empty());
    h.conn.handle_timeout(&h.sessions, deadline);
    assert_eq!(
        h.events(),
        vec![EdgeEvent::Close(CloseReason::HelloTimeout)]
    );
}

#[test]
fn oversized_hello_closes_before_buffering() {
    let mut h = Harness::new();
    let prefix = weft_wire::Prefix {
        content_type: ContentType::HELLO,
        sequence: 0,
        headers_len: 0,
        body_len: 1 << 30,
    }
    .to_bytes();
    h.conn.handle_input(&prefix, &h.sessions, h.now, 0);
    assert!(matches!(
        h.events()[..],
        [EdgeEvent::Close(CloseReason::Malformed(_))]
    ));
}

#[test]
fn latency_probes_are_answered_with_the_time_echoed() {
    let mut h = Harness::open();
    let seq = h.send(|o, s| {
        LatencyProbe {
            probe_time: Some(&1000u64.to_le_bytes()),
        }
        .encode(s, o)
        .unwrap()
    });
    let frames = h.frames();
    let reply = LatencyReply::parse(&frames[0]).unwrap();
    assert_eq!(reply.reply_for, seq);
    assert_eq!(reply.probe_time, Some(&1000u64.to_le_bytes()[..]));
    assert!(
        frames[0]
            .header(HeaderId::RESULT_SUCCESS)
            .unwrap()
            .as_bool()
    );
}

#[test]
fn dial_success_sends_the_host_key_only_to_an_encrypting_dialer() {
    let mut h = Harness::open();
    let seq = h.connect(0, b"tok-dial-1", Some(&PK_DIALER));
    let events = h.events();
    let [
        EdgeEvent::Dial {
            conn_id: 0,
            session_id,
            service_id,
            caller_id,
            public_key,
            app_data,
            ..
        },
    ] = &events[..]
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        (session_id.as_str(), service_id.as_str()),
        ("dial-1", "svc-1")
    );
    assert_eq!(&caller_id[..], b"api-1");
    assert_eq!(public_key.as_deref(), Some(&PK_DIALER[..]));
    assert_eq!(app_data.as_deref(), Some(&b"{\"k\":1}"[..]));
    assert!(h.frames().is_empty(), "no answer before the circuit exists");

    h.conn.connect_succeeded(0, Some(&PK_HOST), None);
    let frames = h.frames();
    let reply = StateConnected::parse(&frames[0]).unwrap();
    assert_eq!(reply.reply_for, Some(seq));
    assert_eq!(reply.public_key, Some(&PK_HOST[..]));

    // A plaintext dialer never gets a key, even if the host has one.
    let seq = h.connect(1, b"tok-dial-1", None);
    h.events();
    h.conn.connect_succeeded(1, Some(&PK_HOST), None);
    let frames = h.frames();
    let reply = StateConnected::parse(&frames[0]).unwrap();
    assert_eq!((reply.reply_for, reply.public_key), (Some(seq), None));
}

#[test]
fn bad_sessions_get_exactly_invalid_session() {
    let mut h = Harness::open();
    for (conn_id, token) in [
        (0, &b"tok-nope"[..]),
        (1, b"tok-bind-1"),
        (2, b"tok-dial-2"),
    ] {
        let seq = h.connect(conn_id, token, None);
        if token == b"tok-nope" {
            // Unknown tokens wait for the controller first.
            assert!(h.frames().is_empty());
            let deadline = h.conn.poll_timeout().unwrap();
            h.conn.handle_timeout(&h.sessions, deadline);
        }
        let frames = h.frames();
        let closed = StateClosed::parse(&frames[0]).unwrap();
        assert_eq!(closed.reply_for, Some(seq));
        assert_eq!(closed.reason, INVALID_SESSION.as_bytes(), "token {token:?}");
    }
    assert!(h.events().is_empty());
    assert_eq!(h.conn.conn_count(), 0);
}

#[test]
fn connect_failure_and_conn_id_reuse_have_non_empty_reasons() {
    let mut h = Harness::open();
    let seq = h.connect(5, b"tok-dial-1", None);
    let again = h.connect(5, b"tok-dial-1", None);
    let frames = h.frames();
    let closed = StateClosed::parse(&frames[0]).unwrap();
    assert_eq!(
        (closed.reply_for, closed.reason),
        (Some(again), &b"conn id already in use"[..])
    );
    h.conn.connect_failed(5, "");
    let frames = h.frames();
    let closed = StateClosed::parse(&frames[0]).unwrap();
    assert_eq!(
        (closed.reply_for, closed.reason),
        (Some(seq), &b"closed"[..])
    );
}

#[test]
fn conn_cap_is_enforced() {
    let now = Instant::now();
    let config = EdgeConfig {
        max_conns: 2,
        ..EdgeConfig::default()
    };
    let mut h = Harness {
        conn: EdgeConnection::new(config, now, Some(FP.into())),
        ..Harness::new()
    };
    h.hello(b"API-TOKEN");
    h.frames();
    h.events();
    for id in 0..3 {
        h.connect(id, b"tok-dial-1", None);
    }
    assert_eq!(h.events().len(), 2);
    let frames = h.frames();
    assert!(
        StateClosed::parse(&frames[0])
            .unwrap()
            .reason
            .starts_with(b"too many")
    );
}

/// Bind, then a client arrives: Dial to the host, DialSuccess, data both ways.
#[test]
fn hosting_accepts_a_dial_and_carries_data() {
    let mut h = Harness::open();
    let bind_seq = h.bind(7);
    let events = h.events();
    assert!(matches!(
        &events[..],
        [EdgeEvent::Bind {
            conn_id: 7,
            cost: 10,
            precedence: Precedence::Required,
            public_key: Some(_),
            ..
        }]
    ));
    h.conn.bind_succeeded(7);
    let frames = h.frames();
    assert_eq!(
        StateConnected::parse(&frames[0]).unwrap().reply_for,
        Some(bind_seq)
    );

    let circuit = CircuitId(42);
    h.conn
        .dial_host(h.now, circuit, 7, b"alice", Some(&PK_DIALER), Some(b"{}"));
    let frames = h.frames();
    let dial = Dial::parse(&frames[0]).unwrap();
    assert_eq!((dial.conn_id, dial.caller_id), (7, &b"alice"[..]));
    assert_eq!(dial.public_key, Some(&PK_DIALER[..]));
    let dial_seq = frames[0].sequence();
    assert!(h.conn.poll_timeout().is_some());

    let ok_seq = h.send(|o, s| {
        DialSuccess {
            conn_id: 7,
            seq: 0,
            reply_for: dial_seq,
            new_conn_id: 8,
        }
        .encode(s, o)
        .unwrap()
    });
    let frames = h.frames();
    let connected = StateConnected::parse(&frames[0]).unwrap();
    assert_eq!((connected.conn_id, connected.reply_for), (7, Some(ok_seq)));
    assert_eq!(
        h.events(),
        vec![EdgeEvent::HostAccepted {
            circuit,
            conn_id: 8
        }]
    );
    assert_eq!(h.conn.poll_timeout(), None);

    // Host -> router data surfaces as an event sharing the frame's memory.
    h.send(|o, s| {
        Data {
            conn_id: 8,
            seq: 1,
            flags: 0,
            payload: b"from host",
        }
        .encode(s, o)
        .unwrap()
    });
    assert_eq!(
        h.events(),
        vec![EdgeEvent::Data {
            conn_id: 8,
            payload: Bytes::from_static(b"from host"),
            fin: false
        }]
    );
    // Router -> host data: own edge Seq from 1, FIN flag on the last.
    assert!(h.conn.send_data(8, Bytes::from_static(b"one"), false));
    assert!(h.conn.send_data(8, Bytes::new(), true));
    let frames = h.frames();
    let first = Data::parse(&frames[0]).unwrap();
    let fin = Data::parse(&frames[1]).unwrap();
    assert_eq!(
        (first.seq, first.payload, first.is_fin()),
        (1, &b"one"[..], false)
    );
    assert_eq!((fin.seq, fin.is_fin()), (2, true));
    assert!(!h.conn.send_data(99, Bytes::from_static(b"x"), false));
}

#[test]
fn host_refusal_and_silence_fail_the_circuit() {
    let mut h = Harness::open();
    h.bind(7);
    h.conn.bind_succeeded(7);
    h.frames();
    h.events();
    h.conn.dial_host(h.now, CircuitId(1), 7, b"", None, None);
    h.conn.dial_host(h.now, CircuitId(2), 7, b"", None, None);
    h.conn.dial_host(h.now, CircuitId(3), 99, b"", None, None);
    let frames = h.frames();
    let first_dial = frames[0].sequence();
    assert_eq!(
        h.events(),
        vec![EdgeEvent::HostRefused {
            circuit: CircuitId(3),
            reason: "listener is gone".into()
        }]
    );
    h.send(|o, s| {
        DialFailed {
            conn_id: 7,
            seq: 0,
            reply_for: first_dial,
            reason: b"crypto failure",
        }
        .encode(s, o)
        .unwrap()
    });
    assert_eq!(
        h.events(),
        vec![EdgeEvent::HostRefused {
            circuit: CircuitId(1),
            reason: "crypto failure".into()
        }]
    );
    let deadline = h.conn.poll_timeout().unwrap();
    assert_eq!(deadline, h.now + Duration::from_secs(5));
    h.conn.handle_timeout(&h.sessions, deadline);
    assert!(matches!(
        &h.events()[..],
        [EdgeEvent::HostRefused {
            circuit: CircuitId(2),
            ..
        }]
    ));
}

#[test]
fn sdk_close_on_a_listener_unbinds_and_on_a_conn_closes() {
    let mut h = Harness::open();
    h.bind(7);
    h.conn.bind_succeeded(7);
    h.connect(1, b"tok-dial-1", None);
    h.conn.connect_succeeded(1, None, None);
    h.frames();
    h.events();
    h.send(|o, s| {
        StateClosed {
            conn_id: 7,
            seq: 3,
            reply_for: None,
            reason: b"",
        }
        .encode(s, o)
        .unwrap()
    });
    h.send(|o, s| {
        StateClosed {
            conn_id: 1,
            seq: 4,
            reply_for: None,
            reason: b"",
        }
        .encode(s, o)
        .unwrap()
    });
    h.send(|o, s| {
        StateClosed {
            conn_id: 1,
            seq: 5,
            reply_for: None,
            reason: b"",
        }
        .encode(s, o)
        .unwrap()
    });
    assert_eq!(
        h.events(),
        vec![
            EdgeEvent::Unbound { conn_id: 7 },
            EdgeEvent::ConnClosed {
                conn_id: 1,
                cause: ConnEnd::Closed
            }
        ]
    );
    assert!(h.frames().is_empty(), "the router answers no StateClosed");
    assert_eq!(h.conn.conn_count(), 0);
}

#[test]
fn revoking_a_session_closes_what_used_it() {
    let mut h = Harness::open();
    h.bind(7);
    h.conn.bind_succeeded(7);
    h.connect(1, b"tok-dial-1", None);
    h.conn.connect_succeeded(1, None, None);
    h.frames();
    h.events();
    h.conn.revoke(&Removed {
        api_sessions: vec![],
        sessions: vec!["dial-1".into(), "bind-1".into()],
    });
    let frames = h.frames();
    let reasons: Vec<(u32, &[u8])> = frames
        .iter()
        .map(|f| StateClosed::parse(f).unwrap())
        .map(|c| (c.conn_id, c.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![(1, &b"session closed"[..]), (7, &b"session ended"[..])]
    );
    assert_eq!(
        h.events(),
        vec![
            EdgeEvent::ConnClosed {
                conn_id: 1,
                cause: ConnEnd::Revoked
            },
            EdgeEvent::Unbound { conn_id: 7 }
        ]
    );
    assert!(!h.conn.is_closed());
}

#[test]
fn revoking_the_api_session_closes_the_connection() {
    let mut h = Harness::open();
    h.connect(1, b"tok-dial-1", None);
    h.conn.connect_succeeded(1, None, None);
    h.frames();
    h.events();
    h.conn.revoke(&Removed {
        api_sessions: vec!["api-2".into()],
        sessions: vec![],
    });
    assert!(h.events().is_empty());
    h.conn.revoke(&Removed {
        api_sessions: vec!["api-1".into()],
        sessions: vec![],
    });
    assert_eq!(
        h.events(),
        vec![
            EdgeEvent::ConnClosed {
                conn_id: 1,
                cause: ConnEnd::Revoked
            },
            EdgeEvent::Close(CloseReason::ApiSessionRevoked)
        ]
    );
    // The SDK is told why before the connection goes: a revocation, not a lost router.
    let closed: Vec<_> = h
        .frames()
        .into_iter()
        .filter(|f| f.content_type() == ContentType::STATE_CLOSED)
        .map(|f| String::from_utf8_lossy(f.body()).into_owned())
        .collect();
    assert_eq!(closed, ["session closed"]);
    assert!(h.conn.is_closed());
}

#[test]
fn malformed_frames_close_the_connection() {
    let mut h = Harness::open();
    let mut out = BytesMut::new();
    weft_wire::FrameEncoder::new(&mut out, ContentType::CONNECT, 3)
        .finish_with_body(b"t")
        .unwrap();
    h.conn.handle_input(&out, &h.sessions, h.now, 0);
    assert!(matches!(
        h.events()[..],
        [EdgeEvent::Close(CloseReason::Malformed(_))]
    ));

    let mut h = Harness::open();
    h.conn.handle_input(
        &[
            0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        &h.sessions,
        h.now,
        0,
    );
    assert!(matches!(
        h.events()[..],
        [EdgeEvent::Close(CloseReason::Malformed(_))]
    ));
}

#[test]
fn data_for_unknown_or_unconnected_conns_is_dropped() {
    let mut h = Harness::open();
    h.connect(1, b"tok-dial-1", None);
    h.events();
    h.send(|o, s| {
        Data {
            conn_id: 1,
            seq: 1,
            flags: 0,
            payload: b"early",
        }
        .encode(s, o)
        .unwrap()
    });
    h.send(|o, s| {
        Data {
            conn_id: 9,
            seq: 1,
            flags: 0,
            payload: b"stray",
        }
        .encode(s, o)
        .unwrap()
    });
    assert!(h.events().is_empty());
    assert!(!h.conn.is_closed());
}

#[test]
fn frames_with_unknown_tokens_wait_for_the_session_and_keep_their_order() {
    let mut h = Harness::new();
    h.hello(b"LATE-API");
    assert_eq!(h.frames().len(), 1, "hello result");
    assert!(h.conn.is_holding());
    // The SDK goes on at once: a Connect with a session the router does not know yet,
    // then a latency probe. Nothing is answered while the hello waits.
    let connect = h.connect(7, b"tok-late", None);
    let probe = h.send(|o, s| LatencyProbe { probe_time: None }.encode(s, o).unwrap());
    assert!(h.frames().is_empty() && h.events().is_empty());

    // The controller's update arrives: first the API session, then the session.
    let late_api = state::api_session("api-late", "LATE-API", "identity-late", FP);
    let mut sync = state::sync("", 0, vec![late_api], vec![]);
    h.sessions.apply_sync(sync.clone());
    h.conn.handle_received(&h.sessions, h.now, 1_000);
    assert!(matches!(h.events()[..], [EdgeEvent::Authenticated { .. }]));
    assert!(h.conn.is_holding(), "the Connect now waits for its session");
    assert!(h.frames().is_empty());

    sync.sessions.push(state::session(
        "late",
        "tok-late",
        "api-late",
        "svc",
        pb::SessionType::Dial,
    ));
    let sync = state::grant_everything("", sync);
    h.sessions.apply_sync(sync);
    h.conn.handle_received(&h.sessions, h.now, 1_000);
    assert!(!h.conn.is_holding());
    assert!(matches!(
        h.events()[..],
        [EdgeEvent::Dial { conn_id: 7, .. }]
    ));
    let frames = h.frames();
    assert_eq!(frames.len(), 1, "the probe is answered after the Connect");
    assert_eq!(LatencyReply::parse(&frames[0]).unwrap().reply_for, probe);
    assert_ne!(connect, probe);
}

/// The C SDK sends DialSuccess when its app accepts, which may be after the router gave
/// up on the dial; it waits for the reply without a timeout, so a late DialSuccess must
/// be refused (StateClosed replying to it, a reason that is no prefix of "Invalid
/// Session") rather than ignored, or the host's accept hangs for good.
#[test]
fn a_dial_success_after_the_dial_timed_out_is_refused() {
    let mut h = Harness::open();
    h.bind(7);
    h.conn.bind_succeeded(7);
    h.frames();
    h.events();
    h.conn.dial_host(h.now, CircuitId(1), 7, b"", None, None);
    let dial_seq = h.frames()[0].sequence();
    let deadline = h.conn.poll_timeout().unwrap();
    h.conn.handle_timeout(&h.sessions, deadline);
    assert!(matches!(
        &h.events()[..],
        [EdgeEvent::HostRefused {
            circuit: CircuitId(1),
            ..
        }]
    ));
    let late = h.send(|o, s| {
        DialSuccess {
            conn_id: 7,
            seq: 0,
            reply_for: dial_seq,
            new_conn_id: 8,
        }
        .encode(s, o)
        .unwrap()
    });
    let frames = h.frames();
    assert_eq!(frames.len(), 1, "the late DialSuccess is answered");
    let closed = StateClosed::parse(&frames[0]).unwrap();
    assert_eq!((closed.conn_id, closed.reply_for), (7, Some(late)));
    assert!(!closed.reason.is_empty());
    assert!(!INVALID_SESSION.as_bytes().starts_with(closed.reason));
    assert_eq!(h.events(), vec![], "no circuit, no conn 8");
    assert!(!h.conn.send_data(8, Bytes::from_static(b"x"), false));
}
