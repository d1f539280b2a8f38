//! Create, update and delete of the management collections ([`Kind`]), each one
//! transaction: the document validated ([`normalize`]), the entities it names resolved
//! and checked to exist ([`resolve_references`]), unique fields checked
//! ([`check_unique`]), what the change means for other entities done ([`cascade`]),
//! enrollments issued with new identities and routers. After the commit the routers
//! are told (the change feed), a deleted or disabled router's connections closed and a
//! changed signer's keys forgotten.

use serde_json::{Map, Value, json};

use super::cascade;
use crate::clock;
use crate::controller::Controller;
use crate::enroll;
use crate::error::{ApiError, StoreError};
use crate::model::entity::{parse_document, rewrite_document};
use crate::model::{
    AuthPolicy, CaRecord, Config, ConfigType, Document, EdgeRouter, Entity, ExternalJwtSigner,
    Identity, Kind, Service, StoredPostureCheck, Terminator, normalize,
};
use crate::store::{EnrollmentRow, EntityRow, WriteTx};

fn not_found(k: Kind, id: &str) -> ApiError {
    ApiError::NotFound(format!("{} {id:?} not found", k.type_names().0))
}

/// Validates and stores a new entity in its own transaction; for identities with
/// `enrollment.ott` (and every edge router) also creates the one-time enrollment.
pub async fn create(
    ctl: &Controller,
    kind: Kind,
    obj: Map<String, Value>,
) -> Result<(EntityRow, Option<EnrollmentRow>), ApiError> {
    let mut tx = ctl.store.begin_write().await?;
    let created = create_in(ctl, &mut tx, kind, obj).await?;
    tx.commit().await?;
    ctl.notify_routers().await;
    Ok(created)
}

/// [`create`] inside `tx`; nothing is stored unless `tx` commits.
pub async fn create_in(
    ctl: &Controller,
    tx: &mut WriteTx<'_>,
    kind: Kind,
    obj: Map<String, Value>,
) -> Result<(EntityRow, Option<EnrollmentRow>), ApiError> {
    let n = normalize(kind, obj)?;
    let mut data = n.data;
    if kind == Kind::Identities {
        rewrite_document(&mut data, |i: &mut Identity| {
            i.settle_disable(None, n.disable, clock::now_unix());
        })?;
    }
    resolve_references(tx, kind, &mut data).await?;
    if kind == Kind::Cas {
        crate::thirdparty_ca::prepare_create(tx, &mut data).await?;
    }
    check_unique(tx, kind, None, &data).await?;
    let now = clock::now_string();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let row = EntityRow {
        kind: kind.collection().into(),
        name: if n.name.is_empty() {
            id.clone()
        } else {
            n.name
        },
        id,
        tags: n.tags,
        data,
        created_at: now.clone(),
        updated_at: now,
    };
    tx.insert_entity(&row).await?;
    let enrollment = match n.enrollment {
        Some(e) if e.ott => Some(enroll::create_ott(ctl, tx, &row.id).await?),
        Some(crate::model::EnrollmentRequest {
            ottca: Some(ca), ..
        }) => {
            Some(crate::thirdparty_ca::enrollment::create_ottca(ctl, tx, &row.id, &ca, None).await?)
        }
        Some(crate::model::EnrollmentRequest {
            updb: Some(username),
            ..
        }) => Some(enroll::create_updb(ctl, tx, &row.id, &username, None).await?),
        // Every edge router gets an `erott` enrollment, as in OpenZiti.
        _ if kind == Kind::EdgeRouters => Some(enroll::create_erott(ctl, tx, &row.id).await?),
        _ => None,
    };
    Ok((row, enrollment))
}

/// Refuses (409 `DUPLICATE_NAME`) a document whose unique fields another entity of
/// its kind (other than `self_id`) already holds: an identity's `externalId`, a
/// signer's `issuer` and `kid`, a CA's `fingerprint` (as OpenZiti's `external_jwt_signer_store.go` and
/// `identity_store.go` indexes). Reads inside `tx`.
pub async fn check_unique(
    tx: &mut WriteTx<'_>,
    kind: Kind,
    self_id: Option<&str>,
    data: &Value,
) -> Result<(), ApiError> {
    match kind {
        Kind::Identities => unique_among::<Identity>(tx, self_id, data).await,
        Kind::ExternalJwtSigners => unique_among::<ExternalJwtSigner>(tx, self_id, data).await,
        Kind::Cas => unique_among::<CaRecord>(tx, self_id, data).await,
        _ => Ok(()),
    }
}

