//! A local network of real processes: a controller, enrolled `weft-router`s, and
//! `weft tunnel` endpoints.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::boot;
use crate::controller::{Admin, Ctl};
use crate::process::{Process, START_TIMEOUT, bin_dir, free_port, log_level};

/// A `weft-router` process, enrolled at a controller.
#[derive(Debug)]
pub struct Router {
    process: Process,
    /// Its id at the controller.
    pub id: String,
    /// Its edge port on loopback.
    pub edge_port: u16,
    /// Its directory (config, certificates).
    pub dir: tempfile::TempDir,
    /// Its arguments to `weft-router run` after `--config`.
    args: Vec<String>,
}

impl Router {
    /// Creates edge router `name` (role attribute `name`, no edge address: the router
    /// reports its own) at the controller, enrolls it with
    /// `weft-router enroll`, starts `weft-router run` (with `extra_args`, e.g.
    /// `["--io", "epoll"]`) and waits until the controller sees it online.
    pub async fn start(ctl: &Ctl, admin: &Admin, name: &str, extra_args: &[&str]) -> Self {
        Self::start_via(admin, name, &ctl.control_addr(), extra_args).await
    }

    /// [`Self::start`] with the router dialling the controller's control channel at
    /// `control_addr` (`localhost:<port>`): a [`crate::proxy::FaultProxy`] in front of
    /// it, say.
    pub async fn start_via(
        admin: &Admin,
        name: &str,
        control_addr: &str,
        extra_args: &[&str],
    ) -> Self {
        Self::start_configured(admin, name, control_addr, "", extra_args).await
    }

    /// [`Self::start_via`] with `extra_config` appended to `router.toml` (a `[link]`
    /// section, say).
    pub async fn start_configured(
        admin: &Admin,
        name: &str,
        control_addr: &str,
        extra_config: &str,
        extra_args: &[&str],
    ) -> Self {
        let edge_port = free_port();
        let config = boot::router_config(edge_port, control_addr, extra_config);
        Self::start_with_config(admin, name, edge_port, &config, extra_args).await
    }

    /// [`Self::start_configured`] with several controller control addresses
    /// (`controllers = [...]` in `router.toml`, tried in order): the router comes up
    /// through whichever of them answers.
    pub async fn start_with_controllers(
        admin: &Admin,
        name: &str,
        control_addrs: &[&str],
        extra_config: &str,
        extra_args: &[&str],
    ) -> Self {
        let edge_port = free_port();
        let config = boot::router_config_controllers(edge_port, control_addrs, extra_config);
        Self::start_with_config(admin, name, edge_port, &config, extra_args).await
    }

    async fn start_with_config(
        admin: &Admin,
        name: &str,
        edge_port: u16,
        config_text: &str,
        extra_args: &[&str],
    ) -> Self {
        // No `supportedProtocols`: the router reports its edge listener over the control
        // channel, as an OpenZiti router does.
        let v = admin
            .create(
                "edge-routers",
                serde_json::json!({"name": name, "roleAttributes": [name]}),
            )
            .await;
        let id = v["id"].as_str().unwrap().to_string();
        let detail = admin.get(&format!("edge-routers/{id}")).await;
        let jwt = detail["data"]["enrollmentJwt"]
            .as_str()
            .unwrap()
            .to_string();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("router.jwt"), jwt).unwrap();
        let config = dir.path().join("router.toml");
        std::fs::write(&config, config_text).unwrap();
        let router = bin_dir().join("weft-router");
        boot::enroll_router(
            &router,
            &dir.path().join("router.jwt"),
            &config,
            &log_level(),
        )
        .unwrap();
        let mut router = Self {
            process: Process(None),
            id,
            edge_port,
            dir,
            args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        router.spawn();
        router.wait_online(admin, name).await;
        router
    }

    fn spawn(&mut self) {
        let config = self.dir.path().join("router.toml");
        // `WEFT_ROUTER_IO=epoll|uring` runs every system test on that backend (CI runs
        // them on both); otherwise the router picks (`auto`).
        let io = std::env::var("WEFT_ROUTER_IO")
            .ok()
            .filter(|_| !self.args.iter().any(|a| a == "--io"));
        let child = boot::router_command(&bin_dir().join("weft-router"), &config, io.as_deref())
            .args(&self.args)
            .env("RUST_LOG", log_level())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.process = Process(Some(child));
    }

