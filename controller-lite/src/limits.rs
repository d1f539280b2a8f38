//! Limits that keep one client from exhausting the controller: a bounded gate in front
//! of password hashing ([`PasswordGate`]), login throttling per user name and per source
//! address ([`LoginThrottle`]), and the counters both report ([`Metrics`]).
//!
//! Argon2id with the `argon2` crate's defaults (the parameters of every stored hash)
//! takes about 19 MiB and tens of milliseconds of one core per check. Before these
//! limits each check ran on its own blocking thread: 500 concurrent wrong-password
//! logins took the controller from 116 MB to 9.5 GB of memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::config::Config;
use crate::error::ApiError;

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

/// A token bucket of failed logins.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Failed-login throttling: a token bucket per user name and per source address, in a
/// map bounded to `max_entries`.
#[derive(Debug)]
pub struct LoginThrottle {
    buckets: Mutex<HashMap<ThrottleKey, Bucket>>,
    burst: f64,
    per_sec: f64,
    max_entries: usize,
}

impl LoginThrottle {
    /// A throttle configured by `login_failures_*` and `login_throttle_max_entries`.
    pub fn new(config: &Config) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            burst: f64::from(config.auth.login_failures_burst),
            per_sec: f64::from(config.auth.login_failures_per_minute) / 60.0,
            max_entries: config.auth.login_throttle_max_entries,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ThrottleKey, Bucket>> {
        // Every update leaves the map consistent.
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tokens_at(&self, b: &Bucket, now: Instant) -> f64 {
        let refill = now.saturating_duration_since(b.updated).as_secs_f64() * self.per_sec;
        (b.tokens + refill).min(self.burst)
    }

    /// Whether a login with these keys may be tried now (every key has a failure left).
    pub fn allows(&self, keys: &[ThrottleKey], now: Instant) -> bool {
        let map = self.lock();
        keys.iter()
            .all(|k| map.get(k).is_none_or(|b| self.tokens_at(b, now) >= 1.0))
    }

    /// Records a failed login for each key.
    pub fn record_failure(&self, keys: &[ThrottleKey], now: Instant) {
        let mut map = self.lock();
        for k in keys {
            if !map.contains_key(k) && map.len() >= self.max_entries {
                self.evict(&mut map, now);
            }
            let tokens = map.get(k).map_or(self.burst, |b| self.tokens_at(b, now));
            map.insert(
                k.clone(),
                Bucket {
                    tokens: (tokens - 1.0).max(0.0),
                    updated: now,
                },
            );
        }
    }

    /// Makes room for one entry: drops every entry back at its full allowance, and if
    /// none was, the least recently updated one.
    fn evict(&self, map: &mut HashMap<ThrottleKey, Bucket>, now: Instant) {
        let before = map.len();
        map.retain(|_, b| self.tokens_at(b, now) < self.burst);
        if map.len() == before {
            let oldest = map
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(burst: u32, per_minute: u32, max_entries: usize) -> Config {
        let mut cfg = Config::default();
        cfg.auth.login_failures_burst = burst;
        cfg.auth.login_failures_per_minute = per_minute;
        cfg.auth.login_throttle_max_entries = max_entries;
        cfg
    }

    #[test]
    fn throttle_refuses_after_the_burst_and_recovers() {
        let t = LoginThrottle::new(&config(3, 60, 100));
        let keys = [ThrottleKey::User("admin".into())];
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.allows(&keys, now));
            t.record_failure(&keys, now);
        }
        assert!(!t.allows(&keys, now), "a fourth failure in a burst of 3");
        // Another user name from nowhere in particular is unaffected.
        assert!(t.allows(&[ThrottleKey::User("bob".into())], now));
        // 60 per minute: one failure comes back each second.
        assert!(t.allows(&keys, now + Duration::from_millis(1100)));
    }

    #[test]
    fn address_and_user_keys_are_independent_and_both_apply() {
        let t = LoginThrottle::new(&config(1, 1, 100));
        let addr = ThrottleKey::Addr(IpAddr::from([10, 0, 0, 1]));
        let now = Instant::now();
        t.record_failure(std::slice::from_ref(&addr), now);
        assert!(!t.allows(&[ThrottleKey::User("x".into()), addr], now));
        assert!(t.allows(&[ThrottleKey::User("x".into())], now));
    }

    #[test]
    fn throttle_map_stays_bounded() {
        let t = LoginThrottle::new(&config(5, 1, 50));
        let now = Instant::now();
        for i in 0..10_000u32 {
            t.record_failure(&[ThrottleKey::User(format!("u{i}"))], now);
        }
        assert!(t.len() <= 50, "{} entries", t.len());
        // The most recent failure is remembered.
        t.record_failure(&[ThrottleKey::User("last".into())], now);
        assert!(t.len() <= 50);
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
