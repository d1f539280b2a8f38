//! OpenAPI 3 documents of the Edge Client and Edge Management APIs, generated from the
//! [`Endpoint`] descriptions the router is built from (so they list exactly the served
//! routes), with schemas derived from the Rust types (`schemars`), and the routes that
//! serve them:
//!
//! - `GET {base}/openapi.json` and `GET {base}/swagger.json` (where the go-openapi server
//!   of OpenZiti serves its document; ours is OpenAPI 3.0, not Swagger 2.0);
//! - `GET {base}/specs`, `GET {base}/specs/{id}` and `GET {base}/specs/{id}/spec` with ids
//!   `edge-client` and `edge-management`, as OpenZiti's `spec_router.go` serves them
//!   (no authentication).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::Path;
use axum::{Extension, Json};
use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::endpoint::{Access, ApiBuilder, Data, Endpoint, Shape};
use super::envelope::{self, ApiErrorEnvelope, ListMeta};
use super::{CLIENT_PREFIX, MANAGEMENT_PREFIX, render};
use crate::error::ApiError;
use crate::model::Kind;

/// OpenAPI version of the documents.
pub const OPENAPI_VERSION: &str = "3.0.3";

/// The two APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    /// The Edge Client API.
    Client,
    /// The Edge Management API.
    Management,
}

impl ApiKind {
    /// Both APIs.
    pub const ALL: [Self; 2] = [Self::Client, Self::Management];

    /// The spec id OpenZiti uses (`edge-client`, `edge-management`).
    pub fn id(self) -> &'static str {
        match self {
            Self::Client => "edge-client",
            Self::Management => "edge-management",
        }
    }

    /// The base path.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Client => CLIENT_PREFIX,
            Self::Management => MANAGEMENT_PREFIX,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Client => "Weft Edge Client API",
            Self::Management => "Weft Edge Management API",
        }
    }

    fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.id() == id)
    }
}

/// The documents of both APIs, shared with the handlers as an [`Extension`].
#[derive(Debug, Clone)]
pub struct Specs {
    /// The Edge Client API document.
    pub client: Value,
    /// The Edge Management API document.
    pub management: Value,
}

impl Specs {
    /// The document of `api`.
    pub fn get(&self, api: ApiKind) -> &Value {
        match api {
            ApiKind::Client => &self.client,
            ApiKind::Management => &self.management,
        }
    }
}

/// Adds the routes serving the documents to `api` (the routes of `kind`).
pub fn spec_routes(api: ApiBuilder, kind: ApiKind) -> ApiBuilder {
    let doc = Data::Raw("application/json", "The OpenAPI 3 document of this API.");
    api.add(
        Endpoint::get("/openapi.json", "getOpenApiDocument")
            .doc("Informational", "The OpenAPI 3 document of this API")
            .returns(200, doc),
        move |Extension(specs): Extension<Arc<Specs>>| async move { Json(specs.get(kind).clone()) },
    )
    .add(
        Endpoint::get("/swagger.json", "getSwaggerDocument")
            .doc(
                "Informational",
                "The OpenAPI 3 document of this API (at OpenZiti's swagger.json path)",
            )
            .returns(200, doc),
        move |Extension(specs): Extension<Arc<Specs>>| async move { Json(specs.get(kind).clone()) },
    )
    .add(
        Endpoint::get("/specs", "listSpecs")
            .doc("Informational", "Returns a list of API specs")
            .returns(200, Data::Object("List of `{id, name}` spec entries.")),
        || async { envelope::ok(Value::Array(ApiKind::ALL.map(spec_detail).to_vec())) },
    )
    .add(
        Endpoint::get("/specs/{id}", "detailSpec")
            .doc("Informational", "Return a single spec resource")
            .returns(200, Data::Object("`{id, name}` of the spec.")),
        |Path(id): Path<String>| async move {
            ApiKind::from_id(&id)
                .map(|k| envelope::ok(spec_detail(k)))
                .ok_or_else(|| unknown_spec(&id))
        },
    )
    .add(
        Endpoint::get("/specs/{id}/spec", "detailSpecBody")
            .doc("Informational", "Returns the spec's file")
            .returns(
                200,
                Data::Object("`data`: the OpenAPI 3 document of the API, as JSON text."),
            ),
        |Extension(specs): Extension<Arc<Specs>>, Path(id): Path<String>| async move {
            // OpenZiti's `detailSpecBodyEnvelope`: the document as a string in `data`.
            ApiKind::from_id(&id)
                .map(|k| envelope::ok(Value::String(specs.get(k).to_string())))
                .ok_or_else(|| unknown_spec(&id))
        },
    )
}

