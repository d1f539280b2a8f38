//! Controller configuration, read from an optional TOML file in sections (`[http]`,
//! `[control]`, `[metrics]`, `[store]`, `[pki]`, `[auth]`, `[log]`, `[ext_jwt]`);
//! `controller-lite/dist/controller.toml` documents every key with its default.
//!
//! The flat keys of earlier versions (`listen`, `metrics_listen`,
//! `api_session_timeout_secs`, …) are still read: each is moved to its section
//! ([`LEGACY_KEYS`]) and listed in [`Config::deprecated`], which the controller logs at
//! start. A file that sets a key both ways is refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Configuration of `weft-controller`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The HTTPS listener of both APIs (`[http]`).
    pub http: HttpConfig,
    /// The routers' control channel (`[control]`).
    pub control: ControlConfig,
    /// The operations endpoint (`[metrics]`).
    pub metrics: MetricsConfig,
    /// The database (`[store]`).
    pub store: StoreConfig,
    /// Certificate and token lifetimes (`[pki]`).
    pub pki: PkiConfig,
    /// API sessions and password logins (`[auth]`).
    pub auth: AuthConfig,
    /// Logging (`[log]`); `--log-format`, `--log-level` and `RUST_LOG` win over it.
    pub log: weft_ops::logging::LogSection,
    /// External JWT signers' key fetching (`[ext_jwt]`).
    pub ext_jwt: ExtJwtConfig,
    /// Flat keys of earlier versions found in the file, each with where it belongs now
    /// (`[section] key`).
    #[serde(skip)]
    pub deprecated: Vec<(String, String)>,
}

/// `[http]`: the HTTPS listener that serves the Edge Client and Management APIs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the HTTPS listener (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Host name clients use to reach the controller; goes into the enrollment
    /// JWT `iss` and the server certificate.
    pub advertised_host: String,
    /// Extra DNS names for the server certificate (`localhost` is always included).
    pub dns_names: Vec<String>,
    /// Time a new HTTPS connection has for its TLS handshake, in milliseconds.
    pub tls_handshake_timeout_ms: u64,
    /// Time after the TLS handshake within which a connection must have sent a complete
    /// request head, in milliseconds; otherwise it is closed.
    pub header_read_timeout_ms: u64,
    /// Time a connection may stay open between requests, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Longest a request may take, body and handler included, in milliseconds; then the
    /// connection is closed.
    pub request_timeout_ms: u64,
    /// Open HTTPS connections allowed per source IP address; excess connections are
    /// closed as soon as they are accepted.
    pub max_connections_per_source: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1280)),
            advertised_host: "localhost".into(),
            dns_names: Vec::new(),
            tls_handshake_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            request_timeout_ms: 60_000,
            max_connections_per_source: 256,
        }
    }
}

/// `[control]`: the mutual-TLS listener routers connect to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Address of the router control listener (port 0 picks a free port). OpenZiti's
    /// routers reach the controller's control plane on 6262 by default.
    pub listen: SocketAddr,
    /// How long a write to a router's control connection may block before the
    /// connection is closed, in milliseconds.
    pub write_timeout_ms: u64,
    /// Bytes queued for one router's control connection before it is closed as not
    /// reading.
    pub max_outbound_bytes: usize,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 6262)),
            write_timeout_ms: 30_000,
            max_outbound_bytes: 16 * 1024 * 1024,
        }
    }
}

/// `[metrics]`: the plain-HTTP operations endpoint (`/metrics`, `/health`, `/ready`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to serve it; not served when absent.
    pub listen: Option<SocketAddr>,
}

/// `[pki]`: lifetimes of what the controller's CA and token signer issue.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PkiConfig {
    /// Lifetime of issued identity certificates in days.
    pub identity_cert_days: i64,
    /// Lifetime of issued router certificates in days.
    pub router_cert_days: i64,
    /// Lifetime of one-time enrollment tokens in seconds.
    pub enrollment_ttl_secs: i64,
}

impl Default for PkiConfig {
    fn default() -> Self {
        Self {
            identity_cert_days: 365,
            router_cert_days: 365,
            enrollment_ttl_secs: 24 * 3600,
        }
    }
}

