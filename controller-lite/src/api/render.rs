//! JSON shapes of entities as the APIs return them.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::management::views::EntityRef;
use crate::clock;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::filter::{FieldType, Fields};
use crate::model::{
    Config, EdgeRouter, EdgeRouterPolicy, Entity, ExternalJwtSigner, Identity, Kind, PolicyType,
    Service, ServiceEdgeRouterPolicy, ServicePolicy, StoredPostureCheck, Terminator,
};
use crate::store::{
    ApiSessionRow, Credential, EnrollmentMethod, EnrollmentRow, EntityRow, ServiceConfigRow,
    SessionRow,
};

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
    /// Pending password enrollment (same fields).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updb: Option<OttEnrollment>,
    /// Pending enrollment with a 3rd-party CA's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ottca: Option<OttCaEnrollment>,
}

/// A pending `ottca` enrollment as an identity's detail shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OttCaEnrollment {
    /// The enrollment's fields.
    #[serde(flatten)]
    pub enrollment: OttEnrollment,
    /// The CA's id.
    pub ca_id: String,
    /// The CA.
    pub ca: EntityRef,
}

/// A certificate authenticator as an identity's detail summarises it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CertAuthenticator {
    /// Authenticator id.
    pub id: String,
    /// SHA-1 fingerprint of the certificate.
    pub fingerprint: String,
}

/// A password authenticator as an identity's detail summarises it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct UpdbAuthenticator {
    /// Authenticator id.
    pub id: String,
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

/// Fields an identity detail adds to the stored document (`identityDetail`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityExtras {
    /// Pending enrollments.
    pub enrollment: IdentityEnrollment,
    /// Credentials, by method.
    pub authenticators: IdentityAuthenticators,
    /// The identity type (`identity-types`: `Default`, `User`, `Device`, `Service`,
    /// `Router`; id and name alike, as in OpenZiti).
    #[serde(rename = "type")]
    pub identity_type: EntityRef,
    /// The identity type's id.
    pub type_id: String,
    /// `default`: Weft has no auth policies and applies OpenZiti's default one to every
    /// identity (certificate and password, no MFA).
    pub auth_policy_id: String,
    /// Reference to the auth policy.
    pub auth_policy: EntityRef,
    /// Id at an external identity provider (external JWT signers with
    /// `useExternalId` find the identity by it).
    pub external_id: Option<String>,
    /// The administrator the controller created at its first start.
    pub is_default_admin: bool,
    /// Always false: there is no MFA yet.
    pub is_mfa_enabled: bool,
    /// Whether an API session of the identity exists.
    pub has_api_session: bool,
    /// Routers do not report the identities connected to them yet: false.
    pub has_edge_router_connection: bool,
    /// `unknown`, for the same reason.
    pub edge_router_connection_status: String,
    /// Environment the identity's SDK reported at its last certificate login.
    pub env_info: Map<String, Value>,
    /// SDK the identity reported at its last certificate login.
    pub sdk_info: Map<String, Value>,
    /// Fine-grained admin permissions: none (Weft has only `isAdmin`).
    pub permissions: Vec<String>,
    /// Hosting precedence when none is given per service.
    pub default_hosting_precedence: String,
    /// Per-service hosting costs: none.
    pub service_hosting_costs: Map<String, Value>,
    /// Per-service hosting precedences: none.
    pub service_hosting_precedences: Map<String, Value>,
    /// Disabled now: `disabledAt` set and `disabledUntil` not passed.
    pub disabled: bool,
}

/// Fields an edge router detail adds to the stored document.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeRouterState {
    /// A control channel is up.
    pub is_online: bool,
    /// The router enrolled (has a control-channel certificate).
    pub is_verified: bool,
    /// SHA-1 fingerprint of its control-channel certificate (absent before enrollment).
    #[serde(skip_serializing_if = "Option::is_none")]
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

/// Fields a service detail adds to the stored document (`serviceDetail`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceExtras {
    /// Dial/Bind permissions of the identity the list is for (empty in the collection).
    pub permissions: Vec<String>,
    /// Config data by config type name (empty in the management collection).
    pub config: Map<String, Value>,
    /// Posture queries: none (posture checks are not evaluated yet).
    pub posture_queries: Vec<Value>,
    /// Idle time after which circuits close: 0, none (Weft closes no idle circuits).
    pub max_idle_time_millis: u64,
}

