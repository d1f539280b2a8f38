//! The security model over the real API: authentication policies (methods, lockout,
//! password rules), identity disable/enable and types, and TOTP MFA with its
//! authentication queries and partial sessions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{Value, json};
use weft_controller::auth::totp;
use weft_testkit::Ctl;

/// A controller with metrics, and a login throttle that lets these tests' failures by.
fn start() -> Ctl {
    Ctl::start_with("metrics.listen = \"127.0.0.1:0\"\nauth.login_failures_burst = 100")
}

fn code(r: &(u16, Value)) -> (u16, &str) {
    (r.0, r.1["error"]["code"].as_str().unwrap_or(""))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Password login on the client API.
async fn login(ctl: &Ctl, username: &str, password: &str) -> (u16, Value) {
    let res = ctl
        .http()
        .post(ctl.client_url("/authenticate?method=password"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// An identity with a password (and optionally a policy); returns its id.
async fn user(ctl: &Ctl, admin: &str, name: &str, password: &str, policy: Option<&str>) -> String {
    let mut body = json!({"name": name, "type": "User", "isAdmin": false});
    if let Some(p) = policy {
        body["authPolicyId"] = json!(p);
    }
    let id = ctl.create_ok(admin, "identities", body).await;
    let r = ctl
        .create(
            admin,
            "authenticators",
            json!({"method": "updb", "identityId": id, "username": name, "password": password}),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    id
}

#[tokio::test]
async fn auth_policies_choose_methods_and_lock_out_after_failed_passwords() {
    let ctl = start();
    let admin = ctl.admin_token().await;

    // The default policy exists, as OpenZiti's, and cannot be deleted.
    let d = ctl.get_ok(&admin, "/auth-policies/default").await;
    assert_eq!(d["data"]["name"], "Default");
    assert_eq!(d["data"]["primary"]["updb"]["maxAttempts"], 0);
    assert_eq!(d["data"]["secondary"]["requireExtJwtSigner"], Value::Null);
    let r = ctl
        .call(Method::DELETE, "/auth-policies/default", &admin, None)
        .await;
    assert_eq!(code(&r).1, "ENTITY_CAN_NOT_BE_DELETED", "{}", r.1);

    // A policy without passwords: the right password is refused like a wrong one.
    let no_pw = ctl
        .create_ok(
            &admin,
            "auth-policies",
            json!({"name": "certs-only", "primary": {"updb": {"allowed": false}}}),
        )
        .await;
    user(&ctl, &admin, "carol", "carol-pw", Some("certs-only")).await;
    assert_eq!(
        code(&login(&ctl, "carol", "carol-pw").await),
        (401, "INVALID_AUTH")
    );
    // Identities refer to their policy: it cannot be deleted while used; an unknown
    // policy is refused at create.
    let r = ctl
        .call(
            Method::DELETE,
            &format!("/auth-policies/{no_pw}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        code(&r),
        (409, "CAN_NOT_DELETE_REFERENCED_ENTITY"),
        "{}",
        r.1
    );
    let r = ctl
        .create(
            &admin,
            "identities",
            json!({"name": "x", "type": "User", "isAdmin": false, "authPolicyId": "nope"}),
        )
        .await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"), "{}", r.1);
    // Invalid documents are refused.
    let r = ctl
        .create(
            &admin,
            "auth-policies",
            json!({"name": "bad", "primary": {"updb": {"minPasswordLength": 2}}}),
        )
        .await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"), "{}", r.1);

    // Lockout: 3 wrong passwords disable the identity and end its API sessions.
    let strict = ctl
        .create_ok(
            &admin,
            "auth-policies",
            json!({"name": "strict", "primary": {"updb": {
                "maxAttempts": 3, "lockoutDurationMinutes": 0, "minPasswordLength": 10,
                "requireNumberChar": true, "requireMixedCase": true}}}),
        )
        .await;
    // Password rules hold where a password is set.
    let dave = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "dave", "type": "User", "isAdmin": false, "authPolicyId": "strict"}),
        )
        .await;
    let r = ctl
        .create(&admin, "authenticators", json!({"method": "updb", "identityId": dave, "username": "dave", "password": "short1A"}))
        .await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"), "{}", r.1);
    assert!(
        r.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at least 10")
    );
    let r = ctl
        .create(&admin, "authenticators", json!({"method": "updb", "identityId": dave, "username": "dave", "password": "longenough-but-no-digit"}))
        .await;
    assert_eq!(code(&r).0, 400, "{}", r.1);
    let r = ctl
        .create(&admin, "authenticators", json!({"method": "updb", "identityId": dave, "username": "dave", "password": "Dave-password-1"}))
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let (s, v) = login(&ctl, "dave", "Dave-password-1").await;
    assert_eq!(s, 200, "{v}");
    let dave_token = v["data"]["token"].as_str().unwrap().to_owned();
    // Two failures, then a success, reset the count.
    for _ in 0..2 {
        assert_eq!(
            code(&login(&ctl, "dave", "wrong").await),
            (401, "INVALID_AUTH")
        );
    }
    assert_eq!(login(&ctl, "dave", "Dave-password-1").await.0, 200);
    for _ in 0..2 {
        assert_eq!(login(&ctl, "dave", "wrong").await.0, 401);
    }
    let detail = ctl.get_ok(&admin, &format!("/identities/{dave}")).await;
    assert_eq!(
        detail["data"]["disabled"], false,
        "2 failures after a success"
    );
    assert_eq!(ctl.metric("weft_controller_lockouts_total"), 0);
    assert_eq!(login(&ctl, "dave", "wrong").await.0, 401);
    let detail = ctl.get_ok(&admin, &format!("/identities/{dave}")).await;
    assert_eq!(detail["data"]["disabled"], true, "{detail}");
    assert!(detail["data"]["disabledAt"].is_string());
    assert_eq!(detail["data"]["disabledUntil"], Value::Null);
    assert_eq!(detail["data"]["authPolicyId"], strict.as_str());
    assert_eq!(detail["data"]["authPolicy"]["name"], "strict");
    assert_eq!(ctl.metric("weft_controller_lockouts_total"), 1);
    // Locked out: the right password is refused, the old API session is gone.
    assert_eq!(
        code(&login(&ctl, "dave", "Dave-password-1").await),
        (401, "INVALID_AUTH")
    );
    let r = ctl
        .call_client(Method::GET, "/current-api-session", &dave_token, None)
        .await;
    assert_eq!(code(&r), (401, "UNAUTHORIZED"));
    // An administrator enables it again.
    let r = ctl
        .call(
            Method::POST,
            &format!("/identities/{dave}/enable"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(login(&ctl, "dave", "Dave-password-1").await.0, 200);
}

#[tokio::test]
async fn identities_are_disabled_and_enabled_and_typed() {
    let ctl = start();
    let admin = ctl.admin_token().await;
    let erin = user(&ctl, &admin, "erin", "erin-password", None).await;
    let token = login(&ctl, "erin", "erin-password").await.1["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let types = ctl.get_ok(&admin, "/identity-types").await;
    let names: Vec<&str> = types["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Default", "Router"]);
    assert_eq!(
        ctl.get_ok(&admin, "/identity-types/Router").await["data"]["id"],
        "Router"
    );
    let detail = ctl.get_ok(&admin, &format!("/identities/{erin}")).await;
    // `User` is kept as `Default`, as OpenZiti does.
    assert_eq!(detail["data"]["typeId"], "Default");
    assert_eq!(detail["data"]["type"]["entity"], "identity-types");
    assert_eq!(detail["data"]["isMfaEnabled"], false);

    // Bad bodies change nothing.
    for body in [
        json!({}),
        json!({"durationMinutes": -1}),
        json!({"durationMinutes": "5"}),
    ] {
        let r = ctl
            .call(
                Method::POST,
                &format!("/identities/{erin}/disable"),
                &admin,
                Some(body.clone()),
            )
            .await;
        assert_eq!(code(&r).0, 400, "{body}: {}", r.1);
    }
    assert_eq!(
        ctl.call_client(Method::GET, "/current-api-session", &token, None)
            .await
            .0,
        200
    );
    let r = ctl
        .call(
            Method::POST,
            "/identities/nope/disable",
            &admin,
            Some(json!({"durationMinutes": 1})),
        )
        .await;
    assert_eq!(code(&r), (404, "NOT_FOUND"));

    let r = ctl
        .call(
            Method::POST,
            &format!("/identities/{erin}/disable"),
            &admin,
            Some(json!({"durationMinutes": 60})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let detail = ctl.get_ok(&admin, &format!("/identities/{erin}")).await;
    assert_eq!(detail["data"]["disabled"], true);
    assert!(detail["data"]["disabledUntil"].is_string());
    assert_eq!(
        code(
            &ctl.call_client(Method::GET, "/current-api-session", &token, None)
                .await
        ),
        (401, "UNAUTHORIZED")
    );
    assert_eq!(
        code(&login(&ctl, "erin", "erin-password").await),
        (401, "INVALID_AUTH")
    );
    // An update keeps the disable (clients cannot write its timestamps).
    let r = ctl
        .call(
            Method::PATCH,
            &format!("/identities/{erin}"),
            &admin,
            Some(json!({"roleAttributes": ["a"], "disabledAt": null})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(
        ctl.get_ok(&admin, &format!("/identities/{erin}")).await["data"]["disabled"],
        true
    );
    let r = ctl
        .call(
            Method::POST,
            &format!("/identities/{erin}/enable"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.0, 200);
    assert_eq!(login(&ctl, "erin", "erin-password").await.0, 200);
    // `disabled: true` in an update disables until enabled; the admin cannot be disabled.
    let r = ctl
        .call(
            Method::PATCH,
            &format!("/identities/{erin}"),
            &admin,
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(r.0, 200);
    assert_eq!(login(&ctl, "erin", "erin-password").await.0, 401);
    let admin_id = ctl.get_ok(&admin, "/current-identity").await["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = ctl
        .call(
            Method::POST,
            &format!("/identities/{admin_id}/disable"),
            &admin,
            Some(json!({"durationMinutes": 0})),
        )
        .await;
    assert_eq!(code(&r).0, 400);
}

/// The MFA detail of the caller; the TOTP secret from its provisioning URL.
async fn mfa_secret(ctl: &Ctl, token: &str) -> (String, Vec<String>) {
    let (s, v) = ctl
        .call_client(Method::GET, "/current-identity/mfa", token, None)
        .await;
    assert_eq!(s, 200, "{v}");
    let url = v["data"]["provisioningUrl"].as_str().unwrap();
    assert!(url.starts_with("otpauth://totp/Weft:"), "{url}");
    let secret = url.split("secret=").nth(1).unwrap().to_owned();
    let codes = v["data"]["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (secret, codes)
}

#[tokio::test]
async fn totp_mfa_gates_the_session_and_accepts_each_code_once() {
    let ctl = start();
    let admin = ctl.admin_token().await;
    let frank = user(&ctl, &admin, "frank", "frank-password", None).await;
    let (_, v) = login(&ctl, "frank", "frank-password").await;
    assert_eq!(v["data"]["authQueries"], json!([]));
    let token = v["data"]["token"].as_str().unwrap().to_owned();

    // Enroll: 201, then 409 for a second; detail, QR code.
    let r = ctl
        .call_client(Method::POST, "/current-identity/mfa", &token, None)
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let r = ctl
        .call_client(Method::POST, "/current-identity/mfa", &token, None)
        .await;
    assert_eq!(code(&r), (409, "MFA_EXISTS"));
    let (secret, recovery) = mfa_secret(&ctl, &token).await;
    assert_eq!(recovery.len(), 20);
    let png = ctl
        .http()
        .get(ctl.client_url("/current-identity/mfa/qr-code"))
        .header("zt-session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(png.status(), 200);
    assert_eq!(png.headers()["content-type"], "image/png");
    assert_eq!(&png.bytes().await.unwrap()[..4], b"\x89PNG");

    // Verify: a wrong code, then the right one.
    let wrong = if totp::code_at(&secret, now()).as_deref() == Some("000000") {
        "111111"
    } else {
        "000000"
    };
    let r = ctl
        .call_client(
            Method::POST,
            "/current-identity/mfa/verify",
            &token,
            Some(json!({"code": wrong})),
        )
        .await;
    assert_eq!(code(&r), (400, "MFA_INVALID_TOKEN"));
    let first = totp::code_at(&secret, now()).unwrap();
    let r = ctl
        .call_client(
            Method::POST,
            "/current-identity/mfa/verify",
            &token,
            Some(json!({"code": first})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(
        ctl.call_client(Method::GET, "/services", &token, None)
            .await
            .0,
        200,
        "verify completes the session"
    );
    // Verified: the QR code and secret are no longer shown.
    let r = ctl
        .call_client(Method::GET, "/current-identity/mfa/qr-code", &token, None)
        .await;
    assert_eq!(r.0, 404);
    let detail = ctl.get_ok(&admin, &format!("/identities/{frank}")).await;
    assert_eq!(detail["data"]["isMfaEnabled"], true);

    // A new login is partial: it answers a TOTP query before anything else.
    let (_, v) = login(&ctl, "frank", "frank-password").await;
    assert_eq!(v["data"]["authQueries"][0]["typeId"], "MFA");
    assert_eq!(v["data"]["authQueries"][0]["httpUrl"], "./authenticate/mfa");
    assert_eq!(v["data"]["isMfaRequired"], true);
    assert_eq!(v["data"]["isMfaComplete"], false);
    let partial = v["data"]["token"].as_str().unwrap().to_owned();
    for (method, path) in [
        (Method::GET, "/services"),
        (Method::POST, "/sessions"),
        (Method::GET, "/current-identity"),
        (Method::GET, "/current-identity/edge-routers"),
    ] {
        let r = ctl
            .call_client(method.clone(), path, &partial, Some(json!({})))
            .await;
        assert_eq!(code(&r), (401, "UNAUTHORIZED"), "{method} {path}: {}", r.1);
    }
    let r = ctl
        .call_client(Method::GET, "/current-api-session", &partial, None)
        .await;
    assert_eq!(r.0, 200);
    assert_eq!(r.1["data"]["authQueries"][0]["typeId"], "MFA");
    // The code used at verify is spent: a replay is refused (OpenZiti accepts it again).
    let r = ctl
        .call_client(
            Method::POST,
            "/authenticate/mfa",
            &partial,
            Some(json!({"code": first})),
        )
        .await;
    assert_eq!(code(&r), (400, "MFA_INVALID_TOKEN"), "a replayed code");
    // A recovery code answers, once.
    let r = ctl
        .call_client(
            Method::POST,
            "/authenticate/mfa",
            &partial,
            Some(json!({"code": recovery[0]})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(
        ctl.call_client(Method::GET, "/services", &partial, None)
            .await
            .0,
        200
    );
    let (_, v) = login(&ctl, "frank", "frank-password").await;
    let partial2 = v["data"]["token"].as_str().unwrap().to_owned();
    let r = ctl
        .call_client(
            Method::POST,
            "/authenticate/mfa",
            &partial2,
            Some(json!({"code": recovery[0]})),
        )
        .await;
    assert_eq!(
        code(&r),
        (400, "MFA_INVALID_TOKEN"),
        "a spent recovery code"
    );
    // The next step's code (within the ±1 step window) answers; then it is spent too.
    let next = totp::code_at(&secret, now() + 30).unwrap();
    let r = ctl
        .call_client(
            Method::POST,
            "/authenticate/mfa",
            &partial2,
            Some(json!({"code": next})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let (_, v) = login(&ctl, "frank", "frank-password").await;
    let partial3 = v["data"]["token"].as_str().unwrap().to_owned();
    let r = ctl
        .call_client(
            Method::POST,
            "/authenticate/mfa",
            &partial3,
            Some(json!({"code": next})),
        )
        .await;
    assert_eq!(code(&r).1, "MFA_INVALID_TOKEN");
    // Malformed bodies are refused and change nothing.
    for body in [
        json!({}),
        json!({"code": 123456}),
        json!({"code": "1234567890123"}),
    ] {
        let r = ctl
            .call_client(
                Method::POST,
                "/authenticate/mfa",
                &partial3,
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.0, 400, "{body}: {}", r.1);
    }
    // Wrong codes in a row block codes for a while, even the right one.
    let failures_before = ctl.metric("weft_controller_mfa_failures_total");
    let mut blocked = false;
    for _ in 0..6 {
        let r = ctl
            .call_client(
                Method::POST,
                "/authenticate/mfa",
                &partial3,
                Some(json!({"code": "99999"})),
            )
            .await;
        if r.0 == 429 {
            blocked = true;
            break;
        }
        assert_eq!(code(&r).1, "MFA_INVALID_TOKEN");
    }
    assert!(blocked, "wrong codes are rate limited");
    assert!(ctl.metric("weft_controller_mfa_failures_total") > failures_before);
    let r = ctl
        .call_client(
            Method::POST,
            "/authenticate/mfa",
            &partial3,
            Some(json!({"code": recovery[1]})),
        )
        .await;
    assert_eq!(r.0, 429, "blocked: even a good code waits");
    assert!(ctl.metric("weft_controller_mfa_throttled_total") >= 1);
    assert_eq!(
        ctl.call_client(Method::GET, "/services", &partial3, None)
            .await
            .0,
        401
    );

    // Totp tokens are for OIDC sessions.
    let r = ctl
        .call_client(
            Method::POST,
            "/current-api-session/totp-token",
            &token,
            Some(json!({"code": "123456"})),
        )
        .await;
    assert_eq!(code(&r), (400, "INVALID_BACKING_TOKEN_TYPE"));
    // Removing a verified enrollment needs a code; an administrator can reset it.
    let r = ctl
        .call_client(Method::DELETE, "/current-identity/mfa", &token, None)
        .await;
    assert_eq!(code(&r), (400, "MFA_INVALID_TOKEN"));
    let r = ctl
        .call(
            Method::DELETE,
            &format!("/identities/{frank}/mfa"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let (_, v) = login(&ctl, "frank", "frank-password").await;
    assert_eq!(v["data"]["authQueries"], json!([]));
    let r = ctl
        .call_client(
            Method::POST,
            "/authenticate/mfa",
            v["data"]["token"].as_str().unwrap(),
            Some(json!({"code": "123456"})),
        )
        .await;
    assert_eq!(code(&r), (409, "MFA_NOT_ENROLLED"));
}

#[tokio::test]
async fn a_policy_requiring_totp_makes_unenrolled_identities_enroll_first() {
    let ctl = start();
    let admin = ctl.admin_token().await;
    ctl.create_ok(
        &admin,
        "auth-policies",
        json!({"name": "totp", "secondary": {"requireTotp": true}}),
    )
    .await;
    user(&ctl, &admin, "gina", "gina-password", Some("totp")).await;
    let (_, v) = login(&ctl, "gina", "gina-password").await;
    assert_eq!(v["data"]["authQueries"][0]["typeId"], "MFA");
    let token = v["data"]["token"].as_str().unwrap().to_owned();
    assert_eq!(
        ctl.call_client(Method::GET, "/services", &token, None)
            .await
            .0,
        401
    );
    // Not enrolled: the answer endpoint says so; the session enrolls while partial.
    let r = ctl
        .call_client(
            Method::POST,
            "/authenticate/mfa",
            &token,
            Some(json!({"code": "123456"})),
        )
        .await;
    assert_eq!(code(&r), (409, "MFA_NOT_ENROLLED"));
    assert_eq!(
        ctl.call_client(Method::POST, "/current-identity/mfa", &token, None)
            .await
            .0,
        201
    );
    let (secret, _) = mfa_secret(&ctl, &token).await;
    let r = ctl
        .call_client(
            Method::POST,
            "/current-identity/mfa/verify",
            &token,
            Some(json!({"code": totp::code_at(&secret, now()).unwrap()})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(
        ctl.call_client(Method::GET, "/services", &token, None)
            .await
            .0,
        200
    );
    // Recovery codes need a full session and a TOTP code.
    let r = ctl
        .call_client(
            Method::GET,
            "/current-identity/mfa/recovery-codes",
            &token,
            None,
        )
        .await;
    assert_eq!(code(&r), (400, "MFA_INVALID_TOKEN"));
}

#[tokio::test]
async fn api_session_certificates_belong_to_their_own_api_session() {
    let ctl = start();
    let admin = ctl.admin_token().await;
    user(&ctl, &admin, "hank", "hank-password", None).await;
    let token = login(&ctl, "hank", "hank-password").await.1["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = login(&ctl, "hank", "hank-password").await.1["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (csr, _key) = weft_testkit::make_csr("anything");

    // Bad bodies change nothing.
    for body in [
        json!({}),
        json!({"csr": "not a csr"}),
        json!({"csr": csr, "x": 1}),
    ] {
        let r = ctl
            .call_client(
                Method::POST,
                "/current-api-session/certificates",
                &token,
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.0, 400, "{body}: {}", r.1);
    }
    let r = ctl.call_client(Method::POST, "/current-api-session/certificates", &token, Some(json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}))).await;
    assert_eq!(code(&r), (400, "COULD_NOT_PROCESS_CSR"), "{}", r.1);
    assert_eq!(
        ctl.call_client(
            Method::GET,
            "/current-api-session/certificates",
            &token,
            None
        )
        .await
        .1["meta"]["pagination"]["totalCount"],
        0
    );

    let r = ctl
        .call_client(
            Method::POST,
            "/current-api-session/certificates",
            &token,
            Some(json!({"csr": csr})),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let id = r.1["data"]["id"].as_str().unwrap().to_owned();
    let pem = r.1["data"]["certificate"].as_str().unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE"));
    assert!(
        r.1["data"]["cas"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    // Issued for the identity, for 12 hours.
    let der = rustls::pki_types::CertificateDer::from(
        weft_tls::pem::certificates(pem.as_bytes()).unwrap()[0].to_vec(),
    );
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(lifetime, 12 * 3600 + 300);
    let detail = ctl
        .call_client(
            Method::GET,
            &format!("/current-api-session/certificates/{id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(detail.0, 200);
    assert_eq!(
        detail.1["data"]["fingerprint"],
        weft_tls::fingerprint(der.as_ref())
    );
    assert!(
        detail.1["data"]["subject"]
            .as_str()
            .unwrap()
            .contains("CN=")
    );

    // Another API session of the same identity sees none of it.
    let r = ctl
        .call_client(
            Method::GET,
            "/current-api-session/certificates",
            &other,
            None,
        )
        .await;
    assert_eq!(r.1["data"], json!([]));
    for method in [Method::GET, Method::DELETE] {
        let r = ctl
            .call_client(
                method,
                &format!("/current-api-session/certificates/{id}"),
                &other,
                None,
            )
            .await;
        assert_eq!(code(&r), (404, "NOT_FOUND"));
    }
    let r = ctl
        .call_client(
            Method::DELETE,
            &format!("/current-api-session/certificates/{id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = ctl
        .call_client(
            Method::DELETE,
            &format!("/current-api-session/certificates/{id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(r.0, 404);
}

#[tokio::test]
async fn identities_change_their_own_password_given_the_current_one() {
    let ctl = start();
    let admin = ctl.admin_token().await;
    let ivy = user(&ctl, &admin, "ivy", "ivy-password", None).await;
    user(&ctl, &admin, "jack", "jack-password", None).await;
    let token = login(&ctl, "ivy", "ivy-password").await.1["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let jack = login(&ctl, "jack", "jack-password").await.1["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v) = ctl
        .call_client(
            Method::GET,
            "/current-identity/authenticators",
            &token,
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let list = v["data"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["method"], "updb");
    assert_eq!(list[0]["identityId"], ivy.as_str());
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/current-identity/authenticators/{id}");
    // Another identity's authenticator does not exist for jack.
    assert_eq!(
        ctl.call_client(Method::GET, &path, &jack, None).await.0,
        404
    );
    let r = ctl
        .call_client(
            Method::PATCH,
            &path,
            &jack,
            Some(json!({"password": "stolen-pw", "currentPassword": "x"})),
        )
        .await;
    assert_eq!(r.0, 404);
    // The current password is required and checked.
    let r = ctl
        .call_client(
            Method::PATCH,
            &path,
            &token,
            Some(json!({"password": "new-password"})),
        )
        .await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"));
    let r = ctl
        .call_client(
            Method::PATCH,
            &path,
            &token,
            Some(json!({"password": "new-password", "currentPassword": "wrong"})),
        )
        .await;
    assert_eq!(code(&r), (401, "UNAUTHORIZED"));
    // The policy's rules hold (the default asks for 5 characters).
    let r = ctl
        .call_client(
            Method::PATCH,
            &path,
            &token,
            Some(json!({"password": "abc", "currentPassword": "ivy-password"})),
        )
        .await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"));
    let r = ctl
        .call_client(
            Method::PATCH,
            &path,
            &token,
            Some(json!({"password": "new-password", "currentPassword": "ivy-password"})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(login(&ctl, "ivy", "ivy-password").await.0, 401);
    assert_eq!(login(&ctl, "ivy", "new-password").await.0, 200);
    // PUT changes both; a taken user name is refused.
    let r = ctl.call_client(Method::PUT, &path, &token, Some(json!({"username": "jack", "password": "new-password", "currentPassword": "new-password"}))).await;
    assert_eq!(code(&r).0, 409, "{}", r.1);
    let r = ctl.call_client(Method::PUT, &path, &token, Some(json!({"username": "ivy2", "password": "newer-password", "currentPassword": "new-password"}))).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(login(&ctl, "ivy2", "newer-password").await.0, 200);
}

#[tokio::test]
async fn updb_enrollment_sets_a_password_once() {
    let ctl = start();
    let admin = ctl.admin_token().await;
    let (s, v) = ctl
        .create(
            &admin,
            "identities",
            json!({"name": "kim", "type": "User", "isAdmin": false, "enrollment": {"updb": "kim"}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["data"]["id"].as_str().unwrap().to_owned();
    let jwt = v["data"]["enrollment"]["updb"]["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let claims = weft_testkit::jwt_claims(&jwt);
    assert_eq!(claims["em"], "updb");
    assert_eq!(claims["sub"], id.as_str());
    let jti = claims["jti"].as_str().unwrap().to_owned();
    let detail = ctl.get_ok(&admin, &format!("/identities/{id}")).await;
    assert_eq!(detail["data"]["enrollment"]["updb"]["token"], jti.as_str());
    // The user name is taken from now on.
    let r = ctl
        .create(&admin, "identities", json!({"name": "kim2", "type": "User", "isAdmin": false, "enrollment": {"updb": "kim"}}))
        .await;
    assert_eq!(code(&r), (409, "DUPLICATE_NAME"), "{}", r.1);

    let enroll = |token: String, body: Value| {
        let http = ctl.http();
        let url = ctl.url(&format!("/enroll?method=updb&token={token}"));
        async move {
            let res = http.post(url).json(&body).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    // A password the policy refuses, a malformed body: the token survives.
    let r = enroll(jti.clone(), json!({"password": "abc"})).await;
    assert_eq!(code(&r), (400, "COULD_NOT_VALIDATE"), "{}", r.1);
    let r = enroll(jti.clone(), json!({"pass": "long-password"})).await;
    assert_eq!(r.0, 400, "{}", r.1);
    // Eight at once: one wins (the others find the token spent, or the hashing queue
    // full on a loaded machine).
    let tries = (0..8).map(|i| {
        enroll(
            jti.clone(),
            json!({"password": format!("kim-password-{i}")}),
        )
    });
    let results = weft_testkit::join_all(tries).await;
    let won: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.0 == 200)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert_eq!(results[won[0]].1["data"]["username"], "kim");
    for r in results.iter().filter(|r| r.0 != 200) {
        assert!(
            ["INVALID_ENROLLMENT_TOKEN", "RATE_LIMITED"].contains(&code(r).1),
            "{}",
            r.1
        );
    }
    assert_eq!(
        login(&ctl, "kim", &format!("kim-password-{}", won[0]))
            .await
            .0,
        200
    );
    let detail = ctl.get_ok(&admin, &format!("/identities/{id}")).await;
    assert!(detail["data"]["enrollment"].get("updb").is_none());
    assert_eq!(detail["data"]["authenticators"]["updb"]["username"], "kim");

    // An administrator can start one with POST /enrollments too.
    let lee = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "lee", "type": "User", "isAdmin": false}),
        )
        .await;
    let r = ctl
        .create(
            &admin,
            "enrollments",
            json!({"method": "updb", "identityId": lee}),
        )
        .await;
    assert_eq!(
        code(&r).0,
        400,
        "a updb enrollment needs a username: {}",
        r.1
    );
    let r = ctl
        .create(
            &admin,
            "enrollments",
            json!({"method": "updb", "identityId": lee, "username": "lee"}),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let e = ctl.get_ok(&admin, &format!("/identities/{lee}")).await;
    let token = e["data"]["enrollment"]["updb"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = ctl
        .http()
        .post(ctl.client_url(&format!("/enroll/updb?token={token}")))
        .json(&json!({"username": "ignored", "password": "lee-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(login(&ctl, "lee", "lee-password").await.0, 200);
}

#[tokio::test]
async fn re_enrolling_an_authenticator_replaces_it_with_a_new_enrollment() {
    let ctl = start();
    let admin = ctl.admin_token().await;
    let (id, cert, key) = ctl.enrolled_identity(&admin, "nia", &[]).await;
    let (_, old_token) = ctl.cert_login(&cert, &key).await;
    let auths = ctl
        .get_ok(&admin, &format!("/identities/{id}/authenticators"))
        .await;
    let auth = auths["data"][0]["id"].as_str().unwrap().to_owned();
    let later = "2999-01-01T00:00:00Z";
    let r = ctl
        .call(
            Method::POST,
            &format!("/authenticators/{auth}/re-enroll"),
            &admin,
            Some(json!({"expiresAt": "2000-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(code(&r).0, 400, "an expiry in the past: {}", r.1);
    let r = ctl
        .call(
            Method::POST,
            &format!("/authenticators/{auth}/re-enroll"),
            &admin,
            Some(json!({"expiresAt": later})),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    // The old certificate and its API session are gone.
    assert_eq!(
        ctl.call_client(Method::GET, "/current-api-session", &old_token, None)
            .await
            .0,
        401
    );
    let res = ctl
        .cert_authenticate(&ctl.http_with_cert(&cert, &key))
        .await;
    assert_eq!(res.status(), 401);
    // The new enrollment issues a new certificate that logs in.
    let detail = ctl.get_ok(&admin, &format!("/identities/{id}")).await;
    let jti = detail["data"]["enrollment"]["ott"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (csr, new_key) = weft_testkit::make_csr("nia");
    let (s, v) = ctl.enroll(&jti, &csr).await;
    assert_eq!(s, 200, "{v}");
    let new_cert = v["data"]["cert"].as_str().unwrap();
    ctl.cert_login(new_cert, &new_key).await;

    // A password authenticator comes back as a updb enrollment with its user name.
    let oz = user(&ctl, &admin, "oz", "oz-password", None).await;
    let auths = ctl
        .get_ok(&admin, &format!("/identities/{oz}/authenticators"))
        .await;
    let auth = auths["data"][0]["id"].as_str().unwrap().to_owned();
    let r = ctl
        .call(
            Method::POST,
            &format!("/authenticators/{auth}/re-enroll"),
            &admin,
            Some(json!({"expiresAt": later})),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    assert_eq!(login(&ctl, "oz", "oz-password").await.0, 401);
    let detail = ctl.get_ok(&admin, &format!("/identities/{oz}")).await;
    let token = detail["data"]["enrollment"]["updb"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = ctl
        .http()
        .post(ctl.url(&format!("/enroll?method=updb&token={token}")))
        .json(&json!({"password": "oz-new-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(login(&ctl, "oz", "oz-new-password").await.0, 200);
}

/// Thirty identities with MFA each log in with their certificate and answer the TOTP
/// query; every answer completes its session. Prints the latencies (the figure:
/// certificate login, and the MFA answer on top).
#[tokio::test]
async fn mfa_logins_complete_and_their_latency_is_reported() {
    let ctl = start();
    let admin = ctl.admin_token().await;
    let mut enrolled = Vec::new();
    for i in 0..30 {
        let (_, cert, key) = ctl.enrolled_identity(&admin, &format!("m{i}"), &[]).await;
        let (_, token) = ctl.cert_login(&cert, &key).await;
        assert_eq!(
            ctl.call_client(Method::POST, "/current-identity/mfa", &token, None)
                .await
                .0,
            201
        );
        let (secret, _) = mfa_secret(&ctl, &token).await;
        let code = totp::code_at(&secret, now()).unwrap();
        let r = ctl
            .call_client(
                Method::POST,
                "/current-identity/mfa/verify",
                &token,
                Some(json!({"code": code})),
            )
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
        enrolled.push((cert, key, secret));
    }
    let (mut login_ms, mut answer_ms) = (Vec::new(), Vec::new());
    for (cert, key, secret) in &enrolled {
        let http = ctl.http_with_cert(cert, key);
        let started = std::time::Instant::now();
        let res = ctl.cert_authenticate(&http).await;
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        login_ms.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(v["data"]["authQueries"][0]["typeId"], "MFA");
        let token = v["data"]["token"].as_str().unwrap().to_owned();
        // The current step's code was spent at verify: the next one is in the window.
        let code = totp::code_at(secret, now() + 30).unwrap();
        let started = std::time::Instant::now();
        let r = ctl
            .call_client(
                Method::POST,
                "/authenticate/mfa",
                &token,
                Some(json!({"code": code})),
            )
            .await;
        answer_ms.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.0, 200, "{}", r.1);
        assert_eq!(
            ctl.call_client(Method::GET, "/services", &token, None)
                .await
                .0,
            200
        );
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    eprintln!(
        "MFA login over {} identities: certificate login p50 {:.1} ms p99 {:.1} ms; TOTP answer p50 {:.1} ms p99 {:.1} ms",
        enrolled.len(),
        pct(&mut login_ms, 0.5),
        pct(&mut login_ms, 0.99),
        pct(&mut answer_ms, 0.5),
        pct(&mut answer_ms, 0.99),
    );
}

#[tokio::test]
async fn certificates_are_extended_over_tls_with_the_current_one() {
    let ctl = start();
    let admin = ctl.admin_token().await;
    let (id, cert, key) = ctl.enrolled_identity(&admin, "pia", &[]).await;
    let auths = ctl
        .get_ok(&admin, &format!("/identities/{id}/authenticators"))
        .await;
    let auth = auths["data"][0]["id"].as_str().unwrap().to_owned();
    // An administrator asks for an extension with a new key.
    let r = ctl
        .call(
            Method::POST,
            &format!("/authenticators/{auth}/request-extend"),
            &admin,
            Some(json!({"rollKeys": true})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let http = ctl.http_with_cert(&cert, &key);
    let res = ctl.cert_authenticate(&http).await;
    assert_eq!(res.headers()["ziti-authenticator-extend-requested"], "true");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["data"]["isCertExtendable"], true);
    assert_eq!(v["data"]["isCertExtendRequested"], true);
    assert_eq!(v["data"]["isCertKeyRollRequested"], true);
    let token = v["data"]["token"].as_str().unwrap().to_owned();
    let path = format!("/current-identity/authenticators/{auth}");
    let call = |http: &reqwest::Client, p: String, body: Value| {
        let req = http
            .post(ctl.client_url(&p))
            .header("zt-session", &token)
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            (
                res.status().as_u16(),
                res.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // Over a connection without the current certificate: refused.
    let (csr, new_key) = weft_testkit::make_csr("pia");
    let r = call(
        &ctl.http(),
        format!("{path}/extend"),
        json!({"clientCertCsr": csr}),
    )
    .await;
    assert_eq!(code(&r), (401, "UNAUTHORIZED"), "{}", r.1);
    let r = call(
        &http,
        format!("{path}/extend"),
        json!({"clientCertCsr": "junk"}),
    )
    .await;
    assert_eq!(code(&r), (400, "COULD_NOT_PROCESS_CSR"), "{}", r.1);
    let r = call(
        &http,
        format!("{path}/extend-verify"),
        json!({"clientCert": cert}),
    )
    .await;
    assert_eq!(
        code(&r),
        (409, "CAN_NOT_UPDATE_AUTHENTICATOR"),
        "nothing pending: {}",
        r.1
    );
    let r = call(
        &http,
        format!("{path}/extend"),
        json!({"clientCertCsr": csr}),
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let new_cert = r.1["data"]["clientCert"].as_str().unwrap().to_owned();
    assert!(
        r.1["data"]["ca"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    // Until verified, the old certificate still logs in.
    assert_eq!(
        ctl.cert_authenticate(&ctl.http_with_cert(&cert, &key))
            .await
            .status(),
        200
    );
    let r = call(
        &http,
        format!("{path}/extend-verify"),
        json!({"clientCert": cert}),
    )
    .await;
    assert_eq!(code(&r), (400, "INVALID_CLIENT_CERT"), "{}", r.1);
    let r = call(
        &http,
        format!("{path}/extend-verify"),
        json!({"clientCert": new_cert}),
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    // The old certificate is done; the new one logs in, with nothing requested.
    assert_eq!(
        ctl.cert_authenticate(&ctl.http_with_cert(&cert, &key))
            .await
            .status(),
        401
    );
    let res = ctl
        .cert_authenticate(&ctl.http_with_cert(&new_cert, &new_key))
        .await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()
            .get("ziti-authenticator-extend-requested")
            .is_none()
    );
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["data"]["isCertExtendRequested"], false);
    // Password authenticators have no certificate to extend.
    let q = user(&ctl, &admin, "quin", "quin-password", None).await;
    let auths = ctl
        .get_ok(&admin, &format!("/identities/{q}/authenticators"))
        .await;
    let qa = auths["data"][0]["id"].as_str().unwrap().to_owned();
    let r = ctl
        .call(
            Method::POST,
            &format!("/authenticators/{qa}/request-extend"),
            &admin,
            Some(json!({})),
        )
        .await;
    assert_eq!(code(&r), (409, "CAN_NOT_UPDATE_AUTHENTICATOR"));
}

/// What one API session can make the controller hold in certificates is bounded: the
/// 33rd is refused, also when they are asked for all at once.
#[tokio::test]
async fn an_api_session_holds_at_most_32_certificates() {
    let ctl = start();
    let admin = ctl.admin_token().await;
    user(&ctl, &admin, "rex", "rex-password", None).await;
    let token = login(&ctl, "rex", "rex-password").await.1["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (csr, _key) = weft_testkit::make_csr("rex");
    let tries = (0..40).map(|_| {
        ctl.call_client(
            Method::POST,
            "/current-api-session/certificates",
            &token,
            Some(json!({"csr": csr})),
        )
    });
    let results = weft_testkit::join_all(tries).await;
    let created = results.iter().filter(|r| r.0 == 201).count();
    assert_eq!(
        created,
        32,
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    for r in results.iter().filter(|r| r.0 != 201) {
        assert_eq!(code(r), (400, "COULD_NOT_VALIDATE"), "{}", r.1);
    }
    let listed = ctl
        .call_client(
            Method::GET,
            "/current-api-session/certificates?limit=100",
            &token,
            None,
        )
        .await;
    assert_eq!(listed.1["meta"]["pagination"]["totalCount"], 32);
}
