//! Issue #13 hardening of the HTTP APIs, against a real `weft-controller` process:
//! content types, control characters in names, the per-API-session session cap, and
//! certificate login bound to the TLS leaf alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use weft_testkit::Ctl;

async fn status_code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
}

/// JSON bodies were accepted under any Content-Type. Now a body must have a media type
/// the endpoint consumes (OpenZiti's go-openapi answers others 415); what the C SDK
/// 0.29.3 sends keeps working: `application/json` bodies, `text/plain` CSRs, empty
/// bodies with or without a Content-Type.
#[tokio::test]
async fn request_content_types_are_checked() {
    let ctl = Ctl::start();
    let http = ctl.http();
    let login = json!({"username": "admin", "password": ctl.admin_password()}).to_string();
    let auth = ctl.mgmt("/authenticate?method=password");
    for (content_type, expect) in [
        (Some("text/plain"), (415, "INVALID_CONTENT_TYPE")),
        (
            Some("application/x-www-form-urlencoded"),
            (415, "INVALID_CONTENT_TYPE"),
        ),
        (None, (415, "INVALID_CONTENT_TYPE")),
        (Some("application/json; charset=utf-8"), (200, "")),
        (Some("Application/JSON"), (200, "")),
    ] {
        let mut req = http.post(&auth).body(login.clone());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let got = status_code(req.send().await.unwrap()).await;
        assert_eq!((got.0, got.1.as_str()), expect, "{content_type:?}");
    }
    let token = ctl.admin_token().await;
    // Management writes too.
    let res = http
        .post(ctl.mgmt("/services"))
        .header("zt-session", &token)
        .header("content-type", "text/plain")
        .body(json!({"name": "s"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(status_code(res).await, (415, "INVALID_CONTENT_TYPE".into()));
    // Enrollment takes PEM as `application/x-pem-file` or `text/plain`, not XML.
    for (ct, status) in [
        ("application/x-pem-file", 400),
        ("text/plain", 400),
        ("application/xml", 415),
    ] {
        let res = http
            .post(ctl.url("/enroll?method=ott&token=no-such-token"))
            .header("content-type", ct)
            .body("-----BEGIN CERTIFICATE REQUEST-----\n")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{ct}");
    }
    // The C SDK's cert login: a JSON body as application/json (no certificate: 401, not 415).
    let res = ctl.cert_authenticate(&http).await;
    assert_eq!(status_code(res).await, (401, "INVALID_AUTH".into()));
    // Empty bodies need no Content-Type, and may carry one.
    let res = http
        .get(ctl.mgmt("/current-api-session"))
        .header("zt-session", &token)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = http
        .delete(ctl.mgmt("/current-api-session"))
        .header("zt-session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// NUL characters were stored in names. Control characters are now refused in names,
/// role attributes, selectors, tag keys and user names.
#[tokio::test]
async fn control_characters_in_names_are_refused() {
    let ctl = Ctl::start();
    let token = ctl.admin_token().await;
    for (collection, body) in [
        ("services", json!({"name": "evil\u{0}name"})),
        ("services", json!({"name": "bell\u{7}"})),
        (
            "identities",
            json!({"name": "i", "type": "User", "isAdmin": false, "roleAttributes": ["a\u{0}"]}),
        ),
        (
            "service-policies",
            json!({"name": "p", "type": "Dial", "identityRoles": ["#x\u{0}"], "serviceRoles": ["#all"]}),
        ),
    ] {
        let (status, v) = ctl.create(&token, collection, body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], "COULD_NOT_VALIDATE", "{body}");
    }
    // Nothing was stored.
    let (status, v) = ctl
        .call(reqwest::Method::GET, "/services", &token, None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["meta"]["pagination"]["totalCount"], 0, "{v}");
    // Updates are checked as well.
    let id = ctl
        .create_ok(&token, "services", json!({"name": "fine"}))
        .await;
    let (status, v) = ctl
        .call(
            reqwest::Method::PATCH,
            &format!("/services/{id}"),
            &token,
            Some(json!({"name": "not\u{0}fine"})),
        )
        .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("COULD_NOT_VALIDATE"))
    );
    // And user names of password authenticators.
    let ident = ctl
        .create_ok(
            &token,
            "identities",
            json!({"name": "pw-user", "type": "User", "isAdmin": false}),
        )
        .await;
    let (status, v) = ctl
        .create(
            &token,
            "authenticators",
            json!({"method": "updb", "identityId": ident, "username": "u\u{0}", "password": "long-enough-password"}),
        )
        .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("COULD_NOT_VALIDATE")),
        "{v}"
    );
}

