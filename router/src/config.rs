//! The router's configuration file (`router.toml`).
//!
//! ```toml
//! edge_listen = "0.0.0.0:3022"          # edge (SDK) listener
//! advertised_host = "router.example.com" # what SDKs are told to dial
//! controller = "ctrl.example.com:6262"   # control channel
//! cert = "certs/server.cert"             # server certificate chain, PEM (relative to this file)
//! key = "certs/server.key"               # its private key, PEM
//! ca = "certs/ca.pem"                    # CA bundle for the controller (default: ca.pem next to cert)
//! shards = 4                             # default: one per core
//! io = "auto"                            # I/O backend: "auto", "uring" or "epoll" (see below)
//! window_bytes = 4194304                 # per-circuit-direction window (ADR 0003)
//! max_conns_per_edge = 65536             # conn ids one SDK connection may hold
//! reply_budget_bytes = 65536             # router answers queued per connection
//! max_conns_per_api_session = 16         # edge connections per API session, per shard
//! max_connections_per_shard = 65536      # edge connections one shard holds
//! hello_timeout_ms = 1000                # hello deadline after the TLS handshake
//! handshake_timeout_ms = 10000           # TLS handshake deadline
//! shutdown_grace_ms = 10000              # how long circuits may finish on shutdown
//! metrics_listen = "127.0.0.1:9100"      # Prometheus text (optional)
//!
//! [link]                                 # links to other routers (optional)
//! listen = "0.0.0.0:4022"                # link listener (absent: dial only)
//! advertise = "router.example.com"       # host[:port] others dial (default advertised_host)
//! groups = ["default"]                   # listener groups
//! dial_groups = ["default"]              # groups this router dials ([]: none)
//! backoff_min_ms = 500                   # first redial delay (×1.5 per failure, ±20 %)
//! backoff_max_ms = 60000                 # longest redial delay
//! ```
//!
//! `weft-router enroll` writes `server.cert`, `server.key`, `router.cert` (the control
//! channel's client certificate), `router.key` and `ca.pem` into the directory of `cert`.
//!
//! **`shards`** defaults to one per core (`std::thread::available_parallelism`, which
//! honours CPU affinity and cgroup quotas). The kernel spreads edge connections over the
//! shards' `SO_REUSEPORT` listeners; a circuit whose dialer and host landed on different
//! shards crosses between them by message (`runtime` module docs).
//!
//! **`io`** picks the shards' I/O backend (docs/adr/0004-router-runtime.md): `"uring"`
//! (io_uring via tokio-uring), `"epoll"` (a tokio current-thread runtime), or `"auto"`
//! (the default): io_uring when the kernel allows it, otherwise epoll with an info log
//! saying why (a container's default seccomp profile and `kernel.io_uring_disabled`
//! block io_uring). `"uring"` on a host without io_uring is a startup error.
//! `weft-router run --io` overrides it.
//!
//! **`[link]`** makes the router part of the mesh (docs/adr/0007-mesh.md): it tells the
//! controller where its link listener is, and dials every router the controller lists
//! whose listener shares a group with its `dial_groups` (of two routers that would dial
//! each other, the one whose id sorts first dials). The advertised host must be one of
//! the names in the router's server certificate (`hostname`, the hosts of
//! `supportedProtocols`, or `serverCertSans` when the router was created).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::edge::EdgeConfig;
use crate::forward::ForwardConfig;
use crate::runtime::{IoSelection, RouterSettings};
use crate::tls::{self, TlsError};

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key, or a value of the wrong type.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line and column.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid config value `{key}`: {message}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The certificate or key could not be loaded.
    #[error("edge TLS: {0}")]
    Tls(#[from] TlsError),
}

