use proptest::prelude::*;

use super::*;

fn api(id: &str, identity: &str, exp: i64) -> pb::ApiSession {
    pb::ApiSession {
        id: id.into(),
        token: format!("t-{id}"),
        identity_id: identity.into(),
        expires_at_unix_ms: exp,
        ..Default::default()
    }
}

fn session(id: &str, api_session: &str, service: &str) -> pb::Session {
    pb::Session {
        id: id.into(),
        token: format!("t-{id}"),
        api_session_id: api_session.into(),
        service_id: service.into(),
        ..Default::default()
    }
}

/// The indexes rebuilt from the maps.
fn reindexed(v: &RouterView) -> RouterView {
    let mut fresh = RouterView::default();
    for a in v.api_sessions.values() {
        fresh.insert_api_session(a.clone());
    }
    for s in v.sessions.values() {
        fresh.insert_session(s.clone());
    }
    fresh.services = v.services.clone();
    fresh.terminators = v.terminators.clone();
    fresh.identity_routers = v.identity_routers.clone();
    fresh.service_routers = v.service_routers.clone();
    fresh
}

#[test]
fn indexes_follow_moves_and_removals() {
    let mut v = RouterView::default();
    let mut p = Patch::default();
    p.api_sessions.insert("a".into(), Some(api("a", "i1", 0)));
    p.sessions
        .insert("s".into(), Some(session("s", "a", "svc1")));
    v.apply(p, 0);
    assert_eq!(v.sessions_of_service("svc1").collect::<Vec<_>>(), ["s"]);
    assert_eq!(v.api_sessions_of_identity("i1").collect::<Vec<_>>(), ["a"]);

    // The same session id on another service moves in the index.
    let mut p = Patch::default();
    p.sessions
        .insert("s".into(), Some(session("s", "a", "svc2")));
    let u = v.apply(p, 0);
    assert_eq!(u.sessions_added.len(), 1);
    assert_eq!(v.sessions_of_service("svc1").count(), 0);
    assert_eq!(v.sessions_of_service("svc2").collect::<Vec<_>>(), ["s"]);

    let mut p = Patch::default();
    p.sessions.insert("s".into(), None);
    p.sessions.insert("never-there".into(), None);
    p.api_sessions.insert("a".into(), None);
    let u = v.apply(p, 0);
    assert_eq!(
        u.sessions_removed,
        ["s"],
        "only what routers held is removed"
    );
    assert_eq!(u.api_sessions_removed, ["a"]);
    assert_eq!(v, RouterView::default(), "no index entry is left behind");
}

#[test]
fn an_expiry_within_the_slack_is_not_resent() {
    let mut v = RouterView::default();
    let mut p = Patch::default();
    p.api_sessions
        .insert("a".into(), Some(api("a", "i", 10_000)));
    assert_eq!(v.apply(p.clone(), 1000).api_sessions_added.len(), 1);
    p.api_sessions
        .insert("a".into(), Some(api("a", "i", 10_500)));
    assert_eq!(v.apply(p.clone(), 1000), pb::StateUpdate::default());
    assert_eq!(
        v.api_sessions()["a"].expires_at_unix_ms,
        10_000,
        "routers' copy kept"
    );
    p.api_sessions
        .insert("a".into(), Some(api("a", "i", 11_000)));
    assert_eq!(v.apply(p, 1000).api_sessions_added.len(), 1);
}

fn arb_view() -> impl Strategy<Value = RouterView> {
    let ids = || prop::sample::select(vec!["a", "b", "c", "d"]);
    (
        prop::collection::vec((ids(), ids(), 0i64..3), 0..4),
        prop::collection::vec((ids(), ids(), ids()), 0..6),
        prop::collection::vec((ids(), ids()), 0..3),
    )
        .prop_map(|(apis, sessions, routers)| {
            let mut v = RouterView::default();
            for (id, identity, exp) in apis {
                v.insert_api_session(api(id, identity, exp * 10_000));
            }
            for (id, a, svc) in sessions {
                v.insert_session(session(id, a, svc));
            }
            for (id, r) in routers {
                v.insert_identity_routers(pb::RouterAccess {
                    id: id.into(),
                    router_ids: vec![r.into()],
                });
                v.insert_service(pb::Service {
                    id: id.into(),
                    name: r.into(),
                    ..Default::default()
                });
            }
            v
        })
}

proptest! {
    /// Applying the diff from any view to any other gives the other (with the
    /// indexes a fresh build would have), and the update names exactly the entries that
    /// differ.
    #[test]
    fn applying_a_diff_reaches_the_desired_view(old in arb_view(), desired in arb_view()) {
        let mut v = old.clone();
        let patch = old.diff(&desired);
        let u = v.apply(patch, 0);
        prop_assert_eq!(&v, &desired);
        prop_assert_eq!(&v, &reindexed(&v));
        let changed_apis = desired.api_sessions.iter().filter(|(id, a)| old.api_sessions.get(*id) != Some(*a)).count();
        prop_assert_eq!(u.api_sessions_added.len(), changed_apis);
        let gone = old.sessions.keys().filter(|id| !desired.sessions.contains_key(*id)).count();
        prop_assert_eq!(u.sessions_removed.len(), gone);
        // A second application changes nothing.
        prop_assert_eq!(v.apply(old.diff(&desired), 0), pb::StateUpdate::default());
    }
}
