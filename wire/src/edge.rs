//! Typed edge-protocol messages (SDK <-> edge router), parsed from and encoded into frames.
//!
//! Each message borrows from the [`Frame`] it was parsed from; encoding writes the header
//! entries in the order ziti-sdk-c 0.29.3 writes them (for messages an SDK sends) or in
//! the order of the byte examples in `wire/testdata/` (for messages a router sends). Peers must not depend on header order; the fixed order keeps golden vectors
//! byte-exact. Message layouts: spec §2, §3.3 and §6, from `sdkc:library/connect.c`,
//! `sdkc:library/channel.c` and `edge:router/xgress_edge/*`.

use bytes::BytesMut;

use crate::headers::HeaderValue;
use crate::{ContentType, EncodeError, Frame, FrameEncoder, HeaderId, MessageError, ValueError};

/// Bit of the Flags header (1010) marking a half-close (FIN) Data message
/// (`sdkc:inc_internal/edge_protocol.h` edge_flag; `sdkgo:ziti/edge/messages.go` FIN).
pub const FLAG_FIN: u32 = 0x1;

/// The exact StateClosed body that makes the C SDK drop its cached session and retry
/// (`sdkc:library/connect.c` ~920 and ~1435; `edge:controller/handler_edge_ctrl/errors.go`).
/// Use it only for session problems: the SDK treats any prefix of it, including an empty
/// body, the same way.
pub const INVALID_SESSION: &str = "Invalid Session";

/// Sequence Go routers put on the hello Result (`ch:channel.go` HelloSequence).
pub const HELLO_RESULT_SEQUENCE: i32 = -1;

/// Terminator precedence (edge header 1005; `sdkc:includes/ziti/ziti.h` ~280-293).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precedence {
    /// Normal terminator.
    #[default]
    Default,
    /// Preferred over default terminators.
    Required,
    /// Used only when nothing else is left.
    Failed,
}

impl Precedence {
    /// Reads the first byte, as Go routers do; C sends an int32 LE, Go one byte.
    pub fn parse(value: HeaderValue<'_>) -> Result<Self, ValueError> {
        match value.as_bytes().first() {
            None | Some(0) => Ok(Self::Default),
            Some(1) => Ok(Self::Required),
            Some(2) => Ok(Self::Failed),
            Some(other) => Err(ValueError::OutOfRange(i64::from(*other))),
        }
    }

    /// The wire number.
    pub fn as_i32(self) -> i32 {
        match self {
            Self::Default => 0,
            Self::Required => 1,
            Self::Failed => 2,
        }
    }
}

/// Reads a terminator cost (edge header 1004): the low 16 bits of an LE integer of any
/// width. C 0.29.3 sends int32, Go SDKs uint16; router v0.22.39 reads the first two bytes.
pub fn parse_cost(value: HeaderValue<'_>) -> u16 {
    (value.as_u32_lenient() & 0xffff) as u16
}

/// Edge error codes (header 1014; `sdkgo:ziti/edge/messages.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 1: internal error.
    Internal = 1,
    /// 2: the API session is invalid.
    InvalidApiSession = 2,
    /// 3: the service session is invalid.
    InvalidSession = 3,
    /// 4: Dial session used to bind, or the reverse.
    WrongSessionType = 4,
    /// 5: this router is not allowed for the session.
    InvalidEdgeRouterForSession = 5,
    /// 6: no such service.
    InvalidService = 6,
    /// 7: tunneling not enabled.
    TunnelingNotEnabled = 7,
    /// 8: no such terminator.
    InvalidTerminator = 8,
    /// 9: bad precedence.
    InvalidPrecedence = 9,
    /// 10: bad cost.
    InvalidCost = 10,
    /// 11: the service needs end-to-end encryption and no key was sent.
    EncryptionDataMissing = 11,
}

fn bad(id: HeaderId) -> impl Fn(ValueError) -> MessageError {
    move |error| MessageError::BadHeader { id, error }
}

/// ConnId (1000): exactly 4 bytes, as Go's `GetUint32Header` requires.
fn conn_id(frame: &Frame) -> Result<u32, MessageError> {
    frame
        .require(HeaderId::CONN_ID)?
        .as_u32()
        .map_err(bad(HeaderId::CONN_ID))
}

