//! The caller's own authenticators, served by both APIs (openziti/edge-api
//! `source/shared/current-identity-authenticators.yml`): list and read them, change
//! one's own user name or password given the current password, and extend one's
//! certificate (`extend`, then `extend-verify`). Another identity's authenticator is
//! "not found".

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::endpoint::{ApiBuilder, Data, Endpoint};
use crate::api::extract::JsonBody;
use crate::api::list::ListQuery;
use crate::api::management::views::{AuthenticatorDetail, Names, fields_of, to_json};
use crate::api::{AppState, envelope};
use crate::auth::Caller;
use crate::domain::own_account;
use crate::error::ApiError;
use crate::model::Kind;
use crate::server::ConnInfo;

/// Body of `PUT /current-identity/authenticators/{id}` (`authenticatorUpdateWithCurrent`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OwnAuthenticatorUpdate {
    /// New user name.
    pub username: String,
    /// New password.
    pub password: String,
    /// The password now.
    pub current_password: String,
    /// Tags (accepted, not stored).
    #[serde(default)]
    pub tags: Option<Map<String, Value>>,
}

/// Body of `PATCH /current-identity/authenticators/{id}` (`authenticatorPatchWithCurrent`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OwnAuthenticatorPatch {
    /// New user name.
    #[serde(default)]
    pub username: Option<String>,
    /// New password.
    #[serde(default)]
    pub password: Option<String>,
    /// The password now.
    pub current_password: String,
    /// Tags (accepted, not stored).
    #[serde(default)]
    pub tags: Option<Map<String, Value>>,
}

/// Body of `POST /current-identity/authenticators/{id}/extend` (`identityExtendEnrollmentRequest`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtendRequest {
    /// A PEM CSR; only its public key is used (the same key, or a new one to roll keys).
    pub client_cert_csr: String,
}

/// Body of `POST /current-identity/authenticators/{id}/extend-verify`
/// (`identityExtendValidateEnrollmentRequest`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtendVerify {
    /// The certificate `extend` issued (PEM), proving the client received it.
    pub client_cert: String,
}

/// Adds the routes to `api`.
pub fn routes(api: ApiBuilder) -> ApiBuilder {
    let tag = "Current Identity";
    let detail_schema = Data::Schema(|g| g.subschema_for::<AuthenticatorDetail>());
    api.add(
        Endpoint::post(
            "/current-identity/authenticators/{id}/extend",
            "extendCurrentIdentityAuthenticator",
        )
        .doc(
            tag,
            "Issues a new certificate for the caller's certificate authenticator (over TLS with the current certificate)",
        )
        .session()
        .request(Data::Schema(|g| g.subschema_for::<ExtendRequest>()))
        .returns(200, Data::Object("`{clientCert, ca}`, PEM.")),
        extend,
    )
    .add(
        Endpoint::post(
            "/current-identity/authenticators/{id}/extend-verify",
            "extendVerifyCurrentIdentityAuthenticator",
        )
        .doc(
            tag,
            "Makes the certificate `extend` issued the authenticator's; the old one stops working",
        )
        .session()
        .request(Data::Schema(|g| g.subschema_for::<ExtendVerify>())),
        extend_verify,
    )
    .add(
        Endpoint::get(
            "/current-identity/authenticators",
            "listCurrentIdentityAuthenticators",
        )
        .doc(tag, "The caller's authenticators")
        .session()
        .lists(detail_schema),
        list,
    )
    .add(
        Endpoint::get(
            "/current-identity/authenticators/{id}",
            "detailCurrentIdentityAuthenticator",
        )
        .doc(tag, "One of the caller's authenticators")
        .session()
        .returns(200, detail_schema),
        detail,
    )
    .add(
        Endpoint::put(
            "/current-identity/authenticators/{id}",
            "updateCurrentIdentityAuthenticator",
        )
        .doc(
            tag,
            "Changes the caller's user name and password (given the current password)",
        )
        .session()
        .request(Data::Schema(|g| {
            g.subschema_for::<OwnAuthenticatorUpdate>()
        })),
        update,
    )
    .add(
        Endpoint::patch(
            "/current-identity/authenticators/{id}",
            "patchCurrentIdentityAuthenticator",
        )
        .doc(
            tag,
            "Changes the caller's user name or password (given the current password)",
        )
        .session()
        .request(Data::Schema(|g| g.subschema_for::<OwnAuthenticatorPatch>())),
        patch,
    )
}

/// `POST /current-identity/authenticators/{id}/extend {clientCertCsr}`: the caller
/// must present, in this TLS connection, the certificate the authenticator holds (any
/// validity: an expired one may be extended when its policy allows the login). The new
/// certificate waits for `extend-verify`; until then the old one still works.
async fn extend(
    State(ctl): State<AppState>,
    caller: Caller,
    Extension(conn): Extension<ConnInfo>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ExtendRequest>,
) -> Result<Response, ApiError> {
    let leaf = conn.certs.first().map(|c| c.as_ref());
    let pem = own_account::extend_cert(&ctl, &caller, leaf, &id, &body.client_cert_csr).await?;
    Ok(envelope::ok(json!({
        "clientCert": pem,
        "ca": ctl.pki.ca_bundle_pem(),
    })))
}

/// `POST /current-identity/authenticators/{id}/extend-verify {clientCert}`.
async fn extend_verify(
    State(ctl): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ExtendVerify>,
) -> Result<Response, ApiError> {
    own_account::verify_extension(&ctl, &caller, &id, &body.client_cert).await?;
    Ok(envelope::empty())
}

/// `GET /current-identity/authenticators`.
async fn list(
    State(ctl): State<AppState>,
    caller: Caller,
    q: ListQuery,
) -> Result<Response, ApiError> {
    let names = Names::load(&ctl.store, Kind::Identities).await?;
    let fields = fields_of::<AuthenticatorDetail>();
    let docs = ctl
        .store
        .authenticators_of(&caller.identity.id)
        .await?
        .into_iter()
        .map(|a| to_json(&AuthenticatorDetail::new(a, &names)).map(|v| (v.clone(), v)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(envelope::page(
        q.apply(&fields, &["createdAt"], docs)?,
        &fields,
    ))
}

/// `GET /current-identity/authenticators/{id}`.
async fn detail(
    State(ctl): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let a = own_account::own_authenticator(&ctl, &caller, &id).await?;
    let names = Names::load(&ctl.store, Kind::Identities).await?;
    Ok(envelope::ok(to_json(&AuthenticatorDetail::new(a, &names))?))
}

async fn update(
    State(ctl): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<OwnAuthenticatorUpdate>,
) -> Result<Response, ApiError> {
    change(
        ctl,
        caller,
        id,
        Some(body.username),
        Some(body.password),
        body.current_password,
    )
    .await
}

async fn patch(
    State(ctl): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<OwnAuthenticatorPatch>,
) -> Result<Response, ApiError> {
    change(
        ctl,
        caller,
        id,
        body.username,
        body.password,
        body.current_password,
    )
    .await
}

/// Changes user name and/or password of the caller's `updb` authenticator `id`
/// ([`own_account::change_password`]).
async fn change(
    ctl: AppState,
    caller: Caller,
    id: String,
    username: Option<String>,
    password: Option<String>,
    current: String,
) -> Result<Response, ApiError> {
    own_account::change_password(&ctl, &caller, &id, username, password, current).await?;
    Ok(envelope::empty())
}
