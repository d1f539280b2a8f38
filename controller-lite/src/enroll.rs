//! One-time-token enrollment of identities (`ott` with a CSR, `updb` with a password)
//! and edge routers (`erott`): the enrollment JWT and redeeming it (spec
//! `edge-client-api.md` §9; openziti/ziti `controller/model/enrollment_model.go`,
//! `enrollment_mod_ott.go`, `enrollment_mod_updb.go`, `enrollment_module_erott.go`).

use serde::Serialize;

use crate::clock;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::pki::{CertProfile, IssuedCert};
use crate::store::{
    AuthenticatorRow, Credential, EnrollmentMethod, EnrollmentRow, UPDB_METHOD, WriteTx,
};

/// Claims of an enrollment JWT. Names and meaning follow GOSDK
/// `ziti/config/token.go` (`EnrollmentClaims`): `em` method, `iss` controller
/// URL, `sub` identity id, `jti` token, `exp` Unix expiry.
#[derive(Debug, Serialize)]
pub struct EnrollmentClaims<'a> {
    /// Enrollment method (`ott` or `erott`).
    pub em: &'a str,
    /// Controller base URL.
    pub iss: &'a str,
    /// Identity id, or edge router id for `erott`.
    pub sub: &'a str,
    /// The one-time token.
    pub jti: &'a str,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// Enrollment method of identities.
pub const OTT: &str = "ott";
/// Enrollment method of edge routers (OpenZiti "edge router one-time token").
pub const EROTT: &str = "erott";
/// Enrollment method that sets a password for a user name the administrator chose.
pub const UPDB: &str = "updb";

/// Creates and stores (in `tx`) an OTT enrollment for `identity_id`.
pub async fn create_ott(
    ctl: &Controller,
    tx: &mut WriteTx<'_>,
    identity_id: &str,
) -> Result<EnrollmentRow, ApiError> {
    create_ott_expiring(ctl, tx, identity_id, None).await
}

/// Creates and stores (in `tx`) an OTT enrollment for `identity_id` expiring at
/// `expires_at` (Unix seconds), or after the configured lifetime.
pub async fn create_ott_expiring(
    ctl: &Controller,
    tx: &mut WriteTx<'_>,
    identity_id: &str,
    expires_at: Option<i64>,
) -> Result<EnrollmentRow, ApiError> {
    let exp = expires_at.unwrap_or_else(|| clock::now_unix() + ctl.config.pki.enrollment_ttl_secs);
    create_enrollment(ctl, tx, identity_id, EnrollmentMethod::Ott, exp).await
}

/// Creates and stores (in `tx`) a `updb` enrollment for `identity_id`: redeeming it
/// sets the password of `username` (checked here: well formed and not taken).
pub async fn create_updb(
    ctl: &Controller,
    tx: &mut WriteTx<'_>,
    identity_id: &str,
    username: &str,
    expires_at: Option<i64>,
) -> Result<EnrollmentRow, ApiError> {
    crate::domain::credentials::check_credentials(username, "unchanged")?;
    if tx.username_taken(username).await? {
        return Err(ApiError::Conflict(format!(
            "username {username:?} is already in use"
        )));
    }
    let exp = expires_at.unwrap_or_else(|| clock::now_unix() + ctl.config.pki.enrollment_ttl_secs);
    create_enrollment(
        ctl,
        tx,
        identity_id,
        EnrollmentMethod::Updb {
            username: username.to_owned(),
        },
        exp,
    )
    .await
}

/// Redeems a `updb` token with the identity's first password (checked against its
/// authentication policy's rules); returns the user name. The token is consumed once,
/// with the new authenticator, in one transaction.
pub async fn enroll_updb(
    ctl: &Controller,
    token: &str,
    password: &str,
) -> Result<String, ApiError> {
    let now = clock::now_unix();
    let pending = ctl
        .store
        .enrollment_by_jti(token)
        .await?
        .filter(|e| !e.used && e.expires_at > now)
        .ok_or_else(|| invalid("the enrollment token is invalid, expired or already used"))?;
    let EnrollmentMethod::Updb { username } = pending.method.clone() else {
        return Err(invalid(
            "the enrollment token is invalid, expired or already used",
        ));
    };
    crate::domain::credentials::check_credentials(&username, password)?;
    let identity = ctl
        .store
        .entity::<crate::model::Identity>(&pending.identity_id)
        .await?
        .ok_or_else(|| invalid("the identity of this enrollment no longer exists"))?;
    crate::auth::policy::check_new_password(&ctl.store, &identity.doc, password).await?;
    let hash = crate::auth::hash_password_gated(ctl, password.to_owned()).await?;
    let mut tx = ctl.store.begin_write().await?;
    let enr = tx
        .redeem_enrollment(token, now)
        .await?
        .filter(|e| matches!(e.method, EnrollmentMethod::Updb { .. }))
        .ok_or_else(|| invalid("the enrollment token is invalid, expired or already used"))?;
    if tx
        .has_authenticator_method(&enr.identity_id, UPDB_METHOD)
        .await?
    {
        return Err(ApiError::MaxAuthenticators(format!(
            "identity {:?} already has a updb authenticator",
            identity.name
        )));
    }
    tx.insert_authenticator(&AuthenticatorRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        identity_id: enr.identity_id,
        credential: Credential::Updb {
            username: username.clone(),
            password_hash: hash,
        },
        created_at: clock::now_string(),
        updated_at: clock::now_string(),
    })
    .await?;
    tx.commit().await?;
    tracing::info!(identity = %identity.name, %username, "password enrolled");
    Ok(username)
}

