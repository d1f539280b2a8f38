//! The steps of booting a local Weft network from the workspace binaries, each once,
//! fallible: the test kit's harness ([`crate::Ctl`], [`crate::Router`]) runs them and
//! panics on an error (test code), `weft-perf` runs them and reports the error (a tool).
//!
//! A controller: [`write_controller_config`], [`controller_command`], then
//! [`controller_info`] once it listens. A router: created at the controller with
//! [`edge_router_body`], configured with [`router_config`], enrolled with
//! [`enroll_router`], run with [`router_command`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

/// Why a boot step failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A file could not be read or written, or a process not started.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A step ran and failed.
    #[error("{0}")]
    Failed(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BootError {
    let what = what.into();
    move |source| BootError::Io { what, source }
}

/// Writes `controller.toml` at `path`: both listeners on an ephemeral loopback port
/// (each unless `extra` sets it), then `extra` lines.
pub fn write_controller_config(path: &Path, extra: &str) -> Result<(), BootError> {
    // Free ports unless `extra` names the addresses (a controller restarted where its
    // routers and clients expect it).
    let sets = |key: &str| {
        extra.lines().any(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    };
    let mut text = String::new();
    for key in ["http.listen", "control.listen"] {
        if !sets(key) {
            text.push_str(&format!("{key} = \"127.0.0.1:0\"\n"));
        }
    }
    std::fs::write(path, format!("{text}{extra}\n"))
        .map_err(io(format!("writing {}", path.display())))
}

/// `weft-controller run --data-dir <data_dir> --config <config>`.
pub fn controller_command(bin: &Path, data_dir: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config")
        .arg(config);
    cmd
}

/// Where a running controller listens, as it wrote it into its data directory.
#[derive(Debug, Clone)]
pub struct ControllerInfo {
    /// The HTTPS (Edge Client and Management API) address.
    pub api: SocketAddr,
    /// The control channel address as routers dial it (`localhost:<port>`, the name in
    /// the controller's certificate).
    pub control_addr: String,
    /// Its data directory.
    pub data_dir: PathBuf,
}

impl ControllerInfo {
    /// The API base URL, `https://localhost:<port>`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.api.port())
    }

    /// The root CA, PEM.
    pub fn ca_pem(&self) -> Result<String, BootError> {
        let path = self.data_dir.join("pki/root-ca.cert.pem");
        std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))
    }

    /// The admin password generated at the first start.
    pub fn admin_password(&self) -> Result<String, BootError> {
        let path = self.data_dir.join("admin.password");
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .map_err(io(format!("reading {}", path.display())))
    }
}

/// The controller's addresses once it has written both (`controller.addr`,
/// `control.addr`); `None` before.
pub fn controller_info(data_dir: &Path) -> Option<ControllerInfo> {
    let read = |name: &str| {
        std::fs::read_to_string(data_dir.join(name))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let api = read("controller.addr")?.parse().ok()?;
    let control = read("control.addr")?;
    let (_, port) = control.rsplit_once(':')?;
    Some(ControllerInfo {
        api,
        control_addr: format!("localhost:{port}"),
        data_dir: data_dir.to_owned(),
    })
}

/// The management API body creating edge router `name` (role attribute `name`) that
/// listens for SDKs at `tls://localhost:<edge_port>`.
pub fn edge_router_body(name: &str, edge_port: u16) -> Value {
    json!({"name": name, "roleAttributes": [name],
           "supportedProtocols": {"tls": format!("tls://localhost:{edge_port}")}})
}

/// The management API body creating identity `name` with `attrs` and a one-time
/// enrollment.
pub fn identity_body(name: &str, attrs: &[&str]) -> Value {
    json!({"name": name, "type": "User", "isAdmin": false,
           "roleAttributes": attrs, "enrollment": {"ott": true}})
}

/// A `router.toml`: the edge listener on loopback `edge_port` advertised as
/// `localhost`, the controller at `control_addr`, certificates under `certs/`, a short
/// shutdown grace, then `extra` lines. The sections are written as dotted keys
/// (`edge.listen = ...`), so `extra` may add keys the same way
/// (`metrics.listen = ...`) or start a section of its own (`[link]`), but not reopen
/// `[edge]`, `[identity]`, `[control]` or `[runtime]`.
pub fn router_config(edge_port: u16, control_addr: &str, extra: &str) -> String {
    router_config_controllers(edge_port, &[control_addr], extra)
}

/// [`router_config`] with several controllers, tried in order.
pub fn router_config_controllers(edge_port: u16, control_addrs: &[&str], extra: &str) -> String {
    let list: Vec<String> = control_addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "identity.cert = \"certs/server.cert\"\nidentity.key = \"certs/server.key\"\n\
         edge.listen = \"127.0.0.1:{edge_port}\"\nedge.advertised_host = \"localhost\"\n\
         control.controllers = [{}]\nruntime.shutdown_grace_ms = 100\n{extra}",
        list.join(", ")
    )
}

