//! `weft edge policy-advisor identities|services` against a real controller with one
//! router online and two router records that never come online.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weft_testkit::{Ctl, Router};

mod common;
use common::{login_admin, ok, refused};

/// The output line of the pair `identity -> service`.
fn pair<'a>(out: &'a str, identity: &str, service: &str) -> &'a str {
    let needle = format!(" {identity} -> {service} | ");
    let found: Vec<&str> = out.lines().filter(|l| l.contains(&needle)).collect();
    assert_eq!(
        found.len(),
        1,
        "one line for {identity} -> {service} in\n{out}"
    );
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_advisor_reports_each_pair_with_its_cause() {
    let ctl = Ctl::start();
    let admin = ctl.admin().await;
    let _online = Router::start(&ctl, &admin, "er-on", &[]).await;

    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    login_admin(h, &ctl).await;
    // Router records that never enroll: offline.
    for name in ["er-off", "er-island"] {
        ok(h, &["edge", "create", "edge-router", name]).await;
    }
    ok(h, &["edge", "create", "identity", "alice", "-a", "dialers"]).await;
    ok(h, &["edge", "create", "identity", "bob"]).await;
    ok(h, &["edge", "create", "identity", "dave", "-a", "dialers"]).await;
    ok(h, &["edge", "disable", "identity", "dave"]).await;
    for service in ["echo", "dark", "island", "nowhere"] {
        ok(h, &["edge", "create", "service", service]).await;
    }
    ok(
        h,
        &[
            "edge",
            "create",
            "posture-check",
            "mfa",
            "pc-mfa",
            "-a",
            "pc",
        ],
    )
    .await;
    let create = |args: &'static [&'static str]| async move {
        let mut all = vec!["edge", "create"];
        all.extend_from_slice(args);
        ok(h, &all).await;
    };
    create(&[
        "service-policy",
        "dial-all",
        "Dial",
        "-i",
        "#dialers",
        "-s",
        "#all",
        "-p",
        "#pc",
    ])
    .await;
    // Every identity may use er-on and er-off.
    create(&[
        "edge-router-policy",
        "erp",
        "-e",
        "@er-on,@er-off",
        "-i",
        "#all",
    ])
    .await;
    // echo through er-on (online), dark through er-off (offline), island through
    // er-island (no identity's router), nowhere through none.
    create(&[
        "service-edge-router-policy",
        "serp-echo",
        "-e",
        "@er-on",
        "-s",
        "@echo",
    ])
    .await;
    create(&[
        "service-edge-router-policy",
        "serp-dark",
        "-e",
        "@er-off",
        "-s",
        "@dark",
    ])
    .await;
    create(&[
        "service-edge-router-policy",
        "serp-island",
        "-e",
        "@er-island",
        "-s",
        "@island",
    ])
    .await;

    // One pair, OKAY: the granting policy, the routers, the posture check.
    let out = ok(
        h,
        &["edge", "policy-advisor", "identities", "alice", "echo"],
    )
    .await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "OKAY    alice -> echo | dial: yes (dial-all) | bind: no | edge routers: identity 2, \
             service 1, common 1, online 1 (er-on) | posture checks: pc-mfa (dial-all)",
            "pairs: 1 (OKAY 1, WARNING 0, ERROR 0)",
        ],
        "{out}"
    );

    // No Dial policy: reported, and still exit code 0.
    let out = ok(h, &["edge", "policy-advisor", "services", "echo", "bob"]).await;
    assert_eq!(
        pair(&out, "bob", "echo"),
        "ERROR   bob -> echo | no Dial or Bind service policy (adjust service policies) | \
         dial: no | bind: no | edge routers: identity 2, service 1, common 1, online 1 (er-on) \
         | posture checks: none"
    );
    assert!(
        out.ends_with("pairs: 1 (OKAY 0, WARNING 0, ERROR 1)\n"),
        "{out}"
    );

    // alice against every service: each cause named.
    let out = ok(h, &["edge", "policy-advisor", "identities", "alice"]).await;
    eprintln!("{out}");
    assert!(pair(&out, "alice", "echo").starts_with("OKAY    alice -> echo | "));
    let island = pair(&out, "alice", "island");
    assert!(
        island.starts_with("ERROR   alice -> island | no common edge router (identity: "),
        "{island}"
    );
    assert!(island.contains("service: er-island)"), "{island}");
    assert!(
        island.contains("edge routers: identity 2, service 1, common 0, online 0 |"),
        "{island}"
    );
    let dark = pair(&out, "alice", "dark");
    assert!(
        dark.starts_with("ERROR   alice -> dark | common edge routers all offline: er-off "),
        "{dark}"
    );
    let nowhere = pair(&out, "alice", "nowhere");
    assert!(
        nowhere.starts_with(
            "ERROR   alice -> nowhere | service has no edge router (adjust service edge router \
             policies) | dial: yes (dial-all)"
        ),
        "{nowhere}"
    );
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(
        out.ends_with("pairs: 4 (OKAY 1, WARNING 0, ERROR 3)\n"),
        "{out}"
    );

    // -q: only the pairs with a problem, no summary.
    let quiet = ok(h, &["edge", "policy-advisor", "identities", "alice", "-q"]).await;
    let lines: Vec<&str> = quiet.lines().collect();
    assert_eq!(lines.len(), 3, "{quiet}");
    assert!(
        lines.iter().all(|l| l.starts_with("ERROR   alice -> ")),
        "{quiet}"
    );
    assert!(!quiet.contains("-> echo |"), "{quiet}");

    // echo against every identity (the default admin too): the disabled identity.
    let out = ok(h, &["edge", "policy-advisor", "services", "echo"]).await;
    eprintln!("{out}");
    assert!(
        pair(&out, "dave", "echo").starts_with(
            "ERROR   dave -> echo | identity is disabled (weft edge enable identity dave) | \
             dial: yes (dial-all)"
        ),
        "{out}"
    );
    assert!(pair(&out, "alice", "echo").starts_with("OKAY "), "{out}");
    let quiet = ok(
        h,
        &["edge", "policy-advisor", "services", "echo", "--quiet"],
    )
    .await;
    assert!(!quiet.lines().any(|l| l.starts_with("OKAY")), "{quiet}");
    assert!(pair(&quiet, "bob", "echo").starts_with("ERROR "), "{quiet}");

    // Every pair: 4 identities (with the default admin) by 4 services.
    let out = ok(h, &["edge", "policy-advisor", "identities"]).await;
    assert_eq!(out.lines().count(), 17, "{out}");
    assert!(
        out.ends_with("pairs: 16 (OKAY 1, WARNING 0, ERROR 15)\n"),
        "{out}"
    );

    // Unknown names: an error naming them.
    let err = refused(
        h,
        &["edge", "policy-advisor", "identities", "nobody", "echo"],
    )
    .await;
    assert!(
        err.contains("no identity named or with id \"nobody\""),
        "{err}"
    );
    let err = refused(
        h,
        &["edge", "policy-advisor", "identities", "alice", "nosuch"],
    )
    .await;
    assert!(
        err.contains("no service named or with id \"nosuch\""),
        "{err}"
    );
    let err = refused(h, &["edge", "policy-advisor", "services", "nosuch"]).await;
    assert!(
        err.contains("no service named or with id \"nosuch\""),
        "{err}"
    );
}
