//! Management of `/api-sessions` and `/sessions`: list with filter and paging, get, and
//! delete (which the routers learn over the control channel).

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::Value;

use super::views::{Names, SessionDetail, fields_of, to_json};
use crate::api::endpoint::{ApiBuilder, Data, Endpoint};
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope, render};
use crate::auth::Admin;
use crate::domain::sessions;
use crate::error::ApiError;
use crate::filter::{FieldType, Fields};
use crate::model::{Identity, Kind};

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("{what} {id:?} not found"))
}

/// The fields of an API session detail ([`render::api_session`]).
fn api_session_fields() -> Fields {
    Fields::default()
        .with("id", FieldType::String)
        .with("token", FieldType::String)
        .with("identityId", FieldType::String)
        .with("identity", FieldType::Object)
        .with("authenticatorId", FieldType::String)
        .with("ipAddress", FieldType::String)
        .with("configTypes", FieldType::Set)
        .with("createdAt", FieldType::DateTime)
        .with("updatedAt", FieldType::DateTime)
        .with("lastActivityAt", FieldType::DateTime)
        .with("expiresAt", FieldType::DateTime)
}

async fn api_session_views(ctl: &AppState, id: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let identities = ctl.store.entities::<Identity>().await?;
    let policies = crate::auth::policy::Policies::load(&ctl.store).await?;
    let mut out = Vec::new();
    for s in ctl.store.all_api_sessions().await? {
        if id.is_some_and(|id| s.id != id) {
            continue;
        }
        let Some(identity) = identities.iter().find(|i| i.id == s.identity_id) else {
            continue;
        };
        // The EXT-JWT query is per request: an administrator's listing shows the TOTP one.
        let open = crate::auth::policy::OpenQueries {
            totp: crate::auth::policy::totp_pending(&s, policies.of(&identity.doc)),
            ext_jwt_signer: None,
        };
        let cert = crate::auth::cert_flags(ctl, &s).await?;
        out.push(render::api_session(ctl, &s, identity, &open, cert).await);
    }
    Ok(out)
}

async fn session_views(ctl: &AppState, id: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let services = Names::load(&ctl.store, Kind::Services).await?;
    let identities = Names::load(&ctl.store, Kind::Identities).await?;
    let mut out = Vec::new();
    for s in ctl.store.sessions_where_api_session(None).await? {
        if id.is_some_and(|id| s.id != id) {
            continue;
        }
        let routers = render::session_routers(ctl, &s.identity_id, &s.service_id).await?;
        out.push(to_json(&SessionDetail::new(
            s,
            &services,
            &identities,
            routers,
        ))?);
    }
    Ok(out)
}

fn one(mut items: Vec<Value>, what: &str, id: &str) -> Result<Response, ApiError> {
    items
        .pop()
        .map(envelope::ok)
        .ok_or_else(|| not_found(what, id))
}

fn paged(q: &ListQuery, fields: &Fields, items: Vec<Value>) -> Result<Response, ApiError> {
    let docs = items.into_iter().map(|v| (v.clone(), v)).collect();
    Ok(envelope::page(
        q.apply(fields, &["createdAt"], docs)?,
        fields,
    ))
}

/// Adds the routes of this module.
pub fn routes(api: ApiBuilder) -> ApiBuilder {
    let ses_detail = Data::Schema(|g| g.subschema_for::<SessionDetail>());
    let api_ses = Data::Object("API session detail.");
    api.add(
        Endpoint::get("/api-sessions", "listAPISessions")
            .doc("API Session", "Lists API sessions")
            .admin()
            .lists(api_ses),
        |State(ctl): State<AppState>, _: Admin, q: ListQuery| async move {
            paged(
                &q,
                &api_session_fields(),
                api_session_views(&ctl, None).await?,
            )
        },
    )
    .add(
        Endpoint::get("/api-sessions/{id}", "detailAPISessions")
            .doc("API Session", "One API session")
            .admin()
            .returns(200, api_ses),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>| async move {
            one(
                api_session_views(&ctl, Some(&id)).await?,
                "API session",
                &id,
            )
        },
    )
    .add(
        Endpoint::delete("/api-sessions/{id}", "deleteAPISessions")
            .doc("API Session", "Ends an API session and its sessions")
            .admin(),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>| async move {
            sessions::end_api_session_by_admin(&ctl, &id).await?;
            Ok::<_, ApiError>(envelope::empty())
        },
    )
    .add(
        Endpoint::get("/sessions", "listSessions")
            .doc("Session", "Lists sessions")
            .admin()
            .lists(ses_detail),
        |State(ctl): State<AppState>, _: Admin, q: ListQuery| async move {
            paged(
                &q,
                &fields_of::<SessionDetail>(),
                session_views(&ctl, None).await?,
            )
        },
    )
    .add(
        Endpoint::get("/sessions/{id}", "detailSession")
            .doc("Session", "One session")
            .admin()
            .returns(200, ses_detail),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>| async move {
            one(session_views(&ctl, Some(&id)).await?, "session", &id)
        },
    )
    .add(
        Endpoint::get("/sessions/{id}/route-path", "detailSessionRoutePath")
            .doc(
                "Session",
                "The routers (ids, ingress first) of the session's circuit routed across routers; `[]` when it has none",
            )
            .admin()
            .returns(200, Data::Object("`{routePath: [router id, …]}`.")),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>| async move {
            if ctl.store.session_by_id(&id).await?.is_none() {
                return Err(not_found("session", &id));
            }
            let route_path = ctl.mesh.session_path(&id).unwrap_or_default();
            Ok(envelope::ok(serde_json::json!({ "routePath": route_path })))
        },
    )
    .add(
        Endpoint::delete("/sessions/{id}", "deleteSession")
            .doc("Session", "Ends a session")
            .admin(),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>| async move {
            sessions::end_by_admin(&ctl, &id).await?;
            Ok::<_, ApiError>(envelope::empty())
        },
    )
}
