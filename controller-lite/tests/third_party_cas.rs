//! 3rd-party CAs over the real API: `/cas` CRUD, verification (and its refusals: a
//! forged certificate with the right common name, the wrong name, garbage, a second
//! verification), the CA's enrollment JWT, `ca` and `ottca` enrollment with the TLS
//! client certificate, certificate login, `externalIdClaim`, and what an unverified,
//! auth-disabled or deleted CA no longer allows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{Value, json};
use weft_testkit::third_party_ca::Issued;
use weft_testkit::{Ctl, ThirdPartyCa, jwt_claims};

fn code(r: &(u16, Value)) -> (u16, &str) {
    (r.0, r.1["error"]["code"].as_str().unwrap_or(""))
}

fn ca_body(name: &str, ca: &ThirdPartyCa, extra: Value) -> Value {
    let mut body = json!({
        "name": name,
        "certPem": ca.pem(),
        "isAutoCaEnrollmentEnabled": true,
        "isOttCaEnrollmentEnabled": true,
        "isAuthEnabled": true,
        "identityRoles": ["from-ca"],
    });
    if let (Value::Object(b), Value::Object(x)) = (&mut body, extra) {
        b.extend(x);
    }
    body
}

/// `POST /cas/{id}/verify` with `body` as `content_type`.
async fn verify(ctl: &Ctl, admin: &str, id: &str, body: &str, content_type: &str) -> (u16, Value) {
    let res = ctl
        .http()
        .post(ctl.mgmt(&format!("/cas/{id}/verify")))
        .header("zt-session", admin)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

/// Creates and verifies a CA; returns its id.
async fn verified_ca(
    ctl: &Ctl,
    admin: &str,
    name: &str,
    ca: &ThirdPartyCa,
    extra: Value,
) -> String {
    let id = ctl.create_ok(admin, "cas", ca_body(name, ca, extra)).await;
    let token = ctl.get_ok(admin, &format!("/cas/{id}")).await["data"]["verificationToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = verify(ctl, admin, &id, &ca.verification_cert(&token), "text/plain").await;
    assert_eq!(r.0, 200, "{}", r.1);
    id
}

/// `POST /enroll?method=ca` presenting `cert` (none: no client certificate).
async fn enroll_ca(ctl: &Ctl, cert: Option<&Issued>, name: Option<&str>) -> (u16, Value) {
    let http = match cert {
        Some(c) => ctl.http_with_cert(&c.cert_pem, &c.key_pem),
        None => ctl.http(),
    };
    let mut req = http.post(ctl.url("/enroll?method=ca"));
    if let Some(n) = name {
        req = req.json(&json!({"name": n}));
    }
    let res = req.send().await.unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

/// `POST /enroll/ottca {token}` presenting `cert`.
async fn enroll_ottca(ctl: &Ctl, cert: Option<&Issued>, token: &str) -> (u16, Value) {
    let http = match cert {
        Some(c) => ctl.http_with_cert(&c.cert_pem, &c.key_pem),
        None => ctl.http(),
    };
    let res = http
        .post(ctl.client_url("/enroll/ottca"))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

async fn login(ctl: &Ctl, cert: &Issued) -> u16 {
    let http = ctl.http_with_cert(&cert.cert_pem, &cert.key_pem);
    ctl.cert_authenticate(&http).await.status().as_u16()
}

async fn identity_named(ctl: &Ctl, admin: &str, name: &str) -> Option<Value> {
    let filter = format!("name = \"{name}\"");
    let v = ctl
        .get_ok(admin, &format!("/identities?filter={}", urlencode(&filter)))
        .await;
    v["data"].as_array().unwrap().first().cloned()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn cas_are_created_verified_and_give_their_jwt() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let ca = ThirdPartyCa::new("corp CA");
    let other = ThirdPartyCa::new("other CA");

    // Refused documents.
    let leaf = ca.client("leaf", &[], &[]);
    let mut not_ca = ca_body("x", &ca, json!({}));
    not_ca["certPem"] = json!(leaf.cert_pem);
    assert_eq!(
        code(&ctl.create(&admin, "cas", not_ca).await),
        (400, "CERTIFICATE_IS_NOT_CA")
    );
    let mut garbage = ca_body("x", &ca, json!({}));
    garbage["certPem"] = json!("garbage");
    assert_eq!(
        code(&ctl.create(&admin, "cas", garbage).await),
        (400, "INVALID_CERT_PEM")
    );
    let mut missing = ca_body("x", &ca, json!({}));
    missing.as_object_mut().unwrap().remove("isAuthEnabled");
    assert_eq!(
        code(&ctl.create(&admin, "cas", missing).await),
        (400, "COULD_NOT_VALIDATE")
    );
    let bad_claim = ca_body(
        "x",
        &ca,
        json!({"externalIdClaim": {"location": "SAN_URI",
        "matcher": "PREFIX", "matcherCriteria": "x", "parser": "NONE", "parserCriteria": null, "index": 0}}),
    );
    assert_eq!(
        code(&ctl.create(&admin, "cas", bad_claim).await),
        (400, "COULD_NOT_VALIDATE")
    );

    // Created unverified, with a token; the read-only fields of a body are ignored.
    let id = ctl
        .create_ok(
            &admin,
            "cas",
            ca_body("corp", &ca, json!({"isVerified": true})),
        )
        .await;
    let d = ctl.get_ok(&admin, &format!("/cas/{id}")).await["data"].clone();
    assert_eq!(d["isVerified"], json!(false));
    assert_eq!(d["identityNameFormat"], json!("[caName]-[commonName]"));
    assert_eq!(d["fingerprint"].as_str().unwrap().len(), 40);
    assert!(
        d["_links"]["verify"]["href"]
            .as_str()
            .unwrap()
            .ends_with("/verify")
    );
    assert!(d["_links"]["jwt"].is_object());
    let token = d["verificationToken"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 12);
    // The same certificate twice.
    assert_eq!(
        code(
            &ctl.create(&admin, "cas", ca_body("corp2", &ca, json!({})))
                .await
        )
        .0,
        409
    );
    let list = ctl
        .get_ok(
            &admin,
            &format!("/cas?filter={}", urlencode("isVerified = false")),
        )
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // Verification refusals, in OpenZiti's codes.
    for (body, want) in [
        (String::new(), "COULD_NOT_PARSE_BODY"),
        ("not a pem".to_owned(), "COULD_NOT_PARSE_BODY"),
        (
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_owned(),
            "EXPECTED_PEM_CERTIFICATE",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(),
            "COULD_NOT_PARSE_DER_BLOCK",
        ),
        (ca.verification_cert("wrong-name"), "INVALID_COMMON_NAME"),
        // The right name, signed by another key.
        (
            other.verification_cert(&token),
            "CERTIFICATE_FAILED_VALIDATION",
        ),
    ] {
        let r = verify(&ctl, &admin, &id, &body, "text/plain").await;
        assert_eq!(code(&r), (400, want), "{body}");
    }
    let good = ca.verification_cert(&token);
    assert_eq!(verify(&ctl, &admin, &id, &good, "image/png").await.0, 415);
    let r = verify(&ctl, &admin, &id, "{\"pem\": 1}", "application/json").await;
    assert_eq!(code(&r), (400, "COULD_NOT_PARSE_BODY"));
    assert_eq!(
        verify(&ctl, &admin, "nope", &good, "text/plain").await.0,
        404
    );
    assert_eq!(verify(&ctl, &admin, &id, &good, "text/plain").await.0, 200);
    assert_eq!(
        code(&verify(&ctl, &admin, &id, &good, "text/plain").await),
        (409, "CA_ALREADY_VERIFIED")
    );
    let d = ctl.get_ok(&admin, &format!("/cas/{id}")).await["data"].clone();
    assert_eq!(d["isVerified"], json!(true));
    assert!(d["_links"].get("verify").is_none());

    // The enrollment JWT.
    let res = ctl
        .http()
        .get(ctl.mgmt(&format!("/cas/{id}/jwt")))
        .header("zt-session", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/jwt");
    let claims = jwt_claims(&res.text().await.unwrap());
    assert_eq!(claims["em"], json!("ca"));
    assert_eq!(claims["sub"], json!(id));
    assert_eq!(claims["jti"], json!(id));
    assert_eq!(claims["aud"], json!(["openziti-enroller"]));
    assert!(claims["iss"].as_str().unwrap().ends_with('/'));
    assert!(claims.get("exp").is_none());
    assert_eq!(
        ctl.call(Method::GET, "/cas/nope/jwt", &admin, None).await.0,
        404
    );
    assert_eq!(
        ctl.call(Method::GET, &format!("/cas/{id}/jwt"), "bad", None)
            .await
            .0,
        401
    );

    // Updates: certPem stays, a PATCH merges the claim; verification survives.
    let mut put = ca_body(
        "corp",
        &ca,
        json!({"identityNameFormat": "[requestedName]"}),
    );
    put.as_object_mut().unwrap().remove("certPem");
    assert_eq!(
        ctl.call(Method::PUT, &format!("/cas/{id}"), &admin, Some(put))
            .await
            .0,
        200
    );
    let other_pem = json!({"certPem": other.pem()});
    let r = ctl
        .call(
            Method::PATCH,
            &format!("/cas/{id}"),
            &admin,
            Some(other_pem),
        )
        .await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"));
    let claim = json!({"externalIdClaim": {"location": "COMMON_NAME", "matcher": "ALL",
        "matcherCriteria": null, "parser": "NONE", "parserCriteria": null, "index": 0}});
    assert_eq!(
        ctl.call(Method::PATCH, &format!("/cas/{id}"), &admin, Some(claim))
            .await
            .0,
        200
    );
    let patch = json!({"externalIdClaim": {"index": 1}});
    assert_eq!(
        ctl.call(Method::PATCH, &format!("/cas/{id}"), &admin, Some(patch))
            .await
            .0,
        200
    );
    let d = ctl.get_ok(&admin, &format!("/cas/{id}")).await["data"].clone();
    assert_eq!(d["externalIdClaim"]["index"], json!(1));
    assert_eq!(d["externalIdClaim"]["location"], json!("COMMON_NAME"));
    assert_eq!(d["identityNameFormat"], json!("[requestedName]"));
    assert_eq!(d["isVerified"], json!(true));
    assert_eq!(d["verificationToken"], json!(token));
    assert_eq!(
        ctl.call(Method::DELETE, &format!("/cas/{id}"), &admin, None)
            .await
            .0,
        200
    );
    assert_eq!(
        ctl.call(Method::GET, &format!("/cas/{id}"), &admin, None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn ca_enrollment_creates_identities_that_log_in_while_the_ca_allows() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let ca = ThirdPartyCa::new("corp CA");
    let other = ThirdPartyCa::new("other CA");
    let laptop = ca.client("laptop", &[], &[]);

    // No CA allows auto enrollment yet; an unverified CA enrolls and logs in nobody.
    assert_eq!(
        code(&enroll_ca(&ctl, Some(&laptop), None).await),
        (400, "ENROLLMENT_NO_VALID_CAS")
    );
    let id = ctl
        .create_ok(
            &admin,
            "cas",
            ca_body(
                "corp",
                &ca,
                json!({"identityNameFormat": "[caName]-[commonName]"}),
            ),
        )
        .await;
    assert_eq!(
        code(&enroll_ca(&ctl, Some(&laptop), None).await),
        (400, "ENROLLMENT_NO_VALID_CAS")
    );
    assert_eq!(login(&ctl, &laptop).await, 401);
    let token = ctl.get_ok(&admin, &format!("/cas/{id}")).await["data"]["verificationToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        verify(
            &ctl,
            &admin,
            &id,
            &ca.verification_cert(&token),
            "text/plain"
        )
        .await
        .0,
        200
    );

    // Certificates the CA did not issue for clients, or none at all.
    for cert in [
        Some(other.client("x", &[], &[])),
        Some(ca.server_only("srv")),
        None,
    ] {
        assert_eq!(
            code(&enroll_ca(&ctl, cert.as_ref(), None).await),
            (400, "CERT_FAILED_VALIDATION")
        );
    }

    // Enrolled: a new identity with the CA's roles, named by the format.
    let r = enroll_ca(&ctl, Some(&laptop), None).await;
    assert_eq!(r.0, 200, "{}", r.1);
    let identity = identity_named(&ctl, &admin, "corp-laptop").await.unwrap();
    assert_eq!(identity["roleAttributes"], json!(["from-ca"]));
    assert!(identity["authenticators"]["cert"]["fingerprint"].is_string());
    assert_eq!(
        code(&enroll_ca(&ctl, Some(&laptop), None).await),
        (409, "CERT_IN_USE")
    );
    // Another certificate with the same common name: a counter ends the name.
    let laptop2 = ca.client("laptop", &[], &[]);
    assert_eq!(
        enroll_ca(&ctl, Some(&laptop2), Some("ignored")).await.0,
        200
    );
    assert!(
        identity_named(&ctl, &admin, "corp-laptop000001")
            .await
            .is_some()
    );
    // A requested name, through the dedicated route.
    let patch = json!({"identityNameFormat": "[requestedName]@[caName]"});
    assert_eq!(
        ctl.call(Method::PATCH, &format!("/cas/{id}"), &admin, Some(patch))
            .await
            .0,
        200
    );
    let phone = ca.client("phone", &[], &[]);
    let res = ctl
        .http_with_cert(&phone.cert_pem, &phone.key_pem)
        .post(ctl.client_url("/enroll/ca"))
        .json(&json!({"name": "bobs-phone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        identity_named(&ctl, &admin, "bobs-phone@corp")
            .await
            .is_some()
    );

    // Login while the CA is verified and auth-enabled.
    assert_eq!(login(&ctl, &laptop).await, 200);
    let off = json!({"isAuthEnabled": false});
    assert_eq!(
        ctl.call(Method::PATCH, &format!("/cas/{id}"), &admin, Some(off))
            .await
            .0,
        200
    );
    assert_eq!(login(&ctl, &laptop).await, 401);
    let on = json!({"isAuthEnabled": true});
    assert_eq!(
        ctl.call(Method::PATCH, &format!("/cas/{id}"), &admin, Some(on))
            .await
            .0,
        200
    );
    assert_eq!(login(&ctl, &laptop).await, 200);
    // Deleted: its certificates' authenticators stay but no longer log in.
    assert_eq!(
        ctl.call(Method::DELETE, &format!("/cas/{id}"), &admin, None)
            .await
            .0,
        200
    );
    assert_eq!(login(&ctl, &laptop).await, 401);
    let identity = identity_named(&ctl, &admin, "corp-laptop").await.unwrap();
    assert!(identity["authenticators"]["cert"].is_object());
}

#[tokio::test]
async fn ottca_enrollments_take_a_certificate_of_their_ca() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let ca = ThirdPartyCa::new("corp CA");
    let other = ThirdPartyCa::new("other CA");
    let ca_id = ctl
        .create_ok(
            &admin,
            "cas",
            ca_body("corp", &ca, json!({"isAutoCaEnrollmentEnabled": false})),
        )
        .await;
    // An identity created with an ottca enrollment (the CA named by name).
    let (status, v) = ctl
        .create(
            &admin,
            "identities",
            json!({"name": "dev", "type": "Device", "isAdmin": false,
            "enrollment": {"ottca": "corp"}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let identity = v["data"]["id"].as_str().unwrap().to_owned();
    let jwt = v["data"]["enrollment"]["ottca"]["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = jwt_claims(&jwt)["jti"].as_str().unwrap().to_owned();
    assert_eq!(jwt_claims(&jwt)["em"], json!("ottca"));
    let d = ctl.get_ok(&admin, &format!("/identities/{identity}")).await["data"].clone();
    assert_eq!(d["enrollment"]["ottca"]["caId"], json!(ca_id));
    assert_eq!(d["enrollment"]["ottca"]["ca"]["name"], json!("corp"));

    // A certificate of another CA, none, or the token of another method.
    let foreign = other.client("dev", &[], &[]);
    assert_eq!(
        code(&enroll_ottca(&ctl, Some(&foreign), &token).await),
        (400, "CERTIFICATE_FAILED_VALIDATION")
    );
    assert_eq!(
        code(&enroll_ottca(&ctl, None, &token).await),
        (400, "CERTIFICATE_FAILED_VALIDATION")
    );
    let (_, ott) = ctl
        .create(
            &admin,
            "identities",
            json!({"name": "o", "type": "Device", "isAdmin": false,
            "enrollment": {"ott": true}}),
        )
        .await;
    let ott_token = jwt_claims(ott["data"]["enrollment"]["ott"]["jwt"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let dev = ca.client("dev", &[], &[]);
    assert_eq!(
        code(&enroll_ottca(&ctl, Some(&dev), &ott_token).await),
        (400, "INVALID_ENROLL_METHOD")
    );
    // Redeemed once, with the CA's certificate, through the generic route.
    let res = ctl
        .http_with_cert(&dev.cert_pem, &dev.key_pem)
        .post(ctl.url(&format!("/enroll?method=ottca&token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        code(&enroll_ottca(&ctl, Some(&dev), &token).await),
        (400, "INVALID_ENROLLMENT_TOKEN")
    );
    let d = ctl.get_ok(&admin, &format!("/identities/{identity}")).await["data"].clone();
    assert!(d["authenticators"]["cert"].is_object());
    assert!(d["enrollment"].get("ottca").is_none());
    // The CA is not verified: its certificate logs nobody in, until it is.
    assert_eq!(login(&ctl, &dev).await, 401);
    let vt = ctl.get_ok(&admin, &format!("/cas/{ca_id}")).await["data"]["verificationToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        verify(
            &ctl,
            &admin,
            &ca_id,
            &ca.verification_cert(&vt),
            "text/plain"
        )
        .await
        .0,
        200
    );
    assert_eq!(login(&ctl, &dev).await, 200);

    // POST /enrollments: one ottca enrollment per identity; a bound certificate is in use.
    let second = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "dev2", "type": "Device", "isAdmin": false}),
        )
        .await;
    let body = json!({"method": "ottca", "identityId": second, "caId": ca_id,
        "expiresAt": "2099-01-01T00:00:00Z"});
    let (status, v) = ctl.create(&admin, "enrollments", body.clone()).await;
    assert_eq!(status, 201, "{v}");
    let enrollment = v["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        code(&ctl.create(&admin, "enrollments", body).await),
        (409, "ENROLLMENT_EXISTS")
    );
    let e = ctl
        .get_ok(&admin, &format!("/enrollments/{enrollment}"))
        .await["data"]
        .clone();
    assert_eq!(e["method"], json!("ottca"));
    assert_eq!(e["caId"], json!(ca_id));
    let token2 = e["token"].as_str().unwrap().to_owned();
    assert_eq!(
        code(&enroll_ottca(&ctl, Some(&dev), &token2).await),
        (409, "CERT_IN_USE")
    );
    // A CA that no longer allows ottca.
    let off = json!({"isOttCaEnrollmentEnabled": false});
    assert_eq!(
        ctl.call(Method::PATCH, &format!("/cas/{ca_id}"), &admin, Some(off))
            .await
            .0,
        200
    );
    let dev2 = ca.client("dev2", &[], &[]);
    assert_eq!(
        code(&enroll_ottca(&ctl, Some(&dev2), &token2).await),
        (400, "ENROLLMENT_CA_NOT_VALID")
    );
    // Deleting the CA deletes its enrollments.
    assert_eq!(
        ctl.call(Method::DELETE, &format!("/cas/{ca_id}"), &admin, None)
            .await
            .0,
        200
    );
    assert_eq!(
        ctl.call(
            Method::GET,
            &format!("/enrollments/{enrollment}"),
            &admin,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(login(&ctl, &dev).await, 401);
}

#[tokio::test]
async fn ottca_enrollment_is_single_use_under_concurrency() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let ca = ThirdPartyCa::new("corp CA");
    ctl.create_ok(&admin, "cas", ca_body("corp", &ca, json!({})))
        .await;
    let (_, v) = ctl
        .create(
            &admin,
            "identities",
            json!({"name": "dev", "type": "Device", "isAdmin": false,
            "enrollment": {"ottca": "corp"}}),
        )
        .await;
    let token = jwt_claims(v["data"]["enrollment"]["ottca"]["jwt"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let certs: Vec<Issued> = (0..8)
        .map(|i| ca.client(&format!("d{i}"), &[], &[]))
        .collect();
    let tries = certs.iter().map(|c| enroll_ottca(&ctl, Some(c), &token));
    let results = weft_testkit::join_all(tries).await;
    assert_eq!(
        results.iter().filter(|r| r.0 == 200).count(),
        1,
        "{results:?}"
    );
}

#[tokio::test]
async fn external_id_claims_bind_certificates_to_identities() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let ca = ThirdPartyCa::new("corp CA");
    let claim = json!({"externalIdClaim": {"location": "SAN_URI", "matcher": "SCHEME",
        "matcherCriteria": "spiffe", "parser": "SPLIT", "parserCriteria": "/", "index": 4}});
    let ca_id = verified_ca(&ctl, &admin, "corp", &ca, claim).await;
    // No claim in the certificate.
    let bare = ca.client("bare", &[], &[]);
    assert_eq!(
        code(&enroll_ca(&ctl, Some(&bare), None).await),
        (400, "MISSING_CERT_CLAIM")
    );
    // An identity with that externalId exists: bound to it, nothing created.
    let alice = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "alice", "type": "User", "isAdmin": false,
            "externalId": "alice"}),
        )
        .await;
    let a1 = ca.client("a1", &["spiffe://corp.test/user/alice"], &[]);
    assert_eq!(enroll_ca(&ctl, Some(&a1), None).await.0, 200);
    assert!(identity_named(&ctl, &admin, "corp-a1").await.is_none());
    // It logs in as alice without an authenticator of its own.
    let http = ctl.http_with_cert(&a1.cert_pem, &a1.key_pem);
    let res = ctl.cert_authenticate(&http).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["data"]["identityId"], json!(alice));
    assert_eq!(v["data"]["authenticatorId"], json!("internal"));
    // A new external id: a new identity that carries it.
    let b = ca.client("b", &["spiffe://corp.test/user/bob"], &[]);
    assert_eq!(enroll_ca(&ctl, Some(&b), None).await.0, 200);
    let bob = identity_named(&ctl, &admin, "corp-b").await.unwrap();
    assert_eq!(bob["externalId"], json!("bob"));
    assert_eq!(login(&ctl, &b).await, 200);

    // Turning the CA's authentication off ends the API sessions it opened, claimed
    // (alice's) or through an authenticator (bob's), at once.
    let alice_token = v["data"]["token"].as_str().unwrap().to_owned();
    let http = ctl.http_with_cert(&b.cert_pem, &b.key_pem);
    let res = ctl.cert_authenticate(&http).await;
    let bob_token = res.json::<Value>().await.unwrap()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for token in [&alice_token, &bob_token] {
        let r = ctl.call_client(Method::GET, "/services", token, None).await;
        assert_eq!(r.0, 200, "{}", r.1);
    }
    let r = ctl
        .call(
            Method::PATCH,
            &format!("/cas/{ca_id}"),
            &admin,
            Some(json!({"isAuthEnabled": false})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    for token in [&alice_token, &bob_token] {
        let r = ctl.call_client(Method::GET, "/services", token, None).await;
        assert_eq!(r.0, 401, "an API session outlived its CA's trust: {}", r.1);
    }
    assert_eq!(login(&ctl, &b).await, 401);
}