/// Seq (1001): nobody checks it (spec §7); read leniently, 0 when absent.
fn edge_seq(frame: &Frame) -> u32 {
    frame
        .header(HeaderId::SEQ)
        .map_or(0, |v| v.as_u32_lenient())
}

/// ReplyFor (1): int32, exactly 4 bytes.
fn reply_for(frame: &Frame) -> Result<Option<i32>, MessageError> {
    frame
        .header(HeaderId::REPLY_FOR)
        .map(|v| v.as_i32().map_err(bad(HeaderId::REPLY_FOR)))
        .transpose()
}

fn optional(frame: &Frame, id: HeaderId) -> Option<&[u8]> {
    frame.header(id).map(|v| v.as_bytes())
}

/// Hello (type 0): the first frame on a new edge connection (spec §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    /// API session token (header 1002).
    pub session_token: &'a [u8],
    /// Body: `ziti-sdk-c[N]@host` from the C SDK.
    pub client_info: &'a [u8],
}

impl<'a> Hello<'a> {
    /// Parses a hello.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::HELLO)?;
        Ok(Self {
            session_token: frame.require(HeaderId::SESSION_TOKEN)?.as_bytes(),
            client_info: frame.body(),
        })
    }

    /// Appends the frame; the C SDK uses sequence 0.
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_with_window(sequence, None, out)
    }

    /// Appends the frame, offering Weft's per-stream credit with this receive window
    /// (header [`HeaderId::WEFT_STREAM_WINDOW`]) when given.
    pub fn encode_with_window(
        &self,
        sequence: i32,
        stream_window: Option<u32>,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let mut enc = FrameEncoder::new(out, ContentType::HELLO, sequence);
        enc.bytes(HeaderId::SESSION_TOKEN, self.session_token);
        if let Some(window) = stream_window {
            enc.u32(HeaderId::WEFT_STREAM_WINDOW, window);
        }
        enc.finish_with_body(self.client_info)
    }
}

/// The per-stream window a hello (or its Result) carries: present when the sender
/// speaks Weft's per-stream credit ([`Credit`]). A value that is not a uint32 counts
/// as absent.
pub fn stream_window(frame: &Frame) -> Option<u32> {
    frame
        .header(HeaderId::WEFT_STREAM_WINDOW)
        .and_then(|v| v.as_u32().ok())
        .filter(|w| *w > 0)
}

/// Result (type 2) answering a hello (spec §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelloResult<'a> {
    /// Header 2.
    pub success: bool,
    /// Header 1: the hello's sequence.
    pub reply_for: i32,
    /// Header 4: `Version|Revision|BuildDate|OS|Arch`.
    pub version: Option<&'a [u8]>,
    /// Header 0: an opaque connection id.
    pub connection_id: Option<&'a [u8]>,
    /// Body: empty on success, the reason on failure.
    pub message: &'a [u8],
}

impl<'a> HelloResult<'a> {
    /// Parses a hello Result.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::RESULT)?;
        Ok(Self {
            success: frame
                .header(HeaderId::RESULT_SUCCESS)
                .is_some_and(|v| v.as_bool()),
            reply_for: reply_for(frame)?.unwrap_or(0),
            version: optional(frame, HeaderId::HELLO_VERSION),
            connection_id: optional(frame, HeaderId::CONNECTION_ID),
            message: frame.body(),
        })
    }

    /// Appends the frame with headers 2, 1, [4], [0]; routers use
    /// [`HELLO_RESULT_SEQUENCE`].
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_with_window(sequence, None, out)
    }

    /// Appends the frame, accepting Weft's per-stream credit with this window (header
    /// [`HeaderId::WEFT_STREAM_WINDOW`]) when given: only ever to a hello that offered
    /// it, so an OpenZiti SDK never sees the header.
    pub fn encode_with_window(
        &self,
        sequence: i32,
        stream_window: Option<u32>,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let extra = stream_window.map(|w| (HeaderId::WEFT_STREAM_WINDOW, w));
        self.encode_with_u32(sequence, extra, out)
    }

    /// Appends the frame with one more u32 header when given (a Weft extension the
    /// hello offered).
    pub fn encode_with_u32(
        &self,
        sequence: i32,
        extra: Option<(HeaderId, u32)>,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let mut enc = FrameEncoder::new(out, ContentType::RESULT, sequence);
        enc.bool(HeaderId::RESULT_SUCCESS, self.success)
            .i32(HeaderId::REPLY_FOR, self.reply_for)
            .opt_bytes(HeaderId::HELLO_VERSION, self.version)
            .opt_bytes(HeaderId::CONNECTION_ID, self.connection_id);
        if let Some((id, value)) = extra {
            enc.u32(id, value);
        }
        enc.finish_with_body(self.message)
    }
}

