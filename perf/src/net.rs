//! Boots a local Weft network from the workspace binaries: a `weft-controller`, one
//! `weft-router` per I/O backend measured, and `weft tunnel dial|host` endpoints for
//! each service, all on 127.0.0.1 in the run's temporary directory.
//!
//! Model: services `perf-bulk`/`perf-echo` (no end-to-end encryption) and
//! `perf-bulk-e2e`/`perf-echo-e2e` (encryption required), Dial for `#perf-client`,
//! Bind for `#perf-host`. Each router carries its own name as role attribute and an
//! edge router policy lets only identities with attribute `via-<router>` use it, so
//! the endpoints of one path meet on one router (a router only forwards to
//! terminators bound on itself).
//!
//! The two-router path adds routers `perf-link-a` (dials links) and `perf-link-b`
//! (listens for links): its dial endpoint may use A only and its host endpoint B only,
//! so a dial on A finds no terminator there and the controller routes the circuit over
//! the link A → B (as the system tests in `tests/tests/mesh.rs` force a path).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use crate::paths::{NetPath, ProcRef, RouterRef, WEFT, WEFT_2ROUTER, WEFT_E2E, WEFT_EPOLL};
use weft_testkit::boot;

use crate::process::{Binaries, Daemon, free_port};

/// How long a process may take to come up.
const START: Duration = Duration::from_secs(60);

/// Where the path targets listen (started by the run, shared by every path).
#[derive(Debug, Clone, Copy)]
pub struct TargetPorts {
    /// `iperf3 -s`.
    pub iperf3: u16,
    /// The suite's echo server.
    pub echo: u16,
}

/// A management API session on the controller (the test kit's fallible client).
pub type Admin = boot::Management;

/// One running router.
#[derive(Debug)]
pub struct RouterNode {
    daemon: Daemon,
    /// Its id on the controller.
    pub id: String,
    /// Its name (also its role attribute).
    pub name: String,
    /// The I/O backend it runs.
    pub io: String,
    /// Its metrics address.
    pub metrics: SocketAddr,
}

impl RouterNode {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Where the router sits, for a path.
    pub fn router_ref(&self) -> RouterRef {
        RouterRef {
            pid: self.daemon.pid(),
            metrics: self.metrics,
            io: self.io.clone(),
        }
    }
}

/// The running network.
#[derive(Debug)]
pub struct WeftNet {
    // Dropped in field order: tunnels first, then routers, then the controller.
    tunnels: Vec<Daemon>,
    routers: Vec<RouterNode>,
    controller: Daemon,
    admin: Admin,
    control_addr: String,
    dir: PathBuf,
    bins: Binaries,
    /// The Weft paths it offers.
    pub paths: Vec<NetPath>,
    /// Why io_uring could not be used, when it could not.
    pub uring_unavailable: Option<String>,
}

