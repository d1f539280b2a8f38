//! The targets every path ends at (`iperf3 -s` and the suite's echo server) and the
//! baseline paths: direct loopback, one and two socat hops, and an stunnel client +
//! server pair with a TLS link between them (throwaway self-signed certificate made
//! with rcgen).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::net::TargetPorts;
use crate::paths::{DIRECT, NetPath, ProcRef, SOCAT1, SOCAT2, STUNNEL};
use crate::process::{Binaries, Daemon, free_port};

const START: Duration = Duration::from_secs(20);

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The servers at the end of every path.
#[derive(Debug)]
pub struct Targets {
    iperf3: Daemon,
    echo: Daemon,
    /// Their ports.
    pub ports: TargetPorts,
}

impl Targets {
    /// Starts `iperf3 -s` and `weft-perf serve` (echo).
    pub async fn start(bins: &Binaries, dir: &Path) -> Result<Self> {
        let iperf3_port = free_port()?;
        let mut iperf3 = Daemon::spawn(
            "iperf3-server",
            Command::new(&bins.iperf3).args([
                "-s",
                "-B",
                "127.0.0.1",
                "-p",
                &iperf3_port.to_string(),
            ]),
            dir,
        )?;
        iperf3.wait_listening(iperf3_port, START).await?;
        let echo_port = free_port()?;
        let mut echo = Daemon::spawn(
            "echo-server",
            Command::new(&bins.perf)
                .arg("serve")
                .arg("--echo")
                .arg(local(echo_port).to_string()),
            dir,
        )?;
        echo.wait_listening(echo_port, START).await?;
        Ok(Self {
            iperf3,
            echo,
            ports: TargetPorts {
                iperf3: iperf3_port,
                echo: echo_port,
            },
        })
    }

    /// The iperf3 server's process id.
    pub fn iperf3_pid(&self) -> u32 {
        self.iperf3.pid()
    }

    /// The echo server's process id.
    pub fn echo_pid(&self) -> u32 {
        self.echo.pid()
    }

    /// Both still run.
    pub fn check_alive(&mut self) -> Result<()> {
        self.iperf3.check_alive()?;
        self.echo.check_alive()
    }
}

/// The running baseline relays and the paths through them.
#[derive(Debug)]
pub struct Baselines {
    relays: Vec<Daemon>,
    /// The baseline paths, direct first.
    pub paths: Vec<NetPath>,
}

impl Baselines {
    /// Starts every baseline relay in front of `targets`.
    pub async fn start(bins: &Binaries, dir: &Path, targets: TargetPorts) -> Result<Self> {
        let mut b = Self {
            relays: Vec::new(),
            paths: Vec::new(),
        };
        b.paths.push(NetPath {
            name: DIRECT.into(),
            baseline: true,
            description: "direct loopback (client → server)".into(),
            bulk: local(targets.iperf3),
            echo: local(targets.echo),
            bulk_procs: Vec::new(),
            echo_procs: Vec::new(),
            router: None,
        });

        // One socat hop.
        let (bulk1, bulk1_pid) = b
            .socat(bins, dir, "socat-1hop-bulk", targets.iperf3)
            .await?;
        let (echo1, echo1_pid) = b.socat(bins, dir, "socat-1hop-echo", targets.echo).await?;
        b.paths.push(NetPath {
            name: SOCAT1.into(),
            baseline: true,
            description: "one socat relay (-b 131072, fork per connection)".into(),
            bulk: local(bulk1),
            echo: local(echo1),
            bulk_procs: vec![ProcRef::new("socat", bulk1_pid)],
            echo_procs: vec![ProcRef::new("socat", echo1_pid)],
            router: None,
        });

        // Two socat hops (a second relay in front of the first).
        let (bulk2, bulk2_pid) = b.socat(bins, dir, "socat-2hop-bulk", bulk1).await?;
        let (echo2, echo2_pid) = b.socat(bins, dir, "socat-2hop-echo", echo1).await?;
        b.paths.push(NetPath {
            name: SOCAT2.into(),
            baseline: true,
            description: "two chained socat relays".into(),
            bulk: local(bulk2),
            echo: local(echo2),
            bulk_procs: vec![
                ProcRef::new("socat-1", bulk2_pid),
                ProcRef::new("socat-2", bulk1_pid),
            ],
            echo_procs: vec![
                ProcRef::new("socat-1", echo2_pid),
                ProcRef::new("socat-2", echo1_pid),
            ],
            router: None,
        });

        let p = b.stunnel(bins, dir, targets).await?;
        b.paths.push(p);
        Ok(b)
    }

