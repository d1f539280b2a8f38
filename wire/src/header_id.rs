//! Header ids: the key of each header entry.
//!
//! Channel ids 0..=6 and 128 come from openziti/channel v0.18.58 `message.go` (const block
//! ~40-52) and ziti-sdk-c 0.29.3 `inc_internal/edge_protocol.h` (enum header_id). Edge ids
//! 1000..=1040 come from `edge_protocol.h` lines 61-82 and sdk-golang v0.16.103
//! `ziti/edge/messages.go` lines 44-91 (1021 onwards from sdk-golang HEAD
//! `pb/edge_client_pb/edge_client.proto`). Weft's link ids live in `0x5746_01xx`, its
//! edge extension ids in `0x5745_01xx`.
//! The value encoding each id uses on the wire is given in its doc comment and in
//! `docs/wire-format.md`.

use crate::named::named_i32;

/// The id of one header entry (int32 little-endian on the wire).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeaderId(pub i32);

named_i32! { HeaderId {
    // ---- channel ----
    /// string: opaque connection id a Go listener puts in the hello Result; ignored by C.
    CONNECTION_ID = 0;
    /// int32: the sequence of the message this one replies to.
    REPLY_FOR = 1;
    /// bool (1 byte): success flag of a Result.
    RESULT_SUCCESS = 2;
    /// Router-to-router hello listener / advertisements (Go links only).
    HELLO_LISTENER = 3;
    /// string `Version|Revision|BuildDate|OS|Arch` in the hello Result (foundation versions.go).
    HELLO_VERSION = 4;
    /// uint64: Go channel heartbeat.
    HEARTBEAT = 5;
    /// uint64: Go channel heartbeat response.
    HEARTBEAT_RESPONSE = 6;
    /// uint64: latency probe time; ids 128..=255 are reflected into replies by Go (ch ReplyTo).
    LATENCY_PROBE_TIME = 128;

    // ---- edge ----
    /// int32: the SDK-chosen connection (or listener) id.
    CONN_ID = 1000;
    /// int32: per-connection edge sequence (never checked by peers).
    SEQ = 1001;
    /// string: API session token, on the hello only.
    SESSION_TOKEN = 1002;
    /// 32 raw bytes: libsodium crypto_kx public key.
    PUBLIC_KEY = 1003;
    /// Terminator cost: int32 LE from C, uint16 LE from Go; read the low 16 bits.
    COST = 1004;
    /// Terminator precedence: int32 LE from C, 1 byte from Go; read the first byte.
    PRECEDENCE = 1005;
    /// string: terminator instance identity.
    TERMINATOR_IDENTITY = 1006;
    /// bytes: terminator identity secret (Go only).
    TERMINATOR_IDENTITY_SECRET = 1007;
    /// string: the caller's identity name.
    CALLER_ID = 1008;
    /// 1 byte: end-to-end crypto method, absent = 0 = libsodium.
    CRYPTO_METHOD = 1009;
    /// uint32: flags; bit 0x1 = FIN.
    FLAGS = 1010;
    /// bytes: application data passed from dialer to host.
    APP_DATA = 1011;
    /// bool on Bind/StateConnected, uint32 on Dial: router-assigned conn ids (Go only).
    ROUTER_PROVIDED_CONN_ID = 1012;
    /// bool: terminator health status.
    HEALTH_STATUS = 1013;
    /// uint32: edge error code (1 Internal .. 11 EncryptionDataMissing, sdkgo).
    ERROR_CODE = 1014;
    /// uint64: timestamp (trace).
    TIMESTAMP = 1015;
    /// Trace hop count.
    TRACE_HOP_COUNT = 1016;
    /// Trace hop type.
    TRACE_HOP_TYPE = 1017;
    /// Trace hop id.
    TRACE_HOP_ID = 1018;
    /// Trace source request id.
    TRACE_SOURCE_REQUEST_ID = 1019;
    /// Trace error.
    TRACE_ERROR = 1020;
    /// Listener id (modern SDKs).
    LISTENER_ID = 1021;
    /// Connection type (modern SDKs).
    CONN_TYPE = 1022;
    /// Supports inspect (modern SDKs).
    SUPPORTS_INSPECT = 1023;
    /// bool: the router sends BindSuccess (modern routers).
    SUPPORTS_BIND_SUCCESS = 1024;
    /// Connection marker (modern SDKs).
    CONNECTION_MARKER = 1025;
    /// Circuit id (modern SDKs).
    CIRCUIT_ID = 1026;
    /// Stickiness token (modern SDKs).
    STICKINESS_TOKEN = 1027;
    /// Use xgress-to-SDK (modern SDKs).
    USE_XGRESS_TO_SDK = 1028;
    /// Xgress control id (modern SDKs).
    XGRESS_CTRL_ID = 1029;
    /// Xgress address (modern SDKs).
    XGRESS_ADDRESS = 1030;
    /// Inspect requested values (modern SDKs).
    INSPECT_REQUESTED_VALUES = 1031;
    /// bool: the router supports posture checks (modern routers).
    SUPPORTS_POSTURE_CHECKS = 1032;
    /// Structured error (modern SDKs).
    STRUCTURED_ERROR = 1033;
    /// Dialer identity id (modern SDKs).
    DIALER_IDENTITY_ID = 1034;
    /// Dialer identity name (modern SDKs).
    DIALER_IDENTITY_NAME = 1035;
    /// Service id (modern SDKs).
    SERVICE_ID = 1036;
    /// Service identifier type (modern SDKs).
    SERVICE_IDENTIFIER_TYPE = 1037;
    /// Connect request id (modern SDKs).
    CONNECT_REQUEST_ID = 1038;
    /// Router capabilities bit mask (modern routers).
    ROUTER_CAPABILITIES = 1039;
    /// Service subscription index (modern SDKs).
    SERVICE_SUBSCRIPTION_INDEX = 1040;

    // ---- Weft edge extension, see crate::edge::Credit ----
    /// uint32 on a hello: the SDK's per-stream receive window (it speaks Weft credit);
    /// on the hello Result: the router agrees, and grants each conn id this many bytes.
    WEFT_STREAM_WINDOW = 0x5745_0101;
    /// uint32: bytes of credit granted for one conn id.
    WEFT_CREDIT = 0x5745_0102;

    // ---- Weft link, see crate::link ----
    /// uint64: circuit id, unique per link.
    LINK_CIRCUIT_ID = 0x5746_0101;
    /// uint64: per-circuit data sequence, from 1.
    LINK_SEQ = 0x5746_0102;
    /// uint32: bytes of credit returned to the sender.
    LINK_CREDIT = 0x5746_0103;
    /// uint32: flags; bit 0x1 = FIN (same meaning as the edge Flags header).
    LINK_FLAGS = 0x5746_0104;
    /// string: the dialing router's id, on the link hello.
    LINK_ROUTER_ID = 0x5746_0105;
    /// uint64: a heartbeat's stamp (opaque to the receiver, echoed in the ack).
    LINK_STAMP = 0x5746_0106;
    /// uint32: which of the dialer's connections of one link this is, from 0 (on the
    /// link hello; absent = 0).
    LINK_CONNECTION = 0x5746_0107;
    /// uint32: what one frame costs the sender's router beyond its payload, in bytes of
    /// credit (on the link hello and its Result; absent = 0: credit counts payload only).
    LINK_FRAME_COST = 0x5746_0108;
    /// uint32: frames whose payload a credit returns (on `LINK_CREDIT`; absent = 0).
    LINK_FRAMES = 0x5746_0109;
}}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for id in HeaderId::ALL {
            assert!(seen.insert(id.0), "duplicate value {id:?}");
        }
    }
}
