//! HTTP routing: the Edge Client API (under `/edge/client/v1` and at the root,
//! spec §2), the enrollment endpoints at the root, and the Edge Management API
//! under `/edge/management/v1`.

pub mod client;
pub mod envelope;
pub mod extract;
pub mod management;
pub mod render;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::Response;

use crate::controller::Controller;
use crate::error::ApiError;

/// Shared state of every handler.
pub type AppState = Arc<Controller>;

/// Path prefix of the Edge Client API.
pub const CLIENT_PREFIX: &str = "/edge/client/v1";
/// Path prefix of the Edge Management API.
pub const MANAGEMENT_PREFIX: &str = "/edge/management/v1";

async fn add_instance_id(State(ctl): State<AppState>, mut res: Response) -> Response {
    // The C SDK needs `ziti-instance-id` on (at least) the authenticate
    // response (spec §1); the real controller sends it everywhere.
    if let Ok(v) = HeaderValue::from_str(&ctl.instance_id) {
        res.headers_mut().insert("ziti-instance-id", v);
    }
    res
}

async fn not_found() -> ApiError {
    ApiError::NotFound("the requested resource does not exist".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Builds the complete router.
pub fn router(ctl: AppState) -> Router {
    Router::new()
        .nest(CLIENT_PREFIX, client::routes())
        .nest(MANAGEMENT_PREFIX, management::routes())
        .merge(client::routes())
        .merge(client::root_routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response_with_state(
            ctl.clone(),
            add_instance_id,
        ))
        .with_state(ctl)
}
