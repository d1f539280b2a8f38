//! The policy model: plain structs for the entities that policies select and for the three
//! kinds of policies, as a snapshot the evaluators read.
//!
//! Ids are strings. Within one entity type ids are expected to be unique and `@ref`
//! entries to resolve; [`Model::validate`] reports what OpenZiti would have refused at
//! write time. The evaluators never fail: a reference that does not resolve selects
//! nothing (fail closed).

use std::collections::HashSet;
use std::fmt;

use super::selector::RoleSet;
use super::semantic::{PolicyType, Semantic};

/// The four types of entity a role list can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    /// [`Identity`].
    Identity,
    /// [`Service`].
    Service,
    /// [`EdgeRouter`].
    EdgeRouter,
    /// [`PostureCheck`].
    PostureCheck,
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Identity => "identity",
            Self::Service => "service",
            Self::EdgeRouter => "edge router",
            Self::PostureCheck => "posture check",
        })
    }
}

/// What every selectable entity offers a role list: an id, a name and role attributes.
pub trait RoleEntity {
    /// The entity's unique id (what `@ref` names first).
    fn id(&self) -> &str;
    /// The entity's name (what `@ref` names when no id matches).
    fn name(&self) -> &str;
    /// The entity's role attributes, without `#`.
    fn role_attributes(&self) -> &[String];
}

macro_rules! role_entity {
    ($ty:ty) => {
        impl RoleEntity for $ty {
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                &self.name
            }
            fn role_attributes(&self) -> &[String] {
                &self.role_attributes
            }
        }
    };
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// An identity: a client or server endpoint that authenticates to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Unique id.
    pub id: String,
    /// Name (unique in OpenZiti; here only used to resolve `@name`).
    pub name: String,
    /// Role attributes, without `#`.
    pub role_attributes: Vec<String>,
    /// A disabled identity is granted nothing by any query.
    pub disabled: bool,
}

impl Identity {
    /// An enabled identity whose name equals its id.
    pub fn new(id: &str, role_attributes: &[&str]) -> Self {
        Self {
            id: id.to_owned(),
            name: id.to_owned(),
            role_attributes: strings(role_attributes),
            disabled: false,
        }
    }
}

/// A service: an application reachable over the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Unique id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Role attributes, without `#`.
    pub role_attributes: Vec<String>,
}

impl Service {
    /// A service whose name equals its id.
    pub fn new(id: &str, role_attributes: &[&str]) -> Self {
        Self {
            id: id.to_owned(),
            name: id.to_owned(),
            role_attributes: strings(role_attributes),
        }
    }
}

/// An edge router: where SDKs enter the fabric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeRouter {
    /// Unique id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Role attributes, without `#`.
    pub role_attributes: Vec<String>,
}

impl EdgeRouter {
    /// An edge router whose name equals its id.
    pub fn new(id: &str, role_attributes: &[&str]) -> Self {
        Self {
            id: id.to_owned(),
            name: id.to_owned(),
            role_attributes: strings(role_attributes),
        }
    }
}

/// A posture check. Only its membership in service policies is modelled here; evaluating
/// posture data belongs elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostureCheck {
    /// Unique id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Role attributes, without `#`.
    pub role_attributes: Vec<String>,
}

impl PostureCheck {
    /// A posture check whose name equals its id.
    pub fn new(id: &str, role_attributes: &[&str]) -> Self {
        Self {
            id: id.to_owned(),
            name: id.to_owned(),
            role_attributes: strings(role_attributes),
        }
    }
}

role_entity!(Identity);
role_entity!(Service);
role_entity!(EdgeRouter);
role_entity!(PostureCheck);

/// Grants the selected identities Dial or Bind on the selected services, subject to the
/// selected posture checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePolicy {
    /// Unique id.
    pub id: String,
    /// Dial or Bind.
    pub policy_type: PolicyType,
    /// Applies to all three role lists.
    pub semantic: Semantic,
    /// `identityRoles`.
    pub identity_roles: RoleSet,
    /// `serviceRoles`.
    pub service_roles: RoleSet,
    /// `postureCheckRoles`.
    pub posture_check_roles: RoleSet,
}

