//! Identities' credentials as an administrator manages them: password (`updb`)
//! authenticators created, changed and deleted, certificate extension requested,
//! authenticators and routers re-enrolled, enrollments created and deleted (openziti/ziti
//! `controller/model/authenticator_manager.go`, `enrollment_manager.go`,
//! `edge_router_manager.go`). Each operation is one transaction; slow work (password
//! hashing) is done before it opens, and what it checked is checked again inside it,
//! where no other write can land.

use crate::clock;
use crate::controller::Controller;
use crate::enroll;
use crate::error::ApiError;
use crate::model::{Identity, Kind};
use crate::store::{AuthenticatorRow, Credential, EnrollmentMethod, UPDB_METHOD};
use crate::thirdparty_ca::CaError;
use crate::thirdparty_ca::enrollment::create_ottca;

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("{what} {id:?} not found"))
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::CouldNotValidate(msg.into())
}

/// The identity `id`, or 404.
pub async fn identity(ctl: &Controller, id: &str) -> Result<(), ApiError> {
    ctl.store
        .get_entity(Kind::Identities.collection(), id)
        .await?
        .map(drop)
        .ok_or_else(|| not_found("identity", id))
}

/// The authenticator `id`, or 404.
pub async fn authenticator(ctl: &Controller, id: &str) -> Result<AuthenticatorRow, ApiError> {
    ctl.store
        .authenticator_by_id(id)
        .await?
        .ok_or_else(|| not_found("authenticator", id))
}

/// Checks a new password against the rules of the policy identity `identity_id`
/// follows.
async fn check_password_policy(
    ctl: &Controller,
    identity_id: &str,
    password: &str,
) -> Result<(), ApiError> {
    let identity = ctl
        .store
        .entity::<Identity>(identity_id)
        .await?
        .ok_or_else(|| not_found("identity", identity_id))?;
    crate::auth::policy::check_new_password(&ctl.store, &identity.doc, password).await
}

/// Checks the size and characters of a user name and password (400 when wrong).
pub fn check_credentials(username: &str, password: &str) -> Result<(), ApiError> {
    if username.trim().is_empty() || username.len() > 255 {
        return Err(invalid("username must be 1 to 255 characters"));
    }
    crate::model::check_text("username", username)?;
    if password.is_empty() || password.len() > 1024 {
        return Err(invalid("password must be 1 to 1024 characters"));
    }
    Ok(())
}

/// Fails (409) when `username` belongs to an authenticator other than `except`.
pub async fn username_free(
    ctl: &Controller,
    username: &str,
    except: Option<&str>,
) -> Result<(), ApiError> {
    match ctl.store.authenticator_by_username(username).await? {
        Some(a) if Some(a.id.as_str()) != except => Err(ApiError::Conflict(format!(
            "username {username:?} is already in use"
        ))),
        _ => Ok(()),
    }
}

/// Whether `identity_id` is the default admin (whose password stays).
async fn is_default_admin(ctl: &Controller, identity_id: &str) -> Result<bool, ApiError> {
    Ok(ctl.store.meta_get("admin_identity_id").await?.as_deref() == Some(identity_id))
}

/// Creates a password (`updb`) authenticator for `identity_id` (one per identity, the
/// user name unique, the password within the identity's policy); returns its id.
/// Certificate authenticators come from enrollment.
pub async fn create_password_authenticator(
    ctl: &Controller,
    method: &str,
    identity_id: &str,
    username: Option<String>,
    password: Option<String>,
) -> Result<String, ApiError> {
    if method != "updb" {
        return Err(invalid(format!(
            "method {method:?}: only updb authenticators can be created; certificate authenticators come from enrollment"
        )));
    }
    let (Some(username), Some(password)) = (username, password) else {
        return Err(invalid("updb authenticators need username and password"));
    };
    check_credentials(&username, &password)?;
    identity(ctl, identity_id).await?;
    check_password_policy(ctl, identity_id, &password).await?;
    // Hash before the write transaction (it must not wait on slow work); check again
    // inside it, where no other write can land.
    let password_hash = crate::auth::hash_password_gated(ctl, password).await?;
    let mut tx = ctl.store.begin_write().await?;
    identity(ctl, identity_id).await?;
    if ctl
        .store
        .authenticators_of(identity_id)
        .await?
        .iter()
        .any(|a| matches!(a.credential, Credential::Updb { .. }))
    {
        return Err(ApiError::MaxAuthenticators(format!(
            "identity {identity_id:?} already has a updb authenticator"
        )));
    }
    username_free(ctl, &username, None).await?;
    let now = clock::now_string();
    let row = AuthenticatorRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        identity_id: identity_id.to_owned(),
        credential: Credential::Updb {
            username,
            password_hash,
        },
        created_at: now.clone(),
        updated_at: now,
    };
    tx.insert_authenticator(&row).await?;
    tx.commit().await?;
    Ok(row.id)
}

