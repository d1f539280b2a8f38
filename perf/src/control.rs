//! `weft-perf control`: the controller's write path under load. For each store
//! (SQLite, PostgreSQL) and number of controllers on it, concurrent clients spread over
//! the controllers run certificate logins (`POST /authenticate?method=cert`, one API
//! session written each) and then session requests (`POST /sessions`, one session
//! written each); rate and latency percentiles of each.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use weft_testkit::boot::{self, ControllerInfo, Management};
use weft_testkit::postgres::Postgres;

/// `weft-perf control` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ControlArgs {
    /// Stores to measure: `sqlite`, `postgres` (both by default).
    #[arg(long, value_delimiter = ',', default_values_t = ["sqlite".to_owned(), "postgres".to_owned()])]
    pub store: Vec<String>,
    /// Numbers of controllers to measure on PostgreSQL (SQLite is always one).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 3])]
    pub controllers: Vec<usize>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
}

/// One measured operation.
#[derive(Debug)]
pub struct Figure {
    /// Operations per second.
    pub rate: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// Failed requests.
    pub errors: u64,
}

/// Controllers started for one measurement, killed on drop.
#[derive(Debug)]
pub struct Controllers {
    children: Vec<Child>,
    /// Where each one answers.
    pub infos: Vec<ControllerInfo>,
    _dir: tempfile::TempDir,
}

impl Drop for Controllers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The log filter of the controllers and routers these subcommands start:
/// `WEFT_PERF_LOG` when set (their logs then go to this process's stderr), else
/// warnings, dropped.
pub(crate) fn process_log_level() -> String {
    std::env::var("WEFT_PERF_LOG").unwrap_or_else(|_| "warn".into())
}

/// Where the started processes' logs go (see [`process_log_level`]).
pub(crate) fn process_stderr() -> Stdio {
    match std::env::var_os("WEFT_PERF_LOG") {
        Some(_) => Stdio::inherit(),
        None => Stdio::null(),
    }
}

/// A binary built beside `weft-perf` (`weft-controller`, `weft-router`).
pub fn sibling_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating weft-perf")?;
    let bin = exe
        .parent()
        .context("weft-perf has no directory")?
        .join(name);
    if !bin.is_file() {
        bail!("{} missing: build the workspace first", bin.display());
    }
    Ok(bin)
}

