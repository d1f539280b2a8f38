//! Errors as one line for a person: every binary prints its fatal error this way.

/// The error and each cause in its chain that its message does not already contain
/// (many errors embed their source's text in their own message, and also keep it as
/// their source), joined by `: `.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Embeds(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Chains(#[source] std::io::Error);

    #[test]
    fn causes_appear_once() {
        let io = || std::io::Error::other("inner");
        assert_eq!(super::one_line(&Embeds(io())), "outer: inner");
        assert_eq!(super::one_line(&Chains(io())), "outer: inner");
    }
}