/// Latency probe (type 3), sent by the C SDK every 60 s (spec §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyProbe<'a> {
    /// Header 128: the sender's clock (uint64 LE ms from the C SDK); echoed verbatim.
    pub probe_time: Option<&'a [u8]>,
}

impl<'a> LatencyProbe<'a> {
    /// Parses a probe.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::LATENCY)?;
        Ok(Self {
            probe_time: optional(frame, HeaderId::LATENCY_PROBE_TIME),
        })
    }

    /// Appends the frame.
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        FrameEncoder::new(out, ContentType::LATENCY, sequence)
            .opt_bytes(HeaderId::LATENCY_PROBE_TIME, self.probe_time)
            .finish(0)
    }

    /// The reply a router owes this probe, within 10 s (spec §6).
    pub fn reply(&self, probe_sequence: i32) -> LatencyReply<'a> {
        LatencyReply {
            reply_for: probe_sequence,
            probe_time: self.probe_time,
        }
    }
}

/// Result (type 2) answering a latency probe: header 1, success, header 128 echoed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyReply<'a> {
    /// Header 1: the probe's sequence.
    pub reply_for: i32,
    /// Header 128 copied from the probe.
    pub probe_time: Option<&'a [u8]>,
}

impl<'a> LatencyReply<'a> {
    /// Parses a latency reply.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::RESULT)?;
        Ok(Self {
            reply_for: reply_for(frame)?.ok_or(MessageError::MissingHeader(HeaderId::REPLY_FOR))?,
            probe_time: optional(frame, HeaderId::LATENCY_PROBE_TIME),
        })
    }

    /// Appends the frame with headers 1, 2, [128] (spec §10).
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        FrameEncoder::new(out, ContentType::RESULT, sequence)
            .i32(HeaderId::REPLY_FOR, self.reply_for)
            .bool(HeaderId::RESULT_SUCCESS, true)
            .opt_bytes(HeaderId::LATENCY_PROBE_TIME, self.probe_time)
            .finish(0)
    }
}

/// Connect (60783): an SDK dials a service (spec §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connect<'a> {
    /// SDK-chosen conn id (1000).
    pub conn_id: u32,
    /// Edge Seq (1001), 0 from the C SDK.
    pub seq: u32,
    /// Caller identity name (1008).
    pub caller_id: Option<&'a [u8]>,
    /// Dialer's crypto_kx public key (1003), when the service is encrypted.
    pub public_key: Option<&'a [u8]>,
    /// Wanted terminator instance (1006).
    pub terminator_identity: Option<&'a [u8]>,
    /// Application data for the host (1011).
    pub app_data: Option<&'a [u8]>,
    /// The stickiness token of an earlier dial (1027): a service with the `sticky`
    /// terminator strategy sends the dial to the terminator it names while that one is
    /// up and among the best (openziti/sdk-golang `DialOptions.StickinessToken`).
    pub stickiness_token: Option<&'a [u8]>,
    /// Body: the Dial session token.
    pub session_token: &'a [u8],
}

impl<'a> Connect<'a> {
    /// Parses a Connect.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::CONNECT)?;
        Ok(Self {
            conn_id: conn_id(frame)?,
            seq: edge_seq(frame),
            caller_id: optional(frame, HeaderId::CALLER_ID),
            public_key: optional(frame, HeaderId::PUBLIC_KEY),
            terminator_identity: optional(frame, HeaderId::TERMINATOR_IDENTITY),
            app_data: optional(frame, HeaderId::APP_DATA),
            stickiness_token: optional(frame, HeaderId::STICKINESS_TOKEN),
            session_token: frame.body(),
        })
    }

    /// Appends the frame with headers 1000, 1001, [1008], [1003], [1006], [1011], the C
    /// SDK's order, then [1027].
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        FrameEncoder::new(out, ContentType::CONNECT, sequence)
            .u32(HeaderId::CONN_ID, self.conn_id)
            .u32(HeaderId::SEQ, self.seq)
            .opt_bytes(HeaderId::CALLER_ID, self.caller_id)
            .opt_bytes(HeaderId::PUBLIC_KEY, self.public_key)
            .opt_bytes(HeaderId::TERMINATOR_IDENTITY, self.terminator_identity)
            .opt_bytes(HeaderId::APP_DATA, self.app_data)
            .opt_bytes(HeaderId::STICKINESS_TOKEN, self.stickiness_token)
            .finish_with_body(self.session_token)
    }
}

