//! Management of identities' credentials: `/authenticators` and `/enrollments` (list with
//! filter and paging, get, create, update where OpenZiti allows it, refresh, delete), and
//! the identity's own lists `/identities/{id}/authenticators` and
//! `/identities/{id}/enrollments`.

use axum::extract::{Path, State};
use axum::response::Response;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::views::{AuthenticatorDetail, EnrollmentDetail, Names, fields_of, to_json};
use crate::api::endpoint::{ApiBuilder, Data, Endpoint};
use crate::api::extract::JsonBody;
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope};
use crate::auth::Admin;
use crate::clock;
use crate::domain::credentials::{self, NewEnrollment};
use crate::enroll;
use crate::error::ApiError;
use crate::model::Kind;
use crate::thirdparty_ca::enrollment::OTTCA;

/// Body of `POST /authenticators` (`authenticatorCreate`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthenticatorCreate {
    /// `updb` (certificate authenticators are created by enrollment).
    pub method: String,
    /// The identity it belongs to.
    pub identity_id: String,
    /// User name, unique.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
}

/// Body of `PUT /authenticators/{id}` (`authenticatorUpdate`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthenticatorUpdate {
    /// User name, unique.
    pub username: String,
    /// Password.
    pub password: String,
}

/// Body of `PATCH /authenticators/{id}` (`authenticatorPatch`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthenticatorPatch {
    /// User name, unique.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
}

/// Body of `POST /authenticators/{id}/request-extend` (`requestExtendAuthenticator`).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestExtend {
    /// Ask for a new key too.
    #[serde(default)]
    pub roll_keys: bool,
}

/// Body of `POST /authenticators/{id}/re-enroll` (`reEnroll`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReEnroll {
    /// Expiry of the new enrollment (RFC 3339, in the future).
    pub expires_at: String,
}

/// Body of `POST /enrollments` (`enrollmentCreate`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnrollmentCreate {
    /// `ott` or `updb`.
    pub method: String,
    /// The identity to enroll.
    pub identity_id: String,
    /// Expiry (RFC 3339); the configured lifetime when absent.
    pub expires_at: Option<String>,
    /// `updb`: the user name the password will belong to.
    #[serde(default)]
    pub username: Option<String>,
    /// `ottca`: the 3rd-party CA (id or name) whose certificate redeems it.
    #[serde(default)]
    pub ca_id: Option<String>,
}

/// Body of `POST /enrollments/{id}/refresh` (`enrollmentRefresh`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnrollmentRefresh {
    /// The new expiry (RFC 3339, in the future).
    pub expires_at: String,
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("{what} {id:?} not found"))
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::CouldNotValidate(msg.into())
}

