//! The change follower: keeps this controller's routers current with what every
//! controller on the same database writes.
//!
//! A controller brings its routers up to date itself after each of its own writes
//! ([`crate::controller::Controller::notify_routers`]). Writes by other controllers
//! reach it through the change log: PostgreSQL's `NOTIFY` wakes the follower at once,
//! and a poll every [`POLL`] reads the log anyway, so a lost notification (or a
//! broken `LISTEN` connection) delays a change by at most that long and loses nothing.
//! The table is the truth; the notification is only the wake-up.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock;
use crate::controller::Controller;
use crate::error::StoreError;

/// How often the log is read without a wake-up.
pub const POLL: Duration = Duration::from_secs(1);
/// Change rows older than this are pruned (followers that fall further behind simply
/// resynchronise from the current state, which every apply does anyway).
pub const RETENTION: Duration = Duration::from_secs(600);
/// How often pruning runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// A router presence not refreshed for this long no longer counts (its controller
/// died; the router reconnects to another, which records it anew).
pub const PRESENCE_LEASE: Duration = Duration::from_millis(PRESENCE_LEASE_MS.unsigned_abs());
/// [`PRESENCE_LEASE`] in milliseconds, as presence times are kept.
pub const PRESENCE_LEASE_MS: i64 = 10_000;

/// Runs until the process ends.
pub async fn follow_changes(ctl: Arc<Controller>) {
    let _running = crate::limits::Running::new(&ctl.metrics.change_follower_running);
    let mut last = match ctl.store.revision().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "change follower: reading the store revision failed");
            0
        }
    };
    let mut listener = open_listener(&ctl).await;
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = poll.tick() => {
                if listener.is_none() {
                    listener = open_listener(&ctl).await;
                }
                if let Err(e) = refresh_presence(&ctl).await {
                    tracing::warn!(error = %e, "refreshing router presence failed");
                }
            }
            _ = prune.tick() => {
                let before = clock::now_unix_ms()
                    - i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX);
                if let Err(e) = ctl.store.prune_changes(before).await {
                    tracing::warn!(error = %e, "pruning the change log failed");
                }
                if let Err(e) = ctl.login_throttle.prune(&ctl.store, clock::now_unix_ms()).await {
                    tracing::warn!(error = %e, "pruning the login throttle failed");
                }
                continue;
            }
            n = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(drop),
                    None => std::future::pending().await,
                }
            } => {
                if let Err(e) = n {
                    tracing::warn!(error = %e, "change follower: LISTEN connection lost; polling until it is back");
                    ctl.metrics.store_listen_failures.fetch_add(1, Ordering::Relaxed);
                    listener = None;
                }
            }
        }
        match apply(&ctl, last).await {
            Ok(now) => last = now,
            Err(e) => tracing::warn!(error = %e, "change follower: reading the change log failed"),
        }
    }
}

/// Looks at the log after `last` (one aggregate query, not its rows: the publication
/// reads the rows it needs); when another controller wrote something, brings this
/// controller's routers up to date. Returns the revision now seen.
async fn apply(ctl: &Controller, last: i64) -> Result<i64, StoreError> {
    let now = ctl.store.revision().await?;
    if now <= last {
        return Ok(last);
    }
    let log = ctl.store.changes_summary(last).await?;
    // A log pruned past `last` may hide remote changes: resynchronise then too.
    let gap = log.first.is_none_or(|first| first > last + 1);
    if log.remote > 0 || gap {
        ctl.metrics
            .store_revisions_followed
            .fetch_add(u64::try_from(log.remote).unwrap_or(0), Ordering::Relaxed);
        tracing::debug!(
            from = last,
            to = now,
            remote = log.remote,
            rows = log.rows,
            gap,
            "applying store changes"
        );
        ctl.sync_routers().await?;
    }
    ctl.metrics
        .store_revision
        .store(u64::try_from(now).unwrap_or(0), Ordering::Relaxed);
    Ok(now)
}

/// Refreshes the presence of this controller and of its routers, and reads every
/// controller's routers.
async fn refresh_presence(ctl: &Controller) -> Result<(), StoreError> {
    let now = clock::now_unix_ms();
    ctl.store.presence_refresh(now).await?;
    ctl.store.controller_seen(&ctl.controller_id, now).await?;
    let present = ctl.store.routers_present(now - PRESENCE_LEASE_MS).await?;
    ctl.routers.set_cluster_present(present);
    Ok(())
}

async fn open_listener(ctl: &Controller) -> Option<sqlx::postgres::PgListener> {
    match ctl.store.listen().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "change follower: LISTEN failed; polling every {POLL:?}");
            ctl.metrics
                .store_listen_failures
                .fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
