//! `GET /external-jwt-signers` of the client API: the enabled external JWT signers,
//! without authentication, so that a client can learn where to get a token before it
//! has an API session (openziti/edge-api `source/client/external-jwt-signers.yml`,
//! `clientExternalJwtSignerDetail`).

use axum::extract::State;
use axum::response::Response;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::list::ListQuery;
use crate::api::{AppState, envelope, render};
use crate::error::ApiError;
use crate::model::{Entity, ExternalJwtSigner, Kind};

/// An enabled signer as the client API lists it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientExternalJwtSigner {
    /// Signer id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Where clients obtain tokens (empty when not set).
    pub external_auth_url: String,
    /// OAuth client id, if any.
    pub client_id: Option<String>,
    /// OAuth scopes.
    pub scopes: Vec<String>,
    /// The audience tokens must name.
    pub audience: Option<String>,
    /// Which token clients present: `ACCESS` or `ID`.
    pub target_token: String,
    /// Always false: enrolment by token is not supported.
    pub enroll_to_cert_enabled: bool,
    /// Always false: enrolment by token is not supported.
    pub enroll_to_token_enabled: bool,
    /// Tags.
    pub tags: Map<String, Value>,
    /// Creation time.
    pub created_at: String,
    /// Last update.
    pub updated_at: String,
    /// Links (none).
    #[serde(rename = "_links")]
    pub links: Map<String, Value>,
}

/// `GET /external-jwt-signers?limit&offset&filter&sort` (no authentication).
pub async fn list(State(ctl): State<AppState>, q: ListQuery) -> Result<Response, ApiError> {
    let fields = Kind::ExternalJwtSigners.fields();
    let mut docs = Vec::new();
    for r in ctl
        .store
        .list_all(Kind::ExternalJwtSigners.collection())
        .await?
    {
        let rendered = render::entity(&r);
        let signer = Entity::<ExternalJwtSigner>::from_row(r)?;
        if signer.doc.enabled {
            docs.push((rendered, signer));
        }
    }
    let page = q.apply(&fields, &["name"], docs)?.try_map(|r| {
        let d = r.doc;
        serde_json::to_value(ClientExternalJwtSigner {
            id: r.id,
            name: r.name,
            external_auth_url: d.external_auth_url.unwrap_or_default(),
            client_id: d.client_id,
            scopes: d.scopes,
            audience: Some(d.audience),
            target_token: d.target_token,
            enroll_to_cert_enabled: false,
            enroll_to_token_enabled: false,
            tags: match r.tags {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
            links: Map::new(),
        })
        .map_err(|e| ApiError::Internal(format!("serialize: {e}")))
    })?;
    Ok(envelope::page(page, &fields))
}
