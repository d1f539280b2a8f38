//! Posture checks through the APIs of a real controller process: check documents and
//! their refusals, posture responses and their refusals, `postureQueries`, the
//! `INVALID_POSTURE` refusal of a session, and sessions removed when posture stops
//! passing (a new report, an edited check).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{Value, json};
use weft_testkit::Ctl;

struct Setup {
    ctl: Ctl,
    admin: String,
    identity: String,
    service: String,
    check: String,
    /// The identity's client session token and client.
    token: String,
}

async fn setup() -> Setup {
    let ctl = Ctl::start_with("metrics.listen = \"127.0.0.1:0\"");
    let admin = ctl.admin_token().await;
    let (identity, cert, key) = ctl.enrolled_identity(&admin, "laptop", &["staff"]).await;
    let service = ctl
        .create_ok(
            &admin,
            "services",
            json!({"name": "crm", "roleAttributes": ["crm"]}),
        )
        .await;
    let check = ctl
        .create_ok(
            &admin,
            "posture-checks",
            json!({"name": "linux-5+", "typeId": "OS", "roleAttributes": ["os"],
                   "operatingSystems": [{"type": "Linux", "versions": [">=5.0.0"]}]}),
        )
        .await;
    ctl.create_ok(
        &admin,
        "service-policies",
        json!({"name": "crm-dial", "type": "Dial", "semantic": "AnyOf",
               "identityRoles": ["#staff"], "serviceRoles": ["#crm"], "postureCheckRoles": ["#os"]}),
    )
    .await;
    ctl.create_ok(&admin, "edge-routers", json!({"name": "er"}))
        .await;
    ctl.create_ok(
        &admin,
        "edge-router-policies",
        json!({"name": "erp", "edgeRouterRoles": ["#all"], "identityRoles": ["#all"]}),
    )
    .await;
    ctl.create_ok(
        &admin,
        "service-edge-router-policies",
        json!({"name": "serp", "edgeRouterRoles": ["#all"], "serviceRoles": ["#all"]}),
    )
    .await;
    let (_, token) = ctl.cert_login(&cert, &key).await;
    Setup {
        ctl,
        admin,
        identity,
        service,
        check,
        token,
    }
}

impl Setup {
    async fn client(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.ctl.call_client(method, path, &self.token, body).await
    }

    async fn dial(&self) -> (u16, Value) {
        self.client(
            Method::POST,
            "/sessions",
            Some(json!({"serviceId": self.service, "type": "Dial"})),
        )
        .await
    }

