//! TOTP enrollments, password failure counts and API sessions' authentication queries.
//!
//! The checks that must hold across controllers are single conditional statements:
//! a TOTP step is accepted by `UPDATE … WHERE last_step < step` and a recovery code is
//! spent by `UPDATE … WHERE recovery_codes = old`, so two controllers (or two requests)
//! given the same code cannot both accept it.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::security::fetch_optional;
use super::{ChangeOp, Store, WriteTx};
use crate::error::StoreError;

/// One identity's TOTP enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaRow {
    /// Enrollment id.
    pub id: String,
    /// Owner identity.
    pub identity_id: String,
    /// Base32 TOTP secret.
    pub secret: String,
    /// The owner proved a code once (`/current-identity/mfa/verify`).
    pub verified: bool,
    /// Unused recovery codes.
    pub recovery_codes: Vec<String>,
    /// Last TOTP time step accepted (a code is good once).
    pub last_step: i64,
    /// Wrong codes in a row.
    pub failures: i64,
    /// Until when (Unix seconds) codes are refused after too many wrong ones.
    pub blocked_until: i64,
    /// Creation time.
    pub created_at: String,
    /// Update time.
    pub updated_at: String,
}

const MFA_COLS: &str = "id, identity_id, secret, verified, recovery_codes, last_step, failures, blocked_until, created_at, updated_at";

fn mfa_from(r: &AnyRow) -> Result<MfaRow, StoreError> {
    Ok(MfaRow {
        id: r.try_get(0)?,
        identity_id: r.try_get(1)?,
        secret: r.try_get(2)?,
        verified: r.try_get::<i64, _>(3)? != 0,
        recovery_codes: serde_json::from_str(&r.try_get::<String, _>(4)?)?,
        last_step: r.try_get(5)?,
        failures: r.try_get(6)?,
        blocked_until: r.try_get(7)?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
    })
}

impl Store {
    /// The identity's TOTP enrollment, verified or not.
    pub async fn mfa_of(&self, identity_id: &str) -> Result<Option<MfaRow>, StoreError> {
        fetch_optional(
            &self.read,
            format!("SELECT {MFA_COLS} FROM mfa WHERE identity_id = $1"),
            &[identity_id],
            mfa_from,
        )
        .await
    }

