//! Edge Client API handlers (spec `edge-client-api.md`).

pub mod current;
pub mod enrollment;
pub mod services;
pub mod sessions;
pub mod version;

use axum::Router;
use axum::routing::{get, post};

use super::AppState;

/// Routes served both under `/edge/client/v1` and at the root.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/version", get(version::version))
        .route("/authenticate", post(current::authenticate))
        .route(
            "/current-api-session",
            get(current::get_api_session).delete(current::delete_api_session),
        )
        .route(
            "/current-api-session/service-updates",
            get(current::service_updates),
        )
        .route("/current-identity", get(current::current_identity))
        .route("/current-identity/edge-routers", get(current::edge_routers))
        .route("/services", get(services::list))
        .route("/services/{id}", get(services::detail))
        .route("/sessions", get(sessions::list).post(sessions::create))
        .route(
            "/sessions/{id}",
            get(sessions::detail).delete(sessions::delete),
        )
        .route("/posture-response", post(sessions::posture_response))
        .route("/posture-response-bulk", post(sessions::posture_response))
        .route("/.well-known/est/cacerts", get(enrollment::cacerts))
        .route("/enroll", post(enrollment::enroll))
        .route("/enroll/erott", post(enrollment::enroll_erott_route))
}

/// Routes only at the root (`/` answers like `/version`, spec §2).
pub fn root_routes() -> Router<AppState> {
    Router::new().route("/", get(version::version))
}