fn unknown_spec(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "spec {id:?} not found; specs are edge-client and edge-management"
    ))
}

fn spec_detail(k: ApiKind) -> Value {
    let href = format!("./specs/{}", k.id());
    json!({
        "id": k.id(),
        "name": k.id(),
        "createdAt": "1970-01-01T00:00:00.000Z",
        "updatedAt": "1970-01-01T00:00:00.000Z",
        "tags": {},
        "_links": {"self": {"href": href}, "spec": {"href": format!("{href}/spec")}},
    })
}

/// Builds the OpenAPI document of `kind` from its endpoints.
pub fn document(kind: ApiKind, endpoints: &[Endpoint]) -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let error = g.subschema_for::<ApiErrorEnvelope>().to_value();
    let list_meta = g.subschema_for::<ListMeta>().to_value();
    let mut entities = BTreeMap::new();
    let mut paths = Map::new();
    let mut tags = BTreeSet::new();
    for ep in endpoints {
        tags.insert(ep.tag.clone());
        let mut b = OperationBuilder {
            g: &mut g,
            entities: &mut entities,
        };
        let op = b.operation(ep, &error, &list_meta);
        if let Value::Object(item) = paths.entry(ep.path.clone()).or_insert_with(|| json!({})) {
            item.insert(ep.method.as_str().to_ascii_lowercase(), op);
        }
    }
    let mut schemas = g.take_definitions(true);
    for (k, (doc, extras)) in &entities {
        add_entity_schemas(&mut schemas, *k, doc, extras.as_deref());
    }
    let mut servers = vec![json!({"url": kind.prefix()})];
    if kind == ApiKind::Client {
        servers.push(json!({"url": "/", "description": "The client API is also served at the root (spec §2)."}));
    }
    json!({
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": kind.title(),
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Generated from the routes the controller serves. Errors are OpenZiti error envelopes; every response carries `ziti-instance-id`.",
        },
        "servers": servers,
        "tags": tags.into_iter().map(|t| json!({"name": t})).collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "ztSession": {"type": "apiKey", "in": "header", "name": "zt-session",
                              "description": "The `token` of an API session."},
            },
        },
    })
}

/// Generates one operation, registering schemas with the generator.
struct OperationBuilder<'a> {
    g: &'a mut SchemaGenerator,
    /// Kinds whose entity schemas are referenced → the names of their document schema
    /// and of the schema of the extra fields their detail shows.
    entities: &'a mut BTreeMap<Kind, (String, Option<String>)>,
}

