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

/// The saved logins file under `home` (no `XDG_CONFIG_HOME`).
fn logins(home: &Path) -> Value {
    let path = home.join(".config/weft/config.json");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn login_asks_for_trust_and_a_password_and_keeps_several_logins() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let url = url(&ctl);
    let pw = ctl.admin_password();

    // Not a terminal, no -y, no --ca: the CA is not trusted without asking.
    let (success, _, err) = weft_in(h, &["login", &url, "-u", "admin"], &format!("{pw}\n"));
    assert!(!success, "{err}");
    assert!(
        err.contains("serves a certificate authority not trusted yet")
            && err.contains("SHA-1")
            && err.contains("pass --ca FILE")
            && err.contains("-y to trust what it serves"),
        "{err}"
    );
    assert!(!h.join(".config/weft/config.json").exists());
    // Missing user name, empty and wrong passwords.
    let err = refused(h, &["login", &url, "-y"]);
    assert!(err.contains("a user name is needed: -u NAME"), "{err}");
    let (success, _, err) = weft_in(h, &["login", &url, "-u", "admin", "-y"], "");
    assert!(!success && err.contains("no password"), "{err}");
    let (success, _, err) = weft_in(h, &["login", &url, "-u", "admin", "-y"], "wrong\n");
    assert!(!success && err.contains("INVALID_AUTH"), "{err}");

    // The password as a line on standard input; -y trusts the CA.
    let (success, out, err) = weft_in(h, &["login", &url, "-u", "admin", "-y"], &format!("{pw}\n"));
    assert!(success, "{err}");
    assert!(err.contains("Trusting it (-y)."), "{err}");
    assert!(
        out.contains(&format!(
            "logged in to {url} as admin; saved as login \"default\" (current)"
        )),
        "{out}"
    );
    // A second login to the same controller trusts the CA trusted before, unasked.
    let (success, out, err) = weft_in(
        h,
        &["login", &url, "-u", "admin", "--cli-identity", "second"],
        &format!("{pw}\n"),
    );
    assert!(success, "{err}");
    assert!(!err.contains("not trusted yet"), "{err}");
    assert!(out.contains("saved as login \"second\" (current)"), "{out}");
    let saved = logins(h);
    assert_eq!(saved["current"], "second");
    assert_eq!(saved["logins"]["default"]["username"], "admin");
    assert_ne!(
        saved["logins"]["default"]["token"],
        saved["logins"]["second"]["token"]
    );

    // A certificate login, with an identity file and with its certificate and key.
    let boss_jwt = h.join("boss.jwt");
    ok(
        h,
        &[
            "edge",
            "create",
            "identity",
            "boss",
            "-A",
            "-o",
            p(&boss_jwt),
        ],
    );
    let boss = h.join("boss.json");
    ok(h, &["edge", "enroll", p(&boss_jwt), "-o", p(&boss)]);
    let err = refused(h, &["login", "--file", p(&boss_jwt)]);
    assert!(err.contains("weft edge enroll"), "{err}");
    let out = ok(h, &["login", "--file", p(&boss), "--cli-identity", "boss"]);
    assert!(
        out.contains(&format!(
            "logged in to {url} as identity file {}",
            boss.display()
        )),
        "{out}"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&boss).unwrap()).unwrap();
    let pem = |k: &str| {
        v["id"][k]
            .as_str()
            .unwrap()
            .trim_start_matches("pem:")
            .to_owned()
    };
    std::fs::write(h.join("boss.cert"), pem("cert")).unwrap();
    std::fs::write(h.join("boss.key"), pem("key")).unwrap();
    let out = ok(
        h,
        &[
            "login",
            &url,
            "--client-cert",
            p(&h.join("boss.cert")),
            "--client-key",
            p(&h.join("boss.key")),
            "--cli-identity",
            "boss-cert",
        ],
    );
    assert!(out.contains("as certificate"), "{out}");
    let ids = ok(h, &["edge", "list", "identities", "-j"]);
    assert!(ids.contains("\"boss\""), "{ids}");
    ok(h, &["edge", "list", "services", "--cli-identity", "boss"]);

    // weft edge use: a list, a switch, a refusal.
    let list = ok(h, &["edge", "use"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("LOGGED IN"),
        "{list}"
    );
    assert_eq!(lines.len(), 5, "{list}");
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} in\n{list}"))
            .to_string()
    };
    assert!(
        row("boss-cert").contains(" * ") && row("boss-cert").contains(&url),
        "{list}"
    );
    assert!(row("default").contains(" UTC"), "{list}");
    assert!(!row("default").contains(" * "), "{list}");
    let out = ok(h, &["edge", "use", "second"]);
    assert!(out.contains("using login \"second\""), "{out}");
    assert_eq!(logins(h)["current"], "second");
    let err = refused(h, &["edge", "use", "nobody"]);
    assert!(
        err.contains("no saved login named \"nobody\" (saved: boss, boss-cert, default, second)"),
        "{err}"
    );
    let err = refused(h, &["edge", "list", "services", "--cli-identity", "nobody"]);
    assert!(err.contains("no saved login named \"nobody\""), "{err}");

    // An unknown session: log in again, with the command that does it.
    let mut saved = logins(h);
    saved["logins"]["second"]["token"] = "00000000-0000-4000-8000-000000000000".into();
    std::fs::write(
        h.join(".config/weft/config.json"),
        serde_json::to_string(&saved).unwrap(),
    )
    .unwrap();
    let err = refused(h, &["edge", "list", "services"]);
    assert!(
        err.contains(&format!(
            "the session expired: log in again (weft login {url} -u admin --cli-identity second)"
        )),
        "{err}"
    );
    let err = refused(h, &["edge", "delete", "session", "0123"]);
    assert!(err.contains("the session expired"), "{err}");

    // weft logout: ends the session on the controller and forgets the login.
    let default_token = logins(h)["logins"]["default"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = ok(h, &["logout", "default"]);
    assert!(
        out.contains("(session ended); removed login \"default\""),
        "{out}"
    );
    assert!(logins(h)["logins"].get("default").is_none());
    let out = ok(h, &["logout"]);
    assert!(
        out.contains("the session had already expired") && out.contains("\"second\""),
        "{out}"
    );
    assert!(
        out.contains("no login is current now: `weft edge use NAME` picks one of boss, boss-cert"),
        "{out}"
    );
    let err = refused(h, &["edge", "list", "services"]);
    assert!(
        err.contains("no login is current: pick one with `weft edge use NAME`"),
        "{err}"
    );
    let err = refused(h, &["logout", "default"]);
    assert!(err.contains("no saved login named \"default\""), "{err}");
    // The ended session is gone on the controller too.
    let sessions = ok(
        h,
        &[
            "edge",
            "list",
            "api-sessions",
            "-j",
            "--cli-identity",
            "boss",
        ],
    );
    assert!(!sessions.contains(&default_token), "{sessions}");
}

