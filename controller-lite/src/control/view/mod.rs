//! The router-facing view: what routers are told (live API sessions, sessions still
//! granted, services, terminators, and which routers policies grant to identities and
//! services), how it is judged from the store, and how it changes.
//!
//! A change to the view is a [`Patch`] (per entry: the new value, or removal). The
//! published view applies a patch and answers the [`pb::StateUpdate`] routers need
//! ([`RouterView::apply`]); nothing else mutates it. Patches come from two builders:
//! - [`delta`]: from the change log, reading only what the logged changes touch
//!   (every write's publication; O(change), not O(state));
//! - [`full`]: from the whole store, diffed against the published view (start-up, the
//!   periodic sweep that also enforces time limits, and whenever the log cannot tell
//!   what changed).
//!
//! Both judge each entry with the same pure functions ([`judge`]), and a test holds
//! the incrementally maintained view equal to a full rebuild.

pub mod delta;
pub mod full;
pub mod judge;

use std::collections::{BTreeMap, BTreeSet};

use weft_wire::control::pb;

/// What routers are told, by id, with the indexes the incremental builder needs to
/// find what a removal takes with it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterView {
    api_sessions: BTreeMap<String, pb::ApiSession>,
    sessions: BTreeMap<String, pb::Session>,
    services: BTreeMap<String, pb::Service>,
    terminators: BTreeMap<String, pb::Terminator>,
    identity_routers: BTreeMap<String, pb::RouterAccess>,
    service_routers: BTreeMap<String, pb::RouterAccess>,
    /// Identity id → ids of its API sessions in the view.
    api_sessions_by_identity: BTreeMap<String, BTreeSet<String>>,
    /// API session id → ids of its sessions in the view.
    sessions_by_api_session: BTreeMap<String, BTreeSet<String>>,
    /// Service id → ids of the sessions on it in the view.
    sessions_by_service: BTreeMap<String, BTreeSet<String>>,
}

/// Changes to a [`RouterView`]: per id, the new entry or `None` for removal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patch {
    /// API sessions.
    pub api_sessions: BTreeMap<String, Option<pb::ApiSession>>,
    /// Sessions.
    pub sessions: BTreeMap<String, Option<pb::Session>>,
    /// Services.
    pub services: BTreeMap<String, Option<pb::Service>>,
    /// Terminators.
    pub terminators: BTreeMap<String, Option<pb::Terminator>>,
    /// Routers granted per identity.
    pub identity_routers: BTreeMap<String, Option<pb::RouterAccess>>,
    /// Routers granted per service.
    pub service_routers: BTreeMap<String, Option<pb::RouterAccess>>,
}

fn index_add(index: &mut BTreeMap<String, BTreeSet<String>>, key: &str, id: &str) {
    index
        .entry(key.to_owned())
        .or_default()
        .insert(id.to_owned());
}

fn index_remove(index: &mut BTreeMap<String, BTreeSet<String>>, key: &str, id: &str) {
    if let Some(ids) = index.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

fn index_get<'a>(
    index: &'a BTreeMap<String, BTreeSet<String>>,
    key: &str,
) -> impl Iterator<Item = &'a String> + 'a {
    index.get(key).into_iter().flatten()
}

impl RouterView {
    /// Live API sessions.
    pub fn api_sessions(&self) -> &BTreeMap<String, pb::ApiSession> {
        &self.api_sessions
    }

    /// Sessions still granted.
    pub fn sessions(&self) -> &BTreeMap<String, pb::Session> {
        &self.sessions
    }

    /// Services.
    pub fn services(&self) -> &BTreeMap<String, pb::Service> {
        &self.services
    }

    /// Terminators.
    pub fn terminators(&self) -> &BTreeMap<String, pb::Terminator> {
        &self.terminators
    }

    /// Per identity holding a live API session: the routers it may use.
    pub fn identity_routers(&self) -> &BTreeMap<String, pb::RouterAccess> {
        &self.identity_routers
    }

