//! Child processes of the suite: every one sits in a [`Daemon`] guard that kills it
//! when dropped, so an error, a panic or Ctrl-C (which drops the run) leaves nothing
//! behind. Their output goes to log files in the run's temporary directory.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// A long-running child process, killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Option<Child>,
    pid: u32,
    log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` with stdout and stderr appended to `log_dir/<name>.log`.
    pub fn spawn(name: &str, cmd: &mut Command, log_dir: &Path) -> Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating a log file handle")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Self {
            name: name.to_owned(),
            pid: child.id(),
            child: Some(child),
            log,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The name it was given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path of its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// An error if the process has exited (with its log tail).
    pub fn check_alive(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} was stopped", self.name);
        };
        if let Some(status) = child.try_wait().context("polling a child process")? {
            bail!(
                "{} exited ({status}); its log ({}) ends with:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Waits until `ready()` holds, failing if the process exits first or `timeout`
    /// passes.
    pub async fn wait_until(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "{} did not become ready within {timeout:?}; its log ends with:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until its log has a line starting with `prefix`; returns that line.
    pub async fn wait_for_log_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let log = self.log.clone();
        let mut found = String::new();
        self.wait_until(timeout, || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.starts_with(prefix)) {
                found = line.to_owned();
                true
            } else {
                false
            }
        })
        .await?;
        Ok(found)
    }

    /// Waits until something listens on `port` (read from `/proc/net/tcp`, so no
    /// connection is made to the service behind it).
    pub async fn wait_listening(&mut self, port: u16, timeout: Duration) -> Result<()> {
        self.wait_until(timeout, || crate::sysinfo::is_listening(port))
            .await
    }

    /// Kills and reaps the process now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on 127.0.0.1 (bound and released at once).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("finding a free port")?
        .local_addr()
        .context("finding a free port")?
        .port())
}

/// Where the workspace binaries are: the directory of this executable.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `weft-controller`.
    pub controller: PathBuf,
    /// `weft-router`.
    pub router: PathBuf,
    /// `weft` (the CLI with `weft tunnel`).
    pub weft: PathBuf,
    /// This executable (`weft-perf`, for its echo server).
    pub perf: PathBuf,
    /// `iperf3`.
    pub iperf3: PathBuf,
    /// `socat`.
    pub socat: PathBuf,
    /// `stunnel4` or `stunnel`.
    pub stunnel: PathBuf,
}

impl Binaries {
    /// Finds the workspace binaries next to this executable and the baseline tools on
    /// `PATH`; the error says how to get what is missing.
    pub fn locate() -> Result<Self> {
        let perf = std::env::current_exe().context("locating the weft-perf executable")?;
        let dir = perf
            .parent()
            .context("the weft-perf executable has no directory")?
            .to_path_buf();
        let find = |name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if crate::sysinfo::is_executable(&p) {
                Ok(p)
            } else {
                bail!(
                    "{} not found next to weft-perf (in {}); build the workspace binaries \
                     first: `cargo build --release --workspace --bins` (and run \
                     target/release/weft-perf)",
                    name,
                    dir.display()
                )
            }
        };
        let tool = |names: &[&str], package: &str| -> Result<PathBuf> {
            crate::sysinfo::which(names).with_context(|| {
                format!(
                    "{} not found on PATH; the baselines need the Debian packages iperf3, \
                     socat and stunnel4 (`apt-get install iperf3 socat stunnel4`; missing: {package})",
                    names.join(" or ")
                )
            })
        };
        Ok(Self {
            controller: find("weft-controller")?,
            router: find("weft-router")?,
            weft: find("weft")?,
            iperf3: tool(&["iperf3"], "iperf3")?,
            socat: tool(&["socat"], "socat")?,
            stunnel: tool(&["stunnel4", "stunnel"], "stunnel4")?,
            perf,
        })
    }
}
