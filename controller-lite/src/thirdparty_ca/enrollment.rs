//! Enrollment and login with certificates of 3rd-party CAs (openziti/ziti
//! `controller/model/enrollment_mod_ottca.go`, `enrollment_mod_ca.go`,
//! `authenticator_mod_cert.go`):
//!
//! - `ottca`: an administrator creates an enrollment naming a CA; the client redeems
//!   its token over TLS with a certificate that CA issued (for client authentication),
//!   which becomes the identity's certificate authenticator;
//! - `ca`: no token; a client certificate issued by a verified CA with
//!   `isAutoCaEnrollmentEnabled` creates a new identity (or, with an `externalIdClaim`,
//!   finds the identity of that `externalId`);
//! - login: a certificate authenticator whose certificate chains to a verified CA with
//!   `isAuthEnabled` (or, for CAs with an `externalIdClaim`, the identity of the claim).
//!
//! The certificate is the one the client presented in the TLS handshake of the API
//! (which proved it holds the key). Authenticators of 3rd-party certificates keep no
//! PEM: the chain is verified again at every login, and such certificates are not the
//! network's to extend.

use rustls::pki_types::CertificateDer;
use serde_json::{Map, json};

use super::{CaError, StoredCa, cert, load_all, name_format};
use crate::clock;
use crate::controller::Controller;
use crate::enroll;
use crate::error::{ApiError, StoreError};
use crate::model::Kind;
use crate::store::{
    AuthenticatorRow, CERT_METHOD, Credential, EnrollmentMethod, EnrollmentRow, EntityRow, WriteTx,
};

/// Enrollment method redeemed with a certificate of the enrollment's CA.
pub const OTTCA: &str = "ottca";
/// Token-less enrollment with a certificate of an auto-enrolling CA.
pub const CA: &str = "ca";

fn ca_error(e: CaError) -> ApiError {
    ApiError::Ca(e)
}

