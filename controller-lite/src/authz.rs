//! Authorization queries the APIs need, answered from a [`PolicySnapshot`] of the store
//! indexed by [`crate::policy`], cached in a [`PolicyCache`] until an entity changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::error::StoreError;
use crate::model::{
    Document, EdgeRouter, EdgeRouterPolicy, Identity, Kind, PolicyType, Service,
    ServiceEdgeRouterPolicy, ServicePolicy, StoredPostureCheck,
};
use crate::policy::{
    self, EntityKind, PolicyCollection, PolicyEvaluator, PolicyIndex, RoleSelector, RoleSet,
};
use crate::posture::{self, Judged, PolicyVerdict, PostureCheck, PostureData, SessionPosture};
use crate::store::{EntityRow, Store};

/// Service id → the permissions held on it.
pub type Permissions = BTreeMap<String, BTreeSet<PolicyType>>;

/// The policy model of the store at one moment, indexed with [`PolicyIndex`] (the
/// evaluator that the property tests hold equal to the naive definition), plus the
/// enabled edge routers so answers can be rendered without another store read.
#[derive(Debug)]
pub struct PolicySnapshot {
    index: PolicyIndex,
    /// Enabled edge routers, in the store's order (the order answers keep).
    routers: Vec<EntityRow>,
    /// Router id -> position in `routers`.
    router_at: HashMap<String, usize>,
    /// Posture checks by id.
    checks: HashMap<String, CheckEntry>,
}

/// What makes posture verdicts change with time alone ([`PolicySnapshot::timed_posture`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimedPosture {
    /// MFA checks' timeouts (seconds).
    pub mfa_timeouts: BTreeSet<i64>,
    /// An MFA check asks again after a wake.
    pub wake: bool,
    /// An MFA check asks again after an unlock.
    pub unlock: bool,
}

/// A posture check as the snapshot holds it.
#[derive(Debug)]
pub struct CheckEntry {
    /// Name.
    pub name: String,
    /// The definition; `None` when the stored document is unreadable (it never passes).
    pub check: Option<PostureCheck>,
    /// Creation time.
    pub created_at: String,
    /// Update time.
    pub updated_at: String,
}

/// The current [`PolicySnapshot`], rebuilt only when an entity changed since it was
/// built (the store's entity generation moved), so a request or a router sync does not
/// reload and re-index the whole model.
#[derive(Debug, Default)]
pub struct PolicyCache {
    current: tokio::sync::Mutex<Option<(i64, Arc<PolicySnapshot>)>>,
}

impl PolicyCache {
    /// The snapshot for the store as it is now.
    ///
    /// The key is the store's entity revision, read from the database, so a change
    /// committed by another controller on the same database is seen at once too.
    pub async fn get(&self, store: &Store) -> Result<Arc<PolicySnapshot>, StoreError> {
        let mut current = self.current.lock().await;
        // Read the revision before loading: a write that lands meanwhile moves it
        // again, so the next call rebuilds; a snapshot is never older than its tag.
        let generation = store.entity_revision().await?;
        if let Some((built, snapshot)) = current.as_ref() {
            if *built == generation {
                return Ok(Arc::clone(snapshot));
            }
        }
        let snapshot = Arc::new(PolicySnapshot::load(store).await?);
        *current = Some((generation, Arc::clone(&snapshot)));
        Ok(snapshot)
    }
}

impl PolicySnapshot {
    /// Service permissions of `identity_id`.
    pub fn service_permissions(&self, identity_id: &str) -> Permissions {
        let mut out = Permissions::new();
        for kind in [PolicyType::Dial, PolicyType::Bind] {
            for service in self.index.services_for(identity_id, kind) {
                out.entry(service.to_owned()).or_default().insert(kind);
            }
        }
        out
    }

    /// Whether a service policy grants `identity_id` `kind` on `service_id`.
    pub fn grants(&self, identity_id: &str, service_id: &str, kind: PolicyType) -> bool {
        self.index.can_access(identity_id, service_id, kind)
    }

