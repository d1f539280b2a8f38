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
        let cfg: Self = match path {
            Some(p) => toml::from_str(&std::fs::read_to_string(p)?)?,
            None => Self::default(),
        };
        if cfg.api_session_timeout_secs < 1 {
            return Err(ConfigError::Invalid(
                "api_session_timeout_secs must be positive".into(),
            ));
        }
        if cfg.enrollment_ttl_secs < 1 || cfg.identity_cert_days < 1 || cfg.router_cert_days < 1 {
            return Err(ConfigError::Invalid("lifetimes must be positive".into()));
        }
        if cfg.advertised_host.is_empty() {
            return Err(ConfigError::Invalid(
                "advertised_host must not be empty".into(),
            ));
        }
        Ok(cfg)
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
