//! Certificate extension state per certificate authenticator: a new certificate waiting
//! for `extend-verify`, and an administrator's request to extend
//! (openziti/ziti `controller/model/authenticator_manager.go` `ExtendCertForIdentity`,
//! `VerifyExtendCertForIdentity`, `RequestExtend`).

use sqlx::Row;

use super::{ChangeOp, Store, WriteTx};
use crate::error::StoreError;

/// What is pending for one certificate authenticator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertExtension {
    /// The issued certificate waiting for `extend-verify`, and its fingerprint.
    pub pending: Option<(String, String)>,
    /// An administrator asked the client to extend its certificate.
    pub requested: bool,
    /// ... with a new key.
    pub roll_keys: bool,
    /// When it was asked.
    pub requested_at: Option<String>,
}

impl Store {
    /// The extension state of `authenticator_id` (default: nothing pending).
    pub async fn cert_extension(
        &self,
        authenticator_id: &str,
    ) -> Result<CertExtension, StoreError> {
        let row = sqlx::query(
            "SELECT pending_cert_pem, pending_fingerprint, requested, roll_keys, requested_at
             FROM cert_extensions WHERE authenticator_id = $1",
        )
        .bind(authenticator_id)
        .fetch_optional(&self.read)
        .await?;
        let Some(r) = row else {
            return Ok(CertExtension::default());
        };
        let pem: Option<String> = r.try_get(0)?;
        let fp: Option<String> = r.try_get(1)?;
        Ok(CertExtension {
            pending: pem.zip(fp),
            requested: r.try_get::<i64, _>(2)? != 0,
            roll_keys: r.try_get::<i64, _>(3)? != 0,
            requested_at: r.try_get(4)?,
        })
    }
}

impl WriteTx<'_> {
    /// Keeps `pem` (fingerprint `fp`) as the certificate waiting for `extend-verify`
    /// (replacing any earlier one).
    pub async fn set_pending_extension(
        &mut self,
        authenticator_id: &str,
        pem: &str,
        fp: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cert_extensions (authenticator_id, pending_cert_pem, pending_fingerprint)
             VALUES ($1, $2, $3)
             ON CONFLICT (authenticator_id)
             DO UPDATE SET pending_cert_pem = $2, pending_fingerprint = $3",
        )
        .bind(authenticator_id)
        .bind(pem)
        .bind(fp)
        .execute(&mut *self.tx)
        .await?;
        self.record("cert_extensions", authenticator_id, ChangeOp::Update)
            .await
    }

    /// Makes the pending certificate the authenticator's (the old one stops
    /// authenticating) and clears the extension state; false when nothing was pending.
    pub async fn promote_extension(
        &mut self,
        authenticator_id: &str,
        now: &str,
    ) -> Result<bool, StoreError> {
        let pending: Option<(Option<String>, Option<String>)> = sqlx::query(
            "SELECT pending_cert_pem, pending_fingerprint FROM cert_extensions WHERE authenticator_id = $1",
        )
        .bind(authenticator_id)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?;
        let Some((Some(pem), Some(fp))) = pending else {
            return Ok(false);
        };
        sqlx::query(
            "UPDATE authenticators SET cert_pem = $2, fingerprint = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(authenticator_id)
        .bind(&pem)
        .bind(&fp)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("DELETE FROM cert_extensions WHERE authenticator_id = $1")
            .bind(authenticator_id)
            .execute(&mut *self.tx)
            .await?;
        self.record("authenticators", authenticator_id, ChangeOp::Update)
            .await?;
        Ok(true)
    }

    /// Notes an administrator's request that the client extend its certificate.
    pub async fn request_extension(
        &mut self,
        authenticator_id: &str,
        roll_keys: bool,
        now: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cert_extensions (authenticator_id, requested, roll_keys, requested_at)
             VALUES ($1, 1, $2, $3)
             ON CONFLICT (authenticator_id)
             DO UPDATE SET requested = 1, roll_keys = $2, requested_at = $3",
        )
        .bind(authenticator_id)
        .bind(i64::from(roll_keys))
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        self.record("cert_extensions", authenticator_id, ChangeOp::Update)
            .await
    }
}
