//! The controller's shared state and first-start bootstrap.

use std::path::{Path, PathBuf};

use serde_json::{Map, json};

use crate::clock;
use crate::config::Config;
use crate::control::RouterRegistry;
use crate::control::feed::ChangeFeed;
use crate::domain::entities;
use crate::error::{ApiError, PkiError, StoreError};
use crate::model::{AuthPolicy, DEFAULT_AUTH_POLICY_ID, Kind};
use crate::pki::Pki;
use crate::store::{AuthenticatorRow, Credential, EntityRow, Store};

/// File (in the data dir) with the admin password, mode 0600.
pub const ADMIN_PASSWORD_FILE: &str = "admin.password";
/// File (in the data dir) where the running controller writes its bound address.
pub const ADDR_FILE: &str = "controller.addr";
/// This controller's id among the controllers of one database (`GET /controllers`),
/// made at its first start.
pub const ID_FILE: &str = "controller.id";
/// Database file name.
pub const DB_FILE: &str = "weft.db";
/// User name of the built-in administrator.
pub const ADMIN_USERNAME: &str = "admin";

/// Errors while starting the controller.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// PKI failure.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// File system failure.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A listener could not bind its address (in use, not this host's, no permission).
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The config key that names it.
        key: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// JWKS fetching could not be set up (`[ext_jwt]`).
    #[error(transparent)]
    ExtJwt(#[from] crate::extjwt::jwks::SetupError),
    /// Other bootstrap failure.
    #[error("bootstrap failed: {0}")]
    Bootstrap(String),
}

/// Everything request handlers share.
#[derive(Debug)]
pub struct Controller {
    /// Persistent store.
    pub store: Store,
    /// Certificate authority.
    pub pki: Pki,
    /// Configuration.
    pub config: Config,
    /// Base URL clients use (`https://host:port`), the enrollment JWT `iss`.
    pub public_url: String,
    /// The network JWT (`GET /network-jwts`), signed once: the route needs no session,
    /// so signing per request would let anyone make the controller spend an RSA
    /// signature per request.
    pub network_jwt: tokio::sync::OnceCell<String>,
    /// Stable instance id sent as `ziti-instance-id`.
    pub instance_id: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Router-facing state and its revisioned changes.
    pub feed: ChangeFeed,
    /// Coalesces the publications writes ask for ([`Self::notify_routers`]).
    pub publisher: crate::control::feed::Publisher,
    /// Edge routers with a control connection up.
    pub routers: RouterRegistry,
    /// The mesh: routers' link listeners, the links they report, routed circuits.
    pub mesh: crate::control::mesh::Mesh,
    /// The indexed policy model, rebuilt only after entity changes.
    pub policy: crate::authz::PolicyCache,
    /// Counters of the limits below and of the HTTPS listener.
    pub metrics: std::sync::Arc<crate::limits::Metrics>,
    /// Bounds concurrent password hashing.
    pub password_gate: crate::limits::PasswordGate,
    /// Throttles failed password logins per user name and source address.
    pub login_throttle: crate::limits::LoginThrottle,
    /// External JWT signers' JWK sets ([`crate::extjwt::jwks`]).
    pub jwks: crate::extjwt::jwks::Jwks,
    /// The 3rd-party CAs routers trust for edge clients ([`crate::thirdparty_ca`]),
    /// refreshed by [`Self::sync_routers`]; every control connection follows it.
    pub trusted_cas: tokio::sync::watch::Sender<std::sync::Arc<weft_wire::control::pb::TrustedCas>>,
    /// Data integrity runs ([`crate::database`]).
    pub integrity: crate::database::IntegrityChecks,
    /// Database snapshots ([`crate::database::SnapshotGate`]).
    pub snapshots: crate::database::SnapshotGate,
    /// This controller's id among the controllers of its database ([`ID_FILE`]).
    pub controller_id: String,
    /// Where the periodic sweep got to ([`Self::sweep_routers`]).
    sweeps: SweepMarks,
}

/// Time between two sweeps from the whole store: the safety net under the timed
/// sweeps, which judge only what time changed.
pub const FULL_SWEEP: std::time::Duration = std::time::Duration::from_secs(600);

