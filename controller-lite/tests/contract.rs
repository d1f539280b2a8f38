//! OpenZiti's API contract (`controller-lite/contract/`): which routes of the Edge Client
//! and Management specs Weft serves, and how the responses the tests produced conform.
//!
//! Every response of a controller started by the test kit (`Ctl`) is checked against the
//! contract by the controller itself (`WEFT_API_CONTRACT_LOG`), and the test that made it
//! fails on any problem. The outcomes are kept in `target/api-contract/observed/`; this
//! test writes `target/api-contract/report.md` from them and from the routes served (for a
//! fresh count, remove `observed/` and run the suite first).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use weft_controller::api::contract::{Contract, Outcome};
use weft_controller::api::endpoint::Endpoint;
use weft_controller::api::openapi::ApiKind;
use weft_controller::config::Config;
use weft_controller::controller::Controller;

async fn endpoints() -> [Vec<Endpoint>; 2] {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Controller::open(
        dir.path(),
        Config::default(),
        "https://localhost:1280".into(),
    )
    .await
    .unwrap();
    weft_controller::api::build(Arc::new(ctl)).2
}

/// Outcomes recorded by earlier tests, by (api, method, spec path, status).
fn observed() -> BTreeMap<(String, String, String, u16), Vec<Outcome>> {
    let mut out: BTreeMap<_, Vec<Outcome>> = BTreeMap::new();
    let dir = weft_testkit::controller::contract_dir().join("observed");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for o in text
            .lines()
            .filter_map(|l| serde_json::from_str::<Outcome>(l).ok())
        {
            let key = (o.api.clone(), o.method.clone(), o.path.clone(), o.status);
            out.entry(key).or_default().push(o);
        }
    }
    out
}

#[tokio::test]
async fn served_routes_and_conformance_report() {
    let contract = Contract::embedded().unwrap();
    let endpoints = endpoints().await;
    let observed = observed();
    let mut report = String::new();
    let mut table = String::new();
    let (mut served_total, mut spec_total) = (0, 0);
    let mut wrong_status = Vec::new();
    let mut served_keys = BTreeSet::new();
    let mut unserved = BTreeSet::new();
    for (api, endpoints) in ApiKind::ALL.into_iter().zip(&endpoints) {
        let spec = contract.api(api);
        let mut served = 0;
        for op in &spec.operations {
            let ours = endpoints
                .iter()
                .find(|e| op.same_route(e.method.as_str(), &e.path));
            if let Some(e) = ours {
                served += 1;
                served_keys.insert((api.id().to_owned(), op.method.clone(), op.path.clone()));
                // The success status we document is one the spec declares.
                if !op.statuses().any(|s| s == e.status.to_string()) {
                    wrong_status.push(format!(
                        "{} {} {}: {} (spec: {})",
                        api.id(),
                        op.method,
                        op.path,
                        e.status,
                        op.statuses().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            if ours.is_none() {
                unserved.insert((api.id().to_owned(), op.method.clone(), op.path.clone()));
            }
            let seen: Vec<String> = observed
                .iter()
                .filter(|((a, m, p, _), _)| a == api.id() && *m == op.method && *p == op.path)
                .map(|((_, _, _, s), os)| {
                    let ok = os.iter().all(|o| o.problems.is_empty());
                    format!("{s}{}", if ok { "✓" } else { "✗" })
                })
                .collect();
            let _ = writeln!(
                table,
                "| {} | {} | `{}` | {} | {} | {} |",
                api.id(),
                op.method,
                op.path,
                op.operation_id,
                if ours.is_some() { "served" } else { "–" },
                seen.join(" ")
            );
        }
        let _ = writeln!(
            report,
            "- {}: {served} of {} routes served",
            api.id(),
            spec.operations.len()
        );
        served_total += served;
        spec_total += spec.operations.len();
    }
    // Conformance of the (route, status) pairs the tests produced on served routes.
    let mut checked = 0;
    let mut conforming = 0;
    let mut problems = BTreeSet::new();
    let mut undeclared = BTreeSet::new();
    for ((api, method, path, status), outcomes) in &observed {
        if !served_keys.contains(&(api.clone(), method.clone(), path.clone())) {
            continue;
        }
        checked += 1;
        if outcomes.iter().all(|o| o.problems.is_empty()) {
            conforming += 1;
        }
        for o in outcomes {
            if !o.declared {
                undeclared.insert(format!("{api} {method} {path} {status}"));
            }
            for p in &o.problems {
                problems.insert(format!("{api} {method} {path} {status}: {p}"));
            }
        }
    }
    let summary = format!(
        "OpenZiti API contract (openziti/edge-api {}):\n\
         - served routes: {served_total} of {spec_total}\n{report}\
         - response operations (route, status) seen by the tests: {conforming} of {checked} conform\n",
        contract.source.commit
    );
    let mut doc = format!("# API contract report\n\n{summary}\n");
    if !problems.is_empty() {
        let _ = writeln!(doc, "## Problems\n");
        for p in &problems {
            let _ = writeln!(doc, "- {p}");
        }
        doc.push('\n');
    }
    if !undeclared.is_empty() {
        let _ = writeln!(doc, "## Error statuses the spec does not declare\n");
        for u in &undeclared {
            let _ = writeln!(doc, "- {u}");
        }
        doc.push('\n');
    }
    let _ = writeln!(
        doc,
        "## Routes\n\n| API | method | path | operationId | Weft | statuses seen (✓ conform) |\n|---|---|---|---|---|---|\n{table}"
    );
    let dir = weft_testkit::controller::contract_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("report.md"), &doc).unwrap();
    println!("{summary}(report: {})", dir.join("report.md").display());
    assert!(served_total > 0 && served_total <= spec_total);
    // Every route of the spec Weft does not serve is documented with its reason, and
    // nothing served is documented as not served.
    let documented = documented_unserved();
    let missing: Vec<_> = unserved.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&unserved).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/controller-api.md \"Routes not served\" is out of date:\n\
         not served but not listed: {missing:?}\nlisted but served or not in the spec: {stale:?}"
    );
    assert!(
        wrong_status.is_empty(),
        "success statuses the spec does not declare:\n{}",
        wrong_status.join("\n")
    );
}

/// The `(api, method, path)` rows of the "Routes not served" table of
/// `docs/controller-api.md`.
fn documented_unserved() -> BTreeSet<(String, String, String)> {
    let doc = include_str!("../../docs/controller-api.md");
    let section = doc
        .split_once("## Routes not served")
        .map(|(_, rest)| rest)
        .expect("docs/controller-api.md has a \"Routes not served\" section");
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | api | method | `path` | reason |
            match cells.as_slice() {
                ["", api, method, path, _reason, ""]
                    if api.starts_with("edge-") && path.starts_with('`') =>
                {
                    Some((
                        (*api).to_owned(),
                        (*method).to_owned(),
                        path.trim_matches('`').to_owned(),
                    ))
                }
                _ => None,
            }
        })
        .collect()
}

