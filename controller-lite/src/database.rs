//! Database maintenance through the management API: snapshots ([`SnapshotGate`]) and
//! data integrity runs (`/database/check-data-integrity`, `/database/fix-data-integrity`,
//! `/database/data-integrity-results`): one run at a time per controller, in the
//! background, its outcome kept until the next run starts, as OpenZiti's
//! `database_router.go` keeps it (a second start while one runs is refused; at most
//! [`MAX_RESULTS`] findings are kept, then `tooManyErrors`). What a run checks and
//! repairs is [`crate::store::WriteTx::check_integrity`].
//!
//! A run sees one state of the store. Checking only reads in a read transaction
//! ([`crate::store::Store::check_integrity`]), so writers go on meanwhile; a fixing run
//! is one write transaction that holds writers back while it reads (milliseconds for
//! thousands of entities), commits its repairs together, or none of them when anything
//! fails (every finding then says `fixed: false`), and tells routers what changed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::clock;
use crate::controller::Controller;
use crate::store::Finding;

/// Snapshots are at most one a minute, as OpenZiti allows them (openziti/ziti
/// `controller/network/network.go`, `DbSnapshotTooFrequentError`).
pub const SNAPSHOT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// When this controller last took a snapshot.
#[derive(Debug, Default)]
pub struct SnapshotGate {
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl SnapshotGate {
    /// Takes a snapshot with `take` unless one was taken within [`SNAPSHOT_INTERVAL`]
    /// (`None` then); one that fails does not count.
    pub async fn take<T, E, F>(&self, take: F) -> Option<Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let lock = || {
            self.last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        {
            let mut last = lock();
            if last.is_some_and(|t| t.elapsed() < SNAPSHOT_INTERVAL) {
                return None;
            }
            // Claimed now, so two requests at once make one snapshot.
            *last = Some(std::time::Instant::now());
        }
        let out = take.await;
        if out.is_err() {
            *lock() = None;
        }
        Some(out)
    }
}

/// Findings kept per run (OpenZiti keeps 1000).
pub const MAX_RESULTS: usize = 1000;

/// The outcome of the latest run, or of the one in progress.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// When it started (RFC 3339); `None` before the first run.
    pub start_time: Option<String>,
    /// When it ended; `None` while it runs.
    pub end_time: Option<String>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// It repairs what it can.
    pub fixing_errors: bool,
    /// What it found (the first [`MAX_RESULTS`]).
    pub results: Vec<Finding>,
    /// It found more than it keeps.
    pub too_many_errors: bool,
}

/// The runs of one controller.
#[derive(Debug, Default)]
pub struct IntegrityChecks {
    running: AtomicBool,
    latest: std::sync::Mutex<Run>,
}

impl IntegrityChecks {
    /// Whether a run is in progress, and the latest run's outcome.
    pub fn latest(&self) -> (bool, Run) {
        let run = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        (self.running.load(Ordering::Acquire), run)
    }

    fn set(&self, run: Run) {
        *self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = run;
    }
}

/// Starts a run on `ctl` (repairing with `fix`) unless one is in progress: false then.
pub fn start(ctl: &Arc<Controller>, fix: bool) -> bool {
    if ctl
        .integrity
        .running
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    let start_time = Some(clock::now_string());
    ctl.integrity.set(Run {
        start_time: start_time.clone(),
        fixing_errors: fix,
        ..Run::default()
    });
    let ctl = Arc::clone(ctl);
    tokio::spawn(async move {
        // Ends the run when dropped, also when the task panics.
        let _running = crate::limits::Running::new(&ctl.integrity.running);
        let run = run(&ctl, fix, start_time).await;
        ctl.integrity.set(run);
    });
    true
}

async fn run(ctl: &Controller, fix: bool, start_time: Option<String>) -> Run {
    let mut results = Vec::new();
    let mut found = 0usize;
    // Counted here, not from `results`, which keeps only the first MAX_RESULTS.
    let mut fixed = 0usize;
    let mut outcome = async {
        let mut record = |f: Finding| {
            found += 1;
            fixed += usize::from(f.fixed);
            if results.len() < MAX_RESULTS {
                results.push(f);
            }
        };
        if !fix {
            // A read transaction: writers go on meanwhile.
            return ctl.store.check_integrity(&mut record).await;
        }
        let mut tx = ctl.store.begin_write().await?;
        // API sessions and sessions a repair removes are logged as revoked.
        tx.revoking("data_integrity_fixed", "database");
        tx.check_integrity(true, &mut record).await?;
        tx.commit().await?;
        Ok::<_, crate::error::StoreError>(())
    }
    .await;
    if let Err(e) = &mut outcome {
        // Rolled back: nothing was repaired.
        for f in &mut results {
            f.fixed = false;
        }
        fixed = 0;
        tracing::error!(error = %e, "data integrity run failed");
    }
    if found > 0 {
        tracing::warn!(found, fixed, fix, "data integrity problems found");
        for f in &results {
            tracing::warn!(fixed = f.fixed, "data integrity: {}", f.description);
        }
    } else {
        tracing::info!(fix, "data integrity check found no problem");
    }
    if fix && fixed > 0 {
        ctl.notify_routers().await;
    }
    Run {
        start_time,
        end_time: Some(clock::now_string()),
        error: outcome.err().map(|e| e.to_string()),
        fixing_errors: fix,
        too_many_errors: found > MAX_RESULTS,
        results,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    async fn finished(ctl: &Controller) -> Run {
        for _ in 0..500 {
            let (running, run) = ctl.integrity.latest();
            if !running {
                return run;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the run did not end");
    }

    #[tokio::test]
    async fn one_run_at_a_time_and_its_outcome_stays_until_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = Arc::new(
            Controller::open(
                dir.path(),
                crate::config::Config::default(),
                "https://localhost:1280".into(),
            )
            .await
            .unwrap(),
        );
        let (running, before) = ctl.integrity.latest();
        assert!(!running);
        assert!(before.start_time.is_none() && before.end_time.is_none());

        // The runtime has one thread: the first run cannot have ended before the second
        // start, which is refused.
        assert!(start(&ctl, false));
        assert!(!start(&ctl, true));
        let (running, during) = ctl.integrity.latest();
        assert!(running);
        assert!(during.start_time.is_some() && during.end_time.is_none());
        assert!(!during.fixing_errors);

        let run = finished(&ctl).await;
        assert!(run.end_time.is_some(), "{run:?}");
        assert_eq!(run.error, None);
        assert!(run.results.is_empty(), "a fresh store is whole: {run:?}");
        assert!(!run.too_many_errors);

        assert!(start(&ctl, true));
        let run = finished(&ctl).await;
        assert!(run.fixing_errors);
        assert!(run.results.is_empty());
    }
}
