//! The forwarder's links to other routers: one [`LinkSession`] per link connection,
//! keyed like edge connections by a driver-assigned [`ConnKey`], with the same driving
//! contract (`poll_ready` → [`Forwarder::poll_link_transmit`], timers through
//! `poll_timeout`/`handle_timeout`, [`Forwarder::link_wants_read`]).
//!
//! A link to a router may be several connections (the dialer's `[link] connections`,
//! each numbered in its hello). A circuit rides one of them, the same on both routers
//! when they see the same connections up ([`Forwarder::link_for`]); when they do not,
//! the router that routed the circuit onto another connection moves it there on its
//! start ([`LinkEvent::StartUnheld`]). A listener keeps one connection per number: a
//! new one replaces the old.
//!
//! What links tell the controller leaves as [`ControlRequest::LinkStatus`], per router
//! at the other end whatever the connections: up when the first connection is, the
//! measured latency (at most every [`LATENCY_REPORT_INTERVAL`], or at once when it
//! moved by a quarter), down with the reason when the last one is lost.

use std::time::{Duration, Instant};

use weft_wire::control::pb;

use super::{ConnKey, ControlRequest, Forwarder, LinkLeg};
use crate::credit::Drained;
use crate::link::session::{LinkConfig, LinkError, LinkEvent, LinkSession, Role, Transmit};

/// Least time between two latency reports of one link.
pub const LATENCY_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// One link connection.
#[derive(Debug)]
pub(super) struct LinkState {
    pub(super) session: LinkSession,
    /// Whether this router dialled it.
    pub(super) dialed: bool,
    /// The router at the other end, once the hello succeeded.
    pub(super) peer: Option<String>,
    /// The deadline last pushed to the timer heap.
    pub(super) armed: Option<Instant>,
    /// The latency last reported, and when.
    reported: Option<(Duration, Instant)>,
    /// Times payload of a circuit waited for this link's credit.
    pub(super) credit_stalls: u64,
}

/// A link as metrics and logs see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Its connection key.
    pub key: ConnKey,
    /// The router at the other end (`None` during the hello).
    pub peer: Option<String>,
    /// Whether this router dialled it.
    pub dialed: bool,
    /// Which of the dialer's connections of the link it is.
    pub connection: u32,
    /// The smoothed round trip, once measured.
    pub latency: Option<Duration>,
    /// Circuits it carries.
    pub circuits: usize,
    /// What crossed it.
    pub traffic: crate::link::session::Traffic,
    /// Times payload of a circuit waited for its credit (a reader downstream slower
    /// than the sender).
    pub credit_stalls: u64,
    /// Its round trips per bucket of [`crate::link::health::RTT_BUCKETS_US`], and their
    /// sum in microseconds.
    pub rtt: ([u64; crate::link::health::RTT_BUCKETS_US.len() + 1], u64),
}

impl Forwarder {
    /// A link connection whose TLS handshake finished, in `role` (a dialer's hello goes
    /// out first). The listener side's `role` names the router the dialer's verified
    /// leaf certificate belongs to.
    pub fn add_link(
        &mut self,
        now: Instant,
        key: ConnKey,
        config: LinkConfig,
        role: Role,
    ) -> Result<(), LinkError> {
        let dialed = matches!(role, Role::Dialer { .. });
        let session = LinkSession::new(config, role, now)?;
        self.links.insert(
            key,
            LinkState {
                session,
                dialed,
                peer: None,
                armed: None,
                reported: None,
                credit_stalls: 0,
            },
        );
        self.after_link_input(now, key);
        Ok(())
    }

    /// Bytes read from the link `key`. An error ends the link: the driver closes the
    /// connection and calls [`Self::link_lost`].
    pub fn link_received(
        &mut self,
        now: Instant,
        key: ConnKey,
        data: &[u8],
    ) -> Result<(), LinkError> {
        let Some(link) = self.links.get_mut(&key) else {
            return Err(LinkError::NotUp);
        };
        link.session.receive_buffer().extend_from_slice(data);
        self.link_handle_received(now, key)
    }

    /// The receive buffer of the link `key`, to append what was received to; `None` for
    /// an unknown link.
    pub fn link_receive_buffer(&mut self, key: ConnKey) -> Option<&mut bytes::BytesMut> {
        Some(self.links.get_mut(&key)?.session.receive_buffer())
    }

