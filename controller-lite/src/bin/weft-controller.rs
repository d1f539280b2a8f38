//! `weft-controller`: runs the controller, or performs offline admin tasks on
//! its data directory.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{Map, json};
use weft_controller::config::Config;
use weft_controller::controller::{ADDR_FILE, Controller};
use weft_controller::model::Kind;

#[derive(Parser)]
#[command(name = "weft-controller", version, about = "Weft controller-lite")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the controller (first start in an empty DIR initialises it).
    Run {
        /// Data directory (database, PKI, admin credential).
        #[arg(long)]
        data_dir: PathBuf,
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Create an identity with a one-time enrollment and write its JWT.
    CreateIdentity {
        /// Data directory of the controller.
        #[arg(long)]
        data_dir: PathBuf,
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Identity name.
        name: String,
        /// Comma-separated role attributes.
        #[arg(short = 'a', long, value_delimiter = ',')]
        role_attributes: Vec<String>,
        /// Make the identity an administrator.
        #[arg(long)]
        admin: bool,
        /// Controller URL for the JWT `iss` (default: https://HOST:PORT of the running controller).
        #[arg(long)]
        url: Option<String>,
        /// Output file for the enrollment JWT.
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", weft_controller::error::report(e.as_ref()));
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
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(command(Cli::parse().cmd))
}

async fn command(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Run { data_dir, config } => {
            let cfg = Config::load(config.as_deref())?;
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            weft_controller::server::run(&data_dir, cfg, shutdown).await?;
        }
        Cmd::CreateIdentity {
            data_dir,
            config,
            name,
            role_attributes,
            admin,
            url,
            output,
        } => {
            let cfg = Config::load(config.as_deref())?;
            let url = match url {
                Some(u) => u,
                None => {
                    let addr = std::fs::read_to_string(data_dir.join(ADDR_FILE))
                        .ok()
                        .and_then(|s| s.trim().parse::<std::net::SocketAddr>().ok())
                        .unwrap_or(cfg.listen);
                    format!("https://{}:{}", cfg.advertised_host, addr.port())
                }
            };
            let ctl = Controller::open(&data_dir, cfg, url).await?;
            let mut obj = Map::new();
            obj.insert("name".into(), json!(name));
            obj.insert("type".into(), json!("User"));
            obj.insert("isAdmin".into(), json!(admin));
            obj.insert("roleAttributes".into(), json!(role_attributes));
            obj.insert("enrollment".into(), json!({"ott": true}));
            let (row, enrollment) = ctl.create_entity(Kind::Identities, obj).await?;
            let enrollment = enrollment.context("enrollment was not created")?;
            std::fs::write(&output, &enrollment.jwt)
                .with_context(|| format!("writing {}", output.display()))?;
            println!(
                "created identity {} ({}); enrollment JWT in {}",
                row.name,
                row.id,
                output.display()
            );
        }
    }
    Ok(())
}
