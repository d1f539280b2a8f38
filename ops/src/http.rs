//! The operations endpoint of a Weft process, on plain HTTP (it carries no secrets;
//! bind it to a management address): `GET /metrics` (Prometheus text: the process's
//! own series, then [`crate::process`]'s), `GET /health` (liveness: the process
//! answers) and `GET /ready` (readiness: [`Probe::ready`], 503 with the reason when not).
//!
//! What a peer can make it hold is bounded: at most [`Limits::max_connections`]
//! connections (more are closed at once and counted in
//! `weft_ops_connections_refused_total`), a request head of 8 KiB within
//! [`Limits::header_timeout`], a connection for at most [`Limits::connection_lifetime`].

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Largest request head read (hyper's smallest allowed buffer); a longer one is
/// answered 431 and the connection closed.
const MAX_REQUEST_HEAD: usize = 8192;

/// What the endpoint asks of its process.
pub trait Probe: Send + Sync + 'static {
    /// The process's own metrics, in Prometheus text.
    fn metrics(&self) -> impl Future<Output = String> + Send;
    /// `Ok` when the process can do its work; the reason when it cannot.
    fn ready(&self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Bounds of the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once (default 32).
    pub max_connections: usize,
    /// Time for a request head to arrive (default 5 s).
    pub header_timeout: Duration,
    /// Longest life of one connection, keep-alive included (default 30 s).
    pub connection_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 32,
            header_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(30),
        }
    }
}

struct Endpoint<P> {
    probe: Arc<P>,
    component: &'static str,
    /// Connections closed at once because [`Limits::max_connections`] were open
    /// (`weft_ops_connections_refused_total`).
    refused: AtomicU64,
}

/// Serves the endpoint on `listener` until the runtime stops; `component` names the
/// process in `weft_build_info` ("controller", "router").
pub async fn serve<P: Probe>(
    listener: TcpListener,
    probe: Arc<P>,
    component: &'static str,
    limits: Limits,
) {
    let endpoint = Arc::new(Endpoint {
        probe,
        component,
        refused: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/metrics", get(metrics::<P>))
        .route("/", get(metrics::<P>))
        .route("/health", get(health))
        .route("/ready", get(ready::<P>))
        .with_state(endpoint.clone());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: let some close.
                tracing::warn!(error = %e, "operations endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            endpoint.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(MAX_REQUEST_HEAD);
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(limits.connection_lifetime, conn).await;
            drop(slot);
        });
    }
}

async fn metrics<P: Probe>(State(e): State<Arc<Endpoint<P>>>) -> impl IntoResponse {
    let mut body = e.probe.metrics().await;
    crate::process::render(&mut body, e.component);
    // Writing to a String cannot fail.
    let _ = writeln!(
        body,
        "# HELP weft_ops_connections_refused_total Connections to this endpoint closed at \
         once because too many were open.\n# TYPE weft_ops_connections_refused_total counter\n\
         weft_ops_connections_refused_total {}",
        e.refused.load(Ordering::Relaxed)
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready<P: Probe>(State(e): State<Arc<Endpoint<P>>>) -> impl IntoResponse {
    match e.probe.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    struct Fake {
        ready: AtomicBool,
    }

    impl Probe for Fake {
        async fn metrics(&self) -> String {
            "# TYPE fake_total counter\nfake_total 7\n".to_owned()
        }
        async fn ready(&self) -> Result<(), String> {
            match self.ready.load(Ordering::Relaxed) {
                true => Ok(()),
                false => Err("control channel down".into()),
            }
        }
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    async fn start(limits: Limits) -> (std::net::SocketAddr, Arc<Fake>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Arc::new(Fake {
            ready: AtomicBool::new(false),
        });
        tokio::spawn(serve(listener, fake.clone(), "test", limits));
        (addr, fake)
    }

    #[tokio::test]
    async fn metrics_health_and_readiness() {
        let (addr, fake) = start(Limits::default()).await;
        let m = get(addr, "/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("text/plain; version=0.0.4"), "{m}");
        assert!(m.contains("\nfake_total 7\n"), "{m}");
        assert!(m.contains("weft_build_info{component=\"test\""), "{m}");
        assert!(get(addr, "/health").await.starts_with("HTTP/1.1 200"));
        let r = get(addr, "/ready").await;
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.contains("not ready: control channel down"), "{r}");
        fake.ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/ready").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    }

    #[tokio::test]
    async fn idle_connections_are_bounded_and_time_out() {
        let limits = Limits {
            max_connections: 2,
            header_timeout: Duration::from_millis(300),
            connection_lifetime: Duration::from_secs(5),
        };
        let (addr, _) = start(limits).await;
        // Two silent connections take both slots; a third is closed at once.
        let mut idle = Vec::new();
        for _ in 0..2 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf))
            .await
            .expect("the third connection is closed at once");
        assert_eq!(n.unwrap_or(0), 0);
        // (The refusal is counted once a slot is free to serve the scrape.)
        // The silent ones are closed after the header timeout; then the endpoint answers.
        for mut s in idle {
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
                .await
                .expect("a silent connection is closed after the header timeout");
            assert!(n.is_ok());
        }
        assert!(get(addr, "/health").await.starts_with("HTTP/1.1 200"));
        let m = get(addr, "/metrics").await;
        assert!(
            m.contains("\nweft_ops_connections_refused_total 1\n"),
            "{m}"
        );
    }
}
