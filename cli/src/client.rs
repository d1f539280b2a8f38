//! HTTP client side of the CLI: the saved login, TLS trust and API calls.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// CLI errors.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Wrong usage.
    #[error("{0}")]
    Usage(String),
    /// Not logged in or broken config file.
    #[error("{0}")]
    Config(String),
    /// File error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Transport error.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// An SDK operation (tunnel, quickstart) failed.
    #[error(transparent)]
    Sdk(#[from] weft_sdk::Error),
    /// Enrollment or the controller's CA bundle failed.
    #[error(transparent)]
    Identity(#[from] weft_identity::IdentityError),
    /// The saved session is unknown to the controller (expired, or the controller
    /// forgot it); holds the command that logs in again.
    #[error("the session expired: log in again ({0})")]
    SessionExpired(String),
    /// An answer of the controller that is not of the expected shape.
    #[error("the controller's answer is not understood: {0}")]
    Answer(String),
    /// The data integrity check found problems it did not fix.
    #[error(
        "{0} data integrity problem(s) not fixed (run `weft edge check-integrity --fix` to repair what can be)"
    )]
    IntegrityProblems(usize),
    /// Error envelope from the controller.
    #[error("controller answered {status}: {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// OpenZiti error code.
        code: String,
        /// Message.
        message: String,
    },
}

/// One saved login: where, the session token, the CA trusted, and how to log in again.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CliConfig {
    /// Controller base URL.
    pub url: String,
    /// Management API session token.
    pub token: String,
    /// Trusted CA bundle (PEM).
    pub ca_pem: String,
    /// The user name of a password login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The identity file of a certificate login (`--file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// The certificate and key files of a certificate login (`--client-cert`,
    /// `--client-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// When the login was made (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_time: Option<String>,
}

/// The name a login is saved under when `--cli-identity` is not given.
pub const DEFAULT_LOGIN: &str = "default";

/// The saved logins (`$XDG_CONFIG_HOME/weft/config.json`, default
/// `~/.config/weft/config.json`; mode 0600: it holds session tokens), as `ziti`'s
/// `edgeIdentities` with a `default`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Logins {
    /// The login commands use unless `--cli-identity` names another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Logins by name.
    #[serde(default)]
    pub logins: BTreeMap<String, CliConfig>,
}

/// Where the saved logins live: `$XDG_CONFIG_HOME/weft/config.json` when that is set
/// to an absolute path (XDG Base Directory), else `$HOME/.config/weft/config.json`.
pub fn config_path() -> Result<PathBuf, CliError> {
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(xdg.join("weft/config.json"));
    }
    let home =
        std::env::var_os("HOME").ok_or_else(|| CliError::Config("HOME is not set".into()))?;
    Ok(PathBuf::from(home).join(".config/weft/config.json"))
}

impl Logins {
    /// Reads the saved logins; none when the file does not exist. A file of the
    /// earlier one-login format becomes the login [`DEFAULT_LOGIN`].
    pub fn load() -> Result<Self, CliError> {
        let path = config_path()?;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(CliError::Config(format!("{}: {e}", path.display()))),
        };
        let bad = |e: serde_json::Error| CliError::Config(format!("{}: {e}", path.display()));
        let v: Value = serde_json::from_str(&text).map_err(bad)?;
        if v.get("logins").is_some() {
            return serde_json::from_value(v).map_err(bad);
        }
        let one: CliConfig = serde_json::from_value(v).map_err(bad)?;
        Ok(Self {
            current: Some(DEFAULT_LOGIN.to_owned()),
            logins: BTreeMap::from([(DEFAULT_LOGIN.to_owned(), one)]),
        })
    }

    /// Writes the file (mode 0600, replaced atomically); returns its path.
    pub fn save(&self) -> Result<PathBuf, CliError> {
        let path = config_path()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text =
            serde_json::to_string_pretty(self).map_err(|e| CliError::Config(e.to_string()))?;
        weft_identity::secret::replace_secret(&path, text.as_bytes())?;
        Ok(path)
    }

    /// The login `name`, or the current one; a clear error when there is none.
    pub fn get(&self, name: Option<&str>) -> Result<(String, CliConfig), CliError> {
        let name = match name.or(self.current.as_deref()) {
            Some(name) => name,
            None if self.logins.is_empty() => {
                return Err(CliError::Config(format!(
                    "not logged in ({} has no login): run `weft login`",
                    config_path()?.display()
                )));
            }
            None => {
                return Err(CliError::Config(format!(
                    "no login is current: pick one with `weft edge use NAME` ({})",
                    self.names()
                )));
            }
        };
        self.logins
            .get(name)
            .map(|cfg| (name.to_owned(), cfg.clone()))
            .ok_or_else(|| self.unknown(name))
    }

    /// The error for a login `name` that is not saved.
    pub fn unknown(&self, name: &str) -> CliError {
        if self.logins.is_empty() {
            return CliError::Config(format!(
                "no saved login named {name:?} (none saved): run `weft login`"
            ));
        }
        CliError::Config(format!("no saved login named {name:?} ({})", self.names()))
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.logins.keys().map(String::as_str).collect();
        format!("saved: {}", names.join(", "))
    }
}

