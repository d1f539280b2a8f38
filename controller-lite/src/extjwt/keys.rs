//! Verification keys of external JWT signers, from a PEM certificate (`certPem`) or a JWK
//! set (`jwksEndpoint`), each typed so that only the algorithms of its key type verify
//! with it: RS*/PS* with RSA keys, ES256 with P-256 keys, ES384 with P-384 keys, EdDSA
//! with Ed25519 keys. Symmetric (`oct`) JWKs are never loaded, so no HS* token can
//! verify (openziti/ziti `controller/model/token_provider_cache.go` loads `x5c` chains
//! and JWK parameters alike).
//!
//! Pure functions over bytes: no I/O, no clock.

#![deny(clippy::disallowed_methods)]

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::public_key::PublicKey;

/// Most keys kept from one JWK set; the rest are ignored.
pub const MAX_KEYS: usize = 32;
/// Longest `kid` accepted, in bytes.
pub const MAX_KID_LEN: usize = 256;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bounds the verification cost).
pub const MAX_RSA_BITS: usize = 8192;

/// Why key material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM text does not hold exactly one certificate.
    #[error("{0}")]
    Pem(String),
    /// The certificate does not parse.
    #[error("the certificate does not parse: {0}")]
    Certificate(String),
    /// The key is of a type or size that is not accepted.
    #[error("unsupported key: {0}")]
    Unsupported(String),
    /// The JWK set is not a JSON object with a `keys` array.
    #[error("invalid JWK set: {0}")]
    Jwks(String),
}

/// The type of a verification key, which fixes the algorithms it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA (2048 to 8192 bits).
    Rsa,
    /// ECDSA on P-256.
    EcP256,
    /// ECDSA on P-384.
    EcP384,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// The JWS algorithms a key of this type verifies.
    pub fn algorithms(self) -> &'static [Algorithm] {
        match self {
            Self::Rsa => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            Self::EcP256 => &[Algorithm::ES256],
            Self::EcP384 => &[Algorithm::ES384],
            Self::Ed25519 => &[Algorithm::EdDSA],
        }
    }
}

/// A public key that verifies tokens, with its type.
#[derive(Clone)]
pub struct VerifyKey {
    /// The key's type.
    pub key_type: KeyType,
    /// The key as `jsonwebtoken` takes it.
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

fn rsa(n: &[u8], e: &[u8]) -> Result<VerifyKey, KeyError> {
    let n = strip_zeros(n);
    let e = strip_zeros(e);
    let bits = n.len() * 8;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(KeyError::Unsupported(format!(
            "RSA modulus of {bits} bits (accepted: {MIN_RSA_BITS} to {MAX_RSA_BITS})"
        )));
    }
    if e.is_empty() || e.len() > 4 {
        return Err(KeyError::Unsupported("RSA exponent out of range".into()));
    }
    Ok(VerifyKey {
        key_type: KeyType::Rsa,
        key: DecodingKey::from_rsa_raw_components(n, e),
    })
}

fn ec(key_type: KeyType, point: Vec<u8>) -> Result<VerifyKey, KeyError> {
    let coord = match key_type {
        KeyType::EcP256 => 32,
        KeyType::EcP384 => 48,
        _ => return Err(KeyError::Unsupported("not an EC key type".into())),
    };
    if point.len() != 1 + 2 * coord || point.first() != Some(&4) {
        return Err(KeyError::Unsupported(
            "EC public key is not an uncompressed point of its curve".into(),
        ));
    }
    Ok(VerifyKey {
        key_type,
        key: DecodingKey::from_ec_der(&point),
    })
}

fn ed25519(raw: &[u8]) -> Result<VerifyKey, KeyError> {
    if raw.len() != 32 {
        return Err(KeyError::Unsupported(
            "Ed25519 public key is not 32 bytes".into(),
        ));
    }
    Ok(VerifyKey {
        key_type: KeyType::Ed25519,
        key: DecodingKey::from_ed_der(raw),
    })
}

/// What a signer's certificate shows (the management detail's `fingerprint`,
/// `commonName`, `notBefore`, `notAfter`) and its key.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// Lower-case hex SHA-1 of the DER certificate.
    pub fingerprint: String,
    /// The subject's common name (empty when none).
    pub common_name: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// The certificate's public key.
    pub key: VerifyKey,
}

