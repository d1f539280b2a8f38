//! Message content types: the `content type` field of the frame prefix.
//!
//! Three families share one number space:
//! - channel types 0..=5, from OpenZiti's `channel` library;
//! - edge types 60783..=60807, from the OpenZiti edge protocol (SDK <-> edge router);
//! - Weft's own link (`0x5746_00xx`), control (`0x5743_00xx`) and edge extension
//!   (`0x5745_00xx`) types, chosen far from both so that a frame sent to the wrong
//!   listener is rejected, never misread.
//!
//! Sources, cited per constant: `sdkc` = ziti-sdk-c 0.29.3 `inc_internal/edge_protocol.h`
//! (enum content_type); `ch` = openziti/channel v0.18.58 `messages.go`; `sdkgo` =
//! sdk-golang v0.16.103 `ziti/edge/messages.go`; `sdkgoHEAD` = sdk-golang HEAD
//! `pb/edge_client_pb/edge_client.proto`. See `docs/wire-format.md`.

use crate::named::named_i32;

/// The content type of a frame (int32 little-endian at prefix offset 4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentType(pub i32);

named_i32! { ContentType {
    // ---- channel (ch: messages.go ~19-26; sdkc: edge_protocol.h enum content_type) ----
    /// First message on every channel; SDK -> router with the API session token.
    HELLO = 0;
    /// Channel ping (Go only; the C SDK never sends or answers it).
    PING = 1;
    /// Reply to a hello or a latency probe: header 2 carries success, header 1 the request seq.
    RESULT = 2;
    /// Latency probe, header 128 carries the sender's clock (sdkc channel.c send_latency_probe).
    LATENCY = 3;
    /// Go-only latency response type; the C SDK never uses it.
    LATENCY_RESPONSE = 4;
    /// Go channel heartbeat (headers 5/6); dropped by the C SDK.
    HEARTBEAT = 5;

    // ---- edge (sdkc: edge_protocol.h lines 25-45; sdkgo: messages.go lines 27-42) ----
    /// SDK -> router: dial a service; body is the Dial session token.
    CONNECT = 60783;
    /// Router -> SDK: success reply to Connect, Bind or DialSuccess.
    STATE_CONNECTED = 60784;
    /// Either way: a connection or listener closed; body is the reason.
    STATE_CLOSED = 60785;
    /// Either way: payload for one connection; header 1010 carries FIN.
    DATA = 60786;
    /// Router -> hosting SDK: a client wants this listener; body is the Bind session token.
    DIAL = 60787;
    /// Hosting SDK -> router: dial accepted; body is the new conn id (uint32 LE).
    DIAL_SUCCESS = 60788;
    /// Hosting SDK -> router: dial refused; body is the reason.
    DIAL_FAILED = 60789;
    /// SDK -> router: host a service; body is the Bind session token.
    BIND = 60790;
    /// SDK -> router: stop hosting (Go SDKs; the C SDK 0.29.3 sends StateClosed instead).
    UNBIND = 60791;
    /// Router -> SDK: session ended (not handled by the C SDK 0.29.3).
    STATE_SESSION_ENDED = 60792;
    /// Router <-> SDK terminator probe (not handled by the C SDK 0.29.3).
    PROBE = 60793;
    /// SDK -> router: change a terminator's cost or precedence (Go SDKs).
    UPDATE_BIND = 60794;
    /// SDK -> router: terminator health (sdkgoHEAD; not defined in 0.29.3).
    HEALTH_EVENT = 60795;
    /// Trace route request (sdkgoHEAD).
    TRACE_ROUTE = 60796;
    /// Trace route response (sdkgoHEAD).
    TRACE_ROUTE_RESPONSE = 60797;
    /// Connection inspect request (sdkgoHEAD).
    CONN_INSPECT_REQUEST = 60798;
    /// Connection inspect response (sdkgoHEAD).
    CONN_INSPECT_RESPONSE = 60799;
    /// Router -> SDK: bind succeeded (sdkgoHEAD).
    BIND_SUCCESS = 60800;
    /// Router -> SDK: API session token update accepted (sdkgoHEAD).
    UPDATE_TOKEN_SUCCESS = 60801;
    /// Router -> SDK: API session token update refused (sdkgoHEAD).
    UPDATE_TOKEN_FAILURE = 60802;
    /// SDK -> router: new API session token for this channel (sdkgoHEAD).
    UPDATE_TOKEN = 60803;
    /// Inspect request (sdkgoHEAD).
    INSPECT_REQUEST = 60804;
    /// Inspect response (sdkgoHEAD).
    INSPECT_RESPONSE = 60805;
    /// Connect with a protobuf-era header set (sdkgoHEAD).
    CONNECT_V2 = 60806;
    /// Route a circuit to an SDK-hosted xgress (sdkgoHEAD).
    ROUTE_CIRCUIT = 60807;

    // ---- Weft link (router <-> router), see crate::link ----
    /// Link hello: the dialing router names itself.
    LINK_HELLO = 0x5746_0001;
    /// Payload of one circuit.
    LINK_DATA = 0x5746_0002;
    /// Flow-control credit for one circuit: the receiver consumed this many bytes.
    LINK_CREDIT = 0x5746_0003;
    /// A circuit ended; body is the reason.
    LINK_CLOSE = 0x5746_0004;
    /// Link heartbeat: the sender's stamp, to be echoed.
    LINK_HEARTBEAT = 0x5746_0005;
    /// Answer to a heartbeat: the stamp echoed.
    LINK_HEARTBEAT_ACK = 0x5746_0006;
    /// End to end: the circuit's far end router received its payload up to a sequence.
    LINK_ACK = 0x5746_0007;

    // ---- Weft edge extension (Weft SDK <-> router, negotiated on the hello) ----
    /// Either way: per-stream flow-control credit for one conn id (crate::edge::Credit).
    WEFT_CREDIT = 0x5745_0001;

    // ---- Weft control (router <-> controller), bodies are protobuf, see crate::control ----
    /// Router -> controller: `RouterHello`.
    CONTROL_ROUTER_HELLO = 0x5743_0001;
    /// Controller -> router: `HelloAck`.
    CONTROL_HELLO_ACK = 0x5743_0002;
    /// Controller -> router: `StateSync`, the full state a router needs.
    CONTROL_STATE_SYNC = 0x5743_0003;
    /// Controller -> router: `StateUpdate`, incremental adds and removes.
    CONTROL_STATE_UPDATE = 0x5743_0004;
    /// Router -> controller: `CreateTerminatorRequest`.
    CONTROL_CREATE_TERMINATOR = 0x5743_0005;
    /// Controller -> router: `CreateTerminatorResponse`.
    CONTROL_CREATE_TERMINATOR_RESPONSE = 0x5743_0006;
    /// Router -> controller: `RemoveTerminatorRequest`.
    CONTROL_REMOVE_TERMINATOR = 0x5743_0007;
    /// Either way: `ErrorReply` to a request.
    CONTROL_ERROR = 0x5743_0008;
    /// Controller -> router: `Peers`, the routers it may link with.
    CONTROL_PEERS = 0x5743_0009;
    /// Router -> controller: `LinkStatus`.
    CONTROL_LINK_STATUS = 0x5743_000a;
    /// Router -> controller: `CircuitRequest`.
    CONTROL_CIRCUIT_REQUEST = 0x5743_000b;
    /// Controller -> router: `CircuitResponse`.
    CONTROL_CIRCUIT_RESPONSE = 0x5743_000c;
    /// Controller -> router: `Route`.
    CONTROL_ROUTE = 0x5743_000d;
    /// Router -> controller: `RouteResponse`.
    CONTROL_ROUTE_RESPONSE = 0x5743_000e;
    /// Either way: `CircuitClosed`.
    CONTROL_CIRCUIT_CLOSED = 0x5743_000f;
    /// Router -> controller: `RerouteRequest`.
    CONTROL_REROUTE_REQUEST = 0x5743_0010;
    /// Controller -> router: `TrustedCas`, the 3rd-party CAs edge clients may chain to
    /// (0x11..0x1f are left to increments in flight elsewhere).
    CONTROL_TRUSTED_CAS = 0x5743_0020;
}}

