//! Posture data per identity, the posture state of API sessions, and the session
//! requests refused for posture ([`crate::posture`]).

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{ChangeOp, Store, WriteTx};
use crate::error::StoreError;
use crate::policy::PolicyType;
use crate::posture::{PostureData, SessionPosture};

/// Failed session requests kept per identity (the oldest go first).
pub const FAILED_REQUESTS_KEPT: i64 = 20;

/// A session request refused because posture failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedServiceRequest {
    /// Row id.
    pub id: String,
    /// Requesting identity.
    pub identity_id: String,
    /// Its API session.
    pub api_session_id: String,
    /// Service asked for.
    pub service_id: String,
    /// The service's name then.
    pub service_name: String,
    /// `Dial` or `Bind`.
    pub session_type: PolicyType,
    /// The failing policies and checks (JSON array of `policyFailure`).
    pub policy_failures: String,
    /// When, Unix seconds.
    pub at: i64,
}

fn failed_from(r: &AnyRow) -> Result<FailedServiceRequest, StoreError> {
    Ok(FailedServiceRequest {
        id: r.try_get(0)?,
        identity_id: r.try_get(1)?,
        api_session_id: r.try_get(2)?,
        service_id: r.try_get(3)?,
        service_name: r.try_get(4)?,
        session_type: super::security::session_type_from(&r.try_get::<String, _>(5)?)?,
        policy_failures: r.try_get(6)?,
        at: r.try_get(7)?,
    })
}

fn session_posture_from(r: &AnyRow, at: usize) -> Result<SessionPosture, StoreError> {
    let t = |i: usize| -> Result<Option<i64>, StoreError> {
        let v: i64 = r.try_get(i)?;
        Ok((v > 0).then_some(v))
    };
    Ok(SessionPosture {
        mfa_passed_at: t(at)?,
        woken_at: t(at + 1)?,
        unlocked_at: t(at + 2)?,
    })
}

fn parse_data(text: &str) -> Result<PostureData, StoreError> {
    Ok(serde_json::from_str(text)?)
}

impl Store {
    /// What `identity_id`'s endpoints reported (empty when nothing).
    pub async fn posture_data(&self, identity_id: &str) -> Result<PostureData, StoreError> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT data FROM posture_data WHERE identity_id = $1")
                .bind(identity_id)
                .fetch_optional(&self.read)
                .await?;
        row.as_deref()
            .map_or(Ok(PostureData::default()), parse_data)
    }

    /// Posture data of every identity that reported any.
    pub async fn all_posture_data(&self) -> Result<HashMap<String, PostureData>, StoreError> {
        let rows = sqlx::query("SELECT identity_id, data FROM posture_data")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, parse_data(&r.try_get::<String, _>(1)?)?)))
            .collect()
    }

    /// The posture state of one API session (all `None` when it has none or is gone).
    pub async fn session_posture(
        &self,
        api_session_id: &str,
    ) -> Result<SessionPosture, StoreError> {
        let row = sqlx::query(
            "SELECT mfa_passed_at, woken_at, unlocked_at FROM api_sessions WHERE id = $1",
        )
        .bind(api_session_id)
        .fetch_optional(&self.read)
        .await?;
        row.map_or(Ok(SessionPosture::default()), |r| {
            session_posture_from(&r, 0)
        })
    }

    /// The posture state of every API session, by id.
    pub async fn all_session_postures(
        &self,
    ) -> Result<HashMap<String, SessionPosture>, StoreError> {
        let rows = sqlx::query("SELECT id, mfa_passed_at, woken_at, unlocked_at FROM api_sessions")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, session_posture_from(r, 1)?)))
            .collect()
    }

    /// The posture state of each API session of `identity_id`, by API session id.
    pub async fn session_postures_of(
        &self,
        identity_id: &str,
    ) -> Result<Vec<(String, SessionPosture)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, mfa_passed_at, woken_at, unlocked_at FROM api_sessions
             WHERE identity_id = $1 ORDER BY id",
        )
        .bind(identity_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, session_posture_from(r, 1)?)))
            .collect()
    }

    /// The session requests of `identity_id` refused for posture, newest first.
    pub async fn failed_service_requests(
        &self,
        identity_id: &str,
    ) -> Result<Vec<FailedServiceRequest>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, identity_id, api_session_id, service_id, service_name, session_type,
                    policy_failures, at
             FROM failed_service_requests WHERE identity_id = $1 ORDER BY at DESC, id",
        )
        .bind(identity_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(failed_from).collect()
    }
}

impl WriteTx<'_> {
    /// `identity_id`'s posture data, read inside the transaction.
    pub async fn posture_data(&mut self, identity_id: &str) -> Result<PostureData, StoreError> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT data FROM posture_data WHERE identity_id = $1")
                .bind(identity_id)
                .fetch_optional(&mut *self.tx)
                .await?;
        row.as_deref()
            .map_or(Ok(PostureData::default()), parse_data)
    }

    /// Stores `identity_id`'s posture data, and tells SDKs polling
    /// `service-updates` to list their services again (their posture queries changed).
    pub async fn put_posture_data(
        &mut self,
        identity_id: &str,
        data: &PostureData,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO posture_data (identity_id, data, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (identity_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
        )
        .bind(identity_id)
        .bind(serde_json::to_string(data)?)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        self.services_changed = true;
        self.record("posture_data", identity_id, ChangeOp::Update)
            .await
    }

    /// Records that the endpoint of an API session woke and/or was unlocked at `now`.
    pub async fn set_endpoint_state(
        &mut self,
        api_session_id: &str,
        woken: bool,
        unlocked: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        if !woken && !unlocked {
            return Ok(());
        }
        sqlx::query(
            "UPDATE api_sessions SET
                 woken_at = CASE WHEN $2 = 1 THEN $4 ELSE woken_at END,
                 unlocked_at = CASE WHEN $3 = 1 THEN $4 ELSE unlocked_at END
             WHERE id = $1",
        )
        .bind(api_session_id)
        .bind(i64::from(woken))
        .bind(i64::from(unlocked))
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        self.services_changed = true;
        self.record("api_sessions", api_session_id, ChangeOp::Update)
            .await
    }

    /// Records a session request refused for posture, keeping the newest
    /// [`FAILED_REQUESTS_KEPT`] of the identity.
    pub async fn insert_failed_service_request(
        &mut self,
        f: &FailedServiceRequest,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO failed_service_requests
                 (id, identity_id, api_session_id, service_id, service_name, session_type,
                  policy_failures, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&f.id)
        .bind(&f.identity_id)
        .bind(&f.api_session_id)
        .bind(&f.service_id)
        .bind(&f.service_name)
        .bind(f.session_type.as_str())
        .bind(&f.policy_failures)
        .bind(f.at)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query(
            "DELETE FROM failed_service_requests WHERE identity_id = $1 AND id NOT IN
                 (SELECT id FROM failed_service_requests WHERE identity_id = $1
                  ORDER BY at DESC, id LIMIT $2)",
        )
        .bind(&f.identity_id)
        .bind(FAILED_REQUESTS_KEPT)
        .execute(&mut *self.tx)
        .await?;
        self.record("failed_service_requests", &f.id, ChangeOp::Create)
            .await
    }

    /// Deletes an identity's posture data and failed requests (the identity is deleted).
    pub async fn delete_posture_of(&mut self, identity_id: &str) -> Result<(), StoreError> {
        for table in ["posture_data", "failed_service_requests"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE identity_id = $1"
            )))
            .bind(identity_id)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }
}
