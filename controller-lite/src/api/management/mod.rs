//! Edge Management API (`/edge/management/v1`): admin login and CRUD of the
//! management model. Every entity route requires an administrator.

pub mod cascade;
pub mod credentials;
pub mod crud;
pub mod related;
pub mod sessions;
pub mod views;

use super::client::{current, version};
use super::endpoint::{ApiBuilder, Data, Endpoint, QueryParam};
use crate::model::Kind;

const AUTH_QUERY: &[QueryParam] = &[QueryParam {
    name: "method",
    required: true,
    values: &["password", "cert"],
    description: "`password`: `{username, password}`; `cert`: the TLS client certificate.",
}];

/// Routes under `/edge/management/v1`.
pub fn routes() -> ApiBuilder {
    let version = Data::Object("Controller version and API base paths.");
    let session = Data::Object("API session detail with its `token`.");
    let mut api = ApiBuilder::default()
        .add(
            Endpoint::get("/", "listRoot")
                .doc("Informational", "Returns version information")
                .returns(200, version),
            version::version,
        )
        .add(
            Endpoint::get("/version", "listVersion")
                .doc("Informational", "Returns version information")
                .returns(200, version),
            version::version,
        )
        .add(
            Endpoint::post("/authenticate", "authenticate")
                .doc("Authentication", "Creates an API session")
                .query(AUTH_QUERY)
                .request(Data::Object(
                    "`{username, password}` for `method=password`.",
                ))
                .returns(200, session),
            current::authenticate,
        )
        .add(
            Endpoint::get("/current-api-session", "getCurrentAPISession")
                .doc(
                    "Current API Session",
                    "The caller's API session (refreshes its expiry)",
                )
                .session()
                .returns(200, session),
            current::get_api_session,
        )
        .add(
            Endpoint::delete("/current-api-session", "deleteCurrentApiSession")
                .doc("Current API Session", "Logs out")
                .session(),
            current::delete_api_session,
        )
        .add(
            Endpoint::get("/current-identity", "getCurrentIdentity")
                .doc("Current Identity", "The caller's identity")
                .session()
                .returns(200, Data::Object("Identity detail.")),
            current::current_identity,
        );
    for k in Kind::ALL {
        api = crud::routes(api, k);
    }
    related::routes(sessions::routes(credentials::routes(api)))
}
