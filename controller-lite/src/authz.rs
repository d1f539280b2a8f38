//! Authorization queries the APIs need. [`PolicyView`] is the seam for the
//! indexed policy evaluator (module `policy`, written separately);
//! [`StorePolicyView`] answers the same queries directly from the store.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::error::StoreError;
use crate::model::{
    EdgeRouterPolicy, Kind, PolicyType, Semantic, ServiceEdgeRouterPolicy, ServicePolicy,
};
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

/// [`PolicyView`] that loads entities from the store on every query and
/// evaluates role selectors naively.
#[derive(Debug, Clone, Copy)]
pub struct StorePolicyView<'a> {
    store: &'a Store,
}

impl<'a> StorePolicyView<'a> {
    /// Creates a view over `store`.
    pub fn new(store: &'a Store) -> Self {
        Self { store }
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

/// True when entity `e` is selected by `roles` under `semantic`:
/// `#all` selects everything; `@id` (or `@name`) selects that entity; the
/// `#attr` selectors must all (AllOf) or any (AnyOf) be among its attributes.
pub fn selects(roles: &[String], semantic: Semantic, e: &EntityRow) -> bool {
    if roles.iter().any(|r| r == "#all") {
        return true;
    }
    if roles.iter().any(|r| {
        r.strip_prefix('@')
            .is_some_and(|x| x == e.id || x == e.name)
    }) {
        return true;
    }
    let wanted: Vec<&str> = roles.iter().filter_map(|r| r.strip_prefix('#')).collect();
    if wanted.is_empty() {
        return false;
    }
    let have = attrs(e);
    let has = |a: &&str| have.iter().any(|h| h == a);
    match semantic {
        Semantic::AllOf => wanted.iter().all(has),
        Semantic::AnyOf => wanted.iter().any(has),
    }
}

fn docs<T: serde::de::DeserializeOwned>(store: &Store, kind: Kind) -> Result<Vec<T>, StoreError> {
    store
        .list_all(kind.collection())?
        .into_iter()
        .map(|e| serde_json::from_value(e.data).map_err(StoreError::from))
        .collect()
}

fn disabled(e: &EntityRow) -> bool {
    e.data
        .get("disabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

impl StorePolicyView<'_> {
    fn identity(&self, id: &str) -> Result<Option<EntityRow>, StoreError> {
        self.store.get_entity(Kind::Identities.collection(), id)
    }
}

impl PolicyView for StorePolicyView<'_> {
    fn service_permissions(
        &self,
        identity_id: &str,
    ) -> Result<BTreeMap<String, BTreeSet<PolicyType>>, StoreError> {
        let mut out: BTreeMap<String, BTreeSet<PolicyType>> = BTreeMap::new();
        let Some(identity) = self.identity(identity_id)? else {
            return Ok(out);
        };
        let services = self.store.list_all(Kind::Services.collection())?;
        for p in docs::<ServicePolicy>(self.store, Kind::ServicePolicies)? {
            if !selects(&p.identity_roles, p.semantic, &identity) {
                continue;
            }
            for s in services
                .iter()
                .filter(|s| selects(&p.service_roles, p.semantic, s))
            {
                out.entry(s.id.clone()).or_default().insert(p.policy_type);
            }
        }
        Ok(out)
    }

    fn edge_routers_for_identity(&self, identity_id: &str) -> Result<Vec<EntityRow>, StoreError> {
        let Some(identity) = self.identity(identity_id)? else {
            return Ok(Vec::new());
        };
        let routers = self.store.list_all(Kind::EdgeRouters.collection())?;
        let policies = docs::<EdgeRouterPolicy>(self.store, Kind::EdgeRouterPolicies)?;
        Ok(routers
            .into_iter()
            .filter(|r| !disabled(r))
            .filter(|r| {
                policies.iter().any(|p| {
                    selects(&p.identity_roles, p.semantic, &identity)
                        && selects(&p.edge_router_roles, p.semantic, r)
                })
            })
            .collect())
    }

    fn edge_routers_for_session(
        &self,
        identity_id: &str,
        service_id: &str,
    ) -> Result<Vec<EntityRow>, StoreError> {
        let Some(service) = self
            .store
            .get_entity(Kind::Services.collection(), service_id)?
        else {
            return Ok(Vec::new());
        };
        let serps = docs::<ServiceEdgeRouterPolicy>(self.store, Kind::ServiceEdgeRouterPolicies)?;
        Ok(self
            .edge_routers_for_identity(identity_id)?
            .into_iter()
            .filter(|r| {
                serps.iter().any(|p| {
                    selects(&p.service_roles, p.semantic, &service)
                        && selects(&p.edge_router_roles, p.semantic, r)
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ent(id: &str, attrs: &[&str]) -> EntityRow {
        EntityRow {
            kind: "identities".into(),
            id: id.into(),
            name: format!("n-{id}"),
            tags: json!({}),
            data: json!({"roleAttributes": attrs}),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn selector_semantics() {
        let e = ent("x", &["a", "b"]);
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(selects(&r(&["#all"]), Semantic::AllOf, &e));
        assert!(selects(&r(&["#a", "#b"]), Semantic::AllOf, &e));
        assert!(!selects(&r(&["#a", "#c"]), Semantic::AllOf, &e));
        assert!(selects(&r(&["#a", "#c"]), Semantic::AnyOf, &e));
        assert!(selects(&r(&["@x"]), Semantic::AllOf, &e));
        assert!(selects(&r(&["@n-x"]), Semantic::AllOf, &e));
        assert!(!selects(&r(&[]), Semantic::AnyOf, &e));
        assert!(!selects(&r(&["@y"]), Semantic::AnyOf, &e));
    }
}
