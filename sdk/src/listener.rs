//! [`Listener`]: hosting a service (Bind, then a stream per accepted Dial).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use weft_wire::edge;

use crate::context::{Inner, crypto_err};
use crate::controller::{Service, Session, SessionKind};
use crate::crypto::{KeyPair, SessionKeys};
use crate::edge::channel::{Channel, ListenerEvent, Route};
use crate::edge::proto::{self, ConnectReply};
use crate::error::{Error, ErrorKind, Result};
use crate::events::Event;
use crate::options::BindOptions;
use crate::stream::{Stream, StreamParts};

/// Accepted streams waiting for [`Listener::accept`].
const ACCEPT_QUEUE: usize = 128;
/// Attempts of the first bind before [`crate::Context::bind`] gives up.
const FIRST_BIND_ATTEMPTS: u32 = 3;
/// Longest wait between rebind attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Terminators a listener keeps unless told otherwise, each on its own edge router
/// (openziti/sdk-golang `DefaultListenOptions`: `MaxTerminators: 3`).
pub const DEFAULT_MAX_TERMINATORS: u16 = 3;
/// How often a listener with fewer terminators than it wants, and no other router to
/// bind on, asks for a fresh Bind session (whose router list may have grown).
const REFRESH_ROUTERS: Duration = Duration::from_secs(60);
/// How soon to try again when the session lists a router not connected yet.
const CONNECTING_RETRY: Duration = Duration::from_secs(1);

/// A bound service: yields a [`Stream`] for each dial. Dropping it unbinds.
///
/// Accept with [`Listener::accept`] (from any number of tasks sharing the listener,
/// e.g. in an `Arc`), or use it as a [`futures_core::Stream`] of accepted streams. With
/// the `axum` feature, `axum::serve(listener, app)` serves an axum app on the service.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// # let ctx = weft_sdk::Context::from_file("host.json").await?;
/// use tokio::io::AsyncWriteExt;
/// let listener = ctx.bind("echo").await?;
/// loop {
///     let mut stream = listener.accept().await?;
///     println!("{:?} dialed via {}", stream.dialer(), stream.router());
///     tokio::spawn(async move {
///         let _ = stream.write_all(b"hello").await;
///     });
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    service: String,
    router: String,
    /// Edge routers holding one of this listener's terminators now.
    routers: watch::Receiver<Vec<String>>,
    /// The hosting identity's name (axum's local address).
    #[cfg(feature = "axum")]
    identity: String,
    accepted: tokio::sync::Mutex<mpsc::Receiver<Result<Stream>>>,
    task: AbortHandle,
}

impl Listener {
    /// The next accepted stream. Tasks accepting together each get different streams.
    ///
    /// # Errors
    /// The error that ended the binding for good, once (for example
    /// [`ErrorKind::NotAuthorized`] when policy no longer grants Bind), then
    /// [`ErrorKind::Closed`].
    pub async fn accept(&self) -> Result<Stream> {
        match self.accepted.lock().await.recv().await {
            Some(r) => r,
            None => Err(Error::closed(format!(
                "the listener of {} stopped",
                self.service
            ))),
        }
    }

    /// The service hosted.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The edge router the first binding was made on.
    pub fn router(&self) -> &str {
        &self.router
    }

    /// The edge routers holding one of this listener's terminators now (up to
    /// [`crate::BindOptions::max_terminators`], one per router), sorted.
    pub fn routers(&self) -> Vec<String> {
        self.routers.borrow().clone()
    }
}

/// Accepted streams, then the error that ended the binding, then the end.
impl futures_core::Stream for Listener {
    type Item = Result<Stream>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        // `&mut self`: no other task holds the lock.
        self.get_mut().accepted.get_mut().poll_recv(cx)
    }
}

/// Where an accepted connection comes from (axum's `ConnectInfo`), and the listener's own
/// address: a service and an identity.
#[cfg(feature = "axum")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddr {
    /// The service.
    pub service: String,
    /// The dialing identity (accepted connections) or the hosting one (the listener).
    pub identity: String,
}

