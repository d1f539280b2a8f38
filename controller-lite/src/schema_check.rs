//! Checking config data against its config type's JSON schema, as OpenZiti does when a
//! config is created or updated.
//!
//! A subset of JSON Schema (draft 7 / 2020-12 keywords): `type`, `enum`, `const`,
//! `properties`, `required`, `additionalProperties`, `items`, `minItems`, `maxItems`,
//! `uniqueItems`, `minLength`, `maxLength`, `minimum`, `maximum`, `exclusiveMinimum`,
//! `exclusiveMaximum`, `allOf`, `anyOf`, `oneOf`, `not` and local `$ref`s
//! (`#/definitions/…`, `#/$defs/…`). Other keywords (`format`, `pattern`, …) are not
//! checked. An empty schema accepts everything.
//!
//! [`check_all`] is the same check reporting every offending place, used for OpenZiti's
//! response contract ([`crate::api::contract`]).

use std::cell::{Cell, RefCell};

use serde_json::{Map, Value};

/// Deepest schema nesting followed (a `$ref` cycle or a hostile schema stops here).
const MAX_DEPTH: usize = 64;
/// Most (sub)schema checks one call makes (`anyOf` over `$ref` cycles would otherwise
/// take exponential time).
const MAX_STEPS: usize = 100_000;

/// Checks `data` against `schema`; the error names the first offending place.
pub fn check(schema: &Value, data: &Value) -> Result<(), String> {
    Checker::new(schema, false).check(schema, data, "data", 0)
}

/// Checks `data` (named `at` in the messages) against `schema`, whose `$ref`s resolve in
/// `root`, and returns every offending place of objects and arrays, not only the first
/// (the branches of `anyOf`, `oneOf` and `not` still stop at their first). The messages
/// name the JSON type of an offending value, never the value itself (responses hold
/// tokens and keys), except for values outside an `enum` or `const`.
pub fn check_all<'s>(root: &'s Value, schema: &'s Value, data: &Value, at: &str) -> Vec<String> {
    let checker = Checker::new(root, true);
    let first = checker.check(schema, data, at, 0);
    let mut errors = checker.more.into_inner();
    errors.extend(first.err());
    errors
}

struct Checker<'s> {
    root: &'s Value,
    steps: Cell<usize>,
    /// Go on past an offending property or item, keeping its error in `more`.
    all: Cell<bool>,
    /// Show values in messages (else their JSON type).
    values: bool,
    more: RefCell<Vec<String>>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.as_f64().is_some_and(|n| n.fract() == 0.0),
        _ => true,
    }
}

/// `{"type": "null"}`.
fn is_null_type(schema: &Value) -> bool {
    schema
        .as_object()
        .is_some_and(|m| m.len() == 1 && m.get("type").and_then(Value::as_str) == Some("null"))
}

