//! Posture on the client API: posture responses (`POST /posture-response`,
//! `/posture-response-bulk`). What a caller's posture allows (the `postureQueries` of
//! `/services`, the check of `POST /sessions`) is [`crate::domain::posture`].
//!
//! Shapes: openziti/edge-api `source/client/posture-response.yml`,
//! `source/shared/posture-queries.yml`, `source/shared/services.yml`; behaviour:
//! openziti/ziti `controller/internal/routes/posture_response_router.go`,
//! `controller/model/posture_response_manager.go`, `session_manager.go`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use crate::api::extract::JsonBody;
use crate::api::{AppState, envelope};
use crate::auth::Caller;
use crate::authz::PolicySnapshot;
use crate::clock;
use crate::controller::Controller;
use crate::domain::posture;
use crate::error::ApiError;
use crate::model::Kind;
use crate::posture::eval::PROMPT_GRACE_SECS;
use crate::posture::{PostureCheck, PostureData, PostureResponse, SessionPosture};

/// `POST /posture-response`: one response; 201 `{services}` (the services whose MFA
/// checks now ask for a new TOTP answer).
pub async fn posture_response(
    State(ctl): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let responses = vec![PostureResponse::parse(&body)?];
    let services = apply_responses(&ctl, &caller, &responses).await?;
    Ok(envelope::created(json!({ "services": services })))
}

/// `POST /posture-response-bulk`: an array of responses; 200 (as OpenZiti's spec
/// declares it) with the same body.
pub async fn posture_response_bulk(
    State(ctl): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let responses = PostureResponse::parse_bulk(&body)?;
    let services = apply_responses(&ctl, &caller, &responses).await?;
    Ok(envelope::ok(json!({ "services": services })))
}

/// Records the responses ([`posture::record_responses`]); after a wake or unlock, the
/// services whose MFA checks now prompt.
async fn apply_responses(
    ctl: &Arc<Controller>,
    caller: &Caller,
    responses: &[PostureResponse],
) -> Result<Vec<Value>, ApiError> {
    let (woken, unlocked) = posture::record_responses(ctl, caller, responses).await?;
    if !(woken || unlocked) {
        return Ok(Vec::new());
    }
    let view = ctl.policy.get(&ctl.store).await?;
    let session = ctl.store.session_posture(&caller.session.id).await?;
    prompted_services(ctl, &view, &caller.identity.id, &session, woken, unlocked).await
}

/// After a wake or unlock: the services whose MFA checks prompt on that event, with the
/// grace left to answer (OpenZiti lists them only for sessions that passed MFA).
async fn prompted_services(
    ctl: &Controller,
    view: &PolicySnapshot,
    identity: &str,
    session: &SessionPosture,
    woken: bool,
    unlocked: bool,
) -> Result<Vec<Value>, ApiError> {
    if session.mfa_passed_at.is_none() {
        return Ok(Vec::new());
    }
    let now = clock::now_unix();
    let data = PostureData::default();
    let mut out = Vec::new();
    for (service_id, kinds) in view.service_permissions(identity) {
        let prompting = kinds.iter().find_map(|kind| {
            view.posture_verdicts(identity, &service_id, *kind, &data, session, now)
                .into_iter()
                .flat_map(|v| v.checks)
                .find_map(|j| match j.check {
                    Some(PostureCheck::Mfa {
                        timeout_seconds,
                        prompt_on_wake,
                        prompt_on_unlock,
                        ..
                    }) if (woken && *prompt_on_wake) || (unlocked && *prompt_on_unlock) => {
                        Some(*timeout_seconds)
                    }
                    _ => None,
                })
        });
        let Some(timeout) = prompting else { continue };
        let name = ctl
            .store
            .get_entity(Kind::Services.collection(), &service_id)
            .await?
            .map(|s| s.name)
            .unwrap_or_default();
        out.push(json!({
            "id": service_id,
            "name": name,
            "postureQueryType": "MFA",
            "timeout": timeout,
            "timeoutRemaining": PROMPT_GRACE_SECS,
        }));
    }
    Ok(out)
}
