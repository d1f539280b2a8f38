//! The controller's operations endpoint and security events, on a real process:
//! `/health`, `/ready`, API requests by route and status, authentications by method
//! and result, the router-view gauges, process metrics; failed logins and refused
//! enrollments logged at WARN with their stable `event` field (JSON log lines), and
//! every administrative end of access logged with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_testkit::Ctl;

/// The log lines (JSON objects) whose `event` is `event`, waiting up to 10 s for one.
fn events(ctl: &Ctl, event: &str) -> Vec<Value> {
    events_where(ctl, event, |_| true)
}

/// The log lines whose `event` is `event` and that `keep` accepts, waiting up to 10 s
/// for one.
fn events_where(ctl: &Ctl, event: &str, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(ctl.log_file()).unwrap_or_default();
        let found: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == event && keep(v))
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The one `access_revoked` line with this cause, checked for its level, subject and
/// counts.
fn revoked(ctl: &Ctl, cause: &str, subject: &str, api_sessions: u64, sessions: u64) {
    let found = events_where(ctl, "access_revoked", |v| v["cause"] == cause);
    assert_eq!(found.len(), 1, "{cause}: {found:?}");
    let v = &found[0];
    assert_eq!(v["level"], "WARN", "{v}");
    assert_eq!(v["subject"], subject, "{v}");
    assert_eq!(v["api_sessions"], api_sessions, "{v}");
    assert_eq!(v["sessions"], sessions, "{v}");
}

/// An enrolled identity allowed to dial a service (by a Dial policy) through an edge
/// router the routers' view knows.
struct Dialer {
    identity: String,
    cert: String,
    key: String,
    service: String,
    policy: String,
}

