//! `weft-perf reroute`: how long circuits across routers stop when a router of their
//! path dies, and that they lose nothing (issue 16's "reroute p99 ≤ 1 s with 0 bytes
//! lost").
//!
//! It starts a controller and four routers in a diamond (A dials B and C, which dial
//! D), an SDK dialer allowed on A only and a host on D only, and opens `--circuits`
//! circuits. Each carries a ping-pong of numbered 8-byte messages (the host echoes them)
//! every `--interval-ms`. Then, per round, it kills (SIGKILL) the middle router most
//! circuits cross, and times per affected circuit the kill to the first echo after it;
//! every echo must carry the next number (nothing lost, duplicated or reordered). The
//! killed router is started again and its links come back before the next round, which
//! kills the other middle router. A stream that fails or skips a number fails the run.
//!
//! A killed process's sockets are reset by its kernel, so the surviving routers learn
//! of the loss at once; a silent loss (a cut cable) is found by the link heartbeats,
//! 3 s later (docs/adr/0007-mesh.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_testkit::boot::Management;

use crate::control::{Controllers, enrolled};
use crate::revocation::start_router;

/// What to measure.
#[derive(Debug, clap::Args)]
pub struct RerouteArgs {
    /// Live circuits across the diamond.
    #[arg(long, default_value_t = 200)]
    pub circuits: usize,
    /// Routers killed, one per round (alternately the two middle routers).
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,
    /// Milliseconds between two messages of one circuit.
    #[arg(long, default_value_t = 20)]
    pub interval_ms: u64,
    /// TCP connections of each link (`[link] connections` of the dialing routers).
    #[arg(long, default_value_t = 1)]
    pub connections: u32,
}

/// What one circuit's dialer saw: when each echo arrived.
#[derive(Debug, Default)]
struct Trace {
    arrivals: Vec<Instant>,
    failed: Option<String>,
}

