//! The controller's operations endpoint on `metrics_listen` (`weft_ops::http`):
//! `/metrics` ([`crate::limits::Metrics`], API requests and authentications from
//! [`crate::telemetry`], and the gauges below), `/health`, and `/ready` (the store
//! answers).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use crate::controller::Controller;

/// How long the readiness check waits for the store.
const STORE_DEADLINE: Duration = Duration::from_secs(2);

/// Serves the endpoint on `listener` until the runtime stops.
pub async fn serve(ctl: Arc<Controller>, listener: tokio::net::TcpListener) {
    weft_ops::http::serve(
        listener,
        Arc::new(ControllerProbe { ctl }),
        "controller",
        weft_ops::http::Limits::default(),
    )
    .await;
}

struct ControllerProbe {
    ctl: Arc<Controller>,
}

impl weft_ops::http::Probe for ControllerProbe {
    async fn metrics(&self) -> String {
        let ctl = &self.ctl;
        let mut out = ctl.metrics.render();
        let (api_sessions, sessions, view_seq) = {
            let feed = ctl.feed.lock().await;
            let view = feed.view();
            (
                view.api_sessions().len(),
                view.sessions().len(),
                feed.store_seq(),
            )
        };
        let (local, cluster) = ctl.routers.counts();
        // What the store holds that the router view does not reflect yet (writes of
        // this controller wait for the publisher; other controllers' for the follower).
        let lag = match (ctl.store.revision().await, view_seq) {
            (Ok(head), Some(seen)) => Some((head - seen).max(0)),
            _ => None,
        };
        let gauges = [
            (
                "weft_controller_api_sessions",
                "API sessions in the router view.",
                Some(api_sessions as i64),
            ),
            (
                "weft_controller_sessions",
                "Service sessions in the router view.",
                Some(sessions as i64),
            ),
            (
                "weft_controller_routers_connected",
                "Edge routers with a control connection up to this controller.",
                Some(local as i64),
            ),
            (
                "weft_controller_routers_connected_cluster",
                "Edge routers connected to any controller sharing the store.",
                Some(cluster as i64),
            ),
            (
                "weft_controller_change_log_lag",
                "Store revisions the router view does not reflect yet.",
                lag,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }

    /// Ready while the store answers, the router control listener accepts and the
    /// change follower runs.
    async fn ready(&self) -> Result<(), String> {
        let m = &self.ctl.metrics;
        for (running, task) in [
            (&m.control_listening, "the router control listener"),
            (&m.change_follower_running, "the change follower"),
        ] {
            if !running.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(format!("{task} is not running"));
            }
        }
        match tokio::time::timeout(STORE_DEADLINE, self.ctl.store.revision()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("the store does not answer: {e}")),
            Err(_) => Err(format!(
                "the store did not answer within {STORE_DEADLINE:?}"
            )),
        }
    }
}
