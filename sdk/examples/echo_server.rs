//! Hosts a service and echoes every stream back to its dialer.
//!
//! ```sh
//! cargo run -p weft-sdk --example echo_server -- weft-quickstart/demo-host.json demo-echo
//! ```

use tokio::io::AsyncWriteExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(identity), Some(service)) = (args.next(), args.next()) else {
        eprintln!("usage: echo_server IDENTITY.json SERVICE");
        std::process::exit(2);
    };
    let ctx = weft_sdk::Context::from_file(&identity).await?;
    let listener = ctx.bind(&service).await?;
    println!("{} hosts {service} on {}", ctx.name(), listener.router());
    loop {
        let stream = listener.accept().await?;
        println!("accepted a stream from {}", stream.dialer().unwrap_or("?"));
        tokio::spawn(async move {
            let (mut rd, mut wr) = stream.into_split();
            match tokio::io::copy(&mut rd, &mut wr).await {
                Ok(n) => println!("echoed {n} bytes"),
                Err(e) => println!("stream ended: {e}"),
            }
            let _ = wr.shutdown().await;
        });
    }
}