#[test]
fn an_expired_session_says_log_in_again_and_logins_live_under_xdg_config_home() {
    let ctl = Ctl::start_with("auth.api_session_timeout_secs = 2");
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let xdg = h.join("xdg");
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([
            "login",
            &url(&ctl),
            "-u",
            "admin",
            "-p",
            &ctl.admin_password(),
            "-y",
        ])
        .env("HOME", h)
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(xdg.join("weft/config.json").exists());
    assert!(!h.join(".config").exists());
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["edge", "list", "services"])
        .env("HOME", h)
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "error: the session expired: log in again (weft login {} -u admin)",
            url(&ctl)
        )),
        "{err}"
    );
}

#[test]
fn a_login_file_of_the_earlier_format_is_the_default_login() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    admin_login(h, &ctl);
    let now = logins(h);
    let old = &now["logins"]["default"];
    let earlier =
        serde_json::json!({"url": old["url"], "token": old["token"], "caPem": old["caPem"]});
    std::fs::write(
        h.join(".config/weft/config.json"),
        serde_json::to_string(&earlier).unwrap(),
    )
    .unwrap();
    ok(h, &["edge", "list", "services"]);
    let list = ok(h, &["edge", "use"]);
    assert!(
        list.lines().nth(1).unwrap().starts_with("default "),
        "{list}"
    );
}