/// Calls every served route of both APIs once with success (the `Ctl` checks each
/// answer against the contract when the controller stops): each management collection
/// through create, list, detail, PUT, PATCH and delete, and the client API's details.
#[tokio::test]
async fn every_served_route_answers_within_the_contract() {
    use reqwest::Method;
    use serde_json::{Value, json};

    let ctl = weft_testkit::Ctl::start();
    let token = ctl.admin_token().await;
    let (identity, cert, key) = ctl.enrolled_identity(&token, "dialer", &["d"]).await;
    let ct = ctl
        .create_ok(&token, "config-types", json!({"name": "ct"}))
        .await;
    let router = ctl
        .create_ok(&token, "edge-routers", json!({"name": "er"}))
        .await;
    let service = ctl
        .create_ok(
            &token,
            "services",
            json!({"name": "svc", "roleAttributes": ["s"]}),
        )
        .await;
    let signer_cert = {
        let kp = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(vec!["idp2.test".into()])
            .unwrap()
            .self_signed(&kp)
            .unwrap()
            .pem()
    };
    let third_party_ca = weft_testkit::ThirdPartyCa::new("contract CA");
    let bodies: Vec<(&str, Value)> = vec![
        (
            "cas",
            json!({"name": "ca", "certPem": third_party_ca.pem(), "isAutoCaEnrollmentEnabled": true,
                   "isOttCaEnrollmentEnabled": true, "isAuthEnabled": true, "identityRoles": ["r"],
                   "externalIdClaim": {"location": "COMMON_NAME", "matcher": "ALL", "matcherCriteria": null,
                                       "parser": "NONE", "parserCriteria": null, "index": 0}}),
        ),
        (
            "identities",
            json!({"name": "i", "type": "User", "isAdmin": false}),
        ),
        ("services", json!({"name": "s2"})),
        ("config-types", json!({"name": "ct2"})),
        (
            "configs",
            json!({"name": "c", "configTypeId": ct, "data": {"a": 1}}),
        ),
        (
            "service-policies",
            json!({"name": "sp", "type": "Dial", "semantic": "AnyOf",
                   "identityRoles": [format!("@{identity}")], "serviceRoles": ["#s"]}),
        ),
        (
            "edge-router-policies",
            json!({"name": "erp", "edgeRouterRoles": [format!("@{router}")], "identityRoles": ["#all"]}),
        ),
        (
            "service-edge-router-policies",
            json!({"name": "serp", "edgeRouterRoles": ["#all"], "serviceRoles": ["#all"]}),
        ),
        ("edge-routers", json!({"name": "er2"})),
        (
            "terminators",
            json!({"service": service, "router": router, "address": "tcp:127.0.0.1:1"}),
        ),
        (
            "external-jwt-signers",
            json!({"name": "ejs", "issuer": "https://idp.test", "audience": "weft", "enabled": true,
                   "jwksEndpoint": "https://idp.test/jwks.json", "scopes": ["openid"]}),
        ),
        (
            "external-jwt-signers",
            json!({"name": "ejs-cert", "issuer": "https://idp2.test", "audience": "weft", "enabled": true,
                   "certPem": signer_cert, "kid": "k1", "clientId": "c", "externalAuthUrl": "https://idp2.test/auth"}),
        ),
        (
            "posture-checks",
            json!({"name": "pc-os", "typeId": "OS", "roleAttributes": ["pc"],
                   "operatingSystems": [{"type": "Linux", "versions": [">=4.0.0"]}]}),
        ),
        (
            "posture-checks",
            json!({"name": "pc-mfa", "typeId": "MFA", "timeoutSeconds": 300, "promptOnWake": true}),
        ),
        (
            "posture-checks",
            json!({"name": "pc-multi", "typeId": "PROCESS_MULTI", "semantic": "AnyOf",
                   "processes": [{"osType": "Linux", "path": "/usr/bin/true"}]}),
        ),
    ];
    for (collection, body) in &bodies {
        let id = ctl.create_ok(&token, collection, body.clone()).await;
        let item = format!("/{collection}/{id}");
        if *collection == "cas" {
            // The CA's JWT and a verification with the wrong certificate (an error
            // envelope), then the right one.
            let res = ctl
                .http()
                .get(ctl.mgmt(&format!("{item}/jwt")))
                .header("zt-session", &token)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let vt = ctl.get_ok(&token, &item).await["data"]["verificationToken"]
                .as_str()
                .unwrap()
                .to_owned();
            for (cert, want) in [
                (third_party_ca.verification_cert("wrong"), 400),
                (third_party_ca.verification_cert(&vt), 200),
            ] {
                let res = ctl
                    .http()
                    .post(ctl.mgmt(&format!("{item}/verify")))
                    .header("zt-session", &token)
                    .header("content-type", "text/plain")
                    .body(cert)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), want);
            }
        }
        ctl.get_ok(&token, &format!("/{collection}")).await;
        ctl.get_ok(&token, &item).await;
        let (status, v) = ctl
            .call(Method::PUT, &item, &token, Some(body.clone()))
            .await;
        assert_eq!(status, 200, "PUT {item}: {v}");
        let (status, v) = ctl
            .call(
                Method::PATCH,
                &item,
                &token,
                Some(json!({"tags": {"k": "v"}})),
            )
            .await;
        assert_eq!(status, 200, "PATCH {item}: {v}");
        ctl.get_ok(&token, &item).await;
    }
    // Keep the Dial policy and the router policies for the client's session; delete the
    // rest.
    for (collection, _) in &bodies {
        let list = ctl
            .get_ok(&token, &format!("/{collection}?limit=500"))
            .await;
        for e in list["data"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap_or_default();
            if ["i", "s2", "ct2", "c", "er2", "ejs-cert"].contains(&name)
                || *collection == "terminators"
            {
                let path = format!("/{collection}/{}", e["id"].as_str().unwrap());
                let (status, v) = ctl.call(Method::DELETE, &path, &token, None).await;
                assert_eq!(status, 200, "DELETE {path}: {v}");
            }
        }
    }
    let sp = ctl
        .get_ok(&token, "/service-policies?filter=name=\"sp\"")
        .await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let id_of = async |collection: &str, name: &str| {
        ctl.get_ok(&token, &format!("/{collection}?filter=name=\"{name}\""))
            .await["data"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let erp = id_of("edge-router-policies", "erp").await;
    let serp = id_of("service-edge-router-policies", "serp").await;
    for path in [
        "/".to_owned(),
        "/version".to_owned(),
        "/summary".to_owned(),
        format!("/service-policies/{sp}/identities"),
        format!("/service-policies/{sp}/services"),
        format!("/edge-router-policies/{erp}/identities"),
        format!("/edge-router-policies/{erp}/edge-routers"),
        format!("/service-edge-router-policies/{serp}/services"),
        format!("/service-edge-router-policies/{serp}/edge-routers"),
        format!("/identities/{identity}/service-policies"),
        format!("/identities/{identity}/edge-router-policies"),
        format!("/services/{service}/service-policies"),
        format!("/services/{service}/service-edge-router-policies"),
        format!("/edge-routers/{router}/edge-router-policies"),
        format!("/edge-routers/{router}/service-edge-router-policies"),
        format!("/config-types/{ct}/configs"),
        "/specs".to_owned(),
        "/specs/edge-management".to_owned(),
        "/current-identity".to_owned(),
        "/posture-check-types".to_owned(),
        "/posture-check-types/OS".to_owned(),
        "/posture-check-role-attributes".to_owned(),
        "/identity-role-attributes".to_owned(),
        "/service-role-attributes?filter=id%20contains%20%22s%22".to_owned(),
        "/edge-router-role-attributes".to_owned(),
        format!("/service-policies/{sp}/posture-checks"),
        format!("/identities/{identity}/posture-data"),
        format!("/identities/{identity}/failed-service-requests"),
        format!("/identities/{identity}/policy-advice/{service}"),
        format!("/services/{service}/identities"),
        format!("/services/{service}/edge-routers"),
        format!("/edge-routers/{router}/identities"),
        format!("/edge-routers/{router}/services"),
    ] {
        ctl.get_ok(&token, &path).await;
    }
    // The client API, as the enrolled identity.
    let (http, session) = ctl.cert_login(&cert, &key).await;
    let call = |method: Method, path: &str, body: Option<Value>| {
        let mut req = http
            .request(method, ctl.client_url(path))
            .header("zt-session", &session);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = call(
        Method::POST,
        "/sessions",
        Some(json!({"serviceId": service, "type": "Dial"})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let sid = v["data"]["id"].as_str().unwrap().to_owned();
    for path in [
        "/".to_owned(),
        "/specs".to_owned(),
        "/specs/edge-client".to_owned(),
        format!("/services/{service}"),
        format!("/sessions/{sid}"),
        "/current-identity".to_owned(),
        "/external-jwt-signers".to_owned(),
    ] {
        let (status, v) = call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
    }
    let (status, v) = call(
        Method::POST,
        "/posture-response",
        Some(json!({"id": "os", "typeId": "OS", "type": "Linux", "version": "6.1.0"})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    // A response without its type's required fields is refused, within the contract too.
    let (status, v) = call(
        Method::POST,
        "/posture-response",
        Some(json!({"id": "os", "typeId": "OS"})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = call(Method::POST, "/posture-response-bulk", Some(json!([]))).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(Method::DELETE, &format!("/sessions/{sid}"), None).await;
    assert_eq!(status, 200, "{v}");
}

/// The success answers no other test reaches: every one goes through the contract check
/// of the controller that makes it.
#[tokio::test]
async fn the_less_travelled_success_answers_are_within_the_contract() {
    use reqwest::Method;
    use serde_json::{Value, json};
    use weft_controller::auth::totp;

    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let ctl = weft_testkit::Ctl::start();
    let admin = ctl.admin_token().await;
    let ok = |r: &(u16, Value), what: &str| assert!(r.0 / 100 == 2, "{what}: {} {}", r.0, r.1);

    // Authentication policies: create, replace, patch, delete.
    let p = ctl
        .create_ok(&admin, "auth-policies", json!({"name": "p"}))
        .await;
    let item = format!("/auth-policies/{p}");
    for (method, body) in [
        (Method::PUT, Some(json!({"name": "p2"}))),
        (Method::PATCH, Some(json!({"tags": {"k": "v"}}))),
        (Method::DELETE, None),
    ] {
        let r = ctl.call(method.clone(), &item, &admin, body).await;
        ok(&r, &format!("{method} {item}"));
    }
    ctl.get_ok(&admin, "/enumerated-capabilities").await;

    // An API session by id; the administrator's own authenticator, read and changed.
    let sessions = ctl.get_ok(&admin, "/api-sessions").await;
    let one = sessions["data"][0]["id"].as_str().unwrap().to_owned();
    ctl.get_ok(&admin, &format!("/api-sessions/{one}")).await;
    let mine = ctl.get_ok(&admin, "/current-identity/authenticators").await;
    let auth = mine["data"][0]["id"].as_str().unwrap().to_owned();
    ctl.get_ok(&admin, &format!("/current-identity/authenticators/{auth}"))
        .await;
    let r = ctl
        .call(
            Method::PUT,
            &format!("/current-identity/authenticators/{auth}"),
            &admin,
            Some(
                json!({"username": "admin", "currentPassword": ctl.admin_password(),
                        "password": "a-new-admin-password-1"}),
            ),
        )
        .await;
    ok(&r, "PUT the admin's own authenticator");

    // Routers under the transit path.
    let r = ctl
        .call(
            Method::POST,
            "/transit-routers",
            &admin,
            Some(json!({"name": "tr"})),
        )
        .await;
    ok(&r, "POST /transit-routers");
    let tr = r.1["data"]["id"].as_str().unwrap().to_owned();
    for (method, body) in [
        (Method::PATCH, json!({"cost": 2})),
        (Method::PUT, json!({"name": "tr2"})),
    ] {
        let r = ctl
            .call(
                method.clone(),
                &format!("/transit-routers/{tr}"),
                &admin,
                Some(body),
            )
            .await;
        ok(&r, &format!("{method} /transit-routers"));
    }
    let r = ctl
        .call(Method::DELETE, &format!("/routers/{tr}"), &admin, None)
        .await;
    ok(&r, "DELETE /routers");

    // A password user's MFA from enrolment to removal, with each code used once.
    let mo = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "mo", "type": "User", "isAdmin": false,
                   "enrollment": {"updb": "mo"}}),
        )
        .await;
    let enrollment = ctl
        .get_ok(&admin, &format!("/identities/{mo}/enrollments"))
        .await;
    let jti = enrollment["data"][0]["token"].as_str().unwrap().to_owned();
    let res = ctl
        .http()
        .post(ctl.url(&format!("/enroll?method=updb&token={jti}")))
        .json(&json!({"password": "mo-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = ctl
        .http()
        .post(ctl.client_url("/authenticate?method=password"))
        .json(&json!({"username": "mo", "password": "mo-password-1"}))
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    let token = v["data"]["token"].as_str().unwrap().to_owned();
    let own = ctl
        .call_client(
            Method::GET,
            "/current-identity/authenticators",
            &token,
            None,
        )
        .await;
    let own = own.1["data"][0]["id"].as_str().unwrap().to_owned();
    let r = ctl
        .call_client(
            Method::GET,
            &format!("/current-identity/authenticators/{own}"),
            &token,
            None,
        )
        .await;
    ok(&r, "GET one's own authenticator");
    let r = ctl
        .call_client(Method::POST, "/current-identity/mfa", &token, None)
        .await;
    ok(&r, "POST mfa");
    let r = ctl
        .call_client(Method::GET, "/current-identity/mfa", &token, None)
        .await;
    let secret = r.1["data"]["provisioningUrl"]
        .as_str()
        .and_then(|u| u.split("secret=").nth(1))
        .map(|s| s.split('&').next().unwrap().to_owned())
        .unwrap();
    let recovery = r.1["data"]["recoveryCodes"][0].as_str().unwrap().to_owned();
    // Steps strictly increase (a step is spent once) and stay within one of now.
    let r = ctl
        .call_client(
            Method::POST,
            "/current-identity/mfa/verify",
            &token,
            Some(json!({"code": totp::code_at(&secret, now() - 30).unwrap()})),
        )
        .await;
    ok(&r, "verify");
    let with_header = |code: String| {
        ctl.http()
            .get(ctl.client_url("/current-identity/mfa/recovery-codes"))
            .header("zt-session", &token)
            .header("mfa-validation-code", code)
            .send()
    };
    let res = with_header(totp::code_at(&secret, now()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let r = ctl
        .call_client(
            Method::POST,
            "/current-identity/mfa/recovery-codes",
            &token,
            Some(json!({"code": recovery})),
        )
        .await;
    ok(&r, "new recovery codes");
    let res = with_header(totp::code_at(&secret, now() + 30).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let fresh = v["data"]["recoveryCodes"][0].as_str().unwrap().to_owned();
    assert_ne!(fresh, recovery);
    let res = ctl
        .http()
        .delete(ctl.client_url("/current-identity/mfa"))
        .header("zt-session", &token)
        .header("mfa-validation-code", fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
