//! Attribute-based policy evaluation, sans-IO: which identity may dial or bind which
//! service, through which edge routers, under which posture checks.
//!
//! # Semantics (after OpenZiti)
//!
//! A policy has, per entity type it relates, a role list ([`RoleSet`]) of `#attr`,
//! `@ref` and `#all` entries ([`RoleSelector`]), plus one [`Semantic`] shared by all of its
//! lists. An entity is **selected** by a list when
//!
//! 1. the list holds `#all`, whatever the semantic and whatever else it holds; or
//! 2. an `@ref` entry names it (by id, else by unique name), whatever the semantic; or
//! 3. the list holds at least one `#attr` and
//!    - `AllOf`: the entity carries *every* listed attribute,
//!    - `AnyOf`: the entity carries *at least one* listed attribute.
//!
//! So an empty list selects nothing, a list of only `@ref`s selects exactly those entities
//! under `AllOf` too, and `AllOf [#a, @x]` selects `x` plus the entities that carry `a`.
//! Sources: OpenZiti `controller/db/policy_common.go`, `evaluatePolicyAgainstEntity`
//! (id listed, or `all` listed, or `AllOf` with a non-empty attribute list all contained,
//! or `AnyOf` with a non-empty list any contained); `EvaluatePolicy` reads the one
//! semantic of the policy for each of its role lists; the docs page "Policies", section
//! "Roles and Role Attributes" ("No matter the semantic, any entities which are listed by
//! `@id` will be included in the policy"; `#all` "will include all entities of a given
//! type").
//!
//! The queries ([`PolicyEvaluator`]):
//!
//! - an identity may **dial** (**bind**) a service when some Dial (Bind) service policy
//!   selects both;
//! - an identity's **edge routers** are those some edge router policy selects together
//!   with it; a service's are those some service edge router policy selects with it;
//! - the edge routers for a **session** of an identity on a service are those in both sets,
//!   and none unless the identity holds the session's permission on the service (OpenZiti
//!   `controller/model/edge_router_manager.go`, `ListForIdentityAndServiceWithTx`: routers
//!   linked to the identity and to the service; `session_manager.go` refuses a Dial or
//!   Bind session without the matching permission);
//! - the **posture checks** for an identity, a service and a type are listed per service
//!   policy of that type that selects both, including policies with no check (access is
//!   granted when every check of *any one* listed policy passes) (OpenZiti
//!   `controller/model/edge_service_manager.go`, `GetPolicyPostureChecks`, and
//!   `session_manager.go`, `EvaluatePostureForService`);
//! - a **disabled** identity, or an unknown id, gets nothing.
//!
//! Two evaluators answer these queries identically: [`NaiveEvaluator`] straight from the
//! definitions, and [`PolicyIndex`], precomputed so that each query costs about the size
//! of its answer. Property tests check them against each other.
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod index;
mod model;
mod naive;
mod selector;
mod semantic;
mod sorted;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod scale;
pub mod synthetic;
#[cfg(test)]
mod tests;

pub use index::{PolicyCollection, PolicyIndex};
pub use model::{
    EdgeRouter, EdgeRouterPolicy, EntityKind, Identity, Model, ModelError, PostureCheck, RefError,
    RoleEntity, Service, ServiceEdgeRouterPolicy, ServicePolicy, resolve_ref,
};
pub use naive::{NaiveEvaluator, selects};
pub use selector::{ALL_SELECTOR, RoleSelector, RoleSet, SelectorError};
pub use semantic::{ParseValueError, PolicyType, Semantic};

/// The posture checks one service policy attaches to an identity's access to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPostureChecks<'a> {
    /// The service policy granting the access.
    pub policy_id: &'a str,
    /// Its posture checks, sorted by id; empty when the policy requires none.
    pub posture_check_ids: Vec<&'a str>,
}

/// The access queries, answered the same by [`NaiveEvaluator`] and [`PolicyIndex`].
///
/// Every list is sorted by id and free of duplicates. Unknown ids and disabled identities
/// yield `false` or an empty list.
pub trait PolicyEvaluator {
    /// Whether `identity_id` holds `kind` permission on `service_id`.
    fn can_access(&self, identity_id: &str, service_id: &str, kind: PolicyType) -> bool;

    /// The services on which `identity_id` holds `kind` permission.
    fn services_for(&self, identity_id: &str, kind: PolicyType) -> Vec<&str>;

    /// The edge routers `identity_id` may connect to (edge router policies).
    fn edge_routers_for_identity(&self, identity_id: &str) -> Vec<&str>;

    /// The edge routers through which `service_id` may be reached (service edge router
    /// policies). Not filtered by any identity.
    fn edge_routers_for_service(&self, service_id: &str) -> Vec<&str>;

    /// The edge routers a `kind` session of `identity_id` on `service_id` may use: those of
    /// [`edge_routers_for_identity`](Self::edge_routers_for_identity) that are also in
    /// [`edge_routers_for_service`](Self::edge_routers_for_service), and none unless
    /// [`can_access`](Self::can_access) holds.
    fn edge_routers_for_session(
        &self,
        identity_id: &str,
        service_id: &str,
        kind: PolicyType,
    ) -> Vec<&str>;

    /// Per `kind` service policy granting `identity_id` access to `service_id`, its posture
    /// checks; sorted by policy id. Empty exactly when access is not granted.
    fn posture_checks_for(
        &self,
        identity_id: &str,
        service_id: &str,
        kind: PolicyType,
    ) -> Vec<PolicyPostureChecks<'_>>;

    /// `can_access(identity_id, service_id, Dial)`.
    fn can_dial(&self, identity_id: &str, service_id: &str) -> bool {
        self.can_access(identity_id, service_id, PolicyType::Dial)
    }

    /// `can_access(identity_id, service_id, Bind)`.
    fn can_bind(&self, identity_id: &str, service_id: &str) -> bool {
        self.can_access(identity_id, service_id, PolicyType::Bind)
    }

    /// `services_for(identity_id, Dial)`.
    fn dial_services(&self, identity_id: &str) -> Vec<&str> {
        self.services_for(identity_id, PolicyType::Dial)
    }

    /// `services_for(identity_id, Bind)`.
    fn bind_services(&self, identity_id: &str) -> Vec<&str> {
        self.services_for(identity_id, PolicyType::Bind)
    }
}
