//! Recursive-descent parser of the filter language, checking fields and value types.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::lexer::{Tok, Token, tokenize};
use super::{
    ErrorKind, Expr, FieldRef, FieldType, Fields, FilterError, Limit, Literal, Op, Query, SortKey,
};

/// Parses `text` (a `filter` parameter) for a collection with `fields`.
pub fn parse(text: &str, fields: &Fields) -> Result<Query, FilterError> {
    let tokens = tokenize(text)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        fields,
        end: text.len(),
        depth: 0,
    };
    let mut q = Query::default();
    if !p.at_end() && !p.at_clause() {
        q.predicate = Some(p.expr()?);
    }
    while !p.at_end() {
        let t = p.next_token()?;
        match keyword(&t.kind).as_deref() {
            Some("sort") => {
                p.expect_keyword("by")?;
                if !q.sort.is_empty() {
                    return Err(FilterError::at(t.at, "\"sort by\" given twice"));
                }
                q.sort = p.sort_keys()?;
            }
            Some("skip") => q.skip = Some(p.count("skip")?),
            Some("limit") => {
                q.limit = Some(if p.eat_keyword("none") {
                    Limit::None
                } else {
                    Limit::Count(p.count("limit")?)
                });
            }
            _ => {
                return Err(FilterError::at(
                    t.at,
                    format!(
                        "unexpected {}: expected \"and\", \"or\", \"sort by\", \"skip\" or \"limit\"",
                        t.kind.describe()
                    ),
                ));
            }
        }
    }
    Ok(q)
}

/// Parses a `sort` parameter: `name`, `createdAt desc, name asc`.
pub fn parse_sort(text: &str, fields: &Fields) -> Result<Vec<SortKey>, FilterError> {
    let mut p = Parser {
        tokens: tokenize(text).map_err(sort_error)?,
        pos: 0,
        fields,
        end: text.len(),
        depth: 0,
    };
    let keys = p.sort_keys().map_err(sort_error)?;
    if let Some(t) = p.tokens.get(p.pos) {
        return Err(sort_error(FilterError::at(
            t.at,
            format!("unexpected {}", t.kind.describe()),
        )));
    }
    Ok(keys)
}

fn sort_error(mut e: FilterError) -> FilterError {
    e.kind = ErrorKind::Sort;
    e
}

fn keyword(t: &Tok) -> Option<String> {
    match t {
        Tok::Ident(s) => Some(s.to_ascii_lowercase()),
        _ => None,
    }
}

/// Deepest nesting of `not` and parentheses accepted (the parser recurses per level).
const MAX_DEPTH: usize = 64;

