//! The control channel between the controller and its edge routers (Weft's own
//! protocol, `docs/wire-format.md` §8): the change feed that every router follows
//! ([`feed`]), how the router-facing view is judged from the store and kept current ([`view`]), how
//! other controllers' writes reach it ([`follow`]), the mutual-TLS listener that
//! serves routers ([`listener`]), and the mesh of links and circuits across routers
//! ([`mesh`]).

pub mod feed;
pub mod follow;
pub mod listener;
pub mod mesh;
pub mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// File (in the data dir) where the running controller writes the control listener's
/// bound address.
pub const CONTROL_ADDR_FILE: &str = "control.addr";

/// Control connections by router id: connection id and the notification closing it.
type Conns = HashMap<String, Vec<(u64, Arc<Notify>)>>;

/// The edge routers whose control connection is up, with a way to close them.
#[derive(Debug, Default)]
pub struct RouterRegistry {
    conns: Mutex<Conns>,
    next_id: std::sync::atomic::AtomicU64,
    /// Routers connected to any controller of the cluster, as last read from the
    /// store's presence table ([`follow`] refreshes it every second), with the edge
    /// listeners each reported.
    cluster: Mutex<HashMap<String, Vec<String>>>,
    /// The edge listeners reported in the hello of routers connected here.
    reported: Mutex<HashMap<String, Vec<String>>>,
}

/// Locks a map whose every update is a single insert or remove, never left half-done.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RouterRegistry {
    fn lock(&self) -> MutexGuard<'_, Conns> {
        lock(&self.conns)
    }

    /// Registers a connection of `router_id`; returns its id and the notification that
    /// asks it to close.
    pub fn register(&self, router_id: &str) -> (u64, Arc<Notify>) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let kick = Arc::new(Notify::new());
        self.lock()
            .entry(router_id.to_string())
            .or_default()
            .push((id, kick.clone()));
        (id, kick)
    }

    /// Forgets a connection.
    pub fn unregister(&self, router_id: &str, conn_id: u64) {
        let mut map = self.lock();
        if let Some(v) = map.get_mut(router_id) {
            v.retain(|(id, _)| *id != conn_id);
            if v.is_empty() {
                map.remove(router_id);
                lock(&self.reported).remove(router_id);
            }
        }
    }

    /// Whether `router_id` has a control connection up (`isOnline`): to this
    /// controller, past its hello (so its edge listeners are known), or to another
    /// one of the cluster.
    pub fn is_online(&self, router_id: &str) -> bool {
        lock(&self.reported).contains_key(router_id) || lock(&self.cluster).contains_key(router_id)
    }

    /// Routers with a control connection up: to this controller, and to any controller
    /// of the cluster (as last read; this controller's own included).
    pub fn counts(&self) -> (usize, usize) {
        let local = self.lock();
        let cluster = lock(&self.cluster);
        let elsewhere = cluster.keys().filter(|r| !local.contains_key(*r)).count();
        (local.len(), local.len() + elsewhere)
    }

    /// Whether `router_id` has a control connection up to this controller.
    pub fn is_local(&self, router_id: &str) -> bool {
        self.lock().contains_key(router_id)
    }

    /// Records the edge listeners a router connected here reported in its hello.
    pub fn set_reported(&self, router_id: &str, listeners: Vec<String>) {
        if self.is_local(router_id) {
            lock(&self.reported).insert(router_id.to_string(), listeners);
        }
    }

    /// The edge listeners `router_id` reported: in its hello here, or as another
    /// controller of the cluster recorded them; empty while it is offline.
    pub fn edge_listeners(&self, router_id: &str) -> Vec<String> {
        if let Some(l) = lock(&self.reported).get(router_id) {
            return l.clone();
        }
        lock(&self.cluster)
            .get(router_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces the routers known connected anywhere in the cluster, with the edge
    /// listeners each reported.
    pub fn set_cluster_present(&self, routers: impl IntoIterator<Item = (String, Vec<String>)>) {
        *lock(&self.cluster) = routers.into_iter().collect();
    }

    /// Asks every control connection of `router_id` to close (router deleted or
    /// disabled).
    pub fn kick(&self, router_id: &str) {
        if let Some(v) = self.lock().get(router_id) {
            for (_, kick) in v {
                kick.notify_one();
            }
        }
    }
}
