//! Posture responses recorded, and what a caller's posture allows: the verdicts of the
//! posture checks of the policies that grant it a service, as the `postureQueries` the
//! client API lists, and the admission of a session (`INVALID_POSTURE` with the failing
//! policies and checks, the refusal recorded for
//! `/identities/{id}/failed-service-requests`).
//!
//! Shapes: openziti/edge-api `source/shared/posture-queries.yml`; behaviour:
//! openziti/ziti `controller/model/session_manager.go`, `posture_response_manager.go`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::auth::Caller;
use crate::authz::PolicySnapshot;
use crate::clock;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::model::{Kind, PolicyType};
use crate::posture::eval::timeout_remaining;
use crate::posture::{
    PolicyVerdict, PostureCheck, PostureData, PostureResponse, SessionPosture, any_passing,
};
use crate::store::FailedServiceRequest;

/// What a caller's posture is judged with: the policy snapshot, the identity's
/// posture data and the API session's posture state, read once per request.
#[derive(Debug)]
pub struct PostureView {
    view: Arc<PolicySnapshot>,
    data: PostureData,
    session: SessionPosture,
    now: i64,
}

impl PostureView {
    /// Reads the caller's posture (no posture reads when no posture check exists).
    pub async fn load(ctl: &Controller, caller: &Caller) -> Result<Self, ApiError> {
        let view = ctl.policy.get(&ctl.store).await?;
        let (data, session) = if view.has_posture_checks() {
            (
                ctl.store.posture_data(&caller.identity.id).await?,
                ctl.store.session_posture(&caller.session.id).await?,
            )
        } else {
            Default::default()
        };
        Ok(Self {
            view,
            data,
            session,
            now: clock::now_unix(),
        })
    }

    /// The policy snapshot it judges with.
    pub fn snapshot(&self) -> &PolicySnapshot {
        &self.view
    }

