//! [`Context`]: an authenticated identity that lists, dials and binds services.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::{AbortHandle, JoinSet};
use weft_wire::edge;

use crate::Identity;
use crate::controller::{
    ControllerClient, EdgeRouter, MfaCodes, MfaEnrollment, Service, Session, SessionKind,
    Terminator,
};
use crate::crypto::{KeyPair, SessionKeys};
use crate::edge::channel::Channel;
use crate::edge::proto::{self, ConnectReply};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{self, Event, Events};
use crate::listener::{self, Listener};
use crate::options::{BindOptions, DialOptions};
use crate::posture::{self, LinuxHost, PostureQuerySet};
use crate::stream::{Stream, StreamParts};
use crate::tls;

/// Tunables of a [`Context`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// let options = weft_sdk::Options {
///     controller_timeout: Duration::from_secs(5),
///     ..weft_sdk::Options::default()
/// }
/// .with_controllers(["https://ctrl-a:1280", "https://ctrl-b:1280"])
/// .with_config_types(["intercept.v1"])
/// .with_mfa_codes(|| async { std::env::var("TOTP").ok() });
/// let ctx = weft_sdk::Context::with_options(weft_sdk::Identity::load("alice.json")?, options).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    /// Deadline of TCP + TLS + hello to one edge router.
    pub connect_timeout: Duration,
    /// How long a router may take to answer a dial or bind (the C SDK's default is 10 s).
    pub request_timeout: Duration,
    /// How often the API session is refreshed and service changes are polled.
    pub refresh_interval: Duration,
    /// How long one controller request may take (connecting included); past it the
    /// request fails with [`ErrorKind::TimedOut`] and the next controller is tried.
    pub controller_timeout: Duration,
    /// How often this host's posture (OS, MAC addresses, domain, processes) is checked
    /// against what was last reported, and reported again when it changed (only while
    /// services carry posture queries; the C SDK's period is 20 s).
    pub posture_interval: Duration,
    /// Controller base URLs (`https://host:port`) to use instead of the identity's
    /// (`ztAPI` and `ztAPIs`); empty: the identity's. Controllers sharing one database,
    /// tried in order when one cannot be reached (`docs/sdk.md`).
    pub controllers: Vec<String>,
    /// Where TOTP codes come from when the controller asks for one at authentication
    /// (the identity has MFA, or its authentication policy requires it); none: such a
    /// login fails with [`ErrorKind::Mfa`].
    pub mfa_codes: Option<MfaCodes>,
    /// The config types whose configs services carry ([`Service::configs`]), by name
    /// or id; `"all"` (the default) for every type, empty for none. Sent at each
    /// login (OpenZiti's `configTypes`).
    pub config_types: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            refresh_interval: Duration::from_secs(30),
            controller_timeout: crate::controller::REQUEST_TIMEOUT,
            posture_interval: Duration::from_secs(20),
            controllers: Vec::new(),
            mfa_codes: None,
            config_types: vec!["all".to_string()],
        }
    }
}

