//! Edge Management API (`/edge/management/v1`): admin login and CRUD of the
//! management model. Every entity route requires an administrator.

pub mod crud;

use axum::Router;
use axum::routing::{get, post};

use super::AppState;
use super::client::{current, version};

/// Routes under `/edge/management/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/version", get(version::version))
        .route("/authenticate", post(current::authenticate))
        .route(
            "/current-api-session",
            get(current::get_api_session).delete(current::delete_api_session),
        )
        .route("/current-identity", get(current::current_identity))
        .route("/{collection}", get(crud::list).post(crud::create))
        .route(
            "/{collection}/{id}",
            get(crud::detail)
                .patch(crud::patch)
                .put(crud::put)
                .delete(crud::delete),
        )
}