/// Runs the measurement and prints the figures.
pub async fn run_reroute(args: RerouteArgs) -> Result<()> {
    let ctls = Controllers::start(1, None).await?;
    let info = ctls.infos.first().context("no controller")?;
    let admin = Management::login(&info.url(), &info.ca_pem()?, &info.admin_password()?).await?;
    let control = info.control_addr.clone();
    let port = || weft_testkit::free_port();
    let d = start_router(
        &admin,
        &control,
        "rr-d",
        &format!(
            "[link]\nlisten = \"127.0.0.1:{}\"\ngroups = [\"y\"]\ndial_groups = []\n",
            port()
        ),
    )
    .await?;
    let mut middles = Vec::new();
    for name in ["rr-b", "rr-c"] {
        let config = format!(
            "[link]\nlisten = \"127.0.0.1:{}\"\ngroups = [\"x\"]\ndial_groups = [\"y\"]\nconnections = {}\n",
            port(),
            args.connections
        );
        middles.push(start_router(&admin, &control, name, &config).await?);
    }
    let a_config = format!(
        "[link]\ndial_groups = [\"x\"]\nconnections = {}\n",
        args.connections
    );
    let a = start_router(&admin, &control, "rr-a", &a_config).await?;
    wait_links(&admin, 4).await?;
    // The dialer may use A only, the host D only: every circuit crosses a middle router.
    for (name, identity, router) in [
        ("rr-dial", "#rr-client", "#rr-a"),
        ("rr-host", "#rr-host", "#rr-d"),
    ] {
        admin
            .create("edge-router-policies", json!({"name": name, "semantic": "AnyOf", "identityRoles": [identity], "edgeRouterRoles": [router]}))
            .await?;
    }
    admin
        .create("service-edge-router-policies", json!({"name": "rr-all", "semantic": "AnyOf", "serviceRoles": ["#all"], "edgeRouterRoles": ["#all"]}))
        .await?;
    admin
        .create(
            "services",
            json!({"name": "rr", "roleAttributes": ["rr"], "encryptionRequired": false}),
        )
        .await?;
    for (name, kind, identity) in [
        ("rr-dial", "Dial", "#rr-client"),
        ("rr-bind", "Bind", "#rr-host"),
    ] {
        admin
            .create("service-policies", json!({"name": name, "type": kind, "semantic": "AnyOf", "identityRoles": [identity], "serviceRoles": ["#rr"]}))
            .await?;
    }
    let host = weft_sdk::Context::new(enrolled(&admin, "rr-host").await?).await?;
    let client = weft_sdk::Context::new(enrolled(&admin, "rr-client").await?).await?;
    let listener = host.bind("rr").await?;
    tokio::spawn(async move {
        while let Ok(mut s) = listener.accept().await {
            tokio::spawn(async move {
                let mut m = [0u8; 8];
                while s.read_exact(&mut m).await.is_ok() {
                    if s.write_all(&m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traces: Vec<Arc<Mutex<Trace>>> = (0..args.circuits)
        .map(|_| Arc::new(Mutex::new(Trace::default())))
        .collect();
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let opened = Instant::now();
    let mut tasks = Vec::with_capacity(args.circuits);
    for trace in &traces {
        let mut s = client.dial("rr").await.context("dial")?;
        let (trace, stop) = (trace.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut rd, mut wr) = tokio::io::split(&mut s);
            // The writer numbers the messages; the reader checks every echo is the next.
            let writer = async {
                let mut n = 0u64;
                loop {
                    tick.tick().await;
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return std::future::pending().await;
                    }
                    n += 1;
                    wr.write_all(&n.to_be_bytes()).await?;
                }
            };
            let reader = async {
                let mut want = 1u64;
                let mut m = [0u8; 8];
                loop {
                    rd.read_exact(&mut m).await?;
                    let got = u64::from_be_bytes(m);
                    if got != want {
                        return Err(std::io::Error::other(format!(
                            "echo {got}, expected {want}"
                        )));
                    }
                    want += 1;
                    if let Ok(mut t) = trace.lock() {
                        t.arrivals.push(Instant::now());
                    }
                }
            };
            let result: std::io::Result<()> = tokio::select! {
                r = writer => r,
                r = reader => r,
            };
            if let (Err(e), Ok(mut t)) = (result, trace.lock()) {
                t.failed = Some(e.to_string());
            }
        }));
    }
    eprintln!(
        "{} circuits open in {:.1} s",
        args.circuits,
        opened.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut all = Histogram::<u64>::new(3)?;
    let mut rows = Vec::new();
    for round in 0..args.rounds {
        // The middle router most circuits cross now.
        let paths = circuit_paths(&admin).await?;
        let (index, crossing) = middles
            .iter()
            .enumerate()
            .map(|(i, r)| (i, paths.values().filter(|p| p.contains(&r.id)).count()))
            .max_by_key(|(_, n)| *n)
            .context("no middle router")?;
        let victim = &mut middles[index];
        let killed_at = Instant::now();
        victim.kill();
        // Every affected circuit gets an echo after the kill, or the round times out.
        let deadline = killed_at + Duration::from_secs(15);
        // Every circuit is timed; those the killed router did not carry resume within
        // one interval.
        let affected: Vec<usize> = (0..traces.len()).collect();
        let mut h = Histogram::<u64>::new(3)?;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let resumed: Vec<Option<Duration>> = affected
                .iter()
                .map(|i| {
                    let t = traces[*i].lock().ok()?;
                    let first = t.arrivals.iter().find(|a| **a > killed_at)?;
                    Some(first.saturating_duration_since(killed_at))
                })
                .collect();
            let failed = traces
                .iter()
                .filter_map(|t| t.lock().ok()?.failed.clone())
                .next();
            if let Some(e) = failed {
                bail!("round {round}: a circuit failed: {e}");
            }
            if resumed.iter().all(Option::is_some) {
                for d in resumed.into_iter().flatten() {
                    h.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))?;
                }
                break;
            }
            if Instant::now() > deadline {
                let waiting = resumed.iter().filter(|r| r.is_none()).count();
                bail!("round {round}: {waiting} circuits did not resume within 15 s");
            }
        }
        // Circuits the killed router did not carry resume at once; the figures are of
        // those it carried (the largest interruptions).
        let ms = |us: u64| us as f64 / 1000.0;
        rows.push(format!(
            "| {} | {crossing} | {:.1} | {:.1} | {:.1} |",
            round + 1,
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
        ));
        all.add(&h)?;
        victim.restart()?;
        wait_links(&admin, 4).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The writers stop; the last echoes come back; then the circuits are dropped.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(interval * 5 + Duration::from_millis(200)).await;
    for task in &tasks {
        task.abort();
    }
    let mut echoes = 0usize;
    for trace in &traces {
        let t = trace
            .lock()
            .map_err(|_| anyhow::anyhow!("a trace lock was poisoned"))?;
        if let Some(e) = &t.failed {
            bail!("a circuit failed: {e}");
        }
        echoes += t.arrivals.len();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    println!("| round | circuits on the killed router | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    println!(
        "| all | {} circuit-kills | {:.1} | {:.1} | {:.1} |",
        all.len(),
        ms(all.value_at_quantile(0.5)),
        ms(all.value_at_quantile(0.99)),
        ms(all.max()),
    );
    println!(
        "\n{} circuits, {echoes} echoes, every one the next in its circuit (0 lost, duplicated or reordered)",
        args.circuits
    );
    drop((a, d, middles));
    drop(ctls);
    Ok(())
}

/// The controller's circuits: id → the routers of its path.
async fn circuit_paths(admin: &Management) -> Result<HashMap<String, Vec<String>>> {
    let mut out = HashMap::new();
    loop {
        let v: Value = admin
            .get(&format!("circuits?limit=500&offset={}", out.len()))
            .await?;
        let page: Vec<(String, Vec<String>)> = v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let id = c["id"].as_str()?.to_owned();
                let path = c["path"]
                    .as_array()?
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect();
                Some((id, path))
            })
            .collect();
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

/// Waits until the controller lists `n` links up.
async fn wait_links(admin: &Management, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = admin.get("links").await?;
        let up = v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["state"] == "up")
            .count();
        if up >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{up} of {n} links up after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
