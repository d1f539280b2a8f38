//! The `weft` CLI against a real controller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Ctl, jwt_claims};
use serde_json::Value;

fn weft(home: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("HOME", home)
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
    let (ok, _, err) = weft(h, &["login", &url, "-u", "admin", "-p", "wrong"]);
    assert!(!ok && err.contains("INVALID_AUTH"), "{err}");
    let (ok, _, err) = weft(h, &["login", &url, "-u", "admin", "-p", &pw]);
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
