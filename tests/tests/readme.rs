//! README.md's "Running the parts by hand", followed as written: its `sh` blocks run in
//! order in one bash, in an empty directory, with the built binaries, and bytes must
//! cross the overlay. What the test changes, so that it can run beside other tests:
//! `target/release/` is the test binaries' directory (the `cargo build` line is left
//! out), the fixed ports (3022, 8000, 9090) are free ones, the controller gets a config
//! that listens on free ports (the by-hand text reads its addresses from files), and
//! `HOME`/`XDG_CONFIG_HOME` point into the directory (the CLI saves its login there).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weft_testkit::{bin_dir, free_port};

/// The section of README.md the test follows.
const SECTION: &str = "## Running the parts by hand";

/// How long the whole section may take (a debug build on a loaded machine).
const DEADLINE: Duration = Duration::from_secs(240);

/// The `sh` blocks of `section` in README text `readme`, in order.
fn sh_blocks(readme: &str, section: &str) -> Vec<String> {
    let start = readme
        .find(section)
        .unwrap_or_else(|| panic!("README.md has no {section:?}"));
    let body = &readme[start + section.len()..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in body.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The script the test runs: the blocks with the changes the module docs list.
fn script(blocks: &[String], bin: &Path, config: &Path, ports: [(u16, u16); 3]) -> String {
    let mut text = String::from("set -euo pipefail\n");
    for block in blocks {
        for line in block.lines() {
            if line.starts_with("cargo build") {
                continue;
            }
            let mut line = line.replace("target/release/", &format!("{}/", bin.display()));
            if line.contains("weft-controller run") {
                line = line.replace(
                    "--data-dir ./weft-data",
                    &format!("--data-dir ./weft-data --config {}", config.display()),
                );
            }
            for (from, to) in ports {
                line = line.replace(&from.to_string(), &to.to_string());
            }
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

#[test]
fn the_by_hand_section_reaches_a_transfer() {
    let readme = include_str!("../../README.md");
    let blocks = sh_blocks(readme, SECTION);
    let all = blocks.concat();
    for step in [
        "weft-controller run",
        "weft login",
        "service-policy web-dial Dial",
        "service-policy web-bind Bind",
        "edge-router-policy",
        "service-edge-router-policy",
        "weft-router enroll",
        "weft edge enroll",
        "weft tunnel host",
        "weft tunnel dial",
        "curl",
        "kill $(jobs -p)",
    ] {
        assert!(all.contains(step), "the by-hand section lacks {step:?}");
    }
}

/// Kills the script's process group (the processes it left in the background) when
/// dropped.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .status();
    }
}

#[test]
fn following_the_readme_by_hand_moves_bytes() {
    let readme = include_str!("../../README.md");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("controller.toml");
    weft_testkit::boot::write_controller_config(&config, "").unwrap();
    let ports = [
        (3022, free_port()),
        (8000, free_port()),
        (9090, free_port()),
    ];
    let text = script(&sh_blocks(readme, SECTION), bin_dir(), &config, ports);
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&text)
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join(".config"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let _group = Group(child.id());
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    if status.is_some() {
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
    }
    let err = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    let report = format!("script:\n{text}\nstdout:\n{out}\nstderr:\n{err}");
    let status = status.unwrap_or_else(|| panic!("not done within {DEADLINE:?}; {report}"));
    assert!(status.success(), "the script failed ({status}); {report}");
    // curl fetched router.toml, which the http.server serves, through both tunnels.
    assert!(
        out.contains("advertised_host = \"localhost\""),
        "the file did not cross the overlay; {report}"
    );
    // The router reported its own address; the list shows it.
    assert!(
        out.contains(&format!("tls://localhost:{}", ports[0].1)),
        "the router's reported address is not listed; {report}"
    );
}
