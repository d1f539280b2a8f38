//! `weft-router run --config router.toml`: the edge router binary.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::sync::mpsc;
use weft_router::config::RouterConfig;
use weft_router::runtime::{Router, ShardCommand, ShardRequest};

/// Weft edge router.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the router.
    Run {
        /// The configuration file (TOML).
        #[arg(long, short, env = "WEFT_ROUTER_CONFIG")]
        config: PathBuf,
    },
    /// Checks the configuration file and the certificate it names, then exits.
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
            eprintln!("weft-router: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Check { config } => {
            let config = RouterConfig::load(&config)?;
            config.settings()?;
            println!("configuration OK");
            Ok(())
        }
        Command::Run { config } => run(&config),
    }
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let config = RouterConfig::load(path)?;
    let settings = config.settings()?;
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let (requests_tx, mut requests) = mpsc::unbounded_channel::<ShardRequest>();
    let router = Router::start(settings, commands_rx, requests_tx)
        .with_context(|| format!("starting the router from {}", path.display()))?;
    tracing::warn!(
        controller = %config.controller,
        "no control-channel client yet: the router holds no sessions, so every hello is \
         refused until one is plugged into Router::start's channels"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the signal runtime")?;
    runtime.block_on(async {
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        loop {
            #[cfg(unix)]
            let terminate = term.recv();
            #[cfg(not(unix))]
            let terminate = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate => break,
                request = requests.recv() => match request {
                    Some(r) => tracing::warn!(?r, "no controller to carry this request"),
                    None => break,
                },
            }
        }
        anyhow::Ok(())
    })?;
    tracing::info!(grace = ?config.shutdown_grace(), "shutting down");
    let _ = commands.send(ShardCommand::Shutdown {
        grace: config.shutdown_grace(),
    });
    router.join();
    Ok(())
}
