//! How `weft edge list` prints: a table, or the JSON array (`--output json`).

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

/// Prints `items` in `format`.
pub fn print(items: Vec<Value>, format: Format) -> Result<(), CliError> {
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&Value::Array(items))
                .map_err(|e| CliError::Config(e.to_string()))?;
            println!("{text}");
        }
        Format::Table => print_table(&items),
    }
    Ok(())
}

/// The second column: the name, or what identifies a record without one.
fn label(it: &Value) -> String {
    ["name", "username", "method", "type"]
        .iter()
        .find_map(|k| it.get(*k).and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned()
}

fn print_table(items: &[Value]) {
    println!("{:<34} {:<32} ATTRIBUTES/ROLES", "ID", "NAME");
    for it in items {
        let extra: Vec<String> = [
            "roleAttributes",
            "identityRoles",
            "serviceRoles",
            "edgeRouterRoles",
        ]
        .iter()
        .filter_map(|k| {
            it.get(*k)
                .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        })
        .map(Value::to_string)
        .collect();
        println!(
            "{:<34} {:<32} {}",
            it["id"].as_str().unwrap_or_default(),
            label(it),
            extra.join(" ")
        );
    }
}

/// The lines of a table with `headers` and `rows`, each column as wide as its widest
/// cell, two spaces apart (the last column unpadded).
pub fn columns(headers: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let pad = w.saturating_sub(cell.chars().count()) + 2;
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out
    };
    std::iter::once(line(headers.to_vec()))
        .chain(
            rows.iter()
                .map(|r| line(r.iter().map(String::as_str).collect())),
        )
        .collect()
}

/// Prints [`columns`].
pub fn print_columns(headers: &[&str], rows: &[Vec<String>]) {
    for line in columns(headers, rows) {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
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
