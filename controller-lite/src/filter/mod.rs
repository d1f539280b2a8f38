//! The list filter language of the management and client APIs, after OpenZiti's
//! ZitiQL (`?filter=` on every list endpoint).
//!
//! Supported:
//!
//! - comparisons `field = value`, `!=`, `<`, `<=`, `>`, `>=`;
//! - string matches `contains`, `icontains`, `startswith`, `istartswith`, `endswith`,
//!   `iendswith`, each also negated with `not` (`name not contains "x"`);
//! - `field in ["a", "b"]`, `field not in [...]`, `field between a and b` (inclusive),
//!   `field is null`, `field is not null`, `field = null`;
//! - list fields with `anyOf(roleAttributes) = "x"` and `allOf(roleAttributes) = "x"`
//!   (a list field compared without either means `anyOf`);
//! - `and`, `or`, `not`, parentheses, `true`, `false`;
//! - values: `"strings"` (with `\"` and `\\` escapes), numbers, `true`/`false`, `null`,
//!   `datetime(2024-01-01T00:00:00Z)` (a quoted RFC 3339 string works for time fields too);
//! - trailing clauses `sort by name [asc|desc], createdAt desc`, `skip N`, `limit N`,
//!   `limit none`.
//!
//! Keywords are case-insensitive. Field names are checked against the [`Fields`] of the
//! collection, and values against the field's type, so `isAdmin = "yes"` or an unknown
//! field is an error instead of an empty result.

mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use time::OffsetDateTime;

pub use eval::compare_docs;
pub use parser::{parse, parse_sort};

/// What part of a list request an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The filter expression.
    Filter,
    /// A sort key.
    Sort,
}

/// A filter or sort that cannot be used, with the byte offset of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FilterError {
    /// Filter or sort.
    pub kind: ErrorKind,
    /// Byte offset in the text, when known.
    pub at: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(at) => write!(f, "{} (at position {at})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl FilterError {
    pub(crate) fn at(at: usize, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Filter,
            at: Some(at),
            message: message.into(),
        }
    }
}

/// The type of a filterable field, which decides the values and operators it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A string.
    String,
    /// A number.
    Number,
    /// A boolean.
    Bool,
    /// An RFC 3339 timestamp.
    DateTime,
    /// A list of strings (role attributes, config ids).
    Set,
    /// An object whose members are filtered as `field.key` (tags).
    Object,
    /// Anything (members of an [`FieldType::Object`]); compared by the value's JSON type.
    Any,
}

/// The filterable fields of a collection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    map: BTreeMap<String, FieldType>,
}

impl Fields {
    /// The fields every entity has: `id`, `name`, `createdAt`, `updatedAt`, `tags`.
    pub fn base() -> Self {
        Self::default()
            .with("id", FieldType::String)
            .with("name", FieldType::String)
            .with("createdAt", FieldType::DateTime)
            .with("updatedAt", FieldType::DateTime)
            .with("tags", FieldType::Object)
    }

    /// Adds (or retypes) a field.
    pub fn with(mut self, name: &str, ty: FieldType) -> Self {
        self.map.insert(name.to_owned(), ty);
        self
    }

    /// Adds the properties of a JSON schema (as `schemars` generates it for the
    /// document structs of [`crate::model`]).
    pub fn with_schema(mut self, schema: &Value) -> Self {
        let defs = schema.get("$defs").or_else(|| schema.get("definitions"));
        // A tagged enum's variants (`oneOf`) each add their fields.
        let variants = ["oneOf", "anyOf"]
            .iter()
            .filter_map(|k| schema.get(*k).and_then(Value::as_array))
            .flatten();
        for part in std::iter::once(schema).chain(variants) {
            if let Some(props) = part.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    self.map.insert(name.clone(), schema_type(prop, defs));
                }
            }
        }
        self
    }

    /// The field names, sorted (for `meta.filterableFields` and error messages).
    pub fn names(&self) -> Vec<&str> {
        self.map.keys().map(String::as_str).collect()
    }

    /// The type of `path`: a field, or `object.key` for a member of an object field.
    pub fn lookup(&self, path: &str) -> Option<FieldType> {
        if let Some(t) = self.map.get(path) {
            return Some(*t);
        }
        let (root, rest) = path.split_once('.')?;
        match self.map.get(root) {
            Some(FieldType::Object) if !rest.is_empty() => Some(FieldType::Any),
            _ => None,
        }
    }
}

