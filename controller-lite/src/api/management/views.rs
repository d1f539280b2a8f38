//! JSON shapes of the management API's security records (authenticators, enrollments,
//! sessions), typed so the OpenAPI documents and the filterable fields derive from them.

use std::collections::HashMap;

use schemars::{JsonSchema, schema_for};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::clock;
use crate::error::ApiError;
use crate::filter::Fields;
use crate::model::Kind;
use crate::store::{
    AuthenticatorRow, Credential, EnrollmentMethod, EnrollmentRow, EntityRow, SessionRow, Store,
};

/// A reference to another entity (`{id, name, entity, _links}`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EntityRef {
    /// Its id.
    pub id: String,
    /// Its name (empty when it no longer exists).
    pub name: String,
    /// Its collection.
    pub entity: String,
    /// Links (none).
    #[serde(rename = "_links")]
    pub links: Map<String, Value>,
}

impl EntityRef {
    /// A reference to `id`, named `name`, in the collection `entity`.
    pub fn new(id: &str, name: &str, entity: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            entity: entity.to_owned(),
            links: Map::new(),
        }
    }
}

/// Names of the entities of one kind, for [`EntityRef`]s.
#[derive(Debug, Default)]
pub struct Names {
    kind: Option<Kind>,
    names: HashMap<String, String>,
}

impl Names {
    /// The names of every entity of `kind`.
    pub async fn load(store: &Store, kind: Kind) -> Result<Self, ApiError> {
        Ok(Self {
            kind: Some(kind),
            names: store
                .list_all(kind.collection())
                .await?
                .into_iter()
                .map(|e: EntityRow| (e.id, e.name))
                .collect(),
        })
    }

    /// A reference to `id`.
    pub fn reference(&self, id: &str) -> EntityRef {
        EntityRef {
            id: id.to_owned(),
            name: self.names.get(id).cloned().unwrap_or_default(),
            entity: self
                .kind
                .map(Kind::collection)
                .unwrap_or_default()
                .to_owned(),
            links: Map::new(),
        }
    }
}

/// An identity's credential (`authenticatorDetail`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticatorDetail {
    /// Id.
    pub id: String,
    /// `cert` or `updb`.
    pub method: String,
    /// Owner.
    pub identity_id: String,
    /// Owner reference.
    pub identity: EntityRef,
    /// SHA-1 fingerprint (`cert`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Certificate PEM (`cert`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_pem: Option<String>,
    /// User name (`updb`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
    /// Tags (none).
    pub tags: Map<String, Value>,
    /// Links (none).
    #[serde(rename = "_links")]
    pub links: Map<String, Value>,
}

impl AuthenticatorDetail {
    /// The detail of `a` (never its password hash).
    pub fn new(a: AuthenticatorRow, identities: &Names) -> Self {
        let method = a.credential.method().to_owned();
        let (fingerprint, cert_pem, username) = match a.credential {
            Credential::Cert { fingerprint, pem } => (Some(fingerprint), pem, None),
            Credential::Router { fingerprint, pem } => (Some(fingerprint), Some(pem), None),
            Credential::Updb { username, .. } => (None, None, Some(username)),
        };
        Self {
            identity: identities.reference(&a.identity_id),
            id: a.id,
            method,
            identity_id: a.identity_id,
            fingerprint,
            cert_pem,
            username,
            created_at: a.created_at,
            updated_at: a.updated_at,
            tags: Map::new(),
            links: Map::new(),
        }
    }
}

/// A pending enrollment (`enrollmentDetail`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentDetail {
    /// Id.
    pub id: String,
    /// `ott`.
    pub method: String,
    /// The identity it enrolls.
    pub identity_id: String,
    /// Identity reference.
    pub identity: EntityRef,
    /// The JWT's `jti`.
    pub token: String,
    /// The enrollment JWT.
    pub jwt: String,
    /// Expiry.
    pub expires_at: String,
    /// `ottca`: the 3rd-party CA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_id: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Same as the creation time (enrollments do not change).
    pub updated_at: String,
    /// Tags (none).
    pub tags: Map<String, Value>,
    /// Links (none).
    #[serde(rename = "_links")]
    pub links: Map<String, Value>,
}

impl EnrollmentDetail {
    /// The detail of `e`.
    pub fn new(e: EnrollmentRow, identities: &Names) -> Self {
        Self {
            identity: identities.reference(&e.identity_id),
            id: e.id,
            method: e.method.name().to_owned(),
            identity_id: e.identity_id,
            token: e.jti,
            jwt: e.jwt,
            expires_at: clock::fmt_unix(e.expires_at),
            ca_id: match e.method {
                EnrollmentMethod::Ottca { ca_id } => Some(ca_id),
                _ => None,
            },
            updated_at: e.created_at.clone(),
            created_at: e.created_at,
            tags: Map::new(),
            links: Map::new(),
        }
    }
}

/// A session as the management API shows it (`sessionManagementDetail`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionDetail {
    /// Id.
    pub id: String,
    /// Token routers check.
    pub token: String,
    /// `Dial` or `Bind`.
    #[serde(rename = "type")]
    pub session_type: String,
    /// Service id.
    pub service_id: String,
    /// Service reference.
    pub service: EntityRef,
    /// Owning API session.
    pub api_session_id: String,
    /// API session reference.
    pub api_session: EntityRef,
    /// The edge routers the session may use (as clients see them).
    pub edge_routers: Vec<Value>,
    /// Identity id.
    pub identity_id: String,
    /// Identity reference.
    pub identity: EntityRef,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
    /// Tags (none).
    pub tags: Map<String, Value>,
    /// Links (none).
    #[serde(rename = "_links")]
    pub links: Map<String, Value>,
}

impl SessionDetail {
    /// The detail of `s`, which may use `edge_routers`.
    pub fn new(
        s: SessionRow,
        services: &Names,
        identities: &Names,
        edge_routers: Vec<Value>,
    ) -> Self {
        Self {
            service: services.reference(&s.service_id),
            identity: identities.reference(&s.identity_id),
            api_session: EntityRef::new(&s.api_session_id, "", "api-sessions"),
            edge_routers,
            id: s.id,
            token: s.token,
            session_type: s.session_type.as_str().to_owned(),
            service_id: s.service_id,
            api_session_id: s.api_session_id,
            identity_id: s.identity_id,
            created_at: s.created_at,
            updated_at: s.updated_at,
            tags: Map::new(),
            links: Map::new(),
        }
    }
}

/// The filterable fields of a view type.
pub fn fields_of<T: JsonSchema>() -> Fields {
    Fields::default().with_schema(schema_for!(T).as_value())
}

/// A view as JSON.
pub fn to_json(v: &impl Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::Internal(format!("serialize: {e}")))
}