/// Changes password authenticator `id`'s user name and/or password (`None`: kept).
pub async fn update_password_authenticator(
    ctl: &Controller,
    id: &str,
    username: Option<String>,
    password: Option<String>,
) -> Result<(), ApiError> {
    let a = authenticator(ctl, id).await?;
    let Credential::Updb {
        username: old_username,
        password_hash: old_hash,
    } = a.credential
    else {
        return Err(ApiError::CanNotUpdateAuthenticator(format!(
            "authenticator {id:?} is a {} authenticator; only updb authenticators can be updated",
            a.credential.method()
        )));
    };
    let username = username.unwrap_or(old_username);
    check_credentials(&username, password.as_deref().unwrap_or("unchanged"))?;
    if let Some(p) = &password {
        check_password_policy(ctl, &a.identity_id, p).await?;
    }
    let password_hash = match password {
        Some(p) => crate::auth::hash_password_gated(ctl, p).await?,
        None => old_hash,
    };
    let mut tx = ctl.store.begin_write().await?;
    username_free(ctl, &username, Some(id)).await?;
    if !tx
        .update_password_authenticator(id, &username, &password_hash, &clock::now_string())
        .await?
    {
        return Err(not_found("authenticator", id));
    }
    tx.commit().await?;
    Ok(())
}