/// The schema name a `$ref` schema points to.
fn ref_name(schema: &Value) -> String {
    schema["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or_default()
        .to_owned()
}

fn entity_schema_name(k: Kind, shape: Shape) -> String {
    let suffix = match shape {
        Shape::Create => "Create",
        Shape::Update => "Update",
        Shape::Patch => "Patch",
        Shape::Detail => "Detail",
    };
    format!("{}{suffix}", k.type_names().0)
}

impl OperationBuilder<'_> {
    fn schema(&mut self, data: Data) -> Value {
        match data {
            Data::Empty => json!({"type": "object"}),
            Data::Schema(f) => f(self.g).to_value(),
            Data::Entity(k, shape) => {
                if !self.entities.contains_key(&k) {
                    let doc = ref_name(&k.document_subschema(self.g).to_value());
                    let extras =
                        render::detail_extras_schema(k, self.g).map(|s| ref_name(&s.to_value()));
                    self.entities.insert(k, (doc, extras));
                }
                json!({"$ref": format!("#/components/schemas/{}", entity_schema_name(k, shape))})
            }
            Data::Created => json!({
                "type": "object",
                "required": ["id"],
                "properties": {"id": {"type": "string"}, "_links": {"type": "object"}},
                "additionalProperties": true,
            }),
            Data::Object(d) => {
                json!({"type": "object", "description": d, "additionalProperties": true})
            }
            Data::Raw(_, d) => json!({"type": "string", "description": d}),
        }
    }

    fn operation(&mut self, ep: &Endpoint, error: &Value, list_meta: &Value) -> Value {
        let mut params: Vec<Value> = ep
            .path_params()
            .into_iter()
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        for q in ep.query {
            let mut schema = json!({"type": "string"});
            if !q.values.is_empty() {
                schema["enum"] = json!(q.values);
            }
            params.push(
                json!({"name": q.name, "in": "query", "required": q.required,
                               "description": q.description, "schema": schema}),
            );
        }
        let data = self.schema(ep.response);
        let success = match ep.response {
            Data::Raw(ct, d) => json!({"description": d, "content": {ct: {"schema": data}}}),
            _ => {
                let (data, meta) = if ep.list {
                    (json!({"type": "array", "items": data}), list_meta.clone())
                } else {
                    (data, json!({"type": "object"}))
                };
                json!({
                    "description": ep.summary,
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "required": ["data", "meta"],
                        "properties": {"data": data, "meta": meta},
                    }}},
                })
            }
        };
        let mut op = json!({
            "operationId": ep.operation_id,
            "summary": ep.summary,
            "tags": [ep.tag],
            "parameters": params,
            "responses": {
                ep.status.to_string(): success,
                "default": {"description": "An OpenZiti error envelope.",
                            "content": {"application/json": {"schema": error}}},
            },
            "security": match ep.access {
                Access::Public => json!([]),
                Access::Session | Access::Admin => json!([{"ztSession": []}]),
            },
        });
        if ep.access == Access::Admin {
            op["description"] = json!("Requires an administrator's API session.");
        }
        match ep.request {
            Data::Empty => {}
            Data::Raw(ct, d) => {
                op["requestBody"] = json!({"required": true, "content": {
                    ct: {"schema": {"type": "string", "description": d}}}});
            }
            body => {
                let required = !matches!(body, Data::Object(_));
                op["requestBody"] = json!({"required": required, "content": {
                    "application/json": {"schema": self.schema(body)}}});
            }
        }
        op
    }
}

/// Adds `{Type}Create`, `{Type}Update`, `{Type}Patch` and `{Type}Detail` for kind `k`,
/// derived from its document schema `doc_name` and the schema `extras` of the extra
/// fields its detail shows.
fn add_entity_schemas(
    schemas: &mut Map<String, Value>,
    k: Kind,
    doc_name: &str,
    extras: Option<&str>,
) {
    let doc = schemas.get(doc_name).cloned().unwrap_or_else(|| json!({}));
    let mut props = doc
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut required: Vec<Value> = doc
        .get("required")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    props.insert(
        "name".into(),
        json!({"type": "string", "description": "Unique name."}),
    );
    props.insert(
        "tags".into(),
        json!({"type": "object", "additionalProperties": true}),
    );
    if k != Kind::Terminators {
        required.insert(0, json!("name"));
    }
    let object = |props: &Map<String, Value>, required: &[Value], closed: bool| {
        let mut o = json!({"type": "object", "properties": props});
        if !required.is_empty() {
            o["required"] = json!(required);
        }
        if closed {
            o["additionalProperties"] = json!(false);
        }
        o
    };
    schemas.insert(
        entity_schema_name(k, Shape::Create),
        object(&props, &required, true),
    );
    // `enrollment` and a CA's `certPem` are create-only input.
    for create_only in ["enrollment", "certPem"] {
        if create_only == "enrollment" || k == Kind::Cas {
            props.remove(create_only);
            required.retain(|r| r != create_only);
        }
    }
    schemas.insert(
        entity_schema_name(k, Shape::Update),
        object(&props, &required, true),
    );
    schemas.insert(
        entity_schema_name(k, Shape::Patch),
        object(&props, &[], true),
    );
    if k == Kind::Cas {
        props.insert("certPem".into(), json!({"type": "string"}));
    }
    for (name, ty) in [
        ("id", json!({"type": "string"})),
        (
            "createdAt",
            json!({"type": "string", "format": "date-time"}),
        ),
        (
            "updatedAt",
            json!({"type": "string", "format": "date-time"}),
        ),
        ("_links", json!({"type": "object"})),
    ] {
        props.insert(name.into(), ty);
    }
    if let Some(extra) = extras.and_then(|e| schemas.get(e)) {
        if let Some(p) = extra.get("properties").and_then(Value::as_object) {
            props.extend(p.clone());
        }
    }
    let required = ["id", "name", "createdAt", "updatedAt"].map(|r| json!(r));
    schemas.insert(
        entity_schema_name(k, Shape::Detail),
        object(&props, &required, false),
    );
}
