//! Circuit setup rate: connect, write one byte, read its echo, close — per second,
//! from a few concurrent loops. On a Weft path every connection is a new circuit
//! (a dial through the router to the hosting endpoint, which connects to the echo
//! server); on socat a fork per connection; on stunnel a TLS handshake.

use super::Ctx;
use crate::load::setup_rate;
use crate::paths::SOCAT1;
use crate::report::ScenarioReport;

/// Records one setup-rate result.
pub fn record(s: &mut ScenarioReport, path: &str, r: &crate::load::SetupResult) {
    s.record(path, "rate", r.ok as f64 / r.seconds);
    if !r.hist.is_empty() {
        s.record(path, "p50", r.hist.value_at_quantile(0.5) as f64 / 1e3);
        s.record(path, "p99", r.hist.value_at_quantile(0.99) as f64 / 1e3);
    }
    s.record(path, "failed", r.failed as f64);
}

/// `setup`.
pub async fn run(ctx: &Ctx) -> ScenarioReport {
    let c = ctx.settings.setup_concurrency;
    let mut s = ScenarioReport::new(
        "setup",
        &format!("Circuit setup rate: connect → first byte echoed ({c} concurrent loops)"),
        SOCAT1,
        &[
            ("rate", "setups", "/s", true),
            ("p50", "setup p50", "µs", false),
            ("p99", "setup p99", "µs", false),
            ("failed", "failed", "count", false),
        ],
    );
    for round in 0..ctx.settings.rounds {
        for path in ctx.main_paths() {
            ctx.step(&format!("setup: {} (round {})", path.name, round + 1));
            match setup_rate(path.echo, c, ctx.settings.setup).await {
                Ok(r) => record(&mut s, &path.name, &r),
                Err(e) => ctx.failed(&mut s, &path.name, round, &e),
            }
            ctx.tick();
            // Let sockets of the last path close before the next one.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }
    s.finish();
    s
}
