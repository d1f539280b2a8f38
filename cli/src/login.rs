//! `weft login`, `weft edge use` and `weft logout`: saved logins, as `ziti edge login`,
//! `ziti edge use` and `ziti edge logout` keep them.
//!
//! A login is a password (`-u`, and `-p` or a prompt without echo, or a line on
//! standard input when it is not a terminal) or a client certificate (`--client-cert`
//! and `--client-key`, or an identity file with `--file`). The controller's CA comes
//! from `--ca`, the identity file, an earlier login to the same URL, or the controller
//! itself on first use, after asking (or `-y`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use super::client::{self, Api, CliConfig, DEFAULT_LOGIN, Logins};
use super::{CliError, enroll, output};

/// Options of `weft login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Controller URL, e.g. https://localhost:1280 (with `--file`, default: the
    /// identity's controller).
    pub url: Option<String>,
    /// User name (password login).
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password; without it, asked for without echo on a terminal, else read as one
    /// line from standard input.
    #[arg(short = 'p', long, requires = "username")]
    pub password: Option<String>,
    /// PEM file of the CA to trust; without it the CA the controller serves at
    /// `/.well-known/est/cacerts` is trusted on first use, after asking.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Trust the CA the controller serves without asking.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Client certificate (PEM) for a certificate login.
    #[arg(
        short = 'c',
        long,
        requires = "client_key",
        conflicts_with = "username"
    )]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(short = 'k', long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// An identity file (from `weft edge enroll`) for a certificate login; its CA is
    /// trusted.
    #[arg(short = 'f', long, conflicts_with_all = ["username", "client_cert", "ca"])]
    pub file: Option<PathBuf>,
    /// A TOTP code, for identities with MFA (asked for on a terminal when the
    /// controller wants one and this is absent).
    #[arg(long)]
    pub totp: Option<String>,
}

/// The TOTP code for an MFA query: `--totp`, else asked for on a terminal.
fn totp_code(given: Option<String>) -> client::TotpSource {
    Box::new(move || match given.clone() {
        Some(code) => Ok(code),
        None if std::io::stdin().is_terminal() => {
            eprint!("Enter TOTP code: ");
            read_line()
        }
        None => Err(CliError::Usage(
            "the controller asks for a TOTP code (MFA); give it with --totp CODE".into(),
        )),
    })
}

/// `https://` prepended when the URL has no scheme (as `ziti edge login` does); no
/// trailing slash.
fn normalize(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    }
}

/// One line of standard input without its line end.
fn read_line() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

fn ask(prompt: &str) -> Result<String, CliError> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    read_line()
}

/// The certificates of a PEM bundle, one line each: common name and SHA-1
/// fingerprint.
fn describe(ca_pem: &str) -> Vec<String> {
    weft_tls::pem::certificates(ca_pem.as_bytes())
        .map(|certs| {
            certs
                .iter()
                .map(|c| {
                    format!(
                        "  {} (SHA-1 {})",
                        weft_tls::client::common_name(c.as_ref())
                            .unwrap_or_else(|| "(no common name)".into()),
                        weft_tls::fingerprint(c.as_ref())
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The CA bundle to trust for `url`: `--ca`, else what the controller serves when an
/// earlier login to `url` trusted the same, else what it serves once the user agrees
/// (`-y`, or a `y` on a terminal).
async fn trusted_ca(url: &str, args: &LoginArgs, saved: &Logins) -> Result<String, CliError> {
    if let Some(path) = &args.ca {
        return std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("--ca {}: {e}", path.display())));
    }
    let served = client::fetch_ca_bundle_unverified(url).await?;
    let same_url: Vec<&CliConfig> = saved.logins.values().filter(|l| l.url == url).collect();
    if same_url.iter().any(|l| l.ca_pem == served) {
        return Ok(served);
    }
    if same_url.is_empty() {
        eprintln!("The controller at {url} serves a certificate authority not trusted yet:");
    } else {
        eprintln!(
            "WARNING: the controller at {url} serves a certificate authority other than the \
             one an earlier login trusted:"
        );
    }
    for line in describe(&served) {
        eprintln!("{line}");
    }
    if args.yes {
        eprintln!("Trusting it (-y).");
        return Ok(served);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "not trusting the certificate authority of {url} without asking, and standard input \
             is not a terminal: pass --ca FILE (e.g. the controller's pki/root-ca.cert.pem), or \
             -y to trust what it serves"
        )));
    }
    let answer = ask("Trust this certificate authority? [y/N] ")?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(served)
    } else {
        Err(CliError::Usage(format!(
            "not trusting the certificate authority of {url}: not logged in (pass --ca FILE to \
             name the CA to trust)"
        )))
    }
}

/// The password: `-p`, else asked without echo on a terminal, else a line of
/// standard input.
fn password(given: Option<String>) -> Result<String, CliError> {
    secret(
        given,
        "Enter password: ",
        "no password: pass -p, type it when asked, or give it on standard input",
    )
}

