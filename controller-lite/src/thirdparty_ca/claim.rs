//! `externalIdClaim`: where in a client certificate a 3rd-party CA's identities carry
//! their `externalId` (openziti/edge-api `source/management/cas.yml` `externalIdClaim`;
//! openziti/ziti `controller/model/ca_model.go`). Sans-IO: the certificate's names come
//! in as [`CertNames`].
//!
//! The values at `location` (the subject's common name, the URI SANs or the e-mail
//! SANs) are filtered by `matcher` (`ALL`, `PREFIX`/`SUFFIX` with `matcherCriteria`, or
//! for URIs `SCHEME`), then split by `parser` (`NONE`, or `SPLIT` on `parserCriteria`),
//! and `index` picks one of the values left. An index past the end finds no claim; an
//! empty value is an error.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most bytes of a criteria string.
pub const MAX_CRITERIA: usize = 256;

/// The API form of the claim: every field nullable (`location` null or empty: no claim).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExternalIdClaim {
    /// `COMMON_NAME`, `SAN_URI` or `SAN_EMAIL`.
    #[serde(default)]
    pub location: Option<String>,
    /// `ALL`, `PREFIX`, `SUFFIX` or (`SAN_URI` only) `SCHEME`.
    #[serde(default)]
    pub matcher: Option<String>,
    /// The prefix, suffix or scheme the matcher looks for.
    #[serde(default)]
    pub matcher_criteria: Option<String>,
    /// `NONE` or `SPLIT`.
    #[serde(default)]
    pub parser: Option<String>,
    /// The separator `SPLIT` splits on.
    #[serde(default)]
    pub parser_criteria: Option<String>,
    /// Which of the values found is the external id (0 is the first).
    #[serde(default)]
    pub index: Option<i64>,
}

/// Where the values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The subject's common names.
    CommonName,
    /// The URI subject alternative names.
    SanUri,
    /// The e-mail (RFC 822) subject alternative names.
    SanEmail,
}

/// Which located values count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Every value.
    All,
    /// Values starting with this text.
    Prefix(String),
    /// Values ending with this text.
    Suffix(String),
    /// URIs of this scheme (compared without case).
    Scheme(String),
}

/// How matched values are cut up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parser {
    /// Kept whole.
    None,
    /// Split on this separator.
    Split(String),
}

/// A validated claim rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRule {
    /// Where.
    pub location: Location,
    /// Which.
    pub matcher: Matcher,
    /// How cut.
    pub parser: Parser,
    /// Which one.
    pub index: usize,
}

/// The names of a certificate the claim may read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertNames {
    /// The subject's common names, in order.
    pub common_names: Vec<String>,
    /// The URI SANs, in order.
    pub uris: Vec<String>,
    /// The e-mail SANs, in order.
    pub emails: Vec<String>,
}

/// Why a claim is invalid or finds an unusable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The claim's fields do not make a rule.
    #[error("externalIdClaim: {0}")]
    Invalid(String),
    /// The value the claim picks is empty.
    #[error("the external id claim value is empty")]
    EmptyValue,
}

fn criteria(field: &str, value: Option<&str>) -> Result<String, ClaimError> {
    let v = value.unwrap_or_default();
    if v.is_empty() {
        return Err(ClaimError::Invalid(format!("{field} is required")));
    }
    if v.len() > MAX_CRITERIA || v.chars().any(char::is_control) {
        return Err(ClaimError::Invalid(format!(
            "{field} must be at most {MAX_CRITERIA} bytes without control characters"
        )));
    }
    Ok(v.to_owned())
}

