//! The two small enumerations of a policy: its [`Semantic`] and, for service policies,
//! its [`PolicyType`].
//!
//! Sources: OpenZiti stores a missing semantic as `AllOf` and rejects any other value
//! than `AllOf`/`AnyOf` (`controller/db/service_policy_store.go`, `FillEntity` and
//! `isSemanticValid`); the evaluator compares it case-insensitively
//! (`controller/db/policy_common.go`, `evaluatePolicyAgainstEntity`, `strings.EqualFold`).
//! Service policy types are `Dial` and `Bind` (same store file).

use std::fmt;
use std::str::FromStr;

/// How a policy combines the role attributes (`#attr`) of one of its role lists.
///
/// The semantic applies to the attribute entries only: `@ref` entries and `#all` select
/// their entities under either semantic (see [`crate::policy`] for the full rule).
///
/// Serialized as the API spells it (`AllOf`, `AnyOf`); the API layer parses exactly that.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub enum Semantic {
    /// An entity is selected when it carries *every* listed attribute. OpenZiti's default.
    #[default]
    AllOf,
    /// An entity is selected when it carries *at least one* listed attribute.
    AnyOf,
}

impl Semantic {
    /// The canonical spelling used by the OpenZiti management API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllOf => "AllOf",
            Self::AnyOf => "AnyOf",
        }
    }
}

impl fmt::Display for Semantic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Semantic {
    type Err = ParseValueError;

    /// Accepts `AllOf` and `AnyOf` in any letter case, like OpenZiti's evaluator.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("AllOf") {
            Ok(Self::AllOf)
        } else if s.eq_ignore_ascii_case("AnyOf") {
            Ok(Self::AnyOf)
        } else {
            Err(ParseValueError::Semantic(s.to_owned()))
        }
    }
}

/// The permission a service policy grants.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub enum PolicyType {
    /// Use (connect to) the service.
    Dial,
    /// Provide (host) the service.
    Bind,
}

impl PolicyType {
    /// The canonical spelling used by the OpenZiti management API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dial => "Dial",
            Self::Bind => "Bind",
        }
    }
}

impl fmt::Display for PolicyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PolicyType {
    type Err = ParseValueError;

    /// Accepts `Dial` and `Bind` in any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("Dial") {
            Ok(Self::Dial)
        } else if s.eq_ignore_ascii_case("Bind") {
            Ok(Self::Bind)
        } else {
            Err(ParseValueError::PolicyType(s.to_owned()))
        }
    }
}

/// A semantic or policy type that is not one of the known values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseValueError {
    /// Neither `AllOf` nor `AnyOf`.
    #[error("invalid semantic {0:?}: expected AllOf or AnyOf")]
    Semantic(String),
    /// Neither `Dial` nor `Bind`.
    #[error("invalid service policy type {0:?}: expected Dial or Bind")]
    PolicyType(String),
}