/// `axum::extract::ConnectInfo<ServiceAddr>` names the dialing identity
/// (`Router::into_make_service_with_connect_info::<ServiceAddr>()`).
#[cfg(feature = "axum")]
impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Listener>>
    for ServiceAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Listener>) -> Self {
        stream.remote_addr().clone()
    }
}

#[cfg(feature = "axum")]
impl axum::serve::Listener for Listener {
    type Io = Stream;
    type Addr = ServiceAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.accepted.get_mut().recv().await {
                Some(Ok(stream)) => {
                    let addr = ServiceAddr {
                        service: self.service.clone(),
                        identity: stream.dialer().unwrap_or_default().to_owned(),
                    };
                    return (stream, addr);
                }
                Some(Err(e)) => {
                    tracing::error!(service = %self.service, error = %e,
                        "the binding ended for good; serving no new connections");
                }
                // axum has no way to be told that a listener ended: it keeps serving
                // the connections it has (the error above says why no new ones come).
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(ServiceAddr {
            service: self.service.clone(),
            identity: self.identity.clone(),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `svc` and starts the task that keeps it bound.
pub(crate) async fn bind(inner: Arc<Inner>, svc: Service, opts: BindOptions) -> Result<Listener> {
    let mut last = None;
    let mut first = None;
    for attempt in 0..FIRST_BIND_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        let session = match inner.create_session(&svc, SessionKind::Bind).await {
            Ok(s) => s,
            Err(e) if fatal(&e) => return Err(e),
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match bind_on(&inner, &svc, &opts, &session, &[]).await {
            Ok(Some(b)) => {
                first = Some((session, b));
                break;
            }
            Ok(None) => {
                last = Some(Error::new(
                    ErrorKind::NoEdgeRouter,
                    "the Bind session lists no edge router with a tls address",
                ));
            }
            Err(e) if fatal(&e) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    let Some((session, bound)) = first else {
        return Err(last.unwrap_or_else(|| Error::new(ErrorKind::NoEdgeRouter, "bind failed")));
    };
    let router = bound.channel.router().to_string();
    let (routers_tx, mut routers) = watch::channel(vec![router.clone()]);
    let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
    let service = svc.name.clone();
    #[cfg(feature = "axum")]
    let identity = inner.name.clone();
    let target = opts
        .max_terminators
        .unwrap_or(DEFAULT_MAX_TERMINATORS)
        .max(1);
    let opts_wait_for = opts.wait_for_terminators.unwrap_or(1);
    let inner_timeout = inner.options.connect_timeout + inner.options.request_timeout;
    let keeper = Keeper {
        inner,
        svc,
        opts,
        out: tx,
        routers: routers_tx,
        bindings: Bindings::default(),
        lost: 0,
    };
    let wait_for = usize::from(opts_wait_for.min(target));
    let task = tokio::spawn(keeper.run(session, bound));
    if wait_for > 1 {
        // OpenZiti's `WaitForNEstablishedListeners`: return once that many are up.
        let limit = inner_timeout;
        let up = tokio::time::timeout(limit, routers.wait_for(|r| r.len() >= wait_for))
            .await
            .is_ok_and(|r| r.is_ok());
        if !up {
            task.abort();
            let have = routers.borrow().len();
            return Err(Error::timed_out(format!(
                "{have} of the {wait_for} terminators asked for were bound within {limit:?}"
            )));
        }
    }
    Ok(Listener {
        service,
        router,
        routers,
        #[cfg(feature = "axum")]
        identity,
        accepted: tokio::sync::Mutex::new(rx),
        task: task.abort_handle(),
    })
}

fn fatal(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::NotAuthorized | ErrorKind::NoSuchService
    )
}

/// One binding on one router.
struct Bound {
    channel: Channel,
    listener_id: u32,
    keys: Option<Arc<KeyPair>>,
    events: mpsc::UnboundedReceiver<ListenerEvent>,
}

/// Binds on the first connected router the session lists that is not in `exclude`;
/// `Ok(None)` when there is none.
async fn bind_on(
    inner: &Arc<Inner>,
    svc: &Service,
    opts: &BindOptions,
    session: &Session,
    exclude: &[String],
) -> Result<Option<Bound>> {
    let candidates: Vec<_> = session
        .edge_routers
        .iter()
        .filter(|r| !exclude.contains(&r.name))
        .cloned()
        .collect();
    if candidates.is_empty() {
        return Ok(None);
    }
    let channels = inner.channels_for(&candidates).await?;
    let mut last = None;
    for channel in channels {
        if exclude.iter().any(|r| r == channel.router()) {
            continue;
        }
        let listener_id = inner.next_conn_id();
        let (tx, rx) = mpsc::unbounded_channel();
        channel.register(listener_id, Route::Listener(tx))?;
        let keys = if svc.encryption_required {
            Some(Arc::new(KeyPair::generate().map_err(crypto_err)?))
        } else {
            None
        };
        let public = keys.as_ref().map(|k| k.public());
        let reply = channel
            .request(
                |out, seq| {
                    edge::Bind {
                        conn_id: listener_id,
                        seq: 0,
                        caller_id: Some(inner.name.as_bytes()),
                        public_key: public.as_ref().map(|k| &k[..]),
                        terminator_identity: opts.identity.as_deref().map(str::as_bytes),
                        cost: opts.cost,
                        precedence: opts.precedence,
                        session_token: session.token.as_bytes(),
                    }
                    .encode(seq, out)
                },
                inner.options.request_timeout,
            )
            .await;
        let outcome = reply.and_then(|frame| {
            proto::connect_reply(&frame).map_err(|e| Error::protocol(e.to_string()))
        });
        match outcome {
            Ok(ConnectReply::Connected(..)) => {
                tracing::debug!(service = %svc.name, router = %channel.router(), "bound");
                return Ok(Some(Bound {
                    channel,
                    listener_id,
                    keys,
                    events: rx,
                }));
            }
            Ok(ConnectReply::Refused(reason)) => {
                channel.deregister(listener_id);
                last = Some(
                    Error::connection(format!(
                        "edge router {} refused to bind {}: {reason}",
                        channel.router(),
                        svc.name
                    ))
                    .with_router(channel.router()),
                );
            }
            Err(e) => {
                channel.deregister(listener_id);
                last = Some(e);
            }
        }
    }
    match last {
        Some(e) => Err(e),
        // The session's other routers are still being connected to.
        None => Ok(None),
    }
}

/// The serving task of each binding, by router; aborted (which unbinds) when dropped.
#[derive(Default)]
struct Bindings(std::collections::BTreeMap<String, AbortHandle>);

impl Drop for Bindings {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

/// Keeps a listener's terminators: up to `max_terminators`, one per edge router. A lost
/// binding is replaced (on the same router or another, with a fresh Bind session when
/// the old one was refused) with backoff; the listener ends with an error only when
/// Bind is refused for good and no binding is left.
struct Keeper {
    inner: Arc<Inner>,
    svc: Service,
    opts: BindOptions,
    out: mpsc::Sender<Result<Stream>>,
    routers: watch::Sender<Vec<String>>,
    bindings: Bindings,
    /// Bindings lost and not replaced yet (a new one is a rebind).
    lost: usize,
}

impl Keeper {
    fn target(&self) -> usize {
        usize::from(
            self.opts
                .max_terminators
                .unwrap_or(DEFAULT_MAX_TERMINATORS)
                .max(1),
        )
    }

    fn start(&mut self, mut bound: Bound, ended: &mpsc::UnboundedSender<String>) {
        let router = bound.channel.router().to_string();
        let (inner, svc, out, ended) = (
            Arc::clone(&self.inner),
            self.svc.clone(),
            self.out.clone(),
            ended.clone(),
        );
        let name = router.clone();
        let task = tokio::spawn(async move {
            serve(&inner, &svc, &mut bound, &out).await;
            let _ = ended.send(name);
        });
        if let Some(old) = self.bindings.0.insert(router.clone(), task.abort_handle()) {
            old.abort();
        }
        self.publish_routers();
        let rebound = self.lost > 0;
        self.lost = self.lost.saturating_sub(1);
        self.inner.emit(Event::ListenerBound {
            service: self.svc.name.clone(),
            router,
            rebound,
        });
    }

    fn publish_routers(&self) {
        self.routers
            .send_replace(self.bindings.0.keys().cloned().collect());
    }

    async fn run(mut self, mut session: Session, first: Bound) {
        let (ended_tx, mut ended) = mpsc::unbounded_channel();
        self.start(first, &ended_tx);
        let mut failures = 0u32;
        let mut fresh_session_needed = false;
        let mut session_at = tokio::time::Instant::now();
        loop {
            if let Err(e) = self.inner.check_open() {
                // The context was closed: no rebinding; `accept` says so.
                let _ = self.out.send(Err(e)).await;
                return;
            }
            let mut wait = None;
            if self.bindings.0.len() < self.target() {
                if fresh_session_needed || session_at.elapsed() >= REFRESH_ROUTERS {
                    match self
                        .inner
                        .create_session(&self.svc, SessionKind::Bind)
                        .await
                    {
                        Ok(s) => {
                            session = s;
                            session_at = tokio::time::Instant::now();
                            fresh_session_needed = false;
                        }
                        Err(e) if fatal(&e) && self.bindings.0.is_empty() => {
                            let _ = self.out.send(Err(e)).await;
                            return;
                        }
                        Err(e) => {
                            failures += 1;
                            tracing::warn!(service = %self.svc.name, error = %e,
                                "no Bind session; retrying");
                        }
                    }
                }
                if !fresh_session_needed {
                    let bound: Vec<String> = self.bindings.0.keys().cloned().collect();
                    match bind_on(&self.inner, &self.svc, &self.opts, &session, &bound).await {
                        Ok(Some(b)) => {
                            self.start(b, &ended_tx);
                            failures = 0;
                            continue;
                        }
                        Ok(None) => {
                            // Every router the session lists is bound, or not connected
                            // yet: look again soon, and for new routers now and then.
                            let listed = session.edge_routers.len();
                            wait = Some(if listed > self.bindings.0.len() {
                                CONNECTING_RETRY
                            } else {
                                REFRESH_ROUTERS.saturating_sub(session_at.elapsed())
                            });
                        }
                        Err(e) => {
                            failures += 1;
                            fresh_session_needed = true;
                            tracing::warn!(service = %self.svc.name, error = %e,
                                "binding failed; retrying");
                        }
                    }
                }
                if wait.is_none() {
                    wait = Some(Duration::from_millis(250u64 << failures.min(6)).min(MAX_BACKOFF));
                }
            }
            let sleep = tokio::time::sleep(wait.unwrap_or(Duration::MAX / 4));
            tokio::select! {
                Some(router) = ended.recv() => {
                    self.bindings.0.remove(&router);
                    self.lost += 1;
                    self.publish_routers();
                    // The router dropped it: its session may be gone too.
                    fresh_session_needed = true;
                }
                () = sleep, if wait.is_some() => {}
                () = self.out.closed() => return,
            }
        }
    }
}

/// Accepts dials until the binding ends or the listener is dropped.
async fn serve(
    inner: &Arc<Inner>,
    svc: &Service,
    bound: &mut Bound,
    out: &mpsc::Sender<Result<Stream>>,
) {
    let (channel, listener_id, keys) =
        (bound.channel.clone(), bound.listener_id, bound.keys.clone());
    let _unbind = UnbindOnDrop {
        channel: channel.clone(),
        listener_id,
    };
    loop {
        tokio::select! {
            event = bound.events.recv() => match event {
                Some(ListenerEvent::Dial { sequence, public_key, caller_id, app_data }) => {
                    let accept = Accept {
                        inner: Arc::clone(inner),
                        channel: channel.clone(),
                        listener_id,
                        service: svc.name.clone(),
                        keys: keys.clone(),
                        out: out.clone(),
                    };
                    tokio::spawn(accept.run(sequence, public_key, caller_id, app_data));
                }
                Some(ListenerEvent::Closed(reason)) => {
                    let reason = String::from_utf8_lossy(&reason);
                    tracing::info!(service = %svc.name, router = %channel.router(),
                        %reason, "binding removed by the router");
                    let error = Error::connection(format!("the router removed the binding: {reason}"))
                        .with_router(channel.router());
                    lost(inner, svc, &channel, error);
                    return;
                }
                None => {
                    let error = channel.closed_error();
                    tracing::info!(service = %svc.name, router = %channel.router(),
                        %error, "binding lost with its edge connection");
                    lost(inner, svc, &channel, error);
                    return;
                }
            },
            () = out.closed() => return,
        }
    }
}

/// Tells [`crate::Context::events`] subscribers that a binding was lost.
fn lost(inner: &Inner, svc: &Service, channel: &Channel, error: Error) {
    inner.emit(Event::ListenerLost {
        service: svc.name.clone(),
        router: channel.router().to_string(),
        error,
    });
}

/// When serving ends (binding lost, listener dropped or task aborted): deregisters the
/// listener id and sends StateClosed on it, which the router takes as "remove the
/// terminator" (spec §4b.10).
struct UnbindOnDrop {
    channel: Channel,
    listener_id: u32,
}

impl Drop for UnbindOnDrop {
    fn drop(&mut self) {
        self.channel.deregister(self.listener_id);
        if !self.channel.is_closed() {
            self.channel.send_close_detached(self.listener_id, 1, b"");
        }
    }
}

/// One accepted dial (spec §4b steps 6–7).
struct Accept {
    inner: Arc<Inner>,
    channel: Channel,
    listener_id: u32,
    service: String,
    keys: Option<Arc<KeyPair>>,
    out: mpsc::Sender<Result<Stream>>,
}

impl Accept {
    async fn run(
        self,
        sequence: i32,
        public_key: Option<bytes::Bytes>,
        caller_id: bytes::Bytes,
        app_data: Option<bytes::Bytes>,
    ) {
        let caller = String::from_utf8_lossy(&caller_id).into_owned();
        if let Err(e) = self.accept(sequence, public_key, &caller, app_data).await {
            tracing::debug!(service = %self.service, %caller, error = %e, "dial not accepted");
        }
    }

    async fn accept(
        &self,
        sequence: i32,
        public_key: Option<bytes::Bytes>,
        caller: &str,
        app_data: Option<bytes::Bytes>,
    ) -> Result<()> {
        let session_keys = match (&self.keys, public_key) {
            (None, _) => None,
            (Some(kp), Some(pk)) => match SessionKeys::server(kp, &pk) {
                Ok(k) => Some(k),
                Err(e) => {
                    self.channel
                        .send_dial_failed(self.listener_id, sequence, b"crypto failure")
                        .await;
                    return Err(crypto_err(e));
                }
            },
            (Some(_), None) => {
                self.channel
                    .send_dial_failed(self.listener_id, sequence, b"crypto failure")
                    .await;
                return Err(Error::new(ErrorKind::Crypto, "the dialer sent no key"));
            }
        };
        let conn_id = self.inner.next_conn_id();
        let (rx, credit) = self.channel.open_stream(conn_id)?;
        let reply = self
            .channel
            .request(
                |out, seq| {
                    edge::DialSuccess {
                        conn_id: self.listener_id,
                        seq: 0,
                        reply_for: sequence,
                        new_conn_id: conn_id,
                    }
                    .encode(seq, out)
                },
                self.inner.options.request_timeout,
            )
            .await
            .and_then(|f| proto::connect_reply(&f).map_err(|e| Error::protocol(e.to_string())));
        match reply {
            Ok(ConnectReply::Connected(..)) => {
                let stream = Stream::establish(StreamParts {
                    channel: self.channel.clone(),
                    conn_id,
                    service: self.service.clone(),
                    dialer: Some(caller.to_string()),
                    app_data,
                    stickiness_token: None,
                    events: rx,
                    credit,
                    keys: session_keys,
                    context: Arc::clone(&self.inner),
                })
                .await?;
                // A full or dropped accept queue drops the stream, which closes it.
                let _ = self.out.send(Ok(stream)).await;
                Ok(())
            }
            Ok(ConnectReply::Refused(reason)) => {
                self.channel.deregister(conn_id);
                Err(Error::connection(format!(
                    "the router refused the accept: {reason}"
                )))
            }
            Err(e) => {
                self.channel.deregister(conn_id);
                Err(e)
            }
        }
    }
}
