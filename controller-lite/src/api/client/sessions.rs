//! Network sessions (spec §7).

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::posture::PostureView;
use crate::api::extract::JsonBody;
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope, render};
use crate::auth::Caller;
use crate::clock;
use crate::error::ApiError;
use crate::model::PolicyType;
use crate::store::SessionRow;

/// Body of `POST /sessions` (`sessionCreate`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionCreate {
    /// Service id.
    pub service_id: String,
    /// Dial (default) or Bind.
    #[serde(rename = "type", default = "default_type")]
    pub session_type: PolicyType,
    /// Tags (ignored).
    #[serde(default)]
    pub tags: Map<String, Value>,
}

fn default_type() -> PolicyType {
    PolicyType::Dial
}

/// `POST /sessions`: checks the Dial/Bind permission; edge routers = edge router
/// policy ∧ service edge router policy. Unknown or forbidden services give
/// `NOT_FOUND` (the SDK maps it to "service unavailable").
pub async fn create(
    State(ctl): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<SessionCreate>,
) -> Result<Response, ApiError> {
    let posture = PostureView::load(&ctl, &caller).await?;
    let view = posture.snapshot();
    let perms = view.service_permissions(&caller.identity.id);
    let allowed = perms
        .get(&body.service_id)
        .is_some_and(|p| p.contains(&body.session_type));
    if !allowed {
        return Err(ApiError::NotFound(format!(
            "service {:?} not found",
            body.service_id
        )));
    }
    posture
        .admit(&ctl, &caller, &body.service_id, body.session_type)
        .await?;
    let routers: Vec<Value> = view
        .edge_routers_for_session(&caller.identity.id, &body.service_id)
        .iter()
        .map(|r| render::client_router(&ctl, r))
        .collect();
    if routers.is_empty() {
        return Err(ApiError::NoEdgeRoutersAvailable);
    }
    let now = clock::now_string();
    let row = SessionRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        token: uuid::Uuid::new_v4().to_string(),
        api_session_id: caller.session.id.clone(),
        identity_id: caller.identity.id,
        service_id: body.service_id,
        session_type: body.session_type.as_str().into(),
        created_at: now.clone(),
        updated_at: now,
    };
    let max = ctl.config.auth.max_sessions_per_api_session;
    // The grant was checked before this transaction; a policy change that lands in
    // between is caught by the router sync below, which drops sessions no policy grants.
    let mut tx = ctl.store.begin_write().await?;
    if !tx.insert_session_capped(&row, max).await? {
        return Err(ApiError::SessionLimit(max));
    }
    tx.commit().await?;
    ctl.notify_routers().await;
    Ok(envelope::created(
        render::session(&ctl, &row, &routers).await?,
    ))
}

/// `DELETE /sessions/{id}`: ends one of the caller's sessions; routers drop it at once.
pub async fn delete(
    State(ctl): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut tx = ctl.store.begin_write().await?;
    if !tx.delete_session_of(&caller.session.id, &id).await? {
        return Err(ApiError::NotFound(format!("session {id:?} not found")));
    }
    tx.commit().await?;
    ctl.notify_routers().await;
    Ok(envelope::empty())
}

/// `GET /sessions`: sessions of the caller's API session.
pub async fn list(
    State(ctl): State<AppState>,
    caller: Caller,
    q: ListQuery,
) -> Result<Response, ApiError> {
    let (rows, _) = ctl
        .store
        .sessions_of(&caller.session.id, i64::MAX, 0)
        .await?;
    let fields = render::session_fields();
    let mut docs = Vec::with_capacity(rows.len());
    for s in &rows {
        let routers = render::session_routers(&ctl, &s.identity_id, &s.service_id).await?;
        let doc = render::session(&ctl, s, &routers).await?;
        docs.push((doc.clone(), doc));
    }
    let page = q.apply(&fields, &["createdAt"], docs)?;
    Ok(envelope::page(page, &fields))
}

/// `GET /sessions/{id}`.
pub async fn detail(
    State(ctl): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (rows, _) = ctl
        .store
        .sessions_of(&caller.session.id, i64::MAX, 0)
        .await?;
    let s = rows
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("session {id:?} not found")))?;
    let routers = render::session_routers(&ctl, &s.identity_id, &s.service_id).await?;
    Ok(envelope::ok(render::session(&ctl, s, &routers).await?))
}
