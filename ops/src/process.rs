//! Process and build-information metrics, in Prometheus text, read from `/proc/self`
//! on Linux (elsewhere only the build information): the standard `process_*` series
//! of Prometheus client libraries, and `weft_build_info`.

use std::fmt::Write as _;

/// Kernel clock ticks per second for `/proc/self/stat` times (`USER_HZ`, 100 on every
/// Linux architecture Weft builds for).
const TICKS_PER_SECOND: f64 = 100.0;

/// Appends `weft_build_info{component,version}` and the process series to `out`.
pub fn render(out: &mut String, component: &str) {
    let version = env!("CARGO_PKG_VERSION");
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "# HELP weft_build_info The running build (always 1).\n# TYPE weft_build_info gauge\n\
         weft_build_info{{component=\"{component}\",version=\"{version}\"}} 1"
    );
    if let Some(p) = Process::read() {
        p.render(out);
    }
}

/// What `/proc/self` says about this process.
#[derive(Debug, Default, Clone, PartialEq)]
struct Process {
    cpu_seconds: f64,
    start_time_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    threads: u64,
    open_fds: u64,
    max_fds: Option<u64>,
}

impl Process {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        Self::parse(&stat, &status, &boot, &limits, open_fds)
    }

    /// From the texts of `/proc/self/stat`, `/proc/self/status`, `/proc/stat` and
    /// `/proc/self/limits`.
    fn parse(stat: &str, status: &str, boot: &str, limits: &str, open_fds: u64) -> Option<Self> {
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        let after = stat.get(stat.rfind(')')? + 1..)?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        // proc(5): utime is field 14, stime 15, starttime 22; `after` starts at field 3.
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let cpu_ticks = field(14)? + field(15)?;
        let start_ticks = field(22)?;
        let boot_time = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let max_fds = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok());
        Some(Self {
            cpu_seconds: cpu_ticks as f64 / TICKS_PER_SECOND,
            start_time_seconds: boot_time as f64 + start_ticks as f64 / TICKS_PER_SECOND,
            resident_bytes: kib("VmRSS:").unwrap_or(0) * 1024,
            virtual_bytes: kib("VmSize:").unwrap_or(0) * 1024,
            threads: kib("Threads:").unwrap_or(0),
            open_fds,
            max_fds,
        })
    }

    fn render(&self, out: &mut String) {
        let series: [(&str, &str, &str, String); 6] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time spent, in seconds.",
                self.cpu_seconds.to_string(),
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since the Unix epoch, in seconds.",
                self.start_time_seconds.to_string(),
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size, in bytes.",
                self.resident_bytes.to_string(),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size, in bytes.",
                self.virtual_bytes.to_string(),
            ),
            (
                "process_threads",
                "gauge",
                "Threads of the process.",
                self.threads.to_string(),
            ),
            (
                "process_open_fds",
                "gauge",
                "Open file descriptors.",
                self.open_fds.to_string(),
            ),
        ];
        for (name, kind, help, value) in series {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        if let Some(max) = self.max_fds {
            let _ = writeln!(
                out,
                "# HELP process_max_fds Limit of open file descriptors.\n\
                 # TYPE process_max_fds gauge\nprocess_max_fds {max}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_texts_parse_into_the_process_series() {
        let stat = "4242 (weft (router)) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 50 0 0 20 0 9 0 12345 1000000 2000 18446744073709551615";
        let status = "Name:\tweft\nVmSize:\t  204800 kB\nVmRSS:\t   10240 kB\nThreads:\t9\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 1048576              files\n";
        let p = Process::parse(stat, status, boot, limits, 17).unwrap();
        assert_eq!(
            p,
            Process {
                cpu_seconds: 3.0,
                start_time_seconds: 1_700_000_123.45,
                resident_bytes: 10 * 1024 * 1024,
                virtual_bytes: 200 * 1024 * 1024,
                threads: 9,
                open_fds: 17,
                max_fds: Some(1024),
            }
        );
        let mut out = String::new();
        p.render(&mut out);
        assert!(out.contains("\nprocess_cpu_seconds_total 3\n"), "{out}");
        assert!(out.contains("\nprocess_max_fds 1024\n"), "{out}");
    }

    #[test]
    fn this_process_reads_and_renders() {
        let mut out = String::new();
        render(&mut out, "test");
        assert!(
            out.contains("weft_build_info{component=\"test\",version=\""),
            "{out}"
        );
        if cfg!(target_os = "linux") {
            assert!(out.contains("process_resident_memory_bytes "), "{out}");
            assert!(out.contains("process_open_fds "), "{out}");
        }
    }

    #[test]
    fn truncated_proc_texts_give_nothing_rather_than_a_panic() {
        assert_eq!(Process::parse("", "", "", "", 0), None);
        assert_eq!(Process::parse("1 (x) S 1", "", "btime 5", "", 0), None);
    }
}
