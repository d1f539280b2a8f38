//! Answering posture queries: the controller lists, with each service, the posture
//! checks its policies ask for (`postureQueries`); the SDK reports what this host is
//! (operating system, MAC addresses, domain, running processes) so that the checks can
//! pass, and reports again whenever the answer changes, so that the controller can
//! withdraw access when the host stops passing.
//!
//! As the OpenZiti C SDK 0.29 does (`library/posture.c`): one OS, MAC and DOMAIN
//! response each, answering a query of that type; one `PROCESS` response per distinct
//! path (PROCESS_MULTI queries included), with the SHA-512 of the executable; everything
//! in one `POST /posture-response-bulk`. MFA queries are answered by logging in with a
//! TOTP code ([`crate::Options::with_mfa_codes`]), not by a posture response.
//!
//! [`responses`] is pure (host facts in, JSON out); [`LinuxHost`] reads the facts from
//! `/proc` and `/sys`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

/// The posture queries of one service policy, as `/services` lists them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PostureQuerySet {
    /// The service policy.
    pub policy_id: String,
    /// `Dial` or `Bind`.
    #[serde(default)]
    pub policy_type: String,
    /// Whether every query of the set passes now.
    pub is_passing: bool,
    /// The queries.
    #[serde(default)]
    pub posture_queries: Vec<PostureQuery>,
}

/// One posture query.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PostureQuery {
    /// The posture check's id (what a response names).
    pub id: String,
    /// `OS`, `MAC`, `DOMAIN`, `PROCESS`, `PROCESS_MULTI` or `MFA`.
    pub query_type: String,
    /// Whether it passes now.
    pub is_passing: bool,
    /// PROCESS: the process asked about.
    #[serde(default)]
    pub process: Option<QueryProcess>,
    /// PROCESS_MULTI: the processes asked about.
    #[serde(default)]
    pub processes: Vec<QueryProcess>,
    /// MFA: seconds a TOTP answer counts (-1: no limit).
    #[serde(default)]
    pub timeout: i64,
    /// MFA: seconds left (-1: no limit).
    #[serde(default)]
    pub timeout_remaining: i64,
}

/// A process a query names.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QueryProcess {
    /// Path of the executable.
    pub path: String,
}

/// What a posture response reports about a process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessFacts {
    /// Whether a process runs that executable.
    pub is_running: bool,
    /// SHA-512 of the executable, lower-case hex (empty when unreadable).
    pub hash: String,
}

/// The host facts posture responses report.
pub trait HostFacts {
    /// `(type, version, build)`: `Linux`, the kernel release, its build string.
    fn os(&self) -> (String, String, String);
    /// MAC addresses of the network interfaces (loopback and all-zero left out).
    fn mac_addresses(&self) -> Vec<String>;
    /// The (NIS/Windows) domain, empty when none.
    fn domain(&self) -> String;
    /// Facts about the executable at `path`.
    fn process(&mut self, path: &str) -> ProcessFacts;
}

/// The responses answering every query of `sets` (sorted by type and path, so equal
/// facts give equal bodies).
pub fn responses(sets: &[PostureQuerySet], host: &mut dyn HostFacts) -> Vec<Value> {
    // The id of one query of each type answers it; every path of PROCESS and
    // PROCESS_MULTI queries gets a response (under the id of a query naming it).
    let mut first_of: BTreeMap<&str, &str> = BTreeMap::new();
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    for q in sets.iter().flat_map(|s| &s.posture_queries) {
        first_of.entry(q.query_type.as_str()).or_insert(&q.id);
        for p in q.process.iter().chain(&q.processes) {
            paths.entry(p.path.clone()).or_insert_with(|| q.id.clone());
        }
    }
    let mut out = Vec::new();
    if let Some(id) = first_of.get("OS") {
        let (os_type, version, build) = host.os();
        out.push(
            json!({"id": id, "typeId": "OS", "type": os_type, "version": version, "build": build}),
        );
    }
    if let Some(id) = first_of.get("MAC") {
        out.push(json!({"id": id, "typeId": "MAC", "macAddresses": host.mac_addresses()}));
    }
    if let Some(id) = first_of.get("DOMAIN") {
        out.push(json!({"id": id, "typeId": "DOMAIN", "domain": host.domain()}));
    }
    for (path, id) in paths {
        let facts = host.process(&path);
        out.push(json!({"id": id, "typeId": "PROCESS", "path": path,
            "isRunning": facts.is_running, "hash": facts.hash, "signerFingerprints": []}));
    }
    out
}

