//! Limits that keep one client from exhausting the controller: a bounded gate in front
//! of password hashing ([`PasswordGate`]), login throttling per user name and per source
//! address ([`LoginThrottle`]), and the counters both report ([`Metrics`]).
//!
//! Argon2id with the `argon2` crate's defaults (the parameters of every stored hash)
//! takes about 19 MiB and tens of milliseconds of one core per check. Before these
//! limits each check ran on its own blocking thread: 500 concurrent wrong-password
//! logins took the controller from 116 MB to 9.5 GB of memory.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::Config;
use crate::error::{ApiError, StoreError};
use crate::store::Store;

/// Counters of the controller's limits, served as Prometheus text on `metrics_listen`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTPS connections open now (accepted, TLS handshake included).
    pub connections_open: AtomicU64,
    /// HTTPS connections accepted since start.
    pub connections_accepted: AtomicU64,
    /// HTTPS connections closed for sending no request in time or idling too long.
    pub connections_closed_idle: AtomicU64,
    /// HTTPS connections closed at accept for exceeding `max_connections_per_source`.
    pub connections_refused_per_source: AtomicU64,
    /// Idle HTTPS connections closed to free descriptors when accept failed with
    /// EMFILE/ENFILE.
    pub connections_shed: AtomicU64,
    /// Requests that ran past `http_request_timeout_ms`.
    pub requests_timed_out: AtomicU64,
    /// Password logins refused by the per-user-name or per-address throttle.
    pub logins_throttled: AtomicU64,
    /// Password checks refused because the hashing queue was full or its wait too long.
    pub logins_refused_busy: AtomicU64,
    /// Password hashes being computed now.
    pub password_hashes_in_flight: AtomicU64,
    /// Password checks waiting for a hashing slot now.
    pub password_hashes_queued: AtomicU64,
    /// Argon2 verifications run since start (dummy ones for unknown users included).
    pub password_verifications: AtomicU64,
    /// The router control listener is accepting (`/ready` needs it).
    pub control_listening: AtomicBool,
    /// The change follower is running (`/ready` needs it: without it, writes by other
    /// controllers would not reach this controller's routers).
    pub change_follower_running: AtomicBool,
    /// Control-channel connections closed at accept because
    /// [`crate::control::listener::MAX_PENDING_HANDSHAKES`] were still unauthenticated.
    pub control_refused_pending: AtomicU64,
    /// Circuit requests refused because their router had
    /// [`crate::control::listener::MAX_PENDING_CIRCUITS`] being routed already.
    pub control_circuits_refused: AtomicU64,
    /// Store revisions written by other controllers that this one applied.
    pub store_revisions_followed: AtomicU64,
    /// The newest store revision this controller has seen.
    pub store_revision: AtomicU64,
    /// Times the change follower's `LISTEN` connection failed and was re-opened.
    pub store_listen_failures: AtomicU64,
    /// Identities disabled by their authentication policy's lockout.
    pub lockouts: AtomicU64,
    /// Wrong, malformed or replayed MFA codes.
    pub mfa_failures: AtomicU64,
    /// MFA codes refused unchecked because the identity sent too many wrong ones.
    pub mfa_throttled: AtomicU64,
    /// JWKS fetches started (external JWT signers).
    pub ext_jwt_fetches: AtomicU64,
    /// JWKS fetches that failed (refusals included).
    pub ext_jwt_fetch_failures: AtomicU64,
    /// JWKS fetches refused by the address guard (non-public address, host not allowed).
    pub ext_jwt_fetches_refused: AtomicU64,
    /// API sessions created by external JWT logins.
    pub ext_jwt_logins: AtomicU64,
    /// External JWT logins refused.
    pub ext_jwt_login_failures: AtomicU64,
    /// Posture responses accepted (each object of a bulk request counts).
    pub posture_responses: AtomicU64,
    /// Session requests refused with `INVALID_POSTURE`.
    pub posture_refusals: AtomicU64,
    /// Sessions removed because their posture stopped passing.
    pub posture_revocations: AtomicU64,
    /// Router-view publications built from the change log (what the writes touched).
    pub view_delta_builds: AtomicU64,
    /// Router-view publications rebuilt from the whole store (start, sweep, policy
    /// changes, a change log that cannot tell).
    pub view_full_builds: AtomicU64,
    /// API requests by method, route and status, with durations.
    pub http: crate::telemetry::HttpMetrics,
    /// Authentications by method and result.
    pub auth: crate::telemetry::AuthMetrics,
}

