//! Version ranges of OS posture checks, in the grammar OpenZiti's checks use
//! (blang/semver v3 `ParseRange`, openziti/ziti `controller/model/posture_check_model_os.go`):
//!
//! - a range is one or more alternatives separated by `||`;
//! - an alternative is one or more comparators separated by spaces, all of which must hold;
//! - a comparator is an operator (`>=`, `<=`, `>`, `<`, `=`, `==`, `!=`, `!`, or none
//!   for `=`) followed by a version; `x` as the minor or patch number is a wildcard
//!   (`1.2.x`, `>=2.x`).
//!
//! Versions compare as semantic versions (the `semver` crate), pre-releases included:
//! `6.1.0-18-amd64` is *before* `6.1.0`. Versions in a range may leave out the minor or
//! patch number (`10`, `10.0`: zeros); a version an endpoint reports must be a full
//! semantic version, as in OpenZiti, or no range holds.

use std::fmt;

use semver::Version;

/// Longest range text accepted.
const MAX_RANGE_LEN: usize = 1024;

/// A parsed range: alternatives of comparators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRange {
    alternatives: Vec<Vec<Comparator>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparator {
    op: Op,
    version: Version,
}

/// Why a range does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version range {range:?}: {reason}")]
pub struct RangeError {
    range: String,
    reason: String,
}

impl VersionRange {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, RangeError> {
        let err = |reason: &str| RangeError {
            range: text.chars().take(64).collect(),
            reason: reason.into(),
        };
        if text.len() > MAX_RANGE_LEN {
            return Err(err("too long"));
        }
        let mut alternatives = Vec::new();
        for alt in text.split("||") {
            let mut all = Vec::new();
            let mut words = alt.split_whitespace().peekable();
            while let Some(word) = words.next() {
                // `>= 1.0.0` with a space after the operator is accepted too.
                let word = if is_operator(word) {
                    let version = words
                        .next()
                        .ok_or_else(|| err("operator without version"))?;
                    format!("{word}{version}")
                } else {
                    word.to_owned()
                };
                all.extend(parse_comparator(&word).map_err(|r| err(&r))?);
            }
            if all.is_empty() {
                return Err(err("empty alternative"));
            }
            alternatives.push(all);
        }
        Ok(Self { alternatives })
    }

    /// Whether `version` (a full semantic version) lies in the range.
    pub fn matches(&self, version: &Version) -> bool {
        self.alternatives
            .iter()
            .any(|all| all.iter().all(|c| c.matches(version)))
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
        })
    }
}

fn is_operator(word: &str) -> bool {
    matches!(word, ">=" | "<=" | ">" | "<" | "=" | "==" | "!=" | "!")
}

impl Comparator {
    fn matches(&self, v: &Version) -> bool {
        match self.op {
            Op::Eq => v == &self.version,
            Op::Ne => v != &self.version,
            Op::Gt => v > &self.version,
            Op::Ge => v >= &self.version,
            Op::Lt => v < &self.version,
            Op::Le => v <= &self.version,
        }
    }
}

