//! The controller's store: one async interface over two backends, chosen by URL.
//!
//! - **SQLite** (`sqlite:PATH`, the default: `weft.db` in the data directory), embedded,
//!   in WAL mode: a pool of reading connections and one writing connection, so write
//!   transactions never contend with each other and reads never wait for writes.
//! - **PostgreSQL** (`postgres://…`), shared by several controllers: one pool.
//!
//! Both speak through sqlx's `Any` driver with the same SQL (`$n` parameters, plain
//! TEXT/BIGINT/INTEGER types); the schema is versioned migrations per backend
//! (`controller-lite/migrations/{sqlite,postgres}`), applied at open. A database whose
//! schema is newer than this binary is refused.
//!
//! Every write goes through a [`WriteTx`]: it first advances the `changes` counter
//! (which, being one row, serialises writers on both backends, so revisions commit in
//! order), records what it changed in the `changes` table in the same transaction, and
//! on commit wakes this controller's change follower and, on PostgreSQL, every other
//! controller's (`NOTIFY`). See `docs/adr/0008-controller-store.md`.
//!
//! Management entities are JSON documents in one `entities` table keyed by (kind, id)
//! with a unique name per kind; security-critical records (enrollments,
//! authenticators, API sessions, sessions) have their own tables.

mod changes;
mod controllers;
mod extensions;
mod integrity;
mod mfa;
mod posture;
mod presence;
mod records;
mod security;
mod service_configs;
mod session_certs;
mod snapshot;
mod throttle;
mod view;

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, AssertSqlSafe, Row, Transaction};
use tokio::sync::watch;

use crate::error::StoreError;
use crate::model::{Document, Entity, Identity};

pub use changes::{Change, ChangeOp, ChangesSummary, NOTIFY_CHANNEL};
pub use controllers::ControllerRow;
pub use extensions::CertExtension;
pub use integrity::Finding;
pub use mfa::MfaRow;
pub use posture::{FAILED_REQUESTS_KEPT, FailedServiceRequest};
pub use security::{
    ApiSessionRow, AuthenticatorRow, CERT_METHOD, Credential, EnrollmentMethod, EnrollmentRow,
    ROUTER_AUTH_METHOD, SessionRow, UPDB_METHOD,
};
pub use service_configs::{ServiceConfigColumn, ServiceConfigRow};
pub use session_certs::ApiSessionCertRow;
pub use snapshot::prune_snapshots;

/// One stored entity of the management model.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityRow {
    /// Entity kind, the management API collection name (e.g. `services`).
    pub kind: String,
    /// Unique id.
    pub id: String,
    /// Unique (per kind) name.
    pub name: String,
    /// Free-form tags object.
    pub tags: serde_json::Value,
    /// Kind-specific fields.
    pub data: serde_json::Value,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last update time (RFC 3339).
    pub updated_at: String,
}

