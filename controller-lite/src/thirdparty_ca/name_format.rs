//! `identityNameFormat`: the names of identities a 3rd-party CA enrolls automatically
//! (openziti/ziti `controller/model/enrollment_mod_ca.go`; placeholders as
//! openziti/edge-api `source/management/cas.yml` documents them). Plain substitution of
//! `[caName]`, `[caId]`, `[commonName]`, `[requestedName]` (the name the client asked
//! for, else the new identity's id) and `[identityId]`; a blank format is
//! [`DEFAULT_FORMAT`]. When the name is taken, a six-digit counter is appended, each
//! further collision appending to the name already suffixed, as OpenZiti does.

/// The format of a CA without one.
pub const DEFAULT_FORMAT: &str = "[caName]-[commonName]";

/// Most collisions tried before giving up (each adds six characters).
pub const MAX_ATTEMPTS: u32 = 32;

/// What the placeholders stand for.
#[derive(Debug, Clone, Copy)]
pub struct NameInputs<'a> {
    /// The CA's name.
    pub ca_name: &'a str,
    /// The CA's id.
    pub ca_id: &'a str,
    /// The client certificate's common name.
    pub common_name: &'a str,
    /// The name the enrolling client asked for, if any.
    pub requested_name: Option<&'a str>,
    /// The id the new identity will have.
    pub identity_id: &'a str,
}

/// The name `format` gives.
pub fn format_name(format: &str, inputs: &NameInputs<'_>) -> String {
    let format = if format.trim().is_empty() {
        DEFAULT_FORMAT
    } else {
        format
    };
    let requested = inputs
        .requested_name
        .filter(|n| !n.is_empty())
        .unwrap_or(inputs.identity_id);
    // One pass, so that a value holding a placeholder is never substituted again.
    let mut out = String::with_capacity(format.len() + 32);
    let mut rest = format;
    'outer: while !rest.is_empty() {
        for (placeholder, value) in [
            ("[caName]", inputs.ca_name),
            ("[caId]", inputs.ca_id),
            ("[commonName]", inputs.common_name),
            ("[requestedName]", requested),
            ("[identityId]", inputs.identity_id),
        ] {
            if let Some(after) = rest.strip_prefix(placeholder) {
                out.push_str(value);
                rest = after;
                continue 'outer;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// The candidate name after `attempt` collisions (0: `base` itself).
pub fn candidate(base: &str, attempt: u32) -> String {
    let mut name = base.to_owned();
    for n in 1..=attempt {
        name.push_str(&format!("{n:06}"));
    }
    name
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn inputs<'a>(requested: Option<&'a str>) -> NameInputs<'a> {
        NameInputs {
            ca_name: "corp",
            ca_id: "c1",
            common_name: "laptop",
            requested_name: requested,
            identity_id: "i9",
        }
    }

    #[test]
    fn placeholders_are_substituted() {
        assert_eq!(format_name("", &inputs(None)), "corp-laptop");
        assert_eq!(format_name("  ", &inputs(None)), "corp-laptop");
        assert_eq!(
            format_name("[caId]/[identityId]/[requestedName]", &inputs(None)),
            "c1/i9/i9"
        );
        assert_eq!(
            format_name("[requestedName]@[caName]", &inputs(Some("bob"))),
            "bob@corp"
        );
        assert_eq!(format_name("x[unknown]y", &inputs(None)), "x[unknown]y");
        // A value holding a placeholder stays as it is.
        let mut i = inputs(None);
        i.common_name = "[caName]";
        assert_eq!(format_name("[commonName]", &i), "[caName]");
    }

    #[test]
    fn collisions_append_counters() {
        assert_eq!(candidate("n", 0), "n");
        assert_eq!(candidate("n", 1), "n000001");
        assert_eq!(candidate("n", 2), "n000001000002");
    }

    proptest! {
        /// Text without placeholders is kept as it is; formatting never panics.
        #[test]
        fn text_without_brackets_is_kept(format in "[^\\[]{0,40}", cn in ".{0,20}") {
            let mut i = inputs(None);
            i.common_name = &cn;
            let out = format_name(&format, &i);
            if !format.trim().is_empty() {
                prop_assert_eq!(out, format);
            }
        }

        /// Every candidate is distinct and starts with the base.
        #[test]
        fn candidates_are_distinct(base in "[a-z]{1,10}", a in 0u32..10, b in 0u32..10) {
            prop_assert!(candidate(&base, a).starts_with(&base));
            prop_assert_eq!(candidate(&base, a) == candidate(&base, b), a == b);
        }
    }
}
