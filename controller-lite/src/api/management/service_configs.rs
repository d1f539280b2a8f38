//! `/identities/{id}/service-configs`: an identity's own configs for services, which
//! replace the service's config of the same type in that identity's service list
//! (openziti/edge-api `source/management/identities.yml`; openziti/ziti
//! `controller/model/identity_manager.go`, `ApplyUpdateServiceConfigs`: one config per
//! identity, service and config type; assigning a config replaces the identity's config
//! of its type, removing one removes the identity's config of the named config's type).

use axum::extract::{Path, State};
use axum::response::Response;
use schemars::JsonSchema;
use serde::Serialize;

use super::related::entity;
use super::views::{EntityRef, Names, to_json};
use crate::api::endpoint::{ApiBuilder, Data, Endpoint};
use crate::api::extract::{parse_json, read_body};
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope};
use crate::auth::Admin;
use crate::domain::service_configs::{self, ServiceConfigAssign};
use crate::error::ApiError;
use crate::filter::{FieldType, Fields};
use crate::model::Kind;

/// Pairs one request may name: a bound on the work one body asks for.
pub const MAX_PAIRS: usize = 1000;

/// One entry of the list (`serviceConfigDetail`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConfigDetail {
    /// The service's id.
    pub service_id: String,
    /// The service.
    pub service: EntityRef,
    /// The config's id.
    pub config_id: String,
    /// The config.
    pub config: EntityRef,
}

fn fields() -> Fields {
    Fields::default()
        .with("serviceId", FieldType::String)
        .with("configId", FieldType::String)
}

/// Adds the routes of this module.
pub fn routes(api: ApiBuilder) -> ApiBuilder {
    api.add(
        Endpoint::get("/identities/{id}/service-configs", "listIdentitysServiceConfigs")
            .doc(
                "Identities",
                "The identity's own configs for services, which replace the service's config of the same type in its service list",
            )
            .admin()
            .lists(Data::Schema(|g| g.subschema_for::<ServiceConfigDetail>())),
        list,
    )
    .add(
        Endpoint::post("/identities/{id}/service-configs", "associateIdentitysServiceConfigs")
            .doc(
                "Identities",
                "Gives the identity these configs for these services, each replacing the identity's config of its type for the service",
            )
            .admin()
            .request(Data::Schema(|g| g.subschema_for::<Vec<ServiceConfigAssign>>())),
        assign,
    )
    .add(
        Endpoint::delete(
            "/identities/{id}/service-configs",
            "disassociateIdentitysServiceConfigs",
        )
        .doc(
            "Identities",
            "Removes the identity's configs of the named configs' types for the named services; without a body (or with `[]`), all of them",
        )
        .admin()
        .request(Data::Schema(|g| g.subschema_for::<Vec<ServiceConfigAssign>>())),
        remove,
    )
}

/// `GET /identities/{id}/service-configs`, ordered by service name then config name.
async fn list(
    State(ctl): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    q: ListQuery,
) -> Result<Response, ApiError> {
    entity(&ctl, Kind::Identities, &id).await?;
    // Two queries for the names, not two per row.
    let services = Names::load(&ctl.store, Kind::Services).await?;
    let configs = Names::load(&ctl.store, Kind::Configs).await?;
    let mut details: Vec<ServiceConfigDetail> = ctl
        .store
        .service_configs_of(&id)
        .await?
        .into_iter()
        .map(|row| ServiceConfigDetail {
            service: services.reference(&row.service_id),
            config: configs.reference(&row.config_id),
            service_id: row.service_id,
            config_id: row.config_id,
        })
        .collect();
    details
        .sort_by(|a, b| (&a.service.name, &a.config.name).cmp(&(&b.service.name, &b.config.name)));
    let docs = details
        .iter()
        .map(|d| to_json(d).map(|v| (v.clone(), v)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    // Already in order; the default sort keeps it (the sort is stable).
    let page = q.apply(&fields(), &[], docs)?;
    Ok(envelope::page(page, &fields()))
}

/// The pairs of a body: `[]` when there is none.
async fn pairs(req: axum::extract::Request) -> Result<Vec<ServiceConfigAssign>, ApiError> {
    let body = read_body(req).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let pairs: Vec<ServiceConfigAssign> = parse_json(&body)?;
    if pairs.len() > MAX_PAIRS {
        return Err(ApiError::CouldNotValidate(format!(
            "at most {MAX_PAIRS} service configs per request"
        )));
    }
    Ok(pairs)
}

/// `POST /identities/{id}/service-configs [{serviceId, configId}]`: all or nothing.
async fn assign(
    State(ctl): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let pairs = pairs(req).await?;
    service_configs::assign(&ctl, &id, &pairs).await?;
    Ok(envelope::empty())
}

/// `DELETE /identities/{id}/service-configs [{serviceId, configId}]`: all or nothing;
/// no body or `[]` removes every one of the identity's service configs.
async fn remove(
    State(ctl): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let pairs = pairs(req).await?;
    service_configs::remove(&ctl, &id, &pairs).await?;
    Ok(envelope::empty())
}