    /// Per service: the routers through which it may be reached.
    pub fn service_routers(&self) -> &BTreeMap<String, pb::RouterAccess> {
        &self.service_routers
    }

    /// Ids of the identity's API sessions in the view.
    pub fn api_sessions_of_identity<'a>(
        &'a self,
        identity_id: &str,
    ) -> impl Iterator<Item = &'a String> + 'a {
        index_get(&self.api_sessions_by_identity, identity_id)
    }

    /// Ids of the API session's sessions in the view.
    pub fn sessions_of_api_session<'a>(
        &'a self,
        api_session_id: &str,
    ) -> impl Iterator<Item = &'a String> + 'a {
        index_get(&self.sessions_by_api_session, api_session_id)
    }

    /// Ids of the sessions on a service in the view.
    pub fn sessions_of_service<'a>(
        &'a self,
        service_id: &str,
    ) -> impl Iterator<Item = &'a String> + 'a {
        index_get(&self.sessions_by_service, service_id)
    }

    /// Adds (or replaces) an API session.
    pub fn insert_api_session(&mut self, a: pb::ApiSession) {
        self.remove_api_session(&a.id);
        index_add(&mut self.api_sessions_by_identity, &a.identity_id, &a.id);
        self.api_sessions.insert(a.id.clone(), a);
    }

    fn remove_api_session(&mut self, id: &str) -> bool {
        let Some(old) = self.api_sessions.remove(id) else {
            return false;
        };
        index_remove(&mut self.api_sessions_by_identity, &old.identity_id, id);
        true
    }

    /// Adds (or replaces) a session.
    pub fn insert_session(&mut self, s: pb::Session) {
        self.remove_session(&s.id);
        index_add(&mut self.sessions_by_api_session, &s.api_session_id, &s.id);
        index_add(&mut self.sessions_by_service, &s.service_id, &s.id);
        self.sessions.insert(s.id.clone(), s);
    }

    fn remove_session(&mut self, id: &str) -> bool {
        let Some(old) = self.sessions.remove(id) else {
            return false;
        };
        index_remove(&mut self.sessions_by_api_session, &old.api_session_id, id);
        index_remove(&mut self.sessions_by_service, &old.service_id, id);
        true
    }

    /// Adds (or replaces) a service.
    pub fn insert_service(&mut self, s: pb::Service) {
        self.services.insert(s.id.clone(), s);
    }

    /// Adds (or replaces) a terminator.
    pub fn insert_terminator(&mut self, t: pb::Terminator) {
        self.terminators.insert(t.id.clone(), t);
    }

    /// Adds (or replaces) the routers granted to an identity.
    pub fn insert_identity_routers(&mut self, r: pb::RouterAccess) {
        self.identity_routers.insert(r.id.clone(), r);
    }

    /// Adds (or replaces) the routers granted to a service.
    pub fn insert_service_routers(&mut self, r: pb::RouterAccess) {
        self.service_routers.insert(r.id.clone(), r);
    }

    /// The patch that turns this view into `desired`.
    pub fn diff(&self, desired: &Self) -> Patch {
        Patch {
            api_sessions: diff_map(&self.api_sessions, &desired.api_sessions),
            sessions: diff_map(&self.sessions, &desired.sessions),
            services: diff_map(&self.services, &desired.services),
            terminators: diff_map(&self.terminators, &desired.terminators),
            identity_routers: diff_map(&self.identity_routers, &desired.identity_routers),
            service_routers: diff_map(&self.service_routers, &desired.service_routers),
        }
    }

    /// Applies `patch` and returns what routers must be told (empty when nothing
    /// changed). An API session whose only change is a later expiry is kept as routers
    /// were told it until the expiry moved by `expiry_slack_ms` or more, so activity does
    /// not flood routers.
    pub fn apply(&mut self, patch: Patch, expiry_slack_ms: i64) -> pb::StateUpdate {
        let mut u = pb::StateUpdate::default();
        for (id, entry) in patch.api_sessions {
            match entry {
                Some(new) => {
                    let same = self
                        .api_sessions
                        .get(&id)
                        .is_some_and(|prev| same_api_session(prev, &new, expiry_slack_ms));
                    if !same {
                        u.api_sessions_added.push(new.clone());
                        self.insert_api_session(new);
                    }
                }
                None => {
                    if self.remove_api_session(&id) {
                        u.api_sessions_removed.push(id);
                    }
                }
            }
        }
        for (id, entry) in patch.sessions {
            match entry {
                Some(new) => {
                    if self.sessions.get(&id) != Some(&new) {
                        u.sessions_added.push(new.clone());
                        self.insert_session(new);
                    }
                }
                None => {
                    if self.remove_session(&id) {
                        u.sessions_removed.push(id);
                    }
                }
            }
        }
        apply_map(
            &mut self.services,
            patch.services,
            &mut u.services_upserted,
            &mut u.services_removed,
        );
        apply_map(
            &mut self.terminators,
            patch.terminators,
            &mut u.terminators_upserted,
            &mut u.terminators_removed,
        );
        apply_map(
            &mut self.identity_routers,
            patch.identity_routers,
            &mut u.identity_routers_upserted,
            &mut u.identity_routers_removed,
        );
        apply_map(
            &mut self.service_routers,
            patch.service_routers,
            &mut u.service_routers_upserted,
            &mut u.service_routers_removed,
        );
        u
    }

    /// The whole view as a snapshot at `revision`.
    pub fn snapshot(&self, revision: u64) -> pb::StateSync {
        pb::StateSync {
            revision,
            api_sessions: self.api_sessions.values().cloned().collect(),
            sessions: self.sessions.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
            terminators: self.terminators.values().cloned().collect(),
            identity_routers: self.identity_routers.values().cloned().collect(),
            service_routers: self.service_routers.values().cloned().collect(),
        }
    }

    #[cfg(test)]
    /// This view with every API session expiry cleared (views built at different
    /// moments differ in expiries only by the time between them).
    pub fn without_expiries(&self) -> Self {
        let mut v = self.clone();
        for a in v.api_sessions.values_mut() {
            a.expires_at_unix_ms = 0;
        }
        v
    }
}

