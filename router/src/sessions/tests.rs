#![allow(clippy::disallowed_methods)] // tests may start their simulated clock
use super::*;

use weft_testkit::state::grant_everything;

fn api(id: &str, token: &str, fp: &str, expires: i64) -> pb::ApiSession {
    pb::ApiSession {
        expires_at_unix_ms: expires,
        ..weft_testkit::state::api_session(id, token, &format!("ident-{id}"), fp)
    }
}

fn session(id: &str, token: &str, api: &str, kind: pb::SessionType) -> pb::Session {
    weft_testkit::state::session(id, token, api, "svc", kind)
}

fn table() -> SessionTable {
    let mut t = SessionTable::new("");
    let removed = t.apply_sync(grant_everything(
        "",
        pb::StateSync {
            revision: 10,
            api_sessions: vec![
                api("a1", "tok-a1", "AB01", 0),
                api("a2", "tok-a2", "cd02", 5_000),
            ],
            sessions: vec![
                session("s1", "tok-s1", "a1", pb::SessionType::Dial),
                session("s2", "tok-s2", "a1", pb::SessionType::Bind),
                session("s3", "tok-s3", "a2", pb::SessionType::Dial),
            ],
            ..Default::default()
        },
    ));
    assert!(removed.is_empty());
    t
}

#[test]
fn hello_checks_token_expiry_and_certificate() {
    let t = table();
    let fp = Some;
    assert_eq!(t.check_hello(b"tok-a1", fp("ab01"), 0).unwrap().id, "a1");
    assert_eq!(
        t.check_hello(b"nope", fp("ab01"), 0),
        Err(HelloRejection::UnknownToken)
    );
    assert_eq!(
        t.check_hello(b"tok-a1", fp("ffff"), 0),
        Err(HelloRejection::CertificateMismatch)
    );
    assert_eq!(
        t.check_hello(b"tok-a1", None, 0),
        Err(HelloRejection::CertificateMismatch)
    );
    assert!(t.check_hello(b"tok-a2", fp("cd02"), 4_999).is_ok());
    assert_eq!(
        t.check_hello(b"tok-a2", fp("cd02"), 5_000),
        Err(HelloRejection::Expired)
    );
    assert_eq!(
        t.check_hello(&[0xff, 0xfe], fp("ab01"), 0),
        Err(HelloRejection::UnknownToken)
    );
}

#[test]
fn session_checks_owner_and_kind() {
    let t = table();
    assert_eq!(
        t.check_session(b"tok-s1", "a1", SessionKind::Dial)
            .unwrap()
            .id,
        "s1"
    );
    assert_eq!(
        t.check_session(b"tok-s1", "a1", SessionKind::Bind),
        Err(SessionRejection::WrongKind)
    );
    assert_eq!(
        t.check_session(b"tok-s3", "a1", SessionKind::Dial),
        Err(SessionRejection::WrongApiSession)
    );
    assert_eq!(
        t.check_session(b"tok-zz", "a1", SessionKind::Dial),
        Err(SessionRejection::UnknownToken)
    );
}

