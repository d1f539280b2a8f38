//! Controller configuration, read from an optional TOML file.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// Configuration of `weft-controller run`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTPS listener (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Host name clients use to reach the controller; goes into the enrollment
    /// JWT `iss` and the server certificate.
    pub advertised_host: String,
    /// Extra DNS names for the server certificate (`localhost` is always included).
    pub dns_names: Vec<String>,
    /// API session idle timeout in seconds (OpenZiti default 1800).
    pub api_session_timeout_secs: i64,
    /// Lifetime of one-time enrollment tokens in seconds.
    pub enrollment_ttl_secs: i64,
    /// Lifetime of issued identity certificates in days.
    pub identity_cert_days: i64,
    /// Address of the router control listener (mutual TLS; port 0 picks a free port).
    /// OpenZiti's routers reach the controller's control plane on 6262 by default.
    pub control_listen: SocketAddr,
    /// Lifetime of issued router certificates in days.
    pub router_cert_days: i64,
    /// Where to serve Prometheus text metrics (plain HTTP, `GET /metrics`); none when
    /// absent (like the router's `metrics_listen`).
    pub metrics_listen: Option<SocketAddr>,
    /// Password hashes (Argon2id, about 19 MiB each) computed at once; 0 (the default)
    /// means half the CPU cores, at least one, so that hashing never takes every core
    /// from request handling.
    pub password_hash_concurrency: usize,
    /// Password checks that may wait for a free hashing slot; beyond it a login is
    /// answered 429 `RATE_LIMITED` at once (default 64).
    pub password_queue_max: usize,
    /// How long a password check may wait for a hashing slot before it is answered
    /// 429 `RATE_LIMITED`, in milliseconds (default 5000).
    pub password_queue_timeout_ms: u64,
    /// Failed password logins allowed in a burst per user name and per source address
    /// before further attempts are refused with 429 `RATE_LIMITED` (default 10).
    pub login_failures_burst: u32,
    /// Rate at which that allowance comes back, failed logins per minute (default 10).
    pub login_failures_per_minute: u32,
    /// Most user names and source addresses the login throttle remembers (default 10000);
    /// when full, the entries that recovered their whole allowance go first, then the
    /// least recently failed.
    pub login_throttle_max_entries: usize,
    /// Time a new HTTPS connection has for its TLS handshake, in milliseconds (default 10000).
    pub tls_handshake_timeout_ms: u64,
    /// Time after the TLS handshake within which a connection must have sent a complete
    /// request head, in milliseconds (default 10000); otherwise it is closed.
    pub http_header_read_timeout_ms: u64,
    /// Time a connection may stay open between requests, in milliseconds (default 30000).
    pub http_idle_timeout_ms: u64,
    /// Longest a request may take, body and handler included, in milliseconds
    /// (default 60000); then the connection is closed.
    pub http_request_timeout_ms: u64,
    /// Open HTTPS connections allowed per source IP address (default 256); excess
    /// connections are closed as soon as they are accepted.
    pub max_connections_per_source: usize,
    /// Sessions one API session may hold at once (default 4096); `POST /sessions` beyond
    /// it is answered 429 `RATE_LIMITED`.
    pub max_sessions_per_api_session: usize,
    /// How long a write to a router's control connection may block before the
    /// connection is closed, in milliseconds (default 30000).
    pub control_write_timeout_ms: u64,
    /// Bytes queued for one router's control connection before it is closed as not
    /// reading (default 16 MiB).
    pub control_max_outbound_bytes: usize,
    /// Issuer named in TOTP provisioning URLs (what authenticator apps show above the
    /// code; OpenZiti's `edge.totp.hostname`), default `Weft`.
    pub totp_issuer: String,
    /// The database (`[store]`).
    pub store: StoreConfig,
    /// External JWT signers' key fetching (`[ext_jwt]`).
    pub ext_jwt: ExtJwtConfig,
}

/// `[ext_jwt]`: how the controller fetches external JWT signers' JWK sets.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtJwtConfig {
    /// Hosts (names or IP addresses, as written in `jwksEndpoint` URLs) whose JWK sets
    /// may be fetched even though they resolve to loopback, private, link-local or
    /// other non-public addresses, which are refused otherwise (server-side request
    /// forgery guard).
    pub allowed_hosts: Vec<String>,
    /// A PEM file of CA certificates trusted for JWKS servers besides the public roots
    /// (a private identity provider).
    pub ca_file: Option<std::path::PathBuf>,
    /// Connect and total time limit of one JWKS fetch, in milliseconds (default 5000).
    pub fetch_timeout_ms: u64,
    /// Largest JWKS response accepted, in bytes (default 262144).
    pub max_jwks_bytes: usize,
    /// Shortest time between two fetches of one signer's JWKS, in milliseconds (default
    /// 5000): a token with an unknown `kid` makes a fetch only this often.
    pub min_refetch_interval_ms: u64,
    /// Age after which a signer's cached keys are fetched again when used, in seconds
    /// (default 300); the cached keys stay in use when that fetch fails.
    pub jwks_max_age_secs: u64,
    /// JWKS fetches in flight at once, all signers together (default 4).
    pub max_concurrent_fetches: usize,
}

impl Default for ExtJwtConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            ca_file: None,
            fetch_timeout_ms: 5000,
            max_jwks_bytes: 256 * 1024,
            min_refetch_interval_ms: 5000,
            jwks_max_age_secs: 300,
            max_concurrent_fetches: 4,
        }
    }
}

