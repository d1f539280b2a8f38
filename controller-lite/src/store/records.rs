//! Management-API access to the security records: authenticators, enrollments, API
//! sessions and sessions (listing, single lookups, updates and cascading deletes).

use rusqlite::{OptionalExtension, params};

use super::Store;
use super::security::{
    API_COLS, AUTH_COLS, ENR_COLS, ROUTER_AUTH_METHOD, SES_COLS, api_session_from,
    authenticator_from, enrollment_from, session_from,
};
use super::{ApiSessionRow, AuthenticatorRow, EnrollmentRow, SessionRow};
use crate::error::StoreError;

impl Store {
    /// Identity authenticators (`cert`, `updb`; not the edge routers' control-channel
    /// certificates), ordered by creation.
    pub fn list_authenticators(&self) -> Result<Vec<AuthenticatorRow>, StoreError> {
        let c = self.lock()?;
        let mut st = c.prepare(&format!(
            "SELECT {AUTH_COLS} FROM authenticators WHERE method != ?1 ORDER BY created_at, id"
        ))?;
        let rows = st
            .query_map([ROUTER_AUTH_METHOD], authenticator_from)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// An identity authenticator by id.
    pub fn authenticator_by_id(&self, id: &str) -> Result<Option<AuthenticatorRow>, StoreError> {
        let c = self.lock()?;
        Ok(c.query_row(
            &format!("SELECT {AUTH_COLS} FROM authenticators WHERE id = ?1 AND method != ?2"),
            params![id, ROUTER_AUTH_METHOD],
            authenticator_from,
        )
        .optional()?)
    }

    /// Changes the user name and password hash of a `updb` authenticator; a taken user
    /// name gives [`StoreError::Duplicate`].
    pub fn update_password_authenticator(
        &self,
        id: &str,
        username: &str,
        password_hash: &str,
        now: &str,
    ) -> Result<bool, StoreError> {
        let c = self.lock()?;
        let res = c.execute(
            "UPDATE authenticators SET username = ?2, password_hash = ?3, updated_at = ?4
             WHERE id = ?1 AND method = 'updb'",
            params![id, username, password_hash, now],
        );
        match res {
            Ok(n) => Ok(n == 1),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Duplicate(username.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an identity authenticator and the API sessions (and their sessions) created
    /// with it; false when it does not exist.
    pub fn delete_authenticator(&self, id: &str) -> Result<bool, StoreError> {
        let mut c = self.lock()?;
        let tx = c.transaction()?;
        let n = tx.execute(
            "DELETE FROM authenticators WHERE id = ?1 AND method != ?2",
            params![id, ROUTER_AUTH_METHOD],
        )?;
        tx.execute(
            "DELETE FROM sessions WHERE api_session_id IN
               (SELECT id FROM api_sessions WHERE authenticator_id = ?1)",
            [id],
        )?;
        tx.execute("DELETE FROM api_sessions WHERE authenticator_id = ?1", [id])?;
        tx.commit()?;
        Ok(n == 1)
    }

    /// Unused enrollments of `method`, ordered by creation.
    pub fn list_enrollments(&self, method: &str) -> Result<Vec<EnrollmentRow>, StoreError> {
        let c = self.lock()?;
        let mut st = c.prepare(&format!(
            "SELECT {ENR_COLS} FROM enrollments WHERE method = ?1 AND used = 0 ORDER BY created_at, id"
        ))?;
        let rows = st
            .query_map([method], enrollment_from)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// An unused enrollment of `method` by id.
    pub fn enrollment_by_id(
        &self,
        method: &str,
        id: &str,
    ) -> Result<Option<EnrollmentRow>, StoreError> {
        let c = self.lock()?;
        Ok(c.query_row(
            &format!(
                "SELECT {ENR_COLS} FROM enrollments WHERE id = ?1 AND method = ?2 AND used = 0"
            ),
            params![id, method],
            enrollment_from,
        )
        .optional()?)
    }

    /// Gives an unused enrollment a new token, JWT and expiry; false when there is none.
    pub fn replace_enrollment_token(
        &self,
        id: &str,
        jti: &str,
        jwt: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let c = self.lock()?;
        Ok(c.execute(
            "UPDATE enrollments SET jti = ?2, jwt = ?3, expires_at = ?4 WHERE id = ?1 AND used = 0",
            params![id, jti, jwt, expires_at],
        )? == 1)
    }

    /// Deletes an unused enrollment of `method`; false when there is none.
    pub fn delete_enrollment(&self, method: &str, id: &str) -> Result<bool, StoreError> {
        let c = self.lock()?;
        Ok(c.execute(
            "DELETE FROM enrollments WHERE id = ?1 AND method = ?2 AND used = 0",
            params![id, method],
        )? == 1)
    }

    /// Every API session, ordered by creation.
    pub fn all_api_sessions(&self) -> Result<Vec<ApiSessionRow>, StoreError> {
        let c = self.lock()?;
        let mut st = c.prepare(&format!(
            "SELECT {API_COLS} FROM api_sessions ORDER BY created_at, id"
        ))?;
        let rows = st
            .query_map([], api_session_from)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(mut s, types)| {
                s.config_types = serde_json::from_str(&types)?;
                Ok(s)
            })
            .collect()
    }

    /// Deletes the sessions of a service (the service is being deleted).
    pub fn delete_sessions_of_service(&self, service_id: &str) -> Result<usize, StoreError> {
        let c = self.lock()?;
        Ok(c.execute("DELETE FROM sessions WHERE service_id = ?1", [service_id])?)
    }

    /// Every session of `api_session_id`, or of all API sessions.
    pub fn sessions_where_api_session(
        &self,
        api_session_id: Option<&str>,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let c = self.lock()?;
        let rows = match api_session_id {
            Some(id) => c
                .prepare(&format!(
                    "SELECT {SES_COLS} FROM sessions WHERE api_session_id = ?1 ORDER BY created_at, id"
                ))?
                .query_map([id], session_from)?
                .collect::<Result<Vec<_>, _>>()?,
            None => c
                .prepare(&format!(
                    "SELECT {SES_COLS} FROM sessions ORDER BY created_at, id"
                ))?
                .query_map([], session_from)?
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(rows)
    }
}

impl Store {
    /// The identity authenticators of one identity.
    pub fn authenticators_of(
        &self,
        identity_id: &str,
    ) -> Result<Vec<AuthenticatorRow>, StoreError> {
        let c = self.lock()?;
        let mut st = c.prepare(&format!(
            "SELECT {AUTH_COLS} FROM authenticators WHERE identity_id = ?1 AND method != ?2
             ORDER BY created_at, id"
        ))?;
        let rows = st
            .query_map(params![identity_id, ROUTER_AUTH_METHOD], authenticator_from)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
