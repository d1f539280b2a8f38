//! Management-API access to the security records: authenticators, enrollments, API
//! sessions and sessions (listing, single lookups, updates and cascading deletes).

use super::is_unique_violation;
use super::security::{
    API_COLS, AUTH_COLS, ENR_COLS, ROUTER_AUTH_METHOD, SES_COLS, api_session_from,
    authenticator_from, enrollment_from, fetch_all, fetch_optional, session_from,
};
use super::{ApiSessionRow, AuthenticatorRow, ChangeOp, EnrollmentRow, SessionRow, Store, WriteTx};
use crate::error::StoreError;

impl Store {
    /// Identity authenticators (`cert`, `updb`; not the edge routers' control-channel
    /// certificates), ordered by creation.
    pub async fn list_authenticators(&self) -> Result<Vec<AuthenticatorRow>, StoreError> {
        fetch_all(
            &self.read,
            format!(
                "SELECT {AUTH_COLS} FROM authenticators WHERE method != $1 ORDER BY created_at, id"
            ),
            &[ROUTER_AUTH_METHOD],
            authenticator_from,
        )
        .await
    }

    /// An identity authenticator by id.
    pub async fn authenticator_by_id(
        &self,
        id: &str,
    ) -> Result<Option<AuthenticatorRow>, StoreError> {
        fetch_optional(
            &self.read,
            format!("SELECT {AUTH_COLS} FROM authenticators WHERE id = $1 AND method != $2"),
            &[id, ROUTER_AUTH_METHOD],
            authenticator_from,
        )
        .await
    }

    /// The identity authenticators of one identity.
    pub async fn authenticators_of(
        &self,
        identity_id: &str,
    ) -> Result<Vec<AuthenticatorRow>, StoreError> {
        fetch_all(
            &self.read,
            format!(
                "SELECT {AUTH_COLS} FROM authenticators WHERE identity_id = $1 AND method != $2
                 ORDER BY created_at, id"
            ),
            &[identity_id, ROUTER_AUTH_METHOD],
            authenticator_from,
        )
        .await
    }

    /// Unused enrollments of `method`, ordered by creation.
    pub async fn list_enrollments(&self, method: &str) -> Result<Vec<EnrollmentRow>, StoreError> {
        fetch_all(
            &self.read,
            format!(
                "SELECT {ENR_COLS} FROM enrollments WHERE method = $1 AND used = 0 ORDER BY created_at, id"
            ),
            &[method],
            enrollment_from,
        )
        .await
    }

    /// An unused enrollment of `method` by id.
    pub async fn enrollment_by_id(
        &self,
        method: &str,
        id: &str,
    ) -> Result<Option<EnrollmentRow>, StoreError> {
        fetch_optional(
            &self.read,
            format!(
                "SELECT {ENR_COLS} FROM enrollments WHERE id = $1 AND method = $2 AND used = 0"
            ),
            &[id, method],
            enrollment_from,
        )
        .await
    }

    /// Every API session, ordered by creation.
    pub async fn all_api_sessions(&self) -> Result<Vec<ApiSessionRow>, StoreError> {
        fetch_all(
            &self.read,
            format!("SELECT {API_COLS} FROM api_sessions ORDER BY created_at, id"),
            &[],
            api_session_from,
        )
        .await
    }

    /// Every session of `api_session_id`, or of all API sessions.
    pub async fn sessions_where_api_session(
        &self,
        api_session_id: Option<&str>,
    ) -> Result<Vec<SessionRow>, StoreError> {
        match api_session_id {
            Some(id) => {
                fetch_all(
                    &self.read,
                    format!(
                        "SELECT {SES_COLS} FROM sessions WHERE api_session_id = $1 ORDER BY created_at, id"
                    ),
                    &[id],
                    session_from,
                )
                .await
            }
            None => {
                fetch_all(
                    &self.read,
                    format!("SELECT {SES_COLS} FROM sessions ORDER BY created_at, id"),
                    &[],
                    session_from,
                )
                .await
            }
        }
    }
}

impl WriteTx<'_> {
    /// Changes the user name and password hash of a `updb` authenticator; a taken user
    /// name gives [`StoreError::Duplicate`].
    pub async fn update_password_authenticator(
        &mut self,
        id: &str,
        username: &str,
        password_hash: &str,
        now: &str,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE authenticators SET username = $2, password_hash = $3, updated_at = $4
             WHERE id = $1 AND method = 'updb'",
        )
        .bind(id)
        .bind(username)
        .bind(password_hash)
        .bind(now)
        .execute(&mut *self.tx)
        .await;
        match res {
            Ok(r) if r.rows_affected() == 1 => {
                self.record("authenticators", id, ChangeOp::Update).await?;
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Duplicate(username.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an identity authenticator and the API sessions (and their sessions) created
    /// with it; false when it does not exist.
    pub async fn delete_authenticator(&mut self, id: &str) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM cert_extensions WHERE authenticator_id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        let n = sqlx::query("DELETE FROM authenticators WHERE id = $1 AND method != $2")
            .bind(id)
            .bind(ROUTER_AUTH_METHOD)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        let api_sessions: Vec<String> =
            sqlx::query_scalar("SELECT id FROM api_sessions WHERE authenticator_id = $1")
                .bind(id)
                .fetch_all(&mut *self.tx)
                .await?;
        for s in api_sessions {
            self.delete_api_session(&s).await?;
        }
        if n == 1 {
            self.record("authenticators", id, ChangeOp::Delete).await?;
        }
        Ok(n == 1)
    }

    /// Gives an unused enrollment a new token, JWT and expiry; false when there is none.
    pub async fn replace_enrollment_token(
        &mut self,
        id: &str,
        jti: &str,
        jwt: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE enrollments SET jti = $2, jwt = $3, expires_at = $4 WHERE id = $1 AND used = 0",
        )
        .bind(id)
        .bind(jti)
        .bind(jwt)
        .bind(expires_at)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        if n == 1 {
            self.record("enrollments", id, ChangeOp::Update).await?;
        }
        Ok(n == 1)
    }

    /// Deletes an unused enrollment of `method`; false when there is none.
    pub async fn delete_enrollment(&mut self, method: &str, id: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM enrollments WHERE id = $1 AND method = $2 AND used = 0")
            .bind(id)
            .bind(method)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        if n == 1 {
            self.record("enrollments", id, ChangeOp::Delete).await?;
        }
        Ok(n == 1)
    }

    /// Deletes the sessions of a service (the service is being deleted).
    pub async fn delete_sessions_of_service(
        &mut self,
        service_id: &str,
    ) -> Result<u64, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM sessions WHERE service_id = $1")
            .bind(service_id)
            .fetch_all(&mut *self.tx)
            .await?;
        self.delete_sessions(&ids).await
    }
}
