//! A consistent copy of an SQLite store (`POST /database/snapshot`): `VACUUM INTO` a new
//! file beside the database, named as OpenZiti names its snapshots (openziti/ziti
//! `controller/network/network.go`, `SnapshotDatabaseToFile`: `DB_FILE-DATE-TIME`). A
//! PostgreSQL store is backed up with PostgreSQL's own tools (`pg_dump`).

use std::path::PathBuf;

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
        let path = out
            .to_str()
            .ok_or_else(|| StoreError::Config(format!("{} is not UTF-8", out.display())))?;
        // `VACUUM INTO` takes an expression: the path as a bound parameter.
        let copied = sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(&self.read)
            .await;
        if let Err(e) = copied {
            // A partial copy (a full disk, say) must not pass for a snapshot.
            let _ = std::fs::remove_file(&out);
            return Err(e.into());
        }
        Ok(out)
    }
}