fn diff_map<T: Clone + PartialEq>(
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
) -> BTreeMap<String, Option<T>> {
    let mut out: BTreeMap<String, Option<T>> = new
        .iter()
        .filter(|(id, v)| old.get(*id) != Some(*v))
        .map(|(id, v)| (id.clone(), Some(v.clone())))
        .collect();
    for id in old.keys().filter(|id| !new.contains_key(*id)) {
        out.insert(id.clone(), None);
    }
    out
}

fn apply_map<T: PartialEq + Clone>(
    map: &mut BTreeMap<String, T>,
    changes: BTreeMap<String, Option<T>>,
    upserted: &mut Vec<T>,
    removed: &mut Vec<String>,
) {
    for (id, entry) in changes {
        match entry {
            Some(new) => {
                if map.get(&id) != Some(&new) {
                    upserted.push(new.clone());
                    map.insert(id, new);
                }
            }
            None => {
                if map.remove(&id).is_some() {
                    removed.push(id);
                }
            }
        }
    }
}

fn same_api_session(prev: &pb::ApiSession, new: &pb::ApiSession, slack_ms: i64) -> bool {
    let expiry_close = match (prev.expires_at_unix_ms, new.expires_at_unix_ms) {
        (0, 0) => true,
        (0, _) | (_, 0) => false,
        (p, n) => n == p || (n > p && n - p < slack_ms),
    };
    expiry_close
        && prev.id == new.id
        && prev.token == new.token
        && prev.identity_id == new.identity_id
        && prev.identity_name == new.identity_name
        && prev.cert_fingerprints == new.cert_fingerprints
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod equivalence;
