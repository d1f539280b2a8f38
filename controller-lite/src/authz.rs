//! Authorization queries the APIs need. [`PolicyView`] is the seam; [`StorePolicyView`]
//! answers from the store through the indexed evaluator of [`crate::policy`].

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::error::StoreError;
use crate::model::{EdgeRouterPolicy, Kind, PolicyType, ServiceEdgeRouterPolicy, ServicePolicy};
use crate::policy::{self, PolicyEvaluator, PolicyIndex, RoleSelector, RoleSet};
use crate::store::{EntityRow, Store};

/// Policy queries: which services an identity may dial/bind and which edge
/// routers it may use.
pub trait PolicyView {
    /// Service id → permissions of `identity_id`.
    fn service_permissions(
        &self,
        identity_id: &str,
    ) -> Result<BTreeMap<String, BTreeSet<PolicyType>>, StoreError>;
    /// Edge routers `identity_id` may connect to (edge router policies), by name.
    fn edge_routers_for_identity(&self, identity_id: &str) -> Result<Vec<EntityRow>, StoreError>;
    /// Edge routers for a session of `identity_id` on `service_id`: granted by an
    /// edge router policy for the identity and a service edge router policy for
    /// the service (the service permission itself is checked separately).
    fn edge_routers_for_session(
        &self,
        identity_id: &str,
        service_id: &str,
    ) -> Result<Vec<EntityRow>, StoreError>;
}

/// [`PolicyView`] over the store: loads the entities and policies, indexes them with
/// [`PolicyIndex`] (the evaluator that the property tests hold equal to the naive
/// definition) and answers from the index.
#[derive(Debug, Clone, Copy)]
pub struct StorePolicyView<'a> {
    store: &'a Store,
}

impl<'a> StorePolicyView<'a> {
    /// Creates a view over `store`.
    pub fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Service permissions of each of `identity_ids` (identity → service → Dial/Bind),
    /// indexing the model once.
    pub fn permissions_of<'i>(
        &self,
        identity_ids: impl IntoIterator<Item = &'i str>,
    ) -> Result<BTreeMap<String, BTreeMap<String, BTreeSet<PolicyType>>>, StoreError> {
        let (index, _) = self.index()?;
        let mut out: BTreeMap<String, BTreeMap<String, BTreeSet<PolicyType>>> = BTreeMap::new();
        for identity_id in identity_ids {
            let perms = out.entry(identity_id.to_owned()).or_default();
            for kind in [PolicyType::Dial, PolicyType::Bind] {
                for service in index.services_for(identity_id, kind) {
                    perms.entry(service.to_owned()).or_default().insert(kind);
                }
            }
        }
        Ok(out)
    }

    /// Loads the policy model from the store and indexes it.
    fn index(&self) -> Result<(PolicyIndex, Vec<EntityRow>), StoreError> {
        let identities = self
            .store
            .list_all(Kind::Identities.collection())?
            .iter()
            .map(|e| policy::Identity {
                id: e.id.clone(),
                name: e.name.clone(),
                role_attributes: attrs(e),
                disabled: flag(e, "disabled"),
            })
            .collect();
        let services = self
            .store
            .list_all(Kind::Services.collection())?
            .iter()
            .map(|e| policy::Service {
                id: e.id.clone(),
                name: e.name.clone(),
                role_attributes: attrs(e),
            })
            .collect();
        // Disabled routers are left out of the model, so no policy can select them.
        let routers: Vec<EntityRow> = self
            .store
            .list_all(Kind::EdgeRouters.collection())?
            .into_iter()
            .filter(|r| !flag(r, "disabled"))
            .collect();
        let edge_routers = routers
            .iter()
            .map(|e| policy::EdgeRouter {
                id: e.id.clone(),
                name: e.name.clone(),
                role_attributes: attrs(e),
            })
            .collect();
        let service_policies = docs::<ServicePolicy>(self.store, Kind::ServicePolicies)?
            .into_iter()
            .map(|(id, p)| policy::ServicePolicy {
                id,
                policy_type: p.policy_type,
                semantic: p.semantic,
                identity_roles: roles(&p.identity_roles),
                service_roles: roles(&p.service_roles),
                posture_check_roles: roles(&p.posture_check_roles),
            })
            .collect();
        let edge_router_policies = docs::<EdgeRouterPolicy>(self.store, Kind::EdgeRouterPolicies)?
            .into_iter()
            .map(|(id, p)| policy::EdgeRouterPolicy {
                id,
                semantic: p.semantic,
                identity_roles: roles(&p.identity_roles),
                edge_router_roles: roles(&p.edge_router_roles),
            })
            .collect();
        let service_edge_router_policies =
            docs::<ServiceEdgeRouterPolicy>(self.store, Kind::ServiceEdgeRouterPolicies)?
                .into_iter()
                .map(|(id, p)| policy::ServiceEdgeRouterPolicy {
                    id,
                    semantic: p.semantic,
                    service_roles: roles(&p.service_roles),
                    edge_router_roles: roles(&p.edge_router_roles),
                })
                .collect();
        let model = policy::Model {
            identities,
            services,
            edge_routers,
            posture_checks: Vec::new(),
            service_policies,
            edge_router_policies,
            service_edge_router_policies,
        };
        Ok((PolicyIndex::new(&model), routers))
    }
}

