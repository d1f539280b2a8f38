//! Authentication and the caller's own API session and identity (spec §4, §6.1, §10).

use axum::extract::{Request, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::read_body;
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope, render};
use crate::auth::{self, Caller, PartialCaller};
use crate::error::ApiError;
use crate::model::Kind;
use crate::server::ConnInfo;
use crate::telemetry::AuthResult;

#[derive(Debug, Deserialize)]
struct MethodQuery {
    method: Option<String>,
}

/// The body of `POST /authenticate`: a JSON object, or `{}` when empty (the C SDK sends
/// none on some paths).
pub fn auth_body(bytes: &[u8]) -> Result<Value, ApiError> {
    let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(bytes).map_err(|e| ApiError::CouldNotParseBody(e.to_string()))?
    };
    if !body.is_object() {
        return Err(ApiError::CouldNotValidate(
            "the body must be a JSON object".into(),
        ));
    }
    Ok(body)
}

/// `POST /authenticate?method=cert|password|ext-jwt` (client and management APIs).
/// Every attempt is counted by method and result; a refusal is a security event
/// (`event = "login_failed"` at WARN, with the method, source address and error code).
pub async fn authenticate(State(ctl): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let method = axum::extract::Query::<MethodQuery>::try_from_uri(req.uri())
        .map_err(|e| ApiError::InvalidParameter(e.body_text()))?
        .0
        .method
        .ok_or_else(|| ApiError::InvalidParameter("query parameter method is required".into()))?;
    let conn = req
        .extensions()
        .get::<ConnInfo>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("connection info missing".into()))?;
    let source = conn.peer_addr.ip();
    let result = authenticate_with(&ctl, &method, conn, req).await;
    match &result {
        Ok(_) => ctl.metrics.auth.record(&method, AuthResult::Success),
        Err(e) => {
            ctl.metrics.auth.record(&method, AuthResult::Failure);
            tracing::warn!(
                event = "login_failed",
                method = %method,
                %source,
                code = e.code(),
                reason = %e,
                "authentication refused"
            );
        }
    }
    result
}

async fn authenticate_with(
    ctl: &AppState,
    method: &str,
    conn: ConnInfo,
    req: Request,
) -> Result<Response, ApiError> {
    let ctl = ctl.clone();
    let headers = req.headers().clone();
    let body = auth_body(&read_body(req).await?)?;
    let (session, identity) = match method {
        "cert" => auth::authenticate_cert(&ctl, &conn, &body).await?,
        "password" => auth::authenticate_password(&ctl, &conn, &body).await?,
        "ext-jwt" => crate::extjwt::authenticate(&ctl, &conn, &headers, &body).await?,
        other => {
            return Err(ApiError::InvalidParameter(format!(
                "unsupported authentication method {other:?}"
            )));
        }
    };
    let policy = auth::policy::policy_of(&ctl.store, &identity.doc).await?;
    let ext_jwt_signer = auth::policy::ext_jwt_missing(&ctl, &headers, &policy, &identity)
        .await
        .and_then(|_| policy.secondary.require_ext_jwt_signer.clone());
    let open = auth::policy::OpenQueries {
        totp: auth::policy::totp_pending(&session, &policy),
        ext_jwt_signer,
    };
    let cert = auth::cert_flags(&ctl, &session).await?;
    let mut res = envelope::ok(render::api_session(&ctl, &session, &identity, &open, cert).await);
    if cert.extend_requested {
        // OpenZiti's signal to SDKs (openziti/ziti `controller/response/headers.go`).
        res.headers_mut().insert(
            "ziti-authenticator-extend-requested",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(res)
}

/// `GET /current-api-session` (also refreshes activity); partial sessions too, which
/// learn their open `authQueries` here.
pub async fn get_api_session(
    State(ctl): State<AppState>,
    PartialCaller(caller): PartialCaller,
) -> Result<Response, ApiError> {
    let open = caller.queries();
    let cert = auth::cert_flags(&ctl, &caller.session).await?;
    Ok(envelope::ok(
        render::api_session(&ctl, &caller.session, &caller.identity, &open, cert).await,
    ))
}

/// `DELETE /current-api-session` (logout; partial sessions too).
pub async fn delete_api_session(
    State(ctl): State<AppState>,
    PartialCaller(caller): PartialCaller,
) -> Result<Response, ApiError> {
    crate::domain::sessions::log_out(&ctl, &caller.session.id).await?;
    Ok(envelope::empty())
}

/// `GET /current-api-session/service-updates`: `lastChangeAt` changes whenever
/// the management model changes (a superset of this identity's changes).
pub async fn service_updates(
    State(ctl): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let last = match ctl.store.meta_get("last_change_at").await? {
        Some(t) => t,
        None => caller.session.created_at,
    };
    Ok(envelope::ok(json!({"lastChangeAt": last})))
}

/// `GET /current-identity`.
pub async fn current_identity(
    State(ctl): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    Ok(envelope::ok(
        render::current_identity(&ctl, &caller.identity).await?,
    ))
}

/// `GET /current-identity/edge-routers` (paged).
pub async fn edge_routers(
    State(ctl): State<AppState>,
    caller: Caller,
    q: ListQuery,
) -> Result<Response, ApiError> {
    let policy = ctl.policy.get(&ctl.store).await?;
    let routers = policy.edge_routers_for_identity(&caller.identity.id);
    let fields = Kind::EdgeRouters.fields();
    let docs = routers
        .into_iter()
        .map(|r| (render::entity(r), r))
        .collect();
    let page = q
        .apply(&fields, &["name"], docs)?
        .try_map(|r| render::client_router(&ctl, r))?;
    Ok(envelope::page(page, &fields))
}
