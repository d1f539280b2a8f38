//! What `/proc` says: per-process CPU time and resident memory, system-wide CPU time,
//! listening sockets, and a description of the machine.
//!
//! The parsers take the files' text so that tests can feed them fixtures.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde::Serialize;

/// A `/proc` file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The file could not be read (the process may have exited).
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file's text did not have the expected shape.
    #[error("parsing {what}: {detail}")]
    Parse {
        /// Which file or field.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}

fn read(path: &str) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse_err(what: &'static str, detail: impl Into<String>) -> ProcError {
    ProcError::Parse {
        what,
        detail: detail.into(),
    }
}

/// The fields of `/proc/<pid>/stat` the suite uses; times are in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcStat {
    /// Parent process id.
    pub ppid: u32,
    /// User-mode CPU time of the process (all threads).
    pub utime: u64,
    /// Kernel-mode CPU time of the process (all threads).
    pub stime: u64,
    /// User-mode CPU time of its exited and reaped children.
    pub cutime: u64,
    /// Kernel-mode CPU time of its exited and reaped children.
    pub cstime: u64,
}

impl ProcStat {
    /// Own plus reaped children's CPU time, in ticks.
    pub fn total_ticks(&self) -> u64 {
        self.utime + self.stime + self.cutime + self.cstime
    }
}

/// Parses the text of `/proc/<pid>/stat` (the command name may hold spaces and
/// parentheses, so fields are counted from the last `)`).
pub fn parse_stat(text: &str) -> Result<ProcStat, ProcError> {
    let close = text
        .rfind(')')
        .ok_or_else(|| parse_err("stat", "no ')' after the command name"))?;
    // Fields after the command name, starting at field 3 (state).
    let rest: Vec<&str> = text
        .get(close + 1..)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let field = |n: usize| -> Result<u64, ProcError> {
        // Field n (1-based, as in proc(5)) is rest[n - 3].
        rest.get(n - 3)
            .ok_or_else(|| parse_err("stat", format!("field {n} missing")))?
            .parse::<u64>()
            .map_err(|e| parse_err("stat", format!("field {n}: {e}")))
    };
    Ok(ProcStat {
        ppid: u32::try_from(field(4)?).map_err(|e| parse_err("stat", e.to_string()))?,
        utime: field(14)?,
        stime: field(15)?,
        cutime: field(16)?,
        cstime: field(17)?,
    })
}

/// `/proc/<pid>/stat` of a process.
pub fn stat(pid: u32) -> Result<ProcStat, ProcError> {
    parse_stat(&read(&format!("/proc/{pid}/stat"))?)
}

/// Parses `VmRSS` (kB) out of the text of `/proc/<pid>/status`, in bytes.
pub fn parse_vm_rss(text: &str) -> Result<u64, ProcError> {
    let line = text
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| parse_err("status", "no VmRSS line"))?;
    let mut words = line.split_whitespace().skip(1);
    let kb: u64 = words
        .next()
        .ok_or_else(|| parse_err("status", "VmRSS without a value"))?
        .parse()
        .map_err(|e| parse_err("status", format!("VmRSS: {e}")))?;
    match words.next() {
        Some("kB") | None => Ok(kb * 1024),
        Some(other) => Err(parse_err("status", format!("VmRSS unit {other}"))),
    }
}

/// Resident memory of a process, bytes.
pub fn rss(pid: u32) -> Result<u64, ProcError> {
    parse_vm_rss(&read(&format!("/proc/{pid}/status"))?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 where that cannot be asked).
pub fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// The live descendants of `pid` (children, grandchildren, …), from `/proc/*/stat`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in dir.flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(s) = stat(p) {
            children.entry(s.ppid).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if let Some(kids) = children.get(&p) {
            out.extend_from_slice(kids);
            todo.extend_from_slice(kids);
        }
    }
    out
}

/// CPU seconds used so far by `pid`, its reaped children and its live descendants
/// (socat forks a child per connection). A process that has gone counts 0.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let own = stat(pid).map(|s| s.total_ticks()).unwrap_or(0);
    let kids: u64 = descendants(pid)
        .into_iter()
        .filter_map(|p| stat(p).ok())
        .map(|s| s.total_ticks())
        .sum();
    (own + kids) as f64 / clock_ticks() as f64
}

/// Resident memory of `pid` and its live descendants, bytes.
pub fn tree_rss(pid: u32) -> u64 {
    std::iter::once(pid)
        .chain(descendants(pid))
        .filter_map(|p| rss(p).ok())
        .sum()
}

/// System-wide CPU time from the first line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SystemCpu {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// busy + idle + iowait.
    pub total: u64,
}

