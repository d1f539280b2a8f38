//! The Edge Client API client: authentication, services, sessions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};

/// How long one controller request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an idle connection to the controller is kept for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Page size when listing services.
const PAGE: usize = 500;

/// A service this identity can see.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Controller id.
    pub id: String,
    /// Name, what [`crate::Context::dial`] takes.
    pub name: String,
    /// Whether streams of this service must be end-to-end encrypted.
    #[serde(default)]
    pub encryption_required: bool,
    /// `Dial` and/or `Bind`.
    #[serde(default)]
    pub permissions: Vec<String>,
}

impl Service {
    /// Whether policy lets this identity dial the service.
    pub fn can_dial(&self) -> bool {
        self.permissions.iter().any(|p| p == "Dial")
    }

    /// Whether policy lets this identity host (bind) the service.
    pub fn can_bind(&self) -> bool {
        self.permissions.iter().any(|p| p == "Bind")
    }
}

/// The API session: proof of authentication for the controller and routers.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiSession {
    pub(crate) id: String,
    pub(crate) token: String,
    #[serde(default)]
    pub(crate) expiration_seconds: Option<u64>,
    pub(crate) identity: Named,
}

/// `{id, name}` references.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Named {
    pub(crate) name: String,
}

/// A Dial or Bind session for one service.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) token: String,
    #[serde(default)]
    pub(crate) edge_routers: Vec<EdgeRouter>,
}

/// An edge router a session may use.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EdgeRouter {
    pub(crate) name: String,
    #[serde(default)]
    supported_protocols: std::collections::HashMap<String, String>,
    #[serde(default)]
    urls: std::collections::HashMap<String, String>,
}

impl EdgeRouter {
    /// `host:port` of its TLS edge listener.
    pub(crate) fn tls_address(&self) -> Option<String> {
        self.supported_protocols
            .get("tls")
            .or_else(|| self.urls.get("tls"))
            .filter(|u| u.starts_with("tls://"))
            .and_then(|u| weft_identity::endpoint::parse(u))
            .map(|e| e.address())
    }
}

/// Dial or Bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionKind {
    Dial,
    Bind,
}

impl SessionKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Dial => "Dial",
            Self::Bind => "Bind",
        }
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
    #[serde(default)]
    meta: Meta,
}

#[derive(Default, Deserialize)]
struct Meta {
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pagination {
    total_count: usize,
}

/// The Edge Client API of one controller, authenticated by the identity's certificate.
#[derive(Clone, Debug)]
pub(crate) struct ControllerClient {
    http: reqwest::Client,
    base: String,
    token: Arc<Mutex<Option<String>>>,
}

fn http_error(e: reqwest::Error) -> Error {
    if e.is_timeout() {
        Error::timed_out(format!("controller request: {e}"))
    } else {
        Error::controller(format!("controller request failed: {e}"))
    }
}

impl ControllerClient {
    /// A client of the controller at `base` over `tls`.
    pub(crate) fn new(base: &str, tls: Arc<rustls::ClientConfig>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(REQUEST_TIMEOUT)
            // Drop idle connections before a controller does: Weft's closes one after
            // 30 s without a request (its header-read timeout), which is also the
            // refresh interval, so reusing it raced with the close and failed the
            // refresh now and then.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()
            .map_err(|e| Error::controller(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: format!("{}/edge/client/v1", base.trim_end_matches('/')),
            token: Arc::new(Mutex::new(None)),
        })
    }

