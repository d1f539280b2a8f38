//! Pure judgements of single view entries, shared by the full and the incremental
//! builders so both decide alike: whether an API session is live, withheld or ended,
//! whether a session is still granted (policy and posture), and the control-plane
//! form of services and terminators.

use std::collections::HashMap;

use base64::Engine;
use weft_wire::control::pb;

use crate::auth::policy::{Policies, owes_totp};
use crate::authz::PolicySnapshot;
use crate::model::{Entity, Identity, PolicyType, Service, Terminator};
use crate::posture::{PostureData, SessionPosture};
use crate::store::{ApiSessionRow, SessionRow};

/// What the view needs to know of an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFacts {
    /// Name, told to routers with each API session.
    pub name: String,
    /// Disabled now (its API sessions end).
    pub disabled: bool,
    /// Its authentication policy requires TOTP.
    pub require_totp: bool,
}

impl IdentityFacts {
    /// The facts of a stored identity at `now` (Unix seconds).
    pub fn of(e: &Entity<Identity>, policies: &Policies, now: i64) -> Self {
        Self {
            name: e.name.clone(),
            disabled: e.doc.is_disabled(now),
            require_totp: policies.of(&e.doc).secondary.require_totp,
        }
    }
}

/// What becomes of an API session.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiVerdict {
    /// Routers admit it.
    Live(pb::ApiSession),
    /// It exists but owes an answer to a TOTP query: routers do not see it yet.
    Withheld,
    /// It idled out or its identity is gone or disabled: it is removed from the store.
    Ended,
}

/// Judges an API session at `now` (Unix seconds) with idle timeout `timeout` seconds.
/// `fingerprint` is the certificate it logged in with; `certs` the valid certificates
/// issued to it.
pub fn api_session(
    s: ApiSessionRow,
    fingerprint: Option<String>,
    certs: Vec<String>,
    identity: Option<&IdentityFacts>,
    now: i64,
    timeout: i64,
) -> ApiVerdict {
    let Some(identity) = identity.filter(|i| !i.disabled) else {
        return ApiVerdict::Ended;
    };
    if s.last_activity + timeout <= now {
        return ApiVerdict::Ended;
    }
    if owes_totp(&s, identity.require_totp) {
        // A partial session (an open authentication query) reaches no router: its
        // edge connections and sessions are refused until it answers.
        return ApiVerdict::Withheld;
    }
    ApiVerdict::Live(pb::ApiSession {
        expires_at_unix_ms: (s.last_activity + timeout).saturating_mul(1000),
        id: s.id,
        token: s.token,
        identity_id: s.identity_id,
        identity_name: identity.name.clone(),
        cert_fingerprints: fingerprint.into_iter().chain(certs).collect(),
    })
}

/// What becomes of a session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionVerdict {
    /// Still granted: routers admit it.
    Granted(pb::Session),
    /// No longer granted (its API session is not live, no policy grants it, or its
    /// posture fails): it is removed from the store.
    Revoked {
        /// Revoked because posture failed (counted apart).
        posture: bool,
    },
}

/// Posture facts for judging sessions: per identity what its endpoints reported, per
/// API session its MFA and endpoint state. Loaded only when posture checks exist.
#[derive(Debug, Default)]
pub struct PostureFacts {
    /// Per identity.
    pub data: HashMap<String, PostureData>,
    /// Per API session.
    pub sessions: HashMap<String, SessionPosture>,
}

fn session_type(t: PolicyType) -> pb::SessionType {
    match t {
        PolicyType::Dial => pb::SessionType::Dial,
        PolicyType::Bind => pb::SessionType::Bind,
    }
}

/// Judges a session whose API session is (`api_session_live`) or is not live, under
/// `policy` and, when posture checks exist, `posture` at `now` (Unix seconds).
pub fn session(
    s: &SessionRow,
    api_session_live: bool,
    policy: &PolicySnapshot,
    posture: &PostureFacts,
    now: i64,
) -> SessionVerdict {
    let kind = s.session_type;
    let granted = (api_session_live && policy.grants(&s.identity_id, &s.service_id, kind))
        .then(|| (session_type(kind), kind));
    let Some((ty, kind)) = granted else {
        return SessionVerdict::Revoked { posture: false };
    };
    if policy.has_posture_checks() {
        // Posture is judged continuously: a session whose granting policies all fail
        // now (new posture data, an MFA timeout, a wake or unlock not answered, an
        // edited check) is removed like one no policy grants.
        let no_data = PostureData::default();
        let verdicts = policy.posture_verdicts(
            &s.identity_id,
            &s.service_id,
            kind,
            posture.data.get(&s.identity_id).unwrap_or(&no_data),
            &posture
                .sessions
                .get(&s.api_session_id)
                .copied()
                .unwrap_or_default(),
            now,
        );
        if !crate::posture::any_passing(&verdicts) {
            return SessionVerdict::Revoked { posture: true };
        }
    }
    SessionVerdict::Granted(pb::Session {
        id: s.id.clone(),
        token: s.token.clone(),
        api_session_id: s.api_session_id.clone(),
        service_id: s.service_id.clone(),
        r#type: ty as i32,
        identity_id: s.identity_id.clone(),
    })
}

/// The control-plane form of a stored service.
pub fn service_pb(e: &Entity<Service>) -> pb::Service {
    pb::Service {
        id: e.id.clone(),
        name: e.name.clone(),
        encryption_required: e.doc.encryption_required,
        terminator_strategy: e.doc.terminator_strategy.clone(),
    }
}

/// The routers through which service `id` may be reached.
pub fn service_routers(policy: &PolicySnapshot, id: &str) -> pb::RouterAccess {
    pb::RouterAccess {
        id: id.to_owned(),
        router_ids: policy.router_ids_for_service(id),
    }
}

/// The routers identity `id` may use.
pub fn identity_routers(policy: &PolicySnapshot, id: &str) -> pb::RouterAccess {
    pb::RouterAccess {
        id: id.to_owned(),
        router_ids: policy.router_ids_for_identity(id),
    }
}

/// The control-plane form of a stored terminator document.
pub fn terminator_pb(e: &Entity<Terminator>) -> pb::Terminator {
    let d = &e.doc;
    let precedence = match d.precedence.as_deref() {
        Some("required") => pb::Precedence::Required,
        Some("failed") => pb::Precedence::Failed,
        _ => pb::Precedence::Default,
    };
    pb::Terminator {
        id: e.id.clone(),
        service_id: d.service.clone(),
        router_id: d.router.clone(),
        binding: d.binding.clone(),
        address: d.address.clone(),
        instance_id: d.instance_id.clone(),
        cost: u32::from(d.cost),
        precedence: precedence as i32,
        identity_id: d.identity.clone(),
        host_public_key: base64::engine::general_purpose::STANDARD
            .decode(&d.host_public_key)
            .unwrap_or_default(),
        session_id: d.session_id.clone(),
    }
}
