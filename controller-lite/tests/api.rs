//! API tests against a real `weft-controller` process on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};
use weft_testkit::{Ctl, SDK_AUTH_BODY, jwt_claims, make_csr};

async fn get(http: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let res = http
        .get(url)
        .header("zt-session", token)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// The key that verifies the controller's JWTs: its server certificate's.
fn jwt_key(ctl: &Ctl) -> jsonwebtoken::DecodingKey {
    let server_pem = std::fs::read_to_string(ctl.dir.join("pki/server.cert.pem")).unwrap();
    let server_der = rustls::pki_types::pem::PemObject::from_pem_slice(server_pem.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer<'static>| c)
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&server_der).unwrap();
    jsonwebtoken::DecodingKey::from_rsa_der(&cert.public_key().subject_public_key.data)
}

#[tokio::test]
async fn first_start_creates_files_and_restart_keeps_state() {
    let ctl = Ctl::start();
    for f in [
        "weft.db",
        "admin.password",
        "pki/root-ca.cert.pem",
        "pki/signing-ca.cert.pem",
        "pki/server.cert.pem",
    ] {
        assert!(ctl.dir.join(f).exists(), "{f} missing");
    }
    for f in [
        "admin.password",
        "pki/root-ca.key.pem",
        "pki/signing-ca.key.pem",
        "pki/server.key.pem",
    ] {
        let mode = std::fs::metadata(ctl.dir.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let password = ctl.admin_password();
    let ca = ctl.ca_pem();
    let token = ctl.admin_token().await;
    let svc = ctl
        .create_ok(&token, "services", json!({"name": "kept"}))
        .await;
    let res = ctl.http().get(ctl.url("/version")).send().await.unwrap();
    let instance = res.headers()["ziti-instance-id"]
        .to_str()
        .unwrap()
        .to_string();

    let (tmp, dir) = ctl.stop();
    let ctl2 = Ctl::spawn(&dir, "", tmp.as_ref().unwrap().path());
    assert_eq!(ctl2.admin_password(), password);
    assert_eq!(ctl2.ca_pem(), ca);
    let token = ctl2.admin_token().await;
    let (status, v) = get(
        &ctl2.http(),
        &ctl2.mgmt(&format!("/services/{svc}")),
        &token,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["name"], "kept");
    let res = ctl2.http().get(ctl2.url("/version")).send().await.unwrap();
    assert_eq!(
        res.headers()["ziti-instance-id"].to_str().unwrap(),
        instance
    );
    drop(tmp);
}

/// `GET /protocols`, `GET /network-jwts` (both APIs) and the management API's
/// `/.well-known/est/cacerts` answer without a session; the network JWT is signed with
/// the key of the controller's server certificate and names the controller.
#[tokio::test]
async fn discovery_routes_answer_without_a_session() {
    let ctl = Ctl::start();
    let http = ctl.http();
    let port = ctl.addr.port();
    let (status, v) = get(&http, &ctl.client_url("/protocols"), "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["https"]["address"], format!("localhost:{port}"));

    let key = jwt_key(&ctl);
    let issuer = format!("https://localhost:{port}/");
    let mut tokens = Vec::new();
    for url in [
        ctl.client_url("/network-jwts"),
        ctl.mgmt("/network-jwts"),
        ctl.client_url("/network-jwts"),
    ] {
        let (status, v) = get(&http, &url, "").await;
        tokens.push(v["data"][0]["token"].clone());
        assert_eq!(status, 200, "{url}: {v}");
        let list = v["data"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{v}");
        assert_eq!(list[0]["name"], "default");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(std::slice::from_ref(&issuer));
        validation.set_audience(&["openziti-enroller"]);
        validation.set_required_spec_claims(&["iss", "sub", "aud", "jti"]);
        let claims =
            jsonwebtoken::decode::<Value>(list[0]["token"].as_str().unwrap(), &key, &validation)
                .unwrap()
                .claims;
        assert_eq!(claims["em"], "network");
        assert_eq!(claims["sub"], issuer.as_str());
    }
    // Signed once: an unauthenticated caller cannot make the controller sign per request.
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");

    let res = http
        .get(ctl.mgmt("/.well-known/est/cacerts"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/pkcs7-mime");
    let b64: String = res.text().await.unwrap().split_whitespace().collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
    assert_eq!(weft_tls::pkcs7::certificates(&der).unwrap().len(), 2);
}

#[tokio::test]
async fn version_shape_and_unknown_route_envelope() {
    let ctl = Ctl::start();
    let (status, v) = get(&ctl.http(), &ctl.url("/version"), "").await;
    assert_eq!(status, 200);
    for f in ["version", "revision", "buildDate"] {
        assert!(v["data"][f].is_string(), "{f}");
    }
    assert_eq!(
        v["data"]["apiVersions"]["edge"]["v1"]["path"],
        "/edge/client/v1"
    );
    let (status, v) = get(&ctl.http(), &ctl.url("/nope/nothing"), "").await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "NOT_FOUND");
    let (status, v) = get(&ctl.http(), &ctl.client_url("/services"), "").await;
    assert_eq!(status, 401);
    assert_eq!(v["error"]["code"], "UNAUTHORIZED");
    // OpenAPI documents, without authentication, at the stable paths and OpenZiti's.
    for (path, title) in [
        ("/edge/client/v1/openapi.json", "Weft Edge Client API"),
        ("/edge/client/v1/swagger.json", "Weft Edge Client API"),
        ("/openapi.json", "Weft Edge Client API"),
        (
            "/edge/management/v1/openapi.json",
            "Weft Edge Management API",
        ),
        (
            "/edge/management/v1/swagger.json",
            "Weft Edge Management API",
        ),
        (
            "/edge/client/v1/specs/edge-management/spec",
            "Weft Edge Management API",
        ),
        (
            "/edge/management/v1/specs/edge-client/spec",
            "Weft Edge Client API",
        ),
    ] {
        let res = ctl.http().get(ctl.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert!(res.headers().contains_key("ziti-instance-id"));
        let mut v: Value = res.json().await.unwrap();
        if path.ends_with("/spec") {
            // OpenZiti's envelope: the document as text in `data`.
            v = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        }
        assert_eq!(v["openapi"], "3.0.3", "{path}");
        assert_eq!(v["info"]["title"], title, "{path}");
    }
    let (status, v) = get(&ctl.http(), &ctl.mgmt("/specs"), "").await;
    assert_eq!(status, 200);
    assert_eq!(v["data"][1]["id"], "edge-management");
    let (status, v) = get(&ctl.http(), &ctl.client_url("/specs/nope/spec"), "").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
}

#[tokio::test]
async fn enrollment_end_to_end_then_cert_authentication() {
    let ctl = Ctl::start();
    let token = ctl.admin_token().await;
    let id = ctl
        .create_ok(
            &token,
            "identities",
            json!({"name": "py-client", "type": "User", "isAdmin": false, "enrollment": {"ott": true}}),
        )
        .await;
    // The JWT is visible on the identity and is an RS256 JWT signed by the
    // server certificate's key (spec §9.1, §9.2).
    let (_, v) = get(&ctl.http(), &ctl.mgmt(&format!("/identities/{id}")), &token).await;
    let jwt = v["data"]["enrollment"]["ott"]["jwt"]
        .as_str()
        .unwrap()
        .to_string();
    let header = jsonwebtoken::decode_header(&jwt).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let key = jwt_key(&ctl);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[format!("https://localhost:{}", ctl.addr.port())]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "jti"]);
    let claims = jsonwebtoken::decode::<Value>(&jwt, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["em"], "ott");
    assert_eq!(claims["sub"], id);
    let jti = claims["jti"].as_str().unwrap().to_string();

    // CA certs as certs-only PKCS#7, base64.
    let res = ctl
        .http()
        .get(ctl.url("/.well-known/est/cacerts"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/pkcs7-mime");
    let b64: String = res.text().await.unwrap().split_whitespace().collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
    let certs = weft_tls::pkcs7::certificates(&der).unwrap();
    assert_eq!(certs.len(), 2);

    // A garbage CSR is refused and does not burn the token.
    let (status, v) = ctl.enroll(&jti, "not a csr").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("INVALID_ENROLLMENT_TOKEN"))
    );
    let (csr, key_pem) = make_csr("whatever");
    let (status, v) = ctl.enroll(&jti, &csr).await;
    assert_eq!(status, 200, "{v}");
    let cert_pem = v["data"]["cert"].as_str().unwrap().to_string();
    let cert_der: rustls::pki_types::CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
    assert_eq!(
        leaf.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        id
    );
    // Used once: a second redemption fails.
    let (status, v) = ctl.enroll(&jti, &csr).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("INVALID_ENROLLMENT_TOKEN"))
    );
    // The identity no longer shows a pending enrollment.
    let (_, v) = get(&ctl.http(), &ctl.mgmt(&format!("/identities/{id}")), &token).await;
    assert_eq!(v["data"]["enrollment"], json!({}));

    // Certificate authentication with the issued certificate.
    let http = ctl.http_with_cert(&cert_pem, &key_pem);
    let res = ctl.cert_authenticate(&http).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("ziti-instance-id"));
    let v: Value = res.json().await.unwrap();
    let s = &v["data"];
    for f in [
        "id",
        "token",
        "expiresAt",
        "cachedLastActivityAt",
        "updatedAt",
        "createdAt",
        "authenticatorId",
    ] {
        assert!(s[f].is_string(), "{f} missing in {s}");
    }
    assert_eq!(s["identity"]["name"], "py-client");
    assert_eq!(s["identity"]["id"], id);
    assert_eq!(s["authQueries"], json!([]));
    assert_eq!(s["expirationSeconds"], 1800);
    assert_eq!(
        s["configTypes"],
        json!(["intercept.v1", "ziti-tunneler-client.v1"])
    );
    assert!(s["expiresAt"].as_str().unwrap().ends_with('Z'));
    let session_token = s["token"].as_str().unwrap().to_string();

    // Root alias of authenticate works as well (spec §2).
    let res = http
        .post(ctl.url("/authenticate?method=cert"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let (status, v) = get(&http, &ctl.client_url("/current-identity"), &session_token).await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["name"], "py-client");
    assert!(v["data"]["appData"].is_object());
    let (status, v) = get(
        &http,
        &ctl.client_url("/current-api-session"),
        &session_token,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["token"], session_token.as_str());
    // An enrolled non-admin identity is refused by the management API.
    let (status, v) = get(&http, &ctl.mgmt("/identities"), &session_token).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("UNAUTHORIZED"))
    );
    let res = http
        .delete(ctl.client_url("/current-api-session"))
        .header("zt-session", &session_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, v) = get(
        &http,
        &ctl.client_url("/current-api-session"),
        &session_token,
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("UNAUTHORIZED"))
    );

    // Without a certificate, or with one the controller did not issue: INVALID_AUTH.
    let res = ctl
        .http()
        .post(ctl.client_url("/authenticate?method=cert"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "INVALID_AUTH");
    let rogue = rcgen::generate_simple_self_signed(vec!["rogue".to_string()]).unwrap();
    let http = ctl.http_with_cert(&rogue.cert.pem(), &rogue.signing_key.serialize_pem());
    let res = http
        .post(ctl.client_url("/authenticate?method=cert"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn one_token_under_100_concurrent_enrollments_succeeds_once() {
    let ctl = Ctl::start();
    let token = ctl.admin_token().await;
    let (_, v) = ctl
        .create(
            &token,
            "identities",
            json!({"name": "race", "type": "Device", "enrollment": {"ott": true}}),
        )
        .await;
    let jti = jwt_claims(v["data"]["enrollment"]["ott"]["jwt"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_string();
    let ctl = std::sync::Arc::new(ctl);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let ctl = ctl.clone();
        let jti = jti.clone();
        tasks.push(tokio::spawn(async move {
            let (csr, _) = make_csr(&format!("c{i}"));
            ctl.enroll(&jti, &csr).await
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, v) = t.await.unwrap();
        match status {
            200 => ok += 1,
            400 => {
                assert_eq!(v["error"]["code"], "INVALID_ENROLLMENT_TOKEN");
                refused += 1;
            }
            other => panic!("unexpected status {other}: {v}"),
        }
    }
    assert_eq!((ok, refused), (1, 99));
}

#[tokio::test]
async fn expired_token_is_refused() {
    let ctl = Ctl::start_with("pki.enrollment_ttl_secs = 1");
    let token = ctl.admin_token().await;
    let (_, v) = ctl
        .create(
            &token,
            "identities",
            json!({"name": "late", "type": "User", "enrollment": {"ott": true}}),
        )
        .await;
    let jti = jwt_claims(v["data"]["enrollment"]["ott"]["jwt"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (csr, _) = make_csr("late");
    let (status, v) = ctl.enroll(&jti, &csr).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("INVALID_ENROLLMENT_TOKEN"))
    );
    let (status, _) = ctl
        .enroll("00000000-0000-0000-0000-000000000000", &csr)
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn services_paging_and_sessions_follow_policies() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let (id, cert, key) = ctl.enrolled_identity(&admin, "dialer", &["dialers"]).await;
    let cfg_type = "intercept.v1";
    let config = ctl
        .create_ok(
            &admin,
            "configs",
            json!({"name": "icpt", "configTypeId": cfg_type, "data": {"protocols": ["tcp"], "addresses": ["echo.weft"], "portRanges": [{"low": 80, "high": 80}]}}),
        )
        .await;
    let mut first = String::new();
    for i in 0..30 {
        let sid = ctl
            .create_ok(&admin, "services", json!({"name": format!("svc-{i:02}"), "roleAttributes": ["svc"], "configs": [config]}))
            .await;
        if i == 0 {
            first = sid;
        }
    }
    let hidden = ctl
        .create_ok(
            &admin,
            "services",
            json!({"name": "hidden", "roleAttributes": ["other"]}),
        )
        .await;
    let lonely = ctl
        .create_ok(
            &admin,
            "services",
            json!({"name": "lonely", "roleAttributes": ["lonely"]}),
        )
        .await;
    ctl.create_ok(
        &admin,
        "service-policies",
        json!({"name": "dial-svc", "type": "Dial", "semantic": "AnyOf", "identityRoles": ["#dialers"], "serviceRoles": ["#svc", "#lonely"]}),
    )
    .await;
    ctl.create_ok(
        &admin,
        "service-policies",
        json!({"name": "bind-first", "type": "Bind", "identityRoles": [format!("@{id}")], "serviceRoles": [format!("@{first}")]}),
    )
    .await;
    for (name, attr) in [
        ("er-public", "public"),
        ("er-private", "private"),
        ("er-none", "none"),
    ] {
        ctl.create_ok(
            &admin,
            "edge-routers",
            json!({"name": name, "roleAttributes": [attr], "hostname": format!("{name}.test"), "supportedProtocols": {"tls": format!("tls://{name}.test:3022")}}),
        )
        .await;
    }
    ctl.create_ok(
        &admin,
        "edge-router-policies",
        json!({"name": "erp", "semantic": "AnyOf", "identityRoles": ["#all"], "edgeRouterRoles": ["#public", "#private"]}),
    )
    .await;
    ctl.create_ok(
        &admin,
        "service-edge-router-policies",
        json!({"name": "serp", "serviceRoles": ["#svc"], "edgeRouterRoles": ["#public"]}),
    )
    .await;

    let (http, token) = ctl.cert_login(&cert, &key).await;
    let (status, v) = get(
        &http,
        &ctl.client_url("/services?limit=25&offset=0"),
        &token,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), 25);
    assert_eq!(
        v["meta"]["pagination"],
        json!({"limit": 25, "offset": 0, "totalCount": 31})
    );
    let svc0 = &v["data"][0];
    assert_eq!(svc0["name"], "lonely");
    let svc1 = &v["data"][1];
    assert_eq!(svc1["name"], "svc-00");
    assert_eq!(svc1["permissions"], json!(["Dial", "Bind"]));
    // No posture check exists: one passing placeholder set per permission, as OpenZiti.
    assert_eq!(
        svc1["postureQueries"],
        json!([
            {"policyId": "dummy dial policy: no posture checks defined", "policyType": "Dial",
             "isPassing": true, "postureQueries": []},
            {"policyId": "dummy bind policy: no posture checks defined", "policyType": "Bind",
             "isPassing": true, "postureQueries": []},
        ])
    );
    assert_eq!(svc1["encryptionRequired"], true);
    assert_eq!(
        svc1["config"]["intercept.v1"]["addresses"],
        json!(["echo.weft"])
    );
    let (_, v) = get(
        &http,
        &ctl.client_url("/services?limit=25&offset=25"),
        &token,
    )
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 6);
    assert_eq!(v["meta"]["pagination"]["totalCount"], 31);
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"] != hidden.as_str())
    );
    let (_, v) = get(
        &http,
        &ctl.client_url("/services?filter=name=%22svc-07%22"),
        &token,
    )
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let (_, v) = get(
        &http,
        &ctl.client_url("/services?filter=name=%22hidden%22"),
        &token,
    )
    .await;
    assert_eq!(v["data"], json!([]));
    let (_, v) = get(
        &http,
        &ctl.client_url("/current-api-session/service-updates"),
        &token,
    )
    .await;
    assert!(v["data"]["lastChangeAt"].is_string());

    let (_, v) = get(
        &http,
        &ctl.client_url("/current-identity/edge-routers"),
        &token,
    )
    .await;
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["er-private", "er-public"]);
    // Where one service is reached, without a session: the same routers a session
    // would list; an invisible service is NOT_FOUND.
    let (status, v) = get(
        &http,
        &ctl.client_url(&format!("/services/{first}/edge-routers")),
        &token,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let names: Vec<&str> = v["data"]["edgeRouters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["er-public"]);
    let (status, v) = get(
        &http,
        &ctl.client_url(&format!("/services/{lonely}/edge-routers")),
        &token,
    )
    .await;
    assert_eq!((status, &v["data"]["edgeRouters"]), (200, &json!([])));
    let (status, _) = get(
        &http,
        &ctl.client_url(&format!("/services/{hidden}/edge-routers")),
        &token,
    )
    .await;
    assert_eq!(status, 404);
    let (status, v) = get(&http, &ctl.client_url("/enumerated-capabilities"), &token).await;
    assert_eq!((status, &v["data"]), (200, &json!([])));

    let post = |body: String| {
        let http = http.clone();
        let token = token.clone();
        let url = ctl.client_url("/sessions");
        async move {
            let res = http
                .post(url)
                .header("zt-session", token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = post(format!(
        "{{\"serviceId\": \"{first}\", \"type\": \"Dial\"}}"
    ))
    .await;
    assert_eq!(status, 201, "{v}");
    let s = &v["data"];
    assert!(s["token"].is_string() && s["id"].is_string());
    assert_eq!(s["type"], "Dial");
    let routers = s["edgeRouters"].as_array().unwrap();
    assert_eq!(routers.len(), 1);
    assert_eq!(routers[0]["name"], "er-public");
    assert_eq!(routers[0]["hostname"], "er-public.test");
    assert_eq!(
        routers[0]["supportedProtocols"]["tls"],
        "tls://er-public.test:3022"
    );
    let (status, _) = post(format!(
        "{{\"serviceId\": \"{first}\", \"type\": \"Bind\"}}"
    ))
    .await;
    assert_eq!(status, 201);
    // Bind without a Bind policy, a hidden service: NOT_FOUND.
    let second = ctl_service_id(&http, &ctl, &token, "svc-01").await;
    let (status, v) = post(format!(
        "{{\"serviceId\": \"{second}\", \"type\": \"Bind\"}}"
    ))
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, _) = post(format!(
        "{{\"serviceId\": \"{hidden}\", \"type\": \"Dial\"}}"
    ))
    .await;
    assert_eq!(status, 404);
    // Dial allowed but no service edge router policy: NO_EDGE_ROUTERS_AVAILABLE.
    let (status, v) = post(format!(
        "{{\"serviceId\": \"{lonely}\", \"type\": \"Dial\"}}"
    ))
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("NO_EDGE_ROUTERS_AVAILABLE"))
    );
    let (status, v) = post("{\"serviceId\": 5}".into()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("COULD_NOT_VALIDATE"))
    );
    let (_, v) = get(&http, &ctl.client_url("/sessions"), &token).await;
    assert_eq!(v["meta"]["pagination"]["totalCount"], 2);
}

async fn ctl_service_id(http: &reqwest::Client, ctl: &Ctl, token: &str, name: &str) -> String {
    let (_, v) = get(
        http,
        &ctl.client_url(&format!("/services?filter=name=%22{name}%22")),
        token,
    )
    .await;
    v["data"][0]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn management_crud_round_trip() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let http = ctl.http();
    let id = ctl
        .create_ok(&admin, "services", json!({"name": "crud", "roleAttributes": ["a"], "encryptionRequired": false, "tags": {"k": "v"}}))
        .await;
    let (status, v) = ctl
        .create(&admin, "services", json!({"name": "crud"}))
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("DUPLICATE_NAME"))
    );
    let (_, v) = get(
        &http,
        &ctl.mgmt("/services?filter=name%20contains%20%22cru%22"),
        &admin,
    )
    .await;
    assert_eq!(v["meta"]["pagination"]["totalCount"], 1);
    let (status, v) = get(&http, &ctl.mgmt(&format!("/services/{id}")), &admin).await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["encryptionRequired"], false);
    assert_eq!(v["data"]["tags"], json!({"k": "v"}));
    let res = http
        .patch(ctl.mgmt(&format!("/services/{id}")))
        .header("zt-session", &admin)
        .json(&json!({"roleAttributes": ["b", "c"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, v) = get(&http, &ctl.mgmt(&format!("/services/{id}")), &admin).await;
    assert_eq!(v["data"]["roleAttributes"], json!(["b", "c"]));
    assert_eq!(v["data"]["encryptionRequired"], false);
    // PUT replaces the document: fields not given take their defaults; the name is
    // required, and a refused PUT changes nothing.
    let put = |body: Value| {
        http.put(ctl.mgmt(&format!("/services/{id}")))
            .header("zt-session", &admin)
            .json(&body)
            .send()
    };
    let res = put(json!({"roleAttributes": ["z"]})).await.unwrap();
    assert_eq!(res.status(), 400);
    let res = put(json!({"name": "crud", "roleAttributes": ["z"]}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, v) = get(&http, &ctl.mgmt(&format!("/services/{id}")), &admin).await;
    assert_eq!(v["data"]["roleAttributes"], json!(["z"]));
    assert_eq!(v["data"]["encryptionRequired"], true);
    assert_eq!(v["data"]["tags"], json!({}));
    // Every collection lists; config types are pre-created.
    for c in [
        "identities",
        "services",
        "configs",
        "config-types",
        "service-policies",
        "edge-router-policies",
        "service-edge-router-policies",
        "edge-routers",
    ] {
        let (status, v) = get(&http, &ctl.mgmt(&format!("/{c}?limit=5&offset=0")), &admin).await;
        assert_eq!(status, 200, "{c}");
        assert!(v["data"].is_array(), "{c}");
    }
    let (_, v) = get(
        &http,
        &ctl.mgmt("/config-types?filter=name=%22host.v1%22"),
        &admin,
    )
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let res = http
        .delete(ctl.mgmt(&format!("/services/{id}")))
        .header("zt-session", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, v) = get(&http, &ctl.mgmt(&format!("/services/{id}")), &admin).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, _) = get(&http, &ctl.mgmt("/services"), "").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn bad_input_gives_error_envelopes_and_changes_nothing() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let http = ctl.http();
    let send = |body: &'static str| {
        let http = http.clone();
        let url = ctl.mgmt("/service-policies");
        let admin = admin.clone();
        async move {
            let res = http
                .post(url)
                .header("zt-session", admin)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(res.headers().contains_key("ziti-instance-id"));
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = send("{\"name\": \"p\", ").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("COULD_NOT_PARSE_BODY"))
    );
    assert!(v["error"]["message"].is_string() && v["meta"].is_object());
    let (status, v) = send("{\"name\": \"p\", \"type\": \"Dial\", \"bogus\": true}").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("COULD_NOT_VALIDATE"))
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("bogus"));
    let (status, v) =
        send("{\"name\": \"p\", \"type\": \"Dial\", \"identityRoles\": [\"nohash\"]}").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("COULD_NOT_VALIDATE"))
    );
    let (status, _) = send("{\"name\": \"p\", \"type\": \"Dial\", \"semantic\": \"OneOf\"}").await;
    assert_eq!(status, 400);
    let (status, _) = send("[1, 2]").await;
    assert_eq!(status, 400);
    let (_, v) = get(&http, &ctl.mgmt("/service-policies"), &admin).await;
    assert_eq!(v["meta"]["pagination"]["totalCount"], 0);
    let (status, v) = get(&http, &ctl.mgmt("/services?limit=abc"), &admin).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("INVALID_PARAMETER"))
    );
    let (status, v) = get(&http, &ctl.mgmt("/services?filter=bogus"), &admin).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("INVALID_FILTER"))
    );
    let res = http
        .post(ctl.mgmt("/authenticate?method=password"))
        .json(&json!({"username": "admin", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "INVALID_AUTH");
}

#[tokio::test]
async fn oversized_pre_auth_body_is_413() {
    let ctl = Ctl::start();
    let big = vec![b' '; 1024 * 1024 + 1];
    for (path, content_type) in [
        (
            "/edge/client/v1/authenticate?method=cert",
            "application/json",
        ),
        ("/enroll?method=ott&token=x", "text/plain"),
    ] {
        let res = ctl
            .http()
            .post(ctl.url(path))
            .header("content-type", content_type)
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 413, "{path}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], "REQUEST_TOO_LARGE");
    }
}

#[tokio::test]
async fn tls12_client_and_offline_identity_creation() {
    let ctl = Ctl::start();
    // `weft-controller create-identity` writes a JWT usable against the running controller.
    let jwt_file = ctl.dir.join("offline.jwt");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft-controller"))
        .args(["create-identity", "--data-dir"])
        .arg(&ctl.dir)
        .args(["offline", "-a", "dialers", "-o"])
        .arg(&jwt_file)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&jwt_file).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the JWT enrolls the identity: owner-only"
    );
    let jwt = std::fs::read_to_string(&jwt_file).unwrap();
    // An existing file is not overwritten, and the refusal creates no identity.
    let again = |name: &str, force: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_weft-controller"));
        cmd.args(["create-identity", "--data-dir"])
            .arg(&ctl.dir)
            .args([name, "-o"])
            .arg(&jwt_file)
            .env("RUST_LOG", "warn");
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let refused = again("refused", false);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("exists; pass --force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&jwt_file).unwrap(), jwt);
    let admin = ctl.admin_token().await;
    let (status, v) = ctl
        .call(
            reqwest::Method::GET,
            "/identities?filter=name=%22refused%22",
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(0), "{v}");
    let forced = again("forced", true);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_ne!(std::fs::read_to_string(&jwt_file).unwrap(), jwt);
    let claims = jwt_claims(&jwt);
    assert_eq!(
        claims["iss"],
        format!("https://localhost:{}", ctl.addr.port())
    );
    let (csr, key) = make_csr("offline");
    let (status, v) = ctl.enroll(claims["jti"].as_str().unwrap(), &csr).await;
    assert_eq!(status, 200, "{v}");
    let cert = v["data"]["cert"].as_str().unwrap();
    // TLS 1.2 only, as the C SDK 0.29.3 speaks.
    let http = ctl.http_tls12_with_cert(cert, &key);
    let res = http
        .post(ctl.url("/authenticate?method=cert"))
        .header("content-type", "application/json")
        .body(SDK_AUTH_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["data"]["identity"]["name"], "offline");
    // What the SDK said about itself at the login shows in the identity's detail.
    let id = v["data"]["identity"]["id"].as_str().unwrap();
    let (status, detail) = ctl
        .call(
            reqwest::Method::GET,
            &format!("/identities/{id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["data"]["envInfo"]["os"], "Linux", "{detail}");
    assert_eq!(detail["data"]["sdkInfo"]["type"], "ziti-sdk-c", "{detail}");
    assert_eq!(
        detail["data"]["sdkInfo"]["version"], "0.29.3-126",
        "{detail}"
    );
}

#[tokio::test]
async fn api_session_expires_and_rejections_are_envelopes() {
    // A 3 s idle timeout leaves the checks below room on a loaded 2-core machine (at
    // 1 s they raced the expiry); timestamps have whole-second resolution.
    let ctl = Ctl::start_with("auth.api_session_timeout_secs = 3");
    let admin = ctl.admin_token().await;
    let http = ctl.http();
    // A path parameter that is not valid UTF-8 is rejected by axum itself; it
    // still comes back as a JSON envelope.
    let (status, v) = get(&http, &ctl.mgmt("/services/%FF"), &admin).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "INVALID_PARAMETER");
    let res = http.put(ctl.url("/version")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "METHOD_NOT_ALLOWED");
    tokio::time::sleep(std::time::Duration::from_millis(4200)).await;
    let (status, v) = get(&http, &ctl.mgmt("/services"), &admin).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("UNAUTHORIZED"))
    );
}