impl Metrics {
    /// Prometheus text exposition (format 0.0.4) of every counter.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let metrics: [(&str, &str, &str, &AtomicU64); 29] = [
            (
                "weft_controller_view_delta_builds_total",
                "counter",
                "Router-view publications built from the change log.",
                &self.view_delta_builds,
            ),
            (
                "weft_controller_view_full_builds_total",
                "counter",
                "Router-view publications rebuilt from the whole store.",
                &self.view_full_builds,
            ),
            (
                "weft_controller_posture_responses_total",
                "counter",
                "Posture responses accepted.",
                &self.posture_responses,
            ),
            (
                "weft_controller_posture_refusals_total",
                "counter",
                "Session requests refused because posture failed (INVALID_POSTURE).",
                &self.posture_refusals,
            ),
            (
                "weft_controller_posture_revocations_total",
                "counter",
                "Sessions removed because their posture stopped passing.",
                &self.posture_revocations,
            ),
            (
                "weft_controller_lockouts_total",
                "counter",
                "Identities disabled by an authentication policy's password lockout.",
                &self.lockouts,
            ),
            (
                "weft_controller_mfa_failures_total",
                "counter",
                "Wrong, malformed or replayed MFA codes.",
                &self.mfa_failures,
            ),
            (
                "weft_controller_mfa_throttled_total",
                "counter",
                "MFA codes refused unchecked after too many wrong ones.",
                &self.mfa_throttled,
            ),
            (
                "weft_controller_connections_open",
                "gauge",
                "Open HTTPS connections.",
                &self.connections_open,
            ),
            (
                "weft_controller_connections_accepted_total",
                "counter",
                "HTTPS connections accepted.",
                &self.connections_accepted,
            ),
            (
                "weft_controller_connections_closed_idle_total",
                "counter",
                "HTTPS connections closed for sending no complete request in time or idling.",
                &self.connections_closed_idle,
            ),
            (
                "weft_controller_connections_refused_per_source_total",
                "counter",
                "HTTPS connections refused by the per-source-address cap.",
                &self.connections_refused_per_source,
            ),
            (
                "weft_controller_connections_shed_total",
                "counter",
                "Idle HTTPS connections closed to free descriptors at the descriptor limit.",
                &self.connections_shed,
            ),
            (
                "weft_controller_requests_timed_out_total",
                "counter",
                "Requests that ran past the request timeout.",
                &self.requests_timed_out,
            ),
            (
                "weft_controller_logins_throttled_total",
                "counter",
                "Password logins refused by the per-user or per-address throttle.",
                &self.logins_throttled,
            ),
            (
                "weft_controller_logins_refused_busy_total",
                "counter",
                "Password checks refused because the hashing queue was full.",
                &self.logins_refused_busy,
            ),
            (
                "weft_controller_password_hashes_in_flight",
                "gauge",
                "Password hashes being computed.",
                &self.password_hashes_in_flight,
            ),
            (
                "weft_controller_password_hashes_queued",
                "gauge",
                "Password checks waiting for a hashing slot.",
                &self.password_hashes_queued,
            ),
            (
                "weft_controller_password_verifications_total",
                "counter",
                "Argon2 password verifications run.",
                &self.password_verifications,
            ),
            (
                "weft_controller_control_refused_pending_total",
                "counter",
                "Control-channel connections closed at accept: too many not yet authenticated.",
                &self.control_refused_pending,
            ),
            (
                "weft_controller_circuit_requests_refused_total",
                "counter",
                "Circuit requests refused: their router had too many being routed.",
                &self.control_circuits_refused,
            ),
            (
                "weft_controller_store_revisions_followed_total",
                "counter",
                "Store revisions written by other controllers and applied here.",
                &self.store_revisions_followed,
            ),
            (
                "weft_controller_store_revision",
                "gauge",
                "The newest store revision this controller has seen.",
                &self.store_revision,
            ),
            (
                "weft_controller_store_listen_failures_total",
                "counter",
                "Times the change follower's PostgreSQL LISTEN connection failed.",
                &self.store_listen_failures,
            ),
            (
                "weft_controller_ext_jwt_jwks_fetches_total",
                "counter",
                "JWKS fetches of external JWT signers started.",
                &self.ext_jwt_fetches,
            ),
            (
                "weft_controller_ext_jwt_jwks_fetch_failures_total",
                "counter",
                "JWKS fetches that failed, refusals included.",
                &self.ext_jwt_fetch_failures,
            ),
            (
                "weft_controller_ext_jwt_jwks_fetches_refused_total",
                "counter",
                "JWKS fetches refused: the host resolves to a non-public address and is not allowed.",
                &self.ext_jwt_fetches_refused,
            ),
            (
                "weft_controller_ext_jwt_logins_total",
                "counter",
                "API sessions created by external JWT logins.",
                &self.ext_jwt_logins,
            ),
            (
                "weft_controller_ext_jwt_login_failures_total",
                "counter",
                "External JWT logins refused.",
                &self.ext_jwt_login_failures,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in metrics {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        self.http.render(&mut out);
        self.auth.render(&mut out);
        out
    }
}

/// Decrements a gauge when dropped.
struct GaugeGuard<'a>(&'a AtomicU64);

