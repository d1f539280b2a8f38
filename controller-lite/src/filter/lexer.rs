//! Tokens of the filter language.

use super::FilterError;

/// One token with the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    /// What was read.
    pub(super) kind: Tok,
    /// Byte offset in the filter text.
    pub(super) at: usize,
}

/// Token kinds.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// An identifier or keyword (keywords are recognised by the parser, case-insensitively).
    Ident(String),
    /// A double-quoted string, unescaped.
    Str(String),
    /// A number.
    Num(f64),
    /// `datetime(…)`: the raw text between the parentheses.
    DateTime(String),
    /// `=`, `!=`, `<`, `<=`, `>`, `>=`.
    Op(&'static str),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
}

impl Tok {
    /// How the token reads in an error message.
    pub(super) fn describe(&self) -> String {
        match self {
            Self::Ident(s) => format!("{s:?}"),
            Self::Str(s) => format!("string {s:?}"),
            Self::Num(n) => format!("number {n}"),
            Self::DateTime(s) => format!("datetime({s})"),
            Self::Op(o) => format!("{o:?}"),
            Self::LParen => "\"(\"".into(),
            Self::RParen => "\")\"".into(),
            Self::LBracket => "\"[\"".into(),
            Self::RBracket => "\"]\"".into(),
            Self::Comma => "\",\"".into(),
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Splits `text` into tokens.
pub(super) fn tokenize(text: &str) -> Result<Vec<Token>, FilterError> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            ',' => Some(Tok::Comma),
            '=' => Some(Tok::Op("=")),
            _ => None,
        };
        if let Some(kind) = single {
            chars.next();
            out.push(Token { kind, at });
            continue;
        }
        if matches!(c, '<' | '>' | '!') {
            chars.next();
            let eq = chars.peek().is_some_and(|&(_, n)| n == '=');
            if eq {
                chars.next();
            }
            let op = match (c, eq) {
                ('<', false) => "<",
                ('<', true) => "<=",
                ('>', false) => ">",
                ('>', true) => ">=",
                ('!', true) => "!=",
                _ => return Err(FilterError::at(at, "\"!\" must be followed by \"=\"")),
            };
            out.push(Token {
                kind: Tok::Op(op),
                at,
            });
            continue;
        }
        if c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err(FilterError::at(at, "unterminated string")),
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, e @ ('"' | '\\'))) => s.push(e),
                        Some((_, 'n')) => s.push('\n'),
                        Some((_, 't')) => s.push('\t'),
                        Some((p, e)) => {
                            return Err(FilterError::at(p, format!("unknown escape \\{e}")));
                        }
                        None => return Err(FilterError::at(at, "unterminated string")),
                    },
                    Some((_, ch)) => s.push(ch),
                }
            }
            out.push(Token {
                kind: Tok::Str(s),
                at,
            });
            continue;
        }
        if c.is_ascii_digit() || c == '-' {
            let mut s = String::new();
            while let Some(&(_, ch)) = chars.peek() {
                if ch.is_ascii_digit() || ch == '.' || (ch == '-' && s.is_empty()) {
                    s.push(ch);
                    chars.next();
                } else {
                    break;
                }
            }
            let n = s
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or_else(|| FilterError::at(at, format!("invalid number {s:?}")))?;
            out.push(Token {
                kind: Tok::Num(n),
                at,
            });
            continue;
        }
        if is_ident_start(c) {
            let mut s = String::new();
            while let Some(&(_, ch)) = chars.peek() {
                if is_ident_char(ch) {
                    s.push(ch);
                    chars.next();
                } else {
                    break;
                }
            }
            if s.eq_ignore_ascii_case("datetime") && chars.peek().is_some_and(|&(_, n)| n == '(') {
                chars.next();
                let mut raw = String::new();
                loop {
                    match chars.next() {
                        None => return Err(FilterError::at(at, "unterminated datetime(")),
                        Some((_, ')')) => break,
                        Some((_, ch)) => raw.push(ch),
                    }
                }
                out.push(Token {
                    kind: Tok::DateTime(raw.trim().to_owned()),
                    at,
                });
            } else {
                out.push(Token {
                    kind: Tok::Ident(s),
                    at,
                });
            }
            continue;
        }
        return Err(FilterError::at(at, format!("unexpected character {c:?}")));
    }
    Ok(out)
}