impl EntityRow {
    /// The document's `roleAttributes` (empty when it has none).
    pub fn role_attributes(&self) -> Vec<String> {
        self.data
            .get("roleAttributes")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (one controller).
    Sqlite,
    /// PostgreSQL (one or several controllers).
    Postgres,
}

/// Handle to the database.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
    /// Connections for reads (and, on PostgreSQL, writes).
    read: AnyPool,
    /// Connections for writes: one on SQLite, the read pool on PostgreSQL.
    write: AnyPool,
    /// The URL opened (the change follower's `LISTEN` connection uses it).
    url: String,
    /// The last revision this process committed.
    committed: watch::Sender<i64>,
    /// This process's mark on the changes it writes (`changes.origin`).
    origin: String,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections a PostgreSQL pool keeps at most.
const PG_POOL_SIZE: u32 = 16;
/// Reading connections of an SQLite pool.
const SQLITE_READERS: u32 = 4;
/// How long a request waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// `sqlite://PATH?mode=rwc` with the path percent-encoded (sqlx decodes it).
pub fn sqlite_url(path: &Path) -> String {
    let mut out = String::from("sqlite://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str("?mode=rwc");
    out
}

/// The URL with any password replaced by `***`, for logs and errors.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &userinfo[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Store {
    /// Opens the database at `url` (`sqlite://PATH?mode=rwc` or `postgres://…`),
    /// applies pending migrations and refuses a schema newer than this binary.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Config(format!(
                "store url {:?}: expected sqlite:PATH or postgres://…",
                redacted_url(url)
            )));
        };
        // A missing SQLite file is created unless the URL says otherwise.
        let url = &if backend == Backend::Sqlite && !url.contains("mode=") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc")
        } else {
            url.to_owned()
        };
        let (read, write) = match backend {
            Backend::Sqlite => {
                let options = || {
                    AnyPoolOptions::new()
                        .acquire_timeout(ACQUIRE_TIMEOUT)
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                // NORMAL sync in WAL mode: one fsync per checkpoint instead
                                // of several per transaction; a power loss can drop the
                                // last transactions, never corrupt the database.
                                sqlx::raw_sql(
                                    "PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000",
                                )
                                .execute(conn)
                                .await?;
                                Ok(())
                            })
                        })
                };
                let write = options().max_connections(1).connect(url).await?;
                sqlx::raw_sql("PRAGMA journal_mode = WAL")
                    .execute(&write)
                    .await?;
                let read = options()
                    .max_connections(SQLITE_READERS)
                    .connect(url)
                    .await?;
                (read, write)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(PG_POOL_SIZE)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect(url)
                    .await?;
                (pool.clone(), pool)
            }
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&write).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::VersionMissing(v) => StoreError::SchemaTooNew {
                found: v,
                known: migrator.iter().map(|m| m.version).max().unwrap_or(0),
            },
            other => StoreError::Migrate(other),
        })?;
        let store = Self {
            backend,
            read,
            write,
            url: url.to_owned(),
            committed: watch::Sender::new(0),
            origin: uuid::Uuid::new_v4().simple().to_string(),
        };
        let now = store.revision().await?;
        store.committed.send_replace(now);
        Ok(store)
    }

    /// The engine this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Starts a write transaction: the next revision of the store.
    ///
    /// Do no slow work while holding one (password hashing, network calls): it holds
    /// the write lock that every other writer waits for.
    pub async fn begin_write(&self) -> Result<WriteTx<'_>, StoreError> {
        let mut tx = self.write.begin().await?;
        let seq: i64 = sqlx::query_scalar(
            "UPDATE counters SET value = value + 1 WHERE name = 'changes' RETURNING value",
        )
        .fetch_one(&mut *tx)
        .await?;
        Ok(WriteTx {
            store: self,
            tx,
            seq,
            recorded: 0,
            recorded_changes: std::collections::HashSet::new(),
            entities_changed: false,
            services_changed: false,
            ended: Ended::default(),
        })
    }

    /// Reads a `meta` value.
    pub async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        meta_value(&self.read, key).await
    }

    /// Decodes an entity row selected with the columns of [`ENTITY_COLS`].
    fn entity_from(r: &AnyRow) -> Result<EntityRow, StoreError> {
        Ok(EntityRow {
            kind: r.try_get(0)?,
            id: r.try_get(1)?,
            name: r.try_get(2)?,
            tags: serde_json::from_str(&r.try_get::<String, _>(3)?)?,
            data: serde_json::from_str(&r.try_get::<String, _>(4)?)?,
            created_at: r.try_get(5)?,
            updated_at: r.try_get(6)?,
        })
    }

    /// Gets an entity by id.
    pub async fn get_entity(&self, kind: &str, id: &str) -> Result<Option<EntityRow>, StoreError> {
        entity_by(&self.read, kind, "id", id).await
    }

    /// Gets an entity by id, or else by name.
    pub async fn get_entity_by_id_or_name(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<EntityRow>, StoreError> {
        if let Some(e) = entity_by(&self.read, kind, "id", key).await? {
            return Ok(Some(e));
        }
        entity_by(&self.read, kind, "name", key).await
    }

    /// Every entity of a kind, ordered by name.
    pub async fn list_all(&self, kind: &str) -> Result<Vec<EntityRow>, StoreError> {
        entities_of(&self.read, kind).await
    }

    /// The entity `id` of `D`'s kind, its document typed.
    pub async fn entity<D: Document>(&self, id: &str) -> Result<Option<Entity<D>>, StoreError> {
        self.get_entity(D::KIND.collection(), id)
            .await?
            .map(Entity::from_row)
            .transpose()
    }

    /// Every entity of `D`'s kind, ordered by name, their documents typed.
    pub async fn entities<D: Document>(&self) -> Result<Vec<Entity<D>>, StoreError> {
        Entity::from_rows(self.list_all(D::KIND.collection()).await?)
    }

    /// The identity whose `externalId` is `external_id` (unique when set).
    pub async fn identity_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Option<Entity<Identity>>, StoreError> {
        Ok(with_external_id(self.entities().await?, external_id))
    }
}

