//! 3rd-party CAs (`/cas`): certificate authorities outside the controller's PKI whose
//! client certificates may enroll (`ottca`, `ca`), log in (`method=cert`) and open edge
//! connections once an administrator proved the CA's key is theirs (`verify`).
//!
//! Facts from openziti/edge-api `source/management/cas.yml` and openziti/ziti
//! `controller/model/{ca_model,ca_manager,enrollment_mod_ca,enrollment_mod_ottca,
//! authenticator_mod_cert}.go`:
//!
//! - a CA is created unverified with a random `verificationToken`; `POST
//!   /cas/{id}/verify` with a certificate the CA signed whose common name is that token
//!   verifies it ([`cert::check_verification`]);
//! - only a verified CA with `isAuthEnabled` authenticates anybody, and only a verified
//!   one with `isAutoCaEnrollmentEnabled` enrolls new identities (`/enroll?method=ca`);
//!   `ottca` enrollments need `isOttCaEnrollmentEnabled`;
//! - `identityRoles` become the role attributes of identities it enrolls, named by
//!   `identityNameFormat` ([`name_format`]); `externalIdClaim` ([`claim`]) binds a
//!   certificate to an identity by its `externalId` instead of by fingerprint.
//!
//! The CA documents are entities of [`crate::model::Kind::Cas`]; the controller sets
//! `fingerprint`, `isVerified` and `verificationToken` itself (any given in a body are
//! ignored, as OpenZiti's read-only fields are).

pub mod cert;
pub mod claim;
pub mod enrollment;
mod error;
pub mod name_format;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use error::CaError;

use crate::error::{ApiError, StoreError};
use crate::model::{CaRecord, Kind};
use crate::store::{EntityRow, Store, WriteTx};

/// Most CAs a controller holds (each is tried on every CA enrollment and certificate
/// login, and routers trust them all).
pub const MAX_CAS: usize = 256;
/// Most bytes of `identityNameFormat`.
pub const MAX_NAME_FORMAT: usize = 255;

/// Fields only the controller writes.
const SERVER_FIELDS: [&str; 3] = ["fingerprint", "isVerified", "verificationToken"];
/// The fields an `externalIdClaim` object must all name (each may be null).
const CLAIM_FIELDS: [&str; 6] = [
    "location",
    "matcher",
    "matcherCriteria",
    "parser",
    "parserCriteria",
    "index",
];

/// A CA document as created and updated (`caCreate`, `caUpdate`), without `name` and
/// `tags`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaDocument {
    /// PEM of the CA certificate (create only; its first block must be a CA).
    pub cert_pem: String,
    /// Whether the CA's certificates may enroll new identities (`/enroll?method=ca`).
    pub is_auto_ca_enrollment_enabled: bool,
    /// Whether `ottca` enrollments may name the CA.
    pub is_ott_ca_enrollment_enabled: bool,
    /// Whether the CA's certificates log in (once verified).
    pub is_auth_enabled: bool,
    /// Role attributes of the identities the CA enrolls.
    pub identity_roles: Vec<String>,
    /// Names of the identities the CA enrolls (`[caName]-[commonName]` when blank).
    #[serde(default)]
    pub identity_name_format: String,
    /// Where the certificates carry an identity's `externalId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id_claim: Option<claim::ExternalIdClaim>,
}

/// What a CA detail (`caDetail`) shows besides the stored document.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaExtras {
    /// SHA-1 fingerprint of the CA certificate.
    pub fingerprint: String,
    /// Whether the CA was verified.
    pub is_verified: bool,
    /// The common name a verification certificate must have.
    pub verification_token: String,
    /// `self`, `verify` while unverified, `jwt` while auto enrollment is on.
    #[serde(rename = "_links")]
    pub links: Map<String, Value>,
}

/// The detail fields of the stored CA `row`.
pub fn extras(row: &EntityRow) -> Result<CaExtras, StoreError> {
    let record: CaRecord = row.doc()?;
    let verified = record.is_verified;
    let link = |path: &str| json!({"href": format!("./cas/{}{path}", row.id)});
    let mut links = Map::new();
    links.insert("self".into(), link(""));
    if !verified {
        let mut verify = link("/verify");
        verify["method"] = json!("POST");
        links.insert("verify".into(), verify);
    }
    if record.document.is_auto_ca_enrollment_enabled {
        links.insert("jwt".into(), link("/jwt"));
    }
    Ok(CaExtras {
        fingerprint: record.fingerprint,
        is_verified: verified,
        verification_token: record.verification_token,
        links,
    })
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::CouldNotValidate(msg.into())
}