/// Bind (60790): an SDK hosts a service (spec §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Listener conn id (1000).
    pub conn_id: u32,
    /// Edge Seq (1001).
    pub seq: u32,
    /// Host identity name (1008).
    pub caller_id: Option<&'a [u8]>,
    /// Listener's long-lived crypto_kx public key (1003).
    pub public_key: Option<&'a [u8]>,
    /// Terminator instance identity (1006).
    pub terminator_identity: Option<&'a [u8]>,
    /// Terminator cost (1004), when sent.
    pub cost: Option<u16>,
    /// Terminator precedence (1005), when sent.
    pub precedence: Option<Precedence>,
    /// Body: the Bind session token.
    pub session_token: &'a [u8],
}

impl<'a> Bind<'a> {
    /// Parses a Bind; cost and precedence leniently (spec §9 item 8).
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::BIND)?;
        Ok(Self {
            conn_id: conn_id(frame)?,
            seq: edge_seq(frame),
            caller_id: optional(frame, HeaderId::CALLER_ID),
            public_key: optional(frame, HeaderId::PUBLIC_KEY),
            terminator_identity: optional(frame, HeaderId::TERMINATOR_IDENTITY),
            cost: frame.header(HeaderId::COST).map(parse_cost),
            precedence: frame
                .header(HeaderId::PRECEDENCE)
                .map(Precedence::parse)
                .transpose()
                .map_err(bad(HeaderId::PRECEDENCE))?,
            session_token: frame.body(),
        })
    }

    /// Appends the frame with headers 1000, 1001, [1008], [1003], [1006], [1004], [1005];
    /// cost and precedence as int32 LE, as the C SDK writes them.
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        let mut enc = FrameEncoder::new(out, ContentType::BIND, sequence);
        enc.u32(HeaderId::CONN_ID, self.conn_id)
            .u32(HeaderId::SEQ, self.seq)
            .opt_bytes(HeaderId::CALLER_ID, self.caller_id)
            .opt_bytes(HeaderId::PUBLIC_KEY, self.public_key)
            .opt_bytes(HeaderId::TERMINATOR_IDENTITY, self.terminator_identity);
        if let Some(cost) = self.cost {
            enc.i32(HeaderId::COST, i32::from(cost));
        }
        if let Some(precedence) = self.precedence {
            enc.i32(HeaderId::PRECEDENCE, precedence.as_i32());
        }
        enc.finish_with_body(self.session_token)
    }
}

/// StateConnected (60784): success reply to Connect, Bind or DialSuccess.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateConnected<'a> {
    /// Conn id (1000) of the request.
    pub conn_id: u32,
    /// Edge Seq (1001), 0 on replies.
    pub seq: u32,
    /// Header 1: the request's channel sequence.
    pub reply_for: Option<i32>,
    /// Host's public key (1003), on a Connect reply when the Connect carried one.
    pub public_key: Option<&'a [u8]>,
    /// On a Connect reply for a service with the `sticky` terminator strategy: the token
    /// naming the terminator reached (1027), for the dialer's next Connect.
    pub stickiness_token: Option<&'a [u8]>,
}

impl<'a> StateConnected<'a> {
    /// Parses a StateConnected.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::STATE_CONNECTED)?;
        Ok(Self {
            conn_id: conn_id(frame)?,
            seq: edge_seq(frame),
            reply_for: reply_for(frame)?,
            public_key: optional(frame, HeaderId::PUBLIC_KEY),
            stickiness_token: optional(frame, HeaderId::STICKINESS_TOKEN),
        })
    }

    /// Appends the frame with headers 1000, 1001, [1], [1003], [1027].
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        let mut enc = FrameEncoder::new(out, ContentType::STATE_CONNECTED, sequence);
        enc.u32(HeaderId::CONN_ID, self.conn_id)
            .u32(HeaderId::SEQ, self.seq);
        if let Some(reply_for) = self.reply_for {
            enc.i32(HeaderId::REPLY_FOR, reply_for);
        }
        enc.opt_bytes(HeaderId::PUBLIC_KEY, self.public_key)
            .opt_bytes(HeaderId::STICKINESS_TOKEN, self.stickiness_token)
            .finish(0)
    }
}

