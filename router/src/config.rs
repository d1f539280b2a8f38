//! The router's configuration file (`router.toml`), in sections; `router/dist/router.toml`
//! documents every key with its default.
//!
//! ```toml
//! [identity]                             # certificates, PEM (paths relative to this file)
//! cert = "certs/server.cert"             # edge/link server certificate chain
//! key = "certs/server.key"               # its private key
//! ca = "certs/ca.pem"                    # CA bundle (default: ca.pem next to cert)
//!
//! [edge]                                 # the listener SDKs connect to
//! listen = "0.0.0.0:3022"
//! advertised_host = "router.example.com" # what SDKs are told to dial
//! cert_sans = ["er1.internal", "10.0.0.5"] # more names for the edge certificate (enrolment)
//! max_conns_per_connection = 65536       # conn ids one SDK connection may hold
//! max_connections_per_shard = 65536      # edge connections one shard holds
//! max_conns_per_api_session = 16         # edge connections per API session, per shard
//! reply_budget_bytes = 65536             # router answers queued per connection
//! hello_timeout_ms = 1000                # hello deadline after the TLS handshake
//! handshake_timeout_ms = 10000           # TLS handshake deadline
//!
//! [control]                              # the control channel to the controller(s)
//! controllers = ["ctrl.example.com:6262"]
//!
//! [link]                                 # links to other routers (optional)
//! listen = "0.0.0.0:4022"                # link listener (absent: dial only)
//! advertise = "router.example.com"       # host[:port] others dial (default advertised_host)
//! groups = ["default"]                   # listener groups
//! dial_groups = ["default"]              # groups this router dials ([]: none)
//! connections = 1                        # TCP connections per dialled link (1..=16)
//! backoff_min_ms = 500                   # first redial delay (×1.5 per failure, ±20 %)
//! backoff_max_ms = 60000                 # longest redial delay
//!
//! [forwarder]
//! window_bytes = 4194304                 # per-circuit-direction window (ADR 0003)
//! identity_budget_bytes = 1073741824     # what one identity's connections may make a
//!                                        # shard hold over all their circuits
//!
//! [runtime]
//! shards = 4                             # default: one per core
//! io = "auto"                            # I/O backend: "auto", "uring" or "epoll" (see below)
//! shutdown_grace_ms = 10000              # how long circuits may finish on shutdown
//!
//! [metrics]
//! listen = "127.0.0.1:9100"              # /metrics, /health, /ready (optional)
//!
//! [log]                                  # under --log-format, --log-level, RUST_LOG
//! format = "text"                        # or "json"
//! level = "info"
//! ```
//!
//! The flat keys of earlier versions (`edge_listen`, `controller`, `cert`,
//! `metrics_listen`, …) are still read: each is moved to its section ([`LEGACY_KEYS`];
//! `controller = "a:1"` becomes `[control] controllers = ["a:1"]`) and listed in
//! [`RouterConfig::deprecated`], which the router logs at WARN when it starts. A key set
//! both ways is refused. Errors name the file, the key and the reason.
//!
//! **`[control] controllers`** lists the control-channel addresses (`host:port`; several
//! when controllers share one database; no address twice). The router connects to the
//! first; when that connection fails or is lost it moves on to the next, round robin, and
//! waits out its backoff (100 ms doubling to 10 s, ±20 % jitter) only after a whole round
//! failed. Each address's host is the TLS server name checked against that controller's
//! certificate. A new connection, to whichever controller, starts with the hello and a
//! full state sync; circuits and edge connections stay up meanwhile. The log says which
//! controller the router is connected to, and `weft_router_control_failovers_total`
//! counts the connections that came up on another controller than the one before.
//!
//! `weft-router enroll` writes `server.cert`, `server.key`, `router.cert` (the control
//! channel's client certificate), `router.key` and `ca.pem` into the directory of
//! `[identity] cert`.
//!
//! **`[runtime] shards`** defaults to one per core (`std::thread::available_parallelism`,
//! which honours CPU affinity and cgroup quotas). The kernel spreads edge connections
//! over the shards' `SO_REUSEPORT` listeners; a circuit whose dialer and host landed on
//! different shards crosses between them by message (`runtime` module docs).
//!
//! **`[runtime] io`** picks the shards' I/O backend (docs/adr/0004-router-runtime.md):
//! `"uring"` (io_uring via tokio-uring), `"epoll"` (a tokio current-thread runtime), or
//! `"auto"` (the default): io_uring when the kernel allows it, otherwise epoll with an
//! info log saying why (a container's default seccomp profile and
//! `kernel.io_uring_disabled` block io_uring). `"uring"` on a host without io_uring is a
//! startup error. `weft-router run --io` overrides it.
//!
//! **`[link]`** makes the router part of the mesh (docs/adr/0007-mesh.md): it tells the
//! controller where its link listener is, and dials every router the controller lists
//! whose listener shares a group with its `dial_groups` (of two routers that would dial
//! each other, the one whose id sorts first dials). The advertised host must be one of
//! the names in the router's server certificate (`advertised_host`, `cert_sans`, or the
//! names the controller's entity gives).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use weft_ops::logging::LogSection;

