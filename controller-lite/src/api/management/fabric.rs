//! The mesh, read-only: `/links` and `/circuits` (OpenZiti serves these on its fabric
//! API, `GET /fabric/v1/links` and `/fabric/v1/circuits`, which `ziti fabric list`
//! reads; Weft serves them on the management API with the same list envelope).

use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use crate::api::endpoint::{ApiBuilder, Data, Endpoint};
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::filter::{FieldType, Fields};

fn link_fields() -> Fields {
    Fields::default()
        .with("id", FieldType::String)
        .with("sourceRouterId", FieldType::String)
        .with("destRouterId", FieldType::String)
        .with("state", FieldType::String)
        .with("cost", FieldType::Number)
        .with("updatedAt", FieldType::DateTime)
}

fn circuit_fields() -> Fields {
    Fields::default()
        .with("id", FieldType::String)
        .with("serviceId", FieldType::String)
        .with("sessionId", FieldType::String)
        .with("terminatorId", FieldType::String)
        .with("createdAt", FieldType::DateTime)
}

fn paged(
    q: &ListQuery,
    fields: &Fields,
    sort: &[&str],
    items: Vec<Value>,
) -> Result<Response, ApiError> {
    let docs = items.into_iter().map(|v| (v.clone(), v)).collect();
    Ok(envelope::page(q.apply(fields, sort, docs)?, fields))
}

fn to_values<T: serde::Serialize>(items: Vec<T>) -> Result<Vec<Value>, ApiError> {
    items
        .into_iter()
        .map(|i| serde_json::to_value(i).map_err(|e| ApiError::Internal(e.to_string())))
        .collect()
}

/// Adds the routes of this module.
pub fn routes(api: ApiBuilder) -> ApiBuilder {
    api.add(
        Endpoint::get("/links", "listLinks")
            .doc(
                "Link",
                "Lists the links between routers, with state, latency and cost",
            )
            .admin()
            .lists(Data::Object("A link.")),
        |State(ctl): State<AppState>, _: Admin, q: ListQuery| async move {
            paged(&q, &link_fields(), &["id"], to_values(ctl.mesh.links())?)
        },
    )
    .add(
        Endpoint::get("/circuits", "listCircuits")
            .doc(
                "Circuit",
                "Lists the circuits routed across routers, with their paths",
            )
            .admin()
            .lists(Data::Object("A circuit.")),
        |State(ctl): State<AppState>, _: Admin, q: ListQuery| async move {
            paged(
                &q,
                &circuit_fields(),
                &["createdAt"],
                to_values(ctl.mesh.circuits())?,
            )
        },
    )
}
