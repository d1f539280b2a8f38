//! Logging set-up for every Weft process: one line per event on stderr, as text (with
//! colour only when stderr is a terminal and `NO_COLOR` is unset) or as JSON (one
//! object per line, the event's fields at the top level, for log shippers).
//!
//! The filter is `--log-level` when given (a level, `info`, or directives as in
//! `RUST_LOG`, `warn,weft_router=debug`), else `RUST_LOG`, else the process's default.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Deserialize,
    serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration file's `[log]` section: under `--log-format`, `WEFT_LOG_FORMAT`,
/// `--log-level` and `RUST_LOG`, which win over it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `text` (the default) or `json`.
    pub format: Option<LogFormat>,
    /// A level (`info`, the default) or directives as in `RUST_LOG`.
    pub level: Option<String>,
}

impl LogSection {
    /// Checks `level` ([`check_level`]); the error names the key.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        match &self.level {
            Some(level) => check_level(level).map_err(|e| ("[log] level", e)),
            None => Ok(()),
        }
    }
}

/// The logging options of a Weft binary (flatten into its `clap` parser).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// Log line format on stderr [default: text].
    #[arg(long, value_enum, global = true, env = "WEFT_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// What to log: a level (error, warn, info, debug, trace) or directives as in
    /// RUST_LOG (e.g. "warn,weft_router=debug"); overrides RUST_LOG.
    #[arg(long, value_name = "LEVEL", global = true)]
    pub log_level: Option<String>,
}

/// A `--log-level` that is not a level or a directive list.
#[derive(Debug, thiserror::Error)]
#[error("--log-level {given:?}: {reason}")]
pub struct BadLogLevel {
    given: String,
    reason: String,
}

impl LogArgs {
    /// The filter these options select, with `default` when neither `--log-level` nor
    /// `RUST_LOG` says.
    pub fn filter(&self, default: &str) -> Result<EnvFilter, BadLogLevel> {
        match &self.log_level {
            Some(level) => EnvFilter::try_new(level).map_err(|e| BadLogLevel {
                given: level.clone(),
                reason: e.to_string(),
            }),
            None => {
                Ok(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)))
            }
        }
    }

    /// [`Self::init_or`] with a configuration file's `[log]` section; `default` is the
    /// filter where neither the command line, `RUST_LOG` nor the section says.
    pub fn init_with(&self, default: &str, section: &LogSection) -> Result<(), BadLogLevel> {
        self.init_or(section.level.as_deref().unwrap_or(default), section.format)
    }

    /// Installs the process's logger (once; a second call changes nothing).
    pub fn init(&self, default: &str) -> Result<(), BadLogLevel> {
        self.init_or(default, None)
    }

    /// [`Self::init`] with `format` (a config file's) where `--log-format` and
    /// `WEFT_LOG_FORMAT` say nothing; `default` is the filter where neither
    /// `--log-level` nor `RUST_LOG` says.
    pub fn init_or(&self, default: &str, format: Option<LogFormat>) -> Result<(), BadLogLevel> {
        let filter = self.filter(default)?;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        // A logger installed already (a test harness) stays.
        let _ = match self.log_format.or(format).unwrap_or_default() {
            LogFormat::Text => builder.with_ansi(colour()).try_init(),
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .try_init(),
        };
        Ok(())
    }
}

/// Checks a level or a directive list as `--log-level` takes it (a config file's).
pub fn check_level(level: &str) -> Result<(), String> {
    EnvFilter::try_new(level)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Colour only for a person at a terminal (<https://no-color.org>).
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_or_directives_parse_and_garbage_is_refused() {
        for ok in ["info", "warn,weft_router=debug", "trace"] {
            let args = LogArgs {
                log_level: Some(ok.into()),
                ..LogArgs::default()
            };
            assert!(args.filter("info").is_ok(), "{ok}");
        }
        let bad = LogArgs {
            log_level: Some("loud=[[".into()),
            ..LogArgs::default()
        };
        let err = bad.filter("info").unwrap_err().to_string();
        assert!(err.starts_with("--log-level \"loud=[[\""), "{err}");
    }
}