struct Parser<'f> {
    tokens: Vec<Token>,
    pos: usize,
    fields: &'f Fields,
    end: usize,
    depth: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_keyword(&self) -> Option<String> {
        self.peek().and_then(|t| keyword(&t.kind))
    }

    fn at_clause(&self) -> bool {
        matches!(
            self.peek_keyword().as_deref(),
            Some("sort" | "skip" | "limit")
        )
    }

    fn next_token(&mut self) -> Result<Token, FilterError> {
        let t = self
            .tokens
            .get(self.pos)
            .cloned()
            .ok_or_else(|| FilterError::at(self.end, "unexpected end of filter"))?;
        self.pos += 1;
        Ok(t)
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.peek_keyword().as_deref() == Some(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), FilterError> {
        let t = self.next_token()?;
        if keyword(&t.kind).as_deref() == Some(kw) {
            Ok(())
        } else {
            Err(FilterError::at(
                t.at,
                format!("expected {kw:?}, found {}", t.kind.describe()),
            ))
        }
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<(), FilterError> {
        let t = self.next_token()?;
        if &t.kind == want {
            Ok(())
        } else {
            Err(FilterError::at(
                t.at,
                format!("expected {what}, found {}", t.kind.describe()),
            ))
        }
    }

    fn count(&mut self, clause: &str) -> Result<u64, FilterError> {
        let t = self.next_token()?;
        match t.kind {
            Tok::Num(n) if n >= 0.0 && n.fract() == 0.0 && n <= u32::MAX as f64 => Ok(n as u64),
            other => Err(FilterError::at(
                t.at,
                format!(
                    "{clause} needs a non-negative integer, found {}",
                    other.describe()
                ),
            )),
        }
    }

    fn sort_keys(&mut self) -> Result<Vec<SortKey>, FilterError> {
        let mut keys = Vec::new();
        loop {
            let t = self.next_token()?;
            let Tok::Ident(field) = t.kind else {
                return Err(FilterError::at(
                    t.at,
                    format!("expected a field to sort by, found {}", t.kind.describe()),
                ));
            };
            let ty = self
                .fields
                .lookup(&field)
                .ok_or_else(|| sort_error(FilterError::at(t.at, self.unknown_field(&field))))?;
            if matches!(ty, FieldType::Set | FieldType::Object) {
                return Err(sort_error(FilterError::at(
                    t.at,
                    format!("cannot sort by {field:?}: it is not a single value"),
                )));
            }
            let descending = if self.eat_keyword("desc") {
                true
            } else {
                self.eat_keyword("asc");
                false
            };
            keys.push(SortKey {
                field,
                ty,
                descending,
            });
            if self.peek().map(|t| &t.kind) == Some(&Tok::Comma) {
                self.pos += 1;
            } else {
                return Ok(keys);
            }
        }
    }

    fn unknown_field(&self, field: &str) -> String {
        format!(
            "unknown field {field:?}; known fields: {}",
            self.fields.names().join(", ")
        )
    }

    fn expr(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.and_expr()?];
        while self.eat_keyword("or") {
            parts.push(self.and_expr()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.unary()?];
        while self.eat_keyword("and") {
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        let at = self.peek().map_or(self.end, |t| t.at);
        if self.depth >= MAX_DEPTH {
            return Err(FilterError::at(
                at,
                format!("the filter nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        if self.eat_keyword("not") {
            self.depth += 1;
            let e = self.unary();
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e?)));
        }
        if self.peek().map(|t| &t.kind) == Some(&Tok::LParen) {
            self.pos += 1;
            self.depth += 1;
            let e = self.expr();
            self.depth -= 1;
            let e = e?;
            self.expect(&Tok::RParen, "\")\"")?;
            return Ok(e);
        }
        if self.eat_keyword("true") {
            return Ok(Expr::Const(true));
        }
        if self.eat_keyword("false") {
            return Ok(Expr::Const(false));
        }
        self.predicate()
    }

    /// `field …` or `anyOf(field) …` / `allOf(field) …`.
    fn field(&mut self) -> Result<(FieldRef, FieldType, usize), FilterError> {
        let t = self.next_token()?;
        let Tok::Ident(name) = t.kind else {
            return Err(FilterError::at(
                t.at,
                format!("expected a field, found {}", t.kind.describe()),
            ));
        };
        let lower = name.to_ascii_lowercase();
        let (path, quantified, all_of) = if (lower == "anyof" || lower == "allof")
            && self.peek().map(|t| &t.kind) == Some(&Tok::LParen)
        {
            self.pos += 1;
            let inner = self.next_token()?;
            let Tok::Ident(path) = inner.kind else {
                return Err(FilterError::at(
                    inner.at,
                    format!("expected a field, found {}", inner.kind.describe()),
                ));
            };
            self.expect(&Tok::RParen, "\")\"")?;
            (path, true, lower == "allof")
        } else {
            (name, false, false)
        };
        let ty = self
            .fields
            .lookup(&path)
            .ok_or_else(|| FilterError::at(t.at, self.unknown_field(&path)))?;
        if quantified && !matches!(ty, FieldType::Set | FieldType::Any) {
            return Err(FilterError::at(
                t.at,
                format!("anyOf/allOf need a list field; {path:?} is not one"),
            ));
        }
        if ty == FieldType::Object {
            return Err(FilterError::at(
                t.at,
                format!("{path:?} is an object: filter on {path}.<key>"),
            ));
        }
        Ok((FieldRef { path, all_of }, ty, t.at))
    }

    fn predicate(&mut self) -> Result<Expr, FilterError> {
        let (field, ty, at) = self.field()?;
        let t = self.next_token()?;
        if let Tok::Op(op) = t.kind {
            let op = match op {
                "=" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                _ => Op::Ge,
            };
            let (vt, v) = self.value()?;
            return match v {
                None if matches!(op, Op::Eq | Op::Ne) => {
                    let e = Expr::IsNull { field };
                    Ok(if op == Op::Ne {
                        Expr::Not(Box::new(e))
                    } else {
                        e
                    })
                }
                None => Err(FilterError::at(vt, "null only compares with = or !=")),
                Some(v) => Ok(Expr::Cmp {
                    value: coerce(ty, op, v, vt, &field.path)?,
                    field,
                    op,
                }),
            };
        }
        let Some(mut kw) = keyword(&t.kind) else {
            return Err(FilterError::at(
                t.at,
                format!("expected an operator, found {}", t.kind.describe()),
            ));
        };
        let mut negated = false;
        if kw == "is" {
            let negated = self.eat_keyword("not");
            self.expect_keyword("null")?;
            let e = Expr::IsNull { field };
            return Ok(if negated { Expr::Not(Box::new(e)) } else { e });
        }
        if kw == "not" {
            negated = true;
            let t2 = self.next_token()?;
            kw = keyword(&t2.kind).ok_or_else(|| {
                FilterError::at(
                    t2.at,
                    format!(
                        "expected an operator after \"not\", found {}",
                        t2.kind.describe()
                    ),
                )
            })?;
        }
        let e = match kw.as_str() {
            "in" => {
                self.expect(&Tok::LBracket, "\"[\"")?;
                let mut values = Vec::new();
                if self.peek().map(|t| &t.kind) != Some(&Tok::RBracket) {
                    loop {
                        let (vt, v) = self.value()?;
                        let v = v.ok_or_else(|| FilterError::at(vt, "null cannot be in a list"))?;
                        values.push(coerce(ty, Op::Eq, v, vt, &field.path)?);
                        if self.peek().map(|t| &t.kind) == Some(&Tok::Comma) {
                            self.pos += 1;
                        } else {
                            break;
                        }
                    }
                }
                self.expect(&Tok::RBracket, "\"]\"")?;
                Expr::In { field, values }
            }
            "between" => {
                let (lt, lo) = self.value()?;
                let lo = lo.ok_or_else(|| FilterError::at(lt, "between needs values"))?;
                self.expect_keyword("and")?;
                let (ht, hi) = self.value()?;
                let hi = hi.ok_or_else(|| FilterError::at(ht, "between needs values"))?;
                Expr::Between {
                    lo: coerce(ty, Op::Ge, lo, lt, &field.path)?,
                    hi: coerce(ty, Op::Le, hi, ht, &field.path)?,
                    field,
                }
            }
            other => {
                let op = match other {
                    "contains" => Op::Contains,
                    "icontains" => Op::IContains,
                    "startswith" => Op::StartsWith,
                    "istartswith" => Op::IStartsWith,
                    "endswith" => Op::EndsWith,
                    "iendswith" => Op::IEndsWith,
                    _ => {
                        return Err(FilterError::at(
                            t.at,
                            format!("unknown operator {other:?} after field at position {at}"),
                        ));
                    }
                };
                let (vt, v) = self.value()?;
                let v = v.ok_or_else(|| FilterError::at(vt, "null cannot be matched"))?;
                Expr::Cmp {
                    value: coerce(ty, op, v, vt, &field.path)?,
                    field,
                    op,
                }
            }
        };
        Ok(if negated { Expr::Not(Box::new(e)) } else { e })
    }

    /// A value; `None` is `null`.
    fn value(&mut self) -> Result<(usize, Option<Raw>), FilterError> {
        let t = self.next_token()?;
        let v = match t.kind {
            Tok::Str(s) => Some(Raw::Str(s)),
            Tok::Num(n) => Some(Raw::Num(n)),
            Tok::DateTime(s) => Some(Raw::Time(s)),
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => Some(Raw::Bool(true)),
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => Some(Raw::Bool(false)),
            Tok::Ident(s) if s.eq_ignore_ascii_case("null") => None,
            other => {
                return Err(FilterError::at(
                    t.at,
                    format!(
                        "expected a value (a \"string\", number, true, false, null or datetime(…)), found {}",
                        other.describe()
                    ),
                ));
            }
        };
        Ok((t.at, v))
    }
}

/// A value as written, before it is checked against the field's type.
enum Raw {
    Str(String),
    Num(f64),
    Bool(bool),
    Time(String),
}

fn parse_time(s: &str, at: usize) -> Result<OffsetDateTime, FilterError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
        FilterError::at(
            at,
            format!("{s:?} is not an RFC 3339 time such as 2024-01-31T12:00:00Z"),
        )
    })
}