/// The identity of `identities` whose `externalId` is `external_id`.
fn with_external_id(
    identities: Vec<Entity<Identity>>,
    external_id: &str,
) -> Option<Entity<Identity>> {
    identities
        .into_iter()
        .find(|i| i.doc.external_id.as_deref() == Some(external_id))
}

const ENTITY_COLS: &str = "kind, id, name, tags, data, created_at, updated_at";

/// Every entity of `kind`, ordered by name.
async fn entities_of<'e, E: sqlx::Executor<'e, Database = Any>>(
    ex: E,
    kind: &str,
) -> Result<Vec<EntityRow>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {ENTITY_COLS} FROM entities WHERE kind = $1 ORDER BY name"
    )))
    .bind(kind)
    .fetch_all(ex)
    .await?;
    rows.iter().map(Store::entity_from).collect()
}

/// The `meta` value of `key`.
async fn meta_value<'e, E: sqlx::Executor<'e, Database = Any>>(
    ex: E,
    key: &str,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(key)
        .fetch_optional(ex)
        .await?)
}

/// The entity of `kind` whose `column` (a fixed column name, never input) is `value`.
async fn entity_by<'e, E: sqlx::Executor<'e, Database = Any>>(
    ex: E,
    kind: &str,
    column: &'static str,
    value: &str,
) -> Result<Option<EntityRow>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {ENTITY_COLS} FROM entities WHERE kind = $1 AND {column} = $2"
    )))
    .bind(kind)
    .bind(value)
    .fetch_optional(ex)
    .await?;
    row.as_ref().map(Store::entity_from).transpose()
}

/// One write transaction: a revision of the store. Every write records what it
/// changed in the change log; [`WriteTx::commit`] makes it visible and wakes the
/// change followers. Dropped without commit, it rolls back.
///
/// While one is open no other write commits (writers are serialised), so reads made
/// through the [`Store`] meanwhile see exactly the state it builds on, less its own
/// uncommitted writes. After any error the transaction is unusable (PostgreSQL aborts
/// it): drop it.
#[derive(Debug)]
pub struct WriteTx<'s> {
    store: &'s Store,
    tx: Transaction<'static, Any>,
    seq: i64,
    recorded: i64,
    /// The changes recorded so far, each once: followers read the entity's state as
    /// the transaction left it, so a second row for the same change says nothing more
    /// (an identity given 100 service configs in one request is one row, not 100).
    recorded_changes: std::collections::HashSet<(String, String, ChangeOp)>,
    entities_changed: bool,
    /// Something that changes what `/services` answers, besides entities (posture),
    /// changed: `service-updates.lastChangeAt` moves.
    services_changed: bool,
    /// What this transaction ended, logged as a security event once it commits.
    ended: Ended,
}

