//! TOTP MFA: enrollment, verification and the answers to authentication queries
//! (openziti/ziti `controller/model/mfa_manager.go`; the endpoints are in
//! [`crate::api::client::mfa`]).
//!
//! Stricter than OpenZiti: a code is accepted once (the step is recorded atomically in
//! the store, so not even two controllers accept it twice), and after
//! [`MAX_FAILURES`] wrong codes in a row the identity's codes are refused unchecked for
//! [`BLOCK_SECS`] (OpenZiti counts no failures).

use std::sync::atomic::Ordering;

use crate::clock;
use crate::controller::Controller;
use crate::error::{ApiError, StoreError};
use crate::store::{EntityRow, MfaRow};

use super::totp;

/// Wrong codes in a row before codes are refused for a while.
pub const MAX_FAILURES: i64 = 5;
/// How long codes are refused after [`MAX_FAILURES`] wrong ones, in seconds.
pub const BLOCK_SECS: i64 = 30;

/// Starts a TOTP enrollment for `identity` (unverified until a code proves it):
/// 409 `MFA_EXISTS` when it has one.
pub async fn enroll(ctl: &Controller, identity: &EntityRow) -> Result<MfaRow, ApiError> {
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
pub fn provisioning_url(ctl: &Controller, identity: &EntityRow, mfa: &MfaRow) -> String {
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
pub async fn enrollment_of(ctl: &Controller, identity: &EntityRow) -> Result<MfaRow, ApiError> {
    ctl.store
        .mfa_of(&identity.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("the identity has no MFA enrollment".into()))
}
