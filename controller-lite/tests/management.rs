//! Management API: security records (authenticators, enrollments, API sessions,
//! sessions), related lists, and what deletes and updates do to referencing entities.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{Value, json};
use weft_testkit::Ctl;

fn ids(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

fn code(r: &(u16, Value)) -> (u16, &str) {
    (r.0, r.1["error"]["code"].as_str().unwrap_or(""))
}

/// Password login on the management API.
async fn login(ctl: &Ctl, username: &str, password: &str) -> (u16, Value) {
    let res = ctl
        .http()
        .post(ctl.mgmt("/authenticate?method=password"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn authenticators_and_enrollments() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let (alice, cert, key) = ctl.enrolled_identity(&admin, "alice", &[]).await;
    let bob = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "bob", "type": "User", "isAdmin": true}),
        )
        .await;

    // alice has one cert authenticator, shown on her detail and in the lists.
    let (_, v) = ctl
        .call(
            Method::GET,
            &format!("/identities/{alice}/authenticators"),
            &admin,
            None,
        )
        .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let cert_auth = v["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["data"][0]["method"], "cert");
    assert_eq!(v["data"][0]["identity"]["name"], "alice");
    assert!(v["data"][0].get("passwordHash").is_none());
    let (_, v) = ctl
        .call(Method::GET, &format!("/identities/{alice}"), &admin, None)
        .await;
    assert!(v["data"]["authenticators"]["cert"]["fingerprint"].is_string());
    let (_, v) = ctl
        .call(
            Method::GET,
            "/authenticators?filter=method%3D%22updb%22",
            &admin,
            None,
        )
        .await;
    assert_eq!(
        v["meta"]["pagination"]["totalCount"], 1,
        "only the admin's: {v}"
    );

    // A password for bob; then he can log in.
    let create = |body: Value| ctl.call(Method::POST, "/authenticators", &admin, Some(body));
    let r = create(
        json!({"method": "updb", "identityId": bob, "username": "bob", "password": "pw-one"}),
    )
    .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let bob_auth = r.1["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(login(&ctl, "bob", "pw-one").await.0, 200);
    // Refusals change nothing.
    let r = create(
        json!({"method": "updb", "identityId": bob, "username": "bob2", "password": "long-pw"}),
    )
    .await;
    assert_eq!(code(&r), (409, "MAX_AUTHENTICATOR_METHODS_REACHED"));
    let r = create(
        json!({"method": "updb", "identityId": alice, "username": "bob", "password": "long-pw"}),
    )
    .await;
    assert_eq!(code(&r), (409, "DUPLICATE_NAME"));
    let r = create(json!({"method": "cert", "identityId": alice})).await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"));
    let r = create(
        json!({"method": "updb", "identityId": "nope", "username": "n", "password": "long-pw"}),
    )
    .await;
    assert_eq!(code(&r), (404, "NOT_FOUND"));
    let r = create(json!({"method": "updb", "identityId": alice, "username": "a", "password": "long-pw", "extra": 1})).await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"));
    let (_, v) = ctl
        .call(
            Method::GET,
            &format!("/identities/{alice}/authenticators"),
            &admin,
            None,
        )
        .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);

    // PATCH the password, PUT both; cert authenticators cannot be updated.
    let path = format!("/authenticators/{bob_auth}");
    let r = ctl
        .call(
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"password": "pw-two"})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(login(&ctl, "bob", "pw-two").await.0, 200);
    let r = ctl
        .call(
            Method::PUT,
            &path,
            &admin,
            Some(json!({"username": "robert", "password": "pw-three"})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(login(&ctl, "robert", "pw-three").await.0, 200);
    assert_eq!(login(&ctl, "bob", "pw-two").await.0, 401);
    let r = ctl
        .call(
            Method::PUT,
            &path,
            &admin,
            Some(json!({"username": "robert"})),
        )
        .await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"));
    let r = ctl
        .call(
            Method::PATCH,
            &format!("/authenticators/{cert_auth}"),
            &admin,
            Some(json!({"username": "x"})),
        )
        .await;
    assert_eq!(code(&r), (409, "CAN_NOT_UPDATE_AUTHENTICATOR"));
    let (_, v) = ctl.call(Method::GET, &path, &admin, None).await;
    assert_eq!(v["data"]["username"], "robert");

    // The default admin's password cannot be deleted.
    let (_, v) = ctl
        .call(
            Method::GET,
            "/authenticators?filter=username%3D%22admin%22",
            &admin,
            None,
        )
        .await;
    let admin_auth = ids(&v).remove(0);
    let r = ctl
        .call(
            Method::DELETE,
            &format!("/authenticators/{admin_auth}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(code(&r), (400, "ENTITY_CAN_NOT_BE_DELETED"));

    // Deleting alice's certificate ends the API sessions it opened.
    let (http, token) = ctl.cert_login(&cert, &key).await;
    let ok = http
        .get(ctl.client_url("/current-identity"))
        .header("zt-session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // A new enrollment is refused while the certificate exists.
    let enrollment = json!({"method": "ott", "identityId": alice});
    let r = ctl
        .call(
            Method::POST,
            "/enrollments",
            &admin,
            Some(enrollment.clone()),
        )
        .await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"));
    let r = ctl
        .call(
            Method::DELETE,
            &format!("/authenticators/{cert_auth}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let gone = http
        .get(ctl.client_url("/current-identity"))
        .header("zt-session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 401);

    // Re-enrollment: a new OTT enrollment, listed, shown on the identity, deletable.
    let r = ctl
        .call(
            Method::POST,
            "/enrollments",
            &admin,
            Some(
                json!({"method": "ott", "identityId": alice, "expiresAt": "2001-01-01T00:00:00Z"}),
            ),
        )
        .await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"));
    let r = ctl
        .call(
            Method::POST,
            "/enrollments",
            &admin,
            Some(enrollment.clone()),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let enr = r.1["data"]["id"].as_str().unwrap().to_owned();
    let r = ctl
        .call(
            Method::POST,
            "/enrollments",
            &admin,
            Some(enrollment.clone()),
        )
        .await;
    assert_eq!(
        code(&r),
        (400, "COULD_NOT_VALIDATE"),
        "a second pending one"
    );
    let (_, v) = ctl
        .call(Method::GET, &format!("/enrollments/{enr}"), &admin, None)
        .await;
    assert_eq!(v["data"]["identityId"], json!(alice));
    assert_eq!(v["data"]["method"], "ott");
    let (_, v) = ctl
        .call(Method::GET, &format!("/identities/{alice}"), &admin, None)
        .await;
    assert_eq!(v["data"]["enrollment"]["ott"]["id"], json!(enr));
    let (_, v) = ctl
        .call(
            Method::GET,
            &format!("/identities/{alice}/enrollments"),
            &admin,
            None,
        )
        .await;
    assert_eq!(ids(&v), std::slice::from_ref(&enr));
    // Refresh: a new token and expiry; the old JWT's token no longer enrolls.
    let old_token = v["data"][0]["token"].as_str().unwrap().to_owned();
    let r = ctl
        .call(
            Method::POST,
            &format!("/enrollments/{enr}/refresh"),
            &admin,
            Some(json!({"expiresAt": "2999-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let (_, v) = ctl
        .call(Method::GET, &format!("/enrollments/{enr}"), &admin, None)
        .await;
    assert_eq!(v["data"]["expiresAt"], "2999-01-01T00:00:00.000Z");
    assert_ne!(v["data"]["token"], json!(old_token));
    let (csr, _) = weft_testkit::make_csr("alice");
    assert_eq!(ctl.enroll(&old_token, &csr).await.0, 400);
    let r = ctl
        .call(
            Method::POST,
            "/enrollments/nope/refresh",
            &admin,
            Some(json!({"expiresAt": "2999-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(code(&r), (404, "NOT_FOUND"));
    let r = ctl
        .call(Method::DELETE, &format!("/enrollments/{enr}"), &admin, None)
        .await;
    assert_eq!(r.0, 200);
    let r = ctl
        .call(Method::GET, &format!("/enrollments/{enr}"), &admin, None)
        .await;
    assert_eq!(code(&r), (404, "NOT_FOUND"));
    let (_, v) = ctl.call(Method::GET, "/enrollments", &admin, None).await;
    assert_eq!(v["meta"]["pagination"]["totalCount"], 0);
}

/// Sets up an identity that may dial and bind `svc` through router `er1`; returns
/// (identity id, service id, router id, client, API session token).
async fn dial_setup(ctl: &Ctl, admin: &str) -> (String, String, String, reqwest::Client, String) {
    let (id, cert, key) = ctl.enrolled_identity(admin, "carol", &["users"]).await;
    let svc = ctl
        .create_ok(
            admin,
            "services",
            json!({"name": "svc", "roleAttributes": ["s"]}),
        )
        .await;
    for ty in ["Dial", "Bind"] {
        ctl.create_ok(admin, "service-policies", json!({"name": format!("p-{ty}"), "type": ty, "identityRoles": ["#users"], "serviceRoles": ["#s"]})).await;
    }
    let er = ctl
        .create_ok(admin, "edge-routers", json!({"name": "er1", "hostname": "er1.test", "supportedProtocols": {"tls": "tls://er1.test:3022"}}))
        .await;
    ctl.create_ok(
        admin,
        "edge-router-policies",
        json!({"name": "erp", "edgeRouterRoles": ["#all"], "identityRoles": ["#all"]}),
    )
    .await;
    ctl.create_ok(
        admin,
        "service-edge-router-policies",
        json!({"name": "serp", "edgeRouterRoles": ["#all"], "serviceRoles": ["#all"]}),
    )
    .await;
    let (http, token) = ctl.cert_login(&cert, &key).await;
    (id, svc, er, http, token)
}

async fn new_session(
    ctl: &Ctl,
    http: &reqwest::Client,
    token: &str,
    svc: &str,
    ty: &str,
) -> (u16, Value) {
    let res = http
        .post(ctl.client_url("/sessions"))
        .header("zt-session", token)
        .json(&json!({"serviceId": svc, "type": ty}))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn sessions_api_sessions_related_lists_and_cascades() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let (carol, svc, er, http, token) = dial_setup(&ctl, &admin).await;
    let r = new_session(&ctl, &http, &token, &svc, "Dial").await;
    assert_eq!(r.0, 201, "{}", r.1);
    let dial = r.1["data"]["id"].as_str().unwrap().to_owned();
    let r = new_session(&ctl, &http, &token, &svc, "Bind").await;
    let bind = r.1["data"]["id"].as_str().unwrap().to_owned();

    // Sessions and API sessions, filtered.
    let (_, v) = ctl
        .call(
            Method::GET,
            "/sessions?filter=type%3D%22Dial%22",
            &admin,
            None,
        )
        .await;
    assert_eq!(ids(&v), std::slice::from_ref(&dial));
    assert_eq!(v["data"][0]["service"]["name"], "svc");
    assert_eq!(v["data"][0]["identity"]["name"], "carol");
    let (_, v) = ctl
        .call(Method::GET, &format!("/sessions/{bind}"), &admin, None)
        .await;
    assert_eq!(v["data"]["type"], "Bind");
    // No circuit routed across routers: an empty route path (tests/tests/mesh.rs has
    // one with a path); an unknown session is 404.
    let v = ctl
        .get_ok(&admin, &format!("/sessions/{dial}/route-path"))
        .await;
    assert_eq!(v["data"], json!({"routePath": []}));
    let r = ctl
        .call(Method::GET, "/sessions/nope/route-path", &admin, None)
        .await;
    assert_eq!(code(&r), (404, "NOT_FOUND"));
    let (_, v) = ctl
        .call(
            Method::GET,
            &format!("/api-sessions?filter=identityId%3D%22{carol}%22"),
            &admin,
            None,
        )
        .await;
    let carol_session = ids(&v).remove(0);
    let (_, v) = ctl.call(Method::GET, "/api-sessions", &admin, None).await;
    assert_eq!(v["meta"]["pagination"]["totalCount"], 2);
    let r = ctl
        .call(Method::DELETE, &format!("/sessions/{bind}"), &admin, None)
        .await;
    assert_eq!(r.0, 200);
    let r = ctl
        .call(Method::DELETE, &format!("/sessions/{bind}"), &admin, None)
        .await;
    assert_eq!(code(&r), (404, "NOT_FOUND"));

    // Related lists.
    let (_, v) = ctl
        .call(
            Method::GET,
            &format!("/identities/{carol}/services"),
            &admin,
            None,
        )
        .await;
    assert_eq!(ids(&v), std::slice::from_ref(&svc));
    assert_eq!(v["data"][0]["permissions"], json!(["Dial", "Bind"]));
    let (_, v) = ctl
        .call(
            Method::GET,
            &format!("/identities/{carol}/edge-routers"),
            &admin,
            None,
        )
        .await;
    assert_eq!(ids(&v), std::slice::from_ref(&er));
    // The other way round: a service's identities and routers, a router's identities
    // and services (what policies select).
    for (path, want) in [
        (format!("/services/{svc}/identities"), &carol),
        (format!("/services/{svc}/edge-routers"), &er),
        (format!("/edge-routers/{er}/services"), &svc),
        (format!("/edge-routers/{er}/identities"), &carol),
    ] {
        let (status, v) = ctl.call(Method::GET, &path, &admin, None).await;
        assert_eq!(status, 200, "{path}: {v}");
        assert!(ids(&v).contains(want), "{path}: {v}");
    }
    let r = ctl
        .call(Method::GET, "/edge-routers/nope/services", &admin, None)
        .await;
    assert_eq!(code(&r), (404, "NOT_FOUND"));
    let term = ctl
        .create_ok(
            &admin,
            "terminators",
            json!({"service": svc, "router": er, "address": "tcp:localhost:1"}),
        )
        .await;
    let (_, v) = ctl
        .call(
            Method::GET,
            &format!("/services/{svc}/terminators"),
            &admin,
            None,
        )
        .await;
    assert_eq!(ids(&v), std::slice::from_ref(&term));
    let r = ctl
        .call(Method::GET, "/services/nope/terminators", &admin, None)
        .await;
    assert_eq!(code(&r), (404, "NOT_FOUND"));

    // Configs: a type in use cannot be deleted; a deleted config leaves its services.
    let (_, v) = ctl
        .call(
            Method::GET,
            "/config-types?filter=name%3D%22host.v1%22",
            &admin,
            None,
        )
        .await;
    let host_v1 = ids(&v).remove(0);
    let cfg = ctl
        .create_ok(
            &admin,
            "configs",
            json!({"name": "h", "configTypeId": "host.v1", "data": {"address": "localhost"}}),
        )
        .await;
    let cfg2 = ctl
        .create_ok(
            &admin,
            "configs",
            json!({"name": "h2", "configTypeId": "host.v1", "data": {}}),
        )
        .await;
    let r = ctl
        .call(
            Method::PATCH,
            &format!("/services/{svc}"),
            &admin,
            Some(json!({"configs": [cfg, cfg2]})),
        )
        .await;
    assert_eq!(
        code(&r),
        (400, "COULD_NOT_VALIDATE"),
        "two configs of one type"
    );
    let r = ctl
        .call(
            Method::PATCH,
            &format!("/services/{svc}"),
            &admin,
            Some(json!({"configs": ["h"]})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let (_, v) = ctl
        .call(
            Method::GET,
            &format!("/services/{svc}/configs"),
            &admin,
            None,
        )
        .await;
    assert_eq!(ids(&v), std::slice::from_ref(&cfg));
    let r = ctl
        .call(
            Method::PATCH,
            &format!("/configs/{cfg}"),
            &admin,
            Some(json!({"configTypeId": "intercept.v1"})),
        )
        .await;
    assert_eq!(
        code(&r),
        (400, "COULD_NOT_VALIDATE"),
        "config type is fixed"
    );
    let r = ctl
        .call(
            Method::DELETE,
            &format!("/config-types/{host_v1}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(code(&r), (400, "ENTITY_CAN_NOT_BE_DELETED"));
    assert!(
        r.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("configs of that type exist")
    );
    let (status, _) = ctl
        .call(
            Method::GET,
            &format!("/config-types/{host_v1}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    for c in [&cfg, &cfg2] {
        assert_eq!(
            ctl.call(Method::DELETE, &format!("/configs/{c}"), &admin, None)
                .await
                .0,
            200
        );
    }
    let (_, v) = ctl
        .call(Method::GET, &format!("/services/{svc}"), &admin, None)
        .await;
    assert_eq!(v["data"]["configs"], json!([]));
    assert_eq!(
        ctl.call(
            Method::DELETE,
            &format!("/config-types/{host_v1}"),
            &admin,
            None
        )
        .await
        .0,
        200
    );

    // Config data must match its type's schema, on create and on update.
    let schema = json!({"type": "object", "required": ["port"], "additionalProperties": false,
                        "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}}});
    ctl.create_ok(
        &admin,
        "config-types",
        json!({"name": "port.v1", "schema": schema}),
    )
    .await;
    let r = ctl
        .call(
            Method::POST,
            "/configs",
            &admin,
            Some(json!({"name": "p", "configTypeId": "port.v1", "data": {"port": 0}})),
        )
        .await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"));
    assert!(
        r.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("data.port"),
        "{}",
        r.1
    );
    let p = ctl
        .create_ok(
            &admin,
            "configs",
            json!({"name": "p", "configTypeId": "port.v1", "data": {"port": 443}}),
        )
        .await;
    let r = ctl
        .call(
            Method::PATCH,
            &format!("/configs/{p}"),
            &admin,
            Some(json!({"data": {"port": 443, "x": 1}})),
        )
        .await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"));
    let (_, v) = ctl
        .call(Method::GET, &format!("/configs/{p}"), &admin, None)
        .await;
    assert_eq!(v["data"]["data"], json!({"port": 443}));

    // Deleting the service removes its sessions and terminators.
    let r = ctl
        .call(Method::DELETE, &format!("/services/{svc}"), &admin, None)
        .await;
    assert_eq!(r.0, 200);
    let (_, v) = ctl.call(Method::GET, "/sessions", &admin, None).await;
    assert_eq!(v["meta"]["pagination"]["totalCount"], 0);
    let (_, v) = ctl.call(Method::GET, "/terminators", &admin, None).await;
    assert_eq!(v["meta"]["pagination"]["totalCount"], 0);

    // Deleting the identity removes its API sessions and authenticators.
    let r = ctl
        .call(
            Method::DELETE,
            &format!("/identities/{carol}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.0, 200);
    let r = ctl
        .call(
            Method::GET,
            &format!("/api-sessions/{carol_session}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(code(&r), (404, "NOT_FOUND"));
    let (_, v) = ctl.call(Method::GET, "/authenticators", &admin, None).await;
    assert_eq!(v["meta"]["pagination"]["totalCount"], 1);
    let res = http
        .get(ctl.client_url("/current-identity"))
        .header("zt-session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // An admin can end its own API session from the list.
    let (_, v) = ctl.call(Method::GET, "/api-sessions", &admin, None).await;
    let own = ids(&v).remove(0);
    assert_eq!(
        ctl.call(
            Method::DELETE,
            &format!("/api-sessions/{own}"),
            &admin,
            None
        )
        .await
        .0,
        200
    );
    let r = ctl.call(Method::GET, "/api-sessions", &admin, None).await;
    assert_eq!(code(&r), (401, "UNAUTHORIZED"));
}

/// The ids of the list at `path`, sorted (after a 200).
async fn sorted_ids(ctl: &Ctl, admin: &str, path: &str) -> Vec<String> {
    let (status, v) = ctl.call(Method::GET, path, admin, None).await;
    assert_eq!(status, 200, "{path}: {v}");
    let mut out = ids(&v);
    out.sort();
    out
}

fn sorted(items: &[&String]) -> Vec<String> {
    let mut out: Vec<String> = items.iter().map(|s| (*s).clone()).collect();
    out.sort();
    out
}

#[tokio::test]
async fn policy_and_config_related_lists_and_summary() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let identity = |name: &str, attrs: &[&str]| json!({"name": name, "type": "User", "isAdmin": false, "roleAttributes": attrs});
    let alice = ctl
        .create_ok(&admin, "identities", identity("alice", &["users", "eng"]))
        .await;
    let bob = ctl
        .create_ok(&admin, "identities", identity("bob", &["users"]))
        .await;
    let carl = ctl
        .create_ok(&admin, "identities", identity("carl", &[]))
        .await;
    let service = |name: &str, attrs: &[&str]| json!({"name": name, "roleAttributes": attrs});
    let s1 = ctl
        .create_ok(&admin, "services", service("s1", &["web"]))
        .await;
    let s2 = ctl
        .create_ok(&admin, "services", service("s2", &["web", "db"]))
        .await;
    let s3 = ctl.create_ok(&admin, "services", service("s3", &[])).await;
    let er1 = ctl
        .create_ok(
            &admin,
            "edge-routers",
            json!({"name": "er1", "roleAttributes": ["edge"]}),
        )
        .await;
    let er2 = ctl
        .create_ok(&admin, "edge-routers", json!({"name": "er2"}))
        .await;
    // AllOf: alice (users and eng), not bob (users only).
    let sp_all = ctl
        .create_ok(
            &admin,
            "service-policies",
            json!({"name": "sp-all", "type": "Dial", "semantic": "AllOf",
                   "identityRoles": ["#users", "#eng"], "serviceRoles": ["#web"]}),
        )
        .await;
    // AnyOf with an @ref by id and one by name.
    let sp_any = ctl
        .create_ok(
            &admin,
            "service-policies",
            json!({"name": "sp-any", "type": "Bind", "semantic": "AnyOf",
                   "identityRoles": ["#eng", format!("@{carl}")], "serviceRoles": ["@s3"]}),
        )
        .await;
    let erp = ctl
        .create_ok(
            &admin,
            "edge-router-policies",
            json!({"name": "erp", "semantic": "AnyOf",
                   "identityRoles": ["#users"], "edgeRouterRoles": ["#edge"]}),
        )
        .await;
    let serp = ctl
        .create_ok(
            &admin,
            "service-edge-router-policies",
            json!({"name": "serp", "semantic": "AllOf",
                   "serviceRoles": ["#web", "#db"], "edgeRouterRoles": ["#all"]}),
        )
        .await;

    // What each policy selects.
    for (path, want) in [
        (
            format!("/service-policies/{sp_all}/identities"),
            vec![&alice],
        ),
        (
            format!("/service-policies/{sp_all}/services"),
            vec![&s1, &s2],
        ),
        (
            format!("/service-policies/{sp_any}/identities"),
            vec![&alice, &carl],
        ),
        (format!("/service-policies/{sp_any}/services"), vec![&s3]),
        (
            format!("/edge-router-policies/{erp}/identities"),
            vec![&alice, &bob],
        ),
        (
            format!("/edge-router-policies/{erp}/edge-routers"),
            vec![&er1],
        ),
        (
            format!("/service-edge-router-policies/{serp}/services"),
            vec![&s2],
        ),
        (
            format!("/service-edge-router-policies/{serp}/edge-routers"),
            vec![&er1, &er2],
        ),
        // The policies selecting an entity; none select bob's service policies, carl's
        // edge router policies, s1's service edge router policies or er2's edge router
        // policies.
        (
            format!("/identities/{alice}/service-policies"),
            vec![&sp_all, &sp_any],
        ),
        (format!("/identities/{bob}/service-policies"), vec![]),
        (
            format!("/identities/{carl}/service-policies"),
            vec![&sp_any],
        ),
        (
            format!("/identities/{bob}/edge-router-policies"),
            vec![&erp],
        ),
        (format!("/identities/{carl}/edge-router-policies"), vec![]),
        (format!("/services/{s1}/service-policies"), vec![&sp_all]),
        (format!("/services/{s3}/service-policies"), vec![&sp_any]),
        (
            format!("/services/{s2}/service-edge-router-policies"),
            vec![&serp],
        ),
        (
            format!("/services/{s1}/service-edge-router-policies"),
            vec![],
        ),
        (
            format!("/edge-routers/{er1}/edge-router-policies"),
            vec![&erp],
        ),
        (format!("/edge-routers/{er2}/edge-router-policies"), vec![]),
        (
            format!("/edge-routers/{er2}/service-edge-router-policies"),
            vec![&serp],
        ),
    ] {
        assert_eq!(
            sorted_ids(&ctl, &admin, &path).await,
            sorted(&want),
            "{path}"
        );
    }
    // Paged and filtered like any list.
    let (_, v) = ctl
        .call(
            Method::GET,
            &format!("/service-policies/{sp_all}/services?limit=1"),
            &admin,
            None,
        )
        .await;
    assert_eq!(ids(&v).len(), 1);
    assert_eq!(v["meta"]["pagination"]["totalCount"], 2);
    let (_, v) = ctl
        .call(
            Method::GET,
            &format!("/service-policies/{sp_all}/services?filter=name%3D%22s2%22"),
            &admin,
            None,
        )
        .await;
    assert_eq!(ids(&v), std::slice::from_ref(&s2));
    // A policy change shows at once.
    let r = ctl
        .call(
            Method::PATCH,
            &format!("/identities/{bob}"),
            &admin,
            Some(json!({"roleAttributes": ["users", "eng"]})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(
        sorted_ids(
            &ctl,
            &admin,
            &format!("/service-policies/{sp_all}/identities")
        )
        .await,
        sorted(&[&alice, &bob])
    );

    // Configs of a type, services of a config.
    let ct1 = ctl
        .create_ok(&admin, "config-types", json!({"name": "ct1"}))
        .await;
    let ct2 = ctl
        .create_ok(&admin, "config-types", json!({"name": "ct2"}))
        .await;
    let c1 = ctl
        .create_ok(
            &admin,
            "configs",
            json!({"name": "c1", "configTypeId": ct1, "data": {}}),
        )
        .await;
    let c2 = ctl
        .create_ok(
            &admin,
            "configs",
            json!({"name": "c2", "configTypeId": ct2, "data": {}}),
        )
        .await;
    let r = ctl
        .call(
            Method::PATCH,
            &format!("/services/{s1}"),
            &admin,
            Some(json!({"configs": [c1]})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    for (path, want) in [
        (format!("/config-types/{ct1}/configs"), vec![&c1]),
        (format!("/config-types/{ct2}/configs"), vec![&c2]),
        (format!("/configs/{c1}/services"), vec![&s1]),
        (format!("/configs/{c2}/services"), vec![]),
    ] {
        assert_eq!(
            sorted_ids(&ctl, &admin, &path).await,
            sorted(&want),
            "{path}"
        );
    }

    // Unknown ids are 404s.
    for path in [
        "/service-policies/nope/identities",
        "/service-policies/nope/services",
        "/edge-router-policies/nope/identities",
        "/edge-router-policies/nope/edge-routers",
        "/service-edge-router-policies/nope/services",
        "/service-edge-router-policies/nope/edge-routers",
        "/identities/nope/service-policies",
        "/identities/nope/edge-router-policies",
        "/services/nope/service-policies",
        "/services/nope/service-edge-router-policies",
        "/edge-routers/nope/edge-router-policies",
        "/edge-routers/nope/service-edge-router-policies",
        "/config-types/nope/configs",
        "/configs/nope/services",
    ] {
        let r = ctl.call(Method::GET, path, &admin, None).await;
        assert_eq!(code(&r), (404, "NOT_FOUND"), "{path}");
    }

    // The summary counts what the lists hold.
    let summary = ctl.get_ok(&admin, "/summary").await;
    for (key, collection) in [
        ("identities", "identities"),
        ("services", "services"),
        ("services.edge", "services"),
        ("routers", "edge-routers"),
        ("routers.edge", "edge-routers"),
        ("servicePolicies", "service-policies"),
        ("edgeRouterPolicies", "edge-router-policies"),
        ("serviceEdgeRouterPolicies", "service-edge-router-policies"),
        ("configs", "configs"),
        ("configTypes", "config-types"),
        ("authPolicies", "auth-policies"),
        ("apiSessions", "api-sessions"),
        ("authenticators", "authenticators"),
        ("enrollments", "enrollments"),
        ("sessions", "sessions"),
        ("terminators", "terminators"),
    ] {
        let list = ctl.get_ok(&admin, &format!("/{collection}")).await;
        assert_eq!(
            summary["data"][key], list["meta"]["pagination"]["totalCount"],
            "{key}: {summary}"
        );
    }
    assert_eq!(summary["data"]["servicePolicies"], 2);
    assert_eq!(summary["data"]["routers.edge"], 2);
    // Administrators only.
    let (status, _) = ctl.call(Method::GET, "/summary", "nope", None).await;
    assert_eq!(status, 401);
}

/// The `config` map of service `id` as `http` (logged in with `token`) sees it.
async fn client_config(ctl: &Ctl, http: &reqwest::Client, token: &str, id: &str) -> Value {
    let res = http
        .get(ctl.client_url(&format!("/services/{id}")))
        .header("zt-session", token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["data"]["config"].clone()
}

/// Certificate login asking for every config type; returns (client, token).
async fn login_all_configs(ctl: &Ctl, cert: &str, key: &str) -> (reqwest::Client, String) {
    let http = ctl.http_with_cert(cert, key);
    let res = http
        .post(ctl.client_url("/authenticate?method=cert"))
        .json(&json!({"configTypes": ["all"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    (http, v["data"]["token"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn identity_service_configs_replace_the_services_configs_of_their_type() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let (alice, a_cert, a_key) = ctl.enrolled_identity(&admin, "alice", &["users"]).await;
    let (_, b_cert, b_key) = ctl.enrolled_identity(&admin, "bob", &["users"]).await;
    let config =
        |name: &str, ty: &str, data: Value| json!({"name": name, "configTypeId": ty, "data": data});
    let c1 = ctl
        .create_ok(
            &admin,
            "configs",
            config("h1", "host.v1", json!({"port": 1})),
        )
        .await;
    let c2 = ctl
        .create_ok(
            &admin,
            "configs",
            config("h2", "host.v1", json!({"port": 2})),
        )
        .await;
    let c3 = ctl
        .create_ok(
            &admin,
            "configs",
            config("i3", "intercept.v1", json!({"x": 3})),
        )
        .await;
    let svc = ctl
        .create_ok(&admin, "services", json!({"name": "web", "configs": [c1]}))
        .await;
    ctl.create_ok(
        &admin,
        "service-policies",
        json!({"name": "dial", "type": "Dial", "semantic": "AnyOf",
               "identityRoles": ["#users"], "serviceRoles": ["#all"]}),
    )
    .await;
    let (a_http, a_token) = login_all_configs(&ctl, &a_cert, &a_key).await;
    let (b_http, b_token) = login_all_configs(&ctl, &b_cert, &b_key).await;
    assert_eq!(
        client_config(&ctl, &a_http, &a_token, &svc).await,
        json!({"host.v1": {"port": 1}})
    );
    let updates = || async {
        ctl.http()
            .get(ctl.client_url("/current-api-session/service-updates"))
            .header("zt-session", &a_token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["data"]["lastChangeAt"]
            .clone()
    };
    let before = updates().await;
    let path = format!("/identities/{alice}/service-configs");

    // Assigned by id and by name: alice's host.v1 config for the service is h2, and she
    // gets an intercept.v1 config the service does not have; bob still sees h1.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = ctl
        .call(
            Method::POST,
            &path,
            &admin,
            Some(
                json!([{"serviceId": svc, "configId": c2}, {"serviceId": "web", "configId": "i3"}]),
            ),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_ne!(updates().await, before, "SDKs are told to list again");
    let v = ctl.get_ok(&admin, &path).await;
    assert_eq!(v["meta"]["pagination"]["totalCount"], 2);
    assert_eq!(v["data"][0]["serviceId"], json!(svc));
    assert_eq!(v["data"][0]["service"]["name"], "web");
    assert_eq!(v["data"][0]["service"]["entity"], "services");
    assert_eq!(v["data"][0]["configId"], json!(c2));
    assert_eq!(v["data"][0]["config"]["name"], "h2");
    assert_eq!(v["data"][1]["configId"], json!(c3));
    assert_eq!(
        client_config(&ctl, &a_http, &a_token, &svc).await,
        json!({"host.v1": {"port": 2}, "intercept.v1": {"x": 3}})
    );
    assert_eq!(
        client_config(&ctl, &b_http, &b_token, &svc).await,
        json!({"host.v1": {"port": 1}})
    );
    // The filter sees the ids.
    let v = ctl
        .get_ok(&admin, &format!("{path}?filter=configId=%22{c3}%22"))
        .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);

    // Bad requests change nothing: a missing config or service, an unknown identity, a
    // body that is not a list of pairs.
    for (body, want) in [
        (
            json!([{"serviceId": svc, "configId": c1}, {"serviceId": svc, "configId": "nope"}]),
            (404, "NOT_FOUND"),
        ),
        (
            json!([{"serviceId": "nope", "configId": c1}]),
            (404, "NOT_FOUND"),
        ),
        (
            json!({"serviceId": svc, "configId": c1}),
            (400, "COULD_NOT_VALIDATE"),
        ),
        (
            json!([{"serviceId": svc, "configId": c1, "extra": 1}]),
            (400, "COULD_NOT_VALIDATE"),
        ),
    ] {
        let r = ctl
            .call(Method::POST, &path, &admin, Some(body.clone()))
            .await;
        assert_eq!(code(&r), want, "{body}");
    }
    let r = ctl
        .call(
            Method::POST,
            "/identities/nope/service-configs",
            &admin,
            Some(json!([{"serviceId": svc, "configId": c1}])),
        )
        .await;
    assert_eq!(code(&r), (404, "NOT_FOUND"));
    assert_eq!(
        ctl.call(
            Method::GET,
            "/identities/nope/service-configs",
            &admin,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        ctl.get_ok(&admin, &path).await["meta"]["pagination"]["totalCount"],
        2
    );
    // Only administrators.
    assert_eq!(ctl.call(Method::GET, &path, &a_token, None).await.0, 403);

    // Removing names the config's type: h1 (host.v1) removes alice's h2.
    let r = ctl
        .call(
            Method::DELETE,
            &path,
            &admin,
            Some(json!([{"serviceId": svc, "configId": c1}])),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let v = ctl.get_ok(&admin, &path).await;
    assert_eq!(ids_of(&v, "configId"), std::slice::from_ref(&c3));
    assert_eq!(
        client_config(&ctl, &a_http, &a_token, &svc).await,
        json!({"host.v1": {"port": 1}, "intercept.v1": {"x": 3}})
    );

    // Deleting the config removes it from alice's; a DELETE without a body removes all;
    // deleting the service removes those for it.
    ctl.call(Method::DELETE, &format!("/configs/{c3}"), &admin, None)
        .await;
    assert_eq!(ctl.get_ok(&admin, &path).await["data"], json!([]));
    let r = ctl
        .call(
            Method::POST,
            &path,
            &admin,
            Some(json!([{"serviceId": svc, "configId": c2}])),
        )
        .await;
    assert_eq!(r.0, 200);
    assert_eq!(ctl.call(Method::DELETE, &path, &admin, None).await.0, 200);
    assert_eq!(ctl.get_ok(&admin, &path).await["data"], json!([]));
    ctl.call(
        Method::POST,
        &path,
        &admin,
        Some(json!([{"serviceId": svc, "configId": c2}])),
    )
    .await;
    assert_eq!(
        ctl.get_ok(&admin, &path).await["meta"]["pagination"]["totalCount"],
        1
    );
    ctl.call(Method::DELETE, &format!("/services/{svc}"), &admin, None)
        .await;
    assert_eq!(ctl.get_ok(&admin, &path).await["data"], json!([]));
}

fn ids_of(v: &Value, field: &str) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[field].as_str().unwrap().to_owned())
        .collect()
}

/// Waits for the data integrity run to end; returns its results' `data`.
async fn integrity_results(ctl: &Ctl, admin: &str) -> Value {
    for _ in 0..200 {
        let v = ctl.get_ok(admin, "/database/data-integrity-results").await;
        if v["data"]["inProgress"] == false {
            return v["data"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the data integrity run did not end");
}

#[tokio::test]
async fn the_data_integrity_check_reports_and_fixes_a_store_broken_behind_its_back() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    // Before any run: nothing, with the spec's non-null strings empty.
    let v = ctl.get_ok(&admin, "/database/data-integrity-results").await;
    assert_eq!(v["data"]["inProgress"], false);
    assert_eq!(v["data"]["startTime"], "");
    assert_eq!(v["data"]["results"], json!([]));

    // A whole store: nothing found.
    let r = ctl
        .call(Method::POST, "/database/check-data-integrity", &admin, None)
        .await;
    assert_eq!(r.0, 202, "{}", r.1);
    let d = integrity_results(&ctl, &admin).await;
    assert_eq!(d["results"], json!([]), "{d}");
    assert_ne!(d["endTime"], "");
    assert_eq!(d["fixingErrors"], false);

    // An identity removed from the database by hand leaves its pending enrollment.
    let doomed = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "doomed", "type": "User", "isAdmin": false,
                   "enrollment": {"ott": true}}),
        )
        .await;
    let db = ctl.dir.join("weft.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("DELETE FROM entities WHERE id = ?")
        .bind(&doomed)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    ctl.call(Method::POST, "/database/check-data-integrity", &admin, None)
        .await;
    let d = integrity_results(&ctl, &admin).await;
    let results = d["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{d}");
    let description = results[0]["description"].as_str().unwrap();
    assert!(
        description.starts_with("enrollments ")
            && description.contains(&format!("identity or edge router {doomed}")),
        "{description}"
    );
    assert_eq!(results[0]["fixed"], false);

    let r = ctl
        .call(Method::POST, "/database/fix-data-integrity", &admin, None)
        .await;
    assert_eq!(r.0, 202, "{}", r.1);
    let d = integrity_results(&ctl, &admin).await;
    assert_eq!(d["fixingErrors"], true);
    assert_eq!(d["results"][0]["fixed"], true, "{d}");
    assert_eq!(d["error"], "");
    ctl.call(Method::POST, "/database/check-data-integrity", &admin, None)
        .await;
    assert_eq!(
        integrity_results(&ctl, &admin).await["results"],
        json!([]),
        "repaired"
    );
    // The enrollment is gone from the API too.
    let v = ctl
        .get_ok(
            &admin,
            &format!("/enrollments?filter=identityId=%22{doomed}%22"),
        )
        .await;
    assert_eq!(v["data"], json!([]));
}

#[tokio::test]
async fn routers_are_the_fabric_view_of_edge_routers() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let er1 = ctl
        .create_ok(
            &admin,
            "edge-routers",
            json!({"name": "er1", "roleAttributes": ["edge"], "cost": 3,
                   "supportedProtocols": {"tls": "tls://er1.example:3022"}}),
        )
        .await;
    // Both paths list it in the router shape, not yet enrolled.
    for base in ["/routers", "/transit-routers"] {
        let v = ctl.get_ok(&admin, base).await;
        assert_eq!(ids(&v), std::slice::from_ref(&er1), "{base}");
        let r = &v["data"][0];
        assert_eq!(r["name"], "er1");
        assert_eq!(r["cost"], 3);
        assert_eq!(r["isVerified"], false);
        assert_eq!(r["isOnline"], false);
        assert_eq!(r["fingerprint"], "");
        assert!(r["enrollmentJwt"].is_string(), "{r}");
        assert!(r.get("roleAttributes").is_none(), "router fields only: {r}");
    }

    // A router created here is an edge router without role attributes, with its token.
    let r = ctl
        .call(
            Method::POST,
            "/routers",
            &admin,
            Some(json!({"name": "r2", "cost": 5, "noTraversal": true})),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let r2 = r.1["data"]["id"].as_str().unwrap().to_owned();
    assert!(r.1["data"]["enrollmentJwt"].is_string(), "{}", r.1);
    let v = ctl.get_ok(&admin, &format!("/edge-routers/{r2}")).await;
    assert_eq!(v["data"]["roleAttributes"], json!([]));
    assert_eq!(v["data"]["noTraversal"], true);
    let v = ctl.get_ok(&admin, &format!("/transit-routers/{r2}")).await;
    assert_eq!(v["data"]["cost"], 5);

    // PATCH changes the given router fields, PUT all of them; the edge fields stay.
    let path = format!("/routers/{er1}");
    let r = ctl
        .call(
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"cost": 7, "noTraversal": true, "ctrlChanListeners": {}})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let v = ctl.get_ok(&admin, &format!("/edge-routers/{er1}")).await;
    assert_eq!(v["data"]["cost"], 7);
    assert_eq!(v["data"]["noTraversal"], true);
    assert_eq!(v["data"]["roleAttributes"], json!(["edge"]));
    let r = ctl
        .call(Method::PUT, &path, &admin, Some(json!({"name": "er1b"})))
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let v = ctl.get_ok(&admin, &format!("/edge-routers/{er1}")).await;
    assert_eq!(v["data"]["name"], "er1b");
    assert_eq!(v["data"]["cost"], 0);
    assert_eq!(v["data"]["noTraversal"], false);
    assert_eq!(v["data"]["roleAttributes"], json!(["edge"]));
    assert_eq!(
        v["data"]["supportedProtocols"]["tls"],
        "tls://er1.example:3022"
    );

    // What a Weft router does not have is refused and changes nothing.
    for (method, body) in [
        (Method::PATCH, json!({"roleAttributes": ["x"]})),
        (
            Method::PATCH,
            json!({"ctrlChanListeners": {"tls:0.0.0.0:6262": ["x"]}}),
        ),
        (Method::PATCH, json!({"configs": ["c"]})),
        (Method::PUT, json!({"cost": 1})),
        (Method::PATCH, json!([1])),
    ] {
        let r = ctl
            .call(method.clone(), &path, &admin, Some(body.clone()))
            .await;
        assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"), "{method} {body}");
    }
    let r = ctl
        .call(
            Method::POST,
            "/routers",
            &admin,
            Some(json!({"name": "r3", "disabled": true})),
        )
        .await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"));
    assert_eq!(
        ctl.get_ok(&admin, &format!("/edge-routers/{er1}")).await["data"]["name"],
        "er1b"
    );
    assert_eq!(
        ctl.call(Method::GET, "/routers/nope", &admin, None).await.0,
        404
    );

    // A delete under either path is the edge router's delete.
    let r = ctl
        .call(
            Method::DELETE,
            &format!("/transit-routers/{r2}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.0, 200);
    let r = ctl
        .call(Method::GET, &format!("/edge-routers/{r2}"), &admin, None)
        .await;
    assert_eq!(code(&r), (404, "NOT_FOUND"));
}

#[tokio::test]
async fn the_controllers_list_this_controller_on_both_apis() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let id = std::fs::read_to_string(ctl.dir.join("controller.id"))
        .unwrap()
        .trim()
        .to_owned();
    let v = ctl.get_ok(&admin, "/controllers").await;
    assert_eq!(v["meta"]["pagination"]["totalCount"], 1, "{v}");
    let c = &v["data"][0];
    assert_eq!(c["id"], json!(id));
    assert_eq!(c["isOnline"], true);
    assert_eq!(c["name"], json!(format!("localhost:{}", ctl.addr.port())));
    assert!(
        c["certPem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE")
    );
    assert_eq!(c["fingerprint"].as_str().unwrap().len(), 40);
    assert_eq!(
        c["apiAddresses"]["edge-management"][0]["url"],
        json!(ctl.mgmt(""))
    );
    assert!(
        c["ctrlAddress"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{}", ctl.control_port())),
        "{c}"
    );

    // The client API: any API session; no control channel, no management address.
    let (_, cert, key) = ctl.enrolled_identity(&admin, "alice", &[]).await;
    let (http, token) = ctl.cert_login(&cert, &key).await;
    let res = http
        .get(ctl.client_url("/controllers"))
        .header("zt-session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let c = &v["data"][0];
    assert_eq!(c["id"], json!(id));
    assert!(c.get("ctrlAddress").is_none(), "{c}");
    assert_eq!(
        c["apiAddresses"]["edge-client"][0]["url"],
        json!(ctl.client_url(""))
    );
    assert!(c["apiAddresses"].get("edge-management").is_none(), "{c}");
    let res = ctl
        .http()
        .get(ctl.client_url("/controllers"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn a_snapshot_is_a_consistent_copy_of_the_store_at_most_once_a_minute() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    ctl.create_ok(&admin, "services", json!({"name": "kept-in-the-snapshot"}))
        .await;
    let r = ctl
        .call(Method::POST, "/database/snapshot", &admin, None)
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let path = std::path::PathBuf::from(r.1["data"]["path"].as_str().unwrap());
    assert_eq!(path.parent(), Some(ctl.dir.as_path()));
    assert!(
        path.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("weft.db-"),
        "{}",
        path.display()
    );
    // The copy is a database of its own with what the store held.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM entities WHERE kind = 'services' AND name = 'kept-in-the-snapshot'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 1);
    pool.close().await;
    // A second within the minute is refused.
    let r = ctl
        .call(Method::POST, "/database/snapshot", &admin, None)
        .await;
    assert_eq!(code(&r), (429, "RATE_LIMITED"));
}