/// Fields a config detail adds to the stored document (`configDetail`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigExtras {
    /// Its config type.
    pub config_type: EntityRef,
}

/// A role of a policy with the name it stands for (`namedRole`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct NamedRole {
    /// The role: `#attribute`, `@id` or `#all`.
    pub role: String,
    /// `#attribute`, `#all`, or `@name` of the entity `@id` names.
    pub name: String,
}

/// Fields a service policy detail adds (`servicePolicyDetail`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePolicyExtras {
    /// `identityRoles` with names.
    pub identity_roles_display: Vec<NamedRole>,
    /// `serviceRoles` with names.
    pub service_roles_display: Vec<NamedRole>,
    /// `postureCheckRoles` with names.
    pub posture_check_roles_display: Vec<NamedRole>,
}

/// Fields an edge router policy detail adds (`edgeRouterPolicyDetail`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeRouterPolicyExtras {
    /// `edgeRouterRoles` with names.
    pub edge_router_roles_display: Vec<NamedRole>,
    /// `identityRoles` with names.
    pub identity_roles_display: Vec<NamedRole>,
    /// False: Weft creates no system policies.
    pub is_system: bool,
}

/// Fields a service edge router policy detail adds (`serviceEdgeRouterPolicyDetail`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEdgeRouterPolicyExtras {
    /// `edgeRouterRoles` with names.
    pub edge_router_roles_display: Vec<NamedRole>,
    /// `serviceRoles` with names.
    pub service_roles_display: Vec<NamedRole>,
}

/// Fields a terminator detail shows in place of the stored ids (`terminatorDetail`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TerminatorExtras {
    /// Its service.
    pub service: EntityRef,
    /// Its service's id.
    pub service_id: String,
    /// Its router.
    pub router: EntityRef,
    /// Its router's id.
    pub router_id: String,
    /// `default`, `required` or `failed` (`default` when none was set).
    pub precedence: String,
    /// The cost path selection uses: the static cost (Weft adjusts no cost at run time
    /// yet).
    pub dynamic_cost: u16,
}

/// Fields an external JWT signer's detail adds to (or renders in place of) the stored
/// document (`externalJwtSignerDetail` requires them all as strings): what the
/// certificate shows, empty for a JWKS signer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalJwtSignerExtras {
    /// SHA-1 fingerprint of `certPem`.
    pub fingerprint: String,
    /// Common name of `certPem`'s subject.
    pub common_name: String,
    /// Start of `certPem`'s validity.
    pub not_before: String,
    /// End of `certPem`'s validity.
    pub not_after: String,
    /// The key id tokens name: the configured `kid`, or the fingerprint of `certPem`.
    pub kid: String,
    /// `clientId`, empty when not set.
    pub client_id: String,
    /// `externalAuthUrl`, empty when not set.
    pub external_auth_url: String,
}

fn signer_extras(d: &ExternalJwtSigner) -> ExternalJwtSignerExtras {
    let cert = d
        .cert_pem
        .as_deref()
        .and_then(|pem| crate::extjwt::keys::parse_cert_pem(pem).ok());
    let kid = match (&d.kid, &cert) {
        (Some(k), _) => k.clone(),
        (None, Some(c)) => c.fingerprint.clone(),
        (None, None) => String::new(),
    };
    ExternalJwtSignerExtras {
        fingerprint: cert
            .as_ref()
            .map(|c| c.fingerprint.clone())
            .unwrap_or_default(),
        common_name: cert
            .as_ref()
            .map(|c| c.common_name.clone())
            .unwrap_or_default(),
        not_before: cert
            .as_ref()
            .map(|c| clock::fmt_unix(c.not_before))
            .unwrap_or_default(),
        not_after: cert
            .as_ref()
            .map(|c| clock::fmt_unix(c.not_after))
            .unwrap_or_default(),
        kid,
        client_id: d.client_id.clone().unwrap_or_default(),
        external_auth_url: d.external_auth_url.clone().unwrap_or_default(),
    }
}

/// What a posture check's detail has besides its document.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PostureCheckExtras {
    /// Starts at 1, counts updates.
    pub version: i64,
}

