use serde_json::{Value, json};

use super::*;

fn fields() -> Fields {
    Fields::base()
        .with("roleAttributes", FieldType::Set)
        .with("isAdmin", FieldType::Bool)
        .with("cost", FieldType::Number)
        .with("type", FieldType::String)
}

fn docs() -> Vec<Value> {
    vec![
        json!({"id": "1", "name": "alpha", "isAdmin": true, "cost": 5, "type": "User",
               "roleAttributes": ["a", "b"], "tags": {"env": "prod"},
               "createdAt": "2024-01-01T00:00:00.000Z", "updatedAt": "2024-01-01T00:00:00.000Z"}),
        json!({"id": "2", "name": "Beta", "isAdmin": false, "cost": 10, "type": "Device",
               "roleAttributes": ["b"], "tags": {},
               "createdAt": "2024-02-01T00:00:00.000Z", "updatedAt": "2024-02-01T00:00:00.000Z"}),
        json!({"id": "3", "name": "gamma", "isAdmin": false, "cost": 1, "type": "User",
               "roleAttributes": [], "tags": {"env": "dev"},
               "createdAt": "2024-03-01T00:00:00.000Z", "updatedAt": "2024-03-01T00:00:00.000Z"}),
    ]
}

fn ids(filter: &str) -> Vec<String> {
    let q = parse(filter, &fields()).unwrap_or_else(|e| panic!("{filter}: {e}"));
    let mut out: Vec<Value> = docs().into_iter().filter(|d| q.matches(d)).collect();
    if !q.sort.is_empty() {
        out.sort_by(|a, b| compare_docs(&q.sort, a, b));
    }
    out.iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn comparisons_and_string_matches() {
    assert_eq!(ids(r#"name = "alpha""#), ["1"]);
    assert_eq!(ids(r#"name="alpha""#), ["1"]);
    assert_eq!(ids(r#"name != "alpha""#), ["2", "3"]);
    assert_eq!(ids(r#"name contains "a""#), ["1", "2", "3"]);
    assert_eq!(ids(r#"name contains "B""#), ["2"]);
    assert_eq!(ids(r#"name icontains "b""#), ["2"]);
    assert_eq!(ids(r#"name not contains "ph""#), ["2", "3"]);
    assert_eq!(ids(r#"name startswith "g""#), ["3"]);
    assert_eq!(ids(r#"name iendswith "TA""#), ["2"]);
    assert_eq!(ids("cost > 4"), ["1", "2"]);
    assert_eq!(ids("cost <= 5 and cost >= 5"), ["1"]);
    assert_eq!(ids("isAdmin = true"), ["1"]);
    assert_eq!(ids("isAdmin != true"), ["2", "3"]);
    assert_eq!(ids("cost between 2 and 10"), ["1", "2"]);
    assert_eq!(
        ids(r#"createdAt > datetime(2024-01-15T00:00:00Z)"#),
        ["2", "3"]
    );
    assert_eq!(ids(r#"createdAt < "2024-01-15T00:00:00Z""#), ["1"]);
}

#[test]
fn in_lists_sets_tags_and_null() {
    assert_eq!(ids(r#"name in ["alpha", "gamma"]"#), ["1", "3"]);
    assert_eq!(ids(r#"name not in ["alpha", "gamma"]"#), ["2"]);
    assert_eq!(ids(r#"id in []"#), Vec::<String>::new());
    assert_eq!(ids(r#"anyOf(roleAttributes) = "b""#), ["1", "2"]);
    assert_eq!(ids(r#"roleAttributes = "a""#), ["1"]);
    assert_eq!(ids(r#"allOf(roleAttributes) = "b""#), ["2", "3"]);
    assert_eq!(ids(r#"anyOf(roleAttributes) in ["a", "x"]"#), ["1"]);
    assert_eq!(ids(r#"tags.env = "prod""#), ["1"]);
    assert_eq!(ids("tags.env is null"), ["2"]);
    assert_eq!(ids("tags.env is not null"), ["1", "3"]);
    assert_eq!(ids("tags.env = null"), ["2"]);
}

#[test]
fn boolean_logic_precedence_and_case() {
    assert_eq!(
        ids(r#"name = "alpha" or name = "Beta" and isAdmin = true"#),
        ["1"]
    );
    assert_eq!(
        ids(r#"(name = "alpha" or name = "Beta") AND isAdmin = false"#),
        ["2"]
    );
    assert_eq!(ids(r#"NOT (type = "User")"#), ["2"]);
    assert_eq!(ids("true"), ["1", "2", "3"]);
    assert_eq!(ids("false"), Vec::<String>::new());
}

#[test]
fn sort_skip_limit_clauses() {
    assert_eq!(ids("sort by cost"), ["3", "1", "2"]);
    assert_eq!(ids("true sort by cost desc"), ["2", "1", "3"]);
    assert_eq!(ids(r#"type = "User" sort by createdAt desc"#), ["3", "1"]);
    assert_eq!(ids("sort by type asc, name desc"), ["2", "3", "1"]);
    let q = parse("sort by name skip 1 limit 2", &fields()).unwrap();
    assert_eq!((q.skip, q.limit), (Some(1), Some(Limit::Count(2))));
    let q = parse("limit none", &fields()).unwrap();
    assert_eq!(q.limit, Some(Limit::None));
    assert!(q.predicate.is_none());
    let keys = parse_sort("createdAt desc, name", &fields()).unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys[0].descending);
}

#[test]
fn errors_are_clear() {
    let err = |f: &str| parse(f, &fields()).unwrap_err();
    assert!(err("bogus").message.contains("unknown field \"bogus\""));
    assert!(err(r#"nope = "x""#).message.contains("known fields"));
    assert!(err(r#"name = "x"#).message.contains("unterminated"));
    assert!(err("name = x").message.contains("expected a value"));
    assert!(
        err(r#"isAdmin = "yes""#)
            .message
            .contains("cannot be compared")
    );
    assert!(err("cost contains \"1\"").message.contains("text field"));
    assert!(err(r#"name = "a" and"#).message.contains("end of filter"));
    assert!(
        err(r#"name = "a" name = "b""#)
            .message
            .contains("unexpected")
    );
    assert!(err(r#"anyOf(name) = "a""#).message.contains("list field"));
    assert!(
        err(r#"createdAt > "yesterday""#)
            .message
            .contains("RFC 3339")
    );
    assert!(err("tags = 1").message.contains("object"));
    assert!(err("name ~ 1").message.contains("unexpected character"));
    assert!(err(r#"(name = "a""#).message.contains("end of filter"));
    assert!(err("limit -1").message.contains("non-negative"));
    let deep = format!("{}name = \"a\"{}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(err(&deep).message.contains("deeper"));
    assert!(err(&"not ".repeat(100_000)).message.contains("deeper"));
    assert_eq!(
        ids(&format!("{}true{}", "(".repeat(60), ")".repeat(60))).len(),
        3
    );
    let e = parse_sort("roleAttributes", &fields()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Sort);
    let e = err(r#"name = "x" sort by nope"#);
    assert_eq!(e.kind, ErrorKind::Sort);
    assert_eq!(err(r#"name = "x" bogus"#).at, Some(11));
}

#[test]
fn schema_fields() {
    let schema = json!({
        "properties": {
            "isAdmin": {"type": "boolean"},
            "cost": {"type": "integer", "format": "uint16"},
            "roleAttributes": {"type": "array", "items": {"type": "string"}},
            "appData": {"type": "object"},
            "semantic": {"$ref": "#/$defs/Semantic"},
            "precedence": {"type": ["string", "null"]},
        },
        "$defs": {"Semantic": {"type": "string", "enum": ["AllOf", "AnyOf"]}},
    });
    let f = Fields::base().with_schema(&schema);
    assert_eq!(f.lookup("isAdmin"), Some(FieldType::Bool));
    assert_eq!(f.lookup("cost"), Some(FieldType::Number));
    assert_eq!(f.lookup("roleAttributes"), Some(FieldType::Set));
    assert_eq!(f.lookup("appData.x"), Some(FieldType::Any));
    assert_eq!(f.lookup("semantic"), Some(FieldType::String));
    assert_eq!(f.lookup("precedence"), Some(FieldType::String));
    assert_eq!(f.lookup("createdAt"), Some(FieldType::DateTime));
    assert_eq!(f.lookup("nope"), None);
}
