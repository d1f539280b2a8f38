//! `GET /controllers` on both APIs: the controllers serving this network's database, as
//! OpenZiti lists the members of its controller cluster (openziti/ziti
//! `controller/internal/routes/controller_api_model.go`): id, name, server certificate
//! and fingerprint, whether it runs, when it last started, and its API addresses (the
//! client API shows only `edge-client` and no control channel address).
//!
//! Weft's controllers share one database rather than forming a raft cluster, and each
//! records itself there ([`crate::store::ControllerRow`]); one not heard from within the
//! presence lease ([`crate::control::follow::PRESENCE_LEASE`]) is offline. Weft does
//! not advertise OpenZiti's `HA_CONTROLLER` capability, so SDKs still take their
//! controller list from the identity; this list is for operators and tools.

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use crate::api::endpoint::{ApiBuilder, Data, Endpoint};
use crate::api::list::ListQuery;
use crate::api::{AppState, envelope};
use crate::auth::{Admin, Caller};
use crate::clock;
use crate::error::ApiError;
use crate::filter::{FieldType, Fields};
use crate::store::ControllerRow;

fn fields() -> Fields {
    Fields::default()
        .with("id", FieldType::String)
        .with("name", FieldType::String)
        .with("fingerprint", FieldType::String)
        .with("isOnline", FieldType::Bool)
        .with("lastJoinedAt", FieldType::DateTime)
        .with("createdAt", FieldType::DateTime)
        .with("updatedAt", FieldType::DateTime)
}

/// `controllerDetail` of `c`; `management` adds the control channel address and the
/// management API's address.
fn detail(c: &ControllerRow, now_ms: i64, management: bool) -> Value {
    let is_online = c.seen_at > 0
        && now_ms.saturating_sub(c.seen_at) <= crate::control::follow::PRESENCE_LEASE_MS;
    let address = |path: &str| json!([{"url": format!("{}{path}", c.api_url), "version": "v1"}]);
    let mut api_addresses = json!({"edge-client": address(crate::api::CLIENT_PREFIX)});
    let mut v = json!({
        "id": c.id,
        "name": c.name,
        "createdAt": c.created_at,
        "updatedAt": c.updated_at,
        "tags": {},
        "_links": {},
        "certPem": c.cert_pem,
        "fingerprint": c.fingerprint,
        "isOnline": is_online,
        "lastJoinedAt": c.last_joined_at,
    });
    if management {
        api_addresses["edge-management"] = address(crate::api::MANAGEMENT_PREFIX);
        v["ctrlAddress"] = json!(c.ctrl_address);
    }
    v["apiAddresses"] = api_addresses;
    v
}

async fn list(ctl: &AppState, q: &ListQuery, management: bool) -> Result<Response, ApiError> {
    let now = clock::now_unix_ms();
    let docs = ctl
        .store
        .controllers()
        .await?
        .iter()
        .map(|c| {
            let v = detail(c, now, management);
            (v.clone(), v)
        })
        .collect();
    let fields = fields();
    Ok(envelope::page(q.apply(&fields, &["name"], docs)?, &fields))
}

const SHAPE: Data = Data::Object(
    "A controller (`controllerDetail`): `id`, `name`, `certPem`, `fingerprint`, `isOnline`, `lastJoinedAt`, `apiAddresses`; `ctrlAddress` on the management API.",
);

/// `GET /controllers` on the client API (any API session).
pub fn client_routes(api: ApiBuilder) -> ApiBuilder {
    api.add(
        Endpoint::get("/controllers", "listControllers")
            .doc("Controllers", "Lists the controllers serving this network")
            .session()
            .lists(SHAPE),
        |State(ctl): State<AppState>, _: Caller, q: ListQuery| async move {
            list(&ctl, &q, false).await
        },
    )
}

/// `GET /controllers` on the management API (administrators).
pub fn management_routes(api: ApiBuilder) -> ApiBuilder {
    api.add(
        Endpoint::get("/controllers", "listControllers")
            .doc("Controllers", "Lists the controllers serving this network")
            .admin()
            .lists(SHAPE),
        |State(ctl): State<AppState>, _: Admin, q: ListQuery| async move {
            list(&ctl, &q, true).await
        },
    )
}
