//! API session certificates (openziti/edge-api
//! `source/client/current-api-session-certificates.yml`): a short-lived client
//! certificate for the caller's own API session, which routers accept on an edge
//! connection of that API session only. Identities that logged in with a password or an
//! external JWT have no certificate of their own; this is how they reach routers.
//!
//! Every route is scoped to the caller's API session: another session's certificate
//! is "not found" (OpenZiti once listed everyone's: GHSA-6v5r-p2wr-q492).

use axum::extract::{Path, State};
use axum::response::Response;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::endpoint::{ApiBuilder, Data, Endpoint};
use crate::api::extract::JsonBody;
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope};
use crate::auth::Caller;
use crate::clock;
use crate::domain::own_account;
use crate::error::ApiError;
use crate::filter::{FieldType, Fields};
use crate::store::ApiSessionCertRow;

pub use crate::domain::own_account::{LIFETIME_SECS, MAX_PER_API_SESSION};

/// `{csr}` (`currentApiSessionCertificateCreate`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateCreate {
    /// A PEM certificate signing request; only its public key is used.
    pub csr: String,
}

const DETAIL: Data = Data::Object(
    "`currentApiSessionCertificateDetail`: `subject`, `fingerprint`, `validFrom`, `validTo`, `certificate`.",
);

/// Adds the routes to `api` (client API).
pub fn routes(api: ApiBuilder) -> ApiBuilder {
    let tag = "Current API Session";
    api.add(
        Endpoint::get(
            "/current-api-session/certificates",
            "listCurrentApiSessionCertificates",
        )
        .doc(tag, "The caller's API session certificates")
        .session()
        .lists(DETAIL),
        list,
    )
    .add(
        Endpoint::post(
            "/current-api-session/certificates",
            "createCurrentApiSessionCertificate",
        )
        .doc(
            tag,
            "Signs a CSR into a 12-hour certificate bound to the caller's API session",
        )
        .session()
        .request(Data::Schema(|g| g.subschema_for::<CertificateCreate>()))
        .returns(
            201,
            Data::Object(
                "`{id, _links, certificate, cas}`: the certificate and the CA bundle, PEM.",
            ),
        ),
        create,
    )
    .add(
        Endpoint::get(
            "/current-api-session/certificates/{id}",
            "detailCurrentApiSessionCertificate",
        )
        .doc(tag, "One of the caller's API session certificates")
        .session()
        .returns(200, DETAIL),
        detail,
    )
    .add(
        Endpoint::delete(
            "/current-api-session/certificates/{id}",
            "deleteCurrentApiSessionCertificate",
        )
        .doc(tag, "Deletes one of the caller's API session certificates")
        .session(),
        delete,
    )
}

fn render(c: &ApiSessionCertRow) -> Value {
    json!({
        "id": c.id,
        "subject": c.subject,
        "fingerprint": c.fingerprint,
        "validFrom": clock::fmt_unix(c.valid_from),
        "validTo": clock::fmt_unix(c.valid_to),
        "certificate": c.cert_pem,
        "createdAt": c.created_at,
        "updatedAt": c.updated_at,
        "tags": {},
        "_links": {},
    })
}

fn fields() -> Fields {
    Fields::base()
        .with("subject", FieldType::String)
        .with("fingerprint", FieldType::String)
        .with("validFrom", FieldType::DateTime)
        .with("validTo", FieldType::DateTime)
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("API session certificate {id:?} not found"))
}

/// `GET /current-api-session/certificates`.
async fn list(
    State(ctl): State<AppState>,
    caller: Caller,
    q: ListQuery,
) -> Result<Response, ApiError> {
    let fields = fields();
    let docs = ctl
        .store
        .api_session_certs(&caller.session.id)
        .await?
        .iter()
        .map(|c| (render(c), render(c)))
        .collect();
    Ok(envelope::page(
        q.apply(&fields, &["createdAt"], docs)?,
        &fields,
    ))
}

/// `POST /current-api-session/certificates {csr}`.
async fn create(
    State(ctl): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CertificateCreate>,
) -> Result<Response, ApiError> {
    let issued = own_account::issue_session_cert(&ctl, &caller, &body.csr).await?;
    Ok(envelope::created(json!({
        "id": issued.id,
        "_links": {},
        "certificate": issued.pem,
        "cas": ctl.pki.ca_bundle_pem(),
    })))
}

/// `GET /current-api-session/certificates/{id}`.
async fn detail(
    State(ctl): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = ctl
        .store
        .api_session_cert(&caller.session.id, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(envelope::ok(render(&c)))
}

/// `DELETE /current-api-session/certificates/{id}`: routers stop accepting it.
async fn delete(
    State(ctl): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    own_account::delete_session_cert(&ctl, &caller.session.id, &id).await?;
    Ok(envelope::empty())
}
