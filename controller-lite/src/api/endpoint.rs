//! Endpoint descriptions and the builder that registers them.
//!
//! Every route of the HTTP APIs is added through [`ApiBuilder::add`], which records its
//! [`Endpoint`] description with its handler; the axum routers ([`ApiBuilder::router_at`])
//! and the OpenAPI documents ([`super::openapi`]) are both made from that one list, so the
//! documents list exactly the routes the router serves.

use axum::Router;
use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use schemars::{Schema, SchemaGenerator};

use super::AppState;
use crate::error::ApiError;
use crate::model::Kind;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No authentication.
    Public,
    /// A valid `zt-session` (API session token).
    Session,
    /// A `zt-session` of an administrator.
    Admin,
}

/// A generator of a named schema (`|g| g.subschema_for::<T>()`).
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The shape of a management entity document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The create body (`name`, `tags` and the kind's fields).
    Create,
    /// A PUT body: the create body without create-only fields.
    Update,
    /// A PATCH body: the update body with every field optional.
    Patch,
    /// The detail returned by get and list.
    Detail,
}

/// A request or response body.
#[derive(Debug, Clone, Copy)]
pub enum Data {
    /// No body (requests) or `{}` (responses).
    Empty,
    /// JSON with the schema of a Rust type.
    Schema(SchemaFn),
    /// JSON of a management entity.
    Entity(Kind, Shape),
    /// `{id, _links}` of a created entity.
    Created,
    /// A JSON object described in words.
    Object(&'static str),
    /// A non-JSON body of this content type, described in words.
    Raw(&'static str, &'static str),
}

/// A query parameter.
#[derive(Debug, Clone, Copy)]
pub struct QueryParam {
    /// Name.
    pub name: &'static str,
    /// Whether it must be given.
    pub required: bool,
    /// Allowed values, if restricted.
    pub values: &'static [&'static str],
    /// Meaning.
    pub description: &'static str,
}

/// `limit`, `offset`, `filter` and `sort` of list endpoints ([`super::list`]).
pub const LIST_PARAMS: &[QueryParam] = &[
    QueryParam {
        name: "limit",
        required: false,
        values: &[],
        description: "Page size, 1 to 500 (default 10).",
    },
    QueryParam {
        name: "offset",
        required: false,
        values: &[],
        description: "Items to skip.",
    },
    QueryParam {
        name: "filter",
        required: false,
        values: &[],
        description: "ZitiQL filter, e.g. `name contains \"web\" and anyOf(roleAttributes) = \"prod\" sort by name desc limit 5`.",
    },
    QueryParam {
        name: "sort",
        required: false,
        values: &[],
        description: "Sort keys, e.g. `createdAt desc, name`.",
    },
];

/// The description of one route.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// HTTP method.
    pub method: Method,
    /// Path relative to the API's base path, with `{param}` segments.
    pub path: String,
    /// Unique operation id (OpenZiti's where one exists).
    pub operation_id: String,
    /// One-line summary.
    pub summary: String,
    /// Group.
    pub tag: String,
    /// Who may call it.
    pub access: Access,
    /// Query parameters.
    pub query: &'static [QueryParam],
    /// Request body.
    pub request: Data,
    /// Success status.
    pub status: u16,
    /// Success body (the `data` of the envelope, unless [`Data::Raw`]).
    pub response: Data,
    /// Whether `data` is a list of [`Self::response`] with `meta.pagination`.
    pub list: bool,
    /// Media types a request body may have ([`JSON_ONLY`] unless set); a body of any
    /// other type is answered 415 `INVALID_CONTENT_TYPE`.
    pub consumes: &'static [&'static str],
}

/// What OpenZiti's Edge APIs consume by default (openziti/edge-api `source/client.yml`
/// and `source/management.yml`: top-level `consumes: [application/json]`).
pub const JSON_ONLY: &[&str] = &["application/json"];