/// Creates and stores (in `tx`) an `erott` enrollment for the edge router `router_id`.
pub async fn create_erott(
    ctl: &Controller,
    tx: &mut WriteTx<'_>,
    router_id: &str,
) -> Result<EnrollmentRow, ApiError> {
    let exp = clock::now_unix() + ctl.config.pki.enrollment_ttl_secs;
    create_enrollment(ctl, tx, router_id, EnrollmentMethod::Erott, exp).await
}

/// A new token (`jti`) and its signed enrollment JWT.
fn sign_token(
    ctl: &Controller,
    subject_id: &str,
    method: &str,
    exp: i64,
) -> Result<(String, String), ApiError> {
    let jti = uuid::Uuid::new_v4().to_string();
    let claims = EnrollmentClaims {
        em: method,
        iss: &ctl.public_url,
        sub: subject_id,
        jti: &jti,
        exp,
    };
    let jwt = ctl.pki.sign_jwt(&claims)?;
    Ok((jti, jwt))
}

/// Gives the unused OTT enrollment `id` a new token and JWT expiring at `exp` (Unix
/// seconds); the old token stops working. `None` when there is no such enrollment.
pub async fn refresh_ott(ctl: &Controller, id: &str, exp: i64) -> Result<Option<()>, ApiError> {
    let Some(e) = pending_enrollment(ctl, id).await? else {
        return Ok(None);
    };
    let (jti, jwt) = sign_token(ctl, &e.identity_id, e.method.name(), exp)?;
    let mut tx = ctl.store.begin_write().await?;
    let replaced = tx.replace_enrollment_token(id, &jti, &jwt, exp).await?;
    tx.commit().await?;
    Ok(replaced.then_some(()))
}

/// The methods of enrollments an administrator lists, reads, refreshes and deletes
/// (`/enrollments`): identities' one-time tokens.
pub const IDENTITY_METHODS: [&str; 3] = [OTT, crate::thirdparty_ca::enrollment::OTTCA, UPDB];

/// The unused identity enrollment `id`, whatever its method.
pub async fn pending_enrollment(
    ctl: &Controller,
    id: &str,
) -> Result<Option<EnrollmentRow>, ApiError> {
    for method in IDENTITY_METHODS {
        if let Some(e) = ctl.store.enrollment_by_id(method, id).await? {
            return Ok(Some(e));
        }
    }
    Ok(None)
}

/// Creates and stores a one-time enrollment of `method` for `subject_id` (kept in the
/// enrollments table's `identity_id` column for identities and routers alike).
pub(crate) async fn create_enrollment(
    ctl: &Controller,
    tx: &mut WriteTx<'_>,
    identity_id: &str,
    method: EnrollmentMethod,
    exp: i64,
) -> Result<EnrollmentRow, ApiError> {
    let (jti, jwt) = sign_token(ctl, identity_id, method.name(), exp)?;
    let row = EnrollmentRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        identity_id: identity_id.into(),
        method,
        jti,
        jwt,
        expires_at: exp,
        used: false,
        created_at: clock::now_string(),
    };
    tx.insert_enrollment(&row).await?;
    Ok(row)
}

pub(crate) fn invalid(msg: &str) -> ApiError {
    ApiError::InvalidEnrollmentToken(msg.into())
}

/// Redeems an OTT token with a PEM CSR; returns the issued certificate. The
/// CSR is checked before the token is consumed, so a bad CSR does not burn it.
pub async fn enroll_ott(
    ctl: &Controller,
    token: &str,
    csr_pem: &str,
) -> Result<IssuedCert, ApiError> {
    let now = clock::now_unix();
    let pending = ctl
        .store
        .enrollment_by_jti(token)
        .await?
        .filter(|e| !e.used && e.expires_at > now && e.method == EnrollmentMethod::Ott)
        .ok_or_else(|| invalid("the enrollment token is invalid, expired or already used"))?;
    let cert = ctl
        .pki
        .sign_client_csr(
            csr_pem,
            &pending.identity_id,
            ctl.config.pki.identity_cert_days,
        )
        .map_err(|e| invalid(&e.to_string()))?;
    let credential = Credential::Cert {
        fingerprint: cert.fingerprint.clone(),
        pem: Some(cert.pem.clone()),
    };
    redeem(ctl, token, now, &EnrollmentMethod::Ott, credential).await?;
    Ok(cert)
}

