//! OpenZiti response envelopes: `{data, meta}` on success and
//! `{error:{code,message,requestId,args,cause,causeMessage}, meta}` on failure
//! (EDGE `controller/response/responder.go`; spec §3.1).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::list::Page;
use crate::error::ApiError;
use crate::filter::Fields;

/// API version reported in error `meta` (the real controller's value).
const API_VERSION: &str = "0.0.1";

/// 200 `{data, meta:{}}`.
pub fn ok(data: Value) -> Response {
    (StatusCode::OK, Json(json!({"data": data, "meta": {}}))).into_response()
}

/// 201 `{data, meta:{}}`.
pub fn created(data: Value) -> Response {
    (StatusCode::CREATED, Json(json!({"data": data, "meta": {}}))).into_response()
}

/// 200 `{data:{}, meta:{}}`.
pub fn empty() -> Response {
    ok(json!({}))
}

/// 200 with a list, `meta.pagination` (limit, offset, totalCount) and
/// `meta.filterableFields`.
pub fn page(p: Page<Value>, fields: &Fields) -> Response {
    ok_with_meta(
        Value::Array(p.items),
        json!({"pagination": {"limit": p.limit, "offset": p.offset, "totalCount": p.total},
               "filterableFields": fields.names()}),
    )
}

fn ok_with_meta(data: Value, meta: Value) -> Response {
    (StatusCode::OK, Json(json!({"data": data, "meta": meta}))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "code": self.code(),
                "message": self.to_string(),
                "requestId": uuid::Uuid::new_v4().to_string(),
                "args": {"urlVars": {}},
                "causeMessage": "",
            },
            "meta": {"apiVersion": API_VERSION, "apiEnrollmentVersion": API_VERSION},
        });
        (self.status(), Json(body)).into_response()
    }
}
