//! Edge Management API (`/edge/management/v1`): admin login and CRUD of the
//! management model. Every entity route requires an administrator.

pub mod cas;
pub mod credentials;
pub mod crud;
pub mod database;
pub mod fabric;
pub mod identities;
pub mod posture;
pub mod related;
pub mod role_attributes;
pub mod routers;
pub mod service_configs;
pub mod sessions;
pub mod views;

use super::client::current;
use super::endpoint::{ApiBuilder, Data, Endpoint, QueryParam};
use crate::model::Kind;

const AUTH_QUERY: &[QueryParam] = &[QueryParam {
    name: "method",
    required: true,
    values: &["password", "cert", "ext-jwt"],
    description: "`password`: `{username, password}`; `cert`: the TLS client certificate; `ext-jwt`: an `Authorization: Bearer` JWT of an enabled external JWT signer.",
}];

/// Routes under `/edge/management/v1`.
pub fn routes() -> ApiBuilder {
    let session = Data::Object("API session detail with its `token`.");
    let mut api = super::client::common_routes(ApiBuilder::default()).add(
        Endpoint::post("/authenticate", "authenticate")
            .doc("Authentication", "Creates an API session")
            .query(AUTH_QUERY)
            .request(Data::Object(
                "`{username, password}` for `method=password`.",
            ))
            .returns(200, session),
        current::authenticate,
    );
    for k in Kind::ALL {
        api = crud::routes(api, k);
    }
    let api = routers::routes(database::routes(service_configs::routes(api)));
    let api = super::controllers::management_routes(api);
    role_attributes::routes(posture::routes(identities::routes(fabric::routes(
        related::routes(sessions::routes(credentials::routes(cas::routes(api)))),
    ))))
}
