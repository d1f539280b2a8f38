//! `weft quickstart`: a whole local network from nothing, with a demo through it.
//!
//! Starts a controller (in-process) in a local data directory, enrolls and starts one
//! edge router (in-process), creates two identities, an end-to-end encrypted echo
//! service and its policies, hosts the service with the SDK, dials it, measures
//! throughput and round-trip latency, prints what happened and keeps the network up
//! until Ctrl-C (or stops at once with `--exit`).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::CliError;
use super::client::{self, Api, CliConfig, Logins};
use weft_controller::config::Config;
use weft_controller::controller::ADDR_FILE;

/// Marker file that says a directory was made by the quickstart (so it may be reset).
const MARKER: &str = ".weft-quickstart";
/// Bulk transfer of the demo, each way.
const BULK_BYTES: usize = 64 * 1024 * 1024;
/// Round trips timed for the latency percentiles.
const PINGS: usize = 2000;
/// The demo service.
const SERVICE: &str = "demo-echo";
/// The name the quickstart saves its admin login under: the session dies with the
/// network, so it never replaces another saved login.
pub const QUICKSTART_LOGIN: &str = "quickstart";

/// Options of `weft quickstart`.
#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {
    /// Directory for the network's state (controller data, router certificates,
    /// identity files). A previous quickstart directory is started over.
    #[arg(long, default_value = "weft-quickstart")]
    pub dir: PathBuf,
    /// Stop after the demo instead of keeping the network up.
    #[arg(long)]
    pub exit: bool,
}

fn fail(what: &str) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |e| CliError::Usage(format!("{what}: {e}"))
}

/// `port` if it is free on loopback, else any free port.
fn port_or_free(port: u16) -> Result<u16, CliError> {
    let l = TcpListener::bind(("127.0.0.1", port))
        .or_else(|_| TcpListener::bind(("127.0.0.1", 0)))
        .map_err(fail("finding a free port"))?;
    Ok(l.local_addr().map_err(fail("finding a free port"))?.port())
}

fn prepare_dir(dir: &Path) -> Result<(), CliError> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(fail("reading the quickstart directory"))?
            .next()
            .is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(CliError::Usage(format!(
                "{} exists and was not made by `weft quickstart`; choose another --dir",
                dir.display()
            )));
        }
        std::fs::remove_dir_all(dir).map_err(fail("clearing the quickstart directory"))?;
    }
    std::fs::create_dir_all(dir).map_err(fail("creating the quickstart directory"))?;
    std::fs::write(dir.join(MARKER), "made by weft quickstart\n")
        .map_err(fail("writing the quickstart marker"))
}

fn step(n: usize, what: &str, detail: impl std::fmt::Display) {
    println!("[{n}/7] {what:<11} {detail}");
}