impl ExternalIdClaim {
    /// The rule the claim describes; `None` when `location` is null or empty (the CA's
    /// identities are then found by certificate fingerprint).
    pub fn rule(&self) -> Result<Option<ClaimRule>, ClaimError> {
        let location = match self.location.as_deref().unwrap_or_default() {
            "" => return Ok(None),
            "COMMON_NAME" => Location::CommonName,
            "SAN_URI" => Location::SanUri,
            "SAN_EMAIL" => Location::SanEmail,
            other => return Err(ClaimError::Invalid(format!("unknown location {other:?}"))),
        };
        let matcher_criteria = || criteria("matcherCriteria", self.matcher_criteria.as_deref());
        let matcher = match (self.matcher.as_deref().unwrap_or_default(), location) {
            ("ALL", _) => Matcher::All,
            ("PREFIX", Location::CommonName | Location::SanEmail) => {
                Matcher::Prefix(matcher_criteria()?)
            }
            ("SUFFIX", Location::CommonName | Location::SanEmail) => {
                Matcher::Suffix(matcher_criteria()?)
            }
            ("SCHEME", Location::SanUri) => Matcher::Scheme(matcher_criteria()?),
            (m, l) => {
                return Err(ClaimError::Invalid(format!(
                    "matcher {m:?} is not valid for location {l:?}"
                )));
            }
        };
        let parser = match self.parser.as_deref().unwrap_or_default() {
            "NONE" => Parser::None,
            "SPLIT" => Parser::Split(criteria("parserCriteria", self.parser_criteria.as_deref())?),
            other => return Err(ClaimError::Invalid(format!("unknown parser {other:?}"))),
        };
        let index = match self.index {
            None => 0,
            Some(i) => usize::try_from(i)
                .map_err(|_| ClaimError::Invalid(format!("index {i} must not be negative")))?,
        };
        Ok(Some(ClaimRule {
            location,
            matcher,
            parser,
            index,
        }))
    }
}

