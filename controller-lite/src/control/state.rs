//! Building the router-facing state from the store, enforcing on the way what must
//! no longer exist: API sessions that idled out or whose identity is gone or disabled,
//! and sessions their identity is no longer granted by policy or whose posture no
//! longer passes. API sessions with an
//! open authentication query are withheld from routers until answered.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde_json::Value;
use weft_wire::control::pb;

use super::feed::RouterView;
use crate::auth::policy::{Policies, owes_totp};
use crate::clock;
use crate::controller::Controller;
use crate::error::StoreError;
use crate::model::{Kind, PolicyType, identity_disabled};

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn session_type(t: &str) -> Option<(pb::SessionType, PolicyType)> {
    match t {
        "Dial" => Some((pb::SessionType::Dial, PolicyType::Dial)),
        "Bind" => Some((pb::SessionType::Bind, PolicyType::Bind)),
        _ => None,
    }
}

/// Deletes what may no longer exist and returns everything routers must know.
pub async fn build_router_view(ctl: &Controller) -> Result<RouterView, StoreError> {
    let store = &ctl.store;
    let now = clock::now_unix();
    let timeout = ctl.config.api_session_timeout_secs;
    let policies = Policies::load(store).await?;
    // Per identity: name, disabled, and whether its policy requires TOTP.
    let identities: BTreeMap<String, (String, bool, bool)> = store
        .list_all(Kind::Identities.collection())
        .await?
        .into_iter()
        .map(|e| {
            let disabled = identity_disabled(&e.data, now);
            let require_totp = policies.of(&e).secondary.require_totp;
            (e.id, (e.name, disabled, require_totp))
        })
        .collect();

    // Certificates issued to API sessions count as theirs at the routers.
    let mut session_certs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (api_session, fingerprint) in store.valid_api_session_cert_fingerprints(now).await? {
        session_certs
            .entry(api_session)
            .or_default()
            .push(fingerprint);
    }

    let mut view = RouterView::default();
    let mut ended = Vec::new();
    for (s, fingerprint) in store.list_api_sessions().await? {
        let live_identity = identities
            .get(&s.identity_id)
            .filter(|(_, disabled, _)| !disabled);
        let Some((name, _, require_totp)) =
            live_identity.filter(|_| s.last_activity + timeout > now)
        else {
            ended.push(s.id);
            continue;
        };
        if owes_totp(&s, *require_totp) {
            // A partial session (an open authentication query) reaches no router: its
            // edge connections and sessions are refused until it answers.
            continue;
        }
        let certs = session_certs.remove(&s.id).unwrap_or_default();
        view.api_sessions.insert(
            s.id.clone(),
            pb::ApiSession {
                id: s.id,
                token: s.token,
                identity_id: s.identity_id,
                identity_name: name.clone(),
                cert_fingerprints: fingerprint.into_iter().chain(certs).collect(),
                expires_at_unix_ms: (s.last_activity + timeout).saturating_mul(1000),
            },
        );
    }

    let sessions = store.list_sessions().await?;
    let holders: BTreeSet<&str> = sessions.iter().map(|s| s.identity_id.as_str()).collect();
    let policy = ctl.policy.get(store).await?;
    let perms = policy.permissions_of(holders);
    // Routers enforce edge router policies per identity and service edge router
    // policies per service from these (a router serves nothing no entry grants it).
    let with_api_sessions: BTreeSet<&str> = view
        .api_sessions
        .values()
        .map(|a| a.identity_id.as_str())
        .collect();
    for identity_id in with_api_sessions {
        view.identity_routers.insert(
            identity_id.to_owned(),
            pb::RouterAccess {
                id: identity_id.to_owned(),
                router_ids: policy.router_ids_for_identity(identity_id),
            },
        );
    }
    // Posture is judged continuously: a session whose granting policies all fail now
    // (new posture data, an MFA timeout, a wake or unlock not answered, an edited check)
    // is removed like one no policy grants.
    let (posture_data, session_postures) = if policy.has_posture_checks() {
        (
            store.all_posture_data().await?,
            store.all_session_postures().await?,
        )
    } else {
        Default::default()
    };
    let no_data = crate::posture::PostureData::default();
    let mut revoked = Vec::new();
    let mut posture_failed = 0u64;
    for s in &sessions {
        let granted = session_type(&s.session_type).filter(|(_, kind)| {
            view.api_sessions.contains_key(&s.api_session_id)
                && perms
                    .get(&s.identity_id)
                    .and_then(|p| p.get(&s.service_id))
                    .is_some_and(|k| k.contains(kind))
        });
        let Some((ty, kind)) = granted else {
            revoked.push(s.id.clone());
            continue;
        };
        if policy.has_posture_checks() {
            let verdicts = policy.posture_verdicts(
                &s.identity_id,
                &s.service_id,
                kind,
                posture_data.get(&s.identity_id).unwrap_or(&no_data),
                &session_postures
                    .get(&s.api_session_id)
                    .copied()
                    .unwrap_or_default(),
                now,
            );
            if !crate::posture::any_passing(&verdicts) {
                posture_failed += 1;
                revoked.push(s.id.clone());
                continue;
            }
        }
        view.sessions.insert(
            s.id.clone(),
            pb::Session {
                id: s.id.clone(),
                token: s.token.clone(),
                api_session_id: s.api_session_id.clone(),
                service_id: s.service_id.clone(),
                r#type: ty as i32,
                identity_id: s.identity_id.clone(),
            },
        );
    }
    if !ended.is_empty() || !revoked.is_empty() {
        // One transaction, recorded in the change log like any write. Another
        // controller may have removed some already; the deletes are idempotent.
        let mut tx = store.begin_write().await?;
        for id in &ended {
            tx.delete_api_session(id).await?;
        }
        tx.delete_sessions(&revoked).await?;
        tx.commit().await?;
        if !revoked.is_empty() {
            tracing::info!(
                count = revoked.len(),
                posture = posture_failed,
                "sessions no longer granted removed"
            );
        }
        ctl.metrics
            .posture_revocations
            .fetch_add(posture_failed, std::sync::atomic::Ordering::Relaxed);
    }

    for e in store.list_all(Kind::Services.collection()).await? {
        view.service_routers.insert(
            e.id.clone(),
            pb::RouterAccess {
                id: e.id.clone(),
                router_ids: policy.router_ids_for_service(&e.id),
            },
        );
        view.services.insert(
            e.id.clone(),
            pb::Service {
                name: e.name,
                encryption_required: e.data.get("encryptionRequired").and_then(Value::as_bool)
                    != Some(false),
                terminator_strategy: str_field(&e.data, "terminatorStrategy").to_string(),
                id: e.id,
            },
        );
    }

    for e in store.list_all(Kind::Terminators.collection()).await? {
        view.terminators
            .insert(e.id.clone(), terminator_pb(&e.id, &e.data));
    }
    Ok(view)
}

/// The control-plane form of a stored terminator document.
pub fn terminator_pb(id: &str, d: &Value) -> pb::Terminator {
    let precedence = match str_field(d, "precedence") {
        "required" => pb::Precedence::Required,
        "failed" => pb::Precedence::Failed,
        _ => pb::Precedence::Default,
    };
    pb::Terminator {
        id: id.to_string(),
        service_id: str_field(d, "service").to_string(),
        router_id: str_field(d, "router").to_string(),
        binding: str_field(d, "binding").to_string(),
        address: str_field(d, "address").to_string(),
        instance_id: str_field(d, "instanceId").to_string(),
        cost: d
            .get("cost")
            .and_then(Value::as_u64)
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0),
        precedence: precedence as i32,
        identity_id: str_field(d, "identity").to_string(),
        host_public_key: base64::engine::general_purpose::STANDARD
            .decode(str_field(d, "hostPublicKey"))
            .unwrap_or_default(),
        session_id: str_field(d, "sessionId").to_string(),
    }
}
