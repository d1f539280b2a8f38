//! Lists of the entities related to one entity: an identity's services and edge routers
//! (as its policies grant them), a service's configs and terminators, what a policy
//! selects and the policies selecting an entity, a config type's configs and a config's
//! services; the policy advice for one identity and one service; and `/summary`, the
//! entity counts.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::Response;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

use super::views::{EntityRef, to_json};
use crate::api::endpoint::{ApiBuilder, Data, Endpoint, Shape};
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope, render};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::filter::{FieldType, Fields};
use crate::model::{Config, Kind, PolicyType, Service, Terminator};
use crate::store::EntityRow;
use crate::thirdparty_ca::enrollment::OTTCA;

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
    routers_page(&ctl, &q, policy.edge_routers_for_identity(&id)).await
}

/// `routers` (enabled edge routers, in the store's order) as a page.
async fn routers_page(
    ctl: &AppState,
    q: &ListQuery,
    routers: Vec<&EntityRow>,
) -> Result<Response, ApiError> {
    let rows = routers.into_iter().map(|r| (r.clone(), None)).collect();
    page(ctl, Kind::EdgeRouters, q, &Kind::EdgeRouters.fields(), rows).await
}

/// The entities of kind `k` for which `keep(policy, id)` holds, as a page.
async fn selected(
    ctl: &AppState,
    k: Kind,
    q: &ListQuery,
    keep: impl Fn(&crate::authz::PolicySnapshot, &str) -> bool,
) -> Result<Response, ApiError> {
    let policy = ctl.policy.get(&ctl.store).await?;
    let rows = ctl
        .store
        .list_all(k.collection())
        .await?
        .into_iter()
        .filter(|e| keep(&policy, &e.id))
        .map(|e| (e, None))
        .collect();
    page(ctl, k, q, &k.fields(), rows).await
}

/// `GET /services/{id}/identities`: identities a service policy lets dial or bind it.
async fn service_identities(ctl: AppState, id: String, q: ListQuery) -> Result<Response, ApiError> {
    entity(&ctl, Kind::Services, &id).await?;
    selected(&ctl, Kind::Identities, &q, |policy, identity| {
        [PolicyType::Dial, PolicyType::Bind]
            .into_iter()
            .any(|kind| policy.grants(identity, &id, kind))
    })
    .await
}

/// `GET /services/{id}/edge-routers`: edge routers through which the service may be
/// reached (service edge router policies).
async fn service_edge_routers(
    ctl: AppState,
    id: String,
    q: ListQuery,
) -> Result<Response, ApiError> {
    entity(&ctl, Kind::Services, &id).await?;
    let policy = ctl.policy.get(&ctl.store).await?;
    routers_page(&ctl, &q, policy.edge_routers_for_service(&id)).await
}

/// `GET /edge-routers/{id}/identities`: identities edge router policies let use it.
async fn edge_router_identities(
    ctl: AppState,
    id: String,
    q: ListQuery,
) -> Result<Response, ApiError> {
    entity(&ctl, Kind::EdgeRouters, &id).await?;
    selected(&ctl, Kind::Identities, &q, |policy, identity| {
        policy.router_ids_for_identity(identity).contains(&id)
    })
    .await
}

/// `GET /edge-routers/{id}/services`: services service edge router policies let be
/// reached through it.
async fn edge_router_services(
    ctl: AppState,
    id: String,
    q: ListQuery,
) -> Result<Response, ApiError> {
    entity(&ctl, Kind::EdgeRouters, &id).await?;
    selected(&ctl, Kind::Services, &q, |policy, service| {
        policy.router_ids_for_service(service).contains(&id)
    })
    .await
}

async fn service_configs(ctl: AppState, id: String, q: ListQuery) -> Result<Response, ApiError> {
    let ids = entity(&ctl, Kind::Services, &id)
        .await?
        .doc::<Service>()?
        .configs;
    let rows = ctl
        .store
        .list_all(Kind::Configs.collection())
        .await?
        .into_iter()
        .filter(|c| ids.contains(&c.id))
        .map(|c| (c, None))
        .collect();
    page(&ctl, Kind::Configs, &q, &Kind::Configs.fields(), rows).await
}

