//! What deleting or changing an entity means for the entities that reference it, as in
//! OpenZiti:
//!
//! - a config type that configs use cannot be deleted (`configTypeStoreImpl.DeleteById`:
//!   "cannot delete config type …, as configs of that type exist");
//! - deleting a config removes it from the services that list it (a link collection)
//!   and from the identity service configs that name it;
//! - deleting an identity removes its enrollments, authenticators, API sessions, sessions
//!   its posture data, its service configs and the terminators it hosts; deleting a
//!   service its sessions, the identity service configs for it and its terminators;
//!   deleting an edge router its enrollment, certificate and terminators (foreign keys
//!   with cascading delete);
//! - the `default` authentication policy cannot be deleted, nor one that identities
//!   follow, nor an external JWT signer a policy names (foreign keys in OpenZiti:
//!   `CAN_NOT_DELETE_REFERENCED_ENTITY`);
//! - deleting a 3rd-party CA removes its `ottca` enrollments (its certificates'
//!   authenticators stay but no longer verify, as openziti/ziti's `ca_manager.go` does);
//! - a config's type cannot be changed, and the default admin stays an administrator;
//! - an identity an update disables, and a CA an update stops trusting, end their API
//!   sessions.
//!
//! Routers learn the removals from the next change-feed revision ([`crate::controller::Controller::notify_routers`]).

use serde_json::Value;

use crate::clock;
use crate::error::ApiError;
use crate::model::entity::parse_document;
use crate::model::{
    AuthPolicy, CaRecord, Config, DEFAULT_AUTH_POLICY_ID, Identity, Kind, Service, Terminator,
};
use crate::store::{EntityRow, ServiceConfigColumn, WriteTx};

async fn is_default_admin(tx: &mut WriteTx<'_>, id: &str) -> Result<bool, ApiError> {
    Ok(tx.meta_get("admin_identity_id").await?.as_deref() == Some(id))
}

/// Refuses deletes that would leave references dangling or lock administrators out.
/// Runs in the deleting transaction, so nothing can start referring meanwhile.
pub async fn check_delete(tx: &mut WriteTx<'_>, k: Kind, id: &str) -> Result<(), ApiError> {
    match k {
        Kind::Identities if is_default_admin(tx, id).await? => Err(
            ApiError::EntityCanNotBeDeleted("the default admin cannot be deleted".into()),
        ),
        Kind::ConfigTypes => {
            let users: Vec<String> = tx
                .entities::<Config>()
                .await?
                .into_iter()
                .filter(|c| c.doc.config_type_id == id)
                .map(|c| c.name)
                .collect();
            if users.is_empty() {
                Ok(())
            } else {
                Err(ApiError::EntityCanNotBeDeleted(format!(
                    "cannot delete config type {id:?}, as configs of that type exist: {}",
                    users.join(", ")
                )))
            }
        }
        Kind::AuthPolicies if id == DEFAULT_AUTH_POLICY_ID => Err(ApiError::EntityCanNotBeDeleted(
            "the default authentication policy cannot be deleted".into(),
        )),
        Kind::AuthPolicies => {
            let users: Vec<String> = tx
                .entities::<Identity>()
                .await?
                .into_iter()
                .filter(|i| i.doc.auth_policy_id.as_deref() == Some(id))
                .map(|i| i.name)
                .collect();
            if users.is_empty() {
                Ok(())
            } else {
                Err(ApiError::ReferencedEntity(format!(
                    "authentication policy {id:?} is used by identities: {}",
                    users.join(", ")
                )))
            }
        }
        Kind::ExternalJwtSigners => {
            let users: Vec<String> = tx
                .entities::<AuthPolicy>()
                .await?
                .into_iter()
                .filter(|p| {
                    p.doc.secondary.require_ext_jwt_signer.as_deref() == Some(id)
                        || p.doc
                            .primary
                            .ext_jwt
                            .allowed_signers
                            .iter()
                            .any(|s| s == id)
                })
                .map(|p| p.name)
                .collect();
            if users.is_empty() {
                Ok(())
            } else {
                Err(ApiError::ReferencedEntity(format!(
                    "external JWT signer {id:?} is used by authentication policies: {}",
                    users.join(", ")
                )))
            }
        }
        _ => Ok(()),
    }
}

