//! Authentication policies at login: which primary methods an identity may use, the
//! password lockout, and the secondary factors that leave an API session partial until
//! answered (openziti/ziti `controller/env/security_ctx.go`,
//! `controller/model/authenticator_mod_updb.go`).

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::clock;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::model::{AuthPolicy, Entity, ExternalJwtSigner, Identity};
use crate::store::{ApiSessionRow, Store};

/// The policy `identity` follows. A policy that vanished (deletes of used policies are
/// refused) falls back to the built-in default.
pub async fn policy_of(store: &Store, identity: &Identity) -> Result<AuthPolicy, ApiError> {
    Ok(store
        .entity::<AuthPolicy>(identity.auth_policy())
        .await?
        .map(|p| p.doc)
        .unwrap_or_else(AuthPolicy::builtin_default))
}

/// Checks a new password of `identity` against its policy's rules (OpenZiti stores the
/// rules without enforcing them; Weft enforces them wherever a password is set).
pub async fn check_new_password(
    store: &Store,
    identity: &Identity,
    password: &str,
) -> Result<(), ApiError> {
    policy_of(store, identity)
        .await?
        .primary
        .updb
        .check_password(password)
}

/// Why a request of `identity` lacks the external JWT its `policy` asks for on every
/// request (`secondary.requireExtJwtSigner`); `None` when it has one or none is asked.
pub async fn ext_jwt_missing(
    ctl: &Controller,
    headers: &axum::http::HeaderMap,
    policy: &AuthPolicy,
    identity: &Entity<Identity>,
) -> Option<ApiError> {
    let signer = policy.secondary.require_ext_jwt_signer.as_deref()?;
    crate::extjwt::check_secondary(ctl, headers, signer, &identity.id)
        .await
        .err()
}

/// Every authentication policy, for views over many identities (router state, API
/// session lists).
#[derive(Debug, Clone, Default)]
pub struct Policies(std::collections::HashMap<String, AuthPolicy>, AuthPolicy);

impl Policies {
    /// Reads every policy.
    pub async fn load(store: &Store) -> Result<Self, crate::error::StoreError> {
        let map = store
            .entities::<AuthPolicy>()
            .await?
            .into_iter()
            .map(|p| (p.id, p.doc))
            .collect();
        Ok(Self(map, AuthPolicy::builtin_default()))
    }

    /// The policy `identity` follows.
    pub fn of(&self, identity: &Identity) -> &AuthPolicy {
        self.0.get(identity.auth_policy()).unwrap_or(&self.1)
    }
}

/// Whether `session` still owes an answer to a TOTP query: the identity had verified
/// MFA at login or its policy requires TOTP, and the session has not answered.
pub fn totp_pending(session: &ApiSessionRow, policy: &AuthPolicy) -> bool {
    owes_totp(session, policy.secondary.require_totp)
}

/// [`totp_pending`] given only whether the identity's policy requires TOTP.
pub fn owes_totp(session: &ApiSessionRow, require_totp: bool) -> bool {
    (session.mfa_required || require_totp) && !session.mfa_complete
}

/// The authentication queries a request leaves open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenQueries {
    /// A TOTP code is owed.
    pub totp: bool,
    /// The request lacks the external JWT of this signer (id) that the policy asks for.
    pub ext_jwt_signer: Option<String>,
}

/// The TOTP query (openziti/edge-api `source/shared/auth-query.yml`; values as
/// OpenZiti's legacy session answers them, which the C SDK 0.29 acts on).
fn totp_query() -> Value {
    json!({
        "typeId": "MFA",
        "provider": "ziti",
        "format": "alphaNumeric",
        "httpMethod": "POST",
        "httpUrl": "./authenticate/mfa",
        "minLength": 4,
        "maxLength": 6,
    })
}