/// The fields of a document that no two entities of its kind may share.
trait UniqueFields: Document {
    /// (API field name, value) of each unique field set.
    fn unique_fields(&self) -> Vec<(&'static str, &str)>;
}

impl UniqueFields for Identity {
    fn unique_fields(&self) -> Vec<(&'static str, &str)> {
        self.external_id
            .iter()
            .map(|v| ("externalId", v.as_str()))
            .collect()
    }
}

impl UniqueFields for ExternalJwtSigner {
    fn unique_fields(&self) -> Vec<(&'static str, &str)> {
        let mut fields = vec![("issuer", self.issuer.as_str())];
        fields.extend(self.kid.iter().map(|k| ("kid", k.as_str())));
        fields
    }
}

impl UniqueFields for CaRecord {
    fn unique_fields(&self) -> Vec<(&'static str, &str)> {
        vec![("fingerprint", self.fingerprint.as_str())]
    }
}

/// [`check_unique`] for documents of type `D`.
async fn unique_among<D: UniqueFields>(
    tx: &mut WriteTx<'_>,
    self_id: Option<&str>,
    data: &Value,
) -> Result<(), ApiError> {
    let doc = parse_document::<D>(data)?;
    let wanted = doc.unique_fields();
    if wanted.is_empty() {
        return Ok(());
    }
    for other in tx.entities::<D>().await? {
        if Some(other.id.as_str()) == self_id {
            continue;
        }
        let taken = other.doc.unique_fields();
        if let Some((field, value)) = wanted.iter().find(|w| taken.contains(w)) {
            return Err(ApiError::Conflict(format!(
                "{field} {value:?} is already used by {} {:?}",
                D::KIND.type_names().0,
                other.name
            )));
        }
    }
    Ok(())
}

/// Checks and canonicalises references to other entities (config type of a
/// config, configs of a service, service/router of a terminator).
/// Reads them inside `tx`, so what they name cannot vanish before it commits.
pub async fn resolve_references(
    tx: &mut WriteTx<'_>,
    kind: Kind,
    data: &mut Value,
) -> Result<(), ApiError> {
    async fn resolve(tx: &mut WriteTx<'_>, k: Kind, key: &str) -> Result<String, ApiError> {
        tx.get_entity_by_id_or_name(k.collection(), key)
            .await?
            .map(|e| e.id)
            .ok_or_else(|| {
                ApiError::CouldNotValidate(format!("{} {key:?} does not exist", k.collection()))
            })
    }
    match kind {
        Kind::Configs => {
            let config = parse_document::<Config>(data)?;
            let key = &config.config_type_id;
            let config_type: Entity<ConfigType> = tx
                .get_entity_by_id_or_name(Kind::ConfigTypes.collection(), key)
                .await?
                .map(Entity::from_row)
                .transpose()?
                .ok_or_else(|| {
                    ApiError::CouldNotValidate(format!("config-types {key:?} does not exist"))
                })?;
            // OpenZiti validates config data against its type's JSON schema.
            let schema = &config_type.doc.schema;
            if !schema.is_empty() {
                crate::schema_check::check(
                    &Value::Object(schema.clone()),
                    &Value::Object(config.data.clone()),
                )
                .map_err(|e| {
                    ApiError::CouldNotValidate(format!(
                        "the config data does not match the schema of config type {:?}: {e}",
                        config_type.name
                    ))
                })?;
            }
            rewrite_document(data, |c: &mut Config| c.config_type_id = config_type.id)?;
        }
        Kind::Services => {
            let keys = parse_document::<Service>(data)?.configs;
            let mut ids: Vec<String> = Vec::new();
            let mut types: Vec<(String, String)> = Vec::new();
            for key in &keys {
                let config: Entity<Config> = tx
                    .get_entity_by_id_or_name(Kind::Configs.collection(), key)
                    .await?
                    .map(Entity::from_row)
                    .transpose()?
                    .ok_or_else(|| {
                        ApiError::CouldNotValidate(format!("configs {key:?} does not exist"))
                    })?;
                if ids.contains(&config.id) {
                    continue;
                }
                let ty = config.doc.config_type_id;
                if let Some((other, _)) = types.iter().find(|(_, t)| *t == ty) {
                    return Err(ApiError::CouldNotValidate(format!(
                        "configs {other:?} and {:?} have the same config type; a service takes one config per type",
                        config.name
                    )));
                }
                types.push((config.name, ty));
                ids.push(config.id);
            }
            rewrite_document(data, |s: &mut Service| s.configs = ids)?;
        }
        Kind::Identities => {
            // Identities name their policy by id or name; stored by id.
            if let Some(key) = parse_document::<Identity>(data)?.auth_policy_id {
                let id = resolve(tx, Kind::AuthPolicies, &key).await?;
                rewrite_document(data, |i: &mut Identity| i.auth_policy_id = Some(id))?;
            }
        }
        Kind::AuthPolicies => {
            // Signers named by id or name; stored by id. An unknown one is 404, as
            // OpenZiti answers (openziti/ziti `controller/model/auth_policy_manager.go`).
            async fn signer(tx: &mut WriteTx<'_>, key: &str) -> Result<String, ApiError> {
                tx.get_entity_by_id_or_name(Kind::ExternalJwtSigners.collection(), key)
                    .await?
                    .map(|e| e.id)
                    .ok_or_else(|| {
                        ApiError::NotFound(format!("external JWT signer {key:?} not found"))
                    })
            }
            let mut policy = parse_document::<AuthPolicy>(data)?;
            let signers = &mut policy.primary.ext_jwt.allowed_signers;
            for key in signers.iter_mut() {
                *key = signer(tx, key).await?;
            }
            if let Some(key) = &mut policy.secondary.require_ext_jwt_signer {
                *key = signer(tx, key).await?;
            }
            *data = serde_json::to_value(&policy).map_err(StoreError::from)?;
        }
        Kind::Terminators => {
            let mut t = parse_document::<Terminator>(data)?;
            t.service = resolve(tx, Kind::Services, &t.service).await?;
            t.router = resolve(tx, Kind::EdgeRouters, &t.router).await?;
            *data = serde_json::to_value(&t).map_err(StoreError::from)?;
        }
        _ => {}
    }
    Ok(())
}

/// Changes entity `id` of kind `k`: `merge` (PATCH) changes the fields of `patch`,
/// else (PUT) `patch` replaces the document (unset fields take their defaults). The
/// document is validated, its references resolved and checked, and what the change
/// means for other entities ([`cascade`]) done, in one transaction.
pub async fn update(
    ctl: &Controller,
    k: Kind,
    id: &str,
    patch: Map<String, Value>,
    merge: bool,
) -> Result<(), ApiError> {
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
        crate::thirdparty_ca::restore_server_fields(&row, &mut data)?;
    }
    if k == Kind::Identities {
        let prev: Identity = row.doc()?;
        rewrite_document(&mut data, |i: &mut Identity| {
            i.settle_disable(Some(&prev), n.disable, clock::now_unix());
        })?;
    }
    if k == Kind::PostureChecks {
        let version = parse_document::<StoredPostureCheck>(&row.data)?.version;
        data["version"] = json!(version.saturating_add(1));
    }
    resolve_references(&mut tx, k, &mut data).await?;
    check_unique(&mut tx, k, Some(id), &data).await?;
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
    if k == Kind::EdgeRouters && parse_document::<EdgeRouter>(&row.data)?.disabled {
        ctl.routers.kick(id);
    }
    if k == Kind::ExternalJwtSigners {
        ctl.jwks.forget(id);
    }
    ctl.notify_routers().await;
    Ok(())
}

/// Deletes entity `id` of kind `k`: what refuses it, the delete and what it removes
/// with it ([`cascade`]) are one transaction.
pub async fn delete(ctl: &Controller, k: Kind, id: &str) -> Result<(), ApiError> {
    // Check, delete and cascade are one transaction.
    let mut tx = ctl.store.begin_write().await?;
    cascade::check_delete(&mut tx, k, id).await?;
    if !tx.delete_entity(k.collection(), id).await? {
        return Err(not_found(k, id));
    }
    cascade::after_delete(&mut tx, k, id).await?;
    tx.commit().await?;
    if k == Kind::EdgeRouters {
        ctl.routers.kick(id);
    }
    if k == Kind::ExternalJwtSigners {
        ctl.jwks.forget(id);
    }
    ctl.notify_routers().await;
    tracing::info!(kind = k.collection(), %id, "deleted");
    Ok(())
}
