//! The incrementally maintained view equals a full rebuild: random sequences of
//! management writes, logins, session requests, disables, posture reports and deletes
//! against a real controller (SQLite in a temporary directory), the published view
//! compared with [`full::build`] after every step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::full;
use crate::api::management::crud;
use crate::clock;
use crate::config::Config;
use crate::controller::Controller;
use crate::model::{Kind, PolicyType};
use crate::posture::PostureData;
use crate::store::{ApiSessionRow, SessionRow};

const ATTRS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Identity(usize),
    IdentityAttr(usize, usize),
    Disable(usize, bool),
    DeleteIdentity(usize),
    Service(usize),
    ServiceAttr(usize, usize),
    DeleteService(usize),
    Policy {
        dial: bool,
        identity: usize,
        service: usize,
        posture: bool,
    },
    DeletePolicy(usize),
    MacCheck,
    Posture(usize, bool),
    Login(usize),
    Logout(usize),
    Session {
        api: usize,
        service: usize,
        dial: bool,
    },
    EndSession(usize),
    Terminator(usize),
    DeleteTerminator(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let i = || 0usize..8;
    let a = || 0usize..ATTRS.len();
    prop_oneof![
        3 => a().prop_map(Op::Identity),
        1 => (i(), a()).prop_map(|(x, y)| Op::IdentityAttr(x, y)),
        1 => (i(), any::<bool>()).prop_map(|(x, y)| Op::Disable(x, y)),
        1 => i().prop_map(Op::DeleteIdentity),
        2 => a().prop_map(Op::Service),
        1 => (i(), a()).prop_map(|(x, y)| Op::ServiceAttr(x, y)),
        1 => i().prop_map(Op::DeleteService),
        2 => (any::<bool>(), a(), a(), prop::bool::weighted(0.3))
            .prop_map(|(dial, identity, service, posture)| Op::Policy { dial, identity, service, posture }),
        1 => i().prop_map(Op::DeletePolicy),
        1 => Just(Op::MacCheck),
        1 => (i(), any::<bool>()).prop_map(|(x, y)| Op::Posture(x, y)),
        4 => i().prop_map(Op::Login),
        1 => i().prop_map(Op::Logout),
        5 => (i(), i(), any::<bool>()).prop_map(|(api, service, dial)| Op::Session { api, service, dial }),
        1 => i().prop_map(Op::EndSession),
        2 => i().prop_map(Op::Terminator),
        1 => i().prop_map(Op::DeleteTerminator),
    ]
}

#[derive(Default)]
struct World {
    identities: Vec<String>,
    services: Vec<String>,
    policies: Vec<String>,
    api_sessions: Vec<(String, String)>,
    sessions: Vec<String>,
    terminators: Vec<String>,
    router: String,
    n: usize,
    logins: usize,
}

fn pick(v: &[String], i: usize) -> Option<String> {
    (!v.is_empty()).then(|| v[i % v.len()].clone())
}

async fn id_of(res: axum::response::Response) -> String {
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["data"]["id"].as_str().unwrap().to_owned()
}

async fn create(ctl: &Arc<Controller>, k: Kind, body: Value) -> String {
    id_of(crud::create(ctl.clone(), k, body).await.unwrap()).await
}