/// Grants the selected identities the use of the selected edge routers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeRouterPolicy {
    /// Unique id.
    pub id: String,
    /// Applies to both role lists.
    pub semantic: Semantic,
    /// `identityRoles`.
    pub identity_roles: RoleSet,
    /// `edgeRouterRoles`.
    pub edge_router_roles: RoleSet,
}

/// Lets the selected services be reached through the selected edge routers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEdgeRouterPolicy {
    /// Unique id.
    pub id: String,
    /// Applies to both role lists.
    pub semantic: Semantic,
    /// `serviceRoles`.
    pub service_roles: RoleSet,
    /// `edgeRouterRoles`.
    pub edge_router_roles: RoleSet,
}

/// A snapshot of everything policy evaluation reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// All identities.
    pub identities: Vec<Identity>,
    /// All services.
    pub services: Vec<Service>,
    /// All edge routers.
    pub edge_routers: Vec<EdgeRouter>,
    /// All posture checks.
    pub posture_checks: Vec<PostureCheck>,
    /// All service policies.
    pub service_policies: Vec<ServicePolicy>,
    /// All edge router policies.
    pub edge_router_policies: Vec<EdgeRouterPolicy>,
    /// All service edge router policies.
    pub service_edge_router_policies: Vec<ServiceEdgeRouterPolicy>,
}

/// Why an `@ref` does not name exactly one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// No entity has this id or name.
    #[error("no entity with this id or name")]
    Unknown,
    /// No id matches and several entities have this name.
    #[error("{0} entities have this name")]
    Ambiguous(usize),
}

/// Resolves `reference` among `entities` the way OpenZiti's CLI maps `@` entries: an entity
/// whose id equals it wins; otherwise exactly one entity must carry it as its name
/// (`ziti/cmd/edge`, `mapNameToID`: "no ... found with id or name", "multiple ... found for
/// name ..., please use id instead").
pub fn resolve_ref<'e, E: RoleEntity>(
    entities: &'e [E],
    reference: &str,
) -> Result<&'e str, RefError> {
    if let Some(entity) = entities.iter().find(|e| e.id() == reference) {
        return Ok(entity.id());
    }
    let mut named = entities.iter().filter(|e| e.name() == reference);
    match (named.next(), named.count()) {
        (None, _) => Err(RefError::Unknown),
        (Some(entity), 0) => Ok(entity.id()),
        (Some(_), more) => Err(RefError::Ambiguous(more + 1)),
    }
}

/// One problem [`Model::validate`] found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// Two entities of one type share an id.
    #[error("duplicate {kind} id {id:?}")]
    DuplicateEntityId {
        /// The entity type.
        kind: EntityKind,
        /// The repeated id.
        id: String,
    },
    /// Two policies of one kind share an id.
    #[error("duplicate {kind} id {id:?}")]
    DuplicatePolicyId {
        /// "service policy", "edge router policy" or "service edge router policy".
        kind: &'static str,
        /// The repeated id.
        id: String,
    },
    /// A role attribute is empty or starts with `#` or `@` (OpenZiti: "role attributes may
    /// not be prefixed with #" / "with @", `controller/db/policy_common.go`).
    #[error("{kind} {id:?} has invalid role attribute {attribute:?}")]
    InvalidRoleAttribute {
        /// The entity type.
        kind: EntityKind,
        /// The entity's id.
        id: String,
        /// The offending attribute.
        attribute: String,
    },
    /// An `@ref` of a policy does not name exactly one entity.
    #[error("policy {policy:?}: @{reference} does not name one {kind}: {error}")]
    UnresolvedRef {
        /// The policy's id.
        policy: String,
        /// The entity type of the role list.
        kind: EntityKind,
        /// The reference, without `@`.
        reference: String,
        /// Why it does not resolve.
        error: RefError,
    },
}