/// `[auth]`: API sessions, password hashing and the login throttle, MFA.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// API session idle timeout in seconds (OpenZiti default 1800).
    pub api_session_timeout_secs: i64,
    /// Sessions one API session may hold at once; `POST /sessions` beyond it is
    /// answered 429 `RATE_LIMITED`.
    pub max_sessions_per_api_session: usize,
    /// Password hashes (Argon2id, about 19 MiB each) computed at once; 0 means half the
    /// CPU cores, at least one, so that hashing never takes every core from request
    /// handling.
    pub password_hash_concurrency: usize,
    /// Password checks that may wait for a free hashing slot; beyond it a login is
    /// answered 429 `RATE_LIMITED` at once.
    pub password_queue_max: usize,
    /// How long a password check may wait for a hashing slot before it is answered
    /// 429 `RATE_LIMITED`, in milliseconds.
    pub password_queue_timeout_ms: u64,
    /// Failed password logins allowed in a burst per user name and per source address
    /// before further attempts are refused with 429 `RATE_LIMITED`.
    pub login_failures_burst: u32,
    /// Rate at which that allowance comes back, failed logins per minute.
    pub login_failures_per_minute: u32,
    /// Most user names and source addresses the login throttle remembers; when full,
    /// the entries that recovered their whole allowance go first, then the least
    /// recently failed.
    pub login_throttle_max_entries: usize,
    /// Issuer named in TOTP provisioning URLs (what authenticator apps show above the
    /// code; OpenZiti's `edge.totp.hostname`).
    pub totp_issuer: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            api_session_timeout_secs: 1800,
            max_sessions_per_api_session: 4096,
            password_hash_concurrency: 0,
            password_queue_max: 64,
            password_queue_timeout_ms: 5000,
            login_failures_burst: 10,
            login_failures_per_minute: 10,
            login_throttle_max_entries: 10_000,
            totp_issuer: "Weft".into(),
        }
    }
}

/// `[ext_jwt]`: how the controller fetches external JWT signers' JWK sets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtJwtConfig {
    /// Hosts (names or IP addresses, as written in `jwksEndpoint` URLs) whose JWK sets
    /// may be fetched even though they resolve to loopback, private, link-local or
    /// other non-public addresses, which are refused otherwise (server-side request
    /// forgery guard).
    pub allowed_hosts: Vec<String>,
    /// A PEM file of CA certificates trusted for JWKS servers besides the public roots
    /// (a private identity provider).
    pub ca_file: Option<PathBuf>,
    /// Connect and total time limit of one JWKS fetch, in milliseconds.
    pub fetch_timeout_ms: u64,
    /// Largest JWKS response accepted, in bytes.
    pub max_jwks_bytes: usize,
    /// Shortest time between two fetches of one signer's JWKS, in milliseconds: a
    /// token with an unknown `kid` makes a fetch only this often.
    pub min_refetch_interval_ms: u64,
    /// Age after which a signer's cached keys are fetched again when used, in seconds;
    /// the cached keys stay in use when that fetch fails.
    pub jwks_max_age_secs: u64,
    /// JWKS fetches in flight at once, all signers together.
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite:PATH` (one controller; the default is `weft.db` in the data directory)
    /// or `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (one or several
    /// controllers sharing it). The environment variable `WEFT_STORE_URL`, when set,
    /// overrides it (so a password need not be written in the file).
    pub url: Option<String>,
    /// Snapshots of an SQLite store (`POST /database/snapshot`) kept beside it: a new
    /// one removes the oldest beyond this many (0 keeps them all).
    pub snapshots_kept: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            snapshots_kept: 10,
        }
    }
}

/// The flat keys of earlier versions: `(key, section, key in the section)`.
pub const LEGACY_KEYS: &[weft_ops::config::FlatKey] = &[
    ("listen", "http", "listen"),
    ("advertised_host", "http", "advertised_host"),
    ("dns_names", "http", "dns_names"),
    (
        "tls_handshake_timeout_ms",
        "http",
        "tls_handshake_timeout_ms",
    ),
    (
        "http_header_read_timeout_ms",
        "http",
        "header_read_timeout_ms",
    ),
    ("http_idle_timeout_ms", "http", "idle_timeout_ms"),
    ("http_request_timeout_ms", "http", "request_timeout_ms"),
    (
        "max_connections_per_source",
        "http",
        "max_connections_per_source",
    ),
    ("control_listen", "control", "listen"),
    ("control_write_timeout_ms", "control", "write_timeout_ms"),
    (
        "control_max_outbound_bytes",
        "control",
        "max_outbound_bytes",
    ),
    ("metrics_listen", "metrics", "listen"),
    ("identity_cert_days", "pki", "identity_cert_days"),
    ("router_cert_days", "pki", "router_cert_days"),
    ("enrollment_ttl_secs", "pki", "enrollment_ttl_secs"),
    (
        "api_session_timeout_secs",
        "auth",
        "api_session_timeout_secs",
    ),
    (
        "max_sessions_per_api_session",
        "auth",
        "max_sessions_per_api_session",
    ),
    (
        "password_hash_concurrency",
        "auth",
        "password_hash_concurrency",
    ),
    ("password_queue_max", "auth", "password_queue_max"),
    (
        "password_queue_timeout_ms",
        "auth",
        "password_queue_timeout_ms",
    ),
    ("login_failures_burst", "auth", "login_failures_burst"),
    (
        "login_failures_per_minute",
        "auth",
        "login_failures_per_minute",
    ),
    (
        "login_throttle_max_entries",
        "auth",
        "login_throttle_max_entries",
    ),
    ("totp_issuer", "auth", "totp_issuer"),
];

