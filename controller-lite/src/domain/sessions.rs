//! Service sessions (OpenZiti's network sessions): issuing one to an authenticated
//! caller and ending one.

use crate::auth::Caller;
use crate::clock;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::model::PolicyType;
use crate::store::{EntityRow, SessionRow};

use super::posture::PostureView;

/// A session issued: what was stored, and the edge routers the caller may use it on.
#[derive(Debug)]
pub struct Issued {
    /// The session.
    pub session: SessionRow,
    /// Its edge routers (edge router policy ∧ service edge router policy).
    pub edge_routers: Vec<EntityRow>,
}

/// Issues a session of `kind` on `service_id` to `caller`: the caller must hold that
/// permission (else `NOT_FOUND`, which the SDK reads as "service unavailable"), pass
/// the posture of a granting policy (`INVALID_POSTURE`), have an edge router for it
/// (`NO_EDGE_ROUTERS_AVAILABLE`) and stay under the cap of sessions per API session.
/// The routers are told at once.
pub async fn issue(
    ctl: &Controller,
    caller: &Caller,
    service_id: &str,
    kind: PolicyType,
) -> Result<Issued, ApiError> {
    let posture = PostureView::load(ctl, caller).await?;
    let view = posture.snapshot();
    let allowed = view
        .service_permissions(&caller.identity.id)
        .get(service_id)
        .is_some_and(|p| p.contains(&kind));
    if !allowed {
        return Err(ApiError::NotFound(format!(
            "service {service_id:?} not found"
        )));
    }
    posture.admit(ctl, caller, service_id, kind).await?;
    let edge_routers: Vec<EntityRow> = view
        .edge_routers_for_session(&caller.identity.id, service_id)
        .into_iter()
        .cloned()
        .collect();
    if edge_routers.is_empty() {
        return Err(ApiError::NoEdgeRoutersAvailable);
    }
    let now = clock::now_string();
    let session = SessionRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        token: uuid::Uuid::new_v4().to_string(),
        api_session_id: caller.session.id.clone(),
        identity_id: caller.identity.id.clone(),
        service_id: service_id.to_owned(),
        session_type: kind,
        created_at: now.clone(),
        updated_at: now,
    };
    let max = ctl.config.auth.max_sessions_per_api_session;
    // The grant was checked before this transaction; a policy change that lands in
    // between is caught by the router sync below, which drops sessions no policy grants.
    let mut tx = ctl.store.begin_write().await?;
    if !tx.insert_session_capped(&session, max).await? {
        return Err(ApiError::SessionLimit(max));
    }
    tx.commit().await?;
    ctl.notify_routers().await;
    Ok(Issued {
        session,
        edge_routers,
    })
}

/// Ends session `id` of API session `api_session_id`; routers drop it at once.
pub async fn end(ctl: &Controller, api_session_id: &str, id: &str) -> Result<(), ApiError> {
    let mut tx = ctl.store.begin_write().await?;
    if !tx.delete_session_of(api_session_id, id).await? {
        return Err(ApiError::NotFound(format!("session {id:?} not found")));
    }
    tx.commit().await?;
    ctl.notify_routers().await;
    Ok(())
}

/// An administrator ends API session `id` and its sessions (`api_session_deleted`).
pub async fn end_api_session_by_admin(ctl: &Controller, id: &str) -> Result<(), ApiError> {
    let mut tx = ctl.store.begin_write().await?;
    tx.revoking("api_session_deleted", id);
    if !tx.delete_api_session(id).await? {
        return Err(ApiError::NotFound(format!("API session {id:?} not found")));
    }
    tx.commit().await?;
    ctl.notify_routers().await;
    Ok(())
}

/// An administrator ends session `id`, whoever holds it (`session_deleted`).
pub async fn end_by_admin(ctl: &Controller, id: &str) -> Result<(), ApiError> {
    let mut tx = ctl.store.begin_write().await?;
    tx.revoking("session_deleted", id);
    if tx
        .delete_sessions(std::slice::from_ref(&id.to_owned()))
        .await?
        == 0
    {
        return Err(ApiError::NotFound(format!("session {id:?} not found")));
    }
    tx.commit().await?;
    ctl.notify_routers().await;
    Ok(())
}

/// The caller ends its own API session `api_session_id` (logout) and with it its
/// sessions; routers drop them at once. Not a security event (no cause is logged).
pub async fn log_out(ctl: &Controller, api_session_id: &str) -> Result<(), ApiError> {
    let mut tx = ctl.store.begin_write().await?;
    tx.delete_api_session(api_session_id).await?;
    tx.commit().await?;
    ctl.notify_routers().await;
    Ok(())
}
