//! Embedded SQLite store (rusqlite). Entities of the management model are kept
//! as JSON documents in one `entities` table keyed by (kind, id) with a unique
//! name per kind; security-critical records (enrollments, authenticators,
//! API sessions, sessions) have their own tables.

mod records;
mod schema;
mod security;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::error::StoreError;

pub use security::{
    ApiSessionRow, AuthenticatorRow, EnrollmentRow, ROUTER_AUTH_METHOD, RedeemError, SessionRow,
};

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
    pub tags: Value,
    /// Kind-specific fields.
    pub data: Value,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last update time (RFC 3339).
    pub updated_at: String,
}

/// Handle to the database.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    /// Counts writes to the `entities` table, so caches derived from entities (the
    /// policy index) know when they are stale.
    entity_generation: AtomicU64,
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn row_to_entity(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, String, String, String, String)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn to_entity(
    t: (String, String, String, String, String, String, String),
) -> Result<EntityRow, StoreError> {
    Ok(EntityRow {
        kind: t.0,
        id: t.1,
        name: t.2,
        tags: serde_json::from_str(&t.3)?,
        data: serde_json::from_str(&t.4)?,
        created_at: t.5,
        updated_at: t.6,
    })
}

const ENTITY_COLS: &str = "kind, id, name, tags, data, created_at, updated_at";

impl Store {
    /// Opens (creating if needed) the database file and applies the schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Write-ahead log with NORMAL sync: one fsync per checkpoint instead of several
        // per transaction. The database stays consistent through crashes; a power loss
        // can drop the last transactions (sessions an SDK will simply ask for again).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        for stmt in schema::SCHEMA {
            conn.execute(stmt, [])?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
            entity_generation: AtomicU64::new(0),
        })
    }

    /// Changes whenever an entity is inserted, updated or deleted.
    pub fn entity_generation(&self) -> u64 {
        self.entity_generation.load(Ordering::Acquire)
    }

    fn entities_changed(&self) {
        self.entity_generation.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Reads a `meta` value.
    pub fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let c = self.lock()?;
        Ok(
            c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()?,
        )
    }

    /// Writes a `meta` value.
    pub fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let c = self.lock()?;
        let n = c.execute(
            "UPDATE meta SET value = ?2 WHERE key = ?1",
            params![key, value],
        )?;
        if n == 0 {
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )?;
        }
        Ok(())
    }

    /// Inserts a new entity; a taken name gives [`StoreError::Duplicate`].
    pub fn insert_entity(&self, e: &EntityRow) -> Result<(), StoreError> {
        let c = self.lock()?;
        self.entities_changed();
        let res = c.execute(
            "INSERT INTO entities (kind, id, name, tags, data, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                e.kind,
                e.id,
                e.name,
                e.tags.to_string(),
                e.data.to_string(),
                e.created_at,
                e.updated_at
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(err) if is_unique_violation(&err) => Err(StoreError::Duplicate(e.name.clone())),
            Err(err) => Err(err.into()),
        }
    }

    /// Replaces name, tags, data and updatedAt of an entity. Returns false if absent.
    pub fn update_entity(&self, e: &EntityRow) -> Result<bool, StoreError> {
        let c = self.lock()?;
        self.entities_changed();
        let res = c.execute(
            "UPDATE entities SET name = ?3, tags = ?4, data = ?5, updated_at = ?6 WHERE kind = ?1 AND id = ?2",
            params![e.kind, e.id, e.name, e.tags.to_string(), e.data.to_string(), e.updated_at],
        );
        match res {
            Ok(n) => Ok(n == 1),
            Err(err) if is_unique_violation(&err) => Err(StoreError::Duplicate(e.name.clone())),
            Err(err) => Err(err.into()),
        }
    }

    /// Deletes an entity. Returns false if absent.
    pub fn delete_entity(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let c = self.lock()?;
        self.entities_changed();
        Ok(c.execute(
            "DELETE FROM entities WHERE kind = ?1 AND id = ?2",
            params![kind, id],
        )? == 1)
    }

    /// Gets an entity by id.
    pub fn get_entity(&self, kind: &str, id: &str) -> Result<Option<EntityRow>, StoreError> {
        let c = self.lock()?;
        let t = c
            .query_row(
                &format!("SELECT {ENTITY_COLS} FROM entities WHERE kind = ?1 AND id = ?2"),
                params![kind, id],
                row_to_entity,
            )
            .optional()?;
        t.map(to_entity).transpose()
    }

    /// Gets an entity by id, or else by name.
    pub fn get_entity_by_id_or_name(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<EntityRow>, StoreError> {
        if let Some(e) = self.get_entity(kind, key)? {
            return Ok(Some(e));
        }
        let c = self.lock()?;
        let t = c
            .query_row(
                &format!("SELECT {ENTITY_COLS} FROM entities WHERE kind = ?1 AND name = ?2"),
                params![kind, key],
                row_to_entity,
            )
            .optional()?;
        t.map(to_entity).transpose()
    }

    /// Every entity of a kind, ordered by name.
    pub fn list_all(&self, kind: &str) -> Result<Vec<EntityRow>, StoreError> {
        let c = self.lock()?;
        let mut stmt = c.prepare(&format!(
            "SELECT {ENTITY_COLS} FROM entities WHERE kind = ?1 ORDER BY name"
        ))?;
        let rows: Vec<_> = stmt
            .query_map(params![kind], row_to_entity)?
            .collect::<Result<_, _>>()?;
        rows.into_iter().map(to_entity).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(name: &str) -> EntityRow {
        EntityRow {
            kind: "services".into(),
            id: format!("id-{name}"),
            name: name.into(),
            tags: json!({}),
            data: json!({"roleAttributes": []}),
            created_at: "t".into(),
            updated_at: "t".into(),
        }
    }

    #[test]
    fn crud_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        for n in ["b", "a", "c_1"] {
            s.insert_entity(&row(n)).unwrap();
        }
        assert!(matches!(
            s.insert_entity(&row("a")),
            Err(StoreError::Duplicate(_))
        ));
        let all = s.list_all("services").unwrap();
        assert_eq!(
            all.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c_1"]
        );
        assert!(s.delete_entity("services", "id-a").unwrap());
        assert!(s.get_entity("services", "id-a").unwrap().is_none());
        assert_eq!(
            s.get_entity_by_id_or_name("services", "b")
                .unwrap()
                .unwrap()
                .id,
            "id-b"
        );
    }
}
