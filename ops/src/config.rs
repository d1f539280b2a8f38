//! Configuration files in sections, and the flat keys of earlier versions: both the
//! controller and the router read TOML in sections (`[http]`, `[edge]`, …) and still
//! accept the flat keys they took before, each moved to where it belongs now and
//! reported as deprecated.

/// A flat key of an earlier version and where it lives now: `(old key, section, key in
/// the section)`.
pub type FlatKey = (&'static str, &'static str, &'static str);

/// Why flat keys cannot be moved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct FlatKeyError {
    /// The flat key.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// Moves each of `keys` found at the top of `table` into its section, creating the
/// section when absent; returns what it moved as `(old key, "[section] key")`, in the
/// order of `keys`. A key set both ways, or a section that is not a table, is an error.
pub fn move_flat_keys(
    table: &mut toml::Table,
    keys: &[FlatKey],
) -> Result<Vec<(String, String)>, FlatKeyError> {
    let mut moved = Vec::new();
    for (old, section, new) in keys {
        let Some(value) = table.remove(*old) else {
            continue;
        };
        let place = format!("[{section}] {new}");
        let error = |reason: String| FlatKeyError {
            key: (*old).to_owned(),
            reason,
        };
        let entry = table
            .entry((*section).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(sub) = entry.as_table_mut() else {
            return Err(error(format!("`{section}` must be a section")));
        };
        if sub.contains_key(*new) {
            return Err(error(format!("set both as `{old}` and as {place}")));
        }
        sub.insert((*new).to_owned(), value);
        moved.push(((*old).to_owned(), place));
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[FlatKey] = &[("listen", "http", "listen"), ("limit", "http", "max")];

    #[test]
    fn flat_keys_move_to_their_sections() {
        let mut table: toml::Table = "listen = \"a\"\nother = 1\n[http]\nmax = 2\n"
            .parse()
            .unwrap();
        let err = move_flat_keys(&mut table.clone(), &[("other", "http", "max")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "other: set both as `other` and as [http] max"
        );
        let moved = move_flat_keys(&mut table, KEYS).unwrap();
        assert_eq!(moved, [("listen".to_owned(), "[http] listen".to_owned())]);
        assert_eq!(table["http"]["listen"].as_str(), Some("a"));
        assert_eq!(table["http"]["max"].as_integer(), Some(2));
        assert_eq!(table["other"].as_integer(), Some(1));
        assert!(!table.contains_key("listen"));

        let mut not_a_section: toml::Table = "http = 3\nlisten = \"a\"\n".parse().unwrap();
        let err = move_flat_keys(&mut not_a_section, KEYS).unwrap_err();
        assert_eq!(err.reason, "`http` must be a section");
    }
}
