//! A deterministic simulation of a router's forwarding: the forwarders of one shard or
//! several, the cross-shard messages carried between them, simulated time, and SDKs
//! speaking edge frames to them as bytes. The forwarding tests run on it; the router's
//! links, another kind of leg, are to be tested on it too (it drives the forwarder's
//! crate-private seams, so it lives in this crate, for its tests).
#![allow(clippy::disallowed_methods)] // the simulation starts its clock once

use std::time::Instant;

use bytes::BytesMut;
use weft_testkit::state;
use weft_wire::control::pb;
use weft_wire::edge::*;
use weft_wire::{Decoded, Decoder, Frame, Limits};

use super::*;

/// The dialer's connection (API session `api-d`, token `D`, fingerprint `fd`).
pub(crate) const DIALER: ConnKey = ConnKey(1);
/// The host's connection (API session `api-h`, token `H`, fingerprint `fh`).
pub(crate) const HOST: ConnKey = ConnKey(2);
/// A second host (API session `api-h2`, token `H2`, fingerprint `fh2`).
pub(crate) const HOST2: ConnKey = ConnKey(3);
/// The dialer's end-to-end public key.
pub(crate) const PK_D: [u8; 32] = [0xd; 32];
/// The host's end-to-end public key.
pub(crate) const PK_H: [u8; 32] = [0xe; 32];

/// The state every shard starts from: API sessions `api-d`, `api-h`, `api-h2`, a Dial
/// session (`tok-dial`) and two Bind sessions (`tok-bind`, `tok-bind2`) of service `svc`.
pub(crate) fn sync() -> pb::StateSync {
    let api = |id: &str, token: &str, fp: &str| state::api_session(id, token, id, fp);
    let session = |id: &str, api: &str, kind: pb::SessionType| {
        state::session(id, &format!("tok-{id}"), api, "svc", kind)
    };
    state::sync(
        "",
        1,
        vec![
            api("api-d", "D", "fd"),
            api("api-h", "H", "fh"),
            api("api-h2", "H2", "fh2"),
        ],
        vec![
            session("dial", "api-d", pb::SessionType::Dial),
            session("bind", "api-h", pb::SessionType::Bind),
            session("bind2", "api-h2", pb::SessionType::Bind),
        ],
    )
}

/// One SDK's view: its channel sequence and what the router wrote to it.
#[derive(Debug)]
pub(crate) struct Sdk {
    /// Its connection.
    pub(crate) key: ConnKey,
    /// The next channel sequence it sends.
    pub(crate) seq: i32,
    /// What the router wrote to it, not yet decoded.
    pub(crate) inbox: Decoder,
    /// When set, transmits stay unwritten (a reader that does not read).
    pub(crate) stalled: bool,
}

/// The forwarders of a router's shards, with the cross-shard messages carried between
/// them and the time simulated.
#[derive(Debug)]
pub(crate) struct Net {
    /// Shard 0.
    pub(crate) fwd: Forwarder,
    /// Shards 1 and up.
    pub(crate) others: Vec<Forwarder>,
    /// The simulated time.
    pub(crate) now: Instant,
}

impl Net {
    /// One shard with a `window`-byte circuit window, holding [`sync`].
    pub(crate) fn new(window: usize) -> Self {
        Self::sharded(window, 1)
    }

    /// `shards` shards, each holding [`sync`].
    pub(crate) fn sharded(window: usize, shards: u16) -> Self {
        let config = ForwardConfig {
            window,
            ..ForwardConfig::default()
        };
        Self::configured(config, shards)
    }

    /// `shards` shards configured with `config`, each holding [`sync`].
    pub(crate) fn configured(config: ForwardConfig, shards: u16) -> Self {
        let now = Instant::now();
        let mut fwds: Vec<Forwarder> = (0..shards)
            .map(|i| Forwarder::sharded(config.clone(), i, shards))
            .collect();
        for fwd in &mut fwds {
            fwd.apply_sync(now, sync());
        }
        let fwd = fwds.remove(0);
        Self {
            fwd,
            others: fwds,
            now,
        }
    }

    /// The forwarder of the shard owning `key`.
    pub(crate) fn at(&mut self, key: ConnKey) -> &mut Forwarder {
        match key.shard() {
            0 => &mut self.fwd,
            n => &mut self.others[n - 1],
        }
    }

    /// Carries messages between shards until none is left.
    pub(crate) fn shuttle(&mut self) {
        loop {
            let mut moving = Vec::new();
            for (from, fwd) in std::iter::once(&mut self.fwd)
                .chain(self.others.iter_mut())
                .enumerate()
            {
                while let Some((to, msg)) = fwd.poll_cross() {
                    moving.push((from, to, msg));
                }
            }
            if moving.is_empty() {
                return;
            }
            for (from, to, msg) in moving {
                let now = self.now;
                self.at(ConnKey::on_shard(to, 0))
                    .handle_cross(now, from, msg);
            }
        }
    }

    /// Applies `update` on every shard.
    pub(crate) fn update(&mut self, update: pb::StateUpdate) {
        let now = self.now;
        for fwd in std::iter::once(&mut self.fwd).chain(self.others.iter_mut()) {
            fwd.apply_update(now, update.clone()).unwrap();
        }
        self.shuttle();
    }

