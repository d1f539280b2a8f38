//! Generic create/list/get/update/delete over [`Kind`] collections.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::api::extract::JsonBody;
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope, render};
use crate::auth::Admin;
use crate::clock;
use crate::error::ApiError;
use crate::model::{Kind, normalize};

fn kind(collection: &str) -> Result<Kind, ApiError> {
    Kind::from_collection(collection)
        .ok_or_else(|| ApiError::NotFound(format!("unknown collection {collection:?}")))
}

fn object(v: Value) -> Result<Map<String, Value>, ApiError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::CouldNotValidate(
            "the body must be a JSON object".into(),
        )),
    }
}

/// `POST /{collection}` → 201 `{data:{id,_links}}`; identities also return the
/// created enrollment (`enrollment.ott.jwt`).
pub async fn create(
    State(ctl): State<AppState>,
    _admin: Admin,
    Path(collection): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let k = kind(&collection)?;
    let (row, enrollment) = ctl.create_entity(k, object(body)?)?;
    tracing::info!(kind = k.collection(), id = %row.id, name = %row.name, "created");
    let mut data = json!({"id": row.id, "_links": {}});
    if let (Kind::EdgeRouters, Some(e)) = (k, &enrollment) {
        // The router's enrollment, as the management API's edge router detail names it.
        data["enrollmentJwt"] = json!(e.jwt);
        data["enrollmentToken"] = json!(e.jti);
        data["enrollmentExpiresAt"] = json!(clock::fmt_unix(e.expires_at));
    } else if let Some(e) = enrollment {
        data["enrollment"] =
            json!({"ott": {"id": e.id, "jwt": e.jwt, "expiresAt": clock::fmt_unix(e.expires_at)}});
    }
    Ok(envelope::created(data))
}

/// `GET /{collection}?limit&offset&filter&sort`.
pub async fn list(
    State(ctl): State<AppState>,
    _admin: Admin,
    Path(collection): Path<String>,
    q: ListQuery,
) -> Result<Response, ApiError> {
    let k = kind(&collection)?;
    let fields = k.fields();
    let rows = ctl.store.list_all(k.collection())?;
    let docs = rows.into_iter().map(|r| (render::entity(&r), r)).collect();
    let page = q
        .apply(&fields, &["name"], docs)?
        .try_map(|r| render::management_entity(&ctl, k, &r))?;
    Ok(envelope::page(page, &fields))
}

/// `GET /{collection}/{id}`.
pub async fn detail(
    State(ctl): State<AppState>,
    _admin: Admin,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let k = kind(&collection)?;
    let row = ctl
        .store
        .get_entity(k.collection(), &id)?
        .ok_or_else(|| ApiError::NotFound(format!("{collection} {id:?} not found")))?;
    Ok(envelope::ok(render::management_entity(&ctl, k, &row)?))
}

async fn update(
    ctl: &AppState,
    collection: &str,
    id: &str,
    body: Value,
    merge: bool,
) -> Result<Response, ApiError> {
    let k = kind(collection)?;
    let patch = object(body)?;
    if patch.contains_key("enrollment") {
        return Err(ApiError::CouldNotValidate(
            "enrollment cannot be changed by an update".into(),
        ));
    }
    let mut row = ctl
        .store
        .get_entity(k.collection(), id)?
        .ok_or_else(|| ApiError::NotFound(format!("{collection} {id:?} not found")))?;
    let mut doc = if merge {
        let mut m = match &row.data {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        m.insert("name".into(), json!(row.name));
        m.insert("tags".into(), row.tags.clone());
        m
    } else {
        Map::new()
    };
    for (key, v) in patch {
        doc.insert(key, v);
    }
    let n = normalize(k, doc)?;
    let mut data = n.data;
    ctl.resolve_references(k, &mut data)?;
    if k == Kind::Identities
        && ctl.store.meta_get("admin_identity_id")?.as_deref() == Some(id)
        && data.get("isAdmin") != Some(&json!(true))
    {
        return Err(ApiError::CouldNotValidate(
            "the default admin must stay an administrator".into(),
        ));
    }
    if !n.name.is_empty() {
        row.name = n.name;
    }
    row.tags = n.tags;
    row.data = data;
    row.updated_at = clock::now_string();
    if !ctl.store.update_entity(&row)? {
        return Err(ApiError::NotFound(format!("{collection} {id:?} not found")));
    }
    if k == Kind::EdgeRouters && row.data.get("disabled") == Some(&json!(true)) {
        ctl.routers.kick(id);
    }
    ctl.mark_changed()?;
    Ok(envelope::empty())
}

/// `PATCH /{collection}/{id}`: merges the given fields.
pub async fn patch(
    State(ctl): State<AppState>,
    _admin: Admin,
    Path((collection, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    update(&ctl, &collection, &id, body, true).await
}

/// `PUT /{collection}/{id}`: replaces the document.
pub async fn put(
    State(ctl): State<AppState>,
    _admin: Admin,
    Path((collection, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    update(&ctl, &collection, &id, body, false).await
}

/// `DELETE /{collection}/{id}`. Deleting an identity removes its credentials
/// and sessions; the default admin cannot be deleted.
pub async fn delete(
    State(ctl): State<AppState>,
    _admin: Admin,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let k = kind(&collection)?;
    if k == Kind::Identities
        && ctl.store.meta_get("admin_identity_id")?.as_deref() == Some(id.as_str())
    {
        return Err(ApiError::CouldNotValidate(
            "the default admin cannot be deleted".into(),
        ));
    }
    if !ctl.store.delete_entity(k.collection(), &id)? {
        return Err(ApiError::NotFound(format!("{collection} {id:?} not found")));
    }
    if k == Kind::Identities || k == Kind::EdgeRouters {
        // Enrollments and authenticators of routers are keyed by the router id too.
        ctl.store.delete_identity_credentials(&id)?;
    }
    if k == Kind::EdgeRouters {
        ctl.routers.kick(&id);
    }
    ctl.mark_changed()?;
    tracing::info!(kind = k.collection(), %id, "deleted");
    Ok(envelope::empty())
}
