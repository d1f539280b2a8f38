//! Judging posture: one check against reported data, and the policy rule.
//!
//! Rules as OpenZiti applies them (openziti/ziti `controller/model/posture_check_model_*.go`,
//! `posture_response_manager.go`):
//! - OS: the type matches without regard to case; a type with no versions passes; else
//!   the reported version must be a semantic version inside one of the ranges;
//! - MAC: any reported address is listed; DOMAIN: the domain equals one listed, without
//!   regard to case;
//! - PROCESS and PROCESS_MULTI: the process at that path runs, its hash is listed (when
//!   hashes are given) and a signer is listed (when signers are given); PROCESS_MULTI
//!   `AllOf` asks that of every process, `AnyOf` of one;
//! - MFA: the API session passed a TOTP query, less than `timeoutSeconds` ago (-1: any
//!   time), and, with `promptOnWake`/`promptOnUnlock`, again after a wake/unlock once
//!   the [`PROMPT_GRACE_SECS`] grace after that event has run out;
//! - a service policy passes when **all** its checks pass (no checks: it passes); an
//!   identity may use a service when **any** policy granting it passes.
//!
//! Weft differs in one point: a PROCESS check is matched by the path it names, not by
//! the query id a response carries, so one report of a path serves every check of it.

use semver::Version;

use super::checks::{PostureCheck, ProcessSemantic};
use super::data::{PostureData, SessionPosture};
use super::version_range::VersionRange;

/// Seconds an endpoint has to answer TOTP again after it woke or was unlocked.
pub const PROMPT_GRACE_SECS: i64 = 300;

/// Whether `check` passes for `data` and `session` at `now` (Unix seconds).
pub fn passes(
    check: &PostureCheck,
    data: &PostureData,
    session: &SessionPosture,
    now: i64,
) -> bool {
    match check {
        PostureCheck::Os {
            operating_systems, ..
        } => {
            let Some(os) = &data.os else { return false };
            let os = &os.value;
            operating_systems
                .iter()
                .filter(|want| os_matches(&want.os_type, &os.os_type))
                .any(|want| {
                    want.versions.is_empty()
                        || Version::parse(os.version.trim()).is_ok_and(|v| {
                            want.versions.iter().any(|r| {
                                VersionRange::parse(r).is_ok_and(|range| range.matches(&v))
                            })
                        })
                })
        }
        PostureCheck::Mac { mac_addresses, .. } => data
            .mac
            .as_ref()
            .is_some_and(|m| m.value.iter().any(|a| mac_addresses.contains(a))),
        PostureCheck::Domain { domains, .. } => data.domain.as_ref().is_some_and(|d| {
            !d.value.is_empty() && domains.iter().any(|w| w.eq_ignore_ascii_case(&d.value))
        }),
        PostureCheck::Process { process, .. } => process_passes(
            data,
            &process.path,
            &process.hashes,
            process.signer_fingerprint.as_slice(),
        ),
        PostureCheck::ProcessMulti {
            semantic,
            processes,
            ..
        } => {
            let mut each = processes
                .iter()
                .map(|p| process_passes(data, &p.path, &p.hashes, &p.signer_fingerprints));
            match semantic {
                ProcessSemantic::AllOf => !processes.is_empty() && each.all(|ok| ok),
                ProcessSemantic::AnyOf => each.any(|ok| ok),
            }
        }
        PostureCheck::Mfa {
            timeout_seconds,
            prompt_on_wake,
            prompt_on_unlock,
            ..
        } => {
            let Some(passed) = session.mfa_passed_at else {
                return false;
            };
            if *timeout_seconds > 0 && passed.saturating_add(*timeout_seconds) < now {
                return false;
            }
            // An event after the last TOTP answer asks for a new answer, within the grace.
            let overdue = |event: Option<i64>| {
                event.is_some_and(|at| at > passed && now.saturating_sub(at) > PROMPT_GRACE_SECS)
            };
            !(*prompt_on_wake && overdue(session.woken_at)
                || *prompt_on_unlock && overdue(session.unlocked_at))
        }
    }
}

/// OpenZiti's OS types against what endpoints report: `macOS` endpoints report
/// `darwin` from `uname`, Windows Server ones may report `windowsserver`.
fn os_matches(want: &str, reported: &str) -> bool {
    want.eq_ignore_ascii_case(reported)
        || (want == "macOS" && reported.eq_ignore_ascii_case("darwin"))
}

fn process_passes(data: &PostureData, path: &str, hashes: &[String], signers: &[String]) -> bool {
    data.processes.get(path).is_some_and(|p| {
        let p = &p.value;
        p.is_running
            && (hashes.is_empty() || hashes.contains(&p.hash))
            && (signers.is_empty() || p.signer_fingerprints.iter().any(|s| signers.contains(s)))
    })
}