/// Errors reading the configuration; each names where the value came from (the file,
/// or `WEFT_STORE_URL`), the key and the reason, once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML, or names a key or value the configuration does not have
    /// (the TOML error gives the line and the key).
    #[error("{origin}: {source}")]
    Toml {
        /// The file.
        origin: String,
        /// The parser's error.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or a key is given twice.
    #[error("{origin}: {key}: {reason}")]
    Invalid {
        /// The file, or the environment variable.
        origin: String,
        /// `[section] key`.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl Config {
    /// Loads the configuration from `path`, or the defaults when `None`; then
    /// `WEFT_STORE_URL`, and checks every value.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (mut cfg, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Io {
                    path: p.to_path_buf(),
                    source,
                })?;
                (
                    Self::parse(&text, &p.display().to_string())?,
                    p.display().to_string(),
                )
            }
            None => (Self::default(), "the defaults".to_owned()),
        };
        if let Some(url) = std::env::var("WEFT_STORE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            cfg.store.url = Some(url);
            cfg.check_store_url("WEFT_STORE_URL")?;
        }
        cfg.check(&origin)?;
        Ok(cfg)
    }

    /// Parses TOML `text` (from `origin`, for errors), moving flat keys of earlier
    /// versions to their sections; values are not checked ([`Self::load`] does).
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let toml_err = |source| ConfigError::Toml {
            origin: origin.to_owned(),
            source: Box::new(source),
        };
        let mut table: toml::Table = text.parse().map_err(toml_err)?;
        let deprecated = migrate_legacy(&mut table, origin)?;
        let mut cfg: Self = if deprecated.is_empty() {
            // From the text, so that an error points at its line.
            toml::from_str(text).map_err(toml_err)?
        } else {
            toml::Value::Table(table).try_into().map_err(toml_err)?
        };
        cfg.deprecated = deprecated;
        Ok(cfg)
    }

    fn check_store_url(&self, origin: &str) -> Result<(), ConfigError> {
        if let Some(url) = &self.store.url {
            let known = ["sqlite:", "postgres://", "postgresql://"];
            if !known.iter().any(|p| url.starts_with(p)) {
                return Err(ConfigError::Invalid {
                    origin: origin.to_owned(),
                    key: "[store] url".into(),
                    reason: format!(
                        "{:?} must start with sqlite:, postgres:// or postgresql://",
                        crate::store::redacted_url(url)
                    ),
                });
            }
        }
        Ok(())
    }

    /// Checks every value; the first wrong one is the error.
    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                key: key.to_owned(),
                reason: reason.to_owned(),
            })
        };
        self.check_store_url(origin)?;
        let positive_i64 = [
            (
                "[auth] api_session_timeout_secs",
                self.auth.api_session_timeout_secs,
            ),
            ("[pki] enrollment_ttl_secs", self.pki.enrollment_ttl_secs),
            ("[pki] identity_cert_days", self.pki.identity_cert_days),
            ("[pki] router_cert_days", self.pki.router_cert_days),
        ];
        if let Some((key, _)) = positive_i64.iter().find(|(_, v)| *v < 1) {
            return invalid(key, "must be positive");
        }
        let positive = [
            (
                "[auth] password_queue_timeout_ms",
                self.auth.password_queue_timeout_ms,
            ),
            (
                "[auth] login_failures_burst",
                u64::from(self.auth.login_failures_burst),
            ),
            (
                "[auth] login_failures_per_minute",
                u64::from(self.auth.login_failures_per_minute),
            ),
            (
                "[auth] login_throttle_max_entries",
                self.auth.login_throttle_max_entries as u64,
            ),
            (
                "[auth] max_sessions_per_api_session",
                self.auth.max_sessions_per_api_session as u64,
            ),
            (
                "[http] tls_handshake_timeout_ms",
                self.http.tls_handshake_timeout_ms,
            ),
            (
                "[http] header_read_timeout_ms",
                self.http.header_read_timeout_ms,
            ),
            ("[http] idle_timeout_ms", self.http.idle_timeout_ms),
            ("[http] request_timeout_ms", self.http.request_timeout_ms),
            (
                "[http] max_connections_per_source",
                self.http.max_connections_per_source as u64,
            ),
            ("[control] write_timeout_ms", self.control.write_timeout_ms),
            (
                "[control] max_outbound_bytes",
                self.control.max_outbound_bytes as u64,
            ),
            ("[ext_jwt] fetch_timeout_ms", self.ext_jwt.fetch_timeout_ms),
            (
                "[ext_jwt] max_jwks_bytes",
                self.ext_jwt.max_jwks_bytes as u64,
            ),
            (
                "[ext_jwt] max_concurrent_fetches",
                self.ext_jwt.max_concurrent_fetches as u64,
            ),
            (
                "[ext_jwt] jwks_max_age_secs",
                self.ext_jwt.jwks_max_age_secs,
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return invalid(key, "must be positive");
        }
        if self.http.advertised_host.trim().is_empty() {
            return invalid("[http] advertised_host", "must not be empty");
        }
        if let Err((key, reason)) = self.log.check() {
            return invalid(key, &reason);
        }
        Ok(())
    }

    /// Password hashes computed at once: `[auth] password_hash_concurrency`, or half
    /// the CPU cores (at least one) when that is 0.
    pub fn hash_slots(&self) -> usize {
        match self.auth.password_hash_concurrency {
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
        let mut names = vec!["localhost".to_string(), self.http.advertised_host.clone()];
        names.extend(self.http.dns_names.iter().cloned());
        names.sort();
        names.dedup();
        names
    }
}

