//! [`PolicyIndex`]: every policy resolved once into explicit entity sets, then folded into
//! per-identity and per-service answers, so that queries cost about the size of their
//! result.
//!
//! Build, for a model with E entities and P policies:
//!
//! 1. each entity type gets a table: ids sorted (an entity's dense index is its rank, so
//!    sorted index lists read back as sorted id lists), id → index, name → index, and
//!    attribute → sorted indices;
//! 2. each role list is resolved to a sorted index list through those maps (`AllOf`:
//!    intersection of the attribute lists, smallest first; `AnyOf`: their union; plus the
//!    resolved `@ref`s; `#all`: everything);
//! 3. each identity (service) gets the sorted list of policies selecting it. Entities with
//!    the same list share one answer: the union of the policies' target sets is computed
//!    once per distinct list (a bit set over the targets) and shared by `Arc`.
//!
//! Cost: O(Σ selection sizes + distinct policy lists × targets/64), far below
//! O(policies × entities) when, as usual, many identities share their policies.

use std::collections::HashMap;
use std::sync::Arc;

use super::model::{EntityKind, Model, RoleEntity};
use super::selector::RoleSet;
use super::semantic::{PolicyType, Semantic};
use super::sorted::{BitSet, intersect, intersect_all, normalize};
use super::{PolicyEvaluator, PolicyPostureChecks};

type Shared = Arc<[u32]>;

/// What a name resolves to.
#[derive(Debug, Clone, Copy)]
enum NameHit {
    One(u32),
    Many,
}

/// One entity type, indexed.
#[derive(Debug, Default)]
struct Table {
    ids: Vec<String>,
    by_id: HashMap<String, u32>,
    by_name: HashMap<String, NameHit>,
    by_attribute: HashMap<String, Vec<u32>>,
}