/// Makes a [`Dialer`] named `name`.
async fn dialer(ctl: &Ctl, admin: &str, name: &str) -> Dialer {
    let (identity, cert, key) = ctl.enrolled_identity(admin, name, &["dialers"]).await;
    let service = ctl
        .create_ok(
            admin,
            "services",
            json!({"name": "svc", "roleAttributes": ["svc"]}),
        )
        .await;
    let policy = ctl
        .create_ok(
            admin,
            "service-policies",
            json!({"name": "dial", "type": "Dial", "semantic": "AnyOf",
                   "identityRoles": ["#dialers"], "serviceRoles": ["#svc"]}),
        )
        .await;
    ctl.create_ok(
        admin,
        "edge-routers",
        json!({"name": "er1", "roleAttributes": ["er"],
               "supportedProtocols": {"tls": "tls://er1.test:3022"}}),
    )
    .await;
    ctl.admin().await.open_routers().await;
    Dialer {
        identity,
        cert,
        key,
        service,
        policy,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_endpoint_counts_requests_and_logins_and_logs_security_events() {
    let ctl = Ctl::start_with_json_log("metrics.listen = \"127.0.0.1:0\"");
    let health = ctl.ops_get("/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let ready = ctl.ops_get("/ready");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

    let http = ctl.http();
    let wrong = http
        .post(ctl.mgmt("/authenticate?method=password"))
        .json(&json!({"username": "admin", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let admin = ctl.admin_token().await;
    let enroll = http
        .post(ctl.url("/edge/client/v1/enroll?method=ott&token=no-such-token"))
        .header("content-type", "application/x-pem-file")
        .body("not a CSR")
        .send()
        .await
        .unwrap();
    assert!(enroll.status().is_client_error(), "{}", enroll.status());
    let _ = ctl.get_ok(&admin, "/identities").await;

    let text = ctl.metrics();
    for line in [
        "weft_controller_authentications_total{method=\"password\",result=\"failure\"} 1",
        "weft_controller_authentications_total{method=\"password\",result=\"success\"} 1",
        "weft_controller_http_requests_total{method=\"POST\",route=\"/edge/management/v1/authenticate\",status=\"401\"} 1",
        "weft_controller_http_requests_total{method=\"GET\",route=\"/edge/management/v1/identities\",status=\"200\"} 1",
        "weft_controller_http_request_duration_seconds_count{method=\"GET\",route=\"/edge/management/v1/identities\"} 1",
        "weft_build_info{component=\"controller\",version=\"",
    ] {
        assert!(text.contains(line), "no {line} in\n{text}");
    }
    for gauge in [
        "weft_controller_api_sessions ",
        "weft_controller_routers_connected 0",
        "weft_controller_change_log_lag ",
        "process_resident_memory_bytes ",
    ] {
        assert!(
            text.contains(&format!("\n{gauge}")),
            "no {gauge} in\n{text}"
        );
    }

    let failed = events(&ctl, "login_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["level"], "WARN");
    assert_eq!(failed[0]["method"], "password");
    assert_eq!(failed[0]["source"], "127.0.0.1");
    assert_eq!(failed[0]["code"], "INVALID_AUTH");
    let refused = events(&ctl, "enrollment_refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["level"], "WARN");
    assert_eq!(refused[0]["route"], "/edge/client/v1/enroll");
    assert!(refused[0]["code"].as_str().is_some_and(|c| !c.is_empty()));

    // A session that a policy no longer grants is revoked, at WARN.
    let Dialer {
        cert,
        key,
        service,
        policy,
        ..
    } = dialer(&ctl, &admin, "dora").await;
    let (_, token) = ctl.cert_login(&cert, &key).await;
    let (status, v) = ctl
        .call_client(
            reqwest::Method::POST,
            "/sessions",
            &token,
            Some(json!({"serviceId": service, "type": "Dial"})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, _) = ctl
        .call(
            reqwest::Method::DELETE,
            &format!("/service-policies/{policy}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let revoked = events(&ctl, "sessions_revoked");
    assert_eq!(revoked[0]["level"], "WARN", "{revoked:?}");
    assert_eq!(revoked[0]["count"], 1, "{revoked:?}");
}

/// Every way an administrator ends access (a session or API session deleted, the
/// identity disabled, the service deleted) is one `access_revoked` line at WARN with
/// its cause and what it removed; a client ending its own session is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_access_is_logged_with_its_cause() {
    let ctl = Ctl::start_with_json_log("");
    let admin = ctl.admin_token().await;
    let Dialer {
        identity,
        cert,
        key,
        service,
        ..
    } = dialer(&ctl, &admin, "eve").await;
    let dial = |token: String| {
        let ctl = &ctl;
        let service = service.clone();
        async move {
            let (status, v) = ctl
                .call_client(
                    reqwest::Method::POST,
                    "/sessions",
                    &token,
                    Some(json!({"serviceId": service, "type": "Dial"})),
                )
                .await;
            assert_eq!(status, 201, "{v}");
            v["data"]["id"].as_str().unwrap().to_owned()
        }
    };
    let delete = |path: String| {
        let ctl = &ctl;
        let admin = admin.clone();
        async move {
            let (status, v) = ctl.call(reqwest::Method::DELETE, &path, &admin, None).await;
            assert_eq!(status, 200, "DELETE {path}: {v}");
        }
    };

    // The client ends its own session: not a revocation.
    let (_, token) = ctl.cert_login(&cert, &key).await;
    let own = dial(token.clone()).await;
    let (status, v) = ctl
        .call_client(
            reqwest::Method::DELETE,
            &format!("/sessions/{own}"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");

    let session = dial(token.clone()).await;
    delete(format!("/sessions/{session}")).await;
    revoked(&ctl, "session_deleted", &session, 0, 1);

    dial(token.clone()).await;
    let (status, current) = ctl
        .call_client(reqwest::Method::GET, "/current-api-session", &token, None)
        .await;
    assert_eq!(status, 200, "{current}");
    let api_session = current["data"]["id"].as_str().unwrap().to_owned();
    delete(format!("/api-sessions/{api_session}")).await;
    revoked(&ctl, "api_session_deleted", &api_session, 1, 1);

    let (_, token) = ctl.cert_login(&cert, &key).await;
    dial(token).await;
    let (status, v) = ctl
        .call(
            reqwest::Method::POST,
            &format!("/identities/{identity}/disable"),
            &admin,
            Some(json!({"durationMinutes": 0})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    revoked(&ctl, "identity_disabled", &identity, 1, 1);
    let (status, v) = ctl
        .call(
            reqwest::Method::POST,
            &format!("/identities/{identity}/enable"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");

    let (_, token) = ctl.cert_login(&cert, &key).await;
    dial(token).await;
    delete(format!("/services/{service}")).await;
    revoked(&ctl, "service_deleted", &service, 0, 1);

    // Nothing else was logged as a revocation: not the client's own close.
    let all = events(&ctl, "access_revoked");
    assert_eq!(all.len(), 4, "{all:?}");
}
