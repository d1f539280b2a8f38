//! Evaluating a parsed [`Query`] against JSON documents.

use std::cmp::Ordering;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Expr, FieldRef, FieldType, Literal, Op, Query, SortKey};

/// The value at a dotted path (`tags.env`), if any.
pub(super) fn lookup<'v>(doc: &'v Value, path: &str) -> Option<&'v Value> {
    if let Some(v) = doc.get(path) {
        return Some(v);
    }
    let mut cur = doc;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

fn time_of(v: &Value) -> Option<OffsetDateTime> {
    v.as_str()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

/// `v op lit` for one scalar; a value of another type never matches (so `!=` holds).
fn compare(op: Op, v: &Value, lit: &Literal) -> bool {
    let ord = match (lit, v) {
        (Literal::Str(l), Value::String(s)) => {
            let (s_low, l_low) = (s.to_lowercase(), l.to_lowercase());
            match op {
                Op::Contains => return s.contains(l.as_str()),
                Op::IContains => return s_low.contains(&l_low),
                Op::StartsWith => return s.starts_with(l.as_str()),
                Op::IStartsWith => return s_low.starts_with(&l_low),
                Op::EndsWith => return s.ends_with(l.as_str()),
                Op::IEndsWith => return s_low.ends_with(&l_low),
                _ => Some(s.as_str().cmp(l.as_str())),
            }
        }
        (Literal::Num(l), Value::Number(n)) => n.as_f64().and_then(|n| n.partial_cmp(l)),
        (Literal::Bool(l), Value::Bool(b)) => Some(b.cmp(l)),
        (Literal::Time(l), v) => time_of(v).map(|t| t.cmp(l)),
        _ => None,
    };
    match (op, ord) {
        (Op::Ne, None) => true,
        (_, None) => false,
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Ne, Some(o)) => o != Ordering::Equal,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        // String matches returned above; on other types they never match.
        (_, Some(_)) => false,
    }
}

/// Applies `test` to the field: to every element of a list (`allOf`) or any element
/// (otherwise), or to the value itself.
fn test_field(doc: &Value, field: &FieldRef, test: impl Fn(&Value) -> bool) -> bool {
    match lookup(doc, &field.path) {
        Some(Value::Array(items)) if field.all_of => items.iter().all(&test),
        Some(Value::Array(items)) => items.iter().any(&test),
        Some(v) => test(v),
        None => test(&Value::Null),
    }
}

impl Expr {
    /// Whether `doc` satisfies the expression.
    pub fn matches(&self, doc: &Value) -> bool {
        match self {
            Self::Const(b) => *b,
            Self::Not(e) => !e.matches(doc),
            Self::And(es) => es.iter().all(|e| e.matches(doc)),
            Self::Or(es) => es.iter().any(|e| e.matches(doc)),
            Self::Cmp { field, op, value } => test_field(doc, field, |v| compare(*op, v, value)),
            Self::In { field, values } => {
                test_field(doc, field, |v| values.iter().any(|l| compare(Op::Eq, v, l)))
            }
            Self::Between { field, lo, hi } => test_field(doc, field, |v| {
                compare(Op::Ge, v, lo) && compare(Op::Le, v, hi)
            }),
            Self::IsNull { field } => matches!(lookup(doc, &field.path), None | Some(Value::Null)),
        }
    }
}

/// Rank of a JSON type in sort order: missing and null first.
fn rank(v: Option<&Value>) -> u8 {
    match v {
        None | Some(Value::Null) => 0,
        Some(Value::Bool(_)) => 1,
        Some(Value::Number(_)) => 2,
        Some(Value::String(_)) => 3,
        Some(_) => 4,
    }
}

fn cmp_key(key: &SortKey, a: &Value, b: &Value) -> Ordering {
    let (va, vb) = (lookup(a, &key.field), lookup(b, &key.field));
    let ord = if key.ty == FieldType::DateTime {
        va.and_then(time_of).cmp(&vb.and_then(time_of))
    } else {
        match (va, vb) {
            (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
            (Some(Value::Number(x)), Some(Value::Number(y))) => x
                .as_f64()
                .partial_cmp(&y.as_f64())
                .unwrap_or(Ordering::Equal),
            (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
            _ => rank(va).cmp(&rank(vb)),
        }
    };
    if key.descending { ord.reverse() } else { ord }
}

impl Query {
    /// Whether `doc` passes the predicate (no predicate passes everything).
    pub fn matches(&self, doc: &Value) -> bool {
        self.predicate.as_ref().is_none_or(|p| p.matches(doc))
    }
}

/// Orders two documents by `keys`, then by `id` so pages are stable.
pub fn compare_docs(keys: &[SortKey], a: &Value, b: &Value) -> Ordering {
    keys.iter()
        .map(|k| cmp_key(k, a, b))
        .find(|o| *o != Ordering::Equal)
        .unwrap_or_else(|| {
            let id = |d: &Value| d.get("id").and_then(Value::as_str).map(str::to_owned);
            id(a).cmp(&id(b))
        })
}
