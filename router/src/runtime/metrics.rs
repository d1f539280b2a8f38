//! The router's metrics: what the operations endpoint (`weft_ops::http`: `/metrics`,
//! `/health`, `/ready`) serves on `metrics_listen`. Counters are asked of every shard by
//! message (no shared state) and rendered as Prometheus text.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{ShardMsg, ShardStats};
use crate::control::ControlStats;

/// Deadline of each shard's answer.
const DEADLINE: Duration = Duration::from_secs(5);

/// Serves the operations endpoint until the runtime stops.
pub(super) async fn serve(
    listener: std::net::TcpListener,
    shards: Vec<mpsc::UnboundedSender<ShardMsg>>,
    control: Option<Arc<ControlStats>>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register the metrics listener");
            return;
        }
    };
    let probe = Arc::new(RouterProbe { shards, control });
    weft_ops::http::serve(listener, probe, "router", weft_ops::http::Limits::default()).await;
}

/// The router as the operations endpoint sees it.
struct RouterProbe {
    shards: Vec<mpsc::UnboundedSender<ShardMsg>>,
    control: Option<Arc<ControlStats>>,
}

impl weft_ops::http::Probe for RouterProbe {
    async fn metrics(&self) -> String {
        let mut body = render(&collect(&self.shards).await);
        if let Some(control) = &self.control {
            render_control(&mut body, control);
        }
        body
    }

    /// Ready when every shard answers and the control channel is up (the router
    /// cannot learn of sessions or revocations without it).
    async fn ready(&self) -> Result<(), String> {
        let answered = collect(&self.shards).await.len();
        if answered < self.shards.len() {
            return Err(format!(
                "{} of {} shards did not answer",
                self.shards.len() - answered,
                self.shards.len()
            ));
        }
        match &self.control {
            Some(control) if control.connected().is_none() => {
                Err("the control channel to the controller is down".into())
            }
            _ => Ok(()),
        }
    }
}

/// Asks every shard for its counters; a shard that does not answer is left out.
async fn collect(shards: &[mpsc::UnboundedSender<ShardMsg>]) -> Vec<ShardStats> {
    let mut answers = Vec::with_capacity(shards.len());
    for tx in shards {
        let (reply, answer) = oneshot::channel();
        if tx.send(ShardMsg::Stats(reply)).is_ok() {
            answers.push(answer);
        }
    }
    let mut stats = Vec::with_capacity(answers.len());
    for answer in answers {
        if let Ok(Ok(s)) = tokio::time::timeout(DEADLINE, answer).await {
            stats.push(s);
        }
    }
    stats
}

