//! `weft edge list` beyond one type: related lists (`weft edge list identity services
//! alice`, as `ziti edge list` does), the summary, and `weft edge create config-type`,
//! against a real controller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{login_admin, ok, refused};
use weft_testkit::Ctl;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn related_lists_the_summary_and_config_types() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    login_admin(h, &ctl).await;

    // A config type with a schema, and a config of it.
    let schema = h.join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"port": {"type": "integer"}}}"#,
    )
    .unwrap();
    let schema_arg = schema.to_str().unwrap();
    let out = ok(
        h,
        &[
            "edge",
            "create",
            "config-type",
            "weft-app.v1",
            "--schema",
            schema_arg,
        ],
    )
    .await;
    assert!(out.contains("weft-app.v1"), "{out}");
    let bad = h.join("bad.json");
    std::fs::write(&bad, "[1, 2").unwrap();
    let err = refused(
        h,
        &[
            "edge",
            "create",
            "config-type",
            "bad.v1",
            "-s",
            bad.to_str().unwrap(),
        ],
    )
    .await;
    assert!(err.contains("is not JSON"), "{err}");
    let err = refused(
        h,
        &[
            "edge",
            "create",
            "config-type",
            "bad.v1",
            "-s",
            "/nonexistent/schema.json",
        ],
    )
    .await;
    assert!(err.contains("reading the schema"), "{err}");
    let ct = ok(
        h,
        &[
            "edge",
            "list",
            "config-types",
            "name = \"weft-app.v1\"",
            "-j",
        ],
    )
    .await;
    let ct: serde_json::Value = serde_json::from_str(&ct).unwrap();
    assert_eq!(ct[0]["schema"]["properties"]["port"]["type"], "integer");
    let type_id = ct[0]["id"].as_str().unwrap().to_owned();
    ok(
        h,
        &[
            "edge",
            "create",
            "config",
            "app-cfg",
            &type_id,
            r#"{"port": 8080}"#,
        ],
    )
    .await;

    ok(
        h,
        &[
            "edge", "create", "service", "web", "-a", "web", "-c", "app-cfg",
        ],
    )
    .await;
    ok(h, &["edge", "create", "service", "mail", "-a", "mail"]).await;
    ok(
        h,
        &["edge", "create", "identity", "alice", "-a", "web-users"],
    )
    .await;
    ok(
        h,
        &["edge", "create", "identity", "bob", "-a", "mail-users"],
    )
    .await;
    ok(
        h,
        &[
            "edge",
            "create",
            "service-policy",
            "dial-web",
            "Dial",
            "-i",
            "#web-users",
            "-s",
            "#web",
        ],
    )
    .await;
    ok(
        h,
        &[
            "edge",
            "create",
            "service-policy",
            "dial-mail",
            "Dial",
            "-i",
            "#mail-users",
            "-s",
            "#mail",
        ],
    )
    .await;

    // Both ways between identities and services, and through the policies.
    let out = ok(h, &["edge", "list", "identity", "services", "alice"]).await;
    assert!(out.contains("web") && !out.contains("mail"), "{out}");
    assert!(out.contains("results: 1-1 of 1"), "{out}");
    let out = ok(h, &["edge", "list", "service", "identities", "web"]).await;
    assert!(out.contains("alice") && !out.contains("bob"), "{out}");
    let out = ok(h, &["edge", "list", "identity", "service-policies", "bob"]).await;
    assert!(
        out.contains("dial-mail") && !out.contains("dial-web"),
        "{out}"
    );
    let out = ok(
        h,
        &["edge", "list", "service-policy", "identities", "dial-web"],
    )
    .await;
    assert!(out.contains("alice") && !out.contains("bob"), "{out}");
    let out = ok(
        h,
        &["edge", "list", "config-type", "configs", "weft-app.v1"],
    )
    .await;
    assert!(out.contains("app-cfg"), "{out}");
    let out = ok(h, &["edge", "list", "config", "services", "app-cfg"]).await;
    assert!(out.contains("web") && !out.contains("mail"), "{out}");
    // A filter after the name.
    let out = ok(
        h,
        &[
            "edge",
            "list",
            "service",
            "identities",
            "web",
            "name = \"nobody\"",
        ],
    )
    .await;
    assert!(out.contains("results: none"), "{out}");

    let err = refused(h, &["edge", "list", "identity", "services"]).await;
    assert!(err.contains("name the identity"), "{err}");
    let err = refused(h, &["edge", "list", "identity", "services", "carol"]).await;
    assert!(err.contains("carol"), "{err}");
    let err = refused(h, &["edge", "list", "identities", "cats", "alice"]).await;
    assert!(err.contains("not a list related to identities"), "{err}");

    // An identity's own config for a service (`ziti edge update identity-configs`).
    ok(
        h,
        &[
            "edge",
            "create",
            "config",
            "alice-cfg",
            "weft-app.v1",
            r#"{"port": 9090}"#,
        ],
    )
    .await;
    let out = ok(
        h,
        &[
            "edge",
            "update",
            "identity-configs",
            "alice",
            "web",
            "alice-cfg",
        ],
    )
    .await;
    assert!(out.contains("uses config alice-cfg"), "{out}");
    let out = ok(h, &["edge", "list", "identity", "service-configs", "alice"]).await;
    assert!(out.starts_with("SERVICE"), "{out}");
    assert!(out.contains("web") && out.contains("alice-cfg"), "{out}");
    let err = refused(
        h,
        &[
            "edge",
            "update",
            "identity-configs",
            "alice",
            "web",
            "no-cfg",
        ],
    )
    .await;
    assert!(err.contains("no-cfg"), "{err}");
    ok(
        h,
        &[
            "edge",
            "update",
            "identity-configs",
            "alice",
            "web",
            "app-cfg",
            "--remove",
        ],
    )
    .await;
    let out = ok(h, &["edge", "list", "identity", "service-configs", "alice"]).await;
    assert!(out.contains("results: none"), "{out}");

    // The summary: counts per type.
    let out = ok(h, &["edge", "list", "summary"]).await;
    assert!(out.starts_with("TYPE"), "{out}");
    let json = ok(h, &["edge", "list", "summary", "-j"]).await;
    let counts: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(counts["services"], 2, "{counts}");
    assert_eq!(counts["configs"], 2, "{counts}");
    assert_eq!(counts["servicePolicies"], 2, "{counts}");
    assert!(
        counts["identities"].as_u64().unwrap() >= 3,
        "alice, bob and the admin: {counts}"
    );
}
