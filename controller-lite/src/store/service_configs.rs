//! Identity service configs: an identity's own config of one type for one service
//! (`identity_service_configs`), which replaces the service's config of that type in the
//! identity's service list. Not part of what routers are told; a change moves
//! `service-updates.lastChangeAt` so that SDKs list their services again.

use sqlx::Row;

use super::{ChangeOp, Store, WriteTx};
use crate::error::StoreError;

/// The change-log kind of these rows.
const KIND: &str = "identity_service_configs";

/// One identity's config for one service and config type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfigRow {
    /// The identity.
    pub identity_id: String,
    /// The service.
    pub service_id: String,
    /// The config's type.
    pub config_type_id: String,
    /// The config used for the service, in place of the service's own of that type.
    pub config_id: String,
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<ServiceConfigRow, StoreError> {
    Ok(ServiceConfigRow {
        identity_id: r.try_get(0)?,
        service_id: r.try_get(1)?,
        config_type_id: r.try_get(2)?,
        config_id: r.try_get(3)?,
    })
}

const COLUMNS: &str = "identity_id, service_id, config_type_id, config_id";

impl Store {
    /// `identity_id`'s service configs, ordered by service and config type.
    pub async fn service_configs_of(
        &self,
        identity_id: &str,
    ) -> Result<Vec<ServiceConfigRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM identity_service_configs WHERE identity_id = $1
             ORDER BY service_id, config_type_id"
        )))
        .bind(identity_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(from_row).collect()
    }
}

/// Every identity service config, read through `conn` (the integrity check reads them
/// all).
pub(super) async fn all(
    conn: &mut sqlx::AnyConnection,
) -> Result<Vec<ServiceConfigRow>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM identity_service_configs
         ORDER BY identity_id, service_id, config_type_id"
    )))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

impl WriteTx<'_> {
    /// Sets `row`: the identity's config of that type for that service, replacing the
    /// one it had.
    pub async fn put_service_config(&mut self, row: &ServiceConfigRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO identity_service_configs (identity_id, service_id, config_type_id, config_id)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (identity_id, service_id, config_type_id)
             DO UPDATE SET config_id = excluded.config_id",
        )
        .bind(&row.identity_id)
        .bind(&row.service_id)
        .bind(&row.config_type_id)
        .bind(&row.config_id)
        .execute(&mut *self.tx)
        .await?;
        self.services_changed = true;
        self.record(KIND, &row.identity_id, ChangeOp::Update).await
    }

    /// Removes the identity's config of `config_type_id` for `service_id`, whichever
    /// config it is (OpenZiti removes by the named config's type). Returns whether a row
    /// went.
    pub async fn remove_service_config(
        &mut self,
        identity_id: &str,
        service_id: &str,
        config_type_id: &str,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "DELETE FROM identity_service_configs
             WHERE identity_id = $1 AND service_id = $2 AND config_type_id = $3",
        )
        .bind(identity_id)
        .bind(service_id)
        .bind(config_type_id)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        if n > 0 {
            self.services_changed = true;
            self.record(KIND, identity_id, ChangeOp::Delete).await?;
        }
        Ok(n > 0)
    }

    /// Removes every service config whose `column` (`identity_id`, `service_id` or
    /// `config_id`) is `id`: that entity is deleted. Returns how many went.
    pub async fn remove_service_configs_where(
        &mut self,
        column: ServiceConfigColumn,
        id: &str,
    ) -> Result<u64, StoreError> {
        let n = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM identity_service_configs WHERE {} = $1",
            column.as_str()
        )))
        .bind(id)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        if n > 0 {
            self.services_changed = true;
            self.record(KIND, id, ChangeOp::Delete).await?;
        }
        Ok(n)
    }
}

/// A column of `identity_service_configs` naming another entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceConfigColumn {
    /// The identity.
    Identity,
    /// The service.
    Service,
    /// The config.
    Config,
}

impl ServiceConfigColumn {
    fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity_id",
            Self::Service => "service_id",
            Self::Config => "config_id",
        }
    }
}