impl<'a> GaugeGuard<'a> {
    fn new(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A job for the hashing threads.
type Job = Box<dyn FnOnce() + Send>;

/// Runs password hashing on a fixed set of `slots` threads of its own, at most `slots`
/// hashes at once; at most `queue_max` further checks wait, each at most
/// `queue_timeout`; the rest are refused with [`ApiError::RateLimited`].
///
/// The threads are long-lived on purpose: every thread that frees an Argon2 block
/// leaves it in its malloc arena, so hashing on tokio's ever-changing blocking threads
/// kept up to one 19 MiB block per arena (300 MiB seen) even with two hashes at a time.
#[derive(Debug)]
pub struct PasswordGate {
    slots: Arc<Semaphore>,
    queue_max: u64,
    queue_timeout: Duration,
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
    metrics: Arc<Metrics>,
}

impl PasswordGate {
    /// A gate sized by the configuration, counting into `metrics`; starts its threads.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Self, std::io::Error> {
        let slots = config.hash_slots();
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..slots {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("weft-hash-{i}"))
                .spawn(move || {
                    loop {
                        // The receiver is only held while waiting for a job.
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(p) => p.into_inner().recv(),
                        };
                        let Ok(job) = job else { return };
                        // A panicking job must not take the thread with it.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(Self {
            slots: Arc::new(Semaphore::new(slots)),
            queue_max: config.auth.password_queue_max as u64,
            queue_timeout: Duration::from_millis(config.auth.password_queue_timeout_ms),
            jobs: Mutex::new(tx),
            metrics,
        })
    }

    /// Runs `work` (a password hash or verification) on a hashing thread once a slot
    /// is free. The slot stays taken until `work` is done, even if the caller gives up.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let metrics = &self.metrics;
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let queued = GaugeGuard::new(&metrics.password_hashes_queued);
                if metrics.password_hashes_queued.load(Ordering::Relaxed) > self.queue_max {
                    drop(queued);
                    metrics.logins_refused_busy.fetch_add(1, Ordering::Relaxed);
                    return Err(ApiError::RateLimited);
                }
                let wait = self.slots.clone().acquire_owned();
                match tokio::time::timeout(self.queue_timeout, wait).await {
                    Ok(Ok(p)) => p,
                    // Timed out, or the semaphore was closed (never done).
                    _ => {
                        metrics.logins_refused_busy.fetch_add(1, Ordering::Relaxed);
                        return Err(ApiError::RateLimited);
                    }
                }
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let m = self.metrics.clone();
        m.password_hashes_in_flight.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move || {
            let result = work();
            // Gauge and slot first: the caller may look at them as soon as it has the
            // result (the gate test did, and once saw the hash still in flight).
            m.password_hashes_in_flight.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
            let _ = tx.send(result);
        });
        let sent = match self.jobs.lock() {
            Ok(jobs) => jobs.send(job),
            Err(p) => p.into_inner().send(job),
        };
        if sent.is_err() {
            self.metrics
                .password_hashes_in_flight
                .fetch_sub(1, Ordering::Relaxed);
            return Err(ApiError::Internal("password hashing unavailable".into()));
        }
        rx.await
            .map_err(|_| ApiError::Internal("password hashing failed".into()))
    }
}

