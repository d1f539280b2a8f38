//! A real `weft-controller` process on loopback ([`Ctl`]) and an admin session on its
//! management API ([`Admin`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::boot;
use crate::fixtures::{SDK_AUTH_BODY, jwt_claims, make_csr};
use crate::process::{bin_dir, log_level};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};

/// A `weft-controller run` process (killed on drop) in a data directory of its own.
#[derive(Debug)]
pub struct Ctl {
    child: Option<Child>,
    /// Its data directory (`controller.addr`, `pki/`, `admin.password`, …).
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// The HTTPS (Edge Client and Management API) address.
    pub addr: SocketAddr,
    /// Where the controller appends the outcome of checking each response against
    /// OpenZiti's contract ([`CONTRACT_LOG_ENV`]).
    contract_log: PathBuf,
}

/// The controller's switch for checking its responses against OpenZiti's API contract
/// (`weft_controller::api::contract::LOG_ENV`; the test kit does not link the controller).
pub const CONTRACT_LOG_ENV: &str = "WEFT_API_CONTRACT_LOG";

/// Where the outcomes of the contract checks of every test run are kept for the
/// conformance report (`observed/*.jsonl`): `WEFT_API_CONTRACT_DIR`, else
/// `target/api-contract` of the target directory these tests run from.
pub fn contract_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEFT_API_CONTRACT_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("api-contract")
}

impl Ctl {
    /// Starts a controller in a fresh temporary directory.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts with extra TOML config lines.
    pub fn start_with(extra_config: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut c = Self::spawn(&dir, extra_config, tmp.path());
        c._tmp = Some(tmp);
        c
    }

