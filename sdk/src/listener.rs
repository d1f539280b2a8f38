//! [`Listener`]: hosting a service (Bind, then a stream per accepted Dial).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use weft_wire::edge;

use crate::context::{Inner, crypto_err};
use crate::controller::{Service, SessionKind};
use crate::crypto::{KeyPair, SessionKeys};
use crate::edge::channel::{Channel, ListenerEvent, Route};
use crate::edge::proto::{self, ConnectReply};
use crate::error::{Error, ErrorKind, Result};
use crate::options::BindOptions;
use crate::stream::{Stream, StreamParts};

/// Accepted streams waiting for [`Listener::accept`].
const ACCEPT_QUEUE: usize = 128;
/// Attempts of the first bind before [`crate::Context::bind`] gives up.
const FIRST_BIND_ATTEMPTS: u32 = 3;
/// Longest wait between rebind attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A bound service: yields a [`Stream`] for each dial. Dropping it unbinds.
///
/// Accept with [`Listener::accept`] (from any number of tasks sharing the listener,
/// e.g. in an `Arc`), or use it as a [`futures_core::Stream`] of accepted streams. With
/// the `axum` feature, `axum::serve(listener, app)` serves an axum app on the service.
#[derive(Debug)]
pub struct Listener {
    service: String,
    router: String,
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
                        identity: stream.peer().to_owned(),
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
    let mut bound = None;
    for attempt in 0..FIRST_BIND_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        match bind_once(&inner, &svc, &opts).await {
            Ok(b) => {
                bound = Some(b);
                break;
            }
            Err(e) if fatal(&e) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    let Some(bound) = bound else {
        return Err(last.unwrap_or_else(|| Error::new(ErrorKind::NoEdgeRouter, "bind failed")));
    };
    let router = bound.channel.router().to_string();
    let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
    let service = svc.name.clone();
    #[cfg(feature = "axum")]
    let identity = inner.name.clone();
    let task = tokio::spawn(keep_bound(inner, svc, opts, bound, tx));
    Ok(Listener {
        service,
        router,
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

async fn bind_once(inner: &Arc<Inner>, svc: &Service, opts: &BindOptions) -> Result<Bound> {
    let session = inner.create_session(svc, SessionKind::Bind).await?;
    let channels = inner.channels_for(&session.edge_routers).await?;
    let mut last = None;
    for channel in channels {
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
            Ok(ConnectReply::Connected(_)) => {
                tracing::debug!(service = %svc.name, router = %channel.router(), "bound");
                return Ok(Bound {
                    channel,
                    listener_id,
                    keys,
                    events: rx,
                });
            }
            Ok(ConnectReply::Refused(reason)) => {
                channel.deregister(listener_id);
                last = Some(Error::connection(format!(
                    "edge router {} refused to bind {}: {reason}",
                    channel.router(),
                    svc.name
                )));
            }
            Err(e) => {
                channel.deregister(listener_id);
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::new(ErrorKind::NoEdgeRouter, "no edge router to bind on")))
}

/// Serves the binding; when the router drops it, binds again (new session, maybe
/// another router) with backoff, until the listener is dropped or Bind is refused for
/// good.
async fn keep_bound(
    inner: Arc<Inner>,
    svc: Service,
    opts: BindOptions,
    mut bound: Bound,
    out: mpsc::Sender<Result<Stream>>,
) {
    let mut failures = 0u32;
    loop {
        serve(&inner, &svc, &mut bound, &out).await;
        if out.is_closed() {
            return;
        }
        loop {
            let wait = Duration::from_millis(250u64 << failures.min(6)).min(MAX_BACKOFF);
            tokio::time::sleep(wait).await;
            match bind_once(&inner, &svc, &opts).await {
                Ok(b) => {
                    bound = b;
                    failures = 0;
                    break;
                }
                Err(e) if fatal(&e) => {
                    let _ = out.send(Err(e)).await;
                    return;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(service = %svc.name, error = %e, "rebind failed; retrying");
                }
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
                    tracing::info!(service = %svc.name, router = %channel.router(),
                        reason = %String::from_utf8_lossy(&reason), "binding removed by the router");
                    return;
                }
                None => {
                    tracing::info!(service = %svc.name, router = %channel.router(),
                        error = %channel.closed_error(), "binding lost with its edge connection");
                    return;
                }
            },
            () = out.closed() => return,
        }
    }
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
            Ok(ConnectReply::Connected(_)) => {
                let stream = Stream::establish(StreamParts {
                    channel: self.channel.clone(),
                    conn_id,
                    service: self.service.clone(),
                    peer: caller.to_string(),
                    app_data,
                    events: rx,
                    credit,
                    keys: session_keys,
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