/// The terminators of service `id` (both APIs list them).
pub(crate) async fn terminators_of(ctl: &AppState, id: &str) -> Result<Vec<EntityRow>, ApiError> {
    let mut of = Vec::new();
    for t in ctl.store.list_all(Kind::Terminators.collection()).await? {
        if t.doc::<Terminator>()?.service == id {
            of.push(t);
        }
    }
    Ok(of)
}

async fn service_terminators(
    ctl: AppState,
    id: String,
    q: ListQuery,
) -> Result<Response, ApiError> {
    entity(&ctl, Kind::Services, &id).await?;
    let rows = terminators_of(&ctl, &id)
        .await?
        .into_iter()
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

/// `GET /{policies}/{id}/{entities}`: the entities of kind `k` that the policy `id` (of
/// kind `policies`) selects through its role list for `k` (`#all`, `@ref`s, attributes
/// under its semantic), as the policy engine evaluates it.
async fn policy_entities(
    ctl: AppState,
    policies: Kind,
    id: String,
    k: Kind,
    q: ListQuery,
) -> Result<Response, ApiError> {
    entity(&ctl, policies, &id).await?;
    selected(&ctl, k, &q, |policy, e| {
        policy.policy_selects(policies, &id, k, e)
    })
    .await
}

/// `GET /{entities}/{id}/{policies}`: the policies of kind `policies` whose role list for
/// `k` selects the entity `id` of kind `k`.
async fn entity_policies(
    ctl: AppState,
    k: Kind,
    id: String,
    policies: Kind,
    q: ListQuery,
) -> Result<Response, ApiError> {
    entity(&ctl, k, &id).await?;
    selected(&ctl, policies, &q, |policy, p| {
        policy.policy_selects(policies, p, k, &id)
    })
    .await
}

/// `GET /config-types/{id}/configs`: the configs of the type.
async fn config_type_configs(
    ctl: AppState,
    id: String,
    q: ListQuery,
) -> Result<Response, ApiError> {
    entity(&ctl, Kind::ConfigTypes, &id).await?;
    let mut rows = Vec::new();
    for c in ctl.store.list_all(Kind::Configs.collection()).await? {
        if c.doc::<Config>()?.config_type_id == id {
            rows.push((c, None));
        }
    }
    page(&ctl, Kind::Configs, &q, &Kind::Configs.fields(), rows).await
}

/// `GET /configs/{id}/services`: the services whose `configs` hold the config.
async fn config_services(ctl: AppState, id: String, q: ListQuery) -> Result<Response, ApiError> {
    entity(&ctl, Kind::Configs, &id).await?;
    let mut rows = Vec::new();
    for s in ctl.store.list_all(Kind::Services.collection()).await? {
        if s.doc::<Service>()?.configs.contains(&id) {
            rows.push((s, None));
        }
    }
    page(&ctl, Kind::Services, &q, &Kind::Services.fields(), rows).await
}

/// The keys `/summary` counts the entities of `k` under: OpenZiti's entity types
/// (openziti/ziti `controller/db/stores.go`, `EntityType…` constants, and the fabric's
/// `routers`, `services`, `terminators`). OpenZiti's `GetEntityCounts`
/// (`controller/db/stores.go`) counts every store under its entity type, and an edge
/// child store (edge routers, edge services) as `<type>.edge` besides its fabric parent;
/// every Weft router and service is an edge one, so both keys carry the same count.
fn summary_keys(k: Kind) -> &'static [&'static str] {
    match k {
        Kind::Identities => &["identities"],
        Kind::Services => &["services", "services.edge"],
        Kind::Configs => &["configs"],
        Kind::ConfigTypes => &["configTypes"],
        Kind::ServicePolicies => &["servicePolicies"],
        Kind::EdgeRouterPolicies => &["edgeRouterPolicies"],
        Kind::ServiceEdgeRouterPolicies => &["serviceEdgeRouterPolicies"],
        Kind::EdgeRouters => &["routers", "routers.edge"],
        Kind::Terminators => &["terminators"],
        Kind::AuthPolicies => &["authPolicies"],
        Kind::ExternalJwtSigners => &["externalJwtSigners"],
        Kind::PostureChecks => &["postureChecks"],
        Kind::Cas => &["cas"],
    }
}