/// What a login is throttled by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ThrottleKey {
    /// The user name tried.
    User(String),
    /// The client's address.
    Addr(IpAddr),
}

impl ThrottleKey {
    /// The key's row in the store: `user:` and the SHA-256 of the name (a name is what
    /// anyone sends; its hash has a fixed size), or `addr:` and the address.
    pub fn stored(&self) -> String {
        match self {
            Self::User(name) => {
                let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
                d.as_ref().iter().fold(String::from("user:"), |mut s, b| {
                    use std::fmt::Write as _;
                    // Writing to a String cannot fail.
                    let _ = write!(s, "{b:02x}");
                    s
                })
            }
            Self::Addr(ip) => format!("addr:{ip}"),
        }
    }
}

/// Failed-login throttling: a token bucket per user name and per source address
/// (`[auth] login_failures_burst` failures, refilled at `login_failures_per_minute`),
/// kept in the store so that every controller of a cluster counts the same failures
/// (a per-process throttle let an attacker try `burst` times on each controller). The
/// table is pruned every minute ([`Self::prune`]) of buckets full again and down to
/// `login_throttle_max_entries`; between prunes it grows by at most one row per
/// user name whose password was checked, which the password gate paces.
#[derive(Debug)]
pub struct LoginThrottle {
    burst: f64,
    per_ms: f64,
    max_entries: usize,
}

impl LoginThrottle {
    /// A throttle configured by `login_failures_*` and `login_throttle_max_entries`.
    pub fn new(config: &Config) -> Self {
        Self {
            burst: f64::from(config.auth.login_failures_burst),
            per_ms: f64::from(config.auth.login_failures_per_minute) / 60_000.0,
            max_entries: config.auth.login_throttle_max_entries,
        }
    }

    /// Tokens of a bucket left with `tokens` at `updated_ms`, at `now_ms`.
    fn tokens_at(&self, tokens: f64, updated_ms: i64, now_ms: i64) -> f64 {
        let elapsed = now_ms.saturating_sub(updated_ms).max(0) as f64;
        (tokens + elapsed * self.per_ms).min(self.burst)
    }

    /// Whether a login with these keys may be tried at `now_ms` (every key has a
    /// failure left).
    pub async fn allows(
        &self,
        store: &Store,
        keys: &[ThrottleKey],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let stored: Vec<String> = keys.iter().map(ThrottleKey::stored).collect();
        Ok(store
            .throttle_buckets(&stored)
            .await?
            .iter()
            .all(|(_, tokens, at)| self.tokens_at(*tokens, *at, now_ms) >= 1.0))
    }

