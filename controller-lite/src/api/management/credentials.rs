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
use crate::enroll;
use crate::error::ApiError;
use crate::model::Kind;
use crate::store::AuthenticatorRow;
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

/// The identity `id`, or 404.
async fn identity(ctl: &AppState, id: &str) -> Result<(), ApiError> {
    ctl.store
        .get_entity(Kind::Identities.collection(), id)
        .await?
        .map(drop)
        .ok_or_else(|| not_found("identity", id))
}

/// Checks a new password against the rules of the policy identity `identity_id`
/// follows.
async fn check_password_policy(
    ctl: &AppState,
    identity_id: &str,
    password: &str,
) -> Result<(), ApiError> {
    let identity = ctl
        .store
        .get_entity(Kind::Identities.collection(), identity_id)
        .await?
        .ok_or_else(|| not_found("identity", identity_id))?;
    crate::auth::policy::check_new_password(&ctl.store, &identity, password).await
}

/// Checks the size and characters of a user name and password (400 when wrong).
pub(crate) fn check_credentials(username: &str, password: &str) -> Result<(), ApiError> {
    if username.trim().is_empty() || username.len() > 255 {
        return Err(invalid("username must be 1 to 255 characters"));
    }
    crate::model::check_text("username", username)?;
    if password.is_empty() || password.len() > 1024 {
        return Err(invalid("password must be 1 to 1024 characters"));
    }
    Ok(())
}

/// Fails (409) when `username` belongs to an authenticator other than `except`.
pub(crate) async fn username_free(
    ctl: &crate::controller::Controller,
    username: &str,
    except: Option<&str>,
) -> Result<(), ApiError> {
    match ctl.store.authenticator_by_username(username).await? {
        Some(a) if Some(a.id.as_str()) != except => Err(ApiError::Conflict(format!(
            "username {username:?} is already in use"
        ))),
        _ => Ok(()),
    }
}

