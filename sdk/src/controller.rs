//! The Edge Client API client: authentication, services, sessions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};

/// How long one controller request may take by default
/// ([`crate::Options::controller_timeout`]).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long connecting to one controller (TCP and TLS) may take before the next one is
/// tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// The posture checks each granting policy asks for (the SDK answers them itself).
    #[serde(default)]
    pub posture_queries: Vec<crate::posture::PostureQuerySet>,
    /// The service's configs by config type name (`intercept.v1`, `host.v1`, ...): the
    /// types asked for at login ([`crate::Options::config_types`]).
    #[serde(default, rename = "config")]
    pub configs: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Where a service is hosted: one terminator (a binding of a host on an edge router),
/// as the Edge Client API lists it (`terminatorClientDetail`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Terminator {
    /// Controller id.
    pub id: String,
    /// The edge router holding it.
    pub router_id: String,
    /// The terminator identity a dial may name ([`crate::DialOptions::identity`]);
    /// empty when the host bound without one.
    #[serde(default)]
    pub identity: String,
    /// When it was bound (RFC 3339).
    #[serde(default)]
    pub created_at: String,
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
    /// Open authentication queries (openziti/edge-api `source/shared/auth-query.yml`).
    #[serde(default)]
    pub(crate) auth_queries: Vec<AuthQuery>,
}

/// One authentication query of an API session.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthQuery {
    /// `MFA` (a TOTP code for `/authenticate/mfa`), `EXT-JWT`, ...
    pub(crate) type_id: String,
}

/// Where TOTP codes come from when a controller asks for one (see
/// [`crate::Options::with_mfa_codes`]).
#[derive(Clone)]
pub struct MfaCodes(pub(crate) Arc<CodeFn>);

/// A future of a TOTP code.
type CodeFuture = std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send>>;
/// What [`MfaCodes`] calls.
type CodeFn = dyn Fn() -> CodeFuture + Send + Sync;

impl std::fmt::Debug for MfaCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MfaCodes(..)")
    }
}

/// The caller's TOTP enrollment, as [`crate::Context::enroll_mfa`] starts it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MfaEnrollment {
    /// Whether a code proved it ([`crate::Context::verify_mfa`]).
    pub is_verified: bool,
    /// `otpauth://totp/...` for an authenticator app (while unverified).
    #[serde(default)]
    pub provisioning_url: Option<String>,
    /// Single-use codes that stand in for a TOTP code (while unverified).
    #[serde(default)]
    pub recovery_codes: Vec<String>,
}