impl Table {
    /// Indexes `entities`; the second value maps each dense index to its entity's position
    /// in `entities` (the first entity with a given id wins, as in the naive evaluator).
    fn build<E: RoleEntity>(entities: &[E]) -> (Self, Vec<usize>) {
        let mut order: Vec<usize> = (0..entities.len()).collect();
        let id_at = |i: &usize| entities.get(*i).map_or("", |e| e.id());
        order.sort_by(|a, b| id_at(a).cmp(id_at(b)));
        order.dedup_by(|a, b| id_at(a) == id_at(b));

        let mut table = Self::default();
        for entity in entities {
            table
                .by_name
                .entry(entity.name().to_owned())
                .and_modify(|hit| *hit = NameHit::Many)
                .or_insert(NameHit::One(u32::MAX));
        }
        for (index, entity) in order.iter().filter_map(|&i| entities.get(i)).enumerate() {
            let index = index as u32;
            table.ids.push(entity.id().to_owned());
            table.by_id.insert(entity.id().to_owned(), index);
            if let Some(hit @ NameHit::One(_)) = table.by_name.get_mut(entity.name()) {
                *hit = NameHit::One(index);
            }
            let mut attributes: Vec<&String> = entity.role_attributes().iter().collect();
            attributes.sort_unstable();
            attributes.dedup();
            for attribute in attributes {
                table
                    .by_attribute
                    .entry(attribute.clone())
                    .or_default()
                    .push(index);
            }
        }
        (table, order)
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn index(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// `@reference`: an id first, else a name carried by exactly one entity.
    fn resolve(&self, reference: &str) -> Option<u32> {
        self.index(reference)
            .or_else(|| match self.by_name.get(reference) {
                Some(NameHit::One(index)) => Some(*index),
                _ => None,
            })
    }

    /// The sorted indices `roles` selects under `semantic`.
    fn select(&self, roles: &RoleSet, semantic: Semantic) -> Vec<u32> {
        if roles.includes_all() {
            return (0..self.len() as u32).collect();
        }
        let attributes = roles.attributes();
        let mut selected = if attributes.is_empty() {
            Vec::new()
        } else {
            let lists = attributes
                .iter()
                .map(|a| self.by_attribute.get(a).map(Vec::as_slice));
            match semantic {
                Semantic::AllOf => match lists.collect::<Option<Vec<_>>>() {
                    Some(lists) => intersect_all(lists),
                    None => Vec::new(),
                },
                Semantic::AnyOf => lists.flatten().flatten().copied().collect(),
            }
        };
        selected.extend(roles.refs().iter().filter_map(|r| self.resolve(r)));
        normalize(&mut selected);
        selected
    }

    /// The ids of `indices`.
    fn ids_of(&self, indices: &[u32]) -> Vec<&str> {
        indices
            .iter()
            .filter_map(|&i| self.ids.get(i as usize))
            .map(String::as_str)
            .collect()
    }
}

/// Per member (identity or service): the policies selecting it and the union of their
/// targets, shared between members with the same policies.
struct Linked {
    policies: Vec<Shared>,
    targets: Vec<Shared>,
}

/// Folds policies (`members[p]` → `targets[p]`) into per-member answers. Members for which
/// `eligible` is false get nothing.
fn link(
    member_count: usize,
    target_count: usize,
    members: &[Vec<u32>],
    targets: &[Vec<u32>],
    eligible: impl Fn(usize) -> bool,
) -> Linked {
    let mut per_member: Vec<Vec<u32>> = vec![Vec::new(); member_count];
    for (policy, selected) in members.iter().enumerate() {
        for &m in selected {
            if let Some(list) = per_member.get_mut(m as usize) {
                list.push(policy as u32);
            }
        }
    }

    let empty: Shared = Arc::from(Vec::new());
    let mut interned: HashMap<Vec<u32>, (Shared, Shared)> = HashMap::new();
    let mut scratch = BitSet::new(target_count);
    let mut linked = Linked {
        policies: Vec::with_capacity(member_count),
        targets: Vec::with_capacity(member_count),
    };
    for (m, policies) in per_member.into_iter().enumerate() {
        if policies.is_empty() || !eligible(m) {
            linked.policies.push(empty.clone());
            linked.targets.push(empty.clone());
            continue;
        }
        let (p, t) = interned.entry(policies).or_insert_with_key(|policies| {
            for &p in policies {
                if let Some(t) = targets.get(p as usize) {
                    scratch.extend(t);
                }
            }
            (
                Arc::from(policies.as_slice()),
                Arc::from(scratch.drain_sorted()),
            )
        });
        linked.policies.push(p.clone());
        linked.targets.push(t.clone());
    }
    linked
}

/// A policy collection, for [`PolicyIndex::selects`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyCollection {
    /// Service policies (`identityRoles`, `serviceRoles`, `postureCheckRoles`).
    Service,
    /// Edge router policies (`identityRoles`, `edgeRouterRoles`).
    EdgeRouter,
    /// Service edge router policies (`serviceRoles`, `edgeRouterRoles`).
    ServiceEdgeRouter,
}

/// The policies of one collection with, per role list, the sorted entity indices it
/// selects.
#[derive(Debug, Default)]
struct Selections {
    /// Policy id → position in the lists of `sides` (the first policy with an id wins).
    by_id: HashMap<String, usize>,
    /// Per role list: the entity type it selects and, per policy, the selection.
    sides: Vec<(EntityKind, Vec<Vec<u32>>)>,
}

impl Selections {
    fn new<'p>(ids: impl IntoIterator<Item = &'p String>) -> Self {
        let mut by_id = HashMap::new();
        for (at, id) in ids.into_iter().enumerate() {
            by_id.entry(id.clone()).or_insert(at);
        }
        Self {
            by_id,
            sides: Vec::new(),
        }
    }

    fn side(mut self, kind: EntityKind, selected: Vec<Vec<u32>>) -> Self {
        self.sides.push((kind, selected));
        self
    }

    /// Whether policy `policy_id` selects the entity of `kind` with index `entity`.
    fn selects(&self, policy_id: &str, kind: EntityKind, entity: u32) -> bool {
        let Some(&at) = self.by_id.get(policy_id) else {
            return false;
        };
        self.sides
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, selected)| selected.get(at))
            .is_some_and(|s| s.binary_search(&entity).is_ok())
    }
}

fn kind_slot(kind: PolicyType) -> usize {
    match kind {
        PolicyType::Dial => 0,
        PolicyType::Bind => 1,
    }
}

