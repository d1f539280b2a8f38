//! What an [`super::EdgeConnection`] produces.

use bytes::Bytes;
use weft_wire::edge::Precedence;

/// A router-wide circuit id, chosen by the forwarding layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CircuitId(pub u64);

/// Longest head kept inline: a relayed Data head is at most 56 bytes (prefix 20, then
/// ConnId, Seq and Flags at 12 bytes each).
pub const INLINE_HEAD: usize = 64;

/// A frame's prefix and header block. Data heads live inline, so relaying payload
/// allocates nothing; larger heads (hello replies, dials) are rare and go on the heap.
#[derive(Clone, PartialEq, Eq)]
pub enum Head {
    /// Up to [`INLINE_HEAD`] bytes.
    Inline {
        /// Storage; the first `len` bytes are the head.
        bytes: [u8; INLINE_HEAD],
        /// Bytes in use.
        len: u8,
    },
    /// A longer head.
    Heap(Bytes),
}

impl Head {
    /// Copies `head` (inline when it fits).
    pub fn new(head: &[u8]) -> Self {
        match u8::try_from(head.len()) {
            Ok(len) if head.len() <= INLINE_HEAD => {
                let mut bytes = [0u8; INLINE_HEAD];
                if let Some(slot) = bytes.get_mut(..head.len()) {
                    slot.copy_from_slice(head);
                }
                Self::Inline { bytes, len }
            }
            _ => Self::Heap(Bytes::copy_from_slice(head)),
        }
    }
}

impl std::ops::Deref for Head {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Inline { bytes, len } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Self::Heap(b) => b,
        }
    }
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Head({} bytes)", self.len())
    }
}

/// One frame to write: `head` (prefix and headers) then `payload`, as one vectored write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Prefix and header block.
    pub head: Head,
    /// Body; shares memory with the frame it was received in when relayed.
    pub payload: Bytes,
    /// For relayed Data, the conn id it was sent on; the driver reports the transmit
    /// back once written so the circuit's window opens again.
    pub data_conn_id: Option<u32>,
}

impl Transmit {
    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.payload.len()
    }

    /// True when there is nothing to write (never produced).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why the whole edge connection must close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// No hello within the deadline.
    HelloTimeout,
    /// The hello's API session was refused (after acknowledging it, spec §2.4).
    HelloRejected(crate::sessions::HelloRejection),
    /// The first frame was not a hello.
    ExpectedHello,
    /// The byte stream or a message was malformed.
    Malformed(String),
    /// The connection's API session was removed by the controller.
    ApiSessionRevoked,
    /// The API session already holds as many edge connections on this shard as
    /// allowed (`ForwardConfig::max_conns_per_api_session`).
    TooManyConnections,
    /// The socket failed or the peer went away.
    Lost,
}

/// What the forwarding layer must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EdgeEvent {
    /// The hello was accepted: the connection belongs to this API session.
    Authenticated {
        /// API session id.
        api_session_id: String,
        /// Identity id.
        identity_id: String,
    },
    /// The SDK dials a service: find a terminator, then answer with
    /// `connect_succeeded` or `connect_failed`.
    Dial {
        /// The SDK's conn id.
        conn_id: u32,
        /// Session id of the Dial session.
        session_id: String,
        /// Service to reach.
        service_id: String,
        /// Dialer identity name (header 1008).
        caller_id: Bytes,
        /// Dialer public key (1003), when the service is encrypted.
        public_key: Option<Bytes>,
        /// Requested terminator instance (1006).
        terminator_identity: Option<Bytes>,
        /// Application data (1011).
        app_data: Option<Bytes>,
        /// Whether the service follows stickiness tokens, and the one sent (1027).
        stickiness: Stickiness,
    },
    /// The SDK hosts a service: register a terminator, then answer with
    /// `bind_succeeded` or `bind_failed`.
    Bind {
        /// The SDK's listener id.
        conn_id: u32,
        /// Session id of the Bind session.
        session_id: String,
        /// Hosted service.
        service_id: String,
        /// Listener public key (1003).
        public_key: Option<Bytes>,
        /// Terminator instance identity (1006).
        terminator_identity: Option<Bytes>,
        /// Cost (1004), 0 when absent.
        cost: u16,
        /// Precedence (1005).
        precedence: Precedence,
    },
    /// The host accepted a dial sent with `dial_host`; its new conn id now carries the
    /// circuit.
    HostAccepted {
        /// The circuit.
        circuit: CircuitId,
        /// The host's new conn id.
        conn_id: u32,
    },
    /// The host refused, timed out, or went away before answering a dial.
    HostRefused {
        /// The circuit.
        circuit: CircuitId,
        /// Why.
        reason: String,
    },
    /// Payload from the SDK for a connected conn id (a FIN when `fin`).
    Data {
        /// The SDK's conn id.
        conn_id: u32,
        /// The body, untouched.
        payload: Bytes,
        /// Half-close flag.
        fin: bool,
    },
    /// A connected (or dialing) conn id is gone: tear down its circuit. Sent whether the
    /// SDK closed it or the router did.
    ConnClosed {
        /// The conn id.
        conn_id: u32,
        /// Why, which decides what the far side is told.
        cause: ConnEnd,
    },
    /// A listener is gone: remove its terminator.
    Unbound {
        /// The listener id.
        conn_id: u32,
    },
    /// Close the whole connection (after writing what is queued).
    Close(CloseReason),
}

/// Why a conn id ended, as its circuit's far side is told (the StateClosed body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnEnd {
    /// The SDK closed it: the far side sees a normal end of stream.
    Closed,
    /// The SDK closed it with a reason (its side failed, e.g. `weft tunnel`'s local
    /// socket was reset): the far side sees an error.
    Aborted,
    /// The controller removed the session it used.
    Revoked,
    /// Its edge connection ended (lost, malformed, API session revoked).
    Lost,
}

impl ConnEnd {
    /// The StateClosed body for the far side. Only "closed by peer" reads as a clean end
    /// in Weft's SDK; the C SDK reports every unsolicited close the same way.
    pub fn far_side_reason(self) -> &'static str {
        match self {
            Self::Closed => "closed by peer",
            Self::Aborted => "peer aborted",
            Self::Revoked => "peer session closed",
            Self::Lost => "peer is gone",
        }
    }
}

/// How a dial treats stickiness tokens (edge header 1027; openziti/sdk-golang
/// `DialOptions.StickinessToken`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stickiness {
    /// The service's terminator strategy is not `sticky`: a token is ignored and the
    /// reply carries none.
    Off,
    /// It is: the terminator the token names (the one an earlier dial reached) is
    /// preferred while it is up and among the best by precedence, and the reply names
    /// the terminator reached.
    On(Option<Bytes>),
}
