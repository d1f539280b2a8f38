//! HTTPS listener: a tokio-rustls accept loop serving the axum router over
//! hyper-util, inserting each connection's peer address and client
//! certificates as a request extension ([`ConnInfo`]).
//!
//! Connections are bounded (`docs/security.md`, "Controller limits"): at most
//! `max_connections_per_source` per client address; a connection that has not sent a
//! complete request head within `http_header_read_timeout_ms` of its TLS handshake, or
//! idles longer than `http_idle_timeout_ms` between requests, is closed; a request may
//! take at most `http_request_timeout_ms`; and when accept fails for want of descriptors
//! (EMFILE/ENFILE) the least recently active idle connections are closed so that the
//! listener keeps serving. The counts are served as Prometheus text on `metrics_listen`
//! ([`crate::ops`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tower::ServiceExt;

use crate::config::Config;
use crate::controller::{ADDR_FILE, Controller, StartError};
use crate::error::ApiError;

/// File (in the data dir) where the running controller writes the metrics listener's
/// bound address (when `metrics_listen` is set).
pub const METRICS_ADDR_FILE: &str = "metrics.addr";

/// Idle connections closed per failed accept at the descriptor limit.
const SHED_BATCH: usize = 16;

/// Per-connection facts available to handlers.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Remote address.
    pub peer_addr: SocketAddr,
    /// Client certificate chain presented in the TLS handshake (leaf first). Only the
    /// leaf (`certs[0]`) proves anything: TLS shows possession of its key alone, and
    /// nothing here has verified the rest of the chain.
    pub certs: Arc<Vec<CertificateDer<'static>>>,
}

/// The timing limits of one HTTPS connection.
#[derive(Debug, Clone, Copy)]
struct ConnLimits {
    handshake: Duration,
    header: Duration,
    idle: Duration,
    request: Duration,
}

impl ConnLimits {
    fn new(cfg: &Config) -> Self {
        Self {
            handshake: Duration::from_millis(cfg.http.tls_handshake_timeout_ms),
            header: Duration::from_millis(cfg.http.header_read_timeout_ms),
            idle: Duration::from_millis(cfg.http.idle_timeout_ms),
            request: Duration::from_millis(cfg.http.request_timeout_ms),
        }
    }
}

/// Activity of one open HTTPS connection, shared by its task and its requests.
#[derive(Debug)]
struct ConnState {
    id: u64,
    peer: IpAddr,
    /// Milliseconds since the table's epoch of the last sign of life: accept, TLS
    /// handshake done, request finished.
    last_active_ms: AtomicU64,
    /// Requests begun (complete request heads).
    requests: AtomicU64,
    /// Requests being served now.
    in_flight: AtomicU64,
    /// Asks the connection to close now (descriptor shedding, request timeout).
    close: Notify,
}

#[derive(Debug, Default)]
struct TableInner {
    conns: HashMap<u64, Arc<ConnState>>,
    per_source: HashMap<IpAddr, usize>,
    next_id: u64,
}

/// The open HTTPS connections, by id and counted per source address.
#[derive(Debug)]
struct ConnTable {
    inner: Mutex<TableInner>,
    epoch: Instant,
}