use crate::edge::EdgeConfig;
use crate::forward::ForwardConfig;
use crate::runtime::{IoSelection, RouterSettings};
use crate::tls::{self, TlsError};

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key, or a value of the wrong type.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line and column.
        message: String,
    },
    /// A value is out of range, or a key is set both ways.
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// `[section] key`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The certificate or key could not be loaded (its text is in this error's, so it
    /// is not also its source: a report of the chain would say it twice).
    #[error("edge TLS: {0}")]
    Tls(TlsError),
}

impl From<TlsError> for ConfigError {
    fn from(e: TlsError) -> Self {
        Self::Tls(e)
    }
}

/// The most `cert_sans` a config may list (the controller allows 32 names in all).
const MAX_CERT_SANS: usize = 16;

/// The flat keys of earlier versions, and the section each moved to.
pub const LEGACY_KEYS: &[weft_ops::config::FlatKey] = &[
    ("edge_listen", "edge", "listen"),
    ("advertised_host", "edge", "advertised_host"),
    ("cert_sans", "edge", "cert_sans"),
    ("max_conns_per_edge", "edge", "max_conns_per_connection"),
    (
        "max_connections_per_shard",
        "edge",
        "max_connections_per_shard",
    ),
    (
        "max_conns_per_api_session",
        "edge",
        "max_conns_per_api_session",
    ),
    ("reply_budget_bytes", "edge", "reply_budget_bytes"),
    ("hello_timeout_ms", "edge", "hello_timeout_ms"),
    ("handshake_timeout_ms", "edge", "handshake_timeout_ms"),
    // `controller = "a:1"` is made a list first (`load`).
    ("controller", "control", "controllers"),
    ("controllers", "control", "controllers"),
    ("cert", "identity", "cert"),
    ("key", "identity", "key"),
    ("ca", "identity", "ca"),
    ("window_bytes", "forwarder", "window_bytes"),
    ("shards", "runtime", "shards"),
    ("io", "runtime", "io"),
    ("shutdown_grace_ms", "runtime", "shutdown_grace_ms"),
    ("metrics_listen", "metrics", "listen"),
];

/// The contents of `router.toml`. Paths are resolved against the file's directory.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// `[identity]`: the router's certificates.
    pub identity: IdentitySection,
    /// `[edge]`: the listener SDKs connect to.
    pub edge: EdgeSection,
    /// `[control]`: the control channel.
    pub control: ControlSection,
    /// `[link]`: links to other routers (the mesh); none when absent.
    #[serde(default)]
    pub link: Option<LinkSection>,
    /// `[forwarder]`: circuits.
    #[serde(default)]
    pub forwarder: ForwarderSection,
    /// `[runtime]`: threads and I/O.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// `[metrics]`: the operations endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// `[log]`: logging, under the command line and `RUST_LOG`.
    #[serde(default)]
    pub log: LogSection,
    /// Flat keys of earlier versions found in the file, each with where it belongs now
    /// (`[section] key`).
    #[serde(skip)]
    pub deprecated: Vec<(String, String)>,
}

