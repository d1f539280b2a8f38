//! The change log: what each revision of the store changed, and how a controller
//! learns of revisions (its own at once, other controllers' through PostgreSQL
//! `NOTIFY` as the wake-up and the table as the truth).

use sqlx::Row;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use super::{Backend, Store};
use crate::error::StoreError;

/// The PostgreSQL notification channel a committing write notifies.
pub const NOTIFY_CHANNEL: &str = "weft_changes";

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeOp {
    /// Created.
    Create,
    /// Updated.
    Update,
    /// Deleted.
    Delete,
}

impl ChangeOp {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Create, Self::Update, Self::Delete]
            .into_iter()
            .find(|op| op.as_str() == s)
    }
}

/// One row of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The revision (write transaction) it belongs to.
    pub seq: i64,
    /// What changed: an entity collection (`services`) or a record table
    /// (`api_sessions`, `sessions`, `authenticators`, `enrollments`, `meta`).
    pub kind: String,
    /// The changed row's id (or key).
    pub entity_id: String,
    /// What happened to it.
    pub op: ChangeOp,
    /// When, Unix milliseconds.
    pub at_unix_ms: i64,
    /// Whether this process wrote it.
    pub local: bool,
}

/// [`Store::changes_summary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangesSummary {
    /// The first revision after the one asked about (`None`: none).
    pub first: Option<i64>,
    /// Change rows after it.
    pub rows: i64,
    /// Revisions among them that other processes wrote.
    pub remote: i64,
}

impl Store {
    /// The latest committed revision.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM counters WHERE name = 'changes'")
                .fetch_one(&self.read)
                .await?,
        )
    }

    /// The revision of the last change to a management entity (caches derived from
    /// entities, such as the policy index, are keyed by it).
    pub async fn entity_revision(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM counters WHERE name = 'entities'")
                .fetch_one(&self.read)
                .await?,
        )
    }

    /// Up to `limit` changes of revisions after `after`, in order.
    pub async fn changes_since(&self, after: i64, limit: i64) -> Result<Vec<Change>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, entity_id, op, at, origin FROM changes WHERE seq > $1
             ORDER BY seq, n LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let op: String = r.try_get(3)?;
                Ok(Change {
                    seq: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    entity_id: r.try_get(2)?,
                    op: ChangeOp::parse(&op)
                        .ok_or_else(|| StoreError::Corrupt(format!("change op {op:?}")))?,
                    at_unix_ms: r.try_get(4)?,
                    local: r.try_get::<String, _>(5)? == self.origin,
                })
            })
            .collect()
    }

    /// What the log holds after revision `after`, without reading its rows: the first
    /// revision (`None`: nothing), how many rows, and how many revisions other processes
    /// wrote.
    pub async fn changes_summary(&self, after: i64) -> Result<ChangesSummary, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(seq), COUNT(*), COUNT(DISTINCT CASE WHEN origin <> $2 THEN seq END)
             FROM changes WHERE seq > $1",
        )
        .bind(after)
        .bind(&self.origin)
        .fetch_one(&self.read)
        .await?;
        Ok(ChangesSummary {
            first: row.try_get(0)?,
            rows: row.try_get(1)?,
            remote: row.try_get(2)?,
        })
    }

    /// Deletes change rows recorded before `before_unix_ms`, keeping the latest
    /// revision's; returns how many went. Followers that fell further behind than the
    /// log reaches simply rebuild from the current state.
    pub async fn prune_changes(&self, before_unix_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM changes WHERE at < $1
             AND seq < (SELECT value FROM counters WHERE name = 'changes')",
        )
        .bind(before_unix_ms)
        .execute(&self.write)
        .await?
        .rows_affected())
    }

    /// A receiver of the latest revision this process committed.
    pub fn committed(&self) -> watch::Receiver<i64> {
        self.committed.subscribe()
    }

    /// On PostgreSQL, a connection listening for other controllers' commits
    /// ([`NOTIFY_CHANNEL`]); `None` on SQLite, which one controller owns.
    pub async fn listen(&self) -> Result<Option<PgListener>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = PgListener::connect(&self.url).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        Ok(Some(listener))
    }
}