    /// Waits until the controller sees the router online; panics at once if the process
    /// exits meanwhile (it printed why on the test's stderr), else after
    /// [`START_TIMEOUT`].
    /// Fails the test at once when the process has exited (it printed why on the
    /// test's stderr).
    fn fail_if_exited(&mut self, name: &str) {
        if let Some(child) = self.process.0.as_mut() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("router {name} exited while starting: {status}");
            }
        }
    }

    async fn wait_online(&mut self, admin: &Admin, name: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        while admin.get(&format!("edge-routers/{}", self.id)).await["data"]["isOnline"] != true {
            self.fail_if_exited(name);
            assert!(
                Instant::now() < deadline,
                "router {name} did not come online"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills the process.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Resident set size of the router process in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        self.process.rss_kib()
    }

    /// Starts the process again (after [`Self::kill`]) with the same configuration and
    /// waits until its edge listener takes connections and the controller sees it
    /// online. (Online alone may still be the killed process: the controller may not
    /// have seen its control connection end yet.)
    pub async fn restart(&mut self, admin: &Admin) {
        self.kill();
        self.spawn();
        let id = self.id.clone();
        let deadline = Instant::now() + START_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.edge_port))
            .await
            .is_err()
        {
            self.fail_if_exited(&id);
            assert!(
                Instant::now() < deadline,
                "router {id} did not listen on its edge port again"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.wait_online(admin, &id).await;
    }
}

/// A controller and one router, with every identity allowed on the router.
#[derive(Debug)]
pub struct Network {
    /// The controller.
    pub controller: Ctl,
    /// An admin session on it.
    pub admin: Admin,
    /// The router.
    pub router: Router,
}

impl Network {
    /// Starts a controller and a router (default I/O backend).
    pub async fn start() -> Self {
        Self::start_with("", &[]).await
    }

    /// Starts with extra controller config lines and extra router arguments.
    pub async fn start_with(controller_config: &str, router_args: &[&str]) -> Self {
        init_logs();
        let controller = Ctl::start_with(controller_config);
        let admin = controller.admin().await;
        admin.open_routers().await;
        let router = Router::start(&controller, &admin, "edge-1", router_args).await;
        Self {
            controller,
            admin,
            router,
        }
    }

    /// Creates identity `name` and enrolls it with the SDK.
    #[cfg(feature = "sdk")]
    pub async fn enrolled(&self, name: &str, attrs: &[&str]) -> weft_sdk::Identity {
        let (_, jwt) = self.admin.identity(name, attrs).await;
        weft_sdk::enroll(&jwt).await.unwrap()
    }

    /// An authenticated SDK context for a new identity `name`.
    #[cfg(feature = "sdk")]
    pub async fn context(&self, name: &str, attrs: &[&str]) -> weft_sdk::Context {
        weft_sdk::Context::new(self.enrolled(name, attrs).await)
            .await
            .unwrap()
    }

    /// Creates service `name` with attribute `#name`, a Dial policy for `#name-client`
    /// and a Bind policy for `#name-host`; returns (service id, dial policy id, bind
    /// policy id).
    pub async fn service(
        &self,
        name: &str,
        attrs: &[&str],
        encrypted: bool,
    ) -> (String, String, String) {
        let svc = self.admin.service(name, attrs, encrypted).await;
        let role = format!("#{}", attrs.first().copied().unwrap_or(name));
        let dial = self
            .admin
            .service_policy(
                &format!("{name}-dial"),
                "Dial",
                &[&format!("#{name}-client")],
                &[&role],
            )
            .await;
        let bind = self
            .admin
            .service_policy(
                &format!("{name}-bind"),
                "Bind",
                &[&format!("#{name}-host")],
                &[&role],
            )
            .await;
        (svc, dial, bind)
    }
}

/// A controller and three routers in a line, A - B - C: B listens for links, A and C
/// dial it, and A and C share no group, so no link joins them. Identities with the
/// attribute `dialer` may use router A only, those with `hoster` router C only, and
/// every service every router: a circuit from a dialer to a host must cross B.
#[derive(Debug)]
pub struct Line {
    /// The controller.
    pub controller: Ctl,
    /// An admin session on it.
    pub admin: Admin,
    /// Router A (dialers).
    pub a: Router,
    /// Router B (the middle; its link listener is the only one).
    pub b: Router,
    /// Router C (hosts).
    pub c: Router,
}

impl Line {
    /// Starts the controller and the routers and waits until both links are up.
    pub async fn start() -> Self {
        init_logs();
        let controller = Ctl::start();
        let admin = controller.admin().await;
        let control = controller.control_addr();
        let b_config = format!(
            "[link]\nlisten = \"127.0.0.1:{}\"\ngroups = [\"ab\", \"bc\"]\ndial_groups = []\n",
            free_port()
        );
        let b = Router::start_configured(&admin, "line-b", &control, &b_config, &[]).await;
        let a_config = "[link]\ndial_groups = [\"ab\"]\n";
        let a = Router::start_configured(&admin, "line-a", &control, a_config, &[]).await;
        let c_config = "[link]\ndial_groups = [\"bc\"]\n";
        let c = Router::start_configured(&admin, "line-c", &control, c_config, &[]).await;
        wait_links(&admin, "two links up", |l| {
            l.len() == 2 && l.iter().all(|l| l["state"] == "up")
        })
        .await;
        admin.dialers_and_hosts_on("line-a", "line-c").await;
        Self {
            controller,
            admin,
            a,
            b,
            c,
        }
    }

    /// Creates service `name` (attribute `#name`) with a Dial policy for `#name-client`
    /// and a Bind policy for `#name-host`.
    pub async fn service(&self, name: &str, encrypted: bool) {
        self.admin.service(name, &[name], encrypted).await;
        let role = format!("#{name}");
        for (kind, who) in [("Dial", "client"), ("Bind", "host")] {
            self.admin
                .service_policy(
                    &format!("{name}-{kind}"),
                    kind,
                    &[&format!("#{name}-{who}")],
                    &[&role],
                )
                .await;
        }
    }

    /// Enrolls a host identity of service `service` (allowed on router C only).
    #[cfg(feature = "sdk")]
    pub async fn host_identity(&self, service: &str) -> weft_sdk::Identity {
        self.enrolled(
            &format!("{service}-h"),
            &[&format!("{service}-host"), "hoster"],
        )
        .await
    }

    /// Enrolls a client identity of service `service` (allowed on router A only).
    #[cfg(feature = "sdk")]
    pub async fn client_identity(&self, service: &str) -> weft_sdk::Identity {
        self.enrolled(
            &format!("{service}-c"),
            &[&format!("{service}-client"), "dialer"],
        )
        .await
    }

    /// SDK contexts of a host and a client of `service` ([`Self::host_identity`],
    /// [`Self::client_identity`]).
    #[cfg(feature = "sdk")]
    pub async fn contexts(&self, service: &str) -> (weft_sdk::Context, weft_sdk::Context) {
        let host = weft_sdk::Context::new(self.host_identity(service).await)
            .await
            .unwrap();
        let client = weft_sdk::Context::new(self.client_identity(service).await)
            .await
            .unwrap();
        (host, client)
    }

    #[cfg(feature = "sdk")]
    async fn enrolled(&self, name: &str, attrs: &[&str]) -> weft_sdk::Identity {
        let (_, jwt) = self.admin.identity(name, attrs).await;
        weft_sdk::enroll(&jwt).await.unwrap()
    }
}

/// Polls `GET /links` until `done` holds for the list, which it returns.
pub async fn wait_links(
    admin: &Admin,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let links = admin.get("links").await["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if done(&links) {
            return links;
        }
        assert!(Instant::now() < deadline, "{what}: links are {links:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Test logs to stderr, filtered by `RUST_LOG` (once per process).
pub fn init_logs() {
    init_logs_or("warn");
}

/// Test logs to stderr, filtered by `RUST_LOG`, else by `default` (once per process;
/// the first call's filter holds).
pub fn init_logs_or(default: &str) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
            )
            .with_test_writer()
            .try_init();
    });
}

/// A `weft tunnel dial|host` process (killed on drop).
#[derive(Debug)]
pub struct Tunnel {
    process: Process,
}

impl Tunnel {
    /// Starts `weft tunnel <side> --identity <file> --service <service> <extra…>` and
    /// waits until it reports that it is serving.
    pub fn start(side: &str, identity: &Path, service: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(bin_dir().join("weft"))
            .args(["tunnel", side, "--identity"])
            .arg(identity)
            .args(["--service", service])
            .args(extra)
            .env("RUST_LOG", log_level())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The first stderr line says it is up (or why it is not).
        let stderr = child.stderr.take().unwrap();
        let mut reader = std::io::BufReader::new(stderr);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(
            line.starts_with("tunnel "),
            "weft tunnel {side} failed: {line}"
        );
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::stderr()));
        Self {
            process: Process(Some(child)),
        }
    }
}

impl Tunnel {
    /// Kills the process (SIGKILL): its sockets close without a word.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.process.kill();
    }
}