fn attrs(e: &EntityRow) -> Vec<String> {
    e.data
        .get("roleAttributes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn flag(e: &EntityRow, name: &str) -> bool {
    e.data.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// Role lists were validated when stored; an entry that no longer parses selects
/// nothing rather than failing every query.
fn roles(entries: &[String]) -> RoleSet {
    RoleSet::parse(entries).unwrap_or_else(|_| {
        RoleSet::from_selectors(entries.iter().filter_map(|e| RoleSelector::parse(e).ok()))
    })
}

/// The policy documents of `kind` with their ids.
fn docs<T: serde::de::DeserializeOwned>(
    store: &Store,
    kind: Kind,
) -> Result<Vec<(String, T)>, StoreError> {
    store
        .list_all(kind.collection())?
        .into_iter()
        .map(|e| {
            Ok((
                e.id,
                serde_json::from_value(e.data).map_err(StoreError::from)?,
            ))
        })
        .collect()
}

fn rows_of(routers: Vec<EntityRow>, ids: &[&str]) -> Vec<EntityRow> {
    routers
        .into_iter()
        .filter(|r| ids.binary_search(&r.id.as_str()).is_ok())
        .collect()
}

impl PolicyView for StorePolicyView<'_> {
    fn service_permissions(
        &self,
        identity_id: &str,
    ) -> Result<BTreeMap<String, BTreeSet<PolicyType>>, StoreError> {
        let (index, _) = self.index()?;
        let mut out: BTreeMap<String, BTreeSet<PolicyType>> = BTreeMap::new();
        for kind in [PolicyType::Dial, PolicyType::Bind] {
            for service in index.services_for(identity_id, kind) {
                out.entry(service.to_owned()).or_default().insert(kind);
            }
        }
        Ok(out)
    }

    fn edge_routers_for_identity(&self, identity_id: &str) -> Result<Vec<EntityRow>, StoreError> {
        let (index, routers) = self.index()?;
        Ok(rows_of(
            routers,
            &index.edge_routers_for_identity(identity_id),
        ))
    }

    fn edge_routers_for_session(
        &self,
        identity_id: &str,
        service_id: &str,
    ) -> Result<Vec<EntityRow>, StoreError> {
        let (index, routers) = self.index()?;
        let mut ids = index.edge_routers_for_identity(identity_id);
        let for_service = index.edge_routers_for_service(service_id);
        ids.retain(|id| for_service.binary_search(id).is_ok());
        Ok(rows_of(routers, &ids))
    }
}