impl ConnTable {
    fn new() -> Self {
        Self {
            inner: Mutex::new(TableInner::default()),
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TableInner> {
        // Every update is a few inserts or removes, never left half-done.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers a connection from `peer`, unless `peer` already has `cap` open.
    fn admit(&self, peer: IpAddr, cap: usize) -> Option<Arc<ConnState>> {
        let now = self.now_ms();
        let mut t = self.lock();
        let count = t.per_source.entry(peer).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        t.next_id += 1;
        let state = Arc::new(ConnState {
            id: t.next_id,
            peer,
            last_active_ms: AtomicU64::new(now),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            close: Notify::new(),
        });
        t.conns.insert(state.id, state.clone());
        Some(state)
    }

    fn remove(&self, state: &ConnState) {
        let mut t = self.lock();
        if t.conns.remove(&state.id).is_some() {
            if let Some(n) = t.per_source.get_mut(&state.peer) {
                *n -= 1;
                if *n == 0 {
                    t.per_source.remove(&state.peer);
                }
            }
        }
    }

    /// Asks up to `n` idle connections (no request in flight), least recently active
    /// first, to close; returns how many were asked.
    fn shed_idle(&self, n: usize) -> usize {
        let t = self.lock();
        let mut idle: Vec<&Arc<ConnState>> = t
            .conns
            .values()
            .filter(|c| c.in_flight.load(Ordering::Relaxed) == 0)
            .collect();
        idle.sort_by_key(|c| c.last_active_ms.load(Ordering::Relaxed));
        let victims = idle.into_iter().take(n).collect::<Vec<_>>();
        for c in &victims {
            c.close.notify_one();
        }
        victims.len()
    }
}

/// Removes a connection from the table and the open gauge however its task ends.
struct ConnGuard {
    ctl: Arc<Controller>,
    table: Arc<ConnTable>,
    state: Arc<ConnState>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.table.remove(&self.state);
        self.ctl
            .metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Marks a request finished when its response future completes or is dropped.
struct RequestGuard {
    table: Arc<ConnTable>,
    state: Arc<ConnState>,
}

impl RequestGuard {
    fn begin(table: Arc<ConnTable>, state: Arc<ConnState>) -> Self {
        state.requests.fetch_add(1, Ordering::Relaxed);
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        Self { table, state }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.state
            .last_active_ms
            .store(self.table.now_ms(), Ordering::Relaxed);
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether an accept error means the process or system ran out of descriptors.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Binds `addr`, the value of config key `key`; the error names both.
async fn bind(addr: SocketAddr, key: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, key, source })
}

/// Starts the controller in `data_dir` and serves until `shutdown` resolves.
/// The bound address is logged and written to `DATA_DIR/controller.addr`.
pub async fn run(
    data_dir: &Path,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let listener = bind(config.http.listen, "[http] listen").await?;
    let addr = listener.local_addr()?;
    let public_url = format!("https://{}:{}", config.http.advertised_host, addr.port());
    let ctl = Arc::new(Controller::open(data_dir, config, public_url).await?);
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(ctl.pki.server_tls_config()?));
    let app = crate::api::router(ctl.clone());
    let control = bind(ctl.config.control.listen, "[control] listen").await?;
    let control_addr = control.local_addr()?;
    let control_tls = tokio_rustls::TlsAcceptor::from(Arc::new(ctl.pki.control_tls_config()?));
    // The liveness flags `/ready` reads: up from here (the socket is bound, its task
    // spawned), down when the task ends (its guard).
    ctl.metrics.control_listening.store(true, Ordering::Relaxed);
    tokio::spawn(crate::control::listener::serve(
        ctl.clone(),
        control,
        control_tls,
    ));
    std::fs::write(
        data_dir.join(crate::control::CONTROL_ADDR_FILE),
        format!("{control_addr}\n"),
    )?;
    tracing::info!(%control_addr, "router control listener up");
    ctl.store
        .controller_joined(&ctl.controller_row(control_addr.port()))
        .await?;
    ctl.metrics
        .change_follower_running
        .store(true, Ordering::Relaxed);
    tokio::spawn(crate::control::follow::follow_changes(ctl.clone()));
    if let Some(metrics_addr) = ctl.config.metrics.listen {
        let metrics = bind(metrics_addr, "[metrics] listen").await?;
        let bound = metrics.local_addr()?;
        std::fs::write(data_dir.join(METRICS_ADDR_FILE), format!("{bound}\n"))?;
        tracing::info!(addr = %bound, "metrics listener up");
        tokio::spawn(crate::ops::serve(ctl.clone(), metrics));
    }
    std::fs::write(data_dir.join(ADDR_FILE), format!("{addr}\n"))?;
    tracing::info!(%addr, url = %ctl.public_url, "weft-controller listening");
    let password_file = data_dir.join(crate::controller::ADMIN_PASSWORD_FILE);
    if password_file.exists() {
        tracing::info!(
            user = crate::controller::ADMIN_USERNAME,
            password_file = %password_file.display(),
            "the default administrator's password is in its file (mode 0600)"
        );
    }
    tokio::spawn(ctl.clone().run_publisher());
    tokio::spawn(sweep_idle_sessions(ctl.clone()));
    let table = Arc::new(ConnTable::new());
    let limits = ConnLimits::new(&ctl.config);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer_addr) = tokio::select! {
            res = listener.accept() => match res {
                Ok(x) => x,
                Err(e) if out_of_descriptors(&e) => {
                    // Keep serving at the descriptor limit: free descriptors held by the
                    // least recently active idle connections, then accept again.
                    let shed = table.shed_idle(SHED_BATCH);
                    ctl.metrics.connections_shed.fetch_add(shed as u64, Ordering::Relaxed);
                    tracing::warn!(error = %e, shed, "out of descriptors; closing idle connections");
                    let pause = if shed > 0 { 5 } else { 50 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => {
                tracing::info!("shutting down: no new connections");
                // The other controllers list this one offline at once.
                if let Err(e) = ctl.store.controller_seen(&ctl.controller_id, 0).await {
                    tracing::warn!(error = %e, "recording this controller's stop failed");
                }
                break;
            }
        };
        ctl.metrics
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        let Some(state) = table.admit(peer_addr.ip(), ctl.config.http.max_connections_per_source)
        else {
            ctl.metrics
                .connections_refused_per_source
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer_addr, "connection refused: per-source connection cap");
            drop(tcp);
            continue;
        };
        ctl.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
        let guard = ConnGuard {
            ctl: ctl.clone(),
            table: table.clone(),
            state,
        };
        tokio::spawn(serve_connection(
            guard,
            tcp,
            peer_addr,
            tls.clone(),
            app.clone(),
            limits,
        ));
    }
    Ok(())
}

/// Serves one HTTPS connection within its [`ConnLimits`].
async fn serve_connection(
    guard: ConnGuard,
    tcp: TcpStream,
    peer_addr: SocketAddr,
    tls: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    limits: ConnLimits,
) {
    let state = guard.state.clone();
    let table = guard.table.clone();
    let ctl = guard.ctl.clone();
    // Answers go out at once: without it, a response written in two segments waits for
    // the client's delayed ACK (about 40 ms a login on Linux).
    let _ = tcp.set_nodelay(true);
    let stream = tokio::select! {
        r = tokio::time::timeout(limits.handshake, tls.accept(tcp)) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer_addr, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                ctl.metrics.connections_closed_idle.fetch_add(1, Ordering::Relaxed);
                return;
            }
        },
        () = state.close.notified() => return,
    };
    // The request-head deadline runs from the end of the handshake.
    state
        .last_active_ms
        .store(table.now_ms(), Ordering::Relaxed);
    let certs: Vec<CertificateDer<'static>> = stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let info = ConnInfo {
        peer_addr,
        certs: Arc::new(certs),
    };
    let (svc_table, svc_state, svc_ctl) = (table.clone(), state.clone(), ctl.clone());
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let done = RequestGuard::begin(svc_table.clone(), svc_state.clone());
        req.extensions_mut().insert(info.clone());
        let fut = app.clone().oneshot(req.map(axum::body::Body::new));
        let ctl = svc_ctl.clone();
        async move {
            let res = match tokio::time::timeout(limits.request, fut).await {
                Ok(res) => res,
                Err(_) => {
                    ctl.metrics
                        .requests_timed_out
                        .fetch_add(1, Ordering::Relaxed);
                    // hyper does not reuse a connection whose request body was left
                    // unread: a slow body ends with this answer.
                    Ok(axum::response::IntoResponse::into_response(
                        ApiError::Timeout,
                    ))
                }
            };
            drop(done);
            res
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // hyper's own head timeout also runs while a keep-alive connection waits for its
    // next request; the loop below enforces both deadlines (first head, idle between
    // requests, a slow head counting as idle), so hyper's is only a later backstop.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle + limits.header);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    loop {
        let idle_for = if state.requests.load(Ordering::Relaxed) == 0 {
            limits.header
        } else {
            limits.idle
        };
        let since = Duration::from_millis(
            table
                .now_ms()
                .saturating_sub(state.last_active_ms.load(Ordering::Relaxed)),
        );
        let busy = state.in_flight.load(Ordering::Relaxed) > 0;
        if !busy && since >= idle_for {
            ctl.metrics
                .connections_closed_idle
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer_addr, "closing idle connection");
            return;
        }
        let wait = if busy { limits.idle } else { idle_for - since };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer_addr, error = %e, "connection ended with error");
                }
                return;
            }
            () = state.close.notified() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Every few seconds: removes idle API sessions (and their sessions) and pushes the
