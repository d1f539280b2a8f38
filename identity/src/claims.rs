//! The claims of an enrollment token, read before its signature can be checked.

use base64::Engine;
use serde::Deserialize;

use crate::IdentityError;

/// The claims of an enrollment JWT (OpenZiti's enrollment token: `em` the method,
/// `iss` the controller, `sub` the identity or router, `jti` the one-time token).
#[derive(Debug, Clone, Deserialize)]
pub struct EnrollmentClaims {
    /// Method: `ott` (identity), `erott` (edge router), `ottca`, `ca`.
    pub em: String,
    /// The controller's base URL.
    pub iss: String,
    /// The identity or router id.
    pub sub: String,
    /// The one-time token.
    pub jti: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

impl EnrollmentClaims {
    /// Fails with [`IdentityError::Expired`] when the token expired before `now_unix`.
    pub fn check_expiry(&self, now_unix: i64) -> Result<(), IdentityError> {
        if self.exp <= now_unix {
            return Err(IdentityError::Expired {
                seconds_ago: now_unix - self.exp,
            });
        }
        Ok(())
    }

    /// Fails with [`IdentityError::Token`] unless the method is `method`.
    pub fn expect_method(&self, method: &str, what: &str) -> Result<(), IdentityError> {
        if self.em != method {
            return Err(IdentityError::Token(format!(
                "enrollment method {:?} is not supported here (this needs {what}, method {method:?})",
                self.em
            )));
        }
        Ok(())
    }
}

/// Decodes the JWT's claims without checking the signature (that needs the
/// controller's certificate, found through `iss`).
pub fn unverified_claims(jwt: &str) -> Result<EnrollmentClaims, IdentityError> {
    let bad = |e: &dyn std::fmt::Display| IdentityError::Token(e.to_string());
    let part = jwt
        .trim()
        .split('.')
        .nth(1)
        .ok_or_else(|| bad(&"not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| bad(&e))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(&e))
}

/// The current time in Unix seconds (0 before 1970, saturating).
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_read_without_verification_and_expiry_is_checked() {
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!(
            "{}.{}.sig",
            enc(r#"{"alg":"RS256"}"#),
            enc(r#"{"em":"erott","iss":"https://h:1","sub":"r1","jti":"j","exp":5}"#)
        );
        let c = unverified_claims(&jwt).unwrap();
        assert_eq!((c.em.as_str(), c.sub.as_str(), c.exp), ("erott", "r1", 5));
        assert!(c.check_expiry(4).is_ok());
        let err = c.check_expiry(10).unwrap_err();
        assert!(
            matches!(err, IdentityError::Expired { seconds_ago: 5 }),
            "{err}"
        );
        assert!(err.to_string().contains("expired"), "{err}");
        assert!(c.expect_method("erott", "a router token").is_ok());
        assert!(matches!(
            c.expect_method("ott", "an identity token"),
            Err(IdentityError::Token(_))
        ));
        assert!(matches!(
            unverified_claims("garbage"),
            Err(IdentityError::Token(_))
        ));
    }
}