impl ContentType {
    /// True for the edge protocol's types (60783..=60807).
    pub fn is_edge(self) -> bool {
        (Self::CONNECT.0..=Self::ROUTE_CIRCUIT.0).contains(&self.0)
    }

    /// True for Weft link types.
    pub fn is_link(self) -> bool {
        self.0 & !0xff == 0x5746_0000
    }

    /// True for Weft's edge extension types.
    pub fn is_weft_edge(self) -> bool {
        self.0 & !0xff == 0x5745_0000
    }

    /// True for Weft control types.
    pub fn is_control(self) -> bool {
        self.0 & !0xff == 0x5743_0000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_families_disjoint() {
        let mut seen = std::collections::HashSet::new();
        for ct in ContentType::ALL {
            assert!(seen.insert(ct.0), "duplicate value {ct:?}");
            let families = [
                ct.0 <= 5,
                ct.is_edge(),
                ct.is_link(),
                ct.is_control(),
                ct.is_weft_edge(),
            ];
            assert_eq!(families.iter().filter(|f| **f).count(), 1, "{ct:?}");
        }
    }

    #[test]
    fn debug_shows_name() {
        assert_eq!(format!("{:?}", ContentType::DATA), "DATA(60786)");
        assert_eq!(format!("{:?}", ContentType(7)), "ContentType(7)");
    }
}
