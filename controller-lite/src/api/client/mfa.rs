//! TOTP MFA endpoints, served by both APIs (openziti/edge-api
//! `source/shared/current-identity-mfa.yml`, `authenticate.yml`,
//! `current-api-session.yml`): enrollment under `/current-identity/mfa`, the answer to
//! an authentication query at `/authenticate/mfa`, and `/current-api-session/totp-token`.
//!
//! Partial API sessions (an open TOTP query) reach only the enrollment, verification
//! and answer endpoints ([`PartialCaller`]); deleting the enrollment and reading or
//! regenerating recovery codes need a full session ([`Caller`]).

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::endpoint::{ApiBuilder, Data, Endpoint};
use crate::api::extract::{JsonBody, read_body};
use crate::api::{AppState, envelope};
use crate::auth::{Caller, PartialCaller, mfa, totp};
use crate::controller::Controller;
use crate::error::ApiError;
use crate::model::{Entity, Identity};
use crate::store::MfaRow;

/// Header carrying a code where the request has no body (OpenZiti `mfa-validation-code`).
pub const CODE_HEADER: &str = "mfa-validation-code";

/// `{code}` (`mfaCode`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaCode {
    /// A TOTP code, or a recovery code where the endpoint takes one.
    pub code: String,
}

const MFA_DETAIL: Data = Data::Object(
    "`detailMfa`: `isVerified`, and while unverified `provisioningUrl` and `recoveryCodes`.",
);

/// Adds the MFA routes to `api`.
pub fn routes(api: ApiBuilder) -> ApiBuilder {
    let tag = "Current Identity";
    api.add(
        Endpoint::post("/current-identity/mfa", "enrollMfa")
            .doc(tag, "Starts a TOTP enrollment (partial sessions too)")
            .session()
            .returns(201, Data::Created),
        enroll,
    )
    .add(
        Endpoint::get("/current-identity/mfa", "detailMfa")
            .doc(tag, "The caller's TOTP enrollment")
            .session()
            .returns(200, MFA_DETAIL),
        detail,
    )
    .add(
        Endpoint::delete("/current-identity/mfa", "deleteMfa")
            .doc(
                tag,
                "Removes the caller's TOTP enrollment (a verified one needs a TOTP or recovery code in `mfa-validation-code`)",
            )
            .session(),
        delete,
    )
    .add(
        Endpoint::get("/current-identity/mfa/qr-code", "detailMfaQrCode")
            .doc(tag, "QR code of an unverified enrollment's provisioning URL")
            .session()
            .returns(200, Data::Raw("image/png", "A PNG of about 256 pixels.")),
        qr_code,
    )
    .add(
        Endpoint::post("/current-identity/mfa/verify", "verifyMfa")
            .doc(tag, "Verifies the enrollment with a TOTP code")
            .session()
            .request(Data::Schema(|g| g.subschema_for::<MfaCode>())),
        verify,
    )
    .add(
        Endpoint::get("/current-identity/mfa/recovery-codes", "detailMfaRecoveryCodes")
            .doc(
                tag,
                "The unused recovery codes (a TOTP code in `mfa-validation-code` or the body)",
            )
            .session()
            .returns(200, MFA_DETAIL),
        recovery_codes,
    )
    .add(
        Endpoint::post("/current-identity/mfa/recovery-codes", "createMfaRecoveryCodes")
            .doc(tag, "Replaces the recovery codes (a TOTP or recovery code)")
            .session()
            .request(Data::Schema(|g| g.subschema_for::<MfaCode>())),
        regenerate_recovery_codes,
    )
    .add(
        Endpoint::post("/authenticate/mfa", "authenticateMfa")
            .doc("Authentication", "Answers the TOTP authentication query")
            .session()
            .request(Data::Schema(|g| g.subschema_for::<MfaCode>())),
        authenticate,
    )
    .add(
        Endpoint::post("/current-api-session/totp-token", "createTotpToken")
            .doc(
                "Current API Session",
                "TOTP tokens for OIDC sessions; a zt-session gets INVALID_BACKING_TOKEN_TYPE",
            )
            .session()
            .request(Data::Schema(|g| g.subschema_for::<MfaCode>())),
        totp_token,
    )
}

fn detail_of(ctl: &Controller, identity: &Entity<Identity>, m: &MfaRow, codes: bool) -> Value {
    let mut v = json!({
        "id": m.id,
        "createdAt": m.created_at,
        "updatedAt": m.updated_at,
        "tags": {},
        "_links": {},
        "isVerified": m.verified,
    });
    if !m.verified {
        v["provisioningUrl"] = json!(mfa::provisioning_url(ctl, identity, m));
    }
    if !m.verified || codes {
        v["recoveryCodes"] = json!(m.recovery_codes);
    }
    v
}

