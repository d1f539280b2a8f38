//! Weft's system-test kit: a local network of real `weft-controller` and
//! `weft-router` processes on loopback, and an admin client to shape its model.
//!
//! ```no_run
//! # async fn demo() {
//! let net = weft_tests::Network::start().await;
//! net.service("echo", &["echo"], true).await;
//! # }
//! ```
//!
//! Tests in this crate are integration tests of the whole system; their helpers panic
//! on failure (they are test code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long a process may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The directory holding the workspace binaries (`target/<profile>`): `WEFT_BIN_DIR`
/// if set; else the profile directory these tests run from, after a `cargo build` of
/// the controller and router binaries if any of their sources is newer than them (a
/// workspace test run has already built them, so usually nothing is built).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("WEFT_BIN_DIR") {
            return PathBuf::from(dir);
        }
        // target/<profile>/deps/<test binary>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        if binaries_are_current(&profile_dir) {
            return profile_dir;
        }
        let target_dir = profile_dir.parent().unwrap();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(other) => other.to_string(),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--profile", &profile])
            .args(["-p", "weft-controller", "-p", "weft-router", "--bins"])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build for the system-test binaries");
        assert!(
            status.success(),
            "building weft-controller/weft-router failed"
        );
        profile_dir
    })
}

/// Whether both binaries exist and are newer than every source they are built from.
fn binaries_are_current(profile_dir: &Path) -> bool {
    fn newest(path: &Path) -> Option<std::time::SystemTime> {
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_dir() {
            return meta.modified().ok();
        }
        std::fs::read_dir(path)
            .ok()?
            .filter_map(|e| newest(&e.ok()?.path()))
            .max()
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let sources = ["Cargo.lock", "wire", "router", "controller-lite", "sdk"]
        .iter()
        .filter_map(|p| {
            newest(
                &root
                    .join(p)
                    .join(if p.ends_with(".lock") { "" } else { "src" }),
            )
        })
        .max();
    let built = ["weft-controller", "weft-router", "weft"]
        .iter()
        .map(|b| {
            std::fs::metadata(profile_dir.join(b))
                .and_then(|m| m.modified())
                .ok()
        })
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().min());
    matches!((sources, built), (Some(s), Some(b)) if b >= s)
}

/// A free TCP port on loopback (bound and released; fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Logs of the processes: `RUST_LOG` if set, else warnings only.
fn log_level() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())
}