/// `[identity]`: the router's server certificate, its key and the CA bundle.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// Server certificate chain (edge and link listeners), PEM.
    pub cert: PathBuf,
    /// Private key of the server certificate, PEM.
    pub key: PathBuf,
    /// CA bundle (PEM) that verifies the controller and the identity certificates of
    /// SDK clients; `ca.pem` next to `cert` when absent.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// `[edge]`: the listener SDKs connect to, and what one SDK connection may hold.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EdgeSection {
    /// Address the edge listener binds.
    pub listen: SocketAddr,
    /// Host name SDKs are told to dial (`tls://advertised_host:port`).
    pub advertised_host: String,
    /// More DNS names or IP addresses for the server certificate, asked for at
    /// enrolment besides `advertised_host` and `[link] advertise`'s host.
    #[serde(default)]
    pub cert_sans: Vec<String>,
    /// Conn ids (dials, listeners, accepted) one SDK connection may hold.
    #[serde(default = "default_max_conns")]
    pub max_conns_per_connection: usize,
    /// Edge connections one shard holds; more are closed after the handshake.
    #[serde(default = "default_max_conns_per_shard")]
    pub max_connections_per_shard: usize,
    /// Edge connections one API session may hold per shard.
    #[serde(default = "default_max_conns_per_api_session")]
    pub max_conns_per_api_session: usize,
    /// Bytes of the router's own answers (latency replies, Results, StateClosed, ...)
    /// that may wait unwritten for one edge connection; beyond it the connection is not
    /// read until its peer reads.
    #[serde(default = "default_reply_budget")]
    pub reply_budget_bytes: usize,
    /// Milliseconds an SDK has after the TLS handshake to send its hello.
    #[serde(default = "default_hello_timeout")]
    pub hello_timeout_ms: u64,
    /// Milliseconds a client has to finish the TLS handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_ms: u64,
}

/// `[control]`: the controllers' control-channel addresses.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// `host:port` of each controller (several sharing one database), tried in order
    /// and then round robin (module docs); the host is the TLS server name checked
    /// against that controller's certificate.
    pub controllers: Vec<String>,
}

/// `[forwarder]`: circuits.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ForwarderSection {
    /// Bytes one circuit direction may queue toward a slow reader.
    pub window_bytes: usize,
    /// Bytes the edge connections of one identity may make a shard hold over all their
    /// circuits.
    pub identity_budget_bytes: usize,
}

impl Default for ForwarderSection {
    fn default() -> Self {
        let defaults = ForwardConfig::default();
        Self {
            window_bytes: defaults.window,
            identity_budget_bytes: defaults.identity_budget,
        }
    }
}

/// `[runtime]`: the router's threads and I/O.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSection {
    /// Number of shards (threads); default one per core.
    pub shards: usize,
    /// The shards' I/O backend: `auto` (default), `uring` or `epoll` (module docs).
    pub io: IoSelection,
    /// Milliseconds circuits may go on after a shutdown signal.
    pub shutdown_grace_ms: u64,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            shards: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            io: IoSelection::default(),
            shutdown_grace_ms: 10_000,
        }
    }
}

/// `[metrics]`: the operations endpoint (`/metrics`, `/health`, `/ready`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Where to serve it; not served when absent.
    pub listen: Option<SocketAddr>,
}

/// `[link]`: this router's link listener and dialers (docs/adr/0007-mesh.md).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LinkSection {
    /// Address the link listener binds; without it the router accepts no links (it
    /// may still dial).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Host other routers dial (default `advertised_host`), optionally with a port
    /// (`host:port`, an IPv6 host in brackets; default the listener's): the host must
    /// be one of the names of the router's server certificate, which dialers verify.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Groups of the listener: routers whose dialers share one dial it.
    #[serde(default = "default_link_groups")]
    pub groups: Vec<String>,
    /// Groups the dialers dial; empty: this router dials no links.
    #[serde(default = "default_link_groups")]
    pub dial_groups: Vec<String>,
    /// TCP connections each link this router dials has (1 to 16): each circuit rides
    /// one of them, so a connection that stalls or is lost holds up only its share of
    /// the circuits, which move to the others (OpenZiti: `maxDefaultConnections`).
    #[serde(default = "default_link_connections")]
    pub connections: u32,
    /// First delay before a lost or failed link is dialled again (milliseconds); it
    /// grows ×1.5 per failure, with ±20 % jitter.
    #[serde(default = "default_backoff_min")]
    pub backoff_min_ms: u64,
    /// Longest delay between dials (milliseconds).
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
}

