//! `weft-router run|enroll|check --config router.toml`: the edge router binary.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use weft_router::config::RouterConfig;
use weft_router::node;
use weft_router::runtime::{IoSelection, probe_uring, select_backend};

/// Weft edge router.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: weft_ops::logging::LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the router.
    Run {
        /// The configuration file (TOML).
        #[arg(long, short, env = "WEFT_ROUTER_CONFIG")]
        config: PathBuf,
        /// The I/O backend: uring, epoll or auto (io_uring when the kernel allows it).
        /// Overrides `io` in the configuration file.
        #[arg(long, value_name = "uring|epoll|auto")]
        io: Option<IoSelection>,
    },
    /// Enrolls the router with its one-time JWT, writing its certificates and keys into
    /// the directory of the configured `cert`.
    Enroll {
        /// The enrollment token (`weft edge create edge-router ... -o router.jwt`).
        #[arg(long)]
        jwt: PathBuf,
        /// The configuration file (TOML).
        #[arg(long, short, env = "WEFT_ROUTER_CONFIG")]
        config: PathBuf,
    },
    /// Checks the configuration file, the edge certificate, the control-channel
    /// certificate, key and CA it implies, and which I/O backend `io` selects here, then
    /// exits.
    Check {
        /// The configuration file (TOML).
        #[arg(long, short, env = "WEFT_ROUTER_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line per cause; no backtrace for configuration mistakes.
            eprintln!("weft-router: {}", weft_ops::report::one_line(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    // Before any thread or buffer exists (docs/adr/0010-allocator.md).
    let malloc = weft_ops::malloc::keep_freed_memory();
    let cli = Cli::parse();
    let path = match &cli.command {
        Command::Run { config, .. }
        | Command::Enroll { config, .. }
        | Command::Check { config } => config.clone(),
    };
    // The config first: its [log] section sets up logging (the command line and
    // RUST_LOG win over it); a bad file is reported before anything starts.
    let config = RouterConfig::load(&path)?;
    cli.log.init_with("info", &config.log)?;
    tracing::debug!(?malloc, "allocator thresholds");
    for (old, place) in &config.deprecated {
        tracing::warn!(key = %old, now = %place, "config key `{old}` is deprecated; write it as {place}");
    }
    match cli.command {
        Command::Check { .. } => {
            config.settings()?;
            let control = node::control_config(&config, config.edge.listen.port())?;
            let backend = select_backend(config.runtime.io, probe_uring)?;
            println!(
                "configuration OK (router {}, controller {}, io {} -> {backend})",
                control.hello.router_id,
                config.controller_addresses().join(", "),
                config.runtime.io
            );
            Ok(())
        }
        Command::Run { io, .. } => run(&path, config, io),
        Command::Enroll { jwt, .. } => enroll(&jwt, &config),
    }
}

fn run(
    path: &std::path::Path,
    mut config: RouterConfig,
    io: Option<IoSelection>,
) -> anyhow::Result<()> {
    if let Some(io) = io {
        config.runtime.io = io;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the control runtime")?;
    runtime.block_on(async {
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let stop = async move {
            #[cfg(unix)]
            let terminate = term.recv();
            #[cfg(not(unix))]
            let terminate = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "stop asked"),
                _ = terminate => tracing::info!(signal = "SIGTERM", "stop asked"),
            }
        };
        node::run(&config, stop)
            .await
            .with_context(|| format!("starting the router from {}", path.display()))
    })
}

fn enroll(jwt: &std::path::Path, config: &RouterConfig) -> anyhow::Result<()> {
    let dir = config.cert_dir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the enrollment runtime")?;
    let enrolled = runtime
        .block_on(weft_router::enroll::enroll(
            jwt,
            &dir,
            &config.server_cert_names(),
        ))
        .with_context(|| format!("enrolling with {}", jwt.display()))?;
    let expected = dir.join(weft_router::enroll::SERVER_CERT_FILE);
    if config.identity.cert != expected {
        eprintln!(
            "weft-router: note: the edge certificate was written to {}, but `cert` names {}",
            expected.display(),
            config.identity.cert.display()
        );
    }
    println!(
        "enrolled router {} with {}; certificates in {}",
        enrolled.router_id,
        enrolled.controller_url,
        dir.display()
    );
    Ok(())
}
