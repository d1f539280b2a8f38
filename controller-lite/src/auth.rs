//! Authentication: API sessions from a TLS client certificate (`method=cert`)
//! or a password (`method=password`), and the extractors that turn the
//! `zt-session` header into the calling identity.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::Value;

use crate::clock;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::model::Kind;
use crate::server::ConnInfo;
use crate::store::{ApiSessionRow, EntityRow};

/// Header carrying the API session token (GOSDK `ziti/constants`: `zt-session`).
pub const SESSION_HEADER: &str = "zt-session";

/// Hashes a password with Argon2id (PHC string).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    crate::pki::random_bytes(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ApiError::Internal(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

fn enabled_identity(ctl: &Controller, id: &str) -> Result<EntityRow, ApiError> {
    let identity = ctl
        .store
        .get_entity(Kind::Identities.collection(), id)?
        .ok_or(ApiError::InvalidAuth)?;
    if identity
        .data
        .get("disabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Err(ApiError::InvalidAuth);
    }
    Ok(identity)
}

fn config_types(body: &Value) -> Vec<String> {
    body.get("configTypes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn new_session(
    ctl: &Controller,
    identity: &EntityRow,
    authenticator_id: &str,
    body: &Value,
    conn: &ConnInfo,
) -> Result<(ApiSessionRow, EntityRow), ApiError> {
    let now = clock::now_string();
    let row = ApiSessionRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        token: uuid::Uuid::new_v4().to_string(),
        identity_id: identity.id.clone(),
        authenticator_id: authenticator_id.into(),
        config_types: config_types(body),
        ip_address: conn.peer_addr.ip().to_string(),
        created_at: now.clone(),
        updated_at: now,
        last_activity: clock::now_unix(),
    };
    ctl.store.insert_api_session(&row)?;
    ctl.notify_routers();
    tracing::info!(identity = %identity.name, api_session = %row.id, "authenticated");
    Ok((row, identity.clone()))
}

/// `method=cert`: the TLS client certificate must have been issued by the
/// signing CA and be registered as a certificate authenticator
/// (EDGE `authenticator_mod_cert.go`: chain checked in application code,
/// leaf mapped by fingerprint).
pub fn authenticate_cert(
    ctl: &Controller,
    conn: &ConnInfo,
    body: &Value,
) -> Result<(ApiSessionRow, EntityRow), ApiError> {
    let leaf = conn.certs.first().ok_or(ApiError::InvalidAuth)?;
    if !ctl.pki.verify_client_leaf(leaf.as_ref()) {
        return Err(ApiError::InvalidAuth);
    }
    let fp = crate::pki::fingerprint(leaf.as_ref());
    let auth = ctl
        .store
        .authenticator_by_fingerprint(&fp)?
        .ok_or(ApiError::InvalidAuth)?;
    let identity = enabled_identity(ctl, &auth.identity_id)?;
    new_session(ctl, &identity, &auth.id, body, conn)
}

/// `method=password` with `{"username","password"}`.
pub fn authenticate_password(
    ctl: &Controller,
    conn: &ConnInfo,
    body: &Value,
) -> Result<(ApiSessionRow, EntityRow), ApiError> {
    let username = body
        .get("username")
        .and_then(Value::as_str)
        .ok_or(ApiError::InvalidAuth)?;
    let password = body
        .get("password")
        .and_then(Value::as_str)
        .ok_or(ApiError::InvalidAuth)?;
    let auth = ctl
        .store
        .authenticator_by_username(username)?
        .ok_or(ApiError::InvalidAuth)?;
    let hash = auth.password_hash.as_deref().ok_or(ApiError::InvalidAuth)?;
    if !verify_password(password, hash) {
        return Err(ApiError::InvalidAuth);
    }
    let identity = enabled_identity(ctl, &auth.identity_id)?;
    new_session(ctl, &identity, &auth.id, body, conn)
}

/// The authenticated caller of a request (valid `zt-session`).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The API session.
    pub session: ApiSessionRow,
    /// The identity.
    pub identity: EntityRow,
}

impl Caller {
    /// Whether the identity is an administrator.
    pub fn is_admin(&self) -> bool {
        self.identity
            .data
            .get("isAdmin")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// Resolves the `zt-session` header; expired sessions are removed.
pub fn caller_from_parts(ctl: &Controller, parts: &Parts) -> Result<Caller, ApiError> {
    let token = parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized)?;
    if uuid::Uuid::parse_str(token).is_err() {
        return Err(ApiError::Unauthorized);
    }
    let session = ctl
        .store
        .api_session_by_token(token)?
        .ok_or(ApiError::Unauthorized)?;
    let now = clock::now_unix();
    if session.last_activity + ctl.config.api_session_timeout_secs <= now {
        ctl.store.delete_api_session(&session.id)?;
        ctl.notify_routers();
        return Err(ApiError::Unauthorized);
    }
    let identity = ctl
        .store
        .get_entity(Kind::Identities.collection(), &session.identity_id)?
        .ok_or(ApiError::Unauthorized)?;
    if identity
        .data
        .get("disabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Err(ApiError::Unauthorized);
    }
    let now_str = clock::now_string();
    ctl.store.touch_api_session(&session.id, now, &now_str)?;
    let session = ApiSessionRow {
        last_activity: now,
        updated_at: now_str,
        ..session
    };
    Ok(Caller { session, identity })
}

impl FromRequestParts<Arc<Controller>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Controller>,
    ) -> Result<Self, Self::Rejection> {
        caller_from_parts(state, parts)
    }
}

/// An authenticated administrator.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<Arc<Controller>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Controller>,
    ) -> Result<Self, Self::Rejection> {
        let caller = caller_from_parts(state, parts)?;
        if !caller.is_admin() {
            return Err(ApiError::Forbidden);
        }
        Ok(Self(caller))
    }
}
