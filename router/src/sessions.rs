//! The session state a router holds, as pushed by the controller over the control
//! channel, and the checks made against it.
//!
//! The controller sends a full [`pb::StateSync`] when a router connects and
//! [`pb::StateUpdate`]s after that. Every change reports what it removed, so the caller
//! can close the connections and circuits that used a removed session at once
//! (push revocation).
//!
//! Policies are enforced here, where the traffic is, not only in the controller's API
//! answers: an API session is served only when its identity's edge router policies name
//! this router, and a Dial or Bind session only when its service's service edge router
//! policies name it too ([`pb::RouterAccess`]). A policy change that takes a router
//! away is reported as a removal, so what used it closes at once.
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)

use std::collections::{HashMap, HashSet};

use weft_wire::control::pb;

/// An API session an SDK may present in its hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiSession {
    /// Controller id of the API session.
    pub id: String,
    /// Identity that authenticated.
    pub identity_id: String,
    /// Identity name (the SDK's caller id).
    pub identity_name: String,
    /// Lower-case hex SHA-1 fingerprints of the client certificates bound to it.
    pub cert_fingerprints: Vec<String>,
    /// Expiry, Unix milliseconds; `None` when it does not expire.
    pub expires_at_unix_ms: Option<i64>,
}

/// Whether a service session dials or hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionKind {
    /// Connect (dial) sessions.
    Dial,
    /// Bind (host) sessions.
    Bind,
}

/// A service session an SDK may present in a Connect or Bind body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Controller id of the session.
    pub id: String,
    /// API session the session was created under.
    pub api_session_id: String,
    /// Service it grants.
    pub service_id: String,
    /// Dial or Bind.
    pub kind: SessionKind,
}

/// Why a hello is refused. The router still acknowledges the hello and then closes
/// the connection (spec §2.4): the C SDK reacts to that by refreshing its API session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HelloRejection {
    /// No API session has this token.
    #[error("unknown API session token")]
    UnknownToken,
    /// The API session was removed by the controller.
    #[error("API session removed")]
    Removed,
    /// The API session expired.
    #[error("API session expired")]
    Expired,
    /// The client's certificate is not bound to the API session.
    #[error("client certificate not bound to the API session")]
    CertificateMismatch,
    /// No edge router policy gives the identity this router.
    #[error("no edge router policy grants this router to the identity")]
    RouterNotGranted,
}

/// Why a Connect or Bind session token is refused. Each is answered with StateClosed
/// `Invalid Session` (spec §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionRejection {
    /// No session has this token.
    #[error("unknown session token")]
    UnknownToken,
    /// The session was removed by the controller.
    #[error("session removed")]
    Removed,
    /// The session belongs to another API session than the connection's.
    #[error("session belongs to another API session")]
    WrongApiSession,
    /// A Dial session used to bind, or the reverse.
    #[error("wrong session type")]
    WrongKind,
    /// No service edge router policy puts the service on this router (or no edge
    /// router policy gives it the identity).
    #[error("the service is not available on this router")]
    RouterNotGranted,
}

/// What a change removed; every connection and circuit using these must close.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Ids of removed API sessions.
    pub api_sessions: Vec<String>,
    /// Ids of removed sessions, including those removed with their API session.
    pub sessions: Vec<String>,
}

impl Removed {
    /// True when nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.api_sessions.is_empty() && self.sessions.is_empty()
    }
}

/// A StateUpdate that does not follow the revision the table holds; the router must
/// ask for a full sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("state update for revision {got} does not follow revision {held}")]
pub struct RevisionGap {
    /// Revision the table holds.
    pub held: u64,
    /// Revision of the update.
    pub got: u64,
}

/// API sessions and sessions by token, with indexes by id, and which identities and
/// services policies grant this router.
#[derive(Debug, Default)]
pub struct SessionTable {
    /// This router's id, as the controller names it in [`pb::RouterAccess`].
    router_id: String,
    /// Identities whose edge router policies grant this router.
    identities_here: HashSet<String>,
    /// Services whose service edge router policies grant this router.
    services_here: HashSet<String>,
    /// Services whose terminator strategy is `sticky`: a dial names the terminator of
    /// an earlier one with a stickiness token (edge header 1027).
    sticky_services: HashSet<String>,
    /// Identity id -> ids of its API sessions.
    by_identity: HashMap<String, HashSet<String>>,
    /// Service id -> ids of the sessions on it.
    by_service: HashMap<String, HashSet<String>>,
    revision: u64,
    api_sessions: HashMap<String, ApiSession>,
    api_session_ids: HashMap<String, String>,
    sessions: HashMap<String, Session>,
    session_ids: HashMap<String, String>,
    /// API session id -> ids of the sessions created under it, so removing an API
    /// session does not scan every session.
    children: HashMap<String, HashSet<String>>,
    /// Tokens the controller removed, so that using one is refused at once instead of
    /// waiting for a session that will not come (see `EdgeConfig::session_wait`).
    removed: RemovedTokens,
}

