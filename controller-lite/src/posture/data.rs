//! Posture responses (`POST /posture-response`, `/posture-response-bulk`) and the
//! posture data they build up for an identity.
//!
//! Shapes from openziti/edge-api `source/client/posture-response.yml` (`postureResponseCreate`:
//! `id` and `typeId` required; OS `type`, `version`, `build`; MAC `macAddresses`; DOMAIN
//! `domain`; PROCESS `path`, `isRunning`, `hash`, `signerFingerprints`; `ENDPOINT_STATE`
//! `woken`, `unlocked`) and what the OpenZiti C SDK 0.29 sends (`library/posture.c`:
//! `hash` is the SHA-512 of the executable; one PROCESS response per path, also for
//! PROCESS_MULTI queries).
//!
//! OpenZiti keeps posture data in one controller's memory; Weft stores it in the database,
//! so every controller of a cluster judges the same data and a restart keeps it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::checks::{MAX_LIST, MAX_TEXT, normalize_mac};
use crate::error::ApiError;

/// Most responses in one bulk request.
pub const MAX_BULK: usize = 64;
/// Most process paths remembered for one identity (the oldest report goes first).
pub const MAX_PROCESSES: usize = 128;

/// One validated posture response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostureResponse {
    /// The operating system.
    Os {
        /// Id of the query answered.
        id: String,
        /// `type` (e.g. `Linux`, `Windows`).
        os_type: String,
        /// Version (a semantic version for OS checks to pass).
        version: String,
        /// Build, free text.
        build: String,
    },
    /// Network interface addresses.
    Mac {
        /// Id of the query answered.
        id: String,
        /// Addresses, normalised to 12 lower-case hex digits; unparsable ones dropped.
        mac_addresses: Vec<String>,
    },
    /// Windows domain.
    Domain {
        /// Id of the query answered.
        id: String,
        /// Domain name (empty: none).
        domain: String,
    },
    /// One process.
    Process {
        /// Id of the query answered.
        id: String,
        /// Path of the executable.
        path: String,
        /// Whether it runs.
        is_running: bool,
        /// SHA-512 of the executable, lower-case hex.
        hash: String,
        /// Fingerprints of the certificates that signed it, lower-case.
        signer_fingerprints: Vec<String>,
    },
    /// The endpoint woke or was unlocked (a state of the API session, not the identity).
    EndpointState {
        /// The endpoint woke from sleep.
        woken: bool,
        /// The endpoint was unlocked.
        unlocked: bool,
    },
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::CouldNotValidate(msg.into())
}

fn field<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn string(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    required: bool,
) -> Result<String, ApiError> {
    match field(obj, key) {
        None if required => Err(invalid(format!("{key} is required"))),
        None => Ok(String::new()),
        Some(Value::String(s)) if s.len() <= MAX_TEXT => Ok(s.clone()),
        Some(Value::String(_)) => Err(invalid(format!("{key} is too long"))),
        Some(_) => Err(invalid(format!("{key} must be a string"))),
    }
}

fn boolean(obj: &serde_json::Map<String, Value>, key: &str) -> Result<bool, ApiError> {
    match field(obj, key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(format!("{key} must be a boolean"))),
    }
}

fn strings(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Vec<String>, ApiError> {
    match field(obj, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) if a.len() <= MAX_LIST => a
            .iter()
            .map(|v| match v {
                Value::String(s) if s.len() <= MAX_TEXT => Ok(s.clone()),
                _ => Err(invalid(format!("{key} must hold short strings"))),
            })
            .collect(),
        Some(Value::Array(_)) => Err(invalid(format!("{key}: at most {MAX_LIST} entries"))),
        Some(_) => Err(invalid(format!("{key} must be an array"))),
    }
}

impl PostureResponse {
    /// Validates one response object. Fields OpenZiti's spec does not define are
    /// ignored (as its server does); missing `id`/`typeId`, an unknown `typeId` or a
    /// field of the wrong type is 400 `COULD_NOT_VALIDATE`.
    pub fn parse(v: &Value) -> Result<Self, ApiError> {
        let Value::Object(obj) = v else {
            return Err(invalid("a posture response must be a JSON object"));
        };
        let id = string(obj, "id", true)?;
        let type_id = string(obj, "typeId", true)?;
        if id.is_empty() {
            return Err(invalid("id must not be empty"));
        }
        Ok(match type_id.as_str() {
            "OS" => Self::Os {
                id,
                os_type: string(obj, "type", true)?,
                version: string(obj, "version", true)?,
                build: string(obj, "build", false)?,
            },
            "MAC" => {
                if field(obj, "macAddresses").is_none() {
                    return Err(invalid("macAddresses is required"));
                }
                Self::Mac {
                    id,
                    mac_addresses: strings(obj, "macAddresses")?
                        .iter()
                        .filter_map(|m| normalize_mac(m))
                        .collect(),
                }
            }
            "DOMAIN" => Self::Domain {
                id,
                domain: string(obj, "domain", true)?,
            },
            "PROCESS" | "PROCESS_MULTI" => {
                let path = string(obj, "path", true)?;
                if path.is_empty() {
                    return Err(invalid("path must not be empty"));
                }
                Self::Process {
                    id,
                    path,
                    is_running: boolean(obj, "isRunning")?,
                    hash: string(obj, "hash", false)?.to_ascii_lowercase(),
                    signer_fingerprints: strings(obj, "signerFingerprints")?
                        .into_iter()
                        .map(|s| s.to_ascii_lowercase())
                        .collect(),
                }
            }
            "ENDPOINT_STATE" => Self::EndpointState {
                woken: boolean(obj, "woken")?,
                unlocked: boolean(obj, "unlocked")?,
            },
            other => {
                return Err(invalid(format!(
                    "typeId {other:?} is not one of OS, MAC, DOMAIN, PROCESS, ENDPOINT_STATE"
                )));
            }
        })
    }

