//! The OpenAPI documents list exactly the routes the router serves, and parse as OpenAPI 3.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use weft_controller::api::openapi::{ApiKind, OPENAPI_VERSION};
use weft_controller::config::Config;
use weft_controller::controller::Controller;

const FALLBACK_MESSAGE: &str = "the requested resource does not exist";

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

async fn call(router: &axum::Router, method: &Method, uri: &str) -> (u16, Value) {
    let req = Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn documents_list_exactly_the_routes_served() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Controller::open(
        dir.path(),
        Config::default(),
        "https://localhost:1280".into(),
    )
    .await
    .unwrap();
    let (router, specs, endpoints) = weft_controller::api::build(Arc::new(ctl));
    for (api, endpoints) in ApiKind::ALL.into_iter().zip(&endpoints) {
        let doc = specs.get(api);
        // A valid OpenAPI 3 document.
        let parsed: openapiv3::OpenAPI = serde_json::from_value(doc.clone())
            .unwrap_or_else(|e| panic!("{}: not OpenAPI 3: {e}", api.id()));
        assert_eq!(parsed.openapi, OPENAPI_VERSION);
        assert!(
            parsed
                .components
                .unwrap()
                .schemas
                .contains_key("ApiErrorEnvelope")
        );
        // Exactly the registered routes, each once.
        let registered: BTreeSet<(String, String)> = endpoints
            .iter()
            .map(|e| (e.method.to_string(), e.path.clone()))
            .collect();
        assert_eq!(registered.len(), endpoints.len(), "duplicate route");
        assert_eq!(operations(doc), registered, "{}", api.id());
        let ids: BTreeSet<&str> = endpoints.iter().map(|e| e.operation_id.as_str()).collect();
        assert_eq!(ids.len(), endpoints.len(), "duplicate operationId");
        // Every documented operation is routed (the fallbacks answer 404/405 otherwise).
        let mut mounts = vec![api.prefix()];
        if api == ApiKind::Client {
            mounts.push("");
        }
        for e in endpoints {
            for mount in &mounts {
                let path = e.path.replace("{id}", "edge-client");
                let uri = match (mount.is_empty(), path.as_str()) {
                    (false, "/") => mount.to_string(),
                    _ => format!("{mount}{path}"),
                };
                let (status, body) = call(&router, &e.method, &uri).await;
                assert_ne!(status, 405, "{} {uri}", e.method);
                assert!(
                    !(status == 404 && body["error"]["message"] == FALLBACK_MESSAGE),
                    "{} {uri} is not routed",
                    e.method
                );
            }
        }
    }
    for root in [
        "/",
        "/edge/client/v1",
        "/edge/client/v1/",
        "/edge/management/v1/",
    ] {
        let (status, body) = call(&router, &Method::GET, root).await;
        assert_eq!(status, 200, "{root}: {body}");
        assert!(body["data"]["apiVersions"].is_object(), "{root}");
    }
    // The detection works: an unknown path hits the fallback.
    let (status, body) = call(&router, &Method::GET, "/edge/management/v1/nope").await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (404, Some(FALLBACK_MESSAGE))
    );
    // Management entity schemas are generated from the model.
    let schemas = &specs.management["components"]["schemas"];
    let create = &schemas["ServicePolicyCreate"];
    assert_eq!(create["additionalProperties"], false);
    for f in ["name", "type", "identityRoles", "serviceRoles", "semantic"] {
        assert!(create["properties"].get(f).is_some(), "{f}");
    }
    assert!(
        schemas["EdgeRouterDetail"]["properties"]
            .get("isOnline")
            .is_some()
    );
    assert!(
        schemas["IdentityCreate"]["properties"]
            .get("enrollment")
            .is_some()
    );
    assert!(
        schemas["IdentityPatch"]["properties"]
            .get("enrollment")
            .is_none()
    );
    assert!(schemas["IdentityPatch"].get("required").is_none());
}

/// External JWT signers are documented: the management collection, the client's
/// unauthenticated list, and `ext-jwt` among the authentication methods of both APIs.
#[tokio::test]
async fn external_jwt_signer_routes_are_documented() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Controller::open(
        dir.path(),
        Config::default(),
        "https://localhost:1280".into(),
    )
    .await
    .unwrap();
    let (_, specs, _) = weft_controller::api::build(Arc::new(ctl));
    let mgmt = specs.get(ApiKind::Management);
    for (method, path) in [
        ("GET", "/external-jwt-signers"),
        ("POST", "/external-jwt-signers"),
        ("GET", "/external-jwt-signers/{id}"),
        ("PUT", "/external-jwt-signers/{id}"),
        ("PATCH", "/external-jwt-signers/{id}"),
        ("DELETE", "/external-jwt-signers/{id}"),
    ] {
        assert!(
            operations(mgmt).contains(&(method.to_owned(), path.to_owned())),
            "management {method} {path}"
        );
    }
    let client = specs.get(ApiKind::Client);
    let list = &client["paths"]["/external-jwt-signers"]["get"];
    assert_eq!(list["operationId"], "listExternalJwtSigners");
    assert_eq!(
        list["security"],
        serde_json::json!([]),
        "the client list needs no session"
    );
    for doc in [mgmt, client] {
        let params = doc["paths"]["/authenticate"]["post"]["parameters"]
            .as_array()
            .unwrap();
        let method = params.iter().find(|p| p["name"] == "method").unwrap();
        let values = method["schema"]["enum"].as_array().unwrap();
        assert!(values.contains(&serde_json::json!("ext-jwt")), "{method}");
    }
}
