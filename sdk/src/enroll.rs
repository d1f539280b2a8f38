//! Identity enrollment with a one-time (`ott`) JWT.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bootstrap;
use crate::error::{Error, ErrorKind, Result};
use crate::identity::Identity;

/// Enrolls with the one-time JWT `jwt`: checks the controller (the JWT must be signed
/// by its certificate; its CA bundle is then fetched over a connection pinned to it),
/// makes a P-256 key, sends a CSR and returns the identity. Nothing is written; see
/// [`Identity::save`].
pub async fn enroll(jwt: &str) -> Result<Identity> {
    let jwt = jwt.trim();
    let claims = bootstrap::unverified_claims(jwt)?;
    if claims.em != "ott" {
        return Err(Error::new(
            ErrorKind::Enrollment,
            format!(
                "enrollment method {:?} is not supported here (this needs an identity's `ott` token)",
                claims.em
            ),
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    claims.check_expiry(now)?;
    let ca_pem = bootstrap::controller_ca_bundle(jwt, &claims).await?;
    let http = bootstrap::http_client(bootstrap::verified_tls(&ca_pem)?)?;

    let key = rcgen::KeyPair::generate()
        .map_err(|e| Error::new(ErrorKind::Enrollment, format!("key generation: {e}")))?;
    let csr = bootstrap::csr(&claims.sub, &key)?;
    let url = format!(
        "{}/edge/client/v1/enroll?method=ott&token={}",
        claims.iss.trim_end_matches('/'),
        claims.jti
    );
    let res = http
        .post(url)
        .header("content-type", "text/plain")
        .header("accept", "application/json")
        .body(csr)
        .send()
        .await
        .map_err(|e| Error::controller(format!("enrollment request failed: {e}")))?;
    let status = res.status();
    let body: serde_json::Value = res
        .json()
        .await
        .map_err(|e| Error::controller(format!("enrollment answer is not JSON: {e}")))?;
    if !status.is_success() {
        let code = body["error"]["code"].as_str().unwrap_or("UNKNOWN");
        let message = body["error"]["message"].as_str().unwrap_or("");
        return Err(Error::new(
            ErrorKind::Enrollment,
            format!("the controller refused the enrollment ({status}, {code}): {message}"),
        ));
    }
    let cert = body["data"]["cert"]
        .as_str()
        .ok_or_else(|| Error::controller("enrollment answer has no data.cert"))?;
    Identity::from_pem(claims.iss, cert, key.serialize_pem(), ca_pem)
}
