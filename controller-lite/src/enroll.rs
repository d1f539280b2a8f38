//! One-time-token (OTT) enrollment: the enrollment JWT and redeeming it with a
//! CSR (spec `edge-client-api.md` §9; EDGE `controller/model/enrollment_model.go`,
//! `enrollment_mod_ott.go`).

use serde::Serialize;

use crate::clock;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::pki::IssuedCert;
use crate::store::{AuthenticatorRow, EnrollmentRow, RedeemError};

/// Claims of an enrollment JWT. Names and meaning follow GOSDK
/// `ziti/config/token.go` (`EnrollmentClaims`): `em` method, `iss` controller
/// URL, `sub` identity id, `jti` token, `exp` Unix expiry.
#[derive(Debug, Serialize)]
pub struct EnrollmentClaims<'a> {
    /// Enrollment method (`ott`).
    pub em: &'a str,
    /// Controller base URL.
    pub iss: &'a str,
    /// Identity id.
    pub sub: &'a str,
    /// The one-time token.
    pub jti: &'a str,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// Creates and stores an OTT enrollment for `identity_id`.
pub fn create_ott(ctl: &Controller, identity_id: &str) -> Result<EnrollmentRow, ApiError> {
    let jti = uuid::Uuid::new_v4().to_string();
    let exp = clock::now_unix() + ctl.config.enrollment_ttl_secs;
    let claims = EnrollmentClaims {
        em: "ott",
        iss: &ctl.public_url,
        sub: identity_id,
        jti: &jti,
        exp,
    };
    let jwt = ctl.pki.sign_jwt(&claims)?;
    let row = EnrollmentRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        identity_id: identity_id.into(),
        method: "ott".into(),
        jti,
        jwt,
        expires_at: exp,
        used: false,
        created_at: clock::now_string(),
    };
    ctl.store.insert_enrollment(&row)?;
    Ok(row)
}

fn invalid(msg: &str) -> ApiError {
    ApiError::InvalidEnrollmentToken(msg.into())
}

/// Redeems an OTT token with a PEM CSR; returns the issued certificate. The
/// CSR is checked before the token is consumed, so a bad CSR does not burn it.
pub fn enroll_ott(ctl: &Controller, token: &str, csr_pem: &str) -> Result<IssuedCert, ApiError> {
    let now = clock::now_unix();
    let pending = ctl
        .store
        .enrollment_by_jti(token)?
        .filter(|e| !e.used && e.expires_at > now && e.method == "ott")
        .ok_or_else(|| invalid("the enrollment token is invalid, expired or already used"))?;
    let cert = ctl
        .pki
        .sign_client_csr(csr_pem, &pending.identity_id, ctl.config.identity_cert_days)
        .map_err(|e| invalid(&e.to_string()))?;
    let fingerprint = cert.fingerprint.clone();
    let pem = cert.pem.clone();
    let res = ctl.store.redeem_enrollment(token, now, |enr| {
        Ok(AuthenticatorRow {
            id: uuid::Uuid::new_v4().simple().to_string(),
            identity_id: enr.identity_id.clone(),
            method: "cert".into(),
            fingerprint: Some(fingerprint),
            cert_pem: Some(pem),
            username: None,
            password_hash: None,
            created_at: clock::now_string(),
        })
    });
    match res {
        Ok(_) => Ok(cert),
        Err(RedeemError::Invalid) => Err(invalid(
            "the enrollment token is invalid, expired or already used",
        )),
        Err(RedeemError::Store(e)) => Err(e.into()),
    }
}
