//! Posture on the management API besides the `/posture-checks` CRUD: the check types,
//! a service policy's checks, and what an identity
//! reported (`posture-data`) and was refused for (`failed-service-requests`).
//!
//! Shapes: openziti/edge-api `source/management/posture-check-types.yml`,
//! `source/management/identities.yml` (`postureData`, `failedServiceRequest`),
//! `source/management/role-attributes.yml`.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::related::entity;
use crate::api::endpoint::{ApiBuilder, Data, Endpoint, Shape};
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope, render};
use crate::auth::Admin;
use crate::clock;
use crate::error::ApiError;
use crate::filter::Fields;
use crate::model::{Kind, ServicePolicy};
use crate::policy::{self, RoleSet};
use crate::posture::checks::{CHECK_TYPES, CheckType, OS_TYPES};

/// Adds the routes.
pub fn routes(api: ApiBuilder) -> ApiBuilder {
    api.add(
        Endpoint::get("/posture-check-types", "listPostureCheckTypes")
            .doc("Posture Checks", "Lists the posture check types")
            .admin()
            .lists(Data::Object(
                "Posture check type: `id`, `name`, `operatingSystems`, `version`.",
            )),
        list_types,
    )
    .add(
        Endpoint::get("/posture-check-types/{id}", "detailPostureCheckType")
            .doc("Posture Checks", "One posture check type")
            .admin()
            .returns(200, Data::Object("Posture check type.")),
        detail_type,
    )
    .add(
        Endpoint::get(
            "/service-policies/{id}/posture-checks",
            "listServicePolicyPostureChecks",
        )
        .doc(
            "Service Policy",
            "The posture checks a service policy selects",
        )
        .admin()
        .lists(Data::Entity(Kind::PostureChecks, Shape::Detail)),
        policy_checks,
    )
    .add(
        Endpoint::get("/identities/{id}/posture-data", "getIdentityPostureData")
            .doc("Identity", "What the identity's endpoints reported")
            .admin()
            .returns(
                200,
                Data::Object(
                    "`postureData`: `os`, `mac`, `domain`, `processes`, `apiSessionPostureData`.",
                ),
            ),
        posture_data,
    )
    .add(
        Endpoint::get(
            "/identities/{id}/failed-service-requests",
            "getIdentityFailedServiceRequests",
        )
        .doc(
            "Identity",
            "Session requests refused because posture failed (newest first)",
        )
        .admin()
        .returns(200, Data::Object("A list of `failedServiceRequest`.")),
        failed_requests,
    )
}

fn check_type(t: &CheckType) -> Value {
    // Fixed entries, as OpenZiti seeds them.
    let at = clock::fmt_unix(0);
    let systems: Vec<Value> = OS_TYPES
        .iter()
        .map(|os| json!({"type": os, "versions": []}))
        .collect();
    json!({
        "id": t.id, "name": t.name, "operatingSystems": systems, "version": "1",
        "createdAt": at, "updatedAt": at, "tags": {}, "_links": {},
    })
}

async fn list_types(_: Admin, q: ListQuery) -> Result<Response, ApiError> {
    let fields = Fields::base();
    let docs = CHECK_TYPES
        .iter()
        .map(|t| (check_type(t), check_type(t)))
        .collect();
    let page = q.apply(&fields, &["name"], docs)?;
    Ok(envelope::page(page, &fields))
}

async fn detail_type(_: Admin, Path(id): Path<String>) -> Result<Response, ApiError> {
    CHECK_TYPES
        .iter()
        .find(|t| t.id == id)
        .map(|t| envelope::ok(check_type(t)))
        .ok_or_else(|| ApiError::NotFound(format!("posture check type {id:?} not found")))
}