/// The most recently removed tokens, bounded.
#[derive(Debug, Default)]
struct RemovedTokens {
    order: std::collections::VecDeque<String>,
    set: HashSet<String>,
}

impl RemovedTokens {
    /// How many removed tokens are remembered.
    const CAPACITY: usize = 65_536;

    fn insert(&mut self, token: String) {
        if self.set.insert(token.clone()) {
            self.order.push_back(token);
            if self.order.len() > Self::CAPACITY
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, token: &str) -> bool {
        self.set.contains(token)
    }
}

impl SessionTable {
    /// An empty table at revision 0 for the router `router_id`.
    pub fn new(router_id: impl Into<String>) -> Self {
        Self {
            router_id: router_id.into(),
            ..Self::default()
        }
    }

    /// Whether `access` names this router.
    /// Whether dials of `service_id` follow stickiness tokens (its terminator strategy
    /// is `sticky`).
    pub fn is_sticky(&self, service_id: &str) -> bool {
        self.sticky_services.contains(service_id)
    }

    fn note_strategy(&mut self, service: &pb::Service) {
        if service.terminator_strategy == "sticky" {
            self.sticky_services.insert(service.id.clone());
        } else {
            self.sticky_services.remove(&service.id);
        }
    }

    fn names_me(&self, access: &pb::RouterAccess) -> bool {
        access.router_ids.contains(&self.router_id)
    }

    /// Ids of the API sessions and sessions usable on this router now (policies
    /// included), for the difference a full sync makes.
    fn usable(&self) -> (HashSet<String>, HashSet<String>) {
        let api: HashSet<String> = self
            .api_sessions
            .values()
            .filter(|a| self.identities_here.contains(&a.identity_id))
            .map(|a| a.id.clone())
            .collect();
        let sessions = self
            .sessions
            .values()
            .filter(|s| {
                api.contains(&s.api_session_id) && self.services_here.contains(&s.service_id)
            })
            .map(|s| s.id.clone())
            .collect();
        (api, sessions)
    }

    /// The controller revision the table reflects.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Number of services whose service edge router policies grant this router.
    pub fn services_granted(&self) -> usize {
        self.services_here.len()
    }

    /// Number of API sessions and sessions held.
    pub fn len(&self) -> (usize, usize) {
        (self.api_sessions.len(), self.sessions.len())
    }

    /// Replaces everything with a full sync; reports what disappeared or is no longer
    /// granted to this router.
    pub fn apply_sync(&mut self, sync: pb::StateSync) -> Removed {
        let (old_api, old_sessions) = self.usable();
        let old_tokens: HashMap<String, String> = self
            .api_session_ids
            .drain()
            .chain(self.session_ids.drain())
            .collect();
        *self = Self {
            router_id: std::mem::take(&mut self.router_id),
            revision: sync.revision,
            removed: std::mem::take(&mut self.removed),
            ..Self::default()
        };
        for access in &sync.identity_routers {
            if self.names_me(access) {
                self.identities_here.insert(access.id.clone());
            }
        }
        for access in &sync.service_routers {
            if self.names_me(access) {
                self.services_here.insert(access.id.clone());
            }
        }
        for service in &sync.services {
            self.note_strategy(service);
        }
        for api_session in sync.api_sessions {
            self.insert_api_session(api_session);
        }
        for session in sync.sessions {
            self.insert_session(session);
        }
        let (new_api, new_sessions) = self.usable();
        let mut removed = Removed::default();
        for id in old_api.into_iter().filter(|id| !new_api.contains(id)) {
            if !self.api_session_ids.contains_key(&id)
                && let Some(token) = old_tokens.get(&id)
            {
                self.removed.insert(token.clone());
            }
            removed.api_sessions.push(id);
        }
        for id in old_sessions
            .into_iter()
            .filter(|id| !new_sessions.contains(id))
        {
            if !self.session_ids.contains_key(&id)
                && let Some(token) = old_tokens.get(&id)
            {
                self.removed.insert(token.clone());
            }
            removed.sessions.push(id);
        }
        removed
    }