/// Runs the quickstart.
pub async fn run(args: QuickstartArgs) -> Result<(), CliError> {
    let dir = std::path::absolute(&args.dir).map_err(fail("resolving --dir"))?;
    prepare_dir(&dir)?;
    println!("Weft quickstart: a local network in {}", dir.display());

    // 1. Controller.
    let data_dir = dir.join("controller");
    let mut config = Config::default();
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], port_or_free(1280)?));
    config.control.listen = SocketAddr::from(([127, 0, 0, 1], port_or_free(6262)?));
    let (stop_ctl, stopped) = tokio::sync::oneshot::channel::<()>();
    let ctl_dir = data_dir.clone();
    let controller = tokio::spawn(async move {
        weft_controller::server::run(&ctl_dir, config, async {
            let _ = stopped.await;
        })
        .await
    });
    let api_addr = wait_for_addr(&data_dir.join(ADDR_FILE), &controller).await?;
    let url = format!("https://localhost:{}", api_addr.port());
    let control_addr =
        std::fs::read_to_string(data_dir.join(weft_controller::control::CONTROL_ADDR_FILE))
            .map_err(fail("reading the control address"))?;
    let control_port = control_addr
        .trim()
        .rsplit_once(':')
        .map_or("6262", |(_, p)| p)
        .to_string();
    let password_file = data_dir.join("admin.password");
    let password = std::fs::read_to_string(&password_file)
        .map_err(fail("reading the admin password"))?
        .trim()
        .to_string();
    let ca_pem = client::fetch_ca_bundle_unverified(&url).await?;
    let token = client::login(&url, &ca_pem, "admin", &password, client::no_totp()).await?;
    let cli_config = CliConfig {
        url: url.clone(),
        token,
        ca_pem,
        username: Some("admin".to_owned()),
        ..CliConfig::default()
    };
    let api = Api::from_config(QUICKSTART_LOGIN, cli_config.clone())?;
    step(
        1,
        "controller",
        format!("{url} (data in {})", data_dir.display()),
    );

    // 2. Router.
    let router_dir = dir.join("router");
    std::fs::create_dir_all(&router_dir).map_err(fail("creating the router directory"))?;
    let edge_port = port_or_free(3022)?;
    let v = api
        .post(
            "edge-routers",
            // No supportedProtocols: the router reports its edge listener itself.
            &json!({"name": "edge-router-1", "roleAttributes": ["public"]}),
        )
        .await?;
    let jwt = v["data"]["enrollmentJwt"].as_str().ok_or_else(|| {
        CliError::Usage("the controller returned no router enrollment JWT".into())
    })?;
    let jwt_path = router_dir.join("router.jwt");
    std::fs::write(&jwt_path, jwt).map_err(fail("writing router.jwt"))?;
    let router_toml = router_dir.join("router.toml");
    std::fs::write(
        &router_toml,
        format!(
            "[identity]\ncert = \"certs/server.cert\"\nkey = \"certs/server.key\"\n\
             [edge]\nlisten = \"127.0.0.1:{edge_port}\"\nadvertised_host = \"localhost\"\n\
             [control]\ncontrollers = [\"localhost:{control_port}\"]\n\
             [runtime]\nshutdown_grace_ms = 1000\n"
        ),
    )
    .map_err(fail("writing router.toml"))?;
    let router_config = weft_router::config::RouterConfig::load(&router_toml)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    weft_router::enroll::enroll(
        &jwt_path,
        &router_config.cert_dir(),
        &router_config.server_cert_names(),
    )
    .await
    .map_err(|e| CliError::Usage(format!("router enrollment: {e}")))?;
    let node = weft_router::node::Node::start(&router_config)
        .map_err(|e| CliError::Usage(format!("starting the router: {e}")))?;
    let router_id = v["data"]["id"].as_str().unwrap_or_default().to_string();
    wait_online(&api, &router_id).await?;
    step(
        2,
        "router",
        format!(
            "edge-router-1 enrolled (server and client certificates) and online at tls://localhost:{edge_port}"
        ),
    );

    // 3. Identities.
    let host_file = dir.join("demo-host.json");
    let client_file = dir.join("demo-client.json");
    let host_id = enroll_identity(&api, "demo-host", "demo-host", &host_file).await?;
    let client_id = enroll_identity(&api, "demo-client", "demo-client", &client_file).await?;
    step(
        3,
        "identities",
        format!(
            "demo-host, demo-client enrolled → {}, {}",
            host_file.display(),
            client_file.display()
        ),
    );

    // 4. Service and policies.
    api.post(
        "services",
        &json!({"name": SERVICE, "roleAttributes": ["demo"], "encryptionRequired": true}),
    )
    .await?;
    for (name, kind, role) in [
        ("demo-bind", "Bind", "#demo-host"),
        ("demo-dial", "Dial", "#demo-client"),
    ] {
        api.post(
            "service-policies",
            &json!({"name": name, "type": kind, "semantic": "AnyOf",
                    "identityRoles": [role], "serviceRoles": ["#demo"]}),
        )
        .await?;
    }
    api.post(
        "edge-router-policies",
        &json!({"name": "all-identities-public-routers", "edgeRouterRoles": ["#public"], "identityRoles": ["#all"]}),
    )
    .await?;
    api.post(
        "service-edge-router-policies",
        &json!({"name": "all-services-public-routers", "edgeRouterRoles": ["#public"], "serviceRoles": ["#all"]}),
    )
    .await?;
    step(
        4,
        "service",
        format!("{SERVICE} (end-to-end encrypted), Bind for #demo-host, Dial for #demo-client"),
    );

    // 5. Host.
    let host = weft_sdk::Context::new(weft_sdk::Identity::load(&host_file)?).await?;
    let listener = host.bind(SERVICE).await?;
    step(
        5,
        "hosting",
        format!(
            "demo-host ({host_id}) bound {SERVICE} on {}",
            listener.router()
        ),
    );
    let echo = tokio::spawn(async move {
        while let Ok(mut stream) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = tokio::io::split(&mut stream);
                let _ = tokio::io::copy_buf(
                    &mut tokio::io::BufReader::with_capacity(64 * 1024, &mut rd),
                    &mut wr,
                )
                .await;
                let _ = wr.shutdown().await;
            });
        }
    });

    // 6. Dial.
    let client = weft_sdk::Context::new(weft_sdk::Identity::load(&client_file)?).await?;
    let started = Instant::now();
    let mut stream = client.dial(SERVICE).await?;
    let setup = started.elapsed();
    let latency = client
        .routers()
        .into_iter()
        .find(|(r, _)| r == stream.router())
        .map(|(_, l)| l);
    step(
        6,
        "dialing",
        format!(
            "demo-client ({client_id}) → {SERVICE} via {} (router chosen by latency{}), {}, set up in {:.1} ms",
            stream.router(),
            latency.map_or(String::new(), |l| format!(
                " {:.2} ms",
                l.as_secs_f64() * 1e3
            )),
            if stream.is_encrypted() {
                "end-to-end encrypted"
            } else {
                "plaintext"
            },
            setup.as_secs_f64() * 1e3
        ),
    );

    // 7. Traffic.
    let (bulk, rtts) = demo_traffic(&mut stream).await?;
    step(
        7,
        "traffic",
        format!(
            "{} MiB echoed in {:.2} s: {:.0} MB/s each way ({:.0} MB/s total)",
            BULK_BYTES >> 20,
            bulk.as_secs_f64(),
            BULK_BYTES as f64 / bulk.as_secs_f64() / 1e6,
            2.0 * BULK_BYTES as f64 / bulk.as_secs_f64() / 1e6
        ),
    );
    println!(
        "            round trips of 64 B ({PINGS}): p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        rtts.value_at_quantile(0.5) as f64 / 1e3,
        rtts.value_at_quantile(0.9) as f64 / 1e3,
        rtts.value_at_quantile(0.99) as f64 / 1e3,
        rtts.max() as f64 / 1e3,
    );
    drop(stream);

    println!();
    if args.exit {
        println!("The network stops now (--exit): no login is saved for `weft`.");
    } else {
        let (saved, other) = save_login(&cli_config)?;
        match other {
            None => println!(
                "The network is up. Admin login saved for `weft` as {QUICKSTART_LOGIN:?} \
                 (current) in {}; it is removed when the network stops:",
                saved.display()
            ),
            Some(other) => println!(
                "The network is up. Admin login saved for `weft` as {QUICKSTART_LOGIN:?} in {}; \
                 your login {other:?} stays current (`weft edge use {QUICKSTART_LOGIN}` or \
                 --cli-identity {QUICKSTART_LOGIN} uses this network); it is removed when the \
                 network stops:",
                saved.display()
            ),
        }
    }
    println!(
        "  weft login {url} -u admin -p \"$(cat {})\" --ca {} --cli-identity {QUICKSTART_LOGIN}",
        password_file.display(),
        data_dir.join("pki/root-ca.cert.pem").display()
    );
    println!("  weft edge list services");
    println!(
        "Identity files: {} (hosts {SERVICE}), {} (dials it)",
        host_file.display(),
        client_file.display()
    );
    println!("Ride the overlay with stock tools, for example:");
    println!(
        "  weft tunnel host --identity {} --service {SERVICE} --target 127.0.0.1:8080",
        host_file.display()
    );
    println!(
        "  weft tunnel dial --identity {} --service {SERVICE} --listen 127.0.0.1:9090",
        client_file.display()
    );
    println!("(the demo echo is hosted by this process; stop it first to host {SERVICE} yourself)");

    if !args.exit {
        println!("Press Ctrl-C to stop the network.");
        let _ = tokio::signal::ctrl_c().await;
        println!("stopping");
    }
    if !args.exit {
        match forget_login(&cli_config.token) {
            Ok(true) => println!("removed the saved login {QUICKSTART_LOGIN:?}"),
            Ok(false) => {}
            Err(e) => eprintln!("warning: the saved login {QUICKSTART_LOGIN:?} stays: {e}"),
        }
    }
    echo.abort();
    drop((client, host));
    node.shutdown_with(Duration::from_millis(200)).await;
    let _ = stop_ctl.send(());
    match controller.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CliError::Usage(format!("controller: {e}"))),
        Err(e) => Err(CliError::Usage(format!("controller task: {e}"))),
    }
}

