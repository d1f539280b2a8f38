//! External JWT signers: API sessions from bearer tokens an external identity provider
//! issued (`POST /authenticate?method=ext-jwt` with `Authorization: Bearer <jwt>`),
//! as openziti/ziti `controller/model/authenticator_mod_ext_jwt.go` does.
//!
//! - [`verify`]: the token checks over bytes and a time (sans-IO);
//! - [`keys`]: verification keys from a certificate or a JWK set, typed by algorithm;
//! - [`ssrf`]: the address guard of JWKS fetching;
//! - [`jwks`]: the per-signer key cache and its fetcher (the I/O driver).
//!
//! [`verify_bearer`] checks one token against the enabled signers and says which signer
//! vouched for which identity claim, without creating anything: authentication
//! policies and secondary factors reuse it. [`authenticate`] turns the first good token
//! of a request into an API session like the certificate and password logins.

pub mod jwks;
pub mod keys;
pub mod ssrf;
pub mod verify;

use std::fmt;
use std::sync::atomic::Ordering;

use axum::http::{HeaderMap, HeaderValue, header};
use serde_json::Value;

use crate::clock;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::model::{Entity, ExternalJwtSigner, Identity};
use crate::server::ConnInfo;
use crate::store::ApiSessionRow;

/// Most `Authorization: Bearer` headers of one request considered (as OpenZiti).
pub const MAX_BEARER_HEADERS: usize = 3;
/// `WWW-Authenticate` realm of primary ext-JWT authentication failures.
pub const PRIMARY_REALM: &str = "openziti-primary-ext-jwt";
/// `WWW-Authenticate` realm of a missing or bad secondary ext-JWT token.
pub const SECONDARY_REALM: &str = "openziti-secondary-ext-jwt";

/// A token one enabled signer vouched for.
#[derive(Debug, Clone)]
pub struct VerifiedExtJwt {
    /// The signer's id.
    pub signer_id: String,
    /// The signer's name.
    pub signer_name: String,
    /// The value of the signer's `claimsProperty` claim.
    pub identity_claim: String,
    /// Whether that value is an identity's `externalId` (else its id).
    pub use_external_id: bool,
    /// Every claim of the token.
    pub claims: serde_json::Map<String, Value>,
}

/// Why a bearer token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ExtJwtError {
    /// The request carries no `Authorization: Bearer` token.
    #[error("no bearer token was provided")]
    Missing,
    /// No signer is enabled at all.
    #[error("no external JWT signer is enabled")]
    NoSigners,
    /// No enabled (and permitted) signer has the token's issuer.
    #[error("no enabled external JWT signer has the token's issuer")]
    NoSigner,
    /// The token failed a check.
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    /// No key for the token's `kid`.
    #[error(transparent)]
    Key(#[from] jwks::LookupError),
    /// The claim names no identity, or a disabled one.
    #[error("the token names no usable identity")]
    Identity,
    /// The identity's authentication policy does not allow this signer (or external
    /// JWT logins at all).
    #[error("the identity's authentication policy does not allow this signer")]
    PolicyForbids,
    /// The store failed.
    #[error("store failure")]
    Store,
}

impl ExtJwtError {
    /// The `error` of the `WWW-Authenticate` challenge: `missing`, `expired` or `invalid`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Verify(verify::VerifyError::Expired) => "expired",
            _ => "invalid",
        }
    }
}

/// An ext-JWT authentication failure as a 401 `UNAUTHORIZED` challenge (openziti/ziti
/// `controller/apierror` and `controller/response/headers.go`).
#[derive(Debug, Clone)]
pub struct Challenge {
    /// [`PRIMARY_REALM`] or [`SECONDARY_REALM`].
    pub realm: &'static str,
    /// `missing`, `expired` or `invalid`.
    pub error: &'static str,
    /// Ids of the signers concerned.
    pub ids: Vec<String>,
    /// Their issuers.
    pub issuers: Vec<String>,
    /// Whether a `WWW-Authenticate` header goes with it (not when no signer is enabled,
    /// as OpenZiti).
    pub send_header: bool,
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the request could not be completed. The session is not authorized or the credentials are invalid",
        )
    }
}

