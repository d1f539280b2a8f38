//! `GET /services`, `GET /services/{id}` (spec §6.2), and where a service is reached:
//! `GET /services/{id}/terminators` and `GET /services/{id}/edge-routers`.

use axum::extract::{Path, State};
use axum::response::Response;

use serde_json::json;

use crate::api::list::ListQuery;
use crate::api::{AppState, envelope, render};
use crate::auth::Caller;
use crate::domain::posture::PostureView;
use crate::error::ApiError;
use crate::filter::{FieldType, Fields};
use crate::model::Kind;
use crate::model::PolicyType;

/// `GET /services?limit&offset&filter&sort`: services the caller may dial or bind,
/// ordered by name unless sorted otherwise, with `meta.pagination.totalCount`.
pub async fn list(
    State(ctl): State<AppState>,
    caller: Caller,
    q: ListQuery,
) -> Result<Response, ApiError> {
    let posture = PostureView::load(&ctl, &caller).await?;
    let perms = posture.snapshot().service_permissions(&caller.identity.id);
    let fields = service_fields();
    let own_configs = ctl.store.service_configs_of(&caller.identity.id).await?;
    let mut visible = Vec::new();
    for s in ctl.store.list_all(Kind::Services.collection()).await? {
        let Some(p) = perms.get(&s.id) else {
            continue;
        };
        let p: Vec<PolicyType> = p.iter().copied().collect();
        let mut doc = render::entity(&s);
        doc["permissions"] = json!(p.iter().map(|t| t.as_str()).collect::<Vec<_>>());
        visible.push((doc, (s, p)));
    }
    let page = q
        .apply(&fields, &["name"], visible)?
        .try_map_async(async |(s, p): (_, Vec<PolicyType>)| {
            let mut v =
                render::client_service(&ctl, &s, &p, &caller.session.config_types, &own_configs)
                    .await?;
            v["postureQueries"] = posture.queries(&caller.identity.id, &s.id, &p);
            Ok::<_, ApiError>(v)
        })
        .await?;
    Ok(envelope::page(page, &fields))
}

/// Fields a client may filter its services by: the service's and `permissions`.
fn service_fields() -> Fields {
    Kind::Services.fields().with("permissions", FieldType::Set)
}

/// `GET /services/{id}`: 404 unless the caller has a permission on it.
pub async fn detail(
    State(ctl): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let posture = PostureView::load(&ctl, &caller).await?;
    let perms = posture.snapshot().service_permissions(&caller.identity.id);
    let not_found = || ApiError::NotFound(format!("service {id:?} not found"));
    let p: Vec<_> = perms
        .get(&id)
        .ok_or_else(not_found)?
        .iter()
        .copied()
        .collect();
    let s = ctl
        .store
        .get_entity(Kind::Services.collection(), &id)
        .await?
        .ok_or_else(not_found)?;
    let own_configs = ctl.store.service_configs_of(&caller.identity.id).await?;
    let mut v =
        render::client_service(&ctl, &s, &p, &caller.session.config_types, &own_configs).await?;
    v["postureQueries"] = posture.queries(&caller.identity.id, &s.id, &p);
    Ok(envelope::ok(v))
}

/// `GET /services/{id}/terminators?limit&offset&filter&sort`: where a service the
/// caller may dial or bind is hosted (`terminatorClientDetail`: the router and the
/// terminator identity, never the router-internal address); 404 without a permission.
pub async fn terminators(
    State(ctl): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: ListQuery,
) -> Result<Response, ApiError> {
    let posture = PostureView::load(&ctl, &caller).await?;
    let perms = posture.snapshot().service_permissions(&caller.identity.id);
    if !perms.contains_key(&id) {
        return Err(ApiError::NotFound(format!("service {id:?} not found")));
    }
    let fields = Kind::Terminators.fields();
    let rows = crate::api::management::related::terminators_of(&ctl, &id)
        .await?
        .into_iter()
        .map(|t| (render::entity(&t), t))
        .collect();
    let page = q
        .apply(&fields, &["createdAt"], rows)?
        .try_map_async(async |t| render::client_terminator(&ctl, &t).await)
        .await?;
    Ok(envelope::page(page, &fields))
}

/// `GET /services/{id}/edge-routers`: the edge routers through which the caller may
/// use a service it may dial or bind (edge router policies ∧ service edge router
/// policies, as a session would list them), without creating a session; 404 without a
/// permission (`serviceEdgeRouters`).
pub async fn edge_routers(
    State(ctl): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let posture = PostureView::load(&ctl, &caller).await?;
    let view = posture.snapshot();
    if !view
        .service_permissions(&caller.identity.id)
        .contains_key(&id)
    {
        return Err(ApiError::NotFound(format!("service {id:?} not found")));
    }
    let routers: Vec<serde_json::Value> = view
        .edge_routers_for_session(&caller.identity.id, &id)
        .iter()
        .map(|r| render::client_router(&ctl, r))
        .collect::<Result<_, _>>()?;
    Ok(envelope::ok(json!({"edgeRouters": routers})))
}
