//! Posture check documents (`/posture-checks`), one variant per `typeId`, with the
//! validation and normalisation OpenZiti applies on create and update
//! (openziti/edge-api `source/management/posture-checks.yml`; openziti/ziti
//! `controller/model/posture_check_model_*.go`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::version_range::VersionRange;
use crate::error::ApiError;

/// Most entries in any list of a check (operating systems, versions, MAC addresses,
/// domains, processes, hashes, signers).
pub const MAX_LIST: usize = 256;
/// Longest text field of a check.
pub const MAX_TEXT: usize = 1024;

/// The operating system types a check may name (`osType` in OpenZiti's spec).
pub const OS_TYPES: [&str; 6] = [
    "Windows",
    "WindowsServer",
    "Android",
    "iOS",
    "Linux",
    "macOS",
];

/// A posture check document, tagged by `typeId`. Every variant carries the check's
/// `roleAttributes`; `name` and `tags` are kept beside it, as for every entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "typeId", deny_unknown_fields, rename_all_fields = "camelCase")]
pub enum PostureCheck {
    /// The endpoint runs one of these operating systems (and versions).
    #[serde(rename = "OS")]
    Os {
        /// Role attributes.
        #[serde(default)]
        role_attributes: Vec<String>,
        /// Accepted systems; at least one.
        operating_systems: Vec<OperatingSystem>,
    },
    /// The endpoint has one of these MAC addresses.
    #[serde(rename = "MAC")]
    Mac {
        /// Role attributes.
        #[serde(default)]
        role_attributes: Vec<String>,
        /// Accepted addresses, stored as 12 lower-case hex digits; at least one.
        mac_addresses: Vec<String>,
    },
    /// The endpoint is joined to one of these (Windows) domains.
    #[serde(rename = "DOMAIN")]
    Domain {
        /// Role attributes.
        #[serde(default)]
        role_attributes: Vec<String>,
        /// Accepted domains (compared without regard to case); at least one.
        domains: Vec<String>,
    },
    /// A process runs on the endpoint.
    #[serde(rename = "PROCESS")]
    Process {
        /// Role attributes.
        #[serde(default)]
        role_attributes: Vec<String>,
        /// The process.
        process: Process,
    },
    /// All, or any, of several processes run on the endpoint.
    #[serde(rename = "PROCESS_MULTI")]
    ProcessMulti {
        /// Role attributes.
        #[serde(default)]
        role_attributes: Vec<String>,
        /// `AllOf` or `AnyOf`.
        semantic: ProcessSemantic,
        /// The processes; at least one.
        processes: Vec<ProcessMulti>,
    },
    /// The API session answered a TOTP query (recently enough).
    #[serde(rename = "MFA")]
    Mfa {
        /// Role attributes.
        #[serde(default)]
        role_attributes: Vec<String>,
        /// Seconds a TOTP answer counts; -1 (or any value ≤ 0 on input): for the whole
        /// API session.
        #[serde(default = "no_timeout")]
        timeout_seconds: i64,
        /// After the endpoint wakes, ask again.
        #[serde(default)]
        prompt_on_wake: bool,
        /// After the endpoint is unlocked, ask again.
        #[serde(default)]
        prompt_on_unlock: bool,
        /// Report no timeout to clients too old to prompt (only what is reported differs).
        #[serde(default)]
        ignore_legacy_endpoints: bool,
    },
}

fn no_timeout() -> i64 {
    -1
}

/// One operating system of an OS check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatingSystem {
    /// One of [`OS_TYPES`].
    #[serde(rename = "type")]
    pub os_type: String,
    /// Version ranges ([`VersionRange`]); empty: any version.
    #[serde(default)]
    pub versions: Vec<String>,
}

/// The process of a PROCESS check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Process {
    /// One of [`OS_TYPES`].
    pub os_type: String,
    /// Path of the executable.
    pub path: String,
    /// Accepted SHA-512 hashes of the executable (lower-case hex); empty: any.
    #[serde(default)]
    pub hashes: Vec<String>,
    /// Fingerprint of the certificate that must have signed the executable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_fingerprint: Option<String>,
}

/// One process of a PROCESS_MULTI check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProcessMulti {
    /// One of [`OS_TYPES`].
    pub os_type: String,
    /// Path of the executable.
    pub path: String,
    /// Accepted SHA-512 hashes (lower-case hex); empty: any.
    #[serde(default)]
    pub hashes: Vec<String>,
    /// Accepted signer fingerprints; empty: any.
    #[serde(default)]
    pub signer_fingerprints: Vec<String>,
}