impl MfaEnrollment {
    /// The base32 TOTP secret in [`Self::provisioning_url`].
    pub fn secret(&self) -> Option<&str> {
        let url = self.provisioning_url.as_deref()?;
        let query = url.split_once('?')?.1;
        query.split('&').find_map(|kv| kv.strip_prefix("secret="))
    }
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

/// The Edge Client API of the identity's controllers, authenticated by its certificate.
///
/// With several controllers (sharing one database, so an API session is valid on each)
/// every request goes to the one that answered last; when it cannot be reached (the
/// connection is refused, the TLS handshake fails, the request times out — not an HTTP
/// error answer) the request is sent to the next, round robin, and the one that answers
/// is remembered. A controller the API session was not created on that answers 401 for
/// it gets one fresh authentication and the request again.
#[derive(Clone, Debug)]
pub(crate) struct ControllerClient {
    /// Replaced when the identity's certificate is extended.
    http: Arc<Mutex<reqwest::Client>>,
    /// Answers MFA authentication queries.
    mfa: Option<MfaCodes>,
    /// `<controller>/edge/client/v1` of each controller, the default first.
    bases: Arc<[String]>,
    state: Arc<Mutex<State>>,
    /// The limit of one request.
    timeout: Duration,
    /// Config types asked for at login (`configTypes`).
    config_types: Vec<String>,
}

/// Which controller answers, and the API session.
#[derive(Debug, Default)]
struct State {
    /// Index in `bases` of the controller requests go to first.
    current: usize,
    /// The API session token (`zt-session`), once authenticated.
    token: Option<String>,
    /// The controller that issued `token`.
    token_from: usize,
}

/// The HTTP client of the controller API, presenting the identity's certificate, each
/// request limited to `timeout` (connecting to `timeout` or 10 s, whichever is less).
fn http_client(tls: &rustls::ClientConfig, timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        // Drop idle connections before a controller does: Weft's closes one after
        // 30 s without a request (its header-read timeout), which is also the
        // refresh interval, so reusing it raced with the close and failed the
        // refresh now and then.
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build()
        .map_err(|e| Error::controller(format!("HTTP client: {e}")))
}

fn http_error(e: reqwest::Error) -> Error {
    let error = if e.is_timeout() {
        Error::timed_out("controller request timed out")
    } else if e.is_connect() {
        Error::controller("could not connect to the controller")
    } else {
        Error::controller("controller request failed")
    };
    // reqwest's own text names the URL; the root cause (refused, reset, certificate
    // not trusted) is further down its chain, kept as our source.
    error.with_source(e)
}

/// Whether `e` means the controller could not be reached (try the next one), as
/// opposed to an answer.
fn is_unreachable(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request()
}

/// A request's method, path under the API, and JSON body.
struct Call<'a> {
    method: reqwest::Method,
    path: String,
    body: Option<&'a serde_json::Value>,
    /// An extra header (`mfa-validation-code`).
    header: Option<(&'static str, String)>,
}

impl ControllerClient {
    /// A client of the controllers at `bases` (base URLs, the default first; at least
    /// one) over `tls`.
    pub(crate) fn new(
        bases: &[String],
        tls: Arc<rustls::ClientConfig>,
        mfa: Option<MfaCodes>,
        timeout: Duration,
        config_types: Vec<String>,
    ) -> Result<Self> {
        if bases.is_empty() {
            return Err(Error::controller("no controller URL"));
        }
        Ok(Self {
            http: Arc::new(Mutex::new(http_client(&tls, timeout)?)),
            timeout,
            mfa,
            config_types,
            bases: bases
                .iter()
                .map(|b| format!("{}/edge/client/v1", b.trim_end_matches('/')))
                .collect(),
            state: Arc::new(Mutex::new(State::default())),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section is a few assignments; a poisoned lock is consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The API session token, once authenticated.
    pub(crate) fn token(&self) -> Option<String> {
        self.state().token.clone()
    }

    /// The base URL of the controller requests go to now.
    pub(crate) fn current(&self) -> String {
        let base = self
            .bases
            .get(self.state().current)
            .map_or("", String::as_str);
        base.strip_suffix("/edge/client/v1")
            .unwrap_or(base)
            .to_owned()
    }

    /// Sends `call` to the current controller, failing over to the next ones (each
    /// tried once) while they cannot be reached. Returns the answer's status and body,
    /// the controller that answered, and whether the API session token went with it.
    async fn exchange(
        &self,
        call: &Call<'_>,
        with_token: bool,
    ) -> Result<(u16, bytes::Bytes, usize, bool)> {
        let (start, token) = {
            let state = self.state();
            (state.current, state.token.clone().filter(|_| with_token))
        };
        let count = self.bases.len();
        let mut last = None;
        for step in 0..count {
            let index = (start + step) % count;
            let Some(base) = self.bases.get(index) else {
                continue;
            };
            let http = self
                .http
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let mut req = http.request(call.method.clone(), format!("{base}{}", call.path));
            if let Some(body) = call.body {
                req = req.json(body);
            }
            if let Some(token) = &token {
                req = req.header("zt-session", token.as_str());
            }
            if let Some((name, value)) = &call.header {
                req = req.header(*name, value.as_str());
            }
            match req.send().await {
                Ok(res) => {
                    if index != start {
                        let mut state = self.state();
                        if state.current == start {
                            state.current = index;
                            tracing::info!(controller = %base, "switched to another controller");
                        }
                    }
                    let status = res.status().as_u16();
                    let body = res.bytes().await.map_err(http_error)?;
                    return Ok((status, body, index, token.is_some()));
                }
                Err(e) if count > 1 && is_unreachable(&e) => {
                    tracing::warn!(controller = %base, error = %e, "controller unreachable; trying the next");
                    last = Some(e);
                }
                Err(e) => return Err(http_error(e)),
            }
        }
        Err(last.map_or_else(|| Error::controller("no controller URL"), http_error))
    }

    /// Sends `call` with the API session; a controller other than the session's that
    /// answers 401 gets one fresh authentication and the call again.
    async fn send<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<(T, Option<usize>)> {
        let mut reauthenticated = false;
        loop {
            let (status, body, answered_by, with_token) = self.exchange(&call, true).await?;
            if status == 401 && with_token && !reauthenticated {
                let issued_by = self.state().token_from;
                if issued_by != answered_by {
                    tracing::info!(
                        controller = %self.current(),
                        "the controller does not know the API session; authenticating again"
                    );
                    self.authenticate().await?;
                    reauthenticated = true;
                    continue;
                }
            }
            return decode(status, &body);
        }
    }

    /// `POST /authenticate?method=cert`; the token is used for every later call.
    pub(crate) async fn authenticate(&self) -> Result<ApiSession> {
        let body = serde_json::json!({"configTypes": self.config_types});
        let call = Call {
            method: reqwest::Method::POST,
            path: "/authenticate?method=cert".into(),
            body: Some(&body),
            header: None,
        };
        let (status, body, answered_by, _) = self.exchange(&call, false).await?;
        let (mut session, _): (ApiSession, _) = decode(status, &body)?;
        {
            let mut state = self.state();
            state.token = Some(session.token.clone());
            state.token_from = answered_by;
        }
        if session.auth_queries.iter().any(|q| q.type_id == "MFA") {
            self.answer_mfa().await?;
            session.auth_queries.retain(|q| q.type_id != "MFA");
        }
        if let Some(q) = session.auth_queries.first() {
            return Err(Error::new(
                ErrorKind::NotAuthorized,
                format!(
                    "the controller asks for a {:?} authentication query this SDK does not answer",
                    q.type_id
                ),
            ));
        }
        Ok(session)
    }

    /// Answers the API session's TOTP query with a code from [`Self::mfa`]
    /// (`POST /authenticate/mfa`).
    async fn answer_mfa(&self) -> Result<()> {
        let Some(MfaCodes(codes)) = &self.mfa else {
            return Err(Error::new(
                ErrorKind::Mfa,
                "the controller asks for a TOTP code (the identity has MFA, or its authentication policy requires it); give one with Options::with_mfa_codes",
            ));
        };
        let code = codes().await.ok_or_else(|| {
            Error::new(
                ErrorKind::Mfa,
                "no TOTP code was supplied for the controller's MFA query",
            )
        })?;
        let body = serde_json::json!({ "code": code });
        let call = Call {
            method: reqwest::Method::POST,
            path: "/authenticate/mfa".into(),
            body: Some(&body),
            header: None,
        };
        let (status, body, _, _) = self.exchange(&call, true).await?;
        decode::<serde_json::Value>(status, &body).map(drop)
    }

    /// From now on, talks to the controllers presenting the certificate of `tls`.
    pub(crate) fn set_tls(&self, tls: &rustls::ClientConfig) -> Result<()> {
        let client = http_client(tls, self.timeout)?;
        *self
            .http
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = client;
        Ok(())
    }

    /// The id of the caller's certificate authenticator
    /// (`GET /current-identity/authenticators`).
    pub(crate) async fn cert_authenticator(&self) -> Result<String> {
        let (list, _): (Vec<serde_json::Value>, _) =
            self.send(get("/current-identity/authenticators")).await?;
        list.iter()
            .find(|a| a["method"] == "cert")
            .and_then(|a| a["id"].as_str().map(str::to_owned))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotAuthorized,
                    "the identity has no certificate authenticator to extend",
                )
            })
    }