/// Asks the identity of certificate authenticator `id` to extend its certificate (with
/// a new key when `roll_keys`): its API sessions then show `isCertExtendRequested`, and
/// its next certificate login answers the `ziti-authenticator-extend-requested` header.
pub async fn request_extend(ctl: &Controller, id: &str, roll_keys: bool) -> Result<(), ApiError> {
    let a = authenticator(ctl, id).await?;
    if !matches!(a.credential, Credential::Cert { pem: Some(_), .. }) {
        return Err(ApiError::CanNotUpdateAuthenticator(format!(
            "authenticator {id:?} is not a certificate this network issued"
        )));
    }
    let mut tx = ctl.store.begin_write().await?;
    tx.request_extension(id, roll_keys, &clock::now_string())
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Replaces authenticator `id` by a new enrollment expiring at `expires_at` (`ott` for
/// a certificate, `updb` with the same user name for a password), the authenticator
/// deleted with the API sessions it opened; returns the enrollment's id (openziti/ziti
/// `authenticator_manager.go` `ReEnroll`).
pub async fn re_enroll(ctl: &Controller, id: &str, expires_at: i64) -> Result<String, ApiError> {
    let a = authenticator(ctl, id).await?;
    if a.credential.username().is_some() && is_default_admin(ctl, &a.identity_id).await? {
        return Err(ApiError::EntityCanNotBeDeleted(
            "the default admin's password authenticator cannot be re-enrolled".into(),
        ));
    }
    let mut tx = ctl.store.begin_write().await?;
    if !tx.delete_authenticator(id).await? {
        return Err(not_found("authenticator", id));
    }
    let e = match &a.credential {
        Credential::Updb { username, .. } => {
            enroll::create_updb(ctl, &mut tx, &a.identity_id, username, Some(expires_at)).await?
        }
        Credential::Cert { .. } => {
            enroll::create_ott_expiring(ctl, &mut tx, &a.identity_id, Some(expires_at)).await?
        }
        other @ Credential::Router { .. } => {
            return Err(ApiError::CanNotUpdateAuthenticator(format!(
                "a {} authenticator cannot be re-enrolled",
                other.method()
            )));
        }
    };
    tx.commit().await?;
    ctl.notify_routers().await;
    tracing::info!(authenticator = %id, enrollment = %e.id, "authenticator re-enrolled");
    Ok(e.id)
}

/// Re-enrolls edge router `id`: its certificate credential and pending enrollment are
/// removed and a new `erott` enrollment made (its JWT in the router's detail); its
/// control connections close at once, and it cannot connect again until it enrolls
/// with the new token (openziti/ziti `edge_router_manager.go` `ReEnroll`). The way to
/// give a router new certificate names.
pub async fn re_enroll_router(ctl: &Controller, id: &str) -> Result<(), ApiError> {
    let router = ctl
        .store
        .get_entity(Kind::EdgeRouters.collection(), id)
        .await?
        .ok_or_else(|| not_found("edge-router", id))?;
    let mut tx = ctl.store.begin_write().await?;
    tx.delete_identity_credentials(&router.id).await?;
    let e = enroll::create_erott(ctl, &mut tx, &router.id).await?;
    tx.commit().await?;
    ctl.routers.kick(&router.id);
    ctl.notify_routers().await;
    tracing::warn!(event = "router_re_enrolled", router = %router.name, id = %router.id,
        enrollment = %e.id, "edge router re-enrolled: its certificate no longer connects");
    Ok(())
}

/// Deletes authenticator `id` and the API sessions it opened (the default admin's
/// password stays).
pub async fn delete_authenticator(ctl: &Controller, id: &str) -> Result<(), ApiError> {
    let a = authenticator(ctl, id).await?;
    if a.credential.username().is_some() && is_default_admin(ctl, &a.identity_id).await? {
        return Err(ApiError::EntityCanNotBeDeleted(
            "the default admin's password authenticator cannot be deleted".into(),
        ));
    }
    let mut tx = ctl.store.begin_write().await?;
    if !tx.delete_authenticator(id).await? {
        return Err(not_found("authenticator", id));
    }
    tx.commit().await?;
    ctl.notify_routers().await;
    Ok(())
}

/// What an enrollment is to be.
#[derive(Debug, Clone, Copy)]
pub enum NewEnrollment<'a> {
    /// A one-time token for a certificate (`ott`).
    Ott,
    /// A password for `username` (`updb`).
    Updb {
        /// The user name it will have.
        username: &'a str,
    },
    /// A certificate of 3rd-party CA `ca` (`ottca`).
    Ottca {
        /// The CA, by id or name.
        ca: &'a str,
    },
}

/// Creates an enrollment of `identity_id`, expiring at `expires_at` (else the
/// default); returns its id. An identity has one certificate and one password at most:
/// `ott` is refused while it has a certificate authenticator or a pending enrollment,
/// `updb` while it has a password or a pending `updb` enrollment (409), `ottca` while
/// it has an `ottca` enrollment (409 `ENROLLMENT_EXISTS`, as OpenZiti).
pub async fn create_enrollment(
    ctl: &Controller,
    identity_id: &str,
    what: NewEnrollment<'_>,
    expires_at: Option<i64>,
) -> Result<String, ApiError> {
    match what {
        NewEnrollment::Updb { username } if username.trim().is_empty() => {
            return Err(invalid("updb enrollments need a username"));
        }
        NewEnrollment::Ottca { ca } if ca.trim().is_empty() => {
            return Err(invalid("ottca enrollments need a caId"));
        }
        _ => {}
    }
    identity(ctl, identity_id).await?;
    let mut tx = ctl.store.begin_write().await?;
    let e = match what {
        NewEnrollment::Ott => {
            if ctl
                .store
                .authenticators_of(identity_id)
                .await?
                .iter()
                .any(|a| matches!(a.credential, Credential::Cert { .. }))
            {
                return Err(invalid(format!(
                    "identity {identity_id:?} already has a certificate authenticator; delete it to enroll again"
                )));
            }
            if !ctl.store.pending_enrollments(identity_id).await?.is_empty() {
                return Err(invalid(format!(
                    "identity {identity_id:?} already has a pending enrollment"
                )));
            }
            enroll::create_ott_expiring(ctl, &mut tx, identity_id, expires_at).await?
        }
        NewEnrollment::Updb { username } => {
            if tx
                .has_authenticator_method(identity_id, UPDB_METHOD)
                .await?
                || ctl
                    .store
                    .pending_enrollments(identity_id)
                    .await?
                    .iter()
                    .any(|e| matches!(e.method, EnrollmentMethod::Updb { .. }))
            {
                return Err(ApiError::Conflict(format!(
                    "identity {identity_id:?} already has a password or a pending updb enrollment"
                )));
            }
            enroll::create_updb(ctl, &mut tx, identity_id, username, expires_at).await?
        }
        NewEnrollment::Ottca { ca } => {
            if tx
                .pending_enrollments_in(identity_id)
                .await?
                .iter()
                .any(|e| matches!(e.method, EnrollmentMethod::Ottca { .. }))
            {
                return Err(ApiError::Ca(CaError::EnrollmentExists(format!(
                    "identity {identity_id:?} already has an ottca enrollment"
                ))));
            }
            create_ottca(ctl, &mut tx, identity_id, ca, expires_at).await?
        }
    };
    tx.commit().await?;
    Ok(e.id)
}

/// Deletes pending enrollment `id`, whatever its method.
pub async fn delete_enrollment(ctl: &Controller, id: &str) -> Result<(), ApiError> {
    let mut tx = ctl.store.begin_write().await?;
    let mut deleted = false;
    for method in enroll::IDENTITY_METHODS {
        deleted = deleted || tx.delete_enrollment(method, id).await?;
    }
    if !deleted {
        return Err(not_found("enrollment", id));
    }
    tx.commit().await?;
    Ok(())
}
