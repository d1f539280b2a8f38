//! TOTP MFA: enrollment, verification, removal, recovery codes and the answers to
//! authentication queries, each write one transaction (openziti/ziti
//! `controller/model/mfa_manager.go`; the endpoints, which parse, call and render, are
//! in [`crate::api::client::mfa`]).
//!
//! Stricter than OpenZiti: a code is accepted once (the step is recorded atomically in
//! the store, so not even two controllers accept it twice), and after
//! [`MAX_FAILURES`] wrong codes in a row the identity's codes are refused unchecked for
//! [`BLOCK_SECS`] (OpenZiti counts no failures).

use std::sync::atomic::Ordering;

use crate::clock;
use crate::controller::Controller;
use crate::error::{ApiError, StoreError};
use crate::model::{Entity, Identity};
use crate::store::MfaRow;

use super::totp;

/// Wrong codes in a row before codes are refused for a while.
pub const MAX_FAILURES: i64 = 5;
/// How long codes are refused after [`MAX_FAILURES`] wrong ones, in seconds.
pub const BLOCK_SECS: i64 = 30;

/// Starts a TOTP enrollment for `identity` (unverified until a code proves it):
/// 409 `MFA_EXISTS` when it has one.
pub async fn enroll(ctl: &Controller, identity: &Entity<Identity>) -> Result<MfaRow, ApiError> {
    if ctl.store.mfa_of(&identity.id).await?.is_some() {
        return Err(ApiError::MfaExists);
    }
    let now = clock::now_string();
    let row = MfaRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        identity_id: identity.id.clone(),
        secret: totp::new_secret()?,
        verified: false,
        recovery_codes: totp::new_recovery_codes()?,
        last_step: 0,
        failures: 0,
        blocked_until: 0,
        created_at: now.clone(),
        updated_at: now,
    };
    let mut tx = ctl.store.begin_write().await?;
    match tx.insert_mfa(&row).await {
        Ok(()) => {}
        // Another request enrolled meanwhile.
        Err(StoreError::Duplicate(_)) => return Err(ApiError::MfaExists),
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(row)
}

/// The provisioning URL of an enrollment.
pub fn provisioning_url(ctl: &Controller, identity: &Entity<Identity>, mfa: &MfaRow) -> String {
    totp::provisioning_url(&ctl.config.auth.totp_issuer, &identity.name, &mfa.secret)
}

/// Checks `code` for `mfa`: a TOTP code not used before, or (with `allow_recovery`) an
/// unused recovery code, which is spent. Wrong codes count toward the block;
/// 400 `MFA_INVALID_TOKEN` for a wrong, malformed or replayed code, 429 while blocked.
pub async fn check_code(
    ctl: &Controller,
    mfa: &MfaRow,
    code: &str,
    allow_recovery: bool,
) -> Result<(), ApiError> {
    let now = clock::now_unix();
    if mfa.blocked_until > now {
        ctl.metrics.mfa_throttled.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::RateLimited);
    }
    let code = code.trim();
    let good = if allow_recovery && mfa.recovery_codes.iter().any(|c| c == code) {
        ctl.store
            .spend_recovery_code(&mfa.identity_id, &mfa.recovery_codes, code)
            .await?
    } else {
        match totp::check(&mfa.secret, code, u64::try_from(now).unwrap_or(0)) {
            Some(step) => {
                let step = i64::try_from(step).unwrap_or(i64::MAX);
                ctl.store.accept_totp_step(&mfa.identity_id, step).await?
            }
            None => false,
        }
    };
    if good {
        return Ok(());
    }
    ctl.metrics.mfa_failures.fetch_add(1, Ordering::Relaxed);
    let failures = ctl
        .store
        .record_mfa_failure(&mfa.identity_id, MAX_FAILURES, now, BLOCK_SECS)
        .await?;
    tracing::info!(identity = %mfa.identity_id, failures, "wrong MFA code");
    Err(ApiError::MfaInvalidToken)
}

/// The identity's enrollment or 404.
pub async fn enrollment_of(
    ctl: &Controller,
    identity: &Entity<Identity>,
) -> Result<MfaRow, ApiError> {
    ctl.store
        .mfa_of(&identity.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("the identity has no MFA enrollment".into()))
}