/// StateClosed (60785): a connection or listener closed, either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateClosed<'a> {
    /// Conn id (1000).
    pub conn_id: u32,
    /// Edge Seq (1001).
    pub seq: u32,
    /// Header 1, when this answers a Connect, Bind or DialSuccess.
    pub reply_for: Option<i32>,
    /// Body: the reason; never empty from a router (spec §3.3 QUIRK).
    pub reason: &'a [u8],
}

impl<'a> StateClosed<'a> {
    /// Parses a StateClosed.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::STATE_CLOSED)?;
        Ok(Self {
            conn_id: conn_id(frame)?,
            seq: edge_seq(frame),
            reply_for: reply_for(frame)?,
            reason: frame.body(),
        })
    }

    /// Appends the frame with headers 1000, 1001, [1].
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        let mut enc = FrameEncoder::new(out, ContentType::STATE_CLOSED, sequence);
        enc.u32(HeaderId::CONN_ID, self.conn_id)
            .u32(HeaderId::SEQ, self.seq);
        if let Some(reply_for) = self.reply_for {
            enc.i32(HeaderId::REPLY_FOR, reply_for);
        }
        enc.finish_with_body(self.reason)
    }
}

/// Data (60786): payload of one connection, or a FIN when [`FLAG_FIN`] is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Data<'a> {
    /// Conn id (1000).
    pub conn_id: u32,
    /// Edge Seq (1001), per-connection counter from 1.
    pub seq: u32,
    /// Flags (1010), 0 when absent.
    pub flags: u32,
    /// Body: plaintext or one secretstream message; relayed untouched.
    pub payload: &'a [u8],
}

impl<'a> Data<'a> {
    /// Parses a Data message. Flags are read leniently: any message whose first byte
    /// has bit 0 set is a FIN, as the C SDK reads it.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::DATA)?;
        Ok(Self {
            conn_id: conn_id(frame)?,
            seq: edge_seq(frame),
            flags: frame
                .header(HeaderId::FLAGS)
                .map_or(0, |v| v.as_u32_lenient()),
            payload: frame.body(),
        })
    }

    /// True when this is a half-close.
    pub fn is_fin(&self) -> bool {
        self.flags & FLAG_FIN != 0
    }

    /// Appends only the head (headers 1000, 1001, [1010] when flags are set); the caller
    /// sends the payload after it, so the payload is never copied.
    pub fn encode_head(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        let mut enc = FrameEncoder::new(out, ContentType::DATA, sequence);
        enc.u32(HeaderId::CONN_ID, self.conn_id)
            .u32(HeaderId::SEQ, self.seq);
        if self.flags != 0 {
            enc.u32(HeaderId::FLAGS, self.flags);
        }
        enc.finish(self.payload.len())
    }

    /// Appends the whole frame, payload included (copies the payload).
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_head(sequence, out)?;
        out.extend_from_slice(self.payload);
        Ok(())
    }
}

/// Credit (Weft, [`ContentType::WEFT_CREDIT`]): the sender may now receive `bytes` more
/// payload bytes on `conn_id`. Only on connections whose hello negotiated
/// [`HeaderId::WEFT_STREAM_WINDOW`]; each conn id starts with that window of credit
/// each way. A sender may start a Data frame while its credit is above zero (so one
/// frame larger than the window cannot deadlock); the receiver grants back what its
/// reader consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credit {
    /// Conn id (1000).
    pub conn_id: u32,
    /// Bytes granted (Weft header [`HeaderId::WEFT_CREDIT`]).
    pub bytes: u32,
}

impl Credit {
    /// Parses a Credit message.
    pub fn parse(frame: &Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::WEFT_CREDIT)?;
        Ok(Self {
            conn_id: conn_id(frame)?,
            bytes: frame
                .require(HeaderId::WEFT_CREDIT)?
                .as_u32()
                .map_err(bad(HeaderId::WEFT_CREDIT))?,
        })
    }

    /// Appends the frame (headers 1000 and the credit, no body).
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        FrameEncoder::new(out, ContentType::WEFT_CREDIT, sequence)
            .u32(HeaderId::CONN_ID, self.conn_id)
            .u32(HeaderId::WEFT_CREDIT, self.bytes)
            .finish(0)
    }
}