impl Model {
    /// Reports duplicate ids, invalid role attributes and `@ref` entries that do not name
    /// exactly one entity: what OpenZiti refuses when an entity or policy is written
    /// ("no identities found with the given ids", `controller/db/policy_common.go`,
    /// `validateEntityIds`). An empty result means the model is valid. Evaluation does not
    /// require a valid model.
    pub fn validate(&self) -> Vec<ModelError> {
        let mut errors = Vec::new();
        check_entities(&mut errors, EntityKind::Identity, &self.identities);
        check_entities(&mut errors, EntityKind::Service, &self.services);
        check_entities(&mut errors, EntityKind::EdgeRouter, &self.edge_routers);
        check_entities(&mut errors, EntityKind::PostureCheck, &self.posture_checks);

        let sp_ids = self.service_policies.iter().map(|p| p.id.as_str());
        check_policy_ids(&mut errors, "service policy", sp_ids);
        let erp_ids = self.edge_router_policies.iter().map(|p| p.id.as_str());
        check_policy_ids(&mut errors, "edge router policy", erp_ids);
        let serp_ids = self
            .service_edge_router_policies
            .iter()
            .map(|p| p.id.as_str());
        check_policy_ids(&mut errors, "service edge router policy", serp_ids);

        for p in &self.service_policies {
            check_refs(
                &mut errors,
                &p.id,
                EntityKind::Identity,
                &p.identity_roles,
                &self.identities,
            );
            check_refs(
                &mut errors,
                &p.id,
                EntityKind::Service,
                &p.service_roles,
                &self.services,
            );
            let checks = &self.posture_checks;
            check_refs(
                &mut errors,
                &p.id,
                EntityKind::PostureCheck,
                &p.posture_check_roles,
                checks,
            );
        }
        for p in &self.edge_router_policies {
            check_refs(
                &mut errors,
                &p.id,
                EntityKind::Identity,
                &p.identity_roles,
                &self.identities,
            );
            let routers = &self.edge_routers;
            check_refs(
                &mut errors,
                &p.id,
                EntityKind::EdgeRouter,
                &p.edge_router_roles,
                routers,
            );
        }
        for p in &self.service_edge_router_policies {
            check_refs(
                &mut errors,
                &p.id,
                EntityKind::Service,
                &p.service_roles,
                &self.services,
            );
            let routers = &self.edge_routers;
            check_refs(
                &mut errors,
                &p.id,
                EntityKind::EdgeRouter,
                &p.edge_router_roles,
                routers,
            );
        }
        errors
    }
}

fn check_entities<E: RoleEntity>(errors: &mut Vec<ModelError>, kind: EntityKind, entities: &[E]) {
    let mut seen = HashSet::new();
    for entity in entities {
        if !seen.insert(entity.id()) {
            errors.push(ModelError::DuplicateEntityId {
                kind,
                id: entity.id().to_owned(),
            });
        }
        for attribute in entity.role_attributes() {
            if attribute.is_empty() || attribute.starts_with(['#', '@']) {
                errors.push(ModelError::InvalidRoleAttribute {
                    kind,
                    id: entity.id().to_owned(),
                    attribute: attribute.clone(),
                });
            }
        }
    }
}

fn check_policy_ids<'a>(
    errors: &mut Vec<ModelError>,
    kind: &'static str,
    ids: impl Iterator<Item = &'a str>,
) {
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            errors.push(ModelError::DuplicatePolicyId {
                kind,
                id: id.to_owned(),
            });
        }
    }
}

fn check_refs<E: RoleEntity>(
    errors: &mut Vec<ModelError>,
    policy: &str,
    kind: EntityKind,
    roles: &RoleSet,
    entities: &[E],
) {
    for reference in roles.refs() {
        if let Err(error) = resolve_ref(entities, reference) {
            errors.push(ModelError::UnresolvedRef {
                policy: policy.to_owned(),
                kind,
                reference: reference.clone(),
                error,
            });
        }
    }
}