/// Registers the schema of the fields [`management_entity`] adds for `kind`, if any.
pub fn detail_extras_schema(kind: Kind, g: &mut SchemaGenerator) -> Option<Schema> {
    match kind {
        Kind::Identities => Some(g.subschema_for::<IdentityExtras>()),
        Kind::EdgeRouters => Some(g.subschema_for::<EdgeRouterState>()),
        Kind::Services => Some(g.subschema_for::<ServiceExtras>()),
        Kind::Configs => Some(g.subschema_for::<ConfigExtras>()),
        Kind::ServicePolicies => Some(g.subschema_for::<ServicePolicyExtras>()),
        Kind::EdgeRouterPolicies => Some(g.subschema_for::<EdgeRouterPolicyExtras>()),
        Kind::ServiceEdgeRouterPolicies => Some(g.subschema_for::<ServiceEdgeRouterPolicyExtras>()),
        Kind::Terminators => Some(g.subschema_for::<TerminatorExtras>()),
        Kind::ExternalJwtSigners => Some(g.subschema_for::<ExternalJwtSignerExtras>()),
        Kind::PostureChecks => Some(g.subschema_for::<PostureCheckExtras>()),
        Kind::Cas => Some(g.subschema_for::<crate::thirdparty_ca::CaExtras>()),
        Kind::ConfigTypes | Kind::AuthPolicies => None,
    }
}

/// A reference to the entity `id` of `kind` (`entityRef`), named as stored (empty when
/// it no longer exists).
pub async fn reference(ctl: &Controller, kind: Kind, id: &str) -> Result<EntityRef, ApiError> {
    let name = ctl
        .store
        .get_entity(kind.collection(), id)
        .await?
        .map(|e| e.name)
        .unwrap_or_default();
    Ok(EntityRef::new(id, &name, kind.collection()))
}

/// `roles` of a policy with names (`namedRoles`): `@id` names the entity of `kind`.
async fn display_roles(
    ctl: &Controller,
    roles: &[String],
    kind: Option<Kind>,
) -> Result<Vec<NamedRole>, ApiError> {
    let mut out = Vec::new();
    for role in roles {
        let name = match (role.strip_prefix('@'), kind) {
            (Some(id), Some(k)) => match ctl.store.get_entity(k.collection(), id).await? {
                Some(e) => format!("@{}", e.name),
                None => role.to_owned(),
            },
            _ => role.to_owned(),
        };
        out.push(NamedRole {
            role: role.to_owned(),
            name,
        });
    }
    Ok(out)
}

async fn identity_extras(ctl: &Controller, row: &EntityRow) -> Result<IdentityExtras, ApiError> {
    let pending = ctl.store.pending_enrollments(&row.id).await?;
    let ott_enrollment = |e: &EnrollmentRow| OttEnrollment {
        id: e.id.clone(),
        jwt: e.jwt.clone(),
        token: e.jti.clone(),
        expires_at: clock::fmt_unix(e.expires_at),
    };
    let pending_of = |method: &str| {
        pending
            .iter()
            .find(|e| e.method.name() == method)
            .map(ott_enrollment)
    };
    let (ott, updb) = (pending_of("ott"), pending_of("updb"));
    let ottca = pending.iter().find_map(|e| match &e.method {
        EnrollmentMethod::Ottca { ca_id } => Some((e, ca_id.clone())),
        _ => None,
    });
    let ottca = match ottca {
        Some((e, ca_id)) => Some(OttCaEnrollment {
            enrollment: ott_enrollment(e),
            ca: reference(ctl, Kind::Cas, &ca_id).await?,
            ca_id,
        }),
        None => None,
    };
    let mut authenticators = IdentityAuthenticators::default();
    for a in ctl.store.authenticators_of(&row.id).await? {
        match a.credential {
            Credential::Cert { fingerprint, .. } => {
                authenticators.cert = Some(CertAuthenticator {
                    id: a.id,
                    fingerprint,
                });
            }
            Credential::Updb { username, .. } => {
                authenticators.updb = Some(UpdbAuthenticator { id: a.id, username });
            }
            Credential::Router { .. } => {}
        }
    }
    let doc: Identity = row.doc()?;
    let type_id = match doc.identity_type.as_str() {
        "Router" => "Router",
        _ => "Default",
    }
    .to_owned();
    let auth_policy_id = doc.auth_policy();
    let info: Value = ctl
        .store
        .meta_get(&crate::auth::identity_info_key(&row.id))
        .await?
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let object = |v: &Value| v.as_object().cloned().unwrap_or_default();
    Ok(IdentityExtras {
        enrollment: IdentityEnrollment { ott, updb, ottca },
        authenticators,
        identity_type: EntityRef::new(&type_id, &type_id, "identity-types"),
        type_id,
        auth_policy_id: auth_policy_id.to_owned(),
        auth_policy: reference(ctl, Kind::AuthPolicies, auth_policy_id).await?,
        external_id: doc.external_id.clone(),
        is_default_admin: ctl.store.meta_get("admin_identity_id").await?.as_deref()
            == Some(&row.id),
        is_mfa_enabled: ctl.store.mfa_of(&row.id).await?.is_some_and(|m| m.verified),
        has_api_session: ctl.store.has_api_session(&row.id).await?,
        has_edge_router_connection: false,
        edge_router_connection_status: "unknown".into(),
        env_info: object(&info["envInfo"]),
        sdk_info: object(&info["sdkInfo"]),
        permissions: Vec::new(),
        default_hosting_precedence: "default".into(),
        service_hosting_costs: Map::new(),
        service_hosting_precedences: Map::new(),
        disabled: doc.is_disabled(clock::now_unix()),
    })
}