/// Verifies `identity`'s unverified enrollment with TOTP `code`; the calling API session
/// `api_session_id` then counts as having answered (OpenZiti sets `isMfaRequired` and
/// `isMfaComplete`). Routers are told.
pub async fn verify_enrollment(
    ctl: &Controller,
    identity: &Entity<Identity>,
    api_session_id: &str,
    code: &str,
) -> Result<(), ApiError> {
    let m = enrollment_of(ctl, identity).await?;
    if m.verified {
        return Err(ApiError::NotFound(
            "the identity has no unverified MFA enrollment".into(),
        ));
    }
    check_code(ctl, &m, code, false).await?;
    let mut tx = ctl.store.begin_write().await?;
    tx.verify_mfa(&identity.id, &clock::now_string()).await?;
    tx.set_api_session_mfa(api_session_id, true, true).await?;
    tx.commit().await?;
    ctl.notify_routers().await;
    tracing::info!(identity = %identity.name, "MFA enrollment verified");
    Ok(())
}

/// Removes `identity`'s own enrollment; a verified one needs a TOTP or recovery `code`
/// (`MFA_INVALID_TOKEN` without one).
pub async fn remove_own(
    ctl: &Controller,
    identity: &Entity<Identity>,
    code: Option<&str>,
) -> Result<(), ApiError> {
    let m = enrollment_of(ctl, identity).await?;
    if m.verified {
        let code = code.ok_or(ApiError::MfaInvalidToken)?;
        check_code(ctl, &m, code, true).await?;
    }
    let mut tx = ctl.store.begin_write().await?;
    tx.delete_mfa_of(&identity.id).await?;
    tx.commit().await?;
    ctl.notify_routers().await;
    tracing::info!(identity = %identity.name, "MFA enrollment removed");
    Ok(())
}

/// `identity`'s verified enrollment, or 404.
pub async fn verified_enrollment(
    ctl: &Controller,
    identity: &Entity<Identity>,
) -> Result<MfaRow, ApiError> {
    let m = enrollment_of(ctl, identity).await?;
    if !m.verified {
        return Err(ApiError::NotFound(
            "the identity has no verified MFA enrollment".into(),
        ));
    }
    Ok(m)
}

/// Replaces `identity`'s recovery codes with 20 new ones, after a TOTP or recovery
/// `code`.
pub async fn regenerate_recovery_codes(
    ctl: &Controller,
    identity: &Entity<Identity>,
    code: &str,
) -> Result<(), ApiError> {
    let m = verified_enrollment(ctl, identity).await?;
    check_code(ctl, &m, code, true).await?;
    let codes = totp::new_recovery_codes()?;
    let mut tx = ctl.store.begin_write().await?;
    tx.set_recovery_codes(&identity.id, &codes, &clock::now_string())
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Answers the TOTP authentication query of API session `api_session_id` with a TOTP or
/// recovery `code` (409 `MFA_NOT_ENROLLED` without a verified enrollment); the session
/// is full then, and routers learn of it before the answer. Counted and logged as a
/// login step either way.
pub async fn answer(
    ctl: &Controller,
    identity: &Entity<Identity>,
    api_session_id: &str,
    code: &str,
) -> Result<(), ApiError> {
    let m = ctl
        .store
        .mfa_of(&identity.id)
        .await?
        .filter(|m| m.verified)
        .ok_or(ApiError::MfaNotEnrolled)?;
    if let Err(e) = check_code(ctl, &m, code, true).await {
        ctl.metrics
            .auth
            .record("totp", crate::telemetry::AuthResult::Failure);
        tracing::warn!(
            event = "login_failed",
            method = "totp",
            identity = %identity.name,
            code = e.code(),
            reason = %e,
            "MFA code refused"
        );
        return Err(e);
    }
    ctl.metrics
        .auth
        .record("totp", crate::telemetry::AuthResult::Success);
    let mut tx = ctl.store.begin_write().await?;
    tx.set_api_session_mfa(api_session_id, true, true).await?;
    tx.commit().await?;
    ctl.notify_routers().await;
    tracing::info!(identity = %identity.name, api_session = %api_session_id, "MFA answered");
    Ok(())
}
