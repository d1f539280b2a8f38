//! Enrollment endpoints at the root (spec §9.3, §9.4).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use crate::api::extract::read_body;
use crate::api::{AppState, envelope};
use crate::enroll;
use crate::error::ApiError;
use crate::server::ConnInfo;

/// `GET /.well-known/est/cacerts`: base64 certs-only PKCS#7,
/// `Content-Type: application/pkcs7-mime` (EDGE `enroll_router.go`).
pub async fn cacerts(State(ctl): State<AppState>) -> Response {
    let mut res = (StatusCode::OK, ctl.pki.cacerts_pkcs7_base64()).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pkcs7-mime"),
    );
    h.insert(
        "content-transfer-encoding",
        HeaderValue::from_static("base64"),
    );
    res
}

/// Audience of a network JWT (`JwtAudEnrollment` in openziti/ziti `controller/env`).
const NETWORK_JWT_AUDIENCE: &str = "openziti-enroller";

/// Claims of the network JWT: enrollment method `network`, issuer and subject the
/// controller's URL with a trailing slash, audience [`NETWORK_JWT_AUDIENCE`], a random
/// `jti`, no expiry (openziti/ziti `controller/internal/routes/network_jwt_router.go`).
#[derive(Debug, serde::Serialize)]
struct NetworkJwtClaims<'a> {
    em: &'static str,
    iss: &'a str,
    sub: &'a str,
    aud: [&'static str; 1],
    jti: String,
}

/// `GET /network-jwts` (both APIs, no session needed): one JWT named `default` that
/// lets a client find and verify this network (the controller URL, signed with the key
/// that signs enrollment JWTs) without an enrollment of its own. Signed at the first
/// request and kept ([`crate::controller::Controller::network_jwt`]), as OpenZiti does.
pub async fn network_jwts(State(ctl): State<AppState>) -> Result<Response, ApiError> {
    let token = ctl
        .network_jwt
        .get_or_try_init(|| async {
            let issuer = format!("{}/", ctl.public_url.trim_end_matches('/'));
            ctl.pki.sign_jwt(&NetworkJwtClaims {
                em: "network",
                iss: &issuer,
                sub: &issuer,
                aud: [NETWORK_JWT_AUDIENCE],
                jti: uuid::Uuid::new_v4().to_string(),
            })
        })
        .await?;
    Ok(envelope::ok(json!([{"name": "default", "token": token}])))
}

#[derive(Debug, Deserialize)]
struct EnrollQuery {
    method: Option<String>,
    token: Option<String>,
}

/// `POST /enroll?method=ott&token=JTI` with a PEM CSR body, or
/// `POST /enroll?method=erott&token=JTI` with `{"serverCertCsr","certCsr"}` (see
/// [`enroll_erott_route`]). Answers
/// `{"data":{"cert":PEM}}`, or the bare PEM with `Content-Type:
/// application/x-pem-file` when only that is accepted (spec §9.4).
pub async fn enroll(State(ctl): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let q = axum::extract::Query::<EnrollQuery>::try_from_uri(req.uri())
        .map_err(|e| ApiError::InvalidParameter(e.body_text()))?
        .0;
    let wants_pem = wants_pem(&req);
    let certs = peer_certs(&req)?;
    let body = read_body(req).await?;
    match q.method.as_deref() {
        Some("ott") => {}
        Some("ca") => return enroll_ca(&ctl, &certs, &body).await,
        Some("ottca") => return enroll_ottca(&ctl, q.token, &certs).await,
        Some("erott") => return enroll_erott(&ctl, q.token, &body).await,
        Some("updb") => return enroll_updb(&ctl, q.token, &body).await,
        Some(other) => {
            return Err(ApiError::InvalidEnrollmentToken(format!(
                "enrollment method {other:?} is not supported"
            )));
        }
        None => {
            return Err(ApiError::InvalidParameter(
                "query parameter method is required".into(),
            ));
        }
    }
    enroll_ott(&ctl, q.token, wants_pem, &body).await
}

/// Whether the client accepts only PEM (then an `ott` enrolment answers the bare
/// certificate).
fn wants_pem(req: &Request) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/x-pem-file") && !a.contains("json"))
}

/// Redeems an `ott` token with the PEM CSR in `body`: `{"data":{"cert":PEM}}`, or the
/// bare PEM when `wants_pem`.
async fn enroll_ott(
    ctl: &crate::controller::Controller,
    token: Option<String>,
    wants_pem: bool,
    body: &[u8],
) -> Result<Response, ApiError> {
    let token =
        token.ok_or_else(|| ApiError::InvalidEnrollmentToken("token is required".into()))?;
    let csr = std::str::from_utf8(body)
        .map_err(|_| ApiError::InvalidEnrollmentToken("the CSR must be PEM text".into()))?;
    let cert = enroll::enroll_ott(ctl, &token, csr).await?;
    if wants_pem {
        let mut res = (StatusCode::OK, cert.pem).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-pem-file"),
        );
        return Ok(res);
    }
    Ok(envelope::ok(json!({"cert": cert.pem})))
}

/// Body of `POST /enroll/ott` (`ottEnrollmentRequest`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OttEnroll {
    /// The enrollment JWT's `jti` (or `?token=`).
    #[serde(default)]
    pub token: Option<String>,
    /// The PEM CSR.
    pub client_csr: String,
}

/// `POST /enroll/ott` with `{token, clientCsr}` (openziti/edge-api `enrollOtt`, which
/// newer OpenZiti SDKs call; the C SDK 0.29 posts the bare CSR to `/enroll?method=ott`):
/// the same redemption, answered as JSON `{"data":{"cert":PEM}}`.
pub async fn enroll_ott_route(
    State(ctl): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let (query_token, body) = token_and_body(req).await?;
    let body: OttEnroll = crate::api::extract::parse_json(&body)?;
    enroll_ott(
        &ctl,
        body.token.or(query_token),
        false,
        body.client_csr.as_bytes(),
    )
    .await
}