#[test]
fn removing_an_api_session_removes_its_sessions() {
    let mut t = table();
    let removed = t
        .apply_update(pb::StateUpdate {
            revision: 11,
            api_sessions_removed: vec!["a1".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(removed.api_sessions, vec!["a1".to_owned()]);
    let mut sessions = removed.sessions;
    sessions.sort();
    assert_eq!(sessions, vec!["s1".to_owned(), "s2".to_owned()]);
    assert_eq!(t.len(), (1, 1));
    assert!(t.check_session(b"tok-s1", "a1", SessionKind::Dial).is_err());
}

#[test]
fn updates_must_follow_the_revision() {
    let mut t = table();
    let gap = t.apply_update(pb::StateUpdate {
        revision: 13,
        ..Default::default()
    });
    assert_eq!(gap, Err(RevisionGap { held: 10, got: 13 }));
    let removed = t
        .apply_update(pb::StateUpdate {
            revision: 11,
            sessions_added: vec![session("s4", "tok-s4", "a2", pb::SessionType::Bind)],
            sessions_removed: vec!["s3".into(), "unknown".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(removed.sessions, vec!["s3".to_owned()]);
    assert!(t.check_session(b"tok-s4", "a2", SessionKind::Bind).is_ok());
    assert_eq!(t.revision(), 11);
}

#[test]
fn full_sync_reports_what_disappeared() {
    let mut t = table();
    let removed = t.apply_sync(grant_everything(
        "",
        pb::StateSync {
            revision: 20,
            api_sessions: vec![api("a2", "tok-a2", "cd02", 0)],
            sessions: vec![session("s3", "tok-s3", "a2", pb::SessionType::Dial)],
            ..Default::default()
        },
    ));
    assert_eq!(removed.api_sessions, vec!["a1".to_owned()]);
    let mut sessions = removed.sessions;
    sessions.sort();
    assert_eq!(sessions, vec!["s1".to_owned(), "s2".to_owned()]);
    assert_eq!(t.revision(), 20);
}

#[test]
fn expiry_removes_sessions_without_moving_the_revision() {
    let mut t = table();
    assert!(t.expire(4_999).is_empty());
    let removed = t.expire(5_000);
    assert_eq!(removed.api_sessions, vec!["a2".to_owned()]);
    assert_eq!(removed.sessions, vec!["s3".to_owned()]);
    assert_eq!(t.revision(), 10);
}

#[test]
fn a_rotated_token_replaces_the_old_one() {
    let mut t = table();
    t.apply_update(pb::StateUpdate {
        revision: 11,
        api_sessions_added: vec![api("a1", "tok-a1-new", "ab01", 0)],
        ..Default::default()
    })
    .unwrap();
    assert!(t.check_hello(b"tok-a1", Some("ab01"), 0).is_err());
    assert!(t.check_hello(b"tok-a1-new", Some("ab01"), 0).is_ok());
}

// ---- edge router policies and service edge router policies ----

fn access(id: &str, routers: &[&str]) -> pb::RouterAccess {
    pb::RouterAccess {
        id: id.into(),
        router_ids: routers.iter().map(|r| (*r).to_owned()).collect(),
    }
}

/// Router "r1" of a network where `a1` (identity "ident-a1") dials on service "svc" (s1),
/// and the policies grant what the arguments say.
fn policed(identity_routers: &[&str], service_routers: &[&str]) -> SessionTable {
    let mut t = SessionTable::new("r1");
    t.apply_sync(pb::StateSync {
        revision: 1,
        api_sessions: vec![api("a1", "tok-a1", "ab01", 0)],
        sessions: vec![session("s1", "tok-s1", "a1", pb::SessionType::Dial)],
        identity_routers: vec![access("ident-a1", identity_routers)],
        service_routers: vec![access("svc", service_routers)],
        ..Default::default()
    });
    t
}

#[test]
fn a_router_serves_only_what_policies_grant_it() {
    let hello = |t: &SessionTable| {
        t.check_hello(b"tok-a1", Some("ab01"), 0)
            .map(|a| a.id.clone())
    };
    let dial = |t: &SessionTable| {
        t.check_session(b"tok-s1", "a1", SessionKind::Dial)
            .map(|s| s.id.clone())
    };
    let t = policed(&["r1", "r2"], &["r1"]);
    assert_eq!(hello(&t), Ok("a1".into()));
    assert_eq!(dial(&t), Ok("s1".into()));
    // No edge router policy gives the identity this router.
    let t = policed(&["r2"], &["r1"]);
    assert_eq!(hello(&t), Err(HelloRejection::RouterNotGranted));
    assert_eq!(dial(&t), Err(SessionRejection::RouterNotGranted));
    // No service edge router policy puts the service on it.
    let t = policed(&["r1"], &["r2"]);
    assert_eq!(hello(&t), Ok("a1".into()));
    assert_eq!(dial(&t), Err(SessionRejection::RouterNotGranted));
    // No entry at all grants nothing.
    let mut t = SessionTable::new("r1");
    t.apply_sync(pb::StateSync {
        api_sessions: vec![api("a1", "tok-a1", "ab01", 0)],
        ..Default::default()
    });
    assert_eq!(hello(&t), Err(HelloRejection::RouterNotGranted));
}

#[test]
fn taking_a_router_away_removes_what_used_it_and_giving_it_back_restores_it() {
    let mut t = policed(&["r1"], &["r1"]);
    // The service's service edge router policies no longer name r1.
    let removed = t
        .apply_update(pb::StateUpdate {
            revision: 2,
            service_routers_upserted: vec![access("svc", &["r2"])],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(removed.sessions, ["s1"]);
    assert!(removed.api_sessions.is_empty());
    assert_eq!(
        t.check_session(b"tok-s1", "a1", SessionKind::Dial),
        Err(SessionRejection::RouterNotGranted)
    );
    // Granted again (the session itself was never deleted).
    let removed = t
        .apply_update(pb::StateUpdate {
            revision: 3,
            service_routers_upserted: vec![access("svc", &["r1"])],
            ..Default::default()
        })
        .unwrap();
    assert!(removed.is_empty());
    assert!(t.check_session(b"tok-s1", "a1", SessionKind::Dial).is_ok());

    // The identity loses the router: its API session and its sessions go.
    let removed = t
        .apply_update(pb::StateUpdate {
            revision: 4,
            identity_routers_removed: vec!["ident-a1".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(removed.api_sessions, ["a1"]);
    assert_eq!(removed.sessions, ["s1"]);
    assert_eq!(
        t.check_hello(b"tok-a1", Some("ab01"), 0).map(|_| ()),
        Err(HelloRejection::RouterNotGranted)
    );

    // A full sync without the grant reports the same; with it, nothing.
    let mut t = policed(&["r1"], &["r1"]);
    let removed = t.apply_sync(pb::StateSync {
        revision: 9,
        api_sessions: vec![api("a1", "tok-a1", "ab01", 0)],
        sessions: vec![session("s1", "tok-s1", "a1", pb::SessionType::Dial)],
        identity_routers: vec![access("ident-a1", &["r1"])],
        ..Default::default()
    });
    assert_eq!((removed.api_sessions.len(), removed.sessions.len()), (0, 1));
}