#[test]
fn quickstart_keeps_its_login_apart_from_saved_ones_and_removes_it_when_it_stops() {
    use std::io::BufRead;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let config = h.join(".config/weft/config.json");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let mine = serde_json::json!({"current": "default", "logins": {"default":
        {"url": "https://ctl.example:1280", "token": "t", "caPem": "", "username": "me"}}});
    std::fs::write(&config, mine.to_string()).unwrap();
    let dir = h.join("qs");

    // --exit: the network dies at once, so nothing is saved.
    let out = ok(h, &["quickstart", "--dir", p(&dir), "--exit"]);
    assert!(
        out.contains("The network stops now (--exit): no login is saved for `weft`."),
        "{out}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&std::fs::read_to_string(&config).unwrap()).unwrap(),
        mine
    );

    // Kept up: saved as "quickstart" beside the current login, removed on Ctrl-C.
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["quickstart", "--dir", p(&dir)])
        .env("HOME", h)
        .env_remove("XDG_CONFIG_HOME")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let mut printed = Vec::new();
    while !printed
        .last()
        .is_some_and(|l: &String| l.starts_with("Press Ctrl-C"))
    {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e}: {printed:#?}"));
        printed.push(line);
    }
    let printed = printed.join("\n");
    assert!(
        printed.contains(&format!(
            "Admin login saved for `weft` as \"quickstart\" in {}; your login \"default\" \
             stays current",
            config.display()
        )),
        "{printed}"
    );
    let saved = logins(h);
    assert_eq!(saved["current"], "default");
    assert_eq!(saved["logins"]["default"], mine["logins"]["default"]);
    let services = ok(
        h,
        &["edge", "list", "services", "--cli-identity", "quickstart"],
    );
    assert!(services.contains("demo-echo"), "{services}");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter()
            .any(|l| l == "removed the saved login \"quickstart\""),
        "{rest:#?}"
    );
    assert_eq!(logins(h), mine);
}

#[test]
fn auth_policies_password_enrollment_and_disable_from_the_cli() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    admin_login(h, &ctl);
    let out = ok(
        h,
        &[
            "edge",
            "create",
            "auth-policy",
            "strict",
            "--primary-cert-allowed",
            "false",
            "--primary-updb-min-length",
            "12",
            "--primary-updb-req-numbers",
            "--primary-updb-max-attempts",
            "3",
            "--secondary-req-totp",
        ],
    );
    assert!(out.contains("New auth-policy strict created"), "{out}");
    let listed = ok(h, &["edge", "list", "auth-policies", "-j"]);
    let v: Value = serde_json::from_str(&listed).unwrap();
    let strict = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "strict")
        .unwrap()
        .clone();
    assert_eq!(strict["primary"]["cert"]["allowed"], false);
    assert_eq!(strict["primary"]["updb"]["minPasswordLength"], 12);
    assert_eq!(strict["primary"]["updb"]["maxAttempts"], 3);
    assert_eq!(strict["secondary"]["requireTotp"], true);

    // A password enrollment under the policy: the JWT file carries method updb.
    let jwt = h.join("mo.jwt");
    ok(
        h,
        &[
            "edge",
            "create",
            "identity",
            "mo",
            "--updb",
            "mo",
            "-P",
            "strict",
            "-o",
            p(&jwt),
        ],
    );
    let claims = jwt_claims(std::fs::read_to_string(&jwt).unwrap().trim());
    assert_eq!(claims["em"], "updb");
    let detail = ok(h, &["edge", "list", "identities", "name = \"mo\"", "-j"]);
    let v: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(v[0]["authPolicy"]["name"], "strict");
    ok(
        h,
        &[
            "edge",
            "update",
            "identity",
            "mo",
            "--auth-policy",
            "default",
        ],
    );
    let detail = ok(h, &["edge", "list", "identities", "name = \"mo\"", "-j"]);
    let v: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(v[0]["authPolicyId"], "default");
    // A policy in use cannot be deleted; an unused one can.
    ok(
        h,
        &[
            "edge",
            "update",
            "identity",
            "mo",
            "--auth-policy",
            "strict",
        ],
    );
    let err = refused(h, &["edge", "delete", "auth-policy", "strict"]);
    assert!(
        err.contains("CAN_NOT_DELETE_REFERENCED_ENTITY") || err.contains("used by"),
        "{err}"
    );

    // Disable for a while, then enable.
    let out = ok(h, &["edge", "disable", "identity", "mo", "-d", "30"]);
    assert!(out.contains("for 30 minutes"), "{out}");
    let detail = ok(h, &["edge", "list", "identities", "name = \"mo\"", "-j"]);
    let v: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(v[0]["disabled"], true);
    ok(h, &["edge", "enable", "identity", "mo"]);
    let detail = ok(h, &["edge", "list", "identities", "name = \"mo\"", "-j"]);
    let v: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(v[0]["disabled"], false);
    let err = refused(h, &["edge", "disable", "service", "mo"]);
    assert!(err.contains("only identities"), "{err}");
    let types = ok(h, &["edge", "list", "identity-types"]);
    assert!(types.contains("Router"), "{types}");
}