    /// Records a failed login at `now_ms` for each key.
    pub async fn record_failure(
        &self,
        store: &Store,
        keys: &[ThrottleKey],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        for k in keys {
            store
                .throttle_take(&k.stored(), now_ms, self.burst, self.per_ms)
                .await?;
        }
        Ok(())
    }

    /// Forgets the buckets full again, then the least recently updated beyond the
    /// bound. Returns how many went.
    pub async fn prune(&self, store: &Store, now_ms: i64) -> Result<u64, StoreError> {
        // An empty bucket is full again after burst / rate; a rate of 0 never refills.
        let full_after_ms = if self.per_ms > 0.0 {
            (self.burst / self.per_ms).ceil().min(i64::MAX as f64) as i64
        } else {
            i64::MAX
        };
        store
            .throttle_prune(
                now_ms,
                full_after_ms,
                i64::try_from(self.max_entries).unwrap_or(i64::MAX),
            )
            .await
    }
}

/// Holds a liveness flag of [`Metrics`] up while a long-running task runs: set when
/// made, cleared when dropped, so a task that ends or panics reads as down.
#[derive(Debug)]
pub struct Running<'a>(&'a AtomicBool);

impl<'a> Running<'a> {
    /// Sets `flag` until the guard is dropped.
    pub fn new(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::Relaxed);
        Self(flag)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        // Release: what the task wrote before it ended is seen by whoever sees it down.
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn config(burst: u32, per_minute: u32, max_entries: usize) -> Config {
        let mut cfg = Config::default();
        cfg.auth.login_failures_burst = burst;
        cfg.auth.login_failures_per_minute = per_minute;
        cfg.auth.login_throttle_max_entries = max_entries;
        cfg
    }