/// Validates a CA document (`obj` without `name` and `tags`) for
/// [`crate::model::normalize`]; the controller's own fields are dropped.
pub fn normalize_document(mut obj: Map<String, Value>) -> Result<Value, ApiError> {
    for f in SERVER_FIELDS {
        obj.remove(f);
    }
    if let Some(Value::Object(c)) = obj.get("externalIdClaim") {
        if let Some(missing) = CLAIM_FIELDS.iter().find(|f| !c.contains_key(**f)) {
            return Err(invalid(format!(
                "externalIdClaim.{missing} is required (it may be null)"
            )));
        }
    }
    let mut d: CaDocument = serde_json::from_value(Value::Object(obj))
        .map_err(|e| invalid(format!("invalid body: {e}")))?;
    cert::parse_ca_pem(&d.cert_pem).map_err(ApiError::Ca)?;
    crate::model::validate_attributes(&d.identity_roles)?;
    crate::model::check_text("identityNameFormat", &d.identity_name_format)?;
    if d.identity_name_format.len() > MAX_NAME_FORMAT {
        return Err(invalid("identityNameFormat is too long"));
    }
    if d.identity_name_format.trim().is_empty() {
        d.identity_name_format = name_format::DEFAULT_FORMAT.into();
    }
    if let Some(c) = &d.external_id_claim {
        c.rule().map_err(|e| invalid(e.to_string()))?;
    }
    serde_json::to_value(&d).map_err(|e| ApiError::Internal(format!("serialize: {e}")))
}

