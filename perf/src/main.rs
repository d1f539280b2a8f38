//! `weft-perf`: see the library docs and `docs/perf.md`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weft_perf::run::RunArgs;

/// Weft's perf suite: a local Weft network against same-run baselines.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Boot the network and the baselines, run the scenarios, write the results.
    Run(RunArgs),
    /// The controller's write path: certificate logins and session requests per
    /// second on SQLite and PostgreSQL, one and several controllers.
    Control(weft_perf::control::ControlArgs),
    /// One revocation closing many live circuits: close-time percentiles, on one
    /// controller or across controllers.
    Revocation(weft_perf::revocation::RevocationArgs),
    /// Circuits across routers when a router of their path dies: interruption
    /// percentiles, and nothing lost.
    Reroute(weft_perf::reroute::RerouteArgs),
    /// The Rust SDK end to end (one stream's throughput, dial + first echo) against
    /// the `weft tunnel` path, on one router, plain and end-to-end encrypted.
    Sdk(weft_perf::sdk::SdkArgs),
    /// The suite's echo server (started by `run` as a child process).
    #[command(hide = true)]
    Serve {
        /// Address to serve echo on.
        #[arg(long)]
        echo: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve { echo } => weft_perf::server::run_echo(echo),
        Cmd::Run(args) => run(args),
        Cmd::Control(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(weft_perf::control::run_control(args))),
        Cmd::Revocation(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(weft_perf::revocation::run_revocation(args))),
        Cmd::Reroute(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(weft_perf::reroute::run_reroute(args))),
        Cmd::Sdk(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(weft_perf::sdk::run_sdk(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-perf: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the suite on a tokio runtime; Ctrl-C or SIGTERM drops the run, whose guards
/// kill every child process, before exiting.
fn run(args: RunArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut task = tokio::spawn(weft_perf::run::run(args));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = &mut task => match r {
                Ok(r) => r.map(|_| ()),
                Err(e) => Err(anyhow::anyhow!("the run failed: {e}")),
            },
            _ = tokio::signal::ctrl_c() => stop(task, "interrupted").await,
            _ = term.recv() => stop(task, "terminated").await,
        }
    })
}

async fn stop(
    task: tokio::task::JoinHandle<anyhow::Result<weft_perf::report::Report>>,
    why: &str,
) -> anyhow::Result<()> {
    task.abort();
    // The aborted run is dropped here, and with it every child process guard.
    let _ = task.await;
    anyhow::bail!("{why}; child processes stopped")
}