/// The key of a DER certificate and what it shows.
pub fn parse_cert_der(der: &[u8]) -> Result<CertInfo, KeyError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| KeyError::Certificate(e.to_string()))?;
    let spki = cert.public_key();
    let alg = &spki.algorithm.algorithm;
    let key = if *alg == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(PublicKey::RSA(k)) => rsa(k.modulus, k.exponent)?,
            _ => return Err(KeyError::Certificate("invalid RSA public key".into())),
        }
    } else if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        let key_type = match curve {
            Some(c) if c == OID_EC_P256 => KeyType::EcP256,
            Some(c) if c == OID_NIST_EC_P384 => KeyType::EcP384,
            _ => {
                return Err(KeyError::Unsupported(
                    "EC curve other than P-256 or P-384".into(),
                ));
            }
        };
        ec(key_type, spki.subject_public_key.data.to_vec())?
    } else if *alg == OID_SIG_ED25519 {
        ed25519(&spki.subject_public_key.data)?
    } else {
        return Err(KeyError::Unsupported(format!("public key algorithm {alg}")));
    };
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(CertInfo {
        fingerprint: weft_tls::fingerprint(der),
        common_name,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        key,
    })
}

/// The one certificate of `pem` (OpenZiti refuses PEM text with more or fewer than one,
/// `INVALID_CERT_PEM`) and its key.
pub fn parse_cert_pem(pem: &str) -> Result<CertInfo, KeyError> {
    let certs = weft_tls::pem::certificates(pem.as_bytes())
        .map_err(|e| KeyError::Pem(format!("no certificate: {e}")))?;
    match certs.as_slice() {
        [one] => parse_cert_der(one.as_ref()),
        more => Err(KeyError::Pem(format!(
            "exactly one certificate is required, found {}",
            more.len()
        ))),
    }
}

fn b64url(jwk: &Value, field: &str) -> Result<Vec<u8>, KeyError> {
    let s = jwk
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| KeyError::Unsupported(format!("JWK without {field}")))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| KeyError::Unsupported(format!("JWK {field}: {e}")))
}

/// The key of one JWK (RSA, EC P-256/P-384, OKP Ed25519, or the first `x5c`
/// certificate); `oct` and other types are refused.
pub fn key_from_jwk(jwk: &Value) -> Result<VerifyKey, KeyError> {
    if let Some(first) = jwk
        .get("x5c")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
    {
        let der = STANDARD
            .decode(first)
            .map_err(|e| KeyError::Unsupported(format!("JWK x5c: {e}")))?;
        return Ok(parse_cert_der(&der)?.key);
    }
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or_default();
    match (kty, crv) {
        ("RSA", _) => rsa(&b64url(jwk, "n")?, &b64url(jwk, "e")?),
        ("EC", "P-256" | "P-384") => {
            let key_type = if crv == "P-256" {
                KeyType::EcP256
            } else {
                KeyType::EcP384
            };
            let mut point = vec![4];
            point.extend(b64url(jwk, "x")?);
            point.extend(b64url(jwk, "y")?);
            ec(key_type, point)
        }
        ("OKP", "Ed25519") => ed25519(&b64url(jwk, "x")?),
        _ => Err(KeyError::Unsupported(format!(
            "JWK kty {kty:?} crv {crv:?} (accepted: RSA, EC P-256/P-384, OKP Ed25519)"
        ))),
    }
}

/// The keys of a JWK set by `kid`: keys without a `kid`, for encryption (`use` other
/// than `sig`), whose `alg` does not fit their type, or that do not parse are skipped;
/// at most [`MAX_KEYS`] are kept. An error when the document is not a JWK set.
pub fn parse_jwks(bytes: &[u8]) -> Result<Vec<(String, VerifyKey)>, KeyError> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| KeyError::Jwks(format!("not JSON: {e}")))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| KeyError::Jwks("no keys array".into()))?;
    let mut out: Vec<(String, VerifyKey)> = Vec::new();
    for jwk in keys {
        if out.len() >= MAX_KEYS {
            break;
        }
        let Some(kid) = jwk.get("kid").and_then(Value::as_str) else {
            continue;
        };
        if kid.is_empty() || kid.len() > MAX_KID_LEN || out.iter().any(|(k, _)| k == kid) {
            continue;
        }
        if jwk
            .get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        let Ok(key) = key_from_jwk(jwk) else {
            continue;
        };
        if let Some(alg) = jwk.get("alg").and_then(Value::as_str) {
            let fits = alg
                .parse::<Algorithm>()
                .is_ok_and(|a| key.key_type.algorithms().contains(&a));
            if !fits {
                continue;
            }
        }
        out.push((kid.to_owned(), key));
    }
    Ok(out)
}