    /// Processes what was appended to the receive buffer of the link `key`.
    pub fn link_handle_received(&mut self, now: Instant, key: ConnKey) -> Result<(), LinkError> {
        loop {
            let Some(link) = self.links.get_mut(&key) else {
                return Err(LinkError::NotUp);
            };
            let result = link.session.handle_received(now);
            // Events first: a start the session handed up is taken or refused before
            // the frames after it (perhaps its data) are read.
            self.after_link_input(now, key);
            result?;
            if !self
                .links
                .get(&key)
                .is_some_and(|l| l.session.stopped_for_start())
            {
                return Ok(());
            }
        }
    }

    /// The next frame to write on the link `key`.
    pub fn poll_link_transmit(&mut self, key: ConnKey) -> Option<Transmit> {
        self.links.get_mut(&key)?.session.poll_transmit()
    }

    /// Whether the driver should read from the link `key`.
    pub fn link_wants_read(&self, key: ConnKey) -> bool {
        self.links.get(&key).is_some_and(|l| l.session.wants_read())
    }

    /// The next link to close (its session failed at a deadline), with why; the driver
    /// closes the connection and calls [`Self::link_lost`].
    pub fn poll_link_close(&mut self) -> Option<(ConnKey, String)> {
        self.link_closes.pop_front()
    }

    /// Whether `key` is a link (not an edge connection).
    pub fn is_link(&self, key: ConnKey) -> bool {
        self.links.contains_key(&key)
    }

    /// The link `key` ended (its socket failed, the peer went away, or the session
    /// failed with `reason`): every circuit over it ends with an error, and the link is
    /// forgotten and the controller told.
    pub fn link_lost(&mut self, now: Instant, key: ConnKey, reason: &str) {
        let Some(link) = self.links.remove(&key) else {
            return;
        };
        self.ready.retain(|k| *k != key);
        self.in_ready.remove(&key);
        // Another connection to the same router keeps the link up.
        let link_up = link
            .peer
            .as_deref()
            .is_some_and(|p| self.connections_to(p) > 0);
        if let (Some(peer), false) = (link.peer.clone(), link_up) {
            self.stats.links_lost += 1;
            self.control
                .push_back(ControlRequest::LinkStatus(pb::LinkStatus {
                    peer_router_id: peer,
                    dialed: link.dialed,
                    up: false,
                    latency_us: 0,
                    reason: reason.to_owned(),
                }));
        }
        // After the link's down status, so that a reroute asked for avoids it.
        let peer = link.peer.as_deref().unwrap_or("(before its hello)");
        self.link_circuits_lost(now, key, peer, link_up);
    }

    /// Connections to `peer` whose hello succeeded.
    fn connections_to(&self, peer: &str) -> usize {
        self.links
            .values()
            .filter(|l| l.peer.as_deref() == Some(peer))
            .count()
    }

    /// The links of this shard.
    pub fn links(&self) -> Vec<LinkInfo> {
        let mut out: Vec<LinkInfo> = self
            .links
            .iter()
            .map(|(key, l)| LinkInfo {
                key: *key,
                peer: l.peer.clone(),
                dialed: l.dialed,
                connection: l.session.connection(),
                latency: l.session.latency(),
                circuits: l.session.circuits(),
                traffic: l.session.traffic(),
                credit_stalls: l.credit_stalls,
                rtt: l.session.rtt_histogram(),
            })
            .collect();
        out.sort_by_key(|l| l.key);
        out
    }

    /// The router at the other end of link `key`, once its hello succeeded.
    pub fn link_peer(&self, key: ConnKey) -> Option<&str> {
        self.links.get(&key)?.peer.as_deref()
    }

    /// The connection to `peer` that circuit `circuit` rides, if one is up: of the
    /// connections up, ordered by their number in the link, the one at `circuit` modulo
    /// their count. Both routers of a link pick the same one while they see the same
    /// connections up (circuit ids are the controller's, the same on both).
    pub fn link_for(&self, peer: &str, circuit: u64) -> Option<ConnKey> {
        let mut up: Vec<(u32, ConnKey)> = self
            .links
            .iter()
            .filter(|(_, l)| l.peer.as_deref() == Some(peer))
            .map(|(k, l)| (l.session.connection(), *k))
            .collect();
        if up.is_empty() {
            return None;
        }
        up.sort_unstable();
        let n = u64::try_from(up.len()).unwrap_or(u64::MAX);
        let i = usize::try_from(circuit % n).unwrap_or(0);
        up.get(i).map(|(_, k)| *k)
    }

