//! The change feed: the router-facing state as last published, a revision counter and
//! a broadcast of the revisioned [`pb::StateUpdate`]s between published states.
//!
//! Design: every change to what routers must know (API sessions, sessions, services,
//! terminators, and which routers edge router and service edge router policies grant to
//! identities and services) is published by [`ChangeFeed::reconcile`], which, under one lock,
//! rebuilds the desired state from the store, diffs it against the published view,
//! bumps the revision and broadcasts the difference. Snapshots
//! ([`ChangeFeed::subscribe`]) are taken under the same lock together with a new
//! broadcast receiver, so a router gets a [`pb::StateSync`] at revision R and then every
//! update R+1, R+2, … exactly once and in order. Rebuilding instead of emitting
//! per-handler events means no write path can forget a consequence (a policy change
//! that revokes sessions, an identity deletion that ends its API sessions).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard, broadcast};
use weft_wire::control::pb;

/// What routers are told: every live API session, session, service and terminator,
/// each by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterView {
    /// Live API sessions.
    pub api_sessions: BTreeMap<String, pb::ApiSession>,
    /// Sessions still granted by policy.
    pub sessions: BTreeMap<String, pb::Session>,
    /// Services.
    pub services: BTreeMap<String, pb::Service>,
    /// Terminators.
    pub terminators: BTreeMap<String, pb::Terminator>,
    /// Per identity holding an API session: the routers edge router policies grant it.
    pub identity_routers: BTreeMap<String, pb::RouterAccess>,
    /// Per service: the routers service edge router policies grant it.
    pub service_routers: BTreeMap<String, pb::RouterAccess>,
}

#[derive(Debug, Default)]
struct Published {
    revision: u64,
    view: RouterView,
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

impl ChangeFeed {
    /// An empty feed at revision 0 whose receivers lag after `capacity` updates.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            published: Mutex::new(Published::default()),
            tx,
        }
    }

    async fn lock(&self) -> MutexGuard<'_, Published> {
        // An async lock: building the desired state reads the database while holding
        // it. The published state is only ever replaced whole after a successful diff.
        self.published.lock().await
    }

    /// The revision of the published state.
    pub async fn revision(&self) -> u64 {
        self.lock().await.revision
    }

    /// A full snapshot and a receiver of every update after it.
    pub async fn subscribe(&self) -> (pb::StateSync, broadcast::Receiver<Arc<pb::StateUpdate>>) {
        let p = self.lock().await;
        let rx = self.tx.subscribe();
        let v = &p.view;
        let sync = pb::StateSync {
            revision: p.revision,
            api_sessions: v.api_sessions.values().cloned().collect(),
            sessions: v.sessions.values().cloned().collect(),
            services: v.services.values().cloned().collect(),
            terminators: v.terminators.values().cloned().collect(),
            identity_routers: v.identity_routers.values().cloned().collect(),
            service_routers: v.service_routers.values().cloned().collect(),
        };
        (sync, rx)
    }

    /// Builds the desired state by awaiting `build` (under the feed lock, so
    /// concurrent reconciles publish in the order they read the store) and publishes the difference
    /// to the published state as the next revision. An API session whose only change is
    /// a later expiry is re-sent only once the expiry moved by `expiry_slack_ms` or
    /// more, so activity does not flood routers. Returns the new revision, or `None`
    /// when nothing changed.
    pub async fn reconcile<E>(
        &self,
        expiry_slack_ms: i64,
        build: impl Future<Output = Result<RouterView, E>>,
    ) -> Result<Option<u64>, E> {
        let mut p = self.lock().await;
        let mut desired = build.await?;
        let old = &p.view;
        let mut u = pb::StateUpdate::default();

        for (id, new) in &mut desired.api_sessions {
            match old.api_sessions.get(id) {
                Some(prev) if same_api_session(prev, new, expiry_slack_ms) => {
                    // Keep what routers were told.
                    *new = prev.clone();
                }
                _ => u.api_sessions_added.push(new.clone()),
            }
        }
        u.api_sessions_removed = removed(&old.api_sessions, &desired.api_sessions);
        u.sessions_added = changed(&old.sessions, &desired.sessions);
        u.sessions_removed = removed(&old.sessions, &desired.sessions);
        u.services_upserted = changed(&old.services, &desired.services);
        u.services_removed = removed(&old.services, &desired.services);
        u.terminators_upserted = changed(&old.terminators, &desired.terminators);
        u.terminators_removed = removed(&old.terminators, &desired.terminators);
        u.identity_routers_upserted = changed(&old.identity_routers, &desired.identity_routers);
        u.identity_routers_removed = removed(&old.identity_routers, &desired.identity_routers);
        u.service_routers_upserted = changed(&old.service_routers, &desired.service_routers);
        u.service_routers_removed = removed(&old.service_routers, &desired.service_routers);

        if u == pb::StateUpdate::default() {
            return Ok(None);
        }
        p.revision += 1;
        u.revision = p.revision;
        p.view = desired;
        // No receivers is fine: routers that connect later start from a snapshot.
        let _ = self.tx.send(Arc::new(u));
        Ok(Some(p.revision))
    }
}

