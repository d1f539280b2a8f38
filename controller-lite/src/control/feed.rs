//! The change feed: the router-facing view as last published, a revision counter and
//! a broadcast of the revisioned [`pb::StateUpdate`]s between published views.
//!
//! Design: every change to what routers must know is published through
//! [`FeedGuard::publish`]: under one lock, a builder ([`crate::control::view`]) reads
//! the store and produces a [`Patch`] against the published view (from the change log
//! for writes, from the whole store for the sweep), the view applies it, and the
//! difference is broadcast as the next revision. Snapshots ([`ChangeFeed::subscribe`])
//! are taken under the same lock together with a new broadcast receiver, so a router
//! gets a [`pb::StateSync`] at revision R and then every update R+1, R+2, … exactly
//! once and in order. Judging from the store instead of emitting per-handler events
//! means no write path can forget a consequence (a policy change that revokes
//! sessions, an identity deletion that ends its API sessions).

use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard, broadcast};
use weft_wire::control::pb;

use super::view::{Patch, RouterView};

#[derive(Debug, Default)]
struct Published {
    revision: u64,
    view: RouterView,
    /// The store revision (change log sequence) the view is current with; `None`
    /// before the first full build.
    store_seq: Option<i64>,
}

/// Revisioned router state with a broadcast of its changes.
#[derive(Debug)]
pub struct ChangeFeed {
    published: Mutex<Published>,
    tx: broadcast::Sender<Arc<pb::StateUpdate>>,
}

/// Updates a receiver may fall behind by before it must resynchronise.
pub const FEED_CAPACITY: usize = 1024;

impl Default for ChangeFeed {
    fn default() -> Self {
        Self::new(FEED_CAPACITY)
    }
}

/// The published view, locked for one publication.
#[derive(Debug)]
pub struct FeedGuard<'a> {
    published: MutexGuard<'a, Published>,
    tx: &'a broadcast::Sender<Arc<pb::StateUpdate>>,
}

impl FeedGuard<'_> {
    /// The published view.
    pub fn view(&self) -> &RouterView {
        &self.published.view
    }

    /// The store revision the view is current with (`None` before the first build).
    pub fn store_seq(&self) -> Option<i64> {
        self.published.store_seq
    }

    /// Applies `patch`, records that the view is now current with store revision
    /// `store_seq`, and broadcasts the difference as the next revision. An API
    /// session whose only change is a later expiry is re-sent only once the expiry
    /// moved by `expiry_slack_ms` or more. Returns the new revision, or `None` when
    /// nothing routers hold changed.
    pub fn publish(&mut self, patch: Patch, store_seq: i64, expiry_slack_ms: i64) -> Option<u64> {
        let p = &mut *self.published;
        p.store_seq = Some(p.store_seq.map_or(store_seq, |s| s.max(store_seq)));
        let mut u = p.view.apply(patch, expiry_slack_ms);
        if u == pb::StateUpdate::default() {
            return None;
        }
        p.revision += 1;
        u.revision = p.revision;
        // No receivers is fine: routers that connect later start from a snapshot.
        let _ = self.tx.send(Arc::new(u));
        Some(p.revision)
    }
}