    /// Starts with extra TOML config lines and the open-files limit (`ulimit -n`) set
    /// to `nofile` for the controller process.
    pub fn start_with_nofile(extra_config: &str, nofile: u64) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut c = Self::spawn_limited(&dir, extra_config, tmp.path(), Some(nofile));
        c._tmp = Some(tmp);
        c
    }

    /// Starts with extra TOML config lines, logging JSON lines at `info` into a file
    /// (its path is [`Self::log_file`]) instead of the test's stderr.
    pub fn start_with_json_log(extra_config: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let log = tmp.path().join("controller.log.jsonl");
        let mut c = Self::spawn_with(&dir, extra_config, tmp.path(), None, Some(&log));
        c._tmp = Some(tmp);
        c
    }

    /// Starts (again) in an existing directory.
    pub fn spawn(dir: &Path, extra_config: &str, cfg_dir: &Path) -> Self {
        Self::spawn_limited(dir, extra_config, cfg_dir, None)
    }

    /// Where [`Self::start_with_json_log`] logs.
    pub fn log_file(&self) -> PathBuf {
        self.dir
            .parent()
            .unwrap_or(&self.dir)
            .join("controller.log.jsonl")
    }

    fn spawn_limited(dir: &Path, extra_config: &str, cfg_dir: &Path, nofile: Option<u64>) -> Self {
        Self::spawn_with(dir, extra_config, cfg_dir, nofile, None)
    }

    fn spawn_with(
        dir: &Path,
        extra_config: &str,
        cfg_dir: &Path,
        nofile: Option<u64>,
        json_log: Option<&Path>,
    ) -> Self {
        let cfg = cfg_dir.join("controller.toml");
        boot::write_controller_config(&cfg, extra_config).unwrap();
        // A restart in the same directory must not read the last run's addresses.
        let _ = std::fs::remove_file(dir.join("controller.addr"));
        let _ = std::fs::remove_file(dir.join("control.addr"));
        let run = boot::controller_command(&bin_dir().join("weft-controller"), dir, &cfg);
        let mut cmd = match nofile {
            None => run,
            Some(n) => {
                // `exec` keeps the pid: the child is the controller itself.
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(run.get_program())
                    .args(run.get_args());
                c
            }
        };
        let contract_log = cfg_dir.join("api-contract.jsonl");
        cmd.env("RUST_LOG", log_level())
            .env(CONTRACT_LOG_ENV, &contract_log)
            .stdout(Stdio::null());
        match json_log {
            Some(path) => cmd
                .env("RUST_LOG", "info")
                .env("WEFT_LOG_FORMAT", "json")
                .stderr(std::fs::File::create(path).unwrap()),
            None => cmd.stderr(Stdio::inherit()),
        };
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            if let Some(info) = boot::controller_info(dir) {
                break info.api;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("controller exited during start: {status}");
            }
            assert!(Instant::now() < deadline, "controller did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child: Some(child),
            dir: dir.to_path_buf(),
            _tmp: None,
            addr,
            contract_log,
        }
    }

    /// Stops the process, keeping the directory (returned for a restart).
    pub fn stop(mut self) -> (Option<tempfile::TempDir>, PathBuf) {
        self.kill();
        (self._tmp.take(), self.dir.clone())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.check_contract();
        }
    }

    /// Reads what the controller recorded of checking each of its responses against
    /// OpenZiti's contract, keeps it in [`contract_dir`] for the report, and fails the
    /// test on any response that breaks the contract (unless it is failing already).
    fn check_contract(&self) {
        let Ok(text) = std::fs::read_to_string(&self.contract_log) else {
            return;
        };
        let _ = std::fs::remove_file(&self.contract_log);
        let observed = contract_dir().join("observed");
        if std::fs::create_dir_all(&observed).is_ok() {
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = format!("{}-{n}.jsonl", std::process::id());
            let _ = std::fs::write(observed.join(name), &text);
        }
        let mut problems: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|o| {
                let p = o["problems"].as_array().filter(|p| !p.is_empty())?;
                let p: Vec<&str> = p.iter().filter_map(Value::as_str).collect();
                Some(format!(
                    "{} {} {} → {}: {}",
                    o["api"].as_str().unwrap_or_default(),
                    o["method"].as_str().unwrap_or_default(),
                    o["path"].as_str().unwrap_or_default(),
                    o["status"],
                    p.join("; ")
                ))
            })
            .collect();
        problems.sort();
        problems.dedup();
        if !problems.is_empty() && !std::thread::panicking() {
            panic!(
                "responses that break OpenZiti's API contract \
                 (controller-lite/contract/, docs/controller-api.md):\n{}",
                problems.join("\n")
            );
        }
    }

    /// Process id of the controller.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap()
    }

    /// Resident set size of the controller process in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        crate::process::rss_kib(self.pid())
    }

    /// The Prometheus text of the metrics listener (`[metrics] listen` must be set).
    pub fn metrics(&self) -> String {
        self.ops_get("/metrics")
    }

    /// The whole HTTP answer (status line, headers, body) of the operations endpoint on
    /// `[metrics] listen` to `GET path`.
    pub fn ops_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let addr = std::fs::read_to_string(self.dir.join("metrics.addr")).unwrap();
        let mut s = std::net::TcpStream::connect(addr.trim()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// One metric's value from [`Self::metrics`].
    pub fn metric(&self, name: &str) -> u64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing in {text}"))
    }

    /// TLS client configuration trusting the controller CA, without a client
    /// certificate and without ALPN.
    pub fn client_tls(&self) -> Arc<rustls::ClientConfig> {
        Arc::new(self.tls(None))
    }

    /// TLS client configuration presenting `chain` (leaf first) with `key_pem`.
    pub fn client_tls_with_chain(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key_pem: &str,
    ) -> Arc<rustls::ClientConfig> {
        let roots = weft_tls::pem::roots(self.ca_pem().as_bytes()).unwrap();
        let key = weft_tls::pem::private_key(key_pem.as_bytes()).unwrap();
        Arc::new(weft_tls::client::verified(roots, Some((chain, key))).unwrap())
    }

    /// reqwest client presenting `chain` (leaf first) with `key_pem`.
    pub fn http_with_chain(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key_pem: &str,
    ) -> reqwest::Client {
        let tls = Arc::try_unwrap(self.client_tls_with_chain(chain, key_pem)).unwrap();
        self.build(tls)
    }

    /// Opens a TLS connection to the HTTPS listener (handshake completed).
    pub async fn tls_connect(
        &self,
        tls: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
    }

    /// `https://localhost:<port>{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// A Management API URL: `/edge/management/v1{path}`.
    pub fn mgmt(&self, path: &str) -> String {
        self.url(&format!("/edge/management/v1{path}"))
    }

    /// An Edge Client API URL: `/edge/client/v1{path}`.
    pub fn client_url(&self, path: &str) -> String {
        self.url(&format!("/edge/client/v1{path}"))
    }

    /// The admin password the controller generated at its first start.
    pub fn admin_password(&self) -> String {
        std::fs::read_to_string(self.dir.join("admin.password"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The controller's root CA, PEM.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.join("pki/root-ca.cert.pem")).unwrap()
    }

    fn tls(&self, client_cert: Option<(&str, &str)>) -> rustls::ClientConfig {
        self.tls_with(client_cert, weft_tls::VERSIONS)
    }

    fn tls_with(
        &self,
        client_cert: Option<(&str, &str)>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ClientConfig {
        let roots = weft_tls::pem::roots(self.ca_pem().as_bytes()).unwrap();
        let identity = client_cert.map(|(cert, key)| {
            (
                weft_tls::pem::certificates(cert.as_bytes()).unwrap(),
                weft_tls::pem::private_key(key.as_bytes()).unwrap(),
            )
        });
        weft_tls::client::verified_with_versions(roots, identity, versions).unwrap()
    }

    fn build(&self, tls: rustls::ClientConfig) -> reqwest::Client {
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .resolve("localhost", self.addr)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// Client trusting the controller CA, without a client certificate.
    pub fn http(&self) -> reqwest::Client {
        self.build(self.tls(None))
    }

    /// Client presenting a certificate.
    pub fn http_with_cert(&self, cert_pem: &str, key_pem: &str) -> reqwest::Client {
        self.build(self.tls(Some((cert_pem, key_pem))))
    }

    /// Client limited to TLS 1.2 (like the C SDK's mbedTLS build), with a certificate.
    pub fn http_tls12_with_cert(&self, cert_pem: &str, key_pem: &str) -> reqwest::Client {
        self.build(self.tls_with(Some((cert_pem, key_pem)), &[&rustls::version::TLS12]))
    }

    /// Logs in as admin; returns the `zt-session` token.
    pub async fn admin_token(&self) -> String {
        self.admin_token_with(&self.admin_password()).await
    }

    /// Logs in as admin with `password` (a controller that joined a cluster has no
    /// password file: the admin is the first controller's); returns the token.
    pub async fn admin_token_with(&self, password: &str) -> String {
        let res = self
            .http()
            .post(self.mgmt("/authenticate?method=password"))
            .json(&json!({"username": "admin", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        v["data"]["token"].as_str().unwrap().to_string()
    }

    /// POSTs a management entity; returns the response JSON and status.
    pub async fn create(&self, token: &str, collection: &str, body: Value) -> (u16, Value) {
        let res = self
            .http()
            .post(self.mgmt(&format!("/{collection}")))
            .header("zt-session", token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    /// `GET /edge/management/v1{path}` with `token`; the answer, asserting 200.
    pub async fn get_ok(&self, token: &str, path: &str) -> Value {
        let (status, v) = self.call(reqwest::Method::GET, path, token, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// Calls the management API: `method` on `/edge/management/v1{path}` with an optional
    /// JSON body; returns the status and the response JSON.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_url(method, self.mgmt(path), token, body).await
    }

    /// [`Self::call`] on the client API (`/edge/client/v1{path}`).
    pub async fn call_client(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_url(method, self.client_url(path), token, body)
            .await
    }

    async fn call_url(
        &self,
        method: reqwest::Method,
        url: String,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http().request(method, url).header("zt-session", token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Creates an entity and returns its id (asserting 201).
    pub async fn create_ok(&self, token: &str, collection: &str, body: Value) -> String {
        let (status, v) = self.create(token, collection, body).await;
        assert_eq!(status, 201, "{v}");
        v["data"]["id"].as_str().unwrap().to_string()
    }

    /// Creates an identity, enrolls it with a fresh key; returns (id, cert PEM, key PEM).
    pub async fn enrolled_identity(
        &self,
        token: &str,
        name: &str,
        attrs: &[&str],
    ) -> (String, String, String) {
        let (status, v) = self
            .create(token, "identities", boot::identity_body(name, attrs))
            .await;
        assert_eq!(status, 201, "{v}");
        let id = v["data"]["id"].as_str().unwrap().to_string();
        let jwt = v["data"]["enrollment"]["ott"]["jwt"].as_str().unwrap();
        let jti = jwt_claims(jwt)["jti"].as_str().unwrap().to_string();
        let (csr, key) = make_csr(&id);
        let res = self.enroll(&jti, &csr).await;
        assert_eq!(res.0, 200, "{}", res.1);
        let cert = res.1["data"]["cert"].as_str().unwrap().to_string();
        (id, cert, key)
    }

    /// POST /enroll?method=ott; returns (status, JSON).
    pub async fn enroll(&self, jti: &str, csr: &str) -> (u16, Value) {
        let res = self
            .http()
            .post(self.url(&format!("/enroll?method=ott&token={jti}")))
            .header("content-type", "text/plain")
            .header("accept", "application/json")
            .body(csr.to_string())
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    /// `POST /authenticate?method=cert` with the C SDK's body, over `http` (whose TLS
    /// client certificate is what authenticates).
    pub async fn cert_authenticate(&self, http: &reqwest::Client) -> reqwest::Response {
        http.post(self.client_url("/authenticate?method=cert"))
            .header("content-type", "application/json")
            .body(SDK_AUTH_BODY)
            .send()
            .await
            .unwrap()
    }

    /// Authenticates with a certificate on the client API; returns (client, token).
    pub async fn cert_login(&self, cert: &str, key: &str) -> (reqwest::Client, String) {
        let http = self.http_with_cert(cert, key);
        let res = self.cert_authenticate(&http).await;
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        (http, v["data"]["token"].as_str().unwrap().to_string())
    }
}

impl Ctl {
    /// The router control channel address as routers dial it (`localhost:<port>`).
    pub fn control_addr(&self) -> String {
        boot::controller_info(&self.dir)
            .expect("the controller wrote its addresses at start")
            .control_addr
    }

    /// The port of [`Self::control_addr`].
    pub fn control_port(&self) -> u16 {
        self.control_addr()
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("the control address ends in a port")
    }

    /// Logs in as admin on the management API.
    pub async fn admin(&self) -> Admin {
        self.admin_with(&self.admin_password()).await
    }

    /// Logs in as admin with `password` (a controller that joined a cluster keeps no
    /// password file: the cluster's first controller has it).
    pub async fn admin_with(&self, password: &str) -> Admin {
        Admin(
            boot::Management::login_with(self.http(), &self.url(""), password)
                .await
                .unwrap(),
        )
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A management API session as the admin ([`boot::Management`], panicking on errors).
#[derive(Debug, Clone)]
pub struct Admin(boot::Management);

impl Admin {
    /// `POST /{collection}`; returns the created entity's `data` (asserting 201).
    pub async fn create(&self, collection: &str, body: Value) -> Value {
        self.0.create(collection, body).await.unwrap()
    }

    /// `GET /{path}`; returns the whole answer.
    pub async fn get(&self, path: &str) -> Value {
        self.0.get(path).await.unwrap()
    }

    /// `POST /{path}` with `body` (asserting 200 or 201); returns the whole answer.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.0.post(path, body).await.unwrap()
    }

    /// `PATCH /{path}` with `body` (asserting 200).
    pub async fn patch(&self, path: &str, body: Value) {
        self.0.patch(path, body).await.unwrap();
    }

    /// Creates a posture check; returns its id.
    pub async fn posture_check(&self, body: Value) -> String {
        let v = self.create("posture-checks", body).await;
        v["id"].as_str().unwrap().to_string()
    }

    /// Makes the service policy `policy` require the posture checks `roles` select.
    pub async fn require_posture(&self, policy: &str, roles: &[&str]) {
        self.patch(
            &format!("service-policies/{policy}"),
            json!({"postureCheckRoles": roles}),
        )
        .await;
    }

    /// `DELETE /{collection}/{id}` (asserting 200).
    pub async fn delete(&self, collection: &str, id: &str) {
        self.0.delete(collection, id).await.unwrap();
    }

    /// Creates an identity with an OTT enrollment; returns (id, enrollment JWT).
    pub async fn identity(&self, name: &str, attrs: &[&str]) -> (String, String) {
        let v = self
            .create("identities", boot::identity_body(name, attrs))
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

    /// Dialers (identities with attribute `dialer`) may use only the router with
    /// attribute `dial_router`, hosts (`hoster`) only `host_router`; every service may
    /// use every router. A circuit from a dialer to a host must so cross the mesh.
    pub async fn dialers_and_hosts_on(&self, dial_router: &str, host_router: &str) {
        for (name, identities, router) in [
            ("dialers", "#dialer", dial_router),
            ("hosts", "#hoster", host_router),
        ] {
            self.create(
                "edge-router-policies",
                json!({"name": name, "edgeRouterRoles": [format!("#{router}")],
                       "identityRoles": [identities]}),
            )
            .await;
        }
        self.create(
            "service-edge-router-policies",
            json!({"name": "all-services", "edgeRouterRoles": ["#all"], "serviceRoles": ["#all"]}),
        )
        .await;
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