fn same_api_session(prev: &pb::ApiSession, new: &pb::ApiSession, slack_ms: i64) -> bool {
    let expiry_close = match (prev.expires_at_unix_ms, new.expires_at_unix_ms) {
        (0, 0) => true,
        (0, _) | (_, 0) => false,
        (p, n) => n >= p && n - p < slack_ms,
    };
    expiry_close
        && prev.id == new.id
        && prev.token == new.token
        && prev.identity_id == new.identity_id
        && prev.identity_name == new.identity_name
        && prev.cert_fingerprints == new.cert_fingerprints
}

fn changed<T: Clone + PartialEq>(old: &BTreeMap<String, T>, new: &BTreeMap<String, T>) -> Vec<T> {
    new.iter()
        .filter(|(id, v)| old.get(*id) != Some(*v))
        .map(|(_, v)| v.clone())
        .collect()
}

fn removed<T>(old: &BTreeMap<String, T>, new: &BTreeMap<String, T>) -> Vec<String> {
    old.keys()
        .filter(|id| !new.contains_key(*id))
        .cloned()
        .collect()
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
        RouterView {
            api_sessions: apis.iter().map(|a| (a.id.clone(), a.clone())).collect(),
            ..Default::default()
        }
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
        let ok = |v: RouterView| async move { Ok::<_, ()>(v) };
        assert_eq!(
            feed.reconcile(1000, ok(view(&[api("a", 5000)]))).await,
            Ok(Some(1))
        );
        let (sync, mut rx) = feed.subscribe().await;
        assert_eq!(sync.revision, 1);
        assert_eq!(sync.api_sessions.len(), 1);
        // Unchanged state publishes nothing; a small expiry move is not re-sent.
        assert_eq!(
            feed.reconcile(1000, ok(view(&[api("a", 5500)]))).await,
            Ok(None)
        );
        assert_eq!(
            feed.reconcile(1000, ok(view(&[api("a", 6000), api("b", 0)])))
                .await,
            Ok(Some(2))
        );
        let u = rx.try_recv().unwrap();
        assert_eq!(u.revision, 2);
        let added: Vec<_> = u.api_sessions_added.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(added, ["a", "b"]);
        assert_eq!(feed.reconcile(1000, ok(view(&[]))).await, Ok(Some(3)));
        let u = rx.try_recv().unwrap();
        assert_eq!(u.revision, 3);
        assert_eq!(u.api_sessions_removed, ["a", "b"]);
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn failed_build_publishes_nothing_and_lag_is_reported() {
        let feed = ChangeFeed::new(1);
        let (_, mut rx) = feed.subscribe().await;
        assert_eq!(
            feed.reconcile(0, async { Err::<RouterView, _>("boom") })
                .await,
            Err("boom")
        );
        assert_eq!(feed.revision().await, 0);
        feed.reconcile(0, async { Ok::<_, ()>(view(&[api("a", 0)])) })
            .await
            .unwrap();
        feed.reconcile(0, async { Ok::<_, ()>(view(&[])) })
            .await
            .unwrap();
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