/// How the processes of a PROCESS_MULTI check combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProcessSemantic {
    /// Every process runs.
    AllOf,
    /// At least one runs.
    AnyOf,
}

impl PostureCheck {
    /// The `typeId`.
    pub fn type_id(&self) -> &'static str {
        match self {
            Self::Os { .. } => "OS",
            Self::Mac { .. } => "MAC",
            Self::Domain { .. } => "DOMAIN",
            Self::Process { .. } => "PROCESS",
            Self::ProcessMulti { .. } => "PROCESS_MULTI",
            Self::Mfa { .. } => "MFA",
        }
    }

    /// The role attributes.
    pub fn role_attributes(&self) -> &[String] {
        match self {
            Self::Os {
                role_attributes, ..
            }
            | Self::Mac {
                role_attributes, ..
            }
            | Self::Domain {
                role_attributes, ..
            }
            | Self::Process {
                role_attributes, ..
            }
            | Self::ProcessMulti {
                role_attributes, ..
            }
            | Self::Mfa {
                role_attributes, ..
            } => role_attributes,
        }
    }

    /// Parses a stored document (validated when written); `None` if it does not parse.
    pub fn from_stored(data: &serde_json::Value) -> Option<Self> {
        let mut data = data.clone();
        if let Some(m) = data.as_object_mut() {
            m.remove("version");
        }
        serde_json::from_value(data).ok()
    }

    /// Checks the document and brings it to its stored form: MAC addresses as 12
    /// lower-case hex digits, hashes and fingerprints lower-case, an MFA timeout ≤ 0 as
    /// -1. Errors are 400 `COULD_NOT_VALIDATE` naming the field.
    pub fn normalize(&mut self) -> Result<(), ApiError> {
        match self {
            Self::Os {
                operating_systems, ..
            } => {
                non_empty("operatingSystems", operating_systems)?;
                for os in operating_systems.iter() {
                    os_type("operatingSystems.type", &os.os_type)?;
                    bounded("operatingSystems.versions", &os.versions)?;
                    for v in &os.versions {
                        VersionRange::parse(v).map_err(|e| {
                            ApiError::CouldNotValidate(format!("operatingSystems.versions: {e}"))
                        })?;
                    }
                }
            }
            Self::Mac { mac_addresses, .. } => {
                non_empty("macAddresses", mac_addresses)?;
                for mac in mac_addresses.iter_mut() {
                    *mac = normalize_mac(mac).ok_or_else(|| {
                        ApiError::CouldNotValidate(format!(
                            "macAddresses: {mac:?} is not a MAC address"
                        ))
                    })?;
                }
            }
            Self::Domain { domains, .. } => {
                non_empty("domains", domains)?;
                for d in domains.iter() {
                    text("domains", d)?;
                }
            }
            Self::Process { process, .. } => {
                os_type("process.osType", &process.os_type)?;
                text("process.path", &process.path)?;
                lower_all("process.hashes", &mut process.hashes)?;
                if let Some(f) = &mut process.signer_fingerprint {
                    text("process.signerFingerprint", f)?;
                    *f = f.to_ascii_lowercase();
                }
            }
            Self::ProcessMulti { processes, .. } => {
                non_empty("processes", processes)?;
                for p in processes.iter_mut() {
                    os_type("processes.osType", &p.os_type)?;
                    text("processes.path", &p.path)?;
                    lower_all("processes.hashes", &mut p.hashes)?;
                    lower_all("processes.signerFingerprints", &mut p.signer_fingerprints)?;
                }
            }
            Self::Mfa {
                timeout_seconds, ..
            } => {
                if *timeout_seconds <= 0 {
                    *timeout_seconds = -1;
                }
            }
        }
        Ok(())
    }
}

fn invalid(field: &str, why: &str) -> ApiError {
    ApiError::CouldNotValidate(format!("{field}: {why}"))
}

fn bounded<T>(field: &str, list: &[T]) -> Result<(), ApiError> {
    if list.len() > MAX_LIST {
        return Err(invalid(field, &format!("at most {MAX_LIST} entries")));
    }
    Ok(())
}

fn non_empty<T>(field: &str, list: &[T]) -> Result<(), ApiError> {
    if list.is_empty() {
        return Err(invalid(field, "at least one entry is required"));
    }
    bounded(field, list)
}

