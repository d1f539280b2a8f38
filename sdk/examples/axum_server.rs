//! Serves an axum app on a service: every dial of the service is an HTTP connection,
//! and the handler knows which identity dialed (policy vouches for it, no password).
//!
//! ```sh
//! cargo run -p weft-sdk --features axum --example axum_server -- host.json web
//! ```
//! A client reaches it with any HTTP client over a dialed stream, e.g. through
//! `weft tunnel dial --identity client.json --service web --listen 127.0.0.1:9090`
//! and `curl http://127.0.0.1:9090/hello`.

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use weft_sdk::ServiceAddr;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(identity), Some(service)) = (args.next(), args.next()) else {
        eprintln!("usage: axum_server IDENTITY.json SERVICE");
        std::process::exit(2);
    };
    let ctx = weft_sdk::Context::from_file(&identity).await?;
    let app = Router::new().route(
        "/hello",
        get(|ConnectInfo(from): ConnectInfo<ServiceAddr>| async move {
            format!("hello {} from {}\n", from.identity, from.service)
        }),
    );
    let listener = ctx.bind(&service).await?;
    println!("serving http on {service} via {:?}", listener.routers());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<ServiceAddr>(),
    )
    .await?;
    Ok(())
}