impl WeftNet {
    /// Boots the controller, the main router (io_uring if the host allows it, else
    /// epoll), the two linked routers of the two-router path (on the main router's
    /// backend) and, with `epoll_router`, a router on epoll; then the tunnel endpoints
    /// of every Weft path.
    pub async fn boot(
        bins: &Binaries,
        dir: &Path,
        targets: TargetPorts,
        epoll_router: bool,
    ) -> Result<Self> {
        let dir = dir.join("weft");
        std::fs::create_dir_all(&dir).context("creating the network directory")?;
        let data = dir.join("controller");
        let cfg = dir.join("controller.toml");
        boot::write_controller_config(&cfg, "")?;
        let mut controller = Daemon::spawn(
            "weft-controller",
            boot::controller_command(&bins.controller, &data, &cfg).env("RUST_LOG", "warn"),
            &dir,
        )?;
        controller
            .wait_until(START, || boot::controller_info(&data).is_some())
            .await?;
        let info = boot::controller_info(&data).context("the controller's addresses")?;
        let url = info.url();
        let ca = info.ca_pem()?;
        let password = info.admin_password()?;
        let admin = Admin::login(&url, &ca, &password).await?;

        // Services and policies.
        for (name, e2e) in [
            ("perf-bulk", false),
            ("perf-echo", false),
            ("perf-bulk-e2e", true),
            ("perf-echo-e2e", true),
        ] {
            admin
                .create(
                    "services",
                    json!({"name": name, "roleAttributes": ["perf"], "encryptionRequired": e2e}),
                )
                .await?;
        }
        for (name, kind, role) in [
            ("perf-dial", "Dial", "#perf-client"),
            ("perf-bind", "Bind", "#perf-host"),
        ] {
            admin
                .create(
                    "service-policies",
                    json!({"name": name, "type": kind, "semantic": "AnyOf",
                           "identityRoles": [role], "serviceRoles": ["#perf"]}),
                )
                .await?;
        }
        admin
            .create(
                "service-edge-router-policies",
                json!({"name": "all-services", "edgeRouterRoles": ["#all"], "serviceRoles": ["#all"]}),
            )
            .await?;

        let mut net = Self {
            tunnels: Vec::new(),
            routers: Vec::new(),
            controller,
            admin,
            control_addr: info.control_addr.clone(),
            dir,
            bins: bins.clone(),
            paths: Vec::new(),
            uring_unavailable: None,
        };

        // The main router: io_uring where possible.
        let main = match net.start_router("perf-main", "uring", 1).await {
            Ok(r) => r,
            Err(e) => {
                net.uring_unavailable = Some(format!("{e:#}"));
                net.start_router("perf-main-epoll", "epoll", 1).await?
            }
        };
        net.routers.push(main);
        let main_idx = net.routers.len() - 1;
        for (path, e2e) in [(WEFT, false), (WEFT_E2E, true)] {
            let p = net
                .start_path(path, (main_idx, main_idx), e2e, targets)
                .await?;
            net.paths.push(p);
        }
        let p = net.start_two_router_path(targets).await?;
        net.paths.push(p);
        if epoll_router && net.uring_unavailable.is_none() {
            let r = net.start_router("perf-epoll", "epoll", 1).await?;
            net.routers.push(r);
            let idx = net.routers.len() - 1;
            let p = net
                .start_path(WEFT_EPOLL, (idx, idx), false, targets)
                .await?;
            net.paths.push(p);
        }
        Ok(net)
    }

    /// Creates, enrolls and starts router `name` with `io` and `shards`, and waits
    /// until the controller sees it online.
    pub async fn start_router(&self, name: &str, io: &str, shards: usize) -> Result<RouterNode> {
        self.start_router_with(name, io, shards, "").await
    }

    /// [`Self::start_router`] with `extra` appended to its `router.toml` (a `[link]`
    /// section).
    pub async fn start_router_with(
        &self,
        name: &str,
        io: &str,
        shards: usize,
        extra: &str,
    ) -> Result<RouterNode> {
        let edge_port = free_port()?;
        let metrics_port = free_port()?;
        let v = self
            .admin
            .create("edge-routers", boot::edge_router_body(name, edge_port))
            .await?;
        let id = v["id"].as_str().context("router without id")?.to_owned();
        let detail = self.admin.get(&format!("edge-routers/{id}")).await?;
        let jwt = detail["data"]["enrollmentJwt"]
            .as_str()
            .context("no router enrollment JWT")?;
        self.admin
            .create(
                "edge-router-policies",
                json!({"name": format!("via-{name}"), "edgeRouterRoles": [format!("#{name}")],
                       "identityRoles": [format!("#via-{name}")]}),
            )
            .await?;
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).context("creating the router directory")?;
        std::fs::write(dir.join("router.jwt"), jwt).context("writing router.jwt")?;
        let config = dir.join("router.toml");
        std::fs::write(
            &config,
            boot::router_config(
                edge_port,
                &self.control_addr,
                &format!(
                    "runtime.shards = {shards}\nruntime.io = \"{io}\"\n\
                     edge.max_conns_per_connection = 65536\n\
                     metrics.listen = \"127.0.0.1:{metrics_port}\"\n{extra}"
                ),
            ),
        )
        .context("writing router.toml")?;
        boot::enroll_router(&self.bins.router, &dir.join("router.jwt"), &config, "warn")?;
        let mut daemon = Daemon::spawn(
            &format!("router-{name}"),
            boot::router_command(&self.bins.router, &config, Some(io)).env("RUST_LOG", "warn"),
            &self.dir,
        )?;
        let deadline = tokio::time::Instant::now() + START;
        loop {
            daemon.check_alive()?;
            let v = self.admin.get(&format!("edge-routers/{id}")).await?;
            if v["data"]["isOnline"] == true && crate::sysinfo::is_listening(metrics_port) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "router {name} did not come online; log:\n{}",
                    daemon.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(RouterNode {
            daemon,
            id,
            name: name.to_owned(),
            io: io.to_owned(),
            metrics: SocketAddr::from(([127, 0, 0, 1], metrics_port)),
        })
    }

