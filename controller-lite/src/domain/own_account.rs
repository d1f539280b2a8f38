//! What an authenticated caller does to its own account: certificates for its API
//! session (issued for 12 hours, at most 32 per API session, deleted), the extension of
//! its own certificate (`extend`, then `extend-verify`), and its own password changed
//! given the current one. Each write is one transaction; routers are told of what
//! changes which certificates they accept.
//!
//! Shapes: openziti/edge-api `source/client/current-api-session-certificates.yml`,
//! `source/shared/current-identity-authenticators.yml`.

use crate::auth::{Caller, verify_password};
use crate::clock;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::pki::CertProfile;
use crate::store::{ApiSessionCertRow, AuthenticatorRow, Credential};

/// Lifetime of an API session certificate (OpenZiti's: 12 hours).
pub const LIFETIME_SECS: i64 = 12 * 3600;
/// Certificates one API session may hold at once (each is a row and a fingerprint every
/// router keeps); beyond it, creating one is refused.
pub const MAX_PER_API_SESSION: i64 = 32;

/// A certificate issued for the caller's API session.
#[derive(Debug)]
pub struct IssuedCert {
    /// Its id.
    pub id: String,
    /// The certificate (PEM).
    pub pem: String,
}

/// Issues a certificate for the caller's API session from `csr` (only its public key
/// is used); routers learn its fingerprint before the caller can use it.
pub async fn issue_session_cert(
    ctl: &Controller,
    caller: &Caller,
    csr: &str,
) -> Result<IssuedCert, ApiError> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let identity_id = &caller.identity.id;
    let uri = format!(
        "spiffe://{}/identity/{identity_id}/apiSession/{}/apiSessionCertificate/{id}",
        ctl.config.http.advertised_host, caller.session.id
    );
    let issued = ctl
        .pki
        .sign_csr_for(
            csr,
            identity_id,
            time::Duration::seconds(LIFETIME_SECS),
            &CertProfile::ApiSession { uri },
        )
        .map_err(|e| ApiError::CouldNotProcessCsr(e.to_string()))?;
    let now = clock::now_unix();
    let now_str = clock::now_string();
    let row = ApiSessionCertRow {
        id: id.clone(),
        api_session_id: caller.session.id.clone(),
        identity_id: identity_id.clone(),
        subject: format!("O=Weft, CN={identity_id}"),
        fingerprint: issued.fingerprint,
        cert_pem: issued.pem.clone(),
        // As the signer sets them (five minutes of clock skew allowed).
        valid_from: now - 300,
        valid_to: now + LIFETIME_SECS,
        created_at: now_str.clone(),
        updated_at: now_str,
    };
    // Counted where the insert happens: concurrent creates cannot pass the cap together.
    let mut tx = ctl.store.begin_write().await?;
    if tx.count_api_session_certs(&caller.session.id).await? >= MAX_PER_API_SESSION {
        return Err(ApiError::CouldNotValidate(format!(
            "an API session holds at most {MAX_PER_API_SESSION} certificates; delete one first"
        )));
    }
    tx.insert_api_session_cert(&row).await?;
    tx.commit().await?;
    // Routers learn the fingerprint before the caller can use the certificate.
    ctl.notify_routers().await;
    tracing::info!(identity = %caller.identity.name, api_session = %caller.session.id, cert = %id, "API session certificate issued");
    Ok(IssuedCert {
        id,
        pem: issued.pem,
    })
}

/// Deletes certificate `id` of API session `api_session_id`; routers stop accepting it.
pub async fn delete_session_cert(
    ctl: &Controller,
    api_session_id: &str,
    id: &str,
) -> Result<(), ApiError> {
    let mut tx = ctl.store.begin_write().await?;
    if !tx.delete_api_session_cert(api_session_id, id).await? {
        return Err(ApiError::NotFound(format!(
            "API session certificate {id:?} not found"
        )));
    }
    tx.commit().await?;
    ctl.notify_routers().await;
    Ok(())
}

/// The caller's own authenticator `id`; another identity's is "not found".
pub async fn own_authenticator(
    ctl: &Controller,
    caller: &Caller,
    id: &str,
) -> Result<AuthenticatorRow, ApiError> {
    ctl.store
        .authenticator_by_id(id)
        .await?
        .filter(|a| a.identity_id == caller.identity.id)
        .ok_or_else(|| ApiError::NotFound(format!("authenticator {id:?} not found")))
}