    /// `extend` then `extend-verify`: the new certificate (PEM) for `csr`.
    pub(crate) async fn extend_certificate(
        &self,
        authenticator: &str,
        csr: &str,
    ) -> Result<String> {
        let body = serde_json::json!({ "clientCertCsr": csr });
        let call = Call {
            method: reqwest::Method::POST,
            path: format!("/current-identity/authenticators/{authenticator}/extend"),
            body: Some(&body),
            header: None,
        };
        let (issued, _): (serde_json::Value, _) = self.send(call).await?;
        let cert = issued["clientCert"]
            .as_str()
            .ok_or_else(|| Error::controller("the controller issued no certificate"))?
            .to_owned();
        let body = serde_json::json!({ "clientCert": cert });
        let call = Call {
            method: reqwest::Method::POST,
            path: format!("/current-identity/authenticators/{authenticator}/extend-verify"),
            body: Some(&body),
            header: None,
        };
        self.send::<serde_json::Value>(call).await?;
        Ok(cert)
    }

    /// `POST /current-identity/mfa` then `GET /current-identity/mfa`.
    pub(crate) async fn enroll_mfa(&self) -> Result<MfaEnrollment> {
        let call = Call {
            method: reqwest::Method::POST,
            path: "/current-identity/mfa".into(),
            body: None,
            header: None,
        };
        self.send::<serde_json::Value>(call).await?;
        Ok(self.send(get("/current-identity/mfa")).await?.0)
    }

    /// `POST /current-identity/mfa/verify {code}`.
    pub(crate) async fn verify_mfa(&self, code: &str) -> Result<()> {
        let body = serde_json::json!({ "code": code });
        let call = Call {
            method: reqwest::Method::POST,
            path: "/current-identity/mfa/verify".into(),
            body: Some(&body),
            header: None,
        };
        self.send::<serde_json::Value>(call).await.map(drop)
    }