/// A precomputed answer to every [`PolicyEvaluator`] query for one [`Model`] snapshot.
///
/// Owns its data (ids are copied), so the model may change after the build;
/// [`rebuild`](Self::rebuild) brings the index up to date. Queries: an id lookup, then a
/// binary search (`can_access`) or a copy of the precomputed answer (lists); the session
/// router list is an intersection of two precomputed lists.
#[derive(Debug)]
pub struct PolicyIndex {
    identities: Table,
    services: Table,
    routers: Table,
    posture_checks: Table,
    /// Service policy ids, sorted; the dense policy index is the rank.
    service_policy_ids: Vec<String>,
    service_policy_services: Vec<Vec<u32>>,
    service_policy_checks: Vec<Vec<u32>>,
    /// `[Dial, Bind]` × identity: service policies of that type selecting it.
    identity_policies: [Vec<Shared>; 2],
    /// `[Dial, Bind]` × identity: services it holds that permission on.
    identity_services: [Vec<Shared>; 2],
    identity_routers: Vec<Shared>,
    service_routers: Vec<Shared>,
    /// What each role list of each policy selects, per collection.
    selections: [Selections; 3],
}

impl Default for PolicyIndex {
    fn default() -> Self {
        Self::new(&Model::default())
    }
}

impl PolicyIndex {
    /// Indexes `model`.
    pub fn new(model: &Model) -> Self {
        let (identities, identity_order) = Table::build(&model.identities);
        let (services, _) = Table::build(&model.services);
        let (routers, _) = Table::build(&model.edge_routers);
        let (posture_checks, _) = Table::build(&model.posture_checks);
        let enabled = |m: usize| {
            identity_order
                .get(m)
                .and_then(|&i| model.identities.get(i))
                .is_some_and(|i| !i.disabled)
        };

        let mut policies: Vec<_> = model.service_policies.iter().collect();
        policies.sort_by(|a, b| a.id.cmp(&b.id));
        let service_policy_ids = policies.iter().map(|p| p.id.clone()).collect();
        let service_policy_services: Vec<Vec<u32>> = policies
            .iter()
            .map(|p| services.select(&p.service_roles, p.semantic))
            .collect();
        let service_policy_checks: Vec<Vec<u32>> = policies
            .iter()
            .map(|p| posture_checks.select(&p.posture_check_roles, p.semantic))
            .collect();
        let service_policy_identities: Vec<Vec<u32>> = policies
            .iter()
            .map(|p| identities.select(&p.identity_roles, p.semantic))
            .collect();
        let link_kind = |kind: PolicyType| {
            // Policies of the other type select nobody here, keeping indices global.
            let members: Vec<Vec<u32>> = policies
                .iter()
                .zip(&service_policy_identities)
                .map(|(p, selected)| match p.policy_type == kind {
                    true => selected.clone(),
                    false => Vec::new(),
                })
                .collect();
            link(
                identities.len(),
                services.len(),
                &members,
                &service_policy_services,
                enabled,
            )
        };
        let dial = link_kind(PolicyType::Dial);
        let bind = link_kind(PolicyType::Bind);

        let erp = &model.edge_router_policies;
        let erp_identities: Vec<_> = erp
            .iter()
            .map(|p| identities.select(&p.identity_roles, p.semantic))
            .collect();
        let erp_routers: Vec<_> = erp
            .iter()
            .map(|p| routers.select(&p.edge_router_roles, p.semantic))
            .collect();
        let identity_routers = link(
            identities.len(),
            routers.len(),
            &erp_identities,
            &erp_routers,
            enabled,
        )
        .targets;

        let serp = &model.service_edge_router_policies;
        let serp_services: Vec<_> = serp
            .iter()
            .map(|p| services.select(&p.service_roles, p.semantic))
            .collect();
        let serp_routers: Vec<_> = serp
            .iter()
            .map(|p| routers.select(&p.edge_router_roles, p.semantic))
            .collect();
        let service_routers = link(
            services.len(),
            routers.len(),
            &serp_services,
            &serp_routers,
            |_| true,
        )
        .targets;

        let selections = [
            Selections::new(policies.iter().map(|p| &p.id))
                .side(EntityKind::Identity, service_policy_identities)
                .side(EntityKind::Service, service_policy_services.clone())
                .side(EntityKind::PostureCheck, service_policy_checks.clone()),
            Selections::new(erp.iter().map(|p| &p.id))
                .side(EntityKind::Identity, erp_identities)
                .side(EntityKind::EdgeRouter, erp_routers),
            Selections::new(serp.iter().map(|p| &p.id))
                .side(EntityKind::Service, serp_services)
                .side(EntityKind::EdgeRouter, serp_routers),
        ];

        Self {
            identities,
            services,
            routers,
            posture_checks,
            service_policy_ids,
            service_policy_services,
            service_policy_checks,
            identity_policies: [dial.policies, bind.policies],
            identity_services: [dial.targets, bind.targets],
            identity_routers,
            service_routers,
            selections,
        }
    }