    /// Validates a bulk body: an array of at most [`MAX_BULK`] responses.
    pub fn parse_bulk(v: &Value) -> Result<Vec<Self>, ApiError> {
        let Value::Array(items) = v else {
            return Err(invalid("the body must be an array of posture responses"));
        };
        if items.len() > MAX_BULK {
            return Err(invalid(format!(
                "at most {MAX_BULK} posture responses per request"
            )));
        }
        items.iter().map(Self::parse).collect()
    }
}

/// One reported value with the query it answered and when (Unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reported<T> {
    /// Id of the query answered.
    pub posture_check_id: String,
    /// When it was reported.
    pub at: i64,
    /// The value.
    pub value: T,
}

/// The reported operating system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsReport {
    /// `type`.
    #[serde(rename = "type")]
    pub os_type: String,
    /// `version`.
    pub version: String,
    /// `build`.
    pub build: String,
}

/// A reported process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessReport {
    /// Whether it runs.
    pub is_running: bool,
    /// SHA-512 of the executable, lower-case hex.
    pub hash: String,
    /// Signer fingerprints, lower-case.
    pub signer_fingerprints: Vec<String>,
}

/// What an identity's endpoints reported (the latest report of each kind wins).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostureData {
    /// Operating system.
    #[serde(default)]
    pub os: Option<Reported<OsReport>>,
    /// MAC addresses.
    #[serde(default)]
    pub mac: Option<Reported<Vec<String>>>,
    /// Domain.
    #[serde(default)]
    pub domain: Option<Reported<String>>,
    /// Processes by path.
    #[serde(default)]
    pub processes: BTreeMap<String, Reported<ProcessReport>>,
}

/// The API-session part of posture: when MFA was last passed, when the endpoint last
/// woke or was unlocked (Unix seconds; `None`: never).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionPosture {
    /// The API session answered a TOTP query at this time.
    pub mfa_passed_at: Option<i64>,
    /// The endpoint last woke at this time.
    pub woken_at: Option<i64>,
    /// The endpoint was last unlocked at this time.
    pub unlocked_at: Option<i64>,
}