impl CliConfig {
    /// Saves this login as `name` and makes it current; returns the file's path.
    pub fn save_as(&self, name: &str) -> Result<PathBuf, CliError> {
        let mut logins = Logins::load()?;
        logins.logins.insert(name.to_owned(), self.clone());
        logins.current = Some(name.to_owned());
        logins.save()
    }

    /// The saved login `name`, or the current one.
    pub fn load(name: Option<&str>) -> Result<(String, Self), CliError> {
        Logins::load()?.get(name)
    }

    /// The command that logs in the same way again (secrets left out).
    pub fn login_command(&self, name: &str) -> String {
        let mut cmd = match (&self.identity_file, &self.client_cert, &self.username) {
            (Some(file), _, _) => format!("weft login --file {}", file.display()),
            (None, Some((cert, key)), _) => format!(
                "weft login {} --client-cert {} --client-key {}",
                self.url,
                cert.display(),
                key.display()
            ),
            (None, None, Some(user)) => format!("weft login {} -u {user}", self.url),
            (None, None, None) => format!("weft login {}", self.url),
        };
        if name != DEFAULT_LOGIN {
            cmd.push_str(&format!(" --cli-identity {name}"));
        }
        cmd
    }

    /// Who logged in: the user name, or the certificate or identity file.
    pub fn who(&self) -> String {
        match (&self.identity_file, &self.client_cert, &self.username) {
            (Some(file), _, _) => format!("identity file {}", file.display()),
            (None, Some((cert, _)), _) => format!("certificate {}", cert.display()),
            (None, None, Some(user)) => user.clone(),
            (None, None, None) => "-".to_owned(),
        }
    }
}

fn client_trusting(ca_pem: &str) -> Result<reqwest::Client, CliError> {
    let tls = weft_identity::bootstrap::verified_tls(ca_pem)
        .map_err(|e| CliError::Config(format!("bad CA bundle: {e}")))?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()?)
}

/// Fetches `/.well-known/est/cacerts`, trusting the controller's certificate on first
/// use, and returns the certificates as a PEM bundle.
pub async fn fetch_ca_bundle_unverified(url: &str) -> Result<String, CliError> {
    Ok(weft_identity::bootstrap::ca_bundle_trust_on_first_use(url).await?)
}

async fn envelope(res: reqwest::Response) -> Result<Value, CliError> {
    let status = res.status().as_u16();
    let v: Value = res.json().await?;
    if let Some(err) = v.get("error") {
        return Err(CliError::Api {
            status,
            code: err["code"].as_str().unwrap_or_default().into(),
            message: err["message"].as_str().unwrap_or_default().into(),
        });
    }
    Ok(v)
}

/// Where a TOTP code comes from when the controller asks for one (an MFA
/// authentication query).
pub type TotpSource = Box<dyn Fn() -> Result<String, CliError> + Send + Sync>;

