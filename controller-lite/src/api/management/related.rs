//! Lists of the entities related to one entity: an identity's services and edge routers
//! (as its policies grant them), a service's configs and terminators.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Value, json};

use crate::api::endpoint::{ApiBuilder, Data, Endpoint, Shape};
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope, render};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::filter::{FieldType, Fields};
use crate::model::Kind;
use crate::store::EntityRow;

/// The entity `id` of kind `k`, or 404 `NOT_FOUND` naming it.
pub(super) async fn entity(ctl: &AppState, k: Kind, id: &str) -> Result<EntityRow, ApiError> {
    ctl.store
        .get_entity(k.collection(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{} {id:?} not found", k.type_names().0)))
}

/// Pages `rows` (management views of `k`) with `extra` fields added to each document.
async fn page(
    ctl: &AppState,
    k: Kind,
    q: &ListQuery,
    fields: &Fields,
    rows: Vec<(EntityRow, Option<Value>)>,
) -> Result<Response, ApiError> {
    let docs = rows
        .into_iter()
        .map(|(r, extra)| {
            let mut doc = render::entity(&r);
            if let (Value::Object(d), Some(Value::Object(x))) = (&mut doc, &extra) {
                d.extend(x.clone());
            }
            (doc, (r, extra))
        })
        .collect();
    let p = q
        .apply(fields, &["name"], docs)?
        .try_map_async(async |(r, extra)| {
            let mut v = render::management_entity(ctl, k, &r).await?;
            if let (Value::Object(d), Some(Value::Object(x))) = (&mut v, extra) {
                d.extend(x);
            }
            Ok::<_, ApiError>(v)
        })
        .await?;
    Ok(envelope::page(p, fields))
}

async fn identity_services(ctl: AppState, id: String, q: ListQuery) -> Result<Response, ApiError> {
    entity(&ctl, Kind::Identities, &id).await?;
    let perms = ctl.policy.get(&ctl.store).await?.service_permissions(&id);
    let rows = ctl
        .store
        .list_all(Kind::Services.collection())
        .await?
        .into_iter()
        .filter_map(|s| {
            let p: Vec<&str> = perms.get(&s.id)?.iter().map(|t| t.as_str()).collect();
            Some((s, Some(json!({"permissions": p}))))
        })
        .collect();
    let fields = Kind::Services.fields().with("permissions", FieldType::Set);
    page(&ctl, Kind::Services, &q, &fields, rows).await
}

async fn identity_edge_routers(
    ctl: AppState,
    id: String,
    q: ListQuery,
) -> Result<Response, ApiError> {
    entity(&ctl, Kind::Identities, &id).await?;
    let policy = ctl.policy.get(&ctl.store).await?;
    let rows = policy
        .edge_routers_for_identity(&id)
        .into_iter()
        .map(|r| (r.clone(), None))
        .collect();
    page(
        &ctl,
        Kind::EdgeRouters,
        &q,
        &Kind::EdgeRouters.fields(),
        rows,
    )
    .await
}

async fn service_configs(ctl: AppState, id: String, q: ListQuery) -> Result<Response, ApiError> {
    let service = entity(&ctl, Kind::Services, &id).await?;
    let ids: Vec<&str> = service.data["configs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let rows = ctl
        .store
        .list_all(Kind::Configs.collection())
        .await?
        .into_iter()
        .filter(|c| ids.contains(&c.id.as_str()))
        .map(|c| (c, None))
        .collect();
    page(&ctl, Kind::Configs, &q, &Kind::Configs.fields(), rows).await
}

async fn service_terminators(
    ctl: AppState,
    id: String,
    q: ListQuery,
) -> Result<Response, ApiError> {
    entity(&ctl, Kind::Services, &id).await?;
    let rows = ctl
        .store
        .list_all(Kind::Terminators.collection())
        .await?
        .into_iter()
        .filter(|t| t.data["service"] == json!(id))
        .map(|t| (t, None))
        .collect();
    page(
        &ctl,
        Kind::Terminators,
        &q,
        &Kind::Terminators.fields(),
        rows,
    )
    .await
}

/// Adds the routes of this module.
pub fn routes(api: ApiBuilder) -> ApiBuilder {
    api.add(
        Endpoint::get("/identities/{id}/services", "listIdentityServices")
            .doc(
                "Identities",
                "Services the identity may dial or bind, with `permissions`",
            )
            .admin()
            .lists(Data::Entity(Kind::Services, Shape::Detail)),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>, q: ListQuery| {
            identity_services(ctl, id, q)
        },
    )
    .add(
        Endpoint::get("/identities/{id}/edge-routers", "listIdentityEdgeRouters")
            .doc("Identities", "Edge routers the identity may connect to")
            .admin()
            .lists(Data::Entity(Kind::EdgeRouters, Shape::Detail)),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>, q: ListQuery| {
            identity_edge_routers(ctl, id, q)
        },
    )
    .add(
        Endpoint::get("/services/{id}/configs", "listServiceConfig")
            .doc("Services", "The service's configs")
            .admin()
            .lists(Data::Entity(Kind::Configs, Shape::Detail)),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>, q: ListQuery| {
            service_configs(ctl, id, q)
        },
    )
    .add(
        Endpoint::get("/services/{id}/terminators", "listServiceTerminators")
            .doc("Services", "The service's terminators")
            .admin()
            .lists(Data::Entity(Kind::Terminators, Shape::Detail)),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>, q: ListQuery| {
            service_terminators(ctl, id, q)
        },
    )
}
