//! `GET /version` (spec §2): `version`, `revision`, `buildDate` must be strings
//! and `apiVersions.edge.v1.path` installs the client prefix; and
//! `GET /enumerated-capabilities`.

use axum::response::Response;
use serde_json::json;

use crate::api::envelope;

/// `GET /version`, `GET /`.
pub async fn version() -> Response {
    envelope::ok(json!({
        "version": concat!("v", env!("CARGO_PKG_VERSION")),
        "revision": "weft",
        "buildDate": "1970-01-01T00:00:00Z",
        "runtimeVersion": "rust",
        "apiVersions": {
            "edge": {"v1": {"path": "/edge/client/v1", "apiBaseUrls": []}},
            "edge-client": {"v1": {"path": "/edge/client/v1", "apiBaseUrls": []}},
            "edge-management": {"v1": {"path": "/edge/management/v1", "apiBaseUrls": []}},
        },
    }))
}

/// `GET /protocols` (client API): the address of each API listener by protocol; Weft
/// has one, HTTPS, at the controller's public URL (`host:port`).
pub async fn protocols(
    axum::extract::State(ctl): axum::extract::State<crate::api::AppState>,
) -> Response {
    let address = ctl
        .public_url
        .trim_start_matches("https://")
        .trim_end_matches('/');
    envelope::ok(json!({"https": {"address": address}}))
}

/// `GET /enumerated-capabilities`: the optional capabilities this controller has, of
/// those OpenZiti enumerates (`capabilities` in openziti/edge-api: `OIDC_AUTH`,
/// `HA_CONTROLLER`). Weft has neither: it authenticates without OIDC, and its several
/// controllers share a database instead of forming OpenZiti's raft cluster, so an
/// OpenZiti SDK that sees `HA_CONTROLLER` would wrongly switch to OIDC logins and
/// controller lists. The answer is an empty list.
pub async fn capabilities() -> Response {
    envelope::ok(json!([]))
}
