//! The router's I/O backends compared: the same Weft path (service without
//! end-to-end encryption) through a router on io_uring and through one on epoll,
//! alternating: 1-stream throughput with router CPU per GB, ping-pong latency and
//! setup rate. Skipped, with the reason, where io_uring is unavailable.

use super::Ctx;
use super::{bulk, latency};
use crate::load::{ping_pong, setup_rate};
use crate::paths::{WEFT, WEFT_EPOLL};
use crate::report::ScenarioReport;

/// `io`.
pub async fn run(ctx: &Ctx, uring_unavailable: Option<&str>) -> ScenarioReport {
    let mut s = ScenarioReport::new(
        "io",
        "Router I/O backend: io_uring (weft) vs epoll (weft-epoll)",
        WEFT_EPOLL,
        &[
            ("gbps", "1-stream throughput", "Gbit/s", true),
            ("cpu_key_per_gb", "router CPU per GB", "s/GB", false),
            ("p50", "ping-pong p50", "µs", false),
            ("p99", "ping-pong p99", "µs", false),
            ("rate", "setups", "/s", true),
        ],
    );
    if let Some(why) = uring_unavailable {
        s.notes.push(format!(
            "io_uring is not available on this host, so the main router runs on epoll and \
             the comparison is skipped: {why}"
        ));
        s.finish();
        return s;
    }
    let paths: Vec<_> = [WEFT, WEFT_EPOLL]
        .iter()
        .filter_map(|n| ctx.path(n).cloned())
        .collect();
    if paths.len() < 2 {
        s.notes
            .push("the epoll router path is missing; comparison skipped".into());
        s.finish();
        return s;
    }
    for round in 0..ctx.settings.rounds {
        for path in &paths {
            ctx.step(&format!(
                "io: bulk through {} (round {})",
                path.name,
                round + 1
            ));
            match bulk::measure(ctx, path, 1, ctx.settings.bulk_seconds).await {
                Ok(m) => {
                    s.record(&path.name, "gbps", m.iperf.bits_per_second / 1e9);
                    if m.gb() > 0.0 {
                        s.record(&path.name, "cpu_key_per_gb", m.key_cpu / m.gb());
                    }
                }
                Err(e) => ctx.failed(&mut s, &path.name, round, &e),
            }
            ctx.tick();
            ctx.step(&format!(
                "io: latency through {} (round {})",
                path.name,
                round + 1
            ));
            match ping_pong(path.echo, latency::MESSAGE, ctx.settings.latency).await {
                Ok(h) => {
                    s.record(&path.name, "p50", h.value_at_quantile(0.5) as f64 / 1e3);
                    s.record(&path.name, "p99", h.value_at_quantile(0.99) as f64 / 1e3);
                }
                Err(e) => ctx.failed(&mut s, &path.name, round, &e),
            }
            ctx.tick();
            ctx.step(&format!(
                "io: setup through {} (round {})",
                path.name,
                round + 1
            ));
            match setup_rate(
                path.echo,
                ctx.settings.setup_concurrency,
                ctx.settings.setup,
            )
            .await
            {
                Ok(r) => s.record(&path.name, "rate", r.ok as f64 / r.seconds),
                Err(e) => ctx.failed(&mut s, &path.name, round, &e),
            }
            ctx.tick();
        }
    }
    s.notes.push(
        "both routers have one shard and the same configuration; only `--io` differs. \
         Ratios are io_uring / epoll."
            .into(),
    );
    s.finish();
    s
}
