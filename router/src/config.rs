//! The router's configuration file (`router.toml`).
//!
//! ```toml
//! edge_listen = "0.0.0.0:3022"          # edge (SDK) listener
//! advertised_host = "router.example.com" # what SDKs are told to dial
//! cert_sans = ["er1.internal", "10.0.0.5"] # more names for the edge certificate (enrolment)
//! controller = "ctrl.example.com:6262"   # control channel (or `controllers`, below)
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
//! **`controllers`** replaces `controller` when several controllers share one database:
//!
//! ```toml
//! controllers = ["ctrl-a.example.com:6262", "ctrl-b.example.com:6262"]
//! ```
//!
//! Exactly one of `controller` and `controllers` must be given (a list must not be empty
//! nor name an address twice). The router connects to the first; when that connection
//! fails or is lost it moves on to the next, round robin, and waits out its backoff
//! (100 ms doubling to 10 s, ±20 % jitter) only after a whole round failed. Each address's
//! host is the TLS server name checked against that controller's certificate. A new
//! connection, to whichever controller, starts with the hello and a full state sync;
//! circuits and edge connections stay up meanwhile. The log says which controller the
//! router is connected to, and `weft_router_control_failovers_total` counts the
//! connections that came up on another controller than the one before.
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

/// The most `cert_sans` a config may list (the controller allows 32 names in all).
const MAX_CERT_SANS: usize = 16;