#[test]
fn login_answers_the_totp_query_of_an_identity_with_mfa() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The admin enrolls in MFA over the API.
    let secret = rt.block_on(async {
        let token = ctl.admin_token().await;
        let http = ctl.http();
        let res = http
            .post(ctl.mgmt("/current-identity/mfa"))
            .header("zt-session", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let v: Value = http
            .get(ctl.mgmt("/current-identity/mfa"))
            .header("zt-session", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = v["data"]["provisioningUrl"].as_str().unwrap().to_owned();
        let secret = url.split("secret=").nth(1).unwrap().to_owned();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let code = weft_controller::auth::totp::code_at(&secret, now).unwrap();
        let res = http
            .post(ctl.mgmt("/current-identity/mfa/verify"))
            .header("zt-session", &token)
            .json(&serde_json::json!({"code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        secret
    });
    let ca = h.join("ctl-ca.pem");
    std::fs::write(&ca, ctl.ca_pem()).unwrap();
    let password = ctl.admin_password();
    let login = |extra: &[&str]| {
        let mut args = vec!["login", "-u", "admin", "-p", &password, "--ca", p(&ca)];
        let u = url(&ctl);
        args.insert(1, &u);
        args.extend_from_slice(extra);
        weft(h, &args)
    };
    // Without a code (and no terminal to ask on) the login says what it needs.
    let (ok_, out, err) = login(&[]);
    assert!(!ok_, "{out}{err}");
    assert!(err.contains("--totp"), "{err}");
    // A wrong code is refused.
    let (ok_, _, err) = login(&["--totp", "12345"]);
    assert!(!ok_);
    assert!(err.contains("MFA_INVALID_TOKEN"), "{err}");
    // The next step's code (the current one was spent at verify) logs in.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = weft_controller::auth::totp::code_at(&secret, now + 30).unwrap();
    let (ok_, out, err) = login(&["--totp", &code]);
    assert!(ok_, "{out}{err}");
    ok(h, &["edge", "list", "identities"]);
}

#[test]
fn posture_checks_from_the_cli() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    admin_login(h, &ctl);
    for (args, created) in [
        (
            vec![
                "os",
                "linux-5",
                "--os",
                "Linux:>=5.0.0:<7.0.0",
                "-a",
                "strict,base",
            ],
            "linux-5",
        ),
        (
            vec![
                "mac",
                "nic",
                "-m",
                "AA:BB:CC:DD:EE:FF,00-11-22-33-44-55",
                "-a",
                "hw",
            ],
            "nic",
        ),
        (vec!["domain", "corp", "-d", "corp.example"], "corp"),
        (
            vec![
                "process",
                "agent",
                "Linux",
                "/usr/bin/agent",
                "--hashes",
                "ABCD",
            ],
            "agent",
        ),
        (
            vec![
                "process-multi",
                "agents",
                "--semantic",
                "AnyOf",
                "--os-types",
                "Linux",
                "--paths",
                "/usr/bin/a,/usr/bin/b",
            ],
            "agents",
        ),
        (vec!["mfa", "totp-10m", "-s", "600", "--wake"], "totp-10m"),
    ] {
        let mut all = vec!["edge", "create", "posture-check"];
        all.extend(args);
        let out = ok(h, &all);
        assert!(
            out.contains(&format!("New posture-check {created} created")),
            "{out}"
        );
    }
    let listed = ok(h, &["edge", "list", "posture-checks", "-j"]);
    let v: Value = serde_json::from_str(&listed).unwrap();
    let by_name = |n: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by_name("linux-5")["operatingSystems"],
        serde_json::json!([{"type": "Linux", "versions": [">=5.0.0", "<7.0.0"]}])
    );
    assert_eq!(
        by_name("nic")["macAddresses"],
        serde_json::json!(["aabbccddeeff", "001122334455"])
    );
    assert_eq!(
        by_name("agent")["process"]["hashes"],
        serde_json::json!(["abcd"])
    );
    assert_eq!(by_name("agents")["processes"][1]["path"], "/usr/bin/b");
    assert_eq!(by_name("totp-10m")["timeoutSeconds"], 600);
    assert_eq!(by_name("totp-10m")["promptOnWake"], true);
    // Bad input is refused with the controller's reason; nothing is created.
    let err = refused(
        h,
        &[
            "edge",
            "create",
            "posture-check",
            "os",
            "bad",
            "--os",
            "Linux:>=banana",
        ],
    );
    assert!(err.contains("operatingSystems.versions"), "{err}");
    let err = refused(
        h,
        &[
            "edge",
            "create",
            "posture-check",
            "process-multi",
            "bad",
            "--os-types",
            "Linux,Linux,Linux",
            "--paths",
            "/a,/b",
        ],
    );
    assert!(err.contains("--os-types"), "{err}");
    // A service policy selects them; deleting works by name.
    ok(
        h,
        &[
            "edge",
            "create",
            "service-policy",
            "sp",
            "Dial",
            "-i",
            "#all",
            "-s",
            "#all",
            "-p",
            "#strict",
        ],
    );
    ok(
        h,
        &[
            "edge",
            "update",
            "posture-check",
            "linux-5",
            "--os",
            "Linux:>=6.0.0",
            "-a",
            "strict",
        ],
    );
    let v: Value = serde_json::from_str(&ok(h, &["edge", "list", "posture-checks", "-j"])).unwrap();
    let linux = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "linux-5")
        .unwrap();
    assert_eq!(
        linux["operatingSystems"][0]["versions"],
        serde_json::json!([">=6.0.0"])
    );
    assert_eq!(linux["roleAttributes"], serde_json::json!(["strict"]));
    assert_eq!(linux["version"], 2);
    ok(h, &["edge", "delete", "posture-check", "corp"]);
    let listed = ok(h, &["edge", "list", "posture-checks", "-j"]);
    assert!(!listed.contains("\"corp\""), "{listed}");
    let types = ok(h, &["edge", "list", "posture-check-types", "-j"]);
    assert!(types.contains("PROCESS_MULTI"), "{types}");
}

/// The id of the pending enrollment of the identity named `identity`.
fn enrollment_of(h: &Path, identity: &str) -> String {
    let listed: Value =
        serde_json::from_str(&ok(h, &["edge", "list", "enrollments", "-j"])).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["identity"]["name"] == identity)
        .unwrap_or_else(|| panic!("no enrollment of {identity}: {listed}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An enrollment for an existing identity (refused while one is pending), refreshed
/// with a new token that enrolls while the old one no longer does; a password
/// enrollment whose user then changes their own password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollments_are_created_refreshed_and_a_user_changes_their_password() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    admin_login(h, &ctl);
    let first = h.join("dave.jwt");
    ok(h, &["edge", "create", "identity", "dave", "-o", p(&first)]);
    let err = refused(h, &["edge", "create", "enrollment", "ott", "dave"]);
    assert!(err.contains("already has a pending enrollment"), "{err}");
    let id = enrollment_of(h, "dave");
    let fresh = h.join("dave-new.jwt");
    let out = ok(
        h,
        &[
            "edge",
            "refresh",
            "enrollment",
            &id,
            "-d",
            "90",
            "-o",
            p(&fresh),
        ],
    );
    assert!(out.contains("token written to"), "{out}");
    let claims = jwt_claims(std::fs::read_to_string(&fresh).unwrap().trim());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let exp = claims["exp"].as_i64().unwrap();
    assert!(
        (now + 85 * 60..=now + 95 * 60).contains(&exp),
        "exp {exp}, now {now}"
    );
    let err = refused(
        h,
        &["edge", "enroll", p(&first), "-o", p(&h.join("old.json"))],
    );
    assert!(!err.is_empty());
    ok(
        h,
        &["edge", "enroll", p(&fresh), "-o", p(&h.join("dave.json"))],
    );

    // A password enrollment made for an existing identity; the user redeems it, logs
    // in and changes the password.
    ok(
        h,
        &[
            "edge",
            "create",
            "identity",
            "erin",
            "-o",
            p(&h.join("erin-ott.jwt")),
        ],
    );
    let erin_ott = enrollment_of(h, "erin");
    ok(h, &["edge", "delete", "enrollment", &erin_ott]);
    let updb = h.join("erin.jwt");
    let out = ok(
        h,
        &[
            "edge",
            "create",
            "enrollment",
            "updb",
            "erin",
            "erin",
            "-o",
            p(&updb),
        ],
    );
    assert!(
        out.contains("New updb enrollment for identity erin"),
        "{out}"
    );
    let claims = jwt_claims(std::fs::read_to_string(&updb).unwrap().trim());
    assert_eq!(claims["em"], "updb");
    let res = ctl
        .http()
        .post(ctl.url(&format!(
            "/enroll/updb?token={}",
            claims["jti"].as_str().unwrap()
        )))
        .json(&serde_json::json!({"password": "first-Pass-1"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let login = |password: &str| {
        let ca = h.join("ctl-ca.pem");
        weft(
            h,
            &[
                "login",
                &url(&ctl),
                "-u",
                "erin",
                "-p",
                password,
                "--ca",
                p(&ca),
            ],
        )
    };
    assert!(login("first-Pass-1").0);
    let err = refused(
        h,
        &[
            "edge",
            "update",
            "authenticator",
            "updb",
            "-p",
            "wrong",
            "-n",
            "second-Pass-2",
        ],
    );
    assert!(!err.is_empty());
    let out = ok(
        h,
        &[
            "edge",
            "update",
            "authenticator",
            "updb",
            "-p",
            "first-Pass-1",
            "-n",
            "second-Pass-2",
        ],
    );
    assert!(out.contains("password changed"), "{out}");
    assert!(!login("first-Pass-1").0, "the old password still logs in");
    assert!(login("second-Pass-2").0, "the new password does not log in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_router_is_re_enrolled_with_a_new_token() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    admin_login(h, &ctl);
    let first = h.join("er1.jwt");
    ok(
        h,
        &["edge", "create", "edge-router", "er1", "-o", p(&first)],
    );
    // -o refuses an existing file before anything changes.
    let err = refused(
        h,
        &["edge", "re-enroll", "edge-router", "er1", "-o", p(&first)],
    );
    assert!(err.contains("pass --force"), "{err}");
    let err = refused(h, &["edge", "re-enroll", "edge-router", "no-such-router"]);
    assert!(!err.is_empty());
    let second = h.join("er1-again.jwt");
    let out = ok(
        h,
        &["edge", "re-enroll", "edge-router", "er1", "-o", p(&second)],
    );
    assert!(out.contains("token written to"), "{out}");
    let old = jwt_claims(std::fs::read_to_string(&first).unwrap().trim());
    let new = jwt_claims(std::fs::read_to_string(&second).unwrap().trim());
    assert_eq!(new["em"], "erott");
    assert_eq!(new["sub"], old["sub"]);
    assert_ne!(new["jti"], old["jti"], "a new token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_integrity_reports_what_is_broken_and_fixes_it() {
    let ctl = Ctl::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    admin_login(h, &ctl);
    let out = ok(h, &["edge", "check-integrity"]);
    assert!(out.contains("no data integrity problem found"), "{out}");

    // A service's config deleted from the database by hand stays in the service's list.
    ok(
        h,
        &[
            "edge",
            "create",
            "config",
            "c1",
            "host.v1",
            r#"{"port": 1}"#,
        ],
    );
    ok(h, &["edge", "create", "service", "web", "-c", "c1"]);
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", ctl.dir.join("weft.db").display()))
            .await
            .unwrap();
    sqlx::query("DELETE FROM entities WHERE kind = 'configs' AND name = 'c1'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let (success, out, err) = weft(h, &["edge", "check-integrity"]);
    assert!(!success, "{out}{err}");
    assert!(
        out.starts_with("[not fixed] services ") && out.contains("references config"),
        "{out}"
    );
    assert!(
        err.contains("1 data integrity problem(s) not fixed"),
        "{err}"
    );
    let out = ok(h, &["edge", "check-integrity", "--fix"]);
    assert!(out.starts_with("[fixed] services "), "{out}");
    let out = ok(h, &["edge", "check-integrity"]);
    assert!(out.contains("no data integrity problem found"), "{out}");
}
