//! A client that rides out router loss: it sends a numbered line every 200 ms on one
//! stream and checks the echo; when the stream fails (its router died, the session was
//! revoked) it reports why and dials again, on another router if one is left. It stops
//! after COUNT lines came back, or at once on an error no redial can fix (the identity
//! was revoked, the service is not granted). Events (routers connected and lost) are
//! printed as they come.
//!
//! ```sh
//! cargo run -p weft-sdk --example resilient_client -- client.json echo 50
//! ```

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use weft_sdk::{ErrorKind, Event};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(identity), Some(service)) = (args.next(), args.next()) else {
        eprintln!("usage: resilient_client IDENTITY.json SERVICE [COUNT]");
        std::process::exit(2);
    };
    let count: u32 = args.next().map_or(Ok(20), |c| c.parse())?;
    let ctx = weft_sdk::Context::from_file(&identity).await?;

    let mut events = ctx.events();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::RouterConnected { router, .. } => println!("event: connected to {router}"),
                Event::RouterDisconnected { router, error, .. } => {
                    println!("event: lost {router}: {error}");
                }
                other => println!("event: {other:?}"),
            }
        }
    });

    let mut sent = 0u32;
    let mut redials = 0u32;
    while sent < count {
        let stream = match ctx.dial(&service).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotAuthorized | ErrorKind::NoSuchService
                ) =>
            {
                return Err(e.into());
            }
            Err(e) => {
                println!("dial failed ({e}); trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        println!("dialed {service} via {}", stream.router());
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let failure = loop {
            if sent == count {
                break None;
            }
            let line = format!("line {sent}");
            if let Err(e) = write.write_all(format!("{line}\n").as_bytes()).await {
                break Some(e);
            }
            match lines.next_line().await {
                Ok(Some(back)) if back == line => {
                    sent += 1;
                    println!("echoed {back}");
                }
                Ok(Some(other)) => return Err(format!("sent {line:?}, got {other:?}").into()),
                Ok(None) => {
                    break Some(std::io::Error::other("the host ended the stream"));
                }
                Err(e) => break Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if let Some(e) = failure {
            let kind = weft_sdk::Error::from_io(&e).map(weft_sdk::Error::kind);
            println!("stream failed ({kind:?}: {e}); dialing again");
            redials += 1;
        }
    }
    println!("done: {sent} lines echoed, {redials} redials");
    ctx.close().await?;
    Ok(())
}