impl Options {
    /// These options with `codes` answering TOTP queries: it is called at each
    /// authentication that asks for a code (the first, and any later one after the API
    /// session ended) and returns the current code, or `None` to give up.
    pub fn with_mfa_codes<F, Fut>(mut self, codes: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<String>> + Send + 'static,
    {
        self.mfa_codes = Some(MfaCodes(Arc::new(move || Box::pin(codes()))));
        self
    }

    /// These options with services carrying the configs of `types` (see
    /// [`Options::config_types`]).
    pub fn with_config_types<S: Into<String>>(
        mut self,
        types: impl IntoIterator<Item = S>,
    ) -> Self {
        self.config_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// These options with `urls` as the controllers (see [`Options::controllers`]).
    pub fn with_controllers<S: Into<String>>(mut self, urls: impl IntoIterator<Item = S>) -> Self {
        self.controllers = urls.into_iter().map(Into::into).collect();
        self
    }
}

/// How many times a dial starts over with a fresh session or router.
const DIAL_ATTEMPTS: u32 = 3;

type Slot = Arc<tokio::sync::Mutex<Option<Channel>>>;

#[derive(Debug)]
pub(crate) struct Inner {
    /// This context itself, for the tasks it starts (which must not keep it alive).
    me: std::sync::Weak<Self>,
    pub(crate) name: String,
    /// The identity: its certificate (and key) change when it is extended.
    identity: Mutex<Identity>,
    /// Its TLS configuration towards edge routers (follows `identity`).
    pub(crate) tls: Mutex<Arc<rustls::ClientConfig>>,
    pub(crate) ctrl: ControllerClient,
    pub(crate) options: Options,
    services: Mutex<HashMap<String, Service>>,
    dial_sessions: Mutex<HashMap<String, Session>>,
    /// Held while services are listed or a Dial session is created, so that many
    /// concurrent first dials make one controller request, not one each (hundreds of
    /// parallel requests would meet the controller's per-address connection cap).
    fetching: tokio::sync::Mutex<()>,
    slots: Mutex<HashMap<String, Slot>>,
    next_conn_id: AtomicU32,
    /// The background tasks (API session refresh, posture reports).
    refresher: Mutex<Vec<AbortHandle>>,
    /// Posture queries last listed and what was last reported.
    posture: tokio::sync::Mutex<PostureState>,
    /// Where [`Event`]s go ([`Context::events`]).
    events: broadcast::Sender<Event>,
    /// The services of the last listing, by id, to tell what changed (`None` before
    /// the first).
    listed: Mutex<Option<HashMap<String, Service>>>,
    /// [`Event::IdentityRevoked`] was reported (and not since a login succeeded).
    revoked: AtomicBool,
    /// [`Context::close`] was called: every later call fails with
    /// [`ErrorKind::Closed`].
    closed: AtomicBool,
}

/// What the SDK knows of posture: the query sets of the services, the host, and the
/// responses last sent (sent again only when they change, or after a new login).
#[derive(Debug, Default)]
struct PostureState {
    sets: Vec<PostureQuerySet>,
    host: LinuxHost,
    last_sent: Option<Vec<serde_json::Value>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single map operation; a poisoned lock is consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An authenticated identity: lists services, dials them and hosts them.
///
/// Cheap to clone; all clones share the API session and one multiplexed edge
/// connection per router.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let ctx = weft_sdk::Context::from_file("alice.json").await?;
/// for s in ctx.services().await? {
///     println!("{} dial={} bind={}", s.name, s.can_dial(), s.can_bind());
/// }
/// let stream = ctx.dial("echo").await?;         // tokio AsyncRead + AsyncWrite
/// let listener = ctx.bind("echo").await?;       // one Stream per dial of it
/// ctx.close().await?;                           // logs out; every clone now fails with Closed
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Context {
    inner: Arc<Inner>,
}

impl Context {
    /// Loads the identity file at `path` (as `weft edge enroll` or [`crate::enroll`]
    /// wrote it; OpenZiti's `NewContextFromFile`) and authenticates with default
    /// [`Options`]. [`ErrorKind::Identity`] when the file is missing or unusable.
    pub async fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        Self::new(Identity::load(path)?).await
    }

    /// Authenticates `identity` with its certificate, with default [`Options`].
    pub async fn new(identity: Identity) -> Result<Self> {
        Self::with_options(identity, Options::default()).await
    }

    /// Authenticates `identity` with its certificate, at the first of its controllers
    /// (or of [`Options::controllers`]) that can be reached.
    pub async fn with_options(identity: Identity, options: Options) -> Result<Self> {
        let identity = if options.controllers.is_empty() {
            identity
        } else {
            identity.with_controllers(&options.controllers)?
        };
        let tls = tls::client_config(&identity)?;
        let ctrl = ControllerClient::new(
            identity.controllers(),
            tls::controller_config(&identity)?,
            options.mfa_codes.clone(),
            options.controller_timeout,
            options.config_types.clone(),
        )?;
        let session = ctrl.authenticate().await?;
        tracing::debug!(identity = %session.identity.name, api_session = %session.id, "authenticated");
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            name: session.identity.name.clone(),
            identity: Mutex::new(identity),
            tls: Mutex::new(tls),
            ctrl,
            options,
            services: Mutex::new(HashMap::new()),
            dial_sessions: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
            slots: Mutex::new(HashMap::new()),
            next_conn_id: AtomicU32::new(0),
            refresher: Mutex::new(Vec::new()),
            posture: tokio::sync::Mutex::new(PostureState::default()),
            events: broadcast::channel(events::EVENT_QUEUE).0,
            listed: Mutex::new(None),
            revoked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        // Refresh well before the session could expire.
        let interval = session
            .expiration_seconds
            .map_or(inner.options.refresh_interval, |s| {
                inner
                    .options
                    .refresh_interval
                    .min(Duration::from_secs(s / 3).max(Duration::from_secs(1)))
            });
        let refresher = tokio::spawn(refresh_loop(Arc::downgrade(&inner), interval));
        let posture = tokio::spawn(posture_loop(
            Arc::downgrade(&inner),
            inner.options.posture_interval,
        ));
        *lock(&inner.refresher) = vec![refresher.abort_handle(), posture.abort_handle()];
        Ok(Self { inner })
    }

    /// The identity's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The base URL of the controller this context talks to now: the first that
    /// answered, and after a failover the one that answers instead.
    pub fn controller(&self) -> String {
        self.inner.ctrl.current()
    }

    /// Extends this identity's certificate (OpenZiti's `extend` and `extend-verify`):
    /// the controller issues a new certificate for the same key, or for a new P-256 key
    /// with `roll_keys`, and the old certificate stops logging in. This context goes on
    /// with the new one (existing edge connections are kept; new ones and later logins
    /// use the new certificate). Returns the renewed identity: **save it**
    /// ([`Identity::save`]), or the next process start has only the old certificate.
    /// [`ErrorKind::NotAuthorized`] when the identity has no certificate of this network.
    pub async fn extend_certificate(&self, roll_keys: bool) -> Result<Identity> {
        self.inner.check_open()?;
        let current = lock(&self.inner.identity).clone();
        let authenticator = self.inner.ctrl.cert_authenticator().await?;
        let (csr, new_key) = if roll_keys {
            let (key, csr) = weft_identity::csr::key_and_csr(&self.inner.name)?;
            (csr, Some(key.serialize_pem()))
        } else {
            (current.csr_for_own_key(&self.inner.name)?, None)
        };
        let cert = self
            .inner
            .ctrl
            .extend_certificate(&authenticator, &csr)
            .await?;
        let renewed = current.renewed(cert, new_key)?;
        let tls = tls::client_config(&renewed)?;
        self.inner.ctrl.set_tls(&renewed.controller_tls()?)?;
        *lock(&self.inner.tls) = tls;
        *lock(&self.inner.identity) = renewed.clone();
        tracing::info!(identity = %self.inner.name, roll_keys, "certificate extended");
        Ok(renewed)
    }

    /// Starts a TOTP enrollment for this identity (OpenZiti's `EnrollZitiMfa`): the
    /// secret (in [`MfaEnrollment::provisioning_url`]) for an authenticator app and the
    /// recovery codes. It counts once [`Self::verify_mfa`] proves a code; from then on
    /// every login asks for a code ([`Options::with_mfa_codes`]).
    /// [`ErrorKind::Mfa`] when the identity already has an enrollment.
    pub async fn enroll_mfa(&self) -> Result<MfaEnrollment> {
        self.inner.check_open()?;
        self.inner.ctrl.enroll_mfa().await
    }

    /// Verifies the enrollment with a current TOTP `code`; [`ErrorKind::Mfa`] when it is
    /// wrong, [`ErrorKind::NoSuchService`] (404) without an unverified enrollment.
    pub async fn verify_mfa(&self, code: &str) -> Result<()> {
        self.inner.check_open()?;
        self.inner.ctrl.verify_mfa(code).await
    }

    /// Removes this identity's TOTP enrollment; a verified one needs a TOTP or recovery
    /// `code` ([`ErrorKind::Mfa`] when wrong).
    pub async fn remove_mfa(&self, code: &str) -> Result<()> {
        self.inner.check_open()?;
        self.inner.ctrl.remove_mfa(code).await
    }

    /// Every service this identity can see (fetched now).
    pub async fn services(&self) -> Result<Vec<Service>> {
        self.inner.check_open()?;
        self.inner.refresh_services().await
    }

    /// The service named `name`.
    pub async fn service(&self, name: &str) -> Result<Service> {
        self.inner.check_open()?;
        self.inner.service(name).await
    }

    /// Where service `service` is hosted now: its terminators (OpenZiti's
    /// `GetServiceTerminators`), e.g. to find the terminator identities a dial may name.
    /// [`ErrorKind::NoSuchService`] when the service is not visible.
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ctx = weft_sdk::Context::from_file("alice.json").await?;
    /// for t in ctx.terminators("desks").await? {
    ///     // Reach that host in particular.
    ///     let options = weft_sdk::DialOptions::default().with_identity(t.identity.clone());
    ///     let stream = ctx.dial_with_options("desks", &options).await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn terminators(&self, service: &str) -> Result<Vec<Terminator>> {
        self.inner.check_open()?;
        let svc = self.inner.service(service).await?;
        self.inner
            .ctrl
            .terminators(&svc.id)
            .await
            .map_err(|e| e.with_service(service))
    }

    /// Opens a stream to service `service`: gets a Dial session, picks the edge router
    /// with the lowest measured latency among those the session allows (failing over
    /// to the next on error), and connects through it.
    pub async fn dial(&self, service: &str) -> Result<Stream> {
        self.dial_with_options(service, &DialOptions::default())
            .await
    }

    /// [`Self::dial`] with options: a deadline for the whole dial
    /// ([`ErrorKind::TimedOut`] past it), application data for the host, the identity of
    /// the terminator to reach.
    pub async fn dial_with_options(&self, service: &str, options: &DialOptions) -> Result<Stream> {
        self.inner.check_open()?;
        let dialed = match options.timeout {
            Some(limit) => tokio::time::timeout(limit, self.inner.dial(service, options))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::TimedOut,
                        format!("the dial of {service} took longer than {limit:?}"),
                    ))
                }),
            None => self.inner.dial(service, options).await,
        };
        dialed.map_err(|e| e.with_service(service))
    }

    /// Hosts service `service`: every dial of it becomes a stream from
    /// [`Listener::accept`]. The binding is renewed on another router or session if the
    /// router drops it.
    pub async fn bind(&self, service: &str) -> Result<Listener> {
        self.bind_with_options(service, BindOptions::default())
            .await
    }

    /// [`Self::bind`] with the terminator's identity (dials naming it reach this
    /// host), cost and precedence.
    pub async fn bind_with_options(&self, service: &str, options: BindOptions) -> Result<Listener> {
        self.inner.check_open()?;
        let bound = async {
            let svc = self.inner.service(service).await?;
            if !svc.can_bind() {
                return Err(Error::new(
                    ErrorKind::NotAuthorized,
                    format!("no service policy lets {} bind {service}", self.inner.name),
                ));
            }
            listener::bind(Arc::clone(&self.inner), svc, options).await
        };
        bound.await.map_err(|e| e.with_service(service))
    }

    /// What changes from now on: services added, changed and removed, edge routers
    /// connected and lost, listeners bound and lost, the identity revoked. Each call
    /// is a subscriber of its own. Service changes are seen when services are listed
    /// (by [`Self::services`], a dial or bind, and the poll every
    /// [`Options::refresh_interval`] that finds the controller's services changed).
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ctx = weft_sdk::Context::from_file("alice.json").await?;
    /// let mut events = ctx.events();
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         weft_sdk::Event::ServiceAdded(s) => println!("can now use {}", s.name),
    ///         weft_sdk::Event::RouterDisconnected { router, error, .. } => println!("lost {router}: {error}"),
    ///         weft_sdk::Event::IdentityRevoked(e) => return Err(e.into()),
    ///         other => println!("{other:?}"),
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn events(&self) -> Events {
        Events::new(self.inner.events.subscribe())
    }

    /// The edge routers this context is connected to, with their measured latency.
    pub fn routers(&self) -> Vec<(String, Duration)> {
        let slots: Vec<Slot> = lock(&self.inner.slots).values().cloned().collect();
        slots
            .iter()
            .filter_map(|s| s.try_lock().ok().and_then(|g| g.clone()))
            .filter(|c| !c.is_closed())
            .map(|c| (c.router().to_string(), c.latency()))
            .collect()
    }

    /// Logs out (deletes the API session) and closes every edge connection: the
    /// streams of this context fail, its listeners stop, and every later call on any
    /// clone fails with [`ErrorKind::Closed`].
    pub async fn close(self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.shutdown();
        self.inner.ctrl.logout().await
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Inner {
    fn shutdown(&self) {
        for task in lock(&self.refresher).drain(..) {
            task.abort();
        }
        for slot in lock(&self.slots).values() {
            if let Ok(g) = slot.try_lock()
                && let Some(c) = g.as_ref()
            {
                c.close_when_flushed();
            }
        }
    }

    /// [`ErrorKind::Closed`] once [`Context::close`] was called.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed(format!(
                "the context of {} was closed",
                self.name
            )));
        }
        Ok(())
    }

    pub(crate) fn next_conn_id(&self) -> u32 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    fn api_token(&self) -> String {
        self.ctrl.token().unwrap_or_default()
    }

    /// Tells every subscriber of [`Context::events`] (none: nothing to do).
    pub(crate) fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// The identity can no longer log in: said once until a login succeeds.
    fn emit_revoked(&self, error: &Error) {
        if !self.revoked.swap(true, Ordering::AcqRel) {
            self.emit(Event::IdentityRevoked(error.clone()));
        }
    }

    async fn refresh_services(&self) -> Result<Vec<Service>> {
        let list = self.ctrl.services().await?;
        *lock(&self.services) = list.iter().map(|s| (s.name.clone(), s.clone())).collect();
        let changes = {
            let mut listed = lock(&self.listed);
            let changes = events::service_changes(listed.as_ref(), &list);
            *listed = Some(list.iter().map(|s| (s.id.clone(), s.clone())).collect());
            changes
        };
        for event in changes {
            self.emit(event);
        }
        self.posture.lock().await.sets = list
            .iter()
            .flat_map(|s| s.posture_queries.iter().cloned())
            .collect();
        if let Err(e) = self.report_posture(false).await {
            tracing::warn!(error = %e, "posture report failed");
        }
        Ok(list)
    }

    /// Reports this host's posture for the queries last listed, when it differs from
    /// what was last sent (or always, with `force`). Nothing is sent without queries.
    async fn report_posture(&self, force: bool) -> Result<()> {
        let mut st = self.posture.lock().await;
        let PostureState {
            sets,
            host,
            last_sent,
        } = &mut *st;
        let now = posture::responses(sets, host);
        if now.is_empty() || (!force && last_sent.as_ref() == Some(&now)) {
            return Ok(());
        }
        self.ctrl.submit_posture(&now).await?;
        tracing::debug!(responses = now.len(), "posture reported");
        *last_sent = Some(now);
        Ok(())
    }

    /// `POST /sessions`; refused for posture, reports posture afresh and asks once more
    /// (the first session of a context may come before its first report reached the
    /// controller). [`ErrorKind::Posture`] when posture still fails.
    pub(crate) async fn create_session(&self, svc: &Service, kind: SessionKind) -> Result<Session> {
        match self.ctrl.create_session(&svc.id, kind).await {
            Err(e) if e.kind() == ErrorKind::Posture => {
                self.refresh_services().await?;
                self.report_posture(true).await?;
                self.ctrl.create_session(&svc.id, kind).await
            }
            other => other,
        }
    }

    pub(crate) async fn service(&self, name: &str) -> Result<Service> {
        if let Some(s) = lock(&self.services).get(name) {
            return Ok(s.clone());
        }
        let _one_at_a_time = self.fetching.lock().await;
        // Another caller may have listed them meanwhile.
        if let Some(s) = lock(&self.services).get(name) {
            return Ok(s.clone());
        }
        self.refresh_services()
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NoSuchService,
                    format!("no service named {name:?} is visible to {}", self.name),
                )
            })
    }

    /// A live channel to the router at `address`, connecting if needed (one connect per
    /// address at a time).
    pub(crate) async fn channel(&self, router: &str, address: &str) -> Result<Channel> {
        let slot = lock(&self.slots)
            .entry(address.to_string())
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        self.check_open()?;
        let tls = lock(&self.tls).clone();
        let channel = Channel::connect(
            router,
            address,
            tls,
            &self.api_token(),
            &format!("weft-sdk/{}", env!("CARGO_PKG_VERSION")),
            self.options.connect_timeout,
        )
        .await?;
        *guard = Some(channel.clone());
        self.emit(Event::RouterConnected {
            router: router.to_string(),
            address: address.to_string(),
        });
        tokio::spawn(report_disconnect(self.me.clone(), channel.clone()));
        Ok(channel)
    }

    fn live_channel(&self, address: &str) -> Option<Channel> {
        let slot = lock(&self.slots).get(address).cloned()?;
        let guard = slot.try_lock().ok()?;
        guard.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    /// The session's edge routers as channels, best first: connected ones by latency;
    /// if none is connected, connects to all at once and takes the first to finish its
    /// hello (the others finish in the background), as the C SDK does.
    pub(crate) async fn channels_for(
        self: &Arc<Self>,
        routers: &[EdgeRouter],
    ) -> Result<Vec<Channel>> {
        let mut live = Vec::new();
        let mut missing = Vec::new();
        for r in routers {
            let Some(address) = r.tls_address() else {
                continue;
            };
            match self.live_channel(&address) {
                Some(c) => live.push(c),
                None => missing.push((r.name.clone(), address)),
            }
        }
        live.sort_by_key(Channel::latency);
        let mut last = None;
        if !missing.is_empty() {
            let mut set = JoinSet::new();
            for (name, address) in missing {
                let me = Arc::clone(self);
                set.spawn(async move { me.channel(&name, &address).await });
            }
            if live.is_empty() {
                while let Some(res) = set.join_next().await {
                    match res {
                        Ok(Ok(c)) => {
                            live.push(c);
                            break;
                        }
                        Ok(Err(e)) => last = Some(e),
                        Err(e) => last = Some(Error::connection(e.to_string())),
                    }
                }
            }
            set.detach_all();
        }
        if live.is_empty() {
            let detail = last.map_or_else(
                || "the session lists no edge router with a tls address".to_string(),
                |e| e.to_string(),
            );
            return Err(Error::new(ErrorKind::NoEdgeRouter, detail));
        }
        Ok(live)
    }

    async fn dial_session(&self, svc: &Service) -> Result<Session> {
        if let Some(s) = lock(&self.dial_sessions).get(&svc.id) {
            return Ok(s.clone());
        }
        let _one_at_a_time = self.fetching.lock().await;
        // Another dial may have made one meanwhile.
        if let Some(s) = lock(&self.dial_sessions).get(&svc.id) {
            return Ok(s.clone());
        }
        let s = self.create_session(svc, SessionKind::Dial).await?;
        tracing::debug!(service = %svc.name, session = %s.id, routers = s.edge_routers.len(), "dial session");
        lock(&self.dial_sessions).insert(svc.id.clone(), s.clone());
        Ok(s)
    }

    async fn dial(self: &Arc<Self>, service: &str, options: &DialOptions) -> Result<Stream> {
        let svc = self.service(service).await?;
        if !svc.can_dial() {
            return Err(Error::new(
                ErrorKind::NotAuthorized,
                format!("no service policy lets {} dial {service}", self.name),
            ));
        }
        let mut last = None;
        let mut rechecked = false;
        for attempt in 0..DIAL_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let session = match self.dial_session(&svc).await {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::NoSuchService => {
                    // Policy no longer grants it: refresh what we know of services.
                    lock(&self.services).remove(service);
                    return Err(Error::new(
                        ErrorKind::NotAuthorized,
                        format!("{} may not dial {service}: {}", self.name, e.message()),
                    ));
                }
                Err(e) => return Err(e),
            };
            let channels = match self.channels_for(&session.edge_routers).await {
                Ok(c) => c,
                Err(e) => {
                    // Routers that drop us may be telling us the API session is gone.
                    if !rechecked {
                        rechecked = true;
                        self.recheck_api_session().await?;
                    }
                    last = Some(e);
                    continue;
                }
            };
            for channel in channels {
                match self.connect_on(&channel, &svc, &session, options).await {
                    Ok(stream) => return Ok(stream),
                    Err(DialFailure::InvalidSession(e)) => {
                        lock(&self.dial_sessions).remove(&svc.id);
                        last = Some(e);
                        break;
                    }
                    Err(DialFailure::Other(e)) => {
                        if e.kind() == ErrorKind::Connection && !rechecked {
                            rechecked = true;
                            self.recheck_api_session().await?;
                        }
                        last = Some(e);
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::new(ErrorKind::NoEdgeRouter, "no edge router answered")))
    }

    /// After an edge router dropped or refused us: asks the controller whether the API
    /// session still holds, and logs in again when it expired. An identity the
    /// controller no longer lets in (deleted, disabled, certificate no longer accepted)
    /// is [`ErrorKind::NotAuthorized`], not a router outage; a controller that cannot
    /// be reached leaves the routers' error to speak.
    async fn recheck_api_session(&self) -> Result<()> {
        let refused = match self.ctrl.refresh().await {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotAuthorized => e,
            Err(e) => {
                tracing::debug!(error = %e, "could not check the API session");
                return Ok(());
            }
        };
        tracing::debug!(error = %refused, "API session gone; authenticating again");
        match self.ctrl.authenticate().await {
            Ok(_) => {
                // Sessions of the old API session are gone with it.
                lock(&self.dial_sessions).clear();
                self.revoked.store(false, Ordering::Release);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotAuthorized => {
                let e = revoked_error(&self.name, e);
                self.emit_revoked(&e);
                Err(e)
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not authenticate again");
                Ok(())
            }
        }
    }

    /// One Connect on one router (spec §4a).
    async fn connect_on(
        self: &Arc<Self>,
        channel: &Channel,
        svc: &Service,
        session: &Session,
        options: &DialOptions,
    ) -> Result<Stream, DialFailure> {
        let conn_id = self.next_conn_id();
        let (rx, credit) = channel.open_stream(conn_id)?;
        let keys = if svc.encryption_required {
            Some(KeyPair::generate().map_err(crypto_err)?)
        } else {
            None
        };
        let public = keys.as_ref().map(KeyPair::public);
        let reply = channel
            .request(
                |out, seq| {
                    edge::Connect {
                        conn_id,
                        seq: 0,
                        caller_id: Some(self.name.as_bytes()),
                        public_key: public.as_ref().map(|k| &k[..]),
                        terminator_identity: options.identity.as_deref().map(str::as_bytes),
                        app_data: options.app_data.as_deref(),
                        stickiness_token: options.stickiness_token.as_deref(),
                        session_token: session.token.as_bytes(),
                    }
                    .encode(seq, out)
                },
                self.options.request_timeout,
            )
            .await;
        let frame = match reply {
            Ok(frame) => frame,
            Err(e) => {
                channel.deregister(conn_id);
                if e.kind() == ErrorKind::TimedOut {
                    // As the C SDK does: tell the router we gave up on this conn id.
                    channel.send_close_detached(conn_id, 1, b"");
                }
                return Err(DialFailure::Other(e));
            }
        };
        match proto::connect_reply(&frame).map_err(|e| Error::protocol(e.to_string()))? {
            ConnectReply::Connected(peer_key, stickiness_token) => {
                let session_keys = match keys {
                    Some(kp) => {
                        let Some(peer_key) = peer_key else {
                            channel.deregister(conn_id);
                            // An abort: the host must not read a clean end either.
                            channel.send_close_detached(conn_id, 1, b"no end-to-end key");
                            return Err(DialFailure::Other(Error::new(
                                ErrorKind::Crypto,
                                format!(
                                    "{} requires encryption but the host sent no key",
                                    svc.name
                                ),
                            )));
                        };
                        Some(SessionKeys::client(&kp, &peer_key).map_err(crypto_err)?)
                    }
                    None => None,
                };
                Ok(Stream::establish(StreamParts {
                    channel: channel.clone(),
                    conn_id,
                    service: svc.name.clone(),
                    dialer: None,
                    app_data: None,
                    stickiness_token,
                    events: rx,
                    credit,
                    keys: session_keys,
                    context: Arc::clone(self),
                })
                .await?)
            }
            ConnectReply::Refused(reason) => {
                channel.deregister(conn_id);
                let e = Error::connection(format!(
                    "edge router {} refused the dial of {}: {reason}",
                    channel.router(),
                    svc.name
                ));
                if proto::is_invalid_session(&reason) {
                    Err(DialFailure::InvalidSession(Error::new(
                        ErrorKind::SessionRevoked,
                        e.message().to_string(),
                    )))
                } else {
                    Err(DialFailure::Other(e))
                }
            }
        }
    }
}

/// The error of an identity the controller no longer lets in.
fn revoked_error(name: &str, refused: Error) -> Error {
    Error::new(
        ErrorKind::NotAuthorized,
        format!(
            "{name} can no longer authenticate (the identity was deleted or disabled, \
             or its certificate is no longer accepted)"
        ),
    )
    .with_source(refused)
}

/// Reports the loss of `channel` to [`Context::events`] subscribers (when the context
/// is still there: one being dropped closes its connections itself).
async fn report_disconnect(inner: std::sync::Weak<Inner>, channel: Channel) {
    channel.closed().await;
    if let Some(inner) = inner.upgrade() {
        inner.emit(Event::RouterDisconnected {
            router: channel.router().to_string(),
            address: channel.address().to_string(),
            error: channel.closed_error(),
        });
    }
}

pub(crate) fn crypto_err(e: crate::crypto::CryptoError) -> Error {
    Error::new(ErrorKind::Crypto, e.to_string())
}

enum DialFailure {
    /// The router refused the session token: get a new session and start over.
    InvalidSession(Error),
    /// Anything else: try the next router.
    Other(Error),
}

impl From<Error> for DialFailure {
    fn from(e: Error) -> Self {
        Self::Other(e)
    }
}

/// Keeps the API session fresh (re-authenticating when it is gone) and follows
/// service changes.
/// Reports posture again whenever this host's answer changes (a process stopped, an
/// address changed), so that the controller withdraws access the moment it fails.
async fn posture_loop(inner: std::sync::Weak<Inner>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Err(e) = inner.report_posture(false).await {
            tracing::warn!(error = %e, "posture report failed");
        }
    }
}

async fn refresh_loop(inner: std::sync::Weak<Inner>, interval: Duration) {
    let mut last_change: Option<String> = None;
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match inner.ctrl.refresh().await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotAuthorized => {
                tracing::info!("API session expired; authenticating again");
                match inner.ctrl.authenticate().await {
                    Ok(_) => inner.revoked.store(false, Ordering::Release),
                    Err(e) if e.kind() == ErrorKind::NotAuthorized => {
                        tracing::warn!(error = %e, "the identity can no longer authenticate");
                        inner.emit_revoked(&revoked_error(&inner.name, e));
                    }
                    Err(e) => tracing::warn!(error = %e, "re-authentication failed"),
                }
                // Posture data of the old API session is gone with it: report anew.
                inner.posture.lock().await.last_sent = None;
            }
            Err(e) => tracing::warn!(error = %e, "API session refresh failed"),
        }
        match inner.ctrl.services_changed_at().await {
            Ok(at) if last_change.as_ref() != Some(&at) => {
                // Services or policies changed: drop what was cached; it reloads on use
                // (at once when someone follows the events, to tell them what changed).
                lock(&inner.services).clear();
                lock(&inner.dial_sessions).clear();
                last_change = Some(at);
                if inner.events.receiver_count() > 0
                    && let Err(e) = inner.refresh_services().await
                {
                    tracing::debug!(error = %e, "listing services failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "service-updates poll failed"),
        }
    }
}