/// One comparator word; a wildcard version expands to one or two comparators.
fn parse_comparator(word: &str) -> Result<Vec<Comparator>, String> {
    let (op, rest) = [
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("=", Op::Eq),
        ("!", Op::Ne),
    ]
    .into_iter()
    .find_map(|(p, op)| word.strip_prefix(p).map(|rest| (op, rest)))
    .unwrap_or((Op::Eq, word));
    if rest.is_empty() {
        return Err(format!("{word:?}: no version"));
    }
    let (core, suffix) = match rest.find(['-', '+']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return Err(format!("{rest:?} is not a version"));
    }
    // Index of the first wildcard part (`x`, `X` or `*`), if any.
    let wildcard = parts.iter().position(|p| matches!(*p, "x" | "X" | "*"));
    if let Some(w) = wildcard {
        if w == 0 || !suffix.is_empty() || parts[w..].iter().any(|p| !matches!(*p, "x" | "X" | "*"))
        {
            return Err(format!("{rest:?}: misplaced wildcard"));
        }
    }
    let mut numbers = [0u64; 3];
    let known = wildcard.unwrap_or(parts.len());
    for (i, p) in parts[..known].iter().enumerate() {
        numbers[i] = p
            .parse()
            .map_err(|_| format!("{rest:?}: {p:?} is not a number"))?;
    }
    let text = format!("{}.{}.{}{suffix}", numbers[0], numbers[1], numbers[2]);
    let version = Version::parse(&text).map_err(|e| format!("{rest:?}: {e}"))?;
    let Some(w) = wildcard else {
        return Ok(vec![Comparator { op, version }]);
    };
    // `1.2.x` is [1.2.0, 1.3.0); `1.x` is [1.0.0, 2.0.0).
    let mut next = version.clone();
    if w == 1 {
        next.major += 1;
        next.minor = 0;
    } else {
        next.minor += 1;
    }
    next.patch = 0;
    let c = |op, version| Comparator { op, version };
    match op {
        Op::Eq => Ok(vec![c(Op::Ge, version), c(Op::Lt, next)]),
        Op::Ge => Ok(vec![c(Op::Ge, version)]),
        Op::Gt => Ok(vec![c(Op::Ge, next)]),
        Op::Lt => Ok(vec![c(Op::Lt, version)]),
        Op::Le => Ok(vec![c(Op::Lt, next)]),
        Op::Ne => Err(format!("{op}{rest}: a wildcard cannot be excluded")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn holds(range: &str, v: &str) -> bool {
        VersionRange::parse(range)
            .unwrap()
            .matches(&Version::parse(v).unwrap())
    }

    #[test]
    fn comparators_and_alternatives() {
        assert!(holds(">=10.0.19041", "10.0.19045"));
        assert!(!holds(">=10.0.19041", "10.0.19000"));
        assert!(holds(">1.0.0 <2.0.0", "1.5.0"));
        assert!(!holds(">1.0.0 <2.0.0", "2.0.0"));
        assert!(holds("<1.0.0 || >=3.0.0", "3.1.0"));
        assert!(!holds("<1.0.0 || >=3.0.0", "2.0.0"));
        assert!(holds("1.2.3", "1.2.3"));
        assert!(holds("=1.2.3", "1.2.3"));
        assert!(holds("!1.2.3", "1.2.4"));
        assert!(!holds("!=1.2.3", "1.2.3"));
        assert!(holds(">= 6.1", "6.1.0"));
        assert!(holds("6", "6.0.0"));
    }

    #[test]
    fn wildcards() {
        assert!(holds("1.2.x", "1.2.9"));
        assert!(!holds("1.2.x", "1.3.0"));
        assert!(holds("1.x", "1.9.0"));
        assert!(!holds("1.x", "2.0.0"));
        assert!(holds(">1.2.x", "1.3.0"));
        assert!(!holds(">1.2.x", "1.2.9"));
        assert!(holds("<=1.2.x", "1.2.9"));
        assert!(!holds("<1.2.x", "1.2.0"));
    }

    #[test]
    fn pre_releases_come_first() {
        // A Debian kernel release: a pre-release of 6.1.0 in semantic versioning.
        assert!(!holds(">=6.1.0", "6.1.0-18-amd64"));
        assert!(holds(">=6.0.0", "6.1.0-18-amd64"));
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in [
            "", "  ", ">=", "a.b.c", "1.2.3.4", "x.1.2", "1.x.3", "!=1.x", "1.0.0 ||", ">=1.0.0-",
        ] {
            assert!(VersionRange::parse(bad).is_err(), "{bad:?}");
        }
        assert!(VersionRange::parse(&"1".repeat(2000)).is_err());
    }

    proptest! {
        /// Parsing never panics, and `>=v` holds for `v` itself.
        #[test]
        fn never_panics(text in "[0-9xX.<>=!| -]{0,40}") {
            let _ = VersionRange::parse(&text);
        }

        #[test]
        fn a_version_is_in_its_own_lower_bound(a in 0u64..1000, b in 0u64..1000, c in 0u64..1000) {
            let v = Version::new(a, b, c);
            let (lower, wild, below) = (format!(">={v}"), format!("{a}.{b}.x"), format!("<{v}"));
            prop_assert!(holds(&lower, &v.to_string()));
            prop_assert!(holds(&wild, &v.to_string()));
            prop_assert!(!holds(&below, &v.to_string()));
        }
    }
}