    fn token(&self) -> Option<String> {
        self.token.lock().ok().and_then(|t| t.clone())
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(T, Option<usize>)> {
        let req = match self.token() {
            Some(token) => req.header("zt-session", token),
            None => req,
        };
        let res = req.send().await.map_err(http_error)?;
        let status = res.status();
        let body = res.bytes().await.map_err(http_error)?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &body));
        }
        let env: Envelope<T> = serde_json::from_slice(&body).map_err(|e| {
            Error::controller(format!("unexpected answer from the controller: {e}"))
        })?;
        Ok((env.data, env.meta.pagination.map(|p| p.total_count)))
    }

    /// `POST /authenticate?method=cert`; the token is used for every later call.
    pub(crate) async fn authenticate(&self) -> Result<ApiSession> {
        if let Ok(mut t) = self.token.lock() {
            *t = None;
        }
        let req = self
            .http
            .post(format!("{}/authenticate?method=cert", self.base))
            .json(&serde_json::json!({"configTypes": ["all"]}));
        let (session, _): (ApiSession, _) = self.send(req).await?;
        if let Ok(mut t) = self.token.lock() {
            *t = Some(session.token.clone());
        }
        Ok(session)
    }

    /// `GET /current-api-session`: refreshes the session's activity (and expiry).
    pub(crate) async fn refresh(&self) -> Result<ApiSession> {
        let req = self.http.get(format!("{}/current-api-session", self.base));
        Ok(self.send(req).await?.0)
    }

    /// `DELETE /current-api-session`.
    pub(crate) async fn logout(&self) -> Result<()> {
        let req = self
            .http
            .delete(format!("{}/current-api-session", self.base));
        self.send::<serde_json::Value>(req).await.map(drop)
    }

    /// Every service this identity can see (all pages).
    pub(crate) async fn services(&self) -> Result<Vec<Service>> {
        let mut out = Vec::new();
        loop {
            let req = self.http.get(format!(
                "{}/services?limit={PAGE}&offset={}",
                self.base,
                out.len()
            ));
            let (page, total): (Vec<Service>, _) = self.send(req).await?;
            let done = page.is_empty() || total.is_none_or(|t| out.len() + page.len() >= t);
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// `GET /current-api-session/service-updates`: when the visible services last changed.
    pub(crate) async fn services_changed_at(&self) -> Result<String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Updates {
            last_change_at: String,
        }
        let req = self
            .http
            .get(format!("{}/current-api-session/service-updates", self.base));
        Ok(self.send::<Updates>(req).await?.0.last_change_at)
    }

    /// `POST /sessions` for `service_id`.
    pub(crate) async fn create_session(
        &self,
        service_id: &str,
        kind: SessionKind,
    ) -> Result<Session> {
        let req = self
            .http
            .post(format!("{}/sessions", self.base))
            .json(&serde_json::json!({"serviceId": service_id, "type": kind.as_str()}));
        Ok(self.send(req).await?.0)
    }
}

/// Maps an OpenZiti error envelope to an [`Error`].
fn api_error(status: u16, body: &[u8]) -> Error {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let code = v["error"]["code"].as_str().unwrap_or("");
    let message = v["error"]["message"].as_str().unwrap_or("");
    let kind = match (status, code) {
        (_, "NO_EDGE_ROUTERS_AVAILABLE") => ErrorKind::NoEdgeRouter,
        (401 | 403, _) => ErrorKind::NotAuthorized,
        (404, _) => ErrorKind::NoSuchService,
        _ => ErrorKind::Controller,
    };
    Error::new(
        kind,
        format!("controller answered {status} {code}: {message}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelopes_map_to_kinds() {
        let env = |code: &str| format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
        assert_eq!(
            api_error(401, env("UNAUTHORIZED").as_bytes()).kind(),
            ErrorKind::NotAuthorized
        );
        assert_eq!(
            api_error(400, env("NO_EDGE_ROUTERS_AVAILABLE").as_bytes()).kind(),
            ErrorKind::NoEdgeRouter
        );
        assert_eq!(
            api_error(404, env("NOT_FOUND").as_bytes()).kind(),
            ErrorKind::NoSuchService
        );
        assert_eq!(api_error(500, b"not json").kind(), ErrorKind::Controller);
    }

    #[test]
    fn router_addresses_come_from_supported_protocols_or_urls() {
        let r: EdgeRouter = serde_json::from_value(serde_json::json!({
            "name": "r", "supportedProtocols": {"tls": "tls://h:3022"}
        }))
        .unwrap();
        assert_eq!(r.tls_address().as_deref(), Some("h:3022"));
        let r: EdgeRouter =
            serde_json::from_value(serde_json::json!({"name": "r", "urls": {"tls": "tls://x:1"}}))
                .unwrap();
        assert_eq!(r.tls_address().as_deref(), Some("x:1"));
    }
}
