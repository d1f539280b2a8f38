//! Finding the workspace binaries and running them as killed-on-drop processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a process may take to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The directory holding the workspace binaries (`target/<profile>`): `WEFT_BIN_DIR`
/// if set; else the profile directory these tests run from, after a `cargo build` of
/// the controller and router binaries if any of their sources is newer than them (a
/// workspace test run has already built them, so usually nothing is built).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("WEFT_BIN_DIR") {
            return PathBuf::from(dir);
        }
        // target/<profile>/deps/<test binary>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        if binaries_are_current(&profile_dir) {
            return profile_dir;
        }
        cargo_build(
            &profile_dir,
            &[
                "-p",
                "weft-controller",
                "-p",
                "weft-router",
                "-p",
                "weft-cli",
                "--bins",
            ],
            "weft-controller/weft-router/weft",
        );
        profile_dir
    })
}

/// The SDK example `name` (`sdk/examples/<name>.rs`), built with the `axum` feature
/// when it is missing or older than the SDK's sources (a workspace test run builds the
/// examples, so usually nothing is built).
pub fn sdk_example(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let profile_dir = bin_dir().to_path_buf();
        let examples = profile_dir.join("examples");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let sources = [root.join("sdk/src"), root.join("sdk/examples")]
            .iter()
            .filter_map(|p| newest(p))
            .max();
        let built = oldest_built(
            &examples,
            &[
                "echo_server",
                "echo_client",
                "axum_server",
                "resilient_client",
            ],
        );
        if matches!((sources, built), (Some(s), Some(b)) if b >= s) {
            return examples;
        }
        cargo_build(
            &profile_dir,
            &["-p", "weft-sdk", "--examples", "--features", "axum"],
            "the SDK examples",
        );
        examples
    });
    dir.join(name)
}

/// `cargo build ARGS` into the target directory holding `profile_dir`, with its profile;
/// panics naming `what` when the build fails.
fn cargo_build(profile_dir: &Path, args: &[&str], what: &str) {
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--profile", &profile])
        .args(args)
        .arg("--target-dir")
        .arg(profile_dir.parent().unwrap())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap_or_else(|e| panic!("running cargo build for {what}: {e}"));
    assert!(status.success(), "building {what} failed");
}

/// When the oldest of the files `names` in `dir` was built; `None` when one is missing.
fn oldest_built(dir: &Path, names: &[&str]) -> Option<std::time::SystemTime> {
    names
        .iter()
        .map(|b| {
            std::fs::metadata(dir.join(b))
                .and_then(|m| m.modified())
                .ok()
        })
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().min())
}

/// The newest modification time under `path`.
fn newest(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| newest(&e.ok()?.path()))
        .max()
}

/// Whether both binaries exist and are newer than every source they are built from.
fn binaries_are_current(profile_dir: &Path) -> bool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let sources = [
        "Cargo.lock",
        "wire",
        "tls",
        "identity",
        "router",
        "controller-lite",
        "sdk",
        "cli",
    ]
    .iter()
    .filter_map(|p| {
        newest(
            &root
                .join(p)
                .join(if p.ends_with(".lock") { "" } else { "src" }),
        )
    })
    .max();
    let built = oldest_built(profile_dir, &["weft-controller", "weft-router", "weft"]);
    matches!((sources, built), (Some(s), Some(b)) if b >= s)
}

/// A free TCP port on loopback that no other `bind(0)` gets while this test process
/// lives: the port stays bound, not listening and with `SO_REUSEADDR`, by a socket kept
/// for the life of the process. The process that uses it binds and listens beside that
/// socket (Rust's listeners and the router's set `SO_REUSEADDR` too). A port bound and
/// released at once could go to the next `bind(0)` of a parallel test: two tests once
/// got the same one, and one test's clients met the other's router.
pub fn free_port() -> u16 {
    use socket2::{Domain, Socket, Type};
    static HELD: std::sync::Mutex<Vec<Socket>> = std::sync::Mutex::new(Vec::new());
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    socket.bind(&any.into()).unwrap();
    let port = socket
        .local_addr()
        .unwrap()
        .as_socket()
        .expect("an IPv4 address")
        .port();
    HELD.lock().unwrap().push(socket);
    port
}

/// Logs of the processes: `RUST_LOG` if set, else warnings only.
pub fn log_level() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())
}

/// Waits until `path` holds a non-empty line (a process writes its address there
/// once it listens); panics if `child` exits first or after [`START_TIMEOUT`].
pub fn wait_for_file(path: &Path, child: &mut Child, what: &str) -> String {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.trim().is_empty() {
                return s.trim().to_string();
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited during start: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A killed-on-drop child process.
#[derive(Debug)]
pub struct Process(pub Option<Child>);

impl Process {
    /// Resident set size of the running process in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.0.as_ref().map(Child::id).expect("the process runs");
        rss_kib(pid)
    }

    /// Kills the process (SIGKILL) and reaps it; a no-op once done.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resident set size of process `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
