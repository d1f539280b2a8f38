//! The paths a scenario measures: the baselines and the Weft overlay, each with an
//! entry for iperf3 (bulk) and one for the suite's echo server, and the processes
//! whose CPU time and memory the path accounts.

use std::net::SocketAddr;

use serde::Serialize;

/// Direct loopback: the client talks to the server.
pub const DIRECT: &str = "direct";
/// One socat relay.
pub const SOCAT1: &str = "socat-1hop";
/// Two chained socat relays.
pub const SOCAT2: &str = "socat-2hop";
/// An stunnel client + server pair with a TLS link between them.
pub const STUNNEL: &str = "stunnel";
/// `weft tunnel dial` → router → `weft tunnel host`, service without end-to-end encryption.
pub const WEFT: &str = "weft";
/// The same with an end-to-end encrypted service.
pub const WEFT_E2E: &str = "weft-e2e";
/// The Weft path (no e2e) through a router forced onto the epoll backend.
pub const WEFT_EPOLL: &str = "weft-epoll";

/// A process a path accounts for.
#[derive(Debug, Clone, Serialize)]
pub struct ProcRef {
    /// What it is on the path (`router`, `tunnel-dial`, `stunnel-client`, …).
    pub role: String,
    /// Its process id.
    pub pid: u32,
}

impl ProcRef {
    /// A process with a role.
    pub fn new(role: &str, pid: u32) -> Self {
        Self {
            role: role.to_owned(),
            pid,
        }
    }
}

/// A Weft router on a path.
#[derive(Debug, Clone, Serialize)]
pub struct RouterRef {
    /// Its process id.
    pub pid: u32,
    /// Its Prometheus metrics address.
    pub metrics: SocketAddr,
    /// Its I/O backend (`uring` or `epoll`).
    pub io: String,
}

/// One way from the load generator to the servers.
#[derive(Debug, Clone, Serialize)]
pub struct NetPath {
    /// Stable name ([`DIRECT`], [`STUNNEL`], [`WEFT`], …).
    pub name: String,
    /// Whether this is a baseline (not Weft).
    pub baseline: bool,
    /// One line saying what the path is.
    pub description: String,
    /// Where iperf3 clients connect.
    pub bulk: SocketAddr,
    /// Where echo clients connect.
    pub echo: SocketAddr,
    /// Processes on the bulk path (relays; the targets are not counted).
    pub bulk_procs: Vec<ProcRef>,
    /// Processes on the echo path.
    pub echo_procs: Vec<ProcRef>,
    /// The router, for Weft paths.
    pub router: Option<RouterRef>,
}

impl NetPath {
    /// The process ids whose CPU counts as "the router" for the CPU target: the router
    /// on a Weft path; every relay on a baseline.
    pub fn key_bulk_pids(&self) -> Vec<u32> {
        match &self.router {
            Some(r) => vec![r.pid],
            None => self.bulk_procs.iter().map(|p| p.pid).collect(),
        }
    }

    /// The process ids whose memory counts per idle circuit (echo path).
    pub fn key_echo_pids(&self) -> Vec<u32> {
        match &self.router {
            Some(r) => vec![r.pid],
            None => self.echo_procs.iter().map(|p| p.pid).collect(),
        }
    }
}