/// Moves the flat keys of earlier versions into their sections ([`LEGACY_KEYS`]).
fn migrate_legacy(
    table: &mut toml::Table,
    origin: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    weft_ops::config::move_flat_keys(table, LEGACY_KEYS).map_err(|e| ConfigError::Invalid {
        origin: origin.to_owned(),
        key: e.key,
        reason: e.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_parse_and_flat_keys_of_earlier_versions_move_to_them() {
        let cfg = Config::parse(
            "[http]\nlisten = \"127.0.0.1:1\"\n[auth]\napi_session_timeout_secs = 60\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(cfg.http.listen.port(), 1);
        assert_eq!(cfg.auth.api_session_timeout_secs, 60);
        assert!(cfg.deprecated.is_empty());

        let old = Config::parse(
            "listen = \"127.0.0.1:2\"\nmetrics_listen = \"127.0.0.1:3\"\n[store]\n",
            "old.toml",
        )
        .unwrap();
        assert_eq!(old.http.listen.port(), 2);
        assert_eq!(old.metrics.listen.map(|a| a.port()), Some(3));
        assert_eq!(
            old.deprecated,
            [
                ("listen".to_owned(), "[http] listen".to_owned()),
                ("metrics_listen".to_owned(), "[metrics] listen".to_owned()),
            ]
        );
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_reason() {
        let both = Config::parse(
            "listen = \"127.0.0.1:2\"\n[http]\nlisten = \"127.0.0.1:3\"\n",
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            both,
            "c.toml: listen: set both as `listen` and as [http] listen"
        );
        let unknown = Config::parse("[http]\nlistne = \"127.0.0.1:3\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.starts_with("c.toml: ") && unknown.contains("listne"),
            "{unknown}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.toml");
        std::fs::write(&path, "[auth]\napi_session_timeout_secs = 0\n").unwrap();
        let zero = Config::load(Some(&path)).unwrap_err().to_string();
        assert_eq!(
            zero,
            format!(
                "{}: [auth] api_session_timeout_secs: must be positive",
                path.display()
            )
        );
        std::fs::write(&path, "[log]\nformat = \"xml\"\n").unwrap();
        let format = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            format.contains("line 2")
                && format.contains("unknown variant `xml`, expected `text` or `json`"),
            "{format}"
        );
        let missing = Config::load(Some(&dir.path().join("nope.toml")))
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with("cannot read the config file "),
            "{missing}"
        );
    }

    /// Every key of the configuration, as `section.key`.
    fn keys(table: &toml::Table) -> Vec<String> {
        table
            .iter()
            .flat_map(|(section, v)| {
                v.as_table()
                    .into_iter()
                    .flat_map(|t| t.keys())
                    .map(move |k| format!("{section}.{k}"))
            })
            .collect()
    }

    #[test]
    fn the_shipped_example_documents_every_key_and_parses() {
        let text = include_str!("../dist/controller.toml");
        let example = Config::parse(text, "dist/controller.toml").unwrap();
        assert!(example.deprecated.is_empty());
        let set: toml::Table = text.parse().unwrap();
        let set = keys(&set);
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        for key in keys(&defaults) {
            assert!(set.contains(&key), "dist/controller.toml lacks {key}");
        }
        // Keys without a default are shown commented out.
        for key in [
            "# listen = \"",
            "# url = \"",
            "# format = \"",
            "# level = \"",
            "# ca_file = \"",
        ] {
            assert!(text.contains(key), "dist/controller.toml lacks {key:?}");
        }
    }
}