    fn verdicts(&self, identity: &str, service: &str, kind: PolicyType) -> Vec<PolicyVerdict<'_>> {
        self.view
            .posture_verdicts(identity, service, kind, &self.data, &self.session, self.now)
    }

    /// `postureQueries` of a service the caller holds `perms` on: one set per granting
    /// policy (OpenZiti: one placeholder set per permission when no check exists).
    pub fn queries(&self, identity: &str, service: &str, perms: &[PolicyType]) -> Value {
        let mut sets = Vec::new();
        for kind in perms {
            if !self.view.has_posture_checks() {
                sets.push(json!({
                    "policyId": format!(
                        "dummy {} policy: no posture checks defined",
                        kind.as_str().to_ascii_lowercase()
                    ),
                    "policyType": kind.as_str(),
                    "isPassing": true,
                    "postureQueries": [],
                }));
                continue;
            }
            for v in self.verdicts(identity, service, *kind) {
                let queries: Vec<Value> = v
                    .checks
                    .iter()
                    .map(|j| self.query(j.id, j.check, j.passing))
                    .collect();
                sets.push(json!({
                    "policyId": v.policy_id,
                    "policyType": kind.as_str(),
                    "isPassing": v.passing(),
                    "postureQueries": queries,
                }));
            }
        }
        Value::Array(sets)
    }

    /// One `postureQuery`: the check as a question to the endpoint.
    fn query(&self, id: &str, check: Option<&PostureCheck>, passing: bool) -> Value {
        let entry = self.view.posture_check(id);
        let at =
            |f: fn(&crate::authz::CheckEntry) -> &String| entry.map(f).cloned().unwrap_or_default();
        let mut q = json!({
            "id": id,
            "createdAt": at(|e| &e.created_at),
            "updatedAt": at(|e| &e.updated_at),
            "_links": {},
            "tags": {},
            "queryType": check.map_or("OS", PostureCheck::type_id),
            "isPassing": passing,
            "timeout": -1,
            "timeoutRemaining": -1,
            "timeoutAt": null,
        });
        match check {
            Some(PostureCheck::Process { process, .. }) => {
                q["process"] = json!({"osType": process.os_type, "path": process.path});
            }
            Some(PostureCheck::ProcessMulti { processes, .. }) => {
                q["processes"] = processes
                    .iter()
                    .map(|p| json!({"osType": p.os_type, "path": p.path}))
                    .collect();
            }
            Some(
                c @ PostureCheck::Mfa {
                    timeout_seconds,
                    prompt_on_wake,
                    prompt_on_unlock,
                    ..
                },
            ) => {
                let remaining = timeout_remaining(c, &self.session, self.now);
                q["timeout"] = json!(timeout_seconds);
                q["timeoutRemaining"] = json!(remaining);
                if remaining >= 0 {
                    q["timeoutAt"] = json!(clock::fmt_unix(self.now.saturating_add(remaining)));
                }
                q["promptOnWake"] = json!(prompt_on_wake);
                q["promptOnUnlock"] = json!(prompt_on_unlock);
            }
            _ => {}
        }
        q
    }

    /// Refuses a session of `kind` on `service` when no granting policy's posture
    /// passes: 409 `INVALID_POSTURE` naming the failing policies and checks, with the
    /// refusal recorded for `/identities/{id}/failed-service-requests`.
    pub async fn admit(
        &self,
        ctl: &Controller,
        caller: &Caller,
        service: &str,
        kind: PolicyType,
    ) -> Result<(), ApiError> {
        if !self.view.has_posture_checks() {
            return Ok(());
        }
        let verdicts = self.verdicts(&caller.identity.id, service, kind);
        if any_passing(&verdicts) {
            return Ok(());
        }
        let mut data = serde_json::Map::new();
        let mut failures = Vec::new();
        for v in &verdicts {
            let failing: Vec<_> = v.checks.iter().filter(|j| !j.passing).collect();
            data.insert(
                v.policy_id.to_owned(),
                failing
                    .iter()
                    .map(|j| {
                        json!({"id": j.id, "typeId": j.check.map_or("", PostureCheck::type_id), "isPassing": false})
                    })
                    .collect(),
            );
            let policy_name = ctl
                .store
                .get_entity(Kind::ServicePolicies.collection(), v.policy_id)
                .await?
                .map(|p| p.name)
                .unwrap_or_default();
            failures.push(json!({
                "policyId": v.policy_id,
                "policyName": policy_name,
                "checks": failing.iter().map(|j| json!({
                    "postureCheckId": j.id,
                    "postureCheckName": j.name,
                    "postureCheckType": j.check.map_or("", PostureCheck::type_id),
                })).collect::<Vec<_>>(),
            }));
        }
        let ids: Vec<&str> = verdicts.iter().map(|v| v.policy_id).collect();
        let service_name = ctl
            .store
            .get_entity(Kind::Services.collection(), service)
            .await?
            .map(|s| s.name)
            .unwrap_or_default();
        let mut tx = ctl.store.begin_write().await?;
        tx.insert_failed_service_request(&FailedServiceRequest {
            id: uuid::Uuid::new_v4().simple().to_string(),
            identity_id: caller.identity.id.clone(),
            api_session_id: caller.session.id.clone(),
            service_id: service.to_owned(),
            service_name,
            session_type: kind,
            policy_failures: Value::Array(failures).to_string(),
            at: self.now,
        })
        .await?;
        tx.commit().await?;
        ctl.metrics.posture_refusals.fetch_add(1, Ordering::Relaxed);
        tracing::info!(identity = %caller.identity.id, %service, kind = kind.as_str(), "session refused: posture fails");
        Err(ApiError::InvalidPosture(Box::new(json!({
            "message": format!(
                "Failed to pass posture checks for service policies: [{}]",
                ids.join(" ")
            ),
            "data": data,
        }))))
    }
}

/// Records the caller's posture responses, in one transaction (nothing is written for
/// a report identical to the last one), and has routers drop the sessions whose posture
/// no longer passes; returns whether the endpoint reported waking and unlocking.
pub async fn record_responses(
    ctl: &Controller,
    caller: &Caller,
    responses: &[PostureResponse],
) -> Result<(bool, bool), ApiError> {
    let now = clock::now_unix();
    let identity = &caller.identity.id;
    let (mut woken, mut unlocked) = (false, false);
    let mut tx = ctl.store.begin_write().await?;
    let mut data = tx.posture_data(identity).await?;
    let mut changed = false;
    for r in responses {
        changed |= data.apply(r, now);
        if let PostureResponse::EndpointState {
            woken: w,
            unlocked: u,
        } = r
        {
            woken |= *w;
            unlocked |= *u;
        }
    }
    if changed {
        tx.put_posture_data(identity, &data, now).await?;
    }
    tx.set_endpoint_state(&caller.session.id, woken, unlocked, now)
        .await?;
    let wrote = tx.commit().await?.is_some();
    let n = u64::try_from(responses.len()).unwrap_or(u64::MAX);
    ctl.metrics
        .posture_responses
        .fetch_add(n, Ordering::Relaxed);
    if wrote {
        // The router view re-judges every session's posture and drops failing ones.
        ctl.notify_routers().await;
    }
    Ok((woken, unlocked))
}