impl ClaimRule {
    /// The external id in `names`: `None` when the index lies past the values found.
    pub fn extract(&self, names: &CertNames) -> Result<Option<String>, ClaimError> {
        let located = match self.location {
            Location::CommonName => &names.common_names,
            Location::SanUri => &names.uris,
            Location::SanEmail => &names.emails,
        };
        let matched = located.iter().filter(|v| match &self.matcher {
            Matcher::All => true,
            Matcher::Prefix(p) => v.starts_with(p.as_str()),
            Matcher::Suffix(s) => v.ends_with(s.as_str()),
            Matcher::Scheme(scheme) => v
                .split_once(':')
                .is_some_and(|(s, _)| s.eq_ignore_ascii_case(scheme)),
        });
        let value = match &self.parser {
            Parser::None => matched.map(String::as_str).nth(self.index),
            Parser::Split(sep) => matched.flat_map(|v| v.split(sep.as_str())).nth(self.index),
        };
        match value {
            None => Ok(None),
            Some("") => Err(ClaimError::EmptyValue),
            Some(v) => Ok(Some(v.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn claim(
        location: &str,
        matcher: &str,
        mc: &str,
        parser: &str,
        pc: &str,
        index: i64,
    ) -> ExternalIdClaim {
        let s = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        ExternalIdClaim {
            location: s(location),
            matcher: s(matcher),
            matcher_criteria: s(mc),
            parser: s(parser),
            parser_criteria: s(pc),
            index: Some(index),
        }
    }

    fn names() -> CertNames {
        CertNames {
            common_names: vec!["dev-1234".into()],
            uris: vec![
                "https://example.test/x".into(),
                "spiffe://corp.test/user/alice".into(),
            ],
            emails: vec!["alice@corp.test".into(), "a.b@other.test".into()],
        }
    }

    #[test]
    fn rules_find_their_values() {
        let cases = [
            (
                claim("COMMON_NAME", "ALL", "", "NONE", "", 0),
                Some("dev-1234"),
            ),
            (
                claim("COMMON_NAME", "PREFIX", "dev-", "SPLIT", "-", 1),
                Some("1234"),
            ),
            (claim("COMMON_NAME", "SUFFIX", "999", "NONE", "", 0), None),
            (
                claim("SAN_URI", "SCHEME", "SPIFFE", "NONE", "", 0),
                Some("spiffe://corp.test/user/alice"),
            ),
            (
                claim("SAN_URI", "SCHEME", "spiffe", "SPLIT", "/", 4),
                Some("alice"),
            ),
            (
                claim("SAN_URI", "ALL", "", "NONE", "", 1),
                Some("spiffe://corp.test/user/alice"),
            ),
            (claim("SAN_URI", "ALL", "", "NONE", "", 2), None),
            (
                claim("SAN_EMAIL", "SUFFIX", "@corp.test", "SPLIT", "@", 0),
                Some("alice"),
            ),
            (
                claim("SAN_EMAIL", "ALL", "", "NONE", "", 1),
                Some("a.b@other.test"),
            ),
        ];
        for (c, want) in cases {
            let rule = c.rule().unwrap().unwrap();
            assert_eq!(rule.extract(&names()).unwrap().as_deref(), want, "{c:?}");
        }
    }

    #[test]
    fn empty_values_are_errors_and_empty_location_is_no_rule() {
        let rule = claim("COMMON_NAME", "ALL", "", "SPLIT", "-", 0)
            .rule()
            .unwrap()
            .unwrap();
        let n = CertNames {
            common_names: vec!["-x".into()],
            ..CertNames::default()
        };
        assert_eq!(rule.extract(&n), Err(ClaimError::EmptyValue));
        assert_eq!(ExternalIdClaim::default().rule(), Ok(None));
        assert_eq!(claim("", "ALL", "", "NONE", "", 0).rule(), Ok(None));
    }

    #[test]
    fn invalid_combinations_are_refused() {
        for c in [
            claim("COMMON_NAME", "SCHEME", "x", "NONE", "", 0),
            claim("SAN_URI", "PREFIX", "x", "NONE", "", 0),
            claim("SAN_EMAIL", "PREFIX", "", "NONE", "", 0),
            claim("COMMON_NAME", "ALL", "", "SPLIT", "", 0),
            claim("COMMON_NAME", "ALL", "", "NONE", "", -1),
            claim("COMMON_NAME", "", "", "NONE", "", 0),
            claim("COMMON_NAME", "ALL", "", "", "", 0),
            claim("ISSUER", "ALL", "", "NONE", "", 0),
            claim(
                "COMMON_NAME",
                "PREFIX",
                &"x".repeat(MAX_CRITERIA + 1),
                "NONE",
                "",
                0,
            ),
            claim("COMMON_NAME", "ALL", "", "SPLIT", "\u{0}", 0),
        ] {
            assert!(matches!(c.rule(), Err(ClaimError::Invalid(_))), "{c:?}");
        }
    }

    proptest! {
        /// Extraction never panics, and what it finds is a non-empty piece of one of
        /// the located values.
        #[test]
        fn extraction_finds_a_piece_of_a_located_value(
            cns in proptest::collection::vec("[a-z:/@.-]{0,12}", 0..4),
            uris in proptest::collection::vec("[a-z]{1,5}:[a-z/@.-]{0,10}", 0..4),
            emails in proptest::collection::vec("[a-z.]{0,6}@[a-z.]{0,6}", 0..4),
            location in prop_oneof![Just("COMMON_NAME"), Just("SAN_URI"), Just("SAN_EMAIL")],
            matcher in prop_oneof![Just("ALL"), Just("PREFIX"), Just("SUFFIX"), Just("SCHEME")],
            criteria in "[a-z.@:/-]{1,3}",
            split in proptest::bool::ANY,
            index in 0i64..6,
        ) {
            let c = claim(location, matcher, &criteria, if split { "SPLIT" } else { "NONE" }, &criteria, index);
            let names = CertNames { common_names: cns, uris, emails };
            if let Ok(Some(rule)) = c.rule() {
                let located = match rule.location {
                    Location::CommonName => &names.common_names,
                    Location::SanUri => &names.uris,
                    Location::SanEmail => &names.emails,
                };
                if let Ok(Some(v)) = rule.extract(&names) {
                    prop_assert!(!v.is_empty());
                    prop_assert!(located.iter().any(|l| l.contains(&v)));
                    if !split {
                        prop_assert!(located.contains(&v));
                    }
                }
            }
        }

        /// `ALL` with `NONE` picks exactly the `index`th located value.
        #[test]
        fn all_none_is_plain_indexing(cns in proptest::collection::vec("[a-z]{1,8}", 0..5), index in 0usize..6) {
            let rule = ClaimRule { location: Location::CommonName, matcher: Matcher::All, parser: Parser::None, index };
            let names = CertNames { common_names: cns.clone(), ..CertNames::default() };
            prop_assert_eq!(rule.extract(&names).unwrap(), cns.get(index).cloned());
        }
    }
}
