//! Identity operations beyond create, update and delete (openziti/edge-api
//! `source/management/identities.yml`): disable for a while or until enabled, enable,
//! and an administrator's removal of an identity's TOTP enrollment. Each is one
//! transaction; the routers are told after it commits.

use crate::auth::set_disabled_in;
use crate::clock;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::model::Kind;

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Identity {id:?} not found"))
}

/// Disables identity `id` for `minutes` (0: until enabled); its API sessions end. The
/// default admin cannot be disabled (it is the way back in).
pub async fn disable(ctl: &Controller, id: &str, minutes: i64) -> Result<(), ApiError> {
    if minutes < 0 {
        return Err(ApiError::CouldNotValidate(
            "durationMinutes must be 0 (until enabled) or more".into(),
        ));
    }
    let until = (minutes > 0).then(|| clock::now_unix().saturating_add(minutes.saturating_mul(60)));
    let mut tx = ctl.store.begin_write().await?;
    if tx.meta_get("admin_identity_id").await?.as_deref() == Some(id) {
        return Err(ApiError::CouldNotValidate(
            "the default admin cannot be disabled".into(),
        ));
    }
    if !set_disabled_in(&mut tx, id, Some(until)).await? {
        return Err(not_found(id));
    }
    tx.commit().await?;
    ctl.notify_routers().await;
    tracing::info!(identity = %id, minutes, "identity disabled");
    Ok(())
}

/// Enables identity `id` (its failed-password count starts again).
pub async fn enable(ctl: &Controller, id: &str) -> Result<(), ApiError> {
    let mut tx = ctl.store.begin_write().await?;
    if !set_disabled_in(&mut tx, id, None).await? {
        return Err(not_found(id));
    }
    tx.commit().await?;
    ctl.notify_routers().await;
    tracing::info!(identity = %id, "identity enabled");
    Ok(())
}

/// Removes identity `id`'s TOTP enrollment, verified or not.
pub async fn remove_mfa(ctl: &Controller, id: &str) -> Result<(), ApiError> {
    let mut tx = ctl.store.begin_write().await?;
    if tx
        .get_entity(Kind::Identities.collection(), id)
        .await?
        .is_none()
    {
        return Err(not_found(id));
    }
    tx.delete_mfa_of(id).await?;
    tx.commit().await?;
    ctl.notify_routers().await;
    tracing::info!(identity = %id, "MFA enrollment removed by an administrator");
    Ok(())
}
