//! API session certificates: short-lived client certificates bound to one API session
//! (openziti/ziti `controller/model/api_session_certificate_manager.go`).

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::security::{fetch_all, fetch_optional};
use super::{ChangeOp, Store, WriteTx};
use crate::error::StoreError;

/// One certificate issued to an API session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSessionCertRow {
    /// Certificate id.
    pub id: String,
    /// The API session it belongs to.
    pub api_session_id: String,
    /// The identity of that API session.
    pub identity_id: String,
    /// Subject, as text.
    pub subject: String,
    /// SHA-1 fingerprint of the DER (lower-case hex).
    pub fingerprint: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Start of validity, Unix seconds.
    pub valid_from: i64,
    /// End of validity, Unix seconds.
    pub valid_to: i64,
    /// Creation time.
    pub created_at: String,
    /// Update time.
    pub updated_at: String,
}

const COLS: &str = "id, api_session_id, identity_id, subject, fingerprint, cert_pem, valid_from, valid_to, created_at, updated_at";

fn cert_from(r: &AnyRow) -> Result<ApiSessionCertRow, StoreError> {
    Ok(ApiSessionCertRow {
        id: r.try_get(0)?,
        api_session_id: r.try_get(1)?,
        identity_id: r.try_get(2)?,
        subject: r.try_get(3)?,
        fingerprint: r.try_get(4)?,
        cert_pem: r.try_get(5)?,
        valid_from: r.try_get(6)?,
        valid_to: r.try_get(7)?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
    })
}

impl Store {
    /// The certificates of one API session, oldest first.
    pub async fn api_session_certs(
        &self,
        api_session_id: &str,
    ) -> Result<Vec<ApiSessionCertRow>, StoreError> {
        fetch_all(
            &self.read,
            format!(
                "SELECT {COLS} FROM api_session_certs WHERE api_session_id = $1 ORDER BY created_at, id"
            ),
            &[api_session_id],
            cert_from,
        )
        .await
    }

    /// One certificate of an API session (`None` when it belongs to another).
    pub async fn api_session_cert(
        &self,
        api_session_id: &str,
        id: &str,
    ) -> Result<Option<ApiSessionCertRow>, StoreError> {
        fetch_optional(
            &self.read,
            format!("SELECT {COLS} FROM api_session_certs WHERE api_session_id = $1 AND id = $2"),
            &[api_session_id, id],
            cert_from,
        )
        .await
    }

    /// `(API session id, fingerprint)` of every certificate valid at `now`.
    pub async fn valid_api_session_cert_fingerprints(
        &self,
        now: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT api_session_id, fingerprint FROM api_session_certs
             WHERE valid_from <= $1 AND valid_to > $1
             ORDER BY api_session_id, id",
        )
        .bind(now)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}

impl WriteTx<'_> {
    /// How many certificates an API session holds (counted in the writing transaction,
    /// so concurrent creates cannot pass a cap together: writers are serialised).
    pub async fn count_api_session_certs(
        &mut self,
        api_session_id: &str,
    ) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM api_session_certs WHERE api_session_id = $1")
                .bind(api_session_id)
                .fetch_one(&mut *self.tx)
                .await?,
        )
    }

    /// Stores a certificate issued to an API session.
    pub async fn insert_api_session_cert(
        &mut self,
        c: &ApiSessionCertRow,
    ) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO api_session_certs ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(&c.id)
        .bind(&c.api_session_id)
        .bind(&c.identity_id)
        .bind(&c.subject)
        .bind(&c.fingerprint)
        .bind(&c.cert_pem)
        .bind(c.valid_from)
        .bind(c.valid_to)
        .bind(&c.created_at)
        .bind(&c.updated_at)
        .execute(&mut *self.tx)
        .await?;
        self.record("api_session_certs", &c.id, ChangeOp::Create)
            .await?;
        // Routers learn an API session's certificates with the API session.
        self.record("api_sessions", &c.api_session_id, ChangeOp::Update)
            .await
    }

    /// Deletes one certificate of an API session; false when it has no such one.
    pub async fn delete_api_session_cert(
        &mut self,
        api_session_id: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM api_session_certs WHERE api_session_id = $1 AND id = $2")
            .bind(api_session_id)
            .bind(id)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        if n == 1 {
            self.record("api_session_certs", id, ChangeOp::Delete)
                .await?;
            self.record("api_sessions", api_session_id, ChangeOp::Update)
                .await?;
        }
        Ok(n == 1)
    }
}