/// The leaf and the intermediates of a presented chain.
type Chain<'a> = (&'a CertificateDer<'static>, &'a [CertificateDer<'static>]);

fn split<'a>(certs: &'a [CertificateDer<'static>], ottca: bool) -> Result<Chain<'a>, ApiError> {
    certs
        .split_first()
        .ok_or(ApiError::Ca(CaError::NoClientCert { ottca }))
}

/// Creates (in `tx`) an `ottca` enrollment of `identity_id` for the CA `ca_key` (id or
/// name), expiring at `expires_at` or after the configured lifetime.
pub async fn create_ottca(
    ctl: &Controller,
    tx: &mut WriteTx<'_>,
    identity_id: &str,
    ca_key: &str,
    expires_at: Option<i64>,
) -> Result<EnrollmentRow, ApiError> {
    let ca = tx
        .get_entity_by_id_or_name(Kind::Cas.collection(), ca_key)
        .await?
        .ok_or_else(|| ApiError::CouldNotValidate(format!("CA {ca_key:?} does not exist")))?;
    let exp = expires_at.unwrap_or_else(|| clock::now_unix() + ctl.config.pki.enrollment_ttl_secs);
    let method = EnrollmentMethod::Ottca { ca_id: ca.id };
    enroll::create_enrollment(ctl, tx, identity_id, method, exp).await
}

/// The stored CA `id`, if it still exists and makes sense.
async fn stored_ca(ctl: &Controller, id: &str) -> Result<Option<StoredCa>, StoreError> {
    Ok(ctl
        .store
        .get_entity(Kind::Cas.collection(), id)
        .await?
        .as_ref()
        .and_then(StoredCa::from_row))
}

/// A new certificate authenticator of `identity_id` for the certificate `fingerprint`;
/// [`CaError::CertInUse`] when another authenticator holds it.
async fn insert_cert_authenticator(
    tx: &mut WriteTx<'_>,
    identity_id: &str,
    fingerprint: &str,
    ca_id: &str,
) -> Result<(), ApiError> {
    let now = clock::now_string();
    let id = uuid::Uuid::new_v4().simple().to_string();
    tx.insert_authenticator(&AuthenticatorRow {
        id: id.clone(),
        identity_id: identity_id.into(),
        credential: Credential::Cert {
            fingerprint: fingerprint.into(),
            pem: None,
        },
        created_at: now.clone(),
        updated_at: now,
    })
    .await
    .map_err(|e| match e {
        StoreError::Duplicate(_) => ca_error(CaError::CertInUse {
            fingerprint: fingerprint.into(),
        }),
        other => other.into(),
    })?;
    // Its API sessions end with the CA's trust ([`WriteTx::end_api_sessions_of_ca`]).
    tx.set_authenticator_ca(&id, ca_id).await?;
    Ok(())
}

/// Redeems an `ottca` token with the TLS client certificate `certs` (leaf first): the
/// enrollment's CA must allow `ottca` and have issued the certificate for client
/// authentication. Token, identity and certificate are checked before the token is
/// consumed; consuming it and storing the authenticator are one transaction.
pub async fn enroll_ottca(
    ctl: &Controller,
    token: &str,
    certs: &[CertificateDer<'static>],
) -> Result<(), ApiError> {
    let now = clock::now_unix();
    let pending = ctl
        .store
        .enrollment_by_jti(token)
        .await?
        .filter(|e| !e.used && e.expires_at > now)
        .ok_or_else(|| {
            enroll::invalid("the enrollment token is invalid, expired or already used")
        })?;
    let EnrollmentMethod::Ottca { ca_id } = &pending.method else {
        return Err(ca_error(CaError::InvalidEnrollMethod(OTTCA.into())));
    };
    let ca = stored_ca(ctl, ca_id)
        .await?
        .filter(|c| c.ott_ca)
        .ok_or(ApiError::Ca(CaError::EnrollmentCaNotValid))?;
    let (leaf, intermediates) = split(certs, true)?;
    if !cert::chains_to(&ca.der, leaf, intermediates, now) {
        return Err(ca_error(CaError::CertificateFailedValidation(format!(
            "the certificate was not issued by CA {:?} for client authentication",
            ca.name
        ))));
    }
    let fingerprint = weft_tls::fingerprint(leaf.as_ref());
    let mut tx = ctl.store.begin_write().await?;
    let enr = tx
        .redeem_enrollment(token, now)
        .await?
        .filter(|e| e.method == pending.method)
        .ok_or_else(|| {
            enroll::invalid("the enrollment token is invalid, expired or already used")
        })?;
    if tx
        .has_authenticator_method(&enr.identity_id, CERT_METHOD)
        .await?
    {
        return Err(ApiError::MaxAuthenticators(format!(
            "identity {:?} already has a certificate authenticator",
            enr.identity_id
        )));
    }
    insert_cert_authenticator(&mut tx, &enr.identity_id, &fingerprint, &ca.id).await?;
    tx.commit().await?;
    tracing::info!(identity = %enr.identity_id, ca = %ca.name, "ottca enrollment");
    Ok(())
}

/// What `ca` enrollment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaEnrolled {
    /// A new identity with this id (and the certificate as its authenticator).
    Created(String),
    /// The existing identity of the certificate's `externalId`.
    Existing(String),
}

/// The first CA of `cas` that may auto-enroll and issued `leaf` for client
/// authentication.
fn auto_enrolling_ca<'a>(
    cas: &'a [StoredCa],
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: i64,
) -> Result<&'a StoredCa, CaError> {
    let mut candidates = cas.iter().filter(|c| c.verified && c.auto_ca).peekable();
    if candidates.peek().is_none() {
        return Err(CaError::NoValidCas);
    }
    candidates
        .find(|c| cert::chains_to(&c.der, leaf, intermediates, now))
        .ok_or(CaError::CertFailedValidation)
}

/// The external id `ca`'s claim finds in `leaf` (`None` when the CA has no claim).
fn claimed_external_id(ca: &StoredCa, leaf: &[u8]) -> Result<Option<String>, CaError> {
    let Some(rule) = &ca.claim else {
        return Ok(None);
    };
    let names = cert::names(leaf)
        .ok_or_else(|| CaError::MissingCertClaim("the certificate does not parse".into()))?;
    match rule.extract(&names) {
        Ok(Some(v)) => Ok(Some(v)),
        Ok(None) => Err(CaError::MissingCertClaim(
            "no value at the claim's location and index".into(),
        )),
        Err(e) => Err(CaError::MissingCertClaim(e.to_string())),
    }
}