async fn step(ctl: &Arc<Controller>, w: &mut World, op: Op) {
    w.n += 1;
    let n = w.n;
    let now = clock::now_unix();
    match op {
        Op::Identity(a) => {
            let body = json!({"name": format!("i{n}"), "type": "User", "isAdmin": false,
                              "roleAttributes": [ATTRS[a]]});
            w.identities.push(create(ctl, Kind::Identities, body).await);
        }
        Op::IdentityAttr(i, a) | Op::ServiceAttr(i, a) => {
            let (k, list) = if matches!(op, Op::IdentityAttr(..)) {
                (Kind::Identities, &w.identities)
            } else {
                (Kind::Services, &w.services)
            };
            if let Some(id) = pick(list, i) {
                let patch = json!({"roleAttributes": [ATTRS[a]]});
                crud::update(ctl.clone(), k, id, patch, true).await.unwrap();
            }
        }
        Op::Disable(i, disable) => {
            if let Some(id) = pick(&w.identities, i) {
                let mut tx = ctl.store.begin_write().await.unwrap();
                crate::auth::set_disabled_in(&mut tx, &id, disable.then_some(None))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                ctl.notify_routers().await;
            }
        }
        Op::DeleteIdentity(i)
        | Op::DeleteService(i)
        | Op::DeletePolicy(i)
        | Op::DeleteTerminator(i) => {
            let (k, list) = match op {
                Op::DeleteIdentity(_) => (Kind::Identities, &mut w.identities),
                Op::DeleteService(_) => (Kind::Services, &mut w.services),
                Op::DeletePolicy(_) => (Kind::ServicePolicies, &mut w.policies),
                _ => (Kind::Terminators, &mut w.terminators),
            };
            if !list.is_empty() {
                let id = list.remove(i % list.len());
                // A cascade (a deleted service's terminators) may have removed it.
                match crud::delete(ctl.clone(), k, id).await {
                    Ok(_) | Err(crate::error::ApiError::NotFound(_)) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        Op::Service(a) => {
            let body = json!({"name": format!("s{n}"), "roleAttributes": [ATTRS[a]]});
            w.services.push(create(ctl, Kind::Services, body).await);
        }
        Op::Policy {
            dial,
            identity,
            service,
            posture,
        } => {
            let body = json!({"name": format!("p{n}"), "type": if dial {"Dial"} else {"Bind"},
                "semantic": "AnyOf", "identityRoles": [format!("#{}", ATTRS[identity])],
                "serviceRoles": [format!("#{}", ATTRS[service])],
                "postureCheckRoles": if posture {json!(["#mac"])} else {json!([])}});
            w.policies
                .push(create(ctl, Kind::ServicePolicies, body).await);
        }
        Op::MacCheck => {
            let body = json!({"name": format!("m{n}"), "typeId": "MAC",
                              "macAddresses": ["aa:bb:cc:dd:ee:ff"], "roleAttributes": ["mac"]});
            create(ctl, Kind::PostureChecks, body).await;
        }
        Op::Posture(i, matching) => {
            if let Some(id) = pick(&w.identities, i) {
                let mac = if matching {
                    "aa:bb:cc:dd:ee:ff"
                } else {
                    "11:22:33:44:55:66"
                };
                let data: PostureData = serde_json::from_value(json!({
                    "mac": {"postureCheckId": "x", "at": now, "value": [mac]}}))
                .unwrap();
                let mut tx = ctl.store.begin_write().await.unwrap();
                tx.put_posture_data(&id, &data, now).await.unwrap();
                tx.commit().await.unwrap();
                ctl.notify_routers().await;
            }
        }
        Op::Login(i) => {
            if let Some(identity) = pick(&w.identities, i) {
                let id = format!("api{n}");
                login(ctl, &id, &identity, now).await;
                w.api_sessions.push((id, identity));
                w.logins += 1;
            }
        }
        Op::Logout(i) => {
            if !w.api_sessions.is_empty() {
                let (id, _) = w.api_sessions.remove(i % w.api_sessions.len());
                let mut tx = ctl.store.begin_write().await.unwrap();
                tx.delete_api_session(&id).await.unwrap();
                tx.commit().await.unwrap();
                ctl.notify_routers().await;
            }
        }
        Op::Session { api, service, dial } => {
            let (Some((api_session, identity)), Some(service)) = (
                (!w.api_sessions.is_empty())
                    .then(|| w.api_sessions[api % w.api_sessions.len()].clone()),
                pick(&w.services, service),
            ) else {
                return;
            };
            // Stored as the API would after its checks; one no policy grants is
            // removed by the next publication, as a revoked one is.
            let row = SessionRow {
                id: format!("ses{n}"),
                token: format!("stoken{n}"),
                api_session_id: api_session,
                identity_id: identity,
                service_id: service,
                session_type: if dial {
                    PolicyType::Dial
                } else {
                    PolicyType::Bind
                },
                created_at: clock::now_string(),
                updated_at: clock::now_string(),
            };
            let mut tx = ctl.store.begin_write().await.unwrap();
            // Its API session may have ended meanwhile: then there is nothing to add.
            if ctl
                .store
                .api_session_by_id(&row.api_session_id)
                .await
                .unwrap()
                .is_some()
            {
                tx.insert_session(&row).await.unwrap();
            }
            tx.commit().await.unwrap();
            ctl.notify_routers().await;
            w.sessions.push(row.id);
        }
        Op::EndSession(i) => {
            if let Some(id) = pick(&w.sessions, i) {
                let mut tx = ctl.store.begin_write().await.unwrap();
                tx.delete_sessions(&[id]).await.unwrap();
                tx.commit().await.unwrap();
                ctl.notify_routers().await;
            }
        }
        Op::Terminator(s) => {
            if let Some(service) = pick(&w.services, s) {
                let body =
                    json!({"service": service, "router": w.router, "address": format!("t{n}")});
                w.terminators
                    .push(create(ctl, Kind::Terminators, body).await);
            }
        }
    }
}

/// A controller on an SQLite store in a temporary directory (dropped with it).
async fn controller(config: Config) -> (tempfile::TempDir, Arc<Controller>) {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Controller::open(dir.path(), config, "https://localhost:1280".into())
        .await
        .unwrap();
    (dir, Arc::new(ctl))
}

async fn run(ops: Vec<Op>) {
    let (_dir, ctl) = controller(Config::default()).await;
    let router = create(
        &ctl,
        Kind::EdgeRouters,
        json!({"name": "r1", "roleAttributes": ["r"]}),
    )
    .await;
    let mut w = World {
        router,
        ..World::default()
    };
    create(
        &ctl,
        Kind::EdgeRouterPolicies,
        json!({"name": "erp", "identityRoles": ["#a", "#b"], "edgeRouterRoles": ["#all"]}),
    )
    .await;
    create(
        &ctl,
        Kind::ServiceEdgeRouterPolicies,
        json!({"name": "serp", "serviceRoles": ["#a"], "edgeRouterRoles": ["#r"]}),
    )
    .await;
    // A granted start, so that the random steps have something to revoke.
    let start = [
        Op::Identity(0),
        Op::Identity(1),
        Op::Service(0),
        Op::Service(1),
        Op::Policy {
            dial: true,
            identity: 0,
            service: 0,
            posture: false,
        },
        Op::Policy {
            dial: false,
            identity: 1,
            service: 1,
            posture: false,
        },
        Op::Login(0),
        Op::Login(1),
        Op::Session {
            api: 0,
            service: 0,
            dial: true,
        },
        Op::Session {
            api: 1,
            service: 1,
            dial: false,
        },
        Op::Terminator(1),
    ];
    for (i, op) in start.into_iter().chain(ops).enumerate() {
        let label = format!("{op:?}");
        step(&ctl, &mut w, op).await;
        let published = ctl.feed.view().await.without_expiries();
        let rebuilt = full::build(&ctl).await.unwrap();
        assert!(
            rebuilt.ended.is_empty() && rebuilt.revoked.is_empty(),
            "step {i} ({label}) left {:?} / {:?} for the sweep",
            rebuilt.ended,
            rebuilt.revoked
        );
        assert_eq!(
            published,
            rebuilt.view.without_expiries(),
            "step {i}: {label}"
        );
    }
    // A login is always published from the change log.
    assert!(w.logins == 0 || ctl.metrics.view_delta_builds.load(Ordering::Relaxed) > 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn the_incremental_view_equals_a_full_rebuild(ops in prop::collection::vec(op(), 5..40)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(ops));
    }
}

/// An identity and a service with role attribute `attr` and a Dial policy between
/// them requiring the posture checks `posture_roles`; returns their ids.
async fn dial_grant(ctl: &Arc<Controller>, attr: &str, posture_roles: &[&str]) -> (String, String) {
    let identity = create(
        ctl,
        Kind::Identities,
        json!({"name": format!("i-{attr}"), "type": "User", "isAdmin": false,
               "roleAttributes": [attr]}),
    )
    .await;
    let service = create(
        ctl,
        Kind::Services,
        json!({"name": format!("s-{attr}"), "roleAttributes": [attr]}),
    )
    .await;
    create(
        ctl,
        Kind::ServicePolicies,
        json!({"name": format!("p-{attr}"), "type": "Dial", "semantic": "AnyOf",
               "identityRoles": [format!("#{attr}")], "serviceRoles": [format!("#{attr}")],
               "postureCheckRoles": posture_roles}),
    )
    .await;
    (identity, service)
}

/// A login of `identity` stored and published as the API would.
async fn login(ctl: &Arc<Controller>, id: &str, identity: &str, last_activity: i64) {
    let row = ApiSessionRow {
        id: id.into(),
        token: format!("token-{id}"),
        identity_id: identity.into(),
        authenticator_id: String::new(),
        config_types: vec![],
        ip_address: "127.0.0.1".into(),
        created_at: clock::now_string(),
        updated_at: clock::now_string(),
        last_activity,
        mfa_required: false,
        mfa_complete: false,
    };
    let mut tx = ctl.store.begin_write().await.unwrap();
    tx.insert_api_session(&row).await.unwrap();
    tx.commit().await.unwrap();
    ctl.notify_routers().await;
}

/// The periodic sweep judges only what time changed (an API session gone idle, a
/// certificate whose validity ended), reads no whole store to do it, and leaves the
/// view a full rebuild would make; a posture check whose verdict time cannot turn leaves
/// it timed.
#[tokio::test]
async fn a_timed_sweep_enforces_what_time_changed_and_equals_a_full_rebuild() {
    let (_dir, ctl) = controller(Config::default()).await;
    let timeout = ctl.config.auth.api_session_timeout_secs;
    let (identity, service) = dial_grant(&ctl, "a", &[]).await;
    let now = clock::now_unix();
    login(&ctl, "idle", &identity, now).await;
    login(&ctl, "certified", &identity, now).await;
    let session = SessionRow {
        id: "ses-idle".into(),
        token: "stoken".into(),
        api_session_id: "idle".into(),
        identity_id: identity.clone(),
        service_id: service,
        session_type: PolicyType::Dial,
        created_at: clock::now_string(),
        updated_at: clock::now_string(),
    };
    let mut tx = ctl.store.begin_write().await.unwrap();
    tx.insert_session(&session).await.unwrap();
    tx.commit().await.unwrap();
    ctl.notify_routers().await;

    // The first sweep reads the whole store.
    let fulls = || ctl.metrics.view_full_builds.load(Ordering::Relaxed);
    let before = fulls();
    ctl.sweep_routers().await.unwrap();
    assert_eq!(fulls(), before + 1);

    // A certificate valid for one more second, and an API session whose last activity
    // is past the idle timeout (activity is not logged: only time tells).
    let valid_to = clock::now_unix() + 1;
    let mut tx = ctl.store.begin_write().await.unwrap();
    tx.insert_api_session_cert(&crate::store::ApiSessionCertRow {
        id: "cert".into(),
        api_session_id: "certified".into(),
        identity_id: identity.clone(),
        subject: "CN=x".into(),
        fingerprint: "f00d".into(),
        cert_pem: String::new(),
        valid_from: valid_to - 60,
        valid_to,
        created_at: clock::now_string(),
        updated_at: clock::now_string(),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    ctl.notify_routers().await;
    let view = ctl.feed.view().await;
    assert_eq!(view.api_sessions()["certified"].cert_fingerprints, ["f00d"]);
    let past = clock::now_unix() - timeout - 5;
    ctl.store
        .touch_api_session("idle", past, &clock::fmt_unix(past))
        .await
        .unwrap();
    while clock::now_unix() <= valid_to {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let before = fulls();
    ctl.sweep_routers().await.unwrap();
    assert_eq!(fulls(), before, "the timed sweep read the whole store");
    let view = ctl.feed.view().await;
    assert!(!view.api_sessions().contains_key("idle"));
    assert!(!view.sessions().contains_key("ses-idle"));
    assert!(
        view.api_sessions()["certified"]
            .cert_fingerprints
            .is_empty()
    );
    assert!(ctl.store.api_session_by_id("idle").await.unwrap().is_none());
    let rebuilt = full::build(&ctl).await.unwrap();
    assert!(rebuilt.ended.is_empty() && rebuilt.revoked.is_empty());
    assert_eq!(view.without_expiries(), rebuilt.view.without_expiries());

    // With posture checks too the sweep is timed: a MAC check's verdict changes only
    // with logged data.
    create(
        &ctl,
        Kind::PostureChecks,
        json!({"name": "m", "typeId": "MAC", "macAddresses": ["aa:bb:cc:dd:ee:ff"],
               "roleAttributes": ["mac"]}),
    )
    .await;
    create(
        &ctl,
        Kind::ServicePolicies,
        json!({"name": "pp", "type": "Dial", "semantic": "AnyOf", "identityRoles": ["#a"],
               "serviceRoles": ["#a"], "postureCheckRoles": ["#mac"]}),
    )
    .await;
    let before = fulls();
    ctl.sweep_routers().await.unwrap();
    assert_eq!(fulls(), before);
}

/// An MFA posture check with a timeout: once the answer is older than it, a timed
/// sweep (no full rebuild) revokes the session it granted, as a full rebuild would.
#[tokio::test]
async fn a_timed_sweep_revokes_a_session_whose_mfa_answer_timed_out() {
    let (_dir, ctl) = controller(Config::default()).await;
    create(
        &ctl,
        Kind::PostureChecks,
        json!({"name": "mfa", "typeId": "MFA", "timeoutSeconds": 1, "roleAttributes": ["mfa"]}),
    )
    .await;
    let (identity, service) = dial_grant(&ctl, "m", &["#mfa"]).await;
    login(&ctl, "api", &identity, clock::now_unix()).await;
    // The TOTP answer, as a completed authentication query records it.
    let mut tx = ctl.store.begin_write().await.unwrap();
    tx.set_api_session_mfa("api", true, true).await.unwrap();
    tx.insert_session(&SessionRow {
        id: "ses".into(),
        token: "stoken".into(),
        api_session_id: "api".into(),
        identity_id: identity,
        service_id: service,
        session_type: PolicyType::Dial,
        created_at: clock::now_string(),
        updated_at: clock::now_string(),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    ctl.notify_routers().await;
    ctl.sweep_routers().await.unwrap();
    let passed = ctl
        .store
        .session_posture("api")
        .await
        .unwrap()
        .mfa_passed_at
        .unwrap();
    assert!(ctl.feed.view().await.sessions().contains_key("ses"));

    // Past the timeout (the verdict turns once now > passed + 1).
    while clock::now_unix() <= passed + 1 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let fulls = ctl.metrics.view_full_builds.load(Ordering::Relaxed);
    ctl.sweep_routers().await.unwrap();
    assert_eq!(ctl.metrics.view_full_builds.load(Ordering::Relaxed), fulls);
    let view = ctl.feed.view().await;
    assert!(
        !view.sessions().contains_key("ses"),
        "the session outlived its MFA answer"
    );
    let rebuilt = full::build(&ctl).await.unwrap();
    assert!(rebuilt.ended.is_empty() && rebuilt.revoked.is_empty());
    assert_eq!(view.without_expiries(), rebuilt.view.without_expiries());
}

/// Activity is not logged: the sweep re-sends an API session's expiry once activity
/// moved it by half the idle timeout or more, and judges none of the others again.
#[tokio::test]
async fn a_timed_sweep_moves_the_expiry_routers_hold_once_activity_moved_it_enough() {
    let mut config = Config::default();
    config.auth.api_session_timeout_secs = 10;
    let (_dir, ctl) = controller(config).await;
    let identity = create(
        &ctl,
        Kind::Identities,
        json!({"name": "i", "type": "User", "isAdmin": false}),
    )
    .await;
    let now = clock::now_unix();
    login(&ctl, "moved", &identity, now - 8).await;
    login(&ctl, "steady", &identity, now - 1).await;
    ctl.sweep_routers().await.unwrap();
    let expiry = |view: &super::RouterView, id: &str| view.api_sessions()[id].expires_at_unix_ms;
    let view = ctl.feed.view().await;
    assert_eq!(expiry(&view, "moved"), (now + 2) * 1000);
    assert_eq!(expiry(&view, "steady"), (now + 9) * 1000);

    let later = clock::now_unix();
    for id in ["moved", "steady"] {
        ctl.store
            .touch_api_session(id, later, &clock::fmt_unix(later))
            .await
            .unwrap();
    }
    let fulls = ctl.metrics.view_full_builds.load(Ordering::Relaxed);
    ctl.sweep_routers().await.unwrap();
    assert_eq!(ctl.metrics.view_full_builds.load(Ordering::Relaxed), fulls);
    let view = ctl.feed.view().await;
    // Moved by 8 s or more (the slack is 5 s): re-sent. Moved by less: kept.
    assert_eq!(expiry(&view, "moved"), (later + 10) * 1000);
    assert_eq!(expiry(&view, "steady"), (now + 9) * 1000);
}
