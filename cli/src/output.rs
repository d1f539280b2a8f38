//! How `weft edge list` prints: a table, or the JSON array (`--output json`); dates
//! printed plainly; files written by `-o FILE`.

use std::path::Path;

use serde_json::Value;

use super::CliError;

/// Output formats of lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A table of id, name and role fields.
    Table,
    /// The JSON array of the entities, as the API returns them.
    Json,
}

impl Format {
    /// Parses `--output`; `-j` forces JSON.
    pub fn parse(output: &str, json_flag: bool) -> Result<Self, CliError> {
        match (json_flag, output) {
            (true, _) | (false, "json") => Ok(Self::Json),
            (false, "table") => Ok(Self::Table),
            (false, other) => Err(CliError::Usage(format!(
                "--output must be table or json, not {other:?}"
            ))),
        }
    }
}

/// Prints a listing of entities of type `kind` (the collection name, e.g.
/// `edge-routers`) in `format`; a table ends with its [`results`] line.
pub fn print_listed(
    listed: crate::client::Listed,
    kind: &str,
    format: Format,
) -> Result<(), CliError> {
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&Value::Array(listed.items))
                .map_err(|e| CliError::Config(e.to_string()))?;
            println!("{text}");
        }
        Format::Table => {
            for line in table(kind, &listed.items) {
                println!("{line}");
            }
            println!(
                "{}",
                results(listed.offset, listed.items.len(), listed.total)
            );
        }
    }
    Ok(())
}

/// `results: FIRST-LAST of TOTAL` (1-based), or `results: none`, as `ziti` ends a list.
pub fn results(offset: u64, shown: usize, total: u64) -> String {
    if shown == 0 {
        return "results: none".to_owned();
    }
    format!(
        "results: {}-{} of {total}",
        offset + 1,
        offset + shown as u64
    )
}