impl PostureData {
    /// Applies an identity-level response received at `now`; returns whether anything
    /// changed (an identical report only refreshes nothing, so it costs no write).
    /// `ENDPOINT_STATE` belongs to the API session and changes nothing here.
    pub fn apply(&mut self, r: &PostureResponse, now: i64) -> bool {
        fn set<T: PartialEq>(slot: &mut Option<Reported<T>>, id: &str, value: T, now: i64) -> bool {
            let same = slot
                .as_ref()
                .is_some_and(|s| s.value == value && s.posture_check_id == id);
            if !same {
                *slot = Some(Reported {
                    posture_check_id: id.to_owned(),
                    at: now,
                    value,
                });
            }
            !same
        }
        match r {
            PostureResponse::Os {
                id,
                os_type,
                version,
                build,
            } => set(
                &mut self.os,
                id,
                OsReport {
                    os_type: os_type.clone(),
                    version: version.clone(),
                    build: build.clone(),
                },
                now,
            ),
            PostureResponse::Mac { id, mac_addresses } => {
                set(&mut self.mac, id, mac_addresses.clone(), now)
            }
            PostureResponse::Domain { id, domain } => {
                set(&mut self.domain, id, domain.clone(), now)
            }
            PostureResponse::Process {
                id,
                path,
                is_running,
                hash,
                signer_fingerprints,
            } => {
                let value = ProcessReport {
                    is_running: *is_running,
                    hash: hash.clone(),
                    signer_fingerprints: signer_fingerprints.clone(),
                };
                let mut slot = self.processes.remove(path);
                let changed = set(&mut slot, id, value, now);
                if let Some(s) = slot {
                    self.processes.insert(path.clone(), s);
                }
                while self.processes.len() > MAX_PROCESSES {
                    // Bounded: the least recently reported path goes.
                    let oldest = self
                        .processes
                        .iter()
                        .min_by_key(|(_, r)| r.at)
                        .map(|(p, _)| p.clone());
                    match oldest {
                        Some(p) => self.processes.remove(&p),
                        None => break,
                    };
                }
                changed
            }
            PostureResponse::EndpointState { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn responses_parse() {
        let r = PostureResponse::parse(&json!({"id": "q1", "typeId": "OS",
            "type": "Linux", "version": "6.1.0", "build": "#1", "extra": true}))
        .unwrap();
        assert!(matches!(r, PostureResponse::Os { ref os_type, .. } if os_type == "Linux"));
        let r = PostureResponse::parse(&json!({"id": "q2", "typeId": "MAC",
            "macAddresses": ["AA:BB:CC:DD:EE:FF", "junk"]}))
        .unwrap();
        assert_eq!(
            r,
            PostureResponse::Mac {
                id: "q2".into(),
                mac_addresses: vec!["aabbccddeeff".into()]
            }
        );
        let r =
            PostureResponse::parse(&json!({"id": "0", "typeId": "ENDPOINT_STATE", "woken": true}))
                .unwrap();
        assert_eq!(
            r,
            PostureResponse::EndpointState {
                woken: true,
                unlocked: false
            }
        );
    }

    #[test]
    fn bad_responses_are_refused() {
        for bad in [
            json!(null),
            json!([]),
            json!({"typeId": "OS", "type": "Linux", "version": "1"}),
            json!({"id": "x", "type": "Linux"}),
            json!({"id": "", "typeId": "DOMAIN", "domain": "d"}),
            json!({"id": "x", "typeId": "NOPE"}),
            json!({"id": "x", "typeId": "OS", "type": 3, "version": "1"}),
            json!({"id": "x", "typeId": "MAC"}),
            json!({"id": "x", "typeId": "MAC", "macAddresses": "aa"}),
            json!({"id": "x", "typeId": "PROCESS", "path": ""}),
            json!({"id": "x", "typeId": "PROCESS", "path": "/p", "isRunning": "yes"}),
            json!({"id": "x", "typeId": "DOMAIN", "domain": "d".repeat(5000)}),
        ] {
            let e = PostureResponse::parse(&bad).unwrap_err();
            assert_eq!(e.code(), "COULD_NOT_VALIDATE", "{bad}");
        }
        let many: Vec<Value> = (0..=MAX_BULK)
            .map(|_| json!({"id": "x", "typeId": "DOMAIN", "domain": "d"}))
            .collect();
        assert!(PostureResponse::parse_bulk(&Value::Array(many)).is_err());
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            prop::sample::select(vec![
                "id",
                "typeId",
                "OS",
                "MAC",
                "DOMAIN",
                "PROCESS",
                "ENDPOINT_STATE",
                "x",
                "",
            ])
            .prop_map(|s| json!(s)),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            let keys = prop::sample::select(vec![
                "id",
                "typeId",
                "type",
                "version",
                "build",
                "macAddresses",
                "domain",
                "path",
                "isRunning",
                "hash",
                "signerFingerprints",
                "woken",
                "unlocked",
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..8).prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest::proptest! {
        /// Any JSON is either a valid response or a 400, never a panic; what parses
        /// applies to posture data without a panic either.
        #[test]
        fn any_json_parses_or_is_refused(v in json_value()) {
            let mut d = PostureData::default();
            for r in PostureResponse::parse(&v).into_iter().chain(PostureResponse::parse_bulk(&v).unwrap_or_default()) {
                d.apply(&r, 1);
            }
            if let Err(e) = PostureResponse::parse(&v) {
                proptest::prop_assert_eq!(e.code(), "COULD_NOT_VALIDATE");
            }
        }
    }

    #[test]
    fn applying_reports_changes_only_what_differs_and_stays_bounded() {
        let mut d = PostureData::default();
        let dom = PostureResponse::Domain {
            id: "q".into(),
            domain: "corp".into(),
        };
        assert!(d.apply(&dom, 1));
        assert!(!d.apply(&dom, 2), "the same report is no change");
        assert_eq!(d.domain.as_ref().unwrap().at, 1);
        for i in 0..(MAX_PROCESSES + 10) {
            let p = PostureResponse::Process {
                id: "q".into(),
                path: format!("/bin/p{i}"),
                is_running: true,
                hash: String::new(),
                signer_fingerprints: vec![],
            };
            d.apply(&p, i64::try_from(i).unwrap());
        }
        assert_eq!(d.processes.len(), MAX_PROCESSES);
        assert!(!d.processes.contains_key("/bin/p0"));
        assert!(
            d.processes
                .contains_key(&format!("/bin/p{}", MAX_PROCESSES + 9))
        );
    }
}