/// How far before the last sweep a timed sweep looks for activity (seconds): activity
/// is stamped when a request starts and may commit seconds later (behind a write
/// transaction), or come from another controller whose clock is behind. Controllers
/// sharing a database keep their clocks within this (NTP).
pub const ACTIVITY_OVERLAP_SECS: i64 = 60;

/// When the periodic sweep last ran (Unix seconds; 0: never), and last ran from the
/// whole store (monotonic: a clock stepped back must not put the next one off).
#[derive(Debug, Default)]
struct SweepMarks {
    timed: std::sync::atomic::AtomicI64,
    full: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How a publication judges the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Build {
    /// From the change log, when it can tell what changed.
    Logged,
    /// From the whole store.
    Full,
    /// From the change log and what time changed from `since` to `now` (Unix seconds).
    Timed { since: i64, now: i64 },
}

/// The id in `data_dir`'s [`ID_FILE`], made (a random UUID) when there is none.
fn own_id(data_dir: &Path) -> Result<String, StartError> {
    let path = data_dir.join(ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Ok(_) => Err(StartError::Bootstrap(format!(
            "{} is empty: delete it to make a new controller id",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            std::fs::write(&path, format!("{id}\n"))?;
            Ok(id)
        }
        Err(e) => Err(e.into()),
    }
}

impl Controller {
    /// What this controller says of itself in the `controllers` table, its control
    /// channel on `ctrl_port`; `seen_at` and `last_joined_at` now.
    pub fn controller_row(&self, ctrl_port: u16) -> crate::store::ControllerRow {
        let now = clock::now_string();
        let cert = self.pki.server_cert();
        crate::store::ControllerRow {
            id: self.controller_id.clone(),
            name: self
                .public_url
                .strip_prefix("https://")
                .unwrap_or(&self.public_url)
                .to_owned(),
            cert_pem: cert.pem.clone(),
            fingerprint: cert.fingerprint.clone(),
            api_url: self.public_url.clone(),
            ctrl_address: format!("tls:{}:{ctrl_port}", self.config.http.advertised_host),
            created_at: now.clone(),
            updated_at: now.clone(),
            last_joined_at: now,
            seen_at: clock::now_unix_ms(),
        }
    }

    /// Opens (creating on first start) the store, PKI and admin credential in
    /// `data_dir`.
    pub async fn open(
        data_dir: &Path,
        config: Config,
        public_url: String,
    ) -> Result<Self, StartError> {
        std::fs::create_dir_all(data_dir)?;
        let url = config.store_url(data_dir);
        let store = Store::open(&url).await?;
        tracing::info!(store = %crate::store::redacted_url(&url), "store opened");
        let pki = Pki::load_or_create(&data_dir.join("pki"), &config.server_dns_names())?;
        let instance_id = match store.meta_get("instance_id").await? {
            Some(id) => id,
            None => {
                let mut tx = store.begin_write().await?;
                let id = tx
                    .meta_set_default("instance_id", &uuid::Uuid::new_v4().to_string())
                    .await?;
                tx.commit().await?;
                id
            }
        };
        let controller_id = own_id(data_dir)?;
        let metrics = std::sync::Arc::new(crate::limits::Metrics::default());
        let password_gate = crate::limits::PasswordGate::new(&config, metrics.clone())?;
        let jwks = crate::extjwt::jwks::Jwks::new(&config.ext_jwt, metrics.clone())?;
        let ctl = Self {
            store,
            pki,
            public_url,
            network_jwt: tokio::sync::OnceCell::new(),
            instance_id,
            data_dir: data_dir.to_path_buf(),
            feed: ChangeFeed::default(),
            publisher: crate::control::feed::Publisher::default(),
            routers: RouterRegistry::default(),
            mesh: crate::control::mesh::Mesh::default(),
            policy: crate::authz::PolicyCache::default(),
            metrics,
            password_gate,
            login_throttle: crate::limits::LoginThrottle::new(&config),
            jwks,
            trusted_cas: tokio::sync::watch::Sender::new(std::sync::Arc::default()),
            integrity: crate::database::IntegrityChecks::default(),
            snapshots: crate::database::SnapshotGate::default(),
            controller_id,
            sweeps: SweepMarks::default(),
            config,
        };
        ctl.bootstrap().await?;
        ctl.sync_routers().await?;
        Ok(ctl)
    }

    /// Creates the built-in config types, the `default` authentication policy and, on a
    /// new database, the default administrator; each in one transaction, so controllers starting at once on one
    /// database create them once.
    async fn bootstrap(&self) -> Result<(), StartError> {
        let bootstrap = |e: ApiError| StartError::Bootstrap(e.to_string());
        let mut tx = self.store.begin_write().await?;
        for name in ["intercept.v1", "host.v1"] {
            if tx
                .get_entity_by_id_or_name(Kind::ConfigTypes.collection(), name)
                .await?
                .is_none()
            {
                let mut obj = Map::new();
                obj.insert("name".into(), json!(name));
                entities::create_in(self, &mut tx, Kind::ConfigTypes, obj)
                    .await
                    .map_err(bootstrap)?;
            }
        }
        if tx
            .get_entity(Kind::AuthPolicies.collection(), DEFAULT_AUTH_POLICY_ID)
            .await?
            .is_none()
        {
            let now = clock::now_string();
            let data = serde_json::to_value(AuthPolicy::builtin_default())
                .map_err(|e| StartError::Bootstrap(e.to_string()))?;
            tx.insert_entity(&EntityRow {
                kind: Kind::AuthPolicies.collection().into(),
                id: DEFAULT_AUTH_POLICY_ID.into(),
                name: "Default".into(),
                tags: json!({}),
                data,
                created_at: now.clone(),
                updated_at: now,
            })
            .await?;
        }
        tx.commit().await?;
        if self.store.meta_get("admin_identity_id").await?.is_some() {
            return Ok(());
        }
        // Hash before the transaction: a write transaction must not wait on slow work.
        let password = admin_password()?;
        let hash = crate::auth::hash_password(&password)
            .map_err(|e| StartError::Bootstrap(e.to_string()))?;
        let mut tx = self.store.begin_write().await?;
        if tx.meta_get("admin_identity_id").await?.is_some() {
            // Another controller on this database created it meanwhile.
            return Ok(());
        }
        let mut obj = Map::new();
        obj.insert("name".into(), json!(ADMIN_USERNAME));
        obj.insert("type".into(), json!("User"));
        obj.insert("isAdmin".into(), json!(true));
        let (identity, _) = entities::create_in(self, &mut tx, Kind::Identities, obj)
            .await
            .map_err(bootstrap)?;
        let now = clock::now_string();
        tx.insert_authenticator(&AuthenticatorRow {
            id: uuid::Uuid::new_v4().to_string(),
            identity_id: identity.id.clone(),
            credential: Credential::Updb {
                username: ADMIN_USERNAME.into(),
                password_hash: hash,
            },
            created_at: now.clone(),
            updated_at: now,
        })
        .await?;
        tx.meta_set("admin_identity_id", &identity.id).await?;
        // The password file is written before the commit: a crash between the two
        // leaves a file for a password that does not exist, never the reverse.
        weft_identity::secret::write_secret(
            &self.data_dir.join(ADMIN_PASSWORD_FILE),
            format!("{password}\n").as_bytes(),
        )?;
        tx.commit().await?;
        Ok(())
    }

    /// Brings the router-facing view up to date with the store and publishes the
    /// difference to every connected router as the next revision: from the change log
    /// (judging again only what the logged changes touched) when it can, from the whole
    /// store otherwise. API sessions and sessions that may no longer exist are removed
    /// from the store on the way.
    pub async fn sync_routers(&self) -> Result<Option<u64>, StoreError> {
        self.publish_view(Build::Logged).await
    }

    /// [`Self::sync_routers`] from the whole store.
    pub async fn resync_routers(&self) -> Result<Option<u64>, StoreError> {
        self.publish_view(Build::Full).await
    }

    /// The periodic sweep: enforces what time changes and no logged change announces
    /// (idle API sessions, certificates whose validity begins or ends, the expiries
    /// routers hold, MFA posture answers past a check's timeout and wake or unlock
    /// events past their grace). It judges again only the API sessions (and their
    /// sessions) that time touched since the last sweep, as a write does; from the whole
    /// store on the first sweep and every [`FULL_SWEEP`] as a safety net. (The end of a
    /// timed disable changes no view: the identity's API sessions ended when it was
    /// disabled; other posture checks change only with logged data.)
    pub async fn sweep_routers(&self) -> Result<Option<u64>, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = clock::now_unix();
        let since = self.sweeps.timed.load(Relaxed);
        let last_full = || {
            self.sweeps
                .full
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let full = since == 0 || last_full().is_none_or(|t| t.elapsed() >= FULL_SWEEP);
        let build = if full {
            Build::Full
        } else {
            Build::Timed { since, now }
        };
        let revision = self.publish_view(build).await?;
        // Only once it succeeded: a failed sweep's span is covered by the next one.
        self.sweeps.timed.store(now, Relaxed);
        if full {
            *last_full() = Some(std::time::Instant::now());
        }
        Ok(revision)
    }

    async fn publish_view(&self, build: Build) -> Result<Option<u64>, StoreError> {
        use crate::control::view::{delta, full as full_view};
        use std::sync::atomic::Ordering::Relaxed;
        // Re-send an API session's expiry once it moved by half the idle timeout, so
        // a router's copy never runs out before the controller's.
        let timeout = self.config.auth.api_session_timeout_secs;
        let slack_ms = timeout.saturating_mul(500);
        let mut feed = self.feed.lock().await;
        let mut incremental = match feed.store_seq().filter(|_| build != Build::Full) {
            Some(from) => self.changes_after(from).await?,
            None => None,
        };
        if let (Some((touched, _)), Build::Timed { since, now }) = (&mut incremental, build) {
            touched
                .api_sessions
                .extend(self.store.api_sessions_timed(since, now, timeout).await?);
            // Posture verdicts that time alone turns: MFA answers past a check's
            // timeout, wake and unlock events past the grace.
            let posture = self.policy.get(&self.store).await?.timed_posture();
            if posture != crate::authz::TimedPosture::default() {
                let from = since.saturating_sub(1);
                touched.api_sessions.extend(
                    self.store
                        .api_sessions_posture_timed(
                            from,
                            now,
                            &posture,
                            crate::posture::eval::PROMPT_GRACE_SECS,
                        )
                        .await?,
                );
            }
            // Of the API sessions active since, only those whose expiry moved past
            // the slack from what routers hold: judging the others again would
            // change nothing (most are logins judged when they were logged).
            // Activity is stamped when a request starts and may commit later, or
            // on another controller whose clock is behind: the window reaches back
            // [`ACTIVITY_OVERLAP_SECS`] before the last sweep.
            let view = feed.view();
            let from = since.saturating_sub(ACTIVITY_OVERLAP_SECS);
            for (id, last_activity) in self.store.api_sessions_active_since(from).await? {
                let expiry_ms = last_activity.saturating_add(timeout).saturating_mul(1000);
                let stale = view
                    .api_sessions()
                    .get(&id)
                    .is_some_and(|a| expiry_ms - a.expires_at_unix_ms >= slack_ms);
                if stale {
                    touched.api_sessions.insert(id);
                }
            }
        }
        let (outcome, seq, cas) = match incremental {
            Some((touched, seq)) => {
                self.metrics.view_delta_builds.fetch_add(1, Relaxed);
                let d = delta::build(self, feed.view(), &touched).await?;
                (d, seq, touched.cas)
            }
            None => {
                self.metrics.view_full_builds.fetch_add(1, Relaxed);
                // Read before building: a write landing meanwhile is applied (again)
                // from the log next time, which changes nothing twice.
                let seq = self.store.revision().await?;
                let j = full_view::build(self).await?;
                let d = delta::Delta {
                    patch: feed.view().diff(&j.view),
                    ended: j.ended,
                    revoked: j.revoked,
                    posture_failed: j.posture_failed,
                };
                (d, seq, true)
            }
        };
        self.remove_judged(&outcome).await?;
        let revision = feed.publish(outcome.patch, seq, slack_ms);
        drop(feed);
        if cas {
            self.refresh_trusted_cas().await?;
        }
        Ok(revision)
    }

    /// What the change log holds after store revision `from`, and the revision it
    /// reaches; `None` when only a full rebuild can tell (the log was pruned past
    /// `from`, holds more than one batch, or names a change with unbounded
    /// consequences).
    async fn changes_after(
        &self,
        from: i64,
    ) -> Result<Option<(crate::control::view::delta::Touched, i64)>, StoreError> {
        const BATCH: i64 = 4096;
        let changes = self.store.changes_since(from, BATCH).await?;
        let Some(last) = changes.last() else {
            return Ok(Some((Default::default(), from)));
        };
        let gap = changes.first().is_some_and(|c| c.seq > from + 1)
            || i64::try_from(changes.len()).unwrap_or(i64::MAX) >= BATCH;
        let touched = crate::control::view::delta::touched(&changes);
        Ok((!gap && !touched.all).then_some((touched, last.seq)))
    }

    /// Removes from the store what judging the view ended (one transaction, recorded
    /// in the change log like any write; another controller may have removed some
    /// already, and the deletes are idempotent).
    async fn remove_judged(
        &self,
        d: &crate::control::view::delta::Delta,
    ) -> Result<(), StoreError> {
        if d.ended.is_empty() && d.revoked.is_empty() {
            return Ok(());
        }
        let mut tx = self.store.begin_write().await?;
        for id in &d.ended {
            tx.delete_api_session(id).await?;
        }
        tx.delete_sessions(&d.revoked).await?;
        tx.commit().await?;
        if !d.revoked.is_empty() {
            tracing::warn!(
                event = "sessions_revoked",
                count = d.revoked.len(),
                posture = d.posture_failed,
                "sessions no longer granted removed; routers close their circuits"
            );
        }
        self.metrics
            .posture_revocations
            .fetch_add(d.posture_failed, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Re-reads the 3rd-party CAs trusted for edge connections and tells routers when
    /// they changed.
    async fn refresh_trusted_cas(&self) -> Result<(), StoreError> {
        let certs = crate::thirdparty_ca::trusted_for_auth(&self.store).await?;
        self.trusted_cas.send_if_modified(|current| {
            if current.certs == certs {
                return false;
            }
            tracing::info!(
                count = certs.len(),
                "3rd-party CAs trusted for edge connections changed"
            );
            *current = std::sync::Arc::new(weft_wire::control::pb::TrustedCas { certs });
            true
        });
        Ok(())
    }

    /// Publishes the router-facing state after a write that this controller committed
    /// (other controllers learn of it from the change log)
    /// (logging a failure instead of returning it), and returns once a publication
    /// that read the store after the write finished. With [`Self::run_publisher`]
    /// running, concurrent callers share publications; without it (offline commands)
    /// the caller publishes itself.
    pub async fn notify_routers(&self) {
        if self.publisher.running() {
            let round = self.publisher.request();
            self.publisher.wait(round).await;
        } else {
            self.publish_logged().await;
        }
    }

    async fn publish_logged(&self) {
        if let Err(e) = self.sync_routers().await {
            tracing::error!(error = %e, "publishing router state failed");
        }
    }

    /// The task that serves [`Self::notify_routers`]; runs until the process ends.
    pub async fn run_publisher(self: std::sync::Arc<Self>) {
        let ctl = self.clone();
        self.publisher
            .serve(move || {
                let ctl = ctl.clone();
                async move { ctl.publish_logged().await }
            })
            .await;
    }
}

/// A new random administrator password: 144 bits, URL-safe base64, and never starting
/// with `-`, which command lines (`weft login -p …`) would take for an option.
fn admin_password() -> Result<String, StartError> {
    loop {
        let mut raw = [0u8; 18];
        crate::pki::random_bytes(&mut raw)?;
        let password =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
        if !password.starts_with('-') {
            return Ok(password);
        }
    }
}

#[cfg(test)]
mod admin_password_tests {
    #[test]
    fn admin_passwords_never_start_with_a_dash() {
        for _ in 0..2000 {
            let p = super::admin_password().unwrap();
            assert!(!p.starts_with('-'), "{p}");
            assert_eq!(p.len(), 24);
        }
    }
}
