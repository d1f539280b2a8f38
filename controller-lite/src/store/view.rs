//! Reads for the router-facing view ([`crate::control::view`]): the whole store for a
//! full rebuild, and the few rows a logged change touches for an incremental one.

use sqlx::Row;

use super::Store;
use super::security::{SES_COLS, api_session_from, fetch_all, session_from};
use super::{ApiSessionRow, SessionRow};
use crate::error::StoreError;

/// An API session with the fingerprint of the certificate it logged in with: its
/// certificate authenticator's, or the one a 3rd-party CA claim login bound to it.
const API_SESSION_FOR_VIEW: &str =
    "SELECT s.id, s.token, s.identity_id, s.authenticator_id, s.config_types, s.ip_address,
        s.created_at, s.updated_at, s.last_activity, s.mfa_required, s.mfa_complete,
        COALESCE(a.fingerprint, s.cert_fingerprint)
 FROM api_sessions s LEFT JOIN authenticators a
   ON a.id = s.authenticator_id AND a.method = 'cert'";

fn with_fingerprint(r: &sqlx::any::AnyRow) -> Result<(ApiSessionRow, Option<String>), StoreError> {
    Ok((api_session_from(r)?, r.try_get::<Option<String>, _>(11)?))
}

impl Store {
    /// Every API session with the fingerprint of the certificate it was created with
    /// (`None` for password logins).
    pub async fn list_api_sessions(
        &self,
    ) -> Result<Vec<(ApiSessionRow, Option<String>)>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{API_SESSION_FOR_VIEW} ORDER BY s.id"
        )))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(with_fingerprint)
        .collect()
    }

    /// One API session as [`Self::list_api_sessions`] gives it.
    pub async fn api_session_for_view(
        &self,
        id: &str,
    ) -> Result<Option<(ApiSessionRow, Option<String>)>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{API_SESSION_FOR_VIEW} WHERE s.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.read)
        .await?
        .as_ref()
        .map(with_fingerprint)
        .transpose()
    }

    /// Ids of an identity's API sessions.
    pub async fn api_session_ids_of_identity(
        &self,
        identity_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM api_sessions WHERE identity_id = $1")
                .bind(identity_id)
                .fetch_all(&self.read)
                .await?,
        )
    }

    /// Ids of the API sessions opened with an authenticator.
    pub async fn api_session_ids_of_authenticator(
        &self,
        authenticator_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM api_sessions WHERE authenticator_id = $1")
                .bind(authenticator_id)
                .fetch_all(&self.read)
                .await?,
        )
    }

    /// API sessions whose verdict time changed by `now` (Unix seconds) with idle
    /// timeout `timeout`: idle past it, or holding a certificate whose validity began or
    /// ended since `since`. What the periodic sweep judges again (with the active ones
    /// of [`Self::api_sessions_active_since`] whose expiry moved); found through
    /// indexes, not by reading every API session.
    pub async fn api_sessions_timed(
        &self,
        since: i64,
        now: i64,
        timeout: i64,
    ) -> Result<Vec<String>, StoreError> {
        // One second of overlap: times are whole seconds, and a sweep may run within
        // the second of the one before.
        let from = since.saturating_sub(1);
        Ok(sqlx::query_scalar(
            "SELECT id FROM api_sessions WHERE last_activity <= $1
             UNION
             SELECT api_session_id FROM api_session_certs
             WHERE (valid_to >= $2 AND valid_to <= $3) OR (valid_from >= $2 AND valid_from <= $3)",
        )
        .bind(now.saturating_sub(timeout))
        .bind(from)
        .bind(now)
        .fetch_all(&self.read)
        .await?)
    }

    /// API sessions whose posture verdicts time alone may have turned between `from` and
    /// `now` (Unix seconds): an MFA answer older than one of `posture.mfa_timeouts`
    /// expired, or the grace after a wake or unlock (`grace` seconds) ran out. Found by
    /// index (migration 0014), not by reading every API session.
    pub async fn api_sessions_posture_timed(
        &self,
        from: i64,
        now: i64,
        posture: &crate::authz::TimedPosture,
        grace: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        // (column, seconds after it at which the verdict turns)
        let mut windows: Vec<(&str, i64)> = posture
            .mfa_timeouts
            .iter()
            .map(|t| ("mfa_passed_at", *t))
            .collect();
        if posture.wake {
            windows.push(("woken_at", grace));
        }
        if posture.unlock {
            windows.push(("unlocked_at", grace));
        }
        for (column, after) in windows {
            let found: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM api_sessions WHERE {column} > 0 AND {column} >= $1 AND {column} <= $2"
            )))
            .bind(from.saturating_sub(after))
            .bind(now.saturating_sub(after))
            .fetch_all(&self.read)
            .await?;
            ids.extend(found);
        }
        Ok(ids)
    }

    /// API sessions whose last activity is `from` (Unix seconds) or later, with it: the
    /// expiry routers hold may have to move.
    pub async fn api_sessions_active_since(
        &self,
        from: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT id, last_activity FROM api_sessions WHERE last_activity >= $1")
                .bind(from)
                .fetch_all(&self.read)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Fingerprints of the certificates issued to an API session and valid at `now`.
    pub async fn api_session_cert_fingerprints_of(
        &self,
        api_session_id: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT fingerprint FROM api_session_certs
             WHERE api_session_id = $1 AND valid_from <= $2 AND valid_to > $2
             ORDER BY id",
        )
        .bind(api_session_id)
        .bind(now)
        .fetch_all(&self.read)
        .await?)
    }

    /// Every session.
    pub async fn list_sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        fetch_all(
            &self.read,
            format!("SELECT {SES_COLS} FROM sessions ORDER BY id"),
            &[],
            session_from,
        )
        .await
    }

    /// Every session of an API session.
    pub async fn sessions_of_api_session(
        &self,
        api_session_id: &str,
    ) -> Result<Vec<SessionRow>, StoreError> {
        fetch_all(
            &self.read,
            format!("SELECT {SES_COLS} FROM sessions WHERE api_session_id = $1"),
            &[api_session_id],
            session_from,
        )
        .await
    }

    /// Every session on a service.
    pub async fn sessions_of_service(
        &self,
        service_id: &str,
    ) -> Result<Vec<SessionRow>, StoreError> {
        fetch_all(
            &self.read,
            format!("SELECT {SES_COLS} FROM sessions WHERE service_id = $1"),
            &[service_id],
            session_from,
        )
        .await
    }
}