/// Consumes the token (once, whichever controller races for it) if it is of
/// `enrollment_method`, and stores the issued certificate's `credential`, in one
/// transaction.
async fn redeem(
    ctl: &Controller,
    token: &str,
    now: i64,
    enrollment_method: &EnrollmentMethod,
    credential: Credential,
) -> Result<(), ApiError> {
    let mut tx = ctl.store.begin_write().await?;
    let enr = tx
        .redeem_enrollment(token, now)
        .await?
        .filter(|e| e.method == *enrollment_method)
        .ok_or_else(|| invalid("the enrollment token is invalid, expired or already used"))?;
    tx.insert_authenticator(&AuthenticatorRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        identity_id: enr.identity_id,
        credential,
        created_at: clock::now_string(),
        updated_at: clock::now_string(),
    })
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Body of `POST /enroll?method=erott` (field names of OpenZiti's router enroller:
/// `serverCertCsr`, `certCsr`).
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErottRequest {
    /// PEM CSR for the edge listener's server certificate.
    pub server_cert_csr: String,
    /// PEM CSR for the control-channel client certificate.
    pub cert_csr: String,
}

/// What `erott` enrollment issues (answered as `{"data": {"serverCert", "cert", "ca"}}`,
/// the shape OpenZiti's router enroller reads).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErottResult {
    /// Server certificate (PEM) for the router's edge listener.
    pub server_cert: String,
    /// Client certificate (PEM) for the control channel.
    pub cert: String,
    /// CA bundle (PEM): signing CA then root.
    pub ca: String,
}

/// DNS names / IP addresses for a router's server certificate: the host of its
/// `hostname`, of each `supportedProtocols` URL (`tls://host:port`) and the listed
/// `serverCertSans`.
pub fn router_server_names(router: &crate::model::EdgeRouter) -> Vec<String> {
    let mut names = vec![router.hostname.clone()];
    names.extend(
        router
            .supported_protocols
            .values()
            .filter_map(|url| weft_identity::endpoint::host(url)),
    );
    names.extend(router.server_cert_sans.iter().cloned());
    names.retain(|n| !n.is_empty());
    names.sort();
    names.dedup();
    names
}

/// Redeems an `erott` token: issues the router's server and client certificates
/// (subjects chosen here, CN = router id), records the client certificate's
/// fingerprint as the router's credential and consumes the token, once, atomically.
/// Both CSRs are checked before the token is consumed.
pub async fn enroll_erott(
    ctl: &Controller,
    token: &str,
    req: &ErottRequest,
) -> Result<ErottResult, ApiError> {
    let now = clock::now_unix();
    let pending = ctl
        .store
        .enrollment_by_jti(token)
        .await?
        .filter(|e| !e.used && e.expires_at > now && e.method == EnrollmentMethod::Erott)
        .ok_or_else(|| invalid("the enrollment token is invalid, expired or already used"))?;
    let router = ctl
        .store
        .entity::<crate::model::EdgeRouter>(&pending.identity_id)
        .await?
        .ok_or_else(|| invalid("the edge router of this enrollment no longer exists"))?;
    let days = ctl.config.pki.router_cert_days;
    // The names the router's config asks for (its advertised host, extra names), as an
    // OpenZiti router's CSR carries them, beside those the router's entity gives.
    let mut names = crate::pki::Pki::requested_names(&req.server_cert_csr)
        .map_err(|e| invalid(&format!("serverCertCsr: {e}")))?;
    names.extend(router_server_names(&router.doc));
    names.sort();
    names.dedup();
    let server = ctl
        .pki
        .sign_csr(
            &req.server_cert_csr,
            &router.id,
            days,
            &CertProfile::RouterServer { names },
        )
        .map_err(|e| invalid(&format!("serverCertCsr: {e}")))?;
    let client = ctl
        .pki
        .sign_csr(&req.cert_csr, &router.id, days, &CertProfile::RouterClient)
        .map_err(|e| invalid(&format!("certCsr: {e}")))?;
    let credential = Credential::Router {
        fingerprint: client.fingerprint.clone(),
        pem: client.pem.clone(),
    };
    redeem(ctl, token, now, &EnrollmentMethod::Erott, credential).await?;
    tracing::info!(router = %router.name, id = %router.id, "edge router enrolled");
    Ok(ErottResult {
        server_cert: server.pem,
        cert: client.pem,
        ca: ctl.pki.ca_bundle_pem(),
    })
}
