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

use serde_json::{Value, json};

use crate::clock;
use crate::error::ApiError;
use crate::model::{DEFAULT_AUTH_POLICY_ID, Kind, identity_disabled};
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
                .list_all(Kind::Configs.collection())
                .await?
                .into_iter()
                .filter(|c| c.data["configTypeId"] == json!(id))
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
                .list_all(Kind::Identities.collection())
                .await?
                .into_iter()
                .filter(|i| i.data["authPolicyId"] == json!(id))
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
                .list_all(Kind::AuthPolicies.collection())
                .await?
                .into_iter()
                .filter(|p| {
                    p.data["secondary"]["requireExtJwtSigner"] == json!(id)
                        || p.data["primary"]["extJwt"]["allowedSigners"]
                            .as_array()
                            .is_some_and(|a| a.contains(&json!(id)))
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

/// Deletes the terminators whose `field` is `id`.
async fn delete_terminators(
    tx: &mut WriteTx<'_>,
    field: &str,
    id: &str,
) -> Result<usize, ApiError> {
    let mut n = 0;
    for t in tx.list_all(Kind::Terminators.collection()).await? {
        if t.data.get(field) == Some(&json!(id))
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
            delete_terminators(tx, "identity", id).await?;
        }
        Kind::EdgeRouters => {
            // Enrollments and authenticators of routers are keyed by the router id too.
            tx.delete_identity_credentials(id).await?;
            delete_terminators(tx, "router", id).await?;
        }
        Kind::Services => {
            tx.revoking("service_deleted", id);
            tx.delete_sessions_of_service(id).await?;
            tx.remove_service_configs_where(ServiceConfigColumn::Service, id)
                .await?;
            delete_terminators(tx, "service", id).await?;
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
            for mut s in tx.list_all(Kind::Services.collection()).await? {
                let Some(configs) = s.data.get_mut("configs").and_then(Value::as_array_mut) else {
                    continue;
                };
                let before = configs.len();
                configs.retain(|c| c != &json!(id));
                if configs.len() != before {
                    s.updated_at = clock::now_string();
                    tx.update_entity(&s).await?;
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
            if identity_disabled(new, now) && !identity_disabled(old, now) {
                tx.revoking("identity_disabled", id);
                tx.delete_api_sessions_of(id).await?;
            }
        }
        Kind::Cas if old["isAuthEnabled"] == json!(true) && new["isAuthEnabled"] != json!(true) => {
            tx.revoking("ca_auth_disabled", id);
            tx.end_api_sessions_of_ca(id).await?;
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
        Kind::Configs if old.data["configTypeId"] != new_data["configTypeId"] => Err(
            ApiError::CouldNotValidate("configTypeId cannot be changed".into()),
        ),
        Kind::Identities
            if is_default_admin(tx, &old.id).await?
                && new_data.get("isAdmin") != Some(&json!(true)) =>
        {
            Err(ApiError::CouldNotValidate(
                "the default admin must stay an administrator".into(),
            ))
        }
        _ => Ok(()),
    }
}
