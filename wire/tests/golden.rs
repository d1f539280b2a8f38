//! Golden vectors: hand-built bytes for every edge message the C SDK sends or must
//! receive (wire/testdata/*.hex). Each decodes to the expected message, and encoding that
//! message reproduces the bytes exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use weft_wire::edge::*;
use weft_wire::{ContentType, DecodeError, Decoded, Decoder, Frame, Limits};

const PK_DIALER: [u8; 32] = {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = i as u8 + 0x01;
        i += 1;
    }
    k
};
const PK_HOST: [u8; 32] = {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = i as u8 + 0x21;
        i += 1;
    }
    k
};

fn vector(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let digits: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap())
        .flat_map(|l| l.chars().filter(|c| c.is_ascii_hexdigit()))
        .collect();
    hex::decode(digits).unwrap()
}

/// Decodes the vector as exactly one frame that uses every byte.
fn one_frame(bytes: &[u8], limits: Limits) -> Frame {
    let mut d = Decoder::new(limits);
    d.extend_from_slice(bytes);
    let Ok(Decoded::Frame(frame)) = d.decode() else {
        panic!("vector does not decode to a frame");
    };
    assert_eq!(d.buffered(), 0, "trailing bytes after the frame");
    frame
}

fn encoded(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut out = BytesMut::new();
    f(&mut out);
    out.to_vec()
}

#[test]
fn hello() {
    let bytes = vector("hello");
    let frame = one_frame(&bytes, Limits::HELLO);
    assert_eq!(frame.sequence(), 0);
    let msg = Hello::parse(&frame).unwrap();
    assert_eq!(
        msg,
        Hello {
            session_token: b"TOKEN",
            client_info: b"ziti-sdk-c[0]@h",
        }
    );
    assert_eq!(encoded(|o| msg.encode(0, o).unwrap()), bytes);
}

#[test]
fn hello_result() {
    let bytes = vector("hello_result");
    let frame = one_frame(&bytes, Limits::DEFAULT);
    assert_eq!(frame.sequence(), HELLO_RESULT_SEQUENCE);
    let msg = HelloResult::parse(&frame).unwrap();
    assert_eq!(
        msg,
        HelloResult {
            success: true,
            reply_for: 0,
            version: Some(b"v|r|d|o|a"),
            connection_id: None,
            message: b"",
        }
    );
    assert_eq!(
        encoded(|o| msg.encode(HELLO_RESULT_SEQUENCE, o).unwrap()),
        bytes
    );
}

#[test]
fn latency_probe_and_reply() {
    let probe_bytes = vector("latency_probe");
    let frame = one_frame(&probe_bytes, Limits::DEFAULT);
    let probe = LatencyProbe::parse(&frame).unwrap();
    assert_eq!(probe.probe_time, Some(&1000u64.to_le_bytes()[..]));
    assert_eq!(encoded(|o| probe.encode(1, o).unwrap()), probe_bytes);

    let reply = probe.reply(frame.sequence());
    let reply_bytes = vector("latency_reply");
    assert_eq!(encoded(|o| reply.encode(5, o).unwrap()), reply_bytes);
    let reply_frame = one_frame(&reply_bytes, Limits::DEFAULT);
    assert_eq!(LatencyReply::parse(&reply_frame).unwrap(), reply);
}

#[test]
fn connect_plain() {
    let bytes = vector("connect");
    let frame = one_frame(&bytes, Limits::DEFAULT);
    let msg = Connect::parse(&frame).unwrap();
    assert_eq!(
        msg,
        Connect {
            conn_id: 0,
            seq: 0,
            caller_id: Some(b"id"),
            public_key: None,
            terminator_identity: None,
            app_data: None,
            stickiness_token: None,
            session_token: b"SESS",
        }
    );
    assert_eq!(encoded(|o| msg.encode(2, o).unwrap()), bytes);
}

#[test]
fn connect_encrypted() {
    let bytes = vector("connect_encrypted");
    let frame = one_frame(&bytes, Limits::DEFAULT);
    let msg = Connect::parse(&frame).unwrap();
    assert_eq!(
        msg,
        Connect {
            conn_id: 1,
            seq: 0,
            caller_id: Some(b"alice"),
            public_key: Some(&PK_DIALER),
            terminator_identity: Some(b"t1"),
            app_data: Some(b"{}"),
            stickiness_token: None,
            session_token: b"dial-token",
        }
    );
    assert_eq!(encoded(|o| msg.encode(3, o).unwrap()), bytes);
}

#[test]
fn bind() {
    let bytes = vector("bind");
    let frame = one_frame(&bytes, Limits::DEFAULT);
    let msg = Bind::parse(&frame).unwrap();
    assert_eq!(
        msg,
        Bind {
            conn_id: 2,
            seq: 0,
            caller_id: Some(b"bob"),
            public_key: Some(&PK_HOST),
            terminator_identity: Some(b"bob"),
            cost: Some(100),
            precedence: Some(Precedence::Required),
            session_token: b"bind-token",
        }
    );
    assert_eq!(encoded(|o| msg.encode(1, o).unwrap()), bytes);
}

