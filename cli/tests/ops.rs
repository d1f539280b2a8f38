//! Operator commands of `weft` against a real controller: enrollment, output files,
//! saved logins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use weft_testkit::{Ctl, jwt_claims};

/// Runs `weft` with `HOME` at `home` (and no `XDG_CONFIG_HOME`), `stdin` on its
/// standard input (not a terminal); (success, stdout, stderr).
fn weft_in(home: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn weft(home: &Path, args: &[&str]) -> (bool, String, String) {
    weft_in(home, args, "")
}

/// Runs `weft`, asserting success; its stdout.
fn ok(home: &Path, args: &[&str]) -> String {
    let (ok, out, err) = weft(home, args);
    assert!(ok, "{args:?}: {out}{err}");
    out
}

/// Runs `weft`, asserting failure; its stderr.
fn refused(home: &Path, args: &[&str]) -> String {
    let (ok, out, err) = weft(home, args);
    assert!(!ok, "{args:?} should fail: {out}{err}");
    err
}

fn url(ctl: &Ctl) -> String {
    format!("https://localhost:{}", ctl.addr.port())
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Logs in as admin, trusting the controller's CA file.
fn admin_login(h: &Path, ctl: &Ctl) {
    let ca = h.join("ctl-ca.pem");
    if !ca.exists() {
        std::fs::write(&ca, ctl.ca_pem()).unwrap();
    }
    ok(
        h,
        &[
            "login",
            &url(ctl),
            "-u",
            "admin",
            "-p",
            &ctl.admin_password(),
            "--ca",
            p(&ca),
        ],
    );
}

#[test]
fn enroll_writes_an_owner_only_identity_and_jwts_get_a_hint() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    admin_login(h, &ctl);
    let alice_jwt = h.join("alice.jwt");
    ok(
        h,
        &["edge", "create", "identity", "alice", "-o", p(&alice_jwt)],
    );
    let er_jwt = h.join("er1.jwt");
    ok(
        h,
        &[
            "edge",
            "create",
            "edge-router",
            "er1",
            "--tls",
            "tls://localhost:3022",
            "-o",
            p(&er_jwt),
        ],
    );

    // A token where an identity file belongs: the hint names the command to run.
    let err = refused(
        h,
        &[
            "tunnel",
            "dial",
            "--identity",
            p(&alice_jwt),
            "--service",
            "x",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let expected = format!(
        "`weft edge enroll {} -o {}`",
        alice_jwt.display(),
        h.join("alice.json").display()
    );
    assert!(
        err.contains("is an enrollment token (JWT), not an identity file")
            && err.contains(&expected),
        "{err}"
    );
    let err = refused(
        h,
        &[
            "tunnel",
            "host",
            "-i",
            p(&er_jwt),
            "-s",
            "x",
            "-t",
            "127.0.0.1:1",
        ],
    );
    assert!(err.contains("weft-router enroll"), "{err}");
    // A router's token is not an identity's.
    let err = refused(h, &["edge", "enroll", p(&er_jwt)]);
    assert!(err.contains("weft-router enroll --jwt"), "{err}");
    // An existing output file is refused before the one-time token is spent.
    let taken = h.join("taken.json");
    std::fs::write(&taken, "keep").unwrap();
    let err = refused(h, &["edge", "enroll", p(&alice_jwt), "-o", p(&taken)]);
    assert!(
        err.contains("exists: pass --force to overwrite it"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "keep");

    let alice_json = h.join("alice.json");
    let out = ok(h, &["edge", "enroll", p(&alice_jwt), "-o", p(&alice_json)]);
    let alice_id = jwt_claims(&std::fs::read_to_string(&alice_jwt).unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        out.contains(&format!(
            "enrolled identity {alice_id} with https://localhost:"
        )),
        "{out}"
    );
    let mode = std::fs::metadata(&alice_json).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let id = weft_identity::Identity::load(&alice_json).unwrap();
    assert_eq!(id.name().unwrap(), alice_id);
    assert_eq!(id.controller(), url(&ctl));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&alice_json).unwrap()).unwrap();
    assert!(v["id"]["key"].as_str().unwrap().contains("PRIVATE KEY"));

    // The token is spent; an identity file is not a token.
    let err = refused(
        h,
        &[
            "edge",
            "enroll",
            p(&alice_jwt),
            "-o",
            p(&h.join("again.json")),
        ],
    );
    assert!(err.contains("refused the enrollment"), "{err}");
    let err = refused(h, &["edge", "enroll", p(&alice_json)]);
    assert!(err.contains("an identity file already enrolled"), "{err}");
    let err = refused(h, &["edge", "enroll", p(&h.join("missing.jwt"))]);
    assert!(err.contains("cannot read"), "{err}");

    // Default output beside the token, and --rm.
    let bob_jwt = h.join("bob.jwt");
    ok(h, &["edge", "create", "identity", "bob", "-o", p(&bob_jwt)]);
    let bob_id = jwt_claims(&std::fs::read_to_string(&bob_jwt).unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = ok(h, &["edge", "enroll", p(&bob_jwt), "--rm"]);
    assert!(out.contains("bob.json"), "{out}");
    assert!(!bob_jwt.exists());
    assert_eq!(
        weft_identity::Identity::load(h.join("bob.json"))
            .unwrap()
            .name()
            .unwrap(),
        bob_id
    );
}

#[test]
fn output_files_need_force_to_be_overwritten_and_dates_print_plainly() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    admin_login(h, &ctl);
    let jwt = h.join("carol.jwt");
    std::fs::write(&jwt, "keep").unwrap();
    // Refused before the identity is created: nothing changes on the controller.
    let err = refused(h, &["edge", "create", "identity", "carol", "-o", p(&jwt)]);
    assert!(err.contains("carol.jwt exists: pass --force"), "{err}");
    assert_eq!(std::fs::read_to_string(&jwt).unwrap(), "keep");
    let ids = ok(h, &["edge", "list", "identities", "name = \"carol\"", "-j"]);
    assert_eq!(
        serde_json::from_str::<Value>(&ids).unwrap(),
        serde_json::json!([])
    );
    let out = ok(
        h,
        &[
            "edge",
            "create",
            "identity",
            "carol",
            "-o",
            p(&jwt),
            "--force",
        ],
    );
    // "Enrollment expires at 2026-12-06 02:14:43 UTC; token written to …"
    let line = out
        .lines()
        .find(|l| l.starts_with("Enrollment expires at "))
        .unwrap_or_else(|| panic!("{out}"));
    let date = line["Enrollment expires at ".len()..]
        .split(';')
        .next()
        .unwrap();
    let plain =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    assert!(
        time::PrimitiveDateTime::parse(date, plain).is_ok(),
        "{line}"
    );
    assert!(std::fs::read_to_string(&jwt).unwrap().starts_with("eyJ"));
    let mode = std::fs::metadata(&jwt).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let er = h.join("er.jwt");
    std::fs::write(&er, "keep").unwrap();
    let err = refused(
        h,
        &[
            "edge",
            "create",
            "edge-router",
            "er",
            "--tls",
            "tls://localhost:3022",
            "-o",
            p(&er),
        ],
    );
    assert!(err.contains("pass --force"), "{err}");
    let routers = ok(h, &["edge", "list", "edge-routers", "-j"]);
    assert_eq!(
        serde_json::from_str::<Value>(&routers).unwrap(),
        serde_json::json!([])
    );
    ok(
        h,
        &[
            "edge",
            "create",
            "edge-router",
            "er",
            "--tls",
            "tls://localhost:3022",
            "-o",
            p(&er),
            "--force",
        ],
    );
    assert!(std::fs::read_to_string(&er).unwrap().starts_with("eyJ"));
    // --force needs -o.
    let err = refused(h, &["edge", "create", "identity", "dave", "--force"]);
    assert!(err.contains("--jwt-output-file"), "{err}");

    // weft edge enroll --force replaces an existing identity file.
    let id_file = h.join("carol.json");
    std::fs::write(&id_file, "old").unwrap();
    ok(
        h,
        &["edge", "enroll", p(&jwt), "-o", p(&id_file), "--force"],
    );
    assert!(weft_identity::Identity::load(&id_file).is_ok());
}
