//! `GET /identity-role-attributes`, `/service-role-attributes`,
//! `/edge-router-role-attributes` and `/posture-check-role-attributes`: the distinct role
//! attributes the entities of a kind carry, sorted, with `filter` (on `id`, the
//! attribute) and paging like every list (openziti/edge-api
//! `source/management/role-attributes.yml`: `listRoleAttributesEnvelope`, a list of
//! strings).

use std::collections::BTreeSet;

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use crate::api::endpoint::{ApiBuilder, Data, Endpoint};
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::filter::{FieldType, Fields};
use crate::model::Kind;
use crate::store::EntityRow;

/// The kinds with role attributes: path, operation id, kind.
const LISTS: [(&str, &str, Kind); 4] = [
    (
        "/identity-role-attributes",
        "listIdentityRoleAttributes",
        Kind::Identities,
    ),
    (
        "/service-role-attributes",
        "listServiceRoleAttributes",
        Kind::Services,
    ),
    (
        "/edge-router-role-attributes",
        "listEdgeRouterRoleAttributes",
        Kind::EdgeRouters,
    ),
    (
        "/posture-check-role-attributes",
        "listPostureCheckRoleAttributes",
        Kind::PostureChecks,
    ),
];

/// Adds the routes.
pub fn routes(mut api: ApiBuilder) -> ApiBuilder {
    for (path, op, kind) in LISTS {
        api = api.add(
            Endpoint::get(path, op)
                .doc(
                    "Role Attributes",
                    format!("The role attributes {} carry", kind.collection()),
                )
                .admin()
                .lists(Data::Object("A role attribute (a string).")),
            move |State(ctl): State<AppState>, _: Admin, q: ListQuery| list(ctl, kind, q),
        );
    }
    api
}

async fn list(ctl: AppState, kind: Kind, q: ListQuery) -> Result<Response, ApiError> {
    let attrs: BTreeSet<String> = ctl
        .store
        .list_all(kind.collection())
        .await?
        .iter()
        .flat_map(EntityRow::role_attributes)
        .collect();
    let fields = Fields::default().with("id", FieldType::String);
    let docs = attrs
        .into_iter()
        .map(|a| (json!({"id": a, "name": a}), Value::String(a)))
        .collect();
    let page = q.apply(&fields, &["id"], docs)?;
    Ok(envelope::page(page, &fields))
}