/// The contents of `router.toml`. Paths are resolved against the file's directory.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Address the edge listener binds.
    pub edge_listen: SocketAddr,
    /// Host name SDKs are told to dial (`tls://advertised_host:port`).
    pub advertised_host: String,
    /// Controller control-channel address, `host:port` (the host is also the TLS server
    /// name checked against the controller's certificate).
    pub controller: String,
    /// Server certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key of the server certificate, PEM.
    pub key: PathBuf,
    /// CA bundle (PEM) that verifies the controller and the identity certificates of
    /// SDK clients; `ca.pem` next to `cert` when absent.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Number of shards (threads); default one per core.
    #[serde(default = "default_shards")]
    pub shards: usize,
    /// Bytes one circuit direction may queue toward a slow reader.
    #[serde(default = "default_window")]
    pub window_bytes: usize,
    /// Conn ids (dials, listeners, accepted) one SDK connection may hold.
    #[serde(default = "default_max_conns")]
    pub max_conns_per_edge: usize,
    /// Bytes of the router's own answers (latency replies, Results, StateClosed, ...)
    /// that may wait unwritten for one edge connection; beyond it the connection is not
    /// read until its peer reads.
    #[serde(default = "default_reply_budget")]
    pub reply_budget_bytes: usize,
    /// Edge connections one API session may hold per shard.
    #[serde(default = "default_max_conns_per_api_session")]
    pub max_conns_per_api_session: usize,
    /// Edge connections one shard holds; more are closed after the handshake.
    #[serde(default = "default_max_conns_per_shard")]
    pub max_connections_per_shard: usize,
    /// Milliseconds an SDK has after the TLS handshake to send its hello.
    #[serde(default = "default_hello_timeout")]
    pub hello_timeout_ms: u64,
    /// Milliseconds a client has to finish the TLS handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_ms: u64,
    /// Milliseconds circuits may go on after a shutdown signal.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_ms: u64,
    /// Where to serve Prometheus metrics; none when absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The shards' I/O backend: `auto` (default), `uring` or `epoll` (module docs).
    #[serde(default)]
    pub io: IoSelection,
    /// Links to other routers (the mesh); none when absent.
    #[serde(default)]
    pub link: Option<LinkSection>,
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
    /// First delay before a lost or failed link is dialled again (milliseconds); it
    /// grows ×1.5 per failure, with ±20 % jitter.
    #[serde(default = "default_backoff_min")]
    pub backoff_min_ms: u64,
    /// Longest delay between dials (milliseconds).
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
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

fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}
fn default_max_conns_per_api_session() -> usize {
    ForwardConfig::default().max_conns_per_api_session
}
fn default_reply_budget() -> usize {
    EdgeConfig::default().reply_budget
}
fn default_window() -> usize {
    ForwardConfig::default().window
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
fn default_shutdown_grace() -> u64 {
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
            other => other,
        })
    }

    /// Parses and validates TOML text; relative paths become relative to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        for path in [&mut config.cert, &mut config.key]
            .into_iter()
            .chain(config.ca.as_mut())
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        if self.shards == 0 || self.shards > 1024 {
            return invalid("shards", "must be between 1 and 1024");
        }
        if self.window_bytes < 64 * 1024 {
            return invalid("window_bytes", "must be at least 65536");
        }
        if self.max_conns_per_edge == 0 {
            return invalid("max_conns_per_edge", "must be at least 1");
        }
        if self.max_conns_per_api_session == 0 {
            return invalid("max_conns_per_api_session", "must be at least 1");
        }
        if self.reply_budget_bytes < 4096 {
            return invalid("reply_budget_bytes", "must be at least 4096");
        }
        if self.max_connections_per_shard == 0 {
            return invalid("max_connections_per_shard", "must be at least 1");
        }
        if self.hello_timeout_ms == 0 {
            return invalid("hello_timeout_ms", "must be at least 1");
        }
        if self.handshake_timeout_ms == 0 {
            return invalid("handshake_timeout_ms", "must be at least 1");
        }
        if self.advertised_host.trim().is_empty() {
            return invalid("advertised_host", "must not be empty");
        }
        if let Some(link) = &self.link {
            if link
                .advertise
                .as_deref()
                .is_some_and(|a| a.trim().is_empty())
            {
                return invalid("link.advertise", "must not be empty");
            }
            let groups = link.groups.iter().chain(&link.dial_groups);
            if groups.into_iter().any(|g| g.trim().is_empty()) {
                return invalid("link.groups", "group names must not be empty");
            }
            if link.backoff_min_ms == 0 || link.backoff_max_ms < link.backoff_min_ms {
                return invalid(
                    "link.backoff_max_ms",
                    "backoff_min_ms must be at least 1 and backoff_max_ms at least backoff_min_ms",
                );
            }
        }
        Ok(())
    }

    /// The runtime settings, loading the TLS certificate and key.
    pub fn settings(&self) -> Result<RouterSettings, ConfigError> {
        let tls = tls::load_server_config(&self.cert, &self.key, &self.ca_path())?;
        let edge = EdgeConfig {
            hello_timeout: Duration::from_millis(self.hello_timeout_ms),
            max_conns: self.max_conns_per_edge,
            reply_budget: self.reply_budget_bytes,
            ..EdgeConfig::default()
        };
        Ok(RouterSettings {
            edge_listen: self.edge_listen,
            shards: self.shards,
            forward: ForwardConfig {
                // Set from the router certificate when the node starts.
                router_id: String::new(),
                max_conns_per_api_session: self.max_conns_per_api_session,
                edge,
                window: self.window_bytes,
                // Set when the node starts links.
                mesh_shard: None,
            },
            tls: Arc::new(tls),
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            metrics_listen: self.metrics_listen,
            max_conns_per_shard: self.max_connections_per_shard,
            io: self.io,
            // Needs the router certificate; the node fills it in.
            link: None,
        })
    }

    /// The CA bundle: `ca`, or `ca.pem` next to the edge certificate (where `weft-router
    /// enroll` writes the controller's bundle). It verifies the controller on the control
    /// channel and the identity certificates SDKs present on the edge listener.
    pub fn ca_path(&self) -> PathBuf {
        self.ca
            .clone()
            .unwrap_or_else(|| self.cert_dir().join(crate::enroll::CA_FILE))
    }

    /// The directory of the edge certificate, where `weft-router enroll` writes every
    /// certificate and key and where the control client finds `router.cert` and
    /// `router.key`.
    pub fn cert_dir(&self) -> PathBuf {
        self.cert
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }

    /// How long circuits may go on after a shutdown signal.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        edge_listen = "127.0.0.1:3022"
        advertised_host = "localhost"
        controller = "127.0.0.1:6262"
        cert = "certs/server.cert"
        key = "/abs/server.key"
    "#;

    #[test]
    fn defaults_and_relative_paths() {
        let c = RouterConfig::parse(MINIMAL, Path::new("/etc/weft")).unwrap_or_else(|e| {
            panic!("{e}");
        });
        assert_eq!(c.shards, default_shards());
        assert!(c.shards >= 1);
        assert_eq!(c.window_bytes, 4 * 1024 * 1024);
        assert_eq!(c.hello_timeout_ms, 1000);
        assert_eq!(c.cert, PathBuf::from("/etc/weft/certs/server.cert"));
        assert_eq!(c.key, PathBuf::from("/abs/server.key"));
        assert_eq!(c.metrics_listen, None);
        assert_eq!(c.io, IoSelection::Auto);
    }

    #[test]
    fn link_section_defaults_and_refusals() {
        let c = RouterConfig::parse(
            &format!("{MINIMAL}\n[link]\nlisten = \"0.0.0.0:4022\"\n"),
            Path::new("."),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let link = c.link.unwrap_or_else(|| panic!("no [link]"));
        assert_eq!(link.listen, Some("0.0.0.0:4022".parse().unwrap()));
        assert_eq!(link.groups, ["default"]);
        assert_eq!(link.dial_groups, ["default"]);
        assert_eq!(link.advertise, None);
        assert_eq!(
            RouterConfig::parse(MINIMAL, Path::new(".")).unwrap().link,
            None
        );
        for bad in [
            "[link]\nadvertise = \" \"\n",
            "[link]\ngroups = [\"\"]\n",
            "[link]\nlisten = \"nowhere\"\n",
            "[link]\nport = 4022\n",
            "[link]\nbackoff_min_ms = 0\n",
            "[link]\nbackoff_min_ms = 900\nbackoff_max_ms = 800\n",
        ] {
            let e = RouterConfig::parse(&format!("{MINIMAL}\n{bad}"), Path::new(".")).err();
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
            let c = RouterConfig::parse(&format!("{MINIMAL}\nio = \"{text}\"\n"), Path::new("."))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.io, value);
        }
        let bad = format!("{MINIMAL}\nio = \"kqueue\"\n");
        let e = RouterConfig::parse(&bad, Path::new(".")).err();
        assert!(
            matches!(&e, Some(ConfigError::Parse { message, .. }) if message.contains("kqueue")
                || message.contains("unknown variant")),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let unknown = format!("{MINIMAL}\nshard = 2\n");
        let e = RouterConfig::parse(&unknown, Path::new(".")).err();
        assert!(
            matches!(&e, Some(ConfigError::Parse { message, .. }) if message.contains("shard")),
            "{e:?}"
        );
        let zero = format!("{MINIMAL}\nshards = 0\n");
        let e = RouterConfig::parse(&zero, Path::new(".")).err();
        assert!(
            matches!(e, Some(ConfigError::Invalid { key: "shards", .. })),
            "{e:?}"
        );
        let bad_addr = MINIMAL.replace("127.0.0.1:3022", "nowhere");
        assert!(matches!(
            RouterConfig::parse(&bad_addr, Path::new(".")),
            Err(ConfigError::Parse { .. })
        ));
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
