//! Dials a service, sends a line, half-closes and prints what comes back.
//!
//! ```sh
//! cargo run -p weft-sdk --example echo_client -- weft-quickstart/demo-client.json demo-echo "hello"
//! ```

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(identity), Some(service)) = (args.next(), args.next()) else {
        eprintln!("usage: echo_client IDENTITY.json SERVICE [MESSAGE]");
        std::process::exit(2);
    };
    let message = args.next().unwrap_or_else(|| "hello, weft".into());
    let ctx = weft_sdk::Context::new(weft_sdk::Identity::load(&identity)?).await?;
    let mut stream = ctx.dial(&service).await?;
    println!(
        "dialed {service} via {} ({})",
        stream.router(),
        if stream.is_encrypted() {
            "end-to-end encrypted"
        } else {
            "plaintext"
        }
    );
    stream.write_all(message.as_bytes()).await?;
    stream.shutdown().await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    println!("reply: {reply}");
    Ok(())
}