fn quoted(values: &[String]) -> String {
    values
        .iter()
        .map(|v| {
            v.chars()
                .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("|")
}

impl Challenge {
    /// The challenge of `error` for `realm`.
    pub fn new(
        realm: &'static str,
        error: &ExtJwtError,
        signers: &[&Entity<ExternalJwtSigner>],
    ) -> Self {
        Self {
            realm,
            error: error.kind(),
            ids: signers.iter().map(|s| s.id.clone()).collect(),
            issuers: signers.iter().map(|s| s.doc.issuer.clone()).collect(),
            send_header: !matches!(error, ExtJwtError::NoSigners),
        }
    }

    /// The `WWW-Authenticate` value, if one is sent.
    pub fn header_value(&self) -> Option<HeaderValue> {
        if !self.send_header {
            return None;
        }
        let description = match self.error {
            "missing" => "no matching token was provided",
            "expired" => "token expired",
            _ => "token is invalid",
        };
        let text = format!(
            "Bearer realm=\"{}\" error=\"{}\" error_description=\"{description}\" id=\"{}\" issuer=\"{}\"",
            self.realm,
            self.error,
            quoted(&self.ids),
            quoted(&self.issuers),
        );
        // Only printable ASCII and the filtered values: the fallback never happens for
        // ASCII input; non-ASCII issuers fall back to the header without them.
        HeaderValue::from_str(&text).ok().or_else(|| {
            HeaderValue::from_str(&format!(
                "Bearer realm=\"{}\" error=\"{}\" error_description=\"{description}\"",
                self.realm, self.error
            ))
            .ok()
        })
    }
}

/// Up to [`MAX_BEARER_HEADERS`] bearer tokens of the request's `Authorization` headers.
pub fn bearer_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .take(MAX_BEARER_HEADERS)
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// The enabled signers, all of them or those of `only` (ids) when it is not empty.
async fn enabled_signers(
    ctl: &Controller,
    only: &[String],
) -> Result<Vec<Entity<ExternalJwtSigner>>, ExtJwtError> {
    let rows = ctl
        .store
        .entities::<ExternalJwtSigner>()
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "listing external JWT signers");
            ExtJwtError::Store
        })?;
    Ok(rows
        .into_iter()
        .filter(|r| r.doc.enabled)
        .filter(|r| only.is_empty() || only.contains(&r.id))
        .collect())
}

async fn verify_with(
    ctl: &Controller,
    token: &str,
    signer: &Entity<ExternalJwtSigner>,
    head: &verify::Unverified,
) -> Result<VerifiedExtJwt, ExtJwtError> {
    let doc = &signer.doc;
    let key = if let Some(pem) = &doc.cert_pem {
        let cert = keys::parse_cert_pem(pem).map_err(|_| ExtJwtError::NoSigner)?;
        let expected_kid = doc.kid.clone().unwrap_or_else(|| cert.fingerprint.clone());
        if head.kid.as_ref().is_some_and(|k| *k != expected_kid) {
            return Err(jwks::LookupError::UnknownKid.into());
        }
        cert.key
    } else if let Some(endpoint) = &doc.jwks_endpoint {
        let kid = head
            .kid
            .as_deref()
            .ok_or(verify::VerifyError::Malformed("no kid in the header"))?;
        ctl.jwks.key(&signer.id, endpoint, kid).await?
    } else {
        return Err(ExtJwtError::NoSigner);
    };
    let verified = verify::verify(
        token,
        &key,
        &verify::Expected {
            issuer: &doc.issuer,
            audience: &doc.audience,
            claims_property: &doc.claims_property,
        },
        clock::now_unix(),
    )?;
    Ok(VerifiedExtJwt {
        signer_id: signer.id.clone(),
        signer_name: signer.name.clone(),
        identity_claim: verified.identity_claim,
        use_external_id: doc.use_external_id,
        claims: verified.claims,
    })
}

/// Checks `token` against the enabled signers (only those of `allowed` ids when it is
/// not empty): the signer is the one with the token's `iss`, its key the one of the
/// header's `kid`. On failure, also returns the signers concerned (for the challenge).
pub async fn verify_bearer_detailed(
    ctl: &Controller,
    token: &str,
    allowed: &[String],
) -> Result<VerifiedExtJwt, (ExtJwtError, Vec<Entity<ExternalJwtSigner>>)> {
    let signers = enabled_signers(ctl, allowed)
        .await
        .map_err(|e| (e, Vec::new()))?;
    if signers.is_empty() {
        return Err((ExtJwtError::NoSigners, signers));
    }
    let head = match verify::peek(token) {
        Ok(h) => h,
        Err(e) => return Err((e.into(), signers)),
    };
    let Some(signer) = signers
        .iter()
        .find(|s| head.issuer.as_deref() == Some(s.doc.issuer.as_str()))
    else {
        return Err((ExtJwtError::NoSigner, signers));
    };
    match verify_with(ctl, token, signer, &head).await {
        Ok(v) => Ok(v),
        Err(e) => {
            let one = vec![signer.clone()];
            Err((e, one))
        }
    }
}

/// [`verify_bearer_detailed`] against every enabled signer, failures as the primary
/// ext-JWT challenge (401 `UNAUTHORIZED` with `WWW-Authenticate`).
pub async fn verify_bearer(ctl: &Controller, token: &str) -> Result<VerifiedExtJwt, ApiError> {
    verify_bearer_detailed(ctl, token, &[])
        .await
        .map_err(|(e, signers)| challenge(PRIMARY_REALM, &e, &signers))
}

/// The error answered for `e`, with `signers` named in the challenge.
pub fn challenge(
    realm: &'static str,
    e: &ExtJwtError,
    signers: &[Entity<ExternalJwtSigner>],
) -> ApiError {
    let refs: Vec<&Entity<ExternalJwtSigner>> = signers.iter().collect();
    ApiError::ExtJwt(Box::new(Challenge::new(realm, e, &refs)))
}