/// `GET /service-policies/{id}/posture-checks`.
async fn policy_checks(
    State(ctl): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    q: ListQuery,
) -> Result<Response, ApiError> {
    let row = entity(&ctl, Kind::ServicePolicies, &id).await?;
    let doc: ServicePolicy = row.doc()?;
    let roles = RoleSet::parse(&doc.posture_check_roles).unwrap_or_default();
    let rows = ctl.store.list_all(Kind::PostureChecks.collection()).await?;
    let checks: Vec<policy::PostureCheck> = rows
        .iter()
        .map(|r| policy::PostureCheck {
            id: r.id.clone(),
            name: r.name.clone(),
            role_attributes: r.role_attributes(),
        })
        .collect();
    let fields = Kind::PostureChecks.fields();
    let docs = rows
        .into_iter()
        .zip(&checks)
        .filter(|(_, c)| policy::selects(&roles, doc.semantic, &checks, c))
        .map(|(r, _)| (render::entity(&r), r))
        .collect();
    let page = q
        .apply(&fields, &["name"], docs)?
        .try_map_async(async |r| render::management_entity(&ctl, Kind::PostureChecks, &r).await)
        .await?;
    Ok(envelope::page(page, &fields))
}

/// `GET /identities/{id}/posture-data`.
async fn posture_data(
    State(ctl): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    entity(&ctl, Kind::Identities, &id).await?;
    let data = ctl.store.posture_data(&id).await?;
    let at = |t: i64| clock::fmt_unix(t);
    let os = data.os.as_ref().map_or_else(
        || json!({"postureCheckId": "", "timedOut": false, "lastUpdatedAt": "", "type": "", "version": "", "build": ""}),
        |r| json!({"postureCheckId": r.posture_check_id, "timedOut": false, "lastUpdatedAt": at(r.at),
            "type": r.value.os_type, "version": r.value.version, "build": r.value.build}),
    );
    let mac = data.mac.as_ref().map_or_else(
        || json!({"postureCheckId": "", "timedOut": false, "lastUpdatedAt": "", "addresses": []}),
        |r| json!({"postureCheckId": r.posture_check_id, "timedOut": false, "lastUpdatedAt": at(r.at),
            "addresses": r.value}),
    );
    let domain = data.domain.as_ref().map_or_else(
        || json!({"postureCheckId": "", "timedOut": false, "lastUpdatedAt": "", "domain": ""}),
        |r| json!({"postureCheckId": r.posture_check_id, "timedOut": false, "lastUpdatedAt": at(r.at),
            "domain": r.value}),
    );
    let processes: Vec<Value> = data
        .processes
        .iter()
        .map(|(path, r)| {
            json!({"postureCheckId": r.posture_check_id, "timedOut": false, "lastUpdatedAt": at(r.at),
                "path": path, "isRunning": r.value.is_running, "binaryHash": r.value.hash,
                "signerFingerprints": r.value.signer_fingerprints})
        })
        .collect();
    let mut sessions = serde_json::Map::new();
    for (api_session, s) in ctl.store.session_postures_of(&id).await? {
        let passed = s.mfa_passed_at;
        sessions.insert(
            api_session.clone(),
            json!({
                "mfa": {
                    "apiSessionId": api_session,
                    "passedMfa": passed.is_some(),
                    "passedAt": passed.map(at).unwrap_or_default(),
                    "passedOnWake": passed.is_some_and(|p| s.woken_at.is_none_or(|w| p >= w)),
                    "passedOnUnlock": passed.is_some_and(|p| s.unlocked_at.is_none_or(|u| p >= u)),
                },
                "endpointState": {
                    "wokenAt": s.woken_at.map(at).unwrap_or_default(),
                    "unlockedAt": s.unlocked_at.map(at).unwrap_or_default(),
                },
            }),
        );
    }
    Ok(envelope::ok(json!({
        "os": os, "mac": mac, "domain": domain, "processes": processes,
        "apiSessionPostureData": sessions,
    })))
}

/// `GET /identities/{id}/failed-service-requests`.
async fn failed_requests(
    State(ctl): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    entity(&ctl, Kind::Identities, &id).await?;
    let rows = ctl.store.failed_service_requests(&id).await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|f| {
            json!({
                "apiSessionId": f.api_session_id,
                "serviceId": f.service_id,
                "serviceName": f.service_name,
                "sessionType": f.session_type.as_str(),
                "when": clock::fmt_unix(f.at),
                "policyFailures": serde_json::from_str::<Value>(&f.policy_failures)
                    .unwrap_or_else(|_| json!([])),
            })
        })
        .collect();
    Ok(envelope::ok(Value::Array(list)))
}
