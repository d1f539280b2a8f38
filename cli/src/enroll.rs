//! `weft edge enroll JWT -o identity.json` (as `ziti edge enroll`): one-time-token
//! enrollment of an identity, and reading identity files where a command takes
//! `--identity`, with a hint when it is given the enrollment token instead.

use std::path::{Path, PathBuf};

use weft_identity::Identity;

use super::{CliError, output};

/// Options of `weft edge enroll`.
#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// The enrollment token file (what `weft edge create identity … -o FILE` wrote).
    pub jwt: PathBuf,
    /// Where to write the identity file (mode 0600: it holds the private key);
    /// default: the token file's name with `.json`.
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
    /// Overwrite the `-o` file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Remove the token file once the identity is enrolled.
    #[arg(long = "rm")]
    pub remove_jwt: bool,
}

/// What a file given as an identity turned out to hold.
enum FileKind {
    /// An enrollment token with this method (`ott`, `erott`, …).
    Token(String),
    /// Something else (an identity document, or garbage for the JSON parser to name).
    Other,
}

fn kind_of(text: &str) -> FileKind {
    let text = text.trim();
    if text.starts_with('{') {
        return FileKind::Other;
    }
    match weft_identity::claims::unverified_claims(text) {
        Ok(claims) => FileKind::Token(claims.em),
        Err(_) => FileKind::Other,
    }
}

/// The identity file a token file would be enrolled into: the token's name with `.json`.
fn default_out(jwt: &Path) -> PathBuf {
    jwt.with_extension("json")
}

/// The hint for a token given where an identity file belongs.
fn token_hint(path: &Path, method: &str) -> String {
    if method == "erott" {
        return format!(
            "{} is an edge router's enrollment token, not an identity file: enroll the router \
             with `weft-router enroll --jwt {} --config router.toml`",
            path.display(),
            path.display()
        );
    }
    let out = default_out(path);
    format!(
        "{} is an enrollment token (JWT), not an identity file: enroll it first with \
         `weft edge enroll {} -o {}`, then use {}",
        path.display(),
        path.display(),
        out.display(),
        out.display()
    )
}

/// Loads the identity file at `path` (what `--identity` takes); an enrollment token
/// there is refused with a hint to run `weft edge enroll` first.
pub fn load_identity(path: &Path) -> Result<Identity, CliError> {
    if let Ok(text) = std::fs::read_to_string(path) {
        if let FileKind::Token(method) = kind_of(&text) {
            return Err(CliError::Usage(token_hint(path, &method)));
        }
    }
    Ok(Identity::load(path)?)
}

/// Runs `weft edge enroll`: enrolls the token's identity with its controller and
/// writes the identity file.
pub async fn run(args: EnrollArgs) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&args.jwt)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", args.jwt.display())))?;
    match kind_of(&text) {
        FileKind::Token(method) if method == "erott" => {
            return Err(CliError::Usage(format!(
                "{} is an edge router's enrollment token: enroll the router with \
                 `weft-router enroll --jwt {} --config router.toml`",
                args.jwt.display(),
                args.jwt.display()
            )));
        }
        FileKind::Token(_) => {}
        FileKind::Other => {
            let what = if Identity::load(&args.jwt).is_ok() {
                "an identity file already enrolled"
            } else {
                "not an enrollment token (JWT)"
            };
            return Err(CliError::Usage(format!("{} is {what}", args.jwt.display())));
        }
    }
    let out = args.out.unwrap_or_else(|| default_out(&args.jwt));
    // Refuse before the token is spent: a one-time token enrolls once.
    output::check_output(&out, args.force)?;
    let identity = weft_identity::enroll_ott(&text).await?;
    let mut json = identity.to_json();
    json.push('\n');
    output::write_output(&out, json.as_bytes(), args.force)?;
    // The certificate names the identity by its id (its common name).
    let id = identity.name()?;
    println!(
        "enrolled identity {id} with {}; identity file written to {} (owner-only)",
        identity.controller(),
        out.display()
    );
    if args.remove_jwt {
        std::fs::remove_file(&args.jwt)?;
        println!("removed {}", args.jwt.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_told_from_identity_documents() {
        // Only the claims are read: {"em":"ott","iss":"https://c:1","sub":"s","jti":"j","exp":1}.
        let jwt = "eyJhbGciOiJSUzI1NiJ9.\
                   eyJlbSI6Im90dCIsImlzcyI6Imh0dHBzOi8vYzoxIiwic3ViIjoicyIsImp0aSI6ImoiLCJleHAiOjF9.sig";
        assert!(matches!(kind_of(&format!("{jwt}\n")), FileKind::Token(m) if m == "ott"));
        assert!(matches!(kind_of(r#"{"ztAPI": "x"}"#), FileKind::Other));
        assert!(matches!(kind_of("garbage"), FileKind::Other));
        let hint = token_hint(Path::new("dir/alice.jwt"), "ott");
        assert!(
            hint.contains("weft edge enroll dir/alice.jwt -o dir/alice.json"),
            "{hint}"
        );
        assert!(token_hint(Path::new("er.jwt"), "erott").contains("weft-router enroll"));
    }
}