/// GETs a management list with `filter` (and optional extra query text); returns the names.
async fn names(ctl: &Ctl, admin: &str, coll: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let res = ctl
        .http()
        .get(ctl.mgmt(&format!("/{coll}")))
        .query(query)
        .header("zt-session", admin)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let v: Value = res.json().await.unwrap();
    if status != 200 {
        return (status, v);
    }
    let names = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    (status, Value::Array(names))
}

#[tokio::test]
async fn list_filters_sorting_and_paging() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    for (name, attrs, enc) in [
        ("web-a", json!(["web", "prod"]), true),
        ("web-b", json!(["web"]), false),
        ("db", json!(["prod"]), true),
        ("Cache", json!([]), false),
    ] {
        ctl.create_ok(
            &admin,
            "services",
            json!({"name": name, "roleAttributes": attrs, "encryptionRequired": enc, "tags": {"tier": name.len()}}),
        )
        .await;
    }
    let q = |f: &'static str| [("filter", f), ("limit", "100")];
    let cases: &[(&str, Value)] = &[
        (r#"name = "db""#, json!(["db"])),
        (r#"name contains "web""#, json!(["web-a", "web-b"])),
        (r#"name icontains "CACHE""#, json!(["Cache"])),
        (r#"name in ["db", "Cache", "nope"]"#, json!(["Cache", "db"])),
        (
            r#"anyOf(roleAttributes) = "prod" and encryptionRequired = true"#,
            json!(["db", "web-a"]),
        ),
        (
            r#"name = "db" or name startswith "web-b""#,
            json!(["db", "web-b"]),
        ),
        (
            r#"not (anyOf(roleAttributes) = "web") sort by name desc"#,
            json!(["db", "Cache"]),
        ),
        (r#"tags.tier = 5"#, json!(["Cache", "web-a", "web-b"])),
        (
            r#"true sort by createdAt desc limit 2"#,
            json!(["Cache", "db"]),
        ),
        (r#"sort by name skip 1 limit 2"#, json!(["db", "web-a"])),
    ];
    for (filter, want) in cases {
        let (status, got) = names(&ctl, &admin, "services", &q(filter)).await;
        assert_eq!((status, &got), (200, want), "{filter}");
    }
    // `sort` as its own parameter, and paging with limit/offset.
    let (_, got) = names(
        &ctl,
        &admin,
        "services",
        &[("sort", "name desc"), ("limit", "2"), ("offset", "1")],
    )
    .await;
    assert_eq!(got, json!(["web-a", "db"]));
    let res = ctl
        .http()
        .get(ctl.mgmt("/services?limit=3&filter=encryptionRequired%3Dfalse"))
        .header("zt-session", &admin)
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        v["meta"]["pagination"],
        json!({"limit": 3, "offset": 0, "totalCount": 2})
    );
    assert!(
        v["meta"]["filterableFields"]
            .as_array()
            .unwrap()
            .contains(&json!("roleAttributes"))
    );
    // Bad filters and sorts: clear 400s.
    for (query, code, hint) in [
        (
            ("filter", r#"nme = "db""#),
            "INVALID_FILTER",
            "unknown field",
        ),
        (
            ("filter", r#"name = "db"#),
            "INVALID_FILTER",
            "unterminated",
        ),
        (
            ("filter", r#"encryptionRequired = "yes""#),
            "INVALID_FILTER",
            "cannot be compared",
        ),
        (
            ("filter", r#"name = "db" and"#),
            "INVALID_FILTER",
            "end of filter",
        ),
        (
            ("sort", "roleAttributes"),
            "INVALID_SORT_IDENTIFIER",
            "single value",
        ),
        (("filter", "limit 1000"), "INVALID_PAGINATION", "limit"),
    ] {
        let (status, v) = names(&ctl, &admin, "services", &[query]).await;
        assert_eq!(status, 400, "{query:?}: {v}");
        assert_eq!(v["error"]["code"], code, "{query:?}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(hint),
            "{query:?}: {v}"
        );
    }
    // Identities: boolean and type fields.
    let (_, got) = names(&ctl, &admin, "identities", &q("isAdmin = true")).await;
    assert_eq!(got, json!(["admin"]));
    let (_, got) = names(&ctl, &admin, "config-types", &q(r#"name in ["host.v1"]"#)).await;
    assert_eq!(got, json!(["host.v1"]));
}

/// `POST /enroll/ott {token, clientCsr}` (newer SDKs) redeems the token like
/// `/enroll?method=ott`, once.
#[tokio::test]
async fn enroll_ott_path_redeems_a_token_once() {
    let ctl = Ctl::start();
    let token = ctl.admin_token().await;
    let (_, v) = ctl
        .create(
            &token,
            "identities",
            json!({"name": "ott-a", "type": "User", "enrollment": {"ott": true}}),
        )
        .await;
    let jwt = v["data"]["enrollment"]["ott"]["jwt"].as_str().unwrap();
    let jti = jwt_claims(jwt)["jti"].as_str().unwrap().to_owned();
    let send = |body: Value| {
        ctl.http()
            .post(ctl.client_url("/enroll/ott"))
            .json(&body)
            .send()
    };
    let (csr, _) = make_csr("ott-a");
    let res = send(json!({"token": jti, "clientCsr": csr})).await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert!(
        v["data"]["cert"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE")
    );
    for body in [
        json!({"token": jti, "clientCsr": csr}),
        json!({"token": jti}),
        json!({"token": jti, "clientCsr": csr, "x": 1}),
        json!({"clientCsr": csr}),
    ] {
        let res = send(body.clone()).await.unwrap();
        assert_eq!(res.status(), 400, "{body}");
    }
}
