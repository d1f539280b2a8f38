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
    #[command(flatten)]
    log: weft_ops::logging::LogArgs,
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
        /// Output file for the enrollment JWT (written owner-only: the token enrolls
        /// the identity).
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Overwrite an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Several controllers on one PostgreSQL database (docs/operations.md, "Several
    /// controllers").
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Initialise the first controller of a cluster: its data directory, the shared
    /// database (`[store] url` in the config), and a CA bundle for the others to join
    /// with.
    Init {
        /// Data directory of this controller.
        #[arg(long)]
        data_dir: PathBuf,
        /// TOML configuration file (with `[store] url = "postgres://…"`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to write the CA bundle (the signing CA's private key is in it: mode
        /// 0600; move it to the other controllers securely and delete it).
        #[arg(long)]
        ca_bundle_out: PathBuf,
        /// Overwrite an existing bundle file.
        #[arg(long)]
        force: bool,
    },
    /// Write the CA bundle of an initialised controller again.
    ExportCa {
        /// Data directory of an initialised controller.
        #[arg(long)]
        data_dir: PathBuf,
        /// Where to write the bundle (mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Prepare a new data directory for another controller of the cluster: installs
    /// the shared CA from the bundle; its own server certificate is made at its first
    /// `run`, from its config's names.
    Join {
        /// Data directory of the joining controller (new or empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// The CA bundle written by `cluster init` or `cluster export-ca`.
        #[arg(long)]
        ca_bundle: PathBuf,
        /// Its TOML configuration file (checked: it must name a PostgreSQL store).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Writes the shared CA of `data_dir` to `out` with mode 0600.
fn write_ca_bundle(
    data_dir: &std::path::Path,
    out: &std::path::Path,
    force: bool,
) -> anyhow::Result<()> {
    if out.exists() && !force {
        anyhow::bail!("{} exists; pass --force to overwrite it", out.display());
    }
    let ca = weft_controller::pki::SharedCa::load(&data_dir.join("pki"))
        .with_context(|| format!("reading the CA of {}", data_dir.display()))?;
    weft_identity::secret::write_secret(out, ca.to_bundle().as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// The store of `cfg` must be PostgreSQL for several controllers to share it.
fn require_shared_store(cfg: &Config) -> anyhow::Result<()> {
    match &cfg.store.url {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => Ok(()),
        _ => anyhow::bail!(
            "several controllers share one PostgreSQL database: set [store] url = \"postgres://…\" in the config (or WEFT_STORE_URL)"
        ),
    }
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
    let cli = Cli::parse();
    // The config first: its [log] section sets up logging (the command line and
    // RUST_LOG win over it); a bad file is reported before anything starts.
    let cfg = Config::load(config_path(&cli.cmd))?;
    cli.log.init_with("info", &cfg.log)?;
    for (old, place) in &cfg.deprecated {
        tracing::warn!(key = %old, now = %place, "config key `{old}` is deprecated; write it as {place}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(command(cli.cmd, cfg))
}

/// The `--config` of a command that reads one.
fn config_path(cmd: &Cmd) -> Option<&std::path::Path> {
    match cmd {
        Cmd::Run { config, .. }
        | Cmd::CreateIdentity { config, .. }
        | Cmd::Cluster(ClusterCmd::Init { config, .. })
        | Cmd::Cluster(ClusterCmd::Join { config, .. }) => config.as_deref(),
        Cmd::Cluster(ClusterCmd::ExportCa { .. }) => None,
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (`systemctl stop`, `docker stop`).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "stop asked"),
                    _ = term.recv() => tracing::info!(signal = "SIGTERM", "stop asked"),
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch SIGTERM; Ctrl-C only"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!(signal = "SIGINT", "stop asked");
}

async fn command(cmd: Cmd, cfg: Config) -> anyhow::Result<()> {
    match cmd {
        Cmd::Run { data_dir, .. } => {
            weft_controller::server::run(&data_dir, cfg, stop_signal()).await?;
            tracing::info!("weft-controller stopped");
        }
        Cmd::CreateIdentity {
            data_dir,
            config: _,
            name,
            role_attributes,
            admin,
            url,
            output,
            force,
        } => {
            // Refused before anything is created, so a refusal leaves no identity behind.
            if output.exists() && !force {
                anyhow::bail!("{} exists; pass --force to overwrite it", output.display());
            }
            let url = match url {
                Some(u) => u,
                None => {
                    let addr = std::fs::read_to_string(data_dir.join(ADDR_FILE))
                        .ok()
                        .and_then(|s| s.trim().parse::<std::net::SocketAddr>().ok())
                        .unwrap_or(cfg.http.listen);
                    format!("https://{}:{}", cfg.http.advertised_host, addr.port())
                }
            };
            let ctl = Controller::open(&data_dir, cfg, url).await?;
            let mut obj = Map::new();
            obj.insert("name".into(), json!(name));
            obj.insert("type".into(), json!("User"));
            obj.insert("isAdmin".into(), json!(admin));
            obj.insert("roleAttributes".into(), json!(role_attributes));
            obj.insert("enrollment".into(), json!({"ott": true}));
            let (row, enrollment) =
                weft_controller::domain::entities::create(&ctl, Kind::Identities, obj).await?;
            let enrollment = enrollment.context("enrollment was not created")?;
            let write = if force {
                weft_identity::secret::replace_secret
            } else {
                weft_identity::secret::write_secret
            };
            write(&output, enrollment.jwt.as_bytes())
                .with_context(|| format!("writing {}", output.display()))?;
            println!(
                "created identity {} ({}); enrollment JWT in {}",
                row.name,
                row.id,
                output.display()
            );
        }
        Cmd::Cluster(ClusterCmd::Init {
            data_dir,
            config: _,
            ca_bundle_out,
            force,
        }) => {
            require_shared_store(&cfg)?;
            if ca_bundle_out.exists() && !force {
                anyhow::bail!(
                    "{} exists; pass --force to overwrite it",
                    ca_bundle_out.display()
                );
            }
            let url = format!(
                "https://{}:{}",
                cfg.http.advertised_host,
                cfg.http.listen.port()
            );
            let ctl = Controller::open(&data_dir, cfg, url).await?;
            ctl.store.close().await;
            write_ca_bundle(&data_dir, &ca_bundle_out, force)?;
            println!(
                "initialised {} and the shared database; CA bundle for joining controllers in {} (it holds the signing key: move it securely, then delete it)",
                data_dir.display(),
                ca_bundle_out.display()
            );
        }
        Cmd::Cluster(ClusterCmd::ExportCa {
            data_dir,
            out,
            force,
        }) => {
            write_ca_bundle(&data_dir, &out, force)?;
            println!("CA bundle in {} (mode 0600)", out.display());
        }
        Cmd::Cluster(ClusterCmd::Join {
            data_dir,
            ca_bundle,
            config,
        }) => {
            require_shared_store(&cfg)?;
            let bundle = std::fs::read_to_string(&ca_bundle)
                .with_context(|| format!("reading {}", ca_bundle.display()))?;
            let ca = weft_controller::pki::SharedCa::from_bundle(&bundle)
                .with_context(|| format!("{} is not a usable CA bundle", ca_bundle.display()))?;
            ca.install(&data_dir.join("pki"))?;
            println!(
                "{} joined: start it with `weft-controller run --data-dir {}{}`",
                data_dir.display(),
                data_dir.display(),
                config
                    .map(|c| format!(" --config {}", c.display()))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}
