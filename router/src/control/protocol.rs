//! Sans-IO control-channel client: the router's side of `docs/wire-format.md` §8.
//!
//! Feed received bytes to [`ControlProtocol::handle_bytes`], take decoded messages from
//! [`ControlProtocol::poll_event`] and bytes to send from
//! [`ControlProtocol::poll_transmit`]. The hello is queued at construction. Requests
//! are numbered by their channel sequence, which is the [`RequestId`] the reply names
//! in its reply-for header. StateUpdates must carry consecutive revisions; on a gap the
//! protocol drops updates, sends `RouterHello { resync: true }` and waits for the fresh
//! StateSync.
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)

use std::collections::{HashSet, VecDeque};

use bytes::BytesMut;
use weft_wire::control::{ControlMessage, pb};
use weft_wire::{ContentType, Decoded, Decoder, Frame, HeaderId, Limits};

/// Id of a request: the channel sequence of the frame that carried it.
pub type RequestId = i32;

/// What the controller sent, decoded and checked.
#[derive(Debug, Clone, PartialEq)]
pub enum ProtocolEvent {
    /// The controller accepted the hello.
    HelloAck(pb::HelloAck),
    /// Full state; replaces everything held.
    Sync(pb::StateSync),
    /// The next revision's changes (always consecutive to what came before).
    Update(pb::StateUpdate),
    /// A CreateTerminatorRequest succeeded.
    TerminatorCreated {
        /// The request.
        request_id: RequestId,
        /// The terminator the controller stored.
        terminator: pb::Terminator,
    },
    /// A terminator request (create or remove) failed.
    TerminatorFailed {
        /// The request.
        request_id: RequestId,
        /// Machine-readable code, e.g. `INVALID_SESSION`.
        code: String,
        /// Human-readable reason.
        message: String,
    },
    /// The routers this router may link with (replaces the last list).
    Peers(pb::Peers),
    /// The 3rd-party CAs edge clients may chain to (replaces the last list).
    TrustedCas(pb::TrustedCas),
    /// The controller's answer to a [`ControlProtocol::circuit_request`]: the route, or
    /// why there is none.
    CircuitRouted {
        /// The request.
        request_id: RequestId,
        /// The circuit, or the reason (code and message).
        result: Result<pb::CircuitResponse, String>,
    },
    /// The controller asks to install a route; answer with
    /// [`ControlProtocol::route_reply`].
    Route {
        /// The Route's sequence, which the reply names.
        request_id: RequestId,
        /// The route.
        route: pb::Route,
    },
    /// The controller takes a circuit down.
    CircuitClosed(pb::CircuitClosed),
    /// An update did not follow the held revision; a resync was requested.
    ResyncRequested {
        /// Revision held.
        held: u64,
        /// Revision received.
        got: u64,
    },
}

