//! Router presence: which edge routers have a control connection to some controller
//! of the cluster (`router_presence`). Bookkeeping outside the change log, like API
//! session activity: it takes no part in the writers' order.

use super::Store;
use crate::error::StoreError;

impl Store {
    /// Records that `router_id` is connected to this controller now.
    pub async fn presence_up(&self, router_id: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO router_presence (router_id, controller, seen_at) VALUES ($1, $2, $3)
             ON CONFLICT (router_id) DO UPDATE SET controller = excluded.controller,
                                                   seen_at = excluded.seen_at",
        )
        .bind(router_id)
        .bind(&self.origin)
        .bind(now_ms)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Records that `router_id` is no longer connected to this controller (a row that
    /// another controller owns meanwhile stays).
    pub async fn presence_down(&self, router_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM router_presence WHERE router_id = $1 AND controller = $2")
            .bind(router_id)
            .bind(&self.origin)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Refreshes every presence this controller owns.
    pub async fn presence_refresh(&self, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE router_presence SET seen_at = $1 WHERE controller = $2")
            .bind(now_ms)
            .bind(&self.origin)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Routers whose presence was refreshed at or after `since_ms`.
    pub async fn routers_present(&self, since_ms: i64) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT router_id FROM router_presence WHERE seen_at >= $1")
                .bind(since_ms)
                .fetch_all(&self.read)
                .await?,
        )
    }
}
