//! Embedded SQLite store (rusqlite). Entities of the management model are kept
//! as JSON documents in one `entities` table keyed by (kind, id) with a unique
//! name per kind; security-critical records (enrollments, authenticators,
//! API sessions, sessions) have their own tables.

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

/// Name filter for list queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameFilter {
    /// `name = "x"`.
    Exact(String),
    /// `name contains "x"`.
    Contains(String),
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
        Ok(self.list_entities(kind, None, i64::MAX, 0)?.0)
    }

    /// One page of entities of a kind ordered by name, and the total count.
    pub fn list_entities(
        &self,
        kind: &str,
        filter: Option<&NameFilter>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<EntityRow>, i64), StoreError> {
        let (cond, arg) = match filter {
            None => ("", String::new()),
            Some(NameFilter::Exact(n)) => (" AND name = ?2", n.clone()),
            Some(NameFilter::Contains(n)) => {
                let esc = n
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                (" AND name LIKE ?2 ESCAPE '\\'", format!("%{esc}%"))
            }
        };
        let c = self.lock()?;
        let total: i64 = if filter.is_some() {
            c.query_row(
                &format!("SELECT COUNT(*) FROM entities WHERE kind = ?1{cond}"),
                params![kind, arg],
                |r| r.get(0),
            )?
        } else {
            c.query_row(
                "SELECT COUNT(*) FROM entities WHERE kind = ?1",
                params![kind],
                |r| r.get(0),
            )?
        };
        let sql = format!(
            "SELECT {ENTITY_COLS} FROM entities WHERE kind = ?1{cond} ORDER BY name LIMIT {} OFFSET {}",
            limit.max(0),
            offset.max(0)
        );
        let mut stmt = c.prepare(&sql)?;
        let rows: Vec<_> = if filter.is_some() {
            stmt.query_map(params![kind, arg], row_to_entity)?
                .collect::<Result<_, _>>()?
        } else {
            stmt.query_map(params![kind], row_to_entity)?
                .collect::<Result<_, _>>()?
        };
        let rows = rows
            .into_iter()
            .map(to_entity)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rows, total))
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
    fn crud_and_paging() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        for n in ["b", "a", "c_1"] {
            s.insert_entity(&row(n)).unwrap();
        }
        assert!(matches!(
            s.insert_entity(&row("a")),
            Err(StoreError::Duplicate(_))
        ));
        let (page, total) = s.list_entities("services", None, 2, 1).unwrap();
        assert_eq!(total, 3);
        assert_eq!(
            page.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["b", "c_1"]
        );
        let f = NameFilter::Contains("_".into());
        let (page, total) = s.list_entities("services", Some(&f), 10, 0).unwrap();
        assert_eq!((page.len(), total), (1, 1));
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