impl Endpoint {
    /// A new public endpoint answering 200 `{"data":{}}`.
    fn new(method: Method, path: impl Into<String>, operation_id: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            operation_id: operation_id.into(),
            summary: String::new(),
            tag: String::new(),
            access: Access::Public,
            query: &[],
            request: Data::Empty,
            status: 200,
            response: Data::Empty,
            list: false,
            consumes: JSON_ONLY,
        }
    }

    /// `GET path`.
    pub fn get(path: impl Into<String>, operation_id: impl Into<String>) -> Self {
        Self::new(Method::GET, path, operation_id)
    }

    /// `POST path`.
    pub fn post(path: impl Into<String>, operation_id: impl Into<String>) -> Self {
        Self::new(Method::POST, path, operation_id)
    }

    /// `PUT path`.
    pub fn put(path: impl Into<String>, operation_id: impl Into<String>) -> Self {
        Self::new(Method::PUT, path, operation_id)
    }

    /// `PATCH path`.
    pub fn patch(path: impl Into<String>, operation_id: impl Into<String>) -> Self {
        Self::new(Method::PATCH, path, operation_id)
    }

    /// `DELETE path`.
    pub fn delete(path: impl Into<String>, operation_id: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path, operation_id)
    }

    /// Sets the summary and the tag.
    pub fn doc(mut self, tag: &str, summary: impl Into<String>) -> Self {
        self.tag = tag.to_owned();
        self.summary = summary.into();
        self
    }

    /// Requires a session.
    pub fn session(mut self) -> Self {
        self.access = Access::Session;
        self
    }

    /// Requires an administrator.
    pub fn admin(mut self) -> Self {
        self.access = Access::Admin;
        self
    }

    /// Sets the query parameters.
    pub fn query(mut self, params: &'static [QueryParam]) -> Self {
        self.query = params;
        self
    }

    /// Sets the request body.
    pub fn request(mut self, body: Data) -> Self {
        self.request = body;
        self
    }

    /// Sets the success status and body.
    pub fn returns(mut self, status: u16, body: Data) -> Self {
        self.status = status;
        self.response = body;
        self
    }

    /// Sets the media types a request body may have.
    pub fn consumes(mut self, types: &'static [&'static str]) -> Self {
        self.consumes = types;
        self
    }

    /// Answers a paged list of `item` ([`LIST_PARAMS`] apply).
    pub fn lists(mut self, item: Data) -> Self {
        self.response = item;
        self.list = true;
        self.query = LIST_PARAMS;
        self
    }

    /// The `{param}` names of the path.
    pub fn path_params(&self) -> Vec<&str> {
        self.path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect()
    }
}

/// Collects the routes of one API: each endpoint description with its handler.
#[derive(Debug, Default)]
pub struct ApiBuilder {
    routes: Vec<(Endpoint, MethodRouter<AppState>)>,
}

impl ApiBuilder {
    /// Records the endpoint with `handler` for its method.
    pub fn add<H, T>(mut self, endpoint: Endpoint, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = method_filter(&endpoint.method);
        let route = on(filter, handler).layer(axum::middleware::from_fn_with_state(
            endpoint.consumes,
            check_content_type,
        ));
        self.routes.push((endpoint, route));
        self
    }

    /// The endpoint descriptions.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.routes.iter().map(|(e, _)| e.clone()).collect()
    }

    /// A router serving every endpoint under `prefix` (`""` for the root). The API's
    /// root `/` is served both as `{prefix}/` and as `{prefix}`.
    ///
    /// # Panics
    ///
    /// When the same method and path were added twice (axum refuses overlapping routes;
    /// a programming error that every test building the router catches).
    pub fn router_at(&self, prefix: &str) -> Router<AppState> {
        let mut router = Router::new();
        for (e, handler) in &self.routes {
            router = router.route(&format!("{prefix}{}", e.path), handler.clone());
            if e.path == "/" && !prefix.is_empty() {
                router = router.route(prefix, handler.clone());
            }
        }
        router
    }
}

/// Refuses a request whose body has a media type the endpoint does not consume
/// (415 `INVALID_CONTENT_TYPE`), as OpenZiti's go-openapi runtime does. Parameters
/// (`; charset=utf-8`) and case are ignored. A request without a body needs no
/// `Content-Type` (the OpenZiti C SDK 0.29.3 sends none on its empty GET and DELETE
/// requests, `library/ziti_ctrl.c`); a body without one is refused.
async fn check_content_type(
    State(consumes): State<&'static [&'static str]>,
    req: Request,
    next: Next,
) -> Response {
    let body = req.body();
    let empty = body.is_end_stream() || body.size_hint().exact() == Some(0);
    if !empty {
        let header = req.headers().get(header::CONTENT_TYPE);
        let mime = header
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        if !mime.is_some_and(|m| consumes.contains(&m.as_str())) {
            let given = header.map_or_else(
                || "none".to_owned(),
                |v| String::from_utf8_lossy(v.as_bytes()).into_owned(),
            );
            return ApiError::UnsupportedMediaType(given).into_response();
        }
    }
    next.run(req).await
}

/// The filter of one of the methods [`Endpoint`]'s constructors produce.
fn method_filter(m: &Method) -> MethodFilter {
    match *m {
        Method::POST => MethodFilter::POST,
        Method::PUT => MethodFilter::PUT,
        Method::PATCH => MethodFilter::PATCH,
        Method::DELETE => MethodFilter::DELETE,
        Method::HEAD => MethodFilter::HEAD,
        Method::OPTIONS => MethodFilter::OPTIONS,
        _ => MethodFilter::GET,
    }
}