    /// Enrolls identity `name` with `attrs` and saves it; returns the file.
    pub async fn identity(&self, name: &str, attrs: &[String]) -> Result<PathBuf> {
        let file = self.dir.join(format!("{name}.json"));
        if file.exists() {
            return Ok(file);
        }
        let v = self
            .admin
            .create(
                "identities",
                boot::identity_body(name, &attrs.iter().map(String::as_str).collect::<Vec<_>>()),
            )
            .await?;
        let id = v["id"].as_str().context("identity without id")?;
        let detail = self.admin.get(&format!("identities/{id}")).await?;
        let jwt = detail["data"]["enrollment"]["ott"]["jwt"]
            .as_str()
            .context("no enrollment JWT")?;
        let identity = weft_sdk::enroll(jwt)
            .await
            .with_context(|| format!("enrolling {name}"))?;
        identity
            .save(&file)
            .with_context(|| format!("saving {}", file.display()))?;
        Ok(file)
    }

    /// Starts `weft tunnel <side>` and waits for its "tunnel …" line; the caller
    /// owns the process.
    pub async fn spawn_tunnel(
        &self,
        label: &str,
        side: &str,
        identity: &Path,
        service: &str,
        extra: &[String],
    ) -> Result<Daemon> {
        let mut d = Daemon::spawn(
            label,
            Command::new(&self.bins.weft)
                .args(["tunnel", side, "--identity"])
                .arg(identity)
                .args(["--service", service])
                .args(extra)
                .env("RUST_LOG", "warn"),
            &self.dir,
        )?;
        d.wait_for_log_line(&format!("tunnel {side}:"), START)
            .await?;
        Ok(d)
    }

    /// [`Self::spawn_tunnel`], the process kept by the network; returns its pid.
    async fn tunnel(
        &mut self,
        label: &str,
        side: &str,
        identity: &Path,
        service: &str,
        extra: &[String],
    ) -> Result<u32> {
        let d = self
            .spawn_tunnel(label, side, identity, service, extra)
            .await?;
        let pid = d.pid();
        self.tunnels.push(d);
        Ok(pid)
    }

    /// The identities, tunnel endpoints (bulk and echo) and the path whose dial
    /// endpoint uses router `routers[dial]` and whose host endpoint `routers[host]`
    /// (the same router but on the two-router path).
    async fn start_path(
        &mut self,
        path: &str,
        (dial, host): (usize, usize),
        e2e: bool,
        targets: TargetPorts,
    ) -> Result<NetPath> {
        let dial_router = self.routers[dial].name.clone();
        let host_router = self.routers[host].name.clone();
        let client = self
            .identity(
                &format!("client-{dial_router}"),
                &["perf-client".into(), format!("via-{dial_router}")],
            )
            .await?;
        let host_file = self
            .identity(
                &format!("host-{host_router}"),
                &["perf-host".into(), format!("via-{host_router}")],
            )
            .await?;
        let suffix = if e2e { "-e2e" } else { "" };
        let mut procs = Vec::new();
        let mut entries = Vec::new();
        for (kind, target) in [("bulk", targets.iperf3), ("echo", targets.echo)] {
            let service = format!("perf-{kind}{suffix}");
            let host_pid = self
                .tunnel(
                    &format!("{path}-{kind}-host"),
                    "host",
                    &host_file,
                    &service,
                    &["--target".into(), format!("127.0.0.1:{target}")],
                )
                .await?;
            let port = free_port()?;
            let dial_pid = self
                .tunnel(
                    &format!("{path}-{kind}-dial"),
                    "dial",
                    &client,
                    &service,
                    &["--listen".into(), format!("127.0.0.1:{port}")],
                )
                .await?;
            entries.push(SocketAddr::from(([127, 0, 0, 1], port)));
            let mut p = vec![ProcRef::new("tunnel-dial", dial_pid)];
            if dial == host {
                p.push(ProcRef::new("router", self.routers[dial].pid()));
            } else {
                p.push(ProcRef::new("router-a", self.routers[dial].pid()));
                p.push(ProcRef::new("router-b", self.routers[host].pid()));
            }
            p.push(ProcRef::new("tunnel-host", host_pid));
            procs.push(p);
        }
        let r = &self.routers[dial];
        let routers = if dial == host {
            format!("weft-router ({}, 1 shard)", r.io)
        } else {
            format!("weft-router A ({}, 1 shard) → link → weft-router B", r.io)
        };
        Ok(NetPath {
            name: path.to_owned(),
            baseline: false,
            description: format!(
                "weft tunnel dial → {routers} → weft tunnel host, {}",
                if e2e {
                    "end-to-end encrypted service"
                } else {
                    "service without end-to-end encryption"
                }
            ),
            bulk: entries[0],
            echo: entries[1],
            echo_procs: procs.pop().unwrap_or_default(),
            bulk_procs: procs.pop().unwrap_or_default(),
            router: Some(r.router_ref()),
        })
    }

