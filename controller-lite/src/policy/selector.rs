//! Role selectors (`#attr`, `@ref`, `#all`) and the role lists ([`RoleSet`]) built from them.
//!
//! Syntax, after OpenZiti (`controller/db/util.go`, `validateRolesAndIds` and
//! `splitRolesAndIds`; docs: "Roles and Role Attributes" in
//! `learn/core-concepts/security/authorization/policies/overview`):
//!
//! - `#name` is a role attribute; `#all` is the special attribute that selects every
//!   entity of the list's type;
//! - `@ref` names one entity by id or, as the CLI and ZAC allow, by name;
//! - anything else is rejected. OpenZiti additionally rejects `#all` next to other
//!   entries ("if using #all, it should be the only role specified"), which
//!   [`RoleSet::parse`] enforces.
//!
//! Weft is stricter than OpenZiti on the text itself: an empty name (`#`, `@`), a doubled
//! prefix (`##x`, `#@x`: OpenZiti forbids role attributes that start with `#` or `@`, so
//! such a selector could never match) and any whitespace or control character are
//! rejected, so a typo cannot silently select nothing.

use std::fmt;
use std::str::FromStr;

/// The text of the special selector that selects every entity of a type.
pub const ALL_SELECTOR: &str = "#all";

/// One entry of a policy's role list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleSelector {
    /// `#all`: every entity of the list's type.
    All,
    /// `#name`: entities carrying the role attribute `name` (combined per the policy's
    /// [`Semantic`](super::Semantic)).
    Attribute(String),
    /// `@ref`: the entity whose id is `ref`, or else the one entity named `ref`.
    Entity(String),
}

/// Why a role selector or role list was rejected. Each variant carries the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector is the empty string.
    #[error("empty role selector")]
    Empty,
    /// The selector starts with neither `#` nor `@`.
    #[error("role selector {0:?} must start with '#' (role attribute) or '@' (entity id or name)")]
    MissingPrefix(String),
    /// Nothing follows the prefix (`#` or `@` alone).
    #[error("role selector {0:?} has nothing after its prefix")]
    EmptyName(String),
    /// The name itself starts with `#` or `@` (`##x`, `@#x`).
    #[error("role selector {0:?} has a doubled prefix")]
    DoubledPrefix(String),
    /// The selector contains whitespace or a control character.
    #[error("role selector {0:?} contains whitespace or a control character")]
    InvalidCharacter(String),
    /// `#all` appears in a list next to other entries.
    #[error("#all must be the only entry of a role list, got {0:?}")]
    AllNotAlone(Vec<String>),
}

impl RoleSelector {
    /// Parses one selector: `#all`, `#attribute` or `@id-or-name`.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut chars = text.chars();
        let Some(prefix) = chars.next() else {
            return Err(SelectorError::Empty);
        };
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(SelectorError::InvalidCharacter(text.to_owned()));
        }
        let name = chars.as_str();
        if prefix != '#' && prefix != '@' {
            return Err(SelectorError::MissingPrefix(text.to_owned()));
        }
        if name.is_empty() {
            return Err(SelectorError::EmptyName(text.to_owned()));
        }
        if name.starts_with(['#', '@']) {
            return Err(SelectorError::DoubledPrefix(text.to_owned()));
        }
        Ok(match (prefix, name) {
            ('#', "all") => Self::All,
            ('#', _) => Self::Attribute(name.to_owned()),
            _ => Self::Entity(name.to_owned()),
        })
    }
}

impl FromStr for RoleSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for RoleSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str(ALL_SELECTOR),
            Self::Attribute(name) => write!(f, "#{name}"),
            Self::Entity(reference) => write!(f, "@{reference}"),
        }
    }
}

/// A policy's role list for one entity type (for example a service policy's
/// `identityRoles`), split into its three kinds of entries. Duplicates are dropped and the
/// entries kept sorted, as OpenZiti stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RoleSet {
    all: bool,
    attributes: Vec<String>,
    refs: Vec<String>,
}

impl RoleSet {
    /// An empty list: selects nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// `[#all]`: selects every entity of the type.
    pub fn all() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    /// Parses a role list as the management API receives it, rejecting malformed
    /// selectors and `#all` next to other entries (as OpenZiti does).
    pub fn parse<I, S>(entries: I) -> Result<Self, SelectorError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let texts: Vec<String> = entries.into_iter().map(|s| s.as_ref().to_owned()).collect();
        let selectors = texts
            .iter()
            .map(|t| RoleSelector::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        if texts.len() > 1 && selectors.contains(&RoleSelector::All) {
            return Err(SelectorError::AllNotAlone(texts));
        }
        Ok(Self::from_selectors(selectors))
    }

    /// Builds a list from already parsed selectors without the "`#all` alone" rule: a list
    /// holding `#all` and more selects everything, as OpenZiti's evaluator would.
    pub fn from_selectors<I: IntoIterator<Item = RoleSelector>>(selectors: I) -> Self {
        let mut set = Self::default();
        for selector in selectors {
            match selector {
                RoleSelector::All => set.all = true,
                RoleSelector::Attribute(name) => set.attributes.push(name),
                RoleSelector::Entity(reference) => set.refs.push(reference),
            }
        }
        set.attributes.sort_unstable();
        set.attributes.dedup();
        set.refs.sort_unstable();
        set.refs.dedup();
        set
    }

    /// True when the list holds no entry at all (and so selects nothing).
    pub fn is_empty(&self) -> bool {
        !self.all && self.attributes.is_empty() && self.refs.is_empty()
    }

    /// True when the list holds `#all`.
    pub fn includes_all(&self) -> bool {
        self.all
    }

    /// The `#attr` entries, without `#`, sorted and deduplicated (`#all` excluded).
    pub fn attributes(&self) -> &[String] {
        &self.attributes
    }

    /// The `@ref` entries, without `@`, sorted and deduplicated.
    pub fn refs(&self) -> &[String] {
        &self.refs
    }

    /// The entries as selectors: `#all` first, then attributes, then references.
    pub fn selectors(&self) -> impl Iterator<Item = RoleSelector> + '_ {
        self.all
            .then_some(RoleSelector::All)
            .into_iter()
            .chain(self.attributes.iter().cloned().map(RoleSelector::Attribute))
            .chain(self.refs.iter().cloned().map(RoleSelector::Entity))
    }

    /// The entries as text (`#all`, `#attr`, `@ref`), in [`selectors`](Self::selectors) order.
    pub fn to_strings(&self) -> Vec<String> {
        self.selectors().map(|s| s.to_string()).collect()
    }
}