/// `GET /summary` (`listSummaryCounts`): how many entities of each collection exist, as
/// OpenZiti answers it (openziti/ziti `controller/internal/routes/summary_router.go`:
/// `GetEntityCounts`, keys as in [`summary_keys`]), plus `apiSessions`, `sessions`,
/// `authenticators` and `enrollments` (the pending ones `/enrollments` lists).
async fn summary(ctl: AppState) -> Result<Response, ApiError> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for k in Kind::ALL {
        let n = ctl.store.list_all(k.collection()).await?.len();
        for key in summary_keys(k) {
            counts.insert(key, n);
        }
    }
    let enrollments = ctl.store.list_enrollments(crate::enroll::OTT).await?.len()
        + ctl.store.list_enrollments(OTTCA).await?.len();
    counts.insert("apiSessions", ctl.store.all_api_sessions().await?.len());
    counts.insert(
        "sessions",
        ctl.store.sessions_where_api_session(None).await?.len(),
    );
    counts.insert(
        "authenticators",
        ctl.store.list_authenticators().await?.len(),
    );
    counts.insert("enrollments", enrollments);
    Ok(envelope::ok(to_json(&counts)?))
}

/// The policy related lists: (policies, entities, operationId of
/// `/{policies}/{id}/{entities}`, operationId of `/{entities}/{id}/{policies}`), with
/// OpenZiti's operationIds as its spec spells them (`listIdentitysEdgeRouterPolicies`).
const POLICY_LISTS: [(Kind, Kind, &str, &str); 6] = [
    (
        Kind::ServicePolicies,
        Kind::Identities,
        "listServicePolicyIdentities",
        "listIdentityServicePolicies",
    ),
    (
        Kind::ServicePolicies,
        Kind::Services,
        "listServicePolicyServices",
        "listServiceServicePolicies",
    ),
    (
        Kind::EdgeRouterPolicies,
        Kind::Identities,
        "listEdgeRouterPolicyIdentities",
        "listIdentitysEdgeRouterPolicies",
    ),
    (
        Kind::EdgeRouterPolicies,
        Kind::EdgeRouters,
        "listEdgeRouterPolicyEdgeRouters",
        "listEdgeRouterEdgeRouterPolicies",
    ),
    (
        Kind::ServiceEdgeRouterPolicies,
        Kind::Services,
        "listServiceEdgeRouterPolicyServices",
        "listServiceServiceEdgeRouterPolicies",
    ),
    (
        Kind::ServiceEdgeRouterPolicies,
        Kind::EdgeRouters,
        "listServiceEdgeRouterPolicyEdgeRouters",
        "listEdgeRouterServiceEdgeRouterPolicies",
    ),
];

/// Adds the routes of [`POLICY_LISTS`], both ways.
fn policy_routes(mut api: ApiBuilder) -> ApiBuilder {
    for (policies, k, forward, back) in POLICY_LISTS {
        let (p, e) = (policies.collection(), k.collection());
        api = api
            .add(
                Endpoint::get(format!("/{p}/{{id}}/{e}"), forward)
                    .doc(
                        policies.type_names().1,
                        format!("The {} the policy selects", e.replace('-', " ")),
                    )
                    .admin()
                    .lists(Data::Entity(k, Shape::Detail)),
                move |State(ctl): State<AppState>,
                      _: Admin,
                      Path(id): Path<String>,
                      q: ListQuery| { policy_entities(ctl, policies, id, k, q) },
            )
            .add(
                Endpoint::get(format!("/{e}/{{id}}/{p}"), back)
                    .doc(
                        k.type_names().1,
                        format!("The {} selecting the entity", p.replace('-', " ")),
                    )
                    .admin()
                    .lists(Data::Entity(policies, Shape::Detail)),
                move |State(ctl): State<AppState>,
                      _: Admin,
                      Path(id): Path<String>,
                      q: ListQuery| { entity_policies(ctl, k, id, policies, q) },
            );
    }
    api
}