/// An API session could create sessions without limit; now `max_sessions_per_api_session`.
#[tokio::test]
async fn sessions_per_api_session_are_capped() {
    let ctl = Ctl::start_with("auth.max_sessions_per_api_session = 3");
    let admin = ctl.admin_token().await;
    let (_, cert, key) = ctl.enrolled_identity(&admin, "dialer", &["dialers"]).await;
    let service = ctl
        .create_ok(
            &admin,
            "services",
            json!({"name": "svc", "roleAttributes": ["svc"]}),
        )
        .await;
    for (collection, body) in [
        (
            "service-policies",
            json!({"name": "dial", "type": "Dial", "identityRoles": ["#dialers"], "serviceRoles": ["#svc"]}),
        ),
        (
            "edge-routers",
            json!({"name": "er", "roleAttributes": ["public"], "hostname": "er.test", "supportedProtocols": {"tls": "tls://er.test:3022"}}),
        ),
        (
            "edge-router-policies",
            json!({"name": "erp", "identityRoles": ["#all"], "edgeRouterRoles": ["#all"]}),
        ),
        (
            "service-edge-router-policies",
            json!({"name": "serp", "serviceRoles": ["#all"], "edgeRouterRoles": ["#all"]}),
        ),
    ] {
        ctl.create_ok(&admin, collection, body).await;
    }
    let (http, token) = ctl.cert_login(&cert, &key).await;
    let create = || {
        http.post(ctl.client_url("/sessions"))
            .header("zt-session", &token)
            .json(&json!({"serviceId": service, "type": "Dial"}))
            .send()
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        let res = create().await.unwrap();
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        ids.push(v["data"]["id"].as_str().unwrap().to_owned());
    }
    let res = create().await.unwrap();
    assert_eq!(res.status(), 429);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "RATE_LIMITED");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 sessions"),
        "{v}"
    );
    // Deleting one makes room again.
    let res = http
        .delete(ctl.client_url(&format!("/sessions/{}", ids[0])))
        .header("zt-session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(create().await.unwrap().status(), 201);
}

/// Certificate login binds the identity to the TLS leaf alone: presenting an own
/// self-signed leaf followed by a victim's certificate, or a leaf from a foreign CA
/// followed by the controller's signing CA, is refused; the victim's own leaf works.
#[tokio::test]
async fn cert_login_uses_only_the_leaf() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let (_, victim_cert, victim_key) = ctl.enrolled_identity(&admin, "victim", &[]).await;
    let victim: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(victim_cert.as_bytes())
            .map(Result::unwrap)
            .collect();
    let own_key = rcgen::KeyPair::generate().unwrap();
    let own = rcgen::CertificateParams::new(vec!["victim".to_string()])
        .unwrap()
        .self_signed(&own_key)
        .unwrap();
    let controller_ca = CertificateDer::pem_slice_iter(ctl.ca_pem().as_bytes())
        .next()
        .unwrap()
        .unwrap();
    for chain in [
        vec![own.der().clone(), victim[0].clone()],
        vec![own.der().clone(), controller_ca],
    ] {
        let http = ctl.http_with_chain(chain, &own_key.serialize_pem());
        let res = ctl.cert_authenticate(&http).await;
        assert_eq!(status_code(res).await, (401, "INVALID_AUTH".into()));
    }
    // The victim's own certificate and key do log in.
    let _ = ctl.cert_login(&victim_cert, &victim_key).await;
}

/// Every route of both APIs that needs a session answers 401 `UNAUTHORIZED` without
/// one (and with a made-up token), and every administrators' route answers 403 to an
/// identity that is not one: checked from the route list itself, so a new route is
/// covered the day it is added.
#[tokio::test]
async fn every_protected_route_refuses_who_may_not_call_it() {
    use weft_controller::api::endpoint::Access;
    use weft_controller::api::openapi::ApiKind;
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let (_, cert, key) = ctl.enrolled_identity(&admin, "plain-user", &[]).await;
    let (_, user) = ctl.cert_login(&cert, &key).await;
    let dir = tempfile::tempdir().unwrap();
    let offline = weft_controller::controller::Controller::open(
        dir.path(),
        weft_controller::config::Config::default(),
        "https://localhost:1280".into(),
    )
    .await
    .unwrap();
    let (_, _, endpoints) = weft_controller::api::build(std::sync::Arc::new(offline));
    let (mut sessions, mut admins) = (0, 0);
    for (api, endpoints) in ApiKind::ALL.into_iter().zip(&endpoints) {
        for e in endpoints.iter().filter(|e| e.access != Access::Public) {
            // Any path parameter: the caller is refused before it is looked up.
            let path: String = e
                .path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "some-id" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let uri = ctl.url(&format!("{}{path}", api.prefix()));
            let call = |token: Option<&str>| {
                let mut req = ctl
                    .http()
                    .request(e.method.clone(), &uri)
                    .header("content-type", "application/json");
                if let Some(token) = token {
                    req = req.header("zt-session", token);
                }
                if ["POST", "PUT", "PATCH"].contains(&e.method.as_str()) {
                    req = req.body("{}");
                }
                async move { status_code(req.send().await.unwrap()).await }
            };
            for token in [None, Some("not-a-session-token")] {
                let (status, code) = call(token).await;
                assert_eq!(
                    (status, code.as_str()),
                    (401, "UNAUTHORIZED"),
                    "{} {uri} with {token:?}",
                    e.method
                );
            }
            sessions += 1;
            if e.access == Access::Admin {
                let (status, code) = call(Some(&user)).await;
                assert_eq!(
                    (status, code.as_str()),
                    (403, "UNAUTHORIZED"),
                    "{} {uri} as a non-admin",
                    e.method
                );
                admins += 1;
            }
        }
    }
    assert!(
        sessions > 50 && admins > 30,
        "{sessions} protected, {admins} admin routes"
    );
}