/// The second column: the name, or what identifies a record without one.
fn label(it: &Value) -> String {
    ["name", "username", "method", "type"]
        .iter()
        .find_map(|k| it.get(*k).and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned()
}

/// Role fields and how a table labels them (role attributes need no label).
const ROLE_FIELDS: &[(&str, &str)] = &[
    ("roleAttributes", ""),
    ("identityRoles", "identities: "),
    ("serviceRoles", "services: "),
    ("edgeRouterRoles", "edge routers: "),
    ("postureCheckRoles", "posture checks: "),
];

/// The attributes and roles of an entity as plain text: `a, b` for role attributes,
/// `identities: #a, @b; services: #s` for a policy's roles (no JSON quotes).
fn roles(it: &Value) -> String {
    ROLE_FIELDS
        .iter()
        .filter_map(|(key, label)| {
            let values: Vec<String> = it
                .get(*key)?
                .as_array()?
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect();
            (!values.is_empty()).then(|| format!("{label}{}", values.join(", ")))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Prints `weft edge list summary`: the count of each entity type (`data` of
/// `GET /summary`), by type name, or the object as JSON.
pub fn print_summary(data: &Value, format: Format) -> Result<(), CliError> {
    let Some(counts) = data.as_object() else {
        return Err(CliError::Config(format!(
            "the controller's summary is not an object: {data}"
        )));
    };
    match format {
        Format::Json => {
            let text =
                serde_json::to_string_pretty(data).map_err(|e| CliError::Config(e.to_string()))?;
            println!("{text}");
        }
        Format::Table => {
            let mut rows: Vec<Vec<String>> = counts
                .iter()
                .map(|(k, v)| vec![k.clone(), v.to_string()])
                .collect();
            rows.sort();
            print_columns(&["TYPE", "COUNT"], &rows);
        }
    }
    Ok(())
}

/// A JSON value as a table cell: strings without quotes, nothing for null.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        other => other.to_string(),
    }
}

/// The name of a reference object (`{id, name, …}`), or `id` when it has none.
fn reference(it: &Value, field: &str, id: &str) -> String {
    it[field]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map_or_else(|| cell(&it[id]), str::to_owned)
}

/// The lines of the table of `weft edge list` for entities of type `kind`: columns
/// chosen per type, as `ziti edge list` does (id, name and roles otherwise).
fn table(kind: &str, items: &[Value]) -> Vec<String> {
    type Row = fn(&Value) -> Vec<String>;
    let (headers, row): (&[&str], Row) = match kind {
        "edge-routers" => (
            &["ID", "NAME", "ONLINE", "ADDRESS", "COST", "ATTRIBUTES"],
            |it| {
                vec![
                    cell(&it["id"]),
                    label(it),
                    cell(&it["isOnline"]),
                    cell(&it["supportedProtocols"]["tls"]),
                    cell(&it["cost"]),
                    roles(it),
                ]
            },
        ),
        "service-policies" => (&["ID", "NAME", "TYPE", "ROLES"], |it| {
            vec![cell(&it["id"]), label(it), cell(&it["type"]), roles(it)]
        }),
        "sessions" => (&["ID", "IDENTITY", "SERVICE", "TYPE", "CREATED"], |it| {
            vec![
                cell(&it["id"]),
                reference(it, "identity", "identityId"),
                reference(it, "service", "serviceId"),
                cell(&it["type"]),
                plain_time(&it["createdAt"]),
            ]
        }),
        "api-sessions" => (&["ID", "IDENTITY", "ADDRESS", "LAST ACTIVITY"], |it| {
            vec![
                cell(&it["id"]),
                reference(it, "identity", "identityId"),
                cell(&it["ipAddress"]),
                plain_time(&it["lastActivityAt"]),
            ]
        }),
        "enrollments" | "authenticators" => (&["ID", "IDENTITY", "METHOD", "EXPIRES"], |it| {
            vec![
                cell(&it["id"]),
                reference(it, "identity", "identityId"),
                cell(&it["method"]),
                plain_time(&it["expiresAt"]),
            ]
        }),
        "service-configs" => (&["SERVICE", "CONFIG"], |it| {
            vec![
                reference(it, "service", "serviceId"),
                reference(it, "config", "configId"),
            ]
        }),
        _ => (&["ID", "NAME", "ATTRIBUTES/ROLES"], |it| {
            vec![cell(&it["id"]), label(it), roles(it)]
        }),
    };
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    columns(headers, &rows)
}

/// The lines of a table with `headers` and `rows`, each column as wide as its widest
/// cell (by display width), two spaces apart, no borders, no trailing spaces.
pub fn columns(headers: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        // One row per line whatever the terminal's width: lists are also piped.
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(headers.iter().copied())
        .add_rows(rows.iter().map(|r| r.iter().map(String::as_str)));
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.trim_fmt().lines().map(str::to_owned).collect()
}

/// Prints [`columns`].
pub fn print_columns(headers: &[&str], rows: &[Vec<String>]) {
    for line in columns(headers, rows) {
        println!("{line}");
    }
}

/// An RFC 3339 time printed plainly (`2026-12-06 10:42:07 UTC`, whole seconds);
/// anything else as is (`-` for null).
pub fn plain_time(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s,
        Value::Null => return "-".to_owned(),
        other => return other.to_string(),
    };
    let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
    else {
        return s.clone();
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Refuses an existing `path` unless `force`: checked before anything is created on
/// the controller, so a refused command changes nothing.
pub fn check_output(path: &Path, force: bool) -> Result<(), CliError> {
    if !force && path.exists() {
        return Err(exists(path));
    }
    Ok(())
}

fn exists(path: &Path) -> CliError {
    CliError::Usage(format!(
        "{} exists: pass --force to overwrite it",
        path.display()
    ))
}

/// Writes `content` to the `-o` file `path`, owner-only (tokens and keys are
/// credentials): a new file, or with `force` replacing an existing one atomically.
pub fn write_output(path: &Path, content: &[u8], force: bool) -> Result<(), CliError> {
    let written = if force {
        weft_identity::secret::replace_secret(path, content)
    } else {
        weft_identity::secret::write_secret(path, content)
    };
    written.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => exists(path),
        _ => CliError::Usage(format!("cannot write {}: {e}", path.display())),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;

    #[test]
    fn tables_show_roles_unquoted_and_end_with_the_results_line() {
        let items = [
            json!({"id": "i1", "name": "alice", "roleAttributes": ["dialers", "users"]}),
            json!({"id": "p1", "name": "dial", "identityRoles": ["#dialers", "@bob"],
                   "serviceRoles": ["#svc"], "postureCheckRoles": []}),
        ];
        assert_eq!(
            super::table("identities", &items),
            [
                "ID  NAME   ATTRIBUTES/ROLES",
                "i1  alice  dialers, users",
                "p1  dial   identities: #dialers, @bob; services: #svc",
            ]
        );
        assert_eq!(super::results(0, 2, 2), "results: 1-2 of 2");
        assert_eq!(super::results(20, 5, 100), "results: 21-25 of 100");
        assert_eq!(super::results(0, 0, 0), "results: none");
    }

    #[test]
    fn routers_policies_and_enrollments_have_their_own_columns() {
        let routers = [
            json!({"id": "r1", "name": "er1", "isOnline": true, "cost": 0,
            "supportedProtocols": {"tls": "tls://er1.example:3022"}, "roleAttributes": ["edge"]}),
        ];
        assert_eq!(
            super::table("edge-routers", &routers),
            [
                "ID  NAME  ONLINE  ADDRESS                 COST  ATTRIBUTES",
                "r1  er1   yes     tls://er1.example:3022  0     edge",
            ]
        );
        let policies = [json!({"id": "p1", "name": "dial", "type": "Dial",
            "identityRoles": ["#a"], "serviceRoles": ["@s"]})];
        assert_eq!(
            super::table("service-policies", &policies)[1],
            "p1  dial  Dial  identities: #a; services: @s"
        );
        let enrollments = [json!({"id": "e1", "method": "ott", "identityId": "i1",
            "identity": {"id": "i1", "name": "alice"}, "expiresAt": "2026-12-07T00:00:00Z"})];
        assert_eq!(
            super::table("enrollments", &enrollments)[1],
            "e1  alice     ott     2026-12-07 00:00:00 UTC"
        );
    }

    #[test]
    fn sessions_and_api_sessions_name_their_identity_and_service() {
        let sessions = [json!({"id": "s1", "type": "Dial", "identityId": "i1",
            "identity": {"id": "i1", "name": "alice"}, "serviceId": "v1",
            "service": {"id": "v1", "name": "echo"}, "createdAt": "2026-12-07T00:00:00Z"})];
        assert_eq!(
            super::table("sessions", &sessions),
            [
                "ID  IDENTITY  SERVICE  TYPE  CREATED",
                "s1  alice     echo     Dial  2026-12-07 00:00:00 UTC",
            ]
        );
        // Without the reference objects, the ids stand in.
        let bare = [
            json!({"id": "s2", "type": "Bind", "identityId": "i2", "serviceId": "v2",
            "createdAt": "2026-12-07T00:00:00Z"}),
        ];
        assert_eq!(
            super::table("sessions", &bare)[1],
            "s2  i2        v2       Bind  2026-12-07 00:00:00 UTC"
        );
        let api_sessions = [json!({"id": "a1", "identityId": "i1",
            "identity": {"id": "i1", "name": "alice"}, "ipAddress": "127.0.0.1",
            "lastActivityAt": "2026-12-07T00:00:01Z"})];
        assert_eq!(
            super::table("api-sessions", &api_sessions)[1],
            "a1  alice     127.0.0.1  2026-12-07 00:00:01 UTC"
        );
    }

    #[test]
    fn times_print_plainly() {
        assert_eq!(
            super::plain_time(&json!("2026-12-06T02:14:43.123456789Z")),
            "2026-12-06 02:14:43 UTC"
        );
        assert_eq!(
            super::plain_time(&json!("2026-12-06T03:14:43+01:00")),
            "2026-12-06 02:14:43 UTC"
        );
        assert_eq!(super::plain_time(&json!("soon")), "soon");
        assert_eq!(super::plain_time(&json!(null)), "-");
    }

    #[test]
    fn output_files_are_not_overwritten_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jwt");
        super::check_output(&path, false).unwrap();
        super::write_output(&path, b"one", false).unwrap();
        let err = super::check_output(&path, false).unwrap_err();
        assert!(err.to_string().contains("pass --force"), "{err}");
        let err = super::write_output(&path, b"two", false).unwrap_err();
        assert!(err.to_string().contains("pass --force"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        super::check_output(&path, true).unwrap();
        super::write_output(&path, b"two", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = vec![
            vec!["a".to_owned(), "long cell".to_owned(), "x".to_owned()],
            vec!["bbbbbb".to_owned(), "c".to_owned(), "last".to_owned()],
        ];
        assert_eq!(
            super::columns(&["ID", "NAME", "END"], &rows),
            [
                "ID      NAME       END",
                "a       long cell  x",
                "bbbbbb  c          last",
            ]
        );
    }
}