/// The identity a verified token names (by `externalId` when the signer says so, else
/// by id) with its authentication policy; it must exist and not be disabled.
pub async fn identity_for(
    ctl: &Controller,
    v: &VerifiedExtJwt,
) -> Result<(Entity<Identity>, crate::model::AuthPolicy), ExtJwtError> {
    let id = if v.use_external_id {
        ctl.store
            .identity_by_external_id(&v.identity_claim)
            .await
            .map_err(|_| ExtJwtError::Store)?
            .map(|i| i.id)
            .ok_or(ExtJwtError::Identity)?
    } else {
        v.identity_claim.clone()
    };
    crate::auth::enabled_identity(ctl, &id)
        .await
        .map_err(|_| ExtJwtError::Identity)
}

/// The secondary factor of an authentication policy with `requireExtJwtSigner`: whether
/// one of the request's bearer tokens is vouched for by `signer_id` and names
/// `identity_id` (checked on every request, as OpenZiti does:
/// openziti/ziti `controller/env/security_ctx.go`). `Err` carries the answer for a
/// request without one (401 with the secondary challenge).
pub async fn check_secondary(
    ctl: &Controller,
    headers: &HeaderMap,
    signer_id: &str,
    identity_id: &str,
) -> Result<(), ApiError> {
    let allowed = [signer_id.to_owned()];
    let mut last = (ExtJwtError::Missing, Vec::new());
    for token in bearer_tokens(headers) {
        match verify_bearer_detailed(ctl, &token, &allowed).await {
            Ok(v) => match identity_for(ctl, &v).await {
                Ok((identity, _)) if identity.id == identity_id => return Ok(()),
                Ok(_) | Err(_) => last = (ExtJwtError::Identity, Vec::new()),
            },
            Err(e) => last = e,
        }
    }
    if last.1.is_empty() {
        last.1 = ctl
            .store
            .entity::<ExternalJwtSigner>(signer_id)
            .await?
            .into_iter()
            .collect();
    }
    Err(challenge(SECONDARY_REALM, &last.0, &last.1))
}

/// `POST /authenticate?method=ext-jwt`: the first of the request's bearer tokens that an
/// enabled signer vouches for and that names an enabled identity creates an API session
/// (`authenticatorId` `extJwtId:<signer id>`, as OpenZiti). Every failure is a 401
/// `UNAUTHORIZED` with the primary ext-JWT challenge.
pub async fn authenticate(
    ctl: &Controller,
    conn: &ConnInfo,
    headers: &HeaderMap,
    body: &Value,
) -> Result<(ApiSessionRow, Entity<Identity>), ApiError> {
    let res = login(ctl, conn, headers, body).await;
    let counter = if res.is_ok() {
        &ctl.metrics.ext_jwt_logins
    } else {
        &ctl.metrics.ext_jwt_login_failures
    };
    counter.fetch_add(1, Ordering::Relaxed);
    res
}

async fn login(
    ctl: &Controller,
    conn: &ConnInfo,
    headers: &HeaderMap,
    body: &Value,
) -> Result<(ApiSessionRow, Entity<Identity>), ApiError> {
    let tokens = bearer_tokens(headers);
    let mut last = (ExtJwtError::Missing, Vec::new());
    for token in &tokens {
        match verify_bearer_detailed(ctl, token, &[]).await {
            Ok(v) => match identity_for(ctl, &v).await.and_then(|(identity, policy)| {
                // The policy's `primary.extJwt`: allowed at all, and by this signer
                // (none listed: every enabled signer), as OpenZiti's
                // `authenticator_mod_ext_jwt.go` filters its candidates.
                let ext = &policy.primary.ext_jwt;
                if ext.allowed
                    && (ext.allowed_signers.is_empty()
                        || ext.allowed_signers.contains(&v.signer_id))
                {
                    Ok(identity)
                } else {
                    Err(ExtJwtError::PolicyForbids)
                }
            }) {
                Ok(identity) => {
                    let authenticator = format!("extJwtId:{}", v.signer_id);
                    return crate::auth::new_session(
                        ctl,
                        &identity,
                        &authenticator,
                        body,
                        conn,
                        None,
                    )
                    .await;
                }
                Err(e) => {
                    tracing::info!(signer = %v.signer_name, error = %e, "ext-jwt login refused");
                    let signer = ctl.store.entity::<ExternalJwtSigner>(&v.signer_id).await?;
                    last = (e, signer.into_iter().collect());
                }
            },
            Err((e, signers)) => {
                tracing::info!(error = %e, "ext-jwt login refused");
                last = (e, signers);
            }
        }
    }
    if tokens.is_empty() {
        // Name the enabled signers, as OpenZiti's `missing` challenge does.
        let signers = enabled_signers(ctl, &[]).await.unwrap_or_default();
        if signers.is_empty() {
            last.0 = ExtJwtError::NoSigners;
        }
        last.1 = signers;
    }
    Err(challenge(PRIMARY_REALM, &last.0, &last.1))
}

#[cfg(test)]
mod tests;
