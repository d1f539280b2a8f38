//! Verification of an external JWT over its bytes, a key and the current time: the
//! header's algorithm must be one the key's type verifies (never `none`, never HS*),
//! the signature must verify, `exp` must be present and not past, `nbf` (when present)
//! reached, `iss` the signer's issuer and `aud` (a string or an array) hold the signer's
//! audience, each time check with [`LEEWAY_SECS`] of clock skew (openziti/ziti
//! `controller/model/authenticator_mod_ext_jwt.go` checks the same claims).
//!
//! Pure functions: the caller passes the time; nothing here reads a clock or does I/O.

#![deny(clippy::disallowed_methods)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::keys::{MAX_KID_LEN, VerifyKey};

/// Longest bearer token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest encoded JWT header accepted, in bytes.
pub const MAX_HEADER_LEN: usize = 2048;
/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 30;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Longer than [`MAX_TOKEN_LEN`] or a header longer than [`MAX_HEADER_LEN`].
    #[error("the token is too large")]
    TooLarge,
    /// Not three base64url parts with JSON objects.
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    /// `alg` is `none`, HS*, unknown, or not one the key's type verifies.
    #[error("the token's algorithm {0:?} is not accepted for this key")]
    Algorithm(String),
    /// No key with the header's `kid`.
    #[error("no key of the signer has the token's kid")]
    UnknownKid,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` is missing or not a number.
    #[error("the token has no valid exp claim")]
    MissingExp,
    /// `exp` has passed.
    #[error("the token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the signer's issuer.
    #[error("the token's issuer does not match the signer")]
    Issuer,
    /// `aud` does not hold the signer's audience.
    #[error("the token's audience does not match the signer")]
    Audience,
    /// The claim naming the identity is missing or not a non-empty string.
    #[error("the token has no string claim {0:?}")]
    MissingClaim(String),
}

/// What can be read from a token before its signature is checked, to pick the signer
/// and the key: never trusted beyond that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The header's `alg`, as written.
    pub alg: String,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The payload's `iss`.
    pub issuer: Option<String>,
}

fn decode_part(part: &str, max: usize) -> Result<Map<String, Value>, VerifyError> {
    if part.len() > max {
        return Err(VerifyError::TooLarge);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| VerifyError::Malformed("a part is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(VerifyError::Malformed("a part is not a JSON object")),
    }
}

/// Reads the header's `alg` and `kid` and the payload's `iss`, within the size limits.
pub fn peek(token: &str) -> Result<Unverified, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed("not three parts"));
    };
    let header = decode_part(header, MAX_HEADER_LEN)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(VerifyError::Malformed("no alg"))?
        .to_owned();
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KID_LEN => Some(k.clone()),
        Some(_) => return Err(VerifyError::Malformed("kid is not a short string")),
    };
    let payload = decode_part(payload, MAX_TOKEN_LEN)?;
    let issuer = payload
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Unverified { alg, kid, issuer })
}

/// What a signer requires of a token.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The `iss`.
    pub issuer: &'a str,
    /// A value `aud` must be or hold.
    pub audience: &'a str,
    /// The claim naming the identity: a claim name, or a JSON pointer (`/a/b`).
    pub claims_property: &'a str,
}

/// A token whose signature and claims were checked.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The algorithm it was signed with.
    pub alg: Algorithm,
    /// The value of the signer's claims property.
    pub identity_claim: String,
    /// Every claim.
    pub claims: Map<String, Value>,
}

/// The algorithm named by `alg` when `key` verifies it.
pub fn algorithm_for(alg: &str, key: &VerifyKey) -> Result<Algorithm, VerifyError> {
    // `none` and the HMAC family never verify: a public key is no secret.
    let parsed: Algorithm = alg
        .parse()
        .map_err(|_| VerifyError::Algorithm(alg.to_owned()))?;
    if key.key_type.algorithms().contains(&parsed) {
        Ok(parsed)
    } else {
        Err(VerifyError::Algorithm(alg.to_owned()))
    }
}

fn numeric(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, ()> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        // Fractional NumericDates are allowed (RFC 7519 §2); the whole seconds count.
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(()),
        Some(_) => Err(()),
    }
}

/// The claim `property` names: a JSON pointer when it starts with `/`, else a top-level
/// claim name.
pub fn claim<'a>(claims: &'a Map<String, Value>, property: &str) -> Option<&'a Value> {
    if property.starts_with('/') {
        let mut cur: Option<&Value> = None;
        for token in property.split('/').skip(1) {
            let token = token.replace("~1", "/").replace("~0", "~");
            cur = match cur {
                None => claims.get(&token),
                Some(Value::Object(m)) => m.get(&token),
                Some(Value::Array(a)) => token.parse::<usize>().ok().and_then(|i| a.get(i)),
                Some(_) => None,
            };
            cur?;
        }
        cur
    } else {
        claims.get(property)
    }
}

/// Verifies `token` with `key` against `expected` at Unix time `now`.
pub fn verify(
    token: &str,
    key: &VerifyKey,
    expected: &Expected<'_>,
    now: i64,
) -> Result<Verified, VerifyError> {
    let head = peek(token)?;
    let alg = algorithm_for(&head.alg, key)?;
    // The library checks the signature and the algorithm; the claims are checked below
    // against `now`, not the library's clock.
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature
                | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
                | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_)
                | jsonwebtoken::errors::ErrorKind::InvalidEddsaKey
                | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat
                | jsonwebtoken::errors::ErrorKind::Provider(_) => VerifyError::Signature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    VerifyError::Algorithm(head.alg.clone())
                }
                _ => VerifyError::Malformed("the token does not decode"),
            }
        })?;
    let claims = data.claims;
    let exp = numeric(&claims, "exp")
        .ok()
        .flatten()
        .ok_or(VerifyError::MissingExp)?;
    if now > exp.saturating_add(LEEWAY_SECS) {
        return Err(VerifyError::Expired);
    }
    match numeric(&claims, "nbf") {
        Err(()) => return Err(VerifyError::Malformed("nbf is not a number")),
        Ok(Some(nbf)) if now.saturating_add(LEEWAY_SECS) < nbf => {
            return Err(VerifyError::NotYetValid);
        }
        Ok(_) => {}
    }
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(VerifyError::Issuer);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == expected.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(expected.audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(VerifyError::Audience);
    }
    let identity_claim = claim(&claims, expected.claims_property)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| VerifyError::MissingClaim(expected.claims_property.to_owned()))?
        .to_owned();
    Ok(Verified {
        alg,
        identity_claim,
        claims,
    })
}
