//! The router-facing view kept current from the change log: a batch of logged changes
//! says what it touched ([`touched`], pure), and only that is read and judged again
//! ([`build`]), so a write costs what it changed, not what the store holds.
//!
//! Each touched entry is re-read from the store as it is now (possibly newer than the
//! batch: a later change re-reads it again, which changes nothing), and judged with the
//! view for everything the batch did not touch. Removals are found through the view's
//! indexes: a deleted API session takes its sessions with it, a deleted service the
//! sessions on it. Changes whose consequences cannot be bounded (a policy, an edge
//! router, a posture check or an authentication policy) ask for a full rebuild.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::judge::{self, ApiVerdict, IdentityFacts, PostureFacts, SessionVerdict};
use super::{Patch, RouterView};
use crate::auth::policy::Policies;
use crate::clock;
use crate::controller::Controller;
use crate::error::StoreError;
use crate::model::{Identity, Service, Terminator};
use crate::store::{Change, SessionRow};

/// What a batch of changes touches in the view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Only a full rebuild can tell (policies, edge routers, posture checks,
    /// authentication policies, or a change of a kind this module does not know).
    pub all: bool,
    /// 3rd-party CAs changed (the trusted certificates routers hold, apart from the view).
    pub cas: bool,
    /// Identities: their API sessions (and so sessions) and granted routers.
    pub identities: BTreeSet<String>,
    /// API sessions (and so their sessions).
    pub api_sessions: BTreeSet<String>,
    /// Sessions.
    pub sessions: BTreeSet<String>,
    /// Services: the service, its granted routers, the sessions on it.
    pub services: BTreeSet<String>,
    /// Terminators.
    pub terminators: BTreeSet<String>,
    /// Authenticators: the API sessions opened with them carry their fingerprint.
    pub authenticators: BTreeSet<String>,
}

/// What `changes` touch in the view.
pub fn touched(changes: &[Change]) -> Touched {
    let mut t = Touched::default();
    for c in changes {
        let id = c.entity_id.clone();
        match c.kind.as_str() {
            "identities" | "posture_data" => {
                t.identities.insert(id);
            }
            "services" => {
                t.services.insert(id);
            }
            "terminators" => {
                t.terminators.insert(id);
            }
            "api_sessions" => {
                t.api_sessions.insert(id);
            }
            "sessions" => {
                t.sessions.insert(id);
            }
            "authenticators" => {
                t.authenticators.insert(id);
            }
            "cas" => t.cas = true,
            // Not part of what routers are told. (An API session's certificates are
            // logged as an update of the API session too.)
            "configs"
            | "config-types"
            | "external-jwt-signers"
            | "enrollments"
            | "api_session_certs"
            | "cert_extensions"
            | "mfa"
            | "failed_service_requests"
            | "identity_service_configs"
            | "meta" => {}
            // Policies, edge routers, posture checks, authentication policies (they can
            // change any grant), and any kind this mapping does not know.
            _ => t.all = true,
        }
    }
    t
}