    #[tokio::test]
    async fn a_liveness_flag_falls_when_its_task_ends_or_panics() {
        let metrics = Arc::new(Metrics::default());
        for panics in [false, true] {
            let m = metrics.clone();
            let (started, go) = tokio::sync::oneshot::channel::<()>();
            let (stop, wait) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                let _running = Running::new(&m.control_listening);
                let _ = started.send(());
                let _ = wait.await;
                assert!(!panics, "the task panics while running");
            });
            go.await.unwrap();
            assert!(metrics.control_listening.load(Ordering::Relaxed));
            stop.send(()).unwrap();
            assert_eq!(task.await.is_err(), panics);
            assert!(!metrics.control_listening.load(Ordering::Relaxed));
        }
    }

    /// A store in a temporary directory.
    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::sqlite_url(&dir.path().join("t.db")))
            .await
            .unwrap();
        (store, dir)
    }

    #[tokio::test]
    async fn throttle_refuses_after_the_burst_and_recovers() {
        let (s, _dir) = store().await;
        let t = LoginThrottle::new(&config(3, 60, 100));
        let keys = [ThrottleKey::User("admin".into())];
        let now = 1_000_000;
        for _ in 0..3 {
            assert!(t.allows(&s, &keys, now).await.unwrap());
            t.record_failure(&s, &keys, now).await.unwrap();
        }
        assert!(
            !t.allows(&s, &keys, now).await.unwrap(),
            "a fourth failure in a burst of 3"
        );
        // Another user name from nowhere in particular is unaffected.
        assert!(
            t.allows(&s, &[ThrottleKey::User("bob".into())], now)
                .await
                .unwrap()
        );
        // 60 per minute: one failure comes back each second.
        assert!(t.allows(&s, &keys, now + 1100).await.unwrap());
        // A later failure refills first, then takes one: the bucket never overflows.
        t.record_failure(&s, &keys, now + 3_600_000).await.unwrap();
        let b = s.throttle_buckets(&[keys[0].stored()]).await.unwrap();
        assert_eq!(b[0].1, 2.0);
    }

    #[tokio::test]
    async fn address_and_user_keys_are_independent_and_both_apply() {
        let (s, _dir) = store().await;
        let t = LoginThrottle::new(&config(1, 1, 100));
        let addr = ThrottleKey::Addr(IpAddr::from([10, 0, 0, 1]));
        t.record_failure(&s, std::slice::from_ref(&addr), 5)
            .await
            .unwrap();
        let user = ThrottleKey::User("x".into());
        assert!(!t.allows(&s, &[user.clone(), addr], 5).await.unwrap());
        assert!(t.allows(&s, &[user], 5).await.unwrap());
    }

    #[tokio::test]
    async fn throttle_table_stays_bounded_and_names_are_hashed() {
        let (s, _dir) = store().await;
        let t = LoginThrottle::new(&config(5, 1, 50));
        let long = "x".repeat(100_000);
        t.record_failure(&s, &[ThrottleKey::User(long.clone())], 0)
            .await
            .unwrap();
        assert_eq!(ThrottleKey::User(long).stored().len(), 5 + 64);
        for i in 0..200u32 {
            t.record_failure(&s, &[ThrottleKey::User(format!("u{i}"))], i64::from(i))
                .await
                .unwrap();
        }
        t.prune(&s, 200).await.unwrap();
        assert_eq!(s.throttle_len().await.unwrap(), 50);
        // The most recent failures are the ones remembered.
        let last = ThrottleKey::User("u199".into());
        assert_eq!(s.throttle_buckets(&[last.stored()]).await.unwrap().len(), 1);
        // Five minutes at one a minute refill a bucket of five: all are forgotten.
        t.prune(&s, 200 + 300_000).await.unwrap();
        assert_eq!(s.throttle_len().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn gate_bounds_concurrency_and_refuses_beyond_the_queue() {
        let mut cfg = Config::default();
        cfg.auth.password_hash_concurrency = 2;
        cfg.auth.password_queue_max = 3;
        cfg.auth.password_queue_timeout_ms = 60_000;
        let metrics = Arc::new(Metrics::default());
        let gate = Arc::new(PasswordGate::new(&cfg, metrics.clone()).unwrap());
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let (gate, rx) = (gate.clone(), release_rx.clone());
            tasks.push(tokio::spawn(async move {
                gate.run(move || {
                    // Holds its slot until the test releases it.
                    let _ = rx.lock().map(|r| r.recv());
                })
                .await
            }));
        }
        // Wait on state: two hashing, three queued.
        let deadline = Instant::now() + Duration::from_secs(30);
        while metrics.password_hashes_in_flight.load(Ordering::Relaxed) != 2
            || metrics.password_hashes_queued.load(Ordering::Relaxed) != 3
        {
            assert!(Instant::now() < deadline, "gate never filled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let refused = gate.run(|| ()).await;
        assert!(matches!(refused, Err(ApiError::RateLimited)));
        assert_eq!(metrics.logins_refused_busy.load(Ordering::Relaxed), 1);
        for _ in 0..5 {
            release_tx.send(()).unwrap();
        }
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        assert_eq!(metrics.password_hashes_in_flight.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.password_hashes_queued.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn gate_refuses_after_the_queue_deadline() {
        let mut cfg = Config::default();
        cfg.auth.password_hash_concurrency = 1;
        cfg.auth.password_queue_max = 10;
        cfg.auth.password_queue_timeout_ms = 50;
        let metrics = Arc::new(Metrics::default());
        let gate = Arc::new(PasswordGate::new(&cfg, metrics.clone()).unwrap());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let g = gate.clone();
        let holder = tokio::spawn(async move {
            g.run(move || {
                let _ = rx.recv();
            })
            .await
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while metrics.password_hashes_in_flight.load(Ordering::Relaxed) != 1 {
            assert!(Instant::now() < deadline, "holder never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(matches!(gate.run(|| ()).await, Err(ApiError::RateLimited)));
        tx.send(()).unwrap();
        assert!(holder.await.unwrap().is_ok());
    }
}