fn wait_for_file(path: &Path, child: &mut Child, what: &str) -> String {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.trim().is_empty() {
                return s.trim().to_string();
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited during start: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A killed-on-drop child process.
#[derive(Debug)]
struct Process(Option<Child>);

impl Process {
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `weft-controller` process in a temporary data directory.
#[derive(Debug)]
pub struct Controller {
    process: Process,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The Edge API address.
    pub api_port: u16,
    /// The router control channel address (`host:port`).
    pub control_addr: String,
    _tmp: tempfile::TempDir,
}

impl Controller {
    /// Starts a controller with extra `controller.toml` lines.
    pub fn start(extra_config: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let cfg = tmp.path().join("controller.toml");
        std::fs::write(
            &cfg,
            format!("listen = \"127.0.0.1:0\"\ncontrol_listen = \"127.0.0.1:0\"\n{extra_config}\n"),
        )
        .unwrap();
        let mut child = Command::new(bin_dir().join("weft-controller"))
            .arg("run")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", log_level())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let api: std::net::SocketAddr =
            wait_for_file(&data_dir.join("controller.addr"), &mut child, "controller")
                .parse()
                .unwrap();
        let control = wait_for_file(&data_dir.join("control.addr"), &mut child, "controller");
        let control_port = control.rsplit_once(':').unwrap().1;
        Self {
            process: Process(Some(child)),
            data_dir,
            api_port: api.port(),
            control_addr: format!("localhost:{control_port}"),
            _tmp: tmp,
        }
    }

    /// The Edge API base URL.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.api_port)
    }

    /// The controller's root CA, PEM.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("pki/root-ca.cert.pem")).unwrap()
    }

    /// The admin password it generated.
    pub fn admin_password(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.password"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Logs in as admin.
    pub async fn admin(&self) -> Admin {
        let tls = weft_sdk::bootstrap::verified_tls(&self.ca_pem()).unwrap();
        let http = weft_sdk::bootstrap::http_client(tls).unwrap();
        let base = format!("{}/edge/management/v1", self.url());
        let res = http
            .post(format!("{base}/authenticate?method=password"))
            .json(&json!({"username": "admin", "password": self.admin_password()}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "admin login");
        let v: Value = res.json().await.unwrap();
        Admin {
            http,
            base,
            token: v["data"]["token"].as_str().unwrap().to_string(),
        }
    }

    /// Stops the process.
    pub fn stop(&mut self) {
        self.process.kill();
    }
}

/// A management API session.
#[derive(Debug, Clone)]
pub struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    /// `POST /{collection}`; returns the created entity's `data`.
    pub async fn create(&self, collection: &str, body: Value) -> Value {
        let res = self
            .http
            .post(format!("{}/{collection}", self.base))
            .header("zt-session", &self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let v: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "create {collection}: {v}");
        v["data"].clone()
    }

    /// `GET /{path}`; returns the whole answer.
    pub async fn get(&self, path: &str) -> Value {
        let res = self
            .http
            .get(format!("{}/{path}", self.base))
            .header("zt-session", &self.token)
            .send()
            .await
            .unwrap();
        res.json().await.unwrap()
    }

    /// `DELETE /{collection}/{id}`.
    pub async fn delete(&self, collection: &str, id: &str) {
        let res = self
            .http
            .delete(format!("{}/{collection}/{id}", self.base))
            .header("zt-session", &self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "delete {collection}/{id}");
    }

    /// Creates an identity with an OTT enrollment; returns (id, enrollment JWT).
    pub async fn identity(&self, name: &str, attrs: &[&str]) -> (String, String) {
        let v = self
            .create(
                "identities",
                json!({"name": name, "type": "User", "isAdmin": false,
                       "roleAttributes": attrs, "enrollment": {"ott": true}}),
            )
            .await;
        let id = v["id"].as_str().unwrap().to_string();
        let detail = self.get(&format!("identities/{id}")).await;
        let jwt = detail["data"]["enrollment"]["ott"]["jwt"]
            .as_str()
            .unwrap_or_else(|| panic!("no enrollment JWT in {detail}"))
            .to_string();
        (id, jwt)
    }

    /// Creates a service; returns its id.
    pub async fn service(&self, name: &str, attrs: &[&str], encrypted: bool) -> String {
        let v = self
            .create(
                "services",
                json!({"name": name, "roleAttributes": attrs, "encryptionRequired": encrypted}),
            )
            .await;
        v["id"].as_str().unwrap().to_string()
    }

    /// Creates a Dial or Bind service policy; returns its id.
    pub async fn service_policy(
        &self,
        name: &str,
        kind: &str,
        identity_roles: &[&str],
        service_roles: &[&str],
    ) -> String {
        let v = self
            .create(
                "service-policies",
                json!({"name": name, "type": kind, "semantic": "AnyOf",
                       "identityRoles": identity_roles, "serviceRoles": service_roles}),
            )
            .await;
        v["id"].as_str().unwrap().to_string()
    }

    /// Lets every identity use every router for every service.
    pub async fn open_routers(&self) {
        self.create(
            "edge-router-policies",
            json!({"name": "all-routers", "edgeRouterRoles": ["#all"], "identityRoles": ["#all"]}),
        )
        .await;
        self.create(
            "service-edge-router-policies",
            json!({"name": "all-services", "edgeRouterRoles": ["#all"], "serviceRoles": ["#all"]}),
        )
        .await;
    }
}

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
}

impl Router {
    /// Creates edge router `name` at the controller, enrolls it with
    /// `weft-router enroll`, starts `weft-router run` (with `extra_args`, e.g.
    /// `["--io", "epoll"]`) and waits until the controller sees it online.
    pub async fn start(ctl: &Controller, admin: &Admin, name: &str, extra_args: &[&str]) -> Self {
        let edge_port = free_port();
        let v = admin
            .create(
                "edge-routers",
                json!({"name": name, "roleAttributes": [name],
                       "supportedProtocols": {"tls": format!("tls://localhost:{edge_port}")}}),
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
        std::fs::write(
            &config,
            format!(
                "edge_listen = \"127.0.0.1:{edge_port}\"\nadvertised_host = \"localhost\"\n\
                 controller = \"{}\"\ncert = \"certs/server.cert\"\nkey = \"certs/server.key\"\n\
                 shutdown_grace_ms = 100\n",
                ctl.control_addr
            ),
        )
        .unwrap();
        let router = bin_dir().join("weft-router");
        let status = Command::new(&router)
            .arg("enroll")
            .arg("--jwt")
            .arg(dir.path().join("router.jwt"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", log_level())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "weft-router enroll failed");
        // `WEFT_ROUTER_IO=epoll|uring` runs every system test on that backend (CI runs
        // them on both); otherwise the router picks (`auto`).
        let io: Vec<String> = match std::env::var("WEFT_ROUTER_IO") {
            Ok(io) if !extra_args.contains(&"--io") => vec!["--io".into(), io],
            _ => Vec::new(),
        };
        let child = Command::new(&router)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(extra_args)
            .args(&io)
            .env("RUST_LOG", log_level())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let router = Self {
            process: Process(Some(child)),
            id,
            edge_port,
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while admin.get(&format!("edge-routers/{}", router.id)).await["data"]["isOnline"] != true {
            assert!(
                Instant::now() < deadline,
                "router {name} did not come online"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        router
    }

    /// Kills the process.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// A controller and one router, with every identity allowed on the router.
#[derive(Debug)]
pub struct Network {
    /// The controller.
    pub controller: Controller,
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
        let controller = Controller::start(controller_config);
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
    pub async fn enrolled(&self, name: &str, attrs: &[&str]) -> weft_sdk::Identity {
        let (_, jwt) = self.admin.identity(name, attrs).await;
        weft_sdk::enroll(&jwt).await.unwrap()
    }

    /// An authenticated SDK context for a new identity `name`.
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

/// Test logs to stderr, filtered by `RUST_LOG` (once per process).
pub fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
    });
}

/// A deterministic byte pattern for transfer checks.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
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