/// The facts of the Linux host this runs on.
#[derive(Debug, Default)]
pub struct LinuxHost {
    /// Hashes by path, with the size and modification time they were computed for.
    hashes: BTreeMap<PathBuf, (u64, std::time::SystemTime, String)>,
}

/// Largest executable hashed (a bigger one reports no hash).
const MAX_HASHED: u64 = 512 << 20;

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl LinuxHost {
    fn hash_of(&mut self, path: &Path) -> String {
        let Ok(meta) = std::fs::metadata(path) else {
            return String::new();
        };
        let (len, mtime) = (meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH));
        if let Some((l, m, h)) = self.hashes.get(path) {
            if *l == len && *m == mtime {
                return h.clone();
            }
        }
        if len > MAX_HASHED {
            return String::new();
        }
        let Ok(bytes) = std::fs::read(path) else {
            return String::new();
        };
        let hash: String = Sha512::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.hashes
            .insert(path.to_owned(), (len, mtime, hash.clone()));
        hash
    }
}

impl HostFacts for LinuxHost {
    fn os(&self) -> (String, String, String) {
        (
            "Linux".into(),
            read_trimmed("/proc/sys/kernel/osrelease"),
            read_trimmed("/proc/sys/kernel/version"),
        )
    }

    fn mac_addresses(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        if let Ok(dir) = std::fs::read_dir("/sys/class/net") {
            for e in dir.flatten() {
                let mac = read_trimmed(&format!("{}/address", e.path().display()));
                let zero = mac.chars().all(|c| c == '0' || c == ':');
                if !mac.is_empty() && !zero {
                    out.insert(mac);
                }
            }
        }
        out.into_iter().collect()
    }

    fn domain(&self) -> String {
        let d = read_trimmed("/proc/sys/kernel/domainname");
        if d == "(none)" { String::new() } else { d }
    }

    fn process(&mut self, path: &str) -> ProcessFacts {
        let want = Path::new(path);
        let is_running = std::fs::read_dir("/proc").is_ok_and(|dir| {
            dir.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .any(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|exe| exe == want))
        });
        ProcessFacts {
            is_running,
            hash: self.hash_of(want),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;

    impl HostFacts for Fake {
        fn os(&self) -> (String, String, String) {
            ("Linux".into(), "6.1.0".into(), "#1".into())
        }
        fn mac_addresses(&self) -> Vec<String> {
            vec!["aa:bb:cc:dd:ee:ff".into()]
        }
        fn domain(&self) -> String {
            String::new()
        }
        fn process(&mut self, path: &str) -> ProcessFacts {
            ProcessFacts {
                is_running: path == "/bin/agent",
                hash: "h".into(),
            }
        }
    }

    fn query(id: &str, ty: &str, paths: &[&str]) -> PostureQuery {
        PostureQuery {
            id: id.into(),
            query_type: ty.into(),
            processes: paths
                .iter()
                .map(|p| QueryProcess { path: (*p).into() })
                .collect(),
            ..PostureQuery::default()
        }
    }

    #[test]
    fn one_response_per_type_and_per_path() {
        let sets = vec![
            PostureQuerySet {
                policy_id: "p1".into(),
                posture_queries: vec![
                    query("os1", "OS", &[]),
                    query("m", "PROCESS_MULTI", &["/bin/agent", "/bin/other"]),
                    query("mfa", "MFA", &[]),
                ],
                ..PostureQuerySet::default()
            },
            PostureQuerySet {
                policy_id: "p2".into(),
                posture_queries: vec![query("os2", "OS", &[]), query("mac", "MAC", &[])],
                ..PostureQuerySet::default()
            },
        ];
        let r = responses(&sets, &mut Fake);
        assert_eq!(r.len(), 4, "{r:?}");
        assert_eq!(
            r[0],
            json!({"id": "os1", "typeId": "OS", "type": "Linux", "version": "6.1.0", "build": "#1"})
        );
        assert_eq!(r[1]["typeId"], "MAC");
        assert_eq!(r[2]["path"], "/bin/agent");
        assert_eq!(r[2]["isRunning"], true);
        assert_eq!(r[3]["path"], "/bin/other");
        assert_eq!(r[3]["isRunning"], false);
        assert!(responses(&[], &mut Fake).is_empty());
    }

    #[test]
    fn this_host_reports_linux_and_its_own_process() {
        let mut host = LinuxHost::default();
        let (os, version, _) = host.os();
        assert_eq!(os, "Linux");
        assert!(!version.is_empty());
        let me = std::env::current_exe().unwrap();
        let facts = host.process(me.to_str().unwrap());
        assert!(facts.is_running, "the test binary runs");
        assert_eq!(facts.hash.len(), 128);
        assert!(!host.process("/nonexistent/binary").is_running);
    }
}