/// Dial (60787): the router asks a hosting SDK to accept a client (spec §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dial<'a> {
    /// The listener's conn id (1000).
    pub conn_id: u32,
    /// Edge Seq (1001), 0.
    pub seq: u32,
    /// Dialer's caller id (1008), possibly empty; always sent.
    pub caller_id: &'a [u8],
    /// Dialer's public key (1003), when the Connect carried one.
    pub public_key: Option<&'a [u8]>,
    /// Dialer's application data (1011), when the Connect carried it.
    pub app_data: Option<&'a [u8]>,
    /// Body: the hosting listener's Bind session token.
    pub session_token: &'a [u8],
}

impl<'a> Dial<'a> {
    /// Parses a Dial.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::DIAL)?;
        Ok(Self {
            conn_id: conn_id(frame)?,
            seq: edge_seq(frame),
            caller_id: optional(frame, HeaderId::CALLER_ID).unwrap_or_default(),
            public_key: optional(frame, HeaderId::PUBLIC_KEY),
            app_data: optional(frame, HeaderId::APP_DATA),
            session_token: frame.body(),
        })
    }

    /// Appends the frame with headers 1000, 1001, 1008, [1003], [1011].
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        FrameEncoder::new(out, ContentType::DIAL, sequence)
            .u32(HeaderId::CONN_ID, self.conn_id)
            .u32(HeaderId::SEQ, self.seq)
            .bytes(HeaderId::CALLER_ID, self.caller_id)
            .opt_bytes(HeaderId::PUBLIC_KEY, self.public_key)
            .opt_bytes(HeaderId::APP_DATA, self.app_data)
            .finish_with_body(self.session_token)
    }
}

/// DialSuccess (60788): the host accepted; the body names the new conn id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialSuccess {
    /// The listener's conn id (1000).
    pub conn_id: u32,
    /// Edge Seq (1001), 0.
    pub seq: u32,
    /// Header 1: the Dial's channel sequence.
    pub reply_for: i32,
    /// Body (uint32 LE, exactly 4 bytes): the host's new conn id for this client.
    pub new_conn_id: u32,
}

impl DialSuccess {
    /// Parses a DialSuccess; the new conn id comes from the body (spec §9 item 2).
    pub fn parse(frame: &Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::DIAL_SUCCESS)?;
        let body = HeaderValue(frame.body());
        Ok(Self {
            conn_id: conn_id(frame)?,
            seq: edge_seq(frame),
            reply_for: reply_for(frame)?.ok_or(MessageError::MissingHeader(HeaderId::REPLY_FOR))?,
            new_conn_id: body.as_u32().map_err(MessageError::BadBody)?,
        })
    }

    /// Appends the frame with headers 1000, 1001, 1, as the C SDK writes them.
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        FrameEncoder::new(out, ContentType::DIAL_SUCCESS, sequence)
            .u32(HeaderId::CONN_ID, self.conn_id)
            .u32(HeaderId::SEQ, self.seq)
            .i32(HeaderId::REPLY_FOR, self.reply_for)
            .finish_with_body(&self.new_conn_id.to_le_bytes())
    }
}

/// DialFailed (60789): the host refused; the body is the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialFailed<'a> {
    /// The listener's conn id (1000).
    pub conn_id: u32,
    /// Edge Seq (1001), 0.
    pub seq: u32,
    /// Header 1: the Dial's channel sequence.
    pub reply_for: i32,
    /// Body: why.
    pub reason: &'a [u8],
}

impl<'a> DialFailed<'a> {
    /// Parses a DialFailed.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::DIAL_FAILED)?;
        Ok(Self {
            conn_id: conn_id(frame)?,
            seq: edge_seq(frame),
            reply_for: reply_for(frame)?.ok_or(MessageError::MissingHeader(HeaderId::REPLY_FOR))?,
            reason: frame.body(),
        })
    }

    /// Appends the frame with headers 1000, 1001, 1.
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        FrameEncoder::new(out, ContentType::DIAL_FAILED, sequence)
            .u32(HeaderId::CONN_ID, self.conn_id)
            .u32(HeaderId::SEQ, self.seq)
            .i32(HeaderId::REPLY_FOR, self.reply_for)
            .finish_with_body(self.reason)
    }
}