    /// Whether the role list for `kind` of policy `policy_id` (of `policies`) selects the
    /// entity `entity_id`: by `#all`, an `@ref`, or its attributes under the policy's
    /// semantic, exactly as the queries of [`PolicyEvaluator`] read it. `false` when the
    /// policy or the entity is unknown or the policies have no role list for `kind`.
    ///
    /// This is selection only: a disabled identity is selected like any other (it is the
    /// permission queries that give it nothing).
    pub fn selects(
        &self,
        policies: PolicyCollection,
        policy_id: &str,
        kind: EntityKind,
        entity_id: &str,
    ) -> bool {
        let table = match kind {
            EntityKind::Identity => &self.identities,
            EntityKind::Service => &self.services,
            EntityKind::EdgeRouter => &self.routers,
            EntityKind::PostureCheck => &self.posture_checks,
        };
        let Some(entity) = table.index(entity_id) else {
            return false;
        };
        let slot = match policies {
            PolicyCollection::Service => 0,
            PolicyCollection::EdgeRouter => 1,
            PolicyCollection::ServiceEdgeRouter => 2,
        };
        self.selections
            .get(slot)
            .is_some_and(|s| s.selects(policy_id, kind, entity))
    }

    /// Recomputes the index from `model` (a full rebuild).
    pub fn rebuild(&mut self, model: &Model) {
        *self = Self::new(model);
    }

    fn identity_list<'a>(&self, lists: &'a [Shared], identity_id: &str) -> &'a [u32] {
        self.identities
            .index(identity_id)
            .and_then(|i| lists.get(i as usize))
            .map_or(&[], |l| &l[..])
    }

    fn service_routers_of(&self, service_id: &str) -> &[u32] {
        self.services
            .index(service_id)
            .and_then(|s| self.service_routers.get(s as usize))
            .map_or(&[], |l| &l[..])
    }

    fn kind_lists(lists: &[Vec<Shared>; 2], kind: PolicyType) -> &[Shared] {
        lists.get(kind_slot(kind)).map_or(&[], Vec::as_slice)
    }
}

impl PolicyEvaluator for PolicyIndex {
    fn can_access(&self, identity_id: &str, service_id: &str, kind: PolicyType) -> bool {
        let Some(service) = self.services.index(service_id) else {
            return false;
        };
        let lists = Self::kind_lists(&self.identity_services, kind);
        self.identity_list(lists, identity_id)
            .binary_search(&service)
            .is_ok()
    }

    fn services_for(&self, identity_id: &str, kind: PolicyType) -> Vec<&str> {
        let lists = Self::kind_lists(&self.identity_services, kind);
        self.services.ids_of(self.identity_list(lists, identity_id))
    }

    fn edge_routers_for_identity(&self, identity_id: &str) -> Vec<&str> {
        self.routers
            .ids_of(self.identity_list(&self.identity_routers, identity_id))
    }

    fn edge_routers_for_service(&self, service_id: &str) -> Vec<&str> {
        self.routers.ids_of(self.service_routers_of(service_id))
    }

    fn edge_routers_for_session(
        &self,
        identity_id: &str,
        service_id: &str,
        kind: PolicyType,
    ) -> Vec<&str> {
        if !self.can_access(identity_id, service_id, kind) {
            return Vec::new();
        }
        let for_identity = self.identity_list(&self.identity_routers, identity_id);
        let common = intersect(for_identity, self.service_routers_of(service_id));
        self.routers.ids_of(&common)
    }

    fn posture_checks_for(
        &self,
        identity_id: &str,
        service_id: &str,
        kind: PolicyType,
    ) -> Vec<PolicyPostureChecks<'_>> {
        let Some(service) = self.services.index(service_id) else {
            return Vec::new();
        };
        let lists = Self::kind_lists(&self.identity_policies, kind);
        self.identity_list(lists, identity_id)
            .iter()
            .filter_map(|&p| {
                let p = p as usize;
                let services = self.service_policy_services.get(p)?;
                services.binary_search(&service).ok()?;
                Some(PolicyPostureChecks {
                    policy_id: self.service_policy_ids.get(p)?.as_str(),
                    posture_check_ids: self
                        .posture_checks
                        .ids_of(self.service_policy_checks.get(p)?),
                })
            })
            .collect()
    }
}
