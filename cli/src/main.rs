//! `weft`: admin CLI for a Weft controller (mirrors `ziti edge`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before any thread or buffer exists: the tunnel endpoints are a data path
    // (docs/adr/0010-allocator.md).
    let malloc = weft_ops::malloc::keep_freed_memory();
    let cli = weft_cli::Cli::parse();
    if let Err(e) = cli.log.init("warn") {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    tracing::debug!(?malloc, "allocator thresholds");
    // A tunnel endpoint runs on one thread: its data path is a chain of tasks (local
    // socket, stream, edge connection writer and reader) handing each chunk to the
    // next, and on a worker pool every hand-off may wake another thread and move the
    // chunk to another core's cache. One core is also all it gets on a small box.
    let mut builder = if matches!(cli.cmd, weft_cli::Command::Tunnel { .. }) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let result = builder
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(weft_cli::run(cli)).map_err(anyhow::Error::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", weft_controller::error::report(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