    /// Connects an SDK on `key` that says hello with `token` from certificate `fp`.
    pub(crate) fn connect(&mut self, key: ConnKey, token: &[u8], fp: &str) -> Sdk {
        self.connect_with(key, token, fp, None)
    }

    /// Connects an SDK that offers Weft's per-stream credit with `window` when given.
    pub(crate) fn connect_with(
        &mut self,
        key: ConnKey,
        token: &[u8],
        fp: &str,
        window: Option<u32>,
    ) -> Sdk {
        let now = self.now;
        self.at(key).add_conn(now, key, Some(fp.into()));
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
            .encode_with_window(s, window, o)
            .unwrap()
        });
        let frames = self.recv(&mut sdk);
        assert!(HelloResult::parse(&frames[0]).unwrap().success);
        let accepted = stream_window(&frames[0]);
        assert_eq!(
            accepted.is_some(),
            window.is_some(),
            "answered only when offered"
        );
        sdk
    }

    /// The SDK sends one frame (`encode` gets the buffer and its sequence); returns the
    /// sequence.
    pub(crate) fn send(&mut self, sdk: &mut Sdk, encode: impl FnOnce(&mut BytesMut, i32)) -> i32 {
        let seq = sdk.seq;
        sdk.seq += 1;
        let mut out = BytesMut::new();
        encode(&mut out, seq);
        let now = self.now;
        self.at(sdk.key).handle_input(now, sdk.key, &out, 0);
        self.shuttle();
        seq
    }

    /// The dialer's session was revoked: it is told so, and the host (child 100) is
    /// told its peer's session went, not that the peer closed normally.
    pub(crate) fn expect_revoked(&mut self, dialer: &mut Sdk, host: &mut Sdk) {
        let frames = self.recv(dialer);
        assert_eq!(
            StateClosed::parse(&frames[0]).unwrap().reason,
            b"session closed"
        );
        let frames = self.recv(host);
        let closed = StateClosed::parse(&frames[0]).unwrap();
        assert_eq!(
            (closed.conn_id, closed.reason),
            (100, &b"peer session closed"[..])
        );
    }

    /// Writes (unless stalled) and decodes what the router queued for `sdk`.
    pub(crate) fn recv(&mut self, sdk: &mut Sdk) -> Vec<Frame> {
        let fwd = self.at(sdk.key);
        while fwd.poll_ready().is_some() {}
        let mut frames = Vec::new();
        if sdk.stalled {
            return frames;
        }
        while let Some(t) = fwd.poll_transmit(sdk.key) {
            sdk.inbox.extend_from_slice(&t.head);
            sdk.inbox.extend_from_slice(&t.payload);
            fwd.handle_written(sdk.key, &t);
            while let Ok(Decoded::Frame(f)) = sdk.inbox.decode() {
                frames.push(f);
            }
        }
        self.shuttle();
        frames
    }

    /// Binds `listener` on `host` and confirms the terminator as the controller would.
    pub(crate) fn bind(
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
        }) = self.at(host.key).poll_control()
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
        let now = self.now;
        self.at(conn)
            .terminator_created(now, conn, listener, format!("t-{}-{listener}", conn.0));
        self.shuttle();
        let frames = self.recv(host);
        assert_eq!(
            StateConnected::parse(&frames[0]).unwrap().reply_for,
            Some(seq)
        );
    }

    /// The dialer dials service `svc` on `conn_id` with the Dial session; returns the
    /// Connect's sequence.
    pub(crate) fn dial(&mut self, dialer: &mut Sdk, conn_id: u32) -> i32 {
        self.send(dialer, |o, s| {
            Connect {
                conn_id,
                seq: 0,
                caller_id: Some(b"dialer"),
                public_key: Some(&PK_D),
                terminator_identity: None,
                app_data: None,
                stickiness_token: None,
                session_token: b"tok-dial",
            }
            .encode(s, o)
            .unwrap()
        })
    }

    /// The host accepts the Dial it was sent, as child `child`.
    pub(crate) fn accept(&mut self, host: &mut Sdk, child: u32) {
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

    /// The host refuses the Dial it was sent, with `reason`.
    pub(crate) fn refuse(&mut self, host: &mut Sdk, reason: &[u8]) {
        let frames = self.recv(host);
        let dial = Dial::parse(&frames[0]).unwrap();
        let (listener, reply_for) = (dial.conn_id, frames[0].sequence());
        self.send(host, |o, s| {
            DialFailed {
                conn_id: listener,
                seq: 0,
                reply_for,
                reason,
            }
            .encode(s, o)
            .unwrap()
        });
    }

    /// The SDK closes `conn_id` (StateClosed; a listener id unbinds).
    pub(crate) fn close(&mut self, sdk: &mut Sdk, conn_id: u32) {
        self.send(sdk, |o, s| {
            StateClosed {
                conn_id,
                seq: 9,
                reply_for: None,
                reason: b"",
            }
            .encode(s, o)
            .unwrap()
        });
    }

    /// The SDK sends `payload` on `conn_id`, with a FIN when `fin`.
    pub(crate) fn data(&mut self, sdk: &mut Sdk, conn_id: u32, payload: &[u8], fin: bool) {
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
    pub(crate) fn established(window: usize) -> (Self, Sdk, Sdk) {
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