    /// A link's timer fired.
    pub(super) fn link_timeout(&mut self, now: Instant, key: ConnKey) -> Result<(), LinkError> {
        let Some(link) = self.links.get_mut(&key) else {
            return Ok(());
        };
        link.armed = None;
        let result = link.session.handle_timeout(now);
        self.after_link_input(now, key);
        result
    }

    /// Handles the link's events, queues it for writing and re-arms its timer.
    pub(super) fn after_link_input(&mut self, now: Instant, key: ConnKey) {
        while let Some(event) = self
            .links
            .get_mut(&key)
            .and_then(|l| l.session.poll_event())
        {
            self.link_event(now, key, event);
        }
        let Some(link) = self.links.get_mut(&key) else {
            return;
        };
        let deadline = link.session.poll_timeout();
        if link.armed != Some(deadline) {
            link.armed = Some(deadline);
            self.timers.push(std::cmp::Reverse((deadline, key)));
        }
        if self.in_ready.insert(key) {
            self.ready.push_back(key);
        }
    }

    fn link_event(&mut self, now: Instant, key: ConnKey, event: LinkEvent) {
        let Some(link) = self.links.get_mut(&key) else {
            return;
        };
        match event {
            LinkEvent::Up { peer } => {
                link.peer = Some(peer.clone());
                let (dialed, number) = (link.dialed, link.session.connection());
                // A listener keeps one connection per number from a dialer: a new one
                // replaces the old, whose loss it has perhaps not seen yet.
                let replaced: Vec<ConnKey> = self
                    .links
                    .iter()
                    .filter(|(k, l)| {
                        **k != key
                            && !dialed
                            && !l.dialed
                            && l.peer.as_deref() == Some(peer.as_str())
                            && l.session.connection() == number
                    })
                    .map(|(k, _)| *k)
                    .collect();
                for old in replaced {
                    self.link_closes
                        .push_back((old, "replaced by a new connection".to_owned()));
                }
                if self.connections_to(&peer) > 1 {
                    // The link was up already: one more connection of it.
                    return;
                }
                let Some(link) = self.links.get_mut(&key) else {
                    return;
                };
                self.stats.links_up += 1;
                self.control
                    .push_back(ControlRequest::LinkStatus(pb::LinkStatus {
                        peer_router_id: peer,
                        dialed: link.dialed,
                        up: true,
                        latency_us: 0,
                        reason: String::new(),
                    }));
            }
            LinkEvent::Latency(_) => {
                let Some(latency) = link.session.latency() else {
                    return;
                };
                let due = match link.reported {
                    None => true,
                    Some((last, at)) => {
                        now.saturating_duration_since(at) >= LATENCY_REPORT_INTERVAL
                            || latency.abs_diff(last) > last / 4
                    }
                };
                if let (true, Some(peer)) = (due, link.peer.clone()) {
                    link.reported = Some((latency, now));
                    self.control
                        .push_back(ControlRequest::LinkStatus(pb::LinkStatus {
                            peer_router_id: peer,
                            dialed: link.dialed,
                            up: true,
                            latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                            reason: String::new(),
                        }));
                }
            }
            LinkEvent::Data {
                circuit,
                seq,
                payload,
                fin,
            } => self.link_data(now, LinkLeg { link: key, circuit }, seq, payload, fin),
            LinkEvent::Start { circuit } => self.link_start(LinkLeg { link: key, circuit }),
            LinkEvent::StartUnheld { circuit } => self.start_unheld(key, circuit),
            LinkEvent::Credit {
                circuit,
                bytes,
                frames,
            } => {
                let drained = Drained {
                    bytes: u64::from(bytes),
                    frames: u64::from(frames),
                };
                self.link_credit(LinkLeg { link: key, circuit }, drained);
            }
            LinkEvent::Ack { circuit, seq } => self.link_ack(LinkLeg { link: key, circuit }, seq),
            LinkEvent::Closed {
                circuit,
                reason,
                reroute,
                link_up,
            } => {
                let leg = LinkLeg { link: key, circuit };
                self.link_closed(now, leg, &reason, reroute.then_some(link_up));
            }
        }
    }
}