/// `POST /enroll?method=ca` with the TLS client certificate `certs` (leaf first) and
/// the name the client asked for.
pub async fn enroll_ca(
    ctl: &Controller,
    certs: &[CertificateDer<'static>],
    requested_name: Option<&str>,
) -> Result<CaEnrolled, ApiError> {
    let now = clock::now_unix();
    let (leaf, intermediates) = split(certs, false)?;
    let cas = load_all(&ctl.store).await?;
    let ca = auto_enrolling_ca(&cas, leaf, intermediates, now).map_err(ca_error)?;
    let external_id = claimed_external_id(ca, leaf.as_ref()).map_err(ca_error)?;
    let fingerprint = weft_tls::fingerprint(leaf.as_ref());
    let common_name = cert::names(leaf.as_ref())
        .and_then(|n| n.common_names.into_iter().next())
        .unwrap_or_default();
    let mut tx = ctl.store.begin_write().await?;
    if let Some(x) = &external_id {
        if let Some(existing) = tx.identity_by_external_id(x).await? {
            tracing::info!(identity = %existing.name, ca = %ca.name, "ca enrollment found the identity of its external id");
            return Ok(CaEnrolled::Existing(existing.id));
        }
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let base = name_format::format_name(
        &ca.name_format,
        &name_format::NameInputs {
            ca_name: &ca.name,
            ca_id: &ca.id,
            common_name: &common_name,
            requested_name,
            identity_id: &id,
        },
    );
    let mut name = None;
    for attempt in 0..name_format::MAX_ATTEMPTS {
        let candidate = name_format::candidate(&base, attempt);
        if tx
            .get_entity_by_id_or_name(Kind::Identities.collection(), &candidate)
            .await?
            .is_none()
        {
            name = Some(candidate);
            break;
        }
    }
    let name =
        name.ok_or_else(|| ApiError::Conflict(format!("no free identity name from {base:?}")))?;
    let mut obj = Map::new();
    obj.insert("name".into(), json!(name));
    obj.insert("type".into(), json!("Default"));
    obj.insert("roleAttributes".into(), json!(ca.identity_roles));
    if let Some(x) = &external_id {
        obj.insert("externalId".into(), json!(x));
    }
    let n = crate::model::normalize(Kind::Identities, obj)?;
    let mut data = n.data;
    crate::model::entity::rewrite_document(&mut data, |i: &mut crate::model::Identity| {
        i.settle_disable(None, None, now);
    })?;
    crate::domain::entities::check_unique(&mut tx, Kind::Identities, None, &data).await?;
    let stamp = clock::now_string();
    tx.insert_entity(&EntityRow {
        kind: Kind::Identities.collection().into(),
        id: id.clone(),
        name: n.name,
        tags: n.tags,
        data,
        created_at: stamp.clone(),
        updated_at: stamp,
    })
    .await?;
    insert_cert_authenticator(&mut tx, &id, &fingerprint, &ca.id).await?;
    tx.commit().await?;
    tracing::info!(identity = %name, ca = %ca.name, "ca enrollment created an identity");
    ctl.notify_routers().await;
    Ok(CaEnrolled::Created(id))
}

/// Whether `certs` (leaf first) chain to a verified CA with `isAuthEnabled`, at now or,
/// with `allow_expired`, at the leaf's start of validity (the authentication policy's
/// `allowExpiredCerts`).
pub async fn verifies_for_login(
    ctl: &Controller,
    certs: &[CertificateDer<'static>],
    allow_expired: bool,
) -> Result<bool, ApiError> {
    let Some((leaf, intermediates)) = certs.split_first() else {
        return Ok(false);
    };
    let at = match (allow_expired, cert::not_before(leaf.as_ref())) {
        (true, Some(t)) => t,
        _ => clock::now_unix(),
    };
    Ok(load_all(&ctl.store)
        .await?
        .iter()
        .filter(|c| c.trusted_for_auth())
        .any(|c| cert::chains_to(&c.der, leaf, intermediates, at)))
}

/// For a certificate without an authenticator: the identity a verified, auth-enabled
/// CA with an `externalIdClaim` names by the claim (`None`: no such CA or identity).
pub async fn identity_by_claim(
    ctl: &Controller,
    certs: &[CertificateDer<'static>],
) -> Result<Option<(String, String)>, ApiError> {
    let Some((leaf, intermediates)) = certs.split_first() else {
        return Ok(None);
    };
    let now = clock::now_unix();
    for ca in load_all(&ctl.store).await? {
        if !ca.trusted_for_auth()
            || ca.claim.is_none()
            || !cert::chains_to(&ca.der, leaf, intermediates, now)
        {
            continue;
        }
        let Ok(Some(x)) = claimed_external_id(&ca, leaf.as_ref()) else {
            continue;
        };
        if let Some(i) = ctl.store.identity_by_external_id(&x).await? {
            return Ok(Some((i.id, ca.id)));
        }
    }
    Ok(None)
}