    /// The two-router path: routers `perf-link-b` (link listener) and `perf-link-a`
    /// (dials B), once their link is up, and the path whose dial endpoint uses A and
    /// whose host endpoint uses B.
    async fn start_two_router_path(&mut self, targets: TargetPorts) -> Result<NetPath> {
        let io = self.main_io().to_owned();
        let b_config = format!(
            "[link]\nlisten = \"127.0.0.1:{}\"\ngroups = [\"perf\"]\ndial_groups = []\n",
            free_port()?
        );
        let b = self
            .start_router_with("perf-link-b", &io, 1, &b_config)
            .await?;
        let a = self
            .start_router_with("perf-link-a", &io, 1, "[link]\ndial_groups = [\"perf\"]\n")
            .await?;
        let link = format!("{}->{}", a.id, b.id);
        let deadline = tokio::time::Instant::now() + START;
        loop {
            let links = self.admin.get("links").await?;
            let up = links["data"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|l| l["id"] == link.as_str() && l["state"] == "up")
            });
            if up {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the link {link} did not come up; links: {}", links["data"]);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.routers.push(a);
        self.routers.push(b);
        let n = self.routers.len();
        self.start_path(WEFT_2ROUTER, (n - 2, n - 1), false, targets)
            .await
    }

    /// The I/O backend of the main router.
    pub fn main_io(&self) -> &str {
        self.routers.first().map_or("epoll", |r| r.io.as_str())
    }

    /// Every process of the network is still running (else the first that is not).
    pub fn check_alive(&mut self) -> Result<()> {
        self.controller.check_alive()?;
        for r in &mut self.routers {
            r.daemon.check_alive()?;
        }
        for t in &mut self.tunnels {
            t.check_alive()?;
        }
        Ok(())
    }
}

/// Router counters from its Prometheus text, summed over shards, by metric name.
pub async fn router_metrics(addr: SocketAddr) -> Result<std::collections::BTreeMap<String, f64>> {
    Ok(parse_metrics(&router_metrics_text(addr).await?))
}

/// The router's Prometheus text.
pub async fn router_metrics_text(addr: SocketAddr) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .context("connecting to the router metrics port")?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .context("asking for metrics")?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut text))
        .await
        .context("metrics timed out")?
        .context("reading metrics")?;
    Ok(text)
}

/// Sums the samples of a Prometheus text exposition by metric name (labels dropped).
pub fn parse_metrics(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if name.is_empty() || !name.starts_with("weft_") {
            continue;
        }
        if let Ok(v) = value.trim().parse::<f64>() {
            *out.entry(name.to_owned()).or_insert(0.0) += v;
        }
    }
    out
}

/// Per-shard values of metric `name` from a Prometheus text exposition.
pub fn parse_shard_metric(text: &str, name: &str) -> Vec<(usize, f64)> {
    text.lines()
        .filter(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b'{'))
        .filter_map(|l| {
            let shard = l
                .split("shard=\"")
                .nth(1)?
                .split('"')
                .next()?
                .parse()
                .ok()?;
            let v = l.rsplit_once(' ')?.1.trim().parse().ok()?;
            Some((shard, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "# HELP weft_router_circuits Open circuits.\n# TYPE weft_router_circuits gauge\n\
        weft_router_circuits{shard=\"0\"} 3\nweft_router_circuits{shard=\"1\"} 4\n\
        weft_router_bytes_relayed_total{shard=\"0\"} 1000\n";

    #[test]
    fn metrics_are_summed_over_shards() {
        let m = parse_metrics(METRICS);
        assert_eq!(m.get("weft_router_circuits"), Some(&7.0));
        assert_eq!(m.get("weft_router_bytes_relayed_total"), Some(&1000.0));
        assert_eq!(
            parse_shard_metric(METRICS, "weft_router_circuits"),
            vec![(0, 3.0), (1, 4.0)]
        );
    }
}