async fn list_authenticators(
    ctl: AppState,
    q: ListQuery,
    identity_id: Option<String>,
) -> Result<Response, ApiError> {
    if let Some(id) = &identity_id {
        credentials::identity(&ctl, id).await?;
    }
    let names = Names::load(&ctl.store, Kind::Identities).await?;
    let fields = fields_of::<AuthenticatorDetail>();
    let docs = ctl
        .store
        .list_authenticators()
        .await?
        .into_iter()
        .filter(|a| identity_id.as_ref().is_none_or(|id| a.identity_id == *id))
        .map(|a| to_json(&AuthenticatorDetail::new(a, &names)).map(|v| (v.clone(), v)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(envelope::page(
        q.apply(&fields, &["createdAt"], docs)?,
        &fields,
    ))
}

async fn list_enrollments(
    ctl: AppState,
    q: ListQuery,
    identity_id: Option<String>,
) -> Result<Response, ApiError> {
    if let Some(id) = &identity_id {
        credentials::identity(&ctl, id).await?;
    }
    let names = Names::load(&ctl.store, Kind::Identities).await?;
    let fields = fields_of::<EnrollmentDetail>();
    let mut rows = Vec::new();
    for method in enroll::IDENTITY_METHODS {
        rows.extend(ctl.store.list_enrollments(method).await?);
    }
    let docs = rows
        .into_iter()
        .filter(|e| identity_id.as_ref().is_none_or(|id| e.identity_id == *id))
        .map(|e| to_json(&EnrollmentDetail::new(e, &names)).map(|v| (v.clone(), v)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(envelope::page(
        q.apply(&fields, &["createdAt"], docs)?,
        &fields,
    ))
}

async fn create_authenticator(
    ctl: AppState,
    body: AuthenticatorCreate,
) -> Result<Response, ApiError> {
    let id = credentials::create_password_authenticator(
        &ctl,
        &body.method,
        &body.identity_id,
        body.username,
        body.password,
    )
    .await?;
    Ok(envelope::created(json!({"id": id, "_links": {}})))
}

async fn update_authenticator(
    ctl: AppState,
    id: String,
    username: Option<String>,
    password: Option<String>,
) -> Result<Response, ApiError> {
    credentials::update_password_authenticator(&ctl, &id, username, password).await?;
    Ok(envelope::empty())
}

/// `POST /authenticators/{id}/request-extend {rollKeys}`.
async fn request_extend(
    ctl: AppState,
    id: String,
    body: RequestExtend,
) -> Result<Response, ApiError> {
    credentials::request_extend(&ctl, &id, body.roll_keys).await?;
    Ok(envelope::empty())
}

/// `POST /authenticators/{id}/re-enroll`: answers the new enrollment's id.
async fn re_enroll(ctl: AppState, id: String, body: ReEnroll) -> Result<Response, ApiError> {
    let expires_at = future_time(&body.expires_at)?;
    let enrollment = credentials::re_enroll(&ctl, &id, expires_at).await?;
    Ok(envelope::created(json!({"id": enrollment, "_links": {}})))
}

/// `POST /edge-routers/{id}/re-enroll` (`reEnrollEdgeRouter`).
async fn re_enroll_router(ctl: AppState, id: String) -> Result<Response, ApiError> {
    credentials::re_enroll_router(&ctl, &id).await?;
    Ok(envelope::empty())
}

async fn delete_authenticator(ctl: AppState, id: String) -> Result<Response, ApiError> {
    credentials::delete_authenticator(&ctl, &id).await?;
    Ok(envelope::empty())
}

/// `POST /enrollments`: `ott`, `updb` (with a `username`) or `ottca` (with a `caId`).
async fn create_enrollment(ctl: AppState, body: EnrollmentCreate) -> Result<Response, ApiError> {
    let what = match body.method.as_str() {
        enroll::OTT => NewEnrollment::Ott,
        enroll::UPDB => NewEnrollment::Updb {
            username: body.username.as_deref().unwrap_or_default(),
        },
        OTTCA => NewEnrollment::Ottca {
            ca: body.ca_id.as_deref().unwrap_or_default(),
        },
        other => {
            return Err(invalid(format!(
                "method {other:?}: ott, ottca and updb enrollments are supported"
            )));
        }
    };
    let expires_at = body.expires_at.as_deref().map(future_time).transpose()?;
    let id = credentials::create_enrollment(&ctl, &body.identity_id, what, expires_at).await?;
    Ok(envelope::created(json!({"id": id, "_links": {}})))
}

/// Parses an RFC 3339 time that must lie in the future; Unix seconds.
fn future_time(s: &str) -> Result<i64, ApiError> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|_| invalid(format!("expiresAt {s:?} is not an RFC 3339 time")))?;
    if t.unix_timestamp() <= clock::now_unix() {
        return Err(invalid("expiresAt must be in the future"));
    }
    Ok(t.unix_timestamp())
}

/// Adds the routes of this module.
pub fn routes(api: ApiBuilder) -> ApiBuilder {
    let auth_detail = Data::Schema(|g| g.subschema_for::<AuthenticatorDetail>());
    let enr_detail = Data::Schema(|g| g.subschema_for::<EnrollmentDetail>());
    api.add(
        Endpoint::get("/authenticators", "listAuthenticators")
            .doc("Authenticator", "Lists the identities' authenticators")
            .admin()
            .lists(auth_detail),
        |State(ctl): State<AppState>, _: Admin, q: ListQuery| list_authenticators(ctl, q, None),
    )
    .add(
        Endpoint::post("/authenticators", "createAuthenticator")
            .doc("Authenticator", "Creates a updb (password) authenticator")
            .admin()
            .request(Data::Schema(|g| g.subschema_for::<AuthenticatorCreate>()))
            .returns(201, Data::Created),
        |State(ctl): State<AppState>, _: Admin, JsonBody(b): JsonBody<AuthenticatorCreate>| {
            create_authenticator(ctl, b)
        },
    )
    .add(
        Endpoint::get("/authenticators/{id}", "detailAuthenticator")
            .doc("Authenticator", "One authenticator")
            .admin()
            .returns(200, auth_detail),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>| async move {
            let a = credentials::authenticator(&ctl, &id).await?;
            let names = Names::load(&ctl.store, Kind::Identities).await?;
            Ok::<_, ApiError>(envelope::ok(to_json(&AuthenticatorDetail::new(a, &names))?))
        },
    )
    .add(
        Endpoint::put("/authenticators/{id}", "updateAuthenticator")
            .doc(
                "Authenticator",
                "Sets a updb authenticator's username and password",
            )
            .admin()
            .request(Data::Schema(|g| g.subschema_for::<AuthenticatorUpdate>())),
        |State(ctl): State<AppState>,
         _: Admin,
         Path(id): Path<String>,
         JsonBody(b): JsonBody<AuthenticatorUpdate>| {
            update_authenticator(ctl, id, Some(b.username), Some(b.password))
        },
    )
    .add(
        Endpoint::patch("/authenticators/{id}", "patchAuthenticator")
            .doc(
                "Authenticator",
                "Changes a updb authenticator's username or password",
            )
            .admin()
            .request(Data::Schema(|g| g.subschema_for::<AuthenticatorPatch>())),
        |State(ctl): State<AppState>,
         _: Admin,
         Path(id): Path<String>,
         JsonBody(b): JsonBody<AuthenticatorPatch>| {
            update_authenticator(ctl, id, b.username, b.password)
        },
    )
    .add(
        Endpoint::delete("/authenticators/{id}", "deleteAuthenticator")
            .doc(
                "Authenticator",
                "Deletes an authenticator and the API sessions it opened",
            )
            .admin(),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>| {
            delete_authenticator(ctl, id)
        },
    )
    .add(
        Endpoint::post("/authenticators/{id}/request-extend", "requestExtendAuthenticator")
            .doc(
                "Authenticator",
                "Asks the identity to extend its certificate (shown in its API sessions)",
            )
            .admin()
            .request(Data::Schema(|g| g.subschema_for::<RequestExtend>())),
        |State(ctl): State<AppState>,
         _: Admin,
         Path(id): Path<String>,
         JsonBody(b): JsonBody<RequestExtend>| request_extend(ctl, id, b),
    )
    .add(
        Endpoint::post("/edge-routers/{id}/re-enroll", "reEnrollEdgeRouter")
            .doc(
                "Edge Router",
                "Replaces the router's certificate credential by a new erott enrollment and disconnects it",
            )
            .admin(),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>| re_enroll_router(ctl, id),
    )
    .add(
        Endpoint::post("/authenticators/{id}/re-enroll", "reEnrollAuthenticator")
            .doc(
                "Authenticator",
                "Replaces an authenticator by a new enrollment (ott for a certificate, updb keeping the user name)",
            )
            .admin()
            .request(Data::Schema(|g| g.subschema_for::<ReEnroll>()))
            .returns(201, Data::Created),
        |State(ctl): State<AppState>,
         _: Admin,
         Path(id): Path<String>,
         JsonBody(b): JsonBody<ReEnroll>| re_enroll(ctl, id, b),
    )
    .add(
        Endpoint::get(
            "/identities/{id}/authenticators",
            "listIdentityAuthenticators",
        )
        .doc("Identities", "The identity's authenticators")
        .admin()
        .lists(auth_detail),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>, q: ListQuery| {
            list_authenticators(ctl, q, Some(id))
        },
    )
    .add(
        Endpoint::get("/enrollments", "listEnrollments")
            .doc("Enrollment", "Lists pending enrollments")
            .admin()
            .lists(enr_detail),
        |State(ctl): State<AppState>, _: Admin, q: ListQuery| list_enrollments(ctl, q, None),
    )
    .add(
        Endpoint::post("/enrollments", "createEnrollment")
            .doc(
                "Enrollment",
                "Creates a one-time-token enrollment for an identity",
            )
            .admin()
            .request(Data::Schema(|g| g.subschema_for::<EnrollmentCreate>()))
            .returns(201, Data::Created),
        |State(ctl): State<AppState>, _: Admin, JsonBody(b): JsonBody<EnrollmentCreate>| {
            create_enrollment(ctl, b)
        },
    )
    .add(
        Endpoint::get("/enrollments/{id}", "detailEnrollment")
            .doc("Enrollment", "One pending enrollment")
            .admin()
            .returns(200, enr_detail),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>| async move {
            let e = enroll::pending_enrollment(&ctl, &id)
                .await?
                .ok_or_else(|| not_found("enrollment", &id))?;
            let names = Names::load(&ctl.store, Kind::Identities).await?;
            Ok::<_, ApiError>(envelope::ok(to_json(&EnrollmentDetail::new(e, &names))?))
        },
    )
    .add(
        Endpoint::delete("/enrollments/{id}", "deleteEnrollment")
            .doc("Enrollment", "Deletes a pending enrollment")
            .admin(),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>| async move {
            credentials::delete_enrollment(&ctl, &id).await?;
            Ok::<_, ApiError>(envelope::empty())
        },
    )
    .add(
        Endpoint::post("/enrollments/{id}/refresh", "refreshEnrollment")
            .doc(
                "Enrollment",
                "Issues a new token and JWT with a new expiry; the old token stops working",
            )
            .admin()
            .request(Data::Schema(|g| g.subschema_for::<EnrollmentRefresh>()))
            .returns(200, Data::Created),
        |State(ctl): State<AppState>,
         _: Admin,
         Path(id): Path<String>,
         JsonBody(b): JsonBody<EnrollmentRefresh>| async move {
            let exp = future_time(&b.expires_at)?;
            enroll::refresh_ott(&ctl, &id, exp)
                .await?
                .ok_or_else(|| not_found("enrollment", &id))?;
            Ok::<_, ApiError>(envelope::ok(json!({"id": id, "_links": {}})))
        },
    )
    .add(
        Endpoint::get("/identities/{id}/enrollments", "listIdentityEnrollments")
            .doc("Identities", "The identity's pending enrollments")
            .admin()
            .lists(enr_detail),
        |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>, q: ListQuery| {
            list_enrollments(ctl, q, Some(id))
        },
    )
}
