//! The controllers serving this database (`controllers`): bookkeeping outside the
//! change log, like router presence. Each controller records itself when it starts
//! ([`Store::controller_joined`]), refreshes `seen_at` while it runs and clears it when
//! it stops.

use sqlx::Row;

use super::Store;
use crate::error::StoreError;

/// One controller of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerRow {
    /// Its id (`DATA_DIR/controller.id`).
    pub id: String,
    /// `host:port` of its APIs.
    pub name: String,
    /// Its server certificate.
    pub cert_pem: String,
    /// That certificate's SHA-1 fingerprint.
    pub fingerprint: String,
    /// Base URL of its APIs (`https://host:port`).
    pub api_url: String,
    /// Its router control channel (`tls:host:port`).
    pub ctrl_address: String,
    /// When it first joined (RFC 3339).
    pub created_at: String,
    /// When its row last changed.
    pub updated_at: String,
    /// When it last started.
    pub last_joined_at: String,
    /// When it last said it runs (Unix milliseconds; 0 once it stopped).
    pub seen_at: i64,
}

impl Store {
    /// Records that controller `c` started (`seen_at` and `last_joined_at` now): a new
    /// row, or the controller's row with what it says of itself now.
    pub async fn controller_joined(&self, c: &ControllerRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO controllers (id, name, cert_pem, fingerprint, api_url, ctrl_address,
                 created_at, updated_at, last_joined_at, seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, cert_pem = excluded.cert_pem,
                 fingerprint = excluded.fingerprint, api_url = excluded.api_url,
                 ctrl_address = excluded.ctrl_address, updated_at = excluded.updated_at,
                 last_joined_at = excluded.last_joined_at, seen_at = excluded.seen_at",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.cert_pem)
        .bind(&c.fingerprint)
        .bind(&c.api_url)
        .bind(&c.ctrl_address)
        .bind(&c.created_at)
        .bind(&c.updated_at)
        .bind(&c.last_joined_at)
        .bind(c.seen_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Records that controller `id` still runs (`now_ms`), or (0) that it stopped.
    pub async fn controller_seen(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE controllers SET seen_at = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Every controller that ever served this database, by name.
    pub async fn controllers(&self) -> Result<Vec<ControllerRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, cert_pem, fingerprint, api_url, ctrl_address, created_at,
                 updated_at, last_joined_at, seen_at FROM controllers ORDER BY name, id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ControllerRow {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    cert_pem: r.try_get(2)?,
                    fingerprint: r.try_get(3)?,
                    api_url: r.try_get(4)?,
                    ctrl_address: r.try_get(5)?,
                    created_at: r.try_get(6)?,
                    updated_at: r.try_get(7)?,
                    last_joined_at: r.try_get(8)?,
                    seen_at: r.try_get(9)?,
                })
            })
            .collect()
    }
}