fn run(bin: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(bin).args(args).output()?;
    if !out.status.success() {
        bail!(
            "weft-controller {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

impl Controllers {
    /// `n` controllers on `store_url` (`None`: one on its own SQLite file).
    pub async fn start(n: usize, store_url: Option<&str>) -> Result<Self> {
        let bin = sibling_bin("weft-controller")?;
        let dir = tempfile::tempdir()?;
        let settings = match store_url {
            Some(url) => {
                format!("auth.max_sessions_per_api_session = 1000000\n[store]\nurl = \"{url}\"")
            }
            None => "auth.max_sessions_per_api_session = 1000000".to_owned(),
        };
        let bundle = dir.path().join("ca-bundle.pem");
        let mut children = Vec::new();
        let mut infos = Vec::new();
        for i in 0..n {
            let cfg = dir.path().join(format!("c{i}.toml"));
            let data = dir.path().join(format!("c{i}"));
            boot::write_controller_config(&cfg, &settings)?;
            if store_url.is_some() {
                if i == 0 {
                    let args = [
                        "cluster",
                        "init",
                        "--data-dir",
                        path(&data),
                        "--config",
                        path(&cfg),
                        "--ca-bundle-out",
                        path(&bundle),
                    ];
                    run(&bin, &args)?;
                } else {
                    let args = [
                        "cluster",
                        "join",
                        "--data-dir",
                        path(&data),
                        "--ca-bundle",
                        path(&bundle),
                        "--config",
                        path(&cfg),
                    ];
                    run(&bin, &args)?;
                }
            }
            let child = boot::controller_command(&bin, &data, &cfg)
                .env("RUST_LOG", process_log_level())
                .stdout(Stdio::null())
                .stderr(process_stderr())
                .spawn()?;
            children.push(child);
            let deadline = Instant::now() + Duration::from_secs(60);
            let info = loop {
                if let Some(info) = boot::controller_info(&data) {
                    break info;
                }
                if Instant::now() > deadline {
                    bail!("controller {i} did not start");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            infos.push(info);
        }
        Ok(Self {
            children,
            infos,
            _dir: dir,
        })
    }
}

/// An edge router policy and a service edge router policy that let every identity and
/// every service use every edge router.
pub async fn allow_all_routers(admin: &Management) -> Result<()> {
    admin
        .create("edge-router-policies", json!({"name": "all", "semantic": "AnyOf", "identityRoles": ["#all"], "edgeRouterRoles": ["#all"]}))
        .await?;
    admin
        .create("service-edge-router-policies", json!({"name": "all", "semantic": "AnyOf", "serviceRoles": ["#all"], "edgeRouterRoles": ["#all"]}))
        .await?;
    Ok(())
}

/// Identity `name` (with role attribute `name`) created and enrolled.
pub async fn enrolled(admin: &Management, name: &str) -> Result<weft_sdk::Identity> {
    let v = admin
        .create("identities", boot::identity_body(name, &[name]))
        .await?;
    let id = v["id"].as_str().context("identity id")?;
    let detail = admin.get(&format!("identities/{id}")).await?;
    let jwt = detail["data"]["enrollment"]["ott"]["jwt"]
        .as_str()
        .context("enrollment JWT")?;
    Ok(weft_sdk::enroll(jwt).await?)
}

/// A client presenting `identity`'s certificate to the controller at `info`.
fn cert_client(info: &ControllerInfo, identity: &weft_sdk::Identity) -> Result<reqwest::Client> {
    let roots = weft_tls::pem::roots(info.ca_pem()?.as_bytes())?;
    let tls = weft_tls::client::verified_with_versions(
        roots,
        Some((identity.cert_chain()?, identity.private_key()?)),
        weft_tls::VERSIONS,
    )?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .resolve("localhost", info.api)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Runs `op` from `clients` tasks for `duration`; the figure of the successful ones.
async fn load<F, Fut>(clients: usize, duration: Duration, op: F) -> Result<Figure>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let op = Arc::clone(&op);
        let mut h = Histogram::<u64>::new(3)?;
        tasks.push(tokio::spawn(async move {
            let mut errors = 0u64;
            while start.elapsed() < duration {
                let t = Instant::now();
                if op(c).await {
                    let _ = h.record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                } else {
                    errors += 1;
                }
            }
            (h, errors)
        }));
    }
    let mut all = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await?;
        all.add(h)?;
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Figure {
        rate: all.len() as f64 / secs,
        p50_us: all.value_at_quantile(0.5),
        p99_us: all.value_at_quantile(0.99),
        errors,
    })
}

/// Measures one store and controller count; returns (authenticate, sessions).
async fn measure(label: &str, ctls: &Controllers, args: &ControlArgs) -> Result<(Figure, Figure)> {
    let first = ctls.infos.first().context("no controller")?;
    let admin = Management::login(&first.url(), &first.ca_pem()?, &first.admin_password()?).await?;
    admin
        .create(
            "services",
            json!({"name": "bench", "roleAttributes": ["bench"]}),
        )
        .await?;
    admin
        .create("service-policies", json!({"name": "bench-dial", "type": "Dial", "semantic": "AnyOf", "identityRoles": ["#bench-client"], "serviceRoles": ["#bench"]}))
        .await?;
    allow_all_routers(&admin).await?;
    // A router entity, so sessions have an edge router to name (it need not run).
    admin
        .create("edge-routers", boot::edge_router_body("bench-router", 1))
        .await?;
    let identity = enrolled(&admin, "bench-client").await?;
    let clients: Vec<(reqwest::Client, String)> = (0..args.clients)
        .map(|c| {
            let info = &ctls.infos[c % ctls.infos.len()];
            Ok((cert_client(info, &identity)?, info.url()))
        })
        .collect::<Result<_>>()?;
    let clients = Arc::new(clients);
    let duration = Duration::from_secs(args.duration);
    let auth_clients = Arc::clone(&clients);
    let auth = load(args.clients, duration, move |c| {
        let (http, url) = auth_clients[c].clone();
        async move {
            let res = http
                .post(format!("{url}/edge/client/v1/authenticate?method=cert"))
                .json(&json!({}))
                .send()
                .await;
            matches!(res, Ok(r) if r.status().as_u16() == 200)
        }
    })
    .await?;
    // One API session per client for the session requests.
    let mut tokens = Vec::new();
    for (http, url) in clients.iter() {
        let v: Value = http
            .post(format!("{url}/edge/client/v1/authenticate?method=cert"))
            .json(&json!({}))
            .send()
            .await?
            .json()
            .await?;
        tokens.push(v["data"]["token"].as_str().context("token")?.to_owned());
    }
    let service_id = admin.get("services?filter=name%3D%22bench%22").await?["data"][0]["id"]
        .as_str()
        .context("service id")?
        .to_owned();
    let tokens = Arc::new(tokens);
    let sessions = load(args.clients, duration, move |c| {
        let (http, url) = clients[c].clone();
        let token = tokens[c].clone();
        let service_id = service_id.clone();
        async move {
            let res = http
                .post(format!("{url}/edge/client/v1/sessions"))
                .header("zt-session", token)
                .json(&json!({"serviceId": service_id, "type": "Dial"}))
                .send()
                .await;
            matches!(res, Ok(r) if r.status().as_u16() == 201)
        }
    })
    .await?;
    eprintln!("{label}: measured");
    Ok((auth, sessions))
}

/// Runs every configuration and prints a table.
pub async fn run_control(args: ControlArgs) -> Result<()> {
    let mut rows = Vec::new();
    for store in &args.store {
        match store.as_str() {
            "sqlite" => {
                let ctls = Controllers::start(1, None).await?;
                rows.push((
                    "sqlite".to_owned(),
                    1,
                    measure("sqlite ×1", &ctls, &args).await?,
                ));
            }
            "postgres" => {
                for &n in &args.controllers {
                    let pg =
                        Postgres::start().context("PostgreSQL (Debian's postgresql package)")?;
                    let ctls = Controllers::start(n, Some(&pg.url("postgres"))).await?;
                    let label = format!("postgres ×{n}");
                    rows.push((
                        "postgres".to_owned(),
                        n,
                        measure(&label, &ctls, &args).await?,
                    ));
                    drop(ctls);
                    drop(pg);
                }
            }
            other => bail!("unknown store {other:?} (sqlite, postgres)"),
        }
    }
    println!(
        "{} clients, {} s each\n\n| store | controllers | authenticate/s | p50 ms | p99 ms | sessions/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|---|---|",
        args.clients, args.duration
    );
    for (store, n, (a, s)) in rows {
        println!(
            "| {store} | {n} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {} |",
            a.rate,
            a.p50_us as f64 / 1000.0,
            a.p99_us as f64 / 1000.0,
            s.rate,
            s.p50_us as f64 / 1000.0,
            s.p99_us as f64 / 1000.0,
            a.errors + s.errors
        );
    }
    Ok(())
}
