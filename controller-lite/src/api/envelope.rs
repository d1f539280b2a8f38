//! OpenZiti response envelopes: `{data, meta}` on success and
//! `{error:{code,message,requestId,args,cause,causeMessage}, meta}` on failure
//! (EDGE `controller/response/responder.go`; spec §3.1). The typed parts are also
//! what the OpenAPI documents describe.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::api::list::Page;
use crate::error::ApiError;
use crate::filter::Fields;

/// API version reported in error `meta` (the real controller's value).
const API_VERSION: &str = "0.0.1";

/// `meta.pagination` of a list.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// Effective page size.
    pub limit: i64,
    /// Effective offset.
    pub offset: i64,
    /// Items matching the filter, over all pages.
    pub total_count: i64,
}

/// `meta` of a list.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    /// Paging.
    pub pagination: Pagination,
    /// The fields `filter` and `sort` may name.
    pub filterable_fields: Vec<String>,
}

/// `args` of an error.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorArgs {
    /// Path parameters of the request.
    pub url_vars: Map<String, Value>,
}

/// The `error` member of an error envelope.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiErrorBody {
    /// OpenZiti error code, e.g. `NOT_FOUND`, `COULD_NOT_VALIDATE`, `INVALID_FILTER`.
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// Unique id of the request.
    pub request_id: String,
    /// Request arguments.
    pub args: ErrorArgs,
    /// The cause, when there is one.
    pub cause_message: String,
    /// The cause as data (`INVALID_POSTURE`: `{message, data}`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Value>,
}

/// `meta` of an error envelope.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorMeta {
    /// API version.
    pub api_version: String,
    /// Enrollment API version.
    pub api_enrollment_version: String,
}

/// The error envelope every failure is answered with.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ApiErrorEnvelope {
    /// The error.
    pub error: ApiErrorBody,
    /// Versions.
    pub meta: ErrorMeta,
}

impl ApiErrorEnvelope {
    /// An envelope with a fresh request id.
    pub fn new(code: &str, message: String) -> Self {
        Self {
            error: ApiErrorBody {
                code: code.to_owned(),
                message,
                request_id: uuid::Uuid::new_v4().to_string(),
                args: ErrorArgs {
                    url_vars: Map::new(),
                },
                cause_message: String::new(),
                cause: None,
            },
            meta: ErrorMeta {
                api_version: API_VERSION.into(),
                api_enrollment_version: API_VERSION.into(),
            },
        }
    }

    /// The envelope as a response with `status`.
    pub fn into_response_with(self, status: StatusCode) -> Response {
        (status, Json(self)).into_response()
    }
}

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
    let meta = ListMeta {
        pagination: Pagination {
            limit: p.limit,
            offset: p.offset,
            total_count: p.total,
        },
        filterable_fields: fields.names().into_iter().map(str::to_owned).collect(),
    };
    (
        StatusCode::OK,
        Json(json!({"data": Value::Array(p.items), "meta": meta})),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let mut envelope = ApiErrorEnvelope::new(code, self.to_string());
        if let Self::InvalidPosture(cause) = &self {
            envelope.error.cause_message = cause["message"].as_str().unwrap_or_default().into();
            envelope.error.cause = Some((**cause).clone());
        }
        let mut res = envelope.into_response_with(self.status());
        // For the request telemetry (security events name the code).
        res.extensions_mut()
            .insert(crate::telemetry::ErrorCode(code));
        if let Self::ExtJwt(challenge) = &self {
            if let Some(v) = challenge.header_value() {
                res.headers_mut()
                    .insert(axum::http::header::WWW_AUTHENTICATE, v);
            }
        }
        res
    }
}