fn merge(v: &mut Value, extras: impl Serialize) -> Result<(), ApiError> {
    let extras =
        serde_json::to_value(extras).map_err(|e| ApiError::Internal(format!("serialize: {e}")))?;
    if let (Value::Object(m), Value::Object(x)) = (v, extras) {
        m.extend(x);
    }
    Ok(())
}

/// Management view (`{kind}Detail`): the stored document with the fields OpenZiti's
/// detail has besides ([`IdentityExtras`], [`EdgeRouterState`], [`ServiceExtras`],
/// [`ConfigExtras`], the policies' `*RolesDisplay`, [`TerminatorExtras`]).
pub async fn management_entity(
    ctl: &Controller,
    kind: Kind,
    row: &EntityRow,
) -> Result<Value, ApiError> {
    let mut v = entity(row);
    match kind {
        Kind::Identities => merge(&mut v, identity_extras(ctl, row).await?)?,
        Kind::EdgeRouters => {
            let (hostname, protocols) = advertised(ctl, &row.id, &row.doc()?);
            v["hostname"] = hostname;
            v["supportedProtocols"] = protocols;
            let online = ctl.routers.is_online(&row.id);
            let fingerprint = ctl.store.router_fingerprint(&row.id).await?;
            let pending = ctl
                .store
                .pending_enrollments(&row.id)
                .await?
                .into_iter()
                .next();
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
        Kind::Services => merge(
            &mut v,
            ServiceExtras {
                permissions: Vec::new(),
                config: Map::new(),
                posture_queries: Vec::new(),
                max_idle_time_millis: 0,
            },
        )?,
        Kind::Configs => {
            let type_id = row.doc::<Config>()?.config_type_id;
            merge(
                &mut v,
                ConfigExtras {
                    config_type: reference(ctl, Kind::ConfigTypes, &type_id).await?,
                },
            )?;
        }
        Kind::ServicePolicies => {
            let p: ServicePolicy = row.doc()?;
            let extras = ServicePolicyExtras {
                identity_roles_display: display_roles(
                    ctl,
                    &p.identity_roles,
                    Some(Kind::Identities),
                )
                .await?,
                service_roles_display: display_roles(ctl, &p.service_roles, Some(Kind::Services))
                    .await?,
                posture_check_roles_display: display_roles(
                    ctl,
                    &p.posture_check_roles,
                    Some(Kind::PostureChecks),
                )
                .await?,
            };
            merge(&mut v, extras)?;
        }
        Kind::EdgeRouterPolicies => {
            let p: EdgeRouterPolicy = row.doc()?;
            let extras = EdgeRouterPolicyExtras {
                edge_router_roles_display: display_roles(
                    ctl,
                    &p.edge_router_roles,
                    Some(Kind::EdgeRouters),
                )
                .await?,
                identity_roles_display: display_roles(
                    ctl,
                    &p.identity_roles,
                    Some(Kind::Identities),
                )
                .await?,
                is_system: false,
            };
            merge(&mut v, extras)?;
        }
        Kind::ServiceEdgeRouterPolicies => {
            let p: ServiceEdgeRouterPolicy = row.doc()?;
            let extras = ServiceEdgeRouterPolicyExtras {
                edge_router_roles_display: display_roles(
                    ctl,
                    &p.edge_router_roles,
                    Some(Kind::EdgeRouters),
                )
                .await?,
                service_roles_display: display_roles(ctl, &p.service_roles, Some(Kind::Services))
                    .await?,
            };
            merge(&mut v, extras)?;
        }
        Kind::Terminators => {
            let t: Terminator = row.doc()?;
            merge(
                &mut v,
                TerminatorExtras {
                    service: reference(ctl, Kind::Services, &t.service).await?,
                    service_id: t.service,
                    router: reference(ctl, Kind::EdgeRouters, &t.router).await?,
                    router_id: t.router,
                    precedence: t.precedence.unwrap_or_else(|| "default".into()),
                    dynamic_cost: t.cost,
                },
            )?;
        }
        Kind::ExternalJwtSigners => merge(&mut v, signer_extras(&row.doc()?))?,
        Kind::PostureChecks => merge(
            &mut v,
            PostureCheckExtras {
                version: row.doc::<StoredPostureCheck>()?.version,
            },
        )?,
        Kind::Cas => merge(&mut v, crate::thirdparty_ca::extras(row)?)?,
        Kind::ConfigTypes | Kind::AuthPolicies => {}
    }
    Ok(v)
}

/// A terminator as a client sees it (`terminatorClientDetail`): the service, the
/// router and the terminator identity (what a dial may name), without the address,
/// binding, cost and precedence that only the management API shows.
pub async fn client_terminator(ctl: &Controller, row: &EntityRow) -> Result<Value, ApiError> {
    let t: Terminator = row.doc()?;
    Ok(json!({
        "id": row.id,
        "tags": row.tags,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
        "_links": {},
        "service": reference(ctl, Kind::Services, &t.service).await?,
        "serviceId": t.service,
        "routerId": t.router,
        // OpenZiti's terminator `identity` is the one a dial may name (the bind's
        // terminator identity, `instanceId` here), not the hosting identity.
        "identity": t.instance_id,
    }))
}

/// An edge router's `hostname` and `supportedProtocols`: as created or updated through
/// the management API, or else what the router reported in its control hello (as
/// OpenZiti's routers do), served while it is connected to some controller of the
/// cluster (`""` and `{}` while such a router is offline).
pub fn advertised(ctl: &Controller, id: &str, router: &EdgeRouter) -> (Value, Value) {
    if !router.supported_protocols.is_empty() {
        return (json!(router.hostname), json!(router.supported_protocols));
    }
    let reported = ctl.routers.edge_listeners(id);
    match reported.first() {
        Some(url) => (
            json!(weft_identity::endpoint::host(url).unwrap_or_default()),
            json!({ "tls": url }),
        ),
        None => (json!(router.hostname), json!({})),
    }
}

/// Edge router as listed to clients (`currentIdentityEdgeRouterDetail`,
/// session `edgeRouters[]`): `supportedProtocols` and its deprecated copy `urls`.
pub fn client_router(ctl: &Controller, row: &EntityRow) -> Result<Value, ApiError> {
    let d: EdgeRouter = row.doc()?;
    let (hostname, protocols) = advertised(ctl, &row.id, &d);
    Ok(json!({
        "id": row.id,
        "name": row.name,
        "hostname": hostname,
        "supportedProtocols": protocols,
        "urls": protocols,
        "isOnline": ctl.routers.is_online(&row.id),
        "syncStatus": if ctl.routers.is_online(&row.id) { "SYNC_DONE" } else { "SYNC_NEW" },
        "cost": d.cost,
        "noTraversal": d.no_traversal,
        "disabled": d.disabled,
        "appData": d.app_data,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
        "tags": row.tags,
        "_links": {},
    }))
}

/// API session detail (spec §4.3 / §13 item 2).
/// `open`: the authentication queries the request leaves open, listed in `authQueries`.
pub async fn api_session(
    ctl: &Controller,
    s: &ApiSessionRow,
    identity: &Entity<Identity>,
    open: &crate::auth::policy::OpenQueries,
    cert: crate::auth::CertFlags,
) -> Value {
    let totp_pending = open.totp;
    let queries = crate::auth::policy::auth_queries(&ctl.store, open).await;
    let timeout = ctl.config.auth.api_session_timeout_secs;
    let last = clock::fmt_unix(s.last_activity);
    json!({
        "id": s.id,
        "token": s.token,
        "identity": {"id": identity.id, "name": identity.name, "entity": "identities", "_links": {}},
        "identityId": identity.id,
        "ipAddress": s.ip_address,
        "configTypes": s.config_types,
        "authQueries": queries,
        "isMfaRequired": s.mfa_required || totp_pending,
        "isMfaComplete": s.mfa_complete,
        "isCertExtendable": cert.extendable,
        "isCertExtendRequested": cert.extend_requested,
        "isCertKeyRollRequested": cert.key_roll_requested,
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

/// Current identity detail (spec §4.7): the identity's detail, as the management API
/// shows it.
pub async fn current_identity(
    ctl: &Controller,
    identity: &Entity<Identity>,
) -> Result<Value, ApiError> {
    let row = identity.clone().into_row()?;
    management_entity(ctl, Kind::Identities, &row).await
}

/// Service as the client sees it: `permissions`, `config` filtered by the API
/// session's config types (`all` = every type), `postureQueries: []` (spec §6.2).
/// `own_configs` are the caller's identity service configs (any service's): for this
/// service each replaces the service's config of its type, or adds one of a type the
/// service has none of, as OpenZiti merges them.
pub async fn client_service(
    ctl: &Controller,
    row: &EntityRow,
    perms: &[PolicyType],
    config_types: &[String],
    own_configs: &[ServiceConfigRow],
) -> Result<Value, ApiError> {
    let mut v = entity(row);
    v["permissions"] = json!(perms.iter().map(|p| p.as_str()).collect::<Vec<_>>());
    v["postureQueries"] = json!([]);
    v["maxIdleTimeMillis"] = json!(0);
    // The service's configs by type (each read once, its data kept); the identity's own
    // for this service replace them, read only if their type is wanted.
    enum Pick {
        Data(Value),
        Own(String),
    }
    let mut by_type: BTreeMap<String, Pick> = BTreeMap::new();
    for id in &row.doc::<Service>()?.configs {
        if let Some(cfg) = ctl.store.entity::<Config>(id).await? {
            by_type.insert(
                cfg.doc.config_type_id,
                Pick::Data(Value::Object(cfg.doc.data)),
            );
        }
    }
    for own in own_configs.iter().filter(|c| c.service_id == row.id) {
        by_type.insert(own.config_type_id.clone(), Pick::Own(own.config_id.clone()));
    }
    let mut config = Map::new();
    for (type_id, pick) in by_type {
        let Some(ct) = ctl
            .store
            .get_entity(Kind::ConfigTypes.collection(), &type_id)
            .await?
        else {
            continue;
        };
        let wanted = config_types
            .iter()
            .any(|t| t == "all" || *t == ct.name || *t == ct.id);
        if !wanted {
            continue;
        }
        let data = match pick {
            Pick::Data(data) => Some(data),
            Pick::Own(config_id) => ctl
                .store
                .entity::<Config>(&config_id)
                .await?
                .map(|cfg| Value::Object(cfg.doc.data)),
        };
        if let Some(data) = data {
            config.insert(ct.name, data);
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

/// Session detail (spec §7): with references to its API session and service.
pub async fn session(
    ctl: &Controller,
    s: &SessionRow,
    routers: &[Value],
) -> Result<Value, ApiError> {
    Ok(json!({
        "id": s.id,
        "token": s.token,
        "type": s.session_type.as_str(),
        "serviceId": s.service_id,
        "service": reference(ctl, Kind::Services, &s.service_id).await?,
        "apiSessionId": s.api_session_id,
        "apiSession": EntityRef::new(&s.api_session_id, "", "api-sessions"),
        "identityId": s.identity_id,
        "edgeRouters": routers,
        "createdAt": s.created_at,
        "updatedAt": s.updated_at,
        "tags": {},
        "_links": {},
    }))
}

/// The edge routers a session of `identity_id` for `service_id` may use, as clients see
/// them (edge router policy ∧ service edge router policy).
pub async fn session_routers(
    ctl: &Controller,
    identity_id: &str,
    service_id: &str,
) -> Result<Vec<Value>, ApiError> {
    let view = ctl.policy.get(&ctl.store).await?;
    view.edge_routers_for_session(identity_id, service_id)
        .iter()
        .map(|r| client_router(ctl, r))
        .collect()
}