/// A [`TotpSource`] for logins that cannot answer MFA (the quickstart's admin).
pub fn no_totp() -> TotpSource {
    Box::new(|| {
        Err(CliError::Usage(
            "the controller asks for a TOTP code (MFA)".into(),
        ))
    })
}

/// Password login on the management API; returns the session token.
pub async fn login(
    url: &str,
    ca_pem: &str,
    username: &str,
    password: &str,
    totp: TotpSource,
) -> Result<String, CliError> {
    let http = client_trusting(ca_pem)?;
    authenticate(
        &http,
        url,
        "password",
        &json!({"username": username, "password": password}),
        totp,
    )
    .await
}

/// Certificate login on the management API over `tls` (which presents the client
/// certificate); returns the session token.
pub async fn login_cert(
    url: &str,
    tls: weft_tls::rustls::ClientConfig,
    totp: TotpSource,
) -> Result<String, CliError> {
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()?;
    authenticate(&http, url, "cert", &json!({}), totp).await
}

/// Logs in; answers an MFA authentication query with a code from `totp`.
async fn authenticate(
    http: &reqwest::Client,
    url: &str,
    method: &str,
    body: &Value,
    totp: TotpSource,
) -> Result<String, CliError> {
    let res = http
        .post(format!(
            "{url}/edge/management/v1/authenticate?method={method}"
        ))
        .json(body)
        .send()
        .await?;
    let v = envelope(res).await?;
    let token = v["data"]["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CliError::Config("no token in the login response".into()))?;
    let queries = v["data"]["authQueries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if queries.iter().any(|q| q["typeId"] == "MFA") {
        let code = totp()?;
        let res = http
            .post(format!("{url}/edge/management/v1/authenticate/mfa"))
            .header("zt-session", &token)
            .json(&json!({"code": code.trim()}))
            .send()
            .await?;
        envelope(res).await?;
    }
    Ok(token)
}

/// A listing: the entities, the offset of the first among all that match, and how
/// many match.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The entities.
    pub items: Vec<Value>,
    /// How many matching entities come before the first.
    pub offset: u64,
    /// How many entities match.
    pub total: u64,
}

/// An authenticated management API client.
#[derive(Debug)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    /// The command that logs in again, for [`CliError::SessionExpired`].
    relogin: String,
}

impl Api {
    /// Builds the client from a login saved as `name`.
    pub fn from_config(name: &str, cfg: CliConfig) -> Result<Self, CliError> {
        Ok(Self {
            http: client_trusting(&cfg.ca_pem)?,
            base: format!("{}/edge/management/v1", cfg.url),
            relogin: cfg.login_command(name),
            token: cfg.token,
        })
    }

    /// Builds the client from the saved login `name`, or the current one.
    pub fn from_saved(name: Option<&str>) -> Result<Self, CliError> {
        let (name, cfg) = CliConfig::load(name)?;
        Self::from_config(&name, cfg)
    }

    /// The answer's envelope; an unknown or expired session becomes
    /// [`CliError::SessionExpired`].
    async fn answer(&self, res: reqwest::Response) -> Result<Value, CliError> {
        match envelope(res).await {
            Err(CliError::Api { status: 401, .. }) => {
                Err(CliError::SessionExpired(self.relogin.clone()))
            }
            other => other,
        }
    }

    /// Ends the session on the controller (`DELETE /current-api-session`).
    pub async fn logout(&self) -> Result<(), CliError> {
        let res = self
            .http
            .delete(format!("{}/current-api-session", self.base))
            .header("zt-session", &self.token)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await?;
        self.answer(res).await.map(|_| ())
    }

    /// `METHOD /{path}` (relative to the management API) with the session, and a JSON
    /// body when given; the answer's envelope or error.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let mut req = self
            .http
            .request(method, format!("{}/{path}", self.base))
            .header("zt-session", &self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        self.answer(req.send().await?).await
    }

    /// `POST /{coll}`.
    pub async fn post(&self, coll: &str, body: &Value) -> Result<Value, CliError> {
        self.call(reqwest::Method::POST, coll, Some(body)).await
    }

