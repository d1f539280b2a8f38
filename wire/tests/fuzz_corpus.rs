//! Replays the committed corpus of the `decode_frame` fuzz target (fuzz/corpus/) through
//! the same entry point, so every input the fuzzer found interesting stays a regression
//! test in ordinary `cargo test` runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

#[test]
fn decode_frame_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode_frame");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        weft_wire::fuzzing::decode_stream(&data);
        inputs += 1;
    }
    assert!(
        inputs >= 20,
        "corpus at {} has only {inputs} inputs",
        dir.display()
    );
}

#[test]
fn control_link_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/control_link");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        weft_wire::fuzzing::control_and_link(&data);
        inputs += 1;
    }
    assert!(
        inputs >= 10,
        "corpus at {} has only {inputs} inputs",
        dir.display()
    );
}

/// One of each control and link message, as the router and controller send them: each
/// round-trips through the fuzz entry point; with `WEFT_WRITE_SEEDS=1` they are written
/// as the seed corpus of `control_link`.
#[test]
fn control_link_seeds_round_trip() {
    use bytes::BytesMut;
    use weft_wire::control::{ControlMessage, pb};
    use weft_wire::link::{
        LinkClose, LinkCredit, LinkData, LinkHeartbeat, LinkHeartbeatAck, LinkHello,
    };
    let api = pb::ApiSession {
        id: "a1".into(),
        token: "tok".into(),
        identity_id: "i1".into(),
        identity_name: "alice".into(),
        cert_fingerprints: vec!["ab".repeat(20)],
        expires_at_unix_ms: 1_700_000_000_000,
    };
    let session = pb::Session {
        id: "s1".into(),
        token: "stok".into(),
        api_session_id: "a1".into(),
        service_id: "svc".into(),
        r#type: pb::SessionType::Dial as i32,
        identity_id: "i1".into(),
    };
    let access = pb::RouterAccess {
        id: "i1".into(),
        router_ids: vec!["r1".into(), "r2".into()],
    };
    let terminator = pb::Terminator {
        id: "t1".into(),
        service_id: "svc".into(),
        router_id: "r1".into(),
        cost: 3,
        host_public_key: vec![7; 32],
        ..Default::default()
    };
    let mut seeds: Vec<BytesMut> = Vec::new();
    let mut push = |encode: &dyn Fn(&mut BytesMut)| {
        let mut out = BytesMut::from(&[7u8][..]);
        encode(&mut out);
        seeds.push(out);
    };
    push(&|o| {
        pb::RouterHello {
            router_id: "r1".into(),
            version: "0.1.0".into(),
            edge_listeners: vec!["tls://localhost:3022".into()],
            ..Default::default()
        }
        .encode_frame(1, None, o)
        .unwrap();
    });
    push(&|o| {
        pb::HelloAck {
            controller_id: "c".into(),
            version: "0.1.0".into(),
        }
        .encode_frame(2, Some(1), o)
        .unwrap();
    });
    push(&|o| {
        pb::StateSync {
            revision: 4,
            api_sessions: vec![api.clone()],
            sessions: vec![session.clone()],
            terminators: vec![terminator.clone()],
            identity_routers: vec![access.clone()],
            service_routers: vec![access.clone()],
            ..Default::default()
        }
        .encode_frame(3, None, o)
        .unwrap();
    });
    push(&|o| {
        pb::StateUpdate {
            revision: 5,
            api_sessions_added: vec![api.clone()],
            sessions_removed: vec!["s0".into()],
            identity_routers_upserted: vec![access.clone()],
            service_routers_removed: vec!["svc".into()],
            ..Default::default()
        }
        .encode_frame(4, None, o)
        .unwrap();
    });
    push(&|o| {
        pb::CreateTerminatorRequest {
            session_id: "s1".into(),
            address: "1:7".into(),
            cost: 1,
            host_public_key: vec![9; 32],
            ..Default::default()
        }
        .encode_frame(5, None, o)
        .unwrap();
    });
    push(&|o| {
        pb::CreateTerminatorResponse {
            terminator: Some(terminator.clone()),
        }
        .encode_frame(6, Some(5), o)
        .unwrap();
    });
    push(&|o| {
        pb::RemoveTerminatorRequest {
            terminator_id: "t1".into(),
        }
        .encode_frame(7, None, o)
        .unwrap();
    });
    push(&|o| {
        pb::ErrorReply {
            code: "NOT_FOUND".into(),
            message: "no such session".into(),
        }
        .encode_frame(8, Some(7), o)
        .unwrap();
    });
    push(&|o| LinkHello { router_id: "r1" }.encode(1, o).unwrap());
    push(&|o| {
        LinkData {
            circuit_id: 9,
            seq: 1,
            flags: 1,
            payload: b"payload",
        }
        .encode(2, o)
        .unwrap();
    });
    push(&|o| {
        LinkCredit {
            circuit_id: 9,
            credit: 65_536,
        }
        .encode(3, o)
        .unwrap();
    });
    push(&|o| {
        LinkClose {
            circuit_id: 9,
            reason: b"closed by peer",
        }
        .encode(4, o)
        .unwrap();
    });
    push(&|o| LinkHeartbeat { stamp: 123_456_789 }.encode(5, o).unwrap());
    push(&|o| {
        LinkHeartbeatAck { stamp: 123_456_789 }
            .encode(6, o)
            .unwrap()
    });
    assert_eq!(seeds.len(), 14);
    for seed in &seeds {
        // Each seed is one whole frame after the chunking byte.
        let mut d = weft_wire::Decoder::new(weft_wire::Limits::DEFAULT);
        d.extend_from_slice(&seed[1..]);
        assert!(matches!(d.decode(), Ok(weft_wire::Decoded::Frame(_))));
        weft_wire::fuzzing::control_and_link(seed);
    }
    if std::env::var_os("WEFT_WRITE_SEEDS").is_some() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/control_link");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
        }
    }
}