/// An edge router with whether it is online (`routerEntityRef`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouterRef {
    /// The router.
    #[serde(flatten)]
    pub router: EntityRef,
    /// A control channel is up (`isOnline` of the router's detail).
    pub is_online: bool,
}

/// A service policy granting access, with the posture checks it attaches (Weft's
/// addition to `policyAdvice`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantingPolicy {
    /// The service policy.
    #[serde(flatten)]
    pub policy: EntityRef,
    /// Its posture checks, sorted by id; empty when it requires none.
    pub posture_checks: Vec<EntityRef>,
}

/// Why an identity can or cannot use a service (`policyAdvice`), as OpenZiti's
/// `GET /identities/{id}/policy-advice/{serviceId}` answers (openziti/ziti
/// `controller/model/policy_advisor.go`, `AnalyzeServiceReachability`): the permissions
/// service policies grant, how many edge routers the identity's edge router policies and
/// the service's service edge router policies select, and the routers in both with
/// whether they are online. Weft adds the two router lists and the granting policies
/// with their posture checks. Disabled edge routers are in no list: no policy selects
/// them.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAdvice {
    /// The identity's id.
    pub identity_id: String,
    /// The identity.
    pub identity: EntityRef,
    /// The service's id.
    pub service_id: String,
    /// The service.
    pub service: EntityRef,
    /// A Dial service policy selects both.
    pub is_dial_allowed: bool,
    /// A Bind service policy selects both.
    pub is_bind_allowed: bool,
    /// How many edge routers the identity may connect to (edge router policies).
    pub identity_router_count: usize,
    /// How many edge routers the service may be reached through (service edge router
    /// policies).
    pub service_router_count: usize,
    /// The edge routers in both sets.
    pub common_routers: Vec<RouterRef>,
    /// The edge routers the identity may connect to (Weft's addition).
    pub identity_routers: Vec<RouterRef>,
    /// The edge routers the service may be reached through (Weft's addition).
    pub service_routers: Vec<RouterRef>,
    /// The Dial service policies selecting both, sorted by id (Weft's addition).
    pub dial_policies: Vec<GrantingPolicy>,
    /// The Bind service policies selecting both, sorted by id (Weft's addition).
    pub bind_policies: Vec<GrantingPolicy>,
}

fn router_ref(ctl: &AppState, r: &EntityRow) -> RouterRef {
    RouterRef {
        router: EntityRef::new(&r.id, &r.name, Kind::EdgeRouters.collection()),
        is_online: ctl.routers.is_online(&r.id),
    }
}

/// `GET /identities/{id}/policy-advice/{serviceId}`.
async fn identity_policy_advice(
    ctl: AppState,
    id: String,
    service_id: String,
) -> Result<Response, ApiError> {
    let identity = entity(&ctl, Kind::Identities, &id).await?;
    let service = entity(&ctl, Kind::Services, &service_id).await?;
    let policy = ctl.policy.get(&ctl.store).await?;
    let identity_routers = policy.edge_routers_for_identity(&identity.id);
    let service_routers = policy.edge_routers_for_service(&service.id);
    let common_routers = identity_routers
        .iter()
        .filter(|r| service_routers.iter().any(|s| s.id == r.id))
        .map(|r| router_ref(&ctl, r))
        .collect();
    let mut granting = [Vec::new(), Vec::new()];
    for (kind, out) in [PolicyType::Dial, PolicyType::Bind]
        .into_iter()
        .zip(granting.iter_mut())
    {
        for p in policy.granting_policies(&identity.id, &service.id, kind) {
            let name = ctl
                .store
                .get_entity(Kind::ServicePolicies.collection(), p.policy_id)
                .await?
                .map(|row| row.name)
                .unwrap_or_default();
            let posture_checks = p
                .posture_check_ids
                .iter()
                .map(|c| {
                    let name = policy.posture_check(c).map_or("", |e| e.name.as_str());
                    EntityRef::new(c, name, Kind::PostureChecks.collection())
                })
                .collect();
            out.push(GrantingPolicy {
                policy: EntityRef::new(p.policy_id, &name, Kind::ServicePolicies.collection()),
                posture_checks,
            });
        }
    }
    let [dial_policies, bind_policies] = granting;
    let advice = PolicyAdvice {
        identity_id: identity.id.clone(),
        identity: EntityRef::new(&identity.id, &identity.name, Kind::Identities.collection()),
        service_id: service.id.clone(),
        service: EntityRef::new(&service.id, &service.name, Kind::Services.collection()),
        is_dial_allowed: !dial_policies.is_empty(),
        is_bind_allowed: !bind_policies.is_empty(),
        identity_router_count: identity_routers.len(),
        service_router_count: service_routers.len(),
        common_routers,
        identity_routers: identity_routers
            .iter()
            .map(|r| router_ref(&ctl, r))
            .collect(),
        service_routers: service_routers
            .iter()
            .map(|r| router_ref(&ctl, r))
            .collect(),
        dial_policies,
        bind_policies,
    };
    Ok(envelope::ok(to_json(&advice)?))
}

