//! `weft tunnel dial|host`: stock TCP tools over the overlay.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use clap::Subcommand;
use weft_sdk::tunnel::{self, Counters};

use super::CliError;

/// `weft tunnel …`.
#[derive(Debug, Subcommand)]
pub enum TunnelCommand {
    /// Accept local TCP connections and dial the service for each.
    Dial {
        /// Identity file (OpenZiti JSON format; `weft edge enroll` makes one).
        #[arg(short = 'i', long)]
        identity: PathBuf,
        /// Service name.
        #[arg(short = 's', long)]
        service: String,
        /// Local address to listen on, e.g. 127.0.0.1:8080.
        #[arg(short = 'l', long)]
        listen: String,
    },
    /// Host the service: connect each accepted stream to a TCP target.
    Host {
        /// Identity file (OpenZiti JSON format; `weft edge enroll` makes one).
        #[arg(short = 'i', long)]
        identity: PathBuf,
        /// Service name.
        #[arg(short = 's', long)]
        service: String,
        /// Where to connect, e.g. 127.0.0.1:5201.
        #[arg(short = 't', long)]
        target: String,
    },
}

/// Runs a tunnel endpoint until Ctrl-C.
pub async fn run(cmd: TunnelCommand) -> Result<(), CliError> {
    let counters = Arc::new(Counters::default());
    let serve = async {
        match cmd {
            TunnelCommand::Dial {
                identity,
                service,
                listen,
            } => {
                let ctx = weft_sdk::Context::new(crate::enroll::load_identity(&identity)?).await?;
                // Fail early, with the SDK's words, if the service is not dialable.
                let svc = ctx.service(&service).await?;
                if !svc.can_dial() {
                    return Err(CliError::Usage(format!(
                        "{} may not dial {service}: no Dial service policy grants it",
                        ctx.name()
                    )));
                }
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .map_err(|e| CliError::Usage(format!("cannot listen on {listen}: {e}")))?;
                eprintln!(
                    "tunnel dial: {} → service {service} (as {}); Ctrl-C stops",
                    listener
                        .local_addr()
                        .map_or_else(|_| listen.clone(), |a| a.to_string()),
                    ctx.name()
                );
                tunnel::serve_dial(ctx, service, listener, Arc::clone(&counters))
                    .await
                    .map_err(CliError::from)
            }
            TunnelCommand::Host {
                identity,
                service,
                target,
            } => {
                let ctx = weft_sdk::Context::new(crate::enroll::load_identity(&identity)?).await?;
                let listener = ctx.bind(&service).await?;
                eprintln!(
                    "tunnel host: service {service} (as {}, on router {}) → {target}; Ctrl-C stops",
                    ctx.name(),
                    listener.router()
                );
                tunnel::serve_host(listener, target, Arc::clone(&counters))
                    .await
                    .map_err(CliError::from)
            }
        }
    };
    tokio::select! {
        r = serve => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!(
                "tunnel: stopped after {} connections, {} bytes out, {} bytes in",
                counters.connections.load(Ordering::Relaxed),
                counters.bytes_out.load(Ordering::Relaxed),
                counters.bytes_in.load(Ordering::Relaxed),
            );
            Ok(())
        }
    }
}