async fn list_authenticators(
    ctl: AppState,
    q: ListQuery,
    identity_id: Option<String>,
) -> Result<Response, ApiError> {
    if let Some(id) = &identity_id {
        identity(&ctl, id).await?;
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

async fn authenticator(ctl: &AppState, id: &str) -> Result<AuthenticatorRow, ApiError> {
    ctl.store
        .authenticator_by_id(id)
        .await?
        .ok_or_else(|| not_found("authenticator", id))
}

async fn create_authenticator(
    ctl: AppState,
    body: AuthenticatorCreate,
) -> Result<Response, ApiError> {
    if body.method != "updb" {
        return Err(invalid(format!(
            "method {:?}: only updb authenticators can be created; certificate authenticators come from enrollment",
            body.method
        )));
    }
    let (Some(username), Some(password)) = (body.username, body.password) else {
        return Err(invalid("updb authenticators need username and password"));
    };
    check_credentials(&username, &password)?;
    identity(&ctl, &body.identity_id).await?;
    check_password_policy(&ctl, &body.identity_id, &password).await?;
    // Hash before the write transaction (it must not wait on slow work); check again
    // inside it, where no other write can land.
    let password_hash = crate::auth::hash_password_gated(&ctl, password).await?;
    let mut tx = ctl.store.begin_write().await?;
    identity(&ctl, &body.identity_id).await?;
    if ctl
        .store
        .authenticators_of(&body.identity_id)
        .await?
        .iter()
        .any(|a| a.method == "updb")
    {
        return Err(ApiError::MaxAuthenticators(format!(
            "identity {:?} already has a updb authenticator",
            body.identity_id
        )));
    }
    username_free(&ctl, &username, None).await?;
    let now = clock::now_string();
    let row = AuthenticatorRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        identity_id: body.identity_id,
        method: "updb".into(),
        fingerprint: None,
        cert_pem: None,
        username: Some(username),
        password_hash: Some(password_hash),
        created_at: now.clone(),
        updated_at: now,
    };
    tx.insert_authenticator(&row).await?;
    tx.commit().await?;
    Ok(envelope::created(json!({"id": row.id, "_links": {}})))
}

async fn update_authenticator(
    ctl: AppState,
    id: String,
    username: Option<String>,
    password: Option<String>,
) -> Result<Response, ApiError> {
    let a = authenticator(&ctl, &id).await?;
    if a.method != "updb" {
        return Err(ApiError::CanNotUpdateAuthenticator(format!(
            "authenticator {id:?} is a {} authenticator; only updb authenticators can be updated",
            a.method
        )));
    }
    let username = username.or(a.username).unwrap_or_default();
    check_credentials(&username, password.as_deref().unwrap_or("unchanged"))?;
    if let Some(p) = &password {
        check_password_policy(&ctl, &a.identity_id, p).await?;
    }
    username_free(&ctl, &username, Some(&id)).await?;
    let password_hash = match password {
        Some(p) => crate::auth::hash_password_gated(&ctl, p).await?,
        None => a.password_hash.unwrap_or_default(),
    };
    let mut tx = ctl.store.begin_write().await?;
    if !tx
        .update_password_authenticator(&id, &username, &password_hash, &clock::now_string())
        .await?
    {
        return Err(not_found("authenticator", &id));
    }
    tx.commit().await?;
    Ok(envelope::empty())
}

/// `POST /authenticators/{id}/request-extend {rollKeys}`: the identity's API sessions
/// then show `isCertExtendRequested` (and `isCertKeyRollRequested`), and its next
/// certificate login answers the `ziti-authenticator-extend-requested` header.
async fn request_extend(
    ctl: AppState,
    id: String,
    body: RequestExtend,
) -> Result<Response, ApiError> {
    let a = authenticator(&ctl, &id).await?;
    if a.method != "cert" || a.cert_pem.is_none() {
        return Err(ApiError::CanNotUpdateAuthenticator(format!(
            "authenticator {id:?} is not a certificate this network issued"
        )));
    }
    let mut tx = ctl.store.begin_write().await?;
    tx.request_extension(&id, body.roll_keys, &clock::now_string())
        .await?;
    tx.commit().await?;
    Ok(envelope::empty())
}

/// `POST /authenticators/{id}/re-enroll`: in one transaction, a new enrollment (`ott`
/// for a certificate authenticator, `updb` with the same user name for a password) and
/// the authenticator deleted with the API sessions it opened (openziti/ziti
/// `controller/model/authenticator_manager.go` `ReEnroll`). Answers the enrollment id.
async fn re_enroll(ctl: AppState, id: String, body: ReEnroll) -> Result<Response, ApiError> {
    let expires_at = future_time(&body.expires_at)?;
    let a = authenticator(&ctl, &id).await?;
    if ctl.store.meta_get("admin_identity_id").await?.as_deref() == Some(a.identity_id.as_str())
        && a.method == "updb"
    {
        return Err(ApiError::EntityCanNotBeDeleted(
            "the default admin's password authenticator cannot be re-enrolled".into(),
        ));
    }
    let mut tx = ctl.store.begin_write().await?;
    if !tx.delete_authenticator(&id).await? {
        return Err(not_found("authenticator", &id));
    }
    let e = match (a.method.as_str(), a.username.as_deref()) {
        ("updb", Some(username)) => {
            enroll::create_updb(&ctl, &mut tx, &a.identity_id, username, Some(expires_at)).await?
        }
        ("cert", _) => {
            enroll::create_ott_expiring(&ctl, &mut tx, &a.identity_id, Some(expires_at)).await?
        }
        (other, _) => {
            return Err(ApiError::CanNotUpdateAuthenticator(format!(
                "a {other} authenticator cannot be re-enrolled"
            )));
        }
    };
    tx.commit().await?;
    ctl.notify_routers().await;
    tracing::info!(authenticator = %id, enrollment = %e.id, "authenticator re-enrolled");
    Ok(envelope::created(json!({"id": e.id, "_links": {}})))
}

/// `POST /edge-routers/{id}/re-enroll` (`reEnrollEdgeRouter`): in one transaction,
/// the router's certificate credential and pending enrollment are removed and a new
/// `erott` enrollment is made (its JWT in the router's detail); the router's control
/// connections close at once, and it cannot connect again until it enrolls with the
/// new token (openziti/ziti `controller/model/edge_router_manager.go` `ReEnroll`). The
/// way to give a router new certificate names.
async fn re_enroll_router(ctl: AppState, id: String) -> Result<Response, ApiError> {
    let router = ctl
        .store
        .get_entity(Kind::EdgeRouters.collection(), &id)
        .await?
        .ok_or_else(|| not_found("edge-router", &id))?;
    let mut tx = ctl.store.begin_write().await?;
    tx.delete_identity_credentials(&router.id).await?;
    let e = enroll::create_erott(&ctl, &mut tx, &router.id).await?;
    tx.commit().await?;
    ctl.routers.kick(&router.id);
    ctl.notify_routers().await;
    tracing::warn!(event = "router_re_enrolled", router = %router.name, id = %router.id,
        enrollment = %e.id, "edge router re-enrolled: its certificate no longer connects");
    Ok(envelope::empty())
}

async fn delete_authenticator(ctl: AppState, id: String) -> Result<Response, ApiError> {
    let a = authenticator(&ctl, &id).await?;
    if a.method == "updb"
        && ctl.store.meta_get("admin_identity_id").await?.as_deref() == Some(a.identity_id.as_str())
    {
        return Err(ApiError::EntityCanNotBeDeleted(
            "the default admin's password authenticator cannot be deleted".into(),
        ));
    }
    let mut tx = ctl.store.begin_write().await?;
    if !tx.delete_authenticator(&id).await? {
        return Err(not_found("authenticator", &id));
    }
    tx.commit().await?;
    ctl.notify_routers().await;
    Ok(envelope::empty())
}

async fn list_enrollments(
    ctl: AppState,
    q: ListQuery,
    identity_id: Option<String>,
) -> Result<Response, ApiError> {
    if let Some(id) = &identity_id {
        identity(&ctl, id).await?;
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

async fn create_enrollment(ctl: AppState, body: EnrollmentCreate) -> Result<Response, ApiError> {
    if body.method != enroll::OTT && body.method != enroll::UPDB && body.method != OTTCA {
        return Err(invalid(format!(
            "method {:?}: ott, ottca and updb enrollments are supported",
            body.method
        )));
    }
    if body.method == enroll::UPDB {
        return create_updb_enrollment(ctl, body).await;
    }
    if body.method == OTTCA {
        return create_ottca_enrollment(ctl, body).await;
    }
    identity(&ctl, &body.identity_id).await?;
    let expires_at = body.expires_at.as_deref().map(future_time).transpose()?;
    if ctl
        .store
        .authenticators_of(&body.identity_id)
        .await?
        .iter()
        .any(|a| a.method == "cert")
    {
        return Err(invalid(format!(
            "identity {:?} already has a certificate authenticator; delete it to enroll again",
            body.identity_id
        )));
    }
    if !ctl
        .store
        .pending_enrollments(&body.identity_id)
        .await?
        .is_empty()
    {
        return Err(invalid(format!(
            "identity {:?} already has a pending enrollment",
            body.identity_id
        )));
    }
    let mut tx = ctl.store.begin_write().await?;
    let e = enroll::create_ott_expiring(&ctl, &mut tx, &body.identity_id, expires_at).await?;
    tx.commit().await?;
    Ok(envelope::created(json!({"id": e.id, "_links": {}})))
}

/// `POST /enrollments` with `method: updb` and a `username`.
async fn create_updb_enrollment(
    ctl: AppState,
    body: EnrollmentCreate,
) -> Result<Response, ApiError> {
    let username = body
        .username
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| invalid("updb enrollments need a username"))?;
    identity(&ctl, &body.identity_id).await?;
    let expires_at = body.expires_at.as_deref().map(future_time).transpose()?;
    let mut tx = ctl.store.begin_write().await?;
    if tx
        .has_authenticator_method(&body.identity_id, "updb")
        .await?
        || ctl
            .store
            .pending_enrollments(&body.identity_id)
            .await?
            .iter()
            .any(|e| e.method == enroll::UPDB)
    {
        return Err(ApiError::Conflict(format!(
            "identity {:?} already has a password or a pending updb enrollment",
            body.identity_id
        )));
    }
    let e = enroll::create_updb(&ctl, &mut tx, &body.identity_id, username, expires_at).await?;
    tx.commit().await?;
    Ok(envelope::created(json!({"id": e.id, "_links": {}})))
}

/// `POST /enrollments` with `method: ottca` and a `caId`: 409 `ENROLLMENT_EXISTS` when
/// the identity has an `ottca` enrollment already, as OpenZiti answers.
async fn create_ottca_enrollment(
    ctl: AppState,
    body: EnrollmentCreate,
) -> Result<Response, ApiError> {
    use crate::thirdparty_ca::CaError;
    use crate::thirdparty_ca::enrollment::create_ottca;
    let ca = body
        .ca_id
        .as_deref()
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| invalid("ottca enrollments need a caId"))?;
    identity(&ctl, &body.identity_id).await?;
    let expires_at = body.expires_at.as_deref().map(future_time).transpose()?;
    let mut tx = ctl.store.begin_write().await?;
    if tx
        .pending_enrollments_in(&body.identity_id)
        .await?
        .iter()
        .any(|e| e.method == OTTCA)
    {
        return Err(ApiError::Ca(CaError::EnrollmentExists(format!(
            "identity {:?} already has an ottca enrollment",
            body.identity_id
        ))));
    }
    let e = create_ottca(&ctl, &mut tx, &body.identity_id, ca, expires_at).await?;
    tx.commit().await?;
    Ok(envelope::created(json!({"id": e.id, "_links": {}})))
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
            let a = authenticator(&ctl, &id).await?;
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
            let mut tx = ctl.store.begin_write().await?;
            let mut deleted = false;
            for method in enroll::IDENTITY_METHODS {
                deleted = deleted || tx.delete_enrollment(method, &id).await?;
            }
            if !deleted {
                return Err(not_found("enrollment", &id));
            }
            tx.commit().await?;
            Ok(envelope::empty())
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