/// `[store]`: where the controller keeps its state.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite:PATH` (one controller; the default is `weft.db` in the data directory)
    /// or `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (one or several
    /// controllers sharing it). The environment variable `WEFT_STORE_URL`, when set,
    /// overrides it (so a password need not be written in the file).
    pub url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1280)),
            advertised_host: "localhost".into(),
            dns_names: Vec::new(),
            api_session_timeout_secs: 1800,
            enrollment_ttl_secs: 24 * 3600,
            identity_cert_days: 365,
            control_listen: SocketAddr::from(([127, 0, 0, 1], 6262)),
            router_cert_days: 365,
            metrics_listen: None,
            password_hash_concurrency: 0,
            password_queue_max: 64,
            password_queue_timeout_ms: 5000,
            login_failures_burst: 10,
            login_failures_per_minute: 10,
            login_throttle_max_entries: 10_000,
            tls_handshake_timeout_ms: 10_000,
            http_header_read_timeout_ms: 10_000,
            http_idle_timeout_ms: 30_000,
            http_request_timeout_ms: 60_000,
            max_connections_per_source: 256,
            max_sessions_per_api_session: 4096,
            control_write_timeout_ms: 30_000,
            control_max_outbound_bytes: 16 * 1024 * 1024,
            totp_issuer: "Weft".into(),
            store: StoreConfig::default(),
            ext_jwt: ExtJwtConfig::default(),
        }
    }
}

/// Errors reading the configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not valid TOML for [`Config`].
    #[error("invalid config file: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value is out of range.
    #[error("invalid config value: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads the configuration from `path`, or the defaults when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut cfg: Self = match path {
            Some(p) => toml::from_str(&std::fs::read_to_string(p)?)?,
            None => Self::default(),
        };
        if let Some(url) = std::env::var("WEFT_STORE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            cfg.store.url = Some(url);
        }
        if let Some(url) = &cfg.store.url {
            let known = ["sqlite:", "postgres://", "postgresql://"];
            if !known.iter().any(|p| url.starts_with(p)) {
                return Err(ConfigError::Invalid(format!(
                    "[store] url {:?} must start with sqlite:, postgres:// or postgresql://",
                    crate::store::redacted_url(url)
                )));
            }
        }
        if cfg.api_session_timeout_secs < 1 {
            return Err(ConfigError::Invalid(
                "api_session_timeout_secs must be positive".into(),
            ));
        }
        if cfg.enrollment_ttl_secs < 1 || cfg.identity_cert_days < 1 || cfg.router_cert_days < 1 {
            return Err(ConfigError::Invalid("lifetimes must be positive".into()));
        }
        let positive = [
            ("password_queue_timeout_ms", cfg.password_queue_timeout_ms),
            ("login_failures_burst", u64::from(cfg.login_failures_burst)),
            (
                "login_failures_per_minute",
                u64::from(cfg.login_failures_per_minute),
            ),
            (
                "login_throttle_max_entries",
                cfg.login_throttle_max_entries as u64,
            ),
            ("tls_handshake_timeout_ms", cfg.tls_handshake_timeout_ms),
            (
                "http_header_read_timeout_ms",
                cfg.http_header_read_timeout_ms,
            ),
            ("http_idle_timeout_ms", cfg.http_idle_timeout_ms),
            ("http_request_timeout_ms", cfg.http_request_timeout_ms),
            (
                "max_connections_per_source",
                cfg.max_connections_per_source as u64,
            ),
            (
                "max_sessions_per_api_session",
                cfg.max_sessions_per_api_session as u64,
            ),
            ("control_write_timeout_ms", cfg.control_write_timeout_ms),
            (
                "control_max_outbound_bytes",
                cfg.control_max_outbound_bytes as u64,
            ),
            ("ext_jwt.fetch_timeout_ms", cfg.ext_jwt.fetch_timeout_ms),
            ("ext_jwt.max_jwks_bytes", cfg.ext_jwt.max_jwks_bytes as u64),
            (
                "ext_jwt.max_concurrent_fetches",
                cfg.ext_jwt.max_concurrent_fetches as u64,
            ),
            ("ext_jwt.jwks_max_age_secs", cfg.ext_jwt.jwks_max_age_secs),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!("{key} must be positive")));
        }
        if cfg.advertised_host.is_empty() {
            return Err(ConfigError::Invalid(
                "advertised_host must not be empty".into(),
            ));
        }
        Ok(cfg)
    }

    /// Password hashes computed at once: [`Self::password_hash_concurrency`], or half
    /// the CPU cores (at least one) when that is 0.
    pub fn hash_slots(&self) -> usize {
        match self.password_hash_concurrency {
            0 => {
                (std::thread::available_parallelism().map_or(1, std::num::NonZero::get) / 2).max(1)
            }
            n => n,
        }
    }

    /// The store URL: `[store] url`, or SQLite in `data_dir`.
    pub fn store_url(&self, data_dir: &Path) -> String {
        match &self.store.url {
            Some(url) => url.clone(),
            None => crate::store::sqlite_url(&data_dir.join(crate::controller::DB_FILE)),
        }
    }

    /// All DNS names for the server certificate.
    pub fn server_dns_names(&self) -> Vec<String> {
        let mut names = vec!["localhost".to_string(), self.advertised_host.clone()];
        names.extend(self.dns_names.iter().cloned());
        names.sort();
        names.dedup();
        names
    }
}