    /// `POST /{path}` with a `text/plain` body (a PEM certificate).
    pub async fn post_text(&self, path: &str, body: String) -> Result<Value, CliError> {
        let res = self
            .http
            .post(format!("{}/{path}", self.base))
            .header("zt-session", &self.token)
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await?;
        self.answer(res).await
    }

    /// Every entity of a collection (following pages), optionally filtered.
    pub async fn list_all(&self, coll: &str, filter: Option<&str>) -> Result<Vec<Value>, CliError> {
        Ok(self.list_counted(coll, filter).await?.items)
    }

    /// [`Api::list_all`] with where the entities start among all that match and how
    /// many match (`meta.pagination`), for `results: 1-N of M`.
    pub async fn list_counted(&self, coll: &str, filter: Option<&str>) -> Result<Listed, CliError> {
        const PAGE: u64 = 500;
        let mut out = Vec::new();
        let mut first: Option<(u64, u64)> = None;
        loop {
            let offset = out.len() as u64;
            let mut req = self
                .http
                .get(format!("{}/{coll}", self.base))
                .header("zt-session", &self.token)
                .query(&[("limit", PAGE), ("offset", offset)]);
            if let Some(f) = filter {
                req = req.query(&[("filter", f)]);
            }
            let v = self.answer(req.send().await?).await?;
            let page = v["data"].as_array().cloned().unwrap_or_default();
            let paging = &v["meta"]["pagination"];
            let total = paging["totalCount"].as_u64().unwrap_or(0);
            let (start, total) =
                *first.get_or_insert_with(|| (paging["offset"].as_u64().unwrap_or(0), total));
            // A `limit`/`skip` in the filter overrides the paging asked for: that one
            // page is the answer.
            let own_paging =
                paging["limit"].as_u64() != Some(PAGE) || paging["offset"].as_u64() != Some(offset);
            let empty = page.is_empty();
            out.extend(page);
            if empty || own_paging || out.len() as u64 >= total {
                return Ok(Listed {
                    items: out,
                    offset: start,
                    total,
                });
            }
        }
    }

    /// Resolves an id, or (for `named` collections) a name, to an id.
    pub async fn resolve(
        &self,
        coll: &str,
        name_or_id: &str,
        named: bool,
    ) -> Result<String, CliError> {
        let res = self
            .http
            .get(format!("{}/{coll}/{name_or_id}", self.base))
            .header("zt-session", &self.token)
            .send()
            .await?;
        if res.status().is_success() {
            return Ok(name_or_id.to_string());
        }
        if res.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Err(CliError::SessionExpired(self.relogin.clone()));
        }
        if !named {
            return Err(CliError::Usage(format!("no {coll} with id {name_or_id:?}")));
        }
        let quoted = name_or_id.replace('\\', "\\\\").replace('"', "\\\"");
        let filter = format!("name=\"{quoted}\"");
        let found = self.list_all(coll, Some(&filter)).await?;
        found
            .first()
            .and_then(|v| v["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| CliError::Usage(format!("no {coll} named or with id {name_or_id:?}")))
    }

    /// `GET /{path}` (relative to the management API).
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `PATCH /{coll}/{id}`.
    pub async fn patch(&self, coll: &str, id: &str, body: &Value) -> Result<(), CliError> {
        let path = format!("{coll}/{id}");
        self.call(reqwest::Method::PATCH, &path, Some(body))
            .await
            .map(|_| ())
    }

    /// `DELETE /{coll}/{id}`.
    pub async fn delete(&self, coll: &str, id: &str) -> Result<(), CliError> {
        let path = format!("{coll}/{id}");
        self.call(reqwest::Method::DELETE, &path, None)
            .await
            .map(|_| ())
    }

    /// `DELETE /{path}` with a JSON body (the list of what to remove).
    pub async fn delete_with(&self, path: &str, body: &Value) -> Result<(), CliError> {
        self.call(reqwest::Method::DELETE, path, Some(body))
            .await
            .map(|_| ())
    }
}
