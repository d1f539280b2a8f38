//! `weft-perf revocation`: how fast one revocation closes many live circuits, on one
//! controller or across controllers (issue 15's "revocation p50/p99 across controllers
//! at 10,000 circuits").
//!
//! It starts the controllers (on PostgreSQL a temporary cluster made with `cluster
//! init`/`join`), one router that follows the **last** controller, a hosting and a
//! dialing SDK context, opens `--circuits` circuits (each dialer stream echoed once so
//! it is known to be up), then deletes the Dial policy on the **first** controller and
//! times, per circuit, the delete request to the dialer seeing its stream fail. A clean
//! end-of-stream instead of an error counts as a failure of the measurement.

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use weft_testkit::boot::{self, Management};
use weft_testkit::postgres::Postgres;

use crate::control::{Controllers, allow_all_routers, enrolled, sibling_bin};

/// What to measure.
#[derive(Debug, clap::Args)]
pub struct RevocationArgs {
    /// Live circuits revoked at once.
    #[arg(long, default_value_t = 10_000)]
    pub circuits: usize,
    /// Controllers on one PostgreSQL (`--store postgres`): the policy is deleted on the
    /// first, the router follows the last. SQLite is always one.
    #[arg(long, default_value_t = 2)]
    pub controllers: usize,
    /// `postgres` or `sqlite`.
    #[arg(long, default_value = "postgres")]
    pub store: String,
    /// Dials in flight while the circuits are opened.
    #[arg(long, default_value_t = 32)]
    pub dialers: usize,
}

/// A `weft-router` process, killed on drop.
pub(crate) struct RouterProc {
    child: Child,
    /// Its id at the controller.
    pub(crate) id: String,
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl RouterProc {
    /// Kills the process (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again with the same configuration (after [`Self::kill`]).
    pub(crate) fn restart(&mut self) -> Result<()> {
        self.kill();
        self.child = spawn_router(&self.bin, &self.dir.path().join("router.toml"))?;
        Ok(())
    }
}

fn spawn_router(bin: &std::path::Path, config: &std::path::Path) -> Result<Child> {
    Ok(boot::router_command(bin, config, None)
        .env("RUST_LOG", crate::control::process_log_level())
        .stdout(Stdio::null())
        .stderr(crate::control::process_stderr())
        .spawn()?)
}

impl Drop for RouterProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates, enrolls and starts router `name` following the controller at
/// `control_addr`, with `extra` appended to its `router.toml` (a `[link]` section, say);
/// returns once the controller sees it online.
pub(crate) async fn start_router(
    admin: &Management,
    control_addr: &str,
    name: &str,
    extra: &str,
) -> Result<RouterProc> {
    let bin = sibling_bin("weft-router")?;
    let edge_port = weft_testkit::free_port();
    let v = admin
        .create("edge-routers", boot::edge_router_body(name, edge_port))
        .await?;
    let id = v["id"].as_str().context("router id")?.to_owned();
    let detail = admin.get(&format!("edge-routers/{id}")).await?;
    let jwt = detail["data"]["enrollmentJwt"]
        .as_str()
        .context("router enrollment JWT")?;
    let dir = tempfile::tempdir()?;
    let jwt_path = dir.path().join("router.jwt");
    let config = dir.path().join("router.toml");
    std::fs::write(&jwt_path, jwt)?;
    std::fs::write(
        &config,
        boot::router_config_controllers(edge_port, &[control_addr], extra),
    )?;
    boot::enroll_router(
        &bin,
        &jwt_path,
        &config,
        &crate::control::process_log_level(),
    )?;
    let child = spawn_router(&bin, &config)?;
    let router = RouterProc {
        child,
        id: id.clone(),
        bin,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while admin.get(&format!("edge-routers/{id}")).await?["data"]["isOnline"] != true {
        if Instant::now() > deadline {
            bail!("the router did not come online");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(router)
}

/// How one circuit ended, seen by its dialer.
enum End {
    Error(Instant),
    Clean,
}

/// Runs the measurement and prints the figures.
pub async fn run_revocation(args: RevocationArgs) -> Result<()> {
    let pg = match args.store.as_str() {
        "postgres" => Some(Postgres::start().context("PostgreSQL (Debian's postgresql package)")?),
        "sqlite" => None,
        other => bail!("--store {other}: postgres or sqlite"),
    };
    let n = if pg.is_some() {
        args.controllers.max(1)
    } else {
        1
    };
    let url = pg.as_ref().map(|p| p.url("postgres"));
    let ctls = Controllers::start(n, url.as_deref()).await?;
    let first = ctls.infos.first().context("no controller")?;
    let last = ctls.infos.last().context("no controller")?;
    let admin = Management::login(&first.url(), &first.ca_pem()?, &first.admin_password()?).await?;
    admin
        .create(
            "services",
            json!({"name": "revoke", "roleAttributes": ["revoke"], "encryptionRequired": false}),
        )
        .await?;
    let dial: Value = admin
        .create("service-policies", json!({"name": "revoke-dial", "type": "Dial", "semantic": "AnyOf", "identityRoles": ["#revoke-client"], "serviceRoles": ["#revoke"]}))
        .await?;
    let dial_id = dial["id"].as_str().context("policy id")?.to_owned();
    admin
        .create("service-policies", json!({"name": "revoke-bind", "type": "Bind", "semantic": "AnyOf", "identityRoles": ["#revoke-host"], "serviceRoles": ["#revoke"]}))
        .await?;
    allow_all_routers(&admin).await?;
    let _router = start_router(&admin, &last.control_addr, "revoke-router", "").await?;
    let host = weft_sdk::Context::new(enrolled(&admin, "revoke-host").await?).await?;
    let client = Arc::new(weft_sdk::Context::new(enrolled(&admin, "revoke-client").await?).await?);
    let listener = host.bind("revoke").await?;
    // The host echoes one byte per stream and then holds it open.
    tokio::spawn(async move {
        while let Ok(mut s) = listener.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).await.is_ok() && s.write_all(&b).await.is_ok() {
                    let _ = s.read(&mut b).await;
                }
            });
        }
    });