/// A new verification token: 12 random characters of `0-9a-zA-Z` (OpenZiti makes a
/// short random id; the token is public, it only names the certificate to sign).
fn verification_token() -> Result<String, ApiError> {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut raw = [0u8; 12];
    crate::pki::random_bytes(&mut raw)?;
    Ok(raw
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

/// Sets the controller's fields of a new CA (`fingerprint`, unverified, a new
/// `verificationToken`) and refuses a CA beyond [`MAX_CAS`]. Runs in the creating
/// transaction.
pub async fn prepare_create(tx: &mut WriteTx<'_>, data: &mut Value) -> Result<(), ApiError> {
    if tx.list_all(Kind::Cas.collection()).await?.len() >= MAX_CAS {
        return Err(ApiError::Ca(CaError::TooManyCas(MAX_CAS)));
    }
    into_record(data, |document| {
        let ca = cert::parse_ca_pem(&document.cert_pem).map_err(ApiError::Ca)?;
        Ok(CaRecord {
            document,
            fingerprint: ca.fingerprint,
            is_verified: false,
            verification_token: verification_token()?,
        })
    })
}

/// Replaces the normalized CA document `data` by the record `record` makes of it.
fn into_record(
    data: &mut Value,
    record: impl FnOnce(CaDocument) -> Result<CaRecord, ApiError>,
) -> Result<(), ApiError> {
    let document: CaDocument = serde_json::from_value(data.take())
        .map_err(|e| ApiError::Internal(format!("a normalized CA document: {e}")))?;
    *data = serde_json::to_value(record(document)?).map_err(StoreError::from)?;
    Ok(())
}

/// Prepares the document of a CA update before it is validated: `certPem` cannot
/// change (the stored one is kept; a body may repeat it), and a PATCH's
/// `externalIdClaim` is merged into the stored one.
pub fn prepare_update(
    stored: &Value,
    patch: &Map<String, Value>,
    doc: &mut Map<String, Value>,
    merge: bool,
) -> Result<(), ApiError> {
    let stored_pem = stored["certPem"].clone();
    if let Some(given) = patch.get("certPem") {
        if *given != stored_pem {
            return Err(invalid("certPem cannot be changed"));
        }
    }
    doc.insert("certPem".into(), stored_pem);
    if let (true, Some(given)) = (merge, patch.get("externalIdClaim")) {
        let claim = match (stored.get("externalIdClaim"), given) {
            (Some(Value::Object(old)), Value::Object(new)) => {
                let mut merged = old.clone();
                merged.extend(new.clone());
                Value::Object(merged)
            }
            _ => given.clone(),
        };
        doc.insert("externalIdClaim".into(), claim);
    }
    Ok(())
}

/// Copies the controller's fields of the stored CA into its updated document.
pub fn restore_server_fields(stored: &EntityRow, data: &mut Value) -> Result<(), ApiError> {
    let stored: CaRecord = stored.doc()?;
    into_record(data, |document| Ok(CaRecord { document, ..stored }))
}

/// A stored CA, as enrollment, login and the routers use it.
#[derive(Debug, Clone)]
pub struct StoredCa {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// DER of the CA certificate.
    pub der: Vec<u8>,
    /// Verified by its owner.
    pub verified: bool,
    /// `isAuthEnabled`.
    pub auth: bool,
    /// `isAutoCaEnrollmentEnabled`.
    pub auto_ca: bool,
    /// `isOttCaEnrollmentEnabled`.
    pub ott_ca: bool,
    /// `identityRoles`.
    pub identity_roles: Vec<String>,
    /// `identityNameFormat`.
    pub name_format: String,
    /// The `externalIdClaim` rule, if any.
    pub claim: Option<claim::ClaimRule>,
}

impl StoredCa {
    /// The CA of a stored row; `None` when its document no longer makes sense (it was
    /// validated when written, so only a damaged store gives that).
    pub fn from_row(row: &EntityRow) -> Option<Self> {
        Self::from_record(&row.id, &row.name, row.doc().ok()?)
    }

    /// The CA stored as `record` under `id` and `name`; `None` as [`Self::from_row`].
    pub fn from_record(id: &str, name: &str, record: CaRecord) -> Option<Self> {
        let doc = record.document;
        let ca = cert::parse_ca_pem(&doc.cert_pem).ok()?;
        let claim = match &doc.external_id_claim {
            Some(c) => c.rule().ok()?,
            None => None,
        };
        Some(Self {
            id: id.to_owned(),
            name: name.to_owned(),
            der: ca.der,
            verified: record.is_verified,
            auth: doc.is_auth_enabled,
            auto_ca: doc.is_auto_ca_enrollment_enabled,
            ott_ca: doc.is_ott_ca_enrollment_enabled,
            identity_roles: doc.identity_roles,
            name_format: doc.identity_name_format,
            claim,
        })
    }

    /// Whether the CA's certificates log in and reach routers.
    pub fn trusted_for_auth(&self) -> bool {
        self.verified && self.auth
    }
}

/// Every stored CA, ordered by creation.
pub async fn load_all(store: &Store) -> Result<Vec<StoredCa>, StoreError> {
    let mut rows = store.list_all(Kind::Cas.collection()).await?;
    rows.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    Ok(rows.iter().filter_map(StoredCa::from_row).collect())
}

/// DER of every CA that is verified and has `isAuthEnabled`: the trust routers get
/// for edge connections, besides the controller's own CA.
pub async fn trusted_for_auth(store: &Store) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(load_all(store)
        .await?
        .into_iter()
        .filter(StoredCa::trusted_for_auth)
        .map(|c| c.der)
        .collect())
}

/// Claims of the JWT `GET /cas/{id}/jwt` answers (openziti/ziti
/// `controller/internal/routes/ca_router.go`): static, without expiry.
#[derive(Debug, Serialize)]
pub struct CaJwtClaims<'a> {
    /// `ca`.
    pub em: &'a str,
    /// The controller URL with a trailing slash.
    pub iss: String,
    /// The CA id.
    pub sub: &'a str,
    /// The CA id.
    pub jti: &'a str,
    /// `["openziti-enroller"]`.
    pub aud: [&'a str; 1],
}

/// The enrollment JWT of CA `id`.
pub fn jwt_claims<'a>(public_url: &str, id: &'a str) -> CaJwtClaims<'a> {
    CaJwtClaims {
        em: "ca",
        iss: format!("{}/", public_url.trim_end_matches('/')),
        sub: id,
        jti: id,
        aud: ["openziti-enroller"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&key).unwrap().pem()
    }

    fn doc(extra: Value) -> Map<String, Value> {
        let mut m = json!({"certPem": ca_pem(), "isAutoCaEnrollmentEnabled": true,
            "isOttCaEnrollmentEnabled": false, "isAuthEnabled": true, "identityRoles": ["r"]})
        .as_object()
        .unwrap()
        .clone();
        m.extend(extra.as_object().unwrap().clone());
        m
    }

    #[test]
    fn documents_are_validated_and_server_fields_dropped() {
        let v = normalize_document(doc(json!({"isVerified": true, "fingerprint": "x"}))).unwrap();
        assert!(v.get("isVerified").is_none());
        assert_eq!(v["identityNameFormat"], json!(name_format::DEFAULT_FORMAT));
        for bad in [
            json!({"identityRoles": ["#bad"]}),
            json!({"bogus": 1}),
            json!({"externalIdClaim": {"location": "COMMON_NAME"}}),
            json!({"externalIdClaim": {"location": "COMMON_NAME", "matcher": "SCHEME",
                "matcherCriteria": "x", "parser": "NONE", "parserCriteria": null, "index": 0}}),
            json!({"identityNameFormat": "a\u{0}"}),
        ] {
            let e = normalize_document(doc(bad.clone())).unwrap_err();
            assert_eq!(e.code(), "COULD_NOT_VALIDATE", "{bad}");
        }
        let mut m = doc(json!({}));
        m.remove("isAuthEnabled");
        assert_eq!(
            normalize_document(m).unwrap_err().code(),
            "COULD_NOT_VALIDATE"
        );
        let e = normalize_document(doc(json!({"certPem": "nope"}))).unwrap_err();
        assert_eq!(e.code(), "INVALID_CERT_PEM");
    }

    #[test]
    fn updates_keep_the_certificate_and_merge_the_claim() {
        let stored =
            json!({"certPem": "P", "externalIdClaim": {"location": "COMMON_NAME", "index": 0}});
        let patch = json!({"externalIdClaim": {"index": 2}})
            .as_object()
            .unwrap()
            .clone();
        let mut d = Map::new();
        prepare_update(&stored, &patch, &mut d, true).unwrap();
        assert_eq!(d["certPem"], json!("P"));
        assert_eq!(
            d["externalIdClaim"],
            json!({"location": "COMMON_NAME", "index": 2})
        );
        let patch = json!({"certPem": "Q"}).as_object().unwrap().clone();
        assert!(prepare_update(&stored, &patch, &mut Map::new(), false).is_err());
        let jwt = jwt_claims("https://c:1", "id1");
        assert_eq!(jwt.iss, "https://c:1/");
        assert_eq!(verification_token().unwrap().len(), 12);
    }
}
