//! JSON shapes of entities as the APIs return them.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::clock;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::filter::{FieldType, Fields};
use crate::model::{Kind, PolicyType};
use crate::store::{ApiSessionRow, EntityRow, SessionRow};

/// Base entity (`id`, `name`, `tags`, `createdAt`, `updatedAt`, `_links`)
/// merged with the kind-specific fields.
pub fn entity(row: &EntityRow) -> Value {
    let mut m = match &row.data {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    m.insert("id".into(), json!(row.id));
    m.insert("name".into(), json!(row.name));
    m.insert("tags".into(), row.tags.clone());
    m.insert("createdAt".into(), json!(row.created_at));
    m.insert("updatedAt".into(), json!(row.updated_at));
    m.insert("_links".into(), json!({}));
    Value::Object(m)
}

/// A pending one-time enrollment as an identity's detail shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OttEnrollment {
    /// Enrollment id.
    pub id: String,
    /// The enrollment JWT.
    pub jwt: String,
    /// Its `jti`.
    pub token: String,
    /// Expiry.
    pub expires_at: String,
}

/// `enrollment` of an identity detail: the pending enrollment by method.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct IdentityEnrollment {
    /// Pending one-time-token enrollment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ott: Option<OttEnrollment>,
}

/// A certificate authenticator as an identity's detail summarises it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CertAuthenticator {
    /// SHA-1 fingerprint of the certificate.
    pub fingerprint: String,
}

/// A password authenticator as an identity's detail summarises it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct UpdbAuthenticator {
    /// User name.
    pub username: String,
}

/// `authenticators` of an identity detail, by method.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct IdentityAuthenticators {
    /// Certificate authenticator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertAuthenticator>,
    /// Password authenticator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updb: Option<UpdbAuthenticator>,
}

/// Fields an identity detail adds to the stored document.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct IdentityExtras {
    /// Pending enrollments.
    pub enrollment: IdentityEnrollment,
    /// Credentials, by method.
    pub authenticators: IdentityAuthenticators,
}

/// Fields an edge router detail adds to the stored document.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeRouterState {
    /// A control channel is up.
    pub is_online: bool,
    /// The router enrolled (has a control-channel certificate).
    pub is_verified: bool,
    /// SHA-1 fingerprint of its control-channel certificate.
    pub fingerprint: Option<String>,
    /// `SYNC_DONE` when online, else `SYNC_NEW`.
    pub sync_status: String,
    /// The pending enrollment JWT (`erott`).
    pub enrollment_jwt: Option<String>,
    /// Its `jti`.
    pub enrollment_token: Option<String>,
    /// Its expiry.
    pub enrollment_expires_at: Option<String>,
}

/// Registers the schema of the fields [`management_entity`] adds for `kind`, if any.
pub fn detail_extras_schema(kind: Kind, g: &mut SchemaGenerator) -> Option<Schema> {
    match kind {
        Kind::Identities => Some(g.subschema_for::<IdentityExtras>()),
        Kind::EdgeRouters => Some(g.subschema_for::<EdgeRouterState>()),
        _ => None,
    }
}

fn merge(v: &mut Value, extras: impl Serialize) -> Result<(), ApiError> {
    let extras =
        serde_json::to_value(extras).map_err(|e| ApiError::Internal(format!("serialize: {e}")))?;
    if let (Value::Object(m), Value::Object(x)) = (v, extras) {
        m.extend(x);
    }
    Ok(())
}

/// Management view: identities gain `enrollment` (pending OTT with its JWT),
/// edge routers their state ([`EdgeRouterState`]).
pub fn management_entity(ctl: &Controller, kind: Kind, row: &EntityRow) -> Result<Value, ApiError> {
    let mut v = entity(row);
    match kind {
        Kind::Identities => {
            let ott = ctl
                .store
                .pending_enrollments(&row.id)?
                .into_iter()
                .find(|e| e.method == "ott")
                .map(|e| OttEnrollment {
                    id: e.id,
                    jwt: e.jwt,
                    token: e.jti,
                    expires_at: clock::fmt_unix(e.expires_at),
                });
            let mut authenticators = IdentityAuthenticators::default();
            for a in ctl.store.authenticators_of(&row.id)? {
                match (a.method.as_str(), a.fingerprint, a.username) {
                    ("cert", Some(fingerprint), _) => {
                        authenticators.cert = Some(CertAuthenticator { fingerprint });
                    }
                    ("updb", _, Some(username)) => {
                        authenticators.updb = Some(UpdbAuthenticator { username });
                    }
                    _ => {}
                }
            }
            merge(
                &mut v,
                IdentityExtras {
                    enrollment: IdentityEnrollment { ott },
                    authenticators,
                },
            )?;
        }
        Kind::EdgeRouters => {
            let online = ctl.routers.is_online(&row.id);
            let fingerprint = ctl.store.router_fingerprint(&row.id)?;
            let pending = ctl.store.pending_enrollments(&row.id)?.into_iter().next();
            merge(
                &mut v,
                EdgeRouterState {
                    is_online: online,
                    is_verified: fingerprint.is_some(),
                    fingerprint,
                    sync_status: if online { "SYNC_DONE" } else { "SYNC_NEW" }.into(),
                    enrollment_jwt: pending.as_ref().map(|e| e.jwt.clone()),
                    enrollment_token: pending.as_ref().map(|e| e.jti.clone()),
                    enrollment_expires_at: pending.as_ref().map(|e| clock::fmt_unix(e.expires_at)),
                },
            )?;
        }
        _ => {}
    }
    Ok(v)
}

