//! `weft`: admin CLI for a Weft controller (mirrors `ziti edge`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = weft_controller::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(weft_controller::cli::run(cli))
                .map_err(anyhow::Error::from)
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", weft_controller::error::report(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
