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
/// `weft tunnel dial` → router A → link → router B → `weft tunnel host`: the circuit
/// crosses a link between two routers (service without end-to-end encryption, so it
/// compares with [`WEFT`]).
pub const WEFT_2ROUTER: &str = "weft-2router";

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
    /// The process ids whose CPU counts as "the router" for the CPU target: the
    /// router(s) on a Weft path (both on [`WEFT_2ROUTER`]); every relay on a baseline.
    pub fn key_bulk_pids(&self) -> Vec<u32> {
        match &self.router {
            Some(_) => routers_of(&self.bulk_procs),
            None => self.bulk_procs.iter().map(|p| p.pid).collect(),
        }
    }

    /// The process ids whose memory counts per idle circuit (echo path).
    pub fn key_echo_pids(&self) -> Vec<u32> {
        match &self.router {
            Some(_) => routers_of(&self.echo_procs),
            None => self.echo_procs.iter().map(|p| p.pid).collect(),
        }
    }
}

/// The process ids of the routers among `procs` (role `router`, or `router-<which>` on
/// a path with several), each once.
fn routers_of(procs: &[ProcRef]) -> Vec<u32> {
    let mut pids = Vec::new();
    for p in procs {
        if (p.role == "router" || p.role.starts_with("router-")) && !pids.contains(&p.pid) {
            pids.push(p.pid);
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weft_path(procs: Vec<ProcRef>) -> NetPath {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        NetPath {
            name: WEFT_2ROUTER.into(),
            baseline: false,
            description: String::new(),
            bulk: addr,
            echo: addr,
            bulk_procs: procs.clone(),
            echo_procs: procs,
            router: Some(RouterRef {
                pid: 2,
                metrics: addr,
                io: "epoll".into(),
            }),
        }
    }

    #[test]
    fn both_routers_of_a_two_router_path_are_its_key_processes() {
        let p = weft_path(vec![
            ProcRef::new("tunnel-dial", 1),
            ProcRef::new("router-a", 2),
            ProcRef::new("router-b", 3),
            ProcRef::new("tunnel-host", 4),
        ]);
        assert_eq!(p.key_bulk_pids(), [2, 3]);
        assert_eq!(p.key_echo_pids(), [2, 3]);
        let one = weft_path(vec![
            ProcRef::new("tunnel-dial", 1),
            ProcRef::new("router", 2),
            ProcRef::new("tunnel-host", 4),
        ]);
        assert_eq!(one.key_bulk_pids(), [2]);
    }
}
