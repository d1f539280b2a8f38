//! Generic create/list/get/update/delete over [`Kind`] collections.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::cascade;
use crate::api::endpoint::{ApiBuilder, Data, Endpoint, Shape};
use crate::api::extract::JsonBody;
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope, render};
use crate::auth::Admin;
use crate::clock;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::model::{Kind, normalize};

fn not_found(k: Kind, id: &str) -> ApiError {
    ApiError::NotFound(format!("{} {id:?} not found", k.type_names().0))
}

/// Adds list, create, get, update (PUT and PATCH) and delete of `k` to `api`.
pub fn routes(api: ApiBuilder, k: Kind) -> ApiBuilder {
    let (one, many) = k.type_names();
    let coll = format!("/{}", k.collection());
    let item = format!("/{}/{{id}}", k.collection());
    let tag = many;
    api.add(
        Endpoint::get(&coll, format!("list{many}"))
            .doc(tag, format!("Lists {}", k.collection()))
            .admin()
            .lists(Data::Entity(k, Shape::Detail)),
        move |State(ctl): State<AppState>, _: Admin, q: ListQuery| list(ctl, k, q),
    )
    .add(
        Endpoint::post(&coll, format!("create{one}"))
            .doc(tag, format!("Creates one of {}", k.collection()))
            .admin()
            .request(Data::Entity(k, Shape::Create))
            .returns(201, Data::Created),
        move |State(ctl): State<AppState>, _: Admin, JsonBody(body): JsonBody<Value>| {
            create(ctl, k, body)
        },
    )
    .add(
        Endpoint::get(&item, format!("detail{one}"))
            .doc(tag, format!("One of {}", k.collection()))
            .admin()
            .returns(200, Data::Entity(k, Shape::Detail)),
        move |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>| detail(ctl, k, id),
    )
    .add(
        Endpoint::put(&item, format!("update{one}"))
            .doc(
                tag,
                "Replaces the document (unset fields take their defaults)",
            )
            .admin()
            .request(Data::Entity(k, Shape::Update)),
        move |State(ctl): State<AppState>,
              _: Admin,
              Path(id): Path<String>,
              JsonBody(body): JsonBody<Value>| update(ctl, k, id, body, false),
    )
    .add(
        Endpoint::patch(&item, format!("patch{one}"))
            .doc(tag, "Changes the given fields")
            .admin()
            .request(Data::Entity(k, Shape::Patch)),
        move |State(ctl): State<AppState>,
              _: Admin,
              Path(id): Path<String>,
              JsonBody(body): JsonBody<Value>| update(ctl, k, id, body, true),
    )
    .add(
        Endpoint::delete(&item, format!("delete{one}"))
            .doc(tag, format!("Deletes one of {}", k.collection()))
            .admin(),
        move |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>| delete(ctl, k, id),
    )
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
pub async fn create(ctl: AppState, k: Kind, body: Value) -> Result<Response, ApiError> {
    let (row, enrollment) = ctl.create_entity(k, object(body)?).await?;
    tracing::info!(kind = k.collection(), id = %row.id, name = %row.name, "created");
    let mut data = json!({"id": row.id, "_links": {}});
    if let (Kind::EdgeRouters, Some(e)) = (k, &enrollment) {
        // The router's enrollment, as the management API's edge router detail names it.
        data["enrollmentJwt"] = json!(e.jwt);
        data["enrollmentToken"] = json!(e.jti);
        data["enrollmentExpiresAt"] = json!(clock::fmt_unix(e.expires_at));
    } else if let Some(e) = enrollment {
        // Keyed by method: `ott` or `updb`.
        data["enrollment"] = json!({e.method.clone(): {
            "id": e.id, "jwt": e.jwt, "token": e.jti, "expiresAt": clock::fmt_unix(e.expires_at)}});
    }
    Ok(envelope::created(data))
}

/// `GET /{collection}?limit&offset&filter&sort`.
pub async fn list(ctl: AppState, k: Kind, q: ListQuery) -> Result<Response, ApiError> {
    let fields = k.fields();
    let rows = ctl.store.list_all(k.collection()).await?;
    let docs = rows.into_iter().map(|r| (render::entity(&r), r)).collect();
    let page = q
        .apply(&fields, &["name"], docs)?
        .try_map_async(async |r| render::management_entity(&ctl, k, &r).await)
        .await?;
    Ok(envelope::page(page, &fields))
}

/// `GET /{collection}/{id}`.
pub async fn detail(ctl: AppState, k: Kind, id: String) -> Result<Response, ApiError> {
    let row = ctl
        .store
        .get_entity(k.collection(), &id)
        .await?
        .ok_or_else(|| not_found(k, &id))?;
    Ok(envelope::ok(
        render::management_entity(&ctl, k, &row).await?,
    ))
}

/// `PATCH` (`merge`: the given fields change) or `PUT` (the document is replaced)
/// `/{collection}/{id}`.
pub async fn update(
    ctl: AppState,
    k: Kind,
    id: String,
    body: Value,
    merge: bool,
) -> Result<Response, ApiError> {
    let id = id.as_str();
    let patch = object(body)?;
    if patch.contains_key("enrollment") {
        return Err(ApiError::CouldNotValidate(
            "enrollment cannot be changed by an update".into(),
        ));
    }
    // Read, check and write in one transaction: no other write lands in between.
    let mut tx = ctl.store.begin_write().await?;
    let mut row = tx
        .get_entity(k.collection(), id)
        .await?
        .ok_or_else(|| not_found(k, id))?;
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
    if k == Kind::Cas {
        // `certPem` stays; a PATCH's `externalIdClaim` merges into the stored one.
        crate::thirdparty_ca::prepare_update(&row.data, &patch.clone(), &mut doc, merge)?;
        for (key, v) in patch {
            if key != "certPem" && !(merge && key == "externalIdClaim") {
                doc.insert(key, v);
            }
        }
    } else {
        for (key, v) in patch {
            doc.insert(key, v);
        }
    }
    let n = normalize(k, doc)?;
    let mut data = n.data;
    if k == Kind::Cas {
        crate::thirdparty_ca::restore_server_fields(&row.data, &mut data);
    }
    if k == Kind::Identities {
        crate::model::settle_disable(&mut data, Some(&row.data), n.disable, clock::now_unix());
    }
    if k == Kind::PostureChecks {
        data["version"] = json!(render::posture_check_version(&row.data).saturating_add(1));
    }
    Controller::resolve_references(&mut tx, k, &mut data).await?;
    Controller::check_unique(&mut tx, k, Some(id), &data).await?;
    cascade::check_update(&mut tx, k, &row, &data).await?;
    if !n.name.is_empty() {
        row.name = n.name;
    }
    row.tags = n.tags;
    let old = std::mem::replace(&mut row.data, data);
    row.updated_at = clock::now_string();
    if !tx.update_entity(&row).await? {
        return Err(not_found(k, id));
    }
    cascade::after_update(&mut tx, k, id, &old, &row.data).await?;
    tx.commit().await?;
    if k == Kind::EdgeRouters && row.data.get("disabled") == Some(&json!(true)) {
        ctl.routers.kick(id);
    }
    if k == Kind::ExternalJwtSigners {
        ctl.jwks.forget(id);
    }
    ctl.notify_routers().await;
    Ok(envelope::empty())
}

/// `DELETE /{collection}/{id}`, with the checks and cascades of [`cascade`].
pub async fn delete(ctl: AppState, k: Kind, id: String) -> Result<Response, ApiError> {
    // Check, delete and cascade are one transaction.
    let mut tx = ctl.store.begin_write().await?;
    cascade::check_delete(&mut tx, k, &id).await?;
    if !tx.delete_entity(k.collection(), &id).await? {
        return Err(not_found(k, &id));
    }
    cascade::after_delete(&mut tx, k, &id).await?;
    tx.commit().await?;
    if k == Kind::EdgeRouters {
        ctl.routers.kick(&id);
    }
    if k == Kind::ExternalJwtSigners {
        ctl.jwks.forget(&id);
    }
    ctl.notify_routers().await;
    tracing::info!(kind = k.collection(), %id, "deleted");
    Ok(envelope::empty())
}