/// Issues the extension of the caller's certificate authenticator `id` from `csr`; the
/// caller must present, as `leaf` in this TLS connection, the certificate the
/// authenticator holds (any validity: an expired one may be extended when its policy
/// allows the login). The new certificate (returned, PEM) waits for
/// [`verify_extension`]; until then the old one still works.
pub async fn extend_cert(
    ctl: &Controller,
    caller: &Caller,
    leaf: Option<&[u8]>,
    id: &str,
    csr: &str,
) -> Result<String, ApiError> {
    let a = own_authenticator(ctl, caller, id).await?;
    let Credential::Cert {
        fingerprint,
        pem: Some(_),
    } = &a.credential
    else {
        return Err(ApiError::CanNotUpdateAuthenticator(format!(
            "authenticator {id:?} is not a certificate this network issued"
        )));
    };
    let leaf = leaf.ok_or(ApiError::Unauthorized)?;
    if *fingerprint != weft_tls::fingerprint(leaf) || !ctl.pki.verify_client_leaf(leaf, true) {
        return Err(ApiError::Unauthorized);
    }
    let issued = ctl
        .pki
        .sign_client_csr(csr, &caller.identity.id, ctl.config.pki.identity_cert_days)
        .map_err(|e| ApiError::CouldNotProcessCsr(e.to_string()))?;
    let mut tx = ctl.store.begin_write().await?;
    tx.set_pending_extension(id, &issued.pem, &issued.fingerprint)
        .await?;
    tx.commit().await?;
    tracing::info!(identity = %caller.identity.name, authenticator = %id, "certificate extension issued");
    Ok(issued.pem)
}

/// Makes the pending extension of authenticator `id` its certificate, once the caller
/// shows it has it (`client_cert`, PEM); routers learn the new fingerprint of the API
/// sessions the authenticator opened.
pub async fn verify_extension(
    ctl: &Controller,
    caller: &Caller,
    id: &str,
    client_cert: &str,
) -> Result<(), ApiError> {
    let a = own_authenticator(ctl, caller, id).await?;
    let Some((_, pending_fp)) = ctl.store.cert_extension(&a.id).await?.pending else {
        return Err(ApiError::CanNotUpdateAuthenticator(
            "no certificate extension is pending for this authenticator".into(),
        ));
    };
    let presented = weft_tls::pem::certificates(client_cert.as_bytes())
        .ok()
        .and_then(|c| c.into_iter().next())
        .map(|c| weft_tls::fingerprint(c.as_ref()));
    if presented.as_deref() != Some(pending_fp.as_str()) {
        return Err(ApiError::InvalidClientCert(
            "clientCert is not the certificate extend issued".into(),
        ));
    }
    let mut tx = ctl.store.begin_write().await?;
    if !tx.promote_extension(&a.id, &clock::now_string()).await? {
        return Err(ApiError::CanNotUpdateAuthenticator(
            "no certificate extension is pending for this authenticator".into(),
        ));
    }
    tx.commit().await?;
    // Routers learn the new fingerprint of the API sessions this authenticator opened.
    ctl.notify_routers().await;
    tracing::info!(identity = %caller.identity.name, authenticator = %id, "certificate extended");
    Ok(())
}

/// Changes user name and/or password of the caller's `updb` authenticator `id` after
/// checking `current` (401 `UNAUTHORIZED` when wrong, as OpenZiti; the failure counts
/// toward the policy's lockout like a failed login).
pub async fn change_password(
    ctl: &Controller,
    caller: &Caller,
    id: &str,
    username: Option<String>,
    password: Option<String>,
    current: String,
) -> Result<(), ApiError> {
    let a = own_authenticator(ctl, caller, id).await?;
    let Credential::Updb {
        username: old_username,
        password_hash: old_hash,
    } = a.credential
    else {
        return Err(ApiError::CanNotUpdateAuthenticator(format!(
            "authenticator {id:?} is a {} authenticator; only updb authenticators can be changed",
            a.credential.method()
        )));
    };
    let username = username.unwrap_or(old_username);
    super::credentials::check_credentials(&username, password.as_deref().unwrap_or("unchanged"))?;
    if let Some(p) = &password {
        caller.policy.primary.updb.check_password(p)?;
    }
    let hash = Some(old_hash.clone());
    let metrics = ctl.metrics.clone();
    let ok = ctl
        .password_gate
        .run(move || verify_password(&current, hash.as_deref(), &metrics))
        .await?;
    if !ok {
        crate::auth::policy::count_password_failure(ctl, &caller.identity, &a.id, &caller.policy)
            .await?;
        return Err(ApiError::Unauthorized);
    }
    super::credentials::username_free(ctl, &username, Some(&a.id)).await?;
    let password_hash = match password {
        Some(p) => crate::auth::hash_password_gated(ctl, p).await?,
        None => old_hash,
    };
    let mut tx = ctl.store.begin_write().await?;
    if !tx
        .update_password_authenticator(id, &username, &password_hash, &clock::now_string())
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "authenticator {id:?} not found"
        )));
    }
    tx.commit().await?;
    tracing::info!(identity = %caller.identity.name, "own password authenticator changed");
    Ok(())
}