/// Parses the `cpu` line of `/proc/stat`.
pub fn parse_system_cpu(text: &str) -> Result<SystemCpu, ProcError> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| parse_err("/proc/stat", "no cpu line"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|w| {
            w.parse()
                .map_err(|e| parse_err("/proc/stat", format!("{e}")))
        })
        .collect::<Result<_, _>>()?;
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    Ok(SystemCpu {
        busy,
        total: busy + get(3) + get(4),
    })
}

/// System-wide CPU time now.
pub fn system_cpu() -> Result<SystemCpu, ProcError> {
    parse_system_cpu(&read("/proc/stat")?)
}

/// Whether the text of `/proc/net/tcp` (or `tcp6`) lists a socket listening on `port`.
pub fn parse_listening(text: &str, port: u16) -> bool {
    text.lines().skip(1).any(|line| {
        let mut f = line.split_whitespace();
        let (Some(_sl), Some(local), Some(_remote), Some(state)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            return false;
        };
        state == "0A"
            && local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                == Some(port)
    })
}

/// Whether some socket listens on TCP `port` (IPv4 or IPv6), without connecting to it.
pub fn is_listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .any(|t| parse_listening(&t, port))
}

/// The machine a run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Kernel, as `uname -srm` prints it.
    pub kernel: String,
    /// `MemTotal` of `/proc/meminfo`, bytes.
    pub memory_bytes: u64,
    /// Host name.
    pub hostname: String,
}

/// Parses the first `model name` out of `/proc/cpuinfo`.
pub fn parse_cpu_model(text: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

impl Machine {
    /// Describes this machine.
    pub fn detect() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| parse_cpu_model(&t))
            .unwrap_or_else(|| "unknown".into());
        let kernel = Command::new("uname")
            .arg("-srm")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                let os = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
                format!("Linux {}", os.trim())
            });
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024);
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Self {
            cores,
            cpu_model,
            kernel,
            memory_bytes,
            hostname,
        }
    }

    /// One line: cores, CPU model, kernel, memory.
    pub fn describe(&self) -> String {
        format!(
            "{} cores, {}, {}, {:.1} GiB",
            self.cores,
            self.cpu_model,
            self.kernel,
            self.memory_bytes as f64 / (1u64 << 30) as f64
        )
    }
}

/// Whether `path` is an executable file.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first of `names` found as an executable on `PATH`.
pub fn which(names: &[&str]) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const STAT: &str = include_str!("../tests/fixtures/proc_stat.txt");
    const STATUS: &str = include_str!("../tests/fixtures/proc_status.txt");
    const NET_TCP: &str = include_str!("../tests/fixtures/proc_net_tcp.txt");

    #[test]
    fn stat_fields_after_a_command_name_with_spaces_and_parens() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(
            s,
            ProcStat {
                ppid: 4242,
                utime: 1234,
                stime: 567,
                cutime: 89,
                cstime: 10,
            }
        );
        assert_eq!(s.total_ticks(), 1234 + 567 + 89 + 10);
    }

    #[test]
    fn stat_rejects_truncated_text() {
        assert!(parse_stat("12 (x) S 1 2 3").is_err());
        assert!(parse_stat("no parens").is_err());
    }

    #[test]
    fn vm_rss_in_bytes() {
        assert_eq!(parse_vm_rss(STATUS).unwrap(), 18_432 * 1024);
        assert!(parse_vm_rss("Name: x\n").is_err());
    }

    #[test]
    fn system_cpu_busy_and_total() {
        let c =
            parse_system_cpu("cpu  10 1 5 100 4 2 3 7 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n").unwrap();
        assert_eq!(c.busy, 10 + 1 + 5 + 2 + 3 + 7);
        assert_eq!(c.total, c.busy + 100 + 4);
    }

    #[test]
    fn listening_sockets_by_port() {
        assert!(parse_listening(NET_TCP, 0x1451)); // 5201, LISTEN
        assert!(!parse_listening(NET_TCP, 0x9C40)); // 40000, ESTABLISHED only
        assert!(!parse_listening(NET_TCP, 1));
    }

    #[test]
    fn cpu_model_line() {
        let t = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B45\n";
        assert_eq!(parse_cpu_model(t).unwrap(), "AMD EPYC 9B45");
    }

    #[test]
    fn this_process_is_measurable() {
        let me = std::process::id();
        assert!(rss(me).unwrap() > 0);
        assert!(clock_ticks() > 0);
        // Burn CPU until the tick counter moves: the tree's CPU time must grow with it
        // (it reads 0 when /proc/PID/stat cannot be read or parsed).
        let before = tree_cpu_seconds(me);
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while tree_cpu_seconds(me) <= before {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "CPU time of this process never grew past {before} s"
            );
        }
        assert!(tree_cpu_seconds(me) > 0.0);
    }
}
