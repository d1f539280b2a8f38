//! What the controller tells routers, as fixtures: API sessions, sessions and
//! `StateSync`s for tests of the router's session table, edge connections, forwarding
//! and shards.

use std::collections::BTreeSet;

use weft_wire::control::pb;

/// An API session `id` with `token`, of identity `identity_id` (named the same), bound to
/// the certificate `fingerprint`, never expiring.
pub fn api_session(id: &str, token: &str, identity_id: &str, fingerprint: &str) -> pb::ApiSession {
    pb::ApiSession {
        id: id.into(),
        token: token.into(),
        identity_id: identity_id.into(),
        identity_name: identity_id.into(),
        cert_fingerprints: vec![fingerprint.into()],
        expires_at_unix_ms: 0,
    }
}

/// A Dial or Bind session `id` with `token` for `service_id`, in API session
/// `api_session_id`.
pub fn session(
    id: &str,
    token: &str,
    api_session_id: &str,
    service_id: &str,
    kind: pb::SessionType,
) -> pb::Session {
    pb::Session {
        id: id.into(),
        token: token.into(),
        api_session_id: api_session_id.into(),
        service_id: service_id.into(),
        r#type: kind as i32,
        identity_id: String::new(),
    }
}

/// A full state at `revision` holding `api_sessions` and `sessions`, with router
/// `router_id` granted to every identity and service in it ([`grant_everything`]).
pub fn sync(
    router_id: &str,
    revision: u64,
    api_sessions: Vec<pb::ApiSession>,
    sessions: Vec<pb::Session>,
) -> pb::StateSync {
    grant_everything(
        router_id,
        pb::StateSync {
            revision,
            api_sessions,
            sessions,
            ..Default::default()
        },
    )
}

/// `sync` with `router_id` granted to every identity holding an API session and every
/// service holding a session in it, as permissive edge router and service edge router
/// policies would.
pub fn grant_everything(router_id: &str, mut sync: pb::StateSync) -> pb::StateSync {
    let access = |id: &str| pb::RouterAccess {
        id: id.to_owned(),
        router_ids: vec![router_id.to_owned()],
    };
    let identities: BTreeSet<&str> = sync
        .api_sessions
        .iter()
        .map(|a| a.identity_id.as_str())
        .collect();
    let services: BTreeSet<&str> = sync
        .sessions
        .iter()
        .map(|s| s.service_id.as_str())
        .collect();
    sync.identity_routers = identities.into_iter().map(access).collect();
    sync.service_routers = services.into_iter().map(access).collect();
    sync
}