#[test]
fn state_connected_replies() {
    let bytes = vector("state_connected_connect_reply");
    let msg = StateConnected {
        conn_id: 1,
        seq: 0,
        reply_for: Some(3),
        public_key: Some(&PK_HOST),
        stickiness_token: None,
    };
    assert_eq!(encoded(|o| msg.encode(10, o).unwrap()), bytes);
    let frame = one_frame(&bytes, Limits::DEFAULT);
    assert_eq!(StateConnected::parse(&frame).unwrap(), msg);

    let bytes = vector("state_connected_bind_reply");
    let msg = StateConnected {
        conn_id: 2,
        seq: 0,
        reply_for: Some(1),
        public_key: None,
        stickiness_token: None,
    };
    assert_eq!(encoded(|o| msg.encode(11, o).unwrap()), bytes);
    let frame = one_frame(&bytes, Limits::DEFAULT);
    assert_eq!(StateConnected::parse(&frame).unwrap(), msg);
}

#[test]
fn state_closed_variants() {
    let cases = [
        (
            "state_closed_invalid_session",
            12,
            StateClosed {
                conn_id: 1,
                seq: 0,
                reply_for: Some(3),
                reason: INVALID_SESSION.as_bytes(),
            },
        ),
        (
            "state_closed_from_sdk",
            9,
            StateClosed {
                conn_id: 0,
                seq: 4,
                reply_for: None,
                reason: b"",
            },
        ),
        (
            "state_closed_from_router",
            13,
            StateClosed {
                conn_id: 1,
                seq: 5,
                reply_for: None,
                reason: b"session closed",
            },
        ),
    ];
    for (name, sequence, msg) in cases {
        let bytes = vector(name);
        let frame = one_frame(&bytes, Limits::DEFAULT);
        assert_eq!(StateClosed::parse(&frame).unwrap(), msg, "{name}");
        assert_eq!(
            encoded(|o| msg.encode(sequence, o).unwrap()),
            bytes,
            "{name}"
        );
    }
}

#[test]
fn data_and_fin() {
    let bytes = vector("data");
    let frame = one_frame(&bytes, Limits::DEFAULT);
    let msg = Data::parse(&frame).unwrap();
    assert_eq!(
        msg,
        Data {
            conn_id: 0,
            seq: 2,
            flags: 0,
            payload: b"hello",
        }
    );
    assert!(!msg.is_fin());
    assert_eq!(encoded(|o| msg.encode(6, o).unwrap()), bytes);
    // The head alone is the frame minus its payload.
    let head = encoded(|o| msg.encode_head(6, o).unwrap());
    assert_eq!(head, bytes[..bytes.len() - 5]);

    let bytes = vector("data_fin");
    let frame = one_frame(&bytes, Limits::DEFAULT);
    let msg = Data::parse(&frame).unwrap();
    assert!(msg.is_fin());
    assert_eq!(msg.payload, b"");
    assert_eq!(encoded(|o| msg.encode(7, o).unwrap()), bytes);
}

#[test]
fn dial_and_answers() {
    let bytes = vector("dial");
    let msg = Dial {
        conn_id: 2,
        seq: 0,
        caller_id: b"alice",
        public_key: Some(&PK_DIALER),
        app_data: Some(b"{}"),
        session_token: b"bind-token",
    };
    assert_eq!(encoded(|o| msg.encode(14, o).unwrap()), bytes);
    let frame = one_frame(&bytes, Limits::DEFAULT);
    assert_eq!(Dial::parse(&frame).unwrap(), msg);

    let bytes = vector("dial_success");
    let msg = DialSuccess::parse(&one_frame(&bytes, Limits::DEFAULT)).unwrap();
    assert_eq!(
        msg,
        DialSuccess {
            conn_id: 2,
            seq: 0,
            reply_for: 14,
            new_conn_id: 7,
        }
    );
    assert_eq!(encoded(|o| msg.encode(3, o).unwrap()), bytes);

    let bytes = vector("dial_failed");
    let frame = one_frame(&bytes, Limits::DEFAULT);
    let msg = DialFailed::parse(&frame).unwrap();
    assert_eq!(
        msg,
        DialFailed {
            conn_id: 2,
            seq: 0,
            reply_for: 14,
            reason: b"crypto failure",
        }
    );
    assert_eq!(encoded(|o| msg.encode(4, o).unwrap()), bytes);
}

#[test]
fn every_vector_parses_as_its_edge_message() {
    let dir = format!("{}/testdata", env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if path.extension().is_none_or(|e| e != "hex") || name.starts_with("malformed") {
            continue;
        }
        let frame = one_frame(&vector(&name), Limits::DEFAULT);
        let msg = EdgeMessage::parse(&frame).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expect_other = frame.content_type() == ContentType::RESULT;
        assert_eq!(matches!(msg, EdgeMessage::Other(_)), expect_other, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 17);
}

fn decode_error(name: &str, limits: Limits) -> DecodeError {
    let mut d = Decoder::new(limits);
    d.extend_from_slice(&vector(name));
    d.decode().expect_err(name)
}

#[test]
fn malformed_vectors_are_rejected() {
    assert_eq!(
        decode_error("malformed_bad_magic", Limits::DEFAULT),
        DecodeError::BadMagic([3, 6, 9, 0x0d])
    );
    assert_eq!(
        decode_error("malformed_header_overrun", Limits::DEFAULT),
        DecodeError::HeaderOverrun { offset: 0, len: 16 }
    );
    assert_eq!(
        decode_error("malformed_truncated_header", Limits::DEFAULT),
        DecodeError::TruncatedHeader { offset: 0 }
    );
    assert_eq!(
        decode_error("malformed_hello_too_long", Limits::HELLO),
        DecodeError::BodyTooLong {
            len: 0x4000_0000,
            max: Limits::HELLO.max_body_len
        }
    );
}