/// removals and refreshed expiries to routers.
async fn sweep_idle_sessions(ctl: Arc<Controller>) {
    let secs = (ctl.config.auth.api_session_timeout_secs / 4).clamp(1, 5);
    let mut tick = tokio::time::interval(Duration::from_secs(secs.unsigned_abs()));
    loop {
        tick.tick().await;
        // Time limits are not announced by any logged change.
        if let Err(e) = ctl.sweep_routers().await {
            tracing::error!(error = %e, "publishing router state failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_source_cap_and_release() {
        let t = ConnTable::new();
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let first = t.admit(a, 2).unwrap();
        let _second = t.admit(a, 2).unwrap();
        assert!(t.admit(a, 2).is_none(), "third from the same address");
        assert!(t.admit(b, 2).is_some(), "another address is unaffected");
        t.remove(&first);
        assert!(t.admit(a, 2).is_some(), "room again after one closed");
    }

    #[tokio::test]
    async fn shedding_picks_idle_least_recently_active() {
        let t = ConnTable::new();
        let ip = IpAddr::from([10, 0, 0, 1]);
        let old = t.admit(ip, 10).unwrap();
        let busy = t.admit(ip, 10).unwrap();
        let recent = t.admit(ip, 10).unwrap();
        old.last_active_ms.store(1, Ordering::Relaxed);
        busy.last_active_ms.store(0, Ordering::Relaxed);
        busy.in_flight.store(1, Ordering::Relaxed);
        recent.last_active_ms.store(1000, Ordering::Relaxed);
        assert_eq!(t.shed_idle(1), 1);
        // `old` was asked to close (its permit is stored), the others were not.
        tokio::time::timeout(Duration::from_secs(5), old.close.notified())
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(20), recent.close.notified())
                .await
                .is_err()
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(20), busy.close.notified())
                .await
                .is_err()
        );
    }
}