/// Deletes the terminators `of` picks.
async fn delete_terminators(
    tx: &mut WriteTx<'_>,
    of: impl Fn(&Terminator) -> bool,
) -> Result<usize, ApiError> {
    let mut n = 0;
    for t in tx.entities::<Terminator>().await? {
        if of(&t.doc)
            && tx
                .delete_entity(Kind::Terminators.collection(), &t.id)
                .await?
        {
            n += 1;
        }
    }
    Ok(n)
}

/// Removes (in the deleting transaction) what belonged to the deleted entity `id` of
/// kind `k`.
pub async fn after_delete(tx: &mut WriteTx<'_>, k: Kind, id: &str) -> Result<(), ApiError> {
    match k {
        Kind::Identities => {
            tx.revoking("identity_deleted", id);
            tx.delete_identity_credentials(id).await?;
            tx.delete_posture_of(id).await?;
            tx.remove_service_configs_where(ServiceConfigColumn::Identity, id)
                .await?;
            delete_terminators(tx, |t| t.identity == id).await?;
        }
        Kind::EdgeRouters => {
            // Enrollments and authenticators of routers are keyed by the router id too.
            tx.delete_identity_credentials(id).await?;
            delete_terminators(tx, |t| t.router == id).await?;
        }
        Kind::Services => {
            tx.revoking("service_deleted", id);
            tx.delete_sessions_of_service(id).await?;
            tx.remove_service_configs_where(ServiceConfigColumn::Service, id)
                .await?;
            delete_terminators(tx, |t| t.service == id).await?;
        }
        Kind::Cas => {
            tx.delete_ca_enrollments(id).await?;
            // Routers stop trusting the CA for new handshakes; the API sessions its
            // certificates opened (and so their edge connections) end now.
            tx.revoking("ca_deleted", id);
            tx.end_api_sessions_of_ca(id).await?;
        }
        Kind::Configs => {
            tx.remove_service_configs_where(ServiceConfigColumn::Config, id)
                .await?;
            for mut s in tx.entities::<Service>().await? {
                let before = s.doc.configs.len();
                s.doc.configs.retain(|c| c != id);
                if s.doc.configs.len() != before {
                    s.updated_at = clock::now_string();
                    tx.update_typed(s).await?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// What an update (`old` document → `new`) of the entity `id` means for others, in the
/// updating transaction: an identity disabled by it keeps no API session (as
/// `/identities/{id}/disable` does); a CA that no longer authenticates ends the API
/// sessions its certificates opened (as deleting it does).
pub async fn after_update(
    tx: &mut WriteTx<'_>,
    k: Kind,
    id: &str,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    match k {
        Kind::Identities => {
            let now = clock::now_unix();
            let (old, new) = (
                parse_document::<Identity>(old)?,
                parse_document::<Identity>(new)?,
            );
            if new.is_disabled(now) && !old.is_disabled(now) {
                tx.revoking("identity_disabled", id);
                tx.delete_api_sessions_of(id).await?;
            }
        }
        Kind::Cas => {
            let (old, new) = (
                parse_document::<CaRecord>(old)?,
                parse_document::<CaRecord>(new)?,
            );
            if old.document.is_auth_enabled && !new.document.is_auth_enabled {
                tx.revoking("ca_auth_disabled", id);
                tx.end_api_sessions_of_ca(id).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Refuses updates OpenZiti refuses.
pub async fn check_update(
    tx: &mut WriteTx<'_>,
    k: Kind,
    old: &EntityRow,
    new_data: &Value,
) -> Result<(), ApiError> {
    match k {
        Kind::Configs
            if parse_document::<Config>(&old.data)?.config_type_id
                != parse_document::<Config>(new_data)?.config_type_id =>
        {
            Err(ApiError::CouldNotValidate(
                "configTypeId cannot be changed".into(),
            ))
        }
        Kind::Identities
            if is_default_admin(tx, &old.id).await?
                && !parse_document::<Identity>(new_data)?.is_admin =>
        {
            Err(ApiError::CouldNotValidate(
                "the default admin must stay an administrator".into(),
            ))
        }
        _ => Ok(()),
    }
}
