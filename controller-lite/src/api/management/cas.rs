//! The 3rd-party CA routes besides CRUD ([`super::crud`] serves `/cas` and
//! `/cas/{id}`): `GET /cas/{id}/jwt` (the CA's enrollment JWT, `application/jwt`) and
//! `POST /cas/{id}/verify` (a PEM certificate the CA signed whose common name is the
//! CA's `verificationToken`, `text/plain`), as openziti/edge-api
//! `source/management/cas.yml` describes them.

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::endpoint::{ApiBuilder, Data, Endpoint};
use crate::api::extract::read_body;
use crate::api::{AppState, envelope};
use crate::auth::Admin;
use crate::domain::cas;
use crate::error::ApiError;
use crate::model::Kind;
use crate::thirdparty_ca::jwt_claims;

/// What `POST /cas/{id}/verify` consumes: a PEM certificate (OpenZiti's spec names
/// `text/plain`). JSON is let through too, so that a caller without a session hears 401
/// before anything about the body (the content type is checked before the session);
/// a JSON body is then no PEM (400 `COULD_NOT_PARSE_BODY`).
const VERIFY_CONSUMES: &[&str] = &["text/plain", "application/x-pem-file", "application/json"];

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Ca {id:?} not found"))
}

/// `GET /cas/{id}/jwt`: the static enrollment JWT of the CA (`em` `ca`).
async fn jwt(
    State(ctl): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = ctl
        .store
        .get_entity(Kind::Cas.collection(), &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let token = ctl.pki.sign_jwt(&jwt_claims(&ctl.public_url, &row.id))?;
    let mut res = (StatusCode::OK, token).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwt"),
    );
    Ok(res)
}

/// `POST /cas/{id}/verify`: marks the CA verified when the body is a certificate it
/// signed whose common name is its verification token. Routers learn of the CA at once.
async fn verify(
    State(ctl): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let body = read_body(req).await?;
    cas::verify(&ctl, &id, &body).await?;
    Ok(envelope::empty())
}

/// Adds `/cas/{id}/jwt` and `/cas/{id}/verify` to `api`.
pub fn routes(api: ApiBuilder) -> ApiBuilder {
    api.add(
        Endpoint::get("/cas/{id}/jwt", "getCaJwt")
            .doc("Cas", "The CA's enrollment JWT (`em: ca`)")
            .admin()
            .returns(200, Data::Raw("application/jwt", "The signed JWT.")),
        jwt,
    )
    .add(
        Endpoint::post("/cas/{id}/verify", "verifyCa")
            .doc(
                "Cas",
                "Verifies the CA with a certificate it signed whose common name is its `verificationToken`",
            )
            .admin()
            .consumes(VERIFY_CONSUMES)
            .request(Data::Raw("text/plain", "A PEM certificate.")),
        verify,
    )
}
