//! HTTP routing: the Edge Client API (under `/edge/client/v1` and at the root,
//! spec §2, which also holds the enrollment endpoints) and the Edge Management API
//! under `/edge/management/v1`. Both are lists of [`endpoint::Endpoint`]s from which the
//! router and the OpenAPI documents ([`openapi`]) are made.

pub mod client;
pub mod contract;
pub mod controllers;
pub mod endpoint;
pub mod envelope;
pub mod extract;
pub mod list;
pub mod management;
pub mod openapi;
pub mod render;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::{Extension, Router};

use self::endpoint::Endpoint;
use self::openapi::{ApiKind, Specs};
use crate::controller::Controller;
use crate::error::ApiError;

/// Shared state of every handler.
pub type AppState = Arc<Controller>;

/// Path prefix of the Edge Client API.
pub const CLIENT_PREFIX: &str = "/edge/client/v1";
/// Path prefix of the Edge Management API.
pub const MANAGEMENT_PREFIX: &str = "/edge/management/v1";

/// Error code for an error response that did not come from [`ApiError`]
/// (axum's own rejections are plain text).
fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "INVALID_PARAMETER",
        StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::PAYLOAD_TOO_LARGE => "REQUEST_TOO_LARGE",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "INVALID_CONTENT_TYPE",
        StatusCode::TOO_MANY_REQUESTS => "RATE_LIMITED",
        _ => "UNHANDLED",
    }
}

async fn add_instance_id(State(ctl): State<AppState>, res: Response) -> Response {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let mut res = if (res.status().is_client_error() || res.status().is_server_error()) && !is_json
    {
        // Every error must be a JSON envelope: the C SDK treats a non-JSON
        // error body as INVALID_CONTROLLER_RESPONSE (spec §1).
        let status = res.status();
        envelope::ApiErrorEnvelope::new(
            code_for_status(status),
            status.canonical_reason().unwrap_or("error").to_owned(),
        )
        .into_response_with(status)
    } else {
        res
    };
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
    build(ctl).0
}

/// Builds the complete router, the OpenAPI documents of its two APIs (generated from the
/// very endpoint lists the router is built from) and those endpoint lists.
pub fn build(ctl: AppState) -> (Router, Arc<Specs>, [Vec<Endpoint>; 2]) {
    let client = openapi::spec_routes(client::routes(), ApiKind::Client);
    let management = openapi::spec_routes(management::routes(), ApiKind::Management);
    let (client_endpoints, management_endpoints) = (client.endpoints(), management.endpoints());
    let specs = Arc::new(Specs {
        client: openapi::document(ApiKind::Client, &client_endpoints),
        management: openapi::document(ApiKind::Management, &management_endpoints),
    });
    let router = client
        .router_at(CLIENT_PREFIX)
        .merge(management.router_at(MANAGEMENT_PREFIX))
        // The client API is also served at the root (spec §2).
        .merge(client.router_at(""))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(specs.clone()))
        .layer(axum::middleware::from_fn_with_state(
            ctl.clone(),
            crate::telemetry::record_request,
        ))
        .layer(axum::middleware::map_response_with_state(
            ctl.clone(),
            add_instance_id,
        ));
    // Outermost: sees every response as it leaves (`WEFT_API_CONTRACT_LOG`, tests).
    let router = match contract::Recorder::from_env() {
        Some(rec) => router.layer(axum::middleware::from_fn_with_state(rec, contract::record)),
        None => router,
    }
    .with_state(ctl);
    (router, specs, [client_endpoints, management_endpoints])
}