/// API sessions and sessions a transaction removed, and why (set by the operation
/// that revokes access; removals without a cause, such as idle expiry or a client
/// ending its own session, are not security events).
#[derive(Debug, Default)]
struct Ended {
    cause: Option<(&'static str, String)>,
    api_sessions: u64,
    sessions: u64,
}

impl WriteTx<'_> {
    /// Marks this transaction as revoking access: once it commits, the API sessions and
    /// sessions it removed are logged at WARN (`event = "access_revoked"`) with `cause`
    /// (a stable word such as `identity_disabled`) and `subject` (the entity's id).
    /// The first cause set stands.
    pub fn revoking(&mut self, cause: &'static str, subject: &str) {
        self.ended
            .cause
            .get_or_insert_with(|| (cause, subject.to_owned()));
    }

    /// The revision this transaction commits as.
    pub fn revision(&self) -> i64 {
        self.seq
    }

    /// Records a change in the change log (once per transaction: the same change again
    /// adds nothing).
    pub async fn record(
        &mut self,
        kind: &str,
        entity_id: &str,
        op: ChangeOp,
    ) -> Result<(), StoreError> {
        if !self
            .recorded_changes
            .insert((kind.to_owned(), entity_id.to_owned(), op))
        {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO changes (seq, n, kind, entity_id, op, at, origin)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(self.seq)
        .bind(self.recorded)
        .bind(kind)
        .bind(entity_id)
        .bind(op.as_str())
        .bind(crate::clock::now_unix_ms())
        .bind(&self.store.origin)
        .execute(&mut *self.tx)
        .await?;
        self.recorded += 1;
        if crate::model::Kind::from_collection(kind).is_some() {
            self.entities_changed = true;
        }
        Ok(())
    }

    /// Writes a `meta` value.
    pub async fn meta_set(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *self.tx)
        .await?;
        self.record("meta", key, ChangeOp::Update).await
    }

