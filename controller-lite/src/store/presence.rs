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

    /// Records the edge listeners `router_id` reported in its hello (it is connected to
    /// this controller).
    pub async fn presence_listeners(
        &self,
        router_id: &str,
        listeners: &[String],
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(listeners).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "UPDATE router_presence SET edge_listeners = $1 WHERE router_id = $2 AND controller = $3",
        )
        .bind(json)
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

    /// Routers whose presence was refreshed at or after `since_ms`, with the edge
    /// listeners each reported (none where the column does not hold a list of strings).
    pub async fn routers_present(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT router_id, edge_listeners FROM router_presence WHERE seen_at >= $1",
        )
        .bind(since_ms)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, json)| (id, serde_json::from_str(&json).unwrap_or_default()))
            .collect())
    }
}