    /// Applies an incremental update. Removals are applied after additions, so an
    /// update that adds and removes the same id leaves it removed.
    pub fn apply_update(&mut self, update: pb::StateUpdate) -> Result<Removed, RevisionGap> {
        if update.revision != self.revision + 1 {
            return Err(RevisionGap {
                held: self.revision,
                got: update.revision,
            });
        }
        self.revision = update.revision;
        for service in &update.services_upserted {
            self.note_strategy(service);
        }
        for id in &update.services_removed {
            self.sticky_services.remove(id);
        }
        for api_session in update.api_sessions_added {
            self.insert_api_session(api_session);
        }
        for session in update.sessions_added {
            self.insert_session(session);
        }
        let mut removed = Removed::default();
        // Access taken away: what used this router for that identity or service goes,
        // though the sessions stay known (the router may be granted again).
        let identities_gone: Vec<String> = update
            .identity_routers_upserted
            .iter()
            .filter(|a| !self.names_me(a))
            .map(|a| a.id.clone())
            .chain(update.identity_routers_removed)
            .collect();
        for access in &update.identity_routers_upserted {
            if self.names_me(access) {
                self.identities_here.insert(access.id.clone());
            }
        }
        for id in identities_gone {
            if self.identities_here.remove(&id) {
                for api in self.by_identity.get(&id).into_iter().flatten() {
                    removed.api_sessions.push(api.clone());
                    removed
                        .sessions
                        .extend(self.children.get(api).into_iter().flatten().cloned());
                }
            }
        }
        let services_gone: Vec<String> = update
            .service_routers_upserted
            .iter()
            .filter(|a| !self.names_me(a))
            .map(|a| a.id.clone())
            .chain(update.service_routers_removed)
            .collect();
        for access in &update.service_routers_upserted {
            if self.names_me(access) {
                self.services_here.insert(access.id.clone());
            }
        }
        for id in services_gone {
            if self.services_here.remove(&id) {
                removed
                    .sessions
                    .extend(self.by_service.get(&id).into_iter().flatten().cloned());
            }
        }
        for id in update.sessions_removed {
            if self.revoke_session(&id) {
                removed.sessions.push(id);
            }
        }
        for id in update.api_sessions_removed {
            self.remove_api_session(&id, &mut removed);
        }
        Ok(removed)
    }

    /// Removes API sessions whose expiry is at or before `now_unix_ms`, with their
    /// sessions.
    pub fn expire(&mut self, now_unix_ms: i64) -> Removed {
        let expired: Vec<String> = self
            .api_sessions
            .values()
            .filter(|a| a.expires_at_unix_ms.is_some_and(|t| t <= now_unix_ms))
            .map(|a| a.id.clone())
            .collect();
        let mut removed = Removed::default();
        for id in expired {
            self.remove_api_session(&id, &mut removed);
        }
        removed
    }

    /// Checks a hello: the token names a live API session bound to the fingerprint of
    /// the client's **leaf** certificate, the one whose key the TLS handshake proved
    /// (lower-case hex SHA-1 of the DER, as OpenZiti computes it,
    /// `edge:internal/cert/fingerprint.go`). Other certificates of the chain are never
    /// looked at: presenting a certificate proves nothing.
    pub fn check_hello(
        &self,
        token: &[u8],
        client_leaf_fingerprint: Option<&str>,
        now_unix_ms: i64,
    ) -> Result<&ApiSession, HelloRejection> {
        let api_session = std::str::from_utf8(token)
            .ok()
            .ok_or(HelloRejection::UnknownToken)
            .and_then(|t| {
                self.api_sessions.get(t).ok_or_else(|| {
                    if self.removed.contains(t) {
                        HelloRejection::Removed
                    } else {
                        HelloRejection::UnknownToken
                    }
                })
            })?;
        if api_session
            .expires_at_unix_ms
            .is_some_and(|t| t <= now_unix_ms)
        {
            return Err(HelloRejection::Expired);
        }
        let bound = client_leaf_fingerprint
            .is_some_and(|leaf| api_session.cert_fingerprints.iter().any(|b| b == leaf));
        if !bound {
            return Err(HelloRejection::CertificateMismatch);
        }
        if !self.identities_here.contains(&api_session.identity_id) {
            return Err(HelloRejection::RouterNotGranted);
        }
        Ok(api_session)
    }