/// Seconds left before an MFA check times out for `session` (-1: no timeout, or not an
/// MFA check; 0: timed out or never passed).
pub fn timeout_remaining(check: &PostureCheck, session: &SessionPosture, now: i64) -> i64 {
    match check {
        PostureCheck::Mfa {
            timeout_seconds, ..
        } if *timeout_seconds > 0 => session.mfa_passed_at.map_or(0, |passed| {
            passed
                .saturating_add(*timeout_seconds)
                .saturating_sub(now)
                .max(0)
        }),
        _ => -1,
    }
}

/// One check of a policy, judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged<'a> {
    /// Check id.
    pub id: &'a str,
    /// Check name.
    pub name: &'a str,
    /// The check; `None` when its definition is gone or unreadable (it fails).
    pub check: Option<&'a PostureCheck>,
    /// Whether it passes.
    pub passing: bool,
}

/// The checks of one granting service policy, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVerdict<'a> {
    /// Service policy id.
    pub policy_id: &'a str,
    /// Its checks.
    pub checks: Vec<Judged<'a>>,
}

impl PolicyVerdict<'_> {
    /// A policy passes when all its checks pass.
    pub fn passing(&self) -> bool {
        self.checks.iter().all(|c| c.passing)
    }
}

/// Access passes when any granting policy passes (no granting policy: no access).
pub fn any_passing(verdicts: &[PolicyVerdict<'_>]) -> bool {
    verdicts.iter().any(PolicyVerdict::passing)
}

#[cfg(test)]
mod tests {
    use super::super::checks::{OperatingSystem, Process, ProcessMulti};
    use super::super::data::{OsReport, ProcessReport, Reported};
    use super::*;
    use proptest::prelude::*;

    fn reported<T>(value: T) -> Reported<T> {
        Reported {
            posture_check_id: "q".into(),
            at: 0,
            value,
        }
    }

    fn linux(version: &str) -> PostureData {
        PostureData {
            os: Some(reported(OsReport {
                os_type: "Linux".into(),
                version: version.into(),
                build: String::new(),
            })),
            ..PostureData::default()
        }
    }

    fn os_check(os_type: &str, versions: &[&str]) -> PostureCheck {
        PostureCheck::Os {
            role_attributes: vec![],
            operating_systems: vec![OperatingSystem {
                os_type: os_type.into(),
                versions: versions.iter().map(|s| (*s).to_owned()).collect(),
            }],
        }
    }

    fn mfa(timeout: i64, wake: bool, unlock: bool) -> PostureCheck {
        PostureCheck::Mfa {
            role_attributes: vec![],
            timeout_seconds: timeout,
            prompt_on_wake: wake,
            prompt_on_unlock: unlock,
            ignore_legacy_endpoints: false,
        }
    }

    const NONE: SessionPosture = SessionPosture {
        mfa_passed_at: None,
        woken_at: None,
        unlocked_at: None,
    };

    #[test]
    fn os_checks() {
        let s = &NONE;
        assert!(passes(&os_check("Linux", &[]), &linux("whatever"), s, 0));
        assert!(passes(
            &os_check("Linux", &[">=5.0.0"]),
            &linux("6.1.0"),
            s,
            0
        ));
        assert!(!passes(
            &os_check("Linux", &[">=6.2.0"]),
            &linux("6.1.0"),
            s,
            0
        ));
        assert!(!passes(
            &os_check("Linux", &[">=5.0.0"]),
            &linux("not-semver"),
            s,
            0
        ));
        assert!(!passes(&os_check("Windows", &[]), &linux("6.1.0"), s, 0));
        assert!(!passes(
            &os_check("Linux", &[]),
            &PostureData::default(),
            s,
            0
        ));
        let mut lower = linux("6.1.0");
        lower.os.as_mut().unwrap().value.os_type = "linux".into();
        assert!(passes(&os_check("Linux", &[]), &lower, s, 0));
    }

    #[test]
    fn mac_and_domain_checks() {
        let data = PostureData {
            mac: Some(reported(vec!["aabbccddeeff".into()])),
            domain: Some(reported("CORP.example".into())),
            ..PostureData::default()
        };
        let mac = |m: &str| PostureCheck::Mac {
            role_attributes: vec![],
            mac_addresses: vec![m.into()],
        };
        assert!(passes(&mac("aabbccddeeff"), &data, &NONE, 0));
        assert!(!passes(&mac("001122334455"), &data, &NONE, 0));
        let dom = |d: &str| PostureCheck::Domain {
            role_attributes: vec![],
            domains: vec![d.into()],
        };
        assert!(passes(&dom("corp.EXAMPLE"), &data, &NONE, 0));
        assert!(!passes(&dom("other"), &data, &NONE, 0));
    }

    #[test]
    fn process_checks() {
        let mut data = PostureData::default();
        data.processes.insert(
            "/usr/bin/agent".into(),
            reported(ProcessReport {
                is_running: true,
                hash: "abc".into(),
                signer_fingerprints: vec!["f1".into()],
            }),
        );
        data.processes.insert(
            "/usr/bin/stopped".into(),
            reported(ProcessReport::default()),
        );
        let single = |path: &str, hashes: &[&str], signer: Option<&str>| PostureCheck::Process {
            role_attributes: vec![],
            process: Process {
                os_type: "Linux".into(),
                path: path.into(),
                hashes: hashes.iter().map(|s| (*s).to_owned()).collect(),
                signer_fingerprint: signer.map(str::to_owned),
            },
        };
        assert!(passes(
            &single("/usr/bin/agent", &[], None),
            &data,
            &NONE,
            0
        ));
        assert!(passes(
            &single("/usr/bin/agent", &["abc"], Some("f1")),
            &data,
            &NONE,
            0
        ));
        assert!(!passes(
            &single("/usr/bin/agent", &["def"], None),
            &data,
            &NONE,
            0
        ));
        assert!(!passes(
            &single("/usr/bin/agent", &[], Some("f2")),
            &data,
            &NONE,
            0
        ));
        assert!(!passes(
            &single("/usr/bin/stopped", &[], None),
            &data,
            &NONE,
            0
        ));
        assert!(!passes(
            &single("/usr/bin/absent", &[], None),
            &data,
            &NONE,
            0
        ));
        let multi = |semantic, paths: &[&str]| PostureCheck::ProcessMulti {
            role_attributes: vec![],
            semantic,
            processes: paths
                .iter()
                .map(|p| ProcessMulti {
                    os_type: "Linux".into(),
                    path: (*p).to_owned(),
                    hashes: vec![],
                    signer_fingerprints: vec![],
                })
                .collect(),
        };
        let both = ["/usr/bin/agent", "/usr/bin/stopped"];
        assert!(!passes(
            &multi(ProcessSemantic::AllOf, &both),
            &data,
            &NONE,
            0
        ));
        assert!(passes(
            &multi(ProcessSemantic::AnyOf, &both),
            &data,
            &NONE,
            0
        ));
        assert!(passes(
            &multi(ProcessSemantic::AllOf, &both[..1]),
            &data,
            &NONE,
            0
        ));
        assert!(!passes(
            &multi(ProcessSemantic::AllOf, &[]),
            &data,
            &NONE,
            0
        ));
    }

    #[test]
    fn mfa_checks_time_out_and_prompt_after_wake_and_unlock() {
        let passed = SessionPosture {
            mfa_passed_at: Some(1000),
            ..NONE
        };
        assert!(!passes(
            &mfa(-1, false, false),
            &PostureData::default(),
            &NONE,
            1000
        ));
        assert!(passes(
            &mfa(-1, false, false),
            &PostureData::default(),
            &passed,
            99_999
        ));
        assert!(passes(
            &mfa(60, false, false),
            &PostureData::default(),
            &passed,
            1060
        ));
        assert!(!passes(
            &mfa(60, false, false),
            &PostureData::default(),
            &passed,
            1061
        ));
        assert_eq!(timeout_remaining(&mfa(60, false, false), &passed, 1050), 10);
        assert_eq!(timeout_remaining(&mfa(60, false, false), &passed, 2000), 0);
        assert_eq!(timeout_remaining(&mfa(-1, false, false), &passed, 2000), -1);
        let woke = SessionPosture {
            woken_at: Some(2000),
            ..passed
        };
        let d = PostureData::default();
        assert!(passes(
            &mfa(-1, true, false),
            &d,
            &woke,
            2000 + PROMPT_GRACE_SECS
        ));
        assert!(!passes(
            &mfa(-1, true, false),
            &d,
            &woke,
            2001 + PROMPT_GRACE_SECS
        ));
        assert!(
            passes(&mfa(-1, false, true), &d, &woke, 9999),
            "only wake prompts"
        );
        // A TOTP answer after the wake settles it.
        let answered = SessionPosture {
            mfa_passed_at: Some(2100),
            ..woke
        };
        assert!(passes(&mfa(-1, true, false), &d, &answered, 9999));
    }

    #[test]
    fn the_policy_rule() {
        let check = os_check("Linux", &[]);
        let j = |passing| Judged {
            id: "c",
            name: "c",
            check: Some(&check),
            passing,
        };
        let verdict = |checks| PolicyVerdict {
            policy_id: "p",
            checks,
        };
        assert!(verdict(vec![]).passing(), "a policy without checks passes");
        assert!(!verdict(vec![j(true), j(false)]).passing());
        assert!(any_passing(&[
            verdict(vec![j(false)]),
            verdict(vec![j(true)])
        ]));
        assert!(!any_passing(&[verdict(vec![j(false)])]));
        assert!(!any_passing(&[]), "no granting policy, no access");
    }

    proptest! {
        /// An MFA check with a timeout passes exactly while time is left.
        #[test]
        fn mfa_timeout_agrees_with_remaining(passed in 0i64..1_000_000, timeout in 1i64..100_000, dt in 0i64..200_000) {
            let s = SessionPosture { mfa_passed_at: Some(passed), ..NONE };
            let c = mfa(timeout, false, false);
            let now = passed + dt;
            let ok = passes(&c, &PostureData::default(), &s, now);
            prop_assert_eq!(ok, dt <= timeout);
            prop_assert_eq!(timeout_remaining(&c, &s, now), (timeout - dt).max(0));
        }
    }
}