/// The contents of `router.toml`. Paths are resolved against the file's directory.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Address the edge listener binds.
    pub edge_listen: SocketAddr,
    /// Host name SDKs are told to dial (`tls://advertised_host:port`).
    pub advertised_host: String,
    /// More DNS names or IP addresses for the edge listener's server certificate,
    /// asked for at enrolment besides `advertised_host` and `link.advertise`'s host.
    #[serde(default)]
    pub cert_sans: Vec<String>,
    /// Controller control-channel address, `host:port` (the host is also the TLS server
    /// name checked against the controller's certificate). Exactly one of this and
    /// [`Self::controllers`] is set; read both through [`Self::controller_addresses`].
    #[serde(default)]
    pub controller: Option<String>,
    /// Several controllers' control-channel addresses (controllers sharing one
    /// database), tried in order and then round robin (module docs).
    #[serde(default)]
    pub controllers: Option<Vec<String>>,
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
        if self.cert_sans.len() > MAX_CERT_SANS {
            return invalid("cert_sans", &format!("at most {MAX_CERT_SANS} names"));
        }
        if self.cert_sans.iter().any(|n| n.trim().is_empty()) {
            return invalid("cert_sans", "names must not be empty");
        }
        self.validate_controllers()?;
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

    fn validate_controllers(&self) -> Result<(), ConfigError> {
        let (key, addresses) = match (&self.controller, &self.controllers) {
            (Some(one), None) => ("controller", std::slice::from_ref(one)),
            (None, Some(list)) => ("controllers", list.as_slice()),
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "controllers",
                    message: "give either `controller` or `controllers`, not both".into(),
                });
            }
            (None, None) => {
                return Err(ConfigError::Invalid {
                    key: "controller",
                    message: "missing: set `controller = \"host:port\"` or \
                              `controllers = [\"host:port\", ...]`"
                        .into(),
                });
            }
        };
        if addresses.is_empty() {
            return Err(ConfigError::Invalid {
                key,
                message: "must name at least one controller address".into(),
            });
        }
        for (i, address) in addresses.iter().enumerate() {
            // A bare `host:port` (the `tcp` scheme the parser assumes has no default
            // port, so the port must be there).
            let valid = !address.contains('/')
                && !address.chars().any(char::is_whitespace)
                && weft_identity::endpoint::parse(address).is_some();
            if !valid {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("{address:?} is not a `host:port` address"),
                });
            }
            if addresses
                .get(..i)
                .is_some_and(|before| before.contains(address))
            {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("{address:?} is listed twice"),
                });
            }
        }
        Ok(())
    }

    /// The controller control addresses, in the order to try them: `controllers`, or
    /// `controller` alone (never empty once the configuration validated).
    pub fn controller_addresses(&self) -> &[String] {
        match (&self.controllers, &self.controller) {
            (Some(list), _) => list,
            (None, Some(one)) => std::slice::from_ref(one),
            (None, None) => &[],
        }
    }

    /// The runtime settings, loading the TLS certificate and key.
    pub fn settings(&self) -> Result<RouterSettings, ConfigError> {
        let tls = tls::load_edge_tls(&self.cert, &self.key, &self.ca_path())?;
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
            tls,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            metrics_listen: self.metrics_listen,
            max_conns_per_shard: self.max_connections_per_shard,
            io: self.io,
            // Needs the router certificate; the node fills it in.
            link: None,
            // The node's control client fills it in.
            control_stats: None,
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

    /// The names the edge listener's server certificate asks for at enrolment:
    /// `advertised_host`, the host of `link.advertise`, then `cert_sans`, each once.
    pub fn server_cert_names(&self) -> Vec<String> {
        let link_host = self
            .link
            .as_ref()
            .and_then(|l| l.advertise.as_deref())
            .and_then(weft_identity::endpoint::host);
        let mut names: Vec<String> = Vec::new();
        let all = std::iter::once(self.advertised_host.trim().to_string())
            .chain(link_host)
            .chain(self.cert_sans.iter().map(|n| n.trim().to_string()));
        for name in all {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
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
    fn one_controller_or_a_list_of_them() {
        let one = RouterConfig::parse(MINIMAL, Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(one.controller_addresses(), ["127.0.0.1:6262"]);
        let list = MINIMAL.replace(
            "controller = \"127.0.0.1:6262\"",
            "controllers = [\"ctrl-a.example.com:6262\", \"[::1]:6263\", \"10.0.0.3:6262\"]",
        );
        let c = RouterConfig::parse(&list, Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.controller_addresses(),
            ["ctrl-a.example.com:6262", "[::1]:6263", "10.0.0.3:6262"]
        );
        assert_eq!(c.controller, None);
        // A list of one is fine too.
        let single = MINIMAL.replace("controller = ", "controllers = [") + "";
        let single = single.replace("127.0.0.1:6262\"", "127.0.0.1:6262\"]");
        let c = RouterConfig::parse(&single, Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.controller_addresses(), ["127.0.0.1:6262"]);
    }

    #[test]
    fn controller_lists_that_cannot_be_used_are_clear_errors() {
        let without = MINIMAL.replace("controller = \"127.0.0.1:6262\"", "");
        let cases = [
            (without.clone(), "controller", "missing"),
            (
                format!("{MINIMAL}\ncontrollers = [\"127.0.0.1:6263\"]\n"),
                "controllers",
                "not both",
            ),
            (
                format!("{without}\ncontrollers = []\n"),
                "controllers",
                "at least one",
            ),
            (
                format!("{without}\ncontrollers = [\"a:1\", \"nowhere\"]\n"),
                "controllers",
                "\"nowhere\" is not a `host:port`",
            ),
            (
                format!("{without}\ncontrollers = [\"a:1\", \"https://b:2\"]\n"),
                "controllers",
                "not a `host:port`",
            ),
            (
                format!("{without}\ncontrollers = [\"a:1\", \"b:2\", \"a:1\"]\n"),
                "controllers",
                "listed twice",
            ),
            (
                MINIMAL.replace("127.0.0.1:6262", "127.0.0.1"),
                "controller",
                "not a `host:port`",
            ),
        ];
        for (text, want_key, want) in cases {
            match RouterConfig::parse(&text, Path::new(".")) {
                Err(ConfigError::Invalid { key, message }) => {
                    assert_eq!(key, want_key, "{text}");
                    assert!(message.contains(want), "{text}: {message}");
                    let shown = ConfigError::Invalid { key, message }.to_string();
                    assert!(shown.starts_with("invalid config value `"), "{shown}");
                }
                other => panic!("{text}: expected Invalid, got {other:?}"),
            }
        }
        // A list of the wrong type is a parse error naming the key.
        let e = RouterConfig::parse(
            &format!("{without}\ncontrollers = \"a:1\"\n"),
            Path::new("."),
        )
        .err();
        assert!(
            matches!(&e, Some(ConfigError::Parse { message, .. }) if message.contains("controllers")),
            "{e:?}"
        );
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