    let opened = Instant::now();
    let (ends_tx, mut ends) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(args.dialers.max(1)));
    let mut dials = Vec::with_capacity(args.circuits);
    for _ in 0..args.circuits {
        let (client, gate, ends_tx) = (client.clone(), gate.clone(), ends_tx.clone());
        dials.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await?;
            let mut s = client.dial("revoke").await?;
            s.write_all(b"x").await?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await?;
            drop(permit);
            tokio::spawn(async move {
                let end = match s.read(&mut b).await {
                    Err(_) => End::Error(Instant::now()),
                    Ok(_) => End::Clean,
                };
                let _ = ends_tx.send(end);
            });
            anyhow::Ok(())
        }));
    }
    drop(ends_tx);
    for d in dials {
        d.await??;
    }
    let open_secs = opened.elapsed().as_secs_f64();
    eprintln!(
        "{} circuits open in {open_secs:.1} s; deleting the Dial policy on controller 1 of {n}",
        args.circuits
    );

    let t0 = Instant::now();
    admin.delete("service-policies", &dial_id).await?;
    let answered = t0.elapsed();
    let mut h = Histogram::<u64>::new(3)?;
    let (mut clean, mut last_close) = (0usize, Duration::ZERO);
    let deadline = Duration::from_secs(120);
    while (h.len() as usize) + clean < args.circuits {
        match tokio::time::timeout(deadline.saturating_sub(t0.elapsed()), ends.recv()).await {
            Ok(Some(End::Error(at))) => {
                let d = at.saturating_duration_since(t0);
                last_close = last_close.max(d);
                h.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))?;
            }
            Ok(Some(End::Clean)) => clean += 1,
            Ok(None) | Err(_) => break,
        }
    }
    let closed = h.len() as usize + clean;
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "| store | controllers | circuits | opened in s | delete answered ms | closed | p50 ms | p99 ms | last ms | clean ends |\n|---|---|---|---|---|---|---|---|---|---|\n| {} | {n} | {} | {open_secs:.1} | {:.1} | {closed} | {:.1} | {:.1} | {:.1} | {clean} |",
        args.store,
        args.circuits,
        answered.as_secs_f64() * 1000.0,
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        last_close.as_secs_f64() * 1000.0,
    );
    if closed < args.circuits || clean > 0 {
        bail!(
            "{} of {} circuits did not end with an error within {deadline:?} ({clean} ended cleanly)",
            args.circuits - h.len() as usize,
            args.circuits
        );
    }
    drop(ctls);
    drop(pg);
    Ok(())
}
