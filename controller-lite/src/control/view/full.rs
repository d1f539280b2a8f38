//! The whole router-facing view judged from the whole store: at start-up, in the
//! periodic sweep (which is what enforces time limits: idle API sessions, the end of
//! a timed disable, MFA posture timeouts, certificate validity), and whenever the
//! change log cannot say what changed.

use std::collections::BTreeMap;

use super::RouterView;
use super::judge::{self, ApiVerdict, IdentityFacts, PostureFacts, SessionVerdict};
use crate::auth::policy::Policies;
use crate::clock;
use crate::controller::Controller;
use crate::error::StoreError;
use crate::model::{Identity, Service, Terminator};

/// A judged view and what the judging removes from the store.
#[derive(Debug, Default)]
pub struct Judged {
    /// The view routers must hold (the full builder's), or the changes to it.
    pub view: RouterView,
    /// API sessions to delete (idled out; identity gone or disabled).
    pub ended: Vec<String>,
    /// Sessions to delete (no longer granted).
    pub revoked: Vec<String>,
    /// Of `revoked`, how many for posture.
    pub posture_failed: u64,
}

/// Judges everything in the store.
pub async fn build(ctl: &Controller) -> Result<Judged, StoreError> {
    let store = &ctl.store;
    let now = clock::now_unix();
    let timeout = ctl.config.auth.api_session_timeout_secs;
    let policies = Policies::load(store).await?;
    let identities: BTreeMap<String, IdentityFacts> = store
        .entities::<Identity>()
        .await?
        .iter()
        .map(|e| (e.id.clone(), IdentityFacts::of(e, &policies, now)))
        .collect();

    // Certificates issued to API sessions count as theirs at the routers.
    let mut session_certs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (api_session, fingerprint) in store.valid_api_session_cert_fingerprints(now).await? {
        session_certs
            .entry(api_session)
            .or_default()
            .push(fingerprint);
    }

    let mut out = Judged::default();
    for (s, fingerprint) in store.list_api_sessions().await? {
        let certs = session_certs.remove(&s.id).unwrap_or_default();
        let identity = identities.get(&s.identity_id);
        let id = s.id.clone();
        match judge::api_session(s, fingerprint, certs, identity, now, timeout) {
            ApiVerdict::Live(a) => out.view.insert_api_session(a),
            ApiVerdict::Withheld => {}
            ApiVerdict::Ended => out.ended.push(id),
        }
    }

    let policy = ctl.policy.get(store).await?;
    // Routers enforce edge router policies per identity and service edge router
    // policies per service from these (a router serves nothing no entry grants it).
    let holders: Vec<String> = out
        .view
        .api_sessions()
        .values()
        .map(|a| a.identity_id.clone())
        .collect();
    for identity_id in holders {
        out.view
            .insert_identity_routers(judge::identity_routers(&policy, &identity_id));
    }
    let posture = if policy.has_posture_checks() {
        PostureFacts {
            data: store.all_posture_data().await?,
            sessions: store.all_session_postures().await?,
        }
    } else {
        PostureFacts::default()
    };
    for s in store.list_sessions().await? {
        let live = out.view.api_sessions().contains_key(&s.api_session_id);
        match judge::session(&s, live, &policy, &posture, now) {
            SessionVerdict::Granted(g) => out.view.insert_session(g),
            SessionVerdict::Revoked { posture } => {
                out.posture_failed += u64::from(posture);
                out.revoked.push(s.id);
            }
        }
    }

    for e in store.entities::<Service>().await? {
        out.view
            .insert_service_routers(judge::service_routers(&policy, &e.id));
        out.view.insert_service(judge::service_pb(&e));
    }
    for e in store.entities::<Terminator>().await? {
        out.view.insert_terminator(judge::terminator_pb(&e));
    }
    Ok(out)
}