fn default_link_connections() -> u32 {
    1
}
fn default_backoff_min() -> u64 {
    500
}
fn default_backoff_max() -> u64 {
    60_000
}

fn default_link_groups() -> Vec<String> {
    vec!["default".to_owned()]
}

fn default_max_conns_per_api_session() -> usize {
    ForwardConfig::default().max_conns_per_api_session
}
fn default_reply_budget() -> usize {
    EdgeConfig::default().reply_budget
}
fn default_max_conns() -> usize {
    EdgeConfig::default().max_conns
}
fn default_max_conns_per_shard() -> usize {
    65_536
}
fn default_hello_timeout() -> u64 {
    1000
}
fn default_handshake_timeout() -> u64 {
    10_000
}

impl RouterConfig {
    /// Reads and validates `path`; relative paths inside become relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            ConfigError::Invalid { key, message, .. } => ConfigError::Invalid {
                path: path.to_owned(),
                key,
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text, moving flat keys of earlier versions to their
    /// sections; relative paths become relative to `base`. Errors name no file
    /// ([`Self::load`] adds it).
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        };
        let mut table: toml::Table = text.parse().map_err(parse_error)?;
        let deprecated = move_legacy_keys(&mut table)?;
        let mut config: Self = if deprecated.is_empty() {
            // From the text, so that an error points at its line.
            toml::from_str(text).map_err(parse_error)?
        } else {
            toml::Value::Table(table).try_into().map_err(parse_error)?
        };
        config.deprecated = deprecated;
        let identity = &mut config.identity;
        for path in [&mut identity.cert, &mut identity.key]
            .into_iter()
            .chain(identity.ca.as_mut())
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                path: PathBuf::new(),
                key: key.to_owned(),
                message: message.into(),
            })
        };
        let edge = &self.edge;
        if self.runtime.shards == 0 || self.runtime.shards > 1024 {
            return invalid("[runtime] shards", "must be between 1 and 1024");
        }
        if self.forwarder.window_bytes < 64 * 1024 {
            return invalid("[forwarder] window_bytes", "must be at least 65536");
        }
        if self.forwarder.identity_budget_bytes < 2 * self.forwarder.window_bytes {
            return invalid(
                "[forwarder] identity_budget_bytes",
                "must be at least two windows (2 × window_bytes)",
            );
        }
        let at_least_one = [
            (
                "[edge] max_conns_per_connection",
                edge.max_conns_per_connection as u64,
            ),
            (
                "[edge] max_conns_per_api_session",
                edge.max_conns_per_api_session as u64,
            ),
            (
                "[edge] max_connections_per_shard",
                edge.max_connections_per_shard as u64,
            ),
            ("[edge] hello_timeout_ms", edge.hello_timeout_ms),
            ("[edge] handshake_timeout_ms", edge.handshake_timeout_ms),
        ];
        if let Some((key, _)) = at_least_one.iter().find(|(_, v)| *v == 0) {
            return invalid(key, "must be at least 1");
        }
        if edge.reply_budget_bytes < 4096 {
            return invalid("[edge] reply_budget_bytes", "must be at least 4096");
        }
        if edge.advertised_host.trim().is_empty() {
            return invalid("[edge] advertised_host", "must not be empty");
        }
        if edge.cert_sans.len() > MAX_CERT_SANS {
            return invalid(
                "[edge] cert_sans",
                &format!("at most {MAX_CERT_SANS} names"),
            );
        }
        if edge.cert_sans.iter().any(|n| n.trim().is_empty()) {
            return invalid("[edge] cert_sans", "names must not be empty");
        }
        if let Err((key, reason)) = self.log.check() {
            return invalid(key, &reason);
        }
        self.validate_controllers()?;
        if let Some(link) = &self.link {
            if link
                .advertise
                .as_deref()
                .is_some_and(|a| a.trim().is_empty())
            {
                return invalid("[link] advertise", "must not be empty");
            }
            let groups = link.groups.iter().chain(&link.dial_groups);
            if groups.into_iter().any(|g| g.trim().is_empty()) {
                return invalid("[link] groups", "group names must not be empty");
            }
            let most = crate::link::session::MAX_CONNECTIONS;
            if link.connections == 0 || link.connections > most {
                return invalid("[link] connections", &format!("must be from 1 to {most}"));
            }
            if link.backoff_min_ms == 0 || link.backoff_max_ms < link.backoff_min_ms {
                return invalid(
                    "[link] backoff_max_ms",
                    "backoff_min_ms must be at least 1 and backoff_max_ms at least backoff_min_ms",
                );
            }
        }
        Ok(())
    }

    fn validate_controllers(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| {
            Err(ConfigError::Invalid {
                path: PathBuf::new(),
                key: "[control] controllers".into(),
                message,
            })
        };
        let addresses = &self.control.controllers;
        if addresses.is_empty() {
            return invalid("must name at least one controller address".into());
        }
        for (i, address) in addresses.iter().enumerate() {
            // A bare `host:port` (the `tcp` scheme the parser assumes has no default
            // port, so the port must be there).
            let valid = !address.contains('/')
                && !address.chars().any(char::is_whitespace)
                && weft_identity::endpoint::parse(address).is_some();
            if !valid {
                return invalid(format!("{address:?} is not a `host:port` address"));
            }
            if addresses[..i].contains(address) {
                return invalid(format!("{address:?} is listed twice"));
            }
        }
        Ok(())
    }

    /// The controller control addresses, in the order to try them (never empty once
    /// the configuration validated).
    pub fn controller_addresses(&self) -> &[String] {
        &self.control.controllers
    }

    /// The runtime settings, loading the TLS certificate and key.
    pub fn settings(&self) -> Result<RouterSettings, ConfigError> {
        let tls = tls::load_edge_tls(&self.identity.cert, &self.identity.key, &self.ca_path())?;
        let edge = EdgeConfig {
            hello_timeout: Duration::from_millis(self.edge.hello_timeout_ms),
            max_conns: self.edge.max_conns_per_connection,
            reply_budget: self.edge.reply_budget_bytes,
            ..EdgeConfig::default()
        };
        Ok(RouterSettings {
            edge_listen: self.edge.listen,
            shards: self.runtime.shards,
            forward: ForwardConfig {
                // Set from the router certificate when the node starts.
                router_id: String::new(),
                max_conns_per_api_session: self.edge.max_conns_per_api_session,
                edge,
                window: self.forwarder.window_bytes,
                identity_budget: self.forwarder.identity_budget_bytes,
                // Set when the node starts links.
                mesh_shard: None,
            },
            tls,
            handshake_timeout: Duration::from_millis(self.edge.handshake_timeout_ms),
            metrics_listen: self.metrics.listen,
            max_conns_per_shard: self.edge.max_connections_per_shard,
            io: self.runtime.io,
            // Needs the router certificate; the node fills it in.
            link: None,
            // The node's control client fills it in.
            control_stats: None,
        })
    }

    /// The CA bundle: `[identity] ca`, or `ca.pem` next to the edge certificate (where
    /// `weft-router enroll` writes the controller's bundle). It verifies the controller
    /// on the control channel and the identity certificates SDKs present on the edge
    /// listener.
    pub fn ca_path(&self) -> PathBuf {
        self.identity
            .ca
            .clone()
            .unwrap_or_else(|| self.cert_dir().join(crate::enroll::CA_FILE))
    }

    /// The directory of the edge certificate, where `weft-router enroll` writes every
    /// certificate and key and where the control client finds `router.cert` and
    /// `router.key`.
    pub fn cert_dir(&self) -> PathBuf {
        self.identity
            .cert
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }

    /// The names the edge listener's server certificate asks for at enrolment:
    /// `advertised_host`, the host of `[link] advertise`, then `cert_sans`, each once.
    pub fn server_cert_names(&self) -> Vec<String> {
        let link_host = self
            .link
            .as_ref()
            .and_then(|l| l.advertise.as_deref())
            .and_then(weft_identity::endpoint::host);
        let mut names: Vec<String> = Vec::new();
        let all = std::iter::once(self.edge.advertised_host.trim().to_string())
            .chain(link_host)
            .chain(self.edge.cert_sans.iter().map(|n| n.trim().to_string()));
        for name in all {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// How long circuits may go on after a shutdown signal.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.runtime.shutdown_grace_ms)
    }
}

