//! `/routers` and `/transit-routers`: the fabric view of routers (`routerDetail`).
//!
//! OpenZiti serves both paths with one handler over its transit-router store (openziti/ziti
//! `controller/internal/routes/router_router.go`, `router_api_model.go`): the same list,
//! create, detail, update, patch and delete under either path. Weft has one kind of
//! router, which carries edge connections and links alike, so both paths show every
//! edge router in the router shape (id, name, fingerprint, cost, `noTraversal`,
//! `disabled`, `isOnline`, `isVerified`, the pending enrollment), and change the same
//! entity `/edge-routers` does: a router created here is an edge router without role
//! attributes, enrolled with `weft-router enroll` and its `enrollmentJwt`; an update
//! changes only the router fields (its role attributes and addresses stay); a delete is
//! an edge router's delete. OpenZiti's `ctrlChanListeners` and `configs` have no
//! meaning for a Weft router (it dials the controllers its own configuration lists): an
//! empty one is accepted, any other refused.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::crud;
use crate::api::AppState;
use crate::api::endpoint::{ApiBuilder, Data, Endpoint};
use crate::api::extract::JsonBody;
use crate::api::list::ListQuery;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::model::Kind;

/// The fields of `routerDetail` a Weft router has.
const DETAIL_FIELDS: &[&str] = &[
    "id",
    "name",
    "createdAt",
    "updatedAt",
    "_links",
    "tags",
    "fingerprint",
    "isOnline",
    "isVerified",
    "cost",
    "noTraversal",
    "disabled",
    "enrollmentJwt",
    "enrollmentToken",
    "enrollmentCreatedAt",
    "enrollmentExpiresAt",
    "unverifiedFingerprint",
    "unverifiedCertPem",
];

/// The fields of `routerCreate`, `routerUpdate` and `routerPatch`.
const BODY_FIELDS: &[&str] = &[
    "name",
    "cost",
    "noTraversal",
    "disabled",
    "tags",
    "ctrlChanListeners",
    "configs",
];