fn text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_TEXT {
        return Err(invalid(field, "too long"));
    }
    crate::model::check_text(field, value)
}

fn os_type(field: &str, value: &str) -> Result<(), ApiError> {
    if OS_TYPES.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            &format!("{value:?} is not one of {}", OS_TYPES.join(", ")),
        ))
    }
}

fn lower_all(field: &str, list: &mut [String]) -> Result<(), ApiError> {
    bounded(field, list)?;
    for v in list.iter_mut() {
        text(field, v)?;
        *v = v.to_ascii_lowercase();
    }
    Ok(())
}

/// A MAC address as 12 lower-case hex digits, whatever separators it was written
/// with (OpenZiti strips everything but hex digits); `None` if that does not leave 12.
pub fn normalize_mac(mac: &str) -> Option<String> {
    if mac.len() > 64 {
        return None;
    }
    let hex: String = mac
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 12).then_some(hex)
}

/// One entry of `/posture-check-types` (openziti/ziti `controller/db/migration_initialize.go`:
/// the seeded types; MFA works but is not listed there).
#[derive(Debug, Clone, Copy)]
pub struct CheckType {
    /// `typeId`.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
}

/// The posture check types, as OpenZiti lists them.
pub const CHECK_TYPES: [CheckType; 5] = [
    CheckType {
        id: "OS",
        name: "Operating System Check",
    },
    CheckType {
        id: "PROCESS",
        name: "Process Check",
    },
    CheckType {
        id: "DOMAIN",
        name: "Windows Domain Check",
    },
    CheckType {
        id: "MAC",
        name: "MAC Address Check",
    },
    CheckType {
        id: "PROCESS_MULTI",
        name: "Process Multi Check",
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<PostureCheck, ApiError> {
        let mut c: PostureCheck =
            serde_json::from_value(v).map_err(|e| ApiError::CouldNotValidate(e.to_string()))?;
        c.normalize()?;
        Ok(c)
    }

    #[test]
    fn documents_parse_and_normalise() {
        let c = parse(json!({"typeId": "MAC", "macAddresses": ["AA:BB:cc-dd.ee:FF"]})).unwrap();
        assert_eq!(
            c,
            PostureCheck::Mac {
                role_attributes: vec![],
                mac_addresses: vec!["aabbccddeeff".into()]
            }
        );
        let c = parse(json!({"typeId": "MFA", "timeoutSeconds": 0})).unwrap();
        assert!(matches!(
            c,
            PostureCheck::Mfa {
                timeout_seconds: -1,
                ..
            }
        ));
        let c = parse(json!({"typeId": "OS", "roleAttributes": ["a"],
            "operatingSystems": [{"type": "Linux", "versions": [">=5.0.0"]}]}))
        .unwrap();
        assert_eq!(c.type_id(), "OS");
        assert_eq!(c.role_attributes(), ["a"]);
        let c = parse(json!({"typeId": "PROCESS_MULTI", "semantic": "AnyOf",
            "processes": [{"osType": "Linux", "path": "/usr/bin/x", "hashes": ["ABC"]}]}))
        .unwrap();
        let PostureCheck::ProcessMulti { processes, .. } = c else {
            panic!("not PROCESS_MULTI")
        };
        assert_eq!(processes[0].hashes, ["abc"]);
    }

    #[test]
    fn bad_documents_are_refused() {
        for bad in [
            json!({"typeId": "OS", "operatingSystems": []}),
            json!({"typeId": "OS", "operatingSystems": [{"type": "BeOS"}]}),
            json!({"typeId": "OS", "operatingSystems": [{"type": "Linux", "versions": ["nope"]}]}),
            json!({"typeId": "MAC", "macAddresses": ["zz"]}),
            json!({"typeId": "MAC", "macAddresses": []}),
            json!({"typeId": "DOMAIN", "domains": [""]}),
            json!({"typeId": "PROCESS", "process": {"osType": "Linux", "path": ""}}),
            json!({"typeId": "PROCESS_MULTI", "semantic": "OneOf", "processes": []}),
            json!({"typeId": "BOGUS"}),
            json!({"typeId": "MAC", "macAddresses": ["aabbccddeeff"], "extra": 1}),
            json!({"macAddresses": ["aabbccddeeff"]}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..300).map(|i| format!("{i:012x}")).collect();
        assert!(parse(json!({"typeId": "MAC", "macAddresses": many})).is_err());
    }
}