    /// Accepts TOTP time step `step` for `identity_id` if no later or equal step was
    /// accepted before (and clears the failure count); false: a replay.
    pub async fn accept_totp_step(&self, identity_id: &str, step: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE mfa SET last_step = $2, failures = 0 WHERE identity_id = $1 AND last_step < $2",
        )
        .bind(identity_id)
        .bind(step)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Spends recovery code `code` if the stored codes are still `before` (no other
    /// request spent one meanwhile); false otherwise.
    pub async fn spend_recovery_code(
        &self,
        identity_id: &str,
        before: &[String],
        code: &str,
    ) -> Result<bool, StoreError> {
        let after: Vec<&String> = before.iter().filter(|c| c.as_str() != code).collect();
        if after.len() == before.len() {
            return Ok(false);
        }
        let n = sqlx::query(
            "UPDATE mfa SET recovery_codes = $3, failures = 0 WHERE identity_id = $1 AND recovery_codes = $2",
        )
        .bind(identity_id)
        .bind(serde_json::to_string(before)?)
        .bind(serde_json::to_string(&after)?)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Counts a wrong code; from the `max`-th in a row on, codes are refused until
    /// `now + block_secs`. Returns the failures in a row.
    pub async fn record_mfa_failure(
        &self,
        identity_id: &str,
        max: i64,
        now: i64,
        block_secs: i64,
    ) -> Result<i64, StoreError> {
        let failures: Option<i64> = sqlx::query_scalar(
            "UPDATE mfa SET failures = failures + 1 WHERE identity_id = $1 RETURNING failures",
        )
        .bind(identity_id)
        .fetch_optional(&self.write)
        .await?;
        let failures = failures.unwrap_or(0);
        if failures >= max {
            sqlx::query("UPDATE mfa SET blocked_until = $2, failures = 0 WHERE identity_id = $1")
                .bind(identity_id)
                .bind(now + block_secs)
                .execute(&self.write)
                .await?;
        }
        Ok(failures)
    }

    /// Counts a wrong password for an authenticator; returns the count in a row.
    /// Bookkeeping outside the change log, in the database so that every controller
    /// counts toward the same lockout.
    pub async fn record_password_failure(&self, authenticator_id: &str) -> Result<i64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar(
            "UPDATE authenticators SET failed_attempts = failed_attempts + 1 WHERE id = $1 RETURNING failed_attempts",
        )
        .bind(authenticator_id)
        .fetch_optional(&self.write)
        .await?;
        Ok(n.unwrap_or(0))
    }

    /// Clears an authenticator's failed passwords (after a good one), if any.
    pub async fn clear_password_failures(&self, authenticator_id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE authenticators SET failed_attempts = 0 WHERE id = $1 AND failed_attempts <> 0",
        )
        .bind(authenticator_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}

impl WriteTx<'_> {
    /// Stores a new TOTP enrollment; an identity has at most one
    /// ([`StoreError::Duplicate`] otherwise).
    pub async fn insert_mfa(&mut self, m: &MfaRow) -> Result<(), StoreError> {
        let res = sqlx::query(
            "INSERT INTO mfa (id, identity_id, secret, verified, recovery_codes, last_step, failures,
                              blocked_until, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&m.id)
        .bind(&m.identity_id)
        .bind(&m.secret)
        .bind(i64::from(m.verified))
        .bind(serde_json::to_string(&m.recovery_codes)?)
        .bind(m.last_step)
        .bind(m.failures)
        .bind(m.blocked_until)
        .bind(&m.created_at)
        .bind(&m.updated_at)
        .execute(&mut *self.tx)
        .await;
        match res {
            Ok(_) => self.record("mfa", &m.id, ChangeOp::Create).await,
            Err(e) if super::is_unique_violation(&e) => {
                Err(StoreError::Duplicate("MFA enrollment".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Marks the identity's enrollment verified.
    pub async fn verify_mfa(&mut self, identity_id: &str, now: &str) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE mfa SET verified = 1, updated_at = $2 WHERE identity_id = $1 AND verified = 0",
        )
        .bind(identity_id)
        .bind(now)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        if n == 1 {
            self.record("mfa", identity_id, ChangeOp::Update).await?;
        }
        Ok(n == 1)
    }

    /// Replaces the identity's recovery codes.
    pub async fn set_recovery_codes(
        &mut self,
        identity_id: &str,
        codes: &[String],
        now: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE mfa SET recovery_codes = $2, updated_at = $3 WHERE identity_id = $1")
            .bind(identity_id)
            .bind(serde_json::to_string(codes)?)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        self.record("mfa", identity_id, ChangeOp::Update).await
    }

    /// Removes the identity's enrollment; false when it had none.
    pub async fn delete_mfa_of(&mut self, identity_id: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM mfa WHERE identity_id = $1")
            .bind(identity_id)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        if n > 0 {
            self.record("mfa", identity_id, ChangeOp::Delete).await?;
        }
        Ok(n > 0)
    }

    /// Sets an API session's MFA flags (a TOTP answer completes it).
    pub async fn set_api_session_mfa(
        &mut self,
        id: &str,
        required: bool,
        complete: bool,
    ) -> Result<(), StoreError> {
        // A completed query is also the MFA posture checks' "passed at".
        sqlx::query(
            "UPDATE api_sessions SET mfa_required = $2, mfa_complete = $3,
                 mfa_passed_at = CASE WHEN $3 = 1 THEN $4 ELSE mfa_passed_at END
             WHERE id = $1",
        )
        .bind(id)
        .bind(i64::from(required))
        .bind(i64::from(complete))
        .bind(crate::clock::now_unix())
        .execute(&mut *self.tx)
        .await?;
        self.record("api_sessions", id, ChangeOp::Update).await
    }

    /// Deletes every API session (and so every session) of an identity; returns how
    /// many API sessions there were.
    pub async fn delete_api_sessions_of(&mut self, identity_id: &str) -> Result<u64, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM api_sessions WHERE identity_id = $1")
                .bind(identity_id)
                .fetch_all(&mut *self.tx)
                .await?;
        let mut n = 0;
        for id in &ids {
            n += u64::from(self.delete_api_session(id).await?);
        }
        Ok(n)
    }

    /// Clears the failed passwords of an identity's authenticators (enabling it).
    pub async fn clear_password_failures_of(
        &mut self,
        identity_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE authenticators SET failed_attempts = 0 WHERE identity_id = $1")
            .bind(identity_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}