    async fn socat(
        &mut self,
        bins: &Binaries,
        dir: &Path,
        name: &str,
        target: u16,
    ) -> Result<(u16, u32)> {
        let port = free_port()?;
        let mut d = Daemon::spawn(
            name,
            Command::new(&bins.socat).args([
                "-b",
                "131072",
                &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,backlog=4096,nodelay"),
                &format!("TCP:127.0.0.1:{target},nodelay"),
            ]),
            dir,
        )?;
        d.wait_listening(port, START).await?;
        let pid = d.pid();
        self.relays.push(d);
        Ok((port, pid))
    }

    async fn stunnel(
        &mut self,
        bins: &Binaries,
        dir: &Path,
        targets: TargetPorts,
    ) -> Result<NetPath> {
        let dir = dir.join("stunnel");
        std::fs::create_dir_all(&dir).context("creating the stunnel directory")?;
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .context("generating the stunnel certificate")?;
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, ck.cert.pem()).context("writing cert.pem")?;
        std::fs::write(&key, ck.signing_key.serialize_pem()).context("writing key.pem")?;

        let [srv_bulk, srv_echo, cli_bulk, cli_echo] =
            [free_port()?, free_port()?, free_port()?, free_port()?];
        let global = "foreground = yes\npid =\ndebug = 3\n";
        let opts = "socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n";
        let server_conf = format!(
            "{global}\n[bulk]\naccept = 127.0.0.1:{srv_bulk}\nconnect = 127.0.0.1:{}\n\
             cert = {c}\nkey = {k}\n{opts}\n[echo]\naccept = 127.0.0.1:{srv_echo}\n\
             connect = 127.0.0.1:{}\ncert = {c}\nkey = {k}\n{opts}",
            targets.iperf3,
            targets.echo,
            c = cert.display(),
            k = key.display()
        );
        let client_conf = format!(
            "{global}\n[bulk]\nclient = yes\naccept = 127.0.0.1:{cli_bulk}\n\
             connect = 127.0.0.1:{srv_bulk}\n{opts}\n[echo]\nclient = yes\n\
             accept = 127.0.0.1:{cli_echo}\nconnect = 127.0.0.1:{srv_echo}\n{opts}"
        );
        let server_file = dir.join("server.conf");
        let client_file = dir.join("client.conf");
        std::fs::write(&server_file, server_conf).context("writing stunnel server.conf")?;
        std::fs::write(&client_file, client_conf).context("writing stunnel client.conf")?;
        let mut server = Daemon::spawn(
            "stunnel-server",
            Command::new(&bins.stunnel).arg(&server_file),
            &dir,
        )?;
        server.wait_listening(srv_bulk, START).await?;
        server.wait_listening(srv_echo, START).await?;
        let mut client = Daemon::spawn(
            "stunnel-client",
            Command::new(&bins.stunnel).arg(&client_file),
            &dir,
        )?;
        client.wait_listening(cli_bulk, START).await?;
        client.wait_listening(cli_echo, START).await?;
        let procs = vec![
            ProcRef::new("stunnel-client", client.pid()),
            ProcRef::new("stunnel-server", server.pid()),
        ];
        self.relays.push(server);
        self.relays.push(client);
        Ok(NetPath {
            name: STUNNEL.into(),
            baseline: true,
            description: "stunnel client → TLS → stunnel server (TLS 1.3, self-signed ECDSA P-256)"
                .into(),
            bulk: local(cli_bulk),
            echo: local(cli_echo),
            bulk_procs: procs.clone(),
            echo_procs: procs,
            router: None,
        })
    }

    /// Every relay still runs.
    pub fn check_alive(&mut self) -> Result<()> {
        for r in &mut self.relays {
            r.check_alive()?;
        }
        Ok(())
    }
}
