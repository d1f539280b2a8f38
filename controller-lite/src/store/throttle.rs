//! The failed-login throttle's token buckets (`login_throttle`), in the database so that
//! every controller of a cluster counts the same failures ([`crate::limits::LoginThrottle`]
//! holds the rules). Bookkeeping outside the change log, like router presence.

use sqlx::Row;

use super::Store;
use crate::error::StoreError;

impl Store {
    /// The buckets of `keys` that exist: (key, tokens, updated_ms).
    pub async fn throttle_buckets(
        &self,
        keys: &[String],
    ) -> Result<Vec<(String, f64, i64)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // One query for all keys (a login asks for two: the user name's and the
        // address's).
        let placeholders: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT key, tokens, updated_ms FROM login_throttle WHERE key IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for key in keys {
            query = query.bind(key);
        }
        query
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Takes one token from `key`'s bucket at `now_ms`, after refilling it at
    /// `per_ms` tokens a millisecond up to `burst` (a new bucket starts full). One
    /// statement, so failures counted at once on several controllers all count.
    pub async fn throttle_take(
        &self,
        key: &str,
        now_ms: i64,
        burst: f64,
        per_ms: f64,
    ) -> Result<(), StoreError> {
        // refilled = tokens + max(now - updated, 0) * per_ms, then min(refilled, burst)
        // - 1, at least 0. CASE rather than LEAST/GREATEST: SQLite has neither.
        sqlx::query(
            "INSERT INTO login_throttle (key, tokens, updated_ms) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET
               tokens = CASE
                 WHEN login_throttle.tokens
                      + (CASE WHEN $3 > login_throttle.updated_ms
                              THEN $3 - login_throttle.updated_ms ELSE 0 END) * $4 >= $5
                   THEN $5 - 1
                 WHEN login_throttle.tokens
                      + (CASE WHEN $3 > login_throttle.updated_ms
                              THEN $3 - login_throttle.updated_ms ELSE 0 END) * $4 <= 1
                   THEN 0
                 ELSE login_throttle.tokens
                      + (CASE WHEN $3 > login_throttle.updated_ms
                              THEN $3 - login_throttle.updated_ms ELSE 0 END) * $4 - 1
               END,
               updated_ms = CASE WHEN $3 > login_throttle.updated_ms
                                 THEN $3 ELSE login_throttle.updated_ms END",
        )
        .bind(key)
        .bind((burst - 1.0).max(0.0))
        .bind(now_ms)
        .bind(per_ms)
        .bind(burst)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Forgets buckets full again by `now_ms` (untouched for `full_after_ms`), then,
    /// beyond `max_entries`, the least recently updated. Returns how many went.
    pub async fn throttle_prune(
        &self,
        now_ms: i64,
        full_after_ms: i64,
        max_entries: i64,
    ) -> Result<u64, StoreError> {
        let mut n = sqlx::query("DELETE FROM login_throttle WHERE updated_ms <= $1")
            .bind(now_ms.saturating_sub(full_after_ms))
            .execute(&self.write)
            .await?
            .rows_affected();
        n += sqlx::query(
            "DELETE FROM login_throttle WHERE key NOT IN
                 (SELECT key FROM login_throttle ORDER BY updated_ms DESC, key LIMIT $1)",
        )
        .bind(max_entries)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n)
    }

    /// Buckets held.
    pub async fn throttle_len(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM login_throttle")
            .fetch_one(&self.read)
            .await?)
    }
}
