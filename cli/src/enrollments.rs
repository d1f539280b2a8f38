//! Enrollments and one's own password: `weft edge create enrollment ott|ottca|updb`,
//! `weft edge refresh enrollment`, `weft edge re-enroll edge-router` and `weft edge
//! update authenticator updb` (after `ziti edge create enrollment`, `ziti edge
//! re-enroll edge-router` and `ziti edge update authenticator updb`).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{Api, CliError};
use crate::login::secret;
use crate::output;

/// Where an enrollment's JWT goes and for how long it lasts.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Minutes until the token expires (the controller's enrollment lifetime when
    /// absent).
    #[arg(short = 'd', long = "duration")]
    pub duration_minutes: Option<u32>,
    /// Write the enrollment JWT to this file (owner-only).
    #[arg(short = 'o', long = "jwt-output-file")]
    pub output: Option<PathBuf>,
    /// Overwrite the `-o` file if it exists.
    #[arg(long, requires = "output")]
    pub force: bool,
}

/// `weft edge create enrollment …`: a new enrollment for an existing identity.
#[derive(Debug, Subcommand)]
pub enum EnrollmentCommand {
    /// A one-time token that enrolls a key pair for a certificate (`ott`).
    Ott {
        /// The identity (name or id).
        identity: String,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// A one-time token redeemed with a certificate of a 3rd-party CA (`ottca`).
    Ottca {
        /// The identity (name or id).
        identity: String,
        /// The CA (name or id).
        ca: String,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// A one-time token that sets the first password of USERNAME (`updb`).
    Updb {
        /// The identity (name or id).
        identity: String,
        /// The user name the password will belong to.
        username: String,
        #[command(flatten)]
        token: TokenArgs,
    },
}

/// `weft edge refresh …`.
#[derive(Debug, Subcommand)]
pub enum RefreshCommand {
    /// A new token and JWT for a pending enrollment, with a new expiry; the old token
    /// stops working.
    Enrollment {
        /// The enrollment's id (`weft edge list enrollments`).
        id: String,
        #[command(flatten)]
        token: TokenArgs,
    },
}

/// `weft edge re-enroll …`.
#[derive(Debug, Subcommand)]
pub enum ReEnrollCommand {
    /// Replace an edge router's certificate credential by a new enrollment token: the
    /// router is disconnected until `weft-router enroll` redeems it (new certificate
    /// names, a lost key).
    EdgeRouter {
        /// The router (name or id).
        router: String,
        /// Write the new enrollment JWT to this file (owner-only).
        #[arg(short = 'o', long = "jwt-output-file")]
        output: Option<PathBuf>,
        /// Overwrite the `-o` file if it exists.
        #[arg(long, requires = "output")]
        force: bool,
    },
}

/// `weft edge update authenticator …` (the logged-in identity's own).
#[derive(Debug, Subcommand)]
pub enum AuthenticatorCommand {
    /// Change one's password (and user name, with `--username`).
    Updb {
        /// The password now (asked when absent, without echo on a terminal).
        #[arg(short = 'p', long = "current-password")]
        current_password: Option<String>,
        /// The new password (asked when absent).
        #[arg(short = 'n', long = "new-password")]
        new_password: Option<String>,
        /// A new user name.
        #[arg(short = 'u', long)]
        username: Option<String>,
    },
}

/// The RFC 3339 time `minutes` from now.
fn expires_in(minutes: u32) -> Result<String, CliError> {
    let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(i64::from(minutes));
    at.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| CliError::Usage(format!("cannot write the expiry: {e}")))
}

/// Creates the enrollment; prints its id and writes its JWT to `-o`.
pub async fn create(api: &Api, cmd: &EnrollmentCommand) -> Result<(), CliError> {
    let (method, identity, token) = match cmd {
        EnrollmentCommand::Ott { identity, token } => ("ott", identity, token),
        EnrollmentCommand::Ottca {
            identity, token, ..
        } => ("ottca", identity, token),
        EnrollmentCommand::Updb {
            identity, token, ..
        } => ("updb", identity, token),
    };
    if let Some(path) = &token.output {
        output::check_output(path, token.force)?;
    }
    let identity_id = api.resolve("identities", identity, true).await?;
    let mut body = json!({"method": method, "identityId": identity_id});
    if let Some(minutes) = token.duration_minutes {
        body["expiresAt"] = json!(expires_in(minutes)?);
    }
    match cmd {
        EnrollmentCommand::Ottca { ca, .. } => {
            body["caId"] = json!(api.resolve("cas", ca, true).await?);
        }
        EnrollmentCommand::Updb { username, .. } => body["username"] = json!(username),
        EnrollmentCommand::Ott { .. } => {}
    }
    let v = api.post("enrollments", &body).await?;
    let id = v["data"]["id"].as_str().unwrap_or_default().to_owned();
    println!("New {method} enrollment for identity {identity} created with id: {id}");
    write_jwt(api, &id, token.output.as_deref(), token.force).await
}

/// Refreshes the enrollment `id`: a new token (the old one stops working) and expiry.
pub async fn refresh(api: &Api, cmd: &RefreshCommand) -> Result<(), CliError> {
    let RefreshCommand::Enrollment { id, token } = cmd;
    if let Some(path) = &token.output {
        output::check_output(path, token.force)?;
    }
    let expires_at = expires_in(token.duration_minutes.unwrap_or(24 * 60))?;
    api.post(
        &format!("enrollments/{id}/refresh"),
        &json!({"expiresAt": expires_at}),
    )
    .await?;
    println!("refreshed enrollment {id}");
    write_jwt(api, id, token.output.as_deref(), token.force).await
}

/// `weft edge re-enroll edge-router`: the new token's expiry, and its JWT to `-o`.
pub async fn re_enroll(api: &Api, cmd: &ReEnrollCommand) -> Result<(), CliError> {
    let ReEnrollCommand::EdgeRouter {
        router,
        output,
        force,
    } = cmd;
    if let Some(path) = output {
        output::check_output(path, *force)?;
    }
    let id = api.resolve("edge-routers", router, true).await?;
    api.post(&format!("edge-routers/{id}/re-enroll"), &json!({}))
        .await?;
    println!("re-enrolled edge router {router}: it is disconnected until it enrolls again");
    let v = api.get(&format!("edge-routers/{id}")).await?;
    save_token(
        &v["data"]["enrollmentJwt"],
        &v["data"]["enrollmentExpiresAt"],
        output.as_deref(),
        *force,
    )
}

/// Reads the enrollment's JWT and expiry; writes the JWT to `path`, if given.
async fn write_jwt(api: &Api, id: &str, path: Option<&Path>, force: bool) -> Result<(), CliError> {
    let v = api.get(&format!("enrollments/{id}")).await?;
    save_token(&v["data"]["jwt"], &v["data"]["expiresAt"], path, force)
}

/// Prints when an enrollment token expires; writes its `jwt` to `path`, if given.
fn save_token(
    jwt: &Value,
    expires: &Value,
    path: Option<&Path>,
    force: bool,
) -> Result<(), CliError> {
    let Some(path) = path else {
        println!("Enrollment expires at {}", output::plain_time(expires));
        return Ok(());
    };
    let jwt = jwt
        .as_str()
        .ok_or_else(|| CliError::Usage("the controller returned no enrollment JWT".into()))?;
    output::write_output(path, jwt.as_bytes(), force)?;
    println!(
        "Enrollment expires at {}; token written to {}",
        output::plain_time(expires),
        path.display()
    );
    Ok(())
}

/// Changes the logged-in identity's own password (its `updb` authenticator).
pub async fn change_password(api: &Api, cmd: &AuthenticatorCommand) -> Result<(), CliError> {
    let AuthenticatorCommand::Updb {
        current_password,
        new_password,
        username,
    } = cmd;
    let mine = api.get("current-identity/authenticators").await?;
    let updb: Vec<&Value> = mine["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["method"] == "updb")
        .collect();
    let Some(authenticator) = updb.first() else {
        return Err(CliError::Usage(
            "the logged-in identity has no password (updb) authenticator".into(),
        ));
    };
    let id = authenticator["id"].as_str().unwrap_or_default();
    let current = secret(
        current_password.clone(),
        "Current password: ",
        "no current password: pass -p or type it when asked",
    )?;
    let new = secret(
        new_password.clone(),
        "New password: ",
        "no new password: pass -n or type it when asked",
    )?;
    let mut body = json!({"currentPassword": current, "password": new});
    if let Some(u) = username {
        body["username"] = json!(u);
    }
    api.patch("current-identity/authenticators", id, &body)
        .await?;
    println!("password changed (authenticator {id})");
    Ok(())
}