/// The certificates the client presented in the TLS handshake (leaf first).
fn peer_certs(req: &Request) -> Result<Arc<Vec<CertificateDer<'static>>>, ApiError> {
    req.extensions()
        .get::<ConnInfo>()
        .map(|c| c.certs.clone())
        .ok_or_else(|| ApiError::Internal("connection info missing".into()))
}

/// Body of a `ca` enrollment: the name the client asks for (`identityNameFormat`'s
/// `[requestedName]`); may be empty.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct CaEnroll {
    /// Requested identity name.
    #[serde(default)]
    pub name: Option<String>,
}

/// Parses the optional JSON body of a `ca` enrollment (an empty body asks for no name).
pub fn parse_ca_enroll(body: &[u8]) -> Result<CaEnroll, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CaEnroll::default());
    }
    let req: CaEnroll =
        serde_json::from_slice(body).map_err(|e| ApiError::CouldNotParseBody(e.to_string()))?;
    if let Some(n) = &req.name {
        crate::model::check_text("name", n)?;
        if n.len() > 255 {
            return Err(ApiError::CouldNotValidate("name is too long".into()));
        }
    }
    Ok(req)
}

async fn enroll_ca(
    ctl: &AppState,
    certs: &[CertificateDer<'static>],
    body: &[u8],
) -> Result<Response, ApiError> {
    let req = parse_ca_enroll(body)?;
    crate::thirdparty_ca::enrollment::enroll_ca(ctl, certs, req.name.as_deref()).await?;
    Ok(envelope::empty())
}

async fn enroll_ottca(
    ctl: &AppState,
    token: Option<String>,
    certs: &[CertificateDer<'static>],
) -> Result<Response, ApiError> {
    let token =
        token.ok_or_else(|| ApiError::InvalidEnrollmentToken("token is required".into()))?;
    crate::thirdparty_ca::enrollment::enroll_ottca(ctl, &token, certs).await?;
    Ok(envelope::empty())
}

/// `POST /enroll/ca` (optional `{name}`): enrollment with the TLS client certificate of
/// a verified CA with `isAutoCaEnrollmentEnabled`; answers `{"data": {}}`.
pub async fn enroll_ca_route(
    State(ctl): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let certs = peer_certs(&req)?;
    let body = read_body(req).await?;
    enroll_ca(&ctl, &certs, &body).await
}

/// Body of `POST /enroll/ottca`: the enrollment token.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct OttCaEnroll {
    /// The enrollment JWT's `jti`.
    pub token: String,
}

/// `POST /enroll/ottca` with `{token}` (or `?token=`): redeems an `ottca` enrollment
/// with the TLS client certificate; answers `{"data": {}}`.
pub async fn enroll_ottca_route(
    State(ctl): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let certs = peer_certs(&req)?;
    let (token, body) = token_and_body(req).await?;
    let token = match token {
        Some(t) => Some(t),
        None if body.iter().all(u8::is_ascii_whitespace) => None,
        None => Some(crate::api::extract::parse_json::<OttCaEnroll>(&body)?.token),
    };
    enroll_ottca(&ctl, token, &certs).await
}

async fn enroll_erott(
    ctl: &AppState,
    token: Option<String>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let token =
        token.ok_or_else(|| ApiError::InvalidEnrollmentToken("token is required".into()))?;
    let req: enroll::ErottRequest =
        serde_json::from_slice(body).map_err(|e| ApiError::CouldNotParseBody(e.to_string()))?;
    let res = enroll::enroll_erott(ctl, &token, &req).await?;
    Ok(envelope::ok(json!({
        "serverCert": res.server_cert,
        "cert": res.cert,
        "ca": res.ca,
    })))
}

/// Body of a `updb` enrollment: the first password (a `username` is ignored: the
/// enrollment names the user, as in OpenZiti).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdbEnroll {
    /// Ignored.
    #[serde(default)]
    pub username: Option<String>,
    /// The password.
    pub password: String,
}

async fn enroll_updb(
    ctl: &AppState,
    token: Option<String>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let token =
        token.ok_or_else(|| ApiError::InvalidEnrollmentToken("token is required".into()))?;
    let req: UpdbEnroll = crate::api::extract::parse_json(body)?;
    let username = enroll::enroll_updb(ctl, &token, &req.password).await?;
    Ok(envelope::ok(json!({"username": username})))
}

/// `POST /enroll/updb?token=JTI` with `{password}`: answers `{"data": {"username"}}`.
pub async fn enroll_updb_route(
    State(ctl): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let (token, body) = token_and_body(req).await?;
    enroll_updb(&ctl, token, &body).await
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The `token` query parameter and the body of an `/enroll/{method}` request.
async fn token_and_body(req: Request) -> Result<(Option<String>, bytes::Bytes), ApiError> {
    let q = axum::extract::Query::<TokenQuery>::try_from_uri(req.uri())
        .map_err(|e| ApiError::InvalidParameter(e.body_text()))?
        .0;
    Ok((q.token, read_body(req).await?))
}

/// `POST /enroll/erott?token=JTI` (also under `/edge/client/v1`): edge router
/// enrollment with `{"serverCertCsr": PEM, "certCsr": PEM}`; answers
/// `{"data": {"serverCert": PEM, "cert": PEM, "ca": PEM}}`.
pub async fn enroll_erott_route(
    State(ctl): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let (token, body) = token_and_body(req).await?;
    enroll_erott(&ctl, token, &body).await
}
