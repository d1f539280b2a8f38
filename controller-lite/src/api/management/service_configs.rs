//! `/identities/{id}/service-configs`: an identity's own configs for services, which
//! replace the service's config of the same type in that identity's service list
//! (openziti/edge-api `source/management/identities.yml`; openziti/ziti
//! `controller/model/identity_manager.go`, `ApplyUpdateServiceConfigs`: one config per
//! identity, service and config type; assigning a config replaces the identity's config
//! of its type, removing one removes the identity's config of the named config's type).

use axum::extract::{Path, State};
use axum::response::Response;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::related::entity;
use super::views::{EntityRef, Names, to_json};
use crate::api::endpoint::{ApiBuilder, Data, Endpoint};
use crate::api::extract::{parse_json, read_body};
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::filter::{FieldType, Fields};
use crate::model::Kind;
use crate::store::{ServiceConfigColumn, ServiceConfigRow, WriteTx};

/// Pairs one request may name: a bound on the work one body asks for.
pub const MAX_PAIRS: usize = 1000;

/// One pair of a request body (`serviceConfigAssign`). Weft also takes names.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceConfigAssign {
    /// The service, by id or name.
    pub service_id: String,
    /// The config, by id or name.
    pub config_id: String,
}

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

/// The service and the config a pair names, and the config's type, in `tx`; 404 naming
/// whichever is missing.
async fn resolve(
    tx: &mut WriteTx<'_>,
    pair: &ServiceConfigAssign,
) -> Result<(String, String, String), ApiError> {
    let service = tx
        .get_entity_by_id_or_name(Kind::Services.collection(), &pair.service_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("service {:?} not found", pair.service_id)))?;
    let config = tx
        .get_entity_by_id_or_name(Kind::Configs.collection(), &pair.config_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("config {:?} not found", pair.config_id)))?;
    let type_id = config.data["configTypeId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((service.id, config.id, type_id))
}

/// Opens the transaction and checks the identity exists in it.
async fn begin<'s>(ctl: &'s AppState, id: &str) -> Result<WriteTx<'s>, ApiError> {
    let mut tx = ctl.store.begin_write().await?;
    if tx
        .get_entity(Kind::Identities.collection(), id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(format!("identity {id:?} not found")));
    }
    Ok(tx)
}

/// `POST /identities/{id}/service-configs [{serviceId, configId}]`: all or nothing.
async fn assign(
    State(ctl): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let pairs = pairs(req).await?;
    let mut tx = begin(&ctl, &id).await?;
    for pair in &pairs {
        let (service_id, config_id, config_type_id) = resolve(&mut tx, pair).await?;
        tx.put_service_config(&ServiceConfigRow {
            identity_id: id.clone(),
            service_id,
            config_type_id,
            config_id,
        })
        .await?;
    }
    tx.commit().await?;
    tracing::info!(identity = %id, count = pairs.len(), "identity service configs assigned");
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
    let mut tx = begin(&ctl, &id).await?;
    let removed = if pairs.is_empty() {
        tx.remove_service_configs_where(ServiceConfigColumn::Identity, &id)
            .await?
    } else {
        let mut n = 0;
        for pair in &pairs {
            let (service_id, _, config_type_id) = resolve(&mut tx, pair).await?;
            n += u64::from(
                tx.remove_service_config(&id, &service_id, &config_type_id)
                    .await?,
            );
        }
        n
    };
    tx.commit().await?;
    tracing::info!(identity = %id, removed, "identity service configs removed");
    Ok(envelope::empty())
}