/// Maps one property schema to a [`FieldType`].
fn schema_type(prop: &Value, defs: Option<&Value>) -> FieldType {
    if let Some(r) = prop.get("$ref").and_then(Value::as_str) {
        let def = r
            .rsplit('/')
            .next()
            .and_then(|n| defs.and_then(|d| d.get(n)));
        return match def {
            Some(d) if is_string_enum(d) => FieldType::String,
            Some(d) => schema_type(d, defs),
            None => FieldType::Any,
        };
    }
    if is_string_enum(prop) {
        return FieldType::String;
    }
    let types: Vec<&str> = match prop.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let main = types.iter().copied().find(|t| *t != "null");
    match main {
        Some("string") if prop.get("format").and_then(Value::as_str) == Some("date-time") => {
            FieldType::DateTime
        }
        Some("string") => FieldType::String,
        Some("integer" | "number") => FieldType::Number,
        Some("boolean") => FieldType::Bool,
        Some("array") => FieldType::Set,
        Some("object") => FieldType::Object,
        _ => FieldType::Any,
    }
}

fn is_string_enum(s: &Value) -> bool {
    let consts = |list: &Value| {
        list.as_array().is_some_and(|a| {
            a.iter().all(|v| {
                v.is_string()
                    || v.get("const").is_some_and(Value::is_string)
                    || v.get("enum").is_some_and(|e| {
                        e.as_array().is_some_and(|e| e.iter().all(Value::is_string))
                    })
            })
        })
    };
    s.get("enum").is_some_and(consts) || s.get("oneOf").is_some_and(consts)
}

/// A parsed filter: predicate, sort order and the paging it asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// The condition; `None` matches everything.
    pub predicate: Option<Expr>,
    /// Sort keys, most significant first.
    pub sort: Vec<SortKey>,
    /// `skip N`.
    pub skip: Option<u64>,
    /// `limit N` or `limit none`.
    pub limit: Option<Limit>,
}

/// The `limit` clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// At most this many.
    Count(u64),
    /// Everything (`limit none`).
    None,
}

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// Field path.
    pub field: String,
    /// The field's type.
    pub ty: FieldType,
    /// `desc`.
    pub descending: bool,
}

/// A field reference, possibly quantified over a list field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRef {
    /// Field path (`name`, `tags.env`).
    pub path: String,
    /// `allOf(…)`; list fields are otherwise matched by any element.
    pub all_of: bool,
}

/// A literal value, already converted to the field's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A string.
    Str(String),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
    /// A point in time.
    Time(OffsetDateTime),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `contains`
    Contains,
    /// `icontains`
    IContains,
    /// `startswith`
    StartsWith,
    /// `istartswith`
    IStartsWith,
    /// `endswith`
    EndsWith,
    /// `iendswith`
    IEndsWith,
}

impl Op {
    /// Whether the operator works on strings only.
    pub fn is_string_match(self) -> bool {
        matches!(
            self,
            Self::Contains
                | Self::IContains
                | Self::StartsWith
                | Self::IStartsWith
                | Self::EndsWith
                | Self::IEndsWith
        )
    }
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `true` / `false`.
    Const(bool),
    /// `not e`.
    Not(Box<Self>),
    /// `a and b and …`.
    And(Vec<Self>),
    /// `a or b or …`.
    Or(Vec<Self>),
    /// `field op value`.
    Cmp {
        /// The field.
        field: FieldRef,
        /// The operator.
        op: Op,
        /// The value.
        value: Literal,
    },
    /// `field in [values]`.
    In {
        /// The field.
        field: FieldRef,
        /// The values.
        values: Vec<Literal>,
    },
    /// `field between lo and hi` (inclusive).
    Between {
        /// The field.
        field: FieldRef,
        /// Lower bound.
        lo: Literal,
        /// Upper bound.
        hi: Literal,
    },
    /// `field is null` (missing or JSON null).
    IsNull {
        /// The field.
        field: FieldRef,
    },
}
