//! HTTP client side of the CLI: the saved login, TLS trust and API calls.

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

/// Saved login (`$HOME/.config/weft/config.json`, mode 0600: it holds a token).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CliConfig {
    /// Controller base URL.
    pub url: String,
    /// Management API session token.
    pub token: String,
    /// Trusted CA bundle (PEM).
    pub ca_pem: String,
}

fn config_path() -> Result<PathBuf, CliError> {
    let home =
        std::env::var_os("HOME").ok_or_else(|| CliError::Config("HOME is not set".into()))?;
    Ok(PathBuf::from(home).join(".config/weft/config.json"))
}

impl CliConfig {
    /// Writes the config file (mode 0600); returns its path.
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

    /// Reads the config file.
    pub fn load() -> Result<Self, CliError> {
        let path = config_path()?;
        let text = std::fs::read_to_string(&path).map_err(|_| {
            CliError::Config(format!(
                "not logged in ({} missing): run `weft login`",
                path.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| CliError::Config(format!("{}: {e}", path.display())))
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

/// Password login on the management API; returns the session token.
pub async fn login(
    url: &str,
    ca_pem: &str,
    username: &str,
    password: &str,
) -> Result<String, CliError> {
    let http = client_trusting(ca_pem)?;
    let res = http
        .post(format!(
            "{url}/edge/management/v1/authenticate?method=password"
        ))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await?;
    let v = envelope(res).await?;
    v["data"]["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CliError::Config("no token in the login response".into()))
}

/// An authenticated management API client.
#[derive(Debug)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// Builds the client from the saved login.
    pub fn from_config(cfg: CliConfig) -> Result<Self, CliError> {
        Ok(Self {
            http: client_trusting(&cfg.ca_pem)?,
            base: format!("{}/edge/management/v1", cfg.url),
            token: cfg.token,
        })
    }

    /// `POST /{coll}`.
    pub async fn post(&self, coll: &str, body: &Value) -> Result<Value, CliError> {
        let res = self
            .http
            .post(format!("{}/{coll}", self.base))
            .header("zt-session", &self.token)
            .json(body)
            .send()
            .await?;
        envelope(res).await
    }

    /// Every entity of a collection (following pages), optionally filtered.
    pub async fn list_all(&self, coll: &str, filter: Option<&str>) -> Result<Vec<Value>, CliError> {
        const PAGE: u64 = 500;
        let mut out = Vec::new();
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
            let v = envelope(req.send().await?).await?;
            let page = v["data"].as_array().cloned().unwrap_or_default();
            let paging = &v["meta"]["pagination"];
            let total = paging["totalCount"].as_u64().unwrap_or(0) as usize;
            // A `limit`/`skip` in the filter overrides the paging asked for: that one
            // page is the answer.
            let own_paging =
                paging["limit"].as_u64() != Some(PAGE) || paging["offset"].as_u64() != Some(offset);
            let empty = page.is_empty();
            out.extend(page);
            if empty || own_paging || out.len() >= total {
                return Ok(out);
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
        let res = self
            .http
            .get(format!("{}/{path}", self.base))
            .header("zt-session", &self.token)
            .send()
            .await?;
        envelope(res).await
    }

    /// `PATCH /{coll}/{id}`.
    pub async fn patch(&self, coll: &str, id: &str, body: &Value) -> Result<(), CliError> {
        let res = self
            .http
            .patch(format!("{}/{coll}/{id}", self.base))
            .header("zt-session", &self.token)
            .json(body)
            .send()
            .await?;
        envelope(res).await.map(|_| ())
    }

    /// `DELETE /{coll}/{id}`.
    pub async fn delete(&self, coll: &str, id: &str) -> Result<(), CliError> {
        let res = self
            .http
            .delete(format!("{}/{coll}/{id}", self.base))
            .header("zt-session", &self.token)
            .send()
            .await?;
        envelope(res).await.map(|_| ())
    }
}