/// The changes to `view` that `t` makes, judged from the store as it is now.
pub async fn build(ctl: &Controller, view: &RouterView, t: &Touched) -> Result<Delta, StoreError> {
    let store = &ctl.store;
    let now = clock::now_unix();
    let timeout = ctl.config.auth.api_session_timeout_secs;
    let mut out = Delta::default();

    // API sessions to judge again: those changed, those of changed identities and of
    // changed authenticators, whether still stored or only in the view.
    let mut api_ids = t.api_sessions.clone();
    for i in &t.identities {
        api_ids.extend(view.api_sessions_of_identity(i).cloned());
        api_ids.extend(store.api_session_ids_of_identity(i).await?);
    }
    for a in &t.authenticators {
        api_ids.extend(store.api_session_ids_of_authenticator(a).await?);
    }

    // Authentication policies only matter to API sessions: a session request's
    // publication does not read them.
    let policies = if api_ids.is_empty() {
        Policies::default()
    } else {
        Policies::load(store).await?
    };
    let mut identities: HashMap<String, Option<IdentityFacts>> = HashMap::new();
    // API session id → live after this batch (absent: as the view says).
    let mut api_live: HashMap<String, bool> = HashMap::new();
    let mut live_identities: BTreeSet<String> = BTreeSet::new();
    let mut holders: BTreeSet<String> = t.identities.clone();
    for id in &api_ids {
        if let Some(old) = view.api_sessions().get(id) {
            holders.insert(old.identity_id.clone());
        }
        let Some((row, fingerprint)) = store.api_session_for_view(id).await? else {
            api_live.insert(id.clone(), false);
            out.patch.api_sessions.insert(id.clone(), None);
            continue;
        };
        holders.insert(row.identity_id.clone());
        if !identities.contains_key(&row.identity_id) {
            let facts = store
                .entity::<Identity>(&row.identity_id)
                .await?
                .map(|e| IdentityFacts::of(&e, &policies, now));
            identities.insert(row.identity_id.clone(), facts);
        }
        let facts = identities.get(&row.identity_id).and_then(Option::as_ref);
        let certs = store.api_session_cert_fingerprints_of(id, now).await?;
        let identity_id = row.identity_id.clone();
        match judge::api_session(row, fingerprint, certs, facts, now, timeout) {
            ApiVerdict::Live(a) => {
                api_live.insert(id.clone(), true);
                live_identities.insert(identity_id);
                out.patch.api_sessions.insert(id.clone(), Some(a));
            }
            verdict => {
                if verdict == ApiVerdict::Ended {
                    out.ended.push(id.clone());
                }
                api_live.insert(id.clone(), false);
                out.patch.api_sessions.insert(id.clone(), None);
            }
        }
    }

    let policy = ctl.policy.get(store).await?;
    // An identity is told its routers while it holds a live API session.
    for identity_id in &holders {
        let holds = live_identities.contains(identity_id)
            || view
                .api_sessions_of_identity(identity_id)
                .any(|a| !api_live.contains_key(a));
        out.patch.identity_routers.insert(
            identity_id.clone(),
            holds.then(|| judge::identity_routers(&policy, identity_id)),
        );
    }

    // Sessions to judge again: those changed, those of the API sessions judged above,
    // those on changed services.
    let mut session_ids: BTreeSet<String> = t.sessions.clone();
    let mut rows: BTreeMap<String, SessionRow> = BTreeMap::new();
    for a in &api_ids {
        session_ids.extend(view.sessions_of_api_session(a).cloned());
        for s in store.sessions_of_api_session(a).await? {
            rows.insert(s.id.clone(), s);
        }
    }
    for service in &t.services {
        session_ids.extend(view.sessions_of_service(service).cloned());
        for s in store.sessions_of_service(service).await? {
            rows.insert(s.id.clone(), s);
        }
    }
    for id in &session_ids {
        if rows.contains_key(id) {
            continue;
        }
        match store.session_by_id(id).await? {
            Some(s) => {
                rows.insert(id.clone(), s);
            }
            None => {
                out.patch.sessions.insert(id.clone(), None);
            }
        }
    }
    let mut posture = PostureFacts::default();
    if policy.has_posture_checks() {
        for s in rows.values() {
            if !posture.data.contains_key(&s.identity_id) {
                let data = store.posture_data(&s.identity_id).await?;
                posture.data.insert(s.identity_id.clone(), data);
            }
            if !posture.sessions.contains_key(&s.api_session_id) {
                let state = store.session_posture(&s.api_session_id).await?;
                posture.sessions.insert(s.api_session_id.clone(), state);
            }
        }
    }
    for (id, s) in rows {
        let live = api_live
            .get(&s.api_session_id)
            .copied()
            .unwrap_or_else(|| view.api_sessions().contains_key(&s.api_session_id));
        match judge::session(&s, live, &policy, &posture, now) {
            SessionVerdict::Granted(g) => {
                out.patch.sessions.insert(id, Some(g));
            }
            SessionVerdict::Revoked { posture } => {
                out.posture_failed += u64::from(posture);
                out.revoked.push(id.clone());
                out.patch.sessions.insert(id, None);
            }
        }
    }

    for id in &t.services {
        let e = store.entity::<Service>(id).await?;
        out.patch
            .services
            .insert(id.clone(), e.as_ref().map(judge::service_pb));
        out.patch.service_routers.insert(
            id.clone(),
            e.is_some().then(|| judge::service_routers(&policy, id)),
        );
    }
    for id in &t.terminators {
        let e = store.entity::<Terminator>(id).await?;
        out.patch
            .terminators
            .insert(id.clone(), e.as_ref().map(judge::terminator_pb));
    }
    Ok(out)
}

/// Changes to the view and what the judging removes from the store.
#[derive(Debug, Default)]
pub struct Delta {
    /// The changes.
    pub patch: Patch,
    /// API sessions to delete (idled out; identity gone or disabled).
    pub ended: Vec<String>,
    /// Sessions to delete (no longer granted).
    pub revoked: Vec<String>,
    /// Of `revoked`, how many for posture.
    pub posture_failed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ChangeOp;

    fn change(kind: &str, id: &str) -> Change {
        Change {
            seq: 1,
            kind: kind.into(),
            entity_id: id.into(),
            op: ChangeOp::Update,
            at_unix_ms: 0,
            local: true,
        }
    }

    #[test]
    fn session_writes_touch_only_themselves() {
        let t = touched(&[change("sessions", "s1"), change("api_sessions", "a1")]);
        assert!(!t.all);
        assert_eq!(t.sessions, BTreeSet::from(["s1".to_owned()]));
        assert_eq!(t.api_sessions, BTreeSet::from(["a1".to_owned()]));
    }

    #[test]
    fn posture_data_touches_its_identity_and_cas_are_flagged() {
        let t = touched(&[change("posture_data", "i1"), change("cas", "c1")]);
        assert!(!t.all && t.cas);
        assert_eq!(t.identities, BTreeSet::from(["i1".to_owned()]));
    }

    #[test]
    fn policies_routers_and_unknown_kinds_ask_for_a_full_rebuild() {
        for kind in [
            "service-policies",
            "edge-router-policies",
            "service-edge-router-policies",
            "edge-routers",
            "posture-checks",
            "auth-policies",
            "something-new",
        ] {
            assert!(touched(&[change(kind, "x")]).all, "{kind}");
        }
    }

    #[test]
    fn bookkeeping_touches_nothing() {
        for kind in ["enrollments", "mfa", "meta", "configs", "api_session_certs"] {
            assert_eq!(touched(&[change(kind, "x")]), Touched::default(), "{kind}");
        }
    }
}
