//! A real PostgreSQL for tests: a fresh cluster in a temporary directory, on a free
//! loopback port, started with `initdb` and `pg_ctl` as an unprivileged user (the
//! `postgres` account when the tests run as root, since PostgreSQL refuses to run as
//! root), stopped and removed on drop. Never a mock.
//!
//! The binaries are found on `PATH`, else in Debian's `/usr/lib/postgresql/<version>/bin`
//! (the `postgresql` package, which `.ci/run` installs). Without them, [`Postgres::start`]
//! says so; a test then skips unless `CI` is set, where a missing PostgreSQL fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::boot::BootError;
use crate::process::free_port;

/// A running PostgreSQL cluster (stopped on drop).
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<String>,
    port: u16,
    running: bool,
}

/// The directory holding `initdb`, `pg_ctl` and `psql`, if PostgreSQL is installed.
pub fn binaries() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "psql"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_all(d)) {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|d| has_all(d))
        .collect();
    versions.sort();
    versions.pop()
}

fn failed(what: &str, out: &Output) -> BootError {
    BootError::Failed(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

impl Postgres {
    /// Initialises and starts a cluster with a superuser `weft` (trust authentication,
    /// loopback only); waits until it accepts connections.
    pub fn start() -> Result<Self, BootError> {
        let bin = binaries().ok_or_else(|| {
            BootError::Failed(
                "PostgreSQL is not installed (initdb, pg_ctl, psql); `apt-get install postgresql`"
                    .into(),
            )
        })?;
        let run_as = is_root().then(|| "postgres".to_owned());
        let dir = tempfile::Builder::new()
            .prefix("weft-pg-")
            .tempdir()
            .map_err(|source| BootError::Io {
                what: "creating the cluster directory".into(),
                source,
            })?;
        if let Some(user) = &run_as {
            let out = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(dir.path())
                .output()
                .map_err(|source| BootError::Io {
                    what: "chown of the cluster directory".into(),
                    source,
                })?;
            if !out.status.success() {
                return Err(failed("chown of the cluster directory", &out));
            }
        }
        let mut pg = Self {
            dir,
            bin,
            run_as,
            port: free_port(),
            running: false,
        };
        let data = pg.data_dir();
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "weft", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()
            .map_err(|source| BootError::Io {
                what: "running initdb".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(failed("initdb", &out));
        }
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            pg.port,
            pg.dir.path().display()
        );
        let out = pg
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(pg.dir.path().join("postgres.log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .map_err(|source| BootError::Io {
                what: "running pg_ctl start".into(),
                source,
            })?;
        if !out.status.success() {
            let log =
                std::fs::read_to_string(pg.dir.path().join("postgres.log")).unwrap_or_default();
            return Err(BootError::Failed(format!(
                "{}\nlog:\n{log}",
                failed("pg_ctl start", &out)
            )));
        }
        pg.running = true;
        Ok(pg)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database` as the superuser `weft`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://weft@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` with `psql` on `database`; returns the unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, BootError> {
        let out = self
            .command("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "weft",
                "-d",
                database,
                "-c",
                sql,
            ])
            .output()
            .map_err(|source| BootError::Io {
                what: "running psql".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(failed(&format!("psql {sql:?}"), &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Creates database `name` (for one test, or one controller cluster).
    pub fn create_database(&self, name: &str) -> Result<(), BootError> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .map(|_| ())
    }

    /// Stops the cluster now (immediate shutdown, as a crash would); drop does it too.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let data = self.data_dir();
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `program` from the PostgreSQL binaries, as the unprivileged user when needed.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