/// Edge router as listed to clients (`currentIdentityEdgeRouterDetail`,
/// session `edgeRouters[]`): `supportedProtocols` and its deprecated copy `urls`.
pub fn client_router(ctl: &Controller, row: &EntityRow) -> Value {
    let d = &row.data;
    json!({
        "id": row.id,
        "name": row.name,
        "hostname": d.get("hostname").cloned().unwrap_or_else(|| json!("")),
        "supportedProtocols": d.get("supportedProtocols").cloned().unwrap_or_else(|| json!({})),
        "urls": d.get("supportedProtocols").cloned().unwrap_or_else(|| json!({})),
        "isOnline": ctl.routers.is_online(&row.id),
        "syncStatus": if ctl.routers.is_online(&row.id) { "SYNC_DONE" } else { "SYNC_NEW" },
        "cost": d.get("cost").cloned().unwrap_or_else(|| json!(0)),
        "noTraversal": d.get("noTraversal").cloned().unwrap_or(Value::Bool(false)),
        "appData": d.get("appData").cloned().unwrap_or_else(|| json!({})),
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
        "tags": row.tags,
        "_links": {},
    })
}

/// API session detail (spec §4.3 / §13 item 2).
pub fn api_session(ctl: &Controller, s: &ApiSessionRow, identity: &EntityRow) -> Value {
    let timeout = ctl.config.api_session_timeout_secs;
    let last = clock::fmt_unix(s.last_activity);
    json!({
        "id": s.id,
        "token": s.token,
        "identity": {"id": identity.id, "name": identity.name, "entity": "identities", "_links": {}},
        "identityId": identity.id,
        "ipAddress": s.ip_address,
        "configTypes": s.config_types,
        "authQueries": [],
        "isMfaRequired": false,
        "isMfaComplete": false,
        "authenticatorId": s.authenticator_id,
        "expiresAt": clock::fmt_unix(s.last_activity + timeout),
        "expirationSeconds": timeout,
        "lastActivityAt": last,
        "cachedLastActivityAt": last,
        "createdAt": s.created_at,
        "updatedAt": s.updated_at,
        "tags": {},
        "_links": {},
    })
}

/// Current identity detail (spec §4.7).
pub fn current_identity(identity: &EntityRow) -> Value {
    let mut v = entity(identity);
    let d = &identity.data;
    v["appData"] = d.get("appData").cloned().unwrap_or_else(|| json!({}));
    v["defaultHostingCost"] = d
        .get("defaultHostingCost")
        .cloned()
        .unwrap_or_else(|| json!(0));
    v["defaultHostingPrecedence"] = json!("default");
    v["serviceHostingCosts"] = json!({});
    v["serviceHostingPrecedences"] = json!({});
    v
}

/// Service as the client sees it: `permissions`, `config` filtered by the API
/// session's config types (`all` = every type), `postureQueries: []` (spec §6.2).
pub fn client_service(
    ctl: &Controller,
    row: &EntityRow,
    perms: &[PolicyType],
    config_types: &[String],
) -> Result<Value, ApiError> {
    let mut v = entity(row);
    v["permissions"] = json!(perms.iter().map(|p| p.as_str()).collect::<Vec<_>>());
    v["postureQueries"] = json!([]);
    let mut config = Map::new();
    let ids: Vec<String> = row.data["configs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for id in ids {
        let Some(cfg) = ctl.store.get_entity(Kind::Configs.collection(), &id)? else {
            continue;
        };
        let type_id = cfg.data["configTypeId"].as_str().unwrap_or_default();
        let Some(ct) = ctl
            .store
            .get_entity(Kind::ConfigTypes.collection(), type_id)?
        else {
            continue;
        };
        let wanted = config_types
            .iter()
            .any(|t| t == "all" || *t == ct.name || *t == ct.id);
        if wanted {
            config.insert(ct.name.clone(), cfg.data["data"].clone());
        }
    }
    v["config"] = Value::Object(config);
    Ok(v)
}

/// Fields a list of sessions can be filtered and sorted by.
pub fn session_fields() -> Fields {
    Fields::default()
        .with("id", FieldType::String)
        .with("type", FieldType::String)
        .with("serviceId", FieldType::String)
        .with("apiSessionId", FieldType::String)
        .with("identityId", FieldType::String)
        .with("createdAt", FieldType::DateTime)
        .with("updatedAt", FieldType::DateTime)
}

/// Session detail (spec §7).
pub fn session(s: &SessionRow, routers: &[Value]) -> Value {
    json!({
        "id": s.id,
        "token": s.token,
        "type": s.session_type,
        "serviceId": s.service_id,
        "apiSessionId": s.api_session_id,
        "identityId": s.identity_id,
        "edgeRouters": routers,
        "createdAt": s.created_at,
        "updatedAt": s.updated_at,
        "tags": {},
        "_links": {},
    })
}
