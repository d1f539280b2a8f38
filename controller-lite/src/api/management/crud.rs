//! Generic create/list/get/update/delete over [`Kind`] collections.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::api::endpoint::{ApiBuilder, Data, Endpoint, Shape};
use crate::api::extract::JsonBody;
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope, render};
use crate::auth::Admin;
use crate::clock;
use crate::domain::entities;
use crate::error::ApiError;
use crate::model::Kind;

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
    let (row, enrollment) = entities::create(&ctl, k, object(body)?).await?;
    tracing::info!(kind = k.collection(), id = %row.id, name = %row.name, "created");
    let mut data = json!({"id": row.id, "_links": {}});
    if let (Kind::EdgeRouters, Some(e)) = (k, &enrollment) {
        // The router's enrollment, as the management API's edge router detail names it.
        data["enrollmentJwt"] = json!(e.jwt);
        data["enrollmentToken"] = json!(e.jti);
        data["enrollmentExpiresAt"] = json!(clock::fmt_unix(e.expires_at));
    } else if let Some(e) = enrollment {
        // Keyed by method: `ott` or `updb`.
        data["enrollment"] = json!({e.method.name(): {
            "id": e.id, "jwt": e.jwt, "token": e.jti, "expiresAt": clock::fmt_unix(e.expires_at)}});
    }
    Ok(envelope::created(data))
}

/// `GET /{collection}?limit&offset&filter&sort`.
pub async fn list(ctl: AppState, k: Kind, q: ListQuery) -> Result<Response, ApiError> {
    list_as(ctl, k, q, |detail| detail).await
}

/// `GET` of `k`'s collection, each entity's management detail passed through `shape`
/// (filtered and sorted on the stored document, as [`list`]).
pub async fn list_as(
    ctl: AppState,
    k: Kind,
    q: ListQuery,
    shape: fn(Value) -> Value,
) -> Result<Response, ApiError> {
    let fields = k.fields();
    let rows = ctl.store.list_all(k.collection()).await?;
    let docs = rows.into_iter().map(|r| (render::entity(&r), r)).collect();
    let page = q
        .apply(&fields, &["name"], docs)?
        .try_map_async(async |r| render::management_entity(&ctl, k, &r).await.map(shape))
        .await?;
    Ok(envelope::page(page, &fields))
}

/// `GET /{collection}/{id}`.
pub async fn detail(ctl: AppState, k: Kind, id: String) -> Result<Response, ApiError> {
    detail_as(ctl, k, id, k.type_names().0, |detail| detail).await
}

/// `GET` of one of `k`'s entities, its management detail passed through `shape`; a
/// missing one is "`noun` ... not found".
pub async fn detail_as(
    ctl: AppState,
    k: Kind,
    id: String,
    noun: &str,
    shape: fn(Value) -> Value,
) -> Result<Response, ApiError> {
    let row = ctl
        .store
        .get_entity(k.collection(), &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{noun} {id:?} not found")))?;
    Ok(envelope::ok(shape(
        render::management_entity(&ctl, k, &row).await?,
    )))
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
    entities::update(&ctl, k, &id, object(body)?, merge).await?;
    Ok(envelope::empty())
}

/// `DELETE /{collection}/{id}`, with the checks and cascades of [`crate::domain::cascade`].
pub async fn delete(ctl: AppState, k: Kind, id: String) -> Result<Response, ApiError> {
    entities::delete(&ctl, k, &id).await?;
    Ok(envelope::empty())
}