/// Adds the config related lists and the summary.
fn config_and_summary_routes(api: ApiBuilder) -> ApiBuilder {
    api.add(
        Endpoint::get("/config-types/{id}/configs", "listConfigsForConfigType")
            .doc("ConfigTypes", "The configs of the type")
            .admin()
            .lists(Data::Entity(Kind::Configs, Shape::Detail)),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>, q: ListQuery| {
            config_type_configs(ctl, id, q)
        },
    )
    .add(
        Endpoint::get("/configs/{id}/services", "listConfigServices")
            .doc("Configs", "The services using the config")
            .admin()
            .lists(Data::Entity(Kind::Services, Shape::Detail)),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>, q: ListQuery| {
            config_services(ctl, id, q)
        },
    )
    .add(
        Endpoint::get("/summary", "listSummary")
            .doc(
                "Informational",
                "How many entities of each collection exist, keyed as OpenZiti keys them",
            )
            .admin()
            .returns(
                200,
                Data::Schema(|g| g.subschema_for::<BTreeMap<String, u64>>()),
            ),
        |State(ctl): State<AppState>, _: Admin| summary(ctl),
    )
}

/// Adds the routes of this module.
pub fn routes(api: ApiBuilder) -> ApiBuilder {
    let api = config_and_summary_routes(policy_routes(api));
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
        Endpoint::get(
            "/identities/{id}/policy-advice/{serviceId}",
            "getIdentityPolicyAdvice",
        )
        .doc(
            "Identities",
            "Whether the identity may dial or bind the service, through which edge routers, under which posture checks",
        )
        .admin()
        .returns(200, Data::Schema(|g| g.subschema_for::<PolicyAdvice>())),
        |State(ctl): State<AppState>,
         _: Admin,
         Path((id, service_id)): Path<(String, String)>| {
            identity_policy_advice(ctl, id, service_id)
        },
    )
    .add(
        Endpoint::get("/services/{id}/identities", "listServiceIdentities")
            .doc("Services", "Identities a service policy lets dial or bind the service")
            .admin()
            .lists(Data::Entity(Kind::Identities, Shape::Detail)),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>, q: ListQuery| {
            service_identities(ctl, id, q)
        },
    )
    .add(
        Endpoint::get("/services/{id}/edge-routers", "listServiceEdgeRouters")
            .doc(
                "Services",
                "Edge routers through which the service may be reached",
            )
            .admin()
            .lists(Data::Entity(Kind::EdgeRouters, Shape::Detail)),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>, q: ListQuery| {
            service_edge_routers(ctl, id, q)
        },
    )
    .add(
        Endpoint::get("/edge-routers/{id}/identities", "listEdgeRouterIdentities")
            .doc("EdgeRouters", "Identities edge router policies let use the router")
            .admin()
            .lists(Data::Entity(Kind::Identities, Shape::Detail)),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>, q: ListQuery| {
            edge_router_identities(ctl, id, q)
        },
    )
    .add(
        Endpoint::get("/edge-routers/{id}/services", "listEdgeRouterServices")
            .doc(
                "EdgeRouters",
                "Services that may be reached through the router",
            )
            .admin()
            .lists(Data::Entity(Kind::Services, Shape::Detail)),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>, q: ListQuery| {
            edge_router_services(ctl, id, q)
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