/// The defaults a `PUT` gives the router fields it does not name.
fn put_defaults() -> [(&'static str, Value); 4] {
    [
        ("cost", json!(0)),
        ("noTraversal", json!(false)),
        ("disabled", json!(false)),
        ("tags", json!({})),
    ]
}

/// Adds the routes under `/routers` and `/transit-routers`.
pub fn routes(mut api: ApiBuilder) -> ApiBuilder {
    for (base, one, many, tag) in [
        ("/routers", "Router", "Routers", "Router"),
        (
            "/transit-routers",
            "TransitRouter",
            "TransitRouters",
            "Router",
        ),
    ] {
        let item = format!("{base}/{{id}}");
        let shape = || Data::Object("A router (`routerDetail`): every Weft router is one.");
        api = api
            .add(
                Endpoint::get(base, format!("list{many}"))
                    .doc(tag, "Lists the routers (every edge router)")
                    .admin()
                    .lists(shape()),
                |State(ctl): State<AppState>, _: Admin, q: ListQuery| list(ctl, q),
            )
            .add(
                Endpoint::post(base, format!("create{one}"))
                    .doc(
                        tag,
                        "Creates a router (an edge router without role attributes) with its enrollment",
                    )
                    .admin()
                    .request(Data::Object(
                        "`{name, cost?, noTraversal?, tags?}` (`routerCreate`).",
                    ))
                    .returns(201, Data::Created),
                |State(ctl): State<AppState>, _: Admin, JsonBody(body): JsonBody<Value>| {
                    create(ctl, body)
                },
            )
            .add(
                Endpoint::get(&item, format!("detail{one}"))
                    .doc(tag, "One router")
                    .admin()
                    .returns(200, shape()),
                |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>| detail(ctl, id),
            )
            .add(
                Endpoint::put(&item, format!("update{one}"))
                    .doc(
                        tag,
                        "Replaces the router fields (those not given take their defaults)",
                    )
                    .admin()
                    .request(Data::Object(
                        "`{name, cost?, noTraversal?, disabled?, tags?}` (`routerUpdate`).",
                    )),
                |State(ctl): State<AppState>,
                 _: Admin,
                 Path(id): Path<String>,
                 JsonBody(body): JsonBody<Value>| update(ctl, id, body, false),
            )
            .add(
                Endpoint::patch(&item, format!("patch{one}"))
                    .doc(tag, "Changes the given router fields")
                    .admin()
                    .request(Data::Object(
                        "Any of `name`, `cost`, `noTraversal`, `disabled`, `tags` (`routerPatch`).",
                    )),
                |State(ctl): State<AppState>,
                 _: Admin,
                 Path(id): Path<String>,
                 JsonBody(body): JsonBody<Value>| update(ctl, id, body, true),
            )
            .add(
                Endpoint::delete(&item, format!("delete{one}"))
                    .doc(tag, "Deletes a router (as deleting the edge router)")
                    .admin(),
                |State(ctl): State<AppState>, _: Admin, Path(id): Path<String>| {
                    crud::delete(ctl, Kind::EdgeRouters, id)
                },
            );
    }
    api
}

/// The router shape of an edge router: its management detail cut to `routerDetail`,
/// with `fingerprint` `""` until it enrolls (the spec's string is not nullable).
fn router_detail(full: Value) -> Value {
    let mut out = Map::new();
    if let Value::Object(mut m) = full {
        for field in DETAIL_FIELDS {
            if let Some(v) = m.remove(*field) {
                out.insert((*field).to_owned(), v);
            }
        }
    }
    out.entry("fingerprint").or_insert_with(|| json!(""));
    Value::Object(out)
}

async fn list(ctl: AppState, q: ListQuery) -> Result<Response, ApiError> {
    crud::list_as(ctl, Kind::EdgeRouters, q, router_detail).await
}

async fn detail(ctl: AppState, id: String) -> Result<Response, ApiError> {
    crud::detail_as(ctl, Kind::EdgeRouters, id, "Router", router_detail).await
}

/// The router fields of a body; unknown fields, and a `ctrlChanListeners` or `configs`
/// that says anything, are refused.
fn router_fields(body: Value) -> Result<Map<String, Value>, ApiError> {
    let Value::Object(body) = body else {
        return Err(ApiError::CouldNotValidate(
            "the body must be a JSON object".into(),
        ));
    };
    let mut out = Map::new();
    for (key, v) in body {
        if !BODY_FIELDS.contains(&key.as_str()) {
            return Err(ApiError::CouldNotValidate(format!(
                "unknown field {key:?} (a router has {})",
                BODY_FIELDS.join(", ")
            )));
        }
        match key.as_str() {
            "ctrlChanListeners" | "configs" => {
                let empty = match &v {
                    Value::Null => true,
                    Value::Object(m) => m.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => false,
                };
                if !empty {
                    return Err(ApiError::CouldNotValidate(format!(
                        "{key} is not supported: a Weft router dials the controllers its own configuration lists"
                    )));
                }
            }
            _ => {
                out.insert(key, v);
            }
        }
    }
    Ok(out)
}

async fn create(ctl: AppState, body: Value) -> Result<Response, ApiError> {
    let mut fields = router_fields(body)?;
    if fields.contains_key("disabled") {
        return Err(ApiError::CouldNotValidate(
            "unknown field \"disabled\" (routerCreate has none: disable it after)".into(),
        ));
    }
    fields.insert("roleAttributes".into(), json!([]));
    crud::create(ctl, Kind::EdgeRouters, Value::Object(fields)).await
}

/// `PUT` (`merge` false: the router fields not given take their defaults; `name` is
/// required) or `PATCH`; the edge router's other fields stay either way.
async fn update(ctl: AppState, id: String, body: Value, merge: bool) -> Result<Response, ApiError> {
    let mut fields = router_fields(body)?;
    if !merge {
        if !fields.contains_key("name") {
            return Err(ApiError::CouldNotValidate("name is required".into()));
        }
        for (key, v) in put_defaults() {
            fields.entry(key).or_insert(v);
        }
    }
    crud::update(ctl, Kind::EdgeRouters, id, Value::Object(fields), true).await
}