/// Prometheus text exposition of the shards' counters, one series per shard.
pub(super) fn render(stats: &[ShardStats]) -> String {
    type Metric = (
        &'static str,
        &'static str,
        &'static str,
        fn(&ShardStats) -> u64,
    );
    const METRICS: &[Metric] = &[
        (
            "weft_router_connections",
            "gauge",
            "Open edge connections.",
            |s| s.connections as u64,
        ),
        ("weft_router_circuits", "gauge", "Open circuits.", |s| {
            s.circuits as u64
        }),
        (
            "weft_router_terminators",
            "gauge",
            "Terminators hosted.",
            |s| s.terminators as u64,
        ),
        (
            "weft_router_connections_accepted_total",
            "counter",
            "TLS connections accepted.",
            |s| s.accepted,
        ),
        (
            "weft_router_handshakes_failed_total",
            "counter",
            "TLS handshakes that failed or timed out.",
            |s| s.handshakes_failed,
        ),
        (
            "weft_router_circuits_opened_total",
            "counter",
            "Circuits established.",
            |s| s.forward.circuits_opened,
        ),
        (
            "weft_router_dials_failed_total",
            "counter",
            "Dials that failed.",
            |s| s.forward.dials_failed,
        ),
        (
            "weft_router_bytes_relayed_total",
            "counter",
            "Payload bytes relayed.",
            |s| s.forward.bytes_relayed,
        ),
        (
            "weft_router_frames_relayed_total",
            "counter",
            "Data frames relayed.",
            |s| s.forward.frames_relayed,
        ),
        (
            "weft_router_state_revision",
            "gauge",
            "Controller state revision the shard holds.",
            |s| s.revision,
        ),
        (
            "weft_router_state_services",
            "gauge",
            "Services the controller's state grants this router (service edge router policies).",
            |s| s.services,
        ),
        (
            "weft_router_connections_refused_total",
            "counter",
            "Connections refused by the per-shard connection cap.",
            |s| s.refused,
        ),
        (
            "weft_router_circuits_cross_shard_total",
            "counter",
            "Circuits established with the host on another shard (counted by the dialer's shard).",
            |s| s.forward.circuits_cross,
        ),
        (
            "weft_router_frames_cross_shard_total",
            "counter",
            "Data frames handed to another shard.",
            |s| s.forward.frames_cross,
        ),
        (
            "weft_router_pauses_total",
            "counter",
            "Times a connection was paused by a full window.",
            |s| s.forward.pauses,
        ),
        (
            "weft_router_reply_budget_pauses_total",
            "counter",
            "Times a connection was not read because the router's answers to it filled its reply budget.",
            |s| s.forward.reply_budget_pauses,
        ),
        (
            "weft_router_identity_budget_pauses_total",
            "counter",
            "Times an identity's edge connections stopped being read because together they made a shard hold more than [forwarder] identity_budget_bytes.",
            |s| s.forward.identity_budget_pauses,
        ),
        (
            "weft_router_held_bytes",
            "gauge",
            "What the identities' edge connections make the shard hold (payload and each frame's cost).",
            |s| s.forward.held_bytes,
        ),
        (
            "weft_router_refused_per_api_session_total",
            "counter",
            "Edge connections closed because their API session held the most allowed on the shard.",
            |s| s.forward.refused_per_api_session,
        ),
        (
            "weft_router_circuits_rerouted_total",
            "counter",
            "Circuits across routers moved to a new path after theirs broke (counted at each end).",
            |s| s.forward.circuits_rerouted,
        ),
        (
            "weft_router_reroutes_failed_total",
            "counter",
            "Circuits across routers whose path broke and that found no other in time.",
            |s| s.forward.reroutes_failed,
        ),
        (
            "weft_router_links_up_total",
            "counter",
            "Links to other routers that came up (their first connection's hello succeeded).",
            |s| s.forward.links_up,
        ),
        (
            "weft_router_links_lost_total",
            "counter",
            "Links to other routers that went down (their last connection was lost).",
            |s| s.forward.links_lost,
        ),
        (
            "weft_router_link_circuits_moved_total",
            "counter",
            "Circuits moved to the connection of a link the peer router started them on.",
            |s| s.forward.link_circuits_moved,
        ),
        (
            "weft_router_circuits_ingress_total",
            "counter",
            "Circuits across routers set up with this router as the ingress.",
            |s| s.forward.circuits_ingress,
        ),
        (
            "weft_router_circuits_transit_total",
            "counter",
            "Circuits across routers this router carries between two links.",
            |s| s.forward.circuits_transit,
        ),
        (
            "weft_router_circuits_egress_total",
            "counter",
            "Circuits across routers set up with this router as the egress.",
            |s| s.forward.circuits_egress,
        ),
        (
            "weft_router_link_bytes_sent_total",
            "counter",
            "Payload bytes sent on links to other routers.",
            |s| s.forward.link_bytes_sent,
        ),
        (
            "weft_router_link_credit_stalls_total",
            "counter",
            "Times payload for a link waited for the link's credit for its circuit.",
            |s| s.forward.link_credit_stalls,
        ),
        (
            "weft_router_links_refused_total",
            "counter",
            "Incoming links refused (a certificate the controller does not vouch for, a failed handshake, too many handshakes).",
            |s| s.links_refused,
        ),
        (
            "weft_router_link_dial_failures_total",
            "counter",
            "Link dials that failed before the link came up.",
            |s| s.link_dial_failures,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in METRICS {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in stats {
            let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, value(s));
        }
    }
    // Dial setup latency (Connect received → StateConnected sent) as a summary.
    let name = "weft_router_dial_setup_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Dial setup latency, Connect to StateConnected.\n# TYPE {name} summary"
    );
    for s in stats {
        let d = &s.dial_setup;
        for (q, us) in [
            ("0.5", d.p50_us),
            ("0.9", d.p90_us),
            ("0.99", d.p99_us),
            ("1", d.max_us),
        ] {
            let _ = writeln!(
                out,
                "{name}{{shard=\"{}\",quantile=\"{q}\"}} {}",
                s.shard,
                us as f64 / 1e6
            );
        }
        let _ = writeln!(
            out,
            "{name}_sum{{shard=\"{}\"}} {}",
            s.shard,
            d.sum_us as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{shard=\"{}\"}} {}", s.shard, d.count);
    }
    render_links(&mut out, stats);
    out
}

/// The control channel: failovers between controllers, connections, and which
/// controller it is up on (a gauge of 1 labelled with its address; 0 without a label
/// while it is down).
pub(super) fn render_control(out: &mut String, control: &ControlStats) {
    // Writing to a String cannot fail.
    let name = "weft_router_control_failovers_total";
    let _ = writeln!(
        out,
        "# HELP {name} Control connections that came up on another controller than the one before.\n\
         # TYPE {name} counter\n{name} {}",
        control.failovers()
    );
    let name = "weft_router_control_connections_total";
    let _ = writeln!(
        out,
        "# HELP {name} Control connections whose hello the controller acknowledged.\n\
         # TYPE {name} counter\n{name} {}",
        control.connections()
    );
    let name = "weft_router_control_channels_up";
    let _ = writeln!(
        out,
        "# HELP {name} Control connections up: the primary and the mesh-only ones to the other controllers.\n\
         # TYPE {name} gauge\n{name} {}",
        control.channels_up()
    );
    let name = "weft_router_control_connected";
    let _ = writeln!(
        out,
        "# HELP {name} Whether the primary control connection is up, labelled with its controller's address.\n\
         # TYPE {name} gauge"
    );
    match control.connected() {
        Some(address) => {
            let address = address.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{controller=\"{address}\"}} 1");
        }
        None => {
            let _ = writeln!(out, "{name} 0");
        }
    }
}

/// Per link (once its hello succeeded): latency and circuits, frames and payload bytes
/// each way, credit waits, and the heartbeat round trips as a Prometheus histogram.
fn render_links(out: &mut String, stats: &[ShardStats]) {
    type Counter = (
        &'static str,
        &'static str,
        fn(&crate::forward::LinkInfo) -> u64,
    );
    const COUNTERS: &[Counter] = &[
        (
            "weft_router_link_tx_frames_total",
            "Frames sent on a link.",
            |l| l.traffic.frames_sent,
        ),
        (
            "weft_router_link_rx_frames_total",
            "Frames received on a link.",
            |l| l.traffic.frames_received,
        ),
        (
            "weft_router_link_tx_bytes_total",
            "Circuit payload bytes sent on a link.",
            |l| l.traffic.bytes_sent,
        ),
        (
            "weft_router_link_rx_bytes_total",
            "Circuit payload bytes received on a link.",
            |l| l.traffic.bytes_received,
        ),
        (
            "weft_router_link_credit_waits_total",
            "Times payload of a circuit waited for a link's credit.",
            |l| l.credit_stalls,
        ),
    ];
    let links: Vec<(&crate::forward::LinkInfo, String)> = stats
        .iter()
        .flat_map(|s| &s.links)
        .filter_map(|l| {
            let peer = l.peer.as_ref()?.replace(['"', '\\', '\n'], "_");
            Some((
                l,
                format!(
                    "peer=\"{peer}\",dialed=\"{}\",connection=\"{}\",link=\"{}\"",
                    l.dialed, l.connection, l.key.0
                ),
            ))
        })
        .collect();
    let name = "weft_router_link_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Smoothed round trip of a link to another router (heartbeats).\n# TYPE {name} gauge"
    );
    for (l, labels) in &links {
        if let Some(d) = l.latency {
            let _ = writeln!(out, "{name}{{{labels}}} {}", d.as_secs_f64());
        }
    }
    let name = "weft_router_link_circuits";
    let _ = writeln!(
        out,
        "# HELP {name} Circuits a link to another router carries.\n# TYPE {name} gauge"
    );
    for (l, labels) in &links {
        let _ = writeln!(out, "{name}{{{labels}}} {}", l.circuits);
    }
    for (name, help, value) in COUNTERS {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (l, labels) in &links {
            let _ = writeln!(out, "{name}{{{labels}}} {}", value(l));
        }
    }
    let name = "weft_router_link_rtt_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Heartbeat round trips of a link.\n# TYPE {name} histogram"
    );
    for (l, labels) in &links {
        let (counts, sum_us) = l.rtt;
        let mut cumulative = 0;
        for (i, count) in counts.iter().enumerate() {
            cumulative += count;
            let le = crate::link::health::RTT_BUCKETS_US
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |us| (*us as f64 / 1e6).to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_metrics_count_failovers_and_name_the_controller() {
        let stats = ControlStats::default();
        let mut text = String::new();
        render_control(&mut text, &stats);
        assert!(text.contains("# TYPE weft_router_control_failovers_total counter\n"));
        assert!(text.contains("\nweft_router_control_failovers_total 0\n"));
        assert!(text.contains("\nweft_router_control_connected 0\n"));
        assert!(text.contains("\nweft_router_control_channels_up 0\n"));
        assert!(!text.contains("controller=\""));
        stats.set_connected(Some("ctrl-b:6262"));
        let mut text = String::new();
        render_control(&mut text, &stats);
        assert!(text.contains("\nweft_router_control_connected{controller=\"ctrl-b:6262\"} 1\n"));
    }
    use crate::forward::{ConnKey, ForwardStats};

    #[test]
    fn renders_one_series_per_shard() {
        let stats = [
            ShardStats {
                shard: 0,
                connections: 3,
                forward: ForwardStats {
                    bytes_relayed: 42,
                    ..ForwardStats::default()
                },
                ..ShardStats::default()
            },
            ShardStats {
                shard: 1,
                ..ShardStats::default()
            },
        ];
        let text = render(&stats);
        assert!(text.contains("# TYPE weft_router_connections gauge\n"));
        assert!(text.contains("weft_router_connections{shard=\"0\"} 3\n"));
        assert!(text.contains("weft_router_bytes_relayed_total{shard=\"0\"} 42\n"));
        assert!(text.contains("weft_router_bytes_relayed_total{shard=\"1\"} 0\n"));
    }

    #[test]
    fn renders_each_links_traffic_and_round_trips() {
        let link = crate::forward::LinkInfo {
            connection: 0,
            key: ConnKey(9),
            peer: Some("r\"2".into()),
            dialed: true,
            latency: Some(Duration::from_micros(800)),
            circuits: 2,
            traffic: crate::link::session::Traffic {
                frames_received: 10,
                bytes_received: 1000,
                frames_sent: 20,
                bytes_sent: 2000,
            },
            credit_stalls: 3,
            rtt: ([1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1], 5_000),
        };
        let unnamed = crate::forward::LinkInfo { peer: None, ..link };
        let stats = [ShardStats {
            links: vec![link, unnamed],
            ..ShardStats::default()
        }];
        let text = render(&stats);
        let labels = "peer=\"r_2\",dialed=\"true\",connection=\"0\",link=\"9\"";
        for line in [
            format!("weft_router_link_tx_bytes_total{{{labels}}} 2000"),
            format!("weft_router_link_credit_waits_total{{{labels}}} 3"),
            format!("weft_router_link_rx_frames_total{{{labels}}} 10"),
            format!("weft_router_link_rtt_seconds_bucket{{{labels},le=\"0.00025\"}} 1"),
            format!("weft_router_link_rtt_seconds_bucket{{{labels},le=\"0.0005\"}} 3"),
            format!("weft_router_link_rtt_seconds_bucket{{{labels},le=\"+Inf\"}} 4"),
            format!("weft_router_link_rtt_seconds_count{{{labels}}} 4"),
            format!("weft_router_link_rtt_seconds_sum{{{labels}}} 0.005"),
            format!("weft_router_link_circuits{{{labels}}} 2"),
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "missing {line}:\n{text}"
            );
        }
        // A link still in its hello has no series; every name has one TYPE line.
        assert_eq!(
            text.matches("link=\"9\"").count(),
            text.matches(labels).count()
        );
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let all = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), all, "a metric name is declared twice");
    }

    #[test]
    fn renders_the_mesh_counters() {
        let stats = [
            ShardStats {
                shard: 0,
                forward: ForwardStats {
                    links_up: 2,
                    links_lost: 1,
                    circuits_ingress: 3,
                    circuits_transit: 4,
                    circuits_egress: 5,
                    link_bytes_sent: 6_000_000,
                    link_credit_stalls: 7,
                    link_circuits_moved: 8,
                    ..ForwardStats::default()
                },
                ..ShardStats::default()
            },
            ShardStats {
                shard: 1,
                ..ShardStats::default()
            },
        ];
        let text = render(&stats);
        for (name, value) in [
            ("weft_router_links_up_total", 2),
            ("weft_router_links_lost_total", 1),
            ("weft_router_link_circuits_moved_total", 8),
            ("weft_router_circuits_ingress_total", 3),
            ("weft_router_circuits_transit_total", 4),
            ("weft_router_circuits_egress_total", 5),
            ("weft_router_link_bytes_sent_total", 6_000_000),
            ("weft_router_link_credit_stalls_total", 7),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} counter\n")),
                "{name} has no TYPE line:\n{text}"
            );
            assert!(
                text.contains(&format!("{name}{{shard=\"0\"}} {value}\n")),
                "{name} on shard 0:\n{text}"
            );
            assert!(
                text.contains(&format!("{name}{{shard=\"1\"}} 0\n")),
                "{name} on shard 1:\n{text}"
            );
        }
    }
}