/// A secret: `given`, else asked with `prompt` without echo on a terminal, else a line
/// of standard input; an empty one is refused with `missing`.
pub(crate) fn secret(
    given: Option<String>,
    prompt: &str,
    missing: &str,
) -> Result<String, CliError> {
    let value = match given {
        Some(v) => v,
        None if std::io::stdin().is_terminal() => rpassword::prompt_password(prompt)?,
        None => read_line()?,
    };
    if value.is_empty() {
        return Err(CliError::Usage(missing.into()));
    }
    Ok(value)
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    Ok(std::path::absolute(path)?)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Runs `weft login`: authenticates and saves the login as `name` (default
/// [`DEFAULT_LOGIN`]), which becomes current.
pub async fn login(args: LoginArgs, name: Option<&str>) -> Result<(), CliError> {
    let name = name.unwrap_or(DEFAULT_LOGIN);
    let saved = Logins::load()?;
    let mut cfg = CliConfig {
        login_time: Some(now_rfc3339()),
        ..CliConfig::default()
    };
    if let Some(file) = &args.file {
        let identity = enroll::load_identity(file)?;
        let url = normalize(args.url.as_deref().unwrap_or_else(|| identity.controller()));
        cfg.token = client::login_cert(
            &url,
            identity.controller_tls()?,
            totp_code(args.totp.clone()),
        )
        .await?;
        cfg.ca_pem = identity.ca_pem().to_owned();
        cfg.identity_file = Some(absolute(file)?);
        cfg.url = url;
    } else {
        let url = normalize(args.url.as_deref().ok_or_else(|| {
            CliError::Usage("the controller URL is needed (or --file IDENTITY)".into())
        })?);
        let username = match (&args.username, &args.client_cert) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(_)) => None,
            (None, None) if std::io::stdin().is_terminal() => Some(ask("Enter username: ")?),
            (None, None) => {
                return Err(CliError::Usage(
                    "a user name is needed: -u NAME (or --client-cert and --client-key, or \
                     --file IDENTITY)"
                        .into(),
                ));
            }
        };
        let ca_pem = trusted_ca(&url, &args, &saved).await?;
        if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
            let read = |p: &Path| {
                std::fs::read_to_string(p)
                    .map_err(|e| CliError::Usage(format!("{}: {e}", p.display())))
            };
            let identity =
                weft_identity::Identity::from_pem(url.clone(), read(cert)?, read(key)?, &ca_pem)?;
            cfg.token = client::login_cert(
                &url,
                identity.controller_tls()?,
                totp_code(args.totp.clone()),
            )
            .await?;
            cfg.client_cert = Some((absolute(cert)?, absolute(key)?));
        } else {
            let username = username.unwrap_or_default();
            let password = password(args.password)?;
            cfg.token = client::login(
                &url,
                &ca_pem,
                &username,
                &password,
                totp_code(args.totp.clone()),
            )
            .await?;
            cfg.username = Some(username);
        }
        cfg.ca_pem = ca_pem;
        cfg.url = url;
    }
    let path = cfg.save_as(name)?;
    println!(
        "logged in to {} as {}; saved as login {name:?} (current) in {}",
        cfg.url,
        cfg.who(),
        path.display()
    );
    Ok(())
}

/// Runs `weft edge use`: lists the saved logins, or makes `name` current.
pub fn use_login(name: Option<String>) -> Result<(), CliError> {
    let mut logins = Logins::load()?;
    let Some(name) = name else {
        if logins.logins.is_empty() {
            println!("no saved logins: run `weft login`");
            return Ok(());
        }
        let rows: Vec<Vec<String>> = logins
            .logins
            .iter()
            .map(|(n, l)| {
                let current = logins.current.as_deref() == Some(n.as_str());
                vec![
                    n.clone(),
                    if current { "*" } else { "" }.to_owned(),
                    l.url.clone(),
                    l.who(),
                    l.login_time
                        .as_ref()
                        .map_or_else(|| "-".to_owned(), |t| output::plain_time(&t.clone().into())),
                ]
            })
            .collect();
        output::print_columns(&["NAME", "CURRENT", "URL", "AS", "LOGGED IN"], &rows);
        return Ok(());
    };
    let url = match logins.logins.get(&name) {
        Some(l) => l.url.clone(),
        None => return Err(logins.unknown(&name)),
    };
    logins.current = Some(name.clone());
    let path = logins.save()?;
    println!(
        "using login {name:?} ({url}) from now on; saved in {}",
        path.display()
    );
    Ok(())
}

/// Runs `weft logout`: ends the session of login `name` (or the current one) on its
/// controller where it can be reached, and removes the saved login.
pub async fn logout(name: Option<&str>) -> Result<(), CliError> {
    let mut logins = Logins::load()?;
    let (name, cfg) = logins.get(name)?;
    let ended = match Api::from_config(&name, cfg.clone()) {
        Ok(api) => api.logout().await,
        Err(e) => Err(e),
    };
    logins.logins.remove(&name);
    if logins.current.as_deref() == Some(name.as_str()) {
        logins.current = None;
    }
    let path = logins.save()?;
    let session = match ended {
        Ok(()) => "session ended".to_owned(),
        Err(CliError::SessionExpired(_)) => "the session had already expired".to_owned(),
        Err(e) => format!("the session could not be ended on the controller: {e}"),
    };
    println!(
        "logged out of {} ({session}); removed login {name:?} from {}",
        cfg.url,
        path.display()
    );
    if logins.current.is_none() && !logins.logins.is_empty() {
        let names: Vec<&str> = logins.logins.keys().map(String::as_str).collect();
        println!(
            "no login is current now: `weft edge use NAME` picks one of {}",
            names.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_get_https_and_lose_the_trailing_slash() {
        assert_eq!(
            super::normalize("localhost:1280/"),
            "https://localhost:1280"
        );
        assert_eq!(
            super::normalize("https://ctl.example:443"),
            "https://ctl.example:443"
        );
    }
}