    /// Service permissions of each of `identity_ids`.
    pub fn permissions_of<'i>(
        &self,
        identity_ids: impl IntoIterator<Item = &'i str>,
    ) -> BTreeMap<String, Permissions> {
        identity_ids
            .into_iter()
            .map(|id| (id.to_owned(), self.service_permissions(id)))
            .collect()
    }

    /// Edge routers `identity_id` may connect to (edge router policies).
    pub fn edge_routers_for_identity(&self, identity_id: &str) -> Vec<&EntityRow> {
        self.rows_of(&self.index.edge_routers_for_identity(identity_id))
    }

    /// Ids of the enabled edge routers `identity_id` may connect to, sorted.
    pub fn router_ids_for_identity(&self, identity_id: &str) -> Vec<String> {
        self.enabled_ids(self.index.edge_routers_for_identity(identity_id))
    }

    /// Ids of the enabled edge routers through which `service_id` may be reached
    /// (service edge router policies), sorted.
    pub fn router_ids_for_service(&self, service_id: &str) -> Vec<String> {
        self.enabled_ids(self.index.edge_routers_for_service(service_id))
    }

    /// Edge routers through which `service_id` may be reached (service edge router
    /// policies), in the store's order.
    pub fn edge_routers_for_service(&self, service_id: &str) -> Vec<&EntityRow> {
        self.rows_of(&self.index.edge_routers_for_service(service_id))
    }

    /// The `kind` service policies granting `identity_id` access to `service_id`, each
    /// with the ids of the posture checks it attaches; sorted by policy id, empty
    /// exactly when access is not granted.
    pub fn granting_policies(
        &self,
        identity_id: &str,
        service_id: &str,
        kind: PolicyType,
    ) -> Vec<policy::PolicyPostureChecks<'_>> {
        self.index.posture_checks_for(identity_id, service_id, kind)
    }

    /// Whether the policy `policy_id` of kind `policies` (service, edge router or service
    /// edge router policies) selects the entity `entity_id` of kind `entity` through its
    /// role list for that kind, as the policy engine evaluates it ([`PolicyIndex::selects`]).
    /// `false` for any other pair of kinds. Disabled identities are selected like others;
    /// disabled edge routers are not in the model, so never.
    pub fn policy_selects(
        &self,
        policies: Kind,
        policy_id: &str,
        entity: Kind,
        entity_id: &str,
    ) -> bool {
        let collection = match policies {
            Kind::ServicePolicies => PolicyCollection::Service,
            Kind::EdgeRouterPolicies => PolicyCollection::EdgeRouter,
            Kind::ServiceEdgeRouterPolicies => PolicyCollection::ServiceEdgeRouter,
            _ => return false,
        };
        let kind = match entity {
            Kind::Identities => EntityKind::Identity,
            Kind::Services => EntityKind::Service,
            Kind::EdgeRouters => EntityKind::EdgeRouter,
            Kind::PostureChecks => EntityKind::PostureCheck,
            _ => return false,
        };
        self.index.selects(collection, policy_id, kind, entity_id)
    }

    /// Whether any posture check exists.
    pub fn has_posture_checks(&self) -> bool {
        !self.checks.is_empty()
    }

    /// What makes posture verdicts change with time alone: the MFA checks' timeouts
    /// (distinct, in seconds) and whether any asks again after a wake or an unlock.
    /// Every other check's verdict changes only with logged data.
    pub fn timed_posture(&self) -> TimedPosture {
        let mut t = TimedPosture::default();
        for entry in self.checks.values() {
            if let Some(PostureCheck::Mfa {
                timeout_seconds,
                prompt_on_wake,
                prompt_on_unlock,
                ..
            }) = &entry.check
            {
                if *timeout_seconds > 0 {
                    t.mfa_timeouts.insert(*timeout_seconds);
                }
                t.wake |= *prompt_on_wake;
                t.unlock |= *prompt_on_unlock;
            }
        }
        t
    }

    /// The posture check `id`.
    pub fn posture_check(&self, id: &str) -> Option<&CheckEntry> {
        self.checks.get(id)
    }

    /// The service policies granting `identity_id` `kind` on `service_id`, each with its
    /// posture checks judged against `data` and `session` at `now` (Unix seconds).
    /// Access passes when any of them passes ([`crate::posture::any_passing`]).
    pub fn posture_verdicts(
        &self,
        identity_id: &str,
        service_id: &str,
        kind: PolicyType,
        data: &PostureData,
        session: &SessionPosture,
        now: i64,
    ) -> Vec<PolicyVerdict<'_>> {
        self.index
            .posture_checks_for(identity_id, service_id, kind)
            .into_iter()
            .map(|p| PolicyVerdict {
                policy_id: p.policy_id,
                checks: p
                    .posture_check_ids
                    .into_iter()
                    .map(|id| {
                        let (name, check) = self
                            .checks
                            .get(id)
                            .map_or(("", None), |c| (c.name.as_str(), c.check.as_ref()));
                        Judged {
                            id,
                            name,
                            check,
                            passing: check
                                .is_some_and(|c| posture::eval::passes(c, data, session, now)),
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    fn enabled_ids(&self, ids: Vec<&str>) -> Vec<String> {
        let mut ids: Vec<String> = ids
            .into_iter()
            .filter(|id| self.router_at.contains_key(*id))
            .map(str::to_owned)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Edge routers for a session of `identity_id` on `service_id`: granted by an edge
    /// router policy for the identity and a service edge router policy for the service
    /// (the service permission itself is checked separately).
    pub fn edge_routers_for_session(&self, identity_id: &str, service_id: &str) -> Vec<&EntityRow> {
        let mut ids = self.index.edge_routers_for_identity(identity_id);
        let for_service = self.index.edge_routers_for_service(service_id);
        ids.retain(|id| for_service.binary_search(id).is_ok());
        self.rows_of(&ids)
    }

    /// The router rows of `ids`, in the store's order.
    fn rows_of(&self, ids: &[&str]) -> Vec<&EntityRow> {
        let mut at: Vec<usize> = ids
            .iter()
            .filter_map(|id| self.router_at.get(*id).copied())
            .collect();
        at.sort_unstable();
        at.iter().filter_map(|i| self.routers.get(*i)).collect()
    }

    /// Loads the policy model from the store and indexes it.
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let identities = store
            .entities::<Identity>()
            .await?
            .into_iter()
            .map(|e| policy::Identity {
                id: e.id,
                name: e.name,
                role_attributes: e.doc.role_attributes,
                // Documents from before timed disables. A disable now (`disabledAt`, which
                // may end by itself) ends the identity's API sessions and refuses its
                // logins; the view judges that at each sync, not this index.
                disabled: e.doc.disabled == Some(true),
            })
            .collect();
        let services = store
            .entities::<Service>()
            .await?
            .into_iter()
            .map(|e| policy::Service {
                id: e.id,
                name: e.name,
                role_attributes: e.doc.role_attributes,
            })
            .collect();
        // Disabled routers are left out of the model, so no policy can select them.
        let mut routers: Vec<EntityRow> = Vec::new();
        for r in store.list_all(Kind::EdgeRouters.collection()).await? {
            if !r.doc::<EdgeRouter>()?.disabled {
                routers.push(r);
            }
        }
        let edge_routers = routers
            .iter()
            .map(|e| policy::EdgeRouter {
                id: e.id.clone(),
                name: e.name.clone(),
                role_attributes: e.role_attributes(),
            })
            .collect();
        let service_policies = docs::<ServicePolicy>(store)
            .await?
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
        let edge_router_policies = docs::<EdgeRouterPolicy>(store)
            .await?
            .into_iter()
            .map(|(id, p)| policy::EdgeRouterPolicy {
                id,
                semantic: p.semantic,
                identity_roles: roles(&p.identity_roles),
                edge_router_roles: roles(&p.edge_router_roles),
            })
            .collect();
        let service_edge_router_policies = docs::<ServiceEdgeRouterPolicy>(store)
            .await?
            .into_iter()
            .map(|(id, p)| policy::ServiceEdgeRouterPolicy {
                id,
                semantic: p.semantic,
                service_roles: roles(&p.service_roles),
                edge_router_roles: roles(&p.edge_router_roles),
            })
            .collect();
        let check_rows = store.list_all(Kind::PostureChecks.collection()).await?;
        let posture_checks = check_rows
            .iter()
            .map(|e| policy::PostureCheck {
                id: e.id.clone(),
                name: e.name.clone(),
                role_attributes: e.role_attributes(),
            })
            .collect();
        let checks = check_rows
            .into_iter()
            .map(|e| {
                let entry = CheckEntry {
                    // An unreadable check never passes; it does not stop the others.
                    check: e.doc::<StoredPostureCheck>().ok().map(|s| s.check),
                    name: e.name,
                    created_at: e.created_at,
                    updated_at: e.updated_at,
                };
                (e.id, entry)
            })
            .collect();
        let model = policy::Model {
            identities,
            services,
            edge_routers,
            posture_checks,
            service_policies,
            edge_router_policies,
            service_edge_router_policies,
        };
        Ok(Self {
            index: PolicyIndex::new(&model),
            router_at: routers
                .iter()
                .enumerate()
                .map(|(i, r)| (r.id.clone(), i))
                .collect(),
            routers,
            checks,
        })
    }
}

/// Role lists were validated when stored; an entry that no longer parses selects
/// nothing rather than failing every query.
fn roles(entries: &[String]) -> RoleSet {
    RoleSet::parse(entries).unwrap_or_else(|_| {
        RoleSet::from_selectors(entries.iter().filter_map(|e| RoleSelector::parse(e).ok()))
    })
}

/// The policy documents of `D`'s kind with their ids.
async fn docs<D: Document>(store: &Store) -> Result<Vec<(String, D)>, StoreError> {
    Ok(store
        .entities::<D>()
        .await?
        .into_iter()
        .map(|e| (e.id, e.doc))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn router(id: &str) -> EntityRow {
        EntityRow {
            kind: Kind::EdgeRouters.collection().into(),
            id: id.into(),
            name: format!("n-{id}"),
            tags: json!({}),
            data: json!({"roleAttributes": []}),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[tokio::test]
    async fn the_cache_rebuilds_only_after_an_entity_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::sqlite_url(&dir.path().join("db")))
            .await
            .unwrap();
        let cache = PolicyCache::default();
        let first = cache.get(&store).await.unwrap();
        assert!(Arc::ptr_eq(&first, &cache.get(&store).await.unwrap()));
        // A change to something else (a session) keeps the snapshot.
        let mut tx = store.begin_write().await.unwrap();
        tx.delete_sessions(&["none".to_owned()]).await.unwrap();
        tx.record("sessions", "x", crate::store::ChangeOp::Delete)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert!(Arc::ptr_eq(&first, &cache.get(&store).await.unwrap()));
        let mut tx = store.begin_write().await.unwrap();
        tx.insert_entity(&router("r1")).await.unwrap();
        tx.commit().await.unwrap();
        let second = cache.get(&store).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.routers.len(), 1);
        assert!(Arc::ptr_eq(&second, &cache.get(&store).await.unwrap()));
    }
}
