//! Typed entities: a stored [`EntityRow`] with its document parsed into the document
//! type of its kind, so code that reads an entity reads fields, not JSON keys.
//!
//! The store keeps each kind's document as JSON (one table for every kind, the
//! management API's filters run over it); every document is written from its type
//! ([`crate::model::normalize`]), so parsing one back fails only on a damaged store,
//! which [`Entity::from_row`] reports as [`StoreError::Corrupt`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    AuthPolicy, Config, ConfigType, EdgeRouter, EdgeRouterPolicy, ExternalJwtSigner, Identity,
    Kind, PostureCheck, Service, ServiceEdgeRouterPolicy, ServicePolicy, Terminator,
};
use crate::error::StoreError;
use crate::store::EntityRow;
use crate::thirdparty_ca::CaDocument;

/// The document type of one kind of entity.
pub trait Document: Serialize + DeserializeOwned {
    /// The kind whose documents this type reads.
    const KIND: Kind;
}

/// The document type of each kind, once: the [`Document`] impls and [`check_document`].
macro_rules! documents {
    ($($ty:ty => $kind:ident),* $(,)?) => {
        $(impl Document for $ty {
            const KIND: Kind = Kind::$kind;
        })*

        /// Whether `data` parses as the document of `kind` (the error says why not).
        pub fn check_document(kind: Kind, data: &Value) -> Result<(), StoreError> {
            match kind {
                $(Kind::$kind => parse_document::<$ty>(data).map(drop),)*
            }
        }
    };
}

documents!(
    Identity => Identities,
    Service => Services,
    Config => Configs,
    ConfigType => ConfigTypes,
    ServicePolicy => ServicePolicies,
    EdgeRouterPolicy => EdgeRouterPolicies,
    ServiceEdgeRouterPolicy => ServiceEdgeRouterPolicies,
    EdgeRouter => EdgeRouters,
    Terminator => Terminators,
    AuthPolicy => AuthPolicies,
    ExternalJwtSigner => ExternalJwtSigners,
    StoredPostureCheck => PostureChecks,
    CaRecord => Cas,
);

/// A 3rd-party CA as stored: the document an administrator wrote and the fields the
/// controller sets itself ([`crate::thirdparty_ca`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaRecord {
    /// What the administrator wrote.
    #[serde(flatten)]
    pub document: CaDocument,
    /// SHA-1 fingerprint of the CA certificate.
    #[serde(default)]
    pub fingerprint: String,
    /// Whether the CA's owner proved its key ([`crate::domain::cas`]).
    #[serde(default)]
    pub is_verified: bool,
    /// The common name a verification certificate must have.
    #[serde(default)]
    pub verification_token: String,
}

/// Parses a stored document of `D`'s kind (see [`Entity::from_row`]).
pub fn parse_document<D: Document>(data: &Value) -> Result<D, StoreError> {
    D::deserialize(data).map_err(|e| {
        StoreError::Corrupt(format!(
            "a {} document does not parse: {e}",
            D::KIND.collection()
        ))
    })
}

impl EntityRow {
    /// The row's document as a `D` ([`parse_document`]; the row's kind is not checked:
    /// the caller read it from `D`'s kind).
    pub fn doc<D: Document>(&self) -> Result<D, StoreError> {
        parse_document(&self.data)
    }
}

/// Parses `data` as a `D`, lets `change` change it and writes it back.
pub fn rewrite_document<D: Document>(
    data: &mut Value,
    change: impl FnOnce(&mut D),
) -> Result<(), StoreError> {
    let mut doc = parse_document::<D>(data)?;
    change(&mut doc);
    *data = serde_json::to_value(&doc)?;
    Ok(())
}

/// A posture check as stored: the check and its version, which each update raises
/// (OpenZiti's `version`, which tells clients to report again).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPostureCheck {
    /// The check.
    #[serde(flatten)]
    pub check: PostureCheck,
    /// 1 when created, one more with each update.
    #[serde(default = "first_version")]
    pub version: i64,
}

fn first_version() -> i64 {
    1
}

/// A stored entity with its document typed.
#[derive(Debug, Clone)]
pub struct Entity<D> {
    /// Unique id.
    pub id: String,
    /// Unique (per kind) name.
    pub name: String,
    /// Free-form tags object.
    pub tags: Value,
    /// The kind's document.
    pub doc: D,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last update time (RFC 3339).
    pub updated_at: String,
}

impl<D: Document> Entity<D> {
    /// Parses `row`'s document; a row of another kind, or a document that does not
    /// parse, is [`StoreError::Corrupt`] (documents are written from their type).
    pub fn from_row(row: EntityRow) -> Result<Self, StoreError> {
        let kind = D::KIND.collection();
        if row.kind != kind {
            return Err(StoreError::Corrupt(format!(
                "entity {} is of kind {}, read as {kind}",
                row.id, row.kind
            )));
        }
        let doc = serde_json::from_value(row.data).map_err(|e| {
            StoreError::Corrupt(format!(
                "the document of {kind} {} does not parse: {e}",
                row.id
            ))
        })?;
        Ok(Self {
            id: row.id,
            name: row.name,
            tags: row.tags,
            doc,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    /// Every row of `rows` typed ([`Self::from_row`]).
    pub fn from_rows(rows: Vec<EntityRow>) -> Result<Vec<Self>, StoreError> {
        rows.into_iter().map(Self::from_row).collect()
    }

    /// The row that stores the entity.
    pub fn into_row(self) -> Result<EntityRow, StoreError> {
        Ok(EntityRow {
            kind: D::KIND.collection().to_owned(),
            id: self.id,
            name: self.name,
            tags: self.tags,
            data: serde_json::to_value(&self.doc)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}