/// `POST /current-identity/mfa`: 201, or 409 `MFA_EXISTS`.
async fn enroll(
    State(ctl): State<AppState>,
    PartialCaller(caller): PartialCaller,
) -> Result<Response, ApiError> {
    let m = mfa::enroll(&ctl, &caller.identity).await?;
    tracing::info!(identity = %caller.identity.name, "MFA enrollment started");
    Ok(envelope::created(json!({"id": m.id, "_links": {}})))
}

/// `GET /current-identity/mfa`.
async fn detail(
    State(ctl): State<AppState>,
    PartialCaller(caller): PartialCaller,
) -> Result<Response, ApiError> {
    let m = mfa::enrollment_of(&ctl, &caller.identity).await?;
    Ok(envelope::ok(detail_of(&ctl, &caller.identity, &m, false)))
}

/// `GET /current-identity/mfa/qr-code`: 404 once verified (the secret is shown once).
async fn qr_code(
    State(ctl): State<AppState>,
    PartialCaller(caller): PartialCaller,
) -> Result<Response, ApiError> {
    let m = mfa::enrollment_of(&ctl, &caller.identity).await?;
    if m.verified {
        return Err(ApiError::NotFound(
            "the MFA enrollment is verified; its secret is no longer shown".into(),
        ));
    }
    let png = totp::qr_png(&mfa::provisioning_url(&ctl, &caller.identity, &m))?;
    Ok(([(CONTENT_TYPE, "image/png")], png).into_response())
}

/// `POST /current-identity/mfa/verify {code}`: the enrollment becomes verified and the
/// calling session counts as having answered.
async fn verify(
    State(ctl): State<AppState>,
    PartialCaller(caller): PartialCaller,
    JsonBody(body): JsonBody<MfaCode>,
) -> Result<Response, ApiError> {
    mfa::verify_enrollment(&ctl, &caller.identity, &caller.session.id, &body.code).await?;
    Ok(envelope::empty())
}

fn header_code(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// `DELETE /current-identity/mfa` (full session): a verified enrollment needs a TOTP or
/// recovery code in `mfa-validation-code`.
async fn delete(
    State(ctl): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    mfa::remove_own(&ctl, &caller.identity, header_code(&headers).as_deref()).await?;
    Ok(envelope::empty())
}

/// `GET /current-identity/mfa/recovery-codes` (full session): a TOTP code in the header
/// or a `{code}` body.
async fn recovery_codes(
    State(ctl): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let code = match header_code(req.headers()) {
        Some(c) => c,
        None => {
            let bytes = read_body(req).await?;
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_owned))
                .filter(|c| !c.trim().is_empty())
                .ok_or(ApiError::MfaInvalidToken)?
        }
    };
    let m = mfa::verified_enrollment(&ctl, &caller.identity).await?;
    mfa::check_code(&ctl, &m, &code, false).await?;
    Ok(envelope::ok(detail_of(&ctl, &caller.identity, &m, true)))
}

/// `POST /current-identity/mfa/recovery-codes {code}` (full session): 20 new codes.
async fn regenerate_recovery_codes(
    State(ctl): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<MfaCode>,
) -> Result<Response, ApiError> {
    mfa::regenerate_recovery_codes(&ctl, &caller.identity, &body.code).await?;
    Ok(envelope::empty())
}

/// `POST /authenticate/mfa {code}`: answers the TOTP query with a TOTP or recovery
/// code; 409 `MFA_NOT_ENROLLED` without a verified enrollment.
async fn authenticate(
    State(ctl): State<AppState>,
    PartialCaller(caller): PartialCaller,
    JsonBody(body): JsonBody<MfaCode>,
) -> Result<Response, ApiError> {
    mfa::answer(&ctl, &caller.identity, &caller.session.id, &body.code).await?;
    Ok(envelope::empty())
}

/// `POST /current-api-session/totp-token`: OpenZiti issues these to OIDC sessions only
/// and answers a `zt-session` API session (the only kind Weft has) with
/// `INVALID_BACKING_TOKEN_TYPE` (openziti/ziti
/// `controller/internal/routes/current_api_session_router.go`).
async fn totp_token(_: Caller) -> Result<Response, ApiError> {
    Err(ApiError::InvalidBackingTokenType(
        "TOTP tokens are issued to OIDC API sessions; this is a zt-session API session".into(),
    ))
}
