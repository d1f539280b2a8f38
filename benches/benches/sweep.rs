//! The controller's periodic sweep at scale: 10,000 API sessions each holding a
//! session, in an SQLite store (`cargo bench -p weft-benches --bench sweep`).
//!
//! `full`: the router view judged from the whole store (`Controller::resync_routers`,
//! what every sweep did before the timed sweep, and still does while posture checks
//! exist). `timed`: the sweep as it runs now (`Controller::sweep_routers`), judging
//! only what time changed since the last one (here: nothing idled out, no certificate
//! crossed a validity boundary, no expiry moved past the slack). Both publish to the
//! controller's change feed, holding its lock as a real sweep does.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use weft_controller::clock;
use weft_controller::config::Config;
use weft_controller::controller::Controller;
use weft_controller::domain::entities;
use weft_controller::model::Kind;
use weft_controller::store::{ApiSessionRow, SessionRow};

const API_SESSIONS: usize = 10_000;

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    }
}

async fn controller(dir: &std::path::Path) -> Controller {
    let ctl = Controller::open(dir, Config::default(), "https://localhost:1280".into())
        .await
        .unwrap();
    let (identity, _) = entities::create(
        &ctl,
        Kind::Identities,
        object(json!({"name": "i", "type": "User", "isAdmin": false, "roleAttributes": ["a"]})),
    )
    .await
    .unwrap();
    let (service, _) = entities::create(
        &ctl,
        Kind::Services,
        object(json!({"name": "s", "roleAttributes": ["a"]})),
    )
    .await
    .unwrap();
    entities::create(
        &ctl,
        Kind::ServicePolicies,
        object(json!({"name": "p", "type": "Dial", "semantic": "AnyOf",
                      "identityRoles": ["#a"], "serviceRoles": ["#a"]})),
    )
    .await
    .unwrap();
    let now = clock::now_unix();
    let mut tx = ctl.store.begin_write().await.unwrap();
    for k in 0..API_SESSIONS {
        let id = format!("api{k}");
        tx.insert_api_session(&ApiSessionRow {
            id: id.clone(),
            token: format!("token{k}"),
            identity_id: identity.id.clone(),
            authenticator_id: String::new(),
            config_types: vec![],
            ip_address: "127.0.0.1".into(),
            created_at: clock::now_string(),
            updated_at: clock::now_string(),
            last_activity: now - 100,
            mfa_required: false,
            mfa_complete: false,
        })
        .await
        .unwrap();
        tx.insert_session(&SessionRow {
            id: format!("ses{k}"),
            token: format!("stoken{k}"),
            api_session_id: id,
            identity_id: identity.id.clone(),
            service_id: service.id.clone(),
            session_type: weft_controller::model::PolicyType::Dial,
            created_at: clock::now_string(),
            updated_at: clock::now_string(),
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    // The first sweep reads the whole store; the ones after are timed.
    ctl.sweep_routers().await.unwrap();
    ctl
}

fn sweep(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctl = rt.block_on(controller(dir.path()));
    let mut g = c.benchmark_group("sweep_10k_api_sessions");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("full", |b| {
        b.iter(|| rt.block_on(ctl.resync_routers()).unwrap());
    });
    g.bench_function("timed", |b| {
        b.iter(|| rt.block_on(ctl.sweep_routers()).unwrap());
    });
    g.finish();
}

criterion_group!(benches, sweep);
criterion_main!(benches);