fn num(schema: &Map<String, Value>, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

impl<'s> Checker<'s> {
    fn new(root: &'s Value, all: bool) -> Self {
        Self {
            root,
            steps: Cell::new(0),
            all: Cell::new(all),
            values: !all,
            more: RefCell::new(Vec::new()),
        }
    }

    fn show(&self, v: &Value) -> String {
        if self.values {
            v.to_string()
        } else {
            type_name(v).to_owned()
        }
    }

    /// Keeps `e` and goes on (in `all` mode), or stops with it.
    fn keep(&self, e: Result<(), String>) -> Result<(), String> {
        match e {
            Err(e) if self.all.get() => {
                self.more.borrow_mut().push(e);
                Ok(())
            }
            other => other,
        }
    }

    fn resolve(&self, reference: &str) -> Option<&'s Value> {
        let path = reference.strip_prefix("#/")?;
        path.split('/').try_fold(self.root, |cur, part| {
            cur.get(part.replace("~1", "/").replace("~0", "~"))
        })
    }

    fn check(&self, schema: &'s Value, v: &Value, at: &str, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("{at}: the schema nests too deeply"));
        }
        self.steps.set(self.steps.get() + 1);
        if self.steps.get() > MAX_STEPS {
            return Err(format!("{at}: the schema is too costly to check"));
        }
        let s = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => return Err(format!("{at}: no value is allowed here")),
            Value::Object(s) => s,
            _ => return Ok(()),
        };
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let target = self
                .resolve(r)
                .ok_or_else(|| format!("{at}: the schema's $ref {r:?} does not resolve"))?;
            self.check(target, v, at, depth + 1)?;
        }
        match s.get("type") {
            Some(Value::String(t)) if !type_matches(t, v) => {
                return Err(format!("{at}: expected {t}, found {}", self.show(v)));
            }
            Some(Value::Array(ts))
                if !ts
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|t| type_matches(t, v)) =>
            {
                return Err(format!(
                    "{at}: expected one of {}, found {}",
                    Value::Array(ts.clone()),
                    self.show(v)
                ));
            }
            _ => {}
        }
        if let Some(options) = s.get("enum").and_then(Value::as_array) {
            if !options.contains(v) {
                return Err(format!(
                    "{at}: {v} is not one of {}",
                    Value::Array(options.clone())
                ));
            }
        }
        if let Some(c) = s.get("const") {
            if c != v {
                return Err(format!("{at}: must be {c}"));
            }
        }
        match v {
            Value::Object(o) => self.check_object(s, o, at, depth)?,
            Value::Array(items) => self.check_array(s, items, at, depth)?,
            Value::String(text) => {
                let len = text.chars().count() as f64;
                if num(s, "minLength").is_some_and(|m| len < m) {
                    return Err(format!("{at}: shorter than {} characters", s["minLength"]));
                }
                if num(s, "maxLength").is_some_and(|m| len > m) {
                    return Err(format!("{at}: longer than {} characters", s["maxLength"]));
                }
            }
            Value::Number(n) => {
                let n = n.as_f64().unwrap_or(f64::NAN);
                let bound = |key: &str, bad: fn(f64, f64) -> bool| {
                    num(s, key)
                        .filter(|b| bad(n, *b))
                        .map(|b| format!("{at}: {n} violates {key} {b}"))
                };
                if let Some(e) = bound("minimum", |n, b| n < b)
                    .or_else(|| bound("maximum", |n, b| n > b))
                    .or_else(|| bound("exclusiveMinimum", |n, b| n <= b))
                    .or_else(|| bound("exclusiveMaximum", |n, b| n >= b))
                {
                    return Err(e);
                }
            }
            _ => {}
        }
        self.check_combinators(s, v, at, depth)
    }

    fn check_object(
        &self,
        s: &'s Map<String, Value>,
        o: &Map<String, Value>,
        at: &str,
        depth: usize,
    ) -> Result<(), String> {
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = r.as_str() {
                if !o.contains_key(name) {
                    self.keep(Err(format!("{at}: {name} is required")))?;
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (key, value) in o {
            let here = format!("{at}.{key}");
            match props.and_then(|p| p.get(key)) {
                Some(sub) => self.keep(self.check(sub, value, &here, depth + 1))?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        self.keep(Err(format!("{at}: unknown property {key:?}")))?;
                    }
                    Some(sub @ Value::Object(_)) => {
                        self.keep(self.check(sub, value, &here, depth + 1))?;
                    }
                    _ => {}
                },
            }
        }
        Ok(())
    }

    fn check_array(
        &self,
        s: &'s Map<String, Value>,
        items: &[Value],
        at: &str,
        depth: usize,
    ) -> Result<(), String> {
        let len = items.len() as f64;
        if num(s, "minItems").is_some_and(|m| len < m) {
            return Err(format!("{at}: fewer than {} items", s["minItems"]));
        }
        if num(s, "maxItems").is_some_and(|m| len > m) {
            return Err(format!("{at}: more than {} items", s["maxItems"]));
        }
        if s.get("uniqueItems") == Some(&Value::Bool(true)) {
            for (i, item) in items.iter().enumerate() {
                if items.iter().take(i).any(|x| x == item) {
                    return Err(format!("{at}: {} appears twice", self.show(item)));
                }
            }
        }
        if let Some(sub @ (Value::Object(_) | Value::Bool(_))) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.keep(self.check(sub, item, &format!("{at}[{i}]"), depth + 1))?;
            }
        }
        Ok(())
    }

    /// The combinators, each branch stopping at its first error (a failing branch of
    /// `anyOf` is no error of the whole).
    fn check_combinators(
        &self,
        s: &'s Map<String, Value>,
        v: &Value,
        at: &str,
        depth: usize,
    ) -> Result<(), String> {
        // `anyOf: [{type: null}, S]` (a nullable S) on a value that is not null is S:
        // its errors are S's, not "matches none".
        let nullable_of = match s.get("anyOf").and_then(Value::as_array).map(Vec::as_slice) {
            Some([a, b]) if !v.is_null() && is_null_type(a) => Some(b),
            Some([a, b]) if !v.is_null() && is_null_type(b) => Some(a),
            _ => None,
        };
        if let Some(sub) = nullable_of {
            self.check(sub, v, at, depth + 1)?;
        }
        let all = self.all.replace(false);
        let result = self.combinators(s, v, at, depth, nullable_of.is_none());
        self.all.set(all);
        result
    }

    fn combinators(
        &self,
        s: &'s Map<String, Value>,
        v: &Value,
        at: &str,
        depth: usize,
        any_of: bool,
    ) -> Result<(), String> {
        let list = |key: &str| s.get(key).and_then(Value::as_array);
        for sub in list("allOf").into_iter().flatten() {
            self.check(sub, v, at, depth + 1)?;
        }
        if let Some(subs) = list("anyOf").filter(|_| any_of) {
            if !subs
                .iter()
                .any(|sub| self.check(sub, v, at, depth + 1).is_ok())
            {
                return Err(format!("{at}: matches none of the allowed forms (anyOf)"));
            }
        }
        if let Some(subs) = list("oneOf") {
            let n = subs
                .iter()
                .filter(|sub| self.check(sub, v, at, depth + 1).is_ok())
                .count();
            if n != 1 {
                return Err(format!(
                    "{at}: must match exactly one of the allowed forms (oneOf), matches {n}"
                ));
            }
        }
        if let Some(sub) = s.get("not") {
            if self.check(sub, v, at, depth + 1).is_ok() {
                return Err(format!("{at}: matches a forbidden form (not)"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{check, check_all};

    fn intercept_like() -> serde_json::Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["protocols", "addresses", "portRanges"],
            "properties": {
                "protocols": {"type": "array", "minItems": 1, "uniqueItems": true,
                              "items": {"enum": ["tcp", "udp"]}},
                "addresses": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                "portRanges": {"type": "array", "items": {"$ref": "#/definitions/portRange"}},
                "dialOptions": {"type": ["object", "null"]},
            },
            "definitions": {
                "port": {"type": "integer", "minimum": 0, "maximum": 65535},
                "portRange": {"type": "object", "required": ["low", "high"],
                              "properties": {"low": {"$ref": "#/definitions/port"},
                                             "high": {"$ref": "#/definitions/port"}}},
            },
        })
    }

    #[test]
    fn valid_data_passes() {
        let s = intercept_like();
        let ok = json!({"protocols": ["tcp"], "addresses": ["echo.weft"],
                        "portRanges": [{"low": 80, "high": 80}], "dialOptions": null});
        assert_eq!(check(&s, &ok), Ok(()));
        assert_eq!(check(&json!({}), &json!({"anything": [1, 2]})), Ok(()));
    }

    #[test]
    fn errors_name_the_place() {
        let s = intercept_like();
        let bad = |v: serde_json::Value| check(&s, &v).unwrap_err();
        let base = json!({"protocols": ["tcp"], "addresses": ["a"], "portRanges": []});
        let with = |k: &str, v: serde_json::Value| {
            let mut d = base.clone();
            d[k] = v;
            d
        };
        assert!(bad(json!({"protocols": ["tcp"]})).contains("addresses is required"));
        assert!(bad(with("protocols", json!(["sctp"]))).contains("data.protocols[0]"));
        assert!(bad(with("protocols", json!([]))).contains("fewer than 1"));
        assert!(bad(with("protocols", json!(["tcp", "tcp"]))).contains("twice"));
        assert!(
            bad(with("portRanges", json!([{"low": 1, "high": 70000}])))
                .contains("data.portRanges[0].high")
        );
        assert!(bad(with("portRanges", json!([{"low": 1.5, "high": 2}]))).contains("integer"));
        assert!(bad(with("extra", json!(1))).contains("unknown property \"extra\""));
        assert!(bad(with("addresses", json!([""]))).contains("shorter"));
    }

    #[test]
    fn check_all_reports_every_place_without_values() {
        let root = json!({"definitions": {
            "ref": {"type": "object", "required": ["id", "name"],
                    "properties": {"id": {"type": "string"}, "name": {"type": "string"}}},
            "detail": {"type": "object", "required": ["token", "service", "tags", "list"],
                       "properties": {
                           "token": {"type": "string"},
                           "service": {"$ref": "#/definitions/ref"},
                           "tags": {"anyOf": [{"type": "null"}, {"$ref": "#/definitions/ref"}]},
                           "list": {"type": "array", "items": {"type": "integer"}},
                           "kind": {"type": "string", "enum": ["Dial", "Bind"]}}},
        }});
        let schema = json!({"$ref": "#/definitions/detail"});
        let ok = json!({"token": "t", "service": {"id": "1", "name": "s"}, "tags": null,
                        "list": [1, 2], "kind": "Dial"});
        assert!(check_all(&root, &schema, &ok, "data").is_empty());
        let bad = json!({"token": 7, "service": {"id": "1", "name": null},
                         "tags": {"id": "secret-token-value"}, "list": [1, "x"], "kind": "Both"});
        let errors = check_all(&root, &schema, &bad, "data");
        for e in [
            "data.token: expected string, found a number",
            "data.service.name: expected string, found null",
            "data.tags: name is required",
            "data.list[1]: expected integer, found a string",
            "data.kind: \"Both\" is not one of [\"Dial\",\"Bind\"]",
        ] {
            assert!(errors.iter().any(|x| x == e), "{e} not in {errors:?}");
        }
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(!errors.iter().any(|e| e.contains("secret")), "{errors:?}");
        let missing = check_all(&root, &schema, &json!({}), "data");
        assert_eq!(missing.len(), 4, "{missing:?}");
        // `check` still stops at the first error.
        assert!(
            check(
                &json!({"type": "object", "required": ["a", "b"]}),
                &json!({})
            )
            .unwrap_err()
            .contains("a is required")
        );
    }

    #[test]
    fn combinators_and_hostile_schemas() {
        let s = json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
        assert!(check(&s, &json!("x")).is_ok());
        assert!(check(&s, &json!(true)).is_err());
        let s = json!({"anyOf": [{"minimum": 10}, {"maximum": 1}], "not": {"const": 0}});
        assert!(check(&s, &json!(11)).is_ok());
        assert!(check(&s, &json!(5)).is_err());
        assert!(check(&s, &json!(0)).is_err());
        let cyclic =
            json!({"$ref": "#/definitions/a", "definitions": {"a": {"$ref": "#/definitions/a"}}});
        assert!(
            check(&cyclic, &json!(1))
                .unwrap_err()
                .contains("too deeply")
        );
        assert!(
            check(&json!({"$ref": "#/nope"}), &json!(1))
                .unwrap_err()
                .contains("does not resolve")
        );
        assert!(check(&json!(false), &json!(1)).is_err());
        let explosive = json!({"$ref": "#/definitions/a", "definitions": {"a": {"anyOf": [
            {"$ref": "#/definitions/a"}, {"$ref": "#/definitions/a"}]}}});
        assert!(check(&explosive, &json!(1)).is_err());
    }
}
