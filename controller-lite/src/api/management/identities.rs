//! Identity operations beyond CRUD (openziti/edge-api `source/management/identities.yml`,
//! `identity-types.yml`): disable for a while or until enabled, enable, an
//! administrator's reset of an identity's MFA, and the identity types.

use axum::extract::{Path, State};
use axum::response::Response;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::endpoint::{ApiBuilder, Data, Endpoint};
use crate::api::extract::JsonBody;
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope};
use crate::auth::Admin;
use crate::clock;
use crate::domain::identities;
use crate::error::ApiError;
use crate::filter::Fields;

/// Body of `POST /identities/{id}/disable` (`disableParams`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DisableParams {
    /// Minutes the identity stays disabled; 0: until enabled.
    pub duration_minutes: i64,
}

/// The identity types OpenZiti stores (openziti/ziti `controller/db/migration_initialize.go`);
/// `User`, `Device` and `Service` given at create are kept as `Default`.
pub const IDENTITY_TYPES: [&str; 2] = ["Default", "Router"];

/// Adds the routes to `api`.
pub fn routes(api: ApiBuilder) -> ApiBuilder {
    api.add(
        Endpoint::post("/identities/{id}/disable", "disableIdentity")
            .doc(
                "Identities",
                "Disables an identity for `durationMinutes` (0: until enabled) and ends its API sessions",
            )
            .admin()
            .request(Data::Schema(|g| g.subschema_for::<DisableParams>())),
        disable,
    )
    .add(
        Endpoint::post("/identities/{id}/enable", "enableIdentity")
            .doc("Identities", "Enables a disabled or locked-out identity")
            .admin(),
        enable,
    )
    .add(
        Endpoint::delete("/identities/{id}/mfa", "removeIdentityMfa")
            .doc("Identities", "Removes an identity's TOTP enrollment")
            .admin(),
        remove_mfa,
    )
    .add(
        Endpoint::get("/identity-types", "listIdentityTypes")
            .doc("Identity", "Lists the identity types")
            .admin()
            .lists(Data::Object("Identity type: `id`, `name`.")),
        list_types,
    )
    .add(
        Endpoint::get("/identity-types/{id}", "detailIdentityType")
            .doc("Identity", "One identity type")
            .admin()
            .returns(200, Data::Object("Identity type: `id`, `name`.")),
        detail_type,
    )
}

/// `POST /identities/{id}/disable {durationMinutes}`.
async fn disable(
    State(ctl): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    JsonBody(p): JsonBody<DisableParams>,
) -> Result<Response, ApiError> {
    identities::disable(&ctl, &id, p.duration_minutes).await?;
    Ok(envelope::empty())
}

/// `POST /identities/{id}/enable`.
async fn enable(
    State(ctl): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    identities::enable(&ctl, &id).await?;
    Ok(envelope::empty())
}

/// `DELETE /identities/{id}/mfa`: removes the enrollment, verified or not.
async fn remove_mfa(
    State(ctl): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    identities::remove_mfa(&ctl, &id).await?;
    Ok(envelope::empty())
}

fn identity_type(name: &str) -> Value {
    // Stored with fixed timestamps in OpenZiti; these types never change here either.
    let at = clock::fmt_unix(0);
    json!({"id": name, "name": name, "createdAt": at, "updatedAt": at, "tags": {}, "_links": {}})
}

/// `GET /identity-types` (filter, sort and paging as every list).
async fn list_types(_: Admin, q: ListQuery) -> Result<Response, ApiError> {
    let fields = Fields::base();
    let docs = IDENTITY_TYPES
        .iter()
        .map(|t| (identity_type(t), identity_type(t)))
        .collect();
    let page = q.apply(&fields, &["name"], docs)?;
    Ok(envelope::page(page, &fields))
}

/// `GET /identity-types/{id}`.
async fn detail_type(_: Admin, Path(id): Path<String>) -> Result<Response, ApiError> {
    IDENTITY_TYPES
        .iter()
        .find(|t| t.eq_ignore_ascii_case(&id))
        .map(|t| envelope::ok(identity_type(t)))
        .ok_or_else(|| ApiError::NotFound(format!("identity type {id:?} not found")))
}