/// Checks `raw` against the field type and operator and converts it.
fn coerce(ty: FieldType, op: Op, raw: Raw, at: usize, path: &str) -> Result<Literal, FilterError> {
    let mismatch =
        |what: &str| FilterError::at(at, format!("field {path:?} cannot be compared with {what}"));
    if op.is_string_match() && !matches!(ty, FieldType::String | FieldType::Set | FieldType::Any) {
        return Err(FilterError::at(
            at,
            format!("string matching needs a text field; {path:?} is not one"),
        ));
    }
    match (ty, raw) {
        (FieldType::String | FieldType::Set, Raw::Str(s)) => Ok(Literal::Str(s)),
        (FieldType::Number, Raw::Num(n)) => Ok(Literal::Num(n)),
        (FieldType::Bool, Raw::Bool(b)) if matches!(op, Op::Eq | Op::Ne) => Ok(Literal::Bool(b)),
        (FieldType::Bool, Raw::Bool(_)) => Err(FilterError::at(
            at,
            format!("field {path:?} is a boolean: use = or !="),
        )),
        (FieldType::DateTime, Raw::Str(s) | Raw::Time(s)) => Ok(Literal::Time(parse_time(&s, at)?)),
        (FieldType::Any, Raw::Str(s)) => Ok(Literal::Str(s)),
        (FieldType::Any, Raw::Num(n)) => Ok(Literal::Num(n)),
        (FieldType::Any, Raw::Bool(b)) => Ok(Literal::Bool(b)),
        (FieldType::Any, Raw::Time(s)) => Ok(Literal::Time(parse_time(&s, at)?)),
        (_, Raw::Str(_)) => Err(mismatch("a string")),
        (_, Raw::Num(_)) => Err(mismatch("a number")),
        (_, Raw::Bool(_)) => Err(mismatch("a boolean")),
        (_, Raw::Time(_)) => Err(mismatch("a datetime")),
    }
}
