//! An identity's own configs for services (`/identities/{id}/service-configs`), which
//! replace the service's config of the same type in that identity's service list
//! (openziti/ziti `controller/model/identity_manager.go`, `ApplyUpdateServiceConfigs`:
//! one config per identity, service and config type; assigning a config replaces the
//! identity's config of its type, removing one removes the identity's config of the
//! named config's type). Each request is one transaction: all or nothing.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::controller::Controller;
use crate::error::ApiError;
use crate::model::{Config, Kind};
use crate::store::{ServiceConfigColumn, ServiceConfigRow, WriteTx};

/// One pair of a request body (`serviceConfigAssign`). Weft also takes names.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceConfigAssign {
    /// The service, by id or name.
    pub service_id: String,
    /// The config, by id or name.
    pub config_id: String,
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
    let type_id = config.doc::<Config>()?.config_type_id;
    Ok((service.id, config.id, type_id))
}

/// Opens the transaction and checks the identity exists in it.
async fn begin<'s>(ctl: &'s Controller, id: &str) -> Result<WriteTx<'s>, ApiError> {
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

/// Gives identity `id` the config of each pair for its service (replacing the one of
/// the same type it had).
pub async fn assign(
    ctl: &Controller,
    id: &str,
    pairs: &[ServiceConfigAssign],
) -> Result<(), ApiError> {
    let mut tx = begin(ctl, id).await?;
    for pair in pairs {
        let (service_id, config_id, config_type_id) = resolve(&mut tx, pair).await?;
        tx.put_service_config(&ServiceConfigRow {
            identity_id: id.to_owned(),
            service_id,
            config_type_id,
            config_id,
        })
        .await?;
    }
    tx.commit().await?;
    tracing::info!(identity = %id, count = pairs.len(), "identity service configs assigned");
    Ok(())
}

/// Removes identity `id`'s config of each pair's config type for its service; with no
/// pair, every one of its service configs.
pub async fn remove(
    ctl: &Controller,
    id: &str,
    pairs: &[ServiceConfigAssign],
) -> Result<(), ApiError> {
    let mut tx = begin(ctl, id).await?;
    let removed = if pairs.is_empty() {
        tx.remove_service_configs_where(ServiceConfigColumn::Identity, id)
            .await?
    } else {
        let mut n = 0;
        for pair in pairs {
            let (service_id, _, config_type_id) = resolve(&mut tx, pair).await?;
            n += u64::from(
                tx.remove_service_config(id, &service_id, &config_type_id)
                    .await?,
            );
        }
        n
    };
    tx.commit().await?;
    tracing::info!(identity = %id, removed, "identity service configs removed");
    Ok(())
}
