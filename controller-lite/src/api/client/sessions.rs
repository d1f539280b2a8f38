//! Network sessions (spec §7).

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::extract::JsonBody;
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope, render};
use crate::auth::Caller;
use crate::domain::sessions;
use crate::error::ApiError;
use crate::model::PolicyType;

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

/// `POST /sessions`: a Dial or Bind session ([`sessions::issue`]).
pub async fn create(
    State(ctl): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<SessionCreate>,
) -> Result<Response, ApiError> {
    let issued = sessions::issue(&ctl, &caller, &body.service_id, body.session_type).await?;
    let routers: Vec<Value> = issued
        .edge_routers
        .iter()
        .map(|r| render::client_router(&ctl, r))
        .collect::<Result<_, _>>()?;
    Ok(envelope::created(
        render::session(&ctl, &issued.session, &routers).await?,
    ))
}

/// `DELETE /sessions/{id}`: ends one of the caller's sessions; routers drop it at once.
pub async fn delete(
    State(ctl): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    sessions::end(&ctl, &caller.session.id, &id).await?;
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