    /// `DELETE /current-identity/mfa` with the code in `mfa-validation-code`.
    pub(crate) async fn remove_mfa(&self, code: &str) -> Result<()> {
        let call = Call {
            method: reqwest::Method::DELETE,
            path: "/current-identity/mfa".into(),
            body: None,
            header: Some(("mfa-validation-code", code.to_owned())),
        };
        self.send::<serde_json::Value>(call).await.map(drop)
    }

    /// `GET /current-api-session`: refreshes the session's activity (and expiry).
    pub(crate) async fn refresh(&self) -> Result<ApiSession> {
        Ok(self.send(get("/current-api-session")).await?.0)
    }

    /// `DELETE /current-api-session`.
    pub(crate) async fn logout(&self) -> Result<()> {
        let call = Call {
            method: reqwest::Method::DELETE,
            path: "/current-api-session".into(),
            body: None,
            header: None,
        };
        self.send::<serde_json::Value>(call).await.map(drop)
    }

    /// Every service this identity can see (all pages).
    pub(crate) async fn services(&self) -> Result<Vec<Service>> {
        let mut out = Vec::new();
        loop {
            let call = get(&format!("/services?limit={PAGE}&offset={}", out.len()));
            let (page, total): (Vec<Service>, _) = self.send(call).await?;
            let done = page.is_empty() || total.is_none_or(|t| out.len() + page.len() >= t);
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// `GET /services/{id}/terminators`, every page.
    pub(crate) async fn terminators(&self, service_id: &str) -> Result<Vec<Terminator>> {
        let mut out = Vec::new();
        loop {
            let call = get(&format!(
                "/services/{service_id}/terminators?limit={PAGE}&offset={}",
                out.len()
            ));
            let (page, total): (Vec<Terminator>, _) = self.send(call).await?;
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
        let call = get("/current-api-session/service-updates");
        Ok(self.send::<Updates>(call).await?.0.last_change_at)
    }

    /// `POST /posture-response-bulk` with `responses`.
    pub(crate) async fn submit_posture(&self, responses: &[serde_json::Value]) -> Result<()> {
        let body = serde_json::Value::Array(responses.to_vec());
        let call = Call {
            method: reqwest::Method::POST,
            path: "/posture-response-bulk".into(),
            body: Some(&body),
            header: None,
        };
        self.send::<serde_json::Value>(call).await.map(drop)
    }

    /// `POST /sessions` for `service_id`.
    pub(crate) async fn create_session(
        &self,
        service_id: &str,
        kind: SessionKind,
    ) -> Result<Session> {
        let body = serde_json::json!({"serviceId": service_id, "type": kind.as_str()});
        let call = Call {
            method: reqwest::Method::POST,
            path: "/sessions".into(),
            body: Some(&body),
            header: None,
        };
        Ok(self.send(call).await?.0)
    }
}

fn get(path: &str) -> Call<'static> {
    Call {
        method: reqwest::Method::GET,
        path: path.to_owned(),
        body: None,
        header: None,
    }
}

/// The data (and total count) of a successful answer, or the error it carries.
fn decode<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<(T, Option<usize>)> {
    if !(200..300).contains(&status) {
        return Err(api_error(status, body));
    }
    let env: Envelope<T> = serde_json::from_slice(body)
        .map_err(|e| Error::controller(format!("unexpected answer from the controller: {e}")))?;
    Ok((env.data, env.meta.pagination.map(|p| p.total_count)))
}

/// Maps an OpenZiti error envelope to an [`Error`].
fn api_error(status: u16, body: &[u8]) -> Error {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let code = v["error"]["code"].as_str().unwrap_or("");
    let message = v["error"]["message"].as_str().unwrap_or("");
    let kind = match (status, code) {
        (_, "NO_EDGE_ROUTERS_AVAILABLE") => ErrorKind::NoEdgeRouter,
        (_, "INVALID_POSTURE") => ErrorKind::Posture,
        (_, "MFA_INVALID_TOKEN" | "MFA_NOT_ENROLLED" | "MFA_EXISTS") => ErrorKind::Mfa,
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

    /// A fake Edge Client API over TLS on loopback: `answer(request line, zt-session)`
    /// gives each request's status and JSON body. Returns its base URL and its accept
    /// task (aborting it closes the port: connections are then refused).
    async fn fake_controller(
        pki: &weft_tls::test_pki::TestPki,
        answer: impl Fn(&str, Option<&str>) -> (u16, String) + Send + Sync + 'static,
    ) -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.control_server().unwrap()));
        let answer = Arc::new(answer);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, answer) = (acceptor.clone(), Arc::clone(&answer));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut got = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&got[..head_end]).to_string();
                    let header = |name: &str| {
                        head.lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                        })
                    };
                    let length: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
                    while got.len() < head_end + length {
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let line = head.lines().next().unwrap_or_default().to_owned();
                    let (status, body) = answer(&line, header("zt-session").as_deref());
                    let out = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(out.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (base, task)
    }

    fn session(token: &str) -> (u16, String) {
        let body =
            serde_json::json!({"data": {"id": "s", "token": token, "identity": {"name": "alice"}}});
        (200, body.to_string())
    }

    fn one_service() -> (u16, String) {
        let body = serde_json::json!({
            "data": [{"id": "1", "name": "svc", "permissions": ["Dial"]}],
            "meta": {"pagination": {"totalCount": 1}}
        });
        (200, body.to_string())
    }

    fn unauthorized() -> (u16, String) {
        let body = serde_json::json!({"error": {"code": "UNAUTHORIZED", "message": "no"}});
        (401, body.to_string())
    }

    /// The session's controller goes away: the next one is asked, does not know the
    /// session (401), gets one fresh login, answers, and is kept.
    #[tokio::test]
    async fn an_unreachable_controller_fails_over_and_a_401_there_logs_in_again() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pki = weft_tls::test_pki::TestPki::new().unwrap();
        let (a, a_task) = fake_controller(&pki, |line, _| {
            if line.starts_with("POST /edge/client/v1/authenticate") {
                session("from-a")
            } else {
                one_service()
            }
        })
        .await;
        let logins_b = Arc::new(AtomicUsize::new(0));
        let (b, _b_task) = fake_controller(&pki, {
            let logins_b = Arc::clone(&logins_b);
            move |line, token| {
                if line.starts_with("POST /edge/client/v1/authenticate") {
                    logins_b.fetch_add(1, Ordering::Relaxed);
                    session("from-b")
                } else if token == Some("from-b") {
                    one_service()
                } else {
                    unauthorized()
                }
            }
        })
        .await;
        let tls = pki.client_config(&[&rustls::version::TLS13]).unwrap();
        let client =
            ControllerClient::new(&[a.clone(), b.clone()], tls, None, REQUEST_TIMEOUT, vec![])
                .unwrap();
        client.authenticate().await.unwrap();
        assert_eq!(client.token().as_deref(), Some("from-a"));
        assert_eq!(client.current(), a);
        assert_eq!(client.services().await.unwrap().len(), 1);

        a_task.abort();
        let _ = a_task.await;
        let services = client.services().await.unwrap();
        assert_eq!(services[0].name, "svc");
        assert_eq!(client.current(), b, "the controller that answered is kept");
        assert_eq!(client.token().as_deref(), Some("from-b"));
        assert_eq!(logins_b.load(Ordering::Relaxed), 1);
        // Still on b, without another login.
        client.services().await.unwrap();
        assert_eq!(logins_b.load(Ordering::Relaxed), 1);
    }

    /// An HTTP error answer is the answer: no other controller is asked, and a 401
    /// from the controller that issued the session is returned (expiry; the context's
    /// refresh loop logs in again).
    #[tokio::test]
    async fn an_error_answer_is_no_failover() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pki = weft_tls::test_pki::TestPki::new().unwrap();
        let (a, _a_task) = fake_controller(&pki, |line, _| {
            if line.starts_with("POST /edge/client/v1/authenticate") {
                session("from-a")
            } else if line.starts_with("POST /edge/client/v1/sessions") {
                let body = serde_json::json!({"error": {"code": "NOT_FOUND", "message": "gone"}});
                (404, body.to_string())
            } else {
                unauthorized()
            }
        })
        .await;
        let asked_b = Arc::new(AtomicUsize::new(0));
        let (b, _b_task) = fake_controller(&pki, {
            let asked_b = Arc::clone(&asked_b);
            move |_, _| {
                asked_b.fetch_add(1, Ordering::Relaxed);
                session("from-b")
            }
        })
        .await;
        let tls = pki.client_config(&[&rustls::version::TLS13]).unwrap();
        let client =
            ControllerClient::new(&[a.clone(), b], tls, None, REQUEST_TIMEOUT, vec![]).unwrap();
        client.authenticate().await.unwrap();
        let e = client
            .create_session("1", SessionKind::Dial)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoSuchService);
        let e = client.services().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotAuthorized);
        assert_eq!(client.current(), a);
        assert_eq!(client.token().as_deref(), Some("from-a"));
        assert_eq!(asked_b.load(Ordering::Relaxed), 0);
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