/// Saves the admin login as [`QUICKSTART_LOGIN`], current unless another saved login
/// is; returns the file and that other login's name.
fn save_login(cfg: &CliConfig) -> Result<(PathBuf, Option<String>), CliError> {
    let mut logins = Logins::load()?;
    logins
        .logins
        .insert(QUICKSTART_LOGIN.to_owned(), cfg.clone());
    let other = logins
        .current
        .clone()
        .filter(|c| c != QUICKSTART_LOGIN && logins.logins.contains_key(c));
    if other.is_none() {
        logins.current = Some(QUICKSTART_LOGIN.to_owned());
    }
    Ok((logins.save()?, other))
}

/// Removes the login [`save_login`] saved (if it is still that session); whether it
/// did.
fn forget_login(token: &str) -> Result<bool, CliError> {
    let mut logins = Logins::load()?;
    if logins
        .logins
        .get(QUICKSTART_LOGIN)
        .is_none_or(|l| l.token != token)
    {
        return Ok(false);
    }
    logins.logins.remove(QUICKSTART_LOGIN);
    if logins.current.as_deref() == Some(QUICKSTART_LOGIN) {
        logins.current = None;
    }
    logins.save()?;
    Ok(true)
}

/// Waits for the controller to write its address (or fail).
async fn wait_for_addr(
    path: &Path,
    controller: &tokio::task::JoinHandle<Result<(), weft_controller::controller::StartError>>,
) -> Result<SocketAddr, CliError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(addr) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Ok(addr);
        }
        if controller.is_finished() || Instant::now() > deadline {
            return Err(CliError::Usage(
                "the controller did not start (see the log above)".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_online(api: &Api, router_id: &str) -> Result<(), CliError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let routers = api.list_all("edge-routers", None).await?;
        if routers
            .iter()
            .any(|r| r["id"] == router_id && r["isOnline"] == Value::Bool(true))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CliError::Usage(
                "the router did not come online within 30 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates identity `name` with `attr`, enrolls it with the SDK and writes `file`.
async fn enroll_identity(
    api: &Api,
    name: &str,
    attr: &str,
    file: &Path,
) -> Result<String, CliError> {
    let v = api
        .post(
            "identities",
            &json!({"name": name, "type": "User", "isAdmin": false,
                    "roleAttributes": [attr], "enrollment": {"ott": true}}),
        )
        .await?;
    let id = v["data"]["id"].as_str().unwrap_or_default().to_string();
    let jwt = match v["data"]["enrollment"]["ott"]["jwt"].as_str() {
        Some(j) => j.to_string(),
        None => api.get(&format!("identities/{id}")).await?["data"]["enrollment"]["ott"]["jwt"]
            .as_str()
            .ok_or_else(|| CliError::Usage(format!("no enrollment JWT for {name}")))?
            .to_string(),
    };
    weft_sdk::enroll(&jwt).await?.save(file)?;
    Ok(id)
}

/// Echoes [`BULK_BYTES`] (writing and reading at once), then times [`PINGS`] 64-byte
/// round trips.
async fn demo_traffic(
    stream: &mut weft_sdk::Stream,
) -> Result<(Duration, hdrhistogram::Histogram<u64>), CliError> {
    let io = |e: std::io::Error| CliError::Usage(format!("demo traffic: {e}"));
    let block = Arc::new(vec![0x5au8; 256 * 1024]);
    let started = Instant::now();
    {
        let (mut rd, mut wr) = tokio::io::split(&mut *stream);
        let writer = async {
            let mut left = BULK_BYTES;
            while left > 0 {
                let n = left.min(block.len());
                wr.write_all(&block[..n]).await?;
                left -= n;
            }
            Ok::<_, std::io::Error>(())
        };
        let reader = async {
            let mut buf = vec![0u8; 256 * 1024];
            let mut got = 0;
            while got < BULK_BYTES {
                let n = rd.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the echo ended early",
                    ));
                }
                if buf[..n].iter().any(|b| *b != 0x5a) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the echo returned other bytes",
                    ));
                }
                got += n;
            }
            Ok(())
        };
        let (w, r) = tokio::join!(writer, reader);
        w.map_err(io)?;
        r.map_err(io)?;
    }
    let bulk = started.elapsed();

    let mut hist = hdrhistogram::Histogram::<u64>::new(3)
        .map_err(|e| CliError::Usage(format!("histogram: {e}")))?;
    let ping = [7u8; 64];
    let mut pong = [0u8; 64];
    for _ in 0..PINGS {
        let t = Instant::now();
        stream.write_all(&ping).await.map_err(io)?;
        stream.read_exact(&mut pong).await.map_err(io)?;
        let _ = hist.record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    Ok((bulk, hist))
}
