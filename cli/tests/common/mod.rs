//! Running the `weft` binary from the CLI's async integration tests.
// Each test crate uses only some of these.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

/// Runs `weft` with `HOME` at `home` (off the async workers); (success, stdout, stderr).
pub(crate) async fn weft(home: &Path, args: &[&str]) -> (bool, String, String) {
    let home = home.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(&args)
            .env("HOME", home)
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// Runs `weft`, asserting success (exit code 0); its stdout.
pub(crate) async fn ok(home: &Path, args: &[&str]) -> String {
    let (ok, out, err) = weft(home, args).await;
    assert!(ok, "{args:?}: {out}{err}");
    out
}

/// Runs `weft`, asserting failure; its stderr.
pub(crate) async fn refused(home: &Path, args: &[&str]) -> String {
    let (ok, out, err) = weft(home, args).await;
    assert!(!ok, "{args:?} succeeded: {out}");
    err
}

/// `weft login` as the controller's admin (trusting its CA), saved under `home`.
pub(crate) async fn login_admin(home: &Path, ctl: &weft_testkit::Ctl) {
    let url = format!("https://localhost:{}", ctl.addr.port());
    ok(
        home,
        &[
            "login",
            &url,
            "-u",
            "admin",
            "-p",
            &ctl.admin_password(),
            "-y",
        ],
    )
    .await;
}