/// Unbind (60791): a Go SDK stops hosting (the C SDK sends StateClosed instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unbind<'a> {
    /// The listener's conn id (1000).
    pub conn_id: u32,
    /// Edge Seq (1001).
    pub seq: u32,
    /// Body: the Bind session token.
    pub session_token: &'a [u8],
}

impl<'a> Unbind<'a> {
    /// Parses an Unbind.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::UNBIND)?;
        Ok(Self {
            conn_id: conn_id(frame)?,
            seq: edge_seq(frame),
            session_token: frame.body(),
        })
    }

    /// Appends the frame with headers 1000, 1001.
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        FrameEncoder::new(out, ContentType::UNBIND, sequence)
            .u32(HeaderId::CONN_ID, self.conn_id)
            .u32(HeaderId::SEQ, self.seq)
            .finish_with_body(self.session_token)
    }
}

/// Any edge-protocol message, parsed by content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EdgeMessage<'a> {
    /// Type 0.
    Hello(Hello<'a>),
    /// Type 3.
    LatencyProbe(LatencyProbe<'a>),
    /// 60783.
    Connect(Connect<'a>),
    /// 60784.
    StateConnected(StateConnected<'a>),
    /// 60785.
    StateClosed(StateClosed<'a>),
    /// 60786.
    Data(Data<'a>),
    /// 60787.
    Dial(Dial<'a>),
    /// 60788.
    DialSuccess(DialSuccess),
    /// 60789.
    DialFailed(DialFailed<'a>),
    /// 60790.
    Bind(Bind<'a>),
    /// 60791.
    Unbind(Unbind<'a>),
    /// Weft's per-stream credit.
    Credit(Credit),
    /// Any other content type (Result, Ping, Probe, UpdateBind, ...): the raw frame.
    Other(&'a Frame),
}

impl<'a> EdgeMessage<'a> {
    /// Parses `frame` as the message its content type names.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        Ok(match frame.content_type() {
            ContentType::HELLO => Self::Hello(Hello::parse(frame)?),
            ContentType::LATENCY => Self::LatencyProbe(LatencyProbe::parse(frame)?),
            ContentType::CONNECT => Self::Connect(Connect::parse(frame)?),
            ContentType::STATE_CONNECTED => Self::StateConnected(StateConnected::parse(frame)?),
            ContentType::STATE_CLOSED => Self::StateClosed(StateClosed::parse(frame)?),
            ContentType::DATA => Self::Data(Data::parse(frame)?),
            ContentType::DIAL => Self::Dial(Dial::parse(frame)?),
            ContentType::DIAL_SUCCESS => Self::DialSuccess(DialSuccess::parse(frame)?),
            ContentType::DIAL_FAILED => Self::DialFailed(DialFailed::parse(frame)?),
            ContentType::BIND => Self::Bind(Bind::parse(frame)?),
            ContentType::UNBIND => Self::Unbind(Unbind::parse(frame)?),
            ContentType::WEFT_CREDIT => Self::Credit(Credit::parse(frame)?),
            _ => Self::Other(frame),
        })
    }

    /// Re-encodes the message as a whole frame with `sequence` (used by round-trip tests
    /// and the fuzz target). `Other` frames are copied as they are.
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Self::Hello(m) => m.encode(sequence, out),
            Self::LatencyProbe(m) => m.encode(sequence, out),
            Self::Connect(m) => m.encode(sequence, out),
            Self::StateConnected(m) => m.encode(sequence, out),
            Self::StateClosed(m) => m.encode(sequence, out),
            Self::Data(m) => m.encode(sequence, out),
            Self::Dial(m) => m.encode(sequence, out),
            Self::DialSuccess(m) => m.encode(sequence, out),
            Self::DialFailed(m) => m.encode(sequence, out),
            Self::Bind(m) => m.encode(sequence, out),
            Self::Unbind(m) => m.encode(sequence, out),
            Self::Credit(m) => m.encode(sequence, out),
            Self::Other(frame) => frame.encode(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decoded, Decoder, Limits};

    fn one_frame(bytes: &[u8]) -> Frame {
        let mut d = Decoder::new(Limits::DEFAULT);
        d.extend_from_slice(bytes);
        match d.decode() {
            Ok(Decoded::Frame(f)) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn precedence_and_cost_are_lenient() {
        assert_eq!(
            Precedence::parse(HeaderValue(&[1, 0, 0, 0])),
            Ok(Precedence::Required)
        );
        assert_eq!(Precedence::parse(HeaderValue(&[2])), Ok(Precedence::Failed));
        assert_eq!(
            Precedence::parse(HeaderValue(&[7])),
            Err(ValueError::OutOfRange(7))
        );
        assert_eq!(parse_cost(HeaderValue(&[0x10, 0x27, 0, 0])), 10000);
        assert_eq!(parse_cost(HeaderValue(&[0x10, 0x27])), 10000);
        assert_eq!(parse_cost(HeaderValue(&[0xff, 0xff, 0x01, 0])), 0xffff);
    }

    #[test]
    fn wrong_type_and_missing_headers_are_errors() {
        let mut out = BytesMut::new();
        StateClosed {
            conn_id: 1,
            seq: 0,
            reply_for: None,
            reason: b"x",
        }
        .encode(1, &mut out)
        .unwrap();
        let frame = one_frame(&out);
        assert!(matches!(
            Connect::parse(&frame),
            Err(MessageError::WrongContentType { .. })
        ));
        let mut out = BytesMut::new();
        FrameEncoder::new(&mut out, ContentType::CONNECT, 1)
            .finish_with_body(b"tok")
            .unwrap();
        assert_eq!(
            Connect::parse(&one_frame(&out)),
            Err(MessageError::MissingHeader(HeaderId::CONN_ID))
        );
    }

    #[test]
    fn dial_success_needs_a_four_byte_body() {
        let mut out = BytesMut::new();
        FrameEncoder::new(&mut out, ContentType::DIAL_SUCCESS, 1)
            .u32(HeaderId::CONN_ID, 1)
            .i32(HeaderId::REPLY_FOR, 3)
            .finish_with_body(&[1, 2])
            .unwrap();
        assert!(matches!(
            DialSuccess::parse(&one_frame(&out)),
            Err(MessageError::BadBody(ValueError::WrongLength { .. }))
        ));
    }

    #[test]
    fn fin_flag() {
        let mut out = BytesMut::new();
        Data {
            conn_id: 3,
            seq: 9,
            flags: FLAG_FIN,
            payload: b"",
        }
        .encode(4, &mut out)
        .unwrap();
        let frame = one_frame(&out);
        let data = Data::parse(&frame).unwrap();
        assert!(data.is_fin());
        assert_eq!(data.seq, 9);
    }

    #[test]
    fn the_stream_window_is_offered_and_accepted_only_when_asked() {
        let mut out = BytesMut::new();
        let hello = Hello {
            session_token: b"t",
            client_info: b"weft",
        };
        hello.encode(0, &mut out).unwrap();
        let plain = one_frame(&out.split());
        assert_eq!(stream_window(&plain), None);
        assert_eq!(Hello::parse(&plain).unwrap(), hello);
        hello
            .encode_with_window(0, Some(1 << 20), &mut out)
            .unwrap();
        let offered = one_frame(&out.split());
        assert_eq!(stream_window(&offered), Some(1 << 20));
        assert_eq!(Hello::parse(&offered).unwrap(), hello);

        let result = HelloResult {
            success: true,
            reply_for: 0,
            version: None,
            connection_id: None,
            message: b"",
        };
        result
            .encode_with_window(HELLO_RESULT_SEQUENCE, Some(4 << 20), &mut out)
            .unwrap();
        let accepted = one_frame(&out.split());
        assert_eq!(stream_window(&accepted), Some(4 << 20));
        assert_eq!(HelloResult::parse(&accepted).unwrap(), result);
    }

    #[test]
    fn credit_round_trips_and_needs_both_headers() {
        let mut out = BytesMut::new();
        let credit = Credit {
            conn_id: 7,
            bytes: 65_536,
        };
        credit.encode(3, &mut out).unwrap();
        let frame = one_frame(&out.split());
        assert_eq!(frame.content_type(), ContentType::WEFT_CREDIT);
        assert_eq!(
            EdgeMessage::parse(&frame).unwrap(),
            EdgeMessage::Credit(credit)
        );
        FrameEncoder::new(&mut out, ContentType::WEFT_CREDIT, 4)
            .u32(HeaderId::CONN_ID, 7)
            .finish(0)
            .unwrap();
        let missing = one_frame(&out.split());
        assert!(Credit::parse(&missing).is_err());
    }
}