    async fn report_linux(&self, version: &str) {
        let (status, v) = self
            .client(
                Method::POST,
                "/posture-response",
                Some(
                    json!({"id": self.check, "typeId": "OS", "type": "Linux", "version": version}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["data"]["services"], json!([]));
    }

    async fn session_exists(&self, id: &str) -> bool {
        let (status, v) = self
            .client(Method::GET, &format!("/sessions/{id}"), None)
            .await;
        assert!(status == 200 || status == 404, "{v}");
        status == 200
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_needs_passing_posture_and_loses_it_when_posture_fails() {
    let s = setup().await;
    // Nothing reported: the service is listed with a failing query, and a session is
    // refused with the failing policy and check named.
    let (status, v) = s.client(Method::GET, "/services", None).await;
    assert_eq!(status, 200);
    let sets = &v["data"][0]["postureQueries"];
    assert_eq!(sets.as_array().unwrap().len(), 1, "{sets}");
    assert_eq!(sets[0]["isPassing"], false);
    assert_eq!(sets[0]["policyType"], "Dial");
    let q = &sets[0]["postureQueries"][0];
    assert_eq!(q["id"], s.check.as_str());
    assert_eq!(q["queryType"], "OS");
    assert_eq!(q["isPassing"], false);
    assert_eq!(q["timeout"], -1);
    let (status, v) = s.dial().await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "INVALID_POSTURE");
    let policy = sets[0]["policyId"].as_str().unwrap();
    assert_eq!(
        v["error"]["cause"]["data"][policy],
        json!([{"id": s.check, "typeId": "OS", "isPassing": false}])
    );
    assert!(
        v["error"]["cause"]["message"]
            .as_str()
            .unwrap()
            .contains(policy)
    );
    let failed = s
        .ctl
        .get_ok(
            &s.admin,
            &format!("/identities/{}/failed-service-requests", s.identity),
        )
        .await;
    assert_eq!(failed["data"][0]["serviceId"], s.service.as_str());
    assert_eq!(failed["data"][0]["sessionType"], "Dial");
    assert_eq!(
        failed["data"][0]["policyFailures"][0]["checks"][0]["postureCheckName"],
        "linux-5+"
    );
    assert!(s.ctl.metric("weft_controller_posture_refusals_total") >= 1);

    // A good report: the query passes and the session is granted.
    s.report_linux("6.1.0").await;
    let (_, v) = s.client(Method::GET, "/services", None).await;
    assert_eq!(v["data"][0]["postureQueries"][0]["isPassing"], true);
    let (status, v) = s.dial().await;
    assert_eq!(status, 201, "{v}");
    let session = v["data"]["id"].as_str().unwrap().to_owned();
    let data = s
        .ctl
        .get_ok(
            &s.admin,
            &format!("/identities/{}/posture-data", s.identity),
        )
        .await;
    assert_eq!(data["data"]["os"]["version"], "6.1.0");
    assert_eq!(data["data"]["os"]["postureCheckId"], s.check.as_str());

    // The same report again changes nothing; an older kernel ends the session at once.
    s.report_linux("6.1.0").await;
    assert!(s.session_exists(&session).await);
    s.report_linux("4.19.0").await;
    assert!(
        !s.session_exists(&session).await,
        "posture failed: session removed"
    );
    assert!(s.ctl.metric("weft_controller_posture_revocations_total") >= 1);

    // Back to a passing kernel, then the administrator tightens the check: the session
    // goes, and the check's version counts the edit.
    s.report_linux("6.1.0").await;
    let (status, v) = s.dial().await;
    assert_eq!(status, 201, "{v}");
    let session = v["data"]["id"].as_str().unwrap().to_owned();
    let (status, v) = s
        .ctl
        .call(
            Method::PATCH,
            &format!("/posture-checks/{}", s.check),
            &s.admin,
            Some(json!({"typeId": "OS", "operatingSystems": [{"type": "Linux", "versions": [">=7.0.0"]}]})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(
        !s.session_exists(&session).await,
        "edited check: session removed"
    );
    let detail = s
        .ctl
        .get_ok(&s.admin, &format!("/posture-checks/{}", s.check))
        .await;
    assert_eq!(detail["data"]["version"], 2);
    assert_eq!(
        detail["data"]["operatingSystems"][0]["versions"],
        json!([">=7.0.0"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mfa_check_needs_a_totp_answer_in_this_api_session() {
    let s = setup().await;
    s.ctl
        .create_ok(
            &s.admin,
            "posture-checks",
            json!({"name": "mfa", "typeId": "MFA", "roleAttributes": ["os"], "timeoutSeconds": 600}),
        )
        .await;
    s.report_linux("6.1.0").await;
    // Both checks are on the policy; OS passes, MFA does not (no TOTP answered).
    let (status, v) = s.dial().await;
    assert_eq!(status, 409, "{v}");
    let (_, v) = s.client(Method::GET, "/services", None).await;
    let queries = v["data"][0]["postureQueries"][0]["postureQueries"]
        .as_array()
        .unwrap()
        .clone();
    let mfa = queries.iter().find(|q| q["queryType"] == "MFA").unwrap();
    assert_eq!(mfa["isPassing"], false);
    assert_eq!(mfa["timeout"], 600);
    assert_eq!(mfa["timeoutRemaining"], 0);
    // ENDPOINT_STATE is accepted (bulk) and lists nothing while MFA was never passed.
    let (status, v) = s
        .client(
            Method::POST,
            "/posture-response-bulk",
            Some(
                json!([{"id": "0", "typeId": "ENDPOINT_STATE", "woken": true, "unlocked": false}]),
            ),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["services"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_checks_and_bad_responses_are_refused_and_change_nothing() {
    let s = setup().await;
    for bad in [
        json!({"name": "x", "typeId": "NOPE"}),
        json!({"name": "x"}),
        json!({"name": "x", "typeId": "OS", "operatingSystems": []}),
        json!({"name": "x", "typeId": "OS", "operatingSystems": [{"type": "Linux", "versions": [">=banana"]}]}),
        json!({"name": "x", "typeId": "MAC", "macAddresses": ["not-a-mac"]}),
        json!({"name": "x", "typeId": "MAC", "macAddresses": ["aa:bb:cc:dd:ee:ff"], "bogus": 1}),
        json!({"name": "x", "typeId": "PROCESS", "process": {"osType": "Linux"}}),
        json!({"name": "x", "typeId": "DOMAIN", "domains": ["ok"], "roleAttributes": ["#bad"]}),
    ] {
        let (status, v) = s.ctl.create(&s.admin, "posture-checks", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "COULD_NOT_VALIDATE", "{bad}");
    }
    let list = s.ctl.get_ok(&s.admin, "/posture-checks").await;
    assert_eq!(list["meta"]["pagination"]["totalCount"], 1);
    // A MAC check normalises its addresses.
    let mac = s
        .ctl
        .create_ok(
            &s.admin,
            "posture-checks",
            json!({"name": "mac", "typeId": "MAC", "roleAttributes": ["hw"], "macAddresses": ["AA-BB-CC-DD-EE-FF"]}),
        )
        .await;
    let v = s
        .ctl
        .get_ok(&s.admin, &format!("/posture-checks/{mac}"))
        .await;
    assert_eq!(v["data"]["macAddresses"], json!(["aabbccddeeff"]));
    assert_eq!(v["data"]["version"], 1);
    let attrs = s
        .ctl
        .get_ok(&s.admin, "/posture-check-role-attributes")
        .await;
    assert_eq!(attrs["data"], json!(["hw", "os"]));
    let types = s.ctl.get_ok(&s.admin, "/posture-check-types").await;
    assert_eq!(types["meta"]["pagination"]["totalCount"], 5);

    for (path, bad) in [
        (
            "/posture-response",
            json!({"typeId": "OS", "type": "Linux", "version": "6.1.0"}),
        ),
        ("/posture-response", json!({"id": "x", "type": "Linux"})),
        ("/posture-response", json!({"id": "x", "typeId": "OS"})),
        ("/posture-response", json!({"id": "x", "typeId": "WHAT"})),
        (
            "/posture-response",
            json!([{"id": "x", "typeId": "DOMAIN", "domain": "d"}]),
        ),
        (
            "/posture-response",
            json!({"id": "x", "typeId": "MAC", "macAddresses": 7}),
        ),
        (
            "/posture-response-bulk",
            json!({"id": "x", "typeId": "DOMAIN", "domain": "d"}),
        ),
        (
            "/posture-response-bulk",
            Value::Array(vec![
                json!({"id": "x", "typeId": "DOMAIN", "domain": "d"});
                65
            ]),
        ),
        // One bad response spoils the whole bulk: nothing of it is stored.
        (
            "/posture-response-bulk",
            json!([{"id": "x", "typeId": "DOMAIN", "domain": "stored?"}, {"id": "y", "typeId": "OS"}]),
        ),
    ] {
        let (status, v) = s.client(Method::POST, path, Some(bad.clone())).await;
        assert_eq!(status, 400, "{path} {bad}: {v}");
        assert_eq!(v["error"]["code"], "COULD_NOT_VALIDATE", "{bad}");
    }
    let data = s
        .ctl
        .get_ok(
            &s.admin,
            &format!("/identities/{}/posture-data", s.identity),
        )
        .await;
    assert_eq!(data["data"]["domain"]["domain"], "", "nothing was stored");
    // Unauthenticated posture responses are refused before the body is looked at.
    let (status, _) = s
        .ctl
        .call_client(
            Method::POST,
            "/posture-response",
            "not-a-session",
            Some(json!({"id": "x", "typeId": "DOMAIN", "domain": "d"})),
        )
        .await;
    assert_eq!(status, 401);
}

/// The TOTP secret of the caller's new MFA enrollment.
async fn enroll_mfa(s: &Setup) -> String {
    let (status, v) = s.client(Method::POST, "/current-identity/mfa", None).await;
    assert_eq!(status, 201, "{v}");
    let (_, v) = s.client(Method::GET, "/current-identity/mfa", None).await;
    let url = v["data"]["provisioningUrl"].as_str().unwrap();
    url.split("secret=").nth(1).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mfa_check_passes_after_a_totp_answer_until_its_timeout() {
    let s = setup().await;
    // Only an MFA check, of 3 s, on the policy.
    let (status, v) = s
        .ctl
        .call(
            Method::DELETE,
            &format!("/posture-checks/{}", s.check),
            &s.admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    s.ctl
        .create_ok(
            &s.admin,
            "posture-checks",
            json!({"name": "mfa-3s", "typeId": "MFA", "roleAttributes": ["os"], "timeoutSeconds": 3}),
        )
        .await;
    let secret = enroll_mfa(&s).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = weft_controller::auth::totp::code_at(&secret, now).unwrap();
    let (status, v) = s
        .client(
            Method::POST,
            "/current-identity/mfa/verify",
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    // The verify answered TOTP in this API session: the check passes, a session is made.
    let (status, v) = s.dial().await;
    assert_eq!(status, 201, "{v}");
    let session = v["data"]["id"].as_str().unwrap().to_owned();
    let (_, v) = s.client(Method::GET, "/services", None).await;
    let q = &v["data"][0]["postureQueries"][0]["postureQueries"][0];
    assert_eq!(q["queryType"], "MFA");
    assert_eq!(q["isPassing"], true);
    let remaining = q["timeoutRemaining"].as_i64().unwrap();
    assert!((0..=3).contains(&remaining), "{q}");
    // Past the timeout, the controller's sweep removes the session (within its period).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s.session_exists(&session).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the session outlived its MFA check"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let (status, v) = s.dial().await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "INVALID_POSTURE");
}