/// The `authQueries` of an API session for `open`: the TOTP query while one is owed,
/// and the EXT-JWT query (`provider: url`, the signer's `externalAuthUrl`, `clientId`
/// and `scopes`) while the policy's signer has not vouched for the request.
pub async fn auth_queries(store: &Store, open: &OpenQueries) -> Value {
    let mut queries = Vec::new();
    if open.totp {
        queries.push(totp_query());
    }
    if let Some(id) = &open.ext_jwt_signer {
        // A signer that vanished meanwhile is named without its details.
        let signer = store
            .entity::<ExternalJwtSigner>(id)
            .await
            .ok()
            .flatten()
            .map(|s| s.doc);
        queries.push(json!({
            "typeId": "EXT-JWT",
            "provider": "url",
            "id": id,
            "httpUrl": signer.as_ref().and_then(|s| s.external_auth_url.as_deref()),
            "clientId": signer.as_ref().and_then(|s| s.client_id.as_deref()),
            "scopes": signer.as_ref().map(|s| s.scopes.as_slice()).unwrap_or_default(),
        }));
    }
    Value::Array(queries)
}

/// Counts a wrong password against `authenticator_id` and locks `identity` out when
/// its policy's `maxAttempts` is reached: the identity is disabled (for
/// `lockoutDurationMinutes`, or until enabled when 0), its API sessions are deleted and
/// the count starts again. Returns whether it locked the identity out.
pub async fn count_password_failure(
    ctl: &Controller,
    identity: &Entity<Identity>,
    authenticator_id: &str,
    policy: &AuthPolicy,
) -> Result<bool, ApiError> {
    let max = policy.primary.updb.max_attempts;
    if max <= 0 {
        return Ok(false);
    }
    let failures = ctl.store.record_password_failure(authenticator_id).await?;
    if failures < max {
        return Ok(false);
    }
    let now = clock::now_unix();
    let minutes = policy.primary.updb.lockout_duration_minutes;
    let until = (minutes > 0).then(|| now.saturating_add(minutes.saturating_mul(60)));
    let mut tx = ctl.store.begin_write().await?;
    if !super::set_disabled_in(&mut tx, &identity.id, Some(until)).await? {
        return Ok(false);
    }
    tx.commit().await?;
    ctl.metrics.lockouts.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        identity = %identity.name,
        failures,
        minutes,
        "identity locked out after failed passwords"
    );
    ctl.notify_routers().await;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(required: bool, complete: bool) -> ApiSessionRow {
        ApiSessionRow {
            id: "s".into(),
            token: "t".into(),
            identity_id: "i".into(),
            authenticator_id: "a".into(),
            config_types: Vec::new(),
            ip_address: "127.0.0.1".into(),
            created_at: String::new(),
            updated_at: String::new(),
            last_activity: 0,
            mfa_required: required,
            mfa_complete: complete,
        }
    }

    #[test]
    fn totp_is_owed_when_enrolled_or_required_until_answered() {
        let plain = AuthPolicy::builtin_default();
        let mut strict = AuthPolicy::builtin_default();
        strict.secondary.require_totp = true;
        for (required, complete, policy, owed) in [
            (false, false, &plain, false),
            (true, false, &plain, true),
            (true, true, &plain, false),
            (false, false, &strict, true),
            (false, true, &strict, false),
        ] {
            assert_eq!(
                totp_pending(&session(required, complete), policy),
                owed,
                "required={required} complete={complete} requireTotp={}",
                policy.secondary.require_totp
            );
        }
        assert_eq!(totp_query()["typeId"], "MFA");
    }

    #[test]
    fn identities_without_a_policy_follow_the_default() {
        let identity = |doc: Value| -> Identity { serde_json::from_value(doc).unwrap() };
        assert_eq!(identity(json!({})).auth_policy(), "default");
        assert_eq!(
            identity(json!({"authPolicyId": ""})).auth_policy(),
            "default"
        );
        assert_eq!(identity(json!({"authPolicyId": "p1"})).auth_policy(), "p1");
    }
}
