//! `weft`: admin CLI for a Weft controller (mirrors `ziti edge`).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = weft_controller::cli::Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(weft_controller::cli::run(cli))?;
    Ok(())
}
