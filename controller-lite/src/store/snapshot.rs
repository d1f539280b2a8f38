//! A consistent copy of an SQLite store (`POST /database/snapshot`): `VACUUM INTO` a new
//! file beside the database, named as OpenZiti names its snapshots (openziti/ziti
//! `controller/network/network.go`, `SnapshotDatabaseToFile`: `DB_FILE-DATE-TIME`). A
//! PostgreSQL store is backed up with PostgreSQL's own tools (`pg_dump`).

use std::path::{Path, PathBuf};

use super::{Backend, Store};
use crate::error::StoreError;

impl Store {
    /// The SQLite database file (`None` on PostgreSQL or for an in-memory database).
    pub async fn sqlite_file(&self) -> Result<Option<PathBuf>, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let file: Option<String> =
            sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                .fetch_optional(&self.read)
                .await?;
        Ok(file.filter(|f| !f.is_empty()).map(PathBuf::from))
    }

    /// Writes a consistent copy of the SQLite database to a new file beside it,
    /// `FILE-YYYYMMDD-HHMMSS` (UTC, `stamp`), and returns its path. Writers go on
    /// meanwhile (the copy reads one snapshot of the database). An existing file of that
    /// name is refused; PostgreSQL is refused with what to use instead.
    pub async fn snapshot(&self, stamp: &str) -> Result<PathBuf, StoreError> {
        let Some(db) = self.sqlite_file().await? else {
            return Err(StoreError::Config(match self.backend {
                Backend::Postgres => "the store is PostgreSQL: back it up with pg_dump".into(),
                Backend::Sqlite => "the store has no database file (in memory)".into(),
            }));
        };
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push(format!("-{stamp}"));
        let out = db.with_file_name(name);
        if out.exists() {
            return Err(StoreError::Config(format!(
                "{} exists already",
                out.display()
            )));
        }
        // Written under another name and renamed once whole: a copy in progress (or one
        // that failed) never passes for a snapshot, to a restore or to the pruning.
        let mut partial = out.clone().into_os_string();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let path = partial
            .to_str()
            .ok_or_else(|| StoreError::Config(format!("{} is not UTF-8", out.display())))?;
        // `VACUUM INTO` takes an expression: the path as a bound parameter.
        let copied = sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(&self.read)
            .await;
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
        if let Err(e) = std::fs::rename(&partial, &out) {
            let _ = std::fs::remove_file(&partial);
            return Err(StoreError::Config(format!(
                "renaming {} to {}: {e}",
                partial.display(),
                out.display()
            )));
        }
        Ok(out)
    }
}

/// Removes the oldest snapshots of the database `db` so that `keep` are left, `latest`
/// (the one just written) always among them whatever its stamp (a clock stepped back);
/// only files named as [`Store::snapshot`] names them; `keep` 0 removes none. Returns
/// what it removed.
pub fn prune_snapshots(db: &Path, keep: usize, latest: &Path) -> std::io::Result<Vec<PathBuf>> {
    if keep == 0 {
        return Ok(Vec::new());
    }
    let (Some(dir), Some(name)) = (db.parent(), db.file_name().and_then(|n| n.to_str())) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}-");
    let mut snapshots: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(is_stamp)
        })
        .filter(|p| p.as_path() != latest)
        .collect();
    // The stamps sort as the times they name.
    snapshots.sort();
    let excess = snapshots.len().saturating_sub(keep - 1);
    let mut removed = Vec::new();
    for old in snapshots.into_iter().take(excess) {
        std::fs::remove_file(&old)?;
        removed.push(old);
    }
    Ok(removed)
}

/// `YYYYMMDD-HHMMSS`.
fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 15
        && b.iter().enumerate().all(|(i, c)| {
            if i == 8 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_the_oldest_snapshots_beyond_the_kept_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("weft.db");
        let stamps = [
            "20261207-100000",
            "20261101-235959",
            "20261207-090000",
            "20250101-000000",
        ];
        for name in stamps.iter().map(|s| format!("weft.db-{s}")).chain(
            [
                "weft.db",
                "weft.db-wal",
                "weft.db-shm",
                "weft.db-2026",
                "other.db-20200101-000000",
            ]
            .map(String::from),
        ) {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let removed = prune_snapshots(&db, 3, &dir.path().join("weft.db-20261101-235959")).unwrap();
        let names = |v: &[PathBuf]| -> Vec<String> {
            let mut n: Vec<String> = v
                .iter()
                .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
                .collect();
            n.sort();
            n
        };
        // The latest is kept whatever its stamp, with the two newest others.
        assert_eq!(names(&removed), ["weft.db-20250101-000000"]);
        let left: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(
            names(&left),
            [
                "other.db-20200101-000000",
                "weft.db",
                "weft.db-2026",
                "weft.db-20261101-235959",
                "weft.db-20261207-090000",
                "weft.db-20261207-100000",
                "weft.db-shm",
                "weft.db-wal"
            ]
        );
        // 0 keeps every one; 1 only the latest.
        assert!(prune_snapshots(&db, 0, &db).unwrap().is_empty());
        let latest = dir.path().join("weft.db-20261207-090000");
        assert_eq!(prune_snapshots(&db, 1, &latest).unwrap().len(), 2);
        assert!(latest.exists());
    }
}
