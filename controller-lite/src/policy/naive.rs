//! The reference evaluator: every query re-reads the model and applies the definitions
//! of [`crate::policy`] literally, with no caching. Cost O(policies × entities) per query;
//! meant for tests and as the oracle of [`PolicyIndex`](super::PolicyIndex).

use super::model::{Identity, Model, RoleEntity, Service, resolve_ref};
use super::selector::RoleSet;
use super::semantic::{PolicyType, Semantic};
use super::{PolicyEvaluator, PolicyPostureChecks};

/// Answers [`PolicyEvaluator`] queries straight from a borrowed [`Model`].
#[derive(Debug, Clone, Copy)]
pub struct NaiveEvaluator<'m> {
    model: &'m Model,
}

/// Whether `roles`, under `semantic`, selects `entity` out of `entities` (the rule of
/// OpenZiti's `evaluatePolicyAgainstEntity`: `#all`, or a reference, or a non-empty
/// attribute list satisfied per the semantic).
/// Whether `roles` (with `semantic`) select `entity`, one of `entities` (which `@ref`s
/// resolve against): the definition the index is held equal to.
pub fn selects<E: RoleEntity>(
    roles: &RoleSet,
    semantic: Semantic,
    entities: &[E],
    entity: &E,
) -> bool {
    if roles.includes_all() {
        return true;
    }
    if roles
        .refs()
        .iter()
        .any(|r| resolve_ref(entities, r).is_ok_and(|id| id == entity.id()))
    {
        return true;
    }
    let has = |attribute: &String| entity.role_attributes().contains(attribute);
    let attributes = roles.attributes();
    !attributes.is_empty()
        && match semantic {
            Semantic::AllOf => attributes.iter().all(has),
            Semantic::AnyOf => attributes.iter().any(has),
        }
}

impl<'m> NaiveEvaluator<'m> {
    /// An evaluator over `model`.
    pub fn new(model: &'m Model) -> Self {
        Self { model }
    }

    /// The enabled identity with this id.
    fn identity(&self, id: &str) -> Option<&'m Identity> {
        self.model
            .identities
            .iter()
            .find(|i| i.id == id)
            .filter(|i| !i.disabled)
    }

    fn service(&self, id: &str) -> Option<&'m Service> {
        self.model.services.iter().find(|s| s.id == id)
    }

    fn granted(&self, identity: &Identity, service: &Service, kind: PolicyType) -> bool {
        let m = self.model;
        m.service_policies.iter().any(|p| {
            p.policy_type == kind
                && selects(&p.identity_roles, p.semantic, &m.identities, identity)
                && selects(&p.service_roles, p.semantic, &m.services, service)
        })
    }

    fn identity_routers(&self, identity: &Identity) -> Vec<&'m str> {
        let m = self.model;
        let mut out: Vec<&str> = m
            .edge_routers
            .iter()
            .filter(|r| {
                m.edge_router_policies.iter().any(|p| {
                    selects(&p.identity_roles, p.semantic, &m.identities, identity)
                        && selects(&p.edge_router_roles, p.semantic, &m.edge_routers, *r)
                })
            })
            .map(|r| r.id.as_str())
            .collect();
        sort_dedup(&mut out);
        out
    }

    fn service_routers(&self, service: &Service) -> Vec<&'m str> {
        let m = self.model;
        let mut out: Vec<&str> = m
            .edge_routers
            .iter()
            .filter(|r| {
                m.service_edge_router_policies.iter().any(|p| {
                    selects(&p.service_roles, p.semantic, &m.services, service)
                        && selects(&p.edge_router_roles, p.semantic, &m.edge_routers, *r)
                })
            })
            .map(|r| r.id.as_str())
            .collect();
        sort_dedup(&mut out);
        out
    }
}

fn sort_dedup(ids: &mut Vec<&str>) {
    ids.sort_unstable();
    ids.dedup();
}

impl PolicyEvaluator for NaiveEvaluator<'_> {
    fn can_access(&self, identity_id: &str, service_id: &str, kind: PolicyType) -> bool {
        match (self.identity(identity_id), self.service(service_id)) {
            (Some(identity), Some(service)) => self.granted(identity, service, kind),
            _ => false,
        }
    }

    fn services_for(&self, identity_id: &str, kind: PolicyType) -> Vec<&str> {
        let Some(identity) = self.identity(identity_id) else {
            return Vec::new();
        };
        let mut out: Vec<&str> = self
            .model
            .services
            .iter()
            .filter(|s| self.granted(identity, s, kind))
            .map(|s| s.id.as_str())
            .collect();
        sort_dedup(&mut out);
        out
    }

    fn edge_routers_for_identity(&self, identity_id: &str) -> Vec<&str> {
        self.identity(identity_id)
            .map(|i| self.identity_routers(i))
            .unwrap_or_default()
    }

    fn edge_routers_for_service(&self, service_id: &str) -> Vec<&str> {
        self.service(service_id)
            .map(|s| self.service_routers(s))
            .unwrap_or_default()
    }

    fn edge_routers_for_session(
        &self,
        identity_id: &str,
        service_id: &str,
        kind: PolicyType,
    ) -> Vec<&str> {
        let (Some(identity), Some(service)) =
            (self.identity(identity_id), self.service(service_id))
        else {
            return Vec::new();
        };
        if !self.granted(identity, service, kind) {
            return Vec::new();
        }
        let for_service = self.service_routers(service);
        self.identity_routers(identity)
            .into_iter()
            .filter(|r| for_service.contains(r))
            .collect()
    }

    fn posture_checks_for(
        &self,
        identity_id: &str,
        service_id: &str,
        kind: PolicyType,
    ) -> Vec<PolicyPostureChecks<'_>> {
        let (Some(identity), Some(service)) =
            (self.identity(identity_id), self.service(service_id))
        else {
            return Vec::new();
        };
        let m = self.model;
        let mut out: Vec<PolicyPostureChecks<'_>> = m
            .service_policies
            .iter()
            .filter(|p| {
                p.policy_type == kind
                    && selects(&p.identity_roles, p.semantic, &m.identities, identity)
                    && selects(&p.service_roles, p.semantic, &m.services, service)
            })
            .map(|p| {
                let mut checks: Vec<&str> = m
                    .posture_checks
                    .iter()
                    .filter(|c| selects(&p.posture_check_roles, p.semantic, &m.posture_checks, *c))
                    .map(|c| c.id.as_str())
                    .collect();
                sort_dedup(&mut checks);
                PolicyPostureChecks {
                    policy_id: p.id.as_str(),
                    posture_check_ids: checks,
                }
            })
            .collect();
        out.sort_by(|a, b| a.policy_id.cmp(b.policy_id));
        out
    }
}
