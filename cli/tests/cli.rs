//! The `weft` CLI against a real controller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::{Value, json};
use weft_testkit::{Ctl, jwt_claims};

fn weft(home: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn login_create_list_delete() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let url = format!("https://localhost:{}", ctl.addr.port());
    let pw = ctl.admin_password();
    let (ok, _, err) = weft(h, &["login", &url, "-u", "admin", "-p", "wrong", "-y"]);
    assert!(!ok && err.contains("INVALID_AUTH"), "{err}");
    let (ok, _, err) = weft(h, &["login", &url, "-u", "admin", "-p", &pw, "-y"]);
    assert!(ok, "{err}");
    let cfg = h.join(".config/weft/config.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let jwt_file = h.join("alice.jwt");
    let jwt_path = jwt_file.to_str().unwrap();
    let (ok, out, err) = weft(
        h,
        &[
            "edge",
            "create",
            "identity",
            "alice",
            "-a",
            "dialers,users",
            "-o",
            jwt_path,
        ],
    );
    assert!(ok, "{out}{err}");
    let jwt = std::fs::read_to_string(&jwt_file).unwrap();
    assert_eq!(jwt_claims(&jwt)["em"], "ott");
    let (ok, _, err) = weft(
        h,
        &[
            "edge",
            "create",
            "service",
            "echo",
            "-a",
            "svc",
            "--encryption",
            "off",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = weft(
        h,
        &[
            "edge",
            "create",
            "service-policy",
            "dial-echo",
            "Dial",
            "--identity-roles",
            "#dialers",
            "--service-roles",
            "#svc",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = weft(
        h,
        &[
            "edge",
            "create",
            "edge-router",
            "er1",
            "-a",
            "pub",
            "--tls",
            "tls://er1.test:3022",
            "-o",
            h.join("er1.jwt").to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let router_jwt = std::fs::read_to_string(h.join("er1.jwt")).unwrap();
    assert_eq!(jwt_claims(&router_jwt)["em"], "erott");
    let (ok, _, err) = weft(
        h,
        &[
            "edge",
            "create",
            "edge-router-policy",
            "erp",
            "--edge-router-roles",
            "#all",
            "--identity-roles",
            "#all",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = weft(
        h,
        &[
            "edge",
            "create",
            "service-edge-router-policy",
            "serp",
            "--edge-router-roles",
            "#all",
            "--service-roles",
            "#all",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = weft(
        h,
        &[
            "edge",
            "create",
            "service-policy",
            "bad",
            "Dial",
            "--identity-roles",
            "nohash",
        ],
    );
    assert!(!ok && err.contains("COULD_NOT_VALIDATE"), "{err}");

    let (ok, out, _) = weft(h, &["edge", "list", "services", "--output", "json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "echo");
    assert_eq!(v[0]["encryptionRequired"], false);
    let (ok, out, _) = weft(h, &["edge", "list", "service-policies"]);
    assert!(ok && out.contains("dial-echo"), "{out}");
    // Roles without JSON quotes, and the count as `ziti` ends a list.
    assert!(
        out.contains("identities: #dialers; services: #svc"),
        "{out}"
    );
    assert_eq!(out.lines().last(), Some("results: 1-1 of 1"), "{out}");
    let (ok, out, _) = weft(h, &["edge", "list", "identities", "name = \"alice\""]);
    assert!(
        ok && out.contains("dialers, users") && !out.contains('"'),
        "{out}"
    );
    let (ok, out, _) = weft(h, &["edge", "list", "identities", "name = \"nobody\""]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().last(), Some("results: none"), "{out}");
    let (ok, _, err) = weft(h, &["edge", "delete", "service", "echo"]);
    assert!(ok, "{err}");
    let (ok, out, _) = weft(h, &["edge", "list", "services", "--output", "json"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        serde_json::json!([])
    );
    let (ok, _, _) = weft(h, &["edge", "delete", "service", "echo"]);
    assert!(!ok);
}

/// Runs `weft` and parses its stdout as JSON (asserting success).
fn weft_json(home: &std::path::Path, args: &[&str]) -> Value {
    let (ok, out, err) = weft(home, args);
    assert!(ok, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// The one entity of `coll` named `name`, as `weft edge list -j` prints it.
fn one(home: &std::path::Path, coll: &str, name: &str) -> Value {
    let filter = format!("name=\"{name}\"");
    let v = weft_json(home, &["edge", "list", coll, &filter, "-j"]);
    assert_eq!(v.as_array().unwrap().len(), 1, "{coll} {name}: {v}");
    v[0].clone()
}

#[test]
fn update_verbs_and_json_lists() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let url = format!("https://localhost:{}", ctl.addr.port());
    let (ok, _, err) = weft(
        h,
        &[
            "login",
            &url,
            "-u",
            "admin",
            "-p",
            &ctl.admin_password(),
            "-y",
        ],
    );
    assert!(ok, "{err}");
    let run = |args: &[&str]| {
        let (ok, out, err) = weft(h, args);
        assert!(ok, "{args:?}: {out}{err}");
        out
    };
    run(&["edge", "create", "identity", "alice", "-a", "a"]);
    run(&["edge", "create", "service", "echo", "-a", "s0"]);
    run(&[
        "edge",
        "create",
        "config",
        "cfg",
        "host.v1",
        r#"{"address":"localhost","port":80}"#,
    ]);
    run(&[
        "edge",
        "create",
        "service-policy",
        "dial",
        "Dial",
        "-i",
        "#a",
        "-s",
        "#s0",
    ]);
    run(&[
        "edge",
        "create",
        "edge-router",
        "er1",
        "-a",
        "pub",
        "--tls",
        "tls://er1.test:3022",
    ]);
    run(&[
        "edge",
        "create",
        "edge-router-policy",
        "erp",
        "-e",
        "#pub",
        "-i",
        "#all",
    ]);
    run(&[
        "edge",
        "create",
        "service-edge-router-policy",
        "serp",
        "-e",
        "#pub",
        "-s",
        "#all",
    ]);

    let out = run(&[
        "edge",
        "update",
        "identity",
        "alice",
        "-a",
        "x,y",
        "--name",
        "alice2",
        "--tags",
        "team=blue",
    ]);
    assert!(out.contains("updated identity alice"), "{out}");
    let v = one(h, "identities", "alice2");
    assert_eq!(v["roleAttributes"], json!(["x", "y"]));
    assert_eq!(v["tags"], json!({"team": "blue"}));
    run(&[
        "edge",
        "update",
        "service",
        "echo",
        "-a",
        "s1",
        "--encryption",
        "off",
        "-c",
        "cfg",
    ]);
    let svc = one(h, "services", "echo");
    assert_eq!(svc["roleAttributes"], json!(["s1"]));
    assert_eq!(svc["encryptionRequired"], false);
    assert_eq!(svc["configs"].as_array().unwrap().len(), 1);
    run(&[
        "edge",
        "update",
        "service-policy",
        "dial",
        "--identity-roles",
        "#x",
        "--service-roles",
        "#s1",
        "--semantic",
        "AnyOf",
    ]);
    let p = one(h, "service-policies", "dial");
    assert_eq!(
        (
            p["identityRoles"].clone(),
            p["serviceRoles"].clone(),
            p["semantic"].clone()
        ),
        (json!(["#x"]), json!(["#s1"]), json!("AnyOf"))
    );
    assert_eq!(p["type"], "Dial");
    run(&[
        "edge",
        "update",
        "edge-router",
        "er1",
        "-a",
        "pub2",
        "--cost",
        "7",
        "--disabled",
        "true",
    ]);
    let er = one(h, "edge-routers", "er1");
    assert_eq!(
        (
            er["roleAttributes"].clone(),
            er["cost"].clone(),
            er["disabled"].clone()
        ),
        (json!(["pub2"]), json!(7), json!(true))
    );
    assert_eq!(er["supportedProtocols"]["tls"], "tls://er1.test:3022");
    run(&["edge", "update", "edge-router-policy", "erp", "-e", "#pub2"]);
    assert_eq!(
        one(h, "edge-router-policies", "erp")["edgeRouterRoles"],
        json!(["#pub2"])
    );
    run(&[
        "edge",
        "update",
        "service-edge-router-policy",
        "serp",
        "-s",
        "#s1",
        "--name",
        "serp2",
    ]);
    assert_eq!(
        one(h, "service-edge-router-policies", "serp2")["serviceRoles"],
        json!(["#s1"])
    );
    run(&[
        "edge",
        "update",
        "config",
        "cfg",
        "--data",
        r#"{"address":"127.0.0.1","port":81}"#,
    ]);
    assert_eq!(one(h, "configs", "cfg")["data"]["port"], 81);

    // Refusals: a clear error, nothing changed.
    let (ok, _, err) = weft(
        h,
        &["edge", "update", "service-policy", "dial", "-i", "nohash"],
    );
    assert!(!ok && err.contains("COULD_NOT_VALIDATE"), "{err}");
    assert_eq!(
        one(h, "service-policies", "dial")["identityRoles"],
        json!(["#x"])
    );
    let (ok, _, err) = weft(h, &["edge", "update", "identity", "nobody", "-a", "x"]);
    assert!(!ok && err.contains("nobody"), "{err}");
    let (ok, _, err) = weft(h, &["edge", "update", "identity", "alice2"]);
    assert!(!ok && err.contains("nothing to update"), "{err}");
    let (ok, _, err) = weft(h, &["edge", "list", "services", "nme = \"x\""]);
    assert!(!ok && err.contains("INVALID_FILTER"), "{err}");

    // Every list prints JSON, with --output json or -j (alternately).
    for (i, coll) in [
        "identities",
        "services",
        "configs",
        "config-types",
        "service-policies",
        "edge-routers",
        "edge-router-policies",
        "service-edge-router-policies",
        "terminators",
        "authenticators",
        "enrollments",
        "api-sessions",
        "sessions",
    ]
    .into_iter()
    .enumerate()
    {
        let flags: &[&str] = if i % 2 == 0 {
            &["--output", "json"]
        } else {
            &["-j"]
        };
        let v = weft_json(h, &[&["edge", "list", coll], flags].concat());
        assert!(v.is_array(), "{coll}");
    }
    let v = weft_json(
        h,
        &[
            "edge",
            "list",
            "config-types",
            "sort by name desc skip 1 limit 1",
            "-j",
        ],
    );
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["name"], "host.v1");
    let types = weft_json(h, &["edge", "list", "config-types", "-j"]);
    let (ok, out, _) = weft(
        h,
        &[
            "edge",
            "list",
            "config-types",
            "sort by name desc skip 1 limit 1",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().last().unwrap(),
        format!("results: 2-2 of {}", types.as_array().unwrap().len()),
        "{out}"
    );
    let v = weft_json(
        h,
        &[
            "edge",
            "list",
            "identities",
            "isAdmin = false sort by name",
            "-j",
        ],
    );
    assert_eq!(v.as_array().unwrap().len(), 1);
    let v = weft_json(h, &["edge", "list", "enrollments", "-j"]);
    assert_eq!(v[0]["identity"]["name"], "alice2");
    // Records are deleted by id.
    let enrollment = v[0]["id"].as_str().unwrap().to_owned();
    run(&["edge", "delete", "enrollment", &enrollment]);
    assert_eq!(
        weft_json(h, &["edge", "list", "enrollments", "-j"]),
        json!([])
    );
}

#[test]
fn ext_jwt_signer_create_list_delete() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let url = format!("https://localhost:{}", ctl.addr.port());
    let (ok, _, err) = weft(
        h,
        &[
            "login",
            &url,
            "-u",
            "admin",
            "-p",
            &ctl.admin_password(),
            "-y",
        ],
    );
    assert!(ok, "{err}");
    let run = |args: &[&str]| {
        let (ok, out, err) = weft(h, args);
        assert!(ok, "{args:?}: {out}{err}");
        out
    };
    // A certificate signer (the controller's root CA certificate: one PEM certificate).
    let cert = ctl.dir.join("pki/root-ca.cert.pem");
    let out = run(&[
        "edge",
        "create",
        "ext-jwt-signer",
        "corp-cert",
        "--issuer",
        "https://corp.example",
        "--audience",
        "weft",
        "--cert-file",
        cert.to_str().unwrap(),
        "--kid",
        "k1",
        "--claims-property",
        "email",
        "--external-id",
    ]);
    assert!(
        out.contains("New external-jwt-signer corp-cert created"),
        "{out}"
    );
    run(&[
        "edge",
        "create",
        "ext-jwt-signer",
        "corp-jwks",
        "--issuer",
        "https://jwks.example",
        "-a",
        "weft",
        "--jwks-endpoint",
        "https://jwks.example/keys",
        "--enabled",
        "false",
        "--scopes",
        "openid,email",
    ]);
    let s = one(h, "ext-jwt-signers", "corp-cert");
    assert_eq!(s["kid"], "k1");
    assert_eq!(s["claimsProperty"], "email");
    assert_eq!(s["useExternalId"], true);
    assert_eq!(s["enabled"], true);
    assert_eq!(s["fingerprint"].as_str().unwrap().len(), 40);
    let s = one(h, "external-jwt-signers", "corp-jwks");
    assert_eq!(s["enabled"], false);
    assert_eq!(s["jwksEndpoint"], "https://jwks.example/keys");
    assert_eq!(s["scopes"], json!(["openid", "email"]));
    // Usage errors: both key sources, neither, an http endpoint (refused by the controller).
    let (ok, _, err) = weft(
        h,
        &[
            "edge",
            "create",
            "ext-jwt-signer",
            "x",
            "--issuer",
            "i",
            "-a",
            "a",
        ],
    );
    assert!(!ok && err.contains("--jwks-endpoint"), "{err}");
    let (ok, _, err) = weft(
        h,
        &[
            "edge",
            "create",
            "ext-jwt-signer",
            "x",
            "--issuer",
            "i",
            "-a",
            "a",
            "--jwks-endpoint",
            "http://insecure.example/keys",
        ],
    );
    assert!(!ok && err.contains("https"), "{err}");
    // Identities with an external id.
    run(&[
        "edge",
        "create",
        "identity",
        "carol",
        "--external-id",
        "carol@corp.example",
    ]);
    assert_eq!(
        one(h, "identities", "carol")["externalId"],
        "carol@corp.example"
    );
    run(&["edge", "delete", "ext-jwt-signer", "corp-cert"]);
    let v = weft_json(h, &["edge", "list", "ext-jwt-signers", "-j"]);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
}

#[test]
fn ca_create_verify_list_delete() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let url = format!("https://localhost:{}", ctl.addr.port());
    let (ok, _, err) = weft(
        h,
        &[
            "login",
            &url,
            "-u",
            "admin",
            "-p",
            &ctl.admin_password(),
            "-y",
        ],
    );
    assert!(ok, "{err}");
    let run = |args: &[&str]| {
        let (ok, out, err) = weft(h, args);
        assert!(ok, "{args:?}: {out}{err}");
        out
    };
    let ca = weft_testkit::ThirdPartyCa::new("corp CA");
    let ca_file = h.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let out = run(&[
        "edge",
        "create",
        "ca",
        "corp",
        ca_file.to_str().unwrap(),
        "--auth",
        "--autoca",
        "-r",
        "a,b",
        "--identity-name-format",
        "[caName]-[commonName]",
        "--external-id-claim-loc",
        "SAN_URI",
        "--external-id-claim-matcher",
        "SCHEME",
        "--external-id-claim-matcher-criteria",
        "spiffe",
    ]);
    assert!(out.contains("New ca corp created"), "{out}");
    let c = one(h, "cas", "corp");
    assert_eq!(c["isAuthEnabled"], true);
    assert_eq!(c["isAutoCaEnrollmentEnabled"], true);
    assert_eq!(c["isOttCaEnrollmentEnabled"], false);
    assert_eq!(c["identityRoles"], json!(["a", "b"]));
    assert_eq!(c["externalIdClaim"]["matcher"], "SCHEME");
    assert_eq!(c["isVerified"], false);
    // Verified with a certificate the CA signed for its token; a wrong one is refused.
    let wrong = h.join("wrong.pem");
    std::fs::write(&wrong, ca.verification_cert("nope")).unwrap();
    let (ok, _, err) = weft(
        h,
        &[
            "edge",
            "verify",
            "ca",
            "corp",
            "--cert",
            wrong.to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("INVALID_COMMON_NAME"), "{err}");
    let good = h.join("good.pem");
    let token = c["verificationToken"].as_str().unwrap();
    std::fs::write(&good, ca.verification_cert(token)).unwrap();
    let out = run(&[
        "edge",
        "verify",
        "ca",
        "corp",
        "--cert",
        good.to_str().unwrap(),
    ]);
    assert!(out.contains("verified ca corp"), "{out}");
    assert_eq!(one(h, "cas", "corp")["isVerified"], true);
    let out = run(&["edge", "list", "cas"]);
    assert!(out.contains("corp"), "{out}");
    run(&[
        "edge", "update", "ca", "corp", "--auth", "false", "--ottca", "true", "-r", "c",
    ]);
    let c = one(h, "cas", "corp");
    assert_eq!(c["isAuthEnabled"], false);
    assert_eq!(c["isOttCaEnrollmentEnabled"], true);
    assert_eq!(c["identityRoles"], json!(["c"]));
    assert_eq!(c["isVerified"], true, "an update keeps the verification");
    run(&["edge", "delete", "ca", "corp"]);
    let list = weft_json(h, &["edge", "list", "cas", "-j"]);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
}

/// `--log-level` takes a level or `RUST_LOG` directives; anything else is refused at
/// once with the option named, before the command runs. `--log-format` takes text or
/// json only.
#[test]
fn logging_options_are_checked_before_the_command() {
    let home = tempfile::tempdir().unwrap();
    let (ok, _, err) = weft(home.path(), &["--log-level", "loud=[[", "logout"]);
    assert!(!ok);
    assert!(err.contains("--log-level \"loud=[[\""), "{err}");
    let (ok, _, err) = weft(home.path(), &["logout", "--log-format", "xml"]);
    assert!(!ok);
    assert!(err.contains("--log-format"), "{err}");
    // A good level and JSON lines: the command runs (nothing to log out of here).
    let (_, out, err) = weft(
        home.path(),
        &["--log-level", "debug", "--log-format", "json", "logout"],
    );
    assert!(!err.contains("--log-level"), "{out}{err}");
}
