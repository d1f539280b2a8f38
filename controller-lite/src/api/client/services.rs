//! `GET /services` and `GET /services/{id}` (spec §6.2).

use axum::extract::{Path, State};
use axum::response::Response;

use crate::api::extract::ListQuery;
use crate::api::{AppState, envelope, render};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::model::Kind;
use crate::store::NameFilter;

/// `GET /services?limit&offset&filter`: services the caller may dial or bind,
/// ordered by name, with `meta.pagination.totalCount`.
pub async fn list(
    State(ctl): State<AppState>,
    caller: Caller,
    q: ListQuery,
) -> Result<Response, ApiError> {
    let perms = ctl
        .policy
        .get(&ctl.store)?
        .service_permissions(&caller.identity.id);
    let mut visible: Vec<_> = ctl
        .store
        .list_all(Kind::Services.collection())?
        .into_iter()
        .filter(|s| perms.contains_key(&s.id))
        .filter(|s| match &q.filter {
            None => true,
            Some(NameFilter::Exact(n)) => s.name == *n,
            Some(NameFilter::Contains(n)) => s.name.contains(n.as_str()),
        })
        .collect();
    visible.sort_by(|a, b| a.name.cmp(&b.name));
    let total = visible.len() as i64;
    let mut items = Vec::new();
    for s in visible
        .iter()
        .skip(q.offset as usize)
        .take(q.limit as usize)
    {
        let p: Vec<_> = perms
            .get(&s.id)
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default();
        items.push(render::client_service(
            &ctl,
            s,
            &p,
            &caller.session.config_types,
        )?);
    }
    Ok(envelope::list(items, q.limit, q.offset, total))
}

/// `GET /services/{id}`: 404 unless the caller has a permission on it.
pub async fn detail(
    State(ctl): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let perms = ctl
        .policy
        .get(&ctl.store)?
        .service_permissions(&caller.identity.id);
    let not_found = || ApiError::NotFound(format!("service {id:?} not found"));
    let p: Vec<_> = perms
        .get(&id)
        .ok_or_else(not_found)?
        .iter()
        .copied()
        .collect();
    let s = ctl
        .store
        .get_entity(Kind::Services.collection(), &id)?
        .ok_or_else(not_found)?;
    Ok(envelope::ok(render::client_service(
        &ctl,
        &s,
        &p,
        &caller.session.config_types,
    )?))
}