impl ChangeFeed {
    /// An empty feed at revision 0 whose receivers lag after `capacity` updates.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            published: Mutex::new(Published::default()),
            tx,
        }
    }

    /// Locks the published view for a publication. An async lock: building the
    /// changes reads the database while holding it, so concurrent publications
    /// apply in the order they read the store.
    pub async fn lock(&self) -> FeedGuard<'_> {
        FeedGuard {
            published: self.published.lock().await,
            tx: &self.tx,
        }
    }

    /// The revision of the published state.
    pub async fn revision(&self) -> u64 {
        self.published.lock().await.revision
    }

    /// A full snapshot and a receiver of every update after it.
    pub async fn subscribe(&self) -> (pb::StateSync, broadcast::Receiver<Arc<pb::StateUpdate>>) {
        let p = self.published.lock().await;
        let rx = self.tx.subscribe();
        (p.view.snapshot(p.revision), rx)
    }

    /// A copy of the published view (tests compare it with a full rebuild).
    #[cfg(test)]
    pub async fn view(&self) -> RouterView {
        self.published.lock().await.view.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(id: &str, exp: i64) -> pb::ApiSession {
        pb::ApiSession {
            id: id.into(),
            token: format!("t-{id}"),
            expires_at_unix_ms: exp,
            ..Default::default()
        }
    }

    fn view(apis: &[pb::ApiSession]) -> RouterView {
        let mut v = RouterView::default();
        for a in apis {
            v.insert_api_session(a.clone());
        }
        v
    }

    async fn publish(feed: &ChangeFeed, desired: &RouterView, slack: i64) -> Option<u64> {
        let mut g = feed.lock().await;
        let patch = g.view().diff(desired);
        g.publish(patch, 1, slack)
    }

    #[tokio::test]
    async fn concurrent_requests_share_publications_and_each_waits_for_one_after_it() {
        let publisher = Arc::new(Publisher::default());
        let runs = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let server = tokio::spawn({
            let (publisher, runs) = (publisher.clone(), runs.clone());
            async move {
                publisher
                    .serve(|| {
                        let runs = runs.clone();
                        async move {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    })
                    .await;
            }
        });
        while !publisher.running() {
            tokio::task::yield_now().await;
        }
        let mut waiters = Vec::new();
        for _ in 0..50 {
            let publisher = publisher.clone();
            let runs = runs.clone();
            waiters.push(tokio::spawn(async move {
                let before = runs.load(std::sync::atomic::Ordering::SeqCst);
                let round = publisher.request();
                publisher.wait(round).await;
                // A publication finished after the request.
                assert!(runs.load(std::sync::atomic::Ordering::SeqCst) > before);
            }));
        }
        for w in waiters {
            w.await.unwrap();
        }
        let n = runs.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..50).contains(&n), "{n} publications for 50 requests");
        server.abort();
    }

    #[tokio::test]
    async fn snapshot_then_consecutive_updates() {
        let feed = ChangeFeed::new(16);
        assert_eq!(feed.lock().await.store_seq(), None);
        assert_eq!(
            publish(&feed, &view(&[api("a", 5000)]), 1000).await,
            Some(1)
        );
        assert_eq!(feed.lock().await.store_seq(), Some(1));
        let (sync, mut rx) = feed.subscribe().await;
        assert_eq!(sync.revision, 1);
        assert_eq!(sync.api_sessions.len(), 1);
        // Unchanged state publishes nothing; a small expiry move is not re-sent.
        assert_eq!(publish(&feed, &view(&[api("a", 5500)]), 1000).await, None);
        assert_eq!(
            publish(&feed, &view(&[api("a", 6000), api("b", 0)]), 1000).await,
            Some(2)
        );
        let u = rx.try_recv().unwrap();
        assert_eq!(u.revision, 2);
        let added: Vec<_> = u.api_sessions_added.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(added, ["a", "b"]);
        assert_eq!(publish(&feed, &view(&[]), 1000).await, Some(3));
        let u = rx.try_recv().unwrap();
        assert_eq!(u.revision, 3);
        assert_eq!(u.api_sessions_removed, ["a", "b"]);
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn lag_is_reported() {
        let feed = ChangeFeed::new(1);
        let (_, mut rx) = feed.subscribe().await;
        publish(&feed, &view(&[api("a", 0)]), 0).await.unwrap();
        publish(&feed, &view(&[]), 0).await.unwrap();
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(1))
        ));
    }
}

/// Coalesces the publications that writes ask for: a write that committed asks for a
/// publication ([`Publisher::request`]) and waits until one that started after its
/// request finished; one task ([`crate::controller::Controller::run_publisher`]) does
/// them one after another, so concurrent writes share a rebuild instead of each
/// running its own.
#[derive(Debug)]
pub struct Publisher {
    /// Rounds requested so far.
    requested: std::sync::atomic::AtomicU64,
    /// Whether the publishing task runs (otherwise callers publish themselves).
    running: std::sync::atomic::AtomicBool,
    wake: tokio::sync::Notify,
    done: tokio::sync::watch::Sender<u64>,
}

impl Default for Publisher {
    fn default() -> Self {
        Self {
            requested: std::sync::atomic::AtomicU64::new(0),
            running: std::sync::atomic::AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            done: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Publisher {
    /// Whether a publishing task serves requests.
    pub fn running(&self) -> bool {
        self.running.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Asks for a publication; returns the round to wait for with [`Self::wait`].
    pub fn request(&self) -> u64 {
        let round = self
            .requested
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        // A permit is stored when the task is busy: no request is lost.
        self.wake.notify_one();
        round
    }

    /// Waits until round `round` was published.
    pub async fn wait(&self, round: u64) {
        let mut rx = self.done.subscribe();
        // The sender lives as long as `self`: the wait ends when the round is done.
        let _ = rx.wait_for(|done| *done >= round).await;
    }

    /// The publishing task's loop: `publish` runs once per batch of requests.
    pub async fn serve<F, Fut>(&self, mut publish: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        self.running
            .store(true, std::sync::atomic::Ordering::Release);
        loop {
            let target = self.requested.load(std::sync::atomic::Ordering::Acquire);
            if target > *self.done.borrow() {
                // Every round up to `target` was requested after its write committed,
                // and this publication reads the store after that: it covers them all.
                publish().await;
                self.done.send_replace(target);
            } else {
                self.wake.notified().await;
            }
        }
    }
}