    /// Checks a Connect or Bind token against the connection's API session.
    pub fn check_session(
        &self,
        token: &[u8],
        api_session_id: &str,
        kind: SessionKind,
    ) -> Result<&Session, SessionRejection> {
        let session = std::str::from_utf8(token)
            .ok()
            .ok_or(SessionRejection::UnknownToken)
            .and_then(|t| {
                self.sessions.get(t).ok_or_else(|| {
                    if self.removed.contains(t) {
                        SessionRejection::Removed
                    } else {
                        SessionRejection::UnknownToken
                    }
                })
            })?;
        if session.api_session_id != api_session_id {
            return Err(SessionRejection::WrongApiSession);
        }
        if session.kind != kind {
            return Err(SessionRejection::WrongKind);
        }
        let identity_here = self
            .api_session_ids
            .get(api_session_id)
            .and_then(|token| self.api_sessions.get(token))
            .is_some_and(|a| self.identities_here.contains(&a.identity_id));
        if !identity_here || !self.services_here.contains(&session.service_id) {
            return Err(SessionRejection::RouterNotGranted);
        }
        Ok(session)
    }

    fn insert_api_session(&mut self, a: pb::ApiSession) {
        if let Some(old_token) = self.api_session_ids.insert(a.id.clone(), a.token.clone()) {
            if let Some(old) = self.api_sessions.remove(&old_token) {
                self.unindex_api_session(&old.identity_id, &old.id);
            }
        }
        self.by_identity
            .entry(a.identity_id.clone())
            .or_default()
            .insert(a.id.clone());
        self.api_sessions.insert(
            a.token,
            ApiSession {
                id: a.id,
                identity_id: a.identity_id,
                identity_name: a.identity_name,
                cert_fingerprints: a
                    .cert_fingerprints
                    .into_iter()
                    .map(|f| f.to_ascii_lowercase())
                    .collect(),
                expires_at_unix_ms: (a.expires_at_unix_ms != 0).then_some(a.expires_at_unix_ms),
            },
        );
    }

    fn insert_session(&mut self, s: pb::Session) {
        let kind = match pb::SessionType::try_from(s.r#type) {
            Ok(pb::SessionType::Dial) => SessionKind::Dial,
            Ok(pb::SessionType::Bind) => SessionKind::Bind,
            // A session of no known kind can be used for nothing; do not hold it.
            _ => return,
        };
        self.remove_session(&s.id);
        self.session_ids.insert(s.id.clone(), s.token.clone());
        self.children
            .entry(s.api_session_id.clone())
            .or_default()
            .insert(s.id.clone());
        self.by_service
            .entry(s.service_id.clone())
            .or_default()
            .insert(s.id.clone());
        self.sessions.insert(
            s.token,
            Session {
                id: s.id,
                api_session_id: s.api_session_id,
                service_id: s.service_id,
                kind,
            },
        );
    }

    /// Removes an API session and every session created under it.
    fn remove_api_session(&mut self, id: &str, removed: &mut Removed) {
        let Some(token) = self.api_session_ids.remove(id) else {
            return;
        };
        if let Some(old) = self.api_sessions.remove(&token) {
            self.unindex_api_session(&old.identity_id, id);
        }
        self.removed.insert(token);
        for session_id in self.children.remove(id).unwrap_or_default() {
            self.revoke_session(&session_id);
            removed.sessions.push(session_id);
        }
        removed.api_sessions.push(id.to_owned());
    }

    /// Removes a session and remembers its token as removed.
    fn revoke_session(&mut self, id: &str) -> bool {
        if let Some(token) = self.session_ids.get(id) {
            self.removed.insert(token.clone());
        }
        self.remove_session(id)
    }

    fn remove_session(&mut self, id: &str) -> bool {
        let Some(session) = self
            .session_ids
            .remove(id)
            .and_then(|token| self.sessions.remove(&token))
        else {
            return false;
        };
        if let Some(siblings) = self.children.get_mut(&session.api_session_id) {
            siblings.remove(id);
            if siblings.is_empty() {
                self.children.remove(&session.api_session_id);
            }
        }
        if let Some(on_service) = self.by_service.get_mut(&session.service_id) {
            on_service.remove(id);
            if on_service.is_empty() {
                self.by_service.remove(&session.service_id);
            }
        }
        true
    }

    fn unindex_api_session(&mut self, identity_id: &str, id: &str) {
        if let Some(of_identity) = self.by_identity.get_mut(identity_id) {
            of_identity.remove(id);
            if of_identity.is_empty() {
                self.by_identity.remove(identity_id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