    /// Writes a `meta` value only where none is set; returns the value now stored.
    pub async fn meta_set_default(&mut self, key: &str, value: &str) -> Result<String, StoreError> {
        let n = sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        if n == 1 {
            self.record("meta", key, ChangeOp::Create).await?;
        }
        meta_value(&mut *self.tx, key)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("meta {key:?} vanished")))
    }

    /// Reads a `meta` value inside the transaction.
    pub async fn meta_get(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        meta_value(&mut *self.tx, key).await
    }

    /// Inserts a new entity; a taken name gives [`StoreError::Duplicate`].
    pub async fn insert_entity(&mut self, e: &EntityRow) -> Result<(), StoreError> {
        let res = sqlx::query(
            "INSERT INTO entities (kind, id, name, tags, data, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&e.kind)
        .bind(&e.id)
        .bind(&e.name)
        .bind(e.tags.to_string())
        .bind(e.data.to_string())
        .bind(&e.created_at)
        .bind(&e.updated_at)
        .execute(&mut *self.tx)
        .await;
        match res {
            Ok(_) => self.record(&e.kind, &e.id, ChangeOp::Create).await,
            Err(err) if is_unique_violation(&err) => Err(StoreError::Duplicate(e.name.clone())),
            Err(err) => Err(err.into()),
        }
    }

    /// Replaces name, tags, data and updatedAt of an entity. Returns false if absent.
    pub async fn update_entity(&mut self, e: &EntityRow) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE entities SET name = $3, tags = $4, data = $5, updated_at = $6
             WHERE kind = $1 AND id = $2",
        )
        .bind(&e.kind)
        .bind(&e.id)
        .bind(&e.name)
        .bind(e.tags.to_string())
        .bind(e.data.to_string())
        .bind(&e.updated_at)
        .execute(&mut *self.tx)
        .await;
        match res {
            Ok(r) if r.rows_affected() == 1 => {
                self.record(&e.kind, &e.id, ChangeOp::Update).await?;
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(err) if is_unique_violation(&err) => Err(StoreError::Duplicate(e.name.clone())),
            Err(err) => Err(err.into()),
        }
    }

    /// Deletes an entity. Returns false if absent.
    pub async fn delete_entity(&mut self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM entities WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(id)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        if n == 1 {
            self.record(kind, id, ChangeOp::Delete).await?;
        }
        Ok(n == 1)
    }

    /// Gets an entity by id inside the transaction.
    pub async fn get_entity(
        &mut self,
        kind: &str,
        id: &str,
    ) -> Result<Option<EntityRow>, StoreError> {
        entity_by(&mut *self.tx, kind, "id", id).await
    }

    /// Gets an entity by id, or else by name, inside the transaction.
    pub async fn get_entity_by_id_or_name(
        &mut self,
        kind: &str,
        key: &str,
    ) -> Result<Option<EntityRow>, StoreError> {
        if let Some(e) = entity_by(&mut *self.tx, kind, "id", key).await? {
            return Ok(Some(e));
        }
        entity_by(&mut *self.tx, kind, "name", key).await
    }

    /// Every entity of a kind, ordered by name, inside the transaction.
    pub async fn list_all(&mut self, kind: &str) -> Result<Vec<EntityRow>, StoreError> {
        entities_of(&mut *self.tx, kind).await
    }

    /// [`Store::entity`] inside the transaction.
    pub async fn entity<D: Document>(&mut self, id: &str) -> Result<Option<Entity<D>>, StoreError> {
        self.get_entity(D::KIND.collection(), id)
            .await?
            .map(Entity::from_row)
            .transpose()
    }

    /// [`Store::entities`] inside the transaction.
    pub async fn entities<D: Document>(&mut self) -> Result<Vec<Entity<D>>, StoreError> {
        Entity::from_rows(self.list_all(D::KIND.collection()).await?)
    }

    /// Writes a typed entity back ([`Self::update_entity`]); false when it no longer
    /// exists.
    pub async fn update_typed<D: Document>(&mut self, e: Entity<D>) -> Result<bool, StoreError> {
        self.update_entity(&e.into_row()?).await
    }

    /// [`Store::identity_by_external_id`] inside the transaction.
    pub async fn identity_by_external_id(
        &mut self,
        external_id: &str,
    ) -> Result<Option<Entity<Identity>>, StoreError> {
        Ok(with_external_id(self.entities().await?, external_id))
    }

    /// Commits. Returns the revision, or `None` when nothing was recorded (the
    /// transaction is rolled back then, so the revision is not used up).
    pub async fn commit(mut self) -> Result<Option<i64>, StoreError> {
        if self.recorded == 0 {
            self.tx.rollback().await?;
            return Ok(None);
        }
        if self.entities_changed {
            sqlx::query("UPDATE counters SET value = $1 WHERE name = 'entities'")
                .bind(self.seq)
                .execute(&mut *self.tx)
                .await?;
        }
        if self.entities_changed || self.services_changed {
            // What SDKs poll (`service-updates.lastChangeAt`) to know when to list
            // their services again.
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ('last_change_at', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(crate::clock::now_string())
            .execute(&mut *self.tx)
            .await?;
        }
        if self.store.backend == Backend::Postgres {
            // Delivered to every listening controller when (and only if) this commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(self.seq.to_string())
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        if let Some((cause, subject)) = &self.ended.cause
            && self.ended.api_sessions + self.ended.sessions > 0
        {
            tracing::warn!(
                event = "access_revoked",
                cause = *cause,
                subject = %subject,
                api_sessions = self.ended.api_sessions,
                sessions = self.ended.sessions,
                "access revoked; routers close the connections and circuits it held"
            );
        }
        let seq = self.seq;
        self.store.committed.send_if_modified(|last| {
            let newer = seq > *last;
            if newer {
                *last = seq;
            }
            newer
        });
        Ok(Some(seq))
    }
}

#[cfg(test)]
mod tests;
