//! Identity enrollment with a one-time (`ott`) token.

use crate::claims::{now_unix, unverified_claims};
use crate::{Identity, IdentityError, bootstrap, csr};

/// Enrolls with the one-time JWT `jwt`: checks the controller (the JWT must be signed
/// by its certificate; its CA bundle is then fetched over a connection pinned to it),
/// makes a P-256 key, sends a CSR to `POST /edge/client/v1/enroll?method=ott` and
/// returns the identity. Nothing is written; see [`Identity::save`].
pub async fn enroll_ott(jwt: &str) -> Result<Identity, IdentityError> {
    let jwt = jwt.trim();
    let claims = unverified_claims(jwt)?;
    claims.expect_method("ott", "an identity's one-time token")?;
    claims.check_expiry(now_unix())?;
    let ca_pem = bootstrap::controller_ca_bundle(jwt, &claims).await?;
    let http = bootstrap::http_client(bootstrap::verified_tls(&ca_pem)?)?;
    let (key, csr) = csr::key_and_csr(&claims.sub)?;
    let url = format!(
        "{}/edge/client/v1/enroll?method=ott&token={}",
        claims.iss.trim_end_matches('/'),
        claims.jti
    );
    let res = http
        .post(&url)
        .header("content-type", "text/plain")
        .header("accept", "application/json")
        .body(csr)
        .send()
        .await
        .map_err(|e| IdentityError::connect(&url, e))?;
    let status = res.status();
    let body: serde_json::Value = res
        .json()
        .await
        .map_err(|e| IdentityError::Answer(format!("the enrollment answer is not JSON: {e}")))?;
    if !status.is_success() {
        return Err(IdentityError::Refused {
            status: status.as_u16(),
            code: body["error"]["code"]
                .as_str()
                .unwrap_or("UNKNOWN")
                .to_owned(),
            message: body["error"]["message"].as_str().unwrap_or("").to_owned(),
        });
    }
    let cert = body["data"]["cert"]
        .as_str()
        .ok_or_else(|| IdentityError::Answer("the enrollment answer has no data.cert".into()))?;
    Identity::from_pem(claims.iss, cert, key.serialize_pem(), ca_pem)
}