/// Moves the flat keys of earlier versions into their sections ([`LEGACY_KEYS`]); a
/// flat `controller = "a:1"` becomes the list `["a:1"]` first.
fn move_legacy_keys(table: &mut toml::Table) -> Result<Vec<(String, String)>, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        path: PathBuf::new(),
        key: key.to_owned(),
        message,
    };
    if table.contains_key("controller") && table.contains_key("controllers") {
        return Err(invalid(
            "controllers",
            "give either `controller` or `controllers`, not both".into(),
        ));
    }
    if let Some(one) = table.get_mut("controller")
        && one.is_str()
    {
        *one = toml::Value::Array(vec![one.clone()]);
    }
    weft_ops::config::move_flat_keys(table, LEGACY_KEYS).map_err(|e| invalid(&e.key, e.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [identity]
        cert = "certs/server.cert"
        key = "/abs/server.key"
        [edge]
        listen = "127.0.0.1:3022"
        advertised_host = "localhost"
        [control]
        controllers = ["127.0.0.1:6262"]
    "#;

    /// The same configuration in the flat keys of earlier versions.
    const FLAT: &str = r#"
        edge_listen = "127.0.0.1:3022"
        advertised_host = "localhost"
        controller = "127.0.0.1:6262"
        cert = "certs/server.cert"
        key = "/abs/server.key"
    "#;

    fn parse(text: &str) -> Result<RouterConfig, ConfigError> {
        RouterConfig::parse(text, Path::new("."))
    }

    /// The key and message of an `Invalid` error (panics on another result).
    fn invalid(text: &str) -> (String, String) {
        match parse(text) {
            Err(ConfigError::Invalid { key, message, .. }) => (key, message),
            other => panic!("{text}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = RouterConfig::parse(MINIMAL, Path::new("/etc/weft")).unwrap_or_else(|e| {
            panic!("{e}");
        });
        assert_eq!(c.runtime.shards, RuntimeSection::default().shards);
        assert!(c.runtime.shards >= 1);
        assert_eq!(c.forwarder.window_bytes, 4 * 1024 * 1024);
        assert_eq!(c.edge.hello_timeout_ms, 1000);
        assert_eq!(
            c.edge.max_conns_per_connection,
            EdgeConfig::default().max_conns
        );
        assert_eq!(
            c.identity.cert,
            PathBuf::from("/etc/weft/certs/server.cert")
        );
        assert_eq!(c.identity.key, PathBuf::from("/abs/server.key"));
        assert_eq!(c.metrics.listen, None);
        assert_eq!(c.runtime.io, IoSelection::Auto);
        assert_eq!(c.log, LogSection::default());
        assert!(c.deprecated.is_empty());
    }

    #[test]
    fn flat_keys_of_earlier_versions_move_to_their_sections() {
        let flat = format!(
            "{FLAT}metrics_listen = \"127.0.0.1:9100\"\nmax_conns_per_edge = 7\nio = \"epoll\"\n\
             window_bytes = 131072\n[link]\nlisten = \"127.0.0.1:4022\"\n"
        );
        let old = parse(&flat).unwrap_or_else(|e| panic!("{e}"));
        let new = parse(
            &format!(
                "{MINIMAL}[metrics]\nlisten = \"127.0.0.1:9100\"\n[runtime]\nio = \"epoll\"\n\
             [forwarder]\nwindow_bytes = 131072\n[link]\nlisten = \"127.0.0.1:4022\"\n"
            )
            .replace(
                "advertised_host = \"localhost\"",
                "advertised_host = \"localhost\"\nmax_conns_per_connection = 7",
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            RouterConfig {
                deprecated: Vec::new(),
                ..old.clone()
            },
            new
        );
        let moved: Vec<&str> = old.deprecated.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            moved,
            [
                "edge_listen",
                "advertised_host",
                "max_conns_per_edge",
                "controller",
                "cert",
                "key",
                "window_bytes",
                "io",
                "metrics_listen"
            ]
        );
        assert!(
            old.deprecated
                .contains(&("controller".into(), "[control] controllers".into()))
        );
        // A key set both ways is refused, naming both.
        let (key, message) = invalid(&format!("{FLAT}[edge]\nlisten = \"127.0.0.1:1\"\n"));
        assert_eq!(key, "edge_listen");
        assert_eq!(message, "set both as `edge_listen` and as [edge] listen");
    }

    #[test]
    fn one_controller_or_a_list_of_them() {
        let one = parse(MINIMAL).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(one.controller_addresses(), ["127.0.0.1:6262"]);
        let list = MINIMAL.replace(
            "controllers = [\"127.0.0.1:6262\"]",
            "controllers = [\"ctrl-a.example.com:6262\", \"[::1]:6263\", \"10.0.0.3:6262\"]",
        );
        let c = parse(&list).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.controller_addresses(),
            ["ctrl-a.example.com:6262", "[::1]:6263", "10.0.0.3:6262"]
        );
        let flat_list = FLAT.replace(
            "controller = \"127.0.0.1:6262\"",
            "controllers = [\"a:1\", \"b:2\"]",
        );
        let c = parse(&flat_list).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.controller_addresses(), ["a:1", "b:2"]);
    }

    #[test]
    fn controller_lists_that_cannot_be_used_are_clear_errors() {
        let with = |list: &str| {
            MINIMAL.replace(
                "controllers = [\"127.0.0.1:6262\"]",
                &format!("controllers = {list}"),
            )
        };
        let cases = [
            (with("[]"), "at least one"),
            (
                with("[\"a:1\", \"nowhere\"]"),
                "\"nowhere\" is not a `host:port`",
            ),
            (with("[\"a:1\", \"https://b:2\"]"), "not a `host:port`"),
            (with("[\"a:1\", \"b:2\", \"a:1\"]"), "listed twice"),
            (with("[\"127.0.0.1\"]"), "not a `host:port`"),
        ];
        for (text, want) in cases {
            let (key, message) = invalid(&text);
            assert_eq!(key, "[control] controllers", "{text}");
            assert!(message.contains(want), "{text}: {message}");
        }
        let both = format!("{FLAT}controllers = [\"127.0.0.1:6263\"]\n");
        let (key, message) = invalid(&both);
        assert_eq!(key, "controllers");
        assert!(message.contains("not both"), "{message}");
        let twice = MINIMAL.replace("[identity]", "controller = \"a:1\"\n[identity]");
        let (key, message) = invalid(&twice);
        assert_eq!(key, "controller");
        assert_eq!(
            message,
            "set both as `controller` and as [control] controllers"
        );
        // Without [control] at all, or a single address where a list belongs: the
        // parser names the key.
        let without = MINIMAL.replace("[control]\n        controllers = [\"127.0.0.1:6262\"]", "");
        for text in [without, with("\"a:1\"")] {
            let e = parse(&text).err();
            assert!(
                matches!(&e, Some(ConfigError::Parse { message, .. }) if message.contains("control")),
                "{e:?}"
            );
        }
    }

    #[test]
    fn link_section_defaults_and_refusals() {
        let c = parse(&format!("{MINIMAL}\n[link]\nlisten = \"0.0.0.0:4022\"\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        let link = c.link.unwrap_or_else(|| panic!("no [link]"));
        assert_eq!(link.listen, Some("0.0.0.0:4022".parse().unwrap()));
        assert_eq!(link.groups, ["default"]);
        assert_eq!(link.dial_groups, ["default"]);
        assert_eq!(link.advertise, None);
        assert_eq!(link.connections, 1);
        assert_eq!(parse(MINIMAL).unwrap().link, None);
        let c = parse(&format!("{MINIMAL}\n[link]\nconnections = 16\n")).unwrap();
        assert_eq!(c.link.map(|l| l.connections), Some(16));
        for bad in [
            "[link]\nadvertise = \" \"\n",
            "[link]\ngroups = [\"\"]\n",
            "[link]\nlisten = \"nowhere\"\n",
            "[link]\nport = 4022\n",
            "[link]\nbackoff_min_ms = 0\n",
            "[link]\nbackoff_min_ms = 900\nbackoff_max_ms = 800\n",
            "[link]\nconnections = 0\n",
            "[link]\nconnections = 17\n",
        ] {
            let e = parse(&format!("{MINIMAL}\n{bad}")).err();
            assert!(e.is_some(), "{bad} was accepted");
        }
    }

    #[test]
    fn io_backend_key() {
        for (text, value) in [
            ("auto", IoSelection::Auto),
            ("uring", IoSelection::Uring),
            ("epoll", IoSelection::Epoll),
        ] {
            let c = parse(&format!("{MINIMAL}\n[runtime]\nio = \"{text}\"\n"))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.runtime.io, value);
        }
        let e = parse(&format!("{MINIMAL}\n[runtime]\nio = \"kqueue\"\n")).err();
        assert!(
            matches!(&e, Some(ConfigError::Parse { message, .. }) if message.contains("kqueue")
                || message.contains("unknown variant")),
            "{e:?}"
        );
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_reason() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("router.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
            RouterConfig::load(&path)
                .err()
                .unwrap_or_else(|| panic!("{text} was accepted"))
                .to_string()
        };
        let shown = path.display();
        assert_eq!(
            load(&format!("{MINIMAL}[runtime]\nshards = 0\n")),
            format!("{shown}: [runtime] shards: must be between 1 and 1024")
        );
        assert_eq!(
            load(&format!("{MINIMAL}[log]\nlevel = \"info,=x=\"\n"))
                .split(": ")
                .nth(1),
            Some("[log] level")
        );
        let unknown = load(&format!("{MINIMAL}[runtime]\nshard = 2\n"));
        assert!(
            unknown.starts_with(&format!("{shown}: ")) && unknown.contains("shard"),
            "{unknown}"
        );
        let bad_addr = load(&MINIMAL.replace("127.0.0.1:3022", "nowhere"));
        assert!(
            bad_addr.contains("line ") && bad_addr.contains("listen"),
            "{bad_addr}"
        );
        let zero = load(&MINIMAL.replace(
            "advertised_host = \"localhost\"",
            "advertised_host = \"localhost\"\nhello_timeout_ms = 0",
        ));
        assert!(
            zero.ends_with("[edge] hello_timeout_ms: must be at least 1"),
            "{zero}"
        );
        let missing = RouterConfig::load(&dir.path().join("nope.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            missing.starts_with("cannot read the config file "),
            "{missing}"
        );
    }

    #[test]
    fn the_shipped_example_parses_and_sets_every_key() {
        let example = include_str!("../dist/router.toml");
        let c = parse(example).unwrap_or_else(|e| panic!("dist/router.toml: {e}"));
        assert!(c.deprecated.is_empty());
        // Every key of every section appears in the example, set or commented out.
        let documented = |key: &str| {
            example.lines().any(|l| {
                let l = l.trim_start_matches('#').trim_start();
                l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}="))
            })
        };
        let sections = [
            ("identity", vec!["cert", "key", "ca"]),
            (
                "edge",
                vec![
                    "listen",
                    "advertised_host",
                    "cert_sans",
                    "max_conns_per_connection",
                    "max_connections_per_shard",
                    "max_conns_per_api_session",
                    "reply_budget_bytes",
                    "hello_timeout_ms",
                    "handshake_timeout_ms",
                ],
            ),
            ("control", vec!["controllers"]),
            (
                "link",
                vec![
                    "listen",
                    "advertise",
                    "groups",
                    "dial_groups",
                    "connections",
                    "backoff_min_ms",
                    "backoff_max_ms",
                ],
            ),
            ("forwarder", vec!["window_bytes"]),
            ("runtime", vec!["shards", "io", "shutdown_grace_ms"]),
            ("metrics", vec!["listen"]),
            ("log", vec!["format", "level"]),
        ];
        for (section, keys) in sections {
            assert!(
                example.contains(&format!("[{section}]")),
                "[{section}] is not in the example"
            );
            for key in keys {
                assert!(documented(key), "[{section}] {key} is not in the example");
            }
        }
        // And every legacy key's new place is one of them.
        for (_, section, key) in LEGACY_KEYS {
            assert!(example.contains(&format!("[{section}]")), "[{section}]");
            assert!(documented(key), "[{section}] {key}");
        }
    }

    #[test]
    fn missing_certificate_is_a_read_error() {
        let c = RouterConfig::parse(MINIMAL, Path::new("/nonexistent")).unwrap_or_else(|e| {
            panic!("{e}");
        });
        let e = c.settings().err();
        assert!(
            matches!(e, Some(ConfigError::Tls(TlsError::Read { .. }))),
            "{e:?}"
        );
    }
}
