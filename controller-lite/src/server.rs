//! HTTPS listener: a tokio-rustls accept loop serving the axum router over
//! hyper-util, inserting each connection's peer address and client
//! certificates as a request extension ([`ConnInfo`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::Config;
use crate::controller::{ADDR_FILE, Controller, StartError};

/// Per-connection facts available to handlers.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Remote address.
    pub peer_addr: SocketAddr,
    /// Client certificate chain presented in the TLS handshake (leaf first).
    pub certs: Arc<Vec<CertificateDer<'static>>>,
}

/// Starts the controller in `data_dir` and serves until `shutdown` resolves.
/// The bound address is logged and written to `DATA_DIR/controller.addr`.
pub async fn run(
    data_dir: &Path,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let public_url = format!("https://{}:{}", config.advertised_host, addr.port());
    let ctl = Arc::new(Controller::open(data_dir, config, public_url)?);
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(ctl.pki.server_tls_config()?));
    let app = crate::api::router(ctl.clone());
    let control = TcpListener::bind(ctl.config.control_listen).await?;
    let control_addr = control.local_addr()?;
    let control_tls = tokio_rustls::TlsAcceptor::from(Arc::new(ctl.pki.control_tls_config()?));
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
    std::fs::write(data_dir.join(ADDR_FILE), format!("{addr}\n"))?;
    tracing::info!(%addr, url = %ctl.public_url, "weft-controller listening");
    println!("listening on {addr}");
    tokio::spawn(sweep_idle_sessions(ctl.clone()));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer_addr) = tokio::select! {
            res = listener.accept() => match res {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let tls = tls.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer_addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
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
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(info.clone());
                    app.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // Bound how long a client may take to send request headers.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30));
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(%peer_addr, error = %e, "connection ended with error");
            }
        });
    }
    Ok(())
}

/// Every few seconds: removes idle API sessions (and their sessions) and pushes the
/// removals and refreshed expiries to routers.
async fn sweep_idle_sessions(ctl: Arc<Controller>) {
    let secs = (ctl.config.api_session_timeout_secs / 4).clamp(1, 5);
    let mut tick = tokio::time::interval(Duration::from_secs(secs.unsigned_abs()));
    loop {
        tick.tick().await;
        ctl.notify_routers();
    }
}