/// Runs `weft-router enroll --jwt <jwt> --config <config>`; its stderr in the error.
pub fn enroll_router(bin: &Path, jwt: &Path, config: &Path, log: &str) -> Result<(), BootError> {
    let out = Command::new(bin)
        .arg("enroll")
        .arg("--jwt")
        .arg(jwt)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", log)
        .output()
        .map_err(io("running weft-router enroll"))?;
    if !out.status.success() {
        return Err(BootError::Failed(format!(
            "weft-router enroll failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// `weft-router run --config <config>`, with `--io <io>` when given.
pub fn router_command(bin: &Path, config: &Path, io: Option<&str>) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("run").arg("--config").arg(config);
    if let Some(io) = io {
        cmd.args(["--io", io]);
    }
    cmd
}

/// A management API session as the admin: the fallible client both the test kit's
/// [`crate::Admin`] and `weft-perf` use.
#[derive(Debug, Clone)]
pub struct Management {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Management {
    /// Logs in at `url` (`https://localhost:<port>`) as `admin` with `password`,
    /// trusting the CA bundle `ca_pem`; requests time out after 30 s.
    pub async fn login(url: &str, ca_pem: &str, password: &str) -> Result<Self, BootError> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| BootError::Failed(format!("{what}: {e}"));
        let tls = weft_tls::client::verified_from_pem(ca_pem.as_bytes(), None)
            .map_err(|e| failed("trusting the controller CA", &e))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| failed("building the HTTP client", &e))?;
        Self::login_with(http, url, password).await
    }

    /// [`Self::login`] over an HTTP client the caller built (trust, name resolution).
    pub async fn login_with(
        http: reqwest::Client,
        url: &str,
        password: &str,
    ) -> Result<Self, BootError> {
        let base = format!("{url}/edge/management/v1");
        let res = http
            .post(format!("{base}/authenticate?method=password"))
            .json(&json!({"username": "admin", "password": password}))
            .send()
            .await
            .map_err(|e| BootError::Failed(format!("admin login: {e}")))?;
        let status = res.status();
        let v: Value = res
            .json()
            .await
            .map_err(|e| BootError::Failed(format!("admin login answer: {e}")))?;
        if !status.is_success() {
            return Err(BootError::Failed(format!(
                "admin login answered {status}: {v}"
            )));
        }
        let token = v["data"]["token"]
            .as_str()
            .ok_or_else(|| BootError::Failed(format!("no token in the login answer {v}")))?
            .to_owned();
        Ok(Self { http, base, token })
    }

    /// `POST /{collection}`; the created entity's `data` (an error unless 201).
    pub async fn create(&self, collection: &str, body: Value) -> Result<Value, BootError> {
        let res = self
            .http
            .post(format!("{}/{collection}", self.base))
            .header("zt-session", &self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| BootError::Failed(format!("creating {collection}: {e}")))?;
        let status = res.status();
        let v: Value = res
            .json()
            .await
            .map_err(|e| BootError::Failed(format!("creating {collection}: {e}")))?;
        if status.as_u16() != 201 {
            return Err(BootError::Failed(format!(
                "creating {collection} answered {status}: {v}"
            )));
        }
        Ok(v["data"].clone())
    }

    /// `POST /{path}` with `body`; the whole answer (an error unless 200 or 201).
    pub async fn post(&self, path: &str, body: Value) -> Result<Value, BootError> {
        let res = self
            .http
            .post(format!("{}/{path}", self.base))
            .header("zt-session", &self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| BootError::Failed(format!("POST {path}: {e}")))?;
        let status = res.status().as_u16();
        let v: Value = res
            .json()
            .await
            .map_err(|e| BootError::Failed(format!("POST {path}: reading the answer: {e}")))?;
        if status != 200 && status != 201 {
            return Err(BootError::Failed(format!(
                "POST {path} answered {status}: {v}"
            )));
        }
        Ok(v)
    }

    /// `GET /{path}`; the whole answer.
    pub async fn get(&self, path: &str) -> Result<Value, BootError> {
        self.http
            .get(format!("{}/{path}", self.base))
            .header("zt-session", &self.token)
            .send()
            .await
            .map_err(|e| BootError::Failed(format!("GET {path}: {e}")))?
            .json()
            .await
            .map_err(|e| BootError::Failed(format!("GET {path}: reading the answer: {e}")))
    }

    /// `PATCH /{path}` with `body` (an error unless 200).
    pub async fn patch(&self, path: &str, body: Value) -> Result<(), BootError> {
        let res = self
            .http
            .patch(format!("{}/{path}", self.base))
            .header("zt-session", &self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| BootError::Failed(format!("PATCH {path}: {e}")))?;
        let status = res.status();
        if status != 200 {
            let text = res.text().await.unwrap_or_default();
            return Err(BootError::Failed(format!(
                "PATCH {path} answered {status}: {text}"
            )));
        }
        Ok(())
    }

    /// `DELETE /{collection}/{id}` (an error unless 200).
    pub async fn delete(&self, collection: &str, id: &str) -> Result<(), BootError> {
        let res = self
            .http
            .delete(format!("{}/{collection}/{id}", self.base))
            .header("zt-session", &self.token)
            .send()
            .await
            .map_err(|e| BootError::Failed(format!("deleting {collection}/{id}: {e}")))?;
        if res.status() != 200 {
            return Err(BootError::Failed(format!(
                "deleting {collection}/{id} answered {}",
                res.status()
            )));
        }
        Ok(())
    }
}
