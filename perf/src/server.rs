//! The suite's echo server (`weft-perf serve --echo ADDR`, run as a child process so
//! its CPU and file descriptors are its own): every connection gets back what it
//! sends.

use std::net::SocketAddr;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves echo on `listener` until accepting fails.
pub async fn echo(listener: TcpListener) -> Result<()> {
    loop {
        let (mut s, _) = listener.accept().await.context("accepting")?;
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let mut buf = vec![0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(buf.get(..n).unwrap_or_default()).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
}

/// Runs the echo server on `addr` on a single-threaded runtime (the load generator,
/// in the parent, has the other threads).
pub fn run_echo(addr: SocketAddr) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the echo server runtime")?;
    rt.block_on(async {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the echo server to {addr}"))?;
        echo(listener).await
    })
}