/// Errors that end the connection.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The byte stream is not valid framing.
    #[error("malformed frame: {0}")]
    Decode(#[from] weft_wire::DecodeError),
    /// A body is not the protobuf its content type names.
    #[error("bad message: {0}")]
    Message(#[from] weft_wire::MessageError),
    /// A frame could not be encoded.
    #[error("encode failed: {0}")]
    Encode(#[from] weft_wire::EncodeError),
    /// The controller refused the hello.
    #[error("hello refused: {code}: {message}")]
    HelloRefused {
        /// Error code.
        code: String,
        /// Reason.
        message: String,
    },
    /// A message arrived that is not allowed at this point.
    #[error("unexpected content type {0:?} before the hello was acknowledged")]
    Unexpected(ContentType),
    /// A request was made before the controller acknowledged the hello.
    #[error("not connected: the hello is not acknowledged yet")]
    NotReady,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Hello sent, waiting for HelloAck.
    AwaitingAck,
    /// Hello acknowledged, waiting for the first StateSync.
    AwaitingSync,
    /// Following updates.
    Ready,
    /// A resync was requested; updates are dropped until the next StateSync.
    Resyncing,
}

/// The router's side of one control connection.
#[derive(Debug)]
pub struct ControlProtocol {
    decoder: Decoder,
    out: BytesMut,
    next_seq: i32,
    hello: pb::RouterHello,
    hello_seq: i32,
    phase: Phase,
    revision: u64,
    pending_creates: HashSet<RequestId>,
    pending_circuits: HashSet<RequestId>,
    events: VecDeque<ProtocolEvent>,
}

impl ControlProtocol {
    /// A new connection: queues `hello` (with `resync` cleared) as the first frame, with
    /// sequence `first_seq`. Choosing `first_seq` after the previous connection's last
    /// sequence keeps request ids unique across reconnects.
    pub fn new(mut hello: pb::RouterHello, first_seq: i32) -> Result<Self, ProtocolError> {
        hello.resync = false;
        let mut p = Self {
            decoder: Decoder::new(Limits::HELLO),
            out: BytesMut::new(),
            next_seq: first_seq,
            hello,
            hello_seq: first_seq,
            phase: Phase::AwaitingAck,
            revision: 0,
            pending_creates: HashSet::new(),
            pending_circuits: HashSet::new(),
            events: VecDeque::new(),
        };
        let hello = p.hello.clone();
        p.hello_seq = p.send(&hello, None)?;
        Ok(p)
    }

    /// The sequence the next frame will carry.
    pub fn next_sequence(&self) -> i32 {
        self.next_seq
    }

    /// The revision of the state last applied (0 before the first StateSync).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Whether the hello was acknowledged (requests may be sent).
    pub fn is_ready(&self) -> bool {
        self.phase != Phase::AwaitingAck
    }

    /// Create requests still waiting for their reply (failed by the caller when the
    /// connection ends).
    pub fn pending_creates(&self) -> impl Iterator<Item = RequestId> + '_ {
        self.pending_creates.iter().copied()
    }

    fn send<M: ControlMessage>(
        &mut self,
        msg: &M,
        reply_for: Option<i32>,
    ) -> Result<i32, ProtocolError> {
        let seq = self.next_seq;
        msg.encode_frame(seq, reply_for, &mut self.out)?;
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(seq)
    }

    /// Queues a CreateTerminatorRequest; its reply comes back as
    /// [`ProtocolEvent::TerminatorCreated`] or [`ProtocolEvent::TerminatorFailed`].
    pub fn create_terminator(
        &mut self,
        req: &pb::CreateTerminatorRequest,
    ) -> Result<RequestId, ProtocolError> {
        if !self.is_ready() {
            return Err(ProtocolError::NotReady);
        }
        let id = self.send(req, None)?;
        self.pending_creates.insert(id);
        Ok(id)
    }

    /// Queues a RemoveTerminatorRequest; only a failure is answered
    /// ([`ProtocolEvent::TerminatorFailed`]).
    pub fn remove_terminator(&mut self, terminator_id: &str) -> Result<RequestId, ProtocolError> {
        if !self.is_ready() {
            return Err(ProtocolError::NotReady);
        }
        let req = pb::RemoveTerminatorRequest {
            terminator_id: terminator_id.to_string(),
        };
        self.send(&req, None)
    }

    /// Circuit requests still waiting for their reply (failed by the caller when the
    /// connection ends).
    pub fn pending_circuits(&self) -> impl Iterator<Item = RequestId> + '_ {
        self.pending_circuits.iter().copied()
    }

    /// Queues a CircuitRequest; its answer comes back as
    /// [`ProtocolEvent::CircuitRouted`].
    pub fn circuit_request(
        &mut self,
        req: &pb::CircuitRequest,
    ) -> Result<RequestId, ProtocolError> {
        if !self.is_ready() {
            return Err(ProtocolError::NotReady);
        }
        let id = self.send(req, None)?;
        self.pending_circuits.insert(id);
        Ok(id)
    }

    /// Answers the Route `request_id`: RouteResponse, or ErrorReply with `error`.
    pub fn route_reply(
        &mut self,
        request_id: RequestId,
        circuit_id: u64,
        error: Option<&str>,
    ) -> Result<(), ProtocolError> {
        if !self.is_ready() {
            return Err(ProtocolError::NotReady);
        }
        match error {
            None => self.send(&pb::RouteResponse { circuit_id }, Some(request_id))?,
            Some(message) => self.send(
                &pb::ErrorReply {
                    code: "ROUTE_FAILED".into(),
                    message: message.into(),
                },
                Some(request_id),
            )?,
        };
        Ok(())
    }

    /// Queues a RerouteRequest (no reply; a reroute Route follows, or a CircuitClosed).
    pub fn reroute_request(&mut self, request: &pb::RerouteRequest) -> Result<(), ProtocolError> {
        if !self.is_ready() {
            return Err(ProtocolError::NotReady);
        }
        self.send(request, None).map(|_| ())
    }

    /// Queues a CircuitClosed (no reply).
    pub fn circuit_closed(&mut self, msg: &pb::CircuitClosed) -> Result<(), ProtocolError> {
        if !self.is_ready() {
            return Err(ProtocolError::NotReady);
        }
        self.send(msg, None).map(|_| ())
    }

    /// Queues a LinkStatus (no reply).
    pub fn link_status(&mut self, status: &pb::LinkStatus) -> Result<(), ProtocolError> {
        if !self.is_ready() {
            return Err(ProtocolError::NotReady);
        }
        self.send(status, None).map(|_| ())
    }

    /// Asks the controller for a full StateSync (a hello with `resync` set); updates are
    /// dropped until it arrives. Does nothing while a resync is already outstanding.
    pub fn request_resync(&mut self) -> Result<(), ProtocolError> {
        match self.phase {
            Phase::AwaitingAck => Err(ProtocolError::NotReady),
            Phase::Resyncing => Ok(()),
            Phase::Ready | Phase::AwaitingSync => {
                let hello = pb::RouterHello {
                    resync: true,
                    ..self.hello.clone()
                };
                self.send(&hello, None)?;
                self.phase = Phase::Resyncing;
                Ok(())
            }
        }
    }

    /// Whether this connection carries only the mesh (its hello said `mesh_only` and it
    /// was not promoted since).
    pub fn is_mesh_only(&self) -> bool {
        self.hello.mesh_only
    }

    /// Makes a mesh-only connection the router's primary: sends the hello again without
    /// `mesh_only`, which the controller answers as a first hello (HelloAck, then a full
    /// StateSync); updates are dropped until that StateSync. Does nothing on a
    /// connection that is primary already.
    pub fn promote(&mut self) -> Result<(), ProtocolError> {
        if !self.hello.mesh_only {
            return Ok(());
        }
        if self.phase == Phase::AwaitingAck {
            return Err(ProtocolError::NotReady);
        }
        self.hello.mesh_only = false;
        let hello = pb::RouterHello {
            resync: true,
            ..self.hello.clone()
        };
        self.send(&hello, None)?;
        self.phase = Phase::Resyncing;
        Ok(())
    }

    /// Bytes to write to the controller, if any.
    pub fn poll_transmit(&mut self) -> Option<BytesMut> {
        (!self.out.is_empty()).then(|| self.out.split())
    }

    /// The next decoded event, if any.
    pub fn poll_event(&mut self) -> Option<ProtocolEvent> {
        self.events.pop_front()
    }

    /// Takes received bytes and decodes every whole frame in them. An error is final:
    /// the connection must be closed.
    pub fn handle_bytes(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        self.decoder.extend_from_slice(data);
        while let Decoded::Frame(frame) = self.decoder.decode()? {
            self.handle_frame(&frame)?;
        }
        Ok(())
    }

    fn handle_frame(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let reply_for = frame
            .header(HeaderId::REPLY_FOR)
            .and_then(|v| v.as_i32().ok());
        let ct = frame.content_type();
        if self.phase == Phase::AwaitingAck {
            return match ct {
                ContentType::CONTROL_HELLO_ACK if reply_for == Some(self.hello_seq) => {
                    let ack = pb::HelloAck::decode_frame(frame)?;
                    self.phase = Phase::AwaitingSync;
                    self.decoder.set_limits(Limits::DEFAULT);
                    self.events.push_back(ProtocolEvent::HelloAck(ack));
                    Ok(())
                }
                ContentType::CONTROL_ERROR => {
                    let e = pb::ErrorReply::decode_frame(frame)?;
                    Err(ProtocolError::HelloRefused {
                        code: e.code,
                        message: e.message,
                    })
                }
                other => Err(ProtocolError::Unexpected(other)),
            };
        }
        match ct {
            // The acknowledgement of a resync hello; the StateSync follows.
            ContentType::CONTROL_HELLO_ACK => {}
            ContentType::CONTROL_STATE_SYNC => {
                let sync = pb::StateSync::decode_frame(frame)?;
                self.revision = sync.revision;
                self.phase = Phase::Ready;
                self.events.push_back(ProtocolEvent::Sync(sync));
            }
            ContentType::CONTROL_STATE_UPDATE => {
                let update = pb::StateUpdate::decode_frame(frame)?;
                match self.phase {
                    Phase::Ready if update.revision == self.revision.wrapping_add(1) => {
                        self.revision = update.revision;
                        self.events.push_back(ProtocolEvent::Update(update));
                    }
                    Phase::Ready | Phase::AwaitingSync => {
                        let hello = pb::RouterHello {
                            resync: true,
                            ..self.hello.clone()
                        };
                        self.send(&hello, None)?;
                        self.phase = Phase::Resyncing;
                        self.events.push_back(ProtocolEvent::ResyncRequested {
                            held: self.revision,
                            got: update.revision,
                        });
                    }
                    Phase::Resyncing | Phase::AwaitingAck => {}
                }
            }
            ContentType::CONTROL_PEERS => {
                let peers = pb::Peers::decode_frame(frame)?;
                self.events.push_back(ProtocolEvent::Peers(peers));
            }
            ContentType::CONTROL_TRUSTED_CAS => {
                let cas = pb::TrustedCas::decode_frame(frame)?;
                self.events.push_back(ProtocolEvent::TrustedCas(cas));
            }
            ContentType::CONTROL_CREATE_TERMINATOR_RESPONSE => {
                let res = pb::CreateTerminatorResponse::decode_frame(frame)?;
                if let Some(request_id) = reply_for.filter(|r| self.pending_creates.remove(r)) {
                    self.events.push_back(ProtocolEvent::TerminatorCreated {
                        request_id,
                        terminator: res.terminator.unwrap_or_default(),
                    });
                }
            }
            ContentType::CONTROL_CIRCUIT_RESPONSE => {
                let res = pb::CircuitResponse::decode_frame(frame)?;
                if let Some(request_id) = reply_for.filter(|r| self.pending_circuits.remove(r)) {
                    self.events.push_back(ProtocolEvent::CircuitRouted {
                        request_id,
                        result: Ok(res),
                    });
                }
            }
            ContentType::CONTROL_ROUTE => {
                let route = pb::Route::decode_frame(frame)?;
                self.events.push_back(ProtocolEvent::Route {
                    request_id: frame.sequence(),
                    route,
                });
            }
            ContentType::CONTROL_CIRCUIT_CLOSED => {
                let closed = pb::CircuitClosed::decode_frame(frame)?;
                self.events.push_back(ProtocolEvent::CircuitClosed(closed));
            }
            ContentType::CONTROL_ERROR
                if reply_for.is_some_and(|r| self.pending_circuits.contains(&r)) =>
            {
                let e = pb::ErrorReply::decode_frame(frame)?;
                if let Some(request_id) = reply_for.filter(|r| self.pending_circuits.remove(r)) {
                    self.events.push_back(ProtocolEvent::CircuitRouted {
                        request_id,
                        result: Err(format!("{}: {}", e.code, e.message)),
                    });
                }
            }
            ContentType::CONTROL_ERROR => {
                let e = pb::ErrorReply::decode_frame(frame)?;
                // Terminator requests are the others answered with errors.
                if let Some(request_id) = reply_for {
                    self.pending_creates.remove(&request_id);
                    self.events.push_back(ProtocolEvent::TerminatorFailed {
                        request_id,
                        code: e.code,
                        message: e.message,
                    });
                }
            }
            // Newer controllers may send more; ignoring keeps old routers working.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> pb::RouterHello {
        pb::RouterHello {
            router_id: "r1".into(),
            version: "test".into(),
            ..Default::default()
        }
    }

    fn frame<M: ControlMessage>(msg: &M, seq: i32, reply_for: Option<i32>) -> BytesMut {
        let mut out = BytesMut::new();
        msg.encode_frame(seq, reply_for, &mut out).unwrap();
        out
    }

    /// Decodes every frame in `bytes` as (content type, sequence, reply-for, frame).
    fn frames(bytes: &[u8]) -> Vec<Frame> {
        let mut d = Decoder::new(Limits::DEFAULT);
        d.extend_from_slice(bytes);
        let mut v = Vec::new();
        while let Ok(Decoded::Frame(f)) = d.decode() {
            v.push(f);
        }
        v
    }

    fn update(revision: u64) -> pb::StateUpdate {
        pb::StateUpdate {
            revision,
            api_sessions_removed: vec![format!("a{revision}")],
            ..Default::default()
        }
    }

    /// A protocol past hello and first sync at `revision`.
    fn ready(revision: u64) -> ControlProtocol {
        let mut p = ControlProtocol::new(hello(), 1).unwrap();
        let _ = p.poll_transmit();
        let mut wire = frame(&pb::HelloAck::default(), 1, Some(1));
        wire.extend_from_slice(&frame(
            &pb::StateSync {
                revision,
                ..Default::default()
            },
            2,
            None,
        ));
        p.handle_bytes(&wire).unwrap();
        while p.poll_event().is_some() {}
        p
    }

    #[test]
    fn a_mesh_only_connection_is_promoted_by_a_second_hello_and_then_takes_state() {
        let mut p = ControlProtocol::new(
            pb::RouterHello {
                mesh_only: true,
                ..hello()
            },
            1,
        )
        .unwrap();
        let sent = frames(&p.poll_transmit().unwrap());
        assert!(pb::RouterHello::decode_frame(&sent[0]).unwrap().mesh_only);
        assert!(p.is_mesh_only());
        // Not before the hello is acknowledged.
        assert!(matches!(p.promote(), Err(ProtocolError::NotReady)));
        p.handle_bytes(&frame(&pb::HelloAck::default(), 1, Some(1)))
            .unwrap();
        assert!(matches!(p.poll_event(), Some(ProtocolEvent::HelloAck(_))));
        // Mesh messages flow without any state.
        p.link_status(&pb::LinkStatus::default()).unwrap();
        let _ = p.poll_transmit();
        p.promote().unwrap();
        assert!(!p.is_mesh_only());
        let sent = frames(&p.poll_transmit().unwrap());
        assert_eq!(sent.len(), 1);
        let again = pb::RouterHello::decode_frame(&sent[0]).unwrap();
        assert!(!again.mesh_only && again.resync, "{again:?}");
        // An update before the StateSync is dropped; the sync and what follows are taken.
        let mut wire = frame(&update(9), 2, None);
        wire.extend_from_slice(&frame(
            &pb::HelloAck::default(),
            3,
            Some(sent[0].sequence()),
        ));
        wire.extend_from_slice(&frame(
            &pb::StateSync {
                revision: 9,
                ..Default::default()
            },
            4,
            None,
        ));
        wire.extend_from_slice(&frame(&update(10), 5, None));
        p.handle_bytes(&wire).unwrap();
        assert!(matches!(p.poll_event(), Some(ProtocolEvent::Sync(s)) if s.revision == 9));
        assert!(matches!(p.poll_event(), Some(ProtocolEvent::Update(u)) if u.revision == 10));
        assert!(p.poll_event().is_none());
        // Promoting again sends nothing.
        p.promote().unwrap();
        assert!(p.poll_transmit().is_none());
    }

    #[test]
    fn hello_first_then_ack_and_sync_byte_by_byte() {
        let mut p = ControlProtocol::new(hello(), 7).unwrap();
        let out = p.poll_transmit().unwrap();
        let sent = frames(&out);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].content_type(), ContentType::CONTROL_ROUTER_HELLO);
        assert_eq!(sent[0].sequence(), 7);
        assert_eq!(pb::RouterHello::decode_frame(&sent[0]).unwrap(), hello());
        assert!(p.poll_transmit().is_none());
        assert!(matches!(
            p.create_terminator(&pb::CreateTerminatorRequest::default()),
            Err(ProtocolError::NotReady)
        ));

        let mut wire = frame(
            &pb::HelloAck {
                controller_id: "c".into(),
                ..Default::default()
            },
            1,
            Some(7),
        );
        wire.extend_from_slice(&frame(
            &pb::StateSync {
                revision: 5,
                ..Default::default()
            },
            2,
            None,
        ));
        wire.extend_from_slice(&frame(&update(6), 3, None));
        for b in &wire {
            p.handle_bytes(&[*b]).unwrap();
        }
        assert!(
            matches!(p.poll_event(), Some(ProtocolEvent::HelloAck(a)) if a.controller_id == "c")
        );
        assert!(matches!(p.poll_event(), Some(ProtocolEvent::Sync(s)) if s.revision == 5));
        assert_eq!(p.poll_event(), Some(ProtocolEvent::Update(update(6))));
        assert_eq!(p.poll_event(), None);
        assert_eq!(p.revision(), 6);
    }

    #[test]
    fn ack_must_answer_the_hello_and_refusal_is_an_error() {
        let mut p = ControlProtocol::new(hello(), 1).unwrap();
        let wrong = frame(&pb::HelloAck::default(), 1, Some(99));
        assert!(matches!(
            p.handle_bytes(&wrong),
            Err(ProtocolError::Unexpected(ContentType::CONTROL_HELLO_ACK))
        ));
        let mut p = ControlProtocol::new(hello(), 1).unwrap();
        let refusal = frame(
            &pb::ErrorReply {
                code: "WRONG_ROUTER".into(),
                message: "no".into(),
            },
            1,
            Some(1),
        );
        assert!(matches!(
            p.handle_bytes(&refusal),
            Err(ProtocolError::HelloRefused { code, .. }) if code == "WRONG_ROUTER"
        ));
    }

    #[test]
    fn replies_are_matched_by_request_sequence() {
        let mut p = ready(1);
        let req = pb::CreateTerminatorRequest {
            session_id: "s".into(),
            ..Default::default()
        };
        let a = p.create_terminator(&req).unwrap();
        let b = p.create_terminator(&req).unwrap();
        let r = p.remove_terminator("t9").unwrap();
        assert_eq!((a, b, r), (2, 3, 4));
        let sent = frames(&p.poll_transmit().unwrap());
        let seqs: Vec<_> = sent.iter().map(Frame::sequence).collect();
        assert_eq!(seqs, [2, 3, 4]);
        assert_eq!(
            pb::RemoveTerminatorRequest::decode_frame(&sent[2])
                .unwrap()
                .terminator_id,
            "t9"
        );

        let t = pb::Terminator {
            id: "t1".into(),
            ..Default::default()
        };
        let mut wire = frame(
            &pb::ErrorReply {
                code: "INVALID_SESSION".into(),
                message: "dial".into(),
            },
            10,
            Some(b),
        );
        wire.extend_from_slice(&frame(
            &pb::CreateTerminatorResponse {
                terminator: Some(t.clone()),
            },
            11,
            Some(a),
        ));
        // A response nobody asked for is ignored.
        wire.extend_from_slice(&frame(
            &pb::CreateTerminatorResponse {
                terminator: Some(t.clone()),
            },
            12,
            Some(77),
        ));
        p.handle_bytes(&wire).unwrap();
        assert_eq!(
            p.poll_event(),
            Some(ProtocolEvent::TerminatorFailed {
                request_id: b,
                code: "INVALID_SESSION".into(),
                message: "dial".into()
            })
        );
        assert_eq!(
            p.poll_event(),
            Some(ProtocolEvent::TerminatorCreated {
                request_id: a,
                terminator: t
            })
        );
        assert_eq!(p.poll_event(), None);
        assert_eq!(p.pending_creates().count(), 0);
    }

    #[test]
    fn requested_resync_sends_one_hello_and_drops_updates_until_sync() {
        let mut p = ControlProtocol::new(hello(), 1).unwrap();
        let _ = p.poll_transmit();
        assert!(matches!(p.request_resync(), Err(ProtocolError::NotReady)));
        let mut p = ready(3);
        p.request_resync().unwrap();
        // A second request while one is outstanding sends nothing more.
        p.request_resync().unwrap();
        let sent = frames(&p.poll_transmit().unwrap());
        assert_eq!(sent.len(), 1);
        let h = pb::RouterHello::decode_frame(&sent[0]).unwrap();
        assert!(h.resync);
        p.handle_bytes(&frame(&update(4), 5, None)).unwrap();
        assert_eq!(p.poll_event(), None);
        let sync = pb::StateSync {
            revision: 9,
            ..Default::default()
        };
        let mut wire = frame(&pb::HelloAck::default(), 6, Some(sent[0].sequence()));
        wire.extend_from_slice(&frame(&sync, 7, None));
        p.handle_bytes(&wire).unwrap();
        assert_eq!(p.poll_event(), Some(ProtocolEvent::Sync(sync)));
        assert_eq!(p.revision(), 9);
    }

    #[test]
    fn revision_gap_requests_resync_and_drops_until_sync() {
        let mut p = ready(3);
        let mut wire = frame(&update(4), 5, None);
        wire.extend_from_slice(&frame(&update(6), 6, None));
        wire.extend_from_slice(&frame(&update(7), 7, None));
        p.handle_bytes(&wire).unwrap();
        assert_eq!(p.poll_event(), Some(ProtocolEvent::Update(update(4))));
        assert_eq!(
            p.poll_event(),
            Some(ProtocolEvent::ResyncRequested { held: 4, got: 6 })
        );
        // Update 7 is dropped while the resync is outstanding.
        assert_eq!(p.poll_event(), None);
        let sent = frames(&p.poll_transmit().unwrap());
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].content_type(), ContentType::CONTROL_ROUTER_HELLO);
        let h = pb::RouterHello::decode_frame(&sent[0]).unwrap();
        assert!(h.resync);
        assert_eq!(h.router_id, "r1");

        let mut wire = frame(&pb::HelloAck::default(), 8, Some(sent[0].sequence()));
        wire.extend_from_slice(&frame(
            &pb::StateSync {
                revision: 7,
                ..Default::default()
            },
            9,
            None,
        ));
        wire.extend_from_slice(&frame(&update(8), 10, None));
        p.handle_bytes(&wire).unwrap();
        assert!(matches!(p.poll_event(), Some(ProtocolEvent::Sync(s)) if s.revision == 7));
        assert_eq!(p.poll_event(), Some(ProtocolEvent::Update(update(8))));
        assert_eq!(p.revision(), 8);
    }

    #[test]
    fn garbage_is_a_final_error() {
        let mut p = ControlProtocol::new(hello(), 1).unwrap();
        assert!(matches!(
            p.handle_bytes(&[0xde; 20]),
            Err(ProtocolError::Decode(_))
        ));
    }
}
